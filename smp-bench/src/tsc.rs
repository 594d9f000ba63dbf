//! One-way latency between two CPUs from synchronised TSCs.

/// The TSC of one CPU relative to the boot CPU's: `tsc_cpu − tsc_boot` at the same instant,
/// known to within ± `uncertainty` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TscOffset {
    /// `tsc_cpu − tsc_boot` (signed: either may be ahead).
    pub offset: i64,
    /// Half-width of the interval the true offset lies in.
    pub uncertainty: u64,
}

impl TscOffset {
    /// The boot CPU itself: offset 0, exact.
    pub const BOOT: TscOffset = TscOffset {
        offset: 0,
        uncertainty: 0,
    };

    /// Offset from one request/response exchange (Cristian's algorithm): the boot CPU reads
    /// `t0`, the remote CPU answers with its TSC `t_remote`, the boot CPU reads `t2` on
    /// receipt. The remote read happened inside `[t0, t2]`, so the offset is
    /// `t_remote − (t0 + t2) / 2` within ± `(t2 − t0) / 2` (rounded up).
    /// Take the exchange with the smallest `t2 − t0` out of many.
    pub fn from_exchange(t0: u64, t_remote: u64, t2: u64) -> TscOffset {
        let rtt = t2.saturating_sub(t0);
        let mid = i128::from(t0) + i128::from(rtt / 2);
        TscOffset {
            offset: clamp_i64(i128::from(t_remote) - mid),
            uncertainty: rtt.div_ceil(2),
        }
    }

    /// `tsc` read on this CPU, expressed on the boot CPU's time line.
    pub fn to_boot(self, tsc: u64) -> i128 {
        i128::from(tsc) - i128::from(self.offset)
    }
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
