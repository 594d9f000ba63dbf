//! Kernel tests of user mode: real ring-3 code (the `programs`, in the `testbed` pages)
//! making system calls, faulting and spinning on every CPU, checked through the results it
//! leaves in its data page, its exit code, and what the kernel counted (system calls per
//! thread, fix-ups, interrupts from ring 3): a test fails when its path was not taken.

use super::programs::{Program, SURVIVED};
use super::syscall::{Errno, nr};
use super::task::{self, Death, Report};
use super::testbed::{self, EDGE_ENTRY, EDGE_IPC_ENTRY, Slot};
use crate::boot::BootState;
use crate::harness::{Needs, SKIP, TestResult, check, join_all, ms, ncpus};
use crate::ktest;
use crate::sched::{self, KILLED, Tid};
use crate::smp::cpus;
use crate::smp::time::Deadline;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use exo_arch::tsc::rdtsc;
use exo_arch::usercopy::{self, USER_BASE, USER_END};
use exo_percpu::{CpuId, IrqGuard};

ktest!(
    Needs::Cpus,
    "user.timespec_waits_round_up_and_saturate",
    timespec_waits
);
ktest!(
    Needs::Cpus,
    "user.cpu_setup_on_every_cpu",
    cpu_setup_every_cpu
);
ktest!(
    Needs::Cpus,
    "user.paranoid_entry_swaps_gs_in_the_syscall_window",
    paranoid_every_cpu
);
ktest!(
    Needs::Threads,
    "user.usercopy_ranges_and_fixups",
    usercopy_ranges
);
ktest!(Needs::Threads, "user.syscall_abi_on_every_cpu", abi);
ktest!(
    Needs::Threads,
    "user.faults_kill_only_the_thread_on_every_cpu",
    faults
);
ktest!(
    Needs::Threads,
    "user.sysret_guard_kills_on_non_canonical_return",
    edge
);
ktest!(
    Needs::Threads,
    "user.ring3_spinner_is_preempted_on_every_cpu",
    spinner
);
ktest!(
    Needs::Threads,
    "user.syscalls_10000_per_thread_two_threads_per_cpu",
    storm
);
ktest!(
    Needs::Threads,
    "user.segment_selectors_are_per_thread",
    segment_selectors
);

/// A non-canonical address.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
/// The start of the kernel image (supervisor pages; today in PML4 slot 0, below
/// `USER_BASE`; after the upper-half move, above `USER_END`).
fn kernel_image() -> u64 {
    exo_arch::boot::kernel_image().start
}

/// Every CPU, in batches that fit the test slots (with `per_cpu` threads each).
fn cpu_batches(per_cpu: usize) -> Vec<Vec<u32>> {
    let all: Vec<u32> = cpus::online().map(|b| b.hot.cpu_id).collect();
    let n = (testbed::SLOTS / per_cpu).max(1);
    all.chunks(n).map(<[u32]>::to_vec).collect()
}

fn total_fixups() -> u64 {
    cpus::online()
        .map(|b| b.ext.fixups.load(Ordering::Acquire))
        .sum()
}

fn reap(pid: u64) -> Result<Report, String> {
    task::reap(pid).ok_or_else(|| format!("pid {pid}: no record"))
}

/// What each CPU must show: SMEP/SMAP/UMIP on where CPUID offers them, `syscall` enabled
/// with our entry and the other entries into ring 0 closed, and the kernel GS base beside
/// the GDT equal to the CPU's GS block. `reopen` 1: the SYSENTER and compatibility-mode
/// entries are first set as another kernel may leave them, then the CPU's `syscall` set-up
/// is run again (it must close them).
fn cpu_state(reopen: u64) -> u64 {
    let g = IrqGuard::new();
    if reopen == 1 {
        exo_arch::syscall::open_legacy_entries_for_test();
        exo_arch::syscall::init_cpu();
    }
    let f = exo_arch::cpu::detect();
    let cr4 = exo_arch::cpu::read_cr4();
    let mut bad = 0;
    if f.smep && cr4 & exo_arch::cpu::CR4_SMEP == 0 {
        bad |= 1;
    }
    if f.smap && cr4 & exo_arch::cpu::CR4_SMAP == 0 {
        bad |= 2;
    }
    if f.umip && cr4 & exo_arch::cpu::CR4_UMIP == 0 {
        bad |= 4;
    }
    if f.mce && cr4 & exo_arch::cpu::CR4_MCE == 0 {
        bad |= 64;
    }
    if exo_arch::usercopy::SMAP_ON.load(Ordering::Relaxed) != f.smap {
        bad |= 8;
    }
    if !exo_arch::syscall::is_enabled() {
        bad |= 16;
    }
    if !exo_arch::syscall::legacy_entries_closed() {
        bad |= 128;
    }
    let block = core::ptr::from_ref(cpus::this(&g)) as u64;
    if exo_arch::gdt::kernel_gs_base() != Some(block) {
        bad |= 32;
    }
    bad
}

fn cpu_setup_every_cpu(s: &BootState) -> TestResult {
    for b in cpus::online() {
        let c = b.hot.cpu_id;
        for reopen in [0, 1] {
            let bad = cpus::run_on(CpuId(c), cpu_state, reopen, Deadline::after_ms(30_000))
                .map_err(|e| format!("CPU {c}: {e}"))?;
            check(bad == 0, || {
                format!(
                    "CPU {c} (set-up run again over open legacy entries: {reopen}): bad state {bad:#b} (1 SMEP, 2 SMAP, 4 UMIP off; 8 SMAP flag; 16 syscall MSRs; 32 GS base beside the GDT; 64 machine checks off; 128 sysenter or CSTAR open, or a user GS base left in KERNEL_GS_BASE)"
                )
            })?;
        }
    }
    crate::kprintln!(
        "INFO,user,smep,{},smap,{},umip,{},nx,{},mce,{}",
        s.features.smep,
        s.features.smap,
        s.features.umip,
        s.features.nx,
        s.features.mce
    );
    Ok(())
}

/// On the calling CPU: a #DB in ring 0 with the kernel GS, then one with the user GS live
/// (the syscall window); each must reach the handler with the kernel GS (it counts through
/// the per-CPU block) and leave GS as it was. Returns the traps counted (2).
fn paranoid_here(_: u64) -> u64 {
    let me = exo_percpu::cpu_id_hint();
    let t0 = crate::trap::KERNEL_DEBUG_TRAPS.load(Ordering::Relaxed);
    exo_arch::trap::debug_trap_selftest(false);
    exo_arch::trap::debug_trap_selftest(true);
    let t1 = crate::trap::KERNEL_DEBUG_TRAPS.load(Ordering::Relaxed);
    if exo_percpu::cpu_id_hint() != me {
        return u64::MAX;
    }
    t1 - t0
}

fn paranoid_every_cpu(_: &BootState) -> TestResult {
    for b in cpus::online() {
        let c = b.hot.cpu_id;
        let n = cpus::run_on(CpuId(c), paranoid_here, 0, Deadline::after_ms(30_000))
            .map_err(|e| format!("CPU {c}: {e}"))?;
        check(n == 2, || {
            format!("CPU {c}: {n:#x} #DB traps counted with the right GS, want 2")
        })?;
    }
    Ok(())
}

/// The kernel side of user copies: good ranges work; ranges outside user space are refused
/// before any access; unmapped or read-only user pages fault and are fixed up.
fn usercopy_ranges(_: &BootState) -> TestResult {
    testbed::enter()?;
    let slot = Slot::claim()?;
    let d = slot.data();
    let f0 = total_fixups();
    let msg: Vec<u8> = (0..100u8).collect();
    usercopy::copy_to_user(slot.data_end() - 100, &msg).map_err(|_| "copy_to_user faulted")?;
    let mut back = [0u8; 100];
    usercopy::copy_from_user(&mut back, slot.data_end() - 100)
        .map_err(|_| "copy_from_user faulted")?;
    check(back[..] == msg[..], || "copied bytes differ".into())?;
    slot.put(8, 0x1234_5678_9ABC_DEF0)?;
    check(slot.get(8)? == 0x1234_5678_9ABC_DEF0, || {
        "u64 round trip".into()
    })?;
    check(usercopy::read_user_u64(d + 4093).is_ok(), || {
        "an unaligned u64 across two mapped pages faulted".into()
    })?;
    // Refused by the range check: no access, so no fix-up.
    let stack = sched::current_stack().map_or(0xFFFF_C000_0000_1000, |s| s.0);
    let mut buf = [0u8; 64];
    for (what, addr, len) in [
        ("kernel image", kernel_image(), 8),
        ("kernel stack", stack, 8),
        ("non-canonical", NON_CANONICAL, 8),
        ("across the top of user space", USER_END - 32, 64),
        ("across the bottom of user space", USER_BASE - 32, 64),
        ("wrapping around", u64::MAX - 3, 8),
    ] {
        check(
            usercopy::copy_from_user(&mut buf[..len], addr).is_err(),
            || format!("copy_from_user of {what} ({addr:#x}) succeeded"),
        )?;
        check(usercopy::copy_to_user(addr, &buf[..len]).is_err(), || {
            format!("copy_to_user to {what} ({addr:#x}) succeeded")
        })?;
    }
    let f1 = total_fixups();
    check(f1 == f0, || {
        format!("{} fix-ups for refused ranges", f1 - f0)
    })?;
    // Faults fixed up: unmapped guard, a range running into the unmapped page after the data,
    // a write to the read-only code page (CR0.WP applies to the kernel).
    check(
        usercopy::copy_from_user(&mut buf, slot.guard()).is_err(),
        || "read of the unmapped guard page succeeded".into(),
    )?;
    check(
        usercopy::copy_from_user(&mut buf, slot.data_end() - 32).is_err(),
        || "read running into an unmapped page succeeded".into(),
    )?;
    check(
        usercopy::copy_to_user(testbed::CODE_VA, &buf[..8]).is_err(),
        || "write to the read-only code page succeeded".into(),
    )?;
    let f2 = total_fixups();
    check(f2 == f1 + 3, || {
        format!("{} fix-ups for 3 faulting copies", f2 - f1)
    })
}

/// One call for the runner: number, arguments, expected result.
struct Call {
    nr: u64,
    args: [u64; 4],
    want: i64,
}

const RUNNER_EXIT: u64 = 42;

fn runner_calls(slot: &Slot, pid: u64) -> Vec<Call> {
    let buf = slot.data() + 4096;
    let stack = sched::current_stack().map_or(0xFFFF_C000_0000_1000, |s| s.0);
    let e = |e: Errno| e.ret();
    let c = |nr: u64, a: [u64; 4], want: i64| Call { nr, args: a, want };
    let w = nr::WRITE;
    alloc::vec![
        c(nr::GETPID, [0; 4], pid as i64),
        c(w, [1, buf, 64, 0], 64),
        c(w, [2, buf, 0, 0], 0),
        c(w, [1, kernel_image(), 64, 0], e(Errno::Efault)),
        c(w, [1, stack, 8, 0], e(Errno::Efault)),
        c(w, [1, NON_CANONICAL, 8, 0], e(Errno::Efault)),
        c(w, [1, USER_END - 32, 64, 0], e(Errno::Efault)),
        c(w, [1, USER_BASE - 32, 64, 0], e(Errno::Efault)),
        c(w, [1, slot.data_end() - 32, 64, 0], e(Errno::Efault)),
        c(w, [1, slot.guard(), 16, 0], e(Errno::Efault)),
        c(w, [1, buf, u64::MAX, 0], e(Errno::Efault)),
        // A count far above the 64 KiB a call writes, over user memory: a short write (the
        // one whole 256-byte block before the end of the mapping), not EFAULT.
        c(w, [1, slot.data_end() - 256, 1 << 40, 0], 256),
        c(w, [3, buf, 64, 0], e(Errno::Ebadf)),
        c(1000, [1, 2, 3, 4], e(Errno::Enosys)),
        c(u64::MAX, [0; 4], e(Errno::Enosys)),
        c(nr::SCHED_YIELD, [0; 4], 0),
    ]
}

/// Calls that reach a user page fault inside `write` (fixed up): three per runner.
const RUNNER_FIXUPS: u64 = 3;

/// The runner on every CPU at once: every call's result, the registers kept across each,
/// the exit code, the calls counted, the fix-ups taken.
fn abi(_: &BootState) -> TestResult {
    testbed::enter()?;
    let f0 = total_fixups();
    let mut runners = 0u64;
    for batch in cpu_batches(1) {
        let mut started = Vec::new();
        for &c in &batch {
            let slot = Slot::claim()?;
            let (tid, pid, calls) = start_runner(&slot, c)?;
            started.push((c, slot, tid, pid, calls));
        }
        let tids: Vec<Tid> = started.iter().map(|s| s.2).collect();
        let codes = match join_all(&tids, 30_000) {
            Ok(c) => c,
            Err(e) => {
                started.into_iter().for_each(|s| core::mem::forget(s.1));
                return Err(e);
            }
        };
        for ((c, slot, _, pid, calls), code) in started.into_iter().zip(codes) {
            let r = reap(pid)?;
            check(
                code == RUNNER_EXIT && r.death == Some(Death::Exit(RUNNER_EXIT)),
                || format!("CPU {c}: runner ended with {code:#x} ({:?})", r.death),
            )?;
            for (k, call) in calls.iter().enumerate() {
                let base = 64 + 64 * k as u64;
                let got = slot.get(base + 40)? as i64;
                check(got == call.want, || {
                    format!(
                        "CPU {c}: call {k} (nr {}, args {:x?}) returned {got}, want {}",
                        call.nr, call.args, call.want
                    )
                })?;
                check(slot.get(base + 48)? == 1, || {
                    format!(
                        "CPU {c}: call {k} (nr {}) changed a register it must keep (or RCX/R11/DF wrong)",
                        call.nr
                    )
                })?;
            }
            // getpid is answered by the entry stub (no dispatcher): not counted.
            let want = calls.iter().filter(|c| c.nr != nr::GETPID).count() as u64 + 1;
            check(r.syscalls == want, || {
                format!(
                    "CPU {c}: the dispatcher saw {} calls, want {want}",
                    r.syscalls
                )
            })?;
            runners += 1;
        }
    }
    let f1 = total_fixups();
    check(f1 - f0 == RUNNER_FIXUPS * runners, || {
        format!(
            "{} fix-ups, want {} ({runners} runners)",
            f1 - f0,
            RUNNER_FIXUPS * runners
        )
    })
}

fn start_runner(slot: &Slot, cpu: u32) -> Result<(Tid, u64, Vec<Call>), String> {
    // The pid is only known after spawn: the thread starts at once, so the call table must
    // be complete before. The getpid entry's expectation is filled in afterwards.
    let buf = slot.data() + 4096;
    let mut line = format!("USER,cpu {cpu},write of 64 bytes from ring 3 ");
    while line.len() < 63 {
        line.push('.');
    }
    line.truncate(63);
    line.push('\n');
    usercopy::copy_to_user(buf, line.as_bytes()).map_err(|_| "message copy faulted")?;
    // The last 256 bytes of the data pages: one printable line, for a write whose count
    // runs far past them (a short write of this one block).
    let mut tail = format!("USER,cpu {cpu},short write of the last 256 bytes of the data pages ");
    while tail.len() < 255 {
        tail.push('.');
    }
    tail.truncate(255);
    tail.push('\n');
    usercopy::copy_to_user(slot.data_end() - 256, tail.as_bytes())
        .map_err(|_| "message copy faulted")?;
    let calls = runner_calls(slot, 0);
    slot.put(0, calls.len() as u64)?;
    slot.put(8, RUNNER_EXIT)?;
    for (k, call) in calls.iter().enumerate() {
        let base = 64 + 64 * k as u64;
        slot.put(base, call.nr)?;
        for (i, a) in call.args.iter().enumerate() {
            slot.put(base + 8 + 8 * i as u64, *a)?;
        }
    }
    let (tid, pid) = task::spawn(
        testbed::builder()?.pin(cpu),
        testbed::entry(Program::Runner),
        slot.stack_top(),
        slot.data(),
    )
    .map_err(|e| format!("spawn on CPU {cpu}: {e}"))?;
    let mut calls = calls;
    calls[0].want = pid as i64;
    Ok((tid, pid, calls))
}

/// What a fault program must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Killed by `vector` (with this error code when given), at `addr` for a #PF.
    Fault(u8, Option<u64>, Option<u64>),
    /// Not a fault here (e.g. `sgdt` without UMIP): exits with [`SURVIVED`].
    Survives,
    /// One system call, whose return runs off the end of user space: killed by a #PF at
    /// `USER_END` (never a non-canonical return address).
    OffTheEnd,
}

struct Case {
    name: &'static str,
    entry: u64,
    arg: fn(&Slot) -> u64,
    expect: fn(&Slot, &BootState) -> Expect,
}

const PF: u8 = 14;
const GP: u8 = 13;

fn cases() -> Vec<Case> {
    let prog = testbed::entry;
    let k = |name, p, arg, expect| Case {
        name,
        entry: prog(p),
        arg,
        expect,
    };
    alloc::vec![
        k(
            "read of an unmapped user page",
            Program::Read,
            |s: &Slot| s.guard(),
            |s: &Slot, _: &BootState| Expect::Fault(PF, None, Some(s.guard()))
        ),
        k(
            "read of the kernel image",
            Program::Read,
            |_| kernel_image(),
            |_, _| Expect::Fault(PF, None, Some(kernel_image()))
        ),
        k(
            "read of a kernel stack",
            Program::Read,
            |_| kernel_stack(),
            |_, _| Expect::Fault(PF, None, Some(kernel_stack()))
        ),
        k(
            "read of a non-canonical address",
            Program::Read,
            |_| NON_CANONICAL,
            |_, _| Expect::Fault(GP, Some(0), None)
        ),
        k(
            "write to the read-only code page",
            Program::Write,
            |_| testbed::CODE_VA,
            |_, _| Expect::Fault(PF, None, Some(testbed::CODE_VA))
        ),
        k(
            "jump to the kernel image",
            Program::Jump,
            |_| kernel_image(),
            |_, _| Expect::Fault(PF, None, Some(kernel_image()))
        ),
        k(
            "jump to a no-execute data page",
            Program::Jump,
            |s| s.data(),
            |s, st| if st.features.nx {
                Expect::Fault(PF, None, Some(s.data()))
            } else {
                Expect::Fault(PF, None, None)
            }
        ),
        k(
            "jump to a non-canonical address",
            Program::Jump,
            |_| NON_CANONICAL,
            |_, _| Expect::Fault(GP, Some(0), None)
        ),
        k(
            "ud2",
            Program::Ud2,
            |_| 0,
            |_, _| Expect::Fault(6, None, None)
        ),
        k(
            "divide by zero",
            Program::Div0,
            |_| 0,
            |_, _| Expect::Fault(0, None, None)
        ),
        k(
            "int3",
            Program::Int3,
            |_| 0,
            |_, _| Expect::Fault(3, None, None)
        ),
        k(
            "hlt",
            Program::Hlt,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(0), None)
        ),
        k(
            "cli",
            Program::Cli,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(0), None)
        ),
        k(
            "int 0xF2 (the timer's vector)",
            Program::IntTimer,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(0xF2 * 8 + 2), None)
        ),
        k(
            "int 2 (the NMI vector)",
            Program::IntNmi,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(2 * 8 + 2), None)
        ),
        k(
            "rdmsr",
            Program::Rdmsr,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(0), None)
        ),
        k(
            "mov from cr3",
            Program::MovCr3,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(0), None)
        ),
        k(
            "out to a port",
            Program::Out,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(0), None)
        ),
        k(
            "sgdt",
            Program::Sgdt,
            |_| 0,
            |_, st| if st.features.umip {
                Expect::Fault(GP, Some(0), None)
            } else {
                Expect::Survives
            }
        ),
        k(
            "wrgsbase (a base the next program on this CPU would get)",
            Program::WrGsBase,
            |_| 0,
            |_, _| Expect::Fault(6, None, None)
        ),
        k(
            "wrfsbase",
            Program::WrFsBase,
            |_| 0,
            |_, _| Expect::Fault(6, None, None)
        ),
        k(
            "load of the kernel data selector",
            Program::KernelDs,
            |_| 0,
            |_, _| Expect::Fault(GP, Some(0x10), None)
        ),
        k(
            "stack overflow",
            Program::PushForever,
            |_| 0,
            |s, _| Expect::Fault(PF, None, Some(s.guard() + 4096 - 8))
        ),
        k(
            "syscall with TF set",
            Program::TfSyscall,
            |_| 0,
            |_, _| Expect::Fault(1, None, None)
        ),
        // Off the end of user space is a #PF at `USER_END`, in ring 3: never a
        // non-canonical return address (the `sysretq` exits check for one all the same).
        Case {
            name: "syscall in the last bytes of user space",
            entry: EDGE_ENTRY,
            arg: |_| 0,
            expect: |_, _| Expect::OffTheEnd
        },
        Case {
            name: "ipc_call in the last bytes of user space",
            entry: EDGE_IPC_ENTRY,
            arg: |_| 0,
            expect: |_, _| Expect::OffTheEnd
        },
    ]
}

fn kernel_stack() -> u64 {
    sched::current_stack().map_or(0xFFFF_C000_0000_1000, |s| s.0)
}

/// Runs `case` on every CPU at once; checks each thread's death.
fn run_case(case: &Case, st: &BootState) -> TestResult {
    for batch in cpu_batches(1) {
        let mut started = Vec::new();
        for &c in &batch {
            let slot = Slot::claim()?;
            let (tid, pid) = task::spawn(
                testbed::builder()?.pin(c),
                case.entry,
                slot.stack_top(),
                (case.arg)(&slot),
            )
            .map_err(|e| format!("{}: spawn on CPU {c}: {e}", case.name))?;
            started.push((c, slot, tid, pid));
        }
        let tids: Vec<Tid> = started.iter().map(|s| s.2).collect();
        let codes = match join_all(&tids, 20_000) {
            Ok(c) => c,
            Err(e) => {
                started.into_iter().for_each(|s| core::mem::forget(s.1));
                return Err(format!("{}: {e}", case.name));
            }
        };
        for ((c, slot, _, pid), code) in started.into_iter().zip(codes) {
            let r = reap(pid)?;
            let want = (case.expect)(&slot, st);
            let ok = match (want, r.death) {
                (Expect::Fault(v, err, addr), Some(Death::Fault(f))) => {
                    code == KILLED
                        && f.vector == v
                        && err.is_none_or(|e| e == f.error_code)
                        && addr.is_none_or(|a| a == f.addr)
                }
                (Expect::Survives, Some(Death::Exit(SURVIVED))) => code == SURVIVED,
                (Expect::OffTheEnd, Some(Death::Fault(f))) => {
                    code == KILLED && f.vector == PF && f.addr == USER_END
                }
                _ => false,
            };
            check(ok, || {
                format!(
                    "{} on CPU {c} (pid {pid}): want {want:x?}, got exit {code:#x}, {:x?}",
                    case.name, r.death
                )
            })?;
            let calls = match want {
                Expect::Fault(1, ..) | Expect::OffTheEnd | Expect::Survives => 1,
                _ => 0,
            };
            check(r.syscalls == calls, || {
                format!(
                    "{} on CPU {c}: {} system calls counted, want {calls}",
                    case.name, r.syscalls
                )
            })?;
        }
    }
    Ok(())
}

/// Each fault from ring 3 on every CPU: only the faulting thread dies (with the right
/// reason), the kernel and the test go on, and no thread is left behind.
fn faults(st: &BootState) -> TestResult {
    testbed::enter()?;
    let before = sched::live_threads();
    for case in cases()
        .iter()
        .filter(|c| c.entry != EDGE_ENTRY && c.entry != EDGE_IPC_ENTRY)
    {
        run_case(case, st)?;
    }
    let after = sched::live_threads();
    check(after == before, || {
        format!("{before} threads alive before, {after} after")
    })
}

/// A `syscall` whose return address is the first non-canonical address: the thread is
/// killed at the exit check (never `sysretq` with a non-canonical RCX), from the common
/// entry and from the IPC entry (its own frame and exit).
fn edge(st: &BootState) -> TestResult {
    testbed::enter()?;
    let cases = cases();
    for entry in [EDGE_ENTRY, EDGE_IPC_ENTRY] {
        let case = cases
            .iter()
            .find(|c| c.entry == entry)
            .ok_or("no edge case")?;
        run_case(case, st)?;
    }
    Ok(())
}

/// The kernel thread beside a spinner: once the spinner has started, sets its stop flag
/// (it runs only if a timer interrupt preempts the spinner in ring 3).
fn setter(data: u64) -> u64 {
    let deadline = rdtsc() + ms(60_000);
    loop {
        if usercopy::read_user_u64(data + 24) == Ok(1) {
            return u64::from(usercopy::write_user_u64(data, 1).is_err());
        }
        if rdtsc() > deadline {
            return 2;
        }
        sched::yield_now();
    }
}

/// A ring-3 spinner on every CPU, each with a kernel thread on its CPU that can only run
/// if the timer preempts the spinner in ring 3 (the interrupt path's `swapgs` from ring 3,
/// the switch away from a thread in user mode and back). Wake-up preemption is held off
/// meanwhile: the kernel thread's spawn is a wake-up on the spinner's CPU, which would
/// otherwise preempt the spinner once it has run a quarter slice, not the timer.
fn spinner(s: &BootState) -> TestResult {
    sched::hold_wake_preemption(true);
    let r = spinner_preempted_by_the_tick(s);
    sched::hold_wake_preemption(false);
    r
}

fn spinner_preempted_by_the_tick(s: &BootState) -> TestResult {
    testbed::enter()?;
    if s.opts.mode == Some(smp_bench::Mode::Icount) || sched::timer_mode() == "off" {
        return Err(format!(
            "{SKIP}no scheduler timer in this mode ({})",
            sched::timer_mode()
        ));
    }
    let u0 = crate::trap::USER_INTERRUPTS.load(Ordering::Relaxed);
    let (_, p0, _, _) = sched::counters();
    let mut n = 0;
    // 16 spinners at a time, and a spin limit that grows with the CPU count: at -smp 288
    // under TCG on two host cores, 64 spinners at once with 15 s each were too slow to see
    // one tick each (a host-speed failure, not a kernel one).
    let spin_ms = 15_000 + 100 * u64::from(ncpus());
    for batch in cpu_batches(4) {
        let mut started = Vec::new();
        for &c in &batch {
            let slot = Slot::claim()?;
            slot.put(8, ms(spin_ms))?;
            let (tid, pid) = task::spawn(
                testbed::builder()?.pin(c),
                testbed::entry(Program::Spinner),
                slot.stack_top(),
                slot.data(),
            )
            .map_err(|e| format!("spawn spinner on CPU {c}: {e}"))?;
            let k = testbed::builder()?
                .pin(c)
                .spawn(setter, slot.data())
                .map_err(|e| format!("spawn setter on CPU {c}: {e}"))?;
            started.push((c, slot, tid, pid, k));
        }
        let tids: Vec<Tid> = started.iter().flat_map(|s| [s.2, s.4]).collect();
        let codes = match join_all(&tids, spin_ms + 30_000) {
            Ok(c) => c,
            Err(e) => {
                started.into_iter().for_each(|s| core::mem::forget(s.1));
                return Err(e);
            }
        };
        for (k, (c, slot, _, pid, _)) in started.into_iter().enumerate() {
            let r = reap(pid)?;
            let (spin, set) = (codes[2 * k], codes[2 * k + 1]);
            check(spin == 0 && set == 0, || {
                format!(
                    "CPU {c}: spinner exit {spin} ({:?}, {} spins), setter {set}: not preempted in ring 3",
                    r.death,
                    slot.get(16).unwrap_or(0)
                )
            })?;
            n += 1;
        }
    }
    let u1 = crate::trap::USER_INTERRUPTS.load(Ordering::Relaxed);
    let (_, p1, _, _) = sched::counters();
    check(u1 > u0 && p1 >= p0 + n, || {
        format!(
            "{} interrupts from ring 3, {} preemptions for {n} spinners",
            u1 - u0,
            p1 - p0
        )
    })
}

const STORM: u64 = 10_000;

/// Two ring-3 threads per CPU, all CPUs at once, each making 10,000 getpid calls (checking
/// every answer and its XMM0 across them) with a sched_yield every 64: user threads switch
/// among themselves on every CPU.
fn storm(_: &BootState) -> TestResult {
    testbed::enter()?;
    let mut total = 0u64;
    for batch in cpu_batches(2) {
        let mut started = Vec::new();
        for &c in &batch {
            for _ in 0..2 {
                let slot = Slot::claim()?;
                slot.put(0, STORM)?;
                let (tid, pid) = task::spawn(
                    testbed::builder()?.pin(c),
                    testbed::entry(Program::Storm),
                    slot.stack_top(),
                    slot.data(),
                )
                .map_err(|e| format!("spawn on CPU {c}: {e}"))?;
                started.push((c, slot, tid, pid));
            }
        }
        let tids: Vec<Tid> = started.iter().map(|s| s.2).collect();
        let codes = match join_all(&tids, 120_000) {
            Ok(c) => c,
            Err(e) => {
                started.into_iter().for_each(|s| core::mem::forget(s.1));
                return Err(e);
            }
        };
        for ((c, slot, _, pid), code) in started.into_iter().zip(codes) {
            let r = reap(pid)?;
            let (first, good, bad) = (slot.get(8)?, slot.get(16)?, slot.get(24)?);
            check(
                code == 0 && first == pid && good == STORM && bad == 0,
                || {
                    format!(
                        "CPU {c} pid {pid}: exit {code:#x} ({:?}), getpid gave {first} then {good} right, {bad} wrong",
                        r.death
                    )
                },
            )?;
            // The getpid calls (1 + STORM) take the entry stub's fast path: the dispatcher
            // sees the yields and the exit; every getpid answer was checked above.
            let want = STORM / 64 + 1;
            check(r.syscalls == want, || {
                format!(
                    "CPU {c} pid {pid}: {} calls counted, want {want}",
                    r.syscalls
                )
            })?;
            total += r.syscalls;
        }
    }
    crate::kprintln!("INFO,user,storm,syscalls,{total},cpus,{}", ncpus());
    Ok(())
}

/// What the first thread of [`segment_selectors_on`] loads into DS, ES, FS and GS: the user
/// code and data selectors with RPL 3 and 0, and null selectors with a nonzero RPL (in FS
/// and GS: an IRETQ may null one in DS or ES, the CPU's doing, not the kernel's). Both
/// kinds in GS, whose load in the switch needs the `swapgs` window.
const SEG_SETS: [[u16; 4]; 2] = [[0x2B, 0x20, 0x23, 3], [0x23, 0x2B, 1, 0x28]];

/// Data-segment selectors are per thread (`sched::cpu::switch_selectors`): on one CPU a
/// user thread loads its own into DS, ES, FS and GS and waits, then a second user thread
/// starts there and must find the null ones (until 2026-12-06 it found the first's: nothing
/// saved or reset them), then the first must find its own again, both with FS and GS bases
/// still 0; a kernel thread started there last must run with null selectors and the FS and
/// user GS bases 0. The first waits with a `sched_yield` per round (switched out inside a
/// system call, back through SYSRET) and, with a scheduler timer, spinning in ring 3 (only
/// an interrupt switches it out; back through IRETQ). The order is forced: the second
/// starts once the first has reported its load, and the first reads its selectors only
/// after the second has ended. On CPU 0 and the last CPU, every set of [`SEG_SETS`].
fn segment_selectors(s: &BootState) -> TestResult {
    testbed::enter()?;
    let timer = s.opts.mode != Some(smp_bench::Mode::Icount) && sched::timer_mode() != "off";
    let last = cpus::online().map(|b| b.hot.cpu_id).max().unwrap_or(0);
    let mut on = alloc::vec![0];
    if last != 0 {
        on.push(last);
    }
    let mut rounds = 0;
    for &c in &on {
        for (k, set) in SEG_SETS.iter().enumerate() {
            for spin in [false, true] {
                if spin && !timer {
                    continue;
                }
                let how = if spin { "spinning" } else { "yielding" };
                segment_selectors_on(c, set, spin)
                    .map_err(|e| format!("CPU {c}, set {k} {set:x?}, first thread {how}: {e}"))?;
                rounds += 1;
            }
        }
    }
    crate::kprintln!("INFO,user,segment_selectors,rounds,{rounds},spinning,{timer}");
    Ok(())
}

/// DS, ES, FS and GS as a [`Program::Segs`] thread read them, from its slot.
fn read_segs(slot: &Slot) -> Result<[u16; 4], String> {
    let mut got = [0u16; 4];
    for (i, g) in got.iter_mut().enumerate() {
        *g = slot.get(72 + 8 * i as u64)? as u16;
    }
    Ok(got)
}

/// One round of [`segment_selectors`] on CPU `c`.
fn segment_selectors_on(c: u32, set: &[u16; 4], spin: bool) -> TestResult {
    let wait_ms = 30_000 + 100 * u64::from(ncpus());
    let first = Slot::claim()?;
    for (i, v) in set.iter().enumerate() {
        first.put(8 * i as u64, u64::from(*v))?;
    }
    first.put(32, 1)?;
    first.put(40, ms(wait_ms))?;
    first.put(64, u64::from(spin))?;
    let (ta, pa) = task::spawn(
        testbed::builder()?.pin(c),
        testbed::entry(Program::Segs),
        first.stack_top(),
        first.data(),
    )
    .map_err(|e| format!("spawn the first thread: {e}"))?;
    // From here on the first thread may use its slot until it ends: on an error, the slot
    // is kept (forgotten), as elsewhere.
    let r = segment_selectors_second(c, &first, wait_ms).and_then(|()| {
        first.put(48, 1)?;
        let code = join_all(&[ta], wait_ms + 30_000)?[0];
        let r = reap(pa)?;
        let got = read_segs(&first)?;
        check(
            code == 0 && r.death == Some(Death::Exit(0)) && first.get(104)? == 1,
            || {
                format!(
                    "first thread: exit {code:#x} ({:?}), FS and GS bases 0: {}",
                    r.death,
                    first.get(104).unwrap_or(0)
                )
            },
        )?;
        check(got == *set, || {
            format!("the first thread found {got:x?} when it ran again, want its own")
        })
    });
    if r.is_err() {
        core::mem::forget(first);
        return r;
    }
    let k = crate::sched::Builder::new()
        .pin(c)
        .spawn(kernel_selectors, 0)
        .map_err(|e| format!("spawn the kernel thread: {e}"))?;
    let got = join_all(&[k], 30_000)?[0];
    check(got == 0, || {
        format!(
            "a kernel thread started after them runs with selectors {:x?} (DS, ES, FS, GS; {:#x}: an FS or user GS base not 0)",
            exo_arch::segs::unpack(got as u32),
            u64::MAX
        )
    })
}

/// The second thread of [`segment_selectors_on`]: started on CPU `c` once the first has
/// loaded its selectors (its slot's flag), it must read the null ones and bases 0.
fn segment_selectors_second(c: u32, first: &Slot, wait_ms: u64) -> TestResult {
    let deadline = rdtsc() + ms(wait_ms);
    while first.get(56)? == 0 {
        if rdtsc() > deadline {
            return Err("the first thread never reported its selectors loaded".into());
        }
        sched::yield_now();
    }
    let second = Slot::claim()?;
    second.put(48, 1)?;
    let (tb, pb) = task::spawn(
        testbed::builder()?.pin(c),
        testbed::entry(Program::Segs),
        second.stack_top(),
        second.data(),
    )
    .map_err(|e| format!("spawn the second thread: {e}"))?;
    let code = match join_all(&[tb], wait_ms) {
        Ok(c) => c[0],
        Err(e) => {
            core::mem::forget(second);
            return Err(e);
        }
    };
    let r = reap(pb)?;
    let got = read_segs(&second)?;
    check(
        code == 0 && r.death == Some(Death::Exit(0)) && second.get(104)? == 1,
        || {
            format!(
                "second thread: exit {code:#x} ({:?}), FS and GS bases 0: {}",
                r.death,
                second.get(104).unwrap_or(0)
            )
        },
    )?;
    check(got == [0; 4], || {
        format!(
            "the second thread started with selectors {got:x?}, want the null ones (the first thread's leaked)"
        )
    })
}

/// A kernel thread's selectors (packed), or `u64::MAX` when the FS base or the user GS
/// base is not 0.
fn kernel_selectors(_: u64) -> u64 {
    let _g = IrqGuard::new();
    if exo_arch::segs::bases() != (0, 0) {
        return u64::MAX;
    }
    u64::from(exo_arch::segs::live())
}

/// The timeouts of `nanosleep` and `futex` (`timespec_to_ticks`): rounded up to the next
/// tick (a wait never ends before the time asked), long ones saturate instead of being
/// refused, negative fields and `tv_nsec >= 10^9` are `EINVAL`. Until 2026-12-05 999 ns
/// was 0 ticks, the rate was rounded down to whole MHz (2.4999 GHz: 2499 ticks a
/// microsecond) and `tv_sec` above 2^32 was `EINVAL`.
fn timespec_waits(_: &BootState) -> TestResult {
    use super::syscall::timespec_to_ticks as t;
    let hz = 2_499_900_000;
    let cases: [((i64, i64), Result<u64, Errno>); 9] = [
        ((0, 999), Ok(2498)),
        ((0, 1), Ok(3)),
        ((100, 0), Ok(249_990_000_000)),
        ((1 << 32, 0), Ok((1u64 << 32) * hz)),
        ((1 << 40, 0), Ok(u64::MAX)),
        ((i64::MAX, 999_999_999), Ok(u64::MAX)),
        ((-1, 0), Err(Errno::Einval)),
        ((0, -1), Err(Errno::Einval)),
        ((0, 1_000_000_000), Err(Errno::Einval)),
    ];
    let bad: Vec<_> = cases
        .iter()
        .filter(|&&((s, n), want)| t(s, n, hz) != want)
        .map(|&((s, n), want)| format!("{{{s}, {n}}}: {:?}, want {want:?}", t(s, n, hz)))
        .collect();
    check(bad.is_empty(), || format!("{bad:?}"))
}
