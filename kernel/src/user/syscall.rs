//! The system-call table: every call, its number (Linux's x86-64 number where Linux has the
//! call), its argument checks and its errors, and the dispatcher the entry stub calls.
//!
//! ABI: `syscall`; number in RAX; arguments in RDI, RSI, RDX, R10, R8, R9; result in RAX,
//! a negative errno on error. RCX and R11 are clobbered (return address, RFLAGS); every
//! other register comes back unchanged.
//!
//! | nr  | name          | arguments           | result          | errors           |
//! |-----|---------------|---------------------|-----------------|------------------|
//! | 1   | `write`       | fd, buf, len        | bytes written   | EBADF (fd not 1 or 2), EFAULT (buf..buf+len not user memory, or unmapped) |
//! | 24  | `sched_yield` | -                   | 0               | -                |
//! | 39  | `getpid`      | -                   | the caller's id | -                |
//! | 60  | `exit`        | code                | does not return | -                |
//! | any other | -       | -                   | -               | ENOSYS           |

use super::task;
use exo_arch::syscall::SyscallFrame;
use exo_arch::usercopy;

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
    /// `clock_gettime(clock, ts)`.
    pub const CLOCK_GETTIME: u64 = 228;
    /// `exit_group(code)`: the whole process, every thread on every CPU.
    pub const EXIT_GROUP: u64 = 231;
    /// `getcpu(cpu, node, _)`.
    pub const GETCPU: u64 = 309;
    /// `spawn(path, len, arg) -> pid`: a program of the initrd as a new process.
    pub const SPAWN: u64 = 512;
    /// `wait(pid) -> status`: blocks until the process ends.
    pub const WAIT: u64 = 513;
    /// `futex(word, op, val, timeout)`: FUTEX_WAIT and FUTEX_WAKE on a private word.
    pub const FUTEX: u64 = 202;
    /// `thread_create(entry, stack_top, arg) -> tid`: a thread of the caller's process.
    pub const THREAD_CREATE: u64 = 514;
    /// `thread_exit(code)`: the calling thread (the process too if it was the last).
    pub const THREAD_EXIT: u64 = 515;
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
}

/// Errors, as Linux numbers them (the call returns the negated value).
#[repr(i64)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
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
        nr::MMAP => mmap(f.rdi, f.rsi, f.rdx, f.r10, f.r8),
        nr::MUNMAP => munmap(f.rdi, f.rsi),
        nr::MPROTECT => mprotect(f.rdi, f.rsi, f.rdx),
        nr::GETCPU => getcpu(f.rdi, f.rsi),
        nr::CLOCK_GETTIME => clock_gettime(f.rdi, f.rsi),
        nr::NANOSLEEP => nanosleep(f.rdi),
        nr::SCHED_SETAFFINITY => setaffinity(f.rdi, f.rsi, f.rdx),
        nr::SPAWN => spawn(f.rdi, f.rsi, f.rdx),
        nr::WAIT => super::process::wait(f.rdi).map(|s| s as i64),
        nr::FUTEX => super::futex::futex(f.rdi, f.rsi, f.rdx, f.r10),
        nr::THREAD_CREATE => super::process::thread_create(f.rdi, f.rsi, f.rdx).map(|t| t as i64),
        nr::THREAD_JOIN => super::process::thread_join(f.rdi).map(|c| c as i64),
        _ => Err(Errno::Enosys),
    };
    f.set_ret(r.unwrap_or_else(Errno::ret));
    // A thread whose process is being killed does not go back.
    super::process::exit_if_dying();
}

/// `write`: fd 1 and 2 are the console. The whole range is checked first; bytes go out in
/// chunks (each one atomic against other CPUs' lines); a fault after some chunks returns
/// the count written. Not inlined: its buffer would make every call pay a large frame.
#[inline(never)]
fn write(fd: u64, buf: u64, len: u64) -> Result<i64, Errno> {
    if fd != 1 && fd != 2 {
        return Err(Errno::Ebadf);
    }
    usercopy::check_range(buf, len).map_err(|_| Errno::Efault)?;
    let len = len.min(WRITE_MAX);
    let mut chunk = [0u8; 256];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        if usercopy::copy_from_user(&mut chunk[..n], buf + done).is_err() {
            return if done == 0 {
                Err(Errno::Efault)
            } else {
                Ok(done as i64)
            };
        }
        crate::console::write_bytes(&chunk[..n]);
        done += n as u64;
    }
    Ok(done as i64)
}

const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;

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

/// `mmap`: anonymous, private, committed now (no overcommit: a map the kernel cannot back
/// is refused, touching a granted page never fails); W+X refused.
fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64) -> Result<i64, Errno> {
    if flags & (MAP_ANONYMOUS | MAP_PRIVATE) != (MAP_ANONYMOUS | MAP_PRIVATE)
        || flags & !(MAP_ANONYMOUS | MAP_PRIVATE | MAP_FIXED) != 0
        || fd as i64 != -1 && fd != 0
        || len == 0
        || prot & !7 != 0
    {
        return Err(Errno::Einval);
    }
    let (w, x) = (prot & PROT_WRITE != 0, prot & PROT_EXEC != 0);
    if w && x {
        return Err(Errno::Einval);
    }
    let fixed = flags & MAP_FIXED != 0;
    super::process::with_current(|a| {
        a.map(fixed.then_some(addr), len, w, x)
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
    if prot & !7 != 0 {
        return Err(Errno::Einval);
    }
    let (w, x) = (prot & PROT_WRITE != 0, prot & PROT_EXEC != 0);
    if w && x {
        return Err(Errno::Einval);
    }
    super::process::with_current(|a| {
        a.protect(addr, len, w, x)
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

fn nanosleep(req: u64) -> Result<i64, Errno> {
    let mut b = [0u8; 16];
    usercopy::copy_from_user(&mut b, req).map_err(|_| Errno::Efault)?;
    let sec = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let nsec = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
    if nsec >= 1_000_000_000 || sec > 1 << 32 {
        return Err(Errno::Einval);
    }
    let us = sec * 1_000_000 + nsec / 1000;
    let deadline = exo_arch::tsc::rdtsc()
        .saturating_add(us.saturating_mul(crate::smp::time::tsc_hz() / 1_000_000));
    while exo_arch::tsc::rdtsc() < deadline {
        if super::process::dying() {
            return Err(Errno::Eintr);
        }
        crate::sched::block_until(deadline, || !super::process::dying());
    }
    Ok(0)
}

/// `sched_setaffinity(0, len, mask)`: the calling thread, bits for CPUs (at most 1024).
fn setaffinity(pid: u64, len: u64, mask: u64) -> Result<i64, Errno> {
    if pid != 0 && pid != exo_percpu::pid() && pid != crate::sched::current_uid() {
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
    super::process::spawn(p, arg, crate::sched::Builder::new().inherit_affinity())
        .map(|pid| pid as i64)
}
