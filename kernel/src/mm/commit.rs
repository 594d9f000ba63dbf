//! Commit accounting of user memory: how many frames the kernel holds on behalf of user
//! space (anonymous and image pages, page tables of user spaces, shared regions, user
//! threads' kernel stacks), the
//! global limit on that total, which leaves the kernel a reserve of frames no user mapping
//! can take, and the per-process limit (`exo.proc_mem_mb`).
//!
//! Owns the counters and the rule; the callers (`user::aspace`, `user::shm`,
//! `user::process` for the threads' kernel stacks) charge a
//! frame *before* they allocate it and uncharge it when they free it, one call per map
//! request where they can (a page table is charged when it is allocated). A charge that
//! does not fit is refused and changes nothing; the caller then fails with `ENOMEM`.
//!
//! The rule (fixed once by [`init`], when the job starts, after the kernel's own setup):
//! `limit = free frames then - reserve - 63 frames per CPU` (what the CPUs' frame caches may
//! hold) `- what the scheduler's stack caches may come to hold` (ended threads' stacks kept
//! for reuse), where `reserve` is `exo.kernel_reserve_mb` or, by
//! default, `max(8 MiB, managed / 16)` (`managed`: the frames the allocator took over at
//! boot). User space can never hold more than `limit` frames in all, so at least `reserve`
//! frames stay for the kernel; but the kernel's own later growth (thread stacks, heap
//! objects, process records, per-CPU caches) also comes out of the reserve: the reserve is a
//! floor for the kernel's allocations while user space is at its limit, not a promise that
//! they succeed whatever the kernel does.

use core::sync::atomic::{AtomicU64, Ordering};

/// Frames per MiB.
const FRAMES_PER_MB: u64 = 256;
/// The default reserve's floor: 8 MiB.
const MIN_RESERVE: u64 = 8 * FRAMES_PER_MB;

/// Frames charged to user space now (every account's own frames and every shared region).
static CHARGED: AtomicU64 = AtomicU64::new(0);
/// Most frames user space may hold (`u64::MAX` until [`init`]: no limit).
static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);
/// The reserve [`init`] computed (frames), for the report.
static RESERVE: AtomicU64 = AtomicU64::new(0);
/// Most frames one account may hold (0: no limit but the global one).
static PROC_LIMIT: AtomicU64 = AtomicU64::new(0);
/// Charges refused (global or per-process limit), for tests and reports.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// A charge that does not fit (the caller's `ENOMEM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit;

/// What one process (one user address space) holds. `total` is what the per-process limit
/// is checked against: its own frames (pages, page tables, the root, spare tables) plus
/// the shared regions it created and still maps (`regions`). Its own frames are in the
/// global charge through it; a region's frames are in the global charge through the region
/// (they outlive the creator when another process maps the region).
#[derive(Debug)]
pub struct Account {
    total: AtomicU64,
    regions: AtomicU64,
}

/// Adds `n` to `c` unless the sum passes `max`; one compare-exchange when uncontended.
fn add_within(c: &AtomicU64, n: u64, max: u64) -> Result<(), OverLimit> {
    c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        v.checked_add(n).filter(|&s| s <= max)
    })
    .map(drop)
    .map_err(|_| {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        OverLimit
    })
}

impl Account {
    /// An account holding nothing.
    pub const fn new() -> Account {
        Account {
            total: AtomicU64::new(0),
            regions: AtomicU64::new(0),
        }
    }

    /// Frames charged to this account (its own and the regions it created).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Charges `n` frames of its own (taken next), within the per-process and the global
    /// limit; refused, nothing changes.
    pub fn charge(&self, n: u64) -> Result<(), OverLimit> {
        let max = match PROC_LIMIT.load(Ordering::Relaxed) {
            0 => u64::MAX,
            m => m,
        };
        add_within(&self.total, n, max)?;
        if let Err(e) = add_within(&CHARGED, n, LIMIT.load(Ordering::Relaxed)) {
            self.total.fetch_sub(n, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    /// Gives back `n` frames of its own that were freed.
    pub fn uncharge(&self, n: u64) {
        if n != 0 {
            self.total.fetch_sub(n, Ordering::Relaxed);
            CHARGED.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Charges a shared region of `n` frames this account creates: as [`Account::charge`],
    /// but the global part belongs to the region ([`region_freed`] gives it back) and the
    /// account's part goes with [`Account::let_go_region`] or with the account.
    pub fn charge_region(&self, n: u64) -> Result<(), OverLimit> {
        self.charge(n)?;
        self.regions.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// The account stops counting a region of `n` frames it created (a failed `shm_map`
    /// let go of it); the region's global charge stays until it is freed.
    pub fn let_go_region(&self, n: u64) {
        self.regions.fetch_sub(n, Ordering::Relaxed);
        self.total.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Drop for Account {
    /// The space is gone with every frame of its own: they leave the global charge (the
    /// regions it created stay charged until they are freed).
    fn drop(&mut self) {
        let own = *self.total.get_mut() - *self.regions.get_mut();
        CHARGED.fetch_sub(own, Ordering::Relaxed);
    }
}

/// A shared region of `n` frames was freed: its global charge goes.
pub fn region_freed(n: u64) {
    CHARGED.fetch_sub(n, Ordering::Relaxed);
}

/// The limits, as [`init`] set them (frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most frames user space may hold in all.
    pub user_limit: u64,
    /// Frames kept from user space when the limit was computed.
    pub reserve: u64,
    /// Most frames one process may hold (0: none).
    pub proc_limit: u64,
}

/// The reserve for `managed` frames: `reserve_mb` MiB when given, else
/// `max(8 MiB, managed / 16)`.
pub fn reserve_for(managed: u64, reserve_mb: Option<u64>) -> u64 {
    match reserve_mb {
        Some(mb) => mb.saturating_mul(FRAMES_PER_MB),
        None => MIN_RESERVE.max(managed / 16),
    }
}

/// Sets the limits once, when the job starts (the kernel's own setup done, no user space
/// yet, `cpus` CPUs online): the global limit is the frames free now (in the buddy; frames
/// in per-CPU caches count as used) less the reserve, less what the CPUs' frame caches may
/// hold later (`kalloc::HIGH_WATER` each: a CPU never takes frames from another CPU's
/// cache, so frames cached elsewhere are out of a CPU's reach; without this they came out
/// of the reserve, about 16 MiB at -smp 64), and less `cached` more frames the caller
/// knows caches of its own may come to hold (the scheduler's ended threads' stacks, which
/// are not charged once their thread ended: 40 MiB at -smp 64; both found by review,
/// 2026-12-05); `proc_mb` MiB per process (0: no per-process limit).
pub fn init(reserve_mb: Option<u64>, proc_mb: u64, cpus: u32, cached: u64) -> Limits {
    let reserve = reserve_for(super::kalloc::managed_frames(), reserve_mb);
    let free = super::kalloc::stats().buddy_free as u64;
    let slack = u64::from(cpus) * super::kalloc::HIGH_WATER as u64 + cached;
    let user_limit = free.saturating_sub(reserve).saturating_sub(slack);
    RESERVE.store(reserve, Ordering::Relaxed);
    LIMIT.store(user_limit, Ordering::Relaxed);
    let proc_limit = proc_mb.saturating_mul(FRAMES_PER_MB);
    PROC_LIMIT.store(proc_limit, Ordering::Relaxed);
    Limits {
        user_limit,
        reserve,
        proc_limit,
    }
}

/// Frames charged to user space now.
pub fn charged() -> u64 {
    CHARGED.load(Ordering::Relaxed)
}

/// The global limit (frames).
pub fn limit() -> u64 {
    LIMIT.load(Ordering::Relaxed)
}

/// The reserve (frames) [`init`] kept.
pub fn reserve() -> u64 {
    RESERVE.load(Ordering::Relaxed)
}

/// Charges refused so far.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// The per-process limit in frames (0: none).
pub fn proc_limit_pages() -> u64 {
    PROC_LIMIT.load(Ordering::Relaxed)
}

/// Sets the per-process limit to `n` frames (0: none); returns the old one (tests set it
/// and restore it). Accounts already over it keep what they hold; their next charge fails.
pub fn set_proc_limit_pages(n: u64) -> u64 {
    PROC_LIMIT.swap(n, Ordering::Relaxed)
}
