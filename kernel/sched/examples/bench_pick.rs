//! Times `pick_next` + `enqueue` on a run queue holding 64 runnable threads.
//!
//! `cargo run -p exo-sched --release --example bench_pick`
//!
//! Each iteration picks the next thread and re-enqueues it (same priority,
//! class from its burst EMA), the steady state of a busy CPU. Reports ns per
//! pick+enqueue pair and per pick alone. Host timing with `Instant`: a rough
//! guide for the kernel's <= 100-cycle `sched.pick_next` target, not a test.

use std::hint::black_box;
use std::time::Instant;

use exo_sched::{Ema, Mailbox, Priority, Queue, RunQueue, ThreadRef, classify};

const THREADS: u32 = 64;
const ITERS: u64 = 20_000_000;

fn fill(rq: &mut RunQueue<256>) {
    for i in 0..THREADS {
        // Spread over 16 levels, a quarter of the threads hot.
        let prio = Priority::new((i % 16) as u8 * 4).unwrap();
        let class = if i % 4 == 0 {
            Queue::Hot
        } else {
            Queue::Normal
        };
        rq.enqueue(ThreadRef(i), prio, class).unwrap();
    }
}

fn main() {
    let mut rq = RunQueue::<256>::new();
    fill(&mut rq);
    let mut ema = [Ema::ZERO; THREADS as usize];
    let slice = 1_000u64;

    // Warm up.
    for _ in 0..1_000_000 {
        let t = rq.pick_next().unwrap();
        rq.enqueue(t, Priority::MAX, Queue::Normal).unwrap();
    }
    rq = RunQueue::new();
    fill(&mut rq);

    // pick_next + enqueue, with EMA classification.
    let start = Instant::now();
    for k in 0..ITERS {
        let t = black_box(&mut rq).pick_next().unwrap();
        let e = &mut ema[t.index()];
        e.update(k & 1023);
        let prio = Priority::new((t.0 % 16) as u8 * 4).unwrap();
        rq.enqueue(t, prio, classify(*e, slice)).unwrap();
    }
    let pair = start.elapsed().as_nanos() as f64 / ITERS as f64;
    assert_eq!(rq.len(), THREADS as usize);

    // pick_next alone: drain 64 threads, refill untimed.
    let rounds = ITERS / u64::from(THREADS);
    let mut picked = 0u64;
    let mut timed = 0u128;
    for _ in 0..rounds {
        let start = Instant::now();
        while let Some(t) = black_box(&mut rq).pick_next() {
            picked += u64::from(black_box(t).0 < THREADS);
        }
        timed += start.elapsed().as_nanos();
        fill(&mut rq);
    }
    let pick = timed as f64 / picked as f64;

    // Mailbox push + pop, uncontended.
    let mb = Mailbox::<ThreadRef, 256>::new();
    let start = Instant::now();
    for i in 0..ITERS {
        let _ = black_box(&mb).push(ThreadRef(i as u32)).unwrap();
        black_box(mb.pop().unwrap());
    }
    let mail = start.elapsed().as_nanos() as f64 / ITERS as f64;

    println!("runqueue: 64 runnable threads, {ITERS} iterations");
    println!("  pick_next + enqueue (+ EMA/classify): {pair:6.2} ns/op");
    println!("  pick_next alone (queue draining 64 -> 0): {pick:6.2} ns/op");
    println!("mailbox push + pop (uncontended):        {mail:6.2} ns/op");
}
