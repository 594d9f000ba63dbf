//! Helpers for the tests that run the repository's shell scripts on crafted logs.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `true` when `cmd` is on the PATH (bash itself included); says so when it is not.
pub fn have(cmd: &str) -> bool {
    let ok = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "command -v {cmd} >/dev/null && command -v awk >/dev/null"
        ))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: bash, awk or {cmd} not available");
    }
    ok
}

/// A fresh empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(tag: &str) -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "smp-bench-scripts-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes `text` at `rel` (parents created).
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Writes an executable script at `rel`.
    pub fn script(&self, rel: &str, text: &str) {
        self.write(rel, text);
        let st = Command::new("chmod")
            .arg("+x")
            .arg(self.path(rel))
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Copies the repository's `rel` to the same place here (executable).
    pub fn copy_from_repo(&self, rel: &str) {
        self.script(rel, &std::fs::read_to_string(repo().join(rel)).unwrap());
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the repository's `scripts/<script>` with bash in `dir`.
pub fn run_script(script: &str, args: &[&str], dir: &Path) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts").join(script))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout and stderr of `out`, for assertion messages.
pub fn both(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}
