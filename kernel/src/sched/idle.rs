//! Idle CPUs and work stealing: the two shared CPU bitmaps (*halted*, *stealable*), the
//! idle step a halted CPU runs when woken, thieves (random start, at most [`STEAL_TRIES`]
//! victims, `try_lock` only) and the kick that wakes one halted CPU when work waits.
#![allow(unsafe_code, reason = "a victim's run queue under its lock")]

use super::cpu::*;
use super::thread::*;
use super::wake::*;
use super::*;
use crate::smp::cpus::IdleStep;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;
use exo_percpu::IrqGuard;
use exo_sched::{AtomicMask, Priority, Queue};

impl CpuSched {
    /// Takes one runnable thread it may run from another CPU (our lock held; theirs only
    /// tried): victims come from the stealable mask, starting at a random CPU, at most
    /// [`STEAL_TRIES`] of them.
    pub(super) fn steal(&self) -> Option<usize> {
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

    pub(super) fn steal_from(&self, victim: &'static CpuSched) -> Option<usize> {
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
                    if t.any_cpu() || t.affinity.lock().contains(self.cpu) {
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
            let t = tcb(r.index());
            victim.account_dequeue(t);
            t.cpu.store(self.cpu, Ordering::Release);
        }
        victim.unlock();
        if ok {
            // Pass it on: while the victim still has work to give, wake one more halted CPU
            // (each thief recruits the next, so a burst spreads in a few steps).
            kick_idle_cpu(victim);
            bump(&self.steals);
            Some(r.index())
        } else {
            None
        }
    }
}

/// The shared CPU bitmaps, allocated by `init` for the CPUs that exist.
pub(super) struct Masks {
    halted: &'static [AtomicU64],
    stealable: &'static [AtomicU64],
    sleeping: &'static [AtomicU64],
    n: u32,
}

pub(super) static MASKS: spin::Once<Masks> = spin::Once::new();

/// CPUs halted in their idle loop (a kicker claims one by clearing its bit).
pub(super) fn halted_mask() -> Option<AtomicMask<'static>> {
    MASKS.get().map(|m| AtomicMask::new(m.halted, m.n))
}

/// CPUs with queued threads that another CPU may take (`nr_stealable > 0`).
pub(super) fn stealable_mask() -> Option<AtomicMask<'static>> {
    MASKS.get().map(|m| AtomicMask::new(m.stealable, m.n))
}

/// CPUs with sleepers listed (a non-empty sleeper list; set and cleared under that CPU's
/// lock, when the list fills and when a scan empties it): what an idle CPU without a timer
/// looks at for sleepers of busy CPUs ([`watch_busy_sleepers`]).
pub(super) fn sleeping_mask() -> Option<AtomicMask<'static>> {
    MASKS.get().map(|m| AtomicMask::new(m.sleeping, m.n))
}

/// Allocates the halted, stealable and sleeping bitmaps for `n` CPUs (once; without memory
/// they stay empty: no kicks, no steals, no watch of other CPUs' sleepers, every CPU still
/// runs its own threads).
pub(super) fn init_masks(n: u32) {
    MASKS.call_once(|| Masks {
        halted: alloc_mask(n).unwrap_or(&[]),
        stealable: alloc_mask(n).unwrap_or(&[]),
        sleeping: alloc_mask(n).unwrap_or(&[]),
        n,
    });
}

/// How far ahead (in slices) an idle CPU without a timer watches a busy CPU's sleepers: it
/// stays awake, polling, while one is due within this many slices (a halted CPU cannot
/// look at the clock), and is woken for one ([`recruit_watcher`]). Beyond it, the sleeper is
/// looked at whenever an idle CPU runs its idle step (woken for any reason, or polling for
/// sleepers of its own), or when its own CPU schedules: benchmarks join with deadlines of
/// tens of seconds, and idle CPUs that polled through them would be measured (one vCPU
/// runs at a time under icount).
///
/// A first deadline beyond the window when its CPU goes busy (its idle step leaves for
/// work, a sleeper's own switch runs a thread, a handoff) is watched too, but only through
/// that busy stretch ([`busy_with_sleepers`]: once per deadline, `far_for`): a halted CPU
/// is recruited and polls until that CPU passes through its scheduler again (`far_until`,
/// `far_since`), so the sleeper is seen once it comes within the window, however long the
/// thread runs. Until 2026-12-06 none was, and such a sleeper overslept for as long as a
/// CPU-bound thread ran (found by review;
/// `sched.far_sleeper_on_a_busy_cpu_is_woken_without_a_timer`). The trade-off: without a
/// timer only a polling CPU sees time pass, and a CPU that schedules (a switch, or a yield
/// that keeps its thread) looks at its own sleepers each time, so the watcher stops
/// polling then: a ping-pong or a round trip beside a bench driver's join releases it at
/// once, and the deadline recruits no other (a benchmark's joins cost one wake-up of a
/// halted CPU each, not a polling CPU). A busy stretch that begins later at a plain switch
/// (a yield, a wake-up, an exit, the idle step's next leave for work) while that deadline
/// is still beyond the window recruits none, and nothing bounds that sleeper's oversleep:
/// coming within the window recruits nobody either (no code runs then), so it is woken at
/// its CPU's next pass through its scheduler or wake IPI taken, or at the look of an idle
/// CPU (woken for anything, or polling for sleepers of its own), whichever comes first;
/// with every other CPU halted, for as long as the thread that began the stretch runs
/// CPU-bound (checked 2026-12-06: 19 s late behind a 20 s spinner that a yield had
/// switched to, q35 -smp 4). Closing that needs a poller through every busy stretch (one
/// that polls through a driver's long join beside its own threads, as `thread.spawn`'s
/// batches, is measured under icount) or a test on the plain switch (`ctx.switch`).
pub(super) const WATCH_SLICES: u64 = 64;

/// [`WATCH_SLICES`] in TSC ticks.
fn watch_horizon() -> u64 {
    SLICE_TSC
        .load(Ordering::Relaxed)
        .saturating_mul(WATCH_SLICES)
}

/// The TSC from which a sleeper due at `at` is within [`WATCH_SLICES`] (`near_from`).
pub(super) fn near_from(at: u64) -> u64 {
    at.saturating_sub(watch_horizon())
}

/// CPU `cs`'s `near_from` for its first deadline `at` (lock held): [`near_from`], but 0
/// without a timer while `at` has had no watcher recruited for it yet (`far_for`) or while
/// this CPU watches others (`watching`). The idle step's one compare
/// (`now >= near_from`) and the switch-time recruit's then call [`busy_with_sleepers`]
/// when this CPU goes busy: a deadline beyond the window gets its watcher (once), a
/// watcher that leaves hands its watch on. Nothing is added where the compare fails: a
/// CPU holding a bench driver's long join pays one extra call, at its first leave for
/// work after the join began.
pub(super) fn near_from_of(cs: &CpuSched, at: u64) -> u64 {
    if timer_off()
        && (cs.watching.load(Ordering::Relaxed)
            || (at != u64::MAX && cs.far_for.load(Ordering::Relaxed) != at))
    {
        0
    } else {
        near_from(at)
    }
}

/// Makes every CPU's `near_from` exact again (under its lock): the slice, and so the watch
/// window, changed (`set_slice_tsc`).
pub(super) fn renew_near_from() {
    let _g = IrqGuard::new();
    for c in 0..crate::smp::cpus::capacity() as u32 {
        if let Some(cs) = cpu_sched(c) {
            cs.lock();
            let at = cs.next_wake.load(Ordering::Relaxed);
            cs.near_from.store(near_from_of(cs, at), Ordering::Relaxed);
            cs.unlock();
        }
    }
}

/// CPU `cs`'s first sleeper deadline was lowered to `deadline` from `bound` (`u64::MAX`:
/// the list held none; its lock held): `near_from` follows; without a timer, marked in the
/// sleeping mask, and with `handoff` (the sleeper switches straight to a claimed thread,
/// which runs next on this CPU, so it will not poll for the sleeper itself) if the deadline
/// is within [`WATCH_SLICES`], a halted CPU is woken to watch it. A sleeper that schedules
/// (`handoff` false) has its switch recruit the watcher if it runs a thread
/// ([`sleepers_left_for_work`]): until 2026-12-06 this add did, if the run queue held a
/// thread then, and a thread posted after it ran unwatched (found by review;
/// `sched.due_sleeper_whose_switch_ran_a_posted_thread_is_woken_without_a_timer`). With a
/// timer the mask is not kept (nobody reads it; `emulate_timer_off` rebuilds it). Until
/// 2026-12-06 a direct switch's caller (the IPC fastpath with a timeout) counted only the
/// run queue, often empty: no watcher, and its timeout passed unseen while the target ran
/// CPU-bound (found by review; `sched.handoff_sleeper_on_a_busy_cpu_is_woken_without_a_timer`).
/// A handoff's deadline beyond the window gets its watcher too, through the claimed
/// thread's run ([`busy_with_sleepers`]).
#[cold]
#[inline(never)]
pub(super) fn sleeper_deadline_lowered(cs: &CpuSched, deadline: u64, bound: u64, handoff: bool) {
    cs.near_from
        .store(near_from_of(cs, deadline), Ordering::Relaxed);
    if !timer_off() {
        return;
    }
    if bound == u64::MAX
        && let Some(m) = sleeping_mask()
    {
        m.set(cs.cpu);
    }
    if handoff && busy_with_sleepers(cs, rdtsc(), None) {
        recruit_watcher(cs);
    }
}

/// A switch of CPU `cs` after which its sleepers could go unwatched
/// (`cpu::schedule_watching_irqs_off`: a thread that just listed itself as a sleeper, or
/// the idle step leaving for sleepers due, or for work while its `near_from` has passed)
/// runs a thread, not the idle context (lock held, `now` the switch's clock, its due
/// sleepers woken): without a timer, and with a sleeper due within [`WATCH_SLICES`], a
/// halted CPU is woken to watch them (nothing else would while that thread runs); also
/// for a first deadline beyond the window, and for a CPU that was watching others'
/// sleepers ([`busy_with_sleepers`]). A sleeper's switch still names it `current`, so the
/// watcher counts this CPU busy; the idle context's is marked leaving (`leaving_idle`).
/// Until 2026-12-06 the idle step's leave for work recruited before its switch, and for
/// a sleeper within the window only: the recruit is made here now, when the switch knows
/// it runs a thread and `ran_since` bounds the far watch.
#[cold]
#[inline(never)]
pub(super) fn sleepers_left_for_work(cs: &CpuSched, now: u64) {
    if timer_off()
        && now >= cs.near_from.load(Ordering::Relaxed)
        && busy_with_sleepers(cs, now, Some(now))
    {
        if cs.current.load(Ordering::Relaxed) == cs.idle.load(Ordering::Relaxed) {
            cs.leaving_idle.store(true, Ordering::SeqCst);
        }
        recruit_watcher(cs);
    }
}

/// CPU `cs` goes busy (lock held, timer off, `now` at least its `near_from`: a sleeper
/// due within the window, a first deadline beyond it not yet watched, or this CPU was
/// watching others): whether a halted CPU must be recruited. Yes for a sleeper within
/// [`WATCH_SLICES`]; yes, once per deadline (`far_for`), for a first deadline beyond it,
/// watched through this busy stretch: its watchers poll until this CPU's next switch
/// (`far_until`) or, with `switch_at` (the TSC of the switch being made, which stores it in
/// `ran_since`; none for a handoff, whose direct switch reads its own), its next pass
/// through the scheduler (`far_since`); see [`WATCH_SLICES`] for the trade-off. With
/// `switch_at` the list is scanned first (lock held, every listed sleeper blocked): an
/// entry left by a thread woken early (the one this CPU leaves its idle loop for, back
/// from a long join) recruits nobody. Yes too if this CPU was watching others' sleepers:
/// the watch is handed on, as nothing else would look at them while this CPU runs its
/// thread; until 2026-12-06 a watcher claimed for work left them unwatched (found by
/// review; `sched.watcher_leaving_for_work_hands_its_watch_on_without_a_timer`).
/// `near_from` is made exact again (past the window's start for the first deadline).
#[cold]
fn busy_with_sleepers(cs: &CpuSched, now: u64, switch_at: Option<u64>) -> bool {
    let handing_on = cs.watching.swap(false, Ordering::Relaxed);
    let mut at = cs.next_wake.load(Ordering::Relaxed);
    let mut own = false;
    if at != u64::MAX {
        if now >= near_from(at) {
            own = true;
        } else if cs.far_for.load(Ordering::Relaxed) != at {
            if switch_at.is_some() {
                // Nothing is due at `now`: the switch's own scan woke what was.
                cs.rescan_sleepers(now);
                at = cs.next_wake.load(Ordering::Relaxed);
            }
            if at != u64::MAX && cs.far_for.load(Ordering::Relaxed) != at {
                cs.far_for.store(at, Ordering::Relaxed);
                // The switch this CPU is making counts one: watched until the one after.
                let sw = cs.switches.load(Ordering::Relaxed);
                cs.far_until.store(sw.wrapping_add(2), Ordering::Relaxed);
                cs.far_since
                    .store(switch_at.unwrap_or(u64::MAX), Ordering::Relaxed);
                own = true;
            }
        }
    }
    cs.near_from.store(near_from_of(cs, at), Ordering::Relaxed);
    handing_on || own
}

/// Whether watchers poll for CPU `o`'s first deadline `at`, beyond the window: the busy
/// stretch its far watcher was recruited for lasts (no switch since, no pass through the
/// scheduler since: [`busy_with_sleepers`]).
fn far_watched(o: &CpuSched, at: u64) -> bool {
    o.far_for.load(Ordering::Relaxed) == at
        && o.switches.load(Ordering::Relaxed) < o.far_until.load(Ordering::Relaxed)
        && o.ran_since.load(Ordering::Relaxed) <= o.far_since.load(Ordering::Relaxed)
}

/// Marks the sleeping mask afresh from every CPU's sleeper list (under its lock): the
/// timer's emulation just began, and with a timer the mask is not kept.
pub(super) fn rebuild_sleeping_mask() {
    let Some(m) = sleeping_mask() else {
        return;
    };
    let _g = IrqGuard::new();
    for c in 0..crate::smp::cpus::capacity() as u32 {
        if let Some(cs) = cpu_sched(c) {
            cs.lock();
            // SAFETY: lock held.
            if unsafe { cs.sleepers() }.is_empty() {
                m.clear(c);
            } else {
                m.set(c);
            }
            cs.unlock();
        }
    }
}

/// A scan emptied CPU `cs`'s sleeper list (its lock held).
#[cold]
pub(super) fn no_sleepers_left(cs: &CpuSched) {
    if let Some(m) = sleeping_mask() {
        m.clear(cs.cpu);
    }
}

/// Wakes one halted CPU (claimed, as a kick claims one) to watch `cs`'s sleepers (lock of
/// `cs` held, or none). The recruit is marked watching before it is rung (`watching`, its
/// `near_from` 0, under its lock): its idle step looks for work before it looks at the
/// sleepers, and one claimed for work first (a thread posted to it, work to steal) leaves
/// through the switch that hands a watch on ([`busy_with_sleepers`]); its look, if it comes
/// first, puts both right ([`set_watching`]). Until 2026-12-06 the recruit was only told
/// to look (`watch_at`), and one given a thread before its look left the sleepers it was
/// recruited for unwatched while that thread ran (found by review;
/// `sched.watcher_claimed_for_work_before_its_look_hands_its_watch_on_without_a_timer`).
/// Its lock is only tried (`cs`'s may be held: no two run-queue locks are waited for at
/// once): a recruit whose lock is busy is not halted after all (its own idle step or
/// switch holds it) or is being looked at by another CPU for an instant, and is rung
/// unmarked, as before, while the next halted CPU is recruited too, at most
/// [`WATCH_RECRUIT_TRIES`] in all.
#[cold]
fn recruit_watcher(cs: &CpuSched) {
    let Some(m) = halted_mask() else {
        return;
    };
    let mut from = cs.cpu.wrapping_add(1);
    // The CPU found busy by the test switch (`RECRUIT_LOCK_BUSY`), + 1 (0: none).
    let mut injected = 0;
    for _ in 0..WATCH_RECRUIT_TRIES {
        let Some(w) = m.take_from(from, cs.cpu).and_then(cpu_sched) else {
            publish_injected(injected, NONE_LEFT);
            return;
        };
        w.watch_at.store(0, Ordering::Relaxed);
        let busy = recruit_lock_busy_now(cs.cpu);
        let marked = !busy && w.try_lock();
        if marked {
            w.watching.store(true, Ordering::Relaxed);
            w.near_from.store(0, Ordering::Relaxed);
            w.unlock();
        }
        ring(w);
        if busy {
            // Nothing after it yet (what comes next, if anything, overwrites this).
            injected = w.cpu + 1;
            publish_injected(injected, 0);
        } else {
            publish_injected(injected, if marked { w.cpu + 1 } else { SECOND_BUSY });
        }
        if marked {
            return;
        }
        from = w.cpu.wrapping_add(1);
    }
}

/// Records what a recruit that consumed [`RECRUIT_LOCK_BUSY`] did (`busy`: the CPU it found
/// busy + 1; nothing when 0, no switch consumed): [`RECRUIT_INJECTED`], its second word
/// first. The test reads it once x's spinner, which runs only after the switch that
/// recruits, has ended: the last word written is there. Inlined: without the switch it is
/// one test of a register in the recruit's loop, not a call.
#[inline(always)]
fn publish_injected(busy: u32, then: u32) {
    if busy != 0 {
        RECRUIT_INJECTED.1.store(then, Ordering::Relaxed);
        RECRUIT_INJECTED.0.store(busy, Ordering::Release);
    }
}

/// Test switch: CPU index + 1 whose next watcher recruit finds its first recruit's lock
/// busy (0: off), as when that CPU's own idle step or switch holds it at that instant: a
/// corner no test reached by chance (until 2026-12-07 untested). Consumed by that recruit.
static RECRUIT_LOCK_BUSY: AtomicU32 = AtomicU32::new(0);

/// What the recruit that consumed [`RECRUIT_LOCK_BUSY`] did: the CPU (+ 1) it found busy,
/// and what it did next: the CPU (+ 1) it marked watching, [`NONE_LEFT`] or [`SECOND_BUSY`]
/// (0: nothing, which is the defect the switch is there to find).
static RECRUIT_INJECTED: (AtomicU32, AtomicU32) = (AtomicU32::new(0), AtomicU32::new(0));

/// `RECRUIT_INJECTED.1`: the recruit found no other halted CPU.
const NONE_LEFT: u32 = u32::MAX;
/// `RECRUIT_INJECTED.1`: the next halted CPU's lock was busy too (really).
const SECOND_BUSY: u32 = u32::MAX - 1;

/// What a watcher recruit did after its first recruit's lock was found busy
/// ([`recruit_lock_busy_for_tests`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AfterBusy {
    /// Nothing: no other halted CPU was taken (the defect).
    Nothing,
    /// This CPU was taken from the halted mask, marked watching and rung.
    Marked(u32),
    /// No other CPU was halted.
    NoneLeft,
    /// The next halted CPU's lock was busy too: rung unmarked as well.
    SecondBusy,
}

/// Whether this recruit for CPU `cpu`'s sleepers must take its recruit's lock as busy
/// ([`RECRUIT_LOCK_BUSY`]; consumed). One load when off (a cold path).
#[inline(always)]
fn recruit_lock_busy_now(cpu: u32) -> bool {
    RECRUIT_LOCK_BUSY.load(Ordering::Relaxed) == cpu + 1
        && RECRUIT_LOCK_BUSY
            .compare_exchange(cpu + 1, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
}

/// Arms (`Some(cpu)`) or disarms (`None`) [`RECRUIT_LOCK_BUSY`] for the next watcher
/// recruit for CPU `cpu`'s sleepers, and clears what the last one recorded.
pub(crate) fn recruit_lock_busy_for_tests(cpu: Option<u32>) {
    RECRUIT_INJECTED.0.store(0, Ordering::Relaxed);
    RECRUIT_INJECTED.1.store(0, Ordering::Relaxed);
    RECRUIT_LOCK_BUSY.store(cpu.map_or(0, |c| c + 1), Ordering::Release);
}

/// What the injected recruit did ([`recruit_lock_busy_for_tests`]): `None` if it has not
/// come; else the CPU it found busy and what it did next.
pub(crate) fn recruit_injected() -> Option<(u32, AfterBusy)> {
    let busy = RECRUIT_INJECTED.0.load(Ordering::Acquire).checked_sub(1)?;
    let next = match RECRUIT_INJECTED.1.load(Ordering::Acquire) {
        0 => AfterBusy::Nothing,
        NONE_LEFT => AfterBusy::NoneLeft,
        SECOND_BUSY => AfterBusy::SecondBusy,
        c => AfterBusy::Marked(c - 1),
    };
    Some((busy, next))
}

/// Halted CPUs [`recruit_watcher`] claims at most for one watch (only a recruit whose lock
/// was busy makes it claim the next).
const WATCH_RECRUIT_TRIES: u32 = 2;

/// Without a timer, an idle CPU polls for as long as its sleeper list is not empty, and
/// that list loses an entry only at a scan, which a switch makes once the first deadline
/// has passed: a thread woken early from a long wait that blocks again without a deadline
/// (or elsewhere) kept its CPU polling until the old deadline. So the idle step's look (at
/// most once a slice: `watch_at`) scans the list now (`rescan_sleepers`): such entries go,
/// and the CPU halts once none is left. Whether it must go on polling (sleepers left, or
/// the scan woke one). Lock held. Until 2026-12-06 nothing did (found by review;
/// `sched.idle_cpu_without_a_timer_halts_once_its_sleepers_are_stale`).
/// Also ends the idle step's `leaving_idle` mark: the CPU is idle again (at a look, not at
/// every polling step: a call per step cost `ipc.rtt.64.xcore.kthread` +72, icount; the mark
/// left meanwhile makes a watcher count this CPU busy for at most a slice).
#[cold]
#[inline(never)]
fn own_sleepers_left(cs: &CpuSched, now: u64) -> bool {
    cs.leaving_idle.store(false, Ordering::Relaxed);
    cs.rescan_sleepers(now) || cs.nr_ready.load(Ordering::Relaxed) != 0
}

/// Without a timer, nothing wakes the sleepers of a CPU that runs a thread but its own
/// `schedule` (a CPU-bound thread: never). So the idle step of a CPU with nothing to run
/// looks at the CPUs with sleepers ([`sleeping_mask`]) that run a thread: one whose first
/// deadline has passed is rung (its wake IPI wakes them: `wake::wake_ipi`, and a thread
/// others may take is then stolen by this CPU or a halted one). Returns whether one is due
/// within [`WATCH_SLICES`]: the caller polls instead of halting, and looks again at its
/// next step; else it looks again a slice later (`watch_at`). An idle CPU polls for its
/// own sleepers: skipped. Until 2026-12-06 a sleeper on a busy CPU woke only once that CPU
/// scheduled, beside idle CPUs (found by review;
/// `sched.due_sleeper_on_a_busy_cpu_is_woken_without_a_timer`).
/// A first deadline beyond the window counts as near while its busy stretch lasts (its
/// CPU's `far_for` and `far_until`: see [`WATCH_SLICES`]). Whether this CPU watches is
/// kept in `watching` ([`set_watching`]).
#[cold]
#[inline(never)]
fn watch_busy_sleepers(cs: &CpuSched, now: u64) -> bool {
    if !timer_off() {
        // A timer wakes sleepers (a test's emulation of none has ended).
        cs.watch_at.store(u64::MAX, Ordering::Relaxed);
        set_watching(cs, false);
        return false;
    }
    let slice = SLICE_TSC.load(Ordering::Relaxed);
    let Some(m) = sleeping_mask() else {
        cs.watch_at
            .store(now.saturating_add(slice), Ordering::Relaxed);
        set_watching(cs, false);
        return false;
    };
    let horizon = now.saturating_add(watch_horizon());
    let mut near = false;
    for c in m.iter() {
        let Some(o) = cpu_sched(c).filter(|o| o.cpu != cs.cpu) else {
            continue;
        };
        // The mark first: set before a leaving CPU's switch, cleared only once it is idle
        // again, so a CPU on its way to a thread is never seen idle.
        let leaving = o.leaving_idle.load(Ordering::SeqCst);
        if !leaving && o.current.load(Ordering::Relaxed) == o.idle.load(Ordering::Relaxed) {
            continue;
        }
        let at = o.next_wake.load(Ordering::Relaxed);
        // Once per due deadline (the first watcher to see it): until 2026-12-06 every idle
        // step of every polling CPU rang it again until it took the IPI (found by review;
        // `sched.due_sleeper_is_rung_once_per_deadline`).
        if at <= now && o.rung_for.swap(at, Ordering::Relaxed) != at {
            bump(&cs.sleeper_rings);
            ring(o);
        }
        near |= at <= horizon || far_watched(o, at);
    }
    let next = if near { 0 } else { now.saturating_add(slice) };
    cs.watch_at.store(next, Ordering::Relaxed);
    set_watching(cs, near);
    near
}

/// Records whether idle CPU `cs` watches others' sleepers (`watching`, with `near_from`
/// made 0 or exact under its lock: see [`near_from_of`]); only when that changes.
fn set_watching(cs: &CpuSched, on: bool) {
    if cs.watching.load(Ordering::Relaxed) != on {
        cs.lock();
        cs.watching.store(on, Ordering::Relaxed);
        let at = cs.next_wake.load(Ordering::Relaxed);
        cs.near_from.store(near_from_of(cs, at), Ordering::Relaxed);
        cs.unlock();
    }
}

pub(super) fn alloc_mask(n: u32) -> Result<&'static [AtomicU64], SchedError> {
    crate::mm::kalloc::try_leak_slice(AtomicMask::words_for(n), || AtomicU64::new(0))
        .map(|s| &*s)
        .map_err(|_| SchedError::OutOfMemory)
}

/// After making an unpinned thread runnable here, wakes one halted CPU so it can steal.
pub(super) fn kick_idle_cpu(here: &CpuSched) {
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
        // Counted on the CPU that sends the IPI (a thief passing work on kicks for its
        // victim), and only when one is sent: nothing on a path that finds no halted CPU.
        // Every caller has interrupts off (`bump`'s rule).
        if let Some(me) = this_sched() {
            bump(&me.idle_kicks);
        }
        ring(idle);
    }
}

/// Called by an idle context with interrupts off: runs queued work if there is any
/// ([`IdleStep::Ran`] once this context is picked again), else says whether the CPU polls
/// (without a timer, for sleepers: [`IdleStep::Poll`], or [`IdleStep::PollLook`] when the
/// step looked at others' sleepers, and the loop at the console) or may halt.
pub fn idle_step(g: &mut IrqGuard) -> IdleStep {
    let Some(cs) = this_sched() else {
        return IdleStep::Halt;
    };
    if cs.current.load(Ordering::Relaxed) != cs.idle.load(Ordering::Relaxed) {
        return IdleStep::Halt;
    }
    let work = cs.nr_ready.load(Ordering::Relaxed) > 0
        || cs.mailbox.is_pending()
        || stealable_elsewhere(cs);
    cs.lock();
    let now = rdtsc();
    // One compare while the first deadline is beyond the watch window (`near_from` is never
    // above `next_wake`, and above any clock with no sleeper listed): a CPU holding a bench
    // driver's long join leaves for work at every round trip (the window computed here
    // cost `ipc.rtt.64.xcore.kthread` +30, icount). Without a timer also taken by a first
    // deadline beyond the window not yet watched, and by a CPU watching others
    // (`near_from_of`).
    if now >= cs.near_from.load(Ordering::Relaxed)
        && (now >= cs.next_wake.load(Ordering::Relaxed) || (work && timer_off()))
    {
        // Sleepers due: the switch wakes them (and arms the timer), and if it then runs a
        // thread with another sleeper due within the window, recruits a watcher for it
        // (`schedule_watching`). Until 2026-12-06 this step recruited none: the woken
        // sleeper ran, and one due soon after overslept for as long as it did (found by
        // review; `sched.due_sleeper_behind_one_woken_from_idle_is_woken_without_a_timer`).
        // Work without a timer: the same switch recruits a watcher for this CPU's
        // sleepers, or hands this CPU's watch on ([`sleepers_left_for_work`]): nothing
        // else would look at them while the work runs (until 2026-12-06 a CPU-bound thread
        // woken onto a CPU polling for its own sleeper made it oversleep until that
        // thread blocked; found by review,
        // `sched.due_sleeper_on_a_busy_cpu_is_woken_without_a_timer`).
        cs.unlock();
        schedule_watching(g);
        return IdleStep::Ran;
    }
    arm_timer(cs, now, false);
    if work {
        cs.unlock();
        schedule(g);
        return IdleStep::Ran;
    }
    // Without a timer: polls while sleepers of its own wait (nothing else wakes them), or a
    // busy CPU's are due soon ([`watch_busy_sleepers`]), looked at no more than once a
    // slice unless one is near (`watch_at`; the look also rescans its own list, under this
    // lock: [`own_sleepers_left`]). A compare when it is not time to look: every idle step
    // that halts or polls pays it, and under icount that is measured (one vCPU runs at a
    // time: `ipc.rtt.64.xcore.kthread` +6 a round trip with a TSC read besides).
    let look = now >= cs.watch_at.load(Ordering::Relaxed);
    // SAFETY: lock held.
    let any_sleeper = !unsafe { cs.sleepers() }.is_empty();
    let own = any_sleeper && timer_off() && (!look || own_sleepers_left(cs, now));
    cs.unlock();
    if (look && watch_busy_sleepers(cs, now)) | own {
        // `pause` also ends this vCPU's turn under single-threaded icount emulation, so a
        // polling idle CPU does not hold the virtual clock hostage.
        core::hint::spin_loop();
        return if look {
            IdleStep::PollLook
        } else {
            IdleStep::Poll
        };
    }
    if let Some(m) = halted_mask() {
        m.set(cs.cpu);
        // Work made stealable after the check above, by a CPU whose kick read the halted
        // mask before this mark, would wait for a tick: looked for again now that the mark
        // is visible (a kicker marks stealable work before it reads the halted mask, both
        // with locked instructions). Until 2026-12-04 the CPU halted anyway (found by
        // review; latency only, not forced by a test).
        core::sync::atomic::fence(Ordering::SeqCst);
        if stealable_elsewhere(cs) {
            m.clear(cs.cpu);
            return IdleStep::Ran;
        }
    }
    IdleStep::Halt
}

/// Test support: whether CPU `cpu` is marked halted (in its idle loop's halt, or about to be).
pub(super) fn is_halted(cpu: u32) -> bool {
    halted_mask().is_some_and(|m| m.contains(cpu))
}

/// Does another CPU have runnable unpinned threads waiting? (A scan of the stealable mask's
/// words.)
pub(super) fn stealable_elsewhere(cs: &CpuSched) -> bool {
    stealable_mask().is_some_and(|m| m.any_except(cs.cpu))
}

/// Clears the halted mark after a halt ends (or when the idle loop goes round again without
/// halting). Unconditional: after a halt the mark is usually set, and the wake-up path is measured
/// (through [`leave_halted`] it cost `sched.wake.xcore` 13 instructions, icount).
pub fn idle_woke() {
    if let (Some(cs), Some(m)) = (this_sched(), halted_mask()) {
        m.clear(cs.cpu);
    }
}

/// Clears `cs`'s halted mark if it is set (a load first: the mark is a shared word every
/// kicker reads). The tick calls it when it switches from the idle context to a thread from
/// inside the halt: until 2026-12-04 that thread (a stolen one at every balancing tick) ran
/// with its CPU still marked halted, and kickers claimed that CPU for a wasted IPI while one
/// really halted slept on.
pub(super) fn leave_halted(cs: &CpuSched) {
    if let Some(m) = halted_mask()
        && m.contains(cs.cpu)
    {
        m.clear(cs.cpu);
    }
}

pub(super) fn idle_thread(_: u64) -> u64 {
    crate::smp::cpus::idle_loop()
}
