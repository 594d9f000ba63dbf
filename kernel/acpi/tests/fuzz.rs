//! Property tests: corrupted MADTs never panic and never yield duplicate APIC ids, and
//! duplicate APIC ids are resolved as the original entry-by-entry algorithm did.

mod common;

use common::*;
use exo_acpi::*;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::collections::HashSet;

/// Fixed seeds: the same cases on every run (deterministic tests); change the seed to explore.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x00AC_91DE_5EED),
        ..ProptestConfig::default()
    }
}

/// A valid MADT with a bit of everything, including duplicates and x2APIC entries.
fn base_madt() -> Vec<u8> {
    let mut b = MadtBuilder::qemu(8)
        .x2apic(3, 1, 30)
        .x2apic(0x1000, 2, 31)
        .lapic(9, 9, 0)
        .lapic_addr_override(0xFEE0_0000)
        .x2apic_nmi(0xD, u32::MAX, 1)
        .nmi_source(0, 9);
    for i in 0..4 {
        b = b.x2apic(0x2000 + i, 1, 40 + i);
    }
    b.build()
}

fn check(m: &Madt) {
    let mut seen = HashSet::new();
    for c in &m.cpus {
        assert!(seen.insert(c.apic_id), "duplicate APIC id {:#x}", c.apic_id);
    }
    // Nothing is lost: every list fits what the table can hold, warnings are aggregated.
    let entries = m.cpus.len() + m.io_apics.len() + m.overrides.len();
    assert!(entries + m.nmi_sources.len() + m.local_nmis.len() <= (1 << 20) / 2);
    assert!(m.warnings.len() <= 0x80 + 0xB + 8, "{:?}", m.warnings);
    for w in &m.warnings {
        let s = w.to_string();
        assert!(!s.is_empty() && !s.contains('\n'));
    }
}

#[derive(Debug, Clone)]
struct Mutation {
    edits: Vec<(usize, u8)>,
    truncate_to: Option<usize>,
    fix_length: bool,
    fix_checksum: bool,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..12),
        prop::option::of(any::<usize>()),
        any::<bool>(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(edits, truncate_to, fix_length, fix_checksum)| Mutation {
            edits,
            truncate_to,
            fix_length,
            fix_checksum,
        })
}

fn apply(base: &[u8], m: &Mutation) -> Vec<u8> {
    let mut t = base.to_vec();
    for &(i, v) in &m.edits {
        let i = i % t.len();
        t[i] = v;
    }
    if let Some(n) = m.truncate_to {
        t.truncate(n % (t.len() + 1));
    }
    if m.fix_length && t.len() >= 8 {
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
    }
    if m.fix_checksum && t.len() >= 10 {
        let len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
        let end = len.clamp(10, t.len());
        fix_checksum(&mut t[..end], 9);
    }
    t
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn mutated_madt_never_panics(m in mutation()) {
        let bytes = apply(&base_madt(), &m);
        if let Ok(madt) = Madt::from_bytes(&bytes) {
            check(&madt);
        }
    }

    #[test]
    fn random_entry_area_never_panics(
        entries in prop::collection::vec(any::<u8>(), 0..600),
        seeds in prop::collection::vec((0u8..12, any::<u32>()), 0..40),
    ) {
        // Mix structurally plausible entries (right types, random payloads) with raw noise.
        let mut b = MadtBuilder::new();
        for (kind, x) in seeds {
            b = match kind {
                0 => b.lapic(x as u8, (x >> 8) as u8, x >> 16),
                1 => b.x2apic(x % 64, x >> 30, x),
                2 => b.ioapic(x as u8, x, x >> 3),
                3 => b.iso(0, x as u8, x >> 8, (x >> 16) as u16),
                4 => b.lapic_nmi(x as u8, (x >> 8) as u16, (x >> 24) as u8),
                5 => b.lapic_addr_override(u64::from(x)),
                6 => b.x2apic_nmi(x as u16, x, 1),
                7 => b.nmi_source(x as u16, x),
                _ => b.raw(&x.to_le_bytes()[..(x % 4) as usize]),
            };
        }
        let madt = b.raw(&entries).build();
        let parsed = Madt::from_bytes(&madt).expect("header and checksum are valid");
        check(&parsed);
    }

    #[test]
    fn discover_survives_corrupt_madt(m in mutation()) {
        let bytes = apply(&base_madt(), &m);
        let mem = machine(&[bytes, fadt(0x608, 0, None)], Root::Xsdt);
        let p = discover(&mem, RSDP_ADDR).expect("root tables are intact");
        if let Some(madt) = &p.madt {
            check(madt);
        } else {
            prop_assert!(p.warnings.contains(&Warning::NoMadt));
        }
        prop_assert!(p.fadt_pm_timer.is_some());
    }
}

/// The pre-sorting algorithm, entry by entry: a repeat replaces the kept entry only if it
/// ranks higher (enabled, then online-capable, then disabled). Returns (kept CPUs, repeats,
/// first repeat offset+id).
fn reference_dedup(entries: &[(u32, u32, Cpu)]) -> (Vec<Cpu>, u32, Option<(u32, u32)>) {
    let rank = |c: &Cpu| {
        if c.enabled {
            2
        } else {
            u8::from(c.online_capable)
        }
    };
    let mut kept: Vec<Cpu> = Vec::new();
    let (mut repeats, mut first) = (0, None);
    for &(off, _, cpu) in entries {
        if let Some(k) = kept.iter_mut().find(|k| k.apic_id == cpu.apic_id) {
            if rank(&cpu) > rank(k) {
                *k = cpu;
            }
            repeats += 1;
            first.get_or_insert((off, cpu.apic_id));
        } else {
            kept.push(cpu);
        }
    }
    (kept, repeats, first)
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn duplicate_resolution_matches_reference(
        cpus in prop::collection::vec((0u32..24, 0u32..4, any::<bool>()), 0..300),
    ) {
        let mut b = MadtBuilder::new();
        let mut entries = Vec::new();
        let mut off = 44;
        for (i, &(id, flags, x2)) in cpus.iter().enumerate() {
            let cpu = Cpu {
                apic_id: id,
                acpi_uid: i as u32,
                enabled: flags & 1 != 0,
                online_capable: flags & 2 != 0,
                x2apic_entry: x2 || i > 255,
            };
            b = if cpu.x2apic_entry {
                b.x2apic(id, flags, i as u32)
            } else {
                b.lapic(i as u8, id as u8, flags)
            };
            entries.push((off, i, cpu));
            off += if cpu.x2apic_entry { 16 } else { 8 };
        }
        let m = Madt::from_bytes(&b.build()).unwrap();
        let entries: Vec<(u32, u32, Cpu)> =
            entries.into_iter().map(|(o, i, c)| (o, i as u32, c)).collect();
        let (kept, repeats, first) = reference_dedup(&entries);
        prop_assert_eq!(&m.cpus, &kept);
        let dup = m.warnings.iter().find_map(|w| match *w {
            Warning::DuplicateApicId { apic_id, offset, count } => Some((offset, apic_id, count)),
            _ => None,
        });
        prop_assert_eq!(dup, first.map(|(o, id)| (o, id, repeats)));
        check(&m);
    }
}

#[test]
fn unmutated_base_is_valid() {
    let m = Madt::from_bytes(&base_madt()).unwrap();
    check(&m);
    // id 3 from the x2APIC entry duplicates an xAPIC CPU.
    assert_eq!(m.cpus.len(), 8 + 1 + 1 + 4);
    assert!(matches!(
        m.warnings.as_slice(),
        [Warning::DuplicateApicId {
            apic_id: 3,
            count: 1,
            ..
        }]
    ));
}
