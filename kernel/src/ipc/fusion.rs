//! Fusion rings (issue 13, item 5; cargo feature `fusion_rings`, on by default): a call
//! channel between a client and a server on different CPUs that skips the endpoint, the
//! scheduler and the IPI while both are busy. Two single-producer single-consumer rings of
//! 128-byte slots (sequence word, info, eight payload words: two cache lines) live in memory
//! both threads see: the client writes a request and polls the reply ring, the server polls
//! the request ring and writes replies. Each side polls for a bounded window
//! ([`POLL_US`]); past it, it records itself as parked and blocks, and the other side wakes
//! it (`sched::wake`: the CPU's mailbox, then its doorbell IPI) only when it finds it
//! parked. The protocol itself (rings, parking, deadlines, stale replies) is
//! `exo_sync::fusion`, generic over the scheduler: host-tested and model-checked by loom
//! there (the ABA of the parked word found on 2026-12-02 among its interleavings); this
//! module gives it the kernel's scheduler ([`Kernel`]), the message layout (info word and
//! eight payload words: 72 bytes of each 128-byte slot) and the endpoint baseline.
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
use exo_arch::tsc::rdtsc;
use exo_sync::fusion::{self as proto, Rings, Words};

/// Slots per ring.
pub const RING: usize = 16;
/// How long a side polls before it parks (µs).
pub const POLL_US: u64 = 50;
/// Whether the fusion path is compiled in (`fusion_rings`).
pub const ENABLED: bool = cfg!(feature = "fusion_rings");

/// A slot's words: the info word, then the payload.
const W: usize = 1 + MSG_WORDS;

/// One client/server channel.
#[derive(Debug)]
pub struct Channel {
    rings: Rings<RING, W>,
    /// The endpoint of the baseline path.
    ep: super::EpRef,
}

/// The kernel's scheduler as the protocol sees it: a thread's mark is its raw tid + 1, the
/// clock is the TSC, blocking is `sched::block_until` and waking `sched::wake`.
struct Kernel;

impl proto::Sched for Kernel {
    fn mark(&self) -> Option<u64> {
        sched::current().map(|t| t.raw() + 1)
    }

    fn now(&self) -> u64 {
        rdtsc()
    }

    fn window(&self) -> u64 {
        POLL_US * (crate::smp::time::tsc_hz() / 1_000_000).max(1)
    }

    fn block_until(&self, deadline: u64, still: impl FnOnce() -> bool) {
        sched::block_until(deadline, still);
    }

    fn wake(&self, mark: u64) {
        sched::wake(Tid::from_raw(mark - 1));
    }
}

fn words_of(m: &Msg) -> Words<W> {
    let mut w = [0; W];
    w[0] = m.info();
    w[1..].copy_from_slice(&m.words);
    w
}

fn msg_of(w: &Words<W>) -> Msg {
    Msg::from_info(w[0], 0, core::array::from_fn(|k| w[1 + k]))
}

fn err(e: proto::Error) -> IpcError {
    match e {
        proto::Error::TimedOut => IpcError::TimedOut,
        proto::Error::Closed => IpcError::Closed,
        proto::Error::NotAThread => IpcError::NotAThread,
        // The kernel's scheduler never reports a peer gone (`Sched::peer_gone`'s default).
        proto::Error::PeerGone => IpcError::PeerDied,
    }
}

impl Channel {
    /// A channel (and the endpoint of its baseline path).
    pub fn new() -> Result<Channel, IpcError> {
        Ok(Channel {
            rings: Rings::new(),
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
        let r = self.rings.call(&Kernel, &words_of(m), deadline);
        r.map(|w| msg_of(&w)).map_err(err)
    }

    /// The baseline: the same call through the endpoint (`call`, slow path across CPUs).
    pub fn call_endpoint(&self, m: &Msg, deadline: u64) -> Result<Msg, IpcError> {
        super::call(self.ep, 0, m, deadline)
    }

    /// Replies the client discarded because their call had timed out.
    pub fn stale(&self) -> u64 {
        self.rings.stale()
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
        let r = self
            .rings
            .serve(&Kernel, deadline, |w| f(&msg_of(w)).map(|r| words_of(&r)));
        r.map_err(err)
    }

    /// The channel's words, for a failure report: each ring's head and tail, the parked
    /// words (raw tid + 1), the misses, the wake-ups, closed.
    pub fn describe(&self) -> alloc::string::String {
        alloc::format!("{}", self.rings)
    }

    /// Whether the client is parked (tests: force the wake-up path).
    pub fn client_is_parked(&self) -> bool {
        self.rings.client_is_parked()
    }

    /// Whether the server is parked (tests).
    pub fn server_is_parked(&self) -> bool {
        self.rings.server_is_parked()
    }

    /// Wake-ups sent so far (a side found its peer parked).
    pub fn wakes(&self) -> u64 {
        self.rings.wakes()
    }

    /// Ends the channel: parked sides wake with `Closed`; the endpoint is destroyed.
    pub fn close(&self) {
        self.rings.close(&Kernel);
        let _ = super::destroy(self.ep);
    }
}

/// A channel dropped without [`Channel::close`] (an error path) destroys its endpoint
/// (nothing if `close` did: the generation is checked). Until 2026-12-05 the endpoint
/// stayed live, with no handle, until reboot (found by review;
/// `ipc.fusion_channel_dropped_gives_its_endpoint_back`). No side can be parked on it: each
/// side holds the channel while it waits.
impl Drop for Channel {
    fn drop(&mut self) {
        let _ = super::destroy(self.ep);
    }
}
