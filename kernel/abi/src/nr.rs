//! System-call numbers (`rax`). Those Linux also has keep Linux's x86-64 number; the calls
//! of Exo-OS alone start at [`EXO_BASE`]. [`crate::SYSCALLS`] describes each one.

/// `write(fd, buf, count)`.
pub const WRITE: usize = 1;
/// `mmap(addr, len, prot, flags, fd, offset)`.
pub const MMAP: usize = 9;
/// `mprotect(addr, len, prot)`.
pub const MPROTECT: usize = 10;
/// `munmap(addr, len)`.
pub const MUNMAP: usize = 11;
/// `sched_yield()`.
pub const SCHED_YIELD: usize = 24;
/// `nanosleep(req, rem)`.
pub const NANOSLEEP: usize = 35;
/// `getpid()`.
pub const GETPID: usize = 39;
/// `exit(code)`: ends the calling thread.
pub const EXIT: usize = 60;
/// `kill(pid, sig)`: `SIGKILL` (9) ends a child process; 0 only checks that it can.
pub const KILL: usize = 62;
/// `futex(uaddr, op, val, timeout, uaddr2, val3)`.
pub const FUTEX: usize = 202;
/// `sched_setaffinity(pid, cpusetsize, mask)`.
pub const SCHED_SETAFFINITY: usize = 203;
/// `set_tid_address(tidptr)`: at the calling thread's end, 0 is stored at `tidptr` and a
/// waiter of that futex word woken.
pub const SET_TID_ADDRESS: usize = 218;
/// `clock_gettime(clockid, tp)`.
pub const CLOCK_GETTIME: usize = 228;
/// `exit_group(code)`: ends the process.
pub const EXIT_GROUP: usize = 231;
/// `getcpu(cpu, node, tcache)`.
pub const GETCPU: usize = 309;

/// First number of the calls Linux does not have.
pub const EXO_BASE: usize = 512;
/// `spawn(path, path_len, arg)`: a new process from an initrd entry.
pub const SPAWN: usize = 512;
/// `wait(pid, timeout)`: blocks until a child process ends, or until the relative
/// `timeout` (a `timespec`; NULL: none) passes; returns its status.
pub const WAIT: usize = 513;
/// `thread_create(entry, stack_top, arg)`: a new thread in the caller's process.
pub const THREAD_CREATE: usize = 514;
/// `thread_exit(value)`: ends the calling thread.
pub const THREAD_EXIT: usize = 515;
/// `thread_join(tid)`: blocks until a thread of the caller's process ends; returns its value.
pub const THREAD_JOIN: usize = 516;
/// `ipc_call(handle, info, w0..w3; w4..w7 in r12..r15, timeout in rbx)`: sends a message
/// through an endpoint handle and waits for the reply (see [`crate::ipc`]).
pub const IPC_CALL: usize = 520;
/// `ipc_reply_recv(handle, info, words..)`: replies to the call being served, then waits
/// for the next message on the endpoint. `EBADF` (no such handle, or a handle to pass that
/// the caller does not hold: the handle is looked up once, before the reply), `EPERM`,
/// `EINVAL`, `EMSGSIZE` and `ERANGE` are the reply's own checks: nothing was sent, the call
/// is still being served (`ipc_reply` can answer it). `ETIMEDOUT` is the receive's: the
/// reply was delivered, or dropped because its caller had stopped waiting; `ipc_reply` then
/// says `ESRCH`. `EPIPE` is the receive's as well (`handle`'s endpoint destroyed), with one
/// exception: a zero-copy reply (`ipc::INFO_ZC`) answering a call whose endpoint was
/// destroyed meanwhile is refused before it is sent (its descriptor is checked against that
/// endpoint's region). A server that gets `EPIPE` for a zero-copy reply calls `ipc_reply`
/// with a plain message: `0`, the call still waited and has this answer; `ESRCH`, nothing
/// was left to answer (the reply had gone, or no caller waited). No other error comes back
/// (a thread whose process is killed meanwhile never returns).
pub const IPC_REPLY_RECV: usize = 521;
/// `ipc_recv(handle)`: waits for a message on the endpoint.
pub const IPC_RECV: usize = 522;
/// `ipc_send(handle, info, words..)`: sends a message and returns once it was received.
pub const IPC_SEND: usize = 523;
/// `ipc_reply(info, words..)`: replies to the call being served.
pub const IPC_REPLY: usize = 524;
/// `endpoint_create(rights, badge)`: a new endpoint; returns a handle to it.
pub const ENDPOINT_CREATE: usize = 525;
/// `handle_close(handle)`: empties a handle-table entry.
pub const HANDLE_CLOSE: usize = 526;
/// `shm_map(handle, len)`: maps the shared region of an endpoint (created with `len`
/// bytes when `len != 0`); returns its address (zero-copy IPC, see [`crate::ipc`]).
pub const SHM_MAP: usize = 527;
/// `handle_info(handle)`: the handle's rights (1 send, 2 receive) while its endpoint can be
/// used; `EPIPE` once it is destroyed or no handle can receive on it any more (its server
/// ended), `EBADF` for no such handle.
pub const HANDLE_INFO: usize = 528;
/// First IPC number (`IPC_CALL`..=`HANDLE_CLOSE` take the IPC entry: callee-saved
/// registers carry payload).
pub const IPC_FIRST: usize = 520;
/// Last IPC number.
pub const IPC_LAST: usize = 526;
