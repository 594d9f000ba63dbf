//! The newc header format and the fallible entry walk ([`Entries`]).

use crate::InitrdError;
use crate::path::normalize;

/// Length of a newc header: the 6-byte magic and thirteen 8-digit hexadecimal fields.
pub const HEADER_LEN: usize = 110;

/// Magic of a newc entry without checksum (`cpio -H newc`).
pub const MAGIC_NEWC: &[u8; 6] = b"070701";

/// Magic of a newc entry with checksum (`cpio -H crc`).
pub const MAGIC_CRC: &[u8; 6] = b"070702";

/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// Type of a file, from the `S_IFMT` bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// `S_IFREG`: the data is the file's contents.
    Regular,
    /// `S_IFDIR`: no data.
    Directory,
    /// `S_IFLNK`: the data is the target path (not NUL-terminated).
    Symlink,
    /// Anything else (character or block device, FIFO, socket, or a value that is no type):
    /// the `S_IFMT` bits of the mode (`mode & 0o170000`).
    Other(u32),
}

impl FileType {
    /// The type encoded in `mode`.
    pub const fn from_mode(mode: u32) -> Self {
        match mode & 0o170_000 {
            0o100_000 => Self::Regular,
            0o040_000 => Self::Directory,
            0o120_000 => Self::Symlink,
            bits => Self::Other(bits),
        }
    }
}

/// One archive member. All slices borrow from the archive bytes.
///
/// `Debug` shows the name, mode, size and offset, not the data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name with leading `/` and `./` removed (see [`normalize`](crate::normalize)):
    /// `./bin/sh` and `/bin/sh` both give `bin/sh`; `.` gives the empty string (the root).
    pub name: &'a str,
    /// The name exactly as stored, without its NUL.
    pub raw_name: &'a str,
    /// The full mode: type bits and permission bits.
    pub mode: u32,
    /// The file data (`filesize` bytes); for a symlink, the target path.
    pub data: &'a [u8],
    /// Inode number (identifies hard links together with `dev_major`/`dev_minor`).
    pub ino: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Number of links.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Major number of the device that held the file.
    pub dev_major: u32,
    /// Minor number of the device that held the file.
    pub dev_minor: u32,
    /// For device files: major number of the device.
    pub rdev_major: u32,
    /// For device files: minor number of the device.
    pub rdev_minor: u32,
    /// Offset of this entry's header from the start of the archive.
    pub offset: usize,
}

impl<'a> Entry<'a> {
    /// The file type, from [`mode`](Self::mode).
    pub const fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// The permission bits (`mode & 0o7777`: rwx for owner/group/other, setuid, setgid,
    /// sticky).
    pub const fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// Size of the data in bytes (`filesize`).
    pub const fn size(&self) -> usize {
        self.data.len()
    }

    /// For a symlink whose target is UTF-8, the target; `None` otherwise.
    pub fn symlink_target(&self) -> Option<&'a str> {
        match self.file_type() {
            FileType::Symlink => core::str::from_utf8(self.data).ok(),
            _ => None,
        }
    }
}

/// An empty regular file named `""` at offset 0: a placeholder, as in the storage an
/// [`Index`](crate::Index) is built in.
impl Default for Entry<'_> {
    fn default() -> Self {
        Self {
            name: "",
            raw_name: "",
            mode: 0o100_000,
            data: &[],
            ino: 0,
            uid: 0,
            gid: 0,
            nlink: 0,
            mtime: 0,
            dev_major: 0,
            dev_minor: 0,
            rdev_major: 0,
            rdev_minor: 0,
            offset: 0,
        }
    }
}

impl core::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.raw_name)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("size", &self.data.len())
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// The fallible walk over an archive: yields each entry in archive order, then stops at the
/// `TRAILER!!!` entry (which is not yielded).
///
/// After the first `Err` the iterator is finished (it is fused). Each step advances by at
/// least 112 bytes or ends the walk, so a walk over `n` bytes takes at most `n / 112 + 1`
/// steps; the work of each step is linear in its entry's size (UTF-8 check of the name, and
/// the checksum of a regular file in a `070702` entry).
#[derive(Clone)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
    trailer_end: Option<usize>,
}

impl<'a> Entries<'a> {
    /// A walk over `archive`, starting at its first byte.
    pub const fn new(archive: &'a [u8]) -> Self {
        Self {
            bytes: archive,
            pos: 0,
            done: false,
            trailer_end: None,
        }
    }

    /// Once the walk has reached the trailer: the offset just past the trailer's name (the
    /// end of the archive proper; anything after it, such as the zero padding `cpio` adds to
    /// fill a 512-byte block, is ignored). `None` before that, or if the walk failed.
    pub const fn trailer_end(&self) -> Option<usize> {
        self.trailer_end
    }

    fn step(&mut self) -> Result<Option<Entry<'a>>, InitrdError> {
        let offset = self.pos;
        // Past the end: the last entry's padding was cut off (until 2026-12-05 reported as
        // a missing trailer at an offset beyond the input; found by review).
        let Some(rest) = self.bytes.get(offset..) else {
            return Err(InitrdError::TruncatedHeader {
                offset,
                available: 0,
            });
        };
        if rest.is_empty() {
            return Err(InitrdError::MissingTrailer { offset });
        }
        let Some(header) = rest.get(..HEADER_LEN) else {
            return Err(InitrdError::TruncatedHeader {
                offset,
                available: rest.len(),
            });
        };
        let h = Header::parse(header, offset)?;

        // Name: right after the header, `namesize` bytes including the NUL.
        let name_start = offset + HEADER_LEN; // <= bytes.len(): the header is in bounds
        let name_end = name_start
            .checked_add(h.namesize as usize)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(InitrdError::TruncatedName {
                offset,
                namesize: h.namesize,
            })?;
        let name_bytes = self.bytes.get(name_start..name_end).unwrap_or(&[]);
        let Some((&0, name_bytes)) = name_bytes.split_last() else {
            return Err(InitrdError::MissingNul { offset });
        };
        if name_bytes.contains(&0) {
            return Err(InitrdError::MissingNul { offset });
        }
        let raw_name =
            core::str::from_utf8(name_bytes).map_err(|_| InitrdError::NameNotUtf8 { offset })?;

        if raw_name == TRAILER {
            self.trailer_end = Some(name_end);
            return Ok(None);
        }

        // Data: starts at the next multiple of 4 after the name (offsets count from the
        // start of the archive), then padding to a multiple of 4 before the next header.
        let truncated = InitrdError::TruncatedData {
            offset,
            filesize: h.filesize,
        };
        let data_start = align4(name_end).ok_or(truncated)?;
        let data_end = data_start
            .checked_add(h.filesize as usize)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(truncated)?;
        let data = self.bytes.get(data_start..data_end).ok_or(truncated)?;
        // GNU cpio (like Linux when it unpacks an initramfs) only sums regular files: it
        // writes `check` = 0 for symlinks, whose data is the target path.
        if h.crc && FileType::from_mode(h.mode) == FileType::Regular {
            let computed = data
                .iter()
                .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)));
            if computed != h.check {
                return Err(InitrdError::BadChecksum {
                    offset,
                    expected: h.check,
                    computed,
                });
            }
        }
        // The next header. If the padding is missing, `pos` lands past the end and the
        // next step reports a truncated header: an archive cannot end without a trailer.
        self.pos = align4(data_end).unwrap_or(usize::MAX);
        Ok(Some(Entry {
            name: normalize(raw_name),
            raw_name,
            mode: h.mode,
            data,
            ino: h.ino,
            uid: h.uid,
            gid: h.gid,
            nlink: h.nlink,
            mtime: h.mtime,
            dev_major: h.dev_major,
            dev_minor: h.dev_minor,
            rdev_major: h.rdev_major,
            rdev_minor: h.rdev_minor,
            offset,
        }))
    }
}

impl core::fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entries")
            .field("len", &self.bytes.len())
            .field("pos", &self.pos)
            .field("done", &self.done)
            .field("trailer_end", &self.trailer_end)
            .finish()
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, InitrdError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for Entries<'_> {}

/// Rounds up to a multiple of 4; `None` on overflow.
fn align4(x: usize) -> Option<usize> {
    x.checked_add(3).map(|v| v & !3)
}

/// The decoded fields of one header.
struct Header {
    crc: bool,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    dev_major: u32,
    dev_minor: u32,
    rdev_major: u32,
    rdev_minor: u32,
    namesize: u32,
    check: u32,
}

impl Header {
    /// `h` is exactly [`HEADER_LEN`] bytes.
    fn parse(h: &[u8], offset: usize) -> Result<Self, InitrdError> {
        let magic = h.get(..6).unwrap_or(&[]);
        let crc = if magic == MAGIC_NEWC {
            false
        } else if magic == MAGIC_CRC {
            true
        } else {
            let mut found = [0u8; 6];
            for (dst, src) in found.iter_mut().zip(magic) {
                *dst = *src;
            }
            return Err(InitrdError::BadMagic { offset, found });
        };
        let field = |index: usize, field: &'static str| {
            let start = 6 + 8 * index;
            h.get(start..start + 8)
                .and_then(hex8)
                .ok_or(InitrdError::BadHex { offset, field })
        };
        Ok(Self {
            crc,
            ino: field(0, "ino")?,
            mode: field(1, "mode")?,
            uid: field(2, "uid")?,
            gid: field(3, "gid")?,
            nlink: field(4, "nlink")?,
            mtime: field(5, "mtime")?,
            filesize: field(6, "filesize")?,
            dev_major: field(7, "devmajor")?,
            dev_minor: field(8, "devminor")?,
            rdev_major: field(9, "rdevmajor")?,
            rdev_minor: field(10, "rdevminor")?,
            namesize: field(11, "namesize")?,
            check: field(12, "check")?,
        })
    }
}

/// Eight ASCII hexadecimal digits (either case), nothing else.
///
/// A match on the byte, not `char::to_digit(16)` (the same digits): a `spawn` reads every
/// header of the archive (13 fields each) to find its file, and the field parse of that
/// walk cost 21k instructions with `to_digit`, 14.5k with the match, 27k in a branch-free
/// form over the eight bytes (icount, 13 files, `just iprof-spawn`, 2026-12-06).
fn hex8(digits: &[u8]) -> Option<u32> {
    if digits.len() != 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some((acc << 4) | u32::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::hex8;

    /// The reference: what `hex8` computed until 2026-12-06 (`char::to_digit(16)`).
    fn hex8_ref(digits: &[u8]) -> Option<u32> {
        if digits.len() != 8 {
            return None;
        }
        digits.iter().try_fold(0u32, |acc, &d| {
            Some((acc << 4) | char::from(d).to_digit(16)?)
        })
    }

    /// Every byte value at every position of a valid field, and wrong lengths: the same
    /// value or refusal as the reference.
    #[test]
    fn hex8_matches_to_digit_for_every_byte() {
        for base in [*b"0123abcd", *b"FFFFFFFF", *b"00000000", *b"9aF0b1E7"] {
            assert_eq!(hex8(&base), hex8_ref(&base));
            assert!(hex8(&base).is_some());
            for pos in 0..8 {
                for b in 0..=255u8 {
                    let mut d = base;
                    d[pos] = b;
                    assert_eq!(hex8(&d), hex8_ref(&d), "byte {b:#x} at {pos} of {base:?}");
                }
            }
        }
        for len in [0, 1, 7, 9, 16] {
            assert_eq!(hex8(&b"0123456789abcdef"[..len]), None);
        }
    }
}
