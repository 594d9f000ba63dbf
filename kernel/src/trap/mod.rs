//! Traps: the dispatcher for exceptions, NMIs (the stop-all of a panic) and IPIs (`mod.rs`),
//! and the panic path (`panic`: report, backtrace, stop every CPU, failure exit).
//!
//! Calls down only: `sched` (the tick, #NM, killing a faulting thread), `smp`, `mm`.

pub mod panic;

mod tests;

use crate::smp::cpus::{
    self, VEC_APIC_ERROR, VEC_PING, VEC_SPURIOUS, VEC_TIMER, VEC_TLB, VEC_WAKE,
};
use core::sync::atomic::Ordering;
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

/// Installs the dispatcher and fills the IDT (BSP, once).
pub fn init() {
    exo_arch::trap::set_handler(dispatch);
    exo_arch::trap::init_idt();
}

/// The counters of the trapping CPU. Only reached for #BP, probe fix-ups and ping IPIs, none
/// of which can happen before the CPU's GS block is installed (IPIs go to online CPUs only),
/// so no `rdmsr` check sits on the interrupt path that `ipi.rtt` times.
fn with_block(f: impl FnOnce(&'static cpus::Block)) {
    if let Some(b) = cpus::get(exo_percpu::cpu_id_hint()) {
        f(b);
    }
}

/// An exception nobody fixed: the faulting thread is killed alone if it can be, else the
/// machine stops.
fn fault(frame: &TrapFrame, v: u8) {
    let cr2 = if v == 14 { exo_arch::cpu::cr2() } else { 0 };
    crate::sched::kill_current_if_possible(
        frame.rflags & (1 << 9) != 0,
        format_args!(
            "{} (vector {v}), error code {:#x}, rip {:#x}, cr2 {cr2:#x}",
            NAMES[v as usize], frame.error_code, frame.rip
        ),
        frame.rbp,
    );
    crate::trap::panic::fatal_exception(
        format_args!(
            "{} (vector {v}), error code {:#x}, rip {:#x}, rsp {:#x}, cr2 {cr2:#x}",
            NAMES[v as usize], frame.error_code, frame.rip, frame.rsp
        ),
        frame.rbp,
        frame.rip,
    );
}

fn dispatch(frame: &mut TrapFrame) {
    let v = frame.vector as u8;
    match v {
        3 => with_block(|b| {
            b.ext.breakpoints.fetch_add(1, Ordering::Relaxed);
        }),
        14 if exo_arch::trap::fixup(frame) => with_block(|b| {
            b.ext.fixups.fetch_add(1, Ordering::Relaxed);
        }),
        2 => {
            if crate::trap::panic::stopping() {
                exo_arch::cpu::halt_forever();
            }
            log::warn!("unexpected NMI at rip {:#x}", frame.rip);
            if exo_percpu::cpu_id_hint().0 == 0 {
                crate::sched::dump();
            }
        }
        7 => match crate::sched::fpu::device_not_available() {
            crate::sched::fpu::NmOutcome::Fixed => {}
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
        VEC_WAKE => exo_arch::apic::eoi(),
        VEC_TLB => crate::smp::tlb::handle_ipi(),
        VEC_TIMER => {
            exo_arch::apic::eoi();
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
        _ => {
            log::warn!("unexpected interrupt vector {v}");
            exo_arch::apic::eoi();
        }
    }
}
