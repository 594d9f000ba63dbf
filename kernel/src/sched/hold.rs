//! Test support: [`HoldPoint`], a fault-injection switch that stops a call at a chosen
//! place until a test has done what it wants done in that window (used by the scheduler's
//! own races and by the layers above).

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Test support (a fault-injection switch): a place where a call stops, while the switch is
/// on, until a test has done what it wants done in that window ([`HoldPoint::wait`]).
pub struct HoldPoint {
    hold: AtomicBool,
    held: AtomicBool,
    /// Calls still to let pass before one is held ([`HoldPoint::arm_after`]).
    skip: AtomicU32,
}

impl Default for HoldPoint {
    fn default() -> Self {
        Self::new()
    }
}

impl HoldPoint {
    /// Off.
    pub const fn new() -> HoldPoint {
        HoldPoint {
            hold: AtomicBool::new(false),
            held: AtomicBool::new(false),
            skip: AtomicU32::new(0),
        }
    }

    /// Stops the next call that passes here (until [`HoldPoint::release`]).
    pub fn arm(&self) {
        self.arm_after(0);
    }

    /// Lets the next `n` calls pass, then stops the one after them (until
    /// [`HoldPoint::release`]): the `n + 1`-th call, where releasing each and arming again
    /// could miss calls that come fast (a caller that passes again before the test arms).
    pub fn arm_after(&self, n: u32) {
        self.skip.store(n, Ordering::Release);
        self.hold.store(true, Ordering::Release);
    }

    /// Lets the held call go on (and any later one pass), and returns once it has left the
    /// hold (at most 30 s; the caller yields meanwhile), so the switch can be armed again at
    /// once for the next call. Until 2026-12-05 it returned at once: a test that re-armed
    /// right away kept the call it had just released held (it saw the switch on again) for
    /// the whole 30 s, and that call's `held` made the next one pass unheld
    /// (`sched.hold_point_rearmed_at_once_holds_only_the_next_call`).
    pub fn release(&self) {
        self.hold.store(false, Ordering::Release);
        self.skip.store(0, Ordering::Release);
        let d = crate::smp::time::Deadline::after_ms(30_000);
        while self.held.load(Ordering::Acquire) && !d.passed() {
            super::yield_now();
        }
    }

    /// Whether a call waits here now.
    pub fn reached(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The hold itself: one relaxed load when off.
    #[inline(always)]
    pub fn pass(&self) {
        if self.hold.load(Ordering::Relaxed) {
            self.wait();
        }
    }

    /// Says so in `held` and waits (at most 30 s) until released. One call at a time: the
    /// others pass (the test's own calls in the window, e.g. a second `wait`).
    #[cold]
    fn wait(&self) {
        if self
            .skip
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return;
        }
        if self
            .held
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let d = crate::smp::time::Deadline::after_ms(30_000);
        while self.hold.load(Ordering::Acquire) && !d.passed() {
            super::yield_now();
        }
        self.held.store(false, Ordering::Release);
    }
}
