//! Cross-CPU TSC check at boot (in the spirit of Linux's warp check): for each AP, a
//! ping-pong with the BSP through one cache line estimates the AP's TSC offset to the BSP
//! with an uncertainty bound (half the best round trip, narrowed by intersecting samples).

use crate::smp::cpus;
use crate::smp::time::Deadline;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::tsc::rdtsc_precise;
use exo_percpu::{CpuId, IrqGuard};
use smp_bench::{SyncSample, TscOffset, estimate_offset};

/// Exchanges per CPU.
pub const ROUNDS: usize = 32;

#[repr(C, align(64))]
struct Line(AtomicU64);

/// The boot CPU's request: the sequence number of the current exchange. Each responder
/// answers in its own block's `tsc_resp` line.
static REQ: Line = Line(AtomicU64::new(0));

/// Errors of the check.
#[derive(Debug, Clone, Copy)]
pub enum SyncError {
    /// The AP did not take the responder job.
    Run(cpus::RunError),
    /// An exchange passed its deadline.
    Timeout,
}

impl core::fmt::Display for SyncError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SyncError::Run(e) => write!(f, "{e}"),
            SyncError::Timeout => write!(f, "an exchange passed its deadline"),
        }
    }
}

/// Test switch (`exo.tsc_mute_cpu=N`): CPU `N`'s responder answers nothing (`u32::MAX`: none).
static MUTE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(u32::MAX);

/// Makes CPU `cpu`'s responder answer nothing (its exchanges time out).
pub fn mute(cpu: u32) {
    MUTE.store(cpu, Ordering::Relaxed);
}

/// How long a responder waits for its first exchange (posted just before the boot CPU
/// starts them; a responder whose vCPU starts late finds the boot CPU gone past it and ends).
const START_MS: u64 = 10_000;

fn responder(first_seq: u64) -> u64 {
    let g = IrqGuard::new();
    let me = cpus::this(&g);
    if me.hot.cpu_id == MUTE.load(Ordering::Relaxed) {
        return 2;
    }
    let resp = &me.ext.tsc_resp;
    // The rounds' 2 s start at the first exchange. Until 2026-12-05 they started when the
    // job did: the next AP's responder, posted while this AP was measured, had spent them
    // when this AP failed, so it failed too, and every AP after it (2 s each, then measured
    // again alone; found by review; `exo.tsc_mute_cpu`, CI step).
    let mut deadline = Deadline::after_ms(START_MS);
    for i in 0..ROUNDS as u64 {
        let seq = first_seq + i;
        loop {
            let req = REQ.0.load(Ordering::Acquire);
            if req == seq {
                break;
            }
            // Sequence numbers only grow, and the boot CPU waits on each until answered or
            // its deadline: past `seq`, it gave up on this responder (a late one must not
            // hold its CPU's mailbox for `START_MS` into the second pass; found by review).
            if req > seq || deadline.passed() {
                return 1;
            }
            core::hint::spin_loop();
        }
        if i == 0 {
            deadline = Deadline::after_ms(2000);
        }
        let t2 = rdtsc_precise();
        resp.tsc.store(t2, Ordering::Relaxed);
        resp.seq.store(seq, Ordering::Release);
    }
    0
}

/// The exchanges with the responder already posted on `b`'s CPU for sequence numbers
/// `first..first + ROUNDS`. Does not wait for the job's completion.
fn exchange(b: &cpus::Block, first: u64) -> Result<TscOffset, SyncError> {
    let resp = &b.ext.tsc_resp;
    let mut samples = [SyncSample {
        t1: 0,
        t2: 0,
        t3: 0,
    }; ROUNDS];
    let deadline = Deadline::after_ms(2000);
    for (i, s) in samples.iter_mut().enumerate() {
        let seq = first + i as u64;
        let t1 = rdtsc_precise();
        REQ.0.store(seq, Ordering::Release);
        while resp.seq.load(Ordering::Acquire) != seq {
            if deadline.passed() {
                return Err(SyncError::Timeout);
            }
            core::hint::spin_loop();
        }
        let t3 = rdtsc_precise();
        *s = SyncSample {
            t1,
            t2: resp.tsc.load(Ordering::Relaxed),
            t3,
        };
    }
    estimate_offset(&samples).ok_or(SyncError::Timeout)
}

/// Measures `cpu`'s offset to the calling (boot) CPU, alone: post, exchange, wait.
pub fn measure(cpu: CpuId) -> Result<TscOffset, SyncError> {
    let first = REQ.0.load(Ordering::Relaxed) + 1;
    let b = cpus::get(cpu).ok_or(SyncError::Run(cpus::RunError::NotOnline(cpu)))?;
    let t = cpus::post(cpu, responder, first).map_err(SyncError::Run)?;
    let r = exchange(b, first);
    cpus::wait(t, Deadline::after_ms(1000)).map_err(SyncError::Run)?;
    r
}

fn record(b: &cpus::Block, o: TscOffset) {
    b.ext.tsc_offset.store(o.offset, Ordering::Relaxed);
    b.ext
        .tsc_uncertainty
        .store(o.uncertainty, Ordering::Relaxed);
}

/// Runs the check for every online AP and records the results in their blocks.
///
/// One AP at a time, posted just before its exchanges against the boot CPU: every offset is
/// direct, with its own uncertainty bound, and no AP's completion is awaited in between
/// (each has its own mailbox; all are collected at the end). Until 2026-12-06 the next AP's
/// responder was posted before the current AP's exchanges, to overlap its wake-up from
/// halt: it then spun through them, a third busy vCPU, and on a 2-core host the two that
/// ping-pong waited for host time slices (`boot q35x -smp 512`: the check 2.3 s against
/// 0.5 s posted in turn, TCG, idle host; 124 s in one CI run). Sequence numbers are
/// disjoint per AP (`ROUNDS` each); each AP answers on its own line, so one that answers
/// late (after the boot CPU gave up on it) cannot be taken for the next AP's answer. An AP
/// whose exchange fails is measured again alone, twice at most.
pub fn check_all() {
    if let Some(bsp) = cpus::get(CpuId(0)) {
        record(
            bsp,
            TscOffset {
                offset: 0,
                uncertainty: 0,
            },
        );
    }
    // No allocation: boot may have used all memory bringing CPUs up.
    let aps = || cpus::online().filter(|b| b.hot.cpu_id != 0);
    let base = REQ.0.load(Ordering::Relaxed) + 1;
    let first_of = |k: usize| base + (k * ROUNDS) as u64;
    let post =
        |k: usize, b: &cpus::Block| cpus::post(CpuId(b.hot.cpu_id), responder, first_of(k)).is_ok();
    let mut n = 0;
    let (mut failed, mut ids) = (0u32, arrayvec::ArrayString::<64>::new());
    for (k, b) in aps().enumerate() {
        match post(k, b).then(|| exchange(b, first_of(k))) {
            Some(Ok(o)) => record(b, o),
            _ => {
                failed += 1;
                let _ = core::fmt::Write::write_fmt(
                    &mut ids,
                    format_args!("{}{}", if failed > 1 { ";" } else { "" }, b.hot.cpu_id),
                );
            }
        }
        n = k + 1;
    }
    crate::kprintln!("TSC,check,first_pass_failed,{failed},cpus,{ids}");
    // Every responder ends by itself (its last exchange, or its deadline).
    for b in aps() {
        let _ = cpus::wait_free(CpuId(b.hot.cpu_id), Deadline::after_ms(3000));
    }
    // Sequence numbers past everything handed out above.
    REQ.0.store(first_of(n), Ordering::Release);
    // An AP whose uncertainty is still unknown failed: measure it again, alone.
    for b in aps().filter(|b| b.ext.tsc_uncertainty.load(Ordering::Relaxed) == u64::MAX) {
        let cpu = CpuId(b.hot.cpu_id);
        // A loaded host can deschedule a vCPU past an exchange's deadline: measure again.
        let mut r = measure(cpu);
        for _ in 0..2 {
            if r.is_ok() {
                break;
            }
            let _ = cpus::wait_free(cpu, Deadline::after_ms(3000));
            r = measure(cpu);
        }
        match r {
            Ok(o) => record(b, o),
            Err(e) => log::warn!("TSC check of CPU {} failed: {e}", cpu.0),
        }
    }
}

/// `cpu`'s measured TSC offset to the boot CPU (boot time line if not measured).
pub fn offset_of(cpu: CpuId) -> TscOffset {
    cpus::get(cpu).map_or(TscOffset::BOOT, |b| TscOffset {
        offset: b.ext.tsc_offset.load(Ordering::Relaxed),
        uncertainty: b.ext.tsc_uncertainty.load(Ordering::Relaxed),
    })
}
