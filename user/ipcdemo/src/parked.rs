//! Case 9: threads parked at their system-call boundary (the IPC fastpath) resumed by the
//! scheduler instead of by a peer leaving through their frame. A client and a server
//! thread of this process, both pinned to one CPU, so every call whose server waits finds
//! it blocked there and takes the fastpath. Each round:
//! 1. an echo call, checked (both threads end up parked);
//! 2. a call the server answers with a handle (`INFO_HANDLE`): a reply with a handle is not
//!    written into the client's frame, so the parked client is switched to and its
//!    continuation installs the handle, which must name the endpoint with the rights given;
//! 3. a call with a 5 ms timeout the server does not answer until the client counted it
//!    as timed out: the parked client is woken by its deadline and its continuation returns
//!    `ETIMEDOUT`; the server's late reply is `ESRCH`.
//!
//! The kernel counts both ends (`IPC,init,...,parked_exits,..,parked_resumes,..` after
//! `/init`), and the CI checks the IPC suite took both.

use core::sync::atomic::{AtomicU32, Ordering};
use exo_rt::abi::ipc::RIGHT_SEND;
use exo_rt::{Errno, IpcMsg, println};

const ROUNDS: u32 = 8;
/// Every other wait's bound (a hung peer fails the case instead of hanging it).
const WAIT: u64 = 30_000 * super::MS;
const LABEL_GIVE: u32 = 0x140;
const LABEL_LATE: u32 = 0x141;
const LABEL_HANDLE: u32 = 0x142;

/// Late calls the client has seen time out (the server replies to call `k` once this is
/// above `k`).
static EXPIRED: AtomicU32 = AtomicU32::new(0);
/// The server's verdict on its late replies: 0 all `ESRCH`, else the first wrong one + 1.
static LATE_WRONG: AtomicU32 = AtomicU32::new(0);

/// The server thread: echo, give a handle, or answer late, until `QUIT`.
fn server(h: u64) -> i32 {
    let h = h as u32;
    let mut m = match exo_rt::ipc_recv(h, WAIT) {
        Ok(m) => m,
        Err(_) => return 2,
    };
    let mut late = 0u32;
    loop {
        let reply = match m.label {
            super::LABEL_QUIT => {
                let _ = exo_rt::ipc_reply(&IpcMsg::new(super::LABEL_QUIT, [0; 8]));
                return 0;
            }
            LABEL_GIVE => IpcMsg::new(LABEL_HANDLE, [0; 8]).with_handle(h, RIGHT_SEND),
            LABEL_LATE => {
                let t0 = exo_rt::monotonic_nanos();
                while EXPIRED.load(Ordering::Acquire) <= late {
                    if exo_rt::monotonic_nanos() - t0 > WAIT {
                        return 3; // the caller never timed out
                    }
                    let _ = exo_rt::nanosleep(&exo_rt::Timespec::from_nanos(super::MS));
                }
                if exo_rt::ipc_reply(&IpcMsg::new(1, [0; 8])) != Err(Errno::ESRCH) {
                    let _ = LATE_WRONG.compare_exchange(
                        0,
                        late + 1,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
                late += 1;
                m = match exo_rt::ipc_recv(h, WAIT) {
                    Ok(m) => m,
                    Err(_) => return 4,
                };
                continue;
            }
            _ => IpcMsg::new(m.label + 1, m.words),
        };
        m = match exo_rt::ipc_reply_recv(h, &reply, WAIT) {
            Ok(m) => m,
            Err(_) => return 5,
        };
    }
}

pub fn parked() -> Result<(), &'static str> {
    let cpu = exo_rt::getcpu().map_err(|_| "getcpu")?;
    exo_rt::pin_to_cpu(cpu).map_err(|_| "pin")?;
    let h = super::endpoint()?;
    let t = exo_rt::thread::spawn(server, u64::from(h)).map_err(|_| "thread")?;
    for round in 0..ROUNDS {
        let w = [u64::from(round).wrapping_mul(0x9e37_79b9_7f4a_7c15); 8];
        match exo_rt::ipc_call(h, &IpcMsg::new(super::LABEL_ECHO, w), WAIT) {
            Ok(r) if r.label == super::LABEL_ECHO + 1 && r.words == w => {}
            _ => return Err("an echo call came back wrong"),
        }
        let r = exo_rt::ipc_call(h, &IpcMsg::new(LABEL_GIVE, [0; 8]), WAIT)
            .map_err(|_| "the handle call failed")?;
        let k = match (r.label, r.handle()) {
            (LABEL_HANDLE, Some(k)) if r.handle_rights() == RIGHT_SEND && k != h => k,
            _ => return Err("the reply did not carry a new send-only handle"),
        };
        // The new handle names the same endpoint: a call through it reaches the server.
        match exo_rt::ipc_call(k, &IpcMsg::new(super::LABEL_ECHO, w), WAIT) {
            Ok(r) if r.label == super::LABEL_ECHO + 1 && r.words == w => {}
            _ => return Err("a call through the received handle came back wrong"),
        }
        exo_rt::handle_close(k).map_err(|_| "close of the received handle")?;
        match exo_rt::ipc_call(h, &IpcMsg::new(LABEL_LATE, [0; 8]), 5 * super::MS) {
            Err(Errno::ETIMEDOUT) => {}
            _ => return Err("the unanswered call did not time out"),
        }
        EXPIRED.store(round + 1, Ordering::Release);
    }
    match exo_rt::ipc_call(h, &IpcMsg::new(super::LABEL_QUIT, [0; 8]), WAIT) {
        Ok(m) if m.label == super::LABEL_QUIT => {}
        _ => return Err("quit call"),
    }
    if t.join() != Ok(0) {
        return Err("the server thread did not return 0");
    }
    match LATE_WRONG.load(Ordering::Acquire) {
        0 => {}
        _ => return Err("a late reply was not ESRCH"),
    }
    exo_rt::handle_close(h).map_err(|_| "close")?;
    println!(
        "ipcdemo 9: {ROUNDS} rounds on cpu {cpu}: echo, a handle in the reply, a timeout while parked: all checked"
    );
    Ok(())
}
