//! The build script of every user program (each Cargo.toml says `build = "../link.rs"`):
//! links it for Exo-OS (`target_os = "none"`) with `user/user.ld`: a static, non-PIE ELF64
//! executable at 0x400000. Host builds (the workspace's clippy and tests) get no flags. Also
//! puts the git revision in `EXO_GIT_REV` (the benchmarks' SUITE line).
fn main() {
    println!("cargo:rerun-if-changed=../user.ld");
    println!("cargo:rerun-if-changed=../link.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/../user.ld");
        println!("cargo:rustc-link-arg-bins=-static");
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EXO_GIT_REV={rev}");
    // Built again when the revision moves: HEAD names a branch, whose ref file (or the
    // packed refs) changes on a commit. Watching HEAD alone (until 2026-12-04) kept the
    // first revision ever built in every later SUITE line.
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{branch}");
        }
        if std::path::Path::new(&format!("{dir}/packed-refs")).exists() {
            println!("cargo:rerun-if-changed={dir}/packed-refs");
        }
    }
}
