//! Traps: the dispatcher for exceptions, NMIs (the stop-all of a panic) and IPIs (`mod.rs`),
//! and the panic path (`panic`: report, backtrace, stop every CPU, failure exit).
//!
//! An exception raised by ring 3 is never a kernel fault: it goes to the user-fault hook
//! that the layer above (`user`) installs ([`set_user_fault_hook`]), which ends the thread;
//! a not-present page fault at a user address (from ring 3 or a user copy) goes first to
//! the demand-fault hook ([`set_demand_fault_hook`]), which may bring the page in.
//!
//! Calls down only: `sched` (the tick, #NM, killing a faulting thread), `smp`, `mm`.

pub mod panic;

mod tests;

use crate::smp::cpus::{
    self, VEC_APIC_ERROR, VEC_DEVICE_BASE, VEC_DEVICE_COUNT, VEC_PING, VEC_SPURIOUS, VEC_TIMER,
    VEC_TLB, VEC_WAKE,
};
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::trap::TrapFrame;

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 fault",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD fault",
    "#VE virtualization",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved 31",
];

/// An exception raised by ring-3 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFault {
    /// The vector (0..=31).
    pub vector: u8,
    /// The CPU's error code (0 when the vector has none).
    pub error_code: u64,
    /// The faulting address of a #PF (CR2), else 0.
    pub addr: u64,
}

impl UserFault {
    /// The exception's mnemonic: `#PF`, `#GP`, `#UD`, `#DE`, `#BP`, `#DB`, ...
    pub fn mnemonic(&self) -> &'static str {
        NAMES[self.vector as usize % 32]
            .split(' ')
            .next()
            .unwrap_or("?")
    }
}

/// What the kernel does with an exception from ring 3 (installed by `user`); if it returns,
/// the thread resumes at `frame` (it may have changed it).
pub type UserFaultHook = fn(&mut TrapFrame, UserFault);

static USER_FAULT: spin::Once<UserFaultHook> = spin::Once::new();

/// Installs the user-fault hook (once, before any thread enters ring 3).
pub fn set_user_fault_hook(h: UserFaultHook) {
    USER_FAULT.call_once(|| h);
}

/// What the kernel does with a not-present page fault at a user address (installed by
/// `user`: a demand-zero page of the running process is brought in): the address, the
/// error code, and whether ring 3 raised it (else a user copy in the kernel did). `true`:
/// the page is there now and the access is retried; `false`: the fault stands (the
/// thread's fault, or the copy's `EFAULT`). Called with interrupts off, only for a fault
/// raised with them on; it may turn them on meanwhile (it takes the space's locks) and
/// turns them off again before it returns.
pub type DemandFaultHook = fn(u64, u64, bool) -> bool;

static DEMAND_FAULT: spin::Once<DemandFaultHook> = spin::Once::new();

/// Installs the demand-fault hook (once, before any thread enters ring 3).
pub fn set_demand_fault_hook(h: DemandFaultHook) {
    DEMAND_FAULT.call_once(|| h);
}

/// Page-fault error code bits: the page was present (a protection fault), and a reserved
/// bit was set in an entry.
const PF_PRESENT: u64 = 1;
const PF_RESERVED: u64 = 1 << 3;

/// A page fault at `cr2` that may be a demand-zero page's first touch, offered to the hook:
/// not present, at a user address, raised by ring 3 or by a user copy (no other kernel code
/// touches user memory), with interrupts on where it was raised (the hook takes the
/// space's locks with them on; a copy with them off, as `write`'s into a console ring,
/// gets its `EFAULT` and brings the pages in itself before it tries again). Returns true
/// when the hook brought the page in (the access is retried).
///
/// CR2 is read once, by the caller, before this: the hook turns interrupts on, and any
/// page fault on this CPU meanwhile (another thread's, after a switch) changes it. Read
/// again after a refusal, it sent a user copy's fault to the kernel-fault path with
/// another thread's address (found by the fuzzer at -smp 4: a panic at `USER_END`).
fn demand(frame: &TrapFrame, cr2: u64) -> bool {
    if frame.error_code & (PF_PRESENT | PF_RESERVED) != 0
        || frame.rflags & (1 << 9) == 0
        || !exo_percpu::installed()
    {
        return false;
    }
    let user = frame.from_user();
    if !exo_arch::usercopy::is_user_range(cr2, 1)
        || (!user && !exo_arch::trap::in_user_copy(frame, cr2))
    {
        return false;
    }
    DEMAND_FAULT
        .get()
        .is_some_and(|h| h(cr2, frame.error_code, user))
}

/// What a device interrupt runs (installed by `dev`): the index of its vector in the device
/// range. Called after the EOI, with interrupts off.
pub type DeviceIrqHook = fn(u8);

static DEVICE_IRQ: spin::Once<DeviceIrqHook> = spin::Once::new();

/// Installs the device-interrupt hook (once, before any device vector is programmed).
pub fn set_device_irq_hook(h: DeviceIrqHook) {
    DEVICE_IRQ.call_once(|| h);
}

/// What the kernel runs before an interrupt or exception returns to ring 3 (installed by
/// `user`: a thread whose process is being killed ends there instead of going back).
pub type UserReturnHook = fn();

static USER_RETURN: spin::Once<UserReturnHook> = spin::Once::new();

/// Installs the return-to-ring-3 hook (once, before any thread enters ring 3).
pub fn set_user_return_hook(h: UserReturnHook) {
    USER_RETURN.call_once(|| h);
}

/// Interrupts (vectors 32 and up) that arrived while ring 3 ran: the proof, for tests, that
/// the interrupt path from ring 3 (its `swapgs`) was taken.
pub static USER_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// #DB traps taken in ring 0 (the paranoid entry's self-test raises them).
pub static KERNEL_DEBUG_TRAPS: AtomicU64 = AtomicU64::new(0);

/// Installs the dispatcher and fills the IDT (BSP, once).
pub fn init() {
    exo_arch::trap::set_handler(dispatch);
    exo_arch::trap::init_idt();
    crate::console::set_exit_hooks(crate::console::ExitHooks {
        claim: panic::claim_exit,
        panicked_since: || panic::report_panic_after_exit().is_some(),
    });
}

/// The counters of the trapping CPU, for the interrupts (timer, ping IPIs), which cannot
/// arrive before the CPU's GS block is installed (IPIs go to online CPUs only), so no
/// `rdmsr` check sits on the interrupt path that `ipi.rtt` times. Exceptions and NMIs use
/// [`with_block_if_installed`].
fn with_block(f: impl FnOnce(&'static cpus::Block)) {
    if let Some(b) = cpus::get(exo_percpu::cpu_id_hint()) {
        f(b);
    }
}

/// [`with_block`] for exceptions and NMIs, which an AP can take before its per-CPU block
/// is installed (GS base 0, through the early IDT): nothing then. Until 2026-12-05 such an
/// AP had no IDT at all (`exo.ap_fault_early`).
fn with_block_if_installed(f: impl FnOnce(&'static cpus::Block)) {
    if exo_percpu::installed() {
        with_block(f);
    }
}

/// An exception nobody fixed: the faulting thread is killed alone if it can be, else the
/// machine stops. A double fault or a machine check always stops it: they are the
/// machine's, not the thread's (and run on their IST stacks, where ending the thread there
/// is not safe; until 2026-12-05 a kernel thread with interrupts on was killed; found by
/// review).
fn fault(frame: &TrapFrame, v: u8) {
    fault_at(frame, v, if v == 14 { exo_arch::cpu::cr2() } else { 0 });
}

/// [`fault`] of a page fault at `cr2`, read before anything could change it.
fn fault_at(frame: &TrapFrame, v: u8, cr2: u64) {
    // No thread to kill on a CPU without its per-CPU block (an AP before
    // `install_this_cpu`): the scheduler's state is read through GS.
    if !matches!(v, 8 | 18) && exo_percpu::installed() {
        crate::sched::kill_current_if_possible(
            frame.rflags & (1 << 9) != 0,
            format_args!(
                "{} (vector {v}), error code {:#x}, rip {:#x}, cr2 {cr2:#x}",
                NAMES[v as usize], frame.error_code, frame.rip
            ),
            frame.rbp,
        );
    }
    // A machine check says what the banks hold (MSRs only: safe here). Until 2026-12-05
    // the report named the vector alone.
    let mce = if v == 18 {
        exo_arch::mce::Report::read()
    } else {
        None
    };
    let mce = mce.as_ref().map(|r| r as &dyn core::fmt::Display);
    crate::trap::panic::fatal_exception(
        format_args!(
            "{} (vector {v}), error code {:#x}, rip {:#x}, rsp {:#x}, cr2 {cr2:#x}{}{}",
            NAMES[v as usize],
            frame.error_code,
            frame.rip,
            frame.rsp,
            if mce.is_some() { "; " } else { "" },
            mce.unwrap_or(&"")
        ),
        frame.rbp,
        frame.rip,
    );
}

/// Whether exception `v` taken from ring 3 is the thread's own fault (its process's to
/// answer): not an NMI or a machine check (the machine's), not #NM (the lazy FPU's, handled
/// below), and not a double fault, which is the kernel's (its delivery failed: a bad
/// kernel stack or TSS) whatever CS the CPU pushed, and runs on its IST stack, where a
/// thread cannot be ended. Until 2026-12-05 a #DF with a ring-3 CS was given to the
/// process as its fault (found by review; `trap.double_fault_from_user_is_the_kernel_s`).
pub(crate) const fn is_the_threads(v: u8) -> bool {
    v < 32 && !matches!(v, 2 | 7 | 8 | 18)
}

/// An exception from ring 3: to the hook (without one, like a kernel fault).
fn user_fault(frame: &mut TrapFrame, v: u8) {
    user_fault_at(frame, v, if v == 14 { exo_arch::cpu::cr2() } else { 0 });
}

/// [`user_fault`] with the page-fault address `addr` (0 for other vectors) read already.
fn user_fault_at(frame: &mut TrapFrame, v: u8, addr: u64) {
    let f = UserFault {
        vector: v,
        error_code: frame.error_code,
        addr,
    };
    match USER_FAULT.get() {
        Some(h) => h(frame, f),
        None => fault_at(frame, v, addr),
    }
}

/// A page fault raised in ring 3: a demand-zero page's first touch, or the thread's fault.
/// CR2 read once, first (see [`demand`]). Out of line, as [`kernel_page_fault`]: inlined
/// into `handle`, the two made every interrupt's dispatch longer (icount `ipi.rtt` +4).
#[inline(never)]
fn user_page_fault(frame: &mut TrapFrame) {
    let cr2 = exo_arch::cpu::cr2();
    if !demand(frame, cr2) {
        user_fault_at(frame, 14, cr2);
    }
}

/// A page fault raised in ring 0: a demand-zero page touched by a user copy, a user copy's
/// other faults (its fix-up), or a kernel fault. CR2 read once, first (see [`demand`]).
#[inline(never)]
fn kernel_page_fault(frame: &mut TrapFrame) {
    let cr2 = exo_arch::cpu::cr2();
    if demand(frame, cr2) {
        return;
    }
    if exo_arch::trap::fixup(frame, cr2) {
        with_block_if_installed(|b| {
            b.ext.fixups.fetch_add(1, Ordering::Relaxed);
        });
        return;
    }
    fault_at(frame, 14, cr2);
}

fn dispatch(frame: &mut TrapFrame) {
    handle(frame);
    // Not from an NMI or #MC handler: those must return (NMIs stay blocked until IRET).
    if frame.from_user()
        && !matches!(frame.vector, 2 | 18)
        && let Some(h) = USER_RETURN.get()
    {
        h();
    }
}

fn handle(frame: &mut TrapFrame) {
    let v = frame.vector as u8;
    if frame.from_user() {
        if v >= 32 {
            USER_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        } else if is_the_threads(v) {
            if v == 14 {
                return user_page_fault(frame);
            }
            return user_fault(frame, v);
        }
    }
    match v {
        // A #DB in ring 0 can only come from single-stepping that leaked into the kernel
        // (TF set on a `syscall` on some CPUs): the kernel uses no debug feature. Clear TF
        // and go on; the user's TF comes back with its RFLAGS on return.
        1 if !frame.from_user() => {
            frame.rflags &= !(1 << 8);
            with_block_if_installed(|_| {
                KERNEL_DEBUG_TRAPS.fetch_add(1, Ordering::Relaxed);
            });
            log::debug!("#DB in ring 0 at rip {:#x}: TF cleared", frame.rip);
        }
        3 => with_block_if_installed(|b| {
            b.ext.breakpoints.fetch_add(1, Ordering::Relaxed);
        }),
        // Ring 0's (ring 3's went to `user_fault` above).
        14 => kernel_page_fault(frame),
        2 => {
            // The CPU that is reporting a panic or exiting is not stopped by an NMI (one
            // from the machine monitor, a hypervisor's diagnostic, a stray LINT1): until
            // 2026-12-05 it halted here too, the report cut off and QEMU never told
            // (found by review; `exo.nmi_in_report`, CI "failure paths").
            if crate::trap::panic::nmi_on_the_stopper() {
                return;
            }
            if crate::trap::panic::stopping() {
                // For the report: where this CPU was (a CPU that never answers a
                // shoot-down shows here with IF 0 and the place it spins).
                with_block_if_installed(|b| {
                    b.ext.stopped_rflags.store(frame.rflags, Ordering::Relaxed);
                    b.ext.stopped_cs.store(frame.cs, Ordering::Relaxed);
                    let v = |x: Option<u8>| x.map_or(0, |v| u64::from(v) + 1);
                    b.ext.stopped_apic.store(
                        v(exo_arch::apic::highest_in_service())
                            | v(exo_arch::apic::highest_pending()) << 8,
                        Ordering::Relaxed,
                    );
                    b.ext.stopped_rip.store(frame.rip.max(1), Ordering::Release);
                });
                exo_arch::cpu::halt_forever();
            }
            log::warn!("unexpected NMI at rip {:#x}", frame.rip);
            if exo_percpu::installed() && exo_percpu::cpu_id_hint().0 == 0 {
                crate::sched::dump();
            }
        }
        // The lazy FPU's state is per CPU: without the block, #NM is not ours.
        7 if !exo_percpu::installed() => fault(frame, v),
        7 => match crate::sched::fpu::device_not_available() {
            crate::sched::fpu::NmOutcome::Fixed => {}
            _ if frame.from_user() => user_fault(frame, v),
            crate::sched::fpu::NmOutcome::OutOfMemory => {
                let why = "out of memory for its FPU save area (first SIMD use, #NM)";
                crate::sched::kill_current_if_possible(
                    frame.rflags & (1 << 9) != 0,
                    format_args!("{why}"),
                    frame.rbp,
                );
                crate::trap::panic::fatal_exception(
                    format_args!("{why}, rip {:#x}", frame.rip),
                    frame.rbp,
                    frame.rip,
                );
            }
            crate::sched::fpu::NmOutcome::NotOurs => fault(frame, v),
        },
        0..=31 => fault(frame, v),
        VEC_WAKE => {
            exo_arch::apic::eoi();
            // A thread woken here while another runs may take the CPU now (`sched::wake_ipi`).
            crate::sched::wake_ipi();
        }
        VEC_TLB => crate::smp::tlb::handle_ipi(),
        VEC_TIMER => {
            exo_arch::apic::eoi();
            // A busy CPU's queued user output still appears (bounded, try-lock).
            with_block(|b| {
                if let Some(r) = b.ext.console.get() {
                    crate::console::drain_tick(r);
                }
            });
            crate::sched::tick();
        }
        VEC_PING => {
            with_block(|b| {
                b.ext.pings.fetch_add(1, Ordering::Release);
            });
            exo_arch::apic::eoi();
        }
        // A software interrupt (the xAPIC send-path test): not in service, no EOI.
        exo_arch::apic::ICR_TEST_VECTOR => cpus::icr_test_interrupt(),
        VEC_APIC_ERROR => {
            log::warn!("local APIC error interrupt");
            exo_arch::apic::eoi();
        }
        VEC_SPURIOUS => {}
        d if (VEC_DEVICE_BASE..VEC_DEVICE_BASE + VEC_DEVICE_COUNT).contains(&d) => {
            exo_arch::apic::eoi();
            match DEVICE_IRQ.get() {
                Some(h) => h(d - VEC_DEVICE_BASE),
                None => log::warn!("device interrupt {d} with no handler"),
            }
        }
        _ => {
            log::warn!("unexpected interrupt vector {v}");
            exo_arch::apic::eoi();
        }
    }
}
