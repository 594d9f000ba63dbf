//! Top-level discovery: RSDP -> RSDT/XSDT -> MADT, FADT (-> DSDT), HPET, MCFG.

use crate::dsdt::{VirtioMmio, parse_dsdt};
use crate::error::{push_warning, reserve};
use crate::fadt::{PmTimer, fadt_dsdt, parse_fadt, parse_hpet};
use crate::madt::Madt;
use crate::mcfg::{EcamRegion, parse_mcfg};
use crate::sdt::{RootTable, Rsdp, load_table, parse_rsdp, read_signature};
use crate::{AcpiError, PhysMem, Signature, Warning};
use alloc::vec::Vec;

/// Upper bound on [`Platform::warnings`] once aggregated: XSDT fallback, root trailing bytes,
/// null, unreadable and blank root entries (1 each); duplicate tables (1 per signature parsed
/// from the root table: MADT, FADT, HPET, MCFG); skipped tables (those four and the DSDT); FADT
/// unusable addresses (2); HPET unusable address (1); bad MCFG entries (1); bad and undecoded
/// virtio-mmio windows (1 each); no MADT (1): 5 + 4 + 5 + 2 + 1 + 1 + 2 + 1.
/// Reserved up front; exceeding it would only grow the list (fallibly).
const PLATFORM_WARNINGS: usize = 21;

/// Everything the kernel needs from ACPI to bring up CPUs and interrupt controllers.
#[derive(Clone, Debug)]
pub struct Platform {
    /// The validated RSDP.
    pub rsdp: Rsdp,
    /// Which root table was used: [`Signature::XSDT`] or [`Signature::RSDT`].
    pub root_table: Signature,
    /// The MADT, or `None` if missing or corrupt (run on the boot CPU only).
    pub madt: Option<Madt>,
    /// Non-fatal problems outside the MADT (MADT-internal ones are in `madt.warnings`),
    /// repeated ones aggregated (see [`Warning`]): 21 at most (one per kind and table).
    pub warnings: Vec<Warning>,
    /// HPET MMIO base address, if an HPET table is present and sane.
    pub hpet: Option<u64>,
    /// The ACPI PM timer from the FADT, if present.
    pub fadt_pm_timer: Option<PmTimer>,
    /// PCI Express ECAM windows from the MCFG (empty without one: legacy port I/O then).
    pub ecam: Vec<EcamRegion>,
    /// virtio-mmio device windows described in the DSDT (microvm), each checked
    /// ([`VirtioMmio::is_usable`]); empty without a DSDT or such devices.
    pub virtio_mmio: Vec<VirtioMmio>,
}

impl Platform {
    /// The MADT, or [`AcpiError::NoMadt`].
    pub fn require_madt(&self) -> Result<&Madt, AcpiError> {
        self.madt.as_ref().ok_or(AcpiError::NoMadt)
    }

    /// All warnings: platform-level first, then the MADT's.
    pub fn all_warnings(&self) -> impl Iterator<Item = &Warning> + '_ {
        self.warnings
            .iter()
            .chain(self.madt.iter().flat_map(|m| m.warnings.iter()))
    }
}

/// Pick the root table: the XSDT when the RSDP is revision >= 2 and names one, falling back
/// to the RSDT (with a warning) if the XSDT is unusable. When both are refused the error
/// carries both reasons ([`AcpiError::RootTablesUnusable`]): until 2026-12-06 only the
/// RSDT's was returned and the XSDT's dropped (found by review).
fn select_root<'m, M: PhysMem + ?Sized>(
    mem: &'m M,
    rsdp: &Rsdp,
    warnings: &mut Vec<Warning>,
) -> Result<RootTable<'m, M>, AcpiError> {
    let rsdt = (rsdp.rsdt_addr != 0).then_some(u64::from(rsdp.rsdt_addr));
    let Some(xsdt) = rsdp.xsdt_addr else {
        let rsdt = rsdt.ok_or(AcpiError::NoRootTable { paddr: rsdp.paddr })?;
        return Ok(RootTable::rsdt(mem, rsdt)?);
    };
    let xsdt = match RootTable::xsdt(mem, xsdt) {
        Ok(root) => return Ok(root),
        Err(e) => e,
    };
    let Some(rsdt) = rsdt else {
        return Err(xsdt.into());
    };
    match RootTable::rsdt(mem, rsdt) {
        Ok(root) => {
            push_warning(
                warnings,
                Warning::XsdtFallback {
                    reason: xsdt.into(),
                },
            )?;
            Ok(root)
        }
        Err(rsdt) => Err(AcpiError::RootTablesUnusable { xsdt, rsdt }),
    }
}

/// Discover the platform from the RSDP at `rsdp_paddr`.
///
/// Fails only if the RSDP or the root table (XSDT/RSDT) is unusable, or if the heap cannot
/// hold the platform's short warning list ([`AcpiError::OutOfMemory`]). A missing or corrupt
/// MADT, FADT, HPET or DSDT table (including one too large for the heap) yields `None` (or
/// an empty list) in that field plus a warning.
pub fn discover<M: PhysMem + ?Sized>(mem: &M, rsdp_paddr: u64) -> Result<Platform, AcpiError> {
    let rsdp = parse_rsdp(mem, rsdp_paddr)?;
    let mut warnings = Vec::new();
    reserve(&mut warnings, PLATFORM_WARNINGS, "ACPI warnings")?;
    let root = select_root(mem, &rsdp, &mut warnings)?;
    let root_sig = root.table.sig;
    if root.trailing_bytes() != 0 {
        push_warning(
            &mut warnings,
            Warning::RootTrailingBytes {
                root: root_sig,
                extra: root.trailing_bytes(),
            },
        )?;
    }
    let mut p = Platform {
        rsdp,
        root_table: root_sig,
        madt: None,
        warnings,
        hpet: None,
        fadt_pm_timer: None,
        ecam: Vec::new(),
        virtio_mmio: Vec::new(),
    };
    let mut dsdt = None;
    let (mut have_fadt, mut have_hpet, mut have_mcfg) = (false, false, false);
    for index in 0..root.count() {
        let paddr = root.entry(index)?;
        if paddr == 0 {
            p.warn(Warning::NullRootEntry {
                root: root_sig,
                index,
                count: 1,
            })?;
            continue;
        }
        let Ok(sig) = read_signature(mem, paddr) else {
            p.warn(Warning::RootEntryUnreadable {
                root: root_sig,
                index,
                paddr,
                count: 1,
            })?;
            continue;
        };
        if sig.0 == [0; 4] {
            p.warn(Warning::BlankTable {
                root: root_sig,
                index,
                paddr,
                count: 1,
            })?;
            continue;
        }
        let have = match sig {
            Signature::MADT => p.madt.is_some(),
            Signature::FADT => have_fadt,
            Signature::HPET => have_hpet,
            Signature::MCFG => have_mcfg,
            _ => continue,
        };
        if have {
            p.warn(Warning::DuplicateTable {
                table: sig,
                paddr,
                count: 1,
            })?;
            continue;
        }
        let result = load_table(mem, paddr, sig)
            .map_err(AcpiError::from)
            .and_then(|t| match sig {
                Signature::MADT => Madt::from_table(&t).map(|m| p.madt = Some(m)),
                Signature::FADT => parse_fadt(&t, &mut p.warnings).and_then(|pm| {
                    p.fadt_pm_timer = pm;
                    have_fadt = true;
                    dsdt = fadt_dsdt(&t)?;
                    Ok(())
                }),
                Signature::MCFG => parse_mcfg(&t, &mut p.warnings).map(|e| {
                    p.ecam = e;
                    have_mcfg = true;
                }),
                _ => parse_hpet(&t, &mut p.warnings).map(|h| {
                    p.hpet = h;
                    have_hpet = true;
                }),
            });
        if let Err(reason) = result {
            p.warn(Warning::TableSkipped {
                table: sig,
                paddr,
                reason,
                count: 1,
            })?;
        }
    }
    if let Some(paddr) = dsdt {
        let found = load_table(mem, paddr, Signature::DSDT)
            .map_err(AcpiError::from)
            .and_then(|t| parse_dsdt(&t, &mut p.warnings));
        match found {
            Ok(v) => p.virtio_mmio = v,
            Err(reason) => p.warn(Warning::TableSkipped {
                table: Signature::DSDT,
                paddr,
                reason,
                count: 1,
            })?,
        }
    }
    if p.madt.is_none() {
        p.warn(Warning::NoMadt)?;
    }
    Ok(p)
}

impl Platform {
    fn warn(&mut self, w: Warning) -> Result<(), AcpiError> {
        push_warning(&mut self.warnings, w)
    }
}
