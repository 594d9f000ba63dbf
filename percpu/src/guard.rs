//! Guards that prove the holder cannot migrate to another CPU while they live.

use core::marker::PhantomData;
use core::sync::atomic::Ordering;

mod sealed {
    pub trait Sealed {}
}

/// Proof that the current code stays on its CPU (interrupts or preemption held off).
pub trait Pinned: sealed::Sealed {}

/// Interrupts disabled on this CPU until drop (restores the previous state). `!Send`.
#[derive(Debug)]
pub struct IrqGuard {
    was_enabled: bool,
    /// A host test's guard (`host_test`): nothing was turned off.
    #[cfg(test)]
    host: bool,
    _not_send: PhantomData<*const ()>,
}

impl IrqGuard {
    /// Disables interrupts.
    #[inline(always)]
    pub fn new() -> Self {
        let was_enabled = exo_arch::cpu::interrupts_enabled();
        exo_arch::cpu::cli();
        IrqGuard {
            was_enabled,
            #[cfg(test)]
            host: false,
            _not_send: PhantomData,
        }
    }

    /// A guard for host unit tests, which cannot turn interrupts off (`cli` faults in user
    /// space): code under it runs as if on a CPU.
    #[cfg(test)]
    pub(crate) fn host_test() -> Self {
        IrqGuard {
            was_enabled: false,
            host: true,
            _not_send: PhantomData,
        }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(test)]
        if self.host {
            return;
        }
        // Interrupts stay off for the guard's whole life. On here, someone turned them on
        // under it: an enclosing guard dropped first (`a`, then `b` made, then `a` dropped),
        // or an `sti` inside its scope; the code it guards may then have been preempted and
        // moved to another CPU (per-CPU state mid-update). Debug builds stop on it.
        debug_assert!(
            !exo_arch::cpu::interrupts_enabled(),
            "IrqGuard dropped with interrupts on: guards dropped out of order, or an sti under one"
        );
        if self.was_enabled {
            exo_arch::cpu::sti();
        }
    }
}

impl sealed::Sealed for IrqGuard {}
impl Pinned for IrqGuard {}

/// Preemption disabled on this CPU until drop (per-CPU nesting counter). `!Send`.
/// Interrupts still run; code they reach must not assume the interrupted state.
#[derive(Debug)]
pub struct PreemptGuard {
    _not_send: PhantomData<*const ()>,
}

impl PreemptGuard {
    /// Increments this CPU's preempt count (one `inc dword gs:[32]`).
    #[inline(always)]
    pub fn new() -> Self {
        // SAFETY: GS points at the installed block; the preempt count is a u32 at a checked
        // offset, written only by this CPU (single instruction, so interrupts see it whole).
        unsafe {
            core::arch::asm!("inc dword ptr gs:[{o}]", o = const crate::OFF_PREEMPT, options(nostack));
        }
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        PreemptGuard {
            _not_send: PhantomData,
        }
    }
}

impl Default for PreemptGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PreemptGuard {
    #[inline(always)]
    fn drop(&mut self) {
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        // SAFETY: as in `new`.
        unsafe {
            core::arch::asm!("dec dword ptr gs:[{o}]", o = const crate::OFF_PREEMPT, options(nostack));
        }
    }
}

impl sealed::Sealed for PreemptGuard {}
impl Pinned for PreemptGuard {}
