//! TLB shootdowns: after an address space's mappings are removed or restricted, every CPU
//! that may cache them invalidates them before the change is reported done. One request
//! at a time (a global lock, taken with interrupts enabled so its holder's targets and the
//! waiting initiators keep answering each other), sent as one IPI per target CPU, carried out
//! in the `VEC_TLB` handler, acknowledged through each target's `tlb_ack`, waited for with a
//! deadline: a CPU that never answers stops the machine (a stale translation would be a
//! silent memory-safety hole; waiting forever would hang).
//!
//! With PCIDs (`exo_arch::tlb::pcid_enabled`) a target invalidates the space's PCID whether
//! it runs that space now or not; without, only a target running it now has anything to
//! invalidate (a CR3 load flushed the others).

use crate::smp::cpus::{self, VEC_TLB};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_arch::tlb;
use exo_percpu::{CpuId, PreemptGuard};
use exo_sched::AtomicMask;

/// Above this many pages a target drops the whole space (one context flush) instead.
pub const MAX_PAGES: u64 = 32;
/// How long an initiator waits for all targets on hardware and under KVM.
pub const DEADLINE_MS: u64 = 5000;
/// The same under TCG (and other hypervisors), where a vCPU is a host thread that a loaded
/// host may leave unscheduled for a while. (The misses once blamed on load were a kernel bug,
/// fixed: waiting for CPUs the request was never sent to.) The deadline still ends every wait.
pub const DEADLINE_EMULATED_MS: u64 = 30_000;

/// The deadline of this machine (CPUID read once).
fn deadline_ms() -> u64 {
    static MS: AtomicU64 = AtomicU64::new(0);
    match MS.load(Ordering::Relaxed) {
        0 => {
            let ms = if exo_arch::cpu::emulated_or_foreign_hypervisor() {
                DEADLINE_EMULATED_MS
            } else {
                DEADLINE_MS
            };
            MS.store(ms, Ordering::Relaxed);
            ms
        }
        ms => ms,
    }
}

/// What to invalidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The space's root (physical) and PCID.
    pub root: u64,
    /// See `root`.
    pub pcid: u16,
    /// First page and page count (`pages == 0` or above [`MAX_PAGES`]: the whole space).
    pub start: u64,
    /// See `start`.
    pub pages: u64,
    /// Also make a target running this space switch to `kernel_root` (the space is dying).
    pub evict: bool,
    /// Kernel page tables were freed: drop every paging-structure cache entry and every
    /// non-global TLB entry of every PCID (the other fields are ignored).
    pub tables: bool,
}

impl Request {
    /// The request of [`reclaim_kernel_tables`].
    const TABLES: Request = Request {
        root: 0,
        pcid: 0,
        start: 0,
        pages: 0,
        evict: false,
        tables: true,
    };
}

/// Fair (first come, first served): a CPU waiting to shoot down waits for the requests
/// queued before it, each bounded by [`deadline_ms`]. The plain spin lock could lose the
/// race every time to CPUs shooting down in a loop, a wait without a bound (found by
/// review, 2026-12-04).
static LOCK: spin::mutex::TicketMutex<()> = spin::mutex::TicketMutex::new(());
static GEN: AtomicU64 = AtomicU64::new(0);
static ROOT: AtomicU64 = AtomicU64::new(0);
static PCID_EVICT: AtomicU64 = AtomicU64::new(0);
static START: AtomicU64 = AtomicU64::new(0);
static PAGES: AtomicU64 = AtomicU64::new(0);
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// Shootdowns carried out (initiated), for tests and reports.
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// The kernel tables' root, where an evicted CPU goes (set once at boot).
pub fn set_kernel_root(root: u64) {
    KERNEL_ROOT.store(root, Ordering::Relaxed);
}

/// Invalidates `r` on this CPU.
fn apply(r: &Request) {
    if r.tables {
        tlb::flush_all_contexts();
        return;
    }
    let running = tlb::current_root() == r.root;
    if r.evict && running {
        // The dying space is never entered again; the kernel tables share its kernel half.
        crate::sys::switch_space(KERNEL_ROOT.load(Ordering::Relaxed), 0, false);
    }
    if tlb::pcid_enabled() {
        if r.pages == 0 || r.pages > MAX_PAGES {
            tlb::invalidate_pcid(r.pcid);
        } else {
            for k in 0..r.pages {
                tlb::invalidate_pcid_addr(r.pcid, r.start + k * 4096);
            }
        }
    } else if running && !r.evict {
        if r.pages == 0 || r.pages > MAX_PAGES {
            tlb::flush_current();
        } else {
            for k in 0..r.pages {
                tlb::invlpg(r.start + k * 4096);
            }
        }
    }
}

/// Invalidates `r` on this CPU and on every other online CPU of `cpus`, and returns when all
/// have done it. Call with interrupts enabled (targets may be initiating too).
pub fn shootdown(cpus: &AtomicMask<'_>, r: Request) {
    shootdown_to(|| cpus.iter(), r);
}

/// Kernel stack page tables retired (`memory::retired_tables`) before a spawn or an idle CPU
/// reclaims them. Stacks are freed only when the scheduler's caches overflow, so this is
/// reached after a burst of thread ends; a reclaim costs one IPI per online CPU.
pub const RECLAIM_AT: u64 = 16;

/// Makes every online CPU drop its paging-structure caches, then gives the retired kernel
/// stack page tables back to the allocator (see `memory::RetiredTables`). Returns how many.
/// Does nothing with interrupts off (the tables wait for the next call). Called once
/// [`RECLAIM_AT`] tables wait, before a spawn (the scheduler) and by an idle CPU
/// (`cpus::idle_loop`). Its caller must hold no spin lock that a CPU may take with
/// interrupts off (that CPU could not answer); a spawner may hold one a process's threads
/// take with interrupts on (`thread_create` holds its space's read lock).
///
/// Nothing forces a reclaim, so it does not wait long: a CPU that has not answered within
/// [`RECLAIM_PATIENCE_MS`] (a long mailbox job, interrupts off) makes it give up, the tables
/// retired again for a later try (counted: [`RECLAIMS_DEFERRED`]). Until 2026-12-05 it
/// waited with the shootdown's deadline and stopped the machine when a CPU was busy longer
/// (a contention window above 5 s under KVM; found by review;
/// `smp.reclaim_waits_not_for_a_busy_cpu`).
pub fn reclaim_kernel_tables() -> u64 {
    // The machine's kind as `deadline_ms` found it (CPUID once, not per reclaim).
    let patience = if deadline_ms() == DEADLINE_EMULATED_MS {
        RECLAIM_PATIENCE_EMULATED_MS
    } else {
        RECLAIM_PATIENCE_MS
    };
    reclaim_within(Some(patience))
}

/// [`reclaim_kernel_tables`] with a patience of `patience_ms` instead of this machine's:
/// for tests that force the give-up and cannot afford the emulated patience (under icount
/// the busy CPUs' second of guest time costs about 40 s of host time: each `pause` of the
/// spinning CPUs ends a round-robin turn).
pub fn reclaim_kernel_tables_within(patience_ms: u64) -> u64 {
    reclaim_within(Some(patience_ms))
}

/// [`reclaim_kernel_tables`] that waits for every CPU with the shootdown's deadline (and
/// stops the machine past it): for tests and frame counts that need the tables back now,
/// whatever the host's scheduling.
pub fn reclaim_kernel_tables_waiting() -> u64 {
    with_reclaims_held(|n| n)
}

/// Reclaims the retired kernel stack page tables as [`reclaim_kernel_tables_waiting`], then
/// runs `f` (given how many were reclaimed) before any other reclaim can start: a frame
/// count (`harness::try_free_frames`) drains every CPU and reads the allocator inside, so
/// it never sees tables in the hands of a reclaim on another CPU (taken from the retired
/// list, not yet freed) or freed into that CPU's cache after its drain. Until 2026-12-05 a
/// count could run beside an idle CPU's reclaim and miss or double-count its tables. Waits
/// for a reclaim or a count under way (bounded), preemptible and running this CPU's
/// mailbox requests meanwhile; preemption is off once it holds the flag. With interrupts
/// off it reclaims nothing and runs `f(0)` (it could not answer the reclaim it would wait
/// for).
pub fn with_reclaims_held<R>(f: impl FnOnce(u64) -> R) -> R {
    if !exo_arch::cpu::interrupts_enabled() {
        return f(0);
    }
    // The longest hold: a reclaim's shootdown (its deadline; past it the machine stops)
    // and a count's drain of every CPU (5 s); the bound is both with a margin. The wait
    // runs this CPU's mailbox requests: a count holding the flag drains every CPU, this
    // one included, and a waiter spinning with preemption off (its first version) made
    // that drain time out (found by review).
    let limit = 2 * deadline_ms() + 10_000;
    let deadline = crate::smp::time::Deadline::after_ms(limit);
    let _np = loop {
        let np = PreemptGuard::new();
        if !RECLAIMING.swap(true, Ordering::Acquire) {
            break np;
        }
        drop(np);
        {
            let g = exo_percpu::IrqGuard::new();
            cpus::poll_mailbox(&g);
        }
        assert!(
            !deadline.passed(),
            "tlb: the reclaim flag of kernel page tables held past {limit} ms"
        );
        core::hint::spin_loop();
    };
    let n = reclaim_held(None);
    let r = f(n);
    RECLAIMING.store(false, Ordering::Release);
    r
}

/// Set while a reclaim has tables in hand or a count holds reclaims off
/// ([`with_reclaims_held`]).
static RECLAIMING: AtomicBool = AtomicBool::new(false);

/// A reclaim unless another one is under way (the tables then wait for the next).
fn reclaim_within(patience_ms: Option<u64>) -> u64 {
    if !exo_arch::cpu::interrupts_enabled() {
        return 0;
    }
    let _np = PreemptGuard::new();
    if RECLAIMING.swap(true, Ordering::Acquire) {
        RECLAIMS_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    let n = reclaim_held(patience_ms);
    RECLAIMING.store(false, Ordering::Release);
    n
}

/// The reclaim itself, with [`RECLAIMING`] held and interrupts on.
fn reclaim_held(patience_ms: Option<u64>) -> u64 {
    let r = crate::mm::memory::take_retired_tables();
    if r.count == 0 {
        return crate::mm::memory::release_tables(r);
    }
    // An IPI that could not be sent defers it at once (`shootdown_within`).
    if let Err(e) = shootdown_within(|| 0..cpus::capacity() as u32, Request::TABLES, patience_ms) {
        log::debug!("reclaim of {} page tables deferred: {e}", r.count);
        RECLAIMS_DEFERRED.fetch_add(1, Ordering::Relaxed);
        NEXT_TRY.store(
            crate::smp::time::Deadline::after_ms(RECLAIM_RETRY_MS).tsc(),
            Ordering::Relaxed,
        );
        crate::mm::memory::retire_again(r);
        return 0;
    }
    TABLE_RECLAIMS.fetch_add(1, Ordering::Relaxed);
    crate::mm::memory::release_tables(r)
}

/// How long a reclaim waits for the other CPUs before it gives up (see
/// [`reclaim_kernel_tables`]).
pub const RECLAIM_PATIENCE_MS: u64 = 100;
/// The same under emulation or a foreign hypervisor (a vCPU the host left unscheduled).
pub const RECLAIM_PATIENCE_EMULATED_MS: u64 = 1000;

/// After a reclaim gave up, the idle loops and spawns wait this long before they try again
/// (else every idle pass would spend [`RECLAIM_PATIENCE_MS`] on the busy CPU).
pub const RECLAIM_RETRY_MS: u64 = 1000;

/// TSC before which [`reclaim_due`] says no (a reclaim gave up).
static NEXT_TRY: AtomicU64 = AtomicU64::new(0);

/// Whether the idle loops and spawns should reclaim now: [`RECLAIM_AT`] tables retired,
/// and no reclaim gave up in the last [`RECLAIM_RETRY_MS`].
pub fn reclaim_due() -> bool {
    crate::mm::memory::retired_tables() >= RECLAIM_AT
        && exo_arch::tsc::rdtsc() >= NEXT_TRY.load(Ordering::Relaxed)
}

/// The TSC before which [`reclaim_due`] says no (0: no reclaim gave up yet), for tests'
/// reports.
pub fn reclaim_retry_at() -> u64 {
    NEXT_TRY.load(Ordering::Relaxed)
}

/// Reclaims not tried because another reclaim or a frame count held the flag
/// ([`with_reclaims_held`]); for tests.
pub static RECLAIMS_SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Reclaims given up because a CPU did not answer in time.
pub static RECLAIMS_DEFERRED: AtomicU64 = AtomicU64::new(0);

/// Reclaims of kernel page tables carried out, for tests and reports.
pub static TABLE_RECLAIMS: AtomicU64 = AtomicU64::new(0);

fn shootdown_to<I: Iterator<Item = u32>>(cpus: impl Fn() -> I, r: Request) {
    if let Err(e) = shootdown_within(cpus, r, None) {
        panic!("TLB shootdown: {e} (root {:#x})", r.root);
    }
}

/// Why a shootdown did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The IPI to this CPU could not be sent (this CPU's local APIC said why): the
    /// shootdown gave up at once, without waiting for anyone.
    NotSent(u32, apic::ApicError),
    /// This CPU did not acknowledge within the wait (the time in ms).
    Late(u32, u64),
}

impl core::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unanswered::NotSent(c, e) => write!(f, "the IPI to CPU {c} could not be sent ({e})"),
            Unanswered::Late(c, ms) => write!(f, "CPU {c} did not answer within {ms} ms"),
        }
    }
}

/// [`shootdown`] that reports, instead of stopping the machine, a CPU that did not answer
/// within `patience_ms` or an IPI that could not be sent: for tests (debug builds).
#[cfg(debug_assertions)]
pub fn try_shootdown(
    cpus: &AtomicMask<'_>,
    r: Request,
    patience_ms: u64,
) -> Result<(), Unanswered> {
    shootdown_within(|| cpus.iter(), r, Some(patience_ms))
}

/// The generation of the last shootdown request (for tests: [`stale_hold::arm`]).
#[cfg(debug_assertions)]
pub fn generation() -> u64 {
    GEN.load(Ordering::Acquire)
}

/// Sends the `VEC_TLB` IPI to CPU `cpu` (APIC id `apic_id`). Debug builds: fails with
/// `IcrTimeout`, sending nothing, when [`fail_next_send`] named this send.
fn send_tlb_ipi(me: u32, cpu: u32, apic_id: u32) -> Result<(), apic::ApicError> {
    #[cfg(debug_assertions)]
    if FAIL_SEND.load(Ordering::Relaxed) != 0
        && FAIL_SEND
            .compare_exchange(fail_key(me, cpu), 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        return Err(apic::ApicError::IcrTimeout);
    }
    let _ = (me, cpu);
    apic::send_ipi(Dest::Id(apic_id), Delivery::Fixed(VEC_TLB))
}

/// Debug builds: the next shootdown IPI CPU `from` sends to CPU `to` fails (`fail_key`;
/// 0: none).
#[cfg(debug_assertions)]
static FAIL_SEND: AtomicU64 = AtomicU64::new(0);

#[cfg(debug_assertions)]
fn fail_key(from: u32, to: u32) -> u64 {
    (u64::from(from) + 1) << 32 | u64::from(to)
}

/// Test support (debug builds): the next shootdown IPI that CPU `from` sends to CPU `to`
/// fails with `IcrTimeout` and is not sent, as a busy or refused xAPIC ICR would.
#[cfg(debug_assertions)]
pub fn fail_next_send(from: u32, to: u32) {
    FAIL_SEND.store(fail_key(from, to), Ordering::Release);
}

/// Takes request `generation` back from every CPU it was sent to (a shootdown that gives
/// up): a late handler on those CPUs then finds it was not sent there and applies nothing
/// (`handle_ipi`), so it cannot combine this request with the fields of the next one.
fn withdraw<I: Iterator<Item = u32>>(cpus: impl Fn() -> I, generation: u64) {
    for c in cpus() {
        if let Some(b) = cpus::get(CpuId(c)) {
            let _ =
                b.ext
                    .tlb_req
                    .compare_exchange(generation, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// The shootdown: `Err` if a CPU did not answer within `patience_ms` (`None`: the
/// machine's deadline, [`deadline_ms`]) or its IPI could not be sent (at once: until
/// 2026-12-05 a failed send was ignored, and the initiator waited out the whole deadline
/// for a CPU that was never asked, then blamed that CPU; found by review,
/// `smp.tlb_failed_send_is_reported_at_once`). Either way the request is withdrawn from the
/// CPUs it was sent to (see [`withdraw`]), so a late answer applies nothing.
fn shootdown_within<I: Iterator<Item = u32>>(
    cpus: impl Fn() -> I,
    r: Request,
    patience_ms: Option<u64>,
) -> Result<(), Unanswered> {
    debug_assert!(
        exo_arch::cpu::interrupts_enabled(),
        "TLB shootdown with interrupts off could deadlock"
    );
    let _np = PreemptGuard::new();
    let _l = LOCK.lock();
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    // Release stores (plain moves on x86): a handler that reads one of them also sees the
    // withdrawal of the request before (see `handle_ipi`).
    ROOT.store(r.root, Ordering::Release);
    PCID_EVICT.store(
        u64::from(r.pcid) | (u64::from(r.evict) << 32) | (u64::from(r.tables) << 33),
        Ordering::Release,
    );
    START.store(r.start, Ordering::Release);
    PAGES.store(r.pages, Ordering::Release);
    let generation = GEN.fetch_add(1, Ordering::Release) + 1;
    // The request must be visible before any IPI: an x2APIC ICR write (WRMSR) does not
    // order earlier stores.
    core::sync::atomic::fence(Ordering::SeqCst);
    let me = exo_percpu::cpu_id_hint().0;
    for c in cpus().filter(|&c| c != me) {
        if let Some(b) = cpus::get(CpuId(c)).filter(|b| b.ext.online.load(Ordering::Acquire)) {
            b.ext.tlb_req.store(generation, Ordering::Relaxed);
            if let Err(e) = send_tlb_ipi(me, c, b.hot.apic_id) {
                withdraw(&cpus, generation);
                return Err(Unanswered::NotSent(c, e));
            }
        }
    }
    apply(&r);
    let limit = patience_ms.unwrap_or_else(deadline_ms);
    let deadline = crate::smp::time::Deadline::after_ms(limit);
    for c in cpus().filter(|&c| c != me) {
        // Only the CPUs this request was sent to: the mask is live, and a CPU that marked
        // itself after the IPIs went out loaded the space after the change (its CR3 load
        // reads the new tables) and got no IPI to answer. Waiting for it hung the
        // initiator (seen in /threads case 5: new threads starting on other CPUs while
        // the main thread mprotects stack guards).
        let Some(b) =
            cpus::get(CpuId(c)).filter(|b| b.ext.tlb_req.load(Ordering::Relaxed) == generation)
        else {
            continue;
        };
        while b.ext.tlb_ack.load(Ordering::Acquire) < generation {
            if deadline.passed() {
                withdraw(&cpus, generation);
                return Err(Unanswered::Late(c, limit));
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}

/// `VEC_TLB` handlers that applied nothing: the current request was not sent to their CPU,
/// or was answered or withdrawn already (a late interrupt; see [`handle_ipi`]).
pub static STALE_IPIS: AtomicU64 = AtomicU64::new(0);

/// The `VEC_TLB` handler: carries out the current request and acknowledges it, if it was
/// sent to this CPU and not answered yet. Else the interrupt is a late one (left pending by
/// a reclaim that gave up on this CPU, or a second delivery after the answer) and no
/// initiator waits for it: it applies nothing and acknowledges nothing. Until 2026-12-05 it
/// applied whatever the fields held: a late handler could read them while an initiator
/// that did not target this CPU rewrote them, combine two requests (the evict of a dying
/// space, the root of the space this CPU runs) and evict a live space (found by review,
/// `smp.tlb_late_ipi_applies_no_other_request`). The check comes after the fields are
/// read: a request that was sent here stays in place until this CPU answers it or its
/// initiator withdraws it (`withdraw`, before the next request is written; the fields' loads
/// are acquire, so a field of the next request brings the withdrawal with it). It never
/// acknowledges a request it skipped: a request's initiator stores `tlb_req` after `GEN`,
/// and an acknowledgement read between the two would end its wait before this CPU flushed.
pub fn handle_ipi() {
    let generation = GEN.load(Ordering::Acquire);
    let pe = PCID_EVICT.load(Ordering::Acquire);
    #[cfg(debug_assertions)]
    let held = stale_hold::hold(generation);
    let r = Request {
        root: ROOT.load(Ordering::Acquire),
        pcid: (pe & 0xFFF) as u16,
        start: START.load(Ordering::Acquire),
        pages: PAGES.load(Ordering::Acquire),
        evict: pe >> 32 & 1 != 0,
        tables: pe >> 33 & 1 != 0,
    };
    let b = cpus::get(exo_percpu::cpu_id_hint());
    let mine = b.filter(|b| {
        b.ext.tlb_req.load(Ordering::Acquire) == generation
            && b.ext.tlb_ack.load(Ordering::Relaxed) < generation
    });
    if let Some(b) = mine {
        apply(&r);
        b.ext.tlb_flushes.fetch_add(1, Ordering::Relaxed);
        if !r.tables {
            b.ext.tlb_space_flushes.fetch_add(1, Ordering::Relaxed);
        }
        b.ext.tlb_ack.fetch_max(generation, Ordering::Release);
    } else {
        STALE_IPIS.fetch_add(1, Ordering::Relaxed);
    }
    #[cfg(debug_assertions)]
    if held {
        stale_hold::finish();
    }
    apic::eoi();
}

/// Test support (debug builds only): holds one `VEC_TLB` handler on a chosen CPU between
/// its loads of the request's evict word and its root, until a later request is written,
/// and records that CPU's root once the handler is done
/// (`smp.tlb_late_ipi_applies_no_other_request`).
#[cfg(debug_assertions)]
pub mod stale_hold {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// CPU id + 1 whose handler is held (0: off).
    static CPU: AtomicU64 = AtomicU64::new(0);
    /// The generation the held handler must have read.
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    static REACHED: AtomicBool = AtomicBool::new(false);
    static DONE: AtomicBool = AtomicBool::new(false);
    static ROOT_AFTER: AtomicU64 = AtomicU64::new(0);

    /// Holds the next handler on `cpu` that reads request `generation` (one handler).
    pub fn arm(cpu: u32, generation: u64) {
        REACHED.store(false, Ordering::Relaxed);
        DONE.store(false, Ordering::Relaxed);
        GENERATION.store(generation, Ordering::Relaxed);
        CPU.store(u64::from(cpu) + 1, Ordering::Release);
    }

    /// Disarms (a handler already held goes on as it was).
    pub fn disarm() {
        CPU.store(0, Ordering::Release);
    }

    /// Whether the armed handler is held now (or was).
    pub fn reached() -> bool {
        REACHED.load(Ordering::Acquire)
    }

    /// The held CPU's root once its handler is done.
    pub fn root_after() -> Option<u64> {
        DONE.load(Ordering::Acquire)
            .then(|| ROOT_AFTER.load(Ordering::Relaxed))
    }

    /// In the handler: if this is the armed one, says so and waits until a later request
    /// is written (10 s at most). Returns whether it was.
    #[inline(always)]
    pub(super) fn hold(generation: u64) -> bool {
        let me = u64::from(exo_percpu::cpu_id_hint().0) + 1;
        if CPU.load(Ordering::Relaxed) != me
            || GENERATION.load(Ordering::Relaxed) != generation
            || CPU
                .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        REACHED.store(true, Ordering::Release);
        crate::smp::time::Deadline::after_ms(10_000)
            .spin_until_or(|| super::GEN.load(Ordering::Acquire) != generation);
        true
    }

    /// The held handler is done: its CPU's root now.
    pub(super) fn finish() {
        ROOT_AFTER.store(exo_arch::tlb::current_root(), Ordering::Relaxed);
        DONE.store(true, Ordering::Release);
    }
}
