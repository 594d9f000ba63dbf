//! Exo-OS: the bootable kernel `exo`. Boots by PVH, brings every CPU online from the ACPI
//! MADT, then runs the job named on the command line (`exo.job=boot|test|bench|contended`).
//!
//! Subsystems, lowest first; each may call the ones listed before it, never after it
//! (an upward call goes through a hook the higher subsystem installs):
//!
//! | module      | owns                                                                    |
//! |-------------|-------------------------------------------------------------------------|
//! | [`sys`]     | the audited raw-memory leaf (no kernel imports)                          |
//! | [`console`] | `kprintln!`, the `log` backend, the per-CPU rings behind user `write`    |
//! | [`mm`]      | physical frames, kernel page tables, guarded stacks, the heap (kalloc)  |
//! | [`smp`]     | the CPU table, run-on-CPU mailboxes, AP bring-up, TSC sync, time, timer |
//! | [`sched`]   | threads, run queues, the switch, idle and stealing, FPU, parking locks  |
//! | [`trap`]    | exception and interrupt handlers, the panic stop-all                    |
//! | [`dev`]     | PCI (ECAM, ports), virtio transports, the virtio-net driver             |
//! | [`ipc`]     | endpoints, messages, handle tables, the call/reply fastpath             |
//! | [`user`]    | user mode: address spaces, initrd, loader, ring-3 entry, syscall table   |
//! | [`boot`]    | the command line, the boot flow (every CPU up), the `boot` job's report |
//! | [`harness`] | the jobs: `ktest!`/`kbench!` registries, the test and bench runners     |
//!
//! `scripts/check-layers.sh` (run by CI) fails on an upward `crate::` path. Kernel tests and
//! bench rows sit beside the code they exercise (`<subsystem>/tests.rs`,
//! `<subsystem>/bench.rs`) and register themselves with `ktest!` / `kbench!`.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod console;
mod sys;

mod mm;
mod smp;

mod sched;
mod trap;

mod dev;

mod ipc;
mod user;

mod boot;

mod harness;

/// The BSP's entry from the PVH boot code (`call exo_bsp_main` with the start_info address):
/// bring the machine up, then run the job.
#[allow(
    unsafe_code,
    reason = "no_mangle: the symbol the assembly boot code calls"
)]
#[unsafe(no_mangle)]
extern "C" fn exo_bsp_main(start_info: u64) -> ! {
    let state = boot::bsp_main(start_info);
    harness::run(&state)
}
