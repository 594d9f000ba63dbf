//! The test and bench jobs. Tests and bench rows are defined beside the code they exercise
//! (`<subsystem>/tests.rs`, `<subsystem>/bench.rs`) and registered there with `ktest!` and
//! `kbench!` (`registry`); `test` and `bench` run what is registered, sorted, filtered by
//! `exo.test=<prefix>`; `locks` holds the measured locks and the contention runner.
//!
//! Tests and bench rows are leaves: they may call any subsystem, and no subsystem calls them.
//! This module is the top: the entry runs `boot`, then [`run`] the job it names.

pub mod bench;
pub mod locks;
pub mod registry;
pub mod test;

use crate::sched::{self, Tid};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
pub use registry::{Needs, Suite, TestResult};

/// Runs the job the command line names (`exo.job=boot|test|bench|contended`); never returns.
pub fn run(state: &crate::boot::BootState) -> ! {
    use crate::boot::cmdline::Job;
    match state.opts.job {
        Job::Boot => crate::boot::report(state),
        Job::Test => test::run(state),
        Job::Bench | Job::Contended => bench::run(state),
    }
}

/// Prefix of an `Err` that means "not applicable here" (printed as `skip`, not counted).
pub const SKIP: &str = "skip: ";

/// `Ok` when `cond` holds, else the message.
pub fn check(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg()) }
}

/// `n` milliseconds in TSC ticks.
pub fn ms(n: u64) -> u64 {
    n * (crate::smp::time::tsc_hz() / 1000).max(1)
}

/// CPUs online.
pub fn ncpus() -> u32 {
    crate::smp::cpus::online_count()
}

/// Joins every thread with one deadline; returns the exit codes. A join that times out dumps
/// the scheduler's state (`SCHED` lines) for the post-mortem.
pub fn join_all(tids: &[Tid], deadline_ms: u64) -> Result<Vec<u64>, String> {
    let deadline = exo_arch::tsc::rdtsc() + ms(deadline_ms);
    let mut codes = Vec::with_capacity(tids.len());
    for (k, &t) in tids.iter().enumerate() {
        match sched::join_until(t, deadline) {
            Ok(c) => codes.push(c),
            Err(e) => {
                sched::dump();
                return Err(format!(
                    "join of thread {k}/{} ({t}): {e} (switches {:?})",
                    tids.len(),
                    sched::counters()
                ));
            }
        }
    }
    Ok(codes)
}
