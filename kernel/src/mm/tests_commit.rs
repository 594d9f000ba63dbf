//! Kernel tests of the commit accounting's rules (`commit`): an account's charge within the
//! per-process limit, a refused charge that changes nothing, a region's charge that outlives
//! its creator's account, and the reserve the limit leaves. The address spaces that charge
//! it are tested in `user::tests_commit`.

use super::commit::{self, Account};
use crate::boot::BootState;
use crate::harness::{Needs, TestResult, check};
use crate::ktest;
use alloc::format;
use alloc::string::ToString;

ktest!(
    Needs::Cpus,
    "mm.commit_account_stays_within_the_process_limit",
    account_limit
);
ktest!(
    Needs::Cpus,
    "mm.commit_limit_leaves_the_reserve",
    limit_leaves_reserve
);

/// With the per-process limit at 16 frames: 10 then 6 fit, one more is refused and counted
/// as refused without changing either counter; a region of 4 fits after 4 are given back;
/// the account's end gives back its own 12 frames, the region's 4 stay until it is freed.
fn account_limit(_: &BootState) -> TestResult {
    let g0 = commit::charged();
    let old = commit::set_proc_limit_pages(16);
    let r: TestResult = (|| {
        let a = Account::new();
        a.charge(10).map_err(|_| "10 of 16 refused".to_string())?;
        a.charge(6).map_err(|_| "16 of 16 refused".to_string())?;
        let refused0 = commit::refused();
        let over = a.charge(1);
        let (t, g, refused1) = (a.total(), commit::charged(), commit::refused());
        check(
            over.is_err() && t == 16 && g == g0 + 16 && refused1 == refused0 + 1,
            || {
                format!(
                    "17th frame: {over:?}, account {t} (want 16), global +{} (want 16), refusals +{}",
                    g - g0,
                    refused1 - refused0
                )
            },
        )?;
        a.uncharge(4);
        a.charge_region(4)
            .map_err(|_| "a region within the limit refused".to_string())?;
        check(a.charge_region(1).is_err(), || {
            "a region over the limit accepted".into()
        })?;
        drop(a);
        let g = commit::charged();
        check(g == g0 + 4, || {
            format!(
                "after the account's end the global charge is +{} (want the region's 4)",
                g - g0
            )
        })?;
        commit::region_freed(4);
        Ok(())
    })();
    commit::set_proc_limit_pages(old);
    r?;
    let g = commit::charged();
    check(g == g0, || format!("global charge {g0} before, {g} after"))
}

/// The limit the job started with leaves at least the reserve of the managed frames, the
/// default reserve is `max(8 MiB, managed / 16)` (or `exo.kernel_reserve_mb`), and the
/// per-process limit is `exo.proc_mem_mb`.
fn limit_leaves_reserve(b: &BootState) -> TestResult {
    let managed = super::kalloc::managed_frames();
    let (limit, reserve) = (commit::limit(), commit::reserve());
    let want = commit::reserve_for(managed, b.opts.kernel_reserve_mb);
    let default_rule = commit::reserve_for(managed, None) == (managed / 16).max(2048);
    let (proc_limit, proc_want) = (commit::proc_limit_pages(), b.opts.proc_mem_mb * 256);
    check(
        limit.saturating_add(reserve) <= managed
            && reserve == want
            && default_rule
            && proc_limit == proc_want,
        || {
            format!(
                "limit {limit} + reserve {reserve} frames of {managed} managed (reserve want {want}; default rule holds: {default_rule}); per-process limit {proc_limit} frames (want {proc_want})"
            )
        },
    )
}
