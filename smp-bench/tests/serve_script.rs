//! `scripts/serve.sh run` in a scratch copy of the repository layout with qemu.sh replaced
//! by a stub (skipped when bash or awk is missing): no time limit, and how it ended is said.

mod common;

use common::{Tmp, both, have, text};
use std::process::Command;

/// scripts/qemu.sh: records its arguments, brings the serve job "up", then ends by itself
/// as qemu.sh does at its time limit.
const QEMU_STUB: &str = r#"#!/usr/bin/env bash
echo "$*" > qemu.args
log=""
while [ $# -gt 0 ]; do case $1 in --log) log=$2; shift 2 ;; *) shift ;; esac; done
printf 'SERVE,up,pci,mac,52:54:00:12:34:56\nSERVE,address,10.0.2.15/24,Dhcp\n' >> "$log"
sleep 1
echo "qemu.sh: timed out after 3600s" >&2
exit 2
"#;

/// `just serve` serves until Ctrl-C: qemu.sh gets no time limit (--timeout 0), and a QEMU
/// that ends by itself is reported with qemu.sh's own message and a failure exit. Until
/// 2026-12-06 it was --timeout 3600, qemu.sh's messages went to /dev/null and the script
/// ended silently with success after an hour.
#[test]
fn serve_run_has_no_time_limit_and_says_how_it_ended() {
    if !have("bash") {
        return;
    }
    let t = Tmp::new("serve-run");
    t.copy_from_repo("scripts/serve.sh");
    t.script("scripts/qemu.sh", QEMU_STUB);
    let out = Command::new("bash")
        .arg(t.path("scripts/serve.sh"))
        .args(["run", "2"])
        .current_dir(&t.0)
        .env("EXO_HTTP_PORT", "18081")
        .env("EXO_UDP_PORT", "18008")
        .output()
        .unwrap();
    assert!(
        t.read("qemu.args").contains("--timeout 0 "),
        "{}\n{}",
        t.read("qemu.args"),
        both(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("QEMU ended by itself (qemu.sh exit 2)"),
        "{}",
        both(&out)
    );
    assert!(
        err.contains("qemu.sh: timed out after 3600s"),
        "{}",
        both(&out)
    );
}
