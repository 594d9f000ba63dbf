//! The test job's own checks: the helpers tests lean on, and the checks that need a failing
//! test to prove themselves (each skipped unless its fault-injection option is on; CI runs
//! it with the option and expects the job to report it FAIL and exit with failure).

use super::{Needs, SKIP, TestResult};
use crate::boot::BootState;
use crate::ktest;
use crate::sched::{self, Tid};
use crate::smp::time::Deadline;
use alloc::format;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

ktest!(
    Needs::Threads,
    "harness.join_all_allocates_nothing_before_its_joins",
    join_all_with_the_heap_held
);

/// Set by [`hold_heap_until_joined`] once it holds the heap empty.
static HELD: AtomicBool = AtomicBool::new(false);
/// Set by the test thread just before its `join_all`.
static JOINING: AtomicBool = AtomicBool::new(false);
/// The joiner [`hold_heap_until_joined`] waits for: its tid's raw value.
static JOINER: AtomicU64 = AtomicU64::new(0);

/// Yields until `done` (30 s at most): a wait that lets the other side run on this CPU,
/// timer or not, and allocates nothing.
fn yield_until(done: impl Fn() -> bool) -> bool {
    Deadline::after_ms(30_000).spin_until_or(|| {
        done() || {
            sched::yield_now();
            false
        }
    })
}

/// Holds the heap empty until the test thread is blocked in its join, then gives it back
/// and exits: 0, or 1 if the joiner never blocked there (30 s).
fn hold_heap_until_joined(_: u64) -> u64 {
    let hoard = crate::mm::kalloc::Hoard::take_all();
    HELD.store(true, Ordering::Release);
    let joiner = Tid::from_raw(JOINER.load(Ordering::Acquire));
    let blocked = yield_until(|| JOINING.load(Ordering::Acquire) && sched::is_blocked(joiner));
    drop(hoard);
    u64::from(!blocked)
}

/// A thread holds the heap empty from before its spawner's `join_all` until the spawner is
/// blocked in it, as the out-of-memory tests' threads do: the join must allocate nothing
/// until the thread is joined. Until 2026-12-06 it allocated the codes' list first, and the
/// kernel panicked (the project's CI: a test thread preempted between its spawn and its
/// join on the one CPU online). Forced: the join starts only once the heap is held, and the
/// holder lets go only once the joiner has blocked in it.
fn join_all_with_the_heap_held(_: &BootState) -> TestResult {
    let me = sched::current().ok_or("no current thread")?;
    JOINER.store(me.raw(), Ordering::Release);
    HELD.store(false, Ordering::Release);
    JOINING.store(false, Ordering::Release);
    super::drain_all()?;
    let t = sched::spawn(hold_heap_until_joined, 0).map_err(|e| format!("spawn: {e}"))?;
    let held = yield_until(|| HELD.load(Ordering::Acquire));
    JOINING.store(true, Ordering::Release);
    let code = super::join_all(&[t], 60_000)?[0];
    if !held {
        return Err("the holder never held the heap (30 s)".into());
    }
    (code == 0)
        .then_some(())
        .ok_or_else(|| "the joiner never blocked in its join (30 s)".into())
}

ktest!(
    Needs::Threads,
    "harness.unexpected_kill_fails_its_test",
    unexpected_kill
);

fn panics(_: u64) -> u64 {
    panic!("deliberate panic in a test's thread (exo.fault_unexpected_kill=1)")
}

/// With `exo.fault_unexpected_kill=1`: a thread of this test is killed by a panic, the test
/// ignores its exit code and returns success. The harness counts kills per test, so it must
/// report this one FAIL (before 2026-12-04 it was `ok`: a test whose thread died unnoticed
/// passed). Without the option, skipped.
fn unexpected_kill(s: &BootState) -> TestResult {
    if !s.opts.fault_unexpected_kill {
        return Err(format!(
            "{SKIP}needs exo.fault_unexpected_kill=1 (the test must then FAIL)"
        ));
    }
    let t = crate::sched::spawn(panics, 0).map_err(|e| format!("spawn: {e}"))?;
    let _ignored = super::join_all(&[t], 10_000)?;
    Ok(())
}
