//! Exo-OS scheduling data structures.
//!
//! Pure, allocation-free algorithms the kernel's scheduler is built from; they
//! are `no_std` and tested on the host:
//!
//! * [`RunQueue`]: a per-CPU O(1) run queue of [`ThreadRef`] handles with 64
//!   priority levels, a u64 bitmap of non-empty levels and a bounded-share
//!   "hot" queue for threads with short run bursts (see [`classify`]).
//! * [`Ema`]: an integer exponential moving average of run-burst lengths.
//! * [`Mailbox`]: a bounded lock-free multi-producer queue through which other
//!   CPUs post wake-ups to a CPU, with an IPI doorbell ([`Notify`]).
//! * [`RequestMailbox`]: one request at a time (function, argument, result words) for
//!   running work on another CPU, claimed with a compare-and-swap so that of two racing
//!   posters exactly one wins.
//! * [`CpuSet`] (a thread's affinity, sized by the CPUs it names) and [`AtomicMask`] (a
//!   shared bitmap over the CPUs that exist: halted CPUs, CPUs with work to give), so
//!   nothing is sized by a maximum CPU count. `CpuSet` allocates (fallibly) only for sets
//!   of several CPUs.
//!
//! The crate contains no `unsafe` code at all (`forbid(unsafe_code)`): the
//! mailbox stores its payloads in atomics, so it does not need `UnsafeCell`.
//!
//! # Model checking
//!
//! The mailboxes are checked with [loom](https://docs.rs/loom):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p exo-sched --release --lib mailbox
//! ```
//!
//! (`cfg(loom)` is declared to rustc by `build.rs`; under it the mailbox uses
//! loom's atomics through the private `sync` shim.)

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod cpumask;
mod ema;
pub mod mailbox;
pub mod request_mailbox;
pub mod runqueue;
mod sync;
mod thread;

pub use cpumask::{AtomicMask, CpuSet};
pub use ema::{Ema, HOT_BURST_SHIFT, Queue, classify, classify_by, hot_limit};
pub use mailbox::{Mailbox, MailboxFull, Message, Notify};
pub use request_mailbox::{Busy, Lost, RESULTS, Request, RequestMailbox};
pub use runqueue::{DEFAULT_HOT_BUDGET, EnqueueError, NotQueued, RunQueue};
pub use thread::{InvalidPriority, Priority, ThreadRef};
