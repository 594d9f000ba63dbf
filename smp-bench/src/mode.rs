//! How the numbers were produced, which decides how far they can be trusted.

use core::fmt;
use core::str::FromStr;

/// Execution mode of a benchmark run, the `<mode>` field of a `SUITE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// QEMU TCG (emulation): the TSC is not real cycles; only relative trends mean anything.
    Tcg,
    /// QEMU `-icount shift=0`: the TSC counts guest instructions; deterministic, not cycles.
    Icount,
    /// QEMU `-accel kvm -cpu host` on a real host: real cycles.
    Kvm,
    /// KVM where `rdtsc` traps (nested software virtualization, e.g. `kvm_pvm`): every read
    /// costs thousands of ticks, so the ticks are not cycles.
    KvmTrapped,
    /// Host runs of the `no_std` hot paths: real cycles, no kernel around them.
    Native,
}

impl Mode {
    /// Every mode, in the order above.
    pub const ALL: [Mode; 5] = [
        Mode::Tcg,
        Mode::Icount,
        Mode::Kvm,
        Mode::KvmTrapped,
        Mode::Native,
    ];

    /// The lowercase name used in `SUITE` lines and CSVs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Tcg => "tcg",
            Mode::Icount => "icount",
            Mode::Kvm => "kvm",
            Mode::KvmTrapped => "kvm-trapped",
            Mode::Native => "native",
        }
    }

    /// Parses a mode name (ASCII case-insensitive, surrounding whitespace ignored).
    pub fn parse(s: &str) -> Option<Mode> {
        let s = s.trim();
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// `true` for modes whose ticks are real CPU cycles (`kvm`, `native`): only these can
    /// show a target as achieved.
    pub const fn is_real_cycles(self) -> bool {
        matches!(self, Mode::Kvm | Mode::Native)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of `Mode::from_str`: the text is not one of `tcg`, `icount`, `kvm`, `kvm-trapped`,
/// `native`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseModeError;

impl fmt::Display for ParseModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mode must be one of tcg, icount, kvm, kvm-trapped, native")
    }
}

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::parse(s).ok_or(ParseModeError)
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn every_mode_round_trips_and_only_real_cycles_count() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
        }
        assert_eq!(Mode::parse(" KVM-Trapped "), Some(Mode::KvmTrapped));
        assert!(
            !Mode::KvmTrapped.is_real_cycles(),
            "a trapped rdtsc is not a cycle"
        );
        assert!(Mode::Kvm.is_real_cycles() && Mode::Native.is_real_cycles());
        assert!(!Mode::Tcg.is_real_cycles() && !Mode::Icount.is_real_cycles());
    }
}
