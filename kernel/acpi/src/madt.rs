//! MADT ("APIC" table) parsing: processors, I/O APICs, interrupt overrides, NMIs.
//!
//! Two passes over the entries: the first reads only the entry headers and counts each kind,
//! so every list is reserved once at its final size; the second decodes. Duplicate APIC ids
//! are resolved after the walk by sorting (see [`Madt`]).

use crate::error::{reserve, try_push};
use crate::sdt::{Table, load_table};
use crate::{AcpiError, PhysMem, Signature, SliceMem, Warning};
use alloc::vec::Vec;

/// Header plus the local APIC address and flags fields.
const MADT_FIXED_LEN: u32 = 44;

/// One processor (type 0 local APIC or type 9 local x2APIC entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Local APIC id (8-bit for xAPIC entries, 32-bit for x2APIC entries).
    pub apic_id: u32,
    /// ACPI processor UID (matches `_UID` / `Processor` objects in the namespace).
    pub acpi_uid: u32,
    /// Flags bit 0: the processor is ready to use.
    pub enabled: bool,
    /// Flags bit 1: the processor is disabled but may be brought online (ACPI 6.3+).
    pub online_capable: bool,
    /// The entry was a type-9 local x2APIC entry.
    pub x2apic_entry: bool,
}

/// An I/O APIC (type 1 entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// I/O APIC id.
    pub id: u8,
    /// Physical MMIO base address (32-bit field).
    pub address: u64,
    /// First global system interrupt served by this I/O APIC.
    pub gsi_base: u32,
}

/// Interrupt polarity from MPS INTI flags bits 0-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Conforms to the bus specification (ISA: active high).
    Conforming,
    /// Active high.
    ActiveHigh,
    /// Reserved encoding (treat as conforming).
    Reserved,
    /// Active low.
    ActiveLow,
}

impl Polarity {
    /// Decode bits 0-1 of MPS INTI flags.
    pub fn from_flags(flags: u16) -> Self {
        match flags & 3 {
            0 => Self::Conforming,
            1 => Self::ActiveHigh,
            2 => Self::Reserved,
            _ => Self::ActiveLow,
        }
    }
}

/// Interrupt trigger mode from MPS INTI flags bits 2-3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerMode {
    /// Conforms to the bus specification (ISA: edge).
    Conforming,
    /// Edge triggered.
    Edge,
    /// Reserved encoding (treat as conforming).
    Reserved,
    /// Level triggered.
    Level,
}

impl TriggerMode {
    /// Decode bits 2-3 of MPS INTI flags.
    pub fn from_flags(flags: u16) -> Self {
        match (flags >> 2) & 3 {
            0 => Self::Conforming,
            1 => Self::Edge,
            2 => Self::Reserved,
            _ => Self::Level,
        }
    }
}

/// An interrupt source override (type 2 entry): ISA IRQ `source_irq` is wired to `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntOverride {
    /// Bus (0 = ISA).
    pub bus: u8,
    /// Bus-relative IRQ.
    pub source_irq: u8,
    /// Global system interrupt it is delivered on.
    pub gsi: u32,
    /// Polarity.
    pub polarity: Polarity,
    /// Trigger mode.
    pub trigger: TriggerMode,
}

/// A GSI that must be programmed as NMI (type 3 entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NmiSource {
    /// Global system interrupt.
    pub gsi: u32,
    /// Polarity.
    pub polarity: Polarity,
    /// Trigger mode.
    pub trigger: TriggerMode,
}

/// Which processors a local APIC NMI entry applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmiProcessor {
    /// Every processor (UID 0xFF / 0xFFFF_FFFF).
    All,
    /// The processor with this ACPI UID.
    Uid(u32),
}

/// A local APIC LINT pin wired to NMI (type 4 or type 0xA entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalNmi {
    /// Target processor(s), by ACPI UID.
    pub processor: NmiProcessor,
    /// LINT pin (0 or 1).
    pub lint: u8,
    /// Polarity.
    pub polarity: Polarity,
    /// Trigger mode.
    pub trigger: TriggerMode,
    /// The entry was a type-0xA local x2APIC NMI entry.
    pub x2apic_entry: bool,
}

/// How an ISA IRQ is delivered, after applying overrides (see [`Madt::isa_irq`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaIrq {
    /// Global system interrupt.
    pub gsi: u32,
    /// Active low (otherwise active high).
    pub active_low: bool,
    /// Level triggered (otherwise edge).
    pub level_triggered: bool,
}

/// The parsed MADT.
///
/// Every list keeps all entries the table lists, in table order; nothing is capped (the
/// table's 1 MiB limit bounds them). Each list is allocated once, at the size a first pass
/// over the entry headers counted.
#[derive(Clone, Debug)]
pub struct Madt {
    /// Local APIC physical address (32-bit field, replaced by a type-5 override if present).
    pub local_apic_addr: u64,
    /// Flags bit 0: dual 8259 PICs are present and must be masked.
    pub pcat_compat: bool,
    /// Processors in table order, with distinct APIC ids, including disabled and
    /// online-capable ones (see [`Madt::enabled_cpus`]). Entries with an invalid APIC id are left out
    /// ([`Warning::InvalidApicIds`]); when several entries share an APIC id, one is kept at
    /// the place of the first: the first enabled one, else the first online-capable one,
    /// else the first ([`Warning::DuplicateApicId`]).
    pub cpus: Vec<Cpu>,
    /// I/O APICs.
    pub io_apics: Vec<IoApic>,
    /// Interrupt source overrides, all of them in table order, repeats included
    /// ([`Warning::DuplicateOverride`]; [`Madt::isa_irq`] uses the first for a bus and IRQ).
    pub overrides: Vec<IntOverride>,
    /// NMI sources.
    pub nmi_sources: Vec<NmiSource>,
    /// Local APIC NMI pins (firmware often lists one per processor).
    pub local_nmis: Vec<LocalNmi>,
    /// Non-fatal problems found while parsing, repeated ones aggregated (see [`Warning`]).
    pub warnings: Vec<Warning>,
}

/// Entry types this crate decodes, with the minimum length of each.
fn needed_len(entry_type: u8) -> Option<u8> {
    Some(match entry_type {
        0 => 8,
        1 => 12,
        2 => 10,
        3 => 8,
        4 => 6,
        5 => 12,
        9 => 16,
        0xA => 12,
        _ => return None,
    })
}

/// Types that are defined by the spec but irrelevant here (IA-64 SAPIC, platform interrupt
/// sources, GIC/RISC-V/LoongArch structures, MP wakeup) or OEM-reserved: skipped silently.
/// Every other type without a [`needed_len`] is reserved: skipped with a warning.
fn ignored_type(entry_type: u8) -> bool {
    matches!(entry_type, 6..=8 | 0xB..=0x1B | 0x80..=0xFF)
}

/// One step of the walk over the entry area.
enum Step {
    /// A whole entry lies at the offset looked at.
    Entry { entry_type: u8, length: u8 },
    /// The walk stops here with this warning (its `cpus` field is filled in at the end).
    Stop(Warning),
    /// The entry area ends exactly at the table end.
    End,
}

/// Look at the entry header at `off`. Both passes use this, so they see the same entries.
fn step<M: PhysMem + ?Sized>(t: &Table<'_, M>, off: u32) -> Result<Step, AcpiError> {
    if off >= t.len {
        return Ok(Step::End);
    }
    let remaining = t.len - off;
    if remaining < 2 {
        return Ok(Step::Stop(Warning::MadtTrailingByte { offset: off }));
    }
    let [entry_type, length] = t.bytes::<2>(off)?;
    if length < 2 {
        return Ok(Step::Stop(Warning::MadtEntryBadLength {
            offset: off,
            length,
            cpus: 0,
        }));
    }
    if u32::from(length) > remaining {
        return Ok(Step::Stop(Warning::MadtEntryTruncated {
            offset: off,
            entry_type,
            length,
            table_len: t.len,
            cpus: 0,
        }));
    }
    Ok(Step::Entry { entry_type, length })
}

/// How many entries of each kind the table holds (first pass). Entries that turn out to be
/// too short or to carry an invalid APIC id are counted too: these are upper bounds.
#[derive(Default)]
struct Counts {
    cpus: usize,
    io_apics: usize,
    overrides: usize,
    nmi_sources: usize,
    local_nmis: usize,
}

impl Counts {
    fn of<M: PhysMem + ?Sized>(t: &Table<'_, M>) -> Result<Self, AcpiError> {
        let mut n = Self::default();
        let mut off = MADT_FIXED_LEN;
        // Every iteration advances `off` by at least 2 or breaks, so the walk terminates.
        while let Step::Entry { entry_type, length } = step(t, off)? {
            match entry_type {
                0 | 9 => n.cpus += 1,
                1 => n.io_apics += 1,
                2 => n.overrides += 1,
                3 => n.nmi_sources += 1,
                4 | 0xA => n.local_nmis += 1,
                _ => {}
            }
            off += u32::from(length);
        }
        Ok(n)
    }
}

/// Count and first occurrence of one kind of per-entry problem.
#[derive(Clone, Copy, Default)]
struct Tally {
    count: u32,
    first_offset: u32,
    /// Length byte (too-short entries) of the first occurrence.
    first_length: u8,
}

impl Tally {
    fn note(&mut self, off: u32, length: u8) {
        if self.count == 0 {
            self.first_offset = off;
            self.first_length = length;
        }
        self.count = self.count.saturating_add(1);
    }
}

/// Per-entry problems gathered during the walk, turned into aggregated warnings at the end.
struct Walk {
    /// Reserved entry types (all below 0x80), by type.
    reserved: [Tally; 0x80],
    /// Known entry types (all up to 0xA) shorter than they need, by type.
    too_short: [Tally; 0xB],
    invalid_ids: Tally,
    zero_apic_addr: bool,
    addr_override: Option<u64>,
    conflicting_addr: Option<(u64, u32)>,
    stop: Option<Warning>,
    /// Every processor the walk added to `cpus`.
    ids: Vec<IdSlot>,
}

/// (APIC id, index in `Madt::cpus`, entry offset): sorted to find repeated APIC ids.
type IdSlot = (u32, u32, u32);

fn u16_at(e: &[u8], at: usize) -> u16 {
    e.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(e: &[u8], at: usize) -> u32 {
    e.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(e: &[u8], at: usize) -> u64 {
    e.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn u8_at(e: &[u8], at: usize) -> u8 {
    e.get(at).copied().unwrap_or(0)
}

/// Validate (signature, length, checksum) and parse the MADT at `paddr`.
pub fn parse_madt<M: PhysMem + ?Sized>(mem: &M, paddr: u64) -> Result<Madt, AcpiError> {
    Madt::from_table(&load_table(mem, paddr, Signature::MADT)?)
}

impl Madt {
    /// Validate and parse a MADT held in a byte slice (header included).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AcpiError> {
        parse_madt(&SliceMem::new(0, bytes), 0)
    }

    /// The processors the firmware marks enabled: those boot starts ([`crate::plan`]'s rule 1;
    /// its xAPIC and CPU-limit rules come after). A disabled but online-capable processor is
    /// not among them: it waits for hot-plug, which Exo-OS does not do. Until 2026-12-06 this
    /// was `usable_cpus`, which took online-capable ones too, while boot started enabled ones
    /// only (found by review).
    pub fn enabled_cpus(&self) -> impl Iterator<Item = &Cpu> + '_ {
        self.cpus.iter().filter(|c| c.enabled)
    }

    /// GSI, polarity and trigger of ISA IRQ `irq`: identity-mapped, active high, edge,
    /// unless an interrupt source override for bus 0 says otherwise (the first, when several
    /// name the IRQ: [`Warning::DuplicateOverride`] says so).
    pub fn isa_irq(&self, irq: u8) -> IsaIrq {
        let ov = self
            .overrides
            .iter()
            .find(|o| o.bus == 0 && o.source_irq == irq);
        match ov {
            None => IsaIrq {
                gsi: u32::from(irq),
                active_low: false,
                level_triggered: false,
            },
            Some(o) => IsaIrq {
                gsi: o.gsi,
                active_low: o.polarity == Polarity::ActiveLow,
                level_triggered: o.trigger == TriggerMode::Level,
            },
        }
    }

    pub(crate) fn from_table<M: PhysMem + ?Sized>(t: &Table<'_, M>) -> Result<Self, AcpiError> {
        t.require_len(MADT_FIXED_LEN)?;
        let counts = Counts::of(t)?;
        let mut madt = Self {
            local_apic_addr: u64::from(u32::from_le_bytes(t.bytes(36)?)),
            pcat_compat: u32::from_le_bytes(t.bytes(40)?) & 1 != 0,
            cpus: Vec::new(),
            io_apics: Vec::new(),
            overrides: Vec::new(),
            nmi_sources: Vec::new(),
            local_nmis: Vec::new(),
            warnings: Vec::new(),
        };
        reserve(&mut madt.cpus, counts.cpus, CPUS)?;
        reserve(&mut madt.io_apics, counts.io_apics, IO_APICS)?;
        reserve(&mut madt.overrides, counts.overrides, OVERRIDES)?;
        reserve(&mut madt.nmi_sources, counts.nmi_sources, NMI_SOURCES)?;
        reserve(&mut madt.local_nmis, counts.local_nmis, LOCAL_NMIS)?;
        let mut w = Walk {
            reserved: [Tally::default(); 0x80],
            too_short: [Tally::default(); 0xB],
            invalid_ids: Tally::default(),
            zero_apic_addr: false,
            addr_override: None,
            conflicting_addr: None,
            stop: None,
            ids: Vec::new(),
        };
        reserve(&mut w.ids, counts.cpus, SCRATCH)?;
        let mut off = MADT_FIXED_LEN;
        let mut buf = [0u8; 256];
        // Every iteration advances `off` by at least 2 or breaks, so the walk terminates.
        loop {
            match step(t, off)? {
                Step::Entry { length, .. } => {
                    let entry = &mut buf[..usize::from(length)];
                    t.read(off, entry)?;
                    madt.entry(&mut w, off, entry)?;
                    off += u32::from(length);
                }
                Step::Stop(warning) => {
                    w.stop = Some(warning);
                    break;
                }
                Step::End => break,
            }
        }
        madt.finish(w)?;
        Ok(madt)
    }

    /// Handle one complete entry (`e` includes the type and length bytes).
    fn entry(&mut self, w: &mut Walk, off: u32, e: &[u8]) -> Result<(), AcpiError> {
        let entry_type = u8_at(e, 0);
        let length = e.len() as u8;
        let Some(needed) = needed_len(entry_type) else {
            if !ignored_type(entry_type)
                && let Some(tally) = w.reserved.get_mut(usize::from(entry_type))
            {
                tally.note(off, length);
            }
            return Ok(());
        };
        if length < needed {
            if let Some(tally) = w.too_short.get_mut(usize::from(entry_type)) {
                tally.note(off, length);
            }
            return Ok(());
        }
        match entry_type {
            0 => {
                let flags = u32_at(e, 4);
                let apic_id = u8_at(e, 3);
                if apic_id == 0xFF {
                    w.invalid_ids.note(off, length);
                    return Ok(());
                }
                self.add_cpu(
                    w,
                    off,
                    Cpu {
                        apic_id: u32::from(apic_id),
                        acpi_uid: u32::from(u8_at(e, 2)),
                        enabled: flags & 1 != 0,
                        online_capable: flags & 2 != 0,
                        x2apic_entry: false,
                    },
                )?;
            }
            9 => {
                let apic_id = u32_at(e, 4);
                let flags = u32_at(e, 8);
                if apic_id == u32::MAX {
                    w.invalid_ids.note(off, length);
                    return Ok(());
                }
                self.add_cpu(
                    w,
                    off,
                    Cpu {
                        apic_id,
                        acpi_uid: u32_at(e, 12),
                        enabled: flags & 1 != 0,
                        online_capable: flags & 2 != 0,
                        x2apic_entry: true,
                    },
                )?;
            }
            1 => {
                let io = IoApic {
                    id: u8_at(e, 2),
                    address: u64::from(u32_at(e, 4)),
                    gsi_base: u32_at(e, 8),
                };
                try_push(&mut self.io_apics, io, IO_APICS)?;
            }
            2 => {
                let flags = u16_at(e, 8);
                let ov = IntOverride {
                    bus: u8_at(e, 2),
                    source_irq: u8_at(e, 3),
                    gsi: u32_at(e, 4),
                    polarity: Polarity::from_flags(flags),
                    trigger: TriggerMode::from_flags(flags),
                };
                try_push(&mut self.overrides, ov, OVERRIDES)?;
            }
            3 => {
                let flags = u16_at(e, 2);
                let src = NmiSource {
                    gsi: u32_at(e, 4),
                    polarity: Polarity::from_flags(flags),
                    trigger: TriggerMode::from_flags(flags),
                };
                try_push(&mut self.nmi_sources, src, NMI_SOURCES)?;
            }
            4 => {
                let uid = u8_at(e, 2);
                let flags = u16_at(e, 3);
                let nmi = LocalNmi {
                    processor: if uid == 0xFF {
                        NmiProcessor::All
                    } else {
                        NmiProcessor::Uid(u32::from(uid))
                    },
                    lint: u8_at(e, 5),
                    polarity: Polarity::from_flags(flags),
                    trigger: TriggerMode::from_flags(flags),
                    x2apic_entry: false,
                };
                try_push(&mut self.local_nmis, nmi, LOCAL_NMIS)?;
            }
            0xA => {
                let flags = u16_at(e, 2);
                let uid = u32_at(e, 4);
                let nmi = LocalNmi {
                    processor: if uid == u32::MAX {
                        NmiProcessor::All
                    } else {
                        NmiProcessor::Uid(uid)
                    },
                    lint: u8_at(e, 8),
                    polarity: Polarity::from_flags(flags),
                    trigger: TriggerMode::from_flags(flags),
                    x2apic_entry: true,
                };
                try_push(&mut self.local_nmis, nmi, LOCAL_NMIS)?;
            }
            5 => {
                let addr = u64_at(e, 4);
                match w.addr_override {
                    _ if addr == 0 => w.zero_apic_addr = true,
                    None => w.addr_override = Some(addr),
                    Some(kept) if kept != addr => {
                        let (first, count) = w.conflicting_addr.unwrap_or((addr, 0));
                        w.conflicting_addr = Some((first, count.saturating_add(1)));
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Record a processor; duplicates are resolved in [`Madt::resolve_duplicates`].
    fn add_cpu(&mut self, w: &mut Walk, off: u32, cpu: Cpu) -> Result<(), AcpiError> {
        let index = self.cpus.len() as u32;
        try_push(&mut self.cpus, cpu, CPUS)?;
        try_push(&mut w.ids, (cpu.apic_id, index, off), SCRATCH)
    }

    /// Keep one processor per APIC id, at the place of the first entry with that id: the
    /// best entry (enabled, else online-capable, else disabled), the first in table order of
    /// the best. Returns the aggregated [`Warning::DuplicateApicId`], if any id repeats.
    /// Until 2026-12-05 the first *usable* entry won, so an online-capable placeholder
    /// listed before an enabled entry of the same id hid a CPU boot would have started
    /// (found by review; the Gigabyte B550 sample repeats ids with other flags).
    ///
    /// `O(N log N)`: sorts the (id, index, offset) list instead of searching `cpus` per entry.
    fn resolve_duplicates(&mut self, ids: &mut [IdSlot]) -> Result<Option<Warning>, AcpiError> {
        // Indices are distinct, so the order is total and the unstable sort deterministic.
        ids.sort_unstable();
        if !ids.windows(2).any(|p| p[0].0 == p[1].0) {
            return Ok(None);
        }
        let mut keep = Vec::new();
        reserve(&mut keep, self.cpus.len(), SCRATCH)?;
        keep.resize(self.cpus.len(), true);
        // (count, offset of the first repeating entry, its id)
        let (mut count, mut first_offset, mut first_id) = (0u32, u32::MAX, 0u32);
        for group in ids.chunk_by(|a, b| a.0 == b.0) {
            let [(_, first, _), repeats @ ..] = group else {
                continue;
            };
            let first = *first as usize;
            let rank = |i: usize| {
                self.cpus.get(i).map_or(0, |c| {
                    if c.enabled {
                        2
                    } else {
                        u8::from(c.online_capable)
                    }
                })
            };
            // The earliest entry of the highest rank (`max_by_key` would take the last).
            let best = repeats
                .iter()
                .map(|&(_, i, _)| i as usize)
                .fold(first, |b, i| if rank(i) > rank(b) { i } else { b });
            if best != first
                && let Some(&cpu) = self.cpus.get(best)
                && let Some(slot) = self.cpus.get_mut(first)
            {
                *slot = cpu;
            }
            for &(apic_id, index, off) in repeats {
                if let Some(k) = keep.get_mut(index as usize) {
                    *k = false;
                }
                count = count.saturating_add(1);
                if off < first_offset {
                    (first_offset, first_id) = (off, apic_id);
                }
            }
        }
        let mut kept = keep.iter();
        self.cpus.retain(|_| kept.next().copied().unwrap_or(true));
        Ok(Some(Warning::DuplicateApicId {
            apic_id: first_id,
            offset: first_offset,
            count,
        }))
    }

    /// The aggregated [`Warning::DuplicateOverride`], if two interrupt source overrides name
    /// the same bus and IRQ: how many repeat an earlier one, and the bus and IRQ of the first
    /// that does (in table order). Until 2026-12-06 repeats were kept without a word while
    /// [`Madt::isa_irq`] used the first (found by review).
    ///
    /// `O(N log N)`: sorts a scratch list of (bus and IRQ, index).
    fn repeated_overrides(&self) -> Result<Option<Warning>, AcpiError> {
        if self.overrides.len() < 2 {
            return Ok(None);
        }
        let mut keys: Vec<(u16, u32)> = Vec::new();
        reserve(&mut keys, self.overrides.len(), OVERRIDE_SCRATCH)?;
        keys.extend(
            (0u32..)
                .zip(&self.overrides)
                .map(|(i, o)| (u16::from_be_bytes([o.bus, o.source_irq]), i)),
        );
        // Indices are distinct, so the order is total and the unstable sort deterministic.
        keys.sort_unstable();
        let (mut count, mut first) = (0u32, None::<(u32, u16)>);
        for group in keys.chunk_by(|a, b| a.0 == b.0) {
            for &(key, index) in group.iter().skip(1) {
                count = count.saturating_add(1);
                if first.is_none_or(|(i, _)| index < i) {
                    first = Some((index, key));
                }
            }
        }
        Ok(first.map(|(_, key)| {
            let [bus, irq] = key.to_be_bytes();
            Warning::DuplicateOverride { bus, irq, count }
        }))
    }

    /// Apply the address override, resolve duplicate APIC ids and emit the warnings:
    /// the walk's stop, then per-entry problems (aggregated), then summaries.
    fn finish(&mut self, mut w: Walk) -> Result<(), AcpiError> {
        if let Some(addr) = w.addr_override {
            self.local_apic_addr = addr;
        }
        let duplicates = self.resolve_duplicates(&mut w.ids)?;
        // Free the scratch list before the warnings are allocated.
        drop(core::mem::take(&mut w.ids));
        let repeated_overrides = self.repeated_overrides()?;
        let mut stop = w.stop;
        if let Some(
            Warning::MadtEntryBadLength { cpus, .. } | Warning::MadtEntryTruncated { cpus, .. },
        ) = &mut stop
        {
            *cpus = self.cpus.len() as u32;
        }
        let reserved =
            (0u8..)
                .zip(w.reserved)
                .filter(|(_, t)| t.count > 0)
                .map(|(entry_type, t)| Warning::UnknownMadtEntry {
                    offset: t.first_offset,
                    entry_type,
                    count: t.count,
                });
        let too_short =
            (0u8..)
                .zip(w.too_short)
                .filter(|(_, t)| t.count > 0)
                .map(|(entry_type, t)| Warning::MadtEntryTooShort {
                    offset: t.first_offset,
                    entry_type,
                    length: t.first_length,
                    needed: needed_len(entry_type).unwrap_or(0),
                    count: t.count,
                });
        let invalid = (w.invalid_ids.count > 0).then_some(Warning::InvalidApicIds {
            count: w.invalid_ids.count,
            first_offset: w.invalid_ids.first_offset,
        });
        let zero_addr = w.zero_apic_addr.then_some(Warning::UnusableAddress {
            table: Signature::MADT,
            space_id: 0,
            address: 0,
        });
        let conflicting =
            w.addr_override
                .zip(w.conflicting_addr)
                .map(|(kept, (ignored, count))| Warning::ConflictingApicAddress {
                    kept,
                    ignored,
                    count,
                });
        let no_cpus = self
            .enabled_cpus()
            .next()
            .is_none()
            .then_some(Warning::NoEnabledCpus);
        let all = stop
            .into_iter()
            .chain(reserved)
            .chain(too_short)
            .chain(invalid)
            .chain(duplicates)
            .chain(repeated_overrides)
            .chain(zero_addr)
            .chain(conflicting)
            .chain(no_cpus);
        reserve(&mut self.warnings, all.clone().count(), WARNINGS)?;
        for warning in all {
            try_push(&mut self.warnings, warning, WARNINGS)?;
        }
        Ok(())
    }
}

// What each list holds, for `AcpiError::OutOfMemory`.
const CPUS: &str = "MADT processor entries";
const IO_APICS: &str = "MADT I/O APIC entries";
const OVERRIDES: &str = "MADT interrupt source override entries";
const NMI_SOURCES: &str = "MADT NMI source entries";
const LOCAL_NMIS: &str = "MADT local APIC NMI entries";
const SCRATCH: &str = "MADT processor entries (duplicate id check)";
const OVERRIDE_SCRATCH: &str = "MADT interrupt source overrides (repeat check)";
const WARNINGS: &str = "MADT warnings";
