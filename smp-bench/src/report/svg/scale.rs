//! Axis scales and tick placement.

/// A value axis mapped to pixels.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Axis {
    /// Domain start.
    pub lo: f64,
    /// Domain end.
    pub hi: f64,
    /// Logarithmic (base 10) instead of linear.
    pub log: bool,
    /// Tick values.
    pub ticks: Vec<f64>,
}

impl Axis {
    /// Linear axis from 0 to a "nice" value ≥ `max`, about 5 ticks.
    pub(super) fn linear_from_zero(max: f64) -> Axis {
        let step = nice_step(max.max(1.0) / 5.0);
        let hi = (max / step).ceil().max(1.0) * step;
        let n = (hi / step).round() as usize;
        Axis {
            lo: 0.0,
            hi,
            log: false,
            ticks: (0..=n).map(|i| i as f64 * step).collect(),
        }
    }

    /// Log axis covering `[min, max]` (both > 0), bounded and ticked at 1-2-5 × 10^k.
    pub(super) fn log(min: f64, max: f64) -> Axis {
        let mut ladder = Vec::new();
        let mut decade = 10f64.powf(min.log10().floor());
        while ladder.last().is_none_or(|&v| v < max) {
            ladder.extend([1.0, 2.0, 5.0].map(|m| decade * m));
            decade *= 10.0;
        }
        let lo = ladder
            .iter()
            .copied()
            .rfind(|&v| v <= min)
            .unwrap_or(ladder[0]);
        let hi = ladder.iter().copied().find(|&v| v >= max).unwrap_or(decade);
        Axis {
            lo,
            hi,
            log: true,
            ticks: ladder.into_iter().filter(|&v| v >= lo && v <= hi).collect(),
        }
    }

    /// Linear or log, whichever suits values spanning `[min, max]`: log when the largest is
    /// more than 30 times the smallest, so slow and fast locks both stay readable.
    pub(super) fn auto(min: f64, max: f64) -> Axis {
        if min > 0.0 && max / min > 30.0 {
            Axis::log(min, max)
        } else {
            Axis::linear_from_zero(max)
        }
    }

    /// Position of `v` in `[0, 1]` along the axis.
    pub(super) fn frac(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// 1, 2, 2.5 or 5 × 10^k, the smallest not below `raw`.
pub(super) fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= raw * 0.999)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.9), 1.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(2.2), 2.5);
        assert_eq!(nice_step(380.0), 500.0);
        assert_eq!(nice_step(600.0), 1000.0);
    }

    #[test]
    fn linear_axis_covers_max() {
        let a = Axis::linear_from_zero(1234.0);
        assert_eq!((a.lo, a.hi), (0.0, 1250.0));
        assert_eq!(a.ticks, [0.0, 250.0, 500.0, 750.0, 1000.0, 1250.0]);
        assert!((a.frac(625.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn log_axis_is_tight_1_2_5() {
        let a = Axis::log(380.0, 19_000.0);
        assert_eq!((a.lo, a.hi), (200.0, 20_000.0));
        assert_eq!(
            a.ticks,
            [200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0]
        );
        assert!(a.frac(200.0).abs() < 1e-9 && (a.frac(20_000.0) - 1.0).abs() < 1e-9);
        assert!(Axis::auto(100.0, 90_000.0).log);
        assert!(!Axis::auto(100.0, 2000.0).log);
    }
}
