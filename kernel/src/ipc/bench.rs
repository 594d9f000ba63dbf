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
    if !sched::running() && sched::init(false, 1000).is_err() {
        log::warn!("bench: scheduler did not start; no ipc rows");
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
