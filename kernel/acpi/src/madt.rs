//! MADT ("APIC" table) parsing: processors, I/O APICs, interrupt overrides, NMIs.

use crate::error::push_warning;
use crate::sdt::{Table, load_table};
use crate::{AcpiError, MAX_CPUS, PhysMem, Signature, SliceMem, Warning};
use arrayvec::ArrayVec;

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

impl Cpu {
    /// Whether the OS may start this processor (`enabled || online_capable`).
    pub fn usable(&self) -> bool {
        self.enabled || self.online_capable
    }
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
#[derive(Clone, Debug)]
pub struct Madt {
    /// Local APIC physical address (32-bit field, replaced by a type-5 override if present).
    pub local_apic_addr: u64,
    /// Flags bit 0: dual 8259 PICs are present and must be masked.
    pub pcat_compat: bool,
    /// Processors in table order, distinct APIC ids, at most [`MAX_CPUS`].
    pub cpus: ArrayVec<Cpu, MAX_CPUS>,
    /// I/O APICs.
    pub io_apics: ArrayVec<IoApic, 16>,
    /// Interrupt source overrides.
    pub overrides: ArrayVec<IntOverride, 32>,
    /// NMI sources.
    pub nmi_sources: ArrayVec<NmiSource, 8>,
    /// Local APIC NMI pins.
    pub local_nmis: ArrayVec<LocalNmi, 16>,
    /// Non-fatal problems found while parsing.
    pub warnings: ArrayVec<Warning, 16>,
}

/// Counters gathered during the walk, turned into summary warnings at the end.
#[derive(Default)]
struct Walk {
    invalid_ids: u32,
    first_invalid: u32,
    extra_cpus: u32,
    extra_io_apics: u32,
    extra_overrides: u32,
    extra_nmi_sources: u32,
    extra_local_nmis: u32,
    addr_override: Option<u64>,
}

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

/// Push onto a bounded list, counting what does not fit.
fn push_or_count<T, const N: usize>(list: &mut ArrayVec<T, N>, item: T, extra: &mut u32) {
    if list.try_push(item).is_err() {
        *extra = extra.saturating_add(1);
    }
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

    /// Processors the OS may start.
    pub fn usable_cpus(&self) -> impl Iterator<Item = &Cpu> + '_ {
        self.cpus.iter().filter(|c| c.usable())
    }

    /// GSI, polarity and trigger of ISA IRQ `irq`: identity-mapped, active high, edge,
    /// unless an interrupt source override for bus 0 says otherwise.
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
        let mut madt = Self {
            local_apic_addr: u64::from(u32::from_le_bytes(t.bytes(36)?)),
            pcat_compat: u32::from_le_bytes(t.bytes(40)?) & 1 != 0,
            cpus: ArrayVec::new(),
            io_apics: ArrayVec::new(),
            overrides: ArrayVec::new(),
            nmi_sources: ArrayVec::new(),
            local_nmis: ArrayVec::new(),
            warnings: ArrayVec::new(),
        };
        let mut w = Walk::default();
        let mut off = MADT_FIXED_LEN;
        let mut buf = [0u8; 256];
        // Every iteration advances `off` by at least 2 or breaks, so the walk terminates.
        while off < t.len {
            let remaining = t.len - off;
            if remaining < 2 {
                madt.warn(Warning::MadtTrailingByte { offset: off });
                break;
            }
            let [entry_type, length] = t.bytes::<2>(off)?;
            if length < 2 {
                let cpus = madt.cpus.len() as u32;
                madt.warn(Warning::MadtEntryBadLength {
                    offset: off,
                    length,
                    cpus,
                });
                break;
            }
            if u32::from(length) > remaining {
                let cpus = madt.cpus.len() as u32;
                madt.warn(Warning::MadtEntryTruncated {
                    offset: off,
                    entry_type,
                    length,
                    table_len: t.len,
                    cpus,
                });
                break;
            }
            let entry = &mut buf[..usize::from(length)];
            t.read(off, entry)?;
            madt.entry(&mut w, off, entry);
            off += u32::from(length);
        }
        madt.finish(&w);
        Ok(madt)
    }

    fn warn(&mut self, w: Warning) {
        push_warning(&mut self.warnings, w);
    }

    /// Handle one complete entry (`e` includes the type and length bytes).
    fn entry(&mut self, w: &mut Walk, off: u32, e: &[u8]) {
        let entry_type = u8_at(e, 0);
        let needed: u8 = match entry_type {
            0 => 8,
            1 => 12,
            2 => 10,
            3 => 8,
            4 => 6,
            5 => 12,
            9 => 16,
            0xA => 12,
            // Defined by the spec but irrelevant here (IA-64 SAPIC, platform interrupt
            // sources, GIC/RISC-V/LoongArch structures, MP wakeup) or OEM-reserved.
            6..=8 | 0xB..=0x1B | 0x80..=0xFF => return,
            _ => {
                self.warn(Warning::UnknownMadtEntry {
                    offset: off,
                    entry_type,
                });
                return;
            }
        };
        if e.len() < usize::from(needed) {
            self.warn(Warning::MadtEntryTooShort {
                offset: off,
                entry_type,
                length: e.len() as u8,
                needed,
            });
            return;
        }
        match entry_type {
            0 => {
                let flags = u32_at(e, 4);
                let apic_id = u8_at(e, 3);
                if apic_id == 0xFF {
                    w.note_invalid(off);
                    return;
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
                );
            }
            9 => {
                let apic_id = u32_at(e, 4);
                let flags = u32_at(e, 8);
                if apic_id == u32::MAX {
                    w.note_invalid(off);
                    return;
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
                );
            }
            1 => {
                let io = IoApic {
                    id: u8_at(e, 2),
                    address: u64::from(u32_at(e, 4)),
                    gsi_base: u32_at(e, 8),
                };
                push_or_count(&mut self.io_apics, io, &mut w.extra_io_apics);
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
                push_or_count(&mut self.overrides, ov, &mut w.extra_overrides);
            }
            3 => {
                let flags = u16_at(e, 2);
                let src = NmiSource {
                    gsi: u32_at(e, 4),
                    polarity: Polarity::from_flags(flags),
                    trigger: TriggerMode::from_flags(flags),
                };
                push_or_count(&mut self.nmi_sources, src, &mut w.extra_nmi_sources);
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
                push_or_count(&mut self.local_nmis, nmi, &mut w.extra_local_nmis);
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
                push_or_count(&mut self.local_nmis, nmi, &mut w.extra_local_nmis);
            }
            5 => {
                let addr = u64_at(e, 4);
                match w.addr_override {
                    _ if addr == 0 => self.warn(Warning::UnusableAddress {
                        table: Signature::MADT,
                        space_id: 0,
                        address: 0,
                    }),
                    None => w.addr_override = Some(addr),
                    Some(kept) if kept != addr => self.warn(Warning::ConflictingApicAddress {
                        kept,
                        ignored: addr,
                    }),
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }

    /// Add a processor, enforcing distinct APIC ids and the [`MAX_CPUS`] cap.
    fn add_cpu(&mut self, w: &mut Walk, off: u32, cpu: Cpu) {
        if let Some(existing) = self.cpus.iter_mut().find(|c| c.apic_id == cpu.apic_id) {
            if !existing.usable() && cpu.usable() {
                *existing = cpu;
            }
            self.warn(Warning::DuplicateApicId {
                apic_id: cpu.apic_id,
                offset: off,
            });
            return;
        }
        push_or_count(&mut self.cpus, cpu, &mut w.extra_cpus);
    }

    /// Apply the address override and emit summary warnings.
    fn finish(&mut self, w: &Walk) {
        if let Some(addr) = w.addr_override {
            self.local_apic_addr = addr;
        }
        if w.invalid_ids > 0 {
            self.warn(Warning::InvalidApicIds {
                count: w.invalid_ids,
                first_offset: w.first_invalid,
            });
        }
        if w.extra_cpus > 0 {
            self.warn(Warning::TooManyCpus {
                kept: MAX_CPUS as u32,
                ignored: w.extra_cpus,
            });
        }
        let lists = [
            ("I/O APIC", self.io_apics.capacity(), w.extra_io_apics),
            (
                "interrupt override",
                self.overrides.capacity(),
                w.extra_overrides,
            ),
            (
                "NMI source",
                self.nmi_sources.capacity(),
                w.extra_nmi_sources,
            ),
            (
                "local APIC NMI",
                self.local_nmis.capacity(),
                w.extra_local_nmis,
            ),
        ];
        for (what, cap, ignored) in lists {
            if ignored > 0 {
                self.warn(Warning::TooManyEntries {
                    what,
                    kept: cap as u32,
                    ignored,
                });
            }
        }
        if self.usable_cpus().next().is_none() {
            self.warn(Warning::NoUsableCpus);
        }
    }
}

impl Walk {
    fn note_invalid(&mut self, off: u32) {
        if self.invalid_ids == 0 {
            self.first_invalid = off;
        }
        self.invalid_ids = self.invalid_ids.saturating_add(1);
    }
}
