//! The fake-nginx chart: requests per second against the number of CPUs (bars, left axis)
//! with the per-request latency p50 and p99 (lines, right axis, ticks).

use std::collections::BTreeMap;

use super::doc::{Doc, compact, esc};
use super::scale::Axis;

/// One CPU count's figures; either half may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Point {
    /// Requests per second (`nginx.rps.<n>`).
    pub rps: Option<u64>,
    /// Latency p50 and p99 in ticks (`nginx.lat.<n>`).
    pub lat: Option<(u64, u64)>,
}

const W: f64 = 800.0;
const H: f64 = 480.0;
const X0: f64 = 88.0;
const X1: f64 = 600.0;
const Y0: f64 = 76.0;
const Y1: f64 = 400.0;

const BAR: &str = "#1f77b4";
const P50: &str = "#2ca02c";
const P99: &str = "#d62728";

/// Renders the chart; `points` (CPUs → figures) must not be empty.
/// The labels that differ between charts drawn this way.
#[derive(Debug, Clone, Copy)]
pub(super) struct Labels<'a> {
    /// Under the CPU axis.
    pub x: &'a str,
    /// The latency unit ("ticks per request", "µs per request").
    pub lat: &'a str,
}

pub(super) fn render(
    title: &str,
    subtitle: &str,
    points: &BTreeMap<u32, Point>,
    labels: Labels<'_>,
) -> String {
    let rps_max = points.values().filter_map(|p| p.rps).max().unwrap_or(1);
    let rps_axis = Axis::linear_from_zero(rps_max as f64 * 1.05);
    let lats: Vec<u64> = points
        .values()
        .filter_map(|p| p.lat)
        .flat_map(|(a, b)| [a, b])
        .collect();
    let lat_axis = Axis::auto(
        lats.iter().copied().min().unwrap_or(0) as f64,
        lats.iter().copied().max().unwrap_or(1) as f64 * 1.05,
    );
    // One slot per CPU count measured, in order (so gaps in the sweep do not stretch bars).
    let slots = points.len() as f64;
    let slot_w = (X1 - X0) / slots;
    let cx = |i: usize| X0 + slot_w * (i as f64 + 0.5);
    let py_rps = |v: f64| Y1 - rps_axis.frac(v) * (Y1 - Y0);
    let py_lat = |v: f64| Y1 - lat_axis.frac(v) * (Y1 - Y0);

    let mut d = Doc::new(W, H, title, subtitle);
    // Grid and left labels (requests/s).
    d.y_grid(X0, X1, &rps_axis.ticks, py_rps);
    // Right labels (latency ticks), when there are latencies.
    if !lats.is_empty() {
        for &t in &lat_axis.ticks {
            let y = py_lat(t);
            d.line(X1, y, X1 + 5.0, y, "stroke=\"#333333\" stroke-width=\"1\"");
            d.text(
                X1 + 8.0,
                y + 4.0,
                "font-size=\"11\" text-anchor=\"start\" fill=\"#444444\"",
                &compact(t.round() as u64),
            );
        }
    }
    // Bars.
    for (i, (&n, p)) in points.iter().enumerate() {
        let x = cx(i);
        d.line(x, Y1, x, Y1 + 5.0, "stroke=\"#333333\" stroke-width=\"1\"");
        d.text(
            x,
            Y1 + 19.0,
            "font-size=\"11\" text-anchor=\"middle\" fill=\"#444444\"",
            &n.to_string(),
        );
        let Some(rps) = p.rps else { continue };
        let y = py_rps(rps as f64);
        let bw = (slot_w * 0.6).min(90.0);
        d.raw(format_args!(
            "<g><title>{n} CPUs: {rps} requests/s</title>\n"
        ));
        d.rect(
            x - bw / 2.0,
            y,
            bw,
            Y1 - y,
            &format!("fill=\"{BAR}\" fill-opacity=\"0.75\""),
        );
        d.raw("</g>\n");
        d.text(
            x,
            y - 6.0,
            "font-size=\"11\" text-anchor=\"middle\" fill=\"#1a1a1a\"",
            &compact(rps),
        );
    }
    // Latency lines.
    for (k, (colour, name)) in [(P50, "p50"), (P99, "p99")].into_iter().enumerate() {
        let pts: Vec<(usize, u32, u64)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, (&n, p))| p.lat.map(|(a, b)| (i, n, if k == 0 { a } else { b })))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let line: Vec<String> = pts
            .iter()
            .map(|&(i, _, v)| format!("{:.1},{:.1}", cx(i), py_lat(v as f64)))
            .collect();
        let dash = if k == 0 {
            ""
        } else {
            " stroke-dasharray=\"6 3\""
        };
        d.raw(format_args!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\" \
             stroke-linejoin=\"round\" stroke-linecap=\"round\"{dash}/>\n",
            line.join(" ")
        ));
        for &(i, n, v) in &pts {
            d.raw(format_args!(
                "<g><title>{}: {n} CPUs, {v} {}</title>\n",
                esc(name),
                esc(labels.lat)
            ));
            d.raw(format_args!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"{colour}\" stroke=\"#ffffff\" \
                 stroke-width=\"1.5\"/>\n",
                cx(i),
                py_lat(v as f64)
            ));
            d.raw("</g>\n");
        }
    }
    // Axes and titles.
    d.line(X0, Y1, X1, Y1, "stroke=\"#333333\" stroke-width=\"1.2\"");
    d.line(X0, Y0, X0, Y1, "stroke=\"#333333\" stroke-width=\"1.2\"");
    d.line(X1, Y0, X1, Y1, "stroke=\"#333333\" stroke-width=\"1.2\"");
    d.text(
        (X0 + X1) / 2.0,
        Y1 + 44.0,
        "font-size=\"13\" text-anchor=\"middle\" fill=\"#333333\"",
        labels.x,
    );
    let (yx, yy) = (28.0, (Y0 + Y1) / 2.0);
    d.text(
        yx,
        yy,
        &format!(
            "font-size=\"13\" text-anchor=\"middle\" fill=\"#333333\" \
             transform=\"rotate(-90 {yx:.1} {yy:.1})\""
        ),
        "requests per second",
    );
    let (rx, ry) = (X1 + 58.0, (Y0 + Y1) / 2.0);
    d.text(
        rx,
        ry,
        &format!(
            "font-size=\"13\" text-anchor=\"middle\" fill=\"#333333\" \
             transform=\"rotate(90 {rx:.1} {ry:.1})\""
        ),
        &if lat_axis.log {
            format!("{} (log scale)", labels.lat)
        } else {
            labels.lat.to_string()
        },
    );
    legend(&mut d);
    d.finish()
}

fn legend(d: &mut Doc) {
    let x = X1 + 86.0;
    d.rect(
        x - 12.0,
        Y0 - 4.0,
        118.0,
        3.0 * 24.0 + 14.0,
        "fill=\"#fafafa\" stroke=\"#dddddd\" rx=\"4\"",
    );
    let y = Y0 + 14.0;
    d.rect(
        x + 5.0,
        y - 7.0,
        16.0,
        14.0,
        &format!("fill=\"{BAR}\" fill-opacity=\"0.75\""),
    );
    d.text(
        x + 34.0,
        y + 4.0,
        "font-size=\"12\" fill=\"#222222\"",
        "requests/s",
    );
    for (k, (colour, name, dash)) in [
        (P50, "p50 latency", ""),
        (P99, "p99 latency", " stroke-dasharray=\"6 3\""),
    ]
    .into_iter()
    .enumerate()
    {
        let y = Y0 + 14.0 + (k + 1) as f64 * 24.0;
        d.line(
            x,
            y,
            x + 26.0,
            y,
            &format!("stroke=\"{colour}\" stroke-width=\"2.5\"{dash}"),
        );
        d.text(x + 34.0, y + 4.0, "font-size=\"12\" fill=\"#222222\"", name);
    }
}
