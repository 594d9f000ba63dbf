//! Exo-OS spin locks: the lock family used by the kernel and measured by the
//! SMP benchmark harness (hand-off latency and fairness under contention).
//!
//! * [`TasLock`]: test-and-test-and-set with bounded exponential backoff.
//!   Smallest (one byte) and fastest uncontended; unfair.
//! * [`TicketLock`]: FIFO ticket lock, `next` and `serving` counters on
//!   separate cache lines. Strictly fair; every waiter spins on one line.
//! * [`McsLock`]: MCS queue lock. FIFO, and every waiter spins on its *own*
//!   [`McsNode`], so a hand-off touches only two cache lines whatever the
//!   number of waiters.
//!
//! [`TasLock`] and [`TicketLock`] implement [`RawLock`] and protect data
//! through the generic [`Lock<R, T>`] / [`LockGuard`]. [`McsLock<T>`] needs a
//! caller-provided queue node per acquisition and so has its own
//! [`McsGuard`]. [`WithLock`] gives closure-scoped access uniformly over all
//! three (what generic benchmark code drives).
//!
//! [`ParkingMutex`] is the blocking mutex: a CAS fast path, a bounded spin, then a
//! futex-like park through a [`Park`] implementation (the kernel's scheduler wait queues;
//! `std` condition variables in the host tests), with documented barging fairness.
//!
//! [`ring`] is the single-producer single-consumer byte ring behind the kernel's per-CPU
//! console rings (no locked instruction on either side; host-, proptest- and loom-tested).
//!
//! [`fusion`] is the protocol of the kernel's fusion channels (cross-CPU calls through two
//! SPSC rings, a side parks only past a poll window), with the scheduler as a parameter so
//! that loom checks its parking.
//!
//! Every lock has a deadline-bounded acquisition (`lock_with_deadline`): the
//! caller passes `deadline_passed: impl FnMut() -> bool`, polled between
//! spins; once it returns `true` while the lock is still unavailable the call
//! gives up with `None` (every wait in the kernel must be able to time out).
//!
//! Orderings: acquiring is an `Acquire` operation that reads the value written
//! by the previous holder's `Release` unlock, so everything done inside one
//! critical section happens-before everything in the next. No lock allocates,
//! keeps statistics or touches anything but its own words (and, for MCS, the
//! nodes), so all of them build for `x86_64-unknown-none`.
//!
//! None of these locks disables interrupts or preemption: the kernel wraps
//! them with its IRQ/preemption guard when a lock is also taken from interrupt
//! context (a waiter preempted while queued stalls the FIFO locks).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod backoff;
pub mod fusion;
mod lock;
mod mcs;
mod parking;
pub mod ring;
mod sync;
mod tas;
mod ticket;

pub use backoff::DEFAULT_MAX_BACKOFF;
pub use lock::{Lock, LockGuard};
pub use mcs::{McsGuard, McsLock, McsNode};
pub use parking::{DEFAULT_SPINS, Park, ParkResult, ParkingGuard, ParkingMutex};
pub use tas::TasLock;
pub use ticket::{Ticket, TicketLock};

/// A [`Lock`] protected by a [`TasLock`] with the default backoff cap.
pub type TasMutex<T> = Lock<TasLock, T>;
/// A [`Lock`] protected by a [`TicketLock`].
pub type TicketMutex<T> = Lock<TicketLock, T>;

/// A raw mutual-exclusion lock without data: the algorithm behind a
/// [`Lock<R, T>`].
///
/// Acquiring returns a [`RawLock::Token`] that must be handed back to
/// [`RawLock::unlock`]; [`Lock`]'s guard does that in its `Drop`.
///
/// # Safety
///
/// Implementors guarantee that, between a successful acquisition
/// (`lock`, `try_lock` returning `Some`, `lock_with_deadline` returning
/// `Some`) and the `unlock` of the token it produced, no other acquisition of
/// the same lock succeeds; that acquisition is an `Acquire` operation and
/// `unlock` a `Release` operation, so that every access made under one hold
/// happens-before every access made under the next.
pub unsafe trait RawLock {
    /// Proof of ownership returned by an acquisition and consumed by
    /// [`RawLock::unlock`] (`()` for [`TasLock`], the ticket for
    /// [`TicketLock`]).
    type Token;

    /// An unlocked lock, usable in `const` and `static` initialisers.
    #[cfg(not(all(loom, test)))]
    const INIT: Self;

    /// An unlocked lock (loom atomics have no `const` constructor).
    #[cfg(all(loom, test))]
    fn init() -> Self;

    /// Spins until the lock is acquired.
    fn lock(&self) -> Self::Token;

    /// Acquires the lock if that is possible without waiting.
    fn try_lock(&self) -> Option<Self::Token>;

    /// Spins until the lock is acquired, or returns `None` once
    /// `deadline_passed()` returns `true` while the lock is still
    /// unavailable. `deadline_passed` is not called if the lock is free on
    /// the first attempt, and is called between waits otherwise.
    fn lock_with_deadline(&self, deadline_passed: impl FnMut() -> bool) -> Option<Self::Token>;

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// `token` must come from an acquisition of this very lock (not of
    /// another lock of the same type), and is consumed: the lock is held
    /// until this call and must not be touched as held afterwards.
    unsafe fn unlock(&self, token: Self::Token);

    /// Whether the lock is currently held (a racy snapshot, for assertions
    /// and diagnostics only).
    fn is_locked(&self) -> bool;
}

/// Closure-scoped exclusive access, uniform over every lock of this crate
/// (for code generic over the lock type, such as the benchmark harness).
pub trait WithLock {
    /// The protected data.
    type Target: ?Sized;

    /// Acquires the lock (spinning), runs `f` on the data and releases it.
    /// [`McsLock`] uses a queue node on the caller's stack.
    fn with_lock<U>(&self, f: impl FnOnce(&mut Self::Target) -> U) -> U;
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
