//! Processes: a program from the initrd in an address space of its own, run by one or more
//! user threads (`task`) that share its pid. [`spawn`] loads and starts one (its first
//! thread has the pid as thread id); [`thread_create`] adds threads, [`thread_join`] joins
//! one; the process ends when its last thread ends, or at once when one thread calls
//! `exit_group` or dies by a fault ([`end_process`]): the others, on every CPU, leave at
//! their next way back to ring 3 (the CPUs running its space are interrupted, its blocked
//! threads woken, and every sleep in the `user` layer gives up for a dying process).
//! Its last thread's end gives its memory back (every user page, its shared regions);
//! [`wait_until`] waits until no thread is left, joins them, drops the space (the root table and
//! PCID; the space evicted from every CPU that ran it) and returns the status. One `PROC` line
//! per process, printed by the thread whose end decided it.
//!
//! Status encoding (`wait`): the exit code's low 8 bits, or `0x100 + vector` for a death by
//! an exception, `0x100 + 128` for a bad system-call frame, `0x100 + 129` for a thread that
//! never reached ring 3, `0x100 + 130` for an orphan still running when the `init` job ended
//! (the ABI in `docs/syscalls.md`).
//!
//! Records: a fixed table keyed by `pid % MAX_PROCS` (a pid is claimed together with its
//! first thread's record, so both slots are free). A process whose parent was reaped
//! before it is an orphan: the next `spawn` (or the end of the `init` job) reaps it once
//! it has ended. Each process tree has a share of the process and thread tables
//! (`limits`): a spawn or `thread_create` over it is `EAGAIN`; a record's share is given
//! back when the record is freed.

use super::aspace::{AddressSpace, HoldPoint};
use super::limits;
use super::loader::{self, LoadError};
use super::syscall::Errno;
use super::task::{self, Death, JoinError};
use crate::kprintln;
use crate::sched::Held;
use crate::sched::{self, Builder, SchedError, Tid};
use crate::smp::time::Deadline;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Longest path `spawn` accepts.
pub const PATH_MAX: usize = 256;
/// Processes that can exist at once (not yet waited for), all trees together (each tree has
/// a share: `limits`).
pub const MAX_PROCS: usize = 1024;
/// Threads of one process whose records exist at once (running, or ended and not joined).
pub const MAX_PROC_THREADS: u32 = 64;
/// Frames a user thread makes the kernel hold while it runs, charged to its process
/// (`mm::commit`) from its start to its end: its kernel stack and the stack's page table.
/// Until 2026-12-05 they were not charged, and a thread bomb across processes (the thread
/// table's 1024 threads, 36 MiB in a release kernel) could take the kernel's whole default
/// reserve at 512 MiB.
pub const THREAD_FRAMES: u64 = sched::STACK_PAGES + 1;

const NO_STATUS: u64 = u64::MAX;
/// `waiter` of a slot being set up or freed (no kernel thread has this raw id).
const CLAIMED: u64 = u64::MAX;
/// Low half of [`unwaited`] (a kernel thread's raw id has its slot index there).
const NOBODY: u64 = 0xFFFF_FFFE;
/// `parent` of a process whose parent was reaped first.
const ORPHAN: u64 = u64::MAX;
/// `waiter` of a process reaped while one of its threads had not finished its end (see
/// [`retry_stranded`]): no kernel thread has this raw id, and it is no [`unwaited`] value.
const STRANDED: u64 = u64::MAX - 2;
/// `parent` of such a process: nobody's child (no caller's pid, not [`ORPHAN`]).
const STRANDED_PARENT: u64 = u64::MAX - 1;

struct Proc {
    /// 0: free.
    pid: AtomicU64,
    /// Who may wait for it: the creator's pid (0: the kernel), or [`ORPHAN`].
    parent: AtomicU64,
    /// Only through [`Proc::space_read`] and [`Proc::space_write`] (counted holds).
    space_lock: spin::RwLock<Option<Box<AddressSpace>>>,
    /// Threads started and not ended.
    live: AtomicU32,
    /// Thread records not yet joined.
    threads: AtomicU32,
    /// Set once the process must end: every thread leaves at its next chance.
    dying: AtomicBool,
    /// The status `wait` returns, set once ([`NO_STATUS`] until then).
    status: AtomicU64,
    /// The kernel thread waiting for it (`Tid::raw`), [`unwaited`] of its pid while none
    /// does, or [`CLAIMED`] while the slot is set up or freed.
    waiter: AtomicU64,
    /// Its IPC handles (a copy of the parent's at spawn; closed when its last thread ends).
    handles: crate::ipc::HandleTable,
}

impl Proc {
    const fn new() -> Proc {
        Proc {
            pid: AtomicU64::new(0),
            parent: AtomicU64::new(0),
            space_lock: spin::RwLock::new(None),
            live: AtomicU32::new(0),
            threads: AtomicU32::new(0),
            dying: AtomicBool::new(false),
            status: AtomicU64::new(NO_STATUS),
            waiter: AtomicU64::new(CLAIMED),
            handles: crate::ipc::HandleTable::new(),
        }
    }
}

impl Proc {
    /// The space, read-locked. Held with interrupts on across a kill or a thread's start,
    /// so counted ([`Held`]): a kernel thread failing with it is not ended alone (the next
    /// writer, a reap, would spin for good). Taken by [`Held::take`] (it yields to a holder
    /// this CPU preempted).
    fn space_read(&self) -> Held<spin::RwLockReadGuard<'_, Option<Box<AddressSpace>>>> {
        Held::take(|| self.space_lock.try_read())
    }

    /// The space, write-locked (counted as [`Proc::space_read`]).
    fn space_write(&self) -> Held<spin::RwLockWriteGuard<'_, Option<Box<AddressSpace>>>> {
        Held::take(|| self.space_lock.try_write())
    }
}

static PROCS: [Proc; MAX_PROCS] = [const { Proc::new() }; MAX_PROCS];

/// The slots of [`PROCS`] in use, a bit each: set by the spawn that claims a slot right
/// after its pid's claim, cleared by whoever frees it (a reap, a failed spawn) right before
/// its pid goes back to 0, so only the slot's owner touches its bit. A slot whose bit a
/// scan finds clear is free or being freed (its parent already reset, nobody may claim it
/// as a waiter): nothing a scan looks for. The scans of the table (a reap's orphaning of
/// the reaped process's children, the reaps of orphans and of stranded processes, the end
/// of the `init` job: [`used`]) visit the slots in use only: until 2026-12-06 each looked
/// at all [`MAX_PROCS`], the reap's about 6,000 of icount `proc.spawn`'s 138,500
/// instructions (the kill's and the reap's scans of the thread records: `task::BY_PROC`).
static USED: [AtomicU64; MAX_PROCS / 64] = [const { AtomicU64::new(0) }; MAX_PROCS / 64];

const _: () = assert!(MAX_PROCS.is_multiple_of(64));

/// Marks slot of `pid` used or free in [`USED`] (its owner only).
fn mark_used(pid: u64, used: bool) {
    let i = pid as usize % MAX_PROCS;
    let bit = 1 << (i % 64);
    if used {
        USED[i / 64].fetch_or(bit, Ordering::AcqRel);
    } else {
        USED[i / 64].fetch_and(!bit, Ordering::AcqRel);
    }
}

/// The first slot in use at or after `from`, its word read now.
fn next_used(from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut bits = USED.get(w)?.load(Ordering::Acquire) & (!0u64 << (from % 64));
    loop {
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        w += 1;
        bits = USED.get(w)?.load(Ordering::Acquire);
    }
}

/// The slots in use, in order, each word read when the walk reaches it (as the scan of
/// every slot's pid that came before: a slot taken ahead of the walk is visited).
fn used() -> impl Iterator<Item = &'static Proc> {
    let mut from = 0;
    core::iter::from_fn(move || {
        let i = next_used(from)?;
        from = i + 1;
        Some(&PROCS[i])
    })
}

/// [`spawn`] stops here with the record set up and before it starts the first thread, so a
/// test can wait for it, or reap another process, in that window.
pub static SPAWN_HOLD: HoldPoint = HoldPoint::new();
/// [`wait_until`] stops here after its checks and before it claims the process, so a test can
/// reap the process and reuse its slot in that window.
pub static WAIT_HOLD: HoldPoint = HoldPoint::new();
/// `reap_orphans` stops here after it found an ended orphan and before it claims it.
pub static ORPHAN_HOLD: HoldPoint = HoldPoint::new();
/// `kill_child` stops here after its checks (under the space's read lock) and before the
/// kill, so a test can reap the process and let a spawn take its slot in that window.
pub static KILL_HOLD: HoldPoint = HoldPoint::new();
/// `reap` stops here once it has taken the space, before it frees the pid.
pub static REAP_HOLD: HoldPoint = HoldPoint::new();
/// [`retry_stranded`] stops here once it has claimed a process kept by its reap (`waiter`
/// [`CLAIMED`]), before it tries to join its threads.
pub static STRANDED_HOLD: HoldPoint = HoldPoint::new();
/// [`thread_create`] stops here with the new thread's id claimed and counted live, before
/// it starts the thread, so a test can kill the process while a thread is being started.
pub static CREATE_HOLD: HoldPoint = HoldPoint::new();
/// [`thread_ended`] of a process's last thread stops here, the process counted out (no
/// thread left: `wait` no longer blocks), before it gives the memory back: a last thread
/// slow to finish its end.
pub static END_HOLD: HoldPoint = HoldPoint::new();
/// Orphans not yet reaped.
static ORPHANS: AtomicU32 = AtomicU32::new(0);
/// Processes reaped with a thread not joined, their space kept in their record ([`reap`]).
static STRANDED_COUNT: AtomicU32 = AtomicU32::new(0);

fn slot(pid: u64) -> &'static Proc {
    &PROCS[pid as usize % MAX_PROCS]
}

/// `waiter` of process `pid` while nobody waits for it. It names the process (its pid's
/// low half; no kernel thread has such a raw id), so a waiter claims this process, never
/// one that took the slot since the waiter looked (the same value comes back only with a
/// pid 2^32 later).
fn unwaited(pid: u64) -> u64 {
    (pid << 32) | NOBODY
}

/// The kernel thread `waiter` names, if one waits.
fn waiting(w: u64) -> Option<Tid> {
    ((w as u32 as usize) < sched::MAX_THREADS).then(|| Tid::from_raw(w))
}

fn proc(pid: u64) -> Option<&'static Proc> {
    let p = slot(pid);
    (pid != 0 && p.pid.load(Ordering::Acquire) == pid).then_some(p)
}

/// The calling thread's pid: 0 for a kernel thread (whose GS pid slot is stale).
pub(super) fn caller_pid() -> u64 {
    pid_of_uid(sched::current_uid())
}

/// The pid of the calling thread, whose `uid` is known: the GS slot (one load, right on any
/// CPU: the switch sets it for user threads) unless the caller is a kernel thread.
#[inline(always)]
fn pid_of_uid(uid: u64) -> u64 {
    if uid == 0 { 0 } else { exo_percpu::pid() }
}

/// A process found not being killed by [`live`]: its handle table, and whether it is being
/// killed by now (one load: the IPC fastpath reads it again once its caller is marked
/// blocked, since a kill that comes after the first check does not find it blocked).
#[derive(Clone, Copy)]
pub struct Live(&'static Proc);

impl Live {
    /// Its handle table.
    #[inline(always)]
    pub fn handles(self) -> &'static crate::ipc::HandleTable {
        &self.0.handles
    }

    /// Whether it is being killed now.
    #[inline(always)]
    pub fn dying(self) -> bool {
        self.0.dying.load(Ordering::Acquire)
    }
}

/// The process whose thread has `uid`, unless it is not a process or is being killed (the
/// IPC fastpath's look-up: the general path handles both). The thread belongs to the
/// process throughout, so the slot cannot be reused under it.
#[inline(always)]
pub fn live(uid: u64) -> Option<Live> {
    let p = proc(pid_of_uid(uid))?;
    (!p.dying.load(Ordering::Acquire)).then_some(Live(p))
}

/// The IPC entry's one look-up of the calling process: the thread ends here if the process
/// is being killed, before `f` and after it (what [`exit_if_dying`] checks on every other
/// way back to ring 3); `f` gets its handle table (`None`: not a process). The check before
/// keeps a thread of a dying process from taking or sending a message (a kill that lands
/// later is seen by every wait: `ipc::aborting`). The thread belongs to the process
/// throughout, so the slot cannot be reused under it.
#[inline(always)]
pub fn ipc_syscall(uid: u64, f: impl FnOnce(Option<&crate::ipc::HandleTable>)) {
    let p = proc(pid_of_uid(uid));
    if p.is_some_and(|p| p.dying.load(Ordering::Acquire)) {
        task::die_killed();
    }
    run_then_check(p, f);
}

/// [`ipc_syscall`] for the end of an operation that was already under way (a parked call
/// resumed): the dying check after `f` only, so that `f` collects what the operation took
/// (a handle in flight is the thread's to install or drop).
pub fn ipc_syscall_resumed(uid: u64, f: impl FnOnce(Option<&crate::ipc::HandleTable>)) {
    run_then_check(proc(pid_of_uid(uid)), f);
}

/// `f` on `p`'s handle table, then the dying check of both IPC entries, interrupts off from
/// it to ring 3 (as [`exit_if_dying_for_return`]).
#[inline(always)]
fn run_then_check(p: Option<&Proc>, f: impl FnOnce(Option<&crate::ipc::HandleTable>)) {
    f(p.map(|p| &p.handles));
    exo_arch::cpu::cli();
    if p.is_some_and(|p| p.dying.load(Ordering::Acquire)) {
        exo_arch::cpu::sti();
        task::die_killed();
    }
}

/// Whether the calling thread's process is being killed (its sleeps give up).
pub fn dying() -> bool {
    proc(caller_pid()).is_some_and(|p| p.dying.load(Ordering::Acquire))
}

/// The check on every way back to ring 3 (system-call return, interrupt return, a new
/// thread's start): a thread whose process is being killed ends here.
#[inline]
pub fn exit_if_dying() {
    if killed_here() {
        task::die_killed();
    }
}

/// Whether the running thread's process (by the per-CPU pid) is being killed.
#[inline(always)]
fn killed_here() -> bool {
    let pid = exo_percpu::pid();
    let p = slot(pid);
    p.dying.load(Ordering::Acquire) && p.pid.load(Ordering::Relaxed) == pid && pid != 0
}

/// [`exit_if_dying`] as the last check before a system call (or a new thread) goes to ring
/// 3: it returns with interrupts off, and they stay off until `sysretq`/`iretq` (whose
/// caller disables them anyway). A kill's kick that comes after the check stays pending and
/// is taken in ring 3, where the interrupt's return hook ends the thread. Until 2026-12-05
/// the check ran with interrupts on: a kick landing between it and the exit stub's `cli`
/// was taken in ring 0 (no return hook there) and used up, and the thread ran on in ring 3
/// until its next tick, for good without one (icount; found by review;
/// `user.kill_kick_after_the_last_check_is_not_lost`).
#[inline]
pub fn exit_if_dying_for_return() {
    exo_arch::cpu::cli();
    if killed_here() {
        exo_arch::cpu::sti();
        task::die_killed();
    }
}

/// Test switch (`user.kill_kick_after_the_last_check_is_not_lost`): the next `write` of a
/// process to pass [`exit_if_dying_for_return`]'s check kills its own process right after it
/// and sends its own CPU the kill's kick, as a kill from another CPU landing there would
/// (`write` only: the other calls' return pays nothing for it).
pub static KILL_AFTER_CHECK: AtomicBool = AtomicBool::new(false);

/// The `write` call's [`KILL_AFTER_CHECK`], right after [`exit_if_dying_for_return`]
/// (interrupts off).
#[inline(always)]
pub fn kill_after_check_if_armed() {
    if KILL_AFTER_CHECK.load(Ordering::Relaxed) {
        kill_after_check();
    }
}

#[cold]
fn kill_after_check() {
    let pid = exo_percpu::pid();
    let p = slot(pid);
    if pid == 0
        || p.pid.load(Ordering::Relaxed) != pid
        || !KILL_AFTER_CHECK.swap(false, Ordering::Relaxed)
    {
        return;
    }
    kill(p, STATUS_SIGKILL, "SIGKILL");
    let g = exo_percpu::IrqGuard::new();
    let me = crate::smp::cpus::this(&g).hot.apic_id;
    let _ = exo_arch::apic::send_ipi(
        exo_arch::apic::Dest::Id(me),
        exo_arch::apic::Delivery::Fixed(crate::smp::cpus::VEC_WAKE),
    );
}

/// The trap module's return-to-ring-3 hook.
pub fn on_user_return() {
    exit_if_dying();
}

/// Reserves the futex table's room up front (64 entries) and builds the initrd's index (a
/// heap table kept for good), so that the memory a run of processes leaves behind can be
/// compared with what it started with.
pub fn prepare() {
    super::futex::prepare();
    let _ = super::initrd::index();
}

/// Loads `path` from the initrd and starts it with `arg` in RDI, on the CPUs of `b`
/// (callers pass the creator's affinity). Returns the pid.
pub fn spawn(path: &str, arg: u64, b: Builder) -> Result<u64, Errno> {
    spawn_with(path, arg, b, proc(caller_pid()).map(|pp| &pp.handles))
}

/// [`spawn`] with the handles of `handles` (`None`: none) instead of the creator's. Kernel
/// tests give a process they start endpoints of their own this way.
pub fn spawn_with(
    path: &str,
    arg: u64,
    b: Builder,
    handles: Option<&crate::ipc::HandleTable>,
) -> Result<u64, Errno> {
    reap_orphans();
    // A malformed archive or executable is named in the log (the errno alone made a
    // corrupt initrd look like a missing file).
    let index = match super::initrd::index() {
        Some(Ok(i)) => i,
        Some(Err(e)) => {
            log::warn!("spawn {path}: the initrd is not a valid archive: {e}");
            return Err(Errno::Enoent);
        }
        None => return Err(Errno::Enoent),
    };
    let entry = index.find(path).ok_or(Errno::Enoent)?;
    if entry.file_type() != exo_initrd::FileType::Regular {
        // Not a regular file: as if absent (docs/syscalls.md).
        return Err(Errno::Enoent);
    }
    start_image(path, entry.data, arg, b, handles)
}

/// [`spawn_with`] of the executable `image` (named `name` in the log) instead of a file of
/// the initrd. Kernel tests run executables of their own this way.
pub fn spawn_image(
    name: &str,
    image: &[u8],
    arg: u64,
    b: Builder,
    handles: Option<&crate::ipc::HandleTable>,
) -> Result<u64, Errno> {
    reap_orphans();
    start_image(name, image, arg, b, handles)
}

/// Loads `image` into a new space and starts its process (the part of [`spawn_with`]
/// after the lookup; `path` names it in the log).
fn start_image(
    path: &str,
    image: &[u8],
    arg: u64,
    b: Builder,
    handles: Option<&crate::ipc::HandleTable>,
) -> Result<u64, Errno> {
    let parent = caller_pid();
    // Its slot and first thread in the creator's share of the tables (`limits`), before
    // anything is loaded: a tree at its limit is refused at no cost.
    let share = limits::reserve_spawn(parent)?;
    let refused = |e: Errno| {
        limits::unreserve_spawn(parent);
        e
    };
    // Fallible: with the heap empty `Box::new` stopped the kernel (a user program could
    // arrange it: found by review, 2026-12-04).
    let space = AddressSpace::new().map_err(|_| refused(Errno::Enomem))?;
    let space = crate::mm::kalloc::try_box(space).map_err(|_| refused(Errno::Enomem))?;
    let l = loader::load(&space, image).map_err(|e| {
        refused(match e {
            LoadError::Elf(_) => {
                log::warn!("spawn {path}: {e}");
                Errno::Enoexec
            }
            LoadError::Vm(_) => Errno::Enomem,
        })
    })?;
    // The first thread's kernel stack (given back with the space if the start fails).
    space
        .account()
        .charge(THREAD_FRAMES)
        .map_err(|_| refused(Errno::Enomem))?;
    let pid = task::claim_id(|id| {
        let claimed = slot(id)
            .pid
            .compare_exchange(0, id, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if claimed {
            mark_used(id, true);
        }
        claimed
    })
    .map_err(|_| refused(Errno::Eagain))?;
    // The reservation becomes the new process's account (closed when its record is freed).
    limits::open(pid, parent, share);
    let p = slot(pid);
    p.parent.store(parent, Ordering::Relaxed);
    // The child starts with a copy of its parent's handles (how a server and its clients
    // come to share an endpoint).
    p.handles.close_all();
    if let Some(h) = handles {
        p.handles.inherit(h);
    }
    p.live.store(1, Ordering::Relaxed);
    p.threads.store(1, Ordering::Relaxed);
    p.dying.store(false, Ordering::Relaxed);
    p.status.store(NO_STATUS, Ordering::Relaxed);
    let b = b.space(space.space());
    *p.space_write() = Some(space);
    SPAWN_HOLD.pass();
    if let Err(e) = task::start(b, pid, pid, l.entry, l.stack_top, arg) {
        // Nobody waits: the slot was never open to waiters.
        p.handles.close_all();
        let space = p.space_write().take();
        p.live.store(0, Ordering::Relaxed);
        // As in `reap`: a freed slot keeps no parent. Until 2026-12-04 this path left the
        // creator's pid there, and the creator's reap, running while the next spawn had
        // claimed the slot but not yet named its parent, marked it ORPHAN and counted it;
        // the new parent's store then erased the mark, and the count never came down
        // (found by review; not forced by a test).
        if p.parent.swap(0, Ordering::AcqRel) == ORPHAN {
            ORPHANS.fetch_sub(1, Ordering::Relaxed);
        }
        limits::close(pid);
        mark_used(pid, false);
        p.pid.store(0, Ordering::Release);
        drop(space);
        return Err(start_errno(e));
    }
    // Last, once the thread runs: until now the slot could not be claimed by a waiter (see
    // `reap`), who would otherwise wait for a start that may still fail.
    p.waiter.store(unwaited(pid), Ordering::Release);
    Ok(pid)
}

/// A thread's end, reported by `task` (`why`: the fault, for the line). Returns `false` if
/// `pid` is no process (a standalone thread: the caller prints its own line).
pub fn thread_ended(pid: u64, d: Death, why: &str) -> bool {
    let Some(p) = proc(pid) else {
        return false;
    };
    match d {
        Death::Exit(_) | Death::WithProcess => {}
        Death::Fault(f) => kill(p, 0x100 + u64::from(f.vector), why),
        Death::BadReturn => kill(p, 0x100 + 128, why),
        Death::NotEntered => kill(p, 0x100 + 129, why),
    }
    // Its kernel stack's charge (`THREAD_FRAMES`, taken at its start).
    if let Some(a) = p.space_read().as_ref() {
        a.account().uncharge(THREAD_FRAMES);
    }
    if p.live.fetch_sub(1, Ordering::AcqRel) == 1 {
        // The last thread: its exit code is the process's, unless the end was decided;
        // decided first, before the rest of the end, so the status is there whenever a
        // reap comes (`wait` also waits for it), even one that cannot join this thread yet
        // (its deadline passed: the process is kept as stranded with its status). The line
        // still comes after the process's console bytes (`task::finish` wrote this
        // thread's out before; every other thread did so before it counted itself out).
        // Until 2026-12-06 it was decided after the memory release: a reap whose join timed
        // out meanwhile read no status and reported `0x100 + 129` ("never reached ring 3")
        // for a process whose line then said `exit,0` (found by review;
        // `user.proc_status_is_decided_before_the_memory_release`).
        if let Death::Exit(code) = d
            && p.status
                .compare_exchange(NO_STATUS, code & 0xFF, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            kprintln!("PROC,{pid},exit,{}", code & 0xFF);
        }
        // Its handles go (endpoints whose last handle this was are destroyed: threads
        // queued on them fail with EPIPE).
        p.handles.close_all();
        END_HOLD.pass();
        // And its memory, now, not when it is waited for (the space stays until then).
        // Never with interrupts off (an end on an exception's stack: none today), where
        // the tables' lock could wait for this CPU's shootdown answer: left to `reap`.
        if exo_arch::cpu::interrupts_enabled()
            && let Some(a) = p.space_read().as_ref()
        {
            a.release_user_memory();
        }
        if let Some(w) = waiting(p.waiter.load(Ordering::Acquire)) {
            sched::wake(w);
        }
    }
    true
}

/// The calling thread's process is killed with `status` (`why` in its `PROC` line); the
/// caller goes on to its return to ring 3, where it ends (with every other thread).
pub fn kill_own(status: u64, why: &str) {
    if let Some(p) = proc(caller_pid()) {
        kill(p, status, why);
    }
}

/// `exit_group(code)` of process `pid`: it ends with `code` (the caller then exits).
pub fn end_process(pid: u64, code: u64) {
    if let Some(p) = proc(pid) {
        kill(p, code, "");
    }
}

/// The status of a process ended by its parent's `kill(pid, SIGKILL)`
/// (`exo_abi::KillCause::SIGKILL`, written `SIGKILL` in its `PROC` line).
pub const STATUS_SIGKILL: u64 = 0x100 + 131;
/// `kill`'s one signal.
const SIGKILL: u64 = 9;

/// `kill(pid, sig)`: `SIGKILL` ends process `pid`, a child of the caller, as `exit_group`
/// would (status [`STATUS_SIGKILL`]; nothing changes if it had already ended); `sig` 0 only
/// checks. `EINVAL`: another signal, or `pid` 0 or negative (no process groups); `ESRCH`:
/// no such process, or one waited for (and, to its parent, none yet: its `spawn` has not
/// returned; [`standing`]); `EPERM`: not a child of the caller.
pub fn kill_child(pid: u64, sig: u64) -> Result<(), Errno> {
    if sig != SIGKILL && sig != 0 {
        return Err(Errno::Einval);
    }
    if pid == 0 || pid > i64::MAX as u64 {
        return Err(Errno::Einval);
    }
    let caller = caller_pid();
    let p = proc(pid).ok_or(Errno::Esrch)?;
    // The record is this process's while its pid is there *and* its space is: `reap` (and
    // a failed `spawn`) takes the space before it frees the pid, and a `spawn` that takes
    // the slot installs its space (the write lock) only after it has set the record up
    // anew. Under the read lock neither can happen, so the kill reaches this process, never
    // one that took the slot since `proc` looked (another thread of the caller may reap the
    // child and spawn again meanwhile). Until 2026-12-05 (the day `kill` came) the space
    // was not checked: a kill that read the pid after the reap's take and held the lock
    // killed the process that took the slot once the reap ended (found by review, forced:
    // `user.proc_kill_never_reaches_a_reused_slot`).
    let space = p.space_read();
    let standing = standing(p, pid, &space);
    if standing == Standing::Gone {
        return Err(Errno::Esrch);
    }
    if p.parent.load(Ordering::Acquire) != caller {
        return Err(Errno::Eperm);
    }
    // The caller's own spawn of it has not returned. Only for its parent: the process
    // itself (or any other caller) is answered as for a running process, since it may run
    // before its spawn returns. Until the fix of the same day, `kill(getpid(), 0)` in a
    // process that ran before its spawn returned was `ESRCH`, not `EPERM` (found by CI's
    // 910-round fault suite).
    if standing == Standing::NotStarted {
        return Err(Errno::Esrch);
    }
    KILL_HOLD.pass();
    // An ended child keeps its end (its last thread's exit code may be decided a moment
    // after `live` reached 0: a kill in that moment would win; this check narrows it to a
    // kill that races the end itself, which may decide it).
    if sig == SIGKILL && p.live.load(Ordering::Acquire) != 0 {
        kill_in(p, pid, space.as_deref(), STATUS_SIGKILL, "SIGKILL");
    }
    Ok(())
}

/// What record `p` is to a caller naming process `pid` ([`standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// No such process: the record is another's or free, or the process was waited for.
    Gone,
    /// Process `pid`, whose spawn has not returned (`waiter` still [`CLAIMED`], as `spawn`
    /// leaves it until its first thread has started): its start may still fail, and the
    /// spawn then frees it silently.
    NotStarted,
    /// Process `pid`, started (running or ended, not waited for).
    Live,
}

/// What record `p`, whose space lock the caller holds (`space`), is to a caller naming
/// process `pid`. The record is this process's while its pid is there *and* its space is
/// (see [`kill_child`]). A process already waited for whose reap kept its record (a thread
/// not joined) is [`Standing::Gone`]: its parent is [`STRANDED_PARENT`] from the moment the
/// reap decides so, before its `waiter` is [`STRANDED`], and while `retry_stranded` looks
/// at it (`waiter` [`CLAIMED`] meanwhile). Until 2026-12-06 a kill of such a process was
/// `EPERM` (found by review; `user.proc_wait_keeps_the_space_of_a_thread_not_joined`), then
/// still in those two windows (`waiter` not [`STRANDED`]; found by review,
/// `user.proc_kill_of_a_stranded_child_in_its_retry_is_esrch`). A process not started is
/// [`Standing::NotStarted`]: only its parent is told so (`ESRCH`; others get what a running
/// process gives them), and nothing kills it: until 2026-12-06 a kill in that window (a
/// sibling's `kill(next pid, SIGKILL)`) returned 0 and printed `PROC,<pid>,killed,SIGKILL`
/// for a pid whose spawn then failed (found by review;
/// `user.proc_kill_never_reaches_a_spawn_not_started`).
fn standing(p: &Proc, pid: u64, space: &Option<Box<AddressSpace>>) -> Standing {
    let w = p.waiter.load(Ordering::Acquire);
    if space.is_none()
        || p.pid.load(Ordering::Acquire) != pid
        || w == STRANDED
        || p.parent.load(Ordering::Acquire) == STRANDED_PARENT
    {
        Standing::Gone
    } else if w == CLAIMED {
        Standing::NotStarted
    } else {
        Standing::Live
    }
}

/// Decides the process's end (`status`; the first decision wins and prints the line) and
/// makes every thread leave: blocked ones are woken, CPUs that may run its space in ring 3
/// are interrupted; each thread ends at its next way back to ring 3.
fn kill(p: &Proc, status: u64, why: &str) {
    let pid = p.pid.load(Ordering::Relaxed);
    kill_in(p, pid, p.space_read().as_deref(), status, why);
}

/// [`kill`] of process `pid`, whose record `p` is, with its space already read.
fn kill_in(p: &Proc, pid: u64, space: Option<&AddressSpace>, status: u64, why: &str) {
    if p.status
        .compare_exchange(NO_STATUS, status, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        if status < 0x100 {
            kprintln!("PROC,{pid},exit,{status}");
        } else {
            kprintln!("PROC,{pid},killed,{why}");
        }
    }
    p.dying.store(true, Ordering::SeqCst);
    task::for_each_of(pid, |t| {
        sched::wake(t);
    });
    if let Some(a) = space {
        let loaded = a.space().loaded();
        // Interrupts off: `me` stays this CPU for the loop. Until 2026-12-05 it was read
        // with interrupts on, and a killer moved to another CPU meanwhile never kicked the
        // one it left (a thread of the process there ran on in ring 3 until its next tick;
        // under icount, with no tick, for good; found by review, not forced).
        let _g = exo_percpu::IrqGuard::new();
        let me = sched::this_cpu();
        for cpu in 0..loaded.len() {
            if cpu != me && loaded.contains(cpu) {
                sched::kick(cpu);
            }
        }
    }
}

/// `thread_create(entry, stack_top, arg)`: a new thread of the caller's process, on the
/// CPUs the caller may use. Returns its thread id.
pub fn thread_create(entry: u64, stack_top: u64, arg: u64) -> Result<u64, Errno> {
    if !exo_arch::usercopy::is_user_range(entry, 1) {
        return Err(Errno::Efault);
    }
    if !stack_top.is_multiple_of(16)
        || !exo_arch::usercopy::is_user_range(stack_top.wrapping_sub(16), 16)
    {
        return Err(Errno::Einval);
    }
    let pid = caller_pid();
    let p = proc(pid).ok_or(Errno::Einval)?;
    if p.threads.fetch_add(1, Ordering::AcqRel) >= MAX_PROC_THREADS {
        p.threads.fetch_sub(1, Ordering::AcqRel);
        return Err(Errno::Eagain);
    }
    // Its record in the tree's share of the thread table (`limits`), as long as it is.
    if let Err(e) = limits::charge_thread(pid) {
        p.threads.fetch_sub(1, Ordering::AcqRel);
        return Err(e);
    }
    let undo = |e: Errno| {
        limits::uncharge_thread(pid);
        p.threads.fetch_sub(1, Ordering::AcqRel);
        e
    };
    let builder = Builder::new()
        .inherit_affinity()
        .map_err(|e| undo(start_errno(task::SpawnError::Sched(e))))?;
    let id = task::claim_id(|_| true).map_err(|_| undo(Errno::Eagain))?;
    p.live.fetch_add(1, Ordering::AcqRel);
    CREATE_HOLD.pass();
    let started = {
        let space = p.space_read();
        match space.as_ref() {
            Some(a) if a.account().charge(THREAD_FRAMES).is_err() => {
                task::release_id(id);
                Err(Errno::Enomem)
            }
            Some(a) => task::start(builder.space(a.space()), id, pid, entry, stack_top, arg)
                .map_err(|e| {
                    a.account().uncharge(THREAD_FRAMES);
                    start_errno(e)
                }),
            None => {
                task::release_id(id);
                Err(Errno::Eagain)
            }
        }
    };
    if let Err(e) = started {
        p.live.fetch_sub(1, Ordering::AcqRel);
        return Err(undo(e));
    }
    Ok(id)
}

/// The errno of a thread that could not start: `ENOMEM` when there was no memory for its
/// stacks, `EAGAIN` when a table was full (until 2026-12-05 both were `EAGAIN`, which
/// `spawn`'s documentation gives to a full process table; found by review).
fn start_errno(e: task::SpawnError) -> Errno {
    match e {
        task::SpawnError::Sched(SchedError::OutOfMemory) => Errno::Enomem,
        _ => Errno::Eagain,
    }
}

/// `thread_join(tid)`: waits for thread `tid` of the caller's process to end and returns
/// its exit code.
pub fn thread_join(tid: u64) -> Result<u64, Errno> {
    let me = sched::current_uid();
    if tid == me {
        return Err(Errno::Edeadlk);
    }
    let pid = caller_pid();
    let p = proc(pid).ok_or(Errno::Esrch)?;
    match task::join(pid, tid, me, &dying) {
        Ok(code) => {
            limits::uncharge_thread(pid);
            p.threads.fetch_sub(1, Ordering::AcqRel);
            Ok(code)
        }
        Err(JoinError::NoSuchThread) => Err(Errno::Esrch),
        Err(JoinError::Busy) => Err(Errno::Einval),
        Err(JoinError::Interrupted) => Err(Errno::Eintr),
    }
}

/// Waits for process `pid`, a child of the caller, to end and returns its status (see the
/// module header). Not a child (or already being waited for): `ECHILD`; the caller's own
/// process killed meanwhile: `EINTR` (the child stays, for the next waiter). Until the TSC
/// reaches `deadline` (`u64::MAX`: none; the kernel's own callers always give one since
/// 2026-12-07, when the `init` job's wait for process 1 got its deadline and the deadline-less
/// `wait` went): `ETIMEDOUT` when it passes
/// with the child still running, or its last thread still finishing its end (giving its
/// memory back: see [`reap`]); the child stays, for the next waiter. Until 2026-12-05
/// `wait` had no deadline: a child that never ended held its parent for good (init, and
/// with it CI, until the step's timeout, with no verdict).
pub fn wait_until(pid: u64, deadline: u64) -> Result<u64, Errno> {
    let caller = caller_pid();
    let p = proc(pid).ok_or(Errno::Echild)?;
    let me = sched::current().ok_or(Errno::Echild)?;
    // `waiter` first: once it is this process's, the record is set up (its parent is
    // current), and the claim below fails if the slot went to another process meanwhile.
    let free = unwaited(pid);
    if p.waiter.load(Ordering::Acquire) != free || p.parent.load(Ordering::Acquire) != caller {
        return Err(Errno::Echild);
    }
    WAIT_HOLD.pass();
    p.waiter
        .compare_exchange(free, me.raw(), Ordering::AcqRel, Ordering::Relaxed)
        .map_err(|_| Errno::Echild)?;
    // Not ended until its end is decided too: its last thread decides it right after it
    // counted itself out (a few instructions; every other end was decided before that).
    let running =
        || p.live.load(Ordering::Acquire) != 0 || p.status.load(Ordering::Acquire) == NO_STATUS;
    while running() {
        if dying() {
            p.waiter.store(free, Ordering::Release);
            return Err(Errno::Eintr);
        }
        if exo_arch::tsc::rdtsc() >= deadline {
            p.waiter.store(free, Ordering::Release);
            return Err(Errno::Etimedout);
        }
        sched::block_until(deadline, || running() && !dying());
    }
    reap(p, deadline).ok_or(Errno::Etimedout)
}

/// Frees an ended process whose waiter slot the caller holds: joins its threads, drops its
/// space, makes its children orphans, frees the record. Returns the status; `None` if the
/// caller's `deadline` passed before its last thread had finished its end (it may still be
/// giving the memory back): nothing is changed and the process is unwaited again (the
/// waiter slot given back), for the next wait. The joins wait until `deadline` or
/// [`task::join_all_deadline`], whichever is first. Until 2026-12-06 they waited for the
/// latter only (30 s), so a `wait` with a timeout, `{0, 0}` too, could block up to 30 s past
/// it behind a last thread still in its end (found by review;
/// `user.proc_wait_with_a_deadline_is_bounded_by_it_during_the_end`).
fn reap(p: &'static Proc, deadline: u64) -> Option<u64> {
    let pid = p.pid.load(Ordering::Relaxed);
    let stuck_at = task::join_all_deadline();
    let joined = task::join_all_until(pid, deadline.min(stuck_at));
    if joined.is_err() && deadline <= stuck_at {
        p.waiter.store(unwaited(pid), Ordering::Release);
        return None;
    }
    let status = match p.status.load(Ordering::Acquire) {
        NO_STATUS => 0x100 + 129,
        s => s,
    };
    // Its children were all spawned by its threads, which have all counted themselves out
    // since (`live` is 0): each child's slot was marked used before.
    for q in used() {
        if q.pid.load(Ordering::Acquire) != 0
            && q.parent
                .compare_exchange(pid, ORPHAN, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            ORPHANS.fetch_add(1, Ordering::Relaxed);
        }
    }
    p.handles.close_all();
    let space = p.space_write().take();
    REAP_HOLD.pass();
    // A thread that could not be joined may still run in the space: it stays in the
    // record, which stays claimed (its pid cannot be reused, so a later join finds these
    // threads and no others), until [`retry_stranded`] joins them. Until 2026-12-05 the
    // space was leaked for good (a thread late by seconds on a starved vCPU lost the whole
    // process's memory; `user.proc_wait_keeps_the_space_of_a_thread_not_joined`).
    let stranded = joined.is_err();
    match joined {
        Ok(_) => drop(space), // every thread is gone: the space can go (evicted, frames back)
        Err(n) => {
            log::error!(
                "process {pid}: {n} thread(s) not joined; its space is kept until they end"
            );
            *p.space_write() = space;
        }
    }
    // Swapped, not read: `reap_all` may adopt it meanwhile, and one of us counts it down;
    // and a freed slot keeps no ORPHAN for `reap_all` to count down again while reused.
    let new_parent = if stranded { STRANDED_PARENT } else { 0 };
    if p.parent.swap(new_parent, Ordering::AcqRel) == ORPHAN {
        ORPHANS.fetch_sub(1, Ordering::Relaxed);
    }
    if stranded {
        STRANDED_COUNT.fetch_add(1, Ordering::Relaxed);
        p.waiter.store(STRANDED, Ordering::Release);
        return Some(status);
    }
    // Nobody may claim the slot as a waiter again until `spawn` has set it up anew.
    p.waiter.store(CLAIMED, Ordering::Release);
    // Its share of the tables given back (what its tree still holds goes to its creator's),
    // before the slot, whose account a new process opens.
    limits::close(pid);
    mark_used(pid, false);
    p.pid.store(0, Ordering::Release);
    Some(status)
}

/// Frees the records and spaces of processes reaped with a thread not joined ([`reap`])
/// whose threads have all ended since (joined now, without waiting); returns how many are
/// still kept. Cheap when there are none: every `spawn` and `reap_all` calls it.
pub fn retry_stranded() -> u32 {
    if STRANDED_COUNT.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    for p in used() {
        // Claimed (`CLAIMED`, as `reap` leaves a slot it frees), so one caller at a time.
        if p.waiter
            .compare_exchange(STRANDED, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        STRANDED_HOLD.pass();
        let pid = p.pid.load(Ordering::Relaxed);
        if task::join_all_until(pid, 0).is_err() {
            p.waiter.store(STRANDED, Ordering::Release);
            continue;
        }
        let space = p.space_write().take();
        drop(space);
        log::info!("process {pid}: its last thread ended; its space is freed");
        p.parent.store(0, Ordering::Relaxed);
        STRANDED_COUNT.fetch_sub(1, Ordering::Relaxed);
        limits::close(pid);
        mark_used(pid, false);
        p.pid.store(0, Ordering::Release);
    }
    STRANDED_COUNT.load(Ordering::Relaxed)
}

/// Reaps the orphans that have ended (cheap when there are none).
fn reap_orphans() {
    retry_stranded();
    if ORPHANS.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Some(me) = sched::current() else {
        return;
    };
    for p in used() {
        let pid = p.pid.load(Ordering::Acquire);
        // `waiter` first (see `wait`); the claim names the process, so a slot reaped by
        // someone else and reused since these checks is not claimed.
        let free = unwaited(pid);
        if pid == 0
            || p.waiter.load(Ordering::Acquire) != free
            || p.parent.load(Ordering::Acquire) != ORPHAN
            || p.live.load(Ordering::Acquire) != 0
        {
            continue;
        }
        ORPHAN_HOLD.pass();
        if p.waiter
            .compare_exchange(free, me.raw(), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            reap(p, u64::MAX);
        }
    }
}

/// Test support: whether process `pid` has ended (no thread left: [`wait_until`] would not
/// block), `None` if there is no such process. Tests poll it to wait with a deadline.
pub fn ended(pid: u64) -> Option<bool> {
    proc(pid).map(|p| p.live.load(Ordering::Acquire) == 0)
}

/// Test support: makes process `pid`, a child of the kernel, an orphan (as if its parent
/// had been reaped). Returns whether it was one of the kernel's children.
pub fn disown(pid: u64) -> bool {
    let ok = proc(pid).is_some_and(|p| {
        p.parent
            .compare_exchange(0, ORPHAN, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
    if ok {
        ORPHANS.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Test support: the first slot of the process table in use (`None`: the table is empty).
pub fn first_used_slot() -> Option<u64> {
    PROCS
        .iter()
        .position(|p| p.pid.load(Ordering::Acquire) != 0)
        .map(|i| i as u64)
}

/// Test support: processes in the table (set up, running, or ended and not reaped).
pub fn in_table() -> usize {
    PROCS
        .iter()
        .filter(|p| p.pid.load(Ordering::Acquire) != 0)
        .count()
}

/// Test support: whether the slots marked used ([`USED`]) are those with a pid (`Err`: the
/// first that disagrees). Only meaningful while no process is spawned or reaped.
pub fn used_map_agrees() -> Result<(), alloc::string::String> {
    for (i, p) in PROCS.iter().enumerate() {
        let pid = p.pid.load(Ordering::Acquire);
        let marked = USED[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0;
        if marked != (pid != 0) {
            return Err(alloc::format!(
                "process slot {i} (pid {pid}) is marked {}",
                if marked { "used" } else { "free" }
            ));
        }
    }
    Ok(())
}

/// Test support: orphans not yet reaped.
pub fn orphans() -> u32 {
    ORPHANS.load(Ordering::Relaxed)
}

/// The IPC handle table of the calling thread's process (none: a kernel or test bed thread).
#[inline]
pub fn handles() -> Option<&'static crate::ipc::HandleTable> {
    proc(caller_pid()).map(|p| &p.handles)
}

/// Runs `f` on the address space of the calling thread's process (none: a kernel or test
/// bed thread).
pub fn with_current<R>(f: impl FnOnce(&AddressSpace) -> R) -> Option<R> {
    with_space_of(caller_pid(), f)
}

/// Runs `f` on the address space of process `pid` (tests: `None` if it has none).
pub fn with_space_of<R>(pid: u64, f: impl FnOnce(&AddressSpace) -> R) -> Option<R> {
    let p = proc(pid)?;
    let space = p.space_read();
    space.as_deref().map(f)
}

/// [`reap_all_with`] stops here for a slot it found used, before it adopts the process,
/// so a test can have that slot reaped and taken by another orphan in the window.
pub static REAP_ALL_HOLD: HoldPoint = HoldPoint::new();
/// [`reap_all_with`] stops here once it has decided to end a process still running past
/// the grace, before it kills it, so a test can have it end, be reaped and its slot taken.
pub static REAP_ALL_KILL_HOLD: HoldPoint = HoldPoint::new();

/// How long the end of the `init` job lets orphans run on before it ends them.
pub const ORPHAN_GRACE_MS: u64 = 5000;

/// How long the end of the `init` job waits for an orphan it ended to be gone before it
/// leaves it (reported, left in the table with its space): as long as [`super::task::JOIN_ALL_MS`] (a
/// killed thread on an emulated CPU among many may take seconds to reach its end).
pub const ENDED_ORPHAN_WAIT_MS: u64 = super::task::JOIN_ALL_MS;

/// [`ENDED_ORPHAN_WAIT_MS`] as the reap uses it (a test shortens it:
/// [`set_ended_orphan_wait_ms`]).
static ENDED_ORPHAN_WAIT: AtomicU64 = AtomicU64::new(ENDED_ORPHAN_WAIT_MS);

/// Test use: how long the end of the `init` job waits for an orphan it ended; returns the
/// previous value.
pub fn set_ended_orphan_wait_ms(ms: u64) -> u64 {
    ENDED_ORPHAN_WAIT.swap(ms, Ordering::Relaxed)
}

/// Status of an orphan still running when the `init` job ended (ended by the kernel).
/// (`exo_abi::KillCause::INIT_ENDED`, written `init job ended` in its `PROC` line).
pub const STATUS_ENDED_AT_SHUTDOWN: u64 = 0x100 + 130;

/// Waits for every process still in the table (the end of the `init` job: orphans, whose
/// parent ended without waiting), ending those still running after [`ORPHAN_GRACE_MS`].
/// Kernel callers only.
pub fn reap_all() -> usize {
    reap_all_with(ORPHAN_GRACE_MS, |_, _| {})
}

/// [`reap_all`] with `grace_ms` for the orphans, telling `seen(pid, status)` of each
/// process it reaped. The kernel adopts orphans only (like init): a running process's
/// children are its own to wait for, and become orphans when it is reaped, for the next
/// pass. Until 2026-12-03 every process was adopted, so a running orphan's `wait` for its
/// own child could get `ECHILD` (test `user.proc_reap_all_leaves_a_running_parent_its_children`).
/// An adopted orphan still running once `grace_ms` have passed is ended (status
/// [`STATUS_ENDED_AT_SHUTDOWN`]): until 2026-12-04 it was waited for without a deadline, so
/// one program that never ends (a loop, a wait nobody answers) left the `init` job hanging,
/// no verdict, no `MEM` line (test `user.proc_reap_all_ends_orphans_that_outlive_the_grace`).
/// An orphan ended so but still not gone [`ENDED_ORPHAN_WAIT_MS`] later (a thread that
/// never reaches its end) is reported and left in the table, its space with it (a thread
/// may still run there, as `reap` keeps the space of a thread it cannot join): until
/// 2026-12-05 that wait had no deadline, and the job hung the same way (found by review).
pub fn reap_all_with(grace_ms: u64, mut seen: impl FnMut(u64, u64)) -> usize {
    retry_stranded();
    let deadline = Deadline::after_ms(grace_ms);
    let mut n = 0;
    // Orphans ended and still not gone: not looked at again in this call.
    let mut left: alloc::vec::Vec<u64> = alloc::vec::Vec::new();
    loop {
        let mut progress = false;
        let mut running = false;
        for p in used() {
            if p.pid.load(Ordering::Acquire) == 0 {
                continue;
            }
            REAP_ALL_HOLD.pass();
            if p.parent
                .compare_exchange(ORPHAN, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                ORPHANS.fetch_sub(1, Ordering::Relaxed);
            } else if p.parent.load(Ordering::Acquire) != 0 {
                continue;
            }
            // The pid of the process adopted, read after the adoption: the slot may have
            // been reaped and taken by another orphan since the look above, and that one
            // is the kernel's now. Until 2026-12-04 the pid came from before: the wait
            // was for the old process (`ECHILD`) and the new one, adopted, was left.
            let pid = p.pid.load(Ordering::Acquire);
            if left.contains(&pid) {
                continue;
            }
            let mut until = u64::MAX;
            if p.live.load(Ordering::Acquire) != 0 {
                if !deadline.passed() {
                    running = true;
                    continue;
                }
                // The process adopted, by its pid, as `kill_child` kills: it may have
                // ended since the look above, been reaped by another waiter of the kernel
                // and its slot taken by a new process (no adoption of ours: left alone).
                // Until 2026-12-06 `kill` read the slot's pid anew, and killed that one
                // (found by review; `user.proc_reap_all_kills_only_the_orphan_it_adopted`).
                REAP_ALL_KILL_HOLD.pass();
                let space = p.space_read();
                if standing(p, pid, &space) != Standing::Live {
                    continue;
                }
                kill_in(
                    p,
                    pid,
                    space.as_deref(),
                    STATUS_ENDED_AT_SHUTDOWN,
                    "init job ended",
                );
                drop(space);
                until = Deadline::after_ms(ENDED_ORPHAN_WAIT.load(Ordering::Relaxed)).tsc();
            }
            match wait_until(pid, until) {
                Ok(status) => {
                    seen(pid, status);
                    n += 1;
                    progress = true;
                }
                Err(Errno::Etimedout) => {
                    log::error!(
                        "process {pid}: still running {} ms after the init job ended it; \
                         left in the table with its space",
                        ENDED_ORPHAN_WAIT.load(Ordering::Relaxed)
                    );
                    left.push(pid);
                }
                Err(_) => {}
            }
        }
        if !progress {
            if !running {
                return n;
            }
            sched::sleep_us(1000);
        }
    }
}

/// The `init` job: starts `path` as the first process with `arg`, waits for it, reaps what
/// is left, and returns its status.
pub fn run_init(path: &str, arg: u64, timeout_s: u64) -> Result<InitEnd, Errno> {
    let pid = spawn(path, arg, Builder::new())?;
    let deadline = if timeout_s == 0 {
        u64::MAX
    } else {
        Deadline::after_ms(timeout_s.saturating_mul(1000)).tsc()
    };
    let end = match wait_until(pid, deadline) {
        Err(Errno::Etimedout) => {
            // Still running at the job's deadline: ended as `kill` ends a child (the kernel
            // is its parent), then waited for as an orphan ended at shutdown is.
            let _ = kill_child(pid, SIGKILL);
            let d = Deadline::after_ms(ENDED_ORPHAN_WAIT.load(Ordering::Relaxed)).tsc();
            wait_until(pid, d).map(|status| InitEnd {
                status,
                killed_at_deadline: true,
            })
        }
        r => r.map(|status| InitEnd {
            status,
            killed_at_deadline: false,
        }),
    };
    let orphans = reap_all();
    if orphans != 0 {
        log::info!("init: {orphans} process(es) left running were reaped");
    }
    end
}

/// How process 1 of the `init` job ended ([`run_init`]).
#[derive(Debug, Clone, Copy)]
pub struct InitEnd {
    /// Its status (as [`wait_until`] gives it).
    pub status: u64,
    /// It was still running at the job's deadline (`exo.init_timeout_s`) and was killed.
    pub killed_at_deadline: bool,
}
