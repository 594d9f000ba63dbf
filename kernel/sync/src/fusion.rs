//! The fusion channel's protocol (the kernel's `ipc::fusion`, issue 13 item 5): two
//! single-producer single-consumer rings of sequence-numbered slots, one for requests and
//! one for replies, between one client thread and one server thread on different CPUs.
//! Each side polls its ring for a bounded window; past it, it records itself as parked
//! and blocks, and the other side wakes it only when it finds it parked. The scheduler is
//! a parameter ([`Sched`]: the kernel's `block_until` and `wake`; a condition variable per
//! thread in the loom model), so the whole protocol is model-checked on the host.
//!
//! **Parking.** The waiter stores its mark (`Sched::mark`, the same at every park of the
//! thread) in its `parked` word, then blocks through [`Sched::block_until`], whose check
//! (`still_parked`, the one check of both waits: for a message, and for room in a full
//! ring) runs after the thread is marked blocked: its mark is still there, its ring is
//! still empty (still full) and the channel is open. The producer publishes its slot (the
//! consumer frees one), then ([`kick_load`], after a full fence) reads the `parked` word
//! and, if it holds a mark, takes it by CAS and wakes that thread ([`kick_finish`]). A full
//! fence on each side between its store and its load makes one of the two see the other.
//!
//! The mark is part of the waiter's check because a producer that read the mark of an
//! earlier park and was delayed before its CAS can clear the mark of a newer park (ABA):
//! its wake-up, finding the thread not yet blocked, does nothing, and without the check
//! that park would block with no mark left for the next producer to find (both sides
//! asleep until their deadlines). The client's two waits share its one parked word, so the
//! late kick of a wait for a reply can meet a wait for room too. The unit tests
//! `late_kick_clears_a_newer_park` and `late_kick_clears_a_newer_park_for_room` force
//! those interleavings step by step; the loom models find the lost wake-ups on their own
//! when the check is removed (`loom_tests::fusion_without_the_mark_check_deadlocks` and
//! `fusion_wait_for_room_without_the_mark_check_deadlocks`, run by CI as checks that must
//! fail).
//!
//! [`FutexSched`] is the scheduler of sides that share only memory (user processes: a
//! futex word per side in the shared region); it is model-checked with the rings too.
//!
//! Every wait has a deadline: a call gives up with [`Error::TimedOut`] (its request may
//! still be served later: replies carry their request's ring position and the next call
//! discards the stale ones first), and the server's waits end at its deadline or when the
//! channel is closed ([`Error::Closed`]). A side whose scheduler can tell that the peer's
//! thread ended ([`Sched::peer_gone`]: [`FutexSched`], told by the system at the peer's
//! end) stops waiting then ([`Error::PeerGone`]): a dead peer costs no deadline.

use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

/// What the channel needs from the scheduler of the thread that calls it.
pub trait Sched {
    /// Busy-wait steps between two looks at the clock while polling.
    const SPINS: u32 = 64;

    /// The calling thread's mark: nonzero, the same at every park of this thread, another
    /// thread's never (`None`: the caller is not a thread that can block).
    fn mark(&self) -> Option<u64>;

    /// The clock the deadlines are in.
    fn now(&self) -> u64;

    /// The poll window before a side parks, in clock units (halved per miss, see
    /// [`Rings::call`]).
    fn window(&self) -> u64;

    /// Marks the calling thread blocked, then blocks unless `still()` (evaluated after the
    /// mark) is false, until a [`Sched::wake`] of its mark or `deadline`. May return
    /// early: callers re-check.
    fn block_until(&self, deadline: u64, still: impl FnOnce() -> bool);

    /// Wakes the thread of `mark` if it is marked blocked; nothing otherwise.
    fn wake(&self, mark: u64);

    /// One busy-wait step.
    fn relax(&self) {
        core::hint::spin_loop();
    }

    /// Whether the system said the other side's thread ended (its waits then end with
    /// [`Error::PeerGone`] once its ring is empty). Kernel threads: never.
    fn peer_gone(&self) -> bool {
        false
    }

    /// Fault injection for the model checker only: `false` drops the mark from the
    /// waiter's check, in both waits (the lost wake-ups of the module header, which the
    /// loom models must find). A constant: the kernel's path has no trace of it.
    #[doc(hidden)]
    const MARK_CHECK: bool = true;
}

/// Why a call or a serve ended without its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The deadline passed.
    TimedOut,
    /// The channel was closed.
    Closed,
    /// The caller cannot block ([`Sched::mark`] returned `None`).
    NotAThread,
    /// The other side's thread ended ([`Sched::peer_gone`]) and left nothing to take.
    PeerGone,
}

/// A message: `W` words (the kernel's: the info word, then eight payload words).
pub type Words<const W: usize> = [u64; W];

#[repr(C, align(128))]
#[derive(Debug)]
struct Slot<const W: usize> {
    seq: AtomicU64,
    /// The position the message is about: its own (a request), or the position of the
    /// request it answers (a reply: [`Rings::serve`]).
    tag: AtomicU64,
    words: [AtomicU64; W],
}

/// A bounded SPSC ring of `N` slots with per-slot sequence numbers (slot `i` is free for
/// position `p` when its sequence is `p`, full when it is `p + 1`).
///
/// Positions and sequences wrap at 2^64 (`N` is a power of two, so a position keeps its
/// slot across the wrap): they live in memory that a user-mode peer writes, and one that
/// stores `u64::MAX` there must not make this side panic. Until 2026-12-06 they were added
/// unchecked, a panic with overflow checks on (found by review).
#[derive(Debug)]
pub struct Ring<const N: usize, const W: usize> {
    slots: [Slot<W>; N],
    /// Next position to write (the producer's alone).
    head: AtomicU64,
    /// Next position to read (the consumer's alone).
    tail: AtomicU64,
}

impl<const N: usize, const W: usize> Default for Ring<N, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const W: usize> Ring<N, W> {
    /// An empty ring.
    pub fn new() -> Self {
        // With one slot, "full at position p" (sequence p + 1) and "free for p + 1" are the
        // same sequence: the second push would overwrite the first (found by a loom model
        // of 2026-12-04 that tried one-slot rings).
        const { assert!(N >= 2, "a ring needs two slots or more") };
        // Positions wrap at 2^64: slot `p % N` is the same on both sides of the wrap only
        // when `N` divides 2^64.
        const { assert!(N.is_power_of_two(), "a ring's slots are a power of two") };
        Ring {
            slots: core::array::from_fn(|i| Slot {
                seq: AtomicU64::new(i as u64),
                tag: AtomicU64::new(0),
                words: core::array::from_fn(|_| AtomicU64::new(0)),
            }),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        }
    }

    /// Writes `m` if a slot is free (producer only); returns its position (the count of
    /// messages pushed before it), which is also its tag ([`Ring::pop`]).
    pub fn push(&self, m: &Words<W>) -> Option<u64> {
        self.push_tagged(m, None)
    }

    /// [`Ring::push`] with the tag `tag` instead of the message's own position.
    pub fn push_tagged(&self, m: &Words<W>, tag: Option<u64>) -> Option<u64> {
        let h = self.head.load(Ordering::Relaxed);
        let s = &self.slots[h as usize % N];
        if s.seq.load(Ordering::Acquire) != h {
            return None;
        }
        s.tag.store(tag.unwrap_or(h), Ordering::Relaxed);
        for (d, w) in s.words.iter().zip(m) {
            d.store(*w, Ordering::Relaxed);
        }
        s.seq.store(h.wrapping_add(1), Ordering::Release);
        self.head.store(h.wrapping_add(1), Ordering::Relaxed);
        Some(h)
    }

    /// Whether every slot holds a message not taken yet (producer only).
    pub fn full(&self) -> bool {
        let h = self.head.load(Ordering::Relaxed);
        self.slots[h as usize % N].seq.load(Ordering::Acquire) != h
    }

    /// Whether a message waits (consumer only).
    pub fn ready(&self) -> bool {
        let t = self.tail.load(Ordering::Relaxed);
        self.slots[t as usize % N].seq.load(Ordering::Acquire) == t.wrapping_add(1)
    }

    /// Takes the next message, if one waits, with its tag (consumer only): its position,
    /// unless it was pushed with another ([`Ring::push_tagged`]).
    pub fn pop(&self) -> Option<(u64, Words<W>)> {
        let t = self.tail.load(Ordering::Relaxed);
        let s = &self.slots[t as usize % N];
        if s.seq.load(Ordering::Acquire) != t.wrapping_add(1) {
            return None;
        }
        let tag = s.tag.load(Ordering::Relaxed);
        let words = core::array::from_fn(|k| s.words[k].load(Ordering::Relaxed));
        s.seq.store(t.wrapping_add(N as u64), Ordering::Release);
        self.tail.store(t.wrapping_add(1), Ordering::Relaxed);
        Some((tag, words))
    }

    /// Next position to write and next to read (a snapshot, for reports).
    pub fn positions(&self) -> (u64, u64) {
        (
            self.head.load(Ordering::Relaxed),
            self.tail.load(Ordering::Relaxed),
        )
    }
}

/// The waiter's check, the only one (both waits, [`Side::wait_pop`] and `push_until`, block
/// through it): whether a side that stored its `mark` in `parked` (and is marked blocked)
/// must block. Its mark is still there (see the module header: a late producer's CAS may
/// have taken it), `waiting()` still holds (its ring is empty, or full for a push) and the
/// channel is open. [`Sched::MARK_CHECK`] `false` drops the mark (the model's fault
/// injection). Until 2026-12-06 each wait had its own copy and the fault injection reached
/// only the empty-ring one: removing the mark from the wait for room passed every test
/// (found by review).
fn still_parked<S: Sched>(
    parked: &AtomicU64,
    mark: u64,
    closed: &AtomicBool,
    waiting: impl FnOnce() -> bool,
) -> bool {
    (!S::MARK_CHECK || parked.load(Ordering::SeqCst) == mark)
        && waiting()
        && !closed.load(Ordering::Acquire)
}

/// The first half of a producer's kick: the mark of a parked consumer (0: none), read after
/// a full fence that orders it after the message's publication.
pub fn kick_load(parked: &AtomicU64) -> u64 {
    fence(Ordering::SeqCst);
    parked.load(Ordering::SeqCst)
}

/// The second half of a kick: takes mark `p` if it is still there and wakes its thread;
/// returns whether it did.
pub fn kick_finish(s: &impl Sched, parked: &AtomicU64, p: u64) -> bool {
    let took = p != 0
        && parked
            .compare_exchange(p, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
    if took {
        // Orders the mark's removal before the wake-up's read of the waiter's state: a
        // waiter that marks itself blocked with a plain store (the kernel's scheduler),
        // fences, then reads the mark (`still_parked`) and this side then cannot both read
        // the old value. `FutexSched`'s word is written by read-modify-writes only and does
        // not need it; x86's locked CAS is a full barrier anyway. Paid per wake-up only.
        fence(Ordering::SeqCst);
        s.wake(p);
    }
    took
}

/// The shared part of a fusion channel: both rings, both parked words, the counters.
#[derive(Debug)]
pub struct Rings<const N: usize, const W: usize> {
    req: Ring<N, W>,
    rep: Ring<N, W>,
    /// The mark of a parked client / server (0: polling or running).
    client_parked: AtomicU64,
    server_parked: AtomicU64,
    /// Wake-ups sent (how often a side had to sleep).
    wakes: AtomicU64,
    /// Waits of the client / server that ended parked in a row (the poll window's shift).
    client_misses: AtomicU64,
    server_misses: AtomicU64,
    /// Replies the client discarded: answers to calls that had timed out.
    stale: AtomicU64,
    /// Replies the server gave up: the reply ring stayed full until its deadline or close.
    lost: AtomicU64,
    closed: AtomicBool,
}

/// One side's view for a wait: its ring to pop, its parked word, its misses.
struct Side<'a, const N: usize, const W: usize> {
    ring: &'a Ring<N, W>,
    parked: &'a AtomicU64,
    misses: &'a AtomicU64,
    closed: &'a AtomicBool,
}

impl<const N: usize, const W: usize> Side<'_, N, W> {
    /// How the wait ends if no message can come any more (closed, or the peer gone): with
    /// the peer's last message if one came after all (it may land between a look at the
    /// ring and the look at the end, having been published before the end), else the error.
    fn ended<S: Sched>(&self, s: &S) -> Option<Result<(u64, Words<W>), Error>> {
        ended(s, self.closed)
            .err()
            .map(|e| self.ring.pop().ok_or(e))
    }

    /// What a side does when its ring is empty: poll, then park until the other side wakes
    /// it. The window adapts: [`Sched::window`] while polling pays, halved after each wait
    /// that ended parked anyway (down to 1/32: the peer is not running alongside, e.g. its
    /// CPU is time-shared), back to full as soon as a poll finds the message. Returns the
    /// message and its position; `TimedOut` at `deadline`.
    fn wait_pop<S: Sched>(&self, s: &S, deadline: u64) -> Result<(u64, Words<W>), Error> {
        let shift = self.misses.load(Ordering::Relaxed).min(5);
        let end = s.now().saturating_add(s.window() >> shift).min(deadline);
        // `relax` between two looks, not after the last: a model checker's yield there
        // would hand the peer a free turn right before the park (hiding interleavings).
        loop {
            for i in 0..S::SPINS.max(1) {
                if i > 0 {
                    s.relax();
                }
                if let Some(m) = self.ring.pop() {
                    self.misses.store(0, Ordering::Relaxed);
                    return Ok(m);
                }
            }
            if let Some(last) = self.ended(s) {
                return last;
            }
            let now = s.now();
            if now >= end {
                // A wait that ends polling is no miss: the window shrinks only for waits
                // that park. Until 2026-12-06 one that timed out here counted one too (and
                // halved the next window; found by review).
                if now >= deadline {
                    return Err(Error::TimedOut);
                }
                break;
            }
            s.relax();
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mark = s.mark().ok_or(Error::NotAThread)?;
        loop {
            if s.now() >= deadline {
                return Err(Error::TimedOut);
            }
            self.parked.store(mark, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            s.block_until(deadline, || {
                still_parked::<S>(self.parked, mark, self.closed, || !self.ring.ready())
            });
            self.parked.store(0, Ordering::SeqCst);
            if let Some(m) = self.ring.pop() {
                return Ok(m);
            }
            if let Some(last) = self.ended(s) {
                return last;
            }
        }
    }
}

/// What [`FutexSched`] needs from the system: a clock and a futex.
pub trait Futex {
    /// Busy-wait steps between two looks at the clock while polling ([`Sched::SPINS`]).
    const SPINS: u32 = 64;

    /// The clock the deadlines are in.
    fn now(&self) -> u64;

    /// The poll window before a side parks, in clock units.
    fn window(&self) -> u64;

    /// Sleeps while `word` holds `expected` (the check atomic with respect to [`Futex::wake`]),
    /// until woken or `deadline`. May return early.
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: u64);

    /// Wakes the sleepers of `word`.
    fn wake(&self, word: &AtomicU32);

    /// One busy-wait step.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

/// A side's futex word: its peer's thread ended. Zero, so that the system can say so the
/// way Linux's `set_tid_address` does: at the peer thread's end it stores 0 in the word the
/// peer registered (this side's) and wakes it. Final: the peer writes the word no more.
pub const GONE: u32 = 0;
/// A side's futex word: running (or polling).
pub const RUNNING: u32 = 1;
/// A side's futex word: marked blocked, about to check its ring one last time.
pub const BLOCKED: u32 = 2;
/// A side's futex word: committed to sleep on the word until woken or its deadline.
pub const ASLEEP: u32 = 3;
/// A side's futex word: woken.
pub const READY: u32 = 4;

/// The scheduler of a channel whose sides are threads of processes that share only memory:
/// each side blocks on its own futex word (`words[mark - 1]`, mark 1 the client, 2 the
/// server), in memory both see. Blocking marks the word [`BLOCKED`], runs the waiter's check,
/// then turns it [`ASLEEP`] by CAS and sleeps while it stays so; a wake-up swaps in
/// [`READY`] and calls the futex only if it took [`ASLEEP`]. A wake-up between the check and
/// the sleep makes the CAS or the futex's value check fail: the sleep does not happen or
/// returns at once. A word found [`GONE`] (the peer ended; written once by the system, after
/// the peer's last write) is put back and ends the wait: [`Sched::peer_gone`] then holds.
/// The words start [`RUNNING`]. Model-checked with the rings (`loom_tests`, a futex made of
/// a mutex and a condition variable), the peer's end included.
#[derive(Debug)]
pub struct FutexSched<'a, F> {
    /// The calling side: 1 (client) or 2 (server).
    pub mark: u64,
    /// Both sides' futex words.
    pub words: &'a [AtomicU32; 2],
    /// The system's futex and clock.
    pub futex: F,
}

impl<F: Futex> Sched for FutexSched<'_, F> {
    const SPINS: u32 = F::SPINS;

    fn mark(&self) -> Option<u64> {
        Some(self.mark)
    }

    fn now(&self) -> u64 {
        self.futex.now()
    }

    fn window(&self) -> u64 {
        self.futex.window()
    }

    fn block_until(&self, deadline: u64, still: impl FnOnce() -> bool) {
        // Every write to the word is a read-modify-write, so each reads the one before it
        // and the word's history is one chain: with plain stores here beside the waker's
        // swap, loom reports a lost wake-up (the swap taking an older value than the
        // waiter's ASLEEP). On x86 a swap is one locked instruction, paid per park only.
        // GONE, once there, is the last write of anyone but this side: put back (a swap
        // too, so the word stays written by read-modify-writes alone).
        let w = &self.words[self.mark as usize - 1];
        if w.swap(BLOCKED, Ordering::SeqCst) == GONE {
            w.swap(GONE, Ordering::SeqCst);
            return;
        }
        fence(Ordering::SeqCst);
        if still()
            && w.compare_exchange(BLOCKED, ASLEEP, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            && self.futex.now() < deadline
        {
            self.futex.wait(w, ASLEEP, deadline);
        }
        if w.swap(RUNNING, Ordering::SeqCst) == GONE {
            w.swap(GONE, Ordering::SeqCst);
        }
    }

    fn peer_gone(&self) -> bool {
        self.words[self.mark as usize - 1].load(Ordering::SeqCst) == GONE
    }

    fn wake(&self, mark: u64) {
        // A swap, not a CAS from the state a load or a failed CAS saw: those are plain
        // reads and may return an older value (loom found a wake-up lost that way: a failed
        // CAS read the previous wake-up's READY while the waiter was ASLEEP). A READY left
        // on a running side is harmless: its next park stores BLOCKED first. The mark comes
        // from the parked word in memory the peer also writes: anything but 1 or 2 is the
        // peer's doing and wakes nobody (until 2026-12-04 it indexed out of bounds: a hostile
        // peer made this side panic).
        let Some(w) = (mark as usize)
            .checked_sub(1)
            .and_then(|i| self.words.get(i))
        else {
            return;
        };
        if w.swap(READY, Ordering::SeqCst) == ASLEEP {
            self.futex.wake(w);
        }
    }

    fn relax(&self) {
        self.futex.relax();
    }
}

/// `Closed` once `closed`, `PeerGone` once the scheduler says the other side ended.
fn ended(s: &impl Sched, closed: &AtomicBool) -> Result<(), Error> {
    if closed.load(Ordering::Acquire) {
        return Err(Error::Closed);
    }
    if s.peer_gone() {
        return Err(Error::PeerGone);
    }
    Ok(())
}

/// A producer's push into `ring` ([`Ring::push_tagged`] with `tag`): the message's
/// position. While the ring is full it looks [`Sched::SPINS`] times, then parks the way a
/// consumer does (its mark in `parked`, its own parked word, checked again after it is
/// marked blocked: mark there, ring still full, channel open) until the consumer's kick
/// after a pop, `deadline` (`TimedOut`) or the end (`Closed`, `PeerGone`). `make_room` runs
/// before each look (the client discards stale replies there). Until 2026-12-04 this
/// polled to the deadline: a server with no deadline held the CPU while the reply ring
/// stayed full and the client was idle.
#[allow(clippy::too_many_arguments)]
fn push_until<S: Sched, const N: usize, const W: usize>(
    s: &S,
    ring: &Ring<N, W>,
    m: &Words<W>,
    tag: Option<u64>,
    parked: &AtomicU64,
    closed: &AtomicBool,
    deadline: u64,
    mut make_room: impl FnMut(),
) -> Result<u64, Error> {
    if let Some(pos) = ring.push_tagged(m, tag) {
        return Ok(pos);
    }
    // `relax` between two looks, not after the last (as in `wait_pop`): a model checker's
    // yield right before the park handed the peer a free turn there, and the late kick of
    // the module header could never meet this park.
    for _ in 1..S::SPINS {
        s.relax();
        make_room();
        if let Some(pos) = ring.push_tagged(m, tag) {
            return Ok(pos);
        }
        ended(s, closed)?;
    }
    let mark = s.mark().ok_or(Error::NotAThread)?;
    loop {
        make_room();
        if let Some(pos) = ring.push_tagged(m, tag) {
            return Ok(pos);
        }
        ended(s, closed)?;
        if s.now() >= deadline {
            return Err(Error::TimedOut);
        }
        parked.store(mark, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        s.block_until(deadline, || {
            still_parked::<S>(parked, mark, closed, || ring.full())
        });
        parked.store(0, Ordering::SeqCst);
    }
}

impl<const N: usize, const W: usize> Default for Rings<N, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const W: usize> Rings<N, W> {
    /// An open channel, both rings empty.
    pub fn new() -> Self {
        Rings {
            req: Ring::new(),
            rep: Ring::new(),
            client_parked: AtomicU64::new(0),
            server_parked: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
            client_misses: AtomicU64::new(0),
            server_misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn client(&self) -> Side<'_, N, W> {
        Side {
            ring: &self.rep,
            parked: &self.client_parked,
            misses: &self.client_misses,
            closed: &self.closed,
        }
    }

    fn server(&self) -> Side<'_, N, W> {
        Side {
            ring: &self.req,
            parked: &self.server_parked,
            misses: &self.server_misses,
            closed: &self.closed,
        }
    }

    /// After publishing: wakes the consumer whose parked word is `parked` if it parked.
    fn kick(&self, s: &impl Sched, parked: &AtomicU64) {
        if kick_finish(s, parked, kick_load(parked)) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends `m` and waits for its reply until `deadline` (`TimedOut`), `Closed` once the
    /// channel is closed, `PeerGone` once the server's thread ended without answering. One
    /// client thread per channel. Replies to earlier calls that timed out are discarded on
    /// the way (counted: [`Rings::stale`]).
    pub fn call<S: Sched>(&self, s: &S, m: &Words<W>, deadline: u64) -> Result<Words<W>, Error> {
        // A closed channel takes no new call (one racing the close may still be served).
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // The reply to this request carries its position (its tag), whatever the replies
        // before it became. While the request ring is full, the server's kick after its
        // next reply wakes this side; replies waiting meanwhile answer calls that timed
        // out (none is in flight) and are discarded, which may be what lets the server on.
        let pos = push_until(
            s,
            &self.req,
            m,
            None,
            &self.client_parked,
            &self.closed,
            deadline,
            || self.discard_stale(s),
        )?;
        self.kick(s, &self.server_parked);
        loop {
            let (at, r) = self.client().wait_pop(s, deadline)?;
            if at == pos {
                return Ok(r);
            }
            self.stale.fetch_add(1, Ordering::Relaxed);
            // The ring had room for one more reply: a server waiting for it parks.
            self.kick(s, &self.server_parked);
            // `wait_pop` returns a message before it looks at the clock: a peer that keeps
            // publishing stale replies (the rings live in memory a user-mode peer writes)
            // held the call past its deadline for as long as it went on, until 2026-12-05
            // (found by review; `call_deadline_holds_against_a_flood_of_stale_replies`).
            if s.now() >= deadline {
                return Err(Error::TimedOut);
            }
        }
    }

    /// Discards every reply waiting (the client's, with no call in flight: they answer
    /// calls that timed out), waking a server that waits for room.
    /// At most `N` (one ring's worth) per call: a peer publishing as fast as they go held
    /// it for good, until 2026-12-05; the caller (`push_until`) looks again, with its
    /// deadline.
    fn discard_stale(&self, s: &impl Sched) {
        let mut any = false;
        for _ in 0..N {
            if self.rep.pop().is_none() {
                break;
            }
            self.stale.fetch_add(1, Ordering::Relaxed);
            any = true;
        }
        if any {
            self.kick(s, &self.server_parked);
        }
    }

    /// Serves calls with `f` until `f` returns `None` (that call is answered with the
    /// request itself, then it returns), the channel is closed (`Closed`), the client's
    /// thread ended (`PeerGone`, once no request is left) or `deadline` passes
    /// (`TimedOut`). One server thread per channel.
    pub fn serve<S: Sched>(
        &self,
        s: &S,
        deadline: u64,
        mut f: impl FnMut(&Words<W>) -> Option<Words<W>>,
    ) -> Result<(), Error> {
        loop {
            let (at, m) = self.server().wait_pop(s, deadline)?;
            let (r, last) = match f(&m) {
                Some(r) => (r, false),
                None => (m, true),
            };
            // Full only while the client has stopped calling after calls that timed out:
            // this side parks until the client's next call takes a stale reply (its kick),
            // bounded by the deadline and close. A reply given up here is lost, and only
            // it: each reply carries the position of its request (`at`), so later calls
            // still find their own. Until 2026-12-04 the client matched a reply's own ring
            // position, and one lost reply made every later call time out.
            let pushed = push_until(
                s,
                &self.rep,
                &r,
                Some(at),
                &self.server_parked,
                &self.closed,
                deadline,
                || {},
            );
            if let Err(e) = pushed {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            self.kick(s, &self.client_parked);
            if last {
                return Ok(());
            }
        }
    }

    /// Closes the channel: parked sides wake and return `Closed`.
    pub fn close(&self, s: &impl Sched) {
        self.closed.store(true, Ordering::Release);
        self.kick(s, &self.client_parked);
        self.kick(s, &self.server_parked);
    }

    /// Replies the client discarded because their call had timed out.
    pub fn stale(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// Replies the server gave up because the reply ring stayed full (see [`Rings::serve`]).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Wake-ups sent so far (a side found its peer parked).
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Whether a request waits (the server's own view: it reads the request ring's tail).
    pub fn request_waiting(&self) -> bool {
        self.req.ready()
    }

    /// Whether the client is parked.
    pub fn client_is_parked(&self) -> bool {
        self.client_parked.load(Ordering::Acquire) != 0
    }

    /// Whether the server is parked.
    pub fn server_is_parked(&self) -> bool {
        self.server_parked.load(Ordering::Acquire) != 0
    }
}

impl<const N: usize, const W: usize> core::fmt::Display for Rings<N, W> {
    /// The channel's words, for a failure report: each ring's (head, tail), the parked
    /// words, the misses, the wake-ups, closed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "req (head, tail) {:?}, rep {:?}, client_parked {:#x}, server_parked {:#x}, misses client {} server {}, wakes {}, closed {}",
            self.req.positions(),
            self.rep.positions(),
            self.client_parked.load(Ordering::Relaxed),
            self.server_parked.load(Ordering::Relaxed),
            self.client_misses.load(Ordering::Relaxed),
            self.server_misses.load(Ordering::Relaxed),
            self.wakes.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed)
        )
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
