//! Atomics shim: loom's model-checked atomics under `cfg(loom)` tests, the
//! real `core` ones everywhere else (including a non-test `--cfg loom` build,
//! where loom, a dev-dependency, is not available).

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(not(all(loom, test)))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

/// One busy-wait step: `pause` on x86, a scheduling point under loom (a loom
/// model must never spin without yielding).
///
/// In this crate's host unit tests (`cfg(test)` without loom) every 64th
/// step also yields the OS thread: the stress tests run 4 spinning threads
/// per lock on 2-core machines, where a FIFO lock whose next holder is
/// descheduled would otherwise stall a whole time slice per hand-off. The
/// kernel, the examples and the benchmarks spin without yielding.
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(all(loom, test))]
    loom::hint::spin_loop();
    #[cfg(not(all(loom, test)))]
    core::hint::spin_loop();
    #[cfg(all(test, not(loom)))]
    host_test_yield();
}

#[cfg(all(test, not(loom)))]
fn host_test_yield() {
    use std::cell::Cell;
    std::thread_local!(static SPINS: Cell<u32> = const { Cell::new(0) });
    SPINS.with(|spins| {
        let n = spins.get().wrapping_add(1);
        spins.set(n);
        if n % 64 == 0 {
            std::thread::yield_now();
        }
    });
}

/// Defines a `const fn`, except under loom tests, where the body calls loom
/// atomics' non-`const` constructors and the function is a plain `fn`.
macro_rules! const_fn_unless_loom {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($args:tt)*) -> $ret:ty $body:block) => {
        #[cfg(not(all(loom, test)))]
        $(#[$meta])*
        $vis const fn $name($($args)*) -> $ret $body

        #[cfg(all(loom, test))]
        $(#[$meta])*
        $vis fn $name($($args)*) -> $ret $body
    };
}
pub(crate) use const_fn_unless_loom;
