//! The GS-based per-CPU block of Exo-OS: its layout (the one place it is defined), GS set-up,
//! and accessors that need proof the caller stays on its CPU.
//!
//! Layout: `#[repr(C)]` [`PerCpu<E>`] = the hot header [`Hot`] at offset 0 (self pointer,
//! cpu id, APIC id, held-sleeping-lock count, kernel stack top, preempt count, ...) followed
//! by the kernel's own per-CPU state `E`. Hot fields are read with one `gs:`-relative instruction;
//! their offsets are constants checked at compile time, shared with assembly.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cache;
mod cell;
mod guard;

pub use cell::{BorrowError, CpuCell};
pub use guard::{IrqGuard, Pinned, PreemptGuard};

use core::arch::asm;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize};

/// Offset of the self pointer.
pub const OFF_SELF: usize = 0;
/// Offset of the logical CPU id (u32).
pub const OFF_CPU_ID: usize = 8;
/// Offset of the APIC id (u32).
pub const OFF_APIC_ID: usize = 12;
/// Offset of the current thread's held-sleeping-lock count (u64): one `inc`/`dec` through
/// `gs:` per lock and unlock; the scheduler saves it into the thread it switches out and
/// loads the next thread's (as Linux does with its preempt count).
pub const OFF_HELD_LOCKS: usize = 16;
/// Offset of the running thread's kernel stack top (u64): the syscall entry's stack
/// (`exo_arch::syscall`, which names the same offset); the scheduler sets it at each switch.
pub const OFF_KSTACK_TOP: usize = 24;
/// Offset of the preemption-disable count (u32).
pub const OFF_PREEMPT: usize = 32;
/// Offset of the leaf byte: 1 while a single-`asm!` leaf section (the allocator's fast
/// paths, `cache`) runs; written with plain stores, never nested.
pub const OFF_LEAF: usize = 36;
/// Offset of the user stack scratch slot (u64), used by syscall entry.
pub const OFF_USER_RSP: usize = 40;

// The syscall entry stub (arch) reads these two slots through GS.
const _: () = assert!(OFF_KSTACK_TOP == exo_arch::syscall::GS_KSTACK_TOP);
const _: () = assert!(OFF_PID == exo_arch::syscall::GS_PID);
const _: () = assert!(OFF_USER_RSP == exo_arch::syscall::GS_USER_RSP);
/// Offset of the process id slot (u64): `getpid` is one `mov` from here.
pub const OFF_PID: usize = 48;
/// Offset of the scheduler slot (usize): the kernel's per-CPU scheduler, opaque here.
pub const OFF_SCHED: usize = 56;

/// Logical CPU number: 0 is the boot CPU, APs follow in MADT order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(pub u32);

/// The hot header: fields the fast paths read through `gs:`.
#[repr(C)]
#[derive(Debug)]
pub struct Hot {
    /// Points at the block itself (so `gs:[0]` yields a normal pointer).
    pub self_ptr: usize,
    /// Logical CPU id.
    pub cpu_id: u32,
    /// Local APIC id.
    pub apic_id: u32,
    /// The current thread's held-sleeping-lock count (see [`OFF_HELD_LOCKS`]).
    pub held_locks: AtomicUsize,
    /// Top of this CPU's kernel stack. This and `user_rsp` and `pid` are written through
    /// `gs:` (system-call entry, the switch) while `&PerCpu` references live: atomics, so
    /// no Rust reference promises them unchanging (plain `u64` until 2026-12-05; nothing
    /// read them through Rust, found by review).
    pub kstack_top: AtomicU64,
    /// Preemption-disable nesting count (only this CPU writes it).
    pub preempt: AtomicU32,
    /// Leaf-section flag (see [`cache`]); preemption waits while it is set.
    pub leaf: AtomicU8,
    _pad0: [u8; 3],
    /// Scratch slot for the user RSP on syscall entry.
    pub user_rsp: AtomicU64,
    /// Process id of the current thread.
    pub pid: AtomicU64,
    /// The kernel's scheduler state of this CPU (opaque to this crate; 0 until it runs), so
    /// the scheduler finds its own CPU's state with one `gs:` load.
    pub sched: AtomicUsize,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Hot, self_ptr) == OFF_SELF);
    assert!(offset_of!(Hot, cpu_id) == OFF_CPU_ID);
    assert!(offset_of!(Hot, apic_id) == OFF_APIC_ID);
    assert!(offset_of!(Hot, held_locks) == OFF_HELD_LOCKS);
    assert!(offset_of!(Hot, kstack_top) == OFF_KSTACK_TOP);
    assert!(offset_of!(Hot, preempt) == OFF_PREEMPT);
    assert!(offset_of!(Hot, leaf) == OFF_LEAF);
    assert!(offset_of!(Hot, user_rsp) == OFF_USER_RSP);
    assert!(offset_of!(Hot, pid) == OFF_PID);
    assert!(offset_of!(Hot, sched) == OFF_SCHED);
    assert!(core::mem::size_of::<Hot>() == 64);
};

/// One CPU's block: the hot header then the kernel's per-CPU state. Cache-line aligned so
/// no two CPUs' blocks share a line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu<E> {
    /// Hot header, at offset 0.
    pub hot: Hot,
    /// Allocation caches (object and frame magazines), at `cache::OFF_CACHES`.
    pub caches: cache::Caches,
    /// Kernel-defined per-CPU state.
    pub ext: E,
}

const _: () = assert!(core::mem::offset_of!(PerCpu<u8>, hot) == 0);

impl<E> PerCpu<E> {
    /// A block for `cpu` with APIC id `apic_id`; the self pointer is set by [`install`].
    pub const fn new(cpu: CpuId, apic_id: u32, kstack_top: u64, ext: E) -> Self {
        PerCpu {
            hot: Hot {
                self_ptr: 0,
                cpu_id: cpu.0,
                apic_id,
                held_locks: AtomicUsize::new(0),
                kstack_top: AtomicU64::new(kstack_top),
                preempt: AtomicU32::new(0),
                leaf: AtomicU8::new(0),
                _pad0: [0; 3],
                user_rsp: AtomicU64::new(0),
                pid: AtomicU64::new(0),
                sched: AtomicUsize::new(0),
            },
            caches: cache::Caches::new(),
            ext,
        }
    }
}

const IA32_GS_BASE: u32 = 0xC000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xC000_0102;

/// Proof that the per-CPU blocks are `PerCpu<E>`: made only by [`install`], whose contract
/// is that every block installed anywhere is of that one `E`. [`Installed::this_cpu`] needs
/// it: until 2026-12-06 `this_cpu::<E>` was safe for any `E` the caller named, type
/// confusion in safe code (found by review). A zero-sized `Copy` value: keep it anywhere.
///
/// Only `install` makes one, and naming a block type needs it (or `unsafe`):
/// ```compile_fail,E0451
/// let t: exo_percpu::Installed<u64> = exo_percpu::Installed { _e: core::marker::PhantomData };
/// ```
/// ```compile_fail,E0133
/// fn block(g: &exo_percpu::PreemptGuard) -> &exo_percpu::PerCpu<u64> {
///     exo_percpu::this_cpu::<u64>(g)
/// }
/// ```
pub struct Installed<E> {
    _e: PhantomData<fn() -> E>,
}

impl<E> Clone for Installed<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Installed<E> {}

impl<E> core::fmt::Debug for Installed<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Installed")
    }
}

impl<E> Installed<E> {
    /// This CPU's block, for the guard's lifetime: one `gs:` load.
    #[inline(always)]
    pub fn this_cpu(self, pinned: &impl Pinned) -> &PerCpu<E> {
        // SAFETY: the token exists, so `install` ran, and its contract makes every installed
        // block a `PerCpu<E>`; a guard exists only on a CPU that runs kernel code after its
        // bring-up installed its block (as for every `gs:` read here).
        unsafe { this_cpu(pinned) }
    }
}

/// Makes `block` this CPU's per-CPU block: sets its self pointer and the GS base, and clears
/// KERNEL_GS_BASE (the user GS value that `swapgs` will exchange in later). Returns the
/// token that reaches it ([`Installed::this_cpu`]).
///
/// # Safety
/// Called once per CPU during bring-up, with interrupts off, before anything reads `gs:`;
/// `block` must never be freed or moved and must not be installed on another CPU; its CPU id
/// is unique among installed blocks ([`CpuCell`] trusts it); every block installed in the
/// program (on any CPU) is a `PerCpu<E>` of this same `E` (the token vouches for all).
///
/// # Panics
/// On a CPU id of 2^31 or more (reserved by [`CpuCell`]).
pub unsafe fn install<E>(block: &'static mut PerCpu<E>) -> Installed<E> {
    assert!(block.hot.cpu_id < cell::BUSY, "CPU id of 2^31 or more");
    let p = block as *mut PerCpu<E>;
    // SAFETY: `block` is exclusively ours ('static mut); the MSR writes point GS at it, which
    // the caller guarantees happens once, on this CPU only, before any gs: access.
    unsafe {
        (*p).hot.self_ptr = p as usize;
        exo_arch::cpu::wrmsr(IA32_GS_BASE, p as u64);
        exo_arch::cpu::wrmsr(IA32_KERNEL_GS_BASE, 0);
    }
    Installed { _e: PhantomData }
}

/// Is a per-CPU block installed on this CPU? (GS base non-zero; usable in panic paths.)
pub fn installed() -> bool {
    // SAFETY: reading IA32_GS_BASE has no side effect.
    unsafe { exo_arch::cpu::rdmsr(IA32_GS_BASE) != 0 }
}

macro_rules! gs_read32 {
    ($off:expr) => {{
        let v: u32;
        // SAFETY: GS points at this CPU's installed block (guaranteed by `install` before any
        // guard can exist), and the offset is a checked u32 field of the hot header.
        unsafe { asm!("mov {0:e}, gs:[{off}]", out(reg) v, off = const $off, options(nostack, preserves_flags, readonly)) };
        v
    }};
}

macro_rules! gs_read64 {
    ($off:expr) => {{
        let v: u64;
        // SAFETY: as in `gs_read32`, for a 64-bit field.
        unsafe { asm!("mov {0}, gs:[{off}]", out(reg) v, off = const $off, options(nostack, preserves_flags, readonly)) };
        v
    }};
}

/// This CPU's id: one `mov eax, gs:[8]`. The guard proves the answer stays true while it lives.
#[inline(always)]
pub fn cpu_id(_pinned: &impl Pinned) -> CpuId {
    CpuId(gs_read32!(OFF_CPU_ID))
}

/// This CPU's id without a guard: correct at the instant of the read, a hint afterwards
/// (logging, panic messages). Interrupt handlers may use it freely: they cannot migrate.
#[inline(always)]
pub fn cpu_id_hint() -> CpuId {
    CpuId(gs_read32!(OFF_CPU_ID))
}

/// This CPU's APIC id.
#[inline(always)]
pub fn apic_id(_pinned: &impl Pinned) -> u32 {
    gs_read32!(OFF_APIC_ID)
}

/// The pid slot: `getpid` is this single `mov rax, gs:[48]`.
#[inline(always)]
pub fn pid() -> u64 {
    gs_read64!(OFF_PID)
}

/// Sets the pid slot (the scheduler at a switch, for the incoming thread; interrupts off,
/// so the value always belongs to the thread that runs).
#[inline(always)]
pub fn set_pid(pid: u64) {
    // SAFETY: GS points at this CPU's installed block; the slot is the u64 at OFF_PID,
    // written only by this CPU with interrupts off (the caller's contract), read through gs:.
    unsafe {
        asm!("mov gs:[{off}], {v}", v = in(reg) pid, off = const OFF_PID, options(nostack, preserves_flags))
    };
}

/// The running thread's kernel stack top (the syscall entry's stack).
#[inline(always)]
pub fn kstack_top() -> u64 {
    gs_read64!(OFF_KSTACK_TOP)
}

/// Sets the running thread's kernel stack top (the scheduler at a switch, interrupts off:
/// the syscall entry reads it with interrupts off too, so it never sees another thread's).
#[inline(always)]
pub fn set_kstack_top(top: u64) {
    // SAFETY: as in `set_pid`, for the u64 at OFF_KSTACK_TOP.
    unsafe {
        asm!("mov gs:[{off}], {v}", v = in(reg) top, off = const OFF_KSTACK_TOP, options(nostack, preserves_flags))
    };
}

/// One more sleeping lock held by the running thread: `inc qword ptr gs:[16]`. One
/// instruction, so an interrupt (and a switch) sees it done or not done.
#[inline(always)]
pub fn held_locks_inc() {
    // SAFETY: GS points at this CPU's installed block; the slot is the `AtomicUsize` at
    // OFF_HELD_LOCKS, written only by this CPU (this instruction, or the scheduler with
    // interrupts off). `nomem`: no Rust code reads or writes the slot except through these
    // gs: instructions, so they need not be ordered with other memory accesses.
    unsafe {
        asm!("inc qword ptr gs:[{off}]", off = const OFF_HELD_LOCKS, options(nostack, nomem))
    };
}

/// One sleeping lock fewer: `dec qword ptr gs:[16]`.
#[inline(always)]
pub fn held_locks_dec() {
    // SAFETY: as in `held_locks_inc`.
    unsafe {
        asm!("dec qword ptr gs:[{off}]", off = const OFF_HELD_LOCKS, options(nostack, nomem))
    };
}

/// Exchanges the running thread's held-lock count for `next` (the scheduler at a switch,
/// interrupts off): returns the outgoing thread's count.
#[inline(always)]
pub fn swap_held_locks(next: u64) -> u64 {
    let old: u64;
    // SAFETY: as in `held_locks_inc`; interrupts are off (the caller's contract), so no lock
    // operation runs between the two instructions.
    unsafe {
        asm!(
            "mov {old}, gs:[{off}]",
            "mov gs:[{off}], {new}",
            old = out(reg) old,
            new = in(reg) next,
            off = const OFF_HELD_LOCKS,
            options(nostack, preserves_flags),
        )
    };
    old
}

/// The running thread's held-lock count.
#[inline(always)]
pub fn held_locks() -> u64 {
    gs_read64!(OFF_HELD_LOCKS)
}

/// The scheduler slot of this CPU's block (see [`Hot::sched`]): one `mov rax, gs:[56]`.
#[inline(always)]
pub fn sched_slot() -> usize {
    gs_read64!(OFF_SCHED) as usize
}

/// Sets this CPU's scheduler slot (once, when the scheduler starts on it). The guard keeps
/// the caller on the CPU whose slot it sets.
pub fn set_sched_slot(_pinned: &impl Pinned, v: usize) {
    // SAFETY: GS points at this CPU's installed block (see `gs_read32`); the slot is the
    // `AtomicUsize` at OFF_SCHED, written only by this CPU (an aligned 8-byte store).
    unsafe {
        asm!("mov gs:[{off}], {v}", v = in(reg) v, off = const OFF_SCHED, options(nostack, preserves_flags))
    };
}

/// May the scheduler preempt the code this CPU was running? One load of the preempt word:
/// true when the nesting count and the leaf byte are both zero. Meant for interrupt
/// handlers (which see the interrupted code's state; they cannot migrate themselves).
#[inline(always)]
pub fn preemptible() -> bool {
    gs_read64!(OFF_PREEMPT) & 0xFF_FFFF_FFFF == 0
}

/// This CPU's block, for the guard's lifetime (safe: [`Installed::this_cpu`]).
///
/// # Safety
/// The block installed on this CPU is a `PerCpu<E>` (the caller names the right `E`).
#[inline(always)]
pub unsafe fn this_cpu<E>(_pinned: &impl Pinned) -> &PerCpu<E> {
    let p = gs_read64!(OFF_SELF) as *const PerCpu<E>;
    // SAFETY: gs:[0] is the self pointer of the block installed on this CPU, which lives
    // forever; it is a `PerCpu<E>` (the caller's contract). The guard keeps us on this CPU,
    // so the reference means "this CPU's block" while it lives.
    unsafe { &*p }
}

/// This CPU's allocation caches (their offset is the same whatever the block's `E`).
#[inline(always)]
pub(crate) fn this_caches(_pinned: &impl Pinned) -> &cache::Caches {
    let p = (gs_read64!(OFF_SELF) as usize + cache::OFF_CACHES) as *const cache::Caches;
    // SAFETY: gs:[0] is the self pointer of the block installed on this CPU, which lives
    // forever; every `PerCpu<E>` holds its caches at `OFF_CACHES` (checked in `cache`).
    unsafe { &*p }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering;

    #[test]
    fn header_layout() {
        assert_eq!(core::mem::size_of::<Hot>(), 64);
        assert_eq!(core::mem::align_of::<PerCpu<u64>>(), 64);
        assert_eq!(core::mem::offset_of!(PerCpu<[u64; 3]>, caches), 64);
        assert_eq!(
            core::mem::offset_of!(PerCpu<[u64; 3]>, ext),
            64 + core::mem::size_of::<cache::Caches>()
        );
        let b = PerCpu::new(CpuId(3), 7, 0x1000, 5u8);
        assert_eq!(b.hot.cpu_id, 3);
        assert_eq!(b.hot.apic_id, 7);
        assert_eq!(b.hot.kstack_top.load(Ordering::Relaxed), 0x1000);
    }
}

/// Host (Linux user space) support, so native benchmarks exercise the same GS-relative paths.
#[cfg(all(not(target_os = "none"), target_os = "linux"))]
pub mod host {
    use super::PerCpu;

    const ARCH_SET_GS: u64 = 0x1001;
    const SYS_ARCH_PRCTL: u64 = 158;

    /// The kernel refused to set the GS base (errno as a negative number).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SetGsError(pub i64);

    /// Points the calling thread's GS base at `block` with `arch_prctl(ARCH_SET_GS)`, so
    /// `gs:`-relative accessors work in this thread exactly as on a kernel CPU.
    /// (Only `PreemptGuard` may be used on the host: `IrqGuard` executes `cli`.)
    pub fn install_for_thread<E>(block: &'static mut PerCpu<E>) -> Result<(), SetGsError> {
        assert!(
            block.hot.cpu_id < crate::cell::BUSY,
            "CPU id of 2^31 or more"
        );
        let p = block as *mut PerCpu<E>;
        // SAFETY: `block` is exclusively ours and lives forever; the write sets the self
        // pointer before GS points at the block.
        unsafe { (*p).hot.self_ptr = p as usize };
        let ret: i64;
        // SAFETY: the arch_prctl system call only changes this thread's GS base; rcx and r11
        // are clobbered by `syscall` and declared so. Rust code in this thread does not use GS.
        unsafe {
            core::arch::asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL as i64 => ret,
                             in("rdi") ARCH_SET_GS, in("rsi") p as u64,
                             lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        if ret < 0 {
            Err(SetGsError(ret))
        } else {
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::{CpuId, PreemptGuard};

        #[test]
        fn gs_reads_on_a_host_thread() {
            std::thread::spawn(|| {
                let block: &'static mut PerCpu<u64> =
                    Box::leak(Box::new(PerCpu::new(CpuId(5), 9, 0, 77)));
                install_for_thread(block).expect("arch_prctl(ARCH_SET_GS)");
                fn this(g: &PreemptGuard) -> &PerCpu<u64> {
                    // SAFETY: this thread's block is a `PerCpu<u64>`.
                    unsafe { crate::this_cpu::<u64>(g) }
                }
                let g = PreemptGuard::new();
                assert_eq!(crate::cpu_id(&g), CpuId(5));
                assert_eq!(crate::apic_id(&g), 9);
                assert_eq!(this(&g).ext, 77);
                assert_eq!(
                    this(&g)
                        .hot
                        .preempt
                        .load(core::sync::atomic::Ordering::Relaxed),
                    1
                );
                drop(g);
                let g = PreemptGuard::new();
                assert_eq!(
                    this(&g)
                        .hot
                        .preempt
                        .load(core::sync::atomic::Ordering::Relaxed),
                    1
                );
            })
            .join()
            .unwrap();
        }

        #[test]
        fn magazines_through_gs() {
            use crate::cache::{self, PAGES, SLOTS};
            std::thread::spawn(|| {
                let block: &'static mut PerCpu<()> =
                    Box::leak(Box::new(PerCpu::new(CpuId(1), 1, 0, ())));
                install_for_thread(block).expect("arch_prctl(ARCH_SET_GS)");
                assert!(crate::preemptible());
                assert_eq!(cache::obj_alloc(3), None);
                for i in 0..SLOTS {
                    assert_eq!(cache::obj_free(3, 0x100 * (i + 1)), Ok(i + 1));
                }
                assert_eq!(cache::obj_free(3, 0xdead0), Err(0xdead0), "full magazine");
                assert_eq!(cache::obj_alloc(2), None, "classes are separate");
                assert!(crate::preemptible(), "leaf sections leave the byte clear");
                // LIFO order.
                for i in (SLOTS - 10..SLOTS).rev() {
                    assert_eq!(cache::obj_alloc(3), Some(0x100 * (i + 1)));
                }
                let g = PreemptGuard::new();
                assert!(!crate::preemptible());
                assert_eq!(cache::len(&g, 3), SLOTS - 10);
                // The oldest entries leave first.
                let mut out = [0usize; 8];
                assert_eq!(cache::drain_oldest(&g, 3, &mut out), 8);
                assert_eq!(out, core::array::from_fn(|i| 0x100 * (i + 1)));
                assert_eq!(cache::len(&g, 3), SLOTS - 18);
                assert_eq!(cache::refill(&g, 3, &[0x7770, 0x7780]), 2);
                let mut all = Vec::new();
                cache::take_all(&g, 3, |v| all.push(v));
                assert_eq!(all.len(), SLOTS - 16);
                assert_eq!(&all[..2], &[0x7780, 0x7770], "newest first");
                assert_eq!(all[all.len() - 1], 0x900, "oldest left is the ninth");
                assert_eq!(cache::len(&g, 3), 0);
                let many: Vec<usize> = (1..=100).collect();
                assert_eq!(
                    cache::refill(&g, 3, &many),
                    SLOTS,
                    "refill stops at capacity"
                );
                drop(g);

                assert_eq!(cache::page_alloc(), None);
                for i in 0..SLOTS as u64 {
                    assert_eq!(cache::page_free(0x1000 * (i + 1)), Ok(i as usize + 1));
                }
                assert_eq!(cache::page_free(0xdead_0000), Err(0xdead_0000));
                let g = PreemptGuard::new();
                assert_eq!(cache::len(&g, PAGES), SLOTS);
                drop(g);
                assert_eq!(cache::page_alloc(), Some(0x1000 * SLOTS as u64));
                assert!(crate::preemptible());
            })
            .join()
            .unwrap();
        }
    }
}
