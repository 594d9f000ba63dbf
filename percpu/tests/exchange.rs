//! Threaded host stress of the per-CPU magazines and their exchange with a global depot, the
//! same code the kernel allocator runs (`cache::alloc_or_refill` / `free_or_drain`): every
//! thread has its own GS block (a "CPU"), objects move between threads and are freed on
//! another "CPU" than the one that allocated them, the depot is small enough to run dry.
//! Checked: no object is ever handed out twice, none is lost (the depot holds the whole
//! universe again at the end).
//!
//! How often the random phase refills, drains or finds the depot dry depends on how the
//! threads happen to be scheduled (one thread running alone piles objects up in the next
//! one's channel; four running together keep few in flight), so those paths are forced in
//! a second, choreographed phase: once every thread has returned everything (the depot holds
//! the whole universe), all threads grab objects of each kind concurrently until the depot
//! is dry, then free them all. Whatever the interleaving, that phase refills from the depot
//! (every object leaves it through a refill), finds it dry (every thread's last attempt),
//! drains full magazines back (the 4 magazines cannot hold all objects), and the grabs add
//! up to exactly the universe.
#![cfg(target_os = "linux")]

use exo_percpu::cache::{self, BATCH, Depot, PAGES, SLOTS};
use exo_percpu::{CpuId, PerCpu, PreemptGuard};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Barrier, Mutex};

const THREADS: usize = 4;
const KINDS: [usize; 3] = [0, 5, PAGES];
const PER_KIND: usize = 600;
const OPS: usize = 40_000;

struct TestDepot {
    free: Vec<Mutex<Vec<usize>>>,
    /// Takes that handed out at least one entry.
    takes: AtomicUsize,
    /// Gives of at least one entry.
    gives: AtomicUsize,
    /// Takes that found the depot empty.
    dry: AtomicUsize,
}

impl Depot for TestDepot {
    fn take(&self, m: usize, out: &mut [usize]) -> usize {
        let mut f = self.free[m].lock().unwrap();
        let n = out.len().min(f.len());
        for o in &mut out[..n] {
            *o = f.pop().unwrap();
        }
        let counter = if n == 0 { &self.dry } else { &self.takes };
        counter.fetch_add(1, Ordering::Relaxed);
        n
    }
    fn give(&self, m: usize, entries: &[usize]) {
        if !entries.is_empty() {
            self.gives.fetch_add(1, Ordering::Relaxed);
        }
        self.free[m].lock().unwrap().extend_from_slice(entries);
    }
}

/// Depot counters at one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    takes: usize,
    gives: usize,
    dry: usize,
}

impl TestDepot {
    fn counts(&self) -> Counts {
        Counts {
            takes: self.takes.load(Ordering::SeqCst),
            gives: self.gives.load(Ordering::SeqCst),
            dry: self.dry.load(Ordering::SeqCst),
        }
    }
}

/// Object ids are encoded in the address: kind slot * 2^20 + (id + 1) * 64 (never 0).
fn addr(kind_slot: usize, id: usize) -> usize {
    (kind_slot << 20) + (id + 1) * 64
}
fn decode(a: usize) -> (usize, usize) {
    (a >> 20, (a & 0xF_FFFF) / 64 - 1)
}

struct Shared {
    depot: TestDepot,
    owned: Vec<AtomicU8>,
    violations: AtomicUsize,
    /// Depot counters when the choreographed phase starts (set by one thread while all
    /// wait at a barrier).
    before_grab: Mutex<Option<Counts>>,
}

impl Shared {
    fn claim(&self, a: usize) {
        let (k, id) = decode(a);
        if self.owned[k * PER_KIND + id].swap(1, Ordering::AcqRel) != 0 {
            self.violations.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn release(&self, a: usize) {
        let (k, id) = decode(a);
        if self.owned[k * PER_KIND + id].swap(0, Ordering::AcqRel) != 1 {
            self.violations.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a worker reports: its largest magazine length, and how many objects of each kind
/// it grabbed in the choreographed phase.
struct Report {
    max_len: usize,
    grabbed: [usize; KINDS.len()],
}

fn worker(
    t: usize,
    sh: &Shared,
    tx: Sender<(usize, usize)>,
    rx: Receiver<(usize, usize)>,
    bar: &Barrier,
) -> Report {
    let block: &'static mut PerCpu<()> =
        Box::leak(Box::new(PerCpu::new(CpuId(t as u32), t as u32, 0, ())));
    exo_percpu::host::install_for_thread(block).expect("arch_prctl(ARCH_SET_GS)");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut held: Vec<(usize, usize)> = Vec::new();
    let mut max_len = 0;
    for _ in 0..OPS {
        // Frees sent to us by other threads: the cross-CPU free path.
        while let Ok((m, a)) = rx.try_recv() {
            sh.release(a);
            cache::free_or_drain(&sh.depot, m, a);
        }
        let r = next();
        let ks = (r % KINDS.len() as u64) as usize;
        let m = KINDS[ks];
        if r & 0x300 != 0 || held.is_empty() {
            if let Some(a) = cache::alloc_or_refill(&sh.depot, m) {
                assert_eq!(decode(a).0, ks, "object of another kind handed out");
                sh.claim(a);
                held.push((m, a));
            }
        } else {
            let i = (next() as usize) % held.len();
            let (m, a) = held.swap_remove(i);
            if next() % 3 == 0 {
                tx.send((m, a)).unwrap(); // freed on the next thread
            } else {
                sh.release(a);
                cache::free_or_drain(&sh.depot, m, a);
            }
        }
        if held.len() > 400 {
            for (m, a) in held.drain(..200) {
                sh.release(a);
                cache::free_or_drain(&sh.depot, m, a);
            }
        }
        let g = PreemptGuard::new();
        for &k in &KINDS {
            max_len = max_len.max(cache::len(&g, k));
        }
    }
    drop(tx);
    for (m, a) in held.drain(..) {
        sh.release(a);
        cache::free_or_drain(&sh.depot, m, a);
    }
    bar.wait(); // every thread stopped sending
    while let Ok((m, a)) = rx.recv() {
        sh.release(a);
        cache::free_or_drain(&sh.depot, m, a);
    }
    for &k in &KINDS {
        cache::drain_all(&sh.depot, k);
        let g = PreemptGuard::new();
        assert_eq!(cache::len(&g, k), 0);
    }

    // Choreographed phase. After this barrier every thread has returned everything: the
    // depot holds the whole universe and every magazine is empty.
    if bar.wait().is_leader() {
        *sh.before_grab.lock().unwrap() = Some(sh.depot.counts());
    }
    bar.wait(); // the counters are recorded before anyone grabs
    let mut grabbed = [0; KINDS.len()];
    let mut hoard = Vec::new();
    for (ks, &m) in KINDS.iter().enumerate() {
        // Nobody frees during the grab, so this ends once the universe is handed out.
        while let Some(a) = cache::alloc_or_refill(&sh.depot, m) {
            assert_eq!(decode(a).0, ks, "object of another kind handed out");
            sh.claim(a);
            hoard.push((m, a));
            grabbed[ks] += 1;
        }
    }
    bar.wait(); // every thread saw the depot dry for every kind
    for (m, a) in hoard {
        sh.release(a);
        cache::free_or_drain(&sh.depot, m, a);
    }
    for &k in &KINDS {
        cache::drain_all(&sh.depot, k);
    }
    assert!(
        exo_percpu::preemptible(),
        "leaf byte or preempt count left set"
    );
    Report { max_len, grabbed }
}

#[test]
fn threads_exchange_with_depot_and_free_across_cpus() {
    let depot = TestDepot {
        free: (0..=PAGES)
            .map(|m| {
                let ks = KINDS.iter().position(|&k| k == m);
                Mutex::new(ks.map_or(Vec::new(), |ks| {
                    (0..PER_KIND).map(|id| addr(ks, id)).collect()
                }))
            })
            .collect(),
        takes: AtomicUsize::new(0),
        gives: AtomicUsize::new(0),
        dry: AtomicUsize::new(0),
    };
    let sh = Shared {
        depot,
        owned: (0..KINDS.len() * PER_KIND)
            .map(|_| AtomicU8::new(0))
            .collect(),
        violations: AtomicUsize::new(0),
        before_grab: Mutex::new(None),
    };
    let bar = Barrier::new(THREADS);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| channel()).unzip();
    let reports: Vec<Report> = std::thread::scope(|s| {
        let hs: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(t, rx)| {
                let tx = txs[(t + 1) % THREADS].clone();
                let (sh, bar) = (&sh, &bar);
                s.spawn(move || worker(t, sh, tx, rx, bar))
            })
            .collect();
        drop(txs);
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        sh.violations.load(Ordering::Relaxed),
        0,
        "double hand-out or bad free"
    );
    for (ks, &m) in KINDS.iter().enumerate() {
        let mut all = sh.depot.free[m].lock().unwrap().clone();
        all.sort_unstable();
        let want: Vec<usize> = (0..PER_KIND).map(|id| addr(ks, id)).collect();
        assert_eq!(
            all, want,
            "kind {m}: depot does not hold every object exactly once"
        );
    }
    assert!(reports.iter().all(|r| r.max_len <= SLOTS));

    // The choreographed phase, whatever the interleaving: each kind's universe was handed
    // out exactly once (no double hand-out, checked by `claim`, and none held back), and
    // every object left the empty magazines through a refill of at most BATCH + 1.
    for (ks, m) in KINDS.iter().enumerate() {
        let total: usize = reports.iter().map(|r| r.grabbed[ks]).sum();
        assert_eq!(total, PER_KIND, "kind {m}: grabbed in all");
    }
    let before = sh.before_grab.lock().unwrap().expect("recorded");
    let after = sh.depot.counts();
    let kinds = KINDS.len();
    assert!(
        after.takes - before.takes >= kinds * PER_KIND.div_ceil(BATCH + 1),
        "refills: {before:?} -> {after:?}"
    );
    // Every thread's last grab of every kind found the depot dry.
    assert!(
        after.dry - before.dry >= THREADS * kinds,
        "depot ran dry: {before:?} -> {after:?}"
    );
    // Freeing the hoards: the magazines keep at most SLOTS each, the rest goes back in
    // drains of at most BATCH + 1, and drain_all returns what the magazines kept.
    assert!(
        after.gives - before.gives >= kinds * (PER_KIND - THREADS * SLOTS).div_ceil(BATCH + 1),
        "drains: {before:?} -> {after:?}"
    );
    eprintln!("random phase: {before:?}; whole run: {after:?}");
}
