//! `CpuCell<T>`: state owned by one CPU, reached mutably only on that CPU with its interrupts
//! off.

use crate::{CpuId, IrqGuard};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

/// Why [`CpuCell::with`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BorrowError {
    /// The cell is already borrowed (a re-entrant `with` on its CPU, e.g. from an NMI).
    Busy,
    /// The calling CPU is not the cell's owner.
    NotOwner,
}

/// [`CpuCell`]'s state word while the value is borrowed. CPU ids stay below it
/// ([`crate::install`] checks), so no CPU's id equals a borrowed cell's state.
pub(crate) const BUSY: u32 = 1 << 31;

/// A value that only one CPU (its owner, named when the cell is made) reaches. `with` needs
/// an [`IrqGuard`] (no maskable interrupt handler on this CPU can run meanwhile), refuses
/// any CPU but the owner (one `gs:` load of the caller's CPU id) and refuses re-entrant
/// borrows, so there is never more than one `&mut T`. Until 2026-12-06 the owner was a
/// comment only: safe code could reach another CPU's cell (found by review).
#[derive(Debug)]
pub struct CpuCell<T> {
    /// The owner's CPU id while free, [`BUSY`] while borrowed: the owner check and the busy
    /// check are one compare. Written only by the owner, interrupts off; atomic because
    /// other CPUs read it (and are refused).
    state: AtomicU32,
    /// The owner's CPU id (`BUSY` for an id that names no CPU).
    owner: u32,
    value: UnsafeCell<T>,
}

// SAFETY: the cell sits in state shared by all CPUs (per-CPU blocks, console rings), so the
// type must be Sync; its contents are reached only through `with`, which lets in the owner
// CPU alone (checked against the caller's `gs:` CPU id, unique per installed block), with
// its interrupts off, and never twice at once (the busy state). The value moves between the
// threads that run on the owner CPU: `T: Send`.
unsafe impl<T: Send> Sync for CpuCell<T> {}

impl<T> CpuCell<T> {
    /// A new cell owned by CPU `owner` (an id of 2^31 or more names no CPU: such a cell
    /// refuses everyone).
    pub const fn new(owner: CpuId, value: T) -> Self {
        let owner = if owner.0 < BUSY { owner.0 } else { BUSY };
        CpuCell {
            state: AtomicU32::new(owner),
            owner,
            value: UnsafeCell::new(value),
        }
    }

    /// The owning CPU.
    pub fn owner(&self) -> CpuId {
        CpuId(self.owner)
    }

    /// Runs `f` with exclusive access to the value, on the owning CPU only.
    #[inline(always)]
    pub fn with<R>(&self, irq: &IrqGuard, f: impl FnOnce(&mut T) -> R) -> Result<R, BorrowError> {
        let here = crate::cpu_id(irq).0;
        if self.state.load(Ordering::Relaxed) != here {
            return Err(self.refusal(here));
        }
        self.state.store(BUSY, Ordering::Relaxed);
        // The state's stores stay around `f`'s accesses in program order: an NMI or #MC on
        // this CPU (not masked by the guard) that sees the cell free finds `f` done (found by
        // review, 2026-12-05: without the fences the compiler could move them).
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        // SAFETY: the state was `here`: this CPU owns the cell (no other CPU gets past the
        // compare above, and only this CPU writes the state) and no other `&mut T` exists;
        // interrupts are off (the guard), so no maskable handler on this CPU can reach the
        // cell until the state is restored, and an NMI handler finds it busy.
        let r = f(unsafe { &mut *self.value.get() });
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        self.state.store(here, Ordering::Relaxed);
        Ok(r)
    }

    #[cold]
    #[inline(never)]
    fn refusal(&self, here: u32) -> BorrowError {
        if here == self.owner {
            BorrowError::Busy
        } else {
            BorrowError::NotOwner
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::PerCpu;

    #[test]
    fn only_the_owner_borrows() {
        std::thread::spawn(|| {
            let block: &'static mut PerCpu<()> =
                Box::leak(Box::new(PerCpu::new(CpuId(2), 2, 0, ())));
            crate::host::install_for_thread(block).expect("arch_prctl(ARCH_SET_GS)");
            let g = IrqGuard::host_test();
            let mine = CpuCell::new(CpuId(2), 5u32);
            let other = CpuCell::new(CpuId(3), 7u32);
            assert_eq!(mine.owner(), CpuId(2));
            assert_eq!(other.owner(), CpuId(3));
            assert_eq!(
                mine.with(&g, |v| {
                    *v += 1;
                    *v
                }),
                Ok(6)
            );
            assert_eq!(
                other.with(&g, |v| *v),
                Err(BorrowError::NotOwner),
                "CPU 2 borrowed CPU 3's cell"
            );
            assert_eq!(
                mine.with(&g, |_| mine.with(&g, |v| *v)),
                Ok(Err(BorrowError::Busy)),
                "a re-entrant borrow"
            );
            assert_eq!(mine.with(&g, |v| *v), Ok(6), "free again after a refusal");
            assert_eq!(mine.owner(), CpuId(2));
            // An id that names no CPU: nobody, whatever the caller's id.
            let nobody = CpuCell::new(CpuId(BUSY | 2), 0u8);
            assert!(nobody.with(&g, |v| *v).is_err());
        })
        .join()
        .unwrap();
    }
}
