//! FPU/SIMD state: what a save area needs on this CPU (size, alignment, instruction, from
//! CPUID), saving and restoring it, a valid initial image, and the CR0.TS primitives for lazy
//! switching. Mechanism only: when to save (eager or lazy, per-CPU ownership) is the kernel's
//! policy.
//!
//! # Instruction choice
//!
//! [`FpuInfo::detect`] picks, best first:
//!
//! 1. [`Mechanism::XsaveOpt`] (`CPUID.(0xD,1):EAX[0]`): standard format, with both the *init*
//!    optimisation (components in their initial state are not written) and the *modified*
//!    optimisation (components not modified since the last `XRSTOR` from the same address on
//!    this CPU are not written). Kernel threads never touch SIMD (the target is soft-float),
//!    so for most switches the modified optimisation makes the save close to free.
//! 2. [`Mechanism::XsaveC`] (`EAX[1]`): compacted format, init optimisation only; the area is
//!    smaller when XCR0 has holes (e.g. AVX-512 without MPX). Used only if XSAVEOPT is absent
//!    (no known CPU has XSAVEC without XSAVEOPT, but the enumeration allows it).
//! 3. [`Mechanism::Xsave`]: standard format, every enabled component written.
//! 4. [`Mechanism::Fxsave`]: x87 + SSE only, when XSAVE is not enabled (CR4.OSXSAVE clear).
//!
//! `XSAVES`/`XRSTORS` (`EAX[3]`) would combine the compacted format with both optimisations,
//! but they are CPL-0 only (so they cannot be tested on the host), and their point is
//! supervisor state (PT, CET, HWP...) selected by the IA32_XSS MSR, which the kernel neither
//! enables nor switches; with XSS = 0 they buy nothing over XSAVEOPT but a smaller area on CPUs
//! with holes in XCR0. They are left out until the kernel manages IA32_XSS.
//!
//! Every mechanism restores with `XRSTOR` (or `FXRSTOR`), which reads the standard or compacted
//! format as the header's XCOMP_BV bit 63 says, with the full XCR0 as instruction mask.
//!
//! # Area format
//!
//! 64-byte aligned, [`FpuInfo::size`] bytes: the 512-byte legacy (FXSAVE) region, the 64-byte
//! XSAVE header at 512 (XSTATE_BV at 512, XCOMP_BV at 520, the rest reserved and zero), then the
//! extended components (AVX upper halves, ...) at [`FpuInfo::component_offset`].
//!
//! [`init_area`] writes the initial image in software (no register is touched, so it also
//! works with CR0.TS set or on another CPU): zero header (standard format) or
//! XCOMP_BV = bit 63 | XCR0 with XSTATE_BV = 0 (compacted), so `XRSTOR` puts every component
//! in its initial state, plus FCW = 0x037F and MXCSR = 0x1F80 in the legacy region (the
//! standard form of `XRSTOR`, and `FXRSTOR`, load MXCSR from memory even for an initial SSE
//! state). Restoring it gives what `FNINIT` plus a reset MXCSR give: zeroed vector registers,
//! empty x87 stack, all exceptions masked, round to nearest.
//!
//! # Rules for callers
//!
//! * [`FpuInfo::detect`] must run after XCR0 and CR4.OSXSAVE are final on the CPU (after
//!   [`crate::cpu::enable_features`]); every CPU must use the same XCR0.
//! * CR0.TS must be clear for [`save`]/[`restore`] (else #NM).
//! * XSAVEOPT's modified optimisation assumes the area is not written by software between a
//!   `restore` from it and the next `save` into it on the same CPU: do not [`init_area`] (or
//!   edit) an area whose state is currently loaded; save it first, or restore another area.
//! * Areas are per thread; two CPUs must never hold the same thread's state as live at once
//!   (lazy switching on SMP must save on the old CPU before the thread runs elsewhere).

use core::arch::asm;
use core::arch::x86_64::__cpuid_count;

/// Bytes of the legacy (FXSAVE) region, and of a whole FXSAVE area.
pub const LEGACY_SIZE: usize = 512;
/// Bytes of the XSAVE header that follows the legacy region.
pub const HEADER_SIZE: usize = 64;
/// Smallest XSAVE area: legacy region plus header (the extended region starts here).
pub const XSAVE_MIN_SIZE: usize = LEGACY_SIZE + HEADER_SIZE;
/// Alignment every save area needs (XSAVE requires 64, FXSAVE 16).
pub const AREA_ALIGN: usize = 64;
/// Offset of the x87 control word (FCW) in the legacy region.
pub const OFF_FCW: usize = 0;
/// Offset of MXCSR in the legacy region.
pub const OFF_MXCSR: usize = 24;
/// Offset of ST0/MM0 (16 bytes per register) in the legacy region.
pub const OFF_ST0: usize = 32;
/// Offset of XMM0 (16 bytes per register, XMM0..XMM15) in the legacy region.
pub const OFF_XMM0: usize = 160;
/// Offset of XSTATE_BV (components not in their initial state) in the header.
pub const OFF_XSTATE_BV: usize = LEGACY_SIZE;
/// Offset of XCOMP_BV (bit 63: compacted format; bits 62:0: components present).
pub const OFF_XCOMP_BV: usize = LEGACY_SIZE + 8;
/// XCOMP_BV bit 63: the area is in compacted format.
pub const XCOMP_BV_COMPACTED: u64 = 1 << 63;
/// The x87 control word after `FNINIT` (all exceptions masked, 64-bit precision, nearest).
pub const FCW_INIT: u16 = 0x037F;
/// MXCSR after reset (all exceptions masked, round to nearest).
pub const MXCSR_INIT: u32 = 0x1F80;
/// State component 0: x87.
pub const XFEATURE_X87: u64 = 1 << 0;
/// State component 1: SSE (XMM0-15, MXCSR).
pub const XFEATURE_SSE: u64 = 1 << 1;
/// State component 2: AVX (upper halves of YMM0-15).
pub const XFEATURE_AVX: u64 = 1 << 2;

/// Which instruction saves the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `FXSAVE64`/`FXRSTOR64`: x87 and SSE, 512 bytes.
    Fxsave,
    /// `XSAVE64`/`XRSTOR64`: standard format.
    Xsave,
    /// `XSAVEOPT64`/`XRSTOR64`: standard format, init and modified optimisations.
    XsaveOpt,
    /// `XSAVEC64`/`XRSTOR64`: compacted format, init optimisation.
    XsaveC,
}

impl Mechanism {
    /// Every mechanism, worst first.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Fxsave,
        Mechanism::Xsave,
        Mechanism::XsaveC,
        Mechanism::XsaveOpt,
    ];

    /// Does it write the compacted format?
    pub const fn is_compacted(self) -> bool {
        matches!(self, Mechanism::XsaveC)
    }

    /// The save instruction's name, lower case (for logs and bench rows).
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Fxsave => "fxsave",
            Mechanism::Xsave => "xsave",
            Mechanism::XsaveOpt => "xsaveopt",
            Mechanism::XsaveC => "xsavec",
        }
    }
}

/// What the CPU offers, from CPUID and XCR0 (nothing is changed by detecting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// CR4.OSXSAVE is set (CPUID.1:ECX[27]): the XSAVE family and XGETBV are usable.
    pub osxsave: bool,
    /// XSAVEOPT (CPUID.(0xD,1):EAX[0]).
    pub xsaveopt: bool,
    /// XSAVEC and the compacted form of XRSTOR (EAX[1]).
    pub xsavec: bool,
    /// XSAVES/XRSTORS and IA32_XSS (EAX[3]); reported, not used.
    pub xsaves: bool,
    /// XCR0 (0 when XSAVE is not enabled).
    pub xcr0: u64,
    /// Standard-format size for the components in XCR0 (CPUID.(0xD,0):EBX; 0 without XSAVE).
    pub standard_size: usize,
    /// Compacted-format size for exactly the components in XCR0, summed from the per-component
    /// sub-leaves (0 without XSAVEC).
    pub compacted_size: usize,
    /// CPUID.(0xD,1):EBX: compacted size for XCR0 | IA32_XSS (>= `compacted_size`).
    pub compacted_size_with_xss: usize,
    /// The restore leaks the x87 last-instruction and last-operand pointers ([`fxsave_leak`]).
    pub fxsave_leak: bool,
}

/// Does FXRSTOR/XRSTOR on this CPU leave FOP, FIP and FDP as they were unless the image has
/// an exception pending (FSW.ES)? AMD CPUs before Zen 2, which lack XSAVEERPTR
/// (CPUID.8000_0008:EBX[2], "the save and restore instructions always save and restore the
/// error pointers"): there a process read the pointers the last process to run x87 code
/// left (Linux's X86_BUG_FXSAVE_LEAK). From the vendor string (CPUID.0: EBX, EDX, ECX),
/// the highest extended leaf (CPUID.8000_0000:EAX) and CPUID.8000_0008:EBX.
pub fn fxsave_leak(vendor: &[u8; 12], max_ext_leaf: u32, ext8_ebx: u32) -> bool {
    let erptr = max_ext_leaf >= 0x8000_0008 && ext8_ebx & (1 << 2) != 0;
    (vendor == b"AuthenticAMD" || vendor == b"HygonGenuine") && !erptr
}

fn detect_fxsave_leak() -> bool {
    let v = __cpuid_count(0, 0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&v.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&v.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&v.ecx.to_le_bytes());
    let max_ext = __cpuid_count(0x8000_0000, 0).eax;
    let ebx = if max_ext >= 0x8000_0008 {
        __cpuid_count(0x8000_0008, 0).ebx
    } else {
        0
    };
    fxsave_leak(&vendor, max_ext, ebx)
}

fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called when CPUID reports CR4.OSXSAVE set, so XGETBV is enabled; reading
    // XCR0 has no side effect.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags));
    }
    u64::from(hi) << 32 | u64::from(lo)
}

/// Offset of extended component `i` in the compacted format whose XCOMP_BV is `xcr0`, or with
/// `i == 63` the end of the last component (the area size). SDM vol. 1 §13.4.3: components
/// follow each other from 576 in index order, each 64-aligned if CPUID.(0xD,i):ECX[1].
fn compacted_offset(xcr0: u64, i: u32) -> usize {
    let mut off = XSAVE_MIN_SIZE;
    for c in 2..=i.min(62) {
        if xcr0 & (1 << c) == 0 {
            continue;
        }
        let sub = __cpuid_count(0xD, c);
        if sub.ecx & 2 != 0 {
            off = off.next_multiple_of(64);
        }
        if c == i {
            return off;
        }
        off += sub.eax as usize;
    }
    off
}

impl Support {
    /// Reads CPUID leaves 1 and 0xD and XCR0.
    pub fn detect() -> Support {
        let osxsave = __cpuid_count(1, 0).ecx & (1 << 27) != 0;
        let fxsave_leak = detect_fxsave_leak();
        if !osxsave {
            return Support {
                osxsave,
                xsaveopt: false,
                xsavec: false,
                xsaves: false,
                xcr0: 0,
                standard_size: 0,
                compacted_size: 0,
                compacted_size_with_xss: 0,
                fxsave_leak,
            };
        }
        // Leaf 0xD exists whenever XSAVE does (OSXSAVE can only be set if it does).
        let d0 = __cpuid_count(0xD, 0);
        let d1 = __cpuid_count(0xD, 1);
        let xcr0 = xgetbv0();
        let xsavec = d1.eax & 2 != 0;
        Support {
            osxsave,
            xsaveopt: d1.eax & 1 != 0,
            xsavec,
            xsaves: d1.eax & 8 != 0,
            xcr0,
            standard_size: d0.ebx as usize,
            compacted_size: if xsavec {
                compacted_offset(xcr0, 63)
            } else {
                0
            },
            compacted_size_with_xss: if xsavec { d1.ebx as usize } else { 0 },
            fxsave_leak,
        }
    }

    /// Can `m` be used on this CPU?
    pub fn has(&self, m: Mechanism) -> bool {
        match m {
            // FXSR is architectural on x86_64 (CR4.OSFXSR is set by `cpu::enable_features`).
            Mechanism::Fxsave => true,
            Mechanism::Xsave => self.osxsave,
            Mechanism::XsaveOpt => self.osxsave && self.xsaveopt,
            Mechanism::XsaveC => self.osxsave && self.xsavec,
        }
    }

    /// The mechanism [`FpuInfo::detect`] picks (see the module documentation).
    pub fn best(&self) -> Mechanism {
        [Mechanism::XsaveOpt, Mechanism::XsaveC, Mechanism::Xsave]
            .into_iter()
            .find(|&m| self.has(m))
            .unwrap_or(Mechanism::Fxsave)
    }
}

/// What a save area needs on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuInfo {
    /// Bytes of one save area (512 for FXSAVE, >= 576 otherwise).
    pub size: usize,
    /// Alignment of a save area ([`AREA_ALIGN`]).
    pub align: usize,
    /// The save instruction.
    pub mechanism: Mechanism,
    /// Components saved and restored: XCR0 for the XSAVE family, x87 | SSE for FXSAVE.
    pub xcr0: u64,
    /// [`restore`] first sets FOP/FIP/FDP to known values ([`fxsave_leak`]).
    pub fxsave_leak: bool,
}

impl FpuInfo {
    /// The best mechanism on this CPU and its area size.
    pub fn detect() -> FpuInfo {
        let s = Support::detect();
        FpuInfo::from_support(&s, s.best()).unwrap_or(FpuInfo {
            fxsave_leak: s.fxsave_leak,
            ..FpuInfo::FXSAVE
        })
    }

    /// `m` on this CPU, if the CPU offers it (e.g. to compare mechanisms in benches).
    pub fn for_mechanism(m: Mechanism) -> Option<FpuInfo> {
        FpuInfo::from_support(&Support::detect(), m)
    }

    const FXSAVE: FpuInfo = FpuInfo {
        size: LEGACY_SIZE,
        align: AREA_ALIGN,
        mechanism: Mechanism::Fxsave,
        xcr0: XFEATURE_X87 | XFEATURE_SSE,
        fxsave_leak: false,
    };

    /// `m` with the sizes in `s`, if `s` offers it.
    pub fn from_support(s: &Support, m: Mechanism) -> Option<FpuInfo> {
        if !s.has(m) {
            return None;
        }
        let size = match m {
            Mechanism::Fxsave => {
                return Some(FpuInfo {
                    fxsave_leak: s.fxsave_leak,
                    ..FpuInfo::FXSAVE
                });
            }
            Mechanism::Xsave | Mechanism::XsaveOpt => s.standard_size,
            Mechanism::XsaveC => s.compacted_size,
        };
        Some(FpuInfo {
            size: size.max(XSAVE_MIN_SIZE),
            align: AREA_ALIGN,
            mechanism: m,
            xcr0: s.xcr0,
            fxsave_leak: s.fxsave_leak,
        })
    }

    /// The allocation layout of one area.
    pub fn layout(&self) -> core::alloc::Layout {
        core::alloc::Layout::from_size_align(self.size, self.align)
            .expect("CPUID sizes (KiB) and a power-of-two alignment make a valid layout")
    }

    /// Offset of extended state component `i` (>= 2, enabled in `xcr0`) in an area saved with
    /// this mechanism, or `None` (legacy components 0 and 1 are at fixed offsets, see
    /// [`OFF_ST0`]/[`OFF_XMM0`]; FXSAVE has no extended components).
    pub fn component_offset(&self, i: u32) -> Option<usize> {
        if !(2..63).contains(&i) || self.xcr0 & (1 << i) == 0 {
            return None;
        }
        match self.mechanism {
            Mechanism::Fxsave => None,
            Mechanism::Xsave | Mechanism::XsaveOpt => Some(__cpuid_count(0xD, i).ebx as usize),
            Mechanism::XsaveC => Some(compacted_offset(self.xcr0, i)),
        }
    }
}

/// Writes the initial image for `info` into `area[..info.size]` (see the module documentation):
/// restoring it leaves every component in its initial state, FCW 0x037F and MXCSR 0x1F80.
///
/// # Panics
/// When `area` is shorter than `info.size`.
pub fn init_area(area: &mut [u8], info: &FpuInfo) {
    assert!(
        area.len() >= info.size,
        "FPU area of {} bytes, {} needed",
        area.len(),
        info.size
    );
    let area = &mut area[..info.size];
    area.fill(0);
    area[OFF_FCW..OFF_FCW + 2].copy_from_slice(&FCW_INIT.to_le_bytes());
    area[OFF_MXCSR..OFF_MXCSR + 4].copy_from_slice(&MXCSR_INIT.to_le_bytes());
    if info.mechanism.is_compacted() {
        // XSTATE_BV stays 0 (every component initial); XCOMP_BV names the components the
        // area has room for, as XSAVEC itself writes it.
        let xcomp = XCOMP_BV_COMPACTED | info.xcr0;
        area[OFF_XCOMP_BV..OFF_XCOMP_BV + 8].copy_from_slice(&xcomp.to_le_bytes());
    }
}

/// Saves this CPU's FPU/SIMD state (the components in `info.xcr0`) into `area`.
///
/// # Safety
/// * `area` must be valid for writes of `info.size` bytes, 64-byte aligned, and not be
///   accessed by anyone else during the call.
/// * `info` must come from this module on this machine, with XCR0 unchanged since.
/// * CR0.TS must be clear (else #NM).
#[inline]
pub unsafe fn save(area: *mut u8, info: &FpuInfo) {
    debug_assert!((area as usize).is_multiple_of(AREA_ALIGN));
    let (lo, hi) = (info.xcr0 as u32, (info.xcr0 >> 32) as u32);
    // SAFETY: per the contract the area is writable, aligned and large enough for what the
    // instruction writes (`info.size` is CPUID's size for these components and format). The
    // instructions only read registers and write the area.
    unsafe {
        match info.mechanism {
            Mechanism::XsaveOpt => asm!("xsaveopt64 [{0}]", in(reg) area, in("eax") lo,
                                        in("edx") hi, options(nostack, preserves_flags)),
            Mechanism::XsaveC => asm!("xsavec64 [{0}]", in(reg) area, in("eax") lo,
                                      in("edx") hi, options(nostack, preserves_flags)),
            Mechanism::Xsave => asm!("xsave64 [{0}]", in(reg) area, in("eax") lo,
                                     in("edx") hi, options(nostack, preserves_flags)),
            Mechanism::Fxsave => {
                asm!("fxsave64 [{0}]", in(reg) area, options(nostack, preserves_flags))
            }
        }
    }
}

/// Emits `asm!` that replaces the FPU/SIMD registers. Where the compiler itself uses vector
/// registers (host builds) they are declared clobbered (via the SysV clobber set, which
/// covers xmm/ymm/zmm, k and x87 for the enabled target features); the soft-float kernel target
/// has none to declare.
macro_rules! asm_replacing_fpu_state {
    ($($args:tt)*) => {{
        #[cfg(target_feature = "sse")]
        asm!($($args)*, clobber_abi("sysv64"));
        #[cfg(not(target_feature = "sse"))]
        asm!($($args)*);
    }};
}

/// Loads the FPU/SIMD state (the components in `info.xcr0`) from `area`. MXCSR and the x87
/// control word are loaded too, so floating-point modes become the area's.
///
/// # Safety
/// * `area` must be readable for `info.size` bytes, 64-byte aligned, and hold an image made by
///   [`save`] or [`init_area`] with an `info` of the same mechanism and XCR0 (a malformed
///   header or MXCSR raises #GP).
/// * `info` must come from this module on this machine, with XCR0 unchanged since.
/// * CR0.TS must be clear (else #NM).
#[inline]
pub unsafe fn restore(area: *const u8, info: &FpuInfo) {
    debug_assert!((area as usize).is_multiple_of(AREA_ALIGN));
    if info.fxsave_leak {
        // SAFETY: TS is clear (the contract).
        unsafe { clear_error_pointers() };
    }
    let (lo, hi) = (info.xcr0 as u32, (info.xcr0 >> 32) as u32);
    // SAFETY: per the contract the area is readable and holds a valid image for this format;
    // the instructions only read it and replace FPU/SIMD registers, which the macro declares
    // clobbered wherever the compiler could be using them.
    unsafe {
        match info.mechanism {
            Mechanism::Fxsave => asm_replacing_fpu_state!(
                "fxrstor64 [{0}]", in(reg) area, options(nostack, preserves_flags, readonly)
            ),
            Mechanism::Xsave | Mechanism::XsaveOpt | Mechanism::XsaveC => {
                asm_replacing_fpu_state!(
                    "xrstor64 [{0}]", in(reg) area, in("eax") lo, in("edx") hi,
                    options(nostack, preserves_flags, readonly)
                )
            }
        }
    }
}

/// Sets FOP, FIP and FDP to values of no thread's (Linux's sequence, for
/// [`fxsave_leak`] CPUs, where the restore that follows leaves them unless its image has an
/// exception pending): exceptions cleared (so `fild` raises none, and none is left pending),
/// every register tagged empty (so the push cannot overflow), then an x87 load of a
/// constant. The restore then replaces every register this touched. Until 2026-12-06 the
/// pointers of the last x87 instruction leaked from one thread to the next there (found by
/// review).
///
/// # Safety
/// CR0.TS must be clear (else #NM).
#[cold]
#[inline(never)]
unsafe fn clear_error_pointers() {
    static ZERO: i32 = 0;
    // SAFETY: `ZERO` is a readable 4-byte static; the instructions only change x87 state,
    // which the caller's restore replaces and the macro declares clobbered.
    unsafe {
        asm_replacing_fpu_state!(
            "fnclex", "emms", "fild dword ptr [{0}]", in(reg) &raw const ZERO,
            options(nostack, preserves_flags, readonly)
        )
    }
}

/// Sets CR0.TS: the next FPU/SIMD instruction on this CPU raises #NM (vector 7). Ring 0 only.
#[cfg(target_os = "none")]
#[inline]
pub fn set_ts() {
    // SAFETY: read-modify-write of CR0 setting only TS, which makes FPU/SIMD instructions trap
    // and changes nothing about memory; the kernel runs at CPL 0.
    unsafe {
        asm!("mov {t}, cr0", "or {t}, 8", "mov cr0, {t}", t = out(reg) _,
             options(nomem, nostack, preserves_flags));
    }
}

/// Clears CR0.TS (`CLTS`): FPU/SIMD instructions run again. Ring 0 only.
#[cfg(target_os = "none")]
#[inline]
pub fn clts() {
    // SAFETY: CLTS only clears CR0.TS; the kernel runs at CPL 0.
    unsafe { asm!("clts", options(nomem, nostack, preserves_flags)) };
}

/// Is CR0.TS set on this CPU? Ring 0 only.
#[cfg(target_os = "none")]
#[inline]
pub fn ts_is_set() -> bool {
    let cr0: u64;
    // SAFETY: reading CR0 has no side effect; the kernel runs at CPL 0.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags)) };
    cr0 & 8 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fxsave_leak_is_amd_without_xsaveerptr() {
        let (amd, intel, hygon) = (b"AuthenticAMD", b"GenuineIntel", b"HygonGenuine");
        assert!(fxsave_leak(amd, 0x8000_0008, 0), "pre-Zen 2: no XSAVEERPTR");
        assert!(
            fxsave_leak(amd, 0x8000_0008, !(1 << 2)),
            "other EBX bits say nothing"
        );
        assert!(
            fxsave_leak(amd, 0x8000_0001, 1 << 2),
            "no leaf 8: no XSAVEERPTR"
        );
        assert!(!fxsave_leak(amd, 0x8000_0021, 1 << 2), "Zen 2 on");
        assert!(
            !fxsave_leak(intel, 0x8000_0008, 0),
            "Intel saves the pointers always"
        );
        assert!(fxsave_leak(hygon, 0x8000_0008, 0), "Hygon: Zen 1");
        assert!(!fxsave_leak(hygon, 0x8000_0008, 1 << 2));
    }

    /// Vector registers 0-15 (32 bytes each; only the low 16 are used without AVX), MXCSR
    /// and the x87 control word, laid out for the asm below.
    #[repr(C, align(64))]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Regs {
        v: [[u8; 32]; 16],
        mxcsr: u32,
        fcw: u16,
    }
    const _: () = assert!(core::mem::offset_of!(Regs, mxcsr) == 512);
    const _: () = assert!(core::mem::offset_of!(Regs, fcw) == 516);

    impl Regs {
        const INIT: Regs = Regs {
            v: [[0; 32]; 16],
            mxcsr: MXCSR_INIT,
            fcw: FCW_INIT,
        };

        /// Distinct non-zero bytes everywhere, non-default rounding modes.
        fn pattern(seed: u8) -> Regs {
            let mut r = Regs::INIT;
            for (k, reg) in r.v.iter_mut().enumerate() {
                for (b, byte) in reg.iter_mut().enumerate() {
                    *byte = (seed.wrapping_mul(37) ^ (k * 32 + b) as u8).wrapping_add(seed) | 1;
                }
            }
            // Round down or up (RC), 53-bit or 24-bit x87 precision: all legal, none initial.
            r.mxcsr = MXCSR_INIT | if seed & 1 == 0 { 0x2000 } else { 0x4000 };
            r.fcw = if seed & 1 == 0 { 0x027F } else { 0x007F };
            r
        }

        /// Equal as far as `wide` (the upper halves) goes.
        fn same(&self, other: &Regs, wide: bool) -> bool {
            let n = if wide { 32 } else { 16 };
            self.mxcsr == other.mxcsr
                && self.fcw == other.fcw
                && self.v.iter().zip(&other.v).all(|(a, b)| a[..n] == b[..n])
        }
    }

    fn host_avx() -> bool {
        Support::detect().xcr0 & XFEATURE_AVX != 0
    }

    /// Puts `r` into the registers. Declared as clobbering them (they are the output, kept
    /// for the `save` under test; nothing in between uses vector registers).
    fn load(r: &Regs, avx: bool) {
        let p = r as *const Regs as *const u8;
        if avx {
            // SAFETY: reads 518 bytes of `r`; AVX is enabled in XCR0; MXCSR and FCW values
            // from `Regs::pattern`/`INIT` are legal.
            unsafe {
                asm!(
                    "vmovdqu ymm0, [{p}]", "vmovdqu ymm1, [{p} + 32]",
                    "vmovdqu ymm2, [{p} + 64]", "vmovdqu ymm3, [{p} + 96]",
                    "vmovdqu ymm4, [{p} + 128]", "vmovdqu ymm5, [{p} + 160]",
                    "vmovdqu ymm6, [{p} + 192]", "vmovdqu ymm7, [{p} + 224]",
                    "vmovdqu ymm8, [{p} + 256]", "vmovdqu ymm9, [{p} + 288]",
                    "vmovdqu ymm10, [{p} + 320]", "vmovdqu ymm11, [{p} + 352]",
                    "vmovdqu ymm12, [{p} + 384]", "vmovdqu ymm13, [{p} + 416]",
                    "vmovdqu ymm14, [{p} + 448]", "vmovdqu ymm15, [{p} + 480]",
                    "ldmxcsr [{p} + 512]", "fldcw [{p} + 516]",
                    p = in(reg) p, clobber_abi("sysv64"),
                    options(nostack, readonly, preserves_flags)
                );
            }
        } else {
            // SAFETY: as above, SSE only.
            unsafe {
                asm!(
                    "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 32]",
                    "movdqu xmm2, [{p} + 64]", "movdqu xmm3, [{p} + 96]",
                    "movdqu xmm4, [{p} + 128]", "movdqu xmm5, [{p} + 160]",
                    "movdqu xmm6, [{p} + 192]", "movdqu xmm7, [{p} + 224]",
                    "movdqu xmm8, [{p} + 256]", "movdqu xmm9, [{p} + 288]",
                    "movdqu xmm10, [{p} + 320]", "movdqu xmm11, [{p} + 352]",
                    "movdqu xmm12, [{p} + 384]", "movdqu xmm13, [{p} + 416]",
                    "movdqu xmm14, [{p} + 448]", "movdqu xmm15, [{p} + 480]",
                    "ldmxcsr [{p} + 512]", "fldcw [{p} + 516]",
                    p = in(reg) p, clobber_abi("sysv64"),
                    options(nostack, readonly, preserves_flags)
                );
            }
        }
    }

    /// Reads the registers.
    fn store(avx: bool) -> Regs {
        let mut r = core::mem::MaybeUninit::<Regs>::uninit();
        store_into(r.as_mut_ptr(), avx);
        // SAFETY: `store_into` wrote every field (the tail after `fcw` is padding).
        unsafe { r.assume_init() }
    }

    /// Writes every field of `*out` from the registers, with nothing but the asm in between (a
    /// Rust copy or initialisation of a `Regs` may itself go through vector registers).
    fn store_into(out: *mut Regs, avx: bool) {
        let p = out as *mut u8;
        if avx {
            // SAFETY: `out` is valid for a `Regs` (caller); writes bytes 0..518 of it; AVX is
            // enabled in XCR0.
            unsafe {
                asm!(
                    "vmovdqu [{p}], ymm0", "vmovdqu [{p} + 32], ymm1",
                    "vmovdqu [{p} + 64], ymm2", "vmovdqu [{p} + 96], ymm3",
                    "vmovdqu [{p} + 128], ymm4", "vmovdqu [{p} + 160], ymm5",
                    "vmovdqu [{p} + 192], ymm6", "vmovdqu [{p} + 224], ymm7",
                    "vmovdqu [{p} + 256], ymm8", "vmovdqu [{p} + 288], ymm9",
                    "vmovdqu [{p} + 320], ymm10", "vmovdqu [{p} + 352], ymm11",
                    "vmovdqu [{p} + 384], ymm12", "vmovdqu [{p} + 416], ymm13",
                    "vmovdqu [{p} + 448], ymm14", "vmovdqu [{p} + 480], ymm15",
                    "stmxcsr [{p} + 512]", "fnstcw [{p} + 516]",
                    p = in(reg) p, options(nostack, preserves_flags)
                );
            }
        } else {
            // SAFETY: as above, SSE only; the upper halves are zeroed with integer stores.
            unsafe {
                asm!(
                    "movdqu [{p}], xmm0", "movdqu [{p} + 32], xmm1",
                    "movdqu [{p} + 64], xmm2", "movdqu [{p} + 96], xmm3",
                    "movdqu [{p} + 128], xmm4", "movdqu [{p} + 160], xmm5",
                    "movdqu [{p} + 192], xmm6", "movdqu [{p} + 224], xmm7",
                    "movdqu [{p} + 256], xmm8", "movdqu [{p} + 288], xmm9",
                    "movdqu [{p} + 320], xmm10", "movdqu [{p} + 352], xmm11",
                    "movdqu [{p} + 384], xmm12", "movdqu [{p} + 416], xmm13",
                    "movdqu [{p} + 448], xmm14", "movdqu [{p} + 480], xmm15",
                    "stmxcsr [{p} + 512]", "fnstcw [{p} + 516]",
                    "mov {n:e}, 16",
                    "2:",
                    "mov qword ptr [{p} + 16], 0",
                    "mov qword ptr [{p} + 24], 0",
                    "add {p}, 32",
                    "dec {n:e}",
                    "jnz 2b",
                    p = inout(reg) p => _, n = out(reg) _, options(nostack)
                );
            }
        }
    }

    /// Back to the default modes and zeroed vector registers for the rest of the test thread.
    fn reset(avx: bool) {
        load(&Regs::INIT, avx);
    }

    /// A 64-aligned buffer with room for the largest area plus a canary tail.
    #[repr(C, align(64))]
    struct Buf([u8; 32768]);

    fn buf() -> Box<Buf> {
        let b = Box::new(Buf([0; 32768]));
        assert!(b.0.as_ptr().addr().is_multiple_of(64));
        b
    }

    fn infos() -> Vec<FpuInfo> {
        let v: Vec<FpuInfo> = Mechanism::ALL
            .into_iter()
            .filter_map(FpuInfo::for_mechanism)
            .collect();
        assert!(v.iter().any(|i| i.mechanism == Mechanism::Fxsave));
        v
    }

    fn u64_at(a: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(a[off..off + 8].try_into().expect("8 bytes"))
    }

    #[test]
    fn detect_picks_best_and_sizes_are_consistent() {
        let s = Support::detect();
        let info = FpuInfo::detect();
        eprintln!("{s:?}\n{info:?}");
        assert_eq!(info.mechanism, s.best());
        assert_eq!(info.align, AREA_ALIGN);
        assert_eq!(info.xcr0 & 0b11, 0b11, "x87 and SSE are always saved");
        assert_eq!(info.layout().align(), 64);
        assert_eq!(info.layout().size(), info.size);
        if !s.osxsave {
            assert_eq!(
                info,
                FpuInfo::for_mechanism(Mechanism::Fxsave).expect("fxsave")
            );
            return;
        }
        assert_eq!(info.xcr0, s.xcr0);
        assert!(info.size >= XSAVE_MIN_SIZE);
        let d0 = __cpuid_count(0xD, 0);
        assert!(s.standard_size >= XSAVE_MIN_SIZE);
        assert!(
            d0.ecx as usize >= s.standard_size,
            "max for all components >= enabled"
        );
        if s.xsavec {
            assert!(s.compacted_size >= XSAVE_MIN_SIZE);
            assert!(
                s.compacted_size <= s.standard_size,
                "compaction never grows the area"
            );
            assert!(s.compacted_size <= s.compacted_size_with_xss);
        }
        for info in infos() {
            match info.mechanism {
                Mechanism::Fxsave => {
                    assert_eq!((info.size, info.xcr0), (LEGACY_SIZE, 0b11));
                    assert_eq!(info.component_offset(2), None);
                }
                Mechanism::Xsave | Mechanism::XsaveOpt => {
                    assert_eq!(info.size, s.standard_size)
                }
                Mechanism::XsaveC => assert_eq!(info.size, s.compacted_size),
            }
            if info.mechanism != Mechanism::Fxsave && s.xcr0 & XFEATURE_AVX != 0 {
                // AVX is the first extended component in both formats, 256 bytes.
                assert_eq!(info.component_offset(2), Some(XSAVE_MIN_SIZE));
                assert_eq!(__cpuid_count(0xD, 2).eax, 256);
            }
            assert_eq!(info.component_offset(0), None);
            assert_eq!(info.component_offset(63), None);
        }
    }

    #[test]
    fn save_clobber_restore_roundtrip_every_mechanism() {
        let avx = host_avx();
        // Each with and without the error-pointer reset (`fxsave_leak`), whatever this host
        // is: the reset must leave nothing of its own once the restore ran.
        let with_and_without = infos().into_iter().flat_map(|i| {
            [
                i,
                FpuInfo {
                    fxsave_leak: !i.fxsave_leak,
                    ..i
                },
            ]
        });
        for info in with_and_without {
            let wide = avx && info.xcr0 & XFEATURE_AVX != 0;
            let mut area = buf();
            init_area(&mut area.0, &info);
            for round in 0..50u8 {
                let (want, other) = (Regs::pattern(round), Regs::pattern(round ^ 0xFF));
                load(&want, avx);
                // SAFETY: a 64-aligned buffer larger than `info.size`; TS is clear in user
                // space; `info` is from this machine.
                unsafe { save(area.0.as_mut_ptr(), &info) };
                load(&other, avx);
                // SAFETY: the image just saved, same `info`.
                unsafe { restore(area.0.as_ptr(), &info) };
                let got = store(avx);
                reset(avx);
                assert!(
                    got.same(&want, wide),
                    "{:?} round {round}: {got:?} != {want:?}",
                    info.mechanism
                );
            }
        }
    }

    #[test]
    fn saved_image_has_documented_layout_and_stays_in_size() {
        let avx = host_avx();
        for info in infos() {
            let wide = avx && info.xcr0 & XFEATURE_AVX != 0;
            let mut area = buf();
            area.0.fill(0xA5);
            init_area(&mut area.0, &info);
            let want = Regs::pattern(7);
            load(&want, avx);
            // SAFETY: as in the roundtrip test.
            unsafe { save(area.0.as_mut_ptr(), &info) };
            reset(avx);
            let a = &area.0;
            assert!(
                a[info.size..].iter().all(|&b| b == 0xA5),
                "{:?} wrote past {} bytes",
                info.mechanism,
                info.size
            );
            assert_eq!(a[OFF_FCW..OFF_FCW + 2], want.fcw.to_le_bytes());
            assert_eq!(a[OFF_MXCSR..OFF_MXCSR + 4], want.mxcsr.to_le_bytes());
            for k in 0..16 {
                let x = OFF_XMM0 + 16 * k;
                assert_eq!(a[x..x + 16], want.v[k][..16], "xmm{k}");
            }
            if info.mechanism == Mechanism::Fxsave {
                continue;
            }
            let xstate = u64_at(a, OFF_XSTATE_BV);
            let xcomp = u64_at(a, OFF_XCOMP_BV);
            assert_eq!(xstate & !info.xcr0, 0, "XSTATE_BV within XCR0");
            assert_ne!(xstate & XFEATURE_SSE, 0, "non-initial SSE state was saved");
            if info.mechanism.is_compacted() {
                assert_eq!(xcomp, XCOMP_BV_COMPACTED | info.xcr0);
            } else {
                assert_eq!(xcomp, 0);
            }
            if wide {
                assert_ne!(xstate & XFEATURE_AVX, 0);
                let hi = info.component_offset(2).expect("AVX enabled");
                for k in 0..16 {
                    let y = hi + 16 * k;
                    assert_eq!(a[y..y + 16], want.v[k][16..], "ymm{k} upper half");
                }
            }
        }
    }

    #[test]
    fn init_image_restores_initial_state() {
        let avx = host_avx();
        for info in infos() {
            let wide = avx && info.xcr0 & XFEATURE_AVX != 0;
            let mut area = buf();
            area.0.fill(0xFF);
            init_area(&mut area.0, &info);
            load(&Regs::pattern(3), avx);
            // SAFETY: a valid initial image for `info` in a 64-aligned buffer.
            unsafe { restore(area.0.as_ptr(), &info) };
            let got = store(avx);
            reset(avx);
            let mut want = Regs::INIT;
            if !wide {
                // FXRSTOR leaves the upper halves alone: compare the low ones only.
                want.v = got.v.map(|r| {
                    let mut z = r;
                    z[..16].fill(0);
                    z
                });
            }
            assert!(
                got.same(&want, wide),
                "{:?}: {got:?} is not the initial state",
                info.mechanism
            );
        }
    }

    /// Two "threads" alternate on the CPU as in eager switching: restore, check, sometimes
    /// modify, save. Exercises XSAVEOPT's modified optimisation (unmodified components are not
    /// written) and XSAVEC's init optimisation across areas.
    #[test]
    fn alternating_areas_keep_their_own_state() {
        let avx = host_avx();
        for info in infos() {
            let wide = avx && info.xcr0 & XFEATURE_AVX != 0;
            let mut areas = [buf(), buf()];
            let mut expect = [Regs::INIT, Regs::INIT];
            for a in areas.iter_mut() {
                init_area(&mut a.0, &info);
            }
            // Between `restore` and `save` the registers are the thread's: only asm and integer
            // code run there; checks come after the save.
            let mut got = Regs::INIT;
            for step in 0..2000u32 {
                let t = (step % 2) as usize;
                let modify = step % 3 == 0;
                let next = Regs::pattern(step as u8);
                // SAFETY: each area holds a valid image for `info` (initial or saved).
                unsafe { restore(areas[t].0.as_ptr(), &info) };
                store_into(&mut got, avx);
                if modify {
                    load(&next, avx);
                }
                // SAFETY: as above.
                unsafe { save(areas[t].0.as_mut_ptr(), &info) };
                if !got.same(&expect[t], wide) {
                    reset(avx);
                    panic!("{:?} step {step}: {got:?}", info.mechanism);
                }
                if modify {
                    expect[t] = next;
                }
            }
            reset(avx);
        }
    }

    #[test]
    #[should_panic(expected = "needed")]
    fn init_area_rejects_a_short_area() {
        let info = FpuInfo::detect();
        let mut small = vec![0u8; info.size - 1];
        init_area(&mut small, &info);
    }
}
