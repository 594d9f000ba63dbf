//! Kernel tests of the IPC system-call layer (`super::ipc`): argument checks and errnos
//! through the dispatcher's core on a table of the test's own, owning handles (inherit,
//! close, the endpoint going with its last handle), on kernel threads.

use super::ipc::{call, fast_info};
use crate::boot::BootState;
use crate::harness::{Needs, TestResult, check};
use crate::ipc::{self, Handle, HandleTable, IpcError, Rights};
use crate::ktest;
use alloc::format;
use exo_arch::syscall::IpcFrame;

ktest!(Needs::Threads, "user.ipc.syscall_errnos", errnos);
ktest!(Needs::Threads, "user.ipc.owning_handles", owning);
ktest!(
    Needs::Cpus,
    "user.ipc.fast_info_is_the_two_tests",
    fast_info_tests
);

fn frame(nr: u64, rdi: u64, rsi: u64, timeout_ns: u64) -> IpcFrame {
    let mut f = IpcFrame {
        rbx: timeout_ns,
        ..IpcFrame::default()
    };
    f.rax = nr;
    f.rdi = rdi;
    f.rsi = rsi;
    f
}

fn run(t: &HandleTable, nr: u64, rdi: u64, rsi: u64) -> Result<i64, i64> {
    let mut f = frame(nr, rdi, rsi, 1_000_000);
    call(t, &mut f, None)
}

fn errnos(_: &BootState) -> TestResult {
    use super::syscall::nr::*;
    let t = HandleTable::new();
    let info64 = 64u64 << 32;
    let cases: &[(&str, u64, u64, u64, i64)] = &[
        ("create rights 0", ENDPOINT_CREATE, 0, 0, 22),
        ("create rights 4", ENDPOINT_CREATE, 4, 0, 22),
        ("call on an empty entry", IPC_CALL, 3, info64, 9),
        ("call on handle 2^32", IPC_CALL, 1 << 32, info64, 9),
        ("recv on handle 64", IPC_RECV, 64, 0, 9),
        ("close of an empty entry", HANDLE_CLOSE, 0, 0, 9),
        ("length 65", IPC_SEND, 0, 65 << 32, 90),
        ("reserved info bit", IPC_CALL, 0, 1 << 45, 22),
        ("reply with no caller", IPC_REPLY, 0, info64, 3),
        ("unknown number", 527, 0, 0, 38),
    ];
    for &(what, nr, rdi, rsi, want) in cases {
        let got = run(&t, nr, rdi, rsi);
        check(got == Err(want), || {
            format!("{what}: {got:?}, expected -{want}")
        })?;
    }
    let h = run(&t, ENDPOINT_CREATE, 3, 77).map_err(|e| format!("create: -{e}"))?;
    let s = run(&t, ENDPOINT_CREATE, 1, 0).map_err(|e| format!("create: -{e}"))?;
    let got = run(&t, IPC_RECV, s as u64, 0);
    check(got == Err(1), || format!("recv without the right: {got:?}"))?;
    // Nobody on the other side: the 1 ms timeout passes.
    let got = run(&t, IPC_RECV, h as u64, 0);
    check(got == Err(110), || format!("recv with nobody: {got:?}"))?;
    let got = run(&t, IPC_CALL, h as u64, info64);
    check(got == Err(110), || format!("call with nobody: {got:?}"))?;
    for x in [h, s] {
        check(run(&t, HANDLE_CLOSE, x as u64, 0) == Ok(0), || {
            "close".into()
        })?;
    }
    check(t.count() == 0, || "handles left".into())
}

/// The fastpath's one-test check of the info word against the two tests it stands for (no
/// bit above the zero-copy bit 40, a length of at most 64 in bits 32..39): every length,
/// with and without the zero-copy bit, under every single rejected bit, all of them, and
/// label patterns.
fn fast_info_tests(_: &BootState) -> TestResult {
    let reference = |info: u64| info >> 41 == 0 && (info >> 32) & 0xff <= 64;
    let mut n = 0;
    for len in 0..=0xffu64 {
        for zc in [0, 1u64 << 40] {
            for high in (41..64)
                .map(|b| 1u64 << b)
                .chain([0, !0 << 41, 1 << 63 | 1 << 41])
            {
                for label in [0, 1, 0xffff_ffff, 0x8000_0001] {
                    let info = high | zc | len << 32 | label;
                    check(fast_info(info) == reference(info), || {
                        format!("fast_info({info:#x}) is {}", fast_info(info))
                    })?;
                    n += 1;
                }
            }
        }
    }
    check(n == 256 * 2 * 26 * 4, || format!("{n} cases"))
}

fn owning(_: &BootState) -> TestResult {
    let parent = HandleTable::new();
    let child = HandleTable::new();
    let h = parent
        .create_endpoint(Rights::ALL, 5)
        .map_err(|e| format!("create: {e}"))?;
    let ep = parent.get(h).map_err(|e| format!("get: {e}"))?.ep;
    child.inherit(&parent);
    let c = child.get(h).map_err(|e| format!("inherited: {e}"))?;
    check(c.ep == ep && c.badge == 5, || {
        "inherited entry differs".into()
    })?;
    parent.close(h).map_err(|e| format!("close: {e}"))?;
    check(ipc::queued(ep).is_some(), || {
        "endpoint gone while the child holds a handle".into()
    })?;
    check(parent.close(h) == Err(IpcError::BadHandle), || {
        "close twice".into()
    })?;
    child.close_all();
    check(ipc::queued(ep).is_none(), || {
        "endpoint alive after its last handle".into()
    })?;
    check(child.get(Handle(h.0)) == Err(IpcError::BadHandle), || {
        "entry left after close_all".into()
    })
}
