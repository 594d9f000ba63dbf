//! Atomics shim: loom's model-checked atomics under `cfg(loom)` tests, the
//! real `core` ones everywhere else (including a non-test `--cfg loom` build,
//! where loom, a dev-dependency, is not available).

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(not(all(loom, test)))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
