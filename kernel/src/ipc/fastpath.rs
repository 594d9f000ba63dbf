//! The fastpath: a call to a receiver already blocked on this CPU, and the reply back to a
//! caller blocked on this CPU, each a message copy and a direct switch (`Here::handoff`).
//! Both return `None`, having changed nothing the slow path would redo, when a
//! precondition fails; the slow path (`endpoint`) then does the whole operation. Everything
//! here is inlined into the system-call layer's dispatcher: one function from the entry to
//! the switch, and from the switch back to the exit. Both take the running thread their
//! caller found once under its guard (`sched::Here`, `endpoint::me_pinned`); the caller
//! ends the guard when they return.
//!
//! **No handles here**: a message carrying a handle (`INFO_HANDLE`) never comes to the
//! fastpath (the system-call layer sends it by the slow path, whose hand-over moves the
//! endpoint's in-flight hold, `endpoint::hold_in_flight`, to the receiver). So the
//! fastpath neither parks its sender nor puts it into a parked receiver's frame (installing
//! the handle needs the receiver's own table).
//!
//! **Parking** (`park`, a user thread inside the IPC entry):
//! the caller does not switch out in the middle of the kernel but parks at its system-call
//! boundary (`Here::handoff_parked`: its IPC frame is all it keeps) and the operation does
//! not return. A target that is itself parked gets its info, badge and result written into
//! its frame (`Claimed::parked_frame`) and the CPU leaves for ring 3 as the target, through
//! that frame, with the message words loaded from the sender's own frame into the target's
//! registers: no kernel stack to unwind, no copy into a slot or a frame.
//! A parked thread resumed by a switch instead (slow path, timeout, kill, a kernel-thread
//! peer) runs `park`, which finishes the operation from its slot ([`finish_parked`]).

use super::endpoint::{
    DONE, EpRef, RECV_WAIT, REPLY_WAIT, REPLYING, Waiter, pack, seq_of, slot, state_of, token,
    token_index, wait, waiter,
};
use super::{INFO_HANDLE, IpcError, MSG_WORDS, fastpath_enabled};
use crate::sched::{self, Claimed, Here};
use core::sync::atomic::Ordering;
use exo_arch::syscall::IpcFrame;

/// `call` fastpath. Preconditions, checked in this order (any failing: `None`):
/// 1. the fastpath is enabled (`set_fastpath`);
/// 2. `ep` is live (its generation matches);
/// 3. a receiver is queued on it (blocked in `recv`/`reply_recv`); it is the first one;
/// 4. that receiver is blocked and last ran on this CPU, and we claim it
///    (`Here::claim`: `Blocked -> Running`, so nobody else wakes it), so a direct
///    switch needs no migration and its registers are saved.
///
/// The message (`info`, [`super::Msg::info`]'s encoding, and `words`) always fits (checked
/// by `call`). Then: the message goes into the receiver's slot with the badge, the receiver
/// gets our reply token, we wait for the reply and the CPU goes straight to the receiver.
/// `Some(seq)`: the switch is made and we run again; the caller ends its guard and waits
/// for the reply with [`done`]. With `park` (see the module header) it does not
/// return once the receiver is claimed. `aborted`: whether the calling thread is being
/// killed, read once it is marked blocked ([`switch`]); the caller checked it before.
#[allow(
    clippy::too_many_arguments,
    reason = "inlined: the registers of the system call"
)]
#[inline(always)]
pub(super) fn call(
    here: Here<'_>,
    w: &Waiter,
    ep: EpRef,
    badge: u64,
    info: u64,
    words: &[u64; MSG_WORDS],
    deadline: u64,
    park: Option<fn(&mut IpcFrame)>,
    aborted: impl FnOnce() -> bool,
) -> Option<u64> {
    if !fastpath_enabled() {
        return None;
    }
    debug_assert!(info & INFO_HANDLE == 0, "a handle message on the fastpath");
    let s = slot(ep).ok()?;
    let mut q = s.lock();
    if !q.is(ep) {
        return None;
    }
    let rw = waiter(q.receivers.head()?);
    let mut target = here.claim(rw.tid())?;
    q.receivers.pop();
    let seq = w.begin(REPLY_WAIT);
    rw.reply_to
        .store(token(here.index(), seq), Ordering::Relaxed);
    let exit = park.is_some() && deliver(&mut target, info, badge);
    if !exit {
        rw.put_raw(info, badge, words);
    }
    let rseq = seq_of(rw.word.load(Ordering::Relaxed));
    rw.word.store(pack(rseq, DONE), Ordering::Release);
    drop(q);
    let still_wait = || {
        matches!(
            state_of(w.word.load(Ordering::Acquire)),
            REPLY_WAIT | REPLYING
        ) && !aborted()
    };
    switch(here, w, target, deadline, still_wait, park, exit);
    Some(seq)
}

/// `reply_recv` fastpath. Preconditions, checked in this order (any failing: `None`):
/// 1. the fastpath is enabled;
/// 2. we serve a call (a reply token);
/// 3. `ep` is live;
/// 4. no sender is queued on it (else the next message is taken at once: slow path);
/// 5. the caller still waits for this reply (it did not time out or die).
///
/// 5 is decided by claiming the caller first (`Here::claim`: blocked, last ran on this
/// CPU). Claimed, it cannot run, and nobody but this token's holder writes its word while it
/// waits for the reply (its timeout and its end act in its own context; no queue holds it),
/// so one load decides, no CAS; a caller found waiting for something else (it timed out and
/// began another wait) is given back runnable (`Here::release`) and the slow path drops the
/// reply. Then the reply goes into the caller's frame or slot, we queue as a receiver on
/// `ep` and the CPU goes straight back to the caller. A caller we cannot claim (running, or
/// blocked elsewhere) gets the reply as from `reply` (the CAS `REPLY_WAIT -> REPLYING`, the
/// slot, a wake-up) and we return `None` with the reply done (the slow path only receives).
/// `Some(seq)` as for [`call`]. With `park` it does not return once the caller is claimed;
/// `aborted` as for [`call`].
#[allow(
    clippy::too_many_arguments,
    reason = "inlined: the registers of the system call"
)]
#[inline(always)]
pub(super) fn reply_recv(
    here: Here<'_>,
    w: &Waiter,
    ep: EpRef,
    info: u64,
    words: &[u64; MSG_WORDS],
    deadline: u64,
    park: Option<fn(&mut IpcFrame)>,
    aborted: impl FnOnce() -> bool,
) -> Option<u64> {
    if !fastpath_enabled() {
        return None;
    }
    debug_assert!(info & INFO_HANDLE == 0, "a handle message on the fastpath");
    let tok = w.reply_to.load(Ordering::Relaxed);
    if tok == 0 {
        return None;
    }
    let s = slot(ep).ok()?;
    let mut q = s.lock();
    if !q.is(ep) || q.senders.head().is_some() {
        return None;
    }
    let cw = waiter(token_index(tok));
    let ctid = cw.tid();
    let cseq = seq_of(tok);
    let waiting = pack(cseq, REPLY_WAIT);
    let Some(mut target) = here.claim(ctid) else {
        // Running, or blocked elsewhere: the reply as `reply` makes it, the slow path receives.
        if cw
            .word
            .compare_exchange(
                waiting,
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
        cw.word.store(pack(cseq, DONE), Ordering::Release);
        drop(q);
        sched::wake(ctid);
        return None;
    };
    if cw.word.load(Ordering::Acquire) != waiting {
        drop(q);
        STALE_CLAIMS.fetch_add(1, Ordering::Relaxed);
        here.release(target);
        return None;
    }
    w.reply_to.store(0, Ordering::Relaxed);
    let exit = park.is_some() && deliver(&mut target, info, 0);
    if !exit {
        cw.put_raw(info, 0, words);
    }
    cw.word.store(pack(cseq, DONE), Ordering::Release);
    let seq = w.begin(RECV_WAIT);
    w.set_recv_ep(ep);
    q.receivers.push(here.index() as u32);
    drop(q);
    let word = pack(seq, RECV_WAIT);
    let still_wait = || w.word.load(Ordering::Acquire) == word && !aborted();
    switch(here, w, target, deadline, still_wait, park, exit);
    Some(seq)
}

/// Callers claimed by a `reply_recv` fastpath that were no longer waiting for its reply
/// (given back: [`reply_recv`]'s precondition 5). Test support.
pub static STALE_CLAIMS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The switch that ends both operations, the caller blocked until `still_wait` says its
/// wait is over: parked at its boundary (`park`: never returns; `exit`: `target` is parked
/// and its frame holds its results) or switched out (returns once it runs again).
///
/// `still_wait` is also false once the caller is being killed (`aborted`, both operations'
/// last argument): a kill that lands after the caller's own check (made with interrupts
/// off, before the operation) finds it running and its wake-up does nothing, so the
/// caller must see the kill itself or block for good. The kill stores its flag, then
/// wakes (a CAS); `still_wait` runs after the caller is marked blocked and a full fence:
/// one of the two sees the other. Not blocked, the caller runs again after `target` and
/// its wait (`wait`) leaves with `Interrupted`, as the slow path's does.
#[inline(always)]
fn switch<'g>(
    here: Here<'g>,
    w: &Waiter,
    target: Claimed<'g>,
    deadline: u64,
    still_wait: impl FnOnce() -> bool,
    park: Option<fn(&mut IpcFrame)>,
    exit: bool,
) {
    w.count(true);
    if let Some(resume) = park {
        w.deadline.store(deadline, Ordering::Relaxed);
        here.handoff_parked(target, deadline, still_wait, resume, exit);
    }
    here.handoff(target, deadline, still_wait);
}

/// Delivers a message straight into the frame of `target` (claimed) if it is parked (the
/// caller parks too: `park`, so no handle in the message): its info and badge and the
/// result 0 go into the frame; its words stay in the sender's own frame, where the exit to
/// `target` (`Here::handoff_parked`, `exit`) loads them into `target`'s registers.
#[inline(always)]
fn deliver(target: &mut Claimed<'_>, info: u64, badge: u64) -> bool {
    let Some(f) = target.parked_frame() else {
        return false;
    };
    f.rsi = info;
    f.rdi = badge;
    f.rax = 0;
    true
}

/// The continuation of a parked operation (`call` or `reply_recv`), in its thread once the
/// scheduler resumed it: waits until it is done (or failed, or its deadline passed) and
/// takes the message from the slot into `words`; returns its info word and badge.
pub fn finish_parked(words: &mut [u64; MSG_WORDS]) -> Result<(u64, u64), IpcError> {
    let (i, w) = super::endpoint::me()?;
    let seq = seq_of(w.word.load(Ordering::Acquire));
    done(i, w, seq, w.deadline.load(Ordering::Relaxed))?;
    Ok(w.take_into(words))
}

/// The end of a fastpath operation (its `seq`), back in the caller with interrupts on:
/// done if the message is already in our slot (the usual case: we were switched back to
/// by its sender), else the full wait.
#[inline(always)]
pub(super) fn done(i: usize, w: &Waiter, seq: u64, deadline: u64) -> Result<(), IpcError> {
    if w.word.load(Ordering::Acquire) != pack(seq, DONE) {
        wait(i, w, seq, deadline)?;
    }
    Ok(())
}
