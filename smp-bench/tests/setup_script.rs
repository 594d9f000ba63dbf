//! `ci/setup.sh` on a scratch PATH of stubs (apt-get, QEMU, rustup, ...) and a scratch
//! os-release and apt folder (skipped when bash or awk is missing): what it installs, where
//! it adds an apt source.

mod common;

use common::{Tmp, both, have, repo, text};
use std::process::{Command, Output};

/// The system tools setup.sh itself uses, linked into the scratch PATH; nothing else of the
/// host's (no python3, ip or nstat: setup must install them).
const TOOLS: &[&str] = &[
    "bash", "sh", "dirname", "id", "sed", "head", "grep", "tee", "cat", "env", "touch",
];

/// apt-get: records its arguments; installing qemu-system-x86 makes the QEMU stub say 8.2.
const APT_GET: &str = "#!/bin/sh\n\
echo \"$*\" >> \"$STATE/apt.calls\"\n\
case \"$*\" in *qemu-system-x86*) touch \"$STATE/qemu8\" ;; esac\n\
exit 0\n";

const QEMU: &str = "#!/bin/sh\n\
if [ -f \"$STATE/qemu8\" ]; then echo 'QEMU emulator version 8.2.0'; else echo 'QEMU emulator version 7.2.0'; fi\n";

fn setup(tag: &str, os_release: &str, with_apt: bool) -> Tmp {
    let t = Tmp::new(tag);
    std::fs::create_dir_all(t.path("bin")).unwrap();
    for tool in TOOLS {
        let found = Command::new("bash")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .unwrap();
        let path = text(&found.stdout).trim().to_string();
        assert!(!path.is_empty(), "no {tool} on this host");
        std::os::unix::fs::symlink(path, t.path(&format!("bin/{tool}"))).unwrap();
    }
    if with_apt {
        t.script("bin/apt-get", APT_GET);
        t.script(
            "bin/apt-cache",
            "#!/bin/sh\necho '  Depends: linux-image-6.1.0-1-amd64'\n",
        );
    }
    t.script("bin/qemu-system-x86_64", QEMU);
    t.script("bin/sudo", "#!/bin/sh\nexec \"$@\"\n");
    t.script("bin/rustup", "#!/bin/sh\nexit 0\n");
    t.script("bin/just", "#!/bin/sh\necho 'just 1.0.0'\n");
    for tool in ["cpio", "readelf", "gcc", "curl", "wrk"] {
        t.script(&format!("bin/{tool}"), "#!/bin/sh\nexit 0\n");
    }
    t.write("os-release", os_release);
    t.write(
        "apt/sources.list",
        "deb http://deb.debian.org/debian bookworm main\n",
    );
    t.write("apt/sources.list.d/.keep", "");
    t.write(
        "repo/rust-toolchain.toml",
        "[toolchain]\nchannel = \"1.95\"\n",
    );
    t.write(
        "repo/ci/setup.sh",
        &std::fs::read_to_string(repo().join("ci/setup.sh")).unwrap(),
    );
    t
}

fn run(t: &Tmp) -> Output {
    Command::new(t.path("bin/bash"))
        .arg(t.path("repo/ci/setup.sh"))
        .current_dir(&t.0)
        .env_clear()
        .env("PATH", t.path("bin"))
        .env("HOME", &t.0)
        .env("STATE", &t.0)
        .env("EXO_SETUP_OS_RELEASE", t.path("os-release"))
        .env("EXO_SETUP_APT_ETC", t.path("apt"))
        .output()
        .unwrap()
}

/// On Debian: QEMU from the release's backports, whose source is added; python3 and
/// iproute2 (ip, nstat: `just test`'s tap-mq runs, serve.sh) installed when missing, once.
#[test]
fn debian_gets_backports_and_the_tools_just_test_needs() {
    if !have("bash") {
        return;
    }
    let t = setup(
        "setup-debian",
        "ID=debian\nVERSION_CODENAME=bookworm\n",
        true,
    );
    let out = run(&t);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        t.read("apt/sources.list.d/exo-backports.list"),
        "deb http://deb.debian.org/debian bookworm-backports main\n"
    );
    let calls = t.read("apt.calls");
    assert!(
        calls.contains("install -y -qq -t bookworm-backports qemu-system-x86"),
        "{calls}"
    );
    let tools = calls
        .lines()
        .find(|l| l.contains("python3"))
        .unwrap_or_else(|| panic!("python3 not installed: {calls}"));
    assert_eq!(tools.matches("iproute2").count(), 1, "{tools}");
}

/// Elsewhere no Debian source is added (it would break apt there): QEMU comes from the
/// system's own packages, or setup stops and says so. Until 2026-12-06 the backports line
/// was written on any system.
#[test]
fn another_distribution_gets_no_debian_source() {
    if !have("bash") {
        return;
    }
    let t = setup("setup-ubuntu", "ID=ubuntu\nVERSION_CODENAME=noble\n", true);
    let out = run(&t);
    assert!(out.status.success(), "{}", both(&out));
    assert!(!t.path("apt/sources.list.d/exo-backports.list").exists());
    let calls = t.read("apt.calls");
    assert!(calls.contains("install -y -qq qemu-system-x86"), "{calls}");
    assert!(!calls.contains("backports"), "{calls}");

    let t = setup("setup-fedora", "ID=fedora\n", false);
    let out = run(&t);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        text(&out.stderr).contains("this is not Debian (fedora)"),
        "{}",
        both(&out)
    );
    assert!(!t.path("apt/sources.list.d/exo-backports.list").exists());
}
