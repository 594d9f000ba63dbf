//! A blocking mutex: optimistic CAS, bounded spin with backoff, then a futex-like park.
//!
//! The lock word (the classic three-state futex mutex):
//! `0` unlocked, `1` locked, `2` locked and some thread may be parked.
//!
//! * **Fast path**: `lock` is one `compare_exchange(0, 1)`; `unlock` is one `swap(0)` that
//!   calls [`Park::unpark_one`] only if the old value was `2`. No other shared write.
//! * **Spin**: on contention, up to `spins` rounds of exponential backoff while the word is
//!   `1` (a holder, nobody parked): short critical sections hand over without a sleep.
//! * **Park**: the waiter swaps in `2` (so the holder's unlock will wake someone) and parks
//!   on the word's address *if the word is still `2`*, a check the [`Park`] implementation
//!   makes under its queue lock, atomically with respect to `unpark_one`: an unlock between
//!   the swap and the sleep makes the check fail, so no wake-up is lost.
//! * **Deadlines**: [`ParkingMutex::lock_with_deadline`] gives up with `None`. A waiter that
//!   times out may have been chosen by an `unpark_one` (the wake-up would then be lost for
//!   the others), so before giving up it swaps `2` in once more: either that acquires the
//!   lock (old value `0`) and it returns the guard after all, or a holder exists and that
//!   holder's unlock sees `2` and wakes another waiter.
//!
//! # Fairness
//! Not FIFO: a running thread may take the lock between an unlock and the moment the woken
//! waiter runs ("barging"). That is what makes the uncontended and lightly contended cases
//! fast, and a woken waiter that loses simply parks again; under a steady stream of
//! barging lockers one waiter can starve. The wait queue itself is FIFO when the `Park`
//! implementation's is (the kernel's is), so waiters are woken in arrival order. Who needs
//! strict FIFO hand-over takes `TicketLock` or `McsLock` (spinning) instead.

use crate::backoff::Backoff;
use crate::sync::{AtomicU32, Ordering};
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

/// What [`Park::park`] observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkResult {
    /// Woken by [`Park::unpark_one`] (or spuriously: callers re-check their condition).
    Woken,
    /// `validate` returned false under the queue lock: the caller did not sleep.
    Invalid,
    /// The deadline passed first.
    TimedOut,
}

/// How a thread sleeps on an address and is woken (futex-like). The kernel implements it
/// with its scheduler's wait queues; the host tests with `std` condition variables.
pub trait Park {
    /// Parks the calling thread on `key` if `validate()` returns true, evaluated under the
    /// same queue lock that [`unpark_one`](Park::unpark_one) takes for `key`: a wake-up
    /// issued after `validate` saw the condition can therefore not be missed. Returns when
    /// woken, when `deadline` (an implementation-defined clock; `None`: no limit) passes, or
    /// spuriously.
    fn park(&self, key: usize, validate: &dyn Fn() -> bool, deadline: Option<u64>) -> ParkResult;

    /// Wakes at most one thread parked on `key` (the longest waiting, if the queue is
    /// FIFO); returns whether it woke one.
    fn unpark_one(&self, key: usize) -> bool;

    /// Has `deadline` (on this implementation's clock) passed? Polled by the spin phase and
    /// after a park that did not sleep, so a deadline holds even when a waiter never parks.
    fn expired(&self, deadline: u64) -> bool;

    /// Called on the new holder's thread right after it took a lock (any path), and
    /// [`released`](Park::released) right before it gives it back: the kernel counts the
    /// sleeping locks each thread holds, so a faulting thread that holds one is never killed
    /// (its locks would stay held for good). Default: nothing.
    #[inline(always)]
    fn acquired(&self) {}

    /// See [`acquired`](Park::acquired).
    #[inline(always)]
    fn released(&self) {}
}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const PARKED: u32 = 2;

/// Default number of backoff rounds before parking: rounds of 1, 2, 4, .. 64 `pause`s, so at
/// most 127 in all (about a sleep/wake-up round trip through the scheduler, the classic bound
/// for spinning before blocking).
pub const DEFAULT_SPINS: u32 = 7;

/// A mutex whose waiters spin briefly, then sleep through `P`.
pub struct ParkingMutex<T, P: Park> {
    word: AtomicU32,
    spins: u32,
    park: P,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one holder at a time (see `lock`), so it can
// be shared between threads as long as `T` can be sent between them.
unsafe impl<T: Send, P: Park + Sync> Sync for ParkingMutex<T, P> {}
// SAFETY: moving the mutex moves the `T` it owns.
unsafe impl<T: Send, P: Park + Send> Send for ParkingMutex<T, P> {}

impl<T: core::fmt::Debug, P: Park> core::fmt::Debug for ParkingMutex<T, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParkingMutex")
            .field("word", &self.word.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T, P: Park> ParkingMutex<T, P> {
    /// An unlocked mutex with the default spin budget.
    #[cfg(not(all(loom, test)))]
    pub const fn new(data: T, park: P) -> Self {
        Self::with_spins(data, park, DEFAULT_SPINS)
    }

    /// An unlocked mutex (loom atomics have no `const` constructor).
    #[cfg(all(loom, test))]
    pub fn new(data: T, park: P) -> Self {
        Self::with_spins(data, park, DEFAULT_SPINS)
    }

    /// An unlocked mutex that spins `spins` backoff rounds before parking (0: park at once).
    #[cfg(not(all(loom, test)))]
    pub const fn with_spins(data: T, park: P, spins: u32) -> Self {
        ParkingMutex {
            word: AtomicU32::new(UNLOCKED),
            spins,
            park,
            data: UnsafeCell::new(data),
        }
    }

    /// See the non-loom version.
    #[cfg(all(loom, test))]
    pub fn with_spins(data: T, park: P, spins: u32) -> Self {
        ParkingMutex {
            word: AtomicU32::new(UNLOCKED),
            spins,
            park,
            data: UnsafeCell::new(data),
        }
    }

    fn key(&self) -> usize {
        &self.word as *const AtomicU32 as usize
    }

    /// The guard of a lock just taken (every path goes through here).
    #[inline(always)]
    fn guard(&self) -> ParkingGuard<'_, T, P> {
        self.park.acquired();
        ParkingGuard {
            m: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock if it is free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> Option<ParkingGuard<'_, T, P>> {
        self.word
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| self.guard())
    }

    /// Takes the lock, sleeping while it is held.
    #[inline]
    pub fn lock(&self) -> ParkingGuard<'_, T, P> {
        if let Some(g) = self.try_lock() {
            return g;
        }
        self.lock_slow(None)
            .unwrap_or_else(|| unreachable!("no deadline"))
    }

    /// Takes the lock, or gives up with `None` once `deadline` (the `Park` implementation's
    /// clock) has passed.
    #[inline]
    pub fn lock_with_deadline(&self, deadline: u64) -> Option<ParkingGuard<'_, T, P>> {
        if let Some(g) = self.try_lock() {
            return Some(g);
        }
        self.lock_slow(Some(deadline))
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<u64>) -> Option<ParkingGuard<'_, T, P>> {
        // Spin while there is a holder but nobody parked.
        let expired = || deadline.is_some_and(|d| self.park.expired(d));
        let mut backoff = Backoff::<64>::new();
        for _ in 0..self.spins {
            if expired() {
                break;
            }
            match self.word.load(Ordering::Relaxed) {
                UNLOCKED => {
                    if let Some(g) = self.try_lock() {
                        return Some(g);
                    }
                }
                LOCKED => backoff.snooze(),
                _ => break,
            }
        }
        // Announce a waiter; taking a free lock this way leaves it marked `2` (one spurious
        // wake-up at unlock at worst, the price of not knowing whether others wait).
        while self.word.swap(PARKED, Ordering::Acquire) != UNLOCKED {
            let r = self.park.park(
                self.key(),
                &|| self.word.load(Ordering::Relaxed) == PARKED,
                deadline,
            );
            if r == ParkResult::TimedOut || expired() {
                // We may have consumed a wake-up: retry once, which either acquires or
                // leaves `2` for the current holder's unlock to wake somebody.
                if self.word.swap(PARKED, Ordering::Acquire) == UNLOCKED {
                    return Some(self.guard());
                }
                return None;
            }
        }
        Some(self.guard())
    }

    /// Releases the lock (the guard's drop).
    #[inline]
    fn unlock(&self) {
        if self.word.swap(UNLOCKED, Ordering::Release) == PARKED {
            self.park.unpark_one(self.key());
        }
    }

    /// The parking implementation.
    pub fn parker(&self) -> &P {
        &self.park
    }

    /// Is it held now? (A racy snapshot, for diagnostics.)
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != UNLOCKED
    }

    /// The data, through exclusive access to the mutex (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

/// Exclusive access to the data of a [`ParkingMutex`]; unlocks on drop.
///
/// Not `Send`: [`Park::acquired`] and [`Park::released`] run on the holder's thread (the
/// kernel counts a thread's sleeping locks there), so the guard is dropped where it was
/// made. `Sync` only for `T: Sync`, as `&T` is what a shared guard gives. Until 2026-12-04
/// it took both from `&ParkingMutex` (`Sync` for any `T: Send`): safe code could share a
/// guard of a `Cell` between threads, a data race (found by review).
///
/// ```
/// # use exo_sync::{Park, ParkResult, ParkingGuard};
/// # struct P;
/// # impl Park for P {
/// #     fn park(&self, _: usize, _: &dyn Fn() -> bool, _: Option<u64>) -> ParkResult {
/// #         ParkResult::Invalid
/// #     }
/// #     fn unpark_one(&self, _: usize) -> bool { false }
/// #     fn expired(&self, _: u64) -> bool { true }
/// # }
/// fn sync<T: Sync>() {}
/// sync::<ParkingGuard<'static, u64, P>>(); // T: Sync
/// ```
///
/// ```compile_fail
/// # use exo_sync::{Park, ParkResult, ParkingGuard};
/// # struct P;
/// # impl Park for P {
/// #     fn park(&self, _: usize, _: &dyn Fn() -> bool, _: Option<u64>) -> ParkResult {
/// #         ParkResult::Invalid
/// #     }
/// #     fn unpark_one(&self, _: usize) -> bool { false }
/// #     fn expired(&self, _: u64) -> bool { true }
/// # }
/// fn sync<T: Sync>() {}
/// sync::<ParkingGuard<'static, core::cell::Cell<u64>, P>>();
/// ```
///
/// ```compile_fail
/// # use exo_sync::{Park, ParkResult, ParkingGuard};
/// # struct P;
/// # impl Park for P {
/// #     fn park(&self, _: usize, _: &dyn Fn() -> bool, _: Option<u64>) -> ParkResult {
/// #         ParkResult::Invalid
/// #     }
/// #     fn unpark_one(&self, _: usize) -> bool { false }
/// #     fn expired(&self, _: u64) -> bool { true }
/// # }
/// fn send<T: Send>() {}
/// send::<ParkingGuard<'static, u64, P>>();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ParkingGuard<'a, T, P: Park> {
    m: &'a ParkingMutex<T, P>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives only `&T` (`Deref`); `&T` may cross threads when `T: Sync`.
unsafe impl<T: Sync, P: Park + Sync> Sync for ParkingGuard<'_, T, P> {}

impl<T, P: Park> Deref for ParkingGuard<'_, T, P> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held (acquired with Acquire ordering after the
        // previous holder's Release), so no other reference to the data exists.
        unsafe { &*self.m.data.get() }
    }
}

impl<T, P: Park> DerefMut for ParkingGuard<'_, T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T, P: Park> Drop for ParkingGuard<'_, T, P> {
    fn drop(&mut self) {
        self.m.park.released();
        self.m.unlock();
    }
}

impl<T: core::fmt::Debug, P: Park> core::fmt::Debug for ParkingGuard<'_, T, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("ParkingGuard").field(&**self).finish()
    }
}
