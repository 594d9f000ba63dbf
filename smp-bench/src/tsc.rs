//! TSC offsets between CPUs from timed exchanges (the kernel's boot measures them with
//! these), and one-way latencies between two CPUs from synchronised TSCs. Pure arithmetic:
//! no instruction of the CPU's, so user programs and host tools can link it.

/// One exchange of a cross-CPU offset probe: the reference CPU reads `t1`, the other CPU
/// answers with its own read `t2`, the reference reads `t3` when the answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSample {
    /// Reference CPU, before sending.
    pub t1: u64,
    /// Remote CPU, on receipt.
    pub t2: u64,
    /// Reference CPU, on the answer.
    pub t3: u64,
}

/// Estimated offset of a CPU's TSC to the reference CPU: `remote = reference + offset`,
/// true offset within `offset ± uncertainty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TscOffset {
    /// Remote minus reference, in ticks.
    pub offset: i64,
    /// Half the round trip of the best exchange, in ticks.
    pub uncertainty: u64,
}

impl TscOffset {
    /// The reference (boot) CPU itself: offset 0, exact.
    pub const BOOT: TscOffset = TscOffset {
        offset: 0,
        uncertainty: 0,
    };

    /// Offset from one exchange (Cristian's algorithm): the reference reads `t0`, the remote
    /// CPU answers with its TSC `t_remote`, the reference reads `t2` on receipt. The remote
    /// read happened inside `[t0, t2]`, so the offset is `t_remote - (t0 + t2) / 2` within
    /// `± (t2 - t0) / 2` (rounded up). A negative round trip counts as 0.
    pub fn from_exchange(t0: u64, t_remote: u64, t2: u64) -> TscOffset {
        let rtt = t2.saturating_sub(t0);
        let mid = i128::from(t0) + i128::from(rtt / 2);
        let off =
            (i128::from(t_remote) - mid).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        TscOffset {
            offset: off,
            uncertainty: rtt.div_ceil(2),
        }
    }

    /// `tsc` read on the CPU with this offset, expressed on the reference CPU's time line.
    pub fn to_boot(self, tsc: u64) -> i128 {
        i128::from(tsc) - i128::from(self.offset)
    }
}

impl SyncSample {
    /// The offset this exchange implies (see [`TscOffset::from_exchange`]); `None` if
    /// `t3 < t1` (a broken sample).
    pub fn offset(&self) -> Option<TscOffset> {
        (self.t3 >= self.t1).then(|| TscOffset::from_exchange(self.t1, self.t2, self.t3))
    }
}

/// Best estimate over many exchanges: the intersection of every sample's interval, which is
/// never wider than the tightest single sample. Returns `None` for no valid sample, and flags
/// an empty intersection (inconsistent samples: a TSC that moved during the probe) by falling
/// back to the tightest sample with its own bound.
pub fn estimate_offset(samples: &[SyncSample]) -> Option<TscOffset> {
    let mut lo = i128::MIN;
    let mut hi = i128::MAX;
    let mut best: Option<TscOffset> = None;
    for s in samples {
        let Some(o) = s.offset() else { continue };
        lo = lo.max(s.t2 as i128 - s.t3 as i128);
        hi = hi.min(s.t2 as i128 - s.t1 as i128);
        if best.is_none_or(|b| o.uncertainty < b.uncertainty) {
            best = Some(o);
        }
    }
    let best = best?;
    if lo > hi {
        return Some(best);
    }
    let mid = lo + (hi - lo) / 2;
    let half = ((hi - lo) as u128).div_ceil(2) as u64;
    Some(TscOffset {
        offset: mid.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        uncertainty: half,
    })
}

/// A one-way latency with its error bound: the true value lies in
/// `[ticks − error, ticks + error]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OneWay {
    /// `(t_r − o_b) − (t_s − o_a)`; may be negative when the error bound exceeds the latency.
    pub ticks: i64,
    /// `u_a + u_b` (saturating).
    pub error: u64,
}

impl OneWay {
    /// The latency as a sample for a `c2c.oneway.<a>.<b>` row: negative values become 0.
    pub fn clamped(self) -> u64 {
        self.ticks.max(0) as u64
    }

    /// Smallest value consistent with the error bound.
    pub fn lower(self) -> i128 {
        i128::from(self.ticks) - i128::from(self.error)
    }

    /// Largest value consistent with the error bound.
    pub fn upper(self) -> i128 {
        i128::from(self.ticks) + i128::from(self.error)
    }
}

/// One-way latency of a message sent at TSC `t_send` on CPU a (offset `a`) and seen at TSC
/// `t_recv` on CPU b (offset `b`): `(t_recv − o_b) − (t_send − o_a)` computed in `i128`
/// (saturated to `i64`), with error bound `u_a + u_b`.
pub fn one_way_latency(t_send: u64, a: TscOffset, t_recv: u64, b: TscOffset) -> OneWay {
    OneWay {
        ticks: clamp_i64(b.to_boot(t_recv) - a.to_boot(t_send)),
        error: a.uncertainty.saturating_add(b.uncertainty),
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sample_offset_and_bound() {
        // Remote is ahead by 1000; the message takes 50 each way.
        let s = SyncSample {
            t1: 10_000,
            t2: 10_000 + 50 + 1000,
            t3: 10_100,
        };
        let o = s.offset().unwrap();
        assert_eq!(
            o,
            TscOffset {
                offset: 1000,
                uncertainty: 50
            }
        );
        assert!(
            SyncSample {
                t1: 5,
                t2: 0,
                t3: 4
            }
            .offset()
            .is_none()
        );
    }

    #[test]
    fn negative_offset() {
        let s = SyncSample {
            t1: 1_000_000,
            t2: 999_000 + 40,
            t3: 1_000_080,
        };
        let o = s.offset().unwrap();
        assert_eq!(o.offset, -1000);
        assert_eq!(o.uncertainty, 40);
    }

    #[test]
    fn intersection_is_tighter_than_any_sample_and_contains_truth() {
        let truth: i64 = -12_345;
        // Asymmetric delays: the intersection narrows around the truth.
        let mk = |t1: u64, d_out: u64, d_back: u64| SyncSample {
            t1,
            t2: (t1 as i64 + d_out as i64 + truth) as u64,
            t3: t1 + d_out + d_back,
        };
        let samples = [
            mk(100_000, 10, 90),
            mk(200_000, 80, 20),
            mk(300_000, 30, 30),
        ];
        let est = estimate_offset(&samples).unwrap();
        let tightest = samples
            .iter()
            .filter_map(|s| s.offset())
            .map(|o| o.uncertainty)
            .min()
            .unwrap();
        assert!(est.uncertainty <= tightest);
        assert!((est.offset - truth).unsigned_abs() <= est.uncertainty);
    }

    #[test]
    fn inconsistent_samples_fall_back_to_tightest() {
        let a = SyncSample {
            t1: 0,
            t2: 1000,
            t3: 10,
        };
        let b = SyncSample {
            t1: 100,
            t2: 0,
            t3: 120,
        };
        let est = estimate_offset(&[a, b]).unwrap();
        assert_eq!(
            est,
            a.offset().unwrap(),
            "a has the tighter bound (5 vs 10)"
        );
        assert!(estimate_offset(&[]).is_none());
    }
}
