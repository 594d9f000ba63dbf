//! # smp-bench: the Exo-OS benchmark instrument
//!
//! A `no_std`, allocation-free core shared by the kernel (`x86_64-unknown-none`) and by host
//! runners, plus (feature `report`) the host tools that turn a serial log into a status table
//! and SVG charts.
//!
//! The crate never reads a time-stamp counter itself: every measuring function takes a
//! [`Clock`] (any `FnMut() -> u64` is one), so the kernel passes a serialised `rdtsc`, a host
//! runner passes its own, and tests pass a fake clock whose results are exact.
//!
//! ## Measuring
//! * [`Samples`]: fixed-capacity sample buffer (an array, no allocation).
//! * [`Stats`]: `n, mean, min, max, p50, p95, p99` in ticks, the timing-pair overhead subtracted
//!   with saturation; percentiles by selection with the nearest-rank rule
//!   (see [`nearest_rank_index`]).
//! * [`measure_overhead`], [`bench()`], [`bench_batched`], [`bench_with`].
//! * [`TscOffset`] from timed exchanges ([`SyncSample`], [`estimate_offset`]: the kernel's
//!   boot measures every CPU's this way) and [`one_way_latency`] for one-way latencies from
//!   synchronised TSCs.
//!
//! No dependency on `exo-arch` (nothing here executes a CPU instruction of its own): user
//! programs (`exo-rt`'s `bench` feature) and host tools link it as it is.
//!
//! ## Output lines (one per line on the serial console, integers in ticks)
//! ```text
//! SUITE,<suite>,<tsc_start>,<tsc_hz>,<mode>,<ncpus>,<git_rev>,<cpu_model>
//! BENCH,<name>,<n>,<mean>,<min>,<max>,<p50>,<p95>,<p99>
//! FAIR,<bench_name>,<ncpus>,<min_acq>,<max_acq>
//! END,<suite>,<n_results>
//! ```
//! Written by the [`mod@line`] types (`Display`) and [`write_bench`] / [`write_fair`]; read back by
//! [`parse_line`]. `mode` is a [`Mode`]: `tcg`, `icount`, `kvm` or `native`.
//!
//! ## Naming conventions (see [`names`])
//! * single-CPU rows: `tsc.pair`, `percpu.read`, `ipi.rtt`, `lock.spin.uncontended`, and the
//!   seed's rows (`ipc.rtt.64`, `ctx.switch`, `alloc.64`, `mutex.fast`, ...);
//! * core-to-core matrix: `c2c.rtt.<a>.<b>` (round trip a→b→a, ticks on CPU a) and
//!   `c2c.oneway.<a>.<b>` (a→b one-way latency from synchronised TSCs);
//! * contention: `contend.<lock>.<ncpus>` (ticks per hand-off), lock ∈ {`tas`, `ticket`, `mcs`,
//!   `mutex`, and `spin` for the native suite's host spin lock}, each followed by a
//!   `FAIR,contend.<lock>.<ncpus>,...` line;
//! * rows whose seed unit is not cycles carry that unit: `boot.ms` in milliseconds, `net.pps` in
//!   packets per second.
//!
//! ## Example (a fake clock standing in for a serialised `rdtsc`)
//! ```
//! use smp_bench::{EndLine, Mode, Samples, SuiteLine, bench, write_bench};
//!
//! let mut t = 0u64;
//! let mut clock = || {
//!     t += 10; // every read costs 10 ticks, the body nothing
//!     t
//! };
//! let mut samples = Samples::<256>::new();
//! let stats = bench(&mut clock, &mut samples, 16, 256, || core::hint::black_box(1 + 1)).unwrap();
//!
//! let mut serial = String::new();
//! let suite = SuiteLine {
//!     suite: "smp",
//!     tsc_start: 0,
//!     tsc_hz: 0,
//!     mode: Mode::Tcg,
//!     ncpus: 1,
//!     git_rev: "d4994a9",
//!     cpu_model: "QEMU Virtual CPU",
//! };
//! use core::fmt::Write;
//! writeln!(serial, "{suite}").unwrap();
//! write_bench(&mut serial, "percpu.read", &stats).unwrap();
//! writeln!(serial, "{}", EndLine { suite: "smp", n_results: 1 }).unwrap();
//! assert_eq!(
//!     serial,
//!     "SUITE,smp,0,0,tcg,1,d4994a9,QEMU Virtual CPU\n\
//!      BENCH,percpu.read,256,0,0,0,0,0,0\n\
//!      END,smp,1\n"
//! );
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod clock;
pub mod line;
mod measure;
mod mode;
pub mod names;
mod pingpong;
mod samples;
mod stats;
mod tsc;

#[cfg(feature = "report")]
pub mod report;

pub use clock::Clock;
pub use line::{
    BenchLine, EndLine, FairLine, Line, SuiteLine, parse_line, write_bench, write_fair,
};
pub use measure::{
    OVERHEAD_PAIRS, bench, bench_batched, bench_with, handoff, measure_overhead, per_call,
    per_call_between, time_once,
};
pub use mode::{Mode, ParseModeError};
pub use pingpong::{PingLine, answer, ping};
pub use samples::Samples;
pub use stats::{Stats, nearest_rank_index, stats_of};
pub use tsc::{OneWay, SyncSample, TscOffset, estimate_offset, one_way_latency};
