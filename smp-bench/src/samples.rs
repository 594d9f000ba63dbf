//! Fixed-capacity sample buffer.

use core::fmt;

use crate::stats::{Stats, stats_of};

/// Up to `N` samples (ticks) in an inline array: no allocation, usable in the kernel.
///
/// `N * 8` bytes live wherever the `Samples` lives; in the kernel prefer a `static` or a
/// per-CPU buffer over a large stack array.
#[derive(Clone)]
pub struct Samples<const N: usize> {
    buf: [u64; N],
    len: usize,
}

impl<const N: usize> Samples<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends a sample; returns `false` (and drops it) when the buffer is full.
    pub fn push(&mut self, ticks: u64) -> bool {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = ticks;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Number of samples held.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// `true` when no sample is held.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `true` when [`push`](Self::push) would drop the next sample.
    pub const fn is_full(&self) -> bool {
        self.len == N
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The samples held (in insertion order until [`stats`](Self::stats) reorders them).
    pub fn as_slice(&self) -> &[u64] {
        &self.buf[..self.len]
    }

    /// Summary statistics with `overhead` subtracted from every sample (saturating at 0);
    /// `None` when empty. Reorders the samples (selection is done in place).
    pub fn stats(&mut self, overhead: u64) -> Option<Stats> {
        stats_of(&mut self.buf[..self.len], overhead)
    }
}

impl<const N: usize> Default for Samples<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for Samples<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Samples")
            .field("len", &self.len)
            .field("capacity", &N)
            .finish()
    }
}
