//! User address spaces: anonymous mappings committed when they are made (every page gets
//! its zeroed frame at `map`, so touching memory `map` granted never fails later and a map
//! the kernel cannot back fails with `NoMemory`), or demand-zero mappings ([`AddressSpace::map_lazy`],
//! the initial stack): charged in full when they are made as well, their frames allocated
//! and zeroed at the first touch of each page ([`AddressSpace::fault_in`], from the page
//! fault), unmapping and protection changes with a
//! TLB shootdown to every CPU that may cache the old translation *before* the call returns
//! and before any freed frame is reused, and the loader's writes into a space it is building.
//!
//! Every frame a space takes is charged to its [`Account`] (`mm::commit`) before it is
//! allocated: the root table at creation, the pages of a map (one charge per call), each new
//! page table; frames freed while the space lives are uncharged by the call that frees them,
//! and the rest goes back with the account when the space is dropped.

use crate::mm::commit::Account;
use crate::mm::kalloc::{self, Frame};
use crate::mm::memory::KernelFrames;
use crate::mm::space::Space;
use crate::smp::tlb::{self, Request};
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::layout::USER_END;
use exo_arch::paging::{FrameSource, MapError, PageTables, UserFlags};

const PAGE: u64 = 4096;

use crate::sched::Held;
pub use crate::sched::HoldPoint;

/// An address space's tables, locked and counted ([`AddressSpace::tables`]).
type Tables<'a> = Held<spin::MutexGuard<'a, PageTables>>;

/// [`AddressSpace::unmap`] stops here after it checked its range and before it takes the
/// tables' lock, so a test can map a shared region in that window.
pub static UNMAP_HOLD: HoldPoint = HoldPoint::new();
/// [`AddressSpace::map`] stops here, tables' lock held, once it has mapped the first page
/// of a range of two pages or more, so a test can let other CPUs cache that page's
/// translation before the map fails and gives the page back.
pub static MAP_HOLD: HoldPoint = HoldPoint::new();

/// [`AddressSpace::fault_in`] stops here with a zeroed frame for a demand-zero page it
/// found, before it takes the tables' lock again to map it, so a test can have another
/// thread fault on the same page and map it first.
pub static FAULT_HOLD: HoldPoint = HoldPoint::new();
/// Demand-zero pages [`AddressSpace::fault_in`] brought in (tests, reports).
pub static FAULTS_FILLED: AtomicU64 = AtomicU64::new(0);
/// Times [`AddressSpace::fault_in`] found, with its frame in hand, that the page was no
/// longer a demand-zero page to fill (another thread had brought it in, or it was unmapped
/// or protected meanwhile) and gave the frame back.
pub static FAULTS_RACED: AtomicU64 = AtomicU64::new(0);
/// Test support: the page whose races (as [`FAULTS_RACED`]) [`RACES_AT_WATCHED`] counts and
/// whose faults alone [`FAULT_HOLD`] holds (0: none counted, any held). A test that races
/// two threads on one page looks at that page only: the process's other first touches may
/// race too (its two threads on their shared top page: seen in a debug kernel at -smp 4,
/// where the second thread started sooner, and the test counted two races).
pub static RACE_WATCH: AtomicU64 = AtomicU64::new(0);
/// Races on the page [`RACE_WATCH`] names.
pub static RACES_AT_WATCHED: AtomicU64 = AtomicU64::new(0);

/// What [`AddressSpace::fault_in`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// The page got its zeroed frame: retry the access.
    Mapped,
    /// The page is not (or no longer) a demand-zero page to fill, but something is mapped
    /// there now (another thread brought it in): retry the access, which faults again if
    /// the page does not allow it.
    Retry,
    /// No demand-zero page the access may touch: the fault stands.
    Refused,
    /// No frame to be had: the fault stands, for want of memory.
    NoMemory,
}

/// Lowest address a mapping may use (the first 64 KiB stay unmapped: null-pointer guard).
pub const USER_MIN: u64 = 0x1_0000;
/// Where mappings without a fixed address start (above any static executable).
pub const MMAP_BASE: u64 = 0x10_0000_0000;

/// Why a mapping call failed (the system calls turn these into errnos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmError {
    /// The kernel cannot back the request (`-ENOMEM`).
    NoMemory,
    /// Unaligned or empty (`-EINVAL`).
    Invalid,
    /// Outside the user range `[USER_MIN, USER_END)`, a length that wraps when rounded up
    /// to a page among them (`-ENOMEM` for a map or a protection change, `-EINVAL` for an
    /// unmap, as Linux).
    OutOfRange,
    /// Part of the range is already mapped (`-EEXIST` for a fixed map).
    Exists,
    /// Part of the range is not mapped (`-ENOMEM`, as Linux's mprotect).
    NotMapped,
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            VmError::NoMemory => "out of memory",
            VmError::Invalid => "invalid range",
            VmError::OutOfRange => "outside user space",
            VmError::Exists => "range already mapped",
            VmError::NotMapped => "range not mapped",
        })
    }
}

/// One process's address space.
#[derive(Debug)]
pub struct AddressSpace {
    space: Space,
    /// Next address for mappings without a fixed one (bump; unmapped holes are not reused).
    next: AtomicU64,
    /// User pages mapped now.
    pages: AtomicU64,
    /// Shared regions mapped here (`super::shm`): (address, pages, region tag); their frames
    /// belong to the region, not to these tables.
    shared: spin::Mutex<[(u64, u64, u64); MAX_SHARED]>,
    /// Table frames an unmap emptied, kept (at most three; 0: none) for this space's next
    /// maps, which take them back instead of allocating and zeroing a frame: they are zero
    /// (this kernel writes only 0 into an entry it clears). Without them a page mapped and
    /// unmapped in an otherwise empty GiB cost a page table and a directory, allocated and
    /// zeroed, each time (icount `mmap.4k` 1578 -> 2112 when directories began to be given
    /// back). Read and written under the tables' lock, put there only after the shootdown
    /// that unlinked them; freed with the space.
    spare: [AtomicU64; 3],
    /// What this space holds of user memory (`mm::commit`): the root, its page tables (the
    /// spare ones too), its pages, and the shared regions it created. Declared last: dropped
    /// after `space` freed the frames, its own frames then leave the global charge.
    account: Account,
}

/// The frames for new page tables of a space: its spare ones first ([`AddressSpace`]'s
/// `spare`; tables' lock held; charged already), then zeroed frames of the allocator, each
/// charged to the space's account first (a table over the limit fails the map as a table
/// the allocator cannot give does: `NoMemory`). Without that charge a process mapping single
/// pages 2 MiB apart cost the kernel a frame per page that no limit saw.
struct Spares<'a>(&'a [AtomicU64; 3], &'a Account);

impl FrameSource for Spares<'_> {
    fn alloc_zeroed_frame(&mut self) -> Option<u64> {
        match self.0.iter().find(|s| s.load(Ordering::Relaxed) != 0) {
            Some(s) => Some(s.swap(0, Ordering::Relaxed)),
            None => self.fresh(),
        }
    }
}

impl Spares<'_> {
    /// A new table frame, charged first. Out of line: inlined, it made the table walk's
    /// step too large to inline into `map_user_4k` (three calls per map, icount `mmap.4k`
    /// +55 instructions), and a fresh table is zeroed anyway (hundreds of instructions).
    #[cold]
    #[inline(never)]
    fn fresh(&self) -> Option<u64> {
        self.1.charge(1).ok()?;
        let f = KernelFrames.alloc_zeroed_frame();
        if f.is_none() {
            self.1.uncharge(1);
        }
        f
    }
}

/// Shared regions one space may map.
pub const MAX_SHARED: usize = 8;

/// Most entries of one list of a `take` batch (`AddressSpace::take_with`): 512 KiB, a
/// buddy block of order 7; a full batch is shot down and freed before the next begins.
const TAKE_BATCH: usize = 64 * 1024;

/// Test support (debug builds): the most entries a list of a `take` batch may hold (0:
/// [`TAKE_BATCH`]), as if the allocator could not grow it past that.
#[cfg(debug_assertions)]
static TAKE_LIST_CAP: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Test support (debug builds): caps the lists of every `take` batch at `n` entries (0: no
/// cap but [`TAKE_BATCH`]); returns the cap before.
#[cfg(debug_assertions)]
pub fn set_take_list_cap(n: usize) -> usize {
    TAKE_LIST_CAP.swap(n, Ordering::Relaxed)
}

/// Pages a take freed on their own, its lists having no room even when emptied (no memory
/// for their first entries), for tests.
pub static TAKES_UNLISTED: AtomicU64 = AtomicU64::new(0);

/// Whether list `v` of a `take` batch has room for `k` more entries (grown if it can be).
fn room(v: &mut alloc::vec::Vec<u64>, k: usize) -> bool {
    #[cfg(debug_assertions)]
    {
        let cap = TAKE_LIST_CAP.load(Ordering::Relaxed);
        if cap != 0 && v.len() + k > cap {
            return false;
        }
    }
    v.len() + k <= TAKE_BATCH && v.try_reserve(k).is_ok()
}

/// Checks `[va, va + len)`: page-aligned, non-empty, inside `[USER_MIN, USER_END)` (a
/// length that wraps when rounded up to a page is not: `OutOfRange`, as Linux's
/// `PAGE_ALIGN(len)` gives `ENOMEM` for `mmap` and `mprotect`; until 2026-12-06 it was
/// `Invalid`, `EINVAL`, found by review).
fn range(va: u64, len: u64) -> Result<u64, VmError> {
    if !va.is_multiple_of(PAGE) || len == 0 {
        return Err(VmError::Invalid);
    }
    let len = len
        .checked_next_multiple_of(PAGE)
        .ok_or(VmError::OutOfRange)?;
    let end = va.checked_add(len).ok_or(VmError::OutOfRange)?;
    if va < USER_MIN || end > USER_END {
        return Err(VmError::OutOfRange);
    }
    Ok(len / PAGE)
}

impl AddressSpace {
    /// An empty space; `NoMemory` when its root table cannot be had or would pass the
    /// commit limits.
    pub fn new() -> Result<AddressSpace, VmError> {
        let n = crate::smp::cpus::capacity() as u32;
        let account = Account::new();
        // The root table.
        account.charge(1).map_err(|_| VmError::NoMemory)?;
        // A failed `Space::new` took no frame: the account goes with its charge.
        Ok(AddressSpace {
            space: Space::new(n).map_err(|_| VmError::NoMemory)?,
            next: AtomicU64::new(MMAP_BASE),
            pages: AtomicU64::new(0),
            spare: [const { AtomicU64::new(0) }; 3],
            shared: spin::Mutex::new([(0, 0, 0); MAX_SHARED]),
            account,
        })
    }

    /// What this space holds of user memory (`mm::commit`).
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The tables, locked. Never with interrupts off: a holder may wait (`unmap`,
    /// `protect`, a failed `map`) for every CPU that loaded the space to answer a TLB
    /// shootdown, and one spinning here with interrupts off never answers (a thread's end
    /// did, from a trap: the fuzzer's "TLB shootdown: CPU 1 did not answer" at -smp 8).
    /// Held with interrupts on, so counted ([`Held`]): a thread failing with it is not
    /// ended alone; taken by [`Held::take`], which yields to a holder this CPU preempted.
    #[track_caller]
    fn tables(&self) -> Tables<'_> {
        debug_assert!(
            exo_arch::cpu::interrupts_enabled(),
            "an address space's tables locked with interrupts off (a shootdown could deadlock)"
        );
        Held::take(|| self.space.tables.try_lock())
    }

    /// Test switch (`exo.panic_holding_tables`): panics with the tables locked, as a bug in
    /// a map loop would.
    pub fn panic_holding_tables(&self) -> ! {
        let _t = self.tables();
        panic!("deliberate panic with an address space's tables locked (exo.panic_holding_tables)")
    }

    /// Is the tables' lock free now? (tests)
    pub fn tables_free(&self) -> bool {
        self.space.tables.try_lock().is_some()
    }

    /// The page-table side (what the scheduler loads).
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// User pages mapped now.
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    /// Maps `len` bytes of zeroed memory at `va` (or at an address the kernel picks) with
    /// `w`/`x` permissions (never both); all or nothing. Returns the address.
    ///
    /// Without a fixed address the kernel takes the first free range at or above its
    /// cursor (skipping pages a fixed map took; a guard page is left above each range) and
    /// moves the cursor past it only when the map succeeds: a refused or failed map uses up
    /// no address space. Everything happens under the tables' lock.
    pub fn map(&self, va: Option<u64>, len: u64, w: bool, x: bool) -> Result<u64, VmError> {
        self.map_flags(va, len, UserFlags::new(w, x))
    }

    /// [`AddressSpace::map`] with `flags` (`UserFlags::NONE`: pages mapped, each with its
    /// zeroed frame, that every access faults on until `protect` gives access).
    pub fn map_flags(&self, va: Option<u64>, len: u64, flags: UserFlags) -> Result<u64, VmError> {
        self.map_in::<false>(va, len, flags)
    }

    /// [`AddressSpace::map_flags`] of demand-zero pages: the same checks, the same charge
    /// (every page, now: no overcommit, so the first touch of a page never finds the
    /// commit limit in its way), but no frame yet. Each page is mapped without one (not
    /// present); the first access the rights allow, from ring 3 or from a user copy in the
    /// kernel, faults, and the fault brings in a zeroed frame ([`AddressSpace::fault_in`])
    /// and retries the access. Until then the page counts as mapped (`pages`, `unmap`,
    /// `protect`, fixed maps over it) but is not resident (`phys`, `read` and `write` do
    /// not see it). Unmapping it, or the space's end, frees the frames that were brought
    /// in and gives back the whole charge.
    pub fn map_lazy(&self, va: Option<u64>, len: u64, flags: UserFlags) -> Result<u64, VmError> {
        self.map_in::<true>(va, len, flags)
    }

    /// [`AddressSpace::map_flags`] (`LAZY` false) or [`AddressSpace::map_lazy`].
    fn map_in<const LAZY: bool>(
        &self,
        va: Option<u64>,
        len: u64,
        flags: UserFlags,
    ) -> Result<u64, VmError> {
        if flags.writable && flags.executable {
            return Err(VmError::Invalid);
        }
        let mut t = self.tables();
        let picked = va.is_none();
        let (va, pages) = match va {
            Some(v) => (v, range(v, len)?),
            None => Self::find_free(&t, self.next.load(Ordering::Relaxed), len)?,
        };
        // A fixed range that overlaps a mapping fails before anything is charged, whatever
        // its length (a walk of the tables that exist, cheap for any length: a picked range
        // is free by construction). Charged first, a doomed fixed map of the room left was
        // `ENOMEM` instead of `EEXIST`, and held the whole charge while it zeroed its first
        // frame: a loop of them on a few CPUs kept the global charge at its limit, and other
        // processes' maps failed (found by review, 2026-12-05). Until 2026-12-06 one longer
        // than the machine's memory was still `ENOMEM`, the check below coming first (found
        // by review; `user.commit_fixed_map_over_a_mapping_charges_nothing`).
        if !picked && t.next_mapped(va, va + pages * PAGE).is_some() {
            return Err(VmError::Exists);
        }
        // No overcommit.
        if pages > kalloc::managed_frames() {
            return Err(VmError::NoMemory);
        }
        // Every page charged at once (one update of the counters per call); a failure
        // below gives back what `take` did not (the pages never mapped).
        self.account.charge(pages).map_err(|_| VmError::NoMemory)?;
        for k in 0..pages {
            let page = va + k * PAGE;
            let r = if LAZY {
                t.map_user_lazy_4k(&mut Spares(&self.spare, &self.account), page, flags)
                    .map_err(|e| match e {
                        MapError::AlreadyMapped(_) => VmError::Exists,
                        MapError::OutOfFrames => VmError::NoMemory,
                        _ => VmError::Invalid,
                    })
            } else {
                match kalloc::alloc_frame() {
                    Err(_) => Err(VmError::NoMemory),
                    Ok(f) => {
                        let pa = f.phys();
                        crate::sys::zero_frame(pa);
                        match t.map_user_4k(
                            &mut Spares(&self.spare, &self.account),
                            page,
                            pa,
                            flags,
                        ) {
                            Ok(()) => Ok(()), // the frame now belongs to the tables
                            Err(e) => {
                                kalloc::free_frame(f);
                                Err(match e {
                                    MapError::AlreadyMapped(_) => VmError::Exists,
                                    MapError::OutOfFrames => VmError::NoMemory,
                                    _ => VmError::Invalid,
                                })
                            }
                        }
                    }
                }
            };
            if let Err(e) = r {
                // Give back what this call mapped: everything mapped in `[va, va + k)` is
                // (a fixed map fails at the first page already mapped). Other threads of
                // the space may have used those pages meanwhile (the tables' lock does not
                // stop the MMU): their CPUs may cache the translations, so the frames go
                // back only after the shootdown, as for `unmap`.
                self.take_failed(t, va, k, true);
                self.account.uncharge(pages - k);
                return Err(e);
            }
            if k == 0 && pages > 1 {
                MAP_HOLD.pass();
            }
        }
        if picked {
            self.next.store(va + (pages + 1) * PAGE, Ordering::Relaxed);
        }
        self.pages.fetch_add(pages, Ordering::Relaxed);
        Ok(va)
    }

    /// Maps the frames of shared region `tag` (read-write) at an address the kernel picks;
    /// the caller holds a reference to the region for this mapping, dropped when the space
    /// goes. `NoMemory` when [`MAX_SHARED`] regions are mapped here already.
    pub fn map_shared(&self, frames: &[u64], tag: u64) -> Result<u64, VmError> {
        let len = frames.len() as u64 * PAGE;
        let mut t = self.tables();
        let mut sh = self.shared.lock();
        let k = sh.iter().position(|e| e.1 == 0).ok_or(VmError::NoMemory)?;
        let (va, pages) = Self::find_free(&t, self.next.load(Ordering::Relaxed), len)?;
        let flags = UserFlags::new(true, false);
        for (j, &pa) in frames.iter().enumerate() {
            let mut src = Spares(&self.spare, &self.account);
            if let Err(e) = t.map_user_4k(&mut src, va + j as u64 * PAGE, pa, flags) {
                // The pages mapped so far go, the region's frames stay the region's; as in
                // `map`, the page tables freed go back only after the shootdown (and the
                // caller releases the region, which may free its frames, after this).
                drop(sh);
                self.take_failed(t, va, j as u64, false);
                return Err(match e {
                    MapError::OutOfFrames => VmError::NoMemory,
                    _ => VmError::Invalid,
                });
            }
        }
        sh[k] = (va, pages, tag);
        self.next.store(va + (pages + 1) * PAGE, Ordering::Relaxed);
        Ok(va)
    }

    /// Whether `[va, va + pages)` overlaps a shared region's mapping.
    fn overlaps_shared(&self, va: u64, pages: u64) -> bool {
        let end = va + pages * PAGE;
        self.shared
            .lock()
            .iter()
            .any(|&(s, n, _)| n != 0 && s < end && va < s + n * PAGE)
    }

    /// The first range of `len` bytes at or above `from` with no page mapped (tables held).
    fn find_free(t: &PageTables, from: u64, len: u64) -> Result<(u64, u64), VmError> {
        let mut cur = from;
        loop {
            let pages = range(cur, len).map_err(|e| match e {
                VmError::OutOfRange => VmError::NoMemory, // no room left above the cursor
                e => e,
            })?;
            match t.next_mapped(cur, cur + pages * PAGE) {
                None => return Ok((cur, pages)),
                Some(p) => cur = p + PAGE,
            }
        }
    }

    /// Unmaps `[va, va + len)` (pages not mapped are skipped, at the cost of the tables that
    /// exist, not of the range's length); the translations are gone on every CPU and the
    /// frames are free when it returns. Returns the pages unmapped.
    /// A range overlapping a shared region's mapping is refused (`Invalid`): that mapping
    /// lasts as long as the space.
    pub fn unmap(&self, va: u64, len: u64) -> Result<u64, VmError> {
        let pages = range(va, len)?;
        UNMAP_HOLD.pass();
        let t = self.tables();
        // Under the tables' lock, which `map_shared` holds while it maps a region and records
        // it: no region can appear in the range between this check and the unmapping (it
        // did, from another thread, when the check came first: the region's frames were
        // freed here and again with the region, a double free the fuzzer found at -smp 4).
        if self.overlaps_shared(va, pages) {
            return Err(VmError::Invalid);
        }
        let n = self.take(t, va, pages, true);
        self.pages.fetch_sub(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Unmaps every mapped page of `[va, va + pages)` (tables `t` held, released on return),
    /// shoots the range down on every CPU that may cache it, then frees the tables emptied
    /// (page tables and the directories above them; up to three kept as `spare`) and, with
    /// `own`, the pages' frames (without: they belong to a shared region). Nothing is freed
    /// before the shootdown: until then another CPU may still write through a stale
    /// translation. Every frame freed here (own pages, tables not kept as spare) leaves the
    /// account in one update per batch (see [`AddressSpace::take_with`]). Returns the pages
    /// unmapped.
    fn take(&self, t: Tables<'_>, va: u64, pages: u64, own: bool) -> u64 {
        self.take_with(t, va, pages, own, [None, None])
    }

    /// [`AddressSpace::take`] after a map of `[va, va + pages]` failed at its last page
    /// (`pages` of them mapped): the directories the failed page's walk made and left empty
    /// go too (they were linked, so they are shot down first like the rest). Until
    /// 2026-12-05 they stayed, charged, until the space went: a map refused its page table
    /// by the commit limit, once per GiB, took two frames each time (found by review;
    /// `user.commit_failed_map_leaves_no_empty_directory`).
    fn take_failed(&self, mut t: Tables<'_>, va: u64, pages: u64, own: bool) {
        let stranded = t.prune(va + pages * PAGE);
        self.take_with(t, va, pages, own, stranded);
    }

    /// [`AddressSpace::take`], with `stranded` tables already unlinked (by the caller, within
    /// the range shot down: `[va, va + pages]`) to free with the emptied ones.
    ///
    /// The range goes in batches: the frames and tables to free are listed until a list is
    /// full ([`TAKE_BATCH`]) or cannot grow; then one shootdown covers every page unmapped
    /// since the last one, and the batch is freed and uncharged (as at the end), its lists
    /// emptied but kept for the next batch. So a range of any size costs one shootdown per
    /// batch. Until 2026-12-06 the lists only grew, and once they could not (a 4 MiB block
    /// holds 524,288 entries, 2 GiB of pages) every further page was shot down on its own:
    /// about 262,000 shootdowns, each interrupting every CPU that loaded the space, for a
    /// 3 GiB munmap or process exit (found by review;
    /// `user.aspace_huge_unmap_shoots_down_once_per_batch`).
    fn take_with(
        &self,
        mut t: Tables<'_>,
        va: u64,
        pages: u64,
        own: bool,
        stranded: [Option<u64>; 2],
    ) -> u64 {
        let end = va + pages * PAGE;
        let (mut frames, mut tables) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
        let mut n = 0;
        // Demand-zero pages unmapped without a frame: nothing to free, their charge to give
        // back (with the last batch's).
        let mut lazy = 0;
        // Where the pages not shot down yet start, and whether any was unmapped.
        let (mut from, mut unshot) = (va, false);
        let mut cur = va;
        // Whether a list has no room for one more page's entries. A take of a shared region's
        // pages lists no frames (theirs are the region's): that list is never allocated.
        let full = |frames: &mut alloc::vec::Vec<u64>, tables: &mut alloc::vec::Vec<u64>| {
            (own && !room(frames, 1)) || !room(tables, 3)
        };
        while let Some(p) = t.next_mapped(cur, end) {
            cur = p + PAGE;
            if let Some((pa, table)) = t.unmap_4k(p) {
                n += 1;
                unshot = true;
                lazy += u64::from(pa.is_none());
                let pa = pa.filter(|_| own);
                // An emptied page table may have emptied the directories above it too.
                let upper = if table.is_some() {
                    t.prune(p)
                } else {
                    [None, None]
                };
                let emptied = table.into_iter().chain(upper.into_iter().flatten());
                if full(&mut frames, &mut tables) {
                    // The batch is full: one shootdown for it and this page, then it goes.
                    self.shootdown(from, (cur - from) / PAGE);
                    (from, unshot) = (cur, false);
                    let mut gone = self.free_batch(tables.drain(..), &mut frames, None);
                    if full(&mut frames, &mut tables) {
                        // Lists that never had room (no memory for their first entries):
                        // this page's frames go now (shot down already).
                        TAKES_UNLISTED.fetch_add(1, Ordering::Relaxed);
                        super::futex::frames_gone(pa.as_slice());
                        pa.into_iter().chain(emptied).for_each(|f| {
                            gone += 1;
                            kalloc::free_frame(Frame::from_phys(f));
                        });
                        self.account.uncharge(gone);
                        continue;
                    }
                    self.account.uncharge(gone);
                }
                frames.extend(pa);
                tables.extend(emptied);
            }
        }
        // A failed map's directories are freed (or kept) after the last shootdown, which
        // then covers one page more than the range (the failed page's).
        let extra = stranded.iter().any(Option::is_some);
        if unshot || extra {
            self.shootdown(from, (end - from) / PAGE + u64::from(extra));
        }
        let last = self.free_batch(
            tables.drain(..).chain(stranded.into_iter().flatten()),
            &mut frames,
            Some(t),
        );
        self.account.uncharge(last + lazy);
        n
    }

    /// Frees a batch of a `take`, unmapped and shot down: its `tables` kept as spares or
    /// freed (the tables' lock held: the caller's, or `unlock`), then its pages' `frames`
    /// (emptied, their room kept), after `unlock` is let go when given (the take's last
    /// batch: the frames are not freed under the lock). Returns how many frames were freed
    /// (the caller uncharges them).
    fn free_batch(
        &self,
        tables: impl Iterator<Item = u64>,
        frames: &mut alloc::vec::Vec<u64>,
        unlock: Option<Tables<'_>>,
    ) -> u64 {
        let kept = self.keep_tables(tables);
        drop(unlock);
        let freed = kept + free_own_frames(frames);
        frames.clear();
        freed
    }

    /// Tables that a `take` unlinked and shot down: kept as spares (up to three; tables'
    /// lock held) or freed. Returns how many were freed (the caller uncharges them).
    fn keep_tables(&self, tables: impl Iterator<Item = u64>) -> u64 {
        let mut freed = 0;
        for f in tables {
            match self.spare.iter().find(|s| s.load(Ordering::Relaxed) == 0) {
                Some(s) => s.store(f, Ordering::Relaxed),
                None => {
                    freed += 1;
                    kalloc::free_frame(Frame::from_phys(f));
                }
            }
        }
        freed
    }

    /// Changes the permissions of `[va, va + len)`; every page must be mapped.
    pub fn protect(&self, va: u64, len: u64, w: bool, x: bool) -> Result<(), VmError> {
        self.protect_flags(va, len, UserFlags::new(w, x))
    }

    /// [`AddressSpace::protect`] with `f` (`UserFlags::NONE` takes every access away, the
    /// pages and their contents stay; a later call gives access back).
    pub fn protect_flags(&self, va: u64, len: u64, f: UserFlags) -> Result<(), VmError> {
        let (w, x) = (f.writable, f.executable);
        if w && x {
            return Err(VmError::Invalid);
        }
        let pages = range(va, len)?;
        let mut t = self.tables();
        // A shared region's pages are data: executable, the bytes a peer (or another
        // mapping of the same region in this space, writable) writes would run here, W^X
        // defeated through an alias (until 2026-12-04). Checked under the tables' lock, as
        // `unmap` does.
        if x && self.overlaps_shared(va, pages) {
            return Err(VmError::Invalid);
        }
        for k in 0..pages {
            if t.user_page(va + k * PAGE).is_none() {
                return Err(VmError::NotMapped);
            }
        }
        // Checked above, so no page fails; if one did, those changed before it are still
        // shot down before the error returns (no stale writable entry after the call).
        let r = (0..pages).try_for_each(|k| {
            t.protect_user_4k(va + k * PAGE, f)
                .map(drop)
                .map_err(|_| VmError::Invalid)
        });
        self.shootdown(va, pages);
        r
    }

    /// Gives back every user page and this space's references to shared regions, now: its
    /// process's last thread has ended, nothing runs in ring 3 here any more, and its spare
    /// page tables. The space itself (root table, PCID) stays until the process is reaped. Until 2026-12-04 everything stayed until then, so a parent that never
    /// waited held its ended children's memory. Interrupts on (the tables' lock). Returns
    /// the page-table entries the walk read (a test bounds it: `DetachedUserHalf::free`).
    pub fn release_user_memory(&self) -> u64 {
        // Shared pages first: their frames are the regions', not these tables'.
        let regions = core::mem::replace(&mut *self.shared.lock(), [(0, 0, 0); MAX_SHARED]);
        for (va, pages, tag) in regions {
            if pages != 0 {
                self.take(self.tables(), va, pages, false);
                super::shm::release(tag);
            }
        }
        // The rest in one pass: the lower half unlinked, one shootdown (a flush of the
        // space's PCID on every CPU that loaded it), then the detached tables walked and
        // freed. Until 2026-12-06 it went through `take` over the whole user range, page by
        // page (a look for the next mapped page from the top table and an emptiness scan of
        // its page table for each): ~150,000 instructions for a 65-page process, which
        // doubled `proc.spawn` (icount 153k -> 302k; found by review, bisected).
        let half = self.tables().detach_user_half();
        self.shootdown(USER_MIN, (USER_END - USER_MIN) / PAGE);
        let (mut batch, mut k) = ([0u64; 256], 0);
        let (mut pages, mut tables) = (0u64, 0u64);
        // Demand-zero pages never touched: mapped and charged, no frame.
        let done = half.free(
            |pa| {
                batch[k] = pa;
                k += 1;
                pages += 1;
                if k == batch.len() {
                    free_own_frames(&mut batch[..k]);
                    k = 0;
                }
            },
            |pa| {
                tables += 1;
                kalloc::free_frame(Frame::from_phys(pa));
            },
        );
        free_own_frames(&mut batch[..k]);
        let lazy = done.lazy;
        self.pages.fetch_sub(pages + lazy, Ordering::Relaxed);
        self.account.uncharge(pages + lazy + tables);
        // The spare tables too: no map comes any more. Each was emptied by a `take` that
        // shot its range down before keeping it (an unmap of the process's, or the shared
        // regions' above; a process that did neither has none).
        // `user.commit_ended_process_keeps_only_its_root` leaves some. Until 2026-12-05
        // they stayed, charged, until the process was waited for (found by review).
        let t = self.tables();
        let mut freed = 0;
        for s in &self.spare {
            let f = s.swap(0, Ordering::Relaxed);
            if f != 0 {
                kalloc::free_frame(Frame::from_phys(f));
                freed += 1;
            }
        }
        drop(t);
        self.account.uncharge(freed);
        done.read
    }

    /// The physical address of user address `va`, if its page is mapped with access.
    pub fn phys(&self, va: u64) -> Option<u64> {
        if !(USER_MIN..USER_END).contains(&va) {
            return None;
        }
        self.tables().translate(va).map(|(pa, _)| pa)
    }

    /// The rights of the page at `va` (writable, executable), if it is mapped with access
    /// (a demand-zero page not brought in yet too: the rights it will have).
    pub fn rights(&self, va: u64) -> Option<(bool, bool)> {
        let t = self.tables();
        t.translate(va)
            .map(|(_, f)| (f.writable, f.executable))
            .or_else(|| {
                t.lazy_user_page(va)
                    .filter(|f| f.accessible)
                    .map(|f| (f.writable, f.executable))
            })
    }

    /// A not-present page fault at user address `va` (a write if `write`, an instruction
    /// fetch if `exec`): if its page is a demand-zero page ([`AddressSpace::map_lazy`])
    /// whose rights allow the access, it gets a zeroed frame and the access can be retried.
    /// Interrupts on (the tables' lock), on the faulting thread's own stack.
    ///
    /// The frame is allocated and zeroed without the tables' lock, then the page is looked
    /// at again under it before it is mapped: another thread of the space may have faulted
    /// on the same page meanwhile and brought it in (then this frame goes back, and the
    /// access is retried on the page the other one mapped), or unmapped it, or changed its
    /// rights ([`Demand::Retry`] then too: the retried access faults again and is judged on
    /// what the page is now). The frame was charged when the page was mapped, so nothing is
    /// charged here: the commit limit cannot refuse a first touch.
    ///
    /// The allocator can still have no frame (the charge keeps user memory within its
    /// limit, but the kernel's own growth beyond its reserve, or a test holding memory, can
    /// empty it): [`Demand::NoMemory`], and the caller ends the process with that reason.
    /// The page stays a demand-zero page and nothing was taken, so nothing leaks; the
    /// kernel goes on.
    pub fn fault_in(&self, va: u64, write: bool, exec: bool) -> Demand {
        let page = va & !(PAGE - 1);
        if !(USER_MIN..USER_END).contains(&page) {
            return Demand::Refused;
        }
        let allowed =
            |f: UserFlags| f.accessible && (!write || f.writable) && (!exec || f.executable);
        {
            let t = self.tables();
            match t.lazy_user_page(page) {
                Some(f) if allowed(f) => {}
                // Brought in by another thread since the fault (the access is retried and
                // faults again if these rights do not allow it), or no demand-zero page.
                _ if t.translate(page).is_some() => return Demand::Retry,
                _ => return Demand::Refused,
            }
        }
        let Ok(f) = kalloc::alloc_frame() else {
            return Demand::NoMemory;
        };
        crate::sys::zero_frame(f.phys());
        let watched = RACE_WATCH.load(Ordering::Relaxed);
        if watched == 0 || watched == page {
            FAULT_HOLD.pass();
        }
        let mut t = self.tables();
        let mapped = match t.lazy_user_page(page) {
            Some(fl) if allowed(fl) => t.fill_lazy_4k(page, f.phys()),
            _ => false,
        };
        drop(t);
        if mapped {
            FAULTS_FILLED.fetch_add(1, Ordering::Relaxed);
            Demand::Mapped
        } else {
            kalloc::free_frame(f);
            FAULTS_RACED.fetch_add(1, Ordering::Relaxed);
            if RACE_WATCH.load(Ordering::Relaxed) == page {
                RACES_AT_WATCHED.fetch_add(1, Ordering::Relaxed);
            }
            Demand::Retry
        }
    }

    /// Copies `bytes` to user address `va` through the direct map (the loader, building a
    /// space no thread runs yet). The pages must be mapped with their frames (a demand-zero
    /// page not brought in yet is `NotMapped` here, as for [`AddressSpace::read`]).
    pub fn write(&self, va: u64, bytes: &[u8]) -> Result<(), VmError> {
        self.each_page(va, bytes.len(), |dst, off, n| {
            crate::sys::copy_to_phys(dst, &bytes[off..off + n]);
        })
    }

    /// Reads `buf.len()` bytes at user address `va` through the direct map.
    pub fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), VmError> {
        let len = buf.len();
        self.each_page(va, len, |src, off, n| {
            crate::sys::copy_from_phys(src, &mut buf[off..off + n]);
        })
    }

    /// The u64 at user address `va` (8-aligned, else `Invalid`), read through the direct map
    /// in one access: for a word of a space whose threads run (a test watching a program),
    /// which [`AddressSpace::read`]'s byte copy could see torn.
    pub fn read_word(&self, va: u64) -> Result<u64, VmError> {
        Ok(crate::sys::load_phys_u64(self.word_phys(va)?))
    }

    /// Stores `v` at user address `va` in one access; as [`AddressSpace::read_word`].
    pub fn write_word(&self, va: u64, v: u64) -> Result<(), VmError> {
        crate::sys::store_phys_u64(self.word_phys(va)?, v);
        Ok(())
    }

    /// The physical address of the aligned word at `va`.
    fn word_phys(&self, va: u64) -> Result<u64, VmError> {
        if !va.is_multiple_of(8) {
            return Err(VmError::Invalid);
        }
        let mut pa = 0;
        self.each_page(va, 8, |p, _, _| pa = p)?;
        Ok(pa)
    }

    fn each_page(
        &self,
        va: u64,
        len: usize,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), VmError> {
        let end = va.checked_add(len as u64).ok_or(VmError::Invalid)?;
        if va < USER_MIN || end > USER_END {
            return Err(VmError::OutOfRange);
        }
        let t = self.tables();
        let mut off = 0usize;
        while off < len {
            let a = va + off as u64;
            let (pa, _) = t.translate(a).ok_or(VmError::NotMapped)?;
            let n = ((PAGE - a % PAGE) as usize).min(len - off);
            f(pa, off, n);
            off += n;
        }
        Ok(())
    }

    fn shootdown(&self, va: u64, pages: u64) {
        tlb::shootdown(
            &self.space.loaded(),
            Request {
                root: self.space.root(),
                pcid: self.space.pcid(),
                start: va,
                pages,
                evict: false,
                tables: false,
            },
        );
    }
}

/// Frees a batch of a space's own page frames, shot down already; returns how many. Shared
/// futex waiters keyed on them go first; sorted here, so the waiter list's lock is held for
/// a search per waiter, not a scan of the frames (as `futex::frames_gone` needs).
fn free_own_frames(frames: &mut [u64]) -> u64 {
    frames.sort_unstable();
    super::futex::frames_gone(frames);
    for &f in frames.iter() {
        kalloc::free_frame(Frame::from_phys(f));
    }
    frames.len() as u64
}

impl Drop for AddressSpace {
    /// No thread runs in the space any more (the owner joined them): CPUs that still have
    /// it loaded switch to the kernel tables and drop its entries; then `Space` frees it all.
    fn drop(&mut self) {
        if self.space.loaded().iter().next().is_some() {
            tlb::shootdown(
                &self.space.loaded(),
                Request {
                    root: self.space.root(),
                    pcid: self.space.pcid(),
                    start: 0,
                    pages: 0,
                    evict: true,
                    tables: false,
                },
            );
        }
        for s in &self.spare {
            let f = s.swap(0, Ordering::Relaxed);
            if f != 0 {
                kalloc::free_frame(Frame::from_phys(f));
            }
        }
        // Shared regions: their pages leave the tables without their frames (the region's),
        // then the space's reference to each region goes (the last frees its frames).
        let sh = *self.shared.get_mut();
        let t = self.space.tables.get_mut();
        for (va, pages, tag) in sh {
            if pages == 0 {
                continue;
            }
            for k in 0..pages {
                if let Some((_, Some(tp))) = t.unmap_4k(va + k * PAGE) {
                    kalloc::free_frame(Frame::from_phys(tp));
                }
            }
            super::shm::release(tag);
        }
    }
}
