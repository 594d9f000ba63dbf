//! The IPC system calls (`exo_abi::nr::IPC_CALL`..=`HANDLE_CLOSE`): the entry stub's IPC
//! path saves the callee-saved registers too ([`IpcFrame`]), the message travels in
//! registers (`exo_abi::ipc`: info in RSI, words in RDX R10 R8 R9 R12 R13 R14 R15, timeout
//! in ns in RBX, 0: none), the handles are the calling process's table
//! (`process::handles`). Every error is a typed errno: bad or closed handles `EBADF`, a
//! missing right `EPERM`, reserved info bits `EINVAL`, a length above 64 `EMSGSIZE`, a
//! destroyed endpoint `EPIPE`, a server that ended mid-call `ECONNRESET`, one that dropped
//! the call `ECONNABORTED`, a timeout `ETIMEDOUT`, no call to answer `ESRCH`, no endpoint
//! or handle left `EAGAIN`, a zero-copy descriptor (info bit 40: words 0 and 1 are offset
//! and length) outside the endpoint's shared region `ERANGE` (`ipc_reply`, which names no
//! endpoint, refuses the bit with `EINVAL`). No pointer is read: there is nothing to fault on.

use super::syscall::nr;
use super::{process, task};
use crate::ipc::{self, Handle, HandleTable, IpcError, Msg, Rights};
use exo_arch::syscall::IpcFrame;

// `exo_abi::ipc`'s encoding of the info word (the kernel does not link `exo-abi`).
const INFO_LEN_SHIFT: u32 = 32;
const INFO_SLOW: u64 = 1 << 63;
const INFO_ZC: u64 = ipc::INFO_ZC;
const INFO_RESERVED: u64 = !(INFO_SLOW | INFO_ZC | (0xff << INFO_LEN_SHIFT) | 0xffff_ffff);
const MSG_MAX: usize = 64;

const EINVAL: i64 = 22;
const EBADF: i64 = 9;
const EMSGSIZE: i64 = 90;
const ERANGE: i64 = 34;

/// The IPC dispatcher (`exo_arch::syscall` calls it for the IPC numbers).
pub extern "C" fn dispatch(f: &mut IpcFrame) {
    task::count_syscall();
    let r = match process::handles() {
        Some(t) => call(t, f),
        None => Err(EBADF),
    };
    f.set_ret(r.unwrap_or_else(|e| -e));
    process::exit_if_dying();
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
/// against the region of the endpoint `h` names: `ERANGE` when it does not lie inside it
/// (or the endpoint has no region). The kernel never touches the region: nothing to fault on.
#[inline(always)]
fn check_zc(t: &HandleTable, h: Handle, info: u64, words: &[u64; 8]) -> Result<(), i64> {
    if info & INFO_ZC == 0 {
        return Ok(());
    }
    let c = t.get(h).map_err(err)?;
    let (_, len) = ipc::region(c.ep).map_err(err)?;
    match words[0].checked_add(words[1]) {
        Some(end) if end <= len => Ok(()),
        _ => Err(ERANGE),
    }
}

/// Puts a received message into `f`'s registers.
#[inline(always)]
fn msg_out(f: &mut IpcFrame, m: &Msg) {
    f.rsi = m.info();
    f.rdi = m.badge;
    f.words = m.words;
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
fn deadline_after(ns: u64) -> u64 {
    let per_us = (crate::smp::time::tsc_hz() / 1_000_000).max(1);
    let ticks = (ns / 1000).saturating_mul(per_us) + (ns % 1000) * per_us / 1000;
    exo_arch::tsc::rdtsc()
        .saturating_add(ticks.max(1))
        .min(ipc::NO_DEADLINE - 1)
}

fn handle(v: u64) -> Result<Handle, i64> {
    u32::try_from(v).map(Handle).map_err(|_| EBADF)
}

#[inline(always)]
pub(super) fn call(t: &HandleTable, f: &mut IpcFrame) -> Result<i64, i64> {
    match f.rax {
        nr::IPC_CALL => {
            let info = info_in(f)?;
            let h = handle(f.rdi)?;
            check_zc(t, h, info, &f.words)?;
            let fast = f.rsi & INFO_SLOW == 0;
            let dl = deadline(f.rbx);
            let (info, badge) = t.call_regs(h, info, &mut f.words, dl, fast).map_err(err)?;
            f.rsi = info;
            f.rdi = badge;
            Ok(0)
        }
        nr::IPC_REPLY_RECV => {
            let info = info_in(f)?;
            let h = handle(f.rdi)?;
            check_zc(t, h, info, &f.words)?;
            let fast = f.rsi & INFO_SLOW == 0;
            let dl = deadline(f.rbx);
            let (info, badge) = t
                .reply_recv_regs(h, info, &mut f.words, dl, fast)
                .map_err(err)?;
            f.rsi = info;
            f.rdi = badge;
            Ok(0)
        }
        nr::IPC_RECV => {
            let r = t.recv(handle(f.rdi)?, deadline(f.rbx)).map_err(err)?;
            msg_out(f, &r);
            Ok(0)
        }
        nr::IPC_SEND => {
            let m = msg_in(f)?;
            let h = handle(f.rdi)?;
            check_zc(t, h, m.info(), &m.words)?;
            t.send(h, &m, deadline(f.rbx)).map_err(err)?;
            Ok(0)
        }
        nr::IPC_REPLY => {
            let m = msg_in(f)?;
            if m.zc {
                // No endpoint named: no region to check a descriptor against.
                return Err(EINVAL);
            }
            ipc::endpoint::reply(&m).map_err(err)?;
            Ok(0)
        }
        nr::ENDPOINT_CREATE => {
            let rights = f.rdi;
            if rights == 0 || rights > 3 {
                return Err(EINVAL);
            }
            t.create_endpoint(Rights(rights as u8), f.rsi)
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
