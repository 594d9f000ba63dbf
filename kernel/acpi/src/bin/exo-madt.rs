//! `exo-madt FILE [--no-x2apic]`: will Exo-OS bring up all my CPUs?
//!
//! Reads a raw MADT (`/sys/firmware/acpi/tables/APIC` on Linux) and prints, through the
//! kernel's own parser and boot rule ([`exo_acpi::plan`]), what Exo-OS would do with each
//! processor, plus the interrupt controllers, overrides, NMIs and the parser's warnings.
//!
//! A host tool: on the kernel target (`x86_64-unknown-none`, no `std`) this file builds to an
//! empty program, so `cargo build --target x86_64-unknown-none -p exo-acpi` and the kernel's
//! clippy keep working.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_os = "none"))]
mod cli {
    use exo_acpi::plan::{KERNEL_CPU_LIMIT, plan_table};
    use exo_acpi::{AcpiError, MAX_TABLE_LEN};
    use std::ffi::OsString;
    use std::fmt;
    use std::fs::File;
    use std::io::{self, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    const USAGE: &str = "\
usage: exo-madt FILE [--no-x2apic]

Says what Exo-OS would do with each processor a raw MADT lists (FILE: the table with its
36-byte header, e.g. /sys/firmware/acpi/tables/APIC), using the kernel's own ACPI parser.

  --no-x2apic   the local APIC runs in xAPIC mode (CPU without x2APIC, or exo.apic=xapic):
                APIC ids 0xFF and above cannot be started
  -h, --help    this text

Output, one CSV line each, in this order (numbers decimal unless 0x-prefixed):
  CPU,<uid>,<apic_id>,<xapic|x2apic>,<decision>
        every processor entry in table order; xapic/x2apic: the entry type that lists it.
        <decision>: usable (started; the boot CPU, taken to be the first enabled entry,
        runs already), disabled, online-capable (firmware may enable it later; Exo-OS does
        not hot-plug, so not started), or skipped:<reason> with <reason> one of
        invalid-apic-id, duplicate-apic-id, xapic-unaddressable, beyond-cpu-limit
  IOAPIC,<id>,<0xaddress>,<gsi_base>
  OVERRIDE,<bus>,<irq>,<gsi>,<flags>
  NMI,source,<gsi>,<flags>
  NMI,local,<uid|all>,<lint>,<flags>,<xapic|x2apic>
        flags: MPS INTI flags, polarity | trigger << 2
  WARN,<text>
        a parser warning (the text runs to the end of the line)
  MADT,<cpus>,<x2apic|xapic>
        how many CPUs come up (the boot CPU included; at most 4096), and x2apic when
        bringing them up needs x2APIC mode (an APIC id of 0xFF or above), xapic otherwise

Exit status: 0 printed, 1 unreadable or malformed table, 2 bad arguments.";

    /// What went wrong, with the exit status it maps to.
    enum Failure {
        /// Bad command line (exit 2).
        Usage(String),
        /// The file cannot be read, or is not a usable MADT (exit 1).
        Table(String),
    }

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Usage(msg) => write!(f, "{msg} (try --help)"),
                Self::Table(msg) => f.write_str(msg),
            }
        }
    }

    struct Args {
        file: PathBuf,
        x2apic: bool,
    }

    /// `Ok(None)`: `--help`.
    fn parse_args(args: impl Iterator<Item = OsString>) -> Result<Option<Args>, Failure> {
        let (mut file, mut x2apic, mut options_done) = (None, true, false);
        for arg in args {
            let option = arg.to_str().filter(|a| !options_done && a.starts_with('-'));
            match option {
                Some("-h" | "--help") => return Ok(None),
                Some("--no-x2apic") => x2apic = false,
                Some("--") => options_done = true,
                Some(a) if a != "-" => {
                    return Err(Failure::Usage(format!("unknown option {a}")));
                }
                _ if file.is_some() => {
                    let arg = arg.to_string_lossy();
                    return Err(Failure::Usage(format!("unexpected argument {arg}")));
                }
                _ => file = Some(PathBuf::from(arg)),
            }
        }
        let file = file.ok_or_else(|| Failure::Usage("missing FILE".into()))?;
        Ok(Some(Args { file, x2apic }))
    }

    /// The file's first [`MAX_TABLE_LEN`] bytes: no valid table is longer, and the table's
    /// own length says where it ends.
    fn read_table(path: &Path) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(path)?
            .take(u64::from(MAX_TABLE_LEN))
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The parser's error, except that a failed read (the parser reads the file as memory
    /// at address 0) means the file ends before the table does.
    fn describe(e: &AcpiError, bytes: &[u8]) -> String {
        const HEADER_LEN: usize = 36;
        match e {
            AcpiError::Read { .. } if bytes.len() < HEADER_LEN => format!(
                "file is truncated: {} bytes, a table header needs {HEADER_LEN}",
                bytes.len()
            ),
            AcpiError::Read { .. } => {
                let declared = bytes
                    .get(4..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes);
                format!(
                    "file is truncated: {} bytes, the table header says {declared}",
                    bytes.len()
                )
            }
            e => e.to_string(),
        }
    }

    fn run(args: impl Iterator<Item = OsString>) -> Result<(), Failure> {
        let mut out = io::stdout().lock();
        // A reader that stops early (`exo-madt FILE | head`) is not a failure.
        let written = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                Err(Failure::Table(format!("writing the output: {e}")))
            }
            _ => Ok(()),
        };
        let Some(args) = parse_args(args)? else {
            return written(writeln!(out, "{USAGE}"));
        };
        let path = args.file.display();
        let bytes = read_table(&args.file).map_err(|e| Failure::Table(format!("{path}: {e}")))?;
        let plan = plan_table(&bytes, args.x2apic, KERNEL_CPU_LIMIT).map_err(|e| {
            let why = describe(&e, &bytes);
            Failure::Table(format!("{path}: not a usable MADT: {why}"))
        })?;
        written(write!(out, "{plan}").and_then(|()| out.flush()))
    }

    pub fn main() -> ExitCode {
        match run(std::env::args_os().skip(1)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("exo-madt: {failure}");
                ExitCode::from(match failure {
                    Failure::Usage(_) => 2,
                    Failure::Table(_) => 1,
                })
            }
        }
    }
}
