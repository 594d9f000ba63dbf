//! Executables made by real toolchains (`tests/data/build.sh`: gcc + GNU ld, rustc +
//! rust-lld): the plans match `readelf -hlrW` (the committed output, and a live run when
//! readelf is installed), the rejected ones are rejected for the right reason, and when gcc
//! is installed, fresh builds (including glibc's static and static-PIE programs) are checked
//! the same way.

mod common;

use common::*;
use exo_elf::*;
use std::process::Command;

fn check_fixture(name: &str, bias: u64) -> LoadPlan<'static> {
    let file: &'static [u8] = Box::leak(fixture(name).into_boxed_slice());
    let opts = LoadOptions {
        pie_bias: bias,
        ..LoadOptions::DEFAULT
    };
    let plan = plan(file, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_invariants(&plan, file, &opts);
    let committed = std::fs::read_to_string(data_dir().join(format!("{name}.readelf"))).unwrap();
    let re = parse_readelf(&committed);
    let expected_bias = if re.pie { bias } else { 0 };
    compare_with_readelf(&plan, &re, expected_bias);
    if let Some(live) = live_readelf(&data_dir().join(name)) {
        assert_eq!(
            live, committed,
            "{name}: readelf output changed; rerun build.sh?"
        );
    }
    plan
}

#[test]
fn gcc_static_exec() {
    let p = check_fixture("tiny-exec", 0x40_0000);
    assert_eq!(p.kind(), ElfKind::Executable);
    assert_eq!(p.bias(), 0);
    assert_eq!(p.entry(), 0x401000);
    let segs = p.segments();
    assert_eq!(segs.len(), 4);
    assert_eq!(segs[1].perms, perms(R | X));
    // The RW segment: 0x30 bytes from the file, the rest (.bss, 20000 bytes) zero.
    assert_eq!(segs[3].perms, perms(R | W));
    assert_eq!(segs[3].pages(), 0x403000..0x409000);
    assert_eq!(segs[3].bss(), 0x404028..0x408e60);
    let tls = p.tls().unwrap();
    assert_eq!((tls.filesz, tls.memsz, tls.align), (8, 16, 8));
    // tls_var = 5: the initial data comes from the file.
    assert_eq!(&p.file()[tls.file_offset..][..8], &5u64.to_le_bytes());
    assert_eq!(p.stack(), Some(perms(R | W)));
    // No PT_PHDR, but the first segment holds the headers: AT_PHDR = 0x400040.
    assert_eq!(p.phdr_vaddr(), Some(0x400040));
    assert_eq!(p.relocation_count(), 0);
    assert_eq!(p.image_range(), 0x400000..0x409000);
    assert_eq!(p.mapped_bytes(), 0x9000);
}

#[test]
fn gcc_static_pie_at_several_biases() {
    for bias in [0x1000, 0x40_0000, 0x5555_5555_4000, 0x7fff_0000_0000] {
        let p = check_fixture("tiny-pie", bias);
        assert_eq!(p.kind(), ElfKind::StaticPie);
        assert_eq!(p.entry(), bias + 0x1000);
        assert_eq!(p.phdr_vaddr(), Some(bias + 0x40));
        let relocs: Vec<_> = p.relocations().collect();
        assert_eq!(relocs.len(), 3);
        // table[i] = msg + i, msg at 0x2000 (link address).
        for (i, r) in relocs.iter().enumerate() {
            assert_eq!(r.vaddr, bias + 0x4010 + 8 * i as u64);
            assert_eq!(r.value, bias + 0x2000 + i as u64);
        }
        assert_eq!(&p.file()[0x2000..0x2005], b"exo\n\0");
    }
}

#[test]
fn rustc_static_pie_and_exec() {
    let p = check_fixture("rs-pie", 0x20_0000);
    assert_eq!(p.kind(), ElfKind::StaticPie);
    // rust-lld: two RW segments (RELRO, then data), PT_PHDR, GNU_STACK with align 0.
    let rw = p
        .segments()
        .iter()
        .filter(|s| s.perms == perms(R | W))
        .count();
    assert_eq!(rw, 2);
    assert_eq!(p.relocation_count(), 3);
    assert!(p.tls().is_none());
    assert_eq!(p.phdr_vaddr(), Some(0x20_0040));
    let p = check_fixture("rs-exec", 0x20_0000);
    assert_eq!(p.kind(), ElfKind::Executable);
    assert_eq!(p.bias(), 0);
    assert_eq!(p.relocation_count(), 0);
}

#[test]
fn real_rejections() {
    let cases: [(&str, ElfError); 3] = [
        ("tiny-execstack", ElfError::ExecutableStack),
        ("tiny-interp", ElfError::Interpreter),
        ("tiny-rwx", ElfError::WriteAndExecute { index: 0 }),
    ];
    for (name, expected) in cases {
        let file = fixture(name);
        assert_eq!(
            plan(&file, &LoadOptions::DEFAULT).unwrap_err(),
            expected,
            "{name}"
        );
        let text = std::fs::read_to_string(data_dir().join(format!("{name}.readelf"))).unwrap();
        // The reason is visible in readelf's output too.
        let re = parse_readelf(&text);
        match expected {
            ElfError::ExecutableStack => {
                assert!(
                    re.phdrs
                        .iter()
                        .any(|p| p.p_type == "GNU_STACK" && p.flags.contains('E'))
                )
            }
            ElfError::Interpreter => assert!(re.phdrs.iter().any(|p| p.p_type == "INTERP")),
            _ => assert!(
                re.phdrs
                    .iter()
                    .any(|p| p.p_type == "LOAD" && p.flags == "RWE")
            ),
        }
    }
}

#[test]
fn fixtures_outside_a_small_user_range() {
    let file = fixture("tiny-exec");
    // Everything below 0x403000: the RW segment is out.
    let opts = LoadOptions {
        user_end: 0x403000,
        ..LoadOptions::DEFAULT
    };
    assert_eq!(
        plan(&file, &opts).unwrap_err(),
        ElfError::OutOfRange {
            index: 3,
            start: 0x403000,
            end: 0x409000
        }
    );
    // A PIE at bias 0 would put its first segment on page 0.
    let file = fixture("tiny-pie");
    let opts = LoadOptions {
        pie_bias: 0,
        ..LoadOptions::DEFAULT
    };
    assert_eq!(
        plan(&file, &opts).unwrap_err(),
        ElfError::OutOfRange {
            index: 0,
            start: 0,
            end: 0x1000
        }
    );
    // Too close to the top of the lower half.
    let opts = LoadOptions {
        pie_bias: 0x7fff_ffff_8000,
        ..LoadOptions::DEFAULT
    };
    assert!(matches!(
        plan(&file, &opts),
        Err(ElfError::OutOfRange { .. })
    ));
}

fn have_gcc() -> bool {
    Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Compiles `src` with gcc and `args` into `dir/out`; `None` if the build fails (e.g. no
/// static glibc installed).
fn gcc(dir: &std::path::Path, src: &str, out: &str, args: &[&str]) -> Option<Vec<u8>> {
    let c = dir.join("prog.c");
    std::fs::write(&c, src).unwrap();
    let status = Command::new("gcc")
        .args(args)
        .arg("-o")
        .arg(dir.join(out))
        .arg(&c)
        .output()
        .ok()?;
    if !status.status.success() {
        eprintln!(
            "note: gcc {args:?} failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        return None;
    }
    Some(std::fs::read(dir.join(out)).unwrap())
}

#[test]
fn fresh_gcc_builds() {
    if !have_gcc() {
        eprintln!("note: gcc not installed; skipping the test-time builds");
        return;
    }
    let tmp = TempDir::new("gcc");
    let tiny = std::fs::read_to_string(data_dir().join("tiny.c")).unwrap();
    let common = ["-O2", "-nostdlib", "-fno-asynchronous-unwind-tables"];
    let bias = 0x7000_0000;
    let opts = LoadOptions {
        pie_bias: bias,
        ..LoadOptions::DEFAULT
    };
    let hello = "#include <stdio.h>\n__thread int t = 3;\nint main(void) { printf(\"hi %d\\n\", t); return 0; }\n";
    let builds: [(&str, &str, Vec<&str>); 4] = [
        ("exec", &tiny, [&common[..], &["-static"]].concat()),
        (
            "pie",
            &tiny,
            [&common[..], &["-static-pie", "-fPIE"]].concat(),
        ),
        ("glibc-static", hello, vec!["-O2", "-static"]),
        ("glibc-static-pie", hello, vec!["-O2", "-static-pie"]),
    ];
    for (name, src, args) in builds {
        let Some(file) = gcc(&tmp.0, src, name, &args) else {
            continue;
        };
        let result = plan(&file, &opts);
        if name == "glibc-static-pie" {
            // glibc's ifuncs (memcpy, strlen, ...) are R_X86_64_IRELATIVE relocations.
            assert!(
                matches!(
                    result,
                    Err(ElfError::UnsupportedRelocation { r_type: 37, .. })
                ),
                "{result:?}"
            );
            continue;
        }
        let p = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        check_invariants(&p, &file, &opts);
        if let Some(text) = live_readelf(&tmp.0.join(name)) {
            let re = parse_readelf(&text);
            compare_with_readelf(&p, &re, if re.pie { bias } else { 0 });
        }
        if name == "glibc-static" {
            assert!(p.tls().is_some());
            assert!(p.segments().len() >= 4);
        }
    }
}
