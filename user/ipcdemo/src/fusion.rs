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
//!    `EPIPE` and it exits 0 (its own checks passed);
//! 4. a peer that dies: a server process answers one call, then takes the next and, once
//!    the client sleeps in the kernel, executes `ud2` (killed): the client's call fails with
//!    `ECONNRESET` (the kernel cleared its word at the server thread's end), not by its
//!    deadline; the same with a server killed by a #DB (`icebp`), whose end ran on the
//!    exception's own stack and skipped that wake-up until 2026-12-04 (the call then ended
//!    by its 30 s deadline); then a client process makes one call and exits once this side
//!    (serving, no deadline needed) sleeps: the serve ends with `ECONNRESET` after that
//!    one call.
//! 5. a peer that ends before its first serve: a server process opens the channel bound
//!    as the server (`Channel::open_as`) and, once the client sleeps in the kernel in its
//!    call, exits without ever serving: the call fails with `ECONNRESET`, not by its
//!    deadline (until 2026-12-05 only a call or serve named the thread, and the call waited
//!    out its deadline).

use exo_rt::fusion::{Channel, Side};
use exo_rt::{Errno, ExitStatus, IpcMsg};

/// The server role's mode (`arg = ROLE << 56 | FUSION << 48 | cpu << 32 | handle`).
pub const FUSION: u64 = 6;
/// The mode of a server that dies mid-call (part 4).
pub const FUSION_DIE: u64 = 7;
/// The mode of a client that makes one call and ends (part 4).
pub const FUSION_CLIENT: u64 = 8;
/// The mode of a server that dies mid-call by a #DB, `icebp` (part 4).
pub const FUSION_DIE_DB: u64 = 10;
/// The mode of a server that opens the channel bound as the server and exits without
/// serving (part 5).
pub const FUSION_OPEN_EXIT: u64 = 14;
/// The request the `FUSION_DIE` server dies holding.
const LABEL_DIE: u32 = 0x151;
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
    forged_small_region()?;
    server_dies(other, FUSION_DIE, exo_rt::KillCause::UD)?;
    server_dies(other, FUSION_DIE_DB, exo_rt::KillCause::DB)?;
    client_ends(other)?;
    server_ends_unserved(other)?;
    exo_rt::println!(
        "ipcdemo 10: a killed server, an ended client and a server that never served each ended the other side's wait"
    );
    Ok(())
}

/// A region of one page with the magic number in it (what a hostile peer could hand over)
/// is refused by `Channel::open`: the rings need more than a page, and their end would lie
/// past the region (until 2026-12-04 the opener died at its first call; found by review).
fn forged_small_region() -> Result<(), &'static str> {
    use exo_rt::abi::ipc::{RIGHT_RECV, RIGHT_SEND};
    let h = exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0)
        .map_err(|_| "forged region: endpoint_create")?;
    let r = (|| {
        let p = exo_rt::shm_map(h, 4096).map_err(|_| "forged region: shm_map")?;
        // SAFETY: the kernel just mapped a fresh page at `p` for this program alone.
        unsafe {
            p.cast::<u64>()
                .write_volatile(exo_rt::fusion::region_magic())
        };
        match Channel::open(h) {
            Err(Errno::EINVAL) => Ok(()),
            Err(_) => Err("forged region: open failed with another error than EINVAL"),
            Ok(_) => Err("forged region: a one-page region was opened as a channel"),
        }
    })();
    let _ = exo_rt::handle_close(h);
    r
}

/// Starts role `mode` of this program on `cpu` for the new channel `c`.
fn spawn_role(c: &Channel, mode: u64, cpu: usize) -> Result<usize, &'static str> {
    let arg = super::ROLE << 56 | mode << 48 | (cpu as u64) << 32 | u64::from(c.handle());
    exo_rt::spawn("/ipcdemo", arg).map_err(|_| "spawn of a fusion role")
}

/// Part 4, the server killed holding a call (role `mode`, killed by `cause`).
fn server_dies(other: usize, mode: u64, cause: exo_rt::KillCause) -> Result<(), &'static str> {
    let c = Channel::create().map_err(|_| "fusion channel: create failed")?;
    let pid = spawn_role(&c, mode, other)?;
    let q = super::request(0);
    let first = c.call(&q, WAIT);
    let start = exo_rt::monotonic_nanos();
    let r = c.call(&IpcMsg::new(LABEL_DIE, [0; 8]), WAIT);
    // The peer's end is seen after the deadline too (the word is cleared either way):
    // what must not happen is a call that slept until its deadline (the clocks of the
    // deadline and of this measure differ slightly: half of it, where a wake-up takes
    // milliseconds).
    let woken = exo_rt::monotonic_nanos() - start < WAIT / 2;
    let end = exo_rt::wait(pid);
    if first.map(|a| same(&a, &super::answer(&q, 0, 0))) != Ok(true) {
        return Err("the dying fusion server's first answer was wrong");
    }
    if r != Err(Errno::ECONNRESET) || !woken || end != Ok(ExitStatus::Killed(cause)) {
        exo_rt::eprintln!(
            "ipcdemo 10: call to a dying server: {r:?} (woken before its deadline: {woken}), server {end:?}"
        );
        exo_rt::eprintln!("ipcdemo 10: channel: {}", c.describe());
        return Err("a fusion call to a killed server was not woken with ECONNRESET");
    }
    Ok(())
}

/// Part 5, the server that opens the channel and ends before its first serve.
fn server_ends_unserved(other: usize) -> Result<(), &'static str> {
    let c = Channel::create().map_err(|_| "fusion channel: create failed")?;
    let pid = spawn_role(&c, FUSION_OPEN_EXIT, other)?;
    // Without the server's bind its end clears nothing and the call ends by its deadline
    // (`ETIMEDOUT`): the error alone tells the two apart.
    let r = c.call(&super::request(0), WAIT);
    let end = exo_rt::wait(pid);
    if r != Err(Errno::ECONNRESET) || end != Ok(ExitStatus::Exited(0)) {
        exo_rt::eprintln!("ipcdemo 10: call to a server that never served: {r:?}, server {end:?}");
        exo_rt::eprintln!("ipcdemo 10: channel: {}", c.describe());
        return Err("a fusion call to a server that ended unserved was not woken with ECONNRESET");
    }
    Ok(())
}

/// Part 4, the client that ends: this side serves with no deadline.
fn client_ends(other: usize) -> Result<(), &'static str> {
    let c = Channel::create().map_err(|_| "fusion channel: create failed")?;
    let pid = spawn_role(&c, FUSION_CLIENT, other)?;
    let mut served = 0;
    let r = c.serve(0, |m| {
        served += 1;
        Some(super::answer(m, 0, 0))
    });
    let end = exo_rt::wait(pid);
    if r != Err(Errno::ECONNRESET) || served != 1 || end != Ok(ExitStatus::Exited(0)) {
        exo_rt::eprintln!(
            "ipcdemo 10: serve to an ending client: {r:?} after {served}, client {end:?}"
        );
        return Err("a fusion serve whose client ended did not end with ECONNRESET");
    }
    Ok(())
}

/// The roles of parts 4 and 5: `FUSION_DIE` answers one call, then dies (`ud2`;
/// `FUSION_DIE_DB`: `icebp`) holding the next once the client sleeps; `FUSION_CLIENT` makes
/// one checked call, then exits once the server sleeps; `FUSION_OPEN_EXIT` opens the channel
/// bound as the server and exits once the client sleeps. Exit codes: 2..=5 a failed step.
pub fn peer_role(arg: u64) -> i32 {
    let cpu = ((arg >> 32) & 0xffff) as usize;
    if exo_rt::pin_to_cpu(cpu).is_err() {
        return 2;
    }
    if (arg >> 48) & 0xff == FUSION_OPEN_EXIT {
        let Ok(c) = Channel::open_as(arg as u32, Side::Server) else {
            return 3;
        };
        // Ends (exit 0) once the client sleeps in its call, never having served.
        return if wait_until(|| c.client_asleep()) {
            0
        } else {
            5
        };
    }
    let Ok(c) = Channel::open(arg as u32) else {
        return 3;
    };
    if (arg >> 48) & 0xff == FUSION_CLIENT {
        let q = super::request(0);
        match c.call(&q, WAIT) {
            Ok(a) if same(&a, &super::answer(&q, 0, 0)) => {}
            _ => return 4,
        }
        return if wait_until(|| c.server_asleep()) {
            0
        } else {
            5
        };
    }
    let by_db = (arg >> 48) & 0xff == FUSION_DIE_DB;
    let r = c.serve(WAIT, |m| {
        if m.label == LABEL_DIE && wait_until(|| c.client_asleep()) {
            if by_db {
                // SAFETY: the point: the server's process is killed (#DB) holding the call.
                unsafe { core::arch::asm!(".byte 0xf1") };
            }
            // SAFETY: the point: the server's process is killed holding the call.
            unsafe { core::arch::asm!("ud2") };
        }
        Some(super::answer(m, 0, 0))
    });
    exo_rt::eprintln!("ipcdemo fusion dying server: still alive, serve ended {r:?}");
    4
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
    let Ok(c) = Channel::open_as(arg as u32, Side::Server) else {
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
