//! The cases of `/faults` (its `arg` selects one) and how each must end. Shared with
//! `/init` (`#[path]` include), which runs them all and checks every end.
#![allow(dead_code)]

pub use exo_rt::suite::Case;
use exo_rt::{ExitStatus, KillCause};

fn killed(cause: KillCause) -> impl Fn(ExitStatus) -> bool {
    move |s| s == ExitStatus::Killed(cause)
}

/// The exit code of a case whose own setup was refused memory (`ENOMEM`: case 13's mapping),
/// so it never reached the fault it tests. The fuzzer, whose workers press on memory at
/// will, accepts it ([`fuzz_accepts`]); the fault suite, run with memory to spare, does not
/// (until 2026-12-06 such a child exited 1 and failed a fuzz campaign run in 48 MiB).
pub const SETUP_NO_MEMORY: i32 = 75;

/// Whether the fuzzer takes `s` as the end of case `arg`: its own end, or for case 13
/// [`SETUP_NO_MEMORY`]. `None`: no such case.
pub fn fuzz_accepts(arg: u64, s: ExitStatus) -> Option<bool> {
    let c = CASES.iter().find(|c| c.arg == arg)?;
    Some((c.expect)(s) || (arg == 13 && s == ExitStatus::from_exit_code(SETUP_NO_MEMORY)))
}

/// Every case, by `arg`.
pub const CASES: &[Case] = &[
    Case {
        arg: 0,
        name: "read of unmapped 0x1000",
        expect: |s| killed(KillCause::PF)(s),
        expect_text: "killed #PF",
    },
    Case {
        arg: 1,
        name: "read of non-canonical 0x0000800000000000",
        expect: |s| killed(KillCause::GP)(s),
        expect_text: "killed #GP",
    },
    Case {
        arg: 2,
        name: "ud2",
        expect: |s| killed(KillCause::UD)(s),
        expect_text: "killed #UD",
    },
    Case {
        arg: 3,
        name: "div by zero",
        expect: |s| killed(KillCause::DE)(s),
        expect_text: "killed #DE",
    },
    Case {
        arg: 4,
        name: "int3",
        expect: |s| killed(KillCause::BP)(s),
        expect_text: "killed #BP",
    },
    Case {
        arg: 5,
        name: "hlt (privileged)",
        expect: |s| killed(KillCause::GP)(s),
        expect_text: "killed #GP",
    },
    Case {
        arg: 6,
        name: "jump to kernel 0xffffffff80000000",
        expect: |s| killed(KillCause::PF)(s),
        expect_text: "killed #PF",
    },
    Case {
        arg: 7,
        name: "stack overflow by recursion",
        expect: |s| killed(KillCause::PF)(s),
        expect_text: "killed #PF",
    },
    Case {
        arg: 8,
        name: "write to own text (W^X)",
        expect: |s| killed(KillCause::PF)(s),
        expect_text: "killed #PF",
    },
    Case {
        arg: 9,
        name: "execute the stack (NX)",
        expect: |s| killed(KillCause::PF)(s),
        expect_text: "killed #PF",
    },
    Case {
        arg: 10,
        name: "bad pointers and flags to system calls",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0 (every call refused with the documented errno)",
    },
    Case {
        arg: 11,
        name: "the lower half's last page cannot be mapped (a syscall there would sysret to non-canonical)",
        expect: |s| s == ExitStatus::Exited(0),
        expect_text: "exit 0 (mmap of the page is ENOMEM)",
    },
    Case {
        arg: 12,
        name: "panic!",
        expect: |s| s == ExitStatus::Exited(101),
        expect_text: "exit 101 (exo-rt's panic handler)",
    },
    Case {
        arg: 13,
        name: "PROT_NONE: contents kept, kernel copies EFAULT, then a read",
        expect: |s| killed(KillCause::PF)(s),
        expect_text: "killed #PF",
    },
];
