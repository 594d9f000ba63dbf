//! Kernel tests of boot's own choices: the reference clocks it calibrates against, how it
//! reads ACPI, what it takes from the command line.

use crate::harness::{Needs, SKIP, TestResult, check};
use crate::ktest;
use alloc::format;
use exo_arch::tsc::RefClock;

ktest!(
    Needs::Cpus,
    "boot.reference_clocks_only_in_device_windows",
    reference_clocks_device_windows
);
ktest!(
    Needs::Cpus,
    "boot.acpi_reader_reaches_the_whole_direct_map",
    acpi_reader_whole_map
);
ktest!(
    Needs::Cpus,
    "boot.cmdline_takes_virtio_mmio_devices",
    cmdline_virtio_mmio
);
ktest!(
    Needs::Cpus,
    "boot.cmdline_what_to_run_must_be_understood",
    cmdline_fatal
);

ktest!(
    Needs::Cpus,
    "boot.cmdline_takes_the_commit_limits",
    cmdline_commit_limits
);
ktest!(
    Needs::Cpus,
    "boot.boot_ms_ends_at_the_end_of_boot",
    boot_ms_end
);

/// `boot.ms` (target 16: first instruction to all CPUs online and init done) ends at the end
/// of boot, taken before the job began, after the APs came online and the TSC check
/// (until 2026-12-05 it ended when the APs came online).
fn boot_ms_end(state: &crate::boot::BootState) -> TestResult {
    let Some(end) = super::done_at() else {
        return Err("no end of boot recorded before the job".into());
    };
    check(end > state.aps_online_tsc, || {
        format!(
            "end of boot {end} not after the APs came online ({})",
            state.aps_online_tsc
        )
    })?;
    let want = crate::smp::time::ticks_to_us(end - state.first_tsc).div_ceil(1000);
    let got = crate::harness::bench::boot_ms(state);
    check(got == want, || {
        format!("boot.ms {got}, the end of boot says {want}")
    })
}

/// `exo.kernel_reserve_mb` and `exo.proc_mem_mb` (`mm::commit`): a number in 0..=1048576
/// is taken, anything else is a bad option that changes nothing (not fatal).
fn cmdline_commit_limits(_: &crate::boot::BootState) -> TestResult {
    use super::cmdline::parse;
    for (line, reserve, proc_mb, bad) in [
        ("", None, 0, 0),
        (
            "exo.kernel_reserve_mb=64 exo.proc_mem_mb=16",
            Some(64),
            16,
            0,
        ),
        ("exo.kernel_reserve_mb=0 exo.proc_mem_mb=0", Some(0), 0, 0),
        ("exo.kernel_reserve_mb=1048576", Some(1 << 20), 0, 0),
        (
            "exo.kernel_reserve_mb=1048577 exo.proc_mem_mb=-1",
            None,
            0,
            2,
        ),
        ("exo.kernel_reserve_mb= exo.proc_mem_mb=8M", None, 0, 2),
        ("exo.proc_mem_mb=32 exo.proc_mem_mb=x", None, 32, 1),
    ] {
        let mut n = 0;
        let o = parse(line, |_| n += 1);
        check(
            o.kernel_reserve_mb == reserve && o.proc_mem_mb == proc_mb && n == bad && !o.fatal,
            || {
                format!(
                    "{line:?}: reserve {:?}, per process {}, {n} bad, fatal {} (want {reserve:?}, {proc_mb}, {bad}, false)",
                    o.kernel_reserve_mb, o.proc_mem_mb, o.fatal
                )
            },
        )?;
    }
    Ok(())
}

/// A word saying what to run that cannot be taken fails the boot (`Options::fatal`); other
/// bad options are ignored with their warning. Until 2026-12-05 `exo.job=tset` ran the boot
/// job and exited with success, and a bench filter too long ran every group.
fn cmdline_fatal(_: &crate::boot::BootState) -> TestResult {
    use super::cmdline::parse;
    let long = format!("exo.bench={}", "x".repeat(200));
    for (line, want) in [
        ("exo.job=tset", true),
        ("exo.job=test exo.init=", true),
        ("exo.init_arg=0xzz", true),
        (long.as_str(), true),
        (
            "exo.job=bench exo.bench=sched exo.ap_timeout_ms=99999999 exo.apic=none",
            false,
        ),
        ("exo.job=init exo.init=/hello exo.init_arg=0x31", false),
    ] {
        let o = parse(line, |_| {});
        check(o.fatal == want, || {
            format!("{line:?}: fatal {}, expected {want}", o.fatal)
        })?;
    }
    Ok(())
}

/// An HPET or MMIO PM timer the firmware places over RAM, or whose register block crosses
/// 4 GiB, is not calibrated against (the calibration writes the HPET's configuration
/// register): `reference_clocks` leaves it out. A PM timer port and a device window are
/// kept. Until 2026-12-05 only the base was compared with 4 GiB.
fn reference_clocks_device_windows(_: &crate::boot::BootState) -> TestResult {
    use super::cmdline::TscRef;
    use exo_acpi::{PmTimer, PmTimerAddr};
    let frame = crate::mm::kalloc::alloc_frame().map_err(|e| format!("{e:?}"))?;
    let ram = frame.phys();
    let pm = |addr| {
        Some(PmTimer {
            addr,
            is_32bit: true,
        })
    };
    let got = [
        super::reference_clocks(TscRef::Hpet, None, Some(ram))[0],
        super::reference_clocks(TscRef::Hpet, None, Some(0xFFFF_FFF8))[0],
        super::reference_clocks(TscRef::PmTimer, pm(PmTimerAddr::Mmio(ram)), None)[0],
        super::reference_clocks(TscRef::PmTimer, pm(PmTimerAddr::Mmio(0xFFFF_FFFE)), None)[0],
    ];
    let port = super::reference_clocks(TscRef::PmTimer, pm(PmTimerAddr::Port(0x608)), None)[0];
    // A device window below 4 GiB outside RAM (the I/O APIC's neighbourhood is never RAM).
    let device = super::reference_clocks(TscRef::Hpet, None, Some(0xFED0_0000))[0];
    crate::mm::kalloc::free_frame(frame);
    check(got.iter().all(Option::is_none), || {
        format!("windows over RAM ({ram:#x}) or across 4 GiB taken: {got:x?}")
    })?;
    check(
        matches!(port, Some(RefClock::PmTimerPort { port: 0x608, .. }))
            && matches!(device, Some(RefClock::Hpet { .. })),
        || format!("a port and a device window refused: {port:x?}, {device:x?}"),
    )
}

/// ACPI is read through all of the direct map: a table above 4 GiB (an XSDT entry may point
/// there) is reachable where RAM reaches above it. Until 2026-12-05 the reader stopped at
/// 4 GiB (such a MADT was unreadable: one CPU). Needs RAM above 4 GiB (`--mem 4G` on q35).
fn acpi_reader_whole_map(_: &crate::boot::BootState) -> TestResult {
    use exo_acpi::PhysMem;
    let end = crate::mm::memory::direct_end();
    if end <= 4 << 30 {
        return Err(format!("{SKIP}no RAM above 4 GiB (qemu.sh --mem 4G)"));
    }
    let r = super::acpi_reader();
    let mut b = [0u8; 8];
    let inside = r.read(end - 8, &mut b).is_ok();
    let past = r.read(end - 4, &mut b).is_ok();
    check(inside && !past, || {
        format!(
            "direct map ends at {end:#x}: its last 8 bytes readable {inside}, 8 bytes across its end readable {past}"
        )
    })
}

/// `virtio_mmio.device=SIZE@BASE:IRQ` words (Linux's form) are taken, up to the limit;
/// a malformed one and one past the limit are reported as bad options.
fn cmdline_virtio_mmio(_: &crate::boot::BootState) -> TestResult {
    use super::cmdline::{MMIO_DEVICES, parse};
    let mut line = alloc::string::String::from(
        "exo.job=test virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=512@0xfeb00e00",
    );
    for i in 0..MMIO_DEVICES {
        line.push_str(&format!(
            " virtio_mmio.device=512@{:#x}:{i}",
            0xFEB0_0000 + 0x200 * i
        ));
    }
    let mut bad = alloc::vec::Vec::new();
    let o = parse(&line, |b| bad.push(alloc::string::String::from(b.0)));
    let first = o.virtio_mmio.first().map(|d| (d.base, d.size, d.irq));
    check(
        o.virtio_mmio.len() == MMIO_DEVICES
            && first == Some((0xD000_0000, 4096, 5))
            && bad.len() == 2
            && bad[0] == "virtio_mmio.device=512@0xfeb00e00",
        || format!("took {:x?}, refused {bad:?}", o.virtio_mmio),
    )
}
