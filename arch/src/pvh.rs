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

/// Whether `[start, start + len)` lies wholly in RAM entries of `map` (in any order;
/// overlapping or adjacent entries join). A boot module must, before the kernel reads it
/// through the direct map, which covers RAM and the low 4 GiB only: until 2026-12-04 the
/// initrd's descriptor was used as given, and one past the direct map faulted in the
/// kernel at the first `spawn`. Empty or ending past 2^64: false.
pub fn in_ram(map: &[MemRegion], start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len).filter(|_| len != 0) else {
        return false;
    };
    let mut cur = start;
    // Each step moves `cur` to the end of a RAM entry holding it: one step per entry at most.
    for _ in 0..=map.len() {
        if cur >= end {
            return true;
        }
        let next = map
            .iter()
            .filter(|r| r.kind == MemKind::Ram)
            .filter_map(|r| {
                let e = r.start.saturating_add(r.len);
                (r.start <= cur && cur < e).then_some(e)
            })
            .max();
        match next {
            Some(e) => cur = e,
            None => return false,
        }
    }
    cur >= end
}

/// Why a boot module is refused ([`check_module`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleRefusal {
    /// `start + len` is past 2^64.
    Wraps,
    /// Some of it is not in a RAM entry of the memory map.
    NotInRam,
    /// It ends past the direct map ([`crate::layout::DIRECT_MAP_END`]): never readable.
    PastDirectMap,
}

impl core::fmt::Display for ModuleRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ModuleRefusal::Wraps => "its end is past 2^64",
            ModuleRefusal::NotInRam => "it does not lie wholly inside RAM of the memory map",
            ModuleRefusal::PastDirectMap => "it ends past the direct map",
        })
    }
}

/// Whether the boot module `[start, start + len)` (the loader's address and size) may be
/// used: reserved from the allocator, mapped and read. It must lie wholly inside RAM entries
/// of `map` ([`in_ram`]) and below [`crate::layout::DIRECT_MAP_END`]; the sum is checked.
pub fn check_module(map: &[MemRegion], start: u64, len: u64) -> Result<(), ModuleRefusal> {
    let end = start.checked_add(len).ok_or(ModuleRefusal::Wraps)?;
    if !in_ram(map, start, len) {
        return Err(ModuleRefusal::NotInRam);
    }
    if end > crate::layout::DIRECT_MAP_END {
        return Err(ModuleRefusal::PastDirectMap);
    }
    Ok(())
}

/// The loader's boot modules after [`check_module`], each in its place in the loader's
/// list (`None`: refused). Only accepted modules are reserved from the allocator and
/// raise the direct map's top; module 0 is the initrd only if it was accepted. Until
/// 2026-12-05 every module was reserved as given and one merely overlapping RAM raised
/// the direct map to its end (a module of 64 TiB at 16 MiB asked for a 64 TiB direct map
/// and boot failed with "mapping failed"; an end past 2^64 overflowed), and its check
/// against RAM only came after (found by review).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modules {
    /// Module `i` of the loader's list: its (start, length) if accepted.
    pub slots: ArrayVec<Option<(u64, u64)>, MODULES_MAX>,
}

impl Modules {
    /// The accepted modules, (start, length) each.
    pub fn accepted(&self) -> ArrayVec<(u64, u64), MODULES_MAX> {
        self.slots.iter().flatten().copied().collect()
    }

    /// The initrd (module 0), if accepted.
    pub fn initrd(&self) -> Option<(u64, u64)> {
        self.slots.first().copied().flatten()
    }

    /// The end of the highest accepted module (0 if none): the direct map reaches it.
    pub fn top(&self) -> u64 {
        self.accepted()
            .iter()
            .map(|&(s, len)| s + len) // no overflow: `check_module` checked the sum
            .max()
            .unwrap_or(0)
    }
}

/// Checks each of `modules` ([`check_module`]); `refused(i, start, len, why)` is called for
/// each refused one (boot logs it).
pub fn accept_modules(
    map: &[MemRegion],
    modules: &[(u64, u64)],
    mut refused: impl FnMut(usize, u64, u64, ModuleRefusal),
) -> Modules {
    let mut out = Modules::default();
    for (i, &(s, len)) in modules.iter().enumerate().take(MODULES_MAX) {
        let slot = match check_module(map, s, len) {
            Ok(()) => Some((s, len)),
            Err(why) => {
                refused(i, s, len, why);
                None
            }
        };
        out.slots.push(slot);
    }
    out
}

/// Whether any byte of `[start, start + len)` is in a RAM entry of `map` (an end past
/// 2^64 is cut there). A device window (HPET, PM timer, PCI ECAM) the firmware describes
/// over RAM must be refused: the kernel's accesses would read and write memory the
/// allocator hands out.
pub fn overlaps_ram(map: &[MemRegion], start: u64, len: u64) -> bool {
    map.iter().any(|r| ram_overlaps(r, start, len))
}

/// Whether `r` is a RAM entry holding a byte of `[start, start + len)` (an end past 2^64 is
/// cut there; an empty range holds none): [`overlaps_ram`] for one entry.
fn ram_overlaps(r: &MemRegion, start: u64, len: u64) -> bool {
    len != 0
        && r.kind == MemKind::Ram
        && r.start < start.saturating_add(len)
        && start < r.start.saturating_add(r.len)
}

/// The chipset's fixed range below 4 GiB: I/O APICs, HPET, TPM, the local APIC and the
/// MSI address window (`0xFEC0_0000..4 GiB`, the BIOS flash at its top). No device window
/// the kernel maps for a driver (PCI BAR, ECAM, virtio-mmio) belongs there.
pub const CHIPSET_RANGE: core::ops::Range<u64> = 0xFEC0_0000..1 << 32;

/// Why a device window is refused ([`device_window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowRefusal {
    /// Zero bytes long.
    Empty,
    /// `start + len` is past 2^64.
    Wraps,
    /// It overlaps a RAM entry of the memory map.
    OverRam,
    /// It reaches into [`CHIPSET_RANGE`].
    Chipset,
    /// It overlaps a PCI ECAM window (configuration space).
    OverEcam,
}

impl core::fmt::Display for WindowRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WindowRefusal::Empty => "empty",
            WindowRefusal::Wraps => "its end is past 2^64",
            WindowRefusal::OverRam => "over RAM",
            WindowRefusal::Chipset => {
                "in the chipset's range 0xfec00000..4 GiB (I/O APIC, HPET, local APIC, MSI)"
            }
            WindowRefusal::OverEcam => "over a PCI ECAM window (configuration space)",
        })
    }
}

/// Whether a device's register window `[start, start + len)` (a PCI BAR's, an ECAM
/// window, a virtio-mmio window) may be mapped for a driver: not empty, no wrap, no byte
/// in RAM of `map`, none in [`CHIPSET_RANGE`] (a driver's writes there would reach the
/// local APIC's EOI or an I/O APIC) and none in the `ecam` windows (another function's
/// configuration space; an ECAM window itself is checked with `ecam` empty). One rule for
/// the three kinds: until 2026-12-05 only PCI BARs were checked against the chipset range
/// and ECAM, ECAM windows and virtio-mmio windows only against RAM (a virtio-mmio window
/// named on the command line at 0xfee00000 was probed over the local APIC; found by
/// review).
pub fn device_window(
    map: &[MemRegion],
    ecam: &[core::ops::Range<u64>],
    start: u64,
    len: u64,
) -> Result<(), WindowRefusal> {
    if len == 0 {
        return Err(WindowRefusal::Empty);
    }
    let end = start.checked_add(len).ok_or(WindowRefusal::Wraps)?;
    if overlaps_ram(map, start, len) {
        return Err(WindowRefusal::OverRam);
    }
    if start < CHIPSET_RANGE.end && CHIPSET_RANGE.start < end {
        return Err(WindowRefusal::Chipset);
    }
    if ecam.iter().any(|r| start < r.end && r.start < end) {
        return Err(WindowRefusal::OverEcam);
    }
    Ok(())
}

/// Most usable ranges [`usable_ram`] returns (more are dropped: less memory, never wrong).
pub const USABLE_MAX: usize = 128;

/// The usable RAM of a memory map, as the boot allocator needs it: page-aligned, sorted,
/// disjoint `[start, end)` ranges of RAM entries, from 1 MiB up to `limit`, minus every
/// range the map marks as anything else (reserved, ACPI, bad: where a RAM entry and another
/// overlap, the other wins) and minus `reserved` (the kernel image, the boot modules).
/// Nothing the loader hands over is trusted: entries may be unsorted, overlap, be empty, or
/// overflow (`start + len` past 2^64). Until 2026-12-04 the map was used as given: two
/// overlapping RAM entries handed the frames they share out twice (page tables zeroed again
/// while in use), a reserved entry inside a RAM one went to the allocator, and an entry
/// ending past 2^64 overflowed the direct map's size.
pub fn usable_ram(
    map: &[MemRegion],
    reserved: &[(u64, u64)],
    limit: u64,
) -> ArrayVec<(u64, u64), USABLE_MAX> {
    const MIB: u64 = 1 << 20;
    let page = 4096u64;
    let limit = limit & !(page - 1);
    let end_of = |start: u64, len: u64| start.saturating_add(len);
    let mut ram: ArrayVec<(u64, u64), USABLE_MAX> = ArrayVec::new();
    for r in map.iter().filter(|r| r.kind == MemKind::Ram) {
        // Inward to whole pages, inside [1 MiB, limit).
        let s = r
            .start
            .max(MIB)
            .checked_next_multiple_of(page)
            .unwrap_or(u64::MAX);
        let e = end_of(r.start, r.len).min(limit) & !(page - 1);
        if s < e {
            let _ = ram.try_push((s, e));
        }
    }
    ram.sort_unstable_by_key(|r| r.0);
    // Merge overlapping and touching entries.
    let mut merged: ArrayVec<(u64, u64), USABLE_MAX> = ArrayVec::new();
    for (s, e) in ram {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => {
                let _ = merged.try_push((s, e));
            }
        }
    }
    // Outward to whole pages: what is not RAM, and what the kernel keeps.
    let holes = map
        .iter()
        .filter(|r| r.kind != MemKind::Ram && r.len != 0)
        .map(|r| (r.start, end_of(r.start, r.len)))
        .chain(reserved.iter().copied());
    for (hs, he) in holes {
        let hs = hs & !(page - 1);
        let he = he.checked_next_multiple_of(page).unwrap_or(u64::MAX);
        if hs >= he {
            continue;
        }
        let mut out: ArrayVec<(u64, u64), USABLE_MAX> = ArrayVec::new();
        for &(s, e) in &merged {
            if he <= s || hs >= e {
                let _ = out.try_push((s, e));
                continue;
            }
            if s < hs {
                let _ = out.try_push((s, hs));
            }
            if he < e {
                let _ = out.try_push((he, e));
            }
        }
        merged = out;
    }
    merged
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
    /// Memory map: the entries that matter, at most `MEMMAP_MAX` ([`select_regions`]).
    pub memmap: ArrayVec<MemRegion, MEMMAP_MAX>,
    /// Entries that mattered but did not fit ([`select_regions`]).
    pub memmap_dropped: u32,
    /// start_info version.
    pub version: u32,
    /// Modules the loader passed (QEMU `-initrd`: one): physical address and size, the first
    /// [`MODULES_MAX`].
    pub modules: ArrayVec<(u64, u64), MODULES_MAX>,
    /// Modules beyond [`MODULES_MAX`] that were ignored (their memory is not reserved:
    /// nothing reads them).
    pub modules_dropped: u32,
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
    /// The start info, or a structure it points to (`what`: its command line, module list
    /// or memory map), at `addr`, does not lie below [`BOOT_MAPPED`] (or its end wraps):
    /// it cannot be read before the kernel's own page tables exist.
    Unreadable {
        /// Which structure.
        what: &'static str,
        /// Its physical address as given.
        addr: u64,
    },
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PvhError::Missing => write!(f, "no PVH start_info (ebx was 0)"),
            PvhError::BadMagic(m) => write!(f, "PVH start_info magic {m:#x}, expected {MAGIC:#x}"),
            PvhError::NoMemoryMap => write!(f, "PVH start_info has no memory map (version 0)"),
            PvhError::Unreadable { what, addr } => write!(
                f,
                "PVH start_info: the {what} at {addr:#x} does not lie in the first {} GiB the \
                 boot page tables map (or its end wraps): not read",
                BOOT_MAPPED >> 30
            ),
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

/// Physical addresses the boot page tables map (`boot.rs`: the first 4 GiB, through the
/// direct map): the start info and everything it points to must lie below, and [`read`]
/// refuses anything else.
pub const BOOT_MAPPED: u64 = 4 << 30;

/// Reads the start info at `paddr`, through the direct map of the boot page tables.
///
/// # Safety
/// `paddr` must be the value the PVH loader passed in `ebx`, read while the boot page tables
/// (the first [`BOOT_MAPPED`] bytes directly mapped, [`crate::layout`]) are loaded and
/// before anything can reuse the memory it points to. Pointers in it are not trusted:
/// [`parse`] only reads below [`BOOT_MAPPED`].
pub unsafe fn read(paddr: u64) -> Result<BootInfo, PvhError> {
    parse(paddr, BOOT_MAPPED, |pa, buf| {
        // SAFETY: `parse` asks only for `[pa, pa + buf.len())` inside `[0, BOOT_MAPPED)`
        // (sum checked), which the boot tables map at `PHYS_OFFSET` (caller's contract): the
        // read cannot fault, and the loader's memory does not overlap this stack buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(pa) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
    })
}

/// The start info at `paddr` and what it points to, read through `raw(addr, buf)` (fills
/// `buf` from physical `addr`), which is only asked for ranges that end at or below `limit`
/// (sums checked); a structure, list or command line that does not is
/// [`PvhError::Unreadable`]. Until 2026-12-05 every pointer was followed as given and the
/// sums (`modlist + i * 32`, `paddr + off`) were unchecked: a pointer past the 4 GiB the
/// boot tables map faulted before the kernel had an IDT (a triple fault, QEMU exited with
/// no word), one near 2^64 overflowed (found by review).
pub fn parse(paddr: u64, limit: u64, raw: impl Fn(u64, &mut [u8])) -> Result<BootInfo, PvhError> {
    if paddr == 0 {
        return Err(PvhError::Missing);
    }
    // `len` bytes at `base + off`, if they end at or below `limit`.
    let fetch = |what: &'static str, base: u64, off: u64, buf: &mut [u8]| {
        let ok = base
            .checked_add(off)
            .filter(|a| a.checked_add(buf.len() as u64).is_some_and(|e| e <= limit));
        match ok {
            Some(a) => {
                raw(a, buf);
                Ok(())
            }
            None => Err(PvhError::Unreadable { what, addr: base }),
        }
    };
    let rd32 = |what, base, off| {
        let mut b = [0u8; 4];
        fetch(what, base, off, &mut b).map(|()| u32::from_le_bytes(b))
    };
    let rd64 = |what, base, off| {
        let mut b = [0u8; 8];
        fetch(what, base, off, &mut b).map(|()| u64::from_le_bytes(b))
    };
    const SI: &str = "start info";
    let magic = rd32(SI, paddr, 0)?;
    if magic != MAGIC {
        return Err(PvhError::BadMagic(magic));
    }
    let version = rd32(SI, paddr, 4)?;
    let cmdline_paddr = rd64(SI, paddr, 24)?;
    let rsdp = rd64(SI, paddr, 32)?;
    let mut info = BootInfo {
        cmdline: ArrayString::new(),
        cmdline_truncated: false,
        rsdp,
        memmap: ArrayVec::new(),
        memmap_dropped: 0,
        version,
        modules: ArrayVec::new(),
        modules_dropped: 0,
    };
    // Modules: count at +12, list at +16; each entry 32 bytes (paddr, size, cmdline, reserved).
    let nmod = rd32(SI, paddr, 12)?;
    let modlist = rd64(SI, paddr, 16)?;
    if modlist != 0 {
        info.modules_dropped = nmod.saturating_sub(MODULES_MAX as u32);
        for i in 0..u64::from(nmod).min(MODULES_MAX as u64) {
            const ML: &str = "module list";
            let (paddr, size) = (rd64(ML, modlist, i * 32)?, rd64(ML, modlist, i * 32 + 8)?);
            if size != 0 {
                let _ = info.modules.try_push((paddr, size));
            }
        }
    }
    if cmdline_paddr != 0 {
        // Byte by byte, up to the NUL (at most 4 KiB): only what is read must be readable.
        let bad = core::cell::Cell::new(None);
        let bytes = (0..4096u64).map_while(|i| {
            let mut b = [0u8];
            match fetch("command line", cmdline_paddr, i, &mut b) {
                Ok(()) => Some(b[0]),
                Err(e) => {
                    bad.set(Some(e));
                    None
                }
            }
        });
        info.cmdline_truncated = copy_cmdline(&mut info.cmdline, bytes);
        if let Some(e) = bad.get() {
            return Err(e);
        }
    }
    if version < 1 {
        return Err(PvhError::NoMemoryMap);
    }
    let mm = rd64(SI, paddr, 40)?;
    let n = rd32(SI, paddr, 48)?.min(1024);
    if mm == 0 || n == 0 {
        return Err(PvhError::NoMemoryMap);
    }
    // The whole table first: `select_regions` reads entries again and cannot fail.
    const MM: &str = "memory map";
    fetch(MM, mm, u64::from(n) * 24 - 1, &mut [0u8])?;
    let read = |i: usize| {
        let mut e = [0u8; 24];
        // In the table checked above.
        let _ = fetch(MM, mm, i as u64 * 24, &mut e);
        let word = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().unwrap_or([0; 8]));
        MemRegion {
            start: word(0),
            len: word(8),
            kind: MemKind::from_raw(u32::from_le_bytes(e[16..20].try_into().unwrap_or([0; 4]))),
        }
    };
    let (map, dropped) = select_regions(n as usize, read);
    info.memmap = map;
    info.memmap_dropped = dropped;
    Ok(info)
}

/// Whether entries of this kind are memory the kernel maps cacheable (RAM, ACPI tables and
/// storage: `memory::init`), as opposed to ranges that only take memory away from RAM.
fn ram_like(k: MemKind) -> bool {
    matches!(k, MemKind::Ram | MemKind::AcpiReclaim | MemKind::AcpiNvs)
}

/// The entries of the loader's memory map (`n` of them, entry `i` from `read(i)`) kept in at
/// most [`MEMMAP_MAX`], and how many that cost. What matters: every RAM-like entry, and
/// every other entry that takes memory away from a RAM entry of the whole map (non-empty
/// and overlapping one); a reserved range beside RAM changes nothing ([`usable_ram`] only
/// subtracts) and is passed over, however many there are (real maps list dozens of device
/// and firmware ranges). If what matters is still more than fits, [`keep_region`] drops the
/// smallest RAM-like entries first: less memory, never a reserved range handed out as RAM.
/// Until 2026-12-05 every entry past the 64th was dropped whatever its kind: a reserved
/// range inside a RAM entry, listed late, went to the allocator; the first fix (the same
/// day) made room by dropping the last RAM entry kept even for a range beside RAM, so a
/// sorted map of three RAM entries and 63 reserved ones kept no memory at all (review).
pub fn select_regions(
    n: usize,
    read: impl Fn(usize) -> MemRegion,
) -> (ArrayVec<MemRegion, MEMMAP_MAX>, u32) {
    let mut map = ArrayVec::new();
    let mut dropped = 0;
    for i in 0..n {
        let r = read(i);
        if !ram_like(r.kind) && !(0..n).any(|j| ram_overlaps(&read(j), r.start, r.len)) {
            continue;
        }
        dropped += u32::from(keep_region(&mut map, r));
    }
    (map, dropped)
}

/// Adds entry `r` to `map`; true if an entry was dropped for room (`r` itself or one kept
/// before). A full map keeps a range that takes memory away (it replaces the smallest
/// RAM-like entry kept) and, of RAM-like entries, the larger ones. Only when every entry kept
/// takes memory away is such a range dropped, and then no RAM is left at all (boot stops:
/// no memory).
pub fn keep_region(map: &mut ArrayVec<MemRegion, MEMMAP_MAX>, r: MemRegion) -> bool {
    if map.try_push(r).is_ok() {
        return false;
    }
    let smallest = map
        .iter()
        .enumerate()
        .filter(|(_, e)| ram_like(e.kind))
        .min_by_key(|(_, e)| e.len)
        .map(|(i, _)| i);
    if let Some(i) = smallest
        && (!ram_like(r.kind) || map[i].len < r.len)
    {
        map[i] = r;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, len: u64, kind: MemKind) -> MemRegion {
        MemRegion { start, len, kind }
    }

    #[test]
    fn a_long_map_drops_ram_never_a_reserved_range() {
        // 64 RAM entries of 1 MiB from 16 MiB, then a reserved range inside the first one and
        // a smaller RAM entry past them all.
        let mut raw: Vec<MemRegion> = (0..MEMMAP_MAX as u64)
            .map(|i| region(0x100_0000 + i * 0x10_0000, 0x10_0000, MemKind::Ram))
            .collect();
        raw.push(region(0x104_0000, 0x1000, MemKind::Reserved));
        raw.push(region(0x1_0000_0000, 0x8_0000, MemKind::Ram));
        let (map, dropped) = select_regions(raw.len(), |i| raw[i]);
        assert_eq!(dropped, 2);
        assert_eq!(map.len(), MEMMAP_MAX);
        assert!(map.iter().any(|e| e.kind == MemKind::Reserved));
        let usable = usable_ram(&map, &[], u64::MAX);
        // The reserved page is not handed out; one RAM entry made room for it (63 MiB left,
        // less the page if it lay in one of those), and the late, smaller RAM entry is not
        // kept.
        assert!(
            usable
                .iter()
                .all(|&(s, e)| e <= 0x104_0000 || s >= 0x104_1000)
        );
        let total: u64 = usable.iter().map(|&(s, e)| e - s).sum();
        assert!(total >= 63 * 0x10_0000 - 0x1000, "{total:#x}");
        assert!(usable.iter().all(|&(_, e)| e <= 0x500_0000));
        // A map of reserved ranges inside one RAM entry: one is dropped, no RAM is left.
        let mut all = vec![region(0, 0x100_0000, MemKind::Ram)];
        all.extend((0..=MEMMAP_MAX as u64).map(|i| region(i * 0x1000, 0x1000, MemKind::Reserved)));
        let (map, _) = select_regions(all.len(), |i| all[i]);
        assert_eq!(map.len(), MEMMAP_MAX);
        assert!(usable_ram(&map, &[], u64::MAX).is_empty());
    }

    #[test]
    fn reserved_ranges_beside_ram_cost_no_memory() {
        // A sorted map as firmware writes them: low RAM, RAM to 2 GiB, 63 device and firmware
        // ranges beside RAM (and an empty one inside it), then the large RAM above 4 GiB.
        let mut raw = vec![
            region(0, 0xa_0000, MemKind::Ram),
            region(0x10_0000, 0x7ff0_0000, MemKind::Ram),
            region(0x20_0000, 0, MemKind::Reserved),
        ];
        raw.extend(
            (0..63u64).map(|i| region(0x8000_0000 + i * 0x10_0000, 0x1000, MemKind::Reserved)),
        );
        raw.push(region(0xfed0_0000, 0x1000, MemKind::AcpiNvs));
        raw.push(region(0x1_0000_0000, 0x3_0000_0000, MemKind::Ram));
        let (map, dropped) = select_regions(raw.len(), |i| raw[i]);
        assert_eq!(dropped, 0);
        assert_eq!(map.len(), 4, "the three RAM entries and the ACPI one");
        let usable = usable_ram(&map, &[], u64::MAX);
        let total: u64 = usable.iter().map(|&(s, e)| e - s).sum();
        assert_eq!(total, 0x7ff0_0000 + 0x3_0000_0000);
        // The old rule (every entry past the 64th dropped, or the last RAM one evicted)
        // lost the RAM above 4 GiB here.
        assert!(usable.iter().any(|&(s, _)| s == 0x1_0000_0000));
    }

    #[test]
    fn a_module_must_lie_wholly_in_ram() {
        let map = [
            region(0x10_0000, 0x70_0000, MemKind::Ram), // [1 MiB, 8 MiB)
            region(0x80_0000, 0x10_0000, MemKind::Reserved),
            region(0x100_0000, 0x100_0000, MemKind::Ram), // [16 MiB, 32 MiB)
            region(0x90_0000, 0x70_0000, MemKind::Ram),   // [9 MiB, 16 MiB), listed late
        ];
        assert!(in_ram(&map, 0x20_0000, 0x1000));
        assert!(in_ram(&map, 0x10_0000, 0x70_0000), "the whole entry");
        // Across two adjacent entries listed out of order.
        assert!(in_ram(&map, 0xf0_0000, 0x20_0000));
        assert!(in_ram(&map, 0x90_0000, 0x170_0000));
        // Into the reserved hole, past RAM's top, below RAM, empty, wrapping.
        assert!(!in_ram(&map, 0x7f_f000, 0x2000));
        assert!(!in_ram(&map, 0x1ff_f000, 0x2000));
        assert!(!in_ram(&map, 0x1_0000_0000, 0x1000));
        assert!(!in_ram(&map, 0x8_0000, 0x1000));
        assert!(!in_ram(&map, 0x20_0000, 0));
        assert!(!in_ram(&map, u64::MAX - 0xfff, 0x2000));
        assert!(!in_ram(&[], 0x20_0000, 0x1000));
    }

    #[test]
    fn device_windows_over_ram_are_found() {
        let map = [
            region(0, 0x9_fc00, MemKind::Ram),
            region(0x10_0000, 0x7ff0_0000, MemKind::Ram), // up to 2 GiB
            region(0xfed0_0000, 0x1000, MemKind::Reserved),
        ];
        assert!(
            !overlaps_ram(&map, 0xfed0_0000, 0x400),
            "HPET in a reserved hole"
        );
        assert!(
            !overlaps_ram(&map, 0xb000_0000, 0x1000_0000),
            "ECAM above RAM"
        );
        assert!(!overlaps_ram(&map, 0xa_0000, 0x6_0000), "the VGA/BIOS hole");
        assert!(overlaps_ram(&map, 0x4000_0000, 0x400), "inside RAM");
        assert!(
            overlaps_ram(&map, 0x7fff_f000, 0x2000),
            "straddling RAM's end"
        );
        assert!(
            overlaps_ram(&map, 0x9_f000, 0x1000),
            "straddling the first entry's end"
        );
        assert!(!overlaps_ram(&map, 0x8000_0000, 0), "empty");
        assert!(
            !overlaps_ram(&map, u64::MAX - 0xfff, 0x2000),
            "cut at 2^64, above RAM"
        );
    }

    #[test]
    fn overlapping_and_huge_entries_do_not_loop_or_overflow() {
        let map = [
            region(0x10_0000, u64::MAX, MemKind::Ram), // ends past 2^64: saturated
            region(0x10_0000, 0x1000, MemKind::Ram),
            region(0x10_0000, 0x1000, MemKind::Ram),
        ];
        assert!(in_ram(&map, 0x10_0000, 0x1_0000_0000));
        assert!(!in_ram(&map, 0, 0x20_0000));
    }

    /// A fake physical memory for [`parse`]: `bytes` at physical 0, zeros above up to
    /// [`BOOT_MAPPED`]; a read past it fails the test (the bound must be checked first).
    fn parse_fake(bytes: &[u8]) -> Result<BootInfo, PvhError> {
        parse(0x1000, BOOT_MAPPED, |pa, buf| {
            let end = pa.checked_add(buf.len() as u64).expect("a wrapping read");
            assert!(end <= BOOT_MAPPED, "read at {pa:#x} past the limit");
            for (i, b) in buf.iter_mut().enumerate() {
                *b = bytes.get(pa as usize + i).copied().unwrap_or(0);
            }
        })
    }

    /// A start info at 0x1000 with its command line at 0x2000, module list at 0x3000 (one
    /// module) and memory map at 0x4000 (one RAM entry), then `edit` applied.
    fn start_info(edit: impl FnOnce(&mut std::vec::Vec<u8>)) -> std::vec::Vec<u8> {
        let mut m = std::vec![0u8; 0x5000];
        let mut put = |at: usize, v: &[u8]| m[at..at + v.len()].copy_from_slice(v);
        put(0x1000, &MAGIC.to_le_bytes());
        put(0x1004, &1u32.to_le_bytes());
        put(0x100c, &1u32.to_le_bytes()); // one module
        put(0x1010, &0x3000u64.to_le_bytes());
        put(0x1018, &0x2000u64.to_le_bytes());
        put(0x1028, &0x4000u64.to_le_bytes());
        put(0x1030, &1u32.to_le_bytes());
        put(0x2000, b"exo.job=boot\0");
        put(0x3000, &0x100_0000u64.to_le_bytes());
        put(0x3008, &0x1000u64.to_le_bytes());
        put(0x4000, &0x10_0000u64.to_le_bytes());
        put(0x4008, &0x3ff0_0000u64.to_le_bytes());
        put(0x4010, &1u32.to_le_bytes());
        edit(&mut m);
        m
    }

    #[test]
    fn a_sound_start_info_is_read() {
        let bi = parse_fake(&start_info(|_| {})).unwrap();
        assert_eq!(bi.cmdline.as_str(), "exo.job=boot");
        assert_eq!(bi.modules.as_slice(), &[(0x100_0000, 0x1000)]);
        assert_eq!(
            bi.memmap.as_slice(),
            &[region(0x10_0000, 0x3ff0_0000, MemKind::Ram)]
        );
    }

    #[test]
    fn pointers_past_the_boot_map_are_errors_not_reads() {
        for (off, what) in [
            (0x1018, "command line"),
            (0x1010, "module list"),
            (0x1028, "memory map"),
        ] {
            for addr in [5u64 << 30, u64::MAX - 8] {
                let m = start_info(|m| m[off..off + 8].copy_from_slice(&addr.to_le_bytes()));
                let got = parse_fake(&m);
                assert_eq!(
                    got.err(),
                    Some(PvhError::Unreadable { what, addr }),
                    "{what} at {addr:#x}"
                );
            }
        }
        // A command line whose NUL comes before the limit is read whole.
        let m = start_info(|m| {
            m[0x1018..0x1020].copy_from_slice(&(BOOT_MAPPED - 1).to_le_bytes());
        });
        assert_eq!(parse_fake(&m).unwrap().cmdline.as_str(), "");
        // A module list or memory map whose last entry crosses the limit.
        let m = start_info(|m| {
            m[0x100c..0x1010].copy_from_slice(&2u32.to_le_bytes());
            m[0x1010..0x1018].copy_from_slice(&(BOOT_MAPPED - 40).to_le_bytes());
        });
        assert!(matches!(
            parse_fake(&m),
            Err(PvhError::Unreadable {
                what: "module list",
                ..
            })
        ));
        let m = start_info(|m| {
            m[0x1030..0x1034].copy_from_slice(&1024u32.to_le_bytes());
            m[0x1028..0x1030].copy_from_slice(&(BOOT_MAPPED - 24 * 1000).to_le_bytes());
        });
        assert!(matches!(
            parse_fake(&m),
            Err(PvhError::Unreadable {
                what: "memory map",
                ..
            })
        ));
        // The start info itself.
        for at in [5u64 << 30, u64::MAX - 8, BOOT_MAPPED - 2] {
            let got = parse(at, BOOT_MAPPED, |_, _| panic!("read past the limit"));
            assert_eq!(
                got.err(),
                Some(PvhError::Unreadable {
                    what: "start info",
                    addr: at
                })
            );
        }
    }

    #[test]
    fn modules_are_checked_before_use() {
        // RAM: [1 MiB, 1 GiB).
        let map = [region(0x10_0000, 0x3ff0_0000, MemKind::Ram)];
        let mut refused = std::vec::Vec::new();
        let m = accept_modules(
            &map,
            &[
                (16 << 20, 1 << 46),        // overlaps RAM, ends at 64 TiB
                (u64::MAX - 0xfff, 0x2000), // wraps
                (32 << 20, 0x1_0000),       // sound
                (0x3fff_f000, 0x2000),      // past RAM's end
            ],
            |i, _, _, why| refused.push((i, why)),
        );
        assert_eq!(
            refused,
            [
                (0, ModuleRefusal::NotInRam),
                (1, ModuleRefusal::Wraps),
                (3, ModuleRefusal::NotInRam)
            ]
        );
        assert_eq!(m.accepted().as_slice(), &[(32 << 20, 0x1_0000)]);
        assert_eq!(
            m.top(),
            (32 << 20) + 0x1_0000,
            "only the sound one raises the top"
        );
        assert_eq!(m.initrd(), None, "module 0 was refused: no initrd");
        let m = accept_modules(&map, &[(16 << 20, 1 << 46)], |_, _, _, _| {});
        assert_eq!((m.top(), m.initrd(), m.accepted().len()), (0, None, 0));
        let m = accept_modules(&map, &[(16 << 20, 0x1000)], |_, _, _, _| panic!());
        assert_eq!(m.initrd(), Some((16 << 20, 0x1000)));
        // RAM past the direct map: never readable.
        let big = [region(0x10_0000, u64::MAX, MemKind::Ram)];
        assert_eq!(
            check_module(&big, crate::layout::DIRECT_MAP_END - 0x1000, 0x2000),
            Err(ModuleRefusal::PastDirectMap)
        );
    }

    #[test]
    fn device_windows_keep_out_of_ram_the_chipset_and_ecam() {
        let map = [region(0x10_0000, 0x7ff0_0000, MemKind::Ram)]; // up to 2 GiB
        let ecam = [
            0xb000_0000..0xc000_0000,
            0x1_0000_0000_0000..0x1_0000_1000_0000,
        ];
        let w = |s, len| device_window(&map, &ecam, s, len);
        assert_eq!(w(0xfeb0_0000, 512), Ok(()), "microvm's virtio-mmio slot");
        assert_eq!(w(0xd000_0000, 0x1000), Ok(()), "Firecracker's");
        assert_eq!(w(0x1_0000_0000, 0x4000), Ok(()), "a 64-bit BAR");
        assert_eq!(
            w(0xfee0_0000, 512),
            Err(WindowRefusal::Chipset),
            "local APIC"
        );
        assert_eq!(
            w(0xfec0_0000, 0x20),
            Err(WindowRefusal::Chipset),
            "I/O APIC"
        );
        assert_eq!(
            w(0xfebf_f000, 0x2000),
            Err(WindowRefusal::Chipset),
            "ends inside"
        );
        assert_eq!(
            w(0xffff_f000, 0x2000),
            Err(WindowRefusal::Chipset),
            "across 4 GiB"
        );
        assert_eq!(w(0x4000_0000, 0x1000), Err(WindowRefusal::OverRam));
        assert_eq!(w(0xb000_0000, 0x38), Err(WindowRefusal::OverEcam));
        assert_eq!(w(0xafff_f000, 0x2000), Err(WindowRefusal::OverEcam));
        assert_eq!(
            w(0x1_0000_0800_0000, 0x1000),
            Err(WindowRefusal::OverEcam),
            "a BAR inside an ECAM window above 4 GiB"
        );
        assert_eq!(w(u64::MAX - 0xfff, 0x2000), Err(WindowRefusal::Wraps));
        assert_eq!(w(0xd000_0000, 0), Err(WindowRefusal::Empty));
        // An ECAM window is checked with no ECAM list: only RAM, chipset and wrap.
        assert_eq!(device_window(&map, &[], 0xb000_0000, 0x1000_0000), Ok(()));
        assert_eq!(
            device_window(&map, &[], 0xf000_0000, 0x1000_0000),
            Err(WindowRefusal::Chipset)
        );
    }

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

    fn ram(start: u64, len: u64) -> MemRegion {
        MemRegion {
            start,
            len,
            kind: MemKind::Ram,
        }
    }

    fn other(start: u64, len: u64, kind: MemKind) -> MemRegion {
        MemRegion { start, len, kind }
    }

    const MIB: u64 = 1 << 20;
    const LIMIT: u64 = 1 << 46;

    /// Every frame of the result, to compare with what a map allows.
    fn frames(r: &[(u64, u64)]) -> std::collections::BTreeSet<u64> {
        r.iter().flat_map(|&(s, e)| (s..e).step_by(4096)).collect()
    }

    #[test]
    fn overlapping_ram_entries_give_each_frame_once() {
        let map = [ram(MIB, MIB / 2), ram(MIB + MIB / 4, 63 * MIB)];
        let r = usable_ram(&map, &[], LIMIT);
        assert_eq!(r.as_slice(), &[(MIB, 64 * MIB + MIB / 4)]);
    }

    #[test]
    fn unsorted_and_touching_entries_merge() {
        let map = [ram(8 * MIB, MIB), ram(2 * MIB, 6 * MIB), ram(0, 640 * 1024)];
        let r = usable_ram(&map, &[], LIMIT);
        assert_eq!(r.as_slice(), &[(2 * MIB, 9 * MIB)]);
    }

    #[test]
    fn reserved_and_acpi_inside_ram_are_cut_out() {
        let map = [
            ram(MIB, 63 * MIB),
            other(3 * MIB, MIB, MemKind::Reserved),
            other(10 * MIB + 100, 10, MemKind::AcpiNvs),
            other(20 * MIB, MIB, MemKind::Other(12)),
        ];
        let r = usable_ram(&map, &[(40 * MIB, 41 * MIB + 1)], LIMIT);
        assert_eq!(
            r.as_slice(),
            &[
                (MIB, 3 * MIB),
                (4 * MIB, 10 * MIB),
                (10 * MIB + 4096, 20 * MIB),
                (21 * MIB, 40 * MIB),
                (41 * MIB + 4096, 64 * MIB)
            ]
        );
    }

    #[test]
    fn overflowing_and_empty_entries_are_harmless() {
        let map = [
            ram(u64::MAX - 0xffff, 0x20000),
            ram(0xFFFF_FFFF_FFFF_0000, 0x20000),
            ram(5 * MIB, 0),
            ram(2 * MIB, u64::MAX),
            other(u64::MAX - 10, 100, MemKind::Reserved),
        ];
        let r = usable_ram(&map, &[(u64::MAX - 5, u64::MAX)], LIMIT);
        assert_eq!(r.as_slice(), &[(2 * MIB, LIMIT)]);
    }

    #[test]
    fn the_result_is_sorted_disjoint_and_inside_the_ram_entries() {
        // A deterministic pseudo-random map: whatever it holds, no frame comes out that a
        // RAM entry does not cover, or that another entry or a reservation covers.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let mut map = Vec::new();
            for _ in 0..(next() % 12) {
                let start = (next() % (256 * MIB)) & !0xff;
                let len = next() % (64 * MIB);
                let kind = match next() % 4 {
                    0 | 1 => MemKind::Ram,
                    2 => MemKind::Reserved,
                    _ => MemKind::AcpiReclaim,
                };
                map.push(other(start, len, kind));
            }
            let res = [(next() % (256 * MIB), next() % (256 * MIB))];
            let r = usable_ram(&map, &res, 200 * MIB);
            for w in r.windows(2) {
                assert!(w[0].1 < w[1].0, "{r:?}");
            }
            for f in frames(&r) {
                let covered =
                    |m: &MemRegion| f < m.start.saturating_add(m.len) && f + 4096 > m.start;
                assert!(f >= MIB && f + 4096 <= 200 * MIB);
                assert!(map.iter().any(|m| m.kind == MemKind::Ram
                    && m.start <= f
                    && f + 4096 <= m.start + m.len));
                assert!(
                    !map.iter().any(|m| m.kind != MemKind::Ram && covered(m)),
                    "{f:#x} in {map:?}"
                );
                assert!(!(f < res[0].1 && f + 4096 > res[0].0));
            }
        }
    }
}
