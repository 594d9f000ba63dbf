//! The status table, as aligned text or Markdown.

use super::{Row, Status, Target, select, status};

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
    /// Status.
    pub status: Status,
}

const HEADERS: [&str; 7] = ["ID", "name", "baseline", "target", "p50", "mode", "status"];

/// One [`TableRow`] per target, in file order.
pub fn build_table(targets: &[Target], rows: &[Row]) -> Vec<TableRow> {
    targets
        .iter()
        .map(|t| {
            let m = select(t, rows);
            let (value, mode) = match &m {
                None => ("-".to_string(), "-".to_string()),
                Some(m) => (
                    match &m.detail {
                        Some(d) => format!("{} ({d})", m.value),
                        None => m.value.to_string(),
                    },
                    m.row.mode.map_or("unknown", |md| md.as_str()).to_string(),
                ),
            };
            TableRow {
                id: t.id.clone(),
                name: t.name.clone(),
                baseline: t.baseline.clone(),
                target: t.target_text(),
                value,
                mode,
                status: status(t, m.as_ref()),
            }
        })
        .collect()
}

fn cells(r: &TableRow) -> [String; 7] {
    [
        r.id.clone(),
        r.name.clone(),
        r.baseline.clone(),
        r.target.clone(),
        r.value.clone(),
        r.mode.clone(),
        r.status.as_str().to_string(),
    ]
}

/// Aligned plain-text table with a header and a rule.
pub fn render_text(rows: &[TableRow]) -> String {
    let body: Vec<[String; 7]> = rows.iter().map(cells).collect();
    let mut width = HEADERS.map(|h| h.chars().count());
    for r in &body {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt_line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = fmt_line(&HEADERS.map(String::from));
    out += &fmt_line(&width.map(|w| "-".repeat(w)));
    for r in &body {
        out += &fmt_line(r);
    }
    out
}

/// GitHub-flavoured Markdown table (pipes in cells escaped).
pub fn render_markdown(rows: &[TableRow]) -> String {
    let line = |cells: &[String]| {
        let esc: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", esc.join(" | "))
    };
    let mut out = line(&HEADERS.map(String::from));
    out += &line(&HEADERS.map(|_| "---".to_string()));
    for r in rows {
        out += &line(&cells(r));
    }
    out
}
