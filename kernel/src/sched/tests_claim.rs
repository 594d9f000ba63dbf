//! The claim window of `Here::claim`, forced (debug kernels: `sched::inject`). A thread T
//! that may run anywhere blocks on CPU C; a claimer on C claims it with the claim held
//! open between its read of T's CPU and its CAS. Meanwhile CPU B wakes T with every
//! mailbox made full (so the wake-up queues T on C's run queue itself, under C's lock),
//! then sleeps 1 ms at a time (each sleep a scheduling pass with an empty queue: a steal
//! attempt) until T runs and blocks on B. `Here::claim` holds C's lock across the window,
//! so T cannot be queued or stolen: its CAS fails (T is `Ready`) and T runs again once it
//! is let go. A claim without the lock there takes T while it last ran on B (whose
//! registers B may still be saving): the test names that claim.
//!
//! Until 2026-12-05 the test depended on the host's speed (found by review): T, stealable
//! from its start, could be preempted and stolen before it blocked, and block elsewhere
//! (the claimer then waited for it on C in vain, or its claim failed the CPU check and was
//! never held); the hold's half second ran from the claimer's entry, so a waker stalled
//! that long woke T after it; and the waker's 100 µs sleeps could end before a loaded debug
//! kernel's pick (no steal tried). Now T moves back to C until the claim is entered (the
//! claimer wakes it if it blocked elsewhere), the half second starts at the waker's go
//! (`inject::claim_go`), and the waker sleeps 1 ms at a time.

use crate::boot::BootState;
use crate::harness::{Needs, TestResult};
use crate::ktest;

ktest!(
    Needs::Threads,
    "sched.claim_window_closed_by_the_cpu_lock",
    claim_window
);
ktest!(
    Needs::Threads,
    "sched.claim_of_a_reused_slot_fails",
    reused_slot
);

fn claim_window(_: &BootState) -> TestResult {
    injected_test!(forced::run, crate::harness::SKIP)
}

fn reused_slot(_: &BootState) -> TestResult {
    injected_test!(reused::run, crate::harness::SKIP)
}

/// On the calling CPU: claims `t` with the claim hold armed (`inject::arm_claim`).
/// `Ok(None)`: refused; `Ok(Some(cpu))`: claimed a thread that last ran on `cpu` (given
/// back at once); `Err`: no running thread to claim from.
#[cfg(debug_assertions)]
fn claim_held_open(t: crate::sched::Tid) -> Result<Option<u32>, ()> {
    crate::sched::inject::arm_claim(t.index());
    let g = exo_percpu::IrqGuard::new();
    let here = crate::sched::Here::of(&g).ok_or(())?;
    Ok(here.claim(t).map(|claimed| {
        let on = claimed.last_cpu();
        here.release(claimed);
        on
    }))
}

#[cfg(debug_assertions)]
mod forced {
    use crate::harness::{SKIP, TestResult, check, join_all, ncpus, wait_for};
    use crate::sched::thread::tcb;
    use crate::sched::{self, Builder, CpuSet, Tid, inject};
    use alloc::format;
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use exo_arch::tsc::rdtsc;

    /// T, the waker and the claimer stop.
    static DONE: AtomicBool = AtomicBool::new(false);
    /// The CPU T ran on before each block.
    static RAN_ON: AtomicU32 = AtomicU32::new(u32::MAX);
    /// T's wake-ups.
    static WAKES: AtomicU32 = AtomicU32::new(0);
    /// `WAKES` right before the waker's wake-up (`u32::MAX`: not yet).
    static WAKES_BEFORE: AtomicU32 = AtomicU32::new(u32::MAX);
    /// The claimer has its answer.
    static CLAIMED: AtomicBool = AtomicBool::new(false);

    /// T: made runnable anywhere while on C (`c`), then blocks until `DONE` (60 s per
    /// wait), counting its wake-ups. Until the claim is entered, T blocks on C only: taken
    /// elsewhere (a tick preempted it and an idle CPU stole it), it moves back first. Not
    /// after: a woken T must be free to be stolen and block on B inside the window, the
    /// move the claim's lock has to prevent.
    fn victim(c: u64) -> u64 {
        let c = c as u32;
        if sched::this_cpu() != c || sched::set_affinity(CpuSet::ANY).is_err() {
            return 2;
        }
        while !DONE.load(Ordering::Acquire) {
            if !inject::claim_held() && sched::this_cpu() != c && !back_to(c) {
                return 5;
            }
            RAN_ON.store(sched::this_cpu(), Ordering::Release);
            let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
            if sched::block_until(d, || !DONE.load(Ordering::Acquire)) {
                return 3;
            }
            WAKES.fetch_add(1, Ordering::AcqRel);
        }
        0
    }

    /// Moves the calling thread back to CPU `c`, then lets it run anywhere again.
    fn back_to(c: u32) -> bool {
        sched::set_affinity(CpuSet::one(c)).is_ok()
            && sched::this_cpu() == c
            && sched::set_affinity(CpuSet::ANY).is_ok()
    }

    /// On B: once the claimer is inside its window, says so to the hold (its half second
    /// starts), wakes T with every mailbox full, then steals (sleeps 1 ms at a time) until
    /// T blocked on B or the claimer is done. 1: the wake-up found T not blocked; 2: the
    /// claim was never held.
    fn waker(raw: u64) -> u64 {
        let t = Tid::from_raw(raw);
        if wait_for("the claimer inside its window", 10_000, inject::claim_held).is_err() {
            return 2;
        }
        WAKES_BEFORE.store(WAKES.load(Ordering::Acquire), Ordering::Release);
        sched::force_mailbox_full(true);
        inject::claim_go();
        let woke = sched::wake(t);
        sched::force_mailbox_full(false);
        let hz = crate::smp::time::tsc_hz();
        let d = rdtsc() + 5 * hz;
        while !CLAIMED.load(Ordering::Acquire) && rdtsc() < d {
            sched::sleep_until(rdtsc() + hz / 1000);
        }
        u64::from(!woke)
    }

    /// On C: claims T with the hold armed, once T is blocked on C (woken to move back if
    /// it blocked elsewhere). Err names a claim of a thread that last ran elsewhere;
    /// Ok(claimed) otherwise (a claim on C is given back at once).
    fn claimer(raw: u64) -> u64 {
        let t = Tid::from_raw(raw);
        let c = sched::this_cpu();
        let d = rdtsc() + 30 * crate::smp::time::tsc_hz();
        loop {
            let blocked = wait_for("T blocked", 10_000, || {
                sched::is_blocked(t) && RAN_ON.load(Ordering::Acquire) != u32::MAX
            });
            if blocked.is_err() || rdtsc() > d {
                return 2;
            }
            // Nobody else wakes T before the claim: blocked, it stays where it is.
            if tcb(t.index()).cpu.load(Ordering::Acquire) == c {
                break;
            }
            let w = WAKES.load(Ordering::Acquire);
            sched::wake(t);
            let _ = wait_for("T woken", 10_000, || WAKES.load(Ordering::Acquire) > w);
        }
        let code = match super::claim_held_open(t) {
            Err(()) => 4,
            Ok(Some(on)) if on != c => 10 + u64::from(on),
            Ok(_) => 0,
        };
        CLAIMED.store(true, Ordering::Release);
        code
    }

    pub(super) fn run() -> TestResult {
        if ncpus() < 2 {
            return Err(format!("{SKIP}needs 2 CPUs"));
        }
        let (c, b) = (ncpus() - 1, 0);
        inject::reset_claim();
        DONE.store(false, Ordering::Release);
        CLAIMED.store(false, Ordering::Release);
        RAN_ON.store(u32::MAX, Ordering::Release);
        WAKES_BEFORE.store(u32::MAX, Ordering::Release);
        let spawn = |f: fn(u64) -> u64, cpu: u32, arg: u64| {
            Builder::new()
                .pin(cpu)
                .spawn(f, arg)
                .map_err(|e| format!("spawn: {e}"))
        };
        let t = spawn(victim, c, u64::from(c))?;
        let w = spawn(waker, b, t.raw())?;
        let k = spawn(claimer, c, t.raw())?;
        // The hold waits up to 30 s for the waker's go.
        let codes = join_all(&[k, w], 60_000);
        let again = wait_for("T to run again after the claim", 10_000, || {
            let before = WAKES_BEFORE.load(Ordering::Acquire);
            before != u32::MAX && WAKES.load(Ordering::Acquire) > before
        });
        DONE.store(true, Ordering::Release);
        sched::wake(t);
        let end = join_all(&[t], 30_000);
        let codes = codes?;
        let saw = inject::claim_result();
        check(codes[0] < 10, || {
            format!(
                "the claim on CPU {c} took a thread that last ran on CPU {} (the window was \
                 open: it was woken, queued, stolen and blocked there)",
                codes[0] - 10
            )
        })?;
        check(codes == [0, 0] && saw != 0 && saw != 3, || {
            format!(
                "claimer ended {} (2: T never blocked on C, 4: no running thread), waker {} \
                 (1: its wake-up found T not blocked, 2: the claim was never held), the \
                 hold ended {saw} (0: not reached, 3: no go from the waker)",
                codes[0], codes[1]
            )
        })?;
        again?;
        check(end? == [0], || {
            "T did not end cleanly (3: a 60 s block timed out, 5: it could not move back \
             to C)"
                .into()
        })
    }
}

/// The claim of a thread that has ended (on C, not joined yet) while its slot is reused.
/// With the claim held open between its read of T's CPU and its CAS (half a second), CPU B
/// joins T, makes the next spawn take T's slot and spawns T', pinned to B, which blocks
/// there. The join's free of the slot takes C's lock (`thread::free_slot`), which the
/// claimer holds: the slot stays T's until the claim is decided, the CAS finds T ended and
/// fails. Until 2026-12-05 the slot was freed without it: the CAS took T' (`Blocked`) and
/// the claim returned a thread that last ran on B (found by review; failed so at -smp 2).
/// On a host too slow to join, spawn and block within the half second (from the reuser's
/// go, `inject::claim_go`, right before its join: since 2026-12-05, until then from the
/// claimer's entry), the hold ends by its deadline and the test passes without having
/// forced anything.
#[cfg(debug_assertions)]
mod reused {
    use crate::harness::{SKIP, TestResult, check, join_all, ncpus, wait_for};
    use crate::sched::thread::{NEXT_SLOT, State, tcb};
    use crate::sched::{self, Builder, Tid, inject};
    use alloc::format;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use exo_arch::tsc::rdtsc;

    /// T' and the reuser stop.
    static DONE: AtomicBool = AtomicBool::new(false);
    /// The claimer has its answer.
    static CLAIMED: AtomicBool = AtomicBool::new(false);
    /// T' (raw id; 0: not spawned).
    static NEWCOMER: AtomicU64 = AtomicU64::new(0);

    fn ends(_: u64) -> u64 {
        0
    }

    /// T': blocks until `DONE` (60 s per wait; a spurious wake-up loops).
    fn newcomer(_: u64) -> u64 {
        let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
        while !DONE.load(Ordering::Acquire) {
            if sched::block_until(d, || !DONE.load(Ordering::Acquire)) {
                return 3;
            }
        }
        0
    }

    /// On B: once the claimer is inside its window, gives the hold its go, joins T, points
    /// the next spawn at T's slot and spawns T' on B; then waits for the claimer's answer.
    fn reuser(raw: u64) -> u64 {
        let t = Tid::from_raw(raw);
        if wait_for("the claimer inside its window", 10_000, inject::claim_held).is_err() {
            return 2;
        }
        inject::claim_go();
        let d = rdtsc() + 10 * crate::smp::time::tsc_hz();
        if sched::join_until(t, d) != Ok(0) {
            return 3;
        }
        NEXT_SLOT.store(t.index() as u32, Ordering::Relaxed);
        let Ok(n) = Builder::new().pin(sched::this_cpu()).spawn(newcomer, 0) else {
            return 4;
        };
        NEWCOMER.store(n.raw(), Ordering::Release);
        if n.index() != t.index() {
            return 5;
        }
        let _ = wait_for("the claimer's answer", 60_000, || {
            CLAIMED.load(Ordering::Acquire)
        });
        0
    }

    /// On C: claims T with the long hold armed. 0: refused; 10 + the CPU the claimed thread
    /// last ran on (given back at once); 4: no running thread.
    fn claimer(raw: u64) -> u64 {
        let code = match super::claim_held_open(Tid::from_raw(raw)) {
            Err(()) => 4,
            Ok(None) => 0,
            Ok(Some(on)) => 10 + u64::from(on),
        };
        CLAIMED.store(true, Ordering::Release);
        code
    }

    pub(super) fn run() -> TestResult {
        if ncpus() < 2 {
            return Err(format!("{SKIP}needs 2 CPUs"));
        }
        let (c, b) = (ncpus() - 1, 0);
        inject::reset_claim();
        DONE.store(false, Ordering::Release);
        CLAIMED.store(false, Ordering::Release);
        NEWCOMER.store(0, Ordering::Release);
        let spawn = |f: fn(u64) -> u64, cpu: u32, arg: u64| {
            Builder::new()
                .pin(cpu)
                .spawn(f, arg)
                .map_err(|e| format!("spawn: {e}"))
        };
        let t = spawn(ends, c, 0)?;
        wait_for("T ended on C", 10_000, || {
            tcb(t.index()).state() == State::Exited
        })?;
        let k = spawn(claimer, c, t.raw())?;
        let r = spawn(reuser, b, t.raw())?;
        let codes = join_all(&[k, r], 60_000);
        let saw = inject::claim_result();
        DONE.store(true, Ordering::Release);
        let n = NEWCOMER.load(Ordering::Acquire);
        let end = if n == 0 {
            Ok(alloc::vec![0])
        } else {
            sched::wake(Tid::from_raw(n));
            join_all(&[Tid::from_raw(n)], 30_000)
        };
        let codes = codes?;
        check(codes[0] < 10, || {
            format!(
                "the claim of an ended thread took the new thread of its slot, which last \
                 ran on CPU {}",
                codes[0] - 10
            )
        })?;
        check(codes == [0, 0] && saw != 0 && saw != 3, || {
            format!(
                "claimer ended {} (4: no running thread), reuser {} (2: the claim was never \
                 held, 3: T not joined, 4: no spawn, 5: T' not in T's slot), the hold ended \
                 {saw} (0: not reached, 3: no go from the reuser)",
                codes[0], codes[1]
            )
        })?;
        check(end? == [0], || "T' did not end cleanly".into())
    }
}
