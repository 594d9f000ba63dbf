//! Cross-CPU TSC check at boot (in the spirit of Linux's warp check): for each AP, a
//! ping-pong with the BSP through one cache line estimates the AP's TSC offset to the BSP
//! with an uncertainty bound (half the best round trip, narrowed by intersecting samples).

use crate::cpus;
use crate::time::Deadline;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::tsc::{SyncSample, TscOffset, estimate_offset, rdtsc_precise};
use exo_percpu::CpuId;

/// Exchanges per CPU.
pub const ROUNDS: usize = 32;

#[repr(C, align(64))]
struct Line(AtomicU64);

static REQ: Line = Line(AtomicU64::new(0));
static RESP_SEQ: Line = Line(AtomicU64::new(0));
static RESP_TSC: Line = Line(AtomicU64::new(0));

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

fn responder(first_seq: u64) -> u64 {
    let deadline = Deadline::after_ms(2000);
    for i in 0..ROUNDS as u64 {
        let seq = first_seq + i;
        while REQ.0.load(Ordering::Acquire) != seq {
            if deadline.passed() {
                return 1;
            }
            core::hint::spin_loop();
        }
        let t2 = rdtsc_precise();
        RESP_TSC.0.store(t2, Ordering::Relaxed);
        RESP_SEQ.0.store(seq, Ordering::Release);
    }
    0
}

/// Measures `cpu`'s offset to the calling (boot) CPU.
pub fn measure(cpu: CpuId) -> Result<TscOffset, SyncError> {
    let first = REQ.0.load(Ordering::Relaxed) + 1;
    cpus::post(cpu, responder, first).map_err(SyncError::Run)?;
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
        while RESP_SEQ.0.load(Ordering::Acquire) != seq {
            if deadline.passed() {
                return Err(SyncError::Timeout);
            }
            core::hint::spin_loop();
        }
        let t3 = rdtsc_precise();
        *s = SyncSample {
            t1,
            t2: RESP_TSC.0.load(Ordering::Relaxed),
            t3,
        };
    }
    cpus::wait(cpu, Deadline::after_ms(1000)).map_err(SyncError::Run)?;
    estimate_offset(&samples).ok_or(SyncError::Timeout)
}

/// Runs the check for every online AP and records the results in their blocks.
pub fn check_all() {
    for b in cpus::online() {
        let cpu = CpuId(b.hot.cpu_id);
        if cpu.0 == 0 {
            b.ext.tsc_offset.store(0, Ordering::Relaxed);
            b.ext.tsc_uncertainty.store(0, Ordering::Relaxed);
            continue;
        }
        // A loaded host can deschedule a vCPU past an exchange's deadline: let the AP's
        // responder finish (it gives up at its own deadline), then measure again.
        let mut r = measure(cpu);
        for _ in 0..2 {
            if r.is_ok() {
                break;
            }
            let _ = cpus::wait(cpu, Deadline::after_ms(3000));
            r = measure(cpu);
        }
        match r {
            Ok(o) => {
                b.ext.tsc_offset.store(o.offset, Ordering::Relaxed);
                b.ext
                    .tsc_uncertainty
                    .store(o.uncertainty, Ordering::Relaxed);
            }
            Err(e) => log::warn!("TSC check of CPU {} failed: {e}", cpu.0),
        }
    }
}
