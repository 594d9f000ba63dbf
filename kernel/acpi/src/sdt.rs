//! RSDP discovery and validation, generic table headers, and the RSDT/XSDT root tables.

use crate::error::TableError;
use crate::{AcpiError, PhysMem, Signature, SliceMem};

/// Size of the standard ACPI table header.
pub const HEADER_LEN: u32 = 36;
/// Sanity cap on any table length; longer tables are rejected.
pub const MAX_TABLE_LEN: u32 = 1 << 20;

const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
const RSDP_V1_LEN: u32 = 20;
const RSDP_V2_LEN: u32 = 36;

/// A validated Root System Description Pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// Physical address of the RSDP itself.
    pub paddr: u64,
    /// 0 for ACPI 1.0 (RSDT only); 2 or more for ACPI 2.0+.
    pub revision: u8,
    /// OEM id (ASCII, space padded).
    pub oem_id: [u8; 6],
    /// Physical address of the RSDT (0 if absent).
    pub rsdt_addr: u32,
    /// Physical address of the XSDT, if revision >= 2 and non-zero.
    pub xsdt_addr: Option<u64>,
    /// The length field (revision >= 2; as written, not checked: the checksums cover the
    /// 36 bytes ACPI 2.0 defines), or 20 for ACPI 1.0.
    pub length: u32,
}

/// Read `len` bytes at `paddr` in chunks and return their wrapping sum.
pub(crate) fn byte_sum<M: PhysMem + ?Sized>(
    mem: &M,
    paddr: u64,
    len: u32,
) -> Result<u8, AcpiError> {
    let mut buf = [0u8; 256];
    let mut sum = 0u8;
    let mut off = 0u32;
    while off < len {
        let n = (len - off).min(buf.len() as u32) as usize;
        let addr = paddr
            .checked_add(u64::from(off))
            .ok_or(AcpiError::Read { paddr, len: n })?;
        let chunk = &mut buf[..n];
        mem.read(addr, chunk)?;
        sum = chunk.iter().fold(sum, |s, &b| s.wrapping_add(b));
        off += n as u32;
    }
    Ok(sum)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Validate and decode the RSDP at `paddr`: signature, the 20-byte checksum, and for
/// revision >= 2 the extended checksum of its 36 bytes (the length field is reported, not
/// trusted).
pub fn parse_rsdp<M: PhysMem + ?Sized>(mem: &M, paddr: u64) -> Result<Rsdp, AcpiError> {
    let mut raw = [0u8; RSDP_V2_LEN as usize];
    let v1 = &mut raw[..RSDP_V1_LEN as usize];
    mem.read(paddr, v1)?;
    if v1.get(..8) != Some(&RSDP_SIGNATURE[..]) {
        return Err(AcpiError::BadRsdpSignature { paddr });
    }
    let sum = v1.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    if sum != 0 {
        return Err(AcpiError::BadChecksum {
            table: Signature::RSDP,
            paddr,
            sum,
        });
    }
    let mut oem_id = [0u8; 6];
    oem_id.copy_from_slice(&raw[9..15]);
    let revision = raw[15];
    let rsdt_addr = le_u32(&raw, 16);
    if revision < 2 {
        return Ok(Rsdp {
            paddr,
            revision,
            oem_id,
            rsdt_addr,
            xsdt_addr: None,
            length: RSDP_V1_LEN,
        });
    }
    mem.read(paddr, &mut raw)?;
    // The extended checksum covers the 36 bytes ACPI 2.0 defines, whatever the length field
    // says (ACPICA and Linux do the same). Until 2026-12-05 a length outside 36..=4096 lost
    // all of ACPI although both checksums held (found by review).
    let sum = raw.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    if sum != 0 {
        return Err(AcpiError::BadChecksum {
            table: Signature::RSDP,
            paddr,
            sum,
        });
    }
    let xsdt = le_u64(&raw, 24);
    Ok(Rsdp {
        paddr,
        revision,
        oem_id,
        rsdt_addr,
        xsdt_addr: (xsdt != 0).then_some(xsdt),
        length: le_u32(&raw, 20),
    })
}

/// Scan `area` (whose first byte is at physical address `area_base`) on 16-byte physical
/// boundaries for a valid RSDP; returns its physical address.
///
/// Candidates with a wrong checksum (or whose extended part does not fit in `area`) are skipped.
pub fn find_rsdp(area: &[u8], area_base: u64) -> Option<u64> {
    let mem = SliceMem::new(area_base, area);
    let first = (16 - (area_base % 16)) % 16;
    (first..area.len() as u64)
        .step_by(16)
        .filter(|&off| {
            let off = off as usize;
            area.get(off..off + RSDP_SIGNATURE.len()) == Some(&RSDP_SIGNATURE[..])
        })
        .map(|off| area_base.wrapping_add(off))
        .find(|&paddr| parse_rsdp(&mem, paddr).is_ok())
}

/// Physical address of the BIOS data area word holding the EBDA segment.
const BDA_EBDA_SEGMENT: u64 = 0x40E;
/// The EBDA lies in conventional memory, below the video area at 0xA0000.
const EBDA_AREA: core::ops::Range<u64> = 0x400..0xA0000;
/// The spec says the RSDP may be in the first 1 KiB of the EBDA.
const EBDA_SCAN_LEN: u64 = 1024;
/// The BIOS read-only area, the other place the RSDP may be.
const BIOS_AREA: core::ops::Range<u64> = 0xE0000..0x100000;

/// Look for the RSDP the legacy-BIOS way through `mem`: first 1 KiB of the EBDA (segment
/// read from the BIOS data area at 0x40E), then 0xE0000..0x100000. Not applicable on
/// UEFI-only machines, where the bootloader hands over the RSDP address.
///
/// Every read may fail (see [`PhysMem`]'s contract): if the EBDA pointer cannot be read (a
/// reader that refuses page 0 refuses it; the kernel's reads it, see
/// [`crate::direct_map_readable`]) or points outside conventional memory, only the BIOS area
/// is scanned; unreadable candidates are skipped. A failed read is never taken as
/// a pointer or as a match. `None` if nothing valid is found.
pub fn find_rsdp_in_bios<M: PhysMem + ?Sized>(mem: &M) -> Option<u64> {
    let mut seg = [0u8; 2];
    let ebda = mem
        .read(BDA_EBDA_SEGMENT, &mut seg)
        .ok()
        .map(|()| u64::from(u16::from_le_bytes(seg)) << 4)
        .filter(|base| EBDA_AREA.contains(base))
        .map(|base| base..(base + EBDA_SCAN_LEN).min(EBDA_AREA.end));
    ebda.into_iter()
        .chain(core::iter::once(BIOS_AREA))
        .flat_map(|r| r.step_by(16))
        .find(|&paddr| {
            let mut sig = [0u8; 8];
            mem.read(paddr, &mut sig).is_ok()
                && &sig == RSDP_SIGNATURE
                && parse_rsdp(mem, paddr).is_ok()
        })
}

/// A table whose header, length and checksum have been validated.
#[derive(Debug)]
pub(crate) struct Table<'m, M: PhysMem + ?Sized> {
    mem: &'m M,
    pub paddr: u64,
    pub len: u32,
    pub sig: Signature,
}

impl<M: PhysMem + ?Sized> Table<'_, M> {
    /// Read `buf.len()` bytes at `off`; fails if that runs past the table length.
    pub fn read(&self, off: u32, buf: &mut [u8]) -> Result<(), AcpiError> {
        let in_bounds = u32::try_from(buf.len())
            .ok()
            .and_then(|n| off.checked_add(n))
            .is_some_and(|end| end <= self.len);
        let paddr = self.paddr.wrapping_add(u64::from(off));
        if !in_bounds {
            return Err(AcpiError::Read {
                paddr,
                len: buf.len(),
            });
        }
        self.mem.read(paddr, buf)
    }

    /// Read a little-endian integer field of `N` bytes.
    pub fn bytes<const N: usize>(&self, off: u32) -> Result<[u8; N], AcpiError> {
        let mut b = [0u8; N];
        self.read(off, &mut b)?;
        Ok(b)
    }

    /// Fail with [`AcpiError::Truncated`] unless the table is at least `needed` bytes long.
    pub fn require_len(&self, needed: u32) -> Result<(), AcpiError> {
        if self.len < needed {
            return Err(AcpiError::Truncated {
                table: self.sig,
                paddr: self.paddr,
                length: self.len,
                needed,
            });
        }
        Ok(())
    }
}

/// Read the 4-byte signature of the table at `paddr`.
pub(crate) fn read_signature<M: PhysMem + ?Sized>(
    mem: &M,
    paddr: u64,
) -> Result<Signature, AcpiError> {
    let mut sig = [0u8; 4];
    mem.read(paddr, &mut sig)?;
    Ok(Signature(sig))
}

/// Validate the table at `paddr`: signature, length in `36..=MAX_TABLE_LEN`, checksum.
pub(crate) fn load_table<M: PhysMem + ?Sized>(
    mem: &M,
    paddr: u64,
    expected: Signature,
) -> Result<Table<'_, M>, TableError> {
    let mut hdr = [0u8; HEADER_LEN as usize];
    mem.read(paddr, &mut hdr)
        .map_err(|e| TableError::read(e, paddr, hdr.len()))?;
    let found = Signature([hdr[0], hdr[1], hdr[2], hdr[3]]);
    if found != expected {
        return Err(TableError::BadSignature {
            paddr,
            expected,
            found,
        });
    }
    let len = le_u32(&hdr, 4);
    if !(HEADER_LEN..=MAX_TABLE_LEN).contains(&len) {
        return Err(TableError::BadLength {
            table: found,
            paddr,
            length: len,
            min: HEADER_LEN,
            max: MAX_TABLE_LEN,
        });
    }
    if paddr.checked_add(u64::from(len)).is_none() {
        return Err(TableError::Read {
            paddr,
            len: len as usize,
        });
    }
    let sum = byte_sum(mem, paddr, len).map_err(|e| TableError::read(e, paddr, len as usize))?;
    if sum != 0 {
        return Err(TableError::BadChecksum {
            table: found,
            paddr,
            sum,
        });
    }
    Ok(Table {
        mem,
        paddr,
        len,
        sig: found,
    })
}

/// A validated RSDT or XSDT.
#[derive(Debug)]
pub(crate) struct RootTable<'m, M: PhysMem + ?Sized> {
    pub table: Table<'m, M>,
    entry_size: u32,
}

impl<'m, M: PhysMem + ?Sized> RootTable<'m, M> {
    /// Load the XSDT (64-bit entries).
    pub fn xsdt(mem: &'m M, paddr: u64) -> Result<Self, TableError> {
        load_table(mem, paddr, Signature::XSDT).map(|table| Self {
            table,
            entry_size: 8,
        })
    }

    /// Load the RSDT (32-bit entries).
    pub fn rsdt(mem: &'m M, paddr: u64) -> Result<Self, TableError> {
        load_table(mem, paddr, Signature::RSDT).map(|table| Self {
            table,
            entry_size: 4,
        })
    }

    /// Number of whole entries.
    pub fn count(&self) -> u32 {
        (self.table.len - HEADER_LEN) / self.entry_size
    }

    /// Bytes after the last whole entry.
    pub fn trailing_bytes(&self) -> u32 {
        (self.table.len - HEADER_LEN) % self.entry_size
    }

    /// Physical address stored in entry `i` (`i < count()`).
    pub fn entry(&self, i: u32) -> Result<u64, AcpiError> {
        let off = HEADER_LEN + i * self.entry_size;
        if self.entry_size == 8 {
            self.table.bytes::<8>(off).map(u64::from_le_bytes)
        } else {
            self.table
                .bytes::<4>(off)
                .map(|b| u64::from(u32::from_le_bytes(b)))
        }
    }
}
