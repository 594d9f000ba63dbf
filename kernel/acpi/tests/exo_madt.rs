//! The `exo-madt` tool, run as a program: real machines' MADTs against ACPICA's decoding,
//! malformed and missing files, arguments; and property tests that no table panics the plan
//! or its rendering.

mod common;

use common::*;
use exo_acpi::plan::{Decision, KERNEL_CPU_LIMIT, SkipReason, plan_table};
use exo_acpi::{MAX_TABLE_LEN, Madt};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const EXE: &str = env!("CARGO_BIN_EXE_exo-madt");

fn exo_madt(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().expect("run exo-madt")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("UTF-8 error output")
}

/// A fresh file holding `bytes`, in the integration tests' scratch directory.
fn temp_table(bytes: &[u8]) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("exo-madt-{}-{n}.madt", std::process::id()));
    fs::write(&path, bytes).expect("write a scratch table");
    path
}

/// Run the tool on `bytes`; the scratch file is removed afterwards.
fn run_on(bytes: &[u8], extra: &[&str]) -> Output {
    let path = temp_table(bytes);
    let mut args = vec![path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = exo_madt(&args);
    let _ = fs::remove_file(&path);
    out
}

/// Exit 1, nothing on stdout, one `exo-madt: ...` line on stderr containing `needle`.
fn assert_fails(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("exo-madt: "), "{err}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/madt-sample")
}

fn samples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(sample_dir())
        .expect("sample directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "madt"))
        .collect();
    files.sort();
    files
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .unwrap_or_else(|e| panic!("bad number {s:?}: {e}"))
}

/// A processor line of a `.expect` file.
#[derive(Clone, Copy, Debug)]
struct ExpectCpu {
    x2apic_entry: bool,
    uid: u64,
    apic_id: u64,
    enabled: bool,
    online_capable: bool,
}

/// What a `.expect` file (ACPICA's decoding) lists.
#[derive(Debug, Default)]
struct Expected {
    cpus: Vec<ExpectCpu>,
    io_apics: Vec<[u64; 3]>,
    overrides: Vec<[u64; 4]>,
    /// (uid or "all", lint, flags, entry kind); `None` when the file has no `lnmi` lines.
    local_nmis: Option<Vec<String>>,
}

fn expected(path: &Path) -> Expected {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut x = Expected::default();
    let mut cpus = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let n = |i: usize| num(f[i]);
        match f[0] {
            "cpu" => cpus.push(ExpectCpu {
                x2apic_entry: n(1) == 9,
                uid: n(2),
                apic_id: n(3),
                enabled: n(4) == 1,
                online_capable: n(5) == 1,
            }),
            "ioapic" => x.io_apics.push([n(1), n(2), n(3)]),
            "override" => x.overrides.push([n(1), n(2), n(3), n(4)]),
            "lnmi" => {
                let x2 = n(1) == 10;
                let all = if x2 { u64::from(u32::MAX) } else { 0xFF };
                let uid = if n(2) == all {
                    "all".to_string()
                } else {
                    n(2).to_string()
                };
                let kind = if x2 { "x2apic" } else { "xapic" };
                let line = format!("NMI,local,{uid},{},{},{kind}", n(4), n(3));
                x.local_nmis.get_or_insert_default().push(line);
            }
            other => panic!("{}: unknown line kind {other:?}", path.display()),
        }
    }
    x.cpus = cpus;
    x
}

/// The tool's CPU lines and summary by the rules, stated independently of the code.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    cpu_lines: Vec<String>,
    started: usize,
    x2apic_needed: bool,
}

impl Reference {
    fn summary(&self) -> String {
        let mode = if self.x2apic_needed {
            "x2apic"
        } else {
            "xapic"
        };
        format!("MADT,{},{mode}", self.started)
    }
}

/// Placeholders (id 0xFF / 0xFFFFFFFF) are skipped; one entry is kept per APIC id, the first
/// of the highest rank (enabled, else online-capable, else disabled), and takes the place of
/// the id's first entry; among the kept entries, only enabled ones start: the first (the BSP)
/// always, the others in order unless xAPIC mode cannot address them (id 0xFF or above) or
/// `limit` CPUs run already. x2APIC is needed if, with it, a CPU with id 0xFF or above starts.
fn reference(cpus: &[ExpectCpu], x2apic: bool, limit: usize) -> Reference {
    let invalid = |c: &ExpectCpu| c.apic_id == if c.x2apic_entry { 0xFFFF_FFFF } else { 0xFF };
    // Enabled beats online-capable beats disabled; the first of the best is kept.
    let rank = |c: &ExpectCpu| {
        if c.enabled {
            2
        } else {
            u8::from(c.online_capable)
        }
    };
    // Kept entry per id, and the ids in the order of their first entry.
    let mut kept: HashMap<u64, usize> = HashMap::new();
    let mut order = Vec::new();
    for (i, c) in cpus.iter().enumerate().filter(|(_, c)| !invalid(c)) {
        match kept.get(&c.apic_id) {
            Some(&k) if rank(c) > rank(&cpus[k]) => {
                kept.insert(c.apic_id, i);
            }
            Some(_) => {}
            None => {
                kept.insert(c.apic_id, i);
                order.push(c.apic_id);
            }
        }
    }
    let mut decision: HashMap<usize, &str> = HashMap::new();
    let (mut started, mut bsp_seen) = (0, false);
    for id in &order {
        let k = kept[id];
        let c = &cpus[k];
        let d = if !c.enabled && c.online_capable {
            "online-capable"
        } else if !c.enabled {
            "disabled"
        } else if !bsp_seen {
            bsp_seen = true;
            started += 1;
            "usable"
        } else if !x2apic && c.apic_id >= 0xFF {
            "skipped:xapic-unaddressable"
        } else if started >= limit.max(1) {
            "skipped:beyond-cpu-limit"
        } else {
            started += 1;
            "usable"
        };
        decision.insert(k, d);
    }
    let cpu_lines = cpus
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let d = if invalid(c) {
                "skipped:invalid-apic-id"
            } else {
                decision
                    .get(&i)
                    .copied()
                    .unwrap_or("skipped:duplicate-apic-id")
            };
            let kind = if c.x2apic_entry { "x2apic" } else { "xapic" };
            format!("CPU,{},{},{kind},{d}", c.uid, c.apic_id)
        })
        .collect();
    let x2apic_needed = if x2apic {
        cpus.iter()
            .enumerate()
            .any(|(i, c)| c.apic_id >= 0xFF && !invalid(c) && decision.get(&i) == Some(&"usable"))
    } else {
        reference(cpus, true, limit).x2apic_needed
    };
    Reference {
        cpu_lines,
        started: started.max(1),
        x2apic_needed,
    }
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The tool's lines starting with `prefix`, split on commas after it.
fn fields<'a>(lines: &[&'a str], prefix: &str) -> Vec<Vec<&'a str>> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| l.split(',').collect())
        .collect()
}

#[test]
fn every_sample_agrees_with_acpica() {
    let files = samples();
    assert_eq!(files.len(), 42, "42 machines in tests/data/madt-sample");
    let (mut cpus_checked, mut usable_checked, mut with_lnmi) = (0, 0, 0);
    for path in &files {
        let name = name(path);
        let x = expected(&path.with_extension("expect"));
        let out = exo_madt(&[path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert!(out.stderr.is_empty(), "{name}");
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();

        // Every processor entry, in table order, with the decision ACPICA's flags imply.
        let r = reference(&x.cpus, true, KERNEL_CPU_LIMIT);
        let cpu_lines: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("CPU,"))
            .collect();
        assert_eq!(cpu_lines, r.cpu_lines, "{name}: CPU lines");
        cpus_checked += cpu_lines.len();
        // Every enabled CPU comes up (none of these machines repeats an enabled id).
        let usable = cpu_lines.iter().filter(|l| l.ends_with(",usable")).count();
        let enabled = x.cpus.iter().filter(|c| c.enabled).count();
        assert_eq!(
            (usable, r.started),
            (enabled, enabled),
            "{name}: usable CPUs"
        );
        assert!(usable > 0, "{name}");
        usable_checked += usable;

        let io: Vec<[u64; 3]> = fields(&lines, "IOAPIC,")
            .iter()
            .map(|f| [num(f[0]), num(f[1]), num(f[2])])
            .collect();
        assert_eq!(io, x.io_apics, "{name}: I/O APICs");
        assert!(
            fields(&lines, "IOAPIC,")
                .iter()
                .all(|f| f[1].starts_with("0x")),
            "{name}: addresses in hex"
        );
        let ov: Vec<[u64; 4]> = fields(&lines, "OVERRIDE,")
            .iter()
            .map(|f| [num(f[0]), num(f[1]), num(f[2]), num(f[3])])
            .collect();
        assert_eq!(ov, x.overrides, "{name}: overrides");
        if let Some(nmis) = &x.local_nmis {
            with_lnmi += 1;
            let got: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with("NMI,local,"))
                .collect();
            assert_eq!(got, *nmis, "{name}: local NMIs");
        }

        // The warnings are the parser's, one line each.
        let madt = Madt::from_bytes(&fs::read(path).unwrap()).unwrap();
        let warns: Vec<String> = madt.warnings.iter().map(|w| format!("WARN,{w}")).collect();
        let got: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("WARN,"))
            .collect();
        assert_eq!(got, warns, "{name}: warnings");

        assert_eq!(lines.last().copied(), Some(r.summary().as_str()), "{name}");
        for l in &lines {
            let kind = l.split(',').next().unwrap();
            assert!(
                ["CPU", "IOAPIC", "OVERRIDE", "NMI", "WARN", "MADT"].contains(&kind),
                "{name}: {l}"
            );
        }

        // xAPIC mode (no real machine here has an enabled CPU with an id of 0xFF or above).
        let xapic = exo_madt(&[path.to_str().unwrap(), "--no-x2apic"]);
        assert_eq!(xapic.status.code(), Some(0), "{name}");
        let r = reference(&x.cpus, false, KERNEL_CPU_LIMIT);
        let text = stdout(&xapic);
        let cpu_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("CPU,")).collect();
        assert_eq!(cpu_lines, r.cpu_lines, "{name}: --no-x2apic");
        assert_eq!(text.lines().last(), Some(r.summary().as_str()), "{name}");
    }
    assert_eq!(
        cpus_checked, 602,
        "every processor line of the 42 .expect files"
    );
    assert_eq!(usable_checked, 404, "every enabled processor");
    assert_eq!(with_lnmi, 2);
}

#[test]
fn x2apic_ids_need_x2apic_mode() {
    // The BSP and one xAPIC AP, two enabled x2APIC CPUs with big ids, a placeholder.
    let t = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 1, 1)
        .x2apic(0x100, 1, 2)
        .x2apic(0x1_0000, 1, 3)
        .x2apic(u32::MAX, 0, 4)
        .build();
    let out = run_on(&t, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "CPU,0,0,xapic,usable\n\
         CPU,1,1,xapic,usable\n\
         CPU,2,256,x2apic,usable\n\
         CPU,3,65536,x2apic,usable\n\
         CPU,4,4294967295,x2apic,skipped:invalid-apic-id\n\
         WARN,skipped the MADT processor entry at offset 0x5c: invalid APIC id\n\
         MADT,4,x2apic\n"
    );
    let out = run_on(&t, &["--no-x2apic"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "CPU,0,0,xapic,usable\n\
         CPU,1,1,xapic,usable\n\
         CPU,2,256,x2apic,skipped:xapic-unaddressable\n\
         CPU,3,65536,x2apic,skipped:xapic-unaddressable\n\
         CPU,4,4294967295,x2apic,skipped:invalid-apic-id\n\
         WARN,skipped the MADT processor entry at offset 0x5c: invalid APIC id\n\
         MADT,2,x2apic\n"
    );
}

#[test]
fn duplicates_disabled_online_capable_and_everything_else() {
    let t = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 1, 0) // placeholder for id 1 ...
        .lapic(2, 1, 1) // ... which this entry replaces
        .lapic(3, 2, 2) // online-capable
        .lapic(4, 3, 0) // disabled
        .lapic(5, 0, 1) // repeats the BSP
        .ioapic(2, 0xFEC0_0000, 0)
        .iso(0, 0, 2, 0)
        .iso(0, 9, 9, 0xD)
        .nmi_source(0xF, 23)
        .lapic_nmi(0xFF, 5, 1)
        .x2apic_nmi(0xD, 7, 0)
        .build();
    let out = run_on(&t, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "CPU,0,0,xapic,usable\n\
         CPU,1,1,xapic,skipped:duplicate-apic-id\n\
         CPU,2,1,xapic,usable\n\
         CPU,3,2,xapic,online-capable\n\
         CPU,4,3,xapic,disabled\n\
         CPU,5,0,xapic,skipped:duplicate-apic-id\n\
         IOAPIC,2,0xfec00000,0\n\
         OVERRIDE,0,0,2,0\n\
         OVERRIDE,0,9,9,13\n\
         NMI,source,23,15\n\
         NMI,local,all,1,5,xapic\n\
         NMI,local,7,0,13,x2apic\n\
         WARN,2 MADT processor entries repeat an APIC id listed earlier (the first repeats \
         id 0x1 at offset 0x3c); keeping one entry per id\n\
         MADT,2,xapic\n"
    );
}

/// An online-capable entry (flags 2), then an enabled one (flags 1) for the same id: the
/// enabled one starts, the other is the duplicate, as the reference says.
#[test]
fn enabled_duplicate_after_an_online_capable_entry_starts() {
    let t = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 5, 2)
        .lapic(2, 5, 1)
        .build();
    let out = run_on(&t, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let cpu_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("CPU,")).collect();
    assert_eq!(
        cpu_lines,
        [
            "CPU,0,0,xapic,usable",
            "CPU,1,5,xapic,skipped:duplicate-apic-id",
            "CPU,2,5,xapic,usable"
        ]
    );
    let cpu = |uid, apic_id, flags: u32| ExpectCpu {
        x2apic_entry: false,
        uid,
        apic_id,
        enabled: flags & 1 != 0,
        online_capable: flags & 2 != 0,
    };
    let r = reference(
        &[cpu(0, 0, 1), cpu(1, 5, 2), cpu(2, 5, 1)],
        true,
        KERNEL_CPU_LIMIT,
    );
    assert_eq!(r.cpu_lines, cpu_lines);
    assert_eq!(text.lines().last(), Some("MADT,2,xapic"));
}

#[test]
fn no_more_than_the_kernels_cpu_limit() {
    assert_eq!(KERNEL_CPU_LIMIT, 4096);
    let mut b = MadtBuilder::new();
    for i in 0..4100u32 {
        b = b.x2apic(i, 1, i);
    }
    let out = run_on(&b.build(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4101);
    assert!(lines[..4096].iter().all(|l| l.ends_with(",usable")));
    assert_eq!(lines[4096], "CPU,4096,4096,x2apic,skipped:beyond-cpu-limit");
    assert!(
        lines[4096..4100]
            .iter()
            .all(|l| l.ends_with(",skipped:beyond-cpu-limit"))
    );
    assert_eq!(lines[4100], "MADT,4096,x2apic");
    // In xAPIC mode the 255 addressable CPUs (ids 0..=0xFE) come up.
    let out = run_on(&b.build(), &["--no-x2apic"]);
    let text = stdout(&out);
    assert_eq!(text.lines().last(), Some("MADT,255,x2apic"));
    assert_eq!(
        text.matches("skipped:xapic-unaddressable").count(),
        4100 - 255
    );
}

#[test]
fn entry_length_zero_stops_the_walk_as_in_the_kernel() {
    // The kernel's parser keeps what precedes a zero-length entry and warns; so does the tool.
    let t = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 1, 1)
        .raw(&[0, 0])
        .lapic(2, 2, 1)
        .build();
    let out = run_on(&t, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "CPU,0,0,xapic,usable\n\
         CPU,1,1,xapic,usable\n\
         WARN,MADT entry at offset 0x3c has length 0; stopped walking MADT after 2 CPUs\n\
         MADT,2,xapic\n"
    );
    // The same bytes with the checksum left as it was: the table is refused.
    let mut broken = MadtBuilder::new()
        .lapic(0, 0, 1)
        .lapic(1, 1, 1)
        .lapic(2, 2, 1)
        .build();
    broken[44 + 17] = 0;
    assert_fails(&run_on(&broken, &[]), "bad checksum");
}

fn real_sample() -> Vec<u8> {
    fs::read(sample_dir().join("Desktop_EVGA_X299_MICRO_4B645993A72D.madt")).unwrap()
}

#[test]
fn malformed_tables_are_refused_with_one_line() {
    let good = real_sample();
    assert_eq!(run_on(&good, &[]).status.code(), Some(0));

    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    assert_fails(&run_on(&truncated, &[]), "truncated");
    assert_fails(&run_on(&good[..20], &[]), "truncated");
    assert_fails(&run_on(&[], &[]), "truncated");

    let mut bad_sum = good.clone();
    bad_sum[60] ^= 0x40;
    assert_fails(&run_on(&bad_sum, &[]), "bad checksum");

    let mut facp = good.clone();
    facp[..4].copy_from_slice(b"FACP");
    fix_checksum(&mut facp, 9);
    assert_fails(&run_on(&facp, &[]), "signature \"FACP\", expected \"APIC\"");

    // A header claiming more than any table may hold.
    let mut huge = good.clone();
    huge[4..8].copy_from_slice(&(MAX_TABLE_LEN + 1).to_le_bytes());
    assert_fails(&run_on(&huge, &[]), "length");

    // Valid header, shorter than the MADT's fixed fields.
    assert_fails(&run_on(&sdt(b"APIC", 5, &[0; 4]), &[]), "truncated");

    let out = run_on(b"not an ACPI table at all, just text\n", &[]);
    assert_fails(&out, "not a usable MADT");
}

#[test]
fn missing_and_unreadable_files() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-table.madt");
    let out = exo_madt(&[missing.to_str().unwrap()]);
    assert_fails(&out, "no-such-table.madt");
    // A directory opens but cannot be read.
    assert_fails(&exo_madt(&[env!("CARGO_TARGET_TMPDIR")]), "");
}

#[test]
fn arguments() {
    let help = exo_madt(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).starts_with("usage: exo-madt FILE [--no-x2apic]"));
    for token in [
        "skipped:<reason>",
        "NMI,local,",
        "WARN,",
        "MADT,<cpus>,<x2apic|xapic>",
    ] {
        assert!(stdout(&help).contains(token), "--help documents {token}");
    }
    assert_eq!(exo_madt(&["-h"]).status.code(), Some(0));

    let sample = sample_dir().join("Desktop_EVGA_X299_MICRO_4B645993A72D.madt");
    let sample = sample.to_str().unwrap();
    for bad in [
        &[][..],
        &["--no-x2apic"][..],
        &["--frobnicate", sample][..],
        &[sample, sample][..],
        &[sample, "-x"][..],
    ] {
        let out = exo_madt(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(
            err.starts_with("exo-madt: ") && err.contains("--help"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    // Options before or after the file, and `--` ends the options.
    let a = exo_madt(&["--no-x2apic", sample]);
    let b = exo_madt(&[sample, "--no-x2apic"]);
    let c = exo_madt(&["--no-x2apic", "--", sample]);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout, c.stdout);
}

/// Fixed seeds: the same cases on every run.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x0E70_4AD7),
        ..ProptestConfig::default()
    }
}

/// Checks that hold for any table the parser accepts.
fn check_plan(bytes: &[u8], x2apic: bool, limit: usize) {
    let Ok(plan) = plan_table(bytes, x2apic, limit) else {
        assert_refused(bytes);
        return;
    };
    let text = plan.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let cpu_lines = lines.iter().filter(|l| l.starts_with("CPU,")).count();
    assert_eq!(cpu_lines, plan.cpus.len());
    assert!(lines.last().is_some_and(|l| l.starts_with("MADT,")));
    // The walk over the raw entries matches the parser's: every CPU it kept is found once,
    // and every entry it dropped is accounted for.
    let from_parser = plan
        .cpus
        .iter()
        .filter(|p| {
            !matches!(
                p.decision,
                Decision::Skipped(SkipReason::InvalidApicId | SkipReason::DuplicateApicId)
            )
        })
        .count();
    assert_eq!(from_parser, plan.madt.cpus.len());
    assert!(
        plan.cpus
            .iter()
            .all(|p| p.decision != Decision::Skipped(SkipReason::NotKeptByParser))
    );
    let usable = plan
        .cpus
        .iter()
        .filter(|p| p.decision == Decision::Usable)
        .count();
    // The BSP (first enabled CPU) always runs; with no enabled CPU it runs alone, unlisted.
    assert_eq!(plan.started, usable.max(1));
    assert!(plan.started <= limit.max(1));
    let x2 = if plan.x2apic_needed {
        "x2apic"
    } else {
        "xapic"
    };
    assert_eq!(
        lines.last().copied(),
        Some(format!("MADT,{},{x2}", plan.started).as_str())
    );
}

/// A refused table is refused by the parser itself, for the same reason.
fn assert_refused(bytes: &[u8]) {
    assert!(Madt::from_bytes(bytes).is_err());
}

/// A sample with `edits` applied; optionally the length and checksum are made valid again so
/// the corruption reaches the entries.
fn mutated(base: &[u8], edits: &[(usize, u8)], truncate: Option<usize>, fix: bool) -> Vec<u8> {
    let mut t = base.to_vec();
    for &(i, v) in edits {
        let i = i % t.len();
        t[i] = v;
    }
    if let Some(n) = truncate {
        t.truncate(n % (t.len() + 1));
    }
    if fix && t.len() >= 10 {
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
    }
    t
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_bytes_never_panic_the_plan(bytes in prop::collection::vec(any::<u8>(), 0..700),
                                      x2apic in any::<bool>(), limit in 0usize..6) {
        check_plan(&bytes, x2apic, limit);
        // The same bytes behind a valid MADT header: the entries get walked.
        let mut t = b"APIC".to_vec();
        t.extend_from_slice(&[0; 40]);
        t.extend_from_slice(&bytes);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        check_plan(&t, x2apic, limit);
    }

    #[test]
    fn mutated_real_tables_never_panic_the_plan(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..16),
        truncate in prop::option::of(any::<usize>()),
        fix in prop::bool::weighted(0.9),
        x2apic in any::<bool>(),
        limit in prop::sample::select(vec![0usize, 1, 2, 8, 4096]),
    ) {
        let t = mutated(&real_sample(), &edits, truncate, fix);
        check_plan(&t, x2apic, limit);
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Processor entries only (small ids so they repeat, some from 0xFF up, every flag
    /// combination, both entry types): the tool's lines are exactly the reference's, under
    /// both APIC modes and small CPU limits.
    #[test]
    fn processor_entries_follow_the_reference(
        entries in prop::collection::vec(
            (prop_oneof![0u32..12, 0xFDu32..0x102, Just(u32::MAX)], 0u32..4, any::<bool>()),
            0..40,
        ),
        x2apic in any::<bool>(),
        limit in 0usize..8,
    ) {
        let mut b = MadtBuilder::new();
        let mut cpus = Vec::new();
        for (i, &(id, flags, x2)) in entries.iter().enumerate() {
            let x2 = x2 || id > 0xFF;
            b = if x2 { b.x2apic(id, flags, 100 + i as u32) } else { b.lapic(i as u8, id as u8, flags) };
            cpus.push(ExpectCpu {
                x2apic_entry: x2,
                uid: if x2 { 100 + i as u64 } else { i as u64 },
                apic_id: u64::from(id),
                enabled: flags & 1 != 0,
                online_capable: flags & 2 != 0,
            });
        }
        let t = b.build();
        check_plan(&t, x2apic, limit);
        let text = plan_table(&t, x2apic, limit).unwrap().to_string();
        let r = reference(&cpus, x2apic, limit);
        let got: Vec<&str> = text.lines().filter(|l| l.starts_with("CPU,")).collect();
        prop_assert_eq!(&got, &r.cpu_lines);
        let summary = r.summary();
        prop_assert_eq!(text.lines().last(), Some(summary.as_str()));
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// The program itself: exit 0 or 1, never a crash, whatever the file holds.
    #[test]
    fn the_tool_never_crashes(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..16),
                              truncate in prop::option::of(any::<usize>()),
                              fix in any::<bool>()) {
        let t = mutated(&real_sample(), &edits, truncate, fix);
        let out = run_on(&t, &[]);
        let code = out.status.code();
        prop_assert!(code == Some(0) || code == Some(1), "{:?}: {}", code, stderr(&out));
        if code == Some(0) {
            prop_assert!(stdout(&out).lines().last().is_some_and(|l| l.starts_with("MADT,")));
        } else {
            prop_assert_eq!(stderr(&out).lines().count(), 1);
        }
    }
}
