//! The AP start-up trampoline: real mode at `TRAMPOLINE_PADDR` -> protected mode -> long mode
//! on the boot page tables -> a stack picked by ticket -> `entry(ticket)` in the kernel.
//! APs may start in parallel: each takes a ticket with `lock xadd` and uses `stacks[ticket]`.
//!
//! The trampoline's GDT puts its 64-bit code segment at 0x08, the kernel's code selector
//! ([`crate::gdt::KERNEL_CS`]), which every IDT gate names: an AP that parks before it loads
//! its own GDT can still take an NMI through the park IDT ([`crate::trap::park`]). An AP
//! with no stack of its own (more CPUs than stacks) parks on a shared park stack.

/// Physical address the trampoline is copied to (SIPI vector = address / 4 KiB).
pub const TRAMPOLINE_PADDR: u64 = 0x8000;

core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .p2align 12
    .global exo_ap_tramp_start
    .global exo_ap_tramp_end
    .global exo_ap_tramp_cr3
    .global exo_ap_tramp_efer
    .set TB, 0x8000
exo_ap_tramp_start:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl TB + (tramp_gdt_ptr - exo_ap_tramp_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(TB + (tramp_pm32 - exo_ap_tramp_start))

    .code32
tramp_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl TB + (exo_ap_tramp_cr3 - exo_ap_tramp_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl TB + (exo_ap_tramp_efer - exo_ap_tramp_start), %eax
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16)), %eax
    movl %eax, %cr0
    ljmpl $0x08, $(TB + (tramp_lm64 - exo_ap_tramp_start))

    .code64
tramp_lm64:
    movabsq $exo_ap_entry64, %rax
    jmp *%rax

    .p2align 3
tramp_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code (= gdt::KERNEL_CS) */
    .quad 0x00cf92000000ffff        /* 0x10: data */
    .quad 0x00cf9a000000ffff        /* 0x18: 32-bit code */
tramp_gdt_end:
tramp_gdt_ptr:
    .word tramp_gdt_end - tramp_gdt - 1
    .long TB + (tramp_gdt - exo_ap_tramp_start)
    .p2align 3
exo_ap_tramp_cr3:     .quad 0
exo_ap_tramp_efer:    .long 0
exo_ap_tramp_end:

    /* In kernel text, mapped in the boot and the final tables alike: switch to the final
       tables (EFER.NXE is already on), take a ticket, take that ticket's stack, call Rust. */
    .section .text.ap_entry, "ax"
    .global exo_ap_entry64
exo_ap_entry64:
    /* The trampoline's GDT lives at a low (identity) address the final tables do not map:
       take the boot GDT through the image window first (same selectors), so an interrupt
       that reaches a parked AP can still load its code segment. */
    lgdt exo_boot_gdt_ptr_hi(%rip)
    /* The early IDT (`trap::EXO_EARLY_IDTR`, filled before any AP starts; no IST, so no
       TSS needed): an exception or NMI from here on is reported, by APIC id while the AP
       has no per-CPU block. Until 2026-12-05 the AP ran with IDTR base 0 until `load_idt`
       and any exception triple-faulted the machine. (Before the ticket's stack is taken
       below, RSP is still the one INIT left: a fault in these few instructions is not
       reportable.) */
    lidt EXO_EARLY_IDTR+6(%rip)
    movq exo_ap_final_cr3(%rip), %rcx
    movq %rcx, %cr3
    movl $1, %eax
    lock xaddl %eax, exo_ap_ticket(%rip)
    movl exo_ap_delay_apic(%rip), %r10d
    cmpl $0xffffffff, %r10d
    je 2f
    /* Fault injection (exo.ap_delay_ms): the AP with APIC id exo_ap_delay_apic waits
       exo_ap_delay_ticks first. Its id as `cpu::apic_id_from_cpuid` reads it: leaf 0xB's
       x2APIC id when the leaf exists, else leaf 1's 8-bit initial id. */
    movl %eax, %r8d
    xorl %eax, %eax
    cpuid
    cmpl $0xb, %eax
    jb 3f
    movl $0xb, %eax
    xorl %ecx, %ecx
    cpuid
    testl %ebx, %ebx
    jz 3f
    movl %edx, %r11d
    jmp 4f
3:  movl $1, %eax
    cpuid
    shrl $24, %ebx
    movl %ebx, %r11d
4:  movl %r8d, %eax
    cmpl %r10d, %r11d
    jne 2f
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, %r9
1:  pause
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    subq %r9, %rax
    cmpq exo_ap_delay_ticks(%rip), %rax
    jb 1b
    /* ... and until the BSP has stopped waiting (`close_door`): late for certain, on a
       host of any speed. */
    cmpl $0, exo_ap_door_closed(%rip)
    je 1b
    movl %r8d, %eax
2:  cmpl exo_ap_nstacks(%rip), %eax
    jae 9f                          /* more CPUs than stacks: park */
    movq exo_ap_stacks(%rip), %rbx
    movq (%rbx,%rax,8), %rsp
    xorl %ebp, %ebp
    movl %eax, %edi
    call *exo_ap_rust_entry(%rip)
    /* No stack of its own: park on the shared park stack (only an NMI or #MC frame is
       ever written there, and never read), with the park IDT (see `trap::park`). */
9:  leaq exo_park_stack_top(%rip), %rsp
    jmp exo_park

    .section .data.ap_entry, "aw"
    .p2align 3
exo_ap_final_cr3:   .quad 0
exo_ap_stacks:      .quad 0
exo_ap_rust_entry:  .quad 0
exo_ap_nstacks:     .long 0
exo_ap_delay_apic:  .long 0xffffffff
exo_ap_door_closed: .long 0
    .p2align 3
exo_ap_delay_ticks: .quad 0
    .global exo_ap_ticket
exo_ap_ticket:      .long 0
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static exo_ap_tramp_start: u8;
    static exo_ap_tramp_end: u8;
    static exo_ap_tramp_cr3: u8;
    static exo_ap_tramp_efer: u8;
    static mut exo_ap_final_cr3: u64;
    static mut exo_ap_stacks: u64;
    static mut exo_ap_rust_entry: u64;
    static mut exo_ap_nstacks: u32;
    static exo_ap_delay_apic: core::sync::atomic::AtomicU32;
    static exo_ap_delay_ticks: core::sync::atomic::AtomicU64;
    static exo_ap_door_closed: core::sync::atomic::AtomicU32;
    static exo_ap_ticket: core::sync::atomic::AtomicU32;
}

fn off(sym: *const u8) -> u64 {
    sym as u64 - &raw const exo_ap_tramp_start as u64
}

/// The kernel function each AP calls on its stack with its ticket (0-based start order).
pub type ApEntry = extern "C" fn(ticket: u32) -> !;

/// Copies the trampoline to `TRAMPOLINE_PADDR` and fills its parameters: APs enter long mode
/// on `boot_cr3` (the boot tables: identity, direct map and image window), switch to `final_cr3`, take ticket `t` and stack
/// `stacks[t]` (for `t < nstacks`, else they park) and call `entry(t)`.
///
/// # Safety
/// The 4 KiB at `TRAMPOLINE_PADDR` must be directly mapped, writable, and owned by the caller
/// (reserved from every allocator); `stacks` must point to `nstacks` valid, 16-byte aligned
/// stack tops mapped in `final_cr3` that stay valid for the APs' lifetime; `boot_cr3` must be
/// the boot tables and `final_cr3` tables mapping the kernel image; no AP may be running.
pub unsafe fn install_trampoline(
    boot_cr3: u64,
    final_cr3: u64,
    nx: bool,
    stacks: *const u64,
    nstacks: u32,
    entry: ApEntry,
) {
    let (start, end) = (&raw const exo_ap_tramp_start, &raw const exo_ap_tramp_end);
    let len = end as usize - start as usize;
    assert!(len <= 4096, "AP trampoline larger than a page");
    let dst = crate::layout::phys_to_virt(TRAMPOLINE_PADDR) as *mut u8;
    // SAFETY: the caller owns the destination page and guarantees no AP runs yet, so the
    // kernel-side parameters are not being read concurrently.
    unsafe {
        core::ptr::copy_nonoverlapping(start, dst, len);
        (dst.add(off(&raw const exo_ap_tramp_cr3) as usize) as *mut u64).write_volatile(boot_cr3);
        let efer: u32 = (1 << 8) | if nx { 1 << 11 } else { 0 };
        (dst.add(off(&raw const exo_ap_tramp_efer) as usize) as *mut u32).write_volatile(efer);
        (&raw mut exo_ap_final_cr3).write_volatile(final_cr3);
        (&raw mut exo_ap_stacks).write_volatile(stacks as u64);
        (&raw mut exo_ap_rust_entry).write_volatile(entry as usize as u64);
        (&raw mut exo_ap_nstacks).write_volatile(nstacks);
    }
}

/// Fault injection (`exo.ap_delay_ms`): the AP with APIC id `apic_id` (as
/// [`crate::cpu::apic_id_from_cpuid`] reads it) spins in the trampoline, before it calls the
/// kernel's entry, for `ticks` TSC ticks and until [`close_door`] has been called, so it
/// arrives after the BSP stopped waiting however slow the host. `ticks == 0` turns the delay
/// off. Set it before the first SIPI.
pub fn set_ap_delay(apic_id: u32, ticks: u64) {
    use core::sync::atomic::Ordering::Release;
    let apic_id = if ticks == 0 { u32::MAX } else { apic_id };
    // SAFETY: both words live in .data and are only accessed atomically (plain aligned
    // loads in the trampoline, these stores here).
    unsafe {
        exo_ap_delay_ticks.store(ticks, Release);
        exo_ap_delay_apic.store(apic_id, Release);
    }
}

/// The BSP has stopped waiting for APs: releases an AP held by [`set_ap_delay`], and an AP
/// that reaches the kernel from now on parks ([`door_closed`]).
pub fn close_door() {
    // SAFETY: a u32 in .data, only read by the trampoline with plain aligned loads.
    unsafe { exo_ap_door_closed.store(1, core::sync::atomic::Ordering::Release) };
}

/// Whether [`close_door`] has been called.
pub fn door_closed() -> bool {
    // SAFETY: as in `close_door`: an aligned u32 in .data, read atomically.
    unsafe { exo_ap_door_closed.load(core::sync::atomic::Ordering::Acquire) != 0 }
}

/// The SIPI vector for the trampoline page.
pub const fn sipi_vector() -> u8 {
    (TRAMPOLINE_PADDR >> 12) as u8
}

/// How many APs have taken a ticket so far (reached the kernel's 64-bit entry).
pub fn tickets_taken() -> u32 {
    // SAFETY: the ticket counter is a u32 in .data, only ever updated atomically (lock xadd).
    unsafe { exo_ap_ticket.load(core::sync::atomic::Ordering::Acquire) }
}
