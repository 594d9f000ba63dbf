//! The benchmark suites: `exo.job=bench` (single-CPU rows) and `exo.job=contended`
//! (core-to-core matrix and lock contention). Output: `SUITE`, `BENCH`, `FAIR`, `END` lines
//! (see `smp-bench`), integers in TSC ticks; the mode in the SUITE line says what a tick is.

use crate::boot::BootState;
use crate::cmdline::Job;
use crate::cpus::{self, VEC_PING};
use crate::time::Deadline;
use crate::{kprintln, locks};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_arch::exit::{ExitCode, exit};
use exo_arch::tsc::{rdtsc, rdtsc_precise};
use exo_percpu::{CpuId, IrqGuard};
use smp_bench::{EndLine, Mode, Samples, Stats, SuiteLine, TscOffset, one_way_latency};

/// Samples per single-CPU row.
const N: usize = 2000;
/// Samples per core-to-core pair.
const C2C_N: usize = 200;

/// Prints a line built whole first (the console lock is per line, so rows never interleave).
fn line(args: core::fmt::Arguments<'_>) {
    let mut buf = arrayvec::ArrayString::<256>::new();
    let _ = buf.write_fmt(args);
    kprintln!("{}", buf.trim_end());
}

/// Prints one BENCH row (or a warning when there were no samples).
pub fn emit(name: &str, s: Option<Stats>, count: &mut u32) {
    match s {
        Some(s) => {
            line(format_args!("{}", smp_bench::BenchLine { name, stats: s }));
            *count += 1;
        }
        None => log::warn!("bench {name}: no samples"),
    }
}

/// Prints one FAIR row.
pub fn emit_fair(name: &str, ncpus: u32, min_acq: u64, max_acq: u64) {
    line(format_args!(
        "{}",
        smp_bench::FairLine {
            name,
            ncpus,
            min_acq,
            max_acq
        }
    ));
}

/// The mode: from the command line, else what boot detected.
fn mode(state: &BootState) -> Mode {
    state.opts.mode.unwrap_or(Mode::Tcg)
}

/// Runs the suite the job names and exits.
pub fn run(state: &BootState) -> ! {
    let suite = if state.opts.job == Job::Contended {
        "contended"
    } else {
        "smp"
    };
    let mut model = [0u8; 48];
    let header = SuiteLine {
        suite,
        tsc_start: rdtsc(),
        tsc_hz: state.tsc.0,
        mode: mode(state),
        ncpus: cpus::online_count(),
        git_rev: env!("EXO_GIT_REV"),
        cpu_model: exo_arch::cpu::model_name(&mut model),
    };
    line(format_args!("{header}"));
    let mut count = 0;
    if state.opts.job == Job::Contended {
        contended(state, &mut count);
    } else {
        single(state, &mut count);
    }
    line(format_args!(
        "{}",
        EndLine {
            suite,
            n_results: count
        }
    ));
    exit(ExitCode::Success)
}

fn clock() -> impl FnMut() -> u64 {
    rdtsc_precise
}

fn single(state: &BootState, count: &mut u32) {
    let mut s: Box<Samples<N>> = Box::new(Samples::new());
    let mut clk = clock();
    // The timing pair itself, raw (this is what every other row has subtracted).
    s.clear();
    for _ in 0..N {
        let t0 = rdtsc_precise();
        let t1 = rdtsc_precise();
        s.push(t1 - t0);
    }
    let overhead = s.stats(0).map_or(0, |st| st.min);
    emit("tsc.pair", s.stats(0), count);

    let g = IrqGuard::new();
    emit(
        "percpu.read",
        smp_bench::bench_with(&mut clk, &mut *s, overhead, 100, N, 64, || {
            exo_percpu::cpu_id(&g)
        }),
        count,
    );
    emit(
        "percpu.pid",
        smp_bench::bench_with(&mut clk, &mut *s, overhead, 100, N, 64, exo_percpu::pid),
        count,
    );
    drop(g);

    for (name, lock) in locks::ALL {
        // One monomorphic closure per kind: the timed loop holds no dispatch on the kind.
        let stats = match lock {
            locks::Kind::Tas => {
                smp_bench::bench_with(&mut clk, &mut *s, overhead, 100, N, 16, || {
                    locks::Kind::Tas.with(|d| d.count += 1)
                })
            }
            locks::Kind::Ticket => {
                smp_bench::bench_with(&mut clk, &mut *s, overhead, 100, N, 16, || {
                    locks::Kind::Ticket.with(|d| d.count += 1)
                })
            }
            locks::Kind::Mcs => {
                smp_bench::bench_with(&mut clk, &mut *s, overhead, 100, N, 16, || {
                    locks::Kind::Mcs.with(|d| d.count += 1)
                })
            }
            locks::Kind::Mutex => {
                smp_bench::bench_with(&mut clk, &mut *s, overhead, 100, N, 16, || {
                    locks::Kind::Mutex.with(|d| d.count += 1)
                })
            }
        };
        let mut n = arrayvec::ArrayString::<48>::new();
        let _ = write!(n, "lock.{name}.uncontended");
        emit(&n, stats, count);
    }

    // IPI round trip to the nearest other CPU: send, the handler counts, we see the count.
    if let Some(b) = cpus::online().find(|b| b.hot.cpu_id != 0) {
        s.clear();
        for i in 0..(N / 4) {
            let before = b.ext.pings.load(Ordering::Acquire);
            let t0 = rdtsc_precise();
            if apic::send_ipi(Dest::Id(b.hot.apic_id), Delivery::Fixed(VEC_PING)).is_err() {
                break;
            }
            let d = Deadline::after_ms(100);
            while b.ext.pings.load(Ordering::Acquire) == before && !d.passed() {
                core::hint::spin_loop();
            }
            let t1 = rdtsc_precise();
            if i >= 10 {
                s.push((t1 - t0).saturating_sub(overhead));
            }
        }
        emit("ipi.rtt", s.stats(0), count);
    }

    alloc_rows(&mut s, overhead, count);
    crate::bench_sched::rows(count);

    // boot.ms: first instruction to all CPUs online, in milliseconds (one sample).
    let ms = crate::time::ticks_to_us(state.aps_online_tsc - state.first_tsc).div_ceil(1000);
    emit(
        "boot.ms",
        Some(Stats {
            n: 1,
            mean: ms,
            min: ms,
            max: ms,
            p50: ms,
            p95: ms,
            p99: ms,
        }),
        count,
    );
}

// ---- core-to-core ping-pong -------------------------------------------------------------

#[repr(C, align(64))]
struct Line {
    seq: AtomicU64,
    tsc: AtomicU64,
}

static PING: Line = Line {
    seq: AtomicU64::new(0),
    tsc: AtomicU64::new(0),
};
static PONG: Line = Line {
    seq: AtomicU64::new(0),
    tsc: AtomicU64::new(0),
};
static ONEWAY: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());
static RTT: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());
/// (offset, uncertainty) of the initiator, published before a pair runs.
static INIT_OFF: AtomicU64 = AtomicU64::new(0);
static INIT_UNC: AtomicU64 = AtomicU64::new(0);

/// `cpu`'s measured TSC offset to the boot CPU (boot time line if not measured).
pub fn offset_of(cpu: CpuId) -> TscOffset {
    cpus::get(cpu).map_or(TscOffset::BOOT, |b| TscOffset {
        offset: b.ext.tsc_offset.load(Ordering::Relaxed),
        uncertainty: b.ext.tsc_uncertainty.load(Ordering::Relaxed),
    })
}

/// Responder: echo each sequence number; record one-way latencies of the pings.
fn c2c_responder(first: u64) -> u64 {
    let me = offset_of(exo_percpu::cpu_id_hint());
    let them = TscOffset {
        offset: INIT_OFF.load(Ordering::Relaxed) as i64,
        uncertainty: INIT_UNC.load(Ordering::Relaxed),
    };
    let mut oneway = ONEWAY.lock();
    oneway.clear();
    let d = Deadline::after_ms(5000);
    for i in 0..(C2C_N as u64 + 10) {
        let seq = first + i;
        while PING.seq.load(Ordering::Acquire) != seq {
            if d.passed() {
                return 1;
            }
            core::hint::spin_loop();
        }
        let t_recv = rdtsc();
        PONG.seq.store(seq, Ordering::Release);
        if i >= 10 {
            oneway.push(
                one_way_latency(PING.tsc.load(Ordering::Relaxed), them, t_recv, me).clamped(),
            );
        }
    }
    0
}

/// Initiator: time round trips.
fn c2c_initiator(first: u64) -> u64 {
    let mut rtt = RTT.lock();
    rtt.clear();
    let d = Deadline::after_ms(5000);
    for i in 0..(C2C_N as u64 + 10) {
        let seq = first + i;
        let t0 = rdtsc();
        PING.tsc.store(t0, Ordering::Relaxed);
        PING.seq.store(seq, Ordering::Release);
        while PONG.seq.load(Ordering::Acquire) != seq {
            if d.passed() {
                return 1;
            }
            core::hint::spin_loop();
        }
        let t1 = rdtsc();
        if i >= 10 {
            rtt.push(t1 - t0);
        }
    }
    0
}

/// Runs `fa` on `a` and `fb` on `b` at once (either may be the calling CPU).
fn run_pair(
    a: CpuId,
    fa: cpus::RemoteFn,
    b: CpuId,
    fb: cpus::RemoteFn,
    arg: u64,
) -> Result<(), cpus::RunError> {
    let me = exo_percpu::cpu_id_hint();
    for (c, f) in [(b, fb), (a, fa)] {
        if c != me {
            cpus::post(c, f, arg)?;
        }
    }
    for (c, f) in [(a, fa), (b, fb)] {
        if c == me {
            f(arg);
        }
    }
    for c in [a, b] {
        if c != me {
            cpus::wait(c, Deadline::after_ms(10_000))?;
        }
    }
    Ok(())
}

fn stats_of(v: &mut [u64]) -> Option<Stats> {
    smp_bench::stats_of(v, 0)
}

fn contended(state: &BootState, count: &mut u32) {
    let all: Vec<CpuId> = cpus::online().map(|b| CpuId(b.hot.cpu_id)).collect();
    let m = all.len().min(state.opts.c2c_cpus as usize);
    let mut seq = 1_000u64;
    for &a in &all[..m] {
        for &b in &all[..m] {
            if a == b {
                continue;
            }
            let o = offset_of(a);
            INIT_OFF.store(o.offset as u64, Ordering::Relaxed);
            INIT_UNC.store(o.uncertainty, Ordering::Relaxed);
            if let Err(e) = run_pair(a, c2c_initiator, b, c2c_responder, seq) {
                log::warn!("c2c {}->{} failed: {e}", a.0, b.0);
                continue;
            }
            seq += C2C_N as u64 + 100;
            let mut n = arrayvec::ArrayString::<48>::new();
            let _ = write!(n, "c2c.rtt.{}.{}", a.0, b.0);
            emit(&n, stats_of(&mut RTT.lock()), count);
            n.clear();
            let _ = write!(n, "c2c.oneway.{}.{}", a.0, b.0);
            emit(&n, stats_of(&mut ONEWAY.lock()), count);
            // The one-way values are exact only to within the two CPUs' offset uncertainties.
            let bound = o.uncertainty.saturating_add(offset_of(b).uncertainty);
            kprintln!("ERRBOUND,{n},{bound}");
        }
    }
    // Contention runs on pinned threads (the blocking mutex parks its waiters).
    if let Err(e) = crate::sched::init(false, 1000) {
        log::warn!("contended: scheduler did not start ({e}); no contention rows");
    }
    locks::contention(&all, state, count);
    scaling(&all, state, count);
}

type Obj64 = core::mem::MaybeUninit<[u8; 64]>;

/// `alloc.64` / `free.64` (one `Box` of 64 bytes through the kernel's `GlobalAlloc`) and
/// `alloc.4k` / `free.4k` (one frame through `kalloc`), singly and batched by 32.
fn alloc_rows(s: &mut Samples<N>, overhead: u64, count: &mut u32) {
    const K: usize = 32;
    let mut fs: Box<Samples<N>> = Box::new(Samples::new());
    // Warm the caches so the rows measure the steady state, not the first slab carving.
    let warm: Vec<Box<Obj64>> = (0..256).map(|_| Box::new_uninit()).collect();
    drop(warm);
    s.clear();
    for _ in 0..N {
        let t0 = rdtsc_precise();
        let b: Box<Obj64> = core::hint::black_box(Box::new_uninit());
        let t1 = rdtsc_precise();
        drop(b);
        let t2 = rdtsc_precise();
        s.push((t1 - t0).saturating_sub(overhead));
        fs.push((t2 - t1).saturating_sub(overhead));
    }
    emit("alloc.64", s.stats(0), count);
    emit("free.64", fs.stats(0), count);
    let mut slots: [Option<Box<Obj64>>; K] = [const { None }; K];
    s.clear();
    fs.clear();
    for _ in 0..N / 4 {
        let t0 = rdtsc_precise();
        for slot in slots.iter_mut() {
            *slot = Some(Box::new_uninit());
        }
        let t1 = rdtsc_precise();
        for slot in slots.iter_mut() {
            *slot = None;
        }
        let t2 = rdtsc_precise();
        s.push((t1 - t0).saturating_sub(overhead) / K as u64);
        fs.push((t2 - t1).saturating_sub(overhead) / K as u64);
    }
    emit("alloc.64.batch32", s.stats(0), count);
    emit("free.64.batch32", fs.stats(0), count);

    use crate::kalloc::{alloc_frame, free_frame};
    s.clear();
    fs.clear();
    for _ in 0..N {
        let t0 = rdtsc_precise();
        let f = alloc_frame();
        let t1 = rdtsc_precise();
        let Ok(f) = f else { break };
        free_frame(core::hint::black_box(f));
        let t2 = rdtsc_precise();
        s.push((t1 - t0).saturating_sub(overhead));
        fs.push((t2 - t1).saturating_sub(overhead));
    }
    emit("alloc.4k", s.stats(0), count);
    emit("free.4k", fs.stats(0), count);
    let mut frames: Vec<crate::kalloc::Frame> = Vec::with_capacity(K);
    s.clear();
    fs.clear();
    for _ in 0..N / 4 {
        let t0 = rdtsc_precise();
        for _ in 0..K {
            match alloc_frame() {
                Ok(f) => frames.push(f),
                Err(_) => break,
            }
        }
        let t1 = rdtsc_precise();
        let n = frames.len().max(1) as u64;
        for f in frames.drain(..) {
            free_frame(f);
        }
        let t2 = rdtsc_precise();
        s.push((t1 - t0).saturating_sub(overhead) / n);
        fs.push((t2 - t1).saturating_sub(overhead) / n);
    }
    emit("alloc.4k.batch32", s.stats(0), count);
    emit("free.4k.batch32", fs.stats(0), count);
}

static SCALE_START: AtomicU64 = AtomicU64::new(0);
static SCALE_END: AtomicU64 = AtomicU64::new(0);

/// One scaling participant: alloc+free pairs of 64 bytes until the window ends; returns
/// ticks per pair on this CPU.
fn scale_participant(_: u64) -> u64 {
    let off = offset_of(exo_percpu::cpu_id_hint()).offset;
    let start = (SCALE_START.load(Ordering::Relaxed) as i64 + off) as u64;
    let end = (SCALE_END.load(Ordering::Relaxed) as i64 + off) as u64;
    while rdtsc() < start {
        core::hint::spin_loop();
    }
    let t0 = rdtsc();
    let mut pairs = 0u64;
    while rdtsc() < end {
        for _ in 0..64 {
            drop(core::hint::black_box(Box::<Obj64>::new_uninit()));
        }
        pairs += 64;
    }
    (rdtsc() - t0) / pairs.max(1)
}

/// `scale.alloc64.<k>`: k CPUs allocate and free at once; one sample per CPU (ticks per
/// alloc+free pair). Per-CPU figures equal to the 1-CPU row mean no shared cache line.
fn scaling(all: &[CpuId], state: &BootState, count: &mut u32) {
    let window = state.tsc.0 / 1000 * state.opts.contend_window_ms;
    for k in 1..=all.len().min(state.opts.contend_max as usize) {
        let start = rdtsc() + state.tsc.0 / 1000 * 5;
        SCALE_START.store(start, Ordering::Relaxed);
        SCALE_END.store(start + window, Ordering::Release);
        let mut per_cpu: Vec<u64> = Vec::with_capacity(k);
        for &c in &all[1..k] {
            if let Err(e) = cpus::post(c, scale_participant, 0) {
                log::warn!("scale.alloc64.{k}: {e}");
            }
        }
        per_cpu.push(scale_participant(0));
        for &c in &all[1..k] {
            match cpus::wait(c, Deadline::after_ms(10_000)) {
                Ok(t) => per_cpu.push(t),
                Err(e) => log::warn!("scale.alloc64.{k}: {e}"),
            }
        }
        let mut n = arrayvec::ArrayString::<48>::new();
        let _ = write!(n, "scale.alloc64.{k}");
        emit(&n, stats_of(&mut per_cpu), count);
    }
}
