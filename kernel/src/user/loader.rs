//! The program loader: an ELF64 executable (checked by `exo-elf`: W^X, user range, entry in
//! an executable segment, only RELATIVE relocations) becomes mappings of an address space,
//! plus a stack. Every page is committed and the image's filled before any thread runs in
//! the space (the stack's pages are demand-zero: charged now, each given its frame at its
//! first touch); a failure leaves a space its owner drops (every frame comes back).

use super::aspace::{AddressSpace, USER_MIN, VmError};
use exo_arch::paging::UserFlags;
use exo_elf::{ElfError, LoadOptions};

const PAGE: u64 = 4096;
/// Top of the initial thread's stack (a gap below the end of the user half).
pub const STACK_TOP: u64 = 0x7FFF_FFFF_0000;
/// Size of the initial thread's stack; the page below it stays unmapped (guard).
pub const STACK_SIZE: u64 = 256 * 1024;
/// What the loader accepts: `exo_elf`'s [`LoadOptions::EXO_KERNEL`] (the user range below
/// the stack and its guard page, 16 segments, 256 MiB of pages, PIE bias 4 MiB), which the
/// host tests of the initrd check its programs against. Until 2026-12-06 the loader built
/// its own options and those tests planned with [`LoadOptions::DEFAULT`] (1 GiB, another
/// range), so they did not check what the kernel accepts (found by review).
pub const OPTIONS: LoadOptions = LoadOptions::EXO_KERNEL;
// The shared options match this kernel's layout.
const _: () =
    assert!(OPTIONS.user_start == USER_MIN && OPTIONS.user_end == STACK_TOP - STACK_SIZE - PAGE);

/// Why a program could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// The file is not an executable this kernel runs.
    Elf(ElfError),
    /// Mapping failed (out of memory, or a layout the space refuses).
    Vm(VmError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Elf(e) => write!(f, "bad executable: {e}"),
            LoadError::Vm(e) => write!(f, "cannot map it: {e}"),
        }
    }
}

impl From<VmError> for LoadError {
    fn from(e: VmError) -> Self {
        LoadError::Vm(e)
    }
}

/// What the first thread needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Entry point.
    pub entry: u64,
    /// Initial stack pointer (16-byte aligned).
    pub stack_top: u64,
    /// Where the image lies (lowest and end address).
    pub image: (u64, u64),
}

/// Loads `elf` into `a` (an empty space) and maps its stack.
pub fn load(a: &AddressSpace, elf: &[u8]) -> Result<Loaded, LoadError> {
    let plan = exo_elf::plan(elf, &OPTIONS).map_err(LoadError::Elf)?;
    for seg in plan.segments() {
        let pages = seg.pages();
        // A first page shared with the previous segment is mapped already (same rights).
        let start = if seg.shares_first_page {
            pages.start + PAGE
        } else {
            pages.start
        };
        if start < pages.end {
            a.map(
                Some(start),
                pages.end - start,
                seg.perms.write,
                seg.perms.execute,
            )?;
        }
        a.write(seg.vaddr, plan.file_bytes(seg))?;
    }
    for r in plan.relocations() {
        a.write(r.vaddr, &r.value.to_le_bytes())?;
    }
    // A segment the file grants no access at all (a guard region) was mapped readable for
    // the copy: its pages lose every right now (a first page shared with the previous
    // segment has the same rights: none). Until 2026-12-05 it stayed readable (found by
    // review).
    for seg in plan.segments() {
        let p = &seg.perms;
        if !(p.read || p.write || p.execute) {
            let pages = seg.pages();
            a.protect_flags(pages.start, pages.end - pages.start, UserFlags::NONE)?;
        }
    }
    // Demand-zero: charged in full now, each page's frame allocated and zeroed at its
    // first touch (most programs touch a few of its 64 pages). Mapped and zeroed whole,
    // it was about a quarter of `proc.spawn` (icount 138,517 on 2026-12-06).
    a.map_lazy(
        Some(STACK_TOP - STACK_SIZE),
        STACK_SIZE,
        UserFlags::new(true, false),
    )?;
    let img = plan.image_range();
    Ok(Loaded {
        entry: plan.entry(),
        stack_top: STACK_TOP,
        image: (img.start, img.end),
    })
}
