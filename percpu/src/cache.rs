//! Per-CPU allocation caches reached through `gs:` (the allocator's fast paths): one
//! magazine (a stack of up to [`SLOTS`] free addresses) per object size class, and one of
//! 4 KiB frames.
//!
//! # Fast paths: leaf sections
//! [`obj_alloc`], [`obj_free`], [`page_alloc`] and [`page_free`] are each *one* `asm!` block:
//! ```text
//! mov byte gs:[LEAF], 1        ; no preemption from here ...
//! mov n, gs:[mag]              ; length
//! sub n, 1 ; jb empty
//! mov v, gs:[mag + 8 + n*8]    ; the slot (its load is off the length's dependency chain)
//! mov gs:[mag], n
//! mov byte gs:[LEAF], 0        ; ... to here
//! ```
//! No LOCK prefix, no interrupt save/restore, no statistics, no read-modify-write of a
//! counter: the "leaf" byte next to the preempt count ([`crate::OFF_LEAF`]) is written with
//! plain stores, so back-to-back operations carry no dependency through it (the nesting
//! preempt count would chain an `inc`/`dec` pair of the same word into every operation).
//! A leaf section cannot nest (it is a single `asm!` block that calls nothing), so a plain
//! store of 0 at its end is exact. The scheduler preempts only when the whole preempt word
//! (count and leaf byte) is zero ([`crate::preemptible`]). Interrupt handlers never allocate.
//!
//! # Slow paths
//! Refill, drain and inspection ([`refill`], [`drain_oldest`], [`take_all`], [`len`]) take a
//! [`Pinned`] guard and work on the magazine through a pointer: they are not leaf sections.
//! [`alloc_or_refill`] and [`free_or_drain`] put both together over a [`Depot`] (the global
//! layer), so the exchange the kernel runs is the one the host tests run with threads.

use crate::{OFF_LEAF, Pinned};
use core::arch::asm;
use core::cell::UnsafeCell;

/// Object size classes with a per-CPU magazine (the kernel uses the first `exo_mm` count).
pub const OBJ_CLASSES: usize = 16;
/// Entries one magazine holds (the length word and the slots fill 512 bytes).
pub const SLOTS: usize = 63;
/// Index of the frame magazine (after the object classes).
pub const PAGES: usize = OBJ_CLASSES;
/// Magazines per CPU.
pub const MAGAZINES: usize = OBJ_CLASSES + 1;

/// Offset of the caches in the block (right after the hot header).
pub const OFF_CACHES: usize = 64;
/// Bytes per magazine (a power of two, so a class index scales with one shift).
pub const MAG_BYTES: usize = 512;

/// One magazine: `slots[..len]` are free addresses, the last one pushed on top.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Magazine {
    /// Entries in `slots[..len]`.
    pub len: usize,
    /// Free object addresses, or frame addresses for [`PAGES`]; never 0 (a leaf pop reads
    /// 0 as "empty", so an entry 0 would be lost: the kernel's frames are direct-map
    /// addresses, physical frame 0 is never one).
    pub slots: [usize; SLOTS],
}

impl Magazine {
    const EMPTY: Magazine = Magazine {
        len: 0,
        slots: [0; SLOTS],
    };
}

/// The caches of one CPU (inside its `PerCpu` block, at [`OFF_CACHES`]). Only the owning CPU
/// reads or writes them, through `gs:` or with a [`Pinned`] guard.
#[repr(C)]
pub struct Caches {
    mags: UnsafeCell<[Magazine; MAGAZINES]>,
}

// SAFETY: a block's caches are only touched by the CPU that installed the block (all access
// goes through `gs:` or through `this_caches` under a guard), never shared between CPUs.
unsafe impl Sync for Caches {}

impl Caches {
    /// Empty caches.
    pub const fn new() -> Self {
        Caches {
            mags: UnsafeCell::new([Magazine::EMPTY; MAGAZINES]),
        }
    }
}

impl Default for Caches {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Caches {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

const _: () = {
    assert!(core::mem::offset_of!(crate::PerCpu<u8>, caches) == OFF_CACHES);
    assert!(core::mem::size_of::<Magazine>() == MAG_BYTES);
    assert!(core::mem::size_of::<Caches>() == MAGAZINES * MAG_BYTES);
};

/// Pops the top of magazine `m` in a leaf section; `None` when it is empty.
#[inline(always)]
fn leaf_pop(m: usize) -> Option<usize> {
    debug_assert!(m < MAGAZINES);
    let base = (m % MAGAZINES) * MAG_BYTES;
    let v: usize;
    // SAFETY: GS points at this CPU's installed block (before any allocation can happen) and
    // `base` stays inside its caches; `len <= SLOTS` holds (only `leaf_push` and the guarded
    // functions below store it), so the slot read is in bounds. The leaf byte keeps the
    // scheduler off this CPU between the reads and the store, and interrupt handlers never
    // touch the caches, so the section cannot interleave with another access to them.
    unsafe {
        asm!(
            "mov byte ptr gs:[{leaf}], 1",
            "mov {n}, qword ptr gs:[{base} + {off}]",
            "xor {v:e}, {v:e}",
            "sub {n}, 1",
            "jb 2f",
            "mov {v}, qword ptr gs:[{base} + {n} * 8 + {off} + 8]",
            "mov qword ptr gs:[{base} + {off}], {n}",
            "2:",
            "mov byte ptr gs:[{leaf}], 0",
            base = in(reg) base,
            n = out(reg) _,
            v = out(reg) v,
            off = const OFF_CACHES,
            leaf = const OFF_LEAF,
            options(nostack),
        );
    }
    if v == 0 { None } else { Some(v) }
}

/// Pushes `v` on magazine `m` in a leaf section: `Ok(new length)`, or `Err(v)` when full.
#[inline(always)]
fn leaf_push(m: usize, v: usize) -> Result<usize, usize> {
    debug_assert!(m < MAGAZINES && v != 0);
    let base = (m % MAGAZINES) * MAG_BYTES;
    let n: usize;
    // SAFETY: as in `leaf_pop`; the slot store happens only when `len < SLOTS`.
    unsafe {
        asm!(
            "mov byte ptr gs:[{leaf}], 1",
            "mov {n}, qword ptr gs:[{base} + {off}]",
            "cmp {n}, {slots}",
            "jae 3f",
            "mov qword ptr gs:[{base} + {n} * 8 + {off} + 8], {v}",
            "add {n}, 1",
            "mov qword ptr gs:[{base} + {off}], {n}",
            "jmp 2f",
            "3:",
            "xor {n:e}, {n:e}",
            "2:",
            "mov byte ptr gs:[{leaf}], 0",
            base = in(reg) base,
            v = in(reg) v,
            n = out(reg) n,
            off = const OFF_CACHES,
            leaf = const OFF_LEAF,
            slots = const SLOTS,
            options(nostack),
        );
    }
    if n == 0 { Err(v) } else { Ok(n) }
}

/// Takes a free object of `class` from this CPU's magazine (`None` when it is empty).
#[inline(always)]
pub fn obj_alloc(class: usize) -> Option<usize> {
    debug_assert!(class < OBJ_CLASSES);
    leaf_pop(class % OBJ_CLASSES)
}

/// Puts a free object of `class` in this CPU's magazine: `Ok(new length)`, or `Err(obj)`
/// when the magazine is full (the caller drains it and tries again). The magazine stores the
/// address only; it never reads or writes the object.
#[inline(always)]
pub fn obj_free(class: usize, obj: usize) -> Result<usize, usize> {
    debug_assert!(class < OBJ_CLASSES);
    leaf_push(class % OBJ_CLASSES, obj)
}

/// Takes a frame from this CPU's frame magazine.
#[inline(always)]
pub fn page_alloc() -> Option<u64> {
    leaf_pop(PAGES).map(|pa| pa as u64)
}

/// Puts a frame in this CPU's frame magazine: `Ok(new length)`, or `Err(pa)` when full.
#[inline(always)]
pub fn page_free(pa: u64) -> Result<usize, u64> {
    leaf_push(PAGES, pa as usize).map_err(|v| v as u64)
}

/// Runs `f` on this CPU's magazine `m` (a class index, or [`PAGES`]), for guarded slow
/// paths. The borrow cannot outlive `f`, so two of them never overlap.
fn with_mag<R>(g: &impl Pinned, m: usize, f: impl FnOnce(&mut Magazine) -> R) -> R {
    let caches = crate::this_caches(g);
    // SAFETY: the block is this CPU's and the guard keeps us on it; only this CPU touches
    // its caches, leaf sections cannot run while this code runs (they do not nest into it,
    // interrupt handlers do not use the caches), and `f` gets the only reference for its
    // duration (`f` is handed plain data and cannot reach the caches otherwise).
    let all = unsafe { &mut *caches.mags.get() };
    f(&mut all[m % MAGAZINES])
}

/// Entries in this CPU's magazine `m` (a class index, or [`PAGES`]).
#[inline]
pub fn len(g: &impl Pinned, m: usize) -> usize {
    with_mag(g, m, |mg| mg.len)
}

/// Pushes `items` (oldest first) on magazine `m`; returns how many fit (the rest stay the
/// caller's).
pub fn refill(g: &impl Pinned, m: usize, items: &[usize]) -> usize {
    debug_assert!(!items.contains(&0), "a magazine entry 0");
    with_mag(g, m, |mg| {
        let n = items.len().min(SLOTS - mg.len);
        mg.slots[mg.len..mg.len + n].copy_from_slice(&items[..n]);
        mg.len += n;
        n
    })
}

/// Removes up to `out.len()` of the *oldest* entries (the bottom of the stack: the coldest
/// objects) into `out`, keeping the recently freed, cache-hot ones; returns how many.
pub fn drain_oldest(g: &impl Pinned, m: usize, out: &mut [usize]) -> usize {
    with_mag(g, m, |mg| {
        let n = out.len().min(mg.len);
        out[..n].copy_from_slice(&mg.slots[..n]);
        mg.slots.copy_within(n..mg.len, 0);
        mg.len -= n;
        n
    })
}

/// Empties magazine `m`, handing every entry to `f` (newest first).
pub fn take_all(g: &impl Pinned, m: usize, mut f: impl FnMut(usize)) {
    let mg = with_mag(g, m, |mg| {
        let copy = *mg;
        mg.len = 0;
        copy
    });
    for &v in mg.slots[..mg.len].iter().rev() {
        f(v);
    }
}

/// Entries moved per refill or drain between a magazine and its [`Depot`].
pub const BATCH: usize = 32;

const _: () = assert!(BATCH < SLOTS);

/// The global layer behind the magazines: where a miss refills from and a full magazine
/// drains to (in the kernel: the per-class slab pools, and the buddy for [`PAGES`]). Called
/// without any guard held, so it may take locks; it must not itself allocate from the
/// magazine `m` it is serving.
pub trait Depot {
    /// Moves up to `out.len()` free entries of magazine kind `m` into `out`, returns how
    /// many (0: exhausted).
    fn take(&self, m: usize, out: &mut [usize]) -> usize;
    /// Takes back free entries of magazine kind `m`, which the caller gives up.
    fn give(&self, m: usize, entries: &[usize]);
}

/// The allocation path: a leaf pop, or on a miss a refill of `BATCH` entries from `depot`
/// plus one for the caller (`None` when the depot is exhausted).
#[inline(always)]
pub fn alloc_or_refill(depot: &impl Depot, m: usize) -> Option<usize> {
    match leaf_pop(m % MAGAZINES) {
        Some(v) => Some(v),
        None => refill_from(depot, m % MAGAZINES),
    }
}

/// The free path: a leaf push, or into a full magazine: its `BATCH` oldest entries go back
/// to `depot` first.
#[inline(always)]
pub fn free_or_drain(depot: &impl Depot, m: usize, v: usize) {
    if let Err(v) = leaf_push(m % MAGAZINES, v) {
        drain_to(depot, m % MAGAZINES, v);
    }
}

/// Slow path of [`alloc_or_refill`].
#[cold]
pub fn refill_from(depot: &impl Depot, m: usize) -> Option<usize> {
    let mut got = [0usize; BATCH + 1];
    let n = depot.take(m, &mut got);
    if n == 0 {
        return None;
    }
    // The depot ran unguarded (it may block), so this may be another CPU than the one that
    // missed, and its magazine may have filled meanwhile: what does not fit goes back.
    let g = crate::PreemptGuard::new();
    let kept = refill(&g, m, &got[1..n]);
    drop(g);
    if 1 + kept < n {
        depot.give(m, &got[1 + kept..n]);
    }
    Some(got[0])
}

/// Slow path of [`free_or_drain`]: the `BATCH` oldest (coldest) entries go back, `extra`
/// (the one being freed, cache-hot) takes a slot at the top.
#[cold]
pub fn drain_to(depot: &impl Depot, m: usize, extra: usize) {
    let mut out = [0usize; BATCH + 1];
    let g = crate::PreemptGuard::new();
    let mut n = drain_oldest(&g, m, &mut out[..BATCH]);
    if refill(&g, m, &[extra]) == 0 {
        out[n] = extra;
        n += 1;
    }
    drop(g);
    depot.give(m, &out[..n]);
}

/// Gives every entry of this CPU's magazine `m` back to `depot`.
pub fn drain_all(depot: &impl Depot, m: usize) {
    let mut out = [0usize; SLOTS];
    let g = crate::PreemptGuard::new();
    let n = drain_oldest(&g, m, &mut out);
    drop(g);
    depot.give(m, &out[..n]);
}
