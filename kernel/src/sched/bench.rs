//! Scheduler benchmark rows: `ctx.switch` (and `.raw`, `.fpu.lazy`, `.fpu.eager`),
//! `thread.spawn`, `sched.pick_next`, `sched.wake.xcore`; the mutex rows live beside the lock
//! rows. Threads are pinned so every number is about one known CPU (or pair).

use crate::harness::Suite;
use crate::harness::bench::{Bench, emit};
use crate::kbench;
use crate::smp::tsc_sync::offset_of;

kbench!(Suite::Single, "sched", rows);
use crate::sched::{self, Builder, Tid};
use crate::smp::cpus;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::{rdtsc, rdtsc_precise};
use exo_percpu::CpuId;
use exo_sched::{Priority, Queue, RunQueue, ThreadRef};
use smp_bench::{Stats, one_way_latency};

const ROUNDS: usize = 1000;
const WARM: usize = 50;

static SAMPLES: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());
/// The timing pair's cost (`Bench::overhead`), subtracted from every round trip before it is
/// halved (until 2026-12-05 the switch rows kept it: half a pair too much in each sample).
static PAIR: AtomicU64 = AtomicU64::new(0);
static FPU_TOUCH: AtomicBool = AtomicBool::new(false);
/// `ctx.switch.raw`: the timed thread records its CPU's switches over the timed rounds.
static RAW: AtomicBool = AtomicBool::new(false);
// The timed rounds' switches (two a round) fit the switch buffer: none is dropped.
const _: () = assert!(2 * ROUNDS <= sched::SWITCH_SAMPLES);
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether the switched FPU state includes AVX (the kernel's XCR0), read once per round.
static FPU_AVX: AtomicBool = AtomicBool::new(false);

/// Dirties the vector registers, the AVX upper halves too where the state has them: target 7
/// is FPU/SSE/AVX state (XSAVE family), and with AVX clean XSAVEOPT skips it. Until
/// 2026-12-06 SSE only (found by review).
fn touch_fpu() {
    static BUF: [u8; 512] = [7; 512];
    crate::sched::fpu::load_regs(&BUF, FPU_AVX.load(Ordering::Relaxed));
}

/// Yields until told to stop (the partner of the timed thread), touching the FPU if asked.
fn yielder(_: u64) -> u64 {
    let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
    while !STOP.load(Ordering::Acquire) && rdtsc() < d {
        if FPU_TOUCH.load(Ordering::Relaxed) {
            touch_fpu();
        }
        sched::yield_now();
    }
    0
}

/// Times `ROUNDS` yields to the partner: each is two switches (there and back).
fn timed_yielder(_: u64) -> u64 {
    let pair = PAIR.load(Ordering::Relaxed);
    let mut v = Vec::with_capacity(ROUNDS);
    let raw = RAW.load(Ordering::Relaxed);
    for i in 0..ROUNDS + WARM {
        if raw && i == WARM {
            // From the first timed round, this CPU's switches only: exactly the 2 * ROUNDS
            // switches of the timed rounds (until 2026-12-05 the recording began before
            // the threads were spawned, took the warm-up, the threads' first switches and
            // other CPUs' switches, and the buffer dropped the last timed ones).
            sched::record_switches(Some(sched::this_cpu()));
        }
        if FPU_TOUCH.load(Ordering::Relaxed) {
            touch_fpu();
        }
        let t0 = rdtsc_precise();
        sched::yield_now();
        let t1 = rdtsc_precise();
        if i >= WARM {
            // Halved to nearest, as every side's `ctx.switch` (until 2026-12-05 floored here,
            // rounded up on the Linux peer).
            v.push(smp_bench::per_call_between(t0, t1, pair, 2));
        }
    }
    if raw {
        sched::record_switches(None);
    }
    STOP.store(true, Ordering::Release);
    *SAMPLES.lock() = v;
    0
}

/// One ping-pong of two threads pinned to `cpu`; the timed one's samples.
fn pingpong(cpu: u32, fpu: bool) -> Option<Stats> {
    let avx = crate::sched::fpu::info().is_some_and(|i| i.xcr0 & exo_arch::fpu::XFEATURE_AVX != 0);
    FPU_AVX.store(avx, Ordering::Relaxed);
    FPU_TOUCH.store(fpu, Ordering::Relaxed);
    STOP.store(false, Ordering::Release);
    let a = Builder::new().pin(cpu).spawn(yielder, 0).ok()?;
    let b = Builder::new().pin(cpu).spawn(timed_yielder, 0).ok()?;
    let d = rdtsc() + 120 * crate::smp::time::tsc_hz();
    let ok = sched::join_until(b, d).is_ok() & sched::join_until(a, d).is_ok();
    FPU_TOUCH.store(false, Ordering::Relaxed);
    let mut v = core::mem::take(&mut *SAMPLES.lock());
    if !ok {
        return None;
    }
    smp_bench::stats_of(&mut v, 0)
}

/// The scheduler rows of `exo.job=bench` (each part skipped unless `b.wants` it:
/// `exo.bench=sched:ctx.switch.raw` runs the plain ping-pong alone).
fn rows(b: &mut Bench<'_>) {
    // No scheduler, no rows: an error (until 2026-12-06 a warning; found by review).
    if !sched::running()
        && let Err(e) = sched::init(false, 1000)
    {
        crate::harness::bench::broken(format_args!(
            "sched: scheduler did not start ({e}); no scheduler rows"
        ));
        return;
    }
    let cpu = cpus::online().map(|b| b.hot.cpu_id).max().unwrap_or(0);
    PAIR.store(b.overhead, Ordering::Relaxed);
    if b.wants(&["ctx.switch"]) {
        // Not recording: the switch buffer's two TSC reads and store are instrumentation.
        b.emit("ctx.switch", pingpong(cpu, false));
    }
    if b.wants(&["ctx.switch.raw"]) {
        RAW.store(true, Ordering::Relaxed);
        let ok = pingpong(cpu, false).is_some();
        RAW.store(false, Ordering::Relaxed);
        sched::record_switches(None); // a round that failed may have left it on
        let mut raw = if ok {
            sched::switch_samples()
        } else {
            Vec::new()
        };
        // The timing pair subtracted, as from every cycle figure (targets.md; until
        // 2026-12-05 kept).
        b.emit("ctx.switch.raw", smp_bench::stats_of(&mut raw, b.overhead));
        crate::kprintln!(
            "INFO,ctx.switch.raw,samples,{},buffer,{}",
            raw.len(),
            sched::SWITCH_SAMPLES
        );
    }
    if crate::sched::fpu::info().is_some() {
        let was = crate::sched::fpu::eager();
        if b.wants(&["ctx.switch.fpu.lazy"]) {
            crate::sched::fpu::set_eager(false);
            b.emit("ctx.switch.fpu.lazy", pingpong(cpu, true));
        }
        if b.wants(&["ctx.switch.fpu.eager"]) {
            crate::sched::fpu::set_eager(true);
            b.emit("ctx.switch.fpu.eager", pingpong(cpu, true));
        }
        crate::sched::fpu::set_eager(was);
    }
    if b.wants(&["thread.spawn"]) {
        b.emit("thread.spawn", spawn_row(b.overhead));
    }
    if b.wants(&["mutex.fast", "cas.locked"]) {
        mutex_fast_rows(b.overhead, &mut b.count);
    }
    if b.wants(&["sched.pick_next"]) {
        b.emit("sched.pick_next", pick_next_row(b.overhead));
    }
    if b.wants(&["sched.wake.xcore"])
        && let Some(c) = cpus::online().find(|c| c.hot.cpu_id != 0)
    {
        b.emit("sched.wake.xcore", wake_row(c.hot.cpu_id));
    }
}

fn nothing(_: u64) -> u64 {
    0
}

/// Mean cost of one `spawn` over batches of 100 (the threads are pinned here and run only
/// when the batch is joined); `pair`: the timing pair, subtracted from the batch.
fn spawn_row(pair: u64) -> Option<Stats> {
    let me = sched::this_cpu();
    let mut v = Vec::new();
    let mut tids: Vec<Tid> = Vec::with_capacity(100);
    for round in 0..22 {
        tids.clear();
        let t0 = rdtsc_precise();
        for _ in 0..100 {
            match Builder::new().pin(me).spawn(nothing, 0) {
                Ok(t) => tids.push(t),
                Err(_) => break,
            }
        }
        let t1 = rdtsc_precise();
        let n = tids.len() as u64;
        let d = rdtsc() + 30 * crate::smp::time::tsc_hz();
        for &t in &tids {
            let _ = sched::join_until(t, d);
        }
        if round >= 2 && n == 100 {
            v.push(smp_bench::per_call_between(t0, t1, pair, n));
        }
    }
    smp_bench::stats_of(&mut v, 0)
}

/// `pick_next` on a run queue holding 64 runnable threads over 8 priorities (each pick's
/// thread is put back untimed); `pair`: the timing pair, subtracted.
fn pick_next_row(pair: u64) -> Option<Stats> {
    let mut rq: Box<RunQueue<{ sched::MAX_THREADS }>> = Box::new(RunQueue::new());
    for t in 0..64u32 {
        let p = Priority::new((t % 8) as u8 * 4).unwrap_or(Priority::MIN);
        let _ = rq.enqueue(ThreadRef(t), p, Queue::Normal);
    }
    let mut v = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t0 = rdtsc_precise();
        let t = core::hint::black_box(&mut *rq).pick_next();
        let t1 = rdtsc_precise();
        if let Some(t) = t {
            let p = Priority::new((t.0 % 8) as u8 * 4).unwrap_or(Priority::MIN);
            let _ = rq.enqueue(t, p, Queue::Normal);
        }
        v.push(t1 - t0);
    }
    let overhead = v.iter().copied().min().unwrap_or(0).min(pair);
    smp_bench::stats_of(&mut v, overhead)
}

static WAKE_T0: AtomicU64 = AtomicU64::new(0);
static WAKE_SEQ: AtomicU64 = AtomicU64::new(0);
static WAKE_SEEN: AtomicU64 = AtomicU64::new(0);
static WAKE_CPU: AtomicU32 = AtomicU32::new(0);
static WAKE_V: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());

/// The woken side: blocks until the sequence moves, stamps the wake-up.
fn wakee(rounds: u64) -> u64 {
    let me = offset_of(CpuId(sched::this_cpu()));
    let them = offset_of(CpuId(WAKE_CPU.load(Ordering::Relaxed)));
    let mut v = Vec::with_capacity(rounds as usize);
    let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
    for k in 1..=rounds {
        while WAKE_SEQ.load(Ordering::Acquire) < k {
            if rdtsc() > d {
                return 1;
            }
            sched::block_unless(|| WAKE_SEQ.load(Ordering::Acquire) < k);
        }
        let t1 = rdtsc();
        v.push(one_way_latency(WAKE_T0.load(Ordering::Relaxed), them, t1, me).clamped());
        WAKE_SEEN.store(k, Ordering::Release);
    }
    *WAKE_V.lock() = v;
    0
}

/// One-way latency of a cross-CPU wake-up: TSC at the `wake` call on CPU 0 to TSC when the
/// woken thread runs on `cpu` (mailbox, wake IPI, idle exit, switch), corrected by the
/// measured TSC offsets.
fn wake_row(cpu: u32) -> Option<Stats> {
    const R: u64 = 300;
    WAKE_SEQ.store(0, Ordering::Relaxed);
    WAKE_SEEN.store(0, Ordering::Relaxed);
    WAKE_CPU.store(sched::this_cpu(), Ordering::Relaxed);
    let w = Builder::new().pin(cpu).spawn(wakee, R).ok()?;
    let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
    for k in 1..=R {
        // Let the wakee block again (and its CPU go idle) before the next wake.
        let settle = rdtsc() + crate::smp::time::tsc_hz() / 20_000;
        while rdtsc() < settle {
            core::hint::spin_loop();
        }
        WAKE_T0.store(rdtsc(), Ordering::Relaxed);
        WAKE_SEQ.store(k, Ordering::Release);
        sched::wake(w);
        while WAKE_SEEN.load(Ordering::Acquire) < k {
            if rdtsc() > d {
                break;
            }
            core::hint::spin_loop();
        }
    }
    let ok = sched::join_until(w, d) == Ok(0);
    let mut v = core::mem::take(&mut *WAKE_V.lock());
    if !ok {
        return None;
    }
    let skip = v.len().min(10);
    smp_bench::stats_of(&mut v[skip..], 0)
}

static FAST: crate::sched::park::Mutex<u64> = crate::sched::park::mutex(0);

/// `mutex.fast`: lock + unlock of the blocking mutex, uncontended, beside the bare
/// `lock cmpxchg` it is built on (`cas.locked`), and their ratio.
fn mutex_fast_rows(overhead: u64, count: &mut u32) {
    const R: usize = 2000;
    const K: u64 = 16;
    let mut v = Vec::with_capacity(R);
    for _ in 0..R {
        let t0 = rdtsc_precise();
        for _ in 0..K {
            *core::hint::black_box(&FAST).lock() += 1;
        }
        let t1 = rdtsc_precise();
        v.push(smp_bench::per_call_between(t0, t1, overhead, K));
    }
    let m = smp_bench::stats_of(&mut v, 0);
    emit("mutex.fast", m, count);
    let word = AtomicU64::new(0);
    v.clear();
    for _ in 0..R {
        let t0 = rdtsc_precise();
        for _ in 0..K {
            let x = word.load(Ordering::Relaxed);
            let _ = core::hint::black_box(&word).compare_exchange(
                x,
                x + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            );
        }
        let t1 = rdtsc_precise();
        v.push(smp_bench::per_call_between(t0, t1, overhead, K));
    }
    let c = smp_bench::stats_of(&mut v, 0);
    emit("cas.locked", c, count);
    if let (Some(m), Some(c)) = (m, c)
        && c.p50 > 0
    {
        crate::kprintln!(
            "INFO,ratio,mutex.fast,cas.locked,{:.2}",
            m.p50 as f64 / c.p50 as f64
        );
    }
}
