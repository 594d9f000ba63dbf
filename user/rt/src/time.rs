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

/// The TSC's rate in ticks per second, measured once per process against
/// `CLOCK_MONOTONIC` over 2 ms (about 2 ms at the first call, a load after). At least 1
/// (if the clock does not advance within 2^24 reads, the ticks per nanosecond are taken
/// as 1).
pub fn tsc_hz() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static HZ: AtomicU64 = AtomicU64::new(0);
    let hz = HZ.load(Ordering::Relaxed);
    if hz != 0 {
        return hz;
    }
    let (t0, n0) = (rdtsc(), crate::monotonic_nanos());
    let (mut t1, mut n1) = (t0, n0);
    for _ in 0..1 << 24 {
        if n1.saturating_sub(n0) >= 2_000_000 {
            break;
        }
        (t1, n1) = (rdtsc(), crate::monotonic_nanos());
    }
    // A thread moved meanwhile to a CPU whose TSC is behind would make `t1 - t0` wrap (TSC
    // offsets between CPUs are measured by the kernel, not corrected): then, or with no
    // time elapsed, the fallback (found by review, 2026-12-04).
    let hz = match (n1.checked_sub(n0).filter(|&dn| dn > 0), t1.checked_sub(t0)) {
        (Some(dn), Some(dt)) => {
            (u128::from(dt) * 1_000_000_000 / u128::from(dn)).clamp(1, u128::from(u64::MAX)) as u64
        }
        _ => 1_000_000_000,
    };
    HZ.store(hz, Ordering::Relaxed);
    hz
}

/// A 64-bit random number from the CPU (`rdrand`, retried up to 10 times as Intel advises),
/// or `None` when the CPU has no `rdrand` (CPUID.1:ECX bit 30; QEMU's `-cpu qemu64`) or it
/// kept failing.
pub fn rdrand() -> Option<u64> {
    let ecx = core::arch::x86_64::__cpuid(1).ecx;
    if ecx & (1 << 30) == 0 {
        return None;
    }
    for _ in 0..10 {
        let (v, ok): (u64, u8);
        // SAFETY: the CPU has rdrand (checked above); it writes a register and CF only.
        unsafe {
            core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok,
                options(nomem, nostack));
        }
        if ok != 0 {
            return Some(v);
        }
    }
    None
}
