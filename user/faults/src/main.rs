//! `/faults <arg>`: misbehaves in the way `arg` selects (see `cases.rs`), to show that the
//! kernel kills only this process, with the right `PROC,<pid>,killed,<why>` line. Exits 1
//! if it is still alive after the fault (the kernel let it pass), 2 for an unknown `arg`.
//! Case 10 instead checks that bad pointers and flags come back as the documented errors
//! (exit 0 when all do); case 11 tries to make `sysret` return to a non-canonical address;
//! case 12 panics (exo-rt's handler prints `panic: ...` and exits 101); case 13 checks
//! what `PROT_NONE` keeps and refuses before it reads such a page.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod bad_args;
mod cases;

use core::arch::asm;
use core::hint::black_box;

use bad_args::{KERNEL_ADDR, NON_CANONICAL, UNMAPPED};
use exo_rt::abi::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_NONE, PROT_READ, PROT_WRITE};
use exo_rt::{Errno, eprintln, println};

exo_rt::entry!(run);

fn run(arg: u64) -> i32 {
    let Some(case) = cases::CASES.iter().find(|c| c.arg == arg) else {
        eprintln!("faults: unknown case {arg} (0..{})", cases::CASES.len());
        return 2;
    };
    println!(
        "faults: pid {} case {arg}: {} (expect {})",
        exo_rt::getpid(),
        case.name,
        case.expect_text
    );
    match arg {
        0 => {
            black_box(load(UNMAPPED));
        }
        1 => {
            black_box(load(NON_CANONICAL));
        }
        // SAFETY: raises #UD; the kernel ends the process.
        2 => unsafe { asm!("ud2", options(nomem, nostack)) },
        3 => {
            let divisor = black_box(0u32);
            // SAFETY: divides edx:eax by 0: #DE; registers only.
            unsafe {
                asm!("div {d:e}", d = in(reg) divisor, inout("eax") 1u32 => _,
                     inout("edx") 0u32 => _, options(nomem, nostack));
            }
        }
        // SAFETY: raises #BP; the kernel ends the process.
        4 => unsafe { asm!("int3", options(nomem, nostack)) },
        // SAFETY: hlt in ring 3 raises #GP.
        5 => unsafe { asm!("hlt", options(nomem, nostack)) },
        // SAFETY: fetching a supervisor (or unmapped) page from ring 3 raises #PF.
        6 => unsafe { asm!("jmp {t}", t = in(reg) KERNEL_ADDR, options(noreturn)) },
        7 => {
            black_box(recurse(0));
        }
        8 => {
            let text = run as *const () as usize;
            // SAFETY: the text is mapped read-only: the store raises #PF.
            unsafe { asm!("mov byte ptr [{a}], 0xcc", a = in(reg) text, options(nostack)) };
        }
        9 => {
            let code = black_box([0xc3u8; 16]); // ret
            // SAFETY: the stack is not executable: the call raises #PF.
            unsafe { asm!("call {p}", p = in(reg) code.as_ptr(), clobber_abi("C")) };
        }
        10 => return bad_arguments(),
        11 => return sysret_non_canonical(),
        12 => panic!("faults: case 12 panics on purpose"),
        13 => return prot_none(),
        _ => unreachable!("every case is handled"),
    }
    eprintln!("faults: case {arg} did not fault");
    1
}

/// Reads 8 bytes at `addr` (a fault, for the addresses used here).
fn load(addr: usize) -> u64 {
    let v: u64;
    // SAFETY: a plain load; at the addresses used here the CPU raises #PF or #GP.
    unsafe { asm!("mov {v}, qword ptr [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v
}

/// Recurses until the stack's guard page stops it; the frames stay live (`black_box`).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(black_box(&frame)[0])
}

/// Case 10: every call of `bad_args::CHECKS` must return exactly its documented error
/// (and nothing must die).
fn bad_arguments() -> i32 {
    let mut bad = 0;
    for c in bad_args::CHECKS {
        let got = Errno::from_ret((c.call)());
        if got == Err(c.want) {
            println!("faults: ok   {}: {}", c.what, c.want);
        } else {
            println!("faults: FAIL {}: got {got:?}, want {}", c.what, c.want);
            bad += 1;
        }
    }
    for &(what, call) in bad_args::ZERO {
        let got = call();
        if got == 0 {
            println!("faults: ok   {what}: 0");
        } else {
            println!("faults: FAIL {what}: got {got}, want 0");
            bad += 1;
        }
    }
    println!(
        "faults: {} calls, {bad} wrong",
        bad_args::CHECKS.len() + bad_args::ZERO.len()
    );
    if bad == 0 { 0 } else { 1 }
}

/// Case 11: the lower half's last page, from which a `syscall` in the last two bytes would
/// return to the first non-canonical address (and code running off its end would be
/// interrupted with that address, which `iretq` refuses in ring 0 on Intel), cannot be
/// mapped: `ENOMEM`, as on Linux. Until 2026-12-04 it could, and the kernel's `sysretq`
/// check was what stood between it and a ring-0 #GP; that check stays (`syscall.rs`).
fn sysret_non_canonical() -> i32 {
    const LAST_PAGE: usize = NON_CANONICAL - 4096;
    // SAFETY: MAP_FIXED on Exo-OS never replaces a mapping, and nothing of ours is there.
    let mapped = unsafe {
        exo_rt::mmap(
            LAST_PAGE,
            4096,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
        )
    };
    match mapped {
        Err(Errno::ENOMEM) => {
            println!("faults: the last page of the lower half cannot be mapped (ENOMEM)");
            0
        }
        Err(e) => {
            println!("faults: mapping the last page of the lower half: {e}, want ENOMEM");
            1
        }
        Ok(_) => {
            println!("faults: the last page of the lower half was mapped");
            1
        }
    }
}

/// Case 13: a `PROT_NONE` page keeps its contents but refuses every access: the kernel's
/// copies from it fail (`write`: EFAULT; `futex`: EFAULT), access given back shows the
/// same bytes, and a plain read of it ends the process with #PF. Until 2026-12-04 prot 0
/// left the pages readable (exo-rt's thread-stack guards among them). Returns 1 (alive,
/// with the reason printed) if any step goes otherwise.
fn prot_none() -> i32 {
    const LEN: usize = 2 * 4096;
    let fail = |what: &str| {
        println!("faults: PROT_NONE: {what}");
        1
    };
    let p = match exo_rt::map_anonymous(LEN, PROT_NONE) {
        Ok(p) => p,
        Err(Errno::ENOMEM) => {
            println!("faults: PROT_NONE: mmap refused for want of memory (ENOMEM): not tested");
            return cases::SETUP_NO_MEMORY;
        }
        Err(_) => return fail("mmap(PROT_NONE) refused"),
    };
    let base = p.as_ptr() as usize;
    // SAFETY: the pages are ours; nothing reads them while they have no access.
    match unsafe { exo_rt::mprotect(base, LEN, PROT_READ | PROT_WRITE) } {
        Ok(_) => {}
        Err(Errno::ENOMEM) => {
            println!("faults: PROT_NONE: mprotect refused for want of memory (ENOMEM): not tested");
            return cases::SETUP_NO_MEMORY;
        }
        Err(_) => return fail("mprotect(READ|WRITE) of a PROT_NONE mapping refused"),
    }
    // SAFETY: the two pages are mapped read-write, and only this thread uses them.
    let bytes = unsafe { core::slice::from_raw_parts_mut(base as *mut u8, LEN) };
    if bytes.iter().any(|&b| b != 0) {
        return fail("a fresh PROT_NONE page was not zeroed");
    }
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    // SAFETY: nothing touches the pages until access is given back.
    if unsafe { exo_rt::mprotect(base, LEN, PROT_NONE) }.is_err() {
        return fail("mprotect(PROT_NONE) refused");
    }
    // SAFETY: no access: the kernel must refuse to read it, not hand the bytes out.
    let shown = exo_rt::write(1, unsafe {
        core::slice::from_raw_parts(base as *const u8, 16)
    });
    if shown != Err(Errno::EFAULT) {
        return fail("write(1, PROT_NONE page) was not EFAULT");
    }
    // SAFETY: as above (the kernel reads the word; nothing in Rust does).
    let word = unsafe { &*((base + 4096) as *const core::sync::atomic::AtomicU32) };
    // A deadline, so a kernel that did read the word (0, as expected) cannot sleep for good.
    let soon = exo_rt::Timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    if exo_rt::futex_wait(word, 0, Some(&soon)) != Err(Errno::EFAULT) {
        return fail("futex_wait on a PROT_NONE page was not EFAULT");
    }
    // SAFETY: read-only from here on until the rights are taken away again.
    if unsafe { exo_rt::mprotect(base, LEN, PROT_READ) }.is_err() {
        return fail("mprotect(READ) of a PROT_NONE mapping refused");
    }
    if bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b != (i * 7 + 3) as u8)
    {
        return fail("the contents changed across PROT_NONE");
    }
    // SAFETY: nothing touches the pages but the faulting load below.
    if unsafe { exo_rt::mprotect(base, LEN, PROT_NONE) }.is_err() {
        return fail("second mprotect(PROT_NONE) refused");
    }
    black_box(load(base + 8));
    fail("a read of a PROT_NONE page did not fault")
}
