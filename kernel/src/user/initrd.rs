//! The initrd: the first PVH module (QEMU `-initrd FILE`), a cpio (newc) archive of the
//! programs user mode can start (`exo-initrd` reads it). Its frames are kept out of the
//! allocator at boot and never reused, so the bytes stay valid for the kernel's lifetime.

use core::sync::atomic::{AtomicU64, Ordering};
use exo_initrd::{Archive, Index, InitrdError};

static PADDR: AtomicU64 = AtomicU64::new(0);
static LEN: AtomicU64 = AtomicU64::new(0);

/// Records the module boot found (physical address, length). Boot only.
pub fn set(paddr: u64, len: u64) {
    PADDR.store(paddr, Ordering::Relaxed);
    LEN.store(len, Ordering::Release);
}

/// The archive's bytes, if the loader passed one.
pub fn bytes() -> Option<&'static [u8]> {
    let len = LEN.load(Ordering::Acquire);
    (len != 0).then(|| crate::sys::kept_phys(PADDR.load(Ordering::Relaxed), len))
}

/// The archive as first validated: its bytes never change once boot recorded them, so the
/// walk over every header (checksums included) is done once, not at each call. Until
/// 2026-12-06 every `spawn` validated the whole archive again before its lookup: about a
/// sixth of `proc.spawn` (icount: 27k of 172k instructions with 13 files; `just iprof-spawn`).
/// Kept with its index (`exo_initrd::Index`, built at the same moment): the lookup by name
/// walked every header too, since the last entry of a name wins (another 21k of 139k
/// instructions; a binary search over the names since 2026-12-06).
static PARSED: spin::Once<Option<Result<Index<'static, 'static>, InitrdError>>> = spin::Once::new();

/// Most entries the index holds (96 bytes each on the heap, for the kernel's lifetime): an
/// archive with more, or a heap that cannot give the table, is looked up by walking it
/// (`exo_initrd::Index` without a table: the same answers, slower). The kernel's initrd has
/// 13 entries.
pub const MAX_INDEXED: usize = 1024;

/// The parsed archive (`None`: no initrd; `Some(Err)`: it is not a valid cpio archive).
/// Validated, and indexed, at the first call after boot's [`set`] (none comes before it:
/// boot records the module before anything can start a process; `process::prepare` makes
/// that call before a run measures memory, as the index's table is heap kept for good).
pub fn archive() -> Option<Result<Archive<'static>, InitrdError>> {
    index().map(|r| r.map(|i| i.archive()))
}

/// The parsed archive with its index: what `spawn` looks programs up in. See [`archive`].
pub fn index() -> Option<Result<Index<'static, 'static>, InitrdError>> {
    *PARSED.call_once(|| bytes().map(|b| Archive::parse(b).map(|a| index_of(a, MAX_INDEXED))))
}

/// The index of `a` in a table from the heap, kept for good (the archive's bytes are); without
/// one (more than `max` entries, or no memory) an index that walks.
pub fn index_of(a: Archive<'static>, max: usize) -> Index<'static, 'static> {
    let mut slots = alloc::vec::Vec::new();
    if a.len() > max || slots.try_reserve_exact(a.len()).is_err() {
        return a.index(&mut []);
    }
    slots.resize(a.len(), exo_initrd::Entry::default());
    a.index(slots.leak())
}
