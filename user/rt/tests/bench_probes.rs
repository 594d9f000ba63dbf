//! `exo_rt::bench` on the host: its own probes (mode, CPU model, TSC frequency) run, and
//! the timing loop it re-exports from `smp-bench` subtracts the overhead it is given. The
//! line types and statistics are `smp-bench`'s own (re-exported, tested there).
#![cfg(feature = "bench")]

use exo_rt::bench::{self, Mode, Samples};

#[test]
fn the_timing_loop_subtracts_the_overhead() {
    let mut t = 0u64;
    let mut clock = || {
        t += 10;
        t
    };
    let mut s = Samples::<16>::new();
    let st = bench::bench_with(&mut clock, &mut s, 10, 0, 16, 1, || ()).unwrap();
    assert_eq!((st.n, st.p50), (16, 0));
}

#[test]
fn the_probes_run_on_the_host() {
    let mut buf = [0u8; 48];
    assert!(!bench::cpu_model(&mut buf).is_empty());
    let mode = bench::detect_mode();
    assert_ne!(mode, Mode::Native);
    let _ = bench::tsc_hz_from_cpuid();
}
