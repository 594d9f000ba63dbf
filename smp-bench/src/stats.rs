//! Summary statistics by selection (no full sort) with the nearest-rank percentile rule.

/// Summary of one benchmark, in ticks, with the timing-pair overhead already subtracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Number of samples.
    pub n: u64,
    /// Arithmetic mean (floor), accumulated in `u128`.
    pub mean: u64,
    /// Smallest sample.
    pub min: u64,
    /// Largest sample.
    pub max: u64,
    /// Median (nearest rank, see [`nearest_rank_index`]).
    pub p50: u64,
    /// 95th percentile (nearest rank).
    pub p95: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
}

impl Stats {
    /// The statistics of one sample `v` (a rate or a count measured once).
    pub const fn one(v: u64) -> Stats {
        Stats {
            n: 1,
            mean: v,
            min: v,
            max: v,
            p50: v,
            p95: v,
            p99: v,
        }
    }

    /// `true` when the fields can come from one sample set: `n ≥ 1`,
    /// `min ≤ p50 ≤ p95 ≤ p99 ≤ max` and `min ≤ mean ≤ max`. Parsers use it to reject
    /// corrupted lines.
    pub fn is_consistent(&self) -> bool {
        self.n >= 1
            && self.min <= self.p50
            && self.p50 <= self.p95
            && self.p95 <= self.p99
            && self.p99 <= self.max
            && (self.min..=self.max).contains(&self.mean)
    }
}

/// Zero-based index of the `p`-th percentile among `n` sorted samples, nearest-rank rule:
/// rank = ⌈p·n/100⌉ clamped to `1..=n`, index = rank − 1.
///
/// So p50 of 4 samples is the 2nd smallest (the lower median), p99 of 100 samples is the 99th
/// and p99 of fewer than 100 samples is the maximum. `n` must be at least 1.
pub fn nearest_rank_index(n: usize, p: u32) -> usize {
    let rank = (n as u128 * u128::from(p)).div_ceil(100);
    (rank.clamp(1, n.max(1) as u128) - 1) as usize
}

/// Statistics of `samples` with `overhead` subtracted from each (saturating at 0); `None`
/// when empty. The slice is reordered: the percentiles are found with
/// `select_nth_unstable`, each selection working on the part left above the previous one.
pub fn stats_of(samples: &mut [u64], overhead: u64) -> Option<Stats> {
    let n = samples.len();
    if n == 0 {
        return None;
    }
    let (mut sum, mut min, mut max) = (0u128, u64::MAX, 0u64);
    for &s in samples.iter() {
        let v = s.saturating_sub(overhead);
        sum += u128::from(v);
        min = min.min(v);
        max = max.max(v);
    }
    // Subtraction is monotone, so the order statistics of the corrected samples are the
    // corrected order statistics of the raw ones.
    let idx = [50, 95, 99].map(|p| nearest_rank_index(n, p));
    let [p50, p95, p99] = select_ascending(samples, idx).map(|v| v.saturating_sub(overhead));
    Some(Stats {
        n: n as u64,
        mean: (sum / n as u128) as u64,
        min,
        max,
        p50,
        p95,
        p99,
    })
}

/// The values at sorted positions `idx` (non-decreasing, all `< v.len()`).
fn select_ascending<const K: usize>(v: &mut [u64], idx: [usize; K]) -> [u64; K] {
    let mut out = [0; K];
    // Everything at and after `base` is >= every element placed before it.
    let mut base = 0;
    for (o, &i) in out.iter_mut().zip(idx.iter()) {
        if i >= base {
            v[base..].select_nth_unstable(i - base);
            base = i + 1;
        }
        *o = v[i];
    }
    out
}
