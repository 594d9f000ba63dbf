//! The serial console: one lock for whole lines, the `log` facade, `kprintln!`, and the
//! per-CPU rings behind the user `write` call.
//!
//! **Lines.** Kernel lines are written under a spin lock taken with interrupts off, so
//! lines from different CPUs never interleave. The panic path may steal the lock after a
//! bounded wait.
//!
//! **Rings.** A user `write(1|2, buf, len)` does not wait on the UART: the system call
//! copies the bytes straight from user memory into its CPU's [`CpuRing`] (an
//! [`exo_sync::ring`] of [`RING_BYTES`] = 16 KiB, allocated by the `user` layer the first
//! time a user thread writes on that CPU, so CPUs that never run a writer cost nothing;
//! each ring is then registered here for good) with interrupts off, and returns. The
//! producer of a ring is only its own CPU (reached through that CPU's block, interrupts
//! off); its consumer is whoever holds the console lock, which drains rings to the UART:
//!
//! * every kernel line (`kprintln!`, the `log` facade) first drains its own CPU's ring
//!   completely, then the complete lines of the other rings, then prints: a line a CPU
//!   prints comes after every byte that CPU queued before it (e.g. `PROC,<pid>,exit,0`
//!   after the process's last `write`; a thread that ends on another CPU than the one its
//!   last bytes went to flushes that ring first, `user::syscall::console_thread_end`);
//! * the idle loop drains every ring ([`drain_idle`]: try-lock, at most [`IDLE_BUDGET`]
//!   bytes per ring per pass, one ring per hold, interrupts on between holds) and the
//!   timer tick drains its own CPU's ring ([`drain_tick`]: try-lock, [`TICK_BUDGET`]
//!   bytes), so a busy CPU's output appears;
//! * the panic path and every exit of the machine ([`exit`]) flush every ring first
//!   ([`flush_all`]): nothing queued is lost when QEMU exits.
//!
//! Background drains (idle, tick, other CPUs' rings in a kernel line) write whole lines:
//! two CPUs' user lines do not interleave mid-line. A line longer than the budget, a
//! partial line in a ring at least half full, or one left waiting [`PARTIAL_TICKS`] TSC
//! ticks, is written anyway; flushes (own ring before a kernel line, exit, panic, a full
//! ring) write everything.
//!
//! **A full ring: back-pressure, nothing is dropped.** When a `write` does not fit in its
//! CPU's ring, the writer copies what fits, then drains every ring synchronously
//! ([`flush_all`]: it waits on the UART, as every `write` did before the rings) and goes on
//! with the rest. Bytes are never dropped and never overwritten before they are written
//! out.
//!
//! Rank 0 (`scripts/check-layers.sh`): calls nothing in the kernel; the layers above call
//! the drains from their idle loop (`smp`), tick (`trap`) and exits.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use exo_arch::exit::ExitCode;
use exo_percpu::{CpuCell, CpuId, IrqGuard};
use exo_sync::ring::{Consumer, Producer, RingState};

/// Bytes of one CPU's ring.
pub const RING_BYTES: usize = 16 * 1024;
/// Most bytes one idle pass writes from one ring.
pub const IDLE_BUDGET: usize = 4096;
/// Most bytes one timer tick writes from its CPU's ring.
pub const TICK_BUDGET: usize = 1024;
/// A partial line (no newline yet) older than this (TSC ticks since a background drain
/// first left it) is written by the next background drain.
pub const PARTIAL_TICKS: u64 = 50_000_000;

/// Lock owner + 1 (0 = free). A ticket-free owner word lets the panic path detect a lock
/// held by itself (re-entrant panic) and steal it after a deadline.
static OWNER: AtomicU32 = AtomicU32::new(0);

/// One CPU's console ring (see the module documentation).
#[derive(Debug)]
pub struct CpuRing {
    cpu: u32,
    /// Only the ring's producer CPU (its own; the cell checks), interrupts off.
    producer: CpuCell<Producer<'static>>,
    /// Only the console lock's holder (`try_lock`: held only by a drain in progress; a
    /// drain that finds it held — a nested drain on the same CPU from an NMI, or a stolen
    /// console lock — skips the ring).
    consumer: spin::Mutex<Consumer<'static>>,
    /// The ring's indices, for [`CpuRing::queued`] without the consumer.
    state: &'static RingState,
    /// TSC when a background drain first left a partial line here (0: none).
    partial_since: AtomicU64,
    /// The writer (a thread's kernel stack top) whose bytes went in last, if its bytes
    /// are nowhere else: the writer's fast path only runs while this names it (see
    /// [`CpuRing::last_writer`]).
    last_writer: AtomicU64,
    next: spin::Once<&'static CpuRing>,
}

impl CpuRing {
    /// A ring for `cpu` over `storage` (a power of two long; `None` otherwise).
    pub fn new(
        cpu: u32,
        state: &'static mut RingState,
        storage: &'static mut [u8],
    ) -> Option<CpuRing> {
        Self::labelled(cpu, CpuId(cpu), state, storage)
    }

    /// A ring that the drains take for CPU `cpu`'s but that only CPU `producer` fills
    /// (tests of the drains' handling of other CPUs' rings, filled from the test's CPU).
    pub fn labelled(
        cpu: u32,
        producer: CpuId,
        state: &'static mut RingState,
        storage: &'static mut [u8],
    ) -> Option<CpuRing> {
        let (p, c) = exo_sync::ring::split(state, storage)?;
        Some(CpuRing {
            cpu,
            state: c.state(),
            producer: CpuCell::new(producer, p),
            consumer: spin::Mutex::new(c),
            partial_since: AtomicU64::new(0),
            last_writer: AtomicU64::new(0),
            next: spin::Once::new(),
        })
    }

    /// The CPU whose ring this is.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// Runs `f` on the producer side, with interrupts off (`g`): `None` for a re-entrant
    /// call or on a CPU other than the ring's producer (the cell checks).
    #[inline(always)]
    pub fn produce<R>(
        &self,
        g: &IrqGuard,
        f: impl FnOnce(&mut Producer<'static>) -> R,
    ) -> Option<R> {
        self.producer.with(g, f).ok()
    }

    /// The writer whose bytes went in last (0: none). Invariant kept by the `write` call:
    /// a ring names a writer only while that writer's latest bytes are in this ring, so a
    /// writer that finds its own name may append without looking elsewhere.
    #[inline(always)]
    pub fn last_writer(&self) -> u64 {
        self.last_writer.load(Ordering::Relaxed)
    }

    /// Names `who` as the last writer (the ring's own CPU, interrupts off).
    pub fn set_last_writer(&self, who: u64) {
        self.last_writer.store(who, Ordering::Relaxed);
    }

    /// Bytes queued (a snapshot), without the consumer: until 2026-12-05 this took the
    /// consumer's lock and said 0 while it was held (a timer tick's look on the ring's CPU
    /// made a concurrent `flush_all` skip the ring; a CPU stopped by a panic inside that
    /// look hid the ring from the report; found by review).
    pub fn queued(&self) -> usize {
        self.state.len()
    }
}

static FIRST: spin::Once<&'static CpuRing> = spin::Once::new();

/// Adds `ring` to the rings the drains visit (for good; once per ring).
pub fn register(ring: &'static CpuRing) {
    let mut at = &FIRST;
    loop {
        let got = *at.call_once(|| ring);
        if core::ptr::eq(got, ring) {
            return;
        }
        at = &got.next;
    }
}

/// Unnames `who` as `ring`'s last writer if it is (a thread's end: the one ring that can
/// name it, the one its last bytes went to; the others were made to forget it when it
/// began writing there, [`forget_writer`]).
pub fn unname_writer(ring: &CpuRing, who: u64) {
    if ring.last_writer.load(Ordering::Relaxed) == who {
        ring.last_writer.store(0, Ordering::Relaxed);
    }
}

/// Unnames `who` as last writer of every ring (it is about to write somewhere else). A
/// ring's owner may name another writer at the same time: at worst that one takes its
/// slow path once.
pub fn forget_writer(who: u64) {
    for r in rings() {
        unname_writer(r, who);
    }
}

fn rings() -> impl Iterator<Item = &'static CpuRing> + Clone {
    core::iter::successors(FIRST.get().copied(), |r| r.next.get().copied())
}

/// How much of a ring a drain writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Everything queued (flushes).
    All,
    /// Whole lines (background drains; see the module documentation for the exceptions).
    Lines,
    /// Only the complete lines within the budget, no exception (the other rings in a kernel
    /// line's own hold: what is left of a small budget never cuts a line).
    Complete,
}

/// Writes up to `budget` queued bytes of `ring` to `out` as `mode` says, frees them, and
/// returns the count. The caller is the ring's consumer: it holds the console lock (or is a
/// test that owns a ring nobody else drains).
pub fn drain_ring(ring: &CpuRing, mode: Drain, budget: usize, out: &mut dyn FnMut(&[u8])) -> usize {
    let Some(mut c) = ring.consumer.try_lock() else {
        return 0;
    };
    let (a, b) = c.readable();
    let total = a.len() + b.len();
    if total == 0 {
        ring.partial_since.store(0, Ordering::Relaxed);
        return 0;
    }
    let window = total.min(budget);
    let n = match mode {
        Drain::All => window,
        Drain::Complete => last_newline(a, b, window).map_or(0, |i| i + 1),
        Drain::Lines => {
            let cut = last_newline(a, b, window).map_or(0, |i| i + 1);
            if window < total {
                // Budget-limited: whole lines, or the window of a line longer than it.
                if cut > 0 { cut } else { window }
            } else if cut == total {
                total
            } else {
                let now = exo_arch::tsc::rdtsc();
                let since = ring.partial_since.load(Ordering::Relaxed);
                if total >= c.capacity() / 2
                    // `since` may come from another CPU's TSC, ahead of this one's: a
                    // negative age is 0 (it wrapped to about 2^64 and wrote the line out).
                    || (since != 0 && now.saturating_sub(since) >= PARTIAL_TICKS)
                {
                    total
                } else {
                    if since == 0 {
                        ring.partial_since.store(now.max(1), Ordering::Relaxed);
                    }
                    cut
                }
            }
        }
    };
    let n1 = n.min(a.len());
    out(&a[..n1]);
    out(&b[..n - n1]);
    c.consume(n);
    if n == total {
        ring.partial_since.store(0, Ordering::Relaxed);
    }
    n
}

/// Index of the last `\n` among the first `window` bytes of `a ++ b`.
fn last_newline(a: &[u8], b: &[u8], window: usize) -> Option<usize> {
    let nb = window.saturating_sub(a.len());
    if let Some(i) = b[..nb].iter().rposition(|&x| x == b'\n') {
        return Some(a.len() + i);
    }
    a[..window.min(a.len())].iter().rposition(|&x| x == b'\n')
}

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        emit(s.as_bytes());
        Ok(())
    }
}

/// The last byte written to the UART was a newline (or nothing was written yet): a kernel
/// line starts here. Written with the console lock held.
static AT_LINE_START: AtomicBool = AtomicBool::new(true);

/// Bytes to the UART (and to the capture buffer of a test, if one is on). Console lock held.
fn emit(bytes: &[u8]) {
    let Some(&last) = bytes.last() else {
        return;
    };
    AT_LINE_START.store(last == b'\n', Ordering::Relaxed);
    exo_arch::serial::write_bytes(bytes);
    if let Some(mut c) = CAPTURE.try_lock()
        && c.on
    {
        let at = c.len;
        let n = bytes.len().min(c.buf.len() - at);
        c.buf[at..at + n].copy_from_slice(&bytes[..n]);
        c.len += n;
    }
}

/// This CPU's name in the console lock's owner word: its CPU id + 1 once its per-CPU block
/// is installed, else `EARLY | APIC id` (CPUID). Until 2026-12-05 every CPU without a block
/// was 1, the BSP's own name: an AP logging early while the BSP (or another early AP) held
/// the lock took it for a re-entry and wrote over that line.
fn me() -> u32 {
    if exo_percpu::installed() {
        exo_percpu::cpu_id_hint().0 + 1
    } else {
        EARLY | (exo_arch::cpu::apic_id_from_cpuid() & !EARLY)
    }
}

/// The bit of [`me`]'s name for a CPU without its per-CPU block (CPU ids stay far below it).
const EARLY: u32 = 1 << 31;

/// Writes one line (the arguments plus a newline) atomically with respect to other CPUs,
/// after this CPU's queued user bytes and the complete lines the other rings held when it
/// began. Those go out first in pieces of [`FLUSH_CHUNK`] bytes, the console lock taken per
/// piece; the line's own hold writes what this CPU's ring got meanwhile (at most
/// [`FLUSH_CHUNK`], else it goes back to pieces) and at most [`FLUSH_CHUNK`] more of the
/// other rings' complete lines in all ([`drain_in_line_hold`]). Until 2026-12-05 all of it
/// went out in the line's one hold, interrupts off: every ring's lines (16 KiB a ring,
/// 1.4 s at 115200 baud) before one `PROC` line, past the TLB shootdown's deadline with a
/// few CPUs' rings full (found by review; `user.console_kernel_line_drains_in_pieces`);
/// then, until a second review the same day, the line's own hold still wrote up to
/// [`FLUSH_CHUNK`] of every ring (N CPUs: N pieces in one hold), and a line printed with
/// interrupts off (a trap, an IRQ guard) wrote every ring whole
/// (`user.console_line_hold_is_bounded`).
pub fn write_line(args: fmt::Arguments<'_>) {
    let cpu = me() - 1;
    if OWNER.load(Ordering::Relaxed) == me() {
        // Inside a hold of ours (a nested line), or the console taken over by the panic
        // report (every later line a re-entry): one hold, every ring before the line.
        return locked(|| {
            drain_every_ring(cpu);
            line_text(args);
        });
    }
    if !exo_arch::cpu::interrupts_enabled() {
        // Interrupts off anyway: one hold, this CPU's ring whole (the order it promises),
        // the others' complete lines bounded, whatever the number of CPUs.
        return locked(|| {
            drain_in_line_hold(rings(), cpu, usize::MAX, FLUSH_CHUNK, &mut emit);
            line_text(args);
        });
    }
    for tries in 0.. {
        drain_before_line_in_pieces(rings(), cpu, &mut emit, &mut |piece| locked(piece));
        // Decided out here: inside the hold interrupts are always off (a first version read
        // them there, and the line's own hold wrote the rings whole; found by review). A
        // ring refilled past a piece at every try (threads of this CPU writing between the
        // pieces and the hold) is written whole at the last: the line is not put off forever.
        let own_max = if tries < LINE_TRIES {
            FLUSH_CHUNK
        } else {
            usize::MAX
        };
        let written = locked(|| {
            let ok = drain_in_line_hold(rings(), cpu, own_max, FLUSH_CHUNK, &mut emit);
            if ok {
                line_text(args);
            }
            ok
        });
        if written {
            return;
        }
    }
}

/// Tries of a kernel line's own hold that refuse more than [`FLUSH_CHUNK`] bytes of its
/// CPU's ring (see [`write_line`]).
const LINE_TRIES: u32 = 4;

/// A kernel line's own hold (console lock held), just before the line: CPU `cpu`'s ring
/// whole, then at most `others_max` bytes of the other rings' complete lines in all.
/// Returns false, having written nothing, when `cpu`'s ring holds more than `own_max`
/// bytes: the caller writes it out in pieces first. Until 2026-12-05 every ring got a
/// budget of its own here (N CPUs: N budgets with interrupts off).
pub fn drain_in_line_hold<'r>(
    rings: impl Iterator<Item = &'r CpuRing> + Clone,
    cpu: u32,
    own_max: usize,
    others_max: usize,
    out: &mut dyn FnMut(&[u8]),
) -> bool {
    if rings.clone().any(|r| r.cpu == cpu && r.queued() > own_max) {
        return false;
    }
    let mut left = others_max;
    for r in rings {
        if r.cpu == cpu {
            drain_ring(r, Drain::All, own_max, out);
        } else if left > 0 {
            left -= drain_ring(r, Drain::Complete, left, out);
        }
    }
    true
}

/// Writes out, per call of `hold`, at most [`FLUSH_CHUNK`] bytes of `rings`: CPU `cpu`'s
/// ring whole, the complete lines of the others, as much as each held when its turn came.
/// Returns the pieces written.
pub fn drain_before_line_in_pieces<'r>(
    rings: impl Iterator<Item = &'r CpuRing>,
    cpu: u32,
    out: &mut dyn FnMut(&[u8]),
    hold: &mut dyn FnMut(&mut dyn FnMut() -> usize) -> usize,
) -> usize {
    let mut pieces = 0;
    for r in rings {
        let mode = if r.cpu == cpu {
            Drain::All
        } else {
            Drain::Lines
        };
        let mut left = r.queued();
        while left > 0 {
            let n = hold(&mut || drain_ring(r, mode, left.min(FLUSH_CHUNK), out));
            if n == 0 {
                break;
            }
            pieces += 1;
            left = left.saturating_sub(n);
        }
    }
    pieces
}

/// The line itself, console lock held, after what the caller drained.
fn line_text(args: fmt::Arguments<'_>) {
    // A user line left unfinished (a flush writes rings whole) ends here: the kernel's
    // line starts a line of its own (until 2026-12-04 it was glued on: `abcPANIC ..`).
    if !AT_LINE_START.load(Ordering::Relaxed) {
        emit(b"\n");
    }
    let _ = Serial.write_fmt(args);
    let _ = Serial.write_str("\n");
}

/// Console lock held: this CPU's ring, then the others' complete lines, all of them (the
/// panic report, once the console is taken over and every ring flushed; a nested line).
fn drain_every_ring(cpu: u32) {
    for r in rings() {
        let mode = if r.cpu == cpu {
            Drain::All
        } else {
            Drain::Lines
        };
        drain_ring(r, mode, usize::MAX, &mut emit);
    }
}

/// Writes `bytes` as they are, now, after every ring (the path of a `write` on a CPU that
/// has no ring: no memory for one); the rings in pieces ([`flush_all`]).
pub fn write_bytes(bytes: &[u8]) {
    flush_all();
    locked(|| emit(bytes));
}

/// Writes everything every ring holds, waiting for the console lock (exits, the panic
/// path, a full ring's back-pressure, a writer that moved to another CPU).
///
/// What each ring holds when its turn comes goes out in pieces of [`FLUSH_CHUNK`] bytes, the
/// console lock (interrupts off) taken per piece: a CPU flushing full rings answers TLB
/// shootdowns and the timer between pieces. Until 2026-12-04 every ring went out in one
/// hold: on a slow UART (115200 baud: 16 KiB a ring in 1.4 s; under KVM each byte a VM
/// exit) a flush of many CPUs' rings kept interrupts off past the shootdown's 5 s deadline
/// (not forced by a test: QEMU's TCG UART is too fast to show it). Bytes queued during the
/// flush by others may stay for the background drains; those queued before it are out when
/// it returns (a writer that moved to another CPU relies on it).
pub fn flush_all() {
    for r in rings() {
        flush_one(r);
    }
}

/// Writes out what `ring` holds now, in pieces as [`flush_all`] does (a thread that ends on
/// another CPU than the one its last bytes went to, before its process's `PROC` line).
pub fn flush_one(ring: &CpuRing) {
    flush_ring(ring, &mut emit, &mut |piece| locked(piece));
}

/// Writes out to `out` what `ring` holds when it starts, [`FLUSH_CHUNK`] bytes per call of
/// `hold`, which runs the piece it is given (holding the console lock, in [`flush_all`]).
/// Returns how many pieces it wrote.
pub fn flush_ring(
    ring: &CpuRing,
    out: &mut dyn FnMut(&[u8]),
    hold: &mut dyn FnMut(&mut dyn FnMut() -> usize) -> usize,
) -> usize {
    let mut owed: Option<usize> = None;
    let mut pieces = 0;
    loop {
        let n = hold(&mut || {
            let left = *owed.get_or_insert_with(|| ring.queued());
            drain_ring(ring, Drain::All, left.min(FLUSH_CHUNK), out)
        });
        let left = owed.unwrap_or(0);
        if n == 0 {
            return pieces;
        }
        pieces += 1;
        if n >= left {
            return pieces;
        }
        owed = Some(left - n);
    }
}

/// Bytes [`flush_all`] writes per hold of the console lock (44 ms at 115200 baud).
pub const FLUSH_CHUNK: usize = 512;

/// The idle loop's drain: whole lines of every ring, at most [`IDLE_BUDGET`] bytes each, if
/// the console lock is free. Returns true when a ring it wrote from still holds bytes (the
/// caller may pass again before it halts). The caller has interrupts on: each ring's hold
/// turns them off for that ring alone (`smp::cpus::idle_loop`; until 2026-12-05 the idle
/// loop kept its guard across this call, and every ring's hold ran with interrupts off,
/// found by review; `user.console_idle_drain_runs_with_interrupts_on`).
pub fn drain_idle() -> bool {
    let target = IDLE_PROBE_CPU.load(Ordering::Relaxed);
    if IDLE_PROBE.load(Ordering::Relaxed) == PROBE_ARMED && (target == 0 || target == me()) {
        let seen = if exo_arch::cpu::interrupts_enabled() {
            PROBE_ON
        } else {
            PROBE_OFF
        };
        let _ = IDLE_PROBE.compare_exchange(PROBE_ARMED, seen, Ordering::AcqRel, Ordering::Relaxed);
    }
    drain_idle_in(rings(), &mut emit, &mut |piece| try_locked(piece))
}

/// [`drain_idle`] over `rings`, one call of `hold` per ring (`None`: the console lock is
/// busy, the pass ends). "More" is what is left in a ring the pass wrote from: until
/// 2026-12-05 it was "the pass wrote a whole budget", which a whole-lines drain almost
/// never does (it stops at the last newline within it), so an idle CPU halted with complete
/// lines still queued (found by review; `user.console_idle_drain_says_more_from_what_is_left`).
/// A ring left with only a young partial line makes one more pass, which writes nothing.
pub fn drain_idle_in<'r>(
    rings: impl Iterator<Item = &'r CpuRing>,
    out: &mut dyn FnMut(&[u8]),
    hold: &mut dyn FnMut(&mut dyn FnMut() -> usize) -> Option<usize>,
) -> bool {
    // One ring per hold of the console lock (until 2026-12-05 every ring in one: 4 KiB a
    // ring with interrupts off, 0.35 s per ring at 115200 baud).
    let mut more = false;
    for r in rings {
        if r.queued() == 0 {
            continue;
        }
        match hold(&mut || drain_ring(r, Drain::Lines, IDLE_BUDGET, out)) {
            Some(n) => more |= n > 0 && r.queued() > 0,
            None => return more,
        }
    }
    more
}

/// Whether the idle loop has console work: a ring holds bytes (or a test armed the probe).
/// The idle loop drains with interrupts on only then, and looks for threads again after.
pub fn idle_work() -> bool {
    IDLE_PROBE.load(Ordering::Relaxed) == PROBE_ARMED || rings().any(|r| r.queued() != 0)
}

/// The idle drain's probe (a test's): armed, the next [`drain_idle`] records whether it was
/// called with interrupts on.
static IDLE_PROBE: AtomicU8 = AtomicU8::new(PROBE_IDLE);
const PROBE_IDLE: u8 = 0;
const PROBE_ARMED: u8 = 1;
const PROBE_ON: u8 = 2;
const PROBE_OFF: u8 = 3;

/// The CPU whose idle drain the probe waits for, plus one (0: any CPU's).
static IDLE_PROBE_CPU: AtomicU32 = AtomicU32::new(0);

/// Arms the idle drain's probe for CPU `cpu` (`None`: any): its idle loop passes
/// [`drain_idle`] soon (see [`idle_work`]) and records whether interrupts were on.
pub fn probe_idle_drain(cpu: Option<u32>) {
    IDLE_PROBE_CPU.store(cpu.map_or(0, |c| c + 1), Ordering::Relaxed);
    IDLE_PROBE.store(PROBE_ARMED, Ordering::Release);
}

/// Disarms the idle drain's probe (a test that gave up waiting for it).
pub fn disarm_idle_probe() {
    IDLE_PROBE.store(PROBE_IDLE, Ordering::Release);
}

/// What the idle drain's probe saw: `Some(interrupts were on)`, `None` while it waits. A
/// result disarms it.
pub fn idle_probe_result() -> Option<bool> {
    match IDLE_PROBE.load(Ordering::Acquire) {
        PROBE_ON | PROBE_OFF => Some(IDLE_PROBE.swap(PROBE_IDLE, Ordering::AcqRel) == PROBE_ON),
        _ => None,
    }
}

/// The timer tick's drain of its CPU's `ring`: whole lines, at most [`TICK_BUDGET`] bytes,
/// if the console lock is free (the tick may have interrupted its holder).
pub fn drain_tick(ring: &CpuRing) {
    if ring.queued() != 0 {
        let _ = try_locked(|| drain_ring(ring, Drain::Lines, TICK_BUDGET, &mut emit));
    }
}

/// How an exit meets a panic, from the layer that owns panics (`trap::panic`, installed at
/// boot with [`set_exit_hooks`]; this layer may not call up to it).
#[derive(Debug, Clone, Copy)]
pub struct ExitHooks {
    /// Claims the end of the run: `false` if a panic is already reporting.
    pub claim: fn() -> bool,
    /// After the exit's last output: whether a CPU panicked once the exit was claimed (it
    /// has printed why).
    pub panicked_since: fn() -> bool,
}

static EXIT_HOOKS: spin::Once<ExitHooks> = spin::Once::new();

/// Installs the exit's hooks (once).
pub fn set_exit_hooks(h: ExitHooks) {
    EXIT_HOOKS.call_once(|| h);
}

/// Leaves the machine with `code` after writing out every ring; with failure instead if a
/// CPU panicked once the exit began, and not at all if a panic was already reporting
/// (this CPU stops; the report exits with failure: [`ExitHooks`]).
pub fn exit(code: ExitCode) -> ! {
    let hooks = EXIT_HOOKS.get();
    if hooks.is_some_and(|h| !(h.claim)()) {
        // Wait for the reporter's stop NMI, which records where this CPU is (halted on the
        // park IDT it would be `no answer`); if no report ever ends the run, fail here
        // (about 10 s at 3 GHz).
        exo_arch::cpu::cli();
        let t0 = exo_arch::tsc::rdtsc();
        while exo_arch::tsc::rdtsc().wrapping_sub(t0) < 30_000_000_000 {
            core::hint::spin_loop();
        }
        exo_arch::exit::exit(ExitCode::Failure);
    }
    flush_all();
    if hooks.is_some_and(|h| (h.panicked_since)()) {
        exo_arch::exit::exit(ExitCode::Failure);
    }
    exo_arch::exit::exit(code)
}

/// What the UART was sent while a test captured it.
struct Capture {
    on: bool,
    len: usize,
    buf: [u8; CAPTURE_BYTES],
}

/// What a capture keeps: the first 16 KiB written.
const CAPTURE_BYTES: usize = 16 * 1024;

static CAPTURE: spin::Mutex<Capture> = spin::Mutex::new(Capture {
    on: false,
    len: 0,
    buf: [0; CAPTURE_BYTES],
});

/// Starts copying everything the console writes (the first 16 KiB) for a test.
pub fn capture_start() {
    locked(|| {
        let mut c = CAPTURE.lock();
        c.on = true;
        c.len = 0;
    });
}

/// Stops the capture and hands `f` what was written since [`capture_start`].
///
/// The capture is copied out under the console lock (interrupts off) into a buffer taken
/// before, and `f` runs on the copy: until 2026-12-06 `f` (every caller's `to_vec`) ran
/// holding the capture's lock with interrupts on, so a test thread killed by a failed
/// allocation there left it held for good (the next `capture_start` spun with the console
/// lock held), and a `capture_start` on the same CPU after a preemption deadlocked (found
/// by review).
pub fn capture_stop<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let mut copy = alloc::vec::Vec::with_capacity(CAPTURE_BYTES);
    locked(|| {
        let mut c = CAPTURE.lock();
        c.on = false;
        copy.extend_from_slice(&c.buf[..c.len]);
    });
    f(&copy)
}

/// Runs `f` holding the console lock if it is free now (interrupts off); `None` if not.
fn try_locked<R>(f: impl FnOnce() -> R) -> Option<R> {
    exo_arch::cpu::without_interrupts(|| {
        OWNER
            .compare_exchange(0, me(), Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        let r = f();
        OWNER.store(0, Ordering::Release);
        Some(r)
    })
}

/// Lets the console lock go if this CPU holds it (a CPU that panicked while a job was
/// exiting stops here for good: the exit's writes must not wait out the lock's bound at
/// each piece; found by review).
pub fn let_go() {
    let _ = OWNER.compare_exchange(me(), 0, Ordering::AcqRel, Ordering::Relaxed);
}

/// Who holds the console lock (an owner word of [`me`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A CPU with its per-CPU block.
    Cpu(u32),
    /// A CPU without one yet, by APIC id.
    Early(u32),
}

impl Owner {
    fn of(word: u32) -> Option<Owner> {
        match word {
            0 => None,
            w if w & EARLY != 0 => Some(Owner::Early(w & !EARLY)),
            w => Some(Owner::Cpu(w - 1)),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Cpu(c) => write!(f, "CPU {c}"),
            Owner::Early(a) => write!(f, "APIC id {a} (no per-CPU block yet)"),
        }
    }
}

/// The CPU (with its per-CPU block) holding the console lock, if any.
pub fn holder() -> Option<u32> {
    match Owner::of(OWNER.load(Ordering::Acquire)) {
        Some(Owner::Cpu(c)) => Some(c),
        _ => None,
    }
}

/// Makes the console this CPU's for good (the panic report, once the other CPUs are
/// stopped): every later line is written at once, as a re-entry. Returns the CPU that held
/// the lock, if another one did: it was stopped inside it, and [`locked`]'s bounded wait
/// would otherwise be paid again at every line of the report (20e9 ticks each: minutes for a
/// report, until 2026-12-04).
pub fn take_over() -> Option<Owner> {
    let me = me();
    match OWNER.swap(me, Ordering::AcqRel) {
        o if o == me => None,
        o => Owner::of(o),
    }
}

/// Takes the console lock and keeps it, spinning with interrupts off until an NMI stops this
/// CPU: the fault injection of `exo.panic_console_held`.
pub fn hold_forever() -> ! {
    locked(|| {
        loop {
            core::hint::spin_loop();
        }
    });
    unreachable!("the console holder returned")
}

/// Runs `f` holding the console lock, interrupts off.
fn locked<R>(f: impl FnOnce() -> R) -> R {
    exo_arch::cpu::without_interrupts(|| {
        let me = me();
        let start = exo_arch::tsc::rdtsc();
        let mut stolen = false;
        loop {
            match OWNER.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(owner) if owner == me => {
                    // Re-entry from a fault or NMI on this CPU: write anyway.
                    stolen = true;
                    break;
                }
                Err(_) => {
                    // Bounded: a CPU that died holding the lock cannot silence the others.
                    if exo_arch::tsc::rdtsc().wrapping_sub(start) > 20_000_000_000 {
                        stolen = true;
                        break;
                    }
                    core::hint::spin_loop();
                }
            }
        }
        let r = f();
        if !stolen {
            OWNER.store(0, Ordering::Release);
        }
        r
    })
}

/// Prints a line on the serial console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => { $crate::console::write_line(format_args!($($arg)*)) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let cpu = if exo_percpu::installed() {
            exo_percpu::cpu_id_hint().0
        } else {
            0
        };
        write_line(format_args!("[cpu{cpu} {:<5}] {}", r.level(), r.args()));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Brings up COM1 and installs the logger at `level`.
pub fn init(level: log::LevelFilter) {
    exo_arch::serial::init();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
