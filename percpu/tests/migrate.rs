//! A refill whose depot runs while its thread moves to another CPU (`cache::refill_from`
//! calls the depot unguarded: in the kernel it may block, and the thread may come back on
//! another CPU whose magazine filled meanwhile). What does not fit there must go back to
//! the depot: nothing handed out twice, nothing lost. The threaded stress in
//! `exchange.rs` never reaches that branch (each of its threads keeps its block for life,
//! and a refill only starts on an empty magazine); here the depot itself moves the thread
//! by pointing its GS at a second block, already holding 50 entries (found by review,
//! 2026-12-05: the branch had no test).
#![cfg(target_os = "linux")]

use exo_percpu::cache::{self, BATCH, Depot, SLOTS};
use exo_percpu::{CpuId, PerCpu, PreemptGuard};
use std::sync::Mutex;

/// The magazine kind used (any below `MAGAZINES`).
const KIND: usize = 3;
/// Entries already in the second CPU's magazine when the thread arrives there.
const THERE: usize = 50;

/// A depot whose `take` first "migrates" the calling thread to `other`'s block.
struct MigratingDepot {
    free: Mutex<Vec<usize>>,
    other: Mutex<Option<&'static mut PerCpu<()>>>,
    given: Mutex<Vec<usize>>,
}

impl Depot for MigratingDepot {
    fn take(&self, _m: usize, out: &mut [usize]) -> usize {
        if let Some(b) = self.other.lock().unwrap().take() {
            exo_percpu::host::install_for_thread(b).unwrap();
        }
        let mut f = self.free.lock().unwrap();
        let n = out.len().min(f.len());
        for o in &mut out[..n] {
            *o = f.pop().unwrap();
        }
        n
    }
    fn give(&self, _m: usize, entries: &[usize]) {
        self.given.lock().unwrap().extend_from_slice(entries);
        self.free.lock().unwrap().extend_from_slice(entries);
    }
}

#[test]
fn a_refill_that_lands_on_a_fuller_cpu_gives_the_surplus_back() {
    std::thread::spawn(|| {
        // The second CPU's magazine is filled by a thread of its own first (its block is
        // then handed to the depot, which installs it in the test's thread).
        let b: &'static mut PerCpu<()> = Box::leak(Box::new(PerCpu::new(CpuId(1), 1, 0, ())));
        let before: Vec<usize> = (0..THERE).map(|i| 0x10_0000 + i * 64).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let filler = std::thread::spawn(move || {
            let p: *mut PerCpu<()> = b;
            exo_percpu::host::install_for_thread(b).unwrap();
            let g = PreemptGuard::new();
            assert_eq!(cache::refill(&g, KIND, &before), THERE);
            drop(g);
            tx.send(p as usize).unwrap();
        });
        let p = rx.recv().unwrap() as *mut PerCpu<()>;
        filler.join().unwrap();
        // SAFETY: the block is leaked (it lives forever) and its filler thread has ended:
        // nothing else refers to it (the first `&'static mut` was consumed by its install).
        let b: &'static mut PerCpu<()> = unsafe { &mut *p };

        let a: &'static mut PerCpu<()> = Box::leak(Box::new(PerCpu::new(CpuId(0), 0, 0, ())));
        exo_percpu::host::install_for_thread(a).unwrap();
        let universe: Vec<usize> = (0..100).map(|i| 0x20_0000 + i * 64).collect();
        let d = MigratingDepot {
            free: Mutex::new(universe),
            other: Mutex::new(Some(b)),
            given: Mutex::new(Vec::new()),
        };
        // CPU 0's magazine is empty: a miss, a refill, and the depot moves us to CPU 1.
        let got = cache::alloc_or_refill(&d, KIND).expect("the depot has entries");
        let g = PreemptGuard::new();
        let len = cache::len(&g, KIND);
        drop(g);
        assert_eq!(len, SLOTS, "CPU 1's magazine is filled up to its size");
        assert_eq!(
            d.given.lock().unwrap().len(),
            BATCH - (SLOTS - THERE),
            "what did not fit went back to the depot"
        );
        // Every entry exactly once: the depot's, the one handed out, the magazine's.
        let mut all: Vec<usize> = d.free.lock().unwrap().clone();
        all.push(got);
        let g = PreemptGuard::new();
        cache::take_all(&g, KIND, |v| all.push(v));
        drop(g);
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an entry is held twice");
        assert_eq!(n, 100 + THERE, "an entry was lost");
    })
    .join()
    .unwrap();
}
