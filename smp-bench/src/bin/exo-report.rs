//! `exo-report <bench_results.csv> [--targets FILE] [--linux FILE] [--svg-dir DIR] [--plot-mode MODE] [--markdown]`
//!
//! Prints the seed's target table for one run (aligned text, or Markdown with
//! `--markdown`): per row the figure of the run's mode, the `icount` figure (guest
//! instructions) beside it and, with `--linux` (the Linux peer's CSV of
//! `scripts/compare-linux.sh`, `out/compare/linux-off.csv`), the icount figure over
//! Linux's for the same operation; and, with `--svg-dir`, writes `c2c-rtt.svg`, `c2c-oneway.svg` and
//! `contention.svg`, `nginx.svg`, `http.svg`, `ipc-xcore.svg` and `ipc-xcore-ratio.svg` there. The plots show one mode only, so emulated and real cycles never
//! share an axis: `--plot-mode`, else the mode of the last `contended` suite in the CSV.
//! Exit status: 0 ok, 1 unreadable or malformed input, 2 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use smp_bench::names::C2cKind;
use smp_bench::report::{self, svg};

const USAGE: &str = "usage: exo-report <bench_results.csv> [--targets configs/targets.toml] \
                     [--linux linux-off.csv] [--svg-dir DIR] [--plot-mode tcg|icount|kvm|native] [--markdown]";

/// Where `configs/targets.toml` is looked for when `--targets` is not given.
const DEFAULT_TARGETS: [&str; 2] = [
    "configs/targets.toml",
    concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/targets.toml"),
];

#[derive(Debug, Default)]
struct Args {
    csv: Option<PathBuf>,
    targets: Option<PathBuf>,
    linux: Option<PathBuf>,
    svg_dir: Option<PathBuf>,
    plot_mode: Option<smp_bench::Mode>,
    markdown: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--targets" => a.targets = Some(value("--targets")?.into()),
            "--linux" => a.linux = Some(value("--linux")?.into()),
            "--svg-dir" => a.svg_dir = Some(value("--svg-dir")?.into()),
            "--markdown" => a.markdown = true,
            "--plot-mode" => {
                let m = value("--plot-mode")?;
                a.plot_mode = Some(smp_bench::Mode::parse(&m).ok_or(format!("unknown mode {m}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ if a.csv.is_some() => return Err(format!("unexpected argument {arg}")),
            _ => a.csv = Some(arg.into()),
        }
    }
    if a.csv.is_none() {
        return Err("missing <bench_results.csv>".into());
    }
    Ok(a)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(args: Args) -> Result<(), String> {
    let csv_path = args.csv.ok_or("missing <bench_results.csv>")?;
    let targets_path = match args.targets {
        Some(p) => p,
        None => DEFAULT_TARGETS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or("configs/targets.toml not found; pass --targets")?,
    };
    let targets = report::parse_targets(&read(&targets_path)?)
        .map_err(|e| format!("{}: {e}", targets_path.display()))?;
    let rows =
        report::parse_csv(&read(&csv_path)?).map_err(|e| format!("{}: {e}", csv_path.display()))?;

    let linux = match &args.linux {
        Some(p) => Some(report::parse_csv(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let table = report::build_table_with_linux(&targets, &rows, linux.as_deref());
    if args.markdown {
        print!("{}", report::render_markdown(&table));
    } else {
        print!("{}", report::render_text(&table));
        println!(
            "p50/mode: this run's own mode (tcg ticks are not cycles); icount: guest instructions \
             (deterministic); / Linux: icount figure over Linux's for the same operation{}",
            if linux.is_some() {
                ""
            } else {
                " (run `just compare-linux icount` first)"
            }
        );
    }

    if let Some(dir) = args.svg_dir {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mode = args.plot_mode.or_else(|| {
            rows.iter()
                .rev()
                .find(|r| r.suite == "contended")
                .and_then(|r| r.mode)
        });
        let all = rows;
        let rows: Vec<report::Row> = match mode {
            Some(m) => all.iter().filter(|r| r.mode == Some(m)).cloned().collect(),
            None => all.clone(),
        };
        // The fake nginx runs under TCG in the main job whatever its mode: when the plot
        // mode has no nginx rows, its chart shows the rows there are (its subtitle names
        // their mode).
        let is_nginx = |r: &report::Row| r.name.starts_with("nginx.");
        let nginx_rows = if rows.iter().any(is_nginx) {
            &rows
        } else {
            &all
        };
        // The same for the HTTP rows (wrk from the host: TCG timing whatever the plot mode).
        let is_http = |r: &report::Row| r.name.starts_with("http.");
        let http_rows = if rows.iter().any(is_http) {
            &rows
        } else {
            &all
        };
        if let Some(m) = mode {
            eprintln!("exo-report: plots show {m} rows only");
        }
        let files = [
            (
                svg::c2c_file_name(C2cKind::Rtt),
                svg::c2c_heatmap(&rows, C2cKind::Rtt),
            ),
            (
                svg::c2c_file_name(C2cKind::OneWay),
                svg::c2c_heatmap(&rows, C2cKind::OneWay),
            ),
            (svg::CONTENTION_FILE, svg::contention_chart(&rows, &targets)),
            (svg::NGINX_FILE, svg::nginx_chart(nginx_rows)),
            (svg::HTTP_FILE, svg::http_chart(http_rows)),
            (svg::IPC_XCORE_FILE, svg::ipc_xcore_heatmap(&rows, false)),
            (
                svg::IPC_XCORE_RATIO_FILE,
                svg::ipc_xcore_heatmap(&rows, true),
            ),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("exo-report: wrote {}", path.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            if msg.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("exo-report: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("exo-report: {msg}");
            ExitCode::FAILURE
        }
    }
}
