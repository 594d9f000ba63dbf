//! The time source abstraction: the crate never reads the TSC itself.

/// A monotonic tick source (the kernel's serialised `rdtsc`, a host counter, or a fake clock).
///
/// Every `FnMut() -> u64` is a `Clock`, so `&mut || rdtsc()` can be passed directly.
/// For meaningful short measurements the implementation should be serialising
/// (e.g. `lfence; rdtsc` or `rdtscp; lfence`), since the cost of an empty pair of calls is
/// measured and subtracted.
pub trait Clock {
    /// The current tick count.
    fn now(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Clock for F {
    #[inline(always)]
    fn now(&mut self) -> u64 {
        self()
    }
}
