//! The lines `exo_rt::bench` prints are `smp-bench`'s: the same text as its `Display`
//! impls, parsed back by `smp_bench::parse_line`; and the statistics compiled from its
//! source agree with the crate's.
#![cfg(feature = "bench")]

use exo_rt::bench::{self, Mode, Samples};
use proptest::prelude::*;
use smp_bench::{BenchLine, EndLine, Line, SuiteLine, parse_line};

fn to_smp(s: &bench::Stats) -> smp_bench::Stats {
    smp_bench::Stats {
        n: s.n,
        mean: s.mean,
        min: s.min,
        max: s.max,
        p50: s.p50,
        p95: s.p95,
        p99: s.p99,
    }
}

fn to_smp_mode(m: Mode) -> smp_bench::Mode {
    smp_bench::Mode::parse(m.as_str()).unwrap()
}

proptest! {
    #[test]
    fn bench_lines_are_smp_bench_lines(name in "[a-z.,\\n]{1,24}", samples in prop::collection::vec(0u64..1 << 40, 1..64)) {
        let mut s = Samples::<64>::new();
        for &x in &samples {
            s.push(x);
        }
        let stats = s.stats(0).unwrap();
        let ours = bench::BenchLine { name: &name, stats }.to_string();
        let theirs = BenchLine { name: &name, stats: to_smp(&stats) }.to_string();
        prop_assert_eq!(&ours, &theirs);
        let mut copy = samples.clone();
        prop_assert_eq!(Some(to_smp(&stats)), smp_bench::stats_of(&mut copy, 0));
        match parse_line(&ours) {
            Some(Line::Bench(b)) => prop_assert_eq!(b.stats, to_smp(&stats)),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn suite_and_end_lines_are_smp_bench_lines(
        suite in "[a-z]{1,8}",
        rev in "[0-9a-f,]{0,12}",
        model in "[ -~\\t\\x00]{0,48}",
        tsc in any::<u64>(), hz in any::<u64>(), ncpus in any::<u32>(), mode in 0usize..5, rows in any::<u32>(),
    ) {
        let mode = Mode::ALL[mode];
        let ours = bench::SuiteLine {
            suite: &suite, tsc_start: tsc, tsc_hz: hz, mode, ncpus, git_rev: &rev, cpu_model: &model,
        }.to_string();
        let theirs = SuiteLine {
            suite: &suite, tsc_start: tsc, tsc_hz: hz, mode: to_smp_mode(mode), ncpus,
            git_rev: &rev, cpu_model: &model,
        }.to_string();
        prop_assert_eq!(&ours, &theirs);
        prop_assert!(matches!(parse_line(&ours), Some(Line::Suite(_))));
        let end = bench::EndLine { suite: &suite, n_results: rows }.to_string();
        prop_assert_eq!(&end, &EndLine { suite: &suite, n_results: rows }.to_string());
    }
}

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
