//! Host microbenchmark of the buddy, size classes and magazine (not a test).
//!
//! `cargo run --release -p exo-mm --example bench_buddy`
//!
//! Reports ns/op with `std::time::Instant`; numbers are for the host CPU and
//! include no locking (the kernel adds a lock around the buddy and none
//! around a per-CPU magazine).

use std::hint::black_box;
use std::time::Instant;

use exo_mm::{Buddy, FRAME_SIZE, MAX_ORDER, Magazine, class_for};

const BASE: u64 = 1 << 32;
/// 4 GiB of frames.
const N: usize = 1 << 20;
const ROUNDS: usize = 5;

/// Runs `f` (which performs `ops` operations) `ROUNDS` times; returns the best
/// ns/op.
fn time(ops: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_nanos() as f64 / ops as f64);
    }
    best
}

fn fresh(storage: &mut [u64]) -> Buddy<'_> {
    let mut b = Buddy::new(storage, BASE, N).expect("span");
    b.add_free_range(BASE, BASE + N as u64 * FRAME_SIZE)
        .expect("range");
    b
}

fn main() {
    let mut storage = vec![0u64; Buddy::words_needed(N)];
    println!(
        "span {} MiB ({} frames), bitmap {} KiB, MAX_ORDER {}",
        (N as u64 * FRAME_SIZE) >> 20,
        N,
        storage.len() * 8 / 1024,
        MAX_ORDER
    );

    // 1. alloc(0) + free(0) of the same frame, steady state.
    let mut b = fresh(&mut storage);
    let iters = 2_000_000;
    let ns = time(iters * 2, || {
        for _ in 0..iters {
            let a = b.alloc(black_box(0)).unwrap();
            b.free(black_box(a), 0).unwrap();
        }
    });
    println!("order-0 alloc+free pair (split 10 / merge 10): {ns:6.1} ns/op");

    // 2. Same with the order-0 word already populated (no split chain).
    let keep = b.alloc(0).unwrap();
    let ns = time(iters * 2, || {
        for _ in 0..iters {
            let a = b.alloc(black_box(0)).unwrap();
            b.free(black_box(a), 0).unwrap();
        }
    });
    println!("order-0 alloc+free pair (buddy busy, no split): {ns:6.1} ns/op");
    b.free(keep, 0).unwrap();

    // 3. 256 Ki sequential single allocs, then frees in the same order.
    let count = 1 << 18;
    let mut addrs = vec![0u64; count];
    let mut ns_alloc = f64::MAX;
    let mut ns_free = f64::MAX;
    for _ in 0..ROUNDS {
        let mut b = fresh(&mut storage);
        let t = Instant::now();
        for slot in addrs.iter_mut() {
            *slot = b.alloc(0).unwrap();
        }
        ns_alloc = ns_alloc.min(t.elapsed().as_nanos() as f64 / count as f64);
        let t = Instant::now();
        for &a in &addrs {
            b.free(a, 0).unwrap();
        }
        ns_free = ns_free.min(t.elapsed().as_nanos() as f64 / count as f64);
    }
    println!("order-0 alloc x{count} (fresh span):          {ns_alloc:6.1} ns/op");
    println!("order-0 free  x{count} (coalescing):          {ns_free:6.1} ns/op");

    // 3b. The same frames through alloc_batch / free_batch, 32 at a time.
    let mut ns_alloc = f64::MAX;
    let mut ns_free = f64::MAX;
    for _ in 0..ROUNDS {
        let mut b = fresh(&mut storage);
        let t = Instant::now();
        for chunk in addrs.chunks_mut(32) {
            assert_eq!(b.alloc_batch(0, chunk), chunk.len());
        }
        ns_alloc = ns_alloc.min(t.elapsed().as_nanos() as f64 / count as f64);
        let t = Instant::now();
        for chunk in addrs.chunks(32) {
            b.free_batch(0, chunk).unwrap();
        }
        ns_free = ns_free.min(t.elapsed().as_nanos() as f64 / count as f64);
    }
    println!("order-0 alloc_batch(32) x{count}:            {ns_alloc:6.1} ns/frame");
    println!("order-0 free_batch(32)  x{count}:            {ns_free:6.1} ns/frame");

    // 4. Per-CPU refill/drain: batches of 32, on a fresh and on a
    //    fragmented span (every other frame of the first 256 Ki taken).
    for fragmented in [false, true] {
        let mut b = fresh(&mut storage);
        let mut pinned = Vec::new();
        if fragmented {
            for i in 0..count {
                let a = b.alloc(0).unwrap();
                if i % 2 == 0 {
                    pinned.push(a);
                } else {
                    addrs[i / 2] = a;
                }
            }
            for &a in &addrs[..count / 2] {
                b.free(a, 0).unwrap();
            }
        }
        let label = if fragmented { "fragmented" } else { "fresh" };
        let mut out = [0u64; 32];
        let iters = 200_000;
        let batched = time(iters * 32, || {
            for _ in 0..iters {
                assert_eq!(b.alloc_batch(0, &mut out), 32);
                b.free_batch(0, black_box(&out)).unwrap();
            }
        });
        let singles = time(iters * 32, || {
            for _ in 0..iters {
                for slot in out.iter_mut() {
                    *slot = b.alloc(0).unwrap();
                }
                for &a in &out {
                    b.free(black_box(a), 0).unwrap();
                }
            }
        });
        println!(
            "32 frames ({label:10}): alloc_batch+free_batch {batched:5.1} ns/frame, \
             32 alloc + 32 free {singles:5.1} ns/frame"
        );
        drop(pinned);
    }

    // 5. 2 MiB (order 9) alloc+free.
    let mut b = fresh(&mut storage);
    let ns = time(200_000 * 2, || {
        for _ in 0..200_000 {
            let a = b.alloc(9).unwrap();
            b.free(a, 9).unwrap();
        }
    });
    println!("order-9 alloc+free pair:                       {ns:6.1} ns/op");

    // 6. Size class lookup and magazine push/pop.
    let sizes: Vec<(usize, usize)> = (0..4096).map(|i| (1 + (i * 37) % 2048, 8)).collect();
    let mut sink = 0usize;
    let ns = time(4096 * 1000, || {
        for _ in 0..1000 {
            for &(s, a) in &sizes {
                sink += class_for(black_box(s), black_box(a)).map_or(0, |c| c.index());
            }
        }
    });
    black_box(sink);
    println!("class_for:                                     {ns:6.2} ns/op");
    let mut m = Magazine::<64>::new();
    m.fill_from(&[0x1000; 32]);
    let ns = time(10_000_000 * 2, || {
        for i in 0..10_000_000u64 {
            let v = m.pop().unwrap();
            m.push(black_box(v ^ i)).unwrap();
        }
    });
    println!("magazine pop+push:                             {ns:6.2} ns/op");
}
