//! Endpoints, the per-thread message slots and the slow paths (queues, wake, block).
//!
//! A thread's IPC state is one word in its [`Waiter`] (`seq << 16 | error << 8 | state`):
//! `seq` (48 bits) counts the thread's operations, so a reply token (the seq above 16 bits
//! of thread index plus one) given to a server names one call and goes stale when the
//! caller times out, dies or calls again. Until 2026-12-05 the seq had 32 bits: a server
//! holding a token while its caller timed out and made 2^32 more operations (minutes at a
//! fastpath's pace) could answer the caller's later call with the old reply (found by
//! review; 2^48 operations take years). Queued
//! states change only under the endpoint's lock; a reply claims the caller's word by CAS
//! (`REPLY_WAIT -> REPLYING`), writes the message, then publishes `DONE`, so a time-out and
//! a reply racing each other are decided by that one CAS.

use super::{IpcError, MSG_WORDS, Msg, Rights, fastpath};
use crate::sched::{self, Here, MAX_THREADS, Tid};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use exo_arch::syscall::IpcFrame;
use exo_arch::tsc::rdtsc;
use exo_percpu::IrqGuard;

/// Endpoints that can exist at once (the `user` layer gives each process tree a share of
/// them: [`create_for`]).
pub const MAX_ENDPOINTS: usize = 1024;

const NIL: u32 = u32::MAX;

pub(super) const IDLE: u64 = 0;
pub(super) const RECV_WAIT: u64 = 1;
pub(super) const SEND_WAIT: u64 = 2;
pub(super) const CALL_WAIT: u64 = 3;
pub(super) const REPLY_WAIT: u64 = 4;
pub(super) const REPLYING: u64 = 5;
pub(super) const DONE: u64 = 6;
pub(super) const FAILED: u64 = 7;

/// Where the seq starts in a state word and a reply token.
const SEQ_SHIFT: u32 = 16;
// A token's low 16 bits hold a thread index + 1.
const _: () = assert!(MAX_THREADS < 1 << SEQ_SHIFT);

pub(super) const fn pack(seq: u64, state: u64) -> u64 {
    (seq << SEQ_SHIFT) | state
}
const fn failed(seq: u64, e: IpcError) -> u64 {
    (seq << SEQ_SHIFT) | ((e as u64) << 8) | FAILED
}
pub(super) const fn state_of(w: u64) -> u64 {
    w & 0xff
}
pub(super) const fn seq_of(w: u64) -> u64 {
    w >> SEQ_SHIFT
}

/// A reply token: the caller's thread index + 1 and its operation's seq (0: none).
pub(super) const fn token(i: usize, seq: u64) -> u64 {
    (seq << SEQ_SHIFT) | (i as u64 + 1)
}

/// The thread index of reply token `tok` (not 0).
#[inline(always)]
pub(super) const fn token_index(tok: u64) -> u32 {
    (tok & ((1 << SEQ_SHIFT) - 1)) as u32 - 1
}

/// One thread's IPC state and message slot (a cache-line pair, indexed by thread index).
#[repr(align(128))]
pub(super) struct Waiter {
    pub(super) word: AtomicU64,
    pub(super) info: AtomicU64,
    pub(super) badge: AtomicU64,
    pub(super) words: [AtomicU64; MSG_WORDS],
    /// Next thread in the endpoint queue it is on.
    pub(super) next: AtomicU32,
    /// Endpoint slot it is queued on as a sender or caller.
    pub(super) send_ep: AtomicU32,
    /// The endpoint it last received on (slot and generation, two stores where packing
    /// them cost the fastpath two more instructions): queued there as a receiver, or
    /// taking a queued sender. So the call it serves (`reply_to`) came through this one:
    /// only a receive gives a thread a call, and a receive answers or drops the call it
    /// served before. Written and read by the thread itself (`timeout` runs in it too).
    pub(super) recv_ep: AtomicU32,
    pub(super) recv_gen: AtomicU32,
    /// Its `Tid` (raw), set at each operation (wakers need the generation).
    pub(super) tid: AtomicU64,
    /// The call it is serving ([`token`]; 0: none).
    pub(super) reply_to: AtomicU64,
    /// Fastpath and slow-path operations it made (written by the thread itself only).
    pub(super) fast: AtomicU64,
    pub(super) slow: AtomicU64,
    /// TSC deadline of the operation it is parked in (`sched::handoff_parked`), for the
    /// continuation that finishes it.
    pub(super) deadline: AtomicU64,
    /// The endpoint and rights ([`hold_word`]; 0: none) of a handle in the message it is
    /// sending, held for the flight ([`hold_in_flight`]) and not handed over yet: the hand-over of
    /// the message (into a receiver's slot, or taken from this slot by a receiver) hands
    /// the hold to the receiver and clears this; what is left at the operation's end is
    /// dropped ([`settle_in_flight`]).
    in_flight: AtomicU64,
}

impl Waiter {
    const fn new() -> Waiter {
        Waiter {
            word: AtomicU64::new(0),
            info: AtomicU64::new(0),
            badge: AtomicU64::new(0),
            words: [const { AtomicU64::new(0) }; MSG_WORDS],
            next: AtomicU32::new(NIL),
            send_ep: AtomicU32::new(NIL),
            recv_ep: AtomicU32::new(NIL),
            recv_gen: AtomicU32::new(0),
            tid: AtomicU64::new(0),
            reply_to: AtomicU64::new(0),
            fast: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }
    #[inline(always)]
    pub(super) fn put(&self, m: &Msg, badge: u64) {
        self.put_raw(m.info(), badge, &m.words);
    }
    /// [`Waiter::put`] of a message given as its info word ([`Msg::info`]) and words.
    #[inline(always)]
    pub(super) fn put_raw(&self, info: u64, badge: u64, words: &[u64; MSG_WORDS]) {
        self.info.store(info, Ordering::Relaxed);
        self.badge.store(badge, Ordering::Relaxed);
        for (d, s) in self.words.iter().zip(words) {
            d.store(*s, Ordering::Relaxed);
        }
    }
    /// [`Waiter::take`] into `words`; returns the info word and the badge.
    #[inline(always)]
    pub(super) fn take_into(&self, words: &mut [u64; MSG_WORDS]) -> (u64, u64) {
        for (d, s) in words.iter_mut().zip(&self.words) {
            *d = s.load(Ordering::Relaxed);
        }
        (
            self.info.load(Ordering::Relaxed),
            self.badge.load(Ordering::Relaxed),
        )
    }
    #[inline(always)]
    pub(super) fn take(&self) -> Msg {
        let info = self.info.load(Ordering::Relaxed);
        Msg::from_info(
            info,
            self.badge.load(Ordering::Relaxed),
            core::array::from_fn(|k| self.words[k].load(Ordering::Relaxed)),
        )
    }
    /// Copies the message in `from`'s slot into this one.
    fn copy_from(&self, from: &Waiter) {
        self.info
            .store(from.info.load(Ordering::Relaxed), Ordering::Relaxed);
        self.badge
            .store(from.badge.load(Ordering::Relaxed), Ordering::Relaxed);
        for (d, s) in self.words.iter().zip(&from.words) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
    /// Starts an operation: the next seq, in `state`.
    #[inline(always)]
    pub(super) fn begin(&self, state: u64) -> u64 {
        let seq = seq_of(self.word.load(Ordering::Relaxed)) + 1;
        self.word.store(pack(seq, state), Ordering::Release);
        seq
    }
    #[inline(always)]
    pub(super) fn count(&self, fast: bool) {
        let c = if fast { &self.fast } else { &self.slow };
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    /// Records `ep` as the endpoint it receives on (`recv_ep`).
    #[inline(always)]
    pub(super) fn set_recv_ep(&self, ep: EpRef) {
        self.recv_ep.store(ep.index, Ordering::Relaxed);
        self.recv_gen.store(ep.gen_, Ordering::Relaxed);
    }
    #[inline(always)]
    fn recv_ep(&self) -> EpRef {
        EpRef {
            index: self.recv_ep.load(Ordering::Relaxed),
            gen_: self.recv_gen.load(Ordering::Relaxed),
        }
    }
    #[inline(always)]
    pub(super) fn tid(&self) -> Tid {
        Tid::from_raw(self.tid.load(Ordering::Relaxed))
    }
}

pub(super) static WAITERS: [Waiter; MAX_THREADS] = [const { Waiter::new() }; MAX_THREADS];

#[inline(always)]
pub(super) fn waiter(i: u32) -> &'static Waiter {
    &WAITERS[i as usize]
}

/// A FIFO of thread indices linked through their waiters.
#[derive(Debug)]
pub(super) struct List {
    head: u32,
    tail: u32,
}

impl List {
    const fn new() -> List {
        List {
            head: NIL,
            tail: NIL,
        }
    }
    #[inline(always)]
    pub(super) fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }
    #[inline(always)]
    pub(super) fn push(&mut self, i: u32) {
        waiter(i).next.store(NIL, Ordering::Relaxed);
        if self.tail == NIL {
            self.head = i;
        } else {
            waiter(self.tail).next.store(i, Ordering::Relaxed);
        }
        self.tail = i;
    }
    #[inline(always)]
    pub(super) fn pop(&mut self) -> Option<u32> {
        let i = self.head()?;
        self.head = waiter(i).next.load(Ordering::Relaxed);
        if self.head == NIL {
            self.tail = NIL;
        }
        Some(i)
    }
    fn remove(&mut self, i: u32) -> bool {
        let (mut prev, mut cur) = (NIL, self.head);
        while cur != NIL {
            let next = waiter(cur).next.load(Ordering::Relaxed);
            if cur == i {
                if prev == NIL {
                    self.head = next;
                } else {
                    waiter(prev).next.store(next, Ordering::Relaxed);
                }
                if self.tail == i {
                    self.tail = prev;
                }
                return true;
            }
            (prev, cur) = (cur, next);
        }
        false
    }
    fn len(&self) -> usize {
        let (mut n, mut cur) = (0, self.head);
        while cur != NIL {
            n += 1;
            cur = waiter(cur).next.load(Ordering::Relaxed);
        }
        n
    }
}

/// An endpoint's queues, behind its slot's lock.
#[derive(Debug)]
pub(super) struct Queues {
    pub(super) gen_: u32,
    /// Operations may use it: neither destroyed nor [`Queues::deaf`].
    pub(super) live: bool,
    /// The last owning handle with the receive right went while others remain: nobody can
    /// ever receive on it again (a receive right is only ever copied from one), so every
    /// operation fails with `Closed` as on a destroyed endpoint (queued threads were failed
    /// with it), while the slot stays, with its generation, until the last handle goes.
    /// Until 2026-12-05 a caller of an endpoint whose server had ended waited for good (or
    /// its deadline), and a name kept by the name server for a dead server answered nothing.
    /// An endpoint never held by a receive handle (served by kernel threads) never goes deaf.
    pub(super) deaf: bool,
    /// Owning handles ([`retain`], [`release`]); the last release destroys the endpoint.
    pub(super) refs: u32,
    /// Those of `refs` with the receive right (handles in flight too).
    pub(super) recv_refs: u32,
    pub(super) senders: List,
    pub(super) receivers: List,
}

impl Queues {
    /// Whether operations may use `ep` (live, same generation): the fastpath's one check.
    #[inline(always)]
    pub(super) fn is(&self, ep: EpRef) -> bool {
        self.live && self.gen_ == ep.gen_
    }
    /// Whether handles may still name `ep` (live or deaf: not destroyed).
    fn held(&self, ep: EpRef) -> bool {
        (self.live || self.deaf) && self.gen_ == ep.gen_
    }
}

/// One endpoint: its lock, queues and region in a cache line of their own (56 bytes packed,
/// which put neighbouring endpoints, served by different CPUs, in one line).
#[repr(align(64))]
pub(super) struct Slot {
    used: AtomicBool,
    /// The shared region attached to the endpoint ([`set_region`]): an opaque tag of the
    /// layer that owns regions (0: none) and its bound, the region's length in bytes plus
    /// one (0: none): the end of a zero-copy descriptor must lie below it ([`zc_bound`]),
    /// one compare that also refuses every descriptor, the empty one too, with no region.
    region: AtomicU64,
    region_bound: AtomicU64,
    /// The largest region the endpoint has had (bytes; lock held): a new one is made at
    /// least this large ([`region_floor`]), so a descriptor checked against any earlier
    /// bound lies inside every region attached later.
    region_floor: AtomicU64,
    pub(super) q: spin::Mutex<Queues>,
}

impl Slot {
    /// Its queues, locked: the free case is one CAS that falls through (`spin`'s loop made
    /// it a `jmp` more; icount: one instruction per fastpath operation).
    #[inline(always)]
    pub(super) fn lock(&self) -> spin::MutexGuard<'_, Queues> {
        match self.q.try_lock() {
            Some(q) => q,
            None => {
                core::hint::cold_path();
                LOCK_WAITS.fetch_add(1, Ordering::Relaxed);
                LOCK_WAITED.store(core::ptr::from_ref(self).addr(), Ordering::Relaxed);
                self.q.lock()
            }
        }
    }
}

static SLOTS: [Slot; MAX_ENDPOINTS] = [const {
    Slot {
        used: AtomicBool::new(false),
        region: AtomicU64::new(0),
        region_bound: AtomicU64::new(0),
        region_floor: AtomicU64::new(0),
        q: spin::Mutex::new(Queues {
            gen_: 1,
            live: false,
            deaf: false,
            refs: 0,
            recv_refs: 0,
            senders: List::new(),
            receivers: List::new(),
        }),
    }
}; MAX_ENDPOINTS];

static CURSOR: AtomicU32 = AtomicU32::new(0);

/// Times an endpoint's lock was found taken, and the slot of the last one (the contended
/// case of `Slot::lock`, off the fastpath's way). Test support: a test holding a lock
/// ([`with_lock_held`]) learns from them that an operation on another CPU has reached the
/// lock, past every check made before it.
static LOCK_WAITS: AtomicU64 = AtomicU64::new(0);
static LOCK_WAITED: AtomicUsize = AtomicUsize::new(0);

/// Test support: runs `f` with `ep`'s lock held (interrupts off here), so that an
/// operation on `ep` from another CPU waits where it takes the lock, until `f` returns.
/// `f` gets a check of whether one waits (or waited) for this lock since `f` began.
/// `Closed` if `ep` is gone.
pub fn with_lock_held<R>(ep: EpRef, f: impl FnOnce(&dyn Fn() -> bool) -> R) -> Result<R, IpcError> {
    let s = slot(ep)?;
    let _g = IrqGuard::new();
    let q = s.lock();
    if !q.is(ep) {
        return Err(IpcError::Closed);
    }
    let before = LOCK_WAITS.load(Ordering::Relaxed);
    let me = core::ptr::from_ref(s).addr();
    let waited = || {
        LOCK_WAITS.load(Ordering::Relaxed) != before && LOCK_WAITED.load(Ordering::Relaxed) == me
    };
    let r = f(&waited);
    drop(q);
    Ok(r)
}

/// A reference to an endpoint: slot index and generation (stale once it is destroyed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpRef {
    pub(super) index: u32,
    pub(super) gen_: u32,
}

impl EpRef {
    /// Packs into one word (handle tables): generation high, index low.
    pub fn raw(self) -> u64 {
        (u64::from(self.gen_) << 32) | u64::from(self.index)
    }
    /// From [`EpRef::raw`].
    pub fn from_raw(w: u64) -> EpRef {
        EpRef {
            index: w as u32,
            gen_: (w >> 32) as u32,
        }
    }
}

#[inline(always)]
pub(super) fn slot(ep: EpRef) -> Result<&'static Slot, IpcError> {
    SLOTS.get(ep.index as usize).ok_or(IpcError::Closed)
}

/// The layer above's charge for the endpoints it creates on someone's behalf
/// ([`create_for`]; the `user` layer's per-process-tree limits): `charge(slot, owner)` when
/// one is made (false: refused, [`IpcError::Exhausted`], as a full table), `release(slot)`
/// when it is destroyed, before its slot can be taken again. Neither is called on an
/// operation through an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Charges {
    /// Charges the endpoint made in slot `index` to `owner`; false refuses it.
    pub charge: fn(u32, u64) -> bool,
    /// Gives back the charge of the endpoint in slot `index`, destroyed.
    pub release: fn(u32),
}

static CHARGES: spin::Once<Charges> = spin::Once::new();

/// Whether the endpoint in each slot was charged ([`create_for`] with an owner), so that
/// only those are released (a slot array of its own: [`Slot`]'s line is the fastpath's).
static CHARGED: [AtomicBool; MAX_ENDPOINTS] = [const { AtomicBool::new(false) }; MAX_ENDPOINTS];

/// Installs the layer above's [`Charges`] (once).
pub fn set_charges(c: Charges) {
    CHARGES.call_once(|| c);
}

/// Frees slot `index` (`s`) of an endpoint just destroyed: its charge given back first.
fn free_slot(s: &Slot, index: u32) {
    if CHARGED[index as usize].swap(false, Ordering::AcqRel)
        && let Some(c) = CHARGES.get()
    {
        (c.release)(index);
    }
    s.used.store(false, Ordering::Release);
}

/// Creates an endpoint (charged to nobody).
pub fn create() -> Result<EpRef, IpcError> {
    create_for(0)
}

/// Creates an endpoint on behalf of `owner` (an id of the layer above, 0: nobody), charged
/// to it through the installed [`Charges`]: `Exhausted` when the table is full or the charge
/// is refused.
pub fn create_for(owner: u64) -> Result<EpRef, IpcError> {
    sched::set_exit_hook(on_thread_exit);
    let start = CURSOR.fetch_add(1, Ordering::Relaxed) as usize;
    for k in 0..MAX_ENDPOINTS {
        let index = (start + k) % MAX_ENDPOINTS;
        let s = &SLOTS[index];
        if s.used
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            if owner != 0
                && let Some(c) = CHARGES.get()
            {
                if !(c.charge)(index as u32, owner) {
                    s.used.store(false, Ordering::Release);
                    return Err(IpcError::Exhausted);
                }
                CHARGED[index].store(true, Ordering::Relaxed);
            }
            let _g = IrqGuard::new();
            let mut q = s.lock();
            q.live = true;
            q.deaf = false;
            q.refs = 0;
            q.recv_refs = 0;
            s.region_bound.store(0, Ordering::Relaxed);
            s.region_floor.store(0, Ordering::Relaxed);
            s.region.store(0, Ordering::Relaxed);
            return Ok(EpRef {
                index: index as u32,
                gen_: q.gen_,
            });
        }
    }
    Err(IpcError::Exhausted)
}

/// Destroys an endpoint (a deaf one too): every thread queued on it returns
/// [`IpcError::Closed`]; later operations on `ep` too. Callers already waiting for a reply
/// keep waiting for it.
pub fn destroy(ep: EpRef) -> Result<(), IpcError> {
    let s = slot(ep)?;
    {
        let _g = IrqGuard::new();
        let mut q = s.lock();
        if !q.held(ep) {
            return Err(IpcError::Closed);
        }
        kill_locked(&mut q);
    }
    free_slot(s, ep.index);
    Ok(())
}

/// The destruction itself (slot lock held): generation bumped, queued threads failed.
fn kill_locked(q: &mut Queues) {
    q.live = false;
    q.deaf = false;
    q.refs = 0;
    q.recv_refs = 0;
    q.gen_ = q.gen_.wrapping_add(1).max(1);
    fail_queued(q);
}

/// Every thread queued on the endpoint (lock held) returns [`IpcError::Closed`].
fn fail_queued(q: &mut Queues) {
    while let Some(i) = q.senders.pop().or_else(|| q.receivers.pop()) {
        let w = waiter(i);
        let seq = seq_of(w.word.load(Ordering::Relaxed));
        w.word
            .store(failed(seq, IpcError::Closed), Ordering::Release);
        sched::wake(w.tid());
    }
}

/// The region attached to `ep`: (tag, length in bytes), (0, 0) if none; `Closed` if `ep`
/// is gone. The generation is checked under the endpoint's lock: the slot of a destroyed
/// endpoint is reused, and a stale handle must not name its successor's region (it did
/// when this read was lock-free: `shm_map(stale, 0)` mapped another process's region).
pub fn region(ep: EpRef) -> Result<(u64, u64), IpcError> {
    region_if(ep, Queues::is)
}

/// [`region`] for a zero-copy reply to a call that came through `ep`: a deaf endpoint (no
/// receive handle left, its taken calls still answered) keeps its region, which the caller
/// mapped; `Closed` only once it is destroyed. Until 2026-12-06 a server that closed its
/// receive handle and then answered a call it had taken got `EPIPE` for a zero-copy reply
/// (a plain reply went), and its caller waited out its deadline (found by review;
/// `user.ipc.zero_copy_reply_through_a_deaf_endpoint_goes`).
pub fn reply_region(ep: EpRef) -> Result<(u64, u64), IpcError> {
    region_if(ep, Queues::held)
}

fn region_if(ep: EpRef, test: fn(&Queues, EpRef) -> bool) -> Result<(u64, u64), IpcError> {
    let s = slot(ep)?;
    let _g = IrqGuard::new();
    let q = s.lock();
    if !test(&q, ep) {
        return Err(IpcError::Closed);
    }
    Ok((
        s.region.load(Ordering::Relaxed),
        s.region_bound.load(Ordering::Relaxed).saturating_sub(1),
    ))
}

/// The least length of a region attached to `ep` from now on: the largest it has had. A
/// descriptor is checked against the bound when it is sent, and may wait in the queue; the
/// endpoint keeps a dead region's bound until a new region comes. Made smaller, the new
/// region could leave a waiting descriptor outside what its receiver maps (until
/// 2026-12-04: a 4 KiB region after a 1 MiB one).
pub fn region_floor(ep: EpRef) -> Result<u64, IpcError> {
    let s = slot(ep)?;
    let _g = IrqGuard::new();
    let q = s.lock();
    if !q.is(ep) {
        return Err(IpcError::Closed);
    }
    Ok(s.region_floor.load(Ordering::Relaxed))
}

/// The bound of the region attached to `ep`, lock-free: its length plus one, 0 if none (a
/// zero-copy descriptor fits if its end is below it). What the system-call layer checks
/// descriptors against before an operation on `ep`. Not generation-checked: for a stale
/// `ep` it may be a successor's bound, and the operation it bounds then fails on `ep`'s
/// generation (`Closed`); the kernel never reads the region through it. A reply, which
/// does not go through an endpoint, needs [`region`]'s checked read instead.
#[inline]
pub fn zc_bound(ep: EpRef) -> Result<u64, IpcError> {
    Ok(slot(ep)?.region_bound.load(Ordering::Relaxed))
}

/// Detaches region `tag` from `ep` if it is the one attached (`Ok(true)`): a region whose
/// creator could not map it, or one freed with its last mapping, so that the endpoint can
/// be given a new one. Descriptors on `ep` are refused until then (bound 0).
pub fn detach_region(ep: EpRef, tag: u64) -> Result<bool, IpcError> {
    let s = slot(ep)?;
    let _g = IrqGuard::new();
    let q = s.lock();
    if !q.is(ep) {
        return Err(IpcError::Closed);
    }
    if s.region.load(Ordering::Relaxed) != tag {
        return Ok(false);
    }
    s.region.store(0, Ordering::Release);
    s.region_bound.store(0, Ordering::Relaxed);
    drop(q);
    Ok(true)
}

/// What [`set_region`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// The region is attached.
    Done,
    /// Another region is attached (it stays).
    Occupied,
    /// The region is smaller than one the endpoint had: at least this many bytes
    /// ([`region_floor`]; descriptors checked against the larger one may still be queued).
    BelowFloor(u64),
}

/// Attaches region `tag` of `len` bytes to `ep` unless one is attached or `len` is below
/// the endpoint's floor (the largest region it had). The tag stays until the endpoint is
/// destroyed or the region is detached ([`detach_region`]). Until 2026-12-05 the floor was
/// only read by the caller, apart from this lock: a smaller region could be attached after
/// a larger one came and went in between, and a descriptor checked against the larger one
/// reached the server past its mapping (found by review;
/// `ipc.region_below_the_floor_is_refused`).
pub fn set_region(ep: EpRef, tag: u64, len: u64) -> Result<Attach, IpcError> {
    let s = slot(ep)?;
    let _g = IrqGuard::new();
    let q = s.lock();
    if !q.is(ep) {
        return Err(IpcError::Closed);
    }
    if s.region.load(Ordering::Relaxed) != 0 {
        return Ok(Attach::Occupied);
    }
    let floor = s.region_floor.load(Ordering::Relaxed);
    if len < floor {
        return Ok(Attach::BelowFloor(floor));
    }
    s.region_bound
        .store(len.saturating_add(1), Ordering::Relaxed);
    s.region_floor.fetch_max(len, Ordering::Relaxed);
    s.region.store(tag, Ordering::Release);
    drop(q);
    Ok(Attach::Done)
}

/// Counts one more owning handle of `ep` with `rights` (`Closed` if it is destroyed; a
/// deaf endpoint is still held: a send handle to it may be copied, whose operations fail,
/// one with the receive right may not).
pub fn retain(ep: EpRef, rights: Rights) -> Result<(), IpcError> {
    let s = slot(ep)?;
    let _g = IrqGuard::new();
    let mut q = s.lock();
    // A deaf endpoint (held, not live) has no receive handle and never gets one again: a
    // copy with the receive right made after its last one closed (a pass or a spawn that
    // read the entry before a sibling thread closed it) is refused, as the closed entry
    // itself would be. Until 2026-12-05 it was made: a receive handle that could never
    // receive (found by review).
    if !q.held(ep) || (rights.has(Rights::RECV) && !q.live) {
        return Err(IpcError::Closed);
    }
    q.refs += 1;
    q.recv_refs += u32::from(rights.has(Rights::RECV));
    Ok(())
}

/// Makes `ep` deaf if no handle can receive on it: for an endpoint a process creates with
/// the send right alone, which no receive handle can ever come to (a receive right is only
/// ever copied from one). Until 2026-12-05 it stayed live: its handle, passed to another
/// process, queued that process's calls until their deadlines, for ever without one, and
/// `handle_info` called it fine (found by review).
pub fn deaf_unless_heard(ep: EpRef) {
    let Ok(s) = slot(ep) else {
        return;
    };
    let _g = IrqGuard::new();
    let mut q = s.lock();
    if q.held(ep) && q.live && q.recv_refs == 0 {
        q.live = false;
        q.deaf = true;
        fail_queued(&mut q);
    }
}

/// Drops an owning handle of `ep` with `rights`: the last one destroys it (as [`destroy`]);
/// the last with the receive right makes it deaf ([`Queues::deaf`]). Nothing if `ep` is
/// already destroyed.
pub fn release(ep: EpRef, rights: Rights) {
    let Ok(s) = slot(ep) else {
        return;
    };
    {
        let _g = IrqGuard::new();
        let mut q = s.lock();
        if !q.held(ep) {
            return;
        }
        q.refs = q.refs.saturating_sub(1);
        if q.refs != 0 {
            if rights.has(Rights::RECV) {
                q.recv_refs = q.recv_refs.saturating_sub(1);
                if q.recv_refs == 0 && q.live {
                    q.live = false;
                    q.deaf = true;
                    fail_queued(&mut q);
                }
            }
            return;
        }
        kill_locked(&mut q);
    }
    free_slot(s, ep.index);
}

/// Whether `ep` can still be used: `Ok` if it is live, `Closed` if it is destroyed or deaf
/// (no handle can receive on it any more). The `handle_info` system call's answer.
pub fn check(ep: EpRef) -> Result<(), IpcError> {
    passes(ep, Queues::is)
}

/// `Ok` if `ep`'s queues, locked, pass `test`; `Closed` otherwise.
fn passes(ep: EpRef, test: fn(&Queues, EpRef) -> bool) -> Result<(), IpcError> {
    let s = slot(ep)?;
    let _g = IrqGuard::new();
    if test(&s.lock(), ep) {
        Ok(())
    } else {
        Err(IpcError::Closed)
    }
}

/// Threads queued on `ep`: (senders and callers, receivers); `None` once it is destroyed.
pub fn queued(ep: EpRef) -> Option<(usize, usize)> {
    let s = slot(ep).ok()?;
    let _g = IrqGuard::new();
    let q = s.lock();
    q.is(ep).then(|| (q.senders.len(), q.receivers.len()))
}

/// The endpoint the call the calling thread serves came through (`None`: it serves none):
/// a zero-copy reply's descriptor is checked against that endpoint's region, which the
/// caller mapped, whatever endpoint the reply is sent with.
pub fn answering() -> Option<EpRef> {
    let (_, w) = me().ok()?;
    (w.reply_to.load(Ordering::Relaxed) != 0).then(|| w.recv_ep())
}

/// The endpoint the running thread `here` last received on: the one the call it serves
/// came through, if it serves one ([`answering`] without that check: the fastpath's,
/// whose `reply_recv` needs a call served anyway).
#[inline(always)]
pub fn received_on(here: Here<'_>) -> Option<EpRef> {
    Some(WAITERS.get(here.index())?.recv_ep())
}

/// Operations made through the fastpath and the slow path, summed over threads.
pub fn stats() -> (u64, u64) {
    WAITERS.iter().fold((0, 0), |(f, s), w| {
        (
            f + w.fast.load(Ordering::Relaxed),
            s + w.slow.load(Ordering::Relaxed),
        )
    })
}

/// The calling thread's index and waiter (it must be a thread that may block).
#[inline(always)]
pub(super) fn me() -> Result<(usize, &'static Waiter), IpcError> {
    let g = IrqGuard::new();
    let (here, w) = me_pinned(&g)?;
    Ok((here.index(), w))
}

/// [`me`] under the caller's guard: the running thread and its waiter.
#[inline(always)]
pub(super) fn me_pinned(g: &IrqGuard) -> Result<(Here<'_>, &'static Waiter), IpcError> {
    let here = Here::of(g).ok_or(IpcError::NotAThread)?;
    Ok((here, waiter_of(here)?))
}

/// The waiter of the running thread `here`, its id stored for wakers.
#[inline(always)]
fn waiter_of(here: Here<'_>) -> Result<&'static Waiter, IpcError> {
    let w = WAITERS.get(here.index()).ok_or(IpcError::NotAThread)?;
    w.tid.store(here.tid().raw(), Ordering::Relaxed);
    Ok(w)
}

/// [`check_len`] of a message given by its info word.
#[inline(always)]
fn check_info(info: u64) -> Result<(), IpcError> {
    if (info >> 32) as u8 as usize > MSG_WORDS * 8 {
        Err(IpcError::TooLong)
    } else {
        Ok(())
    }
}

#[inline(always)]
fn check_len(m: &Msg) -> Result<(), IpcError> {
    if m.len as usize > MSG_WORDS * 8 {
        Err(IpcError::TooLong)
    } else {
        Ok(())
    }
}

/// Sends `msg` with `badge` and waits for the reply (TSC `deadline`).
pub fn call(ep: EpRef, badge: u64, msg: &Msg, deadline: u64) -> Result<Msg, IpcError> {
    call_via(ep, badge, msg, deadline, true)
}

/// [`call`], allowed the fastpath or not (`fast`: the system-call layer's slow bit).
#[inline(always)]
pub fn call_via(
    ep: EpRef,
    badge: u64,
    msg: &Msg,
    deadline: u64,
    fast: bool,
) -> Result<Msg, IpcError> {
    check_len(msg)?;
    let g = IrqGuard::new();
    let (here, w) = me_pinned(&g)?;
    let i = here.index();
    if fast {
        let r = fastpath::call(
            here,
            w,
            ep,
            badge,
            msg.info(),
            &msg.words,
            deadline,
            None,
            move || super::aborting_here(here),
        );
        if let Some(seq) = r {
            drop(g);
            fastpath::done(i, w, seq, deadline)?;
            return Ok(w.take());
        }
    }
    drop(g);
    call_slow(i, w, ep, badge, msg, deadline)
}

/// [`call_via`] for a message kept in registers (the system-call layer): `info`
/// ([`Msg::info`]'s encoding) and `words`, which receive the reply; returns the reply's
/// info word and badge. `park`: the caller is a user thread inside the IPC entry (its
/// `IpcFrame` at its kernel stack top, `words` in it) and this finishes its operation from
/// the frame: the fastpath parks it at its system-call boundary (`Here::handoff_parked`)
/// and does not return, unless the message carries a handle; the reply then comes back
/// through the frame (written by the replier, or by `park` when the scheduler resumes it).
#[inline(always)]
pub fn call_regs(
    ep: EpRef,
    badge: u64,
    info: u64,
    words: &mut [u64; MSG_WORDS],
    deadline: u64,
    fast: bool,
    park: Option<fn(&mut IpcFrame)>,
) -> Result<(u64, u64), IpcError> {
    check_info(info)?;
    let g = IrqGuard::new();
    let (here, w) = me_pinned(&g)?;
    let i = here.index();
    let aborted = move || super::aborting_here(here);
    if fast
        && let Some(seq) = fastpath::call(here, w, ep, badge, info, words, deadline, park, aborted)
    {
        drop(g);
        fastpath::done(i, w, seq, deadline)?;
        return Ok(w.take_into(words));
    }
    drop(g);
    let m = call_slow(i, w, ep, badge, &Msg::from_info(info, 0, *words), deadline)?;
    words.copy_from_slice(&m.words);
    Ok((m.info(), m.badge))
}

/// The system-call layer's fastpath attempt for a user thread inside the IPC entry (its
/// frame at its stack top, `words` in it; the message checked, without a handle): `call`
/// (`is_call`) or `reply_recv` through [`fastpath`], parking the caller. Returns when a
/// precondition failed; the general path then does the operation (for `reply_recv`, the
/// reply may already be done: it finds no caller left to answer and only receives).
/// `aborted`: whether the caller's process is being killed (the layer's own cheap read of
/// what [`super::aborting`] says), checked by the layer before and read again once the
/// caller is marked blocked.
#[allow(
    clippy::too_many_arguments,
    reason = "inlined: the registers of the system call"
)]
#[inline(always)]
pub fn try_fast(
    here: Here<'_>,
    is_call: bool,
    ep: EpRef,
    badge: u64,
    info: u64,
    words: &[u64; MSG_WORDS],
    deadline: u64,
    resume: fn(&mut IpcFrame),
    aborted: impl FnOnce() -> bool,
) {
    let Ok(w) = waiter_of(here) else {
        return;
    };
    let park = Some(resume);
    if is_call {
        fastpath::call(here, w, ep, badge, info, words, deadline, park, aborted);
    } else {
        fastpath::reply_recv(here, w, ep, info, words, deadline, park, aborted);
    }
}

#[inline(never)]
fn call_slow(
    i: usize,
    w: &Waiter,
    ep: EpRef,
    badge: u64,
    msg: &Msg,
    deadline: u64,
) -> Result<Msg, IpcError> {
    w.count(false);
    send_slow(i, w, ep, badge, msg, deadline, true)?;
    Ok(w.take())
}

/// Sends `msg` with `badge`; returns once a receiver took it (TSC `deadline`).
pub fn send(ep: EpRef, badge: u64, msg: &Msg, deadline: u64) -> Result<(), IpcError> {
    check_len(msg)?;
    let (i, w) = me()?;
    w.count(false);
    send_slow(i, w, ep, badge, msg, deadline, false)
}

/// The slow path of `send` and `call`: hand the message to a waiting receiver (woken) or
/// queue up; a call then waits for its reply (in the caller's slot on success).
fn send_slow(
    i: usize,
    w: &Waiter,
    ep: EpRef,
    badge: u64,
    msg: &Msg,
    deadline: u64,
    is_call: bool,
) -> Result<(), IpcError> {
    let s = slot(ep)?;
    let seq = w.begin(IDLE);
    let g = IrqGuard::new();
    let mut q = s.lock();
    if !q.is(ep) {
        return Err(IpcError::Closed);
    }
    if let Some(r) = q.receivers.pop() {
        let rw = waiter(r);
        rw.put(msg, badge);
        w.in_flight.store(0, Ordering::Relaxed);
        let rseq = seq_of(rw.word.load(Ordering::Relaxed));
        if is_call {
            rw.reply_to.store(token(i, seq), Ordering::Relaxed);
            w.word.store(pack(seq, REPLY_WAIT), Ordering::Release);
        } else {
            rw.reply_to.store(0, Ordering::Relaxed);
        }
        rw.word.store(pack(rseq, DONE), Ordering::Release);
        drop(q);
        drop(g);
        sched::wake(rw.tid());
        if !is_call {
            return Ok(());
        }
    } else {
        w.put(msg, badge);
        w.send_ep.store(ep.index, Ordering::Relaxed);
        let st = if is_call { CALL_WAIT } else { SEND_WAIT };
        w.word.store(pack(seq, st), Ordering::Release);
        q.senders.push(i as u32);
        drop(q);
        drop(g);
    }
    wait(i, w, seq, deadline)
}

/// Waits for a message on `ep` (TSC `deadline`); the caller serves it if it was a call
/// (answer with [`reply`] or [`reply_recv`]).
pub fn recv(ep: EpRef, deadline: u64) -> Result<Msg, IpcError> {
    let (i, w) = me()?;
    w.count(false);
    recv_slow(i, w, ep, deadline)
}

pub(super) fn recv_slow(i: usize, w: &Waiter, ep: EpRef, deadline: u64) -> Result<Msg, IpcError> {
    drop_call(w, IpcError::NoReply);
    let s = slot(ep)?;
    let seq = w.begin(IDLE);
    let g = IrqGuard::new();
    let mut q = s.lock();
    if !q.is(ep) {
        return Err(IpcError::Closed);
    }
    w.set_recv_ep(ep);
    if let Some(k) = q.senders.pop() {
        let sw = waiter(k);
        w.copy_from(sw);
        sw.in_flight.store(0, Ordering::Relaxed);
        let word = sw.word.load(Ordering::Relaxed);
        let sseq = seq_of(word);
        if state_of(word) == CALL_WAIT {
            w.reply_to.store(token(k as usize, sseq), Ordering::Relaxed);
            sw.word.store(pack(sseq, REPLY_WAIT), Ordering::Release);
            return Ok(w.take());
        }
        sw.word.store(pack(sseq, DONE), Ordering::Release);
        drop(q);
        drop(g);
        sched::wake(sw.tid());
        return Ok(w.take());
    }
    w.word.store(pack(seq, RECV_WAIT), Ordering::Release);
    q.receivers.push(i as u32);
    drop(q);
    drop(g);
    wait(i, w, seq, deadline)?;
    Ok(w.take())
}

/// Replies to the call the calling thread is serving.
pub fn reply(msg: &Msg) -> Result<(), IpcError> {
    check_len(msg)?;
    let (_, w) = me()?;
    reply_slow(w, msg)
}

fn reply_slow(w: &Waiter, msg: &Msg) -> Result<(), IpcError> {
    let tok = w.reply_to.swap(0, Ordering::Relaxed);
    if tok == 0 {
        return Err(IpcError::NoCaller);
    }
    let cw = waiter(token_index(tok));
    let cseq = seq_of(tok);
    let _g = IrqGuard::new();
    if cw
        .word
        .compare_exchange(
            pack(cseq, REPLY_WAIT),
            pack(cseq, REPLYING),
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return Err(IpcError::NoCaller);
    }
    cw.put(msg, 0);
    w.in_flight.store(0, Ordering::Relaxed);
    cw.word.store(pack(cseq, DONE), Ordering::Release);
    sched::wake(cw.tid());
    Ok(())
}

/// Replies to the call being served (if any: a caller that timed out or died is skipped),
/// then waits for the next message on `ep`.
pub fn reply_recv(ep: EpRef, reply: &Msg, deadline: u64) -> Result<Msg, IpcError> {
    reply_recv_via(ep, reply, deadline, true)
}

/// [`reply_recv`], allowed the fastpath or not.
#[inline(always)]
pub fn reply_recv_via(ep: EpRef, reply: &Msg, deadline: u64, fast: bool) -> Result<Msg, IpcError> {
    check_len(reply)?;
    let g = IrqGuard::new();
    let (here, w) = me_pinned(&g)?;
    let i = here.index();
    if fast {
        let r = fastpath::reply_recv(
            here,
            w,
            ep,
            reply.info(),
            &reply.words,
            deadline,
            None,
            move || super::aborting_here(here),
        );
        if let Some(seq) = r {
            drop(g);
            fastpath::done(i, w, seq, deadline)?;
            return Ok(w.take());
        }
    }
    drop(g);
    reply_recv_slow(i, w, ep, reply, deadline)
}

/// [`reply_recv_via`] for messages kept in registers, as [`call_regs`] (`park` too).
#[inline(always)]
pub fn reply_recv_regs(
    ep: EpRef,
    info: u64,
    words: &mut [u64; MSG_WORDS],
    deadline: u64,
    fast: bool,
    park: Option<fn(&mut IpcFrame)>,
) -> Result<(u64, u64), IpcError> {
    check_info(info)?;
    let g = IrqGuard::new();
    let (here, w) = me_pinned(&g)?;
    let i = here.index();
    let aborted = move || super::aborting_here(here);
    if fast
        && let Some(seq) = fastpath::reply_recv(here, w, ep, info, words, deadline, park, aborted)
    {
        drop(g);
        fastpath::done(i, w, seq, deadline)?;
        return Ok(w.take_into(words));
    }
    drop(g);
    let m = reply_recv_slow(i, w, ep, &Msg::from_info(info, 0, *words), deadline)?;
    words.copy_from_slice(&m.words);
    Ok((m.info(), m.badge))
}

#[inline(never)]
fn reply_recv_slow(
    i: usize,
    w: &Waiter,
    ep: EpRef,
    reply: &Msg,
    deadline: u64,
) -> Result<Msg, IpcError> {
    w.count(false);
    let _ = reply_slow(w, reply);
    // A handle in a reply nobody took is let go now, not after the next message.
    settle(w);
    recv_slow(i, w, ep, deadline)
}

/// Fails the call `w` serves (if any) with `e`.
fn drop_call(w: &Waiter, e: IpcError) {
    let tok = w.reply_to.swap(0, Ordering::Relaxed);
    if tok == 0 {
        return;
    }
    let cw = waiter(token_index(tok));
    let cseq = seq_of(tok);
    if cw
        .word
        .compare_exchange(
            pack(cseq, REPLY_WAIT),
            failed(cseq, e),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
    {
        sched::wake(cw.tid());
    }
}

/// Waits until operation `seq` of thread `i` is done (message delivered or taken, reply in
/// its slot) or failed, or `deadline` passes (leaving the queue, or the reply wait, first).
pub(super) fn wait(i: usize, w: &Waiter, seq: u64, deadline: u64) -> Result<(), IpcError> {
    loop {
        let word = w.word.load(Ordering::Acquire);
        debug_assert_eq!(seq_of(word), seq);
        match state_of(word) {
            DONE => return Ok(()),
            FAILED => return Err(IpcError::from_code((word >> 8) as u8)),
            REPLYING => {
                // A replier on another CPU is writing (interrupts off): a few stores.
                core::hint::spin_loop();
                continue;
            }
            _ => {}
        }
        if rdtsc() >= deadline {
            if timeout(i, w, word) {
                return Err(IpcError::TimedOut);
            }
            continue;
        }
        if super::aborting() {
            if timeout(i, w, word) {
                return Err(IpcError::Interrupted);
            }
            core::hint::spin_loop();
            continue;
        }
        sched::block_until(deadline, || {
            w.word.load(Ordering::Acquire) == word && !super::aborting()
        });
    }
}

/// Ends a wait in state `word` by its deadline; false if the state moved meanwhile.
fn timeout(i: usize, w: &Waiter, word: u64) -> bool {
    let seq = seq_of(word);
    match state_of(word) {
        REPLY_WAIT => w
            .word
            .compare_exchange(word, pack(seq, IDLE), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok(),
        RECV_WAIT | SEND_WAIT | CALL_WAIT => {
            let index = if state_of(word) == RECV_WAIT {
                w.recv_ep.load(Ordering::Relaxed)
            } else {
                w.send_ep.load(Ordering::Relaxed)
            };
            let Some(s) = SLOTS.get(index as usize) else {
                return false;
            };
            let _g = IrqGuard::new();
            let mut q = s.lock();
            if w.word.load(Ordering::Acquire) != word {
                return false;
            }
            let list = if state_of(word) == RECV_WAIT {
                &mut q.receivers
            } else {
                &mut q.senders
            };
            list.remove(i as u32);
            w.word.store(pack(seq, IDLE), Ordering::Release);
            true
        }
        _ => false,
    }
}

/// The exit hook (`sched::set_exit_hook`): the ending thread `i` fails the call it serves
/// and leaves any queue; its seq moves on, so tokens naming it go stale.
fn on_thread_exit(i: usize) {
    let Some(w) = WAITERS.get(i) else {
        return;
    };
    drop_call(w, IpcError::PeerDied);
    let word = w.word.load(Ordering::Acquire);
    if matches!(state_of(word), RECV_WAIT | SEND_WAIT | CALL_WAIT) {
        let _ = timeout(i, w, word);
    }
    w.begin(IDLE);
    settle(w);
}

/// Holds endpoint `ep` for the flight of a message the calling thread is about to send
/// with a handle to it (the system-call layer's `INFO_HANDLE`): one more owner, so the
/// endpoint lives until the receiver's table has the handle even if every other handle to
/// it is closed meanwhile (the sender's own too). The slow path's hand-over of the message
/// gives the hold to the receiver, which keeps it as its new handle's (or drops it:
/// [`adopt`]); the operation's end drops it if the message never left
/// ([`settle_in_flight`]). Such messages never take the fastpath. `Closed`: `ep` is gone
/// (its last handle was closed since the sender looked it up).
pub fn hold_in_flight(ep: EpRef, rights: Rights) -> Result<(), IpcError> {
    let (_, w) = me()?;
    retain(ep, rights)?;
    settle(w);
    w.in_flight.store(hold_word(ep, rights), Ordering::Relaxed);
    Ok(())
}

/// Where a hold's rights sit in [`hold_word`]: bits 24..26 of the slot half (slots are
/// below 2^24).
const HOLD_RIGHTS_SHIFT: u32 = 24;
const _: () = assert!(MAX_ENDPOINTS < 1 << HOLD_RIGHTS_SHIFT);

/// One word for a hold of `ep` with `rights` (never 0: the generation is not): the flight's
/// record, and the word a message carrying a handle has while in flight.
pub fn hold_word(ep: EpRef, rights: Rights) -> u64 {
    ep.raw() | (u64::from(rights.0 & Rights::ALL.0) << HOLD_RIGHTS_SHIFT)
}

/// The endpoint and rights of a [`hold_word`].
pub fn hold_of(word: u64) -> (EpRef, Rights) {
    let rights = Rights(((word >> HOLD_RIGHTS_SHIFT) & u64::from(Rights::ALL.0)) as u8);
    (
        EpRef::from_raw(word & !(u64::from(Rights::ALL.0) << HOLD_RIGHTS_SHIFT)),
        rights,
    )
}

/// The end of an operation that sent a message with a handle: drops the flight's hold if
/// the message was not handed over (the send failed, timed out, or a reply found no caller).
pub fn settle_in_flight() {
    if let Ok((_, w)) = me() {
        settle(w);
    }
}

fn settle(w: &Waiter) {
    let raw = w.in_flight.swap(0, Ordering::Relaxed);
    if raw != 0 {
        let (ep, rights) = hold_of(raw);
        release(ep, rights);
    }
}

/// A received handle's endpoint, held for the flight by its sender ([`hold_in_flight`]):
/// `Ok` if it still exists, deaf or not (the hold is now the caller's, for the handle it
/// installs, or to [`release`] if it cannot), `Closed` if it was destroyed meanwhile (the
/// hold went with it).
pub fn adopt(ep: EpRef) -> Result<(), IpcError> {
    passes(ep, Queues::held)
}

/// Endpoints that exist now (the init job's memory line: none may be left by processes).
pub fn live_endpoints() -> usize {
    SLOTS
        .iter()
        .filter(|s| s.used.load(Ordering::Acquire))
        .count()
}
