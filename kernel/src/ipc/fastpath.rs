//! The fastpath: a call to a receiver already blocked on this CPU, and the reply back to a
//! caller blocked on this CPU, each a message copy and a direct switch (`sched::handoff`).
//! Both return `None`, having changed nothing, when a precondition fails; the slow path
//! (`endpoint`) then does the whole operation.

use super::endpoint::{
    DONE, EpRef, RECV_WAIT, REPLY_WAIT, REPLYING, Waiter, pack, seq_of, slot, state_of, token,
    wait, waiter,
};
use super::{IpcError, Msg, fastpath_enabled};
use crate::sched;
use core::sync::atomic::Ordering;
use exo_percpu::IrqGuard;

/// `call` fastpath. Preconditions, checked in this order (any failing: `None`):
/// 1. the fastpath is enabled (`set_fastpath`);
/// 2. `ep` is live (its generation matches);
/// 3. a receiver is queued on it (blocked in `recv`/`reply_recv`); it is the first one;
/// 4. that receiver is blocked and last ran on this CPU (`sched::blocked_here`), so a
///    direct switch needs no migration and its registers are saved.
///
/// The message always fits (64 bytes, checked by `call`). Then: the message goes into the
/// receiver's slot with the badge, the receiver gets our reply token, we wait for the reply
/// and the CPU goes straight to the receiver. If the receiver was woken by someone else in
/// between (the handoff refuses), it is woken normally and we block normally.
pub(super) fn call(
    i: usize,
    w: &Waiter,
    ep: EpRef,
    badge: u64,
    msg: &Msg,
    deadline: u64,
) -> Option<Result<Msg, IpcError>> {
    if !fastpath_enabled() {
        return None;
    }
    let s = slot(ep).ok()?;
    let g = IrqGuard::new();
    let mut q = s.q.lock();
    if !q.is(ep) {
        return None;
    }
    let rw = waiter(q.receivers.head()?);
    let rtid = rw.tid();
    if !sched::blocked_here(rtid) {
        return None;
    }
    q.receivers.pop();
    let seq = w.begin(REPLY_WAIT);
    rw.put(msg, badge);
    rw.reply_to.store(token(i, seq), Ordering::Relaxed);
    let rseq = seq_of(rw.word.load(Ordering::Relaxed));
    rw.word.store(pack(rseq, DONE), Ordering::Release);
    drop(q);
    let waiting = || {
        matches!(
            state_of(w.word.load(Ordering::Acquire)),
            REPLY_WAIT | REPLYING
        )
    };
    if !sched::handoff(rtid, deadline, waiting) {
        sched::wake(rtid);
    }
    drop(g);
    w.count(true);
    Some(wait(i, w, seq, deadline).map(|()| w.take()))
}

/// `reply_recv` fastpath. Preconditions, checked in this order (any failing: `None`):
/// 1. the fastpath is enabled;
/// 2. `ep` is live;
/// 3. no sender is queued on it (else the next message is taken at once: slow path);
/// 4. we serve a call (a reply token) whose caller is blocked and last ran on this CPU;
/// 5. the caller still waits for this reply (the CAS `REPLY_WAIT -> REPLYING` succeeds: it
///    did not time out or die).
///
/// Then: the reply goes into the caller's slot, we queue as a receiver on `ep` and the CPU
/// goes straight back to the caller.
pub(super) fn reply_recv(
    i: usize,
    w: &Waiter,
    ep: EpRef,
    reply: &Msg,
    deadline: u64,
) -> Option<Result<Msg, IpcError>> {
    if !fastpath_enabled() {
        return None;
    }
    let s = slot(ep).ok()?;
    let g = IrqGuard::new();
    let mut q = s.q.lock();
    if !q.is(ep) || q.senders.head().is_some() {
        return None;
    }
    let tok = w.reply_to.load(Ordering::Relaxed);
    if tok == 0 {
        return None;
    }
    let cw = waiter((tok as u32) - 1);
    let ctid = cw.tid();
    let cseq = seq_of(tok);
    if !sched::blocked_here(ctid)
        || cw
            .word
            .compare_exchange(
                pack(cseq, REPLY_WAIT),
                pack(cseq, REPLYING),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
    {
        return None;
    }
    w.reply_to.store(0, Ordering::Relaxed);
    cw.put(reply, 0);
    cw.word.store(pack(cseq, DONE), Ordering::Release);
    let seq = w.begin(RECV_WAIT);
    w.ep.store(ep.index, Ordering::Relaxed);
    q.receivers.push(i as u32);
    drop(q);
    let word = pack(seq, RECV_WAIT);
    if !sched::handoff(ctid, deadline, || w.word.load(Ordering::Acquire) == word) {
        sched::wake(ctid);
    }
    drop(g);
    w.count(true);
    Some(wait(i, w, seq, deadline).map(|()| w.take()))
}
