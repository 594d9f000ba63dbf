//! The cases of `/faults` (its `arg` selects one) and how each must end. Shared with
//! `/init` (`#[path]` include), which runs them all and checks every end.
#![allow(dead_code)]

pub use exo_rt::suite::Case;
use exo_rt::{ExitStatus, KillCause};

fn killed(cause: KillCause) -> impl Fn(ExitStatus) -> bool {
    move |s| s == ExitStatus::Killed(cause)
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
