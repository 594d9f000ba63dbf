//! Per-CPU scheduling: each CPU's [`CpuSched`] (run queue and sleepers behind the CPU's own
//! lock, the wake-up mailbox, counters), found through this CPU's GS slot or the table of
//! all CPUs; `schedule` and the context switch (the lock is held across it and released by
//! the thread switched to, in `finish_switch`); start-up on every CPU; switch-time samples.
#![allow(
    unsafe_code,
    reason = "run queues and saved contexts behind the per-CPU lock; the switch itself"
)]

use super::idle::*;
use super::thread::*;
use super::wake::*;
use super::*;
use crate::mm::memory::Stack;
use crate::smp::cpus::{self, VEC_TIMER};
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use exo_arch::apic;
use exo_arch::syscall::{IPC_FRAME_BYTES, IpcFrame};
use exo_arch::tsc::rdtsc;
use exo_percpu::{CpuId, IrqGuard};
use exo_sched::{Ema, Mailbox, Queue, RunQueue, ThreadRef, classify_by};

/// Adds one to a counter that one CPU at a time writes (this CPU's own, with interrupts off
/// or its lock held; a thread's, by the CPU that switches it in, under that CPU's lock): a
/// load and a store, which the compiler folds into one `inc` without `lock` (a locked
/// increment costs ~20 cycles on current x86, two per switch before). Readers elsewhere see
/// a recent value, as with `fetch_add`.
#[inline(always)]
pub(super) fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// One more in a count only written with its CPU's lock held (`nr_ready`, `nr_stealable`;
/// the lock orders the writers, other CPUs read it lock-free): as [`bump`], no `lock`
/// prefix. Returns the old value.
#[inline(always)]
fn inc_held(c: &AtomicU32) -> u32 {
    let v = c.load(Ordering::Relaxed);
    c.store(v.wrapping_add(1), Ordering::Relaxed);
    v
}

/// One fewer, as [`inc_held`]. Returns the old value.
#[inline(always)]
fn dec_held(c: &AtomicU32) -> u32 {
    let v = c.load(Ordering::Relaxed);
    c.store(v.wrapping_sub(1), Ordering::Relaxed);
    v
}

/// The first CPU of `set` whose scheduler runs.
pub(super) fn first_online(set: &CpuSet) -> Option<u32> {
    set.iter(cpus::capacity() as u32)
        .find(|&c| cpu_sched(c).is_some())
}

/// One CPU's scheduler state.
pub struct CpuSched {
    pub(super) cpu: u32,
    pub(super) apic_id: u32,
    /// The address of this CPU's TSS.RSP0 (`exo_arch::gdt::rsp0_addr`, 0: unknown).
    pub(super) rsp0: u64,
    pub(super) lock: AtomicBool,
    pub(super) rq: UnsafeCell<RunQueue<MAX_THREADS>>,
    pub(super) sleepers: UnsafeCell<ArrayVec<u32, MAX_THREADS>>,
    /// A lower bound of the sleepers' wake-up times (`u64::MAX`: none; written with the lock
    /// held): a switch scans the list only once it has passed, the timer is armed from it
    /// without a scan. Exact after each scan; a sleeper woken early leaves it low (one early
    /// scan). `u64::MAX` when the list is empty (only a scan empties it) or holds no
    /// deadline; other CPUs read it lock-free: without a timer, idle ones ring this CPU when
    /// it has passed (`idle::watch_busy_sleepers`).
    pub(super) next_wake: AtomicU64,
    /// The TSC from which `next_wake` is within the watch window (`idle::WATCH_SLICES`
    /// before it; never above it), kept with it under the lock: the idle step's one compare
    /// both for a due sleeper and for one near enough to recruit a watcher as it leaves for
    /// work (computing the window there cost `ipc.rtt.64.xcore.kthread` +30 instructions a
    /// round trip, icount, 2026-12-06: CPU 0 holds the bench driver's 120 s join). Without
    /// a timer 0 while a first deadline beyond the window has had no watcher yet
    /// (`far_for`) or while this CPU watches others (`watching`): the same compare then
    /// sends the idle step's leave for work, and the switch-time recruit, to
    /// `idle::busy_with_sleepers` (`idle::near_from_of`).
    pub(super) near_from: AtomicU64,
    /// The deadline this CPU's timer was last programmed for (TSC; `u64::MAX`: none since its
    /// last tick). This CPU only, lock held or in its tick (see `program_timer`).
    pub(super) armed: AtomicU64,
    /// TSC of this CPU's last switch (the running thread's burst so far, for its average):
    /// a direct switch gives the thread the caller's slice (`started`), not its burst.
    pub(super) ran_since: AtomicU64,
    pub(super) mailbox: Mailbox<ThreadRef, MAILBOX_SLOTS>,
    pub(super) current: AtomicU32,
    /// The running thread's `uid` (its control block's, copied at each switch so the
    /// system-call path reads it with two loads).
    pub(super) current_uid: AtomicU64,
    pub(super) idle: AtomicU32,
    pub(super) prev: AtomicU32,
    pub(super) nr_ready: AtomicU32,
    pub(super) nr_stealable: AtomicU32,
    /// xorshift state for the thieves' random start (this CPU only).
    pub(super) rng: AtomicU64,
    pub(super) switch_t0: AtomicU64,
    /// What a switch here does besides the switch itself (`SLOW_*` bits; 0: nothing, one
    /// test on the switch path instead of one for the timer and one for the recording:
    /// icount `ctx.switch` -3, 2026-12-06). `SLOW_TIMER`: the scheduler uses a timer
    /// (`TIMER`, set once by `init` before any CPU's scheduler exists, so it is copied here
    /// at creation and never changes after). `SLOW_RECORD`: this CPU's switches are recorded
    /// (`record_switches`: a flag here, not a CPU number compared on every switch, so the
    /// switch path costs what it did before 2026-12-05).
    pub(super) slow: AtomicU8,
    /// CPU the thread just switched out must move to (valid with `AFTER_MIGRATE`).
    pub(super) migrate: AtomicU32,
    /// What the thread switched to must do for the one switched out, besides releasing the
    /// lock (`AFTER_*` bits; 0: nothing, `finish_switch`'s one test). Written by every
    /// switch that ends in `finish_switch`, read by that `finish_switch`, lock held.
    pub(super) after: AtomicU32,
    pub(super) stacks: spin::Mutex<ArrayVec<Stack, STACK_CACHE>>,
    /// Which thread's FPU state this CPU's registers hold.
    pub fpu: crate::sched::fpu::CpuFpu,
    /// The control block of this CPU's idle context (thread index `IDLE_BASE + cpu`) when it
    /// is an AP's boot context.
    pub(super) idle_tcb: Tcb,
    /// Counters: context switches, preemptions by the tick, threads stolen, wake IPIs sent.
    pub switches: AtomicU64,
    /// See `switches`.
    pub preemptions: AtomicU64,
    /// See `switches`.
    pub steals: AtomicU64,
    /// See `switches`.
    pub wake_ipis: AtomicU64,
    /// Preemptions by a wake-up IPI (`wake::wake_ipi`), apart from the tick's `preemptions`.
    pub wake_preemptions: AtomicU64,
    /// Looks that deferred the wake-up rule (`wake::defer_wake`), for tests and reports.
    pub wake_deferrals: AtomicU64,
    /// Threads parked at their system-call boundary this CPU left for ring 3 through
    /// their frame (`handoff_parked`'s `exit`), and parked threads resumed by a switch
    /// (their continuation ran).
    pub parked_exits: AtomicU64,
    /// See `parked_exits`.
    pub parked_resumes: AtomicU64,
    /// Timer interrupts (`tick`), and timer writes (`program_timer`): for a running thread's
    /// slice end, and the others (the idle context's, a sleeper's earlier deadline, a
    /// deferred wake-up's: `defer_wake`, or the tick's bound).
    pub timer_ticks: AtomicU64,
    /// See `timer_ticks`.
    pub timer_writes_slice: AtomicU64,
    /// See `timer_ticks`.
    pub timer_writes_other: AtomicU64,
    /// Stealable work queued behind a running thread offered to a halted CPU
    /// (`wake::offer_to_a_halted_cpu`), for tests.
    pub offers: AtomicU64,
    /// Halted CPUs this CPU woke for stealable work (`idle::kick_idle_cpu`: a CPU's halted
    /// mark claimed, a wake IPI sent), for tests; counted on the CPU that sends the IPI.
    pub idle_kicks: AtomicU64,
    /// Wake IPIs this CPU sent, idle without a timer, to busy CPUs whose sleeper was due
    /// (`idle::watch_busy_sleepers`), for tests.
    pub sleeper_rings: AtomicU64,
    /// When this CPU's idle step next looks at busy CPUs' sleepers (TSC; 0: at once,
    /// `u64::MAX`: never, with a timer): `idle::watch_busy_sleepers` sets it, a CPU that
    /// recruits this one as a watcher clears it.
    pub(super) watch_at: AtomicU64,
    /// The `next_wake` a watcher last rang this CPU for (`idle::watch_busy_sleepers`): each
    /// due deadline is rung once, not at every idle step of every polling CPU until this
    /// one takes the IPI (found by review 2026-12-06).
    pub(super) rung_for: AtomicU64,
    /// This CPU's idle step left for work with sleepers due within the watch window and
    /// recruited a watcher (`idle::idle_step`): watchers count it as busy before its switch
    /// makes `current` say so; cleared when its idle step finds no work again.
    pub(super) leaving_idle: AtomicBool,
    /// The first sleeper deadline beyond the watch window a watcher was recruited for as
    /// this CPU went busy (`idle::busy_with_sleepers`; `u64::MAX`: none), lock held: once
    /// per deadline, not at every leave for work of a CPU holding a long join.
    pub(super) far_for: AtomicU64,
    /// Watchers poll for this CPU's sleeper beyond the window while its `switches` count is
    /// below this (0: none) and its `ran_since` not above `far_since`: the busy stretch
    /// that recruited them, which ends at its next pass through the scheduler
    /// (`idle::far_watched`). Written under the lock, read lock-free.
    pub(super) far_until: AtomicU64,
    /// See `far_until` (`u64::MAX`: a handoff's stretch, bounded by `switches` alone).
    pub(super) far_since: AtomicU64,
    /// This CPU, idle, polls for other CPUs' sleepers (its last look found one to watch:
    /// `idle::watch_busy_sleepers`), or was recruited to and has not looked yet
    /// (`idle::recruit_watcher`); written under its lock. While set, `near_from` is 0, so its
    /// leave for work hands the watch on (`idle::busy_with_sleepers`).
    pub(super) watching: AtomicBool,
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

/// Every CPU's scheduler by CPU id (0: not started there), one load on the wake and steal
/// paths; kept here, so the CPU table (`smp`) holds nothing of the layer above.
static SCHEDS: [AtomicUsize; cpus::CPU_LIMIT] = [const { AtomicUsize::new(0) }; cpus::CPU_LIMIT];

/// `cpu`'s scheduler, once it runs there.
#[inline]
pub fn cpu_sched(cpu: u32) -> Option<&'static CpuSched> {
    let p = SCHEDS.get(cpu as usize)?.load(Ordering::Acquire) as *const CpuSched;
    // A non-zero entry holds the leaked `CpuSched` of that CPU (set once by `init_this_cpu`).
    (!p.is_null()).then(|| crate::sys::leaked_ref(p))
}

/// This CPU's scheduler (the caller is pinned: interrupts off or in an interrupt handler):
/// one `gs:` load.
pub fn this_sched() -> Option<&'static CpuSched> {
    let p = exo_percpu::sched_slot() as *const CpuSched;
    // The slot holds 0 or the leaked `CpuSched` of this CPU (set once by `init_this_cpu`).
    (!p.is_null()).then(|| crate::sys::leaked_ref(p))
}

impl CpuSched {
    /// Takes the lock: one strong CAS when it is free (every switch), standing before the
    /// loop so the free case falls through it (the loop's aligned head made it a `nop` and a
    /// `jmp` more: icount `ctx.switch` -2). No call, even out of line: a call on the
    /// contended path would make the callers' registers caller-saved across it (measured:
    /// +15 instructions on the IPC fastpath).
    #[inline(always)]
    pub(super) fn lock(&self) {
        let cas = || {
            self.lock
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        if cas() {
            return;
        }
        core::hint::cold_path();
        loop {
            while self.lock.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
            if cas() {
                return;
            }
        }
    }
    pub(super) fn try_lock(&self) -> bool {
        !self.lock.load(Ordering::Relaxed)
            && self
                .lock
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }
    pub(super) fn unlock(&self) {
        self.lock.store(false, Ordering::Release);
    }
    /// The run queue.
    ///
    /// # Safety
    /// The caller holds `lock` and does not keep another reference to the queue.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn rq(&self) -> &mut RunQueue<MAX_THREADS> {
        // SAFETY: per the contract, the lock makes this the only live reference.
        unsafe { &mut *self.rq.get() }
    }
    /// The sleeper list (same contract as `rq`).
    ///
    /// # Safety
    /// As for [`CpuSched::rq`].
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn sleepers(&self) -> &mut ArrayVec<u32, MAX_THREADS> {
        // SAFETY: per the contract.
        unsafe { &mut *self.sleepers.get() }
    }

    /// Enqueues thread `i` (lock held).
    pub(super) fn enqueue_locked(&self, i: usize) {
        self.enqueue_inline(i, tcb(i));
    }

    /// [`CpuSched::enqueue_locked`], inlined (`schedule` putting the current thread back;
    /// `t` is thread `i`'s control block, which the caller already holds).
    #[inline(always)]
    pub(super) fn enqueue_inline(&self, i: usize, t: &Tcb) {
        let prio = t.priority();
        let class = queue_of(t);
        t.cpu.store(self.cpu, Ordering::Relaxed);
        // SAFETY: the caller holds the lock.
        if unsafe { self.rq() }
            .enqueue(ThreadRef(i as u32), prio, class)
            .is_ok()
        {
            inc_held(&self.nr_ready);
            if t.any_cpu()
                && inc_held(&self.nr_stealable) == 0
                && let Some(m) = stealable_mask()
            {
                m.set(self.cpu);
            }
        }
    }

    /// [`CpuSched::enqueue_inline`] of the running thread `i` (control block `t`, run-time
    /// average `e` just updated) and [`pick_local`] in one step
    /// ([`RunQueue::requeue_pick`]): the thread to run next, `i` itself if it stays the most
    /// urgent. `None` only if `i` cannot be queued (then it is not, as `enqueue_inline`).
    /// Lock held; `i` runs here, so its `cpu` already names this CPU.
    #[inline(always)]
    pub(super) fn requeue_pick(&self, i: usize, t: &Tcb, e: Ema) -> Option<(usize, &'static Tcb)> {
        let prio = t.priority();
        let class = queue_for(e);
        // SAFETY: the caller holds the lock.
        let n = unsafe { self.rq() }
            .requeue_pick(ThreadRef(i as u32), prio, class)
            .ok()?
            .index();
        let next = tcb(n);
        // One in, one out: `nr_ready` is unchanged, `nr_stealable` only if the two differ
        // (`n == i` compares a thread with itself).
        let was = t.any_cpu.load(Ordering::Relaxed);
        if was != next.any_cpu.load(Ordering::Relaxed) {
            self.move_stealable(was != 0);
        }
        Some((n, next))
    }

    /// One stealable thread more (`more`) or fewer on this queue (lock held).
    #[cold]
    fn move_stealable(&self, more: bool) {
        if more {
            if inc_held(&self.nr_stealable) == 0
                && let Some(m) = stealable_mask()
            {
                m.set(self.cpu);
            }
        } else if dec_held(&self.nr_stealable) == 1
            && let Some(m) = stealable_mask()
        {
            m.clear(self.cpu);
        }
    }

    /// Counts thread `i` off this queue (lock held: the stealable bit changes with the count).
    pub(super) fn account_dequeue(&self, t: &Tcb) {
        dec_held(&self.nr_ready);
        if t.any_cpu()
            && dec_held(&self.nr_stealable) == 1
            && let Some(m) = stealable_mask()
        {
            m.clear(self.cpu);
        }
    }

    /// A pseudo-random number (xorshift64; only this CPU calls it).
    pub(super) fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// Moves woken threads from the mailbox to the run queue (lock held).
    #[inline(always)]
    pub(super) fn drain_mailbox(&self) {
        // The doorbell not rung: nothing to take. A message published but not rung yet is
        // as if it came after this drain: its producer rings right after publishing, and
        // the next schedule here takes it (a CPU rings itself with no IPI either way).
        if !self.mailbox.is_pending() {
            return;
        }
        self.drain_rung_mailbox();
    }

    /// [`CpuSched::drain_mailbox`] with the doorbell rung.
    #[inline(always)]
    fn drain_rung_mailbox(&self) {
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
                    t.mark_woken();
                }
            }
        });
    }

    /// Wakes the sleepers whose deadline passed (lock held); returns the next deadline (a
    /// lower bound: see `next_wake`). The list is scanned only when a deadline may have
    /// passed, not at every switch.
    #[inline(always)]
    pub(super) fn wake_sleepers(&self, now: u64) -> Option<u64> {
        // SAFETY: the caller holds the lock.
        if unsafe { self.sleepers() }.is_empty() {
            return None;
        }
        let bound = self.next_wake.load(Ordering::Relaxed);
        if now < bound {
            return Some(bound);
        }
        self.wake_some_sleepers(now)
    }

    /// Puts thread `i`, about to block until TSC `deadline` (its `wake_at`, already
    /// stored), on the sleeper list (once) and lowers `next_wake` to cover it. Lock held.
    /// `handoff`: `i` switches straight to a claimed thread (`block_for_handoff`), which is
    /// on no run queue but runs here while `i` sleeps (a constant at each call site).
    #[inline(always)]
    pub(super) fn add_sleeper(&self, i: u32, deadline: u64, handoff: bool) {
        // SAFETY: the caller holds the lock.
        let sl = unsafe { self.sleepers() };
        // One entry per thread (the list holds MAX_THREADS): never full.
        if !sl.contains(&i) {
            let _ = sl.try_push(i);
        }
        let bound = self.next_wake.load(Ordering::Relaxed);
        if deadline < bound {
            self.next_wake.store(deadline, Ordering::Relaxed);
            // Every lowering, not only the first deadline: without a timer a 1 ms sleep
            // beside a queued thread on a CPU whose list already held a 30 s deadline
            // recruited no watcher until 2026-12-06 (found by review;
            // `sched.due_sleeper_beside_a_distant_one_is_watched_without_a_timer`).
            sleeper_deadline_lowered(self, deadline, bound, handoff);
        }
    }

    /// Scans the sleeper list now, before its first deadline if need be (lock held): the
    /// entries of threads no longer blocked here until a deadline go, the due ones are
    /// woken, `next_wake` is exact. Returns whether sleepers are left.
    pub(super) fn rescan_sleepers(&self, now: u64) -> bool {
        self.wake_some_sleepers(now).is_some()
    }

    /// [`CpuSched::wake_sleepers`] with sleepers to look at: the scan, and `next_wake` made
    /// exact (the next deadline, `u64::MAX` for none; `near_from` with it), which it returns.
    #[inline(never)]
    fn wake_some_sleepers(&self, now: u64) -> Option<u64> {
        // SAFETY: the caller holds the lock.
        let sl = unsafe { self.sleepers() };
        let mut next: Option<u64> = None;
        let mut k = 0;
        while k < sl.len() {
            let i = sl[k] as usize;
            let t = tcb(i);
            let at = t.wake_at.load(Ordering::Relaxed);
            // `u64::MAX`: it blocked again without a deadline since it was listed (an early
            // wake, then `recv` or a join); until 2026-12-05 such an entry stayed for good
            // (found by review). Dropped here, at a scan: a switch's comes only once the
            // list's first deadline has passed, so without a timer the idle step scans too
            // (`idle::own_sleepers_left`): until 2026-12-06 an idle CPU polled for such an
            // entry until its old deadline, 30 s or an hour (found by review).
            // Another CPU: it blocked again there (woken early, moved), listed there with its
            // new deadline; until 2026-12-05 this entry stayed until that deadline, an hour
            // or "forever" for a large IPC timeout (found by review).
            if at <= now
                || at == u64::MAX
                || t.state() != State::Blocked
                || t.cpu.load(Ordering::Acquire) != self.cpu
            {
                sl.swap_remove(k);
                if at <= now
                    && t.cpu.load(Ordering::Acquire) == self.cpu
                    && t.cas_state(State::Blocked, State::Ready)
                {
                    self.enqueue_locked(i);
                    if timer_off() {
                        // No slice-end tick will come: marked as a wake-up's, so the
                        // wake-up rule preempts a running thread past its floor
                        // (`wake::wake_preempt`). Until 2026-12-06 a due pinned sleeper
                        // on a busy CPU was queued and waited until the running thread
                        // blocked (found by review;
                        // `sched.due_pinned_sleeper_on_a_busy_cpu_runs_without_a_timer`).
                        t.mark_woken();
                    }
                }
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
                k += 1;
            }
        }
        if sl.is_empty() {
            no_sleepers_left(self);
        }
        let at = next.unwrap_or(u64::MAX);
        self.next_wake.store(at, Ordering::Relaxed);
        self.near_from
            .store(near_from_of(self, at), Ordering::Relaxed);
        next
    }
}

/// The core of the scheduler: puts the current thread back (if it is still runnable), picks
/// the next one and switches to it. Interrupts must be off (`_g`, or an interrupt handler).
/// The guard is borrowed mutably: a reference to this CPU's state taken under it
/// (`cpus::local(&g)`) cannot live across the switch, after which the thread may
/// run on another CPU (a shared borrow allowed it; found by review, no caller did it).
pub fn schedule(_g: &mut IrqGuard) {
    schedule_irqs_off();
}

/// [`schedule`] after which this CPU's sleepers could go unwatched (see
/// [`schedule_watching_irqs_off`]).
pub(super) fn schedule_watching(_g: &mut IrqGuard) {
    schedule_watching_irqs_off();
}

#[inline(never)]
pub(super) fn schedule_irqs_off() {
    schedule_core::<false, false>();
}

/// [`schedule`] after which this CPU's sleepers could go unwatched without a timer: by a
/// thread that just listed itself as a sleeper (`wake::block_as_sleeper`: `block_until`,
/// `sleep_until`), and by the idle step leaving for sleepers due. Its own copy of the
/// core, which, when the switch runs a thread, recruits a watcher for this CPU's sleepers
/// if one is due within the watch window (`idle::sleepers_left_for_work`). Whatever that
/// thread is (queued before, posted to the mailbox after the sleeper's add, stolen, a
/// sleeper that fell due), it is known only here, under the lock, and no idle step comes
/// between to recruit one. Until 2026-12-06 the sleeper's add recruited one only if the
/// run queue held a thread then: one posted (or queued) between the add and this switch
/// ran with the sleeper unwatched, and it overslept for as long as that thread ran (found
/// by review; `sched.due_sleeper_whose_switch_ran_a_posted_thread_is_woken_without_a_timer`).
/// A copy, not a test in the common core: blocks without a deadline, wake-ups and yields
/// pay nothing for it.
#[inline(never)]
pub(super) fn schedule_watching_irqs_off() {
    schedule_core::<false, true>();
}

/// [`schedule_irqs_off`] for a yield ([`super::yield_now`]): the caller is the running
/// thread, so its state is `Running` (or `Ready`: the idle context, or a thread not yet
/// switched to), which only the thread itself changes. Its own copy of the scheduler's
/// core, where the state is that constant instead of a load and a check kept in a register
/// across the pick (icount `ctx.switch` 220 -> 206). Two copies of the core mean two callers
/// of what it calls: the run queue's `requeue_pick` and `pick_local` are `inline(always)`
/// (left to the compiler, they became calls: 239).
#[inline(never)]
pub(super) fn schedule_yield_irqs_off() {
    schedule_core::<true, false>();
}

/// The scheduler's core (`YIELD`: called by a yield, see [`schedule_yield_irqs_off`];
/// `WATCHING`: see [`schedule_watching_irqs_off`]).
#[inline(always)]
fn schedule_core<const YIELD: bool, const WATCHING: bool>() {
    // A preemption guard held across a switch would come back on another CPU and be dropped
    // there: both CPUs' counts wrong for good (found by review; no caller does it).
    debug_assert!(
        exo_percpu::preemptible(),
        "switch inside a preemption guard"
    );
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
    // Since this CPU's last switch: a thread switched to directly runs on its caller's
    // slice (`started`), so the slice's start would make its burst the whole chain of
    // hand-offs (IPC threads drifting from hot to normal; found by review).
    // Wrapping, not saturating (icount `ctx.switch` -2): `ran_since` is written only by this
    // CPU, from its own TSC read under its lock (`switch_locked`, `keep_running`,
    // `switch_direct`, `init_this_cpu`), so it is an earlier read of the counter `now` is
    // read from, and the kernel runs on an invariant TSC. Should that counter ever step
    // back, the sample wraps to a huge burst, which `Ema::update` saturates: the thread is
    // classified normal until its average decays again (a scheduling hint, no overflow).
    let burst = now.wrapping_sub(cs.ran_since.load(Ordering::Relaxed));
    // The average's whole state is stored (`Ema::raw`): until 2026-12-02 the average divided
    // by 8 was, so every reload shrank it 8-fold and every thread was classified hot.
    let mut e = Ema::from_raw(prev.ema.load(Ordering::Relaxed));
    e.update(burst);
    prev.ema.store(e.raw(), Ordering::Relaxed);
    let state = if YIELD {
        debug_assert!(matches!(prev.state(), State::Running | State::Ready));
        State::Running
    } else {
        prev.state()
    };
    let runnable = matches!(state, State::Running | State::Ready);
    let mut picked = None;
    if runnable && prev_i != idle_i {
        prev.set_state(State::Ready);
        if put_back_here(cs, prev) {
            // Put back and pick in one step (a yield between equals rotates one list).
            picked = cs.requeue_pick(prev_i, prev, e);
            if !YIELD {
                // A preemption (the tick's, a wake-up's) put a runnable thread back: what
                // others may take now waits here (it, or a woken thread it keeps the CPU
                // from), and a halted CPU is told. Until 2026-12-06 nothing was: with the
                // timer off no tick came to kick one, and an unpinned thread preempted by a
                // wake-up waited beside a halted CPU for as long as the woken thread ran
                // (found by review; `sched.preempted_stealable_thread_is_offered_to_a_halted_cpu`).
                // Not for a yield (`ctx.switch`) nor a block (its thread is not put back).
                offer_to_a_halted_cpu(cs);
            }
        } else if let Some(m) = put_back_by_affinity(cs, prev_i, prev) {
            // Its set no longer holds this CPU: the rest of the switch in a cold copy, so
            // the common path carries no migration target.
            return switch_migrating(cs, prev_i, prev, now, m);
        }
    }
    let (next_i, next) = pick_or_idle(cs, picked, prev_i, prev, idle_i);
    if next_i == prev_i {
        keep_running(cs, prev, now, next_i != idle_i);
        if YIELD {
            // Nothing else to run here: the caller is spinning on a yield loop (a wait for
            // another CPU). The spin-wait hint, after the unlock: on hardware it gives an
            // SMT sibling the core; QEMU's round-robin TCG (icount) ends this vCPU's turn at a
            // `pause`, so the CPU waited for runs now and not after the rest of a slice of up
            // to 100 ms of guest time (until 2026-12-07 it did: `ipc.fusion_rings_across_cpus`
            // took 2 s of guest time under icount for its 40 forced parks, 3 ms with this).
            core::hint::spin_loop();
        }
        return;
    }
    if WATCHING && next_i != idle_i {
        sleepers_left_for_work(cs, now);
    }
    let exiting = state == State::Exiting;
    switch_locked(cs, prev_i, prev, next_i, next, now, idle_i, None, exiting);
}

/// `schedule` picked the running thread `prev` again: it runs on, its slice restarted at
/// `now` (`running`: not the idle context, as `arm_timer` takes it); the lock is released.
#[inline(always)]
fn keep_running(cs: &CpuSched, prev: &Tcb, now: u64, running: bool) {
    prev.set_state(State::Running);
    prev.started.store(now, Ordering::Relaxed);
    cs.ran_since.store(now, Ordering::Relaxed);
    arm_timer(cs, now, running);
    cs.unlock();
}

/// The next thread (lock held): `picked`, else the local queue's, else a stolen one, else
/// this CPU's idle context `idle_i` (`cs.idle`, loaded once by the caller for the whole
/// switch: icount `ctx.switch` -1 a reload) or `prev` itself only before that exists
/// (scheduler init).
#[inline(always)]
fn pick_or_idle(
    cs: &CpuSched,
    picked: Option<(usize, &'static Tcb)>,
    prev_i: usize,
    prev: &'static Tcb,
    idle_i: usize,
) -> (usize, &'static Tcb) {
    match picked
        .or_else(|| pick_local(cs))
        .or_else(|| cs.steal().map(|i| (i, tcb(i))))
    {
        Some(n) => n,
        None if idle_i != NO_THREAD as usize => (idle_i, tcb(idle_i)),
        None => (prev_i, prev),
    }
}

/// The end of `schedule` for a runnable `prev` that must move to CPU `m` (its affinity
/// set no longer holds this one; it is not queued here): the next thread runs here and
/// `prev` migrates once its registers are saved (`finish_switch`). Lock held.
#[cold]
#[inline(never)]
fn switch_migrating(
    cs: &'static CpuSched,
    prev_i: usize,
    prev: &'static Tcb,
    now: u64,
    m: &'static CpuSched,
) {
    let idle_i = cs.idle.load(Ordering::Relaxed) as usize;
    let (next_i, next) = pick_or_idle(cs, None, prev_i, prev, idle_i);
    if next_i == prev_i {
        // Scheduler init only (no idle context yet).
        return keep_running(cs, prev, now, true);
    }
    switch_locked(cs, prev_i, prev, next_i, next, now, idle_i, Some(m), false);
}

/// `schedule` putting back `prev` (thread `prev_i`), whose affinity is neither any CPU nor
/// only this one: queued here if its set holds this CPU, else the CPU it must move to
/// (lock held). Inlined: as a cold call it made `schedule`'s registers caller-saved across
/// it (icount: `ctx.switch.as` 386 -> 405).
#[inline(always)]
fn put_back_by_affinity(cs: &CpuSched, prev_i: usize, prev: &Tcb) -> Option<&'static CpuSched> {
    let set = prev.affinity.lock();
    if set.contains(cs.cpu) {
        cs.enqueue_inline(prev_i, prev);
        return None;
    }
    first_online(&set).and_then(cpu_sched)
}

/// Switches this CPU from `prev_i` (the running thread, already put back or blocked) to
/// `next_i` (Ready or claimed, its registers saved), with interrupts off and the CPU's lock
/// held; `next_i`'s `finish_switch` releases the lock (`exiting`: `prev`'s state, read under
/// the lock, is Exiting; `idle_i`: this CPU's idle context, `cs.idle` as the caller loaded
/// it). Used by `schedule`.
#[inline(always)]
#[allow(clippy::too_many_arguments, reason = "inlined into its one caller")]
pub(super) fn switch_locked(
    cs: &CpuSched,
    prev_i: usize,
    prev: &Tcb,
    next_i: usize,
    next: &Tcb,
    now: u64,
    idle_i: usize,
    migrate_to: Option<&'static CpuSched>,
    exiting: bool,
) {
    next.set_state(State::Running);
    // Every way onto this CPU's queue (`enqueue_inline`, a steal, a new thread's placement)
    // and the idle context's creation already wrote this CPU there, under this lock.
    debug_assert_eq!(next.cpu.load(Ordering::Relaxed), cs.cpu);
    next.started.store(now, Ordering::Relaxed);
    cs.ran_since.store(now, Ordering::Relaxed);
    next.switches.store(
        next.switches.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
    cs.current.store(next_i as u32, Ordering::Relaxed);
    cs.prev.store(prev_i as u32, Ordering::Relaxed);
    bump(&cs.switches);
    crate::sched::fpu::switch_out(&cs.fpu, cs.cpu, prev_i, prev, next_i, next);
    load_context::<true>(cs, prev, next);
    // What the next thread finishes for prev (prev's registers must be saved first): its
    // migration, its reaping (its state read here, under the lock: see `finish_switch`),
    // and the switch-time sample (two TSC reads only while the switch buffer records).
    let mut after = u32::from(exiting) * AFTER_EXITING;
    // The timer and the recording in one test (`CpuSched::slow`). Inside, `arm_timer` tests
    // `TIMER` itself and the flags are loaded again: a value kept across its call took a
    // callee-saved register and made the compiler spill `now` (a first version measured
    // -1 instead of -3).
    debug_assert_eq!(
        cs.slow.load(Ordering::Relaxed) & SLOW_TIMER != 0,
        TIMER.load(Ordering::Relaxed) != TIMER_OFF,
        "TIMER changed after this CPU's scheduler was made"
    );
    if cs.slow.load(Ordering::Relaxed) != 0 {
        arm_timer(cs, now, next_i != idle_i);
        if cs.slow.load(Ordering::Relaxed) & SLOW_RECORD != 0 {
            cs.switch_t0
                .store(exo_arch::tsc::rdtsc_precise(), Ordering::Relaxed);
            after |= AFTER_RECORD;
        }
    }
    if let Some(m) = migrate_to {
        cs.migrate.store(m.cpu, Ordering::Relaxed);
        after |= AFTER_MIGRATE;
    }
    cs.after.store(after, Ordering::Relaxed);
    // SAFETY: interrupts are off and this CPU's lock is held, so nobody else touches either
    // context: `prev` is the running thread (its slot receives its stack pointer), `next`
    // is switched out (its slot holds a stack pointer saved by `switch` or built by
    // `init_stack`), and its stack is mapped. `finish_switch`, run by `next` right after,
    // releases the lock.
    unsafe { exo_arch::context::switch(prev.ctx_ptr(), *next.ctx_ptr()) };
    finish_switch();
}

/// Sets this CPU's TSS.RSP0 (`cs` is this CPU's state; interrupts off: a switch).
#[inline(always)]
fn set_rsp0(cs: &CpuSched, top: u64) {
    if cs.rsp0 != 0 {
        // SAFETY: `cs` is this CPU's state (the caller's contract: `this_sched` under the
        // switch's guard), whose `rsp0` `init_this_cpu` read on this CPU; interrupts are off.
        unsafe { exo_arch::gdt::set_rsp0_at(cs.rsp0, top) };
    } else {
        exo_arch::gdt::set_rsp0(top);
    }
}

/// The queue `t`'s average run burst puts it in: hot below a quarter of the time slice.
#[inline(always)]
pub(super) fn queue_of(t: &Tcb) -> Queue {
    queue_for(Ema::from_raw(t.ema.load(Ordering::Relaxed)))
}

/// The queue an average run burst `e` puts a thread in ([`queue_of`] with the average at
/// hand).
#[inline(always)]
fn queue_for(e: Ema) -> Queue {
    classify_by(e, HOT_LIMIT.load(Ordering::Relaxed))
}

/// The queue the running thread would go to if it were put back now ([`queue_of`]), for
/// tests and reports.
pub fn current_queue() -> Option<Queue> {
    let _g = IrqGuard::new();
    let cs = this_sched()?;
    Some(queue_of(tcb(cs.current.load(Ordering::Relaxed) as usize)))
}

/// Picks from the local run queue (lock held): the thread's index and control block.
#[inline(always)]
pub(super) fn pick_local(cs: &CpuSched) -> Option<(usize, &'static Tcb)> {
    // SAFETY: the caller holds the lock.
    let i = unsafe { cs.rq() }.pick_next()?.index();
    let t = tcb(i);
    cs.account_dequeue(t);
    Some((i, t))
}

/// `CpuSched::slow`: the scheduler uses a timer (`TIMER` is not `TIMER_OFF`).
pub(super) const SLOW_TIMER: u8 = 1;
/// `CpuSched::slow`: this CPU's switches are recorded (`record_switches`).
pub(super) const SLOW_RECORD: u8 = 2;

/// `CpuSched::after`: the thread switched out was exiting (the next one reaps it).
pub(super) const AFTER_EXITING: u32 = 1;
/// `CpuSched::after`: the thread switched out moves to CPU `CpuSched::migrate`.
pub(super) const AFTER_MIGRATE: u32 = 2;
/// `CpuSched::after`: the switch is timed from `CpuSched::switch_t0`.
pub(super) const AFTER_RECORD: u32 = 4;

/// Runs on the thread just switched to: releases the CPU's lock, then finishes what the
/// previous thread could not do on its own stack (`CpuSched::after`: nothing, on most
/// switches).
#[inline(always)]
pub(super) fn finish_switch() {
    let Some(cs) = this_sched() else {
        return;
    };
    let after = cs.after.load(Ordering::Relaxed);
    if after != 0 {
        // The switch-time sample is read here, before the call (the instrument's own cost
        // stays out of `ctx.switch.raw`).
        let t1 = if after & AFTER_RECORD != 0 {
            exo_arch::tsc::rdtsc_precise()
        } else {
            0
        };
        finish_after(cs, after, t1);
        return;
    }
    #[cfg(debug_assertions)]
    let prev_i = cs.prev.load(Ordering::Relaxed) as usize;
    cs.unlock();
    #[cfg(debug_assertions)]
    super::inject::done(super::inject::after_unlock(cs.cpu, prev_i));
}

/// `finish_switch` with work to do (`after`, read under the lock; `t1`: the TSC at the end of
/// a timed switch). Whether the thread
/// switched away from was exiting was read by the switch while this CPU's lock was held:
/// until it is released, that thread cannot run anywhere (a ready one sits in this CPU's
/// queue, stealing takes the lock; a blocked one is woken through this CPU). Read after the
/// unlock, a thread that was merely preempted could be stolen, run, fault and set Exiting on
/// another CPU in between, and this CPU would reap the stack it still runs on (a kernel stack
/// shared by two threads: seen as a `ret` to 0x23, the user SS of an exception frame, in the
/// fuzzer at -smp 4).
#[cold]
#[inline(never)]
fn finish_after(cs: &CpuSched, after: u32, t1: u64) {
    if after & AFTER_RECORD != 0 {
        record_switch(t1.saturating_sub(cs.switch_t0.load(Ordering::Relaxed)));
    }
    let prev_i = cs.prev.load(Ordering::Relaxed) as usize;
    let exiting = after & AFTER_EXITING != 0;
    if after & AFTER_MIGRATE != 0 {
        finish_migration(cs, prev_i, cs.migrate.load(Ordering::Relaxed), exiting);
        return;
    }
    cs.unlock();
    #[cfg(debug_assertions)]
    let held = super::inject::after_unlock(cs.cpu, prev_i);
    if exiting {
        #[cfg(debug_assertions)]
        super::inject::before_reap(prev_i);
        reap(cs, prev_i);
    }
    #[cfg(debug_assertions)]
    super::inject::done(held);
}

/// `finish_switch` when the previous thread must move to CPU `migrate` (`exiting`: what
/// the switch read under the lock). The thread is named as on its new CPU before this
/// CPU's lock is released: a wake-up that found this CPU's mailbox full and waits for the
/// lock queues a Ready thread here if it is still named as on this CPU (`post_wake`), and
/// after the unlock it would be queued here as well as on the new CPU. Until 2026-12-04 the
/// name changed after the unlock (the test `sched.migration_not_queued_twice` forces that
/// window).
fn finish_migration(cs: &CpuSched, prev_i: usize, migrate: u32, exiting: bool) {
    let prev = tcb(prev_i);
    let target = if exiting { None } else { cpu_sched(migrate) };
    if let Some(target) = target {
        prev.cpu.store(target.cpu, Ordering::Release);
    }
    cs.unlock();
    #[cfg(debug_assertions)]
    super::inject::migration_after_unlock(prev_i);
    if exiting {
        reap(cs, prev_i);
        return;
    }
    if let Some(target) = target {
        post_wake(target, prev_i);
    }
}

/// Whether thread `t` is in CPU `cpu`'s run queue (tests).
#[cfg(debug_assertions)]
pub(super) fn queued_on(cpu: u32, t: Tid) -> bool {
    let _g = IrqGuard::new();
    let Some(cs) = cpu_sched(cpu) else {
        return false;
    };
    cs.lock();
    // SAFETY: we hold the lock.
    let q = unsafe { cs.rq() }.contains(ThreadRef(t.index() as u32));
    cs.unlock();
    q
}

/// The previous thread (`prev_i`) exited: its stack, its FPU area, its joiner.
#[cold]
#[inline(never)]
fn reap(cs: &CpuSched, prev_i: usize) {
    let prev = tcb(prev_i);
    // Only the CPU that switched away from an exiting thread reaps it: one that last ran
    // elsewhere may still be on its stack there (the race `finish_switch` avoids by reading
    // the state under its lock). Stop rather than hand that stack to another thread.
    let ran_on = prev.cpu.load(Ordering::Acquire);
    if ran_on != cs.cpu {
        panic!(
            "sched: CPU {} reaping thread {prev_i}, which last ran on CPU {ran_on}",
            cs.cpu
        );
    }
    if let Some(s) = prev.stack() {
        give_stack(cs, s);
    }
    crate::sched::fpu::release(prev_i, &prev.fpu_area);
    prev.set_state(State::Exited);
    core::sync::atomic::fence(Ordering::SeqCst);
    let j = joiner_of(prev.joiner.load(Ordering::SeqCst));
    if j != 0 {
        wake_index((j - 1) as usize);
    }
}

/// Sets up the scheduler on the calling CPU: the running context becomes a thread (`idle`:
/// this CPU's idle context, else a normal pinned thread, e.g. the BSP's main flow).
pub(super) fn init_this_cpu(as_idle: bool) -> Result<(), SchedError> {
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
        rsp0: exo_arch::gdt::rsp0_addr().unwrap_or(0),
        lock: AtomicBool::new(false),
        rq: UnsafeCell::new(RunQueue::new()),
        sleepers: UnsafeCell::new(ArrayVec::new()),
        next_wake: AtomicU64::new(u64::MAX),
        near_from: AtomicU64::new(u64::MAX),
        armed: AtomicU64::new(u64::MAX),
        ran_since: AtomicU64::new(0),
        mailbox: Mailbox::new(),
        current: AtomicU32::new(i as u32),
        current_uid: AtomicU64::new(0),
        idle: AtomicU32::new(if as_idle { i as u32 } else { NO_THREAD }),
        prev: AtomicU32::new(i as u32),
        nr_ready: AtomicU32::new(0),
        nr_stealable: AtomicU32::new(0),
        rng: AtomicU64::new(
            0x9E37_79B9_7F4A_7C15 ^ (u64::from(cpu) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        ),
        switch_t0: AtomicU64::new(0),
        slow: AtomicU8::new(if TIMER.load(Ordering::Relaxed) == TIMER_OFF {
            0
        } else {
            SLOW_TIMER
        }),
        migrate: AtomicU32::new(NO_THREAD),
        after: AtomicU32::new(0),
        stacks: spin::Mutex::new(ArrayVec::new()),
        fpu: crate::sched::fpu::CpuFpu::new(),
        idle_tcb: Tcb::new(),
        switches: AtomicU64::new(0),
        preemptions: AtomicU64::new(0),
        steals: AtomicU64::new(0),
        wake_ipis: AtomicU64::new(0),
        wake_preemptions: AtomicU64::new(0),
        wake_deferrals: AtomicU64::new(0),
        parked_exits: AtomicU64::new(0),
        parked_resumes: AtomicU64::new(0),
        timer_ticks: AtomicU64::new(0),
        timer_writes_slice: AtomicU64::new(0),
        timer_writes_other: AtomicU64::new(0),
        offers: AtomicU64::new(0),
        idle_kicks: AtomicU64::new(0),
        sleeper_rings: AtomicU64::new(0),
        watch_at: AtomicU64::new(if timer_off() { 0 } else { u64::MAX }),
        rung_for: AtomicU64::new(u64::MAX),
        leaving_idle: AtomicBool::new(false),
        far_for: AtomicU64::new(u64::MAX),
        far_until: AtomicU64::new(0),
        far_since: AtomicU64::new(0),
        watching: AtomicBool::new(false),
    })
    .map_err(|_| {
        if !as_idle {
            tcb(i).set_state(State::Free);
        }
        SchedError::OutOfMemory
    })?;
    let t = if as_idle { &cs.idle_tcb } else { tcb(i) };
    *t.affinity.lock() = CpuSet::one(cpu);
    t.set_any_cpu(false);
    t.home.store(cpu, Ordering::Relaxed);
    t.cpu.store(cpu, Ordering::Relaxed);
    t.started.store(rdtsc(), Ordering::Relaxed);
    cs.ran_since.store(rdtsc(), Ordering::Relaxed);
    t.set_state(State::Running);
    if let Some(e) = SCHEDS.get(cpu as usize) {
        e.store(cs as *const CpuSched as usize, Ordering::Release);
    }
    exo_percpu::set_sched_slot(&g, cs as *const CpuSched as usize);
    crate::sched::fpu::init_cpu(&cs.fpu);
    if TIMER.load(Ordering::Relaxed) == TIMER_DEADLINE {
        apic::timer_deadline_mode(VEC_TIMER);
    }
    Ok(())
}

/// How long [`init`] waits for the APs to start their schedulers, all together: a bound on
/// a CPU that stopped answering, not a time to meet (a vCPU of a loaded host can be off its
/// core for seconds).
const AP_START_MS: u64 = 30_000;

/// Fault injection (`exo.sched_start_delay_ms`, tests): the CPU whose scheduler start
/// waits, plus one (0: none), and for how many TSC ticks.
static START_DELAY: (AtomicU32, AtomicU64) = (AtomicU32::new(0), AtomicU64::new(0));

/// Makes CPU `cpu` start its scheduler `ticks` TSC ticks after [`init`] asks it (a vCPU
/// kept off its core meanwhile, as a loaded host does).
pub fn delay_scheduler_start(cpu: u32, ticks: u64) {
    START_DELAY.1.store(ticks, Ordering::Relaxed);
    START_DELAY.0.store(cpu + 1, Ordering::Release);
}

pub(super) fn init_ap(_: u64) -> u64 {
    if START_DELAY.0.load(Ordering::Acquire) == exo_percpu::cpu_id_hint().0 + 1 {
        let until = rdtsc().saturating_add(START_DELAY.1.load(Ordering::Relaxed));
        while rdtsc() < until {
            core::hint::spin_loop();
        }
    }
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
    let slice = slice_us * (tsc_hz / 1_000_000).max(1);
    set_slice_tsc(slice);
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
    init_masks(n);
    crate::sched::fpu::init();
    init_this_cpu(false)?;
    cpus::set_idle_hooks(cpus::IdleHooks {
        step: idle_step,
        woke: idle_woke,
    });
    // Posted to every AP first, then waited for under one deadline: an AP whose vCPU the
    // host keeps off its core for a while starts late, not never. Until 2026-12-06 each AP
    // had 1 s in turn, and one stalled past it began the tests without its scheduler (a
    // pinned spawn there refused) while its request still waited in its mailbox (found by
    // an audit for host-speed failures); a request is also a round trip per AP no more.
    let deadline = crate::smp::time::Deadline::after_ms(AP_START_MS);
    let said = |cpu: CpuId, r: Result<u64, cpus::RunError>| {
        if r != Ok(0) {
            log::warn!(
                "scheduler: CPU {} did not start its scheduler ({r:?})",
                cpu.0
            );
        }
    };
    let mut posted = Vec::new();
    for b in cpus::online() {
        let cpu = CpuId(b.hot.cpu_id);
        if cpu.0 == 0 {
            continue;
        }
        match cpus::post(cpu, init_ap, 0) {
            Ok(t) if posted.try_reserve(1).is_ok() => posted.push(t),
            Ok(t) => said(cpu, cpus::wait(t, deadline)),
            Err(_) => said(cpu, cpus::run_on(cpu, init_ap, 0, deadline)),
        }
    }
    for t in posted {
        said(t.cpu, cpus::wait(t, deadline));
    }
    // CPU 0's idle context: a thread of its own (the boot flow is the main thread).
    {
        let _g = IrqGuard::new();
        let (idle, cs) = Builder::new()
            .pin(0)
            .priority(0)
            .create(idle_thread, 0)
            .map_err(|(e, _)| e)?;
        // Never queued: the idle context runs when nothing else can.
        tcb(idle.index()).set_state(State::Ready);
        cs.idle.store(idle.index() as u32, Ordering::Relaxed);
    }
    report_switch_samples();
    Ok(())
}

pub(super) fn calibration_yielder(n: u64) -> u64 {
    for _ in 0..n {
        yield_now();
    }
    0
}

/// Ends scheduler start-up as the seed asks: two threads on CPU 0 yield to each other until
/// the switch buffer is full, and the distribution of the recorded switch times (TSC at the
/// `switch` call to TSC in the thread switched to) is printed as one `INFO,sched.switch` line.
pub(super) fn report_switch_samples() {
    record_switches(Some(0));
    let n = (SWITCH_SAMPLES / 2) as u64;
    let a = Builder::new().pin(0).spawn(calibration_yielder, n);
    let b = Builder::new().pin(0).spawn(calibration_yielder, n);
    let deadline = rdtsc() + 30 * crate::smp::time::tsc_hz().max(1);
    for t in [a, b].into_iter().flatten() {
        let _ = join_until(t, deadline);
    }
    record_switches(None);
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

/// The scheduler state of every online CPU whose scheduler runs (the sums and reports below;
/// six copies of this filter until 2026-12-06).
fn each_cpu_sched() -> impl Iterator<Item = &'static CpuSched> {
    cpus::online().filter_map(|b| cpu_sched(b.hot.cpu_id))
}

/// Counters summed over CPUs: (switches, preemptions, steals, wake IPIs).
pub fn counters() -> (u64, u64, u64, u64) {
    let mut c = (0, 0, 0, 0);
    for s in each_cpu_sched() {
        c.0 += s.switches.load(Ordering::Relaxed);
        c.1 += s.preemptions.load(Ordering::Relaxed);
        c.2 += s.steals.load(Ordering::Relaxed);
        c.3 += s.wake_ipis.load(Ordering::Relaxed);
    }
    c
}

/// Preemptions by wake-up IPIs summed over CPUs (`CpuSched::wake_preemptions`; the tick's
/// are [`counters`]' second).
pub fn wake_preemptions() -> u64 {
    each_cpu_sched()
        .map(|s| s.wake_preemptions.load(Ordering::Relaxed))
        .sum()
}

/// One CPU's timer counters: (switches, ticks, slice writes, other writes); see
/// `CpuSched::timer_ticks`.
pub fn timer_counts(cpu: u32) -> Option<(u64, u64, u64, u64)> {
    let s = cpu_sched(cpu)?;
    Some((
        s.switches.load(Ordering::Relaxed),
        s.timer_ticks.load(Ordering::Relaxed),
        s.timer_writes_slice.load(Ordering::Relaxed),
        s.timer_writes_other.load(Ordering::Relaxed),
    ))
}

/// Test support: CPU `cpu`'s wake-up state, for a test's failure report: (current thread,
/// TSC ticks since its switch-in (`ran_since`), mailbox pending, queued threads, wake IPIs
/// sent to it, wake-up preemptions, tick preemptions, ticks, `ran_since` itself (a TSC of
/// CPU `cpu`'s clock, where the second is this CPU's TSC minus it), wake-up deferrals).
pub fn wake_state(cpu: u32) -> Option<[u64; 10]> {
    let s = cpu_sched(cpu)?;
    let ran_since = s.ran_since.load(Ordering::Relaxed);
    Some([
        u64::from(s.current.load(Ordering::Relaxed)),
        rdtsc().saturating_sub(ran_since),
        u64::from(s.mailbox.is_pending()),
        s.nr_ready.load(Ordering::Relaxed) as u64,
        s.wake_ipis.load(Ordering::Relaxed),
        s.wake_preemptions.load(Ordering::Relaxed),
        s.preemptions.load(Ordering::Relaxed),
        s.timer_ticks.load(Ordering::Relaxed),
        ran_since,
        s.wake_deferrals.load(Ordering::Relaxed),
    ])
}

/// Test support: how often CPU `cpu` offered stealable work queued behind its running
/// thread to a halted CPU (`wake::offer_to_a_halted_cpu`).
pub fn offers(cpu: u32) -> u64 {
    cpu_sched(cpu).map_or(0, |s| s.offers.load(Ordering::Relaxed))
}

/// Test support: CPU `cpu`'s wake IPIs sent to it, the preemptions and the deferrals its
/// wake-up rule made (`CpuSched::wake_ipis`, `wake_preemptions`, `wake_deferrals`), for a
/// failing test's report.
pub fn wake_counts(cpu: u32) -> (u64, u64, u64) {
    cpu_sched(cpu).map_or((0, 0, 0), |s| {
        (
            s.wake_ipis.load(Ordering::Relaxed),
            s.wake_preemptions.load(Ordering::Relaxed),
            s.wake_deferrals.load(Ordering::Relaxed),
        )
    })
}

/// Test support: how many halted CPUs CPU `cpu` woke for stealable work
/// (`idle::kick_idle_cpu`).
pub fn idle_kicks(cpu: u32) -> u64 {
    cpu_sched(cpu).map_or(0, |s| s.idle_kicks.load(Ordering::Relaxed))
}

/// Test support: whether thread `tid` is on CPU `cpu`'s sleeper list (taken under its lock).
pub fn listed_as_sleeper(cpu: u32, tid: crate::sched::Tid) -> bool {
    let Some(s) = cpu_sched(cpu) else {
        return false;
    };
    let _g = IrqGuard::new();
    s.lock();
    // SAFETY: lock held.
    let listed = unsafe { s.sleepers() }.contains(&(tid.index() as u32));
    s.unlock();
    listed
}

/// [`timer_counts`] summed over the CPUs whose scheduler runs.
pub fn timer_totals() -> (u64, u64, u64, u64) {
    cpus::online()
        .filter_map(|b| timer_counts(b.hot.cpu_id))
        .fold((0, 0, 0, 0), |a, c| {
            (a.0 + c.0, a.1 + c.1, a.2 + c.2, a.3 + c.3)
        })
}

/// Parked threads left for through their frame and resumed by a switch, summed over CPUs
/// (`CpuSched::parked_exits`, `parked_resumes`).
pub fn parked_counts() -> (u64, u64) {
    each_cpu_sched().fold((0, 0), |(e, r), s| {
        (
            e + s.parked_exits.load(Ordering::Relaxed),
            r + s.parked_resumes.load(Ordering::Relaxed),
        )
    })
}

/// CPUs whose scheduler runs.
pub fn cpus_running() -> u32 {
    each_cpu_sched().count() as u32
}

pub(super) static SAMPLES: [AtomicU64; SWITCH_SAMPLES] =
    [const { AtomicU64::new(0) }; SWITCH_SAMPLES];

pub(super) static SAMPLE_N: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
pub(super) fn record_switch(dt: u64) {
    let n = SAMPLE_N.fetch_add(1, Ordering::Relaxed) as usize;
    if let Some(s) = SAMPLES.get(n) {
        s.store(dt, Ordering::Relaxed);
    }
}

/// Starts recording the switch times of CPU `cpu` (`None`: stops), TSC at the switch call
/// to TSC in the next thread, both serialised (`rdtsc_precise`, the timing pair the bench
/// subtracts), into the static `SWITCH_SAMPLES` buffer, from empty. Only that CPU's: until
/// 2026-12-05 every CPU's switches went in (another CPU's switch in the middle of a
/// benchmark's samples), and the reads were unfenced.
pub fn record_switches(cpu: Option<u32>) {
    if cpu.is_some() {
        SAMPLE_N.store(0, Ordering::Relaxed);
    }
    for s in each_cpu_sched() {
        if Some(s.cpu) == cpu {
            s.slow.fetch_or(SLOW_RECORD, Ordering::Release);
        } else {
            s.slow.fetch_and(!SLOW_RECORD, Ordering::Release);
        }
    }
}

/// The recorded switch samples.
pub fn switch_samples() -> Vec<u64> {
    let n = (SAMPLE_N.load(Ordering::Acquire) as usize).min(SWITCH_SAMPLES);
    SAMPLES[..n]
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect()
}

/// Prints the scheduler state of every CPU and every live thread (debugging: the NMI handler
/// calls it for an NMI that is not a panic stop, e.g. `nmi` in the QEMU monitor). Reads
/// without locks: a snapshot that may be torn, never blocks.
#[inline(never)]
pub fn dump() {
    let now = rdtsc();
    for s in each_cpu_sched() {
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
            at.wrapping_sub(now) as i64,
            joiner_of(t.joiner.load(Ordering::Relaxed)),
            t.switches.load(Ordering::Relaxed)
        );
    }
}

/// The thread running on this CPU, found once under an interrupt guard (its CPU's
/// scheduler, table index and control block), for the IPC fastpath's chain of steps: one
/// look-up instead of one per step. Not an idle context.
#[derive(Clone, Copy)]
pub struct Here<'g> {
    cs: &'static CpuSched,
    i: usize,
    t: &'static Tcb,
    _g: PhantomData<&'g IrqGuard>,
}

/// A thread claimed for a direct switch ([`Here::claim`]): `Running`, so no waker takes it,
/// and this CPU's lock held; the claimer must switch to it ([`Here::handoff`],
/// [`Here::handoff_parked`]) or give it back ([`Here::release`]) before its guard ends,
/// touching no other CPU lock meanwhile.
pub struct Claimed<'g> {
    i: usize,
    t: &'static Tcb,
    _g: PhantomData<&'g IrqGuard>,
}

impl<'g> Here<'g> {
    /// The running thread (`None` before the scheduler runs here, or from an idle context).
    #[inline(always)]
    pub fn of(_g: &'g IrqGuard) -> Option<Here<'g>> {
        let cs = this_sched()?;
        let i = cs.current.load(Ordering::Relaxed) as usize;
        if i == cs.idle.load(Ordering::Relaxed) as usize {
            return None;
        }
        Some(Here {
            cs,
            i,
            t: TCBS.get(i)?,
            _g: PhantomData,
        })
    }

    /// Its table index.
    #[inline(always)]
    pub fn index(&self) -> usize {
        self.i
    }

    /// Its id.
    #[inline(always)]
    pub fn tid(&self) -> Tid {
        Tid::new(self.i, self.t.generation.load(Ordering::Relaxed))
    }

    /// The layer above's id of it ([`current_uid`]).
    #[inline(always)]
    pub fn uid(&self) -> u64 {
        self.cs.current_uid.load(Ordering::Relaxed)
    }

    /// Claims thread `tid` for a direct switch (IPC's fastpath): `Some` if it is a blocked
    /// table thread that last ran on this CPU (so its registers are saved and its affinity
    /// allows this CPU); it is then `Running` (one CAS: no waker can take it any more) and
    /// **this CPU's lock is held** (the switch needs it: [`Here::handoff`],
    /// [`Here::handoff_parked`] and [`Here::release`] end it). `None`: nothing changed, the
    /// lock is not held.
    ///
    /// The lock is taken before the thread's CPU is read, not after the CAS, because it is
    /// what keeps that read true until the CAS: a thread blocked here can leave only once it
    /// is runnable again, and it can then reach another CPU only through this CPU's run
    /// queue (queued by the full-mailbox fallback of a wake-up, then stolen), both under this
    /// lock. Read without it, the thread could be woken, queued, stolen and blocked again
    /// elsewhere between the read and the CAS, and the CAS would take a thread whose
    /// registers that CPU may still be saving. With it, the CAS fails (the thread is `Ready`,
    /// waiting in the mailbox or for the lock). Test `sched.claim_window_closed_by_the_cpu_lock`
    /// (debug kernels: `inject::hold_claim` holds the window open). The same lock keeps the
    /// generation read true: an ended thread's slot gets its new generation under the lock
    /// of the CPU it last ran on (`thread::free_slot`), so it cannot be reused, and its
    /// newcomer claimed, inside the window (`sched.claim_of_a_reused_slot_fails`).
    #[inline(always)]
    pub fn claim(&self, tid: Tid) -> Option<Claimed<'g>> {
        let t = TCBS.get(tid.index())?;
        self.cs.lock();
        if t.generation.load(Ordering::Acquire) == tid.generation()
            && t.cpu.load(Ordering::Acquire) == self.cs.cpu
            && {
                #[cfg(debug_assertions)]
                super::inject::hold_claim(tid.index(), self.cs.cpu);
                t.cas_state(State::Blocked, State::Running)
            }
        {
            return Some(Claimed {
                i: tid.index(),
                t,
                _g: PhantomData,
            });
        }
        self.cs.unlock();
        None
    }

    /// Gives back a thread claimed with [`Here::claim`] that the claimer finds, once it is
    /// its own, waiting for something else than what it came to deliver (it timed out and
    /// began another wait): runnable again, as a [`wake`] would leave it (its wait re-checks
    /// its condition: a spurious wake-up). Ends the claim's hold of this CPU's lock first
    /// (the wake-up may take it). Cold.
    #[cold]
    pub fn release(&self, target: Claimed<'g>) {
        self.cs.unlock();
        target.t.set_state(State::Ready);
        let on = cpu_sched(target.t.cpu.load(Ordering::Relaxed)).unwrap_or(self.cs);
        post_wake(on, target.i);
    }

    /// Direct switch (IPC's fastpath) to `target`: blocks the calling thread (as
    /// [`block_until`]: until it is woken or TSC `deadline` passes) and runs `target` next
    /// on this CPU, with no run-queue pass and no scheduling decision. The wake-up rule is
    /// `block_unless`'s: `still_wait` runs after the caller is marked blocked; if it says
    /// the wait is already over, the caller stays runnable (queued here) and `target` still
    /// runs first. FPU: the lazy/eager logic of a normal switch (`fpu::switch_out`);
    /// nothing for threads that did not touch the FPU. Returns once the caller runs again.
    #[inline(always)]
    pub fn handoff(self, target: Claimed<'g>, deadline: u64, still_wait: impl FnOnce() -> bool) {
        let (cs, me, next) = (self.cs, self.t, target.t);
        block_for_handoff(cs, self.i, me, deadline, still_wait);
        switch_direct::<true>(cs, me, next, self.i, target.i, deadline != u64::MAX);
        // SAFETY: as in `switch_locked`: interrupts off (the guard `Here` borrows), this
        // CPU's lock held, `me` running, `next` switched out on this CPU (Blocked until
        // `claim` claimed it), its stack mapped; `finish_switch` in `next` releases the lock.
        unsafe { exo_arch::context::switch(me.ctx_ptr(), *next.ctx_ptr()) };
        finish_switch();
    }

    /// [`Here::handoff`] from a thread inside an IPC system call, whose [`IpcFrame`] is at
    /// the top of its kernel stack (it came in through the IPC entry): the caller is
    /// **parked at its system-call boundary** instead of switched out in the middle of the
    /// kernel. Nothing of it is kept but its frame; its saved context becomes a
    /// continuation that calls `resume(frame)` (which finishes the operation and fills the
    /// frame) and leaves for ring 3 through the frame. A thread that later claims it may
    /// instead write its results into the frame itself ([`Claimed::parked_frame`]) and
    /// leave through it with `exit`: the seL4 way, no kernel stack to unwind. The
    /// continuation runs whenever the scheduler switches to a parked thread (woken by the
    /// slow path, a timeout, a kill).
    ///
    /// `exit`: `target` is parked too and its frame holds its results (written through
    /// [`Claimed::parked_frame`]): the CPU leaves for ring 3 as `target`, through its frame,
    /// with the eight payload registers loaded from the caller's own frame (the message it
    /// sends, `exo_arch::syscall::park_and_exit`), and this CPU's lock is released once off
    /// the caller's stack. Else `target`'s saved context is resumed (its own
    /// `finish_switch` releases the lock). Never returns: the caller's kernel frames are
    /// abandoned, its guard with them (interrupts stay off until ring 3).
    #[inline(always)]
    pub fn handoff_parked(
        self,
        target: Claimed<'g>,
        deadline: u64,
        still_wait: impl FnOnce() -> bool,
        resume: fn(&mut IpcFrame),
        exit: bool,
    ) -> ! {
        let (cs, me, next, me_i, next_i) = (self.cs, self.t, target.t, self.i, target.i);
        let frame = me.stack_top.load(Ordering::Relaxed) - IPC_FRAME_BYTES;
        debug_assert!(frame.is_multiple_of(16) && me.pid.load(Ordering::Relaxed) != 0);
        block_for_handoff(cs, me_i, me, deadline, still_wait);
        me.parked.store(true, Ordering::Relaxed);
        let entry = parked_entry as *const () as u64;
        let resume = resume as *const () as u64;
        if exit {
            // Two parked threads, both inside the IPC entry: neither holds a counted lock
            // (the CPU's word is 0 and stays so for `next`), so the words are neither swapped
            // nor stored on this path (`switch_direct::<false>`; a store of the caller's cost
            // `ipc.rtt.64` 713 -> 717, icount). The caller's word thus keeps what an earlier
            // switch-out stored, which may be stale: a user thread switched out inside `mmap`
            // with its address space's tables and its process's space slot held (counted since
            // 2026-12-06) stored 2 there.
            // So a parked thread's word is never loaded: its resumption by a switch
            // (`parked_entry`) sets its CPU's count to 0, what a parked thread holds. Until
            // 2026-12-06 the switch loaded the stale 2 and the thread ran on counting a lock
            // it did not hold (a debug kernel stopped on this assertion, which also required
            // both words 0, within seconds of the fuzzer; test
            // `user.ipc.parked_thread_resumes_counting_no_lock`).
            debug_assert!(exo_percpu::held_locks() == 0);
            switch_direct::<false>(cs, me, next, me_i, next_i, deadline != u64::MAX);
            next.parked.store(false, Ordering::Relaxed);
            bump(&cs.parked_exits);
            let to = next.stack_top.load(Ordering::Relaxed) - IPC_FRAME_BYTES;
            // SAFETY: interrupts are off (the guard `Here` borrows, never dropped: this
            // function does not return) and this CPU's lock is held; `frame` is the caller's
            // IPC frame at its stack top (the caller's contract), 16-aligned, and nothing
            // below it is used again; `me.ctx` is written under the lock the exit releases.
            // `next` was claimed on this CPU and is parked: its IPC frame is at its stack
            // top, and `switch_direct` made it current here (kernel stack top, TSS.RSP0,
            // address space).
            unsafe {
                exo_arch::syscall::park_and_exit(
                    me.ctx_ptr(),
                    frame,
                    entry,
                    resume,
                    to as _,
                    &cs.lock,
                )
            }
        } else {
            switch_direct::<true>(cs, me, next, me_i, next_i, deadline != u64::MAX);
            // SAFETY: as above for the caller; `next` as in `Here::handoff` (its saved context, on
            // this CPU, resumed once; its `finish_switch` releases the lock).
            unsafe {
                exo_arch::syscall::park_and_enter(
                    me.ctx_ptr(),
                    frame,
                    entry,
                    resume,
                    *next.ctx_ptr(),
                )
            }
        }
    }
}

impl Claimed<'_> {
    /// The CPU the claimed thread last ran on (test support: this CPU, for a claim).
    #[cfg(debug_assertions)]
    pub fn last_cpu(&self) -> u32 {
        self.t.cpu.load(Ordering::Relaxed)
    }

    /// Its IPC frame if it is parked at its system-call boundary ([`Here::handoff_parked`]):
    /// the claimer may write the results of its operation there and leave through it
    /// (`handoff_parked`'s `exit`). The borrow lives no longer than the claim.
    #[inline(always)]
    pub fn parked_frame(&mut self) -> Option<&mut IpcFrame> {
        if !self.t.parked.load(Ordering::Relaxed) {
            return None;
        }
        let frame = self.t.stack_top.load(Ordering::Relaxed) - IPC_FRAME_BYTES;
        // SAFETY: a parked thread keeps nothing but the IPC frame at its stack top,
        // untouched until it runs again; it is claimed (Blocked -> Running on this CPU,
        // under the claimer's guard), so nobody else runs it or writes its frame while the
        // borrow of the claim lives.
        Some(unsafe { &mut *(frame as *mut IpcFrame) })
    }
}

/// Where a parked thread resumes when switched to: the switch's end, then `resume(frame)`
/// with interrupts on, then ring 3 through the frame.
extern "sysv64" fn parked_entry(resume: u64) -> ! {
    finish_switch();
    // It parked holding no counted lock; the switch loaded its word, which the exit path of
    // `handoff_parked` may have left stale: the count is 0 (interrupts are still off).
    exo_percpu::swap_held_locks(0);
    let cs = this_sched().expect("a parked thread resumes on a running CPU");
    let me = tcb(cs.current.load(Ordering::Relaxed) as usize);
    me.parked.store(false, Ordering::Relaxed);
    bump(&cs.parked_resumes);
    let frame = me.stack_top.load(Ordering::Relaxed) - IPC_FRAME_BYTES;
    exo_arch::cpu::sti();
    // SAFETY: `handoff_parked` stored a `fn(&mut IpcFrame)` as this continuation's argument.
    let resume = unsafe { core::mem::transmute::<usize, fn(&mut IpcFrame)>(resume as usize) };
    // SAFETY: the thread's own IPC frame at its stack top, which nothing else touches while
    // it runs.
    resume(unsafe { &mut *(frame as *mut IpcFrame) });
    exo_arch::cpu::cli();
    // SAFETY: interrupts off; the frame is this thread's at its stack top (its kernel stack
    // top and TSS.RSP0 were set when it was switched in); nothing below is used again.
    unsafe { exo_arch::syscall::ipc_exit(frame as *mut IpcFrame) }
}

/// The caller's side of a direct switch (this CPU's lock held): blocked until woken or TSC
/// `deadline`, or still runnable (queued here) if `still_wait` says the wait is over.
#[inline(always)]
fn block_for_handoff(
    cs: &CpuSched,
    me_i: usize,
    me: &Tcb,
    deadline: u64,
    still_wait: impl FnOnce() -> bool,
) {
    me.wake_at.store(deadline, Ordering::Relaxed);
    // `target` runs next without being queued: counted as busy for the watcher rule (a
    // constant `u64::MAX` deadline, the fastpath's usual copy, folds this away).
    if deadline != u64::MAX {
        cs.add_sleeper(me_i as u32, deadline, true);
    }
    me.set_state(State::Blocked);
    core::sync::atomic::fence(Ordering::SeqCst);
    if !still_wait() {
        // Already woken (or about to be): runnable here, after `target`.
        let _ = me.cas_state(State::Blocked, State::Ready);
        me.set_state(State::Ready);
        // SAFETY: lock held.
        if !unsafe { cs.rq() }.contains(ThreadRef(me_i as u32)) {
            cs.enqueue_locked(me_i);
        }
    }
}

/// What every switch does for the thread coming in, shared by [`switch_locked`] and
/// [`switch_direct`]: its address space (a kernel thread runs on whatever is loaded), the
/// held-lock word, `current_uid`, the data-segment selectors when either thread is a user
/// thread ([`switch_selectors`]), and for a user thread (pid != 0) the per-CPU pid, kernel
/// stack top and TSS.RSP0, where entries from ring 3 land and getpid reads. Kernel threads
/// never run ring 3 code: their switches skip the last part (the slots keep stale values
/// nobody reads; `enter_user` and `set_current_ids` set them for a thread on its way).
/// `IN_KERNEL` as for [`switch_direct`] (false: the held-lock word is left alone, and the
/// threads' words are not written: see `Here::handoff_parked`).
#[inline(always)]
fn load_context<const IN_KERNEL: bool>(cs: &CpuSched, prev: &Tcb, next: &Tcb) {
    let space = next.space.load(Ordering::Relaxed);
    if space != 0 {
        // The space outlives its threads (`Builder::space`).
        let s = super::thread::space_of(space);
        if exo_arch::tlb::current_root() != s.root() {
            s.activate(cs.cpu);
        }
    }
    if IN_KERNEL {
        prev.held.store(
            exo_percpu::swap_held_locks(u64::from(next.held.load(Ordering::Relaxed))) as u32,
            Ordering::Relaxed,
        );
    }
    cs.current_uid
        .store(next.uid.load(Ordering::Relaxed), Ordering::Relaxed);
    let pid = next.pid.load(Ordering::Relaxed);
    if pid != 0 {
        let top = next.stack_top.load(Ordering::Relaxed);
        exo_percpu::set_pid(pid);
        exo_percpu::set_kstack_top(top);
        set_rsp0(cs, top);
        switch_selectors(prev, next);
    } else if prev.pid.load(Ordering::Relaxed) != 0 {
        switch_selectors(prev, next);
    }
}

/// The data-segment selectors DS, ES, FS and GS at a switch from `prev` to `next`, one of
/// them a user thread (`exo_arch::segs`): ring 3 may load its own, which no entry or exit
/// changes, so without this the next thread on the CPU saw them (a channel between
/// processes; until 2026-12-06, `user.segment_selectors_are_per_thread`). Linux keeps them
/// per thread too. Kept in `Tcb::segs` while a thread is switched out, 0 while it runs.
///
/// The common case costs a read of the four registers and of `next.segs` (all 0: nothing
/// to do). Otherwise ([`switch_selectors_slow`]) `prev`'s are saved and `next`'s loaded.
/// Kernel threads need nothing: they never load any, and every switch to one from a user
/// thread loads its (null) ones, so a switch between two kernel threads is skipped (the
/// caller's test of the two pids). Icount on 2026-12-06: `ctx.switch` 179 -> 182 (the
/// pid test), `ctx.switch.as` 299 -> 309 and `ipc.rtt.64` 713 -> 735 (the check, once per
/// switch); called at the end of the user-thread branch, one instruction cheaper than at
/// its start (the compiler's block layout).
#[inline(always)]
fn switch_selectors(prev: &Tcb, next: &Tcb) {
    let live = exo_arch::segs::live_or();
    if live | next.segs.load(Ordering::Relaxed) != 0 {
        switch_selectors_slow(prev, next);
    }
}

/// [`switch_selectors`] when `prev` runs with selectors of its own or `next` has saved ones.
#[cold]
#[inline(never)]
fn switch_selectors_slow(prev: &Tcb, next: &Tcb) {
    let live = exo_arch::segs::live();
    prev.segs.store(live, Ordering::Relaxed);
    let want = next.segs.load(Ordering::Relaxed);
    next.segs.store(0, Ordering::Relaxed);
    if want != live {
        exo_arch::segs::load(want);
    }
}

/// The switch of [`Here::handoff`]: [`switch_locked`] minus what a direct switch between two
/// threads of this CPU does not need. Kept: the state and `current`/`prev` words, the
/// CPU's switch counter, the lazy/eager FPU hook, the address-space switch, the held-lock
/// word, `current_uid`, and for a user thread the per-CPU pid, kernel stack top and
/// TSS.RSP0. Skipped: the next thread's `cpu` (it is this one: `Here::claim` checked it
/// under this lock), its switch counter, the migration and the switch-time sample (`after`
/// is 0: a handoff never migrates, exits or is timed), and the timer: `target` runs on the rest
/// of the caller's slice (seL4's donation) unless the caller blocked with a deadline
/// (`rearm`), which the timer must cover. Everything but the switch itself, which the
/// caller makes (a context switch, or a parked thread's exit). `IN_KERNEL`: `next` resumes
/// in the kernel (its `finish_switch` runs), so the held-lock word is swapped and the
/// `after` word cleared; false for the exit between two parked threads, which hold no
/// sleeping lock, to ring 3, where no `finish_switch` reads the word.
#[inline(always)]
fn switch_direct<const IN_KERNEL: bool>(
    cs: &CpuSched,
    prev: &Tcb,
    next: &Tcb,
    prev_i: usize,
    next_i: usize,
    rearm: bool,
) {
    debug_assert!(
        exo_percpu::preemptible(),
        "switch inside a preemption guard"
    );
    // The rest of the caller's slice: `next` runs from the caller's start. Until 2026-12-05
    // it got a fresh slice (`started` = now) at every direct switch, so two threads
    // ping-ponging through the fastpath never had an expired slice at a tick and kept
    // their CPU from every other thread there (`ipc.fastpath_ping_pong_leaves_its_cpu_to_other_threads`).
    let started = prev.started.load(Ordering::Relaxed);
    next.started.store(started, Ordering::Relaxed);
    let now = rdtsc();
    cs.ran_since.store(now, Ordering::Relaxed);
    cs.current.store(next_i as u32, Ordering::Relaxed);
    if IN_KERNEL {
        // Read only by `finish_switch`, which an exit to ring 3 does not run.
        cs.prev.store(prev_i as u32, Ordering::Relaxed);
    }
    bump(&cs.switches);
    crate::sched::fpu::switch_out(&cs.fpu, cs.cpu, prev_i, prev, next_i, next);
    load_context::<IN_KERNEL>(cs, prev, next);
    if rearm {
        arm_timer_from(cs, now, started, true);
    }
    if IN_KERNEL {
        // Nothing to finish: the caller blocked (it neither exits nor migrates), and a
        // direct switch is not timed.
        cs.after.store(0, Ordering::Relaxed);
    }
}

/// Whether `schedule` puts the runnable thread `t` it switches away from back on `cs`'s run
/// queue (`t` may run anywhere, or only here), where a preemption then offers `cs`'s
/// stealable work to a halted CPU; `tick` relies on that offer (`wake::tick`).
#[inline(always)]
pub(super) fn put_back_here(cs: &CpuSched, t: &Tcb) -> bool {
    t.any_cpu() || t.home.load(Ordering::Relaxed) == cs.cpu
}
