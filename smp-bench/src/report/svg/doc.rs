//! A minimal SVG text builder.

use std::fmt::{Display, Write};

/// Font stack used by every chart.
const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";

/// An SVG document being written.
pub(super) struct Doc {
    s: String,
}

impl Doc {
    /// Opens the document: root element, accessible title, white background, and the
    /// chart title / subtitle at the top left.
    pub(super) fn new(w: f64, h: f64, title: &str, subtitle: &str) -> Doc {
        let mut d = Doc { s: String::new() };
        d.raw(format_args!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
             viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"{FONT}\" role=\"img\" \
             aria-label=\"{t}\">\n<title>{t}</title>\n",
            t = esc(title)
        ));
        d.rect(0.0, 0.0, w, h, "fill=\"#ffffff\"");
        d.text(
            24.0,
            30.0,
            "font-size=\"17\" font-weight=\"600\" fill=\"#1a1a1a\"",
            title,
        );
        d.text(24.0, 50.0, "font-size=\"12\" fill=\"#555555\"", subtitle);
        d
    }

    /// Appends raw markup (caller guarantees it is well-formed).
    pub(super) fn raw(&mut self, markup: impl Display) {
        let _ = write!(self.s, "{markup}");
    }

    /// `<rect>` with extra attributes.
    pub(super) fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, attrs: &str) {
        self.raw(format_args!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" {attrs}/>\n"
        ));
    }

    /// `<line>` with extra attributes.
    pub(super) fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, attrs: &str) {
        self.raw(format_args!(
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" {attrs}/>\n"
        ));
    }

    /// `<text>` with extra attributes; `content` is escaped.
    pub(super) fn text(&mut self, x: f64, y: f64, attrs: &str, content: &str) {
        self.raw(format_args!(
            "<text x=\"{x:.1}\" y=\"{y:.1}\" {attrs}>{}</text>\n",
            esc(content)
        ));
    }

    /// Horizontal grid lines from `x0` to `x1` at each tick (`y` maps a value to its row)
    /// with the tick's compact label right-aligned left of `x0`.
    pub(super) fn y_grid(&mut self, x0: f64, x1: f64, ticks: &[f64], y: impl Fn(f64) -> f64) {
        for &t in ticks {
            let yy = y(t);
            self.line(x0, yy, x1, yy, "stroke=\"#e6e6e6\" stroke-width=\"1\"");
            self.text(
                x0 - 8.0,
                yy + 4.0,
                "font-size=\"11\" text-anchor=\"end\" fill=\"#444444\"",
                &compact(t.round() as u64),
            );
        }
    }

    /// Closes the root element.
    pub(super) fn finish(mut self) -> String {
        self.s.push_str("</svg>\n");
        self.s
    }
}

/// XML-escapes text and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Short form of a tick count for labels: `950`, `1.2k`, `12k`, `3.4M`, `12G`.
pub(super) fn compact(v: u64) -> String {
    if v < 1000 {
        return v.to_string();
    }
    let x = v as f64;
    let units = [(1e3, "k"), (1e6, "M"), (1e9, "G")];
    for (i, (div, suffix)) in units.into_iter().enumerate() {
        let q = x / div;
        if q < 9.95 {
            let s = format!("{q:.1}");
            return format!("{}{suffix}", s.strip_suffix(".0").unwrap_or(&s));
        }
        if q.round() < 1000.0 || i == units.len() - 1 {
            return format!("{q:.0}{suffix}");
        }
    }
    unreachable!("the last unit always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        let cases = [
            (0, "0"),
            (950, "950"),
            (999, "999"),
            (1000, "1k"),
            (1234, "1.2k"),
            (1960, "2k"),
            (9_960, "10k"),
            (12_345, "12k"),
            (999_999, "1M"),
            (999_499, "999k"),
            (3_400_000, "3.4M"),
            (u64::MAX, "18446744074G"),
        ];
        for (v, s) in cases {
            assert_eq!(compact(v), s, "{v}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("a<b & \"c\" 'd'>\n"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt; "
        );
    }
}
