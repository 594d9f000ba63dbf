//! MADT content: processors, I/O APICs, overrides, NMIs, and malformed entries.

mod common;

use common::*;
use exo_acpi::*;

fn parse(b: MadtBuilder) -> Madt {
    Madt::from_bytes(&b.build()).unwrap()
}

fn ids(m: &Madt) -> Vec<u32> {
    m.cpus.iter().map(|c| c.apic_id).collect()
}

#[test]
fn qemu_like_1_4_64_cpus() {
    for n in [1u8, 4, 64] {
        let mem = machine(&[MadtBuilder::qemu(n).build()], Root::Xsdt);
        let p = discover(&mem, RSDP_ADDR).unwrap();
        let m = p.madt.as_ref().unwrap();
        assert_eq!(m.cpus.len(), usize::from(n));
        assert_eq!(ids(m), (0..u32::from(n)).collect::<Vec<_>>());
        assert!(
            m.cpus
                .iter()
                .all(|c| c.enabled && c.usable() && !c.x2apic_entry)
        );
        assert_eq!(m.usable_cpus().count(), usize::from(n));
        assert_eq!(m.io_apics.len(), 1);
        assert_eq!(m.overrides.len(), 5);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        assert_eq!(p.all_warnings().count(), 0);
    }
}

#[test]
fn three_hundred_cpus_are_capped_with_warning() {
    let mut b = MadtBuilder::new();
    for i in 0..255u8 {
        b = b.lapic(i, i, 1);
    }
    for i in 255..300u32 {
        b = b.x2apic(i, 1, i);
    }
    let m = parse(b);
    assert_eq!(m.cpus.len(), MAX_CPUS);
    assert_eq!(ids(&m), (0..256).collect::<Vec<_>>());
    assert_eq!(
        m.warnings.as_slice(),
        &[Warning::TooManyCpus {
            kept: 256,
            ignored: 44
        }]
    );
    assert_eq!(
        m.warnings[0].to_string(),
        "MADT lists 300 CPUs; kept the first 256, ignored 44"
    );
}

#[test]
fn xapic_and_x2apic_mixed() {
    let b = MadtBuilder::new()
        .lapic(0, 0, 1)
        .x2apic(0x100, 1, 7)
        .lapic(1, 1, 1)
        .x2apic(0xFFFF_0001, 1, 0xABCD_0000);
    let m = parse(b);
    assert_eq!(
        m.cpus.as_slice(),
        &[
            Cpu {
                apic_id: 0,
                acpi_uid: 0,
                enabled: true,
                online_capable: false,
                x2apic_entry: false
            },
            Cpu {
                apic_id: 0x100,
                acpi_uid: 7,
                enabled: true,
                online_capable: false,
                x2apic_entry: true
            },
            Cpu {
                apic_id: 1,
                acpi_uid: 1,
                enabled: true,
                online_capable: false,
                x2apic_entry: false
            },
            Cpu {
                apic_id: 0xFFFF_0001,
                acpi_uid: 0xABCD_0000,
                enabled: true,
                online_capable: false,
                x2apic_entry: true
            },
        ]
    );
    assert!(m.warnings.is_empty());
}

#[test]
fn disabled_and_online_capable_cpus() {
    let b = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 1, 0)
        .lapic(2, 2, 2)
        .x2apic(3, 0, 3)
        .x2apic(4, 2, 4);
    let m = parse(b);
    assert_eq!(m.cpus.len(), 5);
    let usable: Vec<bool> = m.cpus.iter().map(Cpu::usable).collect();
    assert_eq!(usable, [true, false, true, false, true]);
    assert!(m.cpus[2].online_capable && !m.cpus[2].enabled);
    assert_eq!(
        m.usable_cpus().map(|c| c.apic_id).collect::<Vec<_>>(),
        [0, 2, 4]
    );
    assert!(m.warnings.is_empty());
}

#[test]
fn no_usable_cpu_is_warned() {
    let m = parse(MadtBuilder::new().lapic(0, 0, 0));
    assert_eq!(m.cpus.len(), 1);
    assert_eq!(m.warnings.as_slice(), &[Warning::NoUsableCpus]);
}

#[test]
fn ioapics_overrides_and_nmis() {
    let b = MadtBuilder::new()
        .lapic(0, 0, 1)
        .ioapic(1, 0xFEC0_0000, 0)
        .ioapic(2, 0xFEC0_1000, 24)
        .iso(0, 0, 2, 0)
        .iso(0, 9, 9, 0xF) // active low, level
        .iso(0, 8, 8, 0x5) // active high, edge
        .iso(0, 3, 3, 0xA) // reserved encodings
        .nmi_source(0xD, 30)
        .lapic_nmi(0xFF, 0x5, 1)
        .x2apic_nmi(0, 5, 0)
        .x2apic_nmi(0, u32::MAX, 1);
    let m = parse(b);
    assert_eq!(
        m.io_apics.as_slice(),
        &[
            IoApic {
                id: 1,
                address: 0xFEC0_0000,
                gsi_base: 0
            },
            IoApic {
                id: 2,
                address: 0xFEC0_1000,
                gsi_base: 24
            },
        ]
    );
    assert_eq!(
        m.overrides[0],
        IntOverride {
            bus: 0,
            source_irq: 0,
            gsi: 2,
            polarity: Polarity::Conforming,
            trigger: TriggerMode::Conforming
        }
    );
    assert_eq!(m.overrides[1].polarity, Polarity::ActiveLow);
    assert_eq!(m.overrides[1].trigger, TriggerMode::Level);
    assert_eq!(m.overrides[2].polarity, Polarity::ActiveHigh);
    assert_eq!(m.overrides[2].trigger, TriggerMode::Edge);
    assert_eq!(m.overrides[3].polarity, Polarity::Reserved);
    assert_eq!(m.overrides[3].trigger, TriggerMode::Reserved);
    assert_eq!(
        m.isa_irq(0),
        IsaIrq {
            gsi: 2,
            active_low: false,
            level_triggered: false
        }
    );
    assert_eq!(
        m.isa_irq(9),
        IsaIrq {
            gsi: 9,
            active_low: true,
            level_triggered: true
        }
    );
    assert_eq!(
        m.isa_irq(4),
        IsaIrq {
            gsi: 4,
            active_low: false,
            level_triggered: false
        }
    );
    assert_eq!(
        m.nmi_sources.as_slice(),
        &[NmiSource {
            gsi: 30,
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Level
        }]
    );
    assert_eq!(
        m.local_nmis.as_slice(),
        &[
            LocalNmi {
                processor: NmiProcessor::All,
                lint: 1,
                polarity: Polarity::ActiveHigh,
                trigger: TriggerMode::Edge,
                x2apic_entry: false
            },
            LocalNmi {
                processor: NmiProcessor::Uid(5),
                lint: 0,
                polarity: Polarity::Conforming,
                trigger: TriggerMode::Conforming,
                x2apic_entry: true
            },
            LocalNmi {
                processor: NmiProcessor::All,
                lint: 1,
                polarity: Polarity::Conforming,
                trigger: TriggerMode::Conforming,
                x2apic_entry: true
            },
        ]
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn too_many_overrides_are_counted() {
    let mut b = MadtBuilder::new().lapic(0, 0, 1);
    for i in 0..40u8 {
        b = b.iso(0, i, u32::from(i), 0);
    }
    let m = parse(b);
    assert_eq!(m.overrides.len(), 32);
    assert!(matches!(
        m.warnings[0],
        Warning::TooManyEntries {
            kept: 32,
            ignored: 8,
            ..
        }
    ));
}

#[test]
fn apic_address_override() {
    let m = parse(MadtBuilder::qemu(2).lapic_addr_override(0x1_FEE0_0000));
    assert_eq!(m.local_apic_addr, 0x1_FEE0_0000);
    assert!(m.warnings.is_empty());

    let m = parse(
        MadtBuilder::qemu(2)
            .lapic_addr_override(0xFEE0_0000)
            .lapic_addr_override(0xFEE0_0000)
            .lapic_addr_override(0xDEAD_0000),
    );
    assert_eq!(m.local_apic_addr, 0xFEE0_0000);
    assert_eq!(
        m.warnings.as_slice(),
        &[Warning::ConflictingApicAddress {
            kept: 0xFEE0_0000,
            ignored: 0xDEAD_0000
        }]
    );

    let mut b = MadtBuilder::qemu(1).lapic_addr_override(0);
    b.lapic_addr = 0xFEE0_0000;
    let m = parse(b);
    assert_eq!(m.local_apic_addr, 0xFEE0_0000);
    assert!(matches!(
        m.warnings[0],
        Warning::UnusableAddress { address: 0, .. }
    ));
}

#[test]
fn pcat_compat_flag() {
    let mut b = MadtBuilder::qemu(1);
    b.flags = 0;
    assert!(!parse(b).pcat_compat);
    assert!(parse(MadtBuilder::qemu(1)).pcat_compat);
}

#[test]
fn truncated_entry_stops_walk_and_keeps_earlier_cpus() {
    // A local APIC entry claiming 8 bytes with only 4 left in the table.
    let m = parse(MadtBuilder::qemu(3).raw(&[0, 8, 3, 3]));
    assert_eq!(ids(&m), [0, 1, 2]);
    assert_eq!(m.io_apics.len(), 1);
    let table_len = MadtBuilder::qemu(3).build().len() as u32 + 4;
    assert_eq!(
        m.warnings.as_slice(),
        &[Warning::MadtEntryTruncated {
            offset: table_len - 4,
            entry_type: 0,
            length: 8,
            table_len,
            cpus: 3
        }]
    );
}

#[test]
fn zero_length_entry_stops_walk() {
    // 3 CPUs (24 bytes) + override (10) + local NMI (6) = 40 bytes: the bad entry is at 0x54.
    let b = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 1, 1)
        .lapic(2, 2, 1)
        .iso(0, 0, 2, 0)
        .lapic_nmi(0xFF, 0, 1)
        .raw(&[0, 0])
        .lapic(3, 3, 1);
    let m = parse(b);
    assert_eq!(ids(&m), [0, 1, 2]);
    assert_eq!(m.overrides.len(), 1);
    assert_eq!(
        m.warnings.as_slice(),
        &[Warning::MadtEntryBadLength {
            offset: 0x54,
            length: 0,
            cpus: 3
        }]
    );
    assert_eq!(
        m.warnings[0].to_string(),
        "MADT entry at offset 0x54 has length 0; stopped walking MADT after 3 CPUs"
    );
    // Length 1 is just as fatal for the walk.
    let m = parse(
        MadtBuilder::new()
            .lapic(0, 0, 1)
            .raw(&[9, 1])
            .lapic(1, 1, 1),
    );
    assert_eq!(ids(&m), [0]);
    assert!(matches!(
        m.warnings[0],
        Warning::MadtEntryBadLength { length: 1, .. }
    ));
}

#[test]
fn short_known_entry_is_skipped_and_walk_continues() {
    let m = parse(
        MadtBuilder::new()
            .raw(&[0, 4, 9, 9])
            .lapic(1, 1, 1)
            .raw(&[9, 10, 0, 0, 5, 0, 0, 0, 1, 0]),
    );
    assert_eq!(ids(&m), [1]);
    assert_eq!(
        m.warnings.as_slice(),
        &[
            Warning::MadtEntryTooShort {
                offset: 44,
                entry_type: 0,
                length: 4,
                needed: 8
            },
            Warning::MadtEntryTooShort {
                offset: 56,
                entry_type: 9,
                length: 10,
                needed: 16
            },
        ]
    );
}

#[test]
fn longer_entries_are_accepted() {
    // Future revisions may extend entries; extra bytes are ignored.
    let m = parse(
        MadtBuilder::new()
            .raw(&[0, 10, 4, 6, 1, 0, 0, 0, 0xEE, 0xEE])
            .lapic(1, 1, 1),
    );
    assert_eq!(ids(&m), [6, 1]);
    assert_eq!(m.cpus[0].acpi_uid, 4);
    assert!(m.warnings.is_empty());
}

#[test]
fn unknown_and_oem_entries() {
    let m = parse(
        MadtBuilder::new()
            .raw(&[0x30, 4, 0, 0]) // reserved type: warned
            .raw(&[0x80, 3, 0]) // OEM type: silent
            .raw(&[0x10, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) // MP wakeup: silent
            .raw(&[6, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) // I/O SAPIC: silent
            .lapic(0, 0, 1),
    );
    assert_eq!(ids(&m), [0]);
    assert_eq!(
        m.warnings.as_slice(),
        &[Warning::UnknownMadtEntry {
            offset: 44,
            entry_type: 0x30
        }]
    );
}

#[test]
fn invalid_apic_ids_are_skipped() {
    let m = parse(
        MadtBuilder::new()
            .lapic(0, 0, 1)
            .lapic(1, 0xFF, 0)
            .lapic(2, 0xFF, 1)
            .x2apic(u32::MAX, 1, 3),
    );
    assert_eq!(ids(&m), [0]);
    assert_eq!(
        m.warnings.as_slice(),
        &[Warning::InvalidApicIds {
            count: 3,
            first_offset: 52
        }]
    );
}

#[test]
fn duplicate_apic_ids() {
    let m = parse(
        MadtBuilder::new()
            .lapic(0, 0, 1)
            .lapic(1, 1, 1)
            .lapic(2, 1, 1)
            .x2apic(0, 1, 9),
    );
    assert_eq!(ids(&m), [0, 1]);
    assert_eq!(m.cpus[1].acpi_uid, 1, "first entry kept");
    assert_eq!(m.cpus[0].acpi_uid, 0);
    assert_eq!(
        m.warnings.as_slice(),
        &[
            Warning::DuplicateApicId {
                apic_id: 1,
                offset: 60
            },
            Warning::DuplicateApicId {
                apic_id: 0,
                offset: 68
            },
        ]
    );
    // A disabled first entry gives way to a usable duplicate.
    let m = parse(
        MadtBuilder::new()
            .lapic(0, 0, 1)
            .lapic(1, 1, 0)
            .lapic(2, 1, 1),
    );
    assert_eq!(ids(&m), [0, 1]);
    assert!(m.cpus[1].enabled);
    assert_eq!(m.cpus[1].acpi_uid, 2);
    assert_eq!(m.warnings.len(), 1);
}

#[test]
fn trailing_byte_is_warned() {
    let m = parse(MadtBuilder::qemu(1).raw(&[0]));
    assert_eq!(m.cpus.len(), 1);
    assert!(matches!(
        m.warnings.as_slice(),
        [Warning::MadtTrailingByte { .. }]
    ));
}

#[test]
fn warnings_overflow_is_summarised() {
    let mut b = MadtBuilder::new().lapic(0, 0, 1);
    for _ in 0..40 {
        b = b.raw(&[0x40, 2]);
    }
    let m = parse(b);
    assert_eq!(m.warnings.len(), 16);
    assert!(
        m.warnings[..15]
            .iter()
            .all(|w| matches!(w, Warning::UnknownMadtEntry { .. }))
    );
    assert_eq!(m.warnings[15], Warning::Suppressed { count: 25 });
    assert_eq!(m.warnings[15].to_string(), "25 further warnings suppressed");
}

#[test]
fn from_bytes_rejects_bad_tables() {
    let good = MadtBuilder::qemu(2).build();
    let mut bad_sig = good.clone();
    bad_sig[0] = b'X';
    fix_checksum(&mut bad_sig, 9);
    assert!(matches!(
        Madt::from_bytes(&bad_sig),
        Err(AcpiError::BadSignature {
            expected: Signature::MADT,
            ..
        })
    ));
    let mut bad_sum = good.clone();
    bad_sum[9] ^= 1;
    assert!(matches!(
        Madt::from_bytes(&bad_sum),
        Err(AcpiError::BadChecksum { .. })
    ));
    assert!(matches!(
        Madt::from_bytes(&good[..30]),
        Err(AcpiError::Read { .. })
    ));
    assert!(matches!(
        Madt::from_bytes(&good[..good.len() - 1]),
        Err(AcpiError::Read { .. })
    ));
    let mut tiny = good[..40].to_vec();
    tiny[4..8].copy_from_slice(&40u32.to_le_bytes());
    fix_checksum(&mut tiny, 9);
    assert!(matches!(
        Madt::from_bytes(&tiny),
        Err(AcpiError::Truncated {
            length: 40,
            needed: 44,
            ..
        })
    ));
    let mut short = good[..20].to_vec();
    short.resize(36, 0);
    short[4..8].copy_from_slice(&20u32.to_le_bytes());
    fix_checksum(&mut short, 9);
    assert!(matches!(
        Madt::from_bytes(&short),
        Err(AcpiError::BadLength { length: 20, .. })
    ));
}

#[test]
fn warning_messages_are_one_line() {
    let madt = MadtBuilder::new()
        .lapic(0, 0xFF, 1)
        .lapic(0, 0, 0)
        .lapic(0, 0, 0)
        .raw(&[0x55, 2])
        .raw(&[1, 4, 0, 0])
        .lapic_addr_override(1)
        .lapic_addr_override(2)
        .raw(&[0, 9]);
    let mut bad = MadtBuilder::qemu(1).build();
    bad[9] ^= 1;
    let mem = machine(&[madt.build(), bad, hpet(3, 0)], Root::Xsdt);
    let p = discover(&mem, RSDP_ADDR).unwrap();
    let msgs: Vec<String> = p.all_warnings().map(ToString::to_string).collect();
    assert!(msgs.len() >= 8, "{msgs:#?}");
    for m in &msgs {
        assert!(!m.is_empty() && !m.contains('\n'), "{m:?}");
    }
}
