//! The cases of `/ipcdemo` (its `arg` selects one); every one exits 0 when all went as the
//! IPC contract says. Shared with `/init` (`#[path]` include), which runs them all.
#![allow(dead_code)]

use exo_rt::ExitStatus;
pub use exo_rt::suite::Case;

/// The case that uses a name server (`/names`): `/init` runs every case with
/// [`with_ns`]`(case, ns)` (every case inherits its handle: case 3 counts it in its full
/// table); without one, case 8 starts its own.
pub const NS_CASE: u64 = 8;
/// `arg` bit: bits 16..48 are the handle of a name server the process inherited.
pub const NS_GIVEN: u64 = 1 << 8;

/// The `arg` of case `case` with the name server whose handle is `ns`.
pub const fn with_ns(case: u64, ns: u32) -> u64 {
    case | NS_GIVEN | (ns as u64) << 16
}

/// The name server's handle in `arg`, if [`with_ns`] put one there.
pub const fn ns_of(arg: u64) -> Option<u32> {
    if arg & NS_GIVEN != 0 && arg >> 48 == 0 {
        Some((arg >> 16) as u32)
    } else {
        None
    }
}

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
        name: "zero-copy: shm_map errors, a region shared by two mappings, 200 round trips of 1 KiB checked by checksums, out-of-region descriptors ERANGE, a reply through another endpoint checked against the call's region, a create that cannot map leaves no region",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 7,
        name: "batches: 100 x 16 messages of 64 bytes in one call each through the region, order and checksums checked; bad batch descriptors ERANGE",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: NS_CASE,
        name: "handles in messages through the name server: an echo server registers its endpoint, the client looks it up (send right only) and makes 203 checked calls; EBADF, EPERM, EINVAL for bad handles in messages; INFO_HANDLE_LOST with a full table; EXISTS, NOTFOUND, FULL, BADNAME; unregister",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 9,
        name: "parked threads resumed by the scheduler: client and server threads on one CPU, a handle in the reply and a timeout while parked, 8 rounds",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 10,
        name: "fusion rings between processes on two CPUs (shared region, shared futexes): 2000 checked calls with 40 forced futex wake-ups, a held call that times out and its late reply discarded, close wakes the parked server (EPIPE), a server killed (#UD, then #DB) or a client ended wakes the other side (ECONNRESET)",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
];
