//! Errors of the report inputs.

use std::fmt;

/// A malformed input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `bench_results.csv`: 1-based line number and what is wrong.
    Csv {
        /// 1-based line number.
        line: usize,
        /// Description.
        msg: String,
    },
    /// `targets.toml`: what is wrong.
    Targets(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Csv { line, msg } => write!(f, "csv line {line}: {msg}"),
            Error::Targets(msg) => write!(f, "targets: {msg}"),
        }
    }
}

impl std::error::Error for Error {}
