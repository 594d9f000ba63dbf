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
//!   the doorbell says so. The CPU drains its mailbox into its run queue when it schedules,
//!   at its ticks, and in the wake IPI's handler (`wake_ipi`) when a thread runs there.
//! * **Preemption**: a one-shot local APIC timer per CPU (TSC-deadline mode when CPUID offers
//!   it) fires at the end of the running thread's slice or at the first sleeper's deadline;
//!   the tick preempts only when the interrupted code is preemptible (`exo_percpu::preemptible`:
//!   preempt count and allocator leaf byte both zero). A wake-up preempts too, by the same
//!   rule and through the same path: the wake IPI (or a tick, if it drains the mailbox first)
//!   preempts a thread that has run at least a quarter slice since it was switched in
//!   (`WAKE_GRANULARITY_SHIFT`: bounded wake-up latency, and a CPU-bound thread keeps a
//!   quarter slice per wake-up against threads that ping-pong through it); a thread that
//!   has run less (or runs non-preemptible code) keeps the CPU until it has: the wake-up is
//!   deferred (the woken thread is marked until it runs; the tick and the IPI look at the
//!   thread they would run next, a tick armed for that moment). Counted apart
//!   (`wake_preemptions`, `wake_deferrals`).
//!   Under `-icount` the timer is not used (QEMU limitation, see boot.rs): no slice-end
//!   preemption, and a wake-up preempts only a thread past its floor in preemptible code.
//!   One that comes within the running thread's first quarter slice, or while it runs
//!   non-preemptible code, is deferred to a tick that never comes: the woken thread runs
//!   once the running one blocks or yields, a later wake-up IPI to that CPU finds it past
//!   its floor, or (if it may run elsewhere) a halted CPU it was offered to steals it.
//!   (Until 2026-12-06 this said wake-ups still preempt, unqualified: found by review.)
//!   Sleepers are polled: an idle CPU polls for its own, and looks at busy CPUs' (at most
//!   once a slice, every step while one is due within `WATCH_SLICES`), ringing a CPU whose
//!   sleeper is due (its wake IPI wakes it).
//! * **Idle and stealing**: each CPU has an idle context (an AP's boot context; the BSP gets
//!   an idle thread) that halts with `sti; hlt` and, when woken, takes work from its mailbox
//!   or steals a runnable thread it may run from another CPU (`try_lock` only). Shared
//!   bitmaps over the CPUs that exist ([`exo_sched::AtomicMask`], sized at start-up) keep
//!   this bounded at any CPU count: *halted* CPUs and CPUs with *stealable* threads (and
//!   CPUs with *sleeping* threads, for the polling above). A thief starts its search at a
//!   random CPU and tries at most [`STEAL_TRIES`] victims; a busy CPU with threads waiting
//!   claims the next halted CPU after itself (one atomic bit clear) and wakes it (at spawn,
//!   at its ticks, when a wake-up or a preemption leaves stealable work behind its running
//!   thread, and each thief while its victim still has work); with a timer, idle CPUs also
//!   wake every 8 slices to look for work themselves. No path scans
//!   one entry per CPU: at 1024 CPUs a query reads 16 words.
//! * **Context switch**: `exo_arch::context::switch`, inline assembly that trades stack
//!   pointers (rbp and rbx pushed by hand; the compiler keeps whatever else is live, so
//!   nothing is saved twice); `SWITCH_SAMPLES` TSC deltas are kept for the report.
//!   Before it, an incoming user thread's kernel stack top goes to TSS.RSP0 and the GS
//!   block (the entries from ring 3 use them) and its pid to the GS block's pid slot.
//! * **Ring 3**: [`enter_user`] takes a thread to user mode for good; it comes back through
//!   system calls and traps on its own kernel stack and is scheduled like any thread.
//!
//! This module is the kernel's third audited `unsafe` module: the run queue and the saved
//! stack pointers live in `UnsafeCell`s guarded by the per-CPU lock, and it calls the switch.
//!
//! Files: `thread` (table, ids, stacks, spawn/exit/join/kill), `cpu` (per-CPU state,
//! `schedule` and the switch, start-up), `wake` (block, wake, sleep, tick, timer), `idle`
//! (halted and stealable bitmaps, stealing), `fpu` (lazy/eager FPU state), `park` (the
//! kernel futex and sleeping locks), `inject` (debug builds: the reap-race holds). The four
//! scheduling files share their internals (`pub(super)`); the rest of the kernel sees what
//! this module re-exports.
//!
//! Calls down only: `smp` (CPU table, mailboxes, time, APIC), `mm` (stacks, allocation).
//! The idle loop of `smp` reaches the scheduler through the hooks `init` installs.

pub mod fpu;
pub mod park;

mod cpu;
mod held;
mod hold;
mod idle;
#[cfg(debug_assertions)]
mod inject;
mod thread;
mod wake;

/// The body of a kernel test forced by `inject` (debug kernels): `$run()` there, a skip
/// (`$skip`: the harness's prefix, which the test files name) in release kernels, which
/// have no fault injection.
macro_rules! injected_test {
    ($run:path, $skip:expr) => {{
        #[cfg(debug_assertions)]
        return $run();
        #[cfg(not(debug_assertions))]
        Err(alloc::format!(
            "{}needs a debug kernel (the fault injection of sched::inject)",
            $skip
        ))
    }};
}

mod bench;
mod tests;
mod tests_claim;
mod tests_held;
mod tests_locks;
mod tests_migrate;
mod tests_notimer;
mod tests_reap;
mod tests_tick;
mod tests_wake;

pub use cpu::{
    Claimed, Here, counters, cpu_sched, cpus_running, current_queue, delay_scheduler_start, dump,
    init, listed_as_sleeper, parked_counts, record_switches, switch_samples, this_sched,
    timer_counts, timer_totals, wake_preemptions, wake_state,
};
pub use exo_sched::CpuSet;
pub use held::Held;
pub use hold::HoldPoint;
pub use thread::{
    Builder, KILLED, STACK_POOL_CAP, Tid, age_free_slots, cached_stack_frames, cached_stacks,
    current_stack, current_uid, enter_user, exit, fpu_area, fpu_saved_on, free_cached_stacks,
    held_word, is_blocked, join, join_unless, join_until, kill_current_if_possible, kills,
    live_threads, panic_in_exit_of_current, park_node, pinned_to, set_affinity, set_current_ids,
    set_current_space, set_exit_hook, set_fpu_area, spawn, stack_cache_room, tid_of,
};
pub use wake::{
    block_unless, block_until, emulate_timer_off, force_mailbox_full, hold_tick_preemption,
    hold_wake_preemption, kick, set_slice_tsc, set_wake_floor_tsc, sleep_until, sleep_us,
    slice_tsc, tick, timer_mode, wake, wake_ipi, yield_now,
};

use core::sync::atomic::Ordering;
use exo_percpu::IrqGuard;

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

pub(super) const MAILBOX_SLOTS: usize = 256;

pub(super) const NO_THREAD: u32 = u32::MAX;

/// Thread indices from here on name CPUs' idle contexts (`IDLE_BASE + cpu`), whose control
/// blocks live in each CPU's scheduler state, not in the table: the table's
/// [`MAX_THREADS`] slots stay free for threads at any CPU count.
pub(super) const IDLE_BASE: usize = MAX_THREADS;

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
    /// The calling thread cannot enter ring 3 (see `enter_user`).
    CannotEnterUser,
    /// The caller's abort condition held first (`join_unless`).
    Interrupted,
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
            SchedError::Interrupted => "wait interrupted",
            SchedError::CannotEnterUser => {
                "this thread cannot enter ring 3 (no own kernel stack, idle, holds a lock, or a non-user address)"
            }
        })
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

/// The running thread's slot in the thread table (`None` before the scheduler runs on
/// this CPU); stays true while the guard lives.
#[inline(always)]
pub fn current_slot(_g: &IrqGuard) -> Option<usize> {
    let cs = this_sched()?;
    Some(cs.current.load(Ordering::Relaxed) as usize)
}

/// The CPU the caller runs on (a hint once it returns, unless pinned).
pub fn this_cpu() -> u32 {
    exo_percpu::cpu_id_hint().0
}
