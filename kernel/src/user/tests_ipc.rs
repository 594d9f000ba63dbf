//! Kernel tests of the IPC system-call layer (`super::ipc`): argument checks and errnos
//! through the dispatcher's core on a table of the test's own, owning handles (inherit,
//! close, the endpoint going with its last handle), on kernel threads; and a process
//! (`/ipcdemo`'s `KILLED` role) killed while it waits inside an IPC call; a thread parked by
//! the fastpath's exit, then resumed by a switch (`PARKED_HELD` role).

use super::aspace::MAP_HOLD;
use super::ipc::{OP_HOLD, call, deadline_after, fast_info};
use super::process;
use super::syscall::Errno;
use crate::boot::BootState;
use crate::harness::{Needs, SKIP, TestResult, check, join_all, ms, ncpus};
use crate::ipc::endpoint::with_lock_held;
use crate::ipc::{self, Cap, EpRef, Handle, HandleTable, IpcError, Msg, Rights};
use crate::ktest;
use crate::sched::{self, Builder, Tid};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use exo_arch::syscall::IpcFrame;
use exo_arch::tsc::rdtsc;

ktest!(Needs::Threads, "user.ipc.syscall_errnos", errnos);
ktest!(
    Needs::Threads,
    "user.shm_failed_map_keeps_a_region_another_process_maps",
    shm_undo_keeps_shared
);
ktest!(
    Needs::Threads,
    "user.ipc.handle_replied_to_a_parked_caller_being_killed_is_not_lost",
    parked_handle_reply
);
ktest!(
    Needs::Threads,
    "user.ipc.parked_thread_resumes_counting_no_lock",
    parked_resumes_counting_no_lock
);
ktest!(Needs::Threads, "user.ipc.owning_handles", owning);
ktest!(
    Needs::Cpus,
    "user.ipc.fast_info_is_the_two_tests",
    fast_info_tests
);
ktest!(
    Needs::Threads,
    "user.ipc.kill_during_a_fastpath_block_is_not_lost",
    kill_window
);
ktest!(
    Needs::Threads,
    "user.ipc.zero_copy_checked_against_the_endpoint_used",
    zc_refill
);
ktest!(
    Needs::Threads,
    "user.ipc.zero_copy_reply_checked_against_the_calls_endpoint",
    zc_reply
);
ktest!(
    Needs::Threads,
    "user.ipc.reply_recv_epipe_before_its_reply_only_for_zero_copy",
    reply_recv_epipe
);
ktest!(
    Needs::Threads,
    "user.ipc.zero_copy_reply_through_a_deaf_endpoint_goes",
    zc_reply_deaf
);
ktest!(
    Needs::Threads,
    "user.ipc.huge_timeouts_do_not_expire_at_once",
    huge_timeouts
);
ktest!(
    Needs::Threads,
    "user.ipc.zero_copy_needs_a_region",
    zc_needs_region
);

const ERANGE: i64 = 34;
const ETIMEDOUT: i64 = 110;
const ESRCH: i64 = 3;
const EPIPE: i64 = 32;

fn frame(nr: u64, rdi: u64, rsi: u64, timeout_ns: u64) -> IpcFrame {
    let mut f = IpcFrame {
        rbx: timeout_ns,
        ..IpcFrame::default()
    };
    f.rax = nr;
    f.rdi = rdi;
    f.rsi = rsi;
    f
}

fn run(t: &HandleTable, nr: u64, rdi: u64, rsi: u64) -> Result<i64, i64> {
    let mut f = frame(nr, rdi, rsi, 1_000_000);
    call(t, &mut f, None)
}

fn errnos(_: &BootState) -> TestResult {
    use super::syscall::nr::*;
    let t = HandleTable::new();
    let info64 = 64u64 << 32;
    let cases: &[(&str, u64, u64, u64, i64)] = &[
        ("create rights 0", ENDPOINT_CREATE, 0, 0, 22),
        ("create rights 4", ENDPOINT_CREATE, 4, 0, 22),
        ("call on an empty entry", IPC_CALL, 3, info64, 9),
        ("call on handle 2^32", IPC_CALL, 1 << 32, info64, 9),
        ("recv on handle 64", IPC_RECV, 64, 0, 9),
        ("close of an empty entry", HANDLE_CLOSE, 0, 0, 9),
        ("length 65", IPC_SEND, 0, 65 << 32, 90),
        ("reserved info bit", IPC_CALL, 0, 1 << 45, 22),
        ("reply with no caller", IPC_REPLY, 0, info64, 3),
        ("unknown number", 527, 0, 0, 38),
    ];
    for &(what, nr, rdi, rsi, want) in cases {
        let got = run(&t, nr, rdi, rsi);
        check(got == Err(want), || {
            format!("{what}: {got:?}, expected -{want}")
        })?;
    }
    let h = run(&t, ENDPOINT_CREATE, 3, 77).map_err(|e| format!("create: -{e}"))?;
    let s = run(&t, ENDPOINT_CREATE, 1, 0).map_err(|e| format!("create: -{e}"))?;
    let got = run(&t, IPC_RECV, s as u64, 0);
    check(got == Err(1), || format!("recv without the right: {got:?}"))?;
    // Made with the send right alone, nobody can ever receive on it: deaf from the start,
    // a call fails at once (until 2026-12-05 it waited for its deadline: ETIMEDOUT).
    let got = run(&t, IPC_CALL, s as u64, info64);
    check(got == Err(32), || {
        format!("call on a send-only endpoint: {got:?}, expected -32 (EPIPE)")
    })?;
    // Nobody on the other side: the 1 ms timeout passes.
    let got = run(&t, IPC_RECV, h as u64, 0);
    check(got == Err(110), || format!("recv with nobody: {got:?}"))?;
    let got = run(&t, IPC_CALL, h as u64, info64);
    check(got == Err(110), || format!("call with nobody: {got:?}"))?;
    for x in [h, s] {
        check(run(&t, HANDLE_CLOSE, x as u64, 0) == Ok(0), || {
            "close".into()
        })?;
    }
    check(t.count() == 0, || "handles left".into())
}

/// The fastpath's one-test check of the info word against the two tests it stands for (no
/// bit above the zero-copy bit 40, a length of at most 64 in bits 32..39): every length,
/// with and without the zero-copy bit, under every single rejected bit, all of them, and
/// label patterns.
fn fast_info_tests(_: &BootState) -> TestResult {
    let reference = |info: u64| info >> 41 == 0 && (info >> 32) & 0xff <= 64;
    let mut n = 0;
    for len in 0..=0xffu64 {
        for zc in [0, 1u64 << 40] {
            for high in (41..64)
                .map(|b| 1u64 << b)
                .chain([0, !0 << 41, 1 << 63 | 1 << 41])
            {
                for label in [0, 1, 0xffff_ffff, 0x8000_0001] {
                    let info = high | zc | len << 32 | label;
                    check(fast_info(info) == reference(info), || {
                        format!("fast_info({info:#x}) is {}", fast_info(info))
                    })?;
                    n += 1;
                }
            }
        }
    }
    check(n == 256 * 2 * 26 * 4, || format!("{n} cases"))
}

fn owning(_: &BootState) -> TestResult {
    let parent = HandleTable::new();
    let child = HandleTable::new();
    let h = parent
        .create_endpoint(Rights::ALL, 5)
        .map_err(|e| format!("create: {e}"))?;
    let ep = parent.get(h).map_err(|e| format!("get: {e}"))?.ep;
    child.inherit(&parent);
    let c = child.get(h).map_err(|e| format!("inherited: {e}"))?;
    check(c.ep == ep && c.badge == 5, || {
        "inherited entry differs".into()
    })?;
    parent.close(h).map_err(|e| format!("close: {e}"))?;
    check(ipc::queued(ep).is_some(), || {
        "endpoint gone while the child holds a handle".into()
    })?;
    check(parent.close(h) == Err(IpcError::BadHandle), || {
        "close twice".into()
    })?;
    child.close_all();
    check(ipc::queued(ep).is_none(), || {
        "endpoint alive after its last handle".into()
    })?;
    check(child.get(Handle(h.0)) == Err(IpcError::BadHandle), || {
        "entry left after close_all".into()
    })
}

/// The endpoints, handles and flags of the running test (tests run one at a time).
static EP: AtomicU64 = AtomicU64::new(0);
static EP2: AtomicU64 = AtomicU64::new(0);
static FLAG: AtomicBool = AtomicBool::new(false);
static PID: AtomicU64 = AtomicU64::new(0);
static HANDLES: AtomicU64 = AtomicU64::new(0);
static TIMEOUT: AtomicU64 = AtomicU64::new(0);
/// The table the kernel threads of the zero-copy and timeout tests use (its entries do not
/// own their endpoints: the tests destroy them).
static TABLE: HandleTable = HandleTable::new();

fn ep() -> EpRef {
    EpRef::from_raw(EP.load(Ordering::Acquire))
}

/// Empties `TABLE` (whatever a test left there when it failed half-way).
fn clear_table() {
    for k in 0..crate::ipc::handle::HANDLES {
        let _ = TABLE.remove(Handle(k as u32));
    }
}

pub(super) fn create() -> Result<EpRef, String> {
    ipc::create().map_err(|e| format!("create: {e}"))
}

pub(super) fn insert(
    t: &HandleTable,
    ep: EpRef,
    rights: Rights,
    badge: u64,
) -> Result<Handle, String> {
    t.insert(Cap { ep, rights, badge })
        .map_err(|e| format!("insert: {e}"))
}

/// A test's wait for the end of process `pid` ([`process::wait_until`]), 120 s at most: at
/// that deadline `ETIMEDOUT`, with an `INFO,user-test,...` line and the scheduler of every
/// CPU printed. The user tests' waits had no deadline until 2026-12-07: a process that
/// never ended held the whole test job until its timeout with no line to read.
pub(super) fn wait_bounded(pid: u64) -> Result<u64, super::syscall::Errno> {
    wait_within(pid, 120_000, || {})
}

/// [`wait_bounded`] for `limit_ms`, `report` printing what the caller knows besides at the
/// deadline.
pub(super) fn wait_within(
    pid: u64,
    limit_ms: u64,
    report: impl FnOnce(),
) -> Result<u64, super::syscall::Errno> {
    let r = process::wait_until(pid, exo_arch::tsc::rdtsc() + crate::harness::ms(limit_ms));
    if r == Err(super::syscall::Errno::Etimedout) {
        crate::kprintln!(
            "INFO,user-test,process {pid} did not end within {} s",
            limit_ms / 1000
        );
        report();
        crate::sched::dump();
    }
    r
}

/// Polls `cond` (yielding) for up to `limit_ms`; whether it held.
pub(super) fn until(limit_ms: u64, cond: impl Fn() -> bool) -> bool {
    crate::harness::wait_for("a test condition", limit_ms, cond).is_ok()
}

/// `/ipcdemo`'s `KILLED` role (`user/ipcdemo/src/killed.rs`) and its `how`s.
const ROLE_KILLED: u64 = 0x1c << 56 | 9 << 48;
const HOW: [&str; 3] = ["call", "call with a handle", "reply_recv"];
const REPLY_RECV: u64 = 2;
/// The status the test kills the process with (as `exit_group(77)` would).
const KILL_CODE: u64 = 77;

/// A kill that lands while a thread is inside an IPC fastpath, past its process's check
/// and before it blocks, must not be lost: the kill's wake-up finds the thread running and
/// does nothing, so the thread must see the kill itself when it blocks (else it stays
/// blocked for good: no timeout, no message, its process never ends and its parent's
/// `wait` hangs). The window is forced: the process (`KILLED` role, on the last CPU) calls
/// the test's `sync` endpoint; the test, on CPU 0, takes the lock of the endpoint of its
/// next operation, answers `sync`, waits until that operation waits for the lock (so it is
/// past every check, interrupts off), kills the process and lets the lock go. The
/// operation then claims the kernel thread on the other side (same CPU) and switches to it,
/// blocking the process's thread: a `call` through the fastpath (parked), a `call` with a
/// handle in the message (the general path, whose fastpath attempt switches without
/// parking) and a `reply_recv` (parked). Each time the process must end, with the kill's
/// status, while nothing else would wake its thread (the peer holds the call, or no message
/// comes). Needs two CPUs.
fn kill_window(_: &BootState) -> TestResult {
    let n = ncpus();
    if n < 2 {
        return Err(format!(
            "{SKIP}needs two CPUs: the test holds an endpoint's lock on one while the process waits for it on another"
        ));
    }
    // Every case runs (the failures of all of them say more than the first one's).
    let failed: alloc::vec::Vec<String> = (0..3)
        .filter_map(|how| {
            kill_round(how, n - 1)
                .err()
                .map(|e| format!("{}: {e}", HOW[how as usize]))
        })
        .collect();
    if let Some(skip) = failed.iter().find(|e| e.contains(SKIP)) {
        return Err(format!("{SKIP}{}", skip.split(SKIP).last().unwrap_or("")));
    }
    check(failed.is_empty(), || failed.join("; "))
}

fn kill_round(how: u64, cpu: u32) -> TestResult {
    let e = create()?;
    let e2 = create()?;
    EP.store(e.raw(), Ordering::Release);
    EP2.store(e2.raw(), Ordering::Release);
    FLAG.store(false, Ordering::Release);
    // The process's handles: `h` to `e`, `sync` to `e2` (it owns both, so its end destroys
    // them; the test's copy does not own them).
    let t = Box::new(HandleTable::new());
    let h = insert(&t, e, Rights::ALL, 1)?;
    let sync = insert(&t, e2, Rights::SEND, 2)?;
    let arg = ROLE_KILLED | how << 40 | u64::from(sync.0) << 16 | u64::from(h.0);
    let on = |f: fn(u64) -> u64, c: u32| {
        Builder::new()
            .pin(c)
            .spawn(f, how)
            .map_err(|x| format!("spawn on CPU {c}: {x}"))
    };
    // The peer on `e`, on the process's CPU, blocked before the process's operation: a
    // receiver for its call, or the caller it receives from and then answers.
    let mut peer: Option<Tid> = None;
    if how != REPLY_RECV {
        peer = Some(on(held_receiver, cpu)?);
        check(until(30_000, || ipc::queued(e) == Some((0, 1))), || {
            "the peer never queued".into()
        })?;
    }
    let pid = match process::spawn_with("/ipcdemo", arg, Builder::new().pin(cpu), Some(&t)) {
        Ok(p) => p,
        Err(Errno::Enoent) => {
            let _ = ipc::destroy(e);
            let _ = ipc::destroy(e2);
            let _ = peer.map(|p| join_all(&[p], 30_000));
            return Err(format!("{SKIP}no /ipcdemo (run with the initrd)"));
        }
        Err(x) => return Err(format!("spawn of /ipcdemo: {x:?}")),
    };
    PID.store(pid, Ordering::Release);
    drop(t);
    if how == REPLY_RECV {
        check(until(30_000, || ipc::queued(e) == Some((0, 1))), || {
            "the process never received".into()
        })?;
        peer = Some(on(caller_of_process, cpu)?);
    }
    let holder = on(lock_holder, 0)?;
    let held = join_all(&[holder], 60_000)?[0];
    let ended = until(10_000, || process::ended(pid) != Some(false));
    if !ended {
        // Its thread stayed blocked: wake it by the other means (the peer's reply, the
        // endpoint's destruction), so that it ends and the test does not leave it behind.
        FLAG.store(true, Ordering::Release);
        let _ = ipc::destroy(e);
        until(10_000, || process::ended(pid) != Some(false));
    }
    // `wait` joins the process's threads: their IPC state is settled (a thread counts as
    // ended before its exit hook has withdrawn its call), then the peer answers.
    let status = if process::ended(pid) != Some(false) {
        wait_bounded(pid).map_err(|x| format!("{x:?}"))
    } else {
        Err("still running".into())
    };
    FLAG.store(true, Ordering::Release);
    let peer = peer.map_or(Ok(alloc::vec![0]), |p| join_all(&[p], 30_000))?[0];
    let _ = ipc::destroy(e);
    let _ = ipc::destroy(e2);
    check(held == 0, || {
        format!(
            "lock holder: {held} (1: no sync call, 2: reply, 3: the operation never waited for the lock, 4: endpoint gone)"
        )
    })?;
    check(ended, || {
        "the process did not end after its kill: its thread stayed blocked in the fastpath".into()
    })?;
    check(status == Ok(KILL_CODE), || {
        format!("status {status:?}, expected the kill's {KILL_CODE}")
    })?;
    check(peer == 0, || {
        format!(
            "peer: {peer} (1: no call, 2: never released, 3: the late reply found its caller, 4: no reply)"
        )
    })
}

/// `kill_window`'s receiver: takes the process's call, holds it until the test is done
/// with the process, then answers: the killed caller must be gone (`NoCaller`).
fn held_receiver(_: u64) -> u64 {
    if ipc::recv(ep(), rdtsc() + ms(30_000)).is_err() {
        return 1;
    }
    if !until(60_000, || FLAG.load(Ordering::Acquire)) {
        return 2;
    }
    match ipc::reply(&Msg::default()) {
        Err(IpcError::NoCaller) => 0,
        _ => 3,
    }
}

/// `kill_window`'s caller for `reply_recv`: the process answers it (label 1) before it
/// blocks for the next message.
fn caller_of_process(_: u64) -> u64 {
    match ipc::call(ep(), 0, &Msg::new(5, [5; 8]), rdtsc() + ms(30_000)) {
        Ok(r) if r.label == 1 => 0,
        Ok(_) => 3,
        Err(_) => 4,
    }
}

/// `kill_window`'s CPU 0 side: takes the process's call on `sync`, then with the lock of
/// `e` held answers it, waits until the process's next operation waits for that lock and
/// kills the process.
fn lock_holder(_: u64) -> u64 {
    let e2 = EpRef::from_raw(EP2.load(Ordering::Acquire));
    if ipc::recv(e2, rdtsc() + ms(30_000)).is_err() {
        return 1;
    }
    let pid = PID.load(Ordering::Acquire);
    with_lock_held(ep(), |waited| {
        if ipc::reply(&Msg::default()).is_err() {
            return 2;
        }
        let d = rdtsc() + ms(10_000);
        while !waited() {
            if rdtsc() > d {
                return 3;
            }
            core::hint::spin_loop();
        }
        process::end_process(pid, KILL_CODE);
        0
    })
    .unwrap_or(4)
}

/// Info word of a zero-copy test message (label 0x2c, 64 bytes).
const ZC_INFO: u64 = ipc::INFO_ZC | 64 << 32 | 0x2c;

/// A zero-copy call or send on `TABLE`'s handle `HANDLES`, descriptor (0, 1024), 10 s:
/// 0, or the errno.
fn zc_sender(nr: u64) -> u64 {
    let mut f = frame(nr, HANDLES.load(Ordering::Acquire), ZC_INFO, 10_000_000_000);
    f.words[0] = 0;
    f.words[1] = 1024;
    match call(&TABLE, &mut f, None) {
        Ok(_) => 0,
        Err(e) => e as u64,
    }
}

/// A zero-copy descriptor is checked against the region of the endpoint the message then
/// goes to: the general path looked the handle up twice (for the check, then for the
/// operation), so another thread closing it and putting another endpoint in its entry in
/// between had the descriptor checked against one region and sent through the other
/// endpoint (whose receivers trust it to lie inside theirs). Forced with the hold point
/// `OP_HOLD` (after the check, before the operation): the handle names `a` (4 KiB region)
/// when the call or send is checked, `b` (64 bytes) once it is held; the message must come
/// through `a`, with the badge of `a`'s handle.
fn zc_refill(_: &BootState) -> TestResult {
    use super::syscall::nr::{IPC_CALL, IPC_SEND};
    let failed: alloc::vec::Vec<String> = [("call", IPC_CALL), ("send", IPC_SEND)]
        .into_iter()
        .filter_map(|(what, nr)| zc_refill_op(nr).err().map(|e| format!("{what}: {e}")))
        .collect();
    check(failed.is_empty(), || failed.join("; "))
}

fn zc_refill_op(nr: u64) -> TestResult {
    let r = with_regions([4096, 64], |a, b| {
        let h = insert(&TABLE, a, Rights::SEND, 1)?;
        HANDLES.store(u64::from(h.0), Ordering::Release);
        OP_HOLD.arm();
        let s = Builder::new().spawn(zc_sender, nr);
        let held = s.is_ok() && until(30_000, || OP_HOLD.reached());
        // Another thread closes the handle; another endpoint takes its entry.
        let refilled = held
            && TABLE.remove(h).is_ok()
            && TABLE.insert(Cap {
                ep: b,
                rights: Rights::SEND,
                badge: 2,
            }) == Ok(h);
        OP_HOLD.release();
        let s = s.map_err(|e| format!("spawn: {e}"))?;
        let got = ipc::recv(a, rdtsc() + ms(10_000));
        if nr == super::syscall::nr::IPC_CALL && got.is_ok() {
            let _ = ipc::reply(&Msg::default());
        }
        let code = join_all(&[s], 30_000)?[0];
        let on_b = ipc::queued(b);
        let _ = TABLE.remove(h);
        check(held && refilled, || {
            format!("held {held}, entry refilled {refilled}")
        })?;
        check(
            matches!(got, Ok(m) if m.badge == 1 && m.zc && m.words[..2] == [0, 1024]),
            || {
                format!(
                    "not received through the endpoint it was checked against: {got:?} (the other endpoint's queues: {on_b:?}, sender: {code})"
                )
            },
        )?;
        check(code == 0, || format!("sender: errno {code}"))
    });
    OP_HOLD.release();
    r
}

/// Two endpoints with regions of `lens` bytes (opaque tags of their own) for `f`; then the
/// test's handle table is cleared and both are destroyed, whatever `f` returned.
fn with_regions(lens: [u64; 2], f: impl FnOnce(EpRef, EpRef) -> TestResult) -> TestResult {
    let a = create()?;
    let b = create().inspect_err(|_| {
        let _ = ipc::destroy(a);
    })?;
    let r = check(
        ipc::set_region(a, 0x2c_0001, lens[0]) == Ok(ipc::Attach::Done)
            && ipc::set_region(b, 0x2c_0002, lens[1]) == Ok(ipc::Attach::Done),
        || "set_region".into(),
    )
    .and_then(|()| f(a, b));
    clear_table();
    let _ = ipc::destroy(a);
    let _ = ipc::destroy(b);
    r
}

/// A zero-copy call through `small` (4 KiB region) answered with `reply_recv` on `big`
/// (64 KiB): the caller mapped `small`'s region, so the reply's descriptor is checked
/// against it, not against `big`'s. A descriptor past 4 KiB (inside `big`) is `ERANGE`,
/// one inside 4 KiB goes to the caller.
fn zc_reply(_: &BootState) -> TestResult {
    with_regions([65536, 4096], |big, small| {
        let hb = insert(&TABLE, big, Rights::RECV, 0)?;
        let hs = insert(&TABLE, small, Rights::RECV, 0)?;
        HANDLES.store(u64::from(hb.0) | u64::from(hs.0) << 32, Ordering::Release);
        let s = Builder::new()
            .spawn(zc_server, 0)
            .map_err(|e| format!("spawn: {e}"))?;
        let queued = until(30_000, || ipc::queued(small) == Some((0, 1)));
        let mut m = Msg::new(0x2c, [0; 8]);
        m.zc = true;
        m.words[1] = 64;
        let got = if queued {
            ipc::call(small, 3, &m, rdtsc() + ms(30_000))
        } else {
            Err(IpcError::TimedOut)
        };
        let code = join_all(&[s], 30_000)?[0];
        let _ = TABLE.remove(hb);
        let _ = TABLE.remove(hs);
        check(
            matches!(got, Ok(r) if r.label == 0x2d && r.zc && r.words[..2] == [0, 1024]),
            || format!("call: {got:?}, expected the reply with descriptor (0, 1024)"),
        )?;
        check(code == 0, || {
            format!(
                "server: {code} (2: the reply past the caller's region was not ERANGE, 3: the one inside it failed, 4: a call was left to answer after it)"
            )
        })
    })
}

/// `zc_reply`'s server: takes the call on `small`, then answers with `reply_recv` on `big`.
fn zc_server(_: u64) -> u64 {
    use super::syscall::nr::{IPC_RECV, IPC_REPLY_RECV};
    let handles = HANDLES.load(Ordering::Acquire);
    let (hb, hs) = (handles & 0xffff_ffff, handles >> 32);
    let mut f = frame(IPC_RECV, hs, 0, 30_000_000_000);
    if call(&TABLE, &mut f, None) != Ok(0) {
        return 1;
    }
    let reply = |off: u64, len: u64| {
        let mut f = frame(IPC_REPLY_RECV, hb, ZC_INFO + 1, 1_000_000);
        f.words[0] = off;
        f.words[1] = len;
        call(&TABLE, &mut f, None)
    };
    // Refused by the reply's own check: nothing was sent, the call is still being served.
    if reply(0, 8192) != Err(ERANGE) {
        return 2;
    }
    // Sent; then nothing comes on `big`: the receive times out.
    if reply(0, 1024) != Err(ETIMEDOUT) {
        return 3;
    }
    // The receive's error says the reply went: nothing is left to answer (the ABI's
    // contract, `exo_abi::nr::IPC_REPLY_RECV`).
    let mut f = frame(super::syscall::nr::IPC_REPLY, 0, 0, 0);
    if call(&TABLE, &mut f, None) != Err(ESRCH) {
        return 4;
    }
    0
}

/// `ipc_reply_recv`'s two `EPIPE`s, told apart as `exo_abi::nr::IPC_REPLY_RECV` says. A
/// zero-copy call through `a`, whose endpoint the server destroys once it took the call,
/// answered with a zero-copy `reply_recv` on `b`: `EPIPE` before anything is sent (the
/// descriptor is checked against the region of the call's endpoint, gone), so the call is
/// still served and a plain `ipc_reply` reaches the caller. Then a plain call through `b`,
/// destroyed once taken, answered with a plain `reply_recv` on `b`: the reply goes, the
/// receive fails with `EPIPE`, and `ipc_reply` says `ESRCH`.
fn reply_recv_epipe(_: &BootState) -> TestResult {
    with_regions([4096, 4096], |a, b| {
        let ha = insert(&TABLE, a, Rights::RECV, 0)?;
        let hb = insert(&TABLE, b, Rights::RECV, 0)?;
        HANDLES.store(u64::from(ha.0) | u64::from(hb.0) << 32, Ordering::Release);
        EP.store(a.raw(), Ordering::Release);
        EP2.store(b.raw(), Ordering::Release);
        let s = Builder::new()
            .spawn(epipe_server, 0)
            .map_err(|e| format!("spawn: {e}"))?;
        let mut m = Msg::new(0x2c, [0; 8]);
        m.zc = true;
        m.words[1] = 64;
        let first = if until(30_000, || ipc::queued(a) == Some((0, 1))) {
            ipc::call(a, 1, &m, rdtsc() + ms(30_000))
        } else {
            Err(IpcError::TimedOut)
        };
        let second = if until(30_000, || ipc::queued(b) == Some((0, 1))) {
            ipc::call(b, 2, &Msg::new(0x2e, [5; 8]), rdtsc() + ms(30_000))
        } else {
            Err(IpcError::TimedOut)
        };
        let code = join_all(&[s], 30_000)?[0];
        let _ = TABLE.remove(ha);
        let _ = TABLE.remove(hb);
        check(matches!(first, Ok(r) if r.label == 0x2d && !r.zc), || {
            format!("zero-copy call: {first:?}, expected the plain reply 0x2d")
        })?;
        check(matches!(second, Ok(r) if r.label == 0x2f), || {
            format!("plain call: {second:?}, expected the reply 0x2f")
        })?;
        check(code == 0, || {
            format!(
                "server: {code} (1/5: a receive failed, 2: the zero-copy reply_recv was not EPIPE, 3: the ipc_reply after it failed, 4: the plain reply_recv was not EPIPE, 6: ipc_reply after it was not ESRCH)"
            )
        })
    })
}

/// `reply_recv_epipe`'s server (`HANDLES`: `a`'s handle, then `b`'s; `EP`, `EP2`: `a`, `b`).
fn epipe_server(_: u64) -> u64 {
    use super::syscall::nr::{IPC_RECV, IPC_REPLY, IPC_REPLY_RECV};
    let handles = HANDLES.load(Ordering::Acquire);
    let (ha, hb) = (handles & 0xffff_ffff, handles >> 32);
    let plain = |label: u64| 64 << 32 | label;
    let mut f = frame(IPC_RECV, ha, 0, 30_000_000_000);
    if table_call(&mut f) != Ok(0) {
        return 1;
    }
    let _ = ipc::destroy(ep());
    let mut f = frame(IPC_REPLY_RECV, hb, ZC_INFO + 1, 1_000_000);
    f.words[1] = 64;
    if table_call(&mut f) != Err(EPIPE) {
        return 2;
    }
    let mut f = frame(IPC_REPLY, 0, plain(0x2d), 0);
    if table_call(&mut f) != Ok(0) {
        return 3;
    }
    let mut f = frame(IPC_RECV, hb, 0, 30_000_000_000);
    if table_call(&mut f) != Ok(0) {
        return 5;
    }
    let _ = ipc::destroy(EpRef::from_raw(EP2.load(Ordering::Acquire)));
    let mut f = frame(IPC_REPLY_RECV, hb, plain(0x2f), 1_000_000);
    if table_call(&mut f) != Err(EPIPE) {
        return 4;
    }
    let mut f = frame(IPC_REPLY, 0, plain(0x30), 0);
    if table_call(&mut f) != Err(ESRCH) {
        return 6;
    }
    0
}

/// A server that takes a zero-copy call, then closes its last receive handle (the endpoint
/// goes deaf: new calls fail, the ones taken are still answered) answers it with a
/// zero-copy reply: the reply goes (its descriptor checked against the region the deaf
/// endpoint keeps) and the caller gets it. Until 2026-12-06 the reply was `EPIPE` and the
/// caller waited out its deadline (found by review).
fn zc_reply_deaf(_: &BootState) -> TestResult {
    let e = create()?;
    let held = ipc::set_region(e, 0x2c_0003, 4096) == Ok(ipc::Attach::Done)
        && ipc::retain(e, Rights::ALL).is_ok()
        && ipc::retain(e, Rights::SEND).is_ok();
    let r = check(held, || "set-up: region or references".into()).and_then(|()| {
        let h = insert(&TABLE, e, Rights::RECV, 0)?;
        HANDLES.store(u64::from(h.0), Ordering::Release);
        EP.store(e.raw(), Ordering::Release);
        let s = Builder::new()
            .spawn(zc_deaf_server, 0)
            .map_err(|e| format!("spawn: {e}"))?;
        let queued = until(30_000, || ipc::queued(e) == Some((0, 1)));
        let mut m = Msg::new(0x2c, [0; 8]);
        m.zc = true;
        m.words[1] = 64;
        let got = if queued {
            ipc::call(e, 3, &m, rdtsc() + ms(30_000))
        } else {
            Err(IpcError::TimedOut)
        };
        let code = join_all(&[s], 30_000)?[0];
        check(
            matches!(got, Ok(r) if r.label == 0x2d && r.zc && r.words[..2] == [0, 64]),
            || format!("call: {got:?}, expected the reply with descriptor (0, 64)"),
        )?;
        check(code == 0, || {
            format!("server: {code} (1: its receive failed, 2: the endpoint did not go deaf, else the reply's errno)")
        })
    });
    clear_table();
    ipc::release(e, Rights::SEND);
    let _ = ipc::destroy(e);
    r
}

/// `zc_reply_deaf`'s server: takes the call on `TABLE`'s handle `HANDLES`, lets go of the
/// endpoint's receive reference (deaf), then answers with `ipc_reply`, descriptor (0, 64).
fn zc_deaf_server(_: u64) -> u64 {
    use super::syscall::nr::{IPC_RECV, IPC_REPLY};
    let mut f = frame(IPC_RECV, HANDLES.load(Ordering::Acquire), 0, 30_000_000_000);
    if table_call(&mut f) != Ok(0) {
        return 1;
    }
    let e = ep();
    ipc::release(e, Rights::ALL);
    if ipc::check(e).is_ok() {
        return 2;
    }
    let mut f = frame(IPC_REPLY, 0, ZC_INFO + 1, 0);
    f.words[0] = 0;
    f.words[1] = 64;
    match table_call(&mut f) {
        Ok(_) => 0,
        Err(e) => e as u64,
    }
}

/// One IPC call on `TABLE` (out of line: `call` is inlined into each caller, and a server
/// with many calls made a frame larger than a debug build's kernel stack).
#[inline(never)]
fn table_call(f: &mut IpcFrame) -> Result<i64, i64> {
    call(&TABLE, f, None)
}

/// `huge_timeouts`' receiver: `ipc_recv` on `TABLE`'s handle `HANDLES` with the timeout
/// `TIMEOUT`; 0 if it got the test's message, else the errno (or 1). Sets `FLAG` when done.
fn huge_receiver(_: u64) -> u64 {
    use super::syscall::nr::IPC_RECV;
    let mut f = frame(
        IPC_RECV,
        HANDLES.load(Ordering::Acquire),
        0,
        TIMEOUT.load(Ordering::Acquire),
    );
    let r = match call(&TABLE, &mut f, None) {
        Ok(0) if f.rsi as u32 == 0x2e && f.words == [7; 8] => 0,
        Ok(_) => 1,
        Err(e) => e as u64,
    };
    FLAG.store(true, Ordering::Release);
    r
}

/// Timeouts of `u64::MAX` and `i64::MAX` ns ("practically forever"): the deadline they give
/// lies far ahead (its computation overflowed: an immediate `ETIMEDOUT` in a release build,
/// a panic in a debug one), and a receive with one waits until a message comes.
fn huge_timeouts(_: &BootState) -> TestResult {
    let now = rdtsc();
    let d = deadline_after(1_000_000);
    check(d > now && d <= rdtsc() + ms(1), || {
        format!("1 ms: {} ticks, ms(1) {}", d.wrapping_sub(now), ms(1))
    })?;
    for ns in [u64::MAX, i64::MAX as u64] {
        let now = rdtsc();
        let d = deadline_after(ns);
        check(d > now.saturating_add(ms(3_600_000)), || {
            format!(
                "timeout {ns:#x} ns: a deadline {} ticks ahead",
                d.wrapping_sub(now)
            )
        })?;
        let e = create()?;
        let r = (|| {
            let h = insert(&TABLE, e, Rights::ALL, 0)?;
            HANDLES.store(u64::from(h.0), Ordering::Release);
            TIMEOUT.store(ns, Ordering::Release);
            FLAG.store(false, Ordering::Release);
            let t = Builder::new()
                .spawn(huge_receiver, 0)
                .map_err(|x| format!("spawn: {x}"))?;
            let waiting = until(30_000, || {
                FLAG.load(Ordering::Acquire)
                    || (ipc::queued(e) == Some((0, 1)) && sched::is_blocked(t))
            }) && !FLAG.load(Ordering::Acquire);
            let sent =
                waiting && ipc::send(e, 0, &Msg::new(0x2e, [7; 8]), rdtsc() + ms(30_000)).is_ok();
            if !sent {
                // A receiver still waiting ends with the endpoint.
                let _ = ipc::destroy(e);
            }
            let code = join_all(&[t], 30_000)?[0];
            let _ = TABLE.remove(h);
            check(waiting && sent && code == 0, || {
                format!(
                    "timeout {ns:#x} ns: receiver waiting {waiting}, sent {sent}, receiver {code} (110: timed out)"
                )
            })
        })();
        clear_table();
        let _ = ipc::destroy(e);
        r?;
    }
    Ok(())
}

/// A zero-copy descriptor on an endpoint with no region is `ERANGE`, even an empty one
/// (`(0, 0)` passed a check against a length of 0); with a region, every descriptor that
/// lies inside it passes (empty ones at its end too) and the others are `ERANGE`.
fn zc_needs_region(_: &BootState) -> TestResult {
    use super::syscall::nr::IPC_SEND;
    let e = create()?;
    let r = (|| {
        let h = insert(&TABLE, e, Rights::ALL, 0)?;
        let send = |off: u64, len: u64| {
            let mut f = frame(IPC_SEND, u64::from(h.0), ZC_INFO, 1_000);
            f.words[0] = off;
            f.words[1] = len;
            call(&TABLE, &mut f, None)
        };
        // Checked, then nobody receives: ETIMEDOUT.
        let cases: &[(bool, u64, u64, i64)] = &[
            (false, 0, 0, ERANGE),
            (false, 0, 1, ERANGE),
            (true, 0, 0, ETIMEDOUT),
            (true, 4096, 0, ETIMEDOUT),
            (true, 0, 4096, ETIMEDOUT),
            (true, 4095, 2, ERANGE),
            (true, 0, 4097, ERANGE),
            (true, u64::MAX, 1, ERANGE),
        ];
        for &(region, off, len, want) in cases {
            if region && ipc::region(e) == Ok((0, 0)) {
                check(
                    ipc::set_region(e, 0x2c_0005, 4096) == Ok(ipc::Attach::Done),
                    || "set_region".into(),
                )?;
            }
            let got = send(off, len);
            check(got == Err(want), || {
                format!("region {region}, descriptor ({off}, {len}): {got:?}, expected -{want}")
            })?;
        }
        let _ = TABLE.remove(h);
        Ok(())
    })();
    clear_table();
    let _ = ipc::destroy(e);
    r
}

/// A `shm_map(h, len)` that created its endpoint's region and then failed to map it (its
/// space already maps `aspace::MAX_SHARED` regions) gives its reference back; if another
/// process mapped the region in between (`shm_map(h, 0)`, here `shm::acquire`), the region
/// lives on and the endpoint must still name it. Until 2026-12-04 it was detached anyway
/// (found by review). Forced: the steps of the two calls in that order, on one CPU.
fn shm_undo_keeps_shared(_: &BootState) -> TestResult {
    let e = create()?;
    let r = (|| {
        let acct = crate::mm::commit::Account::new();
        let (tag, _) = super::shm::create(8192, &acct, 0).map_err(|x| format!("region: {x:?}"))?;
        check(
            ipc::set_region(e, tag, 8192) == Ok(ipc::Attach::Done),
            || "set_region refused".into(),
        )?;
        let other = super::shm::acquire(tag).map_err(|x| format!("acquire: {x:?}"))?;
        super::shm::undo_created(e, tag);
        let named = ipc::region(e).map(|r| r.0);
        let alive = super::shm::alive(tag);
        let last = super::shm::release(tag); // the other process's reference
        check(
            named == Ok(tag) && alive && other.len() == 2 && last && !super::shm::alive(tag),
            || {
                format!(
                    "after the failed map's undo the endpoint names {named:?} (want Ok({tag:#x})), region alive {alive}; the other reference freed it: {last}"
                )
            },
        )
    })();
    let _ = ipc::destroy(e);
    r
}

/// A handle replied to a caller parked by the fastpath whose process is killed before it
/// runs again: the reply's hand-over gives the caller the flight's hold on the endpoint, so
/// the caller must install the handle (its process's end then closes it) or drop it. Until
/// 2026-12-04 the resumed caller checked its process before collecting the reply and ended
/// with the hold in its slot: the endpoint lived on with no handle (found by review).
/// Forced: the process (`KILLED` role, `call`) calls the test's `sync`, then calls `e`,
/// where a kernel thread on its CPU waits: the call parks the process's thread and switches
/// to that thread, which, with interrupts off (so the caller cannot run in between), kills
/// the process and replies with a handle to `e3`, whose only other owner is the test's
/// table. Once the process has ended and the test's handle is closed, `e3` must be gone.
fn parked_handle_reply(_: &BootState) -> TestResult {
    use super::syscall::nr::IPC_REPLY;
    let cpu = ncpus() - 1;
    let e = create()?;
    let e2 = create()?;
    let e3 = create()?;
    EP.store(e.raw(), Ordering::Release);
    PID.store(0, Ordering::Release);
    let h3 = insert(&TABLE, e3, Rights::SEND, 3)?;
    let t = Box::new(HandleTable::new());
    let h = insert(&t, e, Rights::ALL, 1)?;
    let sync = insert(&t, e2, Rights::SEND, 2)?;
    fn replier(h3: u64) -> u64 {
        if ipc::recv(ep(), rdtsc() + ms(30_000)).is_err() {
            return 1;
        }
        let _g = exo_percpu::IrqGuard::new();
        process::end_process(PID.load(Ordering::Acquire), KILL_CODE);
        let mut f = frame(IPC_REPLY, 0, ipc::INFO_HANDLE | 64 << 32, 0);
        f.words[7] = h3;
        match call(&TABLE, &mut f, None) {
            Ok(_) => 0,
            Err(x) => 10 + x as u64,
        }
    }
    let r = (|| {
        let peer = Builder::new()
            .pin(cpu)
            .spawn(replier, u64::from(h3.0))
            .map_err(|x| format!("spawn: {x}"))?;
        check(until(30_000, || ipc::queued(e) == Some((0, 1))), || {
            "the replier never queued".into()
        })?;
        let arg = ROLE_KILLED | u64::from(sync.0) << 16 | u64::from(h.0);
        let pid = match process::spawn_with("/ipcdemo", arg, Builder::new().pin(cpu), Some(&t)) {
            Ok(p) => p,
            Err(x) => {
                FLAG.store(true, Ordering::Release);
                let _ = ipc::destroy(e);
                let _ = join_all(&[peer], 30_000);
                return Err(if x == Errno::Enoent {
                    format!("{SKIP}no /ipcdemo (run with the initrd)")
                } else {
                    format!("spawn of /ipcdemo: {x:?}")
                });
            }
        };
        PID.store(pid, Ordering::Release);
        ipc::recv(e2, rdtsc() + ms(30_000)).map_err(|x| format!("sync call: {x}"))?;
        ipc::reply(&Msg::default()).map_err(|x| format!("sync reply: {x}"))?;
        let replied = join_all(&[peer], 30_000)?[0];
        let status = wait_bounded(pid);
        check(replied == 0 && status == Ok(KILL_CODE), || {
            format!("replier {replied} (0: replied; 1: no call; 10+errno), process {status:?}")
        })
    })();
    drop(t);
    let _ = TABLE.remove(h3);
    let left = ipc::queued(e3).is_some();
    for x in [e, e2, e3] {
        let _ = ipc::destroy(x);
    }
    r?;
    check(!left, || {
        "the endpoint passed to the killed caller outlived every handle to it (its hold was lost)"
            .into()
    })
}

/// `/ipcdemo`'s `PARKED_HELD` role (`user/ipcdemo/src/held.rs`) and the labels of its calls
/// on the test's endpoint (each answered with its own label).
const ROLE_PARKED_HELD: u64 = 0x1c << 56 | 15 << 48;
const HELD_HELLO: u32 = 1;
const HELD_ARM: u32 = 2;
const HELD_PARKED: u32 = 3;
const HELD_DONE: u32 = 4;

/// What `held_checker` saw: the caller's held-lock word while held in `map`, the same while
/// parked by the exit, the parked exits counted from its `ARM` call to then, its word once
/// resumed by a switch and switched out again, and the parked resumptions counted in
/// between (`u64::MAX`: not reached).
static HELD_SEEN: [AtomicU64; 5] = [const { AtomicU64::new(u64::MAX) }; 5];

/// Tick and wake-up preemption held off while it lives (`sched::hold_tick_preemption`,
/// `sched::hold_wake_preemption`): threads switch only where they yield or block.
struct NoPreemption;

impl NoPreemption {
    fn new() -> NoPreemption {
        sched::hold_tick_preemption(true);
        sched::hold_wake_preemption(true);
        NoPreemption
    }
}

impl Drop for NoPreemption {
    fn drop(&mut self) {
        sched::hold_tick_preemption(false);
        sched::hold_wake_preemption(false);
    }
}

/// A thread parked by the fastpath's exit (`Here::handoff_parked` with `exit`: two parked
/// threads, the caller's held-lock word not stored) keeps in its word what an earlier
/// switch-out stored; resumed later by a switch (`cpu::parked_entry`), it must run counting
/// no lock, whatever that word says. Until 2026-12-06 the switch loaded the stale word: a
/// user thread once switched out inside `mmap` with its address space's tables held
/// (counted) ran on counting locks it did not hold (found by the fuzzer on a debug kernel).
/// Forced, everything pinned to one CPU and no thread preempted (`NoPreemption`): the
/// process (`PARKED_HELD` role: a caller and a server thread) parks its server as its
/// endpoint's receiver, the caller maps two pages and is held inside `map` with the tables
/// locked (`aspace::MAP_HOLD`) until this test's kernel thread on that CPU
/// (`held_checker`) has seen it switched out there (its word 2: the tables and its
/// process's space slot) and lets it go; it then calls the parked server: the exit. The
/// server tells the checker (the caller's word must still be the stale one stored in `map`
/// and a parked exit counted: else the path was not taken), answers by
/// `ipc_reply` (the slow path: the caller is woken and switched to), and the caller's next
/// call switches it out again, storing the count it ran with: it must be 0.
fn parked_resumes_counting_no_lock(_: &BootState) -> TestResult {
    let cpu = ncpus() - 1;
    let e = create()?;
    EP.store(e.raw(), Ordering::Release);
    PID.store(0, Ordering::Release);
    for w in &HELD_SEEN {
        w.store(u64::MAX, Ordering::Relaxed);
    }
    // The process's handle to `e` (its end closes it; the test destroys `e`).
    let t = Box::new(HandleTable::new());
    let sync = insert(&t, e, Rights::SEND, 1)?;
    let held = NoPreemption::new();
    let r = (|| {
        let arg = ROLE_PARKED_HELD | u64::from(sync.0);
        let pid = match process::spawn_with("/ipcdemo", arg, Builder::new().pin(cpu), Some(&t)) {
            Ok(p) => p,
            Err(Errno::Enoent) => return Err(format!("{SKIP}no /ipcdemo (run with the initrd)")),
            Err(x) => return Err(format!("spawn of /ipcdemo: {x:?}")),
        };
        PID.store(pid, Ordering::Release);
        let step = Builder::new()
            .pin(cpu)
            .spawn(held_checker, 0)
            .map_err(|x| format!("spawn on CPU {cpu}: {x}"))
            .and_then(|k| join_all(&[k], 180_000).map(|c| c[0]));
        if step != Ok(0) {
            // The process may wait for good (its calls have no deadline), or be held in `map`.
            MAP_HOLD.release();
            process::end_process(pid, KILL_CODE);
        }
        let status = wait_bounded(pid);
        let step = step?;
        check(step == 0 && status == Ok(0), || {
            format!(
                "checker stopped at step {step} (0: done; 1-3 hello, 4-5 arm, 6 the caller never switched out held in map, 7-8 parked, 9-10 done), process {status:?} (want Ok(0); else the role's step)"
            )
        })
    })();
    drop(held);
    drop(t);
    MAP_HOLD.release();
    let _ = ipc::destroy(e);
    r?;
    let seen = HELD_SEEN.each_ref().map(|w| w.load(Ordering::Relaxed));
    check(seen[1] == seen[0] && seen[2] >= 1, || {
        format!(
            "the caller was not parked through the fastpath's exit with its stale word: word {} (want {}, stored in map), parked exits {} (want 1 or more)",
            seen[1], seen[0], seen[2]
        )
    })?;
    check(seen[4] >= 1, || {
        format!(
            "no parked thread resumed by a switch after the exit (resumptions {})",
            seen[4]
        )
    })?;
    check(seen[3] == 0, || {
        format!(
            "the caller, resumed by a switch after the parked exit, ran counting {} lock(s) (want 0: it held none; {} stored in map)",
            seen[3], seen[0]
        )
    })
}

/// `parked_resumes_counting_no_lock`'s kernel thread, on the process's CPU: answers the
/// process's calls on the test's endpoint, doing or checking what each says (see the role).
/// 0, or the step it stopped at.
fn held_checker(_: u64) -> u64 {
    let sync = ep();
    let next = |label: u32| ipc::recv(sync, rdtsc() + ms(30_000)).is_ok_and(|m| m.label == label);
    let answer = |label: u32| ipc::reply(&Msg::new(label, [0; 8])).is_ok();
    if !next(HELD_HELLO) {
        return 1;
    }
    // Its first call: the caller is the process's only thread yet.
    let (mut caller, mut n) = (None, 0);
    super::task::for_each_of(PID.load(Ordering::Acquire), |k| {
        caller = Some(k);
        n += 1;
    });
    let Some(c) = caller.filter(|_| n == 1) else {
        return 2;
    };
    if !answer(HELD_HELLO) {
        return 3;
    }
    // Armed once the server is parked (the caller's `PRIME` came before this call).
    if !next(HELD_ARM) {
        return 4;
    }
    let (exits, _) = sched::parked_counts();
    MAP_HOLD.arm();
    if !answer(HELD_ARM) {
        return 5;
    }
    // The caller, held with its tables locked, switched out (to this thread) at least once:
    // its word counts them and its process's space slot, read-locked around the map.
    if !until(30_000, || {
        MAP_HOLD.reached() && sched::held_word(c).is_some_and(|w| w != 0)
    }) {
        return 6;
    }
    let in_map = sched::held_word(c).unwrap_or(0);
    HELD_SEEN[0].store(in_map, Ordering::Relaxed);
    MAP_HOLD.release();
    // The server's call: the caller is parked by the exit.
    if !next(HELD_PARKED) {
        return 7;
    }
    let (exits_now, resumes) = sched::parked_counts();
    HELD_SEEN[1].store(sched::held_word(c).unwrap_or(u64::MAX), Ordering::Relaxed);
    HELD_SEEN[2].store(exits_now - exits, Ordering::Relaxed);
    if !answer(HELD_PARKED) {
        return 8;
    }
    // The caller's call after its resumption: switched out again, its word stored.
    if !next(HELD_DONE) {
        return 9;
    }
    HELD_SEEN[3].store(sched::held_word(c).unwrap_or(u64::MAX), Ordering::Relaxed);
    HELD_SEEN[4].store(sched::parked_counts().1 - resumes, Ordering::Relaxed);
    if !answer(HELD_DONE) {
        return 10;
    }
    0
}
