//! Benchmarks from user mode, printed as the kernel prints its own: a `SUITE` line, one
//! `BENCH` line per row and an `END` line, so `scripts/extract-benches.sh` and `exo-report`
//! read them unchanged.
//!
//! The statistics, the timing loop and the line types are `smp-bench`'s, the same code the
//! kernel runs. The probes below mirror `exo-arch`'s instead of calling them: that crate's
//! global asm (the PVH boot code, kept by its ELF note, linked by LTO) cannot link into a
//! ring-3 executable.
//!
//! The clock is [`rdtsc_precise`]. The mode (`tcg`, `icount`, `kvm`, `kvm-trapped`) is
//! detected as the kernel's boot detects it (CPUID and an instruction-counting loop, all
//! legal in ring 3).

use core::fmt::{self, Write};

pub use smp_bench::{
    BenchLine, Clock, EndLine, Mode, OVERHEAD_PAIRS, ParseModeError, Samples, Stats, SuiteLine,
    bench, bench_batched, bench_with, measure_overhead, nearest_rank_index, per_call, stats_of,
};

use crate::io::{FdWriter, LINE_MAX};
use crate::time::rdtsc_precise;

/// A serialised `rdtsc` pair above this many ticks means `rdtsc` traps (the kernel's
/// threshold: hardware is at ~20-80).
const TRAPPED_RDTSC_TICKS: u64 = 2000;

/// The mode this machine looks like, decided as the kernel's boot decides it.
pub fn detect_mode() -> Mode {
    if instructions_counted(counts_instructions) {
        return Mode::Icount;
    }
    if !hypervisor_is_kvm() {
        return Mode::Tcg;
    }
    let pair = (0..16)
        .map(|_| {
            let a = rdtsc_precise();
            rdtsc_precise().wrapping_sub(a)
        })
        .min()
        .unwrap_or(0);
    if pair > TRAPPED_RDTSC_TICKS {
        Mode::KvmTrapped
    } else {
        Mode::Kvm
    }
}

/// The icount decision from `probe` (one exact-count probe a call): all three exact, as the
/// kernel's boot asks. Until 2026-12-05 one of three was enough ("an interrupt spoils a run,
/// never the other way"), but under TCG the host TSC's delta can hit the exact count by
/// chance, and `any` tripled that chance of labelling a TCG run `icount`; found by review.
fn instructions_counted(mut probe: impl FnMut() -> bool) -> bool {
    (0..3).all(|_| probe())
}

/// `true` when the TSC counts instructions (QEMU `-icount shift=0`): 2000 more iterations
/// of a 4-instruction loop take exactly 8000 more ticks (`exo_arch::tsc::counts_instructions`).
pub fn counts_instructions() -> bool {
    let short = timed_loop(1000);
    let long = timed_loop(3000);
    long.wrapping_sub(short) == 4 * 2000
}

/// TSC ticks across `n` iterations of `nop; nop; dec; jnz` (plus a fixed prologue).
#[inline(never)]
fn timed_loop(n: u64) -> u64 {
    let delta: u64;
    // SAFETY: rdtsc and register arithmetic only; no memory is touched.
    unsafe {
        core::arch::asm!(
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov r8, rax",
            "2:",
            "nop",
            "nop",
            "dec rcx",
            "jnz 2b",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "sub rax, r8",
            inout("rcx") n.max(1) => _,
            out("rax") delta,
            out("rdx") _,
            out("r8") _,
            options(nomem, nostack),
        );
    }
    delta
}

/// Is there a hypervisor, and is it KVM? (`exo_arch::cpu::hypervisor_is_kvm`.)
pub fn hypervisor_is_kvm() -> bool {
    raw_cpuid::CpuId::new()
        .get_hypervisor_info()
        .is_some_and(|h| matches!(h.identify(), raw_cpuid::Hypervisor::KVM))
}

/// The TSC frequency CPUID reports (leaf 0x15, 0x16, then the hypervisor's 0x4000_0010),
/// 0 when none does (`exo_arch::tsc::freq_from_cpuid`).
pub fn tsc_hz_from_cpuid() -> u64 {
    let id = raw_cpuid::CpuId::new();
    if let Some(hz) = id.get_tsc_info().and_then(|t| t.tsc_frequency())
        && hz > 0
    {
        return hz;
    }
    if let Some(f) = id.get_processor_frequency_info() {
        let mhz = u64::from(f.processor_base_frequency());
        if mhz > 0 {
            return mhz * 1_000_000;
        }
    }
    if id.get_hypervisor_info().is_some() {
        let max = core::arch::x86_64::__cpuid(0x4000_0000).eax;
        if max >= 0x4000_0010 {
            return u64::from(core::arch::x86_64::__cpuid(0x4000_0010).eax) * 1000;
        }
    }
    0
}

/// The CPUID brand string, trimmed, in `buf` (`"unknown"` without one).
pub fn cpu_model(buf: &mut [u8; 48]) -> &str {
    if let Some(b) = raw_cpuid::CpuId::new().get_processor_brand_string() {
        let s = b.as_str().trim();
        let n = s.len().min(48);
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        return core::str::from_utf8(&buf[..n]).unwrap_or("unknown");
    }
    "unknown"
}

/// One line to fd 1, in one `write`.
fn line(args: fmt::Arguments<'_>) {
    let mut w = FdWriter::<LINE_MAX>::new(exo_abi::STDOUT);
    let _ = w.write_fmt(args);
    w.push(b"\n");
    let _ = w.flush();
}

/// One suite: prints `SUITE` when started, a `BENCH` line per row, `END` when ended.
#[derive(Debug)]
pub struct Suite {
    name: &'static str,
    overhead: u64,
    count: u32,
    mode: Mode,
}

impl Suite {
    /// Detects the mode, measures the timing-pair overhead and prints the `SUITE` line.
    pub fn start(name: &'static str, ncpus: u32, git_rev: &str) -> Self {
        let mode = detect_mode();
        let overhead = measure_overhead(&mut rdtsc_precise, OVERHEAD_PAIRS);
        let mut model = [0u8; 48];
        let model = cpu_model(&mut model);
        let header = SuiteLine {
            suite: name,
            tsc_start: rdtsc_precise(),
            tsc_hz: tsc_hz_from_cpuid(),
            mode,
            ncpus,
            git_rev,
            cpu_model: model,
        };
        line(format_args!("{header}"));
        Self {
            name,
            overhead,
            count: 0,
            mode,
        }
    }

    /// The detected mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The cost of an empty timing pair (the minimum over [`OVERHEAD_PAIRS`]), subtracted
    /// from every sample.
    pub fn overhead(&self) -> u64 {
        self.overhead
    }

    /// Times `f` with [`bench_with`]: `warmup` untimed calls, then `n` samples (at most `N`)
    /// of `k` calls each, per call, the overhead subtracted; prints the row.
    pub fn run<F, R, const N: usize>(
        &mut self,
        name: &str,
        samples: &mut Samples<N>,
        warmup: usize,
        n: usize,
        k: u32,
        f: F,
    ) -> Option<Stats>
    where
        F: FnMut() -> R,
    {
        let stats = self.measure(samples, warmup, n, k, f);
        self.emit(name, stats);
        stats
    }

    /// As [`run`](Self::run) without printing (for a row that is only valid if every call
    /// succeeded: check, then [`emit`](Self::emit)).
    pub fn measure<F, R, const N: usize>(
        &self,
        samples: &mut Samples<N>,
        warmup: usize,
        n: usize,
        k: u32,
        f: F,
    ) -> Option<Stats>
    where
        F: FnMut() -> R,
    {
        bench_with(&mut rdtsc_precise, samples, self.overhead, warmup, n, k, f)
    }

    /// Prints the `BENCH` line of `stats` (nothing but a note when `None`).
    pub fn emit(&mut self, name: &str, stats: Option<Stats>) {
        match stats {
            Some(stats) => {
                line(format_args!("{}", BenchLine { name, stats }));
                self.count += 1;
            }
            None => line(format_args!("{}: {name}: no sample", self.name)),
        }
    }

    /// Prints `END,<name>,<rows>`.
    pub fn end(self) {
        line(format_args!(
            "{}",
            EndLine {
                suite: self.name,
                n_results: self.count
            }
        ));
    }
}

#[cfg(test)]
mod mode_tests {
    use super::instructions_counted;

    /// One exact probe among inexact ones is a coincidence (TCG), not icount.
    #[test]
    fn one_exact_probe_of_three_is_not_icount() {
        for exact in 0..3 {
            let mut i = 0;
            assert!(!instructions_counted(|| {
                i += 1;
                i - 1 == exact
            }));
        }
        assert!(instructions_counted(|| true));
        assert!(!instructions_counted(|| false));
    }
}
