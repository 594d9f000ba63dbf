//! Per-CPU wake-up mailbox: a bounded lock-free multi-producer queue with an
//! IPI doorbell.
//!
//! Other CPUs [`push`](Mailbox::push) messages (typically the [`ThreadRef`] of
//! a thread they woke up) into the mailbox of the CPU owning that thread; the
//! owner [`drain`](Mailbox::drain)s it from its scheduler and enqueues the
//! threads on its own [`RunQueue`](crate::RunQueue).
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded queue (the one behind crossbeam's `ArrayQueue`):
//! `N` slots (a power of two, at least 2), each with a sequence number. Slot
//! `i` starts with `seq = i`. A producer at position `pos` may write slot
//! `pos % N` when `seq == pos`: it claims `pos` with a CAS on `tail`, writes
//! the payload and publishes it with `seq = pos + 1` (release). The consumer at
//! `pos` may read when `seq == pos + 1` (acquire); it advances `head` and frees
//! the slot for the next lap with `seq = pos + N` (release). `seq < pos` for a
//! producer means the slot still holds last lap's message: the mailbox is
//! full and [`push`](Mailbox::push) returns [`MailboxFull`] with the message,
//! so the caller can fall back (e.g. take the remote run queue's lock).
//!
//! Payloads are `u64`s stored in an `AtomicU64` next to the sequence number,
//! so the mailbox needs no `UnsafeCell` and no `unsafe`. The consumer side also
//! advances `head` with a CAS (as in the MPMC original): the mailbox is meant
//! to have one consumer, the owning CPU, but a second concurrent consumer
//! cannot corrupt it, only share the messages. No allocation: the slots are a
//! const-generic array and [`Mailbox::new`] is a `const fn`, so per-CPU
//! mailboxes can be `static`s.
//!
//! # Doorbell (when to send the IPI)
//!
//! A `pending` flag avoids one IPI per message: after publishing, a producer
//! does `pending.swap(true)`; if it was `false` it gets [`Notify::SendIpi`] and
//! must send the wake-up IPI, otherwise [`Notify::AlreadyPending`]. The owner's
//! [`drain`](Mailbox::drain) first does `pending.swap(false)` and then pops.
//! Both swaps are `AcqRel` read-modify-writes, so no wake-up is lost: a
//! message the drain did not see was published by a producer whose swap came
//! after the drain's in the flag's modification order, so either it or an
//! earlier such producer read `false` and sent an IPI. Invariant (checked
//! under loom): *a message left in the mailbox implies `is_pending()`*; the
//! owner checks [`is_pending`](Mailbox::is_pending) before halting.
//!
//! # Model checking
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p exo-sched --release --lib mailbox`
//! runs the loom tests of this module (2 and 3 producers, 1 consumer: every
//! message received exactly once, in per-producer order; and the doorbell
//! invariant).

use core::fmt;
use core::marker::PhantomData;

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::thread::ThreadRef;

/// A value that travels through a [`Mailbox`] as a `u64`.
pub trait Message: Copy {
    /// Encodes the message.
    fn into_bits(self) -> u64;
    /// Decodes a message produced by [`into_bits`](Message::into_bits).
    fn from_bits(bits: u64) -> Self;
}

impl Message for u64 {
    #[inline]
    fn into_bits(self) -> u64 {
        self
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        bits
    }
}

impl Message for ThreadRef {
    #[inline]
    fn into_bits(self) -> u64 {
        u64::from(self.0)
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        ThreadRef(bits as u32)
    }
}

/// What a successful [`Mailbox::push`] asks the caller to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "the owner CPU must be sent an IPI when this is `SendIpi`"]
pub enum Notify {
    /// The doorbell was clear: send the wake-up IPI to the owner CPU.
    SendIpi,
    /// An IPI is already on its way (or the owner is already draining).
    AlreadyPending,
}

/// Error of [`Mailbox::push`]: no free slot; the message is handed back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MailboxFull<M>(pub M);

impl<M> fmt::Display for MailboxFull<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mailbox full")
    }
}

impl<M: fmt::Debug> core::error::Error for MailboxFull<M> {}

/// Keeps producer-, consumer- and doorbell-side words on separate cache lines.
#[derive(Debug)]
#[repr(align(64))]
struct CachePadded<T>(T);

#[derive(Debug)]
struct Slot {
    seq: AtomicUsize,
    bits: AtomicU64,
}

impl Slot {
    #[cfg(not(all(loom, test)))]
    const fn new(seq: usize) -> Self {
        Self {
            seq: AtomicUsize::new(seq),
            bits: AtomicU64::new(0),
        }
    }

    #[cfg(all(loom, test))]
    fn new(seq: usize) -> Self {
        Self {
            seq: AtomicUsize::new(seq),
            bits: AtomicU64::new(0),
        }
    }
}

/// Bounded lock-free multi-producer mailbox of `N` messages of type `M`
/// (`N` a power of two, `N >= 2`). See the [module docs](self).
pub struct Mailbox<M, const N: usize> {
    /// Next position to push (producers).
    tail: CachePadded<AtomicUsize>,
    /// Next position to pop (consumer).
    head: CachePadded<AtomicUsize>,
    /// Doorbell: an IPI has been requested since the last drain began.
    pending: CachePadded<AtomicBool>,
    slots: [Slot; N],
    _msg: PhantomData<fn(M) -> M>,
}

impl<M, const N: usize> Mailbox<M, N> {
    const MASK: usize = {
        assert!(
            N >= 2 && N.is_power_of_two(),
            "Mailbox N must be a power of two >= 2"
        );
        N - 1
    };

    /// An empty mailbox.
    #[cfg(not(all(loom, test)))]
    #[must_use]
    pub const fn new() -> Self {
        let _ = Self::MASK;
        let mut slots = [const { Slot::new(0) }; N];
        let mut i = 0;
        while i < N {
            slots[i] = Slot::new(i);
            i += 1;
        }
        Self {
            tail: CachePadded(AtomicUsize::new(0)),
            head: CachePadded(AtomicUsize::new(0)),
            pending: CachePadded(AtomicBool::new(false)),
            slots,
            _msg: PhantomData,
        }
    }

    /// An empty mailbox (loom build: loom atomics are not `const`).
    #[cfg(all(loom, test))]
    #[must_use]
    pub fn new() -> Self {
        let _ = Self::MASK;
        Self {
            tail: CachePadded(AtomicUsize::new(0)),
            head: CachePadded(AtomicUsize::new(0)),
            pending: CachePadded(AtomicBool::new(false)),
            slots: core::array::from_fn(Slot::new),
            _msg: PhantomData,
        }
    }

    /// Number of slots.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of messages pushed and not yet popped (a snapshot: exact only
    /// when no push or pop runs concurrently).
    #[must_use]
    pub fn len(&self) -> usize {
        let head = self.head.0.load(Ordering::Acquire);
        let tail = self.tail.0.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(N)
    }

    /// `true` if [`len`](Self::len) is 0.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` if an IPI was requested since the last [`drain`](Self::drain)
    /// began: the owner must drain before halting.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.pending.0.load(Ordering::Acquire)
    }
}

impl<M: Message, const N: usize> Mailbox<M, N> {
    /// Posts `msg` (any CPU, lock-free).
    ///
    /// # Errors
    /// [`MailboxFull`] with `msg` if all `N` slots hold unread messages.
    pub fn push(&self, msg: M) -> Result<Notify, MailboxFull<M>> {
        let mut pos = self.tail.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & Self::MASK];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as isize;
            if diff == 0 {
                match self.tail.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.bits.store(msg.into_bits(), Ordering::Relaxed);
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        break;
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return Err(MailboxFull(msg));
            } else {
                // Another producer claimed `pos` first: catch up.
                pos = self.tail.0.load(Ordering::Relaxed);
            }
        }
        if self.pending.0.swap(true, Ordering::AcqRel) {
            Ok(Notify::AlreadyPending)
        } else {
            Ok(Notify::SendIpi)
        }
    }

    /// Takes the oldest published message, if any (owner CPU). Does not touch
    /// the doorbell: use [`drain`](Self::drain) from the scheduler.
    pub fn pop(&self) -> Option<M> {
        let mut pos = self.head.0.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & Self::MASK];
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos.wrapping_add(1)) as isize;
            if diff == 0 {
                match self.head.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let bits = slot.bits.load(Ordering::Relaxed);
                        slot.seq.store(pos.wrapping_add(N), Ordering::Release);
                        return Some(M::from_bits(bits));
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                // Empty, or the next message is claimed but not yet published
                // (its producer will ring the doorbell after publishing).
                return None;
            } else {
                pos = self.head.0.load(Ordering::Relaxed);
            }
        }
    }

    /// Clears the doorbell, then pops and hands to `f` up to `N` messages;
    /// returns how many. If it stops at `N` with messages possibly left, it
    /// sets the doorbell again so [`is_pending`](Self::is_pending) tells the
    /// owner to call it again (bounded time per call).
    pub fn drain(&self, mut f: impl FnMut(M)) -> usize {
        self.pending.0.swap(false, Ordering::AcqRel);
        let mut n = 0;
        while n < N {
            match self.pop() {
                Some(m) => {
                    f(m);
                    n += 1;
                }
                None => return n,
            }
        }
        self.pending.0.store(true, Ordering::Release);
        n
    }
}

impl<M, const N: usize> Default for Mailbox<M, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M, const N: usize> fmt::Debug for Mailbox<M, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("capacity", &N)
            .field("len", &self.len())
            .field("pending", &self.is_pending())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
