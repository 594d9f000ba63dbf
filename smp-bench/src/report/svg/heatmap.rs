//! CPU × CPU heat map with the value in each cell and a colour bar.

use std::collections::BTreeMap;

use super::color::{hex, latency, text_on};
use super::doc::{Doc, compact};

/// Renders `cells[(from, to)] = value` (in `unit`: "ticks", "%") as an N × N matrix (N =
/// highest CPU index + 1). Rows are the sending CPU, columns the receiving one; pairs
/// without a value are grey.
pub(super) fn render(
    title: &str,
    subtitle: &str,
    unit: &str,
    cells: &BTreeMap<(u32, u32), u64>,
) -> String {
    let n = cells.keys().map(|&(a, b)| a.max(b) + 1).max().unwrap_or(1) as usize;
    let cs = (640.0 / n as f64).clamp(18.0, 60.0);
    let (left, top) = (88.0, 104.0);
    let g = cs * n as f64;
    let bar_x = left + g + 32.0;
    let w = (bar_x + 16.0 + 76.0).max(700.0);
    let h = top + g + 60.0;
    let lo = cells.values().copied().min().unwrap_or(0);
    let hi = cells.values().copied().max().unwrap_or(0);
    let t_of = |v: u64| {
        if hi > lo {
            (v - lo) as f64 / (hi - lo) as f64
        } else {
            0.5
        }
    };

    let mut d = Doc::new(w, h, title, subtitle);
    // Axis titles.
    d.text(
        left + g / 2.0,
        top - 30.0,
        "font-size=\"13\" text-anchor=\"middle\" fill=\"#333333\"",
        "receiving CPU (b) →",
    );
    let (ry, rx) = (top + g / 2.0, 30.0);
    d.text(
        rx,
        ry,
        &format!(
            "font-size=\"13\" text-anchor=\"middle\" fill=\"#333333\" \
             transform=\"rotate(-90 {rx:.1} {ry:.1})\""
        ),
        "sending CPU (a) →",
    );
    // CPU labels, thinned when cells are small.
    let every = (16.0 / cs).ceil().max(1.0) as usize;
    let lf = (cs * 0.45).clamp(9.0, 12.0);
    for i in (0..n).step_by(every) {
        let c = (i as f64 + 0.5) * cs;
        let attrs = format!("font-size=\"{lf:.0}\" fill=\"#444444\"");
        d.text(
            left + c,
            top - 8.0,
            &format!("{attrs} text-anchor=\"middle\""),
            &i.to_string(),
        );
        d.text(
            left - 8.0,
            top + c + lf * 0.35,
            &format!("{attrs} text-anchor=\"end\""),
            &i.to_string(),
        );
    }
    // Cells.
    let vf = (cs * 0.3).clamp(8.0, 13.0);
    for i in 0..n {
        for j in 0..n {
            let (x, y) = (left + j as f64 * cs, top + i as f64 * cs);
            let Some(&v) = cells.get(&(i as u32, j as u32)) else {
                d.rect(
                    x,
                    y,
                    cs,
                    cs,
                    "fill=\"#eeeeee\" stroke=\"#ffffff\" stroke-width=\"1\"",
                );
                continue;
            };
            let bg = latency(t_of(v));
            d.raw(format_args!(
                "<g><title>CPU {i} → CPU {j}: {v} {unit}</title>\n"
            ));
            d.rect(
                x,
                y,
                cs,
                cs,
                &format!("fill=\"{}\" stroke=\"#ffffff\" stroke-width=\"1\"", hex(bg)),
            );
            if let Some(label) = cell_label(v, cs, vf) {
                d.text(
                    x + cs / 2.0,
                    y + cs / 2.0 + vf * 0.35,
                    &format!(
                        "font-size=\"{vf:.1}\" text-anchor=\"middle\" fill=\"{}\"",
                        text_on(bg)
                    ),
                    &label,
                );
            }
            d.raw("</g>\n");
        }
    }
    colour_bar(&mut d, bar_x, top, g, lo, hi, unit);
    d.text(
        left,
        h - 18.0,
        "font-size=\"11\" fill=\"#777777\"",
        "grey: pair not measured · hover a cell for the exact value",
    );
    d.finish()
}

/// The number shown in a cell: in full if it fits, else compact, else nothing.
fn cell_label(v: u64, cs: f64, font: f64) -> Option<String> {
    if cs < 22.0 {
        return None;
    }
    let fits = |s: &str| s.len() as f64 * font * 0.6 <= cs - 4.0;
    [v.to_string(), compact(v)].into_iter().find(|s| fits(s))
}

/// Vertical gradient from `hi` (top, dark) to `lo` (bottom, bright) with 5 labelled ticks.
fn colour_bar(d: &mut Doc, x: f64, top: f64, g: f64, lo: u64, hi: u64, unit: &str) {
    d.raw("<defs><linearGradient id=\"latency-scale\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"1\">\n");
    for k in 0..=8 {
        let f = f64::from(k) / 8.0;
        d.raw(format_args!(
            "<stop offset=\"{f:.3}\" stop-color=\"{}\"/>\n",
            hex(latency(1.0 - f))
        ));
    }
    d.raw("</linearGradient></defs>\n");
    d.rect(
        x,
        top,
        16.0,
        g,
        "fill=\"url(#latency-scale)\" stroke=\"#999999\" stroke-width=\"0.5\"",
    );
    d.text(
        x - 2.0,
        top - 10.0,
        "font-size=\"11\" fill=\"#444444\"",
        unit,
    );
    let ticks = if hi > lo { 4 } else { 0 };
    for k in 0..=ticks {
        let f = if ticks == 0 {
            0.5
        } else {
            f64::from(k) / f64::from(ticks)
        };
        let v = lo + ((hi - lo) as f64 * f).round() as u64;
        let y = top + g * (1.0 - f);
        d.line(
            x + 16.0,
            y,
            x + 21.0,
            y,
            "stroke=\"#666666\" stroke-width=\"1\"",
        );
        d.text(
            x + 24.0,
            y + 4.0,
            "font-size=\"11\" fill=\"#444444\"",
            &compact(v),
        );
    }
}
