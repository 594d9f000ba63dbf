//! The system-call table: every call, its number (Linux's x86-64 number where Linux has the
//! call), its argument checks and its errors, and the dispatcher the entry stub calls.
//!
//! ABI: `syscall`; number in RAX; arguments in RDI, RSI, RDX, R10, R8, R9; result in RAX,
//! a negative errno on error. RCX and R11 are clobbered (return address, RFLAGS); every
//! other register comes back unchanged.
//!
//! | nr  | name          | arguments           | result          | errors           |
//! |-----|---------------|---------------------|-----------------|------------------|
//! | 1   | `write`       | fd, buf, len        | bytes queued for the console (all of them, up to 64 KiB; a full per-CPU ring is flushed synchronously, nothing is dropped) | EBADF (fd not 1 or 2), EFAULT (buf..buf+len not user memory, or unmapped) |
//! | 24  | `sched_yield` | -                   | 0               | -                |
//! | 39  | `getpid`      | -                   | the caller's id | -                |
//! | 60  | `exit`        | code                | does not return | -                |
//! | 520..=526 | IPC (`ipc_call`, `ipc_reply_recv`, `ipc_recv`, `ipc_send`, `ipc_reply`, `endpoint_create`, `handle_close`) | registers: see `super::ipc` | 0, or a handle | EPERM, EBADF, ESRCH, EINVAL, EPIPE, EMSGSIZE, ECONNABORTED, ECONNRESET, ETIMEDOUT, EAGAIN (per call: `docs/syscalls.md`) |
//! | 527 | `shm_map`     | handle, len         | the address of the endpoint's shared region in the caller (created with len bytes if len != 0) | EBADF, ENOENT (no region), EEXIST (len != 0 and one exists), EINVAL (len > 1 MiB), ENOMEM, EAGAIN (no region slot), EPIPE |
//! | 528 | `handle_info` | handle            | the handle's rights (1 send, 2 receive) while its endpoint can be used | EBADF (no such handle), EPIPE (destroyed, or no handle can receive on it any more) |
//! | the others | see `docs/syscalls.md` | | | |
//! | any unknown number | - | -               | -               | ENOSYS           |
//!
//! This table names the ones dispatched specially; `docs/syscalls.md` has every call (the
//! memory, thread, process, time and futex calls too) and `exo_abi::SYSCALLS` the same in
//! code (a host test keeps the two equal).

use super::task;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use exo_arch::paging::UserFlags;
use exo_arch::syscall::SyscallFrame;
use exo_arch::usercopy;
use exo_percpu::IrqGuard;

/// Call numbers (Linux's x86-64 numbers where Linux has the call; Exo-OS's own from 512).
pub mod nr {
    /// `nanosleep(req, rem)`.
    pub const NANOSLEEP: u64 = 35;
    /// `mmap(addr, len, prot, flags, fd, off)`: anonymous and private only.
    pub const MMAP: u64 = 9;
    /// `mprotect(addr, len, prot)`.
    pub const MPROTECT: u64 = 10;
    /// `munmap(addr, len)`.
    pub const MUNMAP: u64 = 11;
    /// `sched_setaffinity(0, len, mask)`: the calling thread.
    pub const SCHED_SETAFFINITY: u64 = 203;
    /// `set_tid_address(word) -> tid`: the word cleared and woken at the thread's end.
    pub const SET_TID_ADDRESS: u64 = 218;
    /// `clock_gettime(clock, ts)`.
    pub const CLOCK_GETTIME: u64 = 228;
    /// `exit_group(code)`: the whole process, every thread on every CPU.
    pub const EXIT_GROUP: u64 = 231;
    /// `getcpu(cpu, node, _)`.
    pub const GETCPU: u64 = 309;
    /// `spawn(path, len, arg) -> pid`: a program of the initrd as a new process.
    pub const SPAWN: u64 = 512;
    /// `wait(pid, timeout) -> status`: blocks until the process ends (or `*timeout` passes).
    pub const WAIT: u64 = 513;
    /// `kill(pid, sig)`: `SIGKILL` ends a child process.
    pub const KILL: u64 = 62;
    /// `futex(word, op, val, timeout)`: FUTEX_WAIT and FUTEX_WAKE, private or shared.
    pub const FUTEX: u64 = 202;
    /// `thread_create(entry, stack_top, arg) -> tid`: a thread of the caller's process.
    pub const THREAD_CREATE: u64 = 514;
    /// `thread_exit(code)`: the calling thread (the process too if it was the last).
    pub const THREAD_EXIT: u64 = 515;
    /// `shm_map(handle, len) -> addr`: maps an endpoint's shared region (`super::shm`).
    pub const SHM_MAP: u64 = 527;
    /// `handle_info(handle) -> rights`: whether a handle's endpoint can still be used.
    pub const HANDLE_INFO: u64 = 528;
    /// `thread_join(tid) -> code`: waits for a thread of the caller's process.
    pub const THREAD_JOIN: u64 = 516;
    /// `write(fd, buf, len)`.
    pub const WRITE: u64 = 1;
    /// `sched_yield()`.
    pub const SCHED_YIELD: u64 = 24;
    /// `getpid()`.
    pub const GETPID: u64 = 39;
    /// `exit(code)`.
    pub const EXIT: u64 = 60;
    /// `ipc_call(handle, info, words..)`: the IPC calls (`super::super::ipc`).
    pub const IPC_CALL: u64 = 520;
    /// `ipc_reply_recv(handle, info, words..)`.
    pub const IPC_REPLY_RECV: u64 = 521;
    /// `ipc_recv(handle)`.
    pub const IPC_RECV: u64 = 522;
    /// `ipc_send(handle, info, words..)`.
    pub const IPC_SEND: u64 = 523;
    /// `ipc_reply(_, info, words..)`.
    pub const IPC_REPLY: u64 = 524;
    /// `endpoint_create(rights, badge) -> handle`.
    pub const ENDPOINT_CREATE: u64 = 525;
    /// `handle_close(handle)`.
    pub const HANDLE_CLOSE: u64 = 526;
}

/// Errors, as Linux numbers them (the call returns the negated value).
#[repr(i64)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// Not permitted (kill: not a child of the caller).
    Eperm = 1,
    /// No such file (spawn: not in the initrd).
    Enoent = 2,
    /// Not an executable this kernel runs (spawn).
    Enoexec = 8,
    /// Bad file descriptor.
    Ebadf = 9,
    /// No such child (wait).
    Echild = 10,
    /// Try again (a table is full).
    Eagain = 11,
    /// Out of memory.
    Enomem = 12,
    /// Bad address: a pointer outside user memory, or to unmapped memory.
    Efault = 14,
    /// A fixed mapping over a mapped page.
    Eexist = 17,
    /// Invalid argument.
    Einval = 22,
    /// Path longer than `process::PATH_MAX`.
    Enametoolong = 36,
    /// Unknown call number.
    Enosys = 38,
    /// No such thread (thread_join).
    Esrch = 3,
    /// Interrupted: the caller's process is being killed (it never sees this value).
    Eintr = 4,
    /// A thread joining itself.
    Edeadlk = 35,
    /// A futex wait's deadline passed.
    Etimedout = 110,
    /// The endpoint was destroyed, or no handle can receive on it any more (`shm_map`,
    /// `handle_info`).
    Epipe = 32,
}

impl Errno {
    /// The value RAX holds: the negated errno.
    pub fn ret(self) -> i64 {
        -(self as i64)
    }
}

/// Most bytes one `write` takes (a larger request is a partial write, as POSIX allows).
pub const WRITE_MAX: u64 = 64 * 1024;

/// The dispatcher (`exo_arch::syscall` calls it with interrupts on, on the thread's kernel
/// stack): counts the call for the thread, runs it, stores the result.
pub extern "C" fn dispatch(f: &mut SyscallFrame) {
    // `write` apart: its fast path is a few dozen instructions, and the other calls'
    // larger frame is not paid for it. (Both count the call: this function stays two
    // tail calls.)
    if f.nr() == nr::WRITE {
        return write_call(f);
    }
    dispatch_other(f);
}

#[inline(never)]
fn write_call(f: &mut SyscallFrame) {
    task::count_syscall();
    let r = write(f.rdi, f.rsi, f.rdx);
    f.set_ret(r.unwrap_or_else(Errno::ret));
    super::process::exit_if_dying_for_return();
    super::process::kill_after_check_if_armed();
}

/// Every call but `write`.
#[inline(never)]
fn dispatch_other(f: &mut SyscallFrame) {
    task::count_syscall();
    let r = match f.nr() {
        nr::WRITE => write(f.rdi, f.rsi, f.rdx),
        nr::SCHED_YIELD => {
            crate::sched::yield_now();
            Ok(0)
        }
        nr::GETPID => Ok(exo_percpu::pid() as i64),
        nr::EXIT | nr::THREAD_EXIT => task::exit(f.rdi),
        nr::EXIT_GROUP => task::exit_group(f.rdi),
        nr::MMAP => mmap(f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9),
        nr::MUNMAP => munmap(f.rdi, f.rsi),
        nr::MPROTECT => mprotect(f.rdi, f.rsi, f.rdx),
        nr::GETCPU => getcpu(f.rdi, f.rsi),
        nr::CLOCK_GETTIME => clock_gettime(f.rdi, f.rsi),
        nr::NANOSLEEP => nanosleep(f.rdi),
        nr::SCHED_SETAFFINITY => setaffinity(f.rdi, f.rsi, f.rdx),
        nr::SPAWN => spawn(f.rdi, f.rsi, f.rdx),
        nr::WAIT => wait(f.rdi, f.rsi),
        nr::KILL => super::process::kill_child(f.rdi, f.rsi).map(|()| 0),
        nr::FUTEX => super::futex::futex(f.rdi, f.rsi, f.rdx, f.r10),
        nr::SET_TID_ADDRESS => Ok(super::task::set_tid_address(f.rdi) as i64),
        nr::THREAD_CREATE => super::process::thread_create(f.rdi, f.rsi, f.rdx).map(|t| t as i64),
        nr::THREAD_JOIN => super::process::thread_join(f.rdi).map(|c| c as i64),
        nr::SHM_MAP => super::shm::shm_map(f.rdi, f.rsi),
        nr::HANDLE_INFO => super::ipc::handle_info(f.rdi),
        _ => Err(Errno::Enosys),
    };
    f.set_ret(r.unwrap_or_else(Errno::ret));
    // A thread whose process is being killed does not go back.
    super::process::exit_if_dying_for_return();
}

/// Bytes a `write` that faults part-way reports as written: whole 256-byte blocks from the
/// start of its buffer (the granularity of the kernel before the console rings, kept so a
/// fault in a short buffer is `-EFAULT`, never a short count).
const WRITE_FAULT_GRANULE: usize = 256;

/// The CPU whose console ring each thread (by its slot in the thread table) last queued
/// bytes in, `u32::MAX` when none is known; written by that thread only (reset at its start
/// and its end: [`console_thread_start`], [`console_thread_end`]). A thread that writes on
/// another CPU than last time first flushes every ring, so its own bytes keep their order
/// across migrations.
static WRITE_CPU: [AtomicU32; crate::sched::MAX_THREADS] =
    [const { AtomicU32::new(u32::MAX) }; crate::sched::MAX_THREADS];

/// A user thread's first step: no CPU holds its bytes yet (its slot's `WRITE_CPU` may still
/// name the last owner's).
pub(super) fn console_thread_start() {
    let g = IrqGuard::new();
    if let Some(w) = crate::sched::current_slot(&g).and_then(|i| WRITE_CPU.get(i)) {
        w.store(u32::MAX, Ordering::Relaxed);
    }
}

/// A user thread's end, before its process's `PROC` line: the ring that holds its last
/// bytes, if it is another CPU's than this one's, is written out (the `PROC` line drains
/// its own CPU's ring whole but only the complete lines of the others: a process that
/// moved after an unfinished last `write` had its `PROC` line first,
/// `user.console_proc_line_after_a_moved_writer`); then no ring names it as last writer and
/// its slot forgets the CPU. Until 2026-12-05 neither was done: the writer's name (its
/// kernel stack's top) outlived it, and the next thread on that stack took the fast path
/// on its first `write`, leaving its `WRITE_CPU` unknown, so a move after it skipped the
/// flush and that thread's bytes came out of order (found by review;
/// `user.console_writer_forgotten_at_thread_end`).
pub(super) fn console_thread_end() {
    let (last, here) = {
        let g = IrqGuard::new();
        let last = crate::sched::current_slot(&g)
            .and_then(|i| WRITE_CPU.get(i))
            .map_or(u32::MAX, |w| w.swap(u32::MAX, Ordering::Relaxed));
        (last, crate::sched::this_cpu())
    };
    // No bytes known (it never wrote): no ring names it, nothing to write out (a thread's
    // write that names it in a ring also records that ring's CPU here: one ring, this
    // one, is all the end looks at; icount `uthread.spawn` +72 when it looked at every
    // ring).
    if last == u32::MAX {
        return;
    }
    let Some(&ring) =
        crate::smp::cpus::get(exo_percpu::CpuId(last)).and_then(|b| b.ext.console.get())
    else {
        return;
    };
    if last != here {
        crate::console::flush_one(ring);
    }
    crate::console::unname_writer(ring, exo_percpu::kstack_top());
}

/// `write`: fd 1 and 2 are the console. The whole range is checked first (`-EFAULT`
/// before any byte otherwise); the bytes are copied straight from user memory into this
/// CPU's console ring (interrupts off, no lock, no UART wait: see `crate::console`) and
/// the call returns. A ring too full for the rest is flushed synchronously and the copy
/// goes on (back-pressure, nothing dropped). A fault part-way returns the bytes queued
/// (whole [`WRITE_FAULT_GRANULE`] blocks), or `-EFAULT` if none.
///
/// Fast path (inline): at most [`WRITE_FAULT_GRANULE`] bytes that fit in the free space
/// before the ring's end, on the CPU this thread last wrote on: one 8-byte-step copy into
/// the ring, one index store. Everything else (first write of a thread, a moved thread,
/// a wrap, a full ring, long writes) takes [`write_slow`], which starts over (the fast path
/// publishes nothing unless it succeeds; a fault there is `-EFAULT` at once, as the
/// general path would answer for a buffer shorter than one granule).
#[inline(always)]
fn write(fd: u64, buf: u64, len: u64) -> Result<i64, Errno> {
    let mut faulted = false;
    if (fd == 1 || fd == 2)
        && len <= WRITE_FAULT_GRANULE as u64
        && usercopy::is_user_range(buf, len)
        && let Some(r) = write_fast(buf, len as usize, &mut faulted)
    {
        return r;
    }
    if faulted {
        return write_fast_faulted(fd, buf, len);
    }
    write_slow(fd, buf, len)
}

/// [`write_fast`]'s copy faulted. Made with interrupts off, it cannot have brought in a
/// demand-zero page (its fault takes the space's locks): the buffer's are brought in now,
/// and the general path copies again; without any, the fault stands (`EFAULT`, after the
/// one faulting copy, as before).
#[cold]
#[inline(never)]
fn write_fast_faulted(fd: u64, buf: u64, len: u64) -> Result<i64, Errno> {
    if super::task::fault_in_user(buf, len) != 0 {
        write_slow(fd, buf, len)
    } else {
        Err(Errno::Efault)
    }
}

#[inline(always)]
fn write_fast(buf: u64, len: usize, faulted: &mut bool) -> Option<Result<i64, Errno>> {
    let g = IrqGuard::new();
    let ring = *crate::smp::cpus::local(&g)?.ext.console.get()?;
    // Our latest bytes are in this ring (and nowhere else): append.
    if ring.last_writer() != exo_percpu::kstack_top() {
        return None;
    }
    ring.produce(&g, |p| queue_fast(p, buf, len, faulted))?
}

#[inline(always)]
fn queue_fast(
    p: &mut exo_sync::ring::Producer<'static>,
    buf: u64,
    len: usize,
    faulted: &mut bool,
) -> Option<Result<i64, Errno>> {
    let r = p.push_with(len, |dst| match usercopy::copy_from_user_prefix(dst, buf) {
        Ok(n) if n == len => Ok(()),
        _ => Err(Errno::Efault),
    })?;
    // A fault: `write` answers once interrupts are on ([`write_fast_faulted`]).
    *faulted = r.is_err();
    r.is_ok().then_some(Ok(len as i64))
}

/// The general `write` (see [`write`]).
#[inline(never)]
fn write_slow(fd: u64, buf: u64, len: u64) -> Result<i64, Errno> {
    if fd != 1 && fd != 2 {
        return Err(Errno::Ebadf);
    }
    // A length of 0 touches nothing (the ABI's pointer rule): 0 for any `buf` in the user
    // half, NULL too, as Linux does (a kernel or non-canonical `buf` stays `EFAULT`, as
    // there). Until 2026-12-05 a NULL `buf` made it `EFAULT` (found by review).
    if len == 0 && buf <= usercopy::USER_END {
        return Ok(0);
    }
    // The whole range must be user memory (`EFAULT` before any byte); a count above
    // `WRITE_MAX` is then a short write. Until 2026-12-04 a count above the copy limit
    // (1 GiB) was `EFAULT` even over valid memory, against the ABI's short write.
    // (`usercopy::is_user_range` but for its copy-length cap.)
    if buf < usercopy::USER_BASE
        || buf
            .checked_add(len)
            .is_none_or(|end| end > usercopy::USER_END)
    {
        return Err(Errno::Efault);
    }
    let len = len.min(WRITE_MAX) as usize;
    write_through(
        buf,
        len,
        |g| crate::smp::cpus::local(g)?.ext.console.get().copied(),
        || {
            // A thread being killed stops writing (until 2026-12-05 it went on flushing up
            // to 64 KiB at the UART's pace after its process was killed; found by review).
            if super::process::dying() {
                return false;
            }
            crate::console::flush_all();
            true
        },
    )
}

/// The general write loop over the ring `ring_of` names for the running CPU (`None`: no
/// ring, the bytes go to the UART directly): checked user range `buf..buf + len` in,
/// `flush` (every ring out to the UART, [`crate::console::flush_all`]) when the ring is full
/// or when this thread's earlier bytes may sit in another CPU's ring. Kernel tests run it
/// over a small ring of their own.
pub fn write_through(
    buf: u64,
    len: usize,
    ring_of: impl Fn(&IrqGuard) -> Option<&'static crate::console::CpuRing>,
    flush: impl Fn() -> bool,
) -> Result<i64, Errno> {
    // `flush` said stop: what was queued, or `EINTR` for nothing.
    let stopped = |done: usize| {
        if done == 0 {
            Err(Errno::Eintr)
        } else {
            Ok(done as i64)
        }
    };
    let mut done = 0usize;
    // Where the copy last faulted and demand-zero pages were brought in (`usize::MAX`:
    // never): one more try from each such place, not more.
    let mut retried_at = usize::MAX;
    while done < len {
        let g = IrqGuard::new();
        let Some(ring) = ring_of(&g) else {
            drop(g);
            return write_without_ring(buf + done as u64, len - done)
                .map(|n| (done as i64) + n)
                .or(if done == 0 {
                    Err(Errno::Efault)
                } else {
                    Ok(done as i64)
                });
        };
        let cpu = ring.cpu();
        let me = exo_percpu::kstack_top();
        if ring.last_writer() != me {
            // Someone else wrote here last, or we wrote elsewhere since: we become this
            // ring's last writer and no other ring's; if our earlier bytes may sit in
            // another CPU's ring, out with them first.
            crate::console::forget_writer(me);
            ring.set_last_writer(me);
            let last = crate::sched::current_slot(&g).and_then(|i| WRITE_CPU.get(i));
            if let Some(w) = last
                && w.load(Ordering::Relaxed) != cpu
            {
                let moved = w.load(Ordering::Relaxed) != u32::MAX;
                w.store(cpu, Ordering::Relaxed);
                if moved {
                    drop(g);
                    if !flush() {
                        return stopped(done);
                    }
                    continue;
                }
            }
        }
        let (queued, faulted) = ring
            .produce(&g, |p| queue(p, buf, done, len))
            .unwrap_or((0, true));
        drop(g);
        done += queued;
        // The copy ran with interrupts off, where a demand-zero page's first touch cannot
        // bring it in (its fault takes the space's locks): it faulted. Such pages of the
        // rest are brought in now, interrupts on, and the copy goes on from `done`.
        if faulted
            && retried_at != done
            && super::task::fault_in_user(buf + done as u64, (len - done) as u64) != 0
        {
            retried_at = done;
            continue;
        }
        if faulted {
            return if done == 0 {
                Err(Errno::Efault)
            } else {
                Ok(done as i64)
            };
        }
        if done < len && !flush() {
            // The ring is full: back-pressure (or the writer stops).
            return stopped(done);
        }
    }
    Ok(done as i64)
}

/// Copies user bytes `buf + done .. buf + len` into the free space of a ring and publishes
/// them: returns the count queued and whether a user page faulted.
#[inline(always)]
fn queue(
    p: &mut exo_sync::ring::Producer<'static>,
    buf: u64,
    done: usize,
    len: usize,
) -> (usize, bool) {
    let (a, b) = p.spare();
    let want = len - done;
    let n1 = want.min(a.len());
    let mut copied = usercopy::copy_from_user_prefix(&mut a[..n1], buf + done as u64).unwrap_or(0);
    let mut faulted = copied < n1;
    let mut tried = n1;
    if !faulted && n1 < want && !b.is_empty() {
        let n2 = (want - n1).min(b.len());
        tried += n2;
        let c2 =
            usercopy::copy_from_user_prefix(&mut b[..n2], buf + (done + n1) as u64).unwrap_or(0);
        copied += c2;
        faulted = c2 < n2;
    }
    if faulted {
        // The copy goes 8 bytes a step from where it began (the buffer, or the ring's wrap),
        // and the step that faulted left up to 7 readable bytes: taken one by one when a
        // block ends within them, so every whole block before the fault is kept, as
        // documented (otherwise not: one more fault for nothing). Until 2026-12-06 a block
        // that ended less than 8 bytes before the fault was lost when the ring wrapped
        // before it at an offset not a multiple of 8 (`write` said `EFAULT` for 257
        // readable bytes; found by the fuzzer's new partial-write check;
        // `user.console_write_keeps_whole_blocks_before_a_fault`).
        let at = done + copied;
        let need = (at / WRITE_FAULT_GRANULE + 1) * WRITE_FAULT_GRANULE - at;
        for _ in 0..if need < 8 { need } else { 0 } {
            if copied >= tried {
                break;
            }
            let dst = if copied < n1 {
                &mut a[copied..=copied]
            } else {
                &mut b[copied - n1..=copied - n1]
            };
            if usercopy::copy_from_user_prefix(dst, buf + (done + copied) as u64) != Ok(1) {
                break;
            }
            copied += 1;
        }
    }
    let keep = if faulted {
        ((done + copied) / WRITE_FAULT_GRANULE * WRITE_FAULT_GRANULE).saturating_sub(done)
    } else {
        copied
    };
    p.commit(keep);
    (keep, faulted)
}

/// Test switch: [`write_without_ring`] takes this CPU for one whose ring cannot be made (no
/// memory), so its bytes go to the UART (`user.console_write_without_a_ring_goes_to_the_uart_in_chunks`).
pub static NO_RING_FOR_TESTS: AtomicBool = AtomicBool::new(false);

/// `write` on a CPU without a console ring: make one (the `init` and `test` jobs make them
/// all in advance: [`prepare_console_rings`]) and start over; without memory for it, the
/// bytes go to the UART now (after every ring), in 256-byte chunks through a stack buffer.
#[cold]
#[inline(never)]
fn write_without_ring(buf: u64, len: usize) -> Result<i64, Errno> {
    if !NO_RING_FOR_TESTS.load(Ordering::Relaxed)
        && console_ring_for(crate::sched::this_cpu()).is_some()
    {
        return write_slow(1, buf, len as u64);
    }
    let mut chunk = [0u8; WRITE_FAULT_GRANULE];
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(chunk.len());
        if usercopy::copy_from_user(&mut chunk[..n], buf + done as u64).is_err() {
            return if done == 0 {
                Err(Errno::Efault)
            } else {
                Ok(done as i64)
            };
        }
        crate::console::write_bytes(&chunk[..n]);
        done += n;
    }
    Ok(done as i64)
}

/// CPU `cpu`'s console ring, made and registered if it has none yet (`None`: no memory).
fn console_ring_for(cpu: u32) -> Option<&'static crate::console::CpuRing> {
    let block = crate::smp::cpus::get(exo_percpu::CpuId(cpu))?;
    if let Some(&r) = block.ext.console.get() {
        return Some(r);
    }
    use crate::mm::kalloc;
    // Everything taken owned first and kept (leaked) only once all of it was had: until
    // 2026-12-05 each piece was leaked as it came, and a `write` that found memory short
    // for the second or third lost the first ones for good, once per call (found by
    // review). `RING_BYTES` is a power of two, so the ring's own check cannot fail.
    let state = kalloc::try_box(exo_sync::ring::RingState::new()).ok()?;
    let mut storage = alloc::vec::Vec::new();
    storage.try_reserve_exact(crate::console::RING_BYTES).ok()?;
    storage.resize(crate::console::RING_BYTES, 0u8);
    let slot = kalloc::try_box(core::mem::MaybeUninit::<crate::console::CpuRing>::uninit()).ok()?;
    let ring = crate::console::CpuRing::new(cpu, alloc::boxed::Box::leak(state), storage.leak())?;
    let mine: &'static crate::console::CpuRing =
        alloc::boxed::Box::leak(alloc::boxed::Box::write(slot, ring));
    let r = *block.ext.console.call_once(|| mine);
    // A ring that lost a race for the slot (another thread made one first) stays unused
    // and unregistered: only the slot's ring is drained and written.
    if core::ptr::eq(r, mine) {
        crate::console::register(r);
    }
    Some(r)
}

/// Makes every online CPU's console ring now (the jobs that run user code call this before
/// they measure memory, so the first `write` on a CPU allocates nothing). Returns the CPUs
/// left without one (no memory: their writes go to the UART directly).
pub fn prepare_console_rings() -> u32 {
    crate::smp::cpus::online()
        .filter(|b| console_ring_for(b.hot.cpu_id).is_none())
        .count() as u32
}

const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
/// Exo-OS's own (`exo_abi::MAP_LAZY`): demand-zero pages, committed in full at the call.
const MAP_LAZY: u64 = 0x0100_0000;

fn vm_errno(e: super::aspace::VmError, fixed: bool) -> Errno {
    use super::aspace::VmError;
    match e {
        VmError::NoMemory | VmError::NotMapped => Errno::Enomem,
        VmError::Exists => Errno::Eexist,
        // A range outside user space is ENOMEM for mmap(MAP_FIXED) and mprotect on Linux,
        // EINVAL for munmap; anything malformed is EINVAL.
        VmError::OutOfRange if fixed => Errno::Enomem,
        VmError::OutOfRange | VmError::Invalid => Errno::Einval,
    }
}

/// The page permissions of `prot` (`PROT_READ` 1, `PROT_WRITE` 2, `PROT_EXEC` 4): 0 is
/// `PROT_NONE` (mapped, every access faults); write or exec imply read, as on x86; W+X and
/// unknown bits are EINVAL.
fn prot_flags(prot: u64) -> Result<UserFlags, Errno> {
    let (w, x) = (prot & PROT_WRITE != 0, prot & PROT_EXEC != 0);
    if prot & !7 != 0 || w && x {
        return Err(Errno::Einval);
    }
    Ok(if prot == 0 {
        UserFlags::NONE
    } else {
        UserFlags::new(w, x)
    })
}

/// `mmap`: anonymous, private, committed now (no overcommit: a map the kernel cannot back
/// is refused, touching a granted page never fails); W+X refused. `fd` must be -1 (its
/// low 32 bits: an `int`) and `offset` 0, as the ABI says: until 2026-12-05 the offset was
/// not read and fd 0 was taken (found by review; /faults checks both). Each page gets its
/// zeroed frame now, or with [`MAP_LAZY`] at its first access (`AddressSpace::map_lazy`:
/// charged now all the same; until 2026-12-06 only the initial stack was demand-zero).
fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> Result<i64, Errno> {
    if flags & (MAP_ANONYMOUS | MAP_PRIVATE) != (MAP_ANONYMOUS | MAP_PRIVATE)
        || flags & !(MAP_ANONYMOUS | MAP_PRIVATE | MAP_FIXED | MAP_LAZY) != 0
        || fd as u32 != u32::MAX
        || offset != 0
        || len == 0
    {
        return Err(Errno::Einval);
    }
    let f = prot_flags(prot)?;
    let fixed = flags & MAP_FIXED != 0;
    let at = fixed.then_some(addr);
    super::process::with_current(|a| {
        if flags & MAP_LAZY != 0 {
            a.map_lazy(at, len, f)
        } else {
            a.map_flags(at, len, f)
        }
        .map(|va| va as i64)
        .map_err(|e| vm_errno(e, fixed))
    })
    .unwrap_or(Err(Errno::Einval))
}

fn munmap(addr: u64, len: u64) -> Result<i64, Errno> {
    super::process::with_current(|a| {
        a.unmap(addr, len)
            .map(|_| 0)
            .map_err(|e| vm_errno(e, false))
    })
    .unwrap_or(Err(Errno::Einval))
}

fn mprotect(addr: u64, len: u64, prot: u64) -> Result<i64, Errno> {
    let f = prot_flags(prot)?;
    super::process::with_current(|a| {
        a.protect_flags(addr, len, f)
            .map(|()| 0)
            .map_err(|e| vm_errno(e, true))
    })
    .unwrap_or(Err(Errno::Einval))
}

fn put_u32(ptr: u64, v: u32) -> Result<(), Errno> {
    if ptr == 0 {
        return Ok(());
    }
    usercopy::copy_to_user(ptr, &v.to_le_bytes()).map_err(|_| Errno::Efault)
}

fn getcpu(cpu: u64, node: u64) -> Result<i64, Errno> {
    put_u32(cpu, crate::sched::this_cpu())?;
    put_u32(node, 0)?;
    Ok(0)
}

/// `clock_gettime`: CLOCK_REALTIME (0) and CLOCK_MONOTONIC (1) both count from boot.
fn clock_gettime(clock: u64, ts: u64) -> Result<i64, Errno> {
    if clock > 1 {
        return Err(Errno::Einval);
    }
    let ns = crate::smp::time::ticks_to_us(exo_arch::tsc::rdtsc()).saturating_mul(1000);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    b[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    usercopy::copy_to_user(ts, &b).map_err(|_| Errno::Efault)?;
    Ok(0)
}

/// The `struct timespec` at user address `ts` as TSC ticks, rounded up (a wait of that
/// many ticks lasts at least the time asked) and saturating (a long time is a long wait):
/// `EINVAL` for a negative field or `tv_nsec >= 10^9`, `EFAULT` if unreadable. Until
/// 2026-12-05 `nanosleep` and the futex timeout dropped the nanoseconds below a
/// microsecond and rounded the TSC rate down (`{0, 999}` slept not at all, a 100 s sleep
/// at 2.4999 GHz ended 40 ms early) and refused `tv_sec` above 2^32 (found by review;
/// `user.timespec_waits_round_up_and_saturate`).
pub(super) fn timespec_ticks(ts: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 16];
    usercopy::copy_from_user(&mut b, ts).map_err(|_| Errno::Efault)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let nsec = i64::from_le_bytes(b[8..].try_into().unwrap_or_default());
    timespec_to_ticks(sec, nsec, crate::smp::time::tsc_hz())
}

/// [`timespec_ticks`] of the fields `sec`, `nsec` at `hz`.
pub(super) fn timespec_to_ticks(sec: i64, nsec: i64, hz: u64) -> Result<u64, Errno> {
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::Einval);
    }
    let ns = (sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec as u64);
    Ok(exo_arch::tsc::ns_to_ticks_ceil(ns, hz))
}

/// The TSC deadline of an optional relative timeout: `*ts` from now, `u64::MAX` for NULL
/// (`futex` and `wait`).
pub(super) fn timeout_deadline(ts: u64) -> Result<u64, Errno> {
    match ts {
        0 => Ok(u64::MAX),
        ts => Ok(exo_arch::tsc::rdtsc().saturating_add(timespec_ticks(ts)?)),
    }
}

/// `wait(pid, timeout)`: [`super::process::wait_until`] with the deadline `*timeout` from
/// now (NULL: none).
fn wait(pid: u64, timeout: u64) -> Result<i64, Errno> {
    super::process::wait_until(pid, timeout_deadline(timeout)?).map(|s| s as i64)
}

fn nanosleep(req: u64) -> Result<i64, Errno> {
    let deadline = exo_arch::tsc::rdtsc().saturating_add(timespec_ticks(req)?);
    while exo_arch::tsc::rdtsc() < deadline {
        if super::process::dying() {
            return Err(Errno::Eintr);
        }
        crate::sched::block_until(deadline, || !super::process::dying());
    }
    Ok(0)
}

/// `sched_setaffinity(tid, len, mask)`: the calling thread (`tid` 0 or its own id), bits
/// for CPUs (at most 1024). Another thread's id is `ESRCH`: until 2026-12-04 the pid was
/// accepted from any thread and changed the caller's own mask.
fn setaffinity(pid: u64, len: u64, mask: u64) -> Result<i64, Errno> {
    if pid != 0 && pid != crate::sched::current_uid() {
        return Err(Errno::Esrch);
    }
    let len = len.min(128);
    let mut bits = [0u8; 128];
    usercopy::copy_from_user(&mut bits[..len as usize], mask).map_err(|_| Errno::Efault)?;
    let mut set = crate::sched::CpuSet::empty();
    for cpu in 0..(len as u32 * 8).min(crate::smp::cpus::capacity() as u32) {
        if bits[(cpu / 8) as usize] & (1 << (cpu % 8)) != 0 {
            set.try_insert(cpu).map_err(|_| Errno::Enomem)?;
        }
    }
    crate::sched::set_affinity(set).map_err(|_| Errno::Einval)?;
    Ok(0)
}

/// `spawn(path, len, arg)`: a program of the initrd as a new process, on the caller's CPUs.
fn spawn(path: u64, len: u64, arg: u64) -> Result<i64, Errno> {
    if len == 0 {
        return Err(Errno::Einval);
    }
    if len > super::process::PATH_MAX as u64 {
        return Err(Errno::Enametoolong);
    }
    let mut buf = [0u8; super::process::PATH_MAX];
    usercopy::copy_from_user(&mut buf[..len as usize], path).map_err(|_| Errno::Efault)?;
    let p = core::str::from_utf8(&buf[..len as usize]).map_err(|_| Errno::Einval)?;
    let b = crate::sched::Builder::new()
        .inherit_affinity()
        .map_err(|_| Errno::Enomem)?;
    super::process::spawn(p, arg, b).map(|pid| pid as i64)
}
