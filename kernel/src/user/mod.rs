//! User mode: address spaces (`aspace`: committed anonymous mappings, protection changes and
//! unmapping with TLB shootdowns), and, as they arrive, entry and exit, the system-call table,
//! the ELF loader and the process table.
//!
//! Calls down only: `sched` (threads run in a space), `smp` (shootdowns), `mm` (frames,
//! page-table roots).

pub mod aspace;

mod tests;
