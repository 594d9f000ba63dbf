//! Threads of the calling process on stacks of their own: [`spawn`] maps a stack (with an
//! inaccessible guard page below it), starts `f(arg)` on it through [`entry`], and
//! [`Thread::join`] waits for it and unmaps the stack.
//!
//! The lower-level pieces are public for code that manages its own stacks (the benchmarks
//! reuse one): [`entry`] is the entry point for `thread_create` that reads a [`Start`] at
//! the address in `rdi`, calls `start.f(start.arg)` with a System V frame and passes the
//! result to `thread_exit`.

use exo_abi::{Errno, PROT_NONE, PROT_READ, PROT_WRITE};

/// Default stack size of [`spawn`], guard page excluded.
pub const STACK_SIZE: usize = 64 * 1024;
/// Size of the inaccessible page below each stack of [`spawn`].
pub const GUARD_SIZE: usize = 4096;

/// What [`entry`] runs: `f(arg)`, then `thread_exit` of its result.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// The thread's function.
    pub f: fn(u64) -> i32,
    /// Its argument.
    pub arg: u64,
}

// The entry point: rdi = &Start, rsp = the stack top given to thread_create (16-byte
// aligned); `call` makes the System V frame.
core::arch::global_asm!(
    ".pushsection .text.exo_rt_thread_entry, \"ax\", @progbits",
    ".globl exo_rt_thread_entry",
    ".type exo_rt_thread_entry, @function",
    "exo_rt_thread_entry:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {main}",
    "    ud2",
    ".size exo_rt_thread_entry, . - exo_rt_thread_entry",
    ".popsection",
    main = sym thread_main,
);

unsafe extern "C" {
    fn exo_rt_thread_entry();
}

/// The entry point to give `thread_create` with `arg` = the address of a [`Start`] that
/// stays valid until the thread has read it (its first instructions do).
pub fn entry() -> usize {
    exo_rt_thread_entry as *const () as usize
}

extern "C" fn thread_main(start: *const Start) -> ! {
    // SAFETY: thread_create's contract: `start` is a valid `Start`.
    let s = unsafe { start.read() };
    let code = (s.f)(s.arg);
    crate::thread_exit(code as u32)
}

/// A running thread and its stack. Dropping it without [`join`](Self::join) leaves the
/// thread running and its stack mapped.
#[derive(Debug)]
#[must_use = "a thread that is never joined keeps its stack forever"]
pub struct Thread {
    tid: usize,
    base: usize,
    len: usize,
}

impl Thread {
    /// The thread id.
    pub fn tid(&self) -> usize {
        self.tid
    }

    /// Waits for the thread to end and unmaps its stack; the value `f` returned (its low
    /// 32 bits, as `thread_exit` passes them).
    pub fn join(self) -> Result<i32, Errno> {
        let v = crate::thread_join(self.tid)?;
        // SAFETY: the thread has ended: nothing uses its stack any more.
        unsafe { crate::munmap(self.base, self.len) }?;
        Ok(v as u32 as i32)
    }
}

/// Starts `f(arg)` in a new thread of this process, on a fresh [`STACK_SIZE`]-byte stack.
pub fn spawn(f: fn(u64) -> i32, arg: u64) -> Result<Thread, Errno> {
    spawn_with_stack(f, arg, STACK_SIZE)
}

/// As [`spawn`], with a stack of `stack_size` bytes (rounded up to whole pages; 0 is
/// `EINVAL`: the stack would be only its guard page, until 2026-12-04 a fault here).
pub fn spawn_with_stack(f: fn(u64) -> i32, arg: u64, stack_size: usize) -> Result<Thread, Errno> {
    if stack_size == 0 {
        return Err(Errno::EINVAL);
    }
    let size = stack_size
        .checked_next_multiple_of(4096)
        .and_then(|s| s.checked_add(GUARD_SIZE))
        .ok_or(Errno::ENOMEM)?;
    let base = crate::map_anonymous(size, PROT_READ | PROT_WRITE)?.as_ptr() as usize;
    let fail = |e: Errno| {
        // SAFETY: the stack is ours and unused.
        let _ = unsafe { crate::munmap(base, size) };
        e
    };
    // SAFETY: the guard page is part of our fresh mapping; nothing uses it.
    unsafe { crate::mprotect(base, GUARD_SIZE, PROT_NONE) }.map_err(fail)?;
    let top = base + size;
    let start = (top - core::mem::size_of::<Start>()) & !15;
    // SAFETY: `start` is inside the fresh writable mapping, aligned for `Start`.
    unsafe { (start as *mut Start).write(Start { f, arg }) };
    // SAFETY: the entry never returns and reads the `Start` at `start`, which lies above the
    // initial rsp (so the thread's frames never overwrite it); the stack is only its own.
    let tid = unsafe { crate::thread_create(entry(), start, start as u64) }.map_err(fail)?;
    Ok(Thread {
        tid,
        base,
        len: size,
    })
}
