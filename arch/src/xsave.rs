//! FPU/SIMD state save areas: size, alignment and instruction chosen from CPUID, save and
//! restore, a valid initial image, and CR0.TS for lazy switching.
//!
//! Choice of instruction (best first):
//! * `XSAVEOPT` (CPUID.(0xD,1):EAX[0]): standard format; skips components not modified since
//!   the last `XRSTOR` from the same area on this CPU: the right fit when one thread's area is
//!   saved again and again.
//! * `XSAVEC` (EAX[1]): compacted format (smaller when XCR0 has holes), init optimisation.
//! * `XSAVE`: standard format, always writes every enabled component.
//! * `FXSAVE`: x87 + SSE only, when XSAVE is not enabled (CR4.OSXSAVE clear).
//!
//! `XSAVES` is not used: it is supervisor-only and its extra components need IA32_XSS, which
//! the kernel does not enable (no supervisor state such as PT or CET to switch).
//! `XRSTOR` reads both formats (the header's XCOMP_BV bit 63 says which).

use core::arch::asm;
use core::arch::x86_64::__cpuid_count;

/// How state is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `FXSAVE64`/`FXRSTOR64`, 512 bytes.
    Fxsave,
    /// `XSAVE64`/`XRSTOR64`.
    Xsave,
    /// `XSAVEOPT64`/`XRSTOR64`.
    XsaveOpt,
    /// `XSAVEC64`/`XRSTOR64` (compacted format).
    XsaveC,
}

/// What a save area needs on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuInfo {
    /// Bytes of one save area.
    pub size: usize,
    /// Alignment of a save area (64).
    pub align: usize,
    /// The save instruction.
    pub mechanism: Mechanism,
    /// Components saved (XCR0; 0b11 for FXSAVE).
    pub xcr0: u64,
}

const LEGACY: usize = 512;
const HEADER: usize = 64;
const OFF_FCW: usize = 0;
const OFF_MXCSR: usize = 24;
const OFF_XCOMP_BV: usize = LEGACY + 8;
const FCW_INIT: u16 = 0x037F;
const MXCSR_INIT: u32 = 0x1F80;

fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV(0) is only executed when CPUID says OSXSAVE (checked by the caller);
    // it reads XCR0 and has no side effect.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

impl FpuInfo {
    /// Detects the mechanism and size from CPUID (leaf 1 OSXSAVE, leaf 0xD).
    pub fn detect() -> FpuInfo {
        let l1 = __cpuid_count(1, 0);
        let osxsave = l1.ecx & (1 << 27) != 0;
        if !osxsave {
            return FpuInfo {
                size: LEGACY,
                align: 64,
                mechanism: Mechanism::Fxsave,
                xcr0: 0b11,
            };
        }
        let xcr0 = xcr0();
        // Leaf 0xD exists when XSAVE is supported (OSXSAVE implies it).
        let d0 = __cpuid_count(0xD, 0);
        let d1 = __cpuid_count(0xD, 1);
        let (mechanism, size) = if d1.eax & 1 != 0 {
            (Mechanism::XsaveOpt, d0.ebx as usize)
        } else if d1.eax & 2 != 0 {
            // Sub-leaf 1 EBX: compacted size of XCR0 | IA32_XSS (XSS is 0 here).
            (Mechanism::XsaveC, d1.ebx as usize)
        } else {
            (Mechanism::Xsave, d0.ebx as usize)
        };
        FpuInfo {
            size: size.max(LEGACY + HEADER),
            align: 64,
            mechanism,
            xcr0,
        }
    }
}

/// Writes a valid initial image into `area` (at least `info.size` bytes, 64-byte aligned):
/// every component in its init state, FCW 0x037F and MXCSR 0x1F80 (what `FNINIT` and reset
/// give), so the first restore yields clean registers.
pub fn init_area(area: &mut [u8], info: &FpuInfo) {
    area.fill(0);
    if area.len() < LEGACY + HEADER {
        return;
    }
    area[OFF_FCW..OFF_FCW + 2].copy_from_slice(&FCW_INIT.to_le_bytes());
    area[OFF_MXCSR..OFF_MXCSR + 4].copy_from_slice(&MXCSR_INIT.to_le_bytes());
    if info.mechanism == Mechanism::XsaveC {
        // Compacted format: XCOMP_BV bit 63 plus the components the area has room for;
        // XSTATE_BV = 0 keeps them all in their init state.
        let xcomp = (1u64 << 63) | info.xcr0;
        area[OFF_XCOMP_BV..OFF_XCOMP_BV + 8].copy_from_slice(&xcomp.to_le_bytes());
    }
}

/// Saves the FPU/SIMD state into `area`.
///
/// # Safety
/// `area` must be valid for writes of `info.size` bytes and 64-byte aligned; CR0.TS must be
/// clear (else #NM); `info` must come from [`FpuInfo::detect`] on this machine.
#[inline]
pub unsafe fn save(area: *mut u8, info: &FpuInfo) {
    let (lo, hi) = (info.xcr0 as u32, (info.xcr0 >> 32) as u32);
    // SAFETY: per the contract; each instruction writes at most `info.size` bytes.
    unsafe {
        match info.mechanism {
            Mechanism::XsaveOpt => {
                asm!("xsaveopt64 [{0}]", in(reg) area, in("eax") lo, in("edx") hi, options(nostack, preserves_flags))
            }
            Mechanism::XsaveC => {
                asm!("xsavec64 [{0}]", in(reg) area, in("eax") lo, in("edx") hi, options(nostack, preserves_flags))
            }
            Mechanism::Xsave => {
                asm!("xsave64 [{0}]", in(reg) area, in("eax") lo, in("edx") hi, options(nostack, preserves_flags))
            }
            Mechanism::Fxsave => {
                asm!("fxsave64 [{0}]", in(reg) area, options(nostack, preserves_flags))
            }
        }
    }
}

/// Loads the FPU/SIMD state from `area`.
///
/// # Safety
/// `area` must hold a valid image for `info` (from [`init_area`] or [`save`]), be readable
/// for `info.size` bytes and 64-byte aligned; CR0.TS must be clear.
#[inline]
pub unsafe fn restore(area: *const u8, info: &FpuInfo) {
    let (lo, hi) = (info.xcr0 as u32, (info.xcr0 >> 32) as u32);
    // SAFETY: per the contract (a malformed header would #GP; images come from this module).
    unsafe {
        match info.mechanism {
            Mechanism::Fxsave => {
                asm!("fxrstor64 [{0}]", in(reg) area, options(nostack, preserves_flags, readonly))
            }
            _ => {
                asm!("xrstor64 [{0}]", in(reg) area, in("eax") lo, in("edx") hi, options(nostack, preserves_flags, readonly))
            }
        }
    }
}

/// Sets CR0.TS: the next FPU/SIMD instruction raises #NM (ring 0 only).
#[cfg(target_os = "none")]
#[inline]
pub fn set_ts() {
    // SAFETY: setting TS only makes FPU instructions trap; ring 0 (kernel target only).
    unsafe {
        asm!("mov {t}, cr0", "or {t}, 8", "mov cr0, {t}", t = out(reg) _, options(nomem, nostack, preserves_flags));
    }
}

/// Clears CR0.TS (ring 0 only).
#[cfg(target_os = "none")]
#[inline]
pub fn clts() {
    // SAFETY: CLTS only clears TS; ring 0 (kernel target only).
    unsafe { asm!("clts", options(nomem, nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(64))]
    struct Area([u8; 16384]);

    fn set_xmm(v: &[u8; 256]) {
        // SAFETY: loads xmm0..15 from 256 readable bytes; the test owns these registers
        // between the asm blocks (no Rust code that uses them runs in between: only our own
        // asm and the save/restore under test).
        unsafe {
            asm!(
                "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 16]", "movdqu xmm2, [{p} + 32]",
                "movdqu xmm3, [{p} + 48]", "movdqu xmm4, [{p} + 64]", "movdqu xmm5, [{p} + 80]",
                "movdqu xmm6, [{p} + 96]", "movdqu xmm7, [{p} + 112]", "movdqu xmm8, [{p} + 128]",
                "movdqu xmm9, [{p} + 144]", "movdqu xmm10, [{p} + 160]", "movdqu xmm11, [{p} + 176]",
                "movdqu xmm12, [{p} + 192]", "movdqu xmm13, [{p} + 208]", "movdqu xmm14, [{p} + 224]",
                "movdqu xmm15, [{p} + 240]",
                p = in(reg) v.as_ptr(), options(nostack, readonly, preserves_flags));
        }
    }

    fn get_xmm(v: &mut [u8; 256]) {
        // SAFETY: stores xmm0..15 into 256 writable bytes.
        unsafe {
            asm!(
                "movdqu [{p}], xmm0", "movdqu [{p} + 16], xmm1", "movdqu [{p} + 32], xmm2",
                "movdqu [{p} + 48], xmm3", "movdqu [{p} + 64], xmm4", "movdqu [{p} + 80], xmm5",
                "movdqu [{p} + 96], xmm6", "movdqu [{p} + 112], xmm7", "movdqu [{p} + 128], xmm8",
                "movdqu [{p} + 144], xmm9", "movdqu [{p} + 160], xmm10", "movdqu [{p} + 176], xmm11",
                "movdqu [{p} + 192], xmm12", "movdqu [{p} + 208], xmm13", "movdqu [{p} + 224], xmm14",
                "movdqu [{p} + 240], xmm15",
                p = in(reg) v.as_mut_ptr(), options(nostack, preserves_flags));
        }
    }

    #[test]
    fn detect_is_sane() {
        let i = FpuInfo::detect();
        assert!(i.size >= LEGACY + HEADER || i.mechanism == Mechanism::Fxsave);
        assert!(i.size <= 16384, "size {}", i.size);
        assert_eq!(i.xcr0 & 0b11, 0b11, "x87 and SSE always enabled");
        assert_eq!(i.align, 64);
    }

    #[test]
    fn save_clobber_restore_roundtrip_and_init_image() {
        let info = FpuInfo::detect();
        let mut area = Box::new(Area([0; 16384]));
        let want: [u8; 256] = core::array::from_fn(|k| (k * 7 + 3) as u8);
        let mut got = [0u8; 256];
        set_xmm(&want);
        // SAFETY: a 64-aligned, 16 KiB area (>= info.size); TS is clear in user space.
        unsafe { save(area.0.as_mut_ptr(), &info) };
        set_xmm(&[0xEE; 256]);
        // SAFETY: the image just saved.
        unsafe { restore(area.0.as_ptr(), &info) };
        get_xmm(&mut got);
        assert_eq!(got, want, "{:?}", info.mechanism);

        init_area(&mut area.0[..info.size], &info);
        // SAFETY: a valid initial image.
        unsafe { restore(area.0.as_ptr(), &info) };
        get_xmm(&mut got);
        assert_eq!(got, [0u8; 256], "init image clears the vector registers");
        let mxcsr: u32;
        // SAFETY: reads MXCSR into a stack slot.
        unsafe {
            let mut m = 0u32;
            asm!("stmxcsr [{0}]", in(reg) &mut m, options(nostack, preserves_flags));
            mxcsr = m;
        }
        assert_eq!(mxcsr, MXCSR_INIT);
    }
}
