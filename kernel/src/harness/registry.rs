//! The registries behind `ktest!` and `kbench!`: each use of a macro places one entry in a
//! linker section (`.ktest` or `.kbench`, kept and bounded by `linker.ld`), the way Linux's
//! initcalls or Asterinas's `#[ktest]` work, so a test is registered where it is defined and
//! no central list exists. The jobs read the sections and sort the entries (stable order).
//!
//! The kernel's audited `unsafe` for this: the link-section attribute in the macros and the
//! two slices built from the linker's bounds.
#![allow(unsafe_code, reason = "audited: linker-section registries")]

use crate::boot::BootState;
use alloc::string::String;

/// A test's verdict: `Err` is a FAIL line, or a skip when it starts with [`super::SKIP`].
pub type TestResult = Result<(), String>;

/// When a test can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    /// On the CPUs alone (run-on-CPU mailboxes), before the scheduler starts.
    Cpus,
    /// With the scheduler running on every CPU (the job starts it after the `Cpus` tests).
    Threads,
}

/// One kernel test (`exo.job=test`).
#[derive(Debug)]
pub struct KTest {
    /// `<subsystem>.<what_it_checks>`; `exo.test=<prefix>` selects by it.
    pub name: &'static str,
    pub needs: Needs,
    pub run: fn(&BootState) -> TestResult,
    /// Where it is defined (for the FAIL line's reader).
    pub file: &'static str,
}

/// Which bench job runs a group of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suite {
    /// `exo.job=bench`: single-CPU rows (suite `smp`).
    Single,
    /// `exo.job=contended`: core-to-core matrix, lock contention, scaling.
    Contended,
}

/// One group of bench rows.
#[derive(Debug)]
pub struct KBench {
    /// The group name (rows it emits usually start with it); groups run sorted by name.
    pub name: &'static str,
    pub suite: Suite,
    pub run: fn(&mut super::bench::Bench<'_>),
}

/// Registers a kernel test: `ktest!(Needs::Cpus, "smp.all_cpus_online", all_cpus_online);`
#[macro_export]
macro_rules! ktest {
    ($needs:expr, $name:literal, $f:path) => {
        const _: () = {
            // SAFETY: `.ktest` holds nothing but `KTest` values (this macro is its only
            // writer); `linker.ld` keeps the section and bounds it for `registry::tests`.
            #[allow(unsafe_code)]
            #[used]
            #[unsafe(link_section = ".ktest")]
            static ENTRY: $crate::harness::registry::KTest = $crate::harness::registry::KTest {
                name: $name,
                needs: $needs,
                run: $f,
                file: file!(),
            };
        };
    };
}

/// Registers a group of bench rows: `kbench!(Suite::Single, "alloc", alloc_rows);`
#[macro_export]
macro_rules! kbench {
    ($suite:expr, $name:literal, $f:path) => {
        const _: () = {
            // SAFETY: `.kbench` holds nothing but `KBench` values (this macro is its only
            // writer); `linker.ld` keeps the section and bounds it for `registry::benches`.
            #[allow(unsafe_code)]
            #[used]
            #[unsafe(link_section = ".kbench")]
            static ENTRY: $crate::harness::registry::KBench = $crate::harness::registry::KBench {
                name: $name,
                suite: $suite,
                run: $f,
            };
        };
    };
}

// Bounds from linker.ld (byte addresses; the sections are 8-aligned arrays of entries).
unsafe extern "C" {
    static __ktest_start: u8;
    static __ktest_end: u8;
    static __kbench_start: u8;
    static __kbench_end: u8;
}

/// Every registered test, in link order (the job sorts them).
pub fn tests() -> &'static [KTest] {
    // SAFETY: the linker script places every input `.ktest` section between the two symbols
    // and nothing else; each is an initialised, immutable, 'static `KTest` from `ktest!`
    // (same type, so same size and alignment: the section is an array of them).
    unsafe {
        between(
            (&raw const __ktest_start).cast(),
            (&raw const __ktest_end).cast(),
        )
    }
}

/// Every registered bench group, in link order (the job sorts them).
pub fn benches() -> &'static [KBench] {
    // SAFETY: as for `tests`, with `.kbench` and `kbench!`.
    unsafe {
        between(
            (&raw const __kbench_start).cast(),
            (&raw const __kbench_end).cast(),
        )
    }
}

/// # Safety
/// `[start, end)` must be an array of initialised, immutable, 'static `T`s.
unsafe fn between<T>(start: *const T, end: *const T) -> &'static [T] {
    let bytes = (end as usize).saturating_sub(start as usize);
    let n = bytes / core::mem::size_of::<T>();
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts(start, n) }
}
