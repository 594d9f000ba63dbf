//! The CPU table: every CPU's per-CPU block, the run-on-CPU mailbox (the pre-scheduler way
//! for the harness and tests to place work on a CPU), IPIs and the idle loop.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_percpu::{CpuId, IrqGuard, PerCpu, Pinned};

/// Most CPUs the kernel starts: QEMU's q35 maximum (x2APIC with interrupt remapping). Usable
/// MADT entries beyond it are reported by APIC id, never silently dropped. Nothing is sized
/// from this constant: the CPU table is allocated at boot for the CPUs the MADT lists.
pub const CPU_LIMIT: usize = exo_acpi::plan::KERNEL_CPU_LIMIT;

/// IPI vector: "look at your mailbox".
pub const VEC_WAKE: u8 = 0xF0;
/// IPI vector: test ping, counted and acknowledged.
pub const VEC_PING: u8 = 0xF1;
/// Local APIC timer vector.
pub const VEC_TIMER: u8 = 0xF2;
/// Vector of the TLB shootdown IPI (`tlb`).
pub const VEC_TLB: u8 = 0xF3;
/// First vector of device interrupts (MSI-X messages; `dev::irq` hands them out).
pub const VEC_DEVICE_BASE: u8 = 0x40;
/// Device vectors: `VEC_DEVICE_BASE..VEC_DEVICE_BASE + VEC_DEVICE_COUNT`.
pub const VEC_DEVICE_COUNT: u8 = 64;
/// APIC error vector.
pub const VEC_APIC_ERROR: u8 = 0xFE;
/// Spurious vector.
pub const VEC_SPURIOUS: u8 = 0xFF;

/// A function run on another CPU with an argument word, returning a result word.
pub type RemoteFn = fn(u64) -> u64;

/// The BSP's per-CPU block: static, so it exists before the allocator does.
static mut BSP_BLOCK: Block = exo_percpu::PerCpu::new(CpuId(0), 0, 0, CpuLocal::new());

/// The BSP's block, handed out once.
pub fn take_bsp_block(apic_id: u32, kstack_top: u64) -> &'static mut Block {
    static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    let b = crate::sys::take_once(&raw mut BSP_BLOCK, &TAKEN);
    b.hot.apic_id = apic_id;
    b.hot.kstack_top.store(kstack_top, Ordering::Relaxed);
    b
}

/// A CPU's answer to one exchange of the boot TSC check: its TSC, then the exchange's
/// sequence number (release), on a line of their own.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct TscResponse {
    /// The sequence number of the last answered exchange.
    pub seq: AtomicU64,
    /// The responder's TSC when it saw that exchange's request.
    pub tsc: AtomicU64,
}

impl TscResponse {
    const fn new() -> Self {
        TscResponse {
            seq: AtomicU64::new(0),
            tsc: AtomicU64::new(0),
        }
    }
}

/// The kernel's per-CPU state (the `E` of `PerCpu<E>`).
#[derive(Debug)]
pub struct CpuLocal {
    /// Set once the CPU finished its bring-up.
    pub online: AtomicBool,
    /// Bounds of the current kernel stack, for backtraces.
    pub stack_lo: AtomicU64,
    /// See `stack_lo`.
    pub stack_hi: AtomicU64,
    /// Work posted by other CPUs: one request at a time, claimed by CAS (function word: a
    /// `RemoteFn` written only by [`post`]; notify word: the poster's APIC id + 1, woken by
    /// an IPI when the request is done, or 0).
    mailbox: exo_sched::RequestMailbox,
    /// Set while this CPU runs a mailbox request ([`poll_mailbox`]): a poll from inside it
    /// runs nothing (the mailbox hands out the running request until it completes, so
    /// the poll would run it again, recursively).
    in_job: AtomicBool,
    /// Ping IPIs received.
    pub pings: AtomicU64,
    /// #BP traps taken.
    pub breakpoints: AtomicU64,
    /// #PF faults fixed up by the probe path.
    pub fixups: AtomicU64,
    /// TSC offset to the BSP, and its uncertainty (ticks).
    pub tsc_offset: AtomicI64,
    /// See `tsc_offset`; `u64::MAX` until measured.
    pub tsc_uncertainty: AtomicU64,
    /// This CPU's answers to the boot TSC check (`tsc_sync`), written only by this CPU: one
    /// line per CPU, so a responder that answers after the boot CPU gave up on it cannot
    /// overwrite the next CPU's answer.
    pub tsc_resp: TscResponse,
    /// Cycle stamp when this CPU came online.
    pub online_tsc: AtomicU64,
    /// The last TLB shootdown this CPU carried out (`tlb::shootdown`'s generation).
    pub tlb_ack: AtomicU64,
    /// The last shootdown generation sent to this CPU (written by the initiator, under the
    /// shootdown lock): the initiator waits only for the CPUs it sent to.
    pub tlb_req: AtomicU64,
    /// TLB shootdown requests this CPU answered.
    pub tlb_flushes: AtomicU64,
    /// Those of them for an address space's mappings (not a reclaim of kernel tables, which
    /// goes to every CPU).
    pub tlb_space_flushes: AtomicU64,
    /// Times the scheduler armed this CPU's timer (`timer::scheduler_armed`): a backstop
    /// restores the LVT it unmasked only if none came during its wait.
    pub timer_arms: AtomicU64,
    /// Where a panic's stop-all NMI found this CPU: the interrupted RIP (0 until then), its
    /// RFLAGS and CS (the panic report prints them for every CPU).
    pub stopped_rip: AtomicU64,
    /// See `stopped_rip`.
    pub stopped_rflags: AtomicU64,
    /// See `stopped_rip`.
    pub stopped_cs: AtomicU64,
    /// See `stopped_rip`: the local APIC's highest in-service and pending vectors then
    /// (bits 0..8 and 8..16, each + 1; 0 = none).
    pub stopped_apic: AtomicU64,
    /// This CPU panicked while another CPU was already reporting: its reason, for that
    /// report (written by this CPU before it halts, read by the reporter with `try_lock`).
    pub panic_note: spin::Mutex<arrayvec::ArrayString<200>>,
    /// `panic_note` holds this CPU's reason.
    pub panicked_too: AtomicBool,
    /// This CPU's console ring (user `write`), set by the `user` layer at the first write
    /// on this CPU; its producer is this CPU only.
    pub console: spin::Once<&'static crate::console::CpuRing>,
}

impl CpuLocal {
    /// Fresh state (offline, no TSC estimate yet).
    pub const fn new() -> Self {
        CpuLocal {
            online: AtomicBool::new(false),
            stack_lo: AtomicU64::new(0),
            stack_hi: AtomicU64::new(0),
            mailbox: exo_sched::RequestMailbox::new(),
            in_job: AtomicBool::new(false),
            pings: AtomicU64::new(0),
            breakpoints: AtomicU64::new(0),
            fixups: AtomicU64::new(0),
            tsc_offset: AtomicI64::new(0),
            tsc_uncertainty: AtomicU64::new(u64::MAX),
            tsc_resp: TscResponse::new(),
            online_tsc: AtomicU64::new(0),
            tlb_ack: AtomicU64::new(0),
            tlb_req: AtomicU64::new(0),
            tlb_flushes: AtomicU64::new(0),
            tlb_space_flushes: AtomicU64::new(0),
            timer_arms: AtomicU64::new(0),
            stopped_rip: AtomicU64::new(0),
            stopped_rflags: AtomicU64::new(0),
            stopped_cs: AtomicU64::new(0),
            stopped_apic: AtomicU64::new(0),
            panic_note: spin::Mutex::new(arrayvec::ArrayString::new_const()),
            panicked_too: AtomicBool::new(false),
            console: spin::Once::new(),
        }
    }
}

impl Default for CpuLocal {
    fn default() -> Self {
        Self::new()
    }
}

/// One CPU's block.
pub type Block = PerCpu<CpuLocal>;

/// The CPU table, sized once at boot from the MADT ([`size_table`]); slot = CPU id.
static TABLE: spin::Once<&'static [spin::Once<&'static Block>]> = spin::Once::new();
/// The BSP's block, registered before the MADT is read (the allocator needs it).
static BSP: spin::Once<&'static Block> = spin::Once::new();
static COUNT: AtomicU32 = AtomicU32::new(0);

/// Why the CPU table could not be sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// More CPUs than [`CPU_LIMIT`].
    TooMany(usize),
    /// No memory for the table.
    OutOfMemory,
    /// Already sized.
    AlreadySized,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::TooMany(n) => write!(f, "{n} CPUs exceed the limit of {CPU_LIMIT}"),
            TableError::OutOfMemory => write!(f, "no memory for the CPU table"),
            TableError::AlreadySized => write!(f, "the CPU table is already sized"),
        }
    }
}

/// Sizes the CPU table for `n` CPUs (the BSP included), once, after the MADT is read and
/// before any AP is prepared. The BSP, registered earlier, takes slot 0.
pub fn size_table(n: usize) -> Result<(), TableError> {
    if n > CPU_LIMIT {
        return Err(TableError::TooMany(n));
    }
    if TABLE.is_completed() {
        return Err(TableError::AlreadySized);
    }
    let table = crate::mm::kalloc::try_leak_slice(n.max(1), spin::Once::new)
        .map_err(|_| TableError::OutOfMemory)?;
    if let Some(&bsp) = BSP.get() {
        table[0].call_once(|| bsp);
    }
    let table: &'static [spin::Once<&'static Block>] = table;
    TABLE.call_once(|| table);
    Ok(())
}

/// CPU slots in the table (1 before it is sized: the BSP alone).
pub fn capacity() -> usize {
    TABLE.get().map_or(1, |t| t.len())
}

/// A block for an AP, allocated by the BSP before the AP starts (an AP cannot allocate
/// before its GS block is installed: the allocator's fast path lives there). Owned: freed
/// if the AP is not started, leaked by the AP that installs it.
pub fn new_block(
    cpu: CpuId,
    apic_id: u32,
) -> Result<alloc::boxed::Box<Block>, crate::mm::kalloc::OutOfMemory> {
    crate::mm::kalloc::try_box(PerCpu::new(cpu, apic_id, 0, CpuLocal::new()))
}

/// Installs `block` as the calling CPU's GS block and records its stack; the caller enters
/// it in the CPU table ([`register_this_cpu`]) once the CPU is committed to running.
pub fn install_this_cpu(block: &'static mut Block, stack: (u64, u64)) -> &'static Block {
    block.hot.kstack_top.store(stack.1, Ordering::Relaxed);
    block.ext.stack_lo.store(stack.0, Ordering::Relaxed);
    block.ext.stack_hi.store(stack.1, Ordering::Relaxed);
    let ptr: *const Block = block;
    let installed = crate::sys::install_percpu(block);
    INSTALLED.call_once(|| installed);
    crate::sys::leaked_ref(ptr)
}

/// The token that reaches the installed blocks (set by the first [`install_this_cpu`]).
static INSTALLED: spin::Once<exo_percpu::Installed<CpuLocal>> = spin::Once::new();

/// This CPU's block through one `gs:` load (`None` before the first block is installed):
/// the fast path of [`this`], which also finds it in the table.
#[inline(always)]
pub fn local(g: &impl Pinned) -> Option<&Block> {
    Some(INSTALLED.get()?.this_cpu(g))
}

/// Enters this CPU's block in the CPU table ([`get`] finds it, the count covers it): the
/// BSP's at once, an AP's only once it has committed to going online (`bringup`): until
/// 2026-12-04 an AP the BSP had given up on entered its block
/// before it found out and parked, so `get` named a CPU that would never run anything.
pub fn register_this_cpu(shared: &'static Block) {
    let cpu = shared.hot.cpu_id;
    let slot = match TABLE.get() {
        Some(t) => t.get(cpu as usize),
        None if cpu == 0 => Some(&BSP),
        None => None,
    };
    match slot {
        Some(s) => {
            s.call_once(|| shared);
        }
        // The BSP prepares blocks only for CPU ids the table holds.
        None => panic!("CPU {cpu} has no slot in the CPU table"),
    }
    COUNT.fetch_max(cpu + 1, Ordering::AcqRel);
}

/// The block of `cpu`, if it was registered.
pub fn get(cpu: CpuId) -> Option<&'static Block> {
    match TABLE.get() {
        Some(t) => t.get(cpu.0 as usize).and_then(|o| o.get().copied()),
        None if cpu.0 == 0 => BSP.get().copied(),
        None => None,
    }
}

/// A panic is stopping the machine: set by the reporting CPU before it reads the online list
/// to send its NMIs ([`mark_stopping`]), read by an AP that has just come online
/// ([`halt_if_stopping`]).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The reporting CPU of a panic, before it sends the stop-all NMIs to the CPUs online.
pub fn mark_stopping() {
    STOPPING.store(true, Ordering::Relaxed);
    core::sync::atomic::fence(Ordering::SeqCst);
}

/// An AP that has just come online (`online` stored) while a panic stops the machine: the
/// stop-all's NMIs went to the CPUs online when it began, maybe not to this one, which
/// would run on through the report (`STOPPED,k,no answer` for a live CPU). Records itself
/// stopped here, as the NMI would (ring 0, interrupts off, this function as its place), and
/// halts. The fences pair with [`mark_stopping`]'s: one side sees the other (found by
/// review, 2026-12-05; not forced by a test).
pub fn halt_if_stopping(b: &Block) {
    core::sync::atomic::fence(Ordering::SeqCst);
    if !STOPPING.load(Ordering::Relaxed) {
        return;
    }
    b.ext.stopped_cs.store(0, Ordering::Relaxed);
    b.ext.stopped_rflags.store(0, Ordering::Relaxed);
    b.ext.stopped_apic.store(0, Ordering::Relaxed);
    b.ext
        .stopped_rip
        .store(halt_if_stopping as *const () as u64, Ordering::Release);
    exo_arch::cpu::halt_forever();
}

/// Iterates over the registered CPUs that are online.
pub fn online() -> impl Iterator<Item = &'static Block> {
    (0..COUNT.load(Ordering::Acquire))
        .filter_map(|i| get(CpuId(i)))
        .filter(|b| b.ext.online.load(Ordering::Acquire))
}

/// Number of online CPUs.
pub fn online_count() -> u32 {
    online().count() as u32
}

/// This CPU's block.
pub fn this(g: &impl Pinned) -> &'static Block {
    let b = local(g).expect("no per-CPU block installed");
    // The block is leaked at install time; extending the borrow is what `get` returns too.
    get(CpuId(b.hot.cpu_id))
        .unwrap_or_else(|| panic!("CPU {} has no registered block", b.hot.cpu_id))
}

/// Errors of cross-CPU requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunError {
    /// No such CPU, or it is not online.
    NotOnline(CpuId),
    /// The CPU's mailbox still holds an unfinished request.
    Busy(CpuId),
    /// The request was not finished by the deadline.
    Timeout(CpuId),
    /// Running on the calling CPU itself is not a mailbox request.
    SelfTarget,
    /// The request completed, but its result was overwritten by later requests before it
    /// was read (`exo_sched::RESULTS` of them).
    Lost(CpuId),
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RunError::NotOnline(c) => write!(f, "CPU {} is not online", c.0),
            RunError::Busy(c) => write!(f, "CPU {} mailbox busy", c.0),
            RunError::Timeout(c) => write!(
                f,
                "CPU {} did not finish its request before the deadline",
                c.0
            ),
            RunError::SelfTarget => write!(f, "cannot post to the calling CPU"),
            RunError::Lost(c) => write!(
                f,
                "CPU {} finished the request, its result was overwritten before it was read",
                c.0
            ),
        }
    }
}

/// A posted request: the CPU it went to and its sequence number in that CPU's mailbox
/// ([`wait`] takes it and returns this request's result, no other's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "wait for the request with `cpus::wait`, or say why not"]
pub struct Ticket {
    /// The CPU the request went to.
    pub cpu: CpuId,
    seq: u64,
    /// Whether the target sends a wake IPI when it completes (the poster could halt).
    notified: bool,
}

/// Posts `f(arg)` to `cpu` and wakes it; does not wait.
pub fn post(cpu: CpuId, f: RemoteFn, arg: u64) -> Result<Ticket, RunError> {
    let b = get(cpu)
        .filter(|b| b.ext.online.load(Ordering::Acquire))
        .ok_or(RunError::NotOnline(cpu))?;
    if b.hot.cpu_id == exo_percpu::cpu_id_hint().0 {
        return Err(RunError::SelfTarget);
    }
    // Every CPU installs its block before it can post, so the caller's own block is at hand
    // (no MSR read on this path: the c2c and contention runners post per measurement).
    let poster = match get(exo_percpu::cpu_id_hint()) {
        Some(me) if may_halt() => u64::from(me.hot.apic_id) + 1,
        _ => 0,
    };
    // One CAS claims the mailbox: of two posters that both saw it free, one gets Busy.
    let seq = b
        .ext
        .mailbox
        .post(f as usize as u64, arg, poster)
        .map_err(|exo_sched::Busy| RunError::Busy(cpu))?;
    // The request is posted whether or not the IPI goes out: the caller gets its ticket and
    // waits with its deadline (a target that is not woken may still run it at its next look
    // at the mailbox, as after any wait that timed out). Until 2026-12-05 a failed IPI
    // returned an error without the ticket: the caller took the request for never posted
    // while the target could still run it later, with an argument the caller may have let
    // go (the 'left' list's post without a ticket).
    if let Err(e) = apic::send_ipi(Dest::Id(b.hot.apic_id), Delivery::Fixed(VEC_WAKE)) {
        log::warn!(
            "wake IPI to CPU {} failed ({e}): request posted, not announced",
            cpu.0
        );
    }
    Ok(Ticket {
        cpu,
        seq,
        notified: poster != 0,
    })
}

/// APIC id + 1 the ICR test interrupt's handler pings (0: none), and how often it ran.
static ICR_TEST_TARGET: AtomicU64 = AtomicU64::new(0);
static ICR_TEST_TAKEN: AtomicU64 = AtomicU64::new(0);

/// Test of the xAPIC send path: while `target` is `Some(apic_id)`, the handler of
/// [`exo_arch::apic::ICR_TEST_VECTOR`] sends a ping IPI there. Returns how often the handler
/// ran so far.
pub fn set_icr_test_target(target: Option<u32>) -> u64 {
    ICR_TEST_TARGET.store(target.map_or(0, |id| u64::from(id) + 1), Ordering::Release);
    ICR_TEST_TAKEN.load(Ordering::Acquire)
}

/// The handler of [`exo_arch::apic::ICR_TEST_VECTOR`] (a software interrupt: no EOI): an
/// interrupt handler that sends an IPI of its own.
pub fn icr_test_interrupt() {
    ICR_TEST_TAKEN.fetch_add(1, Ordering::AcqRel);
    let t = ICR_TEST_TARGET.load(Ordering::Acquire);
    if t != 0 {
        let _ = apic::send_ipi(Dest::Id((t - 1) as u32), Delivery::Fixed(VEC_PING));
    }
}

static HALT_WAITS: AtomicBool = AtomicBool::new(false);
static HALTED_WAITS: AtomicU64 = AtomicU64::new(0);

/// How many times [`wait`] halted so far (all CPUs).
pub fn halted_waits() -> u64 {
    HALTED_WAITS.load(Ordering::Relaxed)
}

/// Whether [`wait`] may halt between checks (off under icount).
pub fn halting_waits() -> bool {
    HALT_WAITS.load(Ordering::Relaxed)
}

/// Lets `wait` halt between checks (woken by the completion IPI, with the local APIC timer as
/// a backstop). Off under icount, where QEMU cannot take x2APIC timer accesses and where the
/// single-threaded emulation makes spinning harmless.
pub fn set_halting_waits(on: bool) {
    HALT_WAITS.store(on, Ordering::Relaxed);
}

fn may_halt() -> bool {
    HALT_WAITS.load(Ordering::Relaxed) && exo_arch::cpu::interrupts_enabled()
}

/// Waits until the request of `t` is finished; returns its result. Halts between checks
/// when it can (an emulated CPU spinning here would steal a host core from the CPUs doing
/// the work), so the target sends a wake IPI when it finishes. Until 2026-12-05 the wait
/// had no ticket: it returned the result of whichever request the CPU completed last (another
/// poster's, if one was accepted after ours completed) and waited for that one too.
pub fn wait(t: Ticket, deadline: crate::smp::time::Deadline) -> Result<u64, RunError> {
    let cpu = t.cpu;
    let mb = &get(cpu).ok_or(RunError::NotOnline(cpu))?.ext.mailbox;
    let done = || {
        mb.result(t.seq)
            .map(|r| r.map_err(|exo_sched::Lost| RunError::Lost(cpu)))
    };
    wait_until(cpu, deadline, t.notified && may_halt(), done)
}

/// Waits until `cpu`'s mailbox holds no request (for a caller that gave up on its ticket,
/// before it posts again).
pub fn wait_free(cpu: CpuId, deadline: crate::smp::time::Deadline) -> Result<(), RunError> {
    let mb = &get(cpu).ok_or(RunError::NotOnline(cpu))?.ext.mailbox;
    // The request's poster may not be woken: no halt.
    wait_until(cpu, deadline, false, || mb.is_free().then_some(Ok(())))
}

/// Whether a wait begun now may run this CPU's own mailbox requests while it waits: with
/// interrupts on, so not inside a mailbox job (they run with interrupts off, and
/// [`poll_mailbox`] refuses there anyway) nor an interrupt handler.
fn waiter_polls() -> bool {
    exo_arch::cpu::interrupts_enabled()
}

/// One look at this CPU's mailbox for a waiter (see [`wait_until`]): runs a pending request
/// if `polls` (the waiter's [`waiter_polls`]) or the waiter is on `target` itself. Returns
/// whether it ran one.
fn poll_while_waiting(target: Option<CpuId>, polls: bool) -> bool {
    let g = IrqGuard::new();
    (polls || target.is_some_and(|c| this(&g).hot.cpu_id == c.0)) && poll_mailbox(&g)
}

/// The loop of [`wait`] and [`wait_free`]: `done` until it says something or `deadline`.
/// Runs this CPU's own mailbox requests meanwhile (unless called with interrupts off):
/// the waiter stays current on its CPU (spinning, or halting as the running thread), so
/// that CPU's idle loop, which would run them, does not. Until 2026-12-05 it ran them only
/// when waiting on its own CPU, and two CPUs waiting on each other's requests (a `run_on`
/// each way, a drain of every CPU beside a `run_on`) both ran out their deadlines (found
/// by review; `smp.cross_run_on_completes`).
fn wait_until<T>(
    cpu: CpuId,
    deadline: crate::smp::time::Deadline,
    halt: bool,
    done: impl Fn() -> Option<Result<T, RunError>>,
) -> Result<T, RunError> {
    let polls = waiter_polls();
    loop {
        if let Some(r) = done() {
            return r;
        }
        if deadline.passed() {
            return Err(RunError::Timeout(cpu));
        }
        // A waiter that moved onto `cpu` (an unpinned thread, preempted and migrated) runs
        // the request itself: `cpu`'s idle loop, which would, does not run while the waiter
        // (or another thread) does. Until 2026-12-04 such a wait ran out its deadline.
        if poll_while_waiting(Some(cpu), polls) {
            continue;
        }
        if halt {
            // Backstop: a timer interrupt within 1 ms, so a lost IPI costs at most that, and
            // no later than the deadline (until 2026-12-05 a nearer deadline could be
            // overrun by up to 1 ms; found by review); armed in the timer's current mode
            // (the scheduler's TSC-deadline mode survives). Not with a request in this
            // CPU's own mailbox, posted since the look above (its wake IPI may have been
            // taken before the `cli`): the next pass runs it.
            exo_arch::cpu::cli();
            if done().is_none() && !(polls && own_mailbox_busy()) {
                let backstop = crate::smp::timer::backstop_us(deadline.us_left().clamp(1, 1000));
                HALTED_WAITS.fetch_add(1, Ordering::Relaxed);
                exo_arch::cpu::sti_hlt();
                drop(backstop);
            } else {
                exo_arch::cpu::sti();
            }
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Runs `f(arg)` on `cpu` (or here, if `cpu` is the caller) and returns its result.
pub fn run_on(
    cpu: CpuId,
    f: RemoteFn,
    arg: u64,
    deadline: crate::smp::time::Deadline,
) -> Result<u64, RunError> {
    if cpu == exo_percpu::cpu_id_hint() {
        return Ok(f(arg));
    }
    match post(cpu, f, arg) {
        // Moved onto `cpu` since the test above: run it here.
        Err(RunError::SelfTarget) => Ok(f(arg)),
        Err(e) => Err(e),
        Ok(t) => wait(t, deadline),
    }
}

/// Requests [`run_on_every`] posts before it waits for them (a ticket array on the stack).
const EVERY_BATCH: usize = 64;

/// Runs `f(arg)` on every online CPU (the caller's own here) and waits for all of them:
/// posted up to [`EVERY_BATCH`] at a time and waited for together, so a batch costs about one
/// round trip, not one per CPU. Every request posted is waited for (up to `deadline`) before
/// it returns; the result is the first error, if any (a mailbox still busy at the deadline,
/// a timeout). Until
/// 2026-12-05 callers ran `run_on` CPU after CPU: at 288 CPUs under TCG on two host cores a
/// drain of every CPU's caches took seconds, and a test that drains 80 times ran out its
/// 60 s deadline on a slower host.
pub fn run_on_every(
    f: RemoteFn,
    arg: u64,
    deadline: crate::smp::time::Deadline,
) -> Result<(), RunError> {
    let mut first: Option<RunError> = None;
    let polls = waiter_polls();
    let mut cpus = online();
    loop {
        let mut batch = arrayvec::ArrayVec::<Ticket, EVERY_BATCH>::new();
        for b in cpus.by_ref() {
            // A mailbox busy with another poster's request (one slot per CPU) is tried
            // again until the deadline: until 2026-12-05 the first try's `Busy` was the
            // result, and a drain of every CPU's caches failed a test when another CPU had
            // just posted to the same target (seen once, debug -smp 4, in
            // `user.proc_reap_all_ends_orphans_that_outlive_the_grace`). The retries run this
            // CPU's own requests, as `wait_until` does: the request the target is busy with
            // may be waiting for one of them (until 2026-12-05 both ran out their deadlines).
            let posted = loop {
                match post(CpuId(b.hot.cpu_id), f, arg) {
                    Err(RunError::Busy(_)) if !deadline.passed() => {
                        if !poll_while_waiting(None, polls) {
                            core::hint::spin_loop();
                        }
                    }
                    r => break r,
                }
            };
            match posted {
                Ok(t) => batch.push(t),
                Err(RunError::SelfTarget) => {
                    f(arg);
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
            if batch.is_full() {
                break;
            }
        }
        let more = batch.is_full();
        for t in batch {
            if let Err(e) = wait(t, deadline) {
                first.get_or_insert(e);
            }
        }
        if !more {
            return first.map_or(Ok(()), Err);
        }
    }
}

/// Whether this CPU's mailbox holds a request (pending, being posted or running).
fn own_mailbox_busy() -> bool {
    let g = IrqGuard::new();
    !this(&g).ext.mailbox.is_free()
}

/// Runs a pending mailbox request of this CPU, if any. Returns whether it ran one. Inside a
/// mailbox job (a job that waits on another CPU) it runs nothing: the mailbox would hand
/// out the running job again.
pub fn poll_mailbox(g: &IrqGuard) -> bool {
    let b = this(g);
    if b.ext.in_job.load(Ordering::Relaxed) {
        return false;
    }
    let mb = &b.ext.mailbox;
    let Some(req) = mb.take() else {
        return false;
    };
    let f = crate::sys::remote_fn(req.func);
    // Interrupts are off (`g`): only this CPU reads or writes the flag, none can interleave.
    b.ext.in_job.store(true, Ordering::Relaxed);
    let r = f(req.arg);
    b.ext.in_job.store(false, Ordering::Relaxed);
    mb.complete(req.seq, r);
    if req.notify != 0 {
        let _ = apic::send_ipi(Dest::Id((req.notify - 1) as u32), Delivery::Fixed(VEC_WAKE));
    }
    true
}

/// What an idle hook's step did, and so what the idle loop does next. Flat and `u8`, with
/// `Poll` 0: the polling step (measured under icount: the waiting CPU of every cross-CPU
/// round trip polls several steps) is one test and branch; a `Poll { look: bool }` variant
/// cost `ipc.rtt.64.xcore.*` +34 a round trip in its `match` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IdleStep {
    /// Nothing to run, but the CPU must not halt (without a timer it polls for sleepers):
    /// the loop steps again.
    Poll = 0,
    /// It ran something (or found work to look at again): loop again.
    Ran = 1,
    /// As `Poll`, after a console drain: the step looked at other CPUs' sleepers (at most
    /// once a slice unless one is near; a drain at every polling step would be paid by
    /// every measured cross-CPU round trip).
    PollLook = 2,
    /// Nothing to run: the CPU may drain the console and halt.
    Halt = 3,
}

/// What a CPU's idle loop does besides mailbox work, installed by the layer above (the
/// scheduler, when it starts): `step` runs queued work ([`IdleStep`]), `woke` runs after
/// each halt.
#[derive(Debug, Clone, Copy)]
pub struct IdleHooks {
    /// See [`IdleHooks`].
    pub step: fn(&mut IrqGuard) -> IdleStep,
    /// See [`IdleHooks`].
    pub woke: fn(),
}

static IDLE_HOOKS: spin::Once<IdleHooks> = spin::Once::new();

/// Installs the idle hooks (once; later calls are ignored).
pub fn set_idle_hooks(h: IdleHooks) {
    IDLE_HOOKS.call_once(|| h);
}

/// The idle loop of a CPU: run mailbox work, then the idle hook's work (runnable threads),
/// else drain the console rings, else halt until an interrupt.
pub fn idle_loop() -> ! {
    // The last console pass left nothing it would write now (only young partial lines, or
    // the lock was busy): the next pass with nothing to run halts instead of draining.
    let mut drained = false;
    loop {
        // Freed kernel stacks' page tables, once enough wait: an idle CPU holds nothing and
        // has interrupts on, so it can make every CPU flush (spawns do it too).
        if crate::smp::tlb::reclaim_due() {
            crate::smp::tlb::reclaim_kernel_tables();
        }
        let mut g = IrqGuard::new();
        let hooks = IDLE_HOOKS.get();
        let step = if poll_mailbox(&g) {
            IdleStep::Ran
        } else {
            hooks.map_or(IdleStep::Halt, |h| (h.step)(&mut g))
        };
        match step {
            IdleStep::Poll => continue,
            IdleStep::Ran => {
                drained = false;
                continue;
            }
            // Polling (no timer: sleepers wait): the console at the step's looks, with
            // interrupts on, as before a halt. Until 2026-12-06 a polling CPU never drained:
            // under icount, lines (and a test's probe) waited for a CPU that halts, and every
            // other CPU was halted with no timer to end it (CI's icount run timed out in
            // `user.console_idle_drain_runs_with_interrupts_on`).
            IdleStep::PollLook => {
                if crate::console::idle_work() {
                    drop(g);
                    let _ = crate::console::drain_idle();
                }
                continue;
            }
            IdleStep::Halt => {}
        }
        // Nothing to run: write out the console rings (whole lines, bounded per pass; again
        // while a ring it wrote from holds more), with interrupts on: each ring's hold of
        // the console lock turns them off for that ring alone. Then the loop looks for work
        // again with interrupts off before it halts: a wake-up that came during the drain is
        // seen there, and one after that look is pending at the `sti; hlt`. Until 2026-12-05
        // the guard lived across the drain, and interrupts stayed off from the first ring
        // to the last (up to 0.35 s a ring at 115200 baud: past the TLB shootdown's
        // deadline with a dozen busy CPUs; found by review).
        if !drained && crate::console::idle_work() {
            drop(g);
            // The step may have marked the CPU halted: it is not, until it halts.
            if let Some(h) = hooks {
                (h.woke)();
            }
            drained = !crate::console::drain_idle();
            continue;
        }
        drained = false;
        // `sti; hlt` is atomic with respect to interrupts: a wake IPI that arrived after
        // the check is pending and ends the halt at once. No lost wake-up.
        core::mem::forget(g);
        exo_arch::cpu::sti_hlt();
        if let Some(h) = hooks {
            (h.woke)();
        }
    }
}
