//! Line chart: ticks per hand-off against the number of contending CPUs, one line per lock.

use std::collections::BTreeMap;

use super::doc::{Doc, esc};
use super::scale::{Axis, nice_step};
use crate::names::LockKind;

/// One line of the chart.
pub(super) struct Series {
    /// Lock kind (decides colour, marker and legend text).
    pub lock: LockKind,
    /// `ncpus → p50 ticks per hand-off`.
    pub points: BTreeMap<u32, u64>,
}

/// A horizontal dashed reference line (a target).
pub(super) struct Guide {
    /// Legend / label text.
    pub label: String,
    /// Value in ticks.
    pub value: u64,
}

const W: f64 = 800.0;
const H: f64 = 480.0;
const X0: f64 = 88.0;
const X1: f64 = 600.0;
const Y0: f64 = 76.0;
const Y1: f64 = 400.0;

fn style(lock: LockKind) -> (&'static str, &'static str) {
    match lock {
        LockKind::Tas => ("#d62728", "TAS spin lock"),
        LockKind::Ticket => ("#1f77b4", "ticket spin lock"),
        LockKind::Mcs => ("#2ca02c", "MCS queue lock"),
        LockKind::Mutex => ("#9467bd", "mutex"),
        LockKind::Spin => ("#8c564b", "spin::Mutex (host)"),
    }
}

/// Renders the chart; `series` must hold at least one point overall.
pub(super) fn render(title: &str, subtitle: &str, series: &[Series], guides: &[Guide]) -> String {
    let values = series.iter().flat_map(|s| s.points.values().copied());
    let vals: Vec<u64> = values.chain(guides.iter().map(|g| g.value)).collect();
    let ymin = vals.iter().copied().min().unwrap_or(0) as f64;
    let ymax = vals.iter().copied().max().unwrap_or(1) as f64;
    let y_axis = Axis::auto(ymin, ymax * 1.05);
    let xs: Vec<u32> = {
        let mut v: Vec<u32> = series
            .iter()
            .flat_map(|s| s.points.keys().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (xlo, xhi) = match (xs.first(), xs.last()) {
        (Some(&a), Some(&b)) if a < b => (f64::from(a), f64::from(b)),
        (Some(&a), _) => (f64::from(a) - 1.0, f64::from(a) + 1.0),
        _ => (0.0, 1.0),
    };
    let px = |n: f64| X0 + 16.0 + (n - xlo) / (xhi - xlo) * (X1 - X0 - 32.0);
    let py = |v: f64| Y1 - y_axis.frac(v) * (Y1 - Y0);

    let mut d = Doc::new(W, H, title, subtitle);
    // Horizontal grid + y labels.
    d.y_grid(X0, X1, &y_axis.ticks, py);
    // x ticks: every CPU count measured when few, else a regular step.
    let xticks: Vec<f64> = if !xs.is_empty() && xs.len() <= 16 {
        xs.iter().map(|&n| f64::from(n)).collect()
    } else {
        let step = nice_step((xhi - xlo) / 8.0).max(1.0);
        let first = (xlo / step).ceil() * step;
        (0..)
            .map(|i| first + f64::from(i) * step)
            .take_while(|&v| v <= xhi)
            .collect()
    };
    for &t in &xticks {
        let x = px(t);
        d.line(x, Y0, x, Y1, "stroke=\"#f0f0f0\" stroke-width=\"1\"");
        d.line(x, Y1, x, Y1 + 5.0, "stroke=\"#333333\" stroke-width=\"1\"");
        d.text(
            x,
            Y1 + 19.0,
            "font-size=\"11\" text-anchor=\"middle\" fill=\"#444444\"",
            &format!("{t:.0}"),
        );
    }
    // Axes and titles.
    d.line(X0, Y1, X1, Y1, "stroke=\"#333333\" stroke-width=\"1.2\"");
    d.line(X0, Y0, X0, Y1, "stroke=\"#333333\" stroke-width=\"1.2\"");
    d.text(
        (X0 + X1) / 2.0,
        Y1 + 44.0,
        "font-size=\"13\" text-anchor=\"middle\" fill=\"#333333\"",
        "contending CPUs",
    );
    let (yx, yy) = (28.0, (Y0 + Y1) / 2.0);
    let ytitle = if y_axis.log {
        "ticks per hand-off, p50 (log scale)"
    } else {
        "ticks per hand-off, p50"
    };
    d.text(
        yx,
        yy,
        &format!(
            "font-size=\"13\" text-anchor=\"middle\" fill=\"#333333\" \
             transform=\"rotate(-90 {yx:.1} {yy:.1})\""
        ),
        ytitle,
    );
    // Target guides.
    for g in guides {
        let y = py(g.value as f64);
        d.line(
            X0,
            y,
            X1,
            y,
            "stroke=\"#555555\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"",
        );
        d.text(
            X1 - 4.0,
            y - 5.0,
            "font-size=\"11\" text-anchor=\"end\" fill=\"#444444\" stroke=\"#ffffff\" \
             stroke-width=\"3\" paint-order=\"stroke\"",
            &g.label,
        );
    }
    // Series.
    for (k, s) in series.iter().enumerate() {
        let (colour, name) = style(s.lock);
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(&n, &v)| format!("{:.1},{:.1}", px(f64::from(n)), py(v as f64)))
            .collect();
        d.raw(format_args!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\" \
             stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\n",
            pts.join(" ")
        ));
        for (&n, &v) in &s.points {
            d.raw(format_args!(
                "<g><title>{}: {n} CPUs, {v} ticks per hand-off</title>\n",
                esc(name)
            ));
            marker(&mut d, k, px(f64::from(n)), py(v as f64), colour);
            d.raw("</g>\n");
        }
    }
    legend(&mut d, series, !guides.is_empty());
    d.finish()
}

/// Marker shape `k` (circle, square, triangle, diamond) so lines differ without colour.
fn marker(d: &mut Doc, k: usize, x: f64, y: f64, colour: &str) {
    let attrs = format!("fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1.5\"");
    match k % 4 {
        0 => d.raw(format_args!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.5\" {attrs}/>\n"
        )),
        1 => d.rect(x - 4.0, y - 4.0, 8.0, 8.0, &attrs),
        2 => d.raw(format_args!(
            "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" {attrs}/>\n",
            x,
            y - 5.5,
            x + 5.0,
            y + 4.0,
            x - 5.0,
            y + 4.0
        )),
        _ => d.raw(format_args!(
            "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" {attrs}/>\n",
            x,
            y - 5.5,
            x + 5.5,
            y,
            x,
            y + 5.5,
            x - 5.5,
            y
        )),
    }
}

fn legend(d: &mut Doc, series: &[Series], with_guide: bool) {
    let x = X1 + 28.0;
    let rows = series.len() + usize::from(with_guide);
    d.rect(
        x - 12.0,
        Y0 - 4.0,
        172.0,
        rows as f64 * 24.0 + 14.0,
        "fill=\"#fafafa\" stroke=\"#dddddd\" rx=\"4\"",
    );
    for (k, s) in series.iter().enumerate() {
        let (colour, name) = style(s.lock);
        let y = Y0 + 14.0 + k as f64 * 24.0;
        d.line(
            x,
            y,
            x + 26.0,
            y,
            &format!("stroke=\"{colour}\" stroke-width=\"2.5\""),
        );
        marker(d, k, x + 13.0, y, colour);
        d.text(x + 34.0, y + 4.0, "font-size=\"12\" fill=\"#222222\"", name);
    }
    if with_guide {
        let y = Y0 + 14.0 + series.len() as f64 * 24.0;
        d.line(
            x,
            y,
            x + 26.0,
            y,
            "stroke=\"#555555\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"",
        );
        d.text(
            x + 34.0,
            y + 4.0,
            "font-size=\"12\" fill=\"#222222\"",
            "target",
        );
    }
}
