//! A one-request mailbox: the kernel's run-on-CPU slot (`cpus::post` / `poll_mailbox`).
//!
//! Any CPU may [`post`](RequestMailbox::post) one request (a function word, an argument word
//! and a notify word) to the CPU that owns the mailbox; the owner [`take`](RequestMailbox::take)s
//! it, runs it and [`complete`](RequestMailbox::complete)s it with a result word; the poster
//! reads the result of *its* request with [`result`](RequestMailbox::result) and the sequence
//! number `post` gave it. One request at a time: a post while a request is claimed,
//! published or running is refused with [`Busy`].
//!
//! # Algorithm
//!
//! Two sequence words: `posted` (the last request claimed or published) and `done` (the last
//! one completed). The mailbox is free when `posted == done`. A poster **claims** it with one
//! compare-and-swap of `posted` from the `done` it read to `done | CLAIMED`, so of two
//! posters that both saw it free exactly one wins, the other gets [`Busy`]; only the winner
//! writes the payload, then **publishes** with `posted = done + 1` (release). The owner
//! ignores a claimed-but-unpublished slot (`CLAIMED` set), reads the payload after seeing a
//! published sequence (acquire), and completes with `result` then `done = seq` (release).
//! The sequences only grow, so a stale `done` can never make the CAS succeed (no ABA).
//!
//! Results are kept per sequence number in a ring of [`RESULTS`] tagged slots (slot
//! `seq % RESULTS`, a seqlock with the owner as its only writer: the tag cleared, the value
//! written, the tag set to `seq`), so a poster that reads late still gets its own result
//! while the next [`RESULTS`]` - 1` requests complete; later than that, [`Lost`]. Until
//! 2026-12-05 the mailbox kept one result and no tag: a poster whose request had completed
//! read the result of whichever request completed last (another poster's, if one had been
//! accepted meanwhile), and while that other request was pending it waited for it too.
//!
//! The kernel's first version checked `posted == done` and then stored the payload and
//! `posted` with plain stores: two posters could both see the mailbox free and overwrite
//! each other's function and argument; one request was lost and the other could run with
//! the wrong argument. The loom tests below cover every interleaving of that race.
//!
//! # Model checking
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p exo-sched --release --lib mailbox` also runs this
//! module's loom tests (two and three racing posters, with and without a concurrent owner:
//! exactly one winner among posters that saw the mailbox free, every accepted request taken
//! exactly once with its own payload, no refused request ever taken).

use core::fmt;

use crate::sync::{AtomicU64, Ordering, fence};

/// The bit of `posted` that marks a claimed request whose payload is being written.
const CLAIMED: u64 = 1 << 63;

/// A refused [`RequestMailbox::post`]: a request is still claimed, pending or running.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Busy;

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request mailbox busy")
    }
}

impl core::error::Error for Busy {}

/// Results the mailbox keeps: a poster's result survives [`RESULTS`]` - 1` later completions.
pub const RESULTS: usize = 4;

/// [`RequestMailbox::result`] of a request that completed, read after [`RESULTS`] later
/// requests had completed too: its result slot was reused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Lost;

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request completed, its result overwritten by later requests")
    }
}

impl core::error::Error for Lost {}

/// One result slot: the value of request `tag` (0: being written or never written).
struct Slot {
    tag: AtomicU64,
    value: AtomicU64,
}

impl Slot {
    #[cfg(not(all(loom, test)))]
    const fn new() -> Self {
        Slot {
            tag: AtomicU64::new(0),
            value: AtomicU64::new(0),
        }
    }

    #[cfg(all(loom, test))]
    fn new() -> Self {
        Slot {
            tag: AtomicU64::new(0),
            value: AtomicU64::new(0),
        }
    }
}

/// A published request, as the owner takes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Request {
    /// Its sequence number (pass it to [`RequestMailbox::complete`]).
    pub seq: u64,
    /// The poster's function word.
    pub func: u64,
    /// The poster's argument word.
    pub arg: u64,
    /// The poster's notify word.
    pub notify: u64,
}

/// One request at a time, claimed by CAS. See the [module docs](self).
pub struct RequestMailbox {
    posted: AtomicU64,
    done: AtomicU64,
    func: AtomicU64,
    arg: AtomicU64,
    notify: AtomicU64,
    results: [Slot; RESULTS],
}

impl RequestMailbox {
    /// An empty mailbox.
    #[cfg(not(all(loom, test)))]
    #[must_use]
    pub const fn new() -> Self {
        Self {
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            func: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            notify: AtomicU64::new(0),
            results: [const { Slot::new() }; RESULTS],
        }
    }

    /// An empty mailbox (loom build: loom atomics are not `const`).
    #[cfg(all(loom, test))]
    #[must_use]
    pub fn new() -> Self {
        Self {
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            func: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            notify: AtomicU64::new(0),
            results: core::array::from_fn(|_| Slot::new()),
        }
    }

    /// Posts a request: claims the mailbox (one CAS), writes the payload, publishes it.
    /// Returns the request's sequence number, or [`Busy`] if another request holds the
    /// mailbox (including one claimed by a concurrent poster a moment ago).
    pub fn post(&self, func: u64, arg: u64, notify: u64) -> Result<u64, Busy> {
        let done = self.done.load(Ordering::Acquire);
        // Free iff `posted == done`; the CAS both checks and claims.
        self.posted
            .compare_exchange(done, done | CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| Busy)?;
        self.func.store(func, Ordering::Relaxed);
        self.arg.store(arg, Ordering::Relaxed);
        self.notify.store(notify, Ordering::Relaxed);
        let seq = done + 1;
        self.posted.store(seq, Ordering::Release);
        Ok(seq)
    }

    /// The owner's side: the published request not yet completed, if any (a request still
    /// being written by its poster is not returned).
    pub fn take(&self) -> Option<Request> {
        let posted = self.posted.load(Ordering::Acquire);
        // Only the owner writes `done`.
        if posted & CLAIMED != 0 || posted == self.done.load(Ordering::Relaxed) {
            return None;
        }
        Some(Request {
            seq: posted,
            func: self.func.load(Ordering::Relaxed),
            arg: self.arg.load(Ordering::Relaxed),
            notify: self.notify.load(Ordering::Relaxed),
        })
    }

    /// The owner's side: completes request `seq` (from [`take`](Self::take)) with `result`;
    /// the mailbox is free again.
    pub fn complete(&self, seq: u64, result: u64) {
        let s = &self.results[(seq % RESULTS as u64) as usize];
        // The seqlock's write: invalidate, then the value, then the tag (the owner is the
        // only writer, so no odd/even counter is needed).
        s.tag.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        s.value.store(result, Ordering::Relaxed);
        s.tag.store(seq, Ordering::Release);
        self.done.store(seq, Ordering::Release);
    }

    /// The poster's side: the result of request `seq` (what [`post`](Self::post) returned):
    /// `None` while it is pending or running, `Some(Ok(result))` once completed, and
    /// `Some(Err(Lost))` if [`RESULTS`] later requests completed before this read.
    pub fn result(&self, seq: u64) -> Option<Result<u64, Lost>> {
        let s = &self.results[(seq % RESULTS as u64) as usize];
        // `done` first: once it is `>= seq`, the tag `seq` (stored before it) is visible,
        // so a tag found different means the slot is being reused. Read after the tag, a
        // completion between the two loads would look like a reuse (`Lost` for a request
        // that had just completed).
        let done = self.done.load(Ordering::Acquire);
        if s.tag.load(Ordering::Acquire) == seq {
            let v = s.value.load(Ordering::Relaxed);
            // Pairs with the writer's release fence: a value written after the tag was
            // cleared makes the second look see the cleared (or a newer) tag.
            fence(Ordering::Acquire);
            if s.tag.load(Ordering::Relaxed) == seq {
                return Some(Ok(v));
            }
        }
        // Not ours in the slot: not written yet (pending), or reused (lost).
        (done >= seq).then_some(Err(Lost))
    }

    /// Is no request claimed, pending or running?
    pub fn is_free(&self) -> bool {
        self.posted.load(Ordering::Acquire) == self.done.load(Ordering::Acquire)
    }

    /// The notify word of the last published request.
    pub fn notify(&self) -> u64 {
        self.notify.load(Ordering::Relaxed)
    }
}

impl Default for RequestMailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RequestMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMailbox")
            .field("posted", &self.posted.load(Ordering::Relaxed))
            .field("done", &self.done.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
