//! The time-stamp counter, readable in user mode (Exo-OS never sets `CR4.TSD`).

use core::arch::x86_64::_rdtsc;

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
    lfence();
    let t = rdtsc();
    lfence();
    t
}

/// `lfence` as inline `asm!` (also a compiler barrier): `_mm_lfence` is an SSE2 function that
/// this target cannot inline, so it was a call and a return inside every timed interval.
#[inline(always)]
fn lfence() {
    // SAFETY: lfence only orders instruction execution; it reads and writes nothing.
    unsafe { core::arch::asm!("lfence", options(nostack, preserves_flags)) };
}
