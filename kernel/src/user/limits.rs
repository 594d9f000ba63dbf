//! Shares of the kernel's tables by process tree: how many process slots, user thread
//! records, IPC endpoints and shared regions a process and its descendants may hold at once.
//! Until 2026-12-06 there were none: one process, or a tree of them, could take every slot
//! of any of the four tables, and every other process (init too) then got `EAGAIN`.
//!
//! Why trees and not processes: a process may spawn (any process: `spawn` makes the caller
//! the parent), and its children may spawn theirs, so a limit per process alone leaves a fork
//! bomb the whole process table; and what a process creates outlives it (its orphans run on,
//! an endpoint lives while any process holds a handle to it, a region while any maps it).
//! So each process has an account here (slot `pid % MAX_PROCS`, as its record) with a limit
//! per table and what its tree holds: its own process slot and thread records, the endpoints
//! and regions it created, and the accounts of the children it spawned, recursively. A
//! charge is made on the creator's account and on every account above it (its *charge
//! parent*, the process that spawned it, then that one's, up to a process the kernel
//! spawned), and refused with `EAGAIN` (the errno of a full table) if any of them would pass
//! its limit; nothing is charged then.
//!
//! Limits ([`TOP`], [`child_limit`]): a process the kernel spawns (init; a kernel test's)
//! gets half of each table, so the kernel keeps the other half whatever that tree does (its
//! own threads take records of the same thread table). A child gets three quarters of its
//! creator's limits: whatever one child and its descendants do, the parent's tree keeps at
//! least a quarter of its own share (at least one of each), so init can still start, and
//! wait for, its other children.
//!
//! An account goes when its process's record is freed (reaped, or a spawn that failed). What
//! its tree still holds is not given back then but handed to its charge parent: the accounts
//! of its children are re-parented there, and the endpoints and regions it created are
//! charged to that process from then on (they were in its tree already). So reaping a child
//! frees no share of its orphans: a process that lets a child spawn until refused and reaps
//! it gets no more room. Only a process the kernel spawned leaves its tree to nobody once it
//! is reaped (the kernel reaped it; the end of the `init` job ends the orphans).
//!
//! One lock for all accounts (interrupts off, never held across anything that sleeps or
//! takes another lock): taken on the create and free paths of the four tables only, never on
//! an IPC operation or a switch. A region's lock may be held around it (`shm::release`),
//! never the other way round.

use super::process::MAX_PROCS;
use super::shm::MAX_REGIONS;
use super::syscall::Errno;
use super::task::MAX_TASKS;
use crate::ipc::MAX_ENDPOINTS;
use core::sync::atomic::{AtomicU32, Ordering};
use exo_percpu::IrqGuard;

/// The tables a tree has a share of (an index into [`Counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Process slots (`process::MAX_PROCS`): a process holds its slot until it is reaped.
    Procs = 0,
    /// User thread records (`task::MAX_TASKS`): a thread holds its record until it is joined.
    Threads = 1,
    /// IPC endpoints (`ipc::MAX_ENDPOINTS`), charged to the process that created them for as
    /// long as they exist.
    Endpoints = 2,
    /// Shared regions (`shm::MAX_REGIONS`), charged to the process that created them for as
    /// long as one is mapped somewhere.
    Regions = 3,
}

/// How many [`Kind`]s there are.
pub const KINDS: usize = 4;

/// One number per [`Kind`] (limits or uses).
pub type Counts = [u32; KINDS];

/// The limits of a process the kernel spawns, for its whole tree: half of each table. The
/// kernel keeps the other half for its other processes and, in the thread table, for its own
/// threads. Half rather than all: a kernel test's hostile process is one of several the
/// kernel spawns, and init's tree is the whole system in the `init` job, which needs at most
/// a few dozen of each (`/nginx` at 64 CPUs: 65 processes, 129 threads).
pub const TOP: Counts = [
    (MAX_PROCS / 2) as u32,
    (MAX_TASKS / 2) as u32,
    (MAX_ENDPOINTS / 2) as u32,
    (MAX_REGIONS / 2) as u32,
];

/// A child's limit for one table, from its creator's `l`: three quarters of it, the
/// creator keeping at least one (a quarter, rounded down, or 1). One child's tree thus never
/// takes more than three quarters of what its parent's may hold, and the parent keeps the
/// rest for itself and its other children. Init's children get 384 processes, 384 threads,
/// 384 endpoints and 24 regions; 22 levels below `init` a process can no longer spawn (its
/// child's process share would be 0), and six below it a process still gets 7 regions. Until 2026-12-06 (the day the shares came) a child got half: nine levels
/// deep could not spawn, five deep had one region.
pub const fn child_limit(l: u32) -> u32 {
    let keep = if l / 4 > 1 { l / 4 } else { 1 };
    l.saturating_sub(keep)
}

const _: () = assert!(
    child_limit(512) == 384
        && child_limit(32) == 24
        && child_limit(4) == 3
        && child_limit(3) == 2
        && child_limit(1) == 0
        && child_limit(0) == 0
);

/// What a spawn charges its creator's tree: the new process's slot and its first thread.
const SPAWN: Counts = [1, 1, 0, 0];

#[derive(Debug, Clone, Copy)]
struct Account {
    /// The process (0: free).
    pid: u64,
    /// The process whose tree this one's is part of (0: none, a tree of its own).
    parent: u64,
    /// What its tree holds.
    used: Counts,
    limit: Counts,
    /// Its own thread records (started, not joined): what its reap gives back.
    threads: u32,
}

const FREE: Account = Account {
    pid: 0,
    parent: 0,
    used: [0; KINDS],
    limit: [0; KINDS],
    threads: 0,
};

struct Table {
    accounts: [Account; MAX_PROCS],
    /// Whom each endpoint slot's endpoint is charged to (0: nobody, a kernel endpoint).
    endpoints: [u64; MAX_ENDPOINTS],
    /// Whom each region slot's region is charged to (0: nobody).
    regions: [u64; MAX_REGIONS],
    /// Test use: the limits a process the kernel spawns gets instead of [`TOP`].
    top: Option<Counts>,
}

static TABLE: spin::Mutex<Table> = spin::Mutex::new(Table {
    accounts: [FREE; MAX_PROCS],
    endpoints: [0; MAX_ENDPOINTS],
    regions: [0; MAX_REGIONS],
    top: None,
});

/// Uses that would have gone below 0 (a charge given back twice, or never taken): none,
/// unless the accounting has a bug (the tests check it).
static MISCOUNTS: AtomicU32 = AtomicU32::new(0);

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let _g = IrqGuard::new();
    f(&mut TABLE.lock())
}

impl Table {
    /// The account of process `pid`, if it has one.
    fn index(&self, pid: u64) -> Option<usize> {
        let i = pid as usize % MAX_PROCS;
        (pid != 0 && self.accounts[i].pid == pid).then_some(i)
    }

    /// Whether `n` more fits every limit from `pid`'s account up to the top of its tree
    /// (true if it has none: the kernel's, or a test bed thread's).
    fn fits(&self, pid: u64, n: &Counts) -> bool {
        let mut at = self.index(pid);
        // Bounded anyway: a parent is an older process, so there is no cycle.
        for _ in 0..MAX_PROCS {
            let Some(i) = at else {
                return true;
            };
            let a = &self.accounts[i];
            if (0..KINDS).any(|k| a.used[k].saturating_add(n[k]) > a.limit[k]) {
                return false;
            }
            at = self.index(a.parent);
        }
        true
    }

    /// [`Table::fits`] for one more of `kind` alone (a thread record, an endpoint, a region):
    /// one use compared per level instead of four (icount `uthread.spawn` 2827 -> 2802 on
    /// 2026-12-06 with [`Table::apply_one`]: the thread's charge and release each walk the
    /// tree once).
    fn fits_one(&self, pid: u64, kind: Kind) -> bool {
        let k = kind as usize;
        let mut at = self.index(pid);
        for _ in 0..MAX_PROCS {
            let Some(i) = at else {
                return true;
            };
            let a = &self.accounts[i];
            if a.used[k] >= a.limit[k] {
                return false;
            }
            at = self.index(a.parent);
        }
        true
    }

    /// [`Table::apply`] of one `kind` alone.
    fn apply_one(&mut self, pid: u64, kind: Kind, add: bool) {
        let k = kind as usize;
        let mut at = self.index(pid);
        for _ in 0..MAX_PROCS {
            let Some(i) = at else {
                return;
            };
            let a = &mut self.accounts[i];
            a.used[k] = if add {
                a.used[k].saturating_add(1)
            } else {
                a.used[k].checked_sub(1).unwrap_or_else(|| {
                    MISCOUNTS.fetch_add(1, Ordering::Relaxed);
                    0
                })
            };
            let parent = a.parent;
            at = self.index(parent);
        }
    }

    /// Adds `n` to (or takes it from) the uses of `pid`'s account and of every one above it.
    fn apply(&mut self, pid: u64, n: &Counts, add: bool) {
        let mut at = self.index(pid);
        for _ in 0..MAX_PROCS {
            let Some(i) = at else {
                return;
            };
            let a = &mut self.accounts[i];
            for (u, d) in a.used.iter_mut().zip(n) {
                *u = if add {
                    u.saturating_add(*d)
                } else {
                    u.checked_sub(*d).unwrap_or_else(|| {
                        MISCOUNTS.fetch_add(1, Ordering::Relaxed);
                        0
                    })
                };
            }
            let parent = a.parent;
            at = self.index(parent);
        }
    }

    fn owners(&mut self, kind: Kind) -> &mut [u64] {
        match kind {
            Kind::Endpoints => &mut self.endpoints,
            _ => &mut self.regions,
        }
    }

    /// Charges one `kind` (endpoint or region, slot `index`) to `owner`'s tree; false if a
    /// limit refuses it. An owner with no account (the kernel) is charged nothing.
    fn charge_object(&mut self, kind: Kind, index: usize, owner: u64) -> bool {
        let owner = if self.index(owner).is_some() {
            owner
        } else {
            0
        };
        if owner != 0 {
            if !self.fits_one(owner, kind) {
                return false;
            }
            self.apply_one(owner, kind, true);
        }
        let slot = &mut self.owners(kind)[index];
        if *slot != 0 {
            MISCOUNTS.fetch_add(1, Ordering::Relaxed);
        }
        *slot = owner;
        true
    }

    /// Gives back the charge of slot `index`'s `kind` (to whom it is charged now).
    fn release_object(&mut self, kind: Kind, index: usize) {
        let owner = core::mem::take(&mut self.owners(kind)[index]);
        self.apply_one(owner, kind, false);
    }
}

/// The share a child of `caller` gets ([`TOP`] for a child of the kernel).
fn share_of(t: &Table, caller: u64) -> Counts {
    match t.index(caller) {
        Some(i) => t.accounts[i].limit.map(child_limit),
        None => t.top.unwrap_or(TOP),
    }
}

/// `spawn`'s first step, before anything is loaded: the new process's slot and first thread
/// charged to `caller`'s tree (the caller's pid; 0: the kernel), and the limits it will get
/// ([`open`]). `EAGAIN` if a limit of that tree would be passed, or if the new process's
/// share of either is 0 (the tree is too deep). [`unreserve_spawn`] gives it back if the
/// spawn fails before [`open`].
pub fn reserve_spawn(caller: u64) -> Result<Counts, Errno> {
    with(|t| {
        let share = share_of(t, caller);
        if share[Kind::Procs as usize] == 0
            || share[Kind::Threads as usize] == 0
            || !t.fits(caller, &SPAWN)
        {
            return Err(Errno::Eagain);
        }
        t.apply(caller, &SPAWN, true);
        Ok(share)
    })
}

/// Gives back a [`reserve_spawn`] of `caller`'s whose spawn failed before [`open`].
pub fn unreserve_spawn(caller: u64) {
    with(|t| t.apply(caller, &SPAWN, false));
}

/// Opens the account of process `pid` (its record just claimed), spawned by `caller`, with
/// the limits [`reserve_spawn`] gave: its tree holds its slot and first thread (charged to
/// the caller's tree already). Given back by [`close`].
pub fn open(pid: u64, caller: u64, limit: Counts) {
    with(|t| {
        let parent = if t.index(caller).is_some() { caller } else { 0 };
        let a = &mut t.accounts[pid as usize % MAX_PROCS];
        if a.pid != 0 {
            // The record's last process was not closed: its charges stay with its tree.
            MISCOUNTS.fetch_add(1, Ordering::Relaxed);
        }
        *a = Account {
            pid,
            parent,
            used: SPAWN,
            limit,
            threads: 1,
        };
    });
}

/// Closes the account of process `pid`, whose record is being freed (every thread record of
/// it freed too): its slot and thread records are given back along its tree, and what its
/// tree still holds (its children's accounts, endpoints and regions it created) is handed to
/// its charge parent (see the module header).
pub fn close(pid: u64) {
    with(|t| {
        let Some(i) = t.index(pid) else {
            return;
        };
        let a = core::mem::replace(&mut t.accounts[i], FREE);
        t.apply(a.parent, &[1, a.threads, 0, 0], false);
        let heir = if t.index(a.parent).is_some() {
            a.parent
        } else {
            0
        };
        // The scans only when the tree holds something of the kind beyond this process.
        if a.used[Kind::Procs as usize] > 1 {
            for b in t
                .accounts
                .iter_mut()
                .filter(|b| b.pid != 0 && b.parent == pid)
            {
                b.parent = heir;
            }
        }
        for kind in [Kind::Endpoints, Kind::Regions] {
            if a.used[kind as usize] != 0 {
                for o in t.owners(kind).iter_mut().filter(|o| **o == pid) {
                    *o = heir;
                }
            }
        }
    });
}

/// Charges a new thread record of process `pid` to its tree (`EAGAIN` over a limit).
/// Nothing for a caller with no account.
pub fn charge_thread(pid: u64) -> Result<(), Errno> {
    with(|t| {
        let Some(i) = t.index(pid) else {
            return Ok(());
        };
        if !t.fits_one(pid, Kind::Threads) {
            return Err(Errno::Eagain);
        }
        t.apply_one(pid, Kind::Threads, true);
        t.accounts[i].threads += 1;
        Ok(())
    })
}

/// Gives back the charge of a thread record of process `pid` (joined, or never started).
pub fn uncharge_thread(pid: u64) {
    with(|t| {
        let Some(i) = t.index(pid) else {
            return;
        };
        let a = &mut t.accounts[i];
        a.threads = a.threads.checked_sub(1).unwrap_or_else(|| {
            MISCOUNTS.fetch_add(1, Ordering::Relaxed);
            0
        });
        t.apply_one(pid, Kind::Threads, false);
    });
}

/// The IPC layer's charge of endpoint slot `index` created for process `owner`
/// (`ipc::Charges`); false: a limit refuses it.
pub fn charge_endpoint(index: u32, owner: u64) -> bool {
    with(|t| t.charge_object(Kind::Endpoints, index as usize, owner))
}

/// The IPC layer's release of endpoint slot `index` (destroyed, before the slot is reused).
pub fn release_endpoint(index: u32) {
    with(|t| t.release_object(Kind::Endpoints, index as usize));
}

/// Charges region slot `index`, being created by process `owner`, to its tree (false: a
/// limit refuses it).
pub fn charge_region(index: usize, owner: u64) -> bool {
    with(|t| t.charge_object(Kind::Regions, index, owner))
}

/// Gives back the charge of region slot `index` (freed, before the slot is reused).
pub fn release_region(index: usize) {
    with(|t| t.release_object(Kind::Regions, index));
}

/// Test support: what process `pid`'s tree holds and its limits (`None`: no account).
pub fn usage(pid: u64) -> Option<(Counts, Counts)> {
    with(|t| {
        t.index(pid)
            .map(|i| (t.accounts[i].used, t.accounts[i].limit))
    })
}

/// Test support: the limits a process the kernel spawns gets from now on ([`TOP`] with
/// `None`); returns the previous setting. Spawning a tree at the real limits (512 processes
/// with their stacks) would take minutes and hundreds of MiB under emulation: the tests set
/// small ones, which the same rules divide.
pub fn set_top_for_tests(top: Option<Counts>) -> Option<Counts> {
    with(|t| core::mem::replace(&mut t.top, top))
}

/// Test support: accounts open, endpoints and regions charged to a process, and uses that
/// would have gone below 0 (a bug) since boot.
pub fn census() -> (usize, usize, usize, u32) {
    with(|t| {
        (
            t.accounts.iter().filter(|a| a.pid != 0).count(),
            t.endpoints.iter().filter(|o| **o != 0).count(),
            t.regions.iter().filter(|o| **o != 0).count(),
            MISCOUNTS.load(Ordering::Relaxed),
        )
    })
}
