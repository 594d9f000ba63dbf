//! Kernel tests of the trap handlers: breakpoints on every CPU, a caught page fault.

use crate::boot::BootState;
use crate::harness::{Needs, TestResult, check};
use crate::ktest;
use crate::smp::cpus::{self};
use crate::smp::time::Deadline;
use alloc::format;
use core::sync::atomic::Ordering;
use exo_percpu::{CpuId, IrqGuard};

ktest!(
    Needs::Cpus,
    "trap.breakpoint_recovers_on_each_cpu",
    breakpoint_each_cpu
);
ktest!(Needs::Cpus, "trap.page_fault_caught", page_fault_caught);
ktest!(
    Needs::Cpus,
    "trap.double_fault_from_user_is_the_kernel_s",
    double_fault_is_the_kernel_s
);

/// Which exceptions from ring 3 go to the thread's process: every fault of the program's
/// own (#DE, #UD, #GP, #PF, ...), never an NMI, #NM (the lazy FPU's), a machine check, or
/// a double fault (until 2026-12-05 a #DF with a ring-3 CS was handed to the process as its
/// fault and the thread ended on the #DF's IST stack; found by review).
fn double_fault_is_the_kernel_s(_: &BootState) -> TestResult {
    use super::is_the_threads;
    for v in [0u8, 1, 3, 4, 5, 6, 10, 11, 12, 13, 14, 16, 17, 19, 20, 21] {
        check(is_the_threads(v), || {
            format!("vector {v} not given to the thread")
        })?;
    }
    for v in [2u8, 7, 8, 18, 32, 255] {
        check(!is_the_threads(v), || {
            format!("vector {v} given to the thread")
        })?;
    }
    Ok(())
}
ktest!(
    Needs::Cpus,
    "trap.panic_backtrace_survives_a_corrupt_frame_pointer",
    backtrace_corrupt_rbp
);

/// The panic report's backtrace from a frame pointer on no known stack reads nothing it
/// cannot: a non-canonical value (a smashed stack's `0x4141...`), a user-half one, an
/// unmapped guard page give no frame and no fault; a real chain still gives its frames.
fn backtrace_corrupt_rbp(_: &BootState) -> TestResult {
    let guard = crate::mm::memory::alloc_stack(2).map_err(|e| format!("{e}"))?;
    let unmapped = guard.bottom - 4096;
    for rbp in [0x4141_4141_4141_4140, 0x1000, unmapped, unmapped + 4096 - 8] {
        let mut n = 0;
        crate::trap::panic::backtrace(rbp, |_| n += 1);
        check(n == 0, || format!("rbp {rbp:#x}: {n} frames"))?;
    }
    let mut n = 0;
    crate::trap::panic::backtrace(exo_arch::backtrace::current_rbp(), |_| n += 1);
    check(n > 0, || "no frame from this function's own rbp".into())
}

fn do_int3(_: u64) -> u64 {
    exo_arch::cpu::breakpoint();
    1
}

fn breakpoint_each_cpu(_: &BootState) -> TestResult {
    for b in cpus::online() {
        let before = b.ext.breakpoints.load(Ordering::Relaxed);
        let r = cpus::run_on(CpuId(b.hot.cpu_id), do_int3, 0, Deadline::after_ms(30_000))
            .map_err(|e| format!("{e}"))?;
        let after = b.ext.breakpoints.load(Ordering::Relaxed);
        check(r == 1 && after == before + 1, || {
            format!("CPU {}: int3 count {before} -> {after}", b.hot.cpu_id)
        })?;
    }
    Ok(())
}

fn page_fault_caught(_: &BootState) -> TestResult {
    let g = IrqGuard::new();
    let b = cpus::this(&g);
    let before = b.ext.fixups.load(Ordering::Relaxed);
    check(exo_arch::trap::probe_read_u64(0).is_err(), || {
        "read of page 0 did not fault".into()
    })?;
    check(
        exo_arch::trap::probe_read_u64(0x0000_7000_0000_0000).is_err(),
        || "read of unmapped user range did not fault".into(),
    )?;
    let x: u64 = 0xDEAD_BEEF_0BAD_F00D;
    let v = exo_arch::trap::probe_read_u64(&raw const x as u64);
    check(v == Ok(x), || format!("probe of a mapped word gave {v:?}"))?;
    let after = b.ext.fixups.load(Ordering::Relaxed);
    check(after == before + 2, || {
        format!("fix-up count {before} -> {after}, expected +2")
    })
}
