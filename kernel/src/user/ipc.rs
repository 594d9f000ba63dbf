//! The IPC system calls (`exo_abi::nr::IPC_CALL`..=`HANDLE_CLOSE`): the entry stub's IPC
//! path saves the callee-saved registers too ([`IpcFrame`]), the message travels in
//! registers (`exo_abi::ipc`: info in RSI, words in RDX R10 R8 R9 R12 R13 R14 R15, timeout
//! in ns in RBX, 0: none), the handles are the calling process's table (found once per
//! call by `process::ipc_syscall`). Every error is a typed errno: bad or closed handles `EBADF`, a
//! missing right `EPERM`, reserved info bits `EINVAL`, a length above 64 `EMSGSIZE`, a
//! destroyed endpoint `EPIPE`, a server that ended mid-call `ECONNRESET`, one that dropped
//! the call `ECONNABORTED`, a timeout `ETIMEDOUT`, no call to answer `ESRCH`, no endpoint
//! or handle left `EAGAIN`, a zero-copy descriptor (info bit 40: words 0 and 1 are offset
//! and length) outside the endpoint's shared region, or with no region (an empty one too),
//! `ERANGE` (a reply sent by `reply_recv` is checked against the region of the endpoint its
//! call came through, as is one sent by `ipc_reply`). No pointer is read: there
//! is nothing to fault on.
//!
//! Handles in messages (info bit 41, `INFO_HANDLE`): on send, word 7 names a handle of the
//! sender's and the rights to give ([`outgoing_handle`] checks both, holds the endpoint for
//! the flight (`ipc::hold_in_flight`: one more owner) and puts the endpoint's reference,
//! rights and badge in words 6 and 7); on receipt ([`incoming_handle`]) the receiver's table
//! gets a new entry, which keeps the flight's hold, and word 7 becomes its number. So the
//! handle arrives even if the sender closes its own right after the send, or ends. The
//! receiver gets `INFO_HANDLE_LOST` only when its table is full (the hold is dropped) or the
//! endpoint was destroyed by the kernel meanwhile. A message that never arrives (timeout,
//! destroyed endpoint, a reply nobody waits for) has its hold dropped at the operation's end
//! (`ipc::settle_in_flight`). These messages take the slow path, whose hand-over moves the
//! hold with the message.

use super::aspace::HoldPoint;
use super::syscall::nr;
use super::{process, task};
use crate::ipc::{self, Handle, HandleTable, IpcError, Msg, Rights};
use crate::sched::Here;
use exo_arch::syscall::IpcFrame;
use exo_percpu::IrqGuard;

// `exo_abi::ipc`'s encoding of the info word (the kernel does not link `exo-abi`).
const INFO_LEN_SHIFT: u32 = 32;
const INFO_SLOW: u64 = 1 << 63;
const INFO_ZC: u64 = ipc::INFO_ZC;
const INFO_HANDLE: u64 = ipc::INFO_HANDLE;
const INFO_HANDLE_LOST: u64 = 1 << 42;
const INFO_RESERVED: u64 =
    !(INFO_SLOW | INFO_ZC | INFO_HANDLE | (0xff << INFO_LEN_SHIFT) | 0xffff_ffff);
/// Where the rights to give sit in word 7 on send (`exo_abi::ipc::HANDLE_RIGHTS_SHIFT`).
const HANDLE_RIGHTS_SHIFT: u32 = 32;
const MSG_MAX: usize = 64;

const EINVAL: i64 = 22;
const EBADF: i64 = 9;
const EPERM: i64 = 1;
const EMSGSIZE: i64 = 90;
const ERANGE: i64 = 34;

/// The IPC dispatcher (`exo_arch::syscall` calls it for the IPC numbers, interrupts still
/// off): `call` and `reply_recv` try the fastpath first ([`fast`]), which does not return
/// when it takes the call; everything else runs with interrupts on.
pub extern "C" fn dispatch(f: &mut IpcFrame) {
    let counted = match f.rax {
        nr::IPC_CALL => fast::<true>(f),
        nr::IPC_REPLY_RECV => fast::<false>(f),
        _ => false,
    };
    exo_arch::cpu::sti();
    let uid = crate::sched::current_uid();
    if !counted {
        task::count_syscall_of(uid);
    }
    process::ipc_syscall(uid, |t| {
        let r = match t {
            Some(t) => call(t, f, Some(resume)),
            None => Err(EBADF),
        };
        f.set_ret(r.unwrap_or_else(|e| -e));
    });
}

/// Info bits the fastpath leaves to the general path: reserved bits (an error), the slow
/// bit (asked for), a handle in the message (the sender's table checks it, the receiver's
/// gets it).
const FAST_REJECT: u64 = INFO_RESERVED | INFO_SLOW | INFO_HANDLE;

// Every bit the fastpath rejects lies above the zero-copy bit (40), which [`fast_info`] needs.
const _: () = assert!(FAST_REJECT == !0 << 41 && INFO_ZC == 1 << 40 && INFO_LEN_SHIFT == 32);

/// Whether the fastpath takes info word `info` (its precondition 1): no bit of
/// [`FAST_REJECT`] and a length of at most 64 bytes, in one test. With the zero-copy bit
/// cleared, adding `255 - 64` to the length field (bits 32..39) carries into bit 40 exactly
/// when the length is above 64, and every rejected bit is above that (icount: 4 fewer
/// instructions than the two tests; `fast_info_is_the_two_tests` checks it is the same).
#[inline(always)]
pub(super) const fn fast_info(info: u64) -> bool {
    (info & !INFO_ZC).wrapping_add(((0xff - MSG_MAX) as u64) << INFO_LEN_SHIFT) >> 40 == 0
}

/// The fastpath's entry for `call` (`CALL`) and `reply_recv`, interrupts off from the IPC
/// entry on. One copy per operation: with the kind a constant, no register carries it
/// through the path and fewer values spill to the stack (icount `ipc.rtt.64` 788 -> 756).
/// Preconditions, checked in this order (any failing: it returns and the general path
/// does the whole call, errors included):
/// 1. the info word has no bit of [`FAST_REJECT`] and a length of at most 64 bytes;
/// 2. the caller is a thread of a process that is not being killed, and the handle (all 64
///    bits of RDI: one bound check) names an endpoint in its table with the right the call
///    needs (send for `call`, receive for `reply_recv`);
/// 3. a zero-copy descriptor (info bit 40) lies inside the endpoint's region, and for
///    `reply_recv` the call answered came through that endpoint (else the general path
///    checks it against the region of the one it came through);
/// 4. `ipc::try_fast`'s own (a receiver, or the caller to reply to, blocked on this CPU).
///
/// A kill that lands after 2 does not find the caller blocked: `try_fast` reads the
/// process's flag again once the caller is marked blocked (`Live::dying`, one load).
///
/// Returns whether it counted the system call (it got past 2) when it did not take it.
#[inline(always)]
fn fast<const CALL: bool>(f: &mut IpcFrame) -> bool {
    let info = f.rsi;
    if !fast_info(info) {
        return false;
    }
    let g = IrqGuard::new();
    let Some(here) = Here::of(&g) else {
        return false;
    };
    let uid = here.uid();
    let Some(p) = process::live(uid) else {
        return false;
    };
    let need = if CALL { Rights::SEND } else { Rights::RECV };
    let Ok(c) = p.handles().get_word(f.rdi) else {
        return false;
    };
    if !c.rights.has(need) || (info & INFO_ZC != 0 && !fast_zc::<CALL>(here, c.ep, &f.words)) {
        return false;
    }
    task::count_syscall_of(uid);
    let aborted = move || p.dying();
    // No timeout (the usual case) is its own copy of the path: the deadline is a constant
    // there, so no register carries it and its checks fold away.
    if f.rbx == 0 {
        ipc::try_fast(
            here,
            CALL,
            c.ep,
            c.badge,
            info,
            &f.words,
            ipc::NO_DEADLINE,
            resume,
            aborted,
        );
    } else {
        let dl = deadline_after(f.rbx);
        ipc::try_fast(
            here, CALL, c.ep, c.badge, info, &f.words, dl, resume, aborted,
        );
    }
    true
}

/// [`fast`]'s check of a zero-copy descriptor sent through `ep` (its precondition 3).
#[inline(always)]
fn fast_zc<const CALL: bool>(here: Here<'_>, ep: ipc::EpRef, words: &[u64; 8]) -> bool {
    (CALL || ipc::received_on(here) == Some(ep)) && zc_in_region(ep, words).is_ok()
}

/// The end of a `call` or `reply_recv` parked at the system-call boundary (the fastpath,
/// `ipc::fastpath`), when the scheduler resumes the thread instead of a peer leaving
/// through its frame: the reply or next message from its slot into the frame (a handle in
/// it installed), or the error; then the dying check, as for every IPC call. Not the check
/// before as well: the message was taken on the thread's behalf while it was parked, and a
/// handle in it is held for it (a kill that came meanwhile ended the thread with the hold
/// in its slot, and the endpoint lived for ever: found by review, 2026-12-04). Installed,
/// the handle goes with the process's table.
fn resume(f: &mut IpcFrame) {
    let uid = crate::sched::current_uid();
    process::ipc_syscall_resumed(uid, |t| {
        let r = match (ipc::finish_parked(&mut f.words), t) {
            (Ok((info, badge)), Some(t)) => {
                f.rsi = incoming_handle(t, info, &mut f.words);
                f.rdi = badge;
                0
            }
            (Ok((info, _)), None) => {
                drop_incoming(info, &f.words);
                -EBADF
            }
            (Err(e), _) => -err(e),
        };
        f.set_ret(r);
    });
}

fn err(e: IpcError) -> i64 {
    e.errno()
}

/// The info word of `f` checked (reserved bits, length); returned without the slow bit, as
/// `ipc` encodes it ([`Msg`]'s label, length and zero-copy bit).
#[inline(always)]
fn info_in(f: &IpcFrame) -> Result<u64, i64> {
    let info = f.rsi;
    if info & INFO_RESERVED != 0 {
        return Err(EINVAL);
    }
    if (info >> INFO_LEN_SHIFT) as u8 as usize > MSG_MAX {
        return Err(EMSGSIZE);
    }
    Ok(info & !INFO_SLOW)
}

/// The message in `f`'s registers (its info checked).
#[inline(always)]
fn msg_in(f: &IpcFrame) -> Result<Msg, i64> {
    Ok(Msg::from_info(info_in(f)?, 0, f.words))
}

/// A zero-copy message's descriptor (words 0 and 1: offset, length in bytes) checked
/// against the region of `ep`, the endpoint the message is sent through (the one the
/// operation then uses: a second look-up of the handle could find another endpoint, put
/// there meanwhile by another thread): `ERANGE` when it does not lie inside it (or the
/// endpoint has no region). The kernel never touches the region: nothing to fault on.
#[inline(always)]
fn check_zc(ep: ipc::EpRef, info: u64, words: &[u64; 8]) -> Result<(), i64> {
    if info & INFO_ZC == 0 {
        return Ok(());
    }
    zc_in_region(ep, words)
}

/// [`check_zc`] of a descriptor for endpoint `ep` (the bound read lock-free: the operation
/// on `ep` then checks its generation).
#[inline(always)]
fn zc_in_region(ep: ipc::EpRef, words: &[u64; 8]) -> Result<(), i64> {
    zc_fits(ipc::zc_bound(ep).map_err(err)?, words)
}

/// Whether descriptor `words` (offset, length) ends below `bound` (a region's length plus
/// one, 0: no region), as `offset + length < bound` with nothing to overflow: the length
/// fits, then the offset lies below what is left (icount: `checked_add`, then `end < bound`,
/// cost two more).
#[inline(always)]
fn zc_fits(bound: u64, words: &[u64; 8]) -> Result<(), i64> {
    match bound.checked_sub(words[1]) {
        Some(room) if words[0] < room => Ok(()),
        _ => Err(ERANGE),
    }
}

/// [`check_zc`] of a reply sent by `reply_recv` on `ep` (`ipc_reply` calls the slow half
/// itself, with the answered call's endpoint): the reply goes to the caller being
/// answered, which mapped the region of the endpoint its call came through, not
/// necessarily `ep`'s (with no call to answer nothing is sent: `ep`'s). That endpoint may
/// be deaf (its region still the caller's) or gone (its caller still waits): its region is
/// read with the generation checked (`EPIPE` once destroyed), since no operation on it
/// follows.
#[inline(always)]
fn check_zc_reply(ep: ipc::EpRef, info: u64, words: &[u64; 8]) -> Result<(), i64> {
    if info & INFO_ZC == 0 {
        return Ok(());
    }
    zc_reply_slow(ipc::answering().unwrap_or(ep), words)
}

#[inline(never)]
fn zc_reply_slow(ep: ipc::EpRef, words: &[u64; 8]) -> Result<(), i64> {
    let (tag, len) = ipc::reply_region(ep).map_err(err)?;
    zc_fits(if tag == 0 { 0 } else { len.saturating_add(1) }, words)
}

/// A message about to be sent with `INFO_HANDLE` (else nothing): the handle word 7 names
/// must be the sender's (`EBADF`) and the rights asked for (0: all) among its own (`EPERM`);
/// words 6 and 7 become the badge and the endpoint reference with the rights. Returns the
/// caller's words 6 and 7, for [`restore`] if the operation then fails.
#[inline(always)]
fn outgoing_handle(
    t: &HandleTable,
    info: u64,
    words: &mut [u64; 8],
) -> Result<Option<[u64; 2]>, i64> {
    if info & INFO_HANDLE == 0 {
        return Ok(None);
    }
    let saved = [words[6], words[7]];
    outgoing_handle_slow(t, words)?;
    Ok(Some(saved))
}

/// On a failed send, the caller's words 6 and 7 back (on an error only `rax` changes).
#[cold]
fn restore(f: &mut IpcFrame, saved: Option<[u64; 2]>, e: i64) -> i64 {
    if let Some([w6, w7]) = saved {
        f.words[6] = w6;
        f.words[7] = w7;
    }
    e
}

#[inline(never)]
fn outgoing_handle_slow(t: &HandleTable, words: &mut [u64; 8]) -> Result<(), i64> {
    let h = Handle(words[7] as u32);
    let want = (words[7] >> HANDLE_RIGHTS_SHIFT) & 0xffff_ffff;
    let cap = t.get(h).map_err(|_| EBADF)?;
    let held = u64::from(cap.rights.0);
    let give = if want == 0 { held } else { want };
    if give & !held != 0 || give & !3 != 0 {
        return Err(EPERM);
    }
    let give = Rights(give as u8);
    ipc::hold_in_flight(cap.ep, give).map_err(|_| EBADF)?;
    words[6] = cap.badge;
    // In flight, word 7 is the hold: the endpoint reference with the rights.
    words[7] = ipc::hold_word(cap.ep, give);
    Ok(())
}

/// A message just received with `INFO_HANDLE` (else unchanged): the new handle installed in
/// `t` (word 7 its number, word 6 its rights), keeping the flight's hold of the endpoint, or
/// `INFO_HANDLE_LOST` in place of the bit (word 7 `u64::MAX`, word 6 0) when the endpoint is
/// gone or `t` is full (the hold dropped). Returns the info.
#[inline(always)]
fn incoming_handle(t: &HandleTable, info: u64, words: &mut [u64; 8]) -> u64 {
    if info & INFO_HANDLE == 0 {
        return info;
    }
    incoming_handle_slow(t, info, words)
}

#[inline(never)]
fn incoming_handle_slow(t: &HandleTable, info: u64, words: &mut [u64; 8]) -> u64 {
    let (ep, rights) = ipc::hold_of(words[7]);
    let cap = ipc::Cap {
        ep,
        rights,
        badge: words[6],
    };
    let installed = ipc::adopt(ep).ok().and_then(|()| match t.insert(cap) {
        Ok(h) => Some(h),
        Err(_) => {
            ipc::release(ep, rights);
            None
        }
    });
    match installed {
        Some(h) => {
            words[7] = u64::from(h.0);
            words[6] = u64::from(rights.0);
            info
        }
        None => {
            words[7] = u64::MAX;
            words[6] = 0;
            (info & !INFO_HANDLE) | INFO_HANDLE_LOST
        }
    }
}

/// A message received with `INFO_HANDLE` that no table takes: the flight's hold dropped.
#[cold]
fn drop_incoming(info: u64, words: &[u64; 8]) {
    if info & INFO_HANDLE != 0 {
        let (ep, rights) = ipc::hold_of(words[7]);
        ipc::release(ep, rights);
    }
}

/// Puts a received message into `f`'s registers.
#[inline(always)]
fn msg_out(t: &HandleTable, f: &mut IpcFrame, m: &Msg) {
    f.words = m.words;
    f.rsi = incoming_handle(t, m.info(), &mut f.words);
    f.rdi = m.badge;
}

/// `handle_info(handle)`: the rights of the caller's handle while its endpoint can be
/// used; `EBADF` for no such handle, `EPIPE` once the endpoint is destroyed or deaf (no
/// handle can receive on it any more: `ipc::endpoint::Queues::deaf`). A name server asks
/// it to let go of a name whose server ended.
pub fn handle_info(handle: u64) -> Result<i64, super::syscall::Errno> {
    use super::syscall::Errno;
    let t = process::handles().ok_or(Errno::Ebadf)?;
    let cap = t.get_word(handle).map_err(|_| Errno::Ebadf)?;
    ipc::check(cap.ep).map_err(|_| Errno::Epipe)?;
    Ok(i64::from(cap.rights.0))
}

/// TSC deadline of a timeout in nanoseconds (0: none).
#[inline(always)]
fn deadline(ns: u64) -> u64 {
    if ns == 0 {
        ipc::NO_DEADLINE
    } else {
        deadline_after(ns)
    }
}

#[inline(never)]
pub(super) fn deadline_after(ns: u64) -> u64 {
    // Rounded up and saturating: a huge timeout (u64::MAX, "practically forever") must not
    // wrap to an immediate one, and none may end early (until 2026-12-05 the rate was
    // rounded down to whole MHz: a 100 s timeout at 2.4999 GHz ended 40 ms early; found by
    // review).
    let ticks = exo_arch::tsc::ns_to_ticks_ceil(ns, crate::smp::time::tsc_hz());
    exo_arch::tsc::rdtsc()
        .saturating_add(ticks.max(1))
        .min(ipc::NO_DEADLINE - 1)
}

/// Test support (a fault-injection switch): `ipc_call`, `ipc_reply_recv` and `ipc_send` on
/// the general path stop here once they looked the handle up and checked the message, before
/// the operation, so a test can close the handle and put another endpoint in its entry.
pub static OP_HOLD: HoldPoint = HoldPoint::new();

fn handle(v: u64) -> Result<Handle, i64> {
    u32::try_from(v).map(Handle).map_err(|_| EBADF)
}

/// One IPC call on `f`. `park`: `f` is the calling thread's own frame, pushed by the IPC
/// entry at its kernel stack top, so the fastpath may park the thread at its system-call
/// boundary (`ipc::fastpath`); kernel tests that build a frame elsewhere pass `None`.
#[inline(always)]
pub(super) fn call(
    t: &HandleTable,
    f: &mut IpcFrame,
    park: Option<fn(&mut IpcFrame)>,
) -> Result<i64, i64> {
    match f.rax {
        nr::IPC_CALL | nr::IPC_REPLY_RECV => {
            // The two register-message calls: send, then wait for the answer (call) or for
            // the next caller (reply_recv); the message in and out travels in the frame.
            // The handle is looked up once: what is checked is what is used.
            let info = info_in(f)?;
            let is_call = f.rax == nr::IPC_CALL;
            let c = t.get(handle(f.rdi)?).map_err(err)?;
            if is_call {
                check_zc(c.ep, info, &f.words)?;
            } else {
                check_zc_reply(c.ep, info, &f.words)?;
            }
            let need = if is_call { Rights::SEND } else { Rights::RECV };
            if !c.rights.has(need) {
                return Err(EPERM);
            }
            let saved = outgoing_handle(t, info, &mut f.words)?;
            OP_HOLD.pass();
            // A handle in the message takes the slow path: its hand-over moves the flight's
            // hold (`ipc::hold_in_flight`) to the receiver.
            let fast = f.rsi & INFO_SLOW == 0 && saved.is_none();
            let dl = deadline(f.rbx);
            let r = if is_call {
                ipc::endpoint::call_regs(c.ep, c.badge, info, &mut f.words, dl, fast, park)
            } else {
                ipc::endpoint::reply_recv_regs(c.ep, info, &mut f.words, dl, fast, park)
            };
            if saved.is_some() {
                ipc::settle_in_flight();
            }
            let (info, badge) = r.map_err(|e| restore(f, saved, err(e)))?;
            f.rsi = incoming_handle(t, info, &mut f.words);
            f.rdi = badge;
            Ok(0)
        }
        nr::IPC_RECV => {
            let r = t.recv(handle(f.rdi)?, deadline(f.rbx)).map_err(err)?;
            msg_out(t, f, &r);
            Ok(0)
        }
        nr::IPC_SEND => {
            let mut m = msg_in(f)?;
            let c = t.get(handle(f.rdi)?).map_err(err)?;
            check_zc(c.ep, m.info(), &m.words)?;
            if !c.rights.has(Rights::SEND) {
                return Err(EPERM);
            }
            let held = outgoing_handle(t, m.info(), &mut m.words)?;
            OP_HOLD.pass();
            let r = ipc::send(c.ep, c.badge, &m, deadline(f.rbx));
            if held.is_some() {
                ipc::settle_in_flight();
            }
            r.map_err(err)?;
            Ok(0)
        }
        nr::IPC_REPLY => {
            let mut m = msg_in(f)?;
            if m.zc
                && let Some(ep) = ipc::answering()
            {
                // Checked as `reply_recv`'s: against the region of the endpoint the call
                // came through (with no call to answer, `reply` says `ESRCH`).
                zc_reply_slow(ep, &m.words)?;
            }
            let held = outgoing_handle(t, m.info(), &mut m.words)?;
            let r = ipc::endpoint::reply(&m);
            if held.is_some() {
                ipc::settle_in_flight();
            }
            r.map_err(err)?;
            Ok(0)
        }
        nr::ENDPOINT_CREATE => {
            let rights = f.rdi;
            if rights == 0 || rights > 3 {
                return Err(EINVAL);
            }
            // Charged to the caller's process tree (`limits`: EAGAIN over its share).
            t.create_endpoint_for(Rights(rights as u8), f.rsi, process::caller_pid())
                .map(|h| i64::from(h.0))
                .map_err(err)
        }
        nr::HANDLE_CLOSE => {
            t.close(handle(f.rdi)?).map_err(|_| EBADF)?;
            Ok(0)
        }
        _ => Err(38),
    }
}
