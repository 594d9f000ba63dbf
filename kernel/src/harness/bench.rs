//! The bench jobs: `exo.job=bench` (suite `smp`: single-CPU rows) and `exo.job=contended`
//! (suite `contended`: core-to-core matrix, lock contention, scaling). Output: `SUITE`,
//! `BENCH`, `FAIR`, `END` lines (see `smp-bench`), integers in TSC ticks; the mode in the
//! SUITE line says what a tick is.
//!
//! The job measures the timing pair first (`tsc.pair`: every other row subtracts its
//! minimum), then runs the suite's registered `kbench!` groups sorted by name, and ends with
//! `boot.ms` (single suite).

use super::registry::{self, KBench, Suite};
use crate::boot::BootState;
use crate::boot::cmdline::Job;
use crate::console::exit;
use crate::kprintln;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt::Write;
use exo_arch::exit::ExitCode;
use exo_arch::tsc::{rdtsc, rdtsc_precise};
use smp_bench::{EndLine, Mode, Samples, Stats, SuiteLine};

/// `boot.ms`: the kernel's first instruction to the end of boot (all CPUs online and the
/// kernel's set-up done: `boot::done`, the `boot` job's `BOOT,done`), in milliseconds
/// rounded up, as targets.md defines target 16. Until 2026-12-05 it ended when the APs came
/// online, before the TSC check (seconds when an AP fails it) and the rest of the set-up.
pub(crate) fn boot_ms(state: &BootState) -> u64 {
    crate::smp::time::ticks_to_us(crate::boot::done().saturating_sub(state.first_tsc))
        .div_ceil(1000)
}

/// Samples per single-CPU row.
pub const N: usize = 2000;

/// What a bench group gets: the boot state, the timing pair's cost and a sample buffer.
#[derive(Debug)]
pub struct Bench<'a> {
    pub state: &'a BootState,
    /// Minimum of `tsc.pair`, subtracted from every timed sample.
    pub overhead: u64,
    /// A reusable buffer of [`N`] samples.
    pub s: &'a mut Samples<N>,
    /// Rows emitted so far (the END line's count).
    pub count: u32,
    /// The running group's name (for [`Bench::wants`]).
    pub group: &'static str,
}

impl Bench<'_> {
    /// Prints one BENCH row.
    pub fn emit(&mut self, name: &str, s: Option<Stats>) {
        emit(name, s, &mut self.count);
    }

    /// Whether the part of the running group that emits `rows` should run: no `exo.bench`
    /// filter, or an entry naming the group (a prefix of its name) with no row part or a
    /// row part that is a prefix of one of `rows` (`exo.bench=sched:ctx.switch.raw`: the
    /// plain `ctx.switch` ping-pong alone; the profiler's isolation). Groups that never ask
    /// run every row once selected.
    pub fn wants(&self, rows: &[&str]) -> bool {
        selected(self.state.opts.bench_filter.as_str(), self.group, rows)
    }
}

/// Whether `exo.bench`'s comma-separated entries (`group-prefix[:row-prefix]`, or
/// `group-prefix:row$` for that row alone) select `group` (`rows` empty) or the part of it
/// that emits `rows`.
fn selected(filter: &str, group: &str, rows: &[&str]) -> bool {
    filter.is_empty()
        || filter.split(',').filter(|e| !e.is_empty()).any(|e| {
            let (g, r) = e.split_once(':').unwrap_or((e, ""));
            let row = |n: &&str| match r.strip_suffix('$') {
                Some(exact) => *n == exact,
                None => n.starts_with(r),
            };
            group.starts_with(g) && (rows.is_empty() || rows.iter().any(row))
        })
}

/// Prints a line built whole first (the console lock is per line, so rows never interleave).
fn line(args: core::fmt::Arguments<'_>) {
    let mut buf = arrayvec::ArrayString::<256>::new();
    let _ = buf.write_fmt(args);
    kprintln!("{}", buf.trim_end());
}

/// Errors that make the run's results untrustworthy ([`broken`]).
static BROKEN: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Reports what makes the run's results untrustworthy (a lock that lost updates, a
/// participant that never finished): an `ERROR,bench,<why>` line, and the job exits with
/// failure after its `END` line.
pub fn broken(why: core::fmt::Arguments<'_>) {
    BROKEN.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    line(format_args!("ERROR,bench,{why}"));
}

/// How many errors [`broken`] reported so far (tests: a row machinery run by a test
/// reports none besides the one it checks).
pub fn broken_count() -> u32 {
    BROKEN.load(core::sync::atomic::Ordering::Relaxed)
}

/// Prints one BENCH row. A row without samples (its benchmark failed: a call that erred,
/// a join that timed out) is [`broken`]: the job fails. Until 2026-12-04 it was a warning,
/// and the row just went missing from the results and the icount gate.
pub fn emit(name: &str, s: Option<Stats>, count: &mut u32) {
    match s {
        Some(s) => {
            line(format_args!("{}", smp_bench::BenchLine { name, stats: s }));
            *count += 1;
        }
        None => broken(format_args!("{name}: no samples")),
    }
}

/// [`emit`] for a row whose samples depend on the host's timing, which may give none
/// without anything being wrong (a contended lock that never passed between CPUs during
/// the window: vCPUs are host threads, and an oversubscribed host may not run two at
/// once): a warning, not a failure (the job must not fail on the host's luck).
pub fn emit_if_any(name: &str, s: Option<Stats>, count: &mut u32) {
    match s {
        Some(_) => emit(name, s, count),
        None => log::warn!("bench {name}: no samples (no hand-off between CPUs in the window)"),
    }
}

/// Prints one FAIR row.
pub fn emit_fair(name: &str, ncpus: u32, min_acq: u64, max_acq: u64) {
    line(format_args!(
        "{}",
        smp_bench::FairLine {
            name,
            ncpus,
            min_acq,
            max_acq
        }
    ));
}

/// The mode: from the command line, else what boot detected.
fn mode(state: &BootState) -> Mode {
    state.opts.mode.unwrap_or(Mode::Tcg)
}

/// The registered groups of `suite`, in run order.
pub fn groups(suite: Suite) -> Vec<&'static KBench> {
    let mut v: Vec<&'static KBench> = registry::benches()
        .iter()
        .filter(|b| b.suite == suite)
        .collect();
    v.sort_by_key(|b| b.name);
    v
}

/// Runs the suite the job names and exits.
pub fn run(state: &BootState) -> ! {
    let (suite, name) = if state.opts.job == Job::Contended {
        (Suite::Contended, "contended")
    } else {
        (Suite::Single, "smp")
    };
    let mut model = [0u8; 48];
    let header = SuiteLine {
        suite: name,
        tsc_start: rdtsc(),
        tsc_hz: state.tsc.0,
        mode: mode(state),
        ncpus: crate::smp::cpus::online_count(),
        git_rev: env!("EXO_GIT_REV"),
        cpu_model: exo_arch::cpu::model_name(&mut model),
    };
    line(format_args!("{header}"));
    let mut s: Box<Samples<N>> = Box::new(Samples::new());
    let mut b = Bench {
        state,
        overhead: 0,
        s: &mut s,
        count: 0,
        group: "",
    };
    // The timing pair itself, raw (this is what every other row has subtracted).
    b.s.clear();
    for _ in 0..N {
        let t0 = rdtsc_precise();
        let t1 = rdtsc_precise();
        b.s.push(t1 - t0);
    }
    b.overhead = b.s.stats(0).map_or(0, |st| st.min);
    if suite == Suite::Single {
        let st = b.s.stats(0);
        b.emit("tsc.pair", st);
    }
    let filter = state.opts.bench_filter.as_str();
    let mut ran = 0;
    for g in groups(suite) {
        if selected(filter, g.name, &[]) {
            b.group = g.name;
            (g.run)(&mut b);
            ran += 1;
        }
    }
    if ran == 0 {
        broken(format_args!(
            "exo.bench={filter} names no group of the {name} suite"
        ));
    }
    if suite == Suite::Single {
        b.emit("boot.ms", Some(Stats::one(boot_ms(state))));
    }
    let n_results = b.count;
    line(format_args!(
        "{}",
        EndLine {
            suite: name,
            n_results
        }
    ));
    exit(if BROKEN.load(core::sync::atomic::Ordering::Relaxed) == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
