//! Exo-OS: the bootable kernel `exo`. Boots by PVH, brings every CPU online from the ACPI
//! MADT, then runs the job named on the command line (`exo.job=boot|test|bench|contended`).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod bench;
mod bench_sched;
mod boot;
mod cmdline;
mod console;
mod cpus;
mod faults;
mod fpu;
mod kalloc;
mod ktest;
mod ktest_oom;
mod ktest_sched;
mod locks;
mod memory;
mod panic;
mod park;
mod sched;
mod smp;
mod sys;
mod time;
mod timer;
mod traps;
mod tsc_sync;
