//! FPU/SIMD state of kernel threads: save areas sized from CPUID leaf 0xD, the instruction
//! chosen by `exo_arch::fpu` (XSAVEC / XSAVEOPT / XSAVE / FXSAVE), lazy or eager switching.
//!
//! Kernel Rust code never touches the FPU (the target is soft-float); only threads that run
//! SIMD instructions (inline assembly, or user code built with SSE) have FPU state. Two
//! policies, switchable for the benchmark (`set_eager`):
//!
//! * **Eager** (default): at every switch the outgoing thread's state is saved and the
//!   incoming one's restored if it has an area (TS cleared then); threads without an area
//!   still trap once to get one. A *user* thread without an area never runs with another
//!   thread's state left in the registers: they are reset to the initial state first
//!   (LazyFP, CVE-2018-3665: on affected Intel CPUs an instruction that will trap on TS
//!   still reads the stale registers speculatively, so TS alone does not hide them). Kernel
//!   threads run only kernel code and are not scrubbed for.
//! * **Lazy**: CR0.TS is set whenever the registers do not hold the running thread's state,
//!   so its first FPU instruction traps (#NM). The handler clears TS and restores the
//!   thread's area (allocated at the first use) unless the registers still hold its state
//!   (it is `last` on this CPU and its area was last saved from here). At switch-out, a
//!   thread that used the FPU during its slice (TS clear) is saved and TS set again. Threads
//!   that never touch the FPU pay nothing, not even a CR0 write; but the registers keep the
//!   last user's state while others run (the LazyFP exposure above): for measurements.
//!
//! State is always saved at switch-out, so a thread can move to another CPU at any time
//! (no state left behind in another CPU's registers). Audited `unsafe` module: it hands the
//! save areas (raw, 64-byte aligned allocations) to the save/restore instructions.
#![allow(unsafe_code, reason = "XSAVE/XRSTOR on raw, aligned save areas")]

use super::thread::Tcb;
use core::alloc::Layout;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use exo_arch::fpu::FpuInfo;

const NONE: u32 = u32::MAX;
/// `CpuFpu::last` of a CPU whose registers hold the state of a thread that ended on another
/// CPU ([`release`]): nobody's to keep, but not clean either (the thread's index may already
/// name a new thread), so the next user thread without FPU state gets them reset, as after
/// another thread's. Until 2026-12-04 `release` wrote `NONE` there, and a user thread started
/// next on such a CPU entered ring 3 with the ended thread's registers behind TS (LazyFP).
const DEAD: u32 = u32::MAX - 1;

static INFO: spin::Once<FpuInfo> = spin::Once::new();
static EAGER: AtomicBool = AtomicBool::new(true);
/// The initial-state image the registers are reset from (`scrub`), made in the save
/// mechanism's format by `init` (before any switch); never freed.
static INIT_IMAGE: AtomicU64 = AtomicU64::new(0);
/// #NM traps taken, and areas restored by them (statistics for tests and benches).
pub static TRAPS: AtomicU64 = AtomicU64::new(0);
/// See `TRAPS`.
pub static RESTORES: AtomicU64 = AtomicU64::new(0);
/// Register resets before a user thread without FPU state (`scrub`).
pub static SCRUBS: AtomicU64 = AtomicU64::new(0);

/// Per-CPU FPU bookkeeping (part of each CPU's scheduler state).
#[derive(Debug)]
pub struct CpuFpu {
    /// Thread whose state the registers hold (saved or not).
    last: AtomicU32,
    /// CR0.TS is clear: the registers hold `last`'s live state (so `last` is set whenever
    /// this is true: `switch_out`'s first test relies on it).
    ts_clear: AtomicBool,
}

impl CpuFpu {
    /// Registers hold nobody's state.
    pub const fn new() -> CpuFpu {
        CpuFpu {
            last: AtomicU32::new(NONE),
            ts_clear: AtomicBool::new(false),
        }
    }
}

impl Default for CpuFpu {
    fn default() -> Self {
        Self::new()
    }
}

fn cpu_fpu(cpu: u32) -> Option<&'static CpuFpu> {
    crate::sched::cpu_sched(cpu).map(|cs| &cs.fpu)
}

/// Detects the save mechanism and area size, and makes the initial-state image (once).
pub fn init() {
    let info = INFO.call_once(FpuInfo::detect);
    if INIT_IMAGE.load(Ordering::Relaxed) != 0 {
        return;
    }
    // A few KiB while the scheduler starts: failing here means no memory at all, and the
    // mitigation is not run without.
    let p = crate::mm::kalloc::try_alloc(area_layout(info)).unwrap_or_else(|_| {
        panic!(
            "FPU: no memory for the {}-byte initial-state image",
            info.size
        )
    });
    // SAFETY: a fresh allocation of `area_layout(info)` bytes, kept for good.
    let bytes = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), area_layout(info).size()) };
    exo_arch::fpu::init_area(bytes, info);
    INIT_IMAGE.store(p.as_ptr() as u64, Ordering::Release);
}

/// Whether switching is eager.
pub fn eager() -> bool {
    EAGER.load(Ordering::Relaxed)
}

/// The detected mechanism, for reports.
pub fn info() -> Option<&'static FpuInfo> {
    INFO.get()
}

/// Chooses eager (`true`) or lazy switching. Takes effect at the next switch on each CPU.
pub fn set_eager(on: bool) {
    EAGER.store(on, Ordering::Relaxed);
}

/// Per-CPU start: TS set, so the first FPU use of any thread traps.
pub fn init_cpu(c: &CpuFpu) {
    c.last.store(NONE, Ordering::Relaxed);
    c.ts_clear.store(false, Ordering::Relaxed);
    exo_arch::fpu::set_ts();
}

fn area_layout(info: &FpuInfo) -> Layout {
    Layout::from_size_align(info.size.max(576), 64).unwrap_or(Layout::new::<[u8; 4096]>())
}

/// Called by the scheduler with interrupts off and the CPU's lock held, before switching
/// from `prev` to `next` (table indices `prev_i`, `next_i`, control blocks the caller has
/// already found) on this CPU (`cpu`, whose bookkeeping is `c`).
#[inline(always)]
pub(super) fn switch_out(
    c: &CpuFpu,
    cpu: u32,
    prev_i: usize,
    prev: &Tcb,
    next_i: usize,
    next: &Tcb,
) {
    let last = c.last.load(Ordering::Relaxed);
    if last == NONE && next.fpu_area.load(Ordering::Relaxed) == 0 {
        // Nobody's state in the registers (so none live: TS clear implies `last` is set)
        // and none to load: nothing to save, load or scrub, in either mode.
        return;
    }
    let ts_clear = c.ts_clear.load(Ordering::Relaxed);
    let eager = EAGER.load(Ordering::Relaxed);
    if !ts_clear && !eager {
        return; // lazy, and the registers hold no live state: nothing to save or set
    }
    let Some(info) = INFO.get() else {
        return;
    };
    if ts_clear && last == prev_i as u32 {
        let area = prev.fpu_area.load(Ordering::Relaxed);
        if area != 0 {
            // SAFETY: `area` is `prev`'s save area (64-byte aligned, `info.size` bytes, owned
            // by the thread and freed only after it exited); TS is clear so XSAVE does not
            // trap; interrupts are off.
            unsafe { exo_arch::fpu::save(area as *mut u8, info) };
            prev.fpu_cpu.store(cpu, Ordering::Relaxed);
        }
    }
    let next_area = next.fpu_area.load(Ordering::Relaxed);
    if eager && next_area != 0 {
        let regs_valid = last == next_i as u32 && next.fpu_cpu.load(Ordering::Relaxed) == cpu;
        if !ts_clear {
            exo_arch::fpu::clts();
        }
        if !regs_valid {
            // SAFETY: as above, for `next`'s area, which holds a valid image (initialised at
            // allocation, then saved by `save`).
            unsafe { exo_arch::fpu::restore(next_area as *const u8, info) };
        }
        c.last.store(next_i as u32, Ordering::Relaxed);
        c.ts_clear.store(true, Ordering::Relaxed);
    } else if eager && last != NONE && next.pid.load(Ordering::Relaxed) != 0 {
        scrub(c, info, ts_clear);
    } else if ts_clear {
        exo_arch::fpu::set_ts();
        c.ts_clear.store(false, Ordering::Relaxed);
    }
}

/// The running thread `me` (table index) just became a user thread (it took a pid:
/// `set_current_ids`, the first thing a user thread's kernel entry does before ring 3).
/// It was switched in as a kernel thread, which is not scrubbed for: if the registers hold
/// another thread's state, they are reset now, as the switch would have for a user thread
/// (the LazyFP rule in the module header). Interrupts off (the caller's guard). Until
/// 2026-12-03 they were not, and a new user thread whose CPU last ran another thread's FPU
/// code entered ring 3 with that state in the registers (behind TS): the kernel test
/// `sched.fpu_user_thread_without_state_sees_none_of_the_last` failed once in CI when its
/// pair ran in the other order.
pub(super) fn became_user(c: &CpuFpu, me: usize) {
    let last = c.last.load(Ordering::Relaxed);
    // Its own state if this CPU names it and the registers are live (TS clear: only the
    // running thread's #NM or its eager switch-in clears it, and both name it), or were
    // saved from this CPU. An index names one thread at a time, but a CPU its ended
    // predecessor ran on long ago may still name it: that CPU's TS is set, and the saved-on
    // CPU is checked. Until 2026-12-04 only the second counted, so a thread whose first FPU
    // use (or an eager switch-in from an area saved elsewhere) had just loaded its own
    // registers lost them when it took a pid.
    let own = last == me as u32
        && (c.ts_clear.load(Ordering::Relaxed)
            || crate::sched::fpu_saved_on(me).load(Ordering::Relaxed)
                == exo_percpu::cpu_id_hint().0);
    if last == NONE || own || !EAGER.load(Ordering::Relaxed) {
        return;
    }
    if let Some(info) = INFO.get() {
        // `last` is not running, so its state was saved at its switch-out.
        scrub(c, info, c.ts_clear.load(Ordering::Relaxed));
    }
}

/// Resets the registers to the initial state (they hold `last`'s, already saved if it was
/// live) and sets TS, before a user thread without an area runs (the LazyFP rule in the
/// module header). Cold: only a switch from a thread with FPU state to such a thread.
#[cold]
#[inline(never)]
fn scrub(c: &CpuFpu, info: &FpuInfo, ts_clear: bool) {
    let image = INIT_IMAGE.load(Ordering::Acquire);
    if !ts_clear {
        exo_arch::fpu::clts();
    }
    if image != 0 {
        // SAFETY: the initial-state image made by `init` (64-byte aligned, `info.size`
        // bytes, valid for this format, never freed); TS is clear; interrupts are off.
        unsafe { exo_arch::fpu::restore(image as *const u8, info) };
    }
    SCRUBS.fetch_add(1, Ordering::Relaxed);
    exo_arch::fpu::set_ts();
    c.ts_clear.store(false, Ordering::Relaxed);
    c.last.store(NONE, Ordering::Relaxed);
}

/// What the #NM handler did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmOutcome {
    /// The thread's state is in the registers: return to it.
    Fixed,
    /// Not ours to fix (no scheduler, no FPU support): a fault.
    NotOurs,
    /// The thread's first FPU use found no memory for its save area: the caller kills the
    /// thread alone if it can (it is in its own context), else stops the machine.
    OutOfMemory,
}

/// The #NM handler.
#[inline(never)]
pub fn device_not_available() -> NmOutcome {
    let Some(info) = INFO.get() else {
        return NmOutcome::NotOurs;
    };
    let Some(cur) = crate::sched::current() else {
        return NmOutcome::NotOurs;
    };
    let i = cur.index();
    let Some(cs) = crate::sched::this_sched() else {
        return NmOutcome::NotOurs;
    };
    let (c, cpu) = (&cs.fpu, exo_percpu::cpu_id_hint().0);
    TRAPS.fetch_add(1, Ordering::Relaxed);
    let mut area = crate::sched::fpu_area(i);
    let fresh = area == 0;
    if fresh {
        // First use: the area is allocated here, in the thread's own context (#NM is
        // synchronous, never inside an allocator leaf section).
        match crate::mm::kalloc::try_alloc(area_layout(info)) {
            Ok(p) => area = p.as_ptr() as u64,
            Err(_) => return NmOutcome::OutOfMemory,
        }
        // SAFETY: a fresh allocation of `area_layout(info)` bytes owned by this thread.
        let bytes =
            unsafe { core::slice::from_raw_parts_mut(area as *mut u8, area_layout(info).size()) };
        exo_arch::fpu::init_area(bytes, info);
        crate::sched::set_fpu_area(i, area);
        crate::sched::fpu_saved_on(i).store(NONE, Ordering::Relaxed);
    }
    exo_arch::fpu::clts();
    let regs_valid = !fresh
        && c.last.load(Ordering::Relaxed) == i as u32
        && crate::sched::fpu_saved_on(i).load(Ordering::Relaxed) == cpu;
    if !regs_valid {
        RESTORES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the thread's own area, valid image (initialised above or saved before).
        unsafe { exo_arch::fpu::restore(area as *const u8, info) };
    }
    c.last.store(i as u32, Ordering::Relaxed);
    c.ts_clear.store(true, Ordering::Relaxed);
    NmOutcome::Fixed
}

/// A thread ended: forget it everywhere and free its area (called by the scheduler after the
/// thread's last switch-out, on that CPU, interrupts off: the reaper runs in the switch's
/// tail). If this CPU's registers hold its state they are reset now (eager switching), so
/// no other thread, and no later switch's hook, has to care; a CPU it was last saved from
/// before, whose registers cannot be reset from here, is marked [`DEAD`] instead (reset
/// before the next user thread without state runs there). Until 2026-12-04 both were marked
/// as holding nobody's state (LazyFP); for a few hours that day this CPU was marked `DEAD`
/// too, which kept every later kernel-thread switch there off the hook's fast path
/// (icount `ipc.rtt.64.kthread` +35 in the full bench run).
pub fn release(i: usize, area: &AtomicU64) {
    let saved_on = crate::sched::fpu_saved_on(i).swap(NONE, Ordering::Relaxed);
    let here = exo_percpu::cpu_id_hint().0;
    let eager = EAGER.load(Ordering::Relaxed);
    if let Some(c) = cpu_fpu(here)
        && c.last.load(Ordering::Relaxed) == i as u32
    {
        match INFO.get() {
            Some(info) if eager => scrub(c, info, c.ts_clear.load(Ordering::Relaxed)),
            // Lazy switching leaves registers to the next #NM (the module header).
            _ => c.last.store(NONE, Ordering::Relaxed),
        }
    }
    if saved_on != here
        && let Some(c) = cpu_fpu(saved_on)
    {
        let mark = if eager { DEAD } else { NONE };
        let _ = c
            .last
            .compare_exchange(i as u32, mark, Ordering::Relaxed, Ordering::Relaxed);
    }
    let a = area.swap(0, Ordering::Relaxed);
    if a != 0
        && let (Some(info), Some(p)) = (INFO.get(), core::ptr::NonNull::new(a as *mut u8))
    {
        // SAFETY: `a` was allocated by `device_not_available` with this layout, and the thread
        // that owned it has ended (its last save is done), so nobody uses it any more.
        unsafe { crate::mm::kalloc::free(p, area_layout(info)) };
    }
}

/// Loads xmm0..xmm15 (and the upper halves of ymm0..ymm15 when `avx`) from `buf` (test
/// support: kernel code never uses these registers itself, so they keep what is put there
/// until the thread's next FPU instruction or switch).
pub fn load_regs(buf: &[u8; 512], avx: bool) {
    let p = buf.as_ptr();
    if avx {
        // SAFETY: reads 512 bytes from `buf`; AVX is enabled in XCR0 (the caller checked);
        // the vector registers are not used by compiled kernel code (soft-float target).
        unsafe {
            core::arch::asm!(
                "vmovdqu ymm0, [{p}]", "vmovdqu ymm1, [{p} + 32]", "vmovdqu ymm2, [{p} + 64]",
                "vmovdqu ymm3, [{p} + 96]", "vmovdqu ymm4, [{p} + 128]", "vmovdqu ymm5, [{p} + 160]",
                "vmovdqu ymm6, [{p} + 192]", "vmovdqu ymm7, [{p} + 224]", "vmovdqu ymm8, [{p} + 256]",
                "vmovdqu ymm9, [{p} + 288]", "vmovdqu ymm10, [{p} + 320]", "vmovdqu ymm11, [{p} + 352]",
                "vmovdqu ymm12, [{p} + 384]", "vmovdqu ymm13, [{p} + 416]", "vmovdqu ymm14, [{p} + 448]",
                "vmovdqu ymm15, [{p} + 480]",
                p = in(reg) p, options(nostack, readonly, preserves_flags));
        }
    } else {
        // SAFETY: reads 256 bytes from `buf`; SSE2 is baseline; registers as above.
        unsafe {
            core::arch::asm!(
                "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 16]", "movdqu xmm2, [{p} + 32]",
                "movdqu xmm3, [{p} + 48]", "movdqu xmm4, [{p} + 64]", "movdqu xmm5, [{p} + 80]",
                "movdqu xmm6, [{p} + 96]", "movdqu xmm7, [{p} + 112]", "movdqu xmm8, [{p} + 128]",
                "movdqu xmm9, [{p} + 144]", "movdqu xmm10, [{p} + 160]", "movdqu xmm11, [{p} + 176]",
                "movdqu xmm12, [{p} + 192]", "movdqu xmm13, [{p} + 208]", "movdqu xmm14, [{p} + 224]",
                "movdqu xmm15, [{p} + 240]",
                p = in(reg) p, options(nostack, readonly, preserves_flags));
        }
    }
}

/// The registers as they are, into `buf` as [`store_regs`] does, without the #NM that would
/// first load the caller's own state: what an instruction run speculatively before that
/// trap reads (LazyFP; test support). Interrupts off throughout, TS as it was after.
pub fn peek_regs(buf: &mut [u8; 512], avx: bool) {
    let _g = exo_percpu::IrqGuard::new();
    let ts = exo_arch::fpu::ts_is_set();
    if ts {
        exo_arch::fpu::clts();
    }
    store_regs(buf, avx);
    if ts {
        exo_arch::fpu::set_ts();
    }
}

/// Stores xmm0..xmm15 (ymm0..ymm15 when `avx`) into `buf` (test support, see `load_regs`).
pub fn store_regs(buf: &mut [u8; 512], avx: bool) {
    let p = buf.as_mut_ptr();
    if avx {
        // SAFETY: writes 512 bytes into `buf`; AVX enabled (caller checked).
        unsafe {
            core::arch::asm!(
                "vmovdqu [{p}], ymm0", "vmovdqu [{p} + 32], ymm1", "vmovdqu [{p} + 64], ymm2",
                "vmovdqu [{p} + 96], ymm3", "vmovdqu [{p} + 128], ymm4", "vmovdqu [{p} + 160], ymm5",
                "vmovdqu [{p} + 192], ymm6", "vmovdqu [{p} + 224], ymm7", "vmovdqu [{p} + 256], ymm8",
                "vmovdqu [{p} + 288], ymm9", "vmovdqu [{p} + 320], ymm10", "vmovdqu [{p} + 352], ymm11",
                "vmovdqu [{p} + 384], ymm12", "vmovdqu [{p} + 416], ymm13", "vmovdqu [{p} + 448], ymm14",
                "vmovdqu [{p} + 480], ymm15",
                p = in(reg) p, options(nostack, preserves_flags));
        }
    } else {
        // SAFETY: writes 256 bytes into `buf`.
        unsafe {
            core::arch::asm!(
                "movdqu [{p}], xmm0", "movdqu [{p} + 16], xmm1", "movdqu [{p} + 32], xmm2",
                "movdqu [{p} + 48], xmm3", "movdqu [{p} + 64], xmm4", "movdqu [{p} + 80], xmm5",
                "movdqu [{p} + 96], xmm6", "movdqu [{p} + 112], xmm7", "movdqu [{p} + 128], xmm8",
                "movdqu [{p} + 144], xmm9", "movdqu [{p} + 160], xmm10", "movdqu [{p} + 176], xmm11",
                "movdqu [{p} + 192], xmm12", "movdqu [{p} + 208], xmm13", "movdqu [{p} + 224], xmm14",
                "movdqu [{p} + 240], xmm15",
                p = in(reg) p, options(nostack, preserves_flags));
        }
    }
}
