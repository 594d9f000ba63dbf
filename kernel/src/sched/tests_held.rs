//! Kernel tests of the spin locks held with interrupts on and preemptible ([`Held`]): a
//! taker whose holder this CPU preempted for it yields to that holder instead of spinning
//! (`Held::take`), with the timer emulated off as under icount, where nothing else would run
//! the holder again.

use super::Held;
use super::tests_notimer::{DISTANT_MS, WINDOW_MS, busy_wait, cpus_for_test};
use crate::boot::BootState;
use crate::harness::{Needs, SKIP, TestResult, check, join_all, ms, ncpus, wait_for};
use crate::ktest;
use crate::sched::{self, Builder, Tid};
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use exo_arch::tsc::rdtsc;

ktest!(
    Needs::Threads,
    "sched.lock_taker_yields_to_a_holder_it_preempted",
    taker_yields
);

/// The lock of the test, a spin lock taken as the address-space locks are (`Held::take`).
static LOCK: spin::Mutex<()> = spin::Mutex::new(());
/// H holds the lock, W may go on, W tries the lock, W got it.
static H_HOLDS: AtomicBool = AtomicBool::new(false);
static W_GO: AtomicBool = AtomicBool::new(false);
static W_TRYING: AtomicBool = AtomicBool::new(false);
static W_GOT: AtomicBool = AtomicBool::new(false);

/// H: takes the lock, then spins with it (preemptible, interrupts on) until W tries it, and
/// lets it go: only a thread that runs H again after W's try ends the test.
fn holder(_: u64) -> u64 {
    let d = rdtsc() + ms(DISTANT_MS);
    let g = Held::take(|| LOCK.try_lock());
    H_HOLDS.store(true, Ordering::Release);
    while !W_TRYING.load(Ordering::Acquire) && rdtsc() < d {
        core::hint::spin_loop();
    }
    drop(g);
    u64::from(!W_TRYING.load(Ordering::Acquire))
}

/// W: blocks until the test wakes it, then takes the lock.
fn taker(_: u64) -> u64 {
    while !W_GO.load(Ordering::Acquire) {
        sched::block_unless(|| !W_GO.load(Ordering::Acquire));
    }
    W_TRYING.store(true, Ordering::Release);
    let g = Held::take(|| LOCK.try_lock());
    W_GOT.store(true, Ordering::Release);
    drop(g);
    0
}

/// H, pinned to CPU x, holds the lock and spins; W, pinned to x and blocked, is woken from
/// this CPU with the timer emulated off, so the wake-up preempts H (it is preemptible: these
/// locks are held with interrupts on) and W runs, tries the lock and finds it held. W must
/// get it within `WINDOW_MS`: `Held::take` yields after its round of tries, H runs again
/// and lets the lock go. Until 2026-12-07 the taker spun for good (pinned, H is taken by no
/// other CPU, and without a timer no tick ends W's slice): under icount a thread woken onto
/// a CPU whose thread held an address space's tables, faulting on that space, hung the CPU
/// (found by an audit). Without the yield this test fails and CPU x stays lost. Needs 2 CPUs.
fn taker_yields(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let (_, x) = cpus_for_test();
    for f in [&H_HOLDS, &W_GO, &W_TRYING, &W_GOT] {
        f.store(false, Ordering::Release);
    }
    let spawn = |f, arg| {
        Builder::new()
            .pin(x)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    sched::emulate_timer_off(true);
    let mut tids: Vec<Tid> = Vec::new();
    let r = (|| -> TestResult {
        tids.push(spawn(taker, 0)?);
        wait_for("W to block", 10_000, || sched::is_blocked(tids[0]))?;
        tids.push(spawn(holder, 0)?);
        wait_for("H to hold the lock", 10_000, || {
            H_HOLDS.load(Ordering::Acquire)
        })?;
        W_GO.store(true, Ordering::Release);
        check(sched::wake(tids[0]), || "W was not blocked".into())?;
        check(busy_wait(&W_GOT, WINDOW_MS), || {
            format!(
                "W, woken onto CPU {x} while H held the lock there, did not get it in {} s \
                 (W tried: {})",
                WINDOW_MS / 1000,
                W_TRYING.load(Ordering::Acquire)
            )
        })
    })();
    // On a failure before the wake-up, W is let go (it then takes the lock H gives back).
    W_TRYING.store(true, Ordering::Release);
    W_GO.store(true, Ordering::Release);
    if let Some(&w) = tids.first() {
        sched::wake(w);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    sched::emulate_timer_off(false);
    r?;
    let codes = codes?;
    check(codes.iter().all(|&c| c == 0), || {
        format!("exit codes {codes:?} (W 0, H 0: W tried while H held the lock)")
    })
}
