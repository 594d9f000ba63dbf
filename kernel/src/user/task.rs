//! User threads: a fixed table of records keyed by thread id (the process it belongs to,
//! entry point, system calls counted, how it ended), starting one ([`start`]: a kernel
//! thread that takes its ids and enters ring 3), and its ends: `exit`/`thread_exit`,
//! `exit_group`, a ring-3 fault ([`user_fault`], the trap module's hook), a system call
//! whose return address is not a canonical user address ([`bad_return`], the syscall stub's
//! hook), or its process being killed ([`die_killed`]). Every end first clears the word
//! the thread named with `set_tid_address` and wakes its waiter (the user-mode fusion
//! rings learn that way that their peer is gone).
//!
//! A thread of a process (`process`) reports its end there, which decides the process's
//! fate and prints its `PROC` line. A standalone thread (the test bed's: [`spawn`], its own
//! pid, no process record) prints its own `PROC,<pid>,exit,<code>` or
//! `PROC,<pid>,killed,<why>` line. Either way only that thread (or process) ends; the kernel
//! goes on.
//!
//! Thread ids and pids come from one counter (a process's first thread has its pid as
//! thread id); the record of id `t` is slot `t % MAX_TASKS`, claimed by compare-and-swap.
//! A claimed record says so ([`SETUP`]) until [`start`] has written its fields: readers
//! look only at records whose `tid` is a plain id, so none takes the fields of the slot's
//! last thread (its pid, its kernel thread) for the new one's.

use super::aspace::HoldPoint;
use super::process::{self, MAX_PROCS};
use crate::kprintln;
use crate::sched::{self, Builder, KILLED, SchedError, Tid};
use crate::trap::UserFault;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::syscall::SyscallFrame;
use exo_arch::trap::TrapFrame;

/// User threads whose records can exist at once (a record stays until its thread is
/// joined: [`reap`], `thread_join`, or the process's `wait`), all process trees together
/// (each has a share: `limits`).
pub const MAX_TASKS: usize = sched::MAX_THREADS;

const ALIVE: u64 = 0;
const EXITED: u64 = 1;
const FAULTED: u64 = 2;
const BAD_RETURN: u64 = 3;
const NOT_ENTERED: u64 = 4;
const KILLED_WITH_PROCESS: u64 = 5;

/// `tid` of a record claimed and being set up (`id | SETUP`): no id reaches bit 63.
const SETUP: u64 = 1 << 63;

struct Task {
    /// The thread id; 0: free; `id | SETUP`: claimed, fields not yet written.
    tid: AtomicU64,
    /// The process's pid (the thread id itself for a standalone thread; 0 once freed).
    pid: AtomicU64,
    /// The kernel thread (`Tid::raw`), 0 until it is known.
    sched: AtomicU64,
    /// Who joins this thread: its own id while nobody does (so a join's claim names the
    /// thread, and fails on a record reused meanwhile), the joining thread's id while one
    /// does, 0 while it cannot be joined (its kernel thread not yet known, or freed).
    joiner: AtomicU64,
    entry: AtomicU64,
    stack: AtomicU64,
    arg: AtomicU64,
    syscalls: AtomicU64,
    end: AtomicU64,
    /// Exit code, or the fault's vector.
    value: AtomicU64,
    /// A #PF's address.
    addr: AtomicU64,
    /// The fault's error code.
    error: AtomicU64,
    /// The word `set_tid_address` named (0: none): zeroed and woken at the thread's end.
    clear_tid: AtomicU64,
}

impl Task {
    const fn new() -> Task {
        Task {
            tid: AtomicU64::new(0),
            pid: AtomicU64::new(0),
            sched: AtomicU64::new(0),
            joiner: AtomicU64::new(0),
            entry: AtomicU64::new(0),
            stack: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            syscalls: AtomicU64::new(0),
            end: AtomicU64::new(ALIVE),
            value: AtomicU64::new(0),
            addr: AtomicU64::new(0),
            error: AtomicU64::new(0),
            clear_tid: AtomicU64::new(0),
        }
    }
}

static TASKS: [Task; MAX_TASKS] = [const { Task::new() }; MAX_TASKS];
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Words of a process's record map ([`BY_PROC`]): a bit per record slot.
const MAP_WORDS: usize = MAX_TASKS / 64;

/// The records of each process, by its process slot (`pid % MAX_PROCS`, the process table's
/// key): bit `i` of map `p` is set while record `i` is started for a thread whose pid falls
/// in slot `p`. Set by [`start`] before the record is published (its `tid` the plain id),
/// cleared by [`free`] after its `pid` is 0 and before its `tid` is, so the bits cover every
/// started record (a reader that finds a bit clear while the record is still there finds
/// its `pid` 0 too: of no process). Only the record's owner (its claimer, until it frees it)
/// touches its bit, so two owners never race for one bit; a slot's map may hold bits of a
/// standalone thread whose pid falls there (a test bed thread, no process): readers match
/// the pid as they did scanning the table. A process's kill and reap ([`for_each_of`],
/// [`join_all_until`]) look at its own records only (16 words and a bit per thread)
/// instead of all [`MAX_TASKS`]: until 2026-12-06 each scanned the whole table, about
/// 14,500 of icount `proc.spawn`'s 138,500 instructions with the process table's scan in
/// the reap (`process::USED`).
static BY_PROC: [[AtomicU64; MAP_WORDS]; MAX_PROCS] =
    [const { [const { AtomicU64::new(0) }; MAP_WORDS] }; MAX_PROCS];

const _: () = assert!(MAX_TASKS.is_multiple_of(64));

fn slot(tid: u64) -> &'static Task {
    &TASKS[tid as usize % MAX_TASKS]
}

/// The record map ([`BY_PROC`]) of process `pid`'s slot.
fn map_of(pid: u64) -> &'static [AtomicU64; MAP_WORDS] {
    &BY_PROC[pid as usize % MAX_PROCS]
}

/// Calls `f(record)` for each record whose bit is set in `map`, each word read once, in
/// sequentially consistent order (the kill's argument in [`for_each_of`]).
fn each_in(map: &[AtomicU64; MAP_WORDS], mut f: impl FnMut(&'static Task)) {
    for (w, word) in map.iter().enumerate() {
        let mut bits = word.load(Ordering::SeqCst);
        while bits != 0 {
            let i = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            f(&TASKS[i]);
        }
    }
}

/// The record of thread `tid`, if it exists (started: its fields are written).
fn record(tid: u64) -> Option<&'static Task> {
    let t = slot(tid);
    (tid != 0 && t.tid.load(Ordering::Acquire) == tid).then_some(t)
}

/// The thread id of record `t` if it is started (not free, not being set up).
fn started(t: &Task) -> Option<u64> {
    let tid = t.tid.load(Ordering::Acquire);
    (tid != 0 && tid & SETUP == 0).then_some(tid)
}

/// Frees record `t` of thread `tid`, which the caller owns (it joined the thread, or its
/// start failed). Not joinable and of no process first, then free: a reader that still
/// looks at it sees no thread to join and no pid of its last process.
fn free(t: &Task, tid: u64) {
    t.joiner.store(0, Ordering::Relaxed);
    let pid = t.pid.load(Ordering::Relaxed);
    t.pid.store(0, Ordering::Relaxed);
    // Out of its process's map once of no process, before the slot can be claimed again
    // (a locked instruction: the `pid` store is visible before the bit is clear).
    let i = tid as usize % MAX_TASKS;
    map_of(pid)[i / 64].fetch_and(!(1 << (i % 64)), Ordering::SeqCst);
    if t.tid
        .compare_exchange(tid, 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        log::error!("task: record of thread {tid} freed by someone else");
    }
}

/// Test support: whether thread `tid` has a record (started and not yet joined).
pub fn exists(tid: u64) -> bool {
    record(tid).is_some()
}

/// Test support: thread records in use (claimed, started, or ended and not joined).
pub fn records() -> usize {
    TASKS
        .iter()
        .filter(|t| t.tid.load(Ordering::Acquire) != 0)
        .count()
}

/// Test support: whether the record maps ([`BY_PROC`]) and the records agree: each bit set
/// is a started record whose pid falls in that map's slot, and each started record has one
/// (`Err`: the first disagreement). Only meaningful while no record is started or freed.
pub fn maps_agree() -> Result<(), alloc::string::String> {
    let mut bits = 0;
    for (p, map) in BY_PROC.iter().enumerate() {
        for (w, word) in map.iter().enumerate() {
            let mut b = word.load(Ordering::Acquire);
            bits += b.count_ones() as usize;
            while b != 0 {
                let i = w * 64 + b.trailing_zeros() as usize;
                b &= b - 1;
                let t = &TASKS[i];
                let pid = t.pid.load(Ordering::Relaxed);
                if started(t).is_none() || pid as usize % MAX_PROCS != p {
                    return Err(alloc::format!(
                        "record {i} is in the map of process slot {p} but is {:#x} of pid {pid}",
                        t.tid.load(Ordering::Relaxed)
                    ));
                }
            }
        }
    }
    let started_records = TASKS.iter().filter(|t| started(t).is_some()).count();
    if bits != started_records {
        return Err(alloc::format!(
            "{bits} bits in the record maps for {started_records} started records"
        ));
    }
    Ok(())
}

/// Test support: the id that holds the slot of `id` (claimed or started; 0: free).
pub fn holder_of_slot(id: u64) -> u64 {
    slot(id).tid.load(Ordering::Acquire) & !SETUP
}

/// Test support: the next id handed out (with no other claim meanwhile) falls in the slot
/// of `id` (a later id).
pub fn skip_ids_to_slot_of(id: u64) {
    let m = MAX_TASKS as u64;
    let _ = NEXT_ID.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n + (id % m + m - n % m) % m)
    });
}

/// How a user thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// `exit(code)` or `thread_exit(code)`: this thread.
    Exit(u64),
    /// Killed by an exception it raised in ring 3.
    Fault(UserFault),
    /// Killed: a system call's return address was not a canonical user address.
    BadReturn,
    /// It never reached ring 3 (see `sched::enter_user`).
    NotEntered,
    /// Ended because its process was killed or ended (`exit_group`, another thread's fault).
    WithProcess,
}

/// What [`reap`] tells about a user thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Its pid.
    pub pid: u64,
    /// System calls the dispatcher saw from it.
    pub syscalls: u64,
    /// How it ended (`None`: still running).
    pub death: Option<Death>,
}

/// Why starting a thread failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// All [`MAX_TASKS`] records are in use.
    TableFull,
    /// The scheduler refused the thread.
    Sched(SchedError),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::TableFull => write!(f, "user thread table full"),
            SpawnError::Sched(e) => write!(f, "{e}"),
        }
    }
}

/// Claims a fresh id whose record slot is free and for which `also(id)` agrees (the
/// process table claims its own slot there); the record is reserved ([`SETUP`]), not yet
/// started.
pub fn claim_id(also: impl Fn(u64) -> bool) -> Result<u64, SpawnError> {
    for _ in 0..MAX_TASKS {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let t = slot(id);
        if id == 0
            || t.tid
                .compare_exchange(0, id | SETUP, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        if also(id) {
            return Ok(id);
        }
        t.tid.store(0, Ordering::Release);
    }
    Err(SpawnError::TableFull)
}

/// Gives back an id from [`claim_id`] whose thread never started.
pub fn release_id(id: u64) {
    let _ = slot(id)
        .tid
        .compare_exchange(id | SETUP, 0, Ordering::Release, Ordering::Relaxed);
}

/// Starts thread `id` (claimed) of process `pid`, placed as `b` says: a kernel thread that
/// takes its ids and enters ring 3 at `entry` with stack `stack_top` and `arg` in RDI.
/// On failure the id is released.
///
/// The record is published (its `tid` the plain id) once its fields are written and before
/// the thread can run (its ends need it), and made joinable (its kernel thread id, then
/// `joiner`) before it can run too (`Builder::spawn_then`), so a sibling may join it as
/// soon as it runs, and the caller's process as soon as this returns. Until 2026-12-03 this
/// function did that after the spawn returned, and a thread that ran first on another CPU
/// and was joined in that window (the spawner's vCPU descheduled) was refused with
/// `ESRCH`: the `/threads` case 4 failure seen once in CI at -smp 4. The process cannot be
/// reaped while this runs (`spawn` lets waiters in after it; `thread_create`'s caller
/// lives).
pub fn start(
    b: Builder,
    id: u64,
    pid: u64,
    entry: u64,
    stack_top: u64,
    arg: u64,
) -> Result<Tid, SpawnError> {
    let t = slot(id);
    t.pid.store(pid, Ordering::Relaxed);
    t.sched.store(0, Ordering::Relaxed);
    t.joiner.store(0, Ordering::Relaxed);
    t.entry.store(entry, Ordering::Relaxed);
    t.stack.store(stack_top, Ordering::Relaxed);
    t.arg.store(arg, Ordering::Relaxed);
    t.syscalls.store(0, Ordering::Relaxed);
    t.value.store(0, Ordering::Relaxed);
    t.clear_tid.store(0, Ordering::Relaxed);
    t.end.store(ALIVE, Ordering::Relaxed);
    // In its process's map before it is published (see `for_each_of` for the kill that
    // races this start); `free` takes it out if the spawn below fails.
    let i = id as usize % MAX_TASKS;
    map_of(pid)[i / 64].fetch_or(1 << (i % 64), Ordering::SeqCst);
    t.tid.store(id, Ordering::Release);
    let made_joinable = |k: Tid| {
        t.sched.store(k.raw(), Ordering::Release);
        t.joiner.store(id, Ordering::Release);
    };
    match b.spawn_then(user_main, id, made_joinable) {
        // Not a word more into the record: the thread may already have run, ended and been
        // joined, and its record freed and taken by another thread.
        Ok(tid) => {
            if id == pid {
                START_HOLD.pass();
            }
            Ok(tid)
        }
        Err(e) => {
            free(t, id);
            Err(SpawnError::Sched(e))
        }
    }
}

/// Starts a standalone user thread (its own pid, no process record: the test bed's),
/// placed as `b` says. Returns its kernel thread id (`join` gives its exit code, [`KILLED`]
/// if it was killed) and its pid (for [`reap`]).
pub fn spawn(b: Builder, entry: u64, stack_top: u64, arg: u64) -> Result<(Tid, u64), SpawnError> {
    let id = claim_id(|_| true)?;
    start(b, id, id, entry, stack_top, arg).map(|tid| (tid, id))
}

/// A user thread's first code (kernel mode): take the ids, go to ring 3.
fn user_main(id: u64) -> u64 {
    let t = slot(id);
    let pid = t.pid.load(Ordering::Relaxed);
    let e = match sched::set_current_ids(pid, id) {
        Ok(()) => {
            super::syscall::console_thread_start();
            // Born into a process that is being killed: never run its code.
            process::exit_if_dying_for_return();
            sched::enter_user(
                t.entry.load(Ordering::Relaxed),
                t.stack.load(Ordering::Relaxed),
                t.arg.load(Ordering::Relaxed),
            )
        }
        Err(e) => e,
    };
    t.end.store(NOT_ENTERED, Ordering::Release);
    // No heap here: the reason may be that memory ran out.
    let mut why = arrayvec::ArrayString::<96>::new();
    let _ = core::fmt::write(&mut why, format_args!("cannot enter ring 3: {e}"));
    finish(pid, Death::NotEntered, &why)
}

/// The running user thread's record (none: not a user thread).
fn current() -> Option<&'static Task> {
    record(sched::current_uid())
}

/// Counts a system call for the running user thread (only it writes its count: a plain
/// load and store, no locked instruction on the system-call path).
#[inline(always)]
pub fn count_syscall() {
    count_syscall_of(sched::current_uid());
}

/// [`count_syscall`] for a caller that has read its `uid` already.
#[inline(always)]
pub fn count_syscall_of(uid: u64) {
    let c = &slot(uid).syscalls;
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// `set_tid_address(addr)`: at the running user thread's end, whatever ends it, 0 is
/// stored at `addr` and one waiter of that word woken (see `futex::thread_end_word`).
/// Returns the thread id.
pub fn set_tid_address(addr: u64) -> u64 {
    if let Some(t) = current() {
        t.clear_tid.store(addr, Ordering::Relaxed);
    }
    sched::current_uid()
}

/// Whether the caller runs on the running thread's own kernel stack, not on an exception's
/// own stack (IST). What may be preempted (and resumed later) must be on it: a thread
/// switched out on a per-CPU IST stack would find it overwritten by the next such exception
/// on that CPU. Every end from ring 3 runs there: a #DB from ring 3, the one IST vector
/// that kills the thread, moves to the thread's stack in its entry (`exo_arch::trap`,
/// since 2026-12-04); this stays as the guard of that rule.
fn on_own_stack() -> bool {
    let probe = 0u8;
    let sp = core::ptr::from_ref(&probe) as u64;
    sched::current_stack().is_some_and(|(bottom, top)| (bottom..top).contains(&sp))
}

/// Reports the end to the process (or prints the standalone thread's line), then ends the
/// kernel thread. First, still in the thread's address space, its `set_tid_address` word.
fn finish(pid: u64, d: Death, why: &str) -> ! {
    // Interrupts on for the end (it comes here from traps and the syscall stub with them
    // off) wherever the thread may be preempted: on its own kernel stack. The end takes
    // locks whose holders may wait for this CPU's answer to a TLB shootdown (`munmap` holds
    // the tables' lock across one; the shared wake of the end word takes it): spinning for
    // them with interrupts off was a deadlock, seen in the fuzzer at -smp 8 as "TLB
    // shootdown: CPU 1 did not answer". On an exception's own stack (none reaches here
    // since a ring-3 #DB moved to the thread's stack) they would stay off, and the end
    // word's shared wake be skipped.
    let irqs = on_own_stack();
    if irqs {
        exo_arch::cpu::sti();
    }
    if let Some(t) = current() {
        let word = t.clear_tid.swap(0, Ordering::Relaxed);
        if word != 0 {
            super::futex::thread_end_word(word, irqs);
        }
    }
    // Its console bytes before its process's `PROC` line; its writer name forgotten.
    super::syscall::console_thread_end();
    if !process::thread_ended(pid, d, why) {
        match d {
            // The status byte, as `wait` gives it (`exo_abi::ProcLine`: 0..=255).
            Death::Exit(code) => kprintln!("PROC,{pid},exit,{}", code & 0xFF),
            _ => kprintln!("PROC,{pid},killed,{why}"),
        }
    }
    FINISH_HOLD.pass();
    sched::exit(match d {
        Death::Exit(code) => code,
        _ => KILLED,
    })
}

/// `exit(code)` / `thread_exit(code)`: the running user thread ends (its process with it
/// if it was the last one).
pub fn exit(code: u64) -> ! {
    let pid = exo_percpu::pid();
    if let Some(t) = current() {
        t.value.store(code, Ordering::Relaxed);
        t.end.store(EXITED, Ordering::Release);
    }
    finish(pid, Death::Exit(code), "")
}

/// `exit_group(code)`: the whole process ends with `code` (its other threads, on every CPU,
/// end before `wait` returns).
pub fn exit_group(code: u64) -> ! {
    let pid = exo_percpu::pid();
    process::end_process(pid, code & 0xFF);
    exit(code)
}

/// Ends the running thread because its process is being killed (no line of its own: the
/// thread that decided the end printed the process's).
pub fn die_killed() -> ! {
    let pid = exo_percpu::pid();
    if let Some(t) = current() {
        t.end.store(KILLED_WITH_PROCESS, Ordering::Release);
    }
    finish(pid, Death::WithProcess, "")
}

/// The trap module's hook: an exception from ring 3 kills the thread that raised it (and
/// its process).
pub fn user_fault(_frame: &mut TrapFrame, f: UserFault) {
    fault_end(f, "")
}

/// Ends the running thread for fault `f` (its process with it); `more` follows the fault
/// in the `PROC` line.
fn fault_end(f: UserFault, more: &str) -> ! {
    let pid = exo_percpu::pid();
    if let Some(t) = current() {
        t.value.store(u64::from(f.vector), Ordering::Relaxed);
        t.addr.store(f.addr, Ordering::Relaxed);
        t.error.store(f.error_code, Ordering::Relaxed);
        t.end.store(FAULTED, Ordering::Release);
    }
    let mut why = arrayvec::ArrayString::<96>::new();
    let _ = if f.vector == 14 {
        core::fmt::write(&mut why, format_args!("#PF at {:#x}{more}", f.addr))
    } else {
        core::fmt::write(&mut why, format_args!("{}{more}", f.mnemonic()))
    };
    finish(pid, Death::Fault(f), &why)
}

/// Why a demand-zero page could not be brought in, after the fault in the `PROC` line.
const NO_DEMAND_FRAME: &str = ": no memory for a demand-zero page";

/// The trap module's demand-fault hook: a not-present page fault at user address `addr`
/// (error code `error`, raised by ring 3 if `user`, else by a user copy), interrupts off
/// but on where it was raised. A demand-zero page of the running process's space is
/// brought in ([`super::aspace::AddressSpace::fault_in`]): `true`, the access is retried.
/// A thread of no process (a kernel test's) has no such page: `false`, as for any other
/// fault, which then stands.
///
/// Without a frame for the page (see `fault_in`): from ring 3 the thread ends here, its
/// process killed as by the `#PF` with that reason; from a user copy the process is
/// killed with that reason and the copy fails (`EFAULT`), and the system call's return
/// ends the thread. Nothing was taken, the kernel goes on.
pub fn demand_fault(addr: u64, error: u64, user: bool) -> bool {
    use super::aspace::Demand;
    // On the thread's own stack (a page fault has no IST stack), raised with interrupts
    // on: they may be on here too, as the space's locks want.
    exo_arch::cpu::sti();
    let d = process::with_current(|a| a.fault_in(addr, error & 2 != 0, error & 16 != 0));
    exo_arch::cpu::cli();
    match d {
        Some(Demand::Mapped | Demand::Retry) => true,
        Some(Demand::NoMemory) if user => fault_end(
            UserFault {
                vector: 14,
                error_code: error,
                addr,
            },
            NO_DEMAND_FRAME,
        ),
        Some(Demand::NoMemory) => {
            exo_arch::cpu::sti();
            no_demand_frame(addr);
            exo_arch::cpu::cli();
            false
        }
        Some(Demand::Refused) | None => false,
    }
}

/// A user copy found no frame for the demand-zero page at `addr`: the process is killed
/// with that reason (interrupts on).
fn no_demand_frame(addr: u64) {
    let mut why = arrayvec::ArrayString::<96>::new();
    let _ = core::fmt::write(&mut why, format_args!("#PF at {addr:#x}{NO_DEMAND_FRAME}"));
    process::kill_own(0x100 + 14, &why);
}

/// Brings in the demand-zero pages of `[va, va + len)` in the running process's space
/// (interrupts on), in order, up to the first page that is none or cannot be (no frame:
/// the process is killed, as for a fault). Returns how many it brought in. For a user copy
/// made with interrupts off (`write`'s into a console ring), which a demand-zero page fails
/// (`EFAULT`: its fault cannot take the space's locks there): the caller brings the pages
/// in with this and copies again.
pub fn fault_in_user(va: u64, len: u64) -> u64 {
    use super::aspace::Demand;
    if len == 0 || !exo_arch::usercopy::is_user_range(va, len) {
        return 0;
    }
    let mut n = 0;
    let mut page = va & !0xFFF;
    while page < va + len {
        match process::with_current(|a| a.fault_in(page, false, false)) {
            Some(Demand::Mapped) => n += 1,
            Some(Demand::NoMemory) => {
                no_demand_frame(page);
                break;
            }
            // Resident already (brought in by another thread if it was a demand-zero
            // page); a later page may still be one.
            Some(Demand::Retry) => {}
            Some(Demand::Refused) | None => break,
        }
        page += 0x1000;
    }
    n
}

/// The syscall stub's hook: the return address is not a canonical user address (a
/// `syscall` in the last bytes of user space, or a frame the kernel changed): the thread
/// dies instead of returning (interrupts are off; GS is the kernel's).
pub extern "C" fn bad_return(_frame: &mut SyscallFrame) -> ! {
    let pid = exo_percpu::pid();
    if let Some(t) = current() {
        t.end.store(BAD_RETURN, Ordering::Release);
    }
    finish(pid, Death::BadReturn, "bad syscall frame")
}

fn death_of(t: &Task) -> Option<Death> {
    let value = t.value.load(Ordering::Relaxed);
    match t.end.load(Ordering::Acquire) {
        EXITED => Some(Death::Exit(value)),
        FAULTED => Some(Death::Fault(UserFault {
            vector: value as u8,
            error_code: t.error.load(Ordering::Relaxed),
            addr: t.addr.load(Ordering::Relaxed),
        })),
        BAD_RETURN => Some(Death::BadReturn),
        NOT_ENTERED => Some(Death::NotEntered),
        KILLED_WITH_PROCESS => Some(Death::WithProcess),
        _ => None,
    }
}

/// The record of standalone thread `pid` (joined: it ended), freed for reuse.
pub fn reap(pid: u64) -> Option<Report> {
    let t = record(pid)?;
    let death = death_of(t);
    let r = Report {
        pid,
        syscalls: t.syscalls.load(Ordering::Relaxed),
        death,
    };
    if death.is_some() {
        free(t, pid);
    }
    Some(r)
}

/// Why [`join`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// No thread `tid` in process `pid`.
    NoSuchThread,
    /// Someone else joins it already.
    Busy,
    /// The caller's process is being killed.
    Interrupted,
}

/// [`start`] of a process's first thread stops here once the thread is spawned (it may
/// run, end and be joined) and before it returns, so a test can make the spawner slow (a
/// vCPU descheduled by its host). The process's other threads pass.
pub static START_HOLD: HoldPoint = HoldPoint::new();
/// A thread's end stops here once its process has been told (the process may have ended
/// with it) and before the kernel thread ends: a thread late to finish its end when its
/// process is reaped.
pub static FINISH_HOLD: HoldPoint = HoldPoint::new();

/// [`join`] stops here after it found thread `tid` in process `pid` and before it claims
/// the join, so a test can free and reuse the record in that window.
pub static JOIN_HOLD: HoldPoint = HoldPoint::new();

/// Joins thread `tid` of process `pid` for thread `me`: waits until it ended, frees its
/// record and returns its exit code (the low 32 bits of its `thread_exit` value; the fault's
/// vector + 0x100 if it was killed by one).
/// Gives up when `abort()` holds (the caller's process is dying).
pub fn join(pid: u64, tid: u64, me: u64, abort: &dyn Fn() -> bool) -> Result<u64, JoinError> {
    let t = record(tid)
        .filter(|t| t.pid.load(Ordering::Relaxed) == pid)
        .ok_or(JoinError::NoSuchThread)?;
    JOIN_HOLD.pass();
    // Claimed by the thread's own id: if the record was freed (and reused) since the look-up
    // above, it no longer holds that id, and the claim fails instead of joining whichever
    // thread took the slot.
    if let Err(j) = t
        .joiner
        .compare_exchange(tid, me, Ordering::AcqRel, Ordering::Relaxed)
    {
        return Err(if j != 0 && record(tid).is_some() {
            JoinError::Busy
        } else {
            JoinError::NoSuchThread
        });
    }
    let k = Tid::from_raw(t.sched.load(Ordering::Acquire));
    match sched::join_unless(k, u64::MAX, abort) {
        Ok(_) => {
            let code = match death_of(t) {
                // The ABI's `value & 0xffff_ffff`: whole, a value such as -3 read as an
                // error (ESRCH) after a join that succeeded.
                Some(Death::Exit(c)) => c & 0xffff_ffff,
                Some(Death::Fault(f)) => 0x100 + u64::from(f.vector),
                _ => KILLED,
            };
            free(t, tid);
            Ok(code)
        }
        Err(e) => {
            t.joiner.store(tid, Ordering::Release);
            Err(if e == SchedError::Interrupted {
                JoinError::Interrupted
            } else {
                JoinError::NoSuchThread
            })
        }
    }
}

/// Calls `f(kernel thread)` for every thread record of process `pid` (its map,
/// [`BY_PROC`]), for a kill that has set the process's `dying` (sequentially consistent)
/// before: `f` wakes the thread, which then sees `dying`. A thread being started meanwhile
/// (`thread_create`, from a thread of the process on another CPU) may be missed, as it was
/// by the scan of the whole table that came before: its bit is set (a locked instruction,
/// [`start`]) after this call read that word, so after `dying` was set in the one order of
/// sequentially consistent operations; its record is published and its kernel thread
/// spawned after the bit, and it runs only then, so its check before ring 3 (`user_main`'s
/// `exit_if_dying_for_return`) sees `dying` and it ends there. Likewise a record seen
/// without its kernel thread yet (`sched` 0: its start is before `Builder::spawn_then`'s
/// publication) is of a thread that has not run. A thread missed so never blocks in the
/// process; every thread this finds is woken, wherever it waits (IPC, futex, sleep, join),
/// and CPUs running the space are kicked by the caller.
pub fn for_each_of(pid: u64, mut f: impl FnMut(Tid)) {
    each_in(map_of(pid), |t| {
        if started(t).is_some() && t.pid.load(Ordering::Relaxed) == pid {
            let k = t.sched.load(Ordering::Acquire);
            if k != 0 {
                f(Tid::from_raw(k));
            }
        }
    });
}

/// How long a reap waits ([`join_all_deadline`]), for all of a process's kernel threads
/// together, before it counts those not ended as stuck: the shootdown's deadline under emulation
/// (`smp::tlb::DEADLINE_EMULATED_MS`), as an emulated CPU among hundreds on a few host cores
/// may not run for seconds; a thread that ended normally is joined at once.
pub const JOIN_ALL_MS: u64 = crate::smp::tlb::DEADLINE_EMULATED_MS;

/// When a join of every thread of a process that starts now counts those not ended as stuck
/// ([`JOIN_ALL_MS`] from now; a test shortens it: [`set_join_all_ms`]). A reap joins until
/// this or its caller's deadline, whichever comes first ([`join_all_until`]). Until
/// 2026-12-05 the joins had no deadline: a kernel thread that never finished its end held
/// the reaper (a parent's `wait`, the `init` job's end) for good, with no verdict (found by
/// review).
pub fn join_all_deadline() -> u64 {
    let ms = JOIN_ALL_WAIT.load(Ordering::Relaxed);
    crate::smp::time::Deadline::after_ms(ms).tsc()
}

/// [`JOIN_ALL_MS`] as [`join_all_deadline`] uses it (a test shortens it: [`set_join_all_ms`]).
static JOIN_ALL_WAIT: AtomicU64 = AtomicU64::new(JOIN_ALL_MS);

/// Test support: sets how long [`join_all_deadline`] is from now; returns the previous value.
pub fn set_join_all_ms(ms: u64) -> u64 {
    JOIN_ALL_WAIT.swap(ms, Ordering::Relaxed)
}

/// Joins every thread of process `pid` (all ended: the process's live count is 0) and
/// frees their records, waiting until the TSC reaches `deadline` (0: no wait, only threads
/// already ended are joined); returns how many there were. `Err(n)`: `n` kernel threads
/// could not be joined (someone else joins them, none is known, or one had not ended by
/// the deadline), so they may still run in the process's space: their records are kept,
/// and the caller must not drop the space.
///
/// The records are those of the process's map ([`BY_PROC`]): every one was started before
/// its thread counted itself in the process's live count, which is 0 now, so every bit is
/// set and seen (no record of the process is started any more).
pub fn join_all_until(pid: u64, deadline: u64) -> Result<usize, usize> {
    let (mut n, mut stuck) = (0, 0);
    each_in(map_of(pid), |t| {
        let Some(tid) = started(t) else {
            return;
        };
        if t.pid.load(Ordering::Relaxed) != pid {
            return;
        }
        let k = t.sched.load(Ordering::Acquire);
        // Ended in user terms; at most finishing its switch away: a short wait. Already
        // joined (no such thread) means gone as well; a timeout, stuck (left joinable).
        let gone = k != 0
            && matches!(
                sched::join_until(Tid::from_raw(k), deadline),
                Ok(_) | Err(SchedError::NoSuchThread)
            );
        if gone {
            free(t, tid);
            n += 1;
        } else {
            stuck += 1;
        }
    });
    if stuck == 0 { Ok(n) } else { Err(stuck) }
}
