//! In-kernel tests (`exo.job=test`): one `KTEST,<name>,ok|FAIL,<why>` line each, then the
//! summary `N passed, N failed` as the last line, and the debug-exit code.

use crate::boot::BootState;
use crate::cpus::{self, VEC_PING};
use crate::time::Deadline;
use crate::{kprintln, memory};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::apic::{self, Delivery, Dest};
use exo_arch::exit::{ExitCode, exit};
use exo_percpu::{CpuId, IrqGuard};

type TestResult = Result<(), String>;
type Test = (&'static str, fn(&BootState) -> TestResult);

const TESTS: &[Test] = &[
    ("smp.all_cpus_online", all_cpus_online),
    ("smp.apic_ids_unique_and_match_madt", apic_ids_match),
    ("smp.late_ap_parks_and_survives_nmi", late_ap_nmi),
    ("percpu.gs_reads_right_on_each_cpu", gs_reads),
    ("apic.ipi_reaches_each_cpu", ipi_each_cpu),
    (
        "apic.ipi_send_survives_an_interrupt_between_icr_writes",
        ipi_interrupt_safe,
    ),
    ("trap.breakpoint_recovers_on_each_cpu", breakpoint_each_cpu),
    ("trap.page_fault_caught", page_fault_caught),
    ("tsc.sync_check_ran", tsc_check_ran),
    ("mm.no_writable_executable_page", w_xor_x),
    ("mm.stack_guard_unmapped", stack_guard),
    ("mm.heap_on_every_cpu", heap_every_cpu),
    ("smp.run_on_timeout_is_bounded", run_on_bounded),
    (
        "timer.halting_wait_keeps_the_timer_mode",
        wait_keeps_timer_mode,
    ),
    (
        "smp.run_on_racing_posters_each_request_runs_once",
        racing_posters,
    ),
    (
        "kalloc.storm_with_cross_cpu_frees_conserves_memory",
        alloc_storm,
    ),
    ("kalloc.frame_exhaustion_recovers", frame_exhaustion),
    ("kalloc.fallible_api_reports_oom", fallible_oom),
    ("kalloc.per_cpu_refill_and_drain_in_batches", refill_drain),
];

/// Runs every test and exits QEMU with the verdict.
pub fn run(state: &BootState) -> ! {
    let (mut passed, mut failed) = (0u32, 0u32);
    for (name, t) in TESTS
        .iter()
        .chain(crate::ktest_sched::TESTS)
        .chain(crate::ktest_oom::TESTS)
    {
        match t(state) {
            Ok(()) => {
                passed += 1;
                kprintln!("KTEST,{name},ok");
            }
            Err(why) => match why.strip_prefix(crate::ktest_sched::SKIP) {
                Some(reason) => kprintln!("KTEST,{name},skip,{reason}"),
                None => {
                    failed += 1;
                    kprintln!("KTEST,{name},FAIL,{why}");
                }
            },
        }
    }
    kprintln!("{passed} passed, {failed} failed");
    exit(if failed == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg()) }
}

/// With `exo.ap_delay_ms` beyond `exo.ap_timeout_ms`, one AP arrives after the deadline.
fn late_ap_expected(s: &BootState) -> bool {
    s.opts.ap_delay_ms > s.opts.ap_timeout_ms && s.madt_apic_ids.len() > 1
}

fn all_cpus_online(s: &BootState) -> TestResult {
    let online = cpus::online_count();
    let phantom = u32::from(s.opts.phantom_apic_id.is_some());
    let late = u32::from(late_ap_expected(s));
    let want = (s.madt_apic_ids.len() as u32).max(1) - phantom - late;
    check(online == want && s.smp.online == online, || {
        format!(
            "{online} online, {want} usable in the MADT, missing {:?}",
            s.smp.missing
        )
    })?;
    if let Some(p) = s.opts.phantom_apic_id {
        check(s.smp.missing == [p], || {
            format!(
                "phantom APIC id {p} should be reported missing, got {:?}",
                s.smp.missing
            )
        })?;
    }
    Ok(())
}

/// `exo.ap_delay_ms` made one AP arrive after the BSP stopped waiting: it must park (with an
/// IDT it can take an NMI through) and stay parked when an NMI reaches it, as the stop-all
/// of a panic or an operator's NMI would. An AP parked without an IDT triple-faults here and
/// QEMU resets: no verdict at all.
fn late_ap_nmi(s: &BootState) -> TestResult {
    if !late_ap_expected(s) {
        return Err(format!(
            "{}needs exo.ap_delay_ms > exo.ap_timeout_ms and an AP",
            crate::ktest_sched::SKIP
        ));
    }
    let &[late] = s.smp.missing.as_slice() else {
        return Err(format!("expected one late AP, missing {:?}", s.smp.missing));
    };
    // The late AP parks once its delay is over (NMI it even if the count never moves: a
    // park that is not counted is a park without the park IDT, which the NMI shows).
    let d = Deadline::after_ms(s.opts.ap_delay_ms + 1000);
    while exo_arch::trap::parked() == 0 && !d.passed() {
        core::hint::spin_loop();
    }
    let parked = exo_arch::trap::parked();
    for _ in 0..2 {
        apic::send_ipi(Dest::Id(late), Delivery::Nmi).map_err(|e| format!("{e}"))?;
        Deadline::after_ms(20).spin_until();
    }
    check(parked == 1, || {
        format!("APIC id {late}: {parked} parks counted, expected 1")
    })?;
    check(cpus::online_count() == s.smp.online, || {
        "a CPU came online or went away".into()
    })?;
    check(exo_arch::trap::parked() == parked, || {
        format!(
            "park count {parked} -> {}: the NMI restarted a park",
            exo_arch::trap::parked()
        )
    })
}

fn read_apic_id(_: u64) -> u64 {
    u64::from(apic::id())
}

fn apic_ids_match(s: &BootState) -> TestResult {
    let mut seen = Vec::new();
    for b in cpus::online() {
        let cpu = CpuId(b.hot.cpu_id);
        let hw = cpus::run_on(cpu, read_apic_id, 0, Deadline::after_ms(2000))
            .map_err(|e| format!("{e}"))? as u32;
        check(hw == b.hot.apic_id, || {
            format!(
                "CPU {} block says APIC {} but the APIC says {hw}",
                cpu.0, b.hot.apic_id
            )
        })?;
        check(
            s.madt_apic_ids.get(cpu.0 as usize) == Some(&hw) || s.madt_apic_ids.is_empty(),
            || {
                format!(
                    "CPU {} has APIC id {hw}, MADT order says {:?}",
                    cpu.0,
                    s.madt_apic_ids.get(cpu.0 as usize)
                )
            },
        )?;
        check(!seen.contains(&hw), || format!("APIC id {hw} seen twice"))?;
        seen.push(hw);
    }
    Ok(())
}

fn gs_probe(_: u64) -> u64 {
    let g = IrqGuard::new();
    let id = exo_percpu::cpu_id(&g).0;
    let b = cpus::this(&g);
    let selfp_ok = core::ptr::eq(exo_percpu::this_cpu::<cpus::CpuLocal>(&g), b);
    let apic_ok = exo_percpu::apic_id(&g) == apic::id();
    (u64::from(id) << 2) | (u64::from(selfp_ok) << 1) | u64::from(apic_ok)
}

fn gs_reads(_: &BootState) -> TestResult {
    for b in cpus::online() {
        let cpu = CpuId(b.hot.cpu_id);
        let r =
            cpus::run_on(cpu, gs_probe, 0, Deadline::after_ms(2000)).map_err(|e| format!("{e}"))?;
        check(r >> 2 == u64::from(cpu.0), || {
            format!("gs:[cpu_id] on CPU {} read {}", cpu.0, r >> 2)
        })?;
        check(r & 2 != 0, || {
            format!("self pointer wrong on CPU {}", cpu.0)
        })?;
        check(r & 1 != 0, || {
            format!("gs:[apic_id] on CPU {} differs from the APIC", cpu.0)
        })?;
    }
    Ok(())
}

fn ipi_each_cpu(_: &BootState) -> TestResult {
    for b in cpus::online() {
        let before = b.ext.pings.load(Ordering::Acquire);
        apic::send_ipi(Dest::Id(b.hot.apic_id), Delivery::Fixed(VEC_PING))
            .map_err(|e| format!("{e}"))?;
        let d = Deadline::after_ms(2000);
        while b.ext.pings.load(Ordering::Acquire) == before {
            if d.passed() {
                return Err(format!(
                    "CPU {} (APIC {}) did not acknowledge the ping IPI",
                    b.hot.cpu_id, b.hot.apic_id
                ));
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}

/// Pings sent by [`ipi_interrupt_safe`].
const ICR_ROUNDS: u64 = 200;

/// This CPU sends pings to CPU A while, in xAPIC mode, an interrupt arrives between the two
/// ICR writes of every send (the debug knob `apic::set_icr_test_interrupt`) and its handler
/// pings CPU B. Each ping must reach its own CPU: A gets exactly one per send, B one per
/// interrupt (the next send waits for both, as pings to one CPU merge while one is pending).
/// An interrupt-unsafe send ends up at B (the handler rewrote ICR high): A gets none. In
/// x2APIC mode (one `wrmsr` per IPI) the knob has no point to act on: A gets its pings, B none.
fn ipi_interrupt_safe(_: &BootState) -> TestResult {
    let me = cpus::get(exo_percpu::cpu_id_hint()).ok_or("no block for this CPU")?;
    let others: Vec<&cpus::Block> = cpus::online()
        .filter(|b| b.hot.cpu_id != me.hot.cpu_id)
        .collect();
    let Some(&a) = others.first() else {
        return Err(format!("{}needs 2 CPUs", crate::ktest_sched::SKIP));
    };
    // B: another CPU if there is one, else this one (the handler's ping to itself is taken
    // once the send re-enabled interrupts).
    let b = others.get(1).copied().unwrap_or(me);
    let xapic = apic::mode() == apic::Mode::XApic;
    let (a0, b0) = (
        a.ext.pings.load(Ordering::Acquire),
        b.ext.pings.load(Ordering::Acquire),
    );
    let taken0 = cpus::set_icr_test_target(Some(b.hot.apic_id));
    apic::set_icr_test_interrupt(Some(me.hot.apic_id));
    let mut stuck = None;
    'sends: for i in 1..=ICR_ROUNDS {
        if let Err(e) = apic::send_ipi(Dest::Id(a.hot.apic_id), Delivery::Fixed(VEC_PING)) {
            stuck = Some(format!("send {i}: {e}"));
            break;
        }
        let want_b = if xapic { b0 + i } else { b0 };
        let d = Deadline::after_ms(1000);
        while a.ext.pings.load(Ordering::Acquire) < a0 + i
            || b.ext.pings.load(Ordering::Acquire) < want_b
        {
            if d.passed() {
                stuck = Some(format!("send {i}: deliveries missing after 1 s"));
                break 'sends;
            }
            core::hint::spin_loop();
        }
    }
    apic::set_icr_test_interrupt(None);
    let taken = cpus::set_icr_test_target(None) - taken0;
    // Late or misdirected pings have time to land before the exact count.
    Deadline::after_ms(20).spin_until();
    let (got_a, got_b) = (
        a.ext.pings.load(Ordering::Acquire) - a0,
        b.ext.pings.load(Ordering::Acquire) - b0,
    );
    let (want_a, want_b, want_taken) = if xapic {
        (ICR_ROUNDS, ICR_ROUNDS, ICR_ROUNDS)
    } else {
        (ICR_ROUNDS, 0, 0)
    };
    check(
        stuck.is_none() && got_a == want_a && got_b == want_b && taken == want_taken,
        || {
            format!(
                "{}: CPU {} (A) got {got_a} pings, want {want_a}; CPU {} (B) got {got_b}, want {want_b}; test interrupt taken {taken} times, want {want_taken}",
                stuck.as_deref().unwrap_or("all sends done"),
                a.hot.cpu_id,
                b.hot.cpu_id
            )
        },
    )
}

fn do_int3(_: u64) -> u64 {
    exo_arch::cpu::breakpoint();
    1
}

fn breakpoint_each_cpu(_: &BootState) -> TestResult {
    for b in cpus::online() {
        let before = b.ext.breakpoints.load(Ordering::Relaxed);
        let r = cpus::run_on(CpuId(b.hot.cpu_id), do_int3, 0, Deadline::after_ms(2000))
            .map_err(|e| format!("{e}"))?;
        let after = b.ext.breakpoints.load(Ordering::Relaxed);
        check(r == 1 && after == before + 1, || {
            format!("CPU {}: int3 count {before} -> {after}", b.hot.cpu_id)
        })?;
    }
    Ok(())
}

fn page_fault_caught(_: &BootState) -> TestResult {
    let g = IrqGuard::new();
    let b = cpus::this(&g);
    let before = b.ext.fixups.load(Ordering::Relaxed);
    check(exo_arch::trap::probe_read_u64(0).is_err(), || {
        "read of page 0 did not fault".into()
    })?;
    check(
        exo_arch::trap::probe_read_u64(0x0000_7000_0000_0000).is_err(),
        || "read of unmapped user range did not fault".into(),
    )?;
    let x: u64 = 0xDEAD_BEEF_0BAD_F00D;
    let v = exo_arch::trap::probe_read_u64(&raw const x as u64);
    check(v == Ok(x), || format!("probe of a mapped word gave {v:?}"))?;
    let after = b.ext.fixups.load(Ordering::Relaxed);
    check(after == before + 2, || {
        format!("fix-up count {before} -> {after}, expected +2")
    })
}

fn tsc_check_ran(_: &BootState) -> TestResult {
    for b in cpus::online() {
        let u = b.ext.tsc_uncertainty.load(Ordering::Relaxed);
        check(u != u64::MAX, || {
            format!("CPU {} has no TSC offset estimate", b.hot.cpu_id)
        })?;
    }
    Ok(())
}

fn w_xor_x(_: &BootState) -> TestResult {
    let img = exo_arch::boot::kernel_image();
    let text = memory::translate(img.start).ok_or("kernel text unmapped")?;
    check(text.1.executable && !text.1.writable, || {
        format!("text flags {:?}", text.1)
    })?;
    let ro = memory::translate(img.text_end).ok_or("rodata unmapped")?;
    check(!ro.1.executable && !ro.1.writable, || {
        format!("rodata flags {:?}", ro.1)
    })?;
    let data = memory::translate(img.rodata_end).ok_or("data unmapped")?;
    check(!data.1.executable && data.1.writable, || {
        format!("data flags {:?}", data.1)
    })?;
    check(memory::translate(0).is_none(), || "page 0 is mapped".into())?;
    // Every 4 KiB of the image and 2 MiB steps of the first 4 GiB: never W+X.
    for p in (0..img.end)
        .step_by(4096)
        .chain((0..(4u64 << 30)).step_by(2 << 20))
    {
        if let Some((_, f)) = memory::translate(p) {
            check(!(f.writable && f.executable), || {
                format!("W+X mapping at {p:#x}")
            })?;
        }
    }
    Ok(())
}

fn stack_guard(_: &BootState) -> TestResult {
    let (boot_lo, _) = exo_arch::boot::boot_stack();
    check(memory::translate(boot_lo - 4096).is_none(), || {
        "no guard page below the boot stack".into()
    })?;
    let s = memory::alloc_stack(2).map_err(|e| format!("{e}"))?;
    check(memory::translate(s.bottom - 4096).is_none(), || {
        format!("guard page {:#x} mapped", s.bottom - 4096)
    })?;
    check(
        exo_arch::trap::probe_read_u64(s.bottom - 8).is_err(),
        || "read of the guard page did not fault".into(),
    )?;
    check(exo_arch::trap::probe_read_u64(s.bottom).is_ok(), || {
        "stack bottom not readable".into()
    })
}

fn heap_job(seed: u64) -> u64 {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..1000 {
        v.push(seed.wrapping_mul(31).wrapping_add(i));
    }
    let ok = v
        .iter()
        .enumerate()
        .all(|(i, &x)| x == seed.wrapping_mul(31).wrapping_add(i as u64));
    u64::from(ok)
}

fn heap_every_cpu(_: &BootState) -> TestResult {
    let cpus: Vec<CpuId> = cpus::online()
        .map(|b| CpuId(b.hot.cpu_id))
        .filter(|c| c.0 != 0)
        .collect();
    for &c in &cpus {
        cpus::post(c, heap_job, u64::from(c.0)).map_err(|e| format!("{e}"))?;
    }
    for &c in &cpus {
        let r = cpus::wait(c, Deadline::after_ms(5000)).map_err(|e| format!("{e}"))?;
        check(r == 1, || format!("heap check failed on CPU {}", c.0))?;
    }
    Ok(())
}

fn slow(ms: u64) -> u64 {
    Deadline::after_ms(ms).spin_until();
    7
}

fn run_on_bounded(_: &BootState) -> TestResult {
    let Some(b) = cpus::online().find(|b| b.hot.cpu_id != 0) else {
        return Ok(());
    };
    let c = CpuId(b.hot.cpu_id);
    let r = cpus::run_on(c, slow, 50, Deadline::after_ms(1));
    check(r == Err(cpus::RunError::Timeout(c)), || {
        format!("expected a timeout, got {r:?}")
    })?;
    // The late request still completes; the mailbox is usable again afterwards.
    let r = cpus::wait(c, Deadline::after_ms(5000));
    check(r == Ok(7), || format!("late completion gave {r:?}"))?;
    let r = cpus::post(CpuId(9999), slow, 0);
    check(r == Err(cpus::RunError::NotOnline(CpuId(9999))), || {
        format!("post to CPU 9999 gave {r:?}")
    })
}

/// LVT timer values the halting `cpus::wait` must leave as they are: the scheduler's
/// TSC-deadline mode (unmasked), its one-shot mode, and the masked timer of a CPU without a
/// scheduler timer. Bits 17-18 are the mode, bit 16 the mask.
const LVT_STATES: [(&str, u32); 3] = [
    ("tsc-deadline", cpus::VEC_TIMER as u32 | 0b10 << 17),
    ("one-shot", cpus::VEC_TIMER as u32),
    ("masked", cpus::VEC_TIMER as u32 | 1 << 16),
];

/// A `run_on` whose wait halts (the remote function takes 5 ms) must not change this CPU's
/// LVT timer register: the first version armed its 1 ms backstop with a one-shot LVT write,
/// which turned off the scheduler's TSC-deadline mode (its deadline writes were then
/// ignored: no preemption, no sleeper wake-ups on that CPU). TCG has no TSC-deadline timer:
/// there the mode bits are set in the LVT (QEMU keeps them; its timer then counts as a
/// one-shot with no count) and the deadline MSR writes do nothing, so this checks the
/// decision (which register is written), not that a deadline fires.
fn wait_keeps_timer_mode(_: &BootState) -> TestResult {
    if !cpus::halting_waits() {
        return Err(format!(
            "{}waits do not halt here (icount)",
            crate::ktest_sched::SKIP
        ));
    }
    let me = exo_percpu::cpu_id_hint();
    let Some(other) = cpus::online()
        .map(|b| CpuId(b.hot.cpu_id))
        .find(|&c| c != me)
    else {
        return Err(format!("{}needs 2 CPUs", crate::ktest_sched::SKIP));
    };
    let saved = exo_arch::cpu::without_interrupts(apic::lvt_timer);
    let mut result = Ok(());
    for (name, lvt) in LVT_STATES {
        exo_arch::cpu::without_interrupts(|| apic::set_lvt_timer(lvt));
        let halts = cpus::halted_waits();
        let mut r = Ok(7);
        // A wait that never halted proves nothing (a host that descheduled this vCPU for
        // the whole 5 ms): try again, a few times at most.
        for _ in 0..5 {
            r = cpus::run_on(other, slow, 5, Deadline::after_ms(5000));
            if r != Ok(7) || cpus::halted_waits() != halts {
                break;
            }
        }
        let after = exo_arch::cpu::without_interrupts(apic::lvt_timer);
        let halted = cpus::halted_waits() - halts;
        result = check(r == Ok(7) && halted > 0 && after == lvt, || {
            format!(
                "{name}: LVT timer {lvt:#x} before the wait, {after:#x} after (mode {:?} -> {:?}); run_on gave {r:?}, the wait halted {halted} times",
                apic::TimerMode::of_lvt(lvt),
                apic::TimerMode::of_lvt(after)
            )
        });
        if result.is_err() {
            break;
        }
    }
    exo_arch::cpu::without_interrupts(|| {
        apic::set_lvt_timer(saved);
        if apic::TimerMode::of_lvt(saved) != apic::TimerMode::TscDeadline
            && exo_arch::cpu::detect().tsc_deadline
        {
            apic::timer_deadline(0);
        }
    });
    result
}

const RACE_ROUNDS: usize = 2000;
/// How often the target ran poster `p`'s request of round `r`: `RACE_RUNS[p * ROUNDS + r]`.
static RACE_RUNS: [core::sync::atomic::AtomicU8; 2 * RACE_ROUNDS] =
    [const { core::sync::atomic::AtomicU8::new(0) }; 2 * RACE_ROUNDS];
/// Which of those posts returned Ok.
static RACE_OK: [core::sync::atomic::AtomicBool; 2 * RACE_ROUNDS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; 2 * RACE_ROUNDS];
/// Per poster: rounds entered (the two-party barrier), posts refused as busy, other errors.
static RACE_ROUND: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static RACE_BUSY: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static RACE_ERR: AtomicU64 = AtomicU64::new(0);
/// The first error: poster, round and what (1 barrier timeout, 2 not a request's result,
/// 3 wait error, 4 post error).
static RACE_WHY: AtomicU64 = AtomicU64::new(0);
/// Requests that ran with another poster's argument (a torn function/argument pair).
static RACE_TORN: AtomicU64 = AtomicU64::new(0);
static RACE_TARGET: AtomicU64 = AtomicU64::new(0);
/// What a request returns: its argument, scrambled (a result is recognisably a request's).
const RACE_MAGIC: u64 = 0x5EED_0000_0000_0000;

fn race_record(who: u64, arg: u64) -> u64 {
    if arg >> 32 != who {
        RACE_TORN.fetch_add(1, Ordering::Relaxed);
    }
    let i = (arg >> 32) as usize * RACE_ROUNDS + (arg & 0xFFFF_FFFF) as usize;
    if let Some(c) = RACE_RUNS.get(i) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    arg ^ RACE_MAGIC
}

fn race_record0(arg: u64) -> u64 {
    race_record(0, arg)
}

fn race_record1(arg: u64) -> u64 {
    race_record(1, arg)
}

/// Poster `who` (0 or 1): each round, meet the other poster, then both post to the target
/// at once; an accepted post waits for its own result.
fn race_poster(who: u64) -> u64 {
    let fail = |round: u64, what: u64, detail: u64| {
        if RACE_ERR.fetch_add(1, Ordering::Relaxed) == 0 {
            RACE_WHY.store(
                what << 60 | who << 56 | round << 32 | (detail & 0xFFFF_FFFF),
                Ordering::Relaxed,
            );
        }
        1
    };
    let target = CpuId(RACE_TARGET.load(Ordering::Relaxed) as u32);
    let me = &RACE_ROUND[who as usize];
    let other = &RACE_ROUND[1 - who as usize];
    let f: cpus::RemoteFn = if who == 0 { race_record0 } else { race_record1 };
    for round in 0..RACE_ROUNDS as u64 {
        me.store(round + 1, Ordering::Release);
        let d = Deadline::after_ms(5000);
        while other.load(Ordering::Acquire) < round + 1 {
            if d.passed() || RACE_ERR.load(Ordering::Relaxed) != 0 {
                return fail(round, 1, 0);
            }
            core::hint::spin_loop();
        }
        let arg = who << 32 | round;
        match cpus::post(target, f, arg) {
            Ok(()) => {
                RACE_OK[who as usize * RACE_ROUNDS + round as usize].store(true, Ordering::Relaxed);
                // Not its result: when the target is quick, both posts of a round can be
                // accepted one after the other, and `wait` reports the last request's.
                let r = cpus::wait(target, Deadline::after_ms(5000));
                match r {
                    Ok(r) if r ^ RACE_MAGIC < 2 << 32 => {}
                    Ok(r) => return fail(round, 2, r),
                    Err(_) => return fail(round, 3, 0),
                }
            }
            Err(cpus::RunError::Busy(_)) => {
                RACE_BUSY[who as usize].fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return fail(round, 4, 0),
        }
    }
    me.store(RACE_ROUNDS as u64 + 1, Ordering::Release);
    0
}

/// Two CPUs (0, the caller, and 1) post to a third (2) at the same moment, 2000 times: every
/// post that returned Ok ran exactly once with its own function and argument, every Busy
/// post never ran, and Ok + Busy = attempts. With the first
/// mailbox (check, then store) both posters could see it free: one request was lost and
/// the other could run with the wrong argument.
fn racing_posters(_: &BootState) -> TestResult {
    let online: Vec<CpuId> = cpus::online().map(|b| CpuId(b.hot.cpu_id)).collect();
    if online.len() < 3 {
        return Err(format!(
            "{}needs 3 CPUs (two posters and a target)",
            crate::ktest_sched::SKIP
        ));
    }
    RACE_TARGET.store(u64::from(online[2].0), Ordering::Relaxed);
    cpus::post(online[1], race_poster, 1).map_err(|e| format!("{e}"))?;
    let mine = race_poster(0);
    let theirs = cpus::wait(online[1], Deadline::after_ms(60_000)).map_err(|e| format!("{e}"))?;
    check(
        mine == 0 && theirs == 0 && RACE_ERR.load(Ordering::Relaxed) == 0,
        || {
            format!(
                "a poster stopped (CPU 0: {mine}, CPU {}: {theirs}), first error {:#x} (what << 60 | poster << 56 | round << 32 | detail; what: 1 barrier timeout, 2 not a request's result, 3 wait error, 4 post error)",
                online[1].0,
                RACE_WHY.load(Ordering::Relaxed)
            )
        },
    )?;
    check(RACE_TORN.load(Ordering::Relaxed) == 0, || {
        format!(
            "{} requests ran with the other poster's argument",
            RACE_TORN.load(Ordering::Relaxed)
        )
    })?;
    for (who, busy) in RACE_BUSY.iter().enumerate() {
        let mut oks = 0;
        for round in 0..RACE_ROUNDS {
            let i = who * RACE_ROUNDS + round;
            let ok = RACE_OK[i].load(Ordering::Relaxed);
            let runs = RACE_RUNS[i].load(Ordering::Relaxed);
            oks += usize::from(ok);
            check(runs == u8::from(ok), || {
                format!("poster {who} round {round}: post ok {ok}, ran {runs} times")
            })?;
        }
        let busy = busy.load(Ordering::Relaxed) as usize;
        check(oks + busy == RACE_ROUNDS, || {
            format!("poster {who}: {oks} ok + {busy} busy != {RACE_ROUNDS} attempts")
        })?;
    }
    Ok(())
}

/// Objects handed from one CPU to another to be checked and freed there.
static EXCHANGE: spin::Mutex<Vec<Vec<u64>>> = spin::Mutex::new(Vec::new());
const STORM_ROUNDS: u64 = 3000;
const EXCHANGE_CAP: usize = 4096;

fn pattern(tag: u64, i: usize) -> u64 {
    tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

fn canary_ok(v: &[u64]) -> bool {
    let Some(&tag) = v.first() else { return true };
    v.iter()
        .enumerate()
        .skip(1)
        .all(|(i, &x)| x == pattern(tag, i))
}

/// Random sizes (8 B .. 8 KiB: every class and the page path), canaries, up to 64 live
/// objects; a quarter of the objects go to other CPUs, and objects from others are checked
/// and freed here. Returns the number of canary failures (0 = good).
fn storm(seed: u64) -> u64 {
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<Vec<u64>> = Vec::with_capacity(64);
    let mut bad = 0;
    for round in 0..STORM_ROUNDS {
        let r = next();
        if live.len() < 64 && r % 3 != 0 {
            let words = match r % 16 {
                0 => 512 + (r >> 8) as usize % 512, // 4..8 KiB: whole pages
                _ => 1 + (r >> 8) as usize % 256,   // 8 B .. 2 KiB: size classes
            };
            let tag = seed << 32 | round;
            let mut v = Vec::with_capacity(words);
            v.push(tag);
            for i in 1..words {
                v.push(pattern(tag, i));
            }
            live.push(v);
        } else if !live.is_empty() {
            let v = live.swap_remove((r >> 4) as usize % live.len());
            bad += u64::from(!canary_ok(&v));
            if r % 4 == 0 {
                let mut ex = EXCHANGE.lock();
                if ex.len() < EXCHANGE_CAP {
                    ex.push(v);
                }
            }
        }
        if r % 5 == 0 {
            let theirs = EXCHANGE.lock().pop();
            if let Some(v) = theirs {
                bad += u64::from(!canary_ok(&v));
            }
        }
    }
    for v in live {
        bad += u64::from(!canary_ok(&v));
    }
    bad
}

fn drain(_: u64) -> u64 {
    crate::kalloc::drain_this_cpu();
    0
}

pub(crate) fn drain_all() -> Result<(), String> {
    for b in cpus::online() {
        cpus::run_on(CpuId(b.hot.cpu_id), drain, 0, Deadline::after_ms(5000))
            .map_err(|e| format!("{e}"))?;
    }
    Ok(())
}

fn alloc_storm(_: &BootState) -> TestResult {
    let all: Vec<CpuId> = cpus::online().map(|b| CpuId(b.hot.cpu_id)).collect();
    let mut results: Vec<u64> = Vec::with_capacity(all.len());
    EXCHANGE.lock().reserve(EXCHANGE_CAP);
    let mut leftovers: Vec<Vec<u64>> = Vec::with_capacity(EXCHANGE_CAP);
    drain_all()?;
    let before = crate::kalloc::stats();
    for &c in all.iter().filter(|c| c.0 != 0) {
        cpus::post(c, storm, u64::from(c.0) + 1).map_err(|e| format!("{e}"))?;
    }
    results.push(storm(1));
    for &c in all.iter().filter(|c| c.0 != 0) {
        results.push(cpus::wait(c, Deadline::after_ms(60_000)).map_err(|e| format!("{e}"))?);
    }
    leftovers.extend(EXCHANGE.lock().drain(..));
    let bad_left = leftovers.iter().filter(|v| !canary_ok(v)).count();
    leftovers.clear();
    drain_all()?;
    let after = crate::kalloc::stats();
    let bad: u64 = results.iter().sum();
    check(bad == 0 && bad_left == 0, || {
        format!("{bad} + {bad_left} corrupted objects")
    })?;
    check(
        after.objects_out == before.objects_out && after.large_frames == before.large_frames,
        || {
            format!(
                "live objects/large frames {}/{} before, {}/{} after",
                before.objects_out, before.large_frames, after.objects_out, after.large_frames
            )
        },
    )?;
    check(
        after.buddy_free + after.slab_frames == before.buddy_free + before.slab_frames,
        || {
            format!(
                "free+slab frames {} before, {} after",
                before.buddy_free + before.slab_frames,
                after.buddy_free + after.slab_frames
            )
        },
    )
}

fn frame_exhaustion(_: &BootState) -> TestResult {
    drain_all()?;
    let before = crate::kalloc::stats().buddy_free;
    let mut frames: Vec<crate::kalloc::Frame> = Vec::new();
    frames
        .try_reserve_exact(before + 64)
        .map_err(|e| format!("bookkeeping vector: {e}"))?;
    let drained_before = crate::kalloc::stats().buddy_free;
    loop {
        match crate::kalloc::alloc_frame() {
            Ok(f) if frames.len() < frames.capacity() => frames.push(f),
            Ok(f) => {
                crate::kalloc::free_frame(f);
                return Err("more frames than the buddy said were free".into());
            }
            Err(crate::kalloc::OutOfMemory) => break,
        }
    }
    let got = frames.len();
    // Out of frames, the object allocator must fail cleanly too (no panic, no corruption)
    // unless a cached object can still serve the request.
    let mut v: Vec<u8> = Vec::new();
    let oom = v.try_reserve_exact(3 * 4096).is_err();
    for f in frames.drain(..) {
        crate::kalloc::free_frame(f);
    }
    drop(frames);
    drain_all()?;
    let after = crate::kalloc::stats().buddy_free;
    check(oom, || {
        "a 12 KiB allocation succeeded with no frame left".into()
    })?;
    check(
        got + 1 >= drained_before / 2 && got <= drained_before,
        || format!("got {got} frames, {drained_before} were free"),
    )?;
    check(after == before, || {
        format!("{before} frames free before, {after} after")
    })
}

fn fallible_oom(_: &BootState) -> TestResult {
    let mut v: Vec<u8> = Vec::new();
    check(v.try_reserve(1 << 40).is_err(), || {
        "a 1 TiB reservation succeeded".into()
    })?;
    let layout =
        core::alloc::Layout::from_size_align(64 << 20, 4096).map_err(|e| format!("{e}"))?;
    check(crate::kalloc::try_alloc_owned(layout).is_err(), || {
        "a 64 MiB block (beyond the largest order) succeeded".into()
    })?;
    for (size, align) in [
        (64, 8),
        (48, 16),
        (2048, 2048),
        (3000, 8),
        (4096, 4096),
        (20000, 4096),
    ] {
        let l = core::alloc::Layout::from_size_align(size, align).map_err(|e| format!("{e}"))?;
        let a = crate::kalloc::try_alloc_owned(l).map_err(|e| format!("{size} B: {e}"))?;
        check(a.addr() % align == 0, || {
            format!("{size} B object at {:#x} not {align}-aligned", a.addr())
        })?;
    }
    Ok(())
}

/// On a drained CPU, the 64-byte magazine follows its model exactly: a miss takes `BATCH + 1`
/// objects from the pool (one for the caller), a free into a full magazine (`HIGH_WATER`)
/// first gives the `BATCH` oldest back.
fn refill_drain(_: &BootState) -> TestResult {
    use crate::kalloc::{BATCH, HIGH_WATER, this_cpu_stats};
    let class = exo_mm::class_for(64, 8).ok_or("no 64-byte class")?.index();
    let rounds = 2 * HIGH_WATER + 5;
    let mut held: Vec<Box<core::mem::MaybeUninit<[u8; 64]>>> = Vec::with_capacity(rounds);
    let _g = exo_percpu::IrqGuard::new(); // stay on this CPU; no interrupt allocates anyway
    crate::kalloc::drain_this_cpu();
    let mut model = 0usize;
    let mut max_seen = 0;
    let mut drains = 0;
    check(this_cpu_stats().objects[class] == 0, || {
        "magazine not empty after drain".into()
    })?;
    for i in 0..rounds {
        held.push(Box::new_uninit());
        model = if model == 0 { BATCH } else { model - 1 };
        let n = this_cpu_stats().objects[class];
        check(n == model, || {
            format!("after allocation {i}: {n} cached, model says {model}")
        })?;
    }
    for i in 0..rounds {
        drop(held.pop());
        if model == HIGH_WATER {
            model = model - BATCH + 1;
            drains += 1;
        } else {
            model += 1;
        }
        let n = this_cpu_stats().objects[class];
        max_seen = max_seen.max(n);
        check(n == model, || {
            format!("after free {i}: {n} cached, model says {model}")
        })?;
    }
    check(max_seen <= HIGH_WATER && drains > 0, || {
        format!("max {max_seen} cached (cap {HIGH_WATER}), {drains} drains")
    })?;
    Ok(())
}
