//! The data-segment selectors DS, ES, FS and GS: what ring 3 can put there, read cheaply, and
//! loaded back without disturbing the FS and GS bases.
//!
//! In 64-bit mode the four do not take part in addressing (DS and ES have no base; FS and GS
//! take theirs from MSRs), but ring 3 can load any selector it is allowed to (`mov ds, ax`:
//! the null selector with any RPL, the user data and user code selectors with any RPL:
//! nothing else in the GDT is open to it, and there is no LDT) and read it back. Nothing on
//! the way through the kernel changes them: SYSCALL and SYSRET leave all four, an interrupt
//! too, and IRETQ to ring 3 nulls only one whose cached descriptor has a DPL below 3 (the
//! kernel's data selector, which DS and ES once held: see [`crate::gdt::load`]; and on some
//! CPUs, QEMU's among them, a null selector with a nonzero RPL in DS or ES, whichever ring
//! loaded it: the CPU's doing, the same with or without a switch). So they are
//! thread state, and the scheduler keeps them per thread (`switch_selectors` in the kernel's
//! `sched/cpu.rs`): [`live_or`] reads them at a switch (seven instructions, no memory access,
//! 0 in the common case), [`live`] and [`load`] save and restore them when a thread has
//! others. Until 2026-12-06 nobody did, and a selector one program loaded was the next
//! program's on that CPU (a channel between processes).
//!
//! Packed form ([`pack`]): one byte each, DS in bits 0..8, ES in 8..16, FS in 16..24, GS in
//! 24..32 (a thread's control block keeps them in 32 bits). 0 is all four null with RPL 0:
//! what every thread starts with and what the kernel runs with.
//!
//! Loading FS or GS writes its base too (a null selector clears it on Intel and keeps it on
//! AMD, any other loads the descriptor's, 0): [`load`] writes the FS base back, and loads GS
//! with the user GS base swapped in (`swapgs` around it: the kernel's per-CPU GS base is never
//! touched) and writes the user GS base (KERNEL_GS_BASE in ring 0) back.

use crate::gdt::{KERNEL_DS, USER_CS, USER_DS};

/// DS, ES, FS and GS packed into one word (see the module header): a selector the CPU can
/// hold here names one of the GDT's eight descriptors (a load past its limit faults; there
/// is no LDT), so it is below 0x40 and its low byte is all of it.
#[inline(always)]
pub const fn pack(ds: u16, es: u16, fs: u16, gs: u16) -> u32 {
    (ds as u8 as u32) | (es as u8 as u32) << 8 | (fs as u8 as u32) << 16 | (gs as u8 as u32) << 24
}

const _: () = assert!(
    crate::gdt::GDT_LEN * 8 <= 0x100,
    "a selector must fit in a byte"
);

/// The four selectors of a packed word: `[ds, es, fs, gs]`.
#[inline(always)]
pub const fn unpack(v: u32) -> [u16; 4] {
    [
        v as u8 as u16,
        (v >> 8) as u8 as u16,
        (v >> 16) as u8 as u16,
        (v >> 24) as u8 as u16,
    ]
}

/// Whether ring 0 can load `sel` into DS, ES, FS or GS on a CPU running the GDT
/// [`crate::gdt::load`] installed, without a fault: a null selector (any RPL), or the kernel
/// data, user data or user code (readable) descriptor (any RPL). Every selector ring 3 can
/// load is one of these.
#[inline]
pub const fn loadable(sel: u16) -> bool {
    let s = sel & !3;
    s == 0 || s == KERNEL_DS || s == USER_DS & !3 || s == USER_CS & !3
}

/// The OR of the live DS, ES, FS and GS: 0 exactly when all four are the null selector with
/// RPL 0 (a 32-bit read of a segment register zero-extends on every x86-64 CPU).
#[inline(always)]
pub fn live_or() -> u32 {
    let v: u32;
    // SAFETY: reads four segment registers into general registers: no memory access, no
    // other effect (RFLAGS: the `or`s, not preserved).
    unsafe {
        core::arch::asm!(
            "mov {v:e}, ds",
            "mov {t:e}, es",
            "or {v:e}, {t:e}",
            "mov {t:e}, fs",
            "or {v:e}, {t:e}",
            "mov {t:e}, gs",
            "or {v:e}, {t:e}",
            v = out(reg) v,
            t = out(reg) _,
            options(nomem, nostack),
        );
    }
    v
}

/// The live DS, ES, FS and GS, packed.
#[inline]
pub fn live() -> u32 {
    let (ds, es, fs, gs): (u32, u32, u32, u32);
    // SAFETY: as in `live_or`.
    unsafe {
        core::arch::asm!(
            "mov {ds:e}, ds",
            "mov {es:e}, es",
            "mov {fs:e}, fs",
            "mov {gs:e}, gs",
            ds = out(reg) ds,
            es = out(reg) es,
            fs = out(reg) fs,
            gs = out(reg) gs,
            options(nomem, nostack, preserves_flags),
        );
    }
    pack(ds as u16, es as u16, fs as u16, gs as u16)
}

#[cfg(target_os = "none")]
const MSR_FS_BASE: u32 = 0xC000_0100;
#[cfg(target_os = "none")]
const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;

/// Loads the packed selectors `v` into DS, ES, FS and GS, each only where it differs from the
/// live one, keeping the FS base, the GS base and the user GS base (KERNEL_GS_BASE) as they
/// were. A selector ring 0 could not load here (not [`loadable`], or any but a null one on a
/// CPU whose GDT [`crate::gdt::load`] did not install) becomes the null selector: this never
/// faults. Interrupts are off for the duration (the `swapgs` window of GS).
#[cfg(target_os = "none")]
pub fn load(v: u32) {
    let ours = crate::gdt::loaded().is_some();
    let [ds, es, fs, gs] = unpack(v).map(|s| {
        if loadable(s) && (ours || s & !3 == 0) {
            s
        } else {
            0
        }
    });
    let [lds, les, lfs, lgs] = unpack(live());
    crate::cpu::without_interrupts(|| {
        // SAFETY: each selector is null or names a present data or readable code descriptor
        // of this CPU's GDT whose DPL is 3 or (kernel data) 0 = CPL: the loads cannot fault. In
        // 64-bit mode DS and ES take no part in addressing. The FS base is read before FS is
        // loaded and written back after (the kernel does not use FS). GS is loaded between two
        // `swapgs`, so the GS base it overwrites is the user one, written back after; the
        // kernel GS base is live again before anything else runs: interrupts are off, and
        // NMI, #MC and #DB (the paranoid entries) decide GS by the GS base MSR, which in the
        // window is never the kernel's.
        unsafe {
            if ds != lds {
                core::arch::asm!("mov ds, {0:x}", in(reg) ds, options(nostack, preserves_flags));
            }
            if es != les {
                core::arch::asm!("mov es, {0:x}", in(reg) es, options(nostack, preserves_flags));
            }
            if fs != lfs {
                let base = crate::cpu::rdmsr(MSR_FS_BASE);
                core::arch::asm!("mov fs, {0:x}", in(reg) fs, options(nostack, preserves_flags));
                crate::cpu::wrmsr(MSR_FS_BASE, base);
            }
            if gs != lgs {
                let user = crate::cpu::rdmsr(MSR_KERNEL_GS_BASE);
                core::arch::asm!(
                    "swapgs",
                    "mov gs, {0:x}",
                    "swapgs",
                    in(reg) gs,
                    options(nostack, preserves_flags),
                );
                crate::cpu::wrmsr(MSR_KERNEL_GS_BASE, user);
            }
        }
    });
}

/// The calling CPU's FS base and user GS base (KERNEL_GS_BASE): what [`load`] must keep
/// (tests).
#[cfg(target_os = "none")]
pub fn bases() -> (u64, u64) {
    // SAFETY: reading the two MSRs (present on every x86-64 CPU) has no side effect.
    unsafe {
        (
            crate::cpu::rdmsr(MSR_FS_BASE),
            crate::cpu::rdmsr(MSR_KERNEL_GS_BASE),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack_are_inverse() {
        let v = pack(0x2B, 0x20, 3, 0x23);
        assert_eq!(v, 0x2303_202B);
        assert_eq!(unpack(v), [0x2B, 0x20, 3, 0x23]);
        assert_eq!(pack(0, 0, 0, 0), 0);
    }

    #[test]
    fn loadable_is_what_ring_3_can_load_and_kernel_data() {
        for rpl in 0..4 {
            for ok in [0, 0x10, 0x20, 0x28] {
                assert!(loadable(ok | rpl), "{:#x}", ok | rpl);
            }
            // Kernel code, the 32-bit slot (null descriptor), the TSS, past the GDT, the LDT.
            for bad in [0x08, 0x18, 0x30, 0x38, 0x40, 0x04, 0x24, 0x2C, 0xFFF8] {
                assert!(!loadable(bad | rpl), "{:#x}", bad | rpl);
            }
        }
    }

    #[test]
    fn live_selectors_read_on_the_host() {
        // A Linux process runs with the null selector or its user data selector in DS and
        // ES; whatever they are, the two reads agree.
        let [ds, es, fs, gs] = unpack(live());
        assert_eq!(u32::from(ds | es | fs | gs), live_or());
    }
}
