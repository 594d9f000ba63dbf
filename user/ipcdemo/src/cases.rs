//! The cases of `/ipcdemo` (its `arg` selects one); every one exits 0 when all went as the
//! IPC contract says. Shared with `/init` (`#[path]` include), which runs them all.
#![allow(dead_code)]

/// One case: its `arg` and what it checks.
pub const CASES: &[(u64, &str)] = &[
    (
        0,
        "client and server processes: 2 x 1000 calls (fastpath, then the slow path), sequence numbers, checksums, badge",
    ),
    (
        1,
        "client and server threads of one process: 2 x 1000 calls, same checks",
    ),
    (
        2,
        "server killed (#UD) holding a call: the client gets ECONNRESET, no hang",
    ),
    (
        3,
        "bad input: bad and closed handles, rights, lengths above 64, reserved bits, no caller, a full table",
    ),
    (
        4,
        "timeouts: recv, call and send with no peer; a reply after the caller timed out is ESRCH",
    ),
    (
        5,
        "endpoint destroyed (last handle closed) while a thread is blocked calling it: EPIPE",
    ),
];
