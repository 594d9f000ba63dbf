//! Case 10 of `/faults`: system calls with bad pointers, flags and ids, each with the one
//! error `docs/syscalls.md` promises. Those marked `linux` mean the same on Linux, and
//! `exo-rt`'s host tests run them against the host's Linux kernel (`#[path]` include) to
//! keep the subset honest.
#![allow(dead_code)]

use exo_rt::Errno;
use exo_rt::abi::{
    self, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE, nr,
};
use exo_rt::raw::*;

/// A kernel-half address (where the kernel image is linked).
pub const KERNEL_ADDR: usize = 0xffff_ffff_8000_0000;
/// The first non-canonical address above the user half.
pub const NON_CANONICAL: usize = 0x0000_8000_0000_0000;
/// The lower half's last page, never mapped (as on Linux): code running off its end would
/// be interrupted with a non-canonical return address.
pub const LAST_LOWER_PAGE: usize = 0x0000_7fff_ffff_f000;
/// An address below any program (the loader never maps pages 0 and 1).
pub const UNMAPPED: usize = 0x1000;

/// One refused call.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The call, in C-like words.
    pub what: &'static str,
    /// Makes it; returns `rax`.
    pub call: fn() -> isize,
    /// The error it must return.
    pub want: Errno,
    /// Linux returns the same error.
    pub linux: bool,
}

const ANON: usize = (MAP_PRIVATE | MAP_ANONYMOUS) as usize;

/// A `timespec` with `tv_nsec` out of range.
static BAD_TIMESPEC: [i64; 2] = [0, 1_000_000_000];
/// `{0, 0}`.
static ZERO_TIMESPEC: [i64; 2] = [0, 0];

/// `|| rawN(args)` as a `fn() -> isize`.
macro_rules! call {
    ($f:ident($($a:expr),* $(,)?)) => {
        // SAFETY: the kernel must refuse the call before touching any memory, and no
        // argument names memory of this program that it uses.
        || unsafe { $f($($a),*) }
    };
}

/// Every check.
pub const CHECKS: &[Check] = &[
    Check {
        what: "write(1, NULL, 8)",
        call: call!(syscall3(nr::WRITE, 1, 0, 8)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "write(1, 0x1000 (unmapped), 8)",
        call: call!(syscall3(nr::WRITE, 1, UNMAPPED, 8)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "write(1, kernel address, 8)",
        call: call!(syscall3(nr::WRITE, 1, KERNEL_ADDR, 8)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "write(1, non-canonical, 8)",
        call: call!(syscall3(nr::WRITE, 1, NON_CANONICAL, 8)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "write(1, end of the user half - 4, 8)",
        call: call!(syscall3(nr::WRITE, 1, NON_CANONICAL - 4, 8)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "write(1, usize::MAX - 3, 8) (wraps)",
        call: call!(syscall3(nr::WRITE, 1, usize::MAX - 3, 8)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "write(1, kernel address, 0)",
        call: call!(syscall3(nr::WRITE, 1, KERNEL_ADDR, 0)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "write(999, \"x\", 1)",
        call: call!(syscall3(nr::WRITE, 999, b"x".as_ptr() as usize, 1)),
        want: Errno::EBADF,
        linux: true,
    },
    Check {
        what: "clock_gettime(CLOCK_MONOTONIC, kernel address)",
        call: call!(syscall2(
            nr::CLOCK_GETTIME,
            abi::CLOCK_MONOTONIC as usize,
            KERNEL_ADDR
        )),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "clock_gettime(99, ..)",
        call: call!(syscall2(nr::CLOCK_GETTIME, 99, UNMAPPED)),
        want: Errno::EINVAL,
        linux: true,
    },
    Check {
        what: "getcpu(kernel address, NULL, NULL)",
        call: call!(syscall3(nr::GETCPU, KERNEL_ADDR, 0, 0)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "nanosleep(non-canonical, NULL)",
        call: call!(syscall2(nr::NANOSLEEP, NON_CANONICAL, 0)),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "futex(kernel address, FUTEX_WAIT, 0, NULL)",
        call: call!(syscall4(
            nr::FUTEX,
            KERNEL_ADDR,
            abi::FUTEX_WAIT as usize,
            0,
            0
        )),
        want: Errno::EFAULT,
        linux: true,
    },
    Check {
        what: "mmap(NULL, 0, PROT_READ, PRIVATE|ANONYMOUS)",
        call: call!(syscall6(
            nr::MMAP,
            0,
            0,
            PROT_READ as usize,
            ANON,
            usize::MAX,
            0
        )),
        want: Errno::EINVAL,
        linux: true,
    },
    // A length that wraps when rounded up to a page (Linux's `PAGE_ALIGN(len)` is 0):
    // `ENOMEM`, as Linux (until 2026-12-06 Exo-OS said `EINVAL`).
    Check {
        what: "mmap(NULL, SIZE_MAX, PROT_READ, PRIVATE|ANONYMOUS)",
        call: call!(syscall6(
            nr::MMAP,
            0,
            usize::MAX,
            PROT_READ as usize,
            ANON,
            usize::MAX,
            0
        )),
        want: Errno::ENOMEM,
        linux: true,
    },
    Check {
        what: "mmap(kernel address, 4096, PROT_READ, PRIVATE|ANONYMOUS|FIXED)",
        call: call!(syscall6(
            nr::MMAP,
            KERNEL_ADDR,
            4096,
            PROT_READ as usize,
            ANON | MAP_FIXED as usize,
            usize::MAX,
            0
        )),
        want: Errno::ENOMEM,
        linux: true,
    },
    Check {
        what: "mmap(last page of the lower half, 4096, PROT_READ|PROT_EXEC, PRIVATE|ANONYMOUS|FIXED)",
        call: call!(syscall6(
            nr::MMAP,
            LAST_LOWER_PAGE,
            4096,
            (PROT_READ | PROT_EXEC) as usize,
            ANON | MAP_FIXED as usize,
            usize::MAX,
            0
        )),
        want: Errno::ENOMEM,
        linux: true,
    },
    Check {
        what: "mmap(NULL, 4096, PROT_WRITE|PROT_EXEC, PRIVATE|ANONYMOUS) (W^X)",
        call: call!(syscall6(
            nr::MMAP,
            0,
            4096,
            (PROT_WRITE | PROT_EXEC) as usize,
            ANON,
            usize::MAX,
            0
        )),
        want: Errno::EINVAL,
        linux: false,
    },
    // Linux ignores `fd` and `offset` of an anonymous map; the ABI asks -1 and 0 (until
    // 2026-12-05 the offset was not read and fd 0 was taken).
    Check {
        what: "mmap(NULL, 4096, PROT_READ, PRIVATE|ANONYMOUS, fd 0)",
        call: call!(syscall6(nr::MMAP, 0, 4096, PROT_READ as usize, ANON, 0, 0)),
        want: Errno::EINVAL,
        linux: false,
    },
    Check {
        what: "mmap(NULL, 4096, PROT_READ, PRIVATE|ANONYMOUS, fd -1, offset 4096)",
        call: call!(syscall6(
            nr::MMAP,
            0,
            4096,
            PROT_READ as usize,
            ANON,
            usize::MAX,
            4096
        )),
        want: Errno::EINVAL,
        linux: false,
    },
    Check {
        what: "mprotect(0x1000 (unmapped), 4096, PROT_READ)",
        call: call!(syscall3(nr::MPROTECT, UNMAPPED, 4096, PROT_READ as usize)),
        want: Errno::ENOMEM,
        linux: true,
    },
    Check {
        what: "mprotect(0x1000, SIZE_MAX, PROT_READ) (the length wraps)",
        call: call!(syscall3(
            nr::MPROTECT,
            UNMAPPED,
            usize::MAX,
            PROT_READ as usize
        )),
        want: Errno::ENOMEM,
        linux: true,
    },
    Check {
        what: "munmap(1, 4096) (unaligned)",
        call: call!(syscall2(nr::MUNMAP, 1, 4096)),
        want: Errno::EINVAL,
        linux: true,
    },
    Check {
        what: "munmap(0x1000, SIZE_MAX) (the length wraps)",
        call: call!(syscall2(nr::MUNMAP, UNMAPPED, usize::MAX)),
        want: Errno::EINVAL,
        linux: true,
    },
    Check {
        what: "spawn(kernel address, 5, 0)",
        call: call!(syscall3(nr::SPAWN, KERNEL_ADDR, 5, 0)),
        want: Errno::EFAULT,
        linux: false,
    },
    Check {
        what: "spawn(\"/no-such-program\", 16, 0)",
        call: call!(syscall3(
            nr::SPAWN,
            "/no-such-program".as_ptr() as usize,
            16,
            0
        )),
        want: Errno::ENOENT,
        linux: false,
    },
    Check {
        what: "wait(1, NULL) (not a child)",
        call: call!(syscall2(nr::WAIT, 1, 0)),
        want: Errno::ECHILD,
        linux: false,
    },
    Check {
        what: "wait(1, 0x1000 (unmapped))",
        call: call!(syscall2(nr::WAIT, 1, UNMAPPED)),
        want: Errno::EFAULT,
        linux: false,
    },
    Check {
        what: "wait(1, {0, 10^9}) (tv_nsec too large)",
        call: call!(syscall2(nr::WAIT, 1, BAD_TIMESPEC.as_ptr() as usize)),
        want: Errno::EINVAL,
        linux: false,
    },
    Check {
        what: "wait(1, {0, 0}) (not a child)",
        call: call!(syscall2(nr::WAIT, 1, ZERO_TIMESPEC.as_ptr() as usize)),
        want: Errno::ECHILD,
        linux: false,
    },
    // `kill` with signal 0 (a check) or 65 (no such signal) only: the host test runs this
    // whole case on Linux (`user/rt/tests/initrd.rs`), where a root caller's kill(1, 9)
    // reaches init, kill(0, ..) the process group and kill(-1, ..) every process. Signal 0
    // does nothing there. Exo-OS's SIGKILL path: `/threads` case 8 and a kernel test.
    Check {
        what: "kill(1, 0) (init: not a child)",
        call: call!(syscall2(nr::KILL, 1, 0)),
        want: Errno::EPERM,
        linux: false,
    },
    Check {
        what: "kill(getpid(), 0) (itself: not a child)",
        call: || {
            let me = exo_rt::getpid();
            // SAFETY: signal 0 only checks (here and on Linux).
            unsafe { syscall2(nr::KILL, me, 0) }
        },
        want: Errno::EPERM,
        linux: false,
    },
    Check {
        what: "kill(getpid(), 65) (no such signal)",
        call: || {
            let me = exo_rt::getpid();
            // SAFETY: refused (no signal 65, here and on Linux).
            unsafe { syscall2(nr::KILL, me, 65) }
        },
        want: Errno::EINVAL,
        linux: true,
    },
    Check {
        what: "kill(0, 0) (no process groups)",
        call: call!(syscall2(nr::KILL, 0, 0)),
        want: Errno::EINVAL,
        linux: false,
    },
    Check {
        what: "kill(-1, 0) (no process groups)",
        call: call!(syscall2(nr::KILL, usize::MAX, 0)),
        want: Errno::EINVAL,
        linux: false,
    },
    Check {
        what: "kill(1 << 40, 0) (no such process)",
        call: call!(syscall2(nr::KILL, 1 << 40, 0)),
        want: Errno::ESRCH,
        linux: false,
    },
    Check {
        what: "thread_join(usize::MAX) (no such thread)",
        call: call!(syscall1(nr::THREAD_JOIN, usize::MAX)),
        want: Errno::ESRCH,
        linux: false,
    },
    Check {
        what: "syscall 1000",
        call: call!(syscall0(1000)),
        want: Errno::ENOSYS,
        linux: true,
    },
    Check {
        what: "exo_rt::thread::spawn_with_stack(f, 0, 0) (no stack but its guard page)",
        call: || {
            fn idle(_: u64) -> i32 {
                0
            }
            match exo_rt::thread::spawn_with_stack(idle, 0, 0) {
                Err(e) => -(e as isize),
                Ok(t) => {
                    let _ = t.join();
                    0
                }
            }
        },
        want: Errno::EINVAL,
        linux: false,
    },
];

/// A call that must return 0: what it is in C-like words, and the call.
pub type ZeroCall = (&'static str, fn() -> isize);

/// Calls at the edge of the rules that must succeed with 0 (on Linux too): a length of 0
/// touches nothing, whatever user-half pointer comes with it.
pub const ZERO: &[ZeroCall] = &[
    ("write(1, NULL, 0)", call!(syscall3(nr::WRITE, 1, 0, 0))),
    (
        "write(2, 0x1000 (unmapped), 0)",
        call!(syscall3(nr::WRITE, 2, UNMAPPED, 0)),
    ),
];
