//! The test job's own checks that need a failing test to prove themselves: each is skipped
//! unless its fault-injection option is on, and CI runs it with the option and expects the
//! job to report it FAIL and exit with failure.

use super::{Needs, SKIP, TestResult};
use crate::boot::BootState;
use crate::ktest;
use alloc::format;

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
