//! The system-call ABI of Exo-OS, shared by the kernel and the user runtime (`exo-rt`).
//!
//! Everything a user program and the kernel must agree on lives here, as plain constants
//! and types: the call numbers ([`nr`]), the error codes ([`Errno`]), the flags of `mmap`,
//! `mprotect` and `futex`, the clock ids, [`Timespec`], the status `wait` returns and the
//! `PROC,...` line the kernel prints when a process ends ([`proc`]), and one table,
//! [`SYSCALLS`], that lists every call with its arguments, result and errors.
//! `docs/syscalls.md` is the prose version of the same table; a test keeps the two equal.
//!
//! The crate is `no_std`, has no dependencies and no `unsafe`.
//!
//! # The calling convention
//!
//! The `syscall` instruction, as on Linux x86-64: the number in `rax`, the arguments in
//! `rdi, rsi, rdx, r10, r8, r9`, the result in `rax`. A result in `-4095..=-1` is a negated
//! [`Errno`] (see [`Errno::from_ret`]); every other result is a success. The kernel
//! clobbers `rcx` (the return address) and `r11` (the saved `rflags`) and preserves every
//! other register. An unknown number returns `-ENOSYS`.
//!
//! Calls that Linux also has keep Linux's x86-64 number and a subset of its meaning; the
//! calls of Exo-OS alone are numbered from [`nr::EXO_BASE`] (512) up.
//!
//! # Program entry
//!
//! A process starts at `e_entry` of its ELF file (a thread made by `thread_create` at its
//! `entry`) with `rdi` = the `arg` given to `spawn` (`thread_create`; for process 1 the
//! kernel command line's `exo.init_arg`, 0 unless set), `rsp` 16-byte aligned at the top
//! of its stack (nothing is pushed: no `argc`, `argv` or auxiliary vector), every other
//! general register 0, `rflags` = `IF` only (`DF` clear), the x87/SSE state as after
//! `FNINIT` with `MXCSR` = `0x1f80`, and the FS and GS bases 0. There is no return
//! address: the entry code must end with `exit_group` (or `thread_exit`).
//!
//! ```
//! use exo_abi::{Errno, SYSCALLS, nr};
//!
//! assert_eq!(nr::GETPID, 39);
//! assert_eq!(Errno::from_ret(-14), Err(Errno::EFAULT));
//! assert_eq!(Errno::from_ret(7), Ok(7));
//! let write = exo_abi::info(nr::WRITE).unwrap();
//! assert_eq!(write.args, ["fd", "buf", "count"]);
//! assert!(write.errors.contains(&Errno::EBADF));
//! assert!(SYSCALLS.windows(2).all(|w| w[0].number < w[1].number));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod errno;
pub mod ipc;
pub mod nr;
pub mod proc;
mod table;

pub use errno::Errno;
pub use proc::{ExitStatus, KillCause, ProcEnd, ProcLine};
pub use table::{SYSCALLS, SyscallInfo, info};

/// Longest path `spawn` accepts, in bytes (longer: `-ENAMETOOLONG`).
pub const PATH_MAX: usize = 256;

/// The file descriptor of the console for normal output.
pub const STDOUT: usize = 1;
/// The file descriptor of the console for errors (the same console as [`STDOUT`]).
pub const STDERR: usize = 2;

/// `mmap`/`mprotect`: no access.
pub const PROT_NONE: u32 = 0;
/// `mmap`/`mprotect`: readable.
pub const PROT_READ: u32 = 1;
/// `mmap`/`mprotect`: writable (never together with [`PROT_EXEC`]: W^X).
pub const PROT_WRITE: u32 = 2;
/// `mmap`/`mprotect`: executable (never together with [`PROT_WRITE`]: W^X).
pub const PROT_EXEC: u32 = 4;

/// `mmap`: a private mapping (required).
pub const MAP_PRIVATE: u32 = 0x02;
/// `mmap`: at exactly `addr`, which must be page-aligned. Unlike Linux, an existing
/// mapping in the range is not replaced: the call fails with `-EEXIST` (Linux's
/// `MAP_FIXED_NOREPLACE` behaviour).
pub const MAP_FIXED: u32 = 0x10;
/// `mmap`: zero-filled memory backed by no file (required; `fd` must be -1, `offset` 0).
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `mmap` (Exo-OS's own flag, a bit Linux leaves unused): demand-zero pages. Committed in
/// full at the call, as every map is (no overcommit: `-ENOMEM` then, never at a touch),
/// but no frame is given until a page's first access, which faults it in zeroed; the
/// pages never touched cost no frame and none is zeroed. Linux's own `mmap` behaves so
/// by default; without this flag Exo-OS maps each page with its frame at once (Linux's
/// `MAP_POPULATE`).
pub const MAP_LAZY: u32 = 0x0100_0000;

/// `futex` operation: sleep while `*uaddr == val`, for at most `*timeout` (relative,
/// `CLOCK_MONOTONIC`; a null `timeout` waits forever).
pub const FUTEX_WAIT: u32 = 0;
/// `futex` operation: wake at most `val` threads sleeping on `uaddr`; returns how many.
pub const FUTEX_WAKE: u32 = 1;
/// `futex` flag: the word is private to the process (keyed by address space and address).
/// Without it the word is keyed by its physical address: processes that map one shared
/// region (`shm_map`) wait and wake on it wherever each mapped it.
pub const FUTEX_PRIVATE_FLAG: u32 = 128;

/// `clock_gettime`: wall-clock time. Exo-OS reads no real-time clock: its epoch is boot,
/// like [`CLOCK_MONOTONIC`].
pub const CLOCK_REALTIME: u32 = 0;
/// `clock_gettime`: time since boot, never going backwards.
pub const CLOCK_MONOTONIC: u32 = 1;

/// Nanoseconds in a second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `struct timespec` of Linux x86-64: a time or a duration, seconds and nanoseconds.
/// Valid when `tv_sec >= 0` and `0 <= tv_nsec < 1_000_000_000`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespec {
    /// Whole seconds.
    pub tv_sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub tv_nsec: i64,
}

impl Timespec {
    /// Zero.
    pub const ZERO: Self = Self {
        tv_sec: 0,
        tv_nsec: 0,
    };

    /// `nanos` nanoseconds.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self {
            tv_sec: (nanos / NANOS_PER_SEC) as i64,
            tv_nsec: (nanos % NANOS_PER_SEC) as i64,
        }
    }

    /// `true` when the fields are in range (what `nanosleep` and `futex` check: otherwise
    /// `-EINVAL`).
    pub const fn is_valid(&self) -> bool {
        self.tv_sec >= 0 && self.tv_nsec >= 0 && self.tv_nsec < NANOS_PER_SEC as i64
    }

    /// The value in nanoseconds; `None` when invalid or above `u64::MAX` nanoseconds.
    pub const fn as_nanos(&self) -> Option<u64> {
        if !self.is_valid() {
            return None;
        }
        match (self.tv_sec as u64).checked_mul(NANOS_PER_SEC) {
            Some(s) => s.checked_add(self.tv_nsec as u64),
            None => None,
        }
    }
}
