//! virtio-net, SMP-first: one RX/TX queue pair per CPU when the device offers `MQ` (pair `i`
//! belongs to CPU `i`: whoever holds the `&mut QueuePair` drives it, so the data path takes no
//! lock), bursts on both sides (refill and reaping in batches, one `avail.idx` store and at
//! most one doorbell per burst, `EVENT_IDX` suppressing the rest), every received buffer
//! checked before its frame is handed up (runts, oversized frames, merged buffers that were
//! not negotiated, checksum requests without `GUEST_CSUM`: dropped and counted).
//!
//! Buffers: 2 KiB each, two per 4 KiB frame from the CPU's allocator cache (the pair is built
//! on its owner's CPU), posted once and reused in place; the 12-byte header of a transmit
//! buffer is zeroed once and never rewritten (no offload is asked for).

use super::irq::Vector;
use super::virtio::{Doorbell, Transport, VirtioError};
use crate::mm::kalloc;
use crate::sys::io::{DmaFrame, DmaRam};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64};
use exo_virtio::features as f;
use exo_virtio::net::{self as vnet, HDR_LEN, RxDrop};
use exo_virtio::queue::{Layout, QueueError, SplitQueue, avail_bytes, desc_bytes, used_bytes};

/// Bytes per packet buffer (header + frame).
pub const BUF: usize = 2048;
/// How long every transmit buffer may stay with the device, none coming back, before the
/// driver calls the device broken ([`VirtioError::TxStalled`]).
pub const DEFAULT_TX_STALL_MS: u64 = 5000;
/// Most received buffers one [`QueuePair::rx_burst`] takes.
pub const RX_BURST_MAX: usize = 64;
/// Largest queue size used (smaller if the device says so).
pub const MAX_QUEUE: u16 = 256;
/// Features the driver takes when offered (`NET_MQ` only with `NET_CTRL_VQ`:
/// `exo_virtio::features::negotiate_net`).
pub const WANTED: u64 = f::VERSION_1
    | f::NET_MAC
    | f::NET_STATUS
    | f::NET_CTRL_VQ
    | f::NET_MQ
    | f::RING_EVENT_IDX
    | f::IN_ORDER;

/// Counters of one queue pair (the driver's side; the device keeps its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to the device.
    pub tx_packets: u64,
    /// Their bytes (frames, without the header).
    pub tx_bytes: u64,
    /// Transmit buffers the device returned.
    pub tx_completed: u64,
    /// Frames not sent because every buffer was in flight.
    pub tx_full: u64,
    /// Frames received and handed up.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Received buffers dropped: runt, oversized, merged, checksum request.
    pub rx_drops: [u64; 4],
    /// Received buffers dropped because the device gave no length for them: those an
    /// `IN_ORDER` batch skipped (one used entry for several buffers; `pop_in_order`).
    pub rx_len_unknown: u64,
    /// Doorbells rung (TX and RX).
    pub notifies: u64,
}

impl Stats {
    /// Every received buffer dropped.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_drops.iter().sum::<u64>() + self.rx_len_unknown
    }
    fn drop(&mut self, d: RxDrop) {
        let i = match d {
            RxDrop::Runt { .. } => 0,
            RxDrop::Oversized { .. } => 1,
            RxDrop::Merged { .. } => 2,
            RxDrop::BadChecksumRequest => 3,
        };
        self.rx_drops[i] += 1;
    }
    /// Adds `o` (totals over pairs).
    pub fn add(&mut self, o: &Stats) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_completed += o.tx_completed;
        self.tx_full += o.tx_full;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        for (a, b) in self.rx_drops.iter_mut().zip(o.rx_drops) {
            *a += b;
        }
        self.rx_len_unknown += o.rx_len_unknown;
        self.notifies += o.notifies;
    }
}

/// Packet buffers of one queue: `n` buffers of [`BUF`] bytes, two per frame.
#[derive(Debug)]
struct Buffers {
    frames: Vec<DmaFrame>,
}

impl Buffers {
    fn new(n: usize, frames_out: &mut Vec<DmaFrame>) -> Result<Self, VirtioError> {
        let mut frames = Vec::new();
        frames
            .try_reserve_exact(n.div_ceil(2))
            .map_err(|_| VirtioError::OutOfMemory)?;
        for _ in 0..n.div_ceil(2) {
            match kalloc::alloc_frame() {
                Ok(fr) => frames.push(DmaFrame::from_owned(fr.phys())),
                Err(_) => {
                    frames_out.append(&mut frames);
                    return Err(VirtioError::OutOfMemory);
                }
            }
        }
        Ok(Self { frames })
    }
    fn pa(&self, b: usize) -> u64 {
        self.frames[b / 2].pa() + ((b % 2) * BUF) as u64
    }
    fn bytes(&self, b: usize, len: usize) -> &[u8] {
        self.frames[b / 2].bytes((b % 2) * BUF, len.min(BUF))
    }
    fn bytes_mut(&mut self, b: usize, off: usize, len: usize) -> &mut [u8] {
        self.frames[b / 2].bytes_mut((b % 2) * BUF + off, len.min(BUF - off))
    }
}

/// One queue of a pair: the ring, its memory, its doorbell.
#[derive(Debug)]
struct Ring {
    q: SplitQueue,
    bell: Doorbell,
    area: Vec<DmaFrame>,
}

/// The size used for a queue the device allows up to `max` entries of: a power of two, at
/// most [`MAX_QUEUE`].
fn queue_size(max: u16) -> u16 {
    MAX_QUEUE.min(1 << (15 - max.leading_zeros().min(15)))
}

/// Queue `index`: its memory, the queue over it (fixed descriptors naming `bufs`, device-
/// writable or not, when given, else a free list; in ring order when `in_order`), its
/// doorbell.
/// `max` is the device's queue size, read once by the caller: a device read twice may
/// answer twice differently (a larger size the second time sized the queue beyond the
/// buffers made for the first: an out-of-bounds panic; found by review, 2026-12-04).
fn ring(
    t: &Transport,
    index: u16,
    max: u16,
    event_idx: bool,
    bufs: Option<(&Buffers, bool)>,
    in_order: bool,
    msix_entry: Option<u16>,
) -> Result<Ring, VirtioError> {
    if max == 0 {
        return Err(VirtioError::Queue(index, "absent"));
    }
    let size = queue_size(max);
    let d = desc_bytes(size).div_ceil(4096);
    let au = (avail_bytes(size).next_multiple_of(4) + used_bytes(size)).div_ceil(4096);
    let mut area = Vec::new();
    for _ in 0..d + au {
        match kalloc::alloc_frame() {
            Ok(fr) => area.push(DmaFrame::from_owned(fr.phys())),
            Err(_) => {
                free_frames(area);
                return Err(VirtioError::OutOfMemory);
            }
        }
    }
    // Frames from the allocator are not contiguous: each area must fit in one frame, which
    // MAX_QUEUE (256 entries: 4 KiB of descriptors) guarantees.
    let (desc, rest) = (&area[0], &area[d]);
    let used_off = avail_bytes(size).next_multiple_of(4);
    let layout = Layout {
        size,
        desc: (desc.va(), desc.pa()),
        avail: (rest.va(), rest.pa()),
        used: (rest.va() + used_off, rest.pa() + used_off as u64),
    };
    let q = match bufs {
        Some((b, writable)) if in_order => {
            SplitQueue::new_in_order(&DmaRam, layout, event_idx, |id| {
                (b.pa(usize::from(id)), BUF as u32, writable)
            })
        }
        Some((b, writable)) => SplitQueue::new_fixed(&DmaRam, layout, event_idx, |id| {
            (b.pa(usize::from(id)), BUF as u32, writable)
        }),
        // Free descriptors (the control queue), in ring order under `IN_ORDER`.
        None if in_order => SplitQueue::new_ring_order(&DmaRam, layout, event_idx),
        None => SplitQueue::new(&DmaRam, layout, event_idx),
    };
    let q = match q {
        Ok(q) => q,
        Err(e) => {
            free_frames(area);
            return Err(VirtioError::Protocol(e));
        }
    };
    match t.setup_queue(index, &layout, msix_entry) {
        Ok(bell) => Ok(Ring { q, bell, area }),
        Err(e) => {
            free_frames(area);
            Err(e)
        }
    }
}

fn free_frames(v: Vec<DmaFrame>) {
    for fr in v {
        kalloc::free_frame(kalloc::Frame::from_phys(fr.into_phys()));
    }
}

/// Checks received buffer `id` (`len` bytes written) and hands its frame to `deliver`, or
/// counts why it was dropped.
#[inline(always)]
fn hand_up(
    bufs: &Buffers,
    stats: &mut Stats,
    guest_csum: bool,
    id: u16,
    len: u32,
    deliver: &mut impl FnMut(&[u8]),
) {
    let buf = bufs.bytes(usize::from(id), len as usize);
    match vnet::check_rx(buf, guest_csum) {
        Ok(r) => {
            stats.rx_packets += 1;
            stats.rx_bytes += r.len() as u64;
            deliver(&buf[r]);
        }
        Err(d) => stats.drop(d),
    }
}

/// One RX/TX queue pair, driven by one CPU at a time.
#[derive(Debug)]
pub struct QueuePair {
    /// Pair index (RX queue `2i`, TX queue `2i + 1`).
    pub index: u16,
    /// The bring-up it belongs to ([`NetDevice::id`]): what [`NetDevice::return_pairs`]
    /// checks (an index alone names a pair of any device).
    owner: u64,
    /// Its device's slot in [`ACTIVE_PAIRS`] (its claim's): whether the pair may transmit.
    slot: usize,
    rx: Ring,
    tx: Ring,
    rx_bufs: Buffers,
    tx_bufs: Buffers,
    /// Transmit descriptors (= buffers) the driver holds.
    tx_free: Vec<u16>,
    guest_csum: bool,
    /// `VIRTIO_F_IN_ORDER`: buffers posted and used in ring order (no id bookkeeping).
    in_order: bool,
    /// The pair's interrupt (MSI-X entry `index`, aimed at CPU `index`), if it has one.
    irq: Option<Vector>,
    /// Since when (TSC) every transmit buffer has been in flight with none coming back.
    tx_stalled_since: Option<u64>,
    /// How long that may last before the device is declared broken (ms).
    tx_stall_ms: u64,
    /// Counters.
    pub stats: Stats,
}

impl QueuePair {
    /// Pair `index`, its queues enabled and its receive buffers published. On failure, the
    /// error and the frames the device was already told about (the receive ring and buffers
    /// when the transmit ring failed): they stay until the device is reset.
    fn new(
        t: &Transport,
        (owner, slot): (u64, usize),
        index: u16,
        event_idx: bool,
        guest_csum: bool,
        in_order: bool,
        irq: Option<Vector>,
    ) -> Result<Self, (VirtioError, Vec<DmaFrame>)> {
        let (rxq, txq) = (vnet::rx_queue(index), vnet::tx_queue(index));
        let (rx_max, tx_max) = (t.queue_max(rxq), t.queue_max(txq));
        if rx_max == 0 || tx_max == 0 {
            let q = if rx_max == 0 { rxq } else { txq };
            return Err((VirtioError::Queue(q, "absent"), Vec::new()));
        }
        let (rx_n, tx_n) = (
            usize::from(queue_size(rx_max)),
            usize::from(queue_size(tx_max)),
        );
        let mut spill = Vec::new();
        let rx_bufs = Buffers::new(rx_n, &mut spill);
        let tx_bufs = Buffers::new(tx_n, &mut spill);
        let (rx_bufs, tx_bufs) = match (rx_bufs, tx_bufs) {
            (Ok(r), Ok(t)) => (r, t),
            (r, t) => {
                r.into_iter().chain(t).for_each(|b| free_frames(b.frames));
                free_frames(spill);
                return Err((VirtioError::OutOfMemory, Vec::new()));
            }
        };
        let rx = ring(
            t,
            rxq,
            rx_max,
            event_idx,
            Some((&rx_bufs, true)),
            in_order,
            irq.as_ref().map(|_| index),
        );
        let rx = match rx {
            Ok(r) => r,
            Err(e) => {
                // No queue enabled (`ring` gives its own memory back on failure).
                free_frames(rx_bufs.frames);
                free_frames(tx_bufs.frames);
                return Err((e, Vec::new()));
            }
        };
        // From here the device knows the receive ring (enabled) and, through its fixed
        // descriptors, the receive buffers.
        let tx = if FAIL_PAIR_AT
            .compare_exchange(index, u16::MAX, Relaxed, Relaxed)
            .is_ok()
        {
            Err(VirtioError::Queue(
                txq,
                "set-up failed (fault injected: FAIL_PAIR_AT)",
            ))
        } else {
            ring(
                t,
                txq,
                tx_max,
                event_idx,
                Some((&tx_bufs, false)),
                in_order,
                irq.as_ref().map(|_| index),
            )
        };
        let tx = match tx {
            Ok(r) => r,
            Err(e) => {
                free_frames(tx_bufs.frames);
                let mut named = rx.area;
                named.extend(rx_bufs.frames);
                return Err((e, named));
            }
        };
        let mut p = Self {
            index,
            owner,
            slot,
            rx,
            tx,
            rx_bufs,
            tx_bufs,
            tx_free: if in_order {
                Vec::new()
            } else {
                (0..tx_n as u16).rev().collect()
            },
            guest_csum,
            in_order,
            irq,
            tx_stalled_since: None,
            tx_stall_ms: DEFAULT_TX_STALL_MS,
            stats: Stats::default(),
        };
        // Polling until idle: no interrupt per buffer.
        p.rx.q.disable_notifications(&DmaRam);
        p.tx.q.disable_notifications(&DmaRam);
        for id in 0..rx_n as u16 {
            if in_order {
                p.rx.q.post_next(&DmaRam, None);
            } else {
                p.rx.q.post(&DmaRam, id, None);
            }
        }
        p.rx.q.publish(&DmaRam);
        Ok(p)
    }

    /// Tells the device about the posted receive buffers (after `DRIVER_OK`).
    fn kick_rx(&mut self) {
        self.rx.bell.ring();
        self.stats.notifies += 1;
    }

    /// Takes back transmit buffers the device is done with; returns how many.
    #[inline]
    pub fn reap_tx(&mut self) -> Result<usize, VirtioError> {
        if self.in_order {
            let n = self.tx.q.complete_in_order(&DmaRam)?;
            self.stats.tx_completed += u64::from(n);
            return Ok(usize::from(n));
        }
        let free = &mut self.tx_free;
        let n = self
            .tx
            .q
            .pop_burst(&DmaRam, usize::MAX, |u| free.push(u.id))
            .map_err(VirtioError::Protocol)?;
        self.stats.tx_completed += n as u64;
        Ok(n)
    }

    /// Transmits up to `max` frames: `fill(k, buf)` writes frame `k` into `buf` (up to 1518
    /// bytes, in the DMA buffer itself) and returns its length, or `None` to stop. One
    /// publish and at most one doorbell for the burst. Returns the frames queued, or
    /// [`VirtioError::PairInactive`] (nothing queued) on a pair the device was told not to
    /// use ([`NetDevice::set_active_pairs`]).
    #[inline]
    pub fn tx_burst(
        &mut self,
        max: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> Option<usize>,
    ) -> Result<usize, VirtioError> {
        self.check_active()?;
        // Completions first, every burst: the driver's whole per-packet cost is in the burst,
        // and the buffers just returned are the ones reused (warm in cache).
        if self.reap_tx()? > 0 {
            self.tx_stalled_since = None;
        } else if self.tx_room() == 0 {
            self.check_stall()?;
        }
        let (sent, bytes) = if self.in_order {
            self.fill_tx::<true>(max, &mut fill)
        } else {
            self.fill_tx::<false>(max, &mut fill)
        };
        self.stats.tx_bytes += bytes as u64;
        self.stats.tx_packets += sent as u64;
        if self.tx.q.publish(&DmaRam) {
            self.tx.bell.ring();
            self.stats.notifies += 1;
        }
        Ok(sent)
    }

    /// Fills and posts up to `max` transmit buffers; (frames, bytes). One body for both
    /// modes, compiled once per mode so the per-frame loop carries no mode test.
    #[inline(always)]
    fn fill_tx<const IN_ORDER: bool>(
        &mut self,
        max: usize,
        fill: &mut impl FnMut(usize, &mut [u8]) -> Option<usize>,
    ) -> (usize, usize) {
        let (mut sent, mut bytes) = (0, 0);
        while sent < max {
            // The next buffer: the ring's next slot (in order), else one the driver holds.
            let next = if IN_ORDER {
                self.tx.q.next_id()
            } else {
                self.tx_free.last().copied()
            };
            let Some(b) = next else {
                self.stats.tx_full += 1;
                break;
            };
            let buf = self
                .tx_bufs
                .bytes_mut(usize::from(b), HDR_LEN, vnet::MAX_FRAME);
            let Some(len) = fill(sent, buf) else { break };
            let len = len.min(vnet::MAX_FRAME);
            let wire = Some((HDR_LEN + len) as u32);
            if IN_ORDER {
                self.tx.q.post_next(&DmaRam, wire);
            } else if self.tx.q.post(&DmaRam, b, wire) {
                self.tx_free.pop();
            } else {
                break;
            }
            bytes += len;
            sent += 1;
        }
        (sent, bytes)
    }

    /// `Ok` if the pair may transmit: its device uses it (its index below the pair count of
    /// the last `VQ_PAIRS_SET`, [`NetDevice::set_active_pairs`]; virtio 1.2, 5.1.6.5.5: no
    /// frame on a transmit queue past it), and the device is still up. Until 2026-12-06
    /// nothing stopped a pair past the count from transmitting (found by review:
    /// `net.mq_inactive_pair_does_not_transmit`).
    #[inline]
    fn check_active(&self) -> Result<(), VirtioError> {
        let v = ACTIVE_PAIRS
            .get(self.slot)
            .map_or(0, |a| a.load(core::sync::atomic::Ordering::Acquire));
        let active = if v >> 16 == self.owner { v as u16 } else { 0 };
        if self.index < active {
            Ok(())
        } else {
            Err(VirtioError::PairInactive {
                index: self.index,
                active,
            })
        }
    }

    /// All buffers in flight and none came back: starts the stall clock, or fails once it ran
    /// past the limit.
    fn check_stall(&mut self) -> Result<(), VirtioError> {
        let now = exo_arch::tsc::rdtsc();
        // A start after `now` was read on another CPU whose TSC is ahead (the pair moved;
        // TSC offsets are measured, not applied): the clock starts again here. Until
        // 2026-12-05 the difference wrapped and the interface stopped at once, "stalled"
        // for ~10^10 ms (found by review; `net.tx_stall_clock_from_a_cpu_ahead_starts_again`).
        let since = match self.tx_stalled_since {
            Some(s) if s <= now => s,
            _ => *self.tx_stalled_since.insert(now),
        };
        let ms = (now - since) / (crate::smp::time::tsc_hz() / 1000).max(1);
        if ms >= self.tx_stall_ms {
            return Err(VirtioError::TxStalled { ms });
        }
        Ok(())
    }

    /// Room to send one frame after reaping completions (`Ok(true)`), or none yet
    /// (`Ok(false)`: the stall clock runs), or the device is broken: a completion it
    /// returned is invalid, or it has held every buffer past the stall limit
    /// ([`VirtioError::TxStalled`]), or the pair is one the device was told not to use
    /// ([`VirtioError::PairInactive`]). The check of a caller that only sends with room (the
    /// IP stack's interface), where `tx_burst`'s own check is never reached.
    pub fn tx_ready(&mut self) -> Result<bool, VirtioError> {
        self.check_active()?;
        if self.reap_tx()? > 0 {
            self.tx_stalled_since = None;
        }
        if self.tx_room() > 0 {
            return Ok(true);
        }
        self.check_stall()?;
        Ok(false)
    }

    /// Test support (fault injection): starts the transmit stall clock at TSC `since`, as
    /// if read on another CPU (it stays until a buffer comes back).
    pub fn set_tx_stall_clock_for_test(&mut self, since: u64) {
        self.tx_stalled_since = Some(since);
    }

    /// Sets the transmit stall limit (tests: a short one).
    pub fn set_tx_stall_ms(&mut self, ms: u64) {
        self.tx_stall_ms = ms;
    }

    /// The bring-up the pair belongs to ([`NetDevice::id`]).
    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// Test use (fault injection): names another bring-up as the pair's owner, as a pair
    /// that reached the wrong place would (a pair of the same device and index twice:
    /// `net.return_pairs_refuses_foreign_and_duplicate_pairs`). Put it back before the pair
    /// goes home.
    pub fn set_owner_for_test(&mut self, owner: u64) {
        self.owner = owner;
    }

    /// Test use (fault injection): moves the transmit used ring's index past everything
    /// that can be in flight, as a broken device would (the next reap finds the jump).
    pub fn corrupt_tx_used_index(&mut self) {
        use exo_virtio::Ram as _;
        let at = self.tx.q.layout().used.0 + 2;
        let idx = DmaRam.read_u16(at);
        DmaRam.write_u16(at, idx.wrapping_add(self.tx.q.size() + 1));
    }

    /// Test use (fault injection): rewrites the receive used ring as a device batching in
    /// order would (virtio 1.2, 2.7.9): the first `n` used entries waiting become one, at the
    /// first one's place, naming the last buffer with its length (the used index stays: it
    /// already covers all `n`). `false` (nothing changed) without `IN_ORDER`, or with fewer
    /// than `n` entries waiting. The device writes only past its index: these entries are
    /// final.
    pub fn batch_rx_used_for_test(&mut self, n: u16) -> bool {
        use exo_virtio::Ram as _;
        let waiting = self.rx.q.used_pending(&DmaRam);
        if !self.in_order || n < 2 || waiting < n || waiting > self.rx.q.size() {
            return false;
        }
        let l = *self.rx.q.layout();
        let first = DmaRam.read_u16(l.used.0 + 2).wrapping_sub(waiting);
        let entry = |k: u16| l.used.0 + 4 + 8 * usize::from(first.wrapping_add(k) & (l.size - 1));
        let last = entry(n - 1);
        let (id, len) = (DmaRam.read_u32(last), DmaRam.read_u32(last + 4));
        DmaRam.write_u32(entry(0), id);
        DmaRam.write_u32(entry(0) + 4, len);
        for k in 1..n {
            // The skipped entries: stale, as a batching device leaves them.
            DmaRam.write_u32(entry(k), u32::MAX);
        }
        true
    }

    /// Test use: transmits frames of the given lengths (past the 1518-byte limit allowed,
    /// up to the buffer), filled with a pattern: what a broken or hostile peer would send.
    pub fn tx_burst_raw(&mut self, lens: &[usize]) -> Result<usize, VirtioError> {
        self.check_active()?;
        self.reap_tx()?;
        let mut n = 0;
        for &len in lens {
            let next = if self.in_order {
                self.tx.q.next_id()
            } else {
                self.tx_free.pop()
            };
            let Some(b) = next else { break };
            let len = len.min(BUF - HDR_LEN);
            let buf = self.tx_bufs.bytes_mut(usize::from(b), HDR_LEN, len);
            buf.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
            if self.in_order {
                self.tx.q.post_next(&DmaRam, Some((HDR_LEN + len) as u32));
            } else if !self.tx.q.post(&DmaRam, b, Some((HDR_LEN + len) as u32)) {
                self.tx_free.push(b);
                break;
            }
            n += 1;
        }
        if self.tx.q.publish(&DmaRam) {
            self.tx.bell.ring();
        }
        Ok(n)
    }

    /// Receives up to `max` frames (at most [`RX_BURST_MAX`] a call, in both modes):
    /// `deliver(frame)` sees each good one in its DMA buffer; bad ones are dropped and
    /// counted. The buffers go back to the device in one publish (one doorbell at most).
    /// Returns the buffers taken (good and dropped). Until 2026-12-06 the `IN_ORDER` path
    /// took up to `max`, a whole ring in one call (found by review:
    /// `net.rx_burst_takes_at_most_64`).
    #[inline]
    pub fn rx_burst(
        &mut self,
        max: usize,
        mut deliver: impl FnMut(&[u8]),
    ) -> Result<usize, VirtioError> {
        let (bufs, stats, csum) = (&self.rx_bufs, &mut self.stats, self.guest_csum);
        if self.in_order {
            // A buffer without a length (skipped by a batch) cannot be measured: dropped.
            let n =
                self.rx
                    .q
                    .pop_in_order(&DmaRam, max.min(RX_BURST_MAX), |id, len| match len {
                        Some(len) => hand_up(bufs, stats, csum, id, len, &mut deliver),
                        None => stats.rx_len_unknown += 1,
                    })?;
            self.rx.q.repost_in_order(n as u16);
            if n > 0 && self.rx.q.publish(&DmaRam) {
                self.rx.bell.ring();
                self.stats.notifies += 1;
            }
            return Ok(n);
        }
        let mut taken: arrayvec::ArrayVec<u16, RX_BURST_MAX> = arrayvec::ArrayVec::new();
        let n = self
            .rx
            .q
            .pop_burst(&DmaRam, max.min(RX_BURST_MAX), |u| {
                hand_up(bufs, stats, csum, u.id, u.len, &mut deliver);
                taken.push(u.id);
            })
            .map_err(VirtioError::Protocol)?;
        for id in taken {
            self.rx.q.post(&DmaRam, id, None);
        }
        if n > 0 && self.rx.q.publish(&DmaRam) {
            self.rx.bell.ring();
            self.stats.notifies += 1;
        }
        Ok(n)
    }

    /// Received buffers waiting.
    pub fn rx_pending(&self) -> usize {
        usize::from(self.rx.q.used_pending(&DmaRam))
    }

    /// Transmit buffers free now (without reaping).
    pub fn tx_room(&self) -> usize {
        if self.in_order {
            usize::from(self.tx.q.size() - self.tx.q.in_order_flight())
        } else {
            self.tx_free.len()
        }
    }

    /// Queue sizes (RX, TX).
    pub fn sizes(&self) -> (u16, u16) {
        (self.rx.q.size(), self.tx.q.size())
    }

    /// Whether the pair has an interrupt (MSI-X); without one, [`Self::idle_wait`] sleeps
    /// in 1 ms slices and polls.
    pub fn has_irq(&self) -> bool {
        self.irq.is_some()
    }

    /// Interrupts the pair's vector has taken.
    pub fn irq_count(&self) -> u64 {
        self.irq.as_ref().map_or(0, Vector::count)
    }

    /// Idle (NAPI-like): asks for an interrupt at the next received frame and sleeps until
    /// it comes or the TSC reaches `deadline`, then goes back to polling. A frame that came
    /// before the request is seen (no sleep). Without an interrupt: sleeps until the
    /// deadline, at most 1 ms. Call from the thread that owns the pair, on its CPU.
    pub fn idle_wait(&mut self, deadline: u64) {
        let Some(v) = &self.irq else {
            let cap = exo_arch::tsc::rdtsc() + crate::smp::time::tsc_hz() / 1000;
            crate::sched::sleep_until(deadline.min(cap));
            return;
        };
        let seen = v.count();
        if !self.rx.q.enable_notifications(&DmaRam) {
            let rx = &self.rx.q;
            v.wait(seen, deadline, || !rx.has_used(&DmaRam));
        }
        self.rx.q.disable_notifications(&DmaRam);
    }

    /// Frames of its rings and buffers.
    fn frames(&self) -> usize {
        self.rx.area.len()
            + self.tx.area.len()
            + self.rx_bufs.frames.len()
            + self.tx_bufs.frames.len()
    }

    /// Frees its memory and its vector: only once the device is reset and its MSI-X entries
    /// masked (`shutdown_inner`).
    fn free(mut self) {
        free_frames(core::mem::take(&mut self.rx.area));
        free_frames(core::mem::take(&mut self.tx.area));
        free_frames(core::mem::take(&mut self.rx_bufs.frames));
        free_frames(core::mem::take(&mut self.tx_bufs.frames));
        drop(self.irq.take());
    }
}

/// A pair dropped other than by [`NetDevice::shutdown`] (a caller that took it and returned
/// early) may belong to a device still running: its frames are leaked (a `DmaFrame` frees
/// nothing when dropped) and its interrupt vector is forgotten, not freed, since the
/// device may still raise it and the vector would be handed to someone else. Until
/// 2026-12-05 the vector went back to the allocator (found by review).
impl Drop for QueuePair {
    fn drop(&mut self) {
        core::mem::forget(self.irq.take());
    }
}

/// Fault injection for tests: the creation of queue pair `FAIL_PAIR_AT` fails once, its
/// transmit queue refused after its receive queue was enabled, as a device refusing a queue
/// would (`net.pair_failure_at_bring_up_resets_the_device`); `u16::MAX`: off.
pub static FAIL_PAIR_AT: AtomicU16 = AtomicU16::new(u16::MAX);

/// Fault injection for tests: the next control command is queued without its notification,
/// so the device does not answer it before its deadline (`net.mq_control_late_answer`).
pub static SKIP_NEXT_CTRL_KICK: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Waits up to 1 s until the device has answered every command on control ring `r`.
fn ctrl_settle(r: &mut Ring, late: &'static str) -> Result<(), VirtioError> {
    let d = crate::smp::time::Deadline::after_ms(1000);
    while r.q.in_flight() > 0 {
        if r.q.pop(&DmaRam).map_err(VirtioError::Protocol)?.is_none() {
            if d.passed() {
                return Err(VirtioError::Control(late));
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}

/// Sends `VQ_PAIRS_SET(n)` on control ring `r` (its command buffer is the last frame of its
/// memory) and waits up to 1 s for the device's answer.
///
/// A command that passed its deadline stays the device's (its buffer included), so before
/// the buffer is written again the earlier command is notified once more and its answer
/// taken off the ring: the answer read below is this command's.
fn ctrl_pairs_set(r: &mut Ring, n: u16) -> Result<(), VirtioError> {
    if r.q.in_flight() > 0 {
        r.bell.ring();
        ctrl_settle(r, "an earlier VQ_PAIRS_SET still unanswered")?;
    }
    let buf = r.area.last_mut().ok_or(VirtioError::OutOfMemory)?;
    buf.bytes_mut(0, 4)
        .copy_from_slice(&vnet::ctrl_mq_pairs_set(n));
    buf.bytes_mut(4, 1)[0] = 0xff;
    let pa = buf.pa();
    r.q.add_chain(&DmaRam, &[(pa, 4, false), (pa + 4, 1, true)], 0)
        .ok_or(VirtioError::Control("no descriptor"))?;
    r.q.publish(&DmaRam);
    if !SKIP_NEXT_CTRL_KICK.swap(false, core::sync::atomic::Ordering::Relaxed) {
        r.bell.ring();
    }
    ctrl_settle(r, "no answer to VQ_PAIRS_SET in 1 s")?;
    let answer = r.area.last().map_or(0xff, |b| b.bytes(4, 1)[0]);
    if answer == vnet::CTRL_OK {
        Ok(())
    } else {
        Err(VirtioError::Control("device refused VQ_PAIRS_SET"))
    }
}

/// Where a device is, as a driver claims it: a PCI function (bus, device, function) or the
/// base of a virtio-mmio window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// A PCI function.
    Pci(u8, u8, u8),
    /// A virtio-mmio window.
    Mmio(u64),
}

/// The devices a [`NetDevice`] owns (or a probe is bringing up): at most one driver per
/// device. A leaf lock (nothing else is taken under it but the heap's, for a `push`).
/// A fixed table, not a heap list: the first claim of a boot allocated the list for good,
/// and a test measuring the heap before its first probe found one object more (found by
/// review).
static CLAIMED: spin::Mutex<[Option<Site>; MAX_CLAIMS]> = spin::Mutex::new([None; MAX_CLAIMS]);

/// Devices one boot may have taken at once (a full table: `OutOfMemory`, that device
/// reported and skipped).
pub const MAX_CLAIMS: usize = 64;

/// A device taken for one driver; given up when dropped (after the device's shutdown: the
/// [`NetDevice`] holding it drops it at the end of `shutdown_inner`).
#[derive(Debug)]
pub struct Claim(Site, usize);

impl Claim {
    /// Takes `site`: `Ok(None)` when a driver already owns it (it must not be touched: a
    /// probe's reset and bring-up would take it from under its owner, whose shutdown would
    /// later reset it under the new one; until 2026-12-05 nothing recorded an owner, found by
    /// review: `net.second_probe_leaves_devices_in_use_alone`).
    pub fn take(site: Site) -> Result<Option<Claim>, VirtioError> {
        let mut c = CLAIMED.lock();
        if c.contains(&Some(site)) {
            return Ok(None);
        }
        let (slot, free) = c
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.is_none())
            .ok_or(VirtioError::OutOfMemory)?;
        *free = Some(site);
        ACTIVE_PAIRS[slot].store(0, core::sync::atomic::Ordering::Release);
        Ok(Some(Claim(site, slot)))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut c = CLAIMED.lock();
        ACTIVE_PAIRS[self.1].store(0, core::sync::atomic::Ordering::Release);
        for s in c.iter_mut().filter(|s| **s == Some(self.0)) {
            *s = None;
        }
    }
}

/// Per claim slot (the [`CLAIMED`] entry of a device's [`Claim`]): the bring-up holding it
/// ([`NetDevice::id`]) in the upper 48 bits and the queue pairs its device uses in the low
/// 16 ([`NetDevice::set_active_pairs`]); 0 while the slot is free. What a pair, wherever
/// its CPU took it, checks before it transmits ([`QueuePair::tx_burst`]): a pair of another
/// bring-up (its device shut down, the slot taken again) finds another id and may not.
/// In a fixed table, not shared through the heap: a bring-up allocates no object for it.
static ACTIVE_PAIRS: [AtomicU64; MAX_CLAIMS] = [const { AtomicU64::new(0) }; MAX_CLAIMS];

/// Sets the pairs bring-up `id` (holding claim slot `slot`) uses, for its pairs to see.
fn publish_active(slot: usize, id: u64, n: u16) {
    if let Some(a) = ACTIVE_PAIRS.get(slot) {
        a.store(
            (id << 16) | u64::from(n),
            core::sync::atomic::Ordering::Release,
        );
    }
}

/// Bring-ups so far: the next one's [`NetDevice::id`].
static BRING_UPS: AtomicU64 = AtomicU64::new(1);

/// Why [`NetDevice::return_pairs`] refused pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairRefused {
    /// Pair `index` belongs to another device or to an earlier bring-up of this one (bring-up
    /// `owner`): its memory is not this device's to free.
    Foreign {
        /// Its index.
        index: u16,
        /// The bring-up it belongs to.
        owner: u64,
    },
    /// The device already holds a pair `index` (or the batch holds it twice): freeing both
    /// at shutdown would free the same memory twice.
    Duplicate {
        /// Its index.
        index: u16,
    },
}

impl core::fmt::Display for PairRefused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PairRefused::Foreign { index, owner } => {
                write!(
                    f,
                    "pair {index} belongs to bring-up {owner}, not this device"
                )
            }
            PairRefused::Duplicate { index } => write!(f, "pair {index} is already returned"),
        }
    }
}

/// The MAC of a device that gives none (`NET_MAC` not offered): `02` (unicast, locally
/// administered) and 40 bits of an FNV-1a hash of its location, so NICs at different places
/// get different addresses, the same one at every boot. Until 2026-12-05 it was
/// `02:00:00:00:00:<pairs>`, the same on every such NIC (found by review:
/// `net.fallback_mac_is_made_from_the_location`).
pub fn fallback_mac(location: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in location.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The high bits folded in: FNV's low bits alone mix the last bytes least.
    let b = (h ^ (h >> 40)).to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

/// Whether `m` can be an interface's own address: unicast (the group bit, bit 0 of the
/// first byte, clear: no multicast, no broadcast) and not all zeros, as `exo_net`'s stack
/// requires. A device's MAC that is not ([`NetDevice::bring_up`]; or a device-configuration
/// window too short to hold one, which reads as zeros) is replaced by [`fallback_mac`]'s:
/// until 2026-12-06 it was taken as it was, and the stack refused the NIC (`BadMac`; found
/// by review: `net.device_mac_not_unicast_falls_back`).
pub fn unicast_mac(m: &[u8; 6]) -> bool {
    m[0] & 1 == 0 && *m != [0; 6]
}

/// Fault injection for tests: the next bring-up that reads its device's MAC (`NET_MAC`)
/// reads this address instead, as from a device reporting it
/// (`net.device_mac_not_unicast_falls_back`).
pub static SUBSTITUTE_MAC: spin::Mutex<Option<[u8; 6]>> = spin::Mutex::new(None);

/// Fault injection for tests: bring-ups do not take `NET_MAC` (the device's own address),
/// as with a device that does not offer it: the MAC is [`fallback_mac`]'s
/// (`net.fallback_mac_is_made_from_the_location`).
pub static REFUSE_MAC: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Shutdowns that gave frames back with the device's bus mastering still on (must stay 0:
/// `net.shutdown_stops_dma_before_freeing`).
pub static DMA_ON_AT_FREE: AtomicU32 = AtomicU32::new(0);

/// A virtio-net device brought up.
#[derive(Debug)]
pub struct NetDevice {
    /// Where it is (`pci 00:02.0 [1af4:1041]`, `mmio 0xfeb02e00`).
    pub location: String,
    transport: Transport,
    msix: Option<super::pci::Msix>,
    /// MAC address (from the device, or a locally administered one made from its location).
    pub mac: [u8; 6],
    /// Accepted features.
    pub features: u64,
    /// Queue pairs the device offers.
    pub max_pairs: u16,
    /// Queue pairs in use (taken out with [`NetDevice::take_pairs`]).
    pairs: Vec<QueuePair>,
    /// Queue pairs brought up.
    up: u16,
    /// Queue pairs the device was last told to use (and agreed to); its pairs see it in
    /// [`ACTIVE_PAIRS`].
    active: u16,
    ctrl: Option<Ring>,
    /// Frames of a pair whose creation failed half-way, which the device was told about:
    /// freed, or kept, with the rest by `shutdown_inner` (bring-up failures only).
    orphans: Vec<DmaFrame>,
    /// `shutdown_inner` has run (it runs once: [`NetDevice::shutdown`], a failed bring-up,
    /// or `Drop`).
    down: bool,
    /// This bring-up's number (its pairs carry it: [`QueuePair::owner`]).
    id: u64,
    /// The device, taken for this driver until `shutdown_inner` is done with it.
    claim: Option<Claim>,
}

/// A device dropped without [`NetDevice::shutdown`] (an early return holding it) is shut
/// down here: reset, bus mastering off (PCI), its memory freed (kept for good if the reset
/// is not acknowledged), the device given up for the next probe.
/// Until 2026-12-05 it stayed `DRIVER_OK`, writing into frames nobody owned any more
/// (found by review). Pairs taken out and not given back stay with their holders (leaked
/// when dropped: `Drop for QueuePair`).
impl Drop for NetDevice {
    fn drop(&mut self) {
        if !self.down {
            log::warn!(
                "virtio-net {}: dropped without shutdown: reset now",
                self.location
            );
            self.shutdown_inner();
        }
    }
}

impl NetDevice {
    /// Brings the device up with `want_pairs` queue pairs (at most what it offers; one
    /// without `MQ`), the device taken for it (`claim`, given up at its shutdown). On any
    /// failure the device is marked `FAILED`; once it has queues, it is then reset and their
    /// memory freed (kept for good if the reset is not acknowledged).
    pub fn bring_up(
        transport: Transport,
        location: String,
        claim: Claim,
        want_pairs: u16,
    ) -> Result<Self, (String, VirtioError)> {
        let fail = |e| (location.clone(), e);
        let wanted = if REFUSE_MAC.load(Relaxed) {
            WANTED & !f::NET_MAC
        } else {
            WANTED
        };
        // `NET_MQ` only with `NET_CTRL_VQ` (`negotiate_net`; virtio 1.2, 5.1.3.1).
        let features = transport
            .begin(|offered| f::negotiate_net(offered, wanted, f::VERSION_1))
            .map_err(fail)?;
        let id = BRING_UPS.fetch_add(1, Relaxed);
        let event_idx = features & f::RING_EVENT_IDX != 0;
        let max_pairs = if features & f::NET_MQ != 0 && features & f::NET_CTRL_VQ != 0 {
            transport.config16(vnet::config::MAX_PAIRS).max(1)
        } else {
            1
        };
        let active = want_pairs.clamp(1, max_pairs);
        // MSI-X (PCI): entry `i`, one vector, aimed at CPU `i`, for both queues of pair `i`.
        let msix = transport.enable_msix();
        let mut pairs = Vec::new();
        for i in 0..active {
            let irq = msix.as_ref().and_then(|m| {
                let apic = crate::smp::cpus::get(exo_percpu::CpuId(u32::from(i)))?
                    .hot
                    .apic_id;
                let v = Vector::alloc()?;
                m.set(i, apic, v.vector()).then_some(v)
            });
            match QueuePair::new(
                &transport,
                (id, claim.1),
                i,
                event_idx,
                false,
                features & f::IN_ORDER != 0,
                irq,
            ) {
                Ok(p) => pairs.push(p),
                Err((e, named)) => {
                    // Pairs 0..i have enabled queues and published receive buffers (and
                    // pair i perhaps its receive ring): the device is reset before their
                    // memory goes back, which is kept for good if the reset is not
                    // acknowledged (`shutdown_inner`). Until 2026-12-05 the frames were freed
                    // with the device only marked `FAILED` (on virtio-mmio nothing stopped
                    // it; found by review; `net.pair_failure_at_bring_up_resets_the_device`).
                    let e = transport.fail(e);
                    let mut dev = Self {
                        location,
                        transport,
                        msix,
                        mac: [0; 6],
                        features,
                        max_pairs,
                        pairs,
                        up: 0,
                        active: 0,
                        ctrl: None,
                        orphans: named,
                        down: false,
                        id,
                        claim: Some(claim),
                    };
                    return Err((dev.shutdown_inner(), e));
                }
            }
        }
        let mac = if features & f::NET_MAC != 0 {
            // The lock only for the take (the device's registers are read after it).
            let substitute = SUBSTITUTE_MAC.lock().take();
            let m = substitute.unwrap_or_else(|| {
                core::array::from_fn(|i| transport.config8(vnet::config::MAC + i))
            });
            if unicast_mac(&m) {
                m
            } else {
                let fb = fallback_mac(&location);
                log::warn!(
                    "virtio-net {location}: the device's MAC {m:02x?} is not a unicast address: {fb:02x?} used"
                );
                fb
            }
        } else {
            fallback_mac(&location)
        };
        let mut dev = Self {
            location,
            transport,
            msix,
            mac,
            features,
            max_pairs,
            pairs,
            up: active,
            active,
            ctrl: None,
            orphans: Vec::new(),
            down: false,
            id,
            claim: Some(claim),
        };
        if max_pairs > 1 {
            // The control queue is the one after the last pair the device has (in u32:
            // the spec allows 0x8000 pairs, and twice that is no u16; found by review).
            let ctrl = u16::try_from(2 * u32::from(max_pairs))
                .map_err(|_| VirtioError::Queue(u16::MAX, "control queue index past 65535"));
            if let Err(e) = ctrl.and_then(|c| dev.set_pairs(c, active)) {
                let e = dev.transport.fail(e);
                return Err((dev.shutdown_inner(), e));
            }
        } else {
            dev.transport.driver_ok();
        }
        for p in &mut dev.pairs {
            p.kick_rx();
        }
        dev.publish_active(active);
        Ok(dev)
    }

    /// `DRIVER_OK`, then `VQ_PAIRS_SET` through the control queue (answer within 1 s).
    fn set_pairs(&mut self, ctrl_index: u16, n: u16) -> Result<(), VirtioError> {
        let mut r = ring(
            &self.transport,
            ctrl_index,
            self.transport.queue_max(ctrl_index),
            self.features & f::RING_EVENT_IDX != 0,
            None,
            self.features & f::IN_ORDER != 0,
            None,
        )?;
        self.transport.driver_ok();
        // The command buffer: one frame kept with the control queue's memory.
        let page = kalloc::alloc_frame().map_err(|_| VirtioError::OutOfMemory);
        let result = page.and_then(|page| {
            r.area.push(DmaFrame::from_owned(page.phys()));
            ctrl_pairs_set(&mut r, n)
        });
        // The control queue and its command buffer stay until the device is reset (a
        // command that never came back is still the device's until then).
        self.ctrl = Some(r);
        result
    }

    /// Changes how many queue pairs the device uses (1..=the pairs brought up): receive
    /// steering then spreads flows over pairs `0..n` only, and pairs `n..` may not transmit
    /// (their `tx_burst` and `tx_ready` fail with [`VirtioError::PairInactive`], wherever
    /// they are: virtio 1.2, 5.1.6.5.5). The pairs stay allocated. Fewer pairs: they stop
    /// before the command is queued (a burst another CPU began before that still finishes);
    /// more: they start once the device agreed. A command that failed (refused, or
    /// unanswered and perhaps applied later) leaves [`NetDevice::active_pairs`] as it was,
    /// but only the pairs both counts allow may transmit until a command succeeds.
    pub fn set_active_pairs(&mut self, n: u16) -> Result<(), VirtioError> {
        if n == 0 || n > self.up {
            return Err(VirtioError::Control("pair count out of range"));
        }
        let (old, id, slot) = (self.active, self.id, self.claim.as_ref().map(|c| c.1));
        let publish = |n| slot.map(|s| publish_active(s, id, n));
        let c = self
            .ctrl
            .as_mut()
            .ok_or(VirtioError::Control("no control queue (one pair only)"))?;
        if n < old {
            publish(n);
        }
        let r = ctrl_pairs_set(c, n);
        if r.is_ok() {
            self.active = n;
        }
        publish(if r.is_ok() { n } else { n.min(old) });
        r
    }

    /// Lets pairs `0..n` (and no other) of this bring-up transmit ([`ACTIVE_PAIRS`]).
    fn publish_active(&self, n: u16) {
        if let Some(c) = &self.claim {
            publish_active(c.1, self.id, n);
        }
    }

    /// Descriptors of control commands the device has not answered yet (0 without a control
    /// queue).
    pub fn ctrl_in_flight(&self) -> usize {
        self.ctrl.as_ref().map_or(0, |c| c.q.in_flight())
    }

    /// Queue pairs the device uses (all those brought up, until [`NetDevice::set_active_pairs`]
    /// says otherwise; unchanged by a command that failed).
    pub fn active_pairs(&self) -> u16 {
        self.active
    }

    /// The queue pairs, moved out to their owners (one per CPU).
    pub fn take_pairs(&mut self) -> Vec<QueuePair> {
        core::mem::take(&mut self.pairs)
    }

    /// Pair `i`, borrowed (single-CPU users).
    pub fn pair(&mut self, i: usize) -> Option<&mut QueuePair> {
        self.pairs.get_mut(i)
    }

    /// This bring-up's number: its pairs carry it ([`QueuePair::owner`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Gives pairs back (before [`NetDevice::shutdown`]): all of them, or none when one is
    /// not this bring-up's ([`PairRefused::Foreign`]) or has an index the device already
    /// holds or the batch holds twice ([`PairRefused::Duplicate`]); refused, the batch comes
    /// back with the reason and the device is unchanged. The device frees the pairs it holds
    /// at shutdown: until 2026-12-05 any pair was taken (by index alone), and a foreign one's
    /// memory was freed while its own device still wrote into it (found by review:
    /// `net.return_pairs_refuses_foreign_and_duplicate_pairs`).
    pub fn return_pairs(
        &mut self,
        mut p: Vec<QueuePair>,
    ) -> Result<(), (PairRefused, Vec<QueuePair>)> {
        let refused = p.iter().enumerate().find_map(|(k, q)| {
            if q.owner != self.id {
                Some(PairRefused::Foreign {
                    index: q.index,
                    owner: q.owner,
                })
            } else if self.pairs.iter().chain(&p[..k]).any(|h| h.index == q.index) {
                Some(PairRefused::Duplicate { index: q.index })
            } else {
                None
            }
        });
        if let Some(why) = refused {
            return Err((why, p));
        }
        self.pairs.append(&mut p);
        self.pairs.sort_by_key(|p| p.index);
        Ok(())
    }

    /// Link up (`STATUS` bit 0; assumed up without `NET_STATUS`).
    pub fn link_up(&self) -> bool {
        self.features & f::NET_STATUS == 0 || self.transport.config16(vnet::config::STATUS) & 1 != 0
    }

    /// Driver counters summed over the pairs it holds.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.pairs.iter().for_each(|p| s.add(&p.stats));
        s
    }

    /// Its PCI function (none: an MMIO device).
    pub fn pci_function(&self) -> Option<super::pci::Function> {
        match &self.transport {
            Transport::Pci { func, .. } => Some(*func),
            Transport::Mmio(_) => None,
        }
    }

    /// Frames of its queues and buffers (what `shutdown` gives back).
    pub fn dma_frames(&self) -> usize {
        self.pairs.iter().map(QueuePair::frames).sum::<usize>()
            + self.ctrl.as_ref().map_or(0, |c| c.area.len())
            + self.orphans.len()
    }

    /// Resets the device (it stops touching memory), stops its DMA where it can be (PCI:
    /// bus mastering off) and frees every queue and buffer; if the device does not
    /// acknowledge the reset, the memory is kept for good. Then the device is free for the
    /// next probe (whose bring-up turns bus mastering on again after its reset).
    pub fn shutdown(mut self) -> String {
        self.shutdown_inner()
    }

    /// The shutdown; a second call does nothing (returns the location, empty after the first).
    fn shutdown_inner(&mut self) -> String {
        if core::mem::replace(&mut self.down, true) {
            return core::mem::take(&mut self.location);
        }
        // Given up when this returns, the device reset and its memory dealt with: a probe
        // may take it then, not before.
        let _claim = self.claim.take();
        let reset = self.transport.reset();
        // Bus mastering off (PCI) in every shutdown, before any frame goes back: a device
        // that acknowledged its reset may still finish a write it had begun, into frames
        // then owned by others. `Transport::begin` turns it on again after the next reset.
        // Until 2026-12-05 it went off only when the reset was not acknowledged (found by
        // review: `net.shutdown_stops_dma_before_freeing`). MMIO has no such switch.
        self.transport.stop_dma();
        if let Some(m) = &self.msix {
            (0..m.entries).for_each(|i| m.mask(i));
        }
        if reset.is_err() {
            // The device did not acknowledge the reset: it may still write into its queues
            // and buffers (on virtio-mmio nothing stops it). The memory is kept for good:
            // frames handed out again under a live device's DMA would be silent
            // corruption. Until 2026-12-04 they were freed anyway (found by review).
            let frames = self.dma_frames();
            let mut pairs = core::mem::take(&mut self.pairs);
            // The vectors go back: MSI-X entries (the only way a vector is aimed at a
            // device here) are masked above and bus mastering is off, so the device can no
            // longer raise them (until 2026-12-04 they were forgotten with the pairs).
            for p in &mut pairs {
                drop(p.irq.take());
            }
            log::error!(
                "virtio-net {}: reset not acknowledged; {frames} frames of its queues and buffers kept for good",
                self.location
            );
            core::mem::forget(pairs);
            core::mem::forget(self.ctrl.take());
            core::mem::forget(core::mem::take(&mut self.orphans));
            return core::mem::take(&mut self.location);
        }
        if self.transport.dma_enabled() {
            DMA_ON_AT_FREE.fetch_add(1, Relaxed);
        }
        for p in core::mem::take(&mut self.pairs) {
            p.free();
        }
        free_frames(core::mem::take(&mut self.orphans));
        if let Some(c) = self.ctrl.take() {
            free_frames(c.area);
        }
        core::mem::take(&mut self.location)
    }
}

/// A device that could not be used: where, and why.
pub type ProbeError = (String, VirtioError);

/// Takes `site` for a probe: the claim and `loc` back, or `None` when a driver owns it
/// (logged, skipped untouched) or the claim table is full (the error added to `bad`).
fn claim_or_skip(site: Site, loc: String, bad: &mut Vec<ProbeError>) -> Option<(Claim, String)> {
    match Claim::take(site) {
        Ok(Some(c)) => Some((c, loc)),
        Ok(None) => {
            log::info!("virtio-net {loc}: in use by another driver: skipped");
            None
        }
        Err(e) => {
            bad.push((loc, e));
            None
        }
    }
}

/// Finds every virtio-net device (PCI functions, then the virtio-mmio windows boot took:
/// [`super::virtio::init_mmio`]) and brings each
/// up with up to `want_pairs` queue pairs. Failures are returned beside the devices (and
/// those devices left `FAILED`); nothing is fatal. A device a live [`NetDevice`] owns is
/// skipped, untouched ([`Claim`]).
pub fn probe(want_pairs: u16) -> (Vec<NetDevice>, Vec<ProbeError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for func in super::pci::scan() {
        // 0x1041: modern virtio-net; 0x1000: transitional virtio-net.
        if func.vendor != 0x1af4 || !matches!(func.device, 0x1000 | 0x1041) {
            continue;
        }
        let loc = alloc::format!("pci {func}");
        // Taken before the transport is made (`Transport::pci` writes the command register).
        let Some((claim, loc)) =
            claim_or_skip(Site::Pci(func.bus, func.dev, func.func), loc, &mut bad)
        else {
            continue;
        };
        match Transport::pci(func) {
            Ok(t) => match NetDevice::bring_up(t, loc, claim, want_pairs) {
                Ok(d) => ok.push(d),
                Err(e) => bad.push(e),
            },
            Err(e) => bad.push((loc, e)),
        }
    }
    for (base, len) in super::virtio::mmio_windows() {
        let loc = alloc::format!("mmio {base:#x}");
        // Taken before the window is read; given up at once if it holds no virtio-net device.
        let Some((claim, loc)) = claim_or_skip(Site::Mmio(base), loc, &mut bad) else {
            continue;
        };
        match Transport::mmio(base, len, super::virtio::DEVICE_NET) {
            None => {}
            Some(Ok(t)) => match NetDevice::bring_up(t, loc, claim, want_pairs) {
                Ok(d) => ok.push(d),
                Err(e) => bad.push(e),
            },
            Some(Err(e)) => bad.push((loc, e)),
        }
    }
    (ok, bad)
}

impl From<QueueError> for VirtioError {
    fn from(e: QueueError) -> Self {
        VirtioError::Protocol(e)
    }
}
