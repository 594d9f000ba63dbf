//! Bench rows of user mode: `syscall.null` (an unknown call number, answered `-ENOSYS`)
//! and `syscall.getpid`, timed in ring 3 (`rdtsc` pairs around each `syscall`, like the
//! kernel's `rdtsc_precise` pairs) by the bench program, the samples passed back through
//! its data page. The thread is pinned to the CPU the bench job runs on.

use super::programs::Program;
use super::syscall::nr;
use super::task;
use super::testbed::{self, DATA_PAGES, Slot};
use crate::harness::Suite;
use crate::harness::bench::{Bench, broken};
use crate::kbench;
use crate::sched;
use smp_bench::Stats;

kbench!(Suite::Single, "user", rows);

/// Samples per row (as many as the data pages hold after the header).
const SAMPLES: u64 = (DATA_PAGES * 4096 - 64) / 8;
/// Samples dropped first (cold caches, the first #NM-free entries).
const WARM: u64 = 16;

/// A call number nothing uses.
pub const NULL_NR: u64 = 511;

fn rows(b: &mut Bench<'_>) {
    // A row that cannot be measured is an error, as `harness::bench::emit` has it (until
    // 2026-12-06 a warning here, and the rows went missing; found by review).
    if !sched::running()
        && let Err(e) = sched::init(false, 1000)
    {
        broken(format_args!(
            "user: scheduler did not start ({e}); no user rows"
        ));
        return;
    }
    for (name, number) in [("syscall.null", NULL_NR), ("syscall.getpid", nr::GETPID)] {
        match timed(number, b.overhead) {
            Ok(st) => b.emit(name, Some(st)),
            Err(e) => broken(format_args!("{name}: {e}")),
        }
    }
}

/// `SAMPLES` timed calls of `number` from ring 3 on this CPU; stats without the first
/// `WARM`, minus the timing pair's cost.
fn timed(number: u64, overhead: u64) -> Result<Stats, alloc::string::String> {
    let slot = Slot::claim()?;
    slot.put(0, SAMPLES)?;
    slot.put(8, number)?;
    let (tid, pid) = task::spawn(
        testbed::builder()?.pin(sched::this_cpu()),
        testbed::entry(Program::Bench),
        slot.stack_top(),
        slot.data(),
    )
    .map_err(|e| alloc::format!("spawn: {e}"))?;
    let d = exo_arch::tsc::rdtsc() + 60 * crate::smp::time::tsc_hz();
    match sched::join_until(tid, d) {
        Ok(0) => {}
        Ok(c) => return Err(alloc::format!("bench program exited {c:#x}")),
        Err(e) => {
            core::mem::forget(slot);
            return Err(alloc::format!("join: {e}"));
        }
    }
    let r = task::reap(pid).ok_or("no record")?;
    // getpid is answered by the entry stub, never counted; the exit always is.
    let want = if number == nr::GETPID { 1 } else { SAMPLES + 1 };
    if r.syscalls != want {
        return Err(alloc::format!("{} calls counted, want {want}", r.syscalls));
    }
    let mut v = alloc::vec::Vec::with_capacity(SAMPLES as usize);
    for k in WARM..SAMPLES {
        v.push(slot.get(64 + 8 * k)?);
    }
    smp_bench::stats_of(&mut v, overhead).ok_or_else(|| "no samples".into())
}
