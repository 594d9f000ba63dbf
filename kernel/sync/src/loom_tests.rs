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
//!
//! The parking mutex is checked on its park path (2 and 3 threads) and on its deadline
//! path: a timed-out waiter next to a waiter without deadline and a holder that barges
//! back in, with a timer thread that makes the deadline pass at any point (preemptions
//! bounded to 3, resp. 2 with a spin phase: about 10 s; 4 takes minutes).

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

/// A futex for loom: one loom mutex over the parked tickets, one condvar. Its clock is a
/// timer that fires once ([`LoomPark::fire`], called by a "timer" thread of the model):
/// every deadline has passed from then on, and parkers with a deadline wake up and time
/// out. Loom explores the firing at every point relative to the other threads' steps.
#[derive(Default)]
struct LoomPark {
    q: loom::sync::Mutex<(u64, Vec<(usize, u64)>)>,
    cv: loom::sync::Condvar,
    fired: loom::sync::atomic::AtomicBool,
}

impl LoomPark {
    /// The timer: all deadlines pass now. Under the queue lock, so a parker that checked
    /// the timer before sleeping is woken by the notification.
    fn fire(&self) {
        let _q = self.q.lock().unwrap();
        self.fired.store(true, loom::sync::atomic::Ordering::SeqCst);
        self.cv.notify_all();
    }

    fn has_fired(&self) -> bool {
        self.fired.load(loom::sync::atomic::Ordering::SeqCst)
    }

    fn queued(&self) -> usize {
        self.q.lock().unwrap().1.len()
    }
}

impl crate::Park for LoomPark {
    fn park(
        &self,
        key: usize,
        validate: &dyn Fn() -> bool,
        deadline: Option<u64>,
    ) -> crate::ParkResult {
        let mut q = self.q.lock().unwrap();
        if !validate() {
            return crate::ParkResult::Invalid;
        }
        let me = q.0;
        q.0 += 1;
        q.1.push((key, me));
        while q.1.contains(&(key, me)) {
            if deadline.is_some() && self.has_fired() {
                q.1.retain(|&t| t != (key, me));
                return crate::ParkResult::TimedOut;
            }
            q = self.cv.wait(q).unwrap();
        }
        crate::ParkResult::Woken
    }

    fn expired(&self, _deadline: u64) -> bool {
        self.has_fired()
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

/// The deadline path. The main thread holds the lock, then releases it and takes it once
/// more (so it can barge in between a wake-up and the woken thread's return); thread A
/// waits with `lock_with_deadline`, thread B with `lock` (no deadline), and a timer thread
/// makes A's deadline pass at any point. `spins` 0 goes straight to the park path, 1 also
/// polls the deadline in the spin phase. Checked in every interleaving:
/// * mutual exclusion and the hand-over orderings (loom checks the counter's accesses);
/// * no lost wake-up: B always gets the lock, whatever A consumed or left (a B parked for
///   good is a loom deadlock);
/// * A gives up (`None`) only after its deadline passed, and then it did not take the lock:
///   the counter has exactly the updates of the holders that got a guard;
/// * the mutex ends unlocked, with nobody left in the parker's queue.
fn parking_deadline_model(spins: u32, bound: Option<usize>) {
    builder(bound).check(move || {
        let m = Arc::new(crate::ParkingMutex::with_spins(
            UnsafeCell::new(0usize),
            LoomPark::default(),
            spins,
        ));
        let g = m.lock();
        let ma = Arc::clone(&m);
        let a = thread::spawn(move || match ma.lock_with_deadline(0) {
            Some(g) => {
                bump(&g);
                true
            }
            None => {
                assert!(ma.parker().has_fired(), "gave up before the deadline");
                false
            }
        });
        let mb = Arc::clone(&m);
        let b = thread::spawn(move || bump(&mb.lock()));
        let mt = Arc::clone(&m);
        let timer = thread::spawn(move || mt.parker().fire());
        bump(&g);
        drop(g);
        bump(&m.lock());
        let a_won = a.join().unwrap();
        b.join().unwrap();
        timer.join().unwrap();
        assert!(!m.is_locked(), "the mutex ends unlocked");
        assert_eq!(m.parker().queued(), 0, "nobody left parked");
        let g = m.try_lock().expect("free");
        assert_eq!(read(&g), 3 + usize::from(a_won));
    });
}

#[test]
fn parking_mutex_deadline_park_path() {
    parking_deadline_model(0, Some(3));
}

#[test]
fn parking_mutex_deadline_spin_then_park() {
    parking_deadline_model(1, Some(2));
}

/// The byte ring: one producer makes three pushes into a 2-byte ring (1, 2 and 1 numbered
/// bytes, as much of each as fits; the first and last through `push_with`, the fast path,
/// the last one reloading `tail`, the middle one through `spare` and `commit`) while one
/// consumer makes three drains; then the main thread drains the rest. Under every
/// interleaving of the index loads and stores, what comes out is exactly what the pushes
/// reported as taken, in order: a producer that reused space before the consumer freed it
/// (or a consumer that read past the published head) would hand over a wrong or missing
/// byte here. The bytes' shadow cells (`RingState::shadow`) make loom check the orderings
/// too: each `Release`/`Acquire` of `ring.rs` on these paths made `Relaxed` alone is a
/// causality violation here (checked by mutation, 2026-12-06; until then the buffer was
/// plain memory to loom and all of them made `Relaxed` at once passed). No thread spins,
/// so the model is small.
#[test]
fn byte_ring_one_producer_one_consumer() {
    use crate::ring::{RingState, split};
    builder(Some(3)).check(|| {
        let state: &'static mut RingState = Box::leak(Box::new(RingState::new()));
        let buf: &'static mut [u8] = Box::leak(vec![0u8; 2].into_boxed_slice());
        let (mut p, mut c) = split(state, buf).expect("power of two");
        let t = thread::spawn(move || {
            let mut next = 0u8;
            for (k, n) in [1u8, 2, 1].into_iter().enumerate() {
                let chunk: Vec<u8> = (next..next + n).collect();
                next += if k == 1 {
                    p.push(&chunk) as u8
                } else {
                    let fill = |d: &mut [u8]| {
                        d.copy_from_slice(&chunk);
                        Ok::<(), ()>(())
                    };
                    match p.push_with(chunk.len(), fill) {
                        Some(Ok(())) => n,
                        _ => 0,
                    }
                };
            }
            next
        });
        let mut got = Vec::new();
        let mut drain = |c: &mut crate::ring::Consumer<'_>| {
            let (a, b) = c.readable();
            let n = a.len() + b.len();
            got.extend(a.iter().chain(b).copied());
            c.consume(n);
        };
        for _ in 0..3 {
            drain(&mut c);
        }
        let pushed = t.join().unwrap();
        drain(&mut c);
        assert!(c.is_empty());
        assert_eq!(
            got,
            (0..pushed).collect::<Vec<u8>>(),
            "out of order, lost or corrupt"
        );
    });
}
