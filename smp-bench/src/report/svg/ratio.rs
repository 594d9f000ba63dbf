//! Horizontal bars of Exo-OS p50 / Linux p50 on a log axis, two bars per row (Linux with
//! `mitigations=off`, Linux with its default mitigations), drawn from 1 towards the ratio.

use super::doc::{Doc, esc};
use super::scale::Axis;

/// One row of the chart.
pub(super) struct Bar {
    /// Row label.
    pub label: String,
    /// Ratio against Linux with `mitigations=off`.
    pub off: Option<f64>,
    /// Ratio against Linux with its default mitigations.
    pub default: Option<f64>,
}

const W: f64 = 860.0;
const X0: f64 = 190.0;
const X1: f64 = 800.0;
const Y0: f64 = 96.0;
const ROW: f64 = 30.0;
const OFF: &str = "#1f77b4";
const DEFAULT: &str = "#ff7f0e";

fn label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Renders the chart; `bars` must hold at least one ratio.
pub(super) fn render(title: &str, subtitle: &str, bars: &[Bar]) -> String {
    let vals: Vec<f64> = bars
        .iter()
        .flat_map(|b| [b.off, b.default])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    let lo = vals.iter().copied().fold(1.0, f64::min);
    let hi = vals.iter().copied().fold(1.0, f64::max);
    let axis = Axis::log(lo.min(0.5), hi.max(2.0));
    let px = |v: f64| X0 + axis.frac(v.clamp(axis.lo, axis.hi)) * (X1 - X0);
    let y1 = Y0 + ROW * bars.len() as f64;
    let mut d = Doc::new(W, y1 + 70.0, title, subtitle);
    // Legend.
    for (i, (color, text)) in [
        (OFF, "Linux mitigations=off"),
        (DEFAULT, "Linux default mitigations"),
    ]
    .into_iter()
    .enumerate()
    {
        let x = X0 + i as f64 * 220.0;
        d.rect(x, 62.0, 12.0, 12.0, &format!("fill=\"{color}\""));
        d.text(x + 18.0, 72.0, "font-size=\"12\" fill=\"#333333\"", text);
    }
    // Grid and axis labels.
    for &t in &axis.ticks {
        let x = px(t);
        let text = format!("{t:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        let stroke = if t == 1.0 { "#333333" } else { "#e6e6e6" };
        d.line(
            x,
            Y0 - 6.0,
            x,
            y1,
            &format!("stroke=\"{stroke}\" stroke-width=\"1\""),
        );
        d.text(
            x,
            y1 + 16.0,
            "font-size=\"11\" text-anchor=\"middle\" fill=\"#444444\"",
            text,
        );
    }
    d.text(
        (X0 + X1) / 2.0,
        y1 + 38.0,
        "font-size=\"12\" text-anchor=\"middle\" fill=\"#333333\"",
        "Exo-OS p50 / Linux p50 (log scale; left of 1: Exo-OS takes fewer ticks)",
    );
    let one = px(1.0);
    for (i, b) in bars.iter().enumerate() {
        let y = Y0 + ROW * i as f64;
        d.text(
            X0 - 10.0,
            y + 17.0,
            "font-size=\"12\" text-anchor=\"end\" fill=\"#1a1a1a\"",
            &b.label,
        );
        for (j, (v, color)) in [(b.off, OFF), (b.default, DEFAULT)].into_iter().enumerate() {
            let by = y + 4.0 + j as f64 * 11.0;
            match v {
                Some(v) if v > 0.0 => {
                    let x = px(v);
                    let (left, right) = if x < one { (x, one) } else { (one, x) };
                    d.rect(
                        left,
                        by,
                        (right - left).max(1.0),
                        10.0,
                        &format!("fill=\"{color}\""),
                    );
                    let (tx, anchor) = if x < one {
                        (left - 4.0, "end")
                    } else {
                        (right + 4.0, "start")
                    };
                    d.raw(format_args!(
                        "<text x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"{anchor}\" fill=\"#333333\">{}</text>\n",
                        by + 9.0,
                        esc(&label(v))
                    ));
                }
                _ => d.text(
                    one + 4.0,
                    by + 9.0,
                    "font-size=\"10\" fill=\"#999999\"",
                    "no ratio",
                ),
            }
        }
    }
    d.finish()
}
