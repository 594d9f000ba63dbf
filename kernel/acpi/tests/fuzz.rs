//! Property tests: corrupted MADTs never panic and never yield duplicate APIC ids.

mod common;

use common::*;
use exo_acpi::*;
use proptest::prelude::*;
use std::collections::HashSet;

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
    assert!(m.cpus.len() <= MAX_CPUS);
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
    #![proptest_config(ProptestConfig::with_cases(2000))]

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

#[test]
fn unmutated_base_is_valid() {
    let m = Madt::from_bytes(&base_madt()).unwrap();
    check(&m);
    // id 3 from the x2APIC entry duplicates an xAPIC CPU.
    assert_eq!(m.cpus.len(), 8 + 1 + 1 + 4);
    assert_eq!(m.warnings.len(), 1);
}
