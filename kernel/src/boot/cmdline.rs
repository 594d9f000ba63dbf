//! The kernel command line: `exo.job=boot|test|bench|contended|init|serve`, plus knobs.

use crate::mm::kalloc::BadFree;

/// What the kernel does once every CPU is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Print the CPU table and boot timings, power off.
    Boot,
    /// Run the kernel tests.
    Test,
    /// Run the single-CPU benchmark suite.
    Bench,
    /// Run the contended (cross-core) benchmark suite.
    Contended,
    /// Start `exo.init` from the initrd as process 1; power off when it ends.
    Init,
    /// Bring up the first virtio-net device and serve HTTP, UDP echo and ping until stopped.
    Serve,
}

/// Which reference clock calibrates the TSC (`exo.tsc_ref=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TscRef {
    /// CPUID if it gives the frequency, else the PIT, the ACPI PM timer, the HPET, in order.
    Auto,
    /// Only the PIT (CPUID skipped).
    Pit,
    /// Only the ACPI PM timer (CPUID skipped).
    PmTimer,
    /// Only the HPET (CPUID skipped).
    Hpet,
}

/// Parsed options. Unknown `exo.*` keys are reported, not fatal.
#[derive(Debug, Clone)]
pub struct Options {
    /// The job.
    pub job: Job,
    /// Allow x2APIC (`exo.apic=xapic` forces xAPIC when firmware left the choice to us).
    pub allow_x2apic: bool,
    /// How long the BSP waits for APs without any of them making progress, in milliseconds
    /// (`None`: the command line gave no valid value, and the boot flow picks 5000, or 30000
    /// under TCG and foreign hypervisors); at most 8 times that in all.
    pub ap_timeout_ms: Option<u64>,
    /// An extra APIC id to "start" that no CPU answers (tests the deadline path).
    pub phantom_apic_id: Option<u32>,
    /// Ignore ACPI (single-CPU operation).
    pub no_acpi: bool,
    /// Ignore the RSDP the boot info gives and scan the BIOS areas (`exo.rsdp=scan`).
    pub rsdp_scan: bool,
    /// Test job: a thread faults while holding a sleeping lock (`exo.fault_holding_lock=1`);
    /// the machine must stop rather than kill it and leave the lock held.
    pub fault_holding_lock: bool,
    /// Test job: a thread of a process faults inside the kernel (`exo.fault_in_process=1`);
    /// the machine must stop rather than end the thread without its process's end.
    pub fault_in_process: bool,
    /// Test job: a kernel thread panics with an address space's tables locked
    /// (`exo.panic_holding_tables=1`); the machine must stop rather than kill it and leave
    /// the lock held.
    pub panic_holding_tables: bool,
    /// Test job: the harness's own check, a test whose thread is killed by a panic that the
    /// test does not notice (`exo.fault_unexpected_kill=1`); the test must be reported FAIL.
    pub fault_unexpected_kill: bool,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Benchmark mode given on the command line (`exo.mode=tcg|kvm-trapped|...`); boot
    /// replaces it with the detected one when none is given or the one given claims more than
    /// was detected (see `boot::detect_mode`, `smp_bench::Mode::may_report_as`).
    pub mode: Option<smp_bench::Mode>,
    /// TSC calibration reference.
    pub tsc_ref: TscRef,
    /// A deliberate panic on this CPU after boot (tests the stop-all path).
    pub panic_on_cpu: Option<u32>,
    /// With `panic_on_cpu`: this CPU panics too, while the first one reports
    /// (`exo.panic_also_cpu=M`): the report must carry its reason, not "no answer".
    pub panic_also_cpu: Option<u32>,
    /// This CPU's boot TSC check answers nothing (`exo.tsc_mute_cpu=N`): its measurement
    /// fails, the next AP's must not.
    pub tsc_mute_cpu: Option<u32>,
    /// At the end of the `boot` job this CPU panics and its report waits until the job's
    /// success exit has begun (`exo.panic_at_exit=N`): the exit must give way (failure).
    pub panic_at_exit: Option<u32>,
    /// At the end of the `boot` job this CPU panics once the success exit has been claimed
    /// (`exo.panic_after_exit=N`): the exit must report it and fail.
    pub panic_after_exit: Option<u32>,
    /// A deliberate panic on the BSP while this CPU holds the console lock and never lets
    /// it go (`exo.panic_console_held=N`): the stop-all NMI halts it inside the lock, and the
    /// report must take the console over at once.
    pub panic_console_held: Option<u32>,
    /// A kernel thread panics, and panics again in its end (`exo.panic_in_exit=1`): the
    /// machine must stop with that reason, not kill the thread again and again.
    pub panic_in_exit: bool,
    /// The panic's report sends its own CPU an NMI once the others are stopped
    /// (`exo.nmi_in_report=1`, with `exo.panic_on_cpu`): the report must go on.
    pub nmi_in_report: bool,
    /// A CPU exception (`ud2`) on the BSP before memory is set up (`exo.fault_early=1`):
    /// the early IDT must report it (it triple-faulted with no word: QEMU exits 0).
    pub fault_early: bool,
    /// A #DB (`int 1`, an IST vector) on the BSP before its TSS is loaded
    /// (`exo.debug_early=1`): it must be taken and return, boot going on.
    pub debug_early: bool,
    /// A deliberate panic on the BSP before any AP is started (`exo.panic_early=1`): the
    /// stop-all must not reach CPUs still in firmware.
    pub panic_early: bool,
    /// A deliberate panic on the last AP (highest CPU id) right after its arrival, before
    /// it has a per-CPU block (`exo.ap_panic_early=1`): the report must name it by APIC id.
    pub ap_panic_early: bool,
    /// A CPU exception (`ud2`) on the last AP (highest CPU id) right after its arrival,
    /// before it has a per-CPU block or the shared IDT (`exo.ap_fault_early=1`): the early
    /// IDT must take it and the report name the AP by APIC id (it triple-faulted with no
    /// word: QEMU exits 0).
    pub ap_fault_early: bool,
    /// The last AP (highest CPU id) waits this long in the trampoline, and until the BSP has
    /// stopped waiting for APs, before it reports arrival (`exo.ap_delay_ms=N`, 0 = off): it
    /// arrives late and parks (tests the late-AP park and the stop-all around it). The BSP
    /// gives up on it after `exo.ap_timeout_ms` without progress.
    pub ap_delay_ms: u64,
    /// The last AP arrives in time, then stops this long, and until the BSP has given up
    /// on it, before it goes online (`exo.ap_stall_ms=N`, 0 = off): it must park instead of
    /// coming online after being reported missing.
    pub ap_stall_ms: u64,
    /// With `ap_stall_ms`: the AP stalls between taking its descriptor tables and taking its
    /// per-CPU block (`exo.ap_stall_split=1`), so the BSP gives up on it holding one of the
    /// two: it must park without freeing it (a free there triple-faulted).
    pub ap_stall_split: bool,
    /// The per-CPU block of this AP (CPU id, 1 or more) cannot be allocated
    /// (`exo.ap_alloc_fail=N`, after its stacks and tables were made): it must not be sent
    /// INIT or SIPI, must be reported not started with the reason, and must not be waited
    /// for; the others come online.
    pub ap_alloc_fail: Option<u32>,
    /// The bring-up's own lists cannot be allocated (`exo.ap_lists_fail=1`): no AP is
    /// started, and each must be reported `CPUDOWN` with the reason.
    pub ap_lists_fail: bool,
    /// The last online CPU starts its scheduler this long after it is asked to
    /// (`exo.sched_start_delay_ms=N`, 0 = off; test job): as a vCPU the host keeps off its
    /// core would. Every CPU must still have its scheduler when the tests begin.
    pub sched_start_delay_ms: u64,
    /// The CPU table cannot be sized (`exo.cpu_table_fail=1`): no AP is started, each
    /// reported `CPUDOWN` with the reason.
    pub cpu_table_fail: bool,
    /// Free one object (`exo.double_free=1`) or one frame (`=frame`) twice after boot, or
    /// free an address inside a frame (`=inner`) or inside an object (`=inner_object`)
    /// (debug builds must catch it).
    pub double_free: Option<BadFree>,
    /// A deliberate stack overflow on this CPU after boot (tests guard pages and #DF on IST).
    pub overflow_on_cpu: Option<u32>,
    /// CPUs in the core-to-core matrix (the first N online).
    pub c2c_cpus: u32,
    /// Most CPUs in the lock-contention rows.
    pub contend_max: u32,
    /// Window of one contention row, in milliseconds.
    pub contend_window_ms: u64,
    /// Test job: only tests whose name starts with one of these comma-separated prefixes
    /// (`exo.test=sched.,mm.stack_guard`; empty = all).
    pub test_filter: arrayvec::ArrayString<512>,
    /// Bench jobs: only the groups whose name starts with one of these comma-separated
    /// prefixes (`exo.bench=net`; empty = all); `group:row-prefix` runs only that part of a
    /// group that asks (`exo.bench=sched:ctx.switch.raw`).
    pub bench_filter: arrayvec::ArrayString<128>,
    /// Frames kept from user space, in MiB (`exo.kernel_reserve_mb=N`, 0..=1048576; `None`:
    /// the default, `max(8 MiB, managed memory / 16)`; see `mm::commit`).
    pub kernel_reserve_mb: Option<u64>,
    /// Most memory one process may hold, in MiB (`exo.proc_mem_mb=N`, 0..=1048576; 0, the
    /// default: no limit but the global one).
    pub proc_mem_mb: u64,
    /// Init job: the program to start as process 1 (`exo.init=PATH`, default `/init`).
    pub init: arrayvec::ArrayString<128>,
    /// Init job: the argument process 1 gets in RDI (`exo.init_arg=N`, decimal or 0x-hex).
    pub init_arg: u64,
    /// Init job: process 1 still running this many seconds after its start is killed and
    /// the job fails with its verdict (`exo.init_timeout_s=N`, 0..=86400; 0: never; default
    /// [`INIT_TIMEOUT_S`]). Until 2026-12-07 the job waited for it without a deadline: a
    /// `/init` that never ended held the machine until whatever ran QEMU gave up, with no
    /// verdict and no memory line.
    pub init_timeout_s: u64,
    /// virtio-mmio devices the machine monitor names (`virtio_mmio.device=SIZE@BASE:IRQ`,
    /// Linux's form: QEMU's microvm without ACPI, Firecracker), up to [`MMIO_DEVICES`].
    pub virtio_mmio: arrayvec::ArrayVec<exo_virtio::mmio::CmdlineDevice, MMIO_DEVICES>,
    /// A word saying what to run could not be taken (`exo.job`, `exo.init`, `exo.init_arg`,
    /// `exo.test`, `exo.bench`: an unknown job, a path or filter too long, no number): the
    /// run would not be the one asked for (a mistyped job ran the boot job and exited with
    /// success, a bench filter too long ran every group), so the boot fails. Other bad
    /// options are ignored with a warning.
    pub fatal: bool,
}

/// virtio-mmio devices taken from the command line; more are refused as bad options.
pub const MMIO_DEVICES: usize = 8;

/// A problem with one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOption<'a>(pub &'a str);

/// Parses `cmdline`, collecting problems into `bad` (the caller prints them).
pub fn parse<'a>(cmdline: &'a str, mut bad: impl FnMut(BadOption<'a>)) -> Options {
    let mut o = Options {
        job: Job::Boot,
        allow_x2apic: true,
        ap_timeout_ms: None,
        phantom_apic_id: None,
        no_acpi: false,
        rsdp_scan: false,
        fault_holding_lock: false,
        fault_in_process: false,
        panic_holding_tables: false,
        fault_unexpected_kill: false,
        log_level: log::LevelFilter::Info,
        mode: None,
        tsc_ref: TscRef::Auto,
        panic_on_cpu: None,
        panic_also_cpu: None,
        panic_at_exit: None,
        tsc_mute_cpu: None,
        panic_after_exit: None,
        panic_console_held: None,
        panic_early: false,
        fault_early: false,
        nmi_in_report: false,
        panic_in_exit: false,
        debug_early: false,
        ap_panic_early: false,
        ap_fault_early: false,
        ap_delay_ms: 0,
        kernel_reserve_mb: None,
        proc_mem_mb: 0,
        ap_stall_ms: 0,
        ap_stall_split: false,
        ap_alloc_fail: None,
        ap_lists_fail: false,
        sched_start_delay_ms: 0,
        cpu_table_fail: false,
        overflow_on_cpu: None,
        double_free: None,
        c2c_cpus: 8,
        contend_max: 8,
        contend_window_ms: 20,
        test_filter: arrayvec::ArrayString::new(),
        bench_filter: arrayvec::ArrayString::new(),
        init: arrayvec::ArrayString::from("/init").unwrap_or_default(),
        init_arg: 0,
        init_timeout_s: INIT_TIMEOUT_S,
        virtio_mmio: arrayvec::ArrayVec::new(),
        fatal: false,
    };
    for word in cmdline.split_ascii_whitespace() {
        if let Some(v) = word.strip_prefix(exo_virtio::mmio::PARAM) {
            let d = exo_virtio::mmio::parse_device(v);
            if d.is_none_or(|d| o.virtio_mmio.try_push(d).is_err()) {
                bad(BadOption(word));
            }
            continue;
        }
        let Some(rest) = word.strip_prefix("exo.") else {
            continue;
        };
        let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
        let ok = match (k, v) {
            ("job", "boot") => set(&mut o.job, Job::Boot),
            ("job", "test") => set(&mut o.job, Job::Test),
            ("job", "bench") => set(&mut o.job, Job::Bench),
            ("job", "contended") => set(&mut o.job, Job::Contended),
            ("job", "init") => set(&mut o.job, Job::Init),
            ("job", "serve") => set(&mut o.job, Job::Serve),
            ("init", v) if !v.is_empty() => {
                arrayvec::ArrayString::from(v).is_ok_and(|p| set(&mut o.init, p))
            }
            ("init_arg", v) => match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).is_ok_and(|n| set(&mut o.init_arg, n)),
                None => v.parse().is_ok_and(|n| set(&mut o.init_arg, n)),
            },
            ("init_timeout_s", v) => {
                in_range(v, 0, 86_400).is_some_and(|s| set(&mut o.init_timeout_s, s))
            }
            ("apic", "xapic") => set(&mut o.allow_x2apic, false),
            ("apic", "x2apic" | "auto") => set(&mut o.allow_x2apic, true),
            ("ap_timeout_ms", v) => {
                in_range(v, 1, MAX_MS).is_some_and(|ms| set(&mut o.ap_timeout_ms, Some(ms)))
            }
            ("phantom_apic", v) => v
                .parse()
                .is_ok_and(|id| set(&mut o.phantom_apic_id, Some(id))),
            ("panic_on_cpu", v) => v.parse().is_ok_and(|c| set(&mut o.panic_on_cpu, Some(c))),
            ("panic_also_cpu", v) => v.parse().is_ok_and(|c| set(&mut o.panic_also_cpu, Some(c))),
            ("panic_at_exit", v) => v.parse().is_ok_and(|c| set(&mut o.panic_at_exit, Some(c))),
            ("tsc_mute_cpu", v) => v.parse().is_ok_and(|c| set(&mut o.tsc_mute_cpu, Some(c))),
            ("panic_after_exit", v) => v
                .parse()
                .is_ok_and(|c| set(&mut o.panic_after_exit, Some(c))),
            ("panic_console_held", v) => v
                .parse()
                .is_ok_and(|c| set(&mut o.panic_console_held, Some(c))),
            ("panic_early", "1") => set(&mut o.panic_early, true),
            ("fault_early", "1") => set(&mut o.fault_early, true),
            ("nmi_in_report", "1") => set(&mut o.nmi_in_report, true),
            ("panic_in_exit", "1") => set(&mut o.panic_in_exit, true),
            ("debug_early", "1") => set(&mut o.debug_early, true),
            ("ap_panic_early", "1") => set(&mut o.ap_panic_early, true),
            ("ap_fault_early", "1") => set(&mut o.ap_fault_early, true),
            ("ap_delay_ms", v) => {
                in_range(v, 0, MAX_MS).is_some_and(|ms| set(&mut o.ap_delay_ms, ms))
            }
            ("ap_stall_ms", v) => {
                in_range(v, 0, MAX_MS).is_some_and(|ms| set(&mut o.ap_stall_ms, ms))
            }
            ("ap_stall_split", "1") => set(&mut o.ap_stall_split, true),
            ("ap_alloc_fail", v) => v.parse().is_ok_and(|c| set(&mut o.ap_alloc_fail, Some(c))),
            ("ap_lists_fail", "1") => set(&mut o.ap_lists_fail, true),
            ("cpu_table_fail", "1") => set(&mut o.cpu_table_fail, true),
            ("sched_start_delay_ms", v) => {
                in_range(v, 0, MAX_MS).is_some_and(|ms| set(&mut o.sched_start_delay_ms, ms))
            }
            ("double_free", "1") => set(&mut o.double_free, Some(BadFree::Object)),
            ("double_free", "frame") => set(&mut o.double_free, Some(BadFree::Frame)),
            ("double_free", "inner") => set(&mut o.double_free, Some(BadFree::Inner)),
            ("double_free", "inner_object") => set(&mut o.double_free, Some(BadFree::InnerObject)),
            ("overflow_on_cpu", v) => v
                .parse()
                .is_ok_and(|c| set(&mut o.overflow_on_cpu, Some(c))),
            ("kernel_reserve_mb", v) => {
                in_range(v, 0, MAX_MB).is_some_and(|mb| set(&mut o.kernel_reserve_mb, Some(mb)))
            }
            ("proc_mem_mb", v) => {
                in_range(v, 0, MAX_MB).is_some_and(|mb| set(&mut o.proc_mem_mb, mb))
            }
            ("c2c_cpus", v) => v.parse().is_ok_and(|n| set(&mut o.c2c_cpus, n)),
            ("contend_max", v) => v.parse().is_ok_and(|n| set(&mut o.contend_max, n)),
            ("contend_window_ms", v) => {
                in_range(v, 1, MAX_MS).is_some_and(|n| set(&mut o.contend_window_ms, n))
            }
            ("test", v) => arrayvec::ArrayString::from(v).is_ok_and(|f| set(&mut o.test_filter, f)),
            ("bench", v) => {
                arrayvec::ArrayString::from(v).is_ok_and(|f| set(&mut o.bench_filter, f))
            }
            ("acpi", "off") => set(&mut o.no_acpi, true),
            ("rsdp", "scan") => set(&mut o.rsdp_scan, true),
            ("fault_holding_lock", "1") => set(&mut o.fault_holding_lock, true),
            ("fault_in_process", "1") => set(&mut o.fault_in_process, true),
            ("panic_holding_tables", "1") => set(&mut o.panic_holding_tables, true),
            ("fault_unexpected_kill", "1") => set(&mut o.fault_unexpected_kill, true),
            ("rsdp", "bootinfo") => set(&mut o.rsdp_scan, false),
            ("acpi", "on") => set(&mut o.no_acpi, false),
            ("log", v) => v.parse().is_ok_and(|l| set(&mut o.log_level, l)),
            ("mode", v) => v.parse().is_ok_and(|m| set(&mut o.mode, Some(m))),
            ("tsc_ref", "auto") => set(&mut o.tsc_ref, TscRef::Auto),
            ("tsc_ref", "pit") => set(&mut o.tsc_ref, TscRef::Pit),
            ("tsc_ref", "pmtimer") => set(&mut o.tsc_ref, TscRef::PmTimer),
            ("tsc_ref", "hpet") => set(&mut o.tsc_ref, TscRef::Hpet),
            _ => false,
        };
        if !ok {
            o.fatal |= matches!(k, "job" | "init" | "init_arg" | "test" | "bench");
            bad(BadOption(word));
        }
    }
    o
}

/// `exo.init_timeout_s`'s default: an hour of guest time, far past any run of this
/// repository's programs (the longest, the fuzzer's and fake nginx's at 64 CPUs under TCG,
/// take minutes), so only a process 1 that never ends meets it.
pub const INIT_TIMEOUT_S: u64 = 3600;

/// The largest time an option may give, in milliseconds (10 minutes: every such option is
/// multiplied by the TSC's rate or added to a deadline, which must not wrap).
const MAX_MS: u64 = 600_000;

/// The largest memory size an option may give, in MiB (1 TiB: converted to frames and
/// compared with counts of frames, which must not wrap).
const MAX_MB: u64 = 1 << 20;

/// `v` as a decimal number in `lo..=hi`.
fn in_range(v: &str, lo: u64, hi: u64) -> Option<u64> {
    v.parse().ok().filter(|n| (lo..=hi).contains(n))
}

fn set<T>(slot: &mut T, value: T) -> bool {
    *slot = value;
    true
}
