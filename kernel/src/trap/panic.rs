//! Failure: a panic or fatal exception on any CPU prints the CPU, the reason and a
//! frame-pointer backtrace, stops every other CPU with an NMI, and exits QEMU with failure.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use exo_arch::apic::{Delivery, Dest};
use exo_arch::exit::{ExitCode, exit};

/// 0 = running; else the panicking CPU's id + 1, or [`EARLY`] with the APIC id of a CPU
/// that panicked before it had a per-CPU block (no CPU number yet).
static PANICKING: AtomicU32 = AtomicU32::new(0);

/// Tag of a [`PANICKING`] token naming an APIC id (CPU numbers stay far below it).
const EARLY: u32 = 1 << 31;

/// [`PANICKING`] once a CPU has begun a deliberate exit ([`claim_exit`]); the token of APIC
/// id `0x7fff_ffff`, which no x86 machine gives (x2APIC ids of real machines stay far below).
const EXITING: u32 = u32::MAX;

/// The token (CPU id + 1, or [`EARLY`] | APIC id) of the CPU that claimed the exit.
static EXITER: AtomicU32 = AtomicU32::new(0);

/// The token of the first CPU that panicked after the exit was claimed (0: none).
static PANIC_AFTER_EXIT: AtomicU32 = AtomicU32::new(0);

/// Test switches (`exo.panic_at_exit`): see [`hold_reports_until_exit`], [`hold_exit_until_panic`].
static HOLD_REPORT_FOR_EXIT: AtomicBool = AtomicBool::new(false);
static HOLD_EXIT_FOR_PANIC: AtomicBool = AtomicBool::new(false);
static EXIT_BEGUN: AtomicBool = AtomicBool::new(false);

/// Test switch: a panic's report waits (at most 5 s) after its claim until some CPU has
/// begun to exit, so the exit meets a panic already reporting.
pub fn hold_reports_until_exit() {
    HOLD_REPORT_FOR_EXIT.store(true, Ordering::Release);
}

/// Test switch: an exit waits (at most 5 s) after its claim until a CPU has panicked.
pub fn hold_exit_until_panic() {
    HOLD_EXIT_FOR_PANIC.store(true, Ordering::Release);
}

/// The test switches' hold: spins until `done()`, 5 s at most.
fn hold_5s(done: impl Fn() -> bool) {
    crate::smp::time::Deadline::after_ms(5000).spin_until_or(done);
}

/// Whether an exit has been claimed (a test's second CPU panics once it has).
pub fn exiting() -> bool {
    PANICKING.load(Ordering::Acquire) == EXITING
}

/// This CPU's token for [`PANICKING`] and its CPU number (`u32::MAX` without a per-CPU
/// block: named by APIC id).
fn my_token() -> (u32, u32) {
    if exo_percpu::installed() {
        let id = exo_percpu::cpu_id_hint().0;
        (id, id + 1)
    } else {
        let apic = exo_arch::cpu::apic_id_from_cpuid();
        (u32::MAX, EARLY | (apic & !EARLY))
    }
}

/// Claims the end of the run for a deliberate exit (`console::exit`): `false` if a panic
/// is already reporting (the caller must stop: the reporter stops every CPU and exits with
/// failure). Until 2026-12-05 an exit did not look: a job that ended while another CPU
/// was panicking exited with success before the panic's report did (found by review;
/// `exo.panic_at_exit`, CI "failure paths").
pub fn claim_exit() -> bool {
    EXIT_BEGUN.store(true, Ordering::Release);
    let (_, token) = my_token();
    match PANICKING.compare_exchange(0, EXITING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            EXITER.store(token, Ordering::Release);
            if HOLD_EXIT_FOR_PANIC.load(Ordering::Acquire) {
                hold_5s(|| PANIC_AFTER_EXIT.load(Ordering::Acquire) != 0);
            }
            true
        }
        // A second exit of this CPU (a nested one, from a failure while exiting): go on.
        Err(EXITING) => EXITER.load(Ordering::Acquire) == token,
        // The panic's own report ends with an exit.
        Err(owner) => owner == token,
    }
}

/// After an exit's last output: the CPU (token) that panicked once the exit was claimed,
/// reported here with its reason (the exit then fails). `None`: no panic.
pub fn report_panic_after_exit() -> Option<u32> {
    let t = PANIC_AFTER_EXIT.load(Ordering::Acquire);
    if t == 0 {
        return None;
    }
    let reason = (t & EARLY == 0)
        .then(|| crate::smp::cpus::get(exo_percpu::CpuId(t - 1)))
        .flatten();
    match reason.and_then(|b| b.ext.panic_note.try_lock()) {
        Some(note) => crate::kprintln!(
            "PANIC on CPU {} while the run was exiting: {}",
            t - 1,
            note.as_str()
        ),
        None if t & EARLY != 0 => {
            crate::kprintln!("PANIC on APIC id {} while the run was exiting", t & !EARLY)
        }
        None => crate::kprintln!("PANIC on CPU {} while the run was exiting", t - 1),
    }
    Some(t)
}

/// A nested panic has sent the stop-all NMIs (at most once).
static NESTED_STOP: AtomicBool = AtomicBool::new(false);

/// Test switch (`exo.panic_also_cpu`): the reporting CPU waits for a second panic to be
/// recorded before it stops the others (else its NMI would stop that CPU first).
static AWAIT_SECOND: AtomicBool = AtomicBool::new(false);

/// Makes the next panic's report wait (at most 5 s) until another CPU has panicked too.
pub fn await_second_panic() {
    AWAIT_SECOND.store(true, Ordering::Release);
}

/// Is a panic stopping the machine? (NMI handlers halt when it is.)
pub fn stopping() -> bool {
    PANICKING.load(Ordering::Acquire) != 0
}

/// An NMI on the CPU that is reporting a panic or exiting (it must go on: the others are
/// the ones to stop); noted for the test switch [`nmi_self_in_report`].
pub fn nmi_on_the_stopper() -> bool {
    let p = PANICKING.load(Ordering::Acquire);
    if p == 0 {
        return false;
    }
    let (_, token) = my_token();
    let mine = if p == EXITING {
        EXITER.load(Ordering::Acquire) == token
    } else {
        p == token
    };
    if mine {
        STOPPER_NMIS.fetch_add(1, Ordering::AcqRel);
    }
    mine
}

/// NMIs the reporting or exiting CPU took and went on from.
static STOPPER_NMIS: AtomicU32 = AtomicU32::new(0);

/// Test switch (`exo.nmi_in_report=1`): the panic's report sends its own CPU an NMI once
/// the others are stopped, and goes on once it was taken.
static NMI_SELF: AtomicBool = AtomicBool::new(false);

/// Arms [`NMI_SELF`].
pub fn nmi_self_in_report() {
    NMI_SELF.store(true, Ordering::Release);
}

/// The known stack `rbp` lies on (the thread's, this CPU's, the boot stack), if any.
fn stack_bounds(rbp: u64) -> Option<(u64, u64)> {
    if exo_percpu::installed()
        && let Some((lo, hi)) = crate::sched::current_stack()
        && lo <= rbp
        && rbp < hi
    {
        return Some((lo, hi));
    }
    if exo_percpu::installed()
        && let Some(b) = crate::smp::cpus::get(exo_percpu::cpu_id_hint())
    {
        let lo = b.ext.stack_lo.load(Ordering::Relaxed);
        let hi = b.ext.stack_hi.load(Ordering::Relaxed);
        if lo <= rbp && rbp < hi {
            return Some((lo, hi));
        }
    }
    let (lo, hi) = exo_arch::boot::boot_stack();
    (lo <= rbp && rbp < hi).then_some((lo, hi))
}

/// The report's backtrace from `rbp`: on a known stack, read directly within it; else (an
/// IST stack, or a corrupt frame pointer) with probed reads (`walk_probed`).
pub(crate) fn backtrace(rbp: u64, mut f: impl FnMut(u64)) {
    match stack_bounds(rbp) {
        Some((lo, hi)) => exo_arch::backtrace::walk(rbp, lo, hi, 32, f),
        None => exo_arch::backtrace::walk_probed(rbp, 32, &mut f),
    }
}

/// NMIs every other CPU that is online, one by APIC id. Never the all-but-self shorthand:
/// it also reaches CPUs that have no IDT (APs still in firmware, APs parked during bring-up
/// before their tables were loaded), which triple-fault and reset the machine, losing the
/// report and the verdict. Bounded (the CPU table's size), lock- and allocation-free.
fn stop_others() {
    // CPUID, not the per-CPU block: correct even on a CPU that panicked before it had one.
    let me = exo_arch::cpu::apic_id_from_cpuid();
    for b in crate::smp::cpus::online().filter(|b| b.hot.apic_id != me) {
        let _ = exo_arch::apic::send_ipi(Dest::Id(b.hot.apic_id), Delivery::Nmi);
    }
}

fn die(msg: core::fmt::Arguments<'_>, rbp: u64, rip: Option<u64>) -> ! {
    exo_arch::cpu::cli();
    // A CPU without its per-CPU block (an AP before `install_this_cpu`, the BSP before its
    // own) has no CPU number: it is named by its APIC id, from CPUID, and claims the report
    // with a token no CPU number makes. Until 2026-12-04 it reported as CPU 0, and a panic
    // of CPU 0 meanwhile was taken for a nested panic of its own.
    let installed = exo_percpu::installed();
    let (cpu, token) = my_token();
    if let Err(owner) = PANICKING.compare_exchange(0, token, Ordering::AcqRel, Ordering::Acquire) {
        if owner == EXITING && EXITER.load(Ordering::Acquire) != token {
            // Another CPU is exiting: it reports this panic after its output and fails.
            leave_note(cpu, msg, rip);
            crate::console::let_go();
            let _ =
                PANIC_AFTER_EXIT.compare_exchange(0, token, Ordering::AcqRel, Ordering::Relaxed);
            exo_arch::cpu::halt_forever();
        }
        if owner == EXITING {
            // This CPU panicked in its own exit.
            exo_arch::serial::write_bytes(b"\npanic while exiting; exiting with failure\n");
            exit(ExitCode::Failure);
        }
        if owner != token {
            // Another CPU is already reporting; it will stop us with an NMI and exit. Its
            // report prints our reason: left here first (until 2026-12-04 this CPU showed
            // as `no answer` there, and its reason was lost).
            leave_note(cpu, msg, rip);
            exo_arch::cpu::halt_forever();
        }
        // A panic while panicking on this CPU: stop now, and the others with it (once: a
        // panic inside `stop_others` itself must not loop). Under QEMU the exit ends every
        // CPU anyway; on a real machine, where the exit port does nothing, the other CPUs
        // ran on until 2026-12-05 when the nesting came before the report's stop-all (not
        // testable under QEMU).
        exo_arch::serial::write_bytes(b"\nnested panic; exiting\n");
        if !NESTED_STOP.swap(true, Ordering::AcqRel) {
            stop_others();
        }
        exit(ExitCode::Failure);
    }
    if HOLD_REPORT_FOR_EXIT.load(Ordering::Acquire) {
        hold_5s(|| EXIT_BEGUN.load(Ordering::Acquire));
    }
    if AWAIT_SECOND.load(Ordering::Acquire) {
        hold_5s(|| crate::smp::cpus::online().any(|b| b.ext.panicked_too.load(Ordering::Acquire)));
    }
    if !installed {
        exo_arch::apic::enable_for_ipis(); // an early AP's APIC may still be off
    }
    // Before the online list is read: an AP coming online either is in it or sees this.
    crate::smp::cpus::mark_stopping();
    stop_others();
    // Once the others are stopped the console is ours, even if one of them was stopped
    // holding its lock (it would never release it).
    wait_stopped(cpu);
    if NMI_SELF.load(Ordering::Acquire) {
        let before = STOPPER_NMIS.load(Ordering::Acquire);
        // By APIC id: xAPIC has no self shorthand for NMI.
        let me = exo_arch::cpu::apic_id_from_cpuid();
        let _ = exo_arch::apic::send_ipi(Dest::Id(me), Delivery::Nmi);
        let taken = crate::smp::time::Deadline::after_ms(1000)
            .spin_until_or(|| STOPPER_NMIS.load(Ordering::Acquire) != before);
        crate::kprintln!("NMI,reporting_cpu,taken,{}", u8::from(taken));
    }
    if let Some(c) = crate::console::take_over() {
        crate::kprintln!("console: taken over from {c}, stopped while it held the console");
    }
    // User bytes queued in the console rings come out before the report.
    crate::console::flush_all();
    if installed {
        crate::kprintln!("PANIC on CPU {cpu}: {msg}");
        crate::kprintln!("PANIC,{cpu}");
    } else {
        let apic = token & !EARLY;
        crate::kprintln!(
            "PANIC on APIC id {apic} (before its per-CPU block, no CPU number): {msg}"
        );
        crate::kprintln!("PANIC,apic,{apic}");
    }
    if let Some(rip) = rip {
        crate::kprintln!("  at {rip:#018x}");
    }
    let mut n = 0;
    backtrace(rbp, |ret| {
        crate::kprintln!("  #{n:<2} {ret:#018x}");
        n += 1;
    });
    report_stopped(cpu);
    crate::kprintln!(
        "(resolve with: addr2line -e target/x86_64-unknown-none/release/exo -f -C <addr>)"
    );
    crate::console::exit(ExitCode::Failure)
}

/// A CPU that panicked while another reports: its reason into its `panic_note`, and its
/// stop record as the stop-all NMI would write it (ring 0, interrupts off), so the report
/// neither waits for it nor calls it unanswered. Lock- and allocation-free (a `try_lock` of
/// its own note, which only it writes).
fn leave_note(cpu: u32, msg: core::fmt::Arguments<'_>, rip: Option<u64>) {
    if !exo_percpu::installed() {
        return;
    }
    let Some(b) = crate::smp::cpus::get(exo_percpu::CpuId(cpu)) else {
        return;
    };
    if let Some(mut note) = b.ext.panic_note.try_lock() {
        note.clear();
        let _ = Truncating(&mut note).write_fmt(msg);
        b.ext.panicked_too.store(true, Ordering::Release);
    }
    b.ext.stopped_cs.store(0, Ordering::Relaxed);
    b.ext.stopped_rflags.store(0, Ordering::Relaxed);
    b.ext.stopped_apic.store(0, Ordering::Relaxed);
    b.ext
        .stopped_rip
        .store(rip.unwrap_or(1).max(1), Ordering::Release);
}

/// Writes into an `ArrayString` what fits and drops the rest.
struct Truncating<'a, const N: usize>(&'a mut arrayvec::ArrayString<N>);

impl<const N: usize> Write for Truncating<'_, N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if self.0.try_push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// A recorded vector (low byte: vector + 1, 0 = none), printed without allocating: the
/// panicking CPU may hold the heap's lock.
struct Vector(u64);

impl core::fmt::Display for Vector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 & 0xff {
            0 => f.write_str("-"),
            v => write!(f, "{:#x}", v - 1),
        }
    }
}

/// Ticks the report waits for the other CPUs to record where the NMI found them when the
/// TSC rate is not known yet (a panic during boot).
const STOP_WAIT_TICKS: u64 = 200_000_000;

/// How long the report waits for the other CPUs: 1 s on hardware, 10 s under emulation or a
/// foreign hypervisor (a descheduled vCPU answers late). Until 2026-12-05 the wait was
/// [`STOP_WAIT_TICKS`] everywhere (67 ms at 3 GHz): a vCPU the host had descheduled longer
/// showed as `no answer` and ran on during the report (found by review; not forced).
fn stop_wait_ticks() -> u64 {
    let hz = crate::smp::time::tsc_hz();
    if hz == 0 {
        return STOP_WAIT_TICKS;
    }
    let ms = if exo_arch::cpu::emulated_or_foreign_hypervisor() {
        10_000
    } else {
        1000
    };
    exo_arch::tsc::ns_to_ticks(ms * 1_000_000, hz).max(STOP_WAIT_TICKS)
}

/// Waits (at most [`stop_wait_ticks`], lock-free) until every other online CPU recorded
/// where the stop-all NMI found it.
fn wait_stopped(me: u32) {
    let t0 = exo_arch::tsc::rdtsc();
    let limit = stop_wait_ticks();
    while crate::smp::cpus::online()
        .filter(|b| b.hot.cpu_id != me)
        .any(|b| b.ext.stopped_rip.load(Ordering::Acquire) == 0)
        && exo_arch::tsc::rdtsc().wrapping_sub(t0) < limit
    {
        core::hint::spin_loop();
    }
}

/// One line per other online CPU: `STOPPED,<cpu>,rip,<rip>,ring,<0|3>,if,<0|1>,isr,<v>,irr,<v>`
/// where the stop-all NMI interrupted it (and its APIC's highest in-service and pending vector), or `STOPPED,<cpu>,no answer` (after [`wait_stopped`]'s bounded wait; lock-free).
fn report_stopped(me: u32) {
    for b in crate::smp::cpus::online().filter(|b| b.hot.cpu_id != me) {
        let id = b.hot.cpu_id;
        if b.ext.panicked_too.load(Ordering::Acquire) {
            match b.ext.panic_note.try_lock() {
                Some(note) => crate::kprintln!("STOPPED,{id},panicked too,{}", note.as_str()),
                None => {
                    crate::kprintln!("STOPPED,{id},panicked too,(its reason was being written)")
                }
            }
            continue;
        }
        match b.ext.stopped_rip.load(Ordering::Acquire) {
            0 => crate::kprintln!("STOPPED,{id},no answer"),
            rip => {
                let apic = b.ext.stopped_apic.load(Ordering::Relaxed);
                crate::kprintln!(
                    "STOPPED,{id},rip,{rip:#018x},ring,{},if,{},isr,{},irr,{}",
                    b.ext.stopped_cs.load(Ordering::Relaxed) & 3,
                    (b.ext.stopped_rflags.load(Ordering::Relaxed) >> 9) & 1,
                    Vector(apic),
                    Vector(apic >> 8)
                )
            }
        }
    }
}

/// A fatal CPU exception.
pub fn fatal_exception(msg: core::fmt::Arguments<'_>, rbp: u64, rip: u64) -> ! {
    die(format_args!("unhandled exception: {msg}"), rbp, Some(rip))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let rbp = exo_arch::backtrace::current_rbp();
    // A panicking spawned thread that holds nothing is ended alone (see `sched`).
    if exo_percpu::installed() && !stopping() {
        let irq_on = exo_arch::cpu::interrupts_enabled();
        match info.location() {
            Some(l) => crate::sched::kill_current_if_possible(
                irq_on,
                format_args!("panic: {} at {}:{}", info.message(), l.file(), l.line()),
                rbp,
            ),
            None => crate::sched::kill_current_if_possible(
                irq_on,
                format_args!("panic: {}", info.message()),
                rbp,
            ),
        }
    }
    match info.location() {
        Some(l) => die(
            format_args!("{} at {}:{}", info.message(), l.file(), l.line()),
            rbp,
            None,
        ),
        None => die(format_args!("{}", info.message()), rbp, None),
    }
}
