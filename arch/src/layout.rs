//! The kernel's virtual address space. The lower half, but for its last page (below
//! [`USER_END`] = `0x0000_7FFF_FFFF_F000`), belongs to user space; the kernel lives in the
//! upper half:
//!
//! | range                                   | what                                          |
//! |-----------------------------------------|-----------------------------------------------|
//! | `0xFFFF_8000_0000_0000` ([`PHYS_OFFSET`]) | the direct map: physical address `pa` at `PHYS_OFFSET + pa` (RAM, and the MMIO of the low 4 GiB, uncached) |
//! | `0xFFFF_C000_0000_0000`                 | guarded kernel stacks (one 2 MiB slot each)    |
//! | `0xFFFF_FFFF_8000_0000` ([`KERNEL_BASE`]) | the kernel image: physical `pa` at `KERNEL_BASE + pa` (-2 GiB: the `kernel` code model) |
//!
//! The PVH entry runs at physical addresses; its boot page tables map the first 4 GiB three
//! times (identity, direct map, and the image window) so it can jump to the upper half.

/// Base of the direct map of physical memory (PML4 slot 256).
pub const PHYS_OFFSET: u64 = 0xFFFF_8000_0000_0000;
/// Base of the kernel image window: the image is linked at `KERNEL_BASE + its physical address`.
pub const KERNEL_BASE: u64 = 0xFFFF_FFFF_8000_0000;
/// First address above user space: the lower half but for its last page, which is never
/// mapped (Linux's `TASK_SIZE` too). Code running off the end of user space then faults at
/// this canonical address; with the last page mapped, an interrupt taken after an
/// instruction ending there pushed the non-canonical `0x0000_8000_0000_0000`, and the
/// `iretq` back to ring 3 raises #GP in ring 0 on Intel CPUs, after the exit's `swapgs`:
/// the kernel ran on the user's GS (until 2026-12-04).
pub const USER_END: u64 = 0x0000_7FFF_FFFF_F000;

/// The direct-map address of physical address `pa`.
#[inline(always)]
pub const fn phys_to_virt(pa: u64) -> u64 {
    PHYS_OFFSET + pa
}

/// Physical addresses the direct map covers: `[0, DIRECT_MAP_END)` (RAM above is not used).
pub const DIRECT_MAP_END: u64 = 1 << 46;

/// The physical address behind direct-map address `va` (`None` outside the direct map).
#[inline(always)]
pub const fn virt_to_phys(va: u64) -> Option<u64> {
    if va >= PHYS_OFFSET && va < PHYS_OFFSET + DIRECT_MAP_END {
        Some(va - PHYS_OFFSET)
    } else {
        None
    }
}

/// The physical address of a kernel-image address (a symbol of the kernel).
#[inline(always)]
pub const fn image_to_phys(va: u64) -> u64 {
    va - KERNEL_BASE
}
