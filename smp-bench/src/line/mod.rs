//! The serial-log line formats: typed lines, formatting into any `core::fmt::Write`
//! (`Display`, no trailing newline) and parsing back ([`parse_line`]).
//!
//! ```text
//! SUITE,<suite>,<tsc_start>,<tsc_hz>,<mode>,<ncpus>,<git_rev>,<cpu_model>
//! BENCH,<name>,<n>,<mean>,<min>,<max>,<p50>,<p95>,<p99>
//! FAIR,<bench_name>,<ncpus>,<min_acq>,<max_acq>
//! END,<suite>,<n_results>
//! ```
//! Text fields are sanitised on output: `,` becomes `;` and control characters become spaces;
//! `cpu_model` (last, free text) is also trimmed of blanks and NULs.

mod format;
mod parse;

pub use format::{write_bench, write_fair};
pub use parse::parse_line;

use crate::{Mode, Stats};

/// `BENCH,<name>,<n>,<mean>,<min>,<max>,<p50>,<p95>,<p99>`: one result, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchLine<'a> {
    /// Row name (see [`crate::names`]).
    pub name: &'a str,
    /// The statistics, overhead already subtracted.
    pub stats: Stats,
}

/// `SUITE,<suite>,<tsc_start>,<tsc_hz>,<mode>,<ncpus>,<git_rev>,<cpu_model>`: starts a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteLine<'a> {
    /// Suite name (e.g. `smp`, `ipc`).
    pub suite: &'a str,
    /// TSC on the boot CPU when the suite started.
    pub tsc_start: u64,
    /// TSC frequency in Hz (0 if unknown).
    pub tsc_hz: u64,
    /// How the run was executed.
    pub mode: Mode,
    /// CPUs online.
    pub ncpus: u32,
    /// Source revision of the kernel (e.g. short git hash).
    pub git_rev: &'a str,
    /// CPUID brand string (last field: may contain spaces, commas are replaced).
    pub cpu_model: &'a str,
}

/// `FAIR,<bench_name>,<ncpus>,<min_acq>,<max_acq>`: fairness of a contention row, the fewest
/// and the most acquisitions any single CPU made during it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairLine<'a> {
    /// The `BENCH` row this belongs to (e.g. `contend.mcs.4`).
    pub name: &'a str,
    /// CPUs contending.
    pub ncpus: u32,
    /// Fewest acquisitions by one CPU.
    pub min_acq: u64,
    /// Most acquisitions by one CPU.
    pub max_acq: u64,
}

/// `END,<suite>,<n_results>`: closes a suite; `n_results` counts its `BENCH` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndLine<'a> {
    /// Suite name, as in its `SUITE` line.
    pub suite: &'a str,
    /// Number of `BENCH` lines the suite printed.
    pub n_results: u32,
}

/// Any parsed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A `BENCH` line.
    Bench(BenchLine<'a>),
    /// A `SUITE` line.
    Suite(SuiteLine<'a>),
    /// A `FAIR` line.
    Fair(FairLine<'a>),
    /// An `END` line.
    End(EndLine<'a>),
}
