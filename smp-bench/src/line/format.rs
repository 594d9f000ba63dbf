//! Formatting of the lines (`Display` impls and helpers for computed names).

use core::fmt::{self, Display, Write};

use super::{BenchLine, EndLine, FairLine, Line, SuiteLine};
use crate::Stats;

/// Writes `BENCH,<name>,...` and a newline. `name` may be computed, e.g. a
/// [`C2cName`](crate::names::C2cName) or `format_args!(...)`; it is sanitised.
pub fn write_bench<W: Write + ?Sized>(w: &mut W, name: impl Display, s: &Stats) -> fmt::Result {
    writeln!(
        w,
        "BENCH,{},{},{},{},{},{},{},{}",
        Field(name),
        s.n,
        s.mean,
        s.min,
        s.max,
        s.p50,
        s.p95,
        s.p99
    )
}

/// Writes `FAIR,<name>,<ncpus>,<min_acq>,<max_acq>` and a newline (`name` sanitised).
pub fn write_fair<W: Write + ?Sized>(
    w: &mut W,
    name: impl Display,
    ncpus: u32,
    min_acq: u64,
    max_acq: u64,
) -> fmt::Result {
    writeln!(w, "FAIR,{},{ncpus},{min_acq},{max_acq}", Field(name))
}

impl Display for BenchLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "BENCH,{},{},{},{},{},{},{},{}",
            Field(self.name),
            s.n,
            s.mean,
            s.min,
            s.max,
            s.p50,
            s.p95,
            s.p99
        )
    }
}

impl Display for SuiteLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let model = self
            .cpu_model
            .trim_matches(|c: char| c.is_whitespace() || c == '\0');
        write!(
            f,
            "SUITE,{},{},{},{},{},{},{}",
            Field(self.suite),
            self.tsc_start,
            self.tsc_hz,
            self.mode,
            self.ncpus,
            Field(self.git_rev),
            Field(model)
        )
    }
}

impl Display for FairLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FAIR,{},{},{},{}",
            Field(self.name),
            self.ncpus,
            self.min_acq,
            self.max_acq
        )
    }
}

impl Display for EndLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "END,{},{}", Field(self.suite), self.n_results)
    }
}

impl Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Bench(l) => l.fmt(f),
            Line::Suite(l) => l.fmt(f),
            Line::Fair(l) => l.fmt(f),
            Line::End(l) => l.fmt(f),
        }
    }
}

/// A text field: displays its content with `,` → `;` and control characters → space, so
/// it can neither split a field nor a line.
struct Field<T>(T);

impl<T: Display> Display for Field<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Sanitizer(f), "{}", self.0)
    }
}

struct Sanitizer<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Sanitizer<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.chars().any(needs_replacing) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            self.0.write_char(match c {
                ',' => ';',
                c if c.is_control() => ' ',
                c => c,
            })?;
        }
        Ok(())
    }
}

fn needs_replacing(c: char) -> bool {
    c == ',' || c.is_control()
}
