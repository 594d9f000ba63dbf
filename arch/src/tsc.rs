//! The time-stamp counter: serialized reads, frequency discovery and calibration, and the
//! pure arithmetic of cross-CPU offset estimation (host-tested).

use core::arch::x86_64::{_mm_lfence, _rdtsc};

/// Plain `rdtsc` (may be reordered with surrounding instructions).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc is available on every x86_64 CPU and CR4.TSD is never set by Exo-OS.
    unsafe { _rdtsc() }
}

/// `lfence; rdtsc; lfence`: earlier instructions have completed before the read and later
/// ones start after it. The timing primitive of the bench harness.
#[inline(always)]
pub fn rdtsc_precise() -> u64 {
    // SAFETY: lfence and rdtsc have no memory effects; see `rdtsc`.
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
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

/// Measures the TSC against the PIT over about `ms` milliseconds. Uses channel 0 as a free
/// running down-counter read back with latch commands (no speaker gate on port 0x61 is
/// needed, which microvm lacks). Returns `None` when the counter does not move (no PIT) or
/// the result is implausible; every loop is bounded by a TSC budget, so boot cannot hang.
pub fn calibrate_with_pit(ms: u64) -> Option<u64> {
    use crate::port::{inb, outb};
    let want = PIT_HZ * ms / 1000;
    // SAFETY: ports 0x40/0x43 are PIT channel 0 and its mode register, owned by the BSP at
    // boot; IRQ0 is masked at both the PIC and the (unprogrammed) I/O APIC, so the counter
    // running raises no interrupt.
    unsafe {
        let read = || {
            outb(0x43, 0x00); // latch channel 0
            let lo = inb(0x40);
            let hi = inb(0x40);
            u16::from_le_bytes([lo, hi])
        };
        outb(0x43, 0b0011_0100); // channel 0, lobyte/hibyte, mode 2 (rate generator), binary
        outb(0x40, 0xFF);
        outb(0x40, 0xFF);
        let budget = 1u64 << 34;
        let t_start = rdtsc();
        // Wait for the first change so both ends of the window sit on a counter edge.
        let first = read();
        let mut prev = first;
        while prev == first {
            if rdtsc().wrapping_sub(t_start) > budget {
                return None;
            }
            prev = read();
        }
        let start = rdtsc_precise();
        let mut elapsed: u64 = 0;
        while elapsed < want {
            let now = read();
            // Down-counter with reload 0x10000: the distance handles the wrap.
            elapsed += u64::from(prev.wrapping_sub(now));
            prev = now;
            if rdtsc().wrapping_sub(start) > budget {
                return None;
            }
        }
        let ticks = rdtsc_precise().wrapping_sub(start);
        let hz = (u128::from(ticks) * u128::from(PIT_HZ) / u128::from(elapsed)) as u64;
        // Below 100 MHz no x86_64 TSC runs: a PIT that is not really there.
        if hz < 100_000_000 { None } else { Some(hz) }
    }
}

/// Converts TSC ticks to nanoseconds at `hz` without overflow for any u64 input.
pub const fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000_000) / hz as u128) as u64
}

/// Converts nanoseconds to TSC ticks at `hz`, saturating.
pub const fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    let t = (ns as u128 * hz as u128) / 1_000_000_000;
    if t > u64::MAX as u128 {
        u64::MAX
    } else {
        t as u64
    }
}

/// One exchange of a cross-CPU offset probe: the reference CPU reads `t1`, the other CPU
/// answers with its own read `t2`, the reference reads `t3` when the answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSample {
    /// Reference CPU, before sending.
    pub t1: u64,
    /// Remote CPU, on receipt.
    pub t2: u64,
    /// Reference CPU, on the answer.
    pub t3: u64,
}

/// Estimated offset of a CPU's TSC to the reference CPU: `remote = reference + offset`,
/// true offset within `offset ± uncertainty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TscOffset {
    /// Remote minus reference, in ticks.
    pub offset: i64,
    /// Half the round trip of the best exchange, in ticks.
    pub uncertainty: u64,
}

impl TscOffset {
    /// The reference (boot) CPU itself: offset 0, exact.
    pub const BOOT: TscOffset = TscOffset {
        offset: 0,
        uncertainty: 0,
    };

    /// Offset from one exchange (Cristian's algorithm): the reference reads `t0`, the remote
    /// CPU answers with its TSC `t_remote`, the reference reads `t2` on receipt. The remote
    /// read happened inside `[t0, t2]`, so the offset is `t_remote - (t0 + t2) / 2` within
    /// `± (t2 - t0) / 2` (rounded up). A negative round trip counts as 0.
    pub fn from_exchange(t0: u64, t_remote: u64, t2: u64) -> TscOffset {
        let rtt = t2.saturating_sub(t0);
        let mid = i128::from(t0) + i128::from(rtt / 2);
        let off =
            (i128::from(t_remote) - mid).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        TscOffset {
            offset: off,
            uncertainty: rtt.div_ceil(2),
        }
    }

    /// `tsc` read on the CPU with this offset, expressed on the reference CPU's time line.
    pub fn to_boot(self, tsc: u64) -> i128 {
        i128::from(tsc) - i128::from(self.offset)
    }
}

impl SyncSample {
    /// The offset this exchange implies (see [`TscOffset::from_exchange`]); `None` if
    /// `t3 < t1` (a broken sample).
    pub fn offset(&self) -> Option<TscOffset> {
        (self.t3 >= self.t1).then(|| TscOffset::from_exchange(self.t1, self.t2, self.t3))
    }
}

/// Best estimate over many exchanges: the intersection of every sample's interval, which is
/// never wider than the tightest single sample. Returns `None` for no valid sample, and flags
/// an empty intersection (inconsistent samples: a TSC that moved during the probe) by falling
/// back to the tightest sample with its own bound.
pub fn estimate_offset(samples: &[SyncSample]) -> Option<TscOffset> {
    let mut lo = i128::MIN;
    let mut hi = i128::MAX;
    let mut best: Option<TscOffset> = None;
    for s in samples {
        let Some(o) = s.offset() else { continue };
        lo = lo.max(s.t2 as i128 - s.t3 as i128);
        hi = hi.min(s.t2 as i128 - s.t1 as i128);
        if best.is_none_or(|b| o.uncertainty < b.uncertainty) {
            best = Some(o);
        }
    }
    let best = best?;
    if lo > hi {
        return Some(best);
    }
    let mid = lo + (hi - lo) / 2;
    let half = ((hi - lo) as u128).div_ceil(2) as u64;
    Some(TscOffset {
        offset: mid.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        uncertainty: half,
    })
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
    }

    #[test]
    fn single_sample_offset_and_bound() {
        // Remote is ahead by 1000; the message takes 50 each way.
        let s = SyncSample {
            t1: 10_000,
            t2: 10_000 + 50 + 1000,
            t3: 10_100,
        };
        let o = s.offset().unwrap();
        assert_eq!(
            o,
            TscOffset {
                offset: 1000,
                uncertainty: 50
            }
        );
        assert!(
            SyncSample {
                t1: 5,
                t2: 0,
                t3: 4
            }
            .offset()
            .is_none()
        );
    }

    #[test]
    fn negative_offset() {
        let s = SyncSample {
            t1: 1_000_000,
            t2: 999_000 + 40,
            t3: 1_000_080,
        };
        let o = s.offset().unwrap();
        assert_eq!(o.offset, -1000);
        assert_eq!(o.uncertainty, 40);
    }

    #[test]
    fn intersection_is_tighter_than_any_sample_and_contains_truth() {
        let truth: i64 = -12_345;
        // Asymmetric delays: the intersection narrows around the truth.
        let mk = |t1: u64, d_out: u64, d_back: u64| SyncSample {
            t1,
            t2: (t1 as i64 + d_out as i64 + truth) as u64,
            t3: t1 + d_out + d_back,
        };
        let samples = [
            mk(100_000, 10, 90),
            mk(200_000, 80, 20),
            mk(300_000, 30, 30),
        ];
        let est = estimate_offset(&samples).unwrap();
        let tightest = samples
            .iter()
            .filter_map(|s| s.offset())
            .map(|o| o.uncertainty)
            .min()
            .unwrap();
        assert!(est.uncertainty <= tightest);
        assert!((est.offset - truth).unsigned_abs() <= est.uncertainty);
    }

    #[test]
    fn inconsistent_samples_fall_back_to_tightest() {
        let a = SyncSample {
            t1: 0,
            t2: 1000,
            t3: 10,
        };
        let b = SyncSample {
            t1: 100,
            t2: 0,
            t3: 120,
        };
        let est = estimate_offset(&[a, b]).unwrap();
        assert_eq!(
            est,
            a.offset().unwrap(),
            "a has the tighter bound (5 vs 10)"
        );
        assert!(estimate_offset(&[]).is_none());
    }
}
