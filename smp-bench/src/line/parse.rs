//! Parsing of the lines, strict enough to reject corrupted (interleaved, truncated) output.

use super::{BenchLine, EndLine, FairLine, Line, SuiteLine};
use crate::Mode;
use crate::Stats;
use crate::names::{parse_u32, parse_u64};

/// Parses one line (trailing `\r`, `\n` and blanks ignored); `None` for anything that is
/// not a well-formed `BENCH`, `SUITE`, `FAIR` or `END` line.
///
/// Besides the field count and decimal integers, a `BENCH` line must pass
/// [`Stats::is_consistent`]; a `FAIR` line must have `min_acq ≤ max_acq`;
/// names and suites must be non-empty. This rejects most lines mangled by concurrent output.
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim_end();
    let (tag, rest) = line.split_once(',')?;
    match tag {
        "BENCH" => parse_bench(rest).map(Line::Bench),
        "SUITE" => parse_suite(rest).map(Line::Suite),
        "FAIR" => parse_fair(rest).map(Line::Fair),
        "END" => parse_end(rest).map(Line::End),
        _ => None,
    }
}

fn parse_bench(rest: &str) -> Option<BenchLine<'_>> {
    let [name, n, mean, min, max, p50, p95, p99] = fields(rest)?;
    let [n, mean, min, max, p50, p95, p99] = [n, mean, min, max, p50, p95, p99].map(parse_u64);
    let stats = Stats {
        n: n?,
        mean: mean?,
        min: min?,
        max: max?,
        p50: p50?,
        p95: p95?,
        p99: p99?,
    };
    (!name.is_empty() && stats.is_consistent()).then_some(BenchLine { name, stats })
}

fn parse_suite(rest: &str) -> Option<SuiteLine<'_>> {
    let mut it = rest.splitn(7, ',');
    let mut next = || it.next();
    let suite = next().filter(|s| !s.is_empty())?;
    let tsc_start = parse_u64(next()?)?;
    let tsc_hz = parse_u64(next()?)?;
    let mode = Mode::parse(next()?)?;
    let ncpus = parse_u32(next()?)?;
    let git_rev = next()?;
    let cpu_model = next()?;
    Some(SuiteLine {
        suite,
        tsc_start,
        tsc_hz,
        mode,
        ncpus,
        git_rev,
        cpu_model,
    })
}

fn parse_fair(rest: &str) -> Option<FairLine<'_>> {
    let [name, ncpus, min_acq, max_acq] = fields(rest)?;
    let line = FairLine {
        name,
        ncpus: parse_u32(ncpus)?,
        min_acq: parse_u64(min_acq)?,
        max_acq: parse_u64(max_acq)?,
    };
    (!name.is_empty() && line.min_acq <= line.max_acq).then_some(line)
}

fn parse_end(rest: &str) -> Option<EndLine<'_>> {
    let [suite, n_results] = fields(rest)?;
    let n_results = parse_u32(n_results)?;
    (!suite.is_empty()).then_some(EndLine { suite, n_results })
}

/// Exactly `K` comma-separated fields.
fn fields<const K: usize>(s: &str) -> Option<[&str; K]> {
    let mut out = [""; K];
    let mut it = s.split(',');
    for slot in &mut out {
        *slot = it.next()?;
    }
    it.next().is_none().then_some(out)
}
