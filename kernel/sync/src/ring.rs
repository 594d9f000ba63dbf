//! A single-producer single-consumer byte ring (the kernel's per-CPU console rings).
//!
//! [`split`] turns a [`RingState`] (the two indices, each on its own cache line) and a
//! power-of-two byte buffer into one [`Producer`] and one [`Consumer`]. Each handle is a
//! unique owner of its side (not `Clone`), so "one producer, one consumer" is a matter of
//! who holds which handle; the kernel keeps the producer in its CPU's block (reached with
//! interrupts off) and the consumer behind the console lock.
//!
//! Protocol: `head` and `tail` count bytes produced and consumed since the split (they
//! wrap at `usize::MAX`, positions are `index & (cap - 1)`). The producer writes only into
//! `[head, tail + cap)`, then publishes with a `Release` store of `head`; the consumer
//! reads only `[tail, head)` after an `Acquire` load of `head`, then frees with a
//! `Release` store of `tail`, which the producer loads with `Acquire` before reusing the
//! space. The regions never overlap, so bytes are never read while they are written and
//! never overwritten before they are read: FIFO order, no loss, no corruption. No locked
//! instruction anywhere (plain loads and stores on x86).
//!
//! Writing is zero-copy on both sides: [`Producer::spare`] hands out the free space as (at
//! most) two mutable slices, in order, for the caller to fill (the kernel copies user
//! memory straight into them) and [`Producer::commit`] publishes a prefix of them;
//! [`Consumer::readable`] hands out the queued bytes as two slices and
//! [`Consumer::consume`] frees a prefix.

use crate::sync::{AtomicUsize, Ordering};
use core::marker::PhantomData;
use core::ptr::NonNull;

/// One index on its own cache line (the producer's and the consumer's do not false-share).
#[repr(align(64))]
#[derive(Debug)]
struct Padded(AtomicUsize);

/// The largest ring a loom model may split: its bytes have shadow cells in [`RingState`].
#[cfg(all(loom, test))]
const SHADOW: usize = 8;

/// The shared indices of one ring. Create it with [`RingState::new`], then [`split`].
#[derive(Debug)]
pub struct RingState {
    head: Padded,
    tail: Padded,
    /// Under loom only, one cell per byte of the buffer (the buffer is plain memory, which
    /// loom does not see): the producer writes a byte's cell where it may write the byte
    /// (the free space, after it loads `tail`; a `push_with`'s bytes), the consumer reads
    /// it where it reads the byte (the queued bytes, after it loads `head`), so loom checks
    /// that `head`'s and `tail`'s orderings order every byte access (a causality
    /// violation otherwise). Until 2026-12-06 the loom model could not fail on them: every
    /// `Release`/`Acquire` here made `Relaxed` still passed (found by review).
    #[cfg(all(loom, test))]
    shadow: [loom::cell::UnsafeCell<()>; SHADOW],
}

impl RingState {
    crate::sync::const_fn_unless_loom! {
        /// Fresh indices (an empty ring).
        pub fn new() -> RingState {
            RingState {
                head: Padded(AtomicUsize::new(0)),
                tail: Padded(AtomicUsize::new(0)),
                #[cfg(all(loom, test))]
                shadow: core::array::from_fn(|_| loom::cell::UnsafeCell::new(())),
            }
        }
    }

    /// Under loom, a write of the bytes at positions `[from, from + n)` of a ring of
    /// `mask + 1` bytes, on their shadow cells; nothing otherwise.
    #[inline(always)]
    fn shadow_write(&self, from: usize, n: usize, mask: usize) {
        #[cfg(all(loom, test))]
        for i in 0..n {
            self.shadow[from.wrapping_add(i) & mask].with_mut(|_| ());
        }
        #[cfg(not(all(loom, test)))]
        let _ = (from, n, mask);
    }

    /// Under loom, a read of the bytes at positions `[from, from + n)` (as
    /// [`RingState::shadow_write`]); nothing otherwise.
    #[inline(always)]
    fn shadow_read(&self, from: usize, n: usize, mask: usize) {
        #[cfg(all(loom, test))]
        for i in 0..n {
            self.shadow[from.wrapping_add(i) & mask].with(|_| ());
        }
        #[cfg(not(all(loom, test)))]
        let _ = (from, n, mask);
    }
}

impl RingState {
    /// Bytes queued, as either side last published them (a snapshot, without either side:
    /// for a look that must not wait for, or take, the consumer).
    #[inline]
    pub fn len(&self) -> usize {
        // The tail first: both only grow and the tail never passes the head, so a head
        // read after it is at least that tail (head first, a drain between the two loads
        // past the head read made the difference wrap to about 2^64; found by review).
        let tail = self.tail.0.load(Ordering::Acquire);
        self.head.0.load(Ordering::Acquire).wrapping_sub(tail)
    }

    /// Nothing queued (a snapshot)?
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for RingState {
    fn default() -> Self {
        Self::new()
    }
}

/// The writing side of a ring (see the module documentation).
#[derive(Debug)]
pub struct Producer<'a> {
    state: &'a RingState,
    buf: NonNull<u8>,
    mask: usize,
    /// Our own copy of `head` (only we write it).
    head: usize,
    /// Bytes [`Producer::spare`] last handed out and not committed yet.
    spare: usize,
    /// `tail + cap` as last loaded: `head` may grow up to here without loading `tail`
    /// again (the consumer only moves `tail` forward). Counters are taken not to wrap (2^64
    /// bytes) on this path.
    limit: usize,
    _buf: PhantomData<&'a mut [u8]>,
}

/// The reading side of a ring (see the module documentation).
#[derive(Debug)]
pub struct Consumer<'a> {
    state: &'a RingState,
    buf: NonNull<u8>,
    mask: usize,
    /// Our own copy of `tail` (only we write it).
    tail: usize,
    _buf: PhantomData<&'a [u8]>,
}

// SAFETY: each handle is the unique owner of its side of the ring; moving it to another
// thread moves that role. The shared indices are atomics, and the regions each side
// touches are disjoint by the protocol in the module documentation.
unsafe impl Send for Producer<'_> {}
// SAFETY: as for `Producer`.
unsafe impl Send for Consumer<'_> {}

/// Makes an empty ring of `storage.len()` bytes (a power of two) over `state`; `None` if
/// the length is not a power of two.
pub fn split<'a>(
    state: &'a mut RingState,
    storage: &'a mut [u8],
) -> Option<(Producer<'a>, Consumer<'a>)> {
    let cap = storage.len();
    if !cap.is_power_of_two() {
        return None;
    }
    #[cfg(all(loom, test))]
    assert!(
        cap <= SHADOW,
        "a loom model's ring has {SHADOW} shadow cells"
    );
    state.head.0.store(0, Ordering::Relaxed);
    state.tail.0.store(0, Ordering::Relaxed);
    let state: &'a RingState = state;
    let buf = NonNull::from(storage).cast::<u8>();
    Some((
        Producer {
            state,
            buf,
            mask: cap - 1,
            head: 0,
            spare: 0,
            limit: cap,
            _buf: PhantomData,
        },
        Consumer {
            state,
            buf,
            mask: cap - 1,
            tail: 0,
            _buf: PhantomData,
        },
    ))
}

impl<'a> Producer<'a> {
    /// The ring's size in bytes.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Bytes queued (a snapshot: the consumer may free more at any time).
    #[inline]
    pub fn len(&self) -> usize {
        self.head
            .wrapping_sub(self.state.tail.0.load(Ordering::Acquire))
    }

    /// Nothing queued?
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The free space, in order: the bytes from `head` to the end of the buffer, then the
    /// rest from its start (empty unless the free space wraps). Fill a prefix of
    /// `first ++ second`, then [`Producer::commit`] its length.
    #[inline(always)]
    pub fn spare(&mut self) -> (&mut [u8], &mut [u8]) {
        let tail = self.state.tail.0.load(Ordering::Acquire);
        let cap = self.mask + 1;
        let free = cap - self.head.wrapping_sub(tail);
        let start = self.head & self.mask;
        let first = free.min(cap - start);
        self.spare = free;
        self.state.shadow_write(self.head, free, self.mask);
        let p = self.buf.as_ptr();
        // SAFETY: `[start, start + first)` and `[0, free - first)` lie in the buffer
        // (`first <= cap - start`, `free <= cap`) and are the free region `[head, tail +
        // cap)`, which the consumer does not read until `head` moves past it (published
        // by `commit`, which needs `&mut self`, so these borrows end first). They do not
        // overlap each other (the free region is at most `cap` long).
        unsafe {
            (
                core::slice::from_raw_parts_mut(p.add(start), first),
                core::slice::from_raw_parts_mut(p, free - first),
            )
        }
    }

    /// Publishes the first `n` bytes of the last [`Producer::spare`] to the consumer.
    ///
    /// # Panics
    /// If `n` exceeds what that `spare` handed out (minus what was committed since).
    #[inline(always)]
    pub fn commit(&mut self, n: usize) {
        assert!(n <= self.spare, "commit beyond the spare space");
        self.spare -= n;
        self.head = self.head.wrapping_add(n);
        self.state.head.0.store(self.head, Ordering::Release);
    }

    /// The fast path of short writes: if `n` bytes are free *contiguously* at `head` (no
    /// wrap), hands them to `fill` and publishes them when it returns `Ok`; nothing is
    /// published on `Err`. `None` (and `fill` not called) when they are not free that way.
    #[inline(always)]
    pub fn push_with<E>(
        &mut self,
        n: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Option<Result<(), E>> {
        let cap = self.mask + 1;
        let end = self.head.checked_add(n)?;
        if end > self.limit {
            self.limit = self.state.tail.0.load(Ordering::Acquire) + cap;
            if end > self.limit {
                return None;
            }
        }
        let start = self.head & self.mask;
        if n > cap - start {
            return None;
        }
        self.state.shadow_write(self.head, n, self.mask);
        // SAFETY: `[start, start + n)` lies in the buffer (`n <= cap - start`) and in the
        // free region `[head, tail + cap)` (`head + n <= limit <= tail + cap` for a `tail`
        // loaded with `Acquire`: the consumer is done with those bytes), which the consumer
        // does not read until `head` moves past it (below, after the borrow ends).
        let dst = unsafe { core::slice::from_raw_parts_mut(self.buf.as_ptr().add(start), n) };
        let r = fill(dst);
        if r.is_ok() {
            self.head = self.head.wrapping_add(n);
            self.spare = 0;
            self.state.head.0.store(self.head, Ordering::Release);
        }
        Some(r)
    }

    /// Copies as much of `bytes` as fits and publishes it; returns the count copied.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let (a, b) = self.spare();
        let n1 = a.len().min(bytes.len());
        a[..n1].copy_from_slice(&bytes[..n1]);
        let n2 = b.len().min(bytes.len() - n1);
        b[..n2].copy_from_slice(&bytes[n1..n1 + n2]);
        self.commit(n1 + n2);
        n1 + n2
    }
}

impl<'a> Consumer<'a> {
    /// The ring's shared state (for [`RingState::len`] without the consumer).
    #[inline(always)]
    pub fn state(&self) -> &'a RingState {
        self.state
    }

    /// The ring's size in bytes.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Bytes queued (a snapshot: the producer may add more at any time).
    #[inline]
    pub fn len(&self) -> usize {
        self.state
            .head
            .0
            .load(Ordering::Acquire)
            .wrapping_sub(self.tail)
    }

    /// Nothing queued?
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queued bytes, oldest first: from `tail` to the end of the buffer, then the rest
    /// from its start (empty unless they wrap).
    pub fn readable(&self) -> (&[u8], &[u8]) {
        let head = self.state.head.0.load(Ordering::Acquire);
        let cap = self.mask + 1;
        let used = head.wrapping_sub(self.tail);
        self.state.shadow_read(self.tail, used, self.mask);
        let start = self.tail & self.mask;
        let first = used.min(cap - start);
        let p = self.buf.as_ptr();
        // SAFETY: both ranges lie in the buffer (as in `spare`) and are the published
        // region `[tail, head)`: the producer wrote them before its `Release` store of
        // `head` (our `Acquire` load saw it) and does not write them again until `tail`
        // moves past them (`consume`, which needs `&mut self`, so these borrows end first).
        unsafe {
            (
                core::slice::from_raw_parts(p.add(start), first),
                core::slice::from_raw_parts(p, used - first),
            )
        }
    }

    /// Frees the oldest `n` queued bytes.
    ///
    /// # Panics
    /// If fewer than `n` bytes are queued.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consume beyond the queued bytes");
        self.tail = self.tail.wrapping_add(n);
        self.state.tail.0.store(self.tail, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn ring(cap: usize) -> (Producer<'static>, Consumer<'static>) {
        let state = Box::leak(Box::new(RingState::new()));
        let buf = Box::leak(vec![0u8; cap].into_boxed_slice());
        split(state, buf).expect("power of two")
    }

    fn drain(c: &mut Consumer<'_>, max: usize) -> Vec<u8> {
        let (a, b) = c.readable();
        let mut out: Vec<u8> = a.iter().chain(b).copied().take(max).collect();
        out.truncate(max);
        let n = out.len();
        c.consume(n);
        out
    }

    #[test]
    fn refuses_other_sizes() {
        let mut s = RingState::new();
        assert!(split(&mut s, &mut [0u8; 12]).is_none());
        let mut s = RingState::new();
        assert!(split(&mut s, &mut []).is_none());
    }

    #[test]
    fn order_across_the_wrap() {
        let (mut p, mut c) = ring(8);
        assert_eq!(p.push(b"abcdef"), 6);
        assert_eq!(drain(&mut c, 4), b"abcd");
        // 6 free: 2 at the end, 4 at the start.
        let (a, b) = p.spare();
        assert_eq!((a.len(), b.len()), (2, 4));
        assert_eq!(p.push(b"ghijklmn"), 6, "only the free space is taken");
        assert_eq!(p.len(), 8);
        assert_eq!(p.push(b"x"), 0, "full");
        let (a, b) = c.readable();
        assert_eq!((a, b), (&b"efgh"[..], &b"ijkl"[..]));
        assert_eq!(drain(&mut c, 100), b"efghijkl");
        assert!(c.is_empty() && p.is_empty());
    }

    #[test]
    fn push_with_is_contiguous_and_all_or_nothing() {
        let (mut p, mut c) = ring(8);
        assert_eq!(
            p.push_with(5, |d| {
                d.copy_from_slice(b"abcde");
                Ok::<(), ()>(())
            }),
            Some(Ok(()))
        );
        assert_eq!(
            p.push_with(1, |d| {
                d[0] = b'x';
                Err(())
            }),
            Some(Err(())),
            "not published"
        );
        assert_eq!(p.len(), 5);
        assert_eq!(p.push_with(4, |_| Ok::<(), ()>(())), None, "only 3 free");
        assert_eq!(drain(&mut c, 4), b"abcd");
        // 7 free but only 3 before the end: a 4-byte push would wrap.
        assert_eq!(p.push_with(4, |_| Ok::<(), ()>(())), None, "would wrap");
        assert_eq!(
            p.push_with(3, |d| {
                d.copy_from_slice(b"fgh");
                Ok::<(), ()>(())
            }),
            Some(Ok(()))
        );
        assert_eq!(
            p.push_with(4, |d| {
                d.copy_from_slice(b"ijkl");
                Ok::<(), ()>(())
            }),
            Some(Ok(()))
        );
        assert_eq!(drain(&mut c, 100), b"efghijkl");
    }

    #[test]
    #[should_panic(expected = "commit beyond")]
    fn commit_is_bounded_by_spare() {
        let (mut p, mut c) = ring(4);
        p.push(b"ab");
        drain(&mut c, 2);
        let _ = p.spare();
        p.commit(5);
    }

    #[test]
    #[should_panic(expected = "consume beyond")]
    fn consume_is_bounded() {
        let (mut p, mut c) = ring(4);
        p.push(b"ab");
        c.consume(3);
    }

    #[test]
    fn two_threads_keep_fifo_order() {
        const N: usize = if cfg!(miri) { 20_000 } else { 200_000 };
        let (mut p, mut c) = ring(64);
        let prod = std::thread::spawn(move || {
            let mut i = 0usize;
            while i < N {
                let chunk: Vec<u8> = (i..(i + 1 + i % 37).min(N)).map(|k| k as u8).collect();
                let n = p.push(&chunk);
                i += n;
                if n == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0usize;
        while next < N {
            let got = drain(&mut c, 1 + next % 23);
            for b in got {
                assert_eq!(b, next as u8, "byte {next}");
                next += 1;
            }
        }
        prod.join().unwrap();
        assert!(c.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Drain(usize),
        /// Fill a prefix of the spare space but commit less.
        Partial(usize, usize),
        /// `push_with` of n bytes, succeeding or not.
        With(usize, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..80).prop_map(Op::Push),
            (0usize..80).prop_map(Op::Drain),
            (0usize..80, 0usize..80).prop_map(|(a, b)| Op::Partial(a, b)),
            (0usize..80, any::<bool>()).prop_map(|(n, ok)| Op::With(n, ok)),
        ]
    }

    proptest! {
        /// Any interleaving of pushes, partial commits and drains: FIFO against a model
        /// queue, never more than the capacity queued, full and empty exactly when the
        /// model says so, across many wrap-arounds.
        #[test]
        fn matches_a_fifo_model(shift in 0u32..7, ops in proptest::collection::vec(op(), 1..200)) {
            let cap = 1usize << shift;
            let (mut p, mut c) = ring(cap);
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut seq = 0u8;
            for op in ops {
                match op {
                    Op::Push(n) => {
                        let bytes: Vec<u8> = (0..n).map(|_| { seq = seq.wrapping_add(1); seq }).collect();
                        let took = p.push(&bytes);
                        prop_assert_eq!(took, n.min(cap - model.len()));
                        model.extend(&bytes[..took]);
                    }
                    Op::Partial(fill, keep) => {
                        let (a, b) = p.spare();
                        prop_assert_eq!(a.len() + b.len(), cap - model.len());
                        let fill = fill.min(a.len() + b.len());
                        let keep = keep.min(fill);
                        let mut written = Vec::new();
                        for k in 0..fill {
                            seq = seq.wrapping_add(1);
                            if k < a.len() { a[k] = seq } else { b[k - a.len()] = seq }
                            written.push(seq);
                        }
                        p.commit(keep);
                        model.extend(&written[..keep]);
                    }
                    Op::With(n, ok) => {
                        let bytes: Vec<u8> = (0..n).map(|_| { seq = seq.wrapping_add(1); seq }).collect();
                        let fits = n <= cap - model.len();
                        match p.push_with(n, |d| { d.copy_from_slice(&bytes); if ok { Ok(()) } else { Err(()) } }) {
                            // Refused: not free, or free only across the wrap (never an empty push).
                            None => prop_assert!(!fits || n > 0, "an empty push was refused"),
                            Some(r) => {
                                prop_assert!(fits);
                                prop_assert_eq!(r.is_ok(), ok);
                                if ok { model.extend(&bytes); }
                            }
                        }
                    }
                    Op::Drain(n) => {
                        let got = drain(&mut c, n);
                        let want: Vec<u8> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(p.len(), model.len());
                prop_assert_eq!(c.len(), model.len());
                prop_assert!(p.len() <= cap);
            }
            let rest = drain(&mut c, usize::MAX);
            prop_assert_eq!(rest, model.into_iter().collect::<Vec<u8>>());
        }
    }
}
