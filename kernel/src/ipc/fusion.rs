//! Fusion rings (issue 13, item 5; cargo feature `fusion_rings`, on by default): a call
//! channel between a client and a server on different CPUs that skips the endpoint, the
//! scheduler and the IPI while both are busy. Two single-producer single-consumer rings of
//! 128-byte slots (sequence word, info, eight payload words: two cache lines) live in memory
//! both threads see: the client writes a request and polls the reply ring, the server polls
//! the request ring and writes replies. Each side polls for a bounded window
//! ([`POLL_US`]); past it, it records itself as parked and blocks, and the other side wakes
//! it (`sched::wake`: the CPU's mailbox, then its doorbell IPI) only when it finds it
//! parked. Parking is race-free: the waiter stores its parked word then re-checks the ring
//! and that its word is still there ([`still_parked`]: a late producer may clear the mark of
//! a newer park, ABA); the producer publishes the slot then reads the parked word, both with
//! a full fence between, so one of the two always sees the other.
//!
//! Every wait has a deadline: a call gives up with `TimedOut` at its TSC deadline (the
//! request may still be served later: replies carry their request's ring position, and the
//! next call discards the stale ones first), and the server's waits end at its deadline or
//! when the channel is closed.
//!
//! With the feature off, [`Channel::call`] and [`Channel::serve`] take the endpoint path
//! (`call` / `reply_recv` on the channel's endpoint): the seed's baseline, the same API.
//! The endpoint path stays callable at run time either way ([`Channel::call_endpoint`]), so
//! one bench run measures both (`ipc.rtt.64.xcore.<a>.<b>` and `.base.<a>.<b>`).

use super::{IpcError, MSG_WORDS, Msg};
use crate::sched::{self, Tid};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use exo_arch::tsc::rdtsc;

/// Slots per ring.
pub const RING: usize = 16;
/// How long a side polls before it parks (µs).
pub const POLL_US: u64 = 50;
/// Whether the fusion path is compiled in (`fusion_rings`).
pub const ENABLED: bool = cfg!(feature = "fusion_rings");

#[repr(C, align(128))]
#[derive(Debug)]
struct Slot {
    seq: AtomicU64,
    info: AtomicU64,
    words: [AtomicU64; MSG_WORDS],
}

/// A bounded SPSC ring with per-slot sequence numbers (slot `i` is free for position `p`
/// when its sequence is `p`, full when it is `p + 1`).
#[derive(Debug)]
pub(super) struct Ring {
    slots: [Slot; RING],
    /// Next position to write (the producer's alone).
    head: AtomicU64,
    /// Next position to read (the consumer's alone).
    tail: AtomicU64,
}

impl Ring {
    pub(super) fn new() -> Ring {
        Ring {
            slots: core::array::from_fn(|i| Slot {
                seq: AtomicU64::new(i as u64),
                info: AtomicU64::new(0),
                words: [const { AtomicU64::new(0) }; MSG_WORDS],
            }),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        }
    }

    /// Writes `m` if a slot is free; returns its position (the count of messages pushed
    /// before it).
    pub(super) fn push(&self, m: &Msg) -> Option<u64> {
        let h = self.head.load(Ordering::Relaxed);
        let s = &self.slots[h as usize % RING];
        if s.seq.load(Ordering::Acquire) != h {
            return None;
        }
        s.info.store(m.info(), Ordering::Relaxed);
        for (d, w) in s.words.iter().zip(m.words) {
            d.store(w, Ordering::Relaxed);
        }
        s.seq.store(h + 1, Ordering::Release);
        self.head.store(h + 1, Ordering::Relaxed);
        Some(h)
    }

    /// Whether a message waits.
    fn ready(&self) -> bool {
        let t = self.tail.load(Ordering::Relaxed);
        self.slots[t as usize % RING].seq.load(Ordering::Acquire) == t + 1
    }

    /// Takes the next message, if one waits, with its position.
    pub(super) fn pop(&self) -> Option<(u64, Msg)> {
        let t = self.tail.load(Ordering::Relaxed);
        let s = &self.slots[t as usize % RING];
        if s.seq.load(Ordering::Acquire) != t + 1 {
            return None;
        }
        let info = s.info.load(Ordering::Relaxed);
        let words = core::array::from_fn(|k| s.words[k].load(Ordering::Relaxed));
        s.seq.store(t + RING as u64, Ordering::Release);
        self.tail.store(t + 1, Ordering::Relaxed);
        Some((t, Msg::from_info(info, 0, words)))
    }
}

/// One client/server channel.
#[derive(Debug)]
pub struct Channel {
    req: Ring,
    rep: Ring,
    /// Raw tid + 1 of a parked client / server (0: polling or running).
    client_parked: AtomicU64,
    server_parked: AtomicU64,
    /// Wake-ups sent (for the report: how often a side had to sleep).
    wakes: AtomicU64,
    /// Waits of the client / server that ended parked in a row (the poll window's shift).
    client_misses: AtomicU64,
    server_misses: AtomicU64,
    /// Replies the client discarded: answers to calls that had timed out.
    stale: AtomicU64,
    closed: AtomicBool,
    /// The endpoint of the baseline path.
    ep: super::EpRef,
}

/// What a side does when its ring is empty: poll, then park until the other side wakes it.
/// The window adapts: [`POLL_US`] while polling pays, halved after each wait that ended
/// parked anyway (down to 1/32: the peer is not running alongside, e.g. its CPU is
/// time-shared), back to full as soon as a poll finds the message. `misses` is the side's
/// own count. Returns the message and its position; `TimedOut` at TSC `deadline`.
fn wait_pop(
    ring: &Ring,
    parked: &AtomicU64,
    closed: &AtomicBool,
    misses: &AtomicU64,
    deadline: u64,
) -> Result<(u64, Msg), IpcError> {
    let shift = misses.load(Ordering::Relaxed).min(5);
    let window = (POLL_US * (crate::smp::time::tsc_hz() / 1_000_000).max(1)) >> shift;
    let end = rdtsc().saturating_add(window).min(deadline);
    loop {
        for _ in 0..64 {
            if let Some(m) = ring.pop() {
                misses.store(0, Ordering::Relaxed);
                return Ok(m);
            }
            core::hint::spin_loop();
        }
        if closed.load(Ordering::Acquire) {
            return Err(IpcError::Closed);
        }
        if rdtsc() >= end {
            break;
        }
    }
    misses.fetch_add(1, Ordering::Relaxed);
    loop {
        if rdtsc() >= deadline {
            return Err(IpcError::TimedOut);
        }
        let mark = sched::current().ok_or(IpcError::NotAThread)?.raw() + 1;
        parked.store(mark, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        sched::block_until(deadline, || still_parked(ring, parked, mark, closed));
        parked.store(0, Ordering::SeqCst);
        if let Some(m) = ring.pop() {
            return Ok(m);
        }
        if closed.load(Ordering::Acquire) {
            return Err(IpcError::Closed);
        }
    }
}

/// Whether a side that stored its `mark` in `parked` (and is marked blocked) must block:
/// its mark is still there, no message waits, the channel is open.
///
/// The mark is part of the test because every park of a thread stores the same value: a
/// producer that read the mark of an earlier park and was delayed before its CAS can clear
/// the mark of this one (ABA), and its wake-up, finding the thread not yet blocked, does
/// nothing. Its message was taken already (by that earlier park's own re-check), so without
/// the mark in the test this park would block with no mark left for the next producer to
/// find: both sides asleep until their deadlines (kernel test
/// `ipc.fusion_park_whose_mark_a_late_kick_cleared_does_not_block`, seen before as a 60 s
/// stall once in ~15 runs of `ipc.fusion_rings_across_cpus` at -smp 4). A cleared mark now
/// either comes before this load (no block: the side parks again) or after it, when the
/// side is already marked blocked, so the producer's wake-up finds it.
pub(super) fn still_parked(
    ring: &Ring,
    parked: &AtomicU64,
    mark: u64,
    closed: &AtomicBool,
) -> bool {
    parked.load(Ordering::SeqCst) == mark && !ring.ready() && !closed.load(Ordering::Acquire)
}

/// Pushes `m` into `ring`, waiting (bounded by `deadline`, ended by `closed`) while it is
/// full; returns the message's position.
fn push_until(ring: &Ring, m: &Msg, closed: &AtomicBool, deadline: u64) -> Result<u64, IpcError> {
    loop {
        if let Some(pos) = ring.push(m) {
            return Ok(pos);
        }
        if closed.load(Ordering::Acquire) {
            return Err(IpcError::Closed);
        }
        if rdtsc() >= deadline {
            return Err(IpcError::TimedOut);
        }
        core::hint::spin_loop();
    }
}

/// After publishing into a ring: wakes the consumer if it parked.
fn kick(parked: &AtomicU64, wakes: &AtomicU64) {
    kick_finish(parked, kick_load(parked), wakes);
}

/// The first half of [`kick`]: the mark of a parked consumer (0: none), read after a full
/// fence that orders it after the message's publication.
pub(super) fn kick_load(parked: &AtomicU64) -> u64 {
    fence(Ordering::SeqCst);
    parked.load(Ordering::SeqCst)
}

/// The second half of [`kick`]: takes mark `p` (if it is still there) and wakes its thread.
pub(super) fn kick_finish(parked: &AtomicU64, p: u64, wakes: &AtomicU64) {
    if p != 0
        && parked
            .compare_exchange(p, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        wakes.fetch_add(1, Ordering::Relaxed);
        sched::wake(Tid::from_raw(p - 1));
    }
}

impl Channel {
    /// A channel (and the endpoint of its baseline path).
    pub fn new() -> Result<Channel, IpcError> {
        Ok(Channel {
            req: Ring::new(),
            rep: Ring::new(),
            client_parked: AtomicU64::new(0),
            server_parked: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
            client_misses: AtomicU64::new(0),
            server_misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            ep: super::create()?,
        })
    }

    /// Sends `m` and waits for the reply until TSC `deadline` (`TimedOut`): the rings when
    /// compiled in, else the endpoint. One client thread per channel. Replies to earlier
    /// calls that timed out are discarded on the way (counted: [`Channel::stale`]).
    pub fn call(&self, m: &Msg, deadline: u64) -> Result<Msg, IpcError> {
        if !ENABLED {
            return self.call_endpoint(m, deadline);
        }
        // The server answers in order: the reply to this request has its position.
        let pos = push_until(&self.req, m, &self.closed, deadline)?;
        kick(&self.server_parked, &self.wakes);
        loop {
            let (at, r) = wait_pop(
                &self.rep,
                &self.client_parked,
                &self.closed,
                &self.client_misses,
                deadline,
            )?;
            if at == pos {
                return Ok(r);
            }
            self.stale.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The baseline: the same call through the endpoint (`call`, slow path across CPUs).
    pub fn call_endpoint(&self, m: &Msg, deadline: u64) -> Result<Msg, IpcError> {
        super::call(self.ep, 0, m, deadline)
    }

    /// Replies the client discarded because their call had timed out.
    pub fn stale(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// Serves calls with `f` until `f` returns `None` (that call is answered with the
    /// request itself, then the server returns), the channel is closed (`Closed`) or TSC
    /// `deadline` passes (`TimedOut`). One server thread per channel; `endpoint`: serve the
    /// baseline path instead (or when the rings are compiled out).
    pub fn serve(
        &self,
        endpoint: bool,
        deadline: u64,
        mut f: impl FnMut(&Msg) -> Option<Msg>,
    ) -> Result<(), IpcError> {
        if endpoint || !ENABLED {
            let mut m = super::recv(self.ep, deadline)?;
            loop {
                let (r, last) = match f(&m) {
                    Some(r) => (r, false),
                    None => (m, true),
                };
                if last {
                    return super::reply(&r);
                }
                m = super::reply_recv(self.ep, &r, deadline)?;
            }
        }
        loop {
            let (_, m) = wait_pop(
                &self.req,
                &self.server_parked,
                &self.closed,
                &self.server_misses,
                deadline,
            )?;
            let (r, last) = match f(&m) {
                Some(r) => (r, false),
                None => (m, true),
            };
            // Full only while the client has stopped calling after calls that timed out
            // (its next call drains the stale replies): bounded by the deadline and close.
            push_until(&self.rep, &r, &self.closed, deadline)?;
            kick(&self.client_parked, &self.wakes);
            if last {
                return Ok(());
            }
        }
    }

    /// The channel's words, for a failure report: each ring's head and tail, the parked
    /// words (raw tid + 1), the misses, the wake-ups, closed.
    pub fn describe(&self) -> alloc::string::String {
        let r = |g: &Ring| {
            (
                g.head.load(Ordering::Relaxed),
                g.tail.load(Ordering::Relaxed),
            )
        };
        alloc::format!(
            "req (head, tail) {:?}, rep {:?}, client_parked {:#x}, server_parked {:#x}, misses client {} server {}, wakes {}, closed {}",
            r(&self.req),
            r(&self.rep),
            self.client_parked.load(Ordering::Relaxed),
            self.server_parked.load(Ordering::Relaxed),
            self.client_misses.load(Ordering::Relaxed),
            self.server_misses.load(Ordering::Relaxed),
            self.wakes.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed)
        )
    }

    /// Whether the client is parked (tests: force the wake-up path).
    pub fn client_is_parked(&self) -> bool {
        self.client_parked.load(Ordering::Acquire) != 0
    }

    /// Whether the server is parked (tests).
    pub fn server_is_parked(&self) -> bool {
        self.server_parked.load(Ordering::Acquire) != 0
    }

    /// Wake-ups sent so far (a side found its peer parked).
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Ends the channel: parked sides wake with `Closed`; the endpoint is destroyed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        kick(&self.client_parked, &self.wakes);
        kick(&self.server_parked, &self.wakes);
        let _ = super::destroy(self.ep);
    }
}
