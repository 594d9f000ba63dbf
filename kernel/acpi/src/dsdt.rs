//! DSDT: the virtio-mmio devices a virtual machine monitor describes in its AML (QEMU's
//! microvm, Firecracker with ACPI): `Device (VRxx) { Name (_HID, "LNRO0005") ...
//! Name (_CRS, ResourceTemplate () { Memory32Fixed (..., base, length) Interrupt (...) }) }`.
//!
//! Not an AML interpreter: a bounded scan of the AML bytes for that shape (every `Device`
//! op, its package length checked against the table, its own `_HID` and `_CRS` names before
//! any nested device). A `_CRS` computed by a method, or a device described another way, is
//! not found; the kernel's command line (`virtio_mmio.device=`, as Linux reads it) names such
//! devices. Each window found is checked (non-zero, 4-byte aligned, 512 bytes to 64 KiB,
//! below 4 GiB, not overlapping an earlier one) and at most [`MAX_VIRTIO_MMIO`] are kept;
//! the others are dropped with one aggregated warning.

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

/// `Name (_HID, "LNRO0005")`: NameOp, the name, StringPrefix, the string and its NUL.
const HID_VIRTIO_MMIO: &[u8] = b"\x08_HID\x0dLNRO0005\x00";
/// `Name (_CRS, Buffer ...`: NameOp, the name, BufferOp.
const CRS_BUFFER: &[u8] = b"\x08_CRS\x11";
/// ExtOpPrefix, DeviceOp.
const DEVICE_OP: &[u8] = &[0x5B, 0x82];

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
/// that overlaps one listed earlier (a repeat too) is dropped like an unusable one.
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
    for w in virtio_mmio_in_aml(&aml) {
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
    let mut at = 0;
    core::iter::from_fn(move || {
        while let Some(p) = find(aml.get(at..)?, DEVICE_OP) {
            let start = at + p + DEVICE_OP.len();
            // The next search starts inside this device: nested devices are devices too.
            at = start;
            let Some(body) = package(aml, start) else {
                continue;
            };
            // Its own names come before any nested device.
            let own = &body[..find(body, DEVICE_OP).unwrap_or(body.len())];
            if find(own, HID_VIRTIO_MMIO).is_none() {
                continue;
            }
            let Some(c) = find(own, CRS_BUFFER) else {
                continue;
            };
            if let Some(w) = buffer(own, c + CRS_BUFFER.len()).and_then(window) {
                return Some(w);
            }
        }
        None
    })
}

/// The first index of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the AML PkgLength at `aml[at..]`: the package's bytes after its length field, if
/// they lie inside `aml`.
fn package(aml: &[u8], at: usize) -> Option<&[u8]> {
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
    // The length counts its own bytes.
    let body = len.checked_sub(1 + extra)?;
    aml.get(at + 1 + extra..)?.get(..body)
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
        body.extend_from_slice(HID_VIRTIO_MMIO);
        body.extend_from_slice(b"\x08_UID\x0a\x00");
        body.extend_from_slice(CRS_BUFFER);
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
