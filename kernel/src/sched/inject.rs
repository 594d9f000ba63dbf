//! Fault injection for two scheduler races (debug builds only; the release kernel has none
//! of it): the claim window of `Here::claim` (below, [`arm_claim`]) and the reap race of
//! `finish_switch`. Armed for one thread `P` by `arm`, it holds two CPUs at the two
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
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;

/// Thread index + 1 whose switch-away A holds (0: off).
static HOLD: AtomicU32 = AtomicU32::new(0);
/// CPU A: only a switch away from the thread there is held.
static HOLD_CPU: AtomicU32 = AtomicU32::new(0);
/// Thread index + 1 whose reap B holds (0: off).
static HOLD_REAP: AtomicU32 = AtomicU32::new(0);
/// A finished the held `finish_switch`.
static A_DONE: AtomicBool = AtomicBool::new(false);
/// How A's hold ended: 1 the thread was exiting, 2 the deadline.
static SAW: AtomicU32 = AtomicU32::new(0);
/// How B's hold ended: 1 A was done, 2 the deadline.
static REAP_SAW: AtomicU32 = AtomicU32::new(0);

/// Long enough for a host that deschedules a vCPU thread for seconds (a stress loop beside
/// two compilers once kept CPU A from its `done` for over 10 s, which failed the test).
const HOLD_SECONDS: u64 = 30;

/// Arms both holds for thread `i` (the calling thread, about to yield on CPU `a`). Only a
/// switch away from it on `a` is held: a tick may preempt it before its yield and another
/// CPU steal it (it is stealable by then), and a hold of that CPU instead had no thief
/// (until 2026-12-05: the test failed about once in 15 runs beside host load, CPU 0 held
/// with the victim queued there while A ran only its yielding filler).
pub(crate) fn arm(i: usize, a: u32) {
    HOLD_CPU.store(a, Ordering::Relaxed);
    A_DONE.store(false, Ordering::Relaxed);
    SAW.store(0, Ordering::Relaxed);
    REAP_SAW.store(0, Ordering::Relaxed);
    HOLD_REAP.store(i as u32 + 1, Ordering::Relaxed);
    HOLD.store(i as u32 + 1, Ordering::Release);
}

/// Disarms A's hold for thread `i` unless A has claimed it (its held switch happened):
/// whether it was still armed. Only one of the two wins.
pub(crate) fn disarm(i: usize) -> bool {
    HOLD.compare_exchange(i as u32 + 1, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
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
    hold_for(HOLD_SECONDS * crate::smp::time::tsc_hz(), over)
}

/// Spins until `over` holds (1) or `ticks` TSC ticks pass (2).
fn hold_for(ticks: u64, over: impl Fn() -> bool) -> u32 {
    let d = rdtsc() + ticks;
    while rdtsc() < d {
        if over() {
            return 1;
        }
        core::hint::spin_loop();
    }
    2
}

/// CPU `cpu`, after `finish_switch`'s unlock: if it is A and armed for `prev_i`, wait until
/// that thread is exiting (or gone). Returns whether this was the held switch.
#[inline(always)]
pub(super) fn after_unlock(cpu: u32, prev_i: usize) -> bool {
    HOLD_CPU.load(Ordering::Relaxed) == cpu && claim(&HOLD, prev_i) && {
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
    snapshot(prev_i, 0);
    let how = hold(|| matches!(t.state(), State::Exiting | State::Exited));
    snapshot(prev_i, SNAP);
    SAW.store(how, Ordering::Release);
}

/// Words of one [`snapshot`].
const SNAP: usize = 10;
/// What A's hold saw at its start and at its end (see [`snapshot`]), for the test's message.
static DIAG: [AtomicU64; 2 * SNAP] = [const { AtomicU64::new(0) }; 2 * SNAP];

/// Records, at `at`: the held thread's state and CPU, A's ready and stealable counts and
/// stealable bit, and for CPU B (the lowest other CPU) its switches, steals, running
/// thread, timer ticks, halted bit and lock.
fn snapshot(prev_i: usize, at: usize) {
    use super::cpu::cpu_sched;
    let t = tcb(prev_i);
    let Some(a) = super::cpu::this_sched() else {
        return;
    };
    let b = u32::from(a.cpu == 0);
    let mask = |m: Option<exo_sched::AtomicMask<'static>>, c: u32| {
        u64::from(m.is_some_and(|m| m.contains(c)))
    };
    let mut w = [
        t.state() as u64,
        u64::from(t.cpu.load(Ordering::Relaxed)),
        u64::from(a.nr_ready.load(Ordering::Relaxed)),
        u64::from(a.nr_stealable.load(Ordering::Relaxed))
            | mask(super::idle::stealable_mask(), a.cpu) << 32,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    if let Some(b) = cpu_sched(b) {
        w[4] = b.switches.load(Ordering::Relaxed);
        w[5] = b.steals.load(Ordering::Relaxed);
        w[6] = u64::from(b.current.load(Ordering::Relaxed));
        w[7] = b.timer_ticks.load(Ordering::Relaxed);
        w[8] = mask(super::idle::halted_mask(), b.cpu);
        w[9] = u64::from(b.lock.load(Ordering::Relaxed));
    }
    for (d, v) in DIAG[at..at + SNAP].iter().zip(w) {
        d.store(v, Ordering::Relaxed);
    }
}

/// A's hold at its start and end: `[state, cpu, A ready, A stealable | bit << 32, B
/// switches, B steals, B current, B ticks, B halted, B locked]` twice.
pub(crate) fn diag() -> [u64; 2 * SNAP] {
    core::array::from_fn(|k| DIAG[k].load(Ordering::Acquire))
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

/// Thread index + 1 whose claim is held open (0: off).
static HOLD_CLAIM: AtomicU32 = AtomicU32::new(0);
/// The claimer is inside the held window.
static CLAIM_HELD: AtomicBool = AtomicBool::new(false);
/// The test's other CPU is about to act inside the held window ([`claim_go`]).
static CLAIM_GO: AtomicBool = AtomicBool::new(false);
/// How the claim's hold ended: 1 the thread moved to another CPU and blocked there, 2 the
/// deadline after the go, 3 no go within [`HOLD_SECONDS`] (0: not reached).
static CLAIM_SAW: AtomicU32 = AtomicU32::new(0);

/// Arms the claim hold for thread `i`: the next `Here::claim` of it, on any CPU, stops
/// between its read of the thread's CPU and its CAS until the test's other CPU says it acts
/// ([`claim_go`]), then until the thread has moved to another CPU and blocked there, or
/// half a second passed. `Here::claim` holds its CPU's lock across the window, so the
/// thread cannot move (it is woken at most): the deadline ends the hold. A claim without
/// the lock there lets it move, and the CAS takes it. Until 2026-12-05 the half second ran
/// from the claimer's entry: a helper whose vCPU the host stalled that long acted after the
/// hold, and the test then forced nothing (found by review).
pub(crate) fn arm_claim(i: usize) {
    CLAIM_HELD.store(false, Ordering::Relaxed);
    CLAIM_GO.store(false, Ordering::Relaxed);
    CLAIM_SAW.store(0, Ordering::Relaxed);
    HOLD_CLAIM.store(i as u32 + 1, Ordering::Release);
}

/// The test's other CPU, inside the held window, right before it acts (a wake-up, a join):
/// the hold's half second starts now.
pub(crate) fn claim_go() {
    CLAIM_GO.store(true, Ordering::Release);
}

/// Disarms the claim hold and forgets the last one (a test's start: `claim_held` stays
/// true after a hold until the next arming, and a helper of the next test waiting for it
/// would go on at once).
pub(crate) fn reset_claim() {
    HOLD_CLAIM.store(0, Ordering::Relaxed);
    CLAIM_GO.store(false, Ordering::Relaxed);
    CLAIM_SAW.store(0, Ordering::Relaxed);
    CLAIM_HELD.store(false, Ordering::Release);
}

/// Whether a claimer is inside the held window (or was: until the next `arm_claim`).
pub(crate) fn claim_held() -> bool {
    CLAIM_HELD.load(Ordering::Acquire)
}

/// How the claim's hold ended ([`CLAIM_SAW`]).
pub(crate) fn claim_result() -> u32 {
    CLAIM_SAW.load(Ordering::Acquire)
}

/// `Here::claim` of thread `i` on `cpu`, between its read of the thread's CPU and its CAS:
/// holds if armed for `i`.
#[inline(always)]
pub(super) fn hold_claim(i: usize, cpu: u32) {
    if claim(&HOLD_CLAIM, i) {
        hold_claim_window(i, cpu);
    }
}

#[cold]
#[inline(never)]
fn hold_claim_window(i: usize, cpu: u32) {
    CLAIM_HELD.store(true, Ordering::Release);
    let t = tcb(i);
    let how = match hold(|| CLAIM_GO.load(Ordering::Acquire)) {
        1 => hold_for(crate::smp::time::tsc_hz() / 2, || {
            t.cpu.load(Ordering::Acquire) != cpu && t.state() == State::Blocked
        }),
        _ => 3,
    };
    CLAIM_SAW.store(how, Ordering::Release);
}

/// Thread index + 1 whose wake-up through a full mailbox is held before it takes the target
/// CPU's lock (0: off).
static HOLD_FALLBACK: AtomicU32 = AtomicU32::new(0);
/// Thread index + 1 whose migration is held right after the old CPU's unlock (0: off).
static HOLD_MIGRATION: AtomicU32 = AtomicU32::new(0);
/// The held waker is inside its hold / done with its enqueue.
static FALLBACK_HELD: AtomicBool = AtomicBool::new(false);
static FALLBACK_DONE: AtomicBool = AtomicBool::new(false);
/// The old CPU is inside the migration's hold.
static MIGRATION_HELD: AtomicBool = AtomicBool::new(false);
/// How the two holds ended: 1 the other side got there, 2 the deadline (0: not reached).
static FALLBACK_SAW: AtomicU32 = AtomicU32::new(0);
static MIGRATION_SAW: AtomicU32 = AtomicU32::new(0);

/// Arms the migration race for thread `i`: its next wake-up that finds the target's mailbox
/// full waits, before it takes the target CPU's lock, until `i` migrates and its old CPU has
/// released its lock; that CPU then waits (before it posts `i` to the new CPU) until the
/// wake-up has queued or skipped it. A thread still named as on the old CPU there is
/// queued there too, and again on the new one.
pub(crate) fn arm_migration(i: usize) {
    FALLBACK_HELD.store(false, Ordering::Relaxed);
    FALLBACK_DONE.store(false, Ordering::Relaxed);
    MIGRATION_HELD.store(false, Ordering::Relaxed);
    FALLBACK_SAW.store(0, Ordering::Relaxed);
    MIGRATION_SAW.store(0, Ordering::Relaxed);
    HOLD_MIGRATION.store(i as u32 + 1, Ordering::Relaxed);
    HOLD_FALLBACK.store(i as u32 + 1, Ordering::Release);
}

/// Whether the armed wake-up is inside its hold (or was: until the next `arm_migration`).
pub(crate) fn fallback_held() -> bool {
    FALLBACK_HELD.load(Ordering::Acquire)
}

/// How the two holds ended: (the wake-up's, the migration's); see [`FALLBACK_SAW`].
pub(crate) fn migration_result() -> (u32, u32) {
    (
        FALLBACK_SAW.load(Ordering::Acquire),
        MIGRATION_SAW.load(Ordering::Acquire),
    )
}

/// A wake-up of `i` through a full mailbox, before the target's lock: holds if armed for
/// `i` (until the migration's hold is reached). Returns whether it held.
#[inline(always)]
pub(super) fn before_fallback_lock(i: usize) -> bool {
    claim(&HOLD_FALLBACK, i) && {
        hold_fallback();
        true
    }
}

#[cold]
#[inline(never)]
fn hold_fallback() {
    FALLBACK_HELD.store(true, Ordering::Release);
    FALLBACK_SAW.store(
        hold(|| MIGRATION_HELD.load(Ordering::Acquire)),
        Ordering::Release,
    );
}

/// The held wake-up is done (its enqueue made or skipped, the lock released).
#[inline(always)]
pub(super) fn fallback_done(held: bool) {
    if held {
        FALLBACK_DONE.store(true, Ordering::Release);
    }
}

/// The migration of `i`, after its old CPU's unlock: holds if armed for `i`, until the held
/// wake-up is done.
#[inline(always)]
pub(super) fn migration_after_unlock(i: usize) {
    if claim(&HOLD_MIGRATION, i) {
        hold_migration();
    }
}

#[cold]
#[inline(never)]
fn hold_migration() {
    MIGRATION_HELD.store(true, Ordering::Release);
    MIGRATION_SAW.store(
        hold(|| FALLBACK_DONE.load(Ordering::Acquire)),
        Ordering::Release,
    );
}

/// Thread index + 1 whose wake-up is looked at between its CAS and its post (0: off).
static WAKE_CAS_FOR: AtomicU32 = AtomicU32::new(0);
/// What the armed wake-up found there: 0 not reached, 1 interrupts off (nothing can
/// preempt the waker there: it went on), 2 interrupts on (it stood preempted in
/// [`WAKE_CAS_HOLD`] until released).
static WAKE_CAS_SAW: AtomicU32 = AtomicU32::new(0);
/// Where the armed wake-up stands preempted when interrupts are on there.
pub(crate) static WAKE_CAS_HOLD: super::HoldPoint = super::HoldPoint::new();

/// Arms the wake-up window of `wake_index` for thread `i`: its next wake-up that wins the
/// `Blocked -> Ready` CAS stops right after it, before the post, for as long as the test
/// holds it ([`WAKE_CAS_HOLD`], released by the test) if interrupts are on there, as a
/// preemption by the tick at that instruction would; with them off nothing can preempt it
/// there, and it goes on.
pub(crate) fn arm_wake_cas(i: usize) {
    WAKE_CAS_SAW.store(0, Ordering::Relaxed);
    WAKE_CAS_HOLD.arm();
    WAKE_CAS_FOR.store(i as u32 + 1, Ordering::Release);
}

/// Disarms it (the test's end) and lets a held wake-up go on.
pub(crate) fn disarm_wake_cas() {
    WAKE_CAS_FOR.store(0, Ordering::Release);
    WAKE_CAS_HOLD.release();
}

/// What the armed wake-up found ([`WAKE_CAS_SAW`]).
pub(crate) fn wake_cas_result() -> u32 {
    WAKE_CAS_SAW.load(Ordering::Acquire)
}

/// `wake_index` of `i`, right after its CAS won: stands preempted there if armed for `i`
/// and interrupts are on.
#[inline(always)]
pub(super) fn after_wake_cas(i: usize) {
    if claim(&WAKE_CAS_FOR, i) {
        wake_cas_window();
    }
}

#[cold]
#[inline(never)]
fn wake_cas_window() {
    if exo_arch::cpu::interrupts_enabled() {
        WAKE_CAS_SAW.store(2, Ordering::Release);
        WAKE_CAS_HOLD.pass();
    } else {
        WAKE_CAS_SAW.store(1, Ordering::Release);
    }
}
