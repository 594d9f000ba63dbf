//! Archives written at test time by the real `cpio -o -H newc` / `-H crc` from files made
//! here: names, types, sizes and contents round-trip. Skipped (with a note on stderr) when
//! `cpio` is not installed; the committed fixtures (`tests/fixtures.rs`) cover such machines.

mod common;

use common::*;
use exo_initrd::*;
use std::collections::BTreeMap;

/// Deterministic pseudo-random bytes (xorshift).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Name -> (type, contents).
type Expected = BTreeMap<String, (FileType, Vec<u8>)>;

/// Builds a tree with files of every size class around the 4-byte padding, an empty
/// file, a 1 MiB file, nested directories, symlinks and hard links; returns the expected
/// entries (name -> (type, contents)) and the list given to cpio.
fn build_tree(dir: &std::path::Path) -> (Expected, Vec<String>) {
    use std::os::unix::fs::symlink;
    let mut expect = BTreeMap::new();
    let mut list = Vec::new();
    let mut add = |name: &str, ty, data: Vec<u8>| {
        expect.insert(name.to_string(), (ty, data));
        list.push(name.to_string());
    };
    for d in ["sbin", "usr", "usr/lib", "usr/lib/deep"] {
        std::fs::create_dir(dir.join(d)).unwrap();
        add(d, FileType::Directory, vec![]);
    }
    for (i, len) in [0usize, 1, 2, 3, 4, 5, 7, 8, 111, 4095, 4096, 4097, 1 << 20]
        .into_iter()
        .enumerate()
    {
        // Name lengths vary too, so name padding takes all four values.
        let name = format!("usr/lib/{}{len}", "n".repeat(i % 4 + 1));
        let data = bytes(i as u64 + 1, len);
        std::fs::write(dir.join(&name), &data).unwrap();
        add(&name, FileType::Regular, data);
    }
    let init = bytes(99, 777);
    std::fs::write(dir.join("init"), &init).unwrap();
    add("init", FileType::Regular, init.clone());
    symlink("/init", dir.join("sbin/init")).unwrap();
    add("sbin/init", FileType::Symlink, b"/init".to_vec());
    symlink("../../../init", dir.join("usr/lib/deep/up")).unwrap();
    add(
        "usr/lib/deep/up",
        FileType::Symlink,
        b"../../../init".to_vec(),
    );
    std::fs::hard_link(dir.join("init"), dir.join("usr/lib/deep/hard")).unwrap();
    add("usr/lib/deep/hard", FileType::Regular, init);
    (expect, list)
}

fn round_trip(format: &str, with_dot_slash: bool) {
    if !have_cpio() {
        eprintln!("note: cpio not installed; skipping the cpio -H {format} round trip");
        return;
    }
    let tmp = TempDir::new(format);
    let (expect, list) = build_tree(&tmp.0);
    let names: Vec<String> = if with_dot_slash {
        list.iter().map(|n| format!("./{n}")).collect()
    } else {
        list.clone()
    };
    let bytes = run_cpio(&tmp.0, format, &names);
    let magic = if format == "crc" {
        MAGIC_CRC
    } else {
        MAGIC_NEWC
    };
    assert_eq!(&bytes[..6], magic);
    let a = Archive::parse(&bytes).unwrap();
    assert_eq!(a.len(), expect.len());
    let mut seen = 0;
    for e in a.entries() {
        let (ty, _) = &expect[e.name];
        assert_eq!(e.file_type(), *ty, "{}", e.name);
        assert!(within(&bytes, e.data));
        // What the kernel will use: find() resolves hard links.
        let found = a.find(e.name).unwrap();
        assert_eq!(found.data, &expect[e.name].1[..], "{}", e.name);
        for spelling in [format!("/{}", e.name), format!("./{}", e.name)] {
            assert_eq!(a.find(&spelling).unwrap().data, found.data);
        }
        seen += 1;
    }
    assert_eq!(seen, expect.len());
    assert_eq!(
        a.find("/sbin/init").unwrap().symlink_target(),
        Some("/init")
    );
    // Every truncation of the real archive before the trailer's end is an error.
    for len in (0..a.end()).step_by(97).chain(a.end() - 130..a.end()) {
        assert!(Archive::parse(&bytes[..len]).is_err(), "{len}");
    }
}

#[test]
fn cpio_newc_round_trip() {
    round_trip("newc", false);
}

#[test]
fn cpio_newc_round_trip_dot_slash_names() {
    round_trip("newc", true);
}

#[test]
fn cpio_crc_round_trip() {
    round_trip("crc", false);
}
