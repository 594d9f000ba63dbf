//! Test-and-test-and-set spin lock with bounded exponential backoff.

use core::fmt;

use crate::RawLock;
use crate::backoff::Backoff;
use crate::sync::{AtomicBool, Ordering, const_fn_unless_loom};

/// Test-and-test-and-set lock: one `bool`, bounded exponential backoff.
///
/// * **Uncontended cost**: one locked RMW (`lock cmpxchg`) to acquire, one
///   plain `Release` store (`mov`) to release.
/// * **Waiting**: a waiter polls the flag with plain loads (it spins in its
///   own cache, without writing) and only retries the `cmpxchg` once the
///   lock looks free. Between two polls it backs off `1, 2, 4, …, MAX_BACKOFF`
///   `pause` instructions, which spreads the retries of many waiters after a
///   release (fewer failed RMWs fighting for the line). The cap bounds the
///   extra latency between a release and a waiter noticing it.
/// * **Fairness**: none. Whoever's `cmpxchg` lands first wins; a CPU that
///   releases and immediately re-acquires (its cache still owns the line)
///   can starve the others. Use [`TicketLock`](crate::TicketLock) or
///   [`McsLock`](crate::McsLock) when bounded waiting matters.
///
/// `MAX_BACKOFF` (at least 1, checked at compile time) defaults to
/// [`DEFAULT_MAX_BACKOFF`](crate::DEFAULT_MAX_BACKOFF).
pub struct TasLock<const MAX_BACKOFF: u32 = { crate::DEFAULT_MAX_BACKOFF }> {
    locked: AtomicBool,
}

impl<const MAX_BACKOFF: u32> TasLock<MAX_BACKOFF> {
    const_fn_unless_loom! {
        /// An unlocked lock.
        #[must_use]
        pub fn new() -> Self {
            Self { locked: AtomicBool::new(false) }
        }
    }

    /// The one locked RMW of an acquisition: `lock cmpxchg false → true`.
    /// A failed `compare_exchange` writes nothing (unlike `swap`, which
    /// would store `true` again), so it never races with the holder's
    /// releasing store.
    #[inline(always)]
    fn try_acquire(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Polls (without writing) with backoff until the lock looks free, then
    /// retries the `xchg`. Returns `false` if the deadline passed first.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self, deadline_passed: &mut impl FnMut() -> bool) -> bool {
        let mut backoff = Backoff::<MAX_BACKOFF>::new();
        loop {
            if !self.locked.load(Ordering::Relaxed) && self.try_acquire() {
                return true;
            }
            if deadline_passed() {
                return false;
            }
            backoff.snooze();
        }
    }
}

impl<const MAX_BACKOFF: u32> Default for TasLock<MAX_BACKOFF> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const MAX_BACKOFF: u32> fmt::Debug for TasLock<MAX_BACKOFF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TasLock")
            .field("locked", &self.is_locked())
            .field("max_backoff", &MAX_BACKOFF)
            .finish()
    }
}

// SAFETY: `locked` is `true` exactly while some token is outstanding: it is
// set by a successful `compare_exchange(false, true, Acquire)` (which
// observed `false`, so no other holder exists) and cleared only by `unlock`
// with a `Release` store, which the next successful `compare_exchange` reads
// from.
unsafe impl<const MAX_BACKOFF: u32> RawLock for TasLock<MAX_BACKOFF> {
    type Token = ();

    #[cfg(not(all(loom, test)))]
    const INIT: Self = Self::new();

    #[cfg(all(loom, test))]
    fn init() -> Self {
        Self::new()
    }

    #[inline]
    fn lock(&self) {
        // Fast path: one `lock cmpxchg`, no preceding load (that would only
        // fetch the line shared before the RMW needs it exclusive).
        if !self.try_acquire() {
            self.lock_contended(&mut || false);
        }
    }

    #[inline]
    fn try_lock(&self) -> Option<()> {
        self.try_acquire().then_some(())
    }

    #[inline]
    fn lock_with_deadline(&self, mut deadline_passed: impl FnMut() -> bool) -> Option<()> {
        (self.try_acquire() || self.lock_contended(&mut deadline_passed)).then_some(())
    }

    #[inline]
    unsafe fn unlock(&self, (): ()) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}
