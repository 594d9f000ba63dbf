//! Blocking, waking, sleeping and the timer: `Blocked -> Ready` by one CAS and a post to the
//! thread's CPU mailbox (with the full-mailbox fallback), wake IPIs, `block_unless` /
//! `block_until` / `sleep_until`, the wake IPI's preemption (`wake_ipi`), the tick
//! (preemption at the slice end, sleepers due) and the one-shot or TSC-deadline timer
//! programming.
#![allow(
    unsafe_code,
    reason = "run queue and sleeper list under the CPU's lock"
)]

use super::cpu::*;
use super::idle::*;
use super::thread::*;
use crate::smp::cpus::{VEC_TIMER, VEC_WAKE};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_arch::tsc::rdtsc;
use exo_percpu::IrqGuard;
use exo_sched::ThreadRef;

pub(super) static TIMER: AtomicU8 = AtomicU8::new(TIMER_OFF);

pub(super) const TIMER_OFF: u8 = 0;

pub(super) const TIMER_ONESHOT: u8 = 1;

pub(super) const TIMER_DEADLINE: u8 = 2;

pub(super) static SLICE_TSC: AtomicU64 = AtomicU64::new(0);

/// `exo_sched::hot_limit` of `SLICE_TSC` (at least 1), set with it: the run-burst average
/// below which a thread is hot, compared as stored at every switch (`cpu::queue_for`).
pub(super) static HOT_LIMIT: AtomicU64 = AtomicU64::new(0);

/// An idle CPU with a timer wakes every this many slices to look for work to steal.
pub(super) const IDLE_BALANCE_SLICES: u64 = 8;

/// Posts thread `i` (already `Ready`, `cpu` set) to `target` and rings it if needed. The
/// caller must not hold any run-queue lock.
pub(super) fn post_wake(target: &CpuSched, i: usize) {
    // Interrupts off: the direct path below takes a run-queue lock (maybe this CPU's), which
    // an interrupt on this CPU (the tick) also takes.
    let _g = IrqGuard::new();
    post_wake_irqs_off(target, i);
}

/// [`post_wake`] with interrupts already off (`wake_index` holds them off from its CAS on).
///
/// A thread woken onto this very CPU is queued directly under this CPU's lock (the
/// full-mailbox path below), as a spawn here is (`Builder::spawn_then`), not posted to its
/// own mailbox: such a post rang the doorbell with no IPI (a CPU does not interrupt
/// itself), and the doorbell stayed set until this CPU next drained its mailbox (its next
/// schedule or tick). Every post from another CPU meanwhile found it set
/// (`Notify::AlreadyPending`) and sent no IPI, so no wake-up preemption (`wake_ipi`) ran for
/// them: until 2026-12-05 a thread woken onto a CPU whose running thread had just woken a
/// thread of its own CPU waited for that thread's slice end, and under icount (no timer)
/// until it blocked (found by review; test `sched.wake_after_a_self_wake_still_preempts`).
/// Not a self-IPI (an APIC write, a VM exit under KVM), nor a post then a drain of our own
/// mailbox: with that drain the same-CPU IPC slow path (`ipc.slowpath.rtt.64`) took 36
/// instructions more per round trip, with the direct enqueue 98 fewer (icount).
#[inline(always)]
fn post_wake_irqs_off(target: &CpuSched, i: usize) {
    let pushed = if FORCE_MAILBOX_FULL.load(Ordering::Relaxed) || is_this_cpu(target) {
        Err(())
    } else {
        target.mailbox.push(ThreadRef(i as u32)).map_err(|_| ())
    };
    match pushed {
        Ok(exo_sched::Notify::SendIpi) => ring_other(target),
        Ok(exo_sched::Notify::AlreadyPending) => {}
        Err(()) => {
            // Mailbox full, or this CPU: enqueue under the target's lock (callers hold no
            // run-queue lock here, our own included), then ring it, or on this CPU offer
            // the thread to a halted CPU.
            // The same rules as `drain_mailbox`: a thread
            // that is still the target's current one (woken between marking itself blocked
            // and switching out) is not queued — its own `schedule` keeps it running, as it
            // is Ready; nor is one already queued, or no longer Ready on that CPU.
            #[cfg(debug_assertions)]
            let held = super::inject::before_fallback_lock(i);
            target.lock();
            let t = tcb(i);
            if target.current.load(Ordering::Relaxed) != i as u32
                && t.state() == State::Ready
                && t.cpu.load(Ordering::Acquire) == target.cpu
                // SAFETY: we hold the target's lock.
                && !unsafe { target.rq() }.contains(ThreadRef(i as u32))
            {
                target.enqueue_locked(i);
                t.mark_woken();
            }
            target.unlock();
            #[cfg(debug_assertions)]
            super::inject::fallback_done(held);
            if is_this_cpu(target) {
                offer_to_a_halted_cpu(target);
            } else {
                ring_other(target);
            }
        }
    }
}

/// A thread other CPUs may take was queued on `cs` behind a running thread (a wake-up onto
/// this busy CPU, or one deferred: [`defer_wake`]): a halted CPU is told, which steals it
/// ([`kick_idle_cpu`]; one load when `cs` holds nothing stealable). Until 2026-12-05 only a
/// spawn and the tick did it: with the timer off (icount, the benchmark jobs) a halted CPU
/// never heard of the work, and a thread woken onto a CPU whose running thread did not
/// give it up waited for good beside an idle CPU (found by review;
/// `sched.self_wake_of_a_stealable_thread_is_offered_to_a_halted_cpu`).
#[inline(always)]
pub(super) fn offer_to_a_halted_cpu(cs: &CpuSched) {
    // The stealable count first: for pinned threads (every benchmark's) that one load is
    // all the offer costs (icount: `ipc.slowpath.rtt.64` +18 with the idle check first).
    if cs.nr_stealable.load(Ordering::Relaxed) != 0
        && cs.current.load(Ordering::Relaxed) != cs.idle.load(Ordering::Relaxed)
    {
        bump(&cs.offers);
        kick_idle_cpu(cs);
    }
}

/// Fault injection: every wake-up takes the full-mailbox path (tests).
pub(super) static FORCE_MAILBOX_FULL: AtomicBool = AtomicBool::new(false);

/// Makes every wake-up behave as if the target's mailbox were full (`true`), or normal.
pub fn force_mailbox_full(on: bool) {
    FORCE_MAILBOX_FULL.store(on, Ordering::Relaxed);
}

/// Test switch: the tick preempts no thread at its slice end (`true`), or as usual. The idle
/// context is still preempted when work waits, sleepers are still woken. Lets a test show
/// that something else (a wake-up IPI) gave a thread the CPU.
pub(super) static TICK_PREEMPTION_HELD: AtomicBool = AtomicBool::new(false);

/// Stops the tick from preempting threads at their slice end (`true`), or lets it again
/// (tests: `sched.wake_ipi_preempts_a_spinning_thread`).
pub fn hold_tick_preemption(on: bool) {
    TICK_PREEMPTION_HELD.store(on, Ordering::Relaxed);
}

/// Test switch: the scheduler behaves as without a timer (`TIMER_OFF`, as under icount)
/// where that matters, on a machine whose timer runs: the tick does nothing but re-arm a
/// running thread's slice end (no preemption, no sleeper woken, no kick of a halted CPU, no
/// wake-up rule), an idle CPU arms no timer (no balancing tick: it halts until something
/// rings it) and polls for sleepers instead, a deferred wake-up arms no tick. Lets a test
/// under TCG (the test job's timer is on) show what only the absence of the tick exposes.
/// Checked only where the timer is in use: under icount it costs nothing.
pub(super) static TIMER_OFF_EMULATED: AtomicBool = AtomicBool::new(false);

/// Makes the scheduler act as if it had no timer (`true`; see [`TIMER_OFF_EMULATED`]), or
/// as usual. Turned off, every CPU is kicked: an idle one arms its balancing tick again. A
/// balancing tick an idle CPU armed before it was turned on still comes (at most
/// `IDLE_BALANCE_SLICES` slices later).
pub fn emulate_timer_off(on: bool) {
    TIMER_OFF_EMULATED.store(on, Ordering::SeqCst);
    if on {
        // With a timer the sleeping mask is not kept (`idle::sleeper_deadline_lowered`).
        rebuild_sleeping_mask();
    }
    for c in 0..crate::smp::cpus::capacity() as u32 {
        if let Some(cs) = cpu_sched(c) {
            // Idle CPUs look at busy CPUs' sleepers only without a timer.
            cs.watch_at
                .store(if timer_off() { 0 } else { u64::MAX }, Ordering::Relaxed);
            cs.watching.store(false, Ordering::Relaxed);
        }
        if !on {
            kick(c);
        }
    }
    // `near_from` depends on the timer's absence (`idle::near_from_of`).
    renew_near_from();
}

/// Test support: ends [`emulate_timer_off`]'s emulation without kicking any CPU, so the next
/// tick of a busy CPU is a real one while the CPUs a test saw halted stay halted (with the
/// emulation they armed no timer; each arms its balancing tick again at its next idle step).
/// [`emulate_timer_off`]`(false)` afterwards restores the rest.
pub(super) fn end_timer_off_emulation_quietly() {
    TIMER_OFF_EMULATED.store(false, Ordering::SeqCst);
}

/// Whether the scheduler goes without a timer: none in use (icount), or a test emulates that
/// ([`emulate_timer_off`]).
#[inline(always)]
pub(super) fn timer_off() -> bool {
    TIMER.load(Ordering::Relaxed) == TIMER_OFF || TIMER_OFF_EMULATED.load(Ordering::Relaxed)
}

/// Test switch: wake-ups preempt nobody (`true`), or as usual (`wake_ipi`, and the tick's
/// same rule). Lets a test show that the tick alone preempts a spinning thread.
pub(super) static WAKE_PREEMPTION_HELD: AtomicBool = AtomicBool::new(false);

/// Stops wake-ups from preempting (`true`), or lets them again (tests whose point is the
/// tick's preemption: a thread spawned onto a spinner's CPU is a wake-up there).
pub fn hold_wake_preemption(on: bool) {
    WAKE_PREEMPTION_HELD.store(on, Ordering::Relaxed);
}

/// [`post_wake_irqs_off`] for `wake_index`, out of line: the wake-up's own frame stays small
/// (inlined into it, the registers it saves made `sched.wake.xcore` 11 instructions longer,
/// icount).
#[inline(never)]
fn post_woken(target: &CpuSched, i: usize) {
    post_wake_irqs_off(target, i);
}

/// Sends `target` a wake IPI, unless it is this CPU (nothing to interrupt: it looks at its
/// run queue and mailbox at its next schedule or tick).
pub(super) fn ring(target: &CpuSched) {
    if is_this_cpu(target) {
        return;
    }
    ring_other(target);
}

/// Whether `target` is this CPU (interrupts off, or a hint).
#[inline(always)]
fn is_this_cpu(target: &CpuSched) -> bool {
    target.cpu == exo_percpu::cpu_id_hint().0
}

/// [`ring`] of another CPU.
#[inline(always)]
fn ring_other(target: &CpuSched) {
    target.wake_ipis.fetch_add(1, Ordering::Relaxed);
    let _ = apic::send_ipi(Dest::Id(target.apic_id), Delivery::Fixed(VEC_WAKE));
}

/// Interrupts CPU `cpu` with a wake-up IPI (nothing if it is this CPU or has no scheduler):
/// whatever it runs in ring 3 enters the kernel, whose return path then looks at it again.
pub fn kick(cpu: u32) {
    if let Some(cs) = crate::sched::cpu_sched(cpu) {
        ring(cs);
    }
}

/// The wake-up IPI (`VEC_WAKE`), called by its interrupt after EOI: a thread woken onto this
/// CPU while another one runs gets the CPU now (the running thread past its floor, in
/// preemptible code), or soon (`defer_wake`), not at the running thread's slice end (or,
/// under icount, which has no timer, only when it blocks). Only when the running thread is
/// not the idle context (its loop takes the mailbox when the IPI ends its halt) and the
/// mailbox holds work, the run queue is not empty (a deferred wake-up, or the
/// full-mailbox path, which queues directly: `woken_waits` then looks at the thread itself)
/// or sleepers are listed (without a timer, an idle CPU rings this one when one is due);
/// a `kick` or a job's IPI with none of these does nothing. The rest is `wake_preempt`.
#[inline(always)]
pub fn wake_ipi() {
    let Some(cs) = this_sched() else {
        return;
    };
    if cs.current.load(Ordering::Relaxed) == cs.idle.load(Ordering::Relaxed)
        || !(cs.mailbox.is_pending()
            || cs.nr_ready.load(Ordering::Relaxed) != 0
            || cs.next_wake.load(Ordering::Relaxed) != u64::MAX)
    {
        return;
    }
    wake_preempt(cs, exo_percpu::preemptible());
}

/// [`wake_ipi`] with a thread running and woken threads in the mailbox (or marked waiting):
/// they go to the run queue (as at a tick), and the running thread is preempted through the
/// tick's path (`schedule_irqs_off`: it is put back and the most urgent thread runs, which
/// may be itself) if it has run its floor ([`wake_floor_reached`]) and the interrupted code
/// is `preemptible`; else the wake-up is deferred ([`defer_wake`]).
#[inline(never)]
fn wake_preempt(cs: &CpuSched, preemptible: bool) {
    let now = rdtsc();
    cs.lock();
    cs.drain_mailbox();
    // Sleepers whose deadline passed: without a timer, an idle CPU rings this one for them
    // (`idle::watch_busy_sleepers`), and nothing else looks at them while a thread runs
    // here. Queued and, without a timer, marked as woken (`wake_some_sleepers`): the rule
    // below preempts for them, as no slice end will; one others may take is offered.
    let _ = cs.wake_sleepers(now);
    let waits = woken_waits(cs) && !wake_held();
    let preempt = waits && preemptible && wake_floor_reached(cs, now);
    if !preempt {
        if waits {
            defer_wake(cs, now);
        } else {
            // The woken thread is queued but not the next to run (or the rule is held):
            // if others may take it, a halted CPU is told (the running thread goes on).
            // Until 2026-12-06 nothing was: with the timer off no tick came to kick one, and
            // a woken unpinned thread waited beside a halted CPU for as long as the running
            // thread ran (found by review;
            // `sched.remote_wake_of_a_stealable_thread_is_offered_to_a_halted_cpu`).
            offer_to_a_halted_cpu(cs);
        }
    }
    cs.unlock();
    if preempt {
        bump(&cs.wake_preemptions);
        schedule_irqs_off();
    }
}

/// Woken threads are queued on `cs` but the rule cannot be applied now (lock held): the
/// running thread has not reached its floor ([`wake_floor_reached`]), or the interrupted
/// code is not preemptible. The woken thread stays marked (`Tcb::woken_mark`: the tick
/// applies the rule again while it is the next to run) and a tick is armed at the floor's end,
/// and never sooner than a sixteenth of a slice from now (no storm of ticks while the code
/// stays non-preemptible). Until 2026-12-05 (the day wake-up
/// preemption came) such a wake-up was forgotten: the woken thread waited for the slice end,
/// or with the tick's preemption held (a test) for as long as the running thread ran.
fn defer_wake(cs: &CpuSched, now: u64) {
    bump(&cs.wake_deferrals);
    offer_to_a_halted_cpu(cs);
    let at = deferred_tick(cs, now);
    let mode = TIMER.load(Ordering::Relaxed);
    if mode != TIMER_OFF
        && at < cs.armed.load(Ordering::Relaxed)
        && !TIMER_OFF_EMULATED.load(Ordering::Relaxed)
    {
        bump(&cs.timer_writes_other);
        write_timer(cs, now, at, mode);
    }
}

/// When a deferred wake-up is looked at again ([`defer_wake`]): the running thread's floor's
/// end, and never sooner than a sixteenth of a slice from `now` (lock held).
#[inline(always)]
fn deferred_tick(cs: &CpuSched, now: u64) -> u64 {
    let slice = SLICE_TSC.load(Ordering::Relaxed);
    cs.ran_since
        .load(Ordering::Relaxed)
        .saturating_add(wake_floor())
        .max(now.saturating_add((slice >> 4).max(1)))
}

/// Whether the thread `cs` would run next is one a wake-up queued and that has not run
/// since (`Tcb::woken_mark`, set by the mailbox's drain and the full-mailbox path; lock
/// held). The rule looks at the woken thread itself, not at how it was queued: until
/// 2026-12-05 (the day wake-up preemption came) a per-CPU mark set by the path that queued
/// it was found lost in one stress run (a debug kernel, q35 -smp 2): the thread waited with
/// nothing looking at it again.
fn woken_waits(cs: &CpuSched) -> bool {
    // SAFETY: the caller holds the lock.
    unsafe { cs.rq() }
        .peek_next()
        .is_some_and(|n| tcb(n.index()).woken_waiting())
}

/// Whether the thread running on `cs` has run its floor ([`wake_floor`]) at `now`, since it
/// was switched in (`ran_since`; a direct switch and a pick of the same thread restart it).
/// Always, without a timer: nothing would look at a deferred wake-up again (`defer_wake`
/// arms none), so the floor, a throughput rule, gives way to the woken thread, which would
/// otherwise wait for as long as the running thread runs without passing through its
/// scheduler (until 2026-12-07 it did: under icount, and in the timer-off tests;
/// `sched.wake_before_the_floor_preempts_without_a_timer`).
#[inline(always)]
fn wake_floor_reached(cs: &CpuSched, now: u64) -> bool {
    timer_off() || now.saturating_sub(cs.ran_since.load(Ordering::Relaxed)) >= wake_floor()
}

/// Whether a test holds wake-up preemption off (`hold_wake_preemption`): no wake-up
/// preempts, none is deferred.
#[inline(always)]
fn wake_held() -> bool {
    WAKE_PREEMPTION_HELD.load(Ordering::Relaxed)
}

/// How long a thread runs before a wake-up may preempt it, in TSC ticks: a quarter slice
/// ([`WAKE_GRANULARITY_SHIFT`]), or what a test set (`set_wake_floor_tsc`).
#[inline(always)]
fn wake_floor() -> u64 {
    match WAKE_FLOOR_TSC.load(Ordering::Relaxed) {
        0 => SLICE_TSC.load(Ordering::Relaxed) >> WAKE_GRANULARITY_SHIFT,
        f => f,
    }
}

/// Test switch: the wake-up floor in TSC ticks (0: a quarter slice).
static WAKE_FLOOR_TSC: AtomicU64 = AtomicU64::new(0);

/// Sets the wake-up preemption's floor to `tsc` ticks of running (0: back to a quarter
/// slice). Tests: a floor long enough that a wake-up surely comes before it.
pub fn set_wake_floor_tsc(tsc: u64) {
    WAKE_FLOOR_TSC.store(tsc, Ordering::Relaxed);
}

/// Sets the time slice to `tsc` ticks (at least 1) with the hot limit computed from it, and
/// returns the slice it replaces: `init`, and tests that need a slice longer than what they
/// measure (the floor-end tick of a deferred wake-up, which the slice-end tick would
/// otherwise come before). Switches and ticks read it afresh; a deadline already armed for
/// the old slice stays until then, so every other running CPU is kicked (an idle one
/// re-arms its balancing tick, 8 slices, from the new slice: after a test's 4 s slice it
/// was 32 s ahead; found by review), and this CPU re-arms at its next switch.
pub fn set_slice_tsc(tsc: u64) -> u64 {
    let old = set_slice_tsc_quietly(tsc);
    for c in 0..crate::smp::cpus::capacity() as u32 {
        kick(c);
    }
    old
}

/// [`set_slice_tsc`] without its kicks (test support): halted CPUs stay halted (with
/// [`emulate_timer_off`] on they armed no balancing tick), and deadlines already armed stay
/// until they come. A test that needs halted CPUs under a longer slice sets it so once they
/// halted (the watch window, 64 slices, would keep idle CPUs polling for any sleeper due
/// within it), and restores it with [`set_slice_tsc`].
pub(super) fn set_slice_tsc_quietly(tsc: u64) -> u64 {
    let slice = tsc.max(1);
    HOT_LIMIT.store(exo_sched::hot_limit(slice), Ordering::Relaxed);
    let old = SLICE_TSC.swap(slice, Ordering::Relaxed);
    // The watch window is counted in slices.
    renew_near_from();
    old
}

/// A wake-up preempts the running thread only once it has run `slice >> this` (a quarter
/// of the slice, 250 us at the kernel's 1 ms) since it was switched in: a woken thread
/// waits for nothing past that point, for at most the slice end before it. The floor keeps
/// a CPU-bound thread's share against threads that wake and block in turn (two threads
/// ping-ponging across CPUs, one of them here): each wake-up preemption leaves it at least
/// a quarter slice more, so it keeps at least G / (G + b) of the CPU, b being the woken
/// thread's burst (nearly all of it for IPC-sized bursts), where with no floor it would
/// only run between two wake-ups. The same shift as the hot queue's limit
/// (`exo_sched::HOT_BURST_SHIFT`): a burst cut short by a wake-up is never below the hot
/// limit, so wake-up preemptions alone do not make a CPU-bound thread look hot (and jump
/// ahead of every normal thread).
pub(super) const WAKE_GRANULARITY_SHIFT: u32 = exo_sched::HOT_BURST_SHIFT;

/// Makes thread `tid` runnable if it is blocked; returns whether it was.
pub fn wake(tid: Tid) -> bool {
    let t = tcb(tid.index());
    if t.generation.load(Ordering::Acquire) != tid.generation() {
        return false;
    }
    wake_index(tid.index())
}

/// `Blocked -> Ready` by one CAS, then the post to the thread's CPU, with interrupts off
/// across both (guards nest: some callers have them off already). Between the two the
/// thread is Ready and in no run queue nor mailbox: every other waker's CAS fails, a claim
/// (`Here::claim`) wants it Blocked, and its CPU's sleeper scan drops its entry (it is not
/// Blocked), so only this waker can queue it. Until 2026-12-05 interrupts went off only in
/// `post_wake`: a waker preempted in between (or starved by a more urgent thread on its
/// CPU) held the woken thread out of every run queue, past its `block_until` deadline, for
/// as long as it did not run again (found by review; `sched.wake_window_not_preemptible`).
#[inline(always)]
pub(super) fn wake_index(i: usize) -> bool {
    let t = tcb(i);
    let _g = IrqGuard::new();
    // SeqCst: the waker stores the condition, then reads the state here; the waiter stores
    // `Blocked`, fences, then reads the condition (`block_unless`). A store then a load on
    // each side needs a SeqCst operation on both to be ordered in the language's model (on
    // x86 `lock cmpxchg` is a full barrier either way: the same instruction; found by
    // review).
    if t.state
        .compare_exchange(
            State::Blocked as u8,
            State::Ready as u8,
            Ordering::SeqCst,
            Ordering::Acquire,
        )
        .is_err()
    {
        return false;
    }
    #[cfg(debug_assertions)]
    super::inject::after_wake_cas(i);
    match cpu_sched(t.cpu.load(Ordering::Acquire)) {
        Some(target) => post_woken(target, i),
        None => t.set_state(State::Blocked), // cannot happen: threads only live on running CPUs
    }
    true
}

/// Blocks the calling thread unless `still_wait()` says otherwise; the check runs after the
/// thread is marked blocked, so a [`wake`] issued after the condition changed is never lost.
/// Returns when woken (possibly spuriously: callers re-check their condition).
pub fn block_unless(still_wait: impl FnOnce() -> bool) {
    let mut g = IrqGuard::new();
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
    schedule(&mut g);
}

/// Like [`block_unless`], but also ends at TSC `deadline` (`u64::MAX`: none). Returns true
/// if it returned because the deadline passed.
pub fn block_until(deadline: u64, still_wait: impl FnOnce() -> bool) -> bool {
    if deadline == u64::MAX {
        block_unless(still_wait);
        return false;
    }
    let mut g = IrqGuard::new();
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
    schedule_watching(&mut g);
    rdtsc() >= deadline
}

/// Marks the current thread blocked with a wake-up at `deadline`, on this CPU's sleeper
/// list (interrupts off: the caller holds an `IrqGuard` until it has scheduled, through
/// `schedule_watching`: its switch recruits a watcher for the sleeper if it runs a thread).
pub(super) fn block_as_sleeper(cs: &CpuSched, deadline: u64) -> &'static Tcb {
    let i = cs.current.load(Ordering::Relaxed);
    let me = tcb(i as usize);
    me.wake_at.store(deadline, Ordering::Relaxed);
    cs.lock();
    cs.add_sleeper(i, deadline, false);
    me.set_state(State::Blocked);
    cs.unlock();
    me
}

/// Gives the CPU to another ready thread of this CPU, if any.
pub fn yield_now() {
    let _g = IrqGuard::new();
    schedule_yield_irqs_off();
}

/// Sleeps until the TSC reaches `deadline` (TSC ticks of this CPU's clock).
pub fn sleep_until(deadline: u64) {
    loop {
        if rdtsc() >= deadline {
            return;
        }
        let mut g = IrqGuard::new();
        let Some(cs) = this_sched() else {
            crate::smp::time::Deadline::at_tsc(deadline).spin_until();
            return;
        };
        block_as_sleeper(cs, deadline);
        schedule_watching(&mut g);
    }
}

/// Sleeps for `us` microseconds (to a tick, saturating: until 2026-12-05 the rate was
/// rounded down to whole ticks per microsecond, up to 0.04% short, and a large `us` wrapped).
pub fn sleep_us(us: u64) {
    sleep_until(crate::smp::time::Deadline::after_us(us).tsc());
}

/// The tick: wakes expired sleepers, preempts the running thread at the end of its slice, or
/// by the wake IPI's rule (`wake_ipi`) when the thread it would run next was woken and has
/// not run since (`woken_waits`), if the interrupted code allows it. Called by the timer
/// interrupt after EOI.
#[inline(never)]
pub fn tick() {
    let Some(cs) = this_sched() else {
        return;
    };
    let now = rdtsc();
    // The deadline that brought us here has passed: nothing is armed until this tick (or the
    // switch it makes) programs the next one.
    cs.armed.store(u64::MAX, Ordering::Relaxed);
    bump(&cs.timer_ticks);
    if TIMER_OFF_EMULATED.load(Ordering::Relaxed) {
        return emulated_tick(cs, now);
    }
    cs.lock();
    // Woken threads waiting here (drained now or earlier): the tick applies the wake IPI's
    // rule to them too. The timer's vector outranks the wake IPI's, so when both are pending (a CPU
    // that took neither for a while: a vCPU the host did not run) the tick comes first and
    // drains the mailbox, and the IPI then finds it empty; until the tick took the rule
    // over, such a wake-up waited for the slice end (seen under TCG at -smp 4, about one
    // run in two of `sched.wake_ipi_preempts_a_spinning_thread`).
    cs.drain_mailbox();
    let _ = cs.wake_sleepers(now);
    let cur = cs.current.load(Ordering::Relaxed) as usize;
    let is_idle = cur == cs.idle.load(Ordering::Relaxed) as usize;
    let started = tcb(cur).started.load(Ordering::Relaxed);
    let expired = now.saturating_sub(started) >= SLICE_TSC.load(Ordering::Relaxed);
    // SAFETY: lock held.
    let others = !unsafe { cs.rq() }.is_empty();
    let preemptible = exo_percpu::preemptible();
    let wake_waits = others && !is_idle && !wake_held() && woken_waits(cs);
    let wake_due = wake_waits && wake_floor_reached(cs, now);
    cs.unlock();
    let idle_has_work = is_idle && (others || stealable_elsewhere(cs));
    // The idle context is preempted by the same rule as a thread: it too runs code with
    // interrupts on inside preemption guards (its reclaim of retired page tables: allocator
    // magazines, the shootdown's lock). Until 2026-12-04 its branch skipped the check, and a
    // thread switched in ran inside the idle context's guard: magazines mid-update (a double
    // free at -smp 16) or the shootdown lock held by a context that could not run. A busy
    // idle context reaches its loop's pick soon enough.
    let slice_end = expired && others && !TICK_PREEMPTION_HELD.load(Ordering::Relaxed);
    let preempt = (idle_has_work || slice_end || wake_due) && preemptible;
    // Periodic balancing: runnable unpinned threads wait here while a CPU sleeps: wake one,
    // it steals (a halted CPU only looks for work when something wakes it). Not when a
    // thread put back by the switch below is followed by `schedule`'s own offer
    // (`offer_to_a_halted_cpu`): until 2026-12-06 both kicked, two halted CPUs woken for
    // one preemption (found by review;
    // `sched.tick_preemption_of_a_stealable_thread_kicks_one_halted_cpu`).
    if !(preempt && !is_idle && super::cpu::put_back_here(cs, tcb(cur))) {
        kick_idle_cpu(cs);
    }
    if preempt {
        if is_idle {
            leave_halted(cs);
        } else if slice_end {
            bump(&cs.preemptions);
        } else {
            bump(&cs.wake_preemptions);
        }
        schedule_irqs_off();
    } else {
        // A thread's slice runs from its start, so a tick that came early (an earlier
        // deadline was still armed when it switched in: `program_timer`) arms the slice's
        // true end; an expired slice that goes on gets a whole new one.
        let start = if expired || is_idle { now } else { started };
        if expired && !is_idle {
            // The new slice is the thread's (its `started`, which a direct switch passes on):
            // until 2026-12-05 only the timer got it, and a fastpath ping-pong with a
            // deadline re-armed for the long-past end at each hand-off, a tick per call
            // (found by review).
            tcb(cur).started.store(now, Ordering::Relaxed);
        }
        cs.lock();
        // A wake-up that waits (before the floor, or not preemptible now) is looked at
        // again at a tick armed for the floor's end, or soon (`defer_wake`'s deadline): the
        // timer is written once, for the earlier of that and the slice's end (until
        // 2026-12-05 the re-arm wrote the slice's end and `defer_wake` the earlier
        // deadline after it: two writes, each a VM exit under KVM).
        let cap = if wake_waits {
            bump(&cs.wake_deferrals);
            deferred_tick(cs, now)
        } else {
            u64::MAX
        };
        let mode = TIMER.load(Ordering::Relaxed);
        if mode != TIMER_OFF {
            program_timer(cs, now, start, !is_idle, mode, cap);
        }
        cs.unlock();
    }
}

/// The tick while a test emulates a machine without a timer ([`emulate_timer_off`]): as if
/// it had not come, but a running thread's slice end is armed again (so the tick goes on
/// once the test ends); an idle CPU arms nothing (`program_timer`).
#[cold]
#[inline(never)]
fn emulated_tick(cs: &CpuSched, now: u64) {
    let cur = cs.current.load(Ordering::Relaxed) as usize;
    let is_idle = cur == cs.idle.load(Ordering::Relaxed) as usize;
    let mode = TIMER.load(Ordering::Relaxed);
    if !is_idle && mode != TIMER_OFF {
        cs.lock();
        program_timer(cs, now, now, true, mode, u64::MAX);
        cs.unlock();
    }
}

/// Programs this CPU's timer for the earlier of the first sleeper's deadline and the end of
/// a slice starting `now` (`running` a thread) or the next idle balancing tick (lock held).
#[inline(always)]
pub(super) fn arm_timer(cs: &CpuSched, now: u64, running: bool) {
    arm_timer_from(cs, now, now, running);
}

/// [`arm_timer`] for a slice that started at `start` (the tick's re-arm of a running slice).
#[inline(always)]
pub(super) fn arm_timer_from(cs: &CpuSched, now: u64, start: u64, running: bool) {
    let mode = TIMER.load(Ordering::Relaxed);
    if mode != TIMER_OFF {
        program_timer(cs, now, start, running, mode, u64::MAX);
    }
}

/// [`arm_timer_from`] with a timer in use (`mode`), for no later than `cap` (`u64::MAX`:
/// no bound; the tick's deferred wake-up, `deferred_tick`).
///
/// Lazy within half a slice: when the deadline already armed is still ahead, not later than
/// this one and at most half a slice earlier, it stays (its tick, that much early, arms the
/// true one: `tick`). A CPU that switches often then writes the timer about twice per slice
/// instead of at every switch (each write is an MSR or APIC write, a VM exit under KVM),
/// and still takes no tick while it switches (the deadline keeps moving ahead of it, as
/// with a write per switch). A deadline more than half a slice early is written anew, so an
/// idle CPU (a balancing tick `IDLE_BALANCE_SLICES` away) is not woken early for nothing.
/// `armed` is this CPU's own record of what is programmed: every tick clears it, and only
/// this CPU's `cpus::wait` backstop writes the timer besides, never later than what is
/// armed, so a deadline ahead in the record is one the hardware will deliver.
#[inline(never)]
fn program_timer(cs: &CpuSched, now: u64, start: u64, running: bool, mode: u8, cap: u64) {
    // SAFETY: lock held.
    let next_sleeper =
        (!unsafe { cs.sleepers() }.is_empty()).then(|| cs.next_wake.load(Ordering::Relaxed));
    let slice = SLICE_TSC.load(Ordering::Relaxed);
    // Running: the slice end. Idle: a balancing tick every `IDLE_BALANCE_SLICES` slices, so
    // a halted CPU looks for work to steal even if no busy CPU kicks it.
    let own = if running {
        start.saturating_add(slice)
    } else if TIMER_OFF_EMULATED.load(Ordering::Relaxed) {
        // A test emulates a machine without a timer: an idle CPU polls its sleepers and
        // halts otherwise, armed for nothing.
        return;
    } else {
        now + slice * IDLE_BALANCE_SLICES
    };
    let at = next_sleeper
        .map_or(own, |w| w.min(own))
        .min(cap)
        .max(now + 1);
    let armed = cs.armed.load(Ordering::Relaxed);
    if now < armed && armed <= at && at - armed <= slice / 2 {
        return;
    }
    if running && at == own.max(now + 1) {
        bump(&cs.timer_writes_slice);
    } else {
        bump(&cs.timer_writes_other);
    }
    write_timer(cs, now, at, mode);
}

/// Writes this CPU's timer for `at` (`mode`: deadline or one-shot) and records it in `armed`
/// (lock held; the end of [`program_timer`], and [`defer_wake`]'s earlier tick).
fn write_timer(cs: &CpuSched, now: u64, at: u64, mode: u8) {
    cs.armed.store(at, Ordering::Relaxed);
    if mode == TIMER_DEADLINE {
        apic::timer_deadline(at);
    } else {
        let ticks = u128::from(at.saturating_sub(now).max(1))
            * u128::from(crate::smp::time::apic_ticks_per_ms())
            * 1000
            / u128::from(crate::smp::time::tsc_hz().max(1));
        apic::timer_oneshot(VEC_TIMER, ticks.clamp(1, u32::MAX as u128) as u32, false);
    }
    crate::smp::timer::scheduler_armed();
}

/// The time slice, in TSC ticks (0 before `init`).
pub fn slice_tsc() -> u64 {
    SLICE_TSC.load(Ordering::Relaxed)
}

/// Timer mode in use, for reports.
pub fn timer_mode() -> &'static str {
    match TIMER.load(Ordering::Relaxed) {
        TIMER_DEADLINE => "tsc-deadline",
        TIMER_ONESHOT => "apic-oneshot",
        _ => "off",
    }
}
