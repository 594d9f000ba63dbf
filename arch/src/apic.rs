//! The local APIC, x2APIC (MSRs) or xAPIC (MMIO) behind one `Copy` handle, and the legacy
//! PICs (remapped and masked).
//!
//! Why not the `x2apic` crate's `LocalApic`: it always picks x2APIC when CPUID offers it (the
//! test matrix needs xAPIC on a CPU that has both), it is `!Send` so it cannot sit in a static
//! shared by the NMI/panic path, its xAPIC `id()` is the raw register, and its ICR writes do
//! not wait for delivery with a deadline. The register protocol itself is small: it is here.

use crate::cpu::{rdmsr, wrmsr};
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const IA32_APIC_BASE: u32 = 0x1B;
const BASE_ENABLE: u64 = 1 << 11;
const BASE_X2APIC: u64 = 1 << 10;

const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xB0;
const REG_SVR: u32 = 0xF0;
const REG_ESR: u32 = 0x280;
const REG_ICR_LO: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3E0;

const LVT_MASKED: u32 = 1 << 16;
const ICR_PENDING: u32 = 1 << 12;

/// Which register interface the local APICs use (the same on every CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MSR interface, 32-bit APIC ids.
    X2Apic,
    /// MMIO interface at the given (directly mapped, uncached) physical base, 8-bit ids.
    XApic,
}

impl Mode {
    /// The name printed in the `SMP,...` line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::X2Apic => "x2apic",
            Mode::XApic => "xapic",
        }
    }
}

static MODE: AtomicU8 = AtomicU8::new(0); // 0 unset, 1 x2apic, 2 xapic
static XAPIC_BASE: AtomicU64 = AtomicU64::new(crate::layout::phys_to_virt(0xFEE0_0000));

/// Errors of IPI delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    /// The xAPIC ICR stayed busy past its deadline.
    IcrTimeout,
    /// The destination id does not fit the mode (xAPIC ids are 8 bits).
    BadDestination(u32),
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApicError::IcrTimeout => write!(f, "local APIC ICR still busy after its deadline"),
            ApicError::BadDestination(id) => write!(f, "APIC id {id} does not fit xAPIC's 8 bits"),
        }
    }
}

/// Chooses the mode for the whole machine (BSP, once): x2APIC if CPUID offers it and
/// `allow_x2apic`, or if firmware already switched to it (x2APIC cannot go back to xAPIC
/// without a disable). xAPIC registers are reached at the base the CPU's `IA32_APIC_BASE`
/// gives ([`mmio_base`]), through the direct map.
pub fn select_mode(has_x2apic: bool, allow_x2apic: bool) -> Mode {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU with an APIC.
    let base = unsafe { rdmsr(IA32_APIC_BASE) };
    let already_x2 = base & BASE_X2APIC != 0;
    let mode = if has_x2apic && (allow_x2apic || already_x2) {
        Mode::X2Apic
    } else {
        Mode::XApic
    };
    XAPIC_BASE.store(
        crate::layout::phys_to_virt(base & BASE_ADDR_MASK),
        Ordering::Relaxed,
    );
    MODE.store(if mode == Mode::X2Apic { 1 } else { 2 }, Ordering::Release);
    mode
}

/// Bits 12..52 of `IA32_APIC_BASE`: the physical address of the xAPIC register page.
const BASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// The physical address of this CPU's xAPIC register page (`IA32_APIC_BASE`).
pub fn mmio_base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU with an APIC.
    unsafe { rdmsr(IA32_APIC_BASE) & BASE_ADDR_MASK }
}

/// The selected mode (xAPIC until `select_mode` ran).
#[inline(always)]
pub fn mode() -> Mode {
    if MODE.load(Ordering::Relaxed) == 1 {
        Mode::X2Apic
    } else {
        Mode::XApic
    }
}

#[inline(always)]
fn read(reg: u32) -> u32 {
    match mode() {
        // SAFETY: x2APIC register MSRs 0x800.. exist once x2APIC mode is enabled on this CPU.
        Mode::X2Apic => unsafe { rdmsr(0x800 + (reg >> 4)) as u32 },
        // SAFETY: the xAPIC page is directly mapped uncached by the kernel page tables (and
        // by the boot tables below 4 GiB); `reg` is a valid register offset.
        Mode::XApic => unsafe {
            core::ptr::read_volatile(
                (XAPIC_BASE.load(Ordering::Relaxed) + u64::from(reg)) as *const u32,
            )
        },
    }
}

#[inline(always)]
fn write(reg: u32, value: u32) {
    match mode() {
        // SAFETY: as in `read`; writes to local APIC registers affect only this CPU's APIC.
        Mode::X2Apic => unsafe { wrmsr(0x800 + (reg >> 4), u64::from(value)) },
        // SAFETY: as in `read`.
        Mode::XApic => unsafe {
            core::ptr::write_volatile(
                (XAPIC_BASE.load(Ordering::Relaxed) + u64::from(reg)) as *mut u32,
                value,
            )
        },
    }
}

/// Turns this CPU's local APIC on in the selected mode, and nothing else, so that it can
/// send IPIs: a CPU that must stop the others before its own set-up ran (an AP panicking
/// before `enable_local`: its x2APIC ICR write #GP'd with no IDT yet, a triple fault that
/// lost the report, until 2026-12-04).
pub fn enable_for_ipis() {
    // SAFETY: as in `enable_local`: the enable (and x2APIC) bits, base and BSP bit kept.
    unsafe {
        let base = rdmsr(IA32_APIC_BASE);
        let mut new = base | BASE_ENABLE;
        if mode() == Mode::X2Apic {
            new |= BASE_X2APIC;
        }
        if new != base {
            wrmsr(IA32_APIC_BASE, new);
        }
    }
}

/// Enables this CPU's local APIC in the selected mode: software-enabled with `spurious`
/// vector, LINT0/LINT1 and the timer masked, errors to `error_vector`, TPR 0.
///
/// Software-enabled first: while it is disabled (an AP after INIT, its SVR at reset) the
/// APIC keeps every LVT entry masked and ignores a write that clears the mask (Intel SDM
/// vol. 3, 11.4.7.2; KVM does the same). Until 2026-12-05 the error entry was written
/// before, so on hardware and KVM the APs' error interrupt stayed masked (found by review;
/// TCG does not enforce the mask, so no QEMU test here can see it). The error status is
/// cleared with two writes (the first latches, the second clears), as Linux does.
pub fn enable_local(spurious: u8, error_vector: u8) {
    enable_for_ipis();
    write(REG_SVR, 0x100 | u32::from(spurious));
    write(REG_TPR, 0);
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, u32::from(error_vector));
    write(REG_ESR, 0);
    write(REG_ESR, 0);
}

/// This CPU's APIC id (32-bit in x2APIC mode, 8-bit in xAPIC mode).
pub fn id() -> u32 {
    match mode() {
        Mode::X2Apic => read(REG_ID),
        Mode::XApic => read(REG_ID) >> 24,
    }
}

/// Signals end of interrupt.
#[inline(always)]
pub fn eoi() {
    write(REG_EOI, 0);
}

/// The highest vector set in one of the 256-bit APIC vector registers at `base` (ISR 0x100,
/// IRR 0x200), or `None` when it is empty.
fn highest_in(base: u32) -> Option<u8> {
    (0..8u32).rev().find_map(|i| {
        let w = read(base + i * 0x10);
        (w != 0).then(|| (i * 32 + 31 - w.leading_zeros()) as u8)
    })
}

/// The highest vector this CPU is servicing (ISR): one that never got its EOI blocks every
/// vector of its priority class and below (diagnostics).
pub fn highest_in_service() -> Option<u8> {
    highest_in(0x100)
}

/// The highest vector waiting to be delivered to this CPU (IRR, diagnostics).
pub fn highest_pending() -> Option<u8> {
    highest_in(0x200)
}

/// Delivery modes of the ICR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Fixed vector.
    Fixed(u8),
    /// Non-maskable interrupt.
    Nmi,
    /// INIT (assert, level).
    Init,
    /// Start-up at page `vector * 4 KiB`.
    StartUp(u8),
}

/// Destinations of the ICR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// One CPU by APIC id.
    Id(u32),
    /// Every CPU but this one.
    AllButSelf,
    /// This CPU.
    SelfOnly,
}

/// Sends an IPI. In xAPIC mode waits (bounded) for the previous and this ICR write to be
/// accepted, with interrupts off from the first wait to the second (an interrupt handler's
/// IPI between the ICR-high and ICR-low writes would redirect this one); x2APIC ICR writes
/// are one `wrmsr` and not pending-tracked by the architecture.
pub fn send_ipi(dest: Dest, delivery: Delivery) -> Result<(), ApicError> {
    let (vector, dm, level) = match delivery {
        Delivery::Fixed(v) => (v, 0b000u32, 1u32),
        Delivery::Nmi => (0, 0b100, 1),
        Delivery::Init => (0, 0b101, 1),
        Delivery::StartUp(v) => (v, 0b110, 1),
    };
    let (shorthand, id) = match dest {
        Dest::Id(id) => (0u32, id),
        Dest::SelfOnly => (0b01, 0),
        Dest::AllButSelf => (0b11, 0),
    };
    let lo = u32::from(vector) | (dm << 8) | (level << 14) | (shorthand << 18);
    match mode() {
        Mode::X2Apic => {
            // x2APIC MSR writes are not serializing: the ICR write can leave before earlier
            // stores are visible to the target (Intel SDM 10.12.3), which would then find an
            // old mailbox or TLB request. `mfence; lfence` orders them first, as Linux's
            // `weak_wrmsr_fence` does. Until 2026-12-05 nothing did (found by review; TCG
            // cannot show it).
            // SAFETY: fences only order this CPU's memory accesses.
            unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) };
            // SAFETY: ICR MSR 0x830 takes the destination in the high dword; sending an IPI
            // has no memory effect on this CPU.
            unsafe { wrmsr(0x830, (u64::from(id) << 32) | u64::from(lo)) };
            Ok(())
        }
        Mode::XApic => {
            if id > 0xFF {
                return Err(ApicError::BadDestination(id));
            }
            let inject = test_interrupt_armed();
            let mut pending = false;
            // Two register writes make one IPI: an interrupt between them whose handler sends
            // an IPI rewrites ICR high, and this IPI goes to that handler's destination.
            // Interrupts stay off from the idle wait to the accepted send.
            let r = crate::cpu::without_interrupts(|| {
                wait_icr_idle()?;
                write(REG_ICR_HI, id << 24);
                if inject {
                    pending = !raise_test_interrupt_if_enabled();
                }
                write(REG_ICR_LO, lo);
                wait_icr_idle()
            });
            // A (simulated) interrupt held off above is taken once interrupts are back on.
            if pending {
                raise_test_interrupt_if_enabled();
            }
            r
        }
    }
}

/// Software vector of the ICR test interrupt (see [`set_icr_test_interrupt`]). The kernel's
/// handler for it must not signal EOI (a software interrupt is not in service).
pub const ICR_TEST_VECTOR: u8 = 0xEF;

/// APIC id + 1 of the CPU whose xAPIC sends take the test interrupt (0: off).
static ICR_TEST_CPU: AtomicU64 = AtomicU64::new(0);

/// Debug knob for the xAPIC send path: while on, every xAPIC [`send_ipi`] on the CPU with
/// APIC id `on` raises [`ICR_TEST_VECTOR`] between its ICR-high and ICR-low writes, as a
/// maskable interrupt would arrive there: taken at once if interrupts are enabled at that
/// point, else held pending until the send has re-enabled them. A handler that sends an IPI
/// of its own makes an interrupt-unsafe send deterministic to catch. `None` turns it off.
pub fn set_icr_test_interrupt(on: Option<u32>) {
    ICR_TEST_CPU.store(on.map_or(0, |id| u64::from(id) + 1), Ordering::Release);
}

#[inline(always)]
fn test_interrupt_armed() -> bool {
    let on = ICR_TEST_CPU.load(Ordering::Relaxed);
    on != 0 && on == u64::from(id()) + 1
}

/// Raises the test interrupt if interrupts are enabled (a software `int` ignores IF, so the
/// flag is checked here); returns whether it was raised.
fn raise_test_interrupt_if_enabled() -> bool {
    if !crate::cpu::interrupts_enabled() {
        return false;
    }
    // SAFETY: `int` enters the kernel's trap stub for ICR_TEST_VECTOR like any interrupt;
    // the kernel installs a handler for it before it turns the knob on.
    unsafe { core::arch::asm!("int {v}", v = const ICR_TEST_VECTOR) };
    true
}

fn wait_icr_idle() -> Result<(), ApicError> {
    // Deadline in TSC ticks, generous for TCG: delivery normally takes well under 1 µs.
    let start = crate::tsc::rdtsc();
    while read(REG_ICR_LO) & ICR_PENDING != 0 {
        if crate::tsc::rdtsc().wrapping_sub(start) > 100_000_000 {
            return Err(ApicError::IcrTimeout);
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// Timer divide-by-1 encoding for the divide configuration register.
const DIV_1: u32 = 0b1011;

/// Arms the local APIC timer in one-shot mode, divide by 1, `count` ticks, on `vector`
/// (`masked` for calibration without an interrupt).
pub fn timer_oneshot(vector: u8, count: u32, masked: bool) {
    write(REG_TIMER_DIV, DIV_1);
    write(
        REG_LVT_TIMER,
        u32::from(vector) | if masked { LVT_MASKED } else { 0 },
    );
    write(REG_TIMER_INIT, count);
}

const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
const IA32_TSC_DEADLINE: u32 = 0x6E0;

/// Puts the local APIC timer in TSC-deadline mode on `vector` (CPUID.01H:ECX[24] must be
/// set); arm it with [`timer_deadline`].
pub fn timer_deadline_mode(vector: u8) {
    set_lvt_timer(u32::from(vector) | LVT_TSC_DEADLINE);
}

/// After an LVT timer write: when it put the timer in TSC-deadline mode, the fence the
/// first IA32_TSC_DEADLINE write needs.
fn fence_if_deadline_mode(lvt: u32) {
    if TimerMode::of_lvt(lvt) != TimerMode::TscDeadline {
        return;
    }
    // The switch must be seen before the first IA32_TSC_DEADLINE write, or that write may
    // be ignored (Intel SDM 10.5.4.1: an MFENCE between the LVT write, an uncached store in
    // xAPIC mode or a non-serializing WRMSR in x2APIC mode, and the deadline's WRMSR; Linux
    // does the same in `__setup_APIC_LVTT`). Until 2026-12-05 nothing ordered them: the
    // scheduler's first deadline could be lost, its CPU left with no tick (not testable in
    // QEMU, which applies both writes in order).
    // SAFETY: `mfence` only orders this CPU's earlier accesses before its later ones.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
}

/// Arms the TSC-deadline timer: the interrupt fires once the TSC reaches `tsc` (0 disarms).
pub fn timer_deadline(tsc: u64) {
    // SAFETY: IA32_TSC_DEADLINE only arms the local timer; the LVT was put in TSC-deadline
    // mode by `timer_deadline_mode` (in another mode the write is ignored).
    unsafe { crate::cpu::wrmsr(IA32_TSC_DEADLINE, tsc) };
}

/// The mode bits (17-18) of an LVT timer register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// One-shot (0b00).
    OneShot,
    /// Periodic (0b01).
    Periodic,
    /// TSC-deadline (0b10): armed through IA32_TSC_DEADLINE.
    TscDeadline,
    /// Reserved (0b11).
    Reserved,
}

impl TimerMode {
    /// The mode an LVT timer value selects.
    pub const fn of_lvt(lvt: u32) -> TimerMode {
        match (lvt >> 17) & 0b11 {
            0b00 => TimerMode::OneShot,
            0b01 => TimerMode::Periodic,
            0b10 => TimerMode::TscDeadline,
            _ => TimerMode::Reserved,
        }
    }
}

/// Whether an LVT value has its mask bit set.
pub const fn lvt_masked(lvt: u32) -> bool {
    lvt & LVT_MASKED != 0
}

/// This CPU's LVT timer register (vector, mask bit, mode bits).
pub fn lvt_timer() -> u32 {
    read(REG_LVT_TIMER)
}

/// Writes this CPU's LVT timer register (restores a value read by [`lvt_timer`]; the count
/// or the TSC deadline is not touched).
pub fn set_lvt_timer(lvt: u32) {
    write(REG_LVT_TIMER, lvt);
    fence_if_deadline_mode(lvt);
}

/// (Re)starts the one-shot or periodic count with `count` ticks, leaving the LVT and the
/// divide configuration as they are.
pub fn timer_set_count(count: u32) {
    write(REG_TIMER_INIT, count);
}

/// The armed TSC deadline (0: none armed, or it already fired).
pub fn timer_deadline_armed() -> u64 {
    // SAFETY: reading IA32_TSC_DEADLINE has no side effect; callers use it only with the LVT
    // in TSC-deadline mode (the CPU offers the MSR when it offers the mode).
    unsafe { crate::cpu::rdmsr(IA32_TSC_DEADLINE) }
}

/// Current count of the local APIC timer.
pub fn timer_current() -> u32 {
    read(REG_TIMER_CUR)
}

/// Stops and masks the local APIC timer.
pub fn timer_stop() {
    write(REG_TIMER_INIT, 0);
    write(REG_LVT_TIMER, LVT_MASKED);
}

/// Remaps both 8259 PICs to vectors 0x20..0x30 (away from exceptions) and masks every line.
/// SeaBIOS leaves the PIT line unmasked on vector 8, which would look like a #DF at `sti`.
pub fn disable_legacy_pic() {
    use crate::port::outb;
    // SAFETY: the 8259 command/data ports are owned by the BSP during boot; the ICW sequence
    // is the standard initialisation, ending with every line masked.
    unsafe {
        outb(0x20, 0x11);
        outb(0xA0, 0x11);
        outb(0x21, 0x20);
        outb(0xA1, 0x28);
        outb(0x21, 0x04);
        outb(0xA1, 0x02);
        outb(0x21, 0x01);
        outb(0xA1, 0x01);
        outb(0x21, 0xFF);
        outb(0xA1, 0xFF);
    }
}
