//! Fatal errors ([`AcpiError`]) and non-fatal diagnostics ([`Warning`]).

use arrayvec::ArrayVec;
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
    /// No usable MADT (only returned by [`crate::Platform::require_madt`]).
    NoMadt,
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
            Self::NoMadt => write!(f, "no usable MADT (APIC table)"),
        }
    }
}

impl core::error::Error for AcpiError {}

/// A non-fatal problem: something was skipped or clamped, parsing went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A table was found but is unusable (bad checksum, length, truncated, unreadable).
    TableSkipped {
        /// Signature from the table header.
        table: Signature,
        /// Physical address of the table.
        paddr: u64,
        /// Why it was skipped.
        reason: AcpiError,
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
    /// A root-table entry is a null pointer.
    NullRootEntry {
        /// RSDT or XSDT.
        root: Signature,
        /// Index of the entry.
        index: u32,
    },
    /// The header of a table referenced by the root table could not be read.
    RootEntryUnreadable {
        /// RSDT or XSDT.
        root: Signature,
        /// Index of the entry.
        index: u32,
        /// Address it points to.
        paddr: u64,
    },
    /// A second valid table with the same signature; the first one is used.
    DuplicateTable {
        /// Signature of the table.
        table: Signature,
        /// Address of the ignored copy.
        paddr: u64,
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
    /// A known MADT entry is shorter than its type requires; it was skipped.
    MadtEntryTooShort {
        /// Offset of the entry.
        offset: u32,
        /// Its type byte.
        entry_type: u8,
        /// Its length byte.
        length: u8,
        /// Minimum length for this type.
        needed: u8,
    },
    /// A MADT entry of a reserved (undefined) type; it was skipped.
    UnknownMadtEntry {
        /// Offset of the entry.
        offset: u32,
        /// Its type byte.
        entry_type: u8,
    },
    /// Processor entries with an invalid APIC id (0xFF in a type-0 entry,
    /// 0xFFFF_FFFF in a type-9 entry) were skipped.
    InvalidApicIds {
        /// How many such entries.
        count: u32,
        /// Offset of the first one.
        first_offset: u32,
    },
    /// Two processor entries share an APIC id; the first is kept, unless only
    /// the later one is usable, in which case the later one replaces it.
    DuplicateApicId {
        /// The duplicated id.
        apic_id: u32,
        /// Offset of the later entry.
        offset: u32,
    },
    /// More processors than [`crate::MAX_CPUS`]; the extra ones are ignored.
    TooManyCpus {
        /// CPUs kept.
        kept: u32,
        /// CPUs ignored.
        ignored: u32,
    },
    /// More entries of some kind than this crate stores; the extra ones are ignored.
    TooManyEntries {
        /// Human-readable kind, e.g. "I/O APIC".
        what: &'static str,
        /// Capacity.
        kept: u32,
        /// Entries ignored.
        ignored: u32,
    },
    /// Several local APIC address overrides with different values; the first is used.
    ConflictingApicAddress {
        /// Address used.
        kept: u64,
        /// Address ignored.
        ignored: u64,
    },
    /// The MADT lists no usable processor at all.
    NoUsableCpus,
    /// An address taken from a table is unusable and was ignored.
    UnusableAddress {
        /// Table it came from.
        table: Signature,
        /// Generic Address Structure space id (0 memory, 1 I/O port).
        space_id: u8,
        /// The address.
        address: u64,
    },
    /// More warnings were produced than fit; this many were dropped.
    Suppressed {
        /// Warnings dropped.
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
            } => write!(f, "skipping {table} table at {paddr:#x}: {reason}"),
            Self::XsdtFallback { reason } => {
                write!(f, "XSDT unusable ({reason}); falling back to RSDT")
            }
            Self::RootTrailingBytes { root, extra } => {
                write!(f, "{root} has {extra} trailing bytes after its last entry")
            }
            Self::NullRootEntry { root, index } => write!(f, "{root} entry {index} is null"),
            Self::RootEntryUnreadable { root, index, paddr } => write!(
                f,
                "{root} entry {index} points to unreadable memory at {paddr:#x}"
            ),
            Self::DuplicateTable { table, paddr } => write!(
                f,
                "ignoring second {table} table at {paddr:#x}; using the first"
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
                "MADT entry at offset {offset:#x} (type {entry_type}, length {length}) runs past \
                 table end {table_len:#x}; stopped walking MADT after {cpus} CPUs"
            ),
            Self::MadtTrailingByte { offset } => {
                write!(f, "MADT has a stray byte at offset {offset:#x}")
            }
            Self::MadtEntryTooShort {
                offset,
                entry_type,
                length,
                needed,
            } => write!(
                f,
                "MADT entry at offset {offset:#x} (type {entry_type}) has length {length}, \
                 needs {needed}; skipped"
            ),
            Self::UnknownMadtEntry { offset, entry_type } => write!(
                f,
                "MADT entry at offset {offset:#x} has unknown type {entry_type:#x}; skipped"
            ),
            Self::InvalidApicIds {
                count,
                first_offset,
            } => write!(
                f,
                "skipped {count} MADT processor entries with invalid APIC id \
                 (first at offset {first_offset:#x})"
            ),
            Self::DuplicateApicId { apic_id, offset } => write!(
                f,
                "MADT entry at offset {offset:#x} repeats APIC id {apic_id:#x}; keeping one"
            ),
            Self::TooManyCpus { kept, ignored } => write!(
                f,
                "MADT lists {} CPUs; kept the first {kept}, ignored {ignored}",
                u64::from(kept) + u64::from(ignored)
            ),
            Self::TooManyEntries {
                what,
                kept,
                ignored,
            } => write!(
                f,
                "MADT lists more than {kept} {what} entries; ignored {ignored}"
            ),
            Self::ConflictingApicAddress { kept, ignored } => write!(
                f,
                "conflicting local APIC address overrides: using {kept:#x}, ignoring {ignored:#x}"
            ),
            Self::NoUsableCpus => write!(f, "MADT lists no usable CPU"),
            Self::UnusableAddress {
                table,
                space_id,
                address,
            } => write!(
                f,
                "{table}: address {address:#x} in address space {space_id} is unusable; ignored"
            ),
            Self::Suppressed { count } => write!(f, "{count} further warnings suppressed"),
        }
    }
}

/// Push a warning; when the list is full, the last slot becomes a [`Warning::Suppressed`] counter.
pub(crate) fn push_warning<const N: usize>(list: &mut ArrayVec<Warning, N>, w: Warning) {
    if list.try_push(w).is_ok() {
        return;
    }
    match list.last_mut() {
        Some(Warning::Suppressed { count }) => *count = count.saturating_add(1),
        Some(last) => *last = Warning::Suppressed { count: 2 },
        None => {}
    }
}
