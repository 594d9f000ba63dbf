//! Small-object size classes and the slab address arithmetic.
//!
//! Classes are the powers of two 16..=2048 plus the 1.5x steps between them
//! from 48 up (48, 96, 192, 384, 768, 1536): 14 classes, worst-case internal
//! fragmentation 33% instead of 50% for power-of-two-only classes. There is
//! no 8-byte class: 16 is the smallest size that keeps every object 16-byte
//! aligned (the x86_64 `max_align_t`).
//!
//! A class's objects sit at `slab_base + i * size`, so a class is aligned to
//! the lowest set bit of its size (a 48-byte object is 16-aligned, a 1536-byte
//! one 512-aligned). A slab is one buddy block of `slab_order()` (order 0 but
//! for 1536, order 1), naturally aligned to its size, so the slab holding an
//! object is found by masking. Slab metadata is assumed off-slab (the kernel's
//! per-frame descriptor), so the whole block holds objects.

use crate::{FRAME_SIZE, MAX_ORDER};

/// Number of size classes.
const N: usize = 14;

/// Object size of each class, ascending.
pub const CLASS_SIZES: [usize; N] = [
    16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
];

/// Largest size served by a size class; larger requests go to pages.
pub const MAX_SMALL_SIZE: usize = 2048;

/// `LOOKUP[i]` = index of the smallest class of size `>= 16 * i`.
const LOOKUP: [u8; MAX_SMALL_SIZE / 16 + 1] = {
    let mut t = [0u8; MAX_SMALL_SIZE / 16 + 1];
    let (mut i, mut c) = (0, 0);
    while i < t.len() {
        while CLASS_SIZES[c] < 16 * i {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

/// Alignment of each class: lowest set bit of its size.
const ALIGN: [usize; N] = {
    let mut t = [0; N];
    let mut c = 0;
    while c < N {
        t[c] = 1 << CLASS_SIZES[c].trailing_zeros();
        c += 1;
    }
    t
};

/// Slab order of each class: the smallest block (up to 8 pages) wasting at
/// most 1/8 of itself.
const SLAB_ORDER: [u8; N] = {
    let mut t = [0; N];
    let mut c = 0;
    while c < N {
        let mut k = 0;
        while k < 3
            && ((FRAME_SIZE as usize) << k) % CLASS_SIZES[c] * 8 > (FRAME_SIZE as usize) << k
        {
            k += 1;
        }
        t[c] = k as u8;
        c += 1;
    }
    t
};

/// `ceil(2^32 / size)` (plus one for powers of two): `(off * RECIP) >> 32`
/// is `off / size` for every offset inside a slab.
const RECIP: [u64; N] = {
    let mut t = [0; N];
    let mut c = 0;
    while c < N {
        t[c] = (1u64 << 32) / CLASS_SIZES[c] as u64 + 1;
        c += 1;
    }
    t
};

/// A small-object size class (an index into [`CLASS_SIZES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeClass(u8);

impl SizeClass {
    /// Number of classes.
    pub const COUNT: usize = N;

    /// Every class, ascending.
    pub const ALL: [SizeClass; N] = {
        let mut t = [SizeClass(0); N];
        let mut c = 0;
        while c < N {
            t[c] = SizeClass(c as u8);
            c += 1;
        }
        t
    };

    /// The class with this index, if any.
    pub const fn from_index(index: usize) -> Option<Self> {
        if index < N {
            Some(Self(index as u8))
        } else {
            None
        }
    }

    /// Index of the class, `0..COUNT` (for per-class arrays).
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Object size in bytes.
    pub const fn size(self) -> usize {
        CLASS_SIZES[self.0 as usize]
    }

    /// Guaranteed alignment of every object (lowest set bit of the size).
    pub const fn align(self) -> usize {
        ALIGN[self.0 as usize]
    }

    /// Buddy order of one slab of this class.
    pub const fn slab_order(self) -> usize {
        SLAB_ORDER[self.0 as usize] as usize
    }

    /// Bytes of one slab (`4 KiB << slab_order`).
    pub const fn slab_bytes(self) -> usize {
        (FRAME_SIZE as usize) << self.slab_order()
    }

    /// Objects in one slab (metadata off-slab).
    pub const fn objects_per_slab(self) -> usize {
        self.slab_bytes() / self.size()
    }

    /// Base of the slab holding the object at `addr` (slabs are aligned to
    /// their size).
    pub const fn slab_base(self, addr: u64) -> u64 {
        addr & !(self.slab_bytes() as u64 - 1)
    }

    /// Index within its slab of the object holding `addr` (no division: a
    /// multiply by a reciprocal). May equal `objects_per_slab()` for an
    /// address in the slab's unused tail.
    pub const fn object_index(self, addr: u64) -> usize {
        let off = addr & (self.slab_bytes() as u64 - 1);
        ((off * RECIP[self.0 as usize]) >> 32) as usize
    }

    /// Address of object `index` of the slab at `slab_base`.
    pub const fn object_addr(self, slab_base: u64, index: usize) -> u64 {
        slab_base + (index * self.size()) as u64
    }

    /// Whether `addr` is the start of an object of a slab of this class
    /// (validation of a free).
    pub const fn is_object_start(self, addr: u64) -> bool {
        let i = self.object_index(addr);
        i < self.objects_per_slab() && self.object_addr(self.slab_base(addr), i) == addr
    }
}

/// The smallest class whose objects hold `size` bytes aligned to `align` (a
/// power of two, as in `Layout`), or `None` when the request must be served
/// from pages (`size > 2048` or `align > 2048`; see [`page_order_for`]).
///
/// Branch-light: one range check, one table load and one compare.
#[inline]
pub const fn class_for(size: usize, align: usize) -> Option<SizeClass> {
    let s = if size > align { size } else { align };
    if s > MAX_SMALL_SIZE {
        return None;
    }
    let c = LOOKUP[(s + 15) >> 4] as usize;
    // A 3 * 2^j class (>= align) lacking the alignment is followed by the
    // 2^(j+2) class, which has it.
    Some(SizeClass((c + (ALIGN[c] < align) as usize) as u8))
}

/// The smallest buddy order whose blocks hold `size` bytes aligned to
/// `align` (blocks are naturally aligned), or `None` above
/// [`MAX_ORDER`].
#[inline]
pub const fn page_order_for(size: usize, align: usize) -> Option<usize> {
    let s = if size > align { size } else { align };
    let frames = s.div_ceil(FRAME_SIZE as usize);
    let order = if frames <= 1 {
        0
    } else {
        (usize::BITS - (frames - 1).leading_zeros()) as usize
    };
    if order > MAX_ORDER { None } else { Some(order) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligns() -> impl Iterator<Item = usize> {
        (0..=11).map(|s| 1usize << s)
    }

    #[test]
    fn table_is_sorted_multiples_of_16() {
        for w in CLASS_SIZES.windows(2) {
            assert!(w[0] < w[1]);
        }
        for s in CLASS_SIZES {
            assert_eq!(s % 16, 0);
        }
        assert_eq!(CLASS_SIZES[N - 1], MAX_SMALL_SIZE);
        assert_eq!(SizeClass::ALL.len(), SizeClass::COUNT);
        for (i, c) in SizeClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(SizeClass::from_index(i), Some(*c));
        }
        assert_eq!(SizeClass::from_index(N), None);
    }

    /// Every size 1..=2048 with every power-of-two align 1..=2048 maps to the
    /// smallest class that is big enough and whose objects are all aligned.
    #[test]
    fn class_for_is_smallest_sufficient_exhaustive() {
        for size in 1..=MAX_SMALL_SIZE {
            for align in aligns() {
                let got = class_for(size, align).expect("small request must have a class");
                let best = SizeClass::ALL
                    .into_iter()
                    .find(|c| c.size() >= size && c.size() % align == 0)
                    .unwrap();
                assert_eq!(got, best, "size {size} align {align}");
                assert!(got.size() >= size);
                assert!(got.align() >= align);
                for i in 0..got.objects_per_slab() {
                    assert_eq!(got.object_addr(0x40_0000, i) % align as u64, 0);
                }
            }
        }
    }

    #[test]
    fn class_for_edges() {
        assert_eq!(class_for(0, 1).map(SizeClass::size), Some(16));
        assert_eq!(class_for(1, 1).map(SizeClass::size), Some(16));
        assert_eq!(class_for(17, 8).map(SizeClass::size), Some(32));
        assert_eq!(class_for(33, 16).map(SizeClass::size), Some(48));
        assert_eq!(class_for(33, 32).map(SizeClass::size), Some(64));
        assert_eq!(class_for(1025, 8).map(SizeClass::size), Some(1536));
        assert_eq!(class_for(1025, 1024).map(SizeClass::size), Some(2048));
        assert_eq!(class_for(1, 2048).map(SizeClass::size), Some(2048));
        assert_eq!(class_for(2048, 2048).map(SizeClass::size), Some(2048));
        assert_eq!(class_for(2049, 1), None);
        assert_eq!(class_for(16, 4096), None);
        assert_eq!(class_for(usize::MAX, 1), None);
        assert_eq!(class_for(1, usize::MAX), None);
        const C: Option<SizeClass> = class_for(100, 8);
        assert_eq!(C.map(SizeClass::size), Some(128));
    }

    #[test]
    fn slab_geometry() {
        for c in SizeClass::ALL {
            let bytes = c.slab_bytes();
            assert!(bytes.is_power_of_two() && bytes >= 4096);
            let waste = bytes - c.objects_per_slab() * c.size();
            assert!(waste * 8 <= bytes, "class {} wastes {waste}", c.size());
            assert!(c.objects_per_slab() >= 2);
        }
        let per = |s: usize| class_for(s, 1).unwrap().objects_per_slab();
        assert_eq!(per(16), 256);
        assert_eq!(per(48), 85);
        assert_eq!(per(64), 64);
        assert_eq!(per(2048), 2);
        let c1536 = class_for(1536, 1).unwrap();
        assert_eq!((c1536.slab_order(), c1536.objects_per_slab()), (1, 5));
    }

    /// Every byte offset of every slab maps back to its object by masking and
    /// reciprocal multiplication.
    #[test]
    fn slab_index_arithmetic_exhaustive() {
        for c in SizeClass::ALL {
            let base = 0x1234_5600_0000u64;
            assert_eq!(base % c.slab_bytes() as u64, 0);
            for off in 0..c.slab_bytes() as u64 {
                let addr = base + off;
                assert_eq!(c.slab_base(addr), base);
                let idx = (off / c.size() as u64) as usize;
                assert_eq!(c.object_index(addr), idx, "class {} off {off}", c.size());
                let start = off % c.size() as u64 == 0 && idx < c.objects_per_slab();
                assert_eq!(c.is_object_start(addr), start);
            }
            for i in 0..c.objects_per_slab() {
                let a = c.object_addr(base, i);
                assert_eq!(c.object_index(a), i);
                assert!(a + c.size() as u64 <= base + c.slab_bytes() as u64);
            }
        }
    }

    #[test]
    fn page_orders() {
        assert_eq!(page_order_for(0, 1), Some(0));
        assert_eq!(page_order_for(1, 1), Some(0));
        assert_eq!(page_order_for(4096, 4096), Some(0));
        assert_eq!(page_order_for(4097, 8), Some(1));
        assert_eq!(page_order_for(8, 8192), Some(1));
        assert_eq!(page_order_for(3 * 4096, 8), Some(2));
        assert_eq!(page_order_for(2 << 20, 8), Some(9));
        assert_eq!(page_order_for(4 << 20, 8), Some(10));
        assert_eq!(page_order_for((4 << 20) + 1, 8), None);
        assert_eq!(page_order_for(usize::MAX, 1), None);
        for size in (1..=(4usize << 20)).step_by(4093) {
            let k = page_order_for(size, 1).unwrap();
            assert!(4096usize << k >= size);
            assert!(k == 0 || 4096usize << (k - 1) < size);
        }
    }
}
