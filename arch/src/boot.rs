//! PVH entry: the ELF note that makes one ELF bootable by QEMU `-kernel`, Firecracker and
//! Cloud Hypervisor, the 32-bit entry that builds boot page tables and enters long mode, and
//! the jump to the kernel's `exo_bsp_main(start_info_paddr)`.
//!
//! The image is linked in the upper half (`layout::KERNEL_BASE` + its physical address) but
//! the PVH loader enters it at its physical address in 32-bit mode, so the entry code names
//! every symbol as `symbol - KERNEL_BASE`. Its boot page tables map the first 4 GiB with
//! 2 MiB pages three times: identity (the code running now, and the AP trampoline), the
//! direct map (`layout::PHYS_OFFSET`), and the first GiB at `KERNEL_BASE` (the image); then it
//! jumps to the upper half and never uses the identity map again. They are writable and
//! executable, so they only live until the kernel builds its final tables (`paging`); the AP
//! trampoline borrows them for the same short hop into long mode.

/// Size of the BSP's boot stack (it becomes CPU 0's kernel stack until a guarded one replaces it).
pub const BOOT_STACK_SIZE: usize = 256 * 1024;

core::arch::global_asm!(
    r#"
    .section .note.pvh, "a"
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .long pvh_start32 - {kbase}
    .p2align 2

    .section .bss.boot, "aw", @nobits
    .p2align 12
    .global exo_boot_pml4
exo_boot_pml4:  .skip 4096
exo_boot_pdpt:  .skip 4096
exo_boot_pdpt_hi: .skip 4096
exo_boot_pd:    .skip 4096 * 4
    .p2align 4
    .global exo_boot_stack_bottom
exo_boot_stack_bottom:
    .skip {stack_size}
    .global exo_boot_stack_top
exo_boot_stack_top:

    .section .data.boot, "aw"
    .p2align 3
    .global exo_boot_tsc
exo_boot_tsc: .quad 0

    .section .rodata.boot, "a"
    .p2align 3
exo_boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
exo_boot_gdt_end:
    .p2align 3
exo_boot_gdt_ptr:               /* physical base: loaded in 32-bit mode */
    .word exo_boot_gdt_end - exo_boot_gdt - 1
    .quad exo_boot_gdt - {kbase}
    .p2align 3
    .global exo_boot_gdt_ptr_hi
exo_boot_gdt_ptr_hi:            /* the same GDT through the image window (also the APs') */
    .word exo_boot_gdt_end - exo_boot_gdt - 1
    .quad exo_boot_gdt

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi                 /* start_info physical address, kept in esi */
    rdtsc                           /* BOOT,first-instruction stamp */
    movl %eax, exo_boot_tsc - {kbase}
    movl %edx, exo_boot_tsc - {kbase} + 4

    /* Zero .bss: the loader zero-fills, but nothing here depends on that. */
    movl $__bss_start - {kbase}, %edi
    movl $__bss_end - {kbase}, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    /* PML4[0] (identity) and PML4[256] (direct map) -> PDPT; PDPT[0..4] -> PD[0..4];
       PML4[511] -> PDPT_HI; PDPT_HI[510] -> PD[0] (the first GiB at KERNEL_BASE).
       PD entries: 2 MiB pages, present+write. */
    movl $exo_boot_pdpt - {kbase}, %eax
    orl $0x3, %eax
    movl %eax, exo_boot_pml4 - {kbase}
    movl %eax, exo_boot_pml4 - {kbase} + 256 * 8
    movl $exo_boot_pdpt_hi - {kbase}, %eax
    orl $0x3, %eax
    movl %eax, exo_boot_pml4 - {kbase} + 511 * 8
    movl $exo_boot_pd - {kbase}, %eax
    orl $0x3, %eax
    movl %eax, exo_boot_pdpt_hi - {kbase} + 510 * 8
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $exo_boot_pd - {kbase}, %eax
    orl $0x3, %eax
    movl %eax, exo_boot_pdpt - {kbase}(,%ecx,8)
    incl %ecx
    cmpl $4, %ecx
    jne 1b
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                 /* present, write, 2 MiB */
    movl %eax, exo_boot_pd - {kbase}(,%ecx,8)
    movl %ecx, %eax
    shrl $11, %eax                  /* high dword: bits 32.. of the address */
    movl %eax, exo_boot_pd - {kbase} + 4(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jne 2b

    movl %cr4, %eax
    orl $(1 << 5), %eax             /* PAE */
    movl %eax, %cr4
    movl $exo_boot_pml4 - {kbase}, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* EFER */
    rdmsr
    orl $(1 << 8), %eax             /* LME */
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax  /* PG, WP, PE */
    movl %eax, %cr0

    lgdt exo_boot_gdt_ptr - {kbase}
    ljmp $0x08, $3f - {kbase}

    .code64
3:  movabsq $5f, %rax               /* to the upper half */
    jmp *%rax
5:  lgdt exo_boot_gdt_ptr_hi(%rip)
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $exo_boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                 /* arg0: start_info paddr (zero-extended) */
    call exo_bsp_main
4:  cli
    hlt
    jmp 4b
"#,
    stack_size = const BOOT_STACK_SIZE,
    kbase = const crate::layout::KERNEL_BASE,
    options(att_syntax)
);

unsafe extern "C" {
    static exo_boot_tsc: u64;
    static exo_boot_pml4: u8;
    static exo_boot_stack_bottom: u8;
    static exo_boot_stack_top: u8;
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

/// Addresses (in the image window, `layout::KERNEL_BASE + physical`) of the kernel image's
/// parts, from the linker script.
#[derive(Debug, Clone, Copy)]
pub struct KernelImage {
    /// First byte of the image (and of .text).
    pub start: u64,
    /// End of .text (start of .rodata), 4 KiB aligned.
    pub text_end: u64,
    /// End of .rodata (start of .data), 4 KiB aligned.
    pub rodata_end: u64,
    /// End of the image including .bss, 4 KiB aligned.
    pub end: u64,
}

/// The image layout (virtual; `layout::image_to_phys` gives the physical addresses).
pub fn kernel_image() -> KernelImage {
    KernelImage {
        start: &raw const __kernel_start as u64,
        text_end: &raw const __text_end as u64,
        rodata_end: &raw const __rodata_end as u64,
        end: &raw const __kernel_end as u64,
    }
}

/// Physical address of the boot PML4 (4 GiB identity, direct map and image window, W+X:
/// boot and AP start-up only).
pub fn boot_pml4() -> u64 {
    crate::layout::image_to_phys(&raw const exo_boot_pml4 as u64)
}

/// The BSP's boot stack as `[bottom, top)`.
pub fn boot_stack() -> (u64, u64) {
    (
        &raw const exo_boot_stack_bottom as u64,
        &raw const exo_boot_stack_top as u64,
    )
}

/// The TSC value read by the very first instruction of the PVH entry.
pub fn first_instruction_tsc() -> u64 {
    // SAFETY: written once by the entry code before any Rust ran; read-only afterwards.
    unsafe { (&raw const exo_boot_tsc).read_volatile() }
}
