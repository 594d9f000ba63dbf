//! Frame-pointer backtraces (the kernel is built with frame pointers forced on).

/// Walks the `rbp` chain from `rbp`, calling `f(return_address)` for each frame, at most
/// `max` frames. Each frame pointer must lie in `[lo, hi)` (the current stack), be 8-byte
/// aligned and grow upward, so a corrupt chain ends the walk instead of faulting.
pub fn walk(rbp: u64, lo: u64, hi: u64, max: usize, f: impl FnMut(u64)) {
    walk_with(rbp, lo, hi, max, f, |rbp| {
        // SAFETY: `walk_with` passes an 8-aligned `rbp` with `rbp + 16 <= hi` and
        // `rbp >= lo`: both words lie inside the current, mapped stack.
        Some(unsafe { ((rbp as *const u64).read(), ((rbp + 8) as *const u64).read()) })
    });
}

/// [`walk`] from a frame pointer on no known stack (a corrupt `rbp`, an IST stack): the
/// chain may go anywhere in the 16 KiB above `rbp`, each read is a probe (a page fault ends
/// the walk: [`crate::trap::probe_read_u64`]) and every address must lie in the kernel half
/// (a non-canonical one would raise #GP, which no probe catches). Until 2026-12-05 the panic
/// report read such a chain directly: `rbp = 0x4141414141414140` from a smashed stack
/// faulted inside the report, which then ended as a nested panic without the other CPUs'
/// stop records (found by review).
#[cfg(target_os = "none")]
pub fn walk_probed(rbp: u64, max: usize, f: impl FnMut(u64)) {
    const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
    let hi = rbp.saturating_add(16 * 1024);
    walk_with(rbp, KERNEL_HALF, hi, max, f, |rbp| {
        let next = crate::trap::probe_read_u64(rbp).ok()?;
        Some((next, crate::trap::probe_read_u64(rbp + 8).ok()?))
    });
}

/// The walk of [`walk`] and [`walk_probed`]: `read(rbp)` gives a frame's saved `rbp` and
/// return address (`None`: the walk ends), called only for an 8-aligned `rbp` in
/// `[lo, hi - 16]`.
fn walk_with(
    mut rbp: u64,
    lo: u64,
    hi: u64,
    max: usize,
    mut f: impl FnMut(u64),
    read: impl Fn(u64) -> Option<(u64, u64)>,
) {
    for _ in 0..max {
        if rbp < lo || rbp.saturating_add(16) > hi || !rbp.is_multiple_of(8) {
            return;
        }
        let Some((next, ret)) = read(rbp) else {
            return;
        };
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
