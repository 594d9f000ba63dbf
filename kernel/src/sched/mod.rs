//! Kernel threads and per-CPU scheduling.
//!
//! * **Threads**: a static table of [`MAX_THREADS`] control blocks; a [`Tid`] is an index plus
//!   a generation (a stale handle is refused, not confused with a new thread). Stacks are
//!   guarded (`memory::alloc_stack`) and recycled through a per-CPU stack cache. `spawn`,
//!   `exit`, `join`, `yield_now`, `sleep_until` (TSC deadline), CPU affinity (a mask).
//! * **Run queues**: one [`exo_sched::RunQueue`] per CPU (64 priorities, bitmap + `lzcnt`,
//!   a hot queue for threads whose run bursts (EMA) are short), behind that CPU's own lock.
//!   The lock is taken with interrupts off and is *held across the context switch*: the
//!   thread switched to releases it (`finish_switch`), so a thread put back on a queue
//!   cannot be stolen before its registers are saved. No global lock anywhere on these paths.
//! * **Wake-ups**: `Blocked -> Ready` is one CAS on the thread's state; the winner posts the
//!   thread to its CPU's lock-free [`exo_sched::Mailbox`] and rings that CPU (wake IPI) when
//!   the doorbell says so. The CPU drains its mailbox into its run queue when it schedules.
//! * **Preemption**: a one-shot local APIC timer per CPU (TSC-deadline mode when CPUID offers
//!   it) fires at the end of the running thread's slice or at the first sleeper's deadline;
//!   the tick preempts only when the interrupted code is preemptible (`exo_percpu::preemptible`:
//!   preempt count and allocator leaf byte both zero). Under `-icount` the timer is not used
//!   (QEMU limitation, see boot.rs): no preemption, sleepers are polled.
//! * **Idle and stealing**: each CPU has an idle context (an AP's boot context; the BSP gets
//!   an idle thread) that halts with `sti; hlt` and, when woken, takes work from its mailbox
//!   or steals a runnable thread it may run from another CPU (`try_lock` only). Two shared
//!   bitmaps over the CPUs that exist ([`exo_sched::AtomicMask`], sized at start-up) keep
//!   this bounded at any CPU count: *halted* CPUs and CPUs with *stealable* threads. A thief
//!   starts its search at a random CPU and tries at most [`STEAL_TRIES`] victims; a busy CPU
//!   with threads waiting claims the next halted CPU after itself (one atomic bit clear) and
//!   wakes it (at spawn, at its ticks, and each thief while its victim still has work); with
//!   a timer, idle CPUs also wake every 8 slices to look for work themselves. No path scans
//!   one entry per CPU: at 1024 CPUs a query reads 16 words.
//! * **Context switch**: `exo_arch::context::switch`, a naked function saving the callee-saved
//!   registers and the stack pointer; `SWITCH_SAMPLES` TSC deltas are kept for the report.
//!
//! This module is the kernel's third audited `unsafe` module: the run queue and the saved
//! stack pointers live in `UnsafeCell`s guarded by the per-CPU lock, and it calls the switch.
#![allow(
    unsafe_code,
    reason = "run queues and saved contexts behind the per-CPU lock"
)]

pub mod fpu;
pub mod park;

mod bench;
mod tests;

use crate::mm::memory::{self, Stack};
use crate::smp::cpus::{self, VEC_TIMER, VEC_WAKE};
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_arch::tsc::rdtsc;
use exo_percpu::{CpuId, IrqGuard};
pub use exo_sched::CpuSet;
use exo_sched::{AtomicMask, Ema, Mailbox, Priority, Queue, RunQueue, ThreadRef, classify};

/// Threads that can exist at once (TCB table size, run-queue capacity).
pub const MAX_THREADS: usize = 1024;
/// Victims a thief tries (random start, then the next CPUs with stealable threads).
pub const STEAL_TRIES: u32 = 4;
/// Default priority (0..=63, larger is more urgent).
pub const DEFAULT_PRIORITY: u8 = 32;
/// Context-switch samples kept.
pub const SWITCH_SAMPLES: usize = 2048;

/// Pages of a thread stack.
pub const STACK_PAGES: u64 = if cfg!(debug_assertions) { 16 } else { 8 };
/// Stacks each CPU keeps for reuse.
pub const STACK_CACHE: usize = 16;
const MAILBOX_SLOTS: usize = 256;
const NO_THREAD: u32 = u32::MAX;
/// Thread indices from here on name CPUs' idle contexts (`IDLE_BASE + cpu`), whose control
/// blocks live in each CPU's scheduler state, not in the table: the table's
/// [`MAX_THREADS`] slots stay free for threads at any CPU count.
const IDLE_BASE: usize = MAX_THREADS;

/// A thread id: the index in the low 32 bits, the slot's full 32-bit generation above (a
/// stale handle is refused, even after 2^32 lifetimes of one slot wrap it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tid(u64);

impl Tid {
    fn new(index: usize, generation: u32) -> Tid {
        Tid((u64::from(generation) << 32) | index as u64)
    }
    /// Table index.
    pub fn index(self) -> usize {
        self.0 as u32 as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// From a raw value of [`Tid::raw`].
    pub fn from_raw(raw: u64) -> Tid {
        Tid(raw)
    }
    /// The raw value (printing, passing through a word).
    pub fn raw(self) -> u64 {
        self.0
    }
}

impl core::fmt::Display for Tid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "tid {}.{}", self.index(), self.generation())
    }
}

/// Why a scheduler call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedError {
    /// The scheduler is not initialised on this CPU.
    NotRunning,
    /// All `MAX_THREADS` control blocks are in use.
    TooManyThreads,
    /// No memory for a stack.
    OutOfMemory,
    /// The affinity mask names no online CPU.
    BadAffinity,
    /// The id names no live thread (exited and reaped, or never existed).
    NoSuchThread,
    /// Someone else already joins this thread, or a thread joins itself.
    AlreadyJoined,
    /// The deadline passed first.
    TimedOut,
}

impl core::fmt::Display for SchedError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SchedError::NotRunning => "scheduler not running on this CPU",
            SchedError::TooManyThreads => "thread table full",
            SchedError::OutOfMemory => "out of memory for a thread stack",
            SchedError::BadAffinity => "affinity names no online CPU",
            SchedError::NoSuchThread => "no such thread",
            SchedError::AlreadyJoined => "thread already joined (or joining itself)",
            SchedError::TimedOut => "deadline passed",
        })
    }
}

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free = 0,
    Embryo = 1,
    Ready = 2,
    Running = 3,
    Blocked = 4,
    Exiting = 5,
    Exited = 6,
}

impl State {
    fn from(v: u8) -> State {
        match v {
            1 => State::Embryo,
            2 => State::Ready,
            3 => State::Running,
            4 => State::Blocked,
            5 => State::Exiting,
            6 => State::Exited,
            _ => State::Free,
        }
    }
}

/// The first CPU of `set` whose scheduler runs.
fn first_online(set: &CpuSet) -> Option<u32> {
    set.iter(cpus::capacity() as u32)
        .find(|&c| cpu_sched(c).is_some())
}

/// A thread's entry point: `f(arg)`; the return value is the exit code `join` returns.
pub type ThreadFn = fn(u64) -> u64;

struct Tcb {
    state: AtomicU8,
    generation: AtomicU32,
    /// Saved stack pointer while switched out (written by the switch under the CPU's lock).
    ctx: UnsafeCell<u64>,
    cpu: AtomicU32,
    affinity: spin::Mutex<CpuSet>,
    any_cpu: AtomicBool,
    prio: AtomicU8,
    ema: AtomicU64,
    started: AtomicU64,
    stack_bottom: AtomicU64,
    stack_top: AtomicU64,
    entry: AtomicU64,
    arg: AtomicU64,
    exit_code: AtomicU64,
    /// Index of the joining thread + 1 (0: none).
    joiner: AtomicU32,
    wake_at: AtomicU64,
    switches: AtomicU64,
    /// FPU save area (0: none yet) and whether the thread ever used the FPU.
    fpu_area: AtomicU64,
    /// CPU whose registers last saved this thread's FPU state (`u32::MAX`: none).
    fpu_cpu: AtomicU32,
    /// Wait node for the kernel futex (`park`): parking never allocates.
    park: crate::sched::park::ParkNode,
    /// Sleeping locks (`park::Mutex`) held, while switched out (while it runs, the count
    /// lives in its CPU's GS block: `exo_percpu::held_locks`). A thread that faults holding
    /// one is not killed (the lock would stay held for good); the machine stops instead.
    held: AtomicU64,
}

// SAFETY: `ctx` is only accessed by the CPU that switches the thread out or in, with that
// CPU's run-queue lock held (the thread is then on no other CPU); all else is atomic.
unsafe impl Sync for Tcb {}

impl Tcb {
    const fn new() -> Tcb {
        Tcb {
            state: AtomicU8::new(State::Free as u8),
            generation: AtomicU32::new(1),
            ctx: UnsafeCell::new(0),
            cpu: AtomicU32::new(0),
            affinity: spin::Mutex::new(CpuSet::ANY),
            any_cpu: AtomicBool::new(true),
            prio: AtomicU8::new(DEFAULT_PRIORITY),
            ema: AtomicU64::new(0),
            started: AtomicU64::new(0),
            stack_bottom: AtomicU64::new(0),
            stack_top: AtomicU64::new(0),
            entry: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            exit_code: AtomicU64::new(0),
            joiner: AtomicU32::new(0),
            wake_at: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            fpu_area: AtomicU64::new(0),
            fpu_cpu: AtomicU32::new(u32::MAX),
            park: crate::sched::park::ParkNode::new(),
            held: AtomicU64::new(0),
        }
    }
    fn state(&self) -> State {
        State::from(self.state.load(Ordering::Acquire))
    }
    fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }
    fn cas_state(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    fn ctx_ptr(&self) -> *mut u64 {
        self.ctx.get()
    }
    fn stack(&self) -> Option<Stack> {
        let bottom = self.stack_bottom.load(Ordering::Relaxed);
        (bottom != 0).then(|| Stack {
            bottom,
            top: self.stack_top.load(Ordering::Relaxed),
        })
    }
}

static TCBS: [Tcb; MAX_THREADS] = [const { Tcb::new() }; MAX_THREADS];
static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);
/// Stacks kept for reuse beyond the per-CPU caches (128 x 32 KiB = 4 MiB at most); more are
/// unmapped and their memory given back (a burst of threads does not keep its stacks for
/// good). Fixed capacity: the switch path that returns a stack never allocates.
static STACK_POOL: spin::Mutex<ArrayVec<Stack, STACK_POOL_CAP>> =
    spin::Mutex::new(ArrayVec::new_const());
/// Capacity of [`STACK_POOL`].
pub const STACK_POOL_CAP: usize = 128;

/// Thread `i`'s control block: a table slot, or (from [`IDLE_BASE`] on) a CPU's idle context.
fn tcb(i: usize) -> &'static Tcb {
    match TCBS.get(i) {
        Some(t) => t,
        None => idle_tcb(i),
    }
}

#[cold]
fn idle_tcb(i: usize) -> &'static Tcb {
    match cpu_sched((i - IDLE_BASE) as u32) {
        Some(cs) => &cs.idle_tcb,
        None => panic!("thread index {i} names no thread"),
    }
}

/// One CPU's scheduler state.
pub struct CpuSched {
    cpu: u32,
    apic_id: u32,
    lock: AtomicBool,
    rq: UnsafeCell<RunQueue<MAX_THREADS>>,
    sleepers: UnsafeCell<ArrayVec<u32, MAX_THREADS>>,
    mailbox: Mailbox<ThreadRef, MAILBOX_SLOTS>,
    current: AtomicU32,
    idle: AtomicU32,
    prev: AtomicU32,
    nr_ready: AtomicU32,
    nr_stealable: AtomicU32,
    /// xorshift state for the thieves' random start (this CPU only).
    rng: AtomicU64,
    switch_t0: AtomicU64,
    /// CPU the thread just switched out must move to (`NO_THREAD`: none), for the next thread.
    migrate: AtomicU32,
    stacks: spin::Mutex<ArrayVec<Stack, STACK_CACHE>>,
    /// Which thread's FPU state this CPU's registers hold.
    pub fpu: crate::sched::fpu::CpuFpu,
    /// The control block of this CPU's idle context (thread index `IDLE_BASE + cpu`) when it
    /// is an AP's boot context.
    idle_tcb: Tcb,
    /// Counters: context switches, preemptions by the tick, threads stolen, wake IPIs sent.
    pub switches: AtomicU64,
    /// See `switches`.
    pub preemptions: AtomicU64,
    /// See `switches`.
    pub steals: AtomicU64,
    /// See `switches`.
    pub wake_ipis: AtomicU64,
}

// SAFETY: `rq` and `sleepers` are only accessed with `lock` held (and interrupts off); every
// other field is atomic or behind its own lock.
unsafe impl Sync for CpuSched {}

impl core::fmt::Debug for CpuSched {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CpuSched")
            .field("cpu", &self.cpu)
            .field("nr_ready", &self.nr_ready)
            .finish_non_exhaustive()
    }
}

/// The shared CPU bitmaps, allocated by `init` for the CPUs that exist.
struct Masks {
    halted: &'static [AtomicU64],
    stealable: &'static [AtomicU64],
    n: u32,
}

static MASKS: spin::Once<Masks> = spin::Once::new();

/// CPUs halted in their idle loop (a kicker claims one by clearing its bit).
fn halted_mask() -> Option<AtomicMask<'static>> {
    MASKS.get().map(|m| AtomicMask::new(m.halted, m.n))
}

/// CPUs with queued threads that another CPU may take (`nr_stealable > 0`).
fn stealable_mask() -> Option<AtomicMask<'static>> {
    MASKS.get().map(|m| AtomicMask::new(m.stealable, m.n))
}

fn alloc_mask(n: u32) -> Result<&'static [AtomicU64], SchedError> {
    crate::mm::kalloc::try_leak_slice(AtomicMask::words_for(n), || AtomicU64::new(0))
        .map(|s| &*s)
        .map_err(|_| SchedError::OutOfMemory)
}

static TIMER: AtomicU8 = AtomicU8::new(TIMER_OFF);
const TIMER_OFF: u8 = 0;
const TIMER_ONESHOT: u8 = 1;
const TIMER_DEADLINE: u8 = 2;
static SLICE_TSC: AtomicU64 = AtomicU64::new(0);
/// An idle CPU with a timer wakes every this many slices to look for work to steal.
const IDLE_BALANCE_SLICES: u64 = 8;

/// `cpu`'s scheduler, once it runs there.
pub fn cpu_sched(cpu: u32) -> Option<&'static CpuSched> {
    cpus::get(CpuId(cpu)).and_then(|b| b.ext.sched.get().copied())
}

/// This CPU's scheduler (the caller is pinned: interrupts off or in an interrupt handler):
/// one `gs:` load.
pub fn this_sched() -> Option<&'static CpuSched> {
    let p = exo_percpu::sched_slot() as *const CpuSched;
    // The slot holds 0 or the leaked `CpuSched` of this CPU (set once by `init_this_cpu`).
    (!p.is_null()).then(|| crate::sys::leaked_ref(p))
}

impl CpuSched {
    fn lock(&self) {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.lock.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }
    fn try_lock(&self) -> bool {
        !self.lock.load(Ordering::Relaxed)
            && self
                .lock
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }
    fn unlock(&self) {
        self.lock.store(false, Ordering::Release);
    }
    /// The run queue.
    ///
    /// # Safety
    /// The caller holds `lock` and does not keep another reference to the queue.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rq(&self) -> &mut RunQueue<MAX_THREADS> {
        // SAFETY: per the contract, the lock makes this the only live reference.
        unsafe { &mut *self.rq.get() }
    }
    /// The sleeper list (same contract as `rq`).
    ///
    /// # Safety
    /// As for [`CpuSched::rq`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn sleepers(&self) -> &mut ArrayVec<u32, MAX_THREADS> {
        // SAFETY: per the contract.
        unsafe { &mut *self.sleepers.get() }
    }

    /// Enqueues thread `i` (lock held).
    fn enqueue_locked(&self, i: usize) {
        let t = tcb(i);
        let prio = Priority::new(t.prio.load(Ordering::Relaxed)).unwrap_or(Priority::MIN);
        let class = classify(
            Ema::new(t.ema.load(Ordering::Relaxed)),
            SLICE_TSC.load(Ordering::Relaxed).max(1),
        );
        t.cpu.store(self.cpu, Ordering::Relaxed);
        // SAFETY: the caller holds the lock.
        if unsafe { self.rq() }
            .enqueue(ThreadRef(i as u32), prio, class)
            .is_ok()
        {
            self.nr_ready.fetch_add(1, Ordering::Relaxed);
            if t.any_cpu.load(Ordering::Relaxed)
                && self.nr_stealable.fetch_add(1, Ordering::Relaxed) == 0
                && let Some(m) = stealable_mask()
            {
                m.set(self.cpu);
            }
        }
    }

    /// Counts thread `i` off this queue (lock held: the stealable bit changes with the count).
    fn account_dequeue(&self, i: usize) {
        self.nr_ready.fetch_sub(1, Ordering::Relaxed);
        if tcb(i).any_cpu.load(Ordering::Relaxed)
            && self.nr_stealable.fetch_sub(1, Ordering::Relaxed) == 1
            && let Some(m) = stealable_mask()
        {
            m.clear(self.cpu);
        }
    }

    /// A pseudo-random number (xorshift64; only this CPU calls it).
    fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// Moves woken threads from the mailbox to the run queue (lock held).
    fn drain_mailbox(&self) {
        let cur = self.current.load(Ordering::Relaxed);
        self.mailbox.drain(|r| {
            let i = r.index();
            let t = tcb(i);
            // Stale entries (the thread runs, was stolen, or blocked again) are dropped.
            if i as u32 != cur
                && t.state() == State::Ready
                && t.cpu.load(Ordering::Acquire) == self.cpu
            {
                // SAFETY: the caller holds the lock.
                if !unsafe { self.rq() }.contains(r) {
                    self.enqueue_locked(i);
                }
            }
        });
    }

    /// Wakes the sleepers whose deadline passed (lock held); returns the next deadline.
    fn wake_sleepers(&self, now: u64) -> Option<u64> {
        // SAFETY: the caller holds the lock.
        let sl = unsafe { self.sleepers() };
        let mut next: Option<u64> = None;
        let mut k = 0;
        while k < sl.len() {
            let i = sl[k] as usize;
            let t = tcb(i);
            let at = t.wake_at.load(Ordering::Relaxed);
            if at <= now || t.state() != State::Blocked {
                sl.swap_remove(k);
                if at <= now
                    && t.cpu.load(Ordering::Acquire) == self.cpu
                    && t.cas_state(State::Blocked, State::Ready)
                {
                    self.enqueue_locked(i);
                }
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
                k += 1;
            }
        }
        next
    }

    /// Takes one runnable thread it may run from another CPU (our lock held; theirs only
    /// tried): victims come from the stealable mask, starting at a random CPU, at most
    /// [`STEAL_TRIES`] of them.
    fn steal(&self) -> Option<usize> {
        let mask = stealable_mask()?;
        if mask.is_empty() {
            return None;
        }
        let mut at = (self.random() % u64::from(mask.len())) as u32;
        for _ in 0..STEAL_TRIES {
            let c = mask.find_from(at, self.cpu)?;
            at = c.wrapping_add(1);
            if let Some(victim) = cpu_sched(c)
                && let Some(i) = self.steal_from(victim)
            {
                return Some(i);
            }
        }
        None
    }

    fn steal_from(&self, victim: &'static CpuSched) -> Option<usize> {
        if victim.nr_stealable.load(Ordering::Relaxed) == 0 || !victim.try_lock() {
            return None;
        }
        // SAFETY: we hold the victim's lock.
        let rq = unsafe { victim.rq() };
        let mut found = None;
        'outer: for class in [Queue::Normal, Queue::Hot] {
            for p in (0..Priority::LEVELS as u8).rev() {
                let prio = Priority::new(p).unwrap_or(Priority::MIN);
                for r in rq.iter_level(prio, class) {
                    let t = tcb(r.index());
                    if t.any_cpu.load(Ordering::Relaxed) || t.affinity.lock().contains(self.cpu) {
                        found = Some(r);
                        break 'outer;
                    }
                }
            }
        }
        let Some(r) = found else {
            victim.unlock();
            return None;
        };
        let ok = rq.remove(r).is_ok();
        if ok {
            victim.account_dequeue(r.index());
            tcb(r.index()).cpu.store(self.cpu, Ordering::Release);
        }
        victim.unlock();
        if ok {
            // Pass it on: while the victim still has work to give, wake one more halted CPU
            // (each thief recruits the next, so a burst spreads in a few steps).
            kick_idle_cpu(victim);
            self.steals.fetch_add(1, Ordering::Relaxed);
            Some(r.index())
        } else {
            None
        }
    }
}

/// Is the scheduler running on this CPU?
pub fn running() -> bool {
    this_sched().is_some()
}

/// Is the caller this CPU's idle context (which must never block)?
pub fn current_is_idle() -> bool {
    let _g = IrqGuard::new();
    this_sched()
        .is_some_and(|cs| cs.current.load(Ordering::Relaxed) == cs.idle.load(Ordering::Relaxed))
}

/// The calling thread's id (`None` before the scheduler runs on this CPU).
pub fn current() -> Option<Tid> {
    let _g = IrqGuard::new();
    let cs = this_sched()?;
    Some(tid_of(cs.current.load(Ordering::Relaxed) as usize))
}

fn alloc_slot() -> Result<usize, SchedError> {
    let start = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) as usize;
    for k in 0..MAX_THREADS {
        let i = (start + k) % MAX_THREADS;
        if TCBS[i]
            .state
            .compare_exchange(
                State::Free as u8,
                State::Embryo as u8,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return Ok(i);
        }
    }
    Err(SchedError::TooManyThreads)
}

fn free_slot(i: usize) {
    let t = tcb(i);
    t.generation.fetch_add(1, Ordering::Relaxed);
    t.joiner.store(0, Ordering::Relaxed);
    t.held.store(0, Ordering::Relaxed);
    t.set_state(State::Free);
}

fn take_stack(cs: &CpuSched) -> Result<Stack, SchedError> {
    if let Some(s) = cs.stacks.lock().pop() {
        return Ok(s);
    }
    if let Some(s) = STACK_POOL.lock().pop() {
        return Ok(s);
    }
    memory::alloc_stack(STACK_PAGES).map_err(|_| SchedError::OutOfMemory)
}

/// Returns an exited thread's stack (interrupts off, from the switch path): to this CPU's
/// cache, else the global pool, else it is freed. Nothing here allocates.
fn give_stack(cs: &CpuSched, s: Stack) {
    let Err(e) = cs.stacks.lock().try_push(s) else {
        return;
    };
    let Err(e) = STACK_POOL.lock().try_push(e.element()) else {
        return;
    };
    memory::free_stack(e.element());
}

/// Stacks held for reuse: (in this CPU's cache, in the global pool).
pub fn cached_stacks() -> (usize, usize) {
    let _g = IrqGuard::new();
    let here = this_sched().map_or(0, |cs| cs.stacks.lock().len());
    (here, STACK_POOL.lock().len())
}

/// How to start a thread.
#[derive(Debug, Clone)]
pub struct Builder {
    affinity: CpuSet,
    prio: u8,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            affinity: CpuSet::ANY,
            prio: DEFAULT_PRIORITY,
        }
    }
}

impl Builder {
    /// Defaults: any CPU, priority 32.
    pub fn new() -> Builder {
        Builder::default()
    }
    /// Runs only on `cpu`.
    pub fn pin(mut self, cpu: u32) -> Builder {
        self.affinity = CpuSet::one(cpu);
        self
    }
    /// Runs only on the CPUs of `set`.
    pub fn affinity(mut self, set: CpuSet) -> Builder {
        self.affinity = set;
        self
    }
    /// Priority 0..=63 (clamped).
    pub fn priority(mut self, p: u8) -> Builder {
        self.prio = p.min(Priority::MAX.get());
        self
    }

    /// Starts `f(arg)`; it is runnable at once.
    pub fn spawn(self, f: ThreadFn, arg: u64) -> Result<Tid, SchedError> {
        let g = IrqGuard::new();
        let (tid, target) = self.create(f, arg)?;
        let here = this_sched().ok_or(SchedError::NotRunning)?;
        let i = tid.index();
        tcb(i).set_state(State::Ready);
        if core::ptr::eq(target, here) {
            here.lock();
            here.enqueue_locked(i);
            here.unlock();
            kick_idle_cpu(here);
        } else {
            post_wake(target, i);
        }
        drop(g);
        Ok(tid)
    }

    /// Builds the thread (state `Embryo`, not queued) and chooses its CPU.
    fn create(self, f: ThreadFn, arg: u64) -> Result<(Tid, &'static CpuSched), SchedError> {
        let here = this_sched().ok_or(SchedError::NotRunning)?;
        let target = if self.affinity.contains(here.cpu) {
            here
        } else {
            first_online(&self.affinity)
                .and_then(cpu_sched)
                .ok_or(SchedError::BadAffinity)?
        };
        let i = alloc_slot()?;
        let stack = match take_stack(here) {
            Ok(s) => s,
            Err(e) => {
                tcb(i).set_state(State::Free);
                return Err(e);
            }
        };
        let t = tcb(i);
        t.stack_bottom.store(stack.bottom, Ordering::Relaxed);
        t.stack_top.store(stack.top, Ordering::Relaxed);
        t.any_cpu.store(self.affinity.is_any(), Ordering::Relaxed);
        *t.affinity.lock() = self.affinity;
        t.prio.store(self.prio, Ordering::Relaxed);
        t.ema.store(0, Ordering::Relaxed);
        t.entry.store(f as usize as u64, Ordering::Relaxed);
        t.arg.store(arg, Ordering::Relaxed);
        t.joiner.store(0, Ordering::Relaxed);
        t.switches.store(0, Ordering::Relaxed);
        t.fpu_area.store(0, Ordering::Relaxed);
        // SAFETY: the stack was just taken from the cache or mapped for this thread alone;
        // its top is page-aligned and the pages below it are mapped.
        let rsp = unsafe { exo_arch::context::init_stack(stack.top, thread_entry, i as u64) };
        // SAFETY: the thread is an embryo nobody else can see yet.
        unsafe { *t.ctx_ptr() = rsp };
        let tid = Tid::new(i, t.generation.load(Ordering::Relaxed));
        t.cpu.store(target.cpu, Ordering::Relaxed);
        Ok((tid, target))
    }
}

/// Starts `f(arg)` on any CPU at the default priority.
pub fn spawn(f: ThreadFn, arg: u64) -> Result<Tid, SchedError> {
    Builder::new().spawn(f, arg)
}

/// Posts thread `i` (already `Ready`, `cpu` set) to `target` and rings it if needed. The
/// caller must not hold any run-queue lock.
fn post_wake(target: &CpuSched, i: usize) {
    // Interrupts off: the fallback below takes a run-queue lock (maybe this CPU's), which an
    // interrupt on this CPU (the tick) also takes.
    let _g = IrqGuard::new();
    let pushed = if FORCE_MAILBOX_FULL.load(Ordering::Relaxed) {
        Err(())
    } else {
        target.mailbox.push(ThreadRef(i as u32)).map_err(|_| ())
    };
    match pushed {
        Ok(exo_sched::Notify::SendIpi) => ring(target),
        Ok(exo_sched::Notify::AlreadyPending) => {}
        Err(()) => {
            // Mailbox full: enqueue under the target's lock (never our own: callers do not
            // hold a lock here), then ring it. The same rules as `drain_mailbox`: a thread
            // that is still the target's current one (woken between marking itself blocked
            // and switching out) is not queued — its own `schedule` keeps it running, as it
            // is Ready; nor is one already queued, or no longer Ready on that CPU.
            target.lock();
            let t = tcb(i);
            if target.current.load(Ordering::Relaxed) != i as u32
                && t.state() == State::Ready
                && t.cpu.load(Ordering::Acquire) == target.cpu
                // SAFETY: we hold the target's lock.
                && !unsafe { target.rq() }.contains(ThreadRef(i as u32))
            {
                target.enqueue_locked(i);
            }
            target.unlock();
            ring(target);
        }
    }
}

/// Fault injection: every wake-up takes the full-mailbox path (tests).
static FORCE_MAILBOX_FULL: AtomicBool = AtomicBool::new(false);

/// Makes every wake-up behave as if the target's mailbox were full (`true`), or normal.
pub fn force_mailbox_full(on: bool) {
    FORCE_MAILBOX_FULL.store(on, Ordering::Relaxed);
}

/// Sets the generation of every free thread slot to `generation` (tests: ids of threads
/// spawned next carry it, e.g. near the 32-bit wrap).
pub fn age_free_slots(generation: u32) {
    for t in &TCBS {
        if t.state() == State::Free {
            t.generation.store(generation, Ordering::Relaxed);
        }
    }
}

fn ring(target: &CpuSched) {
    if target.cpu == exo_percpu::cpu_id_hint().0 {
        return; // we drain our own mailbox at our next schedule
    }
    target.wake_ipis.fetch_add(1, Ordering::Relaxed);
    let _ = apic::send_ipi(Dest::Id(target.apic_id), Delivery::Fixed(VEC_WAKE));
}

/// After making an unpinned thread runnable here, wakes one halted CPU so it can steal.
fn kick_idle_cpu(here: &CpuSched) {
    if here.nr_stealable.load(Ordering::Relaxed) == 0 {
        return;
    }
    // Search from the CPU after this one, wrapping: busy CPUs then kick different halted
    // CPUs instead of all waking the lowest-numbered one (at -smp 64 the highest CPUs were
    // never reached). The halted mask makes this a scan of words, not of CPUs.
    // Claiming the bit (an atomic clear) means two kickers never wake the same CPU.
    if let Some(idle) = halted_mask()
        .and_then(|m| m.take_from(here.cpu.wrapping_add(1), here.cpu))
        .and_then(cpu_sched)
    {
        ring(idle);
    }
}

/// Makes thread `tid` runnable if it is blocked; returns whether it was.
pub fn wake(tid: Tid) -> bool {
    let t = tcb(tid.index());
    if t.generation.load(Ordering::Acquire) != tid.generation() {
        return false;
    }
    wake_index(tid.index())
}

fn wake_index(i: usize) -> bool {
    let t = tcb(i);
    if !t.cas_state(State::Blocked, State::Ready) {
        return false;
    }
    match cpu_sched(t.cpu.load(Ordering::Acquire)) {
        Some(target) => post_wake(target, i),
        None => t.set_state(State::Blocked), // cannot happen: threads only live on running CPUs
    }
    true
}

/// Blocks the calling thread unless `still_wait()` says otherwise; the check runs after the
/// thread is marked blocked, so a [`wake`] issued after the condition changed is never lost.
/// Returns when woken (possibly spuriously: callers re-check their condition).
pub fn block_unless(still_wait: impl FnOnce() -> bool) {
    let g = IrqGuard::new();
    let Some(cs) = this_sched() else {
        return;
    };
    let me = tcb(cs.current.load(Ordering::Relaxed) as usize);
    me.wake_at.store(u64::MAX, Ordering::Relaxed);
    me.set_state(State::Blocked);
    core::sync::atomic::fence(Ordering::SeqCst);
    if !still_wait() {
        // Not waiting after all: undo (a waker that won the race left us Ready).
        if !me.cas_state(State::Blocked, State::Running) {
            me.set_state(State::Running);
        }
        return;
    }
    schedule(&g);
}

/// Like [`block_unless`], but also ends at TSC `deadline` (`u64::MAX`: none). Returns true
/// if it returned because the deadline passed.
pub fn block_until(deadline: u64, still_wait: impl FnOnce() -> bool) -> bool {
    if deadline == u64::MAX {
        block_unless(still_wait);
        return false;
    }
    let g = IrqGuard::new();
    let Some(cs) = this_sched() else {
        return rdtsc() >= deadline;
    };
    let me = block_as_sleeper(cs, deadline);
    core::sync::atomic::fence(Ordering::SeqCst);
    if !still_wait() {
        if !me.cas_state(State::Blocked, State::Running) {
            me.set_state(State::Running);
        }
        return false;
    }
    schedule(&g);
    rdtsc() >= deadline
}

/// Marks the current thread blocked with a wake-up at `deadline`, on this CPU's sleeper
/// list (interrupts off: the caller holds an `IrqGuard` until it has scheduled).
fn block_as_sleeper(cs: &CpuSched, deadline: u64) -> &'static Tcb {
    let i = cs.current.load(Ordering::Relaxed);
    let me = tcb(i as usize);
    me.wake_at.store(deadline, Ordering::Relaxed);
    cs.lock();
    // SAFETY: lock held.
    let sl = unsafe { cs.sleepers() };
    if !sl.contains(&i) {
        let _ = sl.try_push(i);
    }
    me.set_state(State::Blocked);
    cs.unlock();
    me
}

/// Gives the CPU to another ready thread of this CPU, if any.
pub fn yield_now() {
    let g = IrqGuard::new();
    schedule(&g);
}

/// Sleeps until the TSC reaches `deadline` (TSC ticks of this CPU's clock).
pub fn sleep_until(deadline: u64) {
    loop {
        if rdtsc() >= deadline {
            return;
        }
        let g = IrqGuard::new();
        let Some(cs) = this_sched() else {
            crate::smp::time::Deadline::at_tsc(deadline).spin_until();
            return;
        };
        block_as_sleeper(cs, deadline);
        schedule(&g);
    }
}

/// Sleeps for `us` microseconds.
pub fn sleep_us(us: u64) {
    sleep_until(rdtsc() + us * (crate::smp::time::tsc_hz() / 1_000_000).max(1));
}

/// Ends the calling thread with `code` (what `join` returns). Never returns.
pub fn exit(code: u64) -> ! {
    let g = IrqGuard::new();
    if let Some(cs) = this_sched() {
        let me = tcb(cs.current.load(Ordering::Relaxed) as usize);
        me.exit_code.store(code, Ordering::Relaxed);
        me.set_state(State::Exiting);
        schedule(&g);
    }
    panic!("sched::exit returned (no scheduler on this CPU, or an exiting thread was resumed)");
}

/// Exit code of a thread the kernel killed because it faulted or panicked.
pub const KILLED: u64 = u64::MAX;

/// A fault or panic in thread context: if the thread can be killed without leaving the
/// kernel in a broken state, reports it, ends it with [`KILLED`] and never returns; returns
/// (and the caller stops the machine) otherwise. Killable: a spawned thread (not a CPU's
/// idle context, not the boot flow), that ran with interrupts enabled (`interrupts_were_on`:
/// not inside an interrupt handler or an interrupts-off section) and held no preemption
/// guard or allocator leaf section (so no kernel lock or per-CPU structure is mid-update).
pub fn kill_current_if_possible(interrupts_were_on: bool, why: core::fmt::Arguments<'_>, rbp: u64) {
    if !interrupts_were_on || !exo_percpu::preemptible() {
        return;
    }
    let Some(cs) = this_sched() else {
        return;
    };
    let i = cs.current.load(Ordering::Relaxed) as usize;
    let t = tcb(i);
    if i as u32 == cs.idle.load(Ordering::Relaxed) || t.stack().is_none() {
        return;
    }
    let tid = Tid::new(i, t.generation.load(Ordering::Relaxed));
    let held = exo_percpu::held_locks();
    if held != 0 {
        crate::kprintln!(
            "THREAD,{},not killed,cpu {}: it holds {held} sleeping lock(s), which would stay held for good: {why}",
            tid.raw(),
            cs.cpu
        );
        return;
    }
    crate::kprintln!("THREAD,{},killed,cpu {}: {why}", tid.raw(), cs.cpu);
    if let Some(s) = t.stack() {
        let mut n = 0;
        exo_arch::backtrace::walk(rbp, s.bottom, s.top, 16, |ret| {
            crate::kprintln!("  #{n:<2} {ret:#018x}");
            n += 1;
        });
    }
    exit(KILLED)
}

/// The running thread's stack bounds, if it has its own (backtraces).
pub fn current_stack() -> Option<(u64, u64)> {
    let cs = this_sched()?;
    tcb(cs.current.load(Ordering::Relaxed) as usize)
        .stack()
        .map(|s| (s.bottom, s.top))
}

/// Waits for `tid` to end and returns its exit code; frees its control block.
pub fn join(tid: Tid) -> Result<u64, SchedError> {
    join_until(tid, u64::MAX)
}

/// [`join`] with a TSC deadline (`Err(TimedOut)` leaves the thread joinable).
pub fn join_until(tid: Tid, deadline: u64) -> Result<u64, SchedError> {
    let i = tid.index();
    let t = tcb(i);
    let me = current().ok_or(SchedError::NotRunning)?;
    if me == tid {
        return Err(SchedError::AlreadyJoined);
    }
    if t.generation.load(Ordering::Acquire) != tid.generation() || t.state() == State::Free {
        return Err(SchedError::NoSuchThread);
    }
    if t.joiner
        .compare_exchange(
            0,
            me.index() as u32 + 1,
            Ordering::SeqCst,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return Err(SchedError::AlreadyJoined);
    }
    loop {
        if t.state() == State::Exited {
            let code = t.exit_code.load(Ordering::Relaxed);
            free_slot(i);
            return Ok(code);
        }
        if rdtsc() >= deadline {
            t.joiner.store(0, Ordering::SeqCst);
            return Err(SchedError::TimedOut);
        }
        // The exiting thread wakes us; the deadline (if any) ends the wait otherwise.
        block_until(deadline, || t.state() != State::Exited);
    }
}

/// Restricts the calling thread to `set` (it moves at its next scheduling point if the
/// current CPU is not in it).
pub fn set_affinity(set: CpuSet) -> Result<(), SchedError> {
    first_online(&set).ok_or(SchedError::BadAffinity)?;
    let g = IrqGuard::new();
    let cs = this_sched().ok_or(SchedError::NotRunning)?;
    let me = tcb(cs.current.load(Ordering::Relaxed) as usize);
    let here = set.contains(cs.cpu);
    me.any_cpu.store(set.is_any(), Ordering::Relaxed);
    *me.affinity.lock() = set;
    if !here {
        schedule(&g);
    }
    Ok(())
}

/// The CPU the caller runs on (a hint once it returns, unless pinned).
pub fn this_cpu() -> u32 {
    exo_percpu::cpu_id_hint().0
}

/// The core of the scheduler: puts the current thread back (if it is still runnable), picks
/// the next one and switches to it. Interrupts must be off (`_g`, or an interrupt handler).
pub fn schedule(_g: &IrqGuard) {
    schedule_irqs_off();
}

fn schedule_irqs_off() {
    let Some(cs) = this_sched() else {
        return;
    };
    cs.lock();
    let now = rdtsc();
    cs.drain_mailbox();
    let _ = cs.wake_sleepers(now);
    let prev_i = cs.current.load(Ordering::Relaxed) as usize;
    let idle_i = cs.idle.load(Ordering::Relaxed) as usize;
    let prev = tcb(prev_i);
    let burst = now.saturating_sub(prev.started.load(Ordering::Relaxed));
    let mut e = Ema::new(prev.ema.load(Ordering::Relaxed));
    prev.ema
        .store(e.update(burst) >> Ema::SHIFT, Ordering::Relaxed);
    let state = prev.state();
    let runnable = matches!(state, State::Running | State::Ready);
    let mut migrate_to: Option<&'static CpuSched> = None;
    if runnable && prev_i != idle_i {
        prev.set_state(State::Ready);
        let stays = prev.any_cpu.load(Ordering::Relaxed) || {
            let set = prev.affinity.lock();
            let here = set.contains(cs.cpu);
            if !here {
                migrate_to = first_online(&set).and_then(cpu_sched);
            }
            here
        };
        if stays {
            cs.enqueue_locked(prev_i);
        }
    }
    let next_i = match pick_local(cs).or_else(|| cs.steal()) {
        Some(i) => i,
        None if idle_i != NO_THREAD as usize => idle_i,
        // Only before CPU 0's idle thread exists (scheduler init): keep running.
        None => prev_i,
    };
    if next_i == prev_i {
        prev.set_state(State::Running);
        prev.started.store(now, Ordering::Relaxed);
        arm_timer(cs, now, next_i != idle_i);
        cs.unlock();
        return;
    }
    let next = tcb(next_i);
    next.set_state(State::Running);
    next.cpu.store(cs.cpu, Ordering::Relaxed);
    next.started.store(now, Ordering::Relaxed);
    next.switches.fetch_add(1, Ordering::Relaxed);
    cs.current.store(next_i as u32, Ordering::Relaxed);
    cs.prev.store(prev_i as u32, Ordering::Relaxed);
    cs.switches.fetch_add(1, Ordering::Relaxed);
    crate::sched::fpu::switch_out(&cs.fpu, cs.cpu, prev_i, next_i);
    prev.held.store(
        exo_percpu::swap_held_locks(next.held.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
    arm_timer(cs, now, next_i != idle_i);
    // Migration of prev is done by the next thread (prev's registers must be saved first).
    cs.migrate
        .store(migrate_to.map_or(NO_THREAD, |m| m.cpu), Ordering::Relaxed);
    // Two TSC reads only while the switch buffer records (0: not timed).
    let t0 = if RECORDING.load(Ordering::Relaxed) {
        rdtsc()
    } else {
        0
    };
    cs.switch_t0.store(t0, Ordering::Relaxed);
    // SAFETY: interrupts are off and this CPU's lock is held, so nobody else touches either
    // context: `prev` is the running thread (its slot receives its stack pointer), `next`
    // is switched out (its slot holds a stack pointer saved by `switch` or built by
    // `init_stack`), and its stack is mapped. `finish_switch`, run by `next` right after,
    // releases the lock.
    unsafe { exo_arch::context::switch(prev.ctx_ptr(), *next.ctx_ptr()) };
    finish_switch();
}

/// Picks from the local run queue (lock held).
fn pick_local(cs: &CpuSched) -> Option<usize> {
    // SAFETY: the caller holds the lock.
    let r = unsafe { cs.rq() }.pick_next()?;
    cs.account_dequeue(r.index());
    Some(r.index())
}

/// Runs on the thread just switched to: records the switch time, releases the CPU's lock,
/// then finishes what the previous thread could not do on its own stack.
fn finish_switch() {
    let Some(cs) = this_sched() else {
        return;
    };
    let t0 = cs.switch_t0.load(Ordering::Relaxed);
    if t0 != 0 {
        record_switch(rdtsc().saturating_sub(t0));
    }
    let prev_i = cs.prev.load(Ordering::Relaxed) as usize;
    let migrate = cs.migrate.swap(NO_THREAD, Ordering::Relaxed);
    cs.unlock();
    let prev = tcb(prev_i);
    if migrate != NO_THREAD
        && let Some(target) = cpu_sched(migrate)
    {
        prev.cpu.store(target.cpu, Ordering::Release);
        post_wake(target, prev_i);
    }
    if prev.state() == State::Exiting {
        if let Some(s) = prev.stack() {
            give_stack(cs, s);
        }
        crate::sched::fpu::release(prev_i, &prev.fpu_area);
        prev.set_state(State::Exited);
        core::sync::atomic::fence(Ordering::SeqCst);
        let j = prev.joiner.load(Ordering::SeqCst);
        if j != 0 {
            wake_index((j - 1) as usize);
        }
    }
}

/// First code of every new thread (it "returns" here from its first switch).
extern "sysv64" fn thread_entry(i: u64) -> ! {
    finish_switch();
    exo_arch::cpu::sti();
    let t = tcb(i as usize);
    // SAFETY: `entry` was stored by `spawn` from a `ThreadFn` before the thread became
    // visible (Ready, published by the run queue's lock or the mailbox's release).
    let f = unsafe {
        core::mem::transmute::<usize, ThreadFn>(t.entry.load(Ordering::Relaxed) as usize)
    };
    let code = f(t.arg.load(Ordering::Relaxed));
    exit(code)
}

/// The tick: wakes expired sleepers, preempts the running thread at the end of its slice if
/// the interrupted code allows it. Called by the timer interrupt after EOI.
#[inline(never)]
pub fn tick() {
    let Some(cs) = this_sched() else {
        return;
    };
    let now = rdtsc();
    cs.lock();
    cs.drain_mailbox();
    let _ = cs.wake_sleepers(now);
    let cur = cs.current.load(Ordering::Relaxed) as usize;
    let is_idle = cur == cs.idle.load(Ordering::Relaxed) as usize;
    let started = tcb(cur).started.load(Ordering::Relaxed);
    let expired = now.saturating_sub(started) >= SLICE_TSC.load(Ordering::Relaxed);
    // SAFETY: lock held.
    let others = !unsafe { cs.rq() }.is_empty();
    cs.unlock();
    // Periodic balancing: runnable unpinned threads wait here while a CPU sleeps: wake one,
    // it steals (a halted CPU only looks for work when something wakes it).
    kick_idle_cpu(cs);
    let idle_has_work = is_idle && (others || stealable_elsewhere(cs));
    if idle_has_work || (expired && others && exo_percpu::preemptible()) {
        if !is_idle {
            cs.preemptions.fetch_add(1, Ordering::Relaxed);
        }
        schedule_irqs_off();
    } else {
        cs.lock();
        arm_timer(cs, now, !is_idle);
        cs.unlock();
    }
}

/// Programs this CPU's timer for the earlier of the first sleeper's deadline and the slice
/// end (`running` a thread) or the next idle balancing tick (lock held).
fn arm_timer(cs: &CpuSched, now: u64, running: bool) {
    let mode = TIMER.load(Ordering::Relaxed);
    if mode == TIMER_OFF {
        return;
    }
    // SAFETY: lock held.
    let next_sleeper = unsafe { cs.sleepers() }
        .iter()
        .map(|&i| tcb(i as usize).wake_at.load(Ordering::Relaxed))
        .min();
    let slice = SLICE_TSC.load(Ordering::Relaxed);
    // Running: the slice end. Idle: a balancing tick every `IDLE_BALANCE_SLICES` slices, so
    // a halted CPU looks for work to steal even if no busy CPU kicks it.
    let own = if running {
        now + slice
    } else {
        now + slice * IDLE_BALANCE_SLICES
    };
    let at = next_sleeper.map_or(own, |w| w.min(own));
    if mode == TIMER_DEADLINE {
        apic::timer_deadline(at.max(now + 1));
    } else {
        let ticks = u128::from(at.saturating_sub(now).max(1))
            * u128::from(crate::smp::time::apic_ticks_per_ms())
            * 1000
            / u128::from(crate::smp::time::tsc_hz().max(1));
        apic::timer_oneshot(VEC_TIMER, ticks.clamp(1, u32::MAX as u128) as u32, false);
    }
}

/// Called by an idle context with interrupts off: runs queued work if there is any (returns
/// true after it ran and this context was picked again), false if the CPU may halt.
pub fn idle_step(g: &IrqGuard) -> bool {
    let Some(cs) = this_sched() else {
        return false;
    };
    if cs.current.load(Ordering::Relaxed) != cs.idle.load(Ordering::Relaxed) {
        return false;
    }
    let work = cs.nr_ready.load(Ordering::Relaxed) > 0
        || cs.mailbox.is_pending()
        || stealable_elsewhere(cs);
    cs.lock();
    let now = rdtsc();
    // SAFETY: lock held.
    let sleepers = unsafe { cs.sleepers() };
    let any_sleeper = !sleepers.is_empty();
    let sleepers_due = sleepers
        .iter()
        .any(|&i| tcb(i as usize).wake_at.load(Ordering::Relaxed) <= now);
    if !sleepers_due {
        arm_timer(cs, now, false);
    }
    cs.unlock();
    if work || sleepers_due {
        schedule(g);
        return true;
    }
    // Without a timer, sleepers are polled: do not halt while any sleeps here.
    if any_sleeper && TIMER.load(Ordering::Relaxed) == TIMER_OFF {
        // `pause` also ends this vCPU's turn under single-threaded icount emulation, so a
        // polling idle CPU does not hold the virtual clock hostage.
        core::hint::spin_loop();
        return true;
    }
    if let Some(m) = halted_mask() {
        m.set(cs.cpu);
    }
    false
}

/// Does another CPU have runnable unpinned threads waiting? (A scan of the stealable mask's
/// words.)
fn stealable_elsewhere(cs: &CpuSched) -> bool {
    stealable_mask().is_some_and(|m| m.any_except(cs.cpu))
}

/// Clears the halted mark after a halt ends.
pub fn idle_woke() {
    if let (Some(cs), Some(m)) = (this_sched(), halted_mask()) {
        m.clear(cs.cpu);
    }
}

/// Sets up the scheduler on the calling CPU: the running context becomes a thread (`idle`:
/// this CPU's idle context, else a normal pinned thread, e.g. the BSP's main flow).
fn init_this_cpu(as_idle: bool) -> Result<(), SchedError> {
    let g = IrqGuard::new();
    let cpu = exo_percpu::cpu_id_hint().0;
    let block = cpus::get(CpuId(cpu)).ok_or(SchedError::NotRunning)?;
    let apic_id = block.hot.apic_id;
    // An AP's idle context uses the control block in its CPU's scheduler state; the BSP's
    // boot flow becomes a normal (pinned) thread of the table.
    let i = if as_idle {
        IDLE_BASE + cpu as usize
    } else {
        alloc_slot()?
    };
    let cs: &'static CpuSched = crate::mm::kalloc::try_leak(CpuSched {
        cpu,
        apic_id,
        lock: AtomicBool::new(false),
        rq: UnsafeCell::new(RunQueue::new()),
        sleepers: UnsafeCell::new(ArrayVec::new()),
        mailbox: Mailbox::new(),
        current: AtomicU32::new(i as u32),
        idle: AtomicU32::new(if as_idle { i as u32 } else { NO_THREAD }),
        prev: AtomicU32::new(i as u32),
        nr_ready: AtomicU32::new(0),
        nr_stealable: AtomicU32::new(0),
        rng: AtomicU64::new(
            0x9E37_79B9_7F4A_7C15 ^ (u64::from(cpu) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        ),
        switch_t0: AtomicU64::new(0),
        migrate: AtomicU32::new(NO_THREAD),
        stacks: spin::Mutex::new(ArrayVec::new()),
        fpu: crate::sched::fpu::CpuFpu::new(),
        idle_tcb: Tcb::new(),
        switches: AtomicU64::new(0),
        preemptions: AtomicU64::new(0),
        steals: AtomicU64::new(0),
        wake_ipis: AtomicU64::new(0),
    })
    .map_err(|_| {
        if !as_idle {
            tcb(i).set_state(State::Free);
        }
        SchedError::OutOfMemory
    })?;
    let t = if as_idle { &cs.idle_tcb } else { tcb(i) };
    *t.affinity.lock() = CpuSet::one(cpu);
    t.any_cpu.store(false, Ordering::Relaxed);
    t.cpu.store(cpu, Ordering::Relaxed);
    t.started.store(rdtsc(), Ordering::Relaxed);
    t.set_state(State::Running);
    block.ext.sched.call_once(|| cs);
    exo_percpu::set_sched_slot(&g, cs as *const CpuSched as usize);
    crate::sched::fpu::init_cpu(&cs.fpu);
    if TIMER.load(Ordering::Relaxed) == TIMER_DEADLINE {
        apic::timer_deadline_mode(VEC_TIMER);
    }
    Ok(())
}

fn idle_thread(_: u64) -> u64 {
    cpus::idle_loop()
}

fn init_ap(_: u64) -> u64 {
    match init_this_cpu(true) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Starts the scheduler on every online CPU: the BSP's current flow becomes its main thread
/// (pinned to CPU 0), CPU 0 gets an idle thread, each AP's idle loop becomes its idle
/// context. `timer`: use the APIC timer for slices and sleeps (off under icount).
pub fn init(timer: bool, slice_us: u64) -> Result<(), SchedError> {
    if running() {
        return Ok(());
    }
    let tsc_hz = crate::smp::time::tsc_hz();
    SLICE_TSC.store(slice_us * (tsc_hz / 1_000_000).max(1), Ordering::Relaxed);
    let tsc_deadline = exo_arch::cpu::detect().tsc_deadline;
    let mode = if !timer {
        TIMER_OFF
    } else if tsc_deadline {
        TIMER_DEADLINE
    } else if crate::smp::time::apic_ticks_per_ms() != 0 {
        TIMER_ONESHOT
    } else {
        TIMER_OFF
    };
    TIMER.store(mode, Ordering::Relaxed);
    let n = cpus::capacity() as u32;
    MASKS.call_once(|| Masks {
        halted: alloc_mask(n).unwrap_or(&[]),
        stealable: alloc_mask(n).unwrap_or(&[]),
        n,
    });
    crate::sched::fpu::init();
    init_this_cpu(false)?;
    for b in cpus::online() {
        let cpu = b.hot.cpu_id;
        if cpu == 0 {
            continue;
        }
        let r = cpus::run_on(
            CpuId(cpu),
            init_ap,
            0,
            crate::smp::time::Deadline::after_ms(1000),
        );
        if r != Ok(0) {
            log::warn!("scheduler: CPU {cpu} did not start its scheduler ({r:?})");
        }
    }
    // CPU 0's idle context: a thread of its own (the boot flow is the main thread).
    {
        let _g = IrqGuard::new();
        let (idle, cs) = Builder::new().pin(0).priority(0).create(idle_thread, 0)?;
        // Never queued: the idle context runs when nothing else can.
        tcb(idle.index()).set_state(State::Ready);
        cs.idle.store(idle.index() as u32, Ordering::Relaxed);
    }
    report_switch_samples();
    Ok(())
}

fn calibration_yielder(n: u64) -> u64 {
    for _ in 0..n {
        yield_now();
    }
    0
}

/// Ends scheduler start-up as the seed asks: two threads on CPU 0 yield to each other until
/// the switch buffer is full, and the distribution of the recorded switch times (TSC at the
/// `switch` call to TSC in the thread switched to) is printed as one `INFO,sched.switch` line.
fn report_switch_samples() {
    record_switches(true);
    let n = (SWITCH_SAMPLES / 2) as u64;
    let a = Builder::new().pin(0).spawn(calibration_yielder, n);
    let b = Builder::new().pin(0).spawn(calibration_yielder, n);
    let deadline = rdtsc() + 30 * crate::smp::time::tsc_hz().max(1);
    for t in [a, b].into_iter().flatten() {
        let _ = join_until(t, deadline);
    }
    record_switches(false);
    let mut v = switch_samples();
    match smp_bench::stats_of(&mut v, 0) {
        Some(st) => crate::kprintln!(
            "INFO,sched.switch,samples,{},min,{},p50,{},p99,{},max,{},unit,tsc",
            st.n,
            st.min,
            st.p50,
            st.p99,
            st.max
        ),
        None => log::warn!("scheduler: no context-switch samples recorded"),
    }
}

/// Timer mode in use, for reports.
pub fn timer_mode() -> &'static str {
    match TIMER.load(Ordering::Relaxed) {
        TIMER_DEADLINE => "tsc-deadline",
        TIMER_ONESHOT => "apic-oneshot",
        _ => "off",
    }
}

/// Counters summed over CPUs: (switches, preemptions, steals, wake IPIs).
pub fn counters() -> (u64, u64, u64, u64) {
    let mut c = (0, 0, 0, 0);
    for s in cpus::online().filter_map(|b| cpu_sched(b.hot.cpu_id)) {
        c.0 += s.switches.load(Ordering::Relaxed);
        c.1 += s.preemptions.load(Ordering::Relaxed);
        c.2 += s.steals.load(Ordering::Relaxed);
        c.3 += s.wake_ipis.load(Ordering::Relaxed);
    }
    c
}

/// CPUs whose scheduler runs.
pub fn cpus_running() -> u32 {
    cpus::online()
        .filter(|b| cpu_sched(b.hot.cpu_id).is_some())
        .count() as u32
}

/// Threads currently alive (not free).
pub fn live_threads() -> usize {
    TCBS.iter().filter(|t| t.state() != State::Free).count()
}

static SAMPLES: [AtomicU64; SWITCH_SAMPLES] = [const { AtomicU64::new(0) }; SWITCH_SAMPLES];
static SAMPLE_N: AtomicU64 = AtomicU64::new(0);
static RECORDING: AtomicBool = AtomicBool::new(false);

fn record_switch(dt: u64) {
    let n = SAMPLE_N.fetch_add(1, Ordering::Relaxed) as usize;
    if let Some(s) = SAMPLES.get(n) {
        s.store(dt, Ordering::Relaxed);
    }
}

/// Starts recording switch times (TSC at the switch call to TSC in the next thread) into
/// the static `SWITCH_SAMPLES` buffer, from empty.
pub fn record_switches(on: bool) {
    if on {
        SAMPLE_N.store(0, Ordering::Relaxed);
    }
    RECORDING.store(on, Ordering::Release);
}

/// The recorded switch samples.
pub fn switch_samples() -> Vec<u64> {
    let n = (SAMPLE_N.load(Ordering::Acquire) as usize).min(SWITCH_SAMPLES);
    SAMPLES[..n]
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect()
}

/// Thread `i`'s FPU save area (0: none yet).
pub fn fpu_area(i: usize) -> u64 {
    tcb(i).fpu_area.load(Ordering::Relaxed)
}

/// Thread `i`'s futex wait node.
pub fn park_node(i: usize) -> &'static crate::sched::park::ParkNode {
    &tcb(i).park
}

/// The id of the thread in slot `i` now (its current generation).
pub fn tid_of(i: usize) -> Tid {
    Tid::new(i, tcb(i).generation.load(Ordering::Acquire))
}

/// The CPU whose registers last saved thread `i`'s FPU state (`u32::MAX`: none).
pub fn fpu_saved_on(i: usize) -> &'static AtomicU32 {
    &tcb(i).fpu_cpu
}

/// Records thread `i`'s FPU save area (set once, by the thread itself in its #NM trap).
pub fn set_fpu_area(i: usize, area: u64) {
    tcb(i).fpu_area.store(area, Ordering::Relaxed);
}

/// Prints the scheduler state of every CPU and every live thread (debugging: the NMI handler
/// calls it for an NMI that is not a panic stop, e.g. `nmi` in the QEMU monitor). Reads
/// without locks: a snapshot that may be torn, never blocks.
#[inline(never)]
pub fn dump() {
    let now = rdtsc();
    for s in cpus::online().filter_map(|b| cpu_sched(b.hot.cpu_id)) {
        crate::kprintln!(
            "SCHED,cpu,{},current,{},idle,{},ready,{},stealable,{},pending,{},halted,{},locked,{}",
            s.cpu,
            s.current.load(Ordering::Relaxed),
            s.idle.load(Ordering::Relaxed),
            s.nr_ready.load(Ordering::Relaxed),
            s.nr_stealable.load(Ordering::Relaxed),
            s.mailbox.is_pending(),
            halted_mask().is_some_and(|m| m.contains(s.cpu)),
            s.lock.load(Ordering::Relaxed)
        );
    }
    for (i, t) in TCBS.iter().enumerate() {
        let st = t.state();
        if st == State::Free {
            continue;
        }
        let at = t.wake_at.load(Ordering::Relaxed);
        crate::kprintln!(
            "SCHED,thread,{i},{st:?},cpu,{},wake_in,{},joiner,{},switches,{}",
            t.cpu.load(Ordering::Relaxed),
            at as i64 - now as i64,
            t.joiner.load(Ordering::Relaxed),
            t.switches.load(Ordering::Relaxed)
        );
    }
}
