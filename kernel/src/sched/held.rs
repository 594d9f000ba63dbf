//! [`Held`]: a lock guard counted in the running thread's held-lock word, for spin locks a
//! kernel thread holds with interrupts on and preemptible.
//!
//! A thread that fails (a panic, a fault) holding one of them must not be ended alone: with
//! panic=abort no guard's `Drop` runs, the lock stays held, and the next taker spins for
//! good (no PANIC line, no exit: a CI time-out). [`kill_current_if_possible`] refuses the
//! kill while the word is not zero, and the machine stops with the report instead.
//! The word is the one sleeping locks count in (`exo_percpu::held_locks`), saved and loaded
//! per thread by the switch, so a holder preempted or moved keeps its count: no instruction
//! more at a switch. Until 2026-12-06 only sleeping locks counted (found by review).
//!
//! [`kill_current_if_possible`]: super::kill_current_if_possible

use core::ops::{Deref, DerefMut};

/// A guard `G` the running thread holds, counted in its held-lock word until dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct Held<G>(G);

/// Failed tries of [`Held::take`] between two yields.
const TRIES_BEFORE_YIELD: u32 = 256;

impl<G> Held<G> {
    /// Counts `g` (just taken by the running thread).
    #[inline(always)]
    pub fn new(g: G) -> Held<G> {
        exo_percpu::held_locks_inc();
        Held(g)
    }

    /// Takes one of these locks (`try_take`: one try) and counts it. After every
    /// [`TRIES_BEFORE_YIELD`] failed tries the taker yields, when it may (preemptible,
    /// interrupts on): the holder may be a thread this CPU preempted for the taker (a
    /// wake-up preempts code holding one of these locks: it is preemptible), which, pinned
    /// here, only this CPU can run. With a timer the tick ended the taker's slice and the
    /// holder ran a slice later; without one (icount) nothing ever ran it again, and the
    /// taker spun for good (found by an audit, 2026-12-07;
    /// `sched.lock_taker_yields_to_a_holder_it_preempted`). The first try is the whole cost
    /// when the lock is free.
    #[inline(always)]
    pub fn take(mut try_take: impl FnMut() -> Option<G>) -> Held<G> {
        if let Some(g) = try_take() {
            return Held::new(g);
        }
        Held::new(take_slow(try_take))
    }
}

/// [`Held::take`] once its first try failed.
#[cold]
#[inline(never)]
fn take_slow<G>(mut try_take: impl FnMut() -> Option<G>) -> G {
    loop {
        for _ in 0..TRIES_BEFORE_YIELD {
            core::hint::spin_loop();
            if let Some(g) = try_take() {
                return g;
            }
        }
        if exo_percpu::preemptible() && exo_arch::cpu::interrupts_enabled() {
            super::yield_now();
        }
    }
}

impl<G> Drop for Held<G> {
    #[inline(always)]
    fn drop(&mut self) {
        // Uncounted first; the field's own drop (the unlock) follows.
        exo_percpu::held_locks_dec();
    }
}

impl<G: Deref> Deref for Held<G> {
    type Target = G::Target;
    #[inline(always)]
    fn deref(&self) -> &G::Target {
        &self.0
    }
}

impl<G: DerefMut> DerefMut for Held<G> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.0
    }
}
