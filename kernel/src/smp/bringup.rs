//! Bring-up of the application processors: parallel INIT-SIPI-SIPI with the architectural
//! delays, a deadline for every CPU, and the AP side of CPU initialisation.
//!
//! Each target's fate is one atomic state, decided by compare-and-swap on both sides:
//! the AP moves it `T_WAITING -> T_ARRIVED` when it reaches the kernel and `T_ARRIVED ->
//! T_ONLINE` just before it marks itself online; once the BSP stops waiting it moves every
//! target still waiting or arrived to `T_ABANDONED`, and an AP whose swap then fails parks.
//! So a CPU reported missing never comes online later. Until 2026-12-04 the AP checked a
//! flag (the closed door) once on arrival: an AP descheduled after that check and before
//! going online (a loaded TCG host, where 288 CPUs took 59 s) came online after the BSP had
//! reported it missing, outside the scheduler and the TSC check.
//!
//! Everything an AP needs (its kernel stack, descriptor tables and IST stacks, per-CPU
//! block) is allocated, fallibly, before any INIT is sent: an AP whose resources could not
//! be had is `T_NOT_STARTED`, reported with the reason (`SmpReport::not_started`), never
//! sent INIT or SIPI and never waited for. Until 2026-12-05 such an AP was started anyway,
//! found nothing when it arrived and halted, and the BSP waited for it for two AP timeouts
//! (the quiet period, then the settling of an arrived AP); the lists the bring-up made
//! panicked when the heap was out (`Vec::with_capacity`, `collect`, `into_boxed_slice`).

use crate::mm::kalloc;
use crate::mm::memory::{self, Stack};
use crate::smp::cpus::{self, VEC_APIC_ERROR, VEC_SPURIOUS};
use crate::smp::time::Deadline;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_percpu::CpuId;
use log::{error, warn};

/// Kernel stack pages per CPU (64 KiB; 128 KiB in debug builds, whose unoptimised frames are
/// larger) and per IST stack (16 KiB).
pub const KSTACK_PAGES: u64 = if cfg!(debug_assertions) { 32 } else { 16 };
/// IST stack size in pages.
pub const IST_PAGES: u64 = 4;

/// One CPU the MADT asked us to start.
#[derive(Debug)]
pub struct Target {
    /// The CPU's APIC id.
    pub apic_id: u32,
    /// The logical id it gets (`u32::MAX` when it is not started).
    pub cpu: CpuId,
    /// `T_WAITING`, `T_ARRIVED`, `T_ONLINE`, `T_ABANDONED` or `T_NOT_STARTED` (module
    /// header).
    state: AtomicU8,
    /// Its descriptor tables and IST stacks, prepared by the BSP (owned until the AP takes
    /// them for good).
    tables: spin::Mutex<Option<Tables>>,
    /// Its per-CPU block, allocated by the BSP (owned until the AP takes it).
    block: spin::Mutex<Option<alloc::boxed::Box<cpus::Block>>>,
}

/// A CPU's descriptor tables with the IST stacks they name, owned: [`Tables::give_back`]
/// frees all of it, [`Tables::keep`] hands the tables out for good.
#[derive(Debug)]
pub struct Tables {
    ist: arrayvec::ArrayVec<Stack, 4>,
    tables: alloc::boxed::Box<exo_arch::gdt::CpuTables>,
}

impl Tables {
    /// The tables for good (loaded by a CPU, which keeps using them and their stacks).
    pub fn keep(self) -> &'static mut exo_arch::gdt::CpuTables {
        alloc::boxed::Box::leak(self.tables)
    }

    /// Frees the tables and their IST stacks (no CPU ever loaded them).
    pub fn give_back(self) {
        self.ist.into_iter().for_each(memory::free_stack);
    }
}

/// What an AP could not be given, so it was not started.
#[derive(Debug, Clone, Copy)]
pub enum NotStartedWhy {
    /// Its kernel stack.
    KernelStack(memory::MemError),
    /// Its descriptor tables or their IST stacks.
    Tables(memory::MemError),
    /// Its per-CPU block (the heap is out).
    Block,
    /// Its per-CPU block, refused by `exo.ap_alloc_fail` (its stacks and tables, made
    /// first, were given back as for a real failure).
    Injected,
}

impl core::fmt::Display for NotStartedWhy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NotStartedWhy::KernelStack(e) => write!(f, "no kernel stack: {e}"),
            NotStartedWhy::Tables(e) => write!(f, "no descriptor tables or IST stacks: {e}"),
            NotStartedWhy::Block => write!(f, "no per-CPU block: out of memory"),
            NotStartedWhy::Injected => {
                write!(
                    f,
                    "no per-CPU block: out of memory (forced by exo.ap_alloc_fail)"
                )
            }
        }
    }
}

/// An AP that was not started. It has no CPU id: the APs after it take the ids in turn,
/// so the CPUs online keep contiguous ids (what the CPU table's users and the tests
/// expect of a machine with fewer CPUs).
#[derive(Debug, Clone, Copy)]
pub struct NotStarted {
    /// Its place in the list of APs to start (1 for the first: the CPU id it would have had
    /// had every AP before it been started).
    pub ap: u32,
    /// Its APIC id.
    pub apic_id: u32,
    /// Why.
    pub why: NotStartedWhy,
}

/// How the BSP's wait for the APs it started ended ([`wait_for_aps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Every AP started came online (or none was started).
    AllOnline,
    /// No AP made progress for the AP timeout.
    Quiet,
    /// The overall cap (`QUIET_PERIODS` timeouts) passed.
    Cap,
}

struct Plan {
    targets: Vec<Target>,
    /// `(apic_id, index into targets)`, sorted: an AP finds itself in O(log n).
    by_apic: Vec<(u32, u32)>,
    stacks: &'static [u64],
    stack_bounds: Vec<Stack>,
}

static PLAN: spin::Once<Plan> = spin::Once::new();
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// INIT IPIs sent (one per AP started): the tests' evidence that an AP not started was never
/// sent one.
static INITS_SENT: AtomicU32 = AtomicU32::new(0);
/// APs that finished their set-up (their block's `online` is set).
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// The BSP waits at most this many quiet periods in all (see [`wait_for_aps`]).
const QUIET_PERIODS: u64 = 8;

/// A target's states (`Target::state`).
const T_WAITING: u8 = 0;
const T_ARRIVED: u8 = 1;
const T_ONLINE: u8 = 2;
const T_ABANDONED: u8 = 3;
/// Its resources could not be allocated: never sent INIT or SIPI, never waited for; an AP
/// that arrives anyway (a stray SIPI) parks, as its swap from `T_WAITING` fails.
const T_NOT_STARTED: u8 = 4;

/// Fault injection (`exo.ap_stall_ms`): the AP with this APIC id stops after its arrival,
/// for `STALL_TICKS` and until the BSP has decided every target's fate (`DECIDED`).
static STALL_APIC: AtomicU32 = AtomicU32::new(u32::MAX);
static STALL_TICKS: AtomicU64 = AtomicU64::new(0);
static DECIDED: AtomicBool = AtomicBool::new(false);

/// Arms `exo.ap_stall_ms` for the AP with APIC id `apic_id`: it arrives in time, then stops
/// for `ticks` TSC ticks and until the BSP has given up on it, so it can come online only
/// after it was reported missing (it must park instead).
pub fn set_ap_stall(apic_id: u32, ticks: u64, split: bool) {
    STALL_TICKS.store(ticks, Ordering::Relaxed);
    STALL_SPLIT.store(split, Ordering::Relaxed);
    STALL_APIC.store(apic_id, Ordering::Release);
}

/// Fault injection (`exo.ap_stall_split`): the stalled AP stops between taking its tables
/// and taking its block, not before both.
static STALL_SPLIT: AtomicBool = AtomicBool::new(false);

/// Fault injection (`exo.ap_panic_early`): the AP with this APIC id panics once it arrives.
static PANIC_APIC: AtomicU32 = AtomicU32::new(u32::MAX);

/// Arms `exo.ap_panic_early` for the AP with APIC id `apic_id`.
pub fn set_ap_panic(apic_id: u32) {
    PANIC_APIC.store(apic_id, Ordering::Release);
}

/// Fault injection (`exo.ap_fault_early`): the AP with this APIC id executes `ud2` once it
/// arrives (a #UD before its per-CPU block and before `load_idt`).
static FAULT_APIC: AtomicU32 = AtomicU32::new(u32::MAX);

/// Arms `exo.ap_fault_early` for the AP with APIC id `apic_id`.
pub fn set_ap_fault(apic_id: u32) {
    FAULT_APIC.store(apic_id, Ordering::Release);
}

/// Fault injection (`exo.ap_alloc_fail`): the per-CPU block of the AP at this place in the
/// list to start (1 for the first) is refused, as if the heap were out.
static ALLOC_FAIL_AP: AtomicU32 = AtomicU32::new(u32::MAX);

/// Fault injection (`exo.ap_lists_fail=1`): the bring-up's lists are refused as if memory
/// were out, so no AP is started.
static LISTS_FAIL: AtomicBool = AtomicBool::new(false);

/// Makes the bring-up's list allocation fail (`exo.ap_lists_fail`).
pub fn set_ap_lists_fail() {
    LISTS_FAIL.store(true, Ordering::Release);
}

/// Arms `exo.ap_alloc_fail` for the `ap`-th AP to start (1 for the first): its per-CPU
/// block's allocation fails, after its stacks and tables were made (they are given back),
/// so it must not be started.
pub fn set_ap_alloc_fail(ap: u32) {
    ALLOC_FAIL_AP.store(ap, Ordering::Release);
}

fn stall_if_asked(apic_id: u32, split_point: bool) {
    if !split_point && PANIC_APIC.load(Ordering::Acquire) == apic_id {
        panic!("deliberate panic requested by exo.ap_panic_early (before this AP's per-CPU block)");
    }
    if !split_point && FAULT_APIC.load(Ordering::Acquire) == apic_id {
        exo_arch::cpu::undefined_instruction();
    }
    if STALL_APIC.load(Ordering::Acquire) != apic_id
        || STALL_SPLIT.load(Ordering::Relaxed) != split_point
    {
        return;
    }
    let end = exo_arch::tsc::rdtsc().saturating_add(STALL_TICKS.load(Ordering::Relaxed));
    while exo_arch::tsc::rdtsc() < end || !DECIDED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
}

/// What happened to the APs.
#[derive(Debug)]
pub struct SmpReport {
    /// CPUs online, BSP included.
    pub online: u32,
    /// CPUs expected (BSP + usable MADT entries).
    pub expected: u32,
    /// APIC ids that did not answer by the deadline.
    pub missing: Vec<u32>,
    /// APs not started: their resources could not be allocated.
    pub not_started: Vec<NotStarted>,
    /// How the wait for the APs started ended.
    pub wait_end: WaitEnd,
    /// The BSP waited, after the wait, for an AP that had arrived and was setting itself
    /// up ([`decide`]).
    pub settled: bool,
    /// APs given up on whose tables, IST stacks and per-CPU block were freed, their AP
    /// not having taken them ([`decide`]).
    pub given_back: u32,
    /// Why no AP was started at all, when the bring-up's own lists could not be allocated
    /// (then `not_started` could not be either: the caller reports every AP it asked for).
    pub none_started: Option<&'static str>,
}

/// Prepares per-CPU tables and IST stacks (#DF, NMI, #MC, #DB) for `cpu` (kernel stack
/// separately, per ticket), kept for good. On failure nothing is kept: the stacks made
/// before it are freed (until 2026-12-05 they were left allocated, one set per CPU that
/// failed; found by review).
pub fn prepare_tables(
    rsp0: u64,
) -> Result<&'static mut exo_arch::gdt::CpuTables, memory::MemError> {
    prepare_owned_tables(rsp0).map(Tables::keep)
}

/// [`prepare_tables`], owned: the caller keeps or gives back.
fn prepare_owned_tables(rsp0: u64) -> Result<Tables, memory::MemError> {
    let mut stacks = arrayvec::ArrayVec::<memory::Stack, 4>::new();
    let give_back = |stacks: arrayvec::ArrayVec<memory::Stack, 4>| {
        stacks.into_iter().for_each(memory::free_stack);
    };
    for _ in 0..4 {
        match memory::alloc_stack(IST_PAGES) {
            Ok(s) => stacks.push(s),
            Err(e) => {
                give_back(stacks);
                return Err(e);
            }
        }
    }
    let tops = [stacks[0].top, stacks[1].top, stacks[2].top, stacks[3].top];
    match kalloc::try_box(exo_arch::gdt::CpuTables::new(tops, rsp0)) {
        Ok(tables) => Ok(Tables {
            ist: stacks,
            tables,
        }),
        Err(_) => {
            give_back(stacks);
            Err(memory::MemError::OutOfMemory)
        }
    }
}

/// An AP's resources, made before it is started.
struct ApResources {
    kstack: Stack,
    tables: Tables,
    block: alloc::boxed::Box<cpus::Block>,
}

/// Makes everything the `ap`-th AP to start needs as CPU `cpu`, or nothing: what was made
/// before a failure is given back.
fn prepare_ap(ap: u32, cpu: CpuId, apic_id: u32) -> Result<ApResources, NotStartedWhy> {
    let kstack = memory::alloc_stack(KSTACK_PAGES).map_err(NotStartedWhy::KernelStack)?;
    let tables = match prepare_owned_tables(0) {
        Ok(t) => t,
        Err(e) => {
            memory::free_stack(kstack);
            return Err(NotStartedWhy::Tables(e));
        }
    };
    let block = if ALLOC_FAIL_AP.load(Ordering::Acquire) == ap {
        Err(NotStartedWhy::Injected)
    } else {
        cpus::new_block(cpu, apic_id).map_err(|_| NotStartedWhy::Block)
    };
    match block {
        Ok(block) => Ok(ApResources {
            kstack,
            tables,
            block,
        }),
        Err(why) => {
            tables.give_back();
            memory::free_stack(kstack);
            Err(why)
        }
    }
}

/// INIT IPIs the bring-up sent.
pub fn inits_sent() -> u32 {
    INITS_SENT.load(Ordering::Relaxed)
}

fn spin_us(us: u64) {
    Deadline::after_us(us).spin_until();
}

/// Starts every AP in `apic_ids` (the BSP's own id excluded by the caller) and waits for
/// them, at most `timeout_ms` without progress. CPU ids are assigned in list order starting
/// at 1; an AP whose resources cannot be allocated is not started and takes no id.
pub fn start_aps(apic_ids: &[u32], timeout_ms: u64, nx: bool, final_cr3: u64) -> SmpReport {
    let n = apic_ids.len();
    let mut report = SmpReport {
        online: 1,
        expected: n as u32 + 1,
        missing: Vec::new(),
        not_started: Vec::new(),
        wait_end: WaitEnd::AllOnline,
        settled: false,
        given_back: 0,
        none_started: None,
    };
    if n == 0 {
        return report;
    }
    // Every list at its full size first, fallibly: the pushes below cannot allocate. Out of
    // memory here starts no AP (said, never a panic).
    let mut targets: Vec<Target> = Vec::new();
    let mut by_apic: Vec<(u32, u32)> = Vec::new();
    let mut tops: Vec<u64> = Vec::new();
    let mut stack_bounds: Vec<Stack> = Vec::new();
    let reserved = !LISTS_FAIL.load(Ordering::Acquire)
        && targets.try_reserve_exact(n).is_ok()
        && by_apic.try_reserve_exact(n).is_ok()
        && tops.try_reserve_exact(n).is_ok()
        && stack_bounds.try_reserve_exact(n).is_ok()
        && report.missing.try_reserve_exact(n).is_ok()
        && report.not_started.try_reserve_exact(n).is_ok();
    if !reserved {
        error!("no memory for the bring-up lists of {n} APs: starting none");
        report.none_started = Some(if LISTS_FAIL.load(Ordering::Acquire) {
            "no memory for the bring-up lists (forced by exo.ap_lists_fail)"
        } else {
            "no memory for the bring-up lists"
        });
        return report;
    }
    let mut next = CpuId(1);
    for (i, &id) in apic_ids.iter().enumerate() {
        let ap = i as u32 + 1;
        let cpu = next;
        let (cpu, state, tables, block) = match prepare_ap(ap, cpu, id) {
            Ok(r) => {
                next = CpuId(next.0 + 1);
                tops.push(r.kstack.top);
                stack_bounds.push(r.kstack);
                (cpu, T_WAITING, Some(r.tables), Some(r.block))
            }
            Err(why) => {
                error!("AP {ap} (APIC id {id}) not started: {why}; continuing without it");
                report.not_started.push(NotStarted {
                    ap,
                    apic_id: id,
                    why,
                });
                // No CPU id: the next AP takes this one.
                (CpuId(u32::MAX), T_NOT_STARTED, None, None)
            }
        };
        by_apic.push((id, i as u32));
        targets.push(Target {
            apic_id: id,
            cpu,
            state: AtomicU8::new(state),
            tables: spin::Mutex::new(tables),
            block: spin::Mutex::new(block),
        });
    }
    by_apic.sort_unstable();
    // One kernel stack per AP started, taken by ticket (arrival order).
    let stacks: &'static [u64] = tops.leak();
    crate::sys::install_trampoline(final_cr3, nx, stacks, ap_entry);
    let plan = PLAN.call_once(|| Plan {
        targets,
        by_apic,
        stacks,
        stack_bounds,
    });
    let started = || {
        plan.targets
            .iter()
            .filter(|t| t.state.load(Ordering::Acquire) != T_NOT_STARTED)
    };

    // INIT to the APs started, in parallel, then the architectural 10 ms.
    for t in started() {
        INITS_SENT.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = apic::send_ipi(Dest::Id(t.apic_id), Delivery::Init) {
            warn!("INIT to APIC id {} failed: {e}", t.apic_id);
        }
    }
    Deadline::after_ms(10).spin_until();
    let sipi = exo_arch::smp::sipi_vector();
    for t in started() {
        let _ = apic::send_ipi(Dest::Id(t.apic_id), Delivery::StartUp(sipi));
    }
    spin_us(200);
    for t in plan
        .targets
        .iter()
        .filter(|t| t.state.load(Ordering::Acquire) == T_WAITING)
    {
        let _ = apic::send_ipi(Dest::Id(t.apic_id), Delivery::StartUp(sipi));
    }
    report.wait_end = wait_for_aps(plan.stacks.len() as u32, timeout_ms);
    // From here an AP arriving late parks itself (and the `exo.ap_delay_ms` one is let go).
    exo_arch::smp::close_door();
    (report.settled, report.given_back) = decide(plan, timeout_ms, &mut report.missing);
    for id in &report.missing {
        error!(
            "CPU with APIC id {id} did not come online ({timeout_ms} ms without progress); continuing without it"
        );
    }
    report.online = cpus::online_count();
    report
}

/// The end of the wait: an AP that arrived and is still setting itself up gets `settle_ms`
/// more; then every target not committed to coming online is given up (its AP parks when
/// it next looks), and the ones committed are waited for (a few instructions away). Pushes
/// the APIC ids given up onto `missing` (room for every target is reserved); returns whether
/// it waited for an arrived AP, and how many given up gave their tables back. Targets never started are neither waited for nor missing.
fn decide(plan: &Plan, settle_ms: u64, missing: &mut Vec<u32>) -> (bool, u32) {
    let settling = |t: &Target| t.state.load(Ordering::Acquire) == T_ARRIVED;
    let settled = plan.targets.iter().any(settling);
    let d = Deadline::after_ms(settle_ms);
    while plan.targets.iter().any(settling) && !d.passed() {
        core::hint::spin_loop();
    }
    let mut given_back = 0;
    for t in &plan.targets {
        let swap = |from| {
            t.state
                .compare_exchange(from, T_ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        let given_up =
            swap(T_WAITING) || swap(T_ARRIVED) || t.state.load(Ordering::Acquire) == T_ABANDONED;
        if !given_up {
            continue;
        }
        if missing.len() < missing.capacity() {
            missing.push(t.apic_id);
        }
        // What its AP has not taken goes back: the AP takes its tables and block under these
        // locks after its arrival, and one that finds either gone halts before it touches
        // anything (`ap_entry`); one given up on before it arrived never looks. Until
        // 2026-12-05 they were kept (the four IST stacks' 64 KiB and more, per CPU that did
        // not come online). Kept for good: what an AP already took (it may have loaded its
        // tables: its TSS names the IST stacks an NMI to the parked CPU runs on), and every
        // kernel stack (taken by ticket: a late AP runs on one before it finds out it was
        // given up on).
        let tables = t.tables.lock().take();
        let block = t.block.lock().take();
        if let Some(tables) = tables {
            tables.give_back();
            given_back += 1;
        }
        drop(block);
    }
    DECIDED.store(true, Ordering::Release);
    let flag_up =
        |t: &Target| cpus::get(t.cpu).is_some_and(|b| b.ext.online.load(Ordering::Acquire));
    let d = Deadline::after_ms(settle_ms.saturating_mul(QUIET_PERIODS));
    while let Some(t) = plan
        .targets
        .iter()
        .find(|t| t.state.load(Ordering::Acquire) == T_ONLINE && !flag_up(t))
    {
        if d.passed() {
            panic!(
                "CPU {} (APIC id {}) committed to coming online and did not finish",
                t.cpu.0, t.apic_id
            );
        }
        core::hint::spin_loop();
    }
    (settled, given_back)
}

/// Waits until `want` APs are online, or until no AP has made progress (taken a ticket,
/// arrived, come online) for `quiet_ms`, or `QUIET_PERIODS` times that in all. On hardware
/// every AP is online within milliseconds. Under TCG a vCPU is a host thread, and a loaded
/// or cold host (CI's first runs fault in guest memory) took 24 s to bring 287 of 288 to the
/// kernel and 35 s more to bring them online: a fixed deadline from the SIPI reported CPUs
/// missing that were still coming. A CPU that never answers is still given up after
/// `quiet_ms` of silence.
fn wait_for_aps(want: u32, quiet_ms: u64) -> WaitEnd {
    let progress = || {
        (
            exo_arch::smp::tickets_taken(),
            ARRIVED.load(Ordering::Acquire),
            ONLINE.load(Ordering::Acquire),
        )
    };
    let cap = Deadline::after_ms(quiet_ms.saturating_mul(QUIET_PERIODS));
    let mut last = progress();
    let mut quiet = Deadline::after_ms(quiet_ms);
    loop {
        let now = progress();
        // All online, or the overall cap reached.
        if now.2 == want {
            return WaitEnd::AllOnline;
        }
        if cap.passed() {
            return WaitEnd::Cap;
        }
        if now != last {
            last = now;
            quiet = Deadline::after_ms(quiet_ms);
        } else if quiet.passed() {
            return WaitEnd::Quiet;
        }
        core::hint::spin_loop();
    }
}

extern "C" fn ap_entry(ticket: u32) -> ! {
    exo_arch::cpu::enable_features();
    exo_arch::tlb::enable_pcid(exo_arch::tlb::pcid_enabled());
    let my_apic = exo_arch::cpu::apic_id_from_cpuid();
    let Some(plan) = PLAN.get() else {
        exo_arch::cpu::halt_forever()
    };
    let found = plan
        .by_apic
        .binary_search_by_key(&my_apic, |&(id, _)| id)
        .ok()
        .and_then(|k| plan.targets.get(plan.by_apic[k].1 as usize));
    let Some(t) = found else {
        // Not a CPU we started (stray SIPI): park quietly.
        exo_arch::cpu::halt_forever()
    };
    if exo_arch::smp::door_closed()
        || t.state
            .compare_exchange(T_WAITING, T_ARRIVED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        exo_arch::cpu::halt_forever();
    }
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    stall_if_asked(my_apic, false);
    let stack = plan.stack_bounds[ticket as usize];
    // Every target in `T_WAITING` was given both before its INIT (`prepare_ap`); either is
    // gone only if the BSP gave up on this CPU meanwhile and took it back (`decide`): halt
    // without touching what was taken here (it stays this CPU's, never used). One lock at a
    // time, each let go before a halt (the BSP takes the other next).
    let tables = t.tables.lock().take();
    stall_if_asked(my_apic, true);
    let block = t.block.lock().take();
    let (tables, block) = match (tables, block) {
        (Some(tables), Some(block)) => (tables, block),
        (tables, block) => {
            // Never dropped: a free here writes through `gs:` (the allocator's per-CPU
            // caches) on a CPU with no per-CPU block and no IDT, a triple fault. Until
            // 2026-12-05 a let-else dropped the half it had taken (found by review,
            // reproduced with the AP stalled between the two takes).
            core::mem::forget(tables);
            core::mem::forget(block);
            exo_arch::cpu::halt_forever()
        }
    };
    let (tables, block) = (tables.keep(), alloc::boxed::Box::leak(block));
    // The block's address is this CPU's kernel GS base from `install_this_cpu` on; the
    // paranoid trap entries find it beside the GDT.
    exo_arch::gdt::load(tables, core::ptr::from_mut(block) as u64);
    exo_arch::syscall::init_cpu();
    exo_arch::trap::load_idt();
    let block = cpus::install_this_cpu(block, (stack.bottom, stack.top));
    apic::enable_local(VEC_SPURIOUS, VEC_APIC_ERROR);
    // The last word is the BSP's if it gave up on this CPU meanwhile: then it parks.
    if t.state
        .compare_exchange(T_ARRIVED, T_ONLINE, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        exo_arch::cpu::halt_forever();
    }
    cpus::register_this_cpu(block);
    block
        .ext
        .online_tsc
        .store(exo_arch::tsc::rdtsc(), Ordering::Relaxed);
    block.ext.online.store(true, Ordering::Release);
    // A panic that began meanwhile may have sent its NMIs before this CPU was listed.
    cpus::halt_if_stopping(block);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    cpus::idle_loop()
}
