//! The cases of `/threads` (its `arg` selects one) and how each process must end. Shared
//! with `/init` (`#[path]` include), which runs them all and checks every end.
#![allow(dead_code)]

pub use exo_rt::suite::Case;
use exo_rt::{ExitStatus, KillCause};

/// Every case, by `arg`.
pub const CASES: &[Case] = &[
    Case {
        arg: 0,
        name: "8 threads on any CPU share memory and the pid; each joined with its value",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 1,
        name: "join errors: self EDEADLK, unknown and foreign tids ESRCH, twice ESRCH, kernel entry EFAULT; a futex wake of 1 << 32 wakes nobody; set_tid_address words",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 2,
        name: "exit_group(42) while threads wait on a futex, sleep, spin, yield and join",
        expect: |s| s == ExitStatus::Exited(42),
        expect_text: "exit 42",
    },
    Case {
        arg: 3,
        name: "ud2 in one thread while the others wait, sleep, spin, yield and join",
        expect: |s| s == ExitStatus::Killed(KillCause::UD),
        expect_text: "killed #UD",
    },
    Case {
        arg: 4,
        name: "main thread_exit(7); the last thread joins it (7) and exits 9",
        expect: |s| s == ExitStatus::Exited(9),
        expect_text: "exit 9",
    },
    Case {
        arg: 5,
        name: "threads until EAGAIN: 63 besides main, then all joined",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 6,
        name: "300 threads created and joined one after another",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
    Case {
        arg: 7,
        name: "four threads call exit_group(1..=4) at once",
        expect: |s| matches!(s, ExitStatus::Exited(1..=4)),
        expect_text: "exit 1, 2, 3 or 4",
    },
    Case {
        arg: 8,
        name: "a child that never ends: wait with a timeout says ETIMEDOUT (0 and 50 ms), kill(child, 0) and kill(child, SIGKILL) succeed, wait says killed SIGKILL, then kill says ESRCH",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0",
    },
];
