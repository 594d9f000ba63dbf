use super::*;

const MIB: u64 = 1 << 20;
const F: u64 = FRAME_SIZE;

impl Buddy<'_> {
    /// Words of level `l` of order `k`'s free bitmap.
    fn level_words(&self, k: usize, l: usize) -> usize {
        let next = if l + 1 < self.layout.depth[k] {
            self.layout.lvl[k][l + 1]
        } else {
            self.layout.alloc[k]
        };
        next - self.layout.lvl[k][l]
    }

    /// Checks every structural invariant; panics with a message if broken.
    pub(super) fn check_invariants(&self) {
        let l = &self.layout;
        let first = self.frame_of(self.base);
        let n_int = self.frame_of(self.end);
        // 0 = none, 1 = free, 2 = allocated.
        let mut owner = vec![0u8; n_int];
        let mut nonempty = 0u32;
        for k in 0..ORDERS {
            let nb = l.blocks[k];
            assert_eq!(nb, n_int >> k);
            let leaf_words = self.level_words(k, 0);
            let mut count = 0;
            for i in 0..leaf_words * 64 {
                for (state, set) in [(1u8, self.test_free(k, i)), (2, self.test_alloc(k, i))] {
                    if !set {
                        continue;
                    }
                    assert!(i < nb, "order {k} block {i} past the end ({nb})");
                    let frames = (i << k)..((i + 1) << k);
                    for (f, slot) in frames.clone().zip(&mut owner[frames]) {
                        assert!(f >= first, "order {k} block {i} covers the alignment pad");
                        assert_eq!(*slot, 0, "frame {f} covered twice (order {k} block {i})");
                        *slot = state;
                        assert!(
                            self.next_resv(f, f + 1, true) != f,
                            "reserved frame {f} is free or allocated"
                        );
                    }
                }
                if self.test_free(k, i) {
                    count += 1;
                    if k < MAX_ORDER {
                        assert!(
                            !self.test_free(k, i ^ 1),
                            "free buddies {i}/{} at order {k}",
                            i ^ 1
                        );
                    }
                }
            }
            assert_eq!(count, self.free_blocks[k], "free count of order {k}");
            let lowest = (0..leaf_words).find(|&w| self.bits[l.lvl[k][0] + w] != 0);
            assert_eq!(
                self.first[k],
                lowest.unwrap_or(usize::MAX),
                "first hint of order {k}"
            );
            if count > 0 {
                nonempty |= 1 << k;
            }
            // Summary levels: bit w of level j+1 <=> word w of level j non-zero.
            for j in 1..l.depth[k] {
                let (lo, hi) = (self.level_words(k, j - 1), self.level_words(k, j));
                assert_eq!(hi, lo.div_ceil(64));
                for w in 0..hi * 64 {
                    let bit = (self.bits[l.lvl[k][j] + (w >> 6)] >> (w & 63)) & 1 != 0;
                    let nz = w < lo && self.bits[l.lvl[k][j - 1] + w] != 0;
                    assert_eq!(bit, nz, "order {k} level {j} bit {w}");
                }
            }
            assert_eq!(self.level_words(k, l.depth[k] - 1), 1);
        }
        assert_eq!(nonempty, self.nonempty);
        for (f, o) in owner.iter().enumerate() {
            if f < first {
                assert_eq!(*o, 0);
            }
        }
        let free = owner.iter().filter(|&&o| o == 1).count();
        assert_eq!(free, self.free_frames());
    }

    pub(super) fn snapshot(&self) -> (Vec<u64>, [usize; ORDERS], u32, [usize; ORDERS]) {
        (
            self.bits.to_vec(),
            self.free_blocks,
            self.nonempty,
            self.first,
        )
    }
}

fn storage(base: u64, n: usize) -> Vec<u64> {
    vec![0xdead_beef_u64; Buddy::words_needed_for(base, n)]
}

#[test]
fn words_needed_is_sufficient_and_exact_errors() {
    for n in [0usize, 1, 63, 64, 65, 511, 512, 1000, 1024, 4096, 100_000] {
        for pad in [0u64, 1, 511, 1023] {
            let base = 64 * MIB + pad * F;
            let exact = Buddy::words_needed_for(base, n);
            assert!(exact <= Buddy::words_needed(n));
            let mut st = vec![0u64; exact];
            assert!(Buddy::new(&mut st, base, n).is_ok());
            if exact > 0 {
                let mut short = vec![0u64; exact - 1];
                assert_eq!(
                    Buddy::new(&mut short, base, n).unwrap_err(),
                    MmError::StorageTooSmall {
                        needed: exact,
                        provided: exact - 1
                    }
                );
            }
        }
    }
    // About 5 bits per frame.
    let n = 1 << 22;
    assert!(
        Buddy::words_needed(n) * 64 < n * 51 / 10,
        "{}",
        Buddy::words_needed(n)
    );
    const W: usize = Buddy::words_needed(512);
    const { assert!(W > 0) };
}

/// Spans too large for the allocator get a figure, not a panic (until 2026-12-06 the layout
/// indexed past its summary levels), and `new` refuses them whatever the storage.
#[test]
fn words_needed_of_a_span_too_large_does_not_panic() {
    let most = Buddy::words_needed(MAX_SPAN_FRAMES as usize);
    assert_eq!(Buddy::words_needed(usize::MAX), most);
    assert_eq!(
        Buddy::words_needed_for(0, 1 << 40),
        Buddy::words_needed_for(0, MAX_SPAN_FRAMES as usize)
    );
    let mut st = [0u64; 4];
    assert!(matches!(
        Buddy::new(&mut st, 0, 1 << 40),
        Err(MmError::InvalidSpan { .. })
    ));
}

#[test]
fn new_rejects_bad_spans() {
    let mut st = vec![0u64; 64];
    assert!(matches!(
        Buddy::new(&mut st, 0x1001, 4),
        Err(MmError::InvalidSpan { .. })
    ));
    assert!(matches!(
        Buddy::new(&mut st, !0xfff, 2),
        Err(MmError::InvalidSpan { .. })
    ));
    let too_many = MAX_SPAN_FRAMES as usize + 1;
    assert!(matches!(
        Buddy::new(&mut st, 0, too_many),
        Err(MmError::InvalidSpan { .. })
    ));
    // Untouched storage beyond what is needed.
    let mut st = vec![7u64; Buddy::words_needed_for(0, 10) + 3];
    {
        let b = Buddy::new(&mut st, 0, 10).unwrap();
        assert!(b.bitmap_words().iter().all(|&w| w == 0));
    }
    assert_eq!(&st[st.len() - 3..], &[7, 7, 7]);
}

#[test]
fn starts_all_holes_then_out_of_memory() {
    let mut st = storage(0, 2048);
    let mut b = Buddy::new(&mut st, 0, 2048).unwrap();
    assert_eq!((b.total_frames(), b.free_frames()), (2048, 0));
    assert_eq!(b.alloc(0), Err(MmError::OutOfMemory));
    assert_eq!(b.frame_state(0), Ok(FrameState::Hole));
    let mut out = [0u64; 8];
    assert_eq!(b.alloc_batch(0, &mut out), 0);
    b.check_invariants();
    assert!(format!("{b:?}").contains("free_frames: 0"));
}

#[test]
fn aligned_span_is_max_order_blocks() {
    let base = 1 << 30;
    let mut st = storage(base, 4096);
    let mut b = Buddy::new(&mut st, base, 4096).unwrap();
    b.add_free_range(base, base + 16 * MIB).unwrap();
    b.check_invariants();
    assert_eq!(b.free_frames(), 4096);
    assert_eq!(b.free_blocks(MAX_ORDER), 4);
    assert_eq!(b.stats().free_blocks[..MAX_ORDER], [0; MAX_ORDER]);
    for i in 0..4 {
        assert_eq!(b.alloc(MAX_ORDER), Ok(base + i * 4 * MIB));
    }
    assert_eq!(b.alloc(0), Err(MmError::OutOfMemory));
    assert_eq!(
        b.alloc(MAX_ORDER + 1),
        Err(MmError::InvalidOrder {
            order: MAX_ORDER + 1
        })
    );
    assert_eq!(b.free_blocks(MAX_ORDER + 5), 0);
}

/// Allocates everything at `order` until OOM, checks disjointness and
/// alignment, frees in a scrambled order and checks the exact start state.
fn exhaust_and_recover(b: &mut Buddy<'_>, order: usize) -> Vec<u64> {
    let start = b.snapshot();
    let free0 = b.free_frames();
    let mut got = Vec::new();
    while let Ok(a) = b.alloc(order) {
        assert_eq!(a % (F << order), 0, "alignment of order {order}");
        assert!(a >= b.base() && a + (F << order) <= b.end());
        got.push(a);
    }
    let mut sorted = got.clone();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        assert!(w[0] + (F << order) <= w[1], "overlap");
    }
    // Nothing left at this order or above.
    assert_eq!(b.free_frames(), free0 - (got.len() << order));
    assert!((order..ORDERS).all(|k| b.free_blocks(k) == 0));
    b.check_invariants();
    let n = got.len();
    for i in 0..n {
        let a = got[(i * 7919) % n.max(1)];
        if b.frame_state(a) == Ok(FrameState::Allocated) {
            b.free(a, order).unwrap();
        }
    }
    // Anything the scrambled walk missed (7919 not coprime to n).
    for &a in &got {
        if b.frame_state(a) == Ok(FrameState::Allocated) {
            b.free(a, order).unwrap();
        }
    }
    b.check_invariants();
    assert_eq!(b.snapshot(), start, "not back to the start state");
    got
}

#[test]
fn span_not_multiple_of_2mib_unaligned_base() {
    // 1000 frames from 1 MiB + 12 KiB: neither end 2 MiB aligned.
    let base = MIB + 3 * F;
    let n = 1000;
    let mut st = storage(base, n);
    let mut b = Buddy::new(&mut st, base, n).unwrap();
    b.add_free_range(base, base + n as u64 * F).unwrap();
    b.check_invariants();
    assert_eq!(b.free_frames(), n);
    let got = exhaust_and_recover(&mut b, 0);
    assert_eq!(got.len(), n);
    for order in 1..=MAX_ORDER {
        let got = exhaust_and_recover(&mut b, order);
        // Every naturally aligned block inside the span is found.
        let lo = base.div_ceil(F << order);
        let hi = b.end() / (F << order);
        assert_eq!(got.len() as u64, hi.saturating_sub(lo), "order {order}");
    }
}

#[test]
fn holes_are_never_allocated() {
    let base = 8 * MIB;
    let n = 3000;
    let mut st = storage(base, n);
    let mut b = Buddy::new(&mut st, base, n).unwrap();
    b.add_free_range(base, base + 100 * F).unwrap();
    b.add_free_range(base + 300 * F, base + 2900 * F).unwrap();
    b.check_invariants();
    assert_eq!(b.free_frames(), 100 + 2600);
    assert_eq!(b.frame_state(base + 150 * F), Ok(FrameState::Hole));
    assert_eq!(b.frame_state(base + 2950 * F), Ok(FrameState::Hole));
    let got = exhaust_and_recover(&mut b, 0);
    assert_eq!(got.len(), 2700);
    for a in got {
        let f = (a - base) / F;
        assert!(
            f < 100 || (300..2900).contains(&f),
            "hole frame {f} allocated"
        );
    }
    // Freeing a hole frame is refused.
    assert_eq!(
        b.free(base + 150 * F, 0),
        Err(MmError::NotAllocated {
            addr: base + 150 * F,
            order: 0
        })
    );
}

#[test]
fn add_rounds_inward_and_is_idempotent() {
    let base = 0;
    let mut st = storage(base, 64);
    let mut b = Buddy::new(&mut st, base, 64).unwrap();
    b.add_free_range(F + 1, 5 * F - 1).unwrap(); // frames 2..4
    assert_eq!(b.free_frames(), 2);
    b.add_free_range(F + 1, 2 * F).unwrap(); // empty after rounding
    b.add_free_range(3 * F, 3 * F).unwrap();
    b.add_free_range(u64::MAX, u64::MAX).unwrap();
    assert_eq!(b.free_frames(), 2);
    let once = b.snapshot();
    b.add_free_range(0, 10 * F).unwrap();
    b.add_free_range(2 * F, 4 * F).unwrap();
    b.check_invariants();
    assert_eq!(b.free_frames(), 10);
    assert_ne!(b.snapshot(), once);
    assert_eq!(
        b.add_free_range(5 * F, F),
        Err(MmError::InvalidRange {
            start: 5 * F,
            end: F
        })
    );
    assert_eq!(
        b.add_free_range(0, 65 * F),
        Err(MmError::OutOfSpan { addr: 65 * F })
    );
    b.check_invariants();
    assert_eq!(b.free_frames(), 10);
}

#[test]
fn add_below_base_is_out_of_span() {
    let base = 4 * MIB;
    let mut st = storage(base, 64);
    let mut b = Buddy::new(&mut st, base, 64).unwrap();
    assert_eq!(
        b.add_free_range(0, base + F),
        Err(MmError::OutOfSpan { addr: 0 })
    );
    assert_eq!(b.free_frames(), 0);
}

#[test]
fn reserve_before_or_after_add_gives_same_state() {
    let base = 2 * MIB;
    let n = 2500;
    let kernel = (base + 1000 * F + 123, base + 1300 * F - 5); // outward: 1000..1300
    let boot = (base + 7 * F, base + 9 * F);
    let states: Vec<_> = (0..3)
        .map(|variant| {
            let mut st = storage(base, n);
            let mut b = Buddy::new(&mut st, base, n).unwrap();
            let end = base + n as u64 * F;
            match variant {
                0 => {
                    b.reserve_range(kernel.0, kernel.1).unwrap();
                    b.reserve_range(boot.0, boot.1).unwrap();
                    b.add_free_range(base, end).unwrap();
                }
                1 => {
                    b.add_free_range(base, end).unwrap();
                    b.reserve_range(kernel.0, kernel.1).unwrap();
                    b.reserve_range(boot.0, boot.1).unwrap();
                }
                _ => {
                    b.add_free_range(base, base + 1100 * F).unwrap();
                    b.reserve_range(kernel.0, kernel.1).unwrap();
                    b.add_free_range(base + 1100 * F, end).unwrap();
                    b.reserve_range(boot.0, boot.1).unwrap();
                    // Re-adding over a reservation does not free it.
                    b.add_free_range(base, end).unwrap();
                }
            }
            b.check_invariants();
            assert_eq!(b.free_frames(), n - 300 - 2);
            assert_eq!(b.frame_state(base + 1000 * F), Ok(FrameState::Reserved));
            assert_eq!(b.frame_state(base + 1299 * F), Ok(FrameState::Reserved));
            assert_eq!(b.frame_state(base + 1300 * F), Ok(FrameState::Free));
            assert_eq!(b.frame_state(base + 999 * F), Ok(FrameState::Free));
            let got = exhaust_and_recover(&mut b, 0);
            assert!(got.iter().all(|a| {
                let f = (a - base) / F;
                !(1000..1300).contains(&f) && !(7..9).contains(&f)
            }));
            b.snapshot()
        })
        .collect();
    assert_eq!(states[0], states[1]);
    assert_eq!(states[0], states[2]);
}

#[test]
fn reserve_clips_to_span_and_splits_large_blocks() {
    let base = 4 * MIB;
    let mut st = storage(base, 1024);
    let mut b = Buddy::new(&mut st, base, 1024).unwrap();
    b.add_free_range(base, base + 4 * MIB).unwrap();
    assert_eq!(b.free_blocks(MAX_ORDER), 1);
    // Outside the span: no-op.
    b.reserve_range(0, base).unwrap();
    b.reserve_range(base + 4 * MIB, u64::MAX).unwrap();
    assert_eq!(b.free_frames(), 1024);
    // One frame in the middle of the 4 MiB block.
    b.reserve_range(base + 513 * F, base + 513 * F + 1).unwrap();
    b.check_invariants();
    assert_eq!(b.free_frames(), 1023);
    assert_eq!(b.free_blocks(MAX_ORDER), 0);
    assert_eq!(b.free_blocks(9), 1);
    assert_eq!(b.free_blocks(0), 1);
    // A range reaching past the span end is clipped.
    b.reserve_range(base + 1020 * F, u64::MAX).unwrap();
    b.check_invariants();
    assert_eq!(b.free_frames(), 1019);
    assert_eq!(
        b.reserve_range(9, 3),
        Err(MmError::InvalidRange { start: 9, end: 3 })
    );
    // Release gives the frames back and coalesces.
    b.release_range(base, base + 4 * MIB).unwrap();
    b.check_invariants();
    assert_eq!(b.free_blocks(MAX_ORDER), 1);
}

#[test]
fn ranges_over_allocated_frames_are_refused() {
    let base = 0;
    let mut st = storage(base, 256);
    let mut b = Buddy::new(&mut st, base, 256).unwrap();
    b.add_free_range(0, 256 * F).unwrap();
    let a = b.alloc(2).unwrap();
    let before = b.snapshot();
    let r = (a + F, a + 2 * F);
    assert_eq!(
        b.reserve_range(r.0, r.1),
        Err(MmError::RangeInUse {
            start: r.0,
            end: r.1
        })
    );
    assert_eq!(
        b.add_free_range(0, 256 * F),
        Err(MmError::RangeInUse {
            start: 0,
            end: 256 * F
        })
    );
    assert_eq!(
        b.release_range(a, a + F),
        Err(MmError::RangeInUse {
            start: a,
            end: a + F
        })
    );
    assert_eq!(b.snapshot(), before);
    b.free(a, 2).unwrap();
    b.reserve_range(r.0, r.1).unwrap();
    b.check_invariants();
    assert_eq!(b.free_frames(), 255);
}

#[test]
fn double_free_and_wrong_order_detected_without_change() {
    let base = 16 * MIB;
    let mut st = storage(base, 512);
    let mut b = Buddy::new(&mut st, base, 512).unwrap();
    b.add_free_range(base, base + 512 * F).unwrap();
    let a = b.alloc(0).unwrap();
    let c = b.alloc(3).unwrap();
    let before = b.snapshot();
    // Wrong order (too big, then too small).
    assert_eq!(b.free(c, 4), Err(MmError::Misaligned { addr: c, order: 4 }));
    assert_eq!(
        b.free(c, 2),
        Err(MmError::NotAllocated { addr: c, order: 2 })
    );
    // Order 1 at `a` covers `a` (allocated) and its free buddy: the free
    // half makes it a double free.
    assert_eq!(b.free(a, 1), Err(MmError::DoubleFree { addr: a }));
    assert_eq!(b.snapshot(), before);
    // Two allocated order-0 buddies freed as one order-1 block.
    let (p, q, r) = (
        b.alloc(0).unwrap(),
        b.alloc(0).unwrap(),
        b.alloc(0).unwrap(),
    );
    assert_eq!((p, q, r), (base + F, base + 2 * F, base + 3 * F));
    assert_eq!(
        b.free(q, 1),
        Err(MmError::NotAllocated { addr: q, order: 1 })
    );
    for x in [p, q, r] {
        b.free(x, 0).unwrap();
    }
    assert_eq!(b.snapshot(), before);
    b.free(a, 0).unwrap();
    let after = b.snapshot();
    assert_eq!(b.free(a, 0), Err(MmError::DoubleFree { addr: a }));
    assert_eq!(b.snapshot(), after);
    b.free(c, 3).unwrap();
    assert_eq!(b.free(c, 3), Err(MmError::DoubleFree { addr: c }));
    // Freed order-3 block, partly reallocated: freeing it again is refused.
    let x = b.alloc(0).unwrap();
    assert_eq!(x, base);
    assert_eq!(b.free(base, 3), Err(MmError::DoubleFree { addr: base }));
    b.check_invariants();
    // A free frame freed at a larger order: double free.
    assert_eq!(
        b.free(base + 8 * F, 3),
        Err(MmError::DoubleFree { addr: base + 8 * F })
    );
    b.free(x, 0).unwrap();
    assert_eq!(b.free_frames(), 512);
    b.check_invariants();
}

#[test]
fn misaligned_and_out_of_span_frees() {
    let base = 4 * MIB + 2 * F; // blocks aligned physically, not to base
    let n = 300;
    let mut st = storage(base, n);
    let mut b = Buddy::new(&mut st, base, n).unwrap();
    b.add_free_range(base, base + n as u64 * F).unwrap();
    let a = b.alloc(1).unwrap();
    assert_eq!(a % (2 * F), 0);
    let before = b.snapshot();
    assert_eq!(
        b.free(a + 1, 1),
        Err(MmError::Misaligned {
            addr: a + 1,
            order: 1
        })
    );
    assert_eq!(
        b.free(a + F, 1),
        Err(MmError::Misaligned {
            addr: a + F,
            order: 1
        })
    );
    assert_eq!(
        b.free(a + 8, 0),
        Err(MmError::Misaligned {
            addr: a + 8,
            order: 0
        })
    );
    for bad in [0, base - F, base - 1, b.end(), b.end() + F, u64::MAX] {
        assert_eq!(b.free(bad, 0), Err(MmError::OutOfSpan { addr: bad }));
    }
    assert_eq!(
        b.free(a, MAX_ORDER + 1),
        Err(MmError::InvalidOrder {
            order: MAX_ORDER + 1
        })
    );
    // A block that would stick out of the span end.
    let last = b.end() - F;
    let tail = last & !((F << 3) - 1);
    assert_eq!(b.free(tail, 3), Err(MmError::DoubleFree { addr: tail }));
    assert_eq!(
        b.frame_state(b.end()),
        Err(MmError::OutOfSpan { addr: b.end() })
    );
    assert_eq!(b.snapshot(), before);
    b.free(a, 1).unwrap();
    assert_eq!(b.free_frames(), n);
    b.check_invariants();
}

#[test]
fn buddies_coalesce() {
    let mut st = storage(0, 1024);
    let mut b = Buddy::new(&mut st, 0, 1024).unwrap();
    b.add_free_range(0, 1024 * F).unwrap();
    let x = b.alloc(0).unwrap();
    let y = b.alloc(0).unwrap();
    assert_eq!((x, y), (0, F), "address-ordered");
    assert_eq!(b.free_blocks(MAX_ORDER), 0);
    assert_eq!(b.frame_state(x), Ok(FrameState::Allocated));
    b.free(x, 0).unwrap();
    assert_eq!(b.free_blocks(0), 1);
    b.free(y, 0).unwrap();
    assert_eq!(b.free_blocks(0), 0);
    assert_eq!(b.free_blocks(MAX_ORDER), 1);
    b.check_invariants();
}

#[test]
fn batch_alloc_and_free() {
    let base = 32 * MIB;
    let n = 2000;
    let mut st = storage(base, n);
    let mut b = Buddy::new(&mut st, base, n).unwrap();
    b.add_free_range(base, base + n as u64 * F).unwrap();
    let start = b.snapshot();
    let mut all = Vec::new();
    let mut out = [0u64; 32];
    loop {
        let got = b.alloc_batch(0, &mut out);
        b.check_invariants();
        all.extend_from_slice(&out[..got]);
        if got < out.len() {
            break;
        }
    }
    assert_eq!(all.len(), n);
    assert_eq!(b.free_frames(), 0);
    let mut s = all.clone();
    s.sort_unstable();
    s.dedup();
    assert_eq!(s.len(), n);
    assert!(s.iter().all(|&a| a >= base && a < b.end()));
    assert_eq!(b.alloc_batch(0, &mut out), 0);
    for chunk in all.chunks(32).rev() {
        b.free_batch(0, chunk).unwrap();
    }
    b.check_invariants();
    assert_eq!(b.snapshot(), start);
    // Other orders, and a request larger than one big block.
    let mut big = vec![0u64; 300];
    assert_eq!(b.alloc_batch(2, &mut big), 300);
    b.check_invariants();
    assert!(big.iter().all(|a| a % (4 * F) == 0));
    b.free_batch(2, &big).unwrap();
    assert_eq!(b.snapshot(), start);
    assert_eq!(b.alloc_batch(MAX_ORDER + 1, &mut out), 0);
    assert_eq!(b.alloc_batch(0, &mut []), 0);
}

#[test]
fn batch_mixes_free_words_and_splits() {
    let mut st = storage(0, 1024);
    let mut b = Buddy::new(&mut st, 0, 1024).unwrap();
    b.add_free_range(0, 1024 * F).unwrap();
    // Leave scattered order-0 frames free, then batch across them and a split.
    let mut v = Vec::new();
    for _ in 0..10 {
        v.push(b.alloc(0).unwrap());
    }
    for a in v.iter().step_by(2) {
        b.free(*a, 0).unwrap();
    }
    b.check_invariants();
    let mut out = [0u64; 12];
    assert_eq!(b.alloc_batch(0, &mut out), 12);
    b.check_invariants();
    assert_eq!(&out[..5], &[0, 2 * F, 4 * F, 6 * F, 8 * F]);
    assert_eq!(
        &out[5..],
        &[10 * F, 11 * F, 12 * F, 13 * F, 14 * F, 15 * F, 16 * F]
    );
    assert_eq!(b.free_frames(), 1024 - 17);
}

#[test]
fn free_batch_stops_at_first_bad_entry() {
    let mut st = storage(0, 64);
    let mut b = Buddy::new(&mut st, 0, 64).unwrap();
    b.add_free_range(0, 64 * F).unwrap();
    let mut out = [0u64; 4];
    assert_eq!(b.alloc_batch(0, &mut out), 4);
    let bad = [out[0], out[1], out[1], out[2]];
    let e = b.free_batch(0, &bad).unwrap_err();
    assert_eq!(
        e,
        BatchFreeError {
            index: 2,
            error: MmError::DoubleFree { addr: out[1] }
        }
    );
    assert!(e.to_string().contains("entry 2"));
    assert_eq!(b.free_frames(), 62);
    b.check_invariants();
    b.free_batch(0, &out[2..]).unwrap();
    assert_eq!(b.free_frames(), 64);
    assert_eq!(b.free_batch(MAX_ORDER + 1, &[]).unwrap_err().index, 0);
}

#[test]
fn large_span_deep_summary() {
    // 16 GiB of frames: 4 summary levels at order 0.
    let base = 1 << 32;
    let n = 1 << 22;
    let mut st = vec![0u64; Buddy::words_needed(n)];
    let mut b = Buddy::new(&mut st, base, n).unwrap();
    assert!(b.layout.depth[0] >= 4);
    let end = b.end();
    b.add_free_range(base, end).unwrap();
    assert_eq!(b.free_frames(), n);
    // Keep only the last frames free.
    b.reserve_range(base, end - 5 * F).unwrap();
    assert_eq!(b.free_frames(), 5);
    let mut got: Vec<u64> = (0..5).map(|_| b.alloc(0).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..5).map(|i| end - (5 - i) * F).collect::<Vec<_>>());
    assert_eq!(b.alloc(0), Err(MmError::OutOfMemory));
    for a in got {
        b.free(a, 0).unwrap();
    }
    b.release_range(base, end).unwrap();
    assert_eq!(b.free_blocks(MAX_ORDER), n >> MAX_ORDER);
}

#[test]
fn errors_display() {
    let all = [
        MmError::OutOfMemory,
        MmError::InvalidOrder { order: 12 },
        MmError::Misaligned {
            addr: 0x1001,
            order: 0,
        },
        MmError::OutOfSpan { addr: 1 },
        MmError::DoubleFree { addr: 0x2000 },
        MmError::NotAllocated {
            addr: 0x3000,
            order: 2,
        },
        MmError::InvalidRange { start: 2, end: 1 },
        MmError::RangeInUse {
            start: 0,
            end: 4096,
        },
        MmError::InvalidSpan {
            base: 1,
            n_frames: 2,
        },
        MmError::StorageTooSmall {
            needed: 3,
            provided: 2,
        },
    ];
    let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert!(texts.iter().all(|t| !t.is_empty()));
    let mut dedup = texts.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), texts.len());
    assert!(texts[4].contains("0x2000"));
}

#[test]
fn compress_even_gathers_even_bits() {
    assert_eq!(compress_even(0), 0);
    assert_eq!(compress_even(u64::MAX), 0xffff_ffff);
    assert_eq!(compress_even(0x5555_5555_5555_5555), 0xffff_ffff);
    assert_eq!(compress_even(0xaaaa_aaaa_aaaa_aaaa), 0);
    for j in 0..32 {
        assert_eq!(compress_even(1 << (2 * j)), 1 << j);
        assert_eq!(compress_even(3 << (2 * j)), 1 << j);
    }
    let x = 0x1234_5678_9abc_def0u64;
    let want = (0..32).fold(0u64, |acc, j| acc | (((x >> (2 * j)) & 1) << j));
    assert_eq!(compress_even(x), want);
}
