//! Test programs whose `arg` selects a case (`/faults`, `/threads`): the description of one
//! case and of how its process must end, shared by the program and by `/init`, which runs
//! them all and checks every end.

use crate::ExitStatus;

/// One case of a test program.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The program's `arg` that selects it.
    pub arg: u64,
    /// What it does.
    pub name: &'static str,
    /// What `wait` must return for it.
    pub expect: fn(ExitStatus) -> bool,
    /// The same, in words.
    pub expect_text: &'static str,
}
