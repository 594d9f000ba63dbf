//! TSC-based time: the calibrated frequency and deadlines for every bounded wait.

use core::sync::atomic::{AtomicU64, Ordering};

/// Assumed before calibration: 3 GHz (only bounds early waits; errs on the long side
/// for slower TSCs, which is the safe side for a deadline).
static TSC_HZ: AtomicU64 = AtomicU64::new(3_000_000_000);

/// Sets the calibrated TSC frequency.
pub fn set_tsc_hz(hz: u64) {
    if hz > 0 {
        TSC_HZ.store(hz, Ordering::Relaxed);
    }
}

/// The TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// A point in TSC time after which a wait gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(u64);

impl Deadline {
    /// `us` microseconds from now.
    pub fn after_us(us: u64) -> Self {
        Deadline(
            exo_arch::tsc::rdtsc().saturating_add(exo_arch::tsc::ns_to_ticks(
                us.saturating_mul(1000),
                tsc_hz(),
            )),
        )
    }

    /// `ms` milliseconds from now.
    pub fn after_ms(ms: u64) -> Self {
        Self::after_us(ms.saturating_mul(1000))
    }

    /// At TSC value `tsc`.
    pub fn at_tsc(tsc: u64) -> Self {
        Deadline(tsc)
    }

    /// Its TSC value.
    pub fn tsc(&self) -> u64 {
        self.0
    }

    /// Microseconds left until it passes, rounded up (0 once it has).
    pub fn us_left(&self) -> u64 {
        let left = self.0.saturating_sub(exo_arch::tsc::rdtsc());
        exo_arch::tsc::ticks_to_ns(left, tsc_hz()).div_ceil(1000)
    }

    /// Has it passed?
    #[inline]
    pub fn passed(&self) -> bool {
        exo_arch::tsc::rdtsc() >= self.0
    }

    /// Spins until `done()` or the deadline, whichever comes first; returns `done()`.
    pub fn spin_until_or(self, done: impl Fn() -> bool) -> bool {
        while !done() {
            if self.passed() {
                return done();
            }
            core::hint::spin_loop();
        }
        true
    }

    /// Spins until the deadline.
    pub fn spin_until(self) {
        while !self.passed() {
            core::hint::spin_loop();
        }
    }
}

static APIC_TICKS_PER_MS: AtomicU64 = AtomicU64::new(1_000_000);

/// Sets the local APIC timer rate (ticks per second).
pub fn set_apic_timer_hz(hz: u64) {
    if hz >= 1000 {
        APIC_TICKS_PER_MS.store(hz / 1000, Ordering::Relaxed);
    }
}

/// Local APIC timer ticks in one millisecond (for one-shot wake-ups).
pub fn apic_ticks_per_ms() -> u32 {
    APIC_TICKS_PER_MS
        .load(Ordering::Relaxed)
        .min(u64::from(u32::MAX)) as u32
}

/// TSC ticks to microseconds.
pub fn ticks_to_us(t: u64) -> u64 {
    exo_arch::tsc::ticks_to_ns(t, tsc_hz()) / 1000
}
