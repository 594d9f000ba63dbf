//! Test-only ACPI table builder and fake physical memory.
#![allow(dead_code)]

use exo_acpi::{AcpiError, PhysMem};
use std::cell::Cell;
use std::collections::BTreeMap;

/// Fake physical memory: disjoint regions keyed by start address.
#[derive(Debug, Default, Clone)]
pub struct FakeMem {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FakeMem {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, paddr: u64, bytes: Vec<u8>) {
        self.regions.insert(paddr, bytes);
    }
}

impl PhysMem for FakeMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), AcpiError> {
        let err = AcpiError::Read {
            paddr,
            len: buf.len(),
        };
        let (&start, bytes) = self.regions.range(..=paddr).next_back().ok_or(err)?;
        let off = (paddr - start) as usize;
        let src = bytes.get(off..off + buf.len()).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A [`PhysMem`] that refuses every read touching physical addresses below `below`, as a
/// kernel leaving its first pages unmapped does (and, with `below == u64::MAX`, everything).
/// Counts the refused reads.
#[derive(Debug)]
pub struct RefuseBelow<'a> {
    pub inner: &'a FakeMem,
    pub below: u64,
    pub refused: Cell<u32>,
}

impl<'a> RefuseBelow<'a> {
    pub fn new(inner: &'a FakeMem, below: u64) -> Self {
        Self {
            inner,
            below,
            refused: Cell::new(0),
        }
    }
}

impl PhysMem for RefuseBelow<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), AcpiError> {
        if paddr < self.below {
            self.refused.set(self.refused.get() + 1);
            return Err(AcpiError::Read {
                paddr,
                len: buf.len(),
            });
        }
        self.inner.read(paddr, buf)
    }
}

/// A [`PhysMem`] with the kernel's reading rule ([`exo_acpi::direct_map_readable`]: a direct
/// map of `[0, limit)`) over a fake.
#[derive(Debug)]
pub struct KernelReader<'a> {
    pub inner: &'a FakeMem,
    pub limit: u64,
}

impl PhysMem for KernelReader<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), AcpiError> {
        if !exo_acpi::direct_map_readable(self.limit, paddr, buf.len()) {
            return Err(AcpiError::Read {
                paddr,
                len: buf.len(),
            });
        }
        self.inner.read(paddr, buf)
    }
}

/// Set `bytes[at]` so that all of `bytes` sums to zero.
pub fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

/// A table: 36-byte header (length and checksum computed) followed by `body`.
pub fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"EXOOS ");
    t.extend_from_slice(b"EXOTABLE");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"EXOB");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

pub fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"EXOOS ");
    r.push(0);
    r.extend_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut r, 8);
    r
}

pub fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"EXOOS ");
    r.push(2);
    r.extend_from_slice(&rsdt.to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    fix_checksum(&mut r[..20], 8);
    fix_checksum(&mut r, 32);
    r
}

pub fn rsdt(entries: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"RSDT", 1, &body)
}

pub fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

/// Builds a MADT entry by entry.
#[derive(Debug, Clone)]
pub struct MadtBuilder {
    pub lapic_addr: u32,
    pub flags: u32,
    pub entries: Vec<u8>,
}

impl Default for MadtBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MadtBuilder {
    pub fn new() -> Self {
        Self {
            lapic_addr: 0xFEE0_0000,
            flags: 1,
            entries: Vec::new(),
        }
    }

    /// Like QEMU: `n` enabled xAPIC CPUs (uid = id = i), one I/O APIC, the usual ISA
    /// overrides and a LINT1 NMI for all processors.
    pub fn qemu(n: u8) -> Self {
        let mut m = Self::new();
        for i in 0..n {
            m = m.lapic(i, i, 1);
        }
        m.ioapic(0, 0xFEC0_0000, 0)
            .iso(0, 0, 2, 0)
            .iso(0, 5, 5, 0xD)
            .iso(0, 9, 9, 0xD)
            .iso(0, 10, 10, 0xD)
            .iso(0, 11, 11, 0xD)
            .lapic_nmi(0xFF, 0, 1)
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.entries.extend_from_slice(bytes);
        self
    }

    pub fn lapic(self, uid: u8, id: u8, flags: u32) -> Self {
        let f = flags.to_le_bytes();
        self.raw(&[0, 8, uid, id, f[0], f[1], f[2], f[3]])
    }

    pub fn ioapic(self, id: u8, addr: u32, gsi_base: u32) -> Self {
        let mut e = vec![1, 12, id, 0];
        e.extend_from_slice(&addr.to_le_bytes());
        e.extend_from_slice(&gsi_base.to_le_bytes());
        self.raw(&e)
    }

    pub fn iso(self, bus: u8, irq: u8, gsi: u32, flags: u16) -> Self {
        let mut e = vec![2, 10, bus, irq];
        e.extend_from_slice(&gsi.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        self.raw(&e)
    }

    pub fn nmi_source(self, flags: u16, gsi: u32) -> Self {
        let mut e = vec![3, 8];
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&gsi.to_le_bytes());
        self.raw(&e)
    }

    pub fn lapic_nmi(self, uid: u8, flags: u16, lint: u8) -> Self {
        let f = flags.to_le_bytes();
        self.raw(&[4, 6, uid, f[0], f[1], lint])
    }

    pub fn lapic_addr_override(self, addr: u64) -> Self {
        let mut e = vec![5, 12, 0, 0];
        e.extend_from_slice(&addr.to_le_bytes());
        self.raw(&e)
    }

    pub fn x2apic(self, id: u32, flags: u32, uid: u32) -> Self {
        let mut e = vec![9, 16, 0, 0];
        e.extend_from_slice(&id.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&uid.to_le_bytes());
        self.raw(&e)
    }

    pub fn x2apic_nmi(self, flags: u16, uid: u32, lint: u8) -> Self {
        let mut e = vec![0xA, 12];
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&uid.to_le_bytes());
        e.extend_from_slice(&[lint, 0, 0, 0]);
        self.raw(&e)
    }

    pub fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.lapic_addr.to_le_bytes());
        body.extend_from_slice(&self.flags.to_le_bytes());
        body.extend_from_slice(&self.entries);
        sdt(b"APIC", 5, &body)
    }
}

/// FADT revision 3 (244 bytes) with the given PM timer fields.
/// `x_pm_tmr` is `(address space id, address)` for X_PM_TMR_BLK.
pub fn fadt(pm_tmr_blk: u32, flags: u32, x_pm_tmr: Option<(u8, u64)>) -> Vec<u8> {
    let mut body = vec![0u8; 244 - 36];
    let at = |off: usize| off - 36;
    body[at(76)..at(80)].copy_from_slice(&pm_tmr_blk.to_le_bytes());
    body[at(91)] = if pm_tmr_blk != 0 { 4 } else { 0 };
    body[at(112)..at(116)].copy_from_slice(&flags.to_le_bytes());
    if let Some((space, addr)) = x_pm_tmr {
        body[at(208)] = space;
        body[at(209)] = 32;
        body[at(211)] = 3;
        body[at(212)..at(220)].copy_from_slice(&addr.to_le_bytes());
    }
    sdt(b"FACP", 3, &body)
}

/// ACPI 1.0 FADT (116 bytes).
pub fn fadt_v1(pm_tmr_blk: u32, flags: u32) -> Vec<u8> {
    let mut t = fadt(pm_tmr_blk, flags, None);
    t.truncate(116);
    t[4..8].copy_from_slice(&116u32.to_le_bytes());
    t[8] = 1;
    fix_checksum(&mut t, 9);
    t
}

pub fn hpet(space: u8, base: u64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x8086_A201u32.to_le_bytes());
    body.extend_from_slice(&[space, 64, 0, 0]);
    body.extend_from_slice(&base.to_le_bytes());
    body.push(0);
    body.extend_from_slice(&0x80u16.to_le_bytes());
    body.push(0);
    sdt(b"HPET", 1, &body)
}

pub const RSDP_ADDR: u64 = 0xF_5A40;
pub const RSDT_ADDR: u64 = 0x7FD_0000;
pub const XSDT_ADDR: u64 = 0x7FD_8000;
pub const TABLE_BASE: u64 = 0x7FE_0000;

/// Physical address of the `i`th table placed by [`machine`]: 1 MiB apart, room for the
/// largest table the crate accepts.
pub fn table_addr(i: usize) -> u64 {
    TABLE_BASE + i as u64 * u64::from(exo_acpi::MAX_TABLE_LEN)
}

/// Which root tables [`machine`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// ACPI 1.0: RSDP v1 + RSDT.
    Rsdt,
    /// ACPI 2.0+: RSDP v2 + XSDT + RSDT, both listing the same tables.
    Xsdt,
}

/// A fake machine: the tables at [`table_addr`]`(i)`, root table(s), RSDP at [`RSDP_ADDR`].
pub fn machine(tables: &[Vec<u8>], root: Root) -> FakeMem {
    let mut mem = FakeMem::new();
    for (i, t) in tables.iter().enumerate() {
        mem.put(table_addr(i), t.clone());
    }
    let addrs: Vec<u64> = (0..tables.len()).map(table_addr).collect();
    let addrs32: Vec<u32> = addrs.iter().map(|&a| a as u32).collect();
    mem.put(RSDT_ADDR, rsdt(&addrs32));
    match root {
        Root::Rsdt => mem.put(RSDP_ADDR, rsdp_v1(RSDT_ADDR as u32)),
        Root::Xsdt => {
            mem.put(XSDT_ADDR, xsdt(&addrs));
            mem.put(RSDP_ADDR, rsdp_v2(RSDT_ADDR as u32, XSDT_ADDR));
        }
    }
    mem
}

/// An MCFG with the given (base, segment, bus_start, bus_end) entries.
pub fn mcfg(entries: &[(u64, u16, u8, u8)]) -> Vec<u8> {
    let mut body = vec![0u8; 8];
    for &(base, seg, s, e) in entries {
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&seg.to_le_bytes());
        body.extend_from_slice(&[s, e, 0, 0, 0, 0]);
    }
    sdt(b"MCFG", 1, &body)
}
