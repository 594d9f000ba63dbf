//! Timing loops against fake clocks, whose expected results are exact.

use std::cell::Cell;

use smp_bench::{
    Clock, OVERHEAD_PAIRS, Samples, Stats, bench, bench_batched, bench_with, measure_overhead,
};

/// A clock that advances by `step` on every read; work advances it through `t`.
fn step_clock(t: &Cell<u64>, step: u64) -> impl FnMut() -> u64 + '_ {
    move || {
        let v = t.get();
        t.set(v + step);
        v
    }
}

#[test]
fn overhead_is_the_minimum_pair() {
    let t = Cell::new(0);
    assert_eq!(measure_overhead(&mut step_clock(&t, 7), 10), 7);

    // Pairs cost 12, 9 and 30: the minimum is 9.
    let reads = [0u64, 12, 100, 109, 200, 230];
    let mut i = 0;
    let mut clock = || {
        i += 1;
        reads[i - 1]
    };
    assert_eq!(measure_overhead(&mut clock, 3), 9);
    assert_eq!(i, 6, "n pairs = 2n reads");
}

#[test]
fn overhead_of_zero_pairs_still_measures_one() {
    let t = Cell::new(0);
    assert_eq!(measure_overhead(&mut step_clock(&t, 4), 0), 4);
}

#[test]
fn bench_subtracts_overhead_exactly() {
    let t = Cell::new(1000);
    let work = [5u64, 1, 9, 3, 7];
    let calls = Cell::new(0usize);
    let mut clock = step_clock(&t, 10);
    let mut samples = Samples::<16>::new();
    let s = bench(&mut clock, &mut samples, 3, work.len(), || {
        let i = calls.get();
        calls.set(i + 1);
        // Warm-up calls are not timed and cost nothing here.
        if i >= 3 {
            t.set(t.get() + work[i - 3]);
        }
    })
    .unwrap();
    assert_eq!(calls.get(), 3 + work.len());
    assert_eq!(
        s,
        Stats {
            n: 5,
            mean: 5,
            min: 1,
            max: 9,
            p50: 5,
            p95: 9,
            p99: 9
        }
    );
    assert_eq!(samples.len(), 5);
}

#[test]
fn bench_reads_the_clock_the_expected_number_of_times() {
    let reads = Cell::new(0usize);
    let mut clock = || {
        reads.set(reads.get() + 1);
        reads.get() as u64
    };
    let mut samples = Samples::<8>::new();
    let s = bench(&mut clock, &mut samples, 0, 8, || ()).unwrap();
    assert_eq!(reads.get(), 2 * OVERHEAD_PAIRS + 2 * 8);
    assert_eq!(s.max, 0, "empty body costs exactly the overhead");
}

#[test]
fn bench_clamps_n_to_capacity_and_handles_zero() {
    let t = Cell::new(0);
    let mut clock = step_clock(&t, 2);
    let mut samples = Samples::<4>::new();
    assert_eq!(bench(&mut clock, &mut samples, 0, 100, || ()).unwrap().n, 4);
    assert_eq!(bench(&mut clock, &mut samples, 0, 0, || ()), None);
    assert!(samples.is_empty(), "buffer cleared before sampling");
}

#[test]
fn batched_divides_by_k() {
    let t = Cell::new(0);
    let mut clock = step_clock(&t, 10);
    let mut samples = Samples::<8>::new();
    // Each call costs 3; 4 calls per sample: (10 + 12 - 10) / 4 = 3.
    let s = bench_batched(&mut clock, &mut samples, 2, 8, 4, || t.set(t.get() + 3)).unwrap();
    assert_eq!((s.n, s.min, s.max, s.mean, s.p50), (8, 3, 3, 3, 3));
}

#[test]
fn batched_rounds_to_nearest() {
    // Pair costs 10, body 4 × 3 = 12: elapsed 22.
    for (overhead, expect) in [(4, 5), (5, 4), (3, 5), (2, 5), (6, 4)] {
        // 18/4 = 4.5 -> 5; 17/4 = 4.25 -> 4; 19/4 = 4.75 -> 5; 20/4 = 5; 16/4 = 4.
        let t = Cell::new(0);
        let mut clock = step_clock(&t, 10);
        let mut samples = Samples::<2>::new();
        let s = bench_with(&mut clock, &mut samples, overhead, 0, 2, 4, || {
            t.set(t.get() + 3)
        })
        .unwrap();
        assert_eq!(s.p50, expect, "overhead {overhead}");
    }
}

#[test]
fn batched_k_zero_is_none() {
    let t = Cell::new(0);
    let mut clock = step_clock(&t, 1);
    let mut samples = Samples::<2>::new();
    assert_eq!(
        bench_batched(&mut clock, &mut samples, 0, 2, 0, || ()),
        None
    );
}

#[test]
fn clock_going_backwards_saturates() {
    let mut now = 1_000_000u64;
    let mut clock = move || {
        now -= 5;
        now
    };
    let mut samples = Samples::<4>::new();
    let s = bench_with(&mut clock, &mut samples, 0, 0, 4, 1, || ()).unwrap();
    assert_eq!(s.max, 0);
}

#[test]
fn dyn_clock_works() {
    struct Fixed(u64);
    impl Clock for Fixed {
        fn now(&mut self) -> u64 {
            self.0 += 3;
            self.0
        }
    }
    let clock: &mut dyn Clock = &mut Fixed(0);
    assert_eq!(measure_overhead(clock, 5), 3);
}
