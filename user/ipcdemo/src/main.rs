//! `/ipcdemo <case>`: IPC between processes and threads (issue 13), one case per `arg`
//! (`cases.rs`); exits 0 when every check passed, 1 (with a line saying why) otherwise.
//! Case 8 (handles in messages, `named.rs`) takes a name server's handle in its `arg`
//! (`cases::with_ns`), or starts its own `/names` without one.
//!
//! A server role is a copy of this program started with `arg = ROLE << 56 | mode << 48 |
//! handle` (it inherits the endpoint handle of its parent): `SERVE` answers calls until a
//! `QUIT` label, `DIE` takes one call and executes `ud2`, `LATE` takes one call, sleeps
//! past the caller's timeout, then replies (which must fail with `ESRCH`), and tells the
//! client by its answer to a `PROBE` call whether it took the call (`late_server`);
//! `ZC` serves the zero-copy cases (`zc.rs`), `ZC_MAKE` creates a region there, and
//! `NAMED` (`arg = ROLE << 56 | NAMED << 48 | name server handle`) registers its own
//! endpoint as `"echo"` and serves echo calls (`named.rs`); `FUSION`, `FUSION_DIE`, `FUSION_DIE_DB` and `FUSION_CLIENT` are the peers
//! of case 10's fusion channels (`fusion.rs`); `KILLED` is a kernel test's process, killed
//! while it waits inside an IPC call (`killed.rs`), `FUTEX_GONE` one whose futex
//! waiter's page is unmapped under it (`futex_gone.rs`), and `PARKED_HELD` one parked by
//! the fastpath's exit after it was switched out holding its address space's tables
//! (`held.rs`).
#![cfg_attr(target_os = "none", no_std, no_main)]

mod cases;
mod fusion;
mod futex_gone;
mod held;
mod killed;
mod named;
mod parked;
mod zc;

use core::sync::atomic::{AtomicU32, Ordering};
use exo_rt::abi::ipc::{INFO_SLOW, RIGHT_RECV, RIGHT_SEND};
use exo_rt::{Errno, ExitStatus, IpcMsg, KillCause, eprintln, println};

exo_rt::entry!(run);

const ROLE: u64 = 0x1c;
const SERVE: u64 = 1;
const DIE: u64 = 2;
const LATE: u64 = 3;

const LABEL_ECHO: u32 = 0x100;
const LABEL_QUIT: u32 = 0x1ff;
const LABEL_BAD: u32 = 0xbad;
/// The client asks the `LATE` server whether it took the timed call (no time-out).
const LABEL_PROBE: u32 = 0x1fd;
/// Answers to a probe: the server took the call (and replied late), or never saw it.
const LABEL_TOOK: u32 = 0x1fc;
const LABEL_MISSED: u32 = 0x1fb;
/// Timed calls the `LATE` case makes at most before the server takes one.
const LATE_TRIES: u32 = 50;
const BADGE: u64 = 0xB0D6_E000_0000_0042;
const CALLS: u64 = 1000;
const MS: u64 = 1_000_000;

fn run(arg: u64) -> i32 {
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == zc::ZC {
        return zc::server(arg as u32);
    }
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == zc::ZC_MAKE {
        return zc::make_role(arg as u32, (arg >> 32) as u8);
    }
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == zc::ZC_COVER {
        return zc::cover_role(arg as u32);
    }
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == fusion::FUSION {
        return fusion::server(arg);
    }
    if arg >> 56 == ROLE
        && matches!(
            (arg >> 48) & 0xff,
            fusion::FUSION_DIE
                | fusion::FUSION_DIE_DB
                | fusion::FUSION_CLIENT
                | fusion::FUSION_OPEN_EXIT
        )
    {
        return fusion::peer_role(arg);
    }
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == futex_gone::FUTEX_GONE {
        return futex_gone::role(arg);
    }
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == held::PARKED_HELD {
        return held::role(arg);
    }
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == killed::KILLED {
        return killed::role(arg);
    }
    if arg >> 56 == ROLE && (arg >> 48) & 0xff == named::NAMED {
        return named::server(arg);
    }
    if arg >> 56 == ROLE {
        return server((arg >> 48) & 0xff, arg as u32, false);
    }
    let (arg, ns) = match cases::ns_of(arg) {
        Some(ns) => (arg & 0xff, Some(ns)),
        None => (arg, None),
    };
    let r = match arg {
        0 => echo_processes(),
        1 => echo_threads(),
        2 => server_dies(),
        3 => bad_input(usize::from(ns.is_some())),
        4 => timeouts(),
        5 => destroyed_while_blocked(),
        6 => zc::zero_copy(),
        7 => zc::batches(),
        8 => named::handles(ns),
        9 => parked::parked(),
        10 => fusion::fusion(),
        _ => Err("no such case"),
    };
    match r {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("ipcdemo {arg}: FAIL: {why}");
            1
        }
    }
}

fn checksum(w: &[u64; 8]) -> u64 {
    w[..7].iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x).wrapping_mul(0x100_0000_01b3)
    })
}

/// The request with sequence number `seq`.
fn request(seq: u64) -> IpcMsg {
    let mut w = [0u64; 8];
    w[0] = seq;
    for (k, x) in w.iter_mut().enumerate().take(7).skip(1) {
        *x = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(k as u32 * 7) ^ k as u64;
    }
    w[7] = checksum(&w);
    IpcMsg::new(LABEL_ECHO, w)
}

/// The answer the server gives to `m` (or a `LABEL_BAD` one).
fn answer(m: &IpcMsg, expect_seq: u64, expect_badge: u64) -> IpcMsg {
    if m.label != LABEL_ECHO
        || m.len != 64
        || m.words[7] != checksum(&m.words)
        || m.words[0] != expect_seq
        || m.badge != expect_badge
    {
        return IpcMsg::new(LABEL_BAD, m.words);
    }
    let mut w = m.words;
    for x in w.iter_mut().take(7).skip(1) {
        *x ^= 0x5555_5555_5555_5555;
    }
    w[7] = checksum(&w);
    IpcMsg::new(LABEL_ECHO + 1, w)
}

/// The server loop: answers calls until `LABEL_QUIT` (its seq check restarts with each
/// run of the client: the client's first seq is 0 for each pass). Exit 0 if every call
/// was well-formed.
fn server(mode: u64, h: u32, _thread: bool) -> i32 {
    let mut m = match exo_rt::ipc_recv(h, 0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ipcdemo server: recv: {e}");
            return 2;
        }
    };
    match mode {
        DIE => {
            // SAFETY: the point: die holding the call.
            unsafe { core::arch::asm!("ud2") };
            return 3;
        }
        LATE => return late_server(h, m),
        _ => {}
    }
    let mut seq = 0;
    let mut bad = 0u32;
    loop {
        if m.label == LABEL_QUIT {
            let _ = exo_rt::ipc_reply(&IpcMsg::new(LABEL_QUIT, [0; 8]));
            return i32::from(bad != 0) * 5;
        }
        if m.words[0] == 0 {
            seq = 0; // a new pass
        }
        let a = answer(&m, seq, BADGE);
        bad += u32::from(a.label == LABEL_BAD);
        seq += 1;
        m = match exo_rt::ipc_reply_recv(h, &a, 0) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ipcdemo server: reply_recv: {e}");
                return 6;
            }
        };
    }
}

/// The `LATE` server, `m` its first message. The client counts its timed calls that
/// returned `ETIMEDOUT` in the first word of the endpoint's region. A timed call can
/// expire while it is still queued, before this server took it: nothing bounds how long a
/// new process takes to reach its first `recv` (under TCG at -smp 64 it can be more than
/// the caller's 10 ms). The client then learns it from its `PROBE` call, answered
/// `MISSED`, and calls again. The call it takes (`words[0]`: its number): it replies once
/// the client counted that call as timed out (a fixed sleep can be outlasted by a starved
/// caller), which must fail with `ESRCH`, then answers the client's probe `TOOK`. Exit 0 if
/// the late reply failed with `ESRCH`.
fn late_server(h: u32, mut m: IpcMsg) -> i32 {
    let base = match exo_rt::shm_map(h, 0) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ipcdemo server: shm_map: {e}");
            return 2;
        }
    };
    // SAFETY: the region is page-aligned and stays mapped for the process's life; both
    // processes access its first word only atomically.
    let expired = unsafe { &*(base as *const AtomicU32) };
    while m.label == LABEL_PROBE {
        m = match exo_rt::ipc_reply_recv(h, &IpcMsg::new(LABEL_MISSED, [0; 8]), 0) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ipcdemo server: reply_recv: {e}");
                return 6;
            }
        };
    }
    let k = m.words[0];
    let t0 = exo_rt::monotonic_nanos();
    while u64::from(expired.load(Ordering::Acquire)) <= k {
        if exo_rt::monotonic_nanos() - t0 > 30_000 * MS {
            eprintln!("ipcdemo server: the caller never timed out");
            return 8;
        }
        let _ = exo_rt::nanosleep(&exo_rt::Timespec::from_nanos(MS));
    }
    let code = match exo_rt::ipc_reply(&IpcMsg::new(1, [0; 8])) {
        Err(Errno::ESRCH) => 0,
        other => {
            eprintln!("ipcdemo server: late reply: {other:?}, expected ESRCH");
            4
        }
    };
    match exo_rt::ipc_recv(h, 0) {
        Ok(p) if p.label == LABEL_PROBE => {}
        other => {
            eprintln!("ipcdemo server: {other:?} instead of the probe");
            return 7;
        }
    }
    let _ = exo_rt::ipc_reply(&IpcMsg::new(LABEL_TOOK, [0; 8]));
    code
}

/// `CALLS` calls with the fastpath allowed, then `CALLS` on the slow path; every reply
/// checked. Then `QUIT`.
fn client(h: u32) -> Result<(), &'static str> {
    for extra in [0, INFO_SLOW] {
        for seq in 0..CALLS {
            let q = request(seq);
            let r = exo_rt::ipc_op(exo_rt::abi::nr::IPC_CALL, h, &q, extra, 0)
                .map_err(|_| "a call failed")?;
            let mut want = answer(&IpcMsg { badge: BADGE, ..q }, seq, BADGE);
            want.badge = 0;
            if r.label == LABEL_BAD {
                return Err("the server saw a bad request (seq, checksum or badge)");
            }
            if r != want {
                return Err("a reply differs from the expected one");
            }
        }
    }
    match exo_rt::ipc_call(h, &IpcMsg::new(LABEL_QUIT, [0; 8]), 0) {
        Ok(m) if m.label == LABEL_QUIT => Ok(()),
        _ => Err("quit call"),
    }
}

fn endpoint() -> Result<u32, &'static str> {
    exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, BADGE).map_err(|_| "endpoint_create")
}

fn spawn_server(mode: u64, h: u32) -> Result<usize, &'static str> {
    exo_rt::spawn("/ipcdemo", ROLE << 56 | mode << 48 | u64::from(h))
        .map_err(|_| "spawn of the server")
}

fn echo_processes() -> Result<(), &'static str> {
    let h = endpoint()?;
    let pid = spawn_server(SERVE, h)?;
    client(h)?;
    match exo_rt::wait(pid) {
        Ok(ExitStatus::Exited(0)) => {}
        _ => return Err("the server did not exit 0"),
    }
    exo_rt::handle_close(h).map_err(|_| "close")?;
    println!(
        "ipcdemo 0: {} calls between two processes: all checked",
        2 * CALLS + 1
    );
    Ok(())
}

fn server_thread(h: u64) -> i32 {
    server(SERVE, h as u32, true)
}

fn echo_threads() -> Result<(), &'static str> {
    let h = endpoint()?;
    let t = exo_rt::thread::spawn(server_thread, u64::from(h)).map_err(|_| "thread")?;
    client(h)?;
    if t.join() != Ok(0) {
        return Err("the server thread did not return 0");
    }
    exo_rt::handle_close(h).map_err(|_| "close")?;
    println!(
        "ipcdemo 1: {} calls between two threads: all checked",
        2 * CALLS + 1
    );
    Ok(())
}

fn server_dies() -> Result<(), &'static str> {
    let h = endpoint()?;
    let pid = spawn_server(DIE, h)?;
    // No deadline: the server takes the call whenever it starts (process start has no bound
    // under an emulator) and dies holding it; with a 5 s one a slow start made the call
    // time out and left the server blocked for good on an endpoint its handle kept alive
    // (init hung in `wait` instead of failing; found by review, 2026-12-05).
    let r = exo_rt::ipc_call(h, &request(0), 0);
    let st = exo_rt::wait(pid).map_err(|_| "wait")?;
    if st != ExitStatus::Killed(KillCause::UD) {
        return Err("the server was not killed by #UD");
    }
    if r != Err(Errno::ECONNRESET) {
        eprintln!("ipcdemo 2: call returned {r:?}");
        return Err("the call did not fail with ECONNRESET");
    }
    exo_rt::handle_close(h).map_err(|_| "close")?;
    println!("ipcdemo 2: server killed holding the call: ECONNRESET");
    Ok(())
}

fn expect(
    what: &'static str,
    got: Result<impl Sized, Errno>,
    want: Errno,
) -> Result<(), &'static str> {
    match got {
        Err(e) if e == want => Ok(()),
        Err(e) => {
            eprintln!("ipcdemo 3: {what}: {e}, expected {want}");
            Err(what)
        }
        Ok(_) => {
            eprintln!("ipcdemo 3: {what}: success, expected {want}");
            Err(what)
        }
    }
}

/// Case 3; `inherited`: the handles the process started with (1 when `/init` passed the
/// name server's, 0 otherwise).
fn bad_input(inherited: usize) -> Result<(), &'static str> {
    let m = request(0);
    let t = 1_000; // 1 us: nothing here may block anyway
    expect(
        "call on an empty entry",
        exo_rt::ipc_call(63, &m, t),
        Errno::EBADF,
    )?;
    expect(
        "call on handle 64",
        exo_rt::ipc_call(64, &m, t),
        Errno::EBADF,
    )?;
    expect(
        "recv on handle u32::MAX",
        exo_rt::ipc_recv(u32::MAX, t),
        Errno::EBADF,
    )?;
    let mut h64 = 1u64 << 40;
    let mut info = m.info();
    let mut w = m.words;
    // SAFETY: registers only.
    let r = unsafe { exo_rt::raw::ipc(exo_rt::abi::nr::IPC_CALL, &mut h64, &mut info, &mut w, t) };
    expect("call on handle 2^40", Errno::from_ret(r), Errno::EBADF)?;
    expect(
        "close of an empty entry",
        exo_rt::handle_close(5),
        Errno::EBADF,
    )?;
    expect(
        "endpoint_create rights 0",
        exo_rt::endpoint_create(0, 0),
        Errno::EINVAL,
    )?;
    expect(
        "endpoint_create rights 4",
        exo_rt::endpoint_create(4, 0),
        Errno::EINVAL,
    )?;
    let s = exo_rt::endpoint_create(RIGHT_SEND, 1).map_err(|_| "create send-only")?;
    let r = exo_rt::endpoint_create(RIGHT_RECV, 2).map_err(|_| "create recv-only")?;
    expect(
        "recv without the right",
        exo_rt::ipc_recv(s, t),
        Errno::EPERM,
    )?;
    expect(
        "call without the right",
        exo_rt::ipc_call(r, &m, t),
        Errno::EPERM,
    )?;
    expect(
        "send without the right",
        exo_rt::ipc_send(r, &m, t),
        Errno::EPERM,
    )?;
    let long = IpcMsg { len: 65, ..m };
    expect("length 65", exo_rt::ipc_call(s, &long, t), Errno::EMSGSIZE)?;
    let long = IpcMsg { len: 255, ..m };
    expect(
        "length 255 (send)",
        exo_rt::ipc_send(s, &long, t),
        Errno::EMSGSIZE,
    )?;
    expect(
        "length 65 (reply)",
        exo_rt::ipc_reply(&IpcMsg { len: 65, ..m }),
        Errno::EMSGSIZE,
    )?;
    expect(
        "reserved info bit",
        exo_rt::ipc_op(exo_rt::abi::nr::IPC_CALL, s, &m, 1 << 50, t),
        Errno::EINVAL,
    )?;
    expect("reply with no caller", exo_rt::ipc_reply(&m), Errno::ESRCH)?;
    exo_rt::handle_close(s).map_err(|_| "close s")?;
    expect(
        "call on a closed handle",
        exo_rt::ipc_call(s, &m, t),
        Errno::EBADF,
    )?;
    expect("close twice", exo_rt::handle_close(s), Errno::EBADF)?;
    exo_rt::handle_close(r).map_err(|_| "close r")?;
    // A full table: 64 handles (with the one inherited, if any), then EAGAIN; all those
    // made closed again.
    let mut made = [0u32; 64];
    let mut n = 0;
    let full = loop {
        match exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0) {
            Ok(x) => {
                *made.get_mut(n).ok_or("more than 64 handles")? = x;
                n += 1;
            }
            Err(e) => break e,
        }
    };
    if full != Errno::EAGAIN || n + inherited != 64 {
        eprintln!("ipcdemo 3: table full after {n} + {inherited} inherited: {full}");
        return Err("a full table is not EAGAIN at 64");
    }
    for &k in &made[..n] {
        exo_rt::handle_close(k).map_err(|_| "close of the full table")?;
    }
    println!("ipcdemo 3: bad handles, rights, lengths, bits, no caller, full table: typed errors");
    Ok(())
}

fn timeouts() -> Result<(), &'static str> {
    let h = endpoint()?;
    let m = request(0);
    let t0 = exo_rt::time::rdtsc();
    expect(
        "recv with nobody",
        exo_rt::ipc_recv(h, 2 * MS),
        Errno::ETIMEDOUT,
    )?;
    expect(
        "call with nobody",
        exo_rt::ipc_call(h, &m, 2 * MS),
        Errno::ETIMEDOUT,
    )?;
    expect(
        "send with nobody",
        exo_rt::ipc_send(h, &m, 2 * MS),
        Errno::ETIMEDOUT,
    )?;
    if exo_rt::time::rdtsc() == t0 {
        return Err("no time passed");
    }
    // A server that takes the call and answers after the caller gave up. The call times
    // out either way; if it expired before the server took it (the server was still
    // starting), the probe says so and the call is made again. The region's first word
    // counts the calls that timed out: the server replies once its call is counted.
    let base = exo_rt::shm_map(h, 4096).map_err(|_| "shm_map")?;
    // SAFETY: the region is page-aligned and stays mapped for the process's life; both
    // processes access its first word only atomically.
    let expired = unsafe { &*(base as *const AtomicU32) };
    let pid = spawn_server(LATE, h)?;
    let mut missed = 0;
    loop {
        expect(
            "call answered too late",
            exo_rt::ipc_call(h, &request(u64::from(missed)), 10 * MS),
            Errno::ETIMEDOUT,
        )?;
        expired.store(missed + 1, Ordering::Release);
        match exo_rt::ipc_call(h, &IpcMsg::new(LABEL_PROBE, [0; 8]), 0) {
            Ok(a) if a.label == LABEL_TOOK => break,
            Ok(a) if a.label == LABEL_MISSED && missed + 1 < LATE_TRIES => missed += 1,
            Ok(a) if a.label == LABEL_MISSED => {
                return Err("the late server took none of the timed calls");
            }
            _ => return Err("the late server's answer to the probe"),
        }
    }
    match exo_rt::wait(pid) {
        Ok(ExitStatus::Exited(0)) => {}
        _ => return Err("the late server's reply was not ESRCH"),
    }
    exo_rt::handle_close(h).map_err(|_| "close")?;
    println!(
        "ipcdemo 4: timeouts: ETIMEDOUT; a late reply: ESRCH ({missed} timed call(s) expired before the server took one)"
    );
    Ok(())
}

/// Set by `blocked_caller` right before its call.
static CALLING: AtomicU32 = AtomicU32::new(0);

fn blocked_caller(h: u64) -> i32 {
    CALLING.store(1, Ordering::Release);
    match exo_rt::ipc_call(h as u32, &request(0), 5000 * MS) {
        Err(Errno::EPIPE) => 0,
        Err(Errno::EBADF) => 3, // closed before the call: try again
        Err(e) => {
            eprintln!("ipcdemo 5: blocked call: {e}, expected EPIPE");
            1
        }
        Ok(_) => 2,
    }
}

/// The close must come once the caller blocks: it announces its call (`CALLING`), this
/// waits for that, then 20 ms more (the caller's call is a few instructions past its
/// announcement). A close that still came first is `EBADF` and the case tries again, 20
/// times at most; it fails if the caller never blocked. Until 2026-12-05 five early closes
/// in a row passed the case without checking `EPIPE` at all (found by review).
fn destroyed_while_blocked() -> Result<(), &'static str> {
    for _ in 0..20 {
        let h = endpoint()?;
        CALLING.store(0, Ordering::Relaxed);
        let t = exo_rt::thread::spawn(blocked_caller, u64::from(h)).map_err(|_| "thread")?;
        // Bounded: 10 s of yields for the thread to start.
        for _ in 0..10_000 {
            if CALLING.load(Ordering::Acquire) != 0 {
                break;
            }
            let _ = exo_rt::nanosleep(&exo_rt::Timespec::from_nanos(MS));
        }
        // Let it block (its call has no receiver), then close the only handle.
        let _ = exo_rt::nanosleep(&exo_rt::Timespec::from_nanos(20 * MS));
        exo_rt::handle_close(h).map_err(|_| "close")?;
        match t.join() {
            Ok(0) => {
                println!("ipcdemo 5: endpoint destroyed under a blocked caller: EPIPE");
                return Ok(());
            }
            Ok(3) => continue,
            _ => return Err("the blocked caller did not get EPIPE"),
        }
    }
    Err("the caller never blocked before the close (20 tries)")
}
