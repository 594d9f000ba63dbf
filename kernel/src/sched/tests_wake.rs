//! Kernel tests of wake-up preemption (`wake::wake_ipi`, the tick's same rule, the
//! deferral of a wake-up that comes before the running thread's floor or in code that
//! cannot be preempted): a thread W woken onto a CPU where a thread S spins must run while
//! S still spins. The tick's slice-end preemption is held off in every one of them, so
//! nothing but the wake-up rule can let W run before S stops. Beside them, the window of
//! `wake::wake_index` between its CAS and its post (`sched.wake_window_not_preemptible`).

use super::tests::use_timer;
use crate::boot::BootState;
use crate::harness::{Needs, SKIP, TestResult, check, join_all, ms, ncpus};
use crate::ktest;
use crate::sched::{self, Builder};
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;

ktest!(
    Needs::Threads,
    "sched.wake_ipi_preempts_a_spinning_thread",
    wake_preempts
);
ktest!(
    Needs::Threads,
    "sched.wake_through_a_full_mailbox_preempts_too",
    wake_full_mailbox
);
ktest!(
    Needs::Threads,
    "sched.wake_before_the_floor_is_deferred_not_forgotten",
    wake_deferred
);
ktest!(
    Needs::Threads,
    "sched.wake_deferred_is_applied_by_the_tick_it_armed",
    wake_deferred_tick
);
ktest!(
    Needs::Threads,
    "sched.self_wake_of_a_stealable_thread_is_offered_to_a_halted_cpu",
    self_wake_offered
);

/// `wake_preempts`: W may go on (set by the test), W ran, the spinner runs, the spinner
/// stopped spinning; the TSC of the wake-up and of W's start.
static WP_GO: AtomicBool = AtomicBool::new(false);
/// The wake-up was made (set once `sched::wake` returned): the spinner's count starts.
static WP_SENT: AtomicBool = AtomicBool::new(false);
static WP_W_RAN: AtomicBool = AtomicBool::new(false);
static WP_SPINNING: AtomicBool = AtomicBool::new(false);
static WP_S_DONE: AtomicBool = AtomicBool::new(false);
static WP_WOKEN_AT: AtomicU64 = AtomicU64::new(0);
static WP_W_AT: AtomicU64 = AtomicU64::new(0);
/// S first spins this long inside a preemption guard (TSC ticks; 0: none), and records when
/// that ended (CPU x's clock).
static WP_GUARD_TSC: AtomicU64 = AtomicU64::new(0);
static WP_GUARD_END: AtomicU64 = AtomicU64::new(0);
/// How long S spins at most (ms; 0: 2000).
static WP_SPIN_MS: AtomicU64 = AtomicU64::new(0);

/// W: blocks (no deadline) until the test lets it go; 0 if it then ran while the spinner
/// was still spinning, 1 if only after.
fn wp_woken(_: u64) -> u64 {
    while !WP_GO.load(Ordering::Acquire) {
        sched::block_unless(|| !WP_GO.load(Ordering::Acquire));
    }
    WP_W_AT.store(rdtsc(), Ordering::Release);
    let spinning = !WP_S_DONE.load(Ordering::Acquire);
    WP_W_RAN.store(true, Ordering::Release);
    u64::from(!spinning)
}

/// S: spins (preemptible, no call into the scheduler; the first `WP_GUARD_TSC` ticks inside
/// a preemption guard) until W has run or S has spun 2 s (`WP_SPIN_MS`) since it first saw
/// the wake-up made (`WP_SENT`, set once `sched::wake` returned; `WP_GO`, which lets W go,
/// comes before it); 0 if it saw W run, 1 if not.
/// Counted from the wake-up, not from S's start (until 2026-12-06): a host that stalled
/// the test's CPU for S's whole spin between S's start and the wake-up (seen at -smp 64 on
/// a loaded 2-core host: S had ended 0.3 ms before W was woken) made W run after S, a
/// false failure of the rule ("neither applied nor deferred").
fn wp_spinner(_: u64) -> u64 {
    let spin = ms(match WP_SPIN_MS.load(Ordering::Acquire) {
        0 => 2000,
        n => n,
    });
    let mut go_at = None;
    let guard = WP_GUARD_TSC.load(Ordering::Acquire);
    if guard != 0 {
        // The wake-up comes while S cannot be preempted (it is told S spins only now).
        let _g = exo_percpu::PreemptGuard::new();
        WP_SPINNING.store(true, Ordering::Release);
        let end = rdtsc() + guard;
        while rdtsc() < end {
            note_go(&WP_SENT, &mut go_at);
            core::hint::spin_loop();
        }
        WP_GUARD_END.store(rdtsc(), Ordering::Release);
    }
    WP_SPINNING.store(true, Ordering::Release);
    let mut saw = spin_after_go(&WP_W_RAN, &WP_SENT, go_at, spin);
    // S gives the CPU up by no means of its own: W having run at all (even past the bound,
    // once S was preempted at its end) means a preemption let it.
    saw |= WP_W_RAN.load(Ordering::Acquire);
    WP_S_DONE.store(true, Ordering::Release);
    u64::from(!saw)
}

/// Records in `go_at` when `go` was first seen set (this CPU's clock).
#[inline(always)]
fn note_go(go: &AtomicBool, go_at: &mut Option<u64>) {
    if go_at.is_none() && go.load(Ordering::Acquire) {
        *go_at = Some(rdtsc());
    }
}

/// A spinner's loop (preemptible, never calling the scheduler): until `ran` is set, or the
/// spinner has spun `spin` TSC ticks since `go` was first seen set (`go_at`, if it already
/// was), or 60 s if `go` never is (every test sets it, on its error paths too); whether
/// `ran` was seen. A gap of over 10 ms between two turns of the loop (its vCPU kept off its
/// host core, or the thread preempted by something else than the thread it waits for) is
/// not counted: until 2026-12-06 a host stall of about 2 s after the wake-up, of this vCPU
/// and of the timer that would apply a deferred one, could end the count before the
/// wake-up had had any running time to preempt in (found by an audit for host-speed
/// failures).
fn spin_after_go(ran: &AtomicBool, go: &AtomicBool, mut go_at: Option<u64>, spin: u64) -> bool {
    let bound = rdtsc() + ms(60_000);
    let gap = ms(10);
    let mut last = rdtsc();
    loop {
        if ran.load(Ordering::Acquire) {
            return true;
        }
        note_go(go, &mut go_at);
        let now = rdtsc();
        if now.saturating_sub(last) > gap
            && let Some(t) = go_at.as_mut()
        {
            *t += now - last;
        }
        last = now;
        if now >= bound || go_at.is_some_and(|t| now >= t + spin) {
            return ran.load(Ordering::Acquire);
        }
        core::hint::spin_loop();
    }
}

/// A thread woken onto a CPU where another thread spins runs while that one still spins:
/// the wake-up preempts (`sched::wake_ipi`, or the tick's same rule when the tick drains
/// the mailbox first). W (pinned to the last CPU) blocks; S (pinned there too) spins for up
/// to 2 s, never blocking or yielding; once S has run for a whole slice (past the wake-up
/// preemption's floor, a quarter slice), CPU 0 wakes W. W must run, and S see it, before
/// S's 2 s are over. It cannot pass without the wake-up preemption: the tick's slice-end
/// preemption is held off for the test (`sched::hold_tick_preemption`; under icount there
/// is no tick at all), W is pinned (no other CPU may steal it), and S gives the CPU up by
/// no other means, so W waits in the run queue or the mailbox until S returns after 2 s.
/// Seen with the IPI's call and the tick's rule taken out: both report 1, W ran 2 s after
/// its wake-up (TCG -smp 4, and icount -smp 2, where the IPI alone does it: 1,202 TSC
/// ticks with it). Needs 2 CPUs.
fn wake_preempts(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let x = ncpus() - 1;
    // CPU x's own count (another CPU's wake-up preemption would not do).
    let preemptions_on = |c| sched::wake_state(c).map_or(0, |w| w[5]);
    let p0 = preemptions_on(x);
    let run = wake_onto_spinner(x, sched::slice_tsc(), 0, false)?;
    let p1 = preemptions_on(x);
    let lat = run.w_at.saturating_sub(run.woken_at);
    check(run.codes == [0, 0], || {
        format!(
            "W (code {}) ran only once S (code {}) stopped spinning on CPU {x}: not preempted by the wake-up ({lat} TSC ticks after it)",
            run.codes[0], run.codes[1]
        )
    })?;
    check(p1 > p0, || {
        format!("no wake-up preemption counted on CPU {x}")
    })?;
    crate::kprintln!(
        "INFO,sched.wake_preempt,cpu,{x},latency_tsc,{lat},slice_tsc,{}",
        sched::slice_tsc()
    );
    Ok(())
}

/// What [`wake_onto_spinner`] saw: the exit codes of W and S, the TSC of the wake-up (this
/// CPU's clock) and of W's start (CPU x's), how long S had run when W was woken, and when it
/// was switched in (CPU x's `ran_since`, x's clock: what the wake-up rule compares with).
struct WakeRun {
    codes: Vec<u64>,
    woken_at: u64,
    w_at: u64,
    s_ran: u64,
    s_in: u64,
}

/// One run of the wake-up preemption tests on CPU `x`: W (pinned there) blocks; S (pinned
/// there too) spins for up to 2 s, never blocking or yielding, with the tick's slice-end
/// preemption held; `settle` TSC ticks after S started spinning, this thread wakes W. If W
/// has not run `report_after` + 300 ms after the wake-up while S still spins, CPU x's state
/// then and at the wake-up is printed, with `sched::dump` (the diagnosis of a rare failure
/// seen in session 20). `full`: the wake-up takes the full-mailbox path
/// (`sched::force_mailbox_full`, on for the wake-up alone).
fn wake_onto_spinner(
    x: u32,
    settle: u64,
    report_after: u64,
    full: bool,
) -> Result<WakeRun, alloc::string::String> {
    for f in [&WP_GO, &WP_SENT, &WP_W_RAN, &WP_SPINNING, &WP_S_DONE] {
        f.store(false, Ordering::Release);
    }
    let spawn = |f| {
        Builder::new()
            .pin(x)
            .spawn(f, 0)
            .map_err(|e| format!("spawn: {e}"))
    };
    let w = spawn(wp_woken)?;
    sched::hold_tick_preemption(true);
    let mut tids = alloc::vec![w];
    let (mut s_ran, mut s_in) = (0, 0);
    let r = (|| -> TestResult {
        crate::harness::wait_for("W to block", 10_000, || sched::is_blocked(w))?;
        tids.push(spawn(wp_spinner)?);
        crate::harness::wait_for("S to spin", 10_000, || WP_SPINNING.load(Ordering::Acquire))?;
        let until = rdtsc() + settle;
        while rdtsc() < until {
            sched::yield_now();
        }
        WP_GO.store(true, Ordering::Release);
        let before = sched::wake_state(x).unwrap_or_default();
        s_ran = before[1];
        s_in = before[8];
        WP_WOKEN_AT.store(rdtsc(), Ordering::Release);
        sched::force_mailbox_full(full);
        let woke = sched::wake(w);
        sched::force_mailbox_full(false);
        WP_SENT.store(true, Ordering::Release);
        check(woke, || "W was not blocked".into())?;
        let d = rdtsc() + report_after + ms(300);
        while !WP_W_RAN.load(Ordering::Acquire) && !WP_S_DONE.load(Ordering::Acquire) && rdtsc() < d
        {
            sched::sleep_us(1000);
        }
        if !WP_W_RAN.load(Ordering::Acquire) {
            crate::kprintln!(
                "INFO,sched.wake_preempt,stuck,cpu,{x},w,{w},at_wake,{before:?},now,{:?}",
                sched::wake_state(x)
            );
            sched::dump();
        }
        Ok(())
    })();
    if r.is_err() {
        WP_GO.store(true, Ordering::Release);
        sched::wake(w);
        WP_SENT.store(true, Ordering::Release);
    }
    let codes = join_all(&tids, 10_000);
    sched::hold_tick_preemption(false);
    r?;
    Ok(WakeRun {
        codes: codes?,
        woken_at: WP_WOKEN_AT.load(Ordering::Acquire),
        w_at: WP_W_AT.load(Ordering::Acquire),
        s_ran,
        s_in,
    })
}

/// A wake-up through the full-mailbox path (`post_wake` queues W under CPU x's lock and rings
/// it: the mailbox stays empty) preempts like any other: W, woken onto CPU x once S has spun
/// there for a slice, runs while S still spins. Until 2026-12-05 the IPI's handler and the
/// tick looked at the mailbox alone and found nothing to do: W waited for as long as S ran
/// (the tick's slice-end preemption is held, as in the test above). Needs 2 CPUs.
fn wake_full_mailbox(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let x = ncpus() - 1;
    let run = wake_onto_spinner(x, sched::slice_tsc(), 0, true)?;
    check(run.codes == [0, 0], || {
        format!(
            "W (code {}) ran only once S (code {}) stopped spinning on CPU {x}: a wake-up through the full-mailbox path did not preempt",
            run.codes[0], run.codes[1]
        )
    })?;
    crate::kprintln!(
        "INFO,sched.wake_full_mailbox,cpu,{x},latency_tsc,{}",
        run.w_at.saturating_sub(run.woken_at)
    );
    Ok(())
}

/// A wake-up that comes before the running thread has run its floor (a quarter slice; here
/// set to 200 ms so the wake-up surely comes first) is deferred, not forgotten: W, woken onto
/// CPU x right after S began spinning there, runs once S has run 200 ms, while S still spins
/// (the tick applies the rule again, armed for the floor's end: `wake::defer_wake`), and not
/// before. Until 2026-12-05 such a wake-up was dropped: W waited for the slice end, and with
/// the tick's slice-end preemption held (as here), for as long as S ran. A run whose wake-up
/// came after the floor anyway (a host stall of 200 ms) forces nothing and is tried again
/// (after 5 such tries the test is skipped, not failed, as `deferred_part`'s).
/// Needs 2 CPUs and the timer (under icount nothing ticks: only the IPI applies the rule).
fn wake_deferred(s: &BootState) -> TestResult {
    let x = timed_target(s)?;
    let floor = ms(200);
    sched::set_wake_floor_tsc(floor);
    let r = (|| {
        for _ in 0..5 {
            let d0 = deferrals_on(x);
            let run = wake_onto_spinner(x, 0, floor, false)?;
            if deferrals_on(x) == d0 {
                // Nothing deferred on x: either the IPI came past the floor (a host stall:
                // W ran at once, nothing forced) or the wake-up was never looked at again.
                check(run.codes == [0, 0], || {
                    format!(
                        "W (code {}) ran only once S (code {}) stopped spinning on CPU {x}: the wake-up, {} TSC ticks into S's run (floor {floor}), was neither applied nor deferred",
                        run.codes[0], run.codes[1], run.s_ran
                    )
                })?;
                continue;
            }
            // Both W's start and S's switch-in are CPU x's clock (until 2026-12-05 the test
            // took S's switch-in from this CPU's, up to tens of microseconds late in a debug
            // kernel: a false failure in the stress loop).
            let s_in = run.s_in;
            check(run.codes == [0, 0], || {
                format!(
                    "W (code {}) ran only once S (code {}) stopped spinning on CPU {x}: the wake-up, {} TSC ticks into S's run (floor {floor}), was never applied",
                    run.codes[0], run.codes[1], run.s_ran
                )
            })?;
            check(run.w_at >= s_in + floor, || {
                format!(
                    "W ran {} TSC ticks into S's run, before the floor ({floor})",
                    run.w_at.saturating_sub(s_in)
                )
            })?;
            crate::kprintln!(
                "INFO,sched.wake_deferred,cpu,{x},woken_after_tsc,{},ran_after_tsc,{},floor_tsc,{floor}",
                run.s_ran,
                run.w_at.saturating_sub(s_in)
            );
            return Ok(());
        }
        Err(format!(
            "{SKIP}5 tries, each wake-up came past the 200 ms floor: the host stalled, nothing was forced"
        ))
    })();
    sched::set_wake_floor_tsc(0);
    r
}

/// The CPU the deferral tests spin on (the last), or why they are skipped: they need 2 CPUs
/// and the scheduler's timer (under icount nothing ticks: only the IPI applies the rule).
fn timed_target(s: &BootState) -> Result<u32, alloc::string::String> {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    if !use_timer(s) || sched::timer_mode() == "off" {
        return Err(format!(
            "{SKIP}no scheduler timer in this mode ({})",
            sched::timer_mode()
        ));
    }
    Ok(ncpus() - 1)
}

/// CPU `cpu`'s wake-up deferrals (`sched::wake_state`).
fn deferrals_on(cpu: u32) -> u64 {
    sched::wake_state(cpu).map_or(0, |w| w[9])
}

/// A deferred wake-up is looked at again by the tick `defer_wake` armed for it, and by the
/// tick's own deferral when that tick finds the code still not preemptible. The slice is set to
/// 8 s for the test (`sched::set_slice_tsc`) and S spins 4 s at most, so no slice-end tick
/// comes while S spins: only the deferral's ticks can apply the rule (4 s, not more: a one-shot
/// APIC timer counts at most `u32::MAX` ticks, 4.3 s at QEMU's 1 GHz, and a tick that early
/// applies the rule too: with a 6 s spin the test passed without the fix). Part 1: an 800 ms
/// floor (a sixteenth of the slice, the deferral's least delay, is 500 ms); the wake-up comes
/// right after S starts, is deferred, and W must run once S has run 800 ms, while S still
/// spins. Part 2: a 100 ms floor, but S spins its first 1.2 s in a preemption guard: the IPI
/// defers (the tick then comes a sixteenth of a slice later, 500 ms), that tick finds the guard
/// held and defers again (500 ms more, and once more), and W must run after the guard's end and
/// while S still spins. Until 2026-12-05 no test forced these ticks: with the kernel's 1 ms
/// slice the slice-end ticks applied the rule first (checked: with `defer_wake`'s timer write
/// taken out part 1 fails, and with the tick's deferral deadline taken out part 2 fails, W
/// running only once S stopped). The windows are wide (a host stall of 2 s still passes; review
/// found 400 ms too tight beside other QEMUs at -smp 64); a try whose wake-up came past the
/// floor or the guard forces nothing and is made again, and after 5 such tries the test is
/// skipped, not failed. Needs 2 CPUs and the timer.
fn wake_deferred_tick(s: &BootState) -> TestResult {
    let x = timed_target(s)?;
    let slice = sched::set_slice_tsc(ms(8000));
    WP_SPIN_MS.store(4000, Ordering::Release);
    let r = (|| {
        sched::set_wake_floor_tsc(ms(800));
        deferred_part(x, 0, ms(800), 1)?;
        sched::set_wake_floor_tsc(ms(100));
        deferred_part(x, ms(1200), ms(1200), 2)
    })();
    WP_SPIN_MS.store(0, Ordering::Release);
    sched::set_wake_floor_tsc(0);
    sched::set_slice_tsc(slice);
    r
}
/// One part of [`wake_deferred_tick`]: S spins on CPU x (its first `guard` ticks inside a
/// preemption guard), W is woken at once; W must run while S spins and not before
/// `not_before` ticks of S's run (nor inside the guard), with at least `deferrals` deferrals
/// counted on x (fewer: the wake-up came late, nothing was forced; tried again, 5 times, then
/// skipped).
fn deferred_part(x: u32, guard: u64, not_before: u64, deferrals: u64) -> TestResult {
    WP_GUARD_TSC.store(guard, Ordering::Release);
    let r = (|| {
        for _ in 0..5 {
            let d0 = deferrals_on(x);
            let run = wake_onto_spinner(x, 0, not_before, false)?;
            let d = deferrals_on(x) - d0;
            check(run.codes == [0, 0], || {
                format!(
                    "W (code {}) ran only once S (code {}) stopped spinning on CPU {x}: the wake-up, {} TSC ticks into S's run (guard {guard}, {d} deferrals), was not applied by a tick it armed",
                    run.codes[0], run.codes[1], run.s_ran
                )
            })?;
            if d < deferrals {
                continue;
            }
            let ran_after = run.w_at.saturating_sub(run.s_in);
            check(ran_after >= not_before, || {
                format!("W ran {ran_after} TSC ticks into S's run, before {not_before}")
            })?;
            if guard != 0 {
                let end = WP_GUARD_END.load(Ordering::Acquire);
                check(run.w_at >= end, || {
                    format!(
                        "W ran inside S's preemption guard ({} TSC ticks before its end)",
                        end - run.w_at
                    )
                })?;
            }
            crate::kprintln!(
                "INFO,sched.wake_deferred_tick,cpu,{x},guard_tsc,{guard},deferrals,{d},ran_after_tsc,{ran_after}"
            );
            return Ok(());
        }
        Err(format!(
            "{SKIP}5 tries, each wake-up came past the floor or the guard ({not_before} TSC ticks): the host stalled, nothing was forced"
        ))
    })();
    WP_GUARD_TSC.store(0, Ordering::Release);
    r
}

ktest!(
    Needs::Threads,
    "sched.wake_after_a_self_wake_still_preempts",
    wake_after_self_wake
);
ktest!(
    Needs::Threads,
    "sched.wake_window_not_preemptible",
    wake_window
);

/// `wake_after_self_wake`: T1 may go on, U may go on, U ran, R spins, R stopped spinning.
static SW_T1_GO: AtomicBool = AtomicBool::new(false);
static SW_U_GO: AtomicBool = AtomicBool::new(false);
/// U's wake-up was made (set once `sched::wake` returned): R's count starts.
static SW_U_SENT: AtomicBool = AtomicBool::new(false);
static SW_U_RAN: AtomicBool = AtomicBool::new(false);
static SW_R_SPINNING: AtomicBool = AtomicBool::new(false);
static SW_R_DONE: AtomicBool = AtomicBool::new(false);
/// U's id (raw) for the thread on CPU 0 that wakes it.
static SW_U: AtomicU64 = AtomicU64::new(0);

/// T1 and U: block (no deadline) until `go` is set; 0 if they then ran while R still spun
/// (U records that it ran).
fn sw_blocked(which: u64) -> u64 {
    let go = if which == 0 { &SW_T1_GO } else { &SW_U_GO };
    while !go.load(Ordering::Acquire) {
        sched::block_unless(|| !go.load(Ordering::Acquire));
    }
    let spinning = !SW_R_DONE.load(Ordering::Acquire);
    if which != 0 {
        SW_U_RAN.store(true, Ordering::Release);
    }
    u64::from(!spinning)
}

/// R: wakes T1 (`t1`: a thread of its own CPU, so a post to its own mailbox before the fix),
/// then spins (preemptible, never calling the scheduler) until U has run or 2 s passed; 0 if
/// it saw U run, 1 if not, 2 if T1 was not blocked. The 2 s count from U's wake-up
/// (`SW_U_SENT`, set once it was made), as `wp_spinner`'s.
fn sw_waker(t1: u64) -> u64 {
    SW_T1_GO.store(true, Ordering::Release);
    if !sched::wake(sched::Tid::from_raw(t1)) {
        SW_R_DONE.store(true, Ordering::Release);
        return 2;
    }
    SW_R_SPINNING.store(true, Ordering::Release);
    // 2 s from U's wake-up, not from here (see `wp_spinner`).
    let saw = spin_after_go(&SW_U_RAN, &SW_U_SENT, None, ms(2000));
    SW_R_DONE.store(true, Ordering::Release);
    u64::from(!saw)
}

/// On CPU 0: once R spins (and has run past the wake-up floor), wakes U (`SW_U`); returns
/// the wake IPIs counted on CPU `x` across the wake-up, shifted left by 8 (1: R never spun,
/// 2: U was not blocked).
fn sw_remote(x: u64) -> u64 {
    let (u, x) = (sched::Tid::from_raw(SW_U.load(Ordering::Acquire)), x as u32);
    if crate::harness::wait_for("R to spin", 10_000, || {
        SW_R_SPINNING.load(Ordering::Acquire)
    })
    .is_err()
    {
        return 1;
    }
    // Past R's floor (1 ms) on x: the wake-up IPI may preempt R at once.
    let until = rdtsc() + ms(5);
    while rdtsc() < until {
        sched::yield_now();
    }
    let ipis = |c| sched::wake_state(c).map_or(0, |w| w[4]);
    let i0 = ipis(x);
    SW_U_GO.store(true, Ordering::Release);
    let woke = sched::wake(u);
    SW_U_SENT.store(true, Ordering::Release);
    if !woke {
        return 2;
    }
    (ipis(x) - i0) << 8
}

/// A thread woken onto a CPU from another CPU preempts that CPU's running thread even when
/// that thread has just woken a thread of its own CPU. R (pinned to CPU x) wakes T1 (pinned
/// there, blocked), then spins up to 2 s from U's wake-up; a thread on CPU 0 then wakes U (pinned to x,
/// blocked). U must run, and R see it, while R still spins, and the wake-up must have sent
/// x a wake IPI. The slice is 4 s (`sched::set_slice_tsc`) and the tick's slice-end
/// preemption is held, so no tick comes to x while R spins (under icount nothing ticks at
/// all): only the wake IPI of U's wake-up can let U run before R stops. Until 2026-12-05
/// R's wake-up of T1 went to x's own mailbox and rang its doorbell with no IPI (a CPU does
/// not interrupt itself); the doorbell stayed set while R spun, U's wake-up found it set
/// and sent no IPI, and U ran only once R stopped, 2 s later: R reported 1, no IPI counted
/// (checked without the fix). The property does not depend on how fast the host runs: with
/// the fix U runs as soon as the IPI lands, without it never while R spins. The wake-up
/// floor is 1 ms, and CPU 0 wakes U 5 ms after R said it spins, so R is past it (under
/// icount nothing would look at a deferred wake-up again). Needs 2 CPUs.
fn wake_after_self_wake(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let x = ncpus() - 1;
    for f in [
        &SW_T1_GO,
        &SW_U_GO,
        &SW_U_SENT,
        &SW_U_RAN,
        &SW_R_SPINNING,
        &SW_R_DONE,
    ] {
        f.store(false, Ordering::Release);
    }
    let slice = sched::set_slice_tsc(ms(4000));
    sched::set_wake_floor_tsc(ms(1));
    sched::hold_tick_preemption(true);
    let spawn = |f, cpu, arg| {
        Builder::new()
            .pin(cpu)
            .spawn(f, arg)
            .map_err(|e| format!("spawn: {e}"))
    };
    let mut tids = Vec::new();
    let ticks = |c| sched::wake_state(c).map_or(0, |w| w[7]);
    let mut ticks_during = 0;
    let r = (|| -> TestResult {
        tids.push(spawn(sw_blocked, x, 0)?);
        tids.push(spawn(sw_blocked, x, 1)?);
        let (t1, u) = (tids[0], tids[1]);
        SW_U.store(u.raw(), Ordering::Release);
        crate::harness::wait_for("T1 and U to block", 10_000, || {
            sched::is_blocked(t1) && sched::is_blocked(u)
        })?;
        let k0 = ticks(x);
        tids.push(spawn(sw_waker, x, t1.raw())?);
        tids.push(spawn(sw_remote, 0, u64::from(x))?);
        crate::harness::wait_for("R to stop", 10_000, || SW_R_DONE.load(Ordering::Acquire))?;
        ticks_during = ticks(x) - k0;
        Ok(())
    })();
    if r.is_err() {
        SW_T1_GO.store(true, Ordering::Release);
        SW_U_GO.store(true, Ordering::Release);
        SW_U_SENT.store(true, Ordering::Release);
        for &t in &tids[..tids.len().min(2)] {
            sched::wake(t);
        }
    }
    let codes = join_all(&tids, 10_000);
    sched::hold_tick_preemption(false);
    sched::set_wake_floor_tsc(0);
    sched::set_slice_tsc(slice);
    r?;
    let codes = codes?;
    let (remote, ipis) = (codes[3] & 0xff, codes[3] >> 8);
    check(codes[2] != 2 && remote == 0, || {
        format!(
            "T1 or U was not blocked when woken (R {}, CPU 0 {remote})",
            codes[2]
        )
    })?;
    check(codes[1] == 0 && codes[2] == 0, || {
        format!(
            "U (code {}) ran only once R (code {}) stopped spinning on CPU {x}: its wake-up \
             from CPU 0 did not preempt R, which had woken T1 there ({ipis} wake IPIs to x \
             across U's wake-up, {ticks_during} ticks on x)",
            codes[1], codes[2]
        )
    })?;
    check(ipis > 0, || {
        format!("U's wake-up sent CPU {x} no wake IPI (U ran: {ticks_during} ticks on x)")
    })
}

fn wake_window(_: &BootState) -> TestResult {
    injected_test!(window::run, SKIP)
}

/// The window of `wake::wake_index` between its `Blocked -> Ready` CAS and its post, forced
/// (debug kernels: `inject::arm_wake_cas`). T (pinned to CPU 0) blocks with a deadline
/// (`block_until`, 20 ms); W (pinned to the last CPU) wakes it. Right after W's CAS, the
/// injection makes W stand there as if the tick had preempted it at that instruction (it
/// yields in a hold until the test releases it), but only if interrupts are on there: with
/// them off no preemption can come there, and W goes on to post T. T must come back
/// (woken, or by its deadline) before the test releases W, which it does only once T is
/// back or 500 ms after T's deadline. It is then blocked in a second wait and in no run
/// queue (queued once). The stall is one of a preemption, not of the host (a vCPU the host
/// stops there stops the post as well, and nothing in the kernel can help that): what the
/// test shows is that the window cannot be preempted, by what T sees. Until 2026-12-05 the
/// window had interrupts on: W stood preempted, T was Ready and in no run queue nor
/// mailbox, its CPU's sleeper scan dropped it (not Blocked), and it came back only when W
/// was released, 500 ms past its deadline (checked without the fix: the hold found
/// interrupts on and T was not back). A try whose wake-up came after T's deadline (W's CAS
/// lost, nothing forced) is made again, at most 5 times. Needs 2 CPUs.
#[cfg(debug_assertions)]
mod window {
    use crate::harness::{SKIP, TestResult, check, join_all, ms, ncpus, wait_for};
    use crate::sched::{self, Builder, Tid, inject};
    use alloc::format;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use exo_arch::tsc::rdtsc;

    /// T's deadline (0: not blocked yet), the TSC when it came back (0: not yet), and the
    /// end of the test (T's second wait).
    static DEADLINE: AtomicU64 = AtomicU64::new(0);
    static BACK: AtomicU64 = AtomicU64::new(0);
    static FINISH: AtomicBool = AtomicBool::new(false);

    /// T: blocks until woken or 20 ms pass, says when it came back, then waits (no deadline)
    /// for the test's end.
    fn sleeper(_: u64) -> u64 {
        let d = rdtsc() + ms(20);
        DEADLINE.store(d, Ordering::Release);
        sched::block_until(d, || true);
        BACK.store(rdtsc().max(1), Ordering::Release);
        while !FINISH.load(Ordering::Acquire) {
            sched::block_unless(|| !FINISH.load(Ordering::Acquire));
        }
        0
    }

    /// W: once T is blocked, wakes it; 0 if its wake-up won the CAS, 1 if T was no longer
    /// blocked (its deadline came first), 2 if T never blocked.
    fn waker(raw: u64) -> u64 {
        let t = Tid::from_raw(raw);
        if wait_for("T to block", 10_000, || {
            DEADLINE.load(Ordering::Acquire) != 0 && sched::is_blocked(t)
        })
        .is_err()
        {
            return 2;
        }
        u64::from(!sched::wake(t))
    }

    pub(super) fn run() -> TestResult {
        if ncpus() < 2 {
            return Err(format!("{SKIP}needs 2 CPUs"));
        }
        for _ in 0..5 {
            if try_once()? {
                return Ok(());
            }
        }
        Err(format!(
            "{SKIP}5 tries, each wake-up came after T's 20 ms deadline: nothing was forced"
        ))
    }

    /// One try: `Ok(true)` if the wake-up went through the window, `Ok(false)` if it lost
    /// the CAS to T's deadline (nothing forced).
    fn try_once() -> Result<bool, alloc::string::String> {
        DEADLINE.store(0, Ordering::Release);
        BACK.store(0, Ordering::Release);
        FINISH.store(false, Ordering::Release);
        let spawn = |f, cpu, arg| {
            Builder::new()
                .pin(cpu)
                .spawn(f, arg)
                .map_err(|e| format!("spawn: {e}"))
        };
        let t = spawn(sleeper, 0, 0)?;
        inject::arm_wake_cas(t.index());
        let r = (|| -> Result<u64, alloc::string::String> {
            let w = spawn(waker, ncpus() - 1, t.raw())?;
            wait_for("T to block", 10_000, || {
                DEADLINE.load(Ordering::Acquire) != 0
            })?;
            let d = DEADLINE.load(Ordering::Acquire);
            while BACK.load(Ordering::Acquire) == 0 && rdtsc() < d + ms(500) {
                sched::sleep_us(1000);
            }
            let back = BACK.load(Ordering::Acquire);
            let saw = inject::wake_cas_result();
            inject::disarm_wake_cas();
            let code = join_all(&[w], 10_000)?[0];
            if code != 0 {
                return Ok(code);
            }
            check(back != 0, || {
                format!(
                    "T came back only once its waker, stopped between its CAS and its post, was \
                     released, 500 ms past its deadline (the window had interrupts {})",
                    if saw == 2 { "on" } else { "off" }
                )
            })?;
            check(saw == 1, || {
                format!("the wake-up's window was reached with interrupts on or not at all ({saw})")
            })?;
            wait_for("T to block again", 10_000, || sched::is_blocked(t))?;
            check(!crate::sched::cpu::queued_on(0, t), || {
                "T, blocked again, is still queued on CPU 0: queued twice".into()
            })?;
            Ok(0)
        })();
        inject::disarm_wake_cas();
        FINISH.store(true, Ordering::Release);
        sched::wake(t);
        let joined = join_all(&[t], 10_000);
        let code = r?;
        joined?;
        match code {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err("T never blocked".into()),
        }
    }
}

/// `self_wake_offered`: W's thread id (raw), W may go on, the CPU W last blocked on.
static SW_W: AtomicU64 = AtomicU64::new(0);
static SW_GO: AtomicBool = AtomicBool::new(false);
static SW_W_CPU: AtomicU32 = AtomicU32::new(u32::MAX);

/// W: started on CPU x, made free to run anywhere (it stays on x: x is in the set, and the
/// test holds the tick's preemption), blocks until S lets it go.
fn sw_woken(_: u64) -> u64 {
    if sched::set_affinity(sched::CpuSet::ANY).is_err() {
        return 2;
    }
    while !SW_GO.load(Ordering::Acquire) {
        SW_W_CPU.store(sched::this_cpu(), Ordering::Release);
        sched::block_unless(|| !SW_GO.load(Ordering::Acquire));
    }
    0
}

/// S: on CPU x; once W blocks there, wakes W (a wake-up onto its own CPU: W is queued behind
/// S, stealable) and returns how many offers CPU x made meanwhile (`u64::MAX`: W did not
/// block, `u64::MAX - 1`: it blocked on another CPU). W is let go in every case. The count
/// is read with interrupts off, so no tick or IPI on x can add an offer of its own.
fn sw_self_waker(x: u64) -> u64 {
    let w = sched::Tid::from_raw(SW_W.load(Ordering::Acquire));
    let d = rdtsc() + ms(10_000);
    while !sched::is_blocked(w) && rdtsc() < d {
        core::hint::spin_loop();
    }
    let g = exo_percpu::IrqGuard::new();
    let blocked = sched::is_blocked(w) && sched::this_cpu() == x as u32;
    let there = SW_W_CPU.load(Ordering::Acquire) == x as u32;
    let before = super::cpu::offers(x as u32);
    SW_GO.store(true, Ordering::Release);
    let woke = sched::wake(w);
    let offered = super::cpu::offers(x as u32) - before;
    drop(g);
    match (blocked && woke, there) {
        (false, _) => u64::MAX,
        (true, false) => u64::MAX - 1,
        (true, true) => offered,
    }
}

/// A thread others may take, woken onto a CPU whose running thread goes on, is offered to
/// a halted CPU (`wake::offer_to_a_halted_cpu`: the kick of one, which steals it). W blocks
/// on CPU x, free to run anywhere; S, pinned to x, wakes it: W is queued behind S, and CPU
/// x must make one offer. Until 2026-12-05 nothing did (only a spawn and the tick): with
/// the timer off (icount, the benchmark jobs) and every other CPU halted, W waited for as
/// long as S ran (found by review). The end-to-end case needs every other CPU halted with
/// no sleeper to poll for, which the test job cannot arrange (a polling idle CPU steals W
/// by itself): the offer is what is checked (seen without it: 0 offers). Needs 2 CPUs.
fn self_wake_offered(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let x = ncpus() - 1;
    // The wake-up's own preemption would switch to W on CPU x (nothing left to offer); the
    // tick's would put W, running before it blocks, back on x's queue, where another CPU
    // could take it and W block there (S's wake-up then goes to that CPU: 0 offers on x;
    // seen possible by review, 2026-12-06). Should W still block elsewhere (a kernel thread
    // of x's preempting it), the try is made again, and after 5 the test is skipped.
    sched::hold_wake_preemption(true);
    sched::hold_tick_preemption(true);
    let r = (|| {
        for _ in 0..5 {
            SW_GO.store(false, Ordering::Release);
            SW_W_CPU.store(u32::MAX, Ordering::Release);
            let w = Builder::new()
                .pin(x)
                .spawn(sw_woken, 0)
                .map_err(|e| format!("spawn W: {e}"))?;
            SW_W.store(w.raw(), Ordering::Release);
            let codes = match Builder::new().pin(x).spawn(sw_self_waker, u64::from(x)) {
                Ok(s) => join_all(&[s, w], 30_000)?,
                Err(e) => {
                    SW_GO.store(true, Ordering::Release);
                    sched::wake(w);
                    let _ = join_all(&[w], 30_000);
                    return Err(format!("spawn S: {e}"));
                }
            };
            if codes[0] != u64::MAX - 1 {
                return Ok(Some(codes));
            }
        }
        Ok(None)
    })();
    sched::hold_tick_preemption(false);
    sched::hold_wake_preemption(false);
    let Some(codes) = r? else {
        return Err(format!(
            "{SKIP}W blocked on another CPU than {x} in 5 tries (nothing forced)"
        ));
    };
    check(codes == [1, 0], || {
        format!(
            "offers CPU {x} made for W, queued behind S: {} (want 1; u64::MAX: the set-up did not happen); W's code {} (2: its affinity)",
            codes[0], codes[1]
        )
    })
}
