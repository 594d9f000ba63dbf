//! Host tests: API behaviour, std-thread stress and ticket FIFO order.

use std::hint;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{
    Lock, McsLock, McsNode, RawLock, TasLock, TasMutex, TicketLock, TicketMutex, WithLock,
};

const THREADS: usize = 4;
const ITERS: usize = 100_000;

/// A non-atomic counter plus a "someone is inside" flag that catches two
/// holders directly (the counter catches them by lost updates).
#[derive(Default)]
struct Shared {
    count: usize,
}

fn critical_section(shared: &mut Shared, inside: &AtomicBool) {
    assert!(!inside.swap(true, Ordering::Relaxed), "two holders at once");
    // Widen the read-modify-write window so that a broken lock loses updates.
    let v = shared.count;
    hint::spin_loop();
    hint::black_box(&*shared);
    shared.count = v + 1;
    inside.store(false, Ordering::Relaxed);
}

// ---------------------------------------------------------------- basics

fn basic<R: RawLock>(lock: &Lock<R, u32>) {
    assert!(!lock.is_locked());
    {
        let mut g = lock.lock();
        *g += 1;
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none(), "try_lock must fail while held");
    }
    assert!(!lock.is_locked());
    {
        let mut g = lock.try_lock().expect("free lock");
        *g += 1;
        assert!(lock.try_lock().is_none());
    }
    assert_eq!(lock.with(|v| *v), 2);
    assert_eq!(lock.with_lock(|v| *v), 2);
}

#[test]
fn tas_basic() {
    basic(&TasMutex::new(0));
    basic(&Lock::<TasLock<1>, u32>::new(0));
}

#[test]
fn ticket_basic() {
    basic(&TicketMutex::new(0));
}

#[test]
fn mcs_basic() {
    let lock = McsLock::new(0_u32);
    let mut node = pin!(McsNode::new());
    let mut other = pin!(McsNode::new());
    assert!(!lock.is_locked());
    {
        let mut g = lock.lock(node.as_mut());
        *g += 1;
        assert!(lock.is_locked());
        assert!(
            lock.try_lock(other.as_mut()).is_none(),
            "try_lock must fail while held"
        );
        assert!(
            !other.is_queued(),
            "a failed try_lock must release its node"
        );
    }
    assert!(!lock.is_locked());
    assert!(!node.is_queued());
    {
        // The same node can be reused once its guard is gone.
        let mut g = lock.try_lock(node.as_mut()).expect("free lock");
        *g += 1;
        assert!(lock.try_lock(other.as_mut()).is_none());
    }
    assert_eq!(lock.with(|v| *v), 2);
    assert_eq!(lock.with_lock(|v| *v), 2);
    let unit: McsLock = McsLock::default();
    drop(unit.lock(node.as_mut()));
}

#[test]
fn into_inner_get_mut_and_static_init() {
    static TAS: TasMutex<u64> = Lock::new(1);
    static TICKET: TicketMutex<u64> = Lock::new(2);
    static MCS: McsLock<u64> = McsLock::new(3);
    *TAS.lock() += 10;
    *TICKET.lock() += 10;
    MCS.with(|v| *v += 10);
    assert_eq!(
        (*TAS.lock(), *TICKET.lock(), MCS.with(|v| *v)),
        (11, 12, 13)
    );

    let mut l = TicketMutex::new(vec![1]);
    l.get_mut().push(2);
    assert_eq!(l.into_inner(), [1, 2]);
    let mut m = McsLock::new(5);
    *m.get_mut() += 1;
    assert_eq!(m.into_inner(), 6);
}

#[test]
fn ticket_numbers_wrap() {
    let lock = Lock::<TicketLock, u8>::new(0);
    for _ in 0..3 {
        let t = lock.raw().lock();
        // SAFETY: `t` was just acquired from this lock.
        unsafe { lock.raw().unlock(t) };
    }
    let t = lock.raw().try_lock().expect("free");
    assert_eq!(t.number(), 3);
    // SAFETY: `t` was just acquired from this lock.
    unsafe { lock.raw().unlock(t) };

    let wrapping = TicketLock::starting_at(u32::MAX - 1);
    for expected in [u32::MAX - 1, u32::MAX, 0, 1] {
        let t = wrapping.lock();
        assert_eq!(t.number(), expected);
        assert!(wrapping.is_locked() && wrapping.try_lock().is_none());
        // SAFETY: `t` was just acquired from `wrapping`.
        unsafe { wrapping.unlock(t) };
        assert!(!wrapping.is_locked());
    }
}

// ------------------------------------------------------------- deadlines

/// A deadline check that passes after `n` calls, counting them.
fn after_calls(n: usize, calls: &AtomicUsize) -> impl FnMut() -> bool + '_ {
    move || calls.fetch_add(1, Ordering::Relaxed) + 1 >= n
}

fn deadline<R: RawLock + Sync>(lock: &Lock<R, u32>) {
    // Free: acquired at once, deadline never consulted.
    let calls = AtomicUsize::new(0);
    drop(
        lock.lock_with_deadline(after_calls(1, &calls))
            .expect("free lock"),
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);

    // Held: gives up exactly when the check first says the deadline passed.
    let held = lock.lock();
    let calls = AtomicUsize::new(0);
    assert!(lock.lock_with_deadline(after_calls(50, &calls)).is_none());
    assert_eq!(calls.load(Ordering::Relaxed), 50);

    // Held, wall-clock deadline.
    let start = Instant::now();
    let until = start + Duration::from_millis(20);
    assert!(
        lock.lock_with_deadline(|| Instant::now() >= until)
            .is_none()
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    drop(held);
    assert!(
        !lock.is_locked(),
        "a failed deadline wait must leave no trace"
    );

    // Released by another thread well before the deadline: acquired.
    let held = lock.lock();
    thread::scope(|s| {
        s.spawn(|| {
            let until = Instant::now() + Duration::from_secs(60);
            let mut g = lock
                .lock_with_deadline(|| Instant::now() >= until)
                .expect("released");
            *g += 1;
        });
        thread::sleep(Duration::from_millis(10));
        drop(held);
    });
    assert_eq!(lock.with(|v| *v), 1);
}

#[test]
fn tas_deadline() {
    deadline(&TasMutex::new(0));
}

#[test]
fn ticket_deadline() {
    deadline(&TicketMutex::new(0));
}

#[test]
fn mcs_deadline() {
    let lock = McsLock::new(0_u32);
    let mut node = pin!(McsNode::new());
    let calls = AtomicUsize::new(0);
    drop(
        lock.lock_with_deadline(node.as_mut(), after_calls(1, &calls))
            .expect("free lock"),
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);

    let mut holder = pin!(McsNode::new());
    let held = lock.lock(holder.as_mut());
    let calls = AtomicUsize::new(0);
    assert!(
        lock.lock_with_deadline(node.as_mut(), after_calls(50, &calls))
            .is_none()
    );
    assert_eq!(calls.load(Ordering::Relaxed), 50);
    assert!(
        !node.is_queued(),
        "a failed deadline wait must release its node"
    );
    let start = Instant::now();
    let until = start + Duration::from_millis(20);
    assert!(
        lock.lock_with_deadline(node.as_mut(), || Instant::now() >= until)
            .is_none()
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    drop(held);

    let held = lock.lock(holder.as_mut());
    thread::scope(|s| {
        s.spawn(|| {
            let node = pin!(McsNode::new());
            let until = Instant::now() + Duration::from_secs(60);
            let mut g = lock
                .lock_with_deadline(node, || Instant::now() >= until)
                .expect("released");
            *g += 1;
        });
        thread::sleep(Duration::from_millis(10));
        drop(held);
    });
    assert_eq!(lock.with(|v| *v), 1);
    assert!(!lock.is_locked());
}

// ----------------------------------------------------- leaked MCS guards

#[test]
fn mcs_deadline_check_may_panic() {
    let lock = McsLock::new(());
    let mut holder = pin!(McsNode::new());
    let mut node = pin!(McsNode::new());
    let held = lock.lock(holder.as_mut());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = lock.lock_with_deadline(node.as_mut(), || panic!("deadline check"));
    }));
    assert!(r.is_err());
    // The waiter never queued: its node is free, dropping it is fine.
    assert!(!node.is_queued());
    drop(held);
    drop(lock.lock(node.as_mut()));
}

/// A node that is never freed, so that leaking its guard is harmless here.
fn leaked_node() -> Pin<&'static mut McsNode> {
    Pin::static_mut(Box::leak(Box::new(McsNode::new())))
}

#[test]
#[should_panic(expected = "reused while still queued")]
fn mcs_node_reuse_after_leaked_guard_panics() {
    let lock: &'static McsLock = Box::leak(Box::new(McsLock::new(())));
    let mut node = leaked_node();
    core::mem::forget(lock.lock(node.as_mut()));
    assert!(node.is_queued());
    // The node is still the queue's tail: using it again must be refused
    // before the queue is touched.
    let other: &'static McsLock = Box::leak(Box::new(McsLock::new(())));
    let _ = other.try_lock(node.as_mut());
}

// ---------------------------------------------------------------- stress

fn stress(name: &str, lock_and_count: impl Fn(&AtomicBool) + Sync, read: impl Fn() -> usize) {
    let inside = AtomicBool::new(false);
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..ITERS {
                    lock_and_count(&inside);
                }
            });
        }
    });
    assert_eq!(read(), THREADS * ITERS, "{name}: lost updates");
    eprintln!("{name}: {THREADS}×{ITERS} in {:?}", start.elapsed());
}

fn stress_raw<R: RawLock + Sync>(name: &str, lock: &Lock<R, Shared>) {
    stress(
        name,
        |inside| critical_section(&mut lock.lock(), inside),
        || lock.with(|s| s.count),
    );
}

#[test]
fn tas_stress() {
    stress_raw("tas", &TasMutex::default());
    stress_raw("tas<1>", &Lock::<TasLock<1>, Shared>::default());
}

#[test]
fn ticket_stress() {
    stress_raw("ticket", &TicketMutex::default());
}

#[test]
fn mcs_stress() {
    let lock = McsLock::new(Shared::default());
    let inside = AtomicBool::new(false);
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                // One node per thread, reused for every acquisition (the
                // per-CPU pattern).
                let mut node = pin!(McsNode::new());
                for _ in 0..ITERS {
                    critical_section(&mut lock.lock(node.as_mut()), &inside);
                }
            });
        }
    });
    assert_eq!(lock.with(|s| s.count), THREADS * ITERS, "mcs: lost updates");
    eprintln!("mcs: {THREADS}×{ITERS} in {:?}", start.elapsed());
}

#[test]
fn mcs_stress_stack_nodes() {
    let lock = McsLock::new(Shared::default());
    stress(
        "mcs-with",
        |inside| lock.with(|s| critical_section(s, inside)),
        || lock.with(|s| s.count),
    );
}

/// Mixed acquisition kinds on one lock: queued, try and deadline waiters.
fn mixed<L: Sync>(lock: &L, acquire: impl Fn(&L, usize, &AtomicBool) -> bool + Sync) -> usize {
    let inside = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (inside, done, acquire) = (&inside, &done, &acquire);
            s.spawn(move || {
                for i in 0..ITERS / 4 {
                    if acquire(lock, t * ITERS + i, inside) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    done.into_inner()
}

fn short_deadline() -> impl FnMut() -> bool {
    let mut n = 0_u32;
    move || {
        n += 1;
        n > 1000
    }
}

#[test]
fn mixed_acquisitions_stress() {
    fn raw<R: RawLock + Sync>(lock: &Lock<R, Shared>) {
        let done = mixed(lock, |lock, i, inside| match i % 3 {
            0 => {
                critical_section(&mut lock.lock(), inside);
                true
            }
            1 => lock
                .try_lock()
                .map(|mut g| critical_section(&mut g, inside))
                .is_some(),
            _ => lock
                .lock_with_deadline(short_deadline())
                .map(|mut g| critical_section(&mut g, inside))
                .is_some(),
        });
        assert_eq!(lock.with(|s| s.count), done);
    }
    raw(&TasMutex::default());
    raw(&TicketMutex::default());

    let mcs = McsLock::new(Shared::default());
    let done = mixed(&mcs, |lock, i, inside| {
        let node = pin!(McsNode::new());
        match i % 3 {
            0 => {
                critical_section(&mut lock.lock(node), inside);
                true
            }
            1 => lock
                .try_lock(node)
                .map(|mut g| critical_section(&mut g, inside))
                .is_some(),
            _ => lock
                .lock_with_deadline(node, short_deadline())
                .map(|mut g| critical_section(&mut g, inside))
                .is_some(),
        }
    });
    assert_eq!(mcs.with(|s| s.count), done);
}

// ------------------------------------------------------------------- FIFO

/// Waits (yielding) until `cond` holds; fails the test after 30 s rather
/// than hanging.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        thread::yield_now();
    }
}

/// Threads queue one after the other (each is started only once the
/// previous one is seen waiting), then the main thread releases: they must
/// enter in queueing order.
#[test]
fn ticket_lock_is_fifo() {
    const WAITERS: usize = 6;
    let lock = Arc::new(TicketMutex::new(Vec::new()));
    let held = lock.lock();
    let handles: Vec<_> = (0..WAITERS)
        .map(|id| {
            let lock2 = Arc::clone(&lock);
            let h = thread::spawn(move || lock2.lock().push(id));
            // Barrier sequence: thread `id` holds ticket `id + 1` before
            // thread `id + 1` is created.
            wait_until("the thread took its ticket", || {
                lock.raw().waiters() as usize == id + 1
            });
            h
        })
        .collect();
    drop(held);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*lock.lock(), (0..WAITERS).collect::<Vec<_>>());
}

#[test]
fn mcs_lock_is_fifo() {
    const WAITERS: usize = 6;
    let lock = Arc::new(McsLock::new(Vec::new()));
    let mut node = pin!(McsNode::new());
    let held = lock.lock(node.as_mut());
    let handles: Vec<_> = (0..WAITERS)
        .map(|id| {
            let tail_before = lock.tail();
            let lock2 = Arc::clone(&lock);
            let h = thread::spawn(move || {
                let node = pin!(McsNode::new());
                lock2.lock(node).push(id);
            });
            // Barrier sequence: thread `id` is the queue's tail before
            // thread `id + 1` is created.
            wait_until("the thread queued", || lock.tail() != tail_before);
            h
        })
        .collect();
    drop(held);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(lock.with(|v| v.clone()), (0..WAITERS).collect::<Vec<_>>());
}

mod parking {
    use crate::{Park, ParkResult, ParkingMutex};
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// A futex on the host: a FIFO of tickets per key behind one std mutex; a parked thread
    /// sleeps on the condvar until its ticket is removed (woken) or its deadline passes.
    /// Deadlines are microseconds since `epoch`.
    #[derive(Default)]
    struct StdPark {
        q: Mutex<HashMap<usize, VecDeque<u64>>>,
        cv: Condvar,
        next: AtomicU64,
        parks: AtomicU64,
        epoch: std::sync::OnceLock<Instant>,
    }

    impl StdPark {
        fn now_us(&self) -> u64 {
            self.epoch.get_or_init(Instant::now).elapsed().as_micros() as u64
        }
    }

    impl Park for StdPark {
        fn park(
            &self,
            key: usize,
            validate: &dyn Fn() -> bool,
            deadline: Option<u64>,
        ) -> ParkResult {
            let mut q = self.q.lock().unwrap();
            if !validate() {
                return ParkResult::Invalid;
            }
            self.parks.fetch_add(1, Ordering::Relaxed);
            let me = self.next.fetch_add(1, Ordering::Relaxed);
            q.entry(key).or_default().push_back(me);
            loop {
                if !q.get(&key).is_some_and(|w| w.contains(&me)) {
                    return ParkResult::Woken;
                }
                match deadline {
                    None => q = self.cv.wait(q).unwrap(),
                    Some(d) => {
                        let now = self.now_us();
                        if now >= d {
                            if let Some(w) = q.get_mut(&key) {
                                w.retain(|&t| t != me);
                            }
                            return ParkResult::TimedOut;
                        }
                        q = self
                            .cv
                            .wait_timeout(q, Duration::from_micros(d - now))
                            .unwrap()
                            .0;
                    }
                }
            }
        }

        fn expired(&self, deadline: u64) -> bool {
            self.now_us() >= deadline
        }

        fn unpark_one(&self, key: usize) -> bool {
            let mut q = self.q.lock().unwrap();
            let woke = q.get_mut(&key).and_then(|w| w.pop_front()).is_some();
            drop(q);
            if woke {
                self.cv.notify_all();
            }
            woke
        }
    }

    #[test]
    fn uncontended_lock_unlock_and_try_lock() {
        let m = ParkingMutex::new(5u32, StdPark::default());
        {
            let mut g = m.lock();
            *g += 1;
            assert!(m.try_lock().is_none(), "held");
            assert!(m.is_locked());
        }
        assert!(!m.is_locked());
        assert_eq!(*m.try_lock().expect("free"), 6);
        assert_eq!(m.into_inner(), 6);
    }

    #[test]
    fn counter_is_exact_with_parking() {
        const THREADS: usize = 8;
        const N: usize = 50_000;
        // Few spins: force the park path often.
        let m = Arc::new(ParkingMutex::with_spins(0usize, StdPark::default(), 2));
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..N {
                        let mut g = m.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        for h in hs {
            h.join().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no lost wake-up stalls"
        );
        let parks = m.parker().parks.load(Ordering::Relaxed);
        assert_eq!(*m.lock(), THREADS * N);
        assert!(parks > 0, "the park path ran");
    }

    /// A `Park` that never sleeps (as the kernel's for an idle context, or out of memory):
    /// the deadline must still end the wait (found under icount, where the spin phase alone
    /// outlived a 5 ms deadline).
    struct NeverPark(Instant);

    impl Park for NeverPark {
        fn park(&self, _: usize, _: &dyn Fn() -> bool, _: Option<u64>) -> ParkResult {
            ParkResult::Invalid
        }
        fn unpark_one(&self, _: usize) -> bool {
            false
        }
        fn expired(&self, deadline: u64) -> bool {
            self.0.elapsed().as_micros() as u64 >= deadline
        }
    }

    #[test]
    fn deadline_holds_when_park_never_sleeps() {
        let m = ParkingMutex::with_spins((), NeverPark(Instant::now()), 1_000_000);
        let _g = m.lock();
        let t0 = Instant::now();
        assert!(m.lock_with_deadline(20_000).is_none());
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(19), "gave up early: {took:?}");
        assert!(took < Duration::from_secs(10), "deadline ignored: {took:?}");
    }

    #[test]
    fn deadline_times_out_while_held_then_succeeds() {
        let m = Arc::new(ParkingMutex::with_spins((), StdPark::default(), 0));
        let g = m.lock();
        let m2 = m.clone();
        let h = std::thread::spawn(move || {
            let d = m2.parker().now_us() + 20_000;
            m2.lock_with_deadline(d).is_none()
        });
        assert!(h.join().unwrap(), "gave up while held");
        drop(g);
        let d = m.parker().now_us() + 1_000_000;
        assert!(m.lock_with_deadline(d).is_some());
        // A time-out must not strand the others: a holder, one waiter that times out, one
        // that waits forever; the forever one must get the lock after the unlock.
        let g = m.lock();
        let (ma, mb) = (m.clone(), m.clone());
        let a = std::thread::spawn(move || {
            let d = ma.parker().now_us() + 10_000;
            let _ = ma.lock_with_deadline(d);
        });
        let b = std::thread::spawn(move || drop(mb.lock()));
        a.join().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        b.join().unwrap();
    }
}
