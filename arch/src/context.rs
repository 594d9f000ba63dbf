//! Kernel-thread context switch: the callee-saved registers and the stack pointer, nothing
//! else. Segment state, FPU/SIMD state ([`crate::fpu`]), RFLAGS and the address space are the
//! scheduler's business, not this module's.
//!
//! # Frame layout
//!
//! [`switch`] pushes six registers onto the outgoing stack and stores the resulting stack
//! pointer through `from`. A switched-out context is therefore just one `u64`, its saved stack
//! pointer `sp`, under which the stack holds a [`SwitchFrame`] (offsets in bytes):
//!
//! ```text
//!  sp + 48  OFF_RIP  return address (into the caller of `switch`, or `trampoline`)
//!  sp + 40  OFF_RBP  rbp  (pushed first)
//!  sp + 32  OFF_RBX  rbx
//!  sp + 24  OFF_R12  r12  (new thread: `entry`)
//!  sp + 16  OFF_R13  r13  (new thread: `arg`)
//!  sp +  8  OFF_R14  r14
//!  sp +  0  OFF_R15  r15  (pushed last) <- saved stack pointer
//! ```
//!
//! Because every caller of `switch` has `rsp % 16 == 8` at the call's target (SysV), and the six
//! pushes move it by 48, a saved stack pointer always satisfies `sp % 16 == SAVED_SP_MOD16`;
//! [`init_stack`] builds frames that keep that invariant.
//!
//! # New threads
//!
//! [`init_stack`] writes a `SwitchFrame` in the top [`INIT_STACK_BYTES`] of a fresh stack with
//! `r12 = entry`, `r13 = arg`, `rbp = 0` and the return slot pointing at a private naked
//! trampoline. The first `switch` (or [`enter`]) to that stack pointer pops the frame and
//! "returns" into the trampoline, which moves `arg` into `rdi`, pushes a zero return address and
//! jumps to `entry`. At `entry`:
//!
//! * `rdi == arg`;
//! * `rsp % 16 == 8` (the SysV alignment at function entry: `rsp + 8` is 16-aligned);
//! * `[rsp] == 0` and `rbp == 0`, so frame-pointer walks (see [`crate::backtrace::walk`]) and
//!   debuggers stop at the thread's first frame;
//! * `rbx`, `r14`, `r15` are 0; RFLAGS are whatever the switching thread had (typically IF=0:
//!   enabling interrupts is `entry`'s job).
//!
//! `entry` must never return (its type says so); the return address is 0, so a broken `entry`
//! that did return would fault on address 0 rather than run garbage.
//!
//! # Not saved
//!
//! RFLAGS (so also IF, DF, AC), the segment registers and their bases, CR3, the FPU/SIMD state
//! and its control words (MXCSR, x87 FCW: callee-saved in SysV but never touched by the
//! soft-float kernel; host users that change them must save them themselves).
//!
//! The code is position-independent and uses no kernel-only instruction, so it also runs in
//! user space on the host (the tests and the native bench switch between heap stacks).

use core::arch::naked_asm;

/// What a switched-out stack holds at its saved stack pointer (lowest address first).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchFrame {
    /// r15, at the saved stack pointer.
    pub r15: u64,
    /// r14.
    pub r14: u64,
    /// r13 (a new thread's `arg`).
    pub r13: u64,
    /// r12 (a new thread's `entry`).
    pub r12: u64,
    /// rbx.
    pub rbx: u64,
    /// rbp: the frame pointer of the switched-out code (start of its backtrace).
    pub rbp: u64,
    /// Where the context resumes: the return address into its caller of [`switch`], or the
    /// new-thread trampoline.
    pub rip: u64,
}

/// Registers [`switch`] pushes.
pub const SAVED_REGS: usize = 6;
/// Bytes of a [`SwitchFrame`]: the six registers and the return address.
pub const FRAME_SIZE: usize = (SAVED_REGS + 1) * 8;
/// Offset of the saved r15 from the saved stack pointer.
pub const OFF_R15: usize = 0;
/// Offset of the saved r14.
pub const OFF_R14: usize = 8;
/// Offset of the saved r13 (a new thread's `arg`).
pub const OFF_R13: usize = 16;
/// Offset of the saved r12 (a new thread's `entry`).
pub const OFF_R12: usize = 24;
/// Offset of the saved rbx.
pub const OFF_RBX: usize = 32;
/// Offset of the saved rbp.
pub const OFF_RBP: usize = 40;
/// Offset of the return address.
pub const OFF_RIP: usize = 48;
/// `sp % 16` of every saved stack pointer (from `switch` or [`init_stack`]).
pub const SAVED_SP_MOD16: u64 = 8;
/// Bytes [`init_stack`] uses below the (16-aligned-down) stack top.
pub const INIT_STACK_BYTES: usize = FRAME_SIZE;

const _: () = assert!(core::mem::size_of::<SwitchFrame>() == FRAME_SIZE);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, r15) == OFF_R15);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, r14) == OFF_R14);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, r13) == OFF_R13);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, r12) == OFF_R12);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, rbx) == OFF_RBX);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, rbp) == OFF_RBP);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, rip) == OFF_RIP);
// A 16-aligned top minus the frame gives a saved stack pointer with the invariant residue.
const _: () = assert!((16 - INIT_STACK_BYTES as u64 % 16) % 16 == SAVED_SP_MOD16);

/// Saves the callee-saved registers and the stack pointer of the running context into
/// `*from`, then resumes the context whose saved stack pointer is `to`. Returns when some
/// other context switches back to the value stored in `*from`.
///
/// # Safety
/// * `from` must be valid for an 8-byte write, and the value written must not be switched to
///   before this call has stored it (on SMP: publish it only after `switch` ran, e.g. behind
///   the run-queue lock the caller holds across the switch).
/// * `to` must be a stack pointer saved by `switch` or built by [`init_stack`], of a context
///   that is not running anywhere and is resumed at most once per save; its stack must be
///   mapped and stay alive while the context runs.
/// * As with any `extern "sysv64"` call, everything but the callee-saved registers and `rsp`
///   may come back changed (by the contexts that ran meanwhile). RFLAGS are not switched:
///   disabling interrupts around a switch is the caller's policy.
#[unsafe(naked)]
pub unsafe extern "sysv64" fn switch(from: *mut u64, to: u64) {
    naked_asm!(
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

/// Resumes the context whose saved stack pointer is `to`, abandoning the current one (its
/// stack may be reused once this call is made, e.g. a CPU's boot stack after it starts its
/// first thread, or an exiting thread's stack freed by the next thread).
///
/// # Safety
/// As for `to` in [`switch`]; nothing on the current stack may be used afterwards (no
/// destructors run, no borrow of it may be live in the resumed context).
#[unsafe(naked)]
pub unsafe extern "sysv64" fn enter(to: u64) -> ! {
    naked_asm!(
        "mov rsp, rdi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// First code of a new context, reached by the `ret` of [`switch`]/[`enter`] with `rsp` 16-byte
/// aligned (see [`init_stack`]): `entry` (r12) gets `arg` (r13) in `rdi`, a zero return address
/// and a zero `rbp` (popped from the frame).
#[unsafe(naked)]
pub(crate) unsafe extern "sysv64" fn trampoline() -> ! {
    naked_asm!("mov rdi, r13", "push 0", "jmp r12")
}

/// Lays out a new context's [`SwitchFrame`] just below `stack_top` (rounded down to 16 bytes)
/// so that the first [`switch`] or [`enter`] to the returned stack pointer runs `entry(arg)`
/// with the guarantees listed in the module documentation.
///
/// # Safety
/// The [`INIT_STACK_BYTES`] bytes below `stack_top & !15` must be mapped, writable and not used
/// by anything else, and must be the top of a stack large enough for everything `entry` runs.
pub unsafe fn init_stack(stack_top: u64, entry: extern "sysv64" fn(u64) -> !, arg: u64) -> u64 {
    let sp = (stack_top & !15) - INIT_STACK_BYTES as u64;
    let frame = SwitchFrame {
        r15: 0,
        r14: 0,
        r13: arg,
        r12: entry as usize as u64,
        rbx: 0,
        rbp: 0,
        rip: trampoline as *const () as usize as u64,
    };
    // SAFETY: the caller guarantees the bytes are mapped, writable and unused; `sp` is
    // 8-aligned (16-aligned top minus 56), which is `SwitchFrame`'s alignment.
    unsafe { (sp as *mut SwitchFrame).write(frame) };
    sp
}

/// [`init_stack`] on a stack given as a byte slice (its end is the stack top). The slice must
/// outlive the context: that is part of [`switch`]'s contract, not checked here.
///
/// # Panics
/// When `stack` is too small to hold the frame after aligning its end down to 16 bytes.
pub fn init_stack_in(stack: &mut [u8], entry: extern "sysv64" fn(u64) -> !, arg: u64) -> u64 {
    let lo = stack.as_mut_ptr() as u64;
    let top = lo + stack.len() as u64;
    assert!(
        (top & !15) >= lo + INIT_STACK_BYTES as u64,
        "stack of {} bytes cannot hold a switch frame",
        stack.len()
    );
    // SAFETY: `[top & !15 - INIT_STACK_BYTES, top & !15)` lies inside `stack` (just checked),
    // which we borrow mutably, so it is mapped, writable and unused by anyone else.
    unsafe { init_stack(top, entry, arg) }
}

/// Reads the [`SwitchFrame`] of a switched-out context (e.g. to walk its backtrace from
/// `rbp`/`rip` or to show it in a debugger dump).
///
/// # Safety
/// `sp` must be the saved stack pointer of a context that is switched out and stays so for the
/// duration of the read.
pub unsafe fn saved_frame(sp: u64) -> SwitchFrame {
    // SAFETY: per the contract, `sp` points at a frame written by `switch` or `init_stack`,
    // 8-aligned, not being modified.
    unsafe { (sp as *const SwitchFrame).read() }
}
