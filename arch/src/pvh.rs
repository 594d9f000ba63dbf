//! The PVH `hvm_start_info` handed over in `ebx`: command line, RSDP and memory map.

use crate::layout::phys_to_virt;
use arrayvec::{ArrayString, ArrayVec};

const MAGIC: u32 = 0x336e_c578;
/// Longest command line kept (longer ones are cut, with a warning by the kernel).
pub const CMDLINE_MAX: usize = 512;
/// Most memory-map entries kept.
pub const MEMMAP_MAX: usize = 64;

/// Memory-map entry types (E820 numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    /// Usable RAM.
    Ram,
    /// Reserved.
    Reserved,
    /// ACPI tables (reclaimable after parsing).
    AcpiReclaim,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Bad memory.
    Unusable,
    /// Other type number.
    Other(u32),
}

impl MemKind {
    fn from_raw(t: u32) -> Self {
        match t {
            1 => MemKind::Ram,
            2 => MemKind::Reserved,
            3 => MemKind::AcpiReclaim,
            4 => MemKind::AcpiNvs,
            5 => MemKind::Unusable,
            x => MemKind::Other(x),
        }
    }
}

/// One memory-map region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// Start (physical).
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What it is.
    pub kind: MemKind,
}

/// What the kernel keeps of the start info.
#[derive(Debug, Clone)]
pub struct BootInfo {
    /// Kernel command line (cut at `CMDLINE_MAX`).
    pub cmdline: ArrayString<CMDLINE_MAX>,
    /// The command line was longer than `CMDLINE_MAX`.
    pub cmdline_truncated: bool,
    /// RSDP physical address, 0 if not given.
    pub rsdp: u64,
    /// Memory map (first `MEMMAP_MAX` entries).
    pub memmap: ArrayVec<MemRegion, MEMMAP_MAX>,
    /// Entries beyond `MEMMAP_MAX` that were dropped.
    pub memmap_dropped: u32,
    /// start_info version.
    pub version: u32,
    /// Modules the loader passed (QEMU `-initrd`: one): physical address and size, the first
    /// [`MODULES_MAX`].
    pub modules: ArrayVec<(u64, u64), MODULES_MAX>,
}

/// Modules kept from the start info.
pub const MODULES_MAX: usize = 4;

/// Why the start info is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvhError {
    /// No start info (null pointer): not booted through PVH.
    Missing,
    /// Wrong magic number.
    BadMagic(u32),
    /// Version 0 has no memory map, and this kernel needs one.
    NoMemoryMap,
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PvhError::Missing => write!(f, "no PVH start_info (ebx was 0)"),
            PvhError::BadMagic(m) => write!(f, "PVH start_info magic {m:#x}, expected {MAGIC:#x}"),
            PvhError::NoMemoryMap => write!(f, "PVH start_info has no memory map (version 0)"),
        }
    }
}

/// Copies the command line `bytes` (up to a NUL) into `line`; returns whether it did not fit.
/// Tabs and line ends separate words as spaces do; any other control or non-ASCII byte becomes
/// `?`, so the word holding it stays one word and fails as a value instead of being split into
/// shorter, valid ones. A line cut at `CMDLINE_MAX` loses the word cut in two whole: half a
/// value (`exo.ap_timeout_ms=600` of `=60000`) is another value.
pub fn copy_cmdline(
    line: &mut ArrayString<CMDLINE_MAX>,
    bytes: impl IntoIterator<Item = u8>,
) -> bool {
    for b in bytes {
        let c = match b {
            0 => break,
            b' ' | b'\t' | b'\n' | b'\r' => ' ',
            b if b.is_ascii() && !b.is_ascii_control() => b as char,
            _ => '?',
        };
        if line.try_push(c).is_err() {
            if c != ' ' {
                let keep = line.rfind(' ').unwrap_or(0);
                line.truncate(keep);
            }
            return true;
        }
    }
    false
}

/// Reads the start info at `paddr`.
///
/// # Safety
/// `paddr` must be the value the PVH loader passed in `ebx`, with the start info, its command
/// line and memory map directly mapped ([`crate::layout`]) and not yet reused.
pub unsafe fn read(paddr: u64) -> Result<BootInfo, PvhError> {
    if paddr == 0 {
        return Err(PvhError::Missing);
    }
    let rd32 = |off: u64| {
        // SAFETY: inside the start_info structure the caller vouches for.
        unsafe { (phys_to_virt(paddr + off) as *const u32).read_unaligned() }
    };
    let rd64 = |off: u64| {
        // SAFETY: as above.
        unsafe { (phys_to_virt(paddr + off) as *const u64).read_unaligned() }
    };
    let magic = rd32(0);
    if magic != MAGIC {
        return Err(PvhError::BadMagic(magic));
    }
    let version = rd32(4);
    let cmdline_paddr = rd64(24);
    let rsdp = rd64(32);
    let mut info = BootInfo {
        cmdline: ArrayString::new(),
        cmdline_truncated: false,
        rsdp,
        memmap: ArrayVec::new(),
        memmap_dropped: 0,
        version,
        modules: ArrayVec::new(),
    };
    // Modules: count at +12, list at +16; each entry 32 bytes (paddr, size, cmdline, reserved).
    let nmod = rd32(12);
    let modlist = rd64(16);
    if modlist != 0 {
        for i in 0..u64::from(nmod).min(MODULES_MAX as u64) {
            let e = phys_to_virt(modlist + i * 32);
            // SAFETY: entry i of the loader's module list, `nmod` entries of 32 bytes.
            let (paddr, size) = unsafe {
                (
                    (e as *const u64).read_unaligned(),
                    ((e + 8) as *const u64).read_unaligned(),
                )
            };
            if size != 0 {
                let _ = info.modules.try_push((paddr, size));
            }
        }
    }
    if cmdline_paddr != 0 {
        let bytes = (0..4096u64).map(|i| {
            // SAFETY: the NUL-terminated command line the loader placed; bounded to 4 KiB.
            unsafe { (phys_to_virt(cmdline_paddr + i) as *const u8).read() }
        });
        info.cmdline_truncated = copy_cmdline(&mut info.cmdline, bytes);
    }
    if version < 1 {
        return Err(PvhError::NoMemoryMap);
    }
    let mm = rd64(40);
    let n = rd32(48).min(1024);
    if mm == 0 || n == 0 {
        return Err(PvhError::NoMemoryMap);
    }
    for i in 0..u64::from(n) {
        let e = phys_to_virt(mm + i * 24);
        // SAFETY: entry i of the loader's memory map, `n` entries of 24 bytes.
        let (start, len, kind) = unsafe {
            (
                (e as *const u64).read_unaligned(),
                ((e + 8) as *const u64).read_unaligned(),
                ((e + 16) as *const u32).read_unaligned(),
            )
        };
        let r = MemRegion {
            start,
            len,
            kind: MemKind::from_raw(kind),
        };
        if info.memmap.try_push(r).is_err() {
            info.memmap_dropped += 1;
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(s: &[u8]) -> (ArrayString<CMDLINE_MAX>, bool) {
        let mut line = ArrayString::new();
        let cut = copy_cmdline(&mut line, s.iter().copied());
        (line, cut)
    }

    #[test]
    fn a_line_that_fits_is_kept_up_to_its_nul() {
        let (l, cut) = copy(b"exo.job=test\texo.smp=4\nx\0ignored");
        assert_eq!((l.as_str(), cut), ("exo.job=test exo.smp=4 x", false));
    }

    #[test]
    fn a_foreign_byte_spoils_its_word_instead_of_splitting_it() {
        let (l, _) = copy("exo.init=/bin/\u{e9}x exo.ap_timeout_ms=6\x010".as_bytes());
        assert_eq!(l.as_str(), "exo.init=/bin/??x exo.ap_timeout_ms=6?0");
    }

    #[test]
    fn the_word_cut_by_the_limit_is_dropped_whole() {
        let mut s = words(CMDLINE_MAX - 6);
        s.extend_from_slice(b" exo.ap_timeout_ms=60000");
        let (l, cut) = copy(&s);
        assert!(cut);
        assert_eq!(l.len(), CMDLINE_MAX - 6);
        assert!(!l.contains("ap_timeout"));
    }

    #[test]
    fn a_cut_at_a_space_keeps_the_last_word() {
        let mut s = words(CMDLINE_MAX);
        s.extend_from_slice(b" exo.job=test");
        let (l, cut) = copy(&s);
        assert!(cut);
        assert_eq!(l.len(), CMDLINE_MAX);
    }

    #[test]
    fn one_word_longer_than_the_limit_leaves_nothing() {
        let (l, cut) = copy(&[b'a'; CMDLINE_MAX + 10]);
        assert!(cut);
        assert_eq!(l.as_str(), "");
    }

    /// `n` bytes of 15-letter words separated by single spaces, ending in a letter.
    fn words(n: usize) -> std::vec::Vec<u8> {
        (0..n)
            .map(|i| {
                if i % 16 == 15 && i + 1 < n {
                    b' '
                } else {
                    b'a'
                }
            })
            .collect()
    }
}
