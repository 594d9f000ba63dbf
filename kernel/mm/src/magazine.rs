//! Fixed-capacity LIFO of addresses for per-CPU caches.

use core::fmt;

/// A LIFO stack of up to `N` addresses (frames or objects): the per-CPU
/// cache in front of the buddy or a slab. Pure data, no atomics: the owner
/// (one CPU, interrupts off or preemption disabled) serialises access.
///
/// Policy: allocate with [`pop`](Self::pop); when empty, fetch
/// [`refill_count`](Self::refill_count) entries in one batch and
/// [`fill_from`](Self::fill_from) them. Free with [`push`](Self::push); when it
/// is full (the high-water mark, [`HIGH_WATER`](Self::HIGH_WATER) = `N`), hand
/// [`drain_count`](Self::drain_count) entries back with
/// [`take_batch`](Self::take_batch). Both bring the level back to
/// [`TARGET`](Self::TARGET) = `N / 2`, so alternating alloc/free around a
/// boundary never bounces on the shared allocator.
#[derive(Clone)]
pub struct Magazine<const N: usize> {
    len: usize,
    slots: [u64; N],
}

impl<const N: usize> Magazine<N> {
    /// Level at which a push must first drain: the capacity.
    pub const HIGH_WATER: usize = N;
    /// Level a refill or a drain brings the magazine back to.
    pub const TARGET: usize = N / 2;

    /// An empty magazine. `N` must be at least 2 (checked at compile time).
    pub const fn new() -> Self {
        const { assert!(N >= 2, "a magazine needs room for at least 2 entries") };
        Self {
            len: 0,
            slots: [0; N],
        }
    }

    /// Entries held.
    #[inline(always)]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Capacity `N`.
    #[inline(always)]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Whether no entry is held.
    #[inline(always)]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `N` entries are held (a push would fail).
    #[inline(always)]
    pub const fn is_full(&self) -> bool {
        self.len == N
    }

    /// Pushes `addr` on top; gives it back when the magazine is full.
    ///
    /// # Errors
    ///
    /// `Err(addr)` when full: drain first.
    #[inline(always)]
    pub fn push(&mut self, addr: u64) -> Result<(), u64> {
        if let Some(slot) = self.slots.get_mut(self.len) {
            *slot = addr;
            self.len += 1;
            Ok(())
        } else {
            Err(addr)
        }
    }

    /// Pops the most recently pushed (cache-hottest) entry.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<u64> {
        let i = self.len.checked_sub(1)?;
        self.len = i;
        self.slots.get(i).copied()
    }

    /// Entries to fetch to reach [`TARGET`](Self::TARGET) (0 if at or above).
    #[inline(always)]
    pub const fn refill_count(&self) -> usize {
        Self::TARGET.saturating_sub(self.len)
    }

    /// Entries to give back to come down to [`TARGET`](Self::TARGET) (0 if
    /// at or below; `N - N/2` when full).
    #[inline(always)]
    pub const fn drain_count(&self) -> usize {
        self.len.saturating_sub(Self::TARGET)
    }

    /// Moves `min(out.len(), len())` entries into `out` and returns how
    /// many. Takes the *oldest* (bottom, cache-coldest) entries and slides the
    /// rest down, so the hot ones stay. Pass a slice of
    /// [`drain_count`](Self::drain_count) entries to drain to the target.
    pub fn take_batch(&mut self, out: &mut [u64]) -> usize {
        let n = out.len().min(self.len);
        out[..n].copy_from_slice(&self.slots[..n]);
        self.slots.copy_within(n..self.len, 0);
        self.len -= n;
        n
    }

    /// Pushes entries of `src` in order, as many as fit, and returns how
    /// many were taken (the last of them is popped first).
    pub fn fill_from(&mut self, src: &[u64]) -> usize {
        let n = src.len().min(N - self.len);
        self.slots[self.len..self.len + n].copy_from_slice(&src[..n]);
        self.len += n;
        n
    }

    /// The held entries, bottom (oldest) first.
    pub fn as_slice(&self) -> &[u64] {
        &self.slots[..self.len]
    }
}

impl<const N: usize> Default for Magazine<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for Magazine<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Magazine")
            .field("capacity", &N)
            .field("len", &self.len)
            .field("entries", &self.as_slice())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lifo_push_pop() {
        let mut m = Magazine::<4>::new();
        assert!(m.is_empty() && !m.is_full());
        assert_eq!(m.pop(), None);
        for a in 1..=4 {
            assert_eq!(m.push(a * 0x1000), Ok(()));
        }
        assert!(m.is_full() && !m.is_empty());
        assert_eq!(m.push(0x9000), Err(0x9000));
        assert_eq!(m.len(), 4);
        assert_eq!(m.pop(), Some(0x4000));
        assert_eq!(m.pop(), Some(0x3000));
        assert_eq!(m.push(0x7000), Ok(()));
        assert_eq!(m.pop(), Some(0x7000));
        assert_eq!(m.pop(), Some(0x2000));
        assert_eq!(m.pop(), Some(0x1000));
        assert_eq!(m.pop(), None);
        assert!(m.is_empty());
    }

    #[test]
    fn policy_counts() {
        let mut m = Magazine::<32>::default();
        assert_eq!(Magazine::<32>::HIGH_WATER, 32);
        assert_eq!(Magazine::<32>::TARGET, 16);
        assert_eq!(m.capacity(), 32);
        assert_eq!((m.refill_count(), m.drain_count()), (16, 0));
        let src: [u64; 40] = core::array::from_fn(|i| i as u64);
        assert_eq!(m.fill_from(&src[..m.refill_count()]), 16);
        assert_eq!((m.refill_count(), m.drain_count()), (0, 0));
        assert_eq!(m.fill_from(&src), 16);
        assert!(m.is_full());
        assert_eq!(m.drain_count(), 16);
        let mut out = [0u64; 16];
        assert_eq!(m.take_batch(&mut out), 16);
        assert_eq!(m.len(), 16);
        assert_eq!((m.refill_count(), m.drain_count()), (0, 0));
    }

    #[test]
    fn take_batch_drains_oldest_keeps_hottest() {
        let mut m = Magazine::<8>::new();
        assert_eq!(m.fill_from(&[1, 2, 3, 4, 5, 6]), 6);
        let mut out = [0u64; 4];
        assert_eq!(m.take_batch(&mut out), 4);
        assert_eq!(out, [1, 2, 3, 4]);
        assert_eq!(m.as_slice(), &[5, 6]);
        assert_eq!(m.pop(), Some(6));
        let mut big = [0u64; 8];
        assert_eq!(m.take_batch(&mut big), 1);
        assert_eq!(big[0], 5);
        assert_eq!(m.take_batch(&mut big), 0);
        assert_eq!(m.fill_from(&[]), 0);
        assert!(format!("{m:?}").contains("len: 0"));
    }

    proptest! {
        /// The magazine behaves as a bounded Vec stack.
        #[test]
        fn matches_vec_model(ops in prop::collection::vec((0u8..4, any::<u64>(), 0usize..12), 0..200)) {
            let mut m = Magazine::<8>::new();
            let mut v: Vec<u64> = Vec::new();
            for (op, x, n) in ops {
                match op {
                    0 => {
                        let r = m.push(x);
                        if v.len() < 8 { v.push(x); prop_assert_eq!(r, Ok(())); } else { prop_assert_eq!(r, Err(x)); }
                    }
                    1 => prop_assert_eq!(m.pop(), v.pop()),
                    2 => {
                        let mut out = vec![0; n];
                        let k = m.take_batch(&mut out);
                        prop_assert_eq!(k, n.min(v.len()));
                        let taken: Vec<u64> = v.drain(..k).collect();
                        prop_assert_eq!(&out[..k], &taken[..]);
                    }
                    _ => {
                        let src: Vec<u64> = (0..n as u64).map(|i| x.wrapping_add(i)).collect();
                        let k = m.fill_from(&src);
                        prop_assert_eq!(k, n.min(8 - v.len()));
                        v.extend_from_slice(&src[..k]);
                    }
                }
                prop_assert_eq!(m.as_slice(), &v[..]);
                prop_assert_eq!(m.is_full(), v.len() == 8);
                prop_assert_eq!(m.is_empty(), v.is_empty());
                prop_assert_eq!(m.refill_count(), 4usize.saturating_sub(v.len()));
                prop_assert_eq!(m.drain_count(), v.len().saturating_sub(4));
            }
        }
    }
}
