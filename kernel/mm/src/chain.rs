//! Chains of free objects (a size class's pool: each free object's first word links to the
//! next, 0 ends the chain) and the slabs that can leave them: [`sort_chain`] orders a chain
//! by address in place, [`take_free_slabs`] then unlinks every slab all of whose objects
//! are on it, for its frames to go back to the buddy.
//!
//! Both work through [`Links`] (the kernel reads and writes the link words in memory; the
//! tests a map) and allocate nothing: they run when memory has run out.

use crate::SizeClass;

/// The link words of a chain's objects.
pub trait Links {
    /// The object after `obj` (0: none).
    fn next(&self, obj: usize) -> usize;
    /// Makes `next` follow `obj`.
    fn set_next(&mut self, obj: usize, next: usize);
}

/// Sorts the chain of `count` objects starting at `head` by address, ascending, and
/// returns its new head and length: a bottom-up merge sort of the list itself (runs of 1, 2, 4, ..
/// merged pairwise), no memory beyond a few words, `O(n log n)` link reads and writes.
///
/// The chain is first ended after its `count`th object, so a chain that loops (an object
/// freed twice, in a build without the check) is cut, not walked for ever: the objects
/// past the cut are lost to the pool, never handed out twice by it (the length returned
/// says how many are left).
pub fn sort_chain(head: usize, count: usize, l: &mut impl Links) -> (usize, usize) {
    if head == 0 || count == 0 {
        return (0, 0);
    }
    let mut last = head;
    for _ in 1..count {
        match l.next(last) {
            0 => break,
            n => last = n,
        }
    }
    l.set_next(last, 0);
    let mut list = head;
    let mut run = 1usize;
    let mut len = 0usize;
    loop {
        let mut p = list;
        list = 0;
        let mut tail = 0;
        let mut merges = 0usize;
        while p != 0 {
            merges += 1;
            // `q`: the start of the second run, `run` objects after `p` (or the end).
            let mut q = p;
            let mut psize = 0;
            while psize < run && q != 0 {
                psize += 1;
                q = l.next(q);
            }
            let mut qsize = run;
            while psize > 0 || (qsize > 0 && q != 0) {
                let take_p = psize > 0 && (qsize == 0 || q == 0 || p <= q);
                let e = if take_p {
                    let e = p;
                    p = l.next(p);
                    psize -= 1;
                    e
                } else {
                    let e = q;
                    q = l.next(q);
                    qsize -= 1;
                    e
                };
                if tail == 0 {
                    list = e;
                } else {
                    l.set_next(tail, e);
                }
                tail = e;
                if run == 1 {
                    len += 1;
                }
            }
            p = q;
        }
        l.set_next(tail, 0);
        if merges <= 1 {
            return (list, len);
        }
        run = run.saturating_mul(2);
    }
}

/// Unlinks from the sorted chain at `head` every slab of class `c` whose objects are all on
/// it, each exactly once (a run of [`SizeClass::objects_per_slab`] strictly increasing
/// addresses with one [`SizeClass::slab_base`]: a chain holding an object twice, after a
/// double free, gives none of that slab back), calling `slab(base)` for each. Returns the
/// new head and how many objects left the chain.
pub fn take_free_slabs(
    head: usize,
    c: SizeClass,
    l: &mut impl Links,
    mut slab: impl FnMut(u64),
) -> (usize, usize) {
    let per_slab = c.objects_per_slab();
    let mut head = head;
    let mut removed = 0;
    // The object before the current run (0: the run starts the chain).
    let mut before = 0usize;
    let mut obj = head;
    while obj != 0 {
        let base = c.slab_base(obj as u64);
        let first = obj;
        let mut last = obj;
        let mut n = 1usize;
        let mut distinct = true;
        let mut next = l.next(obj);
        while next != 0 && c.slab_base(next as u64) == base {
            distinct &= next > last;
            last = next;
            n += 1;
            next = l.next(next);
        }
        if n == per_slab && distinct && first as u64 == base {
            if before == 0 {
                head = next;
            } else {
                l.set_next(before, next);
            }
            removed += n;
            slab(base);
        } else {
            before = last;
        }
        obj = next;
    }
    (head, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    #[derive(Default)]
    struct Map(HashMap<usize, usize>);

    impl Links for Map {
        fn next(&self, obj: usize) -> usize {
            self.0[&obj]
        }
        fn set_next(&mut self, obj: usize, next: usize) {
            self.0.insert(obj, next);
        }
    }

    fn chain(objs: &[usize]) -> (usize, Map) {
        let mut m = Map::default();
        for w in objs.windows(2) {
            m.set_next(w[0], w[1]);
        }
        if let Some(&l) = objs.last() {
            m.set_next(l, 0);
        }
        (objs.first().copied().unwrap_or(0), m)
    }

    fn walk(head: usize, m: &Map) -> Vec<usize> {
        let mut v = Vec::new();
        let mut o = head;
        while o != 0 {
            v.push(o);
            o = m.next(o);
            assert!(v.len() <= m.0.len(), "a cycle");
        }
        v
    }

    /// A small xorshift: deterministic shuffles.
    fn shuffle(v: &mut [usize], mut seed: u64) {
        for i in (1..v.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.swap(i, (seed % (i as u64 + 1)) as usize);
        }
    }

    #[test]
    fn sorts_every_length_and_order() {
        for n in 0..70usize {
            for seed in 1..4u64 {
                let mut objs: Vec<usize> = (1..=n).map(|i| i * 64).collect();
                shuffle(&mut objs, seed * 7919 + n as u64);
                let (head, mut m) = chain(&objs);
                let (sorted, len) = sort_chain(head, n, &mut m);
                let got = walk(sorted, &m);
                assert_eq!(len, n);
                let mut want = objs.clone();
                want.sort_unstable();
                assert_eq!(got, want, "n {n} seed {seed}");
            }
        }
    }

    /// The class of 64-byte objects with its slab of 4 KiB or more.
    fn c64() -> SizeClass {
        crate::class_for(64, 8).unwrap()
    }

    #[test]
    fn takes_exactly_the_slabs_whose_objects_are_all_free() {
        let c = c64();
        let per = c.objects_per_slab();
        let bytes = c.slab_bytes();
        let base = 0x4000_0000usize;
        // Slab 0 whole, slab 1 missing one object, slab 2 whole, slab 3 one object only.
        let mut objs = Vec::new();
        objs.extend((0..per).map(|i| base + i * 64));
        objs.extend((0..per).filter(|&i| i != 5).map(|i| base + bytes + i * 64));
        objs.extend((0..per).map(|i| base + 2 * bytes + i * 64));
        objs.push(base + 3 * bytes + 128);
        shuffle(&mut objs, 42);
        let (head, mut m) = chain(&objs);
        let (head, _) = sort_chain(head, objs.len(), &mut m);
        let mut freed = Vec::new();
        let (head, removed) = take_free_slabs(head, c, &mut m, |b| freed.push(b));
        assert_eq!(freed, [base as u64, (base + 2 * bytes) as u64]);
        assert_eq!(removed, 2 * per);
        let left = walk(head, &m);
        assert_eq!(left.len(), per);
        assert!(
            left.iter()
                .all(|&o| o >= base + bytes && o < base + 2 * bytes || o == base + 3 * bytes + 128)
        );
        assert!(left.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_looping_chain_is_cut_at_its_count() {
        let c = c64();
        let per = c.objects_per_slab();
        let base = 0x4000_0000usize;
        // A whole slab whose last object links back to its 4th (an object freed twice
        // links the chain into a loop): sorting ends, nothing is given back twice.
        let objs: Vec<usize> = (0..per).map(|i| base + i * 64).collect();
        let (head, mut m) = chain(&objs);
        m.set_next(objs[per - 1], objs[3]);
        for count in [per, per + 5, 2 * per] {
            let mut m2 = Map(m.0.clone());
            let (head, len) = sort_chain(head, count, &mut m2);
            let got = walk(head, &m2);
            assert!(got.len() == len && len <= count, "{count}");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{count}");
            let mut slabs = 0;
            let (_, removed) = take_free_slabs(head, c, &mut m2, |_| slabs += 1);
            assert!(slabs <= 1 && removed == slabs * per);
        }
    }

    #[test]
    fn empty_and_single_chains() {
        let c = c64();
        let mut m = Map::default();
        assert_eq!(sort_chain(0, 0, &mut m), (0, 0));
        assert_eq!(take_free_slabs(0, c, &mut m, |_| panic!()), (0, 0));
        let (head, mut m) = chain(&[0x1000_0040]);
        let (head, _) = sort_chain(head, 1, &mut m);
        assert_eq!(
            take_free_slabs(head, c, &mut m, |_| panic!()),
            (0x1000_0040, 0)
        );
    }
}
