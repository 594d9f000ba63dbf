//! BENCH / SUITE / FAIR / END formatting and parsing, modes and row names.

use proptest::prelude::*;
use smp_bench::names::{C2cKind, C2cName, ContendName, LockKind};
use smp_bench::{
    BenchLine, EndLine, FairLine, Line, Mode, ParseModeError, Stats, SuiteLine, parse_line,
    write_bench, write_fair,
};

const STATS: Stats = Stats {
    n: 1000,
    mean: 412,
    min: 380,
    max: 9000,
    p50: 401,
    p95: 470,
    p99: 1200,
};

fn suite<'a>(model: &'a str) -> SuiteLine<'a> {
    SuiteLine {
        suite: "smp",
        tsc_start: 123_456_789,
        tsc_hz: 2_900_000_000,
        mode: Mode::Kvm,
        ncpus: 4,
        git_rev: "d4994a9",
        cpu_model: model,
    }
}

#[test]
fn bench_line_format_and_parse() {
    let mut out = String::new();
    write_bench(&mut out, "ipc.rtt.64", &STATS).unwrap();
    assert_eq!(out, "BENCH,ipc.rtt.64,1000,412,380,9000,401,470,1200\n");
    let expect = Line::Bench(BenchLine {
        name: "ipc.rtt.64",
        stats: STATS,
    });
    assert_eq!(parse_line(&out), Some(expect));
    assert_eq!(expect.to_string(), out.trim_end());
}

#[test]
fn computed_names() {
    let mut out = String::new();
    let rtt = C2cName {
        kind: C2cKind::Rtt,
        from: 0,
        to: 3,
    };
    write_bench(&mut out, rtt, &STATS).unwrap();
    write_fair(
        &mut out,
        ContendName {
            lock: LockKind::Mcs,
            ncpus: 4,
        },
        4,
        240,
        260,
    )
    .unwrap();
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("BENCH,c2c.rtt.0.3,"));
    assert_eq!(lines.next(), Some("FAIR,contend.mcs.4,4,240,260"));
}

#[test]
fn suite_line_round_trip_and_sanitising() {
    let s = suite("  Intel(R) Xeon(R), 2.90GHz\0\0");
    let text = s.to_string();
    assert_eq!(
        text,
        "SUITE,smp,123456789,2900000000,kvm,4,d4994a9,Intel(R) Xeon(R); 2.90GHz"
    );
    let Some(Line::Suite(p)) = parse_line(&text) else {
        panic!("SUITE line did not parse: {text}");
    };
    assert_eq!(p, suite("Intel(R) Xeon(R); 2.90GHz"));
    // The model is the rest of the line, commas or not.
    let Some(Line::Suite(p)) = parse_line("SUITE,s,1,0,tcg,1,x,QEMU Virtual CPU, v2.5+") else {
        panic!();
    };
    assert_eq!(
        (p.mode, p.cpu_model),
        (Mode::Tcg, "QEMU Virtual CPU, v2.5+")
    );
}

#[test]
fn names_cannot_break_a_line() {
    let mut out = String::new();
    write_bench(&mut out, "bad,name\nBENCH", &STATS).unwrap();
    assert_eq!(out.lines().count(), 1);
    let Some(Line::Bench(b)) = parse_line(&out) else {
        panic!("{out}");
    };
    assert_eq!(b.name, "bad;name BENCH");
}

#[test]
fn fair_and_end_round_trip() {
    for line in [
        Line::Fair(FairLine {
            name: "contend.tas.8",
            ncpus: 8,
            min_acq: 3,
            max_acq: 9000,
        }),
        Line::End(EndLine {
            suite: "smp",
            n_results: 42,
        }),
    ] {
        let text = line.to_string();
        assert_eq!(parse_line(&text), Some(line), "{text}");
    }
    assert_eq!(
        FairLine {
            name: "contend.mutex.2",
            ncpus: 2,
            min_acq: 10,
            max_acq: 12
        }
        .to_string(),
        "FAIR,contend.mutex.2,2,10,12"
    );
    assert_eq!(
        EndLine {
            suite: "smp",
            n_results: 3
        }
        .to_string(),
        "END,smp,3"
    );
}

#[test]
fn crlf_and_trailing_blanks_accepted() {
    assert!(parse_line("BENCH,a,1,5,5,5,5,5,5\r\n").is_some());
    assert!(parse_line("END,smp,0 \r").is_some());
}

#[test]
fn junk_rejected() {
    for junk in [
        "",
        "BENCH",
        "BENCH,",
        "bench,a,1,5,5,5,5,5,5",
        " BENCH,a,1,5,5,5,5,5,5",
        "BENCH,a,1,5,5,5,5,5",                      // 8 fields
        "BENCH,a,1,5,5,5,5,5,5,5",                  // 10 fields
        "BENCH,,1,5,5,5,5,5,5",                     // empty name
        "BENCH,a,1,5,5,5,5,5,x",                    // not a number
        "BENCH,a,1,5,5,5,5,5,-5",                   // negative
        "BENCH,a,1,5,5,5,5,5,+5",                   // sign
        "BENCH,a,1,5, 5,5,5,5,5",                   // blank inside
        "BENCH,a,0,5,5,5,5,5,5",                    // n = 0
        "BENCH,a,3,5,6,9,5,7,8",                    // min > p50
        "BENCH,a,3,5,1,9,5,9,8",                    // p95 > p99
        "BENCH,a,3,50,1,9,5,7,8",                   // mean > max
        "BENCH,a,1,5,5,5,5,5,99999999999999999999", // > u64
        "SUITE,smp,1,2,warp,4,rev,cpu",             // unknown mode
        "SUITE,smp,1,2,kvm,4,rev",                  // no cpu_model field
        "SUITE,,1,2,kvm,4,rev,cpu",                 // empty suite
        "FAIR,x,4,10,5",                            // min > max
        "FAIR,x,4,10",
        "END,smp",
        "END,smp,1,2",
        "HELLO,world",
        "BENCH,a,1,5,5,5,5,5,5BENCH,b,1,5,5,5,5,5,5", // interleaved output
    ] {
        assert_eq!(parse_line(junk), None, "accepted: {junk:?}");
    }
}

#[test]
fn mode_parse_and_display() {
    for m in Mode::ALL {
        assert_eq!(Mode::parse(m.as_str()), Some(m));
        assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
    }
    assert_eq!(Mode::parse("KVM"), Some(Mode::Kvm));
    assert_eq!(Mode::parse(" icount "), Some(Mode::Icount));
    assert_eq!(Mode::parse("hvf"), None);
    assert_eq!(Mode::parse(""), None);
    assert_eq!("tcg-smp".parse::<Mode>(), Err(ParseModeError));
    let real: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| m.is_real_cycles())
        .collect();
    assert_eq!(real, [Mode::Kvm, Mode::Native]);
}

#[test]
fn structured_names() {
    let one = C2cName {
        kind: C2cKind::OneWay,
        from: 12,
        to: 3,
    };
    assert_eq!(one.to_string(), "c2c.oneway.12.3");
    assert_eq!(C2cName::parse("c2c.oneway.12.3"), Some(one));
    assert_eq!(C2cName::parse("c2c.rtt.1.x"), None);
    assert_eq!(C2cName::parse("c2c.rtt.1"), None);
    assert_eq!(C2cName::parse("c2c.lat.1.2"), None);
    for lock in LockKind::ALL {
        let c = ContendName { lock, ncpus: 6 };
        assert_eq!(ContendName::parse(&c.to_string()), Some(c));
    }
    assert_eq!(ContendName::parse("contend.rwlock.2"), None);
    assert_eq!(ContendName::parse("contend.tas.-2"), None);
}

fn stats_strategy() -> impl Strategy<Value = Stats> {
    prop::collection::vec(any::<u64>(), 7).prop_map(|mut v| {
        v.sort_unstable();
        // min <= mean <= max and min <= p50 <= p95 <= p99 <= max.
        Stats {
            n: v[0].max(1),
            min: v[1],
            p50: v[2],
            mean: v[3],
            p95: v[4],
            p99: v[5],
            max: v[6],
        }
    })
}

proptest! {
    #[test]
    fn bench_round_trip(name in "[a-z0-9._]{1,24}", stats in stats_strategy()) {
        let mut out = String::new();
        write_bench(&mut out, &name, &stats).unwrap();
        let parsed = parse_line(&out);
        prop_assert_eq!(parsed, Some(Line::Bench(BenchLine { name: &name, stats })));
        prop_assert_eq!(parsed.unwrap().to_string(), out.trim_end());
    }

    #[test]
    fn suite_round_trip(
        name in "[a-z]{1,8}",
        start in any::<u64>(),
        hz in any::<u64>(),
        mode in prop::sample::select(Mode::ALL.to_vec()),
        ncpus in 1u32..512,
        rev in "[0-9a-f]{0,12}",
        model in "[ -~]{0,40}",
    ) {
        let line = SuiteLine { suite: &name, tsc_start: start, tsc_hz: hz, mode, ncpus, git_rev: &rev, cpu_model: &model };
        let text = line.to_string();
        let Some(Line::Suite(p)) = parse_line(&text) else {
            return Err(TestCaseError::fail(format!("did not parse: {text}")));
        };
        let clean = model.trim().replace(',', ";");
        prop_assert_eq!(p, SuiteLine { cpu_model: &clean, ..line });
        prop_assert_eq!(p.to_string(), text);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,80}") {
        let _ = parse_line(&s);
    }
}
