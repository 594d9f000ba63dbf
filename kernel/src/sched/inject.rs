//! Fault injection for the reap race of `finish_switch` (debug builds only; the release
//! kernel has none of it). Armed for one thread `P` by `arm`, it holds two CPUs at the two
//! points of the race, each with a deadline:
//!
//! * the CPU that switches away from `P` (CPU A) stops right after releasing its lock, until
//!   `P` is exiting: meanwhile `P`, back in A's run queue, is stolen by another CPU (B), runs
//!   there and exits;
//! * B, about to reap `P` once it has switched away from it, waits until A has finished its
//!   `finish_switch`.
//!
//! A `finish_switch` that decided to reap from a state read after its unlock would see `P`
//! exiting here and reap a thread B still runs (and `reap` refuses a thread that last ran on
//! another CPU: the machine stops with the reason). The test `sched.reap_decided_under_the_lock`
//! drives it.

use super::thread::{State, tcb};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use exo_arch::tsc::rdtsc;

/// Thread index + 1 whose switch-away A holds (0: off).
static HOLD: AtomicU32 = AtomicU32::new(0);
/// Thread index + 1 whose reap B holds (0: off).
static HOLD_REAP: AtomicU32 = AtomicU32::new(0);
/// A finished the held `finish_switch`.
static A_DONE: AtomicBool = AtomicBool::new(false);
/// How A's hold ended: 1 the thread was exiting, 2 the deadline.
static SAW: AtomicU32 = AtomicU32::new(0);
/// How B's hold ended: 1 A was done, 2 the deadline.
static REAP_SAW: AtomicU32 = AtomicU32::new(0);

const HOLD_SECONDS: u64 = 10;

/// Arms both holds for thread `i` (the calling thread, about to yield).
pub(crate) fn arm(i: usize) {
    A_DONE.store(false, Ordering::Relaxed);
    SAW.store(0, Ordering::Relaxed);
    REAP_SAW.store(0, Ordering::Relaxed);
    HOLD_REAP.store(i as u32 + 1, Ordering::Relaxed);
    HOLD.store(i as u32 + 1, Ordering::Release);
}

/// Whether A's hold is still armed: no CPU has switched away from the armed thread yet.
pub(crate) fn armed() -> bool {
    HOLD.load(Ordering::Acquire) != 0
}

/// How the two holds ended: (A's, B's); see [`SAW`] and [`REAP_SAW`]. 0: never reached.
pub(crate) fn result() -> (u32, u32) {
    (
        SAW.load(Ordering::Acquire),
        REAP_SAW.load(Ordering::Acquire),
    )
}

/// Spins until `over` holds (1) or `HOLD_SECONDS` pass (2).
fn hold(over: impl Fn() -> bool) -> u32 {
    let d = rdtsc() + HOLD_SECONDS * crate::smp::time::tsc_hz();
    while rdtsc() < d {
        if over() {
            return 1;
        }
        core::hint::spin_loop();
    }
    2
}

/// CPU A, after `finish_switch`'s unlock: if armed for `prev_i`, wait until it is exiting
/// (or gone). Returns whether this was the held switch.
#[inline(always)]
pub(super) fn after_unlock(prev_i: usize) -> bool {
    claim(&HOLD, prev_i) && {
        hold_until_exiting(prev_i);
        true
    }
}

/// Whether `slot` is armed for thread `i`, disarming it (one hold per arming).
#[inline(always)]
fn claim(slot: &AtomicU32, i: usize) -> bool {
    let me = i as u32 + 1;
    slot.load(Ordering::Relaxed) == me
        && slot
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
}

#[cold]
#[inline(never)]
fn hold_until_exiting(prev_i: usize) {
    let t = tcb(prev_i);
    let how = hold(|| matches!(t.state(), State::Exiting | State::Exited));
    SAW.store(how, Ordering::Release);
}

/// CPU A, at the end of the held `finish_switch`.
#[inline(always)]
pub(super) fn done(held: bool) {
    if held {
        A_DONE.store(true, Ordering::Release);
    }
}

/// CPU B, before reaping `prev_i`: if armed for it, wait until A is done.
#[inline(always)]
pub(super) fn before_reap(prev_i: usize) {
    if claim(&HOLD_REAP, prev_i) {
        hold_until_a_done();
    }
}

#[cold]
#[inline(never)]
fn hold_until_a_done() {
    REAP_SAW.store(hold(|| A_DONE.load(Ordering::Acquire)), Ordering::Release);
}
