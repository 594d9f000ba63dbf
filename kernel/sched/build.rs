//! Declares `cfg(loom)` as an expected cfg so that
//! `RUSTFLAGS="--cfg loom" cargo test -p exo-sched` builds warning-free.
//! (A `[lints.rust.unexpected_cfgs]` table cannot be combined with
//! `[lints] workspace = true`, hence this build script.)

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
    println!("cargo::rerun-if-changed=build.rs");
}
