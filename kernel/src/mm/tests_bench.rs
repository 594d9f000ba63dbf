//! Kernel test of the contended suite's `scale.alloc64.<k>` row machinery (`bench::scale_row`):
//! a round in which no CPU made a pair is run again with a window twice as long, and after
//! `SCALE_TRIES` such rounds the row is reported broken. Nothing but a host that keeps every
//! vCPU off its core for a whole window makes a round empty, so the test forces empty rounds
//! with the row's injection switch (`bench::empty_scale_rounds_for_tests`).

use super::bench::{
    SCALE_TRIES, ScaleRow, empty_scale_rounds_for_tests, scale_late, scale_row, set_scale_lead,
};
use crate::boot::BootState;
use crate::harness::bench::broken_count;
use crate::harness::{Needs, SKIP, TestResult, check, ms};
use crate::ktest;
use alloc::format;
use exo_percpu::CpuId;

ktest!(
    Needs::Threads,
    "mm.scale_row_retries_empty_rounds_then_reports_broken",
    scale_row_retries
);

/// The first round's window of the test's rows: the contended suite's own (20 ms; five
/// rounds, 620 ms of windows). A row forced empty for all rounds but the last measures in a
/// 320 ms window: with 2 ms (32 ms) a vCPU of a 64-CPU guest on a 2-core host was once kept
/// off its core for all of it, and that row ended with no pair.
fn base_window() -> u64 {
    ms(20)
}

/// Runs the row `scale.alloc64.1` (the caller alone: no CPU needed besides its own) with the
/// first `empty` rounds forced empty; the row's end, how many forced rounds were left
/// unused, and the bench errors reported meanwhile.
fn run_row(empty: u32) -> (ScaleRow, u32, u32) {
    let cpu = CpuId(crate::sched::this_cpu());
    let errors = broken_count();
    empty_scale_rounds_for_tests(empty);
    let row = scale_row(1, &[cpu], "scale.alloc64.1", base_window());
    let left = empty_scale_rounds_for_tests(0);
    (row, left, broken_count() - errors)
}

/// With the first N rounds forced empty (N < `SCALE_TRIES`), the row still gets its sample,
/// from a window doubled once per empty round (N times, more only if the host kept this
/// vCPU off its core for a whole window: such a round is empty too, and said in the
/// message); with N >= `SCALE_TRIES` the row ends as no pair at all, with the message the
/// suite reports it broken with, after exactly `SCALE_TRIES` rounds (no round left
/// running, no other error reported), and the next row is measured as usual. Until
/// 2026-12-06 no test ran the retry: the rows ran it only on a host stall. Passes at
/// -smp 1 (the row's one CPU is the caller's).
fn scale_row_retries(_: &BootState) -> TestResult {
    set_scale_lead(ms(1));
    let base = base_window();
    for n in [0, 1, SCALE_TRIES - 1] {
        // With every round but the last forced empty, a host that keeps this vCPU off its
        // core through that one round's whole window (320 ms) empties it too: the row then
        // ends with no pair, by the host's luck. Such a round (the participant came after
        // its window's end: `scale_late`) is run again, and after 3 the test is skipped.
        let mut tries = 0;
        let (row, left, errors) = loop {
            let late = scale_late();
            let r = run_row(n);
            if !(matches!(r.0, ScaleRow::NoPair(_)) && scale_late() != late) {
                break r;
            }
            tries += 1;
            if tries == 3 {
                return Err(format!(
                    "{SKIP}{n} forced empty rounds: the one round left came after its window 3 times (the host kept this vCPU off its core)"
                ));
            }
        };
        check(left == 0 && errors == 0, || {
            format!("{n} forced empty rounds: {left} left unused, {errors} bench errors reported")
        })?;
        match row {
            ScaleRow::Sample {
                per_cpu,
                window,
                empty_rounds,
            } => check(
                !per_cpu.is_empty() && empty_rounds >= n && window == base << empty_rounds,
                || {
                    format!(
                        "{n} forced empty rounds: a sample of {} CPUs after {empty_rounds} empty \
                         rounds, window {window} ticks (want {base} << {empty_rounds}, at least \
                         {n} empty rounds)",
                        per_cpu.len()
                    )
                },
            )?,
            other => {
                return Err(format!(
                    "{n} forced empty rounds (of {SCALE_TRIES}): the row ended as {other:?}, not \
                     with a sample"
                ));
            }
        }
    }
    for n in [SCALE_TRIES, SCALE_TRIES + 1] {
        let (row, left, errors) = run_row(n);
        let want = format!("scale.alloc64.1: no CPU made a pair in {SCALE_TRIES} windows");
        check(
            matches!(&row, ScaleRow::NoPair(why) if *why == want)
                && left == n - SCALE_TRIES
                && errors == 0,
            || {
                format!(
                    "{n} forced empty rounds: the row ended as {row:?} (want NoPair(\"{want}\")), \
                     {left} forced rounds left unused (want {}), {errors} bench errors reported",
                    n - SCALE_TRIES
                )
            },
        )?;
    }
    // Nothing was left forced or broken: the next row is measured at once.
    let (row, left, errors) = run_row(0);
    check(
        matches!(&row, ScaleRow::Sample { per_cpu, .. } if !per_cpu.is_empty())
            && left == 0
            && errors == 0,
        || format!("the row after the broken ones: {row:?}, {errors} bench errors reported"),
    )
}
