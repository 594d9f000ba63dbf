//! Property tests of the buddy against a frame-level model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const F: u64 = FRAME_SIZE;

/// Reference model: per-frame flags plus the live allocations.
struct Model {
    base: u64,
    end: u64,
    added: Vec<bool>,
    reserved: Vec<bool>,
    /// Live allocations: address -> order.
    live: BTreeMap<u64, usize>,
    /// Frames (index from base) of live allocations.
    alloc_frames: BTreeSet<usize>,
}

impl Model {
    fn new(base: u64, n: usize) -> Self {
        Self {
            base,
            end: base + n as u64 * F,
            added: vec![false; n],
            reserved: vec![false; n],
            live: BTreeMap::new(),
            alloc_frames: BTreeSet::new(),
        }
    }

    fn available(&self, f: usize) -> bool {
        self.added[f] && !self.reserved[f] && !self.alloc_frames.contains(&f)
    }

    fn free_frames(&self) -> usize {
        (0..self.added.len()).filter(|&f| self.available(f)).count()
    }

    /// Whether some naturally aligned block of `order` is wholly available.
    fn has_block(&self, order: usize) -> bool {
        let size = F << order;
        let mut a = self.base.div_ceil(size) * size;
        while a + size <= self.end {
            let f0 = ((a - self.base) / F) as usize;
            if (f0..f0 + (1 << order)).all(|f| self.available(f)) {
                return true;
            }
            a += size;
        }
        false
    }

    fn frames_of(&self, addr: u64, order: usize) -> std::ops::Range<usize> {
        let f0 = ((addr - self.base) / F) as usize;
        f0..f0 + (1 << order)
    }

    /// Records an allocation returned by the buddy after checking it.
    fn take(&mut self, addr: u64, order: usize) -> Result<(), TestCaseError> {
        prop_assert_eq!(addr % (F << order), 0, "order {} alignment", order);
        prop_assert!(
            addr >= self.base && addr + (F << order) <= self.end,
            "outside span"
        );
        for f in self.frames_of(addr, order) {
            prop_assert!(
                self.available(f),
                "frame {} handed out but not available",
                f
            );
            self.alloc_frames.insert(f);
        }
        self.live.insert(addr, order);
        Ok(())
    }

    fn release(&mut self, addr: u64) {
        let order = self.live.remove(&addr).unwrap();
        for f in self.frames_of(addr, order) {
            self.alloc_frames.remove(&f);
        }
    }

    fn any_alloc(&self, s: usize, e: usize) -> bool {
        self.alloc_frames.range(s..e).next().is_some()
    }

    /// Expected outcome of a range operation, applying it when it succeeds.
    fn range_op(&mut self, kind: RangeKind, start: u64, end: u64) -> Result<(), MmError> {
        let fr = |a: u64| ((a - self.base) / F) as usize;
        let (s, e) = match kind {
            RangeKind::Reserve => {
                let s = (start / F * F).max(self.base);
                let e = end.div_ceil(F).saturating_mul(F).min(self.end);
                if s >= e {
                    return Ok(());
                }
                (fr(s), fr(e))
            }
            RangeKind::Add | RangeKind::Release => {
                let (s, e) = (start.div_ceil(F) * F, end / F * F);
                if s >= e {
                    return Ok(());
                }
                if s < self.base {
                    return Err(MmError::OutOfSpan { addr: s });
                }
                if e > self.end {
                    return Err(MmError::OutOfSpan { addr: e });
                }
                (fr(s), fr(e))
            }
        };
        if self.any_alloc(s, e) {
            return Err(MmError::RangeInUse { start, end });
        }
        for f in s..e {
            match kind {
                RangeKind::Add => self.added[f] = true,
                RangeKind::Reserve => self.reserved[f] = true,
                RangeKind::Release => {
                    self.added[f] = true;
                    self.reserved[f] = false;
                }
            }
        }
        Ok(())
    }

    fn state(&self, f: usize) -> FrameState {
        if self.alloc_frames.contains(&f) {
            FrameState::Allocated
        } else if self.reserved[f] {
            FrameState::Reserved
        } else if self.added[f] {
            FrameState::Free
        } else {
            FrameState::Hole
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum RangeKind {
    Add,
    Reserve,
    Release,
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    Free(usize),
    AllocBatch(usize, usize),
    FreeBatch(usize, usize),
    /// Bad frees: 0 double free, 1 misaligned, 2 out of span, 3 wrong order.
    BadFree(u8, usize),
    Range(RangeKind, u32, u32, u16, u16),
}

fn order() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 0usize..=2, 2 => 3usize..=6, 1 => 7usize..=MAX_ORDER]
}

fn range_kind() -> impl Strategy<Value = RangeKind> {
    prop_oneof![
        Just(RangeKind::Add),
        Just(RangeKind::Reserve),
        Just(RangeKind::Release)
    ]
}

fn op(with_ranges: bool) -> impl Strategy<Value = Op> {
    let range = (
        range_kind(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(k, a, b, x, y)| Op::Range(k, a, b, x, y));
    prop_oneof![
        8 => order().prop_map(Op::Alloc),
        8 => any::<usize>().prop_map(Op::Free),
        2 => (order(), 0usize..40).prop_map(|(o, n)| Op::AllocBatch(o, n)),
        2 => (any::<usize>(), 1usize..40).prop_map(|(i, n)| Op::FreeBatch(i, n)),
        2 => (0u8..4, any::<usize>()).prop_map(|(k, i)| Op::BadFree(k, i)),
        (if with_ranges { 2 } else { 0 }) => range,
    ]
}

/// A span: base (random 4 MiB slot + random frame offset) and frame count.
fn span() -> impl Strategy<Value = (u64, usize)> {
    (0u64..64, 0u64..1024, 1usize..=2600)
        .prop_map(|(slot, off, n)| (slot * (F << MAX_ORDER) + off * F, n))
}

/// Setup: random add / reserve ranges (frame numbers relative to base, with
/// sub-frame byte offsets).
fn setup() -> impl Strategy<Value = Vec<(bool, u32, u32, u16, u16)>> {
    prop::collection::vec(
        (
            prop::bool::weighted(0.6),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
        ),
        1..8,
    )
}

/// Maps raw numbers to an address range inside (or at the edges of) the span.
fn raw_range(m: &Model, a: u32, b: u32, x: u16, y: u16) -> (u64, u64) {
    let n = m.added.len() as u64;
    let s = u64::from(a) % (n + 1);
    let e = s + u64::from(b) % (n + 1 - s);
    let sx = if x.is_multiple_of(3) {
        u64::from(x) % F
    } else {
        0
    };
    let ey = if y.is_multiple_of(3) {
        u64::from(y) % F
    } else {
        0
    };
    let start = m.base + s * F + sx;
    let end = (m.base + e * F + ey).max(start);
    (start, end)
}

fn check_against_model(b: &Buddy<'_>, m: &Model, full: bool) -> Result<(), TestCaseError> {
    prop_assert_eq!(b.free_frames(), m.free_frames());
    if full {
        b.check_invariants();
        for f in 0..m.added.len() {
            prop_assert_eq!(
                b.frame_state(m.base + f as u64 * F),
                Ok(m.state(f)),
                "frame {}",
                f
            );
        }
    }
    Ok(())
}

/// Sets up a buddy and its model, runs `ops` on both, then frees everything;
/// without range ops the final state must equal the post-setup state.
fn run(
    base: u64,
    n: usize,
    setup: &[(bool, u32, u32, u16, u16)],
    ops: &[Op],
    with_ranges: bool,
) -> Result<(), TestCaseError> {
    let mut st = vec![u64::MAX; Buddy::words_needed(n)];
    let mut b = Buddy::new(&mut st, base, n).unwrap();
    let mut m = Model::new(base, n);
    for &(add, x, y, p, q) in setup {
        let (s, e) = raw_range(&m, x, y, p, q);
        let kind = if add {
            RangeKind::Add
        } else {
            RangeKind::Reserve
        };
        let want = m.range_op(kind, s, e);
        let got = if add {
            b.add_free_range(s, e)
        } else {
            b.reserve_range(s, e)
        };
        prop_assert_eq!(got, want);
    }
    check_against_model(&b, &m, true)?;
    let start = b.snapshot();
    let max_at_start = b
        .alloc(MAX_ORDER)
        .map(|a| b.free(a, MAX_ORDER).unwrap())
        .is_ok();
    prop_assert_eq!(max_at_start, m.has_block(MAX_ORDER));
    prop_assert_eq!(b.snapshot(), start.clone());

    let mut freed: Vec<(u64, usize)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let live: Vec<(u64, usize)> = m.live.iter().map(|(&a, &o)| (a, o)).collect();
        match *op {
            Op::Alloc(order) => match b.alloc(order) {
                Ok(a) => m.take(a, order)?,
                Err(e) => {
                    prop_assert_eq!(e, MmError::OutOfMemory);
                    prop_assert!(
                        !m.has_block(order),
                        "OOM at order {} with a free block",
                        order
                    );
                }
            },
            Op::Free(i) => {
                if let Some(&(a, o)) = live.get(i % live.len().max(1)) {
                    prop_assert_eq!(b.free(a, o), Ok(()));
                    m.release(a);
                    freed.push((a, o));
                }
            }
            Op::AllocBatch(order, count) => {
                let mut out = vec![0u64; count];
                let got = b.alloc_batch(order, &mut out);
                for &a in &out[..got] {
                    m.take(a, order)?;
                }
                if got < count {
                    prop_assert!(
                        !m.has_block(order),
                        "short batch at order {} with a free block",
                        order
                    );
                }
            }
            Op::FreeBatch(i, count) => {
                if let Some(&(_, o)) = live.get(i % live.len().max(1)) {
                    let v: Vec<u64> = live
                        .iter()
                        .filter(|x| x.1 == o)
                        .map(|x| x.0)
                        .take(count)
                        .collect();
                    prop_assert_eq!(b.free_batch(o, &v), Ok(()));
                    for a in v {
                        m.release(a);
                        freed.push((a, o));
                    }
                }
            }
            Op::BadFree(kind, i) => {
                let before = b.snapshot();
                let pick = live.get(i % live.len().max(1)).copied();
                let r = match kind {
                    0 => freed
                        .get(i % freed.len().max(1))
                        .copied()
                        .filter(|(a, _)| !m.live.contains_key(a))
                        .map(|(a, o)| {
                            // Freed and not reallocated at that address: some
                            // other live block may now overlap it, but never a
                            // live allocation of that order at that address.
                            b.free(a, o)
                        }),
                    1 => pick.map(|(a, o)| b.free(a + if o > 0 { F << (o - 1) } else { 8 }, o)),
                    2 => Some(b.free(
                        if i % 2 == 0 {
                            base.wrapping_sub(F)
                        } else {
                            b.end() + (i as u64 % 64) * F
                        },
                        0,
                    )),
                    _ => pick.map(|(a, o)| {
                        b.free(
                            a,
                            if o == MAX_ORDER {
                                0
                            } else {
                                o + 1 + i % (MAX_ORDER - o)
                            },
                        )
                    }),
                };
                if let Some(r) = r {
                    prop_assert!(r.is_err(), "bad free {} accepted", kind);
                    if kind == 2 {
                        prop_assert!(matches!(r, Err(MmError::OutOfSpan { .. })), "{:?}", r);
                    }
                    if kind == 1 {
                        prop_assert!(matches!(r, Err(MmError::Misaligned { .. })), "{:?}", r);
                    }
                }
                prop_assert_eq!(b.snapshot(), before);
            }
            Op::Range(kind, x, y, p, q) => {
                let (s, e) = raw_range(&m, x, y, p, q);
                let before = b.snapshot();
                let want = m.range_op(kind, s, e);
                let got = match kind {
                    RangeKind::Add => b.add_free_range(s, e),
                    RangeKind::Reserve => b.reserve_range(s, e),
                    RangeKind::Release => b.release_range(s, e),
                };
                prop_assert_eq!(got, want);
                if got.is_err() {
                    prop_assert_eq!(b.snapshot(), before);
                }
            }
        }
        check_against_model(&b, &m, step % 16 == 15)?;
    }
    check_against_model(&b, &m, true)?;

    // Free everything (largest first, then the rest in address order).
    let mut live: Vec<(u64, usize)> = m.live.iter().map(|(&a, &o)| (a, o)).collect();
    live.sort_by_key(|&(a, o)| (std::cmp::Reverse(o), a));
    for (a, o) in live {
        prop_assert_eq!(b.free(a, o), Ok(()));
        m.release(a);
    }
    check_against_model(&b, &m, true)?;
    if !with_ranges {
        prop_assert_eq!(b.snapshot(), start, "not back to the start state");
        let max_now = b.alloc(MAX_ORDER).is_ok();
        prop_assert_eq!(max_now, max_at_start);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Random alloc / free / batch / bad-free sequences over random spans
    /// with random holes and reservations; freeing everything restores the
    /// exact start state.
    #[test]
    fn buddy_matches_model((base, n) in span(), setup in setup(), ops in prop::collection::vec(op(false), 0..160)) {
        run(base, n, &setup, &ops, false)?;
    }

    /// Same with add / reserve / release ranges interleaved (model decides
    /// which must fail with `RangeInUse` / `OutOfSpan`).
    #[test]
    fn buddy_with_range_ops_matches_model((base, n) in span(), setup in setup(), ops in prop::collection::vec(op(true), 0..160)) {
        run(base, n, &setup, &ops, true)?;
    }
}
