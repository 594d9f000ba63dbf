//! The kernel's futex: wait queues keyed by address, for `exo_sync::ParkingMutex` (and any
//! other word-based blocking). 64 hashed buckets, each a FIFO of (address, thread) behind its
//! own spin lock taken with interrupts off; no global lock.

use crate::sched::{self, Tid};
use alloc::collections::VecDeque;
use exo_percpu::IrqGuard;
use exo_sync::{Park, ParkResult};

const BUCKETS: usize = 64;

/// Times a thread went to sleep in `park` (statistics for tests).
pub static PARKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

struct Bucket {
    q: spin::Mutex<VecDeque<(usize, Tid)>>,
}

static TABLE: [Bucket; BUCKETS] = [const {
    Bucket {
        q: spin::Mutex::new(VecDeque::new()),
    }
}; BUCKETS];

fn bucket(key: usize) -> &'static Bucket {
    // Fibonacci hashing of the word address (words are at least 4-aligned).
    &TABLE[(key >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 6)]
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
        if sched::current_is_idle() {
            return ParkResult::Invalid; // an idle context never sleeps: it spins
        }
        let b = bucket(key);
        {
            let _g = IrqGuard::new();
            let mut q = b.q.lock();
            if !validate() {
                return ParkResult::Invalid;
            }
            if q.try_reserve(1).is_err() {
                return ParkResult::Invalid; // out of memory: the caller spins and retries
            }
            q.push_back((key, me));
        }
        PARKS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let queued = || b.q.lock().iter().any(|&(k, t)| k == key && t == me);
        let timed_out = sched::block_until(deadline.unwrap_or(u64::MAX), || {
            let _g = IrqGuard::new();
            queued()
        });
        let _g = IrqGuard::new();
        let mut q = b.q.lock();
        match q.iter().position(|&(k, t)| k == key && t == me) {
            // Still queued: nobody woke us (time-out or spurious); leave the queue.
            Some(i) => {
                q.remove(i);
                if timed_out {
                    ParkResult::TimedOut
                } else {
                    ParkResult::Woken
                }
            }
            None => ParkResult::Woken,
        }
    }

    fn expired(&self, deadline: u64) -> bool {
        exo_arch::tsc::rdtsc() >= deadline
    }

    fn unpark_one(&self, key: usize) -> bool {
        let b = bucket(key);
        let t = {
            let _g = IrqGuard::new();
            let mut q = b.q.lock();
            match q.iter().position(|&(k, _)| k == key) {
                Some(i) => q.remove(i).map(|(_, t)| t),
                None => None,
            }
        };
        match t {
            Some(t) => {
                // The thread may not have blocked yet (it re-checks `queued` after marking
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
