//! IPC bench rows: `ipc.rtt.64.kthread` (two kernel threads on one CPU, 64-byte `call` +
//! `reply_recv` round trip, fastpath on), `ipc.slowpath.rtt.64.kthread` (the same with the
//! fastpath off) and `ipc.rtt.64.xcore.kthread` (client on CPU 0, server on the last CPU:
//! always the slow path, wake IPIs). Timed by the client around each `call`.

use crate::harness::Suite;
use crate::harness::bench::{Bench, emit};
use crate::ipc::{self, EpRef, Msg, NO_DEADLINE};
use crate::kbench;
use crate::sched::{self, Builder};
use crate::smp::cpus;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::tsc::{rdtsc, rdtsc_precise};

// Named to run after the `sched` group: these rows start the scheduler, and the groups before
// `sched` (the `ipi` row among them) are measured with it off.
kbench!(Suite::Single, "sched.ipc", rows);

const ROUNDS: usize = 2000;
const WARM: usize = 50;
const STOP: u32 = 0xffff;

static EP: AtomicU64 = AtomicU64::new(0);
static OVERHEAD: AtomicU64 = AtomicU64::new(0);
static SAMPLES: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());

fn ep() -> EpRef {
    EpRef::from_raw(EP.load(Ordering::Acquire))
}

/// Echoes every message back (words + 1) until `STOP`.
fn server(_: u64) -> u64 {
    let ep = ep();
    let Ok(mut m) = ipc::recv(ep, NO_DEADLINE) else {
        return 1;
    };
    loop {
        let mut r = m;
        r.words.iter_mut().for_each(|x| *x = x.wrapping_add(1));
        if m.label == STOP {
            return u64::from(ipc::reply(&r).is_err());
        }
        m = match ipc::reply_recv(ep, &r, NO_DEADLINE) {
            Ok(m) => m,
            Err(_) => return 1,
        };
    }
}

fn client(_: u64) -> u64 {
    let ep = ep();
    let overhead = OVERHEAD.load(Ordering::Relaxed);
    let mut v = Vec::with_capacity(ROUNDS);
    let mut m = Msg::new(1, [7; 8]);
    let mut bad = 0;
    for k in 0..ROUNDS + WARM {
        m.words[0] = k as u64;
        let t0 = rdtsc_precise();
        let r = ipc::call(ep, 5, &m, NO_DEADLINE);
        let t1 = rdtsc_precise();
        match r {
            Ok(r) if r.words[0] == k as u64 + 1 => {}
            _ => bad += 1,
        }
        if k >= WARM {
            v.push((t1 - t0).saturating_sub(overhead));
        }
    }
    let _ = ipc::call(ep, 5, &Msg::new(STOP, [0; 8]), NO_DEADLINE);
    *SAMPLES.lock() = v;
    bad
}

fn rtt(client_cpu: u32, server_cpu: u32, fast: bool) -> Option<smp_bench::Stats> {
    let e = ipc::create().ok()?;
    EP.store(e.raw(), Ordering::Release);
    ipc::set_fastpath(fast);
    let s = Builder::new().pin(server_cpu).spawn(server, 0).ok()?;
    // The server first: it waits in `recv` when the client's first call comes.
    while ipc::queued(e) != Some((0, 1)) {
        sched::yield_now();
    }
    let c = Builder::new().pin(client_cpu).spawn(client, 0).ok()?;
    let d = rdtsc() + 120 * crate::smp::time::tsc_hz();
    let ok = sched::join_until(c, d) == Ok(0) && sched::join_until(s, d) == Ok(0);
    ipc::set_fastpath(true);
    let _ = ipc::destroy(e);
    let mut v = core::mem::take(&mut *SAMPLES.lock());
    if !ok {
        return None;
    }
    smp_bench::stats_of(&mut v, 0)
}

fn rows(b: &mut Bench<'_>) {
    // No scheduler, no rows: an error (until 2026-12-06 a warning; found by review).
    if !sched::running()
        && let Err(e) = sched::init(false, 1000)
    {
        crate::harness::bench::broken(format_args!(
            "sched.ipc: scheduler did not start ({e}); no ipc rows"
        ));
        return;
    }
    OVERHEAD.store(b.overhead, Ordering::Relaxed);
    let cpu = cpus::online().map(|b| b.hot.cpu_id).max().unwrap_or(0);
    let (f0, s0) = ipc::stats();
    emit("ipc.rtt.64.kthread", rtt(cpu, cpu, true), &mut b.count);
    let (f1, s1) = ipc::stats();
    emit(
        "ipc.slowpath.rtt.64.kthread",
        rtt(cpu, cpu, false),
        &mut b.count,
    );
    let (f2, s2) = ipc::stats();
    crate::kprintln!(
        "INFO,ipc.paths,fast_on,fast,{},slow,{},fast_off,fast,{},slow,{}",
        f1 - f0,
        s1 - s0,
        f2 - f1,
        s2 - s1
    );
    if cpu != 0 {
        emit("ipc.rtt.64.xcore.kthread", rtt(0, cpu, true), &mut b.count);
    }
}

// Cross-core matrix of the contended suite: for every ordered pair (a, b) of the first
// `exo.c2c_cpus` CPUs, a client on a and a server on b make 64-byte round trips through a
// fusion channel (`ipc.rtt.64.xcore.<a>.<b>`) and through its endpoint, the baseline
// (`ipc.rtt.64.xcore.base.<a>.<b>`); an INFO line gives their ratio. Timing rows: not under
// icount (one vCPU runs at a time there, so polling measures the scheduler of QEMU).
kbench!(Suite::Contended, "ipc.xcore", xcore_matrix);

const XROUNDS: usize = 300;
const XWARM: usize = 20;
static XCHAN: spin::Mutex<Option<alloc::sync::Arc<ipc::fusion::Channel>>> = spin::Mutex::new(None);
static XBASE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn xchan() -> Option<alloc::sync::Arc<ipc::fusion::Channel>> {
    XCHAN.lock().clone()
}

fn xserver(_: u64) -> u64 {
    let Some(c) = xchan() else { return 1 };
    let base = XBASE.load(Ordering::Acquire);
    let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
    let r = c.serve(base, d, |m| {
        if m.label == STOP {
            return None;
        }
        let mut r = *m;
        r.words[0] = r.words[0].wrapping_add(1);
        Some(r)
    });
    u64::from(r.is_err())
}

fn xclient(_: u64) -> u64 {
    let Some(c) = xchan() else { return 1 };
    let base = XBASE.load(Ordering::Acquire);
    let overhead = OVERHEAD.load(Ordering::Relaxed);
    // One deadline for the whole run (no clock read inside the timed call).
    let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
    let mut v = Vec::with_capacity(XROUNDS);
    let mut bad = 0;
    for k in 0..XROUNDS + XWARM {
        let m = Msg::new(1, [k as u64; 8]);
        let t0 = rdtsc_precise();
        let r = if base {
            c.call_endpoint(&m, d)
        } else {
            c.call(&m, d)
        };
        let t1 = rdtsc_precise();
        if !matches!(r, Ok(r) if r.words[0] == k as u64 + 1) {
            bad += 1;
        }
        if k >= XWARM {
            v.push((t1 - t0).saturating_sub(overhead));
        }
    }
    let stop = Msg::new(STOP, [0; 8]);
    let _ = if base {
        c.call_endpoint(&stop, d)
    } else {
        c.call(&stop, d)
    };
    *SAMPLES.lock() = v;
    bad
}

fn xrtt(a: u32, b: u32, base: bool) -> Option<smp_bench::Stats> {
    let c = alloc::sync::Arc::new(ipc::fusion::Channel::new().ok()?);
    *XCHAN.lock() = Some(c.clone());
    XBASE.store(base, Ordering::Release);
    let spawned = Builder::new().pin(b).spawn(xserver, 0).and_then(|s| {
        Builder::new()
            .pin(a)
            .spawn(xclient, 0)
            .map(|t| (s, t))
            .inspect_err(|_| c.close())
    });
    let Ok((s, t)) = spawned else {
        // The channel (and its endpoint) goes with the last reference.
        *XCHAN.lock() = None;
        return None;
    };
    let d = rdtsc() + 60 * crate::smp::time::tsc_hz();
    let ok = sched::join_until(t, d) == Ok(0) && sched::join_until(s, d) == Ok(0);
    c.close();
    *XCHAN.lock() = None;
    let mut v = core::mem::take(&mut *SAMPLES.lock());
    if !ok {
        return None;
    }
    smp_bench::stats_of(&mut v, 0)
}

fn xcore_matrix(b: &mut Bench<'_>) {
    if b.state.opts.mode == Some(smp_bench::Mode::Icount) {
        return;
    }
    if !sched::running()
        && let Err(e) = sched::init(false, 1000)
    {
        crate::harness::bench::broken(format_args!(
            "ipc.xcore: scheduler did not start ({e}); no ipc.xcore rows"
        ));
        return;
    }
    OVERHEAD.store(b.overhead, Ordering::Relaxed);
    let all: Vec<u32> = cpus::online().map(|c| c.hot.cpu_id).collect();
    let m = all.len().min(b.state.opts.c2c_cpus as usize);
    for &x in &all[..m] {
        for &y in &all[..m] {
            if x == y {
                continue;
            }
            let f = xrtt(x, y, false);
            let base = xrtt(x, y, true);
            emit(&alloc::format!("ipc.rtt.64.xcore.{x}.{y}"), f, &mut b.count);
            emit(
                &alloc::format!("ipc.rtt.64.xcore.base.{x}.{y}"),
                base,
                &mut b.count,
            );
            if let (Some(f), Some(base)) = (f, base) {
                crate::kprintln!(
                    "INFO,ipc.xcore.ratio,{x},{y},fusion,{},base,{},ratio_pct,{},fusion_rings,{}",
                    f.p50,
                    base.p50,
                    f.p50 * 100 / base.p50.max(1),
                    ipc::fusion::ENABLED
                );
            }
        }
    }
}
