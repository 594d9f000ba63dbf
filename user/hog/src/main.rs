//! `/hog <arg>`: a hostile process tree that takes slots of one kernel table until refused
//! (the per-tree limits' kernel tests, `kernel/src/user/tests_limits.rs`). `arg` is
//! `role << 56 | kind << 48 | handle << 40 | root`; `kind` names the table: 0 processes, 1
//! threads, 2 endpoints, 3 shared regions.
//!
//! * `ROOT` (started by a kernel test with the test's endpoint as handle 0): creates a report
//!   endpoint, then spawns `HELPER`s one at a time, each of which takes slots until refused
//!   and reports how many on that endpoint. A helper stopped by its own process's cap (63
//!   threads, 62 endpoints besides the two handles it inherits, 8 mapped regions) is followed
//!   by another (so without a tree limit the helpers fill the whole table), one stopped short
//!   of it ends the series. For processes, each helper exits once it reported and the root
//!   reaps it: its children, orphans now, stay, and the next helper starts beside them (their
//!   slots must stay charged to the root's tree); the series ends with a helper that could
//!   spawn nothing. Then the root takes slots itself until refused, calls handle 0 with
//!   `[helpers, first helper's count, all helpers' count, last helper's errno, own count, own
//!   errno]` (label = kind), and once answered ends with `exit_group(0)`.
//! * `HELPER`: takes slots of `kind` until refused, sends `[count, errno]` on `handle`, then
//!   (processes: exits 0) parks holding them until the root is gone.
//! * `SLEEPER`: a process a helper spawns: parks until the root is gone.
//! * `CHECK`: a bystander: spawns `/empty` and waits for it, starts and joins a thread,
//!   creates an endpoint and maps a region for it; exits with a bit per step that failed (1,
//!   2, 4, 8), 0 if all went.
//!
//! Parked processes look every 5 ms with `kill(root, 0)`, which is `EPERM` (not their
//! child) until the root has been waited for and `ESRCH` from then on (pids are never
//! reused), and then end with `exit_group(0)`, their parked threads with them. Exits 100 for
//! an unknown role, 101..=103 when the root's own setup or report failed.
#![cfg_attr(target_os = "none", no_std, no_main)]

use exo_rt::abi::ipc::{RIGHT_RECV, RIGHT_SEND};
use exo_rt::{Errno, ExitStatus, IpcMsg, Timespec, eprintln};

exo_rt::entry!(run);

/// Roles (`arg >> 56`).
pub const ROOT: u64 = 1;
pub const HELPER: u64 = 2;
pub const SLEEPER: u64 = 3;
pub const CHECK: u64 = 4;

/// Kinds (`arg >> 48 & 0xff`), as the kernel's `limits::Kind`.
const PROCS: u64 = 0;
const THREADS: u64 = 1;
const ENDPOINTS: u64 = 2;
const REGIONS: u64 = 3;

/// Helpers a root starts at most (without a tree limit, enough to fill any of the tables:
/// 64 x 62 endpoints, 64 x 63 threads, 64 x 8 regions).
const MAX_HELPERS: u64 = 64;
/// Slots one process takes at most (above every table's size: only a refusal stops it).
const MAX_TAKE: u64 = 4096;
/// How long a parked process sleeps between two looks at the root.
const PARK_NS: u64 = 5_000_000;
/// The thread stacks (small: the thread only sleeps).
const STACK: usize = 8192;

fn run(arg: u64) -> i32 {
    let kind = arg >> 48 & 0xff;
    let handle = (arg >> 40 & 0xff) as u32;
    let root = (arg & 0xff_ffff_ffff) as usize;
    match arg >> 56 {
        ROOT => root_of(kind),
        HELPER => helper(kind, handle, root),
        SLEEPER => park(root),
        CHECK => check(),
        _ => 100,
    }
}

fn errno(e: Errno) -> u64 {
    e as i32 as u64
}

/// The count at which a helper stopped because of its own process's cap, not a limit of
/// the tree (it inherits two handles: the test's and the report endpoint).
fn own_cap(kind: u64) -> u64 {
    match kind {
        THREADS => 63,
        ENDPOINTS => 62,
        REGIONS => 8,
        _ => MAX_TAKE,
    }
}

fn root_of(kind: u64) -> i32 {
    let me = exo_rt::getpid() as u64;
    let Ok(report) = exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0) else {
        return 101;
    };
    let (mut helpers, mut first, mut total, mut helper_errno) = (0u64, 0u64, 0u64, 0u64);
    while helpers < MAX_HELPERS {
        let arg = HELPER << 56 | kind << 48 | u64::from(report) << 40 | me;
        let pid = match exo_rt::spawn("/hog", arg) {
            Ok(pid) => pid,
            Err(e) => {
                helper_errno = errno(e);
                break;
            }
        };
        helpers += 1;
        let Ok(m) = exo_rt::ipc_recv(report, 0) else {
            return 102;
        };
        let n = m.words[0];
        helper_errno = m.words[1];
        if helpers == 1 {
            first = n;
        }
        total += n;
        if kind == PROCS {
            // Its children become orphans; they stay in this tree.
            let _ = exo_rt::wait(pid);
            if n == 0 {
                break;
            }
        } else if n < own_cap(kind) {
            break;
        }
    }
    let (own, own_errno) = take(kind, me);
    let words = [helpers, first, total, helper_errno, own, own_errno, 0, 0];
    if exo_rt::ipc_call(0, &IpcMsg::new(kind as u32, words), 0).is_err() {
        return 103;
    }
    exo_rt::exit_group(0)
}

fn helper(kind: u64, report: u32, root: usize) -> i32 {
    let (n, e) = take(kind, root as u64);
    let mut words = [0u64; 8];
    words[0] = n;
    words[1] = e;
    let sent = exo_rt::ipc_send(report, &IpcMsg::new(kind as u32, words), 0);
    if kind == PROCS {
        return i32::from(sent.is_err());
    }
    park(root)
}

/// Takes slots of `kind` until refused: how many, and the refusal's errno. What it took stays
/// (the threads sleep, the processes park until `root` is gone).
fn take(kind: u64, root: u64) -> (u64, u64) {
    let mut n = 0;
    while n < MAX_TAKE {
        let r = match kind {
            PROCS => exo_rt::spawn("/hog", SLEEPER << 56 | root).map(|_| ()),
            // Never joined: it sleeps until its process ends.
            THREADS => exo_rt::thread::spawn_with_stack(sleep_forever, 0, STACK).map(|_| ()),
            ENDPOINTS => exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0).map(|_| ()),
            REGIONS => exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0).and_then(|h| {
                exo_rt::shm_map(h, 4096).map(|_| ()).inspect_err(|_| {
                    let _ = exo_rt::handle_close(h);
                })
            }),
            _ => Err(Errno::EINVAL),
        };
        if let Err(e) = r {
            return (n, errno(e));
        }
        n += 1;
    }
    (n, 0)
}

fn sleep_forever(_: u64) -> i32 {
    loop {
        let _ = exo_rt::nanosleep(&Timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        });
    }
}

/// Parks until `root` has been waited for, then ends the whole process.
fn park(root: usize) -> ! {
    loop {
        let _ = exo_rt::nanosleep(&Timespec::from_nanos(PARK_NS));
        if exo_rt::kill(root, 0) == Err(Errno::ESRCH) {
            exo_rt::exit_group(0);
        }
    }
}

fn check() -> i32 {
    let mut failed = 0;
    let child = exo_rt::spawn("/empty", 0).and_then(exo_rt::wait);
    if child != Ok(ExitStatus::Exited(0)) {
        eprintln!("hog: check: spawn and wait of /empty: {child:?}");
        failed |= 1;
    }
    let thread = exo_rt::thread::spawn_with_stack(|_| 7, 0, STACK).and_then(|t| t.join());
    if thread != Ok(7) {
        eprintln!("hog: check: a thread: {thread:?}");
        failed |= 2;
    }
    match exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0) {
        Ok(h) => {
            if let Err(e) = exo_rt::shm_map(h, 4096) {
                eprintln!("hog: check: shm_map: {e}");
                failed |= 8;
            }
            let _ = exo_rt::handle_close(h);
        }
        Err(e) => {
            eprintln!("hog: check: endpoint_create: {e}");
            failed |= 4 | 8;
        }
    }
    failed
}
