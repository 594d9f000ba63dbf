//! CPU sets sized by the machine, not by a constant.
//!
//! * [`CpuSet`]: a thread's affinity. The two common cases take no memory (`ANY`, one CPU);
//!   a set of several CPUs is a bitmap that grows to the highest CPU it names (allocation is
//!   fallible: [`CpuSet::try_insert`]). A 2-CPU guest and a 1024-CPU one pay the same for
//!   `ANY` and pinned threads.
//! * [`AtomicMask`]: a shared bitmap over a fixed number of CPUs (allocated once at boot for
//!   the CPUs that exist), for "which CPUs are halted" and "which CPUs have work to give".
//!   Every query scans `ceil(n / 64)` words (16 at 1024 CPUs), never one entry per CPU, and
//!   searches start where the caller says, so callers spread over the CPUs instead of all
//!   converging on the lowest one.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// A set of CPU ids (an affinity mask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet(Repr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Any,
    One(u32),
    /// Bit `c` of word `c / 64`; no trailing zero words.
    Mask(Vec<u64>),
}

impl CpuSet {
    /// Every CPU (no restriction).
    pub const ANY: CpuSet = CpuSet(Repr::Any);

    /// Exactly `cpu`.
    pub const fn one(cpu: u32) -> CpuSet {
        CpuSet(Repr::One(cpu))
    }

    /// The empty set (add CPUs with [`CpuSet::try_insert`]).
    pub const fn empty() -> CpuSet {
        CpuSet(Repr::Mask(Vec::new()))
    }

    /// Adds `cpu`. Fails only when the bitmap cannot grow (out of memory); the set is then
    /// unchanged. Adding to `ANY` changes nothing.
    pub fn try_insert(&mut self, cpu: u32) -> Result<(), TryReserveError> {
        let (w, bit) = (cpu as usize / 64, 1u64 << (cpu % 64));
        match &mut self.0 {
            Repr::Any => Ok(()),
            Repr::One(c) if *c == cpu => Ok(()),
            Repr::One(c) => {
                let first = *c;
                let mut v = Vec::new();
                v.try_reserve_exact(w.max(first as usize / 64) + 1)?;
                v.resize(w.max(first as usize / 64) + 1, 0);
                v[first as usize / 64] |= 1 << (first % 64);
                v[w] |= bit;
                self.0 = Repr::Mask(v);
                Ok(())
            }
            Repr::Mask(v) => {
                if v.len() <= w {
                    v.try_reserve_exact(w + 1 - v.len())?;
                    v.resize(w + 1, 0);
                }
                v[w] |= bit;
                Ok(())
            }
        }
    }

    /// A copy made with fallible allocation (a bitmap's copy allocates): for kernel paths
    /// where running out of memory must be an error, not a panic (`Clone` would abort).
    pub fn try_clone(&self) -> Result<CpuSet, TryReserveError> {
        Ok(CpuSet(match &self.0 {
            Repr::Any => Repr::Any,
            Repr::One(c) => Repr::One(*c),
            Repr::Mask(v) => {
                let mut w = Vec::new();
                w.try_reserve_exact(v.len())?;
                w.extend_from_slice(v);
                Repr::Mask(w)
            }
        }))
    }

    /// Does the set contain `cpu`?
    pub fn contains(&self, cpu: u32) -> bool {
        match &self.0 {
            Repr::Any => true,
            Repr::One(c) => *c == cpu,
            Repr::Mask(v) => v
                .get(cpu as usize / 64)
                .is_some_and(|w| w & (1 << (cpu % 64)) != 0),
        }
    }

    /// The CPU of a set made by [`CpuSet::one`] (`None` for any other set, even a bitmap
    /// with one CPU in it).
    pub fn only(&self) -> Option<u32> {
        match self.0 {
            Repr::One(c) => Some(c),
            _ => None,
        }
    }

    /// Is this the unrestricted set?
    pub fn is_any(&self) -> bool {
        matches!(self.0, Repr::Any)
    }

    /// The same set among the online CPUs `online()` (any ids, in any order) in its
    /// simplest form: a bitmap holding every online CPU is [`CpuSet::ANY`], one holding
    /// exactly one online CPU is [`CpuSet::one`] of it; anything else is left as given (its
    /// offline CPUs too). The scheduler keys on the form (only `ANY` threads are stolen, only
    /// `one` threads have a home): until 2026-12-04 a mask from `sched_setaffinity` listing
    /// every CPU left its thread out of work stealing for good (found by review).
    pub fn normalized<I: Iterator<Item = u32>>(self, online: impl Fn() -> I) -> CpuSet {
        if !matches!(self.0, Repr::Mask(_)) {
            return self;
        }
        let (mut all, mut inside, mut first) = (true, 0usize, None);
        for c in online() {
            if self.contains(c) {
                inside += 1;
                first = first.or(Some(c));
            } else {
                all = false;
            }
        }
        match first {
            Some(_) if all => CpuSet::ANY,
            Some(c) if inside == 1 => CpuSet::one(c),
            _ => self,
        }
    }

    /// The CPUs of the set below `n`, in increasing order (`ANY` yields `0..n`).
    pub fn iter(&self, n: u32) -> impl Iterator<Item = u32> + '_ {
        let mask: &[u64] = match &self.0 {
            Repr::Mask(v) => v,
            _ => &[],
        };
        let (lo, hi, bits) = match &self.0 {
            Repr::Any => (0, n, false),
            Repr::One(c) => (*c, (*c + 1).min(n), false),
            Repr::Mask(v) => (0, n.min((v.len() * 64) as u32), true),
        };
        let mut words = mask
            .iter()
            .enumerate()
            .flat_map(|(wi, &w)| BitIter(w).map(move |b| wi as u32 * 64 + b))
            .take_while(move |&c| c < hi);
        let mut range = lo..hi;
        core::iter::from_fn(move || if bits { words.next() } else { range.next() })
    }
}

/// Set bits of one word, lowest first.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(b)
    }
}

/// A shared bitmap over CPUs `0..n`, over words the caller allocated
/// ([`AtomicMask::words_for`] of them).
#[derive(Debug, Clone, Copy)]
pub struct AtomicMask<'a> {
    words: &'a [AtomicU64],
    n: u32,
}

impl<'a> AtomicMask<'a> {
    /// Words needed for `n` CPUs.
    pub const fn words_for(n: u32) -> usize {
        (n as usize).div_ceil(64)
    }

    /// A mask over CPUs `0..n` stored in `words` (extra words are ignored; missing ones make
    /// the CPUs they would hold absent: `n` is cut to what `words` can hold).
    pub fn new(words: &'a [AtomicU64], n: u32) -> Self {
        let n = n.min((words.len() * 64).min(u32::MAX as usize) as u32);
        AtomicMask { words, n }
    }

    /// CPUs covered.
    pub fn len(&self) -> u32 {
        self.n
    }

    /// Covers no CPU?
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Sets `cpu`'s bit (ignored beyond the mask). Returns whether it was clear.
    pub fn set(&self, cpu: u32) -> bool {
        if cpu >= self.n {
            return false;
        }
        let bit = 1u64 << (cpu % 64);
        self.words[cpu as usize / 64].fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Clears `cpu`'s bit. Returns whether it was set (exactly one of several concurrent
    /// clearers sees `true`).
    pub fn clear(&self, cpu: u32) -> bool {
        if cpu >= self.n {
            return false;
        }
        let bit = 1u64 << (cpu % 64);
        self.words[cpu as usize / 64].fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Is `cpu`'s bit set?
    pub fn contains(&self, cpu: u32) -> bool {
        cpu < self.n
            && self.words[cpu as usize / 64].load(Ordering::Acquire) & (1 << (cpu % 64)) != 0
    }

    /// Is any bit but `except`'s set?
    pub fn any_except(&self, except: u32) -> bool {
        self.words.iter().enumerate().any(|(wi, w)| {
            let mut v = w.load(Ordering::Relaxed);
            if except as usize / 64 == wi {
                v &= !(1u64 << (except % 64));
            }
            v != 0
        })
    }

    /// The first set bit at or after `start`, wrapping around, other than `skip`.
    pub fn find_from(&self, start: u32, skip: u32) -> Option<u32> {
        self.scan(start, skip, |_| true)
    }

    /// Like [`AtomicMask::find_from`], but claims the bit: it is cleared, and a CPU is
    /// returned to one caller only (concurrent takers get different CPUs or `None`).
    pub fn take_from(&self, start: u32, skip: u32) -> Option<u32> {
        self.scan(start, skip, |c| self.clear(c))
    }

    /// Visits set bits from `start` (wrapping), skipping `skip`, until `accept` says yes.
    fn scan(&self, start: u32, skip: u32, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.n == 0 {
            return None;
        }
        let nw = self.words.len().min(Self::words_for(self.n));
        let start = start % self.n;
        let first_w = start as usize / 64;
        // Word `first_w` twice: bits at/after `start` first, the bits below it at the end.
        for k in 0..=nw {
            let wi = (first_w + k) % nw;
            let mut v = self.words[wi].load(Ordering::Acquire);
            if k == 0 {
                v &= u64::MAX << (start % 64);
            } else if k == nw {
                v &= !(u64::MAX << (start % 64));
            }
            if wi == skip as usize / 64 {
                v &= !(1u64 << (skip % 64));
            }
            for b in BitIter(v) {
                let c = wi as u32 * 64 + b;
                if c < self.n && accept(c) {
                    return Some(c);
                }
            }
        }
        None
    }

    /// The set CPUs, in increasing order (a snapshot per word).
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let n = self.n;
        self.words.iter().enumerate().flat_map(move |(wi, w)| {
            BitIter(w.load(Ordering::Acquire))
                .map(move |b| wi as u32 * 64 + b)
                .filter(move |&c| c < n)
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn words(n: u32) -> Vec<AtomicU64> {
        (0..AtomicMask::words_for(n))
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    #[test]
    fn cpuset_forms() {
        assert!(CpuSet::ANY.contains(1023) && CpuSet::ANY.is_any());
        let mut s = CpuSet::one(5);
        assert!(s.contains(5) && !s.contains(4) && !s.is_any());
        s.try_insert(1000).unwrap();
        s.try_insert(5).unwrap();
        assert!(s.contains(5) && s.contains(1000) && !s.contains(999));
        assert_eq!(s.iter(4096).collect::<Vec<_>>(), vec![5, 1000]);
        assert_eq!(s.iter(1000).collect::<Vec<_>>(), vec![5]);
        assert_eq!(CpuSet::ANY.iter(3).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(CpuSet::one(7).iter(3).count(), 0);
        let mut e = CpuSet::empty();
        assert!(!e.contains(0) && e.iter(64).next().is_none());
        e.try_insert(63).unwrap();
        e.try_insert(64).unwrap();
        assert_eq!(e.iter(128).collect::<Vec<_>>(), vec![63, 64]);
        for set in [CpuSet::ANY, CpuSet::one(9), s, e, CpuSet::empty()] {
            assert_eq!(set.try_clone().unwrap(), set, "try_clone of {set:?}");
        }
    }

    #[test]
    fn masks_normalize_to_any_and_one() {
        let mask = |cpus: &[u32]| {
            let mut s = CpuSet::empty();
            for &c in cpus {
                s.try_insert(c).unwrap();
            }
            s
        };
        let four = || 0u32..4;
        assert!(mask(&[0, 1, 2, 3]).normalized(four).is_any());
        assert!(
            mask(&[0, 1, 2, 3, 70]).normalized(four).is_any(),
            "beyond: ignored"
        );
        assert_eq!(mask(&[2]).normalized(four).only(), Some(2));
        assert_eq!(mask(&[2, 9]).normalized(four).only(), Some(2));
        let two = mask(&[1, 3]).normalized(four);
        assert!(!two.is_any() && two.only().is_none());
        assert_eq!(two.iter(4).collect::<Vec<_>>(), vec![1, 3]);
        assert!(mask(&[]).normalized(four).iter(4).next().is_none());
        assert_eq!(CpuSet::one(7).normalized(four).only(), Some(7));
        assert!(CpuSet::ANY.normalized(|| 0u32..1).is_any());
        // Online ids with a gap (CPU 1 never came up): 0, 2, 3.
        let gap = || [0u32, 2, 3].into_iter();
        assert_eq!(mask(&[1, 3]).normalized(gap).only(), Some(3));
        assert!(mask(&[0, 2, 3]).normalized(gap).is_any());
        let kept = mask(&[0, 1, 2]).normalized(gap);
        assert!(!kept.is_any() && kept.only().is_none() && !kept.contains(3));
        let both = mask(&[2, 3]).normalized(gap);
        assert!(both.contains(2) && both.contains(3) && both.only().is_none());
        assert!(
            mask(&[1]).normalized(gap).only().is_none(),
            "only an offline CPU: as given"
        );
    }

    proptest! {
        #[test]
        fn normalizing_keeps_the_online_cpus(
            cpus in proptest::collection::btree_set(0u32..130, 0..20),
            online in proptest::collection::btree_set(0u32..130, 1..40),
        ) {
            let mut s = CpuSet::empty();
            for &c in &cpus {
                s.try_insert(c).unwrap();
            }
            let t = s.clone().normalized(|| online.iter().copied());
            let inside: Vec<u32> = online.iter().copied().filter(|c| cpus.contains(c)).collect();
            for &c in &online {
                prop_assert_eq!(t.contains(c), cpus.contains(&c));
            }
            prop_assert_eq!(t.is_any(), !inside.is_empty() && inside.len() == online.len());
            prop_assert_eq!(t.only(), (inside.len() == 1 && online.len() > 1).then(|| inside[0]));
        }
    }

    #[test]
    fn mask_take_wraps_and_skips() {
        let w = words(1024);
        let m = AtomicMask::new(&w, 1024);
        for c in [3, 64, 700, 1023] {
            assert!(m.set(c));
        }
        assert!(!m.set(3));
        assert_eq!(m.find_from(701, 9999), Some(1023));
        assert_eq!(m.find_from(1023, 1023), Some(3));
        assert_eq!(m.find_from(4, 64), Some(700));
        assert!(m.any_except(3));
        assert_eq!(m.take_from(65, 700), Some(1023));
        assert_eq!(m.take_from(65, 700), Some(3));
        assert_eq!(m.take_from(65, 700), Some(64));
        assert_eq!(m.take_from(65, 700), None);
        assert!(!m.any_except(700) && m.any_except(0));
        assert!(m.clear(700) && !m.clear(700));
        assert!(!m.set(1024), "beyond the mask is ignored");
        let none = AtomicMask::new(&[], 8);
        assert!(none.is_empty() && none.find_from(0, 0).is_none() && !none.set(0));
    }

    #[test]
    fn concurrent_takers_get_each_cpu_once() {
        let w = words(1000);
        let m = AtomicMask::new(&w, 1000);
        for c in 0..1000 {
            m.set(c);
        }
        let got: Vec<Vec<u32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u32)
                .map(|t| {
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        while let Some(c) = m.take_from(t * 250, u32::MAX) {
                            mine.push(c);
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<u32> = got.into_iter().flatten().collect();
        let set: BTreeSet<u32> = all.iter().copied().collect();
        assert_eq!(all.len(), 1000, "every CPU taken exactly once");
        assert_eq!(set.len(), 1000);
    }

    proptest! {
        #[test]
        fn mask_matches_a_model(n in 1u32..300, ops in prop::collection::vec((0u8..4, 0u32..320, 0u32..320), 0..200)) {
            let w = words(n);
            let m = AtomicMask::new(&w, n);
            let mut model = BTreeSet::new();
            for (op, a, b) in ops {
                match op {
                    0 => { prop_assert_eq!(m.set(a), a < n && model.insert(a)); }
                    1 => { prop_assert_eq!(m.clear(a), model.remove(&a)); }
                    2 => {
                        let want = model.range(a % n..).chain(model.range(..a % n)).copied().find(|&c| c != b);
                        prop_assert_eq!(m.find_from(a, b), want);
                    }
                    _ => {
                        let want = model.range(a % n..).chain(model.range(..a % n)).copied().find(|&c| c != b);
                        prop_assert_eq!(m.take_from(a, b), want);
                        if let Some(c) = want { model.remove(&c); }
                    }
                }
                prop_assert_eq!(m.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(m.any_except(b), model.iter().any(|&c| c != b));
            }
        }

        #[test]
        fn cpuset_matches_a_model(cpus in prop::collection::vec(0u32..2000, 1..40), n in 1u32..2100) {
            let mut s = CpuSet::one(cpus[0]);
            let mut model: BTreeSet<u32> = [cpus[0]].into();
            for &c in &cpus[1..] {
                s.try_insert(c).unwrap();
                model.insert(c);
            }
            for c in 0..2100 {
                prop_assert_eq!(s.contains(c), model.contains(&c));
            }
            prop_assert_eq!(s.iter(n).collect::<Vec<_>>(), model.range(..n).copied().collect::<Vec<_>>());
        }
    }
}
