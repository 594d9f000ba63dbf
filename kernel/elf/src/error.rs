//! Why an executable was rejected ([`ElfError`]).

use core::fmt;

/// Why [`plan`](crate::plan) rejected a file. `index` fields are program header indices
/// (0-based, as `readelf -l` lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The file is shorter than the 64-byte ELF header.
    TooShort {
        /// Length of the file.
        len: usize,
    },
    /// The file does not start with `\x7fELF`.
    BadMagic,
    /// `EI_CLASS` is not `ELFCLASS64` (2).
    BadClass(u8),
    /// `EI_DATA` is not `ELFDATA2LSB` (1, little-endian).
    BadDataEncoding(u8),
    /// `EI_VERSION` or `e_version` is not 1.
    BadVersion(u32),
    /// `EI_OSABI` is neither System V (0) nor GNU/Linux (3).
    BadOsAbi(u8),
    /// `e_machine` is not `EM_X86_64` (62).
    BadMachine(u16),
    /// `e_type` is neither `ET_EXEC` (2) nor `ET_DYN` (3): relocatable objects and core
    /// files are not programs.
    BadType(u16),
    /// `e_ehsize` is not 64.
    BadHeaderSize(u16),
    /// `e_phentsize` is not 56.
    BadProgramHeaderSize(u16),
    /// `e_phnum` is `PN_XNUM` (0xffff): the real count would be in section header 0, which
    /// this crate does not read.
    ExtendedNumbering,
    /// The program header table (`e_phoff`, `e_phnum` entries of 56 bytes) is not inside the
    /// file.
    ProgramHeadersOutOfFile {
        /// `e_phoff`.
        phoff: u64,
        /// `e_phnum`.
        phnum: u16,
    },
    /// The load bias of a position-independent executable is not a multiple of the page size.
    BadBias {
        /// The bias requested.
        bias: u64,
    },
    /// A `PT_LOAD` segment has `p_filesz > p_memsz`.
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
    },
    /// A `PT_LOAD` segment's file bytes (`p_offset`, `p_filesz`) are not inside the file.
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
    },
    /// A `PT_LOAD` segment's `p_align` is neither 0, 1 nor a power of two.
    BadAlignment {
        /// Program header index.
        index: usize,
        /// `p_align`.
        align: u64,
    },
    /// A `PT_LOAD` segment's `p_offset` and `p_vaddr` differ modulo the page size (4 KiB)
    /// or modulo its `p_align`.
    Misaligned {
        /// Program header index.
        index: usize,
    },
    /// A static PIE's load bias is not a multiple of a `PT_LOAD` segment's `p_align`: the
    /// segment would not load at the alignment it was linked for.
    BiasMisaligned {
        /// Program header index.
        index: usize,
        /// The bias requested ([`LoadOptions::pie_bias`](crate::LoadOptions::pie_bias)).
        bias: u64,
        /// The segment's `p_align`.
        align: u64,
    },
    /// A `PT_LOAD` segment is both writable and executable (W^X).
    WriteAndExecute {
        /// Program header index.
        index: usize,
    },
    /// A `PT_LOAD` segment's address plus bias, or its end, overflows 64 bits.
    AddressOverflow {
        /// Program header index.
        index: usize,
    },
    /// A `PT_LOAD` segment's pages are not inside the allowed user range.
    OutOfRange {
        /// Program header index.
        index: usize,
        /// First page address of the segment (after the bias).
        start: u64,
        /// End of its last page (exclusive).
        end: u64,
    },
    /// A `PT_LOAD` segment starts before the end of the previous one: segments overlap, or
    /// are not in ascending address order as the ELF specification requires.
    Overlap {
        /// Program header index of the later segment.
        index: usize,
    },
    /// A `PT_LOAD` segment shares a page with the previous one but has other permissions,
    /// so that page would need two sets of permissions.
    ConflictingPermissions {
        /// Program header index of the later segment.
        index: usize,
    },
    /// More non-empty `PT_LOAD` segments than allowed.
    TooManySegments {
        /// The limit (the caller's, capped at [`MAX_LOAD_SEGMENTS`](crate::MAX_LOAD_SEGMENTS)).
        max: usize,
    },
    /// The pages of the segments (or the TLS block) add up to more than allowed.
    TooLarge {
        /// Bytes needed so far when the limit was crossed.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// No non-empty `PT_LOAD` segment.
    NoLoadSegments,
    /// The entry point (after the bias) is not inside the file-backed part of an executable
    /// segment.
    EntryNotExecutable {
        /// The entry point, after the bias.
        entry: u64,
    },
    /// A `PT_INTERP` header: the program wants a dynamic linker, which Exo-OS does not have.
    Interpreter,
    /// `PT_GNU_STACK` asks for an executable stack.
    ExecutableStack,
    /// A program header type that may appear once appears twice.
    Duplicate {
        /// The repeated `p_type`.
        p_type: u32,
    },
    /// The `PT_TLS` header is unusable (the reason says why).
    BadTls(&'static str),
    /// The `PT_DYNAMIC` segment or its relocation tables are malformed (the reason says
    /// how).
    BadDynamic(&'static str),
    /// `DT_NEEDED`: the program needs shared libraries.
    NeedsLibraries,
    /// A dynamic tag this loader cannot honour (`DT_REL`/`DT_RELSZ`, `DT_RELR`/`DT_RELRSZ`,
    /// or `DT_PLTREL` other than `DT_RELA`).
    UnsupportedDynamic {
        /// `d_tag`.
        tag: u64,
    },
    /// A relocation other than `R_X86_64_RELATIVE` (or `R_X86_64_NONE`).
    UnsupportedRelocation {
        /// The relocation type (`ELF64_R_TYPE`), e.g. 37 for `R_X86_64_IRELATIVE`.
        r_type: u32,
        /// Its `r_offset` (before the bias).
        offset: u64,
    },
    /// A relocation's 8 target bytes are not inside a writable segment.
    RelocationOutOfRange {
        /// Its `r_offset` (before the bias).
        offset: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "ELF: file of {len} bytes is shorter than the 64-byte header"
                )
            }
            Self::BadMagic => write!(f, "ELF: no \\x7fELF magic"),
            Self::BadClass(c) => write!(f, "ELF: class {c} is not ELFCLASS64 (2)"),
            Self::BadDataEncoding(d) => {
                write!(f, "ELF: data encoding {d} is not little-endian (1)")
            }
            Self::BadVersion(v) => write!(f, "ELF: version {v} is not 1"),
            Self::BadOsAbi(a) => write!(f, "ELF: OS ABI {a} is neither System V (0) nor GNU (3)"),
            Self::BadMachine(m) => write!(f, "ELF: machine {m} is not x86-64 (62)"),
            Self::BadType(t) => write!(f, "ELF: type {t} is neither ET_EXEC (2) nor ET_DYN (3)"),
            Self::BadHeaderSize(s) => write!(f, "ELF: header size {s} is not 64"),
            Self::BadProgramHeaderSize(s) => {
                write!(f, "ELF: program header size {s} is not 56")
            }
            Self::ExtendedNumbering => {
                write!(
                    f,
                    "ELF: extended program header numbering (PN_XNUM) is not supported"
                )
            }
            Self::ProgramHeadersOutOfFile { phoff, phnum } => write!(
                f,
                "ELF: {phnum} program headers at offset {phoff:#x} do not fit in the file"
            ),
            Self::BadBias { bias } => {
                write!(f, "ELF: load bias {bias:#x} is not page-aligned")
            }
            Self::FileSizeExceedsMemSize { index } => {
                write!(f, "ELF: segment {index}: file size exceeds memory size")
            }
            Self::SegmentOutOfFile { index } => {
                write!(f, "ELF: segment {index}: file bytes lie outside the file")
            }
            Self::BadAlignment { index, align } => write!(
                f,
                "ELF: segment {index}: alignment {align:#x} is not a power of two"
            ),
            Self::Misaligned { index } => write!(
                f,
                "ELF: segment {index}: offset and address differ modulo the page size or alignment"
            ),
            Self::BiasMisaligned { index, bias, align } => write!(
                f,
                "ELF: segment {index}: load bias {bias:#x} is not a multiple of its alignment {align:#x}"
            ),
            Self::WriteAndExecute { index } => {
                write!(f, "ELF: segment {index} is both writable and executable")
            }
            Self::AddressOverflow { index } => {
                write!(f, "ELF: segment {index}: address range overflows")
            }
            Self::OutOfRange { index, start, end } => write!(
                f,
                "ELF: segment {index}: pages {start:#x}..{end:#x} are outside the user range"
            ),
            Self::Overlap { index } => write!(
                f,
                "ELF: segment {index} starts before the previous segment ends"
            ),
            Self::ConflictingPermissions { index } => write!(
                f,
                "ELF: segment {index} shares a page with the previous segment but has other permissions"
            ),
            Self::TooManySegments { max } => {
                write!(f, "ELF: more than {max} loadable segments")
            }
            Self::TooLarge { total, max } => write!(
                f,
                "ELF: needs at least {total:#x} bytes of memory, more than the limit {max:#x}"
            ),
            Self::NoLoadSegments => write!(f, "ELF: no loadable segment"),
            Self::EntryNotExecutable { entry } => write!(
                f,
                "ELF: entry point {entry:#x} is not in an executable segment"
            ),
            Self::Interpreter => write!(
                f,
                "ELF: PT_INTERP: dynamically linked programs are not supported"
            ),
            Self::ExecutableStack => write!(f, "ELF: PT_GNU_STACK asks for an executable stack"),
            Self::Duplicate { p_type } => {
                write!(f, "ELF: program header type {p_type:#x} appears twice")
            }
            Self::BadTls(why) => write!(f, "ELF: PT_TLS: {why}"),
            Self::BadDynamic(why) => write!(f, "ELF: PT_DYNAMIC: {why}"),
            Self::NeedsLibraries => write!(f, "ELF: DT_NEEDED: shared libraries are not supported"),
            Self::UnsupportedDynamic { tag } => {
                write!(f, "ELF: dynamic tag {tag} is not supported")
            }
            Self::UnsupportedRelocation { r_type, offset } => write!(
                f,
                "ELF: relocation type {r_type} at {offset:#x} is not supported (only R_X86_64_RELATIVE)"
            ),
            Self::RelocationOutOfRange { offset } => write!(
                f,
                "ELF: relocation at {offset:#x} does not target a writable segment"
            ),
        }
    }
}

impl core::error::Error for ElfError {}
