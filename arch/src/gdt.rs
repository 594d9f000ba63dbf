//! Per-CPU GDT and TSS (with IST stacks for #DF, NMI and #MC).

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;

/// One CPU's descriptor tables. Allocated once per CPU and never freed.
#[derive(Debug)]
pub struct CpuTables {
    gdt: GlobalDescriptorTable<8>,
    tss: TaskStateSegment,
}

impl CpuTables {
    /// Tables with `ist[i]` as the top of IST stack `i + 1` and `rsp0` as the ring-0 stack.
    pub const fn new(ist: [u64; 3], rsp0: u64) -> Self {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[0] = VirtAddr::new_truncate(ist[0]);
        tss.interrupt_stack_table[1] = VirtAddr::new_truncate(ist[1]);
        tss.interrupt_stack_table[2] = VirtAddr::new_truncate(ist[2]);
        tss.privilege_stack_table[0] = VirtAddr::new_truncate(rsp0);
        CpuTables {
            gdt: GlobalDescriptorTable::empty(),
            tss,
        }
    }
}

/// Builds the GDT around the TSS and loads GDT, segments and TR on the calling CPU.
pub fn load(tables: &'static mut CpuTables) {
    let tss_ptr = &raw const tables.tss;
    let mut gdt = GlobalDescriptorTable::<8>::empty();
    let kcode = gdt.append(Descriptor::kernel_code_segment());
    let kdata = gdt.append(Descriptor::kernel_data_segment());
    gdt.append(Descriptor::user_data_segment());
    gdt.append(Descriptor::user_code_segment());
    // SAFETY: the TSS lives in the same 'static allocation as the GDT and is never moved or
    // freed, so the descriptor stays valid for as long as the GDT is loaded.
    let tss_sel = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss_ptr) });
    debug_assert_eq!(kcode.0, KERNEL_CS);
    debug_assert_eq!(kdata.0, KERNEL_DS);
    tables.gdt = gdt;
    let tables: &'static CpuTables = tables;
    tables.gdt.load();
    // SAFETY: the selectors index valid descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(SegmentSelector(KERNEL_CS));
        DS::set_reg(SegmentSelector(KERNEL_DS));
        ES::set_reg(SegmentSelector(KERNEL_DS));
        SS::set_reg(SegmentSelector(KERNEL_DS));
        load_tss(tss_sel);
    }
}
