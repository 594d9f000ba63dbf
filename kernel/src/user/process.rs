//! Processes: a program from the initrd in an address space of its own, run by one user
//! thread (`task`) whose pid is the process's. [`spawn`] loads and starts one; [`wait`]
//! joins its thread, then drops its space (every frame back, the space evicted from every
//! CPU that ran it) and returns its status; the `init` job starts process 1 and ends the
//! machine when it ends.
//!
//! Status encoding (`wait`): the exit code's low 8 bits, or `0x100 + vector` for a death by
//! an exception, `0x100 + 128` for a bad system-call frame, `0x100 + 129` for a thread that
//! never reached ring 3 (the ABI in `docs/syscalls.md`).

use super::aspace::AddressSpace;
use super::loader::{self, LoadError};
use super::syscall::Errno;
use super::task::{self, Death};
use crate::sched::{self, Builder, Tid};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Longest path `spawn` accepts.
pub const PATH_MAX: usize = 256;

/// A running process.
#[derive(Debug)]
struct Process {
    pid: u64,
    /// Who may wait for it: the creator's pid (0: the kernel, for process 1).
    parent: u64,
    tid: Tid,
    space: Box<AddressSpace>,
}

/// Processes not yet waited for.
static PROCS: spin::Mutex<Vec<Process>> = spin::Mutex::new(Vec::new());

/// Reserves the process and futex tables' room up front (64 entries each), so that the
/// memory a run of processes leaves behind can be compared with what it started with.
pub fn prepare() {
    let _ = PROCS.lock().try_reserve(64);
    super::futex::prepare();
}

/// Loads `path` from the initrd and starts it with `arg` in RDI, on the CPUs of `b`
/// (callers pass the creator's affinity). Returns the pid.
pub fn spawn(path: &str, arg: u64, b: Builder) -> Result<u64, Errno> {
    let archive = match super::initrd::archive() {
        Some(Ok(a)) => a,
        _ => return Err(Errno::Enoent),
    };
    let entry = archive.find(path).ok_or(Errno::Enoent)?;
    if entry.file_type() != exo_initrd::FileType::Regular {
        return Err(Errno::Eacces);
    }
    let space = Box::new(AddressSpace::new().map_err(|_| Errno::Enomem)?);
    let l = loader::load(&space, entry.data).map_err(|e| match e {
        LoadError::Elf(_) => Errno::Enoexec,
        LoadError::Vm(_) => Errno::Enomem,
    })?;
    let mut procs = PROCS.lock();
    procs.try_reserve(1).map_err(|_| Errno::Enomem)?;
    let (tid, pid) = task::spawn(b.space(space.space()), l.entry, l.stack_top, arg)
        .map_err(|_| Errno::Eagain)?;
    procs.push(Process {
        pid,
        parent: exo_percpu::pid(),
        tid,
        space,
    });
    Ok(pid)
}

/// Waits for process `pid`, a child of the caller, to end and returns its status (see the
/// module header). Not a child (or already being waited for): `ECHILD`.
pub fn wait(pid: u64) -> Result<u64, Errno> {
    let me = exo_percpu::pid();
    let tid = PROCS
        .lock()
        .iter()
        .find(|p| p.pid == pid && p.parent == me)
        .map(|p| p.tid)
        .ok_or(Errno::Echild)?;
    // One waiter joins; a concurrent second one (another thread of the parent) is refused
    // here and the process stays for the first.
    sched::join(tid).map_err(|_| Errno::Echild)?;
    let p = {
        let mut procs = PROCS.lock();
        let k = procs
            .iter()
            .position(|p| p.pid == pid)
            .ok_or(Errno::Echild)?;
        procs.swap_remove(k)
    };
    let status = match task::reap(pid).and_then(|r| r.death) {
        Some(Death::Exit(code)) => code & 0xFF,
        Some(Death::Fault(f)) => 0x100 + u64::from(f.vector),
        Some(Death::BadReturn) => 0x100 + 128,
        Some(Death::NotEntered) | None => 0x100 + 129,
    };
    drop(p); // the thread is gone: the space can go (evicted, frames back)
    Ok(status)
}

/// The address space of the process running on this CPU (its thread is current).
pub fn with_current<R>(f: impl FnOnce(&AddressSpace) -> R) -> Option<R> {
    let pid = exo_percpu::pid();
    let procs = PROCS.lock();
    procs.iter().find(|p| p.pid == pid).map(|p| f(&p.space))
}

/// Waits for every process still in the table (the end of the `init` job: orphans, whose
/// parent ended without waiting). Kernel callers only.
pub fn reap_all() -> usize {
    let mut n = 0;
    loop {
        let next = PROCS.lock().first().map(|p| p.pid);
        let Some(pid) = next else { return n };
        // Adopted by the kernel (pid 0), like init adopting orphans.
        if let Some(p) = PROCS.lock().iter_mut().find(|p| p.pid == pid) {
            p.parent = exo_percpu::pid();
        }
        let _ = wait(pid);
        n += 1;
    }
}

/// The `init` job: starts `path` as the first process with `arg`, waits for it, reaps what
/// is left, and returns its status.
pub fn run_init(path: &str, arg: u64) -> Result<u64, Errno> {
    let pid = spawn(path, arg, Builder::new())?;
    let status = wait(pid);
    let orphans = reap_all();
    if orphans != 0 {
        log::info!("init: {orphans} process(es) left running were reaped");
    }
    status
}
