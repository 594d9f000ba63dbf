//! The reap race of `finish_switch`, forced (debug kernels: `sched::inject`). A thread P
//! pinned to CPU A widens its affinity and yields to a filler thread Q of A (again while a
//! yield picks P straight back: its run class may be served before Q's); A holds right
//! after its unlock until P is exiting; meanwhile CPU B, whose one thread sleeps 100 µs at
//! a time (each sleep a scheduling pass with an empty queue: a steal attempt), steals P,
//! which returns and exits there; B holds its reap of P until A has finished its
//! `finish_switch`. A must not reap P (it decided with the state it read under its lock,
//! when P was only Ready); B reaps it. A regression (the decision read after the unlock)
//! makes A reap a thread B still runs: `reap` stops the machine with the reason.

use crate::boot::BootState;
use crate::harness::{Needs, TestResult};
use crate::ktest;

ktest!(
    Needs::Threads,
    "sched.reap_decided_under_the_lock",
    reap_race
);

fn reap_race(_: &BootState) -> TestResult {
    injected_test!(forced::run, crate::harness::SKIP)
}

#[cfg(debug_assertions)]
mod forced {
    use crate::harness::{SKIP, TestResult, check, join_all, ncpus};
    use crate::sched::{self, Builder, CpuSet};
    use alloc::format;
    use core::sync::atomic::{AtomicBool, Ordering};
    use exo_arch::tsc::rdtsc;

    /// The filler and the thief stop.
    static DONE: AtomicBool = AtomicBool::new(false);

    /// Q, the filler of A: yields until `DONE` (bounded).
    fn yield_loop(_: u64) -> u64 {
        let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
        while !DONE.load(Ordering::Acquire) && rdtsc() < d {
            sched::yield_now();
        }
        0
    }

    /// The thief on B: sleeps 1 ms at a time until `DONE` (bounded), so B schedules with its
    /// own queue empty again and again, and each time looks for a thread to steal. (100 µs
    /// sleeps, until 2026-12-05, could be over before a loaded host's debug kernel reached
    /// its pick: the thief was picked again, no steal tried.)
    fn thief(_: u64) -> u64 {
        let hz = crate::smp::time::tsc_hz();
        let d = rdtsc() + 60 * hz;
        while !DONE.load(Ordering::Acquire) && rdtsc() < d {
            sched::sleep_until(rdtsc() + hz / 1000);
        }
        0
    }

    /// P: on A, made stealable, armed, yields to Q; returns (and exits) wherever it is stolen to.
    /// A yield may pick P straight back: P is new, so its run class (short bursts: hot) can
    /// be served before Q's, which depends on how long Q's bursts took on this host. A never
    /// switched away then (the hold is still armed), and P yields again; the hot streak's
    /// budget lets Q run within a few yields. Stolen while still armed (a tick preempted it
    /// on A before its yield, B took it), P disarms, moves back to A, and arms again: only
    /// A's switch is held.
    fn victim(a: u64) -> u64 {
        let a = a as u32;
        let Some(me) = sched::current() else { return 1 };
        if sched::this_cpu() != a || sched::set_affinity(CpuSet::ANY).is_err() {
            return 2;
        }
        crate::sched::inject::arm(me.index(), a);
        let d = rdtsc() + 30 * crate::smp::time::tsc_hz();
        loop {
            if !crate::sched::inject::armed() {
                // A switched away from us (at a yield or a tick) and held until we were
                // exiting: we must be running elsewhere (3: on A, which decided while we
                // were only Ready).
                return if sched::this_cpu() != a { 0 } else { 3 };
            }
            if sched::this_cpu() != a {
                // Taken before A's held switch: disarmed (unless A's held switch has just
                // happened: then we are where we should be), back to A, stealable and armed
                // again. Moving back while armed could land us in A's queue during its
                // hold, which waits for us to exit.
                if !crate::sched::inject::disarm(me.index()) {
                    return 0;
                }
                if sched::set_affinity(CpuSet::one(a)).is_err()
                    || sched::this_cpu() != a
                    || sched::set_affinity(CpuSet::ANY).is_err()
                {
                    return 5;
                }
                crate::sched::inject::arm(me.index(), a);
            }
            if rdtsc() >= d {
                return 4;
            }
            sched::yield_now();
        }
    }

    pub(super) fn run() -> TestResult {
        if ncpus() < 2 {
            return Err(format!("{SKIP}needs 2 CPUs"));
        }
        let a = ncpus() - 1;
        let b = 0;
        DONE.store(false, Ordering::Release);
        let spawn = |f: fn(u64) -> u64, cpu: u32, arg: u64| {
            Builder::new()
                .pin(cpu)
                .spawn(f, arg)
                .map_err(|e| format!("spawn: {e}"))
        };
        let q = spawn(yield_loop, a, 0)?;
        let t = spawn(thief, b, 0)?;
        let p = spawn(victim, a, u64::from(a))?;
        let code = join_all(&[p], 60_000);
        DONE.store(true, Ordering::Release);
        let rest = join_all(&[q, t], 30_000);
        let (held_a, held_b) = crate::sched::inject::result();
        let diag = crate::sched::inject::diag();
        let code = code?;
        rest?;
        check(code == [0] && held_a == 1 && held_b == 1, || {
            format!(
                "victim ended {code:?} (0: ran on after A's hold on another CPU; 3: on A; 4: A \
                 never switched away from it in 30 s of yields; 5: it could not move back to \
                 A), A's hold \
                 ended {held_a} (1: the victim was exiting, 2: deadline), B's reap hold ended \
                 {held_b} (1: A was done, 2: deadline, 0: never reached); A's hold saw \
                 (state, cpu, A ready, A stealable, B switches, steals, current, ticks, \
                 halted, locked) {:?} at its start, {:?} at its end",
                &diag[..10],
                &diag[10..]
            )
        })
    }
}

ktest!(
    Needs::Threads,
    "sched.join_claimed_after_another_joiner_freed_the_slot_is_refused",
    join_claim_window
);

/// The outcome of `late_joiner`'s join: its code, or 1 << 62 plus 1 (no such thread),
/// 2 (timed out), 3 (another error).
const JOIN_ERR: u64 = 1 << 62;

fn returns_five(_: u64) -> u64 {
    5
}

/// Joins thread `raw` with a 3 s deadline.
fn late_joiner(raw: u64) -> u64 {
    let d = exo_arch::tsc::rdtsc() + crate::harness::ms(3000);
    match crate::sched::join_until(crate::sched::Tid::from_raw(raw), d) {
        Ok(c) => c,
        Err(crate::sched::SchedError::NoSuchThread) => JOIN_ERR + 1,
        Err(crate::sched::SchedError::TimedOut) => JOIN_ERR + 2,
        Err(_) => JOIN_ERR + 3,
    }
}

/// A join whose claim comes after another joiner took the thread's exit and freed its
/// slot is refused (`NoSuchThread`). Until 2026-12-04 the claim went on without looking
/// again: it waited on the free slot until its deadline (a `join` without one hung), or
/// took the join of the next thread spawned into the slot. Forced: the late joiner stops
/// between its check and its claim (`JOIN_CLAIM_HOLD`) while this thread joins.
fn join_claim_window(_: &BootState) -> TestResult {
    use super::thread::JOIN_CLAIM_HOLD;
    use crate::harness::{check, join_all};
    use crate::sched;
    use alloc::format;
    let t = sched::spawn(returns_five, 0).map_err(|e| format!("spawn: {e}"))?;
    JOIN_CLAIM_HOLD.arm();
    let late = match sched::spawn(late_joiner, t.raw()) {
        Ok(l) => l,
        Err(e) => {
            JOIN_CLAIM_HOLD.release();
            return Err(format!("spawn: {e}"));
        }
    };
    let reached = crate::harness::wait_for("the late joiner at its claim", 10_000, || {
        JOIN_CLAIM_HOLD.reached()
    });
    let first = join_all(&[t], 10_000);
    JOIN_CLAIM_HOLD.release();
    let second = join_all(&[late], 10_000)?[0];
    reached?;
    check(first? == [5], || "the first join did not get 5".into())?;
    check(second == JOIN_ERR + 1, || {
        format!(
            "the late join ended with {second:#x}, want NoSuchThread ({:#x}; {:#x}: it waited on the freed slot until its deadline)",
            JOIN_ERR + 1,
            JOIN_ERR + 2
        )
    })
}

ktest!(
    Needs::Threads,
    "sched.stale_join_leaves_the_new_thread_of_its_slot_joinable",
    stale_join
);

/// `stale_join`: T2 may end; the stale joiner is done.
static T2_GO: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
static STALE_DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// T2: waits until let go, then returns 7.
fn waits_then_seven(_: u64) -> u64 {
    use core::sync::atomic::Ordering;
    while !T2_GO.load(Ordering::Acquire) {
        crate::sched::block_unless(|| !T2_GO.load(Ordering::Acquire));
    }
    7
}

/// [`late_joiner`] that says when it is done.
fn stale_joiner(raw: u64) -> u64 {
    let code = late_joiner(raw);
    STALE_DONE.store(true, core::sync::atomic::Ordering::Release);
    code
}

/// A join through a stale id leaves the thread spawned into the slot since joinable by its
/// own joiner. J1 checks T and stops before its claim (`JOIN_CLAIM_HOLD`); this thread joins
/// T (the slot is freed); T2 is spawned into the same slot; J1 goes on, with a hold after
/// its claim (`JOIN_RECHECK_HOLD`); this thread then joins T2 (let go to end), which must
/// give T2's code, and J1's join must end with `NoSuchThread`. Until 2026-12-06 the joiner
/// word held the joiner alone: J1's claim took T2's word (it was 0) and stood until J1
/// looked at the generation again, so T2's join got `AlreadyJoined` (and had T2 ended in
/// that window, the reap would have woken J1, not its joiner; found by review). With the
/// generation in the word J1's claim fails and J1 never reaches the second hold. A try
/// whose spawn did not land in T's slot (another spawn took it) is a skip.
fn stale_join(_: &BootState) -> TestResult {
    use super::thread::{JOIN_CLAIM_HOLD, JOIN_RECHECK_HOLD, NEXT_SLOT};
    use crate::harness::{SKIP, check, join_all, ms, wait_for};
    use crate::sched::{self, SchedError};
    use alloc::format;
    use core::sync::atomic::Ordering;
    T2_GO.store(false, Ordering::Release);
    STALE_DONE.store(false, Ordering::Release);
    let t = sched::spawn(returns_five, 0).map_err(|e| format!("spawn T: {e}"))?;
    JOIN_CLAIM_HOLD.arm();
    let j1 = match sched::spawn(stale_joiner, t.raw()) {
        Ok(j) => j,
        Err(e) => {
            JOIN_CLAIM_HOLD.release();
            let _ = join_all(&[t], 10_000);
            return Err(format!("spawn J1: {e}"));
        }
    };
    let reached = wait_for("J1 at its claim", 10_000, || JOIN_CLAIM_HOLD.reached());
    let first = join_all(&[t], 10_000);
    NEXT_SLOT.store(t.index() as u32, Ordering::Relaxed);
    let t2 = sched::spawn(waits_then_seven, 0);
    JOIN_RECHECK_HOLD.arm();
    JOIN_CLAIM_HOLD.release();
    let j1_went_on = wait_for("J1 to end or claim", 10_000, || {
        STALE_DONE.load(Ordering::Acquire) || JOIN_RECHECK_HOLD.reached()
    });
    let j1_claimed = JOIN_RECHECK_HOLD.reached();
    if !j1_claimed {
        // Off before this thread's own join passes there.
        JOIN_RECHECK_HOLD.release();
    }
    T2_GO.store(true, Ordering::Release);
    let second = t2.as_ref().map(|&t2| {
        sched::wake(t2);
        sched::join_until(t2, exo_arch::tsc::rdtsc() + ms(10_000))
    });
    JOIN_RECHECK_HOLD.release();
    let j1_code = join_all(&[j1], 10_000);
    if let (Ok(t2), Ok(Err(_))) = (&t2, &second) {
        // Refused while J1's claim stood: joinable again now that J1 undid it.
        let _ = join_all(&[*t2], 10_000);
    }
    reached?;
    j1_went_on?;
    check(first? == [5], || "the first join of T did not get 5".into())?;
    let t2 = t2.map_err(|e| format!("spawn T2: {e}"))?;
    if t2.index() != t.index() {
        return Err(format!(
            "{SKIP}T2 went to slot {}, not T's ({}): nothing was forced",
            t2.index(),
            t.index()
        ));
    }
    let second = second.unwrap_or(Err(SchedError::NoSuchThread));
    check(second == Ok(7), || {
        format!(
            "the join of T2 (spawned into T's freed slot) got {second:?}, want Ok(7): J1's join \
             of T, stale, {} T2's joiner word",
            if j1_claimed {
                "had claimed"
            } else {
                "had not claimed"
            }
        )
    })?;
    let j1_code = j1_code?[0];
    check(j1_code == JOIN_ERR + 1, || {
        format!("J1's join of T ended with {j1_code:#x}, want NoSuchThread")
    })
}
