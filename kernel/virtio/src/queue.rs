//! The driver side of a split virtqueue (virtio 1.2, section 2.7).
//!
//! Each buffer is one descriptor (virtio 1.0 devices accept any layout, so a network frame
//! and its header share one buffer): descriptor `id` is free or in flight, and a buffer's
//! 64-bit cookie comes back with it. The driver adds buffers ([`SplitQueue::add`]), makes
//! them visible with one index store ([`SplitQueue::publish`], which says whether the device
//! must be notified), and reaps what the device used ([`SplitQueue::pop`]). When the device
//! negotiated `VIRTIO_F_IN_ORDER`, descriptors are used in ring order: fixed ones
//! ([`SplitQueue::new_in_order`]) and free-list ones ([`SplitQueue::new_ring_order`], e.g.
//! the control queue's commands) alike.
//!
//! The device is not trusted. A used index that moves by more than the queue size, a used id
//! that is not in flight (out of range, or returned twice) and a written length past the
//! buffer are [`QueueError`]s; the queue is then poisoned (every later call fails) and the
//! driver drops the device instead of reading memory the device points it at.
//!
//! Layout: `desc` (16 bytes per entry), `avail` (`flags`, `idx`, `ring[size]`,
//! `used_event`), `used` (`flags`, `idx`, `ring[size]` of (id u32, len u32), `avail_event`).

use crate::Ram;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

/// Descriptor flag: the device writes this buffer (receive buffers).
pub const DESC_F_WRITE: u16 = 2;
/// `avail.flags`: the driver asks for no interrupt (without `EVENT_IDX`).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `used.flags`: the device asks for no notification (without `EVENT_IDX`).
pub const USED_F_NO_NOTIFY: u16 = 1;
/// Largest queue size (virtio: 32768 for split rings).
pub const MAX_SIZE: u16 = 32768;

/// Bytes of the descriptor table of a queue of `size` entries.
pub const fn desc_bytes(size: u16) -> usize {
    16 * size as usize
}
/// Bytes of the driver (avail) area.
pub const fn avail_bytes(size: u16) -> usize {
    6 + 2 * size as usize
}
/// Bytes of the device (used) area.
pub const fn used_bytes(size: u16) -> usize {
    6 + 8 * size as usize
}

/// Where a queue's three areas are: virtual addresses for the driver, physical ones for the
/// device. Alignment: 16 (desc), 2 (avail), 4 (used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Entries (a power of two, 1..=[`MAX_SIZE`]).
    pub size: u16,
    /// Descriptor table.
    pub desc: (usize, u64),
    /// Driver area (avail ring).
    pub avail: (usize, u64),
    /// Device area (used ring).
    pub used: (usize, u64),
}

/// A device that broke the protocol; the queue stays poisoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue size is not a power of two in 1..=32768, or an area is misaligned.
    BadLayout,
    /// The used index moved from `from` to `to`: more than the queue size at once.
    UsedIndexJump {
        /// The last used index the driver consumed.
        from: u16,
        /// The index the device published.
        to: u16,
    },
    /// The device returned descriptor `id`, which is not in flight (out of range, or
    /// returned already).
    BadUsedId {
        /// The id in the used ring.
        id: u32,
    },
    /// The device says it wrote `len` bytes into a buffer of `cap`.
    BadUsedLength {
        /// Descriptor id.
        id: u16,
        /// Written length claimed.
        len: u32,
        /// The buffer's size.
        cap: u32,
    },
    /// An earlier error poisoned the queue.
    Poisoned,
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            QueueError::BadLayout => write!(f, "queue size or area alignment unusable"),
            QueueError::UsedIndexJump { from, to } => {
                write!(f, "device's used index jumped from {from} to {to}")
            }
            QueueError::BadUsedId { id } => {
                write!(f, "device returned descriptor {id}, which is not in flight")
            }
            QueueError::BadUsedLength { id, len, cap } => write!(
                f,
                "device claims {len} bytes written into descriptor {id} of {cap} bytes"
            ),
            QueueError::Poisoned => write!(f, "queue disabled after an earlier device error"),
        }
    }
}

/// A buffer the device has finished with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// The cookie given to [`SplitQueue::add`].
    pub cookie: u64,
    /// Bytes the device wrote (receive buffers; 0 or anything for transmit ones).
    pub len: u32,
    /// The descriptor (free again).
    pub id: u16,
}

/// `vring_need_event`: whether moving an index from `old` to `new` crosses `event`.
#[inline]
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    cookie: u64,
    cap: u32,
    writable: bool,
    busy: bool,
    /// The next descriptor of a chain (`add_chain`), if any.
    next: Option<u16>,
    /// Written once by `new_fixed`; never in the free list.
    fixed: bool,
}

/// Descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;

/// The driver's half of one split virtqueue.
#[derive(Debug)]
pub struct SplitQueue {
    layout: Layout,
    mask: u16,
    event_idx: bool,
    /// Next avail index to fill.
    avail_idx: u16,
    /// Avail index last published.
    published: u16,
    /// Used index consumed up to.
    last_used: u16,
    /// Free descriptors: taken from the back (LIFO: the one just returned, warm in cache),
    /// or from the front in ring order (`new_ring_order`); returned at the back.
    free: VecDeque<u16>,
    /// `new_ring_order`: descriptors are taken in ring order and must come back in it.
    ring_order: bool,
    /// Ring order: the head of the oldest chain in flight (the next the device must use).
    ring_oldest: u16,
    slots: Vec<Slot>,
    poisoned: bool,
    notifications_on: bool,
    /// In-order mode (`new_in_order`): buffers in flight.
    in_order_flight: u16,
    /// In-order receive: a batch being taken (one used entry for several buffers): the id
    /// of its last buffer and that buffer's written length.
    batch_end: Option<(u16, u32)>,
}

impl SplitQueue {
    /// A queue over `layout`, whose memory the caller has zeroed. `event_idx`: whether
    /// `RING_EVENT_IDX` was negotiated. Allocates the free list and the cookie table.
    pub fn new<R: Ram>(ram: &R, layout: Layout, event_idx: bool) -> Result<Self, QueueError> {
        let size = layout.size;
        if size == 0
            || !size.is_power_of_two()
            || size > MAX_SIZE
            || !layout.desc.0.is_multiple_of(16)
            || !layout.desc.1.is_multiple_of(16)
            || !layout.avail.0.is_multiple_of(2)
            || !layout.used.0.is_multiple_of(4)
            || !layout.used.1.is_multiple_of(4)
        {
            return Err(QueueError::BadLayout);
        }
        let q = Self {
            layout,
            mask: size - 1,
            event_idx,
            avail_idx: 0,
            published: 0,
            last_used: 0,
            free: (0..size).rev().collect(),
            ring_order: false,
            ring_oldest: 0,
            slots: alloc::vec![Slot::default(); usize::from(size)],
            poisoned: false,
            notifications_on: true,
            in_order_flight: 0,
            batch_end: None,
        };
        ram.write_u16(layout.avail.0, 0);
        ram.write_u16(layout.avail.0 + 2, 0);
        q.write_used_event(ram, 0);
        Ok(q)
    }

    /// A queue like [`Self::new`] for a device that negotiated `VIRTIO_F_IN_ORDER` (virtio
    /// 1.2, 2.7.9: the driver uses descriptors in ring order, from 0 and wrapping at the end
    /// of the table): [`Self::add`] and [`Self::add_chain`] take the next free descriptors in
    /// that order (commands of two descriptors: 0->1, then 2->3, ...), and the device must
    /// return the oldest buffer first; any other id poisons the queue
    /// ([`QueueError::BadUsedId`]). A batch (one used entry for several buffers, which the
    /// spec allows) is not taken here: the one user, the control queue, has one command in
    /// flight at a time, so a device has no batch to make. Until 2026-12-05 the control queue
    /// took descriptors from the LIFO free list whatever was negotiated: its second command
    /// was 1->0 (found by review).
    pub fn new_ring_order<R: Ram>(
        ram: &R,
        layout: Layout,
        event_idx: bool,
    ) -> Result<Self, QueueError> {
        let mut q = Self::new(ram, layout, event_idx)?;
        q.free = (0..layout.size).collect();
        q.ring_order = true;
        Ok(q)
    }

    /// A queue whose descriptor `id` always names the same buffer, `buf(id)` = (address,
    /// size, device-writable): the descriptors are written here once, and the data path only
    /// hands ids back and forth ([`Self::post`], [`Self::pop_burst`]) — no descriptor writes
    /// for receive buffers, one length store for transmit ones. No free list: the caller
    /// knows which ids it holds.
    pub fn new_fixed<R: Ram>(
        ram: &R,
        layout: Layout,
        event_idx: bool,
        mut buf: impl FnMut(u16) -> (u64, u32, bool),
    ) -> Result<Self, QueueError> {
        let mut q = Self::new(ram, layout, event_idx)?;
        q.free.clear();
        for id in 0..layout.size {
            let (pa, cap, writable) = buf(id);
            let d = layout.desc.0 + 16 * usize::from(id);
            ram.write_u64(d, pa);
            let flags = if writable { DESC_F_WRITE } else { 0 };
            ram.write_u64(d + 8, u64::from(cap) | (u64::from(flags) << 32));
            q.slots[usize::from(id)] = Slot {
                cookie: u64::from(id),
                cap,
                writable,
                busy: false,
                next: None,
                fixed: true,
            };
        }
        Ok(q)
    }

    /// A fixed-descriptor queue for a device that negotiated `VIRTIO_F_IN_ORDER`: buffers are
    /// posted in ring order (descriptor `i` at avail slot `i`, written here once, so posting
    /// is one index increment and, for transmit, one length store), and the device uses them
    /// in that order, so reaping reads the used index and, where lengths matter (receive),
    /// one entry per buffer, or per batch of buffers ([`Self::pop_in_order`]).
    pub fn new_in_order<R: Ram>(
        ram: &R,
        layout: Layout,
        event_idx: bool,
        buf: impl FnMut(u16) -> (u64, u32, bool),
    ) -> Result<Self, QueueError> {
        let q = Self::new_fixed(ram, layout, event_idx, buf)?;
        for i in 0..layout.size {
            ram.write_u16(layout.avail.0 + 4 + 2 * usize::from(i), i);
        }
        Ok(q)
    }

    /// In-order mode: posts the next descriptor (with a new length for a device-readable
    /// buffer); its id, or `None` when all are in flight.
    #[inline]
    pub fn post_next<R: Ram>(&mut self, ram: &R, len: Option<u32>) -> Option<u16> {
        if self.in_order_flight == self.layout.size || self.poisoned {
            return None;
        }
        let id = self.avail_idx & self.mask;
        if let Some(len) = len {
            let cap = self.slots[usize::from(id)].cap;
            ram.write_u32(self.layout.desc.0 + 16 * usize::from(id) + 8, len.min(cap));
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.in_order_flight += 1;
        Some(id)
    }

    /// In-order mode: the id [`Self::post_next`] will use next.
    #[inline]
    pub fn next_id(&self) -> Option<u16> {
        (self.in_order_flight < self.layout.size).then_some(self.avail_idx & self.mask)
    }

    /// In-order mode: buffers in flight.
    pub fn in_order_flight(&self) -> u16 {
        self.in_order_flight
    }

    /// In-order mode: used buffers waiting, by the device's index (poisoned queue, or an
    /// index past what is in flight: an error, the queue poisoned).
    #[inline]
    fn in_order_waiting<R: Ram>(&mut self, ram: &R) -> Result<u16, QueueError> {
        if self.poisoned {
            return Err(QueueError::Poisoned);
        }
        let idx = ram.read_u16(self.layout.used.0 + 2);
        let waiting = idx.wrapping_sub(self.last_used);
        if waiting > self.in_order_flight {
            return self.poison(QueueError::UsedIndexJump {
                from: self.last_used,
                to: idx,
            });
        }
        Ok(waiting)
    }

    /// In-order mode: posts the next `n` device-writable descriptors again, as they were
    /// (receive buffers just reaped by [`Self::pop_in_order`]): one index update for all.
    #[inline]
    pub fn repost_in_order(&mut self, n: u16) {
        if self.poisoned {
            return;
        }
        let n = n.min(self.layout.size - self.in_order_flight);
        self.avail_idx = self.avail_idx.wrapping_add(n);
        self.in_order_flight += n;
    }

    /// In-order mode, buffers whose length does not matter (transmit): takes every buffer
    /// the device used, by its index alone; returns how many. An index past what is in
    /// flight poisons the queue.
    #[inline]
    pub fn complete_in_order<R: Ram>(&mut self, ram: &R) -> Result<u16, QueueError> {
        let n = self.in_order_waiting(ram)?;
        self.last_used = self.last_used.wrapping_add(n);
        self.in_order_flight -= n;
        Ok(n)
    }

    /// In-order mode, buffers the device writes (receive): up to `max` used buffers, in
    /// order, each with the length the device wrote; `each(id, len)`. The caller re-posts
    /// them with [`Self::repost_in_order`] (same ids, same order).
    ///
    /// A device may use a batch of buffers with one used entry, the id of the batch's last
    /// buffer, and move the used index by the batch's size (virtio 1.2, 2.7.9). The entry's
    /// length is the last buffer's; the spec gives none for the buffers it skips, so those
    /// come with `len` `None`: what they hold cannot be measured (for virtio-net, an Ethernet
    /// frame carries no length of its own, and taking the whole buffer would hand up stale
    /// bytes), and the caller drops them. A batch may span calls (`max`). An entry whose id
    /// is neither the next buffer nor a later one the used index covers still poisons the
    /// queue. Until 2026-12-05 only the next buffer's id was accepted: a batching device had
    /// the queue poisoned (`BadUsedId`; found by review). One entry per buffer, the usual
    /// case, keeps a loop of its own (no batch state in it).
    #[inline]
    pub fn pop_in_order<R: Ram>(
        &mut self,
        ram: &R,
        max: usize,
        mut each: impl FnMut(u16, Option<u32>),
    ) -> Result<usize, QueueError> {
        let waiting = self.in_order_waiting(ram)?;
        let n = usize::from(waiting).min(max);
        fence(Ordering::Acquire);
        let mut k = 0;
        // One entry per buffer (the usual case), until an entry names a later buffer.
        if self.batch_end.is_none() {
            while k < n {
                let slot = self.last_used & self.mask;
                let e = self.layout.used.0 + 4 + 8 * usize::from(slot);
                let id = ram.read_u32(e);
                let len = ram.read_u32(e + 4);
                if id != u32::from(slot) {
                    break;
                }
                let cap = self.slots[usize::from(slot)].cap;
                if len > cap {
                    return self.poison(QueueError::BadUsedLength { id: slot, len, cap });
                }
                self.last_used = self.last_used.wrapping_add(1);
                self.in_order_flight -= 1;
                k += 1;
                each(slot, Some(len));
            }
        }
        // Batches (rare): the rest, with the batch state kept across calls.
        while k < n {
            let slot = self.last_used & self.mask;
            let len = match self.batch_end {
                None => {
                    let e = self.layout.used.0 + 4 + 8 * usize::from(slot);
                    let id = ram.read_u32(e);
                    let len = ram.read_u32(e + 4);
                    // `k < n <= waiting`: this buffer is covered.
                    let (last, len) = self.begin_batch(slot, id, len, waiting - k as u16)?;
                    if last == slot {
                        Some(len)
                    } else {
                        self.batch_end = Some((last, len));
                        None
                    }
                }
                Some((last, len)) if last == slot => {
                    self.batch_end = None;
                    Some(len)
                }
                Some(_) => None,
            };
            self.last_used = self.last_used.wrapping_add(1);
            self.in_order_flight -= 1;
            k += 1;
            each(slot, len);
        }
        Ok(n)
    }

    /// In-order receive: the used entry for buffer `slot` names buffer `id` (written length
    /// `len`): this buffer, or a batch from `slot` to `id`, which must lie within the
    /// `covered` buffers the used index covers from `slot` on. Returns (`id`, `len`), checked.
    #[cold]
    fn begin_batch(
        &mut self,
        slot: u16,
        id: u32,
        len: u32,
        covered: u16,
    ) -> Result<(u16, u32), QueueError> {
        let ahead = id.wrapping_sub(u32::from(slot)) & u32::from(self.mask);
        if id >= u32::from(self.layout.size) || ahead >= u32::from(covered) {
            return self.poison(QueueError::BadUsedId { id });
        }
        let (id, cap) = (id as u16, self.slots[id as usize].cap);
        if len > cap {
            return self.poison(QueueError::BadUsedLength { id, len, cap });
        }
        Ok((id, len))
    }

    /// Makes fixed descriptor `id` available again; `len`: a new length for a buffer the
    /// device reads (transmit; at most its size), `None` to keep it (receive). Visible at the
    /// next [`Self::publish`]. `false` if `id` is not a fixed descriptor the driver holds.
    #[inline]
    pub fn post<R: Ram>(&mut self, ram: &R, id: u16, len: Option<u32>) -> bool {
        let Some(slot) = self.slots.get_mut(usize::from(id)) else {
            return false;
        };
        if !slot.fixed || slot.busy || self.poisoned {
            return false;
        }
        slot.busy = true;
        if let Some(len) = len {
            let len = len.min(slot.cap);
            ram.write_u32(self.layout.desc.0 + 16 * usize::from(id) + 8, len);
        }
        let ring = self.layout.avail.0 + 4 + 2 * usize::from(self.avail_idx & self.mask);
        ram.write_u16(ring, id);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        true
    }

    /// Takes up to `max` used buffers with one read of the device's index, checking each as
    /// [`Self::pop`] does; `each(used)` sees them in order. Returns how many.
    #[inline]
    pub fn pop_burst<R: Ram>(
        &mut self,
        ram: &R,
        max: usize,
        mut each: impl FnMut(Used),
    ) -> Result<usize, QueueError> {
        if self.poisoned {
            return Err(QueueError::Poisoned);
        }
        let idx = ram.read_u16(self.layout.used.0 + 2);
        let waiting = idx.wrapping_sub(self.last_used);
        if waiting > self.layout.size {
            return self.poison(QueueError::UsedIndexJump {
                from: self.last_used,
                to: idx,
            });
        }
        let n = usize::from(waiting).min(max);
        // The ring entries after the index that published them.
        fence(Ordering::Acquire);
        for _ in 0..n {
            let u = self.take_entry(ram)?;
            each(u);
        }
        Ok(n)
    }

    /// Returns descriptor `id` and the rest of its chain (`next`) to the free list; how many.
    fn release(&mut self, id: u16, mut next: Option<u16>) -> u16 {
        self.free.push_back(id);
        let mut n = 1;
        // The rest of a chain (at most 3 more: `add_chain`'s limit).
        for _ in 0..3 {
            let Some(d) = next else { break };
            next = self.slots[usize::from(d)].next.take();
            self.free.push_back(d);
            n += 1;
        }
        n
    }

    /// A free descriptor: the next in ring order (`new_ring_order`), else the last returned.
    #[inline]
    fn take_free(&mut self) -> Option<u16> {
        if self.ring_order {
            self.free.pop_front()
        } else {
            self.free.pop_back()
        }
    }

    /// The layout (for the transport, which tells the device where the areas are).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.layout.size
    }

    /// Descriptors free for [`Self::add`].
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Descriptors added and not yet returned (published or not): one per buffer on a
    /// fixed or in-order queue, but every descriptor of a chain ([`Self::add_chain`]: a
    /// control command and its status byte are two) on a free-list one, so not a count of
    /// buffers there.
    pub fn in_flight(&self) -> usize {
        if self.in_order_flight > 0 {
            usize::from(self.in_order_flight)
        } else if self.slots.first().is_some_and(|s| s.fixed) {
            self.slots.iter().filter(|s| s.busy).count()
        } else {
            usize::from(self.layout.size) - self.free.len()
        }
    }

    /// Whether an error poisoned the queue.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Adds one buffer (`pa`, `len` bytes; `device_writes` for receive buffers) with its
    /// cookie; visible to the device at the next [`Self::publish`]. `None` when no descriptor
    /// is free or the queue is poisoned.
    #[inline]
    pub fn add<R: Ram>(
        &mut self,
        ram: &R,
        pa: u64,
        len: u32,
        device_writes: bool,
        cookie: u64,
    ) -> Option<u16> {
        if self.poisoned {
            return None;
        }
        let id = self.take_free()?;
        let d = self.layout.desc.0 + 16 * usize::from(id);
        ram.write_u64(d, pa);
        // len (u32), flags (u16), next (u16) in one store.
        let flags = if device_writes { DESC_F_WRITE } else { 0 };
        ram.write_u64(d + 8, u64::from(len) | (u64::from(flags) << 32));
        self.slots[usize::from(id)] = Slot {
            cookie,
            cap: len,
            writable: device_writes,
            busy: true,
            next: None,
            fixed: false,
        };
        let ring = self.layout.avail.0 + 4 + 2 * usize::from(self.avail_idx & self.mask);
        ram.write_u16(ring, id);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Some(id)
    }

    /// Adds one chain of up to 4 segments (`pa`, `len`, device-writable), the readable ones
    /// first (virtio's rule), e.g. a control command and its status byte. The device's
    /// written length is checked against the writable segments' total. `None` when fewer
    /// descriptors are free, the order is wrong, or the queue is poisoned.
    pub fn add_chain<R: Ram>(
        &mut self,
        ram: &R,
        segs: &[(u64, u32, bool)],
        cookie: u64,
    ) -> Option<u16> {
        let ordered = segs.windows(2).all(|w| !w[0].2 || w[1].2);
        if self.poisoned
            || segs.is_empty()
            || segs.len() > 4
            || !ordered
            || self.free.len() < segs.len()
        {
            return None;
        }
        let ids: alloc::vec::Vec<u16> = (0..segs.len()).filter_map(|_| self.take_free()).collect();
        let cap: u32 = segs.iter().filter(|s| s.2).map(|s| s.1).sum();
        for (k, (&(pa, len, w), &id)) in segs.iter().zip(&ids).enumerate() {
            let next = ids.get(k + 1).copied();
            let d = self.layout.desc.0 + 16 * usize::from(id);
            ram.write_u64(d, pa);
            let flags =
                if w { DESC_F_WRITE } else { 0 } | if next.is_some() { DESC_F_NEXT } else { 0 };
            ram.write_u64(
                d + 8,
                u64::from(len) | (u64::from(flags) << 32) | (u64::from(next.unwrap_or(0)) << 48),
            );
            self.slots[usize::from(id)] = Slot {
                cookie,
                cap,
                writable: segs.iter().any(|s| s.2),
                busy: k == 0,
                next,
                fixed: false,
            };
        }
        let ring = self.layout.avail.0 + 4 + 2 * usize::from(self.avail_idx & self.mask);
        ram.write_u16(ring, ids[0]);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Some(ids[0])
    }

    /// Makes every added buffer visible to the device (one release store of `avail.idx`);
    /// returns whether the device must be notified (`EVENT_IDX`: its `avail_event` was
    /// crossed; otherwise: it did not set `NO_NOTIFY`). Nothing new: no store, `false`.
    #[inline]
    pub fn publish<R: Ram>(&mut self, ram: &R) -> bool {
        let (old, new) = (self.published, self.avail_idx);
        if old == new || self.poisoned {
            return false;
        }
        // The descriptors and ring entries before the index that publishes them.
        fence(Ordering::Release);
        ram.write_u16(self.layout.avail.0 + 2, new);
        self.published = new;
        // The index store before the read of the device's suppression state (store-load).
        fence(Ordering::SeqCst);
        if self.event_idx {
            let event = ram.read_u16(self.avail_event_va());
            need_event(event, new, old)
        } else {
            ram.read_u16(self.layout.used.0) & USED_F_NO_NOTIFY == 0
        }
    }

    /// Whether the device has used buffers waiting for [`Self::pop`].
    #[inline]
    pub fn has_used<R: Ram>(&self, ram: &R) -> bool {
        ram.read_u16(self.layout.used.0 + 2) != self.last_used
    }

    /// How many used buffers wait (as the device's index says; at most the queue size for a
    /// device that keeps the protocol).
    #[inline]
    pub fn used_pending<R: Ram>(&self, ram: &R) -> u16 {
        ram.read_u16(self.layout.used.0 + 2)
            .wrapping_sub(self.last_used)
    }

    /// Takes the next buffer the device used, checking what the device wrote.
    #[inline]
    pub fn pop<R: Ram>(&mut self, ram: &R) -> Result<Option<Used>, QueueError> {
        if self.poisoned {
            return Err(QueueError::Poisoned);
        }
        let idx = ram.read_u16(self.layout.used.0 + 2);
        if idx == self.last_used {
            return Ok(None);
        }
        if idx.wrapping_sub(self.last_used) > self.layout.size {
            return self.poison(QueueError::UsedIndexJump {
                from: self.last_used,
                to: idx,
            });
        }
        // The ring entry after the index that published it.
        fence(Ordering::Acquire);
        self.take_entry(ram).map(Some)
    }

    /// Consumes the used entry at `last_used` (the caller saw the index past it): checks its
    /// id and length, frees its descriptor(s) unless fixed.
    #[inline]
    fn take_entry<R: Ram>(&mut self, ram: &R) -> Result<Used, QueueError> {
        let e = self.layout.used.0 + 4 + 8 * usize::from(self.last_used & self.mask);
        let id32 = ram.read_u32(e);
        let len = ram.read_u32(e + 4);
        // Ring order: only the oldest buffer in flight may come back.
        let its_turn = !self.ring_order || id32 == u32::from(self.ring_oldest);
        let Some(slot) = self
            .slots
            .get_mut(id32 as usize)
            .filter(|s| s.busy && its_turn)
        else {
            return self.poison(QueueError::BadUsedId { id: id32 });
        };
        let id = id32 as u16;
        if slot.writable && len > slot.cap {
            let cap = slot.cap;
            return self.poison(QueueError::BadUsedLength { id, len, cap });
        }
        slot.busy = false;
        let cookie = slot.cookie;
        if !slot.fixed {
            let next = slot.next.take();
            let n = self.release(id, next);
            if self.ring_order {
                self.ring_oldest = self.ring_oldest.wrapping_add(n) & self.mask;
            }
        }
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Used { cookie, len, id })
    }

    /// Asks for an interrupt at the next used buffer; returns whether one is already
    /// waiting (then the caller polls again instead of sleeping: the device may have used
    /// it before it saw the request).
    pub fn enable_notifications<R: Ram>(&mut self, ram: &R) -> bool {
        self.notifications_on = true;
        if self.event_idx {
            self.write_used_event(ram, self.last_used);
        } else {
            ram.write_u16(self.layout.avail.0, 0);
        }
        // The request before the re-check (store-load).
        fence(Ordering::SeqCst);
        self.has_used(ram)
    }

    /// Asks the device not to interrupt (polling mode).
    pub fn disable_notifications<R: Ram>(&mut self, ram: &R) {
        if !self.notifications_on {
            return;
        }
        self.notifications_on = false;
        if self.event_idx {
            // An event index just behind: crossed only after 65,535 more buffers.
            self.write_used_event(ram, self.last_used.wrapping_sub(1));
        } else {
            ram.write_u16(self.layout.avail.0, AVAIL_F_NO_INTERRUPT);
        }
    }

    /// Every buffer still in flight, with its cookie (a fixed descriptor's is its id),
    /// oldest first, freed (after a device reset: the caller frees the memory the cookies
    /// name); the queue then has nothing in flight. In-order mode ([`Self::new_in_order`]):
    /// the buffers posted and not yet reaped, from the oldest, and the indices move past
    /// them. Until 2026-12-06 an in-order queue returned none of its buffers (they are
    /// posted without being marked busy; found by review).
    pub fn drain_in_flight(&mut self) -> Vec<u64> {
        if self.in_order_flight > 0 {
            let out = (0..self.in_order_flight)
                .map(|k| self.slots[usize::from(self.last_used.wrapping_add(k) & self.mask)].cookie)
                .collect();
            self.last_used = self.last_used.wrapping_add(self.in_order_flight);
            self.in_order_flight = 0;
            self.batch_end = None;
            return out;
        }
        let mut out = Vec::new();
        // Oldest first (ring order: they go back to the free list in it).
        let first = usize::from(self.ring_oldest);
        for k in 0..self.slots.len() {
            let id = (first + k) % self.slots.len();
            if self.slots[id].busy {
                self.slots[id].busy = false;
                out.push(self.slots[id].cookie);
                if self.slots[id].fixed {
                    continue;
                }
                let mut cur = Some(id as u16);
                for _ in 0..4 {
                    let Some(c) = cur else { break };
                    cur = self.slots[usize::from(c)].next.take();
                    self.free.push_back(c);
                }
            }
        }
        if self.ring_order {
            self.ring_oldest = self.free.front().copied().unwrap_or(0);
        }
        out
    }

    fn poison<T>(&mut self, e: QueueError) -> Result<T, QueueError> {
        self.poisoned = true;
        Err(e)
    }

    fn avail_event_va(&self) -> usize {
        self.layout.used.0 + 4 + 8 * usize::from(self.layout.size)
    }

    fn write_used_event<R: Ram>(&self, ram: &R, v: u16) {
        ram.write_u16(
            self.layout.avail.0 + 4 + 2 * usize::from(self.layout.size),
            v,
        );
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
