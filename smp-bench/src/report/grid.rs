//! Rendering of a table of text cells: aligned plain text and GitHub-flavoured Markdown
//! (used by the status table and the Linux comparison).

/// Aligned plain text: header, a rule of dashes, one line per row; columns two spaces apart,
/// trailing spaces trimmed.
pub(super) fn aligned<const N: usize>(headers: [&str; N], body: &[[String; N]]) -> String {
    let mut width = headers.map(|h| h.chars().count());
    for r in body {
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
    let mut out = fmt_line(&headers.map(String::from));
    out += &fmt_line(&width.map(|w| "-".repeat(w)));
    for r in body {
        out += &fmt_line(r);
    }
    out
}

/// Markdown: header, the `---` row, one row per line (pipes in cells escaped).
pub(super) fn markdown<const N: usize>(headers: [&str; N], body: &[[String; N]]) -> String {
    let line = |cells: &[String]| {
        let esc: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", esc.join(" | "))
    };
    let mut out = line(&headers.map(String::from));
    out += &line(&headers.map(|_| "---".to_string()));
    for r in body {
        out += &line(r);
    }
    out
}
