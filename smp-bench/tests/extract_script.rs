//! `scripts/extract-benches.sh` on sample logs (skipped when bash is not installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/extract-benches.sh");

fn have_bash() -> bool {
    let ok = Command::new("bash")
        .arg("-c")
        .arg("command -v awk >/dev/null")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: bash or awk not available");
    }
    ok
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("smp-bench-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

const LOG: &str = "\x1bc\x1b[2JSeaBIOS (version 1.16)\r\n\
booting Exo-OS...\r\n\
BENCH,orphan.row,10,5,4,9,5,8,9\r\n\
SUITE,smp,1000,2900000000,kvm,4,d4994a9,Intel(R) Xeon(R) Gold\r\n\
[cpu1] online\r\n\
BENCH,tsc.pair,1000,21,18,400,20,24,31\r\n\
BENCH,broken,1,2\r\n\
BENCH,mangled,1,2,3,4,5,6,x\r\n\
\x20BENCH,indented,1,1,1,1,1,1,1\r\n\
BENCH,c2c.rtt.0.1,100,210,180,900,200,300,450\r\n\
FAIR,contend.mcs.2,2,100,104\r\n\
END,smp,5\r\n\
SUITE,alloc,5000,0,tcg,1,d4994a9,QEMU Virtual CPU\n\
BENCH,alloc.64,500,40,31,900,38,60,80\n\
END,alloc,1\n";

#[test]
fn extracts_bench_lines_into_csv() {
    if !have_bash() {
        return;
    }
    let dir = temp_dir("extract");
    std::fs::write(dir.join("serial.log"), LOG).unwrap();
    let out = run(&dir, &["serial.log", "out.csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert_eq!(
        csv,
        "suite,mode,name,n,mean,min,max,p50,p95,p99\n\
         ,,orphan.row,10,5,4,9,5,8,9\n\
         smp,kvm,tsc.pair,1000,21,18,400,20,24,31\n\
         smp,kvm,c2c.rtt.0.1,100,210,180,900,200,300,450\n\
         alloc,tcg,alloc.64,500,40,31,900,38,60,80\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped 2 malformed"), "{err}");
    assert!(
        err.contains("suite smp: END says 5 results, log has 2"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn default_output_is_bench_results_csv() {
    if !have_bash() {
        return;
    }
    let dir = temp_dir("default");
    std::fs::write(dir.join("serial.log"), LOG).unwrap();
    assert!(run(&dir, &["serial.log"]).status.success());
    let csv = std::fs::read_to_string(dir.join("bench_results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fails_without_bench_lines_and_keeps_old_output() {
    if !have_bash() {
        return;
    }
    let dir = temp_dir("empty");
    std::fs::write(
        dir.join("serial.log"),
        "SUITE,smp,1,2,kvm,4,x,y\r\nEND,smp,0\r\n",
    )
    .unwrap();
    std::fs::write(dir.join("out.csv"), "previous\n").unwrap();
    let out = run(&dir, &["serial.log", "out.csv"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no BENCH line"));
    assert_eq!(
        std::fs::read_to_string(dir.join("out.csv")).unwrap(),
        "previous\n"
    );
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(leftovers, 2, "temporary file left behind");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn usage_errors() {
    if !have_bash() {
        return;
    }
    let dir = temp_dir("usage");
    assert_eq!(run(&dir, &[]).status.code(), Some(2));
    assert_eq!(run(&dir, &["missing.log"]).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "report")]
#[test]
fn csv_is_readable_by_the_report() {
    if !have_bash() {
        return;
    }
    let dir = temp_dir("pipeline");
    std::fs::write(dir.join("serial.log"), LOG).unwrap();
    assert!(run(&dir, &["serial.log", "out.csv"]).status.success());
    let rows = smp_bench::report::parse_csv(&std::fs::read_to_string(dir.join("out.csv")).unwrap())
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].mode, None);
    assert_eq!(rows[1].mode, Some(smp_bench::Mode::Kvm));
    assert_eq!(rows[3].stats.p50, 38);
    let _ = std::fs::remove_dir_all(dir);
}

/// A row the report would refuse (statistics out of order: a run with no request leaves
/// min = u64::MAX) is skipped by name; the rest of the log still makes a CSV the report
/// reads. Until 2026-12-04 it went into the CSV, and the report refused the whole file.
#[test]
fn inconsistent_rows_are_skipped_by_name() {
    if !have_bash() {
        return;
    }
    let dir = temp_dir("inconsistent");
    std::fs::write(
        dir.join("serial.log"),
        "SUITE,smp,0,0,tcg,2,x,y\n\
         BENCH,good,10,5,1,9,5,6,7\n\
         BENCH,http.empty,0,18446744073709551615,18446744073709551615,0,0,0,0\n\
         BENCH,p99.above.max,10,5,1,9,5,6,12\n\
         END,smp,3\n",
    )
    .unwrap();
    let out = run(&dir, &["serial.log", "out.csv"]);
    assert!(out.status.success());
    let csv = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert_eq!(
        csv,
        "suite,mode,name,n,mean,min,max,p50,p95,p99\nsmp,tcg,good,10,5,1,9,5,6,7\n"
    );
    #[cfg(feature = "report")]
    smp_bench::report::parse_csv(&csv).expect("the report reads what is left");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped http.empty: inconsistent"), "{err}");
    assert!(err.contains("skipped p99.above.max: inconsistent"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
