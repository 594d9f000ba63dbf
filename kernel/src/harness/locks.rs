//! The locks the harness measures, behind one trait, and the lock-contention runner:
//! `k` CPUs (2..N) start at a common TSC instant, hammer one lock for a fixed window, and
//! record each hand-off (previous holder's release to the next holder's acquire, on the
//! boot CPU's time line through the synchronised TSC offsets) and their acquisition counts.

use crate::boot::BootState;
use crate::harness::Suite;
use crate::harness::bench::{Bench, N};
use crate::kbench;
use crate::smp::cpus;
use crate::smp::time::Deadline;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;
use exo_percpu::CpuId;

kbench!(Suite::Single, "lock", uncontended_rows);
kbench!(Suite::Contended, "lock", contended_rows);

/// State inside every measured lock.
#[derive(Debug, Default)]
pub struct Data {
    /// Increments (checked against the acquisitions at the end).
    pub count: u64,
    /// Boot-time-line TSC of the last release.
    pub released_at: i64,
    /// CPU that released last.
    pub last: u32,
}

const DATA: Data = Data {
    count: 0,
    released_at: 0,
    last: 0,
};
static TAS: exo_sync::TasMutex<Data> = exo_sync::TasMutex::new(DATA);
static TICKET: exo_sync::TicketMutex<Data> = exo_sync::TicketMutex::new(DATA);
static MCS: exo_sync::McsLock<Data> = exo_sync::McsLock::new(DATA);
/// The kernel's blocking mutex (`exo_sync::ParkingMutex` over the scheduler's wait queues).
static MUTEX: crate::sched::park::Mutex<Data> = crate::sched::park::mutex(DATA);

/// One lock kind of the suite.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Test-and-test-and-set with bounded exponential backoff.
    Tas,
    /// Ticket lock (FIFO).
    Ticket,
    /// MCS queue lock (each waiter spins on its own node).
    Mcs,
    /// The kernel's blocking mutex (CAS, bounded spin, park).
    Mutex,
}

impl Kind {
    /// Runs `f` under this kind's lock.
    #[inline(always)]
    pub fn with<R>(self, f: impl FnOnce(&mut Data) -> R) -> R {
        use exo_sync::WithLock;
        match self {
            Kind::Tas => TAS.with_lock(f),
            Kind::Ticket => TICKET.with_lock(f),
            Kind::Mcs => MCS.with_lock(f),
            Kind::Mutex => f(&mut MUTEX.lock()),
        }
    }
}

/// Every measured lock with its row name.
pub const ALL: [(&str, Kind); 4] = [
    ("tas", Kind::Tas),
    ("ticket", Kind::Ticket),
    ("mcs", Kind::Mcs),
    ("mutex", Kind::Mutex),
];

const MAX_SAMPLES_PER_CPU: usize = 4096;

struct Run {
    start: AtomicU64,
    end: AtomicU64,
    kind: AtomicU32,
}

static RUN: Run = Run {
    start: AtomicU64::new(0),
    end: AtomicU64::new(0),
    kind: AtomicU32::new(0),
};
static HANDOFFS: spin::Mutex<Vec<Vec<u64>>> = spin::Mutex::new(Vec::new());

fn participant(slot: u64) -> u64 {
    let cpu = exo_percpu::cpu_id_hint();
    let off = cpus::get(cpu).map_or(0, |b| b.ext.tsc_offset.load(Ordering::Relaxed));
    let kind = ALL[RUN.kind.load(Ordering::Relaxed) as usize].1;
    // Start and end are on the boot CPU's time line; this CPU's TSC runs `off` ahead.
    let start = (RUN.start.load(Ordering::Relaxed) as i64 + off) as u64;
    let end = (RUN.end.load(Ordering::Relaxed) as i64 + off) as u64;
    let mut samples: Vec<u64> = Vec::with_capacity(MAX_SAMPLES_PER_CPU);
    while rdtsc() < start {
        core::hint::spin_loop();
    }
    let mut acquisitions = 0u64;
    loop {
        let now = rdtsc();
        if now >= end {
            break;
        }
        kind.with(|d| {
            let t = rdtsc() as i64 - off;
            if d.last != cpu.0 && d.released_at != 0 && samples.len() < MAX_SAMPLES_PER_CPU {
                samples.push((t - d.released_at).max(0) as u64);
            }
            d.count += 1;
            d.last = cpu.0;
            d.released_at = rdtsc() as i64 - off;
        });
        acquisitions += 1;
    }
    if let Some(v) = HANDOFFS.lock().get_mut(slot as usize) {
        *v = samples;
    }
    acquisitions
}

/// Runs the contention rows for 2..=N CPUs (N capped by `exo.contend_max`).
pub fn contention(all: &[CpuId], state: &BootState, count: &mut u32) {
    let max = all.len().min(state.opts.contend_max as usize);
    let window = state.tsc.0 / 1000 * state.opts.contend_window_ms;
    for (ki, (name, kind)) in ALL.iter().enumerate() {
        for k in 2..=max {
            let set = &all[..k];
            kind.with(|d| *d = Data::default());
            *HANDOFFS.lock() = (0..k).map(|_| Vec::new()).collect();
            RUN.kind.store(ki as u32, Ordering::Relaxed);
            let start = rdtsc() + state.tsc.0 / 1000 * 5; // 5 ms for everyone to get ready
            RUN.start.store(start, Ordering::Relaxed);
            RUN.end.store(start + window, Ordering::Release);
            let mut acq: Vec<u64> = Vec::with_capacity(k);
            let mut ok = true;
            // One thread pinned per CPU (the caller is slot 0, on CPU 0), so the blocking
            // mutex can really park its waiters.
            let mut tids = Vec::with_capacity(k);
            for (i, &c) in set.iter().enumerate().skip(1) {
                match crate::sched::Builder::new()
                    .pin(c.0)
                    .spawn(participant, i as u64)
                {
                    Ok(t) => tids.push(t),
                    Err(e) => {
                        crate::harness::bench::broken(format_args!(
                            "contend.{name}.{k}: no participant on CPU {}: {e}",
                            c.0
                        ));
                        ok = false;
                    }
                }
            }
            acq.push(participant(0));
            let deadline = Deadline::after_ms(10_000);
            for t in tids {
                match crate::sched::join_until(t, deadline.tsc()) {
                    Ok(a) => acq.push(a),
                    Err(e) => {
                        // It may still run, and would write into the next round's data:
                        // no more rounds.
                        crate::harness::bench::broken(format_args!(
                            "contend.{name}.{k}: a participant did not finish: {e}"
                        ));
                        return;
                    }
                }
            }
            if !ok {
                continue;
            }
            let total: u64 = acq.iter().sum();
            let counted = kind.with(|d| d.count);
            if counted != total {
                crate::harness::bench::broken(format_args!(
                    "contend.{name}.{k}: the lock lost updates ({counted} counted, {total} made)"
                ));
                continue;
            }
            let mut merged: Vec<u64> = HANDOFFS.lock().iter().flatten().copied().collect();
            let mut row = arrayvec::ArrayString::<48>::new();
            let _ = write!(row, "contend.{name}.{k}");
            crate::harness::bench::emit_if_any(&row, smp_bench::stats_of(&mut merged, 0), count);
            let (mn, mx) = (
                acq.iter().min().copied().unwrap_or(0),
                acq.iter().max().copied().unwrap_or(0),
            );
            crate::harness::bench::emit_fair(&row, k as u32, mn, mx);
        }
    }
}

/// `lock.<kind>.uncontended`: one lock and unlock on one CPU, per kind.
fn uncontended_rows(b: &mut Bench<'_>) {
    let mut clk = exo_arch::tsc::rdtsc_precise;
    for (name, lock) in ALL {
        // One monomorphic closure per kind: the timed loop holds no dispatch on the kind.
        let stats = match lock {
            Kind::Tas => smp_bench::bench_with(&mut clk, &mut *b.s, b.overhead, 100, N, 16, || {
                Kind::Tas.with(|d| d.count += 1)
            }),
            Kind::Ticket => {
                smp_bench::bench_with(&mut clk, &mut *b.s, b.overhead, 100, N, 16, || {
                    Kind::Ticket.with(|d| d.count += 1)
                })
            }
            Kind::Mcs => smp_bench::bench_with(&mut clk, &mut *b.s, b.overhead, 100, N, 16, || {
                Kind::Mcs.with(|d| d.count += 1)
            }),
            Kind::Mutex => {
                smp_bench::bench_with(&mut clk, &mut *b.s, b.overhead, 100, N, 16, || {
                    Kind::Mutex.with(|d| d.count += 1)
                })
            }
        };
        let mut n = arrayvec::ArrayString::<48>::new();
        let _ = write!(n, "lock.{name}.uncontended");
        b.emit(&n, stats);
    }
}

/// `lock.<kind>.contended.<k>` and `FAIR` rows, on pinned threads (the blocking mutex parks
/// its waiters, so the scheduler is started first).
fn contended_rows(b: &mut Bench<'_>) {
    if !crate::sched::running()
        && let Err(e) = crate::sched::init(false, 1000)
    {
        log::warn!("contended: scheduler did not start ({e}); no contention rows");
        return;
    }
    let all: Vec<CpuId> = cpus::online().map(|c| CpuId(c.hot.cpu_id)).collect();
    contention(&all, b.state, &mut b.count);
}
