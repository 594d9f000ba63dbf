//! Fatal errors ([`AcpiError`]) and non-fatal diagnostics ([`Warning`]).

use alloc::vec::Vec;
use core::fmt;

/// A four-byte ACPI table signature such as `APIC` or `FACP`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// Pseudo-signature used in diagnostics about the RSDP (whose real signature is `"RSD PTR "`).
    pub const RSDP: Self = Self(*b"RSDP");
    /// Root System Description Table (32-bit entries).
    pub const RSDT: Self = Self(*b"RSDT");
    /// Extended System Description Table (64-bit entries).
    pub const XSDT: Self = Self(*b"XSDT");
    /// Multiple APIC Description Table.
    pub const MADT: Self = Self(*b"APIC");
    /// Fixed ACPI Description Table.
    pub const FADT: Self = Self(*b"FACP");
    /// HPET description table.
    pub const HPET: Self = Self(*b"HPET");
    /// PCI Express memory-mapped configuration space (ECAM windows).
    pub const MCFG: Self = Self(*b"MCFG");
    /// Differentiated System Description Table (AML; named by the FADT).
    pub const DSDT: Self = Self(*b"DSDT");
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(\"{self}\")")
    }
}

/// A fatal problem: the requested structure cannot be used at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// Physical memory could not be read (unmapped, out of range, or the address overflowed).
    Read {
        /// First physical address of the failed read.
        paddr: u64,
        /// Number of bytes requested.
        len: usize,
    },
    /// No `"RSD PTR "` signature at the given address.
    BadRsdpSignature {
        /// Physical address that was checked.
        paddr: u64,
    },
    /// A table does not carry the signature its referrer promised.
    BadSignature {
        /// Physical address of the table.
        paddr: u64,
        /// Signature that was expected.
        expected: Signature,
        /// Signature actually found.
        found: Signature,
    },
    /// The bytes of a structure do not sum to zero (mod 256).
    BadChecksum {
        /// Which table (or [`Signature::RSDP`]).
        table: Signature,
        /// Physical address of the table.
        paddr: u64,
        /// The actual byte sum (0 would be valid).
        sum: u8,
    },
    /// A length field is below the minimum or above the sanity cap.
    BadLength {
        /// Which table (or [`Signature::RSDP`]).
        table: Signature,
        /// Physical address of the table.
        paddr: u64,
        /// Length found in the header.
        length: u32,
        /// Smallest accepted length.
        min: u32,
        /// Largest accepted length.
        max: u32,
    },
    /// A table is valid but too short to hold the fixed fields this crate needs.
    Truncated {
        /// Which table.
        table: Signature,
        /// Physical address of the table.
        paddr: u64,
        /// Length found in the header.
        length: u32,
        /// Length needed.
        needed: u32,
    },
    /// The RSDP names neither an RSDT nor an XSDT.
    NoRootTable {
        /// Physical address of the RSDP.
        paddr: u64,
    },
    /// Neither root table is usable: the XSDT was refused, and so was the RSDT the RSDP
    /// names beside it.
    RootTablesUnusable {
        /// Why the XSDT was refused.
        xsdt: TableError,
        /// Why the RSDT was refused.
        rsdt: TableError,
    },
    /// No usable MADT (only returned by [`crate::Platform::require_madt`]).
    NoMadt,
    /// The heap could not provide room for a list (the list is sized from the table).
    OutOfMemory {
        /// What the list holds, e.g. "MADT processor entries".
        what: &'static str,
        /// How many items it needed room for.
        count: usize,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Read { paddr, len } => {
                write!(
                    f,
                    "cannot read {len} bytes of physical memory at {paddr:#x}"
                )
            }
            Self::BadRsdpSignature { paddr } => {
                write!(f, "no \"RSD PTR \" signature at {paddr:#x}")
            }
            Self::BadSignature {
                paddr,
                expected,
                found,
            } => write!(
                f,
                "table at {paddr:#x} has signature \"{found}\", expected \"{expected}\""
            ),
            Self::BadChecksum { table, paddr, sum } => write!(
                f,
                "{table} at {paddr:#x} has a bad checksum (bytes sum to {sum:#04x}, expected 0)"
            ),
            Self::BadLength {
                table,
                paddr,
                length,
                min,
                max,
            } => write!(
                f,
                "{table} at {paddr:#x} has length {length}, outside the accepted {min}..={max}"
            ),
            Self::Truncated {
                table,
                paddr,
                length,
                needed,
            } => write!(
                f,
                "{table} at {paddr:#x} is truncated: length {length}, need at least {needed}"
            ),
            Self::NoRootTable { paddr } => {
                write!(f, "RSDP at {paddr:#x} names neither an RSDT nor an XSDT")
            }
            Self::RootTablesUnusable { xsdt, rsdt } => write!(
                f,
                "neither root table is usable: the XSDT: {xsdt}; the RSDT: {rsdt}"
            ),
            Self::NoMadt => write!(f, "no usable MADT (APIC table)"),
            Self::OutOfMemory { what, count } => {
                write!(f, "out of memory: cannot allocate room for {count} {what}")
            }
        }
    }
}

impl core::error::Error for AcpiError {}

impl AcpiError {
    /// The physical address the error is about, where it names one: the table (or RSDP)
    /// that was refused, or the start of the read that failed. Lets the caller say what lies
    /// there (a boot module loaded over the firmware's tables, say).
    #[must_use]
    pub const fn paddr(&self) -> Option<u64> {
        match *self {
            Self::Read { paddr, .. }
            | Self::BadRsdpSignature { paddr }
            | Self::BadSignature { paddr, .. }
            | Self::BadChecksum { paddr, .. }
            | Self::BadLength { paddr, .. }
            | Self::Truncated { paddr, .. }
            | Self::NoRootTable { paddr } => Some(paddr),
            Self::RootTablesUnusable { xsdt, .. } => Some(xsdt.paddr()),
            Self::NoMadt | Self::OutOfMemory { .. } => None,
        }
    }

    /// Every physical address the error names: [`Self::paddr`]'s, then for
    /// [`Self::RootTablesUnusable`] the RSDT's (the XSDT's is the first).
    pub fn paddrs(&self) -> impl Iterator<Item = u64> + use<> {
        let rsdt = match *self {
            Self::RootTablesUnusable { rsdt, .. } => Some(rsdt.paddr()),
            _ => None,
        };
        self.paddr().into_iter().chain(rsdt)
    }
}

/// Why a table was refused when loaded (its signature, length, checksum, or its bytes could
/// not be read): the [`AcpiError`] variants of the same names, as a type of their own so that
/// [`AcpiError::RootTablesUnusable`] can carry two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// See [`AcpiError::Read`].
    Read {
        /// First physical address of the failed read.
        paddr: u64,
        /// Number of bytes requested.
        len: usize,
    },
    /// See [`AcpiError::BadSignature`].
    BadSignature {
        /// Physical address of the table.
        paddr: u64,
        /// Signature that was expected.
        expected: Signature,
        /// Signature actually found.
        found: Signature,
    },
    /// See [`AcpiError::BadLength`].
    BadLength {
        /// Which table.
        table: Signature,
        /// Physical address of the table.
        paddr: u64,
        /// Length found in the header.
        length: u32,
        /// Smallest accepted length.
        min: u32,
        /// Largest accepted length.
        max: u32,
    },
    /// See [`AcpiError::BadChecksum`].
    BadChecksum {
        /// Which table.
        table: Signature,
        /// Physical address of the table.
        paddr: u64,
        /// The actual byte sum (0 would be valid).
        sum: u8,
    },
}

impl TableError {
    /// A failed read of `len` bytes at `paddr`: the reader's [`AcpiError::Read`] as it is,
    /// any other error it gave as a read of the range asked for (see [`crate::PhysMem`]).
    pub(crate) fn read(e: AcpiError, paddr: u64, len: usize) -> Self {
        match e {
            AcpiError::Read { paddr, len } => Self::Read { paddr, len },
            _ => Self::Read { paddr, len },
        }
    }

    /// The physical address of the refused table, or of the failed read.
    #[must_use]
    pub const fn paddr(&self) -> u64 {
        match *self {
            Self::Read { paddr, .. }
            | Self::BadSignature { paddr, .. }
            | Self::BadLength { paddr, .. }
            | Self::BadChecksum { paddr, .. } => paddr,
        }
    }
}

impl From<TableError> for AcpiError {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Read { paddr, len } => Self::Read { paddr, len },
            TableError::BadSignature {
                paddr,
                expected,
                found,
            } => Self::BadSignature {
                paddr,
                expected,
                found,
            },
            TableError::BadLength {
                table,
                paddr,
                length,
                min,
                max,
            } => Self::BadLength {
                table,
                paddr,
                length,
                min,
                max,
            },
            TableError::BadChecksum { table, paddr, sum } => {
                Self::BadChecksum { table, paddr, sum }
            }
        }
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        AcpiError::from(*self).fmt(f)
    }
}

/// A non-fatal problem: something was skipped, parsing went on.
///
/// Problems that can repeat once per table entry are aggregated: one warning per kind (and per
/// table or entry type) carries a `count` and describes the first occurrence, so a table with
/// many bad entries cannot crowd out the other warnings. Every count is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Tables with this signature were found but are unusable (bad checksum, length,
    /// truncated, unreadable, out of memory).
    TableSkipped {
        /// Signature from the table header.
        table: Signature,
        /// Physical address of the first unusable one.
        paddr: u64,
        /// Why the first one was skipped.
        reason: AcpiError,
        /// How many tables with this signature were skipped.
        count: u32,
    },
    /// The XSDT was unusable, the RSDT is used instead.
    XsdtFallback {
        /// Why the XSDT was rejected.
        reason: AcpiError,
    },
    /// The root table's entry area is not a whole number of entries.
    RootTrailingBytes {
        /// RSDT or XSDT.
        root: Signature,
        /// Leftover bytes ignored.
        extra: u32,
    },
    /// Root-table entries that are null pointers.
    NullRootEntry {
        /// RSDT or XSDT.
        root: Signature,
        /// Index of the first one.
        index: u32,
        /// How many.
        count: u32,
    },
    /// Root-table entries pointing to memory whose table header cannot be read.
    RootEntryUnreadable {
        /// RSDT or XSDT.
        root: Signature,
        /// Index of the first one.
        index: u32,
        /// Address the first one points to.
        paddr: u64,
        /// How many.
        count: u32,
    },
    /// Root-table entries pointing to a table header of zero bytes (no signature): memory
    /// the firmware never wrote, or that something (a boot module loaded over the tables)
    /// overwrote. Skipped like any table this crate does not use, but said.
    BlankTable {
        /// RSDT or XSDT.
        root: Signature,
        /// Index of the first one.
        index: u32,
        /// Address the first one points to.
        paddr: u64,
        /// How many.
        count: u32,
    },
    /// Further valid tables with a signature already in use; the first valid one is used.
    DuplicateTable {
        /// Signature of the table.
        table: Signature,
        /// Address of the first ignored copy.
        paddr: u64,
        /// How many copies were ignored.
        count: u32,
    },
    /// No usable MADT: the kernel should run on the boot CPU only.
    NoMadt,
    /// A MADT entry with length < 2; the walk stopped there.
    MadtEntryBadLength {
        /// Offset of the entry from the start of the MADT.
        offset: u32,
        /// Its length byte.
        length: u8,
        /// CPUs collected before stopping.
        cpus: u32,
    },
    /// A MADT entry runs past the end of the table; the walk stopped there.
    MadtEntryTruncated {
        /// Offset of the entry from the start of the MADT.
        offset: u32,
        /// Its type byte.
        entry_type: u8,
        /// Its length byte.
        length: u8,
        /// Length of the MADT.
        table_len: u32,
        /// CPUs collected before stopping.
        cpus: u32,
    },
    /// One stray byte after the last MADT entry (too short to be an entry header).
    MadtTrailingByte {
        /// Offset of the byte.
        offset: u32,
    },
    /// Known MADT entries shorter than their type requires; they were skipped.
    /// One warning per entry type.
    MadtEntryTooShort {
        /// Offset of the first such entry.
        offset: u32,
        /// Their type byte.
        entry_type: u8,
        /// Length byte of the first one.
        length: u8,
        /// Minimum length for this type.
        needed: u8,
        /// How many entries of this type were too short.
        count: u32,
    },
    /// MADT entries of a reserved (undefined) type; they were skipped. One warning per type.
    UnknownMadtEntry {
        /// Offset of the first one.
        offset: u32,
        /// Their type byte.
        entry_type: u8,
        /// How many entries of this type.
        count: u32,
    },
    /// Processor entries with an invalid APIC id (0xFF in a type-0 entry,
    /// 0xFFFF_FFFF in a type-9 entry) were skipped.
    InvalidApicIds {
        /// How many such entries.
        count: u32,
        /// Offset of the first one.
        first_offset: u32,
    },
    /// Processor entries repeat an APIC id listed earlier. One entry is kept per id, at the
    /// place of the first: the first enabled one in table order, else the first online-capable
    /// one, else the first.
    DuplicateApicId {
        /// The id repeated by the first repeating entry (lowest offset).
        apic_id: u32,
        /// Offset of the first repeating entry.
        offset: u32,
        /// How many entries were dropped as repeats.
        count: u32,
    },
    /// Interrupt source overrides that name a bus and IRQ an earlier override names too. All
    /// are kept in [`crate::Madt::overrides`]; [`crate::Madt::isa_irq`] uses the first.
    DuplicateOverride {
        /// Bus of the first repeating override (in table order).
        bus: u8,
        /// Its bus-relative IRQ.
        irq: u8,
        /// How many overrides repeat an earlier one's bus and IRQ.
        count: u32,
    },
    /// Local APIC address overrides with values different from the first; the first is used.
    ConflictingApicAddress {
        /// Address used.
        kept: u64,
        /// The first different address ignored.
        ignored: u64,
        /// How many overrides were ignored for conflicting.
        count: u32,
    },
    /// The MADT lists no enabled processor (online-capable ones are not started: see
    /// [`crate::Madt::enabled_cpus`]), so no CPU but the boot CPU runs.
    NoEnabledCpus,
    /// An address taken from a table is unusable and was ignored. (A table repeating the same
    /// unusable address, such as several zero local APIC address overrides, gives one warning.)
    UnusableAddress {
        /// Table it came from.
        table: Signature,
        /// Generic Address Structure space id (0 memory, 1 I/O port).
        space_id: u8,
        /// The address.
        address: u64,
    },
    /// MCFG entries that cannot be an ECAM window (zero or unaligned base, start bus after
    /// end bus, past the physical address space) or beyond the ones kept; dropped.
    BadMcfgEntry {
        /// Index of the first dropped entry.
        index: u32,
        /// Its base address.
        base: u64,
        /// How many entries were dropped.
        count: u32,
    },
    /// virtio-mmio windows of the DSDT that a driver cannot use (zero, unaligned, shorter
    /// than 512 bytes or longer than 64 KiB, reaching past 4 GiB, overlapping one listed
    /// earlier) or beyond the ones kept; dropped.
    BadVirtioMmio {
        /// The first dropped window's base.
        base: u64,
        /// Its length.
        len: u32,
        /// How many windows were dropped.
        count: u32,
    },
    /// Devices of the DSDT with the virtio-mmio `_HID` (`LNRO0005`) whose window could not
    /// be decoded: no `_CRS` among the names the scan reached, a `_CRS` computed by a method,
    /// or one without a fixed 32-bit memory window. Not used (the kernel's command line can
    /// name them).
    UndecodedVirtioMmio {
        /// Offset of the first one's `Device` op from the start of the DSDT.
        offset: u32,
        /// How many such devices.
        count: u32,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TableSkipped {
                table,
                paddr,
                reason,
                count: 1,
            } => write!(f, "skipping {table} table at {paddr:#x}: {reason}"),
            Self::TableSkipped {
                table,
                paddr,
                reason,
                count,
            } => write!(
                f,
                "skipping {count} unusable {table} tables; the first, at {paddr:#x}: {reason}"
            ),
            Self::XsdtFallback { reason } => {
                write!(f, "XSDT unusable ({reason}); falling back to RSDT")
            }
            Self::RootTrailingBytes { root, extra } => {
                write!(f, "{root} has {extra} trailing bytes after its last entry")
            }
            Self::NullRootEntry {
                root,
                index,
                count: 1,
            } => write!(f, "{root} entry {index} is null"),
            Self::NullRootEntry { root, index, count } => write!(
                f,
                "{count} {root} entries are null (the first is entry {index})"
            ),
            Self::RootEntryUnreadable {
                root,
                index,
                paddr,
                count: 1,
            } => write!(
                f,
                "{root} entry {index} points to unreadable memory at {paddr:#x}"
            ),
            Self::RootEntryUnreadable {
                root,
                index,
                paddr,
                count,
            } => write!(
                f,
                "{count} {root} entries point to unreadable memory \
                 (the first is entry {index}, at {paddr:#x})"
            ),
            Self::BlankTable {
                root,
                index,
                paddr,
                count: 1,
            } => write!(
                f,
                "{root} entry {index} points to a blank table (zero bytes, no signature) at {paddr:#x}"
            ),
            Self::BlankTable {
                root,
                index,
                paddr,
                count,
            } => write!(
                f,
                "{count} {root} entries point to blank tables (zero bytes, no signature; \
                 the first is entry {index}, at {paddr:#x})"
            ),
            Self::DuplicateTable {
                table,
                paddr,
                count: 1,
            } => write!(
                f,
                "ignoring second {table} table at {paddr:#x}; using the first valid one"
            ),
            Self::DuplicateTable {
                table,
                paddr,
                count,
            } => write!(
                f,
                "ignoring {count} further {table} tables (the first at {paddr:#x}); \
                 using the first valid one"
            ),
            Self::NoMadt => write!(f, "no usable MADT; only the boot CPU will run"),
            Self::MadtEntryBadLength {
                offset,
                length,
                cpus,
            } => write!(
                f,
                "MADT entry at offset {offset:#x} has length {length}; \
                 stopped walking MADT after {cpus} CPUs"
            ),
            Self::MadtEntryTruncated {
                offset,
                entry_type,
                length,
                table_len,
                cpus,
            } => write!(
                f,
                "MADT entry at offset {offset:#x} (type {entry_type:#x}, length {length}) runs \
                 past table end {table_len:#x}; stopped walking MADT after {cpus} CPUs"
            ),
            Self::MadtTrailingByte { offset } => {
                write!(f, "MADT has a stray byte at offset {offset:#x}")
            }
            Self::MadtEntryTooShort {
                offset,
                entry_type,
                length,
                needed,
                count: 1,
            } => write!(
                f,
                "MADT entry at offset {offset:#x} (type {entry_type:#x}) has length {length}, \
                 needs {needed}; skipped"
            ),
            Self::MadtEntryTooShort {
                offset,
                entry_type,
                length,
                needed,
                count,
            } => write!(
                f,
                "{count} MADT entries of type {entry_type:#x} are shorter than the {needed} \
                 bytes it needs (the first at offset {offset:#x}, length {length}); skipped"
            ),
            Self::UnknownMadtEntry {
                offset,
                entry_type,
                count: 1,
            } => write!(
                f,
                "MADT entry at offset {offset:#x} has reserved type {entry_type:#x}; skipped"
            ),
            Self::UnknownMadtEntry {
                offset,
                entry_type,
                count,
            } => write!(
                f,
                "{count} MADT entries of reserved type {entry_type:#x} skipped, \
                 first at offset {offset:#x}"
            ),
            Self::InvalidApicIds {
                count: 1,
                first_offset,
            } => write!(
                f,
                "skipped the MADT processor entry at offset {first_offset:#x}: invalid APIC id"
            ),
            Self::InvalidApicIds {
                count,
                first_offset,
            } => write!(
                f,
                "skipped {count} MADT processor entries with invalid APIC id \
                 (first at offset {first_offset:#x})"
            ),
            Self::DuplicateApicId {
                apic_id,
                offset,
                count: 1,
            } => write!(
                f,
                "MADT entry at offset {offset:#x} repeats APIC id {apic_id:#x}; keeping one"
            ),
            Self::DuplicateApicId {
                apic_id,
                offset,
                count,
            } => write!(
                f,
                "{count} MADT processor entries repeat an APIC id listed earlier (the first \
                 repeats id {apic_id:#x} at offset {offset:#x}); keeping one entry per id"
            ),
            Self::DuplicateOverride { bus, irq, count: 1 } => write!(
                f,
                "MADT interrupt source override for bus {bus} IRQ {irq} repeats an earlier \
                 one; the first is used"
            ),
            Self::DuplicateOverride { bus, irq, count } => write!(
                f,
                "{count} MADT interrupt source overrides repeat the bus and IRQ of an earlier \
                 one (the first repeats bus {bus} IRQ {irq}); the first of each is used"
            ),
            Self::ConflictingApicAddress {
                kept,
                ignored,
                count: 1,
            } => write!(
                f,
                "conflicting local APIC address overrides: using {kept:#x}, ignoring {ignored:#x}"
            ),
            Self::ConflictingApicAddress {
                kept,
                ignored,
                count,
            } => write!(
                f,
                "conflicting local APIC address overrides: using {kept:#x}, ignoring {count} \
                 others (the first {ignored:#x})"
            ),
            Self::NoEnabledCpus => {
                write!(f, "MADT lists no enabled CPU; only the boot CPU will run")
            }
            Self::UnusableAddress {
                table,
                space_id,
                address,
            } => write!(
                f,
                "{table}: address {address:#x} in address space {space_id} is unusable; ignored"
            ),
            Self::BadMcfgEntry { index, base, count } => write!(
                f,
                "MCFG: {count} unusable ECAM entr{} dropped; the first (#{index}) at {base:#x}",
                if count == 1 { "y" } else { "ies" }
            ),
            Self::BadVirtioMmio { base, len, count } => write!(
                f,
                "DSDT: {count} virtio-mmio window{} dropped (unusable or beyond the {} kept); \
                 the first at {base:#x}, {len} bytes",
                if count == 1 { "" } else { "s" },
                crate::dsdt::MAX_VIRTIO_MMIO
            ),
            Self::UndecodedVirtioMmio { offset, count } => write!(
                f,
                "DSDT: {count} virtio-mmio device{} (LNRO0005) without a _CRS memory window \
                 this scan decodes, not used; the first at offset {offset:#x}",
                if count == 1 { "" } else { "s" },
            ),
        }
    }
}

impl Warning {
    /// The physical address of the table this warning refused or could not read, where it
    /// names one (see [`AcpiError::paddr`]); `None` for the others (a duplicate that was
    /// merely ignored, a bad entry inside a good table).
    #[must_use]
    pub const fn failed_paddr(&self) -> Option<u64> {
        match *self {
            Self::TableSkipped { paddr, .. }
            | Self::RootEntryUnreadable { paddr, .. }
            | Self::BlankTable { paddr, .. } => Some(paddr),
            Self::XsdtFallback { reason } => reason.paddr(),
            _ => None,
        }
    }

    /// Fold `new` into `self` if both report the same aggregated problem (same kind and same
    /// table), or if they are identical; returns whether it did.
    fn absorb(&mut self, new: &Self) -> bool {
        use Warning::*;
        let bump = |count: &mut u32, more: u32| *count = count.saturating_add(more);
        match (self, new) {
            (
                TableSkipped { table, count, .. },
                TableSkipped {
                    table: t, count: c, ..
                },
            ) if table == t => bump(count, *c),
            (
                NullRootEntry { root, count, .. },
                NullRootEntry {
                    root: r, count: c, ..
                },
            ) if root == r => bump(count, *c),
            (
                RootEntryUnreadable { root, count, .. },
                RootEntryUnreadable {
                    root: r, count: c, ..
                },
            ) if root == r => bump(count, *c),
            (
                BlankTable { root, count, .. },
                BlankTable {
                    root: r, count: c, ..
                },
            ) if root == r => bump(count, *c),
            (
                DuplicateTable { table, count, .. },
                DuplicateTable {
                    table: t, count: c, ..
                },
            ) if table == t => bump(count, *c),
            (old, new) => return *old == *new,
        }
        true
    }
}

/// Make room for `additional` more items, or fail with [`AcpiError::OutOfMemory`].
pub(crate) fn reserve<T>(
    list: &mut Vec<T>,
    additional: usize,
    what: &'static str,
) -> Result<(), AcpiError> {
    list.try_reserve_exact(additional)
        .map_err(|_| AcpiError::OutOfMemory {
            what,
            count: list.len().saturating_add(additional),
        })
}

/// Append `item`. Lists are reserved at their final size beforehand, so this never grows them
/// in practice; if one is full anyway it grows fallibly (never aborting on allocation failure).
pub(crate) fn try_push<T>(list: &mut Vec<T>, item: T, what: &'static str) -> Result<(), AcpiError> {
    if list.len() == list.capacity() {
        list.try_reserve(1).map_err(|_| AcpiError::OutOfMemory {
            what,
            count: list.len().saturating_add(1),
        })?;
    }
    list.push(item);
    Ok(())
}

/// Add a warning to a short list (the platform's), folding it into an earlier one of the same
/// aggregated kind (see [`Warning`]) so the list stays bounded by the number of kinds.
pub(crate) fn push_warning(list: &mut Vec<Warning>, w: Warning) -> Result<(), AcpiError> {
    if list.iter_mut().any(|old| old.absorb(&w)) {
        return Ok(());
    }
    try_push(list, w, "ACPI warnings")
}
