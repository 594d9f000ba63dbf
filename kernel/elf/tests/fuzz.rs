//! Property tests: random bytes, mutated real executables and random program header
//! tables never panic, and every plan returned satisfies all the invariants (in range,
//! aligned, W^X, entry in an executable segment, file ranges inside the input, relocations
//! inside writable segments).

mod common;

use common::*;
use exo_elf::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngSeed, TestRunner};

/// Fixed seed: the same cases on every run; change it to explore.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0xE1F0_5EED),
        ..ProptestConfig::default()
    }
}

/// Runs `plan`; checks the invariants of a plan, the shape of an error. True if accepted.
fn exercise(file: &[u8], opts: &LoadOptions) -> bool {
    match plan(file, opts) {
        Ok(p) => {
            check_invariants(&p, file, opts);
            true
        }
        Err(e) => {
            let s = e.to_string();
            assert!(s.starts_with("ELF: ") && !s.contains('\n'));
            false
        }
    }
}

fn options() -> impl Strategy<Value = LoadOptions> {
    (
        prop_oneof![Just(0u64), Just(0x1000), Just(0x40_0000), any::<u64>()],
        prop_oneof![
            Just(0x0000_7fff_ffff_f000u64),
            Just(u64::MAX),
            Just(0x50_0000),
            any::<u64>()
        ],
        prop_oneof![Just(16usize), 0usize..20, Just(usize::MAX)],
        prop_oneof![Just(1u64 << 30), 0u64..0x10_0000, Just(u64::MAX)],
        prop_oneof![
            Just(0x40_0000u64),
            (1u64..0x7_ffff_ffff).prop_map(|p| p << 12),
            any::<u64>(),
            Just(0),
        ],
    )
        .prop_map(|(s, e, n, m, b)| LoadOptions {
            user_start: s,
            user_end: e,
            max_segments: n,
            max_total_memsz: m,
            pie_bias: b,
        })
}

const FIXTURES: [&str; 7] = [
    "tiny-exec",
    "tiny-pie",
    "rs-pie",
    "rs-exec",
    "tiny-execstack",
    "tiny-interp",
    "tiny-rwx",
];

#[derive(Debug, Clone)]
enum Edit {
    /// A byte anywhere.
    Byte(usize, u8),
    /// A byte in the headers (first 1 KiB), where the decisions are made.
    Header(usize, u8),
    /// An interesting 64-bit value at an 8-aligned offset in the headers.
    Word(usize, u64),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        (0usize..1024, any::<u8>()).prop_map(|(i, b)| Edit::Header(i, b)),
        (
            0usize..128,
            prop_oneof![
                any::<u64>(),
                Just(u64::MAX),
                Just(0),
                Just(8),
                Just(0x1000),
                Just(0x40_0000),
                Just(1u64 << 47),
            ]
        )
            .prop_map(|(i, v)| Edit::Word(i * 8, v)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = b.len().max(1);
        match *e {
            Edit::Byte(i, v) => {
                if let Some(x) = b.get_mut(i % n) {
                    *x = v;
                }
            }
            Edit::Header(i, v) => {
                if let Some(x) = b.get_mut(i) {
                    *x = v;
                }
            }
            Edit::Word(i, v) => {
                if let Some(x) = b.get_mut(i..i + 8) {
                    x.copy_from_slice(&v.to_le_bytes());
                }
            }
            Edit::Truncate(i) => b.truncate(i % n),
        }
    }
    b
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..0x3000,
        (0u64..0x10).prop_map(|p| 0x40_0000 + p * 0x800),
        Just(u64::MAX),
        Just(1u64 << 47),
        any::<u64>(),
    ]
}

fn phdr() -> impl Strategy<Value = Ph> {
    (
        prop_oneof![
            4 => Just(PT_LOAD),
            1 => Just(PT_DYNAMIC),
            1 => Just(PT_TLS),
            1 => Just(PT_GNU_STACK),
            1 => Just(PT_PHDR),
            1 => Just(PT_INTERP),
            1 => any::<u32>(),
        ],
        prop_oneof![Just(R), Just(R | X), Just(R | W), 0u32..8, any::<u32>()],
        interesting_u64(),
        interesting_u64(),
        prop_oneof![0u64..0x200, interesting_u64()],
        prop_oneof![0u64..0x4000, interesting_u64()],
        prop_oneof![Just(0x1000u64), Just(0), Just(8), any::<u64>()],
    )
        .prop_map(|(p_type, flags, offset, vaddr, filesz, memsz, align)| {
            // Keep offset and address congruent most of the time, so plans get through.
            let vaddr = if vaddr < 0x10_0000 {
                0x40_0000 + (vaddr & !0xfff) + (offset & 0xfff)
            } else {
                vaddr
            };
            Ph {
                p_type,
                flags,
                offset,
                vaddr,
                filesz,
                memsz,
                align,
            }
        })
}

/// One change to a program header of a valid base file.
#[derive(Debug, Clone)]
enum PhEdit {
    /// Set field `f` (0 type, 1 flags, 2 offset, 3 vaddr, 4 filesz, 5 memsz, 6 align) of
    /// header `i` to `v`.
    Field(usize, usize, u64),
    /// Insert a random header at `i`.
    Insert(usize, Ph),
    Remove(usize),
    Swap(usize, usize),
}

fn ph_edit() -> impl Strategy<Value = PhEdit> {
    prop_oneof![
        4 => (0usize..8, 0usize..7, interesting_u64()).prop_map(|(i, f, v)| PhEdit::Field(i, f, v)),
        2 => (0usize..8, phdr()).prop_map(|(i, p)| PhEdit::Insert(i, p)),
        1 => (0usize..8).prop_map(PhEdit::Remove),
        1 => (0usize..8, 0usize..8).prop_map(|(i, j)| PhEdit::Swap(i, j)),
    ]
}

/// A valid hand-made file (`Elf::exec()` or `Elf::pie()` with random relocations), whose
/// program headers and entry point are then edited: many stay valid, many break in one
/// place.
fn random_elf() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(
            (
                prop_oneof![0x2000u64..0x5000, interesting_u64()],
                prop_oneof![4 => Just(8u32), 1 => Just(0), 1 => any::<u32>()],
                any::<i64>(),
            ),
            0..4,
        ),
        proptest::collection::vec(ph_edit(), 0..3),
        prop_oneof![3 => Just(None), 1 => interesting_u64().prop_map(Some)],
    )
        .prop_map(|(pie, relocs, edits, entry)| {
            let mut e = if pie {
                Elf::pie(
                    &relocs
                        .iter()
                        .map(|&(o, t, a)| (o & !7, t, a))
                        .collect::<Vec<_>>(),
                )
            } else {
                Elf::exec()
            };
            for ed in edits {
                let n = e.phdrs.len();
                match ed {
                    PhEdit::Field(i, f, v) if n > 0 => {
                        let p = &mut e.phdrs[i % n];
                        match f {
                            0 => p.p_type = v as u32,
                            1 => p.flags = v as u32,
                            2 => p.offset = v,
                            3 => p.vaddr = v,
                            4 => p.filesz = v,
                            5 => p.memsz = v,
                            _ => p.align = v,
                        }
                    }
                    PhEdit::Insert(i, p) => e.phdrs.insert(i % (n + 1), p),
                    PhEdit::Remove(i) if n > 0 => {
                        e.phdrs.remove(i % n);
                    }
                    PhEdit::Swap(i, j) if n > 0 => e.phdrs.swap(i % n, j % n),
                    _ => {}
                }
            }
            if let Some(entry) = entry {
                e.entry = entry;
            }
            e.build()
        })
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn random_bytes(file in proptest::collection::vec(any::<u8>(), 0..600), opts in options()) {
        exercise(&file, &opts);
    }

    #[test]
    fn random_bytes_behind_a_valid_ident(
        tail in proptest::collection::vec(any::<u8>(), 0..800),
        pie in any::<bool>(),
    ) {
        let mut file = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
        file.extend_from_slice(&[if pie { 3 } else { 2 }, 0, 62, 0, 1, 0, 0, 0]);
        file.extend_from_slice(&tail);
        if file.len() >= 64 {
            file[52] = 64;
            file[54] = 56;
        }
        exercise(&file, &LoadOptions::DEFAULT);
    }

    #[test]
    fn mutated_fixtures(
        which in 0usize..FIXTURES.len(),
        edits in proptest::collection::vec(edit(), 1..5),
        opts in prop_oneof![3 => Just(LoadOptions::DEFAULT), 1 => options()],
    ) {
        exercise(&apply(fixture(FIXTURES[which]), &edits), &opts);
    }

    #[test]
    fn random_program_headers(file in random_elf(), opts in prop_oneof![Just(LoadOptions::DEFAULT), options()]) {
        exercise(&file, &opts);
    }
}

/// The random inputs above must not all be rejected, or the invariant checks would check
/// nothing: count the accepted ones.
#[test]
fn enough_random_cases_are_accepted() {
    let mut runner = TestRunner::new(config(1));
    let mut accepted = [0usize; 2];
    for _ in 0..2000 {
        let file = random_elf().new_tree(&mut runner).unwrap().current();
        accepted[0] += usize::from(exercise(&file, &LoadOptions::DEFAULT));
        let which = FIXTURES[..4].len();
        let edits = proptest::collection::vec(edit(), 1..3)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let i = runner.rng().random_range(0..which);
        let file = apply(fixture(FIXTURES[i]), &edits);
        accepted[1] += usize::from(exercise(&file, &LoadOptions::DEFAULT));
    }
    eprintln!(
        "accepted: random tables {}/2000, mutated fixtures {}/2000",
        accepted[0], accepted[1]
    );
    assert!(accepted[0] >= 40, "{accepted:?}");
    assert!(accepted[1] >= 400, "{accepted:?}");
}
