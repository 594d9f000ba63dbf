//! Fusion channels between processes (issue 13, item 5, in user mode): the protocol of
//! `exo_sync::fusion` (two SPSC rings, each side polls for a bounded window, parks, and is
//! woken only when found parked) in the shared region of an endpoint (`shm_map`), with
//! the parking done by its `FutexSched` on shared futexes (`futex_wait_shared`, keyed by
//! physical address, so each process may map the region anywhere). Both the rings and
//! that parking are model-checked by loom in `exo_sync`. While both
//! sides are busy a call costs no system call at all.
//!
//! One client thread and one server thread per channel (the client parks as mark 1, the
//! server as mark 2). The creator ([`Channel::create`]) builds the rings in a new region
//! and passes the endpoint's handle (inherited by a child, or in a message); the peer
//! [`Channel::open`]s it. Both must be built from this crate's same version: the region
//! starts with a word made of a magic number and the layout's size, which `open` checks
//! (`EINVAL` otherwise).
//!
//! Every wait has a deadline (`timeout_ns`, 0: none): a call gives up with `ETIMEDOUT` (a
//! late reply is discarded by the next call), and a closed channel ends both sides'
//! waits with `EPIPE`. A peer that dies, however (exit, a fault, its process killed), ends
//! the other side's waits with `ECONNRESET` once no message of its is left: the thread
//! that first calls or serves names its peer's futex word with `set_tid_address`, and the
//! kernel clears that word (`exo_sync::fusion::GONE`) and wakes it at the thread's end.
//! That word is the thread's one `set_tid_address` word: a thread is the side of one
//! channel at a time (`set_tid_address` replaces: the last channel it bound, called or
//! served on first is the one told of its end), and a `Channel` value names its side once,
//! from the thread that first binds, calls or serves with it. A thread can name itself its
//! side's thread before its first call or serve ([`Channel::bind`], or
//! [`Channel::open_as`] at once): its end is then seen even if
//! it never calls or serves (until 2026-12-05 a peer that ended before its first call or
//! serve was not seen, and a wait for it without a timeout waited for good). A peer that
//! ends before it even opens the channel is still not seen: only a timeout ends that wait.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use exo_abi::ipc::{RIGHT_RECV, RIGHT_SEND};
use exo_sync::fusion::{self as proto, ASLEEP, Futex, FutexSched, RUNNING, Rings, Words};

use crate::time::{rdtsc, tsc_hz};
use crate::{Errno, IpcMsg, Timespec};

/// Slots per ring.
pub const RING: usize = 16;
/// How long a side polls before it parks (µs).
pub const POLL_US: u64 = 50;
/// A slot's words: label and length, then the eight payload words.
const W: usize = 9;

/// `"exofusn3"` (3: the futex words' encoding with `GONE`), xor the layout's size.
const MAGIC: u64 = 0x6578_6f66_7573_6e33 ^ core::mem::size_of::<Shared>() as u64;

/// Test support: the first word of a channel's region (what a test writes to forge one).
#[doc(hidden)]
pub fn region_magic() -> u64 {
    MAGIC
}

/// The region's contents.
#[repr(C)]
struct Shared {
    magic: AtomicU64,
    /// The futex words of the client (mark 1) and of the server (mark 2).
    state: [AtomicU32; 2],
    rings: Rings<RING, W>,
}

/// Which side of a channel a thread serves as ([`Channel::bind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The side that calls ([`Channel::call`]).
    Client,
    /// The side that serves ([`Channel::serve`]).
    Server,
}

impl Side {
    /// The side's parking mark (1: the client, 2: the server).
    const fn mark(self) -> u64 {
        match self {
            Side::Client => 1,
            Side::Server => 2,
        }
    }
}

/// One side of a fusion channel.
#[derive(Debug)]
pub struct Channel {
    sh: &'static Shared,
    handle: u32,
    hz: u64,
    /// TSC ticks per nanosecond, 32.32 fixed point rounded up ([`ticks_per_ns_q32`]): a
    /// timeout becomes ticks by one multiplication.
    scale: u64,
    /// The side this value's thread named itself as with `set_tid_address` (its peer's
    /// word): 0 none yet, 1 the client, 2 the server.
    watching: AtomicU8,
}

impl core::fmt::Debug for Shared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}, states {} {}",
            self.rings,
            self.state[0].load(Ordering::Relaxed),
            self.state[1].load(Ordering::Relaxed)
        )
    }
}

/// The system side of the protocol's [`FutexSched`]: the TSC as clock, shared futexes.
struct UserFutex {
    hz: u64,
}

impl Futex for UserFutex {
    fn now(&self) -> u64 {
        rdtsc()
    }

    fn window(&self) -> u64 {
        POLL_US * (self.hz / 1_000_000).max(1)
    }

    fn wait(&self, word: &AtomicU32, expected: u32, deadline: u64) {
        let t = (deadline != u64::MAX).then(|| {
            let left = deadline.saturating_sub(rdtsc());
            let ns = u128::from(left) * 1_000_000_000 / u128::from(self.hz);
            Timespec::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX).max(1))
        });
        let _ = crate::futex_wait_shared(word, expected, t.as_ref());
    }

    fn wake(&self, word: &AtomicU32) {
        let _ = crate::futex_wake_shared(word, 1);
    }
}

/// TSC ticks per nanosecond at `hz`, 32.32 fixed point, rounded up (saturating).
fn ticks_per_ns_q32(hz: u64) -> u64 {
    let q = (u128::from(hz) << 32).div_ceil(1_000_000_000);
    u64::try_from(q).unwrap_or(u64::MAX)
}

/// `ns` nanoseconds in TSC ticks at `scale` ([`ticks_per_ns_q32`]): never fewer than
/// `ns * hz / 10^9` rounded down (a timeout does not end early), at most one tick more for
/// every 4.29 s (2^32 ns); saturating.
fn ns_to_ticks(ns: u64, scale: u64) -> u64 {
    u64::try_from((u128::from(ns) * u128::from(scale)) >> 32).unwrap_or(u64::MAX)
}

fn words_of(m: &IpcMsg) -> Words<W> {
    let mut w = [0; W];
    w[0] = u64::from(m.label) | u64::from(m.len) << 32;
    w[1..].copy_from_slice(&m.words);
    w
}

fn msg_of(w: &Words<W>) -> IpcMsg {
    let mut m = IpcMsg::new(w[0] as u32, core::array::from_fn(|k| w[1 + k]));
    m.len = (w[0] >> 32) as u8;
    m
}

fn errno(e: proto::Error) -> Errno {
    match e {
        proto::Error::TimedOut => Errno::ETIMEDOUT,
        proto::Error::Closed => Errno::EPIPE,
        proto::Error::NotAThread => Errno::EINVAL,
        proto::Error::PeerGone => Errno::ECONNRESET,
    }
}

impl Channel {
    /// A new channel: an endpoint (send and receive rights, badge 0) whose shared region
    /// holds the rings. Pass [`Channel::handle`] to the peer.
    pub fn create() -> Result<Channel, Errno> {
        let h = crate::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0)?;
        let len = core::mem::size_of::<Shared>() as u64;
        let p = crate::shm_map(h, len).inspect_err(|_| {
            let _ = crate::handle_close(h);
        })?;
        let p = p.cast::<Shared>();
        // SAFETY: the kernel mapped `len` bytes at `p` (page-aligned, so aligned for
        // `Shared`), ours alone until the handle is passed on. `'static`: the mapping stays
        // until the process ends (its users must not `munmap` it, as for every mapping a
        // reference points into).
        let sh = unsafe {
            p.write(Shared {
                magic: AtomicU64::new(0),
                state: [AtomicU32::new(RUNNING), AtomicU32::new(RUNNING)],
                rings: Rings::new(),
            });
            &*p
        };
        sh.magic.store(MAGIC, Ordering::Release);
        Ok(Channel {
            sh,
            handle: h,
            hz: tsc_hz(),
            scale: ticks_per_ns_q32(tsc_hz()),
            watching: AtomicU8::new(0),
        })
    }

    /// The peer's side of the channel whose endpoint `handle` names (its region mapped
    /// here). `EINVAL` if the region does not hold this version's rings (the doc said
    /// `EPROTO` until 2026-12-05; the code always answered `EINVAL`). A refused region stays
    /// mapped until the process ends: the kernel refuses `munmap` of a shared region's
    /// pages (`docs/syscalls.md`, `shm_map`), so a program that opens many bad handles
    /// runs into the limit of 8 regions mapped per process (`ENOMEM`), never a leak beyond it.
    pub fn open(handle: u32) -> Result<Channel, Errno> {
        let p = crate::shm_map(handle, 0)?;
        let p = p.cast::<Shared>();
        // SAFETY: the region is at least a page, mapped at `p` (page-aligned); only its
        // first word is read before the magic number says it holds a `Shared`.
        let magic = unsafe { &*p.cast::<AtomicU64>() }.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(Errno::EINVAL);
        }
        // The rings take more than a page (4608 bytes), and the opener cannot learn the
        // region's length: a peer could hand over a one-page region with the magic number
        // in it, and the rings' end would lie past it (found by review, 2026-12-04). The
        // last word is probed through the kernel, which reads it (EFAULT if unmapped: the
        // kernel leaves the page after a region unmapped, unless this program mapped
        // something there itself).
        if !crate::calls::word_readable(p as usize + core::mem::size_of::<Shared>() - 4) {
            return Err(Errno::EINVAL);
        }
        // SAFETY: the creator wrote a `Shared` there before the magic number (released
        // above, acquired here); it is only used through atomics from now on.
        let sh = unsafe { &*p };
        Ok(Channel {
            sh,
            handle,
            hz: tsc_hz(),
            scale: ticks_per_ns_q32(tsc_hz()),
            watching: AtomicU8::new(0),
        })
    }

    /// [`Channel::open`], then [`Channel::bind`] of the calling thread as `side`: its end is
    /// seen by the peer from now on, whether or not it ever calls or serves.
    pub fn open_as(handle: u32, side: Side) -> Result<Channel, Errno> {
        let c = Self::open(handle)?;
        c.bind(side)?;
        Ok(c)
    }

    /// Names the calling thread as this channel's `side` thread now: when it ends (exit, a
    /// fault, its process killed), the peer's waits end with `ECONNRESET`, even if it never
    /// called or served. [`call`](Self::call) and [`serve`](Self::serve) do it themselves on
    /// their first use; binding first closes the window before that (a side that opens the
    /// channel and dies before serving). Call it from the thread that will call or serve.
    /// Uses the thread's one `set_tid_address` word, as they do (the last channel a thread
    /// names is the one told of its end). A second bind as the same side does nothing;
    /// `EINVAL` if this value was bound as the other side (so are `call` and `serve` then).
    pub fn bind(&self, side: Side) -> Result<(), Errno> {
        self.watch(side.mark())
    }

    /// The scheduler of side `mark` (1: the client, 2: the server).
    fn side(&self, mark: u64) -> FutexSched<'static, UserFutex> {
        FutexSched {
            mark,
            words: &self.sh.state,
            futex: UserFutex { hz: self.hz },
        }
    }

    /// Makes the calling thread's end clear side `mark`'s peer's word (its waits then end
    /// with `ECONNRESET`): once, by the first bind, call or serve. `EINVAL` if this value
    /// was already bound as the other side (it would name the wrong word: the peer would
    /// never be told).
    fn watch(&self, mark: u64) -> Result<(), Errno> {
        match u64::from(self.watching.load(Ordering::Relaxed)) {
            0 => {
                let peer = &self.sh.state[2 - mark as usize];
                crate::set_tid_address(peer);
                self.watching.store(mark as u8, Ordering::Relaxed);
                Ok(())
            }
            m if m == mark => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The endpoint's handle (what the peer opens).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The TSC deadline `timeout_ns` from now (0: none, `u64::MAX`). No division: until
    /// 2026-12-06 each call divided a 128-bit product by 10^9 (`__udivti3`, inside every
    /// timed round trip of ubench's fusion rows; found by review).
    fn deadline(&self, timeout_ns: u64) -> u64 {
        if timeout_ns == 0 {
            return u64::MAX;
        }
        rdtsc().saturating_add(ns_to_ticks(timeout_ns, self.scale))
    }

    /// Sends `m` (label, length, words; no badge, zero-copy or handle) and waits for the
    /// reply, at most `timeout_ns` (0: no limit): `ETIMEDOUT`, `EPIPE` once closed,
    /// `ECONNRESET` once the server's thread ended without answering. The client side: one
    /// thread per channel.
    pub fn call(&self, m: &IpcMsg, timeout_ns: u64) -> Result<IpcMsg, Errno> {
        self.watch(1)?;
        let s = self.side(1);
        let r = self
            .sh
            .rings
            .call(&s, &words_of(m), self.deadline(timeout_ns));
        r.map(|w| msg_of(&w)).map_err(errno)
    }

    /// Serves calls with `f` until it returns `None` (that call is answered with the request
    /// itself, then `Ok`), the channel is closed (`EPIPE`), the client's thread ended
    /// (`ECONNRESET`, once its requests are served) or `timeout_ns` passes (`ETIMEDOUT`; 0:
    /// no limit). The server side: one thread per channel.
    pub fn serve(
        &self,
        timeout_ns: u64,
        mut f: impl FnMut(&IpcMsg) -> Option<IpcMsg>,
    ) -> Result<(), Errno> {
        self.watch(2)?;
        let s = self.side(2);
        let d = self.deadline(timeout_ns);
        let r = self
            .sh
            .rings
            .serve(&s, d, |w| f(&msg_of(w)).map(|r| words_of(&r)));
        r.map_err(errno)
    }

    /// Closes the channel for both sides: parked waits end with `EPIPE` (so do later calls).
    pub fn close(&self) {
        self.sh.rings.close(&self.side(1));
    }

    /// Wake-ups sent so far (a side found its peer parked).
    pub fn wakes(&self) -> u64 {
        self.sh.rings.wakes()
    }

    /// Replies the client discarded because their call had timed out.
    pub fn stale(&self) -> u64 {
        self.sh.rings.stale()
    }

    /// Whether a request waits to be served (the server's view; tests).
    pub fn request_waiting(&self) -> bool {
        self.sh.rings.request_waiting()
    }

    /// Whether the client sleeps in the kernel or is about to (parked and committed: only
    /// a wake-up or its deadline ends that wait). For tests that force the wake-up path.
    pub fn client_asleep(&self) -> bool {
        self.sh.rings.client_is_parked() && self.sh.state[0].load(Ordering::SeqCst) == ASLEEP
    }

    /// The same for the server.
    pub fn server_asleep(&self) -> bool {
        self.sh.rings.server_is_parked() && self.sh.state[1].load(Ordering::SeqCst) == ASLEEP
    }

    /// The channel's words, for a failure report.
    pub fn describe(&self) -> impl core::fmt::Display + '_ {
        Describe(self.sh)
    }
}

struct Describe<'a>(&'a Shared);

impl core::fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{ns_to_ticks, ticks_per_ns_q32};

    /// The division the conversion replaces: `ns * hz / 10^9`, rounded down.
    fn exact(ns: u64, hz: u64) -> u128 {
        u128::from(ns) * u128::from(hz) / 1_000_000_000
    }

    #[test]
    fn timeouts_convert_without_ending_early() {
        let rates = [
            1,
            999_999_999,
            1_000_000_000,
            2_499_900_000,
            2_900_000_123,
            3_000_000_000,
            5_000_000_001,
            u64::from(u32::MAX),
        ];
        let timeouts = [
            1,
            999,
            1_000_000,
            30_000_000_000,
            60_000_000_000,
            1 << 40,
            u64::from(u32::MAX) * 1_000,
        ];
        for hz in rates {
            let scale = ticks_per_ns_q32(hz);
            for ns in timeouts {
                let got = u128::from(ns_to_ticks(ns, scale));
                let want = exact(ns, hz);
                // At most one tick more per 2^32 ns, plus the rounding of both.
                let slack = u128::from(ns >> 32) + 1;
                assert!(
                    got >= want && got <= want + slack,
                    "hz {hz}, {ns} ns: {got} ticks, exact {want}"
                );
            }
        }
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(ticks_per_ns_q32(u64::MAX), u64::MAX);
        assert_eq!(ns_to_ticks(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(
            ns_to_ticks(u64::MAX, ticks_per_ns_q32(3_000_000_000)),
            u64::MAX
        );
        assert_eq!(ns_to_ticks(0, ticks_per_ns_q32(3_000_000_000)), 0);
    }
}
