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
// Under Miri (CI's `miri` step: every access checked, about 1,000 times slower) the
// stress and ping-pong counts are cut; what is asserted is the same.
const ITERS: usize = if cfg!(miri) { 300 } else { 100_000 };

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

    // Released by another thread while the deadline waiter is waiting: acquired. The
    // waiter's deadline check never says "passed" and records that it was consulted, so
    // the release happens only once the waiter is seen waiting (no sleep, no clock).
    let held = lock.lock();
    let waiting = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let mut g = lock
                .lock_with_deadline(|| {
                    waiting.store(true, Ordering::Release);
                    false
                })
                .expect("the deadline never passes: only the release ends the wait");
            *g += 1;
        });
        wait_until("the deadline waiter is waiting", || {
            waiting.load(Ordering::Acquire)
        });
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

    // Released while the deadline waiter waits (see `deadline`).
    let held = lock.lock(holder.as_mut());
    let waiting = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let node = pin!(McsNode::new());
            let mut g = lock
                .lock_with_deadline(node, || {
                    waiting.store(true, Ordering::Release);
                    false
                })
                .expect("the deadline never passes: only the release ends the wait");
            *g += 1;
        });
        wait_until("the deadline waiter is waiting", || {
            waiting.load(Ordering::Acquire)
        });
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

/// A stress thread runs up to [`ITERS`] acquisitions, but stops after [`MIN_ITERS`] once
/// this long has passed since the start. With 4 threads on a 2-CPU machine that is busy
/// with other work too, each hand-over of a FIFO lock (ticket, MCS) to a waiter that has
/// lost its CPU waits for the scheduler (a time slice of the other load): 4 × 100,000 of
/// them took 3-4 s on an idle 2-CPU host but 190 s to well over 300 s with two CPU hogs
/// running. So the amount of stress adapts to the machine; what is asserted (never two
/// holders, no lost update: the count equals the acquisitions made) does not.
const STRESS_BUDGET: Duration = Duration::from_secs(5);

/// Acquisitions every stress thread makes whatever the time.
const MIN_ITERS: usize = if cfg!(miri) { 50 } else { 2_000 };

/// Runs `op` in one stress thread (see [`STRESS_BUDGET`]); returns how often.
fn stress_loop(start: Instant, mut op: impl FnMut()) -> usize {
    let mut n = 0;
    while n < ITERS && (n < MIN_ITERS || start.elapsed() < STRESS_BUDGET) {
        op();
        n += 1;
    }
    n
}

fn stress(name: &str, lock_and_count: impl Fn(&AtomicBool) + Sync, read: impl Fn() -> usize) {
    let inside = AtomicBool::new(false);
    let start = Instant::now();
    let made: usize = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| s.spawn(|| stress_loop(start, || lock_and_count(&inside))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(read(), made, "{name}: lost updates");
    eprintln!(
        "{name}: {made} acquisitions by {THREADS} threads in {:?}",
        start.elapsed()
    );
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
    let made: usize = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    // One node per thread, reused for every acquisition (the
                    // per-CPU pattern).
                    let mut node = pin!(McsNode::new());
                    stress_loop(start, || {
                        critical_section(&mut lock.lock(node.as_mut()), &inside);
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(lock.with(|s| s.count), made, "mcs: lost updates");
    eprintln!(
        "mcs: {made} acquisitions by {THREADS} threads in {:?}",
        start.elapsed()
    );
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

/// How long [`wait_until`] waits before calling it a hang: not a timing assumption (every
/// condition waited for is bound to come true unless the code under test is broken), only a
/// way to end a hung test with a message instead of stalling CI.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// Waits (yielding, then sleeping briefly so that a loaded machine runs the awaited
/// threads) until `cond` holds; panics after [`HANG_GUARD`] rather than hanging.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + HANG_GUARD;
    let mut polls = 0_u32;
    while !cond() {
        assert!(Instant::now() < until, "hung waiting until {what}");
        polls += 1;
        if polls < 1000 {
            thread::yield_now();
        } else {
            thread::sleep(Duration::from_micros(100));
        }
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
    use super::wait_until;
    use crate::{Park, ParkResult, ParkingMutex};
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, OnceLock};
    use std::thread;
    use std::time::{Duration, Instant};

    /// A futex on the host: a FIFO of tickets per key behind one std mutex; a parked thread
    /// sleeps on the condvar until its ticket is removed (woken) or its deadline passes.
    ///
    /// Deadlines are microseconds since the first use (real time) or, with
    /// [`StdPark::manual_clock`], instants of a virtual clock that only
    /// [`set_now`](StdPark::set_now) moves, so a test decides exactly when a deadline
    /// passes (and when a sleeping parker notices: a spurious condvar wake-up does not
    /// make it time out early). The tests observe the queue ([`waiting`](StdPark::waiting))
    /// to release a lock only once a waiter is really parked, and can hold woken threads at
    /// a gate ([`close_gate`](StdPark::close_gate)) to run something between a wake-up and
    /// the woken thread's return from `park`.
    #[derive(Default)]
    struct StdPark {
        q: Mutex<HashMap<usize, VecDeque<u64>>>,
        cv: Condvar,
        next: AtomicU64,
        /// Parks that queued (validate passed).
        parks: AtomicU64,
        epoch: OnceLock<Instant>,
        /// `Some`: the virtual clock.
        manual: Option<ManualClock>,
        /// While set, a woken parker waits before returning `Woken`.
        gate_closed: AtomicBool,
        /// Woken parkers waiting at the closed gate.
        at_gate: AtomicUsize,
    }

    impl StdPark {
        fn manual_clock() -> Self {
            StdPark {
                manual: Some(ManualClock::default()),
                ..StdPark::default()
            }
        }

        /// The time (`expired`, and the tests' deadlines).
        fn now_us(&self) -> u64 {
            match &self.manual {
                Some(c) => c.now.load(Ordering::SeqCst),
                None => self.epoch.get_or_init(Instant::now).elapsed().as_micros() as u64,
            }
        }

        /// The time as sleeping parkers see it (called under the queue lock).
        fn sleepers_now_us(&self) -> u64 {
            match &self.manual {
                Some(c) => c.seen_by_sleepers.load(Ordering::SeqCst),
                None => self.now_us(),
            }
        }

        /// Moves the virtual clock to `t`; with `wake`, parked threads see it too and
        /// time out now if their deadline passed (without, a parked thread keeps sleeping
        /// until it is woken, and only `expired` tells the new time).
        fn set_now(&self, t: u64, wake: bool) {
            let _q = self.q.lock().unwrap();
            let c = self.manual.as_ref().expect("manual clock");
            c.now.store(t, Ordering::SeqCst);
            if wake {
                c.seen_by_sleepers.store(t, Ordering::SeqCst);
                self.cv.notify_all();
            }
        }

        /// Threads parked now (queued, not yet woken or timed out).
        fn waiting(&self) -> usize {
            self.q.lock().unwrap().values().map(VecDeque::len).sum()
        }

        fn close_gate(&self) {
            self.gate_closed.store(true, Ordering::SeqCst);
        }

        fn open_gate(&self) {
            let _q = self.q.lock().unwrap();
            self.gate_closed.store(false, Ordering::SeqCst);
            self.cv.notify_all();
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
                    if self.gate_closed.load(Ordering::SeqCst) {
                        self.at_gate.fetch_add(1, Ordering::SeqCst);
                        while self.gate_closed.load(Ordering::SeqCst) {
                            q = self.cv.wait(q).unwrap();
                        }
                        self.at_gate.fetch_sub(1, Ordering::SeqCst);
                    }
                    return ParkResult::Woken;
                }
                match deadline {
                    None => q = self.cv.wait(q).unwrap(),
                    Some(d) => {
                        let now = self.sleepers_now_us();
                        if now >= d {
                            if let Some(w) = q.get_mut(&key) {
                                w.retain(|&t| t != me);
                            }
                            return ParkResult::TimedOut;
                        }
                        q = if self.manual.is_some() {
                            self.cv.wait(q).unwrap()
                        } else {
                            self.cv
                                .wait_timeout(q, Duration::from_micros(d - now))
                                .unwrap()
                                .0
                        };
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

    /// [`StdPark`]'s virtual clock.
    #[derive(Default)]
    struct ManualClock {
        now: AtomicU64,
        /// The last instant announced to sleeping parkers.
        seen_by_sleepers: AtomicU64,
    }

    type Mx<T> = ParkingMutex<T, StdPark>;

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

    /// Stress: many threads, few spins, so that (on most machines) many acquisitions park.
    /// Only exactness is asserted; whether and how often the park path runs depends on the
    /// machine's speed and load (`park_path_runs_and_no_wakeup_is_lost` forces it).
    #[test]
    fn counter_is_exact_with_parking() {
        const THREADS: usize = 8;
        const N: usize = if cfg!(miri) { 100 } else { 50_000 };
        let m = Arc::new(ParkingMutex::with_spins(0usize, StdPark::default(), 2));
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    for _ in 0..N {
                        let mut g = m.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), THREADS * N);
        assert!(!m.is_locked());
        eprintln!(
            "parking stress: {} parks",
            m.parker().parks.load(Ordering::Relaxed)
        );
    }

    /// Spawns a thread that takes `m` with `lock`, adds 1 and records that it finished.
    fn spawn_locker(m: &Arc<Mx<usize>>, done: &Arc<AtomicUsize>) -> thread::JoinHandle<()> {
        let (m, done) = (m.clone(), done.clone());
        thread::spawn(move || {
            *m.lock() += 1;
            done.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// The park path, forced, and the chain of wake-ups, step by step. The holder keeps the
    /// lock until each waiter is seen queued in the parker (it spun its budget, announced
    /// itself and went to sleep). Then each hand-over is checked on its own: a woken waiter
    /// stays in its critical section until the test lets it go (so nothing else moves), and
    /// right after its unlock it reports how many threads are still queued: one fewer, or
    /// its unlock woke nobody and the next waiter is stranded (a lost wake-up, reported as
    /// such instead of as a hang). Waiters enter in arrival order (the parker is FIFO).
    #[test]
    fn park_path_runs_and_no_wakeup_is_lost() {
        const WAITERS: usize = 3;
        for spins in [0, crate::DEFAULT_SPINS] {
            let m = Arc::new(ParkingMutex::with_spins(
                Vec::new(),
                StdPark::default(),
                spins,
            ));
            let entered = Arc::new(AtomicUsize::new(0));
            let released = Arc::new(AtomicUsize::new(0));
            let left_queued: Arc<Vec<AtomicUsize>> =
                Arc::new((0..WAITERS).map(|_| AtomicUsize::new(usize::MAX)).collect());
            let g = m.lock();
            let hs: Vec<_> = (0..WAITERS)
                .map(|id| {
                    let (m2, entered, released, left_queued) = (
                        m.clone(),
                        entered.clone(),
                        released.clone(),
                        left_queued.clone(),
                    );
                    let h = thread::spawn(move || {
                        let mut g = m2.lock();
                        g.push(id);
                        let turn = entered.fetch_add(1, Ordering::SeqCst);
                        wait_until("the test lets the holder go", || {
                            released.load(Ordering::SeqCst) > turn
                        });
                        drop(g);
                        left_queued[turn].store(m2.parker().waiting(), Ordering::SeqCst);
                    });
                    wait_until("the waiter is parked", || m.parker().waiting() == id + 1);
                    h
                })
                .collect();
            assert_eq!(m.parker().parks.load(Ordering::Relaxed), WAITERS as u64);
            drop(g);
            // The unlock dequeued the first waiter synchronously (the word said "parked").
            assert_eq!(m.parker().waiting(), WAITERS - 1, "the unlock woke nobody");
            for turn in 0..WAITERS {
                wait_until("the woken waiter holds the lock", || {
                    entered.load(Ordering::SeqCst) == turn + 1
                });
                assert_eq!(m.parker().waiting(), WAITERS - 1 - turn);
                released.store(turn + 1, Ordering::SeqCst);
                wait_until("the holder unlocked", || {
                    left_queued[turn].load(Ordering::SeqCst) != usize::MAX
                });
                assert_eq!(
                    left_queued[turn].load(Ordering::SeqCst),
                    (WAITERS - 2).saturating_sub(turn),
                    "spins {spins}: holder {turn}'s unlock did not wake the next waiter"
                );
            }
            for h in hs {
                h.join().unwrap();
            }
            assert!(!m.is_locked());
            assert_eq!(
                *m.lock(),
                (0..WAITERS).collect::<Vec<_>>(),
                "FIFO hand-over"
            );
        }
    }

    /// A `Park` that never sleeps (as the kernel's for an idle context, or out of memory):
    /// the deadline must still end the wait (found under icount, where the spin phase alone
    /// outlived a 5 ms deadline). `expired` is true from its `expire_at`-th call on, so the
    /// test needs no clock.
    struct NeverPark {
        polls: AtomicU64,
        expire_at: u64,
        parks: AtomicU64,
    }

    impl Park for NeverPark {
        fn park(&self, _: usize, _: &dyn Fn() -> bool, _: Option<u64>) -> ParkResult {
            self.parks.fetch_add(1, Ordering::Relaxed);
            ParkResult::Invalid
        }
        fn unpark_one(&self, _: usize) -> bool {
            false
        }
        fn expired(&self, _deadline: u64) -> bool {
            self.polls.fetch_add(1, Ordering::Relaxed) + 1 >= self.expire_at
        }
    }

    #[test]
    fn deadline_holds_when_park_never_sleeps() {
        // A long spin budget: the spin phase must poll the deadline and stop at it.
        let park = NeverPark {
            polls: AtomicU64::new(0),
            expire_at: 3,
            parks: AtomicU64::new(0),
        };
        let m = ParkingMutex::with_spins((), park, 10_000);
        let g = m.lock();
        assert!(m.lock_with_deadline(0).is_none());
        let polls = m.parker().polls.load(Ordering::Relaxed);
        assert!(
            polls >= 3,
            "gave up before the deadline passed ({polls} polls)"
        );
        // The spin phase stopped at the deadline; one park attempt (which did not sleep)
        // and its re-check end the call. A spin phase that ignored the deadline would park
        // (and fail to sleep) once per poll.
        assert_eq!(m.parker().parks.load(Ordering::Relaxed), 1);
        assert_eq!(polls, 4);
        drop(g);
        assert!(!m.is_locked(), "a timed-out waiter leaves no trace");
    }

    /// The same with a wall clock: never gives up before the deadline (measured on the
    /// parker's own clock, so it holds however the test thread is scheduled).
    #[test]
    fn wall_clock_deadline_holds_when_park_never_sleeps() {
        struct WallNeverPark(Instant);
        impl Park for WallNeverPark {
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
        let m = ParkingMutex::with_spins((), WallNeverPark(Instant::now()), 1_000_000);
        let _g = m.lock();
        assert!(m.lock_with_deadline(20_000).is_none());
        assert!(m.parker().0.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn deadline_times_out_while_held_then_succeeds() {
        let m = Arc::new(ParkingMutex::with_spins((), StdPark::default(), 0));
        let g = m.lock();
        let m2 = m.clone();
        let h = thread::spawn(move || {
            let d = m2.parker().now_us() + 20_000;
            m2.lock_with_deadline(d).is_none()
        });
        // Held until the waiter gave up: it cannot have succeeded.
        assert!(h.join().unwrap(), "gave up while held");
        assert_eq!(
            m.parker().waiting(),
            0,
            "a timed-out parker leaves the queue"
        );
        drop(g);
        assert!(!m.is_locked());
        let d = m.parker().now_us() + 1_000_000;
        assert!(m.lock_with_deadline(d).is_some(), "free: taken at once");
    }

    /// Holder H, then A (`lock_with_deadline(5)` on the virtual clock) and B (`lock`), each
    /// seen parked before the next starts (FIFO queue: A is woken first). Returns A's
    /// thread (whether it got the lock) and B's.
    fn holder_and_two_waiters(
        m: &Arc<Mx<usize>>,
        done: &Arc<AtomicUsize>,
    ) -> (thread::JoinHandle<bool>, thread::JoinHandle<()>) {
        let ma = m.clone();
        let a = thread::spawn(move || match ma.lock_with_deadline(5) {
            Some(mut g) => {
                *g += 1;
                true
            }
            None => false,
        });
        wait_until("A is parked", || m.parker().waiting() == 1);
        let b = spawn_locker(m, done);
        wait_until("B is parked", || m.parker().waiting() == 2);
        (a, b)
    }

    /// A times out while the lock is held: it leaves the queue and gives up; the holder's
    /// unlock must still wake B (A announced itself once more as it left).
    #[test]
    fn timed_out_waiter_leaves_others_queued_and_woken() {
        let m = Arc::new(ParkingMutex::with_spins(0usize, StdPark::manual_clock(), 0));
        let done = Arc::new(AtomicUsize::new(0));
        let g = m.lock();
        let (a, b) = holder_and_two_waiters(&m, &done);
        m.parker().set_now(5, true);
        assert!(!a.join().unwrap(), "A timed out while the lock was held");
        assert_eq!(m.parker().waiting(), 1, "B still parked");
        drop(g);
        assert_eq!(m.parker().waiting(), 0, "the unlock woke B");
        b.join().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert!(!m.is_locked());
        assert_eq!(*m.lock(), 1);
    }

    /// A is woken by the unlock after its deadline passed (the clock moved while it slept):
    /// the lock is free, so A takes it after all, and its unlock passes the wake-up on to B.
    #[test]
    fn waiter_woken_after_its_deadline_takes_the_free_lock() {
        let m = Arc::new(ParkingMutex::with_spins(0usize, StdPark::manual_clock(), 0));
        let done = Arc::new(AtomicUsize::new(0));
        let g = m.lock();
        let (a, b) = holder_and_two_waiters(&m, &done);
        m.parker().set_now(5, false);
        drop(g);
        assert!(
            a.join().unwrap(),
            "A consumed the wake-up and took the free lock"
        );
        // A's unlock (done before A's thread ended) dequeued B synchronously.
        assert_eq!(m.parker().waiting(), 0, "A's unlock woke B");
        b.join().unwrap();
        assert!(!m.is_locked());
        assert_eq!(*m.lock(), 2);
    }

    /// The race the deadline path exists for: the unlock wakes A, whose deadline has passed,
    /// and before A runs another thread takes the free lock. A gives up, but it consumed the
    /// wake-up meant to keep B going: its last swap must mark the word "parked" so that the
    /// new holder's unlock wakes B (checked right after that unlock, not by waiting for B).
    #[test]
    fn timed_out_waiter_that_consumed_the_wakeup_passes_it_on() {
        let m = Arc::new(ParkingMutex::with_spins(0usize, StdPark::manual_clock(), 0));
        let done = Arc::new(AtomicUsize::new(0));
        let g = m.lock();
        let (a, b) = holder_and_two_waiters(&m, &done);
        m.parker().set_now(5, false);
        m.parker().close_gate();
        drop(g);
        wait_until("A is woken and held at the gate", || {
            m.parker().at_gate.load(Ordering::SeqCst) == 1
        });
        assert_eq!(m.parker().waiting(), 1, "B still parked");
        let barger = m
            .try_lock()
            .expect("free: A has not returned from park yet");
        m.parker().open_gate();
        assert!(!a.join().unwrap(), "A timed out: the lock was taken");
        assert_eq!(done.load(Ordering::SeqCst), 0);
        drop(barger);
        assert_eq!(
            m.parker().waiting(),
            0,
            "the barger's unlock woke B (else B is stranded with the lock free)"
        );
        b.join().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert!(!m.is_locked());
        assert_eq!(*m.lock(), 1);
    }
}
