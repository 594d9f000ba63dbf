//! The bare system-call instruction: number in `rax`, arguments in `rdi, rsi, rdx, r10, r8,
//! r9`, result in `rax` (negative errno on error, decode with [`Errno::from_ret`]); the
//! kernel clobbers `rcx` and `r11`. The asm also declares memory clobbered (the kernel may
//! read and write any user memory an argument points to).
//!
//! These functions are `unsafe`: a system call can unmap or overwrite memory the program
//! uses, or end it. The typed wrappers at the crate root are the safe interface.
//!
//! [`Errno::from_ret`]: exo_abi::Errno::from_ret

use core::arch::asm;

/// System call `nr` without arguments.
///
/// # Safety
/// The call, with these arguments, must not break any invariant of the program (see the
/// call's entry in [`exo_abi::SYSCALLS`]).
#[inline(always)]
pub unsafe fn syscall0(nr: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the clobbers are the ABI's.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// System call `nr` with one argument.
///
/// # Safety
/// As [`syscall0`].
#[inline(always)]
pub unsafe fn syscall1(nr: usize, a1: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the clobbers are the ABI's.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a1,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// System call `nr` with two arguments.
///
/// # Safety
/// As [`syscall0`].
#[inline(always)]
pub unsafe fn syscall2(nr: usize, a1: usize, a2: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the clobbers are the ABI's.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a1, in("rsi") a2,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// System call `nr` with three arguments.
///
/// # Safety
/// As [`syscall0`].
#[inline(always)]
pub unsafe fn syscall3(nr: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the clobbers are the ABI's.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a1, in("rsi") a2,
                 in("rdx") a3, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// System call `nr` with four arguments (the fourth in `r10`, not `rcx`).
///
/// # Safety
/// As [`syscall0`].
#[inline(always)]
pub unsafe fn syscall4(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the clobbers are the ABI's.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a1, in("rsi") a2,
                 in("rdx") a3, in("r10") a4, lateout("rcx") _, lateout("r11") _,
                 options(nostack));
    }
    ret
}

/// System call `nr` with five arguments.
///
/// # Safety
/// As [`syscall0`].
#[inline(always)]
pub unsafe fn syscall5(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the clobbers are the ABI's.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a1, in("rsi") a2,
                 in("rdx") a3, in("r10") a4, in("r8") a5, lateout("rcx") _, lateout("r11") _,
                 options(nostack));
    }
    ret
}

/// System call `nr` with six arguments.
///
/// # Safety
/// As [`syscall0`].
#[inline(always)]
pub unsafe fn syscall6(
    nr: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call; the clobbers are the ABI's.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a1, in("rsi") a2,
                 in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6, lateout("rcx") _,
                 lateout("r11") _, options(nostack));
    }
    ret
}

/// An IPC system call (`exo_abi::ipc`): number `nr`, `handle` in `rdi`, `info` in `rsi`,
/// the eight payload `words` in `rdx, r10, r8, r9, r12, r13, r14, r15`, `timeout_ns` in
/// `rbx` (0: none). Returns `rax`; `words`, `info` (`rsi`) and `handle` (`rdi`: the badge)
/// hold what the kernel left in those registers (the received message on success of a
/// receiving call, the values sent otherwise).
///
/// # Safety
/// As [`syscall0`].
#[inline(always)]
pub unsafe fn ipc(
    nr: usize,
    handle: &mut u64,
    info: &mut u64,
    words: &mut [u64; 8],
    timeout_ns: u64,
) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call. RBX cannot be an asm operand: it is saved on
    // the stack around the call and loaded from RCX (which `syscall` overwrites anyway).
    unsafe {
        asm!(
            "push rbx",
            "mov rbx, rcx",
            "syscall",
            "pop rbx",
            inlateout("rax") nr as isize => ret,
            inout("rdi") *handle,
            inout("rsi") *info,
            inout("rdx") words[0],
            inout("r10") words[1],
            inout("r8") words[2],
            inout("r9") words[3],
            inout("r12") words[4],
            inout("r13") words[5],
            inout("r14") words[6],
            inout("r15") words[7],
            inout("rcx") timeout_ns => _,
            lateout("r11") _,
        );
    }
    ret
}
