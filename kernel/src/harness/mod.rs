//! The test and bench jobs. Tests and bench rows are defined beside the code they exercise
//! (`<subsystem>/tests.rs`, `<subsystem>/bench.rs`) and registered there with `ktest!` and
//! `kbench!` (`registry`); `test` and `bench` run what is registered, sorted, filtered by
//! `exo.test=<prefix>`; `locks` holds the measured locks and the contention runner.
//!
//! Tests and bench rows are leaves: they may call any subsystem, and no subsystem calls them.
//! This module is the top: the entry runs `boot`, then [`run`] the job it names.

pub mod bench;
pub mod locks;
pub mod registry;
pub mod serve;
pub mod test;
mod tests;

use crate::sched::{self, Tid};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
pub use registry::{Needs, Suite, TestResult};

/// Kernel threads the running test expects a panic or a fault to kill ([`expect_kills`]).
static EXPECTED_KILLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Declares that the running test ends `n` of its kernel threads by a panic or a fault on
/// purpose: the test job fails a test during which another number of threads was killed
/// (a thread that died unnoticed, whose exit code the test did not look at, is a failure).
pub fn expect_kills(n: u64) {
    EXPECTED_KILLS.store(n, core::sync::atomic::Ordering::Relaxed);
}

fn expected_kills() -> u64 {
    EXPECTED_KILLS.load(core::sync::atomic::Ordering::Relaxed)
}

/// The job runs under `-icount` (set by [`run`] from the detected mode).
static ICOUNT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether the job runs under `-icount`: guest time is instructions, no host can leave a
/// vCPU unscheduled, so the slack a test gives a slow host is wasted there, and each guest
/// second a CPU spends spinning costs several seconds of host time.
pub fn icount() -> bool {
    ICOUNT.load(core::sync::atomic::Ordering::Relaxed)
}

/// `ms` of slack a test gives a slow host (a window before what it forces, a wait that must
/// time out), a tenth of it under icount: no host luck there, the setup takes the same few
/// milliseconds of guest time every run, and each guest second spent spinning costs several
/// seconds of host time (until 2026-12-07 the full slack: about 5 s of guest time, 25 s of
/// host time, in the icount job).
pub fn slack_ms(ms: u64) -> u64 {
    if icount() { ms / 10 } else { ms }
}

/// Runs the job the command line names (`exo.job=boot|test|bench|contended`); never returns.
pub fn run(state: &crate::boot::BootState) -> ! {
    use crate::boot::cmdline::Job;
    ICOUNT.store(
        state.opts.mode == Some(smp_bench::Mode::Icount),
        core::sync::atomic::Ordering::Relaxed,
    );
    // The kernel's own setup is done and no user space exists yet: the commit limits are
    // set now, once, and shown.
    // The scheduler's stack caches keep ended threads' stacks, charged to nobody: what
    // they may come to hold is left out of what user space may take.
    let l = crate::mm::commit::init(
        state.opts.kernel_reserve_mb,
        state.opts.proc_mem_mb,
        ncpus(),
        crate::sched::stack_cache_room(ncpus()),
    );
    crate::kprintln!(
        "MEM,user_limit_mb,{},reserve_mb,{},proc_limit_mb,{},managed_mb,{}",
        l.user_limit / 256,
        l.reserve / 256,
        l.proc_limit / 256,
        crate::mm::kalloc::managed_frames() / 256
    );
    // The end of boot, for every job (`boot.ms` ends here, `BOOT,done` says it).
    crate::boot::done();
    match state.opts.job {
        Job::Boot => crate::boot::report(state),
        Job::Test => test::run(state),
        Job::Bench | Job::Contended => bench::run(state),
        Job::Init => init(state),
        Job::Serve => serve::run(state),
    }
}

/// The `init` job: the scheduler on every CPU, then `exo.init` (default `/init`) from the
/// initrd as process 1 with `exo.init_arg`; when it ends (its `PROC` line is printed), the
/// remaining processes are reaped and the machine powers off with success: the kernel
/// survived whatever the programs did. No initrd, or a program that cannot start, is a
/// failure.
fn init(state: &crate::boot::BootState) -> ! {
    use crate::console::exit;
    use exo_arch::exit::ExitCode;
    let timer = state.opts.mode != Some(smp_bench::Mode::Icount);
    if let Err(e) = sched::init(timer, 1000) {
        crate::kprintln!("INIT,FAIL,scheduler: {e}");
        exit(ExitCode::Failure);
    }
    let path = state.opts.init.as_str();
    // Console rings before `before`: the first write on a CPU allocates nothing.
    let _ = crate::user::syscall::prepare_console_rings();
    crate::user::process::prepare();
    let before = free_frames();
    let threads_before = sched::live_threads();
    let endpoints_before = crate::ipc::live_endpoints();
    let charged_before = crate::mm::commit::charged();
    let timeout_s = state.opts.init_timeout_s;
    match crate::user::process::run_init(path, state.opts.init_arg, timeout_s) {
        Ok(end) => {
            let status = end.status;
            if end.killed_at_deadline {
                crate::kprintln!("INIT,TIMEOUT,{path},{timeout_s}");
            }
            crate::kprintln!("INIT,{path},status,{status:#x}");
            // Which IPC paths the programs took (the CI checks the IPC suite took both
            // ends of the parked fastpath).
            let (fast, slow) = crate::ipc::stats();
            let (exits, resumes) = sched::parked_counts();
            crate::kprintln!(
                "IPC,init,fast,{fast},slow,{slow},parked_exits,{exits},parked_resumes,{resumes}"
            );
            // How often the scheduler wrote the timer (each write is a VM exit under KVM).
            let (switches, ticks, slice, other) = sched::timer_totals();
            crate::kprintln!(
                "TIMER,init,mode,{},switches,{switches},ticks,{ticks},writes,{}",
                sched::timer_mode(),
                slice + other
            );
            // Preemptions: at a slice end (the tick) and for a wake-up (`sched::wake_ipi`).
            let (_, tick, _, _) = sched::counters();
            crate::kprintln!(
                "PREEMPT,init,tick,{tick},wake,{}",
                sched::wake_preemptions()
            );
            // Every process's memory is back: the same free frames, heap objects and
            // threads as before process 1 started (a difference is a leak the CI check
            // catches).
            let t1 = sched::live_threads();
            let mut same = false;
            if let (Ok((f0, o0)), Ok((f1, o1))) = (before, free_frames()) {
                let t0 = threads_before;
                // Shared IPC regions: none is left once every process is gone; endpoints:
                // the same count (a handle held in flight and never dropped would keep one).
                let r1 = crate::user::shm::in_use();
                let (e0, e1) = (endpoints_before, crate::ipc::live_endpoints());
                // User memory's commit charge (`mm::commit`): every frame charged is back.
                let (c0, c1) = (charged_before, crate::mm::commit::charged());
                same = (f0, o0, t0, 0, e0, c0) == (f1, o1, t1, r1, e1, c1);
                crate::kprintln!(
                    "MEM,init,free_frames,{f0},{f1},objects_out,{o0},{o1},threads,{t0},{t1},regions,{r1},endpoints,{e0},{e1},charged,{c0},{c1},{}",
                    if same { "same" } else { "DIFFERENT" }
                );
            }
            // The job's exit code is the verdict: process 1 exited 0 and every frame,
            // object, thread and endpoint came back (until 2026-12-04 it was success
            // whatever `/init` reported, so only a log grep saw a failed suite).
            if status == 0 && same && !end.killed_at_deadline {
                exit(ExitCode::Success)
            }
            crate::kprintln!(
                "INIT,FAIL,{path}: status {status:#x}{}{}",
                if end.killed_at_deadline {
                    ", killed: still running at the exo.init_timeout_s deadline"
                } else {
                    ""
                },
                if same { "" } else { ", memory not back" }
            );
            exit(ExitCode::Failure)
        }
        Err(e) => {
            crate::kprintln!("INIT,FAIL,{path}: {e:?}");
            exit(ExitCode::Failure)
        }
    }
}

fn drain(_: u64) -> u64 {
    crate::mm::kalloc::drain_this_cpu();
    0
}

/// Moves every CPU's cached objects and frames back to the allocator's global layers, so
/// `kalloc::stats` counts free memory exactly (tests and the init job's memory line).
pub fn drain_all() -> Result<(), String> {
    drain_every_cpu().map_err(|e| format!("drain of every CPU's caches: {e}"))
}

/// [`drain_all`] with the mailbox's error (nothing allocated). 30 s: a bound on a CPU that
/// stopped answering, not a time to meet (5 s until 2026-12-06, which a vCPU a loaded host
/// keeps off its core can run out: found by an audit for host-speed failures).
fn drain_every_cpu() -> Result<(), crate::smp::cpus::RunError> {
    crate::smp::cpus::run_on_every(drain, 0, crate::smp::time::Deadline::after_ms(30_000))
}

/// Free memory in frames, and heap objects handed out, after [`drain_all`]: the buddy's
/// free frames plus the frames in heap slabs (a slab carved for kernel objects is not a
/// leak) and in cached thread stacks (kept for reuse). Freed stacks' page tables are
/// reclaimed first (`smp::tlb::reclaim_kernel_tables`); any still retired count as free,
/// and so does the stack free-slot list's buffer (grown for good: `memory::slot_list_frames`).
pub fn free_frames() -> Result<(u64, u64), String> {
    try_free_frames().map_err(|e| format!("drain of every CPU's caches: {e}"))
}

/// Checks that [`free_frames`] is `before` again: every frame and heap object a test took
/// is back (the tests of user memory end with it).
pub fn free_frames_back(before: (u64, u64)) -> TestResult {
    let after = free_frames()?;
    check(after == before, || {
        format!("(free + slab frames, heap objects out) {before:?} before, {after:?} after")
    })
}

/// [`free_frames`] that allocates nothing, for a caller holding the heap empty (its error
/// is the first CPU that did not answer, without a message).
pub fn try_free_frames() -> Result<(u64, u64), crate::smp::cpus::RunError> {
    // No other CPU's reclaim holds tables between the drain and the reads.
    crate::smp::tlb::with_reclaims_held(|_| {
        drain_every_cpu()?;
        let s = crate::mm::kalloc::stats();
        Ok((
            (s.buddy_free + s.slab_frames) as u64
                + sched::cached_stack_frames()
                + crate::mm::memory::retired_tables()
                + crate::mm::memory::slot_list_frames(),
            s.objects_out as u64,
        ))
    })
}

/// Prefix of an `Err` that means "not applicable here" (printed as `skip`, not counted).
pub const SKIP: &str = "skip: ";

/// `Ok` when `cond` holds, else the message.
pub fn check(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg()) }
}

/// Polls `cond` (yielding) for up to `limit_ms`; on a timeout the scheduler's state is dumped
/// and the error names `what`.
pub fn wait_for(what: &str, limit_ms: u64, cond: impl Fn() -> bool) -> TestResult {
    let d = exo_arch::tsc::rdtsc() + ms(limit_ms);
    while !cond() {
        if exo_arch::tsc::rdtsc() > d {
            sched::dump();
            return Err(format!("timed out waiting for {what}"));
        }
        sched::yield_now();
    }
    Ok(())
}

/// `n` milliseconds in TSC ticks.
pub fn ms(n: u64) -> u64 {
    n * (crate::smp::time::tsc_hz() / 1000).max(1)
}

/// CPUs online.
pub fn ncpus() -> u32 {
    crate::smp::cpus::online_count()
}

/// Joins every thread with one deadline; returns the exit codes. A join that times out dumps
/// the scheduler's state (`SCHED` lines) for the post-mortem.
///
/// Nothing is allocated before a group of up to [`JOIN_GROUP`] threads has been joined: the
/// codes wait in an array on the stack. A test's thread may hold the heap empty
/// (`kalloc::Hoard`) from its first instruction; until 2026-12-06 this function's first
/// statement allocated the codes' list, and a test thread preempted between its spawn and
/// its join (the thread then ran first on the one CPU) panicked the kernel with "memory
/// allocation of 8 bytes failed" (the project's CI, `smp.cpu_tables_that_fail_give_their_
/// stacks_back` with one CPU online; reproduced beside host load).
pub fn join_all(tids: &[Tid], deadline_ms: u64) -> Result<Vec<u64>, String> {
    let deadline = exo_arch::tsc::rdtsc() + ms(deadline_ms);
    let mut codes = Vec::new();
    for (g, group) in tids.chunks(JOIN_GROUP).enumerate() {
        let mut got = [0u64; JOIN_GROUP];
        for (i, &t) in group.iter().enumerate() {
            match sched::join_until(t, deadline) {
                Ok(c) => got[i] = c,
                Err(e) => {
                    sched::dump();
                    return Err(format!(
                        "join of thread {}/{} ({t}): {e} (switches {:?}, wake preemptions {})",
                        g * JOIN_GROUP + i,
                        tids.len(),
                        sched::counters(),
                        sched::wake_preemptions()
                    ));
                }
            }
        }
        codes.extend_from_slice(&got[..group.len()]);
    }
    Ok(codes)
}

/// Threads [`join_all`] joins before it allocates.
pub const JOIN_GROUP: usize = 64;
