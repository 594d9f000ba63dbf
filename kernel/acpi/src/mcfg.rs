//! MCFG: where PCI Express configuration space is memory-mapped (ECAM), per segment and bus
//! range. Each 16-byte entry is checked (base 1 MiB-aligned and non-zero, start bus <= end
//! bus, the whole window below 2^52); a bad entry is dropped with a warning, the good ones
//! are kept (at most [`MAX_ECAM_REGIONS`]).

use crate::error::{push_warning, reserve};
use crate::sdt::Table;
use crate::{AcpiError, PhysMem, Warning};
use alloc::vec::Vec;

/// Entries kept; a real machine has one per PCI segment (almost always one).
pub const MAX_ECAM_REGIONS: usize = 16;
/// Offset of the first entry: the header plus 8 reserved bytes.
const FIRST: u32 = 44;
const ENTRY: u32 = 16;

/// One ECAM window: bus `b`, device `d`, function `f` of `segment` has its 4 KiB of
/// configuration space at `base + (b << 20 | d << 15 | f << 12)`, for `b` in
/// `bus_start..=bus_end`. The base is the address bus 0 would have even when the window
/// starts at a later bus (PCI Firmware Specification; Linux and Xen read it so): the window
/// itself begins at [`EcamRegion::start`]. Until 2026-12-05 it was taken as the address of
/// `bus_start` (found by review): a segment split over two entries read bus 0 for bus 0x80.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    /// The MCFG's base address: where bus 0's configuration space would be.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded (inclusive).
    pub bus_end: u8,
}

impl EcamRegion {
    /// Physical address of the configuration space of `bus:dev.func`, if this window decodes
    /// that bus (and `dev < 32`, `func < 8`).
    pub fn config_addr(&self, bus: u8, dev: u8, func: u8) -> Option<u64> {
        if bus < self.bus_start || bus > self.bus_end || dev >= 32 || func >= 8 {
            return None;
        }
        let off = (u64::from(bus) << 20) | (u64::from(dev) << 15) | (u64::from(func) << 12);
        Some(self.base + off)
    }

    /// Physical address of the window's first byte: bus `bus_start`'s configuration space.
    pub fn start(&self) -> u64 {
        self.base + (u64::from(self.bus_start) << 20)
    }

    /// Bytes the window spans from [`EcamRegion::start`].
    pub fn len(&self) -> u64 {
        (u64::from(self.bus_end) - u64::from(self.bus_start) + 1) << 20
    }

    /// Never true: a window decodes at least one bus (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The window cut to the buses whose configuration space ends at or below `limit`
    /// (`None`: not even `bus_start`'s does). Firmware that states more buses than fit
    /// below the chipset's range (a window at `0xF000_0000` for 256 buses reaches
    /// `0xFFFF_FFFF`) has the buses below it decoded and nothing above: the window is
    /// trimmed to them rather than dropped whole (as Linux trims MCFG windows).
    pub fn below(&self, limit: u64) -> Option<EcamRegion> {
        let start = self.start();
        if start.saturating_add(self.len()) <= limit {
            return Some(*self);
        }
        let buses = limit.checked_sub(start)? >> 20;
        if buses == 0 {
            return None;
        }
        let bus_end = u64::from(self.bus_start) + buses - 1;
        Some(EcamRegion {
            bus_end: bus_end as u8,
            ..*self
        })
    }
}

/// The ECAM windows of a validated MCFG.
pub(crate) fn parse_mcfg<M: PhysMem + ?Sized>(
    t: &Table<'_, M>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<EcamRegion>, AcpiError> {
    t.require_len(FIRST)?;
    let n = (t.len - FIRST) / ENTRY;
    let mut out = Vec::new();
    reserve(&mut out, (n as usize).min(MAX_ECAM_REGIONS), "MCFG regions")?;
    let (mut bad, mut first_bad) = (0u32, None);
    for i in 0..n {
        let off = FIRST + i * ENTRY;
        let e: [u8; 16] = t.bytes(off)?;
        let r = EcamRegion {
            base: u64::from_le_bytes(e[0..8].try_into().unwrap_or_default()),
            segment: u16::from_le_bytes([e[8], e[9]]),
            bus_start: e[10],
            bus_end: e[11],
        };
        let sane = r.base != 0
            && r.base.is_multiple_of(1 << 20)
            && r.bus_start <= r.bus_end
            && r.base
                .checked_add((u64::from(r.bus_end) + 1) << 20)
                .is_some_and(|end| end <= 1 << 52);
        if !sane || out.len() == MAX_ECAM_REGIONS {
            bad += 1;
            first_bad.get_or_insert((i, r.base));
            continue;
        }
        out.push(r);
    }
    if let Some((index, base)) = first_bad {
        push_warning(
            warnings,
            Warning::BadMcfgEntry {
                index,
                base,
                count: bad,
            },
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::EcamRegion;

    fn w(base: u64, bus_start: u8, bus_end: u8) -> EcamRegion {
        EcamRegion {
            base,
            segment: 0,
            bus_start,
            bus_end,
        }
    }

    #[test]
    fn below_keeps_a_window_that_fits() {
        assert_eq!(
            w(0xB000_0000, 0, 255).below(0xFEC0_0000),
            Some(w(0xB000_0000, 0, 255))
        );
        assert_eq!(
            w(0xE000_0000, 0, 255).below(0xF000_0000),
            Some(w(0xE000_0000, 0, 255))
        );
    }

    #[test]
    fn below_trims_the_buses_past_the_limit() {
        // 0xF000_0000 + 236 MiB = 0xFEC0_0000: buses 0..=235 fit.
        assert_eq!(
            w(0xF000_0000, 0, 255).below(0xFEC0_0000),
            Some(w(0xF000_0000, 0, 235))
        );
        // A window starting at bus 16: its first byte is base + 16 MiB.
        assert_eq!(
            w(0xF000_0000, 16, 255).below(0xFEC0_0000),
            Some(w(0xF000_0000, 16, 235))
        );
        let t = w(0xF000_0000, 0, 255).below(0xFEC0_0000).unwrap();
        assert_eq!(t.start() + t.len(), 0xFEC0_0000);
    }

    #[test]
    fn below_refuses_a_window_with_no_bus_below_the_limit() {
        assert_eq!(w(0xFEC0_0000, 0, 3).below(0xFEC0_0000), None);
        assert_eq!(w(0xFED0_0000, 0, 3).below(0xFEC0_0000), None);
        // Less than one bus's 1 MiB below the limit.
        assert_eq!(w(0xFEB8_0000, 0, 3).below(0xFEC0_0000), None);
    }
}
