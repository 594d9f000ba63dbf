//! The `PARKED_HELD` role: the process side of the kernel test
//! `user.ipc.parked_thread_resumes_counting_no_lock` (`kernel/src/user/tests_ipc.rs`),
//! started pinned to one CPU with `arg = ROLE << 56 | PARKED_HELD << 48 | sync` (`sync`: a
//! send handle to the test's endpoint, served by a kernel thread of that CPU, which answers
//! each call once it has done or checked what the label says). Two threads, both on that
//! CPU: the main one (the caller) and a server thread on an endpoint of their own.
//! 1. `HELLO` on `sync` (the test takes the caller's thread: the process's only one yet).
//! 2. The server receives; the caller's `PRIME` call, answered with `ipc_reply_recv`: the
//!    fastpath parks the server at its system-call boundary as the endpoint's receiver.
//! 3. `ARM` on `sync` (the test arms `aspace::MAP_HOLD`), then a two-page map, held inside
//!    the kernel with the address space's tables locked (a counted lock) until the test saw
//!    the caller switched out there (its held-lock word not 0) and let it go.
//! 4. The caller's `MSG` call: the server is parked, so the fastpath's parked exit runs, the
//!    caller parks without its word stored (stale: the count in `map`) and the CPU leaves
//!    as the server.
//! 5. The server's `PARKED` call on `sync` (the test checks the stale word and the exit),
//!    then its answer by `ipc_reply`, never the fastpath: the caller is resumed by a switch
//!    (`parked_entry`), and its `DONE` call on `sync` switches it out again, storing the
//!    count it ran with, which the test reads (0: it holds nothing).
//! 6. `QUIT` to the server, joined. Exit 0, or the step that failed (the server's: 20 +).

use exo_rt::IpcMsg;
use exo_rt::abi::ipc::{RIGHT_RECV, RIGHT_SEND};

/// Server mode: the `PARKED_HELD` role.
pub const PARKED_HELD: u64 = 15;
/// Labels of the calls on `sync` (the test's `HELD_*`).
const HELLO: u32 = 1;
const ARM: u32 = 2;
const PARKED: u32 = 3;
const DONE: u32 = 4;
/// Labels of the calls between the two threads.
const PRIME: u32 = 0x150;
const MSG: u32 = 0x151;

fn sync_call(sync: u32, label: u32) -> bool {
    exo_rt::ipc_call(sync, &IpcMsg::new(label, [0; 8]), 0).is_ok_and(|r| r.label == label)
}

/// The server thread (`arg`: its endpoint's handle, `sync`'s above bit 32).
fn server(arg: u64) -> i32 {
    let (h, sync) = (arg as u32, (arg >> 32) as u32);
    match exo_rt::ipc_recv(h, 0) {
        Ok(m) if m.label == PRIME => {}
        _ => return 1,
    }
    // Parked here as the endpoint's receiver; back with the caller's `MSG`, through the exit.
    match exo_rt::ipc_reply_recv(h, &IpcMsg::new(PRIME + 1, [0; 8]), 0) {
        Ok(m) if m.label == MSG => {}
        _ => return 2,
    }
    if !sync_call(sync, PARKED) {
        return 3;
    }
    // `IPC_REPLY` never takes the fastpath: the caller is woken, then switched to.
    if exo_rt::ipc_reply(&IpcMsg::new(MSG + 1, [0; 8])).is_err() {
        return 4;
    }
    match exo_rt::ipc_recv(h, 0) {
        Ok(m) if m.label == super::LABEL_QUIT => {}
        _ => return 5,
    }
    if exo_rt::ipc_reply(&IpcMsg::new(super::LABEL_QUIT, [0; 8])).is_err() {
        return 6;
    }
    0
}

/// The role (the caller's side).
pub fn role(arg: u64) -> i32 {
    let sync = arg as u16 as u32;
    if !sync_call(sync, HELLO) {
        return 1;
    }
    let Ok(h) = exo_rt::endpoint_create(RIGHT_SEND | RIGHT_RECV, 0) else {
        return 2;
    };
    let Ok(t) = exo_rt::thread::spawn(server, u64::from(h) | u64::from(sync) << 32) else {
        return 3;
    };
    let call = |label: u32| {
        exo_rt::ipc_call(h, &IpcMsg::new(label, [0; 8]), 0).is_ok_and(|r| r.label == label + 1)
    };
    if !call(PRIME) {
        return 4;
    }
    if !sync_call(sync, ARM) {
        return 5;
    }
    let prot = exo_rt::abi::PROT_READ | exo_rt::abi::PROT_WRITE;
    let Ok(page) = exo_rt::map_anonymous(2 * 4096, prot) else {
        return 6;
    };
    if !call(MSG) {
        return 7;
    }
    if !sync_call(sync, DONE) {
        return 8;
    }
    match exo_rt::ipc_call(h, &IpcMsg::new(super::LABEL_QUIT, [0; 8]), 0) {
        Ok(m) if m.label == super::LABEL_QUIT => {}
        _ => return 9,
    }
    match t.join() {
        Ok(0) => {}
        Ok(c) => return 20 + c,
        Err(_) => return 10,
    }
    // SAFETY: nothing of this program uses the two pages.
    if unsafe { exo_rt::munmap(page.as_ptr() as usize, 2 * 4096) }.is_err() {
        return 11;
    }
    0
}
