//! The migration window of `finish_migration`, forced (debug kernels: `sched::inject`). A
//! thread T on CPU A marks itself blocked; CPU B wakes it with every mailbox made full, and
//! that wake-up is held before it takes A's lock. T, woken, runs on and narrows its
//! affinity to B, so A switches away from it and migrates it; A's next thread holds right
//! after A's unlock until the held wake-up has taken A's lock, checked T and let go. T must
//! not be queued on A then: it is Ready and not A's current thread, so only its name (the
//! CPU it is on) keeps the wake-up from queueing it there, and it is posted to B as well.
//! With the name changed after the unlock, T sat on both run queues.

use crate::boot::BootState;
use crate::harness::{Needs, TestResult};
use crate::ktest;

ktest!(
    Needs::Threads,
    "sched.migration_not_queued_twice",
    migration_window
);

fn migration_window(_: &BootState) -> TestResult {
    injected_test!(forced::run, crate::harness::SKIP)
}

#[cfg(debug_assertions)]
mod forced {
    use crate::harness::{SKIP, TestResult, check, join_all, ncpus, wait_for};
    use crate::sched::{self, Builder, CpuSet, Tid, inject};
    use alloc::format;
    use core::sync::atomic::{AtomicBool, Ordering};
    use exo_arch::tsc::rdtsc;

    /// T has marked itself blocked (it waits for the held wake-up inside its check).
    static BLOCKING: AtomicBool = AtomicBool::new(false);

    /// T on A (`a`), to move to B (`b`, the high half of the argument): 0 when it ended on B
    /// and was not queued on A meanwhile, 5 when it was found on A's run queue.
    fn migrant(arg: u64) -> u64 {
        let (a, b) = (arg as u32, (arg >> 32) as u32);
        let Some(me) = sched::current() else { return 1 };
        if sched::this_cpu() != a {
            return 2;
        }
        inject::arm_migration(me.index());
        // Blocked, then woken inside the check by B (held before A's lock), so the check
        // says the wait is over: T runs on, Ready.
        sched::block_unless(|| {
            BLOCKING.store(true, Ordering::Release);
            let d = rdtsc() + 10 * crate::smp::time::tsc_hz();
            while !inject::fallback_held() && rdtsc() < d {
                core::hint::spin_loop();
            }
            false
        });
        if sched::set_affinity(CpuSet::one(b)).is_err() {
            return 3;
        }
        if sched::this_cpu() != b {
            return 4;
        }
        u64::from(crate::sched::cpu::queued_on(a, me)) * 5
    }

    /// On B: once T is blocking, wakes it with every mailbox full (the wake-up is held).
    fn waker(raw: u64) -> u64 {
        let t = Tid::from_raw(raw);
        if wait_for("T blocking", 10_000, || BLOCKING.load(Ordering::Acquire)).is_err() {
            return 2;
        }
        sched::force_mailbox_full(true);
        let woke = sched::wake(t);
        sched::force_mailbox_full(false);
        u64::from(!woke)
    }

    pub(super) fn run() -> TestResult {
        if ncpus() < 2 {
            return Err(format!("{SKIP}needs 2 CPUs"));
        }
        let (a, b) = (ncpus() - 1, 0);
        BLOCKING.store(false, Ordering::Release);
        let spawn = |f: fn(u64) -> u64, cpu: u32, arg: u64| {
            Builder::new()
                .pin(cpu)
                .spawn(f, arg)
                .map_err(|e| format!("spawn: {e}"))
        };
        let t = spawn(migrant, a, u64::from(a) | u64::from(b) << 32)?;
        let w = spawn(waker, b, t.raw())?;
        let codes = join_all(&[t, w], 30_000)?;
        let (held, migrated) = inject::migration_result();
        check(codes[0] != 5, || {
            format!(
                "T ran on CPU {b} while it was queued on CPU {a} too: the held wake-up found it \
                 still named as on CPU {a} after A let its lock go"
            )
        })?;
        check(codes == [0, 0] && held == 1 && migrated == 1, || {
            format!(
                "T ended {} (2: not on A, 3: no affinity, 4: not on B after it), the waker {} \
                 (1: its wake-up found T not blocked, 2: T never blocked), the wake-up's hold \
                 ended {held}, the migration's {migrated} (1: the other side got there, 2: \
                 deadline, 0: not reached)",
                codes[0], codes[1]
            )
        })
    }
}
