//! The kernel's futex: wait queues keyed by address, for `exo_sync::ParkingMutex` (and any
//! other word-based blocking). 64 hashed buckets, each a FIFO of threads behind its own spin
//! lock taken with interrupts off; no global lock. The queues are intrusive: a thread's wait
//! node (key and link) lives in its control block, so parking never allocates and never
//! fails for want of memory, and "am I still queued?" is one load.

use crate::sched::{self, Tid};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use exo_percpu::IrqGuard;
use exo_sync::{Park, ParkResult};

const BUCKETS: usize = 64;
const NIL: u32 = u32::MAX;

/// Times a thread went to sleep in `park` (statistics for tests).
pub static PARKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A thread's wait node, embedded in its control block: the key it waits on (0: not queued)
/// and the next thread of its bucket's list. Written only under the bucket's lock.
#[derive(Debug)]
pub struct ParkNode {
    key: AtomicUsize,
    next: AtomicU32,
}

impl ParkNode {
    /// Not queued.
    pub const fn new() -> ParkNode {
        ParkNode {
            key: AtomicUsize::new(0),
            next: AtomicU32::new(NIL),
        }
    }
}

impl Default for ParkNode {
    fn default() -> Self {
        Self::new()
    }
}

/// A bucket: FIFO list of thread indices linked through their nodes.
struct List {
    head: u32,
    tail: u32,
}

struct Bucket {
    q: spin::Mutex<List>,
}

static TABLE: [Bucket; BUCKETS] = [const {
    Bucket {
        q: spin::Mutex::new(List {
            head: NIL,
            tail: NIL,
        }),
    }
}; BUCKETS];

fn bucket(key: usize) -> &'static Bucket {
    // Fibonacci hashing of the word address (words are at least 4-aligned).
    &TABLE[(key >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 6)]
}

impl List {
    fn push_back(&mut self, i: u32, key: usize) {
        let n = sched::park_node(i as usize);
        n.key.store(key, Ordering::Release);
        n.next.store(NIL, Ordering::Relaxed);
        if self.tail == NIL {
            self.head = i;
        } else {
            sched::park_node(self.tail as usize)
                .next
                .store(i, Ordering::Relaxed);
        }
        self.tail = i;
    }

    /// Unlinks the first thread waiting on `key` (or exactly thread `only`, if given).
    fn remove_first(&mut self, key: usize, only: Option<u32>) -> Option<u32> {
        let mut prev = NIL;
        let mut cur = self.head;
        while cur != NIL {
            let n = sched::park_node(cur as usize);
            let next = n.next.load(Ordering::Relaxed);
            if n.key.load(Ordering::Relaxed) == key && only.is_none_or(|o| o == cur) {
                if prev == NIL {
                    self.head = next;
                } else {
                    sched::park_node(prev as usize)
                        .next
                        .store(next, Ordering::Relaxed);
                }
                if self.tail == cur {
                    self.tail = prev;
                }
                n.next.store(NIL, Ordering::Relaxed);
                n.key.store(0, Ordering::Release);
                return Some(cur);
            }
            prev = cur;
            cur = next;
        }
        None
    }
}

/// Parks through the scheduler. Deadlines are TSC values.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelPark;

impl Park for KernelPark {
    fn park(&self, key: usize, validate: &dyn Fn() -> bool, deadline: Option<u64>) -> ParkResult {
        let Some(me) = sched::current() else {
            // No scheduler here (early boot): the caller spins instead.
            return ParkResult::Invalid;
        };
        if key == 0 {
            return ParkResult::Invalid;
        }
        if sched::current_is_idle() {
            // An idle context never sleeps (a CPU always has one to fall back on): it spins.
            // But it may be running a run-on-CPU job with interrupts off while the holder
            // waits in this CPU's run queue (or sleeps here): give the CPU to the runnable
            // threads first — the idle context comes back when none is left.
            sched::yield_now();
            return ParkResult::Invalid;
        }
        let i = me.index() as u32;
        let node = sched::park_node(me.index());
        let b = bucket(key);
        {
            let _g = IrqGuard::new();
            let mut q = b.q.lock();
            if !validate() {
                return ParkResult::Invalid;
            }
            q.push_back(i, key);
        }
        PARKS.fetch_add(1, Ordering::Relaxed);
        // A waker unlinks the node (key back to 0) under the bucket lock, then wakes us.
        let timed_out = sched::block_until(deadline.unwrap_or(u64::MAX), || {
            node.key.load(Ordering::Acquire) == key
        });
        if node.key.load(Ordering::Acquire) == 0 {
            return ParkResult::Woken;
        }
        let _g = IrqGuard::new();
        let mut q = b.q.lock();
        // Still queued: nobody woke us (time-out or spurious); leave the queue.
        match q.remove_first(key, Some(i)) {
            Some(_) if timed_out => ParkResult::TimedOut,
            _ => ParkResult::Woken,
        }
    }

    fn expired(&self, deadline: u64) -> bool {
        exo_arch::tsc::rdtsc() >= deadline
    }

    #[inline(always)]
    fn acquired(&self) {
        exo_percpu::held_locks_inc();
    }

    #[inline(always)]
    fn released(&self) {
        exo_percpu::held_locks_dec();
    }

    fn unpark_one(&self, key: usize) -> bool {
        let b = bucket(key);
        let t: Option<Tid> = {
            let _g = IrqGuard::new();
            let mut q = b.q.lock();
            // The id is taken under the lock: a queued thread is alive (it leaves the queue
            // under this lock before it can return, exit and be reaped).
            q.remove_first(key, None).map(|i| sched::tid_of(i as usize))
        };
        match t {
            Some(t) => {
                // The thread may not have blocked yet (it re-checks its node after marking
                // itself blocked), in which case this wake finds it running: fine, it sees it
                // is no longer queued and returns.
                sched::wake(t);
                true
            }
            None => false,
        }
    }
}

/// The kernel's blocking mutex.
pub type Mutex<T> = exo_sync::ParkingMutex<T, KernelPark>;

/// A new kernel blocking mutex.
pub const fn mutex<T>(v: T) -> Mutex<T> {
    exo_sync::ParkingMutex::new(v, KernelPark)
}
