//! [`SYSCALLS`]: every call, its arguments, its result and the errors it may return.

use crate::Errno::{self, *};
use crate::nr;

/// One system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallInfo {
    /// The number in `rax`.
    pub number: usize,
    /// The name (Linux's for the calls Linux has).
    pub name: &'static str,
    /// The arguments, in register order (`rdi, rsi, rdx, r10, r8, r9`).
    pub args: &'static [&'static str],
    /// What `rax` holds on success (`"never returns"` for the calls that do not return).
    pub returns: &'static str,
    /// Every error the call may return, in ascending order of code. Any other error (but
    /// `ENOSYS` for an unknown number) is a kernel bug.
    pub errors: &'static [Errno],
    /// One line on what the call does in Exo-OS (`docs/syscalls.md` says more).
    pub summary: &'static str,
}

impl SyscallInfo {
    /// `true` when this call may return `e`.
    pub fn may_fail_with(&self, e: Errno) -> bool {
        self.errors.contains(&e)
    }
}

/// Every system call, sorted by number. `docs/syscalls.md` has the same table (a test
/// checks it).
pub const SYSCALLS: &[SyscallInfo] = &[
    SyscallInfo {
        number: nr::WRITE,
        name: "write",
        args: &["fd", "buf", "count"],
        returns: "count",
        errors: &[EBADF, EFAULT],
        summary: "writes buf[..count] to the console (fd 1 or 2)",
    },
    SyscallInfo {
        number: nr::MMAP,
        name: "mmap",
        args: &["addr", "len", "prot", "flags", "fd", "offset"],
        returns: "address",
        errors: &[ENOMEM, EEXIST, EINVAL],
        summary: "maps len bytes of committed zeroed memory (private, anonymous)",
    },
    SyscallInfo {
        number: nr::MPROTECT,
        name: "mprotect",
        args: &["addr", "len", "prot"],
        returns: "0",
        errors: &[ENOMEM, EINVAL],
        summary: "changes the access rights of mapped pages",
    },
    SyscallInfo {
        number: nr::MUNMAP,
        name: "munmap",
        args: &["addr", "len"],
        returns: "0",
        errors: &[EINVAL],
        summary: "unmaps pages and returns their memory",
    },
    SyscallInfo {
        number: nr::SCHED_YIELD,
        name: "sched_yield",
        args: &[],
        returns: "0",
        errors: &[],
        summary: "lets the other runnable threads of this CPU run first",
    },
    SyscallInfo {
        number: nr::NANOSLEEP,
        name: "nanosleep",
        args: &["req", "rem"],
        returns: "0",
        errors: &[EFAULT, EINVAL],
        summary: "sleeps for *req (CLOCK_MONOTONIC)",
    },
    SyscallInfo {
        number: nr::GETPID,
        name: "getpid",
        args: &[],
        returns: "pid",
        errors: &[],
        summary: "the caller's process id",
    },
    SyscallInfo {
        number: nr::EXIT,
        name: "exit",
        args: &["code"],
        returns: "never returns",
        errors: &[],
        summary: "ends the calling thread (the process with the last one)",
    },
    SyscallInfo {
        number: nr::KILL,
        name: "kill",
        args: &["pid", "sig"],
        returns: "0",
        errors: &[EPERM, ESRCH, EINVAL],
        summary: "SIGKILL (9) ends a child process (status SIGKILL); sig 0 only checks",
    },
    SyscallInfo {
        number: nr::FUTEX,
        name: "futex",
        args: &["uaddr", "op", "val", "timeout", "uaddr2", "val3"],
        returns: "0 or woken",
        errors: &[EAGAIN, ENOMEM, EFAULT, EINVAL, ENOSYS, ETIMEDOUT],
        summary: "FUTEX_WAIT (with timeout) and FUTEX_WAKE on a 32-bit word, private or shared",
    },
    SyscallInfo {
        number: nr::SCHED_SETAFFINITY,
        name: "sched_setaffinity",
        args: &["pid", "cpusetsize", "mask"],
        returns: "0",
        errors: &[ESRCH, ENOMEM, EFAULT, EINVAL],
        summary: "restricts a thread of the caller's process to the CPUs of a bit mask",
    },
    SyscallInfo {
        number: nr::SET_TID_ADDRESS,
        name: "set_tid_address",
        args: &["tidptr"],
        returns: "tid",
        errors: &[],
        summary: "at the calling thread's end, stores 0 at tidptr and wakes a futex waiter there",
    },
    SyscallInfo {
        number: nr::CLOCK_GETTIME,
        name: "clock_gettime",
        args: &["clockid", "tp"],
        returns: "0",
        errors: &[EFAULT, EINVAL],
        summary: "CLOCK_MONOTONIC or CLOCK_REALTIME (both since boot) into *tp",
    },
    SyscallInfo {
        number: nr::EXIT_GROUP,
        name: "exit_group",
        args: &["code"],
        returns: "never returns",
        errors: &[],
        summary: "ends the process: every thread, on every CPU",
    },
    SyscallInfo {
        number: nr::GETCPU,
        name: "getcpu",
        args: &["cpu", "node", "tcache"],
        returns: "0",
        errors: &[EFAULT],
        summary: "the CPU the caller runs on into *cpu, node 0 into *node",
    },
    SyscallInfo {
        number: nr::SPAWN,
        name: "spawn",
        args: &["path", "path_len", "arg"],
        returns: "pid",
        errors: &[
            ENOENT,
            ENOEXEC,
            EAGAIN,
            ENOMEM,
            EFAULT,
            EINVAL,
            ENAMETOOLONG,
        ],
        summary: "a new child process running an initrd executable, rdi = arg",
    },
    SyscallInfo {
        number: nr::WAIT,
        name: "wait",
        args: &["pid", "timeout"],
        returns: "status",
        errors: &[ECHILD, EFAULT, EINVAL, ETIMEDOUT],
        summary: "blocks until child pid ends (or *timeout passes); its exit code or what killed it",
    },
    SyscallInfo {
        number: nr::THREAD_CREATE,
        name: "thread_create",
        args: &["entry", "stack_top", "arg"],
        returns: "tid",
        errors: &[EAGAIN, ENOMEM, EFAULT, EINVAL],
        summary: "a new thread of the caller's process at entry, rsp = stack_top, rdi = arg",
    },
    SyscallInfo {
        number: nr::THREAD_EXIT,
        name: "thread_exit",
        args: &["value"],
        returns: "never returns",
        errors: &[],
        summary: "ends the calling thread with a value for thread_join",
    },
    SyscallInfo {
        number: nr::THREAD_JOIN,
        name: "thread_join",
        args: &["tid"],
        returns: "value",
        errors: &[ESRCH, EINVAL, EDEADLK],
        summary: "blocks until thread tid of the caller's process ends; its value",
    },
    SyscallInfo {
        number: nr::IPC_CALL,
        name: "ipc_call",
        args: &["handle", "info", "w0", "w1", "w2", "w3"],
        returns: "0",
        errors: &[
            EPERM,
            EBADF,
            EINVAL,
            EPIPE,
            ERANGE,
            EMSGSIZE,
            ECONNABORTED,
            ECONNRESET,
            ETIMEDOUT,
        ],
        summary: "sends a message through an endpoint and waits for the reply (in registers)",
    },
    SyscallInfo {
        number: nr::IPC_REPLY_RECV,
        name: "ipc_reply_recv",
        args: &["handle", "info", "w0", "w1", "w2", "w3"],
        returns: "0",
        errors: &[EPERM, EBADF, EINVAL, EPIPE, ERANGE, EMSGSIZE, ETIMEDOUT],
        summary: "replies to the call being served, then waits for the next message",
    },
    SyscallInfo {
        number: nr::IPC_RECV,
        name: "ipc_recv",
        args: &["handle"],
        returns: "0",
        errors: &[EPERM, EBADF, EPIPE, ETIMEDOUT],
        summary: "waits for a message on an endpoint",
    },
    SyscallInfo {
        number: nr::IPC_SEND,
        name: "ipc_send",
        args: &["handle", "info", "w0", "w1", "w2", "w3"],
        returns: "0",
        errors: &[EPERM, EBADF, EINVAL, EPIPE, ERANGE, EMSGSIZE, ETIMEDOUT],
        summary: "sends a message through an endpoint; returns once it was received",
    },
    SyscallInfo {
        number: nr::IPC_REPLY,
        name: "ipc_reply",
        args: &["_", "info", "w0", "w1", "w2", "w3"],
        returns: "0",
        errors: &[EPERM, ESRCH, EBADF, EINVAL, EPIPE, ERANGE, EMSGSIZE],
        summary: "replies to the call being served",
    },
    SyscallInfo {
        number: nr::ENDPOINT_CREATE,
        name: "endpoint_create",
        args: &["rights", "badge"],
        returns: "handle",
        errors: &[EAGAIN, EINVAL],
        summary: "a new endpoint and a handle to it with rights and badge",
    },
    SyscallInfo {
        number: nr::HANDLE_CLOSE,
        name: "handle_close",
        args: &["handle"],
        returns: "0",
        errors: &[EBADF],
        summary: "closes a handle (the endpoint goes with its last handle, deaf with its last receive handle)",
    },
    SyscallInfo {
        number: nr::SHM_MAP,
        name: "shm_map",
        args: &["handle", "len"],
        returns: "address",
        errors: &[ENOENT, EBADF, EAGAIN, ENOMEM, EEXIST, EINVAL, EPIPE],
        summary: "maps an endpoint's shared region (created with len bytes if len != 0)",
    },
    SyscallInfo {
        number: nr::HANDLE_INFO,
        name: "handle_info",
        args: &["handle"],
        returns: "rights",
        errors: &[EBADF, EPIPE],
        summary: "a handle's rights while its endpoint can be used (EPIPE: destroyed or deaf)",
    },
];

/// The description of call `number`; `None` for an unknown number (which returns
/// `-ENOSYS`).
pub fn info(number: usize) -> Option<&'static SyscallInfo> {
    SYSCALLS
        .binary_search_by_key(&number, |s| s.number)
        .ok()
        .map(|i| &SYSCALLS[i])
}
