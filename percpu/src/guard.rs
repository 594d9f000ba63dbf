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
