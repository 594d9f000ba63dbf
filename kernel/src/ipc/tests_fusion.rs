//! Fusion rings across CPUs: every call answered in order with its own words, both parking
//! paths forced (the server replies only once the client is parked, the client calls only
//! once the server is parked, so each wake-up path runs, not just polling), a parked
//! server woken by `close` with `Closed`, a call that times out (the server holds its reply
//! until the client has given up) and whose late reply the next call discards.

use super::fusion::Channel;
use super::{IpcError, Msg};
use crate::harness::{Needs, SKIP, TestResult, check, join_all, ncpus};
use crate::ktest;
use crate::sched::{self, Builder};
use alloc::format;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

ktest!(
    Needs::Threads,
    "ipc.fusion_rings_across_cpus",
    fusion_across_cpus
);
ktest!(
    Needs::Threads,
    "ipc.fusion_close_wakes_a_parked_server",
    close_wakes
);
ktest!(
    Needs::Threads,
    "ipc.fusion_call_times_out_and_its_late_reply_is_discarded",
    timeout_then_stale
);
ktest!(
    Needs::Threads,
    "ipc.fusion_channel_dropped_gives_its_endpoint_back",
    dropped_channel
);

static CHAN: spin::Mutex<Option<Arc<Channel>>> = spin::Mutex::new(None);
const CALLS: u64 = 2000;
/// Every `PARK_EVERY`th call, the server waits for the client to park before replying, and
/// the client waits for the server to park before calling.
const PARK_EVERY: u64 = 100;
static BAD: AtomicU64 = AtomicU64::new(0);
/// Calls the client has made and the server has answered so far (a failure's report).
static CALLED: AtomicU64 = AtomicU64::new(0);
static SERVED: AtomicU64 = AtomicU64::new(0);

fn chan() -> Option<Arc<Channel>> {
    CHAN.lock().clone()
}

/// A TSC deadline `ms` from now.
fn after_ms(ms: u64) -> u64 {
    exo_arch::tsc::rdtsc() + ms * (crate::smp::time::tsc_hz() / 1000)
}

fn wait_until(cond: impl Fn() -> bool) -> bool {
    let d = crate::smp::time::Deadline::after_ms(10_000);
    while !cond() {
        if d.passed() {
            return false;
        }
        sched::yield_now();
    }
    true
}

fn server(_: u64) -> u64 {
    let Some(c) = chan() else { return 1 };
    let c2 = c.clone();
    let r = c.serve(false, after_ms(60_000), |m| {
        if m.label == 0xdead {
            return None;
        }
        if m.words[0] % PARK_EVERY == PARK_EVERY - 1 && !wait_until(|| c2.client_is_parked()) {
            BAD.fetch_add(1, Ordering::Relaxed);
        }
        let mut r = *m;
        r.words.iter_mut().for_each(|w| *w = w.wrapping_add(1));
        SERVED.fetch_add(1, Ordering::Relaxed);
        Some(r)
    });
    u64::from(r.is_err())
}

fn client(_: u64) -> u64 {
    let Some(c) = chan() else { return 1 };
    let d = after_ms(60_000);
    let mut bad = 0;
    for k in 0..CALLS {
        if k % PARK_EVERY == PARK_EVERY / 2 && !wait_until(|| c.server_is_parked()) {
            bad += 1;
        }
        let m = Msg::new(
            7,
            core::array::from_fn(|i| k.wrapping_mul(31).wrapping_add(i as u64)),
        );
        CALLED.store(k + 1, Ordering::Relaxed);
        match c.call(&m, d) {
            Ok(r) if r.words == core::array::from_fn(|i| m.words[i].wrapping_add(1)) => {}
            _ => bad += 1,
        }
    }
    let _ = c.call(&Msg::new(0xdead, [0; 8]), d);
    bad
}

fn fusion_across_cpus(_: &crate::boot::BootState) -> TestResult {
    if ncpus() < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let c = Arc::new(Channel::new().map_err(|e| format!("{e:?}"))?);
    *CHAN.lock() = Some(c.clone());
    BAD.store(0, Ordering::Relaxed);
    CALLED.store(0, Ordering::Relaxed);
    SERVED.store(0, Ordering::Relaxed);
    let last = ncpus() - 1;
    let s = Builder::new()
        .pin(last)
        .spawn(server, 0)
        .map_err(|e| format!("{e}"))?;
    let t = Builder::new()
        .pin(0)
        .spawn(client, 0)
        .map_err(|e| format!("{e}"))?;
    let codes = join_all(&[t, s], 60_000).map_err(|e| {
        format!(
            "{e}; calls made {}, served {}; {}",
            CALLED.load(Ordering::Relaxed),
            SERVED.load(Ordering::Relaxed),
            c.describe()
        )
    })?;
    let wakes = c.wakes();
    c.close();
    *CHAN.lock() = None;
    let parks = 2 * CALLS / PARK_EVERY;
    crate::kprintln!("INFO,ipc.fusion,forced_parks,{parks},wakes,{wakes}");
    // Every forced park ends with the peer's message; usually through the wake-up, but a
    // parked side may also return spuriously (block_unless's contract) and find it by its
    // re-check, so the count of wake-ups is only required to show the path ran.
    check(
        codes == [0, 0] && BAD.load(Ordering::Relaxed) == 0 && wakes >= 1,
        || {
            format!(
                "client {} bad, server {}, forced parks missed {}, wakes {wakes} ({parks} forced parks)",
                codes[0],
                codes[1],
                BAD.load(Ordering::Relaxed)
            )
        },
    )
}

fn parked_server(_: u64) -> u64 {
    let Some(c) = chan() else { return 1 };
    match c.serve(false, after_ms(60_000), |m| Some(*m)) {
        Err(IpcError::Closed) => 0,
        _ => 1,
    }
}

fn close_wakes(_: &crate::boot::BootState) -> TestResult {
    let c = Arc::new(Channel::new().map_err(|e| format!("{e:?}"))?);
    *CHAN.lock() = Some(c.clone());
    let s = Builder::new()
        .pin(ncpus() - 1)
        .spawn(parked_server, 0)
        .map_err(|e| format!("{e}"))?;
    let parked = wait_until(|| c.server_is_parked());
    c.close();
    let codes = join_all(&[s], 10_000)?;
    *CHAN.lock() = None;
    check(parked && codes == [0], || {
        format!("server parked {parked}, ended {codes:?} (0: with Closed)")
    })
}

/// Set by the client once its first call has timed out: the server holds that call's
/// reply until then, so the time-out is certain on a host of any speed.
static GAVE_UP: AtomicU64 = AtomicU64::new(0);

fn slow_server(_: u64) -> u64 {
    let Some(c) = chan() else { return 1 };
    let r = c.serve(false, after_ms(60_000), |m| {
        if m.label == 0xdead {
            return None;
        }
        if m.words[0] == 1 && !wait_until(|| GAVE_UP.load(Ordering::Acquire) != 0) {
            return None;
        }
        Some(*m)
    });
    u64::from(r.is_err())
}

fn timeout_then_stale(_: &crate::boot::BootState) -> TestResult {
    let c = Arc::new(Channel::new().map_err(|e| format!("{e:?}"))?);
    *CHAN.lock() = Some(c.clone());
    GAVE_UP.store(0, Ordering::Release);
    let s = Builder::new()
        .pin(ncpus() - 1)
        .spawn(slow_server, 0)
        .map_err(|e| format!("{e}"))?;
    // The first call cannot be answered before it gives up (10 ms).
    let first = c.call(&Msg::new(7, [1; 8]), after_ms(10));
    GAVE_UP.store(1, Ordering::Release);
    // The second gets its own reply, not the first call's late one.
    let second = c.call(&Msg::new(7, [2; 8]), after_ms(10_000));
    let _ = c.call(&Msg::new(0xdead, [0; 8]), after_ms(10_000));
    let codes = join_all(&[s], 10_000)?;
    let stale = c.stale();
    c.close();
    *CHAN.lock() = None;
    check(
        matches!(first, Err(IpcError::TimedOut))
            && matches!(second, Ok(r) if r.words == [2; 8])
            && stale == u64::from(super::fusion::ENABLED)
            && codes == [0],
        || {
            format!(
                "first {first:?} (want TimedOut), second {:?} (want words [2; 8]), stale {stale} (want 1 with the rings), server {codes:?}",
                second.map(|r| r.words)
            )
        },
    )
}

/// A channel dropped without `close` (an error path) gives its endpoint back; one closed,
/// then dropped, too (the second destroy finds it gone).
fn dropped_channel(_: &crate::boot::BootState) -> TestResult {
    let before = super::live_endpoints();
    let a = Channel::new().map_err(|e| format!("new: {e:?}"))?;
    let b = Channel::new().map_err(|e| format!("new: {e:?}"))?;
    let during = super::live_endpoints();
    drop(a);
    b.close();
    drop(b);
    let after = super::live_endpoints();
    check(during == before + 2 && after == before, || {
        format!("live endpoints {before} before, {during} with two channels, {after} after")
    })
}
