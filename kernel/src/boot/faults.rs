//! Fault injection from the command line, for the tests of the failure paths (each knob is
//! documented in `cmdline::Options`). Nothing here runs unless its knob is given.

use crate::boot::cmdline::Options;
use log::{info, warn};

/// Called by boot just before the APs in `aps` (APIC ids, in CPU-id order) are started:
/// arms `exo.ap_delay_ms`, `exo.ap_stall_ms`, `exo.ap_panic_early` and `exo.ap_fault_early`
/// for the last of them (the highest CPU id, so the online CPUs keep contiguous ids),
/// `exo.ap_alloc_fail` for the CPU it names, and fires `exo.panic_early` (a panic while
/// every AP is still in firmware).
pub fn before_ap_start(opts: &Options, aps: &[u32]) {
    if opts.ap_delay_ms > 0
        && let Some(&late) = aps.last()
    {
        let ticks = opts
            .ap_delay_ms
            .saturating_mul(crate::smp::time::tsc_hz() / 1000);
        exo_arch::smp::set_ap_delay(late, ticks);
        info!(
            "exo.ap_delay_ms: APIC id {late} waits {} ms, and until the BSP stops waiting, before it reports arrival",
            opts.ap_delay_ms
        );
    }
    if opts.ap_stall_ms > 0
        && let Some(&late) = aps.last()
    {
        let ticks = opts
            .ap_stall_ms
            .saturating_mul(crate::smp::time::tsc_hz() / 1000);
        crate::smp::bringup::set_ap_stall(late, ticks, opts.ap_stall_split);
        info!(
            "exo.ap_stall_ms: APIC id {late} arrives, then stops {} ms, and until the BSP has given up on it, before it goes online",
            opts.ap_stall_ms
        );
    }
    if opts.ap_panic_early
        && let Some(&late) = aps.last()
    {
        crate::smp::bringup::set_ap_panic(late);
        info!(
            "exo.ap_panic_early: APIC id {late} panics once it arrives, before its per-CPU block"
        );
    }
    if opts.ap_fault_early
        && let Some(&late) = aps.last()
    {
        crate::smp::bringup::set_ap_fault(late);
        info!(
            "exo.ap_fault_early: APIC id {late} executes ud2 once it arrives, before its per-CPU block and the shared IDT"
        );
    }
    if let Some(c) = opts.ap_alloc_fail {
        // `aps[k]` would be CPU k + 1 were every AP before it started.
        match aps.get((c as usize).wrapping_sub(1)) {
            Some(&id) if c > 0 => {
                crate::smp::bringup::set_ap_alloc_fail(c);
                info!(
                    "exo.ap_alloc_fail: the per-CPU block of AP {c} (APIC id {id}) will not be allocated"
                );
            }
            _ => warn!("exo.ap_alloc_fail={c} names no AP to start: ignored"),
        }
    }
    if opts.ap_lists_fail {
        crate::smp::bringup::set_ap_lists_fail();
        info!("exo.ap_lists_fail: the bring-up's lists will not be allocated (no AP starts)");
    }
    if opts.panic_early {
        panic!("deliberate panic requested by exo.panic_early (no AP started yet)");
    }
}
