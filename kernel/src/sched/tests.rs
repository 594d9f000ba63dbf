//! Kernel tests of threads and scheduling (`Needs::Threads`: the test job starts the
//! scheduler on every CPU first). Every wait has a deadline: a hang is a FAIL line.

use crate::boot::BootState;
use crate::sched::{self, Builder, CpuSet, Tid};
use crate::smp::cpus;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;

use crate::harness::{Needs, SKIP, TestResult, check, join_all, ms, ncpus};
use crate::ktest;

ktest!(
    Needs::Threads,
    "sched.panic_in_a_thread_s_end_stops_the_machine",
    panic_in_exit
);
ktest!(Needs::Threads, "sched.starts_on_every_cpu", starts);
ktest!(
    Needs::Threads,
    "sched.hold_point_rearmed_at_once_holds_only_the_next_call",
    hold_rearmed
);
ktest!(Needs::Threads, "sched.spawn_join_exit_codes", spawn_join);
ktest!(
    Needs::Threads,
    "sched.sleeper_blocked_again_without_deadline_leaves_the_list",
    sleeper_relisted
);
ktest!(
    Needs::Threads,
    "sched.sleeper_blocked_again_on_another_cpu_leaves_the_list",
    sleeper_moved
);
ktest!(
    Needs::Threads,
    "sched.inherit_affinity_without_memory_is_an_error",
    inherit_oom
);
ktest!(
    Needs::Threads,
    "sched.enter_user_refused_without_an_address_space",
    enter_user_without_space
);
ktest!(
    Needs::Threads,
    "sched.affinity_respected_and_migration",
    affinity
);
ktest!(
    Needs::Threads,
    "sched.work_stealing_reaches_every_cpu",
    stealing
);
ktest!(
    Needs::Threads,
    "sched.no_lost_wakeups_ping_pong_and_sleepers",
    no_lost_wakeups
);
ktest!(
    Needs::Threads,
    "sched.spinning_thread_is_preempted",
    preempted
);
ktest!(
    Needs::Threads,
    "sched.switches_leave_an_earlier_deadline_armed",
    lazy_timer
);
ktest!(
    Needs::Threads,
    "sched.burst_average_spinner_normal_yielder_hot",
    burst_classes
);
ktest!(
    Needs::Threads,
    "sched.fpu_state_survives_switches_lazy",
    fpu_lazy
);
ktest!(
    Needs::Threads,
    "sched.fpu_state_survives_switches_eager",
    fpu_eager
);
ktest!(
    Needs::Threads,
    "sched.fpu_user_thread_without_state_sees_none_of_the_last",
    fpu_scrub
);
ktest!(
    Needs::Threads,
    "sched.thread_table_exhaustion_is_an_error",
    exhaustion
);
ktest!(
    Needs::Threads,
    "sched.fpu_thread_taking_a_pid_keeps_its_own_registers",
    fpu_own_kept
);
ktest!(
    Needs::Threads,
    "sched.tick_leaves_a_non_preemptible_idle_context_alone",
    idle_not_preempted
);
ktest!(
    Needs::Threads,
    "sched.thread_switched_in_from_a_halt_unmarks_its_cpu",
    halted_mark_cleared
);

/// Whether the run uses a scheduler timer (not under icount).
pub(super) fn use_timer(s: &BootState) -> bool {
    s.opts.mode != Some(smp_bench::Mode::Icount)
}

/// The job started the scheduler (`harness::test`) before the first `Needs::Threads` test.
fn starts(_: &BootState) -> TestResult {
    let n = sched::cpus_running();
    check(n == ncpus(), || {
        format!("scheduler on {n} of {} CPUs", ncpus())
    })?;
    check(sched::current().is_some(), || "no current thread".into())?;
    crate::kprintln!(
        "INFO,sched,timer,{},fpu,{:?}",
        sched::timer_mode(),
        crate::sched::fpu::info().map(|i| (i.size, i.mechanism, i.fxsave_leak))
    );
    Ok(())
}

pub(super) fn worker(arg: u64) -> u64 {
    let mut x = arg;
    for k in 0..(arg % 7) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(k);
        sched::yield_now();
    }
    arg * arg + 1
}

fn spawn_join(_: &BootState) -> TestResult {
    let before = sched::live_threads();
    let n = (4 * ncpus()).clamp(8, 256) as u64;
    let mut tids = Vec::new();
    for a in 0..n {
        tids.push(sched::spawn(worker, a).map_err(|e| format!("spawn {a}: {e}"))?);
    }
    let codes = join_all(&tids, 20_000)?;
    for (a, c) in codes.iter().enumerate() {
        check(*c == (a * a + 1) as u64, || {
            format!("thread {a} returned {c}")
        })?;
    }
    check(
        sched::join(tids[0]) == Err(sched::SchedError::NoSuchThread),
        || "a reaped thread could be joined again".into(),
    )?;
    let after = sched::live_threads();
    check(after == before, || {
        format!("{before} threads alive before, {after} after")
    })
}

fn pinned_checker(cpu: u64) -> u64 {
    let mut wrong = 0;
    for k in 0..40 {
        if u64::from(sched::this_cpu()) != cpu {
            wrong += 1;
        }
        if k % 4 == 0 {
            sched::sleep_us(50);
        } else {
            sched::yield_now();
        }
    }
    wrong
}

fn set_checker(last: u64) -> u64 {
    let mut wrong = 0;
    for k in 0..40 {
        let c = u64::from(sched::this_cpu());
        if c != 0 && c != last {
            wrong += 1;
        }
        if k % 4 == 0 {
            sched::sleep_us(30);
        } else {
            sched::yield_now();
        }
    }
    wrong
}

fn migrator(to: u64) -> u64 {
    if sched::set_affinity(CpuSet::one(to as u32)).is_err() {
        return 1000;
    }
    let mut wrong = 0;
    for _ in 0..20 {
        if u64::from(sched::this_cpu()) != to {
            wrong += 1;
        }
        sched::yield_now();
    }
    wrong
}

fn affinity(_: &BootState) -> TestResult {
    let mut tids = Vec::new();
    for b in cpus::online() {
        let c = b.hot.cpu_id;
        for _ in 0..2 {
            tids.push(
                Builder::new()
                    .pin(c)
                    .spawn(pinned_checker, u64::from(c))
                    .map_err(|e| format!("spawn on CPU {c}: {e}"))?,
            );
        }
    }
    let last = ncpus() - 1;
    // A two-CPU set: the thread may run on either, never elsewhere.
    let mut pair = CpuSet::one(0);
    pair.try_insert(last)
        .map_err(|_| alloc::string::String::from("no memory for a CPU set"))?;
    for _ in 0..4 {
        tids.push(
            Builder::new()
                .affinity(pair.clone())
                .spawn(set_checker, u64::from(last))
                .map_err(|e| format!("spawn with a CPU set: {e}"))?,
        );
    }
    let m = Builder::new()
        .pin(0)
        .spawn(migrator, u64::from(last))
        .map_err(|e| format!("spawn migrator: {e}"))?;
    let codes = join_all(&tids, 20_000)?;
    let wrong: u64 = codes.iter().sum();
    check(wrong == 0, || {
        format!("{wrong} observations on a CPU outside the affinity")
    })?;
    let mw = join_all(&[m], 10_000)?[0];
    check(mw == 0, || {
        format!("after set_affinity to CPU {last}: {mw} of 20 observations elsewhere")
    })
}

/// CPUs a roamer ran on (one bit each, sized for the CPUs that exist), how many distinct
/// ones, and how many the test waits for.
static SEEN: spin::Once<&'static [AtomicU64]> = spin::Once::new();
static COVERED: AtomicU64 = AtomicU64::new(0);
static COVER_TARGET: AtomicU64 = AtomicU64::new(0);

/// Runs until roamers have been seen on `COVER_TARGET` CPUs (marking each CPU it runs on),
/// spinning a little and yielding between marks: threads move only when idle CPUs steal
/// them, so the test ends exactly when stealing has spread them (deterministic, however
/// fast the host); the deadline only catches a stealing bug.
fn roamer(_: u64) -> u64 {
    let deadline = rdtsc() + ms(60_000);
    let seen = SEEN.get().copied().unwrap_or(&[]);
    loop {
        let c = sched::this_cpu() as usize;
        if let Some(w) = seen.get(c / 64) {
            let bit = 1u64 << (c % 64);
            if w.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
                COVERED.fetch_add(1, Ordering::AcqRel);
            }
        }
        if COVERED.load(Ordering::Acquire) >= COVER_TARGET.load(Ordering::Acquire) {
            return 0;
        }
        if rdtsc() > deadline {
            return 1;
        }
        let until = rdtsc() + ms(1) / 5;
        while rdtsc() < until {
            core::hint::spin_loop();
        }
        sched::yield_now();
    }
}

fn stealing(_: &BootState) -> TestResult {
    let seen = *SEEN.call_once(|| {
        let words = cpus::capacity().div_ceil(64);
        alloc::boxed::Box::leak((0..words).map(|_| AtomicU64::new(0)).collect())
    });
    for w in seen {
        w.store(0, Ordering::Relaxed);
    }
    COVERED.store(0, Ordering::Relaxed);
    let (_, _, steals0, _) = sched::counters();
    // More roamers than CPUs, so some always wait in a queue until every CPU has one; past
    // ~680 CPUs the thread table (MAX_THREADS) cannot hold that many: then the roamers must
    // reach two thirds of their number of distinct CPUs.
    let free = sched::MAX_THREADS.saturating_sub(sched::live_threads() + 16);
    let n = (ncpus() as usize * 3 / 2 + 1).min(free).max(2);
    let target = (ncpus() as usize).min(n - n / 3);
    COVER_TARGET.store(target as u64, Ordering::Release);
    // All spawned from here (CPU 0): other CPUs only get them by stealing.
    let mut tids = Vec::new();
    for a in 0..n as u64 {
        tids.push(sched::spawn(roamer, a).map_err(|e| format!("spawn: {e}"))?);
    }
    let codes = join_all(&tids, 90_000)?;
    let covered = COVERED.load(Ordering::Acquire);
    let missing: Vec<u32> = cpus::online()
        .map(|b| b.hot.cpu_id)
        .filter(|&c| seen[c as usize / 64].load(Ordering::Relaxed) & (1 << (c % 64)) == 0)
        .take(16)
        .collect();
    let (_, _, steals1, _) = sched::counters();
    check(codes.iter().all(|&c| c == 0), || {
        format!(
            "roamers reached {covered} of {target} CPUs within 60 s ({} steals; first CPUs never reached: {missing:?})",
            steals1 - steals0
        )
    })?;
    check(ncpus() == 1 || steals1 > steals0, || {
        "no steal counted".into()
    })
}

static TURN: AtomicU64 = AtomicU64::new(0);
static PARTNER: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
const ROUNDS: u64 = 1000;

static GO: AtomicBool = AtomicBool::new(false);

/// Player `me` (0 or 1) moves when `TURN % 2 == me`, then wakes the other. Both wait for
/// `GO`, set once both ids are published (a player preempted into play before its partner's
/// id is known would wake nobody: a test bug that once looked like a lost wake-up).
fn player(me: u64) -> u64 {
    // A hang guard, not a speed limit: 1000 round trips between the first and last of 288
    // vCPUs on a loaded 2-core host can take tens of seconds. A lost wake-up still fails
    // the test: the player then sleeps until this deadline and returns 1.
    let deadline = rdtsc() + ms(120_000);
    let other = || Tid::from_raw(PARTNER[(1 - me) as usize].load(Ordering::Acquire));
    while !GO.load(Ordering::Acquire) {
        if rdtsc() > deadline {
            return 1;
        }
        sched::yield_now();
    }
    for _ in 0..ROUNDS {
        while TURN.load(Ordering::Acquire) % 2 != me {
            if rdtsc() > deadline {
                // Giving up: wake the partner so it does not wait for a move that never comes.
                sched::wake(other());
                return 1;
            }
            sched::block_until(deadline, || TURN.load(Ordering::Acquire) % 2 != me);
        }
        TURN.fetch_add(1, Ordering::AcqRel);
        sched::wake(other());
    }
    0
}

fn sleeper(seed: u64) -> u64 {
    let mut r = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut late = 0;
    for _ in 0..25 {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        let us = 10 + r % 200;
        let t0 = rdtsc();
        sched::sleep_us(us);
        if rdtsc() < t0 + us * (crate::smp::time::tsc_hz() / 1_000_000) {
            late += 1; // woke early: a bug
        }
        if r.is_multiple_of(3) {
            sched::yield_now();
        }
    }
    late
}

fn no_lost_wakeups(_: &BootState) -> TestResult {
    TURN.store(0, Ordering::Relaxed);
    GO.store(false, Ordering::Release);
    let last = ncpus() - 1;
    // Register the partners before either can move.
    let a = Builder::new()
        .pin(last)
        .spawn(player, 1)
        .map_err(|e| format!("spawn: {e}"))?;
    PARTNER[1].store(a.raw(), Ordering::Release);
    let b = Builder::new()
        .pin(0)
        .spawn(player, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    PARTNER[0].store(b.raw(), Ordering::Release);
    GO.store(true, Ordering::Release);
    let mut sleepers = Vec::new();
    for k in 0..(2 * ncpus()).clamp(4, 64) {
        sleepers.push(sched::spawn(sleeper, u64::from(k)).map_err(|e| format!("spawn: {e}"))?);
    }
    let codes = join_all(&[a, b], 150_000)?;
    check(codes == [0, 0], || {
        format!(
            "ping-pong stalled at turn {} of {}",
            TURN.load(Ordering::Relaxed),
            2 * ROUNDS
        )
    })?;
    check(TURN.load(Ordering::Relaxed) == 2 * ROUNDS, || {
        format!("turn {}", TURN.load(Ordering::Relaxed))
    })?;
    let early: u64 = join_all(&sleepers, 40_000)?.iter().sum();
    check(early == 0, || {
        format!("{early} sleeps ended before their deadline")
    })
}

/// Runs `a` and `b` pinned together to the last CPU and joins them (20 s): that CPU and
/// their exit codes. Skips when the run has no scheduler timer (preemption is the point).
fn pair_on_last_cpu(
    s: &BootState,
    a: fn(u64) -> u64,
    b: fn(u64) -> u64,
) -> Result<(u32, Vec<u64>), alloc::string::String> {
    if !use_timer(s) || sched::timer_mode() == "off" {
        return Err(format!(
            "{SKIP}no scheduler timer in this mode ({})",
            sched::timer_mode()
        ));
    }
    let cpu = ncpus() - 1;
    let [ta, tb] = pinned_pair(cpu, a, b)?;
    Ok((cpu, join_all(&[ta, tb], 20_000)?))
}

/// `a` then `b` spawned as threads pinned to `cpu`.
fn pinned_pair(
    cpu: u32,
    a: fn(u64) -> u64,
    b: fn(u64) -> u64,
) -> Result<[Tid; 2], alloc::string::String> {
    let spawn = |f| {
        Builder::new()
            .pin(cpu)
            .spawn(f, 0)
            .map_err(|e| format!("spawn: {e}"))
    };
    Ok([spawn(a)?, spawn(b)?])
}

static FLAG: AtomicBool = AtomicBool::new(false);

fn spinner(_: u64) -> u64 {
    let deadline = rdtsc() + ms(30_000);
    while !FLAG.load(Ordering::Acquire) {
        if rdtsc() > deadline {
            return 1;
        }
        core::hint::spin_loop();
    }
    0
}

fn setter(_: u64) -> u64 {
    FLAG.store(true, Ordering::Release);
    0
}

/// The tick preempts a spinning kernel thread for the other thread of its CPU. Wake-up
/// preemption is held off: the second thread's spawn is a wake-up on that CPU, which
/// preempts the spinner itself once it has run a quarter slice (at once, or deferred to that
/// point), and the tick would then have nothing to do.
fn preempted(s: &BootState) -> TestResult {
    sched::hold_wake_preemption(true);
    let r = preempted_by_the_tick(s);
    sched::hold_wake_preemption(false);
    r
}

fn preempted_by_the_tick(s: &BootState) -> TestResult {
    FLAG.store(false, Ordering::Relaxed);
    let (_, p0, _, _) = sched::counters();
    let (cpu, codes) = pair_on_last_cpu(s, spinner, setter)?;
    let (_, p1, _, _) = sched::counters();
    check(codes[0] == 0, || {
        format!("the spinner on CPU {cpu} never saw the flag: not preempted")
    })?;
    check(p1 > p0, || "no preemption counted".into())
}

/// One of the lazy-timer test's pair: once both run (else a yield finds nobody to switch
/// to), yields `LAZY_ROUNDS` times; 1 if the other never came (30 s).
fn yield_rounds(_: u64) -> u64 {
    LAZY_READY.fetch_add(1, Ordering::AcqRel);
    let deadline = rdtsc() + ms(30_000);
    while LAZY_READY.load(Ordering::Acquire) < 2 {
        if rdtsc() > deadline {
            return 1;
        }
        sched::yield_now();
    }
    for _ in 0..LAZY_ROUNDS {
        sched::yield_now();
    }
    0
}

static LAZY_READY: AtomicU32 = AtomicU32::new(0);

const LAZY_ROUNDS: u64 = 1000;

/// Two threads yielding to each other on one CPU: the switches between them write the timer
/// about twice per slice, not once per switch (every write is an MSR or APIC write, a VM exit
/// under KVM). A write for a slice end is made (a) after a tick cleared the record: one per
/// tick, one more at the start; (b) when the armed deadline has passed or (d) is more than
/// half a slice before the new one: the deadline was set by a switch at least half a slice
/// earlier (two per elapsed slice at most, one more at the start), or by a tick's re-arm
/// (the rest of a slice: one per tick) or another write (a sleeper's, the idle context's:
/// one per such write); (c) when it is later: set by another write. So over the window
/// `slice <= 2 ticks + 2 periods + 2 other + 2`, on any host (a slow one has more periods
/// and ticks, never fewer). The eager timer wrote once per switch.
fn lazy_timer(s: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    let count = || sched::timer_counts(cpu).ok_or_else(|| format!("no scheduler on CPU {cpu}"));
    LAZY_READY.store(0, Ordering::Relaxed);
    let before = count()?;
    let t0 = rdtsc();
    let (_, codes) = pair_on_last_cpu(s, yield_rounds, yield_rounds)?;
    let periods = (rdtsc() - t0) / sched::slice_tsc().max(1) + 1;
    let after = count()?;
    check(codes == [0, 0], || format!("yielders returned {codes:?}"))?;
    let (switches, ticks, slice, other) = (
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2,
        after.3 - before.3,
    );
    crate::kprintln!(
        "INFO,sched,lazy_timer,cpu,{cpu},switches,{switches},periods,{periods},ticks,{ticks},writes_slice,{slice},writes_other,{other}"
    );
    // Usually 2004; fewer when one of the two is classified apart (a host stall makes a
    // long burst): the hot queue then serves its thread up to 4 times in 5 picks.
    check(switches >= LAZY_ROUNDS / 4, || {
        format!("{switches} switches on CPU {cpu} for {LAZY_ROUNDS} rounds of two yielders")
    })?;
    check(slice <= 2 * ticks + 2 * periods + 2 * other + 2, || {
        format!(
            "{slice} slice-end timer writes for {switches} switches in {periods} slices, {ticks} ticks and {other} other writes on CPU {cpu}"
        )
    })
}

/// Spins until its own run-burst average has made it `Normal` (it is only ever put back by
/// the slice timer, so its bursts are whole slices); 1 if that has not happened in 30 s.
fn long_burster(_: u64) -> u64 {
    let deadline = rdtsc() + ms(30_000);
    while sched::current_queue() != Some(exo_sched::Queue::Normal) {
        if rdtsc() > deadline {
            return 1;
        }
        core::hint::spin_loop();
    }
    0
}

/// Yields at once, over and over (bursts of a few hundred cycles): `Hot` after 64 yields, or
/// at the latest after 10,000 (a burst the host stretched, the vCPU descheduled under TCG,
/// decays by 7/8 per yield); else 2.
fn short_burster(_: u64) -> u64 {
    for n in 0..10_000 {
        sched::yield_now();
        if n >= 64 && sched::current_queue() == Some(exo_sched::Queue::Hot) {
            return 0;
        }
    }
    2
}

/// The scheduler's burst average (`Ema`, stored whole in the thread's control block) sorts a
/// thread that runs its slices out into the normal queue and one that yields into the hot
/// one. Until 2026-12-02 the stored average lost a factor of 8 at every switch and every
/// thread stayed hot: the spinner then never turns normal and returns 1.
fn burst_classes(s: &BootState) -> TestResult {
    let (cpu, codes) = pair_on_last_cpu(s, long_burster, short_burster)?;
    check(codes[0] == 0, || {
        format!("a thread spinning through its slices on CPU {cpu} never left the hot queue")
    })?;
    check(codes[1] == 0, || {
        format!("a thread yielding at once on CPU {cpu} left the hot queue")
    })
}

static AVX: AtomicBool = AtomicBool::new(false);

fn fpu_worker(seed: u64) -> u64 {
    let avx = AVX.load(Ordering::Relaxed);
    let mut want = [0u8; 512];
    let mut got = [0u8; 512];
    let mut bad = 0;
    let mut r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    for round in 0..300u64 {
        if round % 50 == 0 {
            for chunk in want.chunks_mut(8) {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                chunk.copy_from_slice(&r.to_le_bytes());
            }
            crate::sched::fpu::load_regs(&want, avx);
        }
        if round % 16 == 5 {
            sched::sleep_us(20);
        } else {
            sched::yield_now();
        }
        crate::sched::fpu::store_regs(&mut got, avx);
        let n = if avx { 512 } else { 256 };
        if got[..n] != want[..n] {
            bad += 1;
            crate::sched::fpu::load_regs(&want, avx);
        }
    }
    bad
}

fn fpu_run(eager: bool) -> TestResult {
    let avx = exo_arch::cpu::detect().avx;
    AVX.store(avx, Ordering::Relaxed);
    let was = crate::sched::fpu::eager();
    crate::sched::fpu::set_eager(eager);
    let traps0 = crate::sched::fpu::TRAPS.load(Ordering::Relaxed);
    let mut tids = Vec::new();
    let mut k = 0;
    for b in cpus::online() {
        for _ in 0..3 {
            k += 1;
            tids.push(
                Builder::new()
                    .pin(b.hot.cpu_id)
                    .spawn(fpu_worker, k)
                    .map_err(|e| format!("spawn: {e}"))?,
            );
        }
        if k >= 48 {
            break;
        }
    }
    let res = join_all(&tids, 60_000);
    crate::sched::fpu::set_eager(was);
    let bad: u64 = res?.iter().sum();
    let traps = crate::sched::fpu::TRAPS.load(Ordering::Relaxed) - traps0;
    check(bad == 0, || {
        format!(
            "{bad} of {} checks found other register contents ({} registers)",
            300 * tids.len(),
            if avx { "ymm" } else { "xmm" }
        )
    })?;
    check(traps >= tids.len() as u64, || {
        format!("only {traps} #NM traps for {} FPU threads", tids.len())
    })
}

fn fpu_lazy(_: &BootState) -> TestResult {
    if crate::sched::fpu::info().is_none() {
        return Err(format!("{SKIP}no FPU save mechanism detected"));
    }
    fpu_run(false)
}

fn fpu_eager(_: &BootState) -> TestResult {
    if crate::sched::fpu::info().is_none() {
        return Err(format!("{SKIP}no FPU save mechanism detected"));
    }
    fpu_run(true)
}

/// The scrub test's steps: 1 when the holder's secret is in the registers, 2 when the peeker
/// has looked.
static SCRUB_STEP: AtomicU32 = AtomicU32::new(0);
/// What the holder loads (every byte) and the peeker must not find.
const SECRET: u8 = 0xa5;
/// The pid the peeker takes to count as a user thread (no process has it).
const PEEK_PID: u64 = u64::MAX - 7;

/// Yields until `SCRUB_STEP` reaches `step` (30 s at most: false then).
fn yield_until_step(step: u32) -> bool {
    let deadline = rdtsc() + ms(30_000);
    while SCRUB_STEP.load(Ordering::Acquire) < step {
        if rdtsc() > deadline {
            return false;
        }
        sched::yield_now();
    }
    true
}

/// Puts the secret in its registers (its first use: #NM, an area), then yields to the peeker.
fn fpu_secret_holder(_: u64) -> u64 {
    crate::sched::fpu::load_regs(&[SECRET; 512], AVX.load(Ordering::Relaxed));
    SCRUB_STEP.store(1, Ordering::Release);
    u64::from(!yield_until_step(2))
}

/// Puts the secret in its registers (its first use: #NM, an area), then ends.
fn fpu_secret_then_exit(_: u64) -> u64 {
    crate::sched::fpu::load_regs(&[SECRET; 512], AVX.load(Ordering::Relaxed));
    SCRUB_STEP.store(1, Ordering::Release);
    0
}

/// A user thread (a pid) without FPU state: runs right after the holder's yield (the pair is
/// alone on its CPU) and reads the registers as a speculative access would, before its own
/// #NM. 0: none of the secret; 3: the holder's registers were still there.
fn fpu_peeker(_: u64) -> u64 {
    if sched::set_current_ids(PEEK_PID, 0).is_err() {
        return 2;
    }
    let ok = yield_until_step(1);
    let avx = AVX.load(Ordering::Relaxed);
    let mut got = [0u8; 512];
    crate::sched::fpu::peek_regs(&mut got, avx);
    SCRUB_STEP.store(2, Ordering::Release);
    let _ = sched::set_current_ids(0, 0);
    let n = if avx { 512 } else { 256 };
    match (ok, got[..n].contains(&SECRET)) {
        (false, _) => 1,
        (true, true) => 3,
        (true, false) => 0,
    }
}

/// LazyFP (CVE-2018-3665): with eager switching (the default), a user thread that has no
/// FPU state never runs with another thread's registers loaded, even behind CR0.TS. Three
/// orders, each forced: the peeker is a user thread already when the holder yields to it
/// (the switch resets the registers: `fpu::scrub`); it starts after the holder loaded the
/// secret and only then takes its pid, as every user thread's kernel entry does (taking the
/// pid resets them: `fpu::became_user`; CI once caught that order unscrubbed, when the
/// pair happened to start the other way round); or it starts after the holder ended and was
/// joined (its registers stay, marked as an ended thread's: `fpu::release`, which until
/// 2026-12-04 marked them as nobody's, and the peeker found the secret). Lazy switching
/// leaves them (3 from the peeker).
fn fpu_scrub(_: &BootState) -> TestResult {
    if crate::sched::fpu::info().is_none() {
        return Err(format!("{SKIP}no FPU save mechanism detected"));
    }
    if !crate::sched::fpu::eager() {
        return Err(format!("{SKIP}lazy FPU switching was chosen"));
    }
    AVX.store(exo_arch::cpu::detect().avx, Ordering::Relaxed);
    let cpu = ncpus() - 1;
    let spawn = |f| {
        Builder::new()
            .pin(cpu)
            .spawn(f, 0)
            .map_err(|e| format!("spawn: {e}"))
    };
    for (k, order) in [
        "the peeker a user thread first",
        "the peeker started after the secret was loaded",
        "the peeker started after the holder ended",
    ]
    .into_iter()
    .enumerate()
    {
        SCRUB_STEP.store(0, Ordering::Release);
        let scrubs0 = crate::sched::fpu::SCRUBS.load(Ordering::Relaxed);
        let codes = match k {
            0 => {
                let [p, h] = pinned_pair(cpu, fpu_peeker, fpu_secret_holder)?;
                join_all(&[h, p], 20_000)?
            }
            1 => {
                let h = spawn(fpu_secret_holder)?;
                crate::harness::wait_for("the holder to load its secret", 30_000, || {
                    SCRUB_STEP.load(Ordering::Acquire) >= 1
                })?;
                join_all(&[h, spawn(fpu_peeker)?], 20_000)?
            }
            _ => {
                // Joined: reaped, so `fpu::release` has run (before the state Exited).
                let h = join_all(&[spawn(fpu_secret_then_exit)?], 20_000)?;
                let p = join_all(&[spawn(fpu_peeker)?], 20_000)?;
                alloc::vec![h[0], p[0]]
            }
        };
        let scrubs = crate::sched::fpu::SCRUBS.load(Ordering::Relaxed) - scrubs0;
        check(codes[0] == 0 && codes[1] != 1 && codes[1] != 2, || {
            format!(
                "{order}: holder {}, peeker {}: the pair did not meet",
                codes[0], codes[1]
            )
        })?;
        check(codes[1] == 0, || {
            format!(
                "{order}: a user thread without FPU state found the last thread's registers on CPU {cpu}"
            )
        })?;
        check(scrubs > 0, || format!("{order}: no register reset counted"))?;
    }
    Ok(())
}

fn parked(_: u64) -> u64 {
    sched::block_unless(|| !FLAG.load(Ordering::Acquire));
    0
}

fn exhaustion(_: &BootState) -> TestResult {
    FLAG.store(false, Ordering::Release);
    let mut tids = Vec::new();
    let err = loop {
        match Builder::new().pin(0).spawn(parked, 0) {
            Ok(t) => tids.push(t),
            Err(e) => break e,
        }
        if tids.len() > sched::MAX_THREADS {
            break sched::SchedError::NotRunning;
        }
    };
    FLAG.store(true, Ordering::Release);
    for &t in &tids {
        sched::wake(t);
    }
    let n = tids.len();
    join_all(&tids, 30_000)?;
    check(err == sched::SchedError::TooManyThreads, || {
        format!("after {n} threads: {err:?}, expected TooManyThreads")
    })?;
    // And the table is usable again.
    let t = sched::spawn(worker, 3).map_err(|e| format!("spawn after exhaustion: {e}"))?;
    let c = join_all(&[t], 30_000)?[0];
    check(c == 10, || format!("returned {c}"))
}

/// `idle_not_preempted`'s window: 1 while the idle context holds its guard with interrupts
/// on, 2 once the probe thread has run.
static IDLE_WINDOW: AtomicU32 = AtomicU32::new(0);
/// The probe's view of the preempt word when it started (1: preemptible, 2: not).
static PROBE_SAW: AtomicU32 = AtomicU32::new(0);

/// Runs in a CPU's idle context (its mailbox): holds a preemption guard with interrupts on,
/// as the idle loop's reclaim of retired page tables does (allocator sections, the
/// shootdown's lock), until the probe thread has run or 1 s has passed. Returns 1 if the
/// probe ran inside the window (the idle context was switched away from), else 0.
fn guarded_idle_window(_: u64) -> u64 {
    let _p = exo_percpu::PreemptGuard::new();
    open_window(1000)
}

/// The window of the idle-context tests, in a CPU's idle context: interrupts on, until the
/// probe says it ran (`IDLE_WINDOW` 2) or `limit_ms` pass; 1 if it ran inside, else 0.
fn open_window(limit_ms: u64) -> u64 {
    exo_arch::cpu::sti();
    IDLE_WINDOW.store(1, Ordering::Release);
    let d = rdtsc() + ms(limit_ms);
    while IDLE_WINDOW.load(Ordering::Acquire) == 1 && rdtsc() < d {
        core::hint::spin_loop();
    }
    exo_arch::cpu::cli();
    u64::from(IDLE_WINDOW.swap(0, Ordering::AcqRel) == 2)
}

/// Runs `window` in the last CPU's idle context, waits until it is open, makes `probe`
/// (pinned there, with `arg`) runnable, and returns what the window returned.
fn probe_in_idle_window(
    window: crate::smp::cpus::RemoteFn,
    limit_ms: u64,
    probe: fn(u64) -> u64,
    arg: u64,
) -> Result<u64, alloc::string::String> {
    let x = ncpus() - 1;
    IDLE_WINDOW.store(0, Ordering::Release);
    let cpu = exo_percpu::CpuId(x);
    let ticket = cpus::post(cpu, window, 0).map_err(|e| format!("post: {e}"))?;
    let d = rdtsc() + ms(10_000);
    while IDLE_WINDOW.load(Ordering::Acquire) != 1 {
        if rdtsc() > d {
            let _ = cpus::wait(
                ticket,
                crate::smp::time::Deadline::after_ms(limit_ms + 2000),
            );
            return Err(format!("CPU {x}'s idle context never opened its window"));
        }
        sched::yield_now();
    }
    let t = Builder::new()
        .pin(x)
        .spawn(probe, arg)
        .map_err(|e| format!("spawn: {e}"))?;
    let inside = cpus::wait(
        ticket,
        crate::smp::time::Deadline::after_ms(limit_ms + 2000),
    )
    .map_err(|e| format!("the window's end: {e}"))?;
    join_all(&[t], 10_000)?;
    Ok(inside)
}

fn preempt_probe(_: u64) -> u64 {
    PROBE_SAW.store(
        if exo_percpu::preemptible() { 1 } else { 2 },
        Ordering::Release,
    );
    let _ = IDLE_WINDOW.compare_exchange(1, 2, Ordering::AcqRel, Ordering::Relaxed);
    0
}

/// The tick switches from an idle CPU to queued work only when the idle context may be
/// preempted: the idle loop reclaims retired stack page tables with interrupts on, inside
/// preemption guards (allocator magazines, the shootdown's lock). Until 2026-12-04 the tick's
/// idle branch ignored the preempt word: a thread switched in there ran inside the idle
/// context's guard, on magazines mid-update (a double free at -smp 16, seen in a stress
/// loop) or against the shootdown lock its holder could not release. Forced: the idle
/// context of the last CPU holds a guard with interrupts on (a mailbox request) while a
/// thread pinned there becomes runnable; the probe must start with the word clear, after
/// the window.
fn idle_not_preempted(s: &BootState) -> TestResult {
    if ncpus() < 2 || !use_timer(s) {
        return Err(format!(
            "{SKIP}needs two CPUs and the scheduler's timer (not icount)"
        ));
    }
    PROBE_SAW.store(0, Ordering::Release);
    let inside = probe_in_idle_window(guarded_idle_window, 1000, preempt_probe, 0)?;
    let saw = PROBE_SAW.load(Ordering::Acquire);
    check(inside == 0 && saw == 1, || {
        format!(
            "the probe ran inside the idle context's guard: {}, saw the preempt word {}",
            inside == 1,
            if saw == 1 { "clear" } else { "set" }
        )
    })
}

/// The probe of `halted_mark_cleared`: 1 if its CPU was not marked halted when it ran, 2 if
/// it was.
static HALT_PROBE_SAW: AtomicU32 = AtomicU32::new(0);

/// Runs in a CPU's idle context (its mailbox): marks the CPU halted as the idle loop does
/// right before its halt, then waits with interrupts on and no guard, as in the halt, until
/// the probe has run (the tick switched to it) or 10 s have passed. Returns 1 if the probe
/// ran inside the window.
fn halted_idle_window(_: u64) -> u64 {
    if let (Some(cs), Some(m)) = (super::cpu::this_sched(), super::idle::halted_mask()) {
        m.set(cs.cpu);
    }
    open_window(10_000)
}

fn halted_probe(cpu: u64) -> u64 {
    let marked = super::idle::halted_mask().is_some_and(|m| m.contains(cpu as u32));
    HALT_PROBE_SAW.store(if marked { 2 } else { 1 }, Ordering::Release);
    let _ = IDLE_WINDOW.compare_exchange(1, 2, Ordering::AcqRel, Ordering::Relaxed);
    0
}

/// A thread the tick switches to from an idle CPU's halt runs with its CPU no longer marked
/// halted. Until 2026-12-04 only the idle loop cleared the mark, after the halt, so a
/// thread the tick switched to from inside it (a stolen one at every balancing tick) ran
/// with the CPU still marked: kickers claimed that CPU for a wasted IPI while one really
/// halted slept on. Forced: the last CPU's idle context marks itself halted and waits,
/// preemptible, as in its halt, while a thread pinned there becomes runnable; the tick
/// switches to it inside the window and the thread looks at the mark.
fn halted_mark_cleared(s: &BootState) -> TestResult {
    if ncpus() < 2 || !use_timer(s) {
        return Err(format!(
            "{SKIP}needs two CPUs and the scheduler's timer (not icount)"
        ));
    }
    HALT_PROBE_SAW.store(0, Ordering::Release);
    let x = u64::from(ncpus() - 1);
    let inside = probe_in_idle_window(halted_idle_window, 10_000, halted_probe, x)?;
    let saw = HALT_PROBE_SAW.load(Ordering::Acquire);
    check(inside == 1 && saw == 1, || {
        format!(
            "the probe ran inside the window: {}; its CPU was {}marked halted",
            inside == 1,
            if saw == 1 { "not " } else { "" }
        )
    })
}

/// Loads a pattern into its FPU registers (its first use: #NM), takes a pid, reads them back:
/// 0 if they still hold the pattern, 1 if not, 2 if the pid was refused.
fn fpu_pattern_then_pid(avx: u64) -> u64 {
    let avx = avx != 0;
    crate::sched::fpu::load_regs(&[0x5C; 512], avx);
    if sched::set_current_ids(PEEK_PID, 0).is_err() {
        return 2;
    }
    let mut got = [0u8; 512];
    crate::sched::fpu::store_regs(&mut got, avx);
    let _ = sched::set_current_ids(0, 0);
    let n = if avx { 512 } else { 256 };
    u64::from(got[..n].iter().any(|&b| b != 0x5C))
}

/// A thread that takes a pid (every user thread's kernel entry does) keeps the FPU state it
/// has live in the registers: `fpu::became_user` resets only another thread's. Until
/// 2026-12-04 its own counted only once saved from this CPU, so a thread whose first FPU
/// use had just loaded its registers (or that an eager switch-in restored from an area
/// saved on another CPU) lost them when it took its pid.
fn fpu_own_kept(_: &BootState) -> TestResult {
    if crate::sched::fpu::info().is_none() {
        return Err(format!("{SKIP}no FPU save mechanism"));
    }
    let avx = u64::from(exo_arch::cpu::detect().avx);
    let t = Builder::new()
        .pin(0)
        .spawn(fpu_pattern_then_pid, avx)
        .map_err(|e| format!("spawn: {e}"))?;
    let code = join_all(&[t], 10_000)?[0];
    check(code == 0, || {
        format!("code {code}: the thread's own registers were reset when it took a pid (1)")
    })
}

/// A thread without an address space of its own cannot go to ring 3: it would run user code
/// on whatever tables its CPU last loaded (another process's). Until 2026-12-04
/// `enter_user` did not check (every caller built its threads with a space; found by
/// review). The kernel thread asks to enter at a user address and must get
/// `CannotEnterUser` back.
fn enter_user_without_space(_: &BootState) -> TestResult {
    fn try_enter(_: u64) -> u64 {
        match sched::enter_user(0x40_0000, 0x7fff_0000, 0) {
            sched::SchedError::CannotEnterUser => 0,
            _ => 1,
        }
    }
    let t = Builder::new()
        .spawn(try_enter, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let code = join_all(&[t], 30_000)?[0];
    check(code == 0, || {
        format!("enter_user without a space returned another refusal ({code})")
    })
}

/// With every free frame and object hoarded, a thread whose mask is a bitmap (two CPU
/// words) asks for a builder inheriting it: 0 if that is `OutOfMemory`.
fn inherit_without_memory(_: u64) -> u64 {
    let hoard = crate::mm::kalloc::Hoard::take_all();
    let r = Builder::new().inherit_affinity();
    drop(hoard);
    match r {
        Err(sched::SchedError::OutOfMemory) => 0,
        Ok(_) => 1,
        Err(_) => 2,
    }
}

/// A thread with a mask of several CPUs (a bitmap) creating a thread or process with the
/// heap exhausted: `OutOfMemory`, not a kernel panic. Until 2026-12-05 the mask's copy was
/// an infallible clone ("memory allocation failed": a user program could arrange it with
/// `sched_setaffinity`, `mmap` until `ENOMEM`, `thread_create`).
fn inherit_oom(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    let mut mask = CpuSet::empty();
    mask.try_insert(cpu).map_err(|_| "no memory for the mask")?;
    // A CPU id past every online one: the mask stays a two-word bitmap.
    mask.try_insert(cpu + 64)
        .map_err(|_| "no memory for the mask")?;
    crate::harness::drain_all()?;
    let t = Builder::new()
        .affinity(mask)
        .spawn(inherit_without_memory, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let code = join_all(&[t], 30_000)?[0];
    check(code == 0, || {
        format!(
            "inherit_affinity with the heap hoarded gave {code} (0: OutOfMemory, 1: Ok, 2: another error)"
        )
    })
}

/// A sleeper's timed block that the runner ends early (before its deadline), whatever the
/// host's speed. Until 2026-12-05 the two sleeper-list tests below gave their sleeper one
/// 300 ms block: a runner whose vCPU the host stalled that long found the sleeper past it
/// (timed out, on to its next stage) and failed its wait after 10 s (found by review). Now
/// each try is a block with a fresh deadline (300 ms, doubled at each retry up to 4.8 s);
/// the runner wakes the try it saw blocked and listed, by its number, and the sleeper goes
/// on only if that wake-up came before the try's deadline (so it is still listed, with a
/// deadline to come: the case the tests need); else it publishes the next try.
struct EarlyWake {
    /// The sleeper's try (0: none yet; [`GAVE_UP`]: no try woken in time).
    attempt: AtomicU32,
    /// The try the runner woke (0: none).
    woken: AtomicU32,
}

/// Tries before the sleeper gives up (the last ones 4.8 s each: over 30 s in all).
const EARLY_TRIES: u32 = 10;
const GAVE_UP: u32 = u32::MAX;

impl EarlyWake {
    const fn new() -> Self {
        Self {
            attempt: AtomicU32::new(0),
            woken: AtomicU32::new(0),
        }
    }

    fn reset(&self) {
        self.woken.store(0, Ordering::SeqCst);
        self.attempt.store(0, Ordering::SeqCst);
    }

    /// The sleeper: blocks with a deadline until the runner wakes the try before its
    /// deadline. Returns whether it did within [`EARLY_TRIES`].
    fn sleep(&self) -> bool {
        let mut span = ms(300);
        for k in 1..=EARLY_TRIES {
            let d = rdtsc() + span;
            self.attempt.store(k, Ordering::SeqCst);
            while self.woken.load(Ordering::SeqCst) != k && rdtsc() < d {
                sched::block_until(d, || self.woken.load(Ordering::SeqCst) != k);
            }
            // Woken, and the deadline still to come when it was seen.
            if self.woken.load(Ordering::SeqCst) == k && rdtsc() < d {
                return true;
            }
            span = (2 * span).min(ms(4800));
        }
        self.attempt.store(GAVE_UP, Ordering::SeqCst);
        false
    }

    /// The runner: waits for the sleeper `t` blocked in a try and listed as a sleeper on
    /// `cpu`, wakes that try, then waits for `next` (the sleeper's next stage) or another
    /// try, and again until `next` (60 s in all).
    fn wake_early(&self, t: Tid, cpu: u32, next: impl Fn() -> bool) -> TestResult {
        let d = rdtsc() + ms(60_000);
        loop {
            let seen = core::cell::Cell::new(0);
            crate::harness::wait_for("the timed block", 30_000, || {
                let k = self.attempt.load(Ordering::SeqCst);
                // Read again after: blocked and listed in try k, not the one before.
                let blocked = k != 0
                    && (k == GAVE_UP
                        || (sched::is_blocked(t)
                            && sched::listed_as_sleeper(cpu, t)
                            && self.attempt.load(Ordering::SeqCst) == k));
                seen.set(k);
                blocked
            })?;
            let k = seen.get();
            if k == GAVE_UP {
                return Err(format!(
                    "the sleeper was never woken before its deadline in {EARLY_TRIES} tries"
                ));
            }
            self.woken.store(k, Ordering::SeqCst);
            sched::wake(t);
            crate::harness::wait_for("the sleeper on, or its next try", 30_000, || {
                next() || self.attempt.load(Ordering::SeqCst) != k
            })?;
            if next() {
                return Ok(());
            }
            if rdtsc() > d {
                return Err(format!(
                    "the sleeper's timed block not woken before its deadline in 60 s (try {k})"
                ));
            }
        }
    }
}

static RELIST: EarlyWake = EarlyWake::new();
/// 2: woken early, about to block without a deadline.
static RELIST_STAGE: AtomicU32 = AtomicU32::new(0);
static RELIST_RELEASE: AtomicBool = AtomicBool::new(false);

fn relisted_sleeper(_: u64) -> u64 {
    if !RELIST.sleep() {
        return 1;
    }
    RELIST_STAGE.store(2, Ordering::Release);
    while !RELIST_RELEASE.load(Ordering::Acquire) {
        sched::block_unless(|| !RELIST_RELEASE.load(Ordering::Acquire));
    }
    0
}

/// A thread listed as a sleeper (a timed block), woken early, then blocked without a
/// deadline: once its old deadline has passed, the scan takes it off the list. Until
/// 2026-12-05 the entry stayed for good (its deadline now `u64::MAX`, it still blocked), and
/// under icount, with no timer, its CPU polled instead of halting. The early wake-up is
/// [`EarlyWake`]'s (until 2026-12-05 one 300 ms block the runner had to beat).
fn sleeper_relisted(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    RELIST.reset();
    RELIST_STAGE.store(0, Ordering::Release);
    RELIST_RELEASE.store(false, Ordering::Release);
    let t = Builder::new()
        .pin(cpu)
        .spawn(relisted_sleeper, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let r = (|| {
        RELIST.wake_early(t, cpu, || RELIST_STAGE.load(Ordering::Acquire) == 2)?;
        crate::harness::wait_for("the block without a deadline", 10_000, || {
            RELIST_STAGE.load(Ordering::Acquire) == 2 && sched::is_blocked(t)
        })?;
        // Its old deadline passes (4.8 s at most); the tick armed for it scans the list.
        crate::harness::wait_for("the stale sleeper entry to go", 10_000, || {
            !sched::listed_as_sleeper(cpu, t)
        })
    })();
    RELIST_RELEASE.store(true, Ordering::Release);
    sched::wake(t);
    let code = join_all(&[t], 10_000)?[0];
    r?;
    check(code == 0, || {
        format!("the sleeper ended {code} (1: never woken before its deadline)")
    })
}

static MOVED: EarlyWake = EarlyWake::new();
/// 2: woken early, moved to B, about to block for an hour.
static MOVED_STAGE: AtomicU32 = AtomicU32::new(0);
static MOVED_RELEASE: AtomicBool = AtomicBool::new(false);

fn moved_sleeper(b: u64) -> u64 {
    if !MOVED.sleep() {
        return 2;
    }
    if sched::set_affinity(CpuSet::one(b as u32)).is_err() {
        return 1;
    }
    MOVED_STAGE.store(2, Ordering::Release);
    let hour = rdtsc() + ms(3_600_000);
    while !MOVED_RELEASE.load(Ordering::Acquire) && rdtsc() < hour {
        sched::block_until(hour, || !MOVED_RELEASE.load(Ordering::Acquire));
    }
    0
}

/// A thread listed as a sleeper on CPU A (a timed block), woken early, moved to CPU B and
/// blocked there for an hour: once its old deadline has passed, A's scan takes it off A's
/// list (it is listed on B). Until 2026-12-05 A kept the entry until the new deadline. The
/// early wake-up is [`EarlyWake`]'s (until 2026-12-05 one 300 ms block the runner had to
/// beat).
fn sleeper_moved(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{}needs 2 CPUs", crate::harness::SKIP));
    }
    let (a, b) = (ncpus() - 1, 0);
    MOVED.reset();
    MOVED_STAGE.store(0, Ordering::Release);
    MOVED_RELEASE.store(false, Ordering::Release);
    let t = Builder::new()
        .pin(a)
        .spawn(moved_sleeper, u64::from(b))
        .map_err(|e| format!("spawn: {e}"))?;
    let r = (|| {
        MOVED.wake_early(t, a, || MOVED_STAGE.load(Ordering::Acquire) == 2)?;
        crate::harness::wait_for("the hour-long block on B", 10_000, || {
            MOVED_STAGE.load(Ordering::Acquire) == 2
                && sched::is_blocked(t)
                && sched::listed_as_sleeper(b, t)
        })?;
        // Its old deadline passes (4.8 s at most); the tick A armed for it scans A's list.
        crate::harness::wait_for("the stale entry on A to go", 10_000, || {
            !sched::listed_as_sleeper(a, t)
        })
    })();
    MOVED_RELEASE.store(true, Ordering::Release);
    sched::wake(t);
    let code = join_all(&[t], 10_000)?[0];
    r?;
    check(code == 0, || {
        format!(
            "the sleeper ended {code} (1: set_affinity failed, 2: never woken before its \
             deadline)"
        )
    })
}

static REARM_HOLD: super::HoldPoint = super::HoldPoint::new();
static REARM_PASSED: AtomicU32 = AtomicU32::new(0);

/// A test thread: passes [`REARM_HOLD`] once and counts it.
fn rearm_passer(_: u64) -> u64 {
    REARM_HOLD.pass();
    REARM_PASSED.fetch_add(1, Ordering::AcqRel);
    0
}

/// A hold point armed again right after `release` holds the next call, not the one just
/// released: `release` returns once that call has left the hold. Until 2026-12-05 it
/// returned at once, and the released call, seeing the switch on again, stayed held for
/// its whole 30 s deadline (the join below waits 10 s), while its `held` flag let the next
/// call pass unheld. Forced: call A is held, released and the switch re-armed at once;
/// A must end, and call B must then be held.
fn hold_rearmed(_: &BootState) -> TestResult {
    REARM_PASSED.store(0, Ordering::Release);
    REARM_HOLD.arm();
    let a = Builder::new()
        .spawn(rearm_passer, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let r = (|| {
        crate::harness::wait_for("call A held", 10_000, || REARM_HOLD.reached())?;
        REARM_HOLD.release();
        REARM_HOLD.arm();
        join_all(&[a], 10_000).map_err(|e| format!("call A, released, stayed held: {e}"))?;
        let b = Builder::new()
            .spawn(rearm_passer, 0)
            .map_err(|e| format!("spawn: {e}"))?;
        let held = crate::harness::wait_for("call B held", 10_000, || REARM_HOLD.reached());
        let passed = REARM_PASSED.load(Ordering::Acquire);
        REARM_HOLD.release();
        join_all(&[b], 10_000)?;
        held?;
        check(passed == 1, || {
            format!("{passed} call(s) had passed while B should have been held (want 1: A)")
        })
    })();
    REARM_HOLD.release();
    r
}

/// `exo.panic_in_exit=1` only (it stops the machine; CI "failure paths" expects the
/// report): a kernel thread panics, is killed alone, and panics again in its end; the
/// machine must stop with that reason (`PANIC on CPU n: deliberate panic in a thread's
/// end`), the thread not killed again. Until 2026-12-05 each panic in the end killed it
/// again, whose end panicked again, down to a double fault on its stack's guard page.
fn panic_in_exit(s: &BootState) -> TestResult {
    if !s.opts.panic_in_exit {
        return Err(format!(
            "{SKIP}needs exo.panic_in_exit=1 (it stops the machine)"
        ));
    }
    crate::sched::Builder::new()
        .pin(crate::harness::ncpus() - 1)
        .spawn(panics_in_its_end, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    sched::sleep_us(10_000_000);
    Err("the panic in a thread's end did not stop the machine".into())
}

/// A kernel thread that panics (it is killed alone) and panics again in its end.
fn panics_in_its_end(_: u64) -> u64 {
    crate::sched::panic_in_exit_of_current();
    panic!("deliberate panic requested by exo.panic_in_exit");
}
