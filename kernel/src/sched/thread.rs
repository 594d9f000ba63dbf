//! Threads: the control-block table ([`MAX_THREADS`] slots; a CPU's idle context has its
//! block in that CPU's scheduler state), thread ids with generations, guarded stacks kept
//! in per-CPU caches and a bounded global pool, `Builder`/`spawn`, `exit`, `join`, kills,
//! affinity, and the first code of every thread.
#![allow(
    unsafe_code,
    reason = "a thread's first stack frame and its saved stack pointer"
)]

use super::cpu::*;
use super::idle::*;
use super::wake::*;
use super::*;
use crate::mm::memory::{self, Stack};
use arrayvec::ArrayVec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;
use exo_percpu::IrqGuard;
use exo_sched::Priority;

/// A thread id: the index in the low 32 bits, the slot's full 32-bit generation above (a
/// stale handle is refused, even after 2^32 lifetimes of one slot wrap it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tid(u64);

impl Tid {
    pub(super) fn new(index: usize, generation: u32) -> Tid {
        Tid((u64::from(generation) << 32) | index as u64)
    }
    /// Table index.
    pub fn index(self) -> usize {
        self.0 as u32 as usize
    }
    pub(super) fn generation(self) -> u32 {
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

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Free = 0,
    Embryo = 1,
    Ready = 2,
    Running = 3,
    Blocked = 4,
    Exiting = 5,
    Exited = 6,
}

impl State {
    pub(super) fn from(v: u8) -> State {
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

/// A thread's entry point: `f(arg)`; the return value is the exit code `join` returns.
pub type ThreadFn = fn(u64) -> u64;

pub(super) struct Tcb {
    pub(super) state: AtomicU8,
    pub(super) generation: AtomicU32,
    /// Saved stack pointer while switched out (written by the switch under the CPU's lock).
    pub(super) ctx: UnsafeCell<u64>,
    pub(super) cpu: AtomicU32,
    pub(super) affinity: spin::Mutex<CpuSet>,
    /// 1 when `affinity` is every CPU (stealable), else 0: a byte, not an `AtomicBool`, so
    /// the switch compares two threads' flags as loaded (`CpuSched::requeue_pick`; a bool
    /// load is normalised first: icount `ctx.switch` 192 -> 188 with the byte).
    pub(super) any_cpu: AtomicU8,
    /// The one CPU of an affinity made by `CpuSet::one` (a pinned thread), else
    /// `NO_THREAD`: with `any_cpu`, what `schedule` checks without taking `affinity`.
    pub(super) home: AtomicU32,
    /// Its run-queue level (`Builder::priority` clamps it: always below 64).
    pub(super) prio: AtomicU8,
    pub(super) ema: AtomicU64,
    pub(super) started: AtomicU64,
    pub(super) stack_bottom: AtomicU64,
    pub(super) stack_top: AtomicU64,
    pub(super) entry: AtomicU64,
    pub(super) arg: AtomicU64,
    pub(super) exit_code: AtomicU64,
    /// Who joins this thread: [`joiner_word`] of the thread's generation (its low 16 bits)
    /// and the joining thread's index + 1 (0: none).
    pub(super) joiner: AtomicU32,
    pub(super) wake_at: AtomicU64,
    /// Times switched in (wraps at 2^32: a count for reports and the wake mark).
    pub(super) switches: AtomicU32,
    /// Queued by a wake-up and not run since: `switches + 1` when a drain of the mailbox or
    /// the full-mailbox path queued it (0: not). What the wake-up preemption rule looks for
    /// at the head of a run queue (`wake::woken_waits`). 32 bits, as `switches`: the block
    /// stays three cache lines (a stale mark would need 2^32 switches of the thread).
    pub(super) woken_mark: AtomicU32,
    /// FPU save area (0: none yet) and whether the thread ever used the FPU.
    pub(super) fpu_area: AtomicU64,
    /// CPU whose registers last saved this thread's FPU state (`u32::MAX`: none).
    pub(super) fpu_cpu: AtomicU32,
    /// Wait node for the kernel futex (`park`): parking never allocates.
    pub(super) park: crate::sched::park::ParkNode,
    /// Counted locks held (sleeping locks, `park::Mutex`, and spin locks taken through
    /// `sched::Held`: an address space's tables, a process's space slot), while switched
    /// out (while it runs, the count lives in its CPU's GS block:
    /// `exo_percpu::held_locks`). A thread that faults holding one is not killed (the lock
    /// would stay held for good); the machine stops instead.
    /// Not kept for a thread parked at its IPC boundary, which holds none: the parked exit
    /// does not store it, and the resumption sets the count to 0 (`cpu::parked_entry`).
    /// 32 bits of the block's 64-bit count (no thread holds 2^32 locks), so that `segs`
    /// fits beside it in the three cache lines (2026-12-06).
    pub(super) held: AtomicU32,
    /// The address space this thread runs in (a `mm::space::Space` that outlives the thread),
    /// or 0: a kernel thread, which runs on whatever space is loaded.
    pub(super) space: AtomicU64,
    /// The id the layer above gave the thread (`user`: its pid; 0 for kernel threads). A
    /// thread with one runs ring-3 code: switching it in loads the pid into the GS block's
    /// pid slot and its stack top into TSS.RSP0 and the GS block's kernel stack top.
    pub(super) pid: AtomicU64,
    /// The layer above's own id for the thread (`user`: its thread id; 0 for kernel threads
    /// and idle contexts), read through [`current_uid`]: the switch copies it into the
    /// CPU's state.
    pub(super) uid: AtomicU64,
    /// Its DS, ES, FS and GS selectors while switched out, packed (`exo_arch::segs::pack`),
    /// when it is a user thread that ran with others than the null ones; 0 while it runs (the
    /// registers hold them then) and for every other thread. Written by the switch, under
    /// the lock of the CPU that switches it (`cpu::switch_selectors`).
    pub(super) segs: AtomicU32,
    /// Parked at its system-call boundary (`handoff_parked`): its saved context is the
    /// continuation that finishes its IPC operation, its IPC frame at its stack top all it
    /// keeps. Written by the CPU that parks it or resumes it, under that CPU's lock or by
    /// the thread itself once running.
    pub(super) parked: AtomicBool,
}

// Three cache lines (the switch indexes the table with one `lea` and one shift): a field that
// grows it past them costs every switch and the cache; decide it here (2026-12-05: the wake
// mark was 64-bit at first and made it 200 bytes).
const _: () = assert!(core::mem::size_of::<Tcb>() == 192);

/// The joiner word of a thread of generation `generation` joined by the thread with index
/// `joiner` - 1 (0: none): the generation's low 16 bits above the joiner. A join claims the
/// word only if it names the generation of the thread it meant (`join_unless`): until
/// 2026-12-06 it held the joiner alone, and a join whose id had gone stale (the thread
/// joined by another, its slot freed and taken by a spawn) took the new thread's word for a
/// moment, refusing its real joiner and taking its wake-up if it ended then (found by
/// review; `sched.stale_join_leaves_the_new_thread_of_its_slot_joinable`).
#[inline(always)]
pub(super) const fn joiner_word(generation: u32, joiner: u32) -> u32 {
    ((generation & 0xFFFF) << 16) | joiner
}

/// The joining thread's index + 1 in a joiner word (0: none).
#[inline(always)]
pub(super) fn joiner_of(word: u32) -> u32 {
    word & 0xFFFF
}

// Every thread index (an idle context's too) + 1 fits the joiner word's low 16 bits.
const _: () = assert!(MAX_THREADS + crate::smp::cpus::CPU_LIMIT < 0xFFFF);

// SAFETY: `ctx` is only accessed by the CPU that switches the thread out or in, with that
// CPU's run-queue lock held (the thread is then on no other CPU); all else is atomic.
unsafe impl Sync for Tcb {}

impl Tcb {
    /// Marks the thread, just queued by a wake-up, as waiting for the wake-up preemption rule
    /// until it next runs (`woken_mark`).
    #[inline(always)]
    pub(super) fn mark_woken(&self) {
        self.woken_mark
            .store(self.woken_mark_now(), Ordering::Relaxed);
    }

    /// Whether a wake-up queued the thread and it has not run since (`woken_mark`).
    #[inline(always)]
    pub(super) fn woken_waiting(&self) -> bool {
        self.woken_mark.load(Ordering::Relaxed) == self.woken_mark_now()
    }

    /// The mark the thread bears until it next runs (`switches + 1`).
    #[inline(always)]
    fn woken_mark_now(&self) -> u32 {
        self.switches.load(Ordering::Relaxed).wrapping_add(1)
    }

    /// Whether the thread may run on any CPU (stealable).
    #[inline(always)]
    pub(super) fn any_cpu(&self) -> bool {
        self.any_cpu.load(Ordering::Relaxed) != 0
    }

    /// Records whether the thread may run on any CPU.
    #[inline(always)]
    pub(super) fn set_any_cpu(&self, any: bool) {
        self.any_cpu.store(u8::from(any), Ordering::Relaxed);
    }

    /// Its priority. The mask costs one instruction where the checked conversion cost
    /// three; `prio` is always a valid level, so it changes nothing.
    #[inline(always)]
    pub(super) fn priority(&self) -> Priority {
        Priority::new(self.prio.load(Ordering::Relaxed) & Priority::MAX.get())
            .unwrap_or(Priority::MIN)
    }

    pub(super) const fn new() -> Tcb {
        Tcb {
            state: AtomicU8::new(State::Free as u8),
            generation: AtomicU32::new(1),
            ctx: UnsafeCell::new(0),
            cpu: AtomicU32::new(0),
            affinity: spin::Mutex::new(CpuSet::ANY),
            any_cpu: AtomicU8::new(1),
            home: AtomicU32::new(NO_THREAD),
            prio: AtomicU8::new(DEFAULT_PRIORITY),
            ema: AtomicU64::new(0),
            started: AtomicU64::new(0),
            stack_bottom: AtomicU64::new(0),
            stack_top: AtomicU64::new(0),
            entry: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            exit_code: AtomicU64::new(0),
            joiner: AtomicU32::new(joiner_word(1, 0)),
            wake_at: AtomicU64::new(0),
            switches: AtomicU32::new(0),
            woken_mark: AtomicU32::new(0),
            fpu_area: AtomicU64::new(0),
            fpu_cpu: AtomicU32::new(u32::MAX),
            park: crate::sched::park::ParkNode::new(),
            held: AtomicU32::new(0),
            space: AtomicU64::new(0),
            pid: AtomicU64::new(0),
            uid: AtomicU64::new(0),
            segs: AtomicU32::new(0),
            parked: AtomicBool::new(false),
        }
    }
    pub(super) fn state(&self) -> State {
        State::from(self.state.load(Ordering::Acquire))
    }
    pub(super) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }
    pub(super) fn cas_state(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
    pub(super) fn ctx_ptr(&self) -> *mut u64 {
        self.ctx.get()
    }
    pub(super) fn stack(&self) -> Option<Stack> {
        let bottom = self.stack_bottom.load(Ordering::Relaxed);
        (bottom != 0).then(|| Stack {
            bottom,
            top: self.stack_top.load(Ordering::Relaxed),
        })
    }
}

pub(super) static TCBS: [Tcb; MAX_THREADS] = [const { Tcb::new() }; MAX_THREADS];

pub(super) static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);

/// Stacks kept for reuse beyond the per-CPU caches (128 x 32 KiB = 4 MiB at most); more are
/// unmapped and their memory given back (a burst of threads does not keep its stacks for
/// good). Fixed capacity: the switch path that returns a stack never allocates.
pub(super) static STACK_POOL: spin::Mutex<ArrayVec<Stack, STACK_POOL_CAP>> =
    spin::Mutex::new(ArrayVec::new_const());

/// Capacity of [`STACK_POOL`].
pub const STACK_POOL_CAP: usize = 128;

/// Thread `i`'s control block: a table slot, or (from [`IDLE_BASE`] on) a CPU's idle context.
pub(super) fn tcb(i: usize) -> &'static Tcb {
    match TCBS.get(i) {
        Some(t) => t,
        None => idle_tcb(i),
    }
}

#[cold]
pub(super) fn idle_tcb(i: usize) -> &'static Tcb {
    match cpu_sched((i - IDLE_BASE) as u32) {
        Some(cs) => &cs.idle_tcb,
        None => panic!("thread index {i} names no thread"),
    }
}

pub(super) fn alloc_slot() -> Result<usize, SchedError> {
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

/// Frees the slot of ended thread `i` (its joiner's last step): a new generation, nothing
/// of the old thread kept.
///
/// The new generation is written under the lock of the CPU the thread last ran on: a claim
/// there (`Here::claim`, IPC's fastpath) checks the generation and CASes the state under
/// that lock, so the slot cannot be freed, taken by a spawn and its newcomer blocked
/// between the two (the CAS would take the newcomer, which may be running on another CPU:
/// until 2026-12-05, found by review; `sched.claim_of_a_reused_slot_fails`). The lock is
/// taken here, on the join, not in the claim: the fastpath pays nothing.
pub(super) fn free_slot(i: usize) {
    let t = tcb(i);
    {
        let _g = IrqGuard::new();
        let last = cpu_sched(t.cpu.load(Ordering::Acquire));
        if let Some(cs) = last {
            cs.lock();
        }
        let generation = t.generation.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        t.joiner
            .store(joiner_word(generation, 0), Ordering::Relaxed);
        if let Some(cs) = last {
            cs.unlock();
        }
    }
    t.held.store(0, Ordering::Relaxed);
    t.space.store(0, Ordering::Relaxed);
    // A thread that ended with selectors of its own left them here at its last switch: the
    // slot's next thread starts with the null ones.
    t.segs.store(0, Ordering::Relaxed);
    IN_EXIT[i].store(false, Ordering::Relaxed);
    // A mask with a bitmap is a heap object: given back now, not when the slot is reused.
    let old = core::mem::replace(&mut *t.affinity.lock(), CpuSet::ANY);
    drop(old);
    t.set_state(State::Free);
}

pub(super) fn take_stack(cs: &CpuSched) -> Result<Stack, SchedError> {
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
pub(super) fn give_stack(cs: &CpuSched, s: Stack) {
    // A stack given back while it is already cached would be handed to two threads: stop
    // with the reason rather than run two threads on one stack (a few compares: the caches
    // hold a handful of stacks).
    let cached_here = cs.stacks.lock().contains(&s);
    if cached_here || STACK_POOL.lock().contains(&s) {
        panic!(
            "sched: stack {:#x}..{:#x} given back twice",
            s.bottom, s.top
        );
    }
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

/// Test support: unmaps every cached stack (every CPU's cache and the pool) and gives its
/// memory back; returns how many there were. A spawn after it maps a new stack.
pub fn free_cached_stacks() -> usize {
    let _g = IrqGuard::new();
    let mut n = 0;
    let mut free_all = |v: &mut ArrayVec<Stack, { STACK_CACHE }>| {
        for s in v.drain(..) {
            memory::free_stack(s);
            n += 1;
        }
    };
    for c in 0..crate::smp::cpus::capacity() as u32 {
        if let Some(cs) = cpu_sched(c) {
            free_all(&mut cs.stacks.lock());
        }
    }
    let pool: ArrayVec<Stack, STACK_POOL_CAP> = core::mem::take(&mut *STACK_POOL.lock());
    for s in pool {
        memory::free_stack(s);
        n += 1;
    }
    n
}

/// Frames the stack caches (the pool and one per CPU of `cpus`) may still come to hold
/// beyond [`cached_stack_frames`]: what ended threads' stacks can keep from the allocator,
/// charged to nobody (the commit limit leaves it out of what user space may take).
pub fn stack_cache_room(cpus: u32) -> u64 {
    let most = (STACK_POOL_CAP as u64 + STACK_CACHE as u64 * u64::from(cpus)) * (STACK_PAGES + 1);
    most.saturating_sub(cached_stack_frames())
}

/// Frames held by cached stacks on every CPU and in the pool (each stack's pages and its
/// own page table): memory kept for reuse, not leaked.
pub fn cached_stack_frames() -> u64 {
    let _g = IrqGuard::new();
    let per = STACK_PAGES + 1;
    let mut n = STACK_POOL.lock().len() as u64;
    for c in 0..crate::smp::cpus::capacity() as u32 {
        if let Some(cs) = cpu_sched(c) {
            n += cs.stacks.lock().len() as u64;
        }
    }
    n * per
}

/// How to start a thread.
#[derive(Debug, Clone)]
pub struct Builder {
    affinity: CpuSet,
    prio: u8,
    space: u64,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            affinity: CpuSet::ANY,
            prio: DEFAULT_PRIORITY,
            space: 0,
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
    /// Runs in address space `space`, which must outlive the thread: its owner joins the
    /// thread before dropping the space, and never drops it if the join fails (a thread
    /// still running would switch to freed tables: `space_of`).
    pub fn space(mut self, space: &crate::mm::space::Space) -> Builder {
        self.space = space as *const crate::mm::space::Space as u64;
        self
    }
    /// Runs on the CPUs the calling thread may run on (a child inherits its creator's mask).
    /// `OutOfMemory` when the mask is a bitmap and no memory is left for its copy: until
    /// 2026-12-05 the copy was an infallible clone, and a user program that set a mask of
    /// a few CPUs, exhausted memory and called `thread_create` or `spawn` stopped the
    /// machine (found by review; `sched.inherit_affinity_without_memory_is_an_error`).
    pub fn inherit_affinity(mut self) -> Result<Builder, SchedError> {
        let _g = IrqGuard::new();
        if let Some(cs) = this_sched() {
            self.affinity = tcb(cs.current.load(Ordering::Relaxed) as usize)
                .affinity
                .lock()
                .try_clone()
                .map_err(|_| SchedError::OutOfMemory)?;
        }
        Ok(self)
    }
    /// Priority 0..=63 (clamped).
    pub fn priority(mut self, p: u8) -> Builder {
        self.prio = p.min(Priority::MAX.get());
        self
    }

    /// Starts `f(arg)`; it is runnable at once. Never inlined: every caller, the benchmark
    /// row `thread.spawn` included, pays the same call (the row moved by 10% with the
    /// compiler's inlining choices in its loop).
    #[inline(never)]
    pub fn spawn(self, f: ThreadFn, arg: u64) -> Result<Tid, SchedError> {
        self.spawn_then(f, arg, |_| {})
    }

    /// [`Builder::spawn`], calling `before(tid)` once the thread exists and before it can
    /// run (the layer above records the id where the thread, or whoever may join it as soon
    /// as it runs, will look for it: nothing is written into a record after the thread
    /// could have ended and its record been reused).
    #[inline(always)]
    pub fn spawn_then(
        self,
        f: ThreadFn,
        arg: u64,
        before: impl FnOnce(Tid),
    ) -> Result<Tid, SchedError> {
        // Freed stacks' page tables wait for a flush of every CPU (`memory::RetiredTables`);
        // a spawn, with interrupts on and nothing held, is where they are reclaimed.
        if crate::smp::tlb::reclaim_due() {
            crate::smp::tlb::reclaim_kernel_tables();
        }
        let mut g = IrqGuard::new();
        let (tid, target) = match self.create(f, arg) {
            Ok(v) => v,
            // A stack mapped anew found no frame: with interrupts off no empty slab is
            // reclaimed (`kalloc`), so once more after a reclaim with them on. Until
            // 2026-12-06 the spawn failed for want of memory held in empty slabs (found by
            // review; `mm.stack_allocation_reclaims_empty_slabs`).
            Err((SchedError::OutOfMemory, Some(me))) => {
                drop(g);
                if crate::mm::kalloc::reclaim_empty_slabs() == 0 {
                    return Err(SchedError::OutOfMemory);
                }
                g = IrqGuard::new();
                me.create(f, arg).map_err(|(e, _)| e)?
            }
            Err((e, _)) => return Err(e),
        };
        let here = this_sched().ok_or(SchedError::NotRunning)?;
        before(tid);
        let i = tid.index();
        let t = tcb(i);
        t.set_state(State::Ready);
        if core::ptr::eq(target, here) {
            here.lock();
            here.enqueue_inline(i, t);
            here.unlock();
            kick_idle_cpu(here);
        } else {
            post_wake(target, i);
        }
        drop(g);
        Ok(tid)
    }

    /// Builds the thread (state `Embryo`, not queued) and chooses its CPU.
    /// The builder comes back with an error for want of a stack (it may be tried again).
    #[allow(
        clippy::result_large_err,
        reason = "the error path only; the builder is reused"
    )]
    pub(super) fn create(
        self,
        f: ThreadFn,
        arg: u64,
    ) -> Result<(Tid, &'static CpuSched), (SchedError, Option<Self>)> {
        let here = this_sched().ok_or((SchedError::NotRunning, None))?;
        let target = if self.affinity.contains(here.cpu) {
            here
        } else {
            first_online(&self.affinity)
                .and_then(cpu_sched)
                .ok_or((SchedError::BadAffinity, None))?
        };
        let i = alloc_slot().map_err(|e| (e, None))?;
        let stack = match take_stack(here) {
            Ok(s) => s,
            Err(e) => {
                tcb(i).set_state(State::Free);
                return Err((e, Some(self)));
            }
        };
        let t = tcb(i);
        t.stack_bottom.store(stack.bottom, Ordering::Relaxed);
        t.stack_top.store(stack.top, Ordering::Relaxed);
        t.parked.store(false, Ordering::Relaxed);
        t.set_any_cpu(self.affinity.is_any());
        t.home
            .store(self.affinity.only().unwrap_or(NO_THREAD), Ordering::Relaxed);
        *t.affinity.lock() = self.affinity;
        t.prio.store(self.prio, Ordering::Relaxed);
        t.ema.store(0, Ordering::Relaxed);
        t.entry.store(f as usize as u64, Ordering::Relaxed);
        t.arg.store(arg, Ordering::Relaxed);
        let generation = t.generation.load(Ordering::Relaxed);
        // A free slot's joiner word is its generation's with no joiner (`free_slot`,
        // `age_free_slots`, the table's start): nothing to write (`thread.spawn`).
        debug_assert_eq!(t.joiner.load(Ordering::Relaxed), joiner_word(generation, 0));
        t.switches.store(0, Ordering::Relaxed);
        t.woken_mark.store(0, Ordering::Relaxed);
        t.fpu_area.store(0, Ordering::Relaxed);
        t.space.store(self.space, Ordering::Relaxed);
        t.pid.store(0, Ordering::Relaxed);
        t.uid.store(0, Ordering::Relaxed);
        // SAFETY: the stack was just taken from the cache or mapped for this thread alone;
        // its top is page-aligned and the pages below it are mapped.
        let rsp = unsafe { exo_arch::context::init_stack(stack.top, thread_entry, i as u64) };
        // SAFETY: the thread is an embryo nobody else can see yet.
        unsafe { *t.ctx_ptr() = rsp };
        let tid = Tid::new(i, generation);
        t.cpu.store(target.cpu, Ordering::Relaxed);
        Ok((tid, target))
    }
}

/// Starts `f(arg)` on any CPU at the default priority.
pub fn spawn(f: ThreadFn, arg: u64) -> Result<Tid, SchedError> {
    Builder::new().spawn(f, arg)
}

/// Sets the generation of every free thread slot to `generation` (tests: ids of threads
/// spawned next carry it, e.g. near the 32-bit wrap).
pub fn age_free_slots(generation: u32) {
    for t in &TCBS {
        if t.state() == State::Free {
            t.generation.store(generation, Ordering::Relaxed);
            t.joiner
                .store(joiner_word(generation, 0), Ordering::Relaxed);
        }
    }
}

/// Threads inside [`exit`] (its hook, then the switch away), by index: a failure there is
/// not answered by ending the thread again ([`kill_current_if_possible`] refuses; the
/// machine stops with the reason). Until 2026-12-05 a panic in the exit hook of a killed
/// thread killed it again, whose exit ran the hook again: hundreds of `THREAD,killed`
/// lines, then a double fault on the stack's guard page reported instead of the reason
/// (found by review; `exo.panic_in_exit`, CI "failure paths"). Cleared when the slot is
/// freed.
static IN_EXIT: [AtomicBool; MAX_THREADS] = [const { AtomicBool::new(false) }; MAX_THREADS];

/// Test switch (`exo.panic_in_exit`): the thread with this index + 1 panics in its [`exit`]
/// (as a failing exit hook would), every time.
static PANIC_IN_EXIT_OF: AtomicU32 = AtomicU32::new(0);

/// Makes the calling thread panic in its [`exit`] (the `exo.panic_in_exit` test).
pub fn panic_in_exit_of_current() {
    if let Some(me) = current() {
        PANIC_IN_EXIT_OF.store(me.index() as u32 + 1, Ordering::Release);
    }
}

/// The `exo.panic_in_exit` test's panic, out of the exit path's way.
#[cold]
#[inline(never)]
fn panic_in_exit_if_asked(i: usize) {
    if PANIC_IN_EXIT_OF.load(Ordering::Acquire) == i as u32 + 1 {
        panic!("deliberate panic in a thread's end, requested by exo.panic_in_exit");
    }
}

/// Ends the calling thread with `code` (what `join` returns). Never returns.
pub fn exit(code: u64) -> ! {
    if let Some(me) = current() {
        let i = me.index();
        IN_EXIT[i].store(true, Ordering::Relaxed);
        if PANIC_IN_EXIT_OF.load(Ordering::Relaxed) != 0 {
            panic_in_exit_if_asked(i);
        }
        if let Some(hook) = EXIT_HOOK.get() {
            hook(i);
        }
    }
    let g = IrqGuard::new();
    if let Some(cs) = this_sched() {
        let me = tcb(cs.current.load(Ordering::Relaxed) as usize);
        me.exit_code.store(code, Ordering::Relaxed);
        me.set_state(State::Exiting);
        // This switch does not come back, and the stack it leaves is reused once the thread
        // is reaped: no guard is left on it to drop, and no reference into it is passed
        // across the switch (`schedule(&mut g)` passed one, which the language holds live
        // for the whole call: found by an audit, 2026-12-07; the code is the same).
        core::mem::forget(g);
        super::cpu::schedule_irqs_off();
    }
    panic!("sched::exit returned (no scheduler on this CPU, or an exiting thread was resumed)");
}

/// What a layer above runs in every thread that ends (`exit`, a return from its entry, a
/// kill), on that thread, before it stops: the IPC layer fails the calls it was serving.
static EXIT_HOOK: spin::Once<fn(usize)> = spin::Once::new();

/// Installs the exit hook (once; later calls are ignored). It gets the thread's index.
pub fn set_exit_hook(hook: fn(usize)) {
    EXIT_HOOK.call_once(|| hook);
}

/// Exit code of a thread the kernel killed because it faulted or panicked.
pub const KILLED: u64 = u64::MAX;

/// Kernel threads ended alone by a panic or a fault so far ([`kill_current_if_possible`]).
static KILLS: AtomicU64 = AtomicU64::new(0);

/// How many kernel threads a panic or a fault ended alone so far (the test harness fails a
/// test during which one was, unless the test said it expects it).
pub fn kills() -> u64 {
    KILLS.load(Ordering::Relaxed)
}

/// A fault or panic in thread context: if the thread can be killed without leaving the
/// kernel in a broken state, reports it, ends it with [`KILLED`] and never returns; returns
/// (and the caller stops the machine) otherwise. Killable: a spawned thread (not a CPU's
/// idle context, not the boot flow), that ran with interrupts enabled (`interrupts_were_on`:
/// not inside an interrupt handler or an interrupts-off section) and held no preemption
/// guard or allocator leaf section (so no lock taken with interrupts off or preemption
/// disabled, and no per-CPU structure, is mid-update). Not killed either: a thread that
/// holds a counted lock (a sleeping lock, or a spin lock held with interrupts on through
/// [`crate::sched::Held`]: an address space's tables, a process's space slot; with
/// panic=abort no guard is dropped, and the next taker would spin for good: until
/// 2026-12-06 such a thread was killed, found by review), or that belongs to a process (a
/// user thread in a system call or trap: a kernel bug, and ending it here would skip the
/// user layer's end of it, leaving its process live for good). A spin lock taken with
/// interrupts on and not counted would still stay held: see `Held` for which are.
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
    let refused = |reason: core::fmt::Arguments<'_>| {
        crate::kprintln!(
            "THREAD,{},not killed,cpu {}: {reason}: {why}",
            tid.raw(),
            cs.cpu
        );
    };
    if IN_EXIT[i].load(Ordering::Relaxed) {
        return refused(format_args!(
            "it failed in its own end (ending it again would fail again)"
        ));
    }
    let held = exo_percpu::held_locks();
    if held != 0 {
        return refused(format_args!(
            "it holds {held} lock(s) (sleeping, or an address space's), which would stay held for good"
        ));
    }
    let pid = t.pid.load(Ordering::Relaxed);
    if pid != 0 {
        return refused(format_args!(
            "a thread of process {pid} inside the kernel, whose end would skip its process's (the process would never end, its memory never come back)"
        ));
    }
    crate::kprintln!("THREAD,{},killed,cpu {}: {why}", tid.raw(), cs.cpu);
    KILLS.fetch_add(1, Ordering::Relaxed);
    if let Some(s) = t.stack() {
        let mut n = 0;
        exo_arch::backtrace::walk(rbp, s.bottom, s.top, 16, |ret| {
            crate::kprintln!("  #{n:<2} {ret:#018x}");
            n += 1;
        });
    }
    exit(KILLED)
}

/// Gives the calling thread the ids of the layer above: `pid` (what `exo_percpu::pid` reads
/// while it runs: the `user` layer's getpid) and `uid` (its own thread id, [`current_uid`]).
/// A pid makes it a user thread: the FPU registers are reset if they hold another thread's
/// state (`fpu::became_user`), as a switch to a user thread would have.
pub fn set_current_ids(pid: u64, uid: u64) -> Result<(), SchedError> {
    let _g = IrqGuard::new();
    let cs = this_sched().ok_or(SchedError::NotRunning)?;
    let i = cs.current.load(Ordering::Relaxed) as usize;
    let t = tcb(i);
    if i >= MAX_THREADS {
        // An idle context: it never runs user code.
        return Err(SchedError::CannotEnterUser);
    }
    t.uid.store(uid, Ordering::Relaxed);
    cs.current_uid.store(uid, Ordering::Relaxed);
    t.pid.store(pid, Ordering::Relaxed);
    exo_percpu::set_pid(pid);
    if pid != 0 {
        crate::sched::fpu::became_user(&cs.fpu, i);
    }
    Ok(())
}

/// The running thread's `uid` (see [`set_current_ids`]; 0: none, or no scheduler here).
/// Read with interrupts off: the switch copies the uid into the CPU's state, and a thread
/// preempted and moved to another CPU between finding its CPU and the load would read the
/// uid of whatever runs there now (a system call of a user thread taken for a kernel
/// thread's, another thread's task record).
#[inline]
pub fn current_uid() -> u64 {
    let _g = IrqGuard::new();
    this_sched().map_or(0, |cs| cs.current_uid.load(Ordering::Relaxed))
}

/// Leaves the kernel for ring 3 at `rip` with stack `rsp` and `arg` in RDI
/// (`exo_arch::syscall::enter_user`): from then on the thread enters the kernel only through
/// system calls and traps, on its own kernel stack, whose current frames are abandoned.
/// Returns (the reason) only when the calling thread cannot go: a CPU's idle context or a
/// thread without a kernel stack of its own (the boot flow), one holding a sleeping lock or
/// a preemption guard, one without an address space of its own, or `rip` outside user
/// space.
pub fn enter_user(rip: u64, rsp: u64, arg: u64) -> SchedError {
    let g = IrqGuard::new();
    let Some(cs) = this_sched() else {
        return SchedError::NotRunning;
    };
    let i = cs.current.load(Ordering::Relaxed) as usize;
    let t = tcb(i);
    let Some(stack) = t.stack() else {
        return SchedError::CannotEnterUser;
    };
    // Its own address space, loaded: a thread without one would run ring-3 code on
    // whatever tables the CPU last had (another process's; found by review, 2026-12-04:
    // no caller does it, every user thread is built with `Builder::space`).
    let space = t.space.load(Ordering::Relaxed);
    if i as u32 == cs.idle.load(Ordering::Relaxed)
        || exo_percpu::held_locks() != 0
        || !exo_percpu::preemptible()
        || !exo_arch::usercopy::is_user_range(rip, 1)
        || space == 0
        || space_of(space).root() != exo_arch::tlb::current_root()
    {
        return SchedError::CannotEnterUser;
    }
    // The switch that started this thread set both already; set them again so this never
    // depends on how the thread first ran.
    exo_percpu::set_kstack_top(stack.top);
    exo_arch::gdt::set_rsp0(stack.top);
    // Interrupts stay off until the IRETQ (its RFLAGS turn them on).
    core::mem::forget(g);
    // SAFETY: the GS block's kernel stack top and TSS.RSP0 are this thread's stack top (just
    // set, interrupts off, and the scheduler sets them again whenever it switches the thread
    // in); the thread's frames below are abandoned for good (nothing returns to them: the
    // thread ends through `exit` from a system call or a trap); GS is the kernel's.
    unsafe { exo_arch::syscall::enter_user(rip, rsp, arg) }
}

/// Moves the calling thread into address space `space` (which must outlive it, as for
/// `Builder::space`) and loads it on this CPU now.
pub fn set_current_space(space: &'static crate::mm::space::Space) {
    let _g = IrqGuard::new();
    let Some(cs) = this_sched() else {
        return;
    };
    let t = tcb(cs.current.load(Ordering::Relaxed) as usize);
    t.space.store(
        space as *const crate::mm::space::Space as u64,
        Ordering::Relaxed,
    );
    if exo_arch::tlb::current_root() != space.root() {
        space.activate(cs.cpu);
    }
}

/// The running thread's stack bounds, if it has its own (backtraces). Pinned, as
/// [`current_uid`]: unpinned, a thread moved between the two loads reads another's.
pub fn current_stack() -> Option<(u64, u64)> {
    let _g = IrqGuard::new();
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
    join_unless(tid, deadline, &|| false)
}

/// [`join_unless`] stops here between its check of the thread and its claim of the join,
/// so a test can have another joiner free the slot in that window.
pub static JOIN_CLAIM_HOLD: super::HoldPoint = super::HoldPoint::new();

/// [`join_unless`] stops here between its claim of the join and its second check of the
/// thread, so a test can join in that window.
pub static JOIN_RECHECK_HOLD: super::HoldPoint = super::HoldPoint::new();

/// [`join_until`] that also gives up (`Err(Interrupted)`, the thread left joinable) when
/// `abort()` holds: checked before each sleep and after each wake-up, so a caller that
/// makes `abort()` true and then [`wake`](crate::sched::wake)s the joiner ends its wait.
pub fn join_unless(tid: Tid, deadline: u64, abort: &dyn Fn() -> bool) -> Result<u64, SchedError> {
    let i = tid.index();
    let t = tcb(i);
    let me = current().ok_or(SchedError::NotRunning)?;
    if me == tid {
        return Err(SchedError::AlreadyJoined);
    }
    let gone =
        || t.generation.load(Ordering::Acquire) != tid.generation() || t.state() == State::Free;
    if gone() {
        return Err(SchedError::NoSuchThread);
    }
    JOIN_CLAIM_HOLD.pass();
    // The word of `tid`'s generation with no joiner, and with us: a stale `tid` (its slot
    // freed and reused since the check) finds the new thread's generation there and claims
    // nothing (`joiner_word`).
    let free = joiner_word(tid.generation(), 0);
    let mine = joiner_word(tid.generation(), me.index() as u32 + 1);
    if t.joiner
        .compare_exchange(free, mine, Ordering::SeqCst, Ordering::Relaxed)
        .is_err()
    {
        return Err(if gone() {
            SchedError::NoSuchThread
        } else {
            SchedError::AlreadyJoined
        });
    }
    JOIN_RECHECK_HOLD.pass();
    // Claimed, but maybe on a slot another joiner freed (and one spawn took) since the
    // check, whose generation's low 16 bits are those of `tid` (65536 lifetimes later):
    // only the joiner frees a slot, so once the claim stands on the right generation the
    // slot is ours. Until 2026-12-04 it went on without looking: it waited on a free slot
    // for nothing (a `join` hung, `join_until` timed out) or took the join of the thread
    // spawned into it.
    if gone() {
        let _ = t
            .joiner
            .compare_exchange(mine, free, Ordering::SeqCst, Ordering::Relaxed);
        return Err(SchedError::NoSuchThread);
    }
    loop {
        if t.state() == State::Exited {
            let code = t.exit_code.load(Ordering::Relaxed);
            free_slot(i);
            return Ok(code);
        }
        if rdtsc() >= deadline {
            t.joiner.store(free, Ordering::SeqCst);
            return Err(SchedError::TimedOut);
        }
        if abort() {
            t.joiner.store(free, Ordering::SeqCst);
            return Err(SchedError::Interrupted);
        }
        // The exiting thread wakes us; the deadline (if any) ends the wait otherwise.
        block_until(deadline, || t.state() != State::Exited && !abort());
    }
}

/// Restricts the calling thread to `set` (it moves at its next scheduling point if the
/// current CPU is not in it).
pub fn set_affinity(set: CpuSet) -> Result<(), SchedError> {
    let set = set.normalized(|| crate::smp::cpus::online().map(|b| b.hot.cpu_id));
    first_online(&set).ok_or(SchedError::BadAffinity)?;
    let mut g = IrqGuard::new();
    let cs = this_sched().ok_or(SchedError::NotRunning)?;
    let me = tcb(cs.current.load(Ordering::Relaxed) as usize);
    let here = set.contains(cs.cpu);
    me.set_any_cpu(set.is_any());
    me.home
        .store(set.only().unwrap_or(NO_THREAD), Ordering::Relaxed);
    *me.affinity.lock() = set;
    if !here {
        schedule(&mut g);
    }
    Ok(())
}

/// The one CPU the calling thread is restricted to (`None`: more than one, or no
/// scheduler): the test harness checks its own thread stays pinned to CPU 0.
pub fn pinned_to() -> Option<u32> {
    let _g = IrqGuard::new();
    let cs = this_sched()?;
    let me = tcb(cs.current.load(Ordering::Relaxed) as usize);
    me.affinity.lock().only()
}

/// First code of every new thread (it "returns" here from its first switch).
pub(super) extern "sysv64" fn thread_entry(i: u64) -> ! {
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

/// Threads currently alive (not free).
pub fn live_threads() -> usize {
    TCBS.iter().filter(|t| t.state() != State::Free).count()
}

/// Whether thread `tid` is blocked (switched out, waiting for a wake-up): lets a test
/// order a step after another thread's block rather than after a flag set just before it.
pub fn is_blocked(tid: Tid) -> bool {
    TCBS.get(tid.index()).is_some_and(|t| {
        t.generation.load(Ordering::Acquire) == tid.generation() && t.state() == State::Blocked
    })
}

/// Test support: thread `tid`'s held-lock word as its last switch-out left it
/// (`Tcb::held`; `None`: no such thread). Meaningful while the thread is switched out
/// (read from a thread of its CPU, it is): the count of counted locks it held then, or,
/// for a thread parked through the exit path of `Here::handoff_parked` (which does not
/// store the word), what an earlier switch-out stored
/// (`user.ipc.parked_thread_resumes_counting_no_lock`).
pub fn held_word(tid: Tid) -> Option<u64> {
    TCBS.get(tid.index())
        .filter(|t| t.generation.load(Ordering::Acquire) == tid.generation())
        .map(|t| u64::from(t.held.load(Ordering::Relaxed)))
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

/// The address space of a thread, from its record's word (the pointer `Builder::space`
/// stored; not 0). Not a leaked allocation: `'static` stands for "while a thread of it may
/// run", the rule of `Builder::space` (every thread built on a space is joined before the
/// space is dropped, and a space whose thread did not join is never dropped), which the
/// compiler does not check (an audit of 2026-12-07 found tests that dropped theirs after a
/// join timed out; `user::tests_aspace::join_readers`).
pub(super) fn space_of(word: u64) -> &'static crate::mm::space::Space {
    // SAFETY: the word is `Builder::space`'s pointer to a live `Space` (rule above); only
    // shared references are made from it (what a `Space` changes after its first thread is
    // behind its lock or atomic).
    unsafe { &*(word as *const crate::mm::space::Space) }
}
