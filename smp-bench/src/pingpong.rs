//! The core-to-core ping-pong behind `c2c.rtt.<a>.<b>` and `c2c.oneway.<a>.<b>`: the
//! initiator publishes a sequence number and its start timestamp in one cache line
//! ([`ping`]), the responder answers in another ([`answer`]). The kernel's matrix and the
//! native suite both run these, so both time the round trip the same way: the caller's
//! (serialised) clock, the timing pair's cost subtracted as in every other row (until
//! 2026-12-05 the kernel timed it with two unfenced `rdtsc` and kept the pair, the native
//! suite fenced and kept it, and the Linux peer fenced and subtracted it: three definitions
//! under one name; found by review).

use core::hint::spin_loop;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{Clock, time_once};

/// One side's cache line: the sequence number and the sender's timestamp.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct PingLine {
    /// The last sequence number published.
    pub seq: AtomicU64,
    /// The initiator's clock when it published `seq` (the ping side only).
    pub tsc: AtomicU64,
}

impl PingLine {
    /// Sequence 0, timestamp 0.
    pub const fn new() -> PingLine {
        PingLine {
            seq: AtomicU64::new(0),
            tsc: AtomicU64::new(0),
        }
    }
}

/// Initiator: one round trip. Publishes `seq` with the start timestamp on `ping`, waits for
/// `seq` on `pong` (`keep_waiting` is asked between looks; `false` gives up: `None`), and
/// returns the ticks in between minus `overhead` (the timing pair's cost).
pub fn ping<C, W>(
    clock: &mut C,
    overhead: u64,
    ping: &PingLine,
    pong: &PingLine,
    seq: u64,
    mut keep_waiting: W,
) -> Option<u64>
where
    C: Clock + ?Sized,
    W: FnMut() -> bool,
{
    let (dt, answered) = time_once(clock, overhead, |t0| {
        ping.tsc.store(t0, Ordering::Relaxed);
        ping.seq.store(seq, Ordering::Release);
        while pong.seq.load(Ordering::Acquire) != seq {
            if !keep_waiting() {
                return false;
            }
            spin_loop();
        }
        true
    });
    answered.then_some(dt)
}

/// Responder: waits for `seq` on `ping` (`keep_waiting` as in [`ping()`]), answers it on
/// `pong`, and returns `(sent, received)`: the initiator's timestamp of this ping and
/// `clock` when it was seen.
pub fn answer<C, W>(
    clock: &mut C,
    ping: &PingLine,
    pong: &PingLine,
    seq: u64,
    keep_waiting: W,
) -> Option<(u64, u64)>
where
    C: Clock + ?Sized,
    W: FnMut() -> bool,
{
    answer_then(clock, ping, pong, seq, keep_waiting, || {})
}

/// [`answer`], running `after` once the answer is published (a test's stand-in for a
/// responder that is held up right there: a preempted vCPU).
fn answer_then<C, W, A>(
    clock: &mut C,
    ping: &PingLine,
    pong: &PingLine,
    seq: u64,
    mut keep_waiting: W,
    after: A,
) -> Option<(u64, u64)>
where
    C: Clock + ?Sized,
    W: FnMut() -> bool,
    A: FnOnce(),
{
    while ping.seq.load(Ordering::Acquire) != seq {
        if !keep_waiting() {
            return None;
        }
        spin_loop();
    }
    let received = clock.now();
    // The ping's timestamp is read before the answer goes out: once it has, the initiator
    // may store the next ping's timestamp over it (until 2026-12-05 the kernel read it
    // after, and a responder held up in between took the next ping's time, a negative
    // latency recorded as 0; found by review).
    let sent = ping.tsc.load(Ordering::Relaxed);
    pong.seq.store(seq, Ordering::Release);
    after();
    Some((sent, received))
}

#[cfg(test)]
mod tests {
    use super::{PingLine, answer_then, ping};
    use crate::measure_overhead;
    use core::cell::Cell;
    use std::sync::atomic::Ordering;

    /// A clock whose every read costs 10 ticks; the answer takes 50: the round trip is 50.
    #[test]
    fn the_round_trip_has_the_pair_subtracted() {
        let t = Cell::new(0u64);
        let mut clock = || {
            t.set(t.get() + 10);
            t.get()
        };
        let overhead = measure_overhead(&mut clock, 4);
        let (a, b) = (PingLine::new(), PingLine::new());
        let rtt = ping(&mut clock, overhead, &a, &b, 7, || {
            t.set(t.get() + 50);
            b.seq.store(7, Ordering::Release);
            true
        });
        assert_eq!(rtt, Some(50));
        assert_eq!(a.tsc.load(Ordering::Relaxed), 90); // the start (after 8 reads), published
        // Nobody answers: given up, no sample.
        assert_eq!(ping(&mut clock, overhead, &a, &b, 8, || false), None);
    }

    /// The responder is held up right after answering until the initiator has published its
    /// next ping: it must still return the timestamp of the ping it answered.
    #[test]
    fn a_responder_held_up_after_answering_keeps_its_pings_timestamp() {
        let (a, b) = (PingLine::new(), PingLine::new());
        const ROUNDS: u64 = 200;
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut t = 0u64;
                let mut clock = || {
                    t += 1;
                    t * 1000 // seq i is sent at 1000 * (2i - 1)
                };
                for seq in 1..=ROUNDS {
                    assert!(ping(&mut clock, 0, &a, &b, seq, || true).is_some());
                }
            });
            let mut got = Vec::new();
            for seq in 1..=ROUNDS {
                let held_up = || {
                    if seq < ROUNDS {
                        while a.seq.load(Ordering::Acquire) != seq + 1 {
                            std::hint::spin_loop();
                        }
                    }
                };
                let (sent, _) = answer_then(&mut || 0, &a, &b, seq, || true, held_up).unwrap();
                got.push(sent);
            }
            let want: Vec<u64> = (1..=ROUNDS).map(|i| 1000 * (2 * i - 1)).collect();
            assert_eq!(got, want);
        });
    }
}
