//! Boot memory: a bump frame allocator over the PVH memory map (low addresses first) that
//! builds the kernel page tables and then hands every remaining frame to the kernel allocator
//! (`kalloc`: buddy + per-CPU caches); guarded stacks.

use crate::sys;
use arrayvec::ArrayVec;
use exo_arch::paging::{Chunk, Flags, FrameSource, MapError, PageTables};
use exo_arch::pvh::{MemKind, MemRegion};
use spin::Mutex;

const MIB: u64 = 1 << 20;
/// One stack per 2 MiB: its own page table, freed with it.
const SLOT: u64 = 2 * MIB;
const PAGE: u64 = 4096;
/// Base of the guarded-stack region (upper half, outside the identity map).
pub const STACK_REGION: u64 = 0xFFFF_C000_0000_0000;
/// Stack slots the region holds: it ends where the kernel image's window begins.
pub const STACK_SLOTS: u64 = (exo_arch::layout::KERNEL_BASE - STACK_REGION) / SLOT;

/// Out of physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// The boot frame allocator: usable RAM ranges (the first MiB, the kernel image and the
/// other reserved ranges cut out), handed out bottom-up. Frees are not supported yet.
#[derive(Debug)]
pub struct BootFrames {
    ranges: ArrayVec<(u64, u64), 128>,
    idx: usize,
    next: u64,
    /// The unused tails `[next, end)` of ranges left behind because a contiguous request did
    /// not fit in them: at most one per range, so never more than `ranges` holds. Later
    /// requests are served from them first, and `remaining` yields them.
    skipped: ArrayVec<(u64, u64), 128>,
    /// Usable frames at start.
    pub total: u64,
}

impl BootFrames {
    /// Builds the allocator from the memory map, minus `reserved` ranges: the map's usable
    /// RAM as `exo_arch::pvh::usable_ram` makes it (sorted, merged, what the map marks as
    /// anything else cut out, below the direct map's end), nothing taken on trust.
    pub fn new(map: &[MemRegion], reserved: &[(u64, u64)]) -> Self {
        let ranges = exo_arch::pvh::usable_ram(map, reserved, exo_arch::layout::DIRECT_MAP_END);
        let total = ranges.iter().map(|(s, e)| (e - s) / PAGE).sum();
        let next = ranges.first().map_or(0, |r| r.0);
        BootFrames {
            ranges,
            idx: 0,
            next,
            skipped: ArrayVec::new(),
            total,
        }
    }

    /// `n` physically contiguous frames: from the lowest skipped tail that holds them, else
    /// from the current range, else from the next range that does (the current range's tail
    /// is kept in `skipped`). Until 2026-12-05 a skipped tail was lost: `remaining` started
    /// at the next range, so the buddy never received those frames.
    pub fn alloc_contiguous(&mut self, n: u64) -> Result<u64, OutOfMemory> {
        let bytes = n.checked_mul(PAGE).ok_or(OutOfMemory)?;
        if let Some(t) = self.skipped.iter_mut().find(|t| t.1 - t.0 >= bytes) {
            let p = t.0;
            t.0 += bytes;
            return Ok(p);
        }
        while self.idx < self.ranges.len() {
            let (_, end) = self.ranges[self.idx];
            if self.next.saturating_add(bytes) <= end {
                let p = self.next;
                self.next += bytes;
                return Ok(p);
            }
            if self.next < end {
                // One entry per range left behind: `skipped` cannot overflow.
                let _ = self.skipped.try_push((self.next, end));
            }
            self.idx += 1;
            if let Some(r) = self.ranges.get(self.idx) {
                self.next = r.0;
            }
        }
        Err(OutOfMemory)
    }

    /// The ranges not handed out yet: the skipped tails (see [`BootFrames::alloc_contiguous`]),
    /// the rest of the current range, then the later ones. Disjoint, and no more of them
    /// than `ranges` holds (a skipped tail's range is behind the current one).
    pub fn remaining(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let tails = self.skipped.iter().copied().filter(|&(s, e)| s < e);
        let rest = self
            .ranges
            .iter()
            .enumerate()
            .skip(self.idx)
            .filter_map(|(i, &(s, e))| {
                let s = if i == self.idx { self.next.max(s) } else { s };
                (s < e).then_some((s, e))
            });
        tails.chain(rest)
    }

    /// The highest usable address + 1.
    pub fn top(&self) -> u64 {
        self.ranges.last().map_or(0, |r| r.1)
    }
}

impl FrameSource for BootFrames {
    fn alloc_zeroed_frame(&mut self) -> Option<u64> {
        let f = self.alloc_contiguous(1).ok()?;
        sys::zero_frame(f);
        Some(f)
    }
}

/// Global memory state after boot.
pub struct Memory {
    /// The kernel page tables.
    pub tables: PageTables,
    next_stack_slot: u64,
    /// Slots whose stack was freed and whose page table was given back after every CPU
    /// flushed (`release_tables`): nothing of them can be cached any more, so they are
    /// mapped again before a new slot is taken.
    free_slots: alloc::vec::Vec<u64>,
    /// Freed stacks' page tables not yet given back (see [`RetiredTables`]): the first's
    /// physical address (0: none), each linked to the next by its first word.
    retired: u64,
    /// End of the physical range the direct map covers from `init` on (RAM write-back,
    /// the rest of the low 4 GiB uncached); [`mmio`] maps device pages above it.
    direct_end: u64,
}

/// Page tables of freed stacks, held until every CPU has dropped what its paging-structure
/// caches hold of them. A CPU may cache the page-directory entry that pointed at such a
/// table (SDM 4.10.3) and walk through it (a speculative walk needs no access to the range)
/// after the entry is cleared; were the frame reused as anything else, its bytes would be
/// read as page-table entries. Until 2026-12-04 the table went back to the allocator at once
/// (`free_stack` flushes nothing remotely: no CPU touches a freed stack's range again, which
/// covers TLB entries but not those caches). Harmless under TCG (QEMU keeps no such cache),
/// a real-hardware hazard. The layer above (`smp::tlb::reclaim_kernel_tables`) takes the
/// list, flushes every CPU and gives the frames back ([`release_tables`]).
///
/// The link word written into a retired table is a frame address: bit 0 (present) is 0, so
/// a walk through a stale cached entry finds nothing mapped.
#[derive(Debug)]
#[must_use = "retired tables are freed by `release_tables` after every CPU flushed"]
pub struct RetiredTables {
    head: u64,
    /// How many tables the list holds.
    pub count: u64,
}

/// Tables waiting in [`Memory::retired`] (read without the lock by the layer above, to
/// decide when a flush is worth its IPIs).
static RETIRED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

impl core::fmt::Debug for Memory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Memory")
            .field("root", &self.tables.root())
            .finish_non_exhaustive()
    }
}

/// The one memory state, behind a lock (boot and stack allocation only: not a hot path),
/// always taken with interrupts off ([`with_memory`]): the scheduler frees stacks from its
/// switch path, where interrupts are off and a preempted holder on the same CPU would
/// deadlock it.
pub static MEMORY: Mutex<Option<Memory>> = Mutex::new(None);

fn with_memory<R>(f: impl FnOnce(&mut Option<Memory>) -> R) -> R {
    let _g = exo_percpu::IrqGuard::new();
    f(&mut MEMORY.lock())
}

/// A guarded stack: `[bottom, top)` mapped, the page below `bottom` never mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    /// Lowest mapped address.
    pub bottom: u64,
    /// One past the highest address (initial RSP).
    pub top: u64,
}

/// Errors of memory set-up.
#[derive(Debug, Clone, Copy)]
pub enum MemError {
    /// Frames ran out.
    OutOfMemory,
    /// A mapping failed.
    Map(MapError),
    /// Called before `init`.
    NotInitialised,
}

impl MemError {
    /// Whether frames ran out (for a page or for a page table).
    pub fn is_out_of_frames(&self) -> bool {
        matches!(
            self,
            MemError::OutOfMemory | MemError::Map(MapError::OutOfFrames)
        )
    }
}

impl From<MapError> for MemError {
    fn from(e: MapError) -> Self {
        MemError::Map(e)
    }
}

impl From<OutOfMemory> for MemError {
    fn from(_: OutOfMemory) -> Self {
        MemError::OutOfMemory
    }
}

impl core::fmt::Display for MemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemError::OutOfMemory => write!(f, "out of physical memory"),
            MemError::Map(e) => write!(f, "mapping failed: {e}"),
            MemError::NotInitialised => write!(f, "memory not initialised"),
        }
    }
}

/// Frames for page tables once `kalloc` owns memory: zeroed frames from it.
#[derive(Debug)]
pub struct KernelFrames;

impl FrameSource for KernelFrames {
    fn alloc_zeroed_frame(&mut self) -> Option<u64> {
        let f = crate::mm::kalloc::alloc_frame().ok()?.phys();
        sys::zero_frame(f);
        Some(f)
    }
}

/// Builds the kernel page tables with boot frames, switches this CPU to them, then hands all
/// remaining RAM to `kalloc`, except the kernel image and the `keep` ranges (physical start,
/// length: the loader's modules that `exo_arch::pvh::accept_modules` accepted, wholly in
/// RAM, the initrd first). Returns (usable MiB, frames handed over).
///
/// The tables map nothing in the lower half (it is user space): the direct map of
/// `[0, max(RAM top, 4 GiB))` at `PHYS_OFFSET` (RAM read-write, the rest of the low 4 GiB
/// uncached for MMIO, never executable) and the kernel image at `KERNEL_BASE + physical`
/// with per-section permissions (text RX, rodata R, data and bss RW), the boot stack's guard
/// page left out.
pub fn init(map: &[MemRegion], nx: bool, keep: &[(u64, u64)]) -> Result<(u64, usize), MemError> {
    use exo_arch::layout::{KERNEL_BASE, PHYS_OFFSET, image_to_phys, phys_to_virt};
    let img = exo_arch::boot::kernel_image();
    let (p_start, p_end) = (image_to_phys(img.start), image_to_phys(img.end));
    let mut reserved: ArrayVec<(u64, u64), 8> = ArrayVec::new();
    reserved.push((p_start, p_end));
    for &(s, len) in keep.iter().take(7) {
        reserved.push((s, s.saturating_add(len)));
    }
    let mut frames = BootFrames::new(map, &reserved);

    let ram: ArrayVec<(u64, u64), 64> = map
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                MemKind::Ram | MemKind::AcpiReclaim | MemKind::AcpiNvs
            )
        })
        .map(|r| (r.start, r.start.saturating_add(r.len)))
        .collect();
    let is_ram = |a: u64, len: u64| ram.iter().any(|&(s, e)| a < e && a.saturating_add(len) > s);
    // The kept ranges (boot modules) are mapped too: `frames.top()` is the end of the RAM
    // handed over, without them, and an initrd at RAM's top above 4 GiB was left out of
    // the direct map (its first read faulted; found by review, 2026-12-04). Until 2026-12-05
    // a module merely overlapping RAM raised it to the module's end, however far (boot
    // checks them first now: `pvh::accept_modules`); the same test here
    // (wholly in RAM) is a second guard.
    let kept_top = keep
        .iter()
        .filter(|&&(s, len)| exo_arch::pvh::in_ram(map, s, len))
        .map(|&(s, len)| s.saturating_add(len))
        .max()
        .unwrap_or(0)
        .min(exo_arch::layout::DIRECT_MAP_END);
    let limit = frames
        .top()
        .max(kept_top)
        .max(4 << 30)
        .next_multiple_of(2 * MIB);
    // The page below the BSP's boot stack (the last boot page directory, unused once these
    // tables are loaded: APs walk the boot tables physically) becomes its guard page.
    let boot_guard = image_to_phys(exo_arch::boot::boot_stack().0 - PAGE);

    let mut tables = PageTables::new(&mut frames, nx)?;
    tables.linear_map(
        &mut frames,
        PHYS_OFFSET,
        0,
        limit,
        |c| {
            if is_ram(c, 2 * MIB) || c >= 4 << 30 {
                Chunk::Huge(Flags::RW)
            } else {
                Chunk::Huge(Flags::MMIO)
            }
        },
        |_| None,
    )?;
    tables.linear_map(
        &mut frames,
        KERNEL_BASE,
        p_start,
        p_end,
        |_| Chunk::Split,
        |p| {
            let va = KERNEL_BASE + p;
            if p < p_start || p >= p_end || p == boot_guard {
                None // outside the image; the BSP stack's guard
            } else if va < img.text_end {
                Some(Flags::RX)
            } else if va < img.rodata_end {
                Some(Flags::RO)
            } else {
                Some(Flags::RW)
            }
        },
    )?;
    // Every upper-half PML4 entry exists from now on: user address spaces copy them, so they
    // see every later kernel mapping (stacks) without being told.
    tables.populate_kernel_half(&mut frames)?;
    sys::load_cr3(tables.root());
    let usable = frames.total * PAGE / MIB;

    // Hand over: the buddy spans [lowest usable, top); its bitmaps come from boot frames.
    // kalloc works in the direct map: every address it is given is `PHYS_OFFSET + pa`.
    let base = frames.ranges.first().map_or(0, |r| r.0);
    let span = ((frames.top() - base) / PAGE) as usize;
    let words = exo_mm::Buddy::words_needed_for(phys_to_virt(base), span);
    let storage_pa = frames.alloc_contiguous((words as u64 * 8).div_ceil(PAGE))?;
    let storage = sys::leak_words(storage_pa, words);
    let free: ArrayVec<(u64, u64), 128> = frames
        .remaining()
        .map(|(s, e)| (phys_to_virt(s), phys_to_virt(e)))
        .collect();
    let handed = crate::mm::kalloc::init(storage, phys_to_virt(base), span, &free)
        .map_err(|_| MemError::OutOfMemory)?;
    with_memory(|m| {
        *m = Some(Memory {
            tables,
            next_stack_slot: 0,
            free_slots: alloc::vec::Vec::new(),
            retired: 0,
            direct_end: limit,
        })
    });
    Ok((usable, handed))
}

/// Largest window [`mmio`] maps above 4 GiB (256 MiB: a whole PCI segment's ECAM).
const MMIO_MAX: usize = 256 << 20;

/// The device register window `[pa, pa + len)` (a PCI BAR's registers, an ECAM window):
/// below 4 GiB the uncached part of the direct map; above, its pages are mapped uncached at
/// their direct-map addresses now (pages mapped so by an earlier call are reused). `None`
/// for a window that reaches into the direct map's RAM (write-back) above 4 GiB, ends
/// past the direct map's span, or for which no page table could be had. Until 2026-12-04
/// windows above 4 GiB were refused: on q35 with 4 GiB of RAM or more the firmware puts
/// 64-bit BARs there, and no virtio device came up.
pub fn mmio(pa: u64, len: usize) -> Option<sys::io::Mmio> {
    let end = pa.checked_add(len as u64)?;
    if end <= 1 << 32 {
        // Below 4 GiB the direct map is uncached only in the 2 MiB chunks without RAM: a
        // window in a write-back chunk would be RAM (a BAR or table the firmware or a
        // device got wrong), and the device's registers written there kernel memory.
        // Until 2026-12-05 such a window was taken as it came (found by review).
        let uncached = with_memory(|guard| {
            let m = guard.as_ref()?;
            let chunk = 2 * MIB;
            ((pa & !(chunk - 1))..end.max(pa + 1))
                .step_by(chunk as usize)
                .all(|c| {
                    m.tables
                        .translate(exo_arch::layout::phys_to_virt(c))
                        .is_some_and(|(_, f)| f.uncached)
                })
                .then_some(())
        });
        uncached?;
        return sys::io::Mmio::new(pa, len);
    }
    // At most one ECAM segment's size: a device-given length is not trusted to map
    // millions of pages under the memory lock.
    if pa < 1 << 32 || len == 0 || len > MMIO_MAX || end > exo_arch::layout::DIRECT_MAP_END {
        return None;
    }
    let mapped = with_memory(|guard| {
        let m = guard.as_mut()?;
        if pa < m.direct_end {
            return None;
        }
        for page in ((pa & !(PAGE - 1))..end).step_by(PAGE as usize) {
            let va = exo_arch::layout::phys_to_virt(page);
            match m.tables.translate(va) {
                Some((p, f)) if p == page && f.uncached && f.writable => {}
                Some(_) => return None,
                None => m
                    .tables
                    .map_4k(&mut KernelFrames, va, page, Flags::MMIO)
                    .ok()?,
            }
        }
        Some(())
    });
    mapped?;
    #[allow(unsafe_code, reason = "the one audited block of this file")]
    // SAFETY: every page of `[pa, end)` was just found or made mapped uncached and writable
    // at its direct-map address, in the kernel half (shared by every address space, never
    // unmapped); it lies above the direct map's RAM (`direct_end`), so it is no memory the
    // allocator hands out: a device window the firmware or a PCI BAR named.
    Some(unsafe { sys::io::Mmio::mapped(pa, len) })
}

/// Maps a new stack of `pages` pages with an unmapped guard page below it.
///
/// Its frames are taken under the memory lock, with interrupts off, where the allocator
/// reclaims no empty slab; when they run out, empty slabs are reclaimed once the lock is let
/// go and it tries once more. That reclaim is made only if the caller has interrupts on:
/// the AP bring-up (`smp::bringup`, after the BSP's `sti`) and tests. A caller with them
/// off gets the failure at once (the reclaim returns 0) and retries after a reclaim of its
/// own, as `sched::Builder::spawn_then` does (a spawn takes its stack under its interrupt
/// guard). Until 2026-12-06 both failed for want of memory while wholly free slabs held it
/// (found by review; `mm.stack_allocation_reclaims_empty_slabs`).
pub fn alloc_stack(pages: u64) -> Result<Stack, MemError> {
    match map_stack(pages) {
        Err(e) if e.is_out_of_frames() && crate::mm::kalloc::reclaim_empty_slabs() > 0 => {
            map_stack(pages)
        }
        r => r,
    }
}

fn map_stack(pages: u64) -> Result<Stack, MemError> {
    with_memory(|guard| {
        let m = guard.as_mut().ok_or(MemError::NotInitialised)?;
        // Each slot: guard page + up to 255 stack pages, 2 MiB apart so that every stack has
        // its own page table (freed with the stack). A freed stack's slot is mapped again
        // only once its page table came back from a flush of every CPU (`RetiredTables`,
        // `free_slots`): until then other CPUs may still cache its translations. The region
        // holds `STACK_SLOTS` (2^25 - 2^10); until 2026-12-04 slots were never reused and
        // nothing bounded them, so enough stack churn would have mapped stacks over the
        // kernel image's window.
        let pages = pages.clamp(1, 255);
        let (slot, fresh) = match m.free_slots.pop() {
            Some(s) => (s, false),
            None if m.next_stack_slot < STACK_SLOTS => {
                m.next_stack_slot += 1;
                (STACK_REGION + (m.next_stack_slot - 1) * SLOT, true)
            }
            // Every slot holds a live stack or one not yet reclaimed: out of stack space.
            None => return Err(MemError::OutOfMemory),
        };
        let bottom = slot + PAGE;
        for i in 0..pages {
            let mapped = KernelFrames
                .alloc_zeroed_frame()
                .ok_or(MemError::OutOfMemory)
                .and_then(|f| {
                    m.tables
                        .map_4k(&mut KernelFrames, bottom + i * PAGE, f, Flags::RW)
                        .map_err(|e| {
                            // Not mapped (its page table could not be had): it goes back
                            // here, not with the pages `unmap_range` finds. Until
                            // 2026-12-04 it leaked, once per failed spawn.
                            crate::mm::kalloc::free_frame(crate::mm::kalloc::Frame::from_phys(f));
                            MemError::from(e)
                        })
                });
            if let Err(e) = mapped {
                unmap_range(m, bottom, i); // give back what this call mapped
                if i == 0 {
                    // Nothing was mapped in the slot (no table retired, which would bring
                    // it back): it goes back now, as no CPU can cache a translation of it.
                    // Until 2026-12-04 it was lost, once per stack that failed this way
                    // (found by review).
                    if fresh {
                        m.next_stack_slot -= 1;
                    } else if m.free_slots.try_reserve(1).is_ok() {
                        m.free_slots.push(slot);
                    }
                }
                return Err(e);
            }
        }
        Ok(Stack {
            bottom,
            top: bottom + pages * PAGE,
        })
    })
}

fn unmap_range(m: &mut Memory, bottom: u64, pages: u64) {
    for i in 0..pages {
        if let Some((f, table)) = m.tables.unmap_4k(bottom + i * PAGE) {
            // A kernel stack page always has its frame (no demand-zero page here).
            if let Some(f) = f {
                crate::mm::kalloc::free_frame(crate::mm::kalloc::Frame::from_phys(f));
            }
            if let Some(t) = table {
                // Emptied, unlinked from its directory: retired, not freed (see
                // `RetiredTables`). Its second word names the slot, reused once the table
                // is released (a 2 MiB-aligned address: bit 0 clear, not present).
                sys::copy_to_phys(t, &m.retired.to_le_bytes());
                sys::copy_to_phys(t + 8, &(bottom - PAGE).to_le_bytes());
                m.retired = t;
                RETIRED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Stack page tables retired and not yet given back (a relaxed read: a hint for when to
/// reclaim them).
#[inline]
pub fn retired_tables() -> u64 {
    RETIRED.load(core::sync::atomic::Ordering::Relaxed)
}

/// Takes every retired stack page table. The caller makes every CPU drop its paging-structure
/// caches *after* this returns (the tables were unlinked before), then hands the list to
/// [`release_tables`]; tables retired meanwhile wait for the next round.
pub fn take_retired_tables() -> RetiredTables {
    with_memory(|guard| {
        let Some(m) = guard.as_mut() else {
            return RetiredTables { head: 0, count: 0 };
        };
        let head = core::mem::replace(&mut m.retired, 0);
        let count = RETIRED.swap(0, core::sync::atomic::Ordering::Relaxed);
        RetiredTables { head, count }
    })
}

/// Puts tables taken by [`take_retired_tables`] back among the retired ones (a flush that
/// could not be completed: some CPU may still cache them), in front of those retired since.
pub fn retire_again(r: RetiredTables) {
    if r.count == 0 {
        return;
    }
    // The list's last table, found outside the lock (the list is the caller's).
    let mut tail = r.head;
    loop {
        let mut link = [0u8; 8];
        sys::copy_from_phys(tail, &mut link);
        match u64::from_le_bytes(link) {
            0 => break,
            next => tail = next,
        }
    }
    with_memory(|guard| {
        if let Some(m) = guard.as_mut() {
            sys::copy_to_phys(tail, &m.retired.to_le_bytes());
            m.retired = r.head;
            RETIRED.fetch_add(r.count, core::sync::atomic::Ordering::Relaxed);
        }
    });
}

/// Gives retired tables back to the allocator and their slots to `alloc_stack`; returns
/// how many. Call only once every CPU has flushed after [`take_retired_tables`].
pub fn release_tables(r: RetiredTables) -> u64 {
    // Room for the slots first, outside the lock; a slot that finds none is not reused.
    let mut slots = alloc::vec::Vec::new();
    let _ = slots.try_reserve_exact(r.count as usize);
    let mut next = r.head;
    let mut n = 0;
    while next != 0 {
        let (mut link, mut slot) = ([0u8; 8], [0u8; 8]);
        sys::copy_from_phys(next, &mut link);
        sys::copy_from_phys(next + 8, &mut slot);
        crate::mm::kalloc::free_frame(crate::mm::kalloc::Frame::from_phys(next));
        if slots.len() < slots.capacity() {
            slots.push(u64::from_le_bytes(slot));
        }
        next = u64::from_le_bytes(link);
        n += 1;
    }
    debug_assert_eq!(n, r.count, "retired page-table list and its count disagree");
    if !slots.is_empty() {
        with_memory(|guard| {
            if let Some(m) = guard.as_mut()
                && m.free_slots.try_reserve(slots.len()).is_ok()
            {
                m.free_slots.extend_from_slice(&slots);
            }
        });
    }
    n
}

/// Test support: the next never-used stack slot becomes `slot` (to reach the region's end).
/// Returns the previous value, to put back.
pub fn set_next_stack_slot(slot: u64) -> u64 {
    with_memory(|guard| {
        guard
            .as_mut()
            .map_or(0, |m| core::mem::replace(&mut m.next_stack_slot, slot))
    })
}

/// Test support: the next never-used stack slot and the slots waiting to be mapped again.
pub fn stack_slots() -> (u64, usize) {
    with_memory(|guard| {
        guard
            .as_ref()
            .map_or((0, 0), |m| (m.next_stack_slot, m.free_slots.len()))
    })
}

/// Frames of the free-slot list's buffer while it is a large allocation (0 while it is a
/// slab object, whose frames count as the slab's). The list grows for good when reclaimed
/// tables give many slots back at once (a reclaim after a burst of thread ends), so a frame
/// count that must come back exactly counts these as kept (`harness::free_frames`): a
/// growth from 8 to 16 KiB during a process test read as 2 frames lost (seen once at -smp
/// 16 beside host load, 2026-12-05).
pub fn slot_list_frames() -> u64 {
    with_memory(|guard| {
        guard.as_ref().map_or(0, |m| {
            core::alloc::Layout::array::<u64>(m.free_slots.capacity())
                .map_or(0, super::kalloc::large_frames_for)
        })
    })
}

/// Test support: slots waiting to be mapped again.
pub fn free_stack_slots() -> usize {
    with_memory(|guard| guard.as_ref().map_or(0, |m| m.free_slots.len()))
}

/// Unmaps a stack from [`alloc_stack`] and gives its frames back; its page table is retired
/// (see [`RetiredTables`]). The caller guarantees no CPU runs on it or will touch it again;
/// its address range is mapped again only after its table was released (see `alloc_stack`).
pub fn free_stack(s: Stack) {
    with_memory(|guard| {
        if let Some(m) = guard.as_mut() {
            unmap_range(m, s.bottom, (s.top - s.bottom) / PAGE);
        }
    });
}

/// End of the physical range the direct map covers (the RAM handed over, firmware memory
/// among it, boot modules, and at least the low 4 GiB); 4 GiB before `init`.
pub fn direct_end() -> u64 {
    with_memory(|m| m.as_ref().map_or(4 << 30, |m| m.direct_end))
}

/// The kernel tables' root (the CR3 of kernel threads and of CPUs with no user space loaded).
pub fn kernel_root() -> u64 {
    with_memory(|m| m.as_ref().map_or(0, |m| m.tables.root()))
}

/// New tables for a user address space: empty lower half, the kernel half shared. The root
/// frame is taken before the memory lock (interrupts on, where the allocator may reclaim
/// empty slabs: none is reclaimed under the lock). Until 2026-12-06 it was taken under it,
/// and a spawn failed with `ENOMEM` while empty slabs held the memory (found by review;
/// `mm.stack_allocation_reclaims_empty_slabs`).
pub fn new_user_tables() -> Result<PageTables, MemError> {
    /// The one frame taken before the lock.
    struct Taken(Option<u64>);
    impl FrameSource for Taken {
        fn alloc_zeroed_frame(&mut self) -> Option<u64> {
            self.0.take()
        }
    }
    let root = KernelFrames
        .alloc_zeroed_frame()
        .ok_or(MemError::OutOfMemory)?;
    let mut taken = Taken(Some(root));
    let r = with_memory(|m| {
        let m = m.as_ref().ok_or(MemError::NotInitialised)?;
        PageTables::new_user(&mut taken, &m.tables).map_err(MemError::from)
    });
    if let Some(f) = taken.0 {
        crate::mm::kalloc::free_frame(crate::mm::kalloc::Frame::from_phys(f));
    }
    r
}

/// Translates `va` through the kernel tables (tests).
pub fn translate(va: u64) -> Option<(u64, Flags)> {
    with_memory(|m| m.as_ref().and_then(|m| m.tables.translate(va)))
}
