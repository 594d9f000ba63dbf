//! Timing loops: overhead of the timing pair, plain and batched benchmarks.

use core::hint::black_box;

use crate::{Clock, Samples, Stats};

/// Number of empty timing pairs [`bench()`] and [`bench_batched`] use to measure the overhead.
pub const OVERHEAD_PAIRS: usize = 1000;

/// Cost of an empty timing pair (`now(); now()`): the **minimum** over `n` pairs (at least 1).
///
/// The minimum, not the median: the pair has a fixed intrinsic cost and noise (interrupts,
/// cache misses, SMIs, emulator exits) only ever adds to it, so the minimum is the best
/// estimate of what every timed sample contains, and subtracting it never removes more than
/// the pair cost itself. It also needs no buffer.
pub fn measure_overhead<C: Clock + ?Sized>(clock: &mut C, n: usize) -> u64 {
    let mut best = u64::MAX;
    for _ in 0..n.max(1) {
        let t0 = clock.now();
        let t1 = clock.now();
        best = best.min(t1.saturating_sub(t0));
    }
    best
}

/// Times `n` calls of `f` (one sample per call, at most `N`), after `warmup` untimed calls,
/// with the pair overhead measured by [`measure_overhead`] over [`OVERHEAD_PAIRS`] pairs
/// and subtracted. `samples` is cleared first; `None` when no sample was taken.
pub fn bench<C, F, R, const N: usize>(
    clock: &mut C,
    samples: &mut Samples<N>,
    warmup: usize,
    n: usize,
    f: F,
) -> Option<Stats>
where
    C: Clock + ?Sized,
    F: FnMut() -> R,
{
    bench_batched(clock, samples, warmup, n, 1, f)
}

/// Like [`bench()`], but each sample times `k` back-to-back calls of `f` and records the
/// per-call cost `(elapsed − overhead) / k` rounded to nearest, for operations shorter than
/// the timing pair. `None` when `k == 0` or no sample was taken.
pub fn bench_batched<C, F, R, const N: usize>(
    clock: &mut C,
    samples: &mut Samples<N>,
    warmup: usize,
    n: usize,
    k: u32,
    f: F,
) -> Option<Stats>
where
    C: Clock + ?Sized,
    F: FnMut() -> R,
{
    let overhead = measure_overhead(clock, OVERHEAD_PAIRS);
    bench_with(clock, samples, overhead, warmup, n, k, f)
}

/// The general loop behind [`bench()`] and [`bench_batched`], with a caller-supplied
/// `overhead` (e.g. measured once per CPU and reported as `tsc.pair`).
///
/// Runs `warmup` untimed calls, then takes `min(n, N)` samples of `k` calls each; every
/// sample stored in `samples` is already per call and overhead-corrected.
pub fn bench_with<C, F, R, const N: usize>(
    clock: &mut C,
    samples: &mut Samples<N>,
    overhead: u64,
    warmup: usize,
    n: usize,
    k: u32,
    mut f: F,
) -> Option<Stats>
where
    C: Clock + ?Sized,
    F: FnMut() -> R,
{
    if k == 0 {
        return None;
    }
    samples.clear();
    for _ in 0..warmup {
        black_box(f());
    }
    let k64 = u64::from(k);
    for _ in 0..n.min(N) {
        let t0 = clock.now();
        for _ in 0..k {
            black_box(f());
        }
        let t1 = clock.now();
        let work = t1.saturating_sub(t0).saturating_sub(overhead);
        samples.push(work / k64 + u64::from(work % k64 >= k64.div_ceil(2)));
    }
    samples.stats(0)
}

/// One lock hand-off's time, on one time line: the acquirer asked for the lock at `asked`,
/// got it at `acquired`, and the previous holder (`last`, not `me`; `released_at` 0: none
/// yet) released it at `released_at`. `None` unless the acquirer was already waiting when
/// the lock was released (`asked <= released_at`): an acquirer that came later (a late
/// start, a vCPU the host descheduled) would count its own absence as hand-off time.
pub fn handoff(asked: i64, acquired: i64, released_at: i64, last: u32, me: u32) -> Option<u64> {
    (last != me && released_at != 0 && asked <= released_at)
        .then(|| acquired.saturating_sub(released_at).max(0) as u64)
}

#[cfg(test)]
mod handoff_tests {
    use super::handoff;

    #[test]
    fn only_an_acquirer_waiting_at_the_release_counts() {
        // Waiting since 100, released at 150, acquired at 170: 20 ticks.
        assert_eq!(handoff(100, 170, 150, 1, 2), Some(20));
        // Asked exactly at the release.
        assert_eq!(handoff(150, 170, 150, 1, 2), Some(20));
        // Asked after the release (came late, or its vCPU was away): not a hand-off.
        assert_eq!(handoff(160, 170, 150, 1, 2), None);
        // The same CPU again, or the first acquisition of the round.
        assert_eq!(handoff(100, 170, 150, 2, 2), None);
        assert_eq!(handoff(100, 170, 0, 1, 2), None);
        // Clocks a little apart (offset error): never negative.
        assert_eq!(handoff(100, 140, 150, 1, 2), Some(0));
    }
}
