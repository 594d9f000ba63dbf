//! Memory: the physical frame allocator and per-CPU caches (`kalloc`, the global heap), the
//! kernel page tables built at boot and guarded kernel stacks (`memory`), and the page-table
//! roots of user address spaces with their PCIDs (`space`); the commit accounting of
//! user memory with the kernel's reserve and the per-process limit (`commit`).
//!
//! Calls down only: `sys` (raw memory), `console`, the `exo-mm` algorithms and `percpu`.

pub mod commit;
pub mod kalloc;
pub mod memory;
pub mod space;

mod bench;
pub(crate) mod tests;
mod tests_bench;
mod tests_commit;
mod tests_oom;
