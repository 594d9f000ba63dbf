//! Exo-OS beside Linux: the same operations, p50 against p50, from the CSVs of an Exo-OS run
//! (`smp` and `user` suites) and of the Linux peer (`linux` suite, `smp-bench/linux`), with
//! Linux booted twice (`mitigations=off` and the default mitigations).
//!
//! Rows are paired by [`PAIRS`], not by name alone: Exo-OS's `syscall.write.64` writes to
//! the serial console, so it faces Linux's `syscall.write.64.console`, not the `/dev/null`
//! write; the kernel rows (`smp` suite) face what Linux programs use for the same job
//! (glibc `malloc`, a futex mutex, threads switching through a futex). Operations one side
//! does not have are listed with the reason, never filled.

use std::fmt::Write;

use super::Row;
use crate::Mode;

/// Where an Exo-OS figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Suite: `user` (ring-3 round trips, `/ubench`), `smp` (the kernel bench job, measured
    /// inside the kernel) or `contended`.
    pub suite: &'static str,
    /// Row name in that suite.
    pub name: &'static str,
}

/// One line of the comparison: an operation and where each side's figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// The label of the line.
    pub label: &'static str,
    /// The Exo-OS row, or why there is none.
    pub exo: Result<Source, &'static str>,
    /// The Linux row (suite `linux`), or why there is none.
    pub linux: Result<&'static str, &'static str>,
    /// What the two figures are.
    pub note: &'static str,
}

const fn user(name: &'static str) -> Result<Source, &'static str> {
    Ok(Source {
        suite: "user",
        name,
    })
}

const fn kernel(name: &'static str) -> Result<Source, &'static str> {
    Ok(Source { suite: "smp", name })
}

/// Every line of the comparison, in table order.
pub const PAIRS: &[Pair] = &[
    Pair {
        label: "syscall.null",
        exo: user("syscall.null"),
        linux: Ok("syscall.null"),
        note: "ring 3: unknown number -> ENOSYS, raw syscall",
    },
    Pair {
        label: "syscall.getpid",
        exo: user("syscall.getpid"),
        linux: Ok("syscall.getpid"),
        note: "ring 3: raw syscall (no libc cache)",
    },
    Pair {
        label: "syscall.write.64",
        exo: user("syscall.write.64"),
        linux: Ok("syscall.write.64.console"),
        note: "64-byte line to the serial console (fd 1)",
    },
    Pair {
        label: "syscall.write.64.devnull",
        exo: Err("no /dev/null"),
        linux: Ok("syscall.write.64"),
        note: "64 bytes to /dev/null",
    },
    Pair {
        label: "mmap.4k",
        exo: user("mmap.4k"),
        linux: Ok("mmap.4k.populate"),
        note: "one anonymous RW page, allocated and zeroed by mmap (Exo-OS's default; Linux: MAP_POPULATE)",
    },
    Pair {
        label: "mmap.4k.lazy",
        exo: user("mmap.4k.lazy"),
        linux: Ok("mmap.4k"),
        note: "one demand-zero RW page: no frame until the first touch (Exo-OS: MAP_LAZY; Linux's default mmap)",
    },
    Pair {
        label: "pf.anon.4k",
        exo: user("pf.anon.4k.lazy"),
        linux: Ok("pf.anon.4k"),
        note: "first write to a demand-zero page: the fault, a zeroed frame mapped, the write retried (Exo-OS's own pf.anon.4k row times a plain write to an eager page)",
    },
    Pair {
        label: "proc.spawn",
        exo: user("proc.spawn"),
        linux: Ok("proc.spawn"),
        note: "spawn + wait of an exit(0) program (Linux: posix_spawn of 129 bytes)",
    },
    Pair {
        label: "uthread.spawn",
        exo: user("uthread.spawn"),
        linux: Ok("uthread.spawn"),
        note: "thread create + join (Linux: pthread)",
    },
    Pair {
        label: "ctx.switch.as",
        exo: user("ctx.switch.as"),
        linux: Ok("ctx.switch.as"),
        note: "sched_yield between two processes on one CPU, round trip / 2",
    },
    Pair {
        label: "ctx.switch",
        exo: kernel("ctx.switch"),
        linux: Ok("ctx.switch"),
        note: "Exo-OS: kernel threads; Linux: user threads through a futex, round trip / 2",
    },
    Pair {
        label: "mutex.fast",
        exo: kernel("mutex.fast"),
        linux: Ok("mutex.fast"),
        note: "uncontended lock + unlock (Exo-OS: kernel mutex; Linux: futex mutex in ring 3)",
    },
    Pair {
        label: "alloc.64",
        exo: kernel("alloc.64"),
        linux: Ok("alloc.64"),
        note: "Exo-OS: kernel heap; Linux: glibc malloc",
    },
    Pair {
        label: "free.64",
        exo: kernel("free.64"),
        linux: Ok("free.64"),
        note: "Exo-OS: kernel heap; Linux: glibc free",
    },
    Pair {
        label: "alloc.4k",
        exo: kernel("alloc.4k"),
        linux: Ok("alloc.4k"),
        note: "not the same job: Exo-OS a page frame, Linux glibc malloc(4096)",
    },
    Pair {
        label: "free.4k",
        exo: kernel("free.4k"),
        linux: Ok("free.4k"),
        note: "not the same job: Exo-OS a page frame, Linux glibc free",
    },
    Pair {
        label: "ipc.rtt.64.pipe",
        exo: user("ipc.rtt.64"),
        linux: Ok("ipc.rtt.64.pipe"),
        note: "64 bytes there and back between two processes, one CPU: Exo-OS ipc_call + ipc_reply_recv, Linux pipes",
    },
    Pair {
        label: "ipc.rtt.64.futex",
        exo: user("ipc.rtt.64.thread"),
        linux: Ok("ipc.rtt.64.futex"),
        note: "64 bytes there and back, one CPU: Exo-OS IPC between two threads, Linux a shared buffer + futex",
    },
    Pair {
        label: "ipc.rtt.64.xcore.pipe",
        exo: user("ipc.rtt.64.xcore.proc"),
        linux: Ok("ipc.rtt.64.xcore.pipe"),
        note: "as ipc.rtt.64.pipe, partner on the next CPU (Exo-OS: the IPC slow path across CPUs)",
    },
    Pair {
        label: "ipc.rtt.64.xcore.futex",
        exo: user("ipc.rtt.64.xcore.thread"),
        linux: Ok("ipc.rtt.64.xcore.futex"),
        note: "as ipc.rtt.64.futex, partner on the next CPU (Exo-OS: the IPC slow path across CPUs)",
    },
    Pair {
        label: "c2c.rtt",
        exo: Ok(Source {
            suite: "contended",
            name: "c2c.rtt.0.1",
        }),
        linux: Ok("c2c.rtt.0.1"),
        note: "cache-line ping-pong, CPUs 0 and 1, spinning (none under icount: one vCPU runs at a time)",
    },
    Pair {
        label: "mutex.contended.2",
        exo: Ok(Source {
            suite: "contended",
            name: "contend.mutex.2",
        }),
        linux: Ok("contend.mutex.2"),
        note: "two CPUs hammering one mutex: release to the next holder's acquire on the other CPU (Exo-OS: kernel blocking mutex; Linux: futex mutex; none under icount)",
    },
    Pair {
        label: "thread.spawn",
        exo: kernel("thread.spawn"),
        linux: Err("kernel threads are not reachable from ring 3"),
        note: "Exo-OS: a kernel thread, ready to run",
    },
];

/// One side's figure for a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// The row's p50 and mode.
    Value {
        /// Median, in ticks.
        p50: u64,
        /// Mode of the run (`None`: unknown).
        mode: Option<Mode>,
    },
    /// The operation exists on this side but the run has no row for it.
    Missing,
    /// The operation does not exist on this side: why.
    NotApplicable(&'static str),
}

impl Cell {
    fn p50(&self) -> Option<u64> {
        match self {
            Cell::Value { p50, .. } => Some(*p50),
            _ => None,
        }
    }

    fn mode(&self) -> Option<Option<Mode>> {
        match self {
            Cell::Value { mode, .. } => Some(*mode),
            _ => None,
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Value { p50, .. } => p50.to_string(),
            Cell::Missing => "missing".into(),
            Cell::NotApplicable(why) => format!("n/a ({why})"),
        }
    }
}

/// Exo-OS p50 / Linux p50, when both exist, in the same mode, and Linux's is not 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ratio {
    /// The ratio: below 1, Exo-OS takes fewer ticks.
    Value(f64),
    /// A side has no figure.
    None,
    /// The two figures come from different modes: not comparable.
    ModeMismatch,
    /// Linux's p50 is 0 (below the timing resolution).
    ZeroLinux,
}

impl Ratio {
    fn of(exo: &Cell, linux: &Cell) -> Ratio {
        let (Some(e), Some(l)) = (exo.p50(), linux.p50()) else {
            return Ratio::None;
        };
        if exo.mode() != linux.mode() {
            return Ratio::ModeMismatch;
        }
        if l == 0 {
            return Ratio::ZeroLinux;
        }
        Ratio::Value(e as f64 / l as f64)
    }

    /// The ratio, if there is one.
    pub fn value(self) -> Option<f64> {
        match self {
            Ratio::Value(v) => Some(v),
            _ => None,
        }
    }

    fn text(self) -> String {
        match self {
            Ratio::Value(v) if v >= 10.0 => format!("{v:.1}"),
            Ratio::Value(v) => format!("{v:.2}"),
            Ratio::None => "-".into(),
            Ratio::ModeMismatch => "mode mismatch".into(),
            Ratio::ZeroLinux => "- (Linux p50 0)".into(),
        }
    }
}

/// One computed line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    /// The pairing it comes from.
    pub pair: Pair,
    /// Exo-OS's figure.
    pub exo: Cell,
    /// Linux with `mitigations=off`.
    pub linux_off: Cell,
    /// Linux with its default mitigations (`NotApplicable` when that run was not given).
    pub linux_default: Cell,
    /// `exo / linux_off`.
    pub ratio_off: Ratio,
    /// `exo / linux_default`.
    pub ratio_default: Ratio,
}

impl CompareRow {
    /// The mode column: the common mode, or every mode seen when they differ.
    pub fn mode_text(&self) -> String {
        let mut modes: Vec<String> = Vec::new();
        for (side, c) in [
            ("Exo-OS", &self.exo),
            ("Linux off", &self.linux_off),
            ("Linux default", &self.linux_default),
        ] {
            if let Some(m) = c.mode() {
                modes.push(format!("{side} {}", m.map_or("unknown", Mode::as_str)));
            }
        }
        let distinct: std::collections::BTreeSet<Option<Mode>> =
            [&self.exo, &self.linux_off, &self.linux_default]
                .into_iter()
                .filter_map(Cell::mode)
                .collect();
        match distinct.len() {
            0 => "-".into(),
            1 => distinct
                .into_iter()
                .next()
                .flatten()
                .map_or("unknown".into(), |m| m.as_str().into()),
            _ => format!("MISMATCH: {}", modes.join(", ")),
        }
    }

    /// `true` when the figures present come from more than one mode.
    pub fn mode_mismatch(&self) -> bool {
        self.mode_text().starts_with("MISMATCH")
    }
}

/// The latest row of `suite`/`name` as a cell.
fn find(rows: &[Row], suite: &str, name: &str) -> Cell {
    rows.iter()
        .rev()
        .find(|r| r.suite == suite && r.name == name)
        .map_or(Cell::Missing, |r| Cell::Value {
            p50: r.stats.p50,
            mode: r.mode,
        })
}

fn linux_cell(rows: Option<&[Row]>, linux: Result<&'static str, &'static str>) -> Cell {
    match (linux, rows) {
        (Err(why), _) => Cell::NotApplicable(why),
        (Ok(_), None) => Cell::NotApplicable("not run"),
        (Ok(name), Some(rows)) => find(rows, "linux", name),
    }
}

/// The comparison of one Exo-OS run with one or two Linux runs, one line per [`PAIRS`] entry.
pub fn compare(exo: &[Row], linux_off: &[Row], linux_default: Option<&[Row]>) -> Vec<CompareRow> {
    PAIRS
        .iter()
        .map(|&pair| {
            let exo_cell = match pair.exo {
                Ok(src) => find(exo, src.suite, src.name),
                Err(why) => Cell::NotApplicable(why),
            };
            let off = linux_cell(Some(linux_off), pair.linux);
            let def = linux_cell(linux_default, pair.linux);
            CompareRow {
                pair,
                ratio_off: Ratio::of(&exo_cell, &off),
                ratio_default: Ratio::of(&exo_cell, &def),
                exo: exo_cell,
                linux_off: off,
                linux_default: def,
            }
        })
        .collect()
}

const HEADERS: [&str; 8] = [
    "row",
    "Exo-OS p50 (suite)",
    "Linux p50, mitigations=off",
    "Linux p50, default",
    "ratio (off)",
    "ratio (default)",
    "mode",
    "what",
];

fn cells(r: &CompareRow) -> [String; 8] {
    let exo = match (&r.exo, r.pair.exo) {
        (Cell::Value { .. }, Ok(src)) if src.name == r.pair.label => {
            format!("{} ({})", r.exo.text(), src.suite)
        }
        (Cell::Value { .. }, Ok(src)) => format!("{} ({} {})", r.exo.text(), src.suite, src.name),
        _ => r.exo.text(),
    };
    [
        r.pair.label.to_string(),
        exo,
        r.linux_off.text(),
        r.linux_default.text(),
        r.ratio_off.text(),
        r.ratio_default.text(),
        r.mode_text(),
        r.pair.note.to_string(),
    ]
}

/// The note printed under every table.
pub const LEGEND: &str = "ratio = Exo-OS p50 / Linux p50 (below 1: Exo-OS takes fewer ticks). \
Suites: user = ring-3 round trips (/ubench), smp = the kernel bench job (measured inside the kernel), \
contended = the contended job. n/a: the operation does not exist on that side; missing: it does, the run has no row.";

/// Aligned plain text.
pub fn render_text(rows: &[CompareRow]) -> String {
    let body: Vec<[String; 8]> = rows.iter().map(cells).collect();
    let mut out = super::grid::aligned(HEADERS, &body);
    let _ = writeln!(out, "\n{LEGEND}");
    out
}

/// GitHub-flavoured Markdown (pipes in cells escaped).
pub fn render_markdown(rows: &[CompareRow]) -> String {
    let body: Vec<[String; 8]> = rows.iter().map(cells).collect();
    let mut out = super::grid::markdown(HEADERS, &body);
    let _ = writeln!(out, "\n{LEGEND}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stats;

    fn row(suite: &str, mode: Mode, name: &str, p50: u64) -> Row {
        Row {
            suite: suite.into(),
            mode: Some(mode),
            name: name.into(),
            stats: Stats::one(p50),
        }
    }

    fn line<'a>(rows: &'a [CompareRow], label: &str) -> &'a CompareRow {
        rows.iter().find(|r| r.pair.label == label).unwrap()
    }

    #[test]
    fn ratio_is_exo_over_linux_per_mitigation_setting() {
        let exo = [
            row("user", Mode::Icount, "syscall.getpid", 100),
            // Same name in another suite: the pairing picks the user suite's.
            row("smp", Mode::Icount, "syscall.getpid", 2),
        ];
        let off = [row("linux", Mode::Icount, "syscall.getpid", 400)];
        let def = [row("linux", Mode::Icount, "syscall.getpid", 1000)];
        let t = compare(&exo, &off, Some(&def));
        let r = line(&t, "syscall.getpid");
        assert_eq!(r.ratio_off, Ratio::Value(0.25));
        assert_eq!(r.ratio_default, Ratio::Value(0.1));
        assert_eq!(r.mode_text(), "icount");
        assert!(!r.mode_mismatch());
        let text = render_text(&t);
        assert!(text.contains("100 (user)"), "{text}");
        assert!(text.contains("0.25") && text.contains("0.10"), "{text}");
    }

    #[test]
    fn console_write_faces_the_console_write() {
        let exo = [row("user", Mode::Tcg, "syscall.write.64", 900)];
        let off = [
            row("linux", Mode::Tcg, "syscall.write.64", 300),
            row("linux", Mode::Tcg, "syscall.write.64.console", 1800),
        ];
        let t = compare(&exo, &off, None);
        assert_eq!(line(&t, "syscall.write.64").ratio_off, Ratio::Value(0.5));
        let devnull = line(&t, "syscall.write.64.devnull");
        assert_eq!(devnull.exo, Cell::NotApplicable("no /dev/null"));
        assert_eq!(
            devnull.linux_off,
            Cell::Value {
                p50: 300,
                mode: Some(Mode::Tcg)
            }
        );
        assert_eq!(devnull.ratio_off, Ratio::None);
        assert_eq!(devnull.linux_default, Cell::NotApplicable("not run"));
    }

    #[test]
    fn missing_rows_are_marked_not_filled() {
        let t = compare(
            &[],
            &[row("linux", Mode::Icount, "mmap.4k.populate", 7000)],
            None,
        );
        let r = line(&t, "mmap.4k");
        assert_eq!(r.exo, Cell::Missing);
        assert_eq!(r.ratio_off, Ratio::None);
        let r = line(&t, "syscall.null");
        assert_eq!((&r.exo, &r.linux_off), (&Cell::Missing, &Cell::Missing));
        assert_eq!(r.mode_text(), "-");
        assert_eq!(line(&t, "ipc.rtt.64.xcore.pipe").exo, Cell::Missing);
        let devnull = line(&t, "syscall.write.64.devnull");
        assert_eq!(devnull.exo, Cell::NotApplicable("no /dev/null"));
        let text = render_text(&t);
        assert!(
            text.contains("missing") && text.contains("n/a (no /dev/null)"),
            "{text}"
        );
    }

    #[test]
    fn mode_mismatch_is_flagged_and_gives_no_ratio() {
        let exo = [row("user", Mode::Icount, "syscall.null", 77)];
        let off = [row("linux", Mode::Tcg, "syscall.null", 210)];
        let def = [row("linux", Mode::Icount, "syscall.null", 300)];
        let t = compare(&exo, &off, Some(&def));
        let r = line(&t, "syscall.null");
        assert_eq!(r.ratio_off, Ratio::ModeMismatch);
        assert_eq!(r.ratio_default, Ratio::Value(77.0 / 300.0));
        assert!(r.mode_mismatch());
        assert!(r.mode_text().contains("Linux off tcg"), "{}", r.mode_text());
        assert!(render_markdown(&t).contains("| mode mismatch |"));
    }

    #[test]
    fn zero_linux_p50_is_not_divided() {
        let exo = [row("smp", Mode::Icount, "mutex.fast", 15)];
        let off = [row("linux", Mode::Icount, "mutex.fast", 0)];
        let t = compare(&exo, &off, None);
        assert_eq!(line(&t, "mutex.fast").ratio_off, Ratio::ZeroLinux);
    }

    #[test]
    fn chart_draws_one_row_per_ratio_and_a_placeholder_without() {
        let exo = [
            row("user", Mode::Icount, "syscall.null", 77),
            row("user", Mode::Icount, "mmap.4k", 14_000),
        ];
        let off = [
            row("linux", Mode::Icount, "syscall.null", 210),
            row("linux", Mode::Icount, "mmap.4k.populate", 7000),
        ];
        let t = compare(&exo, &off, Some(&off));
        let svg = crate::report::svg::compare_chart(&t);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains(">syscall.null</text>") && svg.contains(">mmap.4k</text>"));
        assert!(!svg.contains(">proc.spawn</text>"), "no ratio, no row");
        assert!(
            svg.contains("mode icount") && svg.contains(">0.37</text>"),
            "{svg}"
        );
        let empty = crate::report::svg::compare_chart(&compare(&[], &[], None));
        assert!(empty.contains("no row has both"));
    }

    #[test]
    fn every_pair_has_a_side_and_unique_label() {
        let mut labels: Vec<&str> = PAIRS.iter().map(|p| p.label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), PAIRS.len());
        assert!(PAIRS.iter().all(|p| p.exo.is_ok() || p.linux.is_ok()));
    }
}
