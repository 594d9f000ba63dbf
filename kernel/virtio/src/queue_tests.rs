//! The queue against the fake device: normal traffic, notification suppression both ways,
//! index wrap-around, every kind of device misbehaviour, and a property test of random
//! interleavings (every buffer comes back exactly once, with its cookie).

use super::*;
use crate::testing::{FakeDevice, TestRam};
use proptest::prelude::*;
use std::collections::{BTreeSet, VecDeque};

fn setup(size: u16, event_idx: bool) -> (TestRam, SplitQueue, FakeDevice) {
    let ram = TestRam::new(0x10_0000, 64 * 1024 + 40 * usize::from(size));
    let l = ram.queue_layout(size);
    let q = SplitQueue::new(&ram, l, event_idx).unwrap();
    (ram, q, FakeDevice::new(l, event_idx))
}

#[test]
fn buffers_go_round_with_their_cookies() {
    let (ram, mut q, mut dev) = setup(8, false);
    for k in 0..3u64 {
        q.add(&ram, 0x5000 + k * 2048, 2048, true, 100 + k).unwrap();
    }
    assert_eq!((q.free_count(), q.in_flight()), (5, 3));
    assert!(dev.take(&ram).is_none(), "nothing visible before publish");
    assert!(q.publish(&ram), "device did not set NO_NOTIFY: notify");
    assert!(!q.publish(&ram), "nothing new: no store, no notify");
    let d: Vec<_> = core::iter::from_fn(|| dev.take(&ram)).collect();
    assert_eq!(d.len(), 3);
    assert_eq!(
        (d[1].addr, d[1].len, d[1].flags),
        (0x5800, 2048, DESC_F_WRITE)
    );
    dev.complete(&ram, u32::from(d[2].id), 60);
    dev.complete(&ram, u32::from(d[0].id), 1514);
    assert_eq!(
        q.pop(&ram).unwrap().map(|u| (u.cookie, u.len)),
        Some((102, 60))
    );
    assert_eq!(
        q.pop(&ram).unwrap().map(|u| (u.cookie, u.len)),
        Some((100, 1514))
    );
    assert_eq!(q.pop(&ram).unwrap(), None);
    assert_eq!(q.in_flight(), 1);
    assert_eq!(q.drain_in_flight(), vec![101]);
    assert_eq!(q.free_count(), 8);
}

#[test]
fn chains_go_out_linked_and_come_back_whole() {
    let (ram, mut q, mut dev) = setup(8, false);
    let head = q
        .add_chain(&ram, &[(0x1000, 4, false), (0x2000, 1, true)], 77)
        .unwrap();
    assert_eq!(q.in_flight(), 2);
    assert_eq!(
        q.add_chain(&ram, &[(0x1000, 1, true), (0x2000, 1, false)], 0),
        None,
        "writable first"
    );
    q.publish(&ram);
    let d = dev.take(&ram).unwrap();
    assert_eq!(
        (d.id, d.addr, d.len, d.flags),
        (head, 0x1000, 4, DESC_F_NEXT)
    );
    let next = (ram.read_u64(q.layout().desc.0 + 16 * usize::from(head) + 8) >> 48) as u16;
    let tail = ram.read_u64(q.layout().desc.0 + 16 * usize::from(next));
    assert_eq!(tail, 0x2000);
    dev.complete(&ram, u32::from(head), 2);
    assert_eq!(
        q.pop(&ram),
        Err(QueueError::BadUsedLength {
            id: head,
            len: 2,
            cap: 1
        })
    );
    let (ram, mut q, mut dev) = setup(8, false);
    let head = q
        .add_chain(&ram, &[(0x1000, 4, false), (0x2000, 1, true)], 77)
        .unwrap();
    q.publish(&ram);
    dev.take(&ram).unwrap();
    dev.complete(&ram, u32::from(head), 1);
    assert_eq!(q.pop(&ram).unwrap().unwrap().cookie, 77);
    assert_eq!(q.free_count(), 8, "both descriptors back");
    let (ram, mut q, _) = setup(2, false);
    q.add(&ram, 0x1000, 4, false, 0).unwrap();
    assert_eq!(
        q.add_chain(&ram, &[(0x1000, 4, false), (0x2000, 1, true)], 1),
        None,
        "one free"
    );
    q.add_chain(&ram, &[(0x1000, 4, false)], 1).unwrap();
    assert_eq!(q.drain_in_flight().len(), 2);
    assert_eq!(q.free_count(), 2);
}

/// Descriptor `id`'s next field (the chain link the device follows).
fn next_of(ram: &TestRam, q: &SplitQueue, id: u16) -> u16 {
    (ram.read_u64(q.layout().desc.0 + 16 * usize::from(id) + 8) >> 48) as u16
}

/// A free-list queue of 8 descriptors in ring order over `ram`, and the fake device.
fn ring_order8(ram: &TestRam) -> (SplitQueue, FakeDevice) {
    let l = ram.queue_layout(8);
    let q = SplitQueue::new_ring_order(ram, l, false).unwrap();
    (q, FakeDevice::new(l, false))
}

/// Under `VIRTIO_F_IN_ORDER` (2.7.9) a control command of two descriptors after another
/// takes the next two in ring order: 0->1, then 2->3 (the LIFO free list gave 1->0), and
/// so on round the table, wrapping at its end.
#[test]
fn ring_order_chains_take_descriptors_in_ring_order() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let (mut q, mut dev) = ring_order8(&ram);
    let cmd = [(0x1000, 4, false), (0x2000, 1, true)];
    let mut chains = Vec::new();
    for k in 0..6u64 {
        let head = q.add_chain(&ram, &cmd, k).unwrap();
        q.publish(&ram);
        let d = dev.take(&ram).unwrap();
        assert_eq!((d.id, d.flags), (head, DESC_F_NEXT));
        chains.push((head, next_of(&ram, &q, head)));
        dev.complete(&ram, u32::from(head), 1);
        assert_eq!(q.pop(&ram).unwrap().map(|u| u.cookie), Some(k));
    }
    assert_eq!(chains, vec![(0, 1), (2, 3), (4, 5), (6, 7), (0, 1), (2, 3)]);
    // A one-descriptor buffer first: the fifth command wraps at the end of the table (7->0).
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let (mut q, mut dev) = ring_order8(&ram);
    let mut got = Vec::new();
    for k in 0..4u64 {
        let head = if k == 0 {
            q.add(&ram, 0x1000, 4, false, k).unwrap()
        } else {
            q.add_chain(&ram, &cmd, k).unwrap()
        };
        got.push(head);
        q.publish(&ram);
        let d = dev.take(&ram).unwrap();
        dev.complete(&ram, u32::from(d.id), 0);
        q.pop(&ram).unwrap().unwrap();
    }
    let head = q.add_chain(&ram, &cmd, 9).unwrap();
    assert_eq!(got, vec![0, 1, 3, 5]);
    assert_eq!((head, next_of(&ram, &q, head)), (7, 0));
    assert_eq!(q.free_count(), 6);
}

/// Under `IN_ORDER` the device returns the oldest command first; a later one returned
/// before it poisons the queue (the free list would leave ring order).
#[test]
fn ring_order_refuses_a_command_returned_out_of_order() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let (mut q, mut dev) = ring_order8(&ram);
    let cmd = [(0x1000, 4, false), (0x2000, 1, true)];
    let a = q.add_chain(&ram, &cmd, 1).unwrap();
    let b = q.add_chain(&ram, &cmd, 2).unwrap();
    assert_eq!((a, b), (0, 2));
    q.publish(&ram);
    dev.complete(&ram, u32::from(b), 1);
    assert_eq!(q.pop(&ram), Err(QueueError::BadUsedId { id: 2 }));
    assert!(q.is_poisoned());
    // Without IN_ORDER the same completion is fine.
    let (ram, mut q, mut dev) = setup(8, false);
    let _a = q.add_chain(&ram, &cmd, 1).unwrap();
    let b = q.add_chain(&ram, &cmd, 2).unwrap();
    q.publish(&ram);
    dev.complete(&ram, u32::from(b), 1);
    assert_eq!(q.pop(&ram).unwrap().map(|u| u.cookie), Some(2));
}

#[test]
fn fixed_descriptors_post_and_pop_in_bursts() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let l = ram.queue_layout(8);
    let mut q = SplitQueue::new_fixed(&ram, l, true, |id| {
        (0x8000 + u64::from(id) * 2048, 2048, id % 2 == 0)
    })
    .unwrap();
    let mut dev = FakeDevice::new(l, true);
    assert_eq!(q.free_count(), 0, "no free list");
    assert!(q.post(&ram, 2, None));
    assert!(q.post(&ram, 3, Some(60)));
    assert!(!q.post(&ram, 3, None), "already posted");
    assert!(!q.post(&ram, 9, None), "out of range");
    assert_eq!(q.in_flight(), 2);
    q.publish(&ram);
    let a = dev.take(&ram).unwrap();
    let b = dev.take(&ram).unwrap();
    assert_eq!(
        (a.id, a.addr, a.len, a.flags),
        (2, 0x8000 + 2 * 2048, 2048, DESC_F_WRITE)
    );
    assert_eq!(
        (b.id, b.addr, b.len, b.flags),
        (3, 0x8000 + 3 * 2048, 60, 0)
    );
    dev.complete(&ram, 3, 0);
    dev.complete(&ram, 2, 1500);
    let mut got = Vec::new();
    assert_eq!(q.pop_burst(&ram, 1, |u| got.push((u.id, u.len))), Ok(1));
    assert_eq!(q.pop_burst(&ram, 8, |u| got.push((u.id, u.len))), Ok(1));
    assert_eq!(got, vec![(3, 0), (2, 1500)]);
    assert_eq!(q.pop_burst(&ram, 8, |_| ()), Ok(0));
    assert!(
        q.post(&ram, 2, Some(99999)),
        "a length past the buffer is cut to it"
    );
    q.publish(&ram);
    assert_eq!(dev.take(&ram).unwrap().len, 2048);
    dev.complete(&ram, 2, 2049);
    assert_eq!(
        q.pop_burst(&ram, 8, |_| ()),
        Err(QueueError::BadUsedLength {
            id: 2,
            len: 2049,
            cap: 2048
        })
    );
    assert_eq!(q.pop_burst(&ram, 8, |_| ()), Err(QueueError::Poisoned));
    assert!(!q.post(&ram, 4, None), "poisoned");
}

#[test]
fn burst_pop_checks_jumps_and_ids() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let l = ram.queue_layout(8);
    let mut q = SplitQueue::new_fixed(&ram, l, false, |_| (0x8000, 64, true)).unwrap();
    let mut dev = FakeDevice::new(l, false);
    q.post(&ram, 1, None);
    q.publish(&ram);
    dev.complete(&ram, 5, 1); // not posted
    assert_eq!(
        q.pop_burst(&ram, 8, |_| ()),
        Err(QueueError::BadUsedId { id: 5 })
    );
    let mut q =
        SplitQueue::new_fixed(&ram, ram.queue_layout(8), false, |_| (0x8000, 64, true)).unwrap();
    let mut dev = FakeDevice::new(*q.layout(), false);
    dev.set_used_idx(&ram, 200);
    assert_eq!(
        q.pop_burst(&ram, 8, |_| ()),
        Err(QueueError::UsedIndexJump { from: 0, to: 200 })
    );
}

#[test]
fn in_order_posts_by_index_and_reaps_by_count() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let l = ram.queue_layout(4);
    let mut q = SplitQueue::new_in_order(&ram, l, true, |id| {
        (0x8000 + u64::from(id) * 2048, 2048, false)
    })
    .unwrap();
    let mut dev = FakeDevice::new(l, true);
    for round in 0..5u32 {
        for k in 0..3u32 {
            let want = ((round * 3 + k) % 4) as u16;
            assert_eq!(q.next_id(), Some(want));
            assert_eq!(q.post_next(&ram, Some(60 + k)), Some(want));
        }
        q.publish(&ram);
        for k in 0..3u32 {
            let d = dev.take(&ram).unwrap();
            assert_eq!((d.id, d.len), (((round * 3 + k) % 4) as u16, 60 + k));
        }
        // A batching device writes one entry (the last) and moves the index by 3.
        dev.complete(&ram, u32::from(((round * 3 + 2) % 4) as u16), 0);
        let i = dev.used_idx.wrapping_add(2);
        dev.set_used_idx(&ram, i);
        assert_eq!(q.complete_in_order(&ram), Ok(3));
        assert_eq!(q.in_order_flight(), 0);
    }
    for _ in 0..4 {
        q.post_next(&ram, Some(1)).unwrap();
    }
    assert_eq!(q.post_next(&ram, Some(1)), None, "all four in flight");
    assert_eq!(q.next_id(), None);
    let i = dev.used_idx.wrapping_add(5);
    dev.set_used_idx(&ram, i);
    assert_eq!(
        q.complete_in_order(&ram),
        Err(QueueError::UsedIndexJump { from: 15, to: 20 })
    );
}

/// An in-order receive queue of 4 buffers of 2 KiB over `ram`, all 4 posted and published,
/// and the fake device in front of it.
fn in_order_rx4(ram: &TestRam) -> (SplitQueue, FakeDevice) {
    let l = ram.queue_layout(4);
    let mut q = SplitQueue::new_in_order(ram, l, false, |id| {
        (0x8000 + u64::from(id) * 2048, 2048, true)
    })
    .unwrap();
    let dev = FakeDevice::new(l, false);
    for _ in 0..4 {
        q.post_next(ram, None).unwrap();
    }
    q.publish(ram);
    (q, dev)
}

#[test]
fn in_order_receive_checks_ids_and_lengths() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let (mut q, mut dev) = in_order_rx4(&ram);
    for k in 0..2 {
        let d = dev.take(&ram).unwrap();
        assert_eq!((d.id, d.flags), (k, DESC_F_WRITE));
        dev.complete(&ram, u32::from(d.id), 100 + u32::from(k));
    }
    let mut got = Vec::new();
    assert_eq!(
        q.pop_in_order(&ram, 8, |id, len| got.push((id, len))),
        Ok(2)
    );
    assert_eq!(got, vec![(0, Some(100)), (1, Some(101))]);
    assert_eq!(
        (q.post_next(&ram, None), q.post_next(&ram, None)),
        (Some(0), Some(1))
    );
    let d = dev.take(&ram).unwrap();
    dev.complete(&ram, 3, 10); // 2 was next: out of order
    assert_eq!(d.id, 2);
    assert_eq!(
        q.pop_in_order(&ram, 8, |_, _| ()),
        Err(QueueError::BadUsedId { id: 3 })
    );
    let mut q =
        SplitQueue::new_in_order(&ram, ram.queue_layout(4), false, |_| (0x8000, 64, true)).unwrap();
    let mut dev = FakeDevice::new(*q.layout(), false);
    q.post_next(&ram, None).unwrap();
    q.publish(&ram);
    dev.take(&ram).unwrap();
    dev.complete(&ram, 0, 65);
    assert_eq!(
        q.pop_in_order(&ram, 8, |_, _| ()),
        Err(QueueError::BadUsedLength {
            id: 0,
            len: 65,
            cap: 64
        })
    );
}

/// An in-order queue's buffers in flight (posted, one reaped, one posted again after the
/// wrap) all come back from `drain_in_flight`, oldest first, each with its cookie (its id);
/// the queue then has none in flight, and posts again from where it was. Until 2026-12-06
/// it returned none: in-order posts do not mark descriptors busy (found by review).
#[test]
fn in_order_drain_returns_every_buffer_in_flight() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let (mut q, mut dev) = in_order_rx4(&ram);
    let d = dev.take(&ram).unwrap();
    dev.complete(&ram, u32::from(d.id), 10);
    assert_eq!(q.pop_in_order(&ram, 8, |_, _| ()), Ok(1));
    assert_eq!(q.post_next(&ram, None), Some(0));
    assert_eq!(q.in_flight(), 4);
    assert_eq!(q.drain_in_flight(), vec![1, 2, 3, 0]);
    assert_eq!((q.in_flight(), q.in_order_flight()), (0, 0));
    assert_eq!(q.drain_in_flight(), Vec::<u64>::new());
    assert_eq!(q.next_id(), Some(1));
}

/// A device that uses a batch of receive buffers with one used entry (the last buffer's id)
/// and moves the used index by the batch's size (2.7.9): every buffer comes back in order,
/// the skipped ones without a length, the last with its own; a batch may span calls, and
/// the next entry is read where the batch ended. An entry naming a buffer past what the
/// index covers still poisons the queue. Until 2026-12-05 the batch was `BadUsedId`.
#[test]
fn in_order_receive_takes_a_batch_from_one_entry() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let (mut q, mut dev) = in_order_rx4(&ram);
    // Two buffers, one entry (id 1), used index + 2; then an entry of its own for buffer 2.
    for want in [0, 1, 2] {
        assert_eq!(dev.take(&ram).unwrap().id, want);
    }
    dev.complete(&ram, 1, 200);
    let i = dev.used_idx.wrapping_add(1);
    dev.set_used_idx(&ram, i);
    dev.complete(&ram, 2, 300);
    let mut got = Vec::new();
    assert_eq!(
        q.pop_in_order(&ram, 8, |id, len| got.push((id, len))),
        Ok(3)
    );
    assert_eq!(got, vec![(0, None), (1, Some(200)), (2, Some(300))]);
    assert_eq!(q.in_order_flight(), 1);
    // Three buffers across the end of the ring (3, 0, 1), taken in two calls.
    q.repost_in_order(3);
    q.publish(&ram);
    for want in [3, 0, 1] {
        assert_eq!(dev.take(&ram).unwrap().id, want);
    }
    dev.complete(&ram, 1, 60);
    let i = dev.used_idx.wrapping_add(2);
    dev.set_used_idx(&ram, i);
    got.clear();
    assert_eq!(
        q.pop_in_order(&ram, 2, |id, len| got.push((id, len))),
        Ok(2)
    );
    assert_eq!(
        q.pop_in_order(&ram, 8, |id, len| got.push((id, len))),
        Ok(1)
    );
    assert_eq!(got, vec![(3, None), (0, None), (1, Some(60))]);
    // Then one entry per buffer again, read where the batch ended.
    assert_eq!(dev.take(&ram).unwrap().id, 2);
    dev.complete(&ram, 2, 70);
    got.clear();
    assert_eq!(
        q.pop_in_order(&ram, 8, |id, len| got.push((id, len))),
        Ok(1)
    );
    assert_eq!(got, vec![(2, Some(70))]);
    assert_eq!(q.in_order_flight(), 0);
    // A batch (3, 0) whose last buffer's length is past its size.
    q.repost_in_order(4);
    q.publish(&ram);
    dev.complete(&ram, 0, 2049);
    let i = dev.used_idx.wrapping_add(1);
    dev.set_used_idx(&ram, i);
    assert_eq!(
        q.pop_in_order(&ram, 8, |_, _| ()),
        Err(QueueError::BadUsedLength {
            id: 0,
            len: 2049,
            cap: 2048
        })
    );
    // An entry naming a buffer past what the used index covers (buffer 2, index + 2).
    let mut q =
        SplitQueue::new_in_order(&ram, ram.queue_layout(4), false, |_| (0x8000, 64, true)).unwrap();
    let mut dev = FakeDevice::new(*q.layout(), false);
    for _ in 0..4 {
        q.post_next(&ram, None).unwrap();
    }
    q.publish(&ram);
    dev.complete(&ram, 2, 10);
    let i = dev.used_idx.wrapping_add(1);
    dev.set_used_idx(&ram, i);
    assert_eq!(
        q.pop_in_order(&ram, 8, |_, _| ()),
        Err(QueueError::BadUsedId { id: 2 })
    );
}

#[test]
fn full_queue_refuses_adds() {
    let (ram, mut q, _) = setup(4, false);
    for k in 0..4 {
        assert!(q.add(&ram, 0x1000, 64, false, k).is_some());
    }
    assert_eq!(q.add(&ram, 0x1000, 64, false, 9), None);
}

#[test]
fn event_idx_notifies_only_when_the_device_asked() {
    let (ram, mut q, dev) = setup(16, true);
    dev.set_avail_event(&ram, 0);
    q.add(&ram, 0x1000, 64, false, 0).unwrap();
    assert!(q.publish(&ram), "0 -> 1 crosses avail_event 0");
    dev.set_avail_event(&ram, 5);
    for k in 0..2 {
        q.add(&ram, 0x1000, 64, false, k).unwrap();
    }
    assert!(!q.publish(&ram), "1 -> 3 does not reach 5");
    for k in 0..5 {
        q.add(&ram, 0x1000, 64, false, k).unwrap();
    }
    assert!(q.publish(&ram), "3 -> 8 crosses 5");
}

#[test]
fn no_notify_flag_respected_without_event_idx() {
    let (ram, mut q, dev) = setup(8, false);
    dev.set_no_notify(&ram, true);
    q.add(&ram, 0x1000, 64, false, 0).unwrap();
    assert!(!q.publish(&ram));
    dev.set_no_notify(&ram, false);
    q.add(&ram, 0x1000, 64, false, 1).unwrap();
    assert!(q.publish(&ram));
}

fn interrupt_suppression(event_idx: bool) {
    let (ram, mut q, mut dev) = setup(8, event_idx);
    for k in 0..6 {
        q.add(&ram, 0x1000, 64, true, k).unwrap();
    }
    q.publish(&ram);
    q.disable_notifications(&ram);
    let d = dev.take(&ram).unwrap();
    dev.complete(&ram, u32::from(d.id), 10);
    assert_eq!(dev.interrupts, 0, "polling: no interrupt");
    // A buffer used while notifications were off: enabling reports it (poll again).
    assert!(q.enable_notifications(&ram));
    q.pop(&ram).unwrap().unwrap();
    assert!(!q.enable_notifications(&ram), "nothing pending");
    let d = dev.take(&ram).unwrap();
    dev.complete(&ram, u32::from(d.id), 10);
    assert_eq!(dev.interrupts, 1, "armed: one interrupt");
    q.pop(&ram).unwrap().unwrap();
    q.disable_notifications(&ram);
    for _ in 0..3 {
        let d = dev.take(&ram).unwrap();
        dev.complete(&ram, u32::from(d.id), 10);
    }
    assert_eq!(dev.interrupts, 1, "disabled again");
}

#[test]
fn interrupt_suppression_with_event_idx() {
    interrupt_suppression(true);
}

#[test]
fn interrupt_suppression_with_flags() {
    interrupt_suppression(false);
}

#[test]
fn indices_wrap_around() {
    let (ram, mut q, mut dev) = setup(4, true);
    for k in 0..70_000u64 {
        q.add(&ram, 0x1000, 64, false, k).unwrap();
        q.publish(&ram);
        let d = dev.take(&ram).unwrap();
        dev.complete(&ram, u32::from(d.id), 0);
        assert_eq!(q.pop(&ram).unwrap().unwrap().cookie, k);
    }
    assert_eq!(q.free_count(), 4);
}

#[test]
fn used_index_jump_poisons() {
    let (ram, mut q, mut dev) = setup(8, false);
    q.add(&ram, 0x1000, 64, true, 0).unwrap();
    q.publish(&ram);
    dev.set_used_idx(&ram, 9);
    assert_eq!(
        q.pop(&ram),
        Err(QueueError::UsedIndexJump { from: 0, to: 9 })
    );
    assert_eq!(q.pop(&ram), Err(QueueError::Poisoned));
    assert_eq!(q.add(&ram, 0x1000, 64, true, 1), None);
    assert!(q.is_poisoned());
}

#[test]
fn ids_not_in_flight_poison() {
    let (ram, mut q, mut dev) = setup(8, false);
    q.add(&ram, 0x1000, 64, true, 0).unwrap();
    q.publish(&ram);
    dev.complete(&ram, 1000, 0);
    assert_eq!(q.pop(&ram), Err(QueueError::BadUsedId { id: 1000 }));

    let (ram, mut q, mut dev) = setup(8, false);
    q.add(&ram, 0x1000, 64, true, 0).unwrap();
    q.publish(&ram);
    let d = dev.take(&ram).unwrap();
    dev.complete(&ram, u32::from(d.id), 0);
    dev.complete(&ram, u32::from(d.id), 0); // returned twice
    assert!(q.pop(&ram).unwrap().is_some());
    assert_eq!(
        q.pop(&ram),
        Err(QueueError::BadUsedId {
            id: u32::from(d.id)
        })
    );

    let (ram, mut q, mut dev) = setup(8, false);
    dev.complete(&ram, 3, 0); // never handed out
    assert_eq!(q.pop(&ram), Err(QueueError::BadUsedId { id: 3 }));
}

#[test]
fn written_length_past_the_buffer_poisons() {
    let (ram, mut q, mut dev) = setup(8, false);
    q.add(&ram, 0x1000, 2048, true, 0).unwrap();
    q.add(&ram, 0x1000, 64, false, 1).unwrap();
    q.publish(&ram);
    let rx = dev.take(&ram).unwrap();
    let tx = dev.take(&ram).unwrap();
    // A transmit buffer's written length means nothing: accepted.
    dev.complete(&ram, u32::from(tx.id), 9999);
    assert_eq!(q.pop(&ram).unwrap().unwrap().cookie, 1);
    dev.complete(&ram, u32::from(rx.id), 2049);
    assert_eq!(
        q.pop(&ram),
        Err(QueueError::BadUsedLength {
            id: rx.id,
            len: 2049,
            cap: 2048
        })
    );
}

#[test]
fn bad_layouts_refused() {
    let ram = TestRam::new(0x10_0000, 64 * 1024);
    let mut l = ram.queue_layout(8);
    l.size = 6;
    assert_eq!(
        SplitQueue::new(&ram, l, false).unwrap_err(),
        QueueError::BadLayout
    );
    let mut l = ram.queue_layout(8);
    l.desc.0 += 8;
    assert_eq!(
        SplitQueue::new(&ram, l, false).unwrap_err(),
        QueueError::BadLayout
    );
}

#[test]
fn need_event_matches_the_spec_formula() {
    assert!(need_event(0, 1, 0));
    assert!(!need_event(1, 1, 0));
    assert!(need_event(4, 8, 3));
    assert!(need_event(0xffff, 0, 0xfffe), "across the wrap");
    assert!(!need_event(5, 5, 5));
}

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Publish,
    DeviceTake(u8),
    DeviceComplete(u8),
    Pop(u8),
    Toggle(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..6).prop_map(Op::Add),
        Just(Op::Publish),
        (1u8..6).prop_map(Op::DeviceTake),
        (0u8..8).prop_map(Op::DeviceComplete),
        (1u8..6).prop_map(Op::Pop),
        any::<bool>().prop_map(Op::Toggle),
    ]
}

proptest! {
    /// Any interleaving of driver and (well-behaved) device steps, completions in any order:
    /// every cookie comes back exactly once, no error, and the counts always add up.
    #[test]
    fn every_buffer_comes_back_once(
        event_idx in any::<bool>(),
        size_log in 1u32..5,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let size = 1u16 << size_log;
        let (ram, mut q, mut dev) = setup(size, event_idx);
        let mut next_cookie = 0u64;
        let mut outstanding = BTreeSet::new();
        let mut taken: VecDeque<(u16, u32)> = VecDeque::new();
        for o in ops {
            match o {
                Op::Add(n) => for _ in 0..n {
                    if let Some(_id) = q.add(&ram, 0x4000 + next_cookie, 100, true, next_cookie) {
                        outstanding.insert(next_cookie);
                        next_cookie += 1;
                    }
                },
                Op::Publish => { q.publish(&ram); }
                Op::DeviceTake(n) => for _ in 0..n {
                    if let Some(d) = dev.take(&ram) { taken.push_back((d.id, d.len)); }
                },
                Op::DeviceComplete(k) => if !taken.is_empty() {
                    let i = usize::from(k) % taken.len();
                    let (id, cap) = taken.remove(i).unwrap();
                    dev.complete(&ram, u32::from(id), cap / 2);
                },
                Op::Pop(n) => for _ in 0..n {
                    match q.pop(&ram) {
                        Ok(Some(u)) => {
                            prop_assert!(outstanding.remove(&u.cookie), "cookie {} twice", u.cookie);
                            prop_assert_eq!(u.len, 50);
                        }
                        Ok(None) => break,
                        Err(e) => prop_assert!(false, "error {e}"),
                    }
                },
                Op::Toggle(on) => if on { q.enable_notifications(&ram); } else { q.disable_notifications(&ram); },
            }
            prop_assert_eq!(q.in_flight() + q.free_count(), usize::from(size));
            prop_assert_eq!(q.in_flight(), outstanding.len());
        }
        // Finish: publish, the device returns everything, the driver reaps it all.
        q.publish(&ram);
        while let Some(d) = dev.take(&ram) { taken.push_back((d.id, d.len)); }
        for (id, cap) in taken.drain(..) { dev.complete(&ram, u32::from(id), cap / 2); }
        while let Some(u) = q.pop(&ram).unwrap() { prop_assert!(outstanding.remove(&u.cookie)); }
        prop_assert!(outstanding.is_empty(), "never returned: {:?}", outstanding);
    }
}
