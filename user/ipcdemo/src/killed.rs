//! The `KILLED` role: the process side of the kernel test
//! `user.ipc.kill_during_a_fastpath_block_is_not_lost` (`kernel/src/user/tests_ipc.rs`),
//! which starts it with handles of its own table and `arg = ROLE << 56 | KILLED << 48 |
//! how << 40 | sync << 16 | h`. The process makes one call on `sync`, which the test answers
//! once it holds the lock of `h`'s endpoint, then its last operation on `h`, which waits
//! for that lock inside the kernel (past the kernel's check of its process) while the
//! test kills the process. The kill must end it there: this code never goes on.

use exo_rt::IpcMsg;

/// Server mode: the `KILLED` role.
pub const KILLED: u64 = 9;
/// `how`: the last operation is a call (the fastpath).
pub const CALL: u64 = 0;
/// `how`: a call that passes `sync` along (a handle in the message: the general path,
/// whose fastpath attempt switches without parking).
pub const CALL_HANDLE: u64 = 1;
/// `how`: a receive on `h` before the call on `sync`, then the reply and the next receive
/// (`ipc_reply_recv`, the fastpath).
pub const REPLY_RECV: u64 = 2;

/// The role; its exit code says where it stopped unkilled (the test reads it only when
/// the process ended before the kill; after the kill the status is the kill's).
pub fn role(arg: u64) -> i32 {
    let h = arg as u16 as u32;
    let sync = (arg >> 16) as u16 as u32;
    let how = (arg >> 40) & 0xff;
    let m = IpcMsg::new(1, [0; 8]);
    if how == REPLY_RECV && exo_rt::ipc_recv(h, 0).is_err() {
        return 2;
    }
    if exo_rt::ipc_call(sync, &m, 0).is_err() {
        return 3;
    }
    let r = match how {
        CALL => exo_rt::ipc_call(h, &m, 0),
        CALL_HANDLE => exo_rt::ipc_call(h, &m.with_handle(sync, 0), 0),
        _ => exo_rt::ipc_reply_recv(h, &m, 0),
    };
    // Back in ring 3 after the kill: the kernel let the thread go on (or block, then woke it
    // for another reason).
    match r {
        Ok(_) => 9,
        Err(_) => 10,
    }
}
