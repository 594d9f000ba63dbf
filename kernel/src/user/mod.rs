//! User mode. Address spaces (`aspace`: committed anonymous mappings, eager or demand-zero, protection changes and
//! unmapping with TLB shootdowns), the initrd (`initrd`) and the ELF loader (`loader`); the
//! system-call table and its dispatcher (`syscall`); user threads with their ids, accounting
//! and deaths (`task`: a ring-3 fault or a bad return kills the thread with one
//! `PROC,<pid>,killed,<why>` line, never the kernel); the ring-3 test bed (`testbed`,
//! `programs`: hand-assembled programs in one shared test address space).
//!
//! The mechanism (GDT layout, SYSCALL MSRs and entry stub, `enter_user`, the paranoid GS
//! rule, user copies with fix-ups) lives in `exo_arch::{gdt, syscall, trap, usercopy}`; this
//! folder is the kernel's policy on top of it.
//!
//! The IPC system calls (`ipc`) use the `ipc` subsystem through each process's handle table.
//! Each process tree has a share of the process, thread, endpoint and region tables
//! (`limits`).
//!
//! Calls down only: `ipc` (endpoints, handle tables), `trap` (installs the user-fault and demand-fault hooks), `sched` (threads, pids, entering
//! ring 3, exit), `smp` (shootdowns), `mm` (frames, page-table roots), `console`.

pub mod aspace;
pub mod futex;
pub mod initrd;
pub mod ipc;
pub mod limits;
pub mod loader;
pub mod process;
pub mod programs;
pub mod shm;
pub mod syscall;
pub mod task;
pub mod testbed;

mod bench;
mod tests;
mod tests_aspace;
mod tests_commit;
mod tests_console;
mod tests_futex;
mod tests_ipc;
mod tests_lazy;
mod tests_life;
mod tests_limits;

/// Installs the system-call dispatcher and the ring-3 fault hooks (BSP, once, before any
/// CPU enables `syscall` and any thread enters ring 3).
pub fn init() {
    exo_arch::syscall::set_handlers(syscall::dispatch, ipc::dispatch, task::bad_return);
    crate::ipc::set_abort_hook(process::dying);
    crate::ipc::set_charges(crate::ipc::Charges {
        charge: limits::charge_endpoint,
        release: limits::release_endpoint,
    });
    crate::trap::set_user_fault_hook(task::user_fault);
    crate::trap::set_demand_fault_hook(task::demand_fault);
    crate::trap::set_user_return_hook(process::on_user_return);
}
