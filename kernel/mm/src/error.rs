//! Error types of the memory algorithms.

use core::fmt;

/// Errors reported by the memory algorithms. None of them leaves the
/// structure that reported it modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmError {
    /// No free block of the requested order (nor any larger one to split).
    OutOfMemory,
    /// The order is larger than [`crate::MAX_ORDER`].
    InvalidOrder {
        /// The rejected order.
        order: usize,
    },
    /// The address is not aligned to the size of a block of that order.
    Misaligned {
        /// The rejected address.
        addr: u64,
        /// The order whose alignment it lacks.
        order: usize,
    },
    /// The address lies outside the allocator's span.
    OutOfSpan {
        /// The rejected address.
        addr: u64,
    },
    /// The block being freed is (at least in part) already free.
    DoubleFree {
        /// The rejected address.
        addr: u64,
    },
    /// No live allocation of this order starts at this address: wrong order,
    /// a reserved frame, a hole, or a block that was freed and then partly
    /// reallocated.
    NotAllocated {
        /// The rejected address.
        addr: u64,
        /// The order given to `free`.
        order: usize,
    },
    /// A range with `start > end`.
    InvalidRange {
        /// Start of the rejected range.
        start: u64,
        /// End (exclusive) of the rejected range.
        end: u64,
    },
    /// The range holds allocated frames, so it cannot be reserved or freed
    /// wholesale.
    RangeInUse {
        /// Start of the rejected range.
        start: u64,
        /// End (exclusive) of the rejected range.
        end: u64,
    },
    /// The span is unusable: base not 4 KiB aligned, end overflows `u64`, or
    /// more than [`crate::MAX_SPAN_FRAMES`] frames.
    InvalidSpan {
        /// Requested base physical address.
        base: u64,
        /// Requested number of frames.
        n_frames: u64,
    },
    /// The bitmap storage is shorter than the span needs.
    StorageTooSmall {
        /// Words the span needs.
        needed: usize,
        /// Words provided.
        provided: usize,
    },
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfMemory => f.write_str("out of memory"),
            Self::InvalidOrder { order } => write!(f, "invalid order {order}"),
            Self::Misaligned { addr, order } => {
                write!(f, "address {addr:#x} is not aligned for order {order}")
            }
            Self::OutOfSpan { addr } => write!(f, "address {addr:#x} is outside the span"),
            Self::DoubleFree { addr } => write!(f, "double free of {addr:#x}"),
            Self::NotAllocated { addr, order } => {
                write!(f, "no live order-{order} allocation at {addr:#x}")
            }
            Self::InvalidRange { start, end } => {
                write!(f, "invalid range {start:#x}..{end:#x}")
            }
            Self::RangeInUse { start, end } => {
                write!(f, "range {start:#x}..{end:#x} holds allocated frames")
            }
            Self::InvalidSpan { base, n_frames } => {
                write!(f, "invalid span: base {base:#x}, {n_frames} frames")
            }
            Self::StorageTooSmall { needed, provided } => {
                write!(
                    f,
                    "bitmap storage too small: {provided} words, {needed} needed"
                )
            }
        }
    }
}

impl core::error::Error for MmError {}

/// Error of [`crate::Buddy::free_batch`]: entries before `index` were freed,
/// the entry at `index` and those after it were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchFreeError {
    /// Index of the first entry that could not be freed.
    pub index: usize,
    /// Why it could not be freed.
    pub error: MmError,
}

impl fmt::Display for BatchFreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch free stopped at entry {}: {}",
            self.index, self.error
        )
    }
}

impl core::error::Error for BatchFreeError {}
