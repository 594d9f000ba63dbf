//! loom model checks of [`Mailbox`] (run with `RUSTFLAGS="--cfg loom"`).
//!
//! loom 0.7's DPOR has known blind spots (tokio-rs/loom#166, #392): when a
//! thread loads a location before storing it, as every Vyukov slot operation
//! does, an earlier conflicting load by another thread can be forgotten, and
//! whole classes of interleavings are then never run depending on which thread
//! was spawned first. Each scenario is therefore run once per **spawn order**
//! of its threads (all producers and the consumer are spawned threads), with
//! a preemption bound to keep the whole run near a minute. That this finds
//! real bugs was checked by mutation; each of these is caught by at least one
//! test: publishing `seq` before writing the payload; reading `seq` in `pop`
//! with `Relaxed`; freeing a slot before reading it; freeing it with
//! `Relaxed` (duplicate on the next lap); clearing the doorbell after
//! draining (lost wake-up); publishing with `Relaxed` (reported by loom as a
//! retry loop that never progresses: the producer's progress relies on that
//! release/acquire pair).

use loom::sync::Arc;
use loom::thread;

use super::*;

/// Producer `p`'s `i`-th message (never 0, the value of an unwritten slot).
fn msg(p: u64, i: u64) -> u64 {
    (p << 32) | (i + 1)
}

/// Checks that `got` holds exactly the messages in `sent[p]` for every
/// producer `p`, each once and in per-producer order.
fn check_exactly_once_in_order(got: &[u64], sent: &[Vec<u64>]) {
    for (p, sent) in sent.iter().enumerate() {
        let mine: Vec<u64> = got
            .iter()
            .copied()
            .filter(|m| m >> 32 == p as u64)
            .collect();
        assert_eq!(&mine, sent, "producer {p}: got {got:?}");
    }
    assert_eq!(
        got.len(),
        sent.iter().map(Vec::len).sum::<usize>(),
        "unexpected messages in {got:?}"
    );
}

/// Spawn orders of `producers` producers (`0..producers`) and the consumer
/// (`producers`): the consumer at every position, with the producers in
/// ascending and in descending order (`2 * (producers + 1)` orders).
fn consumer_at_each_position(producers: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for rev in [false, true] {
        for at in 0..=producers {
            let mut order: Vec<usize> = (0..producers).collect();
            if rev {
                order.reverse();
            }
            order.insert(at, producers);
            out.push(order);
        }
    }
    out
}

/// All orderings of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// Thread results: a producer's accepted messages, or the consumer's receipts.
enum Done {
    Sent(Vec<u64>),
    Got(Vec<u64>),
}

/// One scenario, model-checked once per spawn order: `producers` threads push
/// `per` messages each into a mailbox of `N` slots (a refused push is
/// recorded, not retried, so every interleaving terminates) while a consumer
/// thread pops `tries` times. After the joins the rest is popped and every
/// accepted message must have been received exactly once, in per-producer
/// order.
fn exactly_once<const N: usize>(
    producers: u64,
    per: u64,
    tries: usize,
    bound: Option<usize>,
    orders: Vec<Vec<usize>>,
) {
    let actors = producers as usize + 1; // the last one is the consumer
    for order in orders {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = bound;
        b.check(move || {
            let mb = Arc::new(Mailbox::<u64, N>::new());
            let handles: Vec<_> = order
                .iter()
                .map(|&a| {
                    let mb = mb.clone();
                    thread::spawn(move || {
                        if a == actors - 1 {
                            let mut got = Vec::new();
                            for _ in 0..tries {
                                got.extend(mb.pop());
                            }
                            Done::Got(got)
                        } else {
                            let p = a as u64;
                            let sent = (0..per).map(|i| msg(p, i));
                            Done::Sent(sent.filter(|&m| mb.push(m).is_ok()).collect())
                        }
                    })
                })
                .collect();
            let mut sent = vec![Vec::new(); producers as usize];
            let mut got = Vec::new();
            for (&a, h) in order.iter().zip(handles) {
                match h.join().unwrap() {
                    Done::Sent(s) => sent[a] = s,
                    Done::Got(g) => got = g,
                }
            }
            while let Some(m) = mb.pop() {
                got.push(m);
            }
            check_exactly_once_in_order(&got, &sent);
            // Only a full mailbox refuses messages.
            let accepted: usize = sent.iter().map(Vec::len).sum();
            assert!(accepted == (producers * per) as usize || N < (producers * per) as usize);
            assert!(accepted >= N.min((producers * per) as usize));
        });
    }
}

#[test]
fn mailbox_loom_two_producers_two_messages_each() {
    exactly_once::<4>(2, 2, 2, Some(2), permutations(3));
}

#[test]
fn mailbox_loom_two_producers_wraparound_and_full() {
    // 2 slots for 4 messages: exercises `Full` and slot reuse on the next lap.
    exactly_once::<2>(2, 2, 3, Some(2), permutations(3));
}

#[test]
fn mailbox_loom_three_producers() {
    exactly_once::<4>(3, 1, 2, Some(1), consumer_at_each_position(3));
}

/// Doorbell: after any interleaving of pushes with one concurrent drain, a
/// message left in the mailbox implies the doorbell is set (an IPI was sent
/// after that drain began), i.e. no wake-up is lost; and the first push always
/// asks for an IPI.
#[test]
fn mailbox_loom_doorbell_no_lost_wakeup() {
    for order in permutations(3) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(move || {
            let mb = Arc::new(Mailbox::<u64, 4>::new());
            let handles: Vec<_> = order
                .iter()
                .map(|&a| {
                    let mb = mb.clone();
                    thread::spawn(move || {
                        if a == 2 {
                            let mut got = Vec::new();
                            mb.drain(|m| got.push(m));
                            (got, false)
                        } else {
                            let ipi = matches!(mb.push(msg(a as u64, 0)), Ok(Notify::SendIpi));
                            (Vec::new(), ipi)
                        }
                    })
                })
                .collect();
            let mut got = Vec::new();
            let mut ipis = 0;
            for h in handles {
                let (g, ipi) = h.join().unwrap();
                got.extend(g);
                ipis += usize::from(ipi);
            }
            assert!(ipis >= 1, "the first push always rings the doorbell");
            let left = mb.len();
            assert!(
                left == 0 || mb.is_pending(),
                "{left} message(s) left, doorbell clear: lost wake-up"
            );
            mb.drain(|m| got.push(m));
            got.sort_unstable();
            assert_eq!(got, [msg(0, 0), msg(1, 0)]);
        });
    }
}
