//! CPU feature set-up and small privileged instructions.

use core::arch::asm;
use raw_cpuid::CpuId;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

/// What `enable_features` turned on for this CPU (printed once at boot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// No-execute page bit (EFER.NXE).
    pub nx: bool,
    /// Supervisor-mode execution prevention.
    pub smep: bool,
    /// Supervisor-mode access prevention.
    pub smap: bool,
    /// User-mode instruction prevention.
    pub umip: bool,
    /// The CPU offers `rdgsbase`/`wrgsbase` (CR4.FSGSBASE; left off, see [`enable_features`]).
    pub fsgsbase: bool,
    /// XSAVE enabled (CR4.OSXSAVE) with x87+SSE(+AVX) in XCR0.
    pub xsave: bool,
    /// AVX state enabled in XCR0.
    pub avx: bool,
    /// The CPU offers x2APIC.
    pub x2apic: bool,
    /// Invariant TSC (CPUID 0x8000_0007 EDX bit 8).
    pub invariant_tsc: bool,
    /// TSC-deadline timer mode in the local APIC.
    pub tsc_deadline: bool,
    /// Machine-check exception (#MC, vector 18; CR4.MCE).
    pub mce: bool,
}

/// Detects what the CPU offers without changing anything.
pub fn detect() -> Features {
    let id = CpuId::new();
    let fi = id.get_feature_info();
    let ext = id.get_extended_feature_info();
    let epi = id.get_extended_processor_and_feature_identifiers();
    Features {
        nx: epi.as_ref().is_some_and(|e| e.has_execute_disable()),
        smep: ext.as_ref().is_some_and(|e| e.has_smep()),
        smap: ext.as_ref().is_some_and(|e| e.has_smap()),
        umip: ext.as_ref().is_some_and(|e| e.has_umip()),
        fsgsbase: ext.as_ref().is_some_and(|e| e.has_fsgsbase()),
        xsave: fi.as_ref().is_some_and(|f| f.has_xsave()),
        avx: fi.as_ref().is_some_and(|f| f.has_avx()),
        x2apic: fi.as_ref().is_some_and(|f| f.has_x2apic()),
        invariant_tsc: id
            .get_advanced_power_mgmt_info()
            .is_some_and(|a| a.has_invariant_tsc()),
        tsc_deadline: fi.as_ref().is_some_and(|f| f.has_tsc_deadline()),
        mce: fi.as_ref().is_some_and(|f| f.has_mce()),
    }
}

/// Turns on NX, SSE, SMEP/SMAP/UMIP, XSAVE and machine checks where offered, on the calling
/// CPU.
///
/// CR4.MCE: with it clear, a machine check shuts the CPU down (a triple fault: QEMU exits 0,
/// no report) instead of raising #MC, whose handler stops the machine and says why. Until
/// 2026-12-05 it was never set (found by review).
///
/// CR4.FSGSBASE stays off even where offered: it would let ring 3 write its FS and GS bases
/// (`wrfsbase`/`wrgsbase`), which no switch saves or restores (the user runtime has no TLS),
/// so a base one program wrote would be what the next program on that CPU reads, the GS one
/// through the `swapgs` of its next system call (until 2026-12-04: a leak between processes
/// and a covert channel). Off, those instructions are #UD and end the program; a selector
/// load can only set a base to its descriptor's, 0. The kernel itself never uses them.
/// Every CPU calls it once during its bring-up, before it loads the kernel page tables.
pub fn enable_features() -> Features {
    let f = detect();
    // SAFETY: each bit is set only when CPUID reports the feature; none of them changes the
    // meaning of memory the kernel already uses (no user pages exist yet, so SMEP/SMAP
    // cannot fault kernel accesses), and SSE/XSAVE only enable instructions.
    unsafe {
        if f.nx {
            Efer::update(|e| e.insert(EferFlags::NO_EXECUTE_ENABLE));
        }
        Cr0::update(|c| {
            c.remove(Cr0Flags::EMULATE_COPROCESSOR);
            c.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
        });
        let mut cr4 = Cr4::read();
        cr4.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
        if f.smep {
            cr4.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
        }
        if f.smap {
            cr4.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
        }
        if f.umip {
            cr4.insert(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION);
        }
        cr4.remove(Cr4Flags::FSGSBASE);
        if f.xsave {
            cr4.insert(Cr4Flags::OSXSAVE);
        }
        if f.mce {
            cr4.insert(Cr4Flags::MACHINE_CHECK_EXCEPTION);
        }
        Cr4::write(cr4);
        crate::usercopy::set_smap(f.smap);
        if f.xsave {
            // x87 | SSE, plus AVX when offered.
            let xcr0: u64 = if f.avx { 0b111 } else { 0b11 };
            asm!("xsetbv", in("ecx") 0, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32,
                 options(nomem, nostack));
        }
    }
    f
}

/// This CPU's initial APIC id from CPUID (leaf 0xB when present: the 32-bit x2APIC id).
pub fn apic_id_from_cpuid() -> u32 {
    let id = CpuId::new();
    if let Some(mut topo) = id.get_extended_topology_info()
        && let Some(level) = topo.next()
    {
        return level.x2apic_id();
    }
    id.get_feature_info()
        .map(|f| u32::from(f.initial_local_apic_id()))
        .unwrap_or(0)
}

/// The CPU brand string, or the vendor when there is none.
pub fn model_name(buf: &mut [u8; 48]) -> &str {
    let id = CpuId::new();
    if let Some(b) = id.get_processor_brand_string() {
        let s = b.as_str().trim();
        let n = s.len().min(48);
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        return core::str::from_utf8(&buf[..n]).unwrap_or("unknown");
    }
    "unknown"
}

/// Are we running under a hypervisor, and is it KVM? (CPUID leaf 1 ECX bit 31, leaf 0x4000_0000.)
pub fn hypervisor_is_kvm() -> bool {
    let id = CpuId::new();
    id.get_hypervisor_info()
        .is_some_and(|h| matches!(h.identify(), raw_cpuid::Hypervisor::KVM))
}

/// Are we under a hypervisor that is not KVM (above all QEMU's TCG, whose vCPUs are host
/// threads a loaded host may leave unscheduled for seconds)? CPUID leaf 1 ECX bit 31 and
/// leaf 0x4000_0000; `false` on bare metal.
pub fn emulated_or_foreign_hypervisor() -> bool {
    let id = CpuId::new();
    id.get_hypervisor_info()
        .is_some_and(|h| !matches!(h.identify(), raw_cpuid::Hypervisor::KVM))
}

/// Disables interrupts on this CPU.
#[inline(always)]
pub fn cli() {
    x86_64::instructions::interrupts::disable();
}

/// Enables interrupts on this CPU.
#[inline(always)]
pub fn sti() {
    x86_64::instructions::interrupts::enable();
}

/// Are interrupts enabled on this CPU?
#[inline(always)]
pub fn interrupts_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// Atomically enables interrupts and halts until the next one (the idle primitive).
#[inline(always)]
pub fn sti_hlt() {
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// Stops this CPU for good: interrupts off, halt forever. On the kernel target it parks
/// through [`crate::trap::park`], with an IDT whose every vector halts again on the current
/// stack: safe for a CPU that has no TSS or kernel GDT yet (an AP parked during bring-up).
pub fn halt_forever() -> ! {
    #[cfg(target_os = "none")]
    crate::trap::park();
    #[cfg(not(target_os = "none"))]
    loop {
        cli();
        x86_64::instructions::hlt();
    }
}

/// Spin-wait hint.
#[inline(always)]
pub fn pause() {
    core::hint::spin_loop();
}

/// Runs `f` with interrupts disabled, restoring the previous state after.
#[inline(always)]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(f)
}

/// Executes `int3` (the test of the #BP path).
#[inline(always)]
pub fn breakpoint() {
    x86_64::instructions::interrupts::int3();
}

/// Executes `ud2`: an invalid-opcode exception (#UD) here (failure-path tests).
pub fn undefined_instruction() {
    // SAFETY: raises #UD; the kernel's handler reports it and stops the machine, or (with a
    // fix-up) nothing of this function's state is assumed afterwards.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
}

/// Raises a #DB by `int 1` in ring 0 (the vector's own gate: an IST one once the TSS is
/// loaded). The kernel's handler takes it as single-stepping that leaked in and returns.
pub fn debug_interrupt() {
    // SAFETY: `int 1` through the IDT's gate 1 (DPL 0, so allowed from ring 0); the handler
    // returns here with every register as it was.
    unsafe { core::arch::asm!("int 1") };
}

/// Raises vector 2 by `int 2` in ring 0: the kernel's NMI handler runs (an unexpected NMI:
/// reported, then back here).
pub fn nmi_interrupt() {
    // SAFETY: `int 2` through the IDT's gate 2 (DPL 0, so allowed from ring 0); the handler
    // reports it and returns here with every register as it was.
    unsafe { core::arch::asm!("int 2") };
}

/// Reads CR2 (the faulting address of the last #PF).
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Loads `pml4` into CR3: a PML4's physical address, with a PCID in bits 0..11 and the
/// keep-entries bit 63 only when PCIDs are on (`tlb::cr3_value`). Flushes the non-global TLB
/// entries, or only those of an untagged space.
///
/// # Safety
/// `pml4` must name a valid PML4 that maps the running code, its stack and every structure
/// the CPU uses (GDT, IDT, TSS) at the same addresses as the current one; with bit 63 set,
/// every TLB entry tagged with its PCID must still be valid for it.
#[inline(always)]
pub unsafe fn load_cr3(pml4: u64) {
    // SAFETY: the caller guarantees the new tables map everything in use identically.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
}

/// Current CR4 (raw bits).
pub fn read_cr4() -> u64 {
    Cr4::read_raw()
}

/// CR4.SMEP, CR4.SMAP and CR4.UMIP bits.
pub const CR4_SMEP: u64 = 1 << 20;
/// See [`CR4_SMEP`].
pub const CR4_SMAP: u64 = 1 << 21;
/// See [`CR4_SMEP`].
pub const CR4_UMIP: u64 = 1 << 11;
/// See [`CR4_SMEP`].
pub const CR4_MCE: u64 = 1 << 6;

/// Current CR3.
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads an MSR.
///
/// # Safety
/// `msr` must exist on this CPU (or #GP follows) and reading it must have no side effect the
/// caller did not intend.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).read() }
}

/// Writes an MSR.
///
/// # Safety
/// `msr` must exist and the write must not break memory safety (e.g. GS base of live code).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(value) }
}
