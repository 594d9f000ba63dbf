//! Unit tests and the model-based property test of [`RunQueue`].

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

fn t(i: u32) -> ThreadRef {
    ThreadRef(i)
}

fn p(level: u8) -> Priority {
    Priority::new(level).unwrap()
}

fn drain<const CAP: usize>(rq: &mut RunQueue<CAP>) -> Vec<u32> {
    let mut v = Vec::new();
    while let Some(x) = rq.pick_next() {
        rq.assert_consistent();
        v.push(x.0);
    }
    v
}

#[test]
fn empty_queue() {
    let mut rq = RunQueue::<8>::new();
    assert!(rq.is_empty());
    assert_eq!(rq.pick_next(), None);
    assert_eq!(rq.peek_next(), None);
    assert_eq!(rq.highest_priority(Queue::Normal), None);
    assert_eq!(rq.steal_half_into(&mut [t(0); 4]), 0);
    rq.assert_consistent();
}

#[test]
fn priority_order() {
    let mut rq = RunQueue::<64>::new();
    for (i, level) in [(0, 5), (1, 63), (2, 0), (3, 31), (4, 32)] {
        rq.enqueue(t(i), p(level), Queue::Normal).unwrap();
    }
    assert_eq!(rq.highest_priority(Queue::Normal), Some(p(63)));
    assert_eq!(rq.peek_next(), Some(t(1)));
    assert_eq!(drain(&mut rq), [1, 4, 3, 0, 2]);
}

#[test]
fn fifo_within_level() {
    let mut rq = RunQueue::<64>::new();
    for i in [7, 3, 9, 1] {
        rq.enqueue(t(i), p(10), Queue::Normal).unwrap();
    }
    assert_eq!(
        rq.iter_level(p(10), Queue::Normal)
            .map(|x| x.0)
            .collect::<Vec<_>>(),
        [7, 3, 9, 1]
    );
    assert_eq!(rq.pick_next(), Some(t(7)));
    rq.enqueue(t(7), p(10), Queue::Normal).unwrap(); // requeued at the tail
    assert_eq!(drain(&mut rq), [3, 9, 1, 7]);
}

#[test]
fn hot_served_first_even_over_higher_priority() {
    let mut rq = RunQueue::<16>::new();
    rq.enqueue(t(0), p(60), Queue::Normal).unwrap();
    rq.enqueue(t(1), p(1), Queue::Hot).unwrap();
    rq.enqueue(t(2), p(2), Queue::Hot).unwrap();
    assert_eq!(rq.len_hot(), 2);
    // Hot first, by priority within the hot queue.
    assert_eq!(drain(&mut rq), [2, 1, 0]);
}

#[test]
fn hot_budget_bounds_starvation() {
    const B: u32 = 3;
    let mut rq = RunQueue::<64>::with_hot_budget(B);
    for i in 0..4 {
        rq.enqueue(t(i), p(50), Queue::Normal).unwrap();
    }
    // Hot threads keep waking up: each picked hot thread is re-enqueued hot.
    for i in 10..20 {
        rq.enqueue(t(i), p(5), Queue::Hot).unwrap();
    }
    let mut run_of_hot = 0;
    let mut normal_served = Vec::new();
    for _ in 0..40 {
        let x = rq.pick_next().unwrap();
        rq.assert_consistent();
        if x.0 >= 10 {
            run_of_hot += 1;
            assert!(
                run_of_hot <= B,
                "more than {B} hot picks while normal threads wait"
            );
            rq.enqueue(x, p(5), Queue::Hot).unwrap();
        } else {
            assert_eq!(
                run_of_hot, B,
                "normal picked before the hot budget was used"
            );
            run_of_hot = 0;
            normal_served.push(x.0);
            rq.enqueue(x, p(50), Queue::Normal).unwrap();
        }
    }
    // Exactly one normal pick every B + 1: 40 / 4 = 10, round-robin on the level.
    assert_eq!(normal_served, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
}

#[test]
fn hot_streak_only_counts_while_normal_waits() {
    let mut rq = RunQueue::<64>::with_hot_budget(1);
    for i in 0..5 {
        rq.enqueue(t(i), p(0), Queue::Hot).unwrap();
    }
    // No normal thread: the hot queue is served without limit.
    assert_eq!(rq.pick_next(), Some(t(0)));
    assert_eq!(rq.pick_next(), Some(t(1)));
    rq.enqueue(t(9), p(0), Queue::Normal).unwrap();
    assert_eq!(drain(&mut rq), [2, 9, 3, 4]);
}

#[test]
fn zero_budget_serves_hot_only_when_normal_empty() {
    let mut rq = RunQueue::<8>::with_hot_budget(0);
    rq.enqueue(t(0), p(0), Queue::Hot).unwrap();
    rq.enqueue(t(1), p(0), Queue::Normal).unwrap();
    rq.enqueue(t(2), p(0), Queue::Normal).unwrap();
    assert_eq!(drain(&mut rq), [1, 2, 0]);
}

#[test]
fn remove_from_middle_head_tail() {
    let mut rq = RunQueue::<16>::new();
    for i in 0..5 {
        rq.enqueue(t(i), p(7), Queue::Normal).unwrap();
    }
    rq.enqueue(t(5), p(9), Queue::Hot).unwrap();
    assert_eq!(rq.remove(t(2)), Ok((p(7), Queue::Normal)));
    rq.assert_consistent();
    assert_eq!(rq.remove(t(0)), Ok((p(7), Queue::Normal)));
    rq.assert_consistent();
    assert_eq!(rq.remove(t(4)), Ok((p(7), Queue::Normal)));
    rq.assert_consistent();
    assert_eq!(rq.remove(t(5)), Ok((p(9), Queue::Hot)));
    rq.assert_consistent();
    assert_eq!(rq.remove(t(5)), Err(NotQueued(t(5))));
    assert_eq!(rq.remove(t(99)), Err(NotQueued(t(99))));
    assert!(!rq.contains(t(2)));
    assert_eq!(rq.placement(t(3)), Some((p(7), Queue::Normal)));
    assert_eq!(rq.len(), 2);
    assert_eq!(drain(&mut rq), [1, 3]);
    // Removing the last thread of a level clears its bitmap bit.
    rq.enqueue(t(1), p(40), Queue::Normal).unwrap();
    rq.remove(t(1)).unwrap();
    assert_eq!(rq.highest_priority(Queue::Normal), None);
    rq.assert_consistent();
}

#[test]
fn steal_half_takes_lowest_normal_tail_first() {
    let mut rq = RunQueue::<32>::new();
    // normal: level 1: [0, 1, 2], level 5: [3, 4], level 9: [5]; hot: level 0: [6, 7]
    for (i, level) in [(0, 1), (1, 1), (2, 1), (3, 5), (4, 5), (5, 9)] {
        rq.enqueue(t(i), p(level), Queue::Normal).unwrap();
    }
    rq.enqueue(t(6), p(0), Queue::Hot).unwrap();
    rq.enqueue(t(7), p(0), Queue::Hot).unwrap();
    let mut out = Vec::new();
    assert_eq!(rq.steal_half(&mut out), 4);
    assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), [2, 1, 0, 4]);
    rq.assert_consistent();
    assert_eq!(rq.len(), 4);
    assert_eq!(rq.len_hot(), 2);
    // What is left still runs in the right order.
    assert_eq!(drain(&mut rq), [6, 7, 5, 3]);
}

#[test]
fn steal_half_takes_hot_only_after_normal() {
    let mut rq = RunQueue::<32>::new();
    rq.enqueue(t(0), p(3), Queue::Normal).unwrap();
    for i in 1..6 {
        rq.enqueue(t(i), p(i as u8), Queue::Hot).unwrap();
    }
    let mut buf = [t(0); 8];
    assert_eq!(rq.steal_half_into(&mut buf), 3);
    assert_eq!(buf[..3], [t(0), t(1), t(2)]);
    rq.assert_consistent();
    assert_eq!(drain(&mut rq), [5, 4, 3]);
}

#[test]
fn steal_half_into_respects_slice_len_and_single_thread() {
    let mut rq = RunQueue::<32>::new();
    rq.enqueue(t(0), p(3), Queue::Normal).unwrap();
    assert_eq!(
        rq.steal_half_into(&mut [t(0); 4]),
        0,
        "never steal the only thread"
    );
    for i in 1..10 {
        rq.enqueue(t(i), p(3), Queue::Normal).unwrap();
    }
    let mut buf = [t(0); 2];
    assert_eq!(rq.steal_half_into(&mut buf), 2);
    assert_eq!(buf, [t(9), t(8)]);
    assert_eq!(rq.len(), 8);
    rq.assert_consistent();
}

#[test]
fn steal_half_with_short_extend() {
    // An `Extend` that takes only two items: the rest must stay queued.
    struct TakeTwo(Vec<ThreadRef>);
    impl Extend<ThreadRef> for TakeTwo {
        fn extend<I: IntoIterator<Item = ThreadRef>>(&mut self, iter: I) {
            self.0.extend(iter.into_iter().take(2));
        }
    }
    let mut rq = RunQueue::<32>::new();
    for i in 0..10 {
        rq.enqueue(t(i), p(3), Queue::Normal).unwrap();
    }
    let mut out = TakeTwo(Vec::new());
    assert_eq!(rq.steal_half(&mut out), 2);
    assert_eq!(rq.len(), 8);
    rq.assert_consistent();
}

#[test]
fn full_queue_and_duplicate_errors() {
    let mut rq = RunQueue::<4>::new();
    for i in 0..4 {
        rq.enqueue(t(i), p(1), Queue::Normal).unwrap();
    }
    assert_eq!(
        rq.enqueue(t(4), p(1), Queue::Normal),
        Err(EnqueueError::CapacityExceeded {
            thread: t(4),
            capacity: 4
        })
    );
    assert_eq!(
        rq.enqueue(t(u32::MAX), p(1), Queue::Hot),
        Err(EnqueueError::CapacityExceeded {
            thread: t(u32::MAX),
            capacity: 4
        })
    );
    assert_eq!(
        rq.enqueue(t(2), p(9), Queue::Hot),
        Err(EnqueueError::AlreadyQueued(t(2)))
    );
    rq.assert_consistent();
    assert_eq!(rq.len(), 4);
    assert_eq!(drain(&mut rq), [0, 1, 2, 3]);
}

#[test]
fn debug_output_lists_levels() {
    let mut rq = RunQueue::<8>::new();
    rq.enqueue(t(1), p(3), Queue::Normal).unwrap();
    rq.enqueue(t(2), p(3), Queue::Normal).unwrap();
    rq.enqueue(t(5), p(0), Queue::Hot).unwrap();
    let s = format!("{rq:?}");
    assert!(s.contains("hot: {0: [5]}"), "{s}");
    assert!(s.contains("normal: {3: [1, 2]}"), "{s}");
    assert_eq!(
        EnqueueError::AlreadyQueued(t(2)).to_string(),
        "thread#2 is already queued"
    );
}

// ---------------------------------------------------------------------------
// Model-based property test.

const MCAP: usize = 24;
const MBUDGET: u32 = 2;

/// Reference model: a `VecDeque` per (queue, priority), linear scans.
#[derive(Debug)]
struct Model {
    lists: Vec<VecDeque<u32>>, // 0..64 normal, 64..128 hot
    streak: u32,
}

impl Model {
    fn new() -> Self {
        Self {
            lists: vec![VecDeque::new(); 128],
            streak: 0,
        }
    }
    fn find(&self, x: u32) -> Option<usize> {
        self.lists.iter().position(|l| l.contains(&x))
    }
    fn count(&self, hot: bool) -> usize {
        let r = if hot { 64..128 } else { 0..64 };
        self.lists[r].iter().map(VecDeque::len).sum()
    }
    fn enqueue(&mut self, x: u32, level: u8, hot: bool) -> Result<(), EnqueueError> {
        if x as usize >= MCAP {
            return Err(EnqueueError::CapacityExceeded {
                thread: t(x),
                capacity: MCAP,
            });
        }
        if self.find(x).is_some() {
            return Err(EnqueueError::AlreadyQueued(t(x)));
        }
        self.lists[level as usize + if hot { 64 } else { 0 }].push_back(x);
        Ok(())
    }
    fn pick(&mut self) -> Option<u32> {
        let (hot, normal) = (self.count(true) > 0, self.count(false) > 0);
        let use_hot = hot && (!normal || self.streak < MBUDGET);
        if use_hot {
            if normal {
                self.streak += 1;
            }
        } else if normal {
            self.streak = 0;
        } else {
            return None;
        }
        let base = if use_hot { 64 } else { 0 };
        (0..64).rev().find_map(|l| self.lists[base + l].pop_front())
    }
    fn remove(&mut self, x: u32) -> Option<usize> {
        let l = self.find(x)?;
        self.lists[l].retain(|&y| y != x);
        Some(l)
    }
    fn steal(&mut self, max: usize) -> Vec<u32> {
        let want = ((self.count(true) + self.count(false)) / 2).min(max);
        let mut out = Vec::new();
        while out.len() < want {
            let l = (0..128).find(|&l| !self.lists[l].is_empty()).unwrap();
            out.push(self.lists[l].pop_back().unwrap());
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Op {
    Enqueue(u32, u8, bool),
    Pick,
    /// `requeue_pick`: against the model's enqueue then pick.
    RequeuePick(u32, u8, bool),
    Remove(u32),
    /// `None`: `steal_half` into a `Vec`; `Some(n)`: `steal_half_into` an `n`-slot slice.
    Steal(Option<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..MCAP as u32 + 2, prop_oneof![0u8..4, 60u8..64, 0u8..64], any::<bool>())
            .prop_map(|(x, l, h)| Op::Enqueue(x, l, h)),
        4 => Just(Op::Pick),
        3 => (0..MCAP as u32 + 2, prop_oneof![0u8..4, 60u8..64, 0u8..64], any::<bool>())
            .prop_map(|(x, l, h)| Op::RequeuePick(x, l, h)),
        1 => (0..MCAP as u32 + 2).prop_map(Op::Remove),
        1 => proptest::option::of(0usize..8).prop_map(Op::Steal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_model(ops in prop::collection::vec(op(), 1..200)) {
        let mut rq = RunQueue::<MCAP>::with_hot_budget(MBUDGET);
        let mut m = Model::new();
        for op in ops {
            match op {
                Op::Enqueue(x, l, hot) => {
                    let class = if hot { Queue::Hot } else { Queue::Normal };
                    prop_assert_eq!(rq.enqueue(t(x), p(l), class), m.enqueue(x, l, hot));
                }
                Op::Pick => {
                    let peek = rq.peek_next();
                    let got = rq.pick_next();
                    prop_assert_eq!(peek, got);
                    prop_assert_eq!(got.map(|x| x.0), m.pick());
                }
                Op::RequeuePick(x, l, hot) => {
                    let class = if hot { Queue::Hot } else { Queue::Normal };
                    let expect = m.enqueue(x, l, hot).map(|()| m.pick());
                    let got = rq.requeue_pick(t(x), p(l), class).map(|y| Some(y.0));
                    prop_assert_eq!(got, expect);
                }
                Op::Remove(x) => {
                    let got = rq.remove(t(x)).ok().map(|(pr, q)| {
                        pr.get() as usize + if q == Queue::Hot { 64 } else { 0 }
                    });
                    prop_assert_eq!(got, m.remove(x));
                }
                Op::Steal(None) => {
                    let expect = m.steal(usize::MAX);
                    let mut v: Vec<ThreadRef> = Vec::new();
                    prop_assert_eq!(rq.steal_half(&mut v), expect.len());
                    prop_assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), expect);
                }
                Op::Steal(Some(max)) => {
                    let expect = m.steal(max);
                    let mut buf = [t(0); 8];
                    let n = rq.steal_half_into(&mut buf[..max]);
                    prop_assert_eq!(buf[..n].iter().map(|x| x.0).collect::<Vec<_>>(), expect);
                }
            }
            rq.assert_consistent();
            prop_assert_eq!(rq.len(), m.count(true) + m.count(false));
            prop_assert_eq!(rq.len_hot(), m.count(true));
        }
        // Draining gives exactly the model's order.
        loop {
            let (a, b) = (rq.pick_next().map(|x| x.0), m.pick());
            prop_assert_eq!(a, b);
            if a.is_none() { break; }
        }
    }
}
