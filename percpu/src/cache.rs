//! Per-CPU allocation caches reached through `gs:` (the allocator's fast paths):
//! one intrusive free list per object size class, and a magazine of 4 KiB frames.
//!
//! Fast-path rules: only the owning CPU touches its caches, with preemption held off (a
//! [`Pinned`] guard); interrupt handlers never allocate. No LOCK prefix, no interrupt
//! save/restore: a pop is `mov; test; jz; mov; mov; dec`.

use crate::Pinned;
use core::arch::asm;

/// Object size classes with a per-CPU list (the kernel uses the first `exo_mm` class count).
pub const OBJ_CLASSES: usize = 16;
/// Frames one CPU's page magazine holds.
pub const PAGE_SLOTS: usize = 63;

/// Offset of the object lists in the block (right after the hot header).
pub const OFF_OBJ: usize = 64;
/// Offset of the page magazine.
pub const OFF_PAGES: usize = OFF_OBJ + OBJ_CLASSES * 16;

/// One class's free list: head (0 = empty) and length.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjList {
    /// First free object (its first word points at the next, 0 ends the list).
    pub head: usize,
    /// Objects on the list.
    pub count: usize,
}

/// A stack of free 4 KiB frames.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PageCache {
    /// Frames in `slots[..len]`.
    pub len: usize,
    /// Physical addresses.
    pub slots: [u64; PAGE_SLOTS],
}

/// The caches of one CPU (inside its `PerCpu` block, at `OFF_OBJ`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Caches {
    /// Object lists by class.
    pub obj: [ObjList; OBJ_CLASSES],
    /// Frame magazine.
    pub pages: PageCache,
}

impl Caches {
    /// Empty caches.
    pub const fn new() -> Self {
        Caches {
            obj: [ObjList { head: 0, count: 0 }; OBJ_CLASSES],
            pages: PageCache {
                len: 0,
                slots: [0; PAGE_SLOTS],
            },
        }
    }
}

impl Default for Caches {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = {
    assert!(core::mem::offset_of!(crate::PerCpu<u8>, caches) == OFF_OBJ);
    assert!(core::mem::offset_of!(Caches, pages) == OFF_PAGES - OFF_OBJ);
};

/// Pops a free object of `class` from this CPU's list (`None` when it is empty).
#[inline(always)]
pub fn obj_pop(_g: &impl Pinned, class: usize) -> Option<usize> {
    debug_assert!(class < OBJ_CLASSES);
    let idx = (class % OBJ_CLASSES) * 16;
    let obj: usize;
    // SAFETY: GS points at this CPU's block (installed before any guard exists) and `idx`
    // stays inside the object lists. Every object on a list was put there by `obj_push` or
    // `obj_splice`, whose contracts make it a free, mapped object holding the next pointer in
    // its first word; the guard keeps us on this CPU and interrupt handlers never allocate, so
    // the load-and-store of the head cannot interleave with another access to this list.
    unsafe {
        asm!(
            "mov {obj}, qword ptr gs:[{idx} + {off}]",
            "test {obj}, {obj}",
            "jz 2f",
            "mov {next}, qword ptr [{obj}]",
            "mov qword ptr gs:[{idx} + {off}], {next}",
            "dec qword ptr gs:[{idx} + {off} + 8]",
            "2:",
            idx = in(reg) idx,
            obj = out(reg) obj,
            next = out(reg) _,
            off = const OFF_OBJ,
            options(nostack),
        );
    }
    if obj == 0 { None } else { Some(obj) }
}

/// Pushes a free object on this CPU's list of `class`; returns the list's new length.
///
/// # Safety
/// `obj` must be a free object of `class`: at least 8 bytes, 8-aligned, mapped writable, no
/// longer used by anyone, and not on any list. Its first word is overwritten.
#[inline(always)]
pub unsafe fn obj_push(_g: &impl Pinned, class: usize, obj: usize) -> usize {
    debug_assert!(class < OBJ_CLASSES && obj != 0 && obj.is_multiple_of(8));
    let idx = (class % OBJ_CLASSES) * 16;
    let count: usize;
    // SAFETY: the caller hands over `obj` (writable, unused); GS and `idx` as in `obj_pop`.
    unsafe {
        asm!(
            "mov {tmp}, qword ptr gs:[{idx} + {off}]",
            "mov qword ptr [{obj}], {tmp}",
            "mov qword ptr gs:[{idx} + {off}], {obj}",
            "mov {count}, qword ptr gs:[{idx} + {off} + 8]",
            "inc {count}",
            "mov qword ptr gs:[{idx} + {off} + 8], {count}",
            idx = in(reg) idx,
            obj = in(reg) obj,
            tmp = out(reg) _,
            count = out(reg) count,
            off = const OFF_OBJ,
            options(nostack),
        );
    }
    count
}

/// This CPU's list of `class`: (head, count), read without changing it.
#[inline]
pub fn obj_list(g: &impl Pinned, class: usize) -> ObjList {
    this_caches(g).obj[class % OBJ_CLASSES]
}

/// Detaches this CPU's whole list of `class` and returns it.
#[inline]
pub fn obj_take(_g: &impl Pinned, class: usize) -> ObjList {
    let idx = (class % OBJ_CLASSES) * 16;
    let (head, count): (usize, usize);
    // SAFETY: as in `obj_pop`; this only moves the list's ownership to the caller.
    unsafe {
        asm!(
            "xor {h}, {h}",
            "xchg {h}, qword ptr gs:[{idx} + {off}]",
            "xor {c}, {c}",
            "xchg {c}, qword ptr gs:[{idx} + {off} + 8]",
            idx = in(reg) idx,
            h = out(reg) head,
            c = out(reg) count,
            off = const OFF_OBJ,
            options(nostack),
        );
    }
    ObjList { head, count }
}

/// Puts a detached chain back as this CPU's list of `class` (which must be empty).
///
/// # Safety
/// `list` must be a chain of `list.count` free objects of `class` (as for [`obj_push`])
/// linked through their first words and ending in 0, owned by the caller and given up; this
/// CPU's list of `class` must be empty (e.g. just taken with [`obj_take`]).
#[inline]
pub unsafe fn obj_set(_g: &impl Pinned, class: usize, list: ObjList) {
    let idx = (class % OBJ_CLASSES) * 16;
    // SAFETY: GS and `idx` as in `obj_pop`; the caller vouches for the chain.
    unsafe {
        asm!(
            "mov qword ptr gs:[{idx} + {off}], {h}",
            "mov qword ptr gs:[{idx} + {off} + 8], {c}",
            idx = in(reg) idx,
            h = in(reg) list.head,
            c = in(reg) list.count,
            off = const OFF_OBJ,
            options(nostack),
        );
    }
}

/// Pops a frame from this CPU's page magazine.
#[inline(always)]
pub fn page_pop(_g: &impl Pinned) -> Option<u64> {
    let pa: u64;
    // SAFETY: GS points at this CPU's block; `len` <= PAGE_SLOTS is kept by `page_push`, so
    // the slot index stays inside the magazine; only this CPU touches it (guard).
    unsafe {
        asm!(
            "xor {pa:e}, {pa:e}",
            "mov {n}, qword ptr gs:[{off}]",
            "test {n}, {n}",
            "jz 2f",
            "dec {n}",
            "mov {pa}, qword ptr gs:[{off} + 8 + {n} * 8]",
            "mov qword ptr gs:[{off}], {n}",
            "2:",
            n = out(reg) _,
            pa = out(reg) pa,
            off = const OFF_PAGES,
            options(nostack),
        );
    }
    if pa == 0 { None } else { Some(pa) }
}

/// Pushes a frame on this CPU's page magazine; gives it back when the magazine is full.
#[inline(always)]
pub fn page_push(_g: &impl Pinned, pa: u64) -> Result<usize, u64> {
    debug_assert!(pa != 0);
    let n: usize;
    let stored: u64;
    // SAFETY: as in `page_pop`; the store happens only when `len < PAGE_SLOTS`.
    unsafe {
        asm!(
            "xor {ok:e}, {ok:e}",
            "mov {n}, qword ptr gs:[{off}]",
            "cmp {n}, {slots}",
            "jae 2f",
            "mov qword ptr gs:[{off} + 8 + {n} * 8], {pa}",
            "inc {n}",
            "mov qword ptr gs:[{off}], {n}",
            "mov {ok:e}, 1",
            "2:",
            n = out(reg) n,
            ok = out(reg) stored,
            pa = in(reg) pa,
            off = const OFF_PAGES,
            slots = const PAGE_SLOTS,
            options(nostack),
        );
    }
    if stored != 0 { Ok(n) } else { Err(pa) }
}

/// Frames in this CPU's magazine.
#[inline]
pub fn page_count(g: &impl Pinned) -> usize {
    this_caches(g).pages.len
}

fn this_caches(g: &impl Pinned) -> Caches {
    let p: &crate::PerCpu<()> = crate::this_cpu(g);
    // Read through a volatile copy: the fields are written by asm through GS.
    // SAFETY: `p` is this CPU's block; `caches` is plain data only this CPU writes.
    unsafe { core::ptr::read_volatile(&raw const p.caches) }
}
