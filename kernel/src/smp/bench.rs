//! Bench rows of the CPUs: per-CPU reads (`percpu.read`, `percpu.pid`), the IPI round trip
//! (`ipi.rtt`), and the contended suite's core-to-core matrix (`c2c.rtt.<a>.<b>`,
//! `c2c.oneway.<a>.<b>` with its `ERRBOUND` line).

use crate::harness::Suite;
use crate::harness::bench::{Bench, N, emit};
use crate::kbench;
use crate::kprintln;
use crate::smp::cpus::{self, VEC_PING};
use crate::smp::time::Deadline;
use crate::smp::tsc_sync::offset_of;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_arch::tsc::{rdtsc, rdtsc_precise};
use exo_percpu::{CpuId, IrqGuard};
use smp_bench::{PingLine, Stats, TscOffset, one_way_latency};

kbench!(Suite::Single, "percpu", percpu_rows);
kbench!(Suite::Single, "ipi", ipi_row);
kbench!(Suite::Contended, "c2c", c2c_matrix);

/// Samples per core-to-core pair.
const C2C_N: usize = 200;

fn percpu_rows(b: &mut Bench<'_>) {
    let mut clk = rdtsc_precise;
    let g = IrqGuard::new();
    let st = smp_bench::bench_with(&mut clk, &mut *b.s, b.overhead, 100, N, 64, || {
        exo_percpu::cpu_id(&g)
    });
    b.emit("percpu.read", st);
    let st = smp_bench::bench_with(&mut clk, &mut *b.s, b.overhead, 100, N, 64, exo_percpu::pid);
    b.emit("percpu.pid", st);
    drop(g);
}

/// IPI round trip to the nearest other CPU: send, the handler counts, we see the count.
fn ipi_row(b: &mut Bench<'_>) {
    // IPI round trip to the nearest other CPU: send, the handler counts, we see the count.
    if let Some(t) = cpus::online().find(|b| b.hot.cpu_id != 0) {
        b.s.clear();
        let mut lost = 0u32;
        for i in 0..(N / 4) {
            let before = t.ext.pings.load(Ordering::Acquire);
            let t0 = rdtsc_precise();
            if apic::send_ipi(Dest::Id(t.hot.apic_id), Delivery::Fixed(VEC_PING)).is_err() {
                break;
            }
            let d = Deadline::after_ms(100);
            while t.ext.pings.load(Ordering::Acquire) == before && !d.passed() {
                core::hint::spin_loop();
            }
            let t1 = rdtsc_precise();
            // A ping not acknowledged within 100 ms is counted as lost, not timed: its
            // 100 ms are the deadline, not a round trip (until 2026-12-04 they went into
            // the row's max and tail; found by review).
            if t.ext.pings.load(Ordering::Acquire) == before {
                lost += 1;
                continue;
            }
            if i >= 10 {
                b.s.push((t1 - t0).saturating_sub(b.overhead));
            }
        }
        if lost > 0 {
            kprintln!("INFO,ipi.rtt,lost,{lost}");
        }
        let st = b.s.stats(0);
        b.emit("ipi.rtt", st);
    }
}

// ---- core-to-core ping-pong -------------------------------------------------------------

static PING: PingLine = PingLine::new();
static PONG: PingLine = PingLine::new();
static ONEWAY: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());
static RTT: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());
/// (offset, uncertainty) of the initiator, published before a pair runs.
static INIT_OFF: AtomicU64 = AtomicU64::new(0);
static INIT_UNC: AtomicU64 = AtomicU64::new(0);
/// The timing pair's cost (`Bench::overhead`), subtracted from each round trip.
static C2C_PAIR: AtomicU64 = AtomicU64::new(0);

/// Responder: echo each sequence number; record one-way latencies of the pings
/// (`smp_bench::answer`: the ping's timestamp read before the answer goes out).
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
        let Some((t_sent, t_recv)) =
            smp_bench::answer(&mut rdtsc, &PING, &PONG, first + i, || !d.passed())
        else {
            return 1;
        };
        if i >= 10 {
            oneway.push(one_way_latency(t_sent, them, t_recv, me).clamped());
        }
    }
    0
}

/// Initiator: time round trips with the serialised pair, its cost subtracted
/// (`smp_bench::ping`, as the Linux peer's `c2c.rtt`; until 2026-12-05 two unfenced `rdtsc`
/// and the pair kept: the Exo-OS side of the comparison carried the pair).
fn c2c_initiator(first: u64) -> u64 {
    let pair = C2C_PAIR.load(Ordering::Relaxed);
    let mut rtt = RTT.lock();
    rtt.clear();
    let d = Deadline::after_ms(5000);
    for i in 0..(C2C_N as u64 + 10) {
        let Some(t) = smp_bench::ping(&mut rdtsc_precise, pair, &PING, &PONG, first + i, || {
            !d.passed()
        }) else {
            return 1;
        };
        if i >= 10 {
            rtt.push(t);
        }
    }
    0
}

/// Why a pair of [`run_pair`] did not give a measurement.
#[derive(Debug)]
enum PairError {
    /// Posting or waiting failed.
    Run(cpus::RunError),
    /// A side returned non-zero (timed out waiting for the other: its samples are short).
    Side(CpuId, u64),
}

impl core::fmt::Display for PairError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PairError::Run(e) => write!(f, "{e}"),
            PairError::Side(c, r) => write!(f, "the side on CPU {} returned {r}", c.0),
        }
    }
}

/// Runs `fa` on `a` and `fb` on `b` at once (either may be the calling CPU); every side's
/// result is checked: until 2026-12-06 the local side's and the posted side's results were
/// dropped, and a pair whose side timed out emitted short rows without an error (found by
/// review).
fn run_pair(
    a: CpuId,
    fa: cpus::RemoteFn,
    b: CpuId,
    fb: cpus::RemoteFn,
    arg: u64,
) -> Result<(), PairError> {
    let me = exo_percpu::cpu_id_hint();
    let mut tickets = [None, None];
    for (k, (c, f)) in [(b, fb), (a, fa)].into_iter().enumerate() {
        if c != me {
            tickets[k] = Some((c, cpus::post(c, f, arg).map_err(PairError::Run)?));
        }
    }
    let mut failed = None;
    for (c, f) in [(a, fa), (b, fb)] {
        if c == me {
            let r = f(arg);
            if r != 0 {
                failed.get_or_insert(PairError::Side(c, r));
            }
        }
    }
    // Every posted side waited for, even after a failure: none may still run into the next
    // pair's samples unnoticed.
    for (c, t) in tickets.into_iter().flatten() {
        match cpus::wait(t, Deadline::after_ms(10_000)) {
            Ok(0) => {}
            Ok(r) => {
                failed.get_or_insert(PairError::Side(c, r));
            }
            Err(e) => return Err(PairError::Run(e)),
        }
    }
    failed.map_or(Ok(()), Err)
}

fn stats_of(v: &mut [u64]) -> Option<Stats> {
    smp_bench::stats_of(v, 0)
}

fn c2c_matrix(b: &mut Bench<'_>) {
    let (state, count) = (b.state, &mut b.count);
    let all: Vec<CpuId> = cpus::online().map(|b| CpuId(b.hot.cpu_id)).collect();
    let m = all.len().min(state.opts.c2c_cpus as usize);
    C2C_PAIR.store(b.overhead, Ordering::Relaxed);
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
                // A side that did not finish may still run and write into the next pair's
                // samples: no more pairs (until 2026-12-04 the matrix went on, and a
                // pair's row could hold another's samples; found by review).
                crate::harness::bench::broken(format_args!(
                    "c2c {}->{}: {e} (matrix stopped)",
                    a.0, b.0
                ));
                return;
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
}

crate::ktest!(
    crate::harness::Needs::Cpus,
    "smp.bench_pair_with_a_failed_side_is_an_error",
    pair_side_failed
);

fn side_ok(_: u64) -> u64 {
    0
}

fn side_timed_out(_: u64) -> u64 {
    1
}

/// A c2c pair whose side returns non-zero (it timed out) is an error, whether that side ran
/// here or on another CPU (at -smp 1 both run here).
fn pair_side_failed(_: &crate::boot::BootState) -> crate::harness::TestResult {
    let me = exo_percpu::cpu_id_hint();
    let other = cpus::online()
        .map(|b| CpuId(b.hot.cpu_id))
        .find(|&c| c != me)
        .unwrap_or(me);
    for (a, b) in [(me, other), (other, me)] {
        let r = run_pair(a, side_ok, b, side_ok, 0);
        crate::harness::check(r.is_ok(), || alloc::format!("{a:?}/{b:?} both 0: {r:?}"))?;
        for (fa, fb) in [
            (side_timed_out as cpus::RemoteFn, side_ok as cpus::RemoteFn),
            (side_ok, side_timed_out),
        ] {
            let r = run_pair(a, fa, b, fb, 0);
            crate::harness::check(matches!(r, Err(PairError::Side(_, 1))), || {
                alloc::format!("{a:?}/{b:?}: a side returned 1, run_pair gave {r:?}")
            })?;
        }
    }
    Ok(())
}
