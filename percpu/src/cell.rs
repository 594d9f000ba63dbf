//! `CpuCell<T>`: state owned by one CPU, reached mutably only with interrupts off on that CPU.

use crate::IrqGuard;
use core::cell::{Cell, UnsafeCell};

/// The cell is already borrowed (a re-entrant `with` on the same CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BorrowError;

/// A value in a CPU's per-CPU block that only that CPU mutates. `with` needs an [`IrqGuard`]
/// (no interrupt handler on this CPU can run meanwhile) and refuses re-entrant borrows, so
/// there is never more than one `&mut T`. Cells of other CPUs' blocks must not be touched:
/// the kernel reaches its own block only through `this_cpu`.
#[derive(Debug)]
pub struct CpuCell<T> {
    busy: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: the per-CPU blocks sit in a table shared by all CPUs (for mailboxes and statistics),
// so the type must be Sync; a CpuCell's contents are only reached through `with`, which the
// kernel calls on its own CPU's block (via `this_cpu` under a guard) with interrupts off,
// and the `busy` flag rules out re-entrant borrows on that CPU.
unsafe impl<T: Send> Sync for CpuCell<T> {}

impl<T> CpuCell<T> {
    /// A new cell.
    pub const fn new(value: T) -> Self {
        CpuCell {
            busy: Cell::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the value.
    #[inline(always)]
    pub fn with<R>(&self, _irq: &IrqGuard, f: impl FnOnce(&mut T) -> R) -> Result<R, BorrowError> {
        if self.busy.replace(true) {
            return Err(BorrowError);
        }
        // The flag's stores stay around `f`'s accesses in program order: an NMI or #MC on this
        // CPU (not masked by the guard) that sees `busy` clear finds `f` done (found by
        // review, 2026-12-05: without the fences the compiler could move them).
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: `busy` was false, so no other `&mut T` exists; interrupts are off (the
        // guard), so no maskable handler on this CPU can reach the cell until `busy` is
        // cleared, and an NMI handler finds it busy.
        let r = f(unsafe { &mut *self.value.get() });
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        self.busy.set(false);
        Ok(r)
    }
}
