//! Case 10: a fusion channel between two processes (`exo_rt::fusion`: rings in an
//! endpoint's shared region, parking on shared futexes), the server process pinned to
//! another CPU when there is one. Every wake-up path is forced, not left to timing:
//! 1. 2000 echo calls with sequence numbers and checksums (`super::request`/`answer`);
//!    every 100th call the server replies only once the client sleeps in the kernel, and
//!    the client calls only once the server sleeps, so each of those is a futex wake-up
//!    across processes: at least 40 wake-ups are counted;
//! 2. a call with a 100 ms timeout that the server holds until the client's next request
//!    is in the ring (so it can only have ended by its deadline): `ETIMEDOUT`, then the
//!    next call gets its own reply, the late one discarded (`stale` 1);
//! 3. the client closes the channel once the server sleeps: the server's wait ends with
//!    `EPIPE` and it exits 0 (its own checks passed).

use exo_rt::fusion::Channel;
use exo_rt::{Errno, ExitStatus, IpcMsg};

/// The server role's mode (`arg = ROLE << 56 | FUSION << 48 | cpu << 32 | handle`).
pub const FUSION: u64 = 6;
const CALLS: u64 = 2000;
const PARK_EVERY: u64 = 100;
const LABEL_LATE: u32 = 0x150;
/// Every wait's bound (a hung peer fails the case instead of hanging it).
const WAIT: u64 = 30_000 * super::MS;

/// Yields until `cond` holds, at most 10 s.
fn wait_until(cond: impl Fn() -> bool) -> bool {
    let end = exo_rt::monotonic_nanos() + 10_000 * super::MS;
    while !cond() {
        if exo_rt::monotonic_nanos() > end {
            return false;
        }
        exo_rt::sched_yield();
    }
    true
}

/// Another CPU than `me` if there is one (the next, else 0), else `me`.
fn other_cpu(me: usize) -> usize {
    let other = if exo_rt::pin_to_cpu(me + 1).is_ok() {
        me + 1
    } else {
        0
    };
    let _ = exo_rt::pin_to_cpu(me);
    other
}

fn same(a: &IpcMsg, b: &IpcMsg) -> bool {
    a.label == b.label && a.len == b.len && a.words == b.words
}

/// The client side (the case).
pub fn fusion() -> Result<(), &'static str> {
    let c = Channel::create().map_err(|_| "fusion channel: create failed")?;
    let me = exo_rt::getcpu().map_err(|_| "getcpu")?;
    let other = other_cpu(me);
    let arg = super::ROLE << 56 | FUSION << 48 | (other as u64) << 32 | u64::from(c.handle());
    let pid = exo_rt::spawn("/ipcdemo", arg).map_err(|_| "spawn of the fusion server")?;
    let r = calls(&c);
    if r.is_err() {
        exo_rt::eprintln!("ipcdemo 10: channel: {}", c.describe());
        c.close();
    }
    let end = exo_rt::wait(pid);
    r?;
    if end != Ok(ExitStatus::Exited(0)) {
        exo_rt::eprintln!("ipcdemo 10: fusion server ended {end:?}");
        return Err("the fusion server failed its checks");
    }
    Ok(())
}

fn calls(c: &Channel) -> Result<(), &'static str> {
    for seq in 0..CALLS {
        if seq % PARK_EVERY == PARK_EVERY / 2 && !wait_until(|| c.server_asleep()) {
            return Err("the fusion server never slept");
        }
        let q = super::request(seq);
        let r = c.call(&q, WAIT).map_err(|_| "a fusion call failed")?;
        if !same(&r, &super::answer(&q, seq, 0)) {
            return Err("a fusion reply was wrong");
        }
    }
    let forced = 2 * (CALLS / PARK_EVERY);
    if c.wakes() < forced {
        exo_rt::eprintln!("ipcdemo 10: {} wake-ups, {forced} forced", c.wakes());
        return Err("a forced park was not ended by a wake-up");
    }
    let late = IpcMsg::new(LABEL_LATE, [0; 8]);
    if c.call(&late, 100 * super::MS) != Err(Errno::ETIMEDOUT) {
        return Err("a held fusion call did not time out");
    }
    let q = super::request(CALLS);
    let r = c
        .call(&q, WAIT)
        .map_err(|_| "the call after a timeout failed")?;
    if !same(&r, &super::answer(&q, CALLS, 0)) || c.stale() != 1 {
        return Err("the late reply was not discarded");
    }
    if !wait_until(|| c.server_asleep()) {
        return Err("the fusion server never slept before the close");
    }
    c.close();
    if c.call(&q, WAIT) != Err(Errno::EPIPE) {
        return Err("a call on a closed fusion channel did not fail with EPIPE");
    }
    exo_rt::println!(
        "ipcdemo 10: {} fusion calls checked, {} wake-ups ({forced} forced), 1 timed out",
        CALLS + 2,
        c.wakes()
    );
    Ok(())
}

/// The server process: pinned to `cpu`, opens the channel and serves until it is closed.
/// Exit 0 if every request was well-formed and in order and the serve ended with `EPIPE`.
pub fn server(arg: u64) -> i32 {
    let cpu = ((arg >> 32) & 0xffff) as usize;
    if exo_rt::pin_to_cpu(cpu).is_err() {
        return 2;
    }
    let Ok(c) = Channel::open(arg as u32) else {
        return 3;
    };
    let mut seq = 0;
    let mut bad = 0u32;
    let r = c.serve(WAIT, |m| {
        if m.label == LABEL_LATE {
            // Held until the client has moved on: its call can only end by its deadline.
            bad += u32::from(!wait_until(|| c.request_waiting()));
            return Some(IpcMsg::new(LABEL_LATE, [1; 8]));
        }
        if seq % PARK_EVERY == PARK_EVERY - 1 && !wait_until(|| c.client_asleep()) {
            bad += 1;
        }
        let a = super::answer(m, seq, 0);
        bad += u32::from(a.label != super::LABEL_ECHO + 1);
        seq += 1;
        Some(a)
    });
    match r {
        Err(Errno::EPIPE) if bad == 0 && seq == CALLS + 1 => 0,
        Err(Errno::EPIPE) => {
            exo_rt::eprintln!("ipcdemo fusion server: {bad} bad, {seq} served");
            4
        }
        other => {
            exo_rt::eprintln!("ipcdemo fusion server: serve ended {other:?}");
            5
        }
    }
}
