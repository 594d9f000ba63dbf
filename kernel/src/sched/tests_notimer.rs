//! Kernel tests of the scheduler without a timer (icount: the benchmark jobs, CI's icount
//! test run), where no tick comes to do what it does besides preempting: kick a halted CPU
//! when stealable work waits behind a running thread, wake the sleepers whose deadline
//! passed. The test job under TCG has the timer on, so each test makes the scheduler act as
//! without one (`sched::emulate_timer_off`: the tick does nothing, an idle CPU arms no
//! timer): what it checks holds in both modes, and fails without its fix in both.

use crate::boot::BootState;
use crate::harness::{Needs, SKIP, TestResult, check, join_all, ms, ncpus, wait_for};
use crate::ktest;
use crate::sched::{self, Builder, CpuSet, Tid};
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;

/// How long a test gives the kernel to do what it must (a halted CPU kicked, a watcher's
/// ring): a bound on a broken kernel, not a time to meet; every wait ends as soon as the
/// event comes. Until 2026-12-06 2 s, which a stalled host's vCPU could run out (CI hosts
/// run up to 64 vCPUs on two cores); a missed event still fails, later.
pub(super) const WINDOW_MS: u64 = 20_000;
/// A deadline that must not pass during a test ([`WINDOW_MS`] and the waits around it).
pub(super) const DISTANT_MS: u64 = 120_000;

ktest!(
    Needs::Threads,
    "sched.preempted_stealable_thread_is_offered_to_a_halted_cpu",
    preempted_offered
);
ktest!(
    Needs::Threads,
    "sched.remote_wake_of_a_stealable_thread_is_offered_to_a_halted_cpu",
    remote_wake_offered
);
ktest!(
    Needs::Threads,
    "sched.wake_before_the_floor_preempts_without_a_timer",
    floor_without_timer
);

/// This CPU (where the test runs) and the CPU the threads under test are pinned to: the last
/// one that is not this one.
pub(super) fn cpus_for_test() -> (u32, u32) {
    let me = sched::this_cpu();
    let x = (0..ncpus()).rev().find(|&c| c != me).unwrap_or(me);
    (me, x)
}

/// With the timer emulated off: waits until every CPU but those of `busy` is halted, once
/// the balancing tick an idle CPU armed before the emulation began has come
/// (`IDLE_BALANCE_SLICES` slices; 10 are waited). A skip if one is not halted within 5 s
/// (it polls for a sleeper of its own, or runs a thread of the kernel's): without every
/// other CPU halted, an idle one could take the work itself and nothing would be forced.
fn others_halted(busy: &[u32]) -> TestResult {
    others_halted_unless(busy, || false)
}

/// [`others_halted`], ended at once (a skip) when `gone` says the try can force nothing any
/// more (an awake CPU already took the work): until 2026-12-06 such a try waited out the
/// 5 s, five times in a row in some runs (25 s of one test in a 45 s job, TCG -smp 4).
fn others_halted_unless(busy: &[u32], gone: impl Fn() -> bool) -> TestResult {
    let until = rdtsc() + 10 * sched::slice_tsc();
    while rdtsc() < until {
        sched::yield_now();
    }
    let others = || (0..ncpus()).filter(|c| !busy.contains(c));
    let d = rdtsc() + ms(5000);
    while !others().all(super::idle::is_halted) {
        if gone() {
            return Err(format!("{SKIP}the work was taken by an awake CPU"));
        }
        if rdtsc() > d {
            let awake: Vec<u32> = others().filter(|&c| !super::idle::is_halted(c)).collect();
            return Err(format!(
                "{SKIP}CPUs {awake:?} did not halt within 5 s (nothing would be forced)"
            ));
        }
        sched::yield_now();
    }
    Ok(())
}

/// Waits on this CPU without leaving it idle (an idle CPU would look for work to steal
/// itself) until `done` or `limit_ms` passed; whether `done`.
pub(super) fn busy_wait(done: &AtomicBool, limit_ms: u64) -> bool {
    let d = rdtsc() + ms(limit_ms);
    while !done.load(Ordering::Acquire) && rdtsc() < d {
        core::hint::spin_loop();
    }
    done.load(Ordering::Acquire)
}

/// `preempted_offered`: X's progress and CPU, X stops, R may go on, R is done.
static X_COUNT: AtomicU64 = AtomicU64::new(0);
static X_CPU: AtomicU32 = AtomicU32::new(u32::MAX);
static X_STOP: AtomicBool = AtomicBool::new(false);
static R_GO: AtomicBool = AtomicBool::new(false);
static R_DONE: AtomicBool = AtomicBool::new(false);

/// X: started on CPU `x`, made free to run anywhere (it stays on x), spins counting until
/// told to stop (60 s at most); 0, or 2 if it could not widen its affinity, 3 if it did not
/// start on x.
fn x_spinner(x: u64) -> u64 {
    if sched::set_affinity(CpuSet::ANY).is_err() {
        return 2;
    }
    if sched::this_cpu() != x as u32 {
        return 3;
    }
    let d = rdtsc() + ms(60_000);
    while !X_STOP.load(Ordering::Acquire) && rdtsc() < d {
        X_CPU.store(sched::this_cpu(), Ordering::Relaxed);
        X_COUNT.fetch_add(1, Ordering::AcqRel);
        core::hint::spin_loop();
    }
    0
}

/// R: pinned to CPU `x`, blocks until the test wakes it; then, holding x (it never blocks
/// or yields), watches X for up to [`WINDOW_MS`]: 0 if X made progress meanwhile (so on another CPU),
/// 1 if not, 3 if R did not run on x.
fn r_waiter(x: u64) -> u64 {
    while !R_GO.load(Ordering::Acquire) {
        sched::block_unless(|| !R_GO.load(Ordering::Acquire));
    }
    let c0 = X_COUNT.load(Ordering::Acquire);
    let code = if sched::this_cpu() != x as u32 {
        3
    } else {
        let d = rdtsc() + ms(WINDOW_MS);
        while X_COUNT.load(Ordering::Acquire) == c0 && rdtsc() < d {
            core::hint::spin_loop();
        }
        u64::from(X_COUNT.load(Ordering::Acquire) == c0)
    };
    R_DONE.store(true, Ordering::Release);
    code
}

/// An unpinned thread preempted by a wake-up is offered to a halted CPU (the reviewer's
/// interleaving, timer off): X (free to run anywhere) spins on CPU x past its wake-up floor
/// (1 ms here); R, pinned to x, blocked; every other CPU but this one halted; this thread
/// wakes R and then busy-waits (were its CPU idle, it would steal X itself). R's wake-up
/// preempts X (`wake_preempt`): X is queued on x, stealable, and R runs there for [`WINDOW_MS`]
/// watching X. X must make progress meanwhile, on a halted CPU that was told. Until
/// 2026-12-06 nobody read the halted mask on that path: with the timer off no tick came
/// to kick one, and X waited until R ended (found by review; without the fix R reports 1).
/// Needs 3 CPUs.
fn preempted_offered(_: &BootState) -> TestResult {
    if ncpus() < 3 {
        return Err(format!("{SKIP}needs 3 CPUs"));
    }
    let (me, x) = cpus_for_test();
    X_COUNT.store(0, Ordering::Release);
    X_CPU.store(u32::MAX, Ordering::Release);
    for f in [&X_STOP, &R_GO, &R_DONE] {
        f.store(false, Ordering::Release);
    }
    sched::emulate_timer_off(true);
    sched::set_wake_floor_tsc(ms(1));
    let spawn = |f, arg| {
        Builder::new()
            .pin(x)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    let mut tids: Vec<Tid> = Vec::new();
    let offers0 = super::cpu::offers(x);
    let r = (|| -> TestResult {
        tids.push(spawn(r_waiter, u64::from(x))?);
        wait_for("R to block", 10_000, || sched::is_blocked(tids[0]))?;
        tids.push(spawn(x_spinner, u64::from(x))?);
        wait_for("X to spin", 10_000, || X_COUNT.load(Ordering::Acquire) > 0)?;
        others_halted(&[me, x])?;
        R_GO.store(true, Ordering::Release);
        let w0 = super::cpu::wake_counts(x);
        check(sched::wake(tids[0]), || "R was not blocked".into())?;
        if busy_wait(&R_DONE, 2 * WINDOW_MS) {
            return Ok(());
        }
        // Seen once in CI (TCG pc -smp 4, 2026-12-07), not reproduced in 28 runs; the
        // likeliest cause, a wake-up deferred by the floor that no timer looked at again,
        // was fixed that day (`sched.wake_before_the_floor_preempts_without_a_timer`). What
        // CPU x made of R's wake-up, for a next time.
        let w1 = super::cpu::wake_counts(x);
        sched::dump();
        Err(format!(
            "R never finished: on CPU {x} since R's wake-up {} wake IPIs, {} preemptions, {} \
             deferrals (a deferral is looked at again by no timer here); X last seen on CPU {}",
            w1.0 - w0.0,
            w1.1 - w0.1,
            w1.2 - w0.2,
            X_CPU.load(Ordering::Acquire)
        ))
    })();
    X_STOP.store(true, Ordering::Release);
    R_GO.store(true, Ordering::Release);
    if let Some(&rt) = tids.first() {
        sched::wake(rt);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    sched::emulate_timer_off(false);
    sched::set_wake_floor_tsc(0);
    r?;
    let codes = codes?;
    check(codes == [0, 0], || {
        format!(
            "X, preempted on CPU {x} by R's wake-up, made no progress elsewhere while R ran \
             there for {} s (R's code {}, X's {}; {} offers on CPU {x}; X last seen on CPU {})",
            WINDOW_MS / 1000,
            codes[0],
            codes[1],
            super::cpu::offers(x) - offers0,
            X_CPU.load(Ordering::Acquire)
        )
    })
}

/// `floor_without_timer`: F spins, F stops, V may go on, V ran.
static F_SPINS: AtomicBool = AtomicBool::new(false);
static F_STOP: AtomicBool = AtomicBool::new(false);
static V_GO: AtomicBool = AtomicBool::new(false);
static V_RAN: AtomicBool = AtomicBool::new(false);

/// F: pinned to its CPU, spins (never blocks, yields or leaves) until told to stop.
fn f_spinner(_: u64) -> u64 {
    let d = rdtsc() + ms(DISTANT_MS);
    F_SPINS.store(true, Ordering::Release);
    while !F_STOP.load(Ordering::Acquire) && rdtsc() < d {
        core::hint::spin_loop();
    }
    0
}

/// V: pinned to F's CPU, blocks until the test wakes it, then says it ran.
fn v_waiter(_: u64) -> u64 {
    while !V_GO.load(Ordering::Acquire) {
        sched::block_unless(|| !V_GO.load(Ordering::Acquire));
    }
    V_RAN.store(true, Ordering::Release);
    0
}

/// A wake-up that comes before the running thread's floor preempts it when there is no
/// timer: F spins on CPU x with a floor it will not reach in the test (`DISTANT_MS`), V,
/// pinned to x, is woken there, and must run while F still spins. With a timer the wake-up
/// is deferred to the floor's end (`sched.wake_before_the_floor_is_deferred_not_forgotten`);
/// without one nothing would look at it again. Until 2026-12-07 it was deferred all the same,
/// and V waited for as long as F ran (under icount, or here with the timer emulated off;
/// without the fix V never runs and the test fails after `WINDOW_MS`). Needs 2 CPUs.
fn floor_without_timer(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let (_, x) = cpus_for_test();
    for f in [&F_SPINS, &F_STOP, &V_GO, &V_RAN] {
        f.store(false, Ordering::Release);
    }
    let spawn = |f, arg| {
        Builder::new()
            .pin(x)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    sched::emulate_timer_off(true);
    sched::set_wake_floor_tsc(ms(DISTANT_MS));
    let mut tids: Vec<Tid> = Vec::new();
    let w0 = super::cpu::wake_counts(x);
    let r = (|| -> TestResult {
        tids.push(spawn(v_waiter, 0)?);
        wait_for("V to block", 10_000, || sched::is_blocked(tids[0]))?;
        tids.push(spawn(f_spinner, 0)?);
        wait_for("F to spin", 10_000, || F_SPINS.load(Ordering::Acquire))?;
        V_GO.store(true, Ordering::Release);
        check(sched::wake(tids[0]), || "V was not blocked".into())?;
        let ran = busy_wait(&V_RAN, WINDOW_MS);
        let w1 = super::cpu::wake_counts(x);
        check(ran, || {
            format!(
                "V, woken onto CPU {x} before F's floor, did not run in {} s while F spun \
                 there ({} wake IPIs, {} preemptions, {} deferrals on CPU {x})",
                WINDOW_MS / 1000,
                w1.0 - w0.0,
                w1.1 - w0.1,
                w1.2 - w0.2
            )
        })
    })();
    F_STOP.store(true, Ordering::Release);
    V_GO.store(true, Ordering::Release);
    if let Some(&v) = tids.first() {
        sched::wake(v);
    }
    // F ends now, and so V runs if it had not (its wake-up queued it on x).
    let codes = join_all(&tids, 3 * WINDOW_MS);
    sched::set_wake_floor_tsc(0);
    sched::emulate_timer_off(false);
    r?;
    let codes = codes?;
    check(codes.iter().all(|&c| c == 0), || {
        format!("exit codes {codes:?}")
    })
}

/// `remote_wake_offered`: W may go on, W ran, S spins, S is done.
static W_GO: AtomicBool = AtomicBool::new(false);
static W_RAN: AtomicBool = AtomicBool::new(false);
static S_SPINNING: AtomicBool = AtomicBool::new(false);
static S_DONE: AtomicBool = AtomicBool::new(false);

/// W: started on CPU x, made free to run anywhere, blocks until the test lets it go; 0, or
/// 2 if it could not widen its affinity.
fn w_woken(_: u64) -> u64 {
    if sched::set_affinity(CpuSet::ANY).is_err() {
        return 2;
    }
    while !W_GO.load(Ordering::Acquire) {
        sched::block_unless(|| !W_GO.load(Ordering::Acquire));
    }
    W_RAN.store(true, Ordering::Release);
    0
}

/// S: pinned to CPU x, spins (never blocking or yielding) until W ran or [`WINDOW_MS`] passed; 0 if
/// it saw W run, 1 if not.
fn s_spinner(_: u64) -> u64 {
    S_SPINNING.store(true, Ordering::Release);
    let d = rdtsc() + ms(WINDOW_MS);
    while !W_RAN.load(Ordering::Acquire) && rdtsc() < d {
        core::hint::spin_loop();
    }
    let saw = W_RAN.load(Ordering::Acquire);
    S_DONE.store(true, Ordering::Release);
    u64::from(!saw)
}

/// A thread others may take, woken from another CPU onto a CPU whose running thread keeps
/// it (the wake-up rule held: `sched::hold_wake_preemption`, as when the woken thread is not
/// the next to run), is offered to a halted CPU. W (free to run anywhere) blocks on CPU x;
/// S, pinned to x, spins there for up to [`WINDOW_MS`]; every other CPU but this one halted; this
/// thread wakes W and busy-waits. W must run (elsewhere) while S spins. Until 2026-12-06
/// the wake IPI's handler (`wake_preempt`) queued W and told nobody: with the timer off W
/// waited until S ended (found by review; without the fix S reports 1). Needs 3 CPUs.
fn remote_wake_offered(_: &BootState) -> TestResult {
    if ncpus() < 3 {
        return Err(format!("{SKIP}needs 3 CPUs"));
    }
    let (me, x) = cpus_for_test();
    for f in [&W_GO, &W_RAN, &S_SPINNING, &S_DONE] {
        f.store(false, Ordering::Release);
    }
    sched::emulate_timer_off(true);
    sched::hold_wake_preemption(true);
    let spawn = |f| {
        Builder::new()
            .pin(x)
            .spawn(f, 0)
            .map_err(|e| format!("spawn: {e}"))
    };
    let mut tids: Vec<Tid> = Vec::new();
    let offers0 = super::cpu::offers(x);
    let r = (|| -> TestResult {
        tids.push(spawn(w_woken)?);
        wait_for("W to block", 10_000, || sched::is_blocked(tids[0]))?;
        tids.push(spawn(s_spinner)?);
        wait_for("S to spin", 10_000, || S_SPINNING.load(Ordering::Acquire))?;
        others_halted(&[me, x])?;
        W_GO.store(true, Ordering::Release);
        check(sched::wake(tids[0]), || "W was not blocked".into())?;
        check(busy_wait(&S_DONE, 10_000), || "S never finished".into())
    })();
    W_GO.store(true, Ordering::Release);
    if let Some(&w) = tids.first() {
        sched::wake(w);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    sched::hold_wake_preemption(false);
    sched::emulate_timer_off(false);
    r?;
    let codes = codes?;
    check(codes == [0, 0], || {
        format!(
            "W, woken onto CPU {x} behind S, did not run elsewhere while S spun there for {} s \
             (W's code {}, S's {}; {} offers on CPU {x})",
            WINDOW_MS / 1000,
            codes[0],
            codes[1],
            super::cpu::offers(x) - offers0
        )
    })
}

ktest!(
    Needs::Threads,
    "sched.due_sleeper_on_a_busy_cpu_is_woken_without_a_timer",
    busy_cpu_sleeper
);
ktest!(
    Needs::Threads,
    "sched.due_sleeper_beside_a_distant_one_is_watched_without_a_timer",
    beside_distant_sleeper
);
ktest!(
    Needs::Threads,
    "sched.due_pinned_sleeper_on_a_busy_cpu_runs_without_a_timer",
    pinned_busy_cpu_sleeper
);
ktest!(
    Needs::Threads,
    "sched.due_sleeper_is_rung_once_per_deadline",
    rung_once
);
ktest!(
    Needs::Threads,
    "sched.far_sleeper_on_a_busy_cpu_is_woken_without_a_timer",
    far_busy_cpu_sleeper
);
ktest!(
    Needs::Threads,
    "sched.watcher_leaving_for_work_hands_its_watch_on_without_a_timer",
    watcher_hands_on
);
ktest!(
    Needs::Threads,
    "sched.watcher_claimed_for_work_before_its_look_hands_its_watch_on_without_a_timer",
    watcher_claimed_before_look
);
ktest!(
    Needs::Threads,
    "sched.watcher_recruit_whose_lock_is_busy_recruits_the_next_without_a_timer",
    recruit_lock_busy
);

/// How a [`sleeper_try`] makes CPU x busy while S sleeps there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// S (free to run anywhere) sleeps on idle x, which polls for it; then the spinner is
    /// woken onto x.
    AfterSleep,
    /// As `AfterSleep`, S pinned to x.
    AfterSleepPinned,
    /// D (pinned to x) waits with a long deadline ([`DISTANT_MS`]) first; S (free to run anywhere) sleeps
    /// while the spinner is queued behind it on x.
    BesideDistant,
    /// As `AfterSleepPinned`, the spinner holding interrupts off until 30 ms past S's
    /// deadline (x takes no wake IPI meanwhile).
    IrqsOff,
    /// As `AfterSleep`, S's deadline [`FAR_MS`] beyond the watch window.
    Far,
    /// As `Far`, then the watcher x's busy stretch recruited is given a CPU-bound thread
    /// of its own (G, pinned to it).
    FarHandOn,
    /// As `AfterSleep`, the first halted CPU x's leave for the spinner recruits found with
    /// its lock busy (`idle::recruit_lock_busy_for_tests`).
    RecruitLocked,
}

/// Spins (busy, so this CPU never halts to watch sleepers itself) until the sleeper is back
/// (`back` non-zero), its CPU's spinner is done, or the TSC reaches `until`.
fn busy_until_back(back: &AtomicU64, done: &AtomicBool, until: u64) {
    while back.load(Ordering::Acquire) == 0 && !done.load(Ordering::Acquire) && rdtsc() < until {
        core::hint::spin_loop();
    }
}

/// `busy_cpu_sleeper` and its variants: S's deadline (0: not asleep yet) and when it came
/// back (0: not yet); S runs, the spinner is queued; when the spinner started (0: not yet),
/// and whether it stopped; D may end; the sleeper rings while x held interrupts off.
static S_DEADLINE: AtomicU64 = AtomicU64::new(0);
static S_BACK: AtomicU64 = AtomicU64::new(0);
static S_RUNS: AtomicBool = AtomicBool::new(false);
static SP_QUEUED: AtomicBool = AtomicBool::new(false);
static SP_START: AtomicU64 = AtomicU64::new(0);
static SP_DONE: AtomicBool = AtomicBool::new(false);
static D_GO: AtomicBool = AtomicBool::new(false);
static IRQS_OFF_RINGS: AtomicU64 = AtomicU64::new(0);

/// S: started on CPU `x & 0xffff`, made free to run anywhere unless `PINNED` is in `x`
/// (it stays on x), sleeps 20 ms there (first, with `BESIDE`, once the spinner is queued
/// behind it); 0 if it came back while the spinner still spun, 1 if only after, 2 if it
/// could not widen its affinity, 3 if it did not start on x.
fn s_sleeper(x: u64) -> u64 {
    let r = s_sleeper_body(x);
    S_ENDED.store(true, Ordering::Release);
    r
}

const PINNED: u64 = 1 << 16;
const BESIDE: u64 = 1 << 17;
/// S sleeps [`FAR_MS`] beyond the watch window ([`watch_window`]) instead of 20 ms.
const FAR: u64 = 1 << 18;
/// How far beyond the watch window a far sleeper's deadline lies: time for the test to
/// set up what it forces before the deadline comes within the window
/// ([`crate::harness::slack_ms`]).
const FAR_MS: u64 = 1000;

/// The watch window (`idle::WATCH_SLICES` slices) in TSC ticks.
fn watch_window() -> u64 {
    sched::slice_tsc().saturating_mul(super::idle::WATCH_SLICES)
}

/// `busy_cpu_sleeper`: S has ended (whichever way).
static S_ENDED: AtomicBool = AtomicBool::new(false);

fn s_sleeper_body(arg: u64) -> u64 {
    if arg & PINNED == 0 && sched::set_affinity(CpuSet::ANY).is_err() {
        return 2;
    }
    if sched::this_cpu() != (arg & 0xffff) as u32 {
        return 3;
    }
    if arg & BESIDE != 0 {
        S_RUNS.store(true, Ordering::Release);
        let d = rdtsc() + ms(10_000);
        while !SP_QUEUED.load(Ordering::Acquire) && rdtsc() < d {
            core::hint::spin_loop();
        }
    }
    let d = rdtsc()
        + if arg & FAR != 0 {
            watch_window() + ms(crate::harness::slack_ms(FAR_MS))
        } else {
            ms(20)
        };
    S_DEADLINE.store(d, Ordering::Release);
    sched::sleep_until(d);
    let spinning = !SP_DONE.load(Ordering::Acquire);
    S_BACK.store(rdtsc().max(1), Ordering::Release);
    u64::from(!spinning)
}

/// `FarHandOn`: the watcher's CPU (`u32::MAX`: none found) and when G started there (0:
/// not yet).
static HW_CPU: AtomicU32 = AtomicU32::new(u32::MAX);
static G_START: AtomicU64 = AtomicU64::new(0);

/// G: pinned to the watcher's CPU `w`, spins (never blocking or yielding) until S is back
/// or [`WINDOW_MS`] passed; 0, 3 if it did not run on w.
fn g_spinner(w: u64) -> u64 {
    G_START.store(rdtsc().max(1), Ordering::Release);
    let on_w = sched::this_cpu() == w as u32;
    let d = rdtsc() + ms(WINDOW_MS);
    while S_BACK.load(Ordering::Acquire) == 0 && rdtsc() < d {
        core::hint::spin_loop();
    }
    if on_w { 0 } else { 3 }
}

/// The first CPU but `me` and `x` that watches other CPUs' sleepers (`watching`).
fn a_watcher(me: u32, x: u32) -> Option<u32> {
    (0..ncpus())
        .filter(|&c| c != me && c != x)
        .find(|&c| sched::cpu_sched(c).is_some_and(|s| s.watching.load(Ordering::Acquire)))
}

/// The sleeper rings of every CPU so far.
fn sleeper_rings() -> u64 {
    (0..ncpus())
        .filter_map(sched::cpu_sched)
        .map(|c| c.sleeper_rings.load(Ordering::Relaxed))
        .sum()
}

/// The spinner: pinned to CPU x, spins (never blocking or yielding) until S is back or [`WINDOW_MS`]
/// passed; with `irqs_off` (non-zero), first with interrupts off until 30 ms past S's
/// deadline, counting the sleeper rings meanwhile (`irqs_off`: their count before, plus 1).
fn sp_spinner(irqs_off: u64) -> u64 {
    SP_START.store(rdtsc().max(1), Ordering::Release);
    if irqs_off != 0 {
        let _g = exo_percpu::IrqGuard::new();
        let until = S_DEADLINE.load(Ordering::Acquire) + ms(30);
        while rdtsc() < until {
            core::hint::spin_loop();
        }
        IRQS_OFF_RINGS.store(sleeper_rings() + 1 - irqs_off, Ordering::Release);
    }
    let d = rdtsc() + ms(WINDOW_MS);
    while S_BACK.load(Ordering::Acquire) == 0 && rdtsc() < d {
        core::hint::spin_loop();
    }
    SP_DONE.store(true, Ordering::Release);
    0
}

/// D: pinned to CPU x, waits with a long deadline ([`DISTANT_MS`]) until let go; 0, 4 if it timed out.
fn d_distant(_: u64) -> u64 {
    let d = rdtsc() + ms(DISTANT_MS);
    while !D_GO.load(Ordering::Acquire) {
        if sched::block_until(d, || !D_GO.load(Ordering::Acquire)) {
            return 4;
        }
    }
    0
}

/// A sleeper whose deadline passes on a CPU that runs a CPU-bound thread is woken (and, free
/// to run anywhere, runs elsewhere) without a timer. S (unpinned) sleeps 20 ms on CPU x,
/// idle, which polls for it; then a spinner pinned to x is woken there and spins up to [`WINDOW_MS`];
/// every other CPU but this one was halted, and this thread busy-waits: only a halted CPU
/// recruited to watch x can wake S in time. S must come back while the spinner still spins.
/// Until 2026-12-06 a CPU's sleepers were looked at only by that CPU (its schedule, tick and
/// idle step): with the timer off S overslept until the spinner stopped (found by review).
/// An idle CPU now rings a busy one whose sleeper is due (`idle::watch_busy_sleepers`),
/// whose wake IPI wakes it (`wake::wake_ipi`); until 2026-12-06 nothing recruited such a
/// watcher when the thread was woken onto a CPU polling for its own sleeper (found by
/// review: this test passed only because its own thread slept, its CPU polling and
/// watching; without the fix S reports 1). A try whose spinner started only after S's
/// deadline (a slow host: nothing forced), or whose S was no longer asleep when this
/// thread looked (many emulated CPUs on two host cores), is made again, at most 5 times.
/// Needs 3 CPUs (this one, x, a watcher).
fn busy_cpu_sleeper(_: &BootState) -> TestResult {
    sleeper_test(Busy::AfterSleep)
}

/// As [`busy_cpu_sleeper`], x's list already holding D's long deadline ([`DISTANT_MS`]), and S's 20 ms one
/// added while the spinner is queued behind S: the lowering of x's first deadline recruits
/// the watcher (since 2026-12-06 S's switch to the spinner does, once the lowering has
/// brought x's watch window forward). Until 2026-12-06 only a first deadline (none before)
/// did (found by review; without the fix S reports 1).
fn beside_distant_sleeper(_: &BootState) -> TestResult {
    sleeper_test(Busy::BesideDistant)
}

/// As [`busy_cpu_sleeper`], S pinned to x: rung, x queues S marked as woken, and the
/// wake-up rule preempts the spinner (its floor made 1 tick). Until 2026-12-06 S was
/// queued unmarked and waited until the spinner stopped (found by review; without the fix
/// S reports 1).
fn pinned_busy_cpu_sleeper(_: &BootState) -> TestResult {
    sleeper_test(Busy::AfterSleepPinned)
}

/// As [`pinned_busy_cpu_sleeper`], the spinner holding x's interrupts off until 30 ms past
/// S's deadline: the watcher rings x once for that deadline (at most 3 rings counted, other
/// CPUs' sleepers included), not at every idle step until x takes the IPI. Until
/// 2026-12-06 it rang at every step (found by review; without the fix hundreds).
fn rung_once(_: &BootState) -> TestResult {
    sleeper_test(Busy::IrqsOff)
}

/// As [`busy_cpu_sleeper`], S's deadline [`FAR_MS`] beyond the watch window
/// (`idle::WATCH_SLICES` slices) when the spinner makes x busy: x's leave for it recruits a
/// watcher that polls through the spinner's run and rings x once S is due. Until
/// 2026-12-06 only a deadline within the window recruited one, and nothing did once S's
/// came within it (found by review; without the fix S reports 1, back only once the
/// spinner stopped). A try whose spinner started only once S's deadline was within the
/// window (a slow host: nothing forced) is made again, at most 5 times.
fn far_busy_cpu_sleeper(_: &BootState) -> TestResult {
    sleeper_test(Busy::Far)
}

/// As [`far_busy_cpu_sleeper`], and once a CPU watches x (the one x's leave recruited,
/// polling), G, pinned to that CPU, is spawned there and spins: the watcher leaves its idle
/// loop for G and must hand its watch on to another halted CPU, which rings x once S is
/// due. Until 2026-12-06 a watcher claimed for work left the sleepers it watched unwatched
/// (found by review; without the fix S reports 1, back only once the spinner stopped). A
/// try whose G started only after S's deadline, or found no watcher, is made again, at
/// most 5 times. Needs 4 CPUs (this one, x, the watcher, one to hand on to).
fn watcher_hands_on(_: &BootState) -> TestResult {
    if ncpus() < 4 {
        return Err(format!(
            "{SKIP}needs 4 CPUs (this one busy, x, a watcher, one to hand on to)"
        ));
    }
    sleeper_test(Busy::FarHandOn)
}

/// As [`busy_cpu_sleeper`], the first halted CPU that x's leave for the spinner recruits to
/// watch S found with its lock busy (forced: `idle::recruit_lock_busy_for_tests`), as when
/// that CPU's own idle step or switch holds it at that instant: it is rung unmarked, and
/// the next halted CPU must be taken, marked watching and rung, and S come back while the
/// spinner spins. Until 2026-12-07 no test reached this corner. A try whose recruit found
/// no second halted CPU (or one whose lock was really busy), or that made no recruit, is
/// made again, at most 5 times. Needs 4 CPUs (this one busy, x, two halted).
fn recruit_lock_busy(_: &BootState) -> TestResult {
    if ncpus() < 4 {
        return Err(format!(
            "{SKIP}needs 4 CPUs (this one busy, x, two halted to recruit)"
        ));
    }
    sleeper_test(Busy::RecruitLocked)
}

/// The frame of the timer-less watcher tests: a skip below 3 CPUs (this one busy, x, a
/// halted one to watch x); the timer emulated off and the wake-up floor at 1 tick; `try_at`
/// made at most 5 times on (this CPU, x) until it forced what it tests (`Ok(true)`), a skip
/// saying `unforced` if it never did; then both put back.
fn timer_off_tries(
    unforced: &str,
    mut try_at: impl FnMut(u32, u32) -> Result<bool, alloc::string::String>,
) -> TestResult {
    if ncpus() < 3 {
        return Err(format!(
            "{SKIP}needs 3 CPUs (this one busy, x, a halted one to watch x)"
        ));
    }
    let (me, x) = cpus_for_test();
    sched::emulate_timer_off(true);
    sched::set_wake_floor_tsc(1);
    let r = (|| -> TestResult {
        for _ in 0..5 {
            if try_at(me, x)? {
                return Ok(());
            }
        }
        Err(format!("{SKIP}5 tries, {unforced}"))
    })();
    sched::set_wake_floor_tsc(0);
    sched::emulate_timer_off(false);
    r
}

fn sleeper_test(mode: Busy) -> TestResult {
    let unforced = match mode {
        Busy::Far => {
            "each spinner started only once S was due within the watch window: \
                      nothing was forced"
        }
        Busy::FarHandOn => {
            "each spinner started only once S was due within the watch \
                            window, or no watcher was found, or G started only after S's \
                            deadline: nothing was forced"
        }
        Busy::RecruitLocked => {
            "each spinner started only after S was due, or x's leave for it recruited \
                              no watcher, or found no second halted CPU: nothing was forced"
        }
        _ => "each spinner started only after S was due: nothing was forced",
    };
    let r = timer_off_tries(unforced, |me, x| sleeper_try(mode, me, x));
    sched::hold_wake_preemption(false);
    r
}

/// One try of [`sleeper_test`] on CPU `x`: `Ok(true)` if the spinner ran on x before S
/// was due (forced) and S came back while it spun, `Ok(false)` if nothing was forced.
fn sleeper_try(mode: Busy, me: u32, x: u32) -> Result<bool, alloc::string::String> {
    S_DEADLINE.store(0, Ordering::Release);
    S_BACK.store(0, Ordering::Release);
    S_ENDED.store(false, Ordering::Release);
    S_RUNS.store(false, Ordering::Release);
    SP_QUEUED.store(false, Ordering::Release);
    SP_START.store(0, Ordering::Release);
    SP_DONE.store(false, Ordering::Release);
    D_GO.store(false, Ordering::Release);
    IRQS_OFF_RINGS.store(0, Ordering::Release);
    HW_CPU.store(u32::MAX, Ordering::Release);
    G_START.store(0, Ordering::Release);
    let spawn = |f, arg| {
        Builder::new()
            .pin(x)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    let rings0 = sleeper_rings();
    let mut tids: Vec<Tid> = Vec::new();
    let mut d_tid = None;
    let r = (|| -> TestResult {
        if mode == Busy::BesideDistant {
            let d = spawn(d_distant, 0)?;
            d_tid = Some(d);
            wait_for("D to wait", 10_000, || {
                sched::is_blocked(d) && sched::listed_as_sleeper(x, d)
            })?;
        }
        others_halted(&[me, x])?;
        let arg = u64::from(x)
            | match mode {
                Busy::AfterSleep | Busy::RecruitLocked => 0,
                Busy::AfterSleepPinned | Busy::IrqsOff => PINNED,
                Busy::BesideDistant => BESIDE,
                Busy::Far | Busy::FarHandOn => FAR,
            };
        let s = spawn(s_sleeper, arg)?;
        tids.push(s);
        if mode == Busy::BesideDistant {
            // The spinner is queued behind S (no wake-up preemption), then S sleeps.
            sched::hold_wake_preemption(true);
            wait_for("S to run", 10_000, || S_RUNS.load(Ordering::Acquire))?;
            tids.push(spawn(sp_spinner, 0)?);
            let xs = super::cpu::cpu_sched(x).ok_or("no CPU x")?;
            wait_for("the spinner to be queued", 10_000, || {
                xs.nr_ready.load(Ordering::Acquire) != 0
            })?;
            SP_QUEUED.store(true, Ordering::Release);
        }
        // S asleep, or already past its sleep (woken before this thread looked, or moved off
        // x before it slept: many emulated CPUs on a slow host): then nothing can be
        // forced this try.
        wait_for("S to sleep or end", 10_000, || {
            (S_DEADLINE.load(Ordering::Acquire) != 0 && sched::is_blocked(s))
                || S_ENDED.load(Ordering::Acquire)
        })?;
        sched::hold_wake_preemption(false);
        if S_ENDED.load(Ordering::Acquire) {
            return Ok(());
        }
        if mode != Busy::BesideDistant {
            let irqs_off = if mode == Busy::IrqsOff {
                sleeper_rings() + 1
            } else {
                0
            };
            if mode == Busy::RecruitLocked {
                super::idle::recruit_lock_busy_for_tests(Some(x));
            }
            tids.push(spawn(sp_spinner, irqs_off)?);
        }
        wait_for("the spinner to start", 10_000, || {
            SP_START.load(Ordering::Acquire) != 0
        })?;
        if mode == Busy::FarHandOn {
            // The watcher polls from x's leave for the spinner until S is due: found well
            // before (none found in time: nothing forced).
            let d = S_DEADLINE.load(Ordering::Acquire);
            let mut w = a_watcher(me, x);
            while w.is_none() && rdtsc() < d {
                sched::yield_now();
                w = a_watcher(me, x);
            }
            if let Some(w) = w {
                HW_CPU.store(w, Ordering::Release);
                tids.push(
                    Builder::new()
                        .pin(w)
                        .spawn(g_spinner, u64::from(w))
                        .map_err(|e| format!("spawn: {e}"))?,
                );
                wait_for("G to start", 10_000, || {
                    G_START.load(Ordering::Acquire) != 0
                })?;
            }
        }
        // Busy, not asleep: this CPU must not watch x itself.
        busy_until_back(&S_BACK, &SP_DONE, rdtsc() + ms(2 * WINDOW_MS));
        Ok(())
    })();
    sched::hold_wake_preemption(false);
    D_GO.store(true, Ordering::Release);
    if let Some(d) = d_tid {
        sched::wake(d);
        tids.push(d);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    let recruit = super::idle::recruit_injected();
    super::idle::recruit_lock_busy_for_tests(None);
    r?;
    let codes = codes?;
    let started = SP_START.load(Ordering::Acquire);
    let deadline = S_DEADLINE.load(Ordering::Acquire);
    // A far sleeper's spinner must start while S's deadline is beyond the window, and the
    // watcher's G before S is due.
    let far = matches!(mode, Busy::Far | Busy::FarHandOn);
    let g = G_START.load(Ordering::Acquire);
    if started == 0
        || started >= deadline
        || (far && started.saturating_add(watch_window()) >= deadline)
        || (mode == Busy::FarHandOn && (g == 0 || g >= deadline))
    {
        return Ok(false);
    }
    check(
        codes.iter().all(|&c| c == 0 || c == 1) && codes[1..].iter().all(|&c| c == 0),
        || format!("thread codes {codes:?}"),
    )?;
    let late = S_BACK
        .load(Ordering::Acquire)
        .saturating_sub(S_DEADLINE.load(Ordering::Acquire));
    check(codes[0] == 0, || {
        format!(
            "S, asleep on CPU {x} behind a spinner{}, came back only when the spinner \
             stopped (code {}, {} ms past its deadline; {} sleeper rings)",
            match mode {
                Busy::Far => " (its deadline beyond the watch window when it began)".into(),
                Busy::FarHandOn => format!(
                    " (its watcher, CPU {}, then given a thread of its own)",
                    HW_CPU.load(Ordering::Acquire)
                ),
                _ => alloc::string::String::new(),
            },
            codes[0],
            late / ms(1).max(1),
            sleeper_rings() - rings0
        )
    })?;
    if mode == Busy::RecruitLocked {
        use super::idle::AfterBusy;
        let (busy, then) = match recruit {
            None | Some((_, AfterBusy::NoneLeft | AfterBusy::SecondBusy)) => return Ok(false),
            Some(r) => r,
        };
        let AfterBusy::Marked(next) = then else {
            return Err(format!(
                "x's recruit found CPU {busy}'s lock busy and then took no other halted CPU \
                 ({then:?})"
            ));
        };
        check(
            next != busy && ![me, x].contains(&next) && ![me, x].contains(&busy),
            || {
                format!(
                    "x's recruit found CPU {busy}'s lock busy, then marked CPU {next} \
                 (this CPU {me}, x {x})"
                )
            },
        )?;
    }
    if mode == Busy::IrqsOff {
        let n = IRQS_OFF_RINGS.load(Ordering::Acquire);
        check(n <= 3, || {
            format!(
                "CPU {x}, its interrupts off for 30 ms past S's deadline, was rung {n} times \
                 for it (once is enough)"
            )
        })?;
    }
    Ok(true)
}

ktest!(
    Needs::Threads,
    "sched.idle_cpu_without_a_timer_halts_once_its_sleepers_are_stale",
    stale_sleeper_halts
);

/// `stale_sleeper_halts`: T's first wait may end, its second; how far T got (1: in its
/// first wait, 2: in its second).
static T_GO1: AtomicBool = AtomicBool::new(false);
static T_GO2: AtomicBool = AtomicBool::new(false);
static T_PHASE: AtomicU32 = AtomicU32::new(0);

/// T: pinned to CPU `x`, waits with a long deadline ([`DISTANT_MS`]) until let go (early), then waits with
/// none; 0, 3 if it did not run on x, 4 if its first wait timed out.
fn t_waiter(x: u64) -> u64 {
    if sched::this_cpu() != x as u32 {
        return 3;
    }
    let d = rdtsc() + ms(DISTANT_MS);
    T_PHASE.store(1, Ordering::Release);
    while !T_GO1.load(Ordering::Acquire) {
        if sched::block_until(d, || !T_GO1.load(Ordering::Acquire)) {
            return 4;
        }
    }
    T_PHASE.store(2, Ordering::Release);
    while !T_GO2.load(Ordering::Acquire) {
        sched::block_unless(|| !T_GO2.load(Ordering::Acquire));
    }
    0
}

/// Without a timer, an idle CPU whose sleeper list holds only stale entries halts: T
/// (pinned to CPU x) waits with a distant deadline ([`DISTANT_MS`]; listed as x's sleeper;
/// x, idle, polls for it), is woken early, then waits with no deadline. x must show in the
/// halted mask within [`WINDOW_MS`]. Until 2026-12-06 an entry left the list only at a
/// scan, which came once its deadline had passed: x polled until then (found by review;
/// without the fix x was not halted after 2 s). Needs 2 CPUs.
fn stale_sleeper_halts(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let (_, x) = cpus_for_test();
    for f in [&T_GO1, &T_GO2] {
        f.store(false, Ordering::Release);
    }
    T_PHASE.store(0, Ordering::Release);
    sched::emulate_timer_off(true);
    let mut tids: Vec<Tid> = Vec::new();
    let mut halted_after = None;
    let r = (|| -> TestResult {
        tids.push(
            Builder::new()
                .pin(x)
                .spawn(t_waiter, u64::from(x))
                .map_err(|e| format!("spawn: {e}"))?,
        );
        let t = tids[0];
        wait_for("T's first wait", 10_000, || {
            T_PHASE.load(Ordering::Acquire) == 1 && sched::is_blocked(t)
        })?;
        check(sched::listed_as_sleeper(x, t), || {
            format!("T, in a wait with a deadline, is not listed as CPU {x}'s sleeper")
        })?;
        T_GO1.store(true, Ordering::Release);
        sched::wake(t);
        wait_for("T's second wait", 10_000, || {
            T_PHASE.load(Ordering::Acquire) == 2 && sched::is_blocked(t)
        })?;
        let t0 = rdtsc();
        let d = t0 + ms(WINDOW_MS);
        while !super::idle::is_halted(x) && rdtsc() < d {
            sched::yield_now();
        }
        if super::idle::is_halted(x) {
            halted_after = Some((rdtsc() - t0) / ms(1).max(1));
        }
        Ok(())
    })();
    T_GO1.store(true, Ordering::Release);
    T_GO2.store(true, Ordering::Release);
    if let Some(&t) = tids.first() {
        sched::wake(t);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    sched::emulate_timer_off(false);
    r?;
    let codes = codes?;
    check(codes == [0], || format!("T ended with {}", codes[0]))?;
    check(halted_after.is_some(), || {
        format!(
            "CPU {x}, idle with only T's stale entry (blocked again without a deadline) on its \
             sleeper list, did not halt within {} s (it polls until T's old deadline)",
            WINDOW_MS / 1000
        )
    })
}

ktest!(
    Needs::Threads,
    "sched.handoff_sleeper_on_a_busy_cpu_is_woken_without_a_timer",
    handoff_sleeper
);

/// `handoff_sleeper`: B (raw id; 0: not spawned), B may go on, B stopped spinning; H's
/// deadline (0: not yet) and when it came back (0: not yet).
static HB_TARGET: AtomicU64 = AtomicU64::new(0);
static HB_GO: AtomicBool = AtomicBool::new(false);
static HB_DONE: AtomicBool = AtomicBool::new(false);
static HH_DEADLINE: AtomicU64 = AtomicU64::new(0);
static HH_BACK: AtomicU64 = AtomicU64::new(0);

/// B: pinned to CPU `x`, blocks until H's direct switch claims it (or the test lets it
/// go), then spins (never blocking or yielding) until H is back or [`WINDOW_MS`] passed; 0,
/// 3 if it did not run on x.
fn hb_target(x: u64) -> u64 {
    gated_spinner(x, &HB_GO, &HH_BACK, &HB_DONE)
}

/// The CPU-bound thread of the watcher tests: blocks until `go`, then spins (never
/// blocking or yielding) until `back` is set (the sleeper came back) or [`WINDOW_MS`]
/// passed, and sets `done`; 0, 3 if it did not run on CPU `x`.
fn gated_spinner(x: u64, go: &AtomicBool, back: &AtomicU64, done: &AtomicBool) -> u64 {
    while !go.load(Ordering::Acquire) {
        sched::block_unless(|| !go.load(Ordering::Acquire));
    }
    let on_x = sched::this_cpu() == x as u32;
    let d = rdtsc() + ms(WINDOW_MS);
    while back.load(Ordering::Acquire) == 0 && rdtsc() < d {
        core::hint::spin_loop();
    }
    done.store(true, Ordering::Release);
    if on_x { 0 } else { 3 }
}

/// H: pinned to CPU `x`, claims B (blocked on x) and switches straight to it, blocked
/// itself with a deadline 20 ms ahead (`Here::handoff`, as the IPC fastpath with a
/// timeout); 0 if it came back while B still spun, 1 if only after, 3 if it did not run on
/// x, 4 if the claim was refused (B not blocked on x: nothing forced).
fn hh_caller(x: u64) -> u64 {
    if sched::this_cpu() != x as u32 {
        return 3;
    }
    let b = Tid::from_raw(HB_TARGET.load(Ordering::Acquire));
    let g = exo_percpu::IrqGuard::new();
    let Some(here) = sched::Here::of(&g) else {
        return 3;
    };
    HB_GO.store(true, Ordering::Release);
    let Some(target) = here.claim(b) else {
        return 4;
    };
    let d = rdtsc() + ms(20);
    HH_DEADLINE.store(d, Ordering::Release);
    // Nothing wakes H but its deadline.
    here.handoff(target, d, || true);
    let spinning = !HB_DONE.load(Ordering::Acquire);
    HH_BACK.store(rdtsc().max(1), Ordering::Release);
    drop(g);
    u64::from(!spinning)
}

/// A thread blocked with a deadline by a direct switch (`Here::handoff`: the IPC fastpath's
/// caller with a timeout) on a CPU whose claimed target then runs CPU-bound is woken at its
/// deadline without a timer. B, pinned to CPU x, blocks; every other CPU but this one is
/// halted, and this thread busy-waits; H, pinned to x, claims B and switches to it with a
/// deadline 20 ms ahead; B spins up to [`WINDOW_MS`]. Only a halted CPU recruited to watch
/// x can wake H in time: H must come back while B still spins. Until 2026-12-06 the
/// sleeper a direct switch added recruited a watcher only if x's run queue held a thread,
/// and B, claimed, is on none (found by review; without the fix H reports 1, back only
/// once B stopped). A try whose claim was refused (B not blocked on x when H looked) is
/// made again, at most 5 times. Needs 3 CPUs (this one, x, a watcher).
fn handoff_sleeper(_: &BootState) -> TestResult {
    timer_off_tries("each claim of B refused: nothing was forced", handoff_try)
}

/// One try of [`handoff_sleeper`] on CPU `x`: `Ok(true)` if H switched to B and came back
/// while B spun, `Ok(false)` if H's claim was refused.
fn handoff_try(me: u32, x: u32) -> Result<bool, alloc::string::String> {
    HB_TARGET.store(0, Ordering::Release);
    HB_GO.store(false, Ordering::Release);
    HB_DONE.store(false, Ordering::Release);
    HH_DEADLINE.store(0, Ordering::Release);
    HH_BACK.store(0, Ordering::Release);
    let spawn = |f, arg| {
        Builder::new()
            .pin(x)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    let rings0 = sleeper_rings();
    let mut tids: Vec<Tid> = Vec::new();
    let r = (|| -> TestResult {
        let b = spawn(hb_target, u64::from(x))?;
        tids.push(b);
        HB_TARGET.store(b.raw(), Ordering::Release);
        wait_for("B to block", 10_000, || sched::is_blocked(b))?;
        others_halted(&[me, x])?;
        tids.push(spawn(hh_caller, u64::from(x))?);
        // Busy, not asleep: this CPU must not watch x itself.
        busy_until_back(&HH_BACK, &HB_DONE, rdtsc() + ms(2 * WINDOW_MS));
        Ok(())
    })();
    // B let go if H never claimed it.
    HB_GO.store(true, Ordering::Release);
    if let Some(&b) = tids.first() {
        sched::wake(b);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    r?;
    let codes = codes?;
    if codes[1] == 4 {
        return Ok(false);
    }
    check(codes[0] == 0 && codes[1] <= 1, || {
        format!("thread codes {codes:?} (B, H)")
    })?;
    let late = HH_BACK
        .load(Ordering::Acquire)
        .saturating_sub(HH_DEADLINE.load(Ordering::Acquire));
    check(codes[1] == 0, || {
        format!(
            "H, blocked by a direct switch to B on CPU {x} with a deadline, came back only \
             when B stopped spinning ({} ms past its deadline; {} sleeper rings)",
            late / ms(1).max(1),
            sleeper_rings() - rings0
        )
    })?;
    Ok(true)
}

ktest!(
    Needs::Threads,
    "sched.due_sleeper_whose_switch_ran_a_posted_thread_is_woken_without_a_timer",
    posted_in_window
);
ktest!(
    Needs::Threads,
    "sched.due_sleeper_whose_switch_ran_a_thread_it_woke_is_woken_without_a_timer",
    woken_in_window
);

/// `posted_in_window` and `woken_in_window`: W (raw id), W may go on, W stopped spinning;
/// S is in its window (its sleeper listed, its switch not made), W was posted, S saw that
/// in its window; S's deadline (0: not yet), when its window ended, when it came back (0:
/// not yet).
static WW_TARGET: AtomicU64 = AtomicU64::new(0);
static WW_GO: AtomicBool = AtomicBool::new(false);
static WW_DONE: AtomicBool = AtomicBool::new(false);
static WS_IN: AtomicBool = AtomicBool::new(false);
static WS_POSTED: AtomicBool = AtomicBool::new(false);
static WS_SAW_POST: AtomicBool = AtomicBool::new(false);
static WS_DEADLINE: AtomicU64 = AtomicU64::new(0);
static WS_SWITCH: AtomicU64 = AtomicU64::new(0);
static WS_BACK: AtomicU64 = AtomicU64::new(0);

/// `ws_sleeper`'s argument: S wakes W itself in its window (else the test posts it).
const SELF_WAKE: u64 = 1 << 16;

/// W: pinned to CPU `x`, blocks until made ready in S's window (or let go), then spins
/// (never blocking or yielding) until S is back or [`WINDOW_MS`] passed; 0, 3 if it did not
/// run on x.
fn ww_spinner(x: u64) -> u64 {
    gated_spinner(x, &WW_GO, &WS_BACK, &WW_DONE)
}

/// S: pinned to CPU `arg & 0xffff`, waits with a deadline 20 ms ahead (`block_until`, which
/// nothing else ends); its condition, which runs once its sleeper is listed, interrupts
/// off, before its switch, holds it there until W is ready on x: made so by S itself with
/// [`SELF_WAKE`] (queued on x directly), else by the test (posted to x's mailbox; x's wake
/// IPI waits, its interrupts off), or 1 s passed. 0 if it came back while W still spun, 1
/// if only after, 3 if it did not run on x, 5 if its wait ended before its deadline.
fn ws_sleeper(arg: u64) -> u64 {
    if sched::this_cpu() != (arg & 0xffff) as u32 {
        return 3;
    }
    let d = rdtsc() + ms(20);
    WS_DEADLINE.store(d, Ordering::Release);
    let timed_out = sched::block_until(d, || {
        if arg & SELF_WAKE != 0 {
            WW_GO.store(true, Ordering::Release);
            sched::wake(Tid::from_raw(WW_TARGET.load(Ordering::Acquire)));
            WS_SAW_POST.store(true, Ordering::Release);
        } else {
            WS_IN.store(true, Ordering::Release);
            let until = rdtsc() + ms(1000);
            while !WS_POSTED.load(Ordering::Acquire) && rdtsc() < until {
                core::hint::spin_loop();
            }
            WS_SAW_POST.store(WS_POSTED.load(Ordering::Acquire), Ordering::Release);
        }
        WS_SWITCH.store(rdtsc().max(1), Ordering::Release);
        true
    });
    let spinning = !WW_DONE.load(Ordering::Acquire);
    WS_BACK.store(rdtsc().max(1), Ordering::Release);
    if !timed_out {
        return 5;
    }
    u64::from(!spinning)
}

/// A thread that lists itself as a sleeper on a CPU with nothing else to run, and whose
/// switch then runs a thread posted to that CPU's mailbox meanwhile (no idle step between),
/// is woken at its deadline without a timer, while that thread runs CPU-bound. W, pinned
/// to CPU x, blocks; every other CPU but this one is halted, and this thread busy-waits;
/// S, pinned to x, waits 20 ms (`block_until`) and its condition, past its sleeper's add,
/// holds it until this thread has woken W (posted to x's mailbox); S's switch drains W
/// and runs it; W spins up to [`WINDOW_MS`]. Only a halted CPU recruited to watch x can
/// wake S in time: S must come back while W still spins. Until 2026-12-06 only the
/// sleeper's add recruited a watcher, if x's run queue held a thread then (found by
/// review; without the fix S reports 1, back only once W stopped). A try whose switch
/// came after S's deadline, or before W was posted (a slow host: nothing forced), is made
/// again, at most 5 times. Needs 3 CPUs (this one, x, a watcher).
fn posted_in_window(_: &BootState) -> TestResult {
    window_test(false)
}

/// As [`posted_in_window`], S's condition waking W itself: W is queued on x directly (the
/// path of a wake-up onto its own CPU, or through a full mailbox), and S's switch runs it.
/// Until 2026-12-06 no watcher either (found by review; without the fix S reports 1).
fn woken_in_window(_: &BootState) -> TestResult {
    window_test(true)
}

fn window_test(self_wake: bool) -> TestResult {
    timer_off_tries(
        "each S's switch made after its deadline or before W was \
         posted: nothing was forced",
        |me, x| window_try(self_wake, me, x),
    )
}

/// One try of [`window_test`] on CPU `x`: `Ok(true)` if S's switch ran W (posted or woken
/// in S's window) before S's deadline and S came back while W spun, `Ok(false)` if
/// nothing was forced.
fn window_try(self_wake: bool, me: u32, x: u32) -> Result<bool, alloc::string::String> {
    WW_TARGET.store(0, Ordering::Release);
    for f in [&WW_GO, &WW_DONE, &WS_IN, &WS_POSTED, &WS_SAW_POST] {
        f.store(false, Ordering::Release);
    }
    for v in [&WS_DEADLINE, &WS_SWITCH, &WS_BACK] {
        v.store(0, Ordering::Release);
    }
    let spawn = |f, arg| {
        Builder::new()
            .pin(x)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    let rings0 = sleeper_rings();
    let mut tids: Vec<Tid> = Vec::new();
    let r = (|| -> TestResult {
        let w = spawn(ww_spinner, u64::from(x))?;
        tids.push(w);
        WW_TARGET.store(w.raw(), Ordering::Release);
        wait_for("W to block", 10_000, || sched::is_blocked(w))?;
        others_halted(&[me, x])?;
        let arg = u64::from(x) | if self_wake { SELF_WAKE } else { 0 };
        tids.push(spawn(ws_sleeper, arg)?);
        if !self_wake {
            wait_for("S in its window", 10_000, || WS_IN.load(Ordering::Acquire))?;
            WW_GO.store(true, Ordering::Release);
            check(sched::wake(w), || "W was not blocked".into())?;
            WS_POSTED.store(true, Ordering::Release);
        }
        // Busy, not asleep: this CPU must not watch x itself.
        busy_until_back(&WS_BACK, &WW_DONE, rdtsc() + ms(2 * WINDOW_MS));
        Ok(())
    })();
    // W let go if it was never woken.
    WW_GO.store(true, Ordering::Release);
    WS_POSTED.store(true, Ordering::Release);
    if let Some(&w) = tids.first() {
        sched::wake(w);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    r?;
    let codes = codes?;
    check(codes[0] == 0 && matches!(codes[1], 0 | 1 | 5), || {
        format!("thread codes {codes:?} (W, S)")
    })?;
    let switch = WS_SWITCH.load(Ordering::Acquire);
    let deadline = WS_DEADLINE.load(Ordering::Acquire);
    if !WS_SAW_POST.load(Ordering::Acquire) || switch == 0 || switch >= deadline {
        return Ok(false);
    }
    let late = WS_BACK.load(Ordering::Acquire).saturating_sub(deadline);
    check(codes[1] == 0, || {
        format!(
            "S, whose switch ran W ({}) on CPU {x} with S's 20 ms deadline listed, came back \
             only when W stopped spinning (code {}, {} ms past its deadline; {} sleeper rings)",
            if self_wake {
                "woken by S in its window"
            } else {
                "posted to x's mailbox in S's window"
            },
            codes[1],
            late / ms(1).max(1),
            sleeper_rings() - rings0
        )
    })?;
    Ok(true)
}

ktest!(
    Needs::Threads,
    "sched.due_sleeper_behind_one_woken_from_idle_is_woken_without_a_timer",
    behind_idle_woken
);

/// `behind_idle_woken`: A's and B's deadlines; A is spinning (when it started, 0: not yet),
/// A stopped; when B came back (0: not yet).
static IA_DEADLINE: AtomicU64 = AtomicU64::new(0);
static IB_DEADLINE: AtomicU64 = AtomicU64::new(0);
static IA_START: AtomicU64 = AtomicU64::new(0);
static IA_DONE: AtomicBool = AtomicBool::new(false);
static IB_BACK: AtomicU64 = AtomicU64::new(0);

/// A: pinned to CPU `x`, sleeps until its deadline, then spins (never blocking or yielding)
/// until B is back or [`WINDOW_MS`] passed; 0, 3 if it did not run on x.
fn ia_spinner(x: u64) -> u64 {
    sched::sleep_until(IA_DEADLINE.load(Ordering::Acquire));
    IA_START.store(rdtsc().max(1), Ordering::Release);
    let on_x = sched::this_cpu() == x as u32;
    let d = rdtsc() + ms(WINDOW_MS);
    while IB_BACK.load(Ordering::Acquire) == 0 && rdtsc() < d {
        core::hint::spin_loop();
    }
    IA_DONE.store(true, Ordering::Release);
    if on_x { 0 } else { 3 }
}

/// B: pinned to CPU `x`, sleeps until its deadline; 0 if it came back while A still spun,
/// 1 if only after, 3 if it did not run on x.
fn ib_sleeper(x: u64) -> u64 {
    if sched::this_cpu() != x as u32 {
        return 3;
    }
    sched::sleep_until(IB_DEADLINE.load(Ordering::Acquire));
    let spinning = !IA_DONE.load(Ordering::Acquire);
    IB_BACK.store(rdtsc().max(1), Ordering::Release);
    u64::from(!spinning)
}

/// A sleeper left on a CPU whose idle step leaves for another sleeper that fell due is
/// woken at its deadline without a timer, while the one woken runs CPU-bound. A and B,
/// pinned to CPU x, sleep there (A until 1 s from the start, B 20 ms longer); x, idle,
/// polls for them; every other CPU but this one is halted, and this thread busy-waits.
/// x's idle step wakes A at its deadline, and A spins up to [`WINDOW_MS`]: only a halted
/// CPU recruited to watch x can wake B in time, and B must come back while A still spins.
/// Until 2026-12-06 an idle step that left for a due sleeper recruited no watcher (found
/// by review; without the fix B reports 1, back only once A stopped). A try whose other
/// CPUs halted only after A's deadline, or whose A ran only after B's (a slow host:
/// nothing forced), is made again, at most 5 times. Needs 3 CPUs (this one, x, a watcher).
fn behind_idle_woken(_: &BootState) -> TestResult {
    timer_off_tries(
        "each A woken only after B's deadline or with CPUs awake: \
         nothing was forced",
        behind_idle_try,
    )
}

/// One try of [`behind_idle_woken`] on CPU `x`: `Ok(true)` if every other CPU halted
/// before A's deadline, A ran on x before B's and B came back while A spun, `Ok(false)`
/// if nothing was forced.
fn behind_idle_try(me: u32, x: u32) -> Result<bool, alloc::string::String> {
    let a_at = rdtsc() + ms(crate::harness::slack_ms(1000));
    let b_at = a_at + ms(20);
    IA_DEADLINE.store(a_at, Ordering::Release);
    IB_DEADLINE.store(b_at, Ordering::Release);
    IA_START.store(0, Ordering::Release);
    IA_DONE.store(false, Ordering::Release);
    IB_BACK.store(0, Ordering::Release);
    let spawn = |f| {
        Builder::new()
            .pin(x)
            .spawn(f, u64::from(x))
            .map_err(|e| format!("spawn: {e}"))
    };
    let rings0 = sleeper_rings();
    let mut tids: Vec<Tid> = Vec::new();
    let mut halted_at = u64::MAX;
    let r = (|| -> TestResult {
        for f in [ia_spinner as fn(u64) -> u64, ib_sleeper] {
            let t = spawn(f)?;
            tids.push(t);
            wait_for("A and B to sleep", 10_000, || {
                sched::is_blocked(t) && sched::listed_as_sleeper(x, t)
            })?;
        }
        others_halted(&[me, x])?;
        halted_at = rdtsc();
        // Busy, not asleep: this CPU must not watch x itself.
        busy_until_back(&IB_BACK, &IA_DONE, b_at + ms(2 * WINDOW_MS));
        Ok(())
    })();
    let codes = join_all(&tids, 3 * WINDOW_MS);
    r?;
    let codes = codes?;
    check(codes[0] == 0 && codes[1] <= 1, || {
        format!("thread codes {codes:?} (A, B)")
    })?;
    let started = IA_START.load(Ordering::Acquire);
    if halted_at >= a_at || started == 0 || started >= b_at {
        return Ok(false);
    }
    let late = IB_BACK.load(Ordering::Acquire).saturating_sub(b_at);
    check(codes[1] == 0, || {
        format!(
            "B, asleep on CPU {x} behind A (woken by x's idle step 20 ms before B's \
             deadline, then spinning), came back only when A stopped ({} ms past its \
             deadline; {} sleeper rings)",
            late / ms(1).max(1),
            sleeper_rings() - rings0
        )
    })?;
    Ok(true)
}

ktest!(
    Needs::Threads,
    "sched.due_sleeper_whose_switch_ran_a_stolen_thread_is_woken_without_a_timer",
    stolen_in_window
);

/// `stolen_in_window`: P may go on, P runs, T runs on y free to run anywhere; x's switch
/// count in S's window (before its switch) and where T found it when it ran again (CPU,
/// count, when; 0: not yet); S's deadline and when it came back (0: not yet); T stopped
/// spinning; the test is over (P and T stop).
static PY_GO: AtomicBool = AtomicBool::new(false);
static PY_RUNS: AtomicBool = AtomicBool::new(false);
static TY_READY: AtomicBool = AtomicBool::new(false);
static ST_SW0: AtomicU64 = AtomicU64::new(0);
static ST_CPU: AtomicU32 = AtomicU32::new(u32::MAX);
static ST_SW1: AtomicU64 = AtomicU64::new(0);
static ST_START: AtomicU64 = AtomicU64::new(0);
static ST_DEADLINE: AtomicU64 = AtomicU64::new(0);
static ST_BACK: AtomicU64 = AtomicU64::new(0);
static ST_DONE: AtomicBool = AtomicBool::new(false);
static ST_STOP: AtomicBool = AtomicBool::new(false);

/// Spins (never blocking or yielding) until S is back, `done` (if given), the test is
/// over or `limit_ms` passed.
fn spin_until_s_back(done: Option<&AtomicBool>, limit_ms: u64) {
    let d = rdtsc() + ms(limit_ms);
    while ST_BACK.load(Ordering::Acquire) == 0
        && !done.is_some_and(|f| f.load(Ordering::Acquire))
        && !ST_STOP.load(Ordering::Acquire)
        && rdtsc() < d
    {
        core::hint::spin_loop();
    }
}

/// P: pinned to CPU `y`, blocks until let go, then spins there until S is back or T
/// stopped (y, idle again before that, would watch x itself); 0, 3 if it did not run on
/// y.
fn py_spinner(y: u64) -> u64 {
    while !PY_GO.load(Ordering::Acquire) {
        sched::block_unless(|| !PY_GO.load(Ordering::Acquire));
    }
    PY_RUNS.store(true, Ordering::Release);
    let on_y = sched::this_cpu() == y as u32;
    spin_until_s_back(Some(&ST_DONE), 3 * WINDOW_MS);
    if on_y { 0 } else { 3 }
}

/// T: started on CPU `y`, made free to run anywhere (it stays on y), spins until P is
/// queued there, then yields until P runs (at most 10 s in all): T is then queued on y
/// behind P, which never yields, and no halted CPU was told (a yield offers nothing). Not
/// a yield loop from the start: P's wake-up, taken on y while T was queued in one of its
/// yields, offered T to a halted CPU, which stole it (until 2026-12-06 most tries forced
/// nothing: 2 to 5 tries, or a skip; now the first, TCG -smp 4, 8, 64 and icount -smp 4).
/// Whoever runs it next took it from y: it notes where, x's switch count then and when,
/// and spins; 0, 2 if it could not widen its
/// affinity, 3 if it did not start on y.
fn ty_stolen(y: u64) -> u64 {
    if sched::set_affinity(CpuSet::ANY).is_err() {
        return 2;
    }
    if sched::this_cpu() != y as u32 {
        return 3;
    }
    TY_READY.store(true, Ordering::Release);
    let d = rdtsc() + ms(10_000);
    let ys = super::cpu::cpu_sched(y as u32);
    while ys.is_some_and(|s| s.nr_ready.load(Ordering::Relaxed) == 0)
        && !ST_STOP.load(Ordering::Acquire)
        && rdtsc() < d
    {
        core::hint::spin_loop();
    }
    while !PY_RUNS.load(Ordering::Acquire) && !ST_STOP.load(Ordering::Acquire) && rdtsc() < d {
        sched::yield_now();
    }
    let c = sched::this_cpu();
    let sw = sched::cpu_sched(c).map_or(0, |s| s.switches.load(Ordering::Acquire));
    ST_SW1.store(sw, Ordering::Release);
    ST_CPU.store(c, Ordering::Release);
    ST_START.store(rdtsc().max(1), Ordering::Release);
    spin_until_s_back(None, WINDOW_MS);
    ST_DONE.store(true, Ordering::Release);
    0
}

/// S: pinned to CPU `x`, waits with a deadline 20 ms ahead (`block_until`, which nothing
/// else ends), noting x's switch count in its window (its sleeper listed, its switch not
/// made); 0 if it came back while T still spun, 1 if only after, 3 if it did not run on
/// x, 5 if its wait ended before its deadline.
fn st_sleeper(x: u64) -> u64 {
    if sched::this_cpu() != x as u32 {
        return 3;
    }
    let Some(xs) = sched::cpu_sched(x as u32) else {
        return 3;
    };
    let d = rdtsc() + ms(20);
    ST_DEADLINE.store(d, Ordering::Release);
    let timed_out = sched::block_until(d, || {
        ST_SW0.store(xs.switches.load(Ordering::Acquire), Ordering::Release);
        true
    });
    let spinning = !ST_DONE.load(Ordering::Acquire);
    ST_BACK.store(rdtsc().max(1), Ordering::Release);
    if !timed_out {
        return 5;
    }
    u64::from(!spinning)
}

/// A thread that lists itself as a sleeper on a CPU with nothing queued, and whose switch
/// then steals a CPU-bound thread from another CPU and runs it, is woken at its deadline
/// without a timer (the steal case of the switch-time recruit, `idle::sleepers_left_for_work`).
/// P, pinned to CPU y, spins there; T (free to run anywhere) is queued on y behind it by a
/// yield, which tells no halted CPU; every other CPU but this one and y is halted (x too),
/// and this thread busy-waits; S, pinned to x, waits 20 ms (`block_until`): its switch
/// finds x's queue empty, steals T and runs it (x's switch count one past the one S saw
/// in its window: no idle step between), and T spins up to [`WINDOW_MS`]. Only a halted
/// CPU recruited by that switch can wake S in time: S must come back while T still spins
/// (without the recruit S reports 1, back only once T stopped). A try where T was taken by
/// another CPU, or ran on x only through x's idle step or after S's deadline (a slow host:
/// nothing forced), is made again, at most 5 times. Needs 4 CPUs (this one, x, y, a
/// watcher).
fn stolen_in_window(_: &BootState) -> TestResult {
    if ncpus() < 4 {
        return Err(format!(
            "{SKIP}needs 4 CPUs (this one busy, x, y, a halted one to watch x)"
        ));
    }
    timer_off_tries(
        "each T taken by another CPU, or run on x not by S's switch or after S's \
         deadline: nothing was forced",
        stolen_try,
    )
}

/// One try of [`stolen_in_window`] on CPU `x`: `Ok(true)` if S's switch stole T and ran it
/// before S's deadline and S came back while T spun, `Ok(false)` if nothing was forced.
fn stolen_try(me: u32, x: u32) -> Result<bool, alloc::string::String> {
    let Some(y) = (0..ncpus()).find(|&c| c != me && c != x) else {
        return Err(format!("{SKIP}no CPU y"));
    };
    for f in [&PY_GO, &PY_RUNS, &TY_READY, &ST_DONE, &ST_STOP] {
        f.store(false, Ordering::Release);
    }
    for v in [&ST_SW0, &ST_SW1, &ST_START, &ST_DEADLINE, &ST_BACK] {
        v.store(0, Ordering::Release);
    }
    ST_CPU.store(u32::MAX, Ordering::Release);
    let spawn = |f, cpu: u32| {
        Builder::new()
            .pin(cpu)
            .spawn(f, u64::from(cpu))
            .map_err(|e| format!("spawn: {e}"))
    };
    let rings0 = sleeper_rings();
    let mut tids: Vec<Tid> = Vec::new();
    let mut queued = false;
    let r = (|| -> TestResult {
        // Every balancing tick armed before the timer's emulation began has come: no CPU
        // but these wakes to take T from y before S's switch does.
        others_halted(&[me])?;
        let p = spawn(py_spinner, y)?;
        tids.push(p);
        wait_for("P to block", 10_000, || sched::is_blocked(p))?;
        tids.push(spawn(ty_stolen, y)?);
        wait_for("T to run on y", 10_000, || TY_READY.load(Ordering::Acquire))?;
        // P queued behind T (its wake-up preempts nobody), then T yields to it.
        sched::hold_wake_preemption(true);
        PY_GO.store(true, Ordering::Release);
        let woken = sched::wake(p);
        let d = rdtsc() + ms(10_000);
        while !PY_RUNS.load(Ordering::Acquire) && rdtsc() < d {
            sched::yield_now();
        }
        sched::hold_wake_preemption(false);
        check(woken, || "P was not blocked".into())?;
        queued = PY_RUNS.load(Ordering::Acquire);
        // Another CPU awake now may take T from y first (or has: T then notes where it
        // ran, and the wait ends at once): nothing forced this try.
        if !queued
            || others_halted_unless(&[me, y], || ST_CPU.load(Ordering::Acquire) != u32::MAX)
                .is_err()
        {
            queued = false;
            return Ok(());
        }
        tids.push(spawn(st_sleeper, x)?);
        // Busy, not asleep: this CPU must not watch x itself.
        busy_until_back(&ST_BACK, &ST_DONE, rdtsc() + ms(2 * WINDOW_MS));
        Ok(())
    })();
    sched::hold_wake_preemption(false);
    ST_STOP.store(true, Ordering::Release);
    PY_GO.store(true, Ordering::Release);
    if let Some(&p) = tids.first() {
        sched::wake(p);
    }
    let codes = join_all(&tids, 3 * WINDOW_MS);
    r?;
    let codes = codes?;
    if !queued || codes.len() < 3 {
        return Ok(false);
    }
    check(
        codes[0] == 0 && codes[1] == 0 && matches!(codes[2], 0 | 1 | 5),
        || format!("thread codes {codes:?} (P, T, S)"),
    )?;
    let deadline = ST_DEADLINE.load(Ordering::Acquire);
    let start = ST_START.load(Ordering::Acquire);
    let sw0 = ST_SW0.load(Ordering::Acquire);
    if ST_CPU.load(Ordering::Acquire) != x
        || sw0 == 0
        || ST_SW1.load(Ordering::Acquire) != sw0 + 1
        || start == 0
        || start >= deadline
    {
        return Ok(false);
    }
    let late = ST_BACK.load(Ordering::Acquire).saturating_sub(deadline);
    check(codes[2] == 0, || {
        format!(
            "S, whose switch on CPU {x} stole T from CPU {y} and ran it with S's 20 ms \
             deadline listed, came back only when T stopped spinning (code {}, {} ms past \
             its deadline; {} sleeper rings)",
            codes[2],
            late / ms(1).max(1),
            sleeper_rings() - rings0
        )
    })?;
    Ok(true)
}

/// `watcher_claimed_before_look`: how far CPU w's job got (0: not begun, 1: w marked
/// halted, 2: claimed by a watcher's recruit and a thread posted to it, 3: claimed
/// otherwise, or not in time); the job may end (the try forces nothing, or is over).
static CW_STAGE: AtomicU32 = AtomicU32::new(0);
static CW_END: AtomicBool = AtomicBool::new(false);
/// The spinner may go on; G may go on.
static CW_SP_GO: AtomicBool = AtomicBool::new(false);
static CW_G_GO: AtomicBool = AtomicBool::new(false);

/// Blocks until `go` (woken by the test), then runs `f(arg)` unless the try is over
/// (`CW_END`: 0 at once): a thread made ready by a wake-up, not a spawn (a spawn may
/// reclaim retired kernel tables, whose shootdown wakes every halted CPU: one would look
/// at x's sleepers by chance).
fn gated(go: &AtomicBool, f: fn(u64) -> u64, arg: u64) -> u64 {
    while !go.load(Ordering::Acquire) {
        sched::block_unless(|| !go.load(Ordering::Acquire));
    }
    if CW_END.load(Ordering::Acquire) {
        return 0;
    }
    f(arg)
}

fn cw_spinner(_: u64) -> u64 {
    gated(&CW_SP_GO, sp_spinner, 0)
}

fn cw_g(w: u64) -> u64 {
    gated(&CW_G_GO, cw_g_spinner, w)
}

/// G of [`watcher_claimed_before_look`]: as [`g_spinner`], but until S is back or the try
/// is over (`CW_END`), not for [`WINDOW_MS`]: w stays busy past the spinner's end, so its
/// look after G (which rings x) cannot come before x's own switch wakes S.
fn cw_g_spinner(w: u64) -> u64 {
    G_START.store(rdtsc().max(1), Ordering::Release);
    let on_w = sched::this_cpu() == w as u32;
    let d = rdtsc() + ms(3 * WINDOW_MS);
    while S_BACK.load(Ordering::Acquire) == 0 && !CW_END.load(Ordering::Acquire) && rdtsc() < d {
        core::hint::spin_loop();
    }
    if on_w { 0 } else { 3 }
}

/// The job of [`watcher_claimed_before_look`], in CPU `w`'s idle context (a mailbox
/// request, interrupts on: a wake IPI to the idle context does nothing until its loop's
/// next step): marks w halted, as its idle step does before it halts, and waits until a
/// CPU claims it; if that was a watcher's recruit (`watch_at` made 0; the job made it
/// `u64::MAX` first), also until a thread is posted to w (each wait cut short by
/// `CW_END`). Its loop's next idle step then finds that thread before it looks at any
/// sleeper.
fn halted_until_claimed(w: u64) -> u64 {
    let w = w as u32;
    let (Some(ws), Some(m)) = (sched::cpu_sched(w), super::idle::halted_mask()) else {
        CW_STAGE.store(3, Ordering::Release);
        return 0;
    };
    exo_arch::cpu::sti();
    ws.watch_at.store(u64::MAX, Ordering::Relaxed);
    m.set(w);
    CW_STAGE.store(1, Ordering::Release);
    let d = rdtsc() + ms(WINDOW_MS);
    let end = || CW_END.load(Ordering::Acquire) || rdtsc() >= d;
    while m.contains(w) && !end() {
        core::hint::spin_loop();
    }
    if !m.contains(w) && ws.watch_at.load(Ordering::Acquire) == 0 {
        CW_STAGE.store(2, Ordering::Release);
        while !ws.mailbox.is_pending() && !end() {
            core::hint::spin_loop();
        }
    } else {
        m.clear(w);
        ws.watch_at.store(0, Ordering::Relaxed);
        CW_STAGE.store(3, Ordering::Release);
    }
    exo_arch::cpu::cli();
    0
}

/// A halted CPU recruited to watch a busy CPU's sleepers that is given a thread before its
/// first look at them hands its watch on to another halted CPU. S, pinned to CPU x, sleeps
/// there [`FAR_MS`] beyond the watch window (x idle, polling for it; a second of slack for
/// what follows); CPU w, the first after x that x's recruit claims, is held in its idle
/// context marked halted (a mailbox request: `halted_until_claimed`), every other CPU but
/// this one halted; a spinner woken onto x makes x leave its idle loop and recruit w for
/// S's deadline (x's busy stretch: `idle::busy_with_sleepers`); G, pinned to w, is then
/// woken there, and w's idle step finds G before it looks at x (the interleaving of a
/// recruit and a wake-up that reach a halted CPU together). The spinner spins up to
/// [`WINDOW_MS`], G until the try is over, this thread busy-waits: only the halted CPU w
/// hands its watch on to, polling through the spinner's run, can wake S in time, and S
/// must come back while the spinner still spins (about WINDOW_MS - FAR_MS past its
/// deadline at the latest). The spinner and G are spawned first and woken then, and the
/// retired kernel tables reclaimed before: no spawn's reclaim wakes the halted CPUs with a
/// shootdown meanwhile (a CPU woken looks at x's sleepers: that, and G ending with the
/// spinner, hid the missing hand-on in a first version of this test). Until 2026-12-06 the
/// recruit was only told to look, and one claimed for work first never did (found by
/// review; without the fix S reports 1, back only once the spinner stopped). A try whose
/// spinner started only after S was due, or whose w was claimed by something else (a slow
/// host, a kernel thread's wake-up: nothing forced), is made again, at most 5 times. Needs
/// 4 CPUs (this one, x, w, one to hand on to).
fn watcher_claimed_before_look(_: &BootState) -> TestResult {
    if ncpus() < 4 {
        return Err(format!(
            "{SKIP}needs 4 CPUs (this one busy, x, a watcher, one to hand on to)"
        ));
    }
    timer_off_tries(
        "each spinner started only after S was due, or w was not claimed by x's recruit: \
         nothing was forced",
        claimed_try,
    )
}

/// One try of [`watcher_claimed_before_look`] on CPU `x`: `Ok(true)` if x's recruit
/// claimed w, G was posted to w before its look and the spinner ran on x before S was
/// due, and S came back while the spinner spun; `Ok(false)` if nothing was forced.
fn claimed_try(me: u32, x: u32) -> Result<bool, alloc::string::String> {
    // x's recruit claims the first halted CPU after x, wrapping; this one is busy.
    let n = ncpus();
    let Some(w) = (1..n).map(|k| (x + k) % n).find(|&c| c != me && c != x) else {
        return Err(format!("{SKIP}no CPU w"));
    };
    S_DEADLINE.store(0, Ordering::Release);
    S_BACK.store(0, Ordering::Release);
    S_ENDED.store(false, Ordering::Release);
    SP_START.store(0, Ordering::Release);
    SP_DONE.store(false, Ordering::Release);
    G_START.store(0, Ordering::Release);
    CW_STAGE.store(0, Ordering::Release);
    for f in [&CW_END, &CW_SP_GO, &CW_G_GO] {
        f.store(false, Ordering::Release);
    }
    let spawn = |f, cpu: u32, arg| {
        Builder::new()
            .pin(cpu)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    let rings0 = sleeper_rings();
    let mut tids: Vec<Tid> = Vec::new();
    let mut ticket = None;
    let r = (|| -> TestResult {
        // The spinner and G first, blocked: made ready later by wake-ups, not spawns.
        let sp = spawn(cw_spinner, x, 0)?;
        tids.push(sp);
        let g = spawn(cw_g, w, u64::from(w))?;
        tids.push(g);
        wait_for("the spinner and G to block", 10_000, || {
            sched::is_blocked(sp) && sched::is_blocked(g)
        })?;
        // No retired kernel tables left for a reclaim (its shootdown wakes halted CPUs).
        crate::smp::tlb::reclaim_kernel_tables_waiting();
        others_halted(&[me, x])?;
        let job = crate::smp::cpus::post(exo_percpu::CpuId(w), halted_until_claimed, u64::from(w))
            .map_err(|e| format!("post: {e}"))?;
        ticket = Some(job);
        wait_for("w's job to mark it halted", 10_000, || {
            CW_STAGE.load(Ordering::Acquire) != 0
        })?;
        if CW_STAGE.load(Ordering::Acquire) != 1 {
            return Ok(());
        }
        let s = spawn(s_sleeper, x, u64::from(x) | PINNED | FAR)?;
        tids.push(s);
        wait_for("S to sleep or end", 10_000, || {
            (S_DEADLINE.load(Ordering::Acquire) != 0 && sched::is_blocked(s))
                || S_ENDED.load(Ordering::Acquire)
        })?;
        if S_ENDED.load(Ordering::Acquire) {
            return Ok(());
        }
        CW_SP_GO.store(true, Ordering::Release);
        check(sched::wake(sp), || "the spinner was not blocked".into())?;
        wait_for("the spinner to start", 10_000, || {
            SP_START.load(Ordering::Acquire) != 0
        })?;
        // S woken by x itself before the spinner ran (a slow host): no recruit comes.
        if S_ENDED.load(Ordering::Acquire) {
            return Ok(());
        }
        wait_for("w to be claimed", WINDOW_MS + 5000, || {
            CW_STAGE.load(Ordering::Acquire) >= 2
        })?;
        if CW_STAGE.load(Ordering::Acquire) != 2 {
            return Ok(());
        }
        CW_G_GO.store(true, Ordering::Release);
        check(sched::wake(g), || "G was not blocked".into())?;
        wait_for("G to start", 10_000, || {
            G_START.load(Ordering::Acquire) != 0
        })?;
        // Busy, not asleep: this CPU must not watch x itself.
        busy_until_back(&S_BACK, &SP_DONE, rdtsc() + ms(2 * WINDOW_MS));
        Ok(())
    })();
    CW_END.store(true, Ordering::Release);
    for (k, go) in [&CW_SP_GO, &CW_G_GO].into_iter().enumerate() {
        go.store(true, Ordering::Release);
        if let Some(&t) = tids.get(k) {
            sched::wake(t);
        }
    }
    if let Some(t) = ticket {
        let _ = crate::smp::cpus::wait(t, crate::smp::time::Deadline::after_ms(WINDOW_MS + 5000));
    }
    // The spinner and G stop once S is back, or after WINDOW_MS.
    let codes = join_all(&tids, 3 * WINDOW_MS);
    r?;
    let codes = codes?;
    let started = SP_START.load(Ordering::Acquire);
    let deadline = S_DEADLINE.load(Ordering::Acquire);
    if codes.len() < 3
        || CW_STAGE.load(Ordering::Acquire) != 2
        || started == 0
        || started >= deadline
        || G_START.load(Ordering::Acquire) == 0
    {
        return Ok(false);
    }
    check(
        codes[0] == 0 && codes[1] == 0 && matches!(codes[2], 0 | 1),
        || format!("thread codes {codes:?} (the spinner, G, S)"),
    )?;
    let late = S_BACK.load(Ordering::Acquire).saturating_sub(deadline);
    check(codes[2] == 0, || {
        format!(
            "S, asleep on CPU {x} behind a spinner, came back only when the spinner stopped \
             (code {}, {} ms past its deadline; {} sleeper rings): CPU {w}, recruited to \
             watch x and given G before its look, handed its watch on to nobody",
            codes[2],
            late / ms(1).max(1),
            sleeper_rings() - rings0
        )
    })?;
    Ok(true)
}
