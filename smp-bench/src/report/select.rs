//! Choosing the CSV row that gives a target its value.
//!
//! Rows from real-cycle modes are preferred over emulated or unknown ones, the kernel's
//! `kvm` rows over the host's `native` ones (narrower paths, no kernel around them); among
//! equally trusted rows the latest in the file wins (after the per-kind rule: smallest CPU
//! count, or worst CPU pair).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::{Row, Select, Target};
use crate::mode::Mode;
use crate::names::parse_u32;

/// The value of one target in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement<'a> {
    /// The row the value comes from (its mode decides the status).
    pub row: &'a Row,
    /// The row's p50.
    pub value: u64,
    /// How the row was chosen, e.g. `2 CPUs` or `worst of 12 pairs, best 800`.
    pub detail: Option<String>,
}

/// Picks the measurement for `t` among `rows` according to [`Target::select`].
pub fn select<'a>(t: &Target, rows: &'a [Row]) -> Option<Measurement<'a>> {
    let prefixes = t.row_names();
    let trusted = |r: &Row| trust(r.mode);
    match t.select {
        Select::Exact => rows
            .iter()
            .enumerate()
            .filter(|(_, r)| prefixes.contains(&r.name.as_str()))
            .max_by_key(|&(i, r)| (trusted(r), i))
            .map(|(_, row)| {
                // A target with several rows names the one it shows when it is not the
                // target's own name (target 7: `.lazy` or `.eager`; until 2026-12-04 the
                // table did not say which; found by review).
                let name = (prefixes.len() > 1 && row.name != t.name).then(|| row.name.clone());
                // A host row stands in only where the kernel has none: say so.
                let native = (row.mode == Some(Mode::Native)).then(|| "native".to_string());
                Measurement {
                    row,
                    value: row.stats.p50,
                    detail: match (name, native) {
                        (Some(n), Some(m)) => Some(format!("{n}, {m}")),
                        (n, m) => n.or(m),
                    },
                }
            }),
        Select::MinNcpus => rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let n = prefixes.iter().find_map(|p| suffix(&r.name, p))?;
                parse_u32(n).map(|n| (i, n, r))
            })
            .max_by_key(|&(i, n, r)| (trusted(r), Reverse(n), i))
            .map(|(_, n, row)| Measurement {
                row,
                value: row.stats.p50,
                detail: Some(format!("{n} CPU{}", if n == 1 { "" } else { "s" })),
            }),
        Select::PerPair => {
            let pairs: Vec<(&Row, (u32, u32))> = rows
                .iter()
                .filter_map(|r| {
                    let (a, b) = prefixes
                        .iter()
                        .find_map(|p| suffix(&r.name, p))?
                        .split_once('.')?;
                    Some((r, (parse_u32(a)?, parse_u32(b)?)))
                })
                .collect();
            let best_trust = pairs.iter().map(|(r, _)| trusted(r)).max().unwrap_or(0);
            // Latest row per pair within the most trusted group.
            let latest: BTreeMap<(u32, u32), &Row> = pairs
                .into_iter()
                .filter(|(r, _)| trusted(r) == best_trust)
                .map(|(r, ab)| (ab, r))
                .collect();
            let worst = latest.values().max_by_key(|r| r.stats.p50)?;
            let best = latest.values().map(|r| r.stats.p50).min().unwrap_or(0);
            Some(Measurement {
                row: worst,
                value: worst.stats.p50,
                detail: Some(format!("worst of {} pairs, best {best}", latest.len())),
            })
        }
    }
}

/// How far a row's mode is trusted: the kernel's real cycles (`kvm`) above the host's
/// (`native`: the `no_std` paths alone, narrower than the kernel's) above the rest. Until
/// 2026-12-06 both ranked alike and the later row won: `scripts/run.sh` appends the native
/// log after the kernel's, so at `EXO_MODE=kvm` the table showed host rows for
/// `alloc.64`, `sched.pick_next`, ... (found by review).
fn trust(mode: Option<Mode>) -> u8 {
    match mode {
        Some(Mode::Kvm) => 2,
        Some(m) if m.is_real_cycles() => 1,
        _ => 0,
    }
}

/// `name` = `<prefix>.<rest>` → `rest`.
fn suffix<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?.strip_prefix('.')
}
