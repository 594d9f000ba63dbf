// Shared by the kernel's build script and every user program's (`include!`d, not a module):
// puts the git revision in `EXO_GIT_REV` (the benchmarks' SUITE line) and has the crate
// built again when the revision moves.

/// `EXO_GIT_REV` = `git rev-parse --short=12 HEAD` (`unknown` outside a checkout), and the
/// files whose change means a new revision: HEAD, the branch's ref file, the packed refs.
/// Watching HEAD alone (until 2026-12-04) kept the first revision ever built in every later
/// SUITE line: HEAD names a branch and does not change on a commit.
fn emit_git_rev() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EXO_GIT_REV={rev}");
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
