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
    emit_git_rev();
    println!("cargo:rerun-if-changed=../../kernel/git_rev.rs");
}

include!("../kernel/git_rev.rs");
