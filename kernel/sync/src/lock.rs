//! [`Lock<R, T>`]: data protected by any [`RawLock`], with an RAII guard.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use crate::sync::const_fn_unless_loom;
use crate::{RawLock, WithLock};

/// A `T` that is only reachable while the raw lock `R` is held.
///
/// ```
/// use exo_sync::{Lock, TasLock, TicketLock};
///
/// static COUNTER: Lock<TicketLock, u64> = Lock::new(0);
/// *COUNTER.lock() += 1;
///
/// let runqueue: Lock<TasLock, Vec<u32>> = Lock::new(Vec::new());
/// runqueue.lock().push(7);
/// assert!(runqueue.try_lock().is_some());
/// let mut spins = 0;
/// let held = runqueue.lock();
/// // Held: gives up once the deadline check says so.
/// assert!(runqueue.lock_with_deadline(|| { spins += 1; spins > 10 }).is_none());
/// drop(held);
/// ```
pub struct Lock<R, T: ?Sized> {
    raw: R,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, and `R: RawLock` lets at
// most one guard exist at a time, with acquire/release ordering between
// successive holders; so sharing the lock hands `T` from thread to thread
// (needs `T: Send`), never shares it (no `T: Sync` needed).
unsafe impl<R: RawLock + Sync, T: ?Sized + Send> Sync for Lock<R, T> {}

impl<R: RawLock, T> Lock<R, T> {
    const_fn_unless_loom! {
        /// An unlocked lock around `value` (`const`: usable in `static`s).
        pub fn new(value: T) -> Self {
            Self {
                #[cfg(not(all(loom, test)))]
                raw: R::INIT,
                #[cfg(all(loom, test))]
                raw: R::init(),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// Consumes the lock and returns the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<R: RawLock, T: ?Sized> Lock<R, T> {
    /// Spins until the lock is acquired.
    #[inline]
    pub fn lock(&self) -> LockGuard<'_, R, T> {
        let token = self.raw.lock();
        // SAFETY: `token` was just returned by an acquisition of `self.raw`.
        unsafe { LockGuard::new(self, token) }
    }

    /// Acquires the lock if it is free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> Option<LockGuard<'_, R, T>> {
        let token = self.raw.try_lock()?;
        // SAFETY: `token` was just returned by an acquisition of `self.raw`.
        Some(unsafe { LockGuard::new(self, token) })
    }

    /// Spins until the lock is acquired, or returns `None` once
    /// `deadline_passed()` returns `true` while it is still held (see
    /// [`RawLock::lock_with_deadline`]; for [`TicketLock`](crate::TicketLock)
    /// such a waiter does not queue).
    #[inline]
    pub fn lock_with_deadline(
        &self,
        deadline_passed: impl FnMut() -> bool,
    ) -> Option<LockGuard<'_, R, T>> {
        let token = self.raw.lock_with_deadline(deadline_passed)?;
        // SAFETY: `token` was just returned by an acquisition of `self.raw`.
        Some(unsafe { LockGuard::new(self, token) })
    }

    /// Runs `f` on the data under the lock.
    #[inline]
    pub fn with<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        f(&mut self.lock())
    }

    /// The data, through an exclusive borrow of the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether the lock is held (racy snapshot, for diagnostics).
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The raw lock (for diagnostics such as
    /// [`TicketLock::waiters`](crate::TicketLock::waiters)).
    #[must_use]
    pub fn raw(&self) -> &R {
        &self.raw
    }
}

impl<R: RawLock, T: ?Sized> WithLock for Lock<R, T> {
    type Target = T;

    #[inline]
    fn with_lock<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        self.with(f)
    }
}

impl<R: RawLock + Default, T: Default> Default for Lock<R, T> {
    fn default() -> Self {
        Self {
            raw: R::default(),
            data: UnsafeCell::new(T::default()),
        }
    }
}

impl<R: RawLock + fmt::Debug, T: ?Sized> fmt::Debug for Lock<R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

/// Holds a [`Lock`]; the data is reached through `Deref`/`DerefMut`, and the
/// lock is released when the guard is dropped.
///
/// Leaking the guard (`mem::forget`) leaves the lock held forever, which is a
/// deadlock but not unsound.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a, R: RawLock, T: ?Sized> {
    lock: &'a Lock<R, T>,
    token: ManuallyDrop<R::Token>,
    /// The guard hands out `&mut T`: Send/Sync like `&mut T`.
    _data: PhantomData<&'a mut T>,
}

impl<'a, R: RawLock, T: ?Sized> LockGuard<'a, R, T> {
    /// # Safety
    ///
    /// `token` must come from an acquisition of `lock.raw` that no other
    /// guard owns.
    unsafe fn new(lock: &'a Lock<R, T>, token: R::Token) -> Self {
        Self {
            lock,
            token: ManuallyDrop::new(token),
            _data: PhantomData,
        }
    }
}

impl<R: RawLock, T: ?Sized> Deref for LockGuard<'_, R, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard owns the lock's token, so no other guard exists
        // and nothing else reaches the data until the guard is dropped.
        unsafe { &*self.lock.data.get() }
    }
}

impl<R: RawLock, T: ?Sized> DerefMut for LockGuard<'_, R, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<R: RawLock, T: ?Sized> Drop for LockGuard<'_, R, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `token` is taken exactly once, here, and never used again.
        let token = unsafe { ManuallyDrop::take(&mut self.token) };
        // SAFETY: the token came from an acquisition of this lock's raw lock
        // (`LockGuard::new`'s contract) and is handed back once.
        unsafe { self.lock.raw.unlock(token) };
    }
}

impl<R: RawLock, T: ?Sized + fmt::Debug> fmt::Debug for LockGuard<'_, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LockGuard").field(&&**self).finish()
    }
}
