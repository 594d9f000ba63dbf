//! Kernel tests of threads and scheduling (`Needs::Threads`: the test job starts the
//! scheduler on every CPU first). Every wait has a deadline: a hang is a FAIL line.

use crate::boot::BootState;
use crate::sched::{self, Builder, CpuSet, Tid};
use crate::smp::cpus;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;

use crate::harness::{Needs, SKIP, TestResult, check, join_all, ms, ncpus};
use crate::ktest;

ktest!(Needs::Threads, "sched.starts_on_every_cpu", starts);
ktest!(Needs::Threads, "sched.spawn_join_exit_codes", spawn_join);
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
    "sched.thread_table_exhaustion_is_an_error",
    exhaustion
);
ktest!(
    Needs::Threads,
    "sched.faulting_or_panicking_thread_killed_alone",
    killed_alone
);
ktest!(
    Needs::Threads,
    "sched.wake_into_full_mailbox_never_queues_a_running_thread",
    full_mailbox_wake
);
ktest!(
    Needs::Threads,
    "sched.thread_ids_keep_the_full_generation",
    generation_wrap
);
ktest!(
    Needs::Threads,
    "sched.killed_thread_had_released_its_locks",
    killed_after_unlock
);
ktest!(
    Needs::Threads,
    "sched.fault_holding_a_sleeping_lock_stops_the_machine",
    fault_holding_lock
);
ktest!(
    Needs::Threads,
    "mutex.idle_context_job_waits_for_a_sleeping_holder",
    idle_job_on_held_mutex
);
ktest!(
    Needs::Threads,
    "mutex.counter_exact_from_every_cpu",
    mutex_counter
);
ktest!(
    Needs::Threads,
    "mutex.deadline_gives_up_then_succeeds",
    mutex_deadline
);

/// Whether the run uses a scheduler timer (not under icount).
fn use_timer(s: &BootState) -> bool {
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
        crate::sched::fpu::info().map(|i| (i.size, i.mechanism))
    );
    Ok(())
}

fn worker(arg: u64) -> u64 {
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

static FLAG: AtomicBool = AtomicBool::new(false);

fn spinner(_: u64) -> u64 {
    let deadline = rdtsc() + ms(5000);
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

fn preempted(s: &BootState) -> TestResult {
    if !use_timer(s) || sched::timer_mode() == "off" {
        return Err(format!(
            "{SKIP}no scheduler timer in this mode ({})",
            sched::timer_mode()
        ));
    }
    FLAG.store(false, Ordering::Relaxed);
    let cpu = ncpus() - 1;
    let (_, p0, _, _) = sched::counters();
    let a = Builder::new()
        .pin(cpu)
        .spawn(spinner, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let b = Builder::new()
        .pin(cpu)
        .spawn(setter, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let codes = join_all(&[a, b], 20_000)?;
    let (_, p1, _, _) = sched::counters();
    check(codes[0] == 0, || {
        format!("the spinner on CPU {cpu} never saw the flag: not preempted")
    })?;
    check(p1 > p0, || "no preemption counted".into())
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
    crate::sched::fpu::set_eager(false);
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
    let c = join_all(&[t], 5000)?[0];
    check(c == 10, || format!("returned {c}"))
}

static COUNTER: crate::sched::park::Mutex<u64> = crate::sched::park::mutex(0);
const INCS: u64 = 3000;

fn incrementer(seed: u64) -> u64 {
    for k in 0..INCS {
        let mut g = COUNTER.lock();
        let v = *g;
        if (k + seed).is_multiple_of(97) {
            // Sleep holding it now and then: waiters must park, not only spin.
            sched::yield_now();
        }
        *g = v + 1;
    }
    0
}

fn mutex_counter(_: &BootState) -> TestResult {
    *COUNTER.lock() = 0;
    let parks0 = crate::sched::park::PARKS.load(Ordering::Relaxed);
    let mut tids = Vec::new();
    for b in cpus::online().take(32) {
        for j in 0..2 {
            tids.push(
                Builder::new()
                    .pin(b.hot.cpu_id)
                    .spawn(incrementer, u64::from(b.hot.cpu_id) * 2 + j)
                    .map_err(|e| format!("spawn: {e}"))?,
            );
        }
    }
    join_all(&tids, 120_000)?;
    let got = *COUNTER.lock();
    let want = INCS * tids.len() as u64;
    let parks = crate::sched::park::PARKS.load(Ordering::Relaxed) - parks0;
    check(got == want, || format!("counter {got}, expected {want}"))?;
    check(parks > 0, || "no waiter ever parked".into())
}

static HELD: crate::sched::park::Mutex<()> = crate::sched::park::mutex(());

/// Set by the test once its deadline lock gave up; the holder keeps the lock until then, so
/// the give-up path is forced whatever the host's speed.
static GAVE_UP: AtomicBool = AtomicBool::new(false);

fn holder(_: u64) -> u64 {
    let g = HELD.lock();
    FLAG.store(true, Ordering::Release);
    let deadline = rdtsc() + ms(30_000);
    while !GAVE_UP.load(Ordering::Acquire) {
        if rdtsc() > deadline {
            return 1;
        }
        sched::sleep_us(100);
    }
    drop(g);
    0
}

fn mutex_deadline(_: &BootState) -> TestResult {
    FLAG.store(false, Ordering::Release);
    GAVE_UP.store(false, Ordering::Release);
    let cpu = ncpus() - 1;
    let h = Builder::new()
        .pin(cpu)
        .spawn(holder, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let d = rdtsc() + ms(5000);
    while !FLAG.load(Ordering::Acquire) {
        if rdtsc() > d {
            GAVE_UP.store(true, Ordering::Release);
            return Err("holder never took the lock".into());
        }
        sched::yield_now();
    }
    let t0 = rdtsc();
    let r = HELD.lock_with_deadline(t0 + ms(5));
    let waited = rdtsc() - t0;
    let got = r.is_some();
    drop(r);
    GAVE_UP.store(true, Ordering::Release);
    check(!got, || {
        format!("got the lock after {waited} ticks while it was held")
    })?;
    check(waited >= ms(5), || {
        format!(
            "gave up after {waited} ticks, before the deadline ({} ticks)",
            ms(5)
        )
    })?;
    let g = HELD.lock_with_deadline(rdtsc() + ms(10_000));
    check(g.is_some(), || "not acquired after the holder left".into())?;
    drop(g);
    let code = join_all(&[h], 10_000)?[0];
    check(code == 0, || "the holder was never told to release".into())
}

fn faulter(_: u64) -> u64 {
    crate::sys::deliberate_page_fault()
}

fn panicker(n: u64) -> u64 {
    if n < 1000 {
        panic!("deliberate panic in a thread ({n})");
    }
    n
}

fn killed_alone(_: &BootState) -> TestResult {
    let last = ncpus() - 1;
    let f = Builder::new()
        .pin(last)
        .spawn(faulter, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let p = sched::spawn(panicker, 7).map_err(|e| format!("spawn: {e}"))?;
    let codes = join_all(&[f, p], 10_000)?;
    check(codes == [sched::KILLED, sched::KILLED], || {
        format!("exit codes {codes:?}, expected both KILLED")
    })?;
    // The CPUs are still fine: threads run everywhere.
    let again = sched::spawn(worker, 5).map_err(|e| format!("spawn after: {e}"))?;
    let c = join_all(&[again], 10_000)?[0];
    check(c == 26, || format!("returned {c}"))
}

/// Per pair: the waiter's tid, "the waiter is inside its block window", "woken".
static FM_TID: [AtomicU64; FM_PAIRS] = [const { AtomicU64::new(0) }; FM_PAIRS];
static FM_ARMED: [AtomicBool; FM_PAIRS] = [const { AtomicBool::new(false) }; FM_PAIRS];
static FM_WOKEN: [AtomicBool; FM_PAIRS] = [const { AtomicBool::new(false) }; FM_PAIRS];
const FM_PAIRS: usize = 8;

/// Blocks with `block_unless`, and inside the window between marking itself blocked and
/// switching out (the `still_wait` check) waits until its waker has woken it: the wake-up
/// is then *forced* to find this thread still running on its CPU.
fn fm_waiter(k: u64) -> u64 {
    let k = k as usize;
    let deadline = rdtsc() + ms(10_000);
    let mut late = false;
    if let Some(me) = sched::current() {
        FM_TID[k].store(me.raw(), Ordering::Release);
    }

    sched::block_unless(|| {
        FM_ARMED[k].store(true, Ordering::Release);
        while !FM_WOKEN[k].load(Ordering::Acquire) {
            if rdtsc() > deadline {
                late = true;
                break;
            }
            core::hint::spin_loop();
        }
        false
    });
    u64::from(late)
}

fn fm_waker(k: u64) -> u64 {
    let k = k as usize;
    let deadline = rdtsc() + ms(10_000);
    while !FM_ARMED[k].load(Ordering::Acquire) {
        if rdtsc() > deadline {
            return 1;
        }
        core::hint::spin_loop();
    }
    let tid = Tid::from_raw(FM_TID[k].load(Ordering::Acquire));
    let woke = sched::wake(tid);
    FM_WOKEN[k].store(true, Ordering::Release);
    if woke { 0 } else { 2 }
}

/// Issue 10, defect 1: with the full-mailbox fallback forced, a wake-up that lands while the
/// woken thread still runs (between `Blocked` and its switch) must not put it on a run
/// queue; it then exits, and a stale queue entry would resume a dead context.
fn full_mailbox_wake(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!(
            "{SKIP}needs two CPUs (the waiter spins with interrupts off)"
        ));
    }
    let n = ncpus();
    sched::force_mailbox_full(true);
    let mut result = Ok(());
    // One pair at a time: a waiter spins with interrupts off, so a waker queued behind
    // another pair's waiter on its CPU would never run.
    'pairs: for p in 0..4 * FM_PAIRS {
        let k = p % FM_PAIRS;
        FM_ARMED[k].store(false, Ordering::Relaxed);
        FM_WOKEN[k].store(false, Ordering::Relaxed);
        let a = p as u32 % n;
        let b = (a + 1) % n;
        // The waker first: the waiter spins with interrupts off, so if it ran on this CPU
        // before the waker existed (this thread preempted between the two spawns), nobody
        // would wake it. The waiter publishes its own id before it arms.
        let mut tids = Vec::new();
        match Builder::new().pin(b).spawn(fm_waker, k as u64) {
            Ok(t) => tids.push(t),
            Err(e) => {
                result = Err(format!("spawn waker: {e}"));
                break;
            }
        }
        match Builder::new().pin(a).spawn(fm_waiter, k as u64) {
            Ok(t) => tids.push(t),
            Err(e) => result = Err(format!("spawn waiter: {e}")),
        }
        match join_all(&tids, 20_000) {
            Ok(c) if c.iter().all(|&x| x == 0) => {}
            Ok(c) => result = Err(format!("pair {p} (CPUs {a}, {b}): exit codes {c:?}")),
            Err(e) => result = Err(e),
        }
        // More threads on both CPUs afterwards: a stale queue entry would run one of them
        // (or the dead waiter) on a stack that is gone.
        if result.is_ok() {
            let more: Vec<Tid> = [a, b, a, b]
                .iter()
                .filter_map(|&c| Builder::new().pin(c).spawn(worker, 3).ok())
                .collect();
            if let Err(e) = join_all(&more, 20_000) {
                result = Err(e);
            }
        }
        if result.is_err() {
            break 'pairs;
        }
    }
    sched::force_mailbox_full(false);
    result
}

fn blocked_until_woken(_: u64) -> u64 {
    FLAG.store(true, Ordering::Release);
    sched::block_unless(|| true);
    42
}

/// Issue 10, defect 4: a slot's generation near the 32-bit wrap still names its thread
/// (ids used to keep only 22 bits of it: `wake` and `join` then refused a live thread).
fn generation_wrap(_: &BootState) -> TestResult {
    for generation in [(1 << 22) + 3, u32::MAX - 1] {
        FLAG.store(false, Ordering::Release);
        sched::age_free_slots(generation);
        let t = Builder::new()
            .pin(0)
            .spawn(blocked_until_woken, 0)
            .map_err(|e| format!("spawn: {e}"))?;
        let d = rdtsc() + ms(5000);
        while !FLAG.load(Ordering::Acquire) && rdtsc() < d {
            sched::yield_now();
        }
        // Wake until it takes (it may not have blocked yet); a refused id never takes.
        let mut woke = false;
        while !woke && rdtsc() < d {
            woke = sched::wake(t);
            sched::yield_now();
        }
        check(woke, || format!("wake refused the live thread {t}"))?;
        let code = join_all(&[t], 5000)?[0];
        check(code == 42, || format!("join gave {code}"))?;
    }
    Ok(())
}

static HELD_BY_FAULTER: crate::sched::park::Mutex<u64> = crate::sched::park::mutex(0);

fn lock_then_fault(keep: u64) -> u64 {
    let g = HELD_BY_FAULTER.lock();
    if keep == 0 {
        drop(g);
        return crate::sys::deliberate_page_fault();
    }
    let r = crate::sys::deliberate_page_fault();
    drop(g);
    r
}

/// Issue 10, defect 6 (the allowed case): a thread that took and released a sleeping lock,
/// then faults, is killed alone and the lock is free.
fn killed_after_unlock(_: &BootState) -> TestResult {
    let t = Builder::new()
        .pin(ncpus() - 1)
        .spawn(lock_then_fault, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let code = join_all(&[t], 10_000)?[0];
    check(code == sched::KILLED, || {
        format!("exit code {code:#x}, want KILLED")
    })?;
    let g = HELD_BY_FAULTER.lock_with_deadline(rdtsc() + ms(2000));
    check(g.is_some(), || {
        "the lock is still held after the kill".into()
    })
}

/// Issue 10, defect 6: with `exo.fault_holding_lock=1`, a thread faults while it holds a
/// sleeping lock. Killing it would leave the lock held for good, so the machine must stop
/// (CI checks the `not killed` line, the PANIC and the failure exit). Without the option,
/// skipped.
fn fault_holding_lock(s: &BootState) -> TestResult {
    if !s.opts.fault_holding_lock {
        return Err(format!(
            "{SKIP}needs exo.fault_holding_lock=1 (stops the machine)"
        ));
    }
    let t = Builder::new()
        .pin(ncpus() - 1)
        .spawn(lock_then_fault, 1)
        .map_err(|e| format!("spawn: {e}"))?;
    let _ = sched::join_until(t, rdtsc() + ms(5000));
    match HELD_BY_FAULTER.lock_with_deadline(rdtsc() + ms(2000)) {
        Some(_) => Err("the faulting thread's lock was released".into()),
        None => Err("a thread was killed holding a sleeping lock: it stays held for good".into()),
    }
}

static IDLE_HELD: crate::sched::park::Mutex<u64> = crate::sched::park::mutex(0);

fn sleeping_holder(us: u64) -> u64 {
    let mut g = IDLE_HELD.lock();
    FLAG.store(true, Ordering::Release);
    sched::sleep_us(us);
    *g += 1;
    0
}

fn idle_job(_: u64) -> u64 {
    let mut g = IDLE_HELD.lock();
    *g += 10;
    *g
}

/// Issue 10, defect 11: a run-on-CPU job runs in the CPU's idle context with interrupts off;
/// if it needs a sleeping lock whose holder sleeps on (or is queued on) that same CPU, it
/// used to spin for good (no tick, no switch). The idle context now yields to the CPU's
/// threads while it waits, so the holder runs and releases.
fn idle_job_on_held_mutex(_: &BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs a second CPU for the job"));
    }
    let cpu = ncpus() - 1;
    *IDLE_HELD.lock() = 0;
    FLAG.store(false, Ordering::Release);
    let h = Builder::new()
        .pin(cpu)
        .spawn(sleeping_holder, 20_000)
        .map_err(|e| format!("spawn: {e}"))?;
    let d = rdtsc() + ms(5000);
    while !FLAG.load(Ordering::Acquire) {
        if rdtsc() > d {
            return Err("holder never took the lock".into());
        }
        sched::yield_now();
    }
    // The holder now sleeps on `cpu`, which goes idle and takes the job.
    let r = cpus::run_on(
        exo_percpu::CpuId(cpu),
        idle_job,
        0,
        crate::smp::time::Deadline::after_ms(10_000),
    );
    check(r == Ok(11), || {
        format!("the job on CPU {cpu} gave {r:?} (holder first: want 11)")
    })?;
    join_all(&[h], 10_000).map(|_| ())
}
