//! Links the kernel with its own script (identity placement at 2 MiB, PVH note segment).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=linker.ld");
    // The git revision goes into the bench SUITE header.
    emit_git_rev();
    println!("cargo:rerun-if-changed=git_rev.rs");
}

include!("git_rev.rs");
