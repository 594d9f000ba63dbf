//! Percentiles, overhead subtraction and the sample buffer.

use proptest::prelude::*;
use smp_bench::{Samples, Stats, nearest_rank_index, stats_of};

/// Reference: full sort, nearest rank, per-sample saturating subtraction.
fn reference(samples: &[u64], overhead: u64) -> Stats {
    let mut v: Vec<u64> = samples.iter().map(|s| s.saturating_sub(overhead)).collect();
    v.sort_unstable();
    let n = v.len();
    let pct = |p: u64| {
        let rank = (p as usize * n).div_ceil(100).max(1);
        v[rank - 1]
    };
    Stats {
        n: n as u64,
        mean: (v.iter().map(|&x| u128::from(x)).sum::<u128>() / n as u128) as u64,
        min: v[0],
        max: v[n - 1],
        p50: pct(50),
        p95: pct(95),
        p99: pct(99),
    }
}

#[test]
fn nearest_rank_indices() {
    assert_eq!(nearest_rank_index(1, 50), 0);
    assert_eq!(nearest_rank_index(1, 99), 0);
    assert_eq!(nearest_rank_index(4, 50), 1, "lower median");
    assert_eq!(nearest_rank_index(5, 50), 2);
    assert_eq!(
        nearest_rank_index(10, 99),
        9,
        "p99 of <100 samples is the max"
    );
    assert_eq!(nearest_rank_index(100, 50), 49);
    assert_eq!(nearest_rank_index(100, 95), 94);
    assert_eq!(nearest_rank_index(100, 99), 98);
    assert_eq!(nearest_rank_index(200, 99), 197);
    assert_eq!(nearest_rank_index(1000, 100), 999);
}

#[test]
fn known_data() {
    let mut v = [5, 1, 4, 2, 3];
    let s = stats_of(&mut v, 0).unwrap();
    assert_eq!(
        s,
        Stats {
            n: 5,
            mean: 3,
            min: 1,
            max: 5,
            p50: 3,
            p95: 5,
            p99: 5
        }
    );
    // 1..=100 shuffled: p50 = 50, p95 = 95, p99 = 99.
    let mut v: Vec<u64> = (1..=100).map(|i| (i * 37) % 101).collect();
    let s = stats_of(&mut v, 0).unwrap();
    assert_eq!((s.min, s.p50, s.p95, s.p99, s.max), (1, 50, 95, 99, 100));
    assert_eq!(s.mean, 50, "5050 / 100 = 50.5, floored");
}

#[test]
fn overhead_subtracted_with_saturation() {
    let mut v = [10, 20, 30];
    let s = stats_of(&mut v, 15).unwrap();
    assert_eq!((s.min, s.p50, s.max), (0, 5, 15));
    assert_eq!(s.mean, 6, "(0 + 5 + 15) / 3, not (60 - 45) / 3");
    assert_eq!(s, reference(&[10, 20, 30], 15));
}

#[test]
fn mean_does_not_overflow() {
    let mut v = [u64::MAX, u64::MAX, u64::MAX - 2];
    assert_eq!(stats_of(&mut v, 0).unwrap().mean, u64::MAX - 1);
}

#[test]
fn empty_is_none() {
    assert_eq!(stats_of(&mut [], 0), None);
    assert_eq!(Samples::<4>::new().stats(0), None);
}

#[test]
fn samples_buffer() {
    let mut s = Samples::<3>::new();
    assert!(s.is_empty() && !s.is_full());
    assert_eq!(s.capacity(), 3);
    assert!(s.push(7) && s.push(3) && s.push(5));
    assert!(!s.push(9), "full buffer drops");
    assert_eq!(s.as_slice(), &[7, 3, 5]);
    assert!(s.is_full());
    assert_eq!(s.len(), 3);
    let st = s.stats(1).unwrap();
    assert_eq!((st.n, st.min, st.p50, st.max), (3, 2, 4, 6));
    s.clear();
    assert!(s.is_empty());
    assert_eq!(format!("{s:?}"), "Samples { len: 0, capacity: 3 }");
}

proptest! {
    #[test]
    fn matches_full_sort(v in prop::collection::vec(any::<u64>(), 1..400), overhead in any::<u64>()) {
        let expect = reference(&v, overhead);
        let mut w = v.clone();
        prop_assert_eq!(stats_of(&mut w, overhead), Some(expect));
        prop_assert!(expect.is_consistent());
    }

    #[test]
    fn matches_full_sort_with_ties(v in prop::collection::vec(0u64..8, 1..300), overhead in 0u64..4) {
        let expect = reference(&v, overhead);
        let mut s = Samples::<300>::new();
        for &x in &v {
            prop_assert!(s.push(x));
        }
        prop_assert_eq!(s.stats(overhead), Some(expect));
    }
}
