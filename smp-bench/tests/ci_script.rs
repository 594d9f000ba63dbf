//! `ci/test.sh`'s `kernel_tests` and `bench_ok`, taken out of the script with sed and run
//! on crafted logs (QEMU and cargo are stubs; skipped when bash or awk is missing).

mod common;

use common::{Tmp, both, have, repo, text};
use std::process::{Command, Output};

/// scripts/qemu.sh: copies $FAKE_QEMU_OUT to its --log file, exits $FAKE_QEMU_RC.
const QEMU_STUB: &str = r#"#!/usr/bin/env bash
log=""
while [ $# -gt 0 ]; do case $1 in --log) log=$2; shift 2 ;; *) shift ;; esac; done
cat "$FAKE_QEMU_OUT" > "$log"
exit "${FAKE_QEMU_RC:-0}"
"#;

fn setup(tag: &str) -> Tmp {
    let t = Tmp::new(tag);
    t.copy_from_repo("scripts/extract-benches.sh");
    t.script("scripts/qemu.sh", QEMU_STUB);
    t.script("bin/cargo", "#!/bin/sh\nexit 0\n");
    t
}

/// Runs `body` after defining ok, bad, ktest_log, kernel_tests and bench_ok as ci/test.sh
/// has them; prints `RESULT <passed> <failed>` at the end.
fn ci(t: &Tmp, body: &str, qemu_out: &str) -> (Output, String) {
    t.write("qemu.out", qemu_out);
    let script = format!(
        "set -uo pipefail\n\
         source <(sed -n -e '/^ok() {{/,/^}}/p' -e '/^bad() {{/,/^}}/p' -e '/^ktest_log() {{/p' \
             -e '/^kernel_tests() {{/,/^}}/p' -e '/^bench_ok() {{/,/^}}/p' \"$CI\")\n\
         for f in ok bad kernel_tests bench_ok; do declare -F $f >/dev/null || {{ echo \"no $f in ci/test.sh\"; exit 9; }}; done\n\
         passed=0 failed=0 failures=() last_t=$SECONDS out=$PWD/logs bench_out=$PWD/bench initrd=()\n\
         mkdir -p logs bench\n\
         {body}\n\
         echo \"RESULT $passed $failed\"\n"
    );
    let path = format!(
        "{}:{}",
        t.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(&t.0)
        .env("CI", repo().join("ci/test.sh"))
        .env("PATH", path)
        .env("FAKE_QEMU_OUT", t.path("qemu.out"))
        .output()
        .unwrap();
    let result = text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").map(str::to_string))
        .unwrap_or_default();
    (out, result)
}

/// Only `KTEST,<name>,ok` counts as a pass and `KTEST,<name>,FAIL,...` as a failure: a
/// skip or FAIL line whose reason held ",ok" counted as a pass too until 2026-12-04 (and a
/// skip whose reason began with FAIL as a failure).
#[test]
fn kernel_tests_counts_exact_status_fields() {
    if !have("bash") {
        return;
    }
    let t = setup("ci-ktest");
    let log = "SMP,2,2,x2apic\n\
               KTEST,sched.one,ok\n\
               KTEST,net.two,skip,no NIC,ok without one\n\
               KTEST,mm.three,skip,needs 4 CPUs,ok\n\
               KTEST,trap.four,skip,FAIL path needs exo.panic_on_cpu\n\
               1 passed, 0 failed\n";
    let (out, result) = ci(&t, "kernel_tests \"q35 -smp 2\" --smp 2", log);
    assert_eq!(result, "1 0", "{}", both(&out));
    assert!(text(&out.stdout).contains("ok    kernel q35 -smp 2"));

    // A FAIL line counts once as a failure, never as a pass.
    let log = "SMP,2,2,x2apic\n\
               KTEST,sched.one,ok\n\
               KTEST,ipc.two,FAIL,reply was not ok\n\
               1 passed, 1 failed\n";
    let (out, result) = ci(&t, "kernel_tests \"q35 -smp 2\" --smp 2", log);
    // 1 pass; the failed test once (until 2026-12-05 the run's own failure counted it again).
    assert_eq!(result, "1 1", "{}", both(&out));
    assert!(text(&out.stdout).contains("KTEST,ipc.two,FAIL"));

    // A run made for one test (KT_REQUIRE) fails when that test skipped, once.
    let log = "SMP,2,2,x2apic\n\
               KTEST,sched.one,ok\n\
               KTEST,pci.two,skip,no NIC\n\
               1 passed, 0 failed\n";
    let (out, result) = ci(
        &t,
        "KT_REQUIRE=\"pci.two\" kernel_tests \"q35 -smp 2\" --smp 2",
        log,
    );
    assert_eq!(result, "1 1", "{}", both(&out));
    assert!(
        text(&out.stdout).contains("not ok: pci.two"),
        "{}",
        both(&out)
    );
}

/// bench_ok uses extract-benches --strict: an END count that differs or a malformed row
/// fails the step (until 2026-12-04 the warnings were discarded and it passed).
#[test]
fn bench_ok_is_strict_about_the_log() {
    if !have("bash") {
        return;
    }
    let t = setup("ci-bench-ok");
    let good = "SUITE,smp,0,0,tcg,2,rev,QEMU\n\
                BENCH,a,10,5,1,9,5,6,7\n\
                BENCH,b,10,5,1,9,5,6,7\n\
                END,smp,2\n";
    let body = "bench_ok \"bench suite\" bench/b.log bench/b.csv 0";
    t.write("bench/b.log", good);
    let (out, result) = ci(&t, body, "");
    assert_eq!(result, "1 0", "{}", both(&out));

    t.write("bench/b.log", &good.replace("END,smp,2", "END,smp,3"));
    let (out, result) = ci(&t, body, "");
    assert_eq!(result, "0 1", "{}", both(&out));
    assert!(
        text(&out.stdout).contains("END says 3 results, log has 2"),
        "{}",
        both(&out)
    );

    t.write(
        "bench/b.log",
        &good.replace("BENCH,b,10,5,1,9,5,6,7", "BENCH,b,10,5"),
    );
    let (out, result) = ci(&t, body, "");
    assert_eq!(result, "0 1", "{}", both(&out));
}

/// No script reaches into ./target for a built kernel, initrd or program: every such path
/// comes from scripts/lib.sh (`$CARGO_TARGET_DIR`, else target/), so what `just test` builds
/// is what it boots. Until 2026-12-06 qemu.sh, run.sh, bench.sh, iprof.sh and ci/test.sh
/// read ./target whatever CARGO_TARGET_DIR said, and tested an old kernel.
#[test]
fn scripts_find_built_files_through_lib_sh() {
    let mut files = vec![repo().join("ci/test.sh"), repo().join("Justfile")];
    for e in std::fs::read_dir(repo().join("scripts")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sh") && !p.ends_with("lib.sh") {
            files.push(p);
        }
    }
    let mut found = Vec::new();
    for f in &files {
        let s = std::fs::read_to_string(f).unwrap();
        for (i, line) in s.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with('#') {
                continue;
            }
            // `target/...` as a word of its own (`$exo_target/...` is lib.sh's).
            // `$root/target/...` too: compare-linux.sh kept its cache there until 2026-12-06.
            let bare = [
                "target/x86_64-unknown-none",
                "target/initrd",
                "target/linux",
            ]
            .iter()
            .any(|bad| {
                code.match_indices(bad).any(|(at, _)| {
                    !code[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            });
            if bare {
                found.push(format!("{}:{}: {line}", f.display(), i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "paths into ./target:\n{}",
        found.join("\n")
    );
    let ci = std::fs::read_to_string(repo().join("ci/test.sh")).unwrap();
    assert!(
        ci.contains(". scripts/lib.sh"),
        "ci/test.sh sources scripts/lib.sh"
    );
}

/// The --net tap-mq runs need root and /dev/net/tun: without either they are skipped (said,
/// counted neither way), as the kvm guard is; until 2026-12-06 they failed there.
#[test]
fn tap_mq_runs_are_skipped_off_root_or_without_tun() {
    if !have("bash") {
        return;
    }
    let why = |uid: &str, tun: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(
                "source <(sed -n '/^tap_unavailable() {/,/^}/p' \"$CI\") \
                 && declare -F tap_unavailable >/dev/null && tap_unavailable \"$1\" \"$2\"",
            )
            .arg("bash")
            .arg(uid)
            .arg(tun)
            .env("CI", repo().join("ci/test.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", both(&out));
        text(&out.stdout).trim().to_string()
    };
    // /dev/null stands for a character device that is there.
    assert_eq!(why("0", "/dev/null"), "");
    assert_eq!(why("1000", "/dev/null"), "not root");
    assert_eq!(why("0", "/no/such/tun"), "no /no/such/tun");
    assert_eq!(why("1000", "/no/such/tun"), "not root, no /no/such/tun");

    // Every tap-mq run of ci/test.sh is inside `if [ -z "$tap_why" ]`, whose else skips.
    let ci = std::fs::read_to_string(repo().join("ci/test.sh")).unwrap();
    assert!(ci.contains("tap_why=$(tap_unavailable \"$(id -u)\" /dev/net/tun)"));
    let (mut guarded, mut runs) = (false, 0);
    for (i, line) in ci.lines().enumerate() {
        if line == "if [ -z \"$tap_why\" ]; then" {
            guarded = true;
        } else if line == "else" || line == "fi" {
            guarded = false;
        }
        if line.contains("--net tap-mq") && !line.trim_start().starts_with('#') {
            runs += 1;
            assert!(guarded, "ci/test.sh:{}: a tap-mq run not guarded", i + 1);
        }
    }
    assert_eq!(runs, 3, "the tap-mq runs of ci/test.sh");
}

/// .ci/run puts cargo's bin on the PATH before ci/setup.sh, which calls rustup and cargo
/// (until 2026-12-06 it did so after).
#[test]
fn ci_run_sets_the_path_before_setup() {
    let run = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let at = |s: &str| {
        run.lines()
            .position(|l| l.trim() == s)
            .unwrap_or_else(|| panic!(".ci/run has no line {s:?}:\n{run}"))
    };
    assert!(at("export PATH=\"$HOME/.cargo/bin:$PATH\"") < at("bash ci/setup.sh"));
}
