//! FIFO ticket lock.

use core::fmt;

use crate::RawLock;
use crate::sync::{AtomicU32, Ordering, const_fn_unless_loom, spin_loop};

/// Pads and aligns `T` to a 64-byte cache line of its own.
#[repr(C, align(64))]
struct CachePadded<T>(T);

/// FIFO ticket lock: `next` (the ticket dispenser) and `serving` (the ticket
/// now allowed in) on separate 64-byte cache lines.
///
/// * **Acquire**: `t = next.fetch_add(1)` takes a ticket, then the waiter
///   spins until `serving == t` (an `Acquire` load that reads the previous
///   holder's `Release` store). **Release**: `serving = t + 1`, a plain
///   `Release` store (only the holder writes `serving`, so no RMW). The
///   uncontended cost is one locked RMW, one load and one store.
/// * **Layout**: arriving CPUs write `next`, waiters read `serving`; with the
///   two on separate lines an arrival does not invalidate the line every
///   waiter spins on, and the hand-off store does not bounce the line that
///   arrivals are incrementing. The price is 128 bytes per lock.
/// * **Fairness**: strictly FIFO in ticket order. A waiter with `k` tickets
///   ahead of it enters after exactly `k` critical sections, so waiting is
///   bounded by `k` × the longest hold. Every waiter still spins on the one
///   `serving` line, so each hand-off invalidates all waiters' copies
///   ([`McsLock`](crate::McsLock) avoids that). A waiter that is preempted
///   or interrupted while queued stalls everybody behind it: hold and wait
///   with preemption disabled.
/// * **Deadlines**: a ticket cannot be handed back, so
///   [`RawLock::lock_with_deadline`] does not take one. It waits (without
///   writing) until the lock looks free and retries
///   [`RawLock::try_lock`]; a deadline-bounded waiter is therefore not
///   queued and can be overtaken by ticket holders until its deadline.
///
/// Tickets are `u32` and wrap: correct as long as fewer than 2³² CPUs wait.
pub struct TicketLock {
    next: CachePadded<AtomicU32>,
    serving: CachePadded<AtomicU32>,
}

/// Proof of holding a [`TicketLock`]: the ticket that was served.
#[derive(Debug)]
#[must_use = "a ticket must be handed back to `TicketLock::unlock`"]
pub struct Ticket(u32);

impl Ticket {
    /// The ticket number (for fairness measurements).
    #[must_use]
    pub fn number(&self) -> u32 {
        self.0
    }
}

impl TicketLock {
    const_fn_unless_loom! {
        /// An unlocked lock.
        #[must_use]
        pub fn new() -> Self {
            Self {
                next: CachePadded(AtomicU32::new(0)),
                serving: CachePadded(AtomicU32::new(0)),
            }
        }
    }

    /// An unlocked lock whose next ticket is `t` (tests of wrap-around).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn starting_at(t: u32) -> Self {
        Self {
            next: CachePadded(AtomicU32::new(t)),
            serving: CachePadded(AtomicU32::new(t)),
        }
    }

    /// Number of CPUs waiting behind the current holder (a racy snapshot,
    /// for diagnostics, fairness measurements and tests).
    #[must_use]
    pub fn waiters(&self) -> u32 {
        let serving = self.serving.0.load(Ordering::Relaxed);
        let next = self.next.0.load(Ordering::Relaxed);
        let in_lock = next.wrapping_sub(serving);
        // A torn snapshot can see `next` behind `serving`: report no waiter.
        if in_lock > u32::MAX / 2 {
            0
        } else {
            in_lock.saturating_sub(1)
        }
    }

    /// Spins until ticket `t` is served.
    #[cold]
    #[inline(never)]
    fn wait_for(&self, t: u32) {
        while self.serving.0.load(Ordering::Acquire) != t {
            spin_loop();
        }
    }
}

impl Default for TicketLock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TicketLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketLock")
            .field("next", &self.next.0.load(Ordering::Relaxed))
            .field("serving", &self.serving.0.load(Ordering::Relaxed))
            .finish()
    }
}

// SAFETY: each ticket value is handed out once (`fetch_add` on `next`, or a
// `compare_exchange` that advances `next` past it), and ticket `t` is held
// exactly while `serving == t`: `serving` only changes in `unlock`, by the
// holder, to `t + 1`, with a `Release` store that the next holder's
// `Acquire` load of `serving` reads from.
unsafe impl RawLock for TicketLock {
    type Token = Ticket;

    #[cfg(not(all(loom, test)))]
    const INIT: Self = Self::new();

    #[cfg(all(loom, test))]
    fn init() -> Self {
        Self::new()
    }

    #[inline]
    fn lock(&self) -> Ticket {
        // `Relaxed` is enough here: the synchronisation with the previous
        // holder is the `Acquire` load of `serving` below.
        let t = self.next.0.fetch_add(1, Ordering::Relaxed);
        if self.serving.0.load(Ordering::Acquire) != t {
            self.wait_for(t);
        }
        Ticket(t)
    }

    #[inline]
    fn try_lock(&self) -> Option<Ticket> {
        // Free iff no ticket beyond `serving` was handed out: take ticket
        // `serving` if `next` still equals it. The `Acquire` load reads the
        // previous holder's `Release` store of `serving`.
        let s = self.serving.0.load(Ordering::Acquire);
        self.next
            .0
            .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(Ticket)
    }

    fn lock_with_deadline(&self, mut deadline_passed: impl FnMut() -> bool) -> Option<Ticket> {
        loop {
            if let Some(ticket) = self.try_lock() {
                return Some(ticket);
            }
            if deadline_passed() {
                return None;
            }
            while self.is_locked() {
                if deadline_passed() {
                    return None;
                }
                spin_loop();
            }
        }
    }

    #[inline]
    unsafe fn unlock(&self, ticket: Ticket) {
        self.serving
            .0
            .store(ticket.0.wrapping_add(1), Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.next.0.load(Ordering::Relaxed) != self.serving.0.load(Ordering::Relaxed)
    }
}
