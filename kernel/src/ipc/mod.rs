//! Synchronous IPC (issue 13, phase 1): endpoints, messages of up to 64 bytes, per-owner
//! handle tables, and the fastpath.
//!
//! * **Endpoints** ([`endpoint`]): kernel objects in a static table of [`MAX_ENDPOINTS`]
//!   type-stable slots, each with a FIFO of blocked senders/callers and one of blocked
//!   receivers behind the slot's own spin lock (taken with interrupts off). An [`EpRef`] is
//!   a slot index plus the slot's generation: destroying an endpoint bumps the generation
//!   under the lock and fails every queued thread with [`IpcError::Closed`] (no hang), so a
//!   stale reference is refused and the slot can be reused at once. `call` (send, then wait
//!   for the reply), `reply_recv` (reply to the caller being served, wait for the next
//!   message), `recv`, `send` (blocks until received) and `reply`, each with an optional TSC
//!   deadline ([`NO_DEADLINE`]: none).
//! * **Messages** ([`Msg`]): a label, a length (0..=64 bytes), eight u64 payload words (the
//!   register payload of the user ABI) and the badge of the sender's handle, set by the
//!   kernel on delivery. Each thread has a message slot (indexed by its thread index): a
//!   message is copied once, from the sender's words into the receiver's slot or from a
//!   queued sender's slot into the receiver.
//! * **Handle tables** ([`handle::HandleTable`]): fixed [`handle::HANDLES`] entries, each an
//!   endpoint reference with rights (send, receive) and a badge. Lookups are lock-free (one
//!   or two loads); installing and removing take the table's small lock. Endpoints are found
//!   through the table on every call from every CPU while others create and destroy them:
//!   reclamation is by generation-checked, never-freed slots (see below), not by epochs.
//! * **The fastpath** ([`fastpath`]): when a receiver is blocked in `recv`/`reply_recv` on
//!   the endpoint and last ran on this CPU, `call` claims it and hands it the CPU directly
//!   (`sched::Here::handoff`: no run-queue pass, no scheduling decision, FPU work only if
//!   the caller used it); `reply_recv` does the same back to a caller blocked here. User
//!   threads coming in through the IPC entry are **parked at their system-call boundary**
//!   (`Here::handoff_parked`, seL4's shape): nothing of them is kept but their IPC frame, and
//!   a peer that claims a parked thread leaves for ring 3 as that thread, through its frame,
//!   with the message loaded from the sender's frame straight into its registers (no slot,
//!   no kernel stack to unwind); a parked thread resumed by the scheduler instead (slow
//!   path, timeout, kill, a kernel-thread peer, a handle in the message) finishes in a
//!   continuation ([`finish_parked`]). Everything else takes the slow path (queues,
//!   `sched::wake`, `sched::block_until`). [`set_fastpath`]`(false)` forces the slow path
//!   (tests and benches compare the two).
//!
//! Why not `crossbeam-epoch`: it builds for `x86_64-unknown-none` (`default-features =
//! false, features = ["alloc"]`), but without `std` it has no `pin()`: every participant
//! needs its own `LocalHandle`, which is `!Send` and `!Sync`. The kernel has no
//! thread-locals; a handle per CPU would need a new `unsafe impl Sync` wrapper outside the
//! audited files, and every lookup would pay a pin (a locked instruction) while a blocked
//! thread must still hold a reference across its sleep (guards cannot be held across a
//! switch). Instead endpoint slots are never freed (a racing reader never touches freed
//! memory) and every operation re-checks the generation under the slot's lock.
//!
//! Deadlines and failure: a thread queued on an endpoint leaves by a message, its deadline,
//! or the endpoint's destruction; a caller waiting for its reply leaves by the reply, its
//! deadline, or the server's end (the exit hook installed in `sched` fails it with
//! [`IpcError::PeerDied`]; a server that receives again without replying fails it with
//! [`IpcError::NoReply`]). Idle contexts cannot use IPC.
//!
//! ## The system-call layer (`user::ipc`, phase 2)
//! A process embeds one [`handle::HandleTable`]; the calls go through its methods (the
//! timeout in RBX is relative, in ns; see `docs/syscalls.md`). Numbers and registers (`syscall`; RCX/R11 clobbered as for every
//! call; the entry stub saves the payload registers in its frame):
//!
//! | nr  | call              | in                                                  | out |
//! |-----|-------------------|-----------------------------------------------------|-----|
//! | 520 | `ipc_call`        | RDI handle, RSI info, RDX R10 R8 R9 R12 R13 R14 R15 words 0..7, RBX deadline (ns, 0 none) | RAX 0/-errno, RSI info, RDI badge, same 8 registers |
//! | 521 | `ipc_reply_recv`  | as `ipc_call` (the reply)                           | as `ipc_call` (the next message) |
//! | 522 | `ipc_recv`        | RDI handle, RBX deadline                            | as `ipc_call` |
//! | 523 | `ipc_send`        | as `ipc_call`                                       | RAX |
//! | 524 | `ipc_reply`       | RSI info, words                                     | RAX |
//! | 525 | `endpoint_create` | RDI rights, RSI badge                               | RAX handle/-errno |
//! | 526 | `handle_close`    | RDI handle                                          | RAX |
//!
//! info = label (bits 0..32) | length in bytes (bits 32..40). Errors map to errno by
//! [`IpcError::errno`]. Phase 3: 527 `shm_map` maps the endpoint's shared region
//! (`user::shm`); info bit 40 ([`INFO_ZC`]) marks words 0 and 1 as a descriptor (offset,
//! length) checked against [`zc_bound`], which batches use too (16 messages named by
//! one descriptor). Info bit 41 ([`INFO_HANDLE`]): a handle travels in words 6 and 7
//! (`user::ipc` checks and converts it). [`fusion`]: shared-memory call rings between
//! threads on different CPUs, polled, with a wake-up only for a parked peer.
//!
//! Calls down only: `sched` (current thread, wake, block, handoff, parking, exit hook),
//! `console`.

pub mod endpoint;
pub mod fastpath;
pub mod fusion;
pub mod handle;

mod bench;
mod tests;
mod tests_fusion;

pub use endpoint::{
    Attach, Charges, EpRef, MAX_ENDPOINTS, adopt, answering, call, check, create, destroy,
    detach_region, hold_in_flight, hold_of, hold_word, live_endpoints, queued, received_on, recv,
    region, region_floor, release, reply, reply_recv, reply_region, retain, send, set_charges,
    set_region, settle_in_flight, stats, try_fast, zc_bound,
};
pub use fastpath::{STALE_CLAIMS, finish_parked};
pub use handle::{Cap, Handle, HandleTable, Rights};

use crate::sched;
use core::sync::atomic::{AtomicBool, Ordering};

/// No deadline.
pub const NO_DEADLINE: u64 = u64::MAX;

/// Payload words of a message (64 bytes).
pub const MSG_WORDS: usize = 8;

/// A message: label, length, payload and the sender's badge (set by the kernel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Msg {
    /// What the message means to the receiver (protocol-defined).
    pub label: u32,
    /// Payload bytes that matter, 0..=64 (all eight words are always transferred).
    pub len: u8,
    /// The badge of the handle the message was sent through (0 for replies); ignored on send.
    pub badge: u64,
    /// Words 0 and 1 are a zero-copy descriptor (offset, length) into the endpoint's shared
    /// region, checked by the system-call layer against its length ([`zc_bound`]; a reply's
    /// against the region of the endpoint the call came through, [`answering`]).
    pub zc: bool,
    /// Words 6 and 7 carry a handle in flight (the system-call layer's encoding, [`INFO_HANDLE`]).
    pub handle: bool,
    /// The payload.
    pub words: [u64; MSG_WORDS],
}

/// Bit of [`Msg::info`] (and of the user ABI's info word) marking a zero-copy descriptor.
pub const INFO_ZC: u64 = 1 << 40;
/// Bit of [`Msg::info`] (and of the user ABI's info word): a handle travels in words 6 and 7.
pub const INFO_HANDLE: u64 = 1 << 41;

impl Msg {
    /// A message with `label` and a full 64-byte payload.
    pub const fn new(label: u32, words: [u64; MSG_WORDS]) -> Msg {
        Msg {
            label,
            len: 64,
            badge: 0,
            zc: false,
            handle: false,
            words,
        }
    }
    pub(crate) fn info(&self) -> u64 {
        u64::from(self.label)
            | (u64::from(self.len) << 32)
            | if self.zc { INFO_ZC } else { 0 }
            | if self.handle { INFO_HANDLE } else { 0 }
    }
    pub(crate) fn from_info(info: u64, badge: u64, words: [u64; MSG_WORDS]) -> Msg {
        Msg {
            label: info as u32,
            len: (info >> 32) as u8,
            badge,
            zc: info & INFO_ZC != 0,
            handle: info & INFO_HANDLE != 0,
            words,
        }
    }
}

/// Why an IPC operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IpcError {
    /// The deadline passed first.
    TimedOut = 1,
    /// The endpoint was destroyed (before or while waiting).
    Closed = 2,
    /// The handle names no entry (out of range or empty).
    BadHandle = 3,
    /// The handle lacks the right (send for call/send, receive for recv/reply_recv).
    NoRights = 4,
    /// The thread serving the call ended without replying.
    PeerDied = 5,
    /// The server received another message without replying to this call.
    NoReply = 6,
    /// `reply` with no caller to answer (none received, or it timed out or died).
    NoCaller = 7,
    /// The message is longer than 64 bytes.
    TooLong = 8,
    /// No free endpoint slot, or the handle table is full.
    Exhausted = 9,
    /// The caller is not a thread that may block (no scheduler, or an idle context).
    NotAThread = 10,
    /// The wait was abandoned: the caller is being killed ([`set_abort_hook`]).
    Interrupted = 11,
}

impl IpcError {
    pub(crate) fn from_code(c: u8) -> IpcError {
        match c {
            1 => IpcError::TimedOut,
            2 => IpcError::Closed,
            3 => IpcError::BadHandle,
            4 => IpcError::NoRights,
            5 => IpcError::PeerDied,
            6 => IpcError::NoReply,
            7 => IpcError::NoCaller,
            8 => IpcError::TooLong,
            9 => IpcError::Exhausted,
            11 => IpcError::Interrupted,
            _ => IpcError::NotAThread,
        }
    }

    /// The Linux errno the system-call layer returns (negated) for this error.
    pub fn errno(self) -> i64 {
        match self {
            IpcError::TimedOut => 110,  // ETIMEDOUT
            IpcError::Closed => 32,     // EPIPE
            IpcError::BadHandle => 9,   // EBADF
            IpcError::NoRights => 1,    // EPERM
            IpcError::PeerDied => 104,  // ECONNRESET
            IpcError::NoReply => 103,   // ECONNABORTED
            IpcError::NoCaller => 3,    // ESRCH
            IpcError::TooLong => 90,    // EMSGSIZE
            IpcError::Exhausted => 11,  // EAGAIN
            IpcError::NotAThread => 22, // EINVAL
            IpcError::Interrupted => 4, // EINTR (the thread is killed before it returns)
        }
    }
}

impl core::fmt::Display for IpcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            IpcError::TimedOut => "deadline passed",
            IpcError::Closed => "endpoint destroyed",
            IpcError::BadHandle => "bad handle",
            IpcError::NoRights => "handle lacks the right",
            IpcError::PeerDied => "server ended without replying",
            IpcError::NoReply => "server dropped the call",
            IpcError::NoCaller => "no caller to reply to",
            IpcError::TooLong => "message longer than 64 bytes",
            IpcError::Exhausted => "no free endpoint or handle",
            IpcError::NotAThread => "not a thread that may block",
            IpcError::Interrupted => "wait abandoned: the caller is being killed",
        })
    }
}

static FASTPATH: AtomicBool = AtomicBool::new(true);

/// Enables (default) or disables the fastpath: disabled, every operation takes the slow path.
pub fn set_fastpath(on: bool) {
    FASTPATH.store(on, Ordering::Relaxed);
}

/// Whether the fastpath is enabled.
pub fn fastpath_enabled() -> bool {
    FASTPATH.load(Ordering::Relaxed)
}

static ABORT: spin::Once<fn() -> bool> = spin::Once::new();

/// Installs the check a waiting thread makes after every wake-up: true makes it leave its
/// wait (queue or reply) with [`IpcError::Interrupted`] (the `user` layer: the caller's
/// process is being killed). It concerns threads the layer above gave an id
/// (`sched::current_uid`): a kernel thread is never killed. Set once.
pub fn set_abort_hook(f: fn() -> bool) {
    ABORT.call_once(|| f);
}

/// Whether the calling thread must abandon its wait.
pub(crate) fn aborting() -> bool {
    ABORT.get().is_some_and(|f| f())
}

/// [`aborting`] for the running thread `here` (the fastpath's check once the caller is
/// marked blocked): one load for a kernel thread, which is never killed.
#[inline(always)]
pub(crate) fn aborting_here(here: sched::Here<'_>) -> bool {
    here.uid() != 0 && aborting()
}
