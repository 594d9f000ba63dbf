//! Bounded exponential backoff for the test-and-set lock.

use crate::sync::spin_loop;

/// Default cap, in `pause` instructions, of [`TasLock`](crate::TasLock)'s
/// exponential backoff between two polls of a held lock.
///
/// A `pause` costs about 10 cycles on older x86 cores and about 140 on
/// Skylake and later, so 64 bounds one backoff round to roughly 1–9 k cycles
/// (under 3 µs at 3 GHz): long enough to take the pressure off the lock's
/// cache line when many CPUs wait, short enough that a released lock is
/// noticed quickly (and that a deadline is polled often).
pub const DEFAULT_MAX_BACKOFF: u32 = 64;

/// Spins `1, 2, 4, …` up to `MAX` `pause` instructions per round.
#[derive(Debug)]
pub(crate) struct Backoff<const MAX: u32> {
    step: u32,
}

impl<const MAX: u32> Backoff<MAX> {
    pub(crate) const fn new() -> Self {
        const { assert!(MAX >= 1, "the backoff cap must be at least one spin") };
        Self { step: 1 }
    }

    /// One backoff round, then doubles the next round's length (up to `MAX`).
    #[inline]
    pub(crate) fn snooze(&mut self) {
        if cfg!(all(loom, test)) {
            // Under loom every spin is a scheduling point: one is enough.
            spin_loop();
            return;
        }
        for _ in 0..self.step {
            spin_loop();
        }
        self.step = self.step.saturating_mul(2).min(MAX);
    }
}
