//! `scripts/check-readme-icount.sh`: the README's icount figures are the baseline's, on the
//! repository's own README and on crafted ones (skipped when bash or awk is missing).

mod common;

use common::{Tmp, both, have, repo, run_script, text};

const BASE: &str = "name,p50\n\
alloc.4k,10\nfree.4k,14\nctx.switch.fpu.lazy,300\nctx.switch.fpu.eager,229\n\
ipc.rtt.64.xcore.thread,3828\nipc.rtt.64.xcore.proc,3828\nsyscall.getpid,12\n\
net.tx.instr_per_pkt,59\n";

/// Every table shape the README has: the seed table (`name` / `icount`, a row judged by the
/// row named in parentheses), the kernel paths (`row` / `instructions (p50)`, two names per
/// cell, the second a suffix), the network rows (`value`, only where `mode` is icount), and
/// the Linux comparison (`Exo-OS p50 (suite)`, a figure noted "(user X)" is row X's).
const GOOD: &str = "# Results\n\n\
| ID | name | p50 | mode | icount | status |\n\
| --- | --- | --- | --- | --- | --- |\n\
| 7 | ctx.switch.fpu | 4677 (ctx.switch.fpu.eager) | tcg | 229 | measuring |\n\
| 12 | syscall.getpid | 314 | tcg | 11 | measuring |\n\
| 16 | boot.ms | 79 | tcg | 42 | measuring |\n\
| 3x | ipc.rtt.64.xcore.proc | 1 | tcg | - | measuring |\n\
\n\
| row | instructions (p50) | what is inside |\n\
|---|---|---|\n\
| `alloc.4k` / `free.4k` | 10 / 14 | frames |\n\
| `ctx.switch.fpu.lazy` / `.eager` | 300 / 229 (301 / 232 with the pair) | FPU |\n\
| ipc.rtt.64.xcore.thread / .proc | 3,828 / 3,828 (history) | cross |\n\
| proc.spawn | ~153,000 | not in the baseline |\n\
\n\
| row | value | mode | note |\n\
|---|---|---|---|\n\
| `net.tx.instr_per_pkt` | **59** instructions (58 before) | icount | tx |\n\
| `net.tx.pps` | 128 k | tcg | not an instruction count |\n\
\n\
| row | Exo-OS p50 (suite) | Linux p50 | ratio | mode | what |\n\
| --- | --- | --- | --- | --- | --- |\n\
| alloc.4k | 10 (smp) | 171 | 0.06 | icount | frames |\n\
| ipc.pipe | 3828 (user ipc.rtt.64.xcore.proc) | 17009 | 0.23 | icount | pipes |\n\
| c2c.rtt | missing | missing | - | - | not under icount |\n";

fn check(t: &Tmp) -> std::process::Output {
    run_script("check-readme-icount.sh", &["README.md", "base.csv"], &t.0)
}

#[test]
fn the_repository_readme_matches_its_baseline() {
    if !have("bash") {
        return;
    }
    let readme = repo().join("README.md");
    let base = repo().join("configs/icount-baseline.csv");
    let out = run_script(
        "check-readme-icount.sh",
        &[readme.to_str().unwrap(), base.to_str().unwrap()],
        &repo(),
    );
    assert!(out.status.success(), "{}", both(&out));
}

#[test]
fn every_table_shape_is_read_and_a_matching_readme_passes() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("readme-icount-good");
    t.write("base.csv", BASE);
    t.write("README.md", GOOD);
    let out = check(&t);
    assert!(out.status.success(), "{}", both(&out));
    // 1 (seed table) + 6 (kernel paths) + 1 (network) + 2 (Linux comparison);
    // syscall.getpid (the README's is the user round trip) and the rows not in the baseline
    // are left out.
    assert!(
        text(&out.stdout).contains("10 icount figures in 4 tables match"),
        "{}",
        both(&out)
    );
}

/// Each kind of drift fails and names the line: until 2026-12-06 nothing compared them, and
/// the README said 230, 251, 32, 58 and 699 where the baseline had 229, 252, 33, 59 and 691.
#[test]
fn a_figure_that_drifted_fails() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("readme-icount-bad");
    t.write("base.csv", BASE);
    for (from, to, says) in [
        (
            "| tcg | 229 |",
            "| tcg | 230 |",
            "README.md:5: ctx.switch.fpu.eager: the README says 230, the baseline 229",
        ),
        (
            "| 300 / 229 (301",
            "| 300 / 228 (301",
            "README.md:13: ctx.switch.fpu.eager: the README says 228, the baseline 229",
        ),
        (
            "3,828 / 3,828",
            "3,828 / 3,829",
            "README.md:14: ipc.rtt.64.xcore.proc: the README says 3829, the baseline 3828",
        ),
        (
            "**59** instructions",
            "**58** instructions",
            "README.md:19: net.tx.instr_per_pkt: the README says 58, the baseline 59",
        ),
        (
            "| 3828 (user ipc.rtt.64.xcore.proc)",
            "| 3803 (user ipc.rtt.64.xcore.proc)",
            "README.md:25: ipc.rtt.64.xcore.proc: the README says 3803, the baseline 3828",
        ),
        ("| 10 / 14 |", "| 10 |", "2 name(s) but 1 figure(s)"),
    ] {
        assert!(GOOD.contains(from), "{from}");
        t.write("README.md", &GOOD.replacen(from, to, 1));
        let out = check(&t);
        assert!(!out.status.success(), "{from} -> {to}: {}", both(&out));
        assert!(text(&out.stdout).contains(says), "{says}: {}", both(&out));
    }
    // A README whose tables lost their icount columns checks nothing: a failure too.
    t.write(
        "README.md",
        &GOOD
            .replace("| icount |", "| instr |")
            .replace("instructions (p50)", "count")
            .replace("| value |", "| figure |"),
    );
    let out = check(&t);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("no icount figure found"),
        "{}",
        both(&out)
    );
}
