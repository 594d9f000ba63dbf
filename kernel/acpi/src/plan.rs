//! Which processors Exo-OS brings up: the boot rule, per CPU, and its `exo-madt` rendering.
//!
//! The kernel's rule, in the order boot applies it:
//!
//! 1. Only CPUs the firmware marks *enabled* are started ([`Madt::enabled_cpus`]). A disabled
//!    entry is ignored; a disabled but *online-capable* one (ACPI 6.3+) is a CPU firmware may
//!    enable at run time through hot-plug, which Exo-OS does not do, so it is not started
//!    either.
//! 2. The boot CPU (BSP) is running already; every other enabled CPU is an AP.
//! 3. [`limit_aps`] leaves out, in MADT order, the APs it cannot start: in xAPIC mode those
//!    whose APIC id is 0xFF or above (the 8-bit destination field cannot name them; 0xFF is the
//!    broadcast id), then those beyond the CPU limit (`cpu_limit` CPUs at most, BSP included;
//!    the kernel passes `cpus::CPU_LIMIT`, 4096).
//!
//! Rule 1 is ACPI's (6.3+, MADT processor flags): an online-capable CPU is not ready for use
//! at boot. When this module was written the kernel still built its list from
//! `Madt::usable_cpus`, which included online-capable CPUs, and so sent them INIT-SIPI;
//! building it from enabled CPUs instead brought the kernel in line with this module, and
//! [`Madt::enabled_cpus`] replaced `usable_cpus` (2026-12-06; `plan::boot_cpus`, the same
//! list under a second name, went the same day).
//!
//! The parser ([`Madt`]) has already left out entries with an invalid APIC id and repeated
//! APIC ids. [`plan`] applies rules 1-3 to a parsed [`Madt`] through the same functions;
//! [`plan_table`] goes back to the raw table to give a decision for *every* processor entry,
//! in table order, including those the parser dropped, and [`TablePlan`]'s `Display` is the
//! `exo-madt` tool's output.

use crate::AcpiError;
use crate::error::{reserve, try_push};
use crate::madt::{Cpu, Madt, NmiProcessor, Polarity, TriggerMode};
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::fmt;

/// The kernel's CPU limit: `cpus::CPU_LIMIT` is defined as this constant, so the host tool
/// and the kernel cannot disagree.
pub const KERNEL_CPU_LIMIT: usize = 4096;

/// Lowest APIC id an xAPIC cannot address (0xFF is the xAPIC broadcast destination).
pub const XAPIC_ID_LIMIT: u32 = 0xFF;

/// What Exo-OS does with one processor entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Started (or, for the boot CPU, running already).
    Usable,
    /// Flags say disabled and not online-capable: the CPU is unusable and ignored.
    Disabled,
    /// Flags say disabled but online-capable: firmware may enable it at run time (hot-plug).
    /// Exo-OS does not hot-plug, so it is not started.
    OnlineCapable,
    /// Not started, whatever its flags say, for this reason.
    Skipped(SkipReason),
}

/// Why a processor entry is not started although its flags do not forbid it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// APIC id 0xFF (xAPIC entry) or 0xFFFF_FFFF (x2APIC entry): a placeholder.
    InvalidApicId,
    /// An earlier or better entry has the same APIC id; the parser keeps one entry per id.
    DuplicateApicId,
    /// APIC id 0xFF or above and the local APIC runs in xAPIC mode.
    XapicUnaddressable,
    /// Beyond the CPU limit.
    CpuLimit,
    /// The parser did not keep this entry for a reason this module does not know. Never
    /// happens while [`plan_table`]'s walk matches the parser's (the tests check it).
    NotKeptByParser,
}

impl SkipReason {
    /// Short token, no spaces or commas (the `exo-madt` output).
    pub fn token(self) -> &'static str {
        match self {
            Self::InvalidApicId => "invalid-apic-id",
            Self::DuplicateApicId => "duplicate-apic-id",
            Self::XapicUnaddressable => "xapic-unaddressable",
            Self::CpuLimit => "beyond-cpu-limit",
            Self::NotKeptByParser => "not-kept-by-parser",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usable => f.write_str("usable"),
            Self::Disabled => f.write_str("disabled"),
            Self::OnlineCapable => f.write_str("online-capable"),
            Self::Skipped(reason) => write!(f, "skipped:{}", reason.token()),
        }
    }
}

/// The APs [`limit_aps`] left out, for the kernel's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DroppedAps {
    /// APs left out because xAPIC mode cannot address their APIC id (0xFF or above).
    pub unaddressable: usize,
    /// The first of those (at most 8), in list order.
    pub unaddressable_ids: ArrayVec<u32, 8>,
    /// APs left out because the CPU limit was reached.
    pub beyond_limit: usize,
    /// Lowest and highest APIC id among those, if any.
    pub beyond_limit_ids: Option<(u32, u32)>,
}

/// Admits APs one at a time, in list order: the rule of [`limit_aps`], shared with [`plan`].
#[derive(Clone, Copy, Debug)]
struct Admission {
    x2apic: bool,
    /// APs that may still be admitted.
    room: usize,
}

impl Admission {
    fn new(x2apic: bool, cpu_limit: usize) -> Self {
        Self {
            x2apic,
            // The BSP takes one place; it runs even with a limit of 0.
            room: cpu_limit.saturating_sub(1),
        }
    }

    fn admit(&mut self, apic_id: u32) -> Result<(), SkipReason> {
        if !self.x2apic && apic_id >= XAPIC_ID_LIMIT {
            return Err(SkipReason::XapicUnaddressable);
        }
        if self.room == 0 {
            return Err(SkipReason::CpuLimit);
        }
        self.room -= 1;
        Ok(())
    }
}

/// Keep the APs Exo-OS can start, in order, and report the others: with `x2apic` false (the
/// local APIC runs in xAPIC mode) APs whose APIC id is 0xFF or above; then every AP past the
/// first `cpu_limit - 1` that remain (the BSP, not in `aps`, takes the last place; the kernel
/// passes `cpus::CPU_LIMIT`, 4096). Allocates nothing.
///
/// `aps` are the APIC ids of the CPUs to start, BSP excluded, in MADT order (the kernel builds
/// them from [`Madt::enabled_cpus`]).
pub fn limit_aps(aps: &mut Vec<u32>, x2apic: bool, cpu_limit: usize) -> DroppedAps {
    let mut admission = Admission::new(x2apic, cpu_limit);
    let mut dropped = DroppedAps::default();
    aps.retain(|&id| match admission.admit(id) {
        Ok(()) => true,
        Err(SkipReason::XapicUnaddressable) => {
            dropped.unaddressable += 1;
            // Full after 8: the rest are only counted.
            let _ = dropped.unaddressable_ids.try_push(id);
            false
        }
        Err(_) => {
            dropped.beyond_limit += 1;
            let (lo, hi) = dropped.beyond_limit_ids.unwrap_or((id, id));
            dropped.beyond_limit_ids = Some((lo.min(id), hi.max(id)));
            false
        }
    });
    dropped
}

/// What Exo-OS does with each CPU of a parsed MADT (see [`plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One decision per entry of [`Madt::cpus`], in the same order.
    pub decisions: Vec<Decision>,
    /// CPUs that come up: the BSP (even when the MADT does not list it) plus the APs started.
    pub started: usize,
    /// Bringing these CPUs up needs x2APIC mode: with x2APIC available, some CPU that would
    /// come up (the BSP included) has an APIC id of 0xFF or above.
    pub x2apic_needed: bool,
}

/// What Exo-OS does with each CPU of `madt`: [`Madt::enabled_cpus`], the BSP, then
/// [`limit_aps`]'s rule.
///
/// `bsp_apic_id` is the APIC id of the CPU running boot (the kernel knows it); `None` takes
/// the first enabled CPU in table order, where firmware conventionally lists the boot CPU.
/// The BSP's entry is [`Decision::Usable`] whatever its flags: it is running. `x2apic` says
/// whether the local APIC runs in x2APIC mode; `cpu_limit` counts the BSP (the kernel uses
/// `cpus::CPU_LIMIT`, 4096).
pub fn plan(
    madt: &Madt,
    bsp_apic_id: Option<u32>,
    x2apic: bool,
    cpu_limit: usize,
) -> Result<Plan, AcpiError> {
    let bsp = bsp_apic_id.or_else(|| madt.enabled_cpus().next().map(|c| c.apic_id));
    let mut admission = Admission::new(x2apic, cpu_limit);
    // The same APs under x2APIC mode, for `x2apic_needed`.
    let mut with_x2apic = Admission::new(true, cpu_limit);
    let mut plan = Plan {
        decisions: Vec::new(),
        started: 1,
        x2apic_needed: bsp.is_some_and(|id| id >= XAPIC_ID_LIMIT),
    };
    reserve(&mut plan.decisions, madt.cpus.len(), DECISIONS)?;
    for cpu in &madt.cpus {
        let decision = if Some(cpu.apic_id) == bsp {
            Decision::Usable
        } else if !cpu.enabled {
            if cpu.online_capable {
                Decision::OnlineCapable
            } else {
                Decision::Disabled
            }
        } else {
            if with_x2apic.admit(cpu.apic_id).is_ok() && cpu.apic_id >= XAPIC_ID_LIMIT {
                plan.x2apic_needed = true;
            }
            match admission.admit(cpu.apic_id) {
                Ok(()) => {
                    plan.started += 1;
                    Decision::Usable
                }
                Err(reason) => Decision::Skipped(reason),
            }
        };
        try_push(&mut plan.decisions, decision, DECISIONS)?;
    }
    Ok(plan)
}

/// One processor entry of a raw MADT and what Exo-OS does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedCpu {
    /// Offset of the entry from the start of the table.
    pub offset: u32,
    /// The entry as written (APIC id, UID and flags; invalid ids included).
    pub cpu: Cpu,
    /// What Exo-OS does with it.
    pub decision: Decision,
}

/// A raw MADT parsed, and a decision for every processor entry (see [`plan_table`]).
#[derive(Clone, Debug)]
pub struct TablePlan {
    /// The table as the kernel's parser reads it.
    pub madt: Madt,
    /// Every processor entry long enough to decode, in table order (entries too short are
    /// reported by a [`crate::Warning::MadtEntryTooShort`] in `madt.warnings`).
    pub cpus: Vec<PlannedCpu>,
    /// CPUs that come up (see [`Plan::started`]).
    pub started: usize,
    /// Whether that needs x2APIC mode (see [`Plan::x2apic_needed`]).
    pub x2apic_needed: bool,
}

/// Parse a raw MADT (header included) with [`Madt::from_bytes`] and say what Exo-OS does with
/// each processor entry, in table order: the parser's entries get [`plan`]'s decision; the
/// entries it dropped are [`SkipReason::InvalidApicId`] or [`SkipReason::DuplicateApicId`].
/// The BSP is the first enabled CPU (see [`plan`]).
///
/// Fails as [`Madt::from_bytes`] does (bad signature, length or checksum; out of memory).
pub fn plan_table(table: &[u8], x2apic: bool, cpu_limit: usize) -> Result<TablePlan, AcpiError> {
    let madt = Madt::from_bytes(table)?;
    let plan = plan(&madt, None, x2apic, cpu_limit)?;
    // The parser's CPUs by APIC id (distinct), to find the entry each one was kept from.
    let mut by_id: Vec<(u32, usize)> = Vec::new();
    reserve(&mut by_id, madt.cpus.len(), SCRATCH)?;
    by_id.extend(madt.cpus.iter().enumerate().map(|(i, c)| (c.apic_id, i)));
    by_id.sort_unstable();
    let mut claimed: Vec<bool> = Vec::new();
    reserve(&mut claimed, madt.cpus.len(), SCRATCH)?;
    claimed.resize(madt.cpus.len(), false);

    let mut cpus = Vec::new();
    reserve(&mut cpus, processor_entries(table).count(), PLANNED)?;
    for (offset, cpu) in processor_entries(table) {
        let invalid = cpu.apic_id == if cpu.x2apic_entry { u32::MAX } else { 0xFF };
        let decision = if invalid {
            Decision::Skipped(SkipReason::InvalidApicId)
        } else {
            match by_id.binary_search_by_key(&cpu.apic_id, |&(id, _)| id) {
                Err(_) => Decision::Skipped(SkipReason::NotKeptByParser),
                Ok(at) => {
                    // The kept entry is the first one equal to what the parser kept: an
                    // earlier equal entry would have the same usability and been kept.
                    let i = by_id.get(at).map_or(usize::MAX, |&(_, i)| i);
                    let first_equal =
                        madt.cpus.get(i) == Some(&cpu) && claimed.get(i).is_some_and(|&c| !c);
                    if first_equal {
                        if let Some(c) = claimed.get_mut(i) {
                            *c = true;
                        }
                        plan.decisions
                            .get(i)
                            .copied()
                            .unwrap_or(Decision::Skipped(SkipReason::NotKeptByParser))
                    } else {
                        Decision::Skipped(SkipReason::DuplicateApicId)
                    }
                }
            }
        };
        let planned = PlannedCpu {
            offset,
            cpu,
            decision,
        };
        try_push(&mut cpus, planned, PLANNED)?;
    }
    Ok(TablePlan {
        madt,
        cpus,
        started: plan.started,
        x2apic_needed: plan.x2apic_needed,
    })
}

/// Type 0 and type 9 entries long enough to decode, with their offsets: the parser's walk
/// (start after the 44 fixed bytes, stop at the table's length, at an entry shorter than 2
/// bytes or at one running past the end), over the table's bytes.
fn processor_entries(table: &[u8]) -> impl Iterator<Item = (u32, Cpu)> + '_ {
    let declared = table
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes) as usize;
    let table = table.get(..declared).unwrap_or(table);
    let mut off = 44usize;
    core::iter::from_fn(move || {
        loop {
            let [entry_type, length] = *table.get(off..off.checked_add(2)?)? else {
                return None;
            };
            let entry = table.get(off..off.checked_add(usize::from(length))?)?;
            if length < 2 {
                return None;
            }
            let at = off as u32;
            off += usize::from(length);
            let u32_at = |i: usize| {
                entry
                    .get(i..i + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes)
            };
            let byte = |i: usize| entry.get(i).copied().unwrap_or(0);
            match (entry_type, length) {
                (0, 8..) => {
                    let flags = u32_at(4);
                    return Some((
                        at,
                        Cpu {
                            apic_id: u32::from(byte(3)),
                            acpi_uid: u32::from(byte(2)),
                            enabled: flags & 1 != 0,
                            online_capable: flags & 2 != 0,
                            x2apic_entry: false,
                        },
                    ));
                }
                (9, 16..) => {
                    let flags = u32_at(8);
                    return Some((
                        at,
                        Cpu {
                            apic_id: u32_at(4),
                            acpi_uid: u32_at(12),
                            enabled: flags & 1 != 0,
                            online_capable: flags & 2 != 0,
                            x2apic_entry: true,
                        },
                    ));
                }
                _ => {}
            }
        }
    })
}

/// MPS INTI flags as the table holds them: polarity in bits 0-1, trigger mode in bits 2-3.
pub fn inti_flags(polarity: Polarity, trigger: TriggerMode) -> u16 {
    let p = match polarity {
        Polarity::Conforming => 0,
        Polarity::ActiveHigh => 1,
        Polarity::Reserved => 2,
        Polarity::ActiveLow => 3,
    };
    let t = match trigger {
        TriggerMode::Conforming => 0,
        TriggerMode::Edge => 1,
        TriggerMode::Reserved => 2,
        TriggerMode::Level => 3,
    };
    p | t << 2
}

fn entry_kind(x2apic_entry: bool) -> &'static str {
    if x2apic_entry { "x2apic" } else { "xapic" }
}

/// The `exo-madt` output, one line each (`\n`-terminated), in this order:
///
/// - `CPU,<uid>,<apic_id>,<xapic|x2apic>,<decision>` per processor entry, in table order;
///   `<decision>` is `usable`, `disabled`, `online-capable` or `skipped:<reason>`;
/// - `IOAPIC,<id>,<0xaddress>,<gsi_base>`;
/// - `OVERRIDE,<bus>,<irq>,<gsi>,<flags>`, flags = polarity | trigger << 2;
/// - `NMI,source,<gsi>,<flags>` per NMI source;
/// - `NMI,local,<uid|all>,<lint>,<flags>,<xapic|x2apic>` per local APIC NMI entry;
/// - `WARN,<text>` per parser warning (the text may contain commas);
/// - `MADT,<cpus that come up>,<x2apic|xapic>` (`x2apic` when x2APIC mode is needed).
impl fmt::Display for TablePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.cpus {
            writeln!(
                f,
                "CPU,{},{},{},{}",
                p.cpu.acpi_uid,
                p.cpu.apic_id,
                entry_kind(p.cpu.x2apic_entry),
                p.decision
            )?;
        }
        let m = &self.madt;
        for io in &m.io_apics {
            writeln!(f, "IOAPIC,{},{:#x},{}", io.id, io.address, io.gsi_base)?;
        }
        for o in &m.overrides {
            let flags = inti_flags(o.polarity, o.trigger);
            writeln!(f, "OVERRIDE,{},{},{},{flags}", o.bus, o.source_irq, o.gsi)?;
        }
        for s in &m.nmi_sources {
            let flags = inti_flags(s.polarity, s.trigger);
            writeln!(f, "NMI,source,{},{flags}", s.gsi)?;
        }
        for n in &m.local_nmis {
            f.write_str("NMI,local,")?;
            match n.processor {
                NmiProcessor::All => f.write_str("all")?,
                NmiProcessor::Uid(uid) => write!(f, "{uid}")?,
            }
            let flags = inti_flags(n.polarity, n.trigger);
            let kind = entry_kind(n.x2apic_entry);
            writeln!(f, ",{},{flags},{kind}", n.lint)?;
        }
        for w in &m.warnings {
            writeln!(f, "WARN,{w}")?;
        }
        let mode = if self.x2apic_needed {
            "x2apic"
        } else {
            "xapic"
        };
        writeln!(f, "MADT,{},{mode}", self.started)
    }
}

// What each list holds, for `AcpiError::OutOfMemory`.
const DECISIONS: &str = "MADT processor decisions";
const PLANNED: &str = "MADT processor entries (plan)";
const SCRATCH: &str = "MADT processor entries (plan lookup)";

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::{Disabled, OnlineCapable, Skipped, Usable};

    fn cpu(apic_id: u32, flags: u32) -> Cpu {
        Cpu {
            apic_id,
            acpi_uid: apic_id,
            enabled: flags & 1 != 0,
            online_capable: flags & 2 != 0,
            x2apic_entry: apic_id >= 0xFF,
        }
    }

    fn madt(cpus: &[Cpu]) -> Madt {
        Madt {
            local_apic_addr: 0xFEE0_0000,
            pcat_compat: true,
            cpus: cpus.to_vec(),
            io_apics: Vec::new(),
            overrides: Vec::new(),
            nmi_sources: Vec::new(),
            local_nmis: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn disabled_and_online_capable_are_not_started() {
        let m = madt(&[cpu(0, 1), cpu(1, 0), cpu(2, 2), cpu(3, 3), cpu(4, 1)]);
        let p = plan(&m, None, true, 4096).unwrap();
        // Flags 3 (enabled and the reserved online-capable bit): enabled wins.
        assert_eq!(
            p.decisions,
            [Usable, Disabled, OnlineCapable, Usable, Usable]
        );
        assert_eq!(p.started, 3);
        assert!(!p.x2apic_needed);
        assert_eq!(
            m.enabled_cpus().map(|c| c.apic_id).collect::<Vec<_>>(),
            [0, 3, 4]
        );
    }

    #[test]
    fn xapic_mode_cannot_start_ids_from_0xff() {
        let m = madt(&[
            cpu(0, 1),
            cpu(0xFE, 1),
            cpu(0xFF, 1),
            cpu(0x100, 1),
            cpu(7, 1),
        ]);
        let p = plan(&m, None, false, 4096).unwrap();
        let x = Skipped(SkipReason::XapicUnaddressable);
        assert_eq!(p.decisions, [Usable, Usable, x, x, Usable]);
        assert_eq!(p.started, 3);
        assert!(p.x2apic_needed, "0xFF and 0x100 need x2APIC");
        let p = plan(&m, None, true, 4096).unwrap();
        assert_eq!(p.decisions, [Usable; 5]);
        assert_eq!(p.started, 5);
        assert!(p.x2apic_needed);
    }

    #[test]
    fn limit_counts_the_bsp_and_takes_aps_in_table_order() {
        let m = madt(&[cpu(5, 1), cpu(1, 1), cpu(0, 1), cpu(9, 0), cpu(3, 1)]);
        // BSP id 0 (third entry): APs 5, 1 fit under a limit of 3, 3 does not.
        let p = plan(&m, Some(0), true, 3).unwrap();
        let l = Skipped(SkipReason::CpuLimit);
        assert_eq!(p.decisions, [Usable, Usable, Usable, Disabled, l]);
        assert_eq!(p.started, 3);
        // The BSP runs even under a limit of 0 or 1.
        for limit in [0, 1] {
            let p = plan(&m, Some(0), true, limit).unwrap();
            assert_eq!(p.decisions, [l, l, Usable, Disabled, l]);
            assert_eq!(p.started, 1);
        }
        // A BSP missing from the MADT still takes a place.
        let p = plan(&m, Some(42), true, 3).unwrap();
        assert_eq!(p.decisions, [Usable, Usable, l, Disabled, l]);
        assert_eq!(p.started, 3);
    }

    #[test]
    fn unaddressable_ids_do_not_use_up_the_limit() {
        let m = madt(&[cpu(0, 1), cpu(0x200, 1), cpu(1, 1), cpu(2, 1)]);
        let p = plan(&m, None, false, 3).unwrap();
        let x = Skipped(SkipReason::XapicUnaddressable);
        assert_eq!(p.decisions, [Usable, x, Usable, Usable]);
        // Under x2APIC the big id takes the last place: x2APIC is needed for it.
        let p = plan(&m, None, true, 3).unwrap();
        let l = Skipped(SkipReason::CpuLimit);
        assert_eq!(p.decisions, [Usable, Usable, Usable, l]);
        assert!(p.x2apic_needed);
        // ... unless the limit leaves it out anyway.
        let m = madt(&[cpu(0, 1), cpu(1, 1), cpu(0x200, 1)]);
        let p = plan(&m, None, true, 2).unwrap();
        assert!(!p.x2apic_needed);
        assert_eq!(p.started, 2);
    }

    #[test]
    fn bsp_is_usable_whatever_its_entry_says() {
        let m = madt(&[cpu(0, 0), cpu(1, 1), cpu(0x300, 1)]);
        let p = plan(&m, Some(0), false, 4096).unwrap();
        let x = Skipped(SkipReason::XapicUnaddressable);
        assert_eq!(p.decisions, [Usable, Usable, x]);
        // Without a BSP id the first enabled CPU is taken as the BSP.
        let p = plan(&m, None, false, 4096).unwrap();
        assert_eq!(p.decisions, [Disabled, Usable, x]);
        assert_eq!(p.started, 1);
        // No enabled CPU at all: the BSP runs alone.
        let p = plan(&madt(&[cpu(0, 0), cpu(1, 2)]), None, true, 4096).unwrap();
        assert_eq!(p.decisions, [Disabled, OnlineCapable]);
        assert_eq!(p.started, 1);
    }

    #[test]
    fn limit_aps_reports_what_it_drops() {
        let mut aps: Vec<u32> = (1..=12).map(|i| i * 0x40).collect();
        // 0x40..=0x300: 0x40, 0x80, 0xC0 are addressable, 9 are not.
        let d = limit_aps(&mut aps, false, 3);
        assert_eq!(aps, [0x40, 0x80]);
        assert_eq!(d.unaddressable, 9);
        assert_eq!(
            d.unaddressable_ids.as_slice(),
            [0x100, 0x140, 0x180, 0x1C0, 0x200, 0x240, 0x280, 0x2C0]
        );
        assert_eq!(
            (d.beyond_limit, d.beyond_limit_ids),
            (1, Some((0xC0, 0xC0)))
        );

        let mut aps = vec![7, 3, 9, 1];
        let d = limit_aps(&mut aps, true, 2);
        assert_eq!(aps, [7]);
        assert_eq!((d.beyond_limit, d.beyond_limit_ids), (3, Some((1, 9))));
        assert_eq!(d.unaddressable, 0);

        let mut aps = vec![1, 2];
        assert_eq!(limit_aps(&mut aps, false, 4096), DroppedAps::default());
        assert_eq!(aps, [1, 2]);
    }

    /// The kernel's `limit_aps` as it is today (retain, then truncate), for comparison.
    fn kernel_limit_aps(aps: &mut Vec<u32>, x2apic: bool, cpu_limit: usize) -> (usize, usize) {
        let before = aps.len();
        if !x2apic {
            aps.retain(|&id| id < 0xFF);
        }
        let unaddressable = before - aps.len();
        let max_aps = cpu_limit - 1;
        let extra = aps.len().saturating_sub(max_aps);
        aps.truncate(max_aps);
        (unaddressable, extra)
    }

    #[test]
    fn limit_aps_matches_the_kernels() {
        let mut seed = 0x1234_5678_9ABC_DEF1u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let n = (next() % 40) as usize;
            let aps: Vec<u32> = (0..n).map(|_| (next() % 0x140) as u32).collect();
            let limit = 1 + (next() % 45) as usize;
            for x2apic in [false, true] {
                let (mut ours, mut theirs) = (aps.clone(), aps.clone());
                let d = limit_aps(&mut ours, x2apic, limit);
                let (unaddressable, extra) = kernel_limit_aps(&mut theirs, x2apic, limit);
                assert_eq!(ours, theirs, "{aps:?} x2apic {x2apic} limit {limit}");
                assert_eq!((d.unaddressable, d.beyond_limit), (unaddressable, extra));
            }
        }
    }

    #[test]
    fn inti_flags_round_trip() {
        for raw in 0u16..16 {
            let back = inti_flags(Polarity::from_flags(raw), TriggerMode::from_flags(raw));
            assert_eq!(back, raw);
        }
    }
}
