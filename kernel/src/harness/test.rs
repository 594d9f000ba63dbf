//! The test job (`exo.job=test`): every registered `ktest!` whose name starts with
//! `exo.test=<prefix>` (all by default), the `Needs::Cpus` tests first, then the scheduler is
//! started on every CPU, then the `Needs::Threads` tests; by name within each phase. A
//! `KRUN,<name>` line as each starts (a run that hangs or times out names its test), and one
//! `KTEST,<name>,ok|skip,<why>|FAIL,<why>` line each, then the summary `N passed, N failed`
//! as the last line, and the debug-exit code. A filter that selects nothing is a failure, and
//! so is a filter piece that selects nothing (a mistyped or renamed test), and a run in which
//! every selected test was skipped (nothing was checked). A test during which a kernel thread
//! was killed by a panic or a fault fails, whatever it returned, unless it said it expects
//! that many kills ([`super::expect_kills`]); so does the job when a thread was killed
//! between tests or after the last (a thread a test left behind).

use super::SKIP;
use super::registry::{self, KTest, Needs};
use crate::boot::BootState;
use crate::console::exit;
use crate::kprintln;
use alloc::vec::Vec;
use exo_arch::exit::ExitCode;

/// The registered tests the filter (comma-separated name prefixes; empty = all) selects, in
/// run order. An empty piece selects nothing (`exo.test=no.such,` used to run every test).
pub fn selected(filter: &str) -> Vec<&'static KTest> {
    let mut v: Vec<&'static KTest> = registry::tests()
        .iter()
        .filter(|t| {
            filter.is_empty()
                || filter
                    .split(',')
                    .any(|p| !p.is_empty() && t.name.starts_with(p))
        })
        .collect();
    v.sort_by_key(|t| (t.needs, t.name));
    v
}

/// The pieces of `filter` (comma-separated name prefixes) that select no registered test.
pub fn unmatched(filter: &str) -> Vec<&str> {
    filter
        .split(',')
        .filter(|p| !p.is_empty() && !registry::tests().iter().any(|t| t.name.starts_with(p)))
        .collect()
}

/// Runs the selected tests and exits QEMU with the verdict.
pub fn run(state: &BootState) -> ! {
    let prefix = state.opts.test_filter.as_str();
    let tests = selected(prefix);
    kprintln!(
        "INFO,ktest,registered,{},selected,{},filter,{prefix}",
        registry::tests().len(),
        tests.len()
    );
    let (mut passed, mut failed) = (0u32, 0u32);
    let any = !tests.is_empty();
    if tests.is_empty() {
        failed += 1;
        kprintln!("KTEST,harness.filter,FAIL,no test name starts with {prefix:?}");
    } else {
        // Until 2026-12-05 a piece that matched nothing was ignored: a mistyped or renamed
        // test left a run's coverage without a word (found by review).
        for p in unmatched(prefix) {
            failed += 1;
            kprintln!(
                "KTEST,harness.filter,FAIL,no test name starts with {p:?} (a piece of the filter)"
            );
        }
    }
    let job_kills = crate::sched::kills();
    let mut counted_kills = 0;
    let mut phase = Needs::Cpus;
    for t in tests {
        if t.needs == Needs::Threads && phase == Needs::Cpus {
            phase = Needs::Threads;
            // Under icount the timer does not run (see boot): no preemption, sleepers polled.
            let timer = state.opts.mode != Some(smp_bench::Mode::Icount);
            let late = super::ncpus().saturating_sub(1);
            if state.opts.sched_start_delay_ms > 0 && late > 0 {
                let ticks = state
                    .opts
                    .sched_start_delay_ms
                    .saturating_mul(crate::smp::time::tsc_hz() / 1000);
                crate::sched::delay_scheduler_start(late, ticks);
            }
            if let Err(e) = crate::sched::init(timer, 1000) {
                kprintln!("KTEST,harness.scheduler_start,FAIL,{e}");
                failed += 1;
                break;
            }
            // Every online CPU runs its scheduler before a test counts on it (a pinned
            // spawn there is refused otherwise): until 2026-12-06 a CPU that missed its start
            // was only a warning, and the tests went on without it.
            let missing: alloc::vec::Vec<u32> = crate::smp::cpus::online()
                .map(|b| b.hot.cpu_id)
                .filter(|&c| crate::sched::cpu_sched(c).is_none())
                .collect();
            if !missing.is_empty() {
                kprintln!(
                    "KTEST,harness.scheduler_start,FAIL,CPUs {missing:?} did not start their scheduler"
                );
                failed += 1;
                break;
            }
            // Console rings before any test measures memory around user code.
            let _ = crate::user::syscall::prepare_console_rings();
        }
        super::expect_kills(0);
        let kills = crate::sched::kills();
        kprintln!("KRUN,{}", t.name);
        let start = exo_arch::tsc::rdtsc();
        let r = (t.run)(state);
        // How long each test ran (TSC-derived; ticks under icount): what to look at first
        // when a run grows or a test's deadline comes close.
        kprintln!(
            "KTIME,{},{}",
            t.name,
            crate::smp::time::ticks_to_us(exo_arch::tsc::rdtsc().wrapping_sub(start)) / 1000
        );
        let (killed, expected) = (crate::sched::kills() - kills, super::expected_kills());
        counted_kills += killed;
        // The harness's thread runs pinned to CPU 0 (the boot flow, `sched::init`); tests
        // that move it put it back. Until 2026-12-06 two left it free to run anywhere, and
        // every later test ran on whichever CPU it was moved to: a console test's ring on
        // "this CPU" could change under it, and a shootdown test's CPU left out was lost
        // (found by an audit for host-speed failures). Put back, and the test fails.
        let unpinned = phase == Needs::Threads
            && (crate::sched::pinned_to() != Some(0) || crate::sched::this_cpu() != 0);
        if unpinned {
            let _ = crate::sched::set_affinity(crate::sched::CpuSet::one(0));
        }
        let r = match r {
            Ok(()) if unpinned => Err(alloc::string::String::from(
                "the harness's thread was left unpinned from CPU 0 (it was put back)",
            )),
            r => r,
        };
        match r {
            Err(why) if !why.starts_with(SKIP) => {
                failed += 1;
                kprintln!("KTEST,{},FAIL,{why} ({})", t.name, t.file);
            }
            _ if killed != expected => {
                failed += 1;
                kprintln!(
                    "KTEST,{},FAIL,{killed} kernel thread(s) killed by a panic or a fault while it ran, {expected} expected (see the THREAD lines above) ({})",
                    t.name,
                    t.file
                );
            }
            Ok(()) => {
                passed += 1;
                kprintln!("KTEST,{},ok", t.name);
            }
            Err(why) => kprintln!("KTEST,{},skip,{}", t.name, &why[SKIP.len()..]),
        }
    }
    // Kills no test's count saw: between two tests, or after the last (until 2026-12-05 they
    // went unreported, found by review).
    let stray = (crate::sched::kills() - job_kills).saturating_sub(counted_kills);
    if stray != 0 {
        failed += 1;
        kprintln!(
            "KTEST,harness.kills_between_tests,FAIL,{stray} kernel thread(s) killed outside every test's run (see the THREAD lines above)"
        );
    }
    if any && passed == 0 && failed == 0 {
        failed += 1;
        kprintln!(
            "KTEST,harness.all_skipped,FAIL,every selected test was skipped: nothing was checked"
        );
    }
    kprintln!("{passed} passed, {failed} failed");
    exit(if failed == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
