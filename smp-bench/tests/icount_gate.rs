//! `scripts/check-icount.sh`, the icount regression gate, on crafted logs (skipped when
//! bash or awk is missing).

mod common;

use common::{Tmp, both, have, run_script, text};

const BASE: &str = "name,p50\nctx.switch,182\nipc.rtt.64,714\n";

/// A good icount log for BASE, with what the gate must leave out: boot.ms and a tcg suite.
const GOOD: &str = "SUITE,smp,1,1000000533,icount,2,rev,QEMU TCG CPU\n\
BENCH,ctx.switch,2000,182,180,200,182,190,199\n\
BENCH,ipc.rtt.64,2000,714,700,800,714,714,800\n\
BENCH,boot.ms,1,41,41,41,41,41,41\n\
END,smp,3\n\
SUITE,smp,1,2900000000,tcg,2,rev,QEMU TCG CPU\n\
BENCH,ipc.rtt.64,2000,9000\n\
BENCH,ctx.switch,2000,9000,9000,9000,9000,9000,9000\n\
END,smp,1\n";

fn gate(t: &Tmp, args: &[&str]) -> std::process::Output {
    run_script("check-icount.sh", args, &t.0)
}

#[test]
fn a_good_log_passes_and_update_rewrites_the_same_baseline() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("icount-good");
    t.write("base.csv", BASE);
    t.write("log", GOOD);
    let out = gate(&t, &["log", "base.csv"]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("ok        ipc.rtt.64"),
        "{}",
        both(&out)
    );
    let out = gate(&t, &["log", "new.csv", "--update"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(t.read("new.csv"), BASE);
}

/// A row cut after its mean has an empty p50: until 2026-12-04 awk compared it as a
/// string ("" > 785.4 is false) and the gate said ok.
#[test]
fn a_truncated_row_is_malformed_and_fails_the_check() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("icount-trunc");
    t.write("base.csv", BASE);
    t.write(
        "log",
        "SUITE,smp,0,0,icount,2,x,y\n\
         BENCH,ctx.switch,2000,182,180,200,182,190,199\n\
         BENCH,ipc.rtt.64,2000,9000\n",
    );
    let out = gate(&t, &["log", "base.csv"]);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("MALFORMED BENCH,ipc.rtt.64,2000,9000"),
        "{}",
        both(&out)
    );
    // Nine fields but no number for p50: malformed too.
    t.write(
        "log",
        "SUITE,smp,0,0,icount,2,x,y\n\
         BENCH,ctx.switch,2000,182,180,200,182,190,199\n\
         BENCH,ipc.rtt.64,2000,714,700,800,,714,800\n",
    );
    let out = gate(&t, &["log", "base.csv"]);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(text(&out.stdout).contains("MALFORMED"), "{}", both(&out));
}

/// --update from a log with a cut row refuses, and keeps the old baseline (until
/// 2026-12-04 it wrote `ipc.rtt.64,` and exited 0).
#[test]
fn update_refuses_a_truncated_row_and_keeps_the_baseline() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("icount-update-trunc");
    t.write("base.csv", BASE);
    t.write(
        "log",
        "SUITE,smp,0,0,icount,2,x,y\n\
         BENCH,ctx.switch,2000,182,180,200,182,190,199\n\
         BENCH,ipc.rtt.64,2000,9000\n",
    );
    let out = gate(&t, &["log", "base.csv", "--update"]);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stderr).contains("MALFORMED BENCH,ipc.rtt.64,2000,9000"),
        "{}",
        both(&out)
    );
    assert_eq!(t.read("base.csv"), BASE);
    let left = std::fs::read_dir(&t.0).unwrap().count();
    assert_eq!(left, 2, "temporary baseline left behind");
}

/// A row printed twice, the first copy regressed: until 2026-12-04 the check kept the last
/// copy and passed.
#[test]
fn a_regressed_duplicate_row_is_not_hidden_by_a_later_good_one() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("icount-dup");
    t.write("base.csv", "name,p50\nipc.rtt.64,714\n");
    t.write(
        "log",
        "SUITE,smp,0,0,icount,2,x,y\n\
         BENCH,ipc.rtt.64,2000,9000,800,9999,9000,9000,9999\n\
         END,smp,1\n\
         SUITE,smp,0,0,icount,2,x,y\n\
         BENCH,ipc.rtt.64,2000,714,700,800,714,714,800\n\
         END,smp,1\n",
    );
    let out = gate(&t, &["log", "base.csv"]);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("REGRESSED ipc.rtt.64"),
        "{}",
        both(&out)
    );
    assert!(text(&out.stdout).contains("9000"), "{}", both(&out));
}

/// --update records the worst copy of a duplicate row, as the check judges it (until
/// 2026-12-04 it kept the first copy).
#[test]
fn update_keeps_the_worst_copy_of_a_duplicate_row() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("icount-update-dup");
    t.write(
        "log",
        "SUITE,smp,0,0,icount,2,x,y\n\
         BENCH,tsc.pair,2000,5,5,5,5,5,5\n\
         BENCH,ipc.rtt.64,2000,700,700,700,700,700,700\n\
         SUITE,smp,0,0,icount,2,x,y\n\
         BENCH,tsc.pair,2000,5,5,5,5,5,5\n\
         BENCH,ipc.rtt.64,2000,714,700,800,714,714,800\n",
    );
    let out = gate(&t, &["log", "base.csv", "--update"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(t.read("base.csv"), "name,p50\ntsc.pair,5\nipc.rtt.64,714\n");
    let out = gate(&t, &["log", "base.csv"]);
    assert!(out.status.success(), "{}", both(&out));
}
