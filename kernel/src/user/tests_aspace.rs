//! Kernel tests of user address spaces: mappings and their errors, every frame given back,
//! and the TLB shootdown proof: threads on other CPUs read a user page through the space
//! while it is unmapped; once `unmap` has returned, none of them may read it again.

use super::aspace::{AddressSpace, MAP_HOLD, MMAP_BASE, UNMAP_HOLD, VmError};
use crate::boot::BootState;
use crate::harness::{Needs, SKIP, TestResult, check, free_frames_back, join_all, ncpus, wait_for};
use crate::ktest;
use crate::sched::{Builder, Tid};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use exo_arch::layout::USER_END;
use exo_arch::paging::UserFlags;

ktest!(
    Needs::Threads,
    "user.aspace_map_write_read_protect_unmap",
    map_cycle
);
ktest!(Needs::Threads, "user.aspace_rejects_bad_ranges", bad_ranges);
ktest!(
    Needs::Cpus,
    "user.initrd_archive_kept_and_its_index_are_the_archive_parsed_now",
    initrd_kept
);
ktest!(
    Needs::Threads,
    "user.panic_holding_tables_stops_the_machine",
    panic_holding_tables
);
ktest!(
    Needs::Threads,
    "user.aspace_prot_none_keeps_pages_contents_and_frames",
    prot_none
);
ktest!(
    Needs::Threads,
    "user.aspace_shared_region_never_executable",
    shared_never_executable
);
ktest!(
    Needs::Threads,
    "user.aspace_refused_maps_keep_the_address_space",
    refused_maps_keep_space
);
ktest!(
    Needs::Threads,
    "user.aspace_kernel_picked_maps_skip_fixed_ones_and_huge_unmaps_are_cheap",
    fixed_then_free
);
ktest!(
    Needs::Threads,
    "user.aspace_gives_every_frame_back",
    frames_back
);
ktest!(
    Needs::Threads,
    "user.aspace_spread_teardown_reads_marked_groups_and_frees_every_frame",
    spread_teardown
);
ktest!(
    Needs::Threads,
    "user.no_stale_translation_after_unmap_on_any_cpu",
    no_stale
);
ktest!(
    Needs::Threads,
    "user.aspace_unmap_never_takes_a_region_mapped_meanwhile",
    unmap_vs_region
);
ktest!(
    Needs::Threads,
    "user.aspace_failed_map_leaves_no_stale_translation",
    failed_map
);
ktest!(
    Needs::Threads,
    "user.aspace_unmap_gives_back_every_table_level",
    tables_back
);
ktest!(
    Needs::Threads,
    "user.aspace_unmap_without_memory_for_its_lists_frees_page_by_page",
    unmap_without_memory
);
ktest!(
    Needs::Threads,
    "user.aspace_huge_unmap_shoots_down_once_per_batch",
    batched_unmap
);

fn free_frames() -> Result<(u64, u64), alloc::string::String> {
    crate::harness::free_frames()
}

fn cycle() -> TestResult {
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    let va = a
        .map(None, 64 * 4096, true, false)
        .map_err(|e| format!("map: {e}"))?;
    check(va >= MMAP_BASE && a.pages() == 64, || {
        format!("mapped at {va:#x}, {} pages", a.pages())
    })?;
    let pattern: Vec<u8> = (0..64 * 4096u32).map(|i| (i * 7 + 3) as u8).collect();
    a.write(va + 1, &pattern[..64 * 4096 - 1])
        .map_err(|e| format!("write: {e}"))?;
    let mut back = alloc::vec![0u8; 64 * 4096 - 1];
    a.read(va + 1, &mut back)
        .map_err(|e| format!("read: {e}"))?;
    check(back[..] == pattern[..64 * 4096 - 1], || {
        "read back differs from what was written".into()
    })?;
    let mut first = [0u8; 1];
    a.read(va, &mut first).map_err(|e| format!("read: {e}"))?;
    check(first[0] == 0, || "a fresh page is not zeroed".into())?;
    a.protect(va, 16 * 4096, false, false)
        .map_err(|e| format!("protect: {e}"))?;
    let gone = a.unmap(va, 32 * 4096).map_err(|e| format!("unmap: {e}"))?;
    check(gone == 32 && a.pages() == 32, || {
        format!("unmapped {gone}, {} left", a.pages())
    })?;
    check(a.read(va, &mut first) == Err(VmError::NotMapped), || {
        "an unmapped page still reads".into()
    })?;
    Ok(())
}

fn map_cycle(_: &BootState) -> TestResult {
    cycle()
}

/// Found by `/fuzz`: a map without a fixed address that the kernel refused (too long for
/// what is left of the user half, or a length that overflows) used to advance the
/// next-address cursor anyway, so one `mmap(NULL, 1 << 47)` left the process unable to map
/// anything again (every later map: `EINVAL`), and `mmap(NULL, u64::MAX)` overflowed the
/// cursor arithmetic (a panic in debug builds).
fn refused_maps_keep_space(_: &BootState) -> TestResult {
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    for len in [1u64 << 47, USER_END, u64::MAX, u64::MAX - 4095, 0] {
        let got = a.map(None, len, true, false);
        check(got.is_err(), || format!("map(None, {len:#x}) = {got:?}"))?;
    }
    let va = a
        .map(None, 4096, true, false)
        .map_err(|e| format!("map after refused ones: {e}"))?;
    check(va == MMAP_BASE, || {
        format!("first map at {va:#x}, want {MMAP_BASE:#x}: refused maps used address space")
    })?;
    a.unmap(va, 4096).map_err(|e| format!("unmap: {e}"))?;
    Ok(())
}

/// A fixed map where the kernel's cursor would go next (the fuzzer's finding: the next
/// kernel-picked map was EEXIST) is skipped; an unmap of nearly all user space walks only
/// the tables that exist (it looped over 2^34 pages before: the test would not finish).
fn fixed_then_free(_: &BootState) -> TestResult {
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    let first = a
        .map(None, 4096, true, false)
        .map_err(|e| format!("map: {e}"))?;
    a.unmap(first, 4096).map_err(|e| format!("unmap: {e}"))?;
    // The cursor stays above `first`; a fixed map of 8 pages right there, and one page
    // further up with a hole between them.
    let next = first + 2 * 4096;
    a.map(Some(next), 8 * 4096, true, false)
        .map_err(|e| format!("fixed map at {next:#x}: {e}"))?;
    a.map(Some(next + 10 * 4096), 4096, true, false)
        .map_err(|e| format!("fixed map: {e}"))?;
    let picked = a
        .map(None, 2 * 4096, true, false)
        .map_err(|e| format!("kernel-picked map after fixed ones: {e}"))?;
    // The first free 2 pages above the cursor: the hole between the fixed maps.
    check(picked == next + 8 * 4096, || {
        format!(
            "kernel-picked map at {picked:#x}, want {:#x} (the hole after the fixed map at {next:#x})",
            next + 8 * 4096
        )
    })?;
    let base = super::aspace::USER_MIN;
    let gone = a
        .unmap(base, USER_END - base)
        .map_err(|e| format!("unmap of all user space: {e}"))?;
    check(gone == 8 + 1 + 2 && a.pages() == 0, || {
        format!("unmapped {gone} pages, {} left; want 11 and 0", a.pages())
    })?;
    Ok(())
}

fn bad_ranges(_: &BootState) -> TestResult {
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    let cases: [(Option<u64>, u64, bool, bool, VmError); 10] = [
        (Some(0x10_0001), 4096, true, false, VmError::Invalid), // unaligned
        (Some(0x10_0000), 0, true, false, VmError::Invalid),    // empty
        (Some(0), 4096, true, false, VmError::OutOfRange),      // null page
        (
            Some(USER_END - 4096),
            8192,
            true,
            false,
            VmError::OutOfRange,
        ), // straddles the half
        (
            Some(0xFFFF_8000_0000_0000),
            4096,
            true,
            false,
            VmError::OutOfRange,
        ), // kernel
        (Some(!0xFFF), 8192, true, false, VmError::OutOfRange), // wraps
        (Some(0x10_0000), 4096, true, true, VmError::Invalid),  // W+X
        // A length that wraps when rounded up to a page: out of range (`ENOMEM`, as
        // Linux's `PAGE_ALIGN`; `Invalid` until 2026-12-06), the kernel-picked map too
        // (`NoMemory`: no room for it).
        (Some(0x10_0000), u64::MAX, true, false, VmError::OutOfRange),
        (
            Some(0x10_0000),
            u64::MAX - 4094,
            true,
            false,
            VmError::OutOfRange,
        ),
        (None, u64::MAX, true, false, VmError::NoMemory),
    ];
    for (va, len, w, x, want) in cases {
        let got = a.map(va, len, w, x);
        check(got == Err(want), || {
            format!("map({va:x?}, {len}, w {w}, x {x}) = {got:?}, want {want:?}")
        })?;
    }
    a.map(Some(0x10_0000), 8192, true, false)
        .map_err(|e| format!("map: {e}"))?;
    let again = a.map(Some(0x10_1000), 4096, true, false);
    check(again == Err(VmError::Exists), || {
        format!("fixed map over a mapped page = {again:?}")
    })?;
    let p = a.protect(0x10_0000, 3 * 4096, false, false);
    check(p == Err(VmError::NotMapped), || {
        format!("protect of a range with a hole = {p:?}")
    })?;
    // A wrapping length: `OutOfRange` for both (`ENOMEM` for mprotect, `EINVAL` for munmap,
    // as Linux), nothing changed.
    let p = a.protect(0x10_0000, u64::MAX, false, false);
    let u = a.unmap(0x10_0000, u64::MAX);
    check(
        p == Err(VmError::OutOfRange)
            && u == Err(VmError::OutOfRange)
            && a.rights(0x10_0000) == Some((true, false)),
        || {
            format!(
                "protect and unmap of u64::MAX bytes = {p:?}, {u:?} (want OutOfRange); rights then {:?}",
                a.rights(0x10_0000)
            )
        },
    )?;
    // More than the machine has: refused whole, nothing kept.
    let before = a.pages();
    let huge = a.map(None, 1 << 40, true, false);
    check(
        huge == Err(VmError::NoMemory) && a.pages() == before,
        || format!("a 1 TiB map = {huge:?}, pages {} (was {before})", a.pages()),
    )?;
    Ok(())
}

fn frames_back(_: &BootState) -> TestResult {
    cycle()?; // warm the allocator's slabs and magazines first
    let before = free_frames()?;
    let pcids = crate::mm::space::pcids_in_use();
    for _ in 0..3 {
        cycle()?;
        let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
        let _ = a.map(None, 1 << 40, true, false); // refused: gives back what it took
        drop(a);
    }
    let after = free_frames()?;
    check(after == before, || {
        format!(
            "(free + slab frames, heap objects out) {before:?} before, {after:?} after (a leak or a double free)"
        )
    })?;
    let now = crate::mm::space::pcids_in_use();
    check(now == pcids, || {
        format!("PCIDs in use {pcids} before, {now} after")
    })
}

/// Mappings (address, pages) spread over many tables: the first page a map may use, the
/// image's usual place, pages on both sides of table and 64-entry group boundaries, the last
/// page of the first GiB, the mmap base, other PML4 slots (1, 3, 128, 254), the stack under
/// `STACK_TOP` (0x7FFF_FFFF_0000, 256 KiB) and the highest user page above it.
const SPREAD: &[(u64, u64)] = &[
    (super::aspace::USER_MIN, 1),
    (0x40_0000, 3),
    (0x3F_F000, 1),
    (0x20_0000 * 64 - 0x1000, 2),
    (0x3FFF_F000, 1),
    (super::aspace::MMAP_BASE, 4),
    (super::aspace::MMAP_BASE + 0x3F000, 2),
    (0x80_0000_0000, 1),
    (0x1FF_FFFF_F000, 1),
    (0x4000_0000_0000, 1),
    (0x7F7F_FFFF_F000, 1),
    (super::loader::STACK_TOP - super::loader::STACK_SIZE, 64),
    (USER_END - 4096, 1),
];

/// A space holding [`SPREAD`], its second page of the image and one stack page without
/// access (a `PROT_NONE` leaf is freed too).
fn spread_space() -> Result<AddressSpace, String> {
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    for &(va, pages) in SPREAD {
        a.map(Some(va), pages * 4096, true, false)
            .map_err(|e| format!("map {pages} at {va:#x}: {e}"))?;
    }
    for va in [0x40_1000, super::loader::STACK_TOP - 4096] {
        a.protect_flags(va, 4096, UserFlags::NONE)
            .map_err(|e| format!("protect NONE at {va:#x}: {e}"))?;
    }
    Ok(a)
}

/// A space with pages over many tables gives back exactly every frame, page and table,
/// whether its process ended (`release_user_memory`, then the space dropped) or the space
/// was dropped with everything mapped; and the teardown read only the groups of 64 entries
/// its tables' links mark (`exo_arch::paging::GROUPS_SHIFT`, 2026-12-06): 64 entries for
/// each group a page of `SPREAD` uses in each table, where the walk over every entry of
/// every table read 512 per table. Debug builds also check, table by table, that no used
/// entry lies outside the marked groups.
fn spread_teardown(_: &BootState) -> TestResult {
    use alloc::collections::BTreeSet;
    // The groups a page uses, per level: (level, the table (indices above), group).
    let mut groups = BTreeSet::new();
    let mut tables = BTreeSet::new();
    let mut pages = 0;
    for &(va, n) in SPREAD {
        for p in (0..n).map(|k| va + k * 4096) {
            let [i4, i3, i2, i1] = [39, 30, 21, 12].map(|s| (p >> s) & 511);
            groups.insert((3, i4, 0, 0, i3 / 64));
            groups.insert((2, i4, i3, 0, i2 / 64));
            groups.insert((1, i4, i3, i2, i1 / 64));
            tables.extend([(3, i4, 0, 0), (2, i4, i3, 0), (1, i4, i3, i2)]);
            pages += 1;
        }
    }
    let (want, whole) = (64 * groups.len() as u64, 512 * tables.len() as u64);
    let (groups, tables) = (groups.len(), tables.len());
    drop(spread_space()?); // warms the allocator's slabs and magazines, as `frames_back`
    let base = free_frames()?;

    let a = spread_space()?;
    check(a.pages() == pages, || {
        format!("{} pages mapped, want {pages}", a.pages())
    })?;
    let read = a.release_user_memory();
    let left = a.pages();
    drop(a);
    let ended = free_frames()?;
    check(read == want && left == 0 && ended == base, || {
        format!(
            "process end: read {read} entries (want {want}: {groups} groups; every entry of {tables} tables is {whole}), {left} pages left, (free + slab frames, heap objects out) {base:?} before, {ended:?} after"
        )
    })?;

    drop(spread_space()?);
    let dropped = free_frames()?;
    check(dropped == base, || {
        format!(
            "space dropped mapped: (free + slab frames, heap objects out) {base:?} before, {dropped:?} after (a leak or a double free)"
        )
    })
}

/// The user page the readers read.
const PAGE_VA: u64 = 0x40_0000;
/// The phase: even = mapped (or about to be), odd = unmapped (set only after `unmap` returned).
static ROUND: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static STALE: AtomicU64 = AtomicU64::new(0);
/// Per reader: the round it is in (high 32 bits) and the reads it counted in it (low 32:
/// successes in an even round, faults in an odd one).
static PROGRESS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// Reads the page through the space over and over. In an odd round the page was unmapped
/// before the round began and is mapped again only after every reader has moved on to the
/// next round, so a successful read there went through a stale translation.
fn reader(k: u64) -> u64 {
    let mut last = u64::MAX;
    let mut count = 0u64;
    while !STOP.load(Ordering::Acquire) {
        let r = ROUND.load(Ordering::Acquire);
        if r != last {
            last = r;
            count = 0;
        }
        let ok = exo_arch::usercopy::read_user_u64(PAGE_VA).is_ok();
        if r % 2 == 1 && ok {
            STALE.fetch_add(1, Ordering::Relaxed);
        }
        if ok == r.is_multiple_of(2) {
            count += 1;
        }
        PROGRESS[k as usize].store((r << 32) | count.min(u32::MAX as u64), Ordering::Release);
    }
    0
}

/// Waits until every reader is in `round` with at least `want` reads counted in it.
fn wait_readers(n: usize, round: u64, want: u64, deadline: &crate::smp::time::Deadline) -> bool {
    (0..n).all(|k| {
        loop {
            let p = PROGRESS[k].load(Ordering::Acquire);
            if p >> 32 == round && p & 0xFFFF_FFFF >= want {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            crate::sched::yield_now();
        }
    })
}

/// Round 0, no stale read, no reader stopped.
fn reset_readers() {
    ROUND.store(0, Ordering::Release);
    for p in &PROGRESS {
        p.store(u64::MAX, Ordering::Relaxed);
    }
    STOP.store(false, Ordering::Release);
    STALE.store(0, Ordering::Relaxed);
}

/// A [`reader`] in space `a` pinned on each of `cpus` (none left running on an error, or
/// `a` kept for ever: [`join_readers`]).
fn spawn_readers(a: &Arc<AddressSpace>, cpus: &[u32]) -> Result<Vec<Tid>, alloc::string::String> {
    let mut tids: Vec<Tid> = Vec::new();
    for (k, &c) in cpus.iter().enumerate() {
        match Builder::new()
            .pin(c)
            .space(a.space())
            .spawn(reader, k as u64)
        {
            Ok(t) => tids.push(t),
            Err(e) => {
                let _ = join_readers(&tids, a);
                return Err(format!("spawn on CPU {c}: {e}"));
            }
        }
    }
    Ok(tids)
}

/// Stops and joins the readers of space `a` ([`spawn_readers`]). When one does not end, `a`
/// is never dropped (a clone of it forgotten): a reader still running in it would switch to
/// a freed space once its owner returned (found by an audit, 2026-12-07: `no_stale` and
/// `batched_unmap` dropped theirs after a join that timed out).
fn join_readers(tids: &[Tid], a: &Arc<AddressSpace>) -> Result<Vec<u64>, String> {
    STOP.store(true, Ordering::Release);
    join_all(tids, 10_000).inspect_err(|_| core::mem::forget(Arc::clone(a)))
}

/// Issue 12: mappings change while threads of the space run on other CPUs; after `unmap`
/// returns no CPU may still translate the page. Readers run on every CPU but one (when there
/// are 3 or more), and that CPU, which never loaded the space, must get no shootdown.
fn no_stale(_: &BootState) -> TestResult {
    let n = ncpus();
    if n < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let me = crate::sched::this_cpu();
    let left_out = (n >= 3).then_some(n - 1).filter(|&c| c != me);
    let cpus: Vec<u32> = (0..n)
        .filter(|&c| c != me && Some(c) != left_out)
        // Eight readers prove the point; hundreds of TCG vCPUs on two host cores would only
        // make the rounds slow (each round has its own 60 s deadline, for a loaded host).
        .take(8)
        .collect();
    let a = Arc::new(AddressSpace::new().map_err(|e| format!("new: {e}"))?);
    reset_readers();
    a.map(Some(PAGE_VA), 4096, true, false)
        .map_err(|e| format!("map: {e}"))?;
    let flushes_left_out = |c: Option<u32>| {
        c.and_then(|c| crate::smp::cpus::get(exo_percpu::CpuId(c)))
            .map_or(0, |b| b.ext.tlb_space_flushes.load(Ordering::Relaxed))
    };
    let quiet_before = flushes_left_out(left_out);
    let shots_before = crate::smp::tlb::SHOOTDOWNS.load(Ordering::Relaxed);
    let tids = spawn_readers(&a, &cpus)?;
    let rounds = 40u64;
    let mut result = Ok(());
    for round in 0..rounds {
        let even = 2 * round;
        // Mapped: every reader reads it, so its TLB holds the translation.
        let deadline = crate::smp::time::Deadline::after_ms(60_000);
        if !wait_readers(cpus.len(), even, 50, &deadline) {
            result = Err(format!(
                "round {round}: readers did not read the mapped page"
            ));
            break;
        }
        if let Err(e) = a.unmap(PAGE_VA, 4096) {
            result = Err(format!("unmap: {e}"));
            break;
        }
        ROUND.store(even + 1, Ordering::Release);
        // Unmapped: every reader must fault from now on.
        if !wait_readers(cpus.len(), even + 1, 50, &deadline) {
            result = Err(format!(
                "round {round}: readers did not fault on the unmapped page ({} stale reads)",
                STALE.load(Ordering::Relaxed)
            ));
            break;
        }
        // Next round: map again only once every reader has left the odd round.
        ROUND.store(even + 2, Ordering::Release);
        if !wait_readers(cpus.len(), even + 2, 0, &deadline) {
            result = Err(format!("round {round}: readers did not move on"));
            break;
        }
        if let Err(e) = a.map(Some(PAGE_VA), 4096, true, false) {
            result = Err(format!("map: {e}"));
            break;
        }
    }
    join_readers(&tids, &a)?;
    result?;
    let stale = STALE.load(Ordering::Relaxed);
    check(stale == 0, || {
        format!("{stale} read(s) through a translation that unmap had removed")
    })?;
    let shots = crate::smp::tlb::SHOOTDOWNS.load(Ordering::Relaxed) - shots_before;
    check(shots >= rounds, || {
        format!("{shots} shootdowns for {rounds} unmaps")
    })?;
    let quiet = flushes_left_out(left_out) - quiet_before;
    check(quiet == 0, || {
        format!("CPU {left_out:?} never ran the space but got {quiet} shootdown(s)")
    })
}

ktest!(
    Needs::Threads,
    "user.loader_loads_every_program_of_the_initrd",
    load_initrd
);
ktest!(
    Needs::Threads,
    "user.loader_refuses_broken_executables_and_gives_memory_back",
    load_broken
);
ktest!(
    Needs::Threads,
    "user.loader_maps_a_segment_without_rights_inaccessible",
    load_no_access_segment
);
ktest!(
    Needs::Threads,
    "user.loader_relocates_a_static_pie_which_then_runs",
    load_static_pie
);

/// Every executable of the initrd (its regular files with the ELF magic: the `README` is
/// text, which `user.proc_spawn_of_a_file_that_is_no_executable_is_enoexec` checks is
/// refused) loads into its own space: its entry is mapped
/// executable and not writable, its stack writable and not executable, the page below the
/// stack unmapped; dropping the space gives every frame back.
fn load_initrd(_: &BootState) -> TestResult {
    use super::loader::{STACK_SIZE, STACK_TOP, load};
    let archive = match super::initrd::archive() {
        None => return Err(format!("{SKIP}no initrd (scripts/qemu.sh --initrd FILE)")),
        Some(Err(e)) => return Err(format!("the initrd is not a cpio archive: {e}")),
        Some(Ok(a)) => a,
    };
    cycle()?; // warm the allocator
    let before = free_frames()?;
    let mut loaded = 0;
    for e in archive.entries() {
        if e.file_type() != exo_initrd::FileType::Regular || !e.data.starts_with(b"\x7fELF") {
            continue;
        }
        let a = AddressSpace::new().map_err(|x| format!("new: {x}"))?;
        let l = load(&a, e.data).map_err(|x| format!("/{}: {x}", e.name))?;
        check(a.rights(l.entry) == Some((false, true)), || {
            format!(
                "/{}: entry {:#x} rights {:?}",
                e.name,
                l.entry,
                a.rights(l.entry)
            )
        })?;
        check(a.rights(STACK_TOP - 8) == Some((true, false)), || {
            format!("/{}: stack rights {:?}", e.name, a.rights(STACK_TOP - 8))
        })?;
        check(a.rights(STACK_TOP - STACK_SIZE - 8).is_none(), || {
            format!("/{}: no guard page below the stack", e.name)
        })?;
        loaded += 1;
    }
    check(loaded > 0, || "the initrd holds no program".into())?;
    free_frames_back(before)
}

/// `/init`'s image in the initrd (a skip without an initrd).
fn init_image() -> Result<&'static [u8], alloc::string::String> {
    let Some(Ok(archive)) = super::initrd::archive() else {
        return Err(format!("{SKIP}no initrd (scripts/qemu.sh --initrd FILE)"));
    };
    archive
        .find("/init")
        .map(|e| e.data)
        .ok_or_else(|| "the initrd has no /init".into())
}

/// Truncated or corrupted copies of a real program are refused with a typed error, never a
/// fault, and nothing they mapped is kept.
fn load_broken(_: &BootState) -> TestResult {
    use super::loader::{LoadError, load};
    let elf = init_image()?;
    cycle()?;
    let before = free_frames()?;
    let mut refused = 0;
    // Cuts inside the ELF and program headers (a cut past them may still hold every
    // segment's bytes: section headers and symbols come last).
    for cut in [0usize, 1, 16, 63, 64, 100, 200] {
        let a = AddressSpace::new().map_err(|x| format!("new: {x}"))?;
        match load(&a, &elf[..cut.min(elf.len())]) {
            Err(LoadError::Elf(_)) => refused += 1,
            other => return Err(format!("a copy cut at {cut} bytes gave {other:?}")),
        }
    }
    // Every byte of the header and program headers flipped in turn, loads attempted.
    let mut copy = elf.to_vec();
    for i in 0..(64 + 56 * 4).min(copy.len()) {
        copy[i] ^= 0xA5;
        let a = AddressSpace::new().map_err(|x| format!("new: {x}"))?;
        let _ = load(&a, &copy);
        copy[i] ^= 0xA5;
    }
    drop(copy);
    let after = free_frames()?;
    check(refused == 7 && after == before, || {
        format!("refused {refused}/7; (frames, objects) {before:?} before, {after:?} after")
    })
}

/// A `PT_LOAD` whose flags grant nothing (a guard region) is mapped without any access,
/// not readable: `/init` with its last program header (`PT_GNU_STACK`) made such a segment
/// of one page after the image. Nothing of it is kept once the space goes. Until 2026-12-05
/// the loader mapped every segment readable whatever its flags (found by review).
fn load_no_access_segment(_: &BootState) -> TestResult {
    use super::loader::load;
    const PAGE: u64 = 4096;
    let init = init_image()?;
    cycle()?;
    let before = free_frames()?;
    let mut elf = init.to_vec();
    let rd = |b: &[u8], at: usize, n: usize| {
        b.get(at..at + n)
            .map(|s| s.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    let (phoff, phnum) = (rd(&elf, 32, 8), rd(&elf, 56, 2));
    let (Some(phoff), Some(phnum)) = (phoff, phnum) else {
        return Err("/init: no ELF header".into());
    };
    let last = phoff as usize + 56 * (phnum as usize).saturating_sub(1);
    // The end of the image: the highest PT_LOAD's vaddr + memsz, rounded up to a page.
    let end = (0..phnum as usize)
        .filter_map(|i| {
            let h = phoff as usize + 56 * i;
            (rd(&elf, h, 4)? == 1).then(|| Some(rd(&elf, h + 16, 8)? + rd(&elf, h + 40, 8)?))?
        })
        .max()
        .unwrap_or(0);
    if rd(&elf, last, 4) != Some(0x6474_E551) {
        return Err(format!(
            "{SKIP}/init's last program header is not PT_GNU_STACK"
        ));
    }
    let guard = end.next_multiple_of(PAGE) + PAGE;
    let mut h = [0u8; 56];
    h[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD, p_flags 0
    h[16..24].copy_from_slice(&guard.to_le_bytes()); // p_vaddr
    h[24..32].copy_from_slice(&guard.to_le_bytes()); // p_paddr
    h[40..48].copy_from_slice(&PAGE.to_le_bytes()); // p_memsz
    h[48..56].copy_from_slice(&PAGE.to_le_bytes()); // p_align
    elf[last..last + 56].copy_from_slice(&h);
    {
        let a = AddressSpace::new().map_err(|x| format!("new: {x}"))?;
        let l = load(&a, &elf).map_err(|x| format!("/init with a guard segment: {x}"))?;
        check(
            a.rights(guard).is_none() && a.rights(l.entry) == Some((false, true)),
            || {
                format!(
                    "guard segment at {guard:#x}: rights {:?} (want none); entry {:?}",
                    a.rights(guard),
                    a.rights(l.entry)
                )
            },
        )?;
    }
    drop(elf);
    free_frames_back(before)
}

/// `kernel/elf/tests/data/rs-pie` (`build.sh` there builds it from `rs.rs`): a static PIE
/// linked at 0 (entry 0x1300) whose `TABLE` of `&MSG[0]`, `&MSG[1]`, `&MSG[2]` (`MSG` =
/// `b"exo\n"` at 0x2c8) at 0x3430 needs three `R_X86_64_RELATIVE` relocations.
static RS_PIE: &[u8] = include_bytes!("../../elf/tests/data/rs-pie");

/// A static PIE loads at the 4 MiB bias with its relocations applied: `rs-pie` enters at
/// 0x401300, its image is 0x400000..0x409000, and its table (read back from the space)
/// holds 0x4002c8, 0x4002c9, 0x4002ca. Run as a process it exits with `*TABLE[1]`, `b'x'`
/// (120); without the relocations the table holds zeros (rust-lld keeps the addends in the
/// `RELA` table) and the process dies of a `#PF` at 0 (status 0x10e; both checked with the
/// loop skipped). Once the space is dropped and the process waited for, every frame is
/// back. Until 2026-12-06 every initrd program was `ET_EXEC` without relocations and no
/// test ran the loader's relocation loop (found by review).
fn load_static_pie(_: &BootState) -> TestResult {
    use super::loader::load;
    cycle()?;
    let before = free_frames()?;
    {
        let a = AddressSpace::new().map_err(|x| format!("new: {x}"))?;
        let l = load(&a, RS_PIE).map_err(|x| format!("rs-pie: {x}"))?;
        let mut bytes = [0u8; 24];
        a.read(0x40_3430, &mut bytes)
            .map_err(|x| format!("rs-pie: its table at 0x403430: {x}"))?;
        let mut words = [0u64; 3];
        for (w, b) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = b.iter().rev().fold(0, |v, &x| v << 8 | u64::from(x));
        }
        check(
            l.entry == 0x40_1300
                && l.image == (0x40_0000, 0x40_9000)
                && words == [0x40_02c8, 0x40_02c9, 0x40_02ca]
                && a.rights(l.entry) == Some((false, true)),
            || {
                format!(
                    "rs-pie: entry {:#x} (want 0x401300, rights {:?}), image {:x?} (want 0x400000..0x409000), table {words:x?} (want [4002c8, 4002c9, 4002ca])",
                    l.entry,
                    a.rights(l.entry),
                    l.image
                )
            },
        )?;
    }
    let pid = super::process::spawn_image("rs-pie", RS_PIE, 0, Builder::new(), None)
        .map_err(|e| format!("spawn of rs-pie: {e:?}"))?;
    let status =
        super::process::wait_until(pid, exo_arch::tsc::rdtsc() + crate::harness::ms(30_000));
    check(status == Ok(120), || {
        format!("rs-pie ended with {status:?} (want Ok(120), *TABLE[1] = b'x'; 270: a #PF)")
    })?;
    free_frames_back(before)
}

/// The space `unmap_vs_region` shares with its unmapping thread.
static RACED: spin::Mutex<Option<Arc<AddressSpace>>> = spin::Mutex::new(None);

/// Unmaps the 16 pages from `MMAP_BASE` in the shared space: 0 if refused (`Invalid`), 1 if
/// it unmapped anything, 2 on another error or no space.
fn unmapper(_: u64) -> u64 {
    let Some(a) = RACED.lock().clone() else {
        return 2;
    };
    match a.unmap(MMAP_BASE, 16 * 4096) {
        Err(VmError::Invalid) => 0,
        Ok(n) if n > 0 => 1,
        _ => 2,
    }
}

/// `munmap` against `shm_map` from another thread of the process, forced into the order
/// that freed a region's frames twice: the unmapping thread is held (`UNMAP_HOLD`) after it
/// took its range and before the tables' lock; meanwhile a shared region is mapped inside
/// that range; then the unmap goes on. It must be refused (the range now overlaps the
/// region) and the region's pages must stay mapped to the region's frames. (Before the
/// overlap check moved under the lock, the unmap took the region's pages and freed its
/// frames, which the region freed again when the space went: on that failure the space is
/// leaked rather than dropped, so the test fails instead of the kernel.)
fn unmap_vs_region(_: &BootState) -> TestResult {
    let a = Arc::new(AddressSpace::new().map_err(|e| format!("new: {e}"))?);
    *RACED.lock() = Some(a.clone());
    UNMAP_HOLD.arm();
    let r = (|| {
        let t = Builder::new()
            .spawn(unmapper, 0)
            .map_err(|e| format!("spawn: {e}"))?;
        wait_for("the unmap to reach its hold point", 30_000, || {
            UNMAP_HOLD.reached()
        })?;
        let (frames, va) = map_region(&a, 2 * 4096)?;
        UNMAP_HOLD.release();
        let code = join_all(&[t], 30_000)?[0];
        let kept = (0..2).all(|k| a.phys(va + k * 4096) == Some(frames[k as usize]));
        check(
            (MMAP_BASE..MMAP_BASE + 16 * 4096).contains(&va) && code == 0 && kept,
            || {
                format!(
                    "region at {va:#x} (in the range: {}), unmap {code} (0: refused), region pages kept: {kept}",
                    (MMAP_BASE..MMAP_BASE + 16 * 4096).contains(&va)
                )
            },
        )
    })();
    UNMAP_HOLD.release();
    RACED.lock().take();
    if r.is_err() {
        core::mem::forget(a);
    }
    r
}

/// Pages of [`failing_mapper`]'s map: a whole page table's worth from [`PAGE_VA`] (2 MiB
/// aligned) and one more, whose page table the per-process limit refuses.
const FAILING_PAGES: u64 = 513;

/// Maps [`FAILING_PAGES`] pages from [`PAGE_VA`] in the shared space, the last of which
/// needs a page table over the per-process limit: 0 if refused with `NoMemory`, 1 if it
/// succeeded, 2 on another error or no space.
fn failing_mapper(_: u64) -> u64 {
    let Some(a) = RACED.lock().clone() else {
        return 2;
    };
    match a.map(Some(PAGE_VA), FAILING_PAGES * 4096, true, false) {
        Err(VmError::NoMemory) => 0,
        Ok(_) => 1,
        _ => 2,
    }
}

/// A map that fails part way gives back the pages it had mapped; threads of the space on
/// other CPUs may have used them meanwhile (the tables' lock does not stop the MMU), so the
/// frames may go back only after a shootdown. Forced: the map is held (`MAP_HOLD`) once its
/// first page is mapped until readers on the other CPUs have read it; then it fails at its
/// 513th page, whose page table the per-process memory limit refuses (until 2026-12-05 the
/// second page was mapped beforehand, but a fixed map over a mapping is now refused before
/// it maps anything). From then on every reader must fault on the first page.
/// (Before the fix the rollback freed the frame with no shootdown: the readers went on
/// reading it, and whatever the frame became next, through their stale translations.)
fn failed_map(_: &BootState) -> TestResult {
    let n = ncpus();
    if n < 2 {
        return Err(format!("{SKIP}needs 2 CPUs"));
    }
    let me = crate::sched::this_cpu();
    let cpus: Vec<u32> = (0..n).filter(|&c| c != me).take(8).collect();
    let a = Arc::new(AddressSpace::new().map_err(|e| format!("new: {e}"))?);
    // The pages and the first page table's three tables fit; the last page's table does not.
    let limit = a.account().total() + FAILING_PAGES + 3;
    let old_limit = crate::mm::commit::set_proc_limit_pages(limit);
    *RACED.lock() = Some(a.clone());
    reset_readers();
    MAP_HOLD.arm();
    let r = (|| {
        let readers = spawn_readers(&a, &cpus)?;
        let r = (|| {
            let t = Builder::new()
                .pin(me)
                .spawn(failing_mapper, 0)
                .map_err(|e| format!("spawn: {e}"))?;
            let d = crate::smp::time::Deadline::after_ms(60_000);
            let held = (|| {
                wait_for("the map to reach its hold point", 60_000, || {
                    MAP_HOLD.reached()
                })?;
                // Mapped: every reader reads it, so its TLB holds the translation.
                check(wait_readers(cpus.len(), 0, 50, &d), || {
                    "readers did not read the page the held map had mapped".into()
                })
            })();
            MAP_HOLD.release();
            let code = join_all(&[t], 60_000)?[0];
            held?;
            check(code == 0, || {
                format!("map {code} (0: refused with NoMemory)")
            })?;
            ROUND.store(1, Ordering::Release);
            // Given back: every reader must fault from now on.
            check(wait_readers(cpus.len(), 1, 50, &d), || {
                format!(
                    "readers did not fault on the page given back ({} stale reads)",
                    STALE.load(Ordering::Relaxed)
                )
            })
        })();
        join_readers(&readers, &a)?;
        r?;
        let stale = STALE.load(Ordering::Relaxed);
        check(
            stale == 0 && a.phys(PAGE_VA).is_none() && a.pages() == 0,
            || {
                format!(
                    "{stale} read(s) through the translation of a page the failed map gave back; first page {:?}, {} page(s) mapped (want 0)",
                    a.phys(PAGE_VA),
                    a.pages()
                )
            },
        )
    })();
    MAP_HOLD.release();
    crate::mm::commit::set_proc_limit_pages(old_limit);
    RACED.lock().take();
    if r.is_err() {
        // A thread may still use it (a join that timed out): never dropped.
        core::mem::forget(a);
    }
    r
}

/// A page mapped and unmapped in each of 8 GiB-apart places of a 512 GiB region nothing else
/// uses: once every page is unmapped, the space holds no table for them, page table, page
/// directory or the region's page-directory-pointer table, but the three it keeps for its
/// next maps (`spare`), and nothing once it is dropped. (Only the page tables went back
/// before: the directories stayed until the space went, one per GiB touched; a process
/// could hold kernel memory that way while it mapped nothing.)
fn tables_back(_: &BootState) -> TestResult {
    const REGION: u64 = 0x0000_7000_0000_0000;
    let one = |a: &AddressSpace| {
        a.map(Some(REGION), 4096, true, false)
            .map_err(|e| format!("map: {e}"))?;
        a.unmap(REGION, 4096).map_err(|e| format!("unmap: {e}"))
    };
    // Warm the allocator (slabs, magazines) with the same work, so the counts compare.
    one(&AddressSpace::new().map_err(|e| format!("new: {e}"))?)?;
    let base = free_frames()?;
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    one(&a)?; // its three tables become the space's spares
    let before = free_frames()?;
    for k in 0..8u64 {
        let va = REGION + k * (8 << 30);
        a.map(Some(va), 4096, true, false)
            .map_err(|e| format!("map at {va:#x}: {e}"))?;
    }
    let mapped = free_frames()?;
    for k in 0..8u64 {
        let va = REGION + k * (8 << 30);
        a.unmap(va, 4096)
            .map_err(|e| format!("unmap at {va:#x}: {e}"))?;
    }
    let after = free_frames()?;
    drop(a);
    let end = free_frames()?;
    // 8 pages, 8 page tables, 8 directories, 1 pointer table while mapped; 3 were spares.
    check(
        before.0 - mapped.0 == 22 && after == before && end == base,
        || {
            format!(
                "(free + slab frames, heap objects out) {base:?} before the space, {before:?} with its spares, {mapped:?} mapped (want 22 frames fewer), {after:?} after unmapping (tables kept?), {end:?} once dropped"
            )
        },
    )
}

/// An unmap whose lists of frames to free cannot grow past 64 entries (forced:
/// `aspace::set_take_list_cap`, as a heap that has no larger block; a 4 MiB block holds
/// 2 GiB of pages) shoots down once per full list, not once per page past it, while a
/// thread of the space on another CPU (when there is one) has its pages in its TLB: that
/// thread faults on the first page once the unmap returned, every frame and every charge of
/// the pages is back, and the space keeps three spare tables as before. Until 2026-12-06
/// each page past the cap got its own shootdown (937 in all here; found by review).
fn batched_unmap(_: &BootState) -> TestResult {
    #[cfg(debug_assertions)]
    {
        use crate::mm::commit;
        use crate::smp::tlb;
        const P: u64 = 4096;
        // The pages mapped and unmapped, and the most entries a list of the unmap may hold.
        const BATCHED_PAGES: u64 = 1000;
        const LIST_CAP: usize = 64;
        let me = crate::sched::this_cpu();
        let cpus: Vec<u32> = (0..ncpus()).filter(|&c| c != me).take(1).collect();
        let a = Arc::new(AddressSpace::new().map_err(|e| format!("new: {e}"))?);
        // Shootdowns of this unmap: the counter less the kernel-table reclaims meanwhile.
        let shots = || {
            tlb::SHOOTDOWNS.load(Ordering::Relaxed)
                - tlb::TABLE_RECLAIMS.load(Ordering::Relaxed)
                - tlb::RECLAIMS_DEFERRED.load(Ordering::Relaxed)
        };
        // One pass: readers on `cpus` (pinned, in the space), the pages mapped and read,
        // unmapped with the lists capped, then the readers fault and are joined (frames are
        // counted between passes: a reader spinning keeps its CPU from draining its caches).
        // The pages unmapped and the shootdowns.
        let pass = || -> Result<(u64, u64), alloc::string::String> {
            reset_readers();
            let tids = spawn_readers(&a, &cpus)?;
            let r = (|| {
                a.map(Some(PAGE_VA), BATCHED_PAGES * P, true, false)
                    .map_err(|e| format!("map: {e}"))?;
                // Mapped: every reader reads it, so its TLB holds the translation.
                let d = crate::smp::time::Deadline::after_ms(60_000);
                check(wait_readers(cpus.len(), 0, 50, &d), || {
                    "readers did not read the mapped page".into()
                })?;
                let old = super::aspace::set_take_list_cap(LIST_CAP);
                let before = shots();
                let gone = a.unmap(PAGE_VA, BATCHED_PAGES * P);
                let n = shots() - before;
                super::aspace::set_take_list_cap(old);
                let gone = gone.map_err(|e| format!("unmap: {e}"))?;
                ROUND.store(1, Ordering::Release);
                // Unmapped: every reader must fault from now on.
                check(wait_readers(cpus.len(), 1, 50, &d), || {
                    format!(
                        "readers did not fault on the unmapped page ({} stale reads)",
                        STALE.load(Ordering::Relaxed)
                    )
                })?;
                Ok((gone, n))
            })();
            join_readers(&tids, &a)?;
            let stale = STALE.load(Ordering::Relaxed);
            check(stale == 0, || {
                format!("{stale} read(s) through a translation that unmap had removed")
            })?;
            r
        };
        // Warms the allocator (slabs, magazines, the scheduler's stack cache) with the same
        // work, and leaves the space its three spare tables, so the counts compare.
        pass()?;
        let (f0, g0, c0) = (free_frames()?, commit::charged(), a.account().total());
        let (gone, n) = pass()?;
        let (f1, g1, c1) = (free_frames()?, commit::charged(), a.account().total());
        let most = BATCHED_PAGES.div_ceil(LIST_CAP as u64) + 1;
        check(
            gone == BATCHED_PAGES && a.pages() == 0 && n >= 1 && n <= most,
            || {
                format!(
                    "unmapped {gone} of {BATCHED_PAGES} pages ({} left) with {n} shootdowns (want 1 to {most})",
                    a.pages()
                )
            },
        )?;
        check(f1 == f0 && g1 == g0 && c1 == c0, || {
            format!(
                "(free + slab frames, heap objects out) {f0:?} before, {f1:?} after; global charge {g0} -> {g1}, the space's {c0} -> {c1}"
            )
        })
    }
    #[cfg(not(debug_assertions))]
    Err(format!("{SKIP}the hook exists in debug builds only"))
}

/// A shared region's pages cannot be made executable: mapped twice (or by a peer), one
/// mapping writable and another executable would be W^X defeated through an alias. Until
/// 2026-12-04 `mprotect(PROT_READ | PROT_EXEC)` of a region's mapping was accepted.
fn shared_never_executable(_: &BootState) -> TestResult {
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    let (_, va) = map_region(&a, 2 * 4096)?;
    let exec = a.protect(va, 2 * 4096, false, true);
    let tail = a.protect(va + 4096, 4096, false, true);
    let read_only = a.protect(va, 2 * 4096, false, false);
    let rights = a.rights(va);
    check(
        exec == Err(VmError::Invalid)
            && tail == Err(VmError::Invalid)
            && read_only.is_ok()
            && rights == Some((false, false)),
        || {
            format!(
                "protect executable: {exec:?} and {tail:?} (want Invalid), read-only: {read_only:?}, rights then {rights:?}"
            )
        },
    )
}

/// A new shared region of `len` bytes mapped in `a` (the space holds its reference): its
/// frames and address.
fn map_region(a: &AddressSpace, len: u64) -> Result<(Vec<u64>, u64), alloc::string::String> {
    let (tag, frames) =
        super::shm::create(len, a.account(), 0).map_err(|e| format!("region: {e:?}"))?;
    match a.map_shared(&frames, tag) {
        Ok(va) => Ok((frames, va)),
        Err(e) => {
            super::shm::release(tag);
            Err(format!("map_shared: {e}"))
        }
    }
}

/// `PROT_NONE` pages stay mapped without access: counted, not readable through the space
/// (nor translatable: futex keys and the loader's copies see nothing), their contents kept
/// for when access comes back, unmappable, and their frames freed by unmap and with the
/// space. Until 2026-12-04 prot 0 mapped the pages readable.
fn prot_none(_: &BootState) -> TestResult {
    prot_none_cycle()?; // warms the allocator's slabs and magazines, as `frames_back`
    let base = free_frames()?;
    prot_none_cycle()?;
    let end = free_frames()?;
    check(end == base, || {
        format!(
            "(free + slab frames, heap objects out) {base:?} before, {end:?} after a space with PROT_NONE pages went (leaked frames?)"
        )
    })
}

/// One space through every `PROT_NONE` step, dropped with three pages without access.
fn prot_none_cycle() -> TestResult {
    const P: u64 = 4096;
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    let va = a
        .map(None, 4 * P, true, false)
        .map_err(|e| format!("map: {e}"))?;
    let pattern: Vec<u8> = (0..4 * P as u32).map(|i| (i * 13 + 5) as u8).collect();
    a.write(va, &pattern).map_err(|e| format!("write: {e}"))?;
    a.protect_flags(va + P, 2 * P, UserFlags::NONE)
        .map_err(|e| format!("protect NONE: {e}"))?;
    let mut page = alloc::vec![0u8; P as usize];
    let hidden = a.read(va + P, &mut page);
    check(
        a.pages() == 4
            && hidden == Err(VmError::NotMapped)
            && a.phys(va + 2 * P).is_none()
            && a.rights(va + P).is_none()
            && a.phys(va).is_some()
            && a.phys(va + 3 * P).is_some(),
        || {
            format!(
                "after PROT_NONE of pages 1..3: {} pages, read {hidden:?}, phys {:?}, rights {:?}",
                a.pages(),
                a.phys(va + 2 * P),
                a.rights(va + P)
            )
        },
    )?;
    a.protect(va + P, 2 * P, false, false)
        .map_err(|e| format!("protect READ after NONE: {e}"))?;
    let mut back = alloc::vec![0u8; 4 * P as usize];
    a.read(va, &mut back).map_err(|e| format!("read: {e}"))?;
    check(
        back == pattern && a.rights(va + P) == Some((false, false)),
        || "contents or rights wrong once access came back".into(),
    )?;
    a.protect_flags(va + 2 * P, P, UserFlags::NONE)
        .map_err(|e| format!("protect NONE again: {e}"))?;
    let gone = a.unmap(va + 2 * P, P);
    let again = a.map(Some(va + 2 * P), P, true, false);
    check(gone == Ok(1) && again.is_ok() && a.pages() == 4, || {
        format!(
            "unmap of a PROT_NONE page: {gone:?} (want 1), map there again: {again:?}, {} pages",
            a.pages()
        )
    })?;
    let none = a
        .map_flags(None, 3 * P, UserFlags::NONE)
        .map_err(|e| format!("map NONE: {e}"))?;
    let wx = a.map_flags(
        None,
        P,
        UserFlags {
            accessible: true,
            writable: true,
            executable: true,
        },
    );
    check(
        a.pages() == 7 && a.phys(none).is_none() && wx == Err(VmError::Invalid),
        || {
            format!(
                "map NONE: {} pages (want 7), phys {:?}; W+X map {wx:?}",
                a.pages(),
                a.phys(none)
            )
        },
    )?;
    // Access back on one of them: zeroed, as any fresh page.
    a.protect(none + P, P, true, false)
        .map_err(|e| format!("protect RW of a NONE map: {e}"))?;
    a.read(none + P, &mut page)
        .map_err(|e| format!("read: {e}"))?;
    check(page.iter().all(|&b| b == 0), || {
        "a page mapped PROT_NONE was not zeroed".into()
    })?;
    // Three pages without access left (one of the first range, two of the second): their
    // frames must come back with the space (the caller counts).
    drop(a);
    Ok(())
}

static PANIC_SPACE: spin::Once<Option<AddressSpace>> = spin::Once::new();

fn panic_with_tables(_: u64) -> u64 {
    match PANIC_SPACE.get() {
        Some(Some(a)) => a.panic_holding_tables(),
        _ => 1,
    }
}

/// With `exo.panic_holding_tables=1`, a kernel thread (no pid, interrupts on, preemptible,
/// no sleeping lock) panics with an address space's tables locked. Ended alone, it would
/// leave the lock held for good (panic=abort drops no guard): the next map or reap of the
/// space spins for ever. The machine must stop instead (CI checks the `not killed` line,
/// the PANIC and the failure exit); until 2026-12-06 the thread was killed (found by
/// review). Without the option, skipped.
fn panic_holding_tables(s: &BootState) -> TestResult {
    if !s.opts.panic_holding_tables {
        return Err(format!(
            "{SKIP}needs exo.panic_holding_tables=1 (stops the machine)"
        ));
    }
    let a = PANIC_SPACE.call_once(|| AddressSpace::new().ok());
    let Some(a) = a else {
        return Err("no memory for the address space".into());
    };
    let t = Builder::new()
        .pin(ncpus() - 1)
        .spawn(panic_with_tables, 0)
        .map_err(|e| format!("spawn: {e}"))?;
    let code = join_all(&[t], 5000)?[0];
    Err(format!(
        "the thread ended with {code:#x} ({}), the tables' lock {}",
        if code == crate::sched::KILLED {
            "killed"
        } else {
            "1: no space"
        },
        if a.tables_free() {
            "free"
        } else {
            "held for good"
        }
    ))
}

/// The archive `initrd::archive` keeps (validated once, 2026-12-06) is the one a fresh
/// parse of the module's bytes gives: same entries, and every lookup of a file by path
/// finds the same bytes in both, and in the index `spawn` searches (with a table, and
/// without one: the walk an archive over the bound gets).
fn initrd_kept(_: &BootState) -> TestResult {
    let (Some(bytes), Some(kept)) = (super::initrd::bytes(), super::initrd::archive()) else {
        return Err(format!("{SKIP}no initrd (scripts/qemu.sh --initrd FILE)"));
    };
    let fresh = exo_initrd::Archive::parse(bytes);
    let (kept, fresh) = match (kept, fresh) {
        (Ok(k), Ok(f)) => (k, f),
        (k, f) => {
            check(k.is_err() && k.err() == f.err(), || {
                format!("kept {:?}, parsed now {:?}", k.err(), f.err())
            })?;
            return Ok(());
        }
    };
    check(
        kept.len() == fresh.len() && kept.end() == fresh.end(),
        || format!("kept {kept:?}, parsed now {fresh:?}"),
    )?;
    check(
        super::initrd::archive()
            .and_then(Result::ok)
            .map(|a| a.end())
            == Some(kept.end()),
        || String::from("a second call gave another archive"),
    )?;
    // The index `spawn` looks names up in (2026-12-06) answers as the walk of a fresh parse,
    // with a table (the kernel's initrd is far below `MAX_INDEXED`); an archive over the
    // bound, or a table the heap cannot give, is walked, with the same answers.
    let Some(Ok(index)) = super::initrd::index() else {
        return Err(String::from("the archive is valid but its index is not"));
    };
    check(
        index.is_table() || fresh.len() > super::initrd::MAX_INDEXED,
        || format!("{} entries and no table", fresh.len()),
    )?;
    let over = super::initrd::index_of(kept, fresh.len().saturating_sub(1));
    check(fresh.is_empty() || !over.is_table(), || {
        String::from("an archive over the bound got a table")
    })?;
    let same = |a: Option<exo_initrd::Entry<'_>>, b: Option<exo_initrd::Entry<'_>>| {
        a.map(|x| (x.data.as_ptr(), x.data.len(), x.offset))
            == b.map(|x| (x.data.as_ptr(), x.data.len(), x.offset))
    };
    let mut paths: Vec<String> = fresh.entries().map(|e| format!("/{}", e.name)).collect();
    paths.extend(["", "/", "/init/", "/ini", "/initx", "/nope"].map(String::from));
    for path in &paths {
        let b = fresh.find(path);
        check(same(kept.find(path), b), || {
            format!("{path}: the kept archive finds another entry")
        })?;
        check(same(index.find(path), b), || {
            format!("{path}: the index finds another entry")
        })?;
        check(same(over.find(path), b), || {
            format!("{path}: the walk over the bound finds another entry")
        })?;
    }
    Ok(())
}

/// An unmap when no memory is left for its lists (the heap held empty: `kalloc::Hoard`)
/// still unmaps every page and gives back every frame and charge: its lists never have
/// room, so each page is shot down and freed on its own (`AddressSpace::take_with`, counted
/// by `TAKES_UNLISTED`). Until 2026-12-07 no test ran this path (`just kcov`).
fn unmap_without_memory(_: &BootState) -> TestResult {
    use crate::mm::commit;
    const P: u64 = 4096;
    const PAGES: u64 = 8;
    let a = AddressSpace::new().map_err(|e| format!("new: {e}"))?;
    // A first round warms the allocator and leaves the space its spare tables.
    a.map(Some(PAGE_VA), PAGES * P, true, false)
        .map_err(|e| format!("warm-up map: {e}"))?;
    a.unmap(PAGE_VA, PAGES * P)
        .map_err(|e| format!("warm-up unmap: {e}"))?;
    let (f0, g0, c0) = (
        crate::harness::free_frames()?,
        commit::charged(),
        a.account().total(),
    );
    a.map(Some(PAGE_VA), PAGES * P, true, false)
        .map_err(|e| format!("map: {e}"))?;
    crate::harness::drain_all()?;
    let unlisted = super::aspace::TAKES_UNLISTED.load(Ordering::Relaxed);
    let hoard = crate::mm::kalloc::Hoard::take_all();
    let gone = a.unmap(PAGE_VA, PAGES * P);
    let alone = super::aspace::TAKES_UNLISTED.load(Ordering::Relaxed) - unlisted;
    drop(hoard);
    let gone = gone.map_err(|e| format!("unmap with the heap empty: {e}"))?;
    let (f1, g1, c1) = (
        crate::harness::free_frames()?,
        commit::charged(),
        a.account().total(),
    );
    check(
        gone == PAGES && a.pages() == 0 && alone >= 1 && (f1, g1, c1) == (f0, g0, c0),
        || {
            format!(
                "unmap of {PAGES} pages with the heap empty: {gone} unmapped ({} left), {alone} \
                 freed on their own (want at least 1); (free frames, objects) {f0:?} -> {f1:?}, \
                 global charge {g0} -> {g1}, the space's {c0} -> {c1}",
                a.pages()
            )
        },
    )
}
