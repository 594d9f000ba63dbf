//! Names of `BENCH` rows: fixed single-CPU names and the structured families
//! `c2c.rtt.<a>.<b>`, `c2c.oneway.<a>.<b>` and `contend.<lock>.<ncpus>`.

use core::fmt;

/// Cost of an empty timing pair (the overhead subtracted from every other row).
pub const TSC_PAIR: &str = "tsc.pair";
/// Read of a per-CPU variable through GS.
pub const PERCPU_READ: &str = "percpu.read";
/// IPI to another CPU and its acknowledgement, round trip.
pub const IPI_RTT: &str = "ipi.rtt";
/// Uncontended spin lock acquire + release.
pub const LOCK_SPIN_UNCONTENDED: &str = "lock.spin.uncontended";

/// Seed target 3: same-core IPC call + reply, 64-byte payload.
pub const IPC_RTT_64: &str = "ipc.rtt.64";
/// Seed target 3x: as 3, client and server on different CPUs (suffix `.<a>.<b>` per pair).
pub const IPC_RTT_64_XCORE: &str = "ipc.rtt.64.xcore";
/// Seed target 4: call + reply carrying 1 KiB through a shared buffer descriptor.
pub const IPC_RTT_1K_ZC: &str = "ipc.rtt.1k.zc";
/// Seed target 5: 16 × 64-byte messages sent as one batch and received (total).
pub const IPC_BATCH_16X64: &str = "ipc.batch.16x64";
/// Seed target 6: one context switch (round trip / 2).
pub const CTX_SWITCH: &str = "ctx.switch";
/// Seed target 7: one context switch with dirty FPU/SSE/AVX state.
pub const CTX_SWITCH_FPU: &str = "ctx.switch.fpu";
/// Seed target 8: 64-byte allocation from the per-CPU cache.
pub const ALLOC_64: &str = "alloc.64";
/// Companion of [`ALLOC_64`]: the matching free.
pub const FREE_64: &str = "free.64";
/// Seed target 9: one 4 KiB frame from the page allocator.
pub const ALLOC_4K: &str = "alloc.4k";
/// Seed target 10: create one kernel thread, ready to run.
pub const THREAD_SPAWN: &str = "thread.spawn";
/// Seed target 11: pick the next thread among 64 runnable ones.
pub const SCHED_PICK_NEXT: &str = "sched.pick_next";
/// Seed target 12: getpid round trip.
pub const SYSCALL_GETPID: &str = "syscall.getpid";
/// Seed target 13: 64-byte console write round trip.
pub const SYSCALL_WRITE_64: &str = "syscall.write.64";
/// Seed target 14: uncontended mutex lock + unlock.
pub const MUTEX_FAST: &str = "mutex.fast";
/// Seed target 15b: packets per second through the virtual NIC (values in pps).
pub const NET_PPS: &str = "net.pps";
/// Seed target 16: boot to all CPUs online and init done, the end of boot (values in
/// milliseconds).
pub const BOOT_MS: &str = "boot.ms";

/// Which core-to-core matrix a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum C2cKind {
    /// `c2c.rtt.<a>.<b>`: a → b → a round trip, timed on CPU a.
    Rtt,
    /// `c2c.oneway.<a>.<b>`: a → b one-way latency from synchronised TSCs.
    OneWay,
}

impl C2cKind {
    /// The name segment: `rtt` or `oneway`.
    pub const fn as_str(self) -> &'static str {
        match self {
            C2cKind::Rtt => "rtt",
            C2cKind::OneWay => "oneway",
        }
    }
}

/// Lock implementations measured by the `contend.<lock>.<ncpus>` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockKind {
    /// Test-and-set spin lock.
    Tas,
    /// Ticket spin lock.
    Ticket,
    /// MCS queue lock.
    Mcs,
    /// The kernel's sleeping mutex (seed target 15, `mutex.contended`).
    Mutex,
    /// A plain spin lock (`spin::Mutex`): the native suite's host lock, never target 15
    /// (until 2026-12-05 the native suite named it `mutex`, and its host number filled target
    /// 15 in place of the kernel's blocking mutex; found by review).
    Spin,
}

impl LockKind {
    /// Every lock kind, in the order above.
    pub const ALL: [LockKind; 5] = [
        LockKind::Tas,
        LockKind::Ticket,
        LockKind::Mcs,
        LockKind::Mutex,
        LockKind::Spin,
    ];

    /// The name segment: `tas`, `ticket`, `mcs`, `mutex` or `spin`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LockKind::Tas => "tas",
            LockKind::Ticket => "ticket",
            LockKind::Mcs => "mcs",
            LockKind::Mutex => "mutex",
            LockKind::Spin => "spin",
        }
    }

    /// Parses a name segment (exact, lowercase).
    pub fn parse(s: &str) -> Option<LockKind> {
        LockKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The name of a core-to-core row, displayed as `c2c.<kind>.<from>.<to>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct C2cName {
    /// Round trip or one way.
    pub kind: C2cKind,
    /// Sending CPU (matrix row).
    pub from: u32,
    /// Receiving CPU (matrix column).
    pub to: u32,
}

impl C2cName {
    /// Parses `c2c.rtt.<a>.<b>` / `c2c.oneway.<a>.<b>`.
    pub fn parse(name: &str) -> Option<C2cName> {
        let rest = name.strip_prefix("c2c.")?;
        let (kind, rest) = rest.split_once('.')?;
        let kind = match kind {
            "rtt" => C2cKind::Rtt,
            "oneway" => C2cKind::OneWay,
            _ => return None,
        };
        let (from, to) = rest.split_once('.')?;
        Some(C2cName {
            kind,
            from: parse_u32(from)?,
            to: parse_u32(to)?,
        })
    }
}

impl fmt::Display for C2cName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c2c.{}.{}.{}", self.kind.as_str(), self.from, self.to)
    }
}

/// The name of a contention row, displayed as `contend.<lock>.<ncpus>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContendName {
    /// Lock implementation.
    pub lock: LockKind,
    /// Number of CPUs contending.
    pub ncpus: u32,
}

impl ContendName {
    /// Parses `contend.<lock>.<ncpus>`.
    pub fn parse(name: &str) -> Option<ContendName> {
        let rest = name.strip_prefix("contend.")?;
        let (lock, ncpus) = rest.split_once('.')?;
        Some(ContendName {
            lock: LockKind::parse(lock)?,
            ncpus: parse_u32(ncpus)?,
        })
    }
}

impl fmt::Display for ContendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "contend.{}.{}", self.lock.as_str(), self.ncpus)
    }
}

/// Decimal digits only (no sign, no spaces), fitting a `u32`.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decimal digits only (no sign, no spaces), fitting a `u64`.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
