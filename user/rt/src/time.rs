//! The time-stamp counter, readable in user mode (Exo-OS never sets `CR4.TSD`).

use core::arch::x86_64::{_mm_lfence, _rdtsc};

/// Plain `rdtsc` (may be reordered with the instructions around it).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc exists on every x86_64 CPU and reads no memory.
    unsafe { _rdtsc() }
}

/// `lfence; rdtsc; lfence`: the instructions before have completed, those after have not
/// started. The timing primitive of the benchmarks (as in the kernel's harness).
#[inline(always)]
pub fn rdtsc_precise() -> u64 {
    // SAFETY: lfence and rdtsc have no memory effects.
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}
