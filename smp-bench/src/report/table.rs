//! The status table, as aligned text or Markdown.
//!
//! Per target: the figure of the run's own mode (`tcg`, `kvm` or `native`: the most trusted
//! row, [`select`]), the deterministic figure (`icount`: guest instructions) beside it, and,
//! when a Linux comparison was run in `icount` ([`compare`](super::compare)), the icount
//! figure divided by Linux's for the same operation.

use super::compare::PAIRS;
use super::{Measurement, Row, Status, Target, select, status};
use crate::Mode;

/// One line of the table, every cell already formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    /// Seed ID.
    pub id: String,
    /// Row name.
    pub name: String,
    /// Seed baseline text.
    pub baseline: String,
    /// `<= 400 cycles` etc.
    pub target: String,
    /// This run's p50 (with how it was chosen), `-` when pending.
    pub value: String,
    /// Mode of the row used, `-` when pending.
    pub mode: String,
    /// The p50 of the `icount` rows (guest instructions), `-` when none.
    pub icount: String,
    /// `icount` p50 / Linux's `icount` p50 for the same operation, `-` when there is no
    /// such pair (or no Linux run).
    pub linux: String,
    /// Status.
    pub status: Status,
}

const HEADERS: [&str; 9] = [
    "ID", "name", "baseline", "target", "p50", "mode", "icount", "/ Linux", "status",
];

/// One [`TableRow`] per target, in file order (no Linux column).
pub fn build_table(targets: &[Target], rows: &[Row]) -> Vec<TableRow> {
    build_table_with_linux(targets, rows, None)
}

/// `"<value> (<detail>)"`.
fn value_text(m: &Measurement<'_>) -> String {
    match &m.detail {
        Some(d) => format!("{} ({d})", m.value),
        None => m.value.to_string(),
    }
}

/// The Linux peer's p50 for the operation `row` measures (a [`PAIRS`] entry naming its
/// suite and name), from the latest `linux` row of the same mode.
fn linux_p50(row: &Row, linux: &[Row]) -> Option<u64> {
    let pair = PAIRS.iter().find(|p| {
        p.exo
            .is_ok_and(|src| src.suite == row.suite && src.name == row.name)
    })?;
    let name = pair.linux.ok()?;
    linux
        .iter()
        .rev()
        .find(|l| l.suite == "linux" && l.name == name && l.mode == row.mode)
        .map(|l| l.stats.p50)
}

/// One [`TableRow`] per target, in file order; `linux`: the Linux peer's rows
/// (`scripts/compare-linux.sh`'s `linux-off.csv`) for the ratio column.
pub fn build_table_with_linux(
    targets: &[Target],
    rows: &[Row],
    linux: Option<&[Row]>,
) -> Vec<TableRow> {
    let (icount, other): (Vec<Row>, Vec<Row>) = rows
        .iter()
        .cloned()
        .partition(|r| r.mode == Some(Mode::Icount));
    targets
        .iter()
        .map(|t| {
            let m = select(t, &other);
            let mi = select(t, &icount);
            let (value, mode) = match &m {
                None => ("-".to_string(), "-".to_string()),
                Some(m) => (
                    value_text(m),
                    m.row.mode.map_or("unknown", |md| md.as_str()).to_string(),
                ),
            };
            let ratio = mi.as_ref().and_then(|mi| {
                let l = linux_p50(mi.row, linux?)?;
                (l != 0).then(|| mi.value as f64 / l as f64)
            });
            TableRow {
                id: t.id.clone(),
                name: t.name.clone(),
                baseline: t.baseline.clone(),
                target: t.target_text(),
                value,
                mode,
                icount: mi.as_ref().map_or("-".to_string(), value_text),
                linux: match ratio {
                    Some(r) if r >= 10.0 => format!("{r:.1}x"),
                    Some(r) => format!("{r:.2}x"),
                    None => "-".to_string(),
                },
                status: status(t, m.as_ref().or(mi.as_ref())),
            }
        })
        .collect()
}

fn cells(r: &TableRow) -> [String; 9] {
    [
        r.id.clone(),
        r.name.clone(),
        r.baseline.clone(),
        r.target.clone(),
        r.value.clone(),
        r.mode.clone(),
        r.icount.clone(),
        r.linux.clone(),
        r.status.as_str().to_string(),
    ]
}

/// Aligned plain-text table with a header and a rule.
pub fn render_text(rows: &[TableRow]) -> String {
    let body: Vec<[String; 9]> = rows.iter().map(cells).collect();
    super::grid::aligned(HEADERS, &body)
}

/// GitHub-flavoured Markdown table (pipes in cells escaped).
pub fn render_markdown(rows: &[TableRow]) -> String {
    let body: Vec<[String; 9]> = rows.iter().map(cells).collect();
    super::grid::markdown(HEADERS, &body)
}
