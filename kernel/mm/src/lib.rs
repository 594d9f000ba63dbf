//! Exo-OS memory-management algorithms, free of `unsafe` and of any hardware
//! access, so that they can be tested on the host.
//!
//! * [`Buddy`]: a bitmap buddy allocator for the 4 KiB physical frames of one
//!   contiguous span, with its whole state in a caller-provided `&mut [u64]`.
//! * [`SizeClass`] / [`class_for`]: the small-object size classes of the slab
//!   layer and the address arithmetic it needs.
//! * [`Magazine`]: a fixed-capacity LIFO of addresses for per-CPU caches (the native
//!   benchmarks' model; the kernel's per-CPU caches are `exo_percpu::cache`: 63 slots,
//!   batches of 32).
//! * [`chain`]: a pool's chain of free objects sorted in place, and the slabs whose objects
//!   are all on it taken out (their frames go back to the buddy when memory runs out).
//!
//! The kernel wires these to real memory: it carves the buddy's bitmap words
//! from boot memory, wraps the buddy and the pools in their own locks, and
//! turns the returned physical addresses into pointers.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod buddy;
pub mod chain;
mod error;
mod magazine;
mod size_class;

pub use buddy::{Buddy, BuddyStats, FrameState, MAX_ORDER, MAX_SPAN_FRAMES, ORDERS};
pub use error::{BatchFreeError, MmError};
pub use magazine::Magazine;
pub use size_class::{CLASS_SIZES, MAX_SMALL_SIZE, SizeClass, class_for, page_order_for};

/// log2 of [`FRAME_SIZE`].
pub const FRAME_SHIFT: u32 = 12;
/// Size of one physical frame (the buddy's order-0 block): 4 KiB.
pub const FRAME_SIZE: u64 = 1 << FRAME_SHIFT;
