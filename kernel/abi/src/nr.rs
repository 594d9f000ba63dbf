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
/// `futex(uaddr, op, val, timeout, uaddr2, val3)`.
pub const FUTEX: usize = 202;
/// `sched_setaffinity(pid, cpusetsize, mask)`.
pub const SCHED_SETAFFINITY: usize = 203;
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
/// `wait(pid)`: blocks until a child process ends; returns its status.
pub const WAIT: usize = 513;
/// `thread_create(entry, stack_top, arg)`: a new thread in the caller's process.
pub const THREAD_CREATE: usize = 514;
/// `thread_exit(value)`: ends the calling thread.
pub const THREAD_EXIT: usize = 515;
/// `thread_join(tid)`: blocks until a thread of the caller's process ends; returns its value.
pub const THREAD_JOIN: usize = 516;
