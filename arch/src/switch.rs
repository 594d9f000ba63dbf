//! The kernel-thread context switch: callee-saved registers and the stack pointer, nothing
//! else (segment state, FPU and address space are the scheduler's policy, not this code's).
//!
//! A switched-out thread's stack holds, from its saved stack pointer up:
//!
//! ```text
//! rsp -> r15 r14 r13 r12 rbx rbp | return address
//! ```
//!
//! [`switch`] pushes the six registers, stores `rsp` through `from`, loads `to`, pops, `ret`.
//! [`init_stack`] lays out the same frame on a fresh stack with the return address pointing
//! at a trampoline that calls `entry(arg)` with a SysV-aligned stack and a null frame pointer
//! (so frame-pointer backtraces end there).

/// Registers saved by [`switch`] below the return address.
pub const SAVED_REGS: usize = 6;
/// Bytes of a switched-out frame: six registers and the return address.
pub const FRAME_BYTES: usize = (SAVED_REGS + 1) * 8;
/// Slot (in words from the saved stack pointer) of the saved r12, which carries `entry`
/// into the trampoline of a new thread; r13 carries `arg`.
const SLOT_R12: usize = 3;
const SLOT_R13: usize = 2;
const SLOT_RBP: usize = 5;
const SLOT_RET: usize = 6;

/// Saves the callee-saved registers and the stack pointer of the running context into
/// `*from`, and resumes the context whose stack pointer is `to`.
///
/// # Safety
/// `from` must be valid for a write and not read by anyone until this context is resumed;
/// `to` must be a stack pointer saved by `switch` (or built by [`init_stack`]) of a context
/// that is not running anywhere, whose stack is mapped. Interrupts should be off (the caller's
/// policy: an interrupt between the two halves would run on a half-switched stack safely, but
/// the scheduler's bookkeeping expects it not to).
#[unsafe(naked)]
pub unsafe extern "sysv64" fn switch(from: *mut u64, to: u64) {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// First code of a new context: `entry` (in r12) is called with `arg` (in r13) as its first
/// argument, on a stack aligned as at any call (rsp % 16 == 0 before the `call`), with
/// rbp = 0 ending frame-pointer chains. `entry` never returns; if it did, `ud2` traps.
#[unsafe(naked)]
unsafe extern "sysv64" fn trampoline() -> ! {
    core::arch::naked_asm!("mov rdi, r13", "xor ebp, ebp", "call r12", "ud2")
}

/// Lays out a switched-out frame at the top of a fresh stack so that the first [`switch`]
/// to the returned stack pointer runs `entry(arg)`. Returns the stack pointer to switch to.
///
/// # Safety
/// `[stack_top - FRAME_BYTES - 16, stack_top)` must be mapped, writable and unused, and
/// `stack_top` 16-byte aligned.
pub unsafe fn init_stack(stack_top: u64, entry: extern "sysv64" fn(u64) -> !, arg: u64) -> u64 {
    debug_assert!(stack_top.is_multiple_of(16));
    // After `ret` pops the return slot, rsp = frame + 56, and the trampoline's `call` must
    // happen with rsp 16-aligned (the callee then sees rsp + 8 aligned). With a 16-aligned
    // top: frame + 56 = top - 16, i.e. frame = top - 16 - 56 (two spare words at the top).
    let frame = stack_top - 16 - FRAME_BYTES as u64;
    let p = frame as *mut u64;
    // SAFETY: the caller guarantees the frame's words are mapped, writable and unused.
    unsafe {
        for k in 0..=SAVED_REGS + 1 {
            p.add(k).write(0);
        }
        p.add(SLOT_R12).write(entry as *const () as u64);
        p.add(SLOT_R13).write(arg);
        p.add(SLOT_RBP).write(0);
        p.add(SLOT_RET).write(trampoline as *const () as u64);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static MAIN_SP: AtomicU64 = AtomicU64::new(0);
    static THREAD_SP: AtomicU64 = AtomicU64::new(0);
    static ARG_SEEN: AtomicU64 = AtomicU64::new(0);
    static ENTRY_RSP: AtomicU64 = AtomicU64::new(0);
    static ROUNDS: AtomicU64 = AtomicU64::new(0);

    /// Records the stack pointer exactly at function entry, then runs `body`.
    #[unsafe(naked)]
    extern "sysv64" fn probe(_arg: u64) -> ! {
        core::arch::naked_asm!(
            "mov [rip + {s}], rsp",
            "jmp {body}",
            s = sym ENTRY_RSP,
            body = sym body,
        )
    }

    extern "sysv64" fn body(arg: u64) -> ! {
        ARG_SEEN.store(arg, Ordering::Relaxed);
        loop {
            ROUNDS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: MAIN_SP was saved by the main context's switch into us; THREAD_SP is
            // our own slot.
            unsafe { switch(THREAD_SP.as_ptr(), MAIN_SP.load(Ordering::Relaxed)) };
        }
    }

    #[test]
    fn ping_pong_keeps_callee_saved_registers_and_aligns_entry() {
        let stack = vec![0u128; 4096]; // 64 KiB, 16-aligned
        let top = stack.as_ptr() as u64 + (stack.len() * 16) as u64;
        // SAFETY: the vector is ours, mapped and unused.
        let sp = unsafe { init_stack(top, probe, 0xABCD) };
        assert!(sp < top && sp >= top - 128);
        THREAD_SP.store(sp, Ordering::Relaxed);
        for k in 0..10_000u64 {
            let (b, c12, c13, c14, c15): (u64, u64, u64, u64, u64);
            // SAFETY: switches into the thread and back. rbx (saved by hand: LLVM reserves
            // it) and r12-r15 hold markers across the call; they are callee-saved, so the
            // switch must give them back unchanged.
            unsafe {
                core::arch::asm!(
                    "push rbx",
                    "mov rbx, r8",
                    "mov r12, r8",
                    "not r12",
                    "lea r13, [r8 + 1]",
                    "lea r14, [r8 + 2]",
                    "lea r15, [r8 + 7]",
                    "call {sw}",
                    "mov rax, rbx",
                    "pop rbx",
                    sw = sym switch,
                    in("r8") k,
                    in("rdi") MAIN_SP.as_ptr(),
                    in("rsi") THREAD_SP.load(Ordering::Relaxed),
                    out("rax") b,
                    out("r12") c12,
                    out("r13") c13,
                    out("r14") c14,
                    out("r15") c15,
                    clobber_abi("sysv64"),
                );
            }
            assert_eq!(
                (b, c12, c13, c14, c15),
                (k, !k, k + 1, k + 2, k + 7),
                "round {k}"
            );
        }
        assert_eq!(ARG_SEEN.load(Ordering::Relaxed), 0xABCD);
        assert_eq!(
            ENTRY_RSP.load(Ordering::Relaxed) % 16,
            8,
            "SysV: rsp + 8 is 16-aligned at function entry"
        );
        assert_eq!(ROUNDS.load(Ordering::Relaxed), 10_000);
        drop(stack);
    }
}
