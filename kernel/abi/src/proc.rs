//! How a process ends: the status `wait` returns ([`ExitStatus`]) and the serial line the
//! kernel prints ([`ProcLine`]):
//!
//! ```text
//! PROC,<pid>,exit,<code>          exit_group(code) or the last thread's exit: code & 0xff
//! PROC,<pid>,killed,<why>         why = #PF at 0x<addr> | #GP | #UD | #DE | #BP | bad syscall frame | init job ended | SIGKILL | ...
//! ```
//!
//! ```
//! use exo_abi::{ExitStatus, KillCause, ProcEnd, ProcLine};
//!
//! let line = ProcLine { pid: 7, end: ProcEnd::killed_at(KillCause::PF, 0x1000) };
//! assert_eq!(line.to_string(), "PROC,7,killed,#PF at 0x1000");
//! assert_eq!(ProcLine::parse("PROC,7,killed,#PF at 0x1000"), Some(line));
//! assert_eq!(line.end.status(), ExitStatus::Killed(KillCause::PF));
//! assert_eq!(ExitStatus::from_raw(0x10e), Some(ExitStatus::Killed(KillCause::PF)));
//! assert_eq!(ExitStatus::from_exit_code(-1), ExitStatus::Exited(255));
//! ```

use core::fmt;

/// Why the kernel killed a process: the CPU exception vector (0..=31) that a thread of it
/// raised in user mode, or a reason of the kernel's own (128 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KillCause(pub u8);

const VECTOR_NAMES: [&str; 32] = [
    "#DE", "#DB", "#NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "", "#TS", "#NP", "#SS", "#GP",
    "#PF", "", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "", "", "", "", "", "", "#HV", "#VC",
    "#SX", "",
];

impl KillCause {
    /// Divide error (`div` by zero or overflow).
    pub const DE: Self = Self(0);
    /// Debug exception.
    pub const DB: Self = Self(1);
    /// Breakpoint (`int3`).
    pub const BP: Self = Self(3);
    /// Overflow (`into` is invalid in 64-bit mode; kept for completeness).
    pub const OF: Self = Self(4);
    /// Invalid opcode (`ud2`).
    pub const UD: Self = Self(6);
    /// Stack-segment fault (a non-canonical address through `rsp`/`rbp`).
    pub const SS: Self = Self(12);
    /// General protection (a non-canonical address, a privileged instruction).
    pub const GP: Self = Self(13);
    /// Page fault (unmapped, kernel-only, or a write/fetch the page forbids).
    pub const PF: Self = Self(14);
    /// x87 floating-point error.
    pub const MF: Self = Self(16);
    /// Alignment check.
    pub const AC: Self = Self(17);
    /// SIMD floating-point exception.
    pub const XM: Self = Self(19);
    /// Control-protection exception.
    pub const CP: Self = Self(21);
    /// The state a `syscall` would return to cannot be returned to by `sysret` (a
    /// non-canonical `rip`).
    pub const BAD_SYSCALL_FRAME: Self = Self(128);
    /// Still running (an orphan) when the kernel's `init` job ended and reaped what was left.
    pub const INIT_ENDED: Self = Self(130);
    /// Ended by its parent's `kill(pid, SIGKILL)`.
    pub const SIGKILL: Self = Self(131);

    /// The CPU exception vector, if the cause is one.
    pub const fn vector(self) -> Option<u8> {
        if self.0 < 32 { Some(self.0) } else { None }
    }
}

impl fmt::Display for KillCause {
    /// `#PF`, `#GP`, ..., `bad syscall frame`; `vector <n>` for an unnamed vector and
    /// `cause <n>` for an unknown reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v @ 0..32 if !VECTOR_NAMES[v as usize].is_empty() => {
                f.write_str(VECTOR_NAMES[v as usize])
            }
            v @ 0..32 => write!(f, "vector {v}"),
            128 => f.write_str("bad syscall frame"),
            130 => f.write_str("init job ended"),
            131 => f.write_str("SIGKILL"),
            c => write!(f, "cause {c}"),
        }
    }
}

impl KillCause {
    /// Parses what [`Display`](fmt::Display) writes.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(i) = VECTOR_NAMES.iter().position(|&n| !n.is_empty() && n == s) {
            return Some(Self(i as u8));
        }
        if s == "bad syscall frame" {
            return Some(Self::BAD_SYSCALL_FRAME);
        }
        if s == "init job ended" {
            return Some(Self::INIT_ENDED);
        }
        if s == "SIGKILL" {
            return Some(Self::SIGKILL);
        }
        let (n, vector) = if let Some(n) = s.strip_prefix("vector ") {
            (n, true)
        } else {
            (s.strip_prefix("cause ")?, false)
        };
        let v = parse_decimal(n)?;
        let v = u8::try_from(v).ok()?;
        let cause = Self(v);
        // Only the spelling Display uses.
        let canonical = match v {
            0..32 => vector && VECTOR_NAMES[v as usize].is_empty(),
            128 | 130 | 131 => false,
            _ => !vector,
        };
        canonical.then_some(cause)
    }
}

/// What `wait` returns: how a child process ended.
///
/// Encoded in `rax` as the exit code (`0..=255`) or `0x100 | cause` for a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// `exit_group(code)` (or the last thread's `exit`/`thread_exit`), `code & 0xff`.
    Exited(u8),
    /// Killed by the kernel.
    Killed(KillCause),
}

/// Bit of a raw status that marks a kill.
pub const STATUS_KILLED: usize = 0x100;

impl ExitStatus {
    /// The status of a process that called `exit_group(code)`: Linux keeps the low 8 bits.
    pub const fn from_exit_code(code: i32) -> Self {
        ExitStatus::Exited(code as u8)
    }

    /// The value `wait` returns.
    pub const fn to_raw(self) -> usize {
        match self {
            ExitStatus::Exited(c) => c as usize,
            ExitStatus::Killed(k) => STATUS_KILLED | k.0 as usize,
        }
    }

    /// Decodes what `wait` returned; `None` for a value no status encodes to.
    pub const fn from_raw(raw: usize) -> Option<Self> {
        if raw < STATUS_KILLED {
            Some(ExitStatus::Exited(raw as u8))
        } else if raw < 2 * STATUS_KILLED {
            Some(ExitStatus::Killed(KillCause(raw as u8)))
        } else {
            None
        }
    }

    /// `true` for `Exited(0)`.
    pub const fn success(self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }
}

impl fmt::Display for ExitStatus {
    /// `exit 3` or `killed #PF`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit {c}"),
            ExitStatus::Killed(k) => write!(f, "killed {k}"),
        }
    }
}

/// The end of a process as its `PROC` line tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcEnd {
    /// `exit,<code>`.
    Exit(u8),
    /// `killed,<cause>` or `killed,<cause> at 0x<addr>` (the faulting address of a `#PF`).
    Killed {
        /// Why.
        cause: KillCause,
        /// The address involved (`CR2` for a `#PF`), when there is one.
        addr: Option<u64>,
    },
}

impl ProcEnd {
    /// A kill without an address.
    pub const fn killed(cause: KillCause) -> Self {
        ProcEnd::Killed { cause, addr: None }
    }

    /// A kill at `addr` (a `#PF`'s `CR2`).
    pub const fn killed_at(cause: KillCause, addr: u64) -> Self {
        ProcEnd::Killed {
            cause,
            addr: Some(addr),
        }
    }

    /// The status `wait` returns for this end (the address is not part of it).
    pub const fn status(self) -> ExitStatus {
        match self {
            ProcEnd::Exit(c) => ExitStatus::Exited(c),
            ProcEnd::Killed { cause, .. } => ExitStatus::Killed(cause),
        }
    }
}

/// `PROC,<pid>,exit,<code>` or `PROC,<pid>,killed,<why>`: the line the kernel prints on the
/// serial console when a process ends (its `Display` has no newline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcLine {
    /// The process id.
    pub pid: u64,
    /// How it ended.
    pub end: ProcEnd,
}

impl fmt::Display for ProcLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            ProcEnd::Exit(code) => write!(f, "PROC,{},exit,{code}", self.pid),
            ProcEnd::Killed { cause, addr: None } => write!(f, "PROC,{},killed,{cause}", self.pid),
            ProcEnd::Killed {
                cause,
                addr: Some(a),
            } => write!(f, "PROC,{},killed,{cause} at {a:#x}", self.pid),
        }
    }
}

impl ProcLine {
    /// Parses a line as [`Display`](fmt::Display) writes it (a trailing `\r` or `\n` is
    /// ignored); `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end_matches(['\r', '\n']);
        let rest = line.strip_prefix("PROC,")?;
        let (pid, rest) = rest.split_once(',')?;
        let pid = parse_decimal(pid)?;
        let (kind, what) = rest.split_once(',')?;
        let end = match kind {
            "exit" => ProcEnd::Exit(u8::try_from(parse_decimal(what)?).ok()?),
            "killed" => match what.split_once(" at 0x") {
                Some((cause, addr)) => {
                    ProcEnd::killed_at(KillCause::parse(cause)?, parse_hex(addr)?)
                }
                None => ProcEnd::killed(KillCause::parse(what)?),
            },
            _ => return None,
        };
        Some(ProcLine { pid, end })
    }
}

/// Canonical decimal: digits only, no leading zero (but "0"), fits in u64.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// Canonical lowercase hex without prefix, no leading zero (but "0"), fits in u64.
fn parse_hex(s: &str) -> Option<u64> {
    if s.is_empty()
        || (s.len() > 1 && s.starts_with('0'))
        || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}
