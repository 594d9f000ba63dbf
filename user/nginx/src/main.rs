//! `/nginx [requests]`: the seed's "fake nginx" (row 18, issue 13 item 8): a load generator
//! and N worker processes serving request/response over IPC, swept over N = 1..ncpus.
//!
//! For each N the generator (this process) creates an endpoint and spawns N copies of this
//! program as workers, worker `k` pinned to CPU `k`; they inherit the endpoint's handle.
//! It then runs N client threads, client `k` pinned to CPU `k`, that share a fixed number
//! of requests (`requests`, default [`DEFAULT_REQUESTS`]; never a duration) and issue them
//! in a closed loop: `ipc_call` with a 64-byte request, wait for the response, next. A
//! request carries its id (point, client, sequence), a "path" of up to 40 bytes and a
//! checksum; the worker checks it, hashes the path ([`ROUNDS`] rounds of FNV-1a: a bounded
//! amount of work), and answers with the id, a status, the hash, a body length and a
//! checksum. The client checks every response (id echoed, status, hash, checksum): a wrong,
//! lost (10 s timeout) or failed response fails the run (exit 1).
//!
//! Each request is timed with `rdtsc` (`exo_rt::bench`, the timing-pair overhead
//! subtracted); the whole point from the start signal to the last client's last response
//! gives the requests per second (TSC frequency from CPUID, else the TSC against
//! `CLOCK_MONOTONIC` over the run). Printed as suite `nginx`:
//!
//! | row | value |
//! |-----|-------|
//! | `nginx.rps.<n>` | requests per second with n workers and n clients (one sample: n = 1, every statistic the same; not ticks) |
//! | `nginx.lat.<n>` | one sample per request: ticks from call to response (p50, p99, ...) |
//!
//! then a summary line. A point that fails kills and waits for its workers; `arg` bit 48
//! injects such a failure (test). With `arg = 0x6e << 56 | cpu << 32 | ready << 16 | handle` it is
//! instead a worker: pinned to `cpu`, it announces itself with a send on `ready`, then
//! serves calls on `handle` until label [`QUIT`]; exit 0 if every request was well-formed.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use exo_rt::abi::ipc::{RIGHT_RECV, RIGHT_SEND};
use exo_rt::abi::{PROT_READ, PROT_WRITE};
use exo_rt::bench::{Stats, Suite, stats_of, tsc_hz_from_cpuid};
use exo_rt::time::rdtsc_precise;
use exo_rt::{ExitStatus, IpcMsg, eprintln, println};

exo_rt::entry!(run);

/// Role tag in the top byte of `arg`: a worker.
const WORKER: u64 = 0x6e;
/// `arg` bit (test): the first point fails once its workers are up; they must be killed
/// and waited for (no orphan left), and the program exits 1.
const INJECT_FAILURE: u64 = 1 << 48;
/// Requests per point (per N) when `arg` gives none.
const DEFAULT_REQUESTS: u64 = 4000;
/// At most this many requests per point (the latency buffer: 8 bytes each).
const MAX_REQUESTS: u64 = 1 << 20;
/// At most this many workers (and clients, and CPUs swept).
const MAX_N: usize = 64;
/// Untimed requests per client before the start signal.
const WARMUP: u64 = 8;
/// FNV-1a passes over the path per request: the worker's work.
const ROUNDS: u32 = 4;
/// A response that takes longer is lost.
const TIMEOUT_NS: u64 = 10_000_000_000;

/// Labels: a request, its response, a malformed request's answer, the end.
const GET: u32 = 0x200;
const OK: u32 = 0x201;
const BAD: u32 = 0x2bd;
const QUIT: u32 = 0x2ff;
/// The status word of a good response.
const STATUS_200: u64 = 200;

/// Requests of the current point, shared by its clients.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
/// The endpoint handle of the current point.
static HANDLE: AtomicU32 = AtomicU32::new(0);
/// Address of the latency buffer (`MAX_REQUESTS` u64s); client `k` owns its own range.
static LAT: AtomicUsize = AtomicUsize::new(0);
/// Clients that finished their warm-up.
static READY: AtomicUsize = AtomicUsize::new(0);
/// The start signal.
static GO: AtomicBool = AtomicBool::new(false);
/// The latest TSC at which a client finished.
static END_TSC: AtomicU64 = AtomicU64::new(0);
/// Failed requests (any client).
static FAILED: AtomicU64 = AtomicU64::new(0);

fn run(arg: u64) -> i32 {
    if arg >> 56 == WORKER {
        let cpu = (arg >> 32) as usize & 0xff_ffff;
        return worker(cpu, (arg >> 16) as u32 & 0xffff, arg as u32 & 0xffff);
    }
    let inject = arg & INJECT_FAILURE != 0;
    let requests = match arg & !INJECT_FAILURE {
        0 => DEFAULT_REQUESTS,
        r => r.min(MAX_REQUESTS),
    };
    match generator(requests, inject) {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("nginx: FAIL: {why}");
            1
        }
    }
}

// ---- the protocol ----

/// FNV-1a over `bytes`, `rounds` times (each pass seeded by the last).
fn fnv(bytes: &[u8], rounds: u32) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for _ in 0..rounds {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// Checksum of words 0..7 (stored in word 7).
fn checksum(w: &[u64; 8]) -> u64 {
    w[..7].iter().fold(0x8422_2325_cbf2_9ce4u64, |h, &x| {
        (h ^ x).wrapping_mul(0x100_0000_01b3).rotate_left(5)
    })
}

/// The path bytes of a request: words 1..6 (40 bytes), length in word 6.
fn path_of(w: &[u64; 8]) -> Option<[u8; 40]> {
    let len = w[6] as usize;
    if len > 40 {
        return None;
    }
    let mut p = [0u8; 40];
    for (k, word) in w[1..6].iter().enumerate() {
        p[k * 8..k * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    Some(p)
}

/// Request `id`: `GET /static/<16 hex digits>.html` (29 bytes), the digits derived from `id`.
fn request(id: u64) -> IpcMsg {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut p = [0u8; 40];
    let prefix = b"/static/";
    p[..8].copy_from_slice(prefix);
    let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for k in 0..16 {
        p[8 + k] = HEX[(x >> (60 - 4 * k)) as usize & 15];
    }
    p[24..29].copy_from_slice(b".html");
    let mut w = [0u64; 8];
    w[0] = id;
    for k in 0..5 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p[k * 8..k * 8 + 8]);
        w[1 + k] = u64::from_le_bytes(b);
    }
    w[6] = 29;
    w[7] = checksum(&w);
    IpcMsg::new(GET, w)
}

/// The worker's answer to `m`: `OK` with id, status, path hash, body length, worker CPU;
/// `BAD` (words echoed) when the request is malformed.
fn respond(m: &IpcMsg, cpu: usize) -> IpcMsg {
    let path = path_of(&m.words);
    let Some(path) =
        path.filter(|_| m.label == GET && m.len == 64 && m.words[7] == checksum(&m.words))
    else {
        return IpcMsg::new(BAD, m.words);
    };
    let hash = fnv(&path[..m.words[6] as usize], ROUNDS);
    let mut w = [0u64; 8];
    w[0] = m.words[0];
    w[1] = STATUS_200;
    w[2] = hash;
    w[3] = 512 + hash % 1024; // "Content-Length"
    w[4] = cpu as u64;
    w[5] = hash.rotate_left(17) ^ m.words[0]; // "ETag"
    w[7] = checksum(&w);
    IpcMsg::new(OK, w)
}

/// Is `r` the right response to request `id`?
fn check(id: u64, r: &IpcMsg) -> Result<(), &'static str> {
    if r.label == BAD {
        return Err("the worker saw a malformed request");
    }
    let q = request(id);
    let hash = fnv(&path_of(&q.words).unwrap_or([0; 40])[..29], ROUNDS);
    let w = &r.words;
    if r.label != OK || r.len != 64 || w[7] != checksum(w) {
        return Err("a response with a bad label, length or checksum");
    }
    if w[0] != id {
        return Err("a response to another request (id not echoed)");
    }
    if w[1] != STATUS_200
        || w[2] != hash
        || w[3] != 512 + hash % 1024
        || w[5] != hash.rotate_left(17) ^ id
    {
        return Err("a response with a wrong body");
    }
    Ok(())
}

// ---- a worker process ----

fn worker(cpu: usize, ready: u32, h: u32) -> i32 {
    if let Err(e) = exo_rt::pin_to_cpu(cpu) {
        eprintln!("nginx worker: cannot pin to cpu {cpu}: {e}");
        return 2;
    }
    if let Err(e) = exo_rt::ipc_send(ready, &IpcMsg::new(cpu as u32, [0; 8]), TIMEOUT_NS) {
        eprintln!("nginx worker {cpu}: ready: {e}");
        return 3;
    }
    let mut m = match exo_rt::ipc_recv(h, 0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("nginx worker {cpu}: recv: {e}");
            return 4;
        }
    };
    let mut bad = 0u64;
    loop {
        if m.label == QUIT {
            let _ = exo_rt::ipc_reply(&IpcMsg::new(QUIT, [0; 8]));
            return i32::from(bad != 0) * 5;
        }
        let a = respond(&m, cpu);
        bad += u64::from(a.label == BAD);
        m = match exo_rt::ipc_reply_recv(h, &a, 0) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("nginx worker {cpu}: reply_recv: {e}");
                return 6;
            }
        };
    }
}

// ---- the generator ----

/// Client `k` of `n`: its first request index and count (the remainder to the first ones).
fn share(requests: u64, n: u64, k: u64) -> (u64, u64) {
    let base = requests / n;
    let extra = requests % n;
    (k * base + k.min(extra), base + u64::from(k < extra))
}

/// A client thread: `arg = n << 32 | k`.
fn client(arg: u64) -> i32 {
    let (n, k) = (arg >> 32, arg & 0xffff_ffff);
    let h = HANDLE.load(Ordering::Relaxed);
    let fail = |why: &str| {
        if FAILED.fetch_add(1, Ordering::Relaxed) == 0 {
            eprintln!("nginx: client {k} of {n}: {why}");
        }
        READY.fetch_add(1, Ordering::Release);
        1
    };
    if exo_rt::pin_to_cpu(k as usize).is_err() {
        return fail("cannot pin");
    }
    let id_of = |i: u64| n << 48 | k << 32 | i;
    for i in 0..WARMUP {
        let id = id_of(0xffff_0000 | i);
        match exo_rt::ipc_call(h, &request(id), TIMEOUT_NS) {
            Ok(r) => {
                if let Err(why) = check(id, &r) {
                    return fail(why);
                }
            }
            Err(_) => return fail("a warm-up call failed"),
        }
    }
    READY.fetch_add(1, Ordering::Release);
    while !GO.load(Ordering::Acquire) {
        exo_rt::sched_yield();
    }
    let (first, count) = share(REQUESTS.load(Ordering::Relaxed), n, k);
    let lat = LAT.load(Ordering::Relaxed) as *mut u64;
    let mut failed = 0;
    for i in first..first + count {
        let id = id_of(i);
        let q = request(id);
        let t0 = rdtsc_precise();
        let r = exo_rt::ipc_call(h, &q, TIMEOUT_NS);
        let t1 = rdtsc_precise();
        // SAFETY: `i < requests <= MAX_REQUESTS`: inside the buffer; the ranges of the
        // clients are disjoint and the generator reads it only after joining them all.
        unsafe { lat.add(i as usize).write(t1.wrapping_sub(t0)) };
        let why = match r {
            Ok(r) => check(id, &r).err(),
            Err(_) => Some("a call failed (error or 10 s timeout: a lost response)"),
        };
        if let Some(why) = why {
            if FAILED.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("nginx: client {k} of {n}, request {i}: {why}");
            }
            failed = 1;
            break;
        }
    }
    END_TSC.fetch_max(rdtsc_precise(), Ordering::AcqRel);
    failed
}

/// CPUs this process may run on (it probes by pinning, then unpins itself).
fn count_cpus() -> usize {
    let n = (0..MAX_N)
        .take_while(|&c| exo_rt::pin_to_cpu(c).is_ok())
        .count();
    let mut mask = [0u64; MAX_N / 64];
    for c in 0..n {
        mask[c / 64] |= 1 << (c % 64);
    }
    let _ = exo_rt::sched_setaffinity(0, &mask);
    n
}

/// One point's figures.
#[derive(Clone, Copy, Default)]
struct Point {
    rps: u64,
    lat: Option<Stats>,
}

fn generator(requests: u64, inject: bool) -> Result<(), &'static str> {
    let ncpus = count_cpus().max(1);
    let buf = exo_rt::map_anonymous(requests as usize * 8, PROT_READ | PROT_WRITE)
        .map_err(|_| "mmap of the latency buffer")?;
    LAT.store(buf.as_ptr() as usize, Ordering::Relaxed);
    println!(
        "nginx: {ncpus} CPU(s): N = 1..{ncpus} workers and as many clients, {requests} requests per N, {} FNV rounds per request",
        ROUNDS
    );
    let mut suite = Suite::start("nginx", ncpus as u32, env!("EXO_GIT_REV"));
    let mode = suite.mode();
    let cpuid_hz = tsc_hz_from_cpuid();
    let mut checked = 0u64;
    let mut points = [Point::default(); MAX_N];
    for n in 1..=ncpus {
        let (p, ticks, ns) = point(n, requests, suite.overhead(), inject)?;
        checked += requests + WARMUP * n as u64;
        // Requests per second: TSC Hz from CPUID, else the TSC against CLOCK_MONOTONIC.
        let hz = if cpuid_hz != 0 {
            cpuid_hz
        } else {
            (u128::from(ticks) * 1_000_000_000 / u128::from(ns.max(1))) as u64
        };
        let rps = (u128::from(requests) * u128::from(hz) / u128::from(ticks.max(1))) as u64;
        let one = Stats {
            n: 1,
            mean: rps,
            min: rps,
            max: rps,
            p50: rps,
            p95: rps,
            p99: rps,
        };
        suite.emit(row_name("nginx.rps.", n).as_str(), Some(one));
        suite.emit(row_name("nginx.lat.", n).as_str(), p.lat);
        let (p50, p99) = p.lat.map_or((0, 0), |s| (s.p50, s.p99));
        println!(
            "nginx: N={n}: {requests} requests in {ticks} ticks ({} us): {rps} requests/s; latency p50 {p50} p99 {p99} ticks",
            ns / 1000
        );
        points[n - 1] = Point { rps, ..p };
    }
    suite.end();
    let base = points[0].rps.max(1);
    let best = points[..ncpus].iter().map(|p| p.rps).max().unwrap_or(0);
    println!(
        "nginx: summary: mode {}, N=1 {} requests/s, N={ncpus} {} requests/s ({}.{:02}x), best {best}; {} responses checked, all good",
        mode,
        points[0].rps,
        points[ncpus - 1].rps,
        points[ncpus - 1].rps / base,
        points[ncpus - 1].rps % base * 100 / base,
        checked
    );
    Ok(())
}

/// `prefix` followed by `n` in decimal.
fn row_name(prefix: &str, n: usize) -> Name {
    let mut s = Name::default();
    s.push(prefix.as_bytes());
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    let mut v = n;
    loop {
        k -= 1;
        digits[k] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    s.push(&digits[k..]);
    s
}

/// A short row name on the stack.
#[derive(Default)]
struct Name {
    buf: [u8; 32],
    len: usize,
}

impl Name {
    fn push(&mut self, b: &[u8]) {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("nginx.?")
    }
}

/// One point: `n` workers, `n` clients, `requests` requests. Returns the latency statistics,
/// the ticks and nanoseconds from the start signal to the last response.
///
/// On an error the workers still running are killed and waited for: until 2026-12-05 they
/// were left blocked on the endpoint (they hold handles with the receive right, so it never
/// went deaf), orphans until the end of the `init` job. `inject` (test): fail once every
/// worker has announced itself.
fn point(
    n: usize,
    requests: u64,
    overhead: u64,
    inject: bool,
) -> Result<(Point, u64, u64), &'static str> {
    let h = exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0).map_err(|_| "endpoint_create")?;
    let ready = match exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0) {
        Ok(r) => r,
        Err(_) => {
            let _ = exo_rt::handle_close(h);
            return Err("endpoint_create");
        }
    };
    // Workers spawned and not waited for (0: none). A worker that already ended (after
    // QUIT) counts as killed: `kill` of an ended child succeeds and changes nothing.
    let mut pids = [0usize; MAX_N];
    let r = run_point(n, requests, overhead, inject, h, ready, &mut pids);
    if r.is_err() {
        let mut killed = 0;
        for pid in pids.iter_mut().filter(|p| **p != 0) {
            if exo_rt::kill(*pid, exo_rt::SIGKILL).is_ok() {
                killed += 1;
            }
            // Bounded: a killed worker leaves at its next way back to ring 3.
            let _ = exo_rt::wait_timeout(*pid, &exo_rt::Timespec::from_nanos(TIMEOUT_NS));
            *pid = 0;
        }
        eprintln!("nginx: N={n}: failed: {killed} worker(s) killed and waited for");
    }
    // Closed here only, whatever happened (`run_point` never closes them).
    let closed = exo_rt::handle_close(h).and(exo_rt::handle_close(ready));
    let r = r?;
    closed.map_err(|_| "close")?;
    Ok(r)
}

/// [`point`]'s work with its two endpoints; `pids` holds the workers not yet waited for.
fn run_point(
    n: usize,
    requests: u64,
    overhead: u64,
    inject: bool,
    h: u32,
    ready: u32,
    pids: &mut [usize; MAX_N],
) -> Result<(Point, u64, u64), &'static str> {
    for (cpu, pid) in pids.iter_mut().enumerate().take(n) {
        let arg = WORKER << 56 | (cpu as u64) << 32 | u64::from(ready) << 16 | u64::from(h);
        *pid = exo_rt::spawn("/nginx", arg).map_err(|_| "spawn of a worker")?;
    }
    // Every worker is up (pinned, about to receive) before a client starts.
    for _ in 0..n {
        exo_rt::ipc_recv(ready, TIMEOUT_NS).map_err(|_| "a worker did not announce itself")?;
    }
    if inject {
        return Err("injected failure (arg bit 48) once the workers are up");
    }
    REQUESTS.store(requests, Ordering::Relaxed);
    HANDLE.store(h, Ordering::Relaxed);
    READY.store(0, Ordering::Relaxed);
    GO.store(false, Ordering::Relaxed);
    END_TSC.store(0, Ordering::Relaxed);
    let mut threads = [const { None }; MAX_N];
    for (k, t) in threads.iter_mut().enumerate().take(n) {
        *t =
            Some(exo_rt::thread::spawn(client, (n as u64) << 32 | k as u64).map_err(|_| "thread")?);
    }
    while READY.load(Ordering::Acquire) < n {
        exo_rt::sched_yield();
    }
    let ns0 = exo_rt::monotonic_nanos();
    let t0 = rdtsc_precise();
    GO.store(true, Ordering::Release);
    let mut client_failed = false;
    for t in threads.iter_mut().take(n) {
        if let Some(t) = t.take() {
            client_failed |= t.join() != Ok(0);
        }
    }
    let t1 = END_TSC.load(Ordering::Acquire);
    let ns = exo_rt::monotonic_nanos().saturating_sub(ns0);
    // The workers end on QUIT, one call each.
    for _ in 0..n {
        match exo_rt::ipc_call(h, &IpcMsg::new(QUIT, [0; 8]), TIMEOUT_NS) {
            Ok(m) if m.label == QUIT => {}
            _ => return Err("a worker did not answer QUIT"),
        }
    }
    let mut worker_failed = false;
    for pid in &mut pids[..n] {
        worker_failed |= exo_rt::wait(*pid) != Ok(ExitStatus::Exited(0));
        *pid = 0;
    }
    if client_failed || FAILED.load(Ordering::Relaxed) != 0 {
        return Err("a request failed or a response was wrong");
    }
    if worker_failed {
        return Err("a worker did not exit 0 (a malformed request)");
    }
    // SAFETY: the buffer holds `requests` u64s written by the joined clients.
    let lat = unsafe {
        core::slice::from_raw_parts_mut(LAT.load(Ordering::Relaxed) as *mut u64, requests as usize)
    };
    let p = Point {
        rps: 0,
        lat: stats_of(lat, overhead),
    };
    Ok((p, t1.saturating_sub(t0), ns))
}
