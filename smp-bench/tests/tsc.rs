//! One-way latency from synchronised TSCs.

use smp_bench::{OneWay, TscOffset, one_way_latency};

#[test]
fn one_way_with_offsets() {
    let a = TscOffset {
        offset: 50,
        uncertainty: 3,
    };
    let b = TscOffset {
        offset: -20,
        uncertainty: 4,
    };
    // (1300 - (-20)) - (1000 - 50) = 1320 - 950 = 370.
    let l = one_way_latency(1000, a, 1300, b);
    assert_eq!(
        l,
        OneWay {
            ticks: 370,
            error: 7
        }
    );
    assert_eq!((l.lower(), l.upper(), l.clamped()), (363, 377, 370));
}

#[test]
fn boot_cpu_is_identity() {
    let l = one_way_latency(500, TscOffset::BOOT, 740, TscOffset::BOOT);
    assert_eq!(
        l,
        OneWay {
            ticks: 240,
            error: 0
        }
    );
}

#[test]
fn negative_within_error_is_kept_signed() {
    let b = TscOffset {
        offset: 100,
        uncertainty: 60,
    };
    let l = one_way_latency(1000, TscOffset::BOOT, 1080, b);
    assert_eq!(l.ticks, -20);
    assert_eq!(l.clamped(), 0);
    assert!(l.lower() < 0 && l.upper() > 0);
}

#[test]
fn extremes_saturate_instead_of_overflowing() {
    let a = TscOffset {
        offset: i64::MAX,
        uncertainty: u64::MAX,
    };
    let b = TscOffset {
        offset: i64::MIN,
        uncertainty: 1,
    };
    let l = one_way_latency(0, a, u64::MAX, b);
    assert_eq!(l.ticks, i64::MAX);
    assert_eq!(l.error, u64::MAX);
    let l = one_way_latency(u64::MAX, b, 0, a);
    assert_eq!(l.ticks, i64::MIN);
}

#[test]
fn offset_from_exchange() {
    // Remote TSC runs 4000 ahead; exchange took 100 ticks on the boot CPU.
    let o = TscOffset::from_exchange(1000, 5050, 1100);
    assert_eq!(
        o,
        TscOffset {
            offset: 4000,
            uncertainty: 50
        }
    );
    // A message sent by the boot CPU at 2000, seen remotely at 6250: 250 ticks, ± 50.
    let l = one_way_latency(2000, TscOffset::BOOT, 6250, o);
    assert_eq!(
        l,
        OneWay {
            ticks: 250,
            error: 50
        }
    );
    // Odd round trip: the uncertainty rounds up.
    assert_eq!(TscOffset::from_exchange(0, 10, 7).uncertainty, 4);
    // Remote behind the boot CPU: negative offset.
    assert_eq!(TscOffset::from_exchange(1000, 20, 1010).offset, -985);
}
