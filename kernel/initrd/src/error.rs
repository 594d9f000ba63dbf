//! Errors returned while walking an archive.

use core::fmt;

/// Why an archive (or one of its entries) was rejected.
///
/// Every variant carries `offset`: the byte offset, from the start of the archive, of the
/// header of the entry being read when the problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitrdError {
    /// The header does not start with `070701` (newc) or `070702` (newc with checksum).
    BadMagic {
        /// Offset of the header.
        offset: usize,
        /// The six bytes found instead.
        found: [u8; 6],
    },
    /// A header field is not exactly eight ASCII hexadecimal digits.
    BadHex {
        /// Offset of the header.
        offset: usize,
        /// Name of the field (`"namesize"`, `"filesize"`, ...).
        field: &'static str,
    },
    /// Fewer than 110 bytes remain where a header should start.
    TruncatedHeader {
        /// Offset of the header.
        offset: usize,
        /// Bytes available from `offset` to the end of the input.
        available: usize,
    },
    /// The name runs past the end of the input.
    TruncatedName {
        /// Offset of the header.
        offset: usize,
        /// `namesize` from the header (name length including its NUL).
        namesize: u32,
    },
    /// The file data (or the padding before it) runs past the end of the input.
    TruncatedData {
        /// Offset of the header.
        offset: usize,
        /// `filesize` from the header.
        filesize: u32,
    },
    /// `namesize` is 0, the name's last byte is not NUL, or the name contains a NUL before
    /// its end.
    MissingNul {
        /// Offset of the header.
        offset: usize,
    },
    /// The name is not valid UTF-8.
    NameNotUtf8 {
        /// Offset of the header.
        offset: usize,
    },
    /// A `070702` regular file whose data does not sum to the header's `check` field.
    BadChecksum {
        /// Offset of the header.
        offset: usize,
        /// The `check` field.
        expected: u32,
        /// The sum of the data bytes, modulo 2^32.
        computed: u32,
    },
    /// The input ends on an entry boundary without a `TRAILER!!!` entry (this includes an
    /// empty input).
    MissingTrailer {
        /// Offset where the next header should have started (the input length).
        offset: usize,
    },
}

impl fmt::Display for InitrdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic { offset, found } => {
                write!(f, "cpio header at {offset:#x}: bad magic \"")?;
                for b in found {
                    if b.is_ascii_graphic() {
                        write!(f, "{}", char::from(b))?;
                    } else {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                write!(f, "\" (expected 070701 or 070702)")
            }
            Self::BadHex { offset, field } => write!(
                f,
                "cpio header at {offset:#x}: field {field} is not 8 hexadecimal digits"
            ),
            Self::TruncatedHeader { offset, available } => write!(
                f,
                "cpio header at {offset:#x} truncated: {available} of 110 bytes present"
            ),
            Self::TruncatedName { offset, namesize } => write!(
                f,
                "cpio entry at {offset:#x}: name of {namesize} bytes runs past the end"
            ),
            Self::TruncatedData { offset, filesize } => write!(
                f,
                "cpio entry at {offset:#x}: data of {filesize} bytes runs past the end"
            ),
            Self::MissingNul { offset } => write!(
                f,
                "cpio entry at {offset:#x}: name is not terminated by a single NUL"
            ),
            Self::NameNotUtf8 { offset } => {
                write!(f, "cpio entry at {offset:#x}: name is not UTF-8")
            }
            Self::BadChecksum {
                offset,
                expected,
                computed,
            } => write!(
                f,
                "cpio entry at {offset:#x}: checksum {computed:#010x}, header says {expected:#010x}"
            ),
            Self::MissingTrailer { offset } => write!(
                f,
                "cpio archive ends at {offset:#x} without a TRAILER!!! entry"
            ),
        }
    }
}

impl core::error::Error for InitrdError {}
