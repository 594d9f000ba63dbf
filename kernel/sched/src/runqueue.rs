//! O(1) per-CPU run queue with a bounded-share hot queue.
//!
//! # Layout: intrusive links indexed by [`ThreadRef`]
//!
//! Every queue (64 normal levels + 64 hot levels) is a doubly-linked FIFO whose
//! links live in fixed arrays `next[CAP]` / `prev[CAP]` indexed by the
//! thread's handle, plus one byte per thread telling which list (if any) it is
//! on. Chosen over per-level ring buffers over a shared pool because:
//!
//! * **`remove(t)` is O(1)** (a killed or migrated thread is unlinked through
//!   its own `prev`/`next`); a ring buffer would need an O(n) search and a
//!   shift to close the hole.
//! * **No per-level capacity**: rings must either reserve `CAP` slots for each
//!   of the 128 levels or share a pool with its own allocator; here any mix of
//!   levels fits, and memory is `9 * CAP` bytes + 1 KiB of heads/tails.
//! * A thread is on at most one list by construction, so double enqueues are
//!   caught (`EnqueueError::AlreadyQueued`) instead of silently duplicating.
//!
//! The price is that the queue indexes handles directly: it holds handles
//! `0..CAP` (the kernel's TCB table size), and a handle `>= CAP` is refused
//! with [`EnqueueError::CapacityExceeded`] (the queue is full for it).
//!
//! # Picking
//!
//! Non-empty levels are tracked in one `u64` bitmap per queue (bit `p` =
//! [`Priority`] `p`), so `pick_next` is: choose the queue (hot-service rule
//! below), `63 - lzcnt(bitmap)` for the most urgent level, pop that level's
//! head. No loops, no allocation.
//!
//! # Hot-queue service rule (anti-starvation bound)
//!
//! Threads enqueued with [`Queue::Hot`] are served **before** normal threads,
//! regardless of priority (highest hot level first, FIFO within a level), but
//! only for a bounded share: the queue counts the consecutive hot picks made
//! while normal threads were waiting (`hot_streak`); once it reaches the *hot
//! budget* `B` (default [`DEFAULT_HOT_BUDGET`] = 4), the next pick is taken
//! from the normal queue and the count restarts. Hence:
//!
//! > among any `B + 1` consecutive `pick_next` calls made while the normal
//! > queue is non-empty, at least one returns a normal thread;
//!
//! normal threads get at least `1 / (B + 1)` of the picks however many threads
//! keep waking up hot. With `B = 0` the hot queue is only served when the
//! normal queue is empty. Within the normal queue, priority is strict.
//!
//! # Work stealing
//!
//! [`RunQueue::steal_half`] takes `len / 2` threads, starting from the
//! **lowest** normal priority level and, within a level, from the tail (the
//! threads that would run last here). Hot threads (cache-hot, latency
//! sensitive) are taken only once every normal thread is gone.

use core::fmt;

use crate::ema::Queue;
use crate::thread::{Priority, ThreadRef};

/// Default hot budget: at most 4 hot picks in a row while normal threads wait.
pub const DEFAULT_HOT_BUDGET: u32 = 4;

const LEVELS: usize = Priority::LEVELS;
/// Lists `0..64` are the normal levels, `64..128` the hot levels.
const LISTS: usize = 2 * LEVELS;
const NIL: u32 = u32::MAX;
const NOT_QUEUED: u8 = u8::MAX;
const NORMAL: usize = 0;
const HOT: usize = 1;

/// Errors of [`RunQueue::enqueue`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EnqueueError {
    /// The queue has no slot for this handle: its index is `>= capacity`.
    /// (Slots are indexed by handle, so this is the queue's "full" case.)
    CapacityExceeded {
        /// The refused handle.
        thread: ThreadRef,
        /// The queue's `CAP`.
        capacity: usize,
    },
    /// The thread is already on this queue (hot or normal).
    AlreadyQueued(ThreadRef),
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CapacityExceeded { thread, capacity } => {
                write!(
                    f,
                    "run queue full: {thread} is not below capacity {capacity}"
                )
            }
            Self::AlreadyQueued(t) => write!(f, "{t} is already queued"),
        }
    }
}

impl core::error::Error for EnqueueError {}

/// Error of [`RunQueue::remove`]: the thread is not on this queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NotQueued(pub ThreadRef);

impl fmt::Display for NotQueued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not on this run queue", self.0)
    }
}

impl core::error::Error for NotQueued {}

/// Per-CPU O(1) run queue of up to `CAP` thread handles (`0..CAP`).
///
/// See the [module documentation](self) for the layout, the hot-queue rule and
/// the stealing order. All operations are O(1) except the stealing ones
/// (O(stolen + 64)), and none allocates or panics on bad input.
pub struct RunQueue<const CAP: usize> {
    /// Non-empty levels: `[normal, hot]`, bit `p` = priority `p`.
    bitmap: [u64; 2],
    /// Consecutive hot picks while normal threads were waiting.
    hot_streak: u32,
    hot_budget: u32,
    /// Queued threads: `[normal, hot]`.
    count: [u32; 2],
    head: [u32; LISTS],
    tail: [u32; LISTS],
    next: [u32; CAP],
    prev: [u32; CAP],
    /// List index of each thread, or `NOT_QUEUED`.
    list: [u8; CAP],
}

impl<const CAP: usize> Default for RunQueue<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
const fn list_of(prio: Priority, class: Queue) -> usize {
    match class {
        Queue::Normal => prio.get() as usize,
        Queue::Hot => LEVELS + prio.get() as usize,
    }
}

#[inline]
const fn decode(list: u8) -> (Priority, Queue) {
    let l = list as usize;
    let class = if l >= LEVELS {
        Queue::Hot
    } else {
        Queue::Normal
    };
    match Priority::new((l % LEVELS) as u8) {
        Ok(p) => (p, class),
        Err(_) => (Priority::MIN, class), // unreachable: l % 64 < 64
    }
}

impl<const CAP: usize> RunQueue<CAP> {
    /// An empty queue with the [`DEFAULT_HOT_BUDGET`].
    #[must_use]
    pub const fn new() -> Self {
        Self::with_hot_budget(DEFAULT_HOT_BUDGET)
    }

    /// An empty queue whose hot queue may be served at most `budget` times in
    /// a row while normal threads wait (see the module docs).
    #[must_use]
    pub const fn with_hot_budget(budget: u32) -> Self {
        const { assert!(CAP < NIL as usize, "RunQueue CAP must be below u32::MAX") };
        Self {
            bitmap: [0; 2],
            hot_streak: 0,
            hot_budget: budget,
            count: [0; 2],
            head: [NIL; LISTS],
            tail: [NIL; LISTS],
            next: [NIL; CAP],
            prev: [NIL; CAP],
            list: [NOT_QUEUED; CAP],
        }
    }

    /// The largest handle index + 1 this queue accepts.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        CAP
    }

    /// The current hot budget.
    #[must_use]
    pub const fn hot_budget(&self) -> u32 {
        self.hot_budget
    }

    /// Changes the hot budget (takes effect at the next pick).
    pub fn set_hot_budget(&mut self, budget: u32) {
        self.hot_budget = budget;
    }

    /// Number of queued threads (hot + normal).
    #[inline]
    #[must_use]
    pub const fn len(&self) -> usize {
        (self.count[NORMAL] + self.count[HOT]) as usize
    }

    /// Number of threads on the hot queue.
    #[inline]
    #[must_use]
    pub const fn len_hot(&self) -> usize {
        self.count[HOT] as usize
    }

    /// `true` if no thread is queued.
    #[inline]
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `t` is queued, if it is.
    #[must_use]
    pub fn placement(&self, t: ThreadRef) -> Option<(Priority, Queue)> {
        match self.list.get(t.index()) {
            Some(&l) if l != NOT_QUEUED => Some(decode(l)),
            _ => None,
        }
    }

    /// `true` if `t` is on this queue.
    #[must_use]
    pub fn contains(&self, t: ThreadRef) -> bool {
        self.placement(t).is_some()
    }

    /// Highest priority among the queued threads of `class`.
    #[must_use]
    pub const fn highest_priority(&self, class: Queue) -> Option<Priority> {
        let b = self.bitmap[match class {
            Queue::Normal => NORMAL,
            Queue::Hot => HOT,
        }];
        if b == 0 {
            None
        } else {
            match Priority::new(63 - b.leading_zeros() as u8) {
                Ok(p) => Some(p),
                Err(_) => None,
            }
        }
    }

    /// `t`'s index if it can be queued: below `CAP` and not queued yet.
    #[inline]
    fn queueable(&self, t: ThreadRef) -> Result<usize, EnqueueError> {
        let i = t.index();
        match self.list.get(i) {
            None => Err(EnqueueError::CapacityExceeded {
                thread: t,
                capacity: CAP,
            }),
            Some(&l) if l != NOT_QUEUED => Err(EnqueueError::AlreadyQueued(t)),
            Some(_) => Ok(i),
        }
    }

    /// Appends `t` to the FIFO of level `prio` of queue `class`.
    ///
    /// # Errors
    /// * [`EnqueueError::CapacityExceeded`] if `t.index() >= CAP`;
    /// * [`EnqueueError::AlreadyQueued`] if `t` is already on this queue.
    #[inline]
    pub fn enqueue(
        &mut self,
        t: ThreadRef,
        prio: Priority,
        class: Queue,
    ) -> Result<(), EnqueueError> {
        let i = self.queueable(t)?;
        let list = list_of(prio, class);
        let old_tail = self.tail[list];
        self.prev[i] = old_tail;
        self.next[i] = NIL;
        if old_tail == NIL {
            self.head[list] = t.0;
        } else {
            self.next[old_tail as usize] = t.0;
        }
        self.tail[list] = t.0;
        self.list[i] = list as u8;
        let q = list / LEVELS;
        self.bitmap[q] |= 1 << (list % LEVELS);
        self.count[q] += 1;
        Ok(())
    }

    /// Which queue the next pick serves, per the hot-service rule.
    #[inline]
    const fn choose(&self) -> Option<usize> {
        let hot = self.bitmap[HOT] != 0;
        let normal = self.bitmap[NORMAL] != 0;
        if hot && (!normal || self.hot_streak < self.hot_budget) {
            Some(HOT)
        } else if normal {
            Some(NORMAL)
        } else {
            None
        }
    }

    /// Removes and returns the next thread to run: the head of the most urgent
    /// non-empty level of the hot queue, unless the hot budget is used up and
    /// normal threads wait, else of the normal queue. O(1).
    #[inline]
    pub fn pick_next(&mut self) -> Option<ThreadRef> {
        let q = self.choose()?;
        if q == HOT {
            if self.bitmap[NORMAL] != 0 {
                self.hot_streak += 1;
            }
        } else {
            self.hot_streak = 0;
        }
        let level = 63 - self.bitmap[q].leading_zeros() as usize;
        let list = q * LEVELS + level;
        let h = self.head[list];
        // `unlink` of a head (no predecessor), inlined: the path of every switch.
        let i = h as usize;
        let n = self.next[i];
        self.head[list] = n;
        if n == NIL {
            self.tail[list] = NIL;
            self.bitmap[q] &= !(1 << level);
        } else {
            self.prev[n as usize] = NIL;
        }
        self.list[i] = NOT_QUEUED;
        self.count[q] -= 1;
        Some(ThreadRef(h))
    }

    /// [`enqueue`](Self::enqueue) of `t` followed by [`pick_next`](Self::pick_next), in one
    /// step: the running thread is put back and the next one taken (a yield). Same result
    /// and same state afterwards as the two calls, the hot streak included. When the pick
    /// would come from `t`'s own list (the usual yield between equals), the list is rotated
    /// in place: its head leaves, `t` joins its tail, and the bitmaps and counts are left
    /// as they are (one in, one out). When `t` would be picked straight back (its list empty
    /// and the most urgent), nothing is queued at all.
    ///
    /// # Errors
    /// As [`enqueue`](Self::enqueue); the queue is then unchanged and nothing is picked.
    #[inline(always)]
    pub fn requeue_pick(
        &mut self,
        t: ThreadRef,
        prio: Priority,
        class: Queue,
    ) -> Result<ThreadRef, EnqueueError> {
        let i = self.queueable(t)?;
        let list = list_of(prio, class);
        // The bitmaps as they would be with `t` queued; `choose` on them.
        let bit = 1 << (list % LEVELS);
        let (mut normal, mut hot) = (self.bitmap[NORMAL], self.bitmap[HOT]);
        if class == Queue::Hot {
            hot |= bit;
        } else {
            normal |= bit;
        }
        let serve_hot = hot != 0 && (normal == 0 || self.hot_streak < self.hot_budget);
        let (served, base) = if serve_hot {
            (hot, LEVELS)
        } else {
            (normal, 0)
        };
        if base + 63 - served.leading_zeros() as usize != list {
            // The pick comes from another list: the two steps as they are.
            self.enqueue(t, prio, class)?;
            // Never `None`: `t` was just queued.
            return Ok(self.pick_next().unwrap_or(t));
        }
        if !serve_hot {
            self.hot_streak = 0;
        } else if normal != 0 {
            self.hot_streak += 1;
        }
        let h = self.head[list];
        if h == NIL {
            // `t` alone on the most urgent list: picked straight back.
            return Ok(t);
        }
        let hi = h as usize;
        let n = self.next[hi];
        self.list[hi] = NOT_QUEUED;
        self.list[i] = list as u8;
        self.next[i] = NIL;
        if n == NIL {
            self.head[list] = t.0;
            self.prev[i] = NIL;
        } else {
            self.head[list] = n;
            self.prev[n as usize] = NIL;
            let old_tail = self.tail[list];
            self.next[old_tail as usize] = t.0;
            self.prev[i] = old_tail;
        }
        self.tail[list] = t.0;
        Ok(ThreadRef(h))
    }

    /// What [`pick_next`](Self::pick_next) would return, without removing it.
    #[inline]
    #[must_use]
    pub fn peek_next(&self) -> Option<ThreadRef> {
        let q = self.choose()?;
        let level = 63 - self.bitmap[q].leading_zeros() as usize;
        Some(ThreadRef(self.head[q * LEVELS + level]))
    }

    /// Takes `t` off the queue (it was killed, or is migrating) and returns
    /// where it was. O(1).
    ///
    /// # Errors
    /// [`NotQueued`] if `t` is not on this queue.
    pub fn remove(&mut self, t: ThreadRef) -> Result<(Priority, Queue), NotQueued> {
        match self.list.get(t.index()) {
            Some(&l) if l != NOT_QUEUED => {
                self.unlink(t.0, l as usize);
                Ok(decode(l))
            }
            _ => Err(NotQueued(t)),
        }
    }

    /// Unlinks queued thread `t` from list `list` (which it is on).
    #[inline]
    fn unlink(&mut self, t: u32, list: usize) {
        let i = t as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        if p == NIL {
            self.head[list] = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail[list] = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.list[i] = NOT_QUEUED;
        let q = list / LEVELS;
        if p == NIL && n == NIL {
            self.bitmap[q] &= !(1 << (list % LEVELS));
        }
        self.count[q] -= 1;
    }

    /// Removes the thread a thief should take next: the tail of the lowest
    /// normal level, or, when no normal thread is left, of the lowest hot one.
    fn pop_for_steal(&mut self) -> Option<ThreadRef> {
        let q = if self.bitmap[NORMAL] != 0 {
            NORMAL
        } else if self.bitmap[HOT] != 0 {
            HOT
        } else {
            return None;
        };
        let list = q * LEVELS + self.bitmap[q].trailing_zeros() as usize;
        let t = self.tail[list];
        self.unlink(t, list);
        Some(ThreadRef(t))
    }

    /// Moves half of the queued threads (`len / 2`, rounded down) into `out`,
    /// lowest priority first, normal before hot (see the module docs), and
    /// returns how many were moved. The caller re-enqueues them on its own
    /// queue, with the priorities recorded in their TCBs.
    ///
    /// `out.extend` receives an iterator that removes threads lazily, so an
    /// `Extend` that stops early leaves the rest queued (the count returned is
    /// what it actually took). For a fixed buffer use
    /// [`steal_half_into`](Self::steal_half_into).
    pub fn steal_half<E: Extend<ThreadRef>>(&mut self, out: &mut E) -> usize {
        let want = self.len() / 2;
        let mut it = Steal {
            rq: self,
            remaining: want,
        };
        out.extend(&mut it);
        want - it.remaining
    }

    /// Like [`steal_half`](Self::steal_half) into a slice: moves
    /// `min(len / 2, out.len())` threads to the front of `out` and returns
    /// that count.
    pub fn steal_half_into(&mut self, out: &mut [ThreadRef]) -> usize {
        let want = (self.len() / 2).min(out.len());
        let mut n = 0;
        for slot in &mut out[..want] {
            match self.pop_for_steal() {
                Some(t) => {
                    *slot = t;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Threads on list `list`, head first.
    fn iter_list(&self, list: usize) -> impl Iterator<Item = ThreadRef> + '_ {
        let mut cur = self.head[list];
        core::iter::from_fn(move || {
            if cur == NIL {
                None
            } else {
                let t = cur;
                cur = self.next[t as usize];
                Some(ThreadRef(t))
            }
        })
    }

    /// Threads of `class` at level `prio`, in FIFO order.
    pub fn iter_level(&self, prio: Priority, class: Queue) -> impl Iterator<Item = ThreadRef> + '_ {
        self.iter_list(list_of(prio, class))
    }

    /// Checks every internal invariant (test helper).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn assert_consistent(&self) {
        let mut counts = [0u32; 2];
        let mut bitmaps = [0u64; 2];
        let mut seen = 0usize;
        for list in 0..LISTS {
            let q = list / LEVELS;
            let mut prev = NIL;
            let mut cur = self.head[list];
            let mut n = 0u32;
            while cur != NIL {
                let i = cur as usize;
                assert!(i < CAP);
                assert_eq!(self.list[i] as usize, list, "thread {i} list tag");
                assert_eq!(self.prev[i], prev, "thread {i} prev link");
                prev = cur;
                cur = self.next[i];
                n += 1;
                assert!(n as usize <= CAP, "cycle in list {list}");
            }
            assert_eq!(self.tail[list], prev, "tail of list {list}");
            if n > 0 {
                bitmaps[q] |= 1 << (list % LEVELS);
            }
            counts[q] += n;
            seen += n as usize;
        }
        assert_eq!(bitmaps, self.bitmap, "bitmaps");
        assert_eq!(counts, self.count, "counts");
        let tagged = self.list.iter().filter(|&&l| l != NOT_QUEUED).count();
        assert_eq!(tagged, seen, "threads tagged queued but on no list");
    }
}

/// Lazy iterator handed to `Extend` by [`RunQueue::steal_half`].
struct Steal<'a, const CAP: usize> {
    rq: &'a mut RunQueue<CAP>,
    remaining: usize,
}

impl<const CAP: usize> Iterator for Steal<'_, CAP> {
    type Item = ThreadRef;

    fn next(&mut self) -> Option<ThreadRef> {
        if self.remaining == 0 {
            return None;
        }
        let t = self.rq.pop_for_steal()?;
        self.remaining -= 1;
        Some(t)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<const CAP: usize> fmt::Debug for RunQueue<CAP> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Levels<'a, const CAP: usize>(&'a RunQueue<CAP>, usize);
        impl<const CAP: usize> fmt::Debug for Levels<'_, CAP> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut m = f.debug_map();
                for level in (0..LEVELS).rev() {
                    if self.0.bitmap[self.1] & (1 << level) != 0 {
                        let list = self.1 * LEVELS + level;
                        m.entry(&level, &ListDbg(self.0, list));
                    }
                }
                m.finish()
            }
        }
        struct ListDbg<'a, const CAP: usize>(&'a RunQueue<CAP>, usize);
        impl<const CAP: usize> fmt::Debug for ListDbg<'_, CAP> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter_list(self.1).map(|t| t.0))
                    .finish()
            }
        }
        f.debug_struct("RunQueue")
            .field("capacity", &CAP)
            .field("len", &self.len())
            .field("hot_budget", &self.hot_budget)
            .field("hot_streak", &self.hot_streak)
            .field("hot", &Levels(self, HOT))
            .field("normal", &Levels(self, NORMAL))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
