//! Uncontended lock + unlock cost of each lock, in ns per pair (a report,
//! not a test). Run with `cargo run -p exo-sync --release --example
//! bench_locks [iterations]`.

use std::hint::black_box;
use std::pin::pin;
use std::sync::Mutex;
use std::time::Instant;

use exo_sync::{Lock, McsLock, McsNode, TasLock, TasMutex, TicketMutex};

/// Best of `ROUNDS` timings of `iters` calls of `f`, in ns per call.
fn ns_per_op(iters: u64, mut f: impl FnMut()) -> f64 {
    const ROUNDS: usize = 5;
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let iters: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    println!("uncontended lock+unlock, best of 5 × {iters} iterations");

    let tas = TasMutex::new(0_u64);
    let tas1 = Lock::<TasLock<1>, u64>::new(0);
    let ticket = TicketMutex::new(0_u64);
    let mcs = McsLock::new(0_u64);
    let std_mutex = Mutex::new(0_u64);

    let report = |name: &str, ns: f64| println!("{name:<28} {ns:>7.2} ns/op");
    report(
        "TasLock (cap 64)",
        ns_per_op(iters, || *black_box(&tas).lock() += 1),
    );
    report(
        "TasLock<1>",
        ns_per_op(iters, || *black_box(&tas1).lock() += 1),
    );
    report(
        "TicketLock",
        ns_per_op(iters, || *black_box(&ticket).lock() += 1),
    );
    let mut node = pin!(McsNode::new());
    report(
        "McsLock (reused node)",
        ns_per_op(iters, || *black_box(&mcs).lock(node.as_mut()) += 1),
    );
    report(
        "McsLock::with (stack node)",
        ns_per_op(iters, || black_box(&mcs).with(|v| *v += 1)),
    );
    report(
        "std::sync::Mutex (reference)",
        ns_per_op(iters, || *black_box(&std_mutex).lock().unwrap() += 1),
    );

    let total = tas.into_inner() + tas1.into_inner() + ticket.into_inner() + mcs.into_inner();
    assert_eq!(total, 5 * 5 * iters, "every increment must have happened");
}
