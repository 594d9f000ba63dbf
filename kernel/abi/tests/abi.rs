//! The tables and encodings of `exo-abi`: numbers, errors, statuses, `PROC` lines.

use exo_abi::proc::STATUS_KILLED;
use exo_abi::*;
use proptest::prelude::*;

/// Every constant of `nr`, by the name its call has in `SYSCALLS`.
const NUMBERS: &[(usize, &str)] = &[
    (nr::WRITE, "write"),
    (nr::MMAP, "mmap"),
    (nr::MPROTECT, "mprotect"),
    (nr::MUNMAP, "munmap"),
    (nr::SCHED_YIELD, "sched_yield"),
    (nr::NANOSLEEP, "nanosleep"),
    (nr::GETPID, "getpid"),
    (nr::EXIT, "exit"),
    (nr::KILL, "kill"),
    (nr::FUTEX, "futex"),
    (nr::SCHED_SETAFFINITY, "sched_setaffinity"),
    (nr::SET_TID_ADDRESS, "set_tid_address"),
    (nr::CLOCK_GETTIME, "clock_gettime"),
    (nr::EXIT_GROUP, "exit_group"),
    (nr::GETCPU, "getcpu"),
    (nr::SPAWN, "spawn"),
    (nr::WAIT, "wait"),
    (nr::THREAD_CREATE, "thread_create"),
    (nr::THREAD_EXIT, "thread_exit"),
    (nr::THREAD_JOIN, "thread_join"),
    (nr::IPC_CALL, "ipc_call"),
    (nr::IPC_REPLY_RECV, "ipc_reply_recv"),
    (nr::IPC_RECV, "ipc_recv"),
    (nr::IPC_SEND, "ipc_send"),
    (nr::IPC_REPLY, "ipc_reply"),
    (nr::ENDPOINT_CREATE, "endpoint_create"),
    (nr::HANDLE_CLOSE, "handle_close"),
    (nr::SHM_MAP, "shm_map"),
    (nr::HANDLE_INFO, "handle_info"),
];

#[test]
fn the_table_is_sorted_with_unique_numbers_and_names() {
    assert!(SYSCALLS.windows(2).all(|w| w[0].number < w[1].number));
    let mut names: Vec<_> = SYSCALLS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SYSCALLS.len(), "duplicate name");
}

#[test]
fn every_number_constant_is_in_the_table_and_nothing_else() {
    assert_eq!(NUMBERS.len(), SYSCALLS.len());
    for &(number, name) in NUMBERS {
        let info = info(number).unwrap_or_else(|| panic!("{name} ({number}) not in SYSCALLS"));
        assert_eq!(info.name, name);
    }
}

#[test]
fn linux_numbers_are_linux_and_exo_numbers_start_at_512() {
    let linux = [
        ("write", 1),
        ("mmap", 9),
        ("mprotect", 10),
        ("munmap", 11),
        ("sched_yield", 24),
        ("nanosleep", 35),
        ("getpid", 39),
        ("exit", 60),
        ("kill", 62),
        ("futex", 202),
        ("sched_setaffinity", 203),
        ("set_tid_address", 218),
        ("clock_gettime", 228),
        ("exit_group", 231),
        ("getcpu", 309),
    ];
    for s in SYSCALLS {
        match linux.iter().find(|(n, _)| *n == s.name) {
            Some(&(_, number)) => assert_eq!(s.number, number, "{}", s.name),
            None => assert!(s.number >= nr::EXO_BASE, "{} below 512", s.name),
        }
    }
    assert_eq!(
        [
            nr::SPAWN,
            nr::WAIT,
            nr::THREAD_CREATE,
            nr::THREAD_EXIT,
            nr::THREAD_JOIN
        ],
        [512, 513, 514, 515, 516]
    );
}

#[test]
fn each_call_has_at_most_six_arguments_and_sorted_unique_errors() {
    for s in SYSCALLS {
        assert!(s.args.len() <= 6, "{}", s.name);
        assert!(
            s.errors.windows(2).all(|w| w[0].code() < w[1].code()),
            "{}: errors not in ascending order",
            s.name
        );
        assert!(!s.summary.is_empty());
        let no_return = s.returns == "never returns";
        assert_eq!(
            no_return,
            ["exit", "exit_group", "thread_exit"].contains(&s.name),
            "{}",
            s.name
        );
        if no_return {
            assert!(s.errors.is_empty(), "{} cannot fail", s.name);
        }
        assert!(!s.may_fail_with(Errno::EINTR), "no call is interrupted");
    }
}

#[test]
fn unknown_numbers_have_no_info() {
    for n in [0, 2, 38, 310, 511, 517, 1000, usize::MAX] {
        assert!(info(n).is_none(), "{n}");
    }
}

#[test]
fn errno_values_are_linux_values() {
    let linux = [
        (Errno::EPERM, 1),
        (Errno::ENOENT, 2),
        (Errno::ESRCH, 3),
        (Errno::EINTR, 4),
        (Errno::EIO, 5),
        (Errno::ENOEXEC, 8),
        (Errno::EBADF, 9),
        (Errno::ECHILD, 10),
        (Errno::EAGAIN, 11),
        (Errno::ENOMEM, 12),
        (Errno::EFAULT, 14),
        (Errno::EBUSY, 16),
        (Errno::EEXIST, 17),
        (Errno::EINVAL, 22),
        (Errno::EPIPE, 32),
        (Errno::ERANGE, 34),
        (Errno::EDEADLK, 35),
        (Errno::ENAMETOOLONG, 36),
        (Errno::ENOSYS, 38),
        (Errno::EMSGSIZE, 90),
        (Errno::ECONNABORTED, 103),
        (Errno::ECONNRESET, 104),
        (Errno::ETIMEDOUT, 110),
    ];
    assert_eq!(linux.len(), Errno::ALL.len());
    for (e, code) in linux {
        assert_eq!(e.code(), code, "{e}");
        assert_eq!(e.as_ret(), -(code as isize));
    }
}

#[test]
fn every_errno_round_trips() {
    assert!(Errno::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
    for &e in Errno::ALL {
        assert_eq!(Errno::from_ret(e.as_ret()), Err(e));
        assert_eq!(Errno::from_code(e.code()), Some(e));
        assert_eq!(Errno::from_name(e.name()), Some(e));
        assert_eq!(isize::from(e), e.as_ret());
        assert!(e.to_string().starts_with(e.name()));
    }
    assert_eq!(Errno::EFAULT.to_string(), "EFAULT (bad address)");
    assert_eq!(Errno::from_name("EWHAT"), None);
    assert_eq!(Errno::from_code(0), None);
}

#[test]
fn results_decode() {
    assert_eq!(Errno::from_ret(0), Ok(0));
    assert_eq!(Errno::from_ret(isize::MAX), Ok(isize::MAX as usize));
    assert_eq!(Errno::from_ret(-38), Err(Errno::ENOSYS));
    // Not defined here (ENXIO), and below the error range: EIO.
    assert_eq!(Errno::from_ret(-6), Err(Errno::EIO));
    assert_eq!(Errno::from_ret(-4096), Err(Errno::EIO));
    assert_eq!(Errno::from_ret(isize::MIN), Err(Errno::EIO));
}

#[test]
fn statuses_encode_and_decode() {
    assert_eq!(ExitStatus::Exited(0).to_raw(), 0);
    assert_eq!(ExitStatus::Exited(255).to_raw(), 255);
    assert_eq!(ExitStatus::Killed(KillCause::PF).to_raw(), 0x10e);
    assert_eq!(
        ExitStatus::Killed(KillCause::BAD_SYSCALL_FRAME).to_raw(),
        0x180
    );
    assert_eq!(ExitStatus::from_raw(0x200), None);
    assert_eq!(ExitStatus::from_exit_code(256 + 7), ExitStatus::Exited(7));
    assert_eq!(ExitStatus::from_exit_code(-1), ExitStatus::Exited(255));
    assert!(ExitStatus::Exited(0).success());
    assert!(!ExitStatus::Killed(KillCause::DE).success());
    assert_eq!(ExitStatus::Killed(KillCause::GP).to_string(), "killed #GP");
    assert_eq!(ExitStatus::Exited(3).to_string(), "exit 3");
}

#[test]
fn kill_causes_have_the_issue_names() {
    let names = [
        (KillCause::PF, "#PF"),
        (KillCause::GP, "#GP"),
        (KillCause::UD, "#UD"),
        (KillCause::DE, "#DE"),
        (KillCause::BP, "#BP"),
        (KillCause::BAD_SYSCALL_FRAME, "bad syscall frame"),
        (KillCause::INIT_ENDED, "init job ended"),
        (KillCause::SIGKILL, "SIGKILL"),
        (KillCause(9), "vector 9"),
        (KillCause(200), "cause 200"),
    ];
    for (k, s) in names {
        assert_eq!(k.to_string(), s);
        assert_eq!(KillCause::parse(s), Some(k));
    }
    assert_eq!(KillCause::PF.vector(), Some(14));
    assert_eq!(KillCause::BAD_SYSCALL_FRAME.vector(), None);
    for bad in [
        "",
        "#XX",
        "vector 14",
        "cause 14",
        "cause 128",
        "cause 130",
        "cause 131",
        "vector 09",
        "cause 256",
    ] {
        assert_eq!(KillCause::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn proc_lines_match_the_issue() {
    let cases = [
        (
            ProcLine {
                pid: 1,
                end: ProcEnd::Exit(0),
            },
            "PROC,1,exit,0",
        ),
        (
            ProcLine {
                pid: 42,
                end: ProcEnd::killed_at(KillCause::PF, 0xffff_ffff_8000_0000),
            },
            "PROC,42,killed,#PF at 0xffffffff80000000",
        ),
        (
            ProcLine {
                pid: 3,
                end: ProcEnd::killed(KillCause::GP),
            },
            "PROC,3,killed,#GP",
        ),
        (
            ProcLine {
                pid: 9,
                end: ProcEnd::killed(KillCause::BAD_SYSCALL_FRAME),
            },
            "PROC,9,killed,bad syscall frame",
        ),
        (
            ProcLine {
                pid: 12,
                end: ProcEnd::killed(KillCause::INIT_ENDED),
            },
            "PROC,12,killed,init job ended",
        ),
        (
            ProcLine {
                pid: 13,
                end: ProcEnd::killed(KillCause::SIGKILL),
            },
            "PROC,13,killed,SIGKILL",
        ),
    ];
    for (line, text) in cases {
        assert_eq!(line.to_string(), text);
        assert_eq!(ProcLine::parse(text), Some(line));
        assert_eq!(ProcLine::parse(&format!("{text}\r\n")), Some(line));
    }
    for bad in [
        "PROC,1,exit,256",
        "PROC,01,exit,0",
        "PROC,1,exit,-1",
        "PROC,x,exit,0",
        "PROC,1,died,0",
        "PROC,1,killed,#PF at 0x",
        "PROC,1,killed,#PF at 0xABC",
        "BENCH,1,exit,0",
        "PROC,1,exit",
    ] {
        assert_eq!(ProcLine::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn timespec() {
    let t = Timespec::from_nanos(3_000_000_007);
    assert_eq!((t.tv_sec, t.tv_nsec), (3, 7));
    assert_eq!(t.as_nanos(), Some(3_000_000_007));
    assert!(
        !Timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000_000
        }
        .is_valid()
    );
    assert!(
        !Timespec {
            tv_sec: -1,
            tv_nsec: 0
        }
        .is_valid()
    );
    assert_eq!(
        Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0
        }
        .as_nanos(),
        None
    );
    assert_eq!(core::mem::size_of::<Timespec>(), 16);
}

proptest! {
    #[test]
    fn from_ret_is_the_inverse_of_as_ret(ret in any::<isize>()) {
        match Errno::from_ret(ret) {
            Ok(v) => prop_assert!(ret >= 0 && v == ret as usize),
            Err(e) => {
                prop_assert!(ret < 0);
                let exact = (-4095..0).contains(&ret).then(|| Errno::from_code(-ret as i32)).flatten();
                match exact {
                    Some(known) => prop_assert_eq!((e, e.as_ret()), (known, ret)),
                    None => prop_assert_eq!(e, Errno::EIO),
                }
            }
        }
    }

    #[test]
    fn small_negative_results_are_errors(code in 1i32..=4095) {
        let r = Errno::from_ret(-(code as isize));
        prop_assert!(r.is_err());
        if let Some(e) = Errno::from_code(code) {
            prop_assert_eq!(r, Err(e));
        }
    }

    #[test]
    fn statuses_round_trip(raw in 0usize..2 * STATUS_KILLED) {
        let s = ExitStatus::from_raw(raw).unwrap();
        prop_assert_eq!(s.to_raw(), raw);
    }

    #[test]
    fn kill_causes_round_trip(c in any::<u8>()) {
        let k = KillCause(c);
        prop_assert_eq!(KillCause::parse(&k.to_string()), Some(k));
    }

    #[test]
    fn proc_lines_round_trip(pid in any::<u64>(), code in any::<u8>(), cause in any::<u8>(),
                             addr in proptest::option::of(any::<u64>()), killed in any::<bool>()) {
        let end = if killed { ProcEnd::Killed { cause: KillCause(cause), addr } } else { ProcEnd::Exit(code) };
        let line = ProcLine { pid, end };
        prop_assert_eq!(ProcLine::parse(&line.to_string()), Some(line));
    }

    #[test]
    fn proc_line_parsing_accepts_only_what_display_writes(s in "PROC,[0-9a-f]{0,3},(exit|killed),[ -~]{0,24}") {
        if let Some(line) = ProcLine::parse(&s) {
            prop_assert_eq!(line.to_string(), s);
        }
    }

    #[test]
    fn timespec_nanos_round_trip(n in any::<u64>()) {
        prop_assert_eq!(Timespec::from_nanos(n).as_nanos(), Some(n));
    }
}
