//! Many CPUs (issue 9): QEMU-like and x2APIC-only MADTs with hundreds to thousands of
//! processors, up to the 1 MiB table limit. Nothing is capped.

mod common;

use common::*;
use exo_acpi::*;

/// Like QEMU's q35 MADT for `-smp n`: xAPIC entries for APIC ids below 255, x2APIC entries
/// above; one I/O APIC, the usual ISA overrides and LINT1 NMI entries of both kinds.
fn qemu_like(n: u32) -> MadtBuilder {
    let mut b = MadtBuilder::new();
    for i in 0..n {
        b = match u8::try_from(i) {
            Ok(id) if id < 0xFF => b.lapic(id, id, 1),
            _ => b.x2apic(i, 1, i),
        };
    }
    b.ioapic(0, 0xFEC0_0000, 0)
        .iso(0, 0, 2, 0)
        .iso(0, 5, 5, 0xD)
        .iso(0, 9, 9, 0xD)
        .iso(0, 10, 10, 0xD)
        .iso(0, 11, 11, 0xD)
        .x2apic_nmi(0, u32::MAX, 1)
        .lapic_nmi(0xFF, 0, 1)
}

#[test]
fn qemu_smp_288_and_1024_keep_every_cpu() {
    for n in [255u32, 256, 288, 1024] {
        let mem = machine(&[qemu_like(n).build()], Root::Xsdt);
        let p = discover(&mem, RSDP_ADDR).unwrap();
        let m = p.require_madt().unwrap();
        assert_eq!(m.cpus.len(), n as usize, "-smp {n}");
        assert_eq!(m.enabled_cpus().count(), n as usize);
        let ids: Vec<u32> = m.cpus.iter().map(|c| c.apic_id).collect();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        assert_eq!(
            m.cpus.iter().filter(|c| c.x2apic_entry).count() as u32,
            n.saturating_sub(255)
        );
        assert_eq!(m.io_apics.len(), 1);
        assert_eq!(m.overrides.len(), 5);
        assert_eq!(m.local_nmis.len(), 2);
        assert_eq!(p.all_warnings().count(), 0, "{:?}", m.warnings);
    }
}

/// `n` x2APIC CPUs with sparse ids (two per core id, a hole per package), each with its own
/// LINT1 NMI entry as Intel firmware lists them.
fn x2apic_machine(n: u32) -> Vec<u8> {
    let id = |i: u32| (i / 64) * 256 + (i % 64) * 2;
    let mut b = MadtBuilder::new();
    for i in 0..n {
        b = b.x2apic(id(i), 1, i);
    }
    for i in 0..n {
        b = b.x2apic_nmi(5, i, 1);
    }
    b.ioapic(0, 0xFEC0_0000, 0).build()
}

#[test]
fn x2apic_4096_cpus_with_per_cpu_nmis() {
    for n in [1024u32, 4096] {
        let m = Madt::from_bytes(&x2apic_machine(n)).unwrap();
        assert_eq!(m.cpus.len(), n as usize);
        assert!(m.cpus.iter().all(|c| c.enabled && c.x2apic_entry));
        assert_eq!(
            m.cpus.last().unwrap().apic_id,
            ((n - 1) / 64) * 256 + ((n - 1) % 64) * 2
        );
        assert_eq!(
            m.cpus.iter().map(|c| c.acpi_uid).collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>()
        );
        assert_eq!(m.local_nmis.len(), n as usize);
        assert_eq!(
            m.local_nmis[n as usize - 1].processor,
            NmiProcessor::Uid(n - 1)
        );
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }
}

#[test]
fn largest_possible_tables() {
    // A 1 MiB MADT of x2APIC entries: 65,533 CPUs, all kept.
    let n = ((MAX_TABLE_LEN - 44) / 16) as usize;
    let mut b = MadtBuilder::new();
    for i in 0..n as u32 {
        b = b.x2apic(i, 1, i);
    }
    let table = b.build();
    assert!(table.len() <= MAX_TABLE_LEN as usize && table.len() + 16 > MAX_TABLE_LEN as usize);
    let m = Madt::from_bytes(&table).unwrap();
    assert_eq!(m.cpus.len(), n);
    assert!(m.warnings.is_empty());

    // A 1 MiB MADT of xAPIC entries cycling through the 255 valid ids: 131,066 entries, one
    // kept per id, the repeats reported in one warning.
    let n = (MAX_TABLE_LEN - 44) / 8;
    let mut b = MadtBuilder::new();
    for i in 0..n {
        b = b.lapic(0, (i % 255) as u8, 1);
    }
    let m = Madt::from_bytes(&b.build()).unwrap();
    assert_eq!(m.cpus.len(), 255);
    assert_eq!(
        m.warnings.as_slice(),
        &[Warning::DuplicateApicId {
            apic_id: 0,
            offset: 44 + 255 * 8,
            count: n - 255
        }]
    );
}
