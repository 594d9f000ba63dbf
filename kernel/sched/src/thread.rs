//! Thread handles and priorities.

use core::fmt;

/// Handle of a thread: an index into the kernel's own TCB table.
///
/// The scheduler never dereferences it; a [`RunQueue<CAP>`](crate::RunQueue)
/// accepts handles whose index is below `CAP`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ThreadRef(pub u32);

impl ThreadRef {
    /// Makes a handle from a TCB-table index.
    #[inline]
    #[must_use]
    pub const fn new(index: u32) -> Self {
        Self(index)
    }

    /// The TCB-table index of this handle.
    #[inline]
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ThreadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "thread#{}", self.0)
    }
}

/// Scheduling priority: `0` (lowest, idle-like) ..= `63` (most urgent).
///
/// **Larger is more urgent**, so the highest non-empty level is the most
/// significant set bit of the run queue's bitmap (one `lzcnt`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Priority(u8);

/// Error of [`Priority::new`]: the value is not below [`Priority::LEVELS`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InvalidPriority(pub u8);

impl fmt::Display for InvalidPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority {} out of range 0..{}",
            self.0,
            Priority::LEVELS
        )
    }
}

impl core::error::Error for InvalidPriority {}

impl Priority {
    /// Number of priority levels (one bit each in a `u64` bitmap).
    pub const LEVELS: usize = 64;
    /// The lowest priority.
    pub const MIN: Self = Self(0);
    /// The highest (most urgent) priority.
    pub const MAX: Self = Self(Self::LEVELS as u8 - 1);

    /// Checked constructor.
    ///
    /// # Errors
    /// [`InvalidPriority`] if `level >= 64`.
    #[inline]
    pub const fn new(level: u8) -> Result<Self, InvalidPriority> {
        if (level as usize) < Self::LEVELS {
            Ok(Self(level))
        } else {
            Err(InvalidPriority(level))
        }
    }

    /// The level, `0..64`.
    #[inline]
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Priority {
    type Error = InvalidPriority;
    fn try_from(level: u8) -> Result<Self, InvalidPriority> {
        Self::new(level)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn priority_bounds() {
        assert_eq!(Priority::new(0), Ok(Priority::MIN));
        assert_eq!(Priority::new(63), Ok(Priority::MAX));
        assert_eq!(Priority::new(64), Err(InvalidPriority(64)));
        assert_eq!(Priority::try_from(255u8), Err(InvalidPriority(255)));
        assert!(Priority::MAX > Priority::MIN);
        assert_eq!(ThreadRef::new(7).index(), 7);
    }
}
