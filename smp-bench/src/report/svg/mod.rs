//! Hand-written SVG charts: core-to-core heat maps, the lock-contention chart and the
//! fake-nginx chart.

mod color;
mod contention;
mod doc;
mod heatmap;
mod nginx;
mod ratio;
mod scale;

use std::collections::{BTreeMap, BTreeSet};

use super::compare::CompareRow;
use super::{Comparator, Row, Select, Target, Unit};
use crate::Mode;
use crate::names::{C2cKind, C2cName, ContendName, LockKind, parse_u32};

/// File name of the heat map for `kind`: `c2c-rtt.svg` or `c2c-oneway.svg`.
pub fn c2c_file_name(kind: C2cKind) -> &'static str {
    match kind {
        C2cKind::Rtt => "c2c-rtt.svg",
        C2cKind::OneWay => "c2c-oneway.svg",
    }
}

/// File names of the cross-core IPC heat maps: fusion rings, and fusion over the endpoint
/// baseline (percent).
pub const IPC_XCORE_FILE: &str = "ipc-xcore.svg";
/// See [`IPC_XCORE_FILE`].
pub const IPC_XCORE_RATIO_FILE: &str = "ipc-xcore-ratio.svg";

/// The `(a, b)` of `<prefix><a>.<b>`.
fn pair_of(name: &str, prefix: &str) -> Option<(u32, u32)> {
    let (a, b) = name.strip_prefix(prefix)?.split_once('.')?;
    Some((parse_u32(a)?, parse_u32(b)?))
}

/// Heat map of the `ipc.rtt.64.xcore.<a>.<b>` rows (fusion rings, p50 ticks per round
/// trip), or with `ratio` of their p50 over the `ipc.rtt.64.xcore.base.<a>.<b>` rows' (the
/// endpoint path) in percent: below 100, the rings win.
pub fn ipc_xcore_heatmap(rows: &[Row], ratio: bool) -> String {
    let fusion = best_rows(rows, |n| pair_of(n, "ipc.rtt.64.xcore."));
    let base = best_rows(rows, |n| pair_of(n, "ipc.rtt.64.xcore.base."));
    let title = if ratio {
        "IPC across cores: fusion / endpoint, % (cells: percent)"
    } else {
        "IPC across cores: fusion-ring round trip a → b (p50 ticks)"
    };
    let cells: BTreeMap<(u32, u32), u64> = if ratio {
        fusion
            .iter()
            .filter_map(|(k, f)| {
                let b = base.get(k)?;
                Some((*k, f.stats.p50 * 100 / b.stats.p50.max(1)))
            })
            .collect()
    } else {
        fusion.iter().map(|(&k, r)| (k, r.stats.p50)).collect()
    };
    if cells.is_empty() {
        return placeholder(
            title,
            "no ipc.rtt.64.xcore.<a>.<b> rows (and .base.) in this run",
        );
    }
    // The IPC rows subtract the timing pair (`ipc::bench`).
    let unit = if ratio { "%" } else { "ticks" };
    heatmap::render(
        title,
        &subtitle(fusion.values().copied(), true),
        unit,
        &cells,
    )
}

/// File name of the contention chart.
pub const CONTENTION_FILE: &str = "contention.svg";

/// Heat map of the `c2c.<kind>.<a>.<b>` rows' p50 (a placeholder SVG when there are none).
pub fn c2c_heatmap(rows: &[Row], kind: C2cKind) -> String {
    let best = best_rows(rows, |name| {
        C2cName::parse(name)
            .filter(|c| c.kind == kind)
            .map(|c| (c.from, c.to))
    });
    let title = match kind {
        C2cKind::Rtt => "Core-to-core round trip a → b → a (p50 ticks)",
        C2cKind::OneWay => "Core-to-core one-way latency a → b (p50 ticks, synchronised TSCs)",
    };
    if best.is_empty() {
        let what = format!("no c2c.{}.<a>.<b> rows in this run", kind.as_str());
        return placeholder(title, &what);
    }
    let cells = best.iter().map(|(&k, r)| (k, r.stats.p50)).collect();
    // The round trips subtract the timing pair (`smp_bench::ping`, since 2026-12-05); the
    // one-way figures are raw TSC differences between CPUs. Until 2026-12-06 both maps
    // said "raw" (found by review).
    heatmap::render(
        title,
        &subtitle(best.values().copied(), kind == C2cKind::Rtt),
        "ticks",
        &cells,
    )
}

/// Line chart of the `contend.<lock>.<ncpus>` rows' p50, with a dashed line for each
/// `min_ncpus` cycles target with a `<=` goal (a placeholder SVG when there are no rows).
pub fn contention_chart(rows: &[Row], targets: &[Target]) -> String {
    let title = "Lock contention: ticks per hand-off (p50)";
    let best = best_rows(rows, |name| {
        ContendName::parse(name).map(|c| (c.lock, c.ncpus))
    });
    if best.is_empty() {
        return placeholder(title, "no contend.<lock>.<ncpus> rows in this run");
    }
    let series: Vec<contention::Series> = LockKind::ALL
        .into_iter()
        .map(|lock| contention::Series {
            lock,
            points: best
                .iter()
                .filter(|((l, _), _)| *l == lock)
                .map(|(&(_, n), r)| (n, r.stats.p50))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    // A cycles target is drawn only on a chart of real cycles (on a TCG or icount axis
    // its line meant nothing: found by review, 2026-12-04).
    let cycles = best
        .values()
        .all(|r| r.mode.is_some_and(Mode::is_real_cycles));
    let guides: Vec<contention::Guide> = targets
        .iter()
        .filter(|_| cycles)
        .filter(|t| {
            t.select == Select::MinNcpus
                && t.unit == Unit::Cycles
                && t.comparator == Some(Comparator::Le)
        })
        .filter_map(|t| {
            Some(contention::Guide {
                label: format!("{} target ≤ {}", t.name, t.target?),
                value: t.target?,
            })
        })
        .collect();
    // Hand-offs are raw TSC differences between CPUs (`harness::locks`).
    contention::render(
        title,
        &subtitle(best.values().copied(), false),
        &series,
        &guides,
    )
}

/// File name of the fake-nginx chart.
pub const NGINX_FILE: &str = "nginx.svg";

/// Bar chart of the `nginx.rps.<ncpus>` rows (requests per second: the row's p50) against
/// the CPU count, with the p50 and p99 of the `nginx.lat.<ncpus>` rows (ticks per request)
/// as lines on a second axis (a placeholder SVG when there are neither).
pub fn nginx_chart(rows: &[Row]) -> String {
    rps_chart(
        rows,
        "Fake nginx over IPC: requests per second vs CPUs, latency p50/p99",
        "nginx",
        nginx::Labels {
            x: "CPUs (N workers and N clients, one of each per CPU)",
            lat: "ticks per request",
        },
    )
}

/// File name of the HTTP chart (the serve job loaded by wrk from the host).
pub const HTTP_FILE: &str = "http.svg";

/// The serve job's `http.rps.<ncpus>` and `http.lat.<ncpus>` (µs) rows, drawn as
/// [`nginx_chart`] draws the fake nginx's.
pub fn http_chart(rows: &[Row]) -> String {
    rps_chart(
        rows,
        "HTTP from the host (wrk, QEMU user net): requests/s vs CPUs",
        "http",
        nginx::Labels {
            x: "guest CPUs (one stack on CPU 0, one queue pair)",
            lat: "µs per request",
        },
    )
}

/// Bars of `<prefix>.rps.<ncpus>` (p50) and lines of the p50/p99 of `<prefix>.lat.<ncpus>`.
fn rps_chart(rows: &[Row], title: &str, prefix: &str, labels: nginx::Labels<'_>) -> String {
    let (rps_p, lat_p) = (format!("{prefix}.rps."), format!("{prefix}.lat."));
    let rps = best_rows(rows, |name: &str| {
        name.strip_prefix(rps_p.as_str()).and_then(parse_u32)
    });
    let lat = best_rows(rows, |name: &str| {
        name.strip_prefix(lat_p.as_str()).and_then(parse_u32)
    });
    if rps.is_empty() && lat.is_empty() {
        return placeholder(
            title,
            &format!("no {prefix}.rps.<ncpus> or {prefix}.lat.<ncpus> rows in this run"),
        );
    }
    let mut points: BTreeMap<u32, nginx::Point> = BTreeMap::new();
    for (&n, r) in &rps {
        points.entry(n).or_default().rps = Some(r.stats.p50);
    }
    for (&n, r) in &lat {
        points.entry(n).or_default().lat = Some((r.stats.p50, r.stats.p99));
    }
    let note = mode_note(rps.values().chain(lat.values()).copied());
    let sub = format!("bars: requests/s · lines: {} · {note}", labels.lat);
    nginx::render(title, &sub, &points, labels)
}

/// Bar chart (log scale) of the comparison's ratios, Exo-OS p50 / Linux p50, one row per
/// line that has at least one ratio (a placeholder SVG when none has).
pub fn compare_chart(rows: &[CompareRow]) -> String {
    let title = "Exo-OS beside Linux: the same operations, same QEMU";
    let bars: Vec<ratio::Bar> = rows
        .iter()
        .filter(|r| r.ratio_off.value().is_some() || r.ratio_default.value().is_some())
        .map(|r| ratio::Bar {
            label: r.pair.label.to_string(),
            off: r.ratio_off.value(),
            default: r.ratio_default.value(),
        })
        .collect();
    if bars.is_empty() {
        return placeholder(
            title,
            "no row has both an Exo-OS and a Linux figure in one mode",
        );
    }
    let modes: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.ratio_off.value().is_some() || r.ratio_default.value().is_some())
        .map(CompareRow::mode_text)
        .collect();
    let mode = match modes.iter().collect::<Vec<_>>().as_slice() {
        [m] => format!("mode {m}"),
        _ => "mixed modes".to_string(),
    };
    let note = if mode == "mode icount" {
        " (ticks are guest instructions)"
    } else {
        ""
    };
    ratio::render(
        title,
        &format!("p50 ratios, timing overhead subtracted on both sides · {mode}{note}"),
        &bars,
    )
}

/// For each key, the most trusted row (real-cycle mode first), latest on ties.
fn best_rows<K: Ord>(rows: &[Row], key: impl Fn(&str) -> Option<K>) -> BTreeMap<K, &Row> {
    let trusted = |r: &Row| r.mode.is_some_and(Mode::is_real_cycles);
    let mut best: BTreeMap<K, &Row> = BTreeMap::new();
    for r in rows {
        let Some(k) = key(&r.name) else { continue };
        match best.get(&k) {
            Some(old) if trusted(old) && !trusted(r) => {}
            _ => {
                best.insert(k, r);
            }
        }
    }
    best
}

/// What the numbers are worth, from the modes of the rows drawn (`subtracted`: the rows
/// subtract the timing pair's overhead; until 2026-12-04 every chart said so, the c2c and
/// contention ones wrongly).
fn subtitle<'a>(rows: impl Iterator<Item = &'a Row>, subtracted: bool) -> String {
    let how = if subtracted {
        "timing overhead subtracted"
    } else {
        "raw TSC differences"
    };
    format!("{how} · {}", mode_note(rows))
}

/// The modes of the rows drawn, in words.
fn mode_note<'a>(rows: impl Iterator<Item = &'a Row>) -> &'static str {
    let modes: BTreeSet<Option<Mode>> = rows.map(|r| r.mode).collect();
    match modes.iter().collect::<Vec<_>>().as_slice() {
        [Some(Mode::Tcg)] => "mode tcg: emulated, ticks are not cycles (compare shapes only)",
        [Some(Mode::Icount)] => "mode icount: ticks count guest instructions, not cycles",
        [Some(Mode::Kvm)] => "mode kvm: real cycles",
        [Some(Mode::KvmTrapped)] => {
            "mode kvm-trapped: rdtsc traps (nested virtualization), not cycles"
        }
        [Some(Mode::Native)] => "mode native: real cycles on the host",
        [None] => "mode unknown",
        _ => "mixed modes: compare with care",
    }
}

fn placeholder(title: &str, message: &str) -> String {
    let mut d = doc::Doc::new(600.0, 140.0, title, "");
    d.text(
        300.0,
        95.0,
        "font-size=\"14\" text-anchor=\"middle\" fill=\"#888888\"",
        message,
    );
    d.finish()
}
