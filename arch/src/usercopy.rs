//! Kernel access to user memory: every user address is checked against the user range
//! first (no overflow, inside `[USER_BASE, USER_END)`), then touched by one instruction
//! (`rep movsb`; `rep movsq` then `rep movsb` for [`copy_from_user_prefix`]) inside a `stac`/`clac` window (when SMAP is on) whose faults the trap
//! handler turns into [`Fault`] through the fix-up table in `trap.rs`: a bad pointer from
//! ring 3 is an error (`-EFAULT`), never a kernel fault.
//!
//! A fix-up is only taken for a #PF whose address is in the user range; a fault on the
//! kernel side of a copy stays a kernel fault (it is a kernel bug, not a bad argument).

use core::sync::atomic::{AtomicBool, Ordering};

/// Lowest user address a copy may touch: the first 64 KiB of user space stay unmapped in
/// every address space (null-pointer guard, `user::aspace::USER_MIN`).
pub const USER_BASE: u64 = 0x1_0000;
/// One past the highest user address: the end of the lower canonical half.
pub const USER_END: u64 = crate::layout::USER_END;

/// Most bytes one copy call moves (a bound on the time a fault-free copy runs with SMAP
/// lifted, and on lengths computed from user input).
pub const MAX_COPY: u64 = 1 << 30;

/// SMAP is on in CR4 (set by [`crate::cpu::enable_features`]): `stac`/`clac` are then used,
/// and are `#UD` otherwise, so every window tests this first.
pub static SMAP_ON: AtomicBool = AtomicBool::new(false);

/// A user address range was refused or faulted (`-EFAULT` for a system call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;

/// Is `[addr, addr + len)` inside the user range (and at most [`MAX_COPY`] bytes)? An
/// empty range is accepted anywhere below `USER_END`.
#[inline]
pub fn is_user_range(addr: u64, len: u64) -> bool {
    len <= MAX_COPY && addr >= USER_BASE && addr.checked_add(len).is_some_and(|end| end <= USER_END)
}

/// [`is_user_range`] as a `Result`.
#[inline]
pub fn check_range(addr: u64, len: u64) -> Result<(), Fault> {
    if is_user_range(addr, len) {
        Ok(())
    } else {
        Err(Fault)
    }
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.usercopy, \"ax\"",
    // rdi = destination, rsi = source, rdx = length; returns rax = bytes not copied.
    ".global exo_user_copy",
    ".global exo_user_copy_insn",
    ".global exo_user_copy_fixup",
    "exo_user_copy:",
    "mov rcx, rdx",
    "cmp byte ptr [rip + {smap}], 0",
    "je 1f",
    "stac",
    "1:",
    "exo_user_copy_insn:",
    "rep movsb",
    "xor eax, eax",
    "jmp 2f",
    // A #PF on a user address at the `rep movsb`: rcx holds the bytes left.
    "exo_user_copy_fixup:",
    "mov rax, rcx",
    "2:",
    "cmp byte ptr [rip + {smap}], 0",
    "je 3f",
    "clac",
    "3:",
    "ret",
    // The same with 8-byte steps (`rep movsq`, then `rep movsb` for the last len % 8
    // bytes): under QEMU's icount every iteration of a `rep` is an instruction, so 64 bytes
    // cost 8 instead of 64. rdi = destination, rsi = source, rdx = length; returns rax =
    // bytes not copied (a fault in the 8-byte part counts the faulting word as not copied).
    ".global exo_user_copy_q",
    ".global exo_user_copy_q_insn",
    ".global exo_user_copy_q_fixup",
    ".global exo_user_copy_q_tail",
    ".global exo_user_copy_q_tail_fixup",
    "exo_user_copy_q:",
    "mov rcx, rdx",
    "shr rcx, 3",
    "cmp byte ptr [rip + {smap}], 0",
    "je 1f",
    "stac",
    "1:",
    "exo_user_copy_q_insn:",
    "rep movsq",
    "mov ecx, edx",
    "and ecx, 7",
    "exo_user_copy_q_tail:",
    "rep movsb",
    "xor eax, eax",
    "jmp 2f",
    // A #PF in the 8-byte part: rcx holds the words left, rdx % 8 bytes follow them.
    "exo_user_copy_q_fixup:",
    "and edx, 7",
    "lea rax, [rdx + rcx * 8]",
    "jmp 2f",
    // A #PF in the tail: rcx holds the bytes left.
    "exo_user_copy_q_tail_fixup:",
    "mov rax, rcx",
    "2:",
    "cmp byte ptr [rip + {smap}], 0",
    "je 3f",
    "clac",
    "3:",
    "ret",
    smap = sym SMAP_ON,
);

/// Copies `len` bytes from `src` to `dst`, one of which is a checked user address; returns
/// the bytes not copied (0: all).
///
/// # Safety
/// The kernel side of the copy must be valid for `len` bytes (readable source or writable
/// destination, not aliased by a live reference); the user side must have passed
/// [`check_range`].
#[cfg(target_os = "none")]
unsafe fn raw_copy(dst: u64, src: u64, len: u64) -> u64 {
    let left: u64;
    // SAFETY: `exo_user_copy` copies with `rep movsb` (rdi, rsi, rcx and rax clobbered, DF
    // is clear in the kernel) and a fault on the user side resumes at its fix-up, which
    // returns the count left; the kernel side is valid per the caller's contract.
    unsafe {
        core::arch::asm!("call exo_user_copy", inout("rdi") dst => _, inout("rsi") src => _,
                         in("rdx") len, out("rax") left, clobber_abi("C"));
    }
    left
}

/// Copies `dst.len()` bytes from the user address `src` into `dst`.
#[cfg(target_os = "none")]
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), Fault> {
    if dst.is_empty() {
        return Ok(());
    }
    check_range(src, dst.len() as u64)?;
    // SAFETY: `dst` is a unique borrow of `dst.len()` writable bytes; `src` passed the check.
    match unsafe { raw_copy(dst.as_mut_ptr() as u64, src, dst.len() as u64) } {
        0 => Ok(()),
        _ => Err(Fault),
    }
}

/// Copies up to `dst.len()` bytes from the user address `src` into `dst`, 8 bytes per
/// step (the short copies of system calls such as `write`); returns the count copied:
/// `dst.len()`, or less when a user page faulted (every byte before the faulting 8-byte
/// word, or tail byte, was copied; the rest of `dst` is unspecified). A range outside user
/// memory is refused before any access (`Err`).
#[cfg(target_os = "none")]
#[inline]
pub fn copy_from_user_prefix(dst: &mut [u8], src: u64) -> Result<usize, Fault> {
    check_range(src, dst.len() as u64)?;
    let left: u64;
    // SAFETY: `exo_user_copy_q` copies with `rep movsq`/`rep movsb` (rdi, rsi, rcx, rdx
    // and rax clobbered, DF is clear in the kernel) and a fault on the user side resumes at
    // a fix-up, which returns the count left; `dst` is a unique borrow of `dst.len()`
    // writable bytes, `src` passed the range check.
    unsafe {
        core::arch::asm!("call exo_user_copy_q", inout("rdi") dst.as_mut_ptr() as u64 => _,
                         inout("rsi") src => _, inout("rdx") dst.len() as u64 => _,
                         out("rax") left, out("rcx") _);
    }
    Ok(dst.len() - left as usize)
}

/// Copies `src` to the user address `dst`.
#[cfg(target_os = "none")]
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Fault> {
    if src.is_empty() {
        return Ok(());
    }
    check_range(dst, src.len() as u64)?;
    // SAFETY: `src` is a borrow of `src.len()` readable bytes; `dst` passed the check.
    match unsafe { raw_copy(dst, src.as_ptr() as u64, src.len() as u64) } {
        0 => Ok(()),
        _ => Err(Fault),
    }
}

/// Reads a `u64` (any alignment) at the user address `addr`.
#[cfg(target_os = "none")]
pub fn read_user_u64(addr: u64) -> Result<u64, Fault> {
    let mut b = [0u8; 8];
    copy_from_user(&mut b, addr)?;
    Ok(u64::from_le_bytes(b))
}

/// Writes a `u64` (any alignment) at the user address `addr`.
#[cfg(target_os = "none")]
pub fn write_user_u64(addr: u64, v: u64) -> Result<(), Fault> {
    copy_to_user(addr, &v.to_le_bytes())
}

/// Records whether SMAP is on (every CPU enables the same features).
pub fn set_smap(on: bool) {
    SMAP_ON.store(on, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(is_user_range(USER_BASE, 4096));
        assert!(is_user_range(USER_END - 8, 8));
        assert!(!is_user_range(USER_END - 8, 9), "straddles the top");
        assert!(!is_user_range(USER_BASE - 1, 2), "straddles the bottom");
        assert!(
            !is_user_range(0x8000, 8),
            "the null-guard area below USER_BASE"
        );
        assert!(!is_user_range(0xFFFF_8000_0000_0000, 8), "direct map");
        assert!(!is_user_range(0xFFFF_FFFF_8020_0000, 8), "kernel image");
        assert!(!is_user_range(0xFFFF_C000_0000_0000, 8), "upper half");
        assert!(!is_user_range(0x8000_0000_0000_0000, 8), "non-canonical");
        assert!(!is_user_range(USER_BASE, u64::MAX), "overflow");
        assert!(!is_user_range(u64::MAX - 3, 8), "wraps");
        assert!(!is_user_range(USER_BASE, MAX_COPY + 1), "too long");
        assert!(is_user_range(USER_BASE, 0));
    }
}
