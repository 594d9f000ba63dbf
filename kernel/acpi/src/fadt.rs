//! The two small fixed-layout tables: FADT (PM timer) and HPET (base address).

use crate::error::push_warning;
use crate::sdt::Table;
use crate::{AcpiError, PhysMem, Signature, Warning};
use alloc::vec::Vec;

/// ACPI 1.0 FADT length: everything up to and including the `Flags` field.
const FADT_V1_LEN: u32 = 116;
const FADT_PM_TMR_BLK: u32 = 76;
const FADT_PM_TMR_LEN: u32 = 91;
const FADT_FLAGS: u32 = 112;
const FADT_X_PM_TMR_BLK: u32 = 208;
const FADT_DSDT: u32 = 40;
const FADT_X_DSDT: u32 = 140;
const GAS_LEN: u32 = 12;
const FLAG_TMR_VAL_EXT: u32 = 1 << 8;
const FLAG_HW_REDUCED_ACPI: u32 = 1 << 20;

const HPET_BASE_GAS: u32 = 40;

const SPACE_MEMORY: u8 = 0;
const SPACE_IO: u8 = 1;

/// Where the ACPI PM timer counter register lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmTimerAddr {
    /// I/O port (read with a 32-bit `in`).
    Port(u16),
    /// Physical MMIO address (read with a 32-bit load).
    Mmio(u64),
}

/// The ACPI PM timer: a free-running counter at [`PmTimer::FREQUENCY_HZ`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    /// Counter register location.
    pub addr: PmTimerAddr,
    /// FADT flag `TMR_VAL_EXT`: the counter is 32 bits wide (otherwise 24).
    pub is_32bit: bool,
}

impl PmTimer {
    /// The PM timer ticks at 3.579545 MHz.
    pub const FREQUENCY_HZ: u32 = 3_579_545;

    /// Counter width in bits (24 or 32).
    pub fn bits(&self) -> u32 {
        if self.is_32bit { 32 } else { 24 }
    }
}

/// A Generic Address Structure: (space id, address).
fn read_gas<M: PhysMem + ?Sized>(t: &Table<'_, M>, off: u32) -> Result<(u8, u64), AcpiError> {
    let space = t.bytes::<1>(off)?[0];
    let addr = u64::from_le_bytes(t.bytes(off + 4)?);
    Ok((space, addr))
}

/// Extract the PM timer from a validated FADT. `Ok(None)` when the platform has none.
///
/// Every field is read before any warning is added, so a FADT that fails part-way (and is
/// reported as skipped) adds no warning of its own.
pub(crate) fn parse_fadt<M: PhysMem + ?Sized>(
    t: &Table<'_, M>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<PmTimer>, AcpiError> {
    t.require_len(FADT_V1_LEN)?;
    let flags = u32::from_le_bytes(t.bytes(FADT_FLAGS)?);
    if flags & FLAG_HW_REDUCED_ACPI != 0 {
        return Ok(None);
    }
    let x_pm_tmr = if t.len >= FADT_X_PM_TMR_BLK + GAS_LEN {
        Some(read_gas(t, FADT_X_PM_TMR_BLK)?)
    } else {
        None
    };
    let blk = u32::from_le_bytes(t.bytes(FADT_PM_TMR_BLK)?);
    let len = t.bytes::<1>(FADT_PM_TMR_LEN)?[0];

    let is_32bit = flags & FLAG_TMR_VAL_EXT != 0;
    let timer = |addr| Some(PmTimer { addr, is_32bit });
    if let Some((space_id, address)) = x_pm_tmr
        && address != 0
    {
        match (space_id, u16::try_from(address)) {
            // A 32-bit register: 4-byte aligned, or the table lies (and an unaligned
            // volatile read is a debug-build panic).
            (SPACE_MEMORY, _) if address % 4 == 0 => {
                return Ok(timer(PmTimerAddr::Mmio(address)));
            }
            (SPACE_IO, Ok(port)) => return Ok(timer(PmTimerAddr::Port(port))),
            _ => push_warning(
                warnings,
                Warning::UnusableAddress {
                    table: Signature::FADT,
                    space_id,
                    address,
                },
            )?,
        }
    }
    if blk == 0 || len < 4 {
        return Ok(None);
    }
    match u16::try_from(blk) {
        Ok(port) => Ok(timer(PmTimerAddr::Port(port))),
        Err(_) => {
            push_warning(
                warnings,
                Warning::UnusableAddress {
                    table: Signature::FADT,
                    space_id: SPACE_IO,
                    address: u64::from(blk),
                },
            )?;
            Ok(None)
        }
    }
}

/// The DSDT's address: `X_DSDT` where the table is long enough and it is non-zero, else
/// the 32-bit `DSDT`; `None` when both are zero.
pub(crate) fn fadt_dsdt<M: PhysMem + ?Sized>(t: &Table<'_, M>) -> Result<Option<u64>, AcpiError> {
    t.require_len(FADT_DSDT + 4)?;
    if t.len >= FADT_X_DSDT + 8 {
        let x = u64::from_le_bytes(t.bytes(FADT_X_DSDT)?);
        if x != 0 {
            return Ok(Some(x));
        }
    }
    let d = u32::from_le_bytes(t.bytes(FADT_DSDT)?);
    Ok((d != 0).then_some(u64::from(d)))
}

/// Extract the HPET MMIO base from a validated HPET table.
pub(crate) fn parse_hpet<M: PhysMem + ?Sized>(
    t: &Table<'_, M>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<u64>, AcpiError> {
    t.require_len(HPET_BASE_GAS + GAS_LEN)?;
    let (space_id, address) = read_gas(t, HPET_BASE_GAS)?;
    // The HPET's registers are 64-bit ones at multiples of 8 from a 1 KiB block: a base
    // not 8-byte aligned is a table that lies (and the calibration writes its config
    // register: until 2026-12-04 any base below 4 GiB was used as given).
    if space_id != SPACE_MEMORY || address == 0 || address % 8 != 0 {
        push_warning(
            warnings,
            Warning::UnusableAddress {
                table: Signature::HPET,
                space_id,
                address,
            },
        )?;
        return Ok(None);
    }
    Ok(Some(address))
}
