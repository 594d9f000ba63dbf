//! The CPUs: the CPU table and each CPU's run-on-CPU mailbox (`cpus`), application
//! processor bring-up from the MADT (`bringup`), the TSC offset check (`tsc_sync`), TSC time
//! and deadlines (`time`), the local APIC timer (`timer`) and TLB shootdowns (`tlb`).
//!
//! Calls down only: `mm`, `sys`, `console`. The scheduler sits above: it finds its per-CPU
//! state through its own GS slot and its own table, and runs the idle loop itself.

pub mod bringup;
pub mod cpus;
pub mod time;
pub mod timer;
pub mod tlb;
pub mod tsc_sync;

mod bench;
mod tests;
