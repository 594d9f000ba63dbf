//! The local APIC timer outside the scheduler: a backstop wake-up for a CPU that halts while
//! it waits (`cpus::wait`), armed in the mode the timer is in, so the scheduler's mode
//! survives.
//!
//! The scheduler owns the timer's mode (`sched::init_this_cpu` puts it in TSC-deadline mode
//! when the CPU offers it, else it arms one-shots). In TSC-deadline mode, writes of the
//! initial-count register do nothing and a one-shot LVT write disables the mode: every later
//! `IA32_TSC_DEADLINE` write of the scheduler would be ignored (no preemption, no sleeper
//! wake-ups on that CPU). So a backstop reads the LVT and:
//! * TSC-deadline mode: writes the deadline MSR (if no earlier deadline is armed), LVT
//!   untouched;
//! * one-shot mode, unmasked, with an earlier count running: nothing to do;
//! * one-shot mode otherwise: (re)starts the count; if the LVT was masked (no scheduler
//!   timer yet) it is unmasked on `VEC_TIMER` for the wait and restored afterwards;
//! * periodic mode, unmasked: interrupts come anyway; nothing to do.
//!
//! An earlier backstop than the scheduler's deadline only makes its tick come early: the
//! tick re-arms the scheduler's own deadline.

use crate::smp::cpus::VEC_TIMER;
use exo_arch::apic::{self, TimerMode};

/// An armed backstop; dropping it restores an LVT it had to unmask.
#[derive(Debug)]
#[must_use = "dropping the backstop restores the timer's LVT"]
pub struct Backstop {
    /// The LVT to put back, the CPU and its count of scheduler arms when it was unmasked.
    restore: Option<(u32, u32, u64)>,
}

/// The scheduler armed this CPU's timer (call with interrupts off, after the write): a
/// backstop whose wait this came in leaves the LVT as the scheduler set it.
#[inline(always)]
pub fn scheduler_armed() {
    use core::sync::atomic::Ordering::Relaxed;
    if let Some(b) = crate::smp::cpus::get(exo_percpu::cpu_id_hint()) {
        // Written by this CPU only, interrupts off: no locked add needed.
        let a = &b.ext.timer_arms;
        a.store(a.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

/// This CPU and its count of scheduler arms.
fn arms_here() -> (u32, u64) {
    let cpu = exo_percpu::cpu_id_hint();
    let n = crate::smp::cpus::get(cpu).map_or(0, |b| {
        b.ext.timer_arms.load(core::sync::atomic::Ordering::Relaxed)
    });
    (cpu.0, n)
}

/// Arms a timer interrupt within `us` microseconds in the timer's current mode (see the
/// module docs). Call with interrupts off (the tick handler also writes the timer).
pub fn backstop_us(us: u64) -> Backstop {
    debug_assert!(!exo_arch::cpu::interrupts_enabled());
    let lvt = apic::lvt_timer();
    let masked = apic::lvt_masked(lvt);
    match apic::TimerMode::of_lvt(lvt) {
        TimerMode::TscDeadline if !masked => {
            let at = exo_arch::tsc::rdtsc().saturating_add(
                us.saturating_mul(crate::smp::time::tsc_hz() / 1_000_000)
                    .max(1),
            );
            let armed = apic::timer_deadline_armed();
            if armed == 0 || armed > at {
                apic::timer_deadline(at);
            }
            Backstop { restore: None }
        }
        TimerMode::Periodic if !masked => Backstop { restore: None },
        TimerMode::OneShot if !masked => {
            let ticks = ticks_for_us(us);
            let left = apic::timer_current();
            if left == 0 || left > ticks {
                apic::timer_set_count(ticks);
            }
            Backstop { restore: None }
        }
        // Masked (no scheduler timer here yet) or reserved: a one-shot for this wait only.
        _ => {
            apic::timer_oneshot(VEC_TIMER, ticks_for_us(us), false);
            let (cpu, arms) = arms_here();
            Backstop {
                restore: Some((lvt, cpu, arms)),
            }
        }
    }
}

fn ticks_for_us(us: u64) -> u32 {
    let per_ms = u64::from(crate::smp::time::apic_ticks_per_ms());
    (us.saturating_mul(per_ms) / 1000).clamp(1, u64::from(u32::MAX)) as u32
}

impl Drop for Backstop {
    /// Puts back the LVT it unmasked, unless the scheduler armed the timer during the wait
    /// (the backstop's tick runs `sched::tick`, which arms it while the scheduler starts)
    /// or the waiter now runs on another CPU: until 2026-12-05 the restore masked a timer
    /// the scheduler had just armed, and its record said a deadline was coming (its lazy
    /// re-arm skipped writes: no tick until a write it did not skip; seen in 1 of 3 boots
    /// at -smp 4; found by review).
    fn drop(&mut self) {
        if let Some((lvt, cpu, arms)) = self.restore {
            exo_arch::cpu::without_interrupts(|| {
                if arms_here() == (cpu, arms) {
                    apic::set_lvt_timer(lvt);
                }
            });
        }
    }
}
