//! Kernel-thread context switch: the stack pointer, the frame pointer and rbx, nothing else
//! by hand. Segment state, FPU/SIMD state ([`crate::fpu`]), RFLAGS and the address space are
//! the scheduler's business, not this module's.
//!
//! # How the registers are kept
//!
//! [`switch`] is inline assembly in its caller, not a call: it declares every register the
//! System V ABI lets a call clobber, and r12-r15, as clobbered, so the compiler keeps across
//! it only what the caller still needs (usually nothing: the scheduler's functions saved
//! r12-r15 in their own prologue already, and until 2026-12-04 a naked `switch` pushed and
//! popped the six callee-saved registers again, 12 instructions per switch). rbx and rbp
//! cannot be declared clobbered (LLVM reserves them), so the block pushes them itself and
//! calls [`switch_stack`], which only trades stack pointers.
//!
//! # Frame layout
//!
//! A switched-out context is therefore one `u64`, its saved stack pointer `sp`, under which
//! the stack holds a [`SwitchFrame`] (offsets in bytes):
//!
//! ```text
//!  sp + 16  OFF_RBP  rbp  (pushed first; a new thread: 0)
//!  sp +  8  OFF_RBX  rbx  (a new thread: `entry`)
//!  sp +  0  OFF_RIP  return address (into the `switch` block, or `trampoline`) <- saved sp
//! ```
//!
//! [`enter`] and [`switch_stack`] resume a context with `ret`; the code they return into pops
//! the rest of its frame itself.
//!
//! # New threads
//!
//! [`init_stack`] writes a `SwitchFrame` and one word more, `arg`, in the top
//! [`INIT_STACK_BYTES`] of a fresh stack: `rbx = entry`, `rbp = 0` and the return slot pointing
//! at a private naked trampoline. The first `switch` (or [`enter`]) to that stack pointer
//! "returns" into the trampoline, which pops `entry`, a zero `rbp` and `arg` (into `rdi`),
//! pushes a zero return address and jumps to `entry`. At `entry`:
//!
//! * `rdi == arg`;
//! * `rsp % 16 == 8` (the SysV alignment at function entry: `rsp + 8` is 16-aligned);
//! * `[rsp] == 0` and `rbp == 0`, so frame-pointer walks (see [`crate::backtrace::walk`]) and
//!   debuggers stop at the thread's first frame;
//! * the other registers are whatever the switching context left; RFLAGS are whatever the
//!   switching thread had (typically IF=0: enabling interrupts is `entry`'s job).
//!
//! `entry` must never return (its type says so); the return address is 0, so a broken `entry`
//! that did return would fault on address 0 rather than run garbage.
//!
//! # Not saved
//!
//! RFLAGS (so also IF, DF, AC), the segment registers and their bases (the scheduler keeps
//! the data-segment selectors per thread: [`crate::segs`]), CR3, the FPU/SIMD state
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
    /// Where the context resumes: the return address into its [`switch`] block, or the
    /// new-thread trampoline. At the saved stack pointer.
    pub rip: u64,
    /// rbx (a new thread's `entry`).
    pub rbx: u64,
    /// rbp: the frame pointer of the switched-out code (start of its backtrace).
    pub rbp: u64,
}

/// Bytes of a [`SwitchFrame`]: the return address, rbx and rbp.
pub const FRAME_SIZE: usize = 3 * 8;
/// Offset of the return address from the saved stack pointer.
pub const OFF_RIP: usize = 0;
/// Offset of the saved rbx (a new thread's `entry`).
pub const OFF_RBX: usize = 8;
/// Offset of the saved rbp.
pub const OFF_RBP: usize = 16;
/// Offset of a new thread's `arg`, the word above its frame.
pub const OFF_ARG: usize = FRAME_SIZE;
/// Bytes [`init_stack`] uses below the (16-aligned-down) stack top: the frame and `arg`.
pub const INIT_STACK_BYTES: usize = FRAME_SIZE + 8;

const _: () = assert!(core::mem::size_of::<SwitchFrame>() == FRAME_SIZE);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, rip) == OFF_RIP);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, rbx) == OFF_RBX);
const _: () = assert!(core::mem::offset_of!(SwitchFrame, rbp) == OFF_RBP);
// The trampoline pops three words above the return slot and pushes one: `entry` then sees
// `rsp % 16 == 8` exactly when the frame starts 16-aligned.
const _: () = assert!(INIT_STACK_BYTES.is_multiple_of(16));

/// Saves the running context's stack pointer into `*from` (its frame: rbp, rbx and the
/// return address into this block, see the module header), then resumes the context whose
/// saved stack pointer is `to`. Returns when some other context switches back to the value
/// stored in `*from`. Inline: the compiler keeps across it only the values its caller still
/// needs, as across a call (see the module header).
///
/// # Safety
/// * `from` must be valid for an 8-byte write, and the value written must not be switched to
///   before this call has stored it (on SMP: publish it only after `switch` ran, e.g. behind
///   the run-queue lock the caller holds across the switch).
/// * `to` must be a stack pointer saved by `switch` or built by [`init_stack`], of a context
///   that is not running anywhere and is resumed at most once per save; its stack must be
///   mapped and stay alive while the context runs.
/// * As with any `extern "sysv64"` call, the caller-saved registers may come back changed
///   (by the contexts that ran meanwhile). RFLAGS are not switched: disabling interrupts
///   around a switch is the caller's policy.
#[inline(always)]
pub unsafe fn switch(from: *mut u64, to: u64) {
    // SAFETY: the caller upholds the contract for `from` and `to`. rbx and rbp are pushed and
    // popped around the call (they cannot be operands); every other register the resumed
    // contexts may change is declared clobbered (r12-r15 and, by `clobber_abi`, the
    // caller-saved ones). The block uses the stack: without `nostack`, the compiler keeps
    // nothing in the red zone below rsp across it (the host has one; the kernel target none).
    unsafe { switch_block!(from, to) }
}

/// [`switch`]'s block, whose pushes make the [`SwitchFrame`] (rbp first, then rbx, then the
/// return address of the call of [`switch_stack`]), with its operands and clobbers; the
/// optional instructions before and after it (`switch_block!(from, to; "mov ..."; "...")`)
/// are for the host tests, which run the same block with known values in rbx and rbp to
/// check the frame's layout. Everything else calls [`switch`]. Expands to an `asm!` (use it
/// inside `unsafe`, with `switch`'s contract).
#[doc(hidden)]
#[macro_export]
macro_rules! switch_block {
    ($from:expr, $to:expr $(; $($before:literal),* ; $($after:literal),*)?) => {
        core::arch::asm!(
            $($($before,)*)?
            "push rbp",
            "push rbx",
            "call {stack}",
            "pop rbx",
            "pop rbp",
            $($($after,)*)?
            stack = sym $crate::context::switch_stack,
            in("rdi") $from,
            in("rsi") $to,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("sysv64"),
        )
    };
}
pub use switch_block;

/// The stack-pointer trade under [`switch`]: stores the stack pointer (at the return address
/// of this call) into `*from`, loads `to` and returns into the context saved there.
///
/// # Safety
/// As for [`switch`]; called only by a block that pushed rbp then rbx right before the call
/// and pops them right after it (the [`SwitchFrame`] layout), with every other register but
/// rsp treated as clobbered.
#[unsafe(naked)]
pub unsafe extern "sysv64" fn switch_stack(from: *mut u64, to: u64) {
    naked_asm!("mov [rdi], rsp", "mov rsp, rsi", "ret")
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
    naked_asm!("mov rsp, rdi", "ret")
}

/// First code of a new context, reached by the `ret` of [`switch_stack`]/[`enter`] with
/// `rsp` at the frame's rbx slot (see [`init_stack`]): `entry` (the rbx slot) gets `arg` (the
/// word above the frame) in `rdi`, a zero return address and a zero `rbp` (the rbp slot).
#[unsafe(naked)]
pub(crate) unsafe extern "sysv64" fn trampoline() -> ! {
    naked_asm!("pop rax", "pop rbp", "pop rdi", "push 0", "jmp rax")
}

/// Lays out a new context's [`SwitchFrame`] and its `arg` just below `stack_top` (rounded
/// down to 16 bytes) so that the first [`switch`] or [`enter`] to the returned stack pointer
/// runs `entry(arg)` with the guarantees listed in the module documentation.
///
/// # Safety
/// The [`INIT_STACK_BYTES`] bytes below `stack_top & !15` must be mapped, writable and not used
/// by anything else, and must be the top of a stack large enough for everything `entry` runs.
pub unsafe fn init_stack(stack_top: u64, entry: extern "sysv64" fn(u64) -> !, arg: u64) -> u64 {
    let sp = (stack_top & !15) - INIT_STACK_BYTES as u64;
    let frame = SwitchFrame {
        rip: trampoline as *const () as usize as u64,
        rbx: entry as usize as u64,
        rbp: 0,
    };
    // SAFETY: the caller guarantees the bytes are mapped, writable and unused; `sp` is
    // 16-aligned (16-aligned top minus 32), above `SwitchFrame`'s alignment, and the word at
    // `OFF_ARG` is the last of the `INIT_STACK_BYTES`.
    unsafe {
        (sp as *mut SwitchFrame).write(frame);
        ((sp + OFF_ARG as u64) as *mut u64).write(arg);
    }
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
