//! Frame-pointer backtraces (the kernel is built with frame pointers forced on).

/// Walks the `rbp` chain from `rbp`, calling `f(return_address)` for each frame, at most
/// `max` frames. Each frame pointer must lie in `[lo, hi)` (the current stack), be 8-byte
/// aligned and grow upward, so a corrupt chain ends the walk instead of faulting.
pub fn walk(mut rbp: u64, lo: u64, hi: u64, max: usize, mut f: impl FnMut(u64)) {
    for _ in 0..max {
        if rbp < lo || rbp.saturating_add(16) > hi || !rbp.is_multiple_of(8) {
            return;
        }
        // SAFETY: rbp and rbp+8 were just checked to lie inside the current, mapped stack.
        let (next, ret) = unsafe { ((rbp as *const u64).read(), ((rbp + 8) as *const u64).read()) };
        if ret == 0 {
            return;
        }
        f(ret);
        if next <= rbp {
            return;
        }
        rbp = next;
    }
}

/// The caller's frame pointer.
#[inline(always)]
pub fn current_rbp() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    rbp
}

/// The current stack pointer.
#[inline(always)]
pub fn current_rsp() -> u64 {
    let rsp: u64;
    // SAFETY: reads a register.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    rsp
}
