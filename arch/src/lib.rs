//! x86_64 mechanisms for Exo-OS, no policy: boot entry (PVH), descriptor tables, trap entry,
//! ring-3 entry and exit (`syscall`) and user-memory access (`usercopy`), the local APIC,
//! TSC, paging, the AP trampoline, serial console and QEMU exit.
//!
//! Most of the project's `unsafe` lives here; each block says why it is sound.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod apic;
pub mod backtrace;
#[cfg(target_os = "none")]
pub mod boot;
pub mod context;
pub mod cpu;
pub mod exit;
pub mod fpu;
pub mod gdt;
pub mod layout;
pub mod mce;
pub mod paging;
pub mod port;
pub mod pvh;
pub mod segs;
pub mod serial;
#[cfg(target_os = "none")]
pub mod smp;
pub mod syscall;
pub mod tlb;
#[cfg(target_os = "none")]
pub mod trap;
pub mod tsc;
pub mod usercopy;
