//! The kernel command line: `exo.job=boot|test|bench|contended`, plus knobs.

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
}

/// Parsed options. Unknown `exo.*` keys are reported, not fatal.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The job.
    pub job: Job,
    /// Allow x2APIC (`exo.apic=xapic` forces xAPIC when firmware left the choice to us).
    pub allow_x2apic: bool,
    /// Deadline for all APs to come online, in milliseconds.
    pub ap_timeout_ms: u64,
    /// An extra APIC id to "start" that no CPU answers (tests the deadline path).
    pub phantom_apic_id: Option<u32>,
    /// Ignore ACPI (single-CPU operation).
    pub no_acpi: bool,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Benchmark mode given on the command line (`exo.mode=tcg|icount|kvm`), else detected.
    pub mode: Option<smp_bench::Mode>,
    /// A deliberate panic on this CPU after boot (tests the stop-all path).
    pub panic_on_cpu: Option<u32>,
}

/// A problem with one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOption<'a>(pub &'a str);

/// Parses `cmdline`, collecting problems into `bad` (the caller prints them).
pub fn parse<'a>(cmdline: &'a str, mut bad: impl FnMut(BadOption<'a>)) -> Options {
    let mut o = Options {
        job: Job::Boot,
        allow_x2apic: true,
        ap_timeout_ms: 5000,
        phantom_apic_id: None,
        no_acpi: false,
        log_level: log::LevelFilter::Info,
        mode: None,
        panic_on_cpu: None,
    };
    for word in cmdline.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix("exo.") else { continue };
        let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
        let ok = match k {
            "job" => match v {
                "boot" => Some(o.job = Job::Boot),
                "test" => Some(o.job = Job::Test),
                "bench" => Some(o.job = Job::Bench),
                "contended" => Some(o.job = Job::Contended),
                _ => None,
            },
            "apic" => match v {
                "xapic" => Some(o.allow_x2apic = false),
                "x2apic" | "auto" => Some(o.allow_x2apic = true),
                _ => None,
            },
            "ap_timeout_ms" => v.parse().ok().map(|ms| o.ap_timeout_ms = ms),
            "phantom_apic" => v.parse().ok().map(|id| o.phantom_apic_id = Some(id)),
            "panic_on_cpu" => v.parse().ok().map(|c| o.panic_on_cpu = Some(c)),
            "acpi" => match v {
                "off" => Some(o.no_acpi = true),
                "on" => Some(o.no_acpi = false),
                _ => None,
            },
            "log" => v.parse().ok().map(|l| o.log_level = l),
            "mode" => v.parse().ok().map(|m| o.mode = Some(m)),
            _ => None,
        };
        if ok.is_none() {
            bad(BadOption(word));
        }
    }
    o
}
