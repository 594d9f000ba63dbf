//! User mode: address spaces (`aspace`: committed anonymous mappings, protection changes and
//! unmapping with TLB shootdowns), the initrd (`initrd`), the ELF loader (`loader`), and, as
//! they arrive, entry and exit, the system-call table and the process table.
//!
//! Calls down only: `sched` (threads run in a space), `smp` (shootdowns), `mm` (frames,
//! page-table roots).

pub mod aspace;
pub mod initrd;
pub mod loader;

mod tests;
