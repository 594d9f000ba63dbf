//! The fastpath: a call to a receiver already blocked on this CPU, and the reply back to a
//! caller blocked on this CPU, each a message copy and a direct switch (`sched::handoff`).
//! Both return `None`, having changed nothing the slow path would redo, when a
//! precondition fails; the slow path (`endpoint`) then does the whole operation. Everything
//! here is inlined into the system-call layer's dispatcher: one function from the entry to
//! the switch, and from the switch back to the exit. Both take the guard their caller took
//! to find the calling thread (`endpoint::me_pinned`) and end it, whatever they return.

use super::endpoint::{
    DONE, EpRef, RECV_WAIT, REPLY_WAIT, REPLYING, Waiter, pack, seq_of, slot, state_of, token,
    wait, waiter,
};
use super::{IpcError, MSG_WORDS, fastpath_enabled};
use crate::sched;
use core::sync::atomic::Ordering;
use exo_percpu::IrqGuard;

/// `call` fastpath. Preconditions, checked in this order (any failing: `None`):
/// 1. the fastpath is enabled (`set_fastpath`);
/// 2. `ep` is live (its generation matches);
/// 3. a receiver is queued on it (blocked in `recv`/`reply_recv`); it is the first one;
/// 4. that receiver is blocked and last ran on this CPU, and we claim it
///    (`sched::claim_here`: `Blocked -> Running`, so nobody else wakes it), so a direct
///    switch needs no migration and its registers are saved.
///
/// The message (`info`, [`super::Msg::info`]'s encoding, and `words`) always fits (checked
/// by `call`). Then: the message goes into the receiver's slot with the badge, the receiver
/// gets our reply token, we wait for the reply and the CPU goes straight to the receiver.
/// `Some(Ok)`: the reply is in our slot.
#[inline(always)]
pub(super) fn call(
    g: IrqGuard,
    (i, w): (usize, &Waiter),
    ep: EpRef,
    badge: u64,
    info: u64,
    words: &[u64; MSG_WORDS],
    deadline: u64,
) -> Option<Result<(), IpcError>> {
    if !fastpath_enabled() {
        return None;
    }
    let s = slot(ep).ok()?;
    let mut q = s.q.lock();
    if !q.is(ep) {
        return None;
    }
    let rw = waiter(q.receivers.head()?);
    let rtid = rw.tid();
    if !sched::claim_here(&g, rtid) {
        return None;
    }
    q.receivers.pop();
    let seq = w.begin(REPLY_WAIT);
    rw.put_raw(info, badge, words);
    rw.reply_to.store(token(i, seq), Ordering::Relaxed);
    let rseq = seq_of(rw.word.load(Ordering::Relaxed));
    rw.word.store(pack(rseq, DONE), Ordering::Release);
    drop(q);
    sched::handoff(&g, rtid, deadline, || {
        matches!(
            state_of(w.word.load(Ordering::Acquire)),
            REPLY_WAIT | REPLYING
        )
    });
    drop(g);
    w.count(true);
    Some(done(i, w, seq, deadline))
}

/// `reply_recv` fastpath. Preconditions, checked in this order (any failing: `None`):
/// 1. the fastpath is enabled;
/// 2. we serve a call (a reply token);
/// 3. `ep` is live;
/// 4. no sender is queued on it (else the next message is taken at once: slow path);
/// 5. the caller still waits for this reply (the CAS `REPLY_WAIT -> REPLYING` succeeds: it
///    did not time out or die).
///
/// Then: the reply goes into the caller's slot. If the caller is blocked and last ran on
/// this CPU and we claim it (`sched::claim_here`), we queue as a receiver on `ep` and the
/// CPU goes straight back to the caller; otherwise the caller is woken as by `reply` and
/// we return `None` with the reply done (the slow path only receives).
#[inline(always)]
pub(super) fn reply_recv(
    g: IrqGuard,
    (i, w): (usize, &Waiter),
    ep: EpRef,
    info: u64,
    words: &[u64; MSG_WORDS],
    deadline: u64,
) -> Option<Result<(), IpcError>> {
    if !fastpath_enabled() {
        return None;
    }
    let tok = w.reply_to.load(Ordering::Relaxed);
    if tok == 0 {
        return None;
    }
    let s = slot(ep).ok()?;
    let mut q = s.q.lock();
    if !q.is(ep) || q.senders.head().is_some() {
        return None;
    }
    let cw = waiter((tok as u32) - 1);
    let ctid = cw.tid();
    let cseq = seq_of(tok);
    if cw
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
    cw.put_raw(info, 0, words);
    let claimed = sched::claim_here(&g, ctid);
    cw.word.store(pack(cseq, DONE), Ordering::Release);
    if !claimed {
        // Running, or blocked elsewhere: the reply is done, the slow path receives.
        drop(q);
        drop(g);
        sched::wake(ctid);
        return None;
    }
    let seq = w.begin(RECV_WAIT);
    w.ep.store(ep.index, Ordering::Relaxed);
    q.receivers.push(i as u32);
    drop(q);
    let word = pack(seq, RECV_WAIT);
    sched::handoff(&g, ctid, deadline, || {
        w.word.load(Ordering::Acquire) == word
    });
    drop(g);
    w.count(true);
    Some(done(i, w, seq, deadline))
}

/// The end of a fastpath operation, back in the caller: done if the message is already in
/// our slot (the usual case: we were switched back to by its sender), else the full wait.
#[inline(always)]
fn done(i: usize, w: &Waiter, seq: u64, deadline: u64) -> Result<(), IpcError> {
    if w.word.load(Ordering::Acquire) != pack(seq, DONE) {
        wait(i, w, seq, deadline)?;
    }
    Ok(())
}
