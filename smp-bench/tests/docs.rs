//! What the README says about the source tree, checked against the tree.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The README's list of the kernel's files allowed `unsafe` is every file of kernel/src with
/// an `allow(unsafe_code)`, no more, no fewer: until 2026-12-06 it left out mm/memory.rs
/// (its one block maps a device window) and main.rs (the entry's `no_mangle`).
#[test]
fn the_readme_lists_every_kernel_file_allowed_unsafe() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("`unsafe` is confined to audited files:")
        .expect("the README's list of files allowed unsafe");
    let end = start + readme[start..].find("SAFETY comment").unwrap();
    let mut listed: Vec<String> = readme[start..end]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '.'))
        .filter(|w| w.ends_with(".rs"))
        .map(str::to_string)
        .collect();
    listed.sort();
    listed.dedup();

    let src = repo().join("kernel/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut allowed: Vec<String> = files
        .iter()
        .filter(|p| {
            let text: String = std::fs::read_to_string(p)
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            text.contains("allow(unsafe_code")
        })
        .map(|p| p.strip_prefix(&src).unwrap().to_string_lossy().into_owned())
        .collect();
    allowed.sort();
    assert_eq!(listed, allowed, "README (left) vs kernel/src (right)");
}

/// Every "~N ticks a pair" (a trapped `rdtsc` pair under nested software KVM) in the README,
/// docs/benchmarking.md and qemu.sh is the same figure: until 2026-12-06 the docs said
/// ~24,000 and qemu.sh ~20,000.
#[test]
fn the_trapped_rdtsc_figure_is_one_figure() {
    let mut seen = Vec::new();
    for f in ["README.md", "docs/benchmarking.md", "scripts/qemu.sh"] {
        let text = std::fs::read_to_string(repo().join(f)).unwrap();
        for (at, _) in text.match_indices(" ticks a pair") {
            let word = text[..at].rsplit([' ', '(']).next().unwrap();
            if let Some(n) = word.strip_prefix('~') {
                seen.push((f, n.to_string()));
            }
        }
    }
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.iter().all(|(_, n)| *n == seen[0].1), "{seen:?}");
}
