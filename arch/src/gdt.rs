//! Per-CPU GDT and TSS (IST stacks for #DB, NMI, #DF and #MC), laid out for SYSCALL/SYSRET.
//!
//! | index | selector        | descriptor                                                   |
//! |-------|-----------------|--------------------------------------------------------------|
//! | 0     | 0x00            | null                                                         |
//! | 1     | 0x08 [`KERNEL_CS`] | kernel code, 64-bit (SYSCALL: CS = STAR[47:32])          |
//! | 2     | 0x10 [`KERNEL_DS`] | kernel data (SYSCALL: SS = STAR[47:32] + 8)              |
//! | 3     | 0x18            | null: the 32-bit user code slot SYSRET's base names (STAR[63:48]); no compatibility mode, so a far jump there faults |
//! | 4     | 0x23 [`USER_DS`]   | user data, DPL 3 (SYSRET: SS = base + 8)                 |
//! | 5     | 0x2B [`USER_CS`]   | user code, 64-bit, DPL 3 (SYSRET: CS = base + 16)        |
//! | 6, 7  | 0x30 [`TSS_SEL`]   | the TSS (a 16-byte system descriptor)                    |
//!
//! Right after the eight descriptors (outside the GDT limit, so no selector reaches it) each
//! CPU's tables hold that CPU's kernel GS base: the paranoid trap entries (NMI, #MC, #DB,
//! #DF: they can interrupt the syscall path before or after its `swapgs`) find it with
//! `sgdt`, which needs no GS, and compare it with the live GS base (see `trap.rs`).

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, SS, Segment};
use x86_64::instructions::tables::{lgdt, load_tss, sgdt};
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::{Descriptor, DescriptorFlags, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// SYSRET's selector base (STAR[63:48]): user SS = base + 8, user CS = base + 16 (RPL 3).
pub const SYSRET_BASE: u16 = 0x18 | 3;
/// User data (and stack) selector, RPL 3.
pub const USER_DS: u16 = 0x20 | 3;
/// User 64-bit code selector, RPL 3.
pub const USER_CS: u16 = 0x28 | 3;
/// The TSS selector.
pub const TSS_SEL: u16 = 0x30;

const _: () = assert!(KERNEL_DS == KERNEL_CS + 8, "SYSCALL loads SS = CS + 8");
const _: () = assert!(USER_DS == SYSRET_BASE + 8, "SYSRET loads SS = base + 8");
const _: () = assert!(USER_CS == SYSRET_BASE + 16, "SYSRET loads CS = base + 16");

/// Descriptors in the GDT.
pub const GDT_LEN: usize = 8;
/// Offset of the kernel GS base from the GDT base (the paranoid entries read it there).
pub const GDT_KERNEL_GS_OFFSET: usize = GDT_LEN * 8;
/// IST slot (1-based, as in the TSS) of #DF.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of NMIs.
pub const IST_NMI: u8 = 2;
/// IST slot of machine checks.
pub const IST_MACHINE_CHECK: u8 = 3;
/// IST slot of #DB: a #DB on the first instruction of the syscall entry would otherwise be
/// pushed on the user's stack (SYSCALL does not switch stacks).
pub const IST_DEBUG: u8 = 4;
/// IST stacks each CPU needs.
pub const IST_STACKS: usize = 4;

/// One CPU's descriptor tables. Allocated once per CPU and never freed.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct CpuTables {
    gdt: [u64; GDT_LEN],
    /// This CPU's kernel GS base (its per-CPU block), read by the paranoid trap entries.
    kernel_gs_base: u64,
    tss: TaskStateSegment,
}

const _: () = assert!(core::mem::offset_of!(CpuTables, gdt) == 0);
const _: () = assert!(core::mem::offset_of!(CpuTables, kernel_gs_base) == GDT_KERNEL_GS_OFFSET);

impl CpuTables {
    /// Tables with `ist[i]` as the top of IST stack `i + 1` and `rsp0` as the ring-0 stack.
    pub const fn new(ist: [u64; IST_STACKS], rsp0: u64) -> Self {
        let mut tss = TaskStateSegment::new();
        let mut i = 0;
        while i < IST_STACKS {
            tss.interrupt_stack_table[i] = VirtAddr::new_truncate(ist[i]);
            i += 1;
        }
        tss.privilege_stack_table[0] = VirtAddr::new_truncate(rsp0);
        CpuTables {
            gdt: [0; GDT_LEN],
            kernel_gs_base: 0,
            tss,
        }
    }
}

/// Builds the GDT around the TSS, records `kernel_gs_base` (the address of this CPU's
/// per-CPU block, installed now or later in its bring-up) and loads GDT, segments and TR on
/// the calling CPU. DS, ES, FS and GS get the null selector (their bases kept:
/// [`crate::segs::load`]): what the kernel runs with and every thread starts with, so that
/// a switch between threads that never loaded another finds nothing to do
/// (`crate::segs`). Until 2026-12-06 DS and ES held the kernel data selector here, which
/// only the first IRETQ to ring 3 nulled (its DPL is 0) and SYSRET never did.
pub fn load(tables: &'static mut CpuTables, kernel_gs_base: u64) {
    let p: *mut CpuTables = tables;
    // SAFETY: the TSS lives in the same 'static allocation as the GDT and is never moved or
    // freed, so the descriptor stays valid for as long as the GDT is loaded.
    let Descriptor::SystemSegment(tss_lo, tss_hi) =
        (unsafe { Descriptor::tss_segment_unchecked(&raw const (*p).tss) })
    else {
        unreachable!("a TSS descriptor is a system segment")
    };
    // SAFETY: `p` comes from the unique `&'static mut`, which is not used again; the tables
    // are written before the CPU is told about them, and from then on only through raw
    // pointers (`set_rsp0`), never through a reference.
    unsafe {
        (*p).gdt = [
            0,
            DescriptorFlags::KERNEL_CODE64.bits(),
            DescriptorFlags::KERNEL_DATA.bits(),
            0,
            DescriptorFlags::USER_DATA.bits(),
            DescriptorFlags::USER_CODE64.bits(),
            tss_lo,
            tss_hi,
        ];
        (*p).kernel_gs_base = kernel_gs_base;
    }
    let ptr = DescriptorTablePointer {
        limit: (GDT_LEN * 8 - 1) as u16,
        base: VirtAddr::new(p as u64),
    };
    // SAFETY: the GDT is complete and 'static; the selectors index its valid descriptors
    // (kernel code and data, the TSS, not busy yet).
    unsafe {
        lgdt(&ptr);
        CS::set_reg(SegmentSelector(KERNEL_CS));
        SS::set_reg(SegmentSelector(KERNEL_DS));
        load_tss(SegmentSelector(TSS_SEL));
    }
    #[cfg(target_os = "none")]
    crate::segs::load(0);
}

/// The calling CPU's tables, if the loaded GDT is one [`load`] installed (the boot and AP
/// trampoline GDTs are shorter).
pub(crate) fn loaded() -> Option<*mut CpuTables> {
    let d = sgdt();
    (usize::from(d.limit) == GDT_LEN * 8 - 1).then_some(d.base.as_u64() as *mut CpuTables)
}

/// Sets the calling CPU's TSS RSP0: the stack the CPU switches to when an interrupt or
/// exception arrives in ring 3 (the scheduler sets it to the incoming thread's kernel stack
/// top, interrupts off). Returns false when the CPU runs on a GDT [`load`] did not install.
pub fn set_rsp0(top: u64) -> bool {
    let Some(p) = loaded() else {
        return false;
    };
    // SAFETY: `p` is this CPU's `CpuTables` (the GDT base `load` gave the CPU, 'static);
    // only this CPU writes its RSP0, with interrupts off (the caller's contract: the
    // scheduler's switch), and no reference to the tables exists. The TSS field is packed:
    // an unaligned write.
    unsafe {
        let rsp0 = (&raw mut (*p).tss.privilege_stack_table).cast::<u64>();
        rsp0.write_unaligned(top);
    }
    true
}

/// The address of the calling CPU's TSS.RSP0 field, if its GDT is one [`load`] installed:
/// what the scheduler keeps per CPU to set RSP0 with [`set_rsp0_at`] (no `sgdt` at every
/// switch).
pub fn rsp0_addr() -> Option<u64> {
    let p = loaded()?;
    // SAFETY: only the field's address is taken (no read, no reference).
    Some(unsafe { (&raw mut (*p).tss.privilege_stack_table) } as u64)
}

/// [`set_rsp0`] through the address [`rsp0_addr`] gave.
///
/// # Safety
/// `addr` is what [`rsp0_addr`] returned on the calling CPU (its tables are 'static and
/// only this CPU writes its RSP0), and interrupts are off (the scheduler's switch).
#[inline(always)]
pub unsafe fn set_rsp0_at(addr: u64, top: u64) {
    // SAFETY: per the contract, `addr` is this CPU's RSP0 field, written by nobody else; the
    // TSS field is packed: an unaligned write.
    unsafe { (addr as *mut u64).write_unaligned(top) };
}

/// The calling CPU's TSS RSP0 (tests), if its GDT is one [`load`] installed.
pub fn rsp0() -> Option<u64> {
    let p = loaded()?;
    // SAFETY: as in `set_rsp0`, a read.
    Some(unsafe {
        (&raw const (*p).tss.privilege_stack_table)
            .cast::<u64>()
            .read_unaligned()
    })
}

/// The kernel GS base the calling CPU's paranoid trap entries compare with (tests).
pub fn kernel_gs_base() -> Option<u64> {
    let p = loaded()?;
    // SAFETY: as in `set_rsp0`, a read of a field written once by `load`.
    Some(unsafe { (&raw const (*p).kernel_gs_base).read() })
}
