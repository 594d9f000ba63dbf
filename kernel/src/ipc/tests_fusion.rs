//! Fusion rings across CPUs: every call answered in order with its own words, both parking
//! paths forced (the server replies only once the client is parked, the client calls only
//! once the server is parked, so each wake-up path runs, not just polling), a parked
//! server woken by `close` with `Closed`, a call that times out (the server holds its reply
//! until the client has given up) and whose late reply the next call discards; the
//! endpoint baseline (`Channel::call_endpoint`, `serve(true, ..)`: the seed's comparison
//! point, which only `bench-contended` ran before 2026-12-07) answers the same traffic
//! with the same replies as the rings.

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
ktest!(
    Needs::Threads,
    "ipc.fusion_baseline_answers_as_the_rings_do",
    baseline_same
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

/// The skip of a test of the rings themselves (their parking) in a kernel built without
/// them: its channel is the endpoint, which `ipc.fusion_baseline_answers_as_the_rings_do`
/// tests (until 2026-12-07 these failed in such a kernel, which no run booted).
fn rings_compiled_out() -> TestResult {
    if super::fusion::ENABLED {
        Ok(())
    } else {
        Err(format!("{SKIP}fusion_rings is off: no rings to park on"))
    }
}

fn fusion_across_cpus(_: &crate::boot::BootState) -> TestResult {
    rings_compiled_out()?;
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
    rings_compiled_out()?;
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

/// Calls of each pass of [`baseline_same`].
const SAME_CALLS: u64 = 500;

/// The request of call `k` of [`baseline_same`]: its label and words vary with `k`.
fn same_request(k: u64) -> Msg {
    Msg::new(
        (k % 1000) as u32 + 1,
        core::array::from_fn(|i| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64) << 56),
    )
}

/// The server's answer to `m`, a function of the whole request (label and every word).
fn same_answer(m: &Msg) -> Msg {
    let sum = m
        .words
        .iter()
        .fold(u64::from(m.label), |a, w| a.rotate_left(7) ^ w);
    let mut r = Msg::new(m.label.wrapping_mul(3), m.words);
    r.words.iter_mut().for_each(|w| *w = w.wrapping_add(sum));
    r
}

/// Serves [`same_answer`] through the endpoint (`arg` 1) or the rings (0) until the label
/// 0xdead.
fn same_server(endpoint: u64) -> u64 {
    let Some(c) = chan() else { return 1 };
    let r = c.serve(endpoint == 1, after_ms(60_000), |m| {
        (m.label != 0xdead).then(|| {
            SERVED.fetch_add(1, Ordering::Relaxed);
            same_answer(m)
        })
    });
    u64::from(r.is_err())
}

/// Digest of the replies to [`SAME_CALLS`] requests through the endpoint (`arg` 1) or the
/// rings (0), each reply checked against [`same_answer`] (a mismatch or an error: 0).
fn same_client(endpoint: u64) -> u64 {
    let Some(c) = chan() else { return 0 };
    let d = after_ms(60_000);
    let call = |m: &Msg| {
        if endpoint == 1 {
            c.call_endpoint(m, d)
        } else {
            c.call(m, d)
        }
    };
    let mut digest = 1u64;
    for k in 0..SAME_CALLS {
        let m = same_request(k);
        CALLED.store(k + 1, Ordering::Relaxed);
        match call(&m) {
            Ok(r) if r.label == same_answer(&m).label && r.words == same_answer(&m).words => {
                digest = r
                    .words
                    .iter()
                    .fold(digest.rotate_left(5) ^ u64::from(r.label), |a, w| {
                        a.wrapping_mul(31) ^ w
                    });
            }
            _ => return 0,
        }
    }
    let _ = call(&Msg::new(0xdead, [0; 8]));
    digest | 1
}

/// Both paths of a channel give the same results: [`SAME_CALLS`] calls through the endpoint
/// baseline, then the same calls through the rings (with 2 CPUs or more: client on CPU 0,
/// server on the last), each reply checked and the two digests compared. At -smp 1 the
/// baseline alone (both threads on CPU 0).
fn baseline_same(_: &crate::boot::BootState) -> TestResult {
    let paths: &[u64] = if ncpus() >= 2 { &[1, 0] } else { &[1] };
    let mut digests = alloc::vec::Vec::new();
    for &endpoint in paths {
        let c = Arc::new(Channel::new().map_err(|e| format!("{e:?}"))?);
        *CHAN.lock() = Some(c.clone());
        CALLED.store(0, Ordering::Relaxed);
        SERVED.store(0, Ordering::Relaxed);
        let s = Builder::new()
            .pin(ncpus() - 1)
            .spawn(same_server, endpoint)
            .map_err(|e| format!("{e}"))?;
        let t = Builder::new()
            .pin(0)
            .spawn(same_client, endpoint)
            .map_err(|e| format!("{e}"))?;
        let codes = join_all(&[t, s], 60_000).map_err(|e| {
            format!(
                "{e}; endpoint path {endpoint}, calls made {}, served {}",
                CALLED.load(Ordering::Relaxed),
                SERVED.load(Ordering::Relaxed)
            )
        });
        c.close();
        *CHAN.lock() = None;
        let codes = codes?;
        check(codes[0] != 0 && codes[1] == 0, || {
            format!(
                "endpoint path {endpoint}: client {:#x} (0: a wrong reply or an error at call {}), server {}",
                codes[0],
                CALLED.load(Ordering::Relaxed),
                codes[1]
            )
        })?;
        digests.push(codes[0]);
    }
    check(digests.windows(2).all(|w| w[0] == w[1]), || {
        format!("replies differ between the endpoint and the rings: digests {digests:x?}")
    })
}
