//! Real firmware MADTs (`tests/data/madt-sample/`, see its README) against ACPICA's decoding.
//!
//! Zero lost entries: every processor entry is kept, or accounted for by a warning (invalid
//! APIC id, repeated APIC id), and every I/O APIC, override and local NMI entry is kept.

mod common;

use common::*;
use exo_acpi::*;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/madt-sample")
}

/// The `.madt` files, sorted by name (deterministic order).
fn samples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(sample_dir())
        .expect("sample directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "madt"))
        .collect();
    files.sort();
    files
}

/// One line of a `.expect` file (ACPICA's decoding).
#[derive(Debug, Default)]
struct Expect {
    cpus: Vec<Cpu>,
    io_apics: Vec<IoApic>,
    overrides: Vec<IntOverride>,
    /// `None` when the file has no `lnmi` lines (the 40 shared-sample machines).
    local_nmis: Option<Vec<LocalNmi>>,
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .unwrap_or_else(|e| panic!("bad number {s:?}: {e}"))
}

fn parse_expect(path: &Path) -> Expect {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut x = Expect::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let n = |i: usize| num(f[i]);
        match f[0] {
            "cpu" => x.cpus.push(Cpu {
                apic_id: n(3) as u32,
                acpi_uid: n(2) as u32,
                enabled: n(4) == 1,
                online_capable: n(5) == 1,
                x2apic_entry: n(1) == 9,
            }),
            "ioapic" => x.io_apics.push(IoApic {
                id: n(1) as u8,
                address: n(2),
                gsi_base: n(3) as u32,
            }),
            "override" => x.overrides.push(IntOverride {
                bus: n(1) as u8,
                source_irq: n(2) as u8,
                gsi: n(3) as u32,
                polarity: Polarity::from_flags(n(4) as u16),
                trigger: TriggerMode::from_flags(n(4) as u16),
            }),
            "lnmi" => {
                let x2apic_entry = n(1) == 10;
                let all = if x2apic_entry {
                    u64::from(u32::MAX)
                } else {
                    0xFF
                };
                x.local_nmis.get_or_insert_default().push(LocalNmi {
                    processor: if n(2) == all {
                        NmiProcessor::All
                    } else {
                        NmiProcessor::Uid(n(2) as u32)
                    },
                    lint: n(4) as u8,
                    polarity: Polarity::from_flags(n(3) as u16),
                    trigger: TriggerMode::from_flags(n(3) as u16),
                    x2apic_entry,
                });
            }
            other => panic!("{}: unknown line kind {other:?}", path.display()),
        }
    }
    x
}

/// Local NMI entries (types 4 and 0xA) counted straight from the bytes, independently of the
/// parser, for the machines whose `.expect` has no `lnmi` lines.
fn raw_local_nmi_count(table: &[u8]) -> usize {
    let len = u32::from_le_bytes(table[4..8].try_into().unwrap()) as usize;
    let (mut off, mut n) = (44, 0);
    while off + 2 <= len && table[off + 1] >= 2 {
        n += usize::from(matches!(table[off], 4 | 0xA));
        off += usize::from(table[off + 1]);
    }
    n
}

fn invalid_id(c: &Cpu) -> bool {
    c.apic_id == if c.x2apic_entry { u32::MAX } else { 0xFF }
}

/// Enabled ranks above online-capable, which ranks above disabled.
fn rank(c: &Cpu) -> u8 {
    if c.enabled {
        2
    } else {
        u8::from(c.online_capable)
    }
}

/// What the parser must keep, from ACPICA's list: invalid ids dropped; one entry per APIC id,
/// at the first entry's place: the first of the highest rank (enabled, else online-capable,
/// else disabled). Until 2026-12-06 this oracle kept the first enabled-or-online-capable
/// one, the parser's rule before it ranked enabled first (found by review).
fn expected_cpus(all: &[Cpu]) -> Vec<Cpu> {
    let mut kept: Vec<Cpu> = Vec::new();
    let mut slot: HashMap<u32, usize> = HashMap::new();
    for c in all.iter().filter(|c| !invalid_id(c)) {
        match slot.get(&c.apic_id) {
            Some(&i) if rank(c) > rank(&kept[i]) => kept[i] = *c,
            Some(_) => {}
            None => {
                slot.insert(c.apic_id, kept.len());
                kept.push(*c);
            }
        }
    }
    kept
}

/// The oracle on a synthetic list: an online-capable entry (flags 2), then an enabled one
/// (flags 1) for the same id; the enabled one is kept, at the first one's place, as the
/// parser does.
#[test]
fn oracle_keeps_the_enabled_duplicate_over_an_earlier_online_capable_one() {
    let cpu = |acpi_uid, apic_id, flags: u32| Cpu {
        apic_id,
        acpi_uid,
        enabled: flags & 1 != 0,
        online_capable: flags & 2 != 0,
        x2apic_entry: false,
    };
    let listed = [cpu(0, 0, 1), cpu(1, 5, 2), cpu(2, 5, 1), cpu(3, 6, 1)];
    let m = Madt::from_bytes(
        &MadtBuilder::new()
            .lapic(0, 0, 1)
            .lapic(1, 5, 2)
            .lapic(2, 5, 1)
            .lapic(3, 6, 1)
            .build(),
    )
    .unwrap();
    let expected = expected_cpus(&listed);
    assert_eq!(expected, [cpu(0, 0, 1), cpu(2, 5, 1), cpu(3, 6, 1)]);
    assert_eq!(m.cpus, expected);
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_sample_matches_acpica_with_nothing_lost() {
    let files = samples();
    assert_eq!(files.len(), 42, "42 machines in tests/data/madt-sample");
    let mut with_lnmi_lines = 0;
    for path in &files {
        let name = name(path);
        let bytes = fs::read(path).unwrap();
        let x = parse_expect(&path.with_extension("expect"));
        let m = Madt::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));

        // Processors: exactly what ACPICA lists, minus what the warnings account for.
        assert_eq!(m.cpus, expected_cpus(&x.cpus), "{name}: cpus");
        let invalid = x.cpus.iter().filter(|c| invalid_id(c)).count();
        let repeats = x.cpus.len() - invalid - m.cpus.len();
        let mut accounted = m.cpus.len();
        for w in &m.warnings {
            match *w {
                Warning::InvalidApicIds { count, .. } => {
                    assert_eq!(count as usize, invalid, "{name}: {w}");
                    accounted += count as usize;
                }
                Warning::DuplicateApicId { count, .. } => {
                    assert_eq!(count as usize, repeats, "{name}: {w}");
                    accounted += count as usize;
                }
                // Reserved entry types (the EVGA board) are checked in their own test.
                Warning::UnknownMadtEntry { .. } => {}
                _ => panic!("{name}: unexpected warning: {w}"),
            }
        }
        assert_eq!(
            accounted,
            x.cpus.len(),
            "{name}: every processor entry accounted for"
        );
        assert!(m.enabled_cpus().count() > 0, "{name}");
        assert_ne!(m.local_apic_addr, 0, "{name}");

        assert_eq!(m.io_apics, x.io_apics, "{name}: I/O APICs");
        assert_eq!(m.overrides, x.overrides, "{name}: overrides");
        match &x.local_nmis {
            Some(nmis) => {
                with_lnmi_lines += 1;
                assert_eq!(&m.local_nmis, nmis, "{name}: local NMIs");
            }
            None => assert_eq!(
                m.local_nmis.len(),
                raw_local_nmi_count(&bytes),
                "{name}: local NMIs"
            ),
        }
    }
    assert_eq!(with_lnmi_lines, 2);
}

fn sample(name: &str) -> (Vec<u8>, Madt) {
    let bytes = fs::read(sample_dir().join(format!("{name}.madt"))).unwrap();
    let madt = Madt::from_bytes(&bytes).unwrap();
    (bytes, madt)
}

#[test]
fn supermicro_x10dai_keeps_all_40_local_nmis() {
    // 40 CPUs, one LINT1 NMI entry per CPU: 24 of them used to be dropped (16-entry list).
    let (_, m) = sample("Desktop_Supermicro_X10DAi_4A64A6094FE3");
    assert_eq!(m.cpus.len(), 40);
    assert_eq!(m.enabled_cpus().count(), 40);
    assert_eq!(m.local_nmis.len(), 40);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    // Every CPU gets its own LINT1 NMI, edge-triggered, active high.
    let mut nmi_uids: Vec<u32> = m
        .local_nmis
        .iter()
        .map(|n| {
            assert_eq!(
                (n.lint, n.polarity, n.trigger),
                (1, Polarity::ActiveHigh, TriggerMode::Edge)
            );
            match n.processor {
                NmiProcessor::Uid(uid) => uid,
                NmiProcessor::All => panic!("per-CPU entries expected"),
            }
        })
        .collect();
    let mut cpu_uids: Vec<u32> = m.cpus.iter().map(|c| c.acpi_uid).collect();
    nmi_uids.sort_unstable();
    cpu_uids.sort_unstable();
    assert_eq!(nmi_uids, cpu_uids);
    assert_eq!(m.io_apics.len(), 3);
}

#[test]
fn evga_x299_reserved_entries_are_aggregated_and_summaries_remain() {
    // 28 entries of reserved type 0x7F used to give 28 warnings, filling the list.
    let (bytes, m) = sample("Desktop_EVGA_X299_MICRO_4B645993A72D");
    assert_eq!(m.cpus.len(), 20);
    assert_eq!(m.enabled_cpus().count(), 20);
    assert_eq!(m.io_apics.len(), 5);
    assert_eq!(m.local_nmis.len(), 2);
    assert_eq!(
        m.warnings.as_slice(),
        &[
            Warning::UnknownMadtEntry {
                offset: 0x228,
                entry_type: 0x7F,
                count: 28
            },
            Warning::InvalidApicIds {
                count: 36 + 56,
                first_offset: 0xCC
            },
        ]
    );
    let msgs: Vec<String> = m.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        [
            "28 MADT entries of reserved type 0x7f skipped, first at offset 0x228",
            "skipped 92 MADT processor entries with invalid APIC id (first at offset 0xcc)",
        ]
    );

    // The same table with its last CPU entries turned into placeholders too: the summary
    // warnings (no enabled CPU) still show next to the aggregated ones.
    let mut broken = bytes.clone();
    let mut off = 44;
    while off < broken.len() {
        if broken[off] == 0 {
            broken[off + 4] = 0; // flags: neither enabled nor online-capable
        }
        off += usize::from(broken[off + 1]);
    }
    fix_checksum(&mut broken, 9);
    let m = Madt::from_bytes(&broken).unwrap();
    assert_eq!(m.enabled_cpus().count(), 0);
    assert_eq!(m.warnings.len(), 3);
    assert_eq!(m.warnings.last(), Some(&Warning::NoEnabledCpus));

    // Through discovery, the platform's and the MADT's warnings all come out.
    let mem = machine(&[bytes, hpet(1, 0x1000)], Root::Xsdt);
    let p = discover(&mem, RSDP_ADDR).unwrap();
    assert_eq!(p.all_warnings().count(), 3);
    assert_eq!(p.require_madt().unwrap().enabled_cpus().count(), 20);
}
