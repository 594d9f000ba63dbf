//! Unit tests and a threaded stress test of [`RequestMailbox`].

use std::sync::atomic::{AtomicBool, AtomicU64 as StdU64, Ordering as O};
use std::sync::{Arc, Barrier};

use super::*;

#[test]
fn one_request_at_a_time() {
    static MB: RequestMailbox = RequestMailbox::new(); // const-constructible
    assert!(MB.is_free());
    assert_eq!(MB.take(), None);
    let seq = MB.post(11, 22, 33).unwrap();
    assert_eq!(seq, 1);
    assert!(!MB.is_free());
    assert_eq!(
        MB.post(1, 2, 3),
        Err(Busy),
        "a pending request refuses a second post"
    );
    assert_eq!(MB.result(seq), None);
    let r = MB.take().unwrap();
    assert_eq!(
        r,
        Request {
            seq: 1,
            func: 11,
            arg: 22,
            notify: 33
        }
    );
    assert_eq!(MB.notify(), 33);
    assert_eq!(
        MB.post(1, 2, 3),
        Err(Busy),
        "a running request refuses a second post"
    );
    MB.complete(r.seq, 44);
    assert_eq!(MB.take(), None);
    assert_eq!(MB.result(seq), Some(Ok(44)));
    assert!(MB.is_free());
    assert_eq!(MB.post(5, 6, 0), Ok(2));
    assert!(format!("{MB:?}").starts_with("RequestMailbox { posted: 2, done: 1"));
}

#[test]
fn claimed_but_unpublished_is_busy_and_invisible() {
    let mb = RequestMailbox::new();
    // A poster between its claim and its publication.
    mb.posted.store(CLAIMED, Ordering::Relaxed);
    assert_eq!(
        mb.take(),
        None,
        "the owner must not run a half-written request"
    );
    assert_eq!(mb.post(1, 2, 3), Err(Busy));
    assert_eq!(mb.result(1), None);
}

/// Runs the pending request as the owner would, completing it with `arg * 10`.
fn run_one(mb: &RequestMailbox) -> u64 {
    let r = mb.take().expect("a pending request");
    mb.complete(r.seq, r.arg * 10);
    r.seq
}

/// A poster reads its own result, not the one of a request accepted after its own had
/// completed (until 2026-12-05 the mailbox kept one untagged result: poster 1 read 20).
#[test]
fn a_late_reader_gets_its_own_result() {
    let mb = RequestMailbox::new();
    let first = mb.post(1, 1, 0).unwrap();
    run_one(&mb);
    let second = mb.post(1, 2, 0).unwrap();
    assert_eq!(
        mb.result(first),
        Some(Ok(10)),
        "done, while another request is pending"
    );
    assert_eq!(mb.result(second), None);
    run_one(&mb);
    assert_eq!(mb.result(first), Some(Ok(10)));
    assert_eq!(mb.result(second), Some(Ok(20)));
}

/// A result survives `RESULTS - 1` later completions and is reported `Lost` (never another
/// request's value) after `RESULTS`.
#[test]
fn a_result_is_lost_only_after_results_later_completions() {
    let mb = RequestMailbox::new();
    let first = mb.post(1, 7, 0).unwrap();
    run_one(&mb);
    for k in 1..=RESULTS as u64 {
        let s = mb.post(1, 100 + k, 0).unwrap();
        run_one(&mb);
        assert_eq!(mb.result(s), Some(Ok((100 + k) * 10)));
        let want = if k < RESULTS as u64 {
            Some(Ok(70))
        } else {
            Some(Err(Lost))
        };
        assert_eq!(mb.result(first), want, "after {k} later completions");
    }
    assert_eq!(
        mb.result(first + 1000),
        None,
        "a sequence not posted yet is pending"
    );
}

/// Two posters race for one owner thread, each round started by a barrier: of every pair
/// of posts, the accepted ones run exactly once with their own function and argument, the
/// refused ones never run, and accepted + refused = attempts.
#[test]
fn racing_posters_exactly_once() {
    const ROUNDS: u64 = 4_000;
    let mb = Arc::new(RequestMailbox::new());
    let barrier = Arc::new(Barrier::new(2));
    let stop = Arc::new(AtomicBool::new(false));
    // ran[poster][round]: how often the owner ran that request.
    let ran: Arc<Vec<StdU64>> = Arc::new((0..2 * ROUNDS).map(|_| StdU64::new(0)).collect());
    let torn = Arc::new(StdU64::new(0));
    let owner = {
        let (mb, stop, ran, torn) = (mb.clone(), stop.clone(), ran.clone(), torn.clone());
        std::thread::spawn(move || {
            while !stop.load(O::Acquire) || mb.take().is_some() {
                if let Some(r) = mb.take() {
                    // func = 1 + poster, arg = poster << 32 | round.
                    let p = r.func - 1;
                    if r.arg >> 32 != p {
                        torn.fetch_add(1, O::Relaxed);
                    }
                    ran[(p * ROUNDS + (r.arg & 0xFFFF_FFFF)) as usize].fetch_add(1, O::Relaxed);
                    mb.complete(r.seq, r.arg);
                } else {
                    std::thread::yield_now();
                }
            }
        })
    };
    let posters: Vec<_> = (0..2u64)
        .map(|p| {
            let (mb, barrier) = (mb.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                let mut refused = 0u64;
                for round in 0..ROUNDS {
                    barrier.wait();
                    match mb.post(1 + p, p << 32 | round, 0) {
                        Ok(seq) => {
                            accepted.push(round);
                            loop {
                                match mb.result(seq) {
                                    None => std::thread::yield_now(),
                                    Some(r) => {
                                        assert_eq!(r, Ok(p << 32 | round), "poster {p}'s result");
                                        break;
                                    }
                                }
                            }
                        }
                        Err(Busy) => refused += 1,
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let results: Vec<(Vec<u64>, u64)> = posters.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, O::Release);
    owner.join().unwrap();
    assert_eq!(
        torn.load(O::Relaxed),
        0,
        "a request ran with another poster's argument"
    );
    let mut busy = 0;
    for (p, (accepted, refused)) in results.iter().enumerate() {
        assert_eq!(
            accepted.len() as u64 + refused,
            ROUNDS,
            "poster {p}: ok + busy"
        );
        busy += refused;
        for round in 0..ROUNDS {
            let n = ran[p * ROUNDS as usize + round as usize].load(O::Relaxed);
            let want = u64::from(accepted.binary_search(&round).is_ok());
            assert_eq!(
                n, want,
                "poster {p} round {round}: ran {n} times, accepted {want}"
            );
        }
    }
    // Not asserted (scheduling decides), but shows the race was exercised.
    eprintln!(
        "racing_posters_exactly_once: {busy} of {} posts refused",
        2 * ROUNDS
    );
}
