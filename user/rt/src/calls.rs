//! Typed wrappers: one function per system call of [`exo_abi::SYSCALLS`] (and a few
//! conveniences). Errors are [`Errno`]; the calls that cannot fail return their value.

use core::ptr::{self, NonNull};
use core::sync::atomic::AtomicU32;

use exo_abi::{
    CLOCK_MONOTONIC, Errno, ExitStatus, FUTEX_PRIVATE_FLAG, FUTEX_WAIT, FUTEX_WAKE, MAP_ANONYMOUS,
    MAP_LAZY, MAP_PRIVATE, Timespec, nr,
};

use crate::raw::*;

/// Size in bytes of the CPU mask [`pin_to_cpu`] passes (1024 CPUs, glibc's `cpu_set_t`).
pub const CPU_SET_BYTES: usize = 128;

/// `write(fd, buf, count)`: bytes written (all of them, on the console).
pub fn write(fd: usize, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads `buf`.
    Errno::from_ret(unsafe { syscall3(nr::WRITE, fd, buf.as_ptr() as usize, buf.len()) })
}

/// `getpid()`: the caller's process id.
#[inline]
pub fn getpid() -> usize {
    // SAFETY: no arguments, no effect.
    let ret = unsafe { syscall0(nr::GETPID) };
    ret as usize
}

/// `exit(code)`: ends the calling thread; the process ends (status `code & 0xff`) when
/// this was its last thread.
pub fn exit(code: i32) -> ! {
    // SAFETY: the thread ends here; nothing after the call runs.
    unsafe { syscall1(nr::EXIT, code as usize) };
    crate::start::unreachable_return()
}

/// `exit_group(code)`: ends the process, every thread of it, with status `code & 0xff`.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: the process ends here; nothing after the call runs.
    unsafe { syscall1(nr::EXIT_GROUP, code as usize) };
    crate::start::unreachable_return()
}

/// `mmap(addr, len, prot, flags, -1, 0)`: anonymous private memory; `flags` must include
/// `MAP_PRIVATE | MAP_ANONYMOUS`. Returns the address.
///
/// # Safety
/// With `MAP_FIXED`, the range must hold nothing the program uses (Exo-OS refuses to
/// replace a mapping, but other systems do).
pub unsafe fn mmap(addr: usize, len: usize, prot: u32, flags: u32) -> Result<usize, Errno> {
    // SAFETY: the caller vouches for MAP_FIXED; otherwise the kernel picks unused pages.
    Errno::from_ret(unsafe {
        syscall6(
            nr::MMAP,
            addr,
            len,
            prot as usize,
            flags as usize,
            usize::MAX, // fd = -1
            0,
        )
    })
}

/// `len` bytes of fresh zeroed memory with access `prot`, where the kernel chooses.
pub fn map_anonymous(len: usize, prot: u32) -> Result<NonNull<u8>, Errno> {
    // SAFETY: not MAP_FIXED: the kernel maps pages nothing else uses.
    let addr = unsafe { mmap(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS) }?;
    NonNull::new(addr as *mut u8).ok_or(Errno::EINVAL)
}

/// `len` bytes of demand-zero memory with access `prot`, where the kernel chooses
/// (`MAP_LAZY`): committed now like [`map_anonymous`]'s, each page given its zeroed frame at
/// its first access.
pub fn map_anonymous_lazy(len: usize, prot: u32) -> Result<NonNull<u8>, Errno> {
    // SAFETY: not MAP_FIXED: the kernel maps pages nothing else uses.
    let addr = unsafe { mmap(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LAZY) }?;
    NonNull::new(addr as *mut u8).ok_or(Errno::EINVAL)
}

/// `munmap(addr, len)`.
///
/// # Safety
/// Nothing may use the pages of `addr..addr + len` afterwards.
pub unsafe fn munmap(addr: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: the caller vouches that the range is unused.
    Errno::from_ret(unsafe { syscall2(nr::MUNMAP, addr, len) })
}

/// `mprotect(addr, len, prot)`.
///
/// # Safety
/// Nothing may access the pages in a way `prot` forbids afterwards.
pub unsafe fn mprotect(addr: usize, len: usize, prot: u32) -> Result<usize, Errno> {
    // SAFETY: the caller vouches for the new rights.
    Errno::from_ret(unsafe { syscall3(nr::MPROTECT, addr, len, prot as usize) })
}

/// `sched_yield()`.
#[inline]
pub fn sched_yield() {
    // SAFETY: no arguments; it only reschedules.
    unsafe { syscall0(nr::SCHED_YIELD) };
}

/// `futex(word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, expected, timeout)`: sleeps while
/// `*word == expected`, at most `timeout` (relative). `Err(EAGAIN)` when the word differs,
/// `Err(ETIMEDOUT)` when the time ran out.
pub fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<&Timespec>,
) -> Result<usize, Errno> {
    futex(word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, expected, timeout)
}

/// `futex(word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count)`: wakes at most `count` threads
/// sleeping on `word`; returns how many it woke.
pub fn futex_wake(word: &AtomicU32, count: u32) -> Result<usize, Errno> {
    futex(word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, None)
}

/// [`futex_wait`] on a shared word (no `FUTEX_PRIVATE_FLAG`): keyed by its physical
/// address, so it meets [`futex_wake_shared`] from another process that maps the same
/// shared region (`shm_map`), wherever that process mapped it.
pub fn futex_wait_shared(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<&Timespec>,
) -> Result<usize, Errno> {
    futex(word, FUTEX_WAIT, expected, timeout)
}

/// [`futex_wake`] on a shared word (see [`futex_wait_shared`]).
pub fn futex_wake_shared(word: &AtomicU32, count: u32) -> Result<usize, Errno> {
    futex(word, FUTEX_WAKE, count, None)
}

/// Whether the 4-byte word at `addr` (4-aligned) can be read, asked of the kernel (a
/// private `FUTEX_WAKE` of no waiter reads the word: `EFAULT` if it is not mapped
/// readable). No reference to the word is made.
pub(crate) fn word_readable(addr: usize) -> bool {
    // SAFETY: the kernel reads the word with its fault-checked copy and wakes nobody (count
    // 0); nothing of this program's memory is written.
    let r = unsafe {
        syscall4(
            nr::FUTEX,
            addr,
            (FUTEX_WAKE | FUTEX_PRIVATE_FLAG) as usize,
            0,
            0,
        )
    };
    Errno::from_ret(r).is_ok()
}

fn futex(word: &AtomicU32, op: u32, val: u32, timeout: Option<&Timespec>) -> Result<usize, Errno> {
    let t = timeout.map_or(ptr::null(), |t| t as *const Timespec);
    // SAFETY: the kernel reads the word and the timeout (WAIT), both valid for the call.
    Errno::from_ret(unsafe {
        syscall4(
            nr::FUTEX,
            word.as_ptr() as usize,
            op as usize,
            val as usize,
            t as usize,
        )
    })
}

/// `set_tid_address(word)`: at the calling thread's end (however it ends) the kernel stores
/// 0 in `word` and wakes one futex waiter there, private or shared; replaces the word named
/// before. Returns the thread id.
pub fn set_tid_address(word: &AtomicU32) -> usize {
    // SAFETY: the kernel only records the address; it writes the word at the thread's end
    // (a word of a mapping the caller keeps: the fusion region lives as long as the process).
    unsafe { syscall1(nr::SET_TID_ADDRESS, word.as_ptr() as usize) as usize }
}

/// `clock_gettime(clock)`: `CLOCK_MONOTONIC` or `CLOCK_REALTIME`.
pub fn clock_gettime(clock: u32) -> Result<Timespec, Errno> {
    let mut ts = Timespec::ZERO;
    // SAFETY: the kernel writes one Timespec into `ts`.
    Errno::from_ret(unsafe {
        syscall2(
            nr::CLOCK_GETTIME,
            clock as usize,
            &mut ts as *mut Timespec as usize,
        )
    })?;
    Ok(ts)
}

/// Nanoseconds on `CLOCK_MONOTONIC` (0 if the call fails).
pub fn monotonic_nanos() -> u64 {
    clock_gettime(CLOCK_MONOTONIC)
        .ok()
        .and_then(|t| t.as_nanos())
        .unwrap_or(0)
}

/// `nanosleep(req, NULL)`.
pub fn nanosleep(req: &Timespec) -> Result<usize, Errno> {
    // SAFETY: the kernel reads one Timespec.
    Errno::from_ret(unsafe { syscall2(nr::NANOSLEEP, req as *const Timespec as usize, 0) })
}

/// `getcpu(&cpu, NULL, NULL)`: the CPU the caller runs on (it may have moved by the time
/// the caller looks, unless pinned).
pub fn getcpu() -> Result<usize, Errno> {
    let mut cpu = 0u32;
    // SAFETY: the kernel writes one u32 into `cpu`.
    Errno::from_ret(unsafe { syscall3(nr::GETCPU, &mut cpu as *mut u32 as usize, 0, 0) })?;
    Ok(cpu as usize)
}

/// `sched_setaffinity(tid, size_of_val(mask), mask)`: bit `i` of the mask (word `i / 64`,
/// bit `i % 64`) allows CPU `i`. `tid` 0 is the calling thread.
pub fn sched_setaffinity(tid: usize, mask: &[u64]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the mask.
    Errno::from_ret(unsafe {
        syscall3(
            nr::SCHED_SETAFFINITY,
            tid,
            core::mem::size_of_val(mask),
            mask.as_ptr() as usize,
        )
    })
}

/// Restricts the calling thread to CPU `cpu` (and moves it there before returning).
/// `Err(EINVAL)` when that CPU is not online (or `cpu >= 1024`).
pub fn pin_to_cpu(cpu: usize) -> Result<usize, Errno> {
    let mut mask = [0u64; CPU_SET_BYTES / 8];
    *mask.get_mut(cpu / 64).ok_or(Errno::EINVAL)? |= 1 << (cpu % 64);
    sched_setaffinity(0, &mask)
}

/// `spawn(path, len, arg)`: a new child process running the initrd executable `path`
/// (`"/hello"` and `"hello"` name the same entry), its `_start` called with `rdi = arg`.
/// Returns the child's pid.
pub fn spawn(path: &str, arg: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the path.
    Errno::from_ret(unsafe {
        syscall3(nr::SPAWN, path.as_ptr() as usize, path.len(), arg as usize)
    })
}

/// `wait(pid, NULL)`: blocks until child `pid` ends; how it ended.
pub fn wait(pid: usize) -> Result<ExitStatus, Errno> {
    // SAFETY: no memory is involved (no timeout).
    let raw = Errno::from_ret(unsafe { syscall2(nr::WAIT, pid, 0) })?;
    ExitStatus::from_raw(raw).ok_or(Errno::EIO)
}

/// `wait(pid, &timeout)`: [`wait`] for at most `timeout`; `Err(ETIMEDOUT)` when it passes
/// with the child still running (it can be waited for again, or [`kill`]ed).
/// [`Timespec::ZERO`] only looks.
pub fn wait_timeout(pid: usize, timeout: &Timespec) -> Result<ExitStatus, Errno> {
    // SAFETY: the kernel reads one Timespec.
    let raw =
        Errno::from_ret(unsafe { syscall2(nr::WAIT, pid, timeout as *const Timespec as usize) })?;
    ExitStatus::from_raw(raw).ok_or(Errno::EIO)
}

/// `kill(pid, sig)`'s one signal: ends the process.
pub const SIGKILL: usize = 9;

/// `kill(pid, sig)`: [`SIGKILL`] ends child `pid` (its status: killed
/// [`KillCause::SIGKILL`](crate::KillCause::SIGKILL); the caller still [`wait`]s for it);
/// 0 only checks that it could. `EPERM`: not a child of the caller; `ESRCH`: no such
/// process; `EINVAL`: another signal.
pub fn kill(pid: usize, sig: usize) -> Result<(), Errno> {
    // SAFETY: no memory is involved.
    Errno::from_ret(unsafe { syscall2(nr::KILL, pid, sig) }).map(|_| ())
}

/// `thread_create(entry, stack_top, arg)`: a new thread of this process starting at
/// `entry` with `rsp = stack_top` and `rdi = arg`, every other register 0. Returns its
/// thread id. [`crate::thread::spawn`] is the safe interface.
///
/// # Safety
/// `entry` must be code that never returns (it must end with `thread_exit` or `exit`) and
/// expects this state; `stack_top` must be 16-byte aligned and the top of writable memory
/// that only this thread uses, large enough for it, until it ends.
pub unsafe fn thread_create(entry: usize, stack_top: usize, arg: u64) -> Result<usize, Errno> {
    // SAFETY: the caller vouches for the entry and the stack.
    Errno::from_ret(unsafe { syscall3(nr::THREAD_CREATE, entry, stack_top, arg as usize) })
}

/// `thread_exit(value)`: ends the calling thread; `thread_join` returns `value`. The
/// process ends (status `value & 0xff`) when this was its last thread.
pub fn thread_exit(value: u32) -> ! {
    // SAFETY: the thread ends here; nothing after the call runs.
    unsafe { syscall1(nr::THREAD_EXIT, value as usize) };
    crate::start::unreachable_return()
}

/// `thread_join(tid)`: blocks until thread `tid` of this process ends; its
/// `thread_exit` value.
pub fn thread_join(tid: usize) -> Result<usize, Errno> {
    // SAFETY: no memory is involved.
    Errno::from_ret(unsafe { syscall1(nr::THREAD_JOIN, tid) })
}

/// A message of the IPC calls: label, length (0..=64 bytes), badge (set by the kernel on
/// receipt: the sender's handle's badge, 0 for a reply), the info bits for zero-copy and
/// handles, and the eight payload words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcMsg {
    /// Protocol-defined.
    pub label: u32,
    /// Payload bytes that matter (all eight words always travel).
    pub len: u8,
    /// Who sent it (received messages only).
    pub badge: u64,
    /// Words 0 and 1 are a zero-copy descriptor (offset, length) into the endpoint's shared
    /// region (`exo_abi::ipc::INFO_ZC`; checked by the kernel, delivered to the receiver).
    pub zc: bool,
    /// The handle-passing info bits: `exo_abi::ipc::INFO_HANDLE` (on send: word 7 names a
    /// handle of the sender's to give, see [`IpcMsg::with_handle`]; on receipt: word 7 is
    /// the receiver's new handle, word 6 its rights) and, on receipt only,
    /// `exo_abi::ipc::INFO_HANDLE_LOST` (the handle could not be given). Other bits are
    /// passed to the kernel as they are (anything else is `EINVAL`).
    pub flags: u64,
    /// The payload.
    pub words: [u64; 8],
}

impl IpcMsg {
    /// A full 64-byte message.
    pub const fn new(label: u32, words: [u64; 8]) -> IpcMsg {
        IpcMsg {
            label,
            len: 64,
            badge: 0,
            zc: false,
            flags: 0,
            words,
        }
    }
    /// A zero-copy message: `label` and the descriptor of bytes `off..off + len` of the
    /// endpoint's shared region (words 2..8 are the protocol's).
    pub const fn zc(label: u32, off: u64, len: u64, rest: [u64; 6]) -> IpcMsg {
        IpcMsg {
            label,
            len: 64,
            badge: 0,
            zc: true,
            flags: 0,
            words: [
                off, len, rest[0], rest[1], rest[2], rest[3], rest[4], rest[5],
            ],
        }
    }
    /// The info word (`exo_abi::ipc::info`, with `INFO_ZC` for a descriptor, and
    /// [`IpcMsg::flags`]).
    pub const fn info(&self) -> u64 {
        exo_abi::ipc::info(self.label, self.len)
            | if self.zc { exo_abi::ipc::INFO_ZC } else { 0 }
            | self.flags
    }
    /// The same message passing `handle` (one of the sender's) with `rights`
    /// (`RIGHT_SEND`, `RIGHT_RECV`; 0: all the handle has): sets `INFO_HANDLE` and word 7
    /// (`exo_abi::ipc::handle_word`). Words 0..6 stay the protocol's (word 6 does not
    /// travel).
    pub const fn with_handle(mut self, handle: u32, rights: u64) -> IpcMsg {
        self.flags |= exo_abi::ipc::INFO_HANDLE;
        self.words[7] = exo_abi::ipc::handle_word(handle, rights);
        self
    }
    /// A received message's new handle (`INFO_HANDLE` set: word 7), now the receiver's to
    /// use and close.
    pub const fn handle(&self) -> Option<u32> {
        if self.flags & exo_abi::ipc::INFO_HANDLE != 0 {
            Some(self.words[7] as u32)
        } else {
            None
        }
    }
    /// The rights of [`IpcMsg::handle`] (word 6), 0 when the message brought none.
    pub const fn handle_rights(&self) -> u64 {
        if self.flags & exo_abi::ipc::INFO_HANDLE != 0 {
            self.words[6]
        } else {
            0
        }
    }
    /// A received message carried a handle the receiver could not get
    /// (`INFO_HANDLE_LOST`: its table was full, or the endpoint was gone).
    pub const fn handle_lost(&self) -> bool {
        self.flags & exo_abi::ipc::INFO_HANDLE_LOST != 0
    }
}

/// The info bits [`ipc_op`] keeps in [`IpcMsg::flags`] of a received message.
const RECEIVED_FLAGS: u64 = exo_abi::ipc::INFO_HANDLE | exo_abi::ipc::INFO_HANDLE_LOST;

/// One IPC call with `msg` (and `extra` info bits, e.g. `exo_abi::ipc::INFO_SLOW`); the
/// message the kernel left in the registers on success.
#[inline(always)]
pub fn ipc_op(
    nr: usize,
    handle: u32,
    msg: &IpcMsg,
    extra: u64,
    timeout_ns: u64,
) -> Result<IpcMsg, Errno> {
    let mut h = u64::from(handle);
    let mut info = msg.info() | extra;
    let mut words = msg.words;
    // SAFETY: the IPC calls read and write registers only.
    let r = unsafe { ipc(nr, &mut h, &mut info, &mut words, timeout_ns) };
    Errno::from_ret(r).map(|_| IpcMsg {
        label: exo_abi::ipc::label_of(info),
        len: exo_abi::ipc::len_of(info),
        badge: h,
        zc: info & exo_abi::ipc::INFO_ZC != 0,
        flags: info & RECEIVED_FLAGS,
        words,
    })
}

/// `ipc_call(handle, msg)`: sends and waits for the reply (timeout in ns, 0: none).
#[inline(always)]
pub fn ipc_call(handle: u32, msg: &IpcMsg, timeout_ns: u64) -> Result<IpcMsg, Errno> {
    ipc_op(nr::IPC_CALL, handle, msg, 0, timeout_ns)
}

/// `ipc_reply_recv(handle, reply)`: answers the call being served, waits for the next one.
/// `EBADF`, `EPERM`, `EINVAL`, `EMSGSIZE` or `ERANGE`: nothing was sent (the call can still
/// be answered with [`ipc_reply`]). `ETIMEDOUT` is the receive's: the reply went. `EPIPE` is
/// the receive's too (the reply went), except for a zero-copy `reply` answering a call whose
/// endpoint was destroyed meanwhile, refused before it was sent: after an `EPIPE` to a
/// zero-copy reply, [`ipc_reply`] with a plain message answers the call if it still waits
/// (`Ok`), and says `ESRCH` when nothing is left to answer (the reply had gone, or no
/// caller waited). No other error is returned (see `exo_abi::nr::IPC_REPLY_RECV`).
#[inline(always)]
pub fn ipc_reply_recv(handle: u32, reply: &IpcMsg, timeout_ns: u64) -> Result<IpcMsg, Errno> {
    ipc_op(nr::IPC_REPLY_RECV, handle, reply, 0, timeout_ns)
}

/// `ipc_recv(handle)`: waits for a message.
#[inline(always)]
pub fn ipc_recv(handle: u32, timeout_ns: u64) -> Result<IpcMsg, Errno> {
    ipc_op(nr::IPC_RECV, handle, &IpcMsg::default(), 0, timeout_ns)
}

/// `ipc_send(handle, msg)`: returns once a receiver took it.
#[inline(always)]
pub fn ipc_send(handle: u32, msg: &IpcMsg, timeout_ns: u64) -> Result<(), Errno> {
    ipc_op(nr::IPC_SEND, handle, msg, 0, timeout_ns).map(|_| ())
}

/// `ipc_reply(msg)`: answers the call being served.
#[inline(always)]
pub fn ipc_reply(msg: &IpcMsg) -> Result<(), Errno> {
    ipc_op(nr::IPC_REPLY, 0, msg, 0, 0).map(|_| ())
}

/// `endpoint_create(rights, badge)`: a new endpoint; its handle.
pub fn endpoint_create(rights: u64, badge: u64) -> Result<u32, Errno> {
    // SAFETY: only the caller's handle table changes.
    Errno::from_ret(unsafe { syscall2(nr::ENDPOINT_CREATE, rights as usize, badge as usize) })
        .map(|h| h as u32)
}

/// `shm_map(handle, len)`: maps the shared region of endpoint `handle` (created with `len`
/// bytes first when `len != 0`); its address.
pub fn shm_map(handle: u32, len: u64) -> Result<*mut u8, Errno> {
    // SAFETY: the kernel maps new memory at an address it picks; nothing of ours changes.
    Errno::from_ret(unsafe { syscall2(nr::SHM_MAP, handle as usize, len as usize) })
        .map(|a| a as *mut u8)
}

/// `handle_info(handle)`: the handle's rights (`RIGHT_SEND`, `RIGHT_RECV`) while its
/// endpoint can be used; `EPIPE` once it is destroyed or nobody can receive on it any
/// more (its server ended), `EBADF` for no such handle.
pub fn handle_info(handle: u32) -> Result<u64, Errno> {
    // SAFETY: reads the caller's handle table; nothing changes.
    Errno::from_ret(unsafe { syscall1(nr::HANDLE_INFO, handle as usize) }).map(|r| r as u64)
}

/// `handle_close(handle)`.
pub fn handle_close(handle: u32) -> Result<(), Errno> {
    // SAFETY: only the caller's handle table changes.
    Errno::from_ret(unsafe { syscall1(nr::HANDLE_CLOSE, handle as usize) }).map(|_| ())
}
