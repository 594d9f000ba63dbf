//! `configs/targets.toml`: the seed's target table.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;

use super::Error;

/// Direction of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Comparator {
    /// Lower is better: met when `value <= target`.
    #[serde(rename = "<=")]
    Le,
    /// Higher is better: met when `value >= target`.
    #[serde(rename = ">=")]
    Ge,
}

impl Comparator {
    /// `true` when `value` meets `target`.
    pub fn meets(self, value: u64, target: u64) -> bool {
        match self {
            Comparator::Le => value <= target,
            Comparator::Ge => value >= target,
        }
    }

    /// `true` when `value` is strictly better than `reference`.
    pub fn beats(self, value: u64, reference: u64) -> bool {
        match self {
            Comparator::Le => value < reference,
            Comparator::Ge => value > reference,
        }
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparator::Le => "<=",
            Comparator::Ge => ">=",
        })
    }
}

/// Unit of a target (and of the values of its rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// TSC cycles (ticks).
    Cycles,
    /// Milliseconds.
    Ms,
    /// Packets per second.
    Pps,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Cycles => "cycles",
            Unit::Ms => "ms",
            Unit::Pps => "pps",
        })
    }
}

/// Which rows of the CSV give a target its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The p50 of the row named exactly like the target (or one of its `rows`).
    #[default]
    Exact,
    /// Rows `<prefix>.<ncpus>`: the p50 of the one with the smallest CPU count.
    MinNcpus,
    /// Rows `<prefix>.<a>.<b>`, one per CPU pair: the worst (largest) pair p50.
    PerPair,
}

/// One row of the seed's table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Seed ID (`3`, `3x`, `15b`, ...).
    pub id: String,
    /// Name in `BENCH` lines.
    pub name: String,
    /// What one sample is.
    pub definition: String,
    /// The seed's baseline as written (`~1100-1300`, `n/a`, ...).
    pub baseline: String,
    /// The baseline as a number to beat for `improving` (the better end of a range).
    #[serde(default)]
    pub baseline_value: Option<u64>,
    /// The target value, absent for report-only rows.
    #[serde(default)]
    pub target: Option<u64>,
    /// What to show in the target column when there is no numeric target.
    #[serde(default)]
    pub target_note: Option<String>,
    /// Direction, required with `target` or `baseline_value`.
    #[serde(default)]
    pub comparator: Option<Comparator>,
    /// Unit of the target and of the row values.
    pub unit: Unit,
    /// How the value is chosen among the rows.
    #[serde(default)]
    pub select: Select,
    /// Row names or prefixes to use instead of `name` (e.g. `contend.mutex`).
    #[serde(default)]
    pub rows: Vec<String>,
}

impl Target {
    /// The row names (or prefixes) this target reads: `rows`, or `name` when empty.
    pub fn row_names(&self) -> Vec<&str> {
        if self.rows.is_empty() {
            vec![self.name.as_str()]
        } else {
            self.rows.iter().map(String::as_str).collect()
        }
    }

    /// `<= 400 cycles`, `>= 15 M pps`, else the `target_note` or `-`.
    pub fn target_text(&self) -> String {
        match (self.comparator, self.target) {
            (Some(c), Some(t)) => format!("{c} {} {}", human(t), self.unit),
            _ => self.target_note.clone().unwrap_or_else(|| "-".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    target: Vec<Target>,
}

/// Parses and checks `targets.toml` (`[[target]]` tables): unique ids, a comparator
/// whenever a target or baseline value is given.
pub fn parse_targets(text: &str) -> Result<Vec<Target>, Error> {
    let file: File = toml::from_str(text).map_err(|e| Error::Targets(e.to_string()))?;
    let mut ids = HashSet::new();
    for t in &file.target {
        let bad = |msg: &str| Err(Error::Targets(format!("target {}: {msg}", t.id)));
        if !ids.insert(t.id.as_str()) {
            return bad("duplicate id");
        }
        if t.name.is_empty() {
            return bad("empty name");
        }
        if (t.target.is_some() || t.baseline_value.is_some()) && t.comparator.is_none() {
            return bad("`comparator` is required with `target` or `baseline_value`");
        }
        if t.comparator.is_some() && t.target.is_none() {
            return bad("`comparator` without `target`");
        }
    }
    Ok(file.target)
}

/// `15000000` → `15 M`; smaller or uneven numbers unchanged.
fn human(v: u64) -> String {
    if v >= 1_000_000 && v.is_multiple_of(100_000) {
        let (m, frac) = (v / 1_000_000, (v % 1_000_000) / 100_000);
        if frac == 0 {
            format!("{m} M")
        } else {
            format!("{m}.{frac} M")
        }
    } else {
        v.to_string()
    }
}
