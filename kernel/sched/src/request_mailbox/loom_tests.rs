//! loom model checks of [`RequestMailbox`] (run with `RUSTFLAGS="--cfg loom"`).
//!
//! As for the wake-up mailbox, each scenario runs once per spawn order of its threads
//! (loom 0.7's DPOR can miss interleavings depending on which thread is spawned first).
//! That these tests find the bug they are for was checked by mutation: with the claim done
//! as "check `posted == done`, then store" (the kernel's first version), both posters win
//! in some interleaving and `two_posters_one_winner` fails; publishing `posted` with
//! `Relaxed` fails `posters_and_owner_exactly_once` (the owner reads a stale payload).

use loom::sync::Arc;
use loom::thread;

use super::*;

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

/// Poster `p`'s payload: function word `p + 1`, argument `(p + 1) * 100`.
fn payload(p: u64) -> (u64, u64) {
    (p + 1, (p + 1) * 100)
}

/// `posters` threads post once each to a free mailbox with no owner running: exactly one
/// wins, the others are refused, and the published request is the winner's, whole.
fn one_winner(posters: u64) {
    for order in permutations(posters as usize) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(move || {
            let mb = Arc::new(RequestMailbox::new());
            let handles: Vec<_> = order
                .iter()
                .map(|&p| {
                    let mb = mb.clone();
                    thread::spawn(move || {
                        let (f, a) = payload(p as u64);
                        (p as u64, mb.post(f, a, 0))
                    })
                })
                .collect();
            let results: Vec<(u64, Result<u64, Busy>)> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners: Vec<u64> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|&(p, _)| p)
                .collect();
            assert_eq!(winners.len(), 1, "winners {winners:?} of {results:?}");
            let r = mb.take().expect("the winner's request is published");
            let (f, a) = payload(winners[0]);
            assert_eq!((r.func, r.arg, r.seq), (f, a, 1));
        });
    }
}

#[test]
fn request_mailbox_loom_two_posters_one_winner() {
    one_winner(2);
}

#[test]
fn request_mailbox_loom_three_posters_one_winner() {
    one_winner(3);
}

/// Two posters (one post each) and the owner (takes and completes up to twice) run
/// concurrently; afterwards the rest is taken. Every accepted request ran exactly once
/// with its own payload, no refused one ran, and a poster is refused only while another
/// request held the mailbox (so with the owner done at most one can be refused).
#[test]
fn request_mailbox_loom_posters_and_owner_exactly_once() {
    for order in permutations(3) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(move || {
            let mb = Arc::new(RequestMailbox::new());
            let handles: Vec<_> = order
                .iter()
                .map(|&a| {
                    let mb = mb.clone();
                    thread::spawn(move || {
                        if a == 2 {
                            let mut ran = Vec::new();
                            for _ in 0..2 {
                                if let Some(r) = mb.take() {
                                    ran.push((r.func, r.arg));
                                    mb.complete(r.seq, r.arg + 1);
                                }
                                thread::yield_now();
                            }
                            (None, ran)
                        } else {
                            let (f, x) = payload(a as u64);
                            (Some((a as u64, mb.post(f, x, 0).is_ok())), Vec::new())
                        }
                    })
                })
                .collect();
            let mut accepted = Vec::new();
            let mut ran = Vec::new();
            for h in handles {
                let (post, r) = h.join().unwrap();
                ran.extend(r);
                if let Some((p, true)) = post {
                    accepted.push(payload(p));
                }
            }
            if let Some(r) = mb.take() {
                ran.push((r.func, r.arg));
                mb.complete(r.seq, r.arg + 1);
            }
            accepted.sort_unstable();
            ran.sort_unstable();
            assert_eq!(ran, accepted, "ran {ran:?}, accepted {accepted:?}");
            assert!(
                !accepted.is_empty(),
                "the first post to a free mailbox wins"
            );
            assert!(mb.is_free());
        });
    }
}

/// Request 1 (argument 7) posted; then, in both spawn orders, the owner completes it and
/// `reuses` more requests of its own (each takes the next result slot), while its poster
/// reads its result `reads` times: each read must satisfy `ok`; after both, the final
/// result must be `last`.
fn owner_and_reader(
    bound: usize,
    reuses: u64,
    reads: usize,
    ok: fn(&Option<Result<u64, Lost>>) -> bool,
    last: Option<Result<u64, Lost>>,
) {
    for order in permutations(2) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(bound);
        b.check(move || {
            let mb = Arc::new(RequestMailbox::new());
            let first = mb.post(1, 7, 0).unwrap();
            let handles: Vec<_> = order
                .iter()
                .map(|&a| {
                    let mb = mb.clone();
                    thread::spawn(move || {
                        if a == 0 {
                            for k in 0..=reuses {
                                if k > 0 {
                                    mb.post(1, 100 + k, 0).unwrap();
                                }
                                let r = mb.take().unwrap();
                                mb.complete(r.seq, r.arg * 10);
                            }
                            Vec::new()
                        } else {
                            (0..reads).map(|_| mb.result(first)).collect()
                        }
                    })
                })
                .collect();
            for h in handles {
                for r in h.join().unwrap() {
                    assert!(ok(&r), "poster 1 read {r:?}");
                }
            }
            assert_eq!(mb.result(first), last);
        });
    }
}

/// The owner completes request 1 while its poster reads the result: pending or the value,
/// never `Lost` (a first version read the tag, then `done`: a completion between the two
/// looked like a reused slot; the kernel's racing-posters test hit it at -smp 4).
#[test]
fn request_mailbox_loom_result_not_lost_by_its_own_completion() {
    owner_and_reader(3, 0, 2, |r| matches!(r, None | Some(Ok(70))), Some(Ok(70)));
}

/// The owner completes request 1, then `RESULTS` more (posted by itself) that reuse its
/// result slot, while poster 1 reads its result: it sees its own value, pending, or `Lost`,
/// never another request's value (the seqlock of the result slots).
#[test]
fn request_mailbox_loom_result_never_another_requests() {
    owner_and_reader(
        2,
        RESULTS as u64,
        3,
        |r| matches!(r, None | Some(Ok(70)) | Some(Err(Lost))),
        Some(Err(Lost)),
    );
}
