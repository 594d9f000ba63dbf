//! Reader for the initial RAM disk of Exo-OS: a `cpio` archive in the *newc* format, exactly
//! what `cpio -o -H newc` (or `-H crc`) writes, handed to the kernel as a boot module (QEMU
//! `-initrd`).
//!
//! The crate owns the archive format and path lookup; it does not load, execute or copy
//! anything. It is `no_std`, allocates nothing, contains no `unsafe`, and treats the archive
//! as hostile input: for any bytes it returns an entry or an [`InitrdError`], never panics,
//! never overflows, and never yields a slice outside the input. Work is bounded by the input
//! size (every entry advances the cursor by at least 112 bytes).
//!
//! Typical use:
//!
//! ```
//! # fn demo(module: &[u8]) -> Result<(), exo_initrd::InitrdError> {
//! let archive = exo_initrd::Archive::parse(module)?;
//! if let Some(init) = archive.find("/init") {
//!     assert_eq!(init.file_type(), exo_initrd::FileType::Regular);
//!     let _elf: &[u8] = init.data;
//! }
//! # Ok(()) }
//! ```
//!
//! # Format and decisions
//!
//! Each entry is a 110-byte ASCII header (`070701` or `070702`, then thirteen fields of
//! exactly eight hexadecimal digits, either case), the name (`namesize` bytes, including one
//! terminating NUL), padding to a multiple of 4, the data (`filesize` bytes), and padding to
//! a multiple of 4. Offsets are counted from the start of the archive, so the archive must
//! start where the module starts.
//!
//! - **`070702` ("crc")**: accepted, and the checksum **is checked** for regular files: their
//!   data bytes must sum (modulo 2^32) to the `check` field, or the archive is rejected with
//!   [`InitrdError::BadChecksum`]. As in GNU cpio and Linux, the field is ignored for other
//!   types (`cpio` writes 0 for a symlink), and for all `070701` entries. The two magics may
//!   be mixed within one archive. Other formats (`070707` "odc", binary, tar)
//!   are [`InitrdError::BadMagic`].
//! - **Trailer**: required. An input that ends, even cleanly on an entry boundary, without a
//!   `TRAILER!!!` entry is an error ([`InitrdError::MissingTrailer`], or a truncation
//!   error if it ends inside an entry), so a truncated module is never mistaken for a
//!   smaller archive. Bytes after the trailer's name (block padding, a second concatenated
//!   archive) are ignored; [`Archive::end`] says where they start.
//! - **Names**: must be UTF-8 and contain no NUL before the terminating one. Entries keep the
//!   raw name and a normalised one with leading `/` and `./` removed ([`normalize`]); lookups
//!   compare normalised names. Nothing else is rewritten (no `..` resolution).
//! - **Padding bytes** are skipped, not checked (`cpio` writes zeros).
//! - **Hard links and duplicates**: see [`Archive::find`].
//!
//! Two levels of API: [`Entries`] walks the archive lazily and reports the first error where
//! it happens; [`Archive::parse`] validates everything once, after which iteration and
//! [`Archive::find`] are infallible. [`Archive::index`] builds, in storage the caller gives,
//! a table of `find`'s answers searched in `log2(n)` comparisons instead of a walk.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod archive;
mod error;
mod index;
mod newc;
mod path;

pub use archive::{Archive, ArchiveEntries};
pub use error::InitrdError;
pub use index::Index;
pub use newc::{Entries, Entry, FileType, HEADER_LEN, MAGIC_CRC, MAGIC_NEWC, TRAILER};
pub use path::normalize;

/// Walks `archive` lazily: shorthand for [`Entries::new`].
pub const fn entries(archive: &[u8]) -> Entries<'_> {
    Entries::new(archive)
}
