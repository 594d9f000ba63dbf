//! Boot: the command line (`cmdline`), fault-injection knobs (`faults`) and the boot
//! sequence in phases, one `BOOT,<phase>,<tsc>` line each, from the PVH entry to every CPU
//! online; [`bsp_main`] returns the [`BootState`] the jobs (`harness`) run on, and
//! [`report`] is the `boot` job.
//!
//! Calls down to every subsystem (it brings them up in order); nothing below calls it.

pub mod cmdline;
mod faults;
mod tests;

use crate::console::exit;
use crate::kprintln;
use crate::mm::memory;
use crate::smp::cpus::{self, VEC_APIC_ERROR, VEC_SPURIOUS};
use crate::smp::{bringup as smp, time, tsc_sync};
use alloc::vec::Vec;
use cmdline::Options;
use core::sync::atomic::Ordering;
use exo_arch::apic;
use exo_arch::exit::ExitCode;
use exo_arch::tsc::{FreqSource, rdtsc};
use exo_percpu::CpuId;
use log::{error, info, warn};

/// The AP bring-up deadline under TCG and foreign hypervisors when the command line sets none.
const AP_TIMEOUT_EMULATED_MS: u64 = 30_000;
/// The AP deadline elsewhere (see `AP_TIMEOUT_EMULATED_MS`).
const AP_TIMEOUT_MS: u64 = 5_000;

/// What the later jobs need to know about boot.
#[derive(Debug)]
pub struct BootState {
    /// Command-line options.
    pub opts: Options,
    /// APIC ids of the usable CPUs the MADT lists (BSP included), in CPU-id order; an AP
    /// not started (`SmpReport::not_started`, or every AP when none could be:
    /// `SmpReport::none_started`, no CPU table) has no CPU id and is left out.
    pub madt_apic_ids: Vec<u32>,
    /// The AP start-up outcome.
    pub smp: smp::SmpReport,
    /// APIC mode.
    pub apic_mode: apic::Mode,
    /// TSC Hz and where it came from.
    pub tsc: (u64, FreqSource),
    /// Local APIC timer ticks per second.
    pub apic_timer_hz: u64,
    /// CPU features.
    pub features: exo_arch::cpu::Features,
    /// TSC at the kernel's first instruction.
    pub first_tsc: u64,
    /// TSC when the last AP came online (or the deadline passed).
    pub aps_online_tsc: u64,
}

/// TSC at the end of boot ([`done`]), 0 before.
static DONE_TSC: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The end of boot: every CPU online, the TSC check done, the kernel's own set-up done
/// (the commit limits, the last step before any job); the first call takes the TSC, the
/// `boot` job prints it as `BOOT,done` and `boot.ms` ends there.
pub fn done() -> u64 {
    let t = rdtsc();
    match DONE_TSC.compare_exchange(0, t, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => t,
        Err(first) => first,
    }
}

/// The end of boot if [`done`] was called (the harness calls it before any job).
pub fn done_at() -> Option<u64> {
    Some(DONE_TSC.load(Ordering::Acquire)).filter(|&t| t != 0)
}

fn phase(name: &str) -> u64 {
    let t = rdtsc();
    kprintln!("BOOT,{name},{t}");
    t
}

fn fail(msg: core::fmt::Arguments<'_>) -> ! {
    kprintln!("BOOT FAILED: {msg}");
    exit(ExitCode::Failure)
}

/// The BSP's Rust entry (called from the PVH boot code).
pub fn bsp_main(start_info: u64) -> BootState {
    let first = exo_arch::boot::first_instruction_tsc();
    crate::console::init(log::LevelFilter::Info);
    kprintln!("BOOT,entry,{first}");
    let bi = crate::sys::read_start_info(start_info).unwrap_or_else(|e| fail(format_args!("{e}")));
    let mut opts = cmdline::parse(&bi.cmdline, |b| warn!("ignored bad option {:?}", b.0));
    if opts.fatal {
        fail(format_args!(
            "a bad exo.job, exo.init, exo.init_arg, exo.test or exo.bench (see the warning): \
             the run would not be the one asked for"
        ));
    }
    log::set_max_level(opts.log_level);
    // Under TCG (and other hypervisors) an AP is a host thread: 64 of them on a loaded
    // 2-core host took more than 5 s to come up (seen in CI). The default deadline is
    // 30 s there; a valid `exo.ap_timeout_ms` still sets it (a bad one changes nothing).
    let ap_timeout_ms =
        opts.ap_timeout_ms
            .unwrap_or(if exo_arch::cpu::emulated_or_foreign_hypervisor() {
                AP_TIMEOUT_EMULATED_MS
            } else {
                AP_TIMEOUT_MS
            });
    // `exo.mode=` may only claim less than what was detected (`Mode::may_report_as`: tcg
    // from any mode, kvm-trapped from kvm); any other is refused and the detected mode kept.
    // Until 2026-12-06 any override was taken with a warning, and `exo.mode=kvm` under TCG
    // had the report take emulated ticks for cycles (found by review).
    let detected = detect_mode();
    let requested = opts.mode;
    opts.mode = Some(match smp_bench::Mode::resolve(detected, requested) {
        Ok(m) if requested.is_none() => {
            info!("mode {m} (detected; exo.mode=tcg, or kvm-trapped under kvm, overrides)");
            m
        }
        Ok(m) if m != detected => {
            warn!("exo.mode={m} overrides the detected mode {detected} (it claims less)");
            m
        }
        Ok(m) => m,
        Err(m) => {
            let r = requested.map_or("", smp_bench::Mode::as_str);
            warn!(
                "exo.mode={r} refused: this run is {m}, its ticks are not what {r} claims \
                 (an override may only claim less: tcg, or kvm-trapped under kvm); mode {m}"
            );
            m
        }
    });
    // A cut line lost its last words (the cut one whole, and everything after): an
    // `exo.job`, `exo.test` or `exo.init` among them would leave a run that is not the one
    // asked for and exits with success (the boot job instead of the tests). Until
    // 2026-12-05 it was a warning (found by review; a CI step boots a 600-byte line).
    if bi.cmdline_truncated {
        fail(format_args!(
            "the command line is longer than {} bytes: its end would be lost",
            exo_arch::pvh::CMDLINE_MAX
        ));
    }
    let features = exo_arch::cpu::enable_features();
    for r in &bi.memmap {
        log::debug!(
            "memmap {:#014x}..{:#014x} {:?}",
            r.start,
            r.start.saturating_add(r.len),
            r.kind
        );
    }
    // The BSP's GS block first: the allocator's fast paths live in it.
    let (lo, hi) = exo_arch::boot::boot_stack();
    let bsp_block = cpus::take_bsp_block(exo_arch::cpu::apic_id_from_cpuid(), hi);
    let bsp = cpus::install_this_cpu(bsp_block, (lo, hi));
    cpus::register_this_cpu(bsp);
    let bsp_gs_base = core::ptr::from_ref(bsp) as u64;
    // The IDT from here, on the boot GDT (same code selector): an exception while memory
    // is set up (the loader's memory map and modules are followed there) is reported and
    // fails the run. Until 2026-12-05 the IDT came after `memory::init` and such a fault
    // triple-faulted with no word (found by review). Until the TSS is loaded with the
    // kernel's own GDT below, the early IDT has no IST gates: #DB, NMI, #DF and #MC run on
    // the boot stack (until 2026-12-05 their IST gates faulted with no TSS: a reset).
    crate::trap::init();
    exo_arch::trap::load_early_idt();
    if opts.fault_early {
        info!("deliberate #UD before memory is set up (exo.fault_early)");
        exo_arch::cpu::undefined_instruction();
    }
    if opts.debug_early {
        info!("deliberate #DB (int 1) before the TSS is loaded (exo.debug_early)");
        let before = crate::trap::KERNEL_DEBUG_TRAPS.load(core::sync::atomic::Ordering::Relaxed);
        exo_arch::cpu::debug_interrupt();
        // Counted only if the handler found this CPU's block through GS.
        let n =
            crate::trap::KERNEL_DEBUG_TRAPS.load(core::sync::atomic::Ordering::Relaxed) - before;
        info!("exo.debug_early: the #DB was taken on the boot stack and returned, counted {n}");
    }
    if bi.memmap_dropped != 0 {
        // More entries that matter than fit (`pvh::select_regions`): the smallest RAM-like
        // ones made room: less memory, never a reserved range.
        warn!(
            "memory map: {} entries that matter did not fit in {} (the smallest RAM entries dropped: less memory is used)",
            bi.memmap_dropped,
            exo_arch::pvh::MEMMAP_MAX
        );
    }
    if bi.modules_dropped != 0 {
        warn!(
            "boot modules: {} beyond the first {} ignored (only the first is read, as the initrd)",
            bi.modules_dropped,
            exo_arch::pvh::MODULES_MAX
        );
    }
    // Each module is checked before anything uses it (reserved, mapped, read as the
    // initrd): a refused one is logged and left alone, its memory the allocator's.
    let modules = exo_arch::pvh::accept_modules(&bi.memmap, &bi.modules, |k, pa, len, why| {
        warn!(
            "boot module {k}{} ({len:#x} bytes at {pa:#x}) refused: {why}; not read, its \
             memory not reserved",
            if k == 0 { ", the initrd" } else { "" }
        );
    });
    let (mib, frames) = memory::init(&bi.memmap, features.nx, &modules.accepted())
        .unwrap_or_else(|e| fail(format_args!("memory: {e}")));
    if opts.debug_early {
        // After the kernel's tables (the low identity map gone), still before the TSS.
        info!("deliberate NMI (int 2) before the TSS is loaded (exo.debug_early)");
        exo_arch::cpu::nmi_interrupt();
        info!("exo.debug_early: the NMI was taken on the boot stack and returned");
    }
    if let Some((pa, len)) = modules.initrd() {
        crate::user::initrd::set(pa, len);
        info!("initrd: {len} bytes at {pa:#x} (PVH module)");
    }
    // PCID-tagged address spaces when the CPU has PCID and INVPCID (every AP follows).
    exo_arch::tlb::enable_pcid(exo_arch::tlb::pcid_available());
    crate::smp::tlb::set_kernel_root(memory::kernel_root());
    info!(
        "address spaces: {}",
        if exo_arch::tlb::pcid_enabled() {
            "PCID-tagged (PCID + INVPCID)"
        } else {
            "untagged (no PCID/INVPCID: a CR3 load flushes)"
        }
    );
    info!(
        "memory: {mib} MiB usable in {} map entries, {frames} frames to the buddy, kernel tables loaded (NX {})",
        bi.memmap.len(),
        features.nx
    );
    phase("memory");

    crate::user::init();
    match smp::prepare_tables(hi) {
        Ok(t) => exo_arch::gdt::load(t, bsp_gs_base),
        Err(e) => fail(format_args!("BSP descriptor tables: {e}")),
    }
    exo_arch::syscall::init_cpu();
    exo_arch::trap::load_idt();

    let acpi = refuse_windows_over_ram(discover_cpus(&opts, bi.rsdp, &bi.modules), &bi.memmap);
    let (madt_ids, lapic_base) = (acpi.apic_ids, acpi.lapic_base);
    crate::dev::pci::init(&acpi.ecam, &bi.memmap);
    crate::dev::virtio::init_mmio(&acpi.virtio_mmio, &opts.virtio_mmio);
    crate::dev::irq::init();
    phase("acpi");

    apic::disable_legacy_pic();
    let mode = apic::select_mode(features.x2apic, opts.allow_x2apic);
    // The CPU's own register (IA32_APIC_BASE) says where its local APIC answers; the MADT's
    // copy is only compared with it (a bad table must not aim the kernel's register writes
    // at RAM or at an unmapped address).
    let hw_base = apic::mmio_base();
    if lapic_base != hw_base {
        warn!(
            "the MADT places the local APIC at {lapic_base:#x}, the CPU at {hw_base:#x} \
             (IA32_APIC_BASE): the CPU's is used"
        );
    }
    if mode == apic::Mode::XApic && hw_base >= 4 << 30 {
        fail(format_args!(
            "local APIC registers at {hw_base:#x}, above the 4 GiB the kernel maps for \
             devices, and no x2APIC to reach them otherwise"
        ));
    }
    apic::enable_local(VEC_SPURIOUS, VEC_APIC_ERROR);
    let bsp_apic = apic::id();
    if cpus::get(CpuId(0)).is_some_and(|b| b.hot.apic_id != bsp_apic) {
        fail(format_args!("BSP APIC id {bsp_apic} differs from CPUID's"));
    }
    let tsc = calibrate_tsc(opts.tsc_ref, acpi.pm_timer, acpi.hpet);
    time::set_tsc_hz(tsc.0);
    // QEMU aborts ("Bad icount read") when an x2APIC timer-count MSR is read under -icount:
    // the read is not flagged as I/O in the translated block. Skip that measurement there.
    let apic_timer_hz = if opts.mode == Some(smp_bench::Mode::Icount) && mode == apic::Mode::X2Apic
    {
        warn!("icount mode with x2APIC: APIC timer calibration skipped (QEMU limitation)");
        0
    } else {
        calibrate_apic_timer(tsc.0)
    };
    info!(
        "APIC {} (BSP id {bsp_apic}), TSC {} MHz ({:?}, invariant {}), APIC timer {} MHz, SMEP {} SMAP {} UMIP {}",
        mode.name(),
        tsc.0 / 1_000_000,
        tsc.1,
        features.invariant_tsc,
        apic_timer_hz / 1_000_000,
        features.smep,
        features.smap,
        features.umip
    );
    time::set_apic_timer_hz(apic_timer_hz);
    cpus::set_halting_waits(apic_timer_hz != 0 && opts.mode != Some(smp_bench::Mode::Icount));
    if let Some(b) = cpus::get(CpuId(0)) {
        b.ext.online_tsc.store(rdtsc(), Ordering::Relaxed);
        b.ext.online.store(true, Ordering::Release);
    }
    exo_arch::cpu::sti();
    phase("apic");

    let mut order: Vec<u32> = Vec::new();
    order.push(bsp_apic);
    let mut aps: Vec<u32> = madt_ids
        .iter()
        .copied()
        .filter(|&id| id != bsp_apic)
        .collect();
    if !madt_ids.contains(&bsp_apic) && !madt_ids.is_empty() {
        warn!("the BSP's APIC id {bsp_apic} is not in the MADT");
    }
    if let Some(p) = opts.phantom_apic_id {
        // INIT and SIPI to a real CPU's id (the BSP's own, or an AP's twice) or to the
        // broadcast id would reset or restart running CPUs.
        let broadcast = if mode == apic::Mode::X2Apic {
            u32::MAX
        } else {
            0xFF
        };
        if p == bsp_apic || madt_ids.contains(&p) || p == broadcast {
            warn!("exo.phantom_apic={p} ignored: it names a CPU that exists, or all of them");
            opts.phantom_apic_id = None;
        } else {
            info!("adding phantom APIC id {p} (exo.phantom_apic): no CPU will answer it");
            aps.push(p);
        }
    }
    limit_aps(&mut aps, mode);
    // APs that cannot be started because the CPU table could not be sized: reported with
    // the others not started, after the CPU lines (until 2026-12-05 dropped without a line).
    let mut no_table: Vec<u32> = Vec::new();
    let sized = if opts.cpu_table_fail {
        Err(cpus::TableError::OutOfMemory)
    } else {
        cpus::size_table(aps.len() + 1)
    };
    if let Err(e) = sized {
        // Cannot happen after `limit_aps`, except out of memory: run on the BSP alone.
        error!("CPU table: {e}; starting no AP");
        no_table = core::mem::take(&mut aps);
        let _ = cpus::size_table(1);
    }
    order.extend(aps.iter().copied());
    let cr3 = exo_arch::cpu::read_cr3();
    crate::boot::faults::before_ap_start(&opts, &aps);
    let report = smp::start_aps(&aps, ap_timeout_ms, features.nx, cr3);
    // An AP not started took no CPU id (the next one took it): `order` stays in CPU-id order.
    order.retain(|id| !report.not_started.iter().any(|d| d.apic_id == *id));
    if report.none_started.is_some() {
        order.truncate(1); // the BSP's
    }
    let aps_online_tsc = phase("aps");
    if let Some(c) = opts.tsc_mute_cpu {
        tsc_sync::mute(c);
    }
    tsc_sync::check_all();
    // Its own phase: one exchange per AP against the boot CPU, the longest step of a large
    // boot under emulation.
    phase("tsc_sync");
    kprintln!(
        "SMP,{},{},{}",
        report.online,
        report.expected + no_table.len() as u32,
        mode.name()
    );
    for b in cpus::online() {
        kprintln!(
            "CPU,{},{},{},{}",
            b.hot.cpu_id,
            b.hot.apic_id,
            b.ext.tsc_offset.load(Ordering::Relaxed),
            b.ext.tsc_uncertainty.load(Ordering::Relaxed)
        );
    }
    // The APs not started, and the ones that did not answer, after the CPUs online.
    for d in &report.not_started {
        kprintln!("CPUDOWN,{},not started,{}", d.apic_id, d.why);
    }
    // No AP started because the bring-up's own lists could not be allocated: each by APIC
    // id (until 2026-12-05 the SMP line alone said it, by its count).
    if let Some(why) = report.none_started {
        for id in &aps {
            kprintln!("CPUDOWN,{id},not started,{why}");
        }
    }
    let forced = if opts.cpu_table_fail {
        " (forced by exo.cpu_table_fail)"
    } else {
        ""
    };
    for id in &no_table {
        kprintln!("CPUDOWN,{id},not started,no memory for the CPU table{forced}");
    }
    for id in &report.missing {
        kprintln!("CPUDOWN,{id},did not come online,no progress for {ap_timeout_ms} ms");
    }
    let state = BootState {
        opts: opts.clone(),
        madt_apic_ids: order,
        smp: report,
        apic_mode: mode,
        tsc,
        apic_timer_hz,
        features,
        first_tsc: first,
        aps_online_tsc,
    };
    if let Some(c) = opts.panic_on_cpu {
        if opts.nmi_in_report {
            crate::trap::panic::nmi_self_in_report();
        }
        if let Some(m) = opts.panic_also_cpu.filter(|&m| m != c) {
            // CPU `m` panics once `c` is reporting; the report waits for it (test switch).
            crate::trap::panic::await_second_panic();
            // Not waited for: its panic stops every CPU.
            if let Err(e) = cpus::post(CpuId(m), second_boom, 0) {
                error!("exo.panic_also_cpu={m}: could not reach CPU {m}: {e}");
            }
        }
        deliberate_failure(c, boom, "panic");
    }
    if let Some(c) = opts.panic_console_held {
        // The CPU that panics cannot hold the console for good first: it would spin in
        // the lock forever (until 2026-12-05 `=0` hung the run; found by review).
        if c == exo_percpu::cpu_id_hint().0 {
            warn!("exo.panic_console_held={c} names the CPU that panics: ignored");
        } else {
            panic_with_console_held(c);
        }
    }
    if let Some(what) = opts.double_free {
        if cfg!(debug_assertions) {
            crate::mm::kalloc::double_free_selftest(what);
            fail(format_args!("a bad free went unnoticed"));
        }
        warn!("exo.double_free needs a debug build; ignored");
    }
    if let Some(c) = opts.overflow_on_cpu {
        deliberate_failure(c, overflow, "stack overflow");
    }
    state
}

/// The `boot` job: the memory and timing summary, then power off.
pub fn report(state: &BootState) -> ! {
    let done = done();
    kprintln!("BOOT,done,{done}");
    let us = time::ticks_to_us(done - state.first_tsc);
    let m = crate::mm::kalloc::stats();
    kprintln!(
        "MEM,buddy_free,{},slab_frames,{},objects_out,{},large_frames,{}",
        m.buddy_free,
        m.slab_frames,
        m.objects_out,
        m.large_frames
    );
    kprintln!(
        "INFO,tsc_hz,{},{:?},apic_timer_hz,{},features,{:?},apic,{}",
        state.tsc.0,
        state.tsc.1,
        state.apic_timer_hz,
        state.features,
        state.apic_mode.name()
    );
    kprintln!(
        "BOOTTIME,{}.{:03},ms,{}",
        us / 1000,
        us % 1000,
        state.smp.online
    );
    panic_at_exit(&state.opts);
    exit(ExitCode::Success)
}

/// `exo.panic_at_exit=N` / `exo.panic_after_exit=N`: CPU `N` panics as the job exits, its
/// report holding until the exit began, or its panic waiting until the exit was claimed.
fn panic_at_exit(opts: &Options) {
    use crate::trap::panic;
    if let Some(c) = opts.panic_at_exit {
        panic::hold_reports_until_exit();
        if let Err(e) = cpus::post(CpuId(c), boom_at_exit, 0) {
            error!("exo.panic_at_exit={c}: could not reach CPU {c}: {e}");
        }
        // The exit must meet the panic already claimed.
        time::Deadline::after_ms(5000).spin_until_or(panic::stopping);
    } else if let Some(c) = opts.panic_after_exit {
        panic::hold_exit_until_panic();
        if let Err(e) = cpus::post(CpuId(c), boom_after_exit, 0) {
            error!("exo.panic_after_exit={c}: could not reach CPU {c}: {e}");
        }
    }
}

fn boom_at_exit(_: u64) -> u64 {
    panic!("deliberate panic requested by exo.panic_at_exit");
}

/// `exo.panic_after_exit`: waits (at most 10 s) until an exit is claimed, then panics.
fn boom_after_exit(_: u64) -> u64 {
    time::Deadline::after_ms(10_000).spin_until_or(crate::trap::panic::exiting);
    panic!("deliberate panic requested by exo.panic_after_exit");
}

/// Keeps the APs this boot can start (the rule `exo-madt` shows users: `exo_acpi::plan`) and
/// logs the others by APIC id.
fn limit_aps(aps: &mut Vec<u32>, mode: apic::Mode) {
    let d = exo_acpi::plan::limit_aps(aps, mode == apic::Mode::X2Apic, cpus::CPU_LIMIT);
    for id in &d.unaddressable_ids {
        warn!("APIC id {id} cannot be addressed in xAPIC mode: CPU not started");
    }
    if d.unaddressable > 0 {
        error!(
            "{} CPU(s) with APIC ids above 254 not started: xAPIC mode (no x2APIC)",
            d.unaddressable
        );
    }
    if let Some((lo, hi)) = d.beyond_limit_ids {
        error!(
            "MADT lists {} usable CPUs; Exo-OS starts at most {} (cpus::CPU_LIMIT): {} not started, APIC ids {lo}..={hi} among them",
            aps.len() + d.beyond_limit + 1,
            cpus::CPU_LIMIT,
            d.beyond_limit
        );
    }
}

fn boom(_: u64) -> u64 {
    panic!("deliberate panic requested by exo.panic_on_cpu");
}

/// `exo.panic_also_cpu`: waits (at most 10 s) until another CPU is reporting a panic, then
/// panics too.
fn second_boom(_: u64) -> u64 {
    time::Deadline::after_ms(10_000).spin_until_or(crate::trap::panic::stopping);
    panic!("deliberate second panic requested by exo.panic_also_cpu");
}

fn hold_console(_: u64) -> u64 {
    crate::console::hold_forever()
}

/// `exo.panic_console_held=N`: CPU `N` takes the console lock for good, then this CPU
/// panics; the report must take the console over (one line says so) instead of waiting out
/// the lock's bound at every line.
fn panic_with_console_held(c: u32) -> ! {
    info!("deliberate panic on this CPU while CPU {c} holds the console");
    // It never returns: the deadline ends the wait for it.
    let _ = cpus::run_on(CpuId(c), hold_console, 0, time::Deadline::after_ms(200));
    let held = time::Deadline::after_ms(5000);
    while crate::console::holder() != Some(c) && !held.passed() {
        core::hint::spin_loop();
    }
    panic!("deliberate panic requested by exo.panic_console_held (CPU {c} holds the console)");
}

/// Recurses until the stack's guard page stops it: #PF, which cannot push its frame on the
/// dead stack, escalates to #DF, handled on its own IST stack.
fn overflow(depth: u64) -> u64 {
    let pad = core::hint::black_box([depth; 64]);
    if core::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    overflow(depth + 1).wrapping_add(core::hint::black_box(pad[depth as usize % 64]))
}

fn deliberate_failure(cpu: u32, f: cpus::RemoteFn, what: &str) -> ! {
    info!("deliberate {what} on CPU {cpu}");
    match cpus::run_on(CpuId(cpu), f, 0, time::Deadline::after_ms(5000)) {
        Ok(_) => error!("CPU {cpu} returned from a deliberate {what}"),
        Err(e) => error!("could not reach CPU {cpu}: {e}"),
    }
    // The failing CPU stops us with an NMI; if it never does, fail by ourselves.
    time::Deadline::after_ms(5000).spin_until();
    fail(format_args!(
        "the deliberate {what} did not stop the machine"
    ))
}

/// What boot takes from ACPI.
struct AcpiFound {
    /// Usable CPUs' APIC ids, in MADT order.
    apic_ids: Vec<u32>,
    /// Local APIC base.
    lapic_base: u64,
    /// ACPI PM timer (FADT), for TSC calibration.
    pm_timer: Option<exo_acpi::PmTimer>,
    /// HPET base (HPET table), for TSC calibration.
    hpet: Option<u64>,
    /// PCI Express ECAM windows (MCFG).
    ecam: Vec<exo_acpi::EcamRegion>,
    /// virtio-mmio device windows (DSDT).
    virtio_mmio: Vec<exo_acpi::VirtioMmio>,
}

/// RSDP -> MADT: usable CPUs' APIC ids and the local APIC base; the FADT's PM timer and the
/// HPET. Never fatal: any failure leaves the BSP running alone. A refused table that lies
/// inside a boot module (`modules`: start and length) is blamed on it ([`blame_module`]).
fn discover_cpus(opts: &Options, rsdp_hint: u64, modules: &[(u64, u64)]) -> AcpiFound {
    const DEFAULT_LAPIC: u64 = 0xFEE0_0000;
    let alone = |pm_timer, hpet| AcpiFound {
        apic_ids: Vec::new(),
        lapic_base: DEFAULT_LAPIC,
        pm_timer,
        hpet,
        ecam: Vec::new(),
        virtio_mmio: Vec::new(),
    };
    if opts.no_acpi {
        warn!("ACPI disabled on the command line: single-CPU operation");
        return alone(None, None);
    }
    let mem = acpi_reader();
    let Some(rsdp) = choose_rsdp(&mem, rsdp_hint, opts.rsdp_scan, modules) else {
        error!("ACPI: no RSDP found: single-CPU operation");
        return alone(None, None);
    };
    blame_module(modules, Some(rsdp));
    let platform = match exo_acpi::discover(&mem, rsdp) {
        Ok(p) => p,
        Err(e) => {
            error!("ACPI: {e}: single-CPU operation");
            // Both root tables when both were refused (until 2026-12-06 the XSDT's reason and
            // address were lost; found by review).
            for pa in e.paddrs() {
                blame_module(modules, Some(pa));
            }
            return alone(None, None);
        }
    };
    for w in platform.all_warnings() {
        warn!("ACPI: {w}");
        blame_module(modules, w.failed_paddr());
    }
    let Some(madt) = platform.madt.as_ref() else {
        error!("ACPI: no usable MADT: single-CPU operation");
        return AcpiFound {
            virtio_mmio: platform.virtio_mmio,
            ..alone(platform.fadt_pm_timer, platform.hpet)
        };
    };
    // Enabled CPUs only: an online-capable one is present but not ready at boot (ACPI 6.3+:
    // it may only be brought up by hot-plug, which Exo-OS does not do).
    let ids: Vec<u32> = madt.enabled_cpus().map(|c| c.apic_id).collect();
    info!(
        "ACPI: MADT lists {} CPUs ({} enabled), {} I/O APIC(s), {} override(s), LAPIC at {:#x}",
        madt.cpus.len(),
        ids.len(),
        madt.io_apics.len(),
        madt.overrides.len(),
        madt.local_apic_addr
    );
    let base = if madt.local_apic_addr != 0 {
        madt.local_apic_addr
    } else {
        DEFAULT_LAPIC
    };
    AcpiFound {
        apic_ids: ids,
        lapic_base: base,
        pm_timer: platform.fadt_pm_timer,
        hpet: platform.hpet,
        ecam: platform.ecam,
        virtio_mmio: platform.virtio_mmio,
    }
}

/// The RSDP to discover from: the boot info's (`hint`, 0 for none) when it validates, else
/// (and with `exo.rsdp=scan`) the BIOS areas' ([`exo_acpi::find_rsdp_in_bios`]). A hint that
/// fails to validate is warned about, blamed on a boot module it lies in, and scanned past:
/// until 2026-12-06 it was used as given and its failure left the BSP running alone although
/// the BIOS areas may hold a good one (found by review).
fn choose_rsdp(
    mem: &crate::sys::PhysReader,
    hint: u64,
    scan: bool,
    modules: &[(u64, u64)],
) -> Option<u64> {
    if scan {
        info!("exo.rsdp=scan: ignoring the boot info's RSDP; scanning the BIOS area");
    } else if hint == 0 {
        warn!("no RSDP in the PVH start info; scanning the BIOS area");
    } else {
        match exo_acpi::parse_rsdp(mem, hint) {
            Ok(_) => return Some(hint),
            Err(e) => {
                warn!("ACPI: the boot info's RSDP is unusable ({e}); scanning the BIOS area");
                blame_module(modules, Some(hint));
            }
        }
    }
    let found = exo_acpi::find_rsdp_in_bios(mem);
    if let Some(p) = found {
        info!("ACPI: RSDP found at {p:#x} in the BIOS area");
    }
    found
}

/// How ACPI tables are read: through all of the direct map (an XSDT entry may point above
/// 4 GiB; until 2026-12-05 the reader stopped there and such a table was unreadable: no
/// MADT, one CPU; found by review).
fn acpi_reader() -> crate::sys::PhysReader {
    crate::sys::PhysReader {
        limit: crate::mm::memory::direct_end(),
    }
}

/// Drops the device windows the firmware placed over RAM (HPET, an MMIO PM timer), each
/// with a warning: the kernel would read and write, as device registers, memory the
/// allocator hands out. Until 2026-12-04 only their alignment was checked. (Not forced by
/// a QEMU test: QEMU's tables are sound; `exo_arch::pvh::overlaps_ram` is host-tested.)
/// Until 2026-12-05 the PCI ECAM windows were checked here too, against RAM only:
/// `dev::pci::init` checks them now (`exo_arch::pvh::device_window`: RAM and the chipset's
/// range).
fn refuse_windows_over_ram(mut a: AcpiFound, map: &[exo_arch::pvh::MemRegion]) -> AcpiFound {
    use exo_arch::pvh::overlaps_ram;
    if let Some(h) = a.hpet
        && overlaps_ram(map, h, 1024)
    {
        warn!("ACPI: HPET at {h:#x} lies over RAM: not used");
        a.hpet = None;
    }
    if let Some(exo_acpi::PmTimer {
        addr: exo_acpi::PmTimerAddr::Mmio(m),
        ..
    }) = a.pm_timer
        && overlaps_ram(map, m, 4)
    {
        warn!("ACPI: PM timer at {m:#x} lies over RAM: not used");
        a.pm_timer = None;
    }
    a
}

/// Says so when physical address `pa` (an ACPI structure that was refused, or the RSDP)
/// lies inside a boot module: the loader put the module over the firmware's tables, and
/// the table's bytes are the module's. Seen with QEMU's microvm, which keeps its ACPI
/// tables in RAM's last page: QEMU aims the initrd's end at that page's start and rounds
/// its start up to a page boundary, so an initrd whose size is not a multiple of 4 KiB
/// runs up to 4095 bytes into the page (`scripts/qemu.sh --raw-initrd` reproduces it).
fn blame_module(modules: &[(u64, u64)], pa: Option<u64>) {
    let Some(pa) = pa else {
        return;
    };
    let hit = modules
        .iter()
        .enumerate()
        .find(|&(_, &(start, len))| pa >= start && pa - start < len);
    if let Some((k, &(start, len))) = hit {
        let what = if k == 0 {
            "the initrd"
        } else {
            "a boot module"
        };
        error!(
            "ACPI: {pa:#x} lies inside boot module {k} ({what}, {start:#x}..{:#x}): it was \
             loaded over the firmware's ACPI tables (QEMU's microvm keeps them in RAM's last \
             page, which an initrd whose size is not a multiple of 4 KiB runs into: pad it; \
             scripts/qemu.sh does)",
            start.saturating_add(len)
        );
    }
}

/// The benchmark mode the machine looks like: `icount` when the TSC counts instructions
/// exactly; under KVM, `kvm`, or `kvm-trapped` when `rdtsc` traps (nested software
/// virtualization: a pair of reads costs thousands of ticks, so ticks are not cycles);
/// `tcg` otherwise.
fn detect_mode() -> smp_bench::Mode {
    use smp_bench::Mode;
    if exo_arch::tsc::counts_instructions() {
        return Mode::Icount;
    }
    if !exo_arch::cpu::hypervisor_is_kvm() {
        return Mode::Tcg;
    }
    // The cheapest of 16 back-to-back serialized pairs: tens of cycles on hardware.
    let pair = (0..16)
        .map(|_| {
            let a = exo_arch::tsc::rdtsc_precise();
            exo_arch::tsc::rdtsc_precise().wrapping_sub(a)
        })
        .min()
        .unwrap_or(0);
    if pair > TRAPPED_RDTSC_TICKS {
        warn!(
            "KVM with rdtsc costing {pair} ticks a pair: it traps (nested software virtualization?); numbers here are not cycles"
        );
        Mode::KvmTrapped
    } else {
        Mode::Kvm
    }
}

/// A serialized `rdtsc` pair above this many ticks is a trapping `rdtsc` (hardware: ~20-80;
/// nested software virtualization: ~20,000).
const TRAPPED_RDTSC_TICKS: u64 = 2000;

/// The TSC frequency: CPUID when it gives one (unless `exo.tsc_ref` names a reference),
/// else measured against the PIT, the ACPI PM timer, then the HPET: 5 ms windows until two
/// in a row agree within 0.5%, six at most per reference (a window is refused when the vCPU
/// was descheduled long enough to lose count of the reference's wraps); the source is
/// reported. Only when every reference fails is 1 GHz assumed, with an error line.
fn calibrate_tsc(
    want: cmdline::TscRef,
    pm: Option<exo_acpi::PmTimer>,
    hpet: Option<u64>,
) -> (u64, FreqSource) {
    use cmdline::TscRef;
    if want == TscRef::Auto
        && let Some(f) = exo_arch::tsc::freq_from_cpuid()
    {
        return f;
    }
    let refs = reference_clocks(want, pm, hpet);
    for r in refs.into_iter().flatten() {
        // Windows until two in a row agree within 0.5% (a vCPU descheduled inside a window
        // skews it), six at most; without agreement, the median of the good ones.
        let mut good: arrayvec::ArrayVec<u64, 6> = arrayvec::ArrayVec::new();
        for attempt in 1..=6 {
            match crate::sys::calibrate_tsc_against(r, 5) {
                Ok(hz) => {
                    if let Some(&prev) = good.last()
                        && prev.abs_diff(hz) <= prev / 200
                    {
                        info!(
                            "TSC calibrated against the {} ({attempt} windows, the last two agree)",
                            r.name()
                        );
                        return ((prev + hz) / 2, r.source());
                    }
                    good.push(hz);
                }
                Err(e) => warn!("TSC calibration against the {}: {e}", r.name()),
            }
        }
        if !good.is_empty() {
            good.sort_unstable();
            let hz = good[good.len() / 2];
            warn!(
                "TSC calibration against the {}: no two windows agreed ({:?} Hz): taking the median",
                r.name(),
                good.as_slice()
            );
            return (hz, r.source());
        }
    }
    if want != TscRef::Auto && refs.iter().all(Option::is_none) {
        error!("exo.tsc_ref names a clock the firmware tables do not list");
    }
    error!("TSC calibration failed against every reference clock: assuming 1 GHz");
    (1_000_000_000, FreqSource::Assumed)
}

/// The reference clocks to calibrate against, in the order tried. A register window is used
/// only if `mm::memory::mmio` maps it uncached (the HPET's 1 KiB, the PM timer's 4 bytes):
/// not over RAM or firmware memory, not past the direct map. Until 2026-12-05 only the base
/// was checked against 4 GiB (a block crossing it faulted the boot CPU; one in ACPI NVS
/// was written through a write-back mapping; found by review).
pub(crate) fn reference_clocks(
    want: cmdline::TscRef,
    pm: Option<exo_acpi::PmTimer>,
    hpet: Option<u64>,
) -> [Option<exo_arch::tsc::RefClock>; 3] {
    use cmdline::TscRef;
    use exo_arch::layout::phys_to_virt;
    use exo_arch::tsc::RefClock;
    // `mmio` maps a window above 4 GiB at its direct-map address: `phys_to_virt` holds.
    let device = |what: &str, pa: u64, len: usize| {
        let ok = crate::mm::memory::mmio(pa, len).is_some();
        if !ok {
            warn!(
                "{what} at {pa:#x} cannot be mapped as device registers (RAM, firmware memory or past the direct map): not used"
            );
        }
        ok
    };
    let pm = pm.and_then(|t| match t.addr {
        exo_acpi::PmTimerAddr::Port(port) => Some(RefClock::PmTimerPort {
            port,
            bits: t.bits(),
        }),
        exo_acpi::PmTimerAddr::Mmio(addr) => {
            device("FADT PM timer", addr, 4).then(|| RefClock::PmTimerMmio {
                addr: phys_to_virt(addr),
                bits: t.bits(),
            })
        }
    });
    let hpet = hpet
        .filter(|&b| device("HPET", b, HPET_WINDOW))
        .map(|base| RefClock::Hpet {
            base: phys_to_virt(base),
        });
    match want {
        TscRef::Auto => [Some(RefClock::Pit), pm, hpet],
        TscRef::Pit => [Some(RefClock::Pit), None, None],
        TscRef::PmTimer => [pm, None, None],
        TscRef::Hpet => [hpet, None, None],
    }
}

/// The HPET's register block.
pub(crate) const HPET_WINDOW: usize = 0x400;

fn calibrate_apic_timer(tsc_hz: u64) -> u64 {
    apic::timer_oneshot(crate::smp::cpus::VEC_TIMER, u32::MAX, true);
    let start = rdtsc();
    let window = tsc_hz / 100; // 10 ms
    while rdtsc().wrapping_sub(start) < window {
        core::hint::spin_loop();
    }
    let left = apic::timer_current();
    let elapsed = rdtsc() - start;
    apic::timer_stop();
    let counted = u64::from(u32::MAX - left);
    if elapsed == 0 {
        0
    } else {
        (counted as u128 * tsc_hz as u128 / elapsed as u128) as u64
    }
}
