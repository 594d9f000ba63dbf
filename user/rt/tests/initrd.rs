//! The initrd as `scripts/mkinitrd.sh` makes it: the archive parses with `exo-initrd` and
//! holds every program; each is a static `ET_EXEC` for x86-64 linked at 0x400000 whose
//! `exo_elf::plan` succeeds with `LoadOptions::EXO_KERNEL` (what the kernel's loader
//! accepts), entry at the start of its text, W^X, no TLS, no relocations, a
//! non-executable stack. On a Linux x86-64 host the
//! programs that only use calls Linux shares (`hello`, `empty`, `hello-c`) are also run,
//! and so is every case of `/faults` (its `arg` set by patching `_start`), each of which
//! must die of the signal Linux gives for the fault, or exit as documented.
//!
//! Cost: the test runs the script, which runs `cargo build --release --target
//! x86_64-unknown-none` of the five programs into the same target directory (about a
//! minute on two cores the first time, a second or two once built) and gcc. It is skipped,
//! with a message, only when the `x86_64-unknown-none` target is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use exo_elf::{ElfKind, LoadOptions};
use exo_initrd::{Archive, FileType};

const RUST_PROGRAMS: [&str; 11] = [
    "init", "hello", "empty", "faults", "ubench", "threads", "ipcdemo", "fuzz", "nginx", "names",
    "hog",
];

/// Forks and file writes of this test binary are serialised: a thread that forks while
/// another has a just-written executable open for writing makes the later `execve` fail
/// with ETXTBSY ("Text file busy"): the child holds the write descriptor until its own
/// exec closes it. Writers hold this lock until the file is closed, spawners until the
/// child has exec'd (`Command::output` returns only after the child ended, so it is
/// spawned under the lock and waited for outside it).
static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `cmd.output()`, spawned under [`FORK_LOCK`].
fn output(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    let child = {
        let _g = FORK_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?
    };
    child.wait_with_output()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    output(
        Command::new(rustc)
            .args(["--print", "sysroot"])
            .current_dir(root()),
    )
    .ok()
    .filter(|o| o.status.success())
    .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    .is_some_and(|sysroot| sysroot.join("lib/rustlib/x86_64-unknown-none").is_dir())
}

fn have(tool: &str) -> bool {
    output(Command::new(tool).arg("--version")).is_ok_and(|o| o.status.success())
}

/// The archive bytes (built once per test binary), or `None` when the target is missing.
fn archive() -> Option<&'static [u8]> {
    static ARCHIVE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            if !target_installed() {
                eprintln!("SKIPPED: the x86_64-unknown-none target is not installed (rustup target add x86_64-unknown-none)");
                return None;
            }
            let out = std::env::temp_dir().join(format!("exo-initrd-test-{}.cpio", std::process::id()));
            let run = output(
                Command::new("bash")
                    .arg(root().join("scripts/mkinitrd.sh"))
                    .arg("--out")
                    .arg(&out)
                    .current_dir(root()),
            )
                .expect("bash runs scripts/mkinitrd.sh");
            assert!(
                run.status.success(),
                "scripts/mkinitrd.sh failed ({}):\n{}{}",
                run.status,
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
            let bytes = std::fs::read(&out).unwrap();
            let _ = std::fs::remove_file(&out);
            Some(bytes)
        })
        .as_deref()
}

fn expected_names() -> Vec<&'static str> {
    let mut names = RUST_PROGRAMS.to_vec();
    if have("gcc") {
        names.push("hello-c");
    }
    names
}

#[test]
fn the_archive_holds_every_program_and_finds_init() {
    let Some(bytes) = archive() else { return };
    let archive = Archive::parse(bytes).expect("exo-initrd parses the archive");
    let names: Vec<_> = archive.entries().map(|e| e.name).collect();
    // The programs, then the README (text: spawn refuses it with ENOEXEC, a kernel test's).
    let mut want = expected_names();
    want.push("README");
    assert_eq!(names, want);
    let readme = archive.find("README").expect("README");
    let text = std::str::from_utf8(readme.data).expect("README is text");
    assert!(!readme.data.starts_with(b"\x7fELF"));
    for name in expected_names() {
        assert!(
            text.lines().any(|l| l == name),
            "README does not list {name}"
        );
    }
    for name in expected_names() {
        for path in [format!("/{name}"), name.to_string(), format!("./{name}")] {
            let e = archive
                .find(&path)
                .unwrap_or_else(|| panic!("find({path:?})"));
            assert_eq!(e.file_type(), FileType::Regular);
            assert_eq!(e.name, name);
        }
    }
    let init = archive.find("/init").unwrap();
    assert!(init.data.starts_with(b"\x7fELF"));
    assert_eq!(init.mode & 0o777, 0o755);
    assert!(archive.find("/no-such-program").is_none());
}

#[test]
fn every_program_is_a_static_exec_the_loader_accepts() {
    let Some(bytes) = archive() else { return };
    let archive = Archive::parse(bytes).unwrap();
    for entry in archive.entries().filter(|e| e.name != "README") {
        let name = entry.name;
        let elf = entry.data;
        // ELF64, little-endian, ET_EXEC, EM_X86_64.
        assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "{name}");
        assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 2, "{name}: ET_EXEC");
        assert_eq!(
            u16::from_le_bytes([elf[18], elf[19]]),
            62,
            "{name}: EM_X86_64"
        );

        let plan = exo_elf::plan(elf, &LoadOptions::EXO_KERNEL)
            .unwrap_or_else(|e| panic!("{name}: exo_elf::plan: {e}"));
        assert_eq!(plan.kind(), ElfKind::Executable, "{name}");
        assert_eq!(plan.bias(), 0);
        assert_eq!(
            plan.image_range().start,
            0x40_0000,
            "{name}: linked at 4 MiB"
        );
        assert_eq!(plan.relocation_count(), 0, "{name}: nothing to relocate");
        assert!(plan.tls().is_none(), "{name}: no TLS");
        let stack = plan
            .stack()
            .unwrap_or_else(|| panic!("{name}: PT_GNU_STACK"));
        assert!(!stack.execute, "{name}: executable stack");

        let mut text = None;
        for seg in plan.segments() {
            assert!(
                !(seg.perms.write && seg.perms.execute),
                "{name}: W+X segment {seg:?}"
            );
            if seg.perms.execute {
                assert!(text.is_none(), "{name}: one text segment");
                text = Some(*seg);
            }
        }
        let text = text.unwrap_or_else(|| panic!("{name}: no text"));
        let entry_pc = plan.entry();
        assert!(
            (text.vaddr..text.vaddr + text.filesz as u64).contains(&entry_pc),
            "{name}: entry {entry_pc:#x} outside the text {text:?}"
        );
        // Both entry points (exo-rt's and hello.c's) start with `xor ebp, ebp`.
        let off = text.file_offset + (entry_pc - text.vaddr) as usize;
        assert_eq!(
            &elf[off..off + 2],
            [0x31, 0xed],
            "{name}: entry is not _start"
        );
        if name != "hello-c" {
            // user.ld puts exo-rt's _start first.
            assert_eq!(entry_pc, 0x40_0000, "{name}");
        }
    }
}

/// A fresh directory for executables, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("exo-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes an executable file.
    fn exe(&self, name: &str, bytes: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(name);
        let _g = FORK_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn linux_host() -> bool {
    let yes = cfg!(all(target_os = "linux", target_arch = "x86_64"));
    if !yes {
        eprintln!("SKIPPED: not a Linux x86-64 host");
    }
    yes
}

#[test]
fn the_linux_compatible_programs_run_on_a_linux_host() {
    if !linux_host() {
        return;
    }
    let Some(bytes) = archive() else { return };
    let archive = Archive::parse(bytes).unwrap();
    let dir = Scratch::new("initrd-run");
    let mut ran = 0;
    for (name, want) in [
        ("hello", "hello: hello from pid "),
        ("empty", ""),
        ("hello-c", "hello-c: hello from pid "),
    ] {
        let Some(entry) = archive.find(name) else {
            assert!(name == "hello-c" && !have("gcc"), "{name} missing");
            continue;
        };
        let out = output(&mut Command::new(dir.exe(name, entry.data))).unwrap();
        assert!(out.status.success(), "{name}: {:?}", out.status);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.starts_with(want), "{name}: {stdout:?}");
        assert_eq!(
            stdout.lines().count(),
            usize::from(!want.is_empty()),
            "{name}: {stdout:?}"
        );
        ran += 1;
    }
    assert!(ran >= 2);
}

/// Every case of `/faults`, on Linux: `_start`'s first six bytes (`xor ebp, ebp; and rsp,
/// -16`; Linux enters with rsp aligned) become `mov edi, <case>; nop`, so `run` gets the
/// case as its `arg`. Each must die of the signal Linux sends for its fault (which shows
/// the fault really happens), or exit as its case says on Linux.
#[test]
fn every_fault_case_faults_on_a_linux_host() {
    use std::os::unix::process::ExitStatusExt;
    if !linux_host() {
        return;
    }
    let Some(bytes) = archive() else { return };
    let archive = Archive::parse(bytes).unwrap();
    let elf = archive.find("/faults").unwrap().data;
    let plan = exo_elf::plan(elf, &LoadOptions::EXO_KERNEL).unwrap();
    let text = plan.segments().iter().find(|s| s.perms.execute).unwrap();
    let at = text.file_offset + (plan.entry() - text.vaddr) as usize;
    assert_eq!(
        elf[at..at + 6],
        [0x31, 0xed, 0x48, 0x83, 0xe4, 0xf0],
        "_start changed"
    );
    let (segv, ill, trap, fpe) = (11, 4, 5, 8);
    // Linux's signal per case (#GP and #PF are both SIGSEGV), or the exit code.
    let want: [Result<i32, i32>; 13] = [
        Err(segv), // #PF
        Err(segv), // #GP
        Err(ill),  // #UD
        Err(fpe),  // #DE
        Err(trap), // #BP
        Err(segv), // hlt: #GP
        Err(segv), // jump to the kernel: #PF
        Err(segv), // stack overflow: #PF on the guard
        Err(segv), // write to text
        Err(segv), // execute the stack
        Ok(1),     // Linux differs on the Exo-OS-only checks (W^X mmap, spawn, ...)
        Ok(0),     // Linux does not map the last user page either
        Ok(101),   // panic
    ];
    let dir = Scratch::new("faults-run");
    for (case, want) in want.into_iter().enumerate() {
        let mut patched = elf.to_vec();
        patched[at] = 0xbf; // mov edi, imm32
        patched[at + 1..at + 5].copy_from_slice(&(case as u32).to_le_bytes());
        patched[at + 5] = 0x90;
        let out = output(&mut Command::new(
            dir.exe(&format!("faults{case}"), &patched),
        ))
        .unwrap();
        let got = match out.status.code() {
            Some(code) => Ok(code),
            None => Err(out.status.signal().unwrap()),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(got, want, "case {case}: {stdout}");
        assert!(stdout.starts_with("faults: pid "), "case {case}: {stdout}");
        if case == 12 {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.starts_with(
                    "panic: faults: case 12 panics on purpose at user/faults/src/main.rs:"
                ),
                "{stderr}"
            );
        }
    }
}
