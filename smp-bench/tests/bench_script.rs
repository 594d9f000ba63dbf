//! `scripts/bench.sh` in a scratch copy of the repository layout, with QEMU and cargo
//! replaced by stubs (skipped when bash or awk is missing): which logs make the report.

mod common;

use common::{Tmp, both, have, text};
use std::process::{Command, Output};

/// scripts/qemu.sh: writes $FAKE_QEMU_OUT to its --log file and stdout, exits $FAKE_QEMU_RC.
const QEMU_STUB: &str = r#"#!/usr/bin/env bash
log=""
while [ $# -gt 0 ]; do case $1 in --log) log=$2; shift 2 ;; *) shift ;; esac; done
tee "$log" < "$FAKE_QEMU_OUT"
exit "${FAKE_QEMU_RC:-0}"
"#;

/// cargo: records its arguments, does nothing.
const CARGO_STUB: &str = "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/../cargo.calls\"\n";

const BENCH_OK: &str = "SUITE,smp,0,0,tcg,2,rev,QEMU\nBENCH,old.row,10,5,1,9,5,6,7\nEND,smp,1\n";
const CONTENDED_OK: &str =
    "SUITE,contended,0,0,tcg,4,rev,QEMU\nBENCH,c2c.rtt.0.1,10,5,1,9,5,6,7\nEND,contended,1\n";

fn setup(tag: &str) -> Tmp {
    let t = Tmp::new(tag);
    t.copy_from_repo("scripts/bench.sh");
    t.copy_from_repo("scripts/lib.sh");
    t.copy_from_repo("scripts/extract-benches.sh");
    t.script("scripts/qemu.sh", QEMU_STUB);
    t.script("bin/cargo", CARGO_STUB);
    t.write("target/x86_64-unknown-none/release/exo", "");
    t
}

/// Sets `rel`'s modification time to a fixed past date (the script takes logs oldest first).
fn age(t: &Tmp, rel: &str) {
    let st = Command::new("touch")
        .args(["-d", "2020-01-01 00:00:00"])
        .arg(t.path(rel))
        .status()
        .unwrap();
    assert!(st.success());
}

/// Runs `scripts/bench.sh <args>`, QEMU printing `qemu_out` and exiting `rc`.
fn bench(t: &Tmp, args: &[&str], qemu_out: &str, rc: i32) -> Output {
    bench_in(t, args, qemu_out, rc, None)
}

/// As `bench`, with `CARGO_TARGET_DIR` set to `target_dir` (unset when `None`).
fn bench_in(
    t: &Tmp,
    args: &[&str],
    qemu_out: &str,
    rc: i32,
    target_dir: Option<&std::path::Path>,
) -> Output {
    t.write("qemu.out", qemu_out);
    let path = format!(
        "{}:{}",
        t.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.env_remove("CARGO_TARGET_DIR");
    if let Some(d) = target_dir {
        cmd.env("CARGO_TARGET_DIR", d);
    }
    cmd.arg(t.path("scripts/bench.sh"))
        .args(args)
        .current_dir(&t.0)
        .env("PATH", path)
        .env("FAKE_QEMU_OUT", t.path("qemu.out"))
        .env("FAKE_QEMU_RC", rc.to_string())
        .env("GIT_CEILING_DIRECTORIES", &t.0)
        .output()
        .unwrap()
}

/// An earlier log without a SUITE line (a run that died at boot) is named and left out;
/// until 2026-12-04 the script stopped there, silently (grep's failure under pipefail).
#[test]
fn a_log_without_suite_line_is_named_and_ignored() {
    if !have("bash") {
        return;
    }
    let t = setup("bench-nosuite");
    t.write("out/bench-tcg.log", "SeaBIOS\nbooting Exo-OS...\n");
    age(&t, "out/bench-tcg.log");
    let out = bench(&t, &["contended", "tcg"], CONTENDED_OK, 0);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stderr).contains("out/bench-tcg.log has no SUITE line"),
        "{}",
        both(&out)
    );
    assert_eq!(
        t.read("bench_results.csv"),
        "suite,mode,name,n,mean,min,max,p50,p95,p99\ncontended,tcg,c2c.rtt.0.1,10,5,1,9,5,6,7\n"
    );
    assert!(t.read("cargo.calls").contains("exo-report"));
}

/// A failed run (an ERROR,bench line and the job's failure exit) does not take the log's
/// name: the earlier good log stays, the failed one is kept aside, the script fails, and
/// the next report does not fold it in. Until 2026-12-04 it replaced the good log.
#[test]
fn a_failed_run_does_not_replace_the_log() {
    if !have("bash") {
        return;
    }
    let t = setup("bench-failed");
    t.write("out/bench-tcg.log", BENCH_OK);
    age(&t, "out/bench-tcg.log");
    let failed = "SUITE,smp,0,0,tcg,2,rev,QEMU\n\
                  BENCH,new.row,10,5,1,9,5,6,7\n\
                  ERROR,bench,lock.mcs: lost updates\n\
                  END,smp,1\n";
    let out = bench(&t, &["bench", "tcg"], failed, 1);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stderr).contains("the bench run failed (exit 1)"),
        "{}",
        both(&out)
    );
    assert_eq!(t.read("out/bench-tcg.log"), BENCH_OK);
    assert_eq!(t.read("out/bench-tcg.failed.log"), failed);
    // Exit 0 but an ERROR,bench line (or no SUITE line): failed all the same.
    let out = bench(&t, &["bench", "tcg"], failed, 0);
    assert!(!out.status.success(), "{}", both(&out));
    assert_eq!(t.read("out/bench-tcg.log"), BENCH_OK);
    let out = bench(&t, &["bench", "tcg"], "booting Exo-OS...\n", 0);
    assert!(!out.status.success(), "{}", both(&out));
    assert_eq!(t.read("out/bench-tcg.log"), BENCH_OK);

    let out = bench(&t, &["contended", "tcg"], CONTENDED_OK, 0);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(t.read("out/contended-tcg.log"), CONTENDED_OK);
    assert_eq!(
        t.read("bench_results.csv"),
        "suite,mode,name,n,mean,min,max,p50,p95,p99\n\
         smp,tcg,old.row,10,5,1,9,5,6,7\n\
         contended,tcg,c2c.rtt.0.1,10,5,1,9,5,6,7\n"
    );
}

/// A log with an ERROR,bench line already under a log's name (kept by an earlier version
/// of the script): the ERROR line reaches extract-benches, which skips that suite's rows.
#[test]
fn an_old_log_with_an_error_line_gives_no_rows() {
    if !have("bash") {
        return;
    }
    let t = setup("bench-olderror");
    t.write(
        "out/bench-tcg.log",
        "SUITE,smp,0,0,tcg,2,rev,QEMU\n\
         BENCH,untrusted.row,10,5,1,9,5,6,7\n\
         ERROR,bench,untrusted.row: lost updates\n\
         END,smp,1\n",
    );
    age(&t, "out/bench-tcg.log");
    let out = bench(&t, &["contended", "tcg"], CONTENDED_OK, 0);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        t.read("bench_results.csv"),
        "suite,mode,name,n,mean,min,max,p50,p95,p99\ncontended,tcg,c2c.rtt.0.1,10,5,1,9,5,6,7\n"
    );
    assert!(
        text(&out.stderr).contains("suite smp: ERROR,bench in the log"),
        "{}",
        both(&out)
    );
}

/// The kernel is looked for where cargo builds it: with `CARGO_TARGET_DIR` set, a kernel
/// only in ./target is not taken for built (until 2026-12-06 it was, and an old kernel ran).
#[test]
fn the_kernel_is_looked_for_in_cargo_target_dir() {
    if !have("bash") {
        return;
    }
    let t = setup("bench-target-dir");
    let elsewhere = t.path("elsewhere");
    let out = bench_in(&t, &["bench", "tcg"], BENCH_OK, 0, Some(&elsewhere));
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        t.read("cargo.calls").contains("build -q -p exo"),
        "no kernel in $CARGO_TARGET_DIR: it must be built; {}",
        both(&out)
    );
    // Built there: no build.
    std::fs::remove_file(t.path("cargo.calls")).unwrap();
    t.write("elsewhere/x86_64-unknown-none/release/exo", "");
    let out = bench_in(&t, &["bench", "tcg"], BENCH_OK, 0, Some(&elsewhere));
    assert!(out.status.success(), "{}", both(&out));
    assert!(!t.read("cargo.calls").contains("build -q -p exo"));
}
