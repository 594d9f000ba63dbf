//! `/init`, process 1: greets, spawns `/hello`, waits for it and prints how it ended.
//!
//! `arg` (0 unless the kernel is told otherwise) adds more work, bit by bit:
//! - bit 0: the fault suite: `/faults <k>` for every case, each death checked against
//!   the expected status, repeated `arg >> 32` times (at least once);
//! - bit 1: `/ubench` (the user-mode benchmarks), waited for;
//! - bit 2: `/fuzz` (the system-call fuzzer: one worker per CPU), `arg >> 32` thousand
//!   calls per CPU (0: its default), seed 0, waited for; it must exit 0. (`exo.init=/fuzz`
//!   with `exo.init_arg` runs it directly with any seed: see `user/fuzz`.);
//! - bit 4: the thread suite: `/threads <k>` for every case, each end checked, repeated
//!   `arg >> 32` times (at least once);
//! - bit 5: the IPC suite: `/ipcdemo <k>` for every case (client/server processes and
//!   threads, a server killed mid-call, bad input, timeouts, a destroyed endpoint,
//!   zero-copy, batches, handles passed through the name server), each must exit 0,
//!   repeated `arg >> 32` times (at least once); first it starts the name server `/names`
//!   (case 8 gets its handle), at the end it stops it, which must exit 0;
//! - bit 6: `/nginx` (the "fake nginx": requests/s and latency over IPC for 1..ncpus
//!   workers), `arg >> 32` requests per worker count (0: its default), waited for; it must
//!   exit 0 (every response checked).
//!
//! - bit 7: the watchdog check: `/threads 0x11` (a child that never ends) under a 1 s
//!   limit; it must be killed by the watchdog (status killed SIGKILL).
//! - bits 8..=23: the time limit of each child in seconds (0: the defaults,
//!   [`CASE_LIMIT_S`] for a suite case, [`LONG_LIMIT_S`] for `/ubench`, `/nginx`, `/fuzz`).
//!
//! Every child runs under a watchdog: one still running at its limit is killed
//! (`kill(pid, SIGKILL)`), reported, and counts as unexpected, so a hung child ends the
//! run with a FAIL line and `init: done, FAILED` instead of a hang.
//!
//! Exits 0 when every child ended as expected, 1 otherwise.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "../../faults/src/cases.rs"]
mod cases;
#[path = "../../ipcdemo/src/cases.rs"]
mod ipc_cases;
#[path = "../../threads/src/cases.rs"]
mod thread_cases;

use exo_rt::{Errno, ExitStatus, Timespec, eprintln, println};

exo_rt::entry!(run);

/// `arg` bit: run the fault suite.
const FAULT_SUITE: u64 = 1 << 0;
/// `arg` bit: run the user benchmarks.
const UBENCH: u64 = 1 << 1;
/// `arg` bit: run the thread suite.
const THREAD_SUITE: u64 = 1 << 4;
/// `arg` bit: run the IPC suite.
const IPC_SUITE: u64 = 1 << 5;
/// `arg` bit: run the system-call fuzzer.
const FUZZ: u64 = 1 << 2;
/// `arg` bit: run the fake nginx.
const NGINX: u64 = 1 << 6;
/// `arg` bit: check the watchdog on a child that never ends.
const WATCHDOG_CHECK: u64 = 1 << 7;
/// Default limit of a suite case, seconds: each takes well under a second on TCG.
const CASE_LIMIT_S: u64 = 120;
/// Default limit of `/ubench`, `/nginx` and `/fuzz`, seconds (their CI steps stop QEMU
/// earlier; the limit is for runs without such a bound).
const LONG_LIMIT_S: u64 = 1800;
/// How long a killed child may take to end before init gives up on it, seconds.
const KILL_GRACE_S: u64 = 10;
/// `/threads`' mode that never ends (`user/threads`: `LINGER`).
const THREADS_LINGER: u64 = 0x11;

/// The limit of every child, seconds, when `arg` sets one (bits 8..=23).
static LIMIT_S: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A child's limit: the one `arg` set, or `default` seconds.
fn limit(default: u64) -> u64 {
    match LIMIT_S.load(core::sync::atomic::Ordering::Relaxed) {
        0 => default,
        s => s,
    }
}

fn run(arg: u64) -> i32 {
    let pid = exo_rt::getpid();
    match exo_rt::getcpu() {
        Ok(cpu) => println!("init: hello from pid {pid} on cpu {cpu}"),
        Err(e) => println!("init: hello from pid {pid} on cpu ? (getcpu: {e})"),
    }
    LIMIT_S.store((arg >> 8) & 0xffff, core::sync::atomic::Ordering::Relaxed);
    let mut ok = run_child("/hello", 0, limit(CASE_LIMIT_S)).is_some_and(ExitStatus::success);
    if arg & WATCHDOG_CHECK != 0 {
        ok &= watchdog_check();
    }
    if arg & FAULT_SUITE != 0 {
        ok &= fault_suite((arg >> 32).max(1));
    }
    if arg & THREAD_SUITE != 0 {
        ok &= thread_suite((arg >> 32).max(1));
    }
    if arg & IPC_SUITE != 0 {
        ok &= ipc_suite((arg >> 32).max(1));
    }
    if arg & UBENCH != 0 {
        ok &= run_child("/ubench", 0, limit(LONG_LIMIT_S)).is_some_and(ExitStatus::success);
    }
    if arg & NGINX != 0 {
        ok &= run_child("/nginx", arg >> 32, limit(LONG_LIMIT_S)).is_some_and(ExitStatus::success);
    }
    if arg & FUZZ != 0 {
        // The coordinator's arg: calls per CPU (thousands) in bits 9-31, seed 0.
        let kcalls = (arg >> 32) & 0x7f_ffff;
        ok &= run_child("/fuzz", kcalls << 9, limit(LONG_LIMIT_S)).is_some_and(ExitStatus::success);
    }
    println!(
        "init: done, {}",
        if ok { "all as expected" } else { "FAILED" }
    );
    if ok { 0 } else { 1 }
}

/// Spawns `path` with `arg`, waits for it (at most `limit_s` seconds: [`watch`]), prints
/// how it ended.
fn run_child(path: &str, arg: u64, limit_s: u64) -> Option<ExitStatus> {
    let pid = match exo_rt::spawn(path, arg) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("init: spawn {path}: {e}");
            return None;
        }
    };
    match watch(pid, path, arg, limit_s) {
        Ok(status) => {
            println!("init: {path} (pid {pid}) ended: {status}");
            Some(status)
        }
        Err(e) => {
            eprintln!("init: wait {pid} ({path}): {e}");
            None
        }
    }
}

/// Waits for child `pid` (`path arg`) at most `limit_s` seconds; one still running then is
/// killed (the line `init: watchdog: ...`) and waited for: its status is killed SIGKILL,
/// which no child is expected to end with. `Err` when the wait fails, or when the killed
/// child does not end within [`KILL_GRACE_S`] (`ETIMEDOUT`; it is left running).
fn watch(pid: usize, path: &str, arg: u64, limit_s: u64) -> Result<ExitStatus, Errno> {
    let limit = Timespec::from_nanos(limit_s.saturating_mul(1_000_000_000));
    match exo_rt::wait_timeout(pid, &limit) {
        Err(Errno::ETIMEDOUT) => {}
        r => return r,
    }
    let killed = exo_rt::kill(pid, exo_rt::SIGKILL);
    println!(
        "init: watchdog: {path} {arg:#x} (pid {pid}) still running after {limit_s} s: kill: {killed:?}"
    );
    exo_rt::wait_timeout(pid, &Timespec::from_nanos(KILL_GRACE_S * 1_000_000_000))
}

/// The watchdog on a child that never ends (`/threads` [`THREADS_LINGER`], a spinning
/// thread and a sleeping one) with a 1 s limit: it must come back killed SIGKILL.
fn watchdog_check() -> bool {
    let pid = match exo_rt::spawn("/threads", THREADS_LINGER) {
        Ok(pid) => pid,
        Err(e) => {
            println!("init: watchdog check: spawn /threads: {e}: FAIL");
            return false;
        }
    };
    match watch(pid, "/threads", THREADS_LINGER, 1) {
        Ok(s) if s == ExitStatus::Killed(exo_rt::KillCause::SIGKILL) => {
            println!("init: watchdog check: /threads (pid {pid}) {s}: ok");
            true
        }
        r => {
            println!(
                "init: watchdog check: /threads (pid {pid}) {r:?}, expected killed SIGKILL: FAIL"
            );
            false
        }
    }
}

/// Every case of `/faults`, `rounds` times (see [`run_cases`]).
fn fault_suite(rounds: u64) -> bool {
    let (_, kills, wrong) = run_cases("faults", cases::CASES, rounds);
    println!("init: fault suite: {rounds} round(s), {kills} kill(s), {wrong} unexpected");
    wrong == 0
}

/// Every case of `/threads`, `rounds` times (see [`run_cases`]).
fn thread_suite(rounds: u64) -> bool {
    let (runs, _, wrong) = run_cases("threads", thread_cases::CASES, rounds);
    println!("init: thread suite: {rounds} round(s), {runs} process(es), {wrong} unexpected");
    wrong == 0
}

/// Spawns `/<program> <case.arg>` for every case, `rounds` times, and checks each end; the
/// first round prints each end, later ones only what was unexpected. Returns the processes
/// run, how many were killed, and how many ended otherwise than expected.
fn run_cases(program: &str, cases: &[exo_rt::suite::Case], rounds: u64) -> (u64, u64, u64) {
    run_cases_with(program, cases, rounds, |c| c.arg)
}

/// [`run_cases`], spawning each case with `arg_of(case)` (it is still named by `case.arg`).
fn run_cases_with(
    program: &str,
    cases: &[exo_rt::suite::Case],
    rounds: u64,
    arg_of: impl Fn(&exo_rt::suite::Case) -> u64,
) -> (u64, u64, u64) {
    let (mut runs, mut kills, mut wrong) = (0u64, 0u64, 0u64);
    let mut path = arrayvec::ArrayString::<32>::new();
    path.push('/');
    path.push_str(program);
    for round in 0..rounds {
        for case in cases {
            let arg = arg_of(case);
            let status = match exo_rt::spawn(&path, arg) {
                Ok(pid) => watch(pid, &path, arg, limit(CASE_LIMIT_S)).map(|s| (pid, s)),
                Err(e) => Err(e),
            };
            runs += 1;
            match status {
                Ok((pid, s)) if (case.expect)(s) => {
                    kills += u64::from(matches!(s, ExitStatus::Killed(_)));
                    if round == 0 {
                        println!("init: {program} {} (pid {pid}): {s}: ok", case.arg);
                    }
                }
                Ok((pid, s)) => {
                    wrong += 1;
                    println!(
                        "init: {program} {} (pid {pid}) {}: {s}, expected {}: FAIL",
                        case.arg, case.name, case.expect_text
                    );
                }
                Err(e) => {
                    wrong += 1;
                    println!("init: {program} {}: spawn/wait: {e}: FAIL", case.arg);
                }
            }
        }
    }
    (runs, kills, wrong)
}

/// Every case of `/ipcdemo`, `rounds` times (see [`run_cases`]): each must exit 0. First a
/// name server (`/names`) on a new endpoint, whose handle the cases inherit (and get in
/// their `arg`: case 8 uses it); stopped with its token at the end, it must exit 0.
fn ipc_suite(rounds: u64) -> bool {
    let token = exo_rt::names::new_token();
    let ns = match exo_rt::names::start(token, NS_BADGE) {
        Ok(x) => Some(x),
        Err(e) => {
            println!("init: name server: endpoint or spawn of /names: {e}: FAIL");
            None
        }
    };
    // Every case inherits the handle: each is told (case 3 counts it, case 8 uses it).
    let (runs, _, wrong) = run_cases_with("ipcdemo", ipc_cases::CASES, rounds, |c| match ns {
        Some((h, _)) => ipc_cases::with_ns(c.arg, h),
        None => c.arg,
    });
    let ns_ok = ns.is_some_and(|(h, pid)| {
        let stopped = exo_rt::names::stop(h, token);
        if stopped.is_err() {
            // It will not stop on its own (a client may have locked STOP with wrong tokens):
            // killed at once, not at the watchdog's limit.
            let _ = exo_rt::kill(pid, exo_rt::SIGKILL);
        }
        let status = watch(pid, "/names", 0, limit(CASE_LIMIT_S));
        let _ = exo_rt::handle_close(h);
        match (stopped, status) {
            (Ok(()), Ok(ExitStatus::Exited(0))) => {
                println!("init: /names (pid {pid}) stopped: exit 0: ok");
                true
            }
            (stopped, status) => {
                println!("init: /names (pid {pid}) stop: {stopped:?}, end: {status:?}: FAIL");
                false
            }
        }
    });
    println!("init: ipc suite: {rounds} round(s), {runs} process(es), {wrong} unexpected");
    wrong == 0 && ns_ok
}

/// The badge of init's handle to the name server.
const NS_BADGE: u64 = 0x4e53_0001;
