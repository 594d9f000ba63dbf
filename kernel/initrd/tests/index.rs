//! `Index`: its lookups are exactly `Archive::find`'s (names, duplicates, hard links), with a
//! table or, when the storage is too small, by the walk.

mod common;

use common::*;
use exo_initrd::*;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Every lookup of `queries` (and of every entry's name and raw name, with and without a
/// leading `/`) gives the same entry through `index` as through the archive's walk.
fn same_as_walk(archive: &Archive<'_>, index: &Index<'_, '_>, queries: &[String]) {
    let mut all: Vec<String> = queries.to_vec();
    for e in archive.entries() {
        all.extend([
            e.name.to_string(),
            e.raw_name.to_string(),
            format!("/{}", e.name),
            format!("./{}", e.raw_name),
        ]);
    }
    for q in &all {
        assert_eq!(index.find(q), archive.find(q), "lookup of {q:?}");
    }
}

fn indexed<'a>(bytes: &'a [u8], slots: &mut Vec<Entry<'a>>) -> Archive<'a> {
    let archive = Archive::parse(bytes).unwrap();
    slots.resize(archive.len(), Entry::default());
    archive
}

#[test]
fn duplicates_last_wins() {
    let bytes = archive(&[
        RawEntry::file("init", b"first"),
        RawEntry::file("/init", b"second"),
        RawEntry::file("hello", b"h"),
        RawEntry::file("./init", b"third"),
        RawEntry::file("initx", b"prefix"),
        RawEntry::file("ini", b"shorter"),
    ]);
    let mut slots = Vec::new();
    let a = indexed(&bytes, &mut slots);
    let index = a.index(&mut slots);
    assert!(index.is_table());
    assert_eq!(index.names(), 4);
    for q in ["init", "/init", "./init", ".//init"] {
        assert_eq!(index.find(q).unwrap().data, b"third");
    }
    assert_eq!(index.find("ini").unwrap().data, b"shorter");
    assert_eq!(index.find("initx").unwrap().data, b"prefix");
    assert_eq!(index.find("in"), None);
    assert_eq!(index.find("initxy"), None);
    assert_eq!(index.find(""), None);
    same_as_walk(&a, &index, &[]);
}

#[test]
fn too_small_storage_walks() {
    let bytes = archive(&[
        RawEntry::file("a", b"1"),
        RawEntry::file("b", b"2"),
        RawEntry::file("a", b"3"),
    ]);
    let a = Archive::parse(&bytes).unwrap();
    for n in 0..3 {
        let mut slots = vec![Entry::default(); n];
        let index = a.index(&mut slots);
        assert!(!index.is_table(), "{n} slots");
        assert_eq!(index.names(), 0);
        // The walk still answers, with the same rule (the last "a").
        assert_eq!(index.find("/a").unwrap().data, b"3");
        assert_eq!(index.find("b").unwrap().data, b"2");
        assert_eq!(index.find("c"), None);
        same_as_walk(&a, &index, &[]);
    }
    // More slots than entries: a table, the rest of the storage unused.
    let mut slots = vec![Entry::default(); 10];
    let index = a.index(&mut slots);
    assert!(index.is_table());
    assert_eq!(index.names(), 2);
    assert_eq!(index.find("a").unwrap().data, b"3");
}

#[test]
fn empty_archive_and_root() {
    let bytes = archive(&[]);
    let a = Archive::parse(&bytes).unwrap();
    let index = a.index(&mut []);
    assert!(index.is_table());
    assert_eq!(index.find(""), None);
    assert_eq!(index.find("x"), None);

    // "." is the root: found as "", "/", "." and "./".
    let bytes = archive(&[RawEntry::dir("."), RawEntry::file("x", b"x")]);
    let mut slots = Vec::new();
    let a = indexed(&bytes, &mut slots);
    let index = a.index(&mut slots);
    for q in ["", "/", ".", "./", "//"] {
        assert_eq!(index.find(q).unwrap().raw_name, ".", "{q:?}");
    }
    same_as_walk(&a, &index, &[]);
}

#[test]
fn hard_links_as_find() {
    // cpio's layout: the data with the last link, the others empty. "b" is shadowed by a
    // later plain file of the same name, yet "a" still gets the data of the link "b".
    let link = |name: &str, data: &[u8]| RawEntry {
        ino: 7,
        nlink: 2,
        ..RawEntry::file(name, data)
    };
    let bytes = archive(&[
        link("a", b""),
        link("b", b"linked data"),
        RawEntry::file("b", b"plain"),
        link("c", b""),
    ]);
    let mut slots = Vec::new();
    let a = indexed(&bytes, &mut slots);
    let index = a.index(&mut slots);
    assert_eq!(index.find("a").unwrap().data, b"linked data");
    assert_eq!(index.find("a").unwrap().name, "a");
    assert_eq!(index.find("b").unwrap().data, b"plain");
    assert_eq!(index.find("c").unwrap().data, b"linked data");
    same_as_walk(&a, &index, &[]);
}

#[test]
fn fixtures() {
    for bytes in [sample(), sample_crc()] {
        let mut slots = Vec::new();
        let a = indexed(&bytes, &mut slots);
        let index = a.index(&mut slots);
        assert!(index.is_table());
        assert_eq!(index.names(), a.len());
        assert_eq!(
            index.find("/bin/init-link").unwrap().data,
            index.find("/init").unwrap().data
        );
        same_as_walk(
            &a,
            &index,
            &["odd/ab".into(), "odd/abcd".into(), "bin/".into()],
        );
    }
}

/// Fixed seed: the same cases on every run; change it to explore.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x1DE7_0F1A_2026),
        ..ProptestConfig::default()
    }
}

/// Names from a small alphabet, so duplicates, prefixes, `/`/`./` variants and the empty
/// name (`""`, `.`, `/`) come often.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ab./]{0,4}",
        Just(String::new()),
        Just(".".to_string()),
        Just("init".to_string()),
        Just("/init".to_string()),
        Just("initx".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    name: String,
    data: Vec<u8>,
    /// (ino, nlink): hard links when several share an ino and nlink > 1.
    ino: u32,
    nlink: u32,
    kind: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        name(),
        prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..6)
        ],
        0u32..3,
        1u32..3,
        0u8..4,
    )
        .prop_map(|(name, data, ino, nlink, kind)| Spec {
            name,
            data,
            ino,
            nlink,
            kind,
        })
}

fn build(specs: &[Spec], crc: bool) -> Vec<u8> {
    let entries: Vec<RawEntry> = specs
        .iter()
        .map(|s| {
            let mut e = match s.kind {
                0 => RawEntry::dir(&s.name),
                1 => RawEntry {
                    mode: 0o120_777,
                    ..RawEntry::file(&s.name, &s.data)
                },
                _ => RawEntry::file(&s.name, &s.data),
            };
            e.ino = s.ino;
            e.nlink = s.nlink;
            if crc { e.crc() } else { e }
        })
        .collect();
    archive(&entries)
}

proptest! {
    #![proptest_config(config(3000))]

    /// Random archives: the table's answer to every lookup is the walk's.
    #[test]
    fn index_is_walk(
        specs in proptest::collection::vec(spec(), 0..12),
        queries in proptest::collection::vec(name(), 0..8),
        crc in any::<bool>(),
        room in 0usize..4,
    ) {
        let bytes = build(&specs, crc);
        let a = Archive::parse(&bytes).unwrap();
        // More storage than entries, exactly enough, or too little (the walk).
        let n = match room {
            0 => a.len() + 1,
            1 => a.len(),
            k => a.len().saturating_sub(k - 1),
        };
        let mut slots = vec![Entry::default(); n];
        let index = a.index(&mut slots);
        prop_assert_eq!(index.is_table(), n >= a.len());
        same_as_walk(&a, &index, &queries);
    }
}
