//! Property tests: random bytes and mutated valid archives never panic, every entry's
//! slices lie inside the input, and a successful parse is self-consistent.

mod common;

use common::*;
use exo_initrd::*;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Fixed seed: the same cases on every run; change it to explore.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x1417_D0C1_0C0F),
        ..ProptestConfig::default()
    }
}

/// Everything a caller can do with an input: walk it lazily, parse it, iterate, look up.
fn exercise(input: &[u8]) {
    let mut walked = 0usize;
    let mut failed = false;
    let mut last_offset = None;
    let mut walk = exo_initrd::entries(input);
    for r in walk.by_ref() {
        // Bounded: at most one entry per 112 bytes.
        walked += 1;
        assert!(walked <= input.len() / 112 + 1);
        match r {
            Ok(e) => {
                assert!(within(input, e.data));
                assert!(within(input, e.raw_name.as_bytes()));
                assert!(within(input, e.name.as_bytes()));
                assert_eq!(e.offset % 4, 0);
                assert!(last_offset.is_none_or(|o| e.offset > o));
                last_offset = Some(e.offset);
                assert_eq!(e.name, normalize(e.raw_name));
            }
            Err(e) => {
                failed = true;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    match Archive::parse(input) {
        Ok(a) => {
            assert!(!failed);
            assert_eq!(walk.trailer_end(), Some(a.end()));
            assert!(a.end() <= input.len());
            assert_eq!(a.entries().count(), a.len());
            assert_eq!(a.len(), walked);
            for e in a.entries() {
                assert!(within(&input[..a.end()], e.data));
                let f = a.find(e.raw_name).unwrap();
                assert_eq!(f.name, e.name);
                assert!(within(input, f.data));
            }
            for p in ["/init", "init", "", "/", "x"] {
                if let Some(e) = a.find(p) {
                    assert!(within(input, e.data));
                }
            }
        }
        Err(_) => assert!(failed),
    }
}

#[derive(Debug, Clone)]
enum Edit {
    /// Overwrite one byte.
    Byte(usize, u8),
    /// Overwrite one byte with a hex digit (keeps headers parseable more often).
    Hex(usize, u8),
    /// Replace an 8-digit field of the header at a random entry with a value.
    Field(usize, usize, u32),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        (any::<usize>(), 0u8..16).prop_map(|(i, d)| Edit::Hex(i, d)),
        (
            any::<usize>(),
            0usize..13,
            prop_oneof![any::<u32>(), 0u32..300, Just(u32::MAX), Just(0x7FFF_FFFF),]
        )
            .prop_map(|(e, f, v)| Edit::Field(e, f, v)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len().max(1);
        match *e {
            Edit::Byte(i, b) => {
                if let Some(x) = bytes.get_mut(i % n) {
                    *x = b;
                }
            }
            Edit::Hex(i, d) => {
                if let Some(x) = bytes.get_mut(i % n) {
                    *x = b"0123456789ABCDEF"[usize::from(d)];
                }
            }
            Edit::Field(entry, field, v) => {
                let offsets: Vec<usize> = exo_initrd::entries(&bytes)
                    .filter_map(Result::ok)
                    .map(|e| e.offset)
                    .collect();
                if let Some(&o) = offsets.get(entry % offsets.len().max(1)) {
                    let at = o + 6 + 8 * field;
                    bytes[at..at + 8].copy_from_slice(format!("{v:08x}").as_bytes());
                }
            }
            Edit::Truncate(i) => bytes.truncate(i % n),
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Remove(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % n);
                }
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn random_bytes(input in proptest::collection::vec(any::<u8>(), 0..1024)) {
        exercise(&input);
    }

    #[test]
    fn random_hex_headers(
        digits in proptest::collection::vec(0u8..16, 104),
        tail in proptest::collection::vec(any::<u8>(), 0..300),
        crc in any::<bool>(),
    ) {
        // A well-formed header with random fields, then random bytes.
        let mut input = if crc { MAGIC_CRC.to_vec() } else { MAGIC_NEWC.to_vec() };
        input.extend(digits.iter().map(|&d| b"0123456789abcdef"[usize::from(d)]));
        input.extend_from_slice(&tail);
        exercise(&input);
    }

    #[test]
    fn mutated_fixture(which in 0usize..2, edits in proptest::collection::vec(edit(), 1..6)) {
        let base = if which == 0 { sample() } else { sample_crc() };
        exercise(&apply(base, &edits));
    }

    #[test]
    fn mutated_hand_made(
        files in proptest::collection::vec(("[a-z./]{0,12}", proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
        edits in proptest::collection::vec(edit(), 0..4),
        crc in any::<bool>(),
    ) {
        let entries: Vec<RawEntry> = files
            .iter()
            .map(|(n, d)| {
                let e = RawEntry::file(n, d);
                if crc { e.crc() } else { e }
            })
            .collect();
        let bytes = archive(&entries);
        if edits.is_empty() {
            // Unmutated: round trip.
            let a = Archive::parse(&bytes).unwrap();
            let got: Vec<_> = a.entries().map(|e| (e.raw_name.to_string(), e.data.to_vec())).collect();
            prop_assert_eq!(got, files.clone());
        }
        exercise(&apply(bytes, &edits));
    }
}
