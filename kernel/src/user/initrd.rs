//! The initrd: the first PVH module (QEMU `-initrd FILE`), a cpio (newc) archive of the
//! programs user mode can start (`exo-initrd` reads it). Its frames are kept out of the
//! allocator at boot and never reused, so the bytes stay valid for the kernel's lifetime.

use core::sync::atomic::{AtomicU64, Ordering};

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
static PARSED: spin::Once<Option<Result<exo_initrd::Archive<'static>, exo_initrd::InitrdError>>> =
    spin::Once::new();

/// The parsed archive (`None`: no initrd; `Some(Err)`: it is not a valid cpio archive).
/// Validated at the first call after boot's [`set`] (none comes before it: boot records the
/// module before anything can start a process).
pub fn archive() -> Option<Result<exo_initrd::Archive<'static>, exo_initrd::InitrdError>> {
    *PARSED.call_once(|| bytes().map(exo_initrd::Archive::parse))
}
