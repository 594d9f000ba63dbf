//! The runtime of Exo-OS user programs: what a `no_std` Rust program needs to run as a
//! process of Exo-OS, and nothing else.
//!
//! - [`entry!`]: declares the program's `fn(arg: u64) -> i32`; the runtime's `_start`
//!   calls it with the `arg` of `spawn` and passes its result to `exit_group`.
//! - [`raw`]: `syscall0` .. `syscall6`, the bare `syscall` instruction.
//! - typed wrappers for every call of [`exo_abi::SYSCALLS`] ([`write`], [`getpid`],
//!   [`mmap`], [`futex_wait`], [`spawn`], [`wait`], [`thread_create`], ...), returning
//!   `Result<_, Errno>`;
//! - [`print!`], [`println!`], [`eprint!`], [`eprintln!`]: formatted into a 512-byte
//!   buffer on the stack, then one `write` (a longer line takes several);
//! - a panic handler that prints `panic: <message> at <file>:<line>` to fd 2 and ends the
//!   process with `exit_group(101)`;
//! - [`thread::spawn`] (a thread on a fresh `mmap`ed stack) and [`time`] (`rdtsc`);
//! - [`names`]: the name server's protocol and its client side (`register`, `lookup`);
//! - [`fusion`]: fusion channels between processes on different CPUs (rings in a shared
//!   region, parking on shared futexes);
//! - with the `bench` feature, `bench`: `SUITE`/`BENCH`/`END` lines in `smp-bench`'s
//!   format, with its statistics.
//!
//! # Entry: what the runtime expects from the kernel
//!
//! At `_start` (the ELF entry): `rdi` = the `arg` of `spawn` (process 1: `exo.init_arg`, 0
//! unless set), `rsp` 16-byte aligned (System V process entry), no return address. `_start` clears `rbp` (the end of the frame-pointer
//! chain), re-aligns `rsp` defensively and calls the program; nothing else is read (no
//! `argc`/`argv`/auxiliary vector, no TLS: programs must not use `#[thread_local]`).
//! `docs/syscalls.md` has the whole contract.
//!
//! # Building a program
//!
//! ```text
//! #![cfg_attr(target_os = "none", no_std, no_main)]
//! use exo_rt::println;
//!
//! exo_rt::entry!(run);
//!
//! fn run(arg: u64) -> i32 {
//!     println!("hello from pid {} (arg {arg})", exo_rt::getpid());
//!     0
//! }
//! ```
//!
//! with a `build.rs` that links it with `user/user.ld` for `target_os = "none"` (see
//! `user/hello`). On the host the same source builds to a stub `main` that only says what
//! it is, so workspace-wide `cargo clippy`/`cargo test` keep working; the wrappers
//! themselves are Linux-compatible and are tested against the host's Linux kernel.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub use exo_abi as abi;
pub use exo_abi::{Errno, ExitStatus, KillCause, Timespec};

#[cfg(feature = "bench")]
pub mod bench;
mod calls;
pub mod fusion;
pub mod io;
pub mod names;
pub mod raw;
mod start;
pub mod suite;
pub mod thread;
pub mod time;

pub use calls::*;

#[doc(hidden)]
pub use start::__host_stub;
