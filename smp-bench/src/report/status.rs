//! Status of a target in one run.

use std::fmt;

use super::{Measurement, Target};

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// No row for it in this run.
    Pending,
    /// Measured, but in an emulated mode (`tcg`, `icount`, unknown), or in a real-cycle
    /// mode without beating the baseline or meeting the target.
    Measuring,
    /// Real-cycle mode (`kvm`, `native`): beats the baseline, not yet the target.
    Improving,
    /// Real-cycle mode: meets the target.
    Achieved,
}

impl Status {
    /// Lowercase name as printed in the table.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Measuring => "measuring",
            Status::Improving => "improving",
            Status::Achieved => "achieved",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The status of `t` given its measurement (if any).
pub fn status(t: &Target, m: Option<&Measurement<'_>>) -> Status {
    let Some(m) = m else {
        return Status::Pending;
    };
    let (Some(mode), Some(cmp)) = (m.row.mode, t.comparator) else {
        return Status::Measuring;
    };
    if !mode.is_real_cycles() {
        Status::Measuring
    } else if t.target.is_some_and(|goal| cmp.meets(m.value, goal)) {
        Status::Achieved
    } else if t.baseline_value.is_some_and(|b| cmp.beats(m.value, b)) {
        Status::Improving
    } else {
        Status::Measuring
    }
}
