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

    /// Whether a run detected as `self` may report itself as `requested` (the `exo.mode=`
    /// option): only the same mode, or one that claims less about its ticks: `tcg` (emulated
    /// time, nothing quantitative) from any mode, `kvm-trapped` (KVM, ticks not cycles) from
    /// `kvm`. Never `kvm` or `native` (real cycles) nor `icount` (exact instructions) unless
    /// that is what was detected: the report would take the ticks for what they are not.
    /// Until 2026-12-06 any override was taken, and `exo.mode=kvm` under TCG had the report
    /// mark targets achieved from emulated ticks (found by review).
    pub const fn may_report_as(self, requested: Mode) -> bool {
        self as u8 == requested as u8
            || matches!(
                (self, requested),
                (_, Mode::Tcg) | (Mode::Kvm, Mode::KvmTrapped)
            )
    }

    /// The mode a run reports: `requested` when the `detected` mode [may report as
    /// it](Mode::may_report_as), else `detected`; `Err(detected)` when a request was refused.
    pub const fn resolve(detected: Mode, requested: Option<Mode>) -> Result<Mode, Mode> {
        match requested {
            None => Ok(detected),
            Some(m) if detected.may_report_as(m) => Ok(m),
            Some(_) => Err(detected),
        }
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

    /// `exo.mode=` may only claim less than what was detected: every (detected, requested)
    /// pair, with the reason each refusal matters.
    #[test]
    fn an_override_never_claims_more_than_was_detected() {
        use Mode::*;
        let allowed = [
            (Tcg, Tcg),
            (Icount, Icount),
            (Icount, Tcg),
            (Kvm, Kvm),
            (Kvm, KvmTrapped),
            (Kvm, Tcg),
            (KvmTrapped, KvmTrapped),
            (KvmTrapped, Tcg),
            (Native, Native),
            (Native, Tcg),
        ];
        for d in Mode::ALL {
            for r in Mode::ALL {
                assert_eq!(
                    d.may_report_as(r),
                    allowed.contains(&(d, r)),
                    "detected {d}, exo.mode={r}"
                );
            }
        }
        // TCG ticks reported as real cycles would mark targets achieved.
        assert_eq!(Mode::resolve(Tcg, Some(Kvm)), Err(Tcg));
        // An EXO_KVM_FORCE run (rdtsc traps) never reports kvm.
        assert_eq!(Mode::resolve(KvmTrapped, Some(Kvm)), Err(KvmTrapped));
        // TCG ticks are not instruction counts (the icount gate would judge them).
        assert_eq!(Mode::resolve(Tcg, Some(Icount)), Err(Tcg));
        assert_eq!(Mode::resolve(Tcg, Some(KvmTrapped)), Err(Tcg));
        assert_eq!(Mode::resolve(Icount, Some(Native)), Err(Icount));
        assert_eq!(Mode::resolve(Kvm, Some(Tcg)), Ok(Tcg));
        assert_eq!(Mode::resolve(Kvm, Some(KvmTrapped)), Ok(KvmTrapped));
        assert_eq!(Mode::resolve(Icount, None), Ok(Icount));
    }
}
