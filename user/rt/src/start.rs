//! Program entry (`_start`), the [`entry!`](crate::entry) macro and the panic handler.
//!
//! `_start` and the panic handler exist only when building for Exo-OS
//! (`target_os = "none"`); on the host, [`entry!`](crate::entry) makes a stub `main`.

/// Declares the program's main function, `fn(arg: u64) -> i32`: `_start` calls it with the
/// `arg` of `spawn` (for process 1, the kernel command line's `exo.init_arg`: 0 unless
/// set) and ends the process with `exit_group` of its result. Use it once, in a
/// `#![cfg_attr(target_os = "none", no_std, no_main)]` binary:
///
/// ```text
/// exo_rt::entry!(run);
/// fn run(arg: u64) -> i32 { 0 }
/// ```
///
/// On the host it defines a `main` that does not run the program (it is made of Exo-OS
/// system calls); it only keeps the host build of the workspace compiling.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called by `exo_rt`'s `_start`.
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        pub extern "C" fn exo_rt_main(arg: u64) -> i32 {
            let main: fn(u64) -> i32 = $main;
            main(arg)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            let main: fn(u64) -> i32 = $main;
            $crate::__host_stub(main);
        }
    };
}

/// The host's `main` of a user program: says what it is and returns (exit status 0).
#[doc(hidden)]
pub fn __host_stub(_main: fn(u64) -> i32) {
    crate::eprintln!(
        "an Exo-OS user program: it runs from the initrd (scripts/mkinitrd.sh), not on the host"
    );
}

/// What follows a call that never returns (`exit`, `exit_group`, `thread_exit`): if the
/// kernel returns anyway, `ud2` makes it kill the process visibly (`#UD`).
pub(crate) fn unreachable_return() -> ! {
    // SAFETY: ud2 raises #UD; it has no other effect.
    unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
}

#[cfg(target_os = "none")]
mod entry_point {
    use core::fmt::Write;

    use crate::io::{FdWriter, LINE_MAX};

    // `_start`: rdi = the spawn argument, rsp 16-byte aligned, no return address.
    // `call` pushes one, so `rt_start` sees the System V alignment (rsp + 8 ≡ 0 mod 16).
    core::arch::global_asm!(
        ".pushsection .text._start, \"ax\", @progbits",
        ".globl _start",
        ".type _start, @function",
        "_start:",
        "    xor ebp, ebp",
        "    and rsp, -16",
        "    call {start}",
        "    ud2",
        ".size _start, . - _start",
        ".popsection",
        start = sym rt_start,
    );

    unsafe extern "C" {
        /// Defined by `exo_rt::entry!` in the program.
        fn exo_rt_main(arg: u64) -> i32;
    }

    extern "C" fn rt_start(arg: u64) -> ! {
        // SAFETY: `entry!` defines it with this signature.
        let code = unsafe { exo_rt_main(arg) };
        crate::exit_group(code)
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        // A panic while formatting the first one (a `Display` that panics) ends here
        // instead of recursing to the stack's guard page (found by review, 2026-12-04).
        static PANICKING: AtomicBool = AtomicBool::new(false);
        // Set once the first panic's line is out. A second panic, on another thread, waits
        // for it (1 s at most: a panic recursing on the first thread never sees it set)
        // before ending the process: until 2026-12-05 its exit_group ended the first
        // thread before that printed, and two threads panicking together left only
        // "panic while panicking" (found by review; not forced by a test).
        static REPORTED: AtomicU32 = AtomicU32::new(0);
        if PANICKING.swap(true, Ordering::AcqRel) {
            let second = crate::Timespec::from_nanos(1_000_000_000);
            let _ = crate::futex_wait(&REPORTED, 0, Some(&second));
            if REPORTED.load(Ordering::Acquire) == 0 {
                let _ = crate::write(exo_abi::STDERR, b"panic while panicking\n");
            }
            crate::exit_group(101)
        }
        let mut w = FdWriter::<LINE_MAX>::new(exo_abi::STDERR);
        let _ = write!(w, "panic: {}", info.message());
        if let Some(loc) = info.location() {
            let _ = write!(w, " at {}:{}", loc.file(), loc.line());
        }
        w.push(b"\n");
        let _ = w.flush();
        REPORTED.store(1, Ordering::Release);
        let _ = crate::futex_wake(&REPORTED, u32::MAX);
        crate::exit_group(101)
    }
}
