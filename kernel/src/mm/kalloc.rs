//! The kernel allocator: every allocation goes through here (it is the `GlobalAlloc`).
//!
//! * Pages: one bitmap buddy (`exo_mm::Buddy`) over all RAM behind a lock, and a per-CPU
//!   magazine of 4 KiB frames in the GS block, refilled and drained 32 at a time, so
//!   `alloc_frame` is a GS-relative pop with preemption held off: no lock, no atomic RMW.
//! * Objects: 14 size classes (`exo_mm::class_for`); each CPU has a magazine (a stack of up
//!   to 63 addresses) per class in its GS block (`exo_percpu::cache`); a miss refills 32
//!   objects from the class's global pool (an intrusive chain behind a lock per class), which
//!   carves new slabs from the buddy; a free into a full magazine first gives its 32 oldest
//!   (coldest) objects back to the pool.
//! * The fast paths (`alloc_frame`, `free_frame`, and the class paths of `try_alloc` and
//!   `free`) are `cache` leaf sections: a GS-relative pop or push bracketed by plain stores
//!   to the leaf byte, no guard counter, no LOCK, no interrupt save/restore.
//! * Cross-CPU frees go to the *freeing* CPU's magazine (objects are not owned by a CPU, only
//!   by a class): no remote-free list, no lock, no atomic on the fast path; the full-magazine
//!   drain bounds how much one CPU can hoard when a producer/consumer pair moves memory one
//!   way.
//! * A block of order >= 1 the buddy cannot give (after reclaiming empty slabs) is looked for
//!   among the frames this CPU's magazine holds: they go back to the buddy (coalescing) and
//!   the buddy is asked again. Only on that miss: the order-0 paths are untouched.
//! * Interrupt handlers must not allocate (the fast paths hold off preemption, not interrupts).
//!
//! This module is the kernel's second audited `unsafe` module: it links raw free objects.
#![allow(unsafe_code, reason = "the allocator links and hands out raw memory")]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_mm::{Buddy, SizeClass, class_for, page_order_for};
use exo_percpu::{PreemptGuard, cache};

/// Objects moved per refill or drain.
pub const BATCH: usize = cache::BATCH;
/// A CPU magazine holds at most this many objects; a free into a full one first gives the
/// `BATCH` oldest back to the pool.
pub const HIGH_WATER: usize = cache::SLOTS;

const _: () = assert!(SizeClass::COUNT <= cache::OBJ_CLASSES);

/// Allocation failed: out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl core::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "out of memory")
    }
}

/// A 4 KiB frame of RAM owned by the holder (not `Copy`: freeing consumes it). kalloc works
/// in the direct map (`exo_arch::layout`): a frame is held as its direct-map address, and
/// every heap pointer is one.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame(u64);

impl Frame {
    /// The frame at physical `pa`, for giving back a frame taken out of the kalloc world (a
    /// page table's, a stack page's): it must be a 4 KiB frame from `alloc_frame` that
    /// nothing else uses any more.
    pub fn from_phys(pa: u64) -> Frame {
        Frame(exo_arch::layout::phys_to_virt(pa))
    }
    /// Its physical address (for page tables).
    pub fn phys(&self) -> u64 {
        self.0 - exo_arch::layout::PHYS_OFFSET
    }
}

static BUDDY: spin::Mutex<Option<Buddy<'static>>> = spin::Mutex::new(None);

/// A class's global pool: a chain of free objects, and how many objects were ever carved.
struct Pool {
    head: usize,
    count: usize,
    carved: usize,
    slab_frames: usize,
}

static POOLS: [spin::Mutex<Pool>; SizeClass::COUNT] = [const {
    spin::Mutex::new(Pool {
        head: 0,
        count: 0,
        carved: 0,
        slab_frames: 0,
    })
}; SizeClass::COUNT];
static LARGE_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Takes over the remaining boot memory: `storage` words for the buddy's bitmaps (from
/// `memory`), the span `[base, base + frames * 4K)`, and the free ranges in it, all as
/// direct-map addresses.
pub fn init(
    storage: &'static mut [u64],
    base: u64,
    frames: usize,
    free: &[(u64, u64)],
) -> Result<usize, exo_mm::MmError> {
    let mut b = Buddy::new(storage, base, frames)?;
    for &(s, e) in free {
        b.add_free_range(s, e)?;
    }
    let n = b.free_frames();
    *BUDDY.lock() = Some(b);
    MANAGED_FRAMES.store(n as u64, Ordering::Relaxed);
    Ok(n)
}

/// Frames the allocator took over at boot.
static MANAGED_FRAMES: AtomicU64 = AtomicU64::new(0);

/// An upper bound of the frames that could ever be free (those managed since boot), read
/// without a lock: a request for more can be refused at once, before any work.
pub fn managed_frames() -> u64 {
    MANAGED_FRAMES.load(Ordering::Relaxed)
}

fn buddy_alloc(order: usize) -> Result<u64, OutOfMemory> {
    let _np = PreemptGuard::new();
    BUDDY
        .lock()
        .as_mut()
        .ok_or(OutOfMemory)?
        .alloc(order)
        .map_err(|_| OutOfMemory)
}

/// Order >= 1 misses that drained this CPU's frame magazine (tests, reports).
pub static LOCAL_DRAINS: AtomicU64 = AtomicU64::new(0);

/// The miss path of a block of `order >= 1` (a large allocation, a slab carve): the buddy
/// had none, but free frames may sit in this CPU's frame magazine, where they never
/// coalesce: it goes back to the buddy and the buddy is asked again. Until 2026-12-05 such
/// an allocation failed out of memory with the frames free in the magazine (on the "left"
/// list). Touches no pool and waits for nothing: safe under a pool's lock (`carve_slab`),
/// like `buddy_alloc`. Other CPUs' magazines are not asked: a first version posted them
/// drain requests and waited up to 20 ms, with a pool's lock held when a slab carve missed,
/// and a request a busy CPU had not answered kept its mailbox busy for every later
/// `run_on` (found by review); a CPU's magazine holds at most a few hundred frames.
#[cold]
fn buddy_alloc_from_magazines(order: usize) -> Result<u64, OutOfMemory> {
    let held = {
        let g = PreemptGuard::new();
        cache::len(&g, cache::PAGES)
    };
    if held == 0 {
        return Err(OutOfMemory);
    }
    LOCAL_DRAINS.fetch_add(1, Ordering::Relaxed);
    cache::drain_all(&KernelDepot, cache::PAGES);
    buddy_alloc(order)
}

fn buddy_free(pa: u64, order: usize) {
    let _np = PreemptGuard::new();
    if let Some(b) = BUDDY.lock().as_mut()
        && let Err(e) = b.free(pa, order)
    {
        panic!("kalloc: freeing frame {pa:#x} (order {order}): {e}");
    }
}

/// The global layer behind the per-CPU magazines: the class pools, and the buddy for frames.
struct KernelDepot;

/// [`KernelDepot`] for `carve_slab`, which holds a pool's lock: a frame magazine it finds
/// dry is refilled without reclaiming slabs (a reclaim takes every pool's lock).
struct CarveDepot;

impl cache::Depot for CarveDepot {
    fn take(&self, m: usize, out: &mut [usize]) -> usize {
        take_from_depot(m, out, false)
    }

    fn give(&self, m: usize, entries: &[usize]) {
        cache::Depot::give(&KernelDepot, m, entries);
    }
}

impl cache::Depot for KernelDepot {
    fn take(&self, m: usize, out: &mut [usize]) -> usize {
        take_from_depot(m, out, true)
    }

    fn give(&self, m: usize, entries: &[usize]) {
        give_to_depot(m, entries);
    }
}

/// The global layer's side of a refill: frames from the buddy (empty slabs reclaimed first
/// when it is dry, if `reclaim`), objects from the class's pool.
fn take_from_depot(m: usize, out: &mut [usize], reclaim: bool) -> usize {
    // No preemption while a global allocator lock is held: a thread preempted holding
    // it would stall every CPU that needs it, and deadlock one that spins on it with
    // interrupts off.
    let _np = PreemptGuard::new();
    if m == cache::PAGES {
        let mut frames = [0u64; BATCH + 1];
        let want = out.len().min(frames.len());
        let batch = |frames: &mut [u64]| match BUDDY.lock().as_mut() {
            Some(b) => b.alloc_batch(0, frames),
            None => 0,
        };
        let mut n = batch(&mut frames[..want]);
        // The buddy ran dry: empty slabs go back to it first (not for a carve, whose
        // pool's lock is held: `CarveDepot`).
        if n == 0 && reclaim && reclaim_empty_slabs() > 0 {
            n = batch(&mut frames[..want]);
        }
        for (o, &f) in out.iter_mut().zip(&frames[..n]) {
            *o = f as usize;
        }
        return n;
    }
    SizeClass::ALL.get(m).map_or(0, |&c| take_from_pool(c, out))
}

/// The global layer's side of a drain: frames to the buddy, objects to their pool.
fn give_to_depot(m: usize, entries: &[usize]) {
    let _np = PreemptGuard::new();
    if m == cache::PAGES {
        for chunk in entries.chunks(cache::SLOTS) {
            let mut frames = [0u64; cache::SLOTS];
            for (f, &e) in frames.iter_mut().zip(chunk) {
                *f = e as u64;
            }
            if let Some(b) = BUDDY.lock().as_mut()
                && let Err(e) = b.free_batch(0, &frames[..chunk.len()])
            {
                panic!("kalloc: draining frames: {e:?}");
            }
        }
        return;
    }
    if let Some(&c) = SizeClass::ALL.get(m) {
        give_back(c, entries);
    }
}

/// One 4 KiB frame (not zeroed): the per-CPU magazine, refilled from the buddy in batches.
#[inline]
pub fn alloc_frame() -> Result<Frame, OutOfMemory> {
    cache::alloc_or_refill(&KernelDepot, cache::PAGES)
        .map(|va| {
            unpoison(va);
            Frame(va as u64)
        })
        .ok_or(OutOfMemory)
}

/// Frames an allocation of `layout` takes from the buddy as a large allocation (0: it is a
/// slab object, or too large to be had).
pub fn large_frames_for(layout: Layout) -> u64 {
    if class_for(layout.size(), layout.align()).is_some() {
        return 0;
    }
    page_order_for(layout.size(), layout.align()).map_or(0, |o| 1 << o)
}

/// Gives a frame back (to this CPU's magazine; the 32 oldest go back when it is full).
#[inline]
pub fn free_frame(f: Frame) {
    let va = f.0 as usize;
    // Debug builds: a frame's start only (`Frame::from_phys` of another address is safe to
    // call; until 2026-12-06 it was taken, handed out again, and found only when the
    // magazine drained into the buddy; found by review).
    if cfg!(debug_assertions) && va & 0xfff != 0 {
        panic!("kalloc: free of {va:#x}, not the start of a frame");
    }
    // Debug builds: a frame's second word holds the keyed poison while it is free, as an
    // object's does. Until 2026-12-05 a frame freed twice sat twice in the magazine and
    // was handed to two owners (a page table and a user page), unseen (found by review).
    check_double_free(va, 4096);
    poison_word_only(va);
    cache::free_or_drain(&KernelDepot, cache::PAGES, va);
}

/// Allocates memory for `layout`, or `Err` when memory is exhausted.
#[inline]
pub fn try_alloc(layout: Layout) -> Result<NonNull<u8>, OutOfMemory> {
    if let Some(c) = class_for(layout.size(), layout.align()) {
        let p = cache::alloc_or_refill(&KernelDepot, c.index()).ok_or(OutOfMemory)?;
        unpoison(p);
        // SAFETY: magazines and pools hold only non-null object addresses.
        return Ok(unsafe { NonNull::new_unchecked(p as *mut u8) });
    }
    let order = page_order_for(layout.size(), layout.align()).ok_or(OutOfMemory)?;
    let pa = if order == 0 {
        alloc_frame()?.0
    } else {
        buddy_alloc(order)
            .or_else(|e| {
                if reclaim_empty_slabs() > 0 {
                    buddy_alloc(order)
                } else {
                    Err(e)
                }
            })
            .or_else(|_| buddy_alloc_from_magazines(order))?
    };
    LARGE_FRAMES.fetch_add(1 << order, Ordering::Relaxed);
    NonNull::new(pa as *mut u8).ok_or(OutOfMemory)
}

/// Frees memory from [`try_alloc`].
///
/// # Safety
/// `ptr` must come from `try_alloc(layout)` with this same `layout` and not be used again.
#[inline]
pub unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
    if let Some(c) = class_for(layout.size(), layout.align()) {
        if cfg!(debug_assertions) && !c.is_object_start(ptr.as_ptr() as u64) {
            panic!(
                "kalloc: free of {:p}, not the start of a {} B object",
                ptr.as_ptr(),
                c.size()
            );
        }
        check_double_free(ptr.as_ptr() as usize, c.size());
        poison(ptr.as_ptr() as usize, c.size());
        cache::free_or_drain(&KernelDepot, c.index(), ptr.as_ptr() as usize);
        return;
    }
    let Some(order) = page_order_for(layout.size(), layout.align()) else {
        return;
    };
    LARGE_FRAMES.fetch_sub(1 << order, Ordering::Relaxed);
    if order == 0 {
        free_frame(Frame(ptr.as_ptr() as u64));
    } else {
        buddy_free(ptr.as_ptr() as u64, order);
    }
}

/// Owned raw memory from [`try_alloc_owned`], freed on drop.
#[derive(Debug)]
pub struct Allocation {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Allocation {
    /// Start address.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `try_alloc(layout)` and is owned by this value alone.
        unsafe { free(self.ptr, self.layout) }
    }
}

/// Moves `v` to the heap for good (a fallible `Box::leak(Box::new(v))`): per-CPU state that
/// lives as long as the kernel, allocated where running out of memory must be an error
/// (bringing up hundreds of CPUs in little memory), not a panic.
pub fn try_leak<T>(v: T) -> Result<&'static mut T, OutOfMemory> {
    let mut b: alloc::vec::Vec<T> = alloc::vec::Vec::new();
    b.try_reserve_exact(1).map_err(|_| OutOfMemory)?;
    b.push(v);
    b.leak().first_mut().ok_or(OutOfMemory)
}

/// `Box::new(v)` that reports exhaustion as an error instead of stopping the kernel (the
/// global allocator's failure is a panic; stable Rust has no `Box::try_new`). For objects
/// a user program makes the kernel allocate.
pub fn try_box<T>(v: T) -> Result<alloc::boxed::Box<T>, OutOfMemory> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(alloc::boxed::Box::new(v));
    }
    let p = try_alloc(layout)?.cast::<T>().as_ptr();
    // SAFETY: `p` is fresh memory of `T`'s size and alignment from `try_alloc`, the global
    // allocator's own path (`KernelAllocator::alloc`), owned by nobody else: writing `v`
    // initialises it, and the `Box` frees it through `dealloc` with the same layout.
    unsafe {
        p.write(v);
        Ok(alloc::boxed::Box::from_raw(p))
    }
}

/// `n` values made by `f`, moved to the heap for good (fallibly, like [`try_leak`]): tables
/// sized at boot for the CPUs that exist.
pub fn try_leak_slice<T>(n: usize, f: impl FnMut() -> T) -> Result<&'static mut [T], OutOfMemory> {
    let mut v: alloc::vec::Vec<T> = alloc::vec::Vec::new();
    v.try_reserve_exact(n).map_err(|_| OutOfMemory)?;
    v.resize_with(n, f);
    Ok(v.leak())
}

/// Fallible allocation with an owner: `Err(OutOfMemory)` on exhaustion, freed on drop.
pub fn try_alloc_owned(layout: Layout) -> Result<Allocation, OutOfMemory> {
    try_alloc(layout).map(|ptr| Allocation { ptr, layout })
}

const FRESH: u64 = 0xA5A5_A5A5_A5A5_A5A5;

/// The secret of the poison word (debug builds; set once from the TSC at the first free):
/// a freed object's second word is `key ^ address`, which a live object's data cannot
/// hold by chance or on purpose (it would need the key). Until 2026-12-04 it was the fixed
/// 0xDEDE..DE: a live object holding those bytes (a buffer of user or network data) was
/// taken for a double free and stopped a debug kernel.
static POISON_KEY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[inline(always)]
fn poison_word(obj: usize) -> u64 {
    use core::sync::atomic::Ordering::Relaxed;
    let mut key = POISON_KEY.load(Relaxed);
    if key == 0 {
        let t = exo_arch::tsc::rdtsc();
        let new = (t ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1;
        key = match POISON_KEY.compare_exchange(0, new, Relaxed, Relaxed) {
            Ok(_) => new,
            Err(k) => k,
        };
    }
    key ^ obj as u64
}

/// Debug builds fill freed objects past the link word with 0xDE (the second word: the
/// keyed [`poison_word`]), so a use after free reads garbage that canaries notice, and a
/// second free of an object still poisoned is caught.
#[inline(always)]
fn poison(obj: usize, size: usize) {
    if cfg!(debug_assertions) {
        // SAFETY: the object is being freed by its owner (contract of `free`), so its bytes
        // are ours to overwrite; every class is at least 16 bytes.
        unsafe {
            core::ptr::write_bytes((obj + 16) as *mut u8, 0xDE, size - 16);
            ((obj + 8) as *mut u64).write(poison_word(obj));
        }
    }
}

/// Debug builds mark a handed-out object's second word, so a never-written object is not
/// mistaken for a freed one.
#[inline(always)]
fn unpoison(obj: usize) {
    if cfg!(debug_assertions) {
        // SAFETY: the object was just taken off a free list for this caller; 16 bytes at least.
        unsafe { ((obj + 8) as *mut u64).write(FRESH) };
    }
}

/// Debug builds: an object (or a frame, `size` 4096) whose second word still holds the
/// poison was already freed.
#[inline(always)]
fn check_double_free(obj: usize, size: usize) {
    if cfg!(debug_assertions) {
        // SAFETY: the caller frees an object of `size` (>= 16 bytes) or a frame it owned, so
        // the bytes are mapped and readable.
        let w = unsafe { ((obj + 8) as *const u64).read() };
        if w == poison_word(obj) {
            if size == 4096 {
                panic!("kalloc: double free of frame {obj:#x}: it is already poisoned");
            }
            panic!("kalloc: double free of {obj:#x} ({size} B object): it is already poisoned");
        }
    }
}

/// Debug builds: a freed frame's second word gets the keyed poison (the rest is left: a
/// frame's bytes are often a page table or user data nobody reads after the free).
#[inline(always)]
fn poison_word_only(frame: usize) {
    if cfg!(debug_assertions) {
        // SAFETY: the frame is being freed by its owner (contract of `Frame`).
        unsafe { ((frame + 8) as *mut u64).write(poison_word(frame)) };
    }
}

/// What [`double_free_selftest`] frees wrongly (`exo.double_free=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFree {
    /// A 64-byte object, twice (`=1`).
    Object,
    /// A 4 KiB frame, twice (`=frame`).
    Frame,
    /// An address 8 bytes into a frame, freed as a frame (`=inner`).
    Inner,
    /// An address 8 bytes into a 64-byte object, freed with the object's layout
    /// (`=inner_object`).
    InnerObject,
}

/// Debug self-test of the free checks ([`BadFree`]). It must panic at the bad free; returns
/// only if the check is missing.
pub fn double_free_selftest(what: BadFree) {
    let layout = Layout::new::<[u64; 8]>();
    match what {
        BadFree::Inner => {
            if let Ok(f) = alloc_frame() {
                free_frame(Frame::from_phys(f.phys() + 8));
            }
            return;
        }
        BadFree::InnerObject => {
            if let Ok(p) = try_alloc(layout) {
                // SAFETY: deliberately wrong, and only in a run that expects the panic this
                // provokes: `free` stops at its start check (debug builds) before it
                // touches the address. Release builds never call this.
                unsafe { free(p.add(8), layout) };
            }
            return;
        }
        BadFree::Frame | BadFree::Object => {}
    }
    if what == BadFree::Frame {
        if let Ok(f) = alloc_frame() {
            let pa = f.phys();
            free_frame(f);
            free_frame(Frame::from_phys(pa));
        }
        return;
    }
    if let Ok(p) = try_alloc(layout) {
        // SAFETY: deliberately wrong, and only in a run that expects the panic this provokes:
        // the first free is valid; the second is caught by `check_double_free` before the
        // object is touched again (debug builds). Release builds never call this.
        unsafe {
            free(p, layout);
            free(p, layout);
        }
    }
}

/// Reads the link word of a free object.
///
/// # Safety
/// `obj` must be a free object on a chain this code owns (pool or detached list).
unsafe fn next_of(obj: usize) -> usize {
    // SAFETY: per the contract, `obj` is a mapped free object whose first word is its link.
    unsafe { (obj as *const usize).read() }
}

/// Writes the link word of a free object.
///
/// # Safety
/// As for [`next_of`], and the caller owns `obj` exclusively.
unsafe fn set_next(obj: usize, next: usize) {
    // SAFETY: per the contract.
    unsafe { (obj as *mut usize).write(next) }
}

/// Detaches up to `out.len()` objects from the class's pool (carving a slab when it runs
/// low); returns how many (0: out of memory).
fn take_from_pool(c: SizeClass, out: &mut [usize]) -> usize {
    let mut pool = POOLS[c.index()].lock();
    if pool.count < out.len() && carve_slab(&mut pool, c).is_err() && pool.count == 0 {
        // A failed carve is not an error while the pool still has objects. Without any:
        // other classes' empty slabs back to the buddy (their locks are taken one at a
        // time: this one is let go first), then one more carve.
        drop(pool);
        let reclaimed = reclaim_empty_slabs();
        pool = POOLS[c.index()].lock();
        if reclaimed > 0 && pool.count < out.len() {
            let _ = carve_slab(&mut pool, c);
        }
    }
    let take = out.len().min(pool.count);
    for slot in &mut out[..take] {
        *slot = pool.head;
        // SAFETY: the pool's chain holds `count` free objects of this class.
        pool.head = unsafe { next_of(pool.head) };
    }
    pool.count -= take;
    take
}

/// Links `objs` (free objects of class `c` the caller owns) onto the class's pool.
fn give_back(c: SizeClass, objs: &[usize]) {
    let Some((&first, rest)) = objs.split_first() else {
        return;
    };
    let mut last = first;
    for &o in rest {
        // SAFETY: the caller owns these free objects; each links to the next.
        unsafe { set_next(last, o) };
        last = o;
    }
    let mut pool = POOLS[c.index()].lock();
    // SAFETY: as above; the chain's end now points at the pool's old head.
    unsafe { set_next(last, pool.head) };
    pool.head = first;
    pool.count += objs.len();
    POOL_GIVES.fetch_add(1, Ordering::Relaxed);
}

/// Objects given back to the pools (batches), and its value at the last slab reclaim: a
/// reclaim with nothing given back since the last one would find nothing new.
static POOL_GIVES: AtomicU64 = AtomicU64::new(0);
static RECLAIMED_AT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Slabs given back to the buddy by [`reclaim_empty_slabs`] (tests, reports).
pub static SLABS_RECLAIMED: AtomicU64 = AtomicU64::new(0);
/// Pool chains [`reclaim_empty_slabs`] found shorter than their count (an object freed twice in
/// a release build looped them) and cut there.
pub static CHAINS_CUT: AtomicU64 = AtomicU64::new(0);

/// The link words of a pool's chain, for `exo_mm::chain`.
struct PoolLinks;

impl exo_mm::chain::Links for PoolLinks {
    fn next(&self, obj: usize) -> usize {
        // SAFETY: only called on the chain of a pool whose lock the caller holds.
        unsafe { next_of(obj) }
    }
    fn set_next(&mut self, obj: usize, next: usize) {
        // SAFETY: as above; the pool's objects are free and the lock makes them the
        // caller's.
        unsafe { set_next(obj, next) }
    }
}

/// Gives back to the buddy every slab whose objects are all free in its class's pool;
/// returns the frames given back. Called when memory has run out: until 2026-12-05 a slab carved for one class kept its frames for good, and a
/// burst of small objects freed afterwards left every page allocation failing with the
/// memory free (found by review). Each pool is sorted by address in place under its lock
/// (`exo_mm::chain`, `O(n log n)`, no memory needed); skipped with interrupts off (a large
/// pool's sort must not hold them off) and when nothing was given back to a pool since the
/// last reclaim. Objects in the CPUs' magazines keep their slabs. Runs inside a magazine's
/// refill (the frame magazine's, or a class's carve): it touches no magazine, allocates
/// nothing and logs nothing (a chain found cut is counted: [`CHAINS_CUT`]).
///
/// One reclaim at a time: a CPU that finds one under way waits for its end and returns what
/// it gave back (its caller then tries the buddy again). Until 2026-12-05 the reclaim was
/// marked done when it began, and a second CPU that ran dry meanwhile was told nothing was
/// left and failed its allocation while the first was about to free the frames (found by
/// review; `kalloc.reclaim_under_way_is_waited_for`).
///
/// Public for a caller whose own allocation ran dry where no reclaim is made (interrupts
/// off, under another lock) and that can try again once it has them on (a spawn's stack:
/// `sched::Builder::spawn_then`): it returns 0 with interrupts off, or when nothing was
/// given back to a pool since the last reclaim.
pub fn reclaim_empty_slabs() -> usize {
    if !exo_arch::cpu::interrupts_enabled() {
        return 0;
    }
    let _np = PreemptGuard::new();
    let seen = RECLAIMS_DONE.load(Ordering::Acquire);
    let _one = match RECLAIM.try_lock() {
        Some(g) => g,
        None => {
            RECLAIM_WAITS.fetch_add(1, Ordering::Relaxed);
            RECLAIM.lock()
        }
    };
    if RECLAIMS_DONE.load(Ordering::Acquire) != seen {
        // Another CPU's reclaim ended while this one waited: what it gave back is in the
        // buddy now (a second pass right after would find nothing).
        return LAST_RECLAIM.load(Ordering::Relaxed) as usize;
    }
    let gives = POOL_GIVES.load(Ordering::Relaxed);
    if RECLAIMED_AT.swap(gives, Ordering::Relaxed) == gives {
        return 0;
    }
    #[cfg(debug_assertions)]
    reclaim_hold();
    let frames = reclaim_pools();
    LAST_RECLAIM.store(frames as u64, Ordering::Relaxed);
    RECLAIMS_DONE.fetch_add(1, Ordering::Release);
    frames
}

/// One slab reclaim at a time ([`reclaim_empty_slabs`]).
static RECLAIM: spin::Mutex<()> = spin::Mutex::new(());
/// Reclaims finished, and what the last gave back (frames).
static RECLAIMS_DONE: AtomicU64 = AtomicU64::new(0);
static LAST_RECLAIM: AtomicU64 = AtomicU64::new(0);
/// Reclaims that found another under way and waited for it (tests).
pub static RECLAIM_WAITS: AtomicU64 = AtomicU64::new(0);

/// Test support (debug builds): the next reclaim that gets past its checks stops there,
/// holding the reclaim, until [`release_reclaim`] (or about 2^31 spins).
#[cfg(debug_assertions)]
static HOLD_RECLAIM: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

#[cfg(debug_assertions)]
fn reclaim_hold() {
    if HOLD_RECLAIM
        .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        let mut spins = 0u64;
        while HOLD_RECLAIM.load(Ordering::Acquire) == 2 && spins < 1 << 31 {
            core::hint::spin_loop();
            spins += 1;
        }
        HOLD_RECLAIM.store(0, Ordering::Release);
    }
}

/// Test support (debug builds): arms the reclaim hold (and marks a pool given to, so the next
/// reclaim does not stop at its nothing-new check).
#[cfg(debug_assertions)]
pub fn hold_next_reclaim() {
    // Something given back since the last reclaim, so the next one gets past its check.
    POOL_GIVES.fetch_add(1, Ordering::Relaxed);
    HOLD_RECLAIM.store(1, Ordering::Release);
}

/// Test support (debug builds): whether a reclaim is held now.
#[cfg(debug_assertions)]
pub fn reclaim_held() -> bool {
    HOLD_RECLAIM.load(Ordering::Acquire) == 2
}

/// Test support (debug builds): lets a held reclaim go (and disarms the hold).
#[cfg(debug_assertions)]
pub fn release_reclaim() {
    HOLD_RECLAIM.store(3, Ordering::Release);
}

/// The reclaim itself ([`reclaim_empty_slabs`], its lock held): every pool's wholly free slabs.
fn reclaim_pools() -> usize {
    use exo_mm::chain::{sort_chain, take_free_slabs};
    let mut frames = 0;
    for c in SizeClass::ALL {
        let mut pool = POOLS[c.index()].lock();
        if pool.count < c.objects_per_slab() {
            continue;
        }
        let (head, len) = sort_chain(pool.head, pool.count, &mut PoolLinks);
        if len != pool.count {
            CHAINS_CUT.fetch_add(1, Ordering::Relaxed);
        }
        let mut slabs = 0;
        let (head, removed) = take_free_slabs(head, c, &mut PoolLinks, |base| {
            buddy_free(base, c.slab_order());
            slabs += 1;
        });
        pool.head = head;
        pool.count = len - removed;
        pool.carved -= removed;
        pool.slab_frames -= slabs << c.slab_order();
        frames += slabs << c.slab_order();
        SLABS_RECLAIMED.fetch_add(slabs as u64, Ordering::Relaxed);
    }
    frames
}

/// Carves one slab (`2^slab_order` frames) into free objects on the pool's chain.
fn carve_slab(pool: &mut Pool, c: SizeClass) -> Result<(), OutOfMemory> {
    let order = c.slab_order();
    // An order-0 slab from the frame magazine, refilled without a reclaim (`CarveDepot`:
    // a reclaim takes every pool's lock, and this one's is held).
    let base = if order == 0 {
        let va = cache::alloc_or_refill(&CarveDepot, cache::PAGES).ok_or(OutOfMemory)?;
        unpoison(va);
        va
    } else {
        // No slab reclaim here (this pool's lock is held), the magazines' frames are fine.
        buddy_alloc(order).or_else(|_| buddy_alloc_from_magazines(order))? as usize
    };
    let n = c.objects_per_slab();
    for i in (0..n).rev() {
        let obj = base + i * c.size();
        // SAFETY: the slab's frames were just allocated for this pool and are identity-mapped
        // RAM; each object lies inside the slab.
        unsafe { set_next(obj, pool.head) };
        pool.head = obj;
    }
    pool.count += n;
    pool.carved += n;
    pool.slab_frames += 1 << order;
    Ok(())
}

/// Fault injection for tests: while a `Hoard` lives, the heap is empty. [`Hoard::take_all`]
/// takes every frame and then every object of every size class (the caller drains the other
/// CPUs' caches first, and they must not allocate meanwhile), chaining them through their
/// first word; dropping it gives everything back.
#[derive(Debug)]
pub struct Hoard {
    frames: usize,
    objects: [usize; SizeClass::COUNT],
    /// Frames and objects held.
    pub count: usize,
}

impl Hoard {
    /// Empties the heap as seen from this CPU.
    pub fn take_all() -> Hoard {
        let mut h = Hoard {
            frames: 0,
            objects: [0; SizeClass::COUNT],
            count: 0,
        };
        let _ = h.take_rest();
        h
    }

    /// Takes every frame this CPU can get (its cache, then the buddy), and no object: the
    /// objects the heap holds stay allocatable, as long as no size class needs a new slab
    /// (a test of what fails when frames run out while small allocations still succeed).
    pub fn take_frames() -> Hoard {
        let mut h = Hoard {
            frames: 0,
            objects: [0; SizeClass::COUNT],
            count: 0,
        };
        h.take_frames_rest();
        h
    }

    /// The frames of [`Hoard::take_rest`].
    fn take_frames_rest(&mut self) {
        while let Ok(f) = alloc_frame() {
            // SAFETY: the frame was just allocated for us (identity-mapped RAM); its first
            // word links it to the previous one.
            unsafe { set_next(f.0 as usize, self.frames) };
            self.frames = f.0 as usize;
            self.count += 1;
        }
    }

    /// Takes whatever the heap gained since (frames and objects freed meanwhile); returns
    /// how many it took.
    pub fn take_rest(&mut self) -> usize {
        let had = self.count;
        self.take_frames_rest();
        for c in SizeClass::ALL {
            while let Some(p) = cache::alloc_or_refill(&KernelDepot, c.index()) {
                // SAFETY: as above, for an object of at least 16 bytes.
                unsafe { set_next(p, self.objects[c.index()]) };
                self.objects[c.index()] = p;
                self.count += 1;
            }
        }
        self.count - had
    }

    /// Frees up to `n` of the frames held (into this CPU's cache, as any free does); returns
    /// how many. A test's few frames left, without emptying the whole heap again for each
    /// count (`take_all` walks every frame: seconds at 1 GiB under TCG).
    pub fn release_frames(&mut self, n: usize) -> usize {
        let mut done = 0;
        while done < n && self.frames != 0 {
            let f = self.frames;
            // SAFETY: `f` is a frame this hoard took, linked through its first word.
            self.frames = unsafe { (f as *const usize).read() };
            free_frame(Frame(f as u64));
            self.count -= 1;
            done += 1;
        }
        done
    }
}

impl Drop for Hoard {
    fn drop(&mut self) {
        for c in SizeClass::ALL {
            let mut p = self.objects[c.index()];
            while p != 0 {
                // SAFETY: `p` is an object this hoard took, linked through its first word.
                let next = unsafe { (p as *const usize).read() };
                poison(p, c.size());
                cache::free_or_drain(&KernelDepot, c.index(), p);
                p = next;
            }
        }
        let mut f = self.frames;
        while f != 0 {
            // SAFETY: `f` is a frame this hoard took, linked through its first word.
            let next = unsafe { (f as *const usize).read() };
            free_frame(Frame(f as u64));
            f = next;
        }
    }
}

/// Moves all of this CPU's cached objects and frames back to the global layers (for tests
/// and statistics).
pub fn drain_this_cpu() {
    for c in SizeClass::ALL {
        cache::drain_all(&KernelDepot, c.index());
    }
    cache::drain_all(&KernelDepot, cache::PAGES);
}

/// What the calling CPU holds in its caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuStats {
    /// Free objects in this CPU's magazines, by size class (`SizeClass::index`).
    pub objects: [usize; SizeClass::COUNT],
    /// Frames in this CPU's magazine.
    pub frames: usize,
}

/// The calling CPU's cache contents (per class and frames).
pub fn this_cpu_stats() -> CpuStats {
    let g = PreemptGuard::new();
    let mut s = CpuStats {
        frames: cache::len(&g, cache::PAGES),
        ..CpuStats::default()
    };
    for c in SizeClass::ALL {
        s.objects[c.index()] = cache::len(&g, c.index());
    }
    s
}

/// Memory accounting (exact when every CPU's caches are drained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Frames free in the buddy.
    pub buddy_free: usize,
    /// Frames held by slabs (all classes).
    pub slab_frames: usize,
    /// Objects carved and not in a pool (live, or in a CPU list).
    pub objects_out: usize,
    /// Frames of live large allocations.
    pub large_frames: u64,
}

/// Current accounting.
pub fn stats() -> Stats {
    let _np = PreemptGuard::new();
    let mut s = Stats {
        buddy_free: BUDDY.lock().as_ref().map_or(0, |b| b.free_frames()),
        ..Stats::default()
    };
    for p in &POOLS {
        let p = p.lock();
        s.slab_frames += p.slab_frames;
        s.objects_out += p.carved - p.count;
    }
    s.large_frames = LARGE_FRAMES.load(Ordering::Relaxed);
    s
}

/// The kernel's `GlobalAlloc`: `null` on exhaustion (fallible callers use `try_alloc`, or
/// `Vec::try_reserve` and friends).
pub struct KernelAllocator;

// SAFETY: `try_alloc` returns memory of at least `layout.size()` bytes aligned to
// `layout.align()` (size classes are naturally aligned, pages are 4 KiB-aligned blocks), never
// handed out twice until freed; `free` takes back exactly such memory with its layout.
unsafe impl GlobalAlloc for KernelAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        try_alloc(layout).map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with this layout.
            unsafe { free(p, layout) };
        }
    }
}

#[global_allocator]
static ALLOCATOR: KernelAllocator = KernelAllocator;
