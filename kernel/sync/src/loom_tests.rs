//! loom model checks of the three locks (run with `RUSTFLAGS="--cfg loom"`).
//!
//! The protected counter is a `loom::cell::UnsafeCell`: loom then checks
//! that every two accesses to it are ordered by happens-before (mutual
//! exclusion *and* correct acquire/release orderings), and the final value
//! checks that no update was lost. A lost hand-off shows up as a spinning
//! thread that never finishes ("exceeded maximum number of branches").
//!
//! Models are small so the whole set runs in seconds: 2 threads × 2
//! acquisitions (unbounded for TAS/ticket, 4 preemptions for MCS), and
//! 3 threads × 2 with one preemption. Three spinning threads cannot be
//! explored without a bound: loom's scheduler is not fair, so two waiters
//! can yield to each other forever while the holder never runs again.

use core::pin::pin;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use crate::{Lock, McsLock, McsNode, RawLock, TasLock, TicketLock};

type Counter = UnsafeCell<usize>;

fn bump(counter: &Counter) {
    counter.with_mut(|p| {
        // SAFETY: the caller holds the lock around `counter`; loom reports
        // any access that is not ordered after the previous holder's.
        unsafe { *p += 1 }
    });
}

fn read(counter: &Counter) -> usize {
    // SAFETY: all threads were joined (or the lock is held): loom checks it.
    counter.with(|p| unsafe { *p })
}

fn builder(preemption_bound: Option<usize>) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = preemption_bound;
    b
}

/// `threads` threads each take the lock `iters` times (blocking `lock`).
fn raw_model<R: RawLock + Send + Sync + 'static>(
    threads: usize,
    iters: usize,
    bound: Option<usize>,
) {
    builder(bound).check(move || {
        let lock = Arc::new(Lock::<R, Counter>::new(UnsafeCell::new(0)));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                thread::spawn(move || {
                    for _ in 0..iters {
                        bump(&lock.lock());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(read(&lock.lock()), threads * iters);
        assert!(!lock.is_locked());
    });
}

/// One thread locks, the other only `try_lock`s (and counts its successes).
fn raw_try_model<R: RawLock + Send + Sync + 'static>() {
    builder(None).check(|| {
        let lock = Arc::new(Lock::<R, Counter>::new(UnsafeCell::new(0)));
        let lock2 = Arc::clone(&lock);
        let t = thread::spawn(move || lock2.try_lock().map(|g| bump(&g)).is_some());
        bump(&lock.lock());
        let won = usize::from(t.join().unwrap());
        assert_eq!(read(&lock.lock()), 1 + won);
    });
}

/// A deadline waiter racing a blocking waiter: either outcome, never both
/// inside, never a lost update.
fn raw_deadline_model<R: RawLock + Send + Sync + 'static>() {
    builder(None).check(|| {
        let lock = Arc::new(Lock::<R, Counter>::new(UnsafeCell::new(0)));
        let lock2 = Arc::clone(&lock);
        let t = thread::spawn(move || {
            let mut polls = 0;
            lock2
                .lock_with_deadline(|| {
                    polls += 1;
                    polls > 2
                })
                .map(|g| bump(&g))
                .is_some()
        });
        bump(&lock.lock());
        let won = usize::from(t.join().unwrap());
        assert_eq!(read(&lock.lock()), 1 + won);
    });
}

#[test]
fn tas_two_threads_two_iters() {
    raw_model::<TasLock>(2, 2, None);
}

#[test]
fn tas_three_threads() {
    raw_model::<TasLock>(3, 2, Some(1));
}

#[test]
fn tas_try_and_deadline() {
    raw_try_model::<TasLock>();
    raw_deadline_model::<TasLock>();
}

#[test]
fn ticket_two_threads_two_iters() {
    raw_model::<TicketLock>(2, 2, None);
}

#[test]
fn ticket_three_threads() {
    raw_model::<TicketLock>(3, 2, Some(1));
}

#[test]
fn ticket_try_and_deadline() {
    raw_try_model::<TicketLock>();
    raw_deadline_model::<TicketLock>();
}

fn mcs_model(threads: usize, iters: usize, bound: Option<usize>) {
    builder(bound).check(move || {
        let lock = Arc::new(McsLock::new(UnsafeCell::new(0)));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                thread::spawn(move || {
                    // One node per thread, reused: the per-CPU pattern.
                    let mut node = pin!(McsNode::new());
                    for _ in 0..iters {
                        bump(&lock.lock(node.as_mut()));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(lock.with(|c| read(c)), threads * iters);
        assert!(!lock.is_locked());
    });
}

#[test]
fn mcs_two_threads_two_iters() {
    // Unbounded, this model takes minutes: 4 preemptions cover every
    // interleaving of the swap / link / hand-off / freeing-CAS steps.
    mcs_model(2, 2, Some(4));
}

#[test]
fn mcs_three_threads() {
    mcs_model(3, 2, Some(1));
}

#[test]
fn mcs_try_and_deadline() {
    builder(None).check(|| {
        let lock = Arc::new(McsLock::new(UnsafeCell::new(0)));
        let lock2 = Arc::clone(&lock);
        let t = thread::spawn(move || {
            let mut node = pin!(McsNode::new());
            let tried = lock2.try_lock(node.as_mut()).map(|g| bump(&g)).is_some();
            let mut polls = 0;
            let timed = lock2
                .lock_with_deadline(node, || {
                    polls += 1;
                    polls > 2
                })
                .map(|g| bump(&g))
                .is_some();
            usize::from(tried) + usize::from(timed)
        });
        lock.with(|c| bump(c));
        let won = t.join().unwrap();
        assert_eq!(lock.with(|c| read(c)), 1 + won);
    });
}

/// A futex for loom: one loom mutex over the parked tickets, one condvar. Deadlines are
/// ignored (loom has no clock).
#[derive(Default)]
struct LoomPark {
    q: loom::sync::Mutex<(u64, Vec<(usize, u64)>)>,
    cv: loom::sync::Condvar,
}

impl crate::Park for LoomPark {
    fn park(
        &self,
        key: usize,
        validate: &dyn Fn() -> bool,
        _deadline: Option<u64>,
    ) -> crate::ParkResult {
        let mut q = self.q.lock().unwrap();
        if !validate() {
            return crate::ParkResult::Invalid;
        }
        let me = q.0;
        q.0 += 1;
        q.1.push((key, me));
        while q.1.contains(&(key, me)) {
            q = self.cv.wait(q).unwrap();
        }
        crate::ParkResult::Woken
    }

    fn expired(&self, _deadline: u64) -> bool {
        false
    }

    fn unpark_one(&self, key: usize) -> bool {
        let mut q = self.q.lock().unwrap();
        let woke = match q.1.iter().position(|&(k, _)| k == key) {
            Some(i) => {
                q.1.remove(i);
                true
            }
            None => false,
        };
        drop(q);
        if woke {
            self.cv.notify_all();
        }
        woke
    }
}

/// The blocking mutex, park path only (no spinning): mutual exclusion (loom checks the
/// counter's accesses are ordered) and no lost wake-up (every thread finishes).
fn parking_model(threads: usize, iters: usize, bound: Option<usize>) {
    builder(bound).check(move || {
        let m = Arc::new(crate::ParkingMutex::with_spins((), LoomPark::default(), 0));
        let counter = Arc::new(UnsafeCell::new(0usize));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (m, counter) = (Arc::clone(&m), Arc::clone(&counter));
                thread::spawn(move || {
                    for _ in 0..iters {
                        let _g = m.lock();
                        bump(&counter);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let _g = m.lock();
        assert_eq!(read(&counter), threads * iters);
    });
}

#[test]
fn parking_mutex_two_threads() {
    parking_model(2, 2, None);
}

#[test]
fn parking_mutex_three_threads_bounded() {
    parking_model(3, 1, Some(2));
}
