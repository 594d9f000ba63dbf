//! Bitmap buddy allocator for the 4 KiB frames of one contiguous physical span
//! (design notes on [`Buddy`]).

use core::fmt;

use crate::{BatchFreeError, FRAME_SHIFT, FRAME_SIZE, MmError};

/// Largest block order: `2^10` frames = 4 MiB.
///
/// 10 rather than 9 so that 2 MiB (order 9, huge pages) requests have a
/// larger order to split from, and a freshly freed 2 MiB block can coalesce
/// instead of pinning the top order; 11 (8 MiB) would only add a bitmap and a
/// larger alignment padding for no use the kernel has (1 GiB pages are not
/// served by the buddy). It also matches Linux's long-standing default.
pub const MAX_ORDER: usize = 10;
/// Number of orders, `0..=MAX_ORDER`.
pub const ORDERS: usize = MAX_ORDER + 1;
/// Largest span one [`Buddy`] accepts, in frames (a little under 256 TiB).
pub const MAX_SPAN_FRAMES: u64 = (1 << 36) - 2 * MAX_BLOCK_FRAMES as u64;

const MAX_BLOCK_FRAMES: usize = 1 << MAX_ORDER;
const MAX_BLOCK_BYTES: u64 = FRAME_SIZE << MAX_ORDER;
/// 64^6 = 2^36 bits per level-0 bitmap at most.
const MAX_LEVELS: usize = 6;

/// Where each bitmap of each order lives in the storage words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Word offset of each level of the free bitmap (0 = leaf).
    lvl: [[usize; MAX_LEVELS]; ORDERS],
    /// Number of levels of the free bitmap (the last one is one word).
    depth: [usize; ORDERS],
    /// Word offset of the allocated bitmap (as many words as the leaf).
    alloc: [usize; ORDERS],
    /// Number of whole blocks of each order inside the internal span.
    blocks: [usize; ORDERS],
    /// Word offset of the reserved bitmap (one bit per internal frame).
    resv: usize,
    /// Total words used.
    words: usize,
}

/// Computes the layout for `n_int` internal frames (alignment pad included).
const fn layout(n_int: usize) -> Layout {
    let mut l = Layout {
        lvl: [[0; MAX_LEVELS]; ORDERS],
        depth: [0; ORDERS],
        alloc: [0; ORDERS],
        blocks: [0; ORDERS],
        resv: 0,
        words: 0,
    };
    let mut off = 0;
    let mut k = 0;
    while k < ORDERS {
        let nb = n_int >> k;
        l.blocks[k] = nb;
        // The buddy `i ^ 1` of a block `i < nb` is always in the same word
        // as `i`, so probing it needs no bounds check; past the end its bit
        // is never set.
        let mut w = nb.div_ceil(64);
        if w == 0 {
            w = 1;
        }
        let leaf_words = w;
        l.lvl[k][0] = off;
        off += w;
        let mut d = 1;
        while w > 1 {
            w = w.div_ceil(64);
            l.lvl[k][d] = off;
            off += w;
            d += 1;
        }
        l.depth[k] = d;
        l.alloc[k] = off;
        off += leaf_words;
        k += 1;
    }
    l.resv = off;
    off += n_int / 64 + 1;
    l.words = off;
    l
}

/// Gathers the even bits of `x` into its low 32 bits (bit `2j` to bit `j`);
/// a software `pext(x, 0x5555...)`.
#[inline(always)]
const fn compress_even(x: u64) -> u64 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    (x | (x >> 16)) & 0x0000_0000_ffff_ffff
}

/// Calls `f(word, mask)` for every word overlapping bit range `[a, b)`.
#[inline]
fn for_each_word(a: usize, b: usize, mut f: impl FnMut(usize, u64)) {
    if a >= b {
        return;
    }
    let (wa, wb) = (a >> 6, (b - 1) >> 6);
    for w in wa..=wb {
        let lo = if w == wa { a & 63 } else { 0 };
        let hi = if w == wb { ((b - 1) & 63) + 1 } else { 64 };
        f(w, (u64::MAX >> (64 - (hi - lo))) << lo);
    }
}

/// State of one frame, as reported by [`Buddy::frame_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameState {
    /// Part of a free block.
    Free,
    /// Part of a live allocation.
    Allocated,
    /// Reserved by [`Buddy::reserve_range`].
    Reserved,
    /// A hole: never added with [`Buddy::add_free_range`].
    Hole,
}

/// Counters of a [`Buddy`], for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuddyStats {
    /// Frames in the span (holes and reserved frames included).
    pub total_frames: usize,
    /// Frames currently free.
    pub free_frames: usize,
    /// Free blocks per order.
    pub free_blocks: [usize; ORDERS],
}

/// Bitmap buddy allocator over the frames `[base, base + n_frames * 4 KiB)`.
///
/// No method panics on bad input and every error leaves the state unchanged.
///
/// # State
///
/// Everything lives in the caller's `&mut [u64]`; per order `k` (block of
/// `2^k` frames) there are two bitmaps indexed by block number:
///
/// * **free**: bit set = the block is free and not part of a larger free
///   block (blocks are always fully coalesced: two free buddies are never both
///   set below [`MAX_ORDER`]). It is a 64-ary *hierarchical* bitmap: level 0 is
///   the leaf bitmap, each bit of level `l + 1` says "word of level `l` is
///   non-zero", up to a single top word. A per-order hint keeps the lowest
///   non-empty leaf word, so allocating is one load and one `trailing_zeros`;
///   when that word empties, the next one is found with one `trailing_zeros`
///   per level (4 levels for 4-64 GiB of order-0 frames), never a scan.
/// * **allocated**: bit set = a live allocation of exactly this order starts
///   at this block. It makes `free` an O(1) check that catches double frees,
///   wrong orders, reserved frames and holes.
///
/// Plus one **reserved** bitmap with a bit per frame: reservations are sticky,
/// so [`Buddy::reserve_range`] and [`Buddy::add_free_range`] give the same
/// result in either order (the kernel image stays reserved even if the memory
/// map later says its frames are usable). A frame neither free, allocated nor
/// reserved is a hole (never added). Per-order free counts plus a bitmask of
/// non-empty orders give the order to split from with one `trailing_zeros`.
///
/// Block numbers are relative to the span's base rounded down to a
/// [`MAX_ORDER`] block (4 MiB), so every block of order `k` is physically
/// aligned to `4 KiB << k` (2 MiB blocks can back huge pages). The frames
/// between that rounded origin and the base are permanent holes.
///
/// Allocation is address-ordered: the lowest free block of the smallest
/// non-empty order that fits, which keeps fragmentation low.
///
/// The batch calls work a bitmap word at a time: [`Buddy::alloc_batch`] takes
/// every free block of a leaf word at once and hands out a split block's
/// leading part without splitting it; [`Buddy::free_batch`] ORs consecutive
/// entries of one word in together and merges all buddy pairs of a word per
/// step (the parent of a word is one word).
///
/// Not thread-safe by itself (`&mut self`): the kernel puts each `Buddy`
/// behind a lock and lets per-CPU [`crate::Magazine`]s amortise it.
pub struct Buddy<'a> {
    bits: &'a mut [u64],
    /// Bitmask of orders with at least one free block.
    nonempty: u32,
    /// Per order, the lowest non-empty leaf word (`usize::MAX` if none): the
    /// common allocation reads it instead of descending the summary levels.
    first: [usize; ORDERS],
    free_blocks: [usize; ORDERS],
    /// Physical address of internal frame 0 (base rounded down to 4 MiB).
    origin: u64,
    base: u64,
    end: u64,
    n_frames: usize,
    layout: Layout,
}

/// `n` frames, at most [`MAX_SPAN_FRAMES`] (the layout of anything larger would need more
/// summary levels than the allocator has).
const fn capped(n: usize) -> usize {
    if n as u64 > MAX_SPAN_FRAMES {
        MAX_SPAN_FRAMES as usize
    } else {
        n
    }
}

impl<'a> Buddy<'a> {
    /// Storage words needed for a span of `n_frames` frames at any base.
    ///
    /// Assumes the worst alignment padding (1023 frames); use
    /// [`Buddy::words_needed_for`] for the exact figure. About 5 bits per
    /// frame (≈ 1/6500 of the span: 2.5 MiB for 16 GiB). A span above
    /// [`MAX_SPAN_FRAMES`] (which [`Buddy::new`] refuses) gets the figure for
    /// the largest span: until 2026-12-06 it panicked (found by review).
    pub const fn words_needed(n_frames: usize) -> usize {
        layout(capped(n_frames).saturating_add(MAX_BLOCK_FRAMES - 1)).words
    }

    /// Exact storage words needed for `n_frames` frames starting at
    /// `base_paddr` (which should be 4 KiB aligned); capped as
    /// [`Buddy::words_needed`].
    pub const fn words_needed_for(base_paddr: u64, n_frames: usize) -> usize {
        let pad = ((base_paddr % MAX_BLOCK_BYTES) >> FRAME_SHIFT) as usize;
        layout(capped(n_frames).saturating_add(pad)).words
    }

    /// Creates an allocator for `[base_paddr, base_paddr + n_frames * 4 KiB)`
    /// whose state lives in `storage` (zeroed here; words past
    /// [`Buddy::words_needed_for`] are left untouched). All frames start
    /// reserved: make them available with [`Buddy::add_free_range`].
    ///
    /// # Errors
    ///
    /// [`MmError::InvalidSpan`] if `base_paddr` is not 4 KiB aligned, the span
    /// overflows `u64` or exceeds [`MAX_SPAN_FRAMES`];
    /// [`MmError::StorageTooSmall`] if `storage` is too short.
    pub fn new(storage: &'a mut [u64], base_paddr: u64, n_frames: usize) -> Result<Self, MmError> {
        let bad = MmError::InvalidSpan {
            base: base_paddr,
            n_frames: n_frames as u64,
        };
        if !base_paddr.is_multiple_of(FRAME_SIZE) || n_frames as u64 > MAX_SPAN_FRAMES {
            return Err(bad);
        }
        let end = base_paddr
            .checked_add((n_frames as u64) << FRAME_SHIFT)
            .ok_or(bad)?;
        let origin = base_paddr & !(MAX_BLOCK_BYTES - 1);
        let first = ((base_paddr - origin) >> FRAME_SHIFT) as usize;
        let layout = layout(first + n_frames);
        if storage.len() < layout.words {
            return Err(MmError::StorageTooSmall {
                needed: layout.words,
                provided: storage.len(),
            });
        }
        let (bits, _) = storage.split_at_mut(layout.words);
        bits.fill(0);
        Ok(Self {
            bits,
            nonempty: 0,
            first: [usize::MAX; ORDERS],
            free_blocks: [0; ORDERS],
            origin,
            base: base_paddr,
            end,
            n_frames,
            layout,
        })
    }

    /// First physical address of the span.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Physical address just past the span.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Frames in the span, whatever their state.
    pub fn total_frames(&self) -> usize {
        self.n_frames
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> usize {
        let mut n = 0;
        for (k, c) in self.free_blocks.iter().enumerate() {
            n += c << k;
        }
        n
    }

    /// Free blocks of `order` (0 for an order above [`MAX_ORDER`]).
    pub fn free_blocks(&self, order: usize) -> usize {
        self.free_blocks.get(order).copied().unwrap_or(0)
    }

    /// All counters at once.
    pub fn stats(&self) -> BuddyStats {
        BuddyStats {
            total_frames: self.n_frames,
            free_frames: self.free_frames(),
            free_blocks: self.free_blocks,
        }
    }

    /// The bitmap words in use (for diagnostics and state comparison).
    pub fn bitmap_words(&self) -> &[u64] {
        self.bits
    }

    // ----------------------------------------------------------------- bits

    #[inline(always)]
    fn addr_of(&self, order: usize, i: usize) -> u64 {
        self.origin + ((i as u64) << (FRAME_SHIFT as usize + order))
    }

    #[inline(always)]
    fn test_free(&self, k: usize, i: usize) -> bool {
        (self.bits[self.layout.lvl[k][0] + (i >> 6)] >> (i & 63)) & 1 != 0
    }

    #[inline(always)]
    fn test_alloc(&self, k: usize, i: usize) -> bool {
        (self.bits[self.layout.alloc[k] + (i >> 6)] >> (i & 63)) & 1 != 0
    }

    /// Marks leaf word `w` of order `k` non-empty in the summary levels.
    #[inline(always)]
    fn summary_set(&mut self, k: usize, mut w: usize) {
        let lv = &self.layout.lvl[k];
        for &off in &lv[1..self.layout.depth[k]] {
            let slot = &mut self.bits[off + (w >> 6)];
            let old = *slot;
            *slot = old | (1 << (w & 63));
            if old != 0 {
                break;
            }
            w >>= 6;
        }
    }

    /// Marks leaf word `w` of order `k` empty in the summary levels.
    #[inline(always)]
    fn summary_clear(&mut self, k: usize, mut w: usize) {
        let lv = &self.layout.lvl[k];
        for &off in &lv[1..self.layout.depth[k]] {
            let slot = &mut self.bits[off + (w >> 6)];
            *slot &= !(1 << (w & 63));
            if *slot != 0 {
                break;
            }
            w >>= 6;
        }
    }

    /// Bookkeeping after leaf word `w` of order `k` went from empty to
    /// non-empty.
    #[inline(always)]
    fn word_filled(&mut self, k: usize, w: usize) {
        self.summary_set(k, w);
        self.nonempty |= 1 << k;
        self.first[k] = self.first[k].min(w);
    }

    /// Bookkeeping after leaf word `w` of order `k` went from non-empty to
    /// empty (the free count already updated).
    #[inline(always)]
    fn word_emptied(&mut self, k: usize, w: usize) {
        self.summary_clear(k, w);
        if self.free_blocks[k] == 0 {
            self.nonempty &= !(1 << k);
            self.first[k] = usize::MAX;
        } else if w == self.first[k] {
            // The summary levels are up to date: descend for the next one.
            self.first[k] = self.find_first_word(k);
        }
    }

    /// Sets `mask` (bits currently clear) in leaf word `word` of order `k`.
    #[inline(always)]
    fn set_free_mask(&mut self, k: usize, word: usize, mask: u64) {
        let leaf = &mut self.bits[self.layout.lvl[k][0] + word];
        let old = *leaf;
        *leaf = old | mask;
        self.free_blocks[k] += mask.count_ones() as usize;
        if old == 0 {
            self.word_filled(k, word);
        }
    }

    /// Clears `mask` (bits currently set) in leaf word `word` of order `k`.
    #[inline(always)]
    fn clear_free_mask(&mut self, k: usize, word: usize, mask: u64) {
        let leaf = &mut self.bits[self.layout.lvl[k][0] + word];
        *leaf &= !mask;
        let emptied = *leaf == 0;
        self.free_blocks[k] -= mask.count_ones() as usize;
        if emptied {
            self.word_emptied(k, word);
        }
    }

    #[inline(always)]
    fn set_free(&mut self, k: usize, i: usize) {
        self.set_free_mask(k, i >> 6, 1 << (i & 63));
    }

    #[inline(always)]
    fn clear_free(&mut self, k: usize, i: usize) {
        self.clear_free_mask(k, i >> 6, 1 << (i & 63));
    }

    /// Leaf word holding the lowest free block of order `k` (which must have
    /// one), found by descending the summary levels.
    #[inline]
    fn find_first_word(&self, k: usize) -> usize {
        let lv = &self.layout.lvl[k];
        let mut l = self.layout.depth[k] - 1;
        let mut i = 0;
        while l > 0 {
            i = (i << 6) | self.bits[lv[l] + i].trailing_zeros() as usize;
            l -= 1;
        }
        i
    }

    /// Lowest free block of order `k` (which must have one).
    #[inline(always)]
    fn find_first(&self, k: usize) -> usize {
        let w = self.first[k];
        (w << 6) | self.bits[self.layout.lvl[k][0] + w].trailing_zeros() as usize
    }

    /// Inserts free block `i` of order `k`, merging it with free buddies.
    #[inline(always)]
    fn insert_coalesce(&mut self, mut k: usize, mut i: usize) {
        while k < MAX_ORDER && self.test_free(k, i ^ 1) {
            self.clear_free(k, i ^ 1);
            i >>= 1;
            k += 1;
        }
        self.set_free(k, i);
    }

    /// Inserts the free blocks `add` (not free, buddies of each other or
    /// not) of leaf word `w` of order `k`, merging buddy pairs a whole word
    /// at a time up the orders: the parent of a word is a single word.
    fn insert_word_coalesce(&mut self, mut k: usize, mut w: usize, mut add: u64) {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        loop {
            let leaf = self.layout.lvl[k][0] + w;
            let old = self.bits[leaf];
            let mut new = old | add;
            // Bit 2j and 2j+1 both free: buddies (the old word has none).
            let pairs = if k < MAX_ORDER {
                new & (new >> 1) & EVEN
            } else {
                0
            };
            new &= !(pairs | (pairs << 1));
            self.bits[leaf] = new;
            self.free_blocks[k] =
                self.free_blocks[k] + add.count_ones() as usize - 2 * pairs.count_ones() as usize;
            if old == 0 && new != 0 {
                self.word_filled(k, w);
            } else if old != 0 && new == 0 {
                self.word_emptied(k, w);
            }
            if pairs == 0 {
                break;
            }
            add = compress_even(pairs) << ((w & 1) * 32);
            w >>= 1;
            k += 1;
        }
    }

    /// Whether any allocated bit of order `k` is set in blocks `[a, b)`.
    fn any_alloc(&self, k: usize, a: usize, b: usize) -> bool {
        let off = self.layout.alloc[k];
        let mut any = false;
        for_each_word(a, b, |w, m| any |= self.bits[off + w] & m != 0);
        any
    }

    /// Whether any free bit of order `k` is set in blocks `[a, b)`.
    fn any_free(&self, k: usize, a: usize, b: usize) -> bool {
        let off = self.layout.lvl[k][0];
        let mut any = false;
        for_each_word(a, b, |w, m| any |= self.bits[off + w] & m != 0);
        any
    }

    /// Whether any frame of internal frames `[s, e)` is part of a live
    /// allocation.
    fn range_has_alloc(&self, s: usize, e: usize) -> bool {
        (0..ORDERS).any(|k| {
            let b = (((e - 1) >> k) + 1).min(self.layout.blocks[k]);
            self.any_alloc(k, s >> k, b)
        })
    }

    /// Whether any frame of internal frames `[s, e)` is free.
    fn range_has_free(&self, s: usize, e: usize) -> bool {
        (0..ORDERS).any(|k| {
            let b = (((e - 1) >> k) + 1).min(self.layout.blocks[k]);
            self.any_free(k, s >> k, b)
        })
    }

    // ---------------------------------------------------------------- ranges

    /// Makes every free frame of internal frames `[s, e)` reserved (`s < e`).
    fn reserve_frames(&mut self, s: usize, e: usize) {
        for k in (0..ORDERS).rev() {
            let sz = 1usize << k;
            // Blocks wholly inside the range: drop them.
            let off = self.layout.lvl[k][0];
            let (a, b) = (s.div_ceil(sz), e >> k);
            for_each_word(a, b, |w, m| {
                let hit = self.bits[off + w] & m;
                if hit != 0 {
                    self.clear_free_mask(k, w, hit);
                }
            });
            if k == 0 {
                break;
            }
            // Blocks straddling an end of the range: split them, the halves
            // are dealt with at the next order down.
            let head = (s & (sz - 1) != 0).then_some(s >> k);
            let tail = (e & (sz - 1) != 0).then_some((e - 1) >> k);
            let tail = if tail == head { None } else { tail };
            for p in [head, tail].into_iter().flatten() {
                if p < self.layout.blocks[k] && self.test_free(k, p) {
                    self.clear_free(k, p);
                    self.set_free(k - 1, 2 * p);
                    self.set_free(k - 1, 2 * p + 1);
                }
            }
        }
    }

    /// Frees the non-free, non-allocated internal frames `[s, e)` as the
    /// largest aligned blocks, coalescing with free neighbours.
    fn free_frames_range(&mut self, s: usize, e: usize) {
        let mut p = s;
        while p < e {
            let fit = (usize::BITS - 1 - (e - p).leading_zeros()) as usize;
            let k = (p.trailing_zeros() as usize).min(fit).min(MAX_ORDER);
            self.insert_coalesce(k, p >> k);
            p += 1 << k;
        }
    }

    /// First frame in `[p, e)` whose reserved bit equals `set`, or `e`.
    fn next_resv(&self, p: usize, e: usize, set: bool) -> usize {
        let off = self.layout.resv;
        let flip = if set { 0 } else { u64::MAX };
        let mut w = p >> 6;
        let mut word = (self.bits[off + w] ^ flip) & (u64::MAX << (p & 63));
        loop {
            if word != 0 {
                return ((w << 6) | word.trailing_zeros() as usize).min(e);
            }
            w += 1;
            if w << 6 >= e {
                return e;
            }
            word = self.bits[off + w] ^ flip;
        }
    }

    /// Frees the unreserved frames of `[s, e)` (none allocated), as runs.
    fn free_unreserved(&mut self, s: usize, e: usize) {
        // Take the range out first so that already-free blocks do not get
        // inserted twice; re-inserting is canonical (full coalescing).
        self.reserve_frames(s, e);
        let mut p = s;
        while p < e {
            p = self.next_resv(p, e, false);
            let q = self.next_resv(p, e, true);
            self.free_frames_range(p, q);
            p = q;
        }
    }

    /// Sets (`true`) or clears the reserved bits of frames `[s, e)`.
    fn mark_reserved(&mut self, s: usize, e: usize, reserved: bool) {
        let off = self.layout.resv;
        for_each_word(s, e, |w, m| {
            let slot = &mut self.bits[off + w];
            *slot = if reserved { *slot | m } else { *slot & !m };
        });
    }

    /// Internal frame number of an address known to be in the span.
    #[inline(always)]
    fn frame_of(&self, paddr: u64) -> usize {
        ((paddr - self.origin) >> FRAME_SHIFT) as usize
    }

    /// `[start, end)` rounded inward to frames, as internal frames; `None`
    /// when empty.
    fn inner_frames(&self, start: u64, end: u64) -> Result<Option<(usize, usize)>, MmError> {
        if start > end {
            return Err(MmError::InvalidRange { start, end });
        }
        let Some(s) = start.checked_add(FRAME_SIZE - 1) else {
            return Ok(None);
        };
        let (s, e) = (s & !(FRAME_SIZE - 1), end & !(FRAME_SIZE - 1));
        if s >= e {
            return Ok(None);
        }
        if s < self.base {
            return Err(MmError::OutOfSpan { addr: s });
        }
        if e > self.end {
            return Err(MmError::OutOfSpan { addr: e });
        }
        Ok(Some((self.frame_of(s), self.frame_of(e))))
    }

    /// `[start, end)` rounded outward to frames and clipped to the span, as
    /// internal frames; `None` when empty.
    fn outer_frames(&self, start: u64, end: u64) -> Result<Option<(usize, usize)>, MmError> {
        if start > end {
            return Err(MmError::InvalidRange { start, end });
        }
        let s = (start & !(FRAME_SIZE - 1)).max(self.base);
        let e = end
            .checked_add(FRAME_SIZE - 1)
            .map_or(!(FRAME_SIZE - 1), |v| v & !(FRAME_SIZE - 1))
            .min(self.end);
        if s >= e {
            return Ok(None);
        }
        Ok(Some((self.frame_of(s), self.frame_of(e))))
    }

    /// Makes the frames of `[start, end)` available for allocation (a usable
    /// memory-map entry). The range is rounded *inward* to frame boundaries
    /// (an empty result is a no-op). Frames reserved with
    /// [`Buddy::reserve_range`] stay reserved, frames already free stay free,
    /// the others become free, inserted as the largest aligned blocks and
    /// coalesced with free neighbours. Can be called any number of times, in
    /// any order with [`Buddy::reserve_range`], before or after allocations.
    ///
    /// # Errors
    ///
    /// [`MmError::InvalidRange`] if `start > end`; [`MmError::OutOfSpan`] if
    /// the rounded range leaves the span; [`MmError::RangeInUse`] if it holds
    /// allocated frames. Nothing is changed on error.
    pub fn add_free_range(&mut self, start: u64, end: u64) -> Result<(), MmError> {
        let Some((fs, fe)) = self.inner_frames(start, end)? else {
            return Ok(());
        };
        if self.range_has_alloc(fs, fe) {
            return Err(MmError::RangeInUse { start, end });
        }
        self.free_unreserved(fs, fe);
        Ok(())
    }

    /// Reserves the frames of `[start, end)` (kernel image, boot structures,
    /// firmware areas): free frames there are taken out of circulation and the
    /// reservation is remembered, so a later [`Buddy::add_free_range`] over
    /// them does not free them. The range is rounded *outward* to frame
    /// boundaries and clipped to the span, so reserving memory outside the
    /// span is a harmless no-op. Large free blocks are split around the range.
    ///
    /// # Errors
    ///
    /// [`MmError::InvalidRange`] if `start > end`; [`MmError::RangeInUse`] if
    /// the range holds allocated frames. Nothing is changed on error.
    pub fn reserve_range(&mut self, start: u64, end: u64) -> Result<(), MmError> {
        let Some((fs, fe)) = self.outer_frames(start, end)? else {
            return Ok(());
        };
        if self.range_has_alloc(fs, fe) {
            return Err(MmError::RangeInUse { start, end });
        }
        self.mark_reserved(fs, fe, true);
        self.reserve_frames(fs, fe);
        Ok(())
    }

    /// Ends the reservation of `[start, end)` and makes its frames free (boot
    /// structures no longer needed). Rounded *inward* like
    /// [`Buddy::add_free_range`], which it equals after clearing the
    /// reservations; holes in the range become free too.
    ///
    /// # Errors
    ///
    /// As [`Buddy::add_free_range`]; nothing is changed on error.
    pub fn release_range(&mut self, start: u64, end: u64) -> Result<(), MmError> {
        let Some((fs, fe)) = self.inner_frames(start, end)? else {
            return Ok(());
        };
        if self.range_has_alloc(fs, fe) {
            return Err(MmError::RangeInUse { start, end });
        }
        self.mark_reserved(fs, fe, false);
        self.free_unreserved(fs, fe);
        Ok(())
    }

    // ---------------------------------------------------------- alloc / free

    /// Allocates a block of `2^order` frames, aligned to its size, and returns
    /// its physical address. Takes the lowest free block of the smallest
    /// non-empty order `>= order`, splitting it down.
    ///
    /// # Errors
    ///
    /// [`MmError::OutOfMemory`] if no block is large enough;
    /// [`MmError::InvalidOrder`] if `order > MAX_ORDER`.
    #[inline]
    pub fn alloc(&mut self, order: usize) -> Result<u64, MmError> {
        if order > MAX_ORDER {
            return Err(MmError::InvalidOrder { order });
        }
        let avail = self.nonempty >> order;
        if avail == 0 {
            return Err(MmError::OutOfMemory);
        }
        let k = order + avail.trailing_zeros() as usize;
        let mut i = self.find_first(k);
        self.clear_free(k, i);
        let mut j = k;
        while j > order {
            j -= 1;
            i <<= 1;
            self.set_free(j, i | 1);
        }
        self.bits[self.layout.alloc[order] + (i >> 6)] |= 1 << (i & 63);
        Ok(self.addr_of(order, i))
    }

    /// Validates a free of `paddr` at `order`; returns the block number.
    #[inline(always)]
    fn check_free(&self, paddr: u64, order: usize) -> Result<usize, MmError> {
        if order > MAX_ORDER {
            return Err(MmError::InvalidOrder { order });
        }
        if paddr < self.base || paddr >= self.end {
            return Err(MmError::OutOfSpan { addr: paddr });
        }
        let off = paddr - self.origin;
        if off & ((FRAME_SIZE << order) - 1) != 0 {
            return Err(MmError::Misaligned { addr: paddr, order });
        }
        let i = (off >> (FRAME_SHIFT as usize + order)) as usize;
        if i >= self.layout.blocks[order] || !self.test_alloc(order, i) {
            return Err(self.classify_bad_free(paddr, order));
        }
        Ok(i)
    }

    /// Why `paddr` (in the span, aligned) is not a live `order` allocation.
    #[cold]
    fn classify_bad_free(&self, paddr: u64, order: usize) -> MmError {
        let s = self.frame_of(paddr);
        let e = (s + (1 << order)).min(self.frame_of(self.end));
        if self.range_has_free(s, e) {
            MmError::DoubleFree { addr: paddr }
        } else {
            MmError::NotAllocated { addr: paddr, order }
        }
    }

    /// Frees the block of `2^order` frames at `paddr`, coalescing it with
    /// free buddies.
    ///
    /// # Errors
    ///
    /// [`MmError::InvalidOrder`], [`MmError::OutOfSpan`],
    /// [`MmError::Misaligned`], [`MmError::DoubleFree`] (part of the block is
    /// free) or [`MmError::NotAllocated`] (no live allocation of that order
    /// there). The state is unchanged on error.
    #[inline]
    pub fn free(&mut self, paddr: u64, order: usize) -> Result<(), MmError> {
        let i = self.check_free(paddr, order)?;
        self.bits[self.layout.alloc[order] + (i >> 6)] &= !(1 << (i & 63));
        self.insert_coalesce(order, i);
        Ok(())
    }

    /// Allocates up to `out.len()` blocks of `order` into `out` and returns
    /// how many (fewer only when memory runs out; 0 for an invalid order).
    ///
    /// Cheaper than repeated [`Buddy::alloc`]: free blocks are taken a whole
    /// bitmap word at a time, and when a larger block must be split its
    /// leading part is handed out directly and only the remainder is put back
    /// (at most `MAX_ORDER` insertions instead of one split chain per block).
    pub fn alloc_batch(&mut self, order: usize, out: &mut [u64]) -> usize {
        if order > MAX_ORDER {
            return 0;
        }
        let want = out.len();
        let alloc_off = self.layout.alloc[order];
        let mut n = 0;
        while n < want {
            if self.free_blocks[order] != 0 {
                let wi = self.first[order];
                let mut w = self.bits[self.layout.lvl[order][0] + wi];
                let mut taken = 0u64;
                while w != 0 && n < want {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    taken |= 1 << b;
                    out[n] = self.addr_of(order, (wi << 6) | b);
                    n += 1;
                }
                self.clear_free_mask(order, wi, taken);
                self.bits[alloc_off + wi] |= taken;
            } else {
                let avail = self.nonempty >> order;
                if avail == 0 {
                    break;
                }
                let k = order + avail.trailing_zeros() as usize;
                let i = self.find_first(k);
                self.clear_free(k, i);
                let span = 1usize << (k - order);
                let first = i << (k - order);
                let take = span.min(want - n);
                for (j, slot) in out[n..n + take].iter_mut().enumerate() {
                    *slot = self.addr_of(order, first + j);
                }
                for_each_word(first, first + take, |w, m| self.bits[alloc_off + w] |= m);
                // The remainder [take, span) as aligned blocks: each piece is
                // a right buddy whose left buddy was handed out.
                let mut p = take;
                while p < span {
                    let sz = p.trailing_zeros() as usize;
                    self.set_free(order + sz, (first + p) >> sz);
                    p += 1 << sz;
                }
                n += take;
            }
        }
        n
    }

    /// Frees `addrs`, all blocks of `order` (the per-CPU cache drain).
    ///
    /// Cheaper than repeated [`Buddy::free`]: runs of entries in the same
    /// bitmap word (e.g. frames that came from one `alloc_batch`) are
    /// inserted together and coalesced a word at a time. Any order of the
    /// entries is accepted.
    ///
    /// # Errors
    ///
    /// Stops at the first entry [`Buddy::free`] rejects: entries before
    /// [`BatchFreeError::index`] were freed, the rest were not.
    pub fn free_batch(&mut self, order: usize, addrs: &[u64]) -> Result<(), BatchFreeError> {
        if order > MAX_ORDER {
            return Err(BatchFreeError {
                index: 0,
                error: MmError::InvalidOrder { order },
            });
        }
        let alloc_off = self.layout.alloc[order];
        // Entries falling in the same leaf word in a row are inserted and
        // coalesced together, a word at a time.
        let (mut word, mut group) = (0, 0u64);
        for (index, &paddr) in addrs.iter().enumerate() {
            let i = match self.check_free(paddr, order) {
                Ok(i) => i,
                Err(first) => {
                    // Insert the pending group, then classify again so that
                    // a duplicate inside the batch reads as a double free.
                    if group != 0 {
                        self.insert_word_coalesce(order, word, group);
                    }
                    let error = self.check_free(paddr, order).err().unwrap_or(first);
                    return Err(BatchFreeError { index, error });
                }
            };
            self.bits[alloc_off + (i >> 6)] &= !(1 << (i & 63));
            if i >> 6 != word && group != 0 {
                self.insert_word_coalesce(order, word, group);
                group = 0;
            }
            word = i >> 6;
            group |= 1 << (i & 63);
        }
        if group != 0 {
            self.insert_word_coalesce(order, word, group);
        }
        Ok(())
    }

    /// State of the frame holding `paddr`.
    ///
    /// # Errors
    ///
    /// [`MmError::OutOfSpan`] if `paddr` is outside the span.
    pub fn frame_state(&self, paddr: u64) -> Result<FrameState, MmError> {
        if paddr < self.base || paddr >= self.end {
            return Err(MmError::OutOfSpan { addr: paddr });
        }
        let f = self.frame_of(paddr);
        Ok(if self.range_has_free(f, f + 1) {
            FrameState::Free
        } else if self.range_has_alloc(f, f + 1) {
            FrameState::Allocated
        } else if self.next_resv(f, f + 1, true) == f {
            FrameState::Reserved
        } else {
            FrameState::Hole
        })
    }
}

impl fmt::Debug for Buddy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buddy")
            .field("base", &format_args!("{:#x}", self.base))
            .field("end", &format_args!("{:#x}", self.end))
            .field("total_frames", &self.n_frames)
            .field("free_frames", &self.free_frames())
            .field("free_blocks", &self.free_blocks)
            .field("bitmap_words", &self.bits.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
