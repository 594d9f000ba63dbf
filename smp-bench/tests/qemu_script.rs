//! `scripts/qemu.sh` with QEMU replaced by a stub (skipped when bash or awk is missing):
//! which kernel it boots, where its log goes.

mod common;

use common::{Tmp, both, have, repo, text};
use std::path::Path;
use std::process::{Command, Output};

/// qemu-system-x86_64: writes its arguments one a line to $FAKE_QEMU_ARGS, prints a line
/// and exits $FAKE_QEMU_RC (33: the kernel's success).
const QEMU_STUB: &str = "#!/usr/bin/env bash\n\
printf '%s\\n' \"$@\" > \"$FAKE_QEMU_ARGS\"\n\
echo 'BOOT,done,1'\n\
exit \"${FAKE_QEMU_RC:-33}\"\n";

fn setup(tag: &str) -> Tmp {
    let t = Tmp::new(tag);
    t.script("bin/qemu-system-x86_64", QEMU_STUB);
    t
}

/// Runs the repository's `scripts/qemu.sh <args>` with the stub QEMU first on the PATH and
/// `CARGO_TARGET_DIR` set to `target_dir` (unset when `None`).
fn qemu(t: &Tmp, args: &[&str], target_dir: Option<&Path>) -> Output {
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
    cmd.arg(repo().join("scripts/qemu.sh"))
        .args(args)
        .current_dir(&t.0)
        .env("PATH", path)
        .env("FAKE_QEMU_ARGS", t.path("qemu.args"))
        .output()
        .unwrap()
}

/// The argument after `flag` in the stub's record of QEMU's command line.
fn qemu_arg(t: &Tmp, flag: &str) -> Option<String> {
    let args = t.read("qemu.args");
    let mut it = args.lines();
    it.by_ref().find(|a| *a == flag)?;
    it.next().map(str::to_string)
}

/// Without --kernel, the kernel booted is the one in `$CARGO_TARGET_DIR`, where cargo built
/// it: until 2026-12-06 it was ./target's whatever CARGO_TARGET_DIR said (an old kernel).
#[test]
fn the_default_kernel_is_in_cargo_target_dir() {
    if !have("bash") {
        return;
    }
    let t = setup("qemu-target-dir");
    let elsewhere = t.path("elsewhere");
    let kernel = elsewhere.join("x86_64-unknown-none/release/exo");
    // Not built there: refused, naming where it looked (never ./target's).
    let out = qemu(&t, &["--job", "boot"], Some(&elsewhere));
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        text(&out.stderr).contains(&format!("no kernel at {}", kernel.display())),
        "{}",
        both(&out)
    );
    t.write("elsewhere/x86_64-unknown-none/release/exo", "");
    let out = qemu(&t, &["--job", "boot"], Some(&elsewhere));
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        qemu_arg(&t, "-kernel").as_deref(),
        Some(kernel.to_str().unwrap())
    );
}

/// `--log` into a folder that does not exist yet: made, and the log written. Until
/// 2026-12-06 tee could not open it, the log was lost and qemu.sh exited 0.
#[test]
fn a_log_in_a_missing_folder_is_written() {
    if !have("bash") {
        return;
    }
    let t = setup("qemu-log-folder");
    t.write("tgt/x86_64-unknown-none/release/exo", "");
    let log = t.path("new/folder/boot.log");
    let out = qemu(
        &t,
        &["--job", "boot", "--log", log.to_str().unwrap()],
        Some(&t.path("tgt")),
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(t.read("new/folder/boot.log"), "BOOT,done,1\n");
}

/// A log that cannot be made stops the run before QEMU starts (exit 2), and a run that
/// stops early (no kernel) leaves an empty log, not the previous run's.
#[test]
fn a_log_is_made_before_anything_else_or_the_run_stops() {
    if !have("bash") {
        return;
    }
    let t = setup("qemu-log-early");
    t.write("tgt/x86_64-unknown-none/release/exo", "");
    t.write("a-file", "");
    let bad = t.path("a-file/boot.log");
    let out = qemu(
        &t,
        &["--job", "boot", "--log", bad.to_str().unwrap()],
        Some(&t.path("tgt")),
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        text(&out.stderr).contains("cannot write the log"),
        "{}",
        both(&out)
    );
    assert!(!t.path("qemu.args").exists(), "QEMU ran: {}", both(&out));

    t.write("old.log", "BOOT,done,from an older run\n");
    let old = t.path("old.log");
    let out = qemu(
        &t,
        &["--job", "boot", "--log", old.to_str().unwrap()],
        Some(&t.path("no-kernel-here")),
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert_eq!(t.read("old.log"), "");
}

/// `cpu_model` of qemu.sh: the -cpu value for a mode and a --cpu ("" when not given).
fn cpu_model(mode: &str, cpu: &str) -> String {
    qemu_fn("cpu_model", &[mode, cpu])
}

/// --cpu is the model under kvm too, with +invtsc added; host when not given. Until
/// 2026-12-06 kvm's profile hard-coded -cpu host,+invtsc and --cpu was silently ignored.
#[test]
fn cpu_is_honoured_under_kvm() {
    if !have("bash") {
        return;
    }
    assert_eq!(cpu_model("kvm", ""), "host,+invtsc");
    assert_eq!(cpu_model("kvm", "EPYC"), "EPYC,+invtsc");
    assert_eq!(cpu_model("tcg", ""), "max");
    assert_eq!(cpu_model("icount", "qemu64"), "qemu64");
    // One -cpu only: the kvm profile names none (a second -cpu would win or clash).
    let kvm = std::fs::read_to_string(repo().join("configs/qemu/kvm.args")).unwrap();
    assert!(
        kvm.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("-cpu")),
        "{kvm}"
    );
}

/// The same through the whole script where this host lets it run --mode kvm (a writable
/// /dev/kvm; EXO_KVM_FORCE for nested software KVM): QEMU gets -cpu <model>,+invtsc once.
#[test]
fn cpu_reaches_qemu_under_kvm() {
    if !have("bash") {
        return;
    }
    let writable = Command::new("test")
        .args(["-w", "/dev/kvm"])
        .status()
        .is_ok_and(|s| s.success());
    if !writable {
        eprintln!("skipped: no writable /dev/kvm (cpu_is_honoured_under_kvm covers the rule)");
        return;
    }
    let t = setup("qemu-kvm-cpu");
    t.write("tgt/x86_64-unknown-none/release/exo", "");
    let path = format!(
        "{}:{}",
        t.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (cpu, want) in [(None, "host,+invtsc"), (Some("EPYC"), "EPYC,+invtsc")] {
        let mut args = vec!["--mode", "kvm", "--job", "boot"];
        if let Some(c) = cpu {
            args.extend(["--cpu", c]);
        }
        let out = Command::new("bash")
            .arg(repo().join("scripts/qemu.sh"))
            .args(&args)
            .current_dir(&t.0)
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", t.path("tgt"))
            .env("EXO_KVM_FORCE", "1")
            .env("FAKE_QEMU_ARGS", t.path("qemu.args"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", both(&out));
        assert_eq!(qemu_arg(&t, "-cpu").as_deref(), Some(want));
        assert_eq!(
            t.read("qemu.args").lines().filter(|l| *l == "-cpu").count(),
            1
        );
    }
}

/// A function of qemu.sh, taken out with sed, called with `args`; its output.
fn qemu_fn(name: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <(sed -n '/^{name}() {{/,/^}}/p' \"$Q\") && declare -F {name} >/dev/null \
             && {name} \"$@\""
        ))
        .arg("bash")
        .args(args)
        .env("Q", repo().join("scripts/qemu.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "no {name} in qemu.sh: {}", both(&out));
    text(&out.stdout).trim().to_string()
}

/// Large CPU counts get a longer default time limit (QEMU's own start-up grows with them):
/// until 2026-12-06 `just qemu-smp 1024 q35x` had 180 s, where CI had seen 157.
#[test]
fn large_cpu_counts_get_a_longer_default_timeout() {
    if !have("bash") {
        return;
    }
    assert_eq!(qemu_fn("default_timeout", &["4"]), "180");
    assert_eq!(qemu_fn("default_timeout", &["64"]), "180");
    assert_eq!(qemu_fn("default_timeout", &["512"]), "628");
    assert_eq!(qemu_fn("default_timeout", &["1024"]), "1140");
    assert_eq!(qemu_fn("default_timeout", &["4,sockets=2"]), "180");
}

/// --help names every job the kernel and the scripts use (serve and linux were missing).
#[test]
fn help_names_every_job() {
    if !have("bash") {
        return;
    }
    let t = setup("qemu-help");
    let out = qemu(&t, &["--help"], None);
    assert!(out.status.success(), "{}", both(&out));
    let help = text(&out.stdout);
    assert!(
        help.contains("--job boot|test|bench|contended|init|serve|linux"),
        "{help}"
    );
    assert!(help.contains("--timeout: "), "{help}");
}
