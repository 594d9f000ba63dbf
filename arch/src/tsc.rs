//! The time-stamp counter: serialized reads, frequency discovery and calibration, and the
//! pure arithmetic of cross-CPU offset estimation (host-tested).

use core::arch::x86_64::_rdtsc;

/// Plain `rdtsc` (may be reordered with surrounding instructions).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc is available on every x86_64 CPU and CR4.TSD is never set by Exo-OS.
    unsafe { _rdtsc() }
}

/// `lfence; rdtsc; lfence`: earlier instructions have completed before the read and later
/// ones start after it. The timing primitive of the bench harness.
///
/// The fences are inline `asm!`, not `_mm_lfence`: that intrinsic is an SSE2 function, which
/// the kernel target (no SSE in the kernel) cannot inline, so each fence was a call, and every
/// timed interval carried a call and a return of the instrument itself.
#[inline(always)]
pub fn rdtsc_precise() -> u64 {
    lfence();
    let t = rdtsc();
    lfence();
    t
}

/// `lfence`, also a compiler barrier (no `nomem`): memory accesses are not moved across it.
#[inline(always)]
fn lfence() {
    // SAFETY: lfence only orders instruction execution; it reads and writes nothing.
    unsafe { core::arch::asm!("lfence", options(nostack, preserves_flags)) };
}

/// Where the TSC frequency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreqSource {
    /// CPUID leaf 0x15 (crystal ratio), with 0x16 for the crystal when needed.
    Cpuid15,
    /// CPUID leaf 0x16 (base frequency in MHz).
    Cpuid16,
    /// Hypervisor timing leaf 0x4000_0010 (KVM/VMware convention).
    Hypervisor,
    /// Measured against the PIT.
    PitCalibrated,
    /// Measured against the ACPI PM timer (from the FADT).
    PmTimer,
    /// Measured against the HPET (from the ACPI HPET table).
    Hpet,
    /// Nothing worked; a nominal value is assumed.
    Assumed,
}

/// The frequency reported by CPUID, if any leaf gives it.
pub fn freq_from_cpuid() -> Option<(u64, FreqSource)> {
    let id = raw_cpuid::CpuId::new();
    if let Some(hz) = id.get_tsc_info().and_then(|t| t.tsc_frequency())
        && hz > 0
    {
        return Some((hz, FreqSource::Cpuid15));
    }
    if let Some(f) = id.get_processor_frequency_info() {
        let mhz = u64::from(f.processor_base_frequency());
        if mhz > 0 {
            return Some((mhz * 1_000_000, FreqSource::Cpuid16));
        }
    }
    if id.get_hypervisor_info().is_some() {
        // Leaf 0x4000_0010: EAX = TSC kHz, when the hypervisor's max leaf reaches it.
        let max = core::arch::x86_64::__cpuid(0x4000_0000).eax;
        if max >= 0x4000_0010 {
            let khz = core::arch::x86_64::__cpuid(0x4000_0010).eax;
            if khz > 0 {
                return Some((u64::from(khz) * 1000, FreqSource::Hypervisor));
            }
        }
    }
    None
}

const PIT_HZ: u64 = 1_193_182;

/// A reference clock the TSC is measured against: a free-running counter of `bits` bits
/// (wrapping), counting up at `hz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefClock {
    /// PIT channel 0 as a free-running 16-bit down-counter (ports 0x40/0x43).
    Pit,
    /// The ACPI PM timer at an I/O port (3.579545 MHz, 24 or 32 bits).
    PmTimerPort {
        /// I/O port of the counter register.
        port: u16,
        /// Counter width (24 or 32).
        bits: u32,
    },
    /// The ACPI PM timer at an MMIO address (a mapped virtual address: the kernel passes its
    /// direct-map address, uncached).
    PmTimerMmio {
        /// Physical address of the counter register.
        addr: u64,
        /// Counter width (24 or 32).
        bits: u32,
    },
    /// The HPET main counter at its MMIO base (a mapped virtual address, as above).
    Hpet {
        /// Physical base of the HPET register block.
        base: u64,
    },
}

/// Why a calibration against a reference clock failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalibrationError {
    /// The reference counter never moved (absent device).
    Stuck,
    /// The reference clock reports no usable frequency (HPET period 0 or absurd).
    BadFrequency,
    /// Two reads of the reference were too far apart to count its wraps (this vCPU was
    /// descheduled by a loaded host); the window is worthless, try again.
    Gap,
    /// The window did not complete within the TSC budget.
    Budget,
    /// The result is implausible (below 100 MHz: no x86_64 TSC runs that slowly).
    Implausible(u64),
}

impl core::fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CalibrationError::Stuck => write!(f, "the reference counter does not move"),
            CalibrationError::BadFrequency => {
                write!(f, "the reference reports no usable frequency")
            }
            CalibrationError::Gap => {
                write!(f, "reads of the reference too far apart (loaded host)")
            }
            CalibrationError::Budget => write!(f, "the window did not complete in time"),
            CalibrationError::Implausible(hz) => write!(f, "implausible result {hz} Hz"),
        }
    }
}

impl RefClock {
    /// The name printed in the boot log.
    pub const fn name(&self) -> &'static str {
        match self {
            RefClock::Pit => "PIT",
            RefClock::PmTimerPort { .. } | RefClock::PmTimerMmio { .. } => "ACPI PM timer",
            RefClock::Hpet { .. } => "HPET",
        }
    }

    /// The matching [`FreqSource`].
    pub const fn source(&self) -> FreqSource {
        match self {
            RefClock::Pit => FreqSource::PitCalibrated,
            RefClock::PmTimerPort { .. } | RefClock::PmTimerMmio { .. } => FreqSource::PmTimer,
            RefClock::Hpet { .. } => FreqSource::Hpet,
        }
    }

    /// Prepares the device and returns (counter frequency, width in bits, reader). The reader
    /// returns an up-counting value (the PIT's down-count is inverted).
    ///
    /// # Safety
    /// The device must be what the firmware tables say it is, at that address, and owned by
    /// the caller (boot, BSP only): the PIT is reprogrammed, the HPET counter enabled.
    unsafe fn open(self) -> Result<(u64, u32), CalibrationError> {
        use crate::port::outb;
        match self {
            RefClock::Pit => {
                // SAFETY: ports 0x40/0x43 are PIT channel 0 and its mode register, owned by the
                // BSP at boot; IRQ0 is masked at both the PIC and the (unprogrammed) I/O APIC.
                unsafe {
                    outb(0x43, 0b0011_0100); // channel 0, lobyte/hibyte, mode 2, binary
                    outb(0x40, 0xFF);
                    outb(0x40, 0xFF);
                }
                Ok((PIT_HZ, 16))
            }
            RefClock::PmTimerPort { bits, .. } | RefClock::PmTimerMmio { bits, .. } => {
                Ok((3_579_545, if bits == 32 { 32 } else { 24 }))
            }
            RefClock::Hpet { base } => {
                // SAFETY: per the contract, `base` is the HPET's mapped register block:
                // capabilities at +0 (period in femtoseconds in bits 63:32, 64-bit counter in
                // bit 13), general configuration at +0x10 (bit 0 starts the main counter).
                unsafe {
                    let caps = core::ptr::read_volatile(base as *const u64);
                    let period_fs = caps >> 32;
                    // The spec bounds the period to (0, 100 ns].
                    if period_fs == 0 || period_fs > 100_000_000 {
                        return Err(CalibrationError::BadFrequency);
                    }
                    let cfg = (base + 0x10) as *mut u64;
                    let c = core::ptr::read_volatile(cfg);
                    if c & 1 == 0 {
                        core::ptr::write_volatile(cfg, c | 1);
                    }
                    let bits = if caps & (1 << 13) != 0 { 64 } else { 32 };
                    Ok((1_000_000_000_000_000 / period_fs, bits))
                }
            }
        }
    }

    /// Reads the counter, counting up.
    ///
    /// # Safety
    /// As for [`RefClock::open`], which must have succeeded.
    unsafe fn read(self) -> u64 {
        use crate::port::{inb, inl, outb};
        // SAFETY: per the contract: the device's own registers.
        unsafe {
            match self {
                RefClock::Pit => {
                    outb(0x43, 0x00); // latch channel 0
                    let lo = inb(0x40);
                    let hi = inb(0x40);
                    u64::from(!u16::from_le_bytes([lo, hi]))
                }
                RefClock::PmTimerPort { port, .. } => u64::from(inl(port)),
                RefClock::PmTimerMmio { addr, .. } => {
                    u64::from(core::ptr::read_volatile(addr as *const u32))
                }
                RefClock::Hpet { base } => core::ptr::read_volatile((base + 0xF0) as *const u64),
            }
        }
    }

    /// Measures the TSC against this clock over about `ms` milliseconds, from one counter
    /// edge to another. A window in which two consecutive reads are more than a quarter of
    /// the counter's wrap apart is refused ([`CalibrationError::Gap`]): its wraps cannot be
    /// counted. Every loop is bounded by a TSC budget, so boot cannot hang.
    ///
    /// # Safety
    /// As for [`RefClock::open`].
    pub unsafe fn calibrate(self, ms: u64) -> Result<u64, CalibrationError> {
        // SAFETY: forwarded contract.
        let (hz, bits) = unsafe { self.open()? };
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let max_step = (mask >> 2).max(1);
        let want = hz * ms / 1000;
        let budget = 1u64 << 34;
        let t_start = rdtsc();
        // SAFETY: forwarded contract (as for every read below).
        let first = unsafe { self.read() } & mask;
        let mut prev = first;
        while prev == first {
            if rdtsc().wrapping_sub(t_start) > budget {
                return Err(CalibrationError::Stuck);
            }
            // SAFETY: forwarded contract.
            prev = unsafe { self.read() } & mask;
        }
        let start = rdtsc_precise();
        let mut elapsed: u64 = 0;
        while elapsed < want {
            // SAFETY: forwarded contract.
            let now = unsafe { self.read() } & mask;
            let step = now.wrapping_sub(prev) & mask;
            if step > max_step {
                return Err(CalibrationError::Gap);
            }
            elapsed += step;
            prev = now;
            if rdtsc().wrapping_sub(start) > budget {
                return Err(CalibrationError::Budget);
            }
        }
        let ticks = rdtsc_precise().wrapping_sub(start);
        let tsc_hz = (u128::from(ticks) * u128::from(hz) / u128::from(elapsed)) as u64;
        if tsc_hz < 100_000_000 {
            Err(CalibrationError::Implausible(tsc_hz))
        } else {
            Ok(tsc_hz)
        }
    }
}

/// Measures the TSC against the PIT over about `ms` milliseconds (see
/// [`RefClock::calibrate`]). Returns `None` when there is no PIT or the window failed.
pub fn calibrate_with_pit(ms: u64) -> Option<u64> {
    // SAFETY: the PIT at its fixed ports, owned by the BSP at boot (IRQ0 masked).
    unsafe { RefClock::Pit.calibrate(ms).ok() }
}

/// Is the TSC counting guest instructions (QEMU `-icount shift=0`)? Times a loop of four
/// instructions per iteration at two lengths, three times: under icount the difference is
/// exactly four ticks per extra iteration every time. Emulated time (TCG) varies from run to
/// run, and a real CPU runs such a loop in about one cycle per iteration (and its TSC does
/// not tick with the core clock anyway), so neither matches exactly three times.
pub fn counts_instructions() -> bool {
    (0..3).all(|_| {
        let short = timed_loop(1000);
        let long = timed_loop(3000);
        long.wrapping_sub(short) == 4 * 2000
    })
}

/// TSC ticks across `n` iterations of `nop; nop; dec; jnz` (plus a fixed prologue).
#[inline(never)]
fn timed_loop(n: u64) -> u64 {
    let delta: u64;
    // SAFETY: rdtsc and register arithmetic only; no memory is touched.
    unsafe {
        core::arch::asm!(
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov r8, rax",
            "2:",
            "nop",
            "nop",
            "dec rcx",
            "jnz 2b",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "sub rax, r8",
            inout("rcx") n.max(1) => _,
            out("rax") delta,
            out("rdx") _,
            out("r8") _,
            options(nomem, nostack),
        );
    }
    delta
}

/// Converts TSC ticks to nanoseconds at `hz`, saturating.
pub const fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    // Saturating: below 1 GHz a large count (a wrapped cross-CPU difference) has more
    // nanoseconds than a u64 holds; until 2026-12-05 they were truncated (found by review).
    saturate((ticks as u128 * 1_000_000_000) / hz as u128)
}

/// Converts nanoseconds to TSC ticks at `hz`, rounded up (a wait of `ns` never ends early),
/// saturating.
pub const fn ns_to_ticks_ceil(ns: u64, hz: u64) -> u64 {
    saturate((ns as u128 * hz as u128).div_ceil(1_000_000_000))
}

/// `x`, or `u64::MAX` if it does not fit.
const fn saturate(x: u128) -> u64 {
    if x > u64::MAX as u128 {
        u64::MAX
    } else {
        x as u64
    }
}

/// Converts nanoseconds to TSC ticks at `hz`, saturating.
pub const fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    saturate((ns as u128 * hz as u128) / 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_do_not_overflow() {
        assert_eq!(ticks_to_ns(3_000_000_000, 3_000_000_000), 1_000_000_000);
        assert_eq!(ns_to_ticks(1_000, 2_500_000_000), 2_500);
        assert_eq!(ticks_to_ns(u64::MAX, 1_000_000_000), u64::MAX);
        assert_eq!(ticks_to_ns(5, 0), 0);
        assert_eq!(ns_to_ticks(u64::MAX, u64::MAX), u64::MAX);
        // Below 1 GHz: saturates instead of truncating.
        assert_eq!(ticks_to_ns(u64::MAX, 500_000_000), u64::MAX);
        assert_eq!(ticks_to_ns(u64::MAX / 4, 500_000_000), u64::MAX / 4 * 2);
        // Rounded up: 999 ns at 2.4999 GHz is 2497.3 ticks.
        assert_eq!(ns_to_ticks_ceil(999, 2_499_900_000), 2498);
        assert_eq!(ns_to_ticks(999, 2_499_900_000), 2497);
        assert_eq!(ns_to_ticks_ceil(1_000, 2_500_000_000), 2_500);
        assert_eq!(ns_to_ticks_ceil(1, 1), 1);
        assert_eq!(ns_to_ticks_ceil(0, 3_000_000_000), 0);
        assert_eq!(ns_to_ticks_ceil(u64::MAX, u64::MAX), u64::MAX);
    }
}
