//! `/fuzz`: the system-call fuzzer (issue 12 item 6). A coordinator starts one worker
//! process per CPU; each pins itself to its CPU and makes random system calls (numbers
//! biased to the implemented ones, arguments drawn from nasty values: 0, -1, kernel and
//! non-canonical addresses, the last user page, ranges straddling the end of the user half
//! or a page followed by a hole, misaligned and unmapped pointers, huge lengths, and
//! pointers to its own buffers), spawns and waits for children (`/empty`, `/hello`,
//! `/faults <k>` that die by a fault, bogus paths) and starts threads. Every result is
//! checked against `exo_abi::SYSCALLS`: a success, or an error the call's row lists. Each
//! worker also serves an IPC endpoint of its own and calls it (see *The echo server*).
//!
//! # `arg`
//!
//! | bits   | coordinator (bits 0-1 = 0)                       | worker (bits 0-1 = 1)          |
//! |--------|--------------------------------------------------|--------------------------------|
//! | 2-7    | calls per worker process, thousands (0: 16)      | 2-13: the CPU to pin to        |
//! | 8      | lift the `munmap` span cap (see below)           | 14: kamikaze allowed; 15: lift the span cap |
//! | 9-31   | calls per CPU, thousands (0: 50)                 | 16-31: calls, in units of 64   |
//! | 32-63  | the run's seed                                   | the worker's seed              |
//!
//! Bits 0-1 = 2 is an echo child of a worker (`exo_fuzz::EchoChild`: the handle to call
//! through, its rights, the calls, the region's size; the worker starts it, see below).
//!
//! `exo.init=/fuzz exo.init_arg=0x<seed>00000000 | kcalls << 9` runs a whole campaign as
//! process 1 (what CI does); a worker's arg (printed in every finding) reruns one worker
//! alone: `exo.init=/fuzz exo.init_arg=<worker arg>`. `/init` runs `/fuzz` too with its arg
//! bit 2 (see `user/init`).
//!
//! # The campaign
//!
//! The coordinator counts the CPUs (`sched_setaffinity` to each CPU alone until one is
//! refused), then runs rounds: in each, one worker per CPU (at most [`MAX_WORKERS`]) with a
//! budget of calls and a seed derived from the run's seed, the CPU and the round; it waits
//! for them all and starts the next round until every CPU has made its calls. One worker
//! in four (never in the first round) is a *kamikaze*: after [`exo_fuzz::kamikaze_at`]
//! ordinary calls it also makes the deadly ones (`exit`, `exit_group`, `thread_exit` with
//! random codes, `munmap`/`mprotect` of its own image and stack, threads at random entry
//! points and stacks) for up to [`KAMIKAZE_CALLS`] more calls; any end is fine for it. An
//! ordinary worker must exit 0; it exits `64 | flags` when it saw an untyped error (1), an
//! error its row does not list (2), an impossible success (4) or a child that ended
//! otherwise than expected (8). The coordinator ends with
//!
//! ```text
//! FUZZ,done,calls=<n>,workers=<w>,deaths=<d>,kamikaze=<k>,failed=<f>,untyped=<u>,seed=<s>
//! ```
//!
//! (`calls`: random calls the ordinary phases made, exact; `deaths`: workers that did not
//! exit 0 (kamikazes); `failed`: ordinary workers that did not exit 0; `untyped`: workers
//! that saw an untyped, undocumented or impossible result) and exits 0 only when `failed`
//! is 0. Each worker prints `FUZZ,worker,...` with its per-errno counts; every finding is
//! one `FUZZ,<untyped|undocumented|badret|child>,...` line with the worker's arg and the
//! call's index, enough to replay it.
//!
//! # The echo server
//!
//! Each worker creates an endpoint (both rights, a badge from its seed: `exo_fuzz::echo`),
//! gives it a shared region of 1 to 8 pages one time in two (so zero-copy descriptors can
//! fit, and the callers know exactly which do), and starts one server thread (on a static
//! stack in the image) that receives on it and answers every message with a reply derived
//! from it (`echo::reply`: label and length transformed, words scrambled with the badge,
//! word 5 the info it received; a handle the message brought goes back in the reply and is
//! then closed), through `ipc_reply_recv` (the fastpath when the caller is blocked on its
//! CPU) or `ipc_reply` then `ipc_recv`, at times with `INFO_SLOW`. It gets a send-only
//! handle first by passing the endpoint's handle to the server with the send right alone.
//! One call in [`ECHO_ODDS`] of the main stream is an `ipc_call` (one in 8 of them an
//! `ipc_send`) to it with a random message (`echo::plan`: label, length 0..=255, payload,
//! `INFO_SLOW`, a zero-copy descriptor inside, at the edge of or outside the region, a
//! handle of its own with rights it has or lacks, a bad handle, one of the stream's,
//! reserved bits), 3 in 4 with no timeout (`rbx = 0`: the fastpath's own copy). That is
//! safe outside the deadly phase: the main stream alone calls the server, nothing else
//! receives on the endpoint while it does (the stream's threads run only while it waits
//! for them), its handles are never closed nor the server joined (`tame`), so a message
//! the kernel takes is answered and one it refuses waits for nothing. The result must be
//! the one the contract allows (`echo::allowed`: exactly `EINVAL`, `EMSGSIZE`, `ERANGE`,
//! `EBADF` or `EPERM` where the message says so, else success, `ETIMEDOUT` only with a
//! timeout), and a reply the one the server derives (`echo::check_reply`; a handle that
//! came back has the rights given and is closed); anything else is
//! `FUZZ,badret,...,echo <what>: ...`, and so is an ordinary worker (or a kamikaze's
//! ordinary phase) with [`ECHO_MIN_CALLS`] calls and no round trip.
//!
//! One call in [`ECHO_CHILD_ODDS`] starts an echo child (`/fuzz` with its arg) that
//! inherits the handles and makes 1 to 16 such calls through the send-only handle, at
//! times passing that handle or an endpoint of its own (the server, in the worker's
//! process, gets a handle from the child's table and passes it back); the worker waits for
//! it at once (so the server is still alone to receive) and it must exit 0.
//!
//! At its end an ordinary worker sends `QUIT` (answered, then the server returns), joins
//! the server and closes the handles; without an answer it does not join (its exit ends
//! the thread). A kamikaze sends `DEADLY` before its deadly phase: the server then
//! receives with a timeout of [`SERVER_IDLE_NS`] and ends after [`SERVER_IDLE_ROUNDS`]
//! empty receives in a row (or [`SERVER_DEADLY_TURNS`] in all), so a main thread that ended
//! alone leaves no thread waiting for ever; the deadly phase's echo calls all carry a
//! timeout and only their errno is checked (its threads may take the call, close the
//! handle, end the server). The `FUZZ,worker` line ends with `echo=<calls>,echo_ok=<round
//! trips>,echo_t0=<those with no timeout>,echo_handles=<handles back>,echo_zc=<zero-copy
//! round trips>,echo_sends=<sends taken>,echo_children=<children that exited
//! 0>,echo_served=<messages the server received>,write_partial=<partial writes>`. A worker that finds no endpoint or
//! thread left in the system runs without (`FUZZ,echo-off,...`, not a finding).
//!
//! # Staying alive
//!
//! Outside the kamikaze phase the worker never makes a call that the contract says would
//! end it or hang it: the ending calls become `getpid`; `munmap`, `mprotect` and
//! `mmap(MAP_FIXED)` ranges the kernel would accept never touch the image (with the
//! worker's buffers and thread stacks, all statics) or the stack; `write` to the console
//! only reads from a page of newlines followed by a hole (or from memory that surely
//! faults), so the log stays readable; now and then it starts 257 to 527 bytes before the
//! hole and must return the whole 256-byte blocks before it as the kernel counts them
//! (`PartialWrite`: a `badret` otherwise), counted in `write_partial`;
//! `nanosleep` and `futex(FUTEX_WAIT)` get a short or
//! invalid timeout unless their pointer surely faults; a random `spawn` never starts
//! `/fuzz`, `/init` or `/ubench`; `thread_create` from the stream gets a kernel or
//! non-canonical entry, or a bad stack with an entry that only exits; threads never join
//! one another, nor the main stream the echo server; `handle_close` never closes the echo
//! endpoint's handles (an entry out of the table instead).
//! Maps that could eat all memory (more than [`BIG_MAP`]) are made once in
//! [`OOM_ODDS`] calls. `munmap` spans above [`MUNMAP_SPAN_CAP`] are cut to it unless the
//! arg lifts the cap (bit 8, what CI does): the kernel once walked every page of the range
//! (a finding of this fuzzer: `munmap(0x1000000000, 1 << 46)` ran for hours; it now walks
//! only the page tables that exist).
#![cfg_attr(target_os = "none", no_std, no_main)]
// The per-call rules read better as one `match` arm per call with its own `if` inside.
#![allow(clippy::collapsible_match)]

#[path = "../../faults/src/cases.rs"]
mod cases;

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use exo_fuzz::echo::{self, Control, Passed, Plan, Zc};
use exo_fuzz::{
    Coordinator, ENDING_CALLS, KERNEL_DIRECT, KERNEL_IMAGE, LENGTHS, Mode, NASTY, PAGE, PLAY_BASE,
    PLAY_SIZE, Rng, USER_END, USER_MIN, Verdict, WORKER_CALL_UNIT, Worker, bad_success, classify,
    is_kamikaze, kamikaze_at, overlaps, touched_range, worker_seed,
};
use exo_rt::abi::{Errno, ExitStatus, nr};
use exo_rt::{eprintln, println};

exo_rt::entry!(run);

/// Workers at most (the kernel's task table holds 256 user threads).
pub const MAX_WORKERS: usize = 64;
/// Deadly calls a kamikaze makes at most after its ordinary ones.
pub const KAMIKAZE_CALLS: u64 = 4096;
/// Largest span of one `munmap` (unless lifted): 64 MiB.
pub const MUNMAP_SPAN_CAP: u64 = 64 << 20;
/// Maps above this size can take all memory: rare.
pub const BIG_MAP: u64 = 64 << 20;
/// What a big map is cut to otherwise (zeroing memory is slow under TCG).
pub const SMALL_MAP: u64 = 4 << 20;
/// One call in this many may be a big map.
pub const OOM_ODDS: u64 = 50_000;
/// One call of the main stream in this many is a call to the worker's echo server.
pub const ECHO_ODDS: u64 = 16;
/// One call of the main stream in this many (outside the deadly phase) starts an echo
/// child and waits for it.
pub const ECHO_CHILD_ODDS: u64 = 1024;
/// An ordinary worker that made this many calls to its echo server must have had a
/// round trip.
pub const ECHO_MIN_CALLS: u64 = 32;
/// The longest timeout of the echo calls of the deadly phase, ns.
pub const DEADLY_ECHO_TIMEOUT: u64 = 1_000_000;
/// The server's receive timeout in its deadly mode, ns.
pub const SERVER_IDLE_NS: u64 = 1_000_000;
/// In its deadly mode the server ends after this many receives in a row that brought
/// nothing (timed out or failed)...
pub const SERVER_IDLE_ROUNDS: u32 = 64;
/// ... or after this many receives in all.
pub const SERVER_DEADLY_TURNS: u64 = 4 * KAMIKAZE_CALLS;

fn run(arg: u64) -> i32 {
    match Mode::decode(arg) {
        Some(Mode::Coordinator(c)) => coordinator(c),
        Some(Mode::Worker(w)) => worker(w, arg),
        Some(Mode::EchoChild(c)) => echo_child(c, arg),
        None => {
            eprintln!("fuzz: bad arg {arg:#x}");
            2
        }
    }
}

// ---------------------------------------------------------------------------------------
// The coordinator.

/// CPUs online: pins itself to 0, 1, ... until the kernel refuses one; then allows all.
fn count_cpus() -> usize {
    let mut n = 0;
    while n < exo_rt::CPU_SET_BYTES * 8 && exo_rt::pin_to_cpu(n).is_ok() {
        n += 1;
    }
    let _ = exo_rt::sched_setaffinity(0, &[u64::MAX; exo_rt::CPU_SET_BYTES / 8]);
    n.max(1)
}

fn coordinator(c: Coordinator) -> i32 {
    let cpus = count_cpus();
    let workers = cpus.min(MAX_WORKERS);
    let per_cpu = u64::from(c.kcalls_per_cpu) * 1000;
    let per_gen = (u64::from(c.gen_kcalls) * 1000).next_multiple_of(WORKER_CALL_UNIT);
    println!(
        "FUZZ,start,cpus={cpus},workers={workers},calls_per_cpu={per_cpu},calls_per_worker={per_gen},seed={}",
        c.seed
    );
    let t0 = exo_rt::monotonic_nanos();
    let (mut calls, mut started, mut deaths, mut kamikazes, mut failed, mut untyped) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut pids = [(0usize, None::<Worker>, 0u64); MAX_WORKERS];
    let mut remaining = per_cpu;
    let mut generation = 0u32;
    while remaining > 0 {
        let budget = remaining.min(per_gen).next_multiple_of(WORKER_CALL_UNIT);
        for (cpu, slot) in pids.iter_mut().enumerate().take(workers) {
            let seed = worker_seed(c.seed, cpu as u32, generation);
            let w = Worker {
                cpu: cpu as u32,
                kamikaze: is_kamikaze(seed, generation),
                no_span_cap: c.no_span_cap,
                units: (budget / WORKER_CALL_UNIT) as u32,
                seed,
            };
            let arg = Mode::Worker(w).encode();
            let mut tries = 0;
            let pid = loop {
                match exo_rt::spawn("/fuzz", arg) {
                    Ok(pid) => break Some(pid),
                    // The tables may be full of dying processes for a moment.
                    Err(Errno::EAGAIN | Errno::ENOMEM) if tries < 1000 => {
                        tries += 1;
                        exo_rt::sched_yield();
                    }
                    Err(e) => {
                        println!("FUZZ,spawn-failed,cpu={cpu},arg={arg:#x},{e}");
                        break None;
                    }
                }
            };
            match pid {
                Some(pid) => {
                    started += 1;
                    *slot = (pid, Some(w), arg);
                }
                None => {
                    failed += 1;
                    *slot = (0, None, arg);
                }
            }
        }
        for &(pid, w, arg) in pids.iter().take(workers) {
            let Some(w) = w else { continue };
            let budget = u64::from(w.units) * WORKER_CALL_UNIT;
            let status = exo_rt::wait(pid);
            let ordinary = if w.kamikaze {
                kamikaze_at(w.seed, budget)
            } else {
                budget
            };
            match status {
                Ok(ExitStatus::Exited(0)) => {
                    calls += ordinary;
                    kamikazes += u64::from(w.kamikaze);
                }
                Ok(s) if w.kamikaze => {
                    kamikazes += 1;
                    deaths += 1;
                    calls += ordinary;
                    if let ExitStatus::Exited(code) = s
                        && code & !15 == 64
                        && code != 64
                    {
                        // Its findings before the deadly phase (see `worker`).
                        untyped += 1;
                        println!("FUZZ,worker-findings,pid={pid},arg={arg:#x},{s}");
                    }
                }
                Ok(s) => {
                    failed += 1;
                    if let ExitStatus::Exited(code) = s
                        && code & !15 == 64
                    {
                        untyped += 1;
                    }
                    println!("FUZZ,worker-failed,pid={pid},arg={arg:#x},{s}");
                }
                Err(e) => {
                    failed += 1;
                    println!("FUZZ,wait-failed,pid={pid},arg={arg:#x},{e}");
                }
            }
        }
        remaining -= budget.min(remaining);
        generation += 1;
    }
    // The kernel must still run a process after all that.
    let after = exo_rt::spawn("/empty", 0).and_then(exo_rt::wait);
    if after != Ok(ExitStatus::Exited(0)) {
        failed += 1;
        println!("FUZZ,after,spawn /empty: {after:?}");
    }
    let ms = exo_rt::monotonic_nanos().saturating_sub(t0) / 1_000_000;
    println!(
        "FUZZ,done,calls={calls},workers={started},deaths={deaths},kamikaze={kamikazes},failed={failed},untyped={untyped},seed={},ms={ms}",
        c.seed
    );
    if failed == 0 && untyped == 0 { 0 } else { 1 }
}

// ---------------------------------------------------------------------------------------
// The worker's memory: all of it in the image (statics), so that the ranges it protects
// are two: the image and the stack.

const SCRATCH_PAGES: usize = 8;
const RO: usize = SCRATCH_PAGES; // read-only: timespecs, then zeros
const EDGE: usize = RO + 1; // read-write, followed by a hole
const HOLE1: usize = EDGE + 1;
const NL: usize = HOLE1 + 1; // newlines, read-only, followed by a hole
const HOLE2: usize = NL + 1;
const ARENA_PAGES: usize = HOLE2 + 1;
const THREADS: usize = 3;
const THREAD_STACK: usize = 64 * 1024;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_PAGES * PAGE as usize]>);
// SAFETY: the kernel and the threads write through raw pointers only; nothing makes a
// reference to the bytes.
unsafe impl Sync for Arena {}
static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_PAGES * PAGE as usize]));

#[repr(C, align(4096))]
struct Stacks(UnsafeCell<[[u8; THREAD_STACK]; THREADS]>);
// SAFETY: each stack belongs to one thread at a time (started after the previous user
// was joined); only raw pointers are made.
unsafe impl Sync for Stacks {}
static STACKS: Stacks = Stacks(UnsafeCell::new([[0; THREAD_STACK]; THREADS]));

fn arena() -> u64 {
    ARENA.0.get() as u64
}
fn page(k: usize) -> u64 {
    arena() + k as u64 * PAGE
}

/// The image (text, data, the arena, the thread stacks) lies in here.
const IMAGE: (u64, u64) = (0x40_0000, 0x1000_0000);
/// The stack the loader maps below 0x7fff_ffff_0000, with a wide margin.
const STACK: (u64, u64) = (0x7fff_f000_0000, 0x7fff_ffff_0000);

/// Timespecs `nanosleep` and `futex` may read: short valid ones, then invalid ones.
const TIMESPECS: [(u64, u64); 8] = [
    (0, 0),
    (0, 1),
    (0, 50_000),
    (0, 1_000_000_000),
    (u64::MAX, 0),
    (u64::MAX - 1, 0),
    (0, u64::MAX),
    (1 << 63, 1),
];

// ---------------------------------------------------------------------------------------
// Counters, shared by the worker's threads.

struct Stats {
    calls: AtomicU64,
    ok: AtomicU64,
    errs: [AtomicU64; 128],
    flags: AtomicU32,
    printed: AtomicU32,
    spawns: AtomicU64,
    kills: AtomicU64,
    threads: AtomicU64,
    threads_enosys: AtomicU64,
    known: AtomicU64,
    arg: AtomicU64,
    /// Calls to the echo server (main stream), round trips, those with no timeout (the
    /// fastpath's `rbx == 0` copy), replies that brought a handle back, zero-copy round
    /// trips, sends taken, children that ended well, messages the server received.
    echo: AtomicU64,
    echo_ok: AtomicU64,
    echo_t0: AtomicU64,
    echo_handles: AtomicU64,
    echo_zc: AtomicU64,
    echo_sends: AtomicU64,
    echo_children: AtomicU64,
    echo_served: AtomicU64,
    /// Writes that reached the hole from more than a block before it and returned the part
    /// before it ([`PartialWrite`]).
    write_partial: AtomicU64,
}

static STATS: Stats = Stats {
    calls: AtomicU64::new(0),
    ok: AtomicU64::new(0),
    errs: [const { AtomicU64::new(0) }; 128],
    flags: AtomicU32::new(0),
    printed: AtomicU32::new(0),
    spawns: AtomicU64::new(0),
    kills: AtomicU64::new(0),
    threads: AtomicU64::new(0),
    threads_enosys: AtomicU64::new(0),
    known: AtomicU64::new(0),
    arg: AtomicU64::new(0),
    echo: AtomicU64::new(0),
    echo_ok: AtomicU64::new(0),
    echo_t0: AtomicU64::new(0),
    echo_handles: AtomicU64::new(0),
    echo_zc: AtomicU64::new(0),
    echo_sends: AtomicU64::new(0),
    echo_children: AtomicU64::new(0),
    echo_served: AtomicU64::new(0),
    write_partial: AtomicU64::new(0),
};

const F_UNTYPED: u32 = 1;
const F_UNDOCUMENTED: u32 = 2;
const F_BADRET: u32 = 4;
const F_CHILD: u32 = 8;

fn finding(flag: u32, what: &str, index: u64, n: u64, a: &[u64; 6], ret: i64) {
    STATS.flags.fetch_or(flag, Relaxed);
    if STATS.printed.fetch_add(1, Relaxed) < 32 {
        println!(
            "FUZZ,{what},arg={:#x},call={index},nr={n},args={:#x}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x},ret={ret}",
            STATS.arg.load(Relaxed),
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5]
        );
    }
}

// ---------------------------------------------------------------------------------------
// One stream of calls (the worker's main thread, or one of its threads).

struct Ctx {
    rng: Rng,
    cpu: u32,
    pid: u64,
    /// In a thread of the worker (not its main thread).
    thread: bool,
    /// Deadly calls allowed.
    deadly: bool,
    span_cap: bool,
    /// Calls this stream made.
    index: u64,
    /// Non-fixed maps to give back (address, length).
    maps: [(u64, u64); 8],
    nmaps: usize,
    /// A child not waited for yet (random `wait`s may take it).
    pending: Option<(u64, Expect)>,
    /// The write `tame` just made reach the hole from more than a block before it.
    partial: Option<PartialWrite>,
}

/// The kernel's block of a `write` that faults part-way: it returns the bytes queued before
/// the fault, every whole block of `buf` at least (`docs/syscalls.md`, `write`).
const WRITE_BLOCK: u64 = 256;

/// A `write` of a buffer whose first `most` bytes are readable (newlines) and the next are
/// the hole: it must return between `least` and `most` (`EFAULT` only when `least` is 0).
/// The exact rule (the kernel's `queue` in `kernel/src/user/syscall.rs`): the whole
/// [`WRITE_BLOCK`]s of `buf` that it copied before the fault, or, when the console ring
/// filled part-way, the bytes it had queued until then if more. (Until 2026-12-06 the
/// kernel lost the last whole block when fewer than 8 readable bytes followed it and the
/// ring wrapped at an odd offset before it; this check found it, and accepted one block
/// less until the kernel was fixed.) Not checked in the deadly phase, where other threads
/// may unmap the newlines.
#[derive(Debug, Clone, Copy)]
struct PartialWrite {
    least: u64,
    most: u64,
}

/// How a spawned child must end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Any,
    Exit(u8),
    Case(u64),
}

impl Ctx {
    fn new(seed: u64, cpu: u32, thread: bool, deadly: bool, span_cap: bool) -> Ctx {
        Ctx {
            rng: Rng::new(seed),
            cpu,
            pid: exo_rt::getpid() as u64,
            thread,
            deadly,
            span_cap,
            index: 0,
            maps: [(0, 0); 8],
            nmaps: 0,
            pending: None,
            partial: None,
        }
    }

    /// A pointer: into its own buffers (sometimes misaligned), at a page end before a hole,
    /// into a hole, its text, the playground, a map it made, or a nasty constant.
    fn ptr(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.below(16) {
            0..=3 => arena() + r.below(SCRATCH_PAGES as u64 * PAGE),
            4 => arena() + r.below(SCRATCH_PAGES as u64 * PAGE / 8) * 8,
            5 => page(RO) + r.below(PAGE),
            6 => page(HOLE1) - 1 - r.below(24),
            7 => page(HOLE1) + r.below(2) * PAGE + r.below(PAGE),
            8 => page(HOLE2) - 1 - r.below(64),
            9 => run as *const () as u64 + r.below(64),
            10 | 11 => PLAY_BASE + r.below(PLAY_SIZE / PAGE) * PAGE + r.pick(&[0, 0, 1, 8, 4095]),
            12 if self.nmaps > 0 => self.maps[r.below(self.nmaps as u64) as usize].0,
            13 => USER_END - r.below(64),
            _ => r.pick(NASTY),
        }
    }

    fn len(&mut self) -> u64 {
        if self.rng.chance(1, 3) {
            self.rng.below(64)
        } else {
            self.rng.pick(LENGTHS)
        }
    }

    fn any(&mut self) -> u64 {
        match self.rng.below(100) {
            0..40 => self.rng.pick(NASTY),
            40..70 => self.ptr(),
            70..85 => self.len(),
            85..95 => self.rng.below(32),
            _ => self.rng.next_u64(),
        }
    }

    fn addr(&mut self) -> u64 {
        match self.rng.below(6) {
            0 | 1 => PLAY_BASE + self.rng.below(PLAY_SIZE / PAGE) * PAGE,
            2 if self.nmaps > 0 => self.maps[self.rng.below(self.nmaps as u64) as usize].0,
            3 => self.ptr(),
            _ => self.any(),
        }
    }

    /// Arguments for call `n`: all random, or shaped like the call's (3 in 4).
    fn args(&mut self, n: u64) -> [u64; 6] {
        let mut a = [0u64; 6];
        for x in &mut a {
            *x = self.any();
        }
        if self.rng.chance(1, 4) {
            return a;
        }
        let r = &mut self.rng;
        match n as usize & 0xffff_ffff {
            nr::WRITE => {
                a[0] = r.pick(&[1, 1, 2, 0, 3, 999, u64::MAX, 1 << 32 | 1]);
                a[1] = self.ptr();
                a[2] = self.len();
            }
            nr::MMAP => {
                a[0] = if r.chance(1, 2) { 0 } else { self.addr() };
                a[1] = self.len();
                let r = &mut self.rng;
                a[2] = if r.chance(7, 8) {
                    r.below(8)
                } else {
                    r.next_u64()
                };
                // 0x100_0000: `MAP_LAZY` (demand-zero pages: the fault-in of every later
                // call given a pointer into them, and of the stream's own touches).
                a[3] = r.pick(&[
                    0x22, 0x22, 0x32, 0x32, 0x02, 0x20, 0x12, 0x30, 0x23, 0x122, 0x100_0022,
                    0x100_0022, 0x100_0032, 0x300_0022,
                ]);
                a[4] = r.pick(&[u64::MAX, u64::MAX, 0, 1, 0xffff_ffff]);
                a[5] = r.pick(&[0, 0, 0, 4096, 1]);
            }
            nr::MPROTECT | nr::MUNMAP => {
                a[0] = self.addr();
                a[1] = if self.rng.chance(1, 2) {
                    (self.rng.below(16) + 1) * PAGE
                } else {
                    self.len()
                };
                a[2] = if self.rng.chance(7, 8) {
                    self.rng.below(8)
                } else {
                    self.rng.next_u64()
                };
            }
            nr::NANOSLEEP | nr::CLOCK_GETTIME => {
                if n as usize == nr::CLOCK_GETTIME {
                    a[0] = r.pick(&[0, 1, 1, 2, 3, u64::MAX, 1 << 32]);
                    a[1] = self.ptr();
                } else {
                    a[0] = self.ptr();
                }
            }
            nr::FUTEX => {
                a[0] = self.ptr();
                let r = &mut self.rng;
                a[1] = r.pick(&[0, 1, 128, 129, 2, 9, 256, 1 << 32, u64::MAX]);
                a[2] = if r.chance(1, 2) {
                    // The word's value, so that a wait sleeps (until its short timeout).
                    // SAFETY: read only when it is in the arena's readable pages.
                    read_u32_if_known(a[0]).unwrap_or(0) as u64
                } else {
                    r.pick(&[0, 1, u64::MAX, 0x7fff_ffff])
                };
                a[3] = if self.rng.chance(1, 2) { 0 } else { self.ptr() };
            }
            nr::SCHED_SETAFFINITY => {
                a[0] = r.pick(&[0, 0, self.pid, 1, u64::MAX, 4096]);
                a[1] = r.pick(&[0, 1, 8, 16, 128, 129, 4096, u64::MAX]);
                a[2] = self.ptr();
            }
            nr::SET_TID_ADDRESS => {
                // Cleared at the thread's end: the arena, a hole, text (nothing Rust reads).
                a[0] = if r.chance(1, 4) { 0 } else { self.ptr() };
            }
            nr::GETCPU => {
                a[0] = if r.chance(1, 4) { 0 } else { self.ptr() };
                a[1] = if self.rng.chance(1, 2) { 0 } else { self.ptr() };
            }
            nr::WAIT => {
                a[0] = match (r.below(4), self.pending) {
                    (0, Some((pid, _))) => pid,
                    (1, _) => self.pid,
                    (2, _) => r.below(300),
                    _ => r.pick(NASTY),
                };
                // The timeout: none, a known timespec (short or invalid), or any pointer.
                a[1] = match r.below(4) {
                    0 => 0,
                    1 | 2 => self.timespec(),
                    _ => self.ptr(),
                };
            }
            nr::KILL => {
                a[0] = match (r.below(6), self.pending) {
                    (0, Some((pid, _))) => pid,
                    (1, _) => self.pid,
                    (2, _) => 1,
                    (3, _) => r.below(300),
                    _ => r.pick(NASTY),
                };
                a[1] = r.pick(&[0, 9, 9, 15, 1, 64, u64::MAX, 9 | 1 << 32]);
            }
            nr::IPC_CALL | nr::IPC_REPLY_RECV | nr::IPC_RECV | nr::IPC_SEND | nr::IPC_REPLY => {
                a[0] = if r.chance(3, 4) { r.below(66) } else { a[0] };
                let len = r.pick(&[0u64, 8, 64, 64, 64, 65, 255]);
                a[1] = (r.next_u64() & 0xffff_ffff) | len << 32;
                if r.chance(1, 4) {
                    a[1] |= 1 << 63; // IPC_INFO_SLOW
                }
                if r.chance(1, 8) {
                    a[1] |= 1 << 40; // IPC_INFO_ZC: words 0 and 1 are a region descriptor
                }
                if r.chance(1, 4) {
                    // IPC_INFO_HANDLE: word 7 names a handle to pass (`ipc_step`).
                    a[1] |= exo_rt::abi::ipc::INFO_HANDLE;
                }
                if r.chance(1, 16) {
                    // A reserved bit, or IPC_INFO_HANDLE_LOST (bit 42, receipt only): EINVAL.
                    a[1] |= 1 << (42 + r.below(21));
                }
            }
            nr::ENDPOINT_CREATE => {
                a[0] = if r.chance(7, 8) { r.below(5) } else { a[0] };
            }
            nr::SHM_MAP => {
                a[0] = if r.chance(7, 8) { r.below(66) } else { a[0] };
                a[1] = r.pick(&[0, 0, 1, 4096, 65536, 1 << 20, (1 << 20) + 1, u64::MAX]);
            }
            nr::HANDLE_CLOSE | nr::HANDLE_INFO => {
                a[0] = if r.chance(7, 8) { r.below(66) } else { a[0] };
            }
            nr::THREAD_JOIN => {
                a[0] = if r.chance(1, 2) {
                    r.below(2048)
                } else {
                    r.pick(NASTY)
                }
            }
            _ => {}
        }
        a
    }

    /// Whether `[s, e)` holds something of the worker's own.
    fn protected(&self, s: u64, e: u64) -> bool {
        overlaps(s, e, IMAGE.0, IMAGE.1) || overlaps(s, e, STACK.0, STACK.1)
    }

    /// Makes the call `n(a)` one the worker survives (see the crate header).
    fn tame(&mut self, n: &mut u64, a: &mut [u64; 6]) {
        let eff = if *n >> 32 == 1 {
            *n & 0xffff_ffff // what a kernel truncating numbers would run
        } else {
            *n
        } as usize;
        if ENDING_CALLS.contains(&eff) {
            if !self.deadly {
                *n = nr::GETPID as u64;
            } else if a[0] & 0xF0 == 0x40 {
                // A random end must not look like a findings exit (64 | flags).
                a[0] ^= 0x80;
            }
            return;
        }
        match eff {
            nr::MUNMAP | nr::MPROTECT | nr::MMAP => {
                let fixed = eff != nr::MMAP || a[3] & 0x10 != 0;
                if fixed && let Some((s, e)) = touched_range(a[0], a[1]) {
                    if !self.deadly && self.protected(s, e) {
                        a[0] = PLAY_BASE + self.rng.below(PLAY_SIZE / PAGE) * PAGE;
                        a[1] = (self.rng.below(16) + 1) * PAGE;
                    } else if eff == nr::MUNMAP && self.span_cap && e - s > MUNMAP_SPAN_CAP {
                        a[1] = MUNMAP_SPAN_CAP;
                    }
                }
                // Maps that may take all memory, rarely.
                if eff == nr::MMAP
                    && a[1] > BIG_MAP
                    && a[1] < USER_END
                    && !self.rng.chance(1, OOM_ODDS / 8)
                {
                    a[1] &= SMALL_MAP - 1;
                }
            }
            nr::WRITE => {
                if (a[0] == 1 || a[0] == 2) && a[2] != 0 && !surely_faults(a[1], a[2]) {
                    // 15 in 16 start in the hole: EFAULT. The others start in the page of
                    // newlines: 1 to 3 bytes before the hole (whole when `a[2]` ends before
                    // it, else EFAULT with nothing written: the kernel keeps only whole
                    // 256-byte blocks of `buf` before a fault), or, one in 4 of them, one
                    // or two blocks and 1 to 15 bytes before it, with a length that reaches
                    // it (a partial write: [`PartialWrite`]). Until 2026-12-06 the comment
                    // said every one of them printed, and no write could return a partial
                    // count (found by review).
                    a[1] = if !self.rng.chance(1, 16) {
                        page(HOLE2) + self.rng.below(PAGE)
                    } else if !self.rng.chance(1, 4) {
                        page(HOLE2) - 1 - self.rng.below(3)
                    } else {
                        let blocks = if self.rng.chance(3, 4) { 1 } else { 2 };
                        let past = 1 + self.rng.below(15);
                        let readable = blocks * WRITE_BLOCK + past;
                        a[2] = readable + 1 + self.rng.below(PAGE);
                        // (Not for a number with bit 32 set: it is not `write`.)
                        if !self.deadly && *n == nr::WRITE as u64 {
                            self.partial = Some(PartialWrite {
                                least: blocks * WRITE_BLOCK,
                                most: readable,
                            });
                        }
                        page(HOLE2) - readable
                    };
                }
            }
            nr::NANOSLEEP => {
                if !surely_faults(a[0], 16) {
                    a[0] = self.timespec();
                }
            }
            nr::FUTEX => {
                if a[1] & !128 == 0 {
                    if a[3] == 0 {
                        if a[0].is_multiple_of(4) && !surely_faults(a[0], 4) {
                            a[3] = self.timespec();
                        }
                    } else if !surely_faults(a[3], 16) {
                        a[3] = self.timespec();
                    }
                }
            }
            nr::SPAWN => {
                if names_a_long_runner(a[0], a[1]) {
                    a[1] = 0;
                }
            }
            nr::THREAD_CREATE if !self.deadly => {
                if self.rng.chance(1, 2) {
                    a[0] = self.rng.pick(&[
                        USER_END,
                        KERNEL_IMAGE,
                        KERNEL_DIRECT,
                        1 << 63,
                        u64::MAX,
                        USER_END + 0x1000,
                    ]);
                } else {
                    // An entry that only exits, with a stack the contract refuses.
                    a[0] = exit_thread_entry();
                    a[1] = self.rng.pick(&[
                        0,
                        KERNEL_IMAGE,
                        USER_END,
                        u64::MAX,
                        arena() + 8,
                        arena() + 1,
                        USER_END + 16,
                    ]);
                }
            }
            nr::WAIT => {
                // Pids come from one rising counter: one above the worker's own may be a
                // child of another stream of this worker (its threads), pending there. A
                // random wait must not reap it (both streams would judge it wrongly; seen
                // when pid 4095, a nasty value, was a sibling's child). Its own pending
                // child, the worker itself, older processes and huge values stay.
                let own = self.pending.map(|(pid, _)| pid);
                if Some(a[0]) != own && a[0] > self.pid && a[0] < 1 << 40 {
                    a[0] = self.pid;
                }
            }
            nr::KILL if a[0] > self.pid && a[0] < 1 << 40 => {
                // Possibly a child of this worker: only the pending one whose end may be
                // anything can be killed (a menu child's end is judged, an echo child's
                // calls are counted); any other becomes the worker itself (EPERM).
                let any = self
                    .pending
                    .is_some_and(|(pid, e)| pid == a[0] && matches!(e, Expect::Any));
                if !any {
                    a[0] = self.pid;
                }
            }
            nr::THREAD_JOIN if self.thread || (!self.deadly && ECHO.is_server(a[0])) => {
                // Never one of the worker's own threads (two could wait for each other), nor
                // its echo server (it ends at the worker's end).
                a[0] = self.rng.pick(&[u64::MAX, 1 << 40, KERNEL_IMAGE, USER_END]);
            }
            nr::HANDLE_CLOSE if !self.deadly && ECHO.is_own_handle(a[0]) => {
                // The echo endpoint's handles stay (a call through a reused entry could wait
                // for ever); an entry out of the table instead (EBADF).
                a[0] = exo_rt::abi::ipc::HANDLES as u64 + self.rng.below(2);
            }
            _ => {}
        }
    }

    fn timespec(&mut self) -> u64 {
        page(RO) + self.rng.below(TIMESPECS.len() as u64) * 16
    }

    /// One random call, checked.
    fn step(&mut self) {
        if !self.thread && ECHO.on() {
            // The main stream alone calls the server: outside the deadly phase nothing else
            // receives on its endpoint meanwhile, so every call it takes is answered.
            if self.rng.chance(1, ECHO_ODDS) {
                return self.echo_step();
            }
            if !self.deadly && self.rng.chance(1, ECHO_CHILD_ODDS) {
                return self.echo_spawn();
            }
        }
        let mut n = exo_fuzz::pick_nr(&mut self.rng);
        // Spawns through the menu half of the time (children whose end is known).
        if n as usize == nr::SPAWN && self.rng.chance(1, 2) {
            self.spawn_menu();
            return;
        }
        let mut a = self.args(n);
        self.tame(&mut n, &mut a);
        if exo_fuzz::is_ipc(n) {
            return self.ipc_step(n, &a);
        }
        // SAFETY: `tame` made the call one the worker survives (outside the deadly phase);
        // no argument points at memory Rust code uses (only the arena, the playground, holes,
        // text and maps nothing reads).
        let ret = unsafe {
            exo_rt::raw::syscall6(
                n as usize,
                a[0] as usize,
                a[1] as usize,
                a[2] as usize,
                a[3] as usize,
                a[4] as usize,
                a[5] as usize,
            )
        } as i64;
        self.check(n, &a, ret);
        if let Some(w) = self.partial.take() {
            if ret > 0 && (w.least..=w.most).contains(&(ret as u64)) {
                STATS.write_partial.fetch_add(1, Relaxed);
            } else if !(ret == -(Errno::EFAULT.code() as i64) && w.least == 0) {
                finding(F_BADRET, "badret", self.index - 1, n, &a, ret);
            }
        }
        if ret >= 0 {
            self.after_success(n, &a, ret);
        }
    }

    /// An IPC call: `a` as the six usual registers, random payload words in the callee-saved
    /// ones, a timeout of at most `IPC_TIMEOUT_MAX` ns in `rbx` (never 0: no endless wait; the
    /// handle is random: at times the echo endpoint's, served then).
    fn ipc_step(&mut self, n: u64, a: &[u64; 6]) {
        let mut handle = a[0];
        let mut info = a[1];
        let mut words = [a[2], a[3], a[4], a[5], 0, 0, 0, 0];
        for w in &mut words[4..] {
            *w = self.rng.next_u64();
        }
        if info & (1 << 40) != 0 && self.rng.chance(1, 2) {
            // A descriptor that may fit a region (most endpoints have none: ERANGE).
            words[0] = self.rng.below(1 << 17) & !7;
            words[1] = self.rng.pick(&[0, 8, 1024, 65536, 1 << 20]);
        }
        if info & exo_rt::abi::ipc::INFO_HANDLE != 0 && self.rng.chance(3, 4) {
            // A handle that may be the worker's, with rights it may or may not have (the
            // rest of the time word 7 stays random: a huge handle or rights beyond bit 33).
            words[7] = exo_fuzz::ipc_handle_word(&mut self.rng);
        }
        let timeout = 1 + self.rng.below(exo_fuzz::IPC_TIMEOUT_MAX);
        // SAFETY: the IPC calls read and write registers only (no pointer arguments).
        let ret =
            unsafe { exo_rt::raw::ipc(n as usize, &mut handle, &mut info, &mut words, timeout) }
                as i64;
        self.check(n, a, ret);
    }

    fn check(&mut self, n: u64, a: &[u64; 6], ret: i64) {
        let index = self.index;
        self.index += 1;
        STATS.calls.fetch_add(1, Relaxed);
        match classify(n, ret) {
            Verdict::Ok => {
                STATS.ok.fetch_add(1, Relaxed);
                let wrong_pid = n as usize == nr::GETPID && ret as u64 != self.pid;
                let wrong_wait =
                    n as usize == nr::WAIT && self.pending.is_none_or(|(pid, _)| pid != a[0]);
                if bad_success(n, a, ret) || wrong_pid || wrong_wait {
                    finding(F_BADRET, "badret", index, n, a, ret);
                }
            }
            Verdict::Error(e) => {
                STATS.errs[e.code() as usize & 127].fetch_add(1, Relaxed);
            }
            Verdict::Undocumented(e) => {
                STATS.errs[e.code() as usize & 127].fetch_add(1, Relaxed);
                finding(F_UNDOCUMENTED, "undocumented", index, n, a, ret);
            }
            Verdict::Untyped => finding(F_UNTYPED, "untyped", index, n, a, ret),
        }
    }

    fn after_success(&mut self, n: u64, a: &[u64; 6], ret: i64) {
        match n as usize {
            nr::MMAP if a[3] & 0x10 == 0 => {
                if self.nmaps == self.maps.len() {
                    let (va, len) = self.maps[0];
                    // SAFETY: a map this stream made and nothing reads.
                    let _ = unsafe { exo_rt::munmap(va as usize, len as usize) };
                    self.maps.copy_within(1.., 0);
                    self.nmaps -= 1;
                }
                self.maps[self.nmaps] = (ret as u64, a[1]);
                self.nmaps += 1;
                if a[1] > BIG_MAP {
                    self.unmap_all();
                }
            }
            nr::SCHED_SETAFFINITY => self.repin(),
            nr::SPAWN => {
                STATS.spawns.fetch_add(1, Relaxed);
                self.child(ret as u64, Expect::Any);
            }
            nr::WAIT => {
                if self.pending.is_some_and(|(pid, _)| pid == a[0]) {
                    let (pid, expect) = self.pending.take().unwrap_or((0, Expect::Any));
                    self.judge(pid, expect, ExitStatus::from_raw(ret as usize));
                }
            }
            nr::THREAD_CREATE => {
                // The contract refuses every thread the stream asks for (outside the deadly
                // phase): the only ones that can run exit at once.
                if !self.deadly {
                    let _ = exo_rt::thread_join(ret as usize);
                }
            }
            _ => {}
        }
    }

    fn repin(&self) {
        if self.thread {
            let _ = exo_rt::sched_setaffinity(0, &[u64::MAX; exo_rt::CPU_SET_BYTES / 8]);
        } else {
            let _ = exo_rt::pin_to_cpu(self.cpu as usize);
        }
    }

    fn unmap_all(&mut self) {
        for &(va, len) in &self.maps[..self.nmaps] {
            // SAFETY: maps this stream made and nothing reads.
            let _ = unsafe { exo_rt::munmap(va as usize, len as usize) };
        }
        self.nmaps = 0;
    }

    /// A new child: waits for the one pending before, keeps this one pending.
    fn child(&mut self, pid: u64, expect: Expect) {
        self.reap_pending();
        self.pending = Some((pid, expect));
        if self.thread || self.rng.chance(1, 2) {
            self.reap_pending();
        }
    }

    fn reap_pending(&mut self) {
        if let Some((pid, expect)) = self.pending.take() {
            let s = exo_rt::wait(pid as usize);
            self.judge(pid, expect, s.ok());
        }
    }

    fn judge(&mut self, pid: u64, expect: Expect, s: Option<ExitStatus>) {
        let good = match (expect, s) {
            (_, None) => false,
            (Expect::Any, Some(_)) => true,
            (Expect::Exit(c), Some(s)) => s == ExitStatus::Exited(c),
            (Expect::Case(k), Some(s)) => {
                cases::fuzz_accepts(k, s).unwrap_or(s == ExitStatus::Exited(2))
            }
        };
        if matches!(s, Some(ExitStatus::Killed(_))) {
            STATS.kills.fetch_add(1, Relaxed);
        }
        if !good {
            STATS.flags.fetch_or(F_CHILD, Relaxed);
            println!(
                "FUZZ,child,arg={:#x},pid={pid},expected {expect:?},got {s:?}",
                STATS.arg.load(Relaxed)
            );
        }
    }

    /// A spawn whose outcome is known: a program of the initrd, or a bogus path.
    fn spawn_menu(&mut self) {
        const LONG: [u8; 300] = {
            let mut p = [b'a'; 300];
            p[0] = b'/';
            p
        };
        let k = self.rng.below(14);
        let (path, len, arg, want): (&[u8], usize, u64, Result<Expect, Errno>) = match k {
            0 | 1 => (b"/empty", 6, self.rng.next_u64(), Ok(Expect::Exit(0))),
            2 => (b"./empty", 7, 0, Ok(Expect::Exit(0))),
            3 => (b"/hello", 6, 0, Ok(Expect::Exit(0))),
            4..=7 => {
                // /faults: a case that dies (not 10, which prints a page; rarely 10..12).
                let case = match self.rng.below(16) {
                    15 => self.rng.pick(&[10, 11, 12, 13, 99, u64::MAX]),
                    c => c % 10,
                };
                (b"/faults", 7, case, Ok(Expect::Case(case)))
            }
            8 => (b"/no-such-program", 16, 0, Err(Errno::ENOENT)),
            9 => (b"/empty", 0, 0, Err(Errno::EINVAL)),
            10 => (
                &LONG,
                257 + self.rng.below(44) as usize,
                0,
                Err(Errno::ENAMETOOLONG),
            ),
            11 => (b"/\xff\xfe", 3, 0, Err(Errno::EINVAL)),
            12 => (b"/emptyx", 6, 0, Ok(Expect::Exit(0))),
            _ => (b"/", 1, 0, Err(Errno::ENOENT)),
        };
        let a = [path.as_ptr() as u64, len as u64, arg, 0, 0, 0];
        // SAFETY: the kernel reads the path.
        let ret =
            unsafe { exo_rt::raw::syscall3(nr::SPAWN, path.as_ptr() as usize, len, arg as usize) }
                as i64;
        self.check(nr::SPAWN as u64, &a, ret);
        // Out of processes or memory is allowed at any time (the tables are shared).
        let busy = matches!(
            Errno::from_ret(ret as isize),
            Err(Errno::EAGAIN | Errno::ENOMEM)
        );
        match (want, Errno::from_ret(ret as isize)) {
            (Ok(expect), Ok(pid)) => {
                STATS.spawns.fetch_add(1, Relaxed);
                self.child(pid as u64, expect);
            }
            (Err(w), Err(e)) if w == e => {}
            _ if busy => {}
            (_, got) => {
                STATS.flags.fetch_or(F_CHILD, Relaxed);
                println!(
                    "FUZZ,child,arg={:#x},spawn {:?} len {len}: expected {want:?}, got {got:?}",
                    STATS.arg.load(Relaxed),
                    core::str::from_utf8(&path[..len.min(16)]).unwrap_or("(bytes)")
                );
                if let Ok(pid) = got {
                    self.child(pid as u64, Expect::Any);
                }
            }
        }
    }

    /// A call to the worker's echo server with a random message ([`echo::plan`]), checked:
    /// the result against the contract ([`echo::allowed`]), a reply against the message
    /// ([`echo::check_reply`]). Outside the deadly phase most carry no timeout (the server
    /// is alive and alone to receive: every message the kernel takes is answered); in it
    /// every one has a timeout and only the result's type is checked (the threads may
    /// receive the call, close the handle, or end the server).
    fn echo_step(&mut self) {
        let e = ECHO.handle.load(Relaxed);
        let own = ECHO.own();
        let timed = self.deadly || !ECHO.up.load(Relaxed);
        let max = if self.deadly {
            DEADLY_ECHO_TIMEOUT
        } else {
            echo::TIMEOUT_MAX
        };
        let p = echo::plan(&mut self.rng, own.as_slice(), ECHO.region(), timed, max);
        let n = if p.send { nr::IPC_SEND } else { nr::IPC_CALL };
        let (ret, info, rdi, words) = ipc_raw(n, u64::from(e), p.info, p.words, p.timeout);
        let index = self.index;
        let a = [
            u64::from(e),
            p.info,
            p.words[0],
            p.words[1],
            p.words[2],
            p.words[3],
        ];
        self.check(n as u64, &a, ret);
        STATS.echo.fetch_add(1, Relaxed);
        if self.deadly {
            return;
        }
        let r = Errno::from_ret(ret as isize).map(|_| ());
        if !echo::allowed(&p, r) {
            echo_finding(index, "result", &p, ret, info, &words);
        }
        if ret != 0 {
            return;
        }
        if p.send {
            STATS.echo_sends.fetch_add(1, Relaxed);
            return;
        }
        match echo::check_reply(&p, ECHO.badge.load(Relaxed), info, rdi, &words) {
            Ok(back) => {
                STATS.echo_ok.fetch_add(1, Relaxed);
                if p.timeout == 0 {
                    STATS.echo_t0.fetch_add(1, Relaxed);
                }
                if p.zc == Zc::Fits {
                    STATS.echo_zc.fetch_add(1, Relaxed);
                }
                if let Some(h) = back {
                    STATS.echo_handles.fetch_add(1, Relaxed);
                    if !handle_back_ok(h, words[6], p.passed) {
                        echo_finding(index, "handle back", &p, ret, info, &words);
                    }
                }
            }
            Err(what) => echo_finding(index, what, &p, ret, info, &words),
        }
    }

    /// An echo child (`/fuzz` in mode [`Mode::EchoChild`]): it inherits the worker's
    /// handles and calls the server through the send-only handle the worker got back from
    /// it (or the endpoint's own); the worker waits for it at once (nothing else receives
    /// on the endpoint meanwhile, so the child's calls may carry no timeout) and it must
    /// exit 0.
    fn echo_spawn(&mut self) {
        self.reap_pending();
        let (handle, rights) = ECHO.child_handle();
        let index = ECHO.children.fetch_add(1, Relaxed);
        let c = exo_fuzz::EchoChild {
            handle,
            rights,
            calls: 1 + self.rng.below(16) as u32,
            unpin: self.rng.chance(1, 2),
            region_pages: (ECHO.region().unwrap_or(0) / PAGE) as u32,
            index: index & 0x3ff,
            seed: ECHO.seed.load(Relaxed),
        };
        let arg = Mode::EchoChild(c).encode();
        const PATH: &str = "/fuzz";
        let a = [PATH.as_ptr() as u64, PATH.len() as u64, arg, 0, 0, 0];
        // SAFETY: the kernel reads the path.
        let ret = unsafe {
            exo_rt::raw::syscall3(nr::SPAWN, PATH.as_ptr() as usize, PATH.len(), arg as usize)
        } as i64;
        self.check(nr::SPAWN as u64, &a, ret);
        match Errno::from_ret(ret as isize) {
            Ok(pid) => {
                STATS.spawns.fetch_add(1, Relaxed);
                let s = exo_rt::wait(pid);
                if s == Ok(ExitStatus::Exited(0)) {
                    STATS.echo_children.fetch_add(1, Relaxed);
                }
                self.judge(pid as u64, Expect::Exit(0), s.ok());
            }
            // Out of processes or memory is allowed at any time (the tables are shared).
            Err(Errno::EAGAIN | Errno::ENOMEM) => {}
            Err(e) => {
                STATS.flags.fetch_or(F_CHILD, Relaxed);
                println!(
                    "FUZZ,child,arg={:#x},spawn /fuzz {arg:#x} (echo child): {e}",
                    STATS.arg.load(Relaxed)
                );
            }
        }
    }

    /// Ends the stream: its maps back, its child waited for.
    fn finish(&mut self) {
        self.unmap_all();
        self.reap_pending();
    }
}

/// `true` when the contract says reading `[p, p + len)` fails at its first byte: outside
/// the user half, below `USER_MIN`, or in one of the arena's holes (nothing maps them: they
/// are in the protected image).
fn surely_faults(p: u64, len: u64) -> bool {
    let in_hole = |h: usize| (page(h)..page(h) + PAGE).contains(&p);
    p.checked_add(len).is_none_or(|e| e > USER_END)
        || p < USER_MIN
        || in_hole(HOLE1)
        || in_hole(HOLE2)
}

/// The 4-byte word at `p` if `p` is in the arena's always-readable pages.
fn read_u32_if_known(p: u64) -> Option<u32> {
    let readable = (arena()..page(EDGE) + PAGE - 3).contains(&p) && p.is_multiple_of(4);
    // SAFETY: the scratch, read-only and edge pages are mapped and readable for the
    // worker's whole life; a racy read of bytes the kernel writes is just a value.
    readable.then(|| unsafe { (p as *const u32).read_volatile() })
}

/// Whether `spawn(p, len)` could name `/fuzz`, `/init` or `/ubench` (programs that run
/// for long): only bytes in the worker's image can spell a name; they are read to check.
fn names_a_long_runner(p: u64, len: u64) -> bool {
    if !(IMAGE.0..IMAGE.1).contains(&p) || len == 0 || len > 16 {
        return false;
    }
    let readable = |q: u64| {
        (arena()..page(HOLE1)).contains(&q)
            || (page(NL)..page(HOLE2)).contains(&q)
            || (IMAGE.0..arena()).contains(&q)
    };
    if !readable(p) || !readable(p + len - 1) {
        return false;
    }
    let mut buf = [0u8; 16];
    for (k, b) in buf.iter_mut().enumerate().take(len as usize) {
        // SAFETY: inside the image's readable part (checked above).
        *b = unsafe { ((p + k as u64) as *const u8).read_volatile() };
    }
    let mut name = &buf[..len as usize];
    while let Some(rest) = name.strip_prefix(b"/").or_else(|| name.strip_prefix(b"./")) {
        name = rest;
    }
    [&b"fuzz"[..], b"init", b"ubench"].contains(&name)
}

// An entry point that ends its thread at once, touching no stack (for thread_create with
// stacks the contract refuses: if the kernel took one, the thread still ends cleanly).
core::arch::global_asm!(
    ".pushsection .text.exo_fuzz_exit_thread, \"ax\", @progbits",
    ".globl exo_fuzz_exit_thread",
    "exo_fuzz_exit_thread:",
    "    mov eax, 515",
    "    mov edi, 0xdead",
    "    syscall",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    fn exo_fuzz_exit_thread();
}

fn exit_thread_entry() -> u64 {
    exo_fuzz_exit_thread as *const () as u64
}

// ---------------------------------------------------------------------------------------
// The echo server: a thread of the worker that serves an endpoint of its own.

/// The worker's echo endpoint and server (see [`echo`]).
struct Echo {
    /// The endpoint's handle (send and receive rights); `u32::MAX`: none (the worker runs
    /// without a server).
    handle: AtomicU32,
    /// A send-only handle to it, which came back from the server (`u32::MAX`: none).
    send: AtomicU32,
    /// The server thread's id (0: none).
    tid: AtomicU64,
    /// The endpoint's badge.
    badge: AtomicU64,
    /// The size of its shared region when the worker made one (0: unknown).
    region: AtomicU64,
    /// The worker's seed (the children's streams derive from it).
    seed: AtomicU32,
    /// Echo children started.
    children: AtomicU32,
    /// The server is serving (it clears this before it ends on its own).
    up: AtomicBool,
}

static ECHO: Echo = Echo {
    handle: AtomicU32::new(u32::MAX),
    send: AtomicU32::new(u32::MAX),
    tid: AtomicU64::new(0),
    badge: AtomicU64::new(0),
    region: AtomicU64::new(0),
    seed: AtomicU32::new(0),
    children: AtomicU32::new(0),
    up: AtomicBool::new(false),
};

/// Handles the caller tracks, with their rights (at most two).
struct Own([(u32, u64); 2], usize);

impl Own {
    fn as_slice(&self) -> &[(u32, u64)] {
        &self.0[..self.1]
    }
}

impl Echo {
    fn on(&self) -> bool {
        self.handle.load(Relaxed) != u32::MAX
    }

    fn own(&self) -> Own {
        let mut o = Own([(0, 0); 2], 0);
        for (h, rights) in [
            (self.handle.load(Relaxed), 3),
            (self.send.load(Relaxed), exo_rt::abi::ipc::RIGHT_SEND),
        ] {
            if h != u32::MAX {
                o.0[o.1] = (h, rights);
                o.1 += 1;
            }
        }
        o
    }

    fn region(&self) -> Option<u64> {
        Some(self.region.load(Relaxed)).filter(|&r| r != 0)
    }

    /// The handle an echo child calls through: the send-only one if the worker has it.
    fn child_handle(&self) -> (u32, u64) {
        match self.send.load(Relaxed) {
            u32::MAX => (self.handle.load(Relaxed), 3),
            s => (s, exo_rt::abi::ipc::RIGHT_SEND),
        }
    }

    /// Whether `tid` (as `thread_join` might read it) names the server.
    fn is_server(&self, tid: u64) -> bool {
        let t = self.tid.load(Relaxed);
        t != 0 && (tid == t || tid as u32 == t as u32)
    }

    /// Whether `h` is one of the echo endpoint's handles the worker keeps.
    fn is_own_handle(&self, h: u64) -> bool {
        [self.handle.load(Relaxed), self.send.load(Relaxed)]
            .iter()
            .any(|&o| o != u32::MAX && h == u64::from(o))
    }
}

/// One IPC call with the message in registers: `rax` and the registers after it (`rsi`,
/// `rdi`, the words).
fn ipc_raw(
    n: usize,
    handle: u64,
    info: u64,
    words: [u64; 8],
    timeout: u64,
) -> (i64, u64, u64, [u64; 8]) {
    let (mut h, mut i, mut w) = (handle, info, words);
    // SAFETY: the IPC calls read and write registers only (no pointer arguments).
    let ret = unsafe { exo_rt::raw::ipc(n, &mut h, &mut i, &mut w, timeout) } as i64;
    (ret, i, h, w)
}

/// A wrong echo result or reply: a finding (`FUZZ,badret`), with the message.
fn echo_finding(index: u64, what: &str, p: &Plan, ret: i64, info: u64, words: &[u64; 8]) {
    STATS.flags.fetch_or(F_BADRET, Relaxed);
    if STATS.printed.fetch_add(1, Relaxed) < 32 {
        println!(
            "FUZZ,badret,arg={:#x},call={index},echo {what}: {} info={:#x} timeout={} zc={:?} passed={:?} words={:x?},ret={ret},got info={info:#x} words={words:x?}",
            STATS.arg.load(Relaxed),
            if p.send { "send" } else { "call" },
            p.info,
            p.timeout,
            p.zc,
            p.passed,
            p.words,
        );
    }
}

/// A handle that came back in a reply: its rights as word 6 said, then closed. One of the
/// caller's own (`Passed::Good`) names a live endpoint; one of the stream's may name a deaf
/// one (its receive handle closed: `EPIPE`).
fn handle_back_ok(h: u32, rights: u64, passed: Passed) -> bool {
    let info = exo_rt::handle_info(h);
    let closed = exo_rt::handle_close(h);
    let deaf_ok = !matches!(passed, Passed::Good(_)) && info == Err(Errno::EPIPE);
    (info == Ok(rights) || deaf_ok) && closed.is_ok()
}

/// Calls the server with control message `c` (no timeout: it is alive and alone to
/// receive); whether it answered as [`echo::reply`] says.
fn echo_control(c: Control) -> bool {
    let (info, words) = echo::control_message(c);
    let p = Plan {
        send: false,
        info,
        words,
        timeout: 0,
        zc: Zc::No,
        passed: Passed::No,
    };
    let (ret, rinfo, rdi, rw) = ipc_raw(
        nr::IPC_CALL,
        u64::from(ECHO.handle.load(Relaxed)),
        info,
        words,
        0,
    );
    let ok = ret == 0 && echo::check_reply(&p, ECHO.badge.load(Relaxed), rinfo, rdi, &rw).is_ok();
    if !ok {
        echo_finding(0, "control", &p, ret, rinfo, &rw);
    }
    ok
}

#[repr(C, align(4096))]
struct ServerStack(UnsafeCell<[u8; THREAD_STACK]>);
// SAFETY: the server thread's alone (one per worker process); only raw pointers are made.
unsafe impl Sync for ServerStack {}
/// The server's stack, in the image (which the stream never unmaps outside the deadly
/// phase).
static SERVER_STACK: ServerStack = ServerStack(UnsafeCell::new([0; THREAD_STACK]));

/// The worker's endpoint, its server and the send-only handle; `false` when the worker
/// runs without (no endpoint or thread left in the system: not a finding).
fn echo_start(w: &Worker, rng: &mut Rng) -> bool {
    let badge = echo::badge(w.seed);
    let mut tries = 0;
    let e = loop {
        match exo_rt::endpoint_create(3, badge) {
            Ok(e) => break e,
            Err(Errno::EAGAIN) if tries < 100 => {
                tries += 1;
                exo_rt::sched_yield();
            }
            Err(e) => {
                println!(
                    "FUZZ,echo-off,arg={:#x},endpoint_create: {e}",
                    STATS.arg.load(Relaxed)
                );
                return false;
            }
        }
    };
    ECHO.badge.store(badge, Relaxed);
    ECHO.seed.store(w.seed, Relaxed);
    if rng.chance(1, 2) {
        // A shared region (1 to 8 pages) whose size the callers know: their descriptors
        // must fit it exactly.
        let size = (1 + rng.below(8)) * PAGE;
        if exo_rt::shm_map(e, size).is_ok() {
            ECHO.region.store(size, Relaxed);
        }
    }
    let seed = rng.next_u64();
    let top = (SERVER_STACK.0.get() as u64 + THREAD_STACK as u64 - 16) & !15;
    // SAFETY: the top of the server's stack, which nothing uses yet.
    unsafe {
        (top as *mut exo_rt::thread::Start).write(exo_rt::thread::Start {
            f: echo_server,
            arg: seed,
        })
    };
    ECHO.handle.store(e, Relaxed);
    ECHO.up.store(true, Relaxed);
    // SAFETY: the runtime's entry reads the Start above rsp and never returns; the stack is
    // the server's alone.
    match unsafe { exo_rt::thread_create(exo_rt::thread::entry(), top as usize, top) } {
        Ok(tid) => ECHO.tid.store(tid as u64, Relaxed),
        Err(err) => {
            ECHO.handle.store(u32::MAX, Relaxed);
            ECHO.up.store(false, Relaxed);
            let _ = exo_rt::handle_close(e);
            println!(
                "FUZZ,echo-off,arg={:#x},thread_create: {err}",
                STATS.arg.load(Relaxed)
            );
            return false;
        }
    }
    // The send-only handle: passed to the server, which passes it back.
    let mut words = [0u64; 8];
    words[7] = exo_rt::abi::ipc::handle_word(e, exo_rt::abi::ipc::RIGHT_SEND);
    let p = Plan {
        send: false,
        info: exo_rt::abi::ipc::info(7, 64) | exo_rt::abi::ipc::INFO_HANDLE,
        words,
        timeout: 0,
        zc: Zc::No,
        passed: Passed::Good(exo_rt::abi::ipc::RIGHT_SEND),
    };
    let (ret, info, rdi, rw) = ipc_raw(nr::IPC_CALL, u64::from(e), p.info, p.words, 0);
    match echo::check_reply(&p, badge, info, rdi, &rw) {
        Ok(Some(s)) if ret == 0 && exo_rt::handle_info(s) == Ok(exo_rt::abi::ipc::RIGHT_SEND) => {
            ECHO.send.store(s, Relaxed)
        }
        // Its table full (inherited handles): the children use the endpoint's own handle.
        Ok(None) if ret == 0 && info & exo_rt::abi::ipc::INFO_HANDLE_LOST != 0 => {}
        Ok(_) => echo_finding(0, "send-only handle", &p, ret, info, &rw),
        Err(what) => echo_finding(0, what, &p, ret, info, &rw),
    }
    true
}

/// The worker's end of the echo: QUIT (answered, then the server returns), the server
/// joined, the handles closed. Without an answer the server is left to the process's end
/// (no join that could wait for ever).
fn echo_stop() {
    if !ECHO.on() {
        return;
    }
    if !ECHO.up.load(Relaxed) {
        finding_line("echo server ended early");
        return;
    }
    if !echo_control(Control::Quit) {
        return;
    }
    match exo_rt::thread_join(ECHO.tid.load(Relaxed) as usize) {
        Ok(0) => {}
        r => finding_line(&alloc_free_fmt("echo server join", r)),
    }
    ECHO.tid.store(0, Relaxed);
    for h in [ECHO.send.load(Relaxed), ECHO.handle.load(Relaxed)] {
        if h != u32::MAX && exo_rt::handle_close(h).is_err() {
            finding_line("echo handle close");
        }
    }
    ECHO.send.store(u32::MAX, Relaxed);
    ECHO.handle.store(u32::MAX, Relaxed);
}

/// The echo server (a thread of the worker, see [`echo`]): receives on the endpoint and
/// answers every message with [`echo::reply`], through `ipc_reply_recv` (3 in 4 of the
/// messages without a handle: the fastpath when the caller is blocked on this CPU) or
/// `ipc_reply` then `ipc_recv` (handles, control messages, the rest), sometimes with
/// `INFO_SLOW`. A handle a message brought goes back in the reply and is closed once it
/// went. A reply the kernel refuses (the handle closed meanwhile by a thread of the
/// stream) is sent again without it, so a caller is always answered. Outside the deadly
/// mode it receives with no timeout and a failed receive is a finding (nothing closes the
/// endpoint's handle).
fn echo_server(seed: u64) -> i32 {
    use exo_rt::abi::ipc::{INFO_HANDLE, INFO_SLOW};
    let e = u64::from(ECHO.handle.load(Relaxed));
    let mut rng = Rng::new(seed);
    let (mut deadly, mut idle, mut turns, mut errors) = (false, 0u32, 0u64, 0u32);
    let mut serving: Option<(u64, u64, [u64; 8])> = None;
    loop {
        let (ret, info, badge, words) = match serving.take() {
            None => ipc_raw(
                nr::IPC_RECV,
                e,
                0,
                [0; 8],
                if deadly { SERVER_IDLE_NS } else { 0 },
            ),
            Some((info, badge, words)) => {
                let ctl = echo::control(info, &words);
                if ctl == Some(Control::Deadly) {
                    deadly = true;
                }
                let timeout = if deadly { SERVER_IDLE_NS } else { 0 };
                let (rinfo, rwords) = echo::reply(info, badge, &words);
                let slow = if rng.chance(1, 4) { INFO_SLOW } else { 0 };
                if info & INFO_HANDLE == 0 && ctl.is_none() && rng.chance(3, 4) {
                    let r = ipc_raw(nr::IPC_REPLY_RECV, e, rinfo | slow, rwords, timeout);
                    if r.0 < 0 {
                        // The reply refused (then it is sent now) or the receive failed
                        // (then the reply went: ESRCH).
                        let _ = ipc_raw(nr::IPC_REPLY, 0, rinfo, rwords, 0);
                    }
                    r
                } else {
                    let r = ipc_raw(nr::IPC_REPLY, 0, rinfo | slow, rwords, 0);
                    if r.0 < 0 && rinfo & INFO_HANDLE != 0 {
                        let _ = ipc_raw(nr::IPC_REPLY, 0, rinfo & !INFO_HANDLE, rwords, 0);
                    }
                    if info & INFO_HANDLE != 0 {
                        let _ = exo_rt::handle_close(words[7] as u32);
                    }
                    if ctl == Some(Control::Quit) {
                        ECHO.up.store(false, Relaxed);
                        return 0;
                    }
                    ipc_raw(nr::IPC_RECV, e, 0, [0; 8], timeout)
                }
            }
        };
        if deadly {
            turns += 1;
        }
        if ret == 0 {
            STATS.echo_served.fetch_add(1, Relaxed);
            serving = Some((info, badge, words));
            (idle, errors) = (0, 0);
        } else if deadly {
            idle += 1;
        } else {
            errors += 1;
            let e = Errno::from_ret(ret as isize).err().unwrap_or(Errno::EINVAL);
            finding_line(&alloc_free_fmt("echo server receive", Err::<(), _>(e)));
        }
        if idle >= SERVER_IDLE_ROUNDS || turns >= SERVER_DEADLY_TURNS || errors >= 16 {
            ECHO.up.store(false, Relaxed);
            return 0;
        }
    }
}

/// A finding of the echo that is no single call's: `FUZZ,badret,arg=...,<what>`.
fn finding_line(what: &str) {
    STATS.flags.fetch_or(F_BADRET, Relaxed);
    if STATS.printed.fetch_add(1, Relaxed) < 32 {
        println!("FUZZ,badret,arg={:#x},{what}", STATS.arg.load(Relaxed));
    }
}

/// `what: r` in a fixed buffer (no allocator here).
fn alloc_free_fmt<T: core::fmt::Debug>(what: &str, r: Result<T, Errno>) -> Line {
    use core::fmt::Write;
    let mut l = Line([0; 96], 0);
    let _ = write!(l, "{what}: {r:?}");
    l
}

/// A short line built without an allocator.
struct Line([u8; 96], usize);

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.0.len() - self.1);
        self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
        self.1 += n;
        Ok(())
    }
}

impl core::ops::Deref for Line {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.0[..self.1]).unwrap_or("?")
    }
}

/// An echo child (`Mode::EchoChild`): `calls` random calls to the worker's server through
/// the inherited `handle` (no timeout for 3 in 4: the worker waits for this child, so the
/// server is alive and alone to receive), each checked as the worker checks its own,
/// passing its handle or an endpoint of its own at times (the server, in the worker's
/// process, gets a handle from this one and passes it back). Exits 0, or `64 | flags`.
fn echo_child(c: exo_fuzz::EchoChild, arg: u64) -> i32 {
    STATS.arg.store(arg, Relaxed);
    if c.unpin {
        let _ = exo_rt::sched_setaffinity(0, &[u64::MAX; exo_rt::CPU_SET_BYTES / 8]);
    }
    let badge = echo::badge(c.seed);
    let mut rng = Rng::new(echo::child_seed(c.seed, c.index));
    let mine = exo_rt::endpoint_create(3, rng.next_u64()).ok();
    let mut own = Own([(c.handle, c.rights), (0, 0)], 1);
    if let Some(m) = mine {
        own.0[1] = (m, 3);
        own.1 = 2;
    }
    let region = Some(u64::from(c.region_pages) * PAGE).filter(|&r| r != 0);
    for index in 0..u64::from(c.calls) {
        let p = echo::plan(&mut rng, own.as_slice(), region, false, echo::TIMEOUT_MAX);
        let n = if p.send { nr::IPC_SEND } else { nr::IPC_CALL };
        let (ret, info, rdi, words) = ipc_raw(n, u64::from(c.handle), p.info, p.words, p.timeout);
        let a = [
            u64::from(c.handle),
            p.info,
            p.words[0],
            p.words[1],
            p.words[2],
            p.words[3],
        ];
        match classify(n as u64, ret) {
            Verdict::Untyped => finding(F_UNTYPED, "untyped", index, n as u64, &a, ret),
            Verdict::Undocumented(_) => {
                finding(F_UNDOCUMENTED, "undocumented", index, n as u64, &a, ret)
            }
            _ => {}
        }
        if !echo::allowed(&p, Errno::from_ret(ret as isize).map(|_| ())) {
            echo_finding(index, "result (child)", &p, ret, info, &words);
        }
        if ret != 0 || p.send {
            continue;
        }
        match echo::check_reply(&p, badge, info, rdi, &words) {
            Ok(Some(h)) if !handle_back_ok(h, words[6], p.passed) => {
                echo_finding(index, "handle back (child)", &p, ret, info, &words)
            }
            Ok(_) => {}
            Err(what) => echo_finding(index, what, &p, ret, info, &words),
        }
    }
    if let Some(m) = mine
        && exo_rt::handle_close(m).is_err()
    {
        finding_line("echo child: close of its endpoint");
    }
    match STATS.flags.load(Relaxed) {
        0 => 0,
        f => 64 | f as i32,
    }
}

// ---------------------------------------------------------------------------------------
// The worker.

/// What a fuzz thread runs (one per stack).
static THREAD_PARAMS: [AtomicU64; THREADS * 3] = [const { AtomicU64::new(0) }; THREADS * 3];

fn fuzz_thread(k: u64) -> i32 {
    let k = k as usize;
    let seed = THREAD_PARAMS[k * 3].load(Relaxed);
    let calls = THREAD_PARAMS[k * 3 + 1].load(Relaxed);
    let flags = THREAD_PARAMS[k * 3 + 2].load(Relaxed);
    let mut cx = Ctx::new(seed, 0, true, flags & 1 != 0, flags & 2 != 0);
    for _ in 0..calls {
        cx.step();
    }
    cx.finish();
    0
}

/// Starts fuzz thread `k` on its static stack.
fn start_thread(
    k: usize,
    seed: u64,
    calls: u64,
    deadly: bool,
    span_cap: bool,
) -> Result<usize, Errno> {
    THREAD_PARAMS[k * 3].store(seed, Relaxed);
    THREAD_PARAMS[k * 3 + 1].store(calls, Relaxed);
    THREAD_PARAMS[k * 3 + 2].store(u64::from(deadly) | u64::from(span_cap) << 1, Relaxed);
    let base = STACKS.0.get() as u64 + (k * THREAD_STACK) as u64;
    let start = (base + THREAD_STACK as u64 - 16) & !15;
    // SAFETY: the top of stack `k`, which no running thread uses (joined before reuse).
    unsafe {
        (start as *mut exo_rt::thread::Start).write(exo_rt::thread::Start {
            f: fuzz_thread,
            arg: k as u64,
        })
    };
    // SAFETY: the runtime's entry reads the Start above rsp and never returns; the stack is
    // the thread's alone until it is joined.
    unsafe { exo_rt::thread_create(exo_rt::thread::entry(), start as usize, start) }
}

fn simple_thread(x: u64) -> i32 {
    let _ = exo_rt::getcpu();
    exo_rt::sched_yield();
    (x as i32) ^ exo_rt::getpid() as i32
}

/// The thread round: `exo_rt::thread::spawn` threads that do little, then fuzz threads on
/// the static stacks, all joined. Returns the calls the fuzz threads made.
fn thread_round(cx: &mut Ctx, per_thread: u64, span_cap: bool) -> u64 {
    let x = cx.rng.next_u64() & 0xffff;
    match exo_rt::thread::spawn(simple_thread, x) {
        Ok(t) => {
            STATS.threads.fetch_add(1, Relaxed);
            let want = (x as i32) ^ exo_rt::getpid() as i32;
            match t.join() {
                Ok(v) if v == want => {}
                r => {
                    STATS.flags.fetch_or(F_BADRET, Relaxed);
                    println!("FUZZ,badret,thread join: {r:?}, want Ok({want})");
                }
            }
        }
        Err(Errno::ENOSYS) => {
            // Threads exist: a kernel that answers ENOSYS lost them (a finding).
            STATS.threads_enosys.fetch_add(1, Relaxed);
            STATS.flags.fetch_or(F_BADRET, Relaxed);
            println!("FUZZ,badret,thread_create: ENOSYS");
            return 0;
        }
        Err(Errno::EAGAIN | Errno::ENOMEM) => return 0,
        Err(Errno::EEXIST) => {
            // A map without MAP_FIXED must find free room (a finding of this fuzzer, fixed:
            // the kernel's cursor did not skip a MAP_FIXED mapping above it).
            STATS.known.fetch_add(1, Relaxed);
            STATS.flags.fetch_or(F_BADRET, Relaxed);
            println!(
                "FUZZ,badret,arg={:#x},call={},mmap(NULL) for a thread stack: EEXIST",
                STATS.arg.load(Relaxed),
                cx.index
            );
            return 0;
        }
        Err(e) => {
            STATS.flags.fetch_or(F_BADRET, Relaxed);
            println!("FUZZ,badret,thread spawn: {e}");
            return 0;
        }
    }
    let n = 1 + cx.rng.below(THREADS as u64) as usize;
    let mut tids = [0usize; THREADS];
    let mut started = 0;
    for (k, tid) in tids.iter_mut().enumerate().take(n) {
        match start_thread(k, cx.rng.next_u64(), per_thread, false, span_cap) {
            Ok(t) => {
                *tid = t;
                started += 1;
            }
            Err(_) => break,
        }
    }
    STATS.threads.fetch_add(started as u64, Relaxed);
    for &t in &tids[..started] {
        match exo_rt::thread_join(t) {
            Ok(0) => {}
            r => {
                STATS.flags.fetch_or(F_BADRET, Relaxed);
                println!("FUZZ,badret,fuzz thread {t} join: {r:?}");
            }
        }
    }
    started as u64 * per_thread
}

fn setup() -> Result<(), Errno> {
    let mut r = Rng::new(0x5eed);
    // SAFETY: the arena's pages, written before any call may use them.
    unsafe {
        let base = arena() as *mut u8;
        for k in 0..SCRATCH_PAGES * PAGE as usize {
            base.add(k).write(r.next_u64() as u8);
        }
        let ts = page(RO) as *mut [u64; 2];
        for (k, &(s, ns)) in TIMESPECS.iter().enumerate() {
            ts.add(k).write([s, ns]);
        }
        (page(NL) as *mut u8).write_bytes(b'\n', PAGE as usize);
        exo_rt::mprotect(page(RO) as usize, PAGE as usize, exo_rt::abi::PROT_READ)?;
        exo_rt::mprotect(page(NL) as usize, PAGE as usize, exo_rt::abi::PROT_READ)?;
        exo_rt::munmap(page(HOLE1) as usize, PAGE as usize)?;
        exo_rt::munmap(page(HOLE2) as usize, PAGE as usize)?;
    }
    let end = STACKS.0.get() as u64 + (THREADS * THREAD_STACK) as u64;
    let server_end = SERVER_STACK.0.get() as u64 + THREAD_STACK as u64;
    if arena() < IMAGE.0 || end.max(server_end) > IMAGE.1 || (SERVER_STACK.0.get() as u64) < IMAGE.0
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn worker(w: Worker, arg: u64) -> i32 {
    STATS.arg.store(arg, Relaxed);
    if let Err(e) = exo_rt::pin_to_cpu(w.cpu as usize) {
        println!("FUZZ,worker,arg={arg:#x},cannot pin to cpu {}: {e}", w.cpu);
        return 64 | F_CHILD as i32;
    }
    if let Err(e) = setup() {
        println!("FUZZ,worker,arg={arg:#x},setup failed: {e}");
        return 64 | F_CHILD as i32;
    }
    let budget = u64::from(w.units) * WORKER_CALL_UNIT;
    let ordinary = if w.kamikaze {
        kamikaze_at(w.seed, budget)
    } else {
        budget
    };
    let span_cap = !w.no_span_cap;
    let mut cx = Ctx::new(u64::from(w.seed) << 8 | 0x77, w.cpu, false, false, span_cap);
    let mut echo_rng = Rng::new(echo::child_seed(w.seed, 0x3ff) ^ 0x5e7e);
    echo_start(&w, &mut echo_rng);
    let mut made = 0u64;
    let mut next_round = 512 + cx.rng.below(1024);
    while made < ordinary {
        if made >= next_round && ordinary - made > 3 * 128 {
            made += thread_round(&mut cx, 128, span_cap);
            next_round = made + 1024 + cx.rng.below(2048);
            continue;
        }
        cx.step();
        made += 1;
        if made.is_multiple_of(1024) {
            cx.repin();
        }
    }
    cx.finish();
    let calls = STATS.echo.load(Relaxed);
    if calls >= ECHO_MIN_CALLS && STATS.echo_ok.load(Relaxed) == 0 {
        finding_line(&alloc_free_fmt(
            "echo: no round trip in calls",
            Ok::<_, Errno>(calls),
        ));
    }
    if !w.kamikaze {
        echo_stop();
    }
    report(w, arg, made);
    if w.kamikaze {
        // The server serves the deadly phase too, with timeouts (its callers may end,
        // close its handle, or leave it alone: it ends once idle).
        if STATS.flags.load(Relaxed) == 0 && ECHO.on() && ECHO.up.load(Relaxed) {
            echo_control(Control::Deadly);
        }
        let flags = STATS.flags.load(Relaxed);
        if flags != 0 {
            // Findings are not lost in the deadly phase's random end.
            return 64 | flags as i32;
        }
        kamikaze(&mut cx, span_cap);
        exo_rt::exit_group(0);
    }
    let flags = STATS.flags.load(Relaxed);
    if flags == 0 { 0 } else { 64 | flags as i32 }
}

/// The deadly phase: fuzz threads that may end the process, and the main stream with
/// every call allowed.
fn kamikaze(cx: &mut Ctx, span_cap: bool) {
    cx.deadly = true;
    for k in 0..2 {
        let _ = start_thread(k, cx.rng.next_u64(), KAMIKAZE_CALLS, true, span_cap);
    }
    for _ in 0..KAMIKAZE_CALLS {
        if cx.rng.chance(1, 64) {
            // A thread at a random entry with a random stack.
            let (e, s, x) = (cx.any(), cx.any(), cx.any());
            // SAFETY: none: the deadly phase expects to die.
            let _ = unsafe { exo_rt::thread_create(e as usize, s as usize, x) };
        }
        cx.step();
    }
}

fn report(w: Worker, arg: u64, made: u64) {
    let mut line = exo_rt::io::FdWriter::<1024>::new(exo_rt::abi::STDOUT);
    use core::fmt::Write;
    let _ = write!(
        line,
        "FUZZ,worker,cpu={},arg={arg:#x},kamikaze={},calls={made},ok={},spawns={},kills={},threads={},threads_enosys={}",
        w.cpu,
        u8::from(w.kamikaze),
        STATS.ok.load(Relaxed),
        STATS.spawns.load(Relaxed),
        STATS.kills.load(Relaxed),
        STATS.threads.load(Relaxed),
        STATS.threads_enosys.load(Relaxed),
    );
    for e in Errno::ALL {
        let n = STATS.errs[e.code() as usize & 127].load(Relaxed);
        if n > 0 {
            let _ = write!(line, ",{}={n}", e.name());
        }
    }
    let _ = write!(
        line,
        ",echo={},echo_ok={},echo_t0={},echo_handles={},echo_zc={},echo_sends={},echo_children={},echo_served={},write_partial={}",
        STATS.echo.load(Relaxed),
        STATS.echo_ok.load(Relaxed),
        STATS.echo_t0.load(Relaxed),
        STATS.echo_handles.load(Relaxed),
        STATS.echo_zc.load(Relaxed),
        STATS.echo_sends.load(Relaxed),
        STATS.echo_children.load(Relaxed),
        STATS.echo_served.load(Relaxed),
        STATS.write_partial.load(Relaxed),
    );
    line.push(b"\n");
    let _ = line.flush();
}
