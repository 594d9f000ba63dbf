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
        samples.push(per_call(work, k64));
    }
    samples.stats(0)
}

/// The per-call cost of `k` calls that took `work` ticks together (timing pair already
/// subtracted): `work / k` rounded to nearest (a half rounds up), 0 when `k == 0`.
///
/// Every batched row divides through this (since 2026-12-05: until then the hand-written
/// batched loops of the kernel and the native suite truncated, low by up to a tick, while
/// [`bench_with`] rounded; and `ctx.switch`'s halving floored in the kernel but rounded up
/// on the Linux peer). For `k == 2` it is `work.div_ceil(2)`, the halving of the round
/// trips.
pub const fn per_call(work: u64, k: u64) -> u64 {
    if k == 0 {
        return 0;
    }
    work / k + (work % k >= k.div_ceil(2)) as u64
}

/// The cost of one of `k` calls timed together from `t0` to `t1` (two reads of one clock),
/// the timing pair's `overhead` taken off first: [`per_call`] of the span (0 for a clock that
/// went back).
pub const fn per_call_between(t0: u64, t1: u64, overhead: u64, k: u64) -> u64 {
    per_call(t1.saturating_sub(t0).saturating_sub(overhead), k)
}

/// Times one call of `f` between two clock reads: the elapsed ticks minus `overhead` (the
/// timing pair's cost, saturating), and what `f` returned. `f` receives the first read, the
/// start timestamp (e.g. to publish it with a ping).
pub fn time_once<C, F, R>(clock: &mut C, overhead: u64, f: F) -> (u64, R)
where
    C: Clock + ?Sized,
    F: FnOnce(u64) -> R,
{
    let t0 = clock.now();
    let r = f(t0);
    let t1 = clock.now();
    (t1.saturating_sub(t0).saturating_sub(overhead), r)
}

#[cfg(test)]
mod per_call_tests {
    use super::{measure_overhead, per_call, per_call_between, time_once};
    use core::cell::Cell;
    use proptest::prelude::*;

    proptest! {
        /// Rounded to nearest: never more than half a call away from the exact share.
        #[test]
        fn per_call_is_within_half_a_call(w in 0u64..u64::MAX / 2, k in 1u64..100_000) {
            let total = u128::from(per_call(w, k)) * u128::from(k);
            prop_assert!(total.abs_diff(u128::from(w)) <= u128::from(k / 2));
        }
    }

    #[test]
    fn per_call_rounds_like_the_halving_of_round_trips() {
        assert_eq!(per_call(199, 16), 12); // 12.44
        assert_eq!(per_call(200, 16), 13); // 12.5: a half rounds up
        assert_eq!(per_call(7, 2), 7u64.div_ceil(2));
        assert_eq!(per_call(5, 0), 0);
        assert_eq!(per_call_between(100, 305, 5, 16), 13);
        assert_eq!(per_call_between(305, 100, 5, 16), 0);
    }

    /// A clock whose every read costs 10 ticks: the timing pair's cost measured and
    /// subtracted leaves exactly the body's cost.
    #[test]
    fn time_once_subtracts_the_pair() {
        let t = Cell::new(0u64);
        let mut clock = || {
            t.set(t.get() + 10);
            t.get()
        };
        let overhead = measure_overhead(&mut clock, 8);
        assert_eq!(overhead, 10);
        let (dt, start) = time_once(&mut clock, overhead, |t0| {
            t.set(t.get() + 37); // the body
            t0
        });
        assert_eq!(dt, 37);
        assert_eq!(start, 170); // 8 pairs (16 reads), then the first read
    }
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
