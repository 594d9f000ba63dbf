//! Run-burst statistics and hot/normal classification.

/// Which queue of a [`RunQueue`](crate::RunQueue) a thread goes to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Queue {
    /// Short-burst threads (just woke, block often): served first, within a
    /// bounded share (see [`RunQueue`](crate::RunQueue)).
    Hot,
    /// Everyone else: strict priority, FIFO within a level.
    Normal,
}

/// Exponential moving average of a thread's run bursts, in integer math.
///
/// `avg' = avg + (sample - avg) / 8` (alpha = 1/8), kept in fixed point with
/// 3 fractional bits: the state `s = 8 * avg` is updated as
/// `s' = s - (s >> 3) + sample`, so no division and no precision lost to
/// truncating `(sample - avg) >> 3` when the difference is small. The unit is
/// whatever the caller measures bursts in (TSC cycles, ns, ticks).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Ema {
    /// `8 * average`.
    scaled: u64,
}

impl Ema {
    /// log2(1 / alpha).
    pub const SHIFT: u32 = 3;

    /// An average of zero: a new thread is classified [`Queue::Hot`] until it
    /// proves to run long bursts.
    pub const ZERO: Self = Self { scaled: 0 };

    /// Starts the average at `initial`.
    #[must_use]
    pub const fn new(initial: u64) -> Self {
        Self {
            scaled: initial.saturating_mul(1 << Self::SHIFT),
        }
    }

    /// The state as one word (`8 * average`, fractional bits included), for storage in an
    /// atomic; [`Ema::from_raw`] takes it back. Storing [`Ema::get`] instead and reloading it
    /// with [`Ema::new`] loses the fractional bits; storing `get() >> SHIFT` divides the
    /// average by 8 at every round trip.
    #[inline]
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.scaled
    }

    /// The average whose state [`Ema::raw`] returned.
    #[inline]
    #[must_use]
    pub const fn from_raw(scaled: u64) -> Self {
        Self { scaled }
    }

    /// Folds one run burst into the average and returns the new average.
    #[inline]
    pub fn update(&mut self, burst: u64) -> u64 {
        self.scaled = (self.scaled - (self.scaled >> Self::SHIFT)).saturating_add(burst);
        self.get()
    }

    /// The current average (rounded down).
    #[inline]
    #[must_use]
    pub const fn get(self) -> u64 {
        self.scaled >> Self::SHIFT
    }
}

/// A thread is hot when its average burst is below `slice >> HOT_BURST_SHIFT`
/// (a quarter of its time slice).
pub const HOT_BURST_SHIFT: u32 = 2;

/// Classifies a thread by its average run burst relative to its time slice:
/// [`Queue::Hot`] iff `ema.get() < slice >> HOT_BURST_SHIFT`, i.e. it
/// typically blocks (or yields) after using less than a quarter of its slice.
#[inline]
#[must_use]
pub const fn classify(ema: Ema, slice: u64) -> Queue {
    if ema.get() < slice >> HOT_BURST_SHIFT {
        Queue::Hot
    } else {
        Queue::Normal
    }
}

/// [`classify`]'s threshold for `slice` on the average's stored form ([`Ema::raw`]), for
/// [`classify_by`]: `get() < slice >> HOT_BURST_SHIFT` is `raw() < (slice >> HOT_BURST_SHIFT)
/// << SHIFT` (saturating: for slices above 2^61 the two differ at a stored average of
/// `u64::MAX` only).
#[inline]
#[must_use]
pub const fn hot_limit(slice: u64) -> u64 {
    (slice >> HOT_BURST_SHIFT).saturating_mul(1 << Ema::SHIFT)
}

/// [`classify`] with its threshold computed once ([`hot_limit`]): one comparison of the stored
/// average (the scheduler classifies at every switch; icount: the two shifts and the load of
/// the slice go).
#[inline]
#[must_use]
pub const fn classify_by(ema: Ema, limit: u64) -> Queue {
    if ema.scaled < limit {
        Queue::Hot
    } else {
        Queue::Normal
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ema_converges_with_alpha_one_eighth() {
        let mut e = Ema::ZERO;
        assert_eq!(e.update(800), 100); // 0 + 800/8
        assert_eq!(e.update(800), 187); // 100 + 700/8 = 187.5
        for _ in 0..200 {
            e.update(800);
        }
        assert_eq!(e.get(), 800); // the fixed point reaches the sample exactly
        let mut e = Ema::new(1000);
        assert_eq!(e.get(), 1000);
        assert_eq!(e.update(0), 875);
        // Saturates instead of overflowing.
        let mut e = Ema::new(u64::MAX);
        e.update(u64::MAX);
        assert!(e.get() > 0);
    }

    #[test]
    fn raw_round_trip_keeps_the_average() {
        // What the scheduler does at every switch: load, fold one burst, store.
        let mut stored = Ema::ZERO.raw();
        for _ in 0..200 {
            let mut e = Ema::from_raw(stored);
            e.update(800);
            stored = e.raw();
        }
        assert_eq!(Ema::from_raw(stored).get(), 800);
        assert_eq!(classify(Ema::from_raw(stored), 1000), Queue::Normal);
        let e = Ema::new(12345);
        assert_eq!(Ema::from_raw(e.raw()), e);
    }

    #[test]
    fn classify_quarter_slice() {
        assert_eq!(classify(Ema::ZERO, 1000), Queue::Hot);
        assert_eq!(classify(Ema::new(249), 1000), Queue::Hot);
        assert_eq!(classify(Ema::new(250), 1000), Queue::Normal);
        assert_eq!(classify(Ema::ZERO, 0), Queue::Normal);
        // A thread that starts hot becomes normal after enough long bursts.
        let mut e = Ema::ZERO;
        let mut n = 0;
        while classify(e, 1000) == Queue::Hot {
            e.update(1000);
            n += 1;
        }
        assert_eq!(n, 3); // averages 125, 234, 330 (>= 250)
    }

    proptest::proptest! {
        #[test]
        fn classify_by_is_classify(scaled in proptest::prelude::any::<u64>(), slice in 0u64..(1 << 61)) {
            let e = Ema::from_raw(scaled);
            proptest::prop_assert_eq!(classify_by(e, hot_limit(slice)), classify(e, slice));
        }

        #[test]
        fn classify_by_is_classify_near_the_limit(slice in 0u64..(1 << 40), d in 0u64..16) {
            let limit = hot_limit(slice);
            for scaled in [limit.saturating_sub(d), limit.saturating_add(d)] {
                let e = Ema::from_raw(scaled);
                proptest::prop_assert_eq!(classify_by(e, limit), classify(e, slice));
            }
        }
    }
}
