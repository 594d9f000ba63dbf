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

/// The parsed archive (`None`: no initrd; `Some(Err)`: it is not a valid cpio archive).
pub fn archive() -> Option<Result<exo_initrd::Archive<'static>, exo_initrd::InitrdError>> {
    bytes().map(exo_initrd::Archive::parse)
}
