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
    /// The logical id it gets.
    pub cpu: CpuId,
    /// `T_WAITING`, `T_ARRIVED`, `T_ONLINE` or `T_ABANDONED` (module header).
    state: AtomicU8,
    /// Its descriptor tables and IST stacks, prepared by the BSP.
    pub tables: spin::Mutex<Option<&'static mut exo_arch::gdt::CpuTables>>,
    /// Its per-CPU block, allocated by the BSP.
    pub block: spin::Mutex<Option<&'static mut cpus::Block>>,
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
/// APs that finished their set-up (their block's `online` is set).
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// The BSP waits at most this many quiet periods in all (see [`wait_for_aps`]).
const QUIET_PERIODS: u64 = 8;

/// A target's states (`Target::state`).
const T_WAITING: u8 = 0;
const T_ARRIVED: u8 = 1;
const T_ONLINE: u8 = 2;
const T_ABANDONED: u8 = 3;

/// Fault injection (`exo.ap_stall_ms`): the AP with this APIC id stops after its arrival,
/// for `STALL_TICKS` and until the BSP has decided every target's fate (`DECIDED`).
static STALL_APIC: AtomicU32 = AtomicU32::new(u32::MAX);
static STALL_TICKS: AtomicU64 = AtomicU64::new(0);
static DECIDED: AtomicBool = AtomicBool::new(false);

/// Arms `exo.ap_stall_ms` for the AP with APIC id `apic_id`: it arrives in time, then stops
/// for `ticks` TSC ticks and until the BSP has given up on it, so it can come online only
/// after it was reported missing (it must park instead).
pub fn set_ap_stall(apic_id: u32, ticks: u64) {
    STALL_TICKS.store(ticks, Ordering::Relaxed);
    STALL_APIC.store(apic_id, Ordering::Release);
}

/// Fault injection (`exo.ap_panic_early`): the AP with this APIC id panics once it arrives.
static PANIC_APIC: AtomicU32 = AtomicU32::new(u32::MAX);

/// Arms `exo.ap_panic_early` for the AP with APIC id `apic_id`.
pub fn set_ap_panic(apic_id: u32) {
    PANIC_APIC.store(apic_id, Ordering::Release);
}

fn stall_if_asked(apic_id: u32) {
    if PANIC_APIC.load(Ordering::Acquire) == apic_id {
        panic!("deliberate panic requested by exo.ap_panic_early (before this AP's per-CPU block)");
    }
    if STALL_APIC.load(Ordering::Acquire) != apic_id {
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
}

/// Prepares per-CPU tables and IST stacks (#DF, NMI, #MC, #DB) for `cpu` (kernel stack
/// separately, per ticket). On failure nothing is kept: the stacks made before it are freed
/// (until 2026-12-05 they were left allocated, one set per CPU that failed; found by
/// review).
pub fn prepare_tables(
    rsp0: u64,
) -> Result<&'static mut exo_arch::gdt::CpuTables, memory::MemError> {
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
    crate::mm::kalloc::try_leak(exo_arch::gdt::CpuTables::new(tops, rsp0)).map_err(|_| {
        give_back(stacks);
        memory::MemError::OutOfMemory
    })
}

fn spin_us(us: u64) {
    Deadline::after_us(us).spin_until();
}

/// Starts every AP in `apic_ids` (the BSP's own id excluded by the caller) and waits for
/// them, at most `timeout_ms`. CPU ids are assigned in list order starting at 1.
pub fn start_aps(apic_ids: &[u32], timeout_ms: u64, nx: bool, final_cr3: u64) -> SmpReport {
    let n = apic_ids.len();
    if n == 0 {
        return SmpReport {
            online: 1,
            expected: 1,
            missing: Vec::new(),
        };
    }
    let mut stack_bounds = Vec::with_capacity(n);
    let mut tops = Vec::with_capacity(n);
    for _ in 0..n {
        match memory::alloc_stack(KSTACK_PAGES) {
            Ok(s) => {
                tops.push(s.top);
                stack_bounds.push(s);
            }
            Err(e) => {
                error!("no stack for AP #{}: {e}; starting fewer APs", tops.len());
                break;
            }
        }
    }
    let stacks: &'static [u64] = alloc::boxed::Box::leak(tops.into_boxed_slice());
    let targets: Vec<Target> = apic_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| Target {
            apic_id: id,
            cpu: CpuId(i as u32 + 1),
            state: AtomicU8::new(T_WAITING),
            tables: spin::Mutex::new(None),
            block: spin::Mutex::new(None),
        })
        .collect();
    let mut by_apic: Vec<(u32, u32)> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.apic_id, i as u32))
        .collect();
    by_apic.sort_unstable();
    crate::sys::install_trampoline(final_cr3, nx, stacks, ap_entry);
    let plan = PLAN.call_once(|| Plan {
        targets,
        by_apic,
        stacks,
        stack_bounds,
    });

    // INIT to all, in parallel; prepare their tables during the 10 ms INIT delay.
    for t in &plan.targets {
        if let Err(e) = apic::send_ipi(Dest::Id(t.apic_id), Delivery::Init) {
            warn!("INIT to APIC id {} failed: {e}", t.apic_id);
        }
    }
    let init_done = Deadline::after_ms(10);
    for t in &plan.targets {
        match prepare_tables(0) {
            Ok(tab) => *t.tables.lock() = Some(tab),
            Err(e) => error!("no descriptor tables for APIC id {}: {e}", t.apic_id),
        }
        match cpus::new_block(t.cpu, t.apic_id) {
            Ok(b) => *t.block.lock() = Some(b),
            Err(e) => error!(
                "no per-CPU block for APIC id {}: {e}; it will not start",
                t.apic_id
            ),
        }
    }
    init_done.spin_until();
    let sipi = exo_arch::smp::sipi_vector();
    for t in &plan.targets {
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
    wait_for_aps(plan.stacks.len() as u32, timeout_ms);
    // From here an AP arriving late parks itself (and the `exo.ap_delay_ms` one is let go).
    exo_arch::smp::close_door();
    let missing = decide(plan, timeout_ms);
    for id in &missing {
        error!(
            "CPU with APIC id {id} did not come online ({timeout_ms} ms without progress); continuing without it"
        );
    }
    SmpReport {
        online: cpus::online_count(),
        expected: n as u32 + 1,
        missing,
    }
}

/// The end of the wait: an AP that arrived and is still setting itself up gets `settle_ms`
/// more; then every target not committed to coming online is given up (its AP parks when
/// it next looks), and the ones committed are waited for (a few instructions away). Returns
/// the APIC ids given up.
fn decide(plan: &Plan, settle_ms: u64) -> Vec<u32> {
    let settling = |t: &Target| t.state.load(Ordering::Acquire) == T_ARRIVED;
    let d = Deadline::after_ms(settle_ms);
    while plan.targets.iter().any(settling) && !d.passed() {
        core::hint::spin_loop();
    }
    let missing: Vec<u32> = plan
        .targets
        .iter()
        .filter(|t| {
            [T_WAITING, T_ARRIVED].iter().any(|&from| {
                t.state
                    .compare_exchange(from, T_ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            }) || t.state.load(Ordering::Acquire) == T_ABANDONED
        })
        .map(|t| t.apic_id)
        .collect();
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
    missing
}

/// Waits until `want` APs are online, or until no AP has made progress (taken a ticket,
/// arrived, come online) for `quiet_ms`, or `QUIET_PERIODS` times that in all. On hardware
/// every AP is online within milliseconds. Under TCG a vCPU is a host thread, and a loaded
/// or cold host (CI's first runs fault in guest memory) took 24 s to bring 287 of 288 to the
/// kernel and 35 s more to bring them online: a fixed deadline from the SIPI reported CPUs
/// missing that were still coming. A CPU that never answers is still given up after
/// `quiet_ms` of silence.
fn wait_for_aps(want: u32, quiet_ms: u64) {
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
        if now.2 == want || cap.passed() {
            return;
        }
        if now != last {
            last = now;
            quiet = Deadline::after_ms(quiet_ms);
        } else if quiet.passed() {
            return;
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
    stall_if_asked(my_apic);
    let stack = plan.stack_bounds[ticket as usize];
    let (Some(tables), Some(block)) = (t.tables.lock().take(), t.block.lock().take()) else {
        exo_arch::cpu::halt_forever()
    };
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
