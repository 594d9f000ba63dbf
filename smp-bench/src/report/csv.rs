//! Reading `bench_results.csv` as written by `scripts/extract-benches.sh`.

use super::Error;
use crate::{Mode, Stats};

/// The header row of `bench_results.csv`.
pub const CSV_HEADER: &str = "suite,mode,name,n,mean,min,max,p50,p95,p99";

/// One `BENCH` result with the suite and mode of the `SUITE` line before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Suite name (empty if the log had no `SUITE` line before the result).
    pub suite: String,
    /// Mode, `None` if missing or unknown (then never trusted as real cycles).
    pub mode: Option<Mode>,
    /// Row name.
    pub name: String,
    /// The statistics, in ticks (or the unit the name implies, e.g. `boot.ms`).
    pub stats: Stats,
}

/// Parses the CSV: header first (blank lines and `\r` ignored), then 10 fields per row with
/// decimal integers that pass [`Stats::is_consistent`].
pub fn parse_csv(text: &str) -> Result<Vec<Row>, Error> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim() == CSV_HEADER => {}
        Some((line, h)) => {
            return Err(Error::Csv {
                line,
                msg: format!("expected header `{CSV_HEADER}`, found `{h}`"),
            });
        }
        None => {
            return Err(Error::Csv {
                line: 1,
                msg: "empty file".into(),
            });
        }
    }
    lines
        .map(|(line, l)| parse_row(l).map_err(|msg| Error::Csv { line, msg }))
        .collect()
}

fn parse_row(l: &str) -> Result<Row, String> {
    let f: Vec<&str> = l.split(',').collect();
    let [suite, mode, name, nums @ ..] = f.as_slice() else {
        return Err("too few fields".into());
    };
    if nums.len() != 7 {
        return Err(format!("expected 10 fields, found {}", f.len()));
    }
    let mut v = [0u64; 7];
    for (slot, s) in v.iter_mut().zip(nums) {
        *slot = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an unsigned integer"))?;
    }
    let [n, mean, min, max, p50, p95, p99] = v;
    let stats = Stats {
        n,
        mean,
        min,
        max,
        p50,
        p95,
        p99,
    };
    if name.trim().is_empty() {
        return Err("empty name".into());
    }
    if !stats.is_consistent() {
        return Err(format!("inconsistent statistics for `{name}`"));
    }
    Ok(Row {
        suite: suite.trim().to_string(),
        mode: Mode::parse(mode),
        name: name.trim().to_string(),
        stats,
    })
}
