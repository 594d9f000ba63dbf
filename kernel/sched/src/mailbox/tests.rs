//! Single-threaded unit tests and the multi-threaded stress test of [`Mailbox`].

use std::sync::atomic::{AtomicUsize, Ordering as O};
use std::time::{Duration, Instant};

use super::*;

#[test]
fn fifo_full_and_wraparound() {
    let mb = Mailbox::<u64, 4>::new();
    assert!(mb.is_empty());
    assert_eq!(mb.pop(), None);
    for lap in 0..5u64 {
        for i in 0..4 {
            assert!(mb.push(lap * 10 + i).is_ok());
        }
        assert_eq!(mb.len(), 4);
        assert_eq!(mb.push(99), Err(MailboxFull(99)));
        for i in 0..4 {
            assert_eq!(mb.pop(), Some(lap * 10 + i));
        }
        assert_eq!(mb.pop(), None);
    }
}

#[test]
fn thread_refs_round_trip() {
    static MB: Mailbox<ThreadRef, 8> = Mailbox::new(); // const-constructible
    assert_eq!(MB.push(ThreadRef(u32::MAX)), Ok(Notify::SendIpi));
    assert_eq!(MB.push(ThreadRef(3)), Ok(Notify::AlreadyPending));
    let mut got = Vec::new();
    assert_eq!(MB.drain(|t| got.push(t)), 2);
    assert_eq!(got, [ThreadRef(u32::MAX), ThreadRef(3)]);
    assert!(format!("{MB:?}").starts_with("Mailbox { capacity: 8, len: 0, pending: false"));
}

#[test]
fn doorbell_one_ipi_per_drain() {
    let mb = Mailbox::<u64, 8>::new();
    assert!(!mb.is_pending());
    assert_eq!(mb.push(1), Ok(Notify::SendIpi));
    assert_eq!(mb.push(2), Ok(Notify::AlreadyPending));
    assert!(mb.is_pending());
    assert_eq!(mb.drain(|_| {}), 2);
    assert!(!mb.is_pending());
    assert_eq!(mb.push(3), Ok(Notify::SendIpi));
    // A full mailbox does not ring the doorbell again for refused messages.
    for i in 0..7 {
        assert_eq!(mb.push(i), Ok(Notify::AlreadyPending));
    }
    assert_eq!(mb.push(100), Err(MailboxFull(100)));
}

#[test]
fn drain_is_bounded_and_rearms() {
    let mb = Mailbox::<u64, 4>::new();
    for i in 0..4 {
        let _ = mb.push(i).unwrap();
    }
    let mut got = Vec::new();
    assert_eq!(mb.drain(|m| got.push(m)), 4);
    assert!(
        mb.is_pending(),
        "stopped at the bound: owner must drain again"
    );
    assert_eq!(mb.drain(|m| got.push(m)), 0);
    assert!(!mb.is_pending());
    assert_eq!(got, [0, 1, 2, 3]);
}

/// How long the stress consumer may see no progress at all (nothing received, nothing
/// pushed) before calling it a hang: only a guard that ends a broken run with a message
/// instead of stalling CI, far beyond any scheduling delay of a loaded machine.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// 4 producers × 1,000,000 messages through a 256-slot mailbox; the consumer
/// only drains when the doorbell is set. Every message must arrive exactly once
/// and in per-producer order. A lost wake-up is caught deterministically once
/// the producers are done: from then on a clear doorbell with messages left
/// (or messages missing) can never change, so the consumer checks it right
/// away instead of waiting for a timeout. (A lost wake-up that leaves the
/// mailbox full while producers still push stalls them all; the hang guard
/// ends that case.)
#[test]
fn stress_four_producers_millions_of_messages() {
    const PRODUCERS: u64 = 4;
    const PER: u64 = 1_000_000;
    let mb = Mailbox::<u64, 256>::new();
    let ipis = AtomicUsize::new(0);
    let full = AtomicUsize::new(0);
    let pushed = AtomicUsize::new(0);
    let producers_done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (mb, ipis, full, pushed, producers_done) =
                (&mb, &ipis, &full, &pushed, &producers_done);
            s.spawn(move || {
                for i in 0..PER {
                    let mut msg = (p << 32) | i;
                    loop {
                        match mb.push(msg) {
                            Ok(Notify::SendIpi) => {
                                ipis.fetch_add(1, O::Relaxed);
                                break;
                            }
                            Ok(Notify::AlreadyPending) => break,
                            Err(MailboxFull(m)) => {
                                msg = m;
                                full.fetch_add(1, O::Relaxed);
                                std::thread::yield_now();
                            }
                        }
                    }
                    pushed.fetch_add(1, O::Relaxed);
                }
                // Release: all of this producer's pushes (and doorbell swaps)
                // happen-before the consumer's acquire load of the count.
                producers_done.fetch_add(1, O::Release);
            });
        }
        let mut next = [0u64; PRODUCERS as usize];
        let mut received = 0u64;
        let mut last_progress = (Instant::now(), 0, 0);
        while received < PRODUCERS * PER {
            if mb.is_pending() {
                let n = mb.drain(|m| {
                    let (p, i) = ((m >> 32) as usize, m & 0xffff_ffff);
                    assert_eq!(i, next[p], "producer {p}: out of order or duplicated");
                    next[p] += 1;
                });
                received += n as u64;
                continue;
            }
            if producers_done.load(O::Acquire) == PRODUCERS as usize && !mb.is_pending() {
                // Every push is done and its doorbell swap is visible: the
                // invariant "a message left implies the doorbell" must hold now.
                assert!(
                    mb.is_empty() && received == PRODUCERS * PER,
                    "lost wake-up: {received} received, {} queued, doorbell clear, producers done",
                    mb.len()
                );
            }
            let progress = (received, pushed.load(O::Relaxed));
            if progress != (last_progress.1, last_progress.2) {
                last_progress = (Instant::now(), progress.0, progress.1);
            }
            assert!(
                last_progress.0.elapsed() < HANG_GUARD,
                "hung: no message pushed or received for {HANG_GUARD:?}: {received} received, \
                 {} queued, doorbell clear",
                mb.len()
            );
            std::thread::yield_now();
        }
        assert_eq!(next, [PER; PRODUCERS as usize]);
    });
    assert!(mb.is_empty());
    assert_eq!(mb.pop(), None);
    let ipis = ipis.load(O::Relaxed);
    assert!(ipis >= 1 && ipis as u64 <= PRODUCERS * PER);
    eprintln!(
        "stress: {ipis} IPIs, {} full retries",
        full.load(O::Relaxed)
    );
}
