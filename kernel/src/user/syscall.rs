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

/// Call numbers.
pub mod nr {
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
    /// Bad file descriptor.
    Ebadf = 9,
    /// Bad address: a pointer outside user memory, or to unmapped memory.
    Efault = 14,
    /// Unknown call number.
    Enosys = 38,
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
        nr::EXIT => task::exit(f.rdi),
        _ => Err(Errno::Enosys),
    };
    f.set_ret(r.unwrap_or_else(Errno::ret));
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
