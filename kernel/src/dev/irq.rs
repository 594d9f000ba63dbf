//! Device interrupts: the `VEC_DEVICE_COUNT` vectors of `smp::cpus`, handed out one per
//! queue pair, each aimed at the CPU that owns the pair (MSI-X). An interrupt counts itself
//! and wakes the thread that waits on its vector, if one does (NAPI-like: the driver polls
//! while there is work, asks for an interrupt only when idle, and sleeps until it comes).

use crate::sched::{self, Tid};
use crate::smp::cpus::{VEC_DEVICE_BASE, VEC_DEVICE_COUNT};
use core::sync::atomic::{AtomicU64, Ordering};

const N: usize = VEC_DEVICE_COUNT as usize;

/// Vectors in use (bit `i`: `VEC_DEVICE_BASE + i`).
static USED: AtomicU64 = AtomicU64::new(0);
/// Interrupts per vector.
static COUNT: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
/// The waiting thread's raw `Tid` + 1 per vector (0: nobody waits).
static WAITER: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];

fn handler(i: u8) {
    let i = usize::from(i) % N;
    COUNT[i].fetch_add(1, Ordering::AcqRel);
    let w = WAITER[i].load(Ordering::Acquire);
    if w != 0 {
        sched::wake(Tid::from_raw(w - 1));
    }
}

/// Installs the handler (boot calls this once).
pub fn init() {
    crate::trap::set_device_irq_hook(handler);
}

/// Device vectors handed out now (tests: a shutdown gives its own back).
pub fn in_use() -> u32 {
    USED.load(Ordering::Acquire).count_ones()
}

/// Whether some thread waits on a device vector (tests: the waiter is registered).
pub fn any_waiter() -> bool {
    WAITER.iter().any(|w| w.load(Ordering::Acquire) != 0)
}

/// A device vector, owned until dropped.
#[derive(Debug)]
pub struct Vector {
    index: u8,
}

impl Vector {
    /// A free vector, or `None` when all are taken.
    pub fn alloc() -> Option<Vector> {
        let mut cur = USED.load(Ordering::Relaxed);
        loop {
            let free = !cur;
            if free == 0
                || (VEC_DEVICE_COUNT < 64 && free.trailing_zeros() >= u32::from(VEC_DEVICE_COUNT))
            {
                return None;
            }
            let i = free.trailing_zeros();
            match USED.compare_exchange_weak(
                cur,
                cur | (1 << i),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    COUNT[i as usize].store(0, Ordering::Release);
                    WAITER[i as usize].store(0, Ordering::Release);
                    return Some(Vector { index: i as u8 });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The CPU vector number.
    pub fn vector(&self) -> u8 {
        VEC_DEVICE_BASE + self.index
    }

    /// Interrupts so far.
    pub fn count(&self) -> u64 {
        COUNT[usize::from(self.index)].load(Ordering::Acquire)
    }

    /// Blocks the calling thread until the vector's count moves past `seen` or the TSC
    /// reaches `deadline`; `still_idle()` is checked after the thread is registered (an
    /// interrupt or work that came before is never missed).
    pub fn wait(&self, seen: u64, deadline: u64, still_idle: impl FnOnce() -> bool) {
        let i = usize::from(self.index);
        let Some(me) = sched::current() else { return };
        WAITER[i].store(me.raw() + 1, Ordering::Release);
        sched::block_until(deadline, || {
            COUNT[i].load(Ordering::Acquire) == seen && still_idle()
        });
        WAITER[i].store(0, Ordering::Release);
    }
}

impl Drop for Vector {
    fn drop(&mut self) {
        WAITER[usize::from(self.index)].store(0, Ordering::Release);
        USED.fetch_and(!(1 << self.index), Ordering::AcqRel);
    }
}
