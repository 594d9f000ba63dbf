//! `/ubench`: the user-mode benchmarks of issue 12, pinned to the CPU it starts on, printed
//! as suite `user` (`SUITE,user,...`, one `BENCH` line per row, `END,user,<rows>`):
//!
//! | row | one sample is |
//! |-----|---------------|
//! | `syscall.null` | system call 1000 (unknown) returning `-ENOSYS`, round trip |
//! | `syscall.getpid` | `getpid()`, round trip |
//! | `syscall.write.64` | `write(1, <64 bytes>, 64)`: prints a 64-byte line each time |
//! | `mmap.4k` | `mmap` of one anonymous read-write page |
//! | `pf.anon.4k` | the first write to that page |
//! | `mmap.4k.lazy` | `mmap` of one demand-zero read-write page (`MAP_LAZY`: no frame yet) |
//! | `pf.anon.4k.lazy` | the first write to that page: its demand-zero fault (a zeroed frame mapped, the write retried) |
//! | `proc.spawn` | `spawn("/empty")` + `wait` |
//! | `uthread.spawn` | `thread_create` + `thread_join` of a thread that returns at once |
//! | `ctx.switch.as` | `sched_yield` round trip between this process and a copy of it on the same CPU, / 2 |
//! | `ipc.rtt.64` | `ipc_call` with 64 bytes to a copy of this program on the same CPU answering with `ipc_reply_recv` (64 bytes): the round trip (fastpath) |
//! | `ipc.slowpath.rtt.64` | the same with `IPC_INFO_SLOW` on both sides (queues and the scheduler) |
//! | `ipc.rtt.64.thread` | the same round trip (fastpath) with a thread of this process as the server |
//! | `ipc.rtt.64.xcore.thread` | the same with the server thread pinned to the next CPU: every call and reply crosses CPUs (the slow path, a wake by mailbox or IPI each way) |
//! | `ipc.rtt.64.xcore.proc` | the same with a server process on the next CPU |
//! | `ipc.rtt.64.xcore.fusion.proc` | the same pair of processes through a fusion channel (`exo_rt::fusion`: rings in a shared region, each side polls 50 µs before it parks on a shared futex): no system call while both poll |
//! | `ipc.rtt.64.xcore.fusion.thread` | the same with a server thread of this process (its own mapping of the channel's region) |
//! | `ipc.rtt.1k.zc` | `ipc_call` carrying a descriptor of 1 KiB in the endpoint's shared region (64 KiB, mapped by both once); the server reads the first and last word of the 1 KiB and answers with a descriptor of it: the round trip (no copy, no remap) |
//! | `ipc.batch.16x64` | 16 messages of 64 bytes written into the shared region and sent by one `ipc_call` (one descriptor); the server reads all 16 (their 128 words summed) and answers with the count and the sum, which the client checks: the whole batch |
//!
//! With `arg = 0x50 << 56 | n` it is the profile role of `scripts/iprof.sh`: the
//! `ipc.rtt.64` set-up (server process, endpoint), one timed round trip (the probe), `n`
//! checked round trips, the end (a `QUIT` with a timeout); nothing printed, exit 0 if every
//! echo matched. Runs with `n = 0` and `n = 1000` differ by exactly 1000 round trips. A
//! server that does not answer fails it (exit 1) within 60 s; `arg` bit 32 starts the server
//! on a CPU that does not exist (it exits at once) and bounds the probe by 1 s, to check that.
//!
//! With `arg = 0x53 << 56 | n` it is the profile role of `proc.spawn`: pinned to the CPU it
//! starts on, `n` times `spawn("/empty")` + `wait` (as the row, untimed); nothing printed,
//! exit 0 if every `/empty` exited 0. Runs with `n = 0` and `n = 20` differ by exactly 20
//! spawns (`just iprof-spawn`).
//!
//! With `arg = 0x59 << 56 | cpu << 32 | count` (cpu < 2^24, count < 2^32), it is instead that copy: it pins itself
//! to `cpu`, yields `count` times and exits 0. With `arg = 0x1c << 56 | cpu << 32 | handle`
//! it is the IPC server: pinned to `cpu`, it answers calls on `handle` (inherited) until
//! label `QUIT`, each reply on the slow path when the call's label asks for it.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::black_box;

use exo_rt::abi::ipc::{INFO_SLOW, RIGHT_RECV, RIGHT_SEND};
use exo_rt::abi::{PROT_READ, PROT_WRITE, nr};
use exo_rt::bench::{Samples, Suite};
use exo_rt::thread::Start;
use exo_rt::time::rdtsc_precise;
use exo_rt::{Errno, ExitStatus, IpcMsg, eprintln, println};

exo_rt::entry!(run);

/// Role tag in the top byte of `arg`: the yield partner of `ctx.switch.as`.
const PARTNER: u64 = 0x59;
/// Samples per row (and the capacity of each buffer: 4 KiB of stack).
const N: usize = 512;
/// Syscall rows: warm-up calls.
const WARMUP: usize = 64;
/// `syscall.write.64` lines (warm-up included): the console shows every one.
const WRITE_SAMPLES: usize = 256;
/// `proc.spawn` and `uthread.spawn` samples (each is a whole process or thread).
const SPAWN_SAMPLES: usize = 128;
/// `ctx.switch.as` warm-up round trips (the partner starts during them).
const YIELD_WARMUP: usize = 256;
/// The line `syscall.write.64` writes: 64 bytes with its newline.
const LINE64: &[u8; 64] = b"ubench: syscall.write.64 sample line, exactly 64 bytes long....\n";
/// Role tag in the top byte of `arg`: the IPC server.
const IPC_SERVER: u64 = 0x1c;
/// Role tag in the top byte of `arg`: the fusion-channel server (`cpu << 32 | handle`).
const FUSION_SERVER: u64 = 0x1f;
/// Role tag in the top byte of `arg`: `n` round trips of `ipc.rtt.64` (profiling).
const PROFILE: u64 = 0x50;
/// Role tag in the top byte of `arg`: `n` spawns of `proc.spawn` (profiling).
const PROFILE_SPAWN: u64 = 0x53;
/// IPC labels: a fastpath call, a slow-path call, the end.
const FAST: u32 = 1;
const SLOW: u32 = 2;
const QUIT: u32 = 3;
const ZC: u32 = 4;
const BATCH: u32 = 5;
/// The shared region of the zero-copy rows.
const REGION: u64 = 64 * 1024;
const KIB: u64 = 1024;
/// Messages of one batch and their size in words.
const BATCH_N: usize = 16;
const SLOT_WORDS: usize = 8;

fn run(arg: u64) -> i32 {
    if arg >> 56 == PARTNER {
        return partner((arg >> 32) as usize & 0xff_ffff, arg as u32);
    }
    if arg >> 56 == IPC_SERVER {
        let cpu = (arg >> 32) as usize & 0xff_ffff;
        if let Err(e) = exo_rt::pin_to_cpu(cpu) {
            eprintln!("ubench: ipc server cannot pin to cpu {cpu}: {e}");
            return 2;
        }
        return ipc_server(arg & 0xffff_ffff);
    }
    if arg >> 56 == PROFILE {
        return profile(arg);
    }
    if arg >> 56 == PROFILE_SPAWN {
        return profile_spawn(arg & 0xffff_ffff);
    }
    if arg >> 56 == FUSION_SERVER {
        return fusion_server((arg >> 32) as usize & 0xff_ffff, arg as u32);
    }
    let cpu = exo_rt::getcpu().unwrap_or(0);
    let ncpus = count_cpus();
    if let Err(e) = exo_rt::pin_to_cpu(cpu) {
        eprintln!("ubench: cannot pin to cpu {cpu}: {e}");
        return 1;
    }
    println!(
        "ubench: pid {} pinned to cpu {cpu} of {ncpus}",
        exo_rt::getpid()
    );
    let mut suite = Suite::start("user", ncpus as u32, env!("EXO_GIT_REV"));
    println!(
        "ubench: mode {}, timing pair {} ticks (subtracted)",
        suite.mode(),
        suite.overhead()
    );
    let mut s = Samples::<N>::new();
    let mut s2 = Samples::<N>::new();
    let mut failed = false;

    // SAFETY: an unknown number only returns -ENOSYS.
    let null = || unsafe { exo_rt::raw::syscall0(1000) };
    if Errno::from_ret(null()) != Err(Errno::ENOSYS) {
        eprintln!("ubench: syscall 1000 did not return -ENOSYS");
        failed = true;
    }
    suite.run("syscall.null", &mut s, WARMUP, N, 1, null);
    let getpid = suite.run("syscall.getpid", &mut s, WARMUP, N, 1, exo_rt::getpid);

    println!(
        "ubench: syscall.write.64 prints {WRITE_SAMPLES} lines of 64 bytes to fd 1 (what it measures)"
    );
    let mut write_err = None;
    let stats = suite.measure(&mut s, 16, WRITE_SAMPLES - 16, 1, || {
        if let Err(e) = exo_rt::write(1, LINE64) {
            write_err.get_or_insert(e);
        }
    });
    match write_err {
        None => suite.emit("syscall.write.64", stats),
        Some(e) => {
            eprintln!("ubench: syscall.write.64: {e}");
            failed = true;
        }
    }

    failed |= mmap_rows(&mut suite, &mut s, &mut s2).is_err();
    failed |= proc_spawn(&mut suite, &mut s).is_err();
    failed |= uthread_spawn(&mut suite, &mut s).is_err();
    match ctx_switch_as(&mut suite, &mut s, cpu) {
        Ok(p50) => {
            if let Some(g) = getpid
                && p50 < g.p50
            {
                println!(
                    "ubench: ctx.switch.as p50 {p50} < syscall.getpid p50 {}: did the partner run on this CPU?",
                    g.p50
                );
            }
        }
        Err(_) => failed = true,
    }
    failed |= ipc_rows(&mut suite, &mut s, cpu, ncpus).is_err();
    if ncpus > 1 {
        failed |= fusion_rows(&mut suite, &mut s, (cpu + 1) % ncpus).is_err();
    }
    suite.end();
    i32::from(failed)
}

/// The IPC server loop (process or thread): echoes each message's words back (64 bytes)
/// until `QUIT`; 0 when it ended that way.
fn ipc_server(h: u64) -> i32 {
    let h = h as u32;
    let mut m = match exo_rt::ipc_recv(h, 0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ubench: ipc server: recv: {e}");
            return 3;
        }
    };
    // The shared region, mapped at the first zero-copy message.
    let mut region: *const u64 = core::ptr::null();
    loop {
        if m.label == QUIT {
            return match exo_rt::ipc_reply(&m) {
                Ok(()) => 0,
                Err(_) => 4,
            };
        }
        let extra = if m.label == SLOW { INFO_SLOW } else { 0 };
        let reply = if m.zc && (m.label == ZC || m.label == BATCH) {
            if region.is_null() {
                match exo_rt::shm_map(h, 0) {
                    Ok(p) => region = p.cast::<u64>(),
                    Err(e) => {
                        eprintln!("ubench: ipc server: shm_map: {e}");
                        return 6;
                    }
                }
            }
            let (off, len) = (m.words[0] as usize / 8, m.words[1] as usize / 8);
            // SAFETY: the kernel checked the descriptor against the region (64 KiB, mapped
            // at `region`); the client waits for the reply before it writes again.
            let w = unsafe { core::slice::from_raw_parts(region.add(off), len) };
            if m.label == ZC {
                let ends = w.first().copied().unwrap_or(0) ^ w.last().copied().unwrap_or(0);
                IpcMsg::zc(ZC, m.words[0], m.words[1], [ends, 0, 0, 0, 0, 0])
            } else {
                let sum = w.iter().fold(0u64, |a, &x| a.wrapping_add(x));
                IpcMsg::new(
                    BATCH,
                    [(w.len() / SLOT_WORDS) as u64, sum, 0, 0, 0, 0, 0, 0],
                )
            }
        } else {
            IpcMsg::new(m.label, m.words)
        };
        m = match exo_rt::ipc_op(nr::IPC_REPLY_RECV, h, &reply, extra, 0) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ubench: ipc server: reply_recv: {e}");
                return 5;
            }
        };
    }
}

/// The bound of [`probe`] and of a `QUIT`: far above an answer's time (a server process
/// starting under an emulator included), so only a server that is gone or stuck reaches it.
const PROBE_TIMEOUT_NS: u64 = 60_000_000_000;

/// One timed, checked round trip through `h` before a row whose calls carry no timeout (a
/// timeout would change what the row measures): a server that is gone or stuck fails the
/// row here instead of making its first untimed call wait for good (ubench holds the
/// receive right too, so its endpoint never goes deaf; until 2026-12-05 such a server hung
/// ubench, then init, until CI's timeout; found by review). A server that dies in the
/// middle of a row still hangs it.
fn probe(h: u32) -> Result<(), Errno> {
    probe_within(h, PROBE_TIMEOUT_NS)
}

/// [`probe`] with a bound of `timeout_ns`.
fn probe_within(h: u32, timeout_ns: u64) -> Result<(), Errno> {
    let q = IpcMsg::new(FAST, [7, 1, 2, 3, 4, 5, 6, !7]);
    match exo_rt::ipc_op(nr::IPC_CALL, h, &q, 0, timeout_ns) {
        Ok(r) if same_words(&r.words, &q.words) => Ok(()),
        Ok(_) => Err(Errno::EIO),
        Err(e) => Err(e),
    }
}

/// One round trip with 64 bytes, checked (a wrong echo counts as an error). The check
/// folds the eight differences into one word (a dozen instructions; `==` on the arrays
/// called `memcmp`, a hundred instructions of the harness counted in the row).
#[inline(always)]
fn ipc_rtt(h: u32, label: u32, extra: u64, seq: u64, err: &mut Option<Errno>) {
    let q = IpcMsg::new(label, [seq, 1, 2, 3, 4, 5, 6, !seq]);
    match exo_rt::ipc_op(nr::IPC_CALL, h, &q, extra, 0) {
        Ok(r) if same_words(&r.words, &q.words) => {}
        Ok(_) => {
            err.get_or_insert(Errno::EIO);
        }
        Err(e) => {
            err.get_or_insert(e);
        }
    }
}

/// `arg` bit of the profile role: the server is started on a CPU that does not exist, so
/// it exits (2) without serving, and the probe waits [`DEAD_SERVER_PROBE_NS`]: the role
/// must fail then (CI's check that it has a deadline).
const PROFILE_DEAD_SERVER: u64 = 1 << 32;
/// The probe's bound with [`PROFILE_DEAD_SERVER`] (1 s: the check stays short).
const DEAD_SERVER_PROBE_NS: u64 = 1_000_000_000;

/// The profile role (`arg = PROFILE << 56 | n`, [`PROFILE_DEAD_SERVER`] for its check): `n`
/// round trips of `ipc.rtt.64` with the server process of [`ipc_rows`], set up and ended
/// the same way whatever `n`. As the rows do, a [`probe`] comes first and the `QUIT` has
/// [`PROBE_TIMEOUT_NS`]: a server that never serves fails the role (exit 1) instead of
/// hanging it, and `scripts/iprof.sh` with it (until 2026-12-06 its calls had no timeout;
/// found by review); a server still running then is killed.
fn profile(arg: u64) -> i32 {
    let n = arg & 0xffff_ffff;
    let cpu = exo_rt::getcpu().unwrap_or(0);
    let (server_cpu, probe_ns) = if arg & PROFILE_DEAD_SERVER != 0 {
        (0xff_ffff, DEAD_SERVER_PROBE_NS)
    } else {
        (cpu as u64 & 0xff_ffff, PROBE_TIMEOUT_NS)
    };
    let mut end = None;
    let mut run = || -> Result<(), Errno> {
        exo_rt::pin_to_cpu(cpu)?;
        let h = exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 7)?;
        let pid = exo_rt::spawn(
            "/ubench",
            IPC_SERVER << 56 | server_cpu << 32 | u64::from(h),
        )?;
        let calls = probe_within(h, probe_ns).and_then(|()| {
            let mut err = None;
            for seq in 1..=n {
                ipc_rtt(h, FAST, 0, seq, &mut err);
            }
            let quit = exo_rt::ipc_call(h, &IpcMsg::new(QUIT, [0; 8]), PROBE_TIMEOUT_NS);
            err.map_or(quit.map(|_| ()), Err)
        });
        if calls.is_err() {
            let _ = exo_rt::kill(pid, exo_rt::SIGKILL);
        }
        let status = exo_rt::wait(pid);
        end = Some(status);
        match (calls, status) {
            (Ok(()), Ok(ExitStatus::Exited(0))) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(e),
            _ => Err(Errno::EIO),
        }
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ubench: profile role: {e} (server: {end:?})");
            1
        }
    }
}

/// The profile role of `proc.spawn` (`arg = PROFILE_SPAWN << 56 | n`): `n` spawns and waits
/// of `/empty`, on the CPU this process starts on as the row's; exit 1 at the first failure.
fn profile_spawn(n: u64) -> i32 {
    let cpu = exo_rt::getcpu().unwrap_or(0);
    let run = || -> Result<(), Errno> {
        exo_rt::pin_to_cpu(cpu)?;
        for _ in 0..n {
            match exo_rt::spawn("/empty", 0).and_then(exo_rt::wait)? {
                ExitStatus::Exited(0) => {}
                other => {
                    eprintln!("ubench: spawn profile role: /empty ended with {other}");
                    return Err(Errno::EIO);
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ubench: spawn profile role: {e}");
            1
        }
    }
}

/// Whether `a == b`, without a call.
#[inline(always)]
fn same_words(a: &[u64; 8], b: &[u64; 8]) -> bool {
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// A server thread of this process: `arg` = cpu << 32 | handle (it pins itself there).
fn ipc_thread_server(arg: u64) -> i32 {
    let cpu = (arg >> 32) as usize;
    if let Err(e) = exo_rt::pin_to_cpu(cpu) {
        eprintln!("ubench: ipc server thread cannot pin to cpu {cpu}: {e}");
        return 2;
    }
    ipc_server(arg & 0xffff_ffff)
}

/// A server process (a copy of this program) answering on `h`, pinned to `cpu`.
fn spawn_ipc_server(h: u32, cpu: usize) -> Result<usize, Errno> {
    exo_rt::spawn(
        "/ubench",
        IPC_SERVER << 56 | (cpu as u64 & 0xff_ffff) << 32 | u64::from(h),
    )
    .inspect_err(|e| eprintln!("ubench: spawn of the ipc server: {e}"))
}

/// Ends a server (process `pid`, or a thread): the `QUIT` call, then its end, which must
/// be exit 0.
fn quit_ipc_server(h: u32, end: impl FnOnce() -> bool, err: &mut Option<Errno>) {
    let quit = exo_rt::ipc_call(h, &IpcMsg::new(QUIT, [0; 8]), PROBE_TIMEOUT_NS);
    if quit.is_err() || !end() {
        eprintln!("ubench: an ipc server did not end cleanly (quit: {quit:?})");
        err.get_or_insert(Errno::EIO);
    }
}

/// `ipc.rtt.64`, `ipc.slowpath.rtt.64` (a server process on this CPU), `ipc.rtt.64.thread`
/// (a server thread of this process, on this CPU too), and with more than one CPU the same
/// two across CPUs: `ipc.rtt.64.xcore.proc` and `ipc.rtt.64.xcore.thread` (the server on
/// the next CPU: every call and reply crosses, a wake by mailbox or IPI each way).
fn ipc_rows<const M: usize>(
    suite: &mut Suite,
    s: &mut Samples<M>,
    cpu: usize,
    ncpus: usize,
) -> Result<(), Errno> {
    let h = exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 7)
        .inspect_err(|e| eprintln!("ubench: endpoint_create: {e}"))?;
    let pid = spawn_ipc_server(h, cpu)?;
    let mut err = None;
    let mut seq = 0u64;
    let mut row = |suite: &mut Suite,
                   s: &mut Samples<M>,
                   name: &str,
                   label: u32,
                   extra: u64,
                   err: &mut Option<Errno>| {
        // After an error the server may be gone: no more untimed calls.
        if err.is_some() {
            return;
        }
        if let Err(e) = probe(h) {
            eprintln!("ubench: {name}: the server did not answer a timed call: {e}");
            err.get_or_insert(e);
            return;
        }
        let st = suite.measure(s, WARMUP, N, 1, || {
            seq += 1;
            ipc_rtt(h, label, extra, seq, err);
        });
        if err.is_none() {
            suite.emit(name, st);
        }
    };
    row(suite, s, "ipc.rtt.64", FAST, 0, &mut err);
    row(suite, s, "ipc.slowpath.rtt.64", SLOW, INFO_SLOW, &mut err);
    if err.is_none()
        && let Err(e) = probe(h).and_then(|()| zc_rows(suite, s, h))
    {
        err.get_or_insert(e);
    }
    let exited = |pid| move || exo_rt::wait(pid) == Ok(ExitStatus::Exited(0));
    quit_ipc_server(h, exited(pid), &mut err);
    // The server CPUs of the thread row and of the cross-core pair.
    let other = (ncpus > 1).then(|| (cpu + 1) % ncpus);
    for (server_cpu, thread_row, proc_row) in [
        (Some(cpu), "ipc.rtt.64.thread", None),
        (
            other,
            "ipc.rtt.64.xcore.thread",
            Some("ipc.rtt.64.xcore.proc"),
        ),
    ] {
        let Some(server_cpu) = server_cpu else {
            continue;
        };
        let arg = (server_cpu as u64) << 32 | u64::from(h);
        match exo_rt::thread::spawn(ipc_thread_server, arg) {
            Ok(t) => {
                row(suite, s, thread_row, FAST, 0, &mut err);
                quit_ipc_server(h, || t.join() == Ok(0), &mut err);
            }
            Err(e) => {
                eprintln!("ubench: ipc server thread: {e}");
                err.get_or_insert(e);
            }
        }
        if let Some(name) = proc_row {
            match spawn_ipc_server(h, server_cpu) {
                Ok(pid) => {
                    row(suite, s, name, FAST, 0, &mut err);
                    quit_ipc_server(h, exited(pid), &mut err);
                }
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        }
    }
    let _ = exo_rt::handle_close(h);
    match err {
        None => Ok(()),
        Some(e) => {
            eprintln!("ubench: ipc rows: {e}");
            Err(e)
        }
    }
}

/// A fusion row's server: a copy of this program, or a thread of this process.
enum FusionServer {
    Proc(usize),
    Thread(exo_rt::thread::Thread),
}

impl FusionServer {
    /// Waits for its end: whether it served until `QUIT` (exit 0); says how otherwise.
    fn end(self) -> bool {
        match self {
            FusionServer::Proc(pid) => {
                let r = exo_rt::wait(pid);
                let ok = r == Ok(ExitStatus::Exited(0));
                if !ok {
                    eprintln!("ubench: fusion server process: {r:?}");
                }
                ok
            }
            FusionServer::Thread(t) => {
                let r = t.join();
                let ok = r == Ok(0);
                if !ok {
                    eprintln!("ubench: fusion server thread: {r:?}");
                }
                ok
            }
        }
    }
}

/// `ipc.rtt.64.xcore.fusion.proc` and `.thread`: 64-byte round trips, checked, through a
/// fusion channel to a server pinned to `server_cpu`: a process, then a thread of this one
/// (its own mapping of the region, as a process would have).
fn fusion_rows<const M: usize>(
    suite: &mut Suite,
    s: &mut Samples<M>,
    server_cpu: usize,
) -> Result<(), Errno> {
    let proc = fusion_row(suite, s, "ipc.rtt.64.xcore.fusion.proc", |h| {
        let arg = FUSION_SERVER << 56 | (server_cpu as u64 & 0xff_ffff) << 32 | u64::from(h);
        exo_rt::spawn("/ubench", arg)
            .map(FusionServer::Proc)
            .inspect_err(|e| eprintln!("ubench: spawn of the fusion server: {e}"))
    });
    let thread = fusion_row(suite, s, "ipc.rtt.64.xcore.fusion.thread", |h| {
        let arg = (server_cpu as u64 & 0xff_ffff) << 32 | u64::from(h);
        exo_rt::thread::spawn(fusion_thread_server, arg)
            .map(FusionServer::Thread)
            .inspect_err(|e| eprintln!("ubench: fusion server thread: {e}"))
    });
    proc.and(thread)
}

/// One fusion row `name`: a new channel, its server started by `start` (given the channel's
/// handle), `WARMUP + N` checked calls, `QUIT`, the server's end.
fn fusion_row<const M: usize>(
    suite: &mut Suite,
    s: &mut Samples<M>,
    name: &str,
    start: impl FnOnce(u32) -> Result<FusionServer, Errno>,
) -> Result<(), Errno> {
    let c = exo_rt::fusion::Channel::create()
        .inspect_err(|e| eprintln!("ubench: fusion channel: {e}"))?;
    let server = match start(c.handle()) {
        Ok(server) => server,
        Err(e) => {
            let _ = exo_rt::handle_close(c.handle());
            return Err(e);
        }
    };
    // One call first: a server that never serves (its pin or open failed) fails the row in
    // one timeout, not in one per call (577 of them: hours; found by review).
    let probe = IpcMsg::new(FAST, [7, 1, 2, 3, 4, 5, 6, !7]);
    let mut err = match c.call(&probe, FUSION_TIMEOUT) {
        Ok(r) if same_words(&r.words, &probe.words) => None,
        Ok(_) => Some(Errno::EIO),
        Err(e) => Some(e),
    };
    let mut seq = 0u64;
    let timed = err.is_none();
    let st = if timed {
        suite.measure(s, WARMUP, N, 1, || {
            seq += 1;
            let q = IpcMsg::new(FAST, [seq, 1, 2, 3, 4, 5, 6, !seq]);
            match c.call(&q, FUSION_TIMEOUT) {
                Ok(r) if same_words(&r.words, &q.words) => {}
                Ok(_) => {
                    err.get_or_insert(Errno::EIO);
                }
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        })
    } else {
        None
    };
    let wakes = c.wakes();
    let quit = c.call(&IpcMsg::new(QUIT, [0; 8]), FUSION_TIMEOUT);
    let end = server.end();
    let _ = exo_rt::handle_close(c.handle());
    match (err, quit, end) {
        (None, Ok(_), true) => {
            suite.emit(name, st);
            println!("ubench: {name}: {wakes} wake-ups in {} calls", WARMUP + N);
            Ok(())
        }
        (err, quit, end) => {
            eprintln!("ubench: {name}: calls {err:?}, quit {quit:?}, server ended well: {end}");
            Err(err.unwrap_or(Errno::EIO))
        }
    }
}

/// The fusion row's bound on every call (a lost server fails the row instead of hanging).
const FUSION_TIMEOUT: u64 = 30_000_000_000;

/// The fusion-channel server thread (`arg = cpu << 32 | handle`): as [`fusion_server`].
fn fusion_thread_server(arg: u64) -> i32 {
    fusion_server((arg >> 32) as usize, arg as u32)
}

/// The fusion-channel server (a process, or a thread: [`fusion_thread_server`]): pinned to
/// `cpu`, opens the channel `h`, echoes until `QUIT` (answered, then 0).
fn fusion_server(cpu: usize, h: u32) -> i32 {
    if let Err(e) = exo_rt::pin_to_cpu(cpu) {
        eprintln!("ubench: fusion server cannot pin to cpu {cpu}: {e}");
        return 2;
    }
    let c = match exo_rt::fusion::Channel::open_as(h, exo_rt::fusion::Side::Server) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ubench: fusion server: open: {e}");
            return 3;
        }
    };
    match c.serve(FUSION_TIMEOUT, |m| (m.label != QUIT).then_some(*m)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ubench: fusion server: {e}");
            4
        }
    }
}

/// `ipc.rtt.1k.zc` and `ipc.batch.16x64` through the endpoint's shared region (created
/// here; the server maps it at its first zero-copy message).
fn zc_rows<const M: usize>(suite: &mut Suite, s: &mut Samples<M>, h: u32) -> Result<(), Errno> {
    let base = exo_rt::shm_map(h, REGION)
        .inspect_err(|e| eprintln!("ubench: shm_map: {e}"))?
        .cast::<u64>();
    let words = (REGION / 8) as usize;
    // SAFETY: the region is 64 KiB mapped at `base`, ours and the server's only; the server
    // reads it only while we wait in a call.
    let region = unsafe { core::slice::from_raw_parts_mut(base, words) };
    for (k, w) in region.iter_mut().enumerate() {
        *w = k as u64;
    }
    let mut err = None;
    let mut i = 0u64;
    let st = suite.measure(s, WARMUP, N, 1, || {
        // 1 KiB at a moving offset; first and last word known from the fill above.
        let off = (i % (REGION / KIB)) * KIB;
        i += 1;
        let q = IpcMsg::zc(ZC, off, KIB, [0; 6]);
        match exo_rt::ipc_call(h, &q, 0) {
            Ok(r) if r.zc && r.words[0] == off && r.words[2] == (off / 8) ^ (off / 8 + 127) => {}
            Ok(_) => {
                err.get_or_insert(Errno::EIO);
            }
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    });
    if err.is_none() {
        suite.emit("ipc.rtt.1k.zc", st);
    }
    let mut seq = 0u64;
    let batch_bytes = (BATCH_N * SLOT_WORDS * 8) as u64;
    let st = suite.measure(s, WARMUP, N, 1, || {
        let off = (seq * batch_bytes) % REGION;
        let slots = &mut region[off as usize / 8..][..BATCH_N * SLOT_WORDS];
        let mut sum = 0u64;
        for msg in slots.chunks_exact_mut(SLOT_WORDS) {
            for (k, w) in msg.iter_mut().enumerate() {
                *w = seq + k as u64;
                sum = sum.wrapping_add(*w);
            }
            seq += 1;
        }
        let q = IpcMsg::zc(BATCH, off, batch_bytes, [0; 6]);
        match exo_rt::ipc_call(h, &q, 0) {
            Ok(r) if r.words[0] == BATCH_N as u64 && r.words[1] == sum => {}
            Ok(_) => {
                err.get_or_insert(Errno::EIO);
            }
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    });
    match err {
        None => {
            suite.emit("ipc.batch.16x64", st);
            Ok(())
        }
        Some(e) => {
            eprintln!("ubench: zero-copy rows: {e}");
            Err(e)
        }
    }
}

/// The yield partner of `ctx.switch.as`.
fn partner(cpu: usize, count: u32) -> i32 {
    if let Err(e) = exo_rt::pin_to_cpu(cpu) {
        eprintln!("ubench: partner cannot pin to cpu {cpu}: {e}");
        return 2;
    }
    for _ in 0..count {
        exo_rt::sched_yield();
    }
    0
}

/// CPUs `0..n` that accept a thread (moves this thread to each in turn).
fn count_cpus() -> usize {
    (0..exo_rt::CPU_SET_BYTES * 8)
        .take_while(|&c| exo_rt::pin_to_cpu(c).is_ok())
        .count()
}

/// `mmap.4k` and `pf.anon.4k`: map a page (timed), write to it (timed), unmap it; then
/// `mmap.4k.lazy` and `pf.anon.4k.lazy`, the same with a demand-zero page (`MAP_LAZY`):
/// the write is the page's demand-zero fault, as Linux's `pf.anon.4k` is.
fn mmap_rows<const M: usize>(
    suite: &mut Suite,
    map: &mut Samples<M>,
    touch: &mut Samples<M>,
) -> Result<(), Errno> {
    mmap_pass::<false, M>(suite, map, touch, "mmap.4k", "pf.anon.4k")?;
    mmap_pass::<true, M>(suite, map, touch, "mmap.4k.lazy", "pf.anon.4k.lazy")
}

/// One pair of [`mmap_rows`]' rows (`LAZY`: with `MAP_LAZY`). The loop keeps `t0` in two
/// registers it now spills between `t1` and `t2`: `pf.anon.4k` (the same plain write) reads
/// 9 under icount, 7 before this function (2026-12-06).
fn mmap_pass<const LAZY: bool, const M: usize>(
    suite: &mut Suite,
    map: &mut Samples<M>,
    touch: &mut Samples<M>,
    map_row: &str,
    touch_row: &str,
) -> Result<(), Errno> {
    map.clear();
    touch.clear();
    let ovh = suite.overhead();
    for i in 0..WARMUP + N {
        let t0 = rdtsc_precise();
        let page = if LAZY {
            exo_rt::map_anonymous_lazy(4096, PROT_READ | PROT_WRITE)
        } else {
            exo_rt::map_anonymous(4096, PROT_READ | PROT_WRITE)
        };
        let t1 = rdtsc_precise();
        let page = page.inspect_err(|e| eprintln!("ubench: mmap 4 KiB: {e}"))?;
        // SAFETY: a fresh writable page of ours.
        unsafe { page.as_ptr().write_volatile(1) };
        let t2 = rdtsc_precise();
        // SAFETY: the page is ours and no longer used.
        unsafe { exo_rt::munmap(page.as_ptr() as usize, 4096) }
            .inspect_err(|e| eprintln!("ubench: munmap: {e}"))?;
        if i >= WARMUP {
            map.push((t1 - t0).saturating_sub(ovh));
            touch.push((t2 - t1).saturating_sub(ovh));
        }
    }
    suite.emit(map_row, map.stats(0));
    suite.emit(touch_row, touch.stats(0));
    Ok(())
}

/// `proc.spawn`: spawn `/empty` and wait for it. No row unless every one exited 0.
fn proc_spawn<const M: usize>(suite: &mut Suite, s: &mut Samples<M>) -> Result<(), Errno> {
    let mut err = None;
    let stats = suite.measure(s, 4, SPAWN_SAMPLES, 1, || {
        match exo_rt::spawn("/empty", 0).and_then(exo_rt::wait) {
            Ok(ExitStatus::Exited(0)) => {}
            Ok(other) => {
                err.get_or_insert((Errno::EIO, Some(other)));
            }
            Err(e) => {
                err.get_or_insert((e, None));
            }
        }
    });
    match err {
        None => {
            suite.emit("proc.spawn", stats);
            Ok(())
        }
        Some((e, status)) => {
            match status {
                Some(st) => eprintln!("ubench: proc.spawn: /empty ended with {st}"),
                None => eprintln!("ubench: proc.spawn: {e}"),
            }
            Err(e)
        }
    }
}

fn nothing(_: u64) -> i32 {
    0
}

/// `uthread.spawn`: `thread_create` + `thread_join`, the thread on one stack mapped once.
fn uthread_spawn<const M: usize>(suite: &mut Suite, s: &mut Samples<M>) -> Result<(), Errno> {
    const STACK: usize = 16 * 4096;
    let base = exo_rt::map_anonymous(STACK, PROT_READ | PROT_WRITE)
        .inspect_err(|e| eprintln!("ubench: uthread.spawn stack: {e}"))?
        .as_ptr() as usize;
    let start = Start { f: nothing, arg: 0 };
    let top = base + STACK;
    let mut err = None;
    let stats = suite.measure(s, 4, SPAWN_SAMPLES, 1, || {
        // SAFETY: the entry reads `start` (alive until the join) and ends with
        // thread_exit; the stack is used by this thread only, the previous one has been
        // joined.
        let made = unsafe {
            exo_rt::thread_create(exo_rt::thread::entry(), top, &start as *const Start as u64)
        };
        match made.and_then(exo_rt::thread_join) {
            Ok(_) => {}
            Err(e) => {
                err.get_or_insert(e);
            }
        }
        black_box(&start);
    });
    // SAFETY: every thread has been joined: the stack is unused.
    let _ = unsafe { exo_rt::munmap(base, STACK) };
    match err {
        Some(e) => {
            eprintln!("ubench: uthread.spawn: {e}");
            Err(e)
        }
        None => {
            suite.emit("uthread.spawn", stats);
            Ok(())
        }
    }
}

/// `ctx.switch.as`: a copy of this program pinned to `cpu` yields while we do; one sample
/// is our `sched_yield` round trip (two switches between address spaces) / 2. Returns p50.
fn ctx_switch_as<const M: usize>(
    suite: &mut Suite,
    s: &mut Samples<M>,
    cpu: usize,
) -> Result<u64, Errno> {
    let rounds = YIELD_WARMUP + M;
    // The partner outlasts us: its extra yields run alone while we wait for it.
    let count = (rounds + 64) as u64;
    let arg = PARTNER << 56 | (cpu as u64 & 0xff_ffff) << 32 | count;
    let pid = exo_rt::spawn("/ubench", arg)
        .inspect_err(|e| eprintln!("ubench: spawn of the yield partner: {e}"))?;
    println!("ubench: ctx.switch.as: partner pid {pid} pinned to cpu {cpu}");
    s.clear();
    let ovh = suite.overhead();
    for i in 0..rounds {
        let t0 = rdtsc_precise();
        exo_rt::sched_yield();
        let t1 = rdtsc_precise();
        if i >= YIELD_WARMUP {
            s.push(exo_rt::bench::per_call((t1 - t0).saturating_sub(ovh), 2));
        }
    }
    let stats = s.stats(0);
    match exo_rt::wait(pid) {
        Ok(ExitStatus::Exited(0)) => {
            suite.emit("ctx.switch.as", stats);
            Ok(stats.map_or(0, |st| st.p50))
        }
        Ok(other) => {
            eprintln!("ubench: the yield partner ended with {other}");
            Err(Errno::EIO)
        }
        Err(e) => {
            eprintln!("ubench: wait for the yield partner: {e}");
            Err(e)
        }
    }
}
