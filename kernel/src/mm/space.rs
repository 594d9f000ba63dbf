//! Address spaces: one page-table root per user process (lower half private, kernel half
//! shared), its PCID when the CPU has PCID and INVPCID, and the set of CPUs that ever loaded
//! it (the targets of its TLB shootdowns). Mapping policy and shootdowns live above
//! (`user::aspace`), which also charges this space's frames, the root and the tables
//! included, to its commit account (`mm::commit`); this is what the scheduler needs to
//! switch spaces.

use crate::mm::memory::{self, MemError};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::paging::PageTables;
use exo_sched::AtomicMask;

/// PCIDs in use (bit `p` = PCID `p`; PCID 0 is the kernel's and the fallback's).
static PCIDS: spin::Mutex<[u64; 64]> = spin::Mutex::new({
    let mut m = [0u64; 64];
    m[0] = 1;
    m
});

fn alloc_pcid() -> u16 {
    if !exo_arch::tlb::pcid_enabled() {
        return 0;
    }
    let mut m = PCIDS.lock();
    for (w, word) in m.iter_mut().enumerate() {
        if *word != u64::MAX {
            let b = (!*word).trailing_zeros();
            *word |= 1 << b;
            return (w as u32 * 64 + b) as u16;
        }
    }
    0 // all 4095 taken: this space runs untagged (flushed at every switch to it)
}

fn free_pcid(p: u16) {
    if p != 0 {
        PCIDS.lock()[usize::from(p / 64)] &= !(1 << (p % 64));
    }
}

/// PCIDs in use besides the kernel's (tests: spaces give theirs back).
pub fn pcids_in_use() -> u32 {
    PCIDS.lock().iter().map(|w| w.count_ones()).sum::<u32>() - 1
}

/// One address space.
#[derive(Debug)]
pub struct Space {
    /// The tables; every change to user mappings happens under this lock.
    pub tables: spin::Mutex<PageTables>,
    root: u64,
    pcid: u16,
    /// What a switch to it loads into CR3 (root, PCID, keep its entries when tagged).
    cr3: crate::sys::SpaceCr3,
    /// CPUs that loaded this space (never cleared: with PCIDs their TLBs keep its entries).
    loaded: Box<[AtomicU64]>,
    ncpus: u32,
}

impl Space {
    /// A new space with an empty lower half, for `ncpus` CPUs.
    pub fn new(ncpus: u32) -> Result<Space, MemError> {
        let mut loaded = alloc::vec::Vec::new();
        loaded
            .try_reserve_exact(AtomicMask::words_for(ncpus))
            .map_err(|_| MemError::OutOfMemory)?;
        loaded.resize_with(AtomicMask::words_for(ncpus), || AtomicU64::new(0));
        let tables = memory::new_user_tables()?;
        let (root, pcid) = (tables.root(), alloc_pcid());
        Ok(Space {
            root,
            tables: spin::Mutex::new(tables),
            pcid,
            cr3: crate::sys::SpaceCr3::of(root, pcid, pcid != 0),
            loaded: loaded.into_boxed_slice(),
            ncpus,
        })
    }

    /// The root (physical) and PCID.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// See [`Space::root`].
    pub fn pcid(&self) -> u16 {
        self.pcid
    }

    /// The CPUs that loaded this space.
    pub fn loaded(&self) -> AtomicMask<'_> {
        AtomicMask::new(&self.loaded, self.ncpus)
    }

    /// Loads this space on the calling CPU (`cpu`), keeping its PCID's entries when tagged.
    /// Interrupts off (the scheduler's switch).
    #[inline(always)]
    pub fn activate(&self, cpu: u32) {
        // Marked first: a shootdown that changes a mapping after this reads the mark. The
        // usual case (marked long ago) is one load of the word (`AtomicMask::contains`
        // without building the mask; a CPU beyond `ncpus` is never marked, as `set` refuses).
        let marked = self
            .loaded
            .get(cpu as usize / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (cpu % 64)) != 0);
        if !marked {
            self.mark(cpu);
        }
        crate::sys::switch_space_cr3(self.cr3);
    }

    /// Marks `cpu` in `loaded` (out of line: the switch's usual case is marked already).
    /// Unmarked, the CPU would load the tables and never be shot down (stale translations
    /// after unmap): refused loudly. Unreachable while every CPU id is below
    /// `cpus::capacity()`, the mask's size (found by review, 2026-12-04).
    #[cold]
    #[inline(never)]
    fn mark(&self, cpu: u32) {
        assert!(
            self.loaded().set(cpu),
            "CPU {cpu} loads an address space whose mask cannot hold it"
        );
    }
}

impl Drop for Space {
    /// Frees every user frame and table and the PML4. The owner shot down and evicted the
    /// space on every CPU in `loaded` first (`user::aspace`), so nothing uses it.
    fn drop(&mut self) {
        let t = self.tables.get_mut();
        // Demand-zero pages have no frame: their charge goes with the owner's account.
        let _lazy = t.free_user_half(
            |pa| crate::mm::kalloc::free_frame(crate::mm::kalloc::Frame::from_phys(pa)),
            |pa| crate::mm::kalloc::free_frame(crate::mm::kalloc::Frame::from_phys(pa)),
        );
        crate::mm::kalloc::free_frame(crate::mm::kalloc::Frame::from_phys(self.root));
        free_pcid(self.pcid);
    }
}
