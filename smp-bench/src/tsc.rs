//! One-way latency between two CPUs from synchronised TSCs.

/// The TSC of one CPU relative to the boot CPU's, `± uncertainty`: the one definition lives
/// in `exo-arch` (which measures it at boot); this crate computes with it.
pub use exo_arch::tsc::TscOffset;

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
