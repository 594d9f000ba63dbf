//! Kernel tests of the per-tree shares of the kernel's tables (`limits`). A hostile tree
//! (`/hog`, `user/hog`, spawned by the kernel) takes slots of one table until refused:
//! first through helpers, its children (for processes, children it reaps once they filled
//! their share, leaving their children as orphans beside the next one), then itself. Its
//! first helper must be refused with `EAGAIN` at its own share (three quarters of the tree's), the tree at
//! exactly its share; a bystander the kernel spawns meanwhile must still get a process, a
//! thread, an endpoint and a region; once the tree is gone every table and account is back
//! as before, and a second run is refused at the same counts.
//!
//! The tree runs under small limits ([`TEST_TOP`], set with `limits::set_top_for_tests`,
//! divided by the same rules as the real ones): at the real share of the process table
//! (512 processes, each with its image and 256 KiB stack) one run would take minutes and
//! most of the memory under emulation. Without a tree limit the helpers go on until the
//! table itself is full (a helper refused by its own process's cap, not by the tree, is
//! followed by another), and the bystander is refused: each test fails so (checked with
//! the limits' check disabled).

use super::limits::{self, Counts, Kind, TOP, child_limit};
use super::process::{self, MAX_PROCS};
use super::shm::MAX_REGIONS;
use super::syscall::Errno;
use super::task::{self, MAX_TASKS};
use super::tests_ipc::wait_bounded;
use crate::boot::BootState;
use crate::harness::{Needs, SKIP, TestResult, check, ms, wait_for};
use crate::ipc::{self, EpRef, HandleTable, MAX_ENDPOINTS, Msg, Rights};
use crate::ktest;
use crate::sched::Builder;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use exo_arch::tsc::rdtsc;

ktest!(
    Needs::Threads,
    "user.limits_fork_bomb_stops_at_its_tree_share",
    procs
);
ktest!(
    Needs::Threads,
    "user.limits_threads_stop_at_the_tree_share",
    threads
);
ktest!(
    Needs::Threads,
    "user.limits_endpoints_stop_at_the_tree_share",
    endpoints
);
ktest!(
    Needs::Threads,
    "user.limits_regions_stop_at_the_tree_share",
    regions
);
ktest!(
    Needs::Threads,
    "user.limits_a_process_the_kernel_spawns_gets_half_of_each_table",
    top_share
);

/// `/hog`'s roles (`user/hog`).
const ROOT: u64 = 1 << 56;
const CHECK: u64 = 4 << 56;

/// The limits of the tree under test. Each is small enough for a run of a few spawns, and
/// the others large enough not to refuse first: a process takes a thread, a region an
/// endpoint, the root an endpoint for its helpers' reports.
const TEST_TOP: Counts = [8, 12, 12, 6];

const EAGAIN: u64 = Errno::Eagain as u64;

/// How long the root, the bystander and the parked processes get (a few spawns: seconds on
/// an emulated machine with 64 CPUs).
const STEP_MS: u64 = 120_000;

/// What the root reported (`user/hog`'s `ROOT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    /// Helpers it started.
    helpers: u64,
    /// Slots its first helper took before it was refused.
    first: u64,
    /// Slots all its helpers took.
    total: u64,
    /// The errno that stopped the series (the last helper's refusal, or its spawn's).
    helper_errno: u64,
    /// Slots it took itself after them, and the errno that stopped it.
    own: u64,
    own_errno: u64,
}

/// The processes, thread records, endpoints and regions in use, and the accounts (open,
/// endpoints and regions charged, miscounts).
type Census = (usize, usize, usize, usize, (usize, usize, usize, u32));

fn census() -> Census {
    (
        process::in_table(),
        task::records(),
        ipc::live_endpoints(),
        super::shm::in_use(),
        limits::census(),
    )
}

fn procs(_: &BootState) -> TestResult {
    tree_share(Kind::Procs)
}

fn threads(_: &BootState) -> TestResult {
    tree_share(Kind::Threads)
}

fn endpoints(_: &BootState) -> TestResult {
    tree_share(Kind::Endpoints)
}

fn regions(_: &BootState) -> TestResult {
    tree_share(Kind::Regions)
}

/// Two runs of a hostile tree taking slots of `kind` (see the module header), under
/// [`TEST_TOP`]; everything must be back after each.
fn tree_share(kind: Kind) -> TestResult {
    if !matches!(super::initrd::archive(), Some(Ok(_))) {
        return Err(format!("{SKIP}no initrd (scripts/qemu.sh --initrd FILE)"));
    }
    let before = census();
    let old = limits::set_top_for_tests(Some(TEST_TOP));
    let r = (|| {
        let first = run(kind)?;
        let second = run(kind)?;
        check(second == first, || {
            format!("the second run got {second:?}, the first {first:?}")
        })
    })();
    limits::set_top_for_tests(old);
    r?;
    let after = census();
    check(after == before, || {
        format!(
            "(processes, thread records, endpoints, regions, (accounts, endpoints charged, regions charged, miscounts)) {before:?} before, {after:?} after"
        )
    })
}

/// One run: the tree's report, checked against its limits; then everything it took must be
/// back.
fn run(kind: Kind) -> Result<Report, String> {
    let before = census();
    let t = Box::new(HandleTable::new());
    let h = t
        .create_endpoint(Rights::ALL, 0)
        .map_err(|e| format!("endpoint: {e}"))?;
    let ep = t.get(h).map_err(|e| format!("endpoint: {e}"))?.ep;
    let r = if h.0 == 0 {
        run_root(&t, ep, ROOT | (kind as u64) << 48)
    } else {
        Err(format!("the test's endpoint is handle {}, not 0", h.0))
    };
    t.close_all();
    let (report, used, limit) = r?;
    let k = kind as usize;
    let l = u64::from(TEST_TOP[k]);
    let share = u64::from(child_limit(TEST_TOP[k]));
    // What the first helper (its own share: three quarters) and the root (the rest) hold besides the
    // slots they take: a process slot and a thread each, the root's report endpoint.
    let (first, own) = match kind {
        Kind::Procs => (share - 1, 0),
        Kind::Threads => (share - 1, l - 1 - share),
        Kind::Endpoints => (share, l - 1 - share),
        Kind::Regions => (share, l - share),
    };
    let counts_right = match kind {
        // The helpers the root reaped left their children behind, in its tree: it is full
        // when it holds itself and them, whatever the number of helpers (at least two: the
        // root could spawn beside its first child's full tree).
        Kind::Procs => report.helpers >= 2 && 1 + report.total + report.own == l,
        _ => report.helpers == 1 && report.total == first && report.own == own,
    };
    check(
        limit == TEST_TOP
            && u64::from(used[k]) == l
            && report.first == first
            && counts_right
            && report.helper_errno == EAGAIN
            && report.own_errno == EAGAIN,
        || {
            format!(
                "{kind:?}: {report:?}, its tree holding {used:?} of {limit:?} (want the first helper refused with EAGAIN ({EAGAIN}) at {first}, the tree at {l}{})",
                if kind == Kind::Procs {
                    String::new()
                } else {
                    format!(", one helper, the root refused at {own}")
                }
            )
        },
    )?;
    let after = census();
    check(after == before, || {
        format!("{kind:?}: the tables and accounts {before:?} before the run, {after:?} after")
    })?;
    Ok(report)
}

/// Spawns the root with handle 0 of `t` (endpoint `ep`), takes its report, checks the
/// bystander while the root and its tree hold what they took, answers, and waits for the
/// root and then for every process its tree left (they end by themselves once the root is
/// gone). The report, and what the root's tree held and its limits.
fn run_root(t: &HandleTable, ep: EpRef, arg: u64) -> Result<(Report, Counts, Counts), String> {
    let pid = process::spawn_with("/hog", arg, Builder::new(), Some(t)).map_err(|e| {
        if e == Errno::Enoent {
            format!("{SKIP}no /hog (run with the initrd)")
        } else {
            format!("spawn of /hog: {e:?}")
        }
    })?;
    let got = (|| -> Result<(Report, Counts, Counts), String> {
        let m =
            ipc::recv(ep, rdtsc() + ms(STEP_MS)).map_err(|e| format!("the root's report: {e}"))?;
        // Read while the root waits for the answer: its tree holds all it took.
        let (used, limit) = limits::usage(pid).ok_or("the root has no account")?;
        let b = bystander();
        ipc::reply(&Msg::default()).map_err(|e| format!("the answer to the root: {e}"))?;
        let b = b?;
        check(b == 0, || {
            format!(
                "the bystander beside the full tree exited with {b:#x} (1: no process, 2: no thread, 4: no endpoint, 8: no region)"
            )
        })?;
        let w = m.words;
        let report = Report {
            helpers: w[0],
            first: w[1],
            total: w[2],
            helper_errno: w[3],
            own: w[4],
            own_errno: w[5],
        };
        Ok((report, used, limit))
    })();
    if got.is_err() {
        let _ = process::kill_child(pid, 9);
    }
    let status = process::wait_until(pid, rdtsc() + ms(STEP_MS));
    let mut late = 0;
    let left = process::reap_all_with(STEP_MS, |_, s| {
        if s != 0 {
            late += 1;
        }
    });
    let got = got?;
    check(status == Ok(0), || {
        format!("the root's status: {status:x?}")
    })?;
    check(late == 0, || {
        format!("{late} of the {left} processes the tree left did not end by themselves")
    })?;
    Ok(got)
}

/// Spawns `/hog`'s `CHECK` (a process the kernel spawns: no part of the tree) and waits for
/// it: its status, 0 if it got a process, a thread, an endpoint and a region.
fn bystander() -> Result<u64, String> {
    let pid = process::spawn("/hog", CHECK, Builder::new())
        .map_err(|e| format!("the bystander's spawn beside the full tree: {e:?}"))?;
    process::wait_until(pid, rdtsc() + ms(STEP_MS))
        .map_err(|e| format!("the bystander's wait: {e:?}"))
}

/// A process the kernel spawns gets half of each table for its tree ([`TOP`]), and once it
/// has ended (a child reaped, a thread joined, an endpoint closed, a region mapped: all
/// given back) its tree holds only its own slot and thread record, until it is reaped:
/// then it has no account.
fn top_share(_: &BootState) -> TestResult {
    if !matches!(super::initrd::archive(), Some(Ok(_))) {
        return Err(format!("{SKIP}no initrd (scripts/qemu.sh --initrd FILE)"));
    }
    let half = [MAX_PROCS, MAX_TASKS, MAX_ENDPOINTS, MAX_REGIONS].map(|n| (n / 2) as u32);
    check(TOP == half, || {
        format!("TOP is {TOP:?}, not half of each table ({half:?})")
    })?;
    let before = census();
    let old = limits::set_top_for_tests(None);
    let r = (|| {
        let pid = process::spawn("/hog", CHECK, Builder::new())
            .map_err(|e| format!("spawn of /hog: {e:?}"))?;
        // Its last thread gives its handles and memory back after it counted itself out.
        let end =
            || process::ended(pid) == Some(true) && limits::usage(pid) == Some(([1, 1, 0, 0], TOP));
        let ended = wait_for(
            "its end, its account holding its slot and thread record",
            STEP_MS,
            end,
        );
        let held = limits::usage(pid);
        let status = wait_bounded(pid);
        check(status == Ok(0), || format!("/hog's check: {status:x?}"))?;
        ended.map_err(|e| {
            format!("{e}: its account {held:?} (want its slot and thread record of {TOP:?})")
        })?;
        let gone = limits::usage(pid);
        check(gone.is_none(), || {
            format!("its account once it was reaped: {gone:?}")
        })
    })();
    limits::set_top_for_tests(old);
    r?;
    let after = census();
    check(after == before, || {
        format!("{before:?} before, {after:?} after")
    })
}
