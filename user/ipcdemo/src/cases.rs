//! The cases of `/ipcdemo` (its `arg` selects one); every one exits 0 when all went as the
//! IPC contract says. Shared with `/init` (`#[path]` include), which runs them all.
#![allow(dead_code)]

use exo_rt::ExitStatus;
pub use exo_rt::suite::Case;

/// Every case, by `arg`: each exits 0 when all went as the contract says.
pub const CASES: &[Case] = &[
    Case {
        arg: 0,
        name: "client and server processes: 2 x 1000 calls (fastpath, then the slow path), sequence numbers, checksums, badge",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 1,
        name: "client and server threads of one process: 2 x 1000 calls, same checks",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 2,
        name: "server killed (#UD) holding a call: the client gets ECONNRESET, no hang",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 3,
        name: "bad input: bad and closed handles, rights, lengths above 64, reserved bits, no caller, a full table",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 4,
        name: "timeouts: recv, call and send with no peer; a reply after the caller timed out is ESRCH",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 5,
        name: "endpoint destroyed (last handle closed) while a thread is blocked calling it: EPIPE",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 6,
        name: "zero-copy: shm_map errors, a region shared by two mappings, 200 round trips of 1 KiB checked by checksums, out-of-region descriptors ERANGE",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 7,
        name: "batches: 100 x 16 messages of 64 bytes in one call each through the region, order and checksums checked; bad batch descriptors ERANGE",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
];
