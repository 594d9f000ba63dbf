//! Shared regions for zero-copy IPC (issue 13, phase 3): `shm_map(handle, len)` maps the
//! region attached to an endpoint into the caller, creating it (len bytes, zeroed, at most
//! [`REGION_MAX`]) when `len != 0`. Both ends map the same frames once; a message then
//! carries a descriptor (offset, length) into the region, checked by the IPC layer against
//! the region's length (`user::ipc`): no copy, no remap, no shootdown per message.
//!
//! A region lives in a fixed table of [`MAX_REGIONS`] slots; its frames are counted by
//! mappings (every address space that maps it holds one reference, dropped when the space
//! goes: `aspace::AddressSpace`'s `Drop`), and freed with the last. The endpoint keeps only
//! a tag (slot + generation): a stale tag (its region freed) is found out by the
//! generation and `shm_map(handle, 0)` fails with `ENOENT`, while `shm_map(handle, len)`
//! detaches it and creates a new region; the endpoint's bound for descriptors stays its
//! region's length until then (the kernel never reads the region).
//!
//! Commit accounting (`mm::commit`): a region's frames are charged once, when it is created,
//! to the creating process's account (its per-process limit) and to the global charge, which
//! the region keeps until it is freed, whoever maps it last; not per mapping. The region's
//! slot is charged the same way to the creating process's tree (`limits`: `EAGAIN` over its
//! share of the table) until the region is freed.

use super::aspace::{AddressSpace, HoldPoint};
use super::syscall::Errno;
use crate::mm::commit::{self, Account};
use crate::mm::kalloc::{self, Frame};
use alloc::vec::Vec;
use exo_percpu::IrqGuard;

/// Regions that can exist at once, all process trees together (each has a share: `limits`).
pub const MAX_REGIONS: usize = 64;
/// Largest region (bytes).
pub const REGION_MAX: u64 = 1 << 20;
const PAGE: u64 = 4096;

struct Region {
    gen_: u32,
    /// Mappings (address spaces) holding it; 0: free.
    refs: u32,
    frames: Vec<u64>,
}

static REGIONS: [spin::Mutex<Region>; MAX_REGIONS] = [const {
    spin::Mutex::new(Region {
        gen_: 1,
        refs: 0,
        frames: Vec::new(),
    })
}; MAX_REGIONS];

fn tag(index: usize, gen_: u32) -> u64 {
    (u64::from(gen_) << 32) | (index as u64 + 1)
}

/// Region `tag`'s slot: its index, its record and the generation the tag names.
fn slot_of(tag: u64) -> Option<(usize, &'static spin::Mutex<Region>, u32)> {
    let i = (tag as u32 as usize).checked_sub(1)?;
    REGIONS.get(i).map(|r| (i, r, (tag >> 32) as u32))
}

/// Regions in use (tests: none left after a run).
pub fn in_use() -> usize {
    let _g = IrqGuard::new();
    REGIONS.iter().filter(|r| r.lock().refs != 0).count()
}

/// A new region of `len` bytes (rounded up to pages) of zeroed frames, with one reference
/// (the creator's mapping-to-be: [`release`] it if that fails), charged to `acct` (the
/// creator's; `ENOMEM` over a limit) and to the global charge; the creator gives its part
/// back with `Account::let_go_region` when it lets go of the region ([`undo_created`] after
/// a failed map, or its space's end), the region its global part when it is freed. Its slot
/// is charged to process `owner`'s tree (`EAGAIN` over its share; 0: the kernel's, not
/// charged) until the region is freed. Returns its tag and frames.
pub fn create(len: u64, acct: &Account, owner: u64) -> Result<(u64, Vec<u64>), Errno> {
    if len == 0 || len > REGION_MAX {
        return Err(Errno::Einval);
    }
    let pages = len.div_ceil(PAGE);
    // Both lists first: once the frames are taken, nothing but a full table may fail.
    let mut frames = Vec::new();
    frames
        .try_reserve_exact(pages as usize)
        .map_err(|_| Errno::Enomem)?;
    let mut copy = Vec::new();
    copy.try_reserve_exact(pages as usize)
        .map_err(|_| Errno::Enomem)?;
    // The table's slot first (held by one reference while the region has no frames, so no
    // other creation takes it): a full table is `EAGAIN` before anything is charged or
    // taken. Until 2026-12-05 up to 256 frames were charged and zeroed before the table
    // was looked at (a cheap loop held 1 MiB of the global charge; found by review).
    let slot = {
        let _g = IrqGuard::new();
        REGIONS.iter().position(|r| {
            let mut g = r.lock();
            let free = g.refs == 0 && g.frames.is_empty();
            if free {
                g.refs = 1;
            }
            free
        })
    }
    .ok_or(Errno::Eagain)?;
    let free_slot = || {
        let _g = IrqGuard::new();
        REGIONS[slot].lock().refs = 0;
    };
    // Before anything is charged or taken too, as a full table.
    if !super::limits::charge_region(slot, owner) {
        free_slot();
        return Err(Errno::Eagain);
    }
    let let_go_slot = || {
        super::limits::release_region(slot);
        free_slot();
    };
    if acct.charge_region(pages).is_err() {
        let_go_slot();
        return Err(Errno::Enomem);
    }
    for _ in 0..pages {
        match kalloc::alloc_frame() {
            Ok(f) => {
                crate::sys::zero_frame(f.phys());
                frames.push(f.phys());
            }
            Err(_) => {
                free_all(frames);
                acct.let_go_region(pages);
                commit::region_freed(pages);
                let_go_slot();
                return Err(Errno::Enomem);
            }
        }
    }
    copy.extend_from_slice(&frames);
    let _g = IrqGuard::new();
    let mut g = REGIONS[slot].lock();
    g.frames = frames;
    Ok((tag(slot, g.gen_), copy))
}

fn free_all(frames: Vec<u64>) {
    for pa in frames {
        kalloc::free_frame(Frame::from_phys(pa));
    }
}

fn copy_of(frames: &[u64]) -> Result<Vec<u64>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(frames.len())
        .map_err(|_| Errno::Enomem)?;
    v.extend_from_slice(frames);
    Ok(v)
}

/// One more reference to region `tag` (a new mapping); its frames. `ENOENT` if it is gone.
pub fn acquire(tag: u64) -> Result<Vec<u64>, Errno> {
    let (_, r, gen_) = slot_of(tag).ok_or(Errno::Enoent)?;
    let _g = IrqGuard::new();
    let mut g = r.lock();
    if g.gen_ != gen_ || g.refs == 0 {
        return Err(Errno::Enoent);
    }
    let v = copy_of(&g.frames)?;
    g.refs += 1;
    Ok(v)
}

/// Drops a reference to region `tag`; the last one frees its frames (no mapping of them
/// is left: every space unmapped them first). Returns whether this freed the region.
pub fn release(tag: u64) -> bool {
    let Some((i, r, gen_)) = slot_of(tag) else {
        return false;
    };
    let frames = {
        let _g = IrqGuard::new();
        let mut g = r.lock();
        if g.gen_ != gen_ || g.refs == 0 {
            return false;
        }
        g.refs -= 1;
        if g.refs != 0 {
            return false;
        }
        g.gen_ = g.gen_.wrapping_add(1).max(1);
        // The tree's charge, under the lock: once it is dropped the slot may be taken (and
        // charged) by a new region.
        super::limits::release_region(i);
        core::mem::take(&mut g.frames)
    };
    let n = frames.len() as u64;
    free_all(frames);
    commit::region_freed(n);
    true
}

/// Drops the reference of a `shm_map` that created region `tag` for endpoint `ep` and then
/// failed to map it: the endpoint forgets the region only if that was its last reference.
/// Between `set_region` and the failed map another process may have mapped the region
/// (`shm_map(h, 0)`); until 2026-12-04 the region was detached anyway, and that process
/// kept a region the endpoint no longer named (the next `shm_map(h, len)` made a second
/// one, and descriptors were checked against its length; found by review).
pub(super) fn undo_created(ep: crate::ipc::EpRef, tag: u64) {
    if release(tag) {
        let _ = crate::ipc::detach_region(ep, tag);
    }
}

/// `shm_map(handle, len)`: maps the region of the endpoint `handle` names into the calling
/// process (creating it with `len` bytes when `len != 0`); its address.
pub fn shm_map(handle: u64, len: u64) -> Result<i64, Errno> {
    let t = super::process::handles().ok_or(Errno::Ebadf)?;
    let h = u32::try_from(handle).map_err(|_| Errno::Ebadf)?;
    let cap = t.get(crate::ipc::Handle(h)).map_err(|_| Errno::Ebadf)?;
    let owner = super::process::caller_pid();
    super::process::with_current(|a| map_in(a, owner, cap.ep, len)).unwrap_or(Err(Errno::Enomem))
}

/// [`map_in`] stops here once it has read the endpoint's floor and before it makes a
/// region, so a test can raise the floor in that window (each try of its loop passes here).
pub static FLOOR_HOLD: HoldPoint = HoldPoint::new();

/// [`shm_map`] for the calling process `owner`, its space `a` (a region it creates is
/// charged to its account and its tree) and endpoint `ep` (also for tests).
pub(super) fn map_in(
    a: &AddressSpace,
    owner: u64,
    ep: crate::ipc::EpRef,
    len: u64,
) -> Result<i64, Errno> {
    let (old, _) = crate::ipc::region(ep).map_err(|_| Errno::Epipe)?;
    let (tag, frames) = if len == 0 {
        if old == 0 {
            return Err(Errno::Enoent);
        }
        (old, acquire(old)?)
    } else {
        if len > REGION_MAX {
            return Err(Errno::Einval);
        }
        if old != 0 {
            if alive(old) {
                return Err(Errno::Eexist);
            }
            // Its region was freed with its last mapping: the endpoint may have a new one.
            let _ = crate::ipc::detach_region(ep, old);
        }
        // At least as large as any region the endpoint had (`ipc::region_floor`), which
        // another process can raise meanwhile (`set_region` refuses below it: made again
        // at the new floor, a few times at most).
        let mut len = len.max(crate::ipc::region_floor(ep).map_err(|_| Errno::Epipe)?);
        let mut tries = 0;
        loop {
            FLOOR_HOLD.pass();
            let (tag, frames) = create(len, a.account(), owner)?;
            let refused = match crate::ipc::set_region(ep, tag, frames.len() as u64 * PAGE) {
                Ok(crate::ipc::Attach::Done) => break (tag, frames),
                Ok(crate::ipc::Attach::BelowFloor(floor)) if tries < 4 && floor <= REGION_MAX => {
                    len = floor;
                    tries += 1;
                    None
                }
                Ok(crate::ipc::Attach::BelowFloor(_)) => Some(Errno::Eagain),
                Ok(crate::ipc::Attach::Occupied) => Some(Errno::Eexist),
                Err(_) => Some(Errno::Epipe),
            };
            release(tag);
            a.account().let_go_region(frames.len() as u64);
            if let Some(e) = refused {
                return Err(e);
            }
        }
    };
    match a.map_shared(&frames, tag) {
        Ok(va) => Ok(va as i64),
        Err(_) => {
            // A region this call created leaves the endpoint with it: the call failed, and
            // until 2026-12-04 the dead tag stayed, so the endpoint could never have a
            // region again (every later shm_map: ENOENT or EEXIST). Unless another process
            // mapped it meanwhile (`undo_created`).
            if len != 0 {
                undo_created(ep, tag);
                a.account().let_go_region(frames.len() as u64);
            } else {
                release(tag);
            }
            Err(Errno::Enomem)
        }
    }
}

/// Whether region `tag` still exists (mapped somewhere; also for tests).
pub fn alive(tag: u64) -> bool {
    slot_of(tag).is_some_and(|(_, r, gen_)| {
        let _g = IrqGuard::new();
        let g = r.lock();
        g.gen_ == gen_ && g.refs != 0
    })
}
