//! A whole archive, validated once ([`Archive`]), and lookups by path.

use crate::InitrdError;
use crate::newc::{Entries, Entry, FileType};
use crate::path::normalize;

/// An archive whose every entry, up to and including the trailer, has been checked.
///
/// [`Archive::parse`] walks the archive once; afterwards iteration and lookups cannot fail.
#[derive(Clone, Copy)]
pub struct Archive<'a> {
    bytes: &'a [u8],
    len: usize,
    end: usize,
}

impl<'a> Archive<'a> {
    /// Checks the whole archive: every header, name and data range, the checksum of
    /// `070702` entries, and the presence of the trailer. Bytes after the trailer are
    /// ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, InitrdError> {
        let mut walk = Entries::new(bytes);
        let mut len = 0usize;
        for entry in walk.by_ref() {
            entry?;
            len += 1;
        }
        // A fused walk that yielded no error has reached the trailer.
        let end = walk.trailer_end().ok_or(InitrdError::MissingTrailer {
            offset: bytes.len(),
        })?;
        Ok(Self {
            bytes: bytes.get(..end).unwrap_or(bytes),
            len,
            end,
        })
    }

    /// The entries in archive order (the trailer is not included).
    pub fn entries(&self) -> ArchiveEntries<'a> {
        ArchiveEntries {
            walk: Entries::new(self.bytes),
        }
    }

    /// Number of entries, not counting the trailer.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True if the archive holds nothing but the trailer.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset just past the trailer's name: the archive proper is `input[..end()]`.
    pub const fn end(&self) -> usize {
        self.end
    }

    /// The entry named `path`, after [`normalize`](crate::normalize) on both sides:
    /// `find("/init")`, `find("init")` and `find("./init")` are the same lookup.
    ///
    /// - If several entries have the name, the **last** one wins (as when Linux unpacks an
    ///   initramfs: later entries overwrite earlier ones).
    /// - Hard links: `cpio` stores the data of a set of hard links once, with the last link,
    ///   and writes the others with size 0. A regular file with `nlink > 1` and no data is
    ///   given the data of the last non-empty regular entry with the same `ino`,
    ///   `dev_major` and `dev_minor`; its other fields (name, mode, ...) are its own.
    /// - Symlinks are not followed: the entry is returned with [`FileType::Symlink`].
    ///
    /// Cost: one or two passes over the entry headers.
    pub fn find(&self, path: &str) -> Option<Entry<'a>> {
        let path = normalize(path);
        let mut found = self.entries().filter(|e| e.name == path).last()?;
        if found.file_type() == FileType::Regular && found.nlink > 1 && found.data.is_empty() {
            let data = self
                .entries()
                .filter(|e| {
                    e.file_type() == FileType::Regular
                        && e.ino == found.ino
                        && e.dev_major == found.dev_major
                        && e.dev_minor == found.dev_minor
                        && !e.data.is_empty()
                })
                .last()
                .map(|e| e.data);
            if let Some(data) = data {
                found.data = data;
            }
        }
        Some(found)
    }
}

impl core::fmt::Debug for Archive<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Archive")
            .field("entries", &self.len)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Iterator over the entries of a validated [`Archive`].
#[derive(Clone, Debug)]
pub struct ArchiveEntries<'a> {
    walk: Entries<'a>,
}

impl<'a> Iterator for ArchiveEntries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        // The archive was validated, so the walk cannot fail; if it somehow did, stop.
        self.walk.next()?.ok()
    }
}

impl core::iter::FusedIterator for ArchiveEntries<'_> {}
