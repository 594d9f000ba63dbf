//! The Justfile's shell: a recipe line fails when any command of a pipe fails (skipped
//! when bash, awk or just is missing). QEMU and cargo are stubs.

mod common;

use common::{Tmp, both, have, repo};
use std::process::{Command, Output};

/// scripts/qemu.sh: prints a network BENCH row, exits $FAKE_QEMU_RC.
const QEMU_STUB: &str = "#!/usr/bin/env bash\n\
echo 'BENCH,net.tx.pps,1,5,5,5,5,5,5'\n\
exit \"${FAKE_QEMU_RC:-0}\"\n";

fn just(t: &Tmp, recipe: &[&str], qemu_rc: i32) -> Output {
    let path = format!(
        "{}:{}",
        t.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("just")
        .arg("--justfile")
        .arg(repo().join("Justfile"))
        .arg("--working-directory")
        .arg(&t.0)
        .args(recipe)
        .env("PATH", path)
        .env("FAKE_QEMU_RC", qemu_rc.to_string())
        .output()
        .unwrap()
}

/// `just bench-net` (QEMU piped into grep) fails when QEMU fails; until 2026-12-04 the
/// shell had no pipefail and the recipe passed on grep's success.
#[test]
fn bench_net_fails_when_qemu_fails() {
    if !have("just") {
        return;
    }
    let t = Tmp::new("just-bench-net");
    t.script("scripts/qemu.sh", QEMU_STUB);
    t.script("bin/cargo", "#!/bin/sh\nexit 0\n");
    let out = just(&t, &["bench-net"], 0);
    assert!(out.status.success(), "{}", both(&out));
    // Its logs go to out/, made by the recipe (until 2026-12-06 it was not, and the log
    // of a fresh clone's first run was lost).
    assert!(t.path("out").is_dir(), "{}", both(&out));
    let out = just(&t, &["bench-net"], 2);
    assert!(!out.status.success(), "{}", both(&out));
}
