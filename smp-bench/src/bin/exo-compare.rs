//! `exo-compare <exo.csv> <linux-off.csv> [<linux-default.csv>] [--markdown] [--svg FILE]`
//!
//! Exo-OS beside Linux (`scripts/compare-linux.sh`, `just compare-linux`): one table of the
//! same operations, Exo-OS p50 (with the suite each figure comes from), Linux p50 with
//! `mitigations=off` and with the default mitigations, their ratios and the mode; with
//! `--svg`, a log-scale bar chart of the ratios. The CSVs are `scripts/extract-benches.sh`'s.
//! Exit status: 0 ok (also when rows are missing or modes differ: the table says so),
//! 1 unreadable or malformed input, 2 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use smp_bench::report::{self, compare, svg};

const USAGE: &str =
    "usage: exo-compare <exo.csv> <linux-off.csv> [<linux-default.csv>] [--markdown] [--svg FILE]";

#[derive(Debug, Default)]
struct Args {
    csvs: Vec<PathBuf>,
    svg: Option<PathBuf>,
    markdown: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--svg" => a.svg = Some(it.next().ok_or("--svg needs a file")?.into()),
            "--markdown" => a.markdown = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => a.csvs.push(arg.into()),
        }
    }
    if !(2..=3).contains(&a.csvs.len()) {
        return Err("expected two or three CSV files".into());
    }
    Ok(a)
}

fn rows(path: &Path) -> Result<Vec<report::Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    report::parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(a: Args) -> Result<(), String> {
    let exo = rows(&a.csvs[0])?;
    let off = rows(&a.csvs[1])?;
    let def = a.csvs.get(2).map(|p| rows(p)).transpose()?;
    let table = compare::compare(&exo, &off, def.as_deref());
    if a.markdown {
        print!("{}", compare::render_markdown(&table));
    } else {
        print!("{}", compare::render_text(&table));
    }
    let mismatched = table.iter().filter(|r| r.mode_mismatch()).count();
    if mismatched > 0 {
        eprintln!("exo-compare: {mismatched} row(s) mix modes: no ratio for them");
    }
    if let Some(path) = a.svg {
        std::fs::write(&path, svg::compare_chart(&table))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("exo-compare: wrote {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("exo-compare: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("exo-compare: {msg}");
            ExitCode::FAILURE
        }
    }
}
