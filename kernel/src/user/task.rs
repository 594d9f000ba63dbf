//! User threads: a fixed table of records (pid, entry point, system calls counted, how the
//! thread ended), [`spawn`] (a kernel thread that takes the pid and enters ring 3), and the
//! ends: `exit`, a ring-3 fault ([`user_fault`], the trap module's hook) or a system call
//! whose return address is not a canonical user address ([`bad_return`], the syscall
//! stub's hook). Each end prints one `PROC,<pid>,exit,<code>` or `PROC,<pid>,killed,<why>`
//! line and ends only that thread; the kernel goes on.
//!
//! Processes (address spaces, several threads per pid) come later; for now each user thread
//! is its own pid.

use crate::kprintln;
use crate::sched::{self, Builder, KILLED, SchedError, Tid};
use crate::trap::UserFault;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::syscall::SyscallFrame;
use exo_arch::trap::TrapFrame;

/// User threads that can exist at once (their records stay until [`reap`]).
pub const MAX_TASKS: usize = 256;

const ALIVE: u64 = 0;
const EXITED: u64 = 1;
const FAULTED: u64 = 2;
const BAD_RETURN: u64 = 3;
const NOT_ENTERED: u64 = 4;

struct Task {
    /// 0: free.
    pid: AtomicU64,
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
}

impl Task {
    const fn new() -> Task {
        Task {
            pid: AtomicU64::new(0),
            entry: AtomicU64::new(0),
            stack: AtomicU64::new(0),
            arg: AtomicU64::new(0),
            syscalls: AtomicU64::new(0),
            end: AtomicU64::new(ALIVE),
            value: AtomicU64::new(0),
            addr: AtomicU64::new(0),
            error: AtomicU64::new(0),
        }
    }
}

static TASKS: [Task; MAX_TASKS] = [const { Task::new() }; MAX_TASKS];
static NEXT_PID: AtomicU64 = AtomicU64::new(1);

fn slot(pid: u64) -> &'static Task {
    &TASKS[pid as usize % MAX_TASKS]
}

/// How a user thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// `exit(code)`.
    Exit(u64),
    /// Killed by an exception it raised in ring 3.
    Fault(UserFault),
    /// Killed: a system call's return address was not a canonical user address.
    BadReturn,
    /// It never reached ring 3 (see `sched::enter_user`).
    NotEntered,
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

/// Why [`spawn`] failed.
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

/// Starts a user thread (placed as `b` says): a kernel thread that takes a new pid and
/// enters ring 3 at `entry` with stack `stack_top` and `arg` in RDI. Returns its thread id
/// (`join` gives its exit code, [`KILLED`] if it was killed) and its pid (for [`reap`]).
pub fn spawn(b: Builder, entry: u64, stack_top: u64, arg: u64) -> Result<(Tid, u64), SpawnError> {
    let pid = (0..MAX_TASKS)
        .map(|_| NEXT_PID.fetch_add(1, Ordering::Relaxed))
        .find(|&pid| {
            slot(pid)
                .pid
                .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or(SpawnError::TableFull)?;
    let t = slot(pid);
    t.entry.store(entry, Ordering::Relaxed);
    t.stack.store(stack_top, Ordering::Relaxed);
    t.arg.store(arg, Ordering::Relaxed);
    t.syscalls.store(0, Ordering::Relaxed);
    t.end.store(ALIVE, Ordering::Relaxed);
    match b.spawn(user_main, pid) {
        Ok(tid) => Ok((tid, pid)),
        Err(e) => {
            t.pid.store(0, Ordering::Release);
            Err(SpawnError::Sched(e))
        }
    }
}

/// A user thread's first code (kernel mode): take the pid, go to ring 3.
fn user_main(pid: u64) -> u64 {
    let t = slot(pid);
    let e = match sched::set_current_pid(pid) {
        Ok(()) => sched::enter_user(
            t.entry.load(Ordering::Relaxed),
            t.stack.load(Ordering::Relaxed),
            t.arg.load(Ordering::Relaxed),
        ),
        Err(e) => e,
    };
    t.end.store(NOT_ENTERED, Ordering::Release);
    kprintln!("PROC,{pid},killed,cannot enter ring 3: {e}");
    KILLED
}

/// Counts a system call for the running user thread (only it writes its count: a plain
/// load and store, no locked instruction on the system-call path).
#[inline(always)]
pub fn count_syscall() {
    let c = &slot(exo_percpu::pid()).syscalls;
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// `exit(code)`: the running user thread ends.
pub fn exit(code: u64) -> ! {
    let pid = exo_percpu::pid();
    let t = slot(pid);
    t.value.store(code, Ordering::Relaxed);
    t.end.store(EXITED, Ordering::Release);
    kprintln!("PROC,{pid},exit,{code}");
    sched::exit(code)
}

/// The trap module's hook: an exception from ring 3 kills the thread that raised it.
pub fn user_fault(_frame: &mut TrapFrame, f: UserFault) {
    let pid = exo_percpu::pid();
    let t = slot(pid);
    t.value.store(u64::from(f.vector), Ordering::Relaxed);
    t.addr.store(f.addr, Ordering::Relaxed);
    t.error.store(f.error_code, Ordering::Relaxed);
    t.end.store(FAULTED, Ordering::Release);
    if f.vector == 14 {
        kprintln!("PROC,{pid},killed,#PF at {:#x}", f.addr);
    } else {
        kprintln!("PROC,{pid},killed,{}", f.mnemonic());
    }
    sched::exit(KILLED)
}

/// The syscall stub's hook: the return address is not a canonical user address (a
/// `syscall` in the last bytes of user space, or a frame the kernel changed): the thread
/// dies instead of returning (interrupts are off; GS is the kernel's).
pub extern "C" fn bad_return(_frame: &mut SyscallFrame) -> ! {
    let pid = exo_percpu::pid();
    slot(pid).end.store(BAD_RETURN, Ordering::Release);
    kprintln!("PROC,{pid},killed,bad syscall frame");
    sched::exit(KILLED)
}

/// The record of user thread `pid` (joined: it ended), freed for reuse.
pub fn reap(pid: u64) -> Option<Report> {
    let t = slot(pid);
    if pid == 0 || t.pid.load(Ordering::Acquire) != pid {
        return None;
    }
    let value = t.value.load(Ordering::Relaxed);
    let death = match t.end.load(Ordering::Acquire) {
        EXITED => Some(Death::Exit(value)),
        FAULTED => Some(Death::Fault(UserFault {
            vector: value as u8,
            error_code: t.error.load(Ordering::Relaxed),
            addr: t.addr.load(Ordering::Relaxed),
        })),
        BAD_RETURN => Some(Death::BadReturn),
        NOT_ENTERED => Some(Death::NotEntered),
        _ => None,
    };
    let r = Report {
        pid,
        syscalls: t.syscalls.load(Ordering::Relaxed),
        death,
    };
    if death.is_some() {
        t.pid.store(0, Ordering::Release);
    }
    Some(r)
}
