//! IPC kernel tests, on kernel threads (`Needs::Threads`). Every wait has a deadline; orders
//! that matter are forced with flags and queue states, never with sleeps or host speed.

use crate::boot::BootState;
use crate::harness::{Needs, TestResult, check, join_all, ms, ncpus, wait_for};
use crate::ipc::{self, Cap, EpRef, Handle, HandleTable, IpcError, Msg, Rights};
use crate::ktest;
use crate::sched::{self, Builder, Tid};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use exo_arch::tsc::rdtsc;

ktest!(Needs::Threads, "ipc.integrity_cpu_pairs", integrity);
ktest!(
    Needs::Threads,
    "ipc.fastpath_and_slowpath_agree",
    paths_agree
);
ktest!(
    Needs::Threads,
    "ipc.server_exit_mid_call_fails_client",
    server_exit
);
ktest!(
    Needs::Threads,
    "ipc.destroy_wakes_every_blocked_thread",
    destroy_wakes
);
ktest!(
    Needs::Threads,
    "ipc.endpoint_goes_deaf_with_its_last_receive_handle",
    deaf
);
ktest!(Needs::Threads, "ipc.timeouts_expire", timeouts);
ktest!(Needs::Threads, "ipc.timeout_racing_a_reply", timeout_race);
ktest!(Needs::Threads, "ipc.bad_handles_and_arguments", bad_handles);
ktest!(
    Needs::Threads,
    "ipc.stale_endpoint_never_names_its_successors_region",
    stale_region
);
ktest!(
    Needs::Threads,
    "ipc.timed_waits_race_replies_sleepers_and_wakes",
    timed_race
);
ktest!(
    Needs::Threads,
    "ipc.stale_reply_gives_back_a_caller_waiting_elsewhere",
    stale_reply
);
ktest!(
    Needs::Threads,
    "ipc.fastpath_caller_being_killed_does_not_block",
    aborted_caller
);
ktest!(
    Needs::Threads,
    "ipc.fastpath_ping_pong_leaves_its_cpu_to_other_threads",
    ping_pong_shares
);
ktest!(
    Needs::Threads,
    "ipc.region_below_the_floor_is_refused",
    region_floor_enforced
);
ktest!(Needs::Cpus, "ipc.seqs_and_tokens_keep_48_bits", seq_bits);
ktest!(
    Needs::Threads,
    "ipc.fastpath_ping_pong_with_deadlines_takes_no_tick_per_call",
    ping_pong_ticks
);

/// The endpoint of the running test (tests run one at a time).
static EP: AtomicU64 = AtomicU64::new(0);
static FLAG: AtomicBool = AtomicBool::new(false);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static DIGEST: AtomicU64 = AtomicU64::new(0);
static DEADLINE: AtomicU64 = AtomicU64::new(0);
const MAX_CLIENTS: usize = 16;
static NEXT_SEQ: [AtomicU64; MAX_CLIENTS] = [const { AtomicU64::new(0) }; MAX_CLIENTS];
static NCLIENTS: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicU64 = AtomicU64::new(0);
const STOP: u32 = 0xdead;

fn ep() -> EpRef {
    EpRef::from_raw(EP.load(Ordering::Acquire))
}

fn new_ep() -> Result<EpRef, String> {
    let e = ipc::create().map_err(|e| format!("create: {e}"))?;
    EP.store(e.raw(), Ordering::Release);
    Ok(e)
}

fn spawn_on(cpu: u32, f: fn(u64) -> u64, arg: u64) -> Result<Tid, String> {
    Builder::new()
        .pin(cpu)
        .spawn(f, arg)
        .map_err(|e| format!("spawn on CPU {cpu}: {e}"))
}

/// Runs `f` with the fastpath on, then off (`f` is told which), the fastpath back on after
/// each; an error names the path it came from.
fn each_path(mut f: impl FnMut(bool) -> TestResult) -> TestResult {
    for fast in [true, false] {
        ipc::set_fastpath(fast);
        let r = f(fast);
        ipc::set_fastpath(true);
        r.map_err(|e| format!("fastpath {fast}: {e}"))?;
    }
    Ok(())
}

fn mix(a: u64, b: u64) -> u64 {
    (a ^ b.rotate_left(17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
}

/// Message `seq` of client `id`: words 2..7 derived, word 7 the checksum of 0..7.
fn make(id: u64, seq: u64) -> Msg {
    let mut w = [0u64; 8];
    w[0] = id;
    w[1] = seq;
    for (k, x) in w.iter_mut().enumerate().take(7).skip(2) {
        *x = mix(id.wrapping_mul(1000).wrapping_add(seq), k as u64);
    }
    w[7] = checksum(&w);
    Msg::new(1, w)
}

fn checksum(w: &[u64; 8]) -> u64 {
    w[..7].iter().fold(0x1234, |a, &x| mix(a, x))
}

fn answer(m: &Msg) -> Msg {
    let mut w = m.words;
    w.iter_mut().take(7).for_each(|x| *x = x.wrapping_add(1));
    w[7] = checksum(&w);
    Msg::new(m.label + 1, w)
}

/// Serves until every client sent `STOP`: checks each message (badge, checksum, the next
/// seq of its client), folds it into `DIGEST`, replies with `answer`.
fn server(_: u64) -> u64 {
    let ep = ep();
    let mut stops = 0;
    let mut digest = 0u64;
    let mut m = match ipc::recv(ep, rdtsc() + ms(60_000)) {
        Ok(m) => m,
        Err(_) => return 1,
    };
    loop {
        let id = m.words[0];
        if m.label == STOP {
            stops += 1;
        } else if id as usize >= MAX_CLIENTS
            || m.badge != id + 100
            || checksum(&m.words) != m.words[7]
            || NEXT_SEQ[id as usize].fetch_add(1, Ordering::Relaxed) != m.words[1]
        {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        digest = mix(digest, m.words[7] ^ m.badge);
        let r = answer(&m);
        if stops == NCLIENTS.load(Ordering::Relaxed) {
            DIGEST.store(digest, Ordering::Relaxed);
            return u64::from(ipc::reply(&r).is_err());
        }
        m = match ipc::reply_recv(ep, &r, rdtsc() + ms(60_000)) {
            Ok(m) => m,
            Err(_) => return 2,
        };
    }
}

/// `ROUNDS` checked calls as client `id`, then `STOP`; returns the number of bad replies.
fn client(id: u64) -> u64 {
    let ep = ep();
    let mut bad = 0;
    for seq in 0..ROUNDS.load(Ordering::Relaxed) {
        let m = make(id, seq);
        match ipc::call(ep, id + 100, &m, rdtsc() + ms(60_000)) {
            Ok(r) if r == answer(&m) && checksum(&r.words) == r.words[7] => {}
            _ => bad += 1,
        }
    }
    let mut stop = make(id, u64::MAX);
    stop.label = STOP;
    if ipc::call(ep, id + 100, &stop, rdtsc() + ms(60_000)).is_err() {
        bad += 1;
    }
    bad
}

/// One server on `server_cpu`, one client on each of `clients`; all calls checked.
fn traffic(server_cpu: u32, clients: &[u32], rounds: u64) -> Result<u64, String> {
    let e = new_ep()?;
    ERRORS.store(0, Ordering::Relaxed);
    ROUNDS.store(rounds, Ordering::Relaxed);
    NCLIENTS.store(clients.len() as u64, Ordering::Relaxed);
    NEXT_SEQ.iter().for_each(|s| s.store(0, Ordering::Relaxed));
    let s = spawn_on(server_cpu, server, 0)?;
    let mut tids = Vec::new();
    for (id, &c) in clients.iter().enumerate() {
        tids.push(spawn_on(c, client, id as u64)?);
    }
    let codes = join_all(&tids, 120_000)?;
    let sc = join_all(&[s], 10_000)?;
    let _ = ipc::destroy(e);
    check(codes.iter().all(|&c| c == 0), || {
        format!("server on CPU {server_cpu}: bad replies per client {codes:?}")
    })?;
    check(sc[0] == 0, || format!("server ended with {}", sc[0]))?;
    let errors = ERRORS.load(Ordering::Relaxed);
    check(errors == 0, || {
        format!("server on CPU {server_cpu}: {errors} lost, duplicated or corrupt messages")
    })?;
    for (id, n) in NEXT_SEQ.iter().take(clients.len()).enumerate() {
        let n = n.load(Ordering::Relaxed);
        check(n == rounds, || {
            format!("client {id}: {n} of {rounds} received")
        })?;
    }
    Ok(DIGEST.load(Ordering::Relaxed))
}

/// At most `MAX_CLIENTS` CPUs spread over the online ones, CPU 0 and the last included.
fn client_cpus() -> Vec<u32> {
    let n = ncpus();
    let k = (n as usize).min(MAX_CLIENTS) as u32;
    let mut v: Vec<u32> = (0..k)
        .map(|j| if k == 1 { 0 } else { j * (n - 1) / (k - 1) })
        .collect();
    v.dedup();
    v
}

/// Sequence numbers and checksums between CPU 0 and every chosen CPU, both ways, with the
/// fastpath on and off: no loss, no duplicate, no corruption, badges right.
fn integrity(_: &BootState) -> TestResult {
    let cpus = client_cpus();
    let last = ncpus() - 1;
    each_path(|_| {
        traffic(0, &cpus, 100)?;
        // CPU 0's client paired with a server on each chosen CPU.
        for &c in &cpus {
            traffic(c, &[0], 50)?;
        }
        traffic(last, &cpus, 100).map(|_| ())
    })
}

/// The same traffic (one client, server on the same CPU) both ways: same digest, and the
/// fastpath was taken only when enabled.
fn paths_agree(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    let (f0, s0) = ipc::stats();
    let fast = traffic(cpu, &[cpu], 300)?;
    let (f1, s1) = ipc::stats();
    ipc::set_fastpath(false);
    let slow = traffic(cpu, &[cpu], 300);
    ipc::set_fastpath(true);
    let slow = slow?;
    let (f2, s2) = ipc::stats();
    check(fast == slow, || {
        format!("digests differ: fastpath {fast:#x}, slow path {slow:#x}")
    })?;
    check(f1 - f0 >= 300, || {
        format!(
            "fastpath on: only {} fast operations ({} slow)",
            f1 - f0,
            s1 - s0
        )
    })?;
    check(f2 == f1 && s2 - s1 >= 600, || {
        format!(
            "fastpath off: {} fast, {} slow operations",
            f2 - f1,
            s2 - s1
        )
    })
}

/// Receives one call, then ends without replying (arg 0) or receives again (arg 1).
fn bad_server(arg: u64) -> u64 {
    let ep = ep();
    if ipc::recv(ep, rdtsc() + ms(30_000)).is_err() {
        return 1;
    }
    if arg == 1 {
        // Drops the call; nobody sends again, so this times out.
        let _ = ipc::recv(ep, rdtsc() + ms(5));
    }
    0
}

fn caller(expect: u64) -> u64 {
    let r = ipc::call(ep(), 0, &make(0, 0), rdtsc() + ms(30_000));
    let want = match expect {
        0 => IpcError::PeerDied,
        1 => IpcError::NoReply,
        _ => IpcError::Closed,
    };
    u64::from(r != Err(want))
}

/// A server ending mid-call (the exit hook) or dropping it: the client gets an error.
fn server_exit(_: &BootState) -> TestResult {
    let last = ncpus() - 1;
    for (arg, cpu) in [(0, 0), (0, last), (1, 0), (1, last)] {
        let e = new_ep()?;
        let s = spawn_on(cpu, bad_server, arg)?;
        let c = spawn_on(0, caller, arg)?;
        let codes = join_all(&[c, s], 60_000)?;
        let _ = ipc::destroy(e);
        check(codes == [0, 0], || {
            format!(
                "case {arg} server on CPU {cpu}: caller {}, server {}",
                codes[0], codes[1]
            )
        })?;
    }
    Ok(())
}

fn blocked_receiver(_: u64) -> u64 {
    u64::from(ipc::recv(ep(), rdtsc() + ms(30_000)) != Err(IpcError::Closed))
}

fn blocked_sender(_: u64) -> u64 {
    u64::from(ipc::send(ep(), 0, &make(0, 0), rdtsc() + ms(30_000)) != Err(IpcError::Closed))
}

/// Destroying an endpoint with callers, senders or receivers queued fails them all; its
/// reference stays refused when the table is filled (and its slot reused) past its end.
fn destroy_wakes(_: &BootState) -> TestResult {
    let n = ncpus();
    let e = new_ep()?;
    let mut tids = Vec::new();
    for k in 0..4u32 {
        tids.push(spawn_on(k % n, caller, 2)?);
    }
    tids.push(spawn_on(1 % n, blocked_sender, 0)?);
    wait_for("5 senders queued", 30_000, || {
        ipc::queued(e) == Some((5, 0))
    })?;
    ipc::destroy(e).map_err(|x| format!("destroy: {x}"))?;
    let r = new_ep()?;
    for k in 0..3u32 {
        tids.push(spawn_on((k + 1) % n, blocked_receiver, 0)?);
    }
    wait_for("3 receivers queued", 30_000, || {
        ipc::queued(r) == Some((0, 3))
    })?;
    ipc::destroy(r).map_err(|x| format!("destroy: {x}"))?;
    let codes = join_all(&tids, 30_000)?;
    check(codes.iter().all(|&c| c == 0), || {
        format!("threads not failed with Closed: {codes:?}")
    })?;
    // Stale references stay refused, even once the slot is reused.
    // The table is filled to its end: the create past it is refused with `Exhausted`.
    let mut fresh = Vec::new();
    let refused = loop {
        match ipc::create() {
            Ok(x) if fresh.len() <= ipc::MAX_ENDPOINTS => fresh.push(x),
            other => break other,
        }
    };
    let stale = ipc::call(e, 0, &make(0, 0), rdtsc() + ms(10));
    let reused = fresh.iter().any(|x| x.raw() as u32 == e.raw() as u32);
    let filled = fresh.len();
    for x in fresh.into_iter().chain(refused.ok()) {
        let _ = ipc::destroy(x);
    }
    check(refused == Err(IpcError::Exhausted), || {
        format!("create in a full table ({filled} made): {refused:?}")
    })?;
    let after = ipc::create();
    if let Ok(x) = after {
        let _ = ipc::destroy(x);
    }
    check(after.is_ok(), || {
        format!("create once the table was emptied again: {after:?}")
    })?;
    check(stale == Err(IpcError::Closed), || {
        format!("call on a destroyed endpoint: {stale:?}")
    })?;
    check(reused, || "the destroyed slot was never reused".into())?;
    check(ipc::destroy(e) == Err(IpcError::Closed), || {
        "destroyed twice".into()
    })
}

/// A handle of `t` to `e` with `rights`, made the way a passed handle is (one more owner).
fn extra_handle(t: &HandleTable, e: EpRef, rights: Rights) -> Result<Handle, String> {
    ipc::retain(e, rights).map_err(|x| format!("retain: {x}"))?;
    t.insert(Cap {
        ep: e,
        rights,
        badge: 2,
    })
    .map_err(|x| {
        ipc::release(e, rights);
        format!("insert: {x}")
    })
}

/// The last handle with the receive right closed while send handles remain: the endpoint
/// goes deaf. Callers, senders and receivers queued on it (kernel threads on the raw
/// reference) fail with `Closed` at once, a call through the send handle too (until
/// 2026-12-05 it waited for its deadline: nobody could ever receive it), `check` says so,
/// and the slot stays until the last handle goes; a send handle to it can still be copied,
/// a receive handle cannot. An endpoint that only ever had send handles (a kernel server's)
/// never goes deaf.
fn deaf(_: &BootState) -> TestResult {
    let n = ncpus();
    let t = HandleTable::new();
    // A handle of `t` with `rights` to a new endpoint (the test's `EP`) and a send handle.
    let made = |rights| -> Result<(Handle, EpRef, Handle), String> {
        let r = t
            .create_endpoint(rights, 1)
            .map_err(|x| format!("create: {x}"))?;
        let e = t.get(r).map_err(|x| format!("get: {x}"))?.ep;
        EP.store(e.raw(), Ordering::Release);
        Ok((r, e, extra_handle(&t, e, Rights::SEND)?))
    };
    // Queued callers and a sender.
    let (r, e, s) = made(Rights::ALL)?;
    let mut tids = Vec::new();
    for k in 0..2u32 {
        tids.push(spawn_on(k % n, caller, 2)?);
    }
    tids.push(spawn_on(1 % n, blocked_sender, 0)?);
    wait_for("3 senders queued", 30_000, || {
        ipc::queued(e) == Some((3, 0))
    })?;
    let live = ipc::live_endpoints();
    t.close(r).map_err(|x| format!("close: {x}"))?;
    let codes = join_all(&tids, 30_000)?;
    check(codes.iter().all(|&c| c == 0), || {
        format!("queued senders not failed with Closed: {codes:?}")
    })?;
    check(ipc::check(e) == Err(IpcError::Closed), || {
        "check of a deaf endpoint".into()
    })?;
    let call = t.call(s, &make(0, 0), rdtsc() + ms(30_000));
    check(call == Err(IpcError::Closed), || {
        format!("call through the send handle of a deaf endpoint: {call:?}")
    })?;
    let recv = ipc::recv(e, rdtsc() + ms(30_000));
    check(recv.as_ref().err() == Some(&IpcError::Closed), || {
        format!("receive on a deaf endpoint: {recv:?}")
    })?;
    check(ipc::live_endpoints() == live, || {
        "the deaf slot went early".into()
    })?;
    // A handle to it is still copied (passed, inherited): an owner like the others; never
    // one with the receive right (a copy racing the close of the last one: until
    // 2026-12-05 it made a receive handle that could never receive; found by review).
    let recv_copy = ipc::retain(e, Rights::ALL);
    if recv_copy.is_ok() {
        ipc::release(e, Rights::ALL);
    }
    check(recv_copy == Err(IpcError::Closed), || {
        format!("a receive right retained on a deaf endpoint: {recv_copy:?}")
    })?;
    let s2 = extra_handle(&t, e, Rights::SEND)?;
    t.close(s2).map_err(|x| format!("close: {x}"))?;
    t.close(s).map_err(|x| format!("close: {x}"))?;
    check(ipc::live_endpoints() == live - 1, || {
        "the deaf slot outlived its last handle".into()
    })?;

    // Queued receivers.
    let (r, e, s) = made(Rights::RECV)?;
    let mut tids = Vec::new();
    for k in 0..2u32 {
        tids.push(spawn_on((k + 1) % n, blocked_receiver, 0)?);
    }
    wait_for("2 receivers queued", 30_000, || {
        ipc::queued(e) == Some((0, 2))
    })?;
    t.close(r).map_err(|x| format!("close: {x}"))?;
    let codes = join_all(&tids, 30_000)?;
    check(codes.iter().all(|&c| c == 0), || {
        format!("queued receivers not failed with Closed: {codes:?}")
    })?;
    t.close(s).map_err(|x| format!("close: {x}"))?;

    // Send handles only: live until the last goes.
    let e = ipc::create().map_err(|x| format!("create: {x}"))?;
    let a = extra_handle(&t, e, Rights::SEND)?;
    let b = extra_handle(&t, e, Rights::SEND)?;
    t.close(a).map_err(|x| format!("close: {x}"))?;
    check(ipc::check(e).is_ok(), || {
        "an endpoint without receive handles went deaf".into()
    })?;
    t.close(b).map_err(|x| format!("close: {x}"))?;
    check(ipc::check(e) == Err(IpcError::Closed), || {
        "the endpoint outlived its last handle".into()
    })
}

/// Takes a call on the test's endpoint and holds it until `FLAG`: the message, or the exit
/// code of what did not come (1: the call, 2: the flag).
fn take_and_hold() -> Result<Msg, u64> {
    let m = ipc::recv(ep(), rdtsc() + ms(30_000)).map_err(|_| 1u64)?;
    let d = rdtsc() + ms(30_000);
    while !FLAG.load(Ordering::Acquire) {
        if rdtsc() > d {
            return Err(2);
        }
        sched::yield_now();
    }
    Ok(m)
}

/// Receives, waits for `FLAG`, then replies: the reply must find no caller.
fn late_server(_: u64) -> u64 {
    match take_and_hold() {
        Ok(_) => u64::from(ipc::reply(&Msg::default()) != Err(IpcError::NoCaller)) * 3,
        Err(code) => code,
    }
}

/// The second endpoint of `stale_reply`, where the caller waits once its call timed out.
static EP2: AtomicU64 = AtomicU64::new(0);
/// The message the test sends there.
const NEXT: u32 = 7;

/// Takes a call and holds it until `FLAG` (its caller has timed out and is blocked on
/// `EP2` by then), then answers it with `reply_recv`, a stale token, and waits on its own
/// endpoint until the test destroys it. 0: as expected.
fn stale_server(_: u64) -> u64 {
    let m = match take_and_hold() {
        Ok(m) => m,
        Err(code) => return code,
    };
    match ipc::reply_recv(ep(), &answer(&m), rdtsc() + ms(30_000)) {
        Err(IpcError::Closed) => 0,
        Ok(_) => 3,
        Err(_) => 4,
    }
}

/// Calls the stale server with a 2 ms deadline (the server holds the call: it times out),
/// then waits on `EP2`: it must get the test's message there, not the stale reply.
fn stale_caller(_: u64) -> u64 {
    if ipc::call(ep(), 0, &make(0, 0), rdtsc() + ms(2)) != Err(IpcError::TimedOut) {
        return 1;
    }
    match ipc::recv(
        EpRef::from_raw(EP2.load(Ordering::Acquire)),
        rdtsc() + ms(30_000),
    ) {
        Ok(m) if m.label == NEXT && m.words == [u64::from(NEXT); 8] => 0,
        Ok(_) => 2,
        Err(_) => 3,
    }
}

/// A reply that comes after its caller timed out and began another wait on the same CPU:
/// forced by holding the call until the caller is blocked on a second endpoint. With the
/// fastpath the server claims the caller (blocked, this CPU), finds it waiting for something
/// else and gives it back (`fastpath::STALE_CLAIMS` counts it); without, the slow path finds
/// the stale token. Either way the reply is dropped, the caller's next wait gets its own
/// message and the server goes on receiving.
fn stale_reply(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    each_path(|fast| {
        let e = new_ep()?;
        let e2 = ipc::create().map_err(|e| format!("create: {e}"))?;
        EP2.store(e2.raw(), Ordering::Release);
        FLAG.store(false, Ordering::Release);
        let given_back = ipc::STALE_CLAIMS.load(Ordering::Relaxed);
        let s = spawn_on(cpu, stale_server, 0)?;
        wait_for("the server queued", 30_000, || {
            ipc::queued(e) == Some((0, 1))
        })?;
        let c = spawn_on(cpu, stale_caller, 0)?;
        wait_for("the caller blocked on the second endpoint", 30_000, || {
            ipc::queued(e2) == Some((0, 1)) && sched::is_blocked(c)
        })?;
        FLAG.store(true, Ordering::Release);
        wait_for("the server receiving again", 30_000, || {
            ipc::queued(e) == Some((0, 1)) && sched::is_blocked(s)
        })?;
        let given_back = ipc::STALE_CLAIMS.load(Ordering::Relaxed) - given_back;
        let sent = ipc::send(
            e2,
            0,
            &Msg::new(NEXT, [u64::from(NEXT); 8]),
            rdtsc() + ms(30_000),
        );
        let _ = ipc::destroy(e);
        let codes = join_all(&[c, s], 30_000)?;
        let _ = ipc::destroy(e2);
        check(sent.is_ok() && codes == [0, 0], || {
            format!("send {sent:?}, caller {}, server {}", codes[0], codes[1])
        })?;
        check(given_back == u64::from(fast), || {
            format!(
                "{given_back} caller(s) claimed and given back, want {}",
                u64::from(fast)
            )
        })
    })
}

/// Deadlines in every wait: queued as caller, sender, receiver, and waiting for a reply.
fn timeouts(_: &BootState) -> TestResult {
    let e = new_ep()?;
    let m = make(0, 0);
    let r = ipc::call(e, 0, &m, rdtsc() + ms(2));
    check(r == Err(IpcError::TimedOut), || format!("call: {r:?}"))?;
    let r = ipc::send(e, 0, &m, rdtsc() + ms(2));
    check(r == Err(IpcError::TimedOut), || format!("send: {r:?}"))?;
    let r = ipc::recv(e, rdtsc() + ms(2));
    check(r == Err(IpcError::TimedOut), || format!("recv: {r:?}"))?;
    let r = ipc::recv(e, rdtsc());
    check(r == Err(IpcError::TimedOut), || {
        format!("recv, deadline past: {r:?}")
    })?;
    check(ipc::queued(e) == Some((0, 0)), || {
        format!("queues after time-outs: {:?}", ipc::queued(e))
    })?;
    // Waiting for the reply: the server has the message and answers only after the time-out.
    FLAG.store(false, Ordering::Release);
    let s = spawn_on(ncpus() - 1, late_server, 0)?;
    wait_for("the server queued", 30_000, || {
        ipc::queued(e) == Some((0, 1))
    })?;
    let r = ipc::call(e, 0, &m, rdtsc() + ms(5));
    FLAG.store(true, Ordering::Release);
    let code = join_all(&[s], 30_000)?[0];
    let _ = ipc::destroy(e);
    check(r == Err(IpcError::TimedOut), || {
        format!("call, reply late: {r:?}")
    })?;
    check(code == 0, || format!("late server: {code}"))
}

/// Receives, spins with interrupts off past the caller's deadline (the caller, on this CPU,
/// cannot run meanwhile), then replies: the reply must win.
fn spinning_server(_: u64) -> u64 {
    let ep = ep();
    if ipc::recv(ep, rdtsc() + ms(30_000)).is_err() {
        return 1;
    }
    let _g = exo_percpu::IrqGuard::new();
    // From here the caller (same CPU) cannot run, so cannot see its deadline pass; the
    // order is forced only if the deadline was still ahead now.
    HELD_AT.store(rdtsc(), Ordering::Release);
    while rdtsc() <= DEADLINE.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    u64::from(ipc::reply(&Msg::new(9, [9; 8])).is_err()) * 2
}

/// When `spinning_server` took the CPU with interrupts off; `MARGIN`: the caller's time-out.
static HELD_AT: AtomicU64 = AtomicU64::new(0);
static MARGIN: AtomicU64 = AtomicU64::new(0);

fn racing_caller(_: u64) -> u64 {
    let d = rdtsc() + MARGIN.load(Ordering::Acquire);
    DEADLINE.store(d, Ordering::Release);
    match ipc::call(ep(), 0, &make(0, 0), d) {
        Ok(r) if r.label == 9 => 0,
        Ok(_) => 1,
        Err(IpcError::TimedOut) => 2,
        Err(_) => 3,
    }
}

/// The reply first, after the caller's deadline passed: the caller, blocked for the reply
/// with a deadline `MARGIN` ahead, shares its CPU with a server that takes the message, turns
/// interrupts off and spins past that deadline before replying: the caller must get the
/// reply. The order holds only if the server held the CPU before the deadline; when the host
/// stalled the guest longer than the margin first (the caller then rightly times out), the
/// round proves nothing and runs again with twice the margin (1 ms up to 1 s).
fn reply_after_deadline(cpu: u32) -> TestResult {
    let mut margin = ms(1);
    for _ in 0..11 {
        let e = new_ep()?;
        DEADLINE.store(u64::MAX, Ordering::Release);
        HELD_AT.store(u64::MAX, Ordering::Release);
        MARGIN.store(margin, Ordering::Release);
        let s = spawn_on(cpu, spinning_server, 0)?;
        wait_for("the server queued", 30_000, || {
            ipc::queued(e) == Some((0, 1))
        })?;
        let c = spawn_on(cpu, racing_caller, 0)?;
        let codes = join_all(&[c, s], 30_000)?;
        let _ = ipc::destroy(e);
        let forced = HELD_AT.load(Ordering::Acquire) <= DEADLINE.load(Ordering::Acquire);
        match (forced, codes[0], codes[1]) {
            (_, 0, 0) => return Ok(()),
            // Timed out before the server held the CPU: consistent, but not the case wanted.
            (false, 2, 2) => margin *= 2,
            _ => {
                return Err(format!(
                    "reply first (held before the deadline: {forced}): caller {}, server {}",
                    codes[0], codes[1]
                ));
            }
        }
    }
    Err("reply first: the guest stalled past a 1 s deadline eleven times".into())
}

/// Time-out and reply racing, each order forced: the time-out first (the reply then finds
/// no caller), and the reply first after the deadline passed (the caller gets the reply).
fn timeout_race(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    each_path(|_| {
        // The time-out first.
        let e = new_ep()?;
        FLAG.store(false, Ordering::Release);
        let s = spawn_on(cpu, late_server, 0)?;
        wait_for("the server queued", 30_000, || {
            ipc::queued(e) == Some((0, 1))
        })?;
        let r = ipc::call(e, 0, &make(0, 0), rdtsc() + ms(3));
        FLAG.store(true, Ordering::Release);
        let code = join_all(&[s], 30_000)?[0];
        let _ = ipc::destroy(e);
        check(r == Err(IpcError::TimedOut) && code == 0, || {
            format!("time-out first: caller {r:?}, server {code}")
        })?;
        reply_after_deadline(cpu)
    })
}

/// Bad handles, missing rights, full tables, long messages, replies without a caller.
fn bad_handles(_: &BootState) -> TestResult {
    let t = HandleTable::new();
    let e = ipc::create().map_err(|x| format!("create: {x}"))?;
    let m = make(0, 0);
    let d = rdtsc() + ms(2);
    check(t.get(Handle(64)) == Err(IpcError::BadHandle), || {
        "out of range".into()
    })?;
    check(t.get(Handle(u32::MAX)) == Err(IpcError::BadHandle), || {
        "u32::MAX".into()
    })?;
    check(t.call(Handle(3), &m, d) == Err(IpcError::BadHandle), || {
        "empty".into()
    })?;
    let recv_only = t
        .insert(Cap {
            ep: e,
            rights: Rights::RECV,
            badge: 1,
        })
        .map_err(|x| format!("insert: {x}"))?;
    let send_only = t
        .insert(Cap {
            ep: e,
            rights: Rights::SEND,
            badge: 2,
        })
        .map_err(|x| format!("insert: {x}"))?;
    check(t.call(recv_only, &m, d) == Err(IpcError::NoRights), || {
        "call without SEND".into()
    })?;
    check(t.send(recv_only, &m, d) == Err(IpcError::NoRights), || {
        "send without SEND".into()
    })?;
    check(t.recv(send_only, d) == Err(IpcError::NoRights), || {
        "recv without RECV".into()
    })?;
    check(
        t.reply_recv(send_only, &m, d) == Err(IpcError::NoRights),
        || "reply_recv without RECV".into(),
    )?;
    check(
        t.get(send_only).map(|c| (c.ep, c.badge)) == Ok((e, 2)),
        || "lookup".into(),
    )?;
    // The fastpath's look-up of a whole register: the valid handle with any high bit set
    // names nothing.
    let w = u64::from(send_only.0);
    check(t.get_word(w).map(|c| (c.ep, c.badge)) == Ok((e, 2)), || {
        "get_word of the handle".into()
    })?;
    for bad in [64, 1 << 32 | w, 1 << 63 | w, u64::MAX] {
        check(t.get_word(bad) == Err(IpcError::BadHandle), || {
            format!("get_word({bad:#x})")
        })?;
    }
    let mut long = m;
    long.len = 65;
    check(
        t.call(send_only, &long, d) == Err(IpcError::TooLong),
        || "65 bytes".into(),
    )?;
    check(ipc::reply(&m) == Err(IpcError::NoCaller), || {
        "reply with no caller".into()
    })?;
    check(t.remove(recv_only).is_ok(), || "remove".into())?;
    check(t.remove(recv_only) == Err(IpcError::BadHandle), || {
        "removed twice".into()
    })?;
    check(t.get(recv_only) == Err(IpcError::BadHandle), || {
        "removed entry looked up".into()
    })?;
    let mut n = 1;
    while t
        .insert(Cap {
            ep: e,
            rights: Rights::ALL,
            badge: 3,
        })
        .is_ok()
    {
        n += 1;
    }
    check(n == crate::ipc::handle::HANDLES, || {
        format!("{n} entries fit")
    })?;
    ipc::destroy(e).map_err(|x| format!("destroy: {x}"))?;
    check(t.call(send_only, &m, d) == Err(IpcError::Closed), || {
        "destroyed endpoint".into()
    })?;
    check(t.recv(Handle(5), d) == Err(IpcError::Closed), || {
        "destroyed endpoint recv".into()
    })?;
    check(
        IpcError::TimedOut.errno() == 110 && IpcError::BadHandle.errno() == 9,
        || "errno mapping".into(),
    )
}

/// Server and client pairs of `timed_race` (even pairs share a CPU, odd ones do not).
const RACE_PAIRS: usize = 4;
/// Timed calls of each `timed_race` client.
const RACE_ROUNDS: u64 = 96;
/// `timed_race`'s call label (its reply: `+ 1`).
const RACE_CALL: u32 = 0x7ace;
static RACE_EPS: [AtomicU64; RACE_PAIRS] = [const { AtomicU64::new(0) }; RACE_PAIRS];
/// Calls of each `timed_race` client that have returned (the server holds a mode-3 call
/// until its number is below this).
static RACE_EXPIRED: [AtomicU64; RACE_PAIRS] = [const { AtomicU64::new(0) }; RACE_PAIRS];
/// The two ring threads of `timed_race` (raw tids) and whose turn it is (0 or 1).
static RING_TIDS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static RING_TURN: AtomicU64 = AtomicU64::new(0);
static RACE_STOP: AtomicBool = AtomicBool::new(false);
/// `timed_race`'s outcomes: calls answered, calls timed out, replies that found no caller,
/// wake-ups passed between the ring threads.
static RACE_COUNTS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Serves `timed_race` calls on endpoint `RACE_EPS[k]` until `STOP`. Word 1 of a call is
/// its caller's deadline, word 2 how to answer: at once, by spinning (interrupts on) until
/// the deadline, by sleeping until it (a sleeper due at the caller's own deadline), or only
/// once the caller timed out (held: nothing but the caller's deadline ends its wait). The
/// first three race the caller's time-out; a reply may find no caller.
fn race_server(k: u64) -> u64 {
    let ep = EpRef::from_raw(RACE_EPS[k as usize].load(Ordering::Acquire));
    let mut m = match ipc::recv(ep, rdtsc() + ms(60_000)) {
        Ok(m) => m,
        Err(_) => return 1,
    };
    loop {
        if m.label == STOP {
            return u64::from(ipc::reply(&m).is_err()) * 2;
        }
        let deadline = m.words[1];
        match m.words[2] {
            0 => {}
            1 => {
                while rdtsc() < deadline {
                    core::hint::spin_loop();
                }
            }
            2 => {
                let per_us = (ms(1) / 1000).max(1);
                sched::sleep_us(deadline.saturating_sub(rdtsc()).div_ceil(per_us));
            }
            _ => {
                // Held until the caller counted it timed out: only its deadline ends it.
                let d = rdtsc() + ms(30_000);
                while RACE_EXPIRED[k as usize].load(Ordering::Acquire) <= m.words[0] {
                    if rdtsc() > d {
                        return 5;
                    }
                    sched::sleep_us(10);
                }
            }
        }
        // Odd calls: the reply alone (counted when it finds no caller), then the receive.
        // Even ones: both in one `reply_recv` (its fastpath claims a caller blocked here).
        let a = Msg::new(RACE_CALL + 1, m.words);
        if m.words[0] & 1 == 1 {
            if ipc::reply(&a) == Err(IpcError::NoCaller) {
                RACE_COUNTS[2].fetch_add(1, Ordering::Relaxed);
            }
            m = match ipc::recv(ep, rdtsc() + ms(60_000)) {
                Ok(m) => m,
                Err(_) => return 3,
            };
            continue;
        }
        m = match ipc::reply_recv(ep, &a, rdtsc() + ms(60_000)) {
            Ok(m) => m,
            Err(_) => return 4,
        };
    }
}

/// `RACE_ROUNDS` timed calls on `RACE_EPS[k]` (deadlines from now to 1 ms away), each
/// answered (its own words back; never a held one) or timed out after its deadline; then
/// `STOP`. Returns the number of wrong outcomes.
fn race_client(k: u64) -> u64 {
    let ep = EpRef::from_raw(RACE_EPS[k as usize].load(Ordering::Acquire));
    let us = ms(1) / 1000;
    let mut bad = 0;
    for r in 0..RACE_ROUNDS {
        let deadline = rdtsc() + [0, 20, 150, 1000][(r % 4) as usize] * us;
        let mode = (r / 4 + k) % 4;
        let mut w = [r, deadline, mode, k, 0, 0, 0, 0];
        w[7] = checksum(&w);
        let m = Msg::new(RACE_CALL, w);
        match ipc::call(ep, 0, &m, deadline) {
            Ok(a) if a.label == RACE_CALL + 1 && a.words == w && mode != 3 => {
                RACE_COUNTS[0].fetch_add(1, Ordering::Relaxed);
            }
            Err(IpcError::TimedOut) if rdtsc() >= deadline => {
                RACE_COUNTS[1].fetch_add(1, Ordering::Relaxed);
            }
            _ => bad += 1,
        }
        RACE_EXPIRED[k as usize].store(r + 1, Ordering::Release);
    }
    let stop = Msg::new(STOP, [k; 8]);
    bad + u64::from(ipc::call(ep, 0, &stop, rdtsc() + ms(60_000)).is_err())
}

/// Sleeps `(37 + 13 k) us` at a time until `RACE_STOP`: sleepers come and go on its CPU.
fn race_sleeper(k: u64) -> u64 {
    while !RACE_STOP.load(Ordering::Acquire) {
        sched::sleep_us(37 + 13 * k);
    }
    0
}

/// Ring thread `k` (0 or 1, on two CPUs when there are two): waits for its turn, passes it
/// to the other and wakes it (a cross-CPU wake: the other CPU's mailbox and doorbell),
/// until `RACE_STOP`. A wait is untimed in effect (30 s): one that ends by its deadline is
/// a lost wake-up. Returns the number of those.
fn race_ring(k: u64) -> u64 {
    while RING_TIDS[(1 - k) as usize].load(Ordering::Acquire) == 0 {
        sched::yield_now();
    }
    let other = Tid::from_raw(RING_TIDS[(1 - k) as usize].load(Ordering::Acquire));
    let mut lost = 0;
    loop {
        let d = rdtsc() + ms(30_000);
        while RING_TURN.load(Ordering::Acquire) != k && !RACE_STOP.load(Ordering::Acquire) {
            if sched::block_until(d, || {
                RING_TURN.load(Ordering::Acquire) != k && !RACE_STOP.load(Ordering::Acquire)
            }) {
                lost += 1;
                break;
            }
        }
        if RACE_STOP.load(Ordering::Acquire) {
            sched::wake(other);
            return lost;
        }
        RING_TURN.store(1 - k, Ordering::Release);
        RACE_COUNTS[3].fetch_add(1, Ordering::Relaxed);
        sched::wake(other);
    }
}

/// Timed IPC waits expiring while their replies race them (at once, at the deadline by a
/// spinning server, at the deadline by a sleeping one) or with no reply coming (held
/// until the caller gave up), on one CPU (fastpath handoffs with deadlines, the receiver
/// and the caller claimed under the endpoint lock) and across CPUs, while other threads
/// add and drop sleepers on the same CPUs and two threads wake each other across CPUs
/// (mailboxes and doorbells). Every call must end answered or timed out after its
/// deadline, and every thread must end: a lost wake-up or sleeper is a hang, caught by the
/// joins' deadline (with `SCHED` lines). (Dropping the caller from the sleeper list in
/// `sched::Here::handoff` makes it fail at -smp 1.)
fn timed_race(_: &BootState) -> TestResult {
    let n = ncpus();
    RACE_STOP.store(false, Ordering::Release);
    RING_TURN.store(0, Ordering::Release);
    RING_TIDS.iter().for_each(|t| t.store(0, Ordering::Release));
    RACE_COUNTS
        .iter()
        .for_each(|c| c.store(0, Ordering::Relaxed));
    let mut eps = Vec::new();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    let mut others = Vec::new();
    let r = (|| {
        for k in 0..RACE_PAIRS {
            let e = ipc::create().map_err(|e| format!("create: {e}"))?;
            eps.push(e);
            RACE_EPS[k].store(e.raw(), Ordering::Release);
            RACE_EXPIRED[k].store(0, Ordering::Release);
            let sc = k as u32 % n;
            servers.push(spawn_on(sc, race_server, k as u64)?);
            clients.push(spawn_on((sc + (k as u32 & 1)) % n, race_client, k as u64)?);
        }
        for k in 0..n.min(RACE_PAIRS as u32 + 2) {
            others.push(spawn_on(k, race_sleeper, u64::from(k))?);
        }
        for k in 0..2u32 {
            let t = spawn_on((n - 1 + k) % n, race_ring, u64::from(k))?;
            RING_TIDS[k as usize].store(t.raw(), Ordering::Release);
            others.push(t);
        }
        let codes = join_all(&clients, 60_000)?;
        check(codes.iter().all(|&c| c == 0), || {
            format!("wrong outcomes per client: {codes:?}")
        })?;
        let codes = join_all(&servers, 60_000)?;
        check(codes.iter().all(|&c| c == 0), || {
            format!("servers ended with {codes:?}")
        })?;
        RACE_STOP.store(true, Ordering::Release);
        for t in RING_TIDS.iter() {
            sched::wake(Tid::from_raw(t.load(Ordering::Acquire)));
        }
        let codes = join_all(&others, 60_000)?;
        check(codes.iter().all(|&c| c == 0), || {
            format!("sleepers and ring threads (lost wake-ups): {codes:?}")
        })?;
        let [a, t, l, w] = RACE_COUNTS.each_ref().map(|c| c.load(Ordering::Relaxed));
        crate::kprintln!(
            "INFO,ipc.timed_race,answered,{a},timed_out,{t},replies_too_late,{l},ring_wakes,{w}"
        );
        Ok(())
    })();
    RACE_STOP.store(true, Ordering::Release);
    for e in eps {
        let _ = ipc::destroy(e);
    }
    r
}

/// A reference to a destroyed endpoint whose slot a new endpoint took (with a region) must
/// get `Closed` from `region`, not the new endpoint's region: `shm_map` maps the region
/// `region` names, and a lock-free read without the generation check let a process map,
/// through a handle to an endpoint destroyed under it, the region of whichever endpoint
/// took the slot next (another process's). The slot is reused on purpose: endpoints are
/// created (and kept) until one lands in it.
fn stale_region(_: &BootState) -> TestResult {
    const TAG: u64 = 0x5eed_0000_0001;
    let old = ipc::create().map_err(|e| format!("create: {e}"))?;
    ipc::destroy(old).map_err(|e| format!("destroy: {e}"))?;
    let mut made: Vec<EpRef> = Vec::new();
    let found = (|| {
        for _ in 0..=ipc::MAX_ENDPOINTS {
            let e = ipc::create().map_err(|e| format!("create: {e}"))?;
            made.push(e);
            if e.index == old.index {
                return Ok(e);
            }
        }
        Err(format!("no new endpoint in slot {}", old.index))
    })();
    let r = found.and_then(|new| {
        check(
            ipc::set_region(new, TAG, 8192) == Ok(ipc::Attach::Done),
            || "set_region on the new endpoint".into(),
        )?;
        let stale = ipc::region(old);
        let fresh = ipc::region(new);
        check(
            stale == Err(IpcError::Closed) && fresh == Ok((TAG, 8192)),
            || format!("region: stale reference {stale:?} (want Closed), new endpoint {fresh:?}"),
        )
    });
    for e in made {
        let _ = ipc::destroy(e);
    }
    r
}

/// Set by `killed_caller` once back from its fastpath call: 1 without the reply, 2 with it.
static CAME_BACK: AtomicU64 = AtomicU64::new(0);

/// Calls through the fastpath as the system-call layer does once it has checked its
/// caller's process, with the kill landed since (`aborted` says so when asked, after the
/// caller is marked blocked), then gives up its wait (`wait` would: `Interrupted`; here
/// its deadline passes). 0: as expected.
fn killed_caller(_: u64) -> u64 {
    let ep = ep();
    let m = make(0, 0);
    let g = exo_percpu::IrqGuard::new();
    let Ok((here, w)) = super::endpoint::me_pinned(&g) else {
        return 1;
    };
    let i = here.index();
    let r = super::fastpath::call(
        here,
        w,
        ep,
        0,
        m.info(),
        &m.words,
        ipc::NO_DEADLINE,
        None,
        || true,
    );
    drop(g);
    let Some(seq) = r else {
        return 2;
    };
    let replied =
        w.word.load(Ordering::Acquire) == super::endpoint::pack(seq, super::endpoint::DONE);
    CAME_BACK.store(1 + u64::from(replied), Ordering::Release);
    match super::fastpath::done(i, w, seq, rdtsc() + ms(1)) {
        Err(IpcError::TimedOut) if !replied => 0,
        _ => 3,
    }
}

/// The fastpath's caller being killed meanwhile does not block: the kill found it running
/// (its wake-up did nothing), so `still_wait` asks `aborted` once the caller is marked
/// blocked, and the caller runs again after the receiver it switched to, without the
/// reply (the receiver holds the call: nothing else would wake it). On one CPU (the
/// receiver blocked there, as the fastpath needs); `user.ipc.kill_during_a_fastpath_block_is_not_lost`
/// lands a real kill in that window from another CPU.
fn aborted_caller(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    let e = new_ep()?;
    FLAG.store(false, Ordering::Release);
    CAME_BACK.store(0, Ordering::Release);
    let s = spawn_on(cpu, late_server, 0)?;
    let r = (|| {
        wait_for("the server queued", 30_000, || {
            ipc::queued(e) == Some((0, 1)) && sched::is_blocked(s)
        })?;
        let c = spawn_on(cpu, killed_caller, 0)?;
        let back = wait_for("the caller back", 10_000, || {
            CAME_BACK.load(Ordering::Acquire) != 0
        });
        if back.is_err() {
            // Blocked: only the reply wakes it.
            FLAG.store(true, Ordering::Release);
        }
        let mut codes = join_all(&[c], 30_000)?;
        // The server answers once the caller gave up: its reply must find no caller.
        FLAG.store(true, Ordering::Release);
        codes.extend(join_all(&[s], 30_000)?);
        back.map_err(|e| format!("{e}: it blocked until the reply"))?;
        check(codes == [0, 0], || {
            format!(
                "caller {} (2: no fastpath, 3: wrong end), server {} (3: its late reply found the caller)",
                codes[0], codes[1]
            )
        })
    })();
    FLAG.store(true, Ordering::Release);
    let _ = ipc::destroy(e);
    r
}

/// Calls the ping-pong client made.
static PP_CALLS: AtomicU64 = AtomicU64::new(0);

/// Answers every call with the same message until a `STOP` label.
fn pp_server(_: u64) -> u64 {
    let ep = ep();
    let Ok(mut m) = ipc::recv(ep, rdtsc() + ms(60_000)) else {
        return 1;
    };
    while m.label != STOP {
        m = match ipc::reply_recv(ep, &m, rdtsc() + ms(60_000)) {
            Ok(m) => m,
            Err(_) => return 2,
        };
    }
    u64::from(ipc::reply(&m).is_err()) * 3
}

/// Calls until [`FLAG`] is set (another thread of this CPU ran) or 10 s passed, then
/// `STOP`: 0 if the flag ended the loop.
fn pp_client(_: u64) -> u64 {
    let ep = ep();
    let end = rdtsc() + ms(10_000);
    let m = Msg::new(1, [7; 8]);
    while !FLAG.load(Ordering::Acquire) && rdtsc() < end {
        if ipc::call(ep, 1, &m, rdtsc() + ms(10_000)).is_err() {
            return 2;
        }
        PP_CALLS.fetch_add(1, Ordering::Relaxed);
    }
    let ran = FLAG.load(Ordering::Acquire);
    let mut stop = m;
    stop.label = STOP;
    let stopped = ipc::call(ep, 1, &stop, rdtsc() + ms(10_000)).is_ok();
    u64::from(!ran) | u64::from(!stopped) << 1
}

fn set_flag(_: u64) -> u64 {
    FLAG.store(true, Ordering::Release);
    0
}

/// A client and a server ping-ponging through the fastpath on one CPU, a third thread made
/// runnable there: it runs within a slice or so (the tick preempts the pair), and the
/// client stops when it sees that. Until 2026-12-05 every direct switch gave the thread
/// switched to a fresh slice (`started` = now) instead of the rest of the caller's: the
/// tick never found the slice expired and the third thread ran only when the pair stopped
/// (here the client's 10 s; at -smp 1 a user program's ping-pong froze the machine).
/// Found by review.
fn ping_pong_shares(s: &BootState) -> TestResult {
    if s.opts.mode == Some(smp_bench::Mode::Icount) {
        // No timer under icount: nothing preempts anyone (by design of that mode).
        return Err(format!(
            "{}needs the scheduler's timer (not icount)",
            crate::harness::SKIP
        ));
    }
    let cpu = ncpus() - 1;
    let e = new_ep()?;
    FLAG.store(false, Ordering::Release);
    PP_CALLS.store(0, Ordering::Relaxed);
    let fast_before = ipc::stats().0;
    let s = spawn_on(cpu, pp_server, 0)?;
    let c = spawn_on(cpu, pp_client, 0)?;
    let r = (|| {
        wait_for("the ping-pong to run", 30_000, || {
            PP_CALLS.load(Ordering::Relaxed) >= 100
        })?;
        let x = spawn_on(cpu, set_flag, 0)?;
        join_all(&[x], 30_000)?;
        Ok::<(), String>(())
    })();
    let codes = join_all(&[c, s], 30_000)?;
    let _ = ipc::destroy(e);
    r?;
    let fast = ipc::stats().0.wrapping_sub(fast_before);
    check(codes == [0, 0] && fast >= 100, || {
        format!(
            "client {} (1: the third thread ran only after its 10 s, 2: its STOP failed), server {}, {} calls, {fast} fastpath operations",
            codes[0],
            codes[1],
            PP_CALLS.load(Ordering::Relaxed)
        )
    })
}

/// A 1 MiB region attached and detached (its creator could not map it): a 4 KiB one is
/// refused (`BelowFloor`), descriptors up to 1 MiB may still be queued; one of 1 MiB is
/// attached. Until 2026-12-05 `set_region` did not look at the floor (its caller, `shm_map`,
/// read it apart from the lock): a smaller region could follow a larger one.
fn region_floor_enforced(_: &BootState) -> TestResult {
    const BIG: u64 = 1 << 20;
    let e = new_ep()?;
    let r = (|| {
        check(
            ipc::set_region(e, 0x5a_0001, BIG) == Ok(ipc::Attach::Done),
            || "the first region".into(),
        )?;
        let bound = ipc::zc_bound(e).map_err(|e| format!("{e}"))?;
        check(ipc::detach_region(e, 0x5a_0001) == Ok(true), || {
            "detach".into()
        })?;
        let small = ipc::set_region(e, 0x5a_0002, 4096);
        check(small == Ok(ipc::Attach::BelowFloor(BIG)), || {
            format!("a 4 KiB region after a 1 MiB one (bound was {bound}): {small:?}")
        })?;
        check(ipc::zc_bound(e) == Ok(0), || {
            "the refused region left a bound".into()
        })?;
        let again = ipc::set_region(e, 0x5a_0003, BIG);
        check(again == Ok(ipc::Attach::Done), || {
            format!("a region at the floor: {again:?}")
        })?;
        let other = ipc::set_region(e, 0x5a_0004, 2 * BIG);
        check(other == Ok(ipc::Attach::Occupied), || {
            format!("a second region while one is attached: {other:?}")
        })
    })();
    let gone = ipc::destroy(e).map_err(|x| format!("destroy: {x}"));
    r?;
    gone?;
    // A region offered to a destroyed endpoint is refused and leaves the slot alone.
    let late = ipc::set_region(e, 0x5a_0005, BIG);
    check(late == Err(IpcError::Closed), || {
        format!("a region for a destroyed endpoint: {late:?}")
    })
}

/// A thread's operation count (seq) keeps 48 bits in its state word and in the reply token
/// it gives a server, and the token still names its thread: a caller whose seq passed 2^32
/// is not answered with a reply meant for its seq 2^32 operations earlier. Until 2026-12-05
/// the seq had 32 bits (`seq << 32`: the high bits fell off).
fn seq_bits(_: &BootState) -> TestResult {
    use super::endpoint::{DONE, REPLY_WAIT, pack, seq_of, state_of, token, token_index};
    let mut bad = Vec::new();
    for seq in [1u64, 0xffff_ffff, 1 << 32, (1 << 32) + 7, (1 << 48) - 1] {
        for state in [REPLY_WAIT, DONE] {
            let w = pack(seq, state);
            if seq_of(w) != seq || state_of(w) != state {
                bad.push(format!("pack({seq:#x}, {state}) -> {w:#x}"));
            }
        }
        for i in [0usize, 1, sched::MAX_THREADS - 1] {
            let t = token(i, seq);
            if seq_of(t) != seq || token_index(t) as usize != i {
                bad.push(format!("token({i}, {seq:#x}) -> {t:#x}"));
            }
        }
        if seq < 1 << 32 && pack(seq, REPLY_WAIT) == pack(seq + (1 << 32), REPLY_WAIT) {
            bad.push(format!(
                "seq {seq:#x} and {:#x} pack alike",
                seq + (1 << 32)
            ));
        }
    }
    check(bad.is_empty(), || format!("{bad:?}"))
}

/// Ticks and slice periods the deadline ping-pong's calls took (its client's measurement).
static PPT_TICKS: AtomicU64 = AtomicU64::new(0);
static PPT_PERIODS: AtomicU64 = AtomicU64::new(0);
const PPT_CALLS: u64 = 2000;

/// Spins two slices (its slice expires at a tick with nothing else queued: a new slice
/// starts), then makes `PPT_CALLS` calls, each with a deadline, counting its CPU's ticks.
fn pp_client_ticks(_: u64) -> u64 {
    let ep = ep();
    let cpu = sched::this_cpu();
    let spin = rdtsc() + 2 * sched::slice_tsc();
    while rdtsc() < spin {
        core::hint::spin_loop();
    }
    let ticks = || sched::timer_counts(cpu).map_or(0, |c| c.1);
    let (t0, k0) = (rdtsc(), ticks());
    let m = Msg::new(1, [7; 8]);
    for _ in 0..PPT_CALLS {
        if ipc::call(ep, 1, &m, rdtsc() + ms(10_000)).is_err() {
            return 2;
        }
    }
    PPT_TICKS.store(ticks() - k0, Ordering::Relaxed);
    PPT_PERIODS.store(
        (rdtsc() - t0) / sched::slice_tsc().max(1) + 1,
        Ordering::Relaxed,
    );
    let mut stop = m;
    stop.label = STOP;
    u64::from(ipc::call(ep, 1, &stop, rdtsc() + ms(10_000)).is_err())
}

/// A client and a server alone on a CPU, ping-ponging through the fastpath with deadlines
/// after the client's slice has expired once: the CPU takes about a tick per slice, not one
/// per call (the bound is the measured slices, whatever the host's speed). Until 2026-12-05
/// the tick that granted the expired slice a new one did not give it to the thread: a
/// direct switch passed the old start on, and each hand-off with a deadline re-armed the
/// timer for that long-past end (a tick per call, about 2000 here; found by review).
fn ping_pong_ticks(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    let e = new_ep()?;
    let s = spawn_on(cpu, pp_server, 0)?;
    let c = spawn_on(cpu, pp_client_ticks, 0)?;
    let codes = join_all(&[c, s], 120_000)?;
    let _ = ipc::destroy(e);
    let (ticks, periods) = (
        PPT_TICKS.load(Ordering::Relaxed),
        PPT_PERIODS.load(Ordering::Relaxed),
    );
    crate::kprintln!(
        "INFO,ipc,ping_pong_ticks,cpu,{cpu},calls,{PPT_CALLS},ticks,{ticks},periods,{periods}"
    );
    check(codes == [0, 0] && ticks <= 2 * periods + 8, || {
        format!(
            "client {}, server {}: {ticks} ticks for {PPT_CALLS} calls in {periods} slices",
            codes[0], codes[1]
        )
    })
}
