//! DSDT: the virtio-mmio devices a virtual machine monitor describes in its AML (QEMU's
//! microvm, Firecracker with ACPI): `Device (VRxx) { Name (_HID, "LNRO0005") ...
//! Name (_CRS, ResourceTemplate () { Memory32Fixed (..., base, length) Interrupt (...) }) }`.
//!
//! Not an AML interpreter: a bounded scan of the AML bytes for that shape (every `Device`
//! op, its package length checked against the table, then its own objects walked one by one,
//! each decoded to its end, up to any nested device or a fixed step budget, for its `_HID`
//! and `_CRS` names: the scan is linear in the AML's length, whatever its bytes). A
//! `LNRO0005` device whose window the scan cannot decode (a `_CRS` computed by a method, say)
//! is not used and is named in a warning; a device described another way is not found. The
//! kernel's command line (`virtio_mmio.device=`, as Linux reads it) names such devices. Each
//! window found is checked (non-zero, 4-byte aligned, 512 bytes to 64 KiB, below 4 GiB, not
//! overlapping an earlier one) and at most [`MAX_VIRTIO_MMIO`] are kept; the others are
//! dropped with one aggregated warning.

use crate::error::{push_warning, reserve, try_push};
use crate::sdt::{HEADER_LEN, Table};
use crate::{AcpiError, PhysMem, Warning};
use alloc::vec::Vec;

/// Windows kept (QEMU's microvm has 24 slots).
pub const MAX_VIRTIO_MMIO: usize = 32;

/// The smallest window taken: QEMU's slot size (registers to 0x100, then the device's
/// configuration).
const MIN_WINDOW: u32 = 0x200;
/// The largest window taken.
const MAX_WINDOW: u32 = 0x1_0000;

/// The value of `Name (_HID, "LNRO0005")`: StringPrefix, the string and its NUL.
const HID_VIRTIO_MMIO: &[u8] = b"\x0dLNRO0005\x00";
/// ExtOpPrefix, DeviceOp.
const DEVICE_OP: &[u8] = &[0x5B, 0x82];

// AML opcodes the walk over a device's own objects knows (ACPI 6.5, 20.3).
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const NAME_OP: u8 = 0x08;
const BYTE_PREFIX: u8 = 0x0A;
const WORD_PREFIX: u8 = 0x0B;
const DWORD_PREFIX: u8 = 0x0C;
const STRING_PREFIX: u8 = 0x0D;
const QWORD_PREFIX: u8 = 0x0E;
const SCOPE_OP: u8 = 0x10;
const BUFFER_OP: u8 = 0x11;
const PACKAGE_OP: u8 = 0x12;
const VAR_PACKAGE_OP: u8 = 0x13;
const METHOD_OP: u8 = 0x14;
const IF_OP: u8 = 0xA0;
const ELSE_OP: u8 = 0xA1;
const WHILE_OP: u8 = 0xA2;
const ONES_OP: u8 = 0xFF;
const EXT_OP: u8 = 0x5B;
// After EXT_OP:
const MUTEX_OP: u8 = 0x01;
const EVENT_OP: u8 = 0x02;
const REVISION_OP: u8 = 0x30;
const OP_REGION_OP: u8 = 0x80;
const FIELD_OP: u8 = 0x81;
const INDEX_FIELD_OP: u8 = 0x86;
const BANK_FIELD_OP: u8 = 0x87;

/// Large resource descriptor: 32-bit fixed memory range (ACPI 6.5, 6.4.3.4).
const RES_MEMORY32_FIXED: u8 = 0x86;
/// Large resource descriptor: extended interrupt (ACPI 6.5, 6.4.3.6).
const RES_EXT_IRQ: u8 = 0x89;
/// Small resource descriptor type of the end tag.
const RES_END: u8 = 0x0F;

/// One virtio-mmio device window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Physical base of its registers.
    pub base: u64,
    /// Length of the window in bytes.
    pub len: u32,
    /// Its interrupt (global system interrupt), if the `_CRS` names one.
    pub gsi: Option<u32>,
}

impl VirtioMmio {
    /// Whether the window is one a driver can use: non-zero and 4-byte aligned, 512 bytes to
    /// 64 KiB long, all of it below 4 GiB.
    #[must_use]
    pub fn is_usable(&self) -> bool {
        self.base != 0
            && self.base.is_multiple_of(4)
            && (MIN_WINDOW..=MAX_WINDOW).contains(&self.len)
            && self
                .base
                .checked_add(u64::from(self.len))
                .is_some_and(|end| end <= 1 << 32)
    }
}

/// The virtio-mmio devices of a validated DSDT, in the order the AML lists them; a window
/// that overlaps one listed earlier (a repeat too) is dropped like an unusable one, and a
/// device whose window could not be decoded is counted in [`Warning::UndecodedVirtioMmio`].
pub(crate) fn parse_dsdt<M: PhysMem + ?Sized>(
    t: &Table<'_, M>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<VirtioMmio>, AcpiError> {
    let n = (t.len - HEADER_LEN) as usize;
    let mut aml = Vec::new();
    reserve(&mut aml, n, "DSDT")?;
    aml.resize(n, 0);
    t.read(HEADER_LEN, &mut aml)?;
    let mut found = Vec::new();
    let mut dropped: Option<(VirtioMmio, u32)> = None;
    let mut undecoded: Option<(usize, u32)> = None;
    for d in devices(&aml) {
        let w = match d {
            Found::Window(w) => w,
            Found::Undecoded { at } => {
                let u = undecoded.get_or_insert((at, 0));
                u.1 = u.1.saturating_add(1);
                continue;
            }
        };
        let overlaps = |f: &VirtioMmio| {
            f.base < w.base.saturating_add(u64::from(w.len)) && w.base < f.base + u64::from(f.len)
        };
        if !w.is_usable() || found.iter().any(overlaps) || found.len() == MAX_VIRTIO_MMIO {
            let d = dropped.get_or_insert((w, 0));
            d.1 = d.1.saturating_add(1);
            continue;
        }
        if found.is_empty() {
            reserve(&mut found, MAX_VIRTIO_MMIO, "virtio-mmio windows")?;
        }
        try_push(&mut found, w, "virtio-mmio windows")?;
    }
    if let Some((at, count)) = undecoded {
        push_warning(
            warnings,
            Warning::UndecodedVirtioMmio {
                // The AML is shorter than the table (at most 1 MiB).
                offset: HEADER_LEN + at as u32,
                count,
            },
        )?;
    }
    if let Some((w, count)) = dropped {
        push_warning(
            warnings,
            Warning::BadVirtioMmio {
                base: w.base,
                len: w.len,
                count,
            },
        )?;
    }
    Ok(found)
}

/// Every `LNRO0005` device of `aml` (the table's body) with a fixed 32-bit memory window, as
/// written (unchecked).
pub fn virtio_mmio_in_aml(aml: &[u8]) -> impl Iterator<Item = VirtioMmio> + '_ {
    devices(aml).filter_map(|d| match d {
        Found::Window(w) => Some(w),
        Found::Undecoded { .. } => None,
    })
}

/// What the scan makes of one `LNRO0005` device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// Its `_CRS` buffer names a fixed 32-bit memory window.
    Window(VirtioMmio),
    /// Its window could not be decoded: no `_CRS` among the names the walk reached, a `_CRS`
    /// that is not a buffer (a method), or a buffer without a `Memory32Fixed` descriptor.
    Undecoded {
        /// Offset of its `Device` op in the AML.
        at: usize,
    },
}

/// Every `LNRO0005` device of `aml`, in order: its window, or that it has none decoded.
fn devices(aml: &[u8]) -> Devices<'_> {
    Devices {
        aml,
        at: 0,
        steps: 0,
    }
}

/// The iterator of [`devices`].
struct Devices<'a> {
    aml: &'a [u8],
    /// Where the search for the next `Device` op starts.
    at: usize,
    /// Steps the walks over devices' names took so far ([`WALK_BUDGET`] each at most).
    steps: usize,
}

impl Iterator for Devices<'_> {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        let aml = self.aml;
        while let Some(p) = find(aml.get(self.at..)?, DEVICE_OP) {
            let op = self.at + p;
            let start = op + DEVICE_OP.len();
            // The next search starts inside this device: nested devices are devices too.
            self.at = start;
            let Some(body) = package(aml, start) else {
                continue;
            };
            let mut left = WALK_BUDGET;
            let names = own_names(body, &mut left);
            self.steps += WALK_BUDGET - left;
            if !names.virtio_mmio {
                continue;
            }
            return Some(match names.crs.and_then(window) {
                Some(w) => Found::Window(w),
                None => Found::Undecoded { at: op },
            });
        }
        None
    }
}

/// The steps one device's walk over its names may take ([`own_names`]): one per object,
/// one per byte of a name or string read. A real device takes a few dozen (QEMU microvm's
/// virtio-mmio devices 18, no device of QEMU's q35 DSDT more than 39, measured 2026-12-06);
/// buffers, packages and methods are stepped over by their length, at one step. Every
/// 5B 82 in the AML is walked, those inside other objects' data too, and each walk could
/// run to the end of its package: until 2026-12-06 a 1 MiB hostile DSDT of fake devices
/// inside buffers took 38 s to scan (a boot hang; found by review); with the budget that
/// probe takes 76 ms (host, release build), 65 000 walks of 128 steps.
const WALK_BUDGET: usize = 128;

/// Takes `n` steps from `left`; `None` (and nothing taken) when fewer are left.
fn spend(left: &mut usize, n: usize) -> Option<()> {
    *left = left.checked_sub(n)?;
    Some(())
}

/// What a device's own names say.
#[derive(Default)]
struct Names<'a> {
    /// Its `_HID` is the string `LNRO0005`.
    virtio_mmio: bool,
    /// The bytes of its `_CRS`, when that is a buffer.
    crs: Option<&'a [u8]>,
}

/// The names of a device whose package body (after its PkgLength) is `body`: its NameString,
/// then its objects one by one, each decoded to its end, so bytes inside a name's value (a
/// `_CRS` window holding 5B 82, say) are never taken for an op. The walk stops at a nested
/// device-like object (its names are its own), at the body's end, and at anything it cannot
/// step over, and once `left` steps are spent ([`WALK_BUDGET`]); what it reached by then is
/// what the device says. Until 2026-12-06 the body was cut at the first 5B 82 bytes,
/// wherever they lay (found by review).
fn own_names<'a>(body: &'a [u8], left: &mut usize) -> Names<'a> {
    let mut names = Names::default();
    let Some(mut i) = name_string(body, 0, left) else {
        return names;
    };
    while let Some(&op) = body.get(i) {
        if spend(left, 1).is_none() {
            break;
        }
        let next = match (op, body.get(i + 1).copied()) {
            (NAME_OP, _) => name_string(body, i + 1, left).and_then(|value| {
                let end = data_object(body, value, left)?;
                match body.get(i + 1..value)? {
                    b"_HID" => {
                        names.virtio_mmio = body.get(value..end) == Some(HID_VIRTIO_MMIO);
                    }
                    b"_CRS" if body.get(value) == Some(&BUFFER_OP) => {
                        names.crs = buffer(body, value + 1);
                    }
                    _ => {}
                }
                Some(end)
            }),
            (METHOD_OP | IF_OP | ELSE_OP | WHILE_OP | SCOPE_OP, _) => skip_package(body, i + 1),
            (EXT_OP, Some(FIELD_OP | INDEX_FIELD_OP | BANK_FIELD_OP)) => skip_package(body, i + 2),
            // OperationRegion (name, space, offset, length), with constant offset and length.
            (EXT_OP, Some(OP_REGION_OP)) => name_string(body, i + 2, left)
                .and_then(|space| data_object(body, space + 1, left))
                .and_then(|len| data_object(body, len, left)),
            (EXT_OP, Some(MUTEX_OP)) => name_string(body, i + 2, left).map(|flags| flags + 1),
            (EXT_OP, Some(EVENT_OP)) => name_string(body, i + 2, left),
            // A nested Device, Processor, PowerResource or ThermalZone, or an object this walk
            // does not know: stop.
            _ => None,
        };
        let Some(next) = next else {
            break;
        };
        i = next;
    }
    names
}

/// The end of the NameString at `aml[at..]`: root and parent prefixes, then a NameSeg, a
/// dual or multi-part name, or the null name. Each NameSeg starts with `A`-`Z` or `_`.
/// Each prefix and NameSeg costs a step of `left`; `None` when they run out.
fn name_string(aml: &[u8], at: usize, left: &mut usize) -> Option<usize> {
    let mut i = at;
    while matches!(aml.get(i), Some(b'\\' | b'^')) {
        spend(left, 1)?;
        i += 1;
    }
    let segs = match *aml.get(i)? {
        0x00 => return Some(i + 1),
        0x2E => {
            i += 1;
            2
        }
        0x2F => {
            let n = usize::from(*aml.get(i + 1)?);
            i += 2;
            n
        }
        _ => 1,
    };
    spend(left, segs)?;
    for s in 0..segs {
        let seg = aml.get(i + 4 * s..i + 4 * s + 4)?;
        if !(seg[0].is_ascii_uppercase() || seg[0] == b'_') {
            return None;
        }
    }
    Some(i + 4 * segs)
}

/// The end of the data object at `aml[at..]`: an integer or string constant, a buffer or a
/// package; `None` for anything else (a reference, an expression). A string costs `left` a
/// step a byte; `None` when its NUL is not found in the steps left.
fn data_object(aml: &[u8], at: usize, left: &mut usize) -> Option<usize> {
    let end = match *aml.get(at)? {
        ZERO_OP | ONE_OP | ONES_OP => at + 1,
        BYTE_PREFIX => at + 2,
        WORD_PREFIX => at + 3,
        DWORD_PREFIX => at + 5,
        QWORD_PREFIX => at + 9,
        STRING_PREFIX => {
            let rest = aml.get(at + 1..)?;
            let scan = &rest[..rest.len().min(*left)];
            let Some(len) = scan.iter().position(|&b| b == 0) else {
                *left -= scan.len();
                return None;
            };
            spend(left, len + 1)?;
            at + 2 + len
        }
        BUFFER_OP | PACKAGE_OP | VAR_PACKAGE_OP => return skip_package(aml, at + 1),
        EXT_OP if aml.get(at + 1) == Some(&REVISION_OP) => at + 2,
        _ => return None,
    };
    (end <= aml.len()).then_some(end)
}

/// The first index of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the AML PkgLength at `aml[at..]`: the length of the field itself and the
/// package's length (which counts the field).
fn pkg_length(aml: &[u8], at: usize) -> Option<(usize, usize)> {
    let lead = *aml.get(at)?;
    let extra = usize::from(lead >> 6);
    let mut len = if extra == 0 {
        usize::from(lead & 0x3F)
    } else {
        usize::from(lead & 0x0F)
    };
    for i in 0..extra {
        len |= usize::from(*aml.get(at + 1 + i)?) << (4 + 8 * i);
    }
    Some((1 + extra, len))
}

/// The package's bytes after its PkgLength at `aml[at..]`, if they lie inside `aml`.
fn package(aml: &[u8], at: usize) -> Option<&[u8]> {
    let (field, len) = pkg_length(aml, at)?;
    let body = len.checked_sub(field)?;
    aml.get(at + field..)?.get(..body)
}

/// The end of the package whose PkgLength is at `aml[at..]`, if it lies inside `aml`.
fn skip_package(aml: &[u8], at: usize) -> Option<usize> {
    let body = package(aml, at)?;
    Some(at + pkg_length(aml, at)?.0 + body.len())
}

/// The bytes of the `Buffer` whose PkgLength is at `aml[at..]` (after its size term),
/// no longer than the size term says.
fn buffer(aml: &[u8], at: usize) -> Option<&[u8]> {
    let pkg = package(aml, at)?;
    let (size, rest) = match *pkg.first()? {
        0x00 => (0, &pkg[1..]),
        0x01 => (1, &pkg[1..]),
        0x0A => (usize::from(*pkg.get(1)?), pkg.get(2..)?),
        0x0B => (
            usize::from(u16::from_le_bytes([*pkg.get(1)?, *pkg.get(2)?])),
            pkg.get(3..)?,
        ),
        0x0C => (
            usize::try_from(u32::from_le_bytes(pkg.get(1..5)?.try_into().ok()?)).ok()?,
            pkg.get(5..)?,
        ),
        _ => return None,
    };
    Some(&rest[..size.min(rest.len())])
}

/// The memory window and first interrupt of a resource template; `None` without a
/// `Memory32Fixed` descriptor. Walks to the end tag or the buffer's end, whichever is first.
fn window(res: &[u8]) -> Option<VirtioMmio> {
    let (mut mem, mut gsi) = (None, None);
    let mut i = 0;
    while let Some(&tag) = res.get(i) {
        if tag & 0x80 == 0 {
            if (tag >> 3) & 0x0F == RES_END {
                break;
            }
            i += 1 + usize::from(tag & 7);
            continue;
        }
        let len = usize::from(u16::from_le_bytes([*res.get(i + 1)?, *res.get(i + 2)?]));
        let data = res.get(i + 3..)?.get(..len)?;
        match tag {
            RES_MEMORY32_FIXED if len >= 9 && mem.is_none() => {
                let base = u32::from_le_bytes(data[1..5].try_into().ok()?);
                let size = u32::from_le_bytes(data[5..9].try_into().ok()?);
                mem = Some((u64::from(base), size));
            }
            RES_EXT_IRQ if len >= 6 && data[1] >= 1 && gsi.is_none() => {
                gsi = Some(u32::from_le_bytes(data[2..6].try_into().ok()?));
            }
            _ => {}
        }
        i += 3 + len;
    }
    let (base, len) = mem?;
    Some(VirtioMmio { base, len, gsi })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PkgLength of `n` body bytes (2-byte encoding, as QEMU writes device packages).
    fn pkg(body: &[u8]) -> Vec<u8> {
        let len = body.len() + 2;
        assert!(len < 1 << 12);
        let mut v = vec![0x40 | (len & 0x0F) as u8, (len >> 4) as u8];
        v.extend_from_slice(body);
        v
    }

    /// `Device (name) { _HID "LNRO0005", _UID, _CRS { Memory32Fixed, Interrupt } }`.
    pub(crate) fn device(name: &[u8; 4], base: u32, len: u32, irq: u32) -> Vec<u8> {
        let mut res = vec![RES_MEMORY32_FIXED, 9, 0, 1];
        res.extend_from_slice(&base.to_le_bytes());
        res.extend_from_slice(&len.to_le_bytes());
        res.extend_from_slice(&[RES_EXT_IRQ, 6, 0, 0x0B, 1]);
        res.extend_from_slice(&irq.to_le_bytes());
        res.extend_from_slice(&[0x79, 0]);
        let mut buf = vec![0x0A, res.len() as u8];
        buf.extend_from_slice(&res);
        let mut body = name.to_vec();
        body.extend_from_slice(b"\x08_HID");
        body.extend_from_slice(HID_VIRTIO_MMIO);
        body.extend_from_slice(b"\x08_UID\x0a\x00");
        body.extend_from_slice(b"\x08_CRS\x11");
        body.extend_from_slice(&pkg(&buf));
        let mut d = DEVICE_OP.to_vec();
        d.extend_from_slice(&pkg(&body));
        d
    }

    #[test]
    fn finds_each_device_with_its_window_and_interrupt() {
        let mut aml = b"\x10\x05_SB_".to_vec();
        aml.extend(device(b"VR00", 0xFEB0_0000, 0x200, 12));
        aml.extend(device(b"VR01", 0xFEB0_0200, 0x200, 13));
        let got: Vec<_> = virtio_mmio_in_aml(&aml).collect();
        assert_eq!(
            got,
            [
                VirtioMmio {
                    base: 0xFEB0_0000,
                    len: 0x200,
                    gsi: Some(12)
                },
                VirtioMmio {
                    base: 0xFEB0_0200,
                    len: 0x200,
                    gsi: Some(13)
                }
            ]
        );
    }

    #[test]
    fn another_hid_is_not_taken() {
        let aml = device(b"VR00", 0xFEB0_0000, 0x200, 12);
        let mut other = aml.clone();
        let p = find(&other, b"LNRO0005").unwrap();
        other[p..p + 8].copy_from_slice(b"PNP0501\0");
        assert_eq!(virtio_mmio_in_aml(&aml).count(), 1);
        assert_eq!(virtio_mmio_in_aml(&other).count(), 0);
    }

    #[test]
    fn every_truncation_and_every_byte_flip_is_refused_without_panic() {
        let aml = device(b"VR00", 0xFEB0_0000, 0x200, 12);
        for cut in 0..aml.len() {
            // A cut package runs past the table: nothing is found (no partial window).
            assert_eq!(virtio_mmio_in_aml(&aml[..cut]).count(), 0, "cut at {cut}");
        }
        for i in 0..aml.len() {
            for b in [0x00, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF] {
                let mut m = aml.clone();
                m[i] = b;
                // Whatever it finds is bounded by the bytes; no panic, no hang.
                assert!(virtio_mmio_in_aml(&m).count() <= 1);
            }
        }
    }

    #[test]
    fn a_nested_device_does_not_lend_its_names_to_its_parent() {
        // Parent without _HID, child a virtio-mmio device: one device (the child).
        let child = device(b"VR00", 0xFEB0_0000, 0x200, 12);
        let mut body = b"PCI0".to_vec();
        body.extend_from_slice(&child);
        let mut aml = DEVICE_OP.to_vec();
        aml.extend(pkg(&body));
        assert_eq!(virtio_mmio_in_aml(&aml).count(), 1);
    }

    /// A window whose bytes hold a `Device` op (5B 82) is found: the device's own names are
    /// walked object by object, not cut at the first 5B 82 (until 2026-12-06 the cut fell
    /// inside the `_CRS` buffer and the device was lost without a warning; found by review).
    #[test]
    fn a_window_holding_device_op_bytes_is_found() {
        for base in [0xD082_5B00, 0x825B_0000, 0x5B82_0000] {
            let got: Vec<_> = virtio_mmio_in_aml(&device(b"VR00", base, 0x200, 12)).collect();
            assert_eq!(
                got,
                [VirtioMmio {
                    base: u64::from(base),
                    len: 0x200,
                    gsi: Some(12)
                }],
                "{base:#x}"
            );
        }
        // And as the length or the interrupt.
        assert_eq!(
            virtio_mmio_in_aml(&device(b"VR00", 0xFEB0_0000, 0x5B82, 0x825B)).count(),
            1
        );
    }

    /// `Device (name) { <objects> }` around raw object bytes.
    fn device_of(name: &[u8; 4], objects: &[u8]) -> Vec<u8> {
        let mut body = name.to_vec();
        body.extend_from_slice(objects);
        let mut d = DEVICE_OP.to_vec();
        d.extend_from_slice(&pkg(&body));
        d
    }

    /// The objects of [`device`]'s body (after its name).
    fn objects_of(d: &[u8]) -> Vec<u8> {
        package(d, DEVICE_OP.len()).unwrap()[4..].to_vec()
    }

    #[test]
    fn objects_before_the_names_are_stepped_over() {
        let names = objects_of(&device(b"VR00", 0xFEB0_0000, 0x200, 12));
        // OperationRegion (REGN, SystemMemory, 0xFEB00000, 0x10), Field (REGN, ...) { ... },
        // Method (_STA) { Return (0x0F) }, Name (_CCA, One), Mutex (MTX0, 0), Event (EVT0),
        // Name (_STR, Unicode-ish string), Name (PKG0, Package { 1 }).
        let mut objects = b"\x5b\x80REGN\x00\x0c\x00\x00\xb0\xfe\x0a\x10".to_vec();
        objects.extend_from_slice(b"\x5b\x81\x0bREGN\x01FLD0\x20");
        objects.extend_from_slice(b"\x14\x09_STA\x00\xa4\x0a\x0f");
        objects.extend_from_slice(b"\x08_CCA\x01\x5b\x01MTX0\x00\x5b\x02EVT0");
        objects.extend_from_slice(b"\x08_STR\x0dvirtio\x00\x08PKG0\x12\x03\x01\x01");
        objects.extend_from_slice(&names);
        let got: Vec<_> = devices(&device_of(b"VR00", &objects)).collect();
        assert_eq!(
            got,
            [Found::Window(VirtioMmio {
                base: 0xFEB0_0000,
                len: 0x200,
                gsi: Some(12)
            })]
        );
    }

    /// A virtio-mmio device whose window cannot be decoded is reported, not passed over.
    #[test]
    fn a_device_without_a_decodable_window_is_reported() {
        let hid = b"\x08_HID\x0dLNRO0005\x00";
        // `_CRS` computed by a method.
        let mut method = hid.to_vec();
        method.extend_from_slice(b"\x14\x0b_CRS\x00\xa4\x0aX\x00\x00");
        // No `_CRS` at all.
        let none = hid.to_vec();
        // A `_CRS` buffer without a Memory32Fixed descriptor (only the end tag).
        let mut no_mem = hid.to_vec();
        no_mem.extend_from_slice(b"\x08_CRS\x11\x05\x0a\x02\x79\x00");
        // The `_CRS` after an object the walk cannot step over (a Store expression).
        let mut after_unknown = hid.to_vec();
        after_unknown.extend_from_slice(b"\x70\x0a\x01\x60");
        let names = objects_of(&device(b"VR00", 0xFEB0_0000, 0x200, 1));
        let uid = find(&names, b"\x08_UID").unwrap();
        after_unknown.extend_from_slice(&names[uid..]);
        let mut aml = Vec::new();
        for (i, objects) in [method, none, no_mem, after_unknown].iter().enumerate() {
            let start = aml.len();
            aml.extend(device_of(b"VR0A", objects));
            assert_eq!(
                devices(&aml[start..]).collect::<Vec<_>>(),
                [Found::Undecoded { at: 0 }],
                "case {i}"
            );
        }
        assert_eq!(devices(&aml).count(), 4);
        assert_eq!(virtio_mmio_in_aml(&aml).count(), 0);
        // Another `_HID`: not a virtio-mmio device, nothing said.
        let mut other = b"\x08_HID\x0dPNP0501\x00".to_vec();
        other.extend_from_slice(b"\x14\x0b_CRS\x00\xa4\x0aX\x00\x00");
        assert_eq!(devices(&device_of(b"COM1", &other)).count(), 0);
    }

    /// The PkgLength (3-byte encoding) of a package running from `at` to `end`; with
    /// `no_nul`, a little short of it if need be for no zero byte (a NUL would end the
    /// strings of [`hostile`]'s second shape; only the last 4 KiB's have one).
    fn pkg3_to(at: usize, end: usize, no_nul: bool) -> [u8; 3] {
        let mut len = end - at;
        while no_nul && len >= 1 << 12 && (len & 0xFF0 == 0 || len >> 12 == 0) {
            len -= 1;
        }
        assert!(len < 1 << 20);
        [
            0x80 | (len & 0x0F) as u8,
            (len >> 4) as u8,
            (len >> 12) as u8,
        ]
    }

    /// A hostile AML of `units` fake devices, each in the data of an object of the one before
    /// and each package running to the AML's end, so that every walk without a bound runs
    /// to the end: `shape` 0, each a Name whose buffer holds the next device (the review's
    /// probe); 1, each a Name whose string holds the next device, no NUL anywhere; 2, each
    /// a buffer holding the next, all ending at one long run of `^` prefixes.
    fn hostile(shape: u8, units: usize) -> Vec<u8> {
        let mut aml = Vec::new();
        match shape {
            0 | 1 => {
                let end = units * 16;
                for _ in 0..units {
                    aml.extend_from_slice(if shape == 0 {
                        b"\x08NNNN\x11\x0a\x5b\x82"
                    } else {
                        b"\x08NNNN\x0dz\x5b\x82"
                    });
                    aml.extend(pkg3_to(aml.len(), end, true));
                    aml.extend_from_slice(b"MMMM");
                }
            }
            _ => {
                // Device (MMMM) { Name (NNNN, Buffer { <the next device> }) ... }, the
                // buffers all ending where the devices' last object begins: Name (^^..^NNNN,
                // One) with a run of 16 `^` a device. Every device's walk reaches the run.
                let buffers_end = units * 18;
                let end = buffers_end + 1 + units * 16 + 5;
                for _ in 0..units {
                    aml.extend_from_slice(b"\x5b\x82");
                    aml.extend(pkg3_to(aml.len(), end, false));
                    aml.extend_from_slice(b"MMMM\x08NNNN\x11");
                    aml.extend(pkg3_to(aml.len(), buffers_end, false));
                }
                aml.push(NAME_OP);
                aml.resize(end - 5, b'^');
                aml.extend_from_slice(b"NNNN\x01");
            }
        }
        aml
    }

    /// A hostile DSDT of fake devices (5B 82 inside other objects' data) takes a bounded
    /// number of steps per device: at most [`WALK_BUDGET`] each, linear in the AML's length.
    /// Until 2026-12-06 each fake device's walk ran to the end of its package: quadratic
    /// (1 MiB took 38 s on the host; found by review). Steps are counted, not timed.
    #[test]
    fn a_hostile_dsdt_is_scanned_in_bounded_steps() {
        for shape in 0..3 {
            let aml = hostile(shape, 2048);
            let fakes = aml.windows(2).filter(|w| w == &DEVICE_OP).count();
            assert!(fakes >= 2048, "shape {shape}: {fakes} devices");
            let mut d = devices(&aml);
            assert_eq!(d.by_ref().count(), 0, "shape {shape}");
            assert!(d.steps > 0);
            assert!(
                d.steps <= fakes * WALK_BUDGET && d.steps <= 40 * aml.len(),
                "shape {shape}: {} steps for {} bytes, {fakes} devices",
                d.steps,
                aml.len()
            );
        }
    }

    #[test]
    fn usable_windows() {
        let w = |base, len| VirtioMmio {
            base,
            len,
            gsi: None,
        };
        assert!(w(0xFEB0_0000, 0x200).is_usable());
        assert!(w(0xD000_0000, 0x1000).is_usable());
        assert!(!w(0, 0x200).is_usable());
        assert!(!w(0xFEB0_0002, 0x200).is_usable());
        assert!(!w(0xFEB0_0000, 0x100).is_usable());
        assert!(!w(0xFEB0_0000, 0x2_0000).is_usable());
        assert!(!w(0xFFFF_FF00, 0x200).is_usable());
    }
}
