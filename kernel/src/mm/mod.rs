//! Memory: the physical frame allocator and per-CPU caches (`kalloc`, the global heap), the
//! kernel page tables built at boot and guarded kernel stacks (`memory`).
//!
//! Calls down only: `sys` (raw memory), `console`, the `exo-mm` algorithms and `percpu`.

pub mod kalloc;
pub mod memory;

mod bench;
mod tests;
mod tests_oom;
