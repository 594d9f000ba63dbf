//! MCS queue lock (Mellor-Crummey & Scott, 1991).

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::ops::{Deref, DerefMut};
use core::pin::{Pin, pin};
use core::ptr;
// Only ever touched by the thread that owns the node: never a loom atomic.
use core::sync::atomic::AtomicBool as OwnerFlag;

use crate::WithLock;
use crate::sync::{AtomicBool, AtomicPtr, Ordering, const_fn_unless_loom, spin_loop};

/// One waiter's place in an [`McsLock`] queue.
///
/// A node is lent to the lock for one acquisition, as a `Pin<&mut McsNode>`
/// that the returned [`McsGuard`] keeps borrowed: it cannot be moved, freed
/// or used for another acquisition until the guard is dropped, which is
/// exactly as long as the lock's queue may point at it. A waiter spins only
/// on its own node's `locked` flag; its successor writes its own address
/// into this node's `next`.
///
/// # One node per CPU per nesting level
///
/// A CPU holds (or waits for) at most one MCS lock per node, so it needs as
/// many nodes as MCS locks it can hold at once. The kernel gives each CPU a
/// small per-CPU array, `[McsNode; MAX_NESTING]`, indexed by nesting level:
/// one level per context that can interrupt the previous one (thread,
/// soft-IRQ, hard-IRQ, NMI: 4, as Linux's qspinlock does), times the number
/// of MCS locks a context nests. Code at level `k` uses node `k`; since an
/// interrupt at a higher level only ever uses higher nodes and returns
/// before the lower level resumes, node `k` is never lent twice. The
/// per-CPU array never moves or is freed, so the kernel may create the
/// `Pin<&mut McsNode>` with [`Pin::new_unchecked`] from its exclusive
/// per-CPU access (interrupts or preemption disabled as the level requires).
/// Outside such hot paths a node on the stack (`core::pin::pin!`) is fine:
/// that is what [`McsLock::with`] does.
///
/// Nodes are cache-line aligned so that the nodes of different CPUs (e.g.
/// adjacent per-CPU slots) never share the line their owners spin on.
///
/// Soundness does not rest on the guard's destructor: if a guard is leaked
/// (`mem::forget`), the node stays queued, and reusing it for another
/// acquisition panics (before touching any queue), while dropping it aborts
/// the program (a queued node must never be freed: other CPUs may still
/// write to it).
#[repr(C, align(64))]
pub struct McsNode {
    /// Set by the owner before it queues; cleared by the predecessor to hand
    /// the lock over.
    locked: AtomicBool,
    /// The successor in the queue, written by that successor.
    next: AtomicPtr<McsNode>,
    /// The node is in some lock's queue (owner-only bookkeeping).
    queued: OwnerFlag,
    _pinned: PhantomPinned,
}

impl McsNode {
    const_fn_unless_loom! {
        /// A node that is in no queue.
        #[must_use]
        pub fn new() -> Self {
            Self {
                locked: AtomicBool::new(false),
                next: AtomicPtr::new(ptr::null_mut()),
                queued: OwnerFlag::new(false),
                _pinned: PhantomPinned,
            }
        }
    }

    /// Whether this node is lent to a lock (its guard is alive, or leaked).
    #[must_use]
    pub fn is_queued(&self) -> bool {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Default for McsNode {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for McsNode {
    fn drop(&mut self) {
        // (Under loom, a failed model unwinds its threads, possibly while
        // they wait in a queue: report that failure rather than abort.)
        if self.is_queued() && !loom_unwinding() {
            abort_queued_node_dropped();
        }
    }
}

#[cfg(all(loom, test))]
fn loom_unwinding() -> bool {
    std::thread::panicking()
}

#[cfg(not(all(loom, test)))]
fn loom_unwinding() -> bool {
    false
}

impl fmt::Debug for McsNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McsNode")
            .field("queued", &self.is_queued())
            .finish_non_exhaustive()
    }
}

/// Never returns, and never unwinds past its caller: a node that is still in
/// a queue must not be freed. With `panic = "abort"` (the kernel) the panic
/// stops the CPU; under unwinding the second panic, raised while the first
/// unwinds, aborts the process.
#[cold]
#[inline(never)]
fn abort_queued_node_dropped() -> ! {
    struct PanicAgain;
    impl Drop for PanicAgain {
        fn drop(&mut self) {
            panic!("McsNode dropped while queued: aborting");
        }
    }
    let _abort = PanicAgain;
    panic!("McsNode dropped while still queued in an McsLock (its guard was leaked)");
}

/// MCS queue lock protecting a `T` (`McsLock` alone, with `T = ()`, is a
/// plain lock).
///
/// The lock itself is one pointer, `tail`, to the last queued node (null when
/// free).
///
/// * **Acquire**: initialise the caller's node, `prev = tail.swap(node)`;
///   if `prev` is null the lock was free, otherwise link `prev.next = node`
///   and spin on `node.locked` until the predecessor clears it. Uncontended:
///   one locked RMW (the `swap`) plus stores to the caller's own node.
/// * **Release**: if `node.next` is set, clear `next.locked`; otherwise
///   `compare_exchange(tail, node → null)`, and if that fails a successor is
///   between its `swap` and its link: wait for the link, then hand over.
///   Uncontended: one load and one locked RMW (the queue algorithm needs the
///   CAS: a plain store could drop a waiter that just swapped itself in), so
///   an uncontended lock+unlock costs two RMWs against TAS's one.
/// * **Fairness**: strict FIFO in `swap` order, and each waiter spins on its
///   own cache line: a hand-off costs O(1) cache-line transfers however many
///   CPUs wait (the ticket lock invalidates every waiter). As with the
///   ticket lock, a preempted waiter stalls its successors.
/// * **Deadlines**: an MCS waiter cannot leave the queue without the much
///   more complex abortable-MCS protocol, so [`McsLock::lock_with_deadline`]
///   does not queue: it waits (without writing) until the lock looks free
///   and retries [`McsLock::try_lock`]; it can be overtaken by queued
///   waiters until its deadline.
///
/// Orderings: the acquiring `swap` is `AcqRel` (it publishes the node's
/// initialisation and reads the `Release` of a previous holder's freeing
/// CAS); links are `Release` stores read by `Acquire` loads; the hand-off is
/// a `Release` store of `locked = false` read by the waiter's `Acquire` load.
pub struct McsLock<T: ?Sized = ()> {
    tail: AtomicPtr<McsNode>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through an `McsGuard`, at most one of which
// exists at a time (the holder is the queue head), with acquire/release
// ordering between successive holders; so sharing the lock hands `T` from
// thread to thread (needs `T: Send`). The queue's raw node pointers are only
// dereferenced under the protocol's ownership rules (see `acquire`/`release`).
unsafe impl<T: ?Sized + Send> Sync for McsLock<T> {}
impl<T> McsLock<T> {
    const_fn_unless_loom! {
        /// An unlocked lock around `value` (`const`: usable in `static`s).
        pub fn new(value: T) -> Self {
            Self { tail: AtomicPtr::new(ptr::null_mut()), data: UnsafeCell::new(value) }
        }
    }

    /// Consumes the lock and returns the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> McsLock<T> {
    /// Queues `node` and spins until the lock is acquired. The guard keeps
    /// `node` borrowed until it is dropped.
    ///
    /// # Panics
    ///
    /// If `node` is still queued because the guard of a previous acquisition
    /// with it was leaked.
    #[inline]
    pub fn lock<'a>(&'a self, node: Pin<&'a mut McsNode>) -> McsGuard<'a, T> {
        let node = claim(node);
        self.acquire(node);
        McsGuard {
            lock: self,
            node,
            _data: PhantomData,
        }
    }

    /// Acquires the lock if it is free (nobody holds it or waits for it),
    /// without waiting.
    ///
    /// # Panics
    ///
    /// As [`McsLock::lock`].
    #[inline]
    pub fn try_lock<'a>(&'a self, node: Pin<&'a mut McsNode>) -> Option<McsGuard<'a, T>> {
        let node = claim(node);
        self.try_acquire(node).then(|| McsGuard {
            lock: self,
            node,
            _data: PhantomData,
        })
    }

    /// Spins until the lock is acquired, or returns `None` once
    /// `deadline_passed()` returns `true` while it is still unavailable
    /// (`deadline_passed` is not called if the lock is free at once). Such
    /// a waiter does not queue (see the type's documentation).
    ///
    /// # Panics
    ///
    /// As [`McsLock::lock`].
    pub fn lock_with_deadline<'a>(
        &'a self,
        node: Pin<&'a mut McsNode>,
        mut deadline_passed: impl FnMut() -> bool,
    ) -> Option<McsGuard<'a, T>> {
        let node = claim(node);
        loop {
            if self.try_acquire(node) {
                return Some(McsGuard {
                    lock: self,
                    node,
                    _data: PhantomData,
                });
            }
            if deadline_passed() {
                return None;
            }
            while self.is_locked() {
                if deadline_passed() {
                    return None;
                }
                spin_loop();
            }
        }
    }

    /// Runs `f` on the data under the lock, queueing a node on the stack.
    #[inline]
    pub fn with<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        let node = pin!(McsNode::new());
        f(&mut self.lock(node))
    }

    /// The data, through an exclusive borrow of the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether the lock is held or waited for (racy snapshot).
    #[must_use]
    pub fn is_locked(&self) -> bool {
        !self.tail.load(Ordering::Relaxed).is_null()
    }

    /// The queue's tail (tests only: lets them wait until a thread queued).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn tail(&self) -> *const McsNode {
        self.tail.load(Ordering::SeqCst)
    }

    /// Initialises `node`, appends it to the queue and waits to be its head.
    #[inline]
    fn acquire(&self, node: &McsNode) {
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        node.locked.store(true, Ordering::Relaxed);
        node.queued.store(true, Ordering::Relaxed);
        let me = ptr::from_ref(node).cast_mut();
        let prev = self.tail.swap(me, Ordering::AcqRel);
        if !prev.is_null() {
            Self::wait_as_successor(prev, node);
        }
    }

    /// Links behind `prev` (the tail `node` replaced) and spins until `prev`'s
    /// owner hands over. `prev` stays a raw pointer: its owner frees its node as
    /// soon as it has handed over, which may be before this function returns, and
    /// a `&McsNode` argument would assert the node lives for the whole call
    /// (Miri, Stacked Borrows: "deallocating while item is strongly protected",
    /// `tests::mcs_lock_is_fifo`, until 2026-12-07). Only the link field is borrowed,
    /// and used for one store only.
    #[cold]
    #[inline(never)]
    fn wait_as_successor(prev: *const McsNode, node: &McsNode) {
        // SAFETY: `prev` was the tail, so its owner is still in the queue: it
        // cannot leave `release` (nor free or reuse its node) before it has seen
        // this link, because its CAS `tail: prev → null` now fails and it waits
        // for `prev.next`. The field reference is used for the store below only.
        let link = unsafe { &(*prev).next };
        // `Release`: publishes `node`'s initialisation to the predecessor,
        // who writes `node.locked` after reading this link.
        link.store(ptr::from_ref(node).cast_mut(), Ordering::Release);
        while node.locked.load(Ordering::Acquire) {
            spin_loop();
        }
    }

    /// Takes the lock if the queue is empty.
    #[inline]
    fn try_acquire(&self, node: &McsNode) -> bool {
        node.next.store(ptr::null_mut(), Ordering::Relaxed);
        node.locked.store(true, Ordering::Relaxed);
        let me = ptr::from_ref(node).cast_mut();
        let acquired = self
            .tail
            .compare_exchange(ptr::null_mut(), me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        // Only the owning thread reads `queued`: setting it after the CAS
        // is fine (nothing can run in between on this thread).
        node.queued.store(acquired, Ordering::Relaxed);
        acquired
    }

    /// Hands the lock to `node`'s successor, or empties the queue.
    #[inline]
    fn release(&self, node: &McsNode) {
        let mut next = node.next.load(Ordering::Acquire);
        if next.is_null() {
            let me = ptr::from_ref(node).cast_mut();
            if self
                .tail
                .compare_exchange(me, ptr::null_mut(), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                node.queued.store(false, Ordering::Relaxed);
                return;
            }
            next = Self::wait_for_link(node);
        }
        // SAFETY: `next`'s owner linked itself behind `node` and is spinning
        // on `next.locked`; it cannot leave, so its node is alive, until the
        // store below. After that store this thread never touches `next`.
        unsafe { &*next }.locked.store(false, Ordering::Release);
        node.queued.store(false, Ordering::Relaxed);
    }

    /// A successor swapped itself into `tail` but has not linked yet.
    #[cold]
    #[inline(never)]
    fn wait_for_link(node: &McsNode) -> *mut McsNode {
        loop {
            let next = node.next.load(Ordering::Acquire);
            if !next.is_null() {
                return next;
            }
            spin_loop();
        }
    }
}

/// Checks that `node` is in no queue and turns the exclusive pin into the
/// shared reference the queue protocol works with (the `'a` exclusive borrow
/// itself lives on in the guard's lifetime). `queued` is set by
/// `acquire`/`try_acquire` once the node is actually in the queue.
#[inline]
fn claim(node: Pin<&mut McsNode>) -> &McsNode {
    let node = node.into_ref().get_ref();
    assert!(
        !node.is_queued(),
        "McsNode reused while still queued (its guard was leaked)"
    );
    node
}

impl<T: ?Sized> WithLock for McsLock<T> {
    type Target = T;

    #[inline]
    fn with_lock<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        self.with(f)
    }
}

impl<T: Default> Default for McsLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for McsLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McsLock")
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// Holds an [`McsLock`] with a borrowed [`McsNode`]; the data is reached
/// through `Deref`/`DerefMut`, and the lock is released (handed to the next
/// queued node) when the guard is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct McsGuard<'a, T: ?Sized> {
    lock: &'a McsLock<T>,
    /// The head of the queue; exclusively borrowed (pinned) for `'a`.
    node: &'a McsNode,
    /// The guard hands out `&mut T`: Send/Sync like `&mut T`.
    _data: PhantomData<&'a mut T>,
}

impl<T: ?Sized> Deref for McsGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard's node is the queue head, so no other guard of
        // this lock exists until this one is dropped.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for McsGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for McsGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.release(self.node);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for McsGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("McsGuard").field(&&**self).finish()
    }
}
