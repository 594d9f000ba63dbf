//! The ring-3 test bed: one address space (never dropped) holding the hand-assembled test
//! programs, shared by the threads of the user-mode tests. Threads that run in it, or read
//! its pages with the user copies, are spawned with [`builder`] or call [`enter`].
//!
//! * The code page at [`CODE_VA`] (user, read + execute): the programs of `programs`.
//! * The edge page, the last page of user space ([`EDGE_VA`]): a `syscall` in its last two
//!   bytes, whose return address is `USER_END`, the lower half's last page, which is never
//!   mapped (before 2026-12-04 it was the first non-canonical address), after a
//!   `mov eax, 520` (`ipc_call`, entered at [`EDGE_IPC_ENTRY`]: the IPC entry's exit).
//! * [`SLOTS`] slots, each a thread's stack and data, [`SLOT_SPAN`] apart from
//!   `SLOTS_VA`: `+0` guard (never mapped), `+0x1000` stack ([`STACK_PAGES`] pages, user
//!   read + write, no execute), a gap, `+0x4000` data ([`DATA_PAGES`] pages), then unmapped.
//!
//! Pages are mapped once (a slot at its first claim) and never unmapped: no TLB shoot-down
//! is ever needed. The kernel reads and writes the data pages through the direct map
//! (`AddressSpace::read`/`write`), so it needs no CR3 of its own for that.

use super::aspace::{AddressSpace, VmError};
use super::programs::{self, Program};
use crate::mm::space::Space;
use crate::sched::Builder;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::usercopy::{USER_BASE, USER_END};

const PAGE: u64 = 4096;
/// The code page.
pub const CODE_VA: u64 = USER_BASE;
/// The last page of user space.
pub const EDGE_VA: u64 = USER_END - PAGE;
/// Where the `syscall` of the edge page sits.
pub const EDGE_ENTRY: u64 = USER_END - 2;
/// Where `mov eax, 520` (`ipc_call`) before that `syscall` sits.
pub const EDGE_IPC_ENTRY: u64 = USER_END - 7;
const SLOTS_VA: u64 = USER_BASE + 0x1000_0000;
/// Distance between slots.
pub const SLOT_SPAN: u64 = 0x1_0000;
/// Slots (threads in ring 3 at once).
pub const SLOTS: usize = 64;
/// Stack pages of a slot.
pub const STACK_PAGES: u64 = 2;
/// Data pages of a slot.
pub const DATA_PAGES: u64 = 2;
const STACK_OFF: u64 = PAGE;
const DATA_OFF: u64 = 4 * PAGE;

static SPACE: spin::Once<Result<AddressSpace, VmError>> = spin::Once::new();
static CLAIMED: AtomicU64 = AtomicU64::new(0);
static MAPPED: AtomicU64 = AtomicU64::new(0);

/// Creates the space and maps the code and edge pages (once).
pub fn init() -> Result<(), String> {
    as_space().map(|_| ())
}

fn as_space() -> Result<&'static AddressSpace, String> {
    let r = SPACE.call_once(|| {
        let a = AddressSpace::new()?;
        let blob = programs::blob();
        a.map(Some(CODE_VA), PAGE, false, true)?;
        a.write(CODE_VA, blob)?;
        let mut edge = [0xCCu8; PAGE as usize];
        edge[PAGE as usize - 7..].copy_from_slice(&[0xB8, 0x08, 0x02, 0x00, 0x00, 0x0F, 0x05]);
        a.map(Some(EDGE_VA), PAGE, false, true)?;
        a.write(EDGE_VA, &edge)?;
        Ok(a)
    });
    r.as_ref().map_err(|e| format!("user test pages: {e}"))
}

/// The test bed's address space (created on first use).
pub fn space() -> Result<&'static Space, String> {
    as_space().map(AddressSpace::space)
}

/// A thread builder for the test bed's space.
pub fn builder() -> Result<Builder, String> {
    Ok(Builder::new().space(space()?))
}

/// Moves the calling thread into the test bed's space (the user copies then reach its
/// pages).
pub fn enter() -> Result<(), String> {
    crate::sched::set_current_space(space()?);
    Ok(())
}

/// The user address of `p`'s entry point.
pub fn entry(p: Program) -> u64 {
    CODE_VA + programs::offset(p)
}

/// One claimed slot (released when dropped; `core::mem::forget` it if a thread may still
/// use it).
#[derive(Debug)]
pub struct Slot {
    idx: usize,
}

impl Slot {
    /// Claims a free slot, mapping its pages at first use, with its data pages zeroed.
    pub fn claim() -> Result<Slot, String> {
        init()?;
        let idx = loop {
            let cur = CLAIMED.load(Ordering::Acquire);
            if cur == u64::MAX {
                return Err("all user test slots are in use".into());
            }
            let i = (!cur).trailing_zeros() as usize;
            if CLAIMED
                .compare_exchange(cur, cur | 1 << i, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break i;
            }
        };
        let s = Slot { idx };
        let a = as_space()?;
        if MAPPED.load(Ordering::Acquire) & (1 << idx) == 0 {
            a.map(Some(s.base() + STACK_OFF), STACK_PAGES * PAGE, true, false)
                .map_err(|e| format!("user stack pages: {e}"))?;
            a.map(Some(s.data()), DATA_PAGES * PAGE, true, false)
                .map_err(|e| format!("user data pages: {e}"))?;
            MAPPED.fetch_or(1 << idx, Ordering::AcqRel);
        }
        let zero = [0u8; (DATA_PAGES * PAGE) as usize];
        a.write(s.data(), &zero)
            .map_err(|e| format!("user data pages: {e}"))?;
        Ok(s)
    }

    fn base(&self) -> u64 {
        SLOTS_VA + self.idx as u64 * SLOT_SPAN
    }
    /// The never-mapped page below the stack.
    pub fn guard(&self) -> u64 {
        self.base()
    }
    /// The initial stack pointer (16-aligned).
    pub fn stack_top(&self) -> u64 {
        self.base() + STACK_OFF + STACK_PAGES * PAGE
    }
    /// The first data page.
    pub fn data(&self) -> u64 {
        self.base() + DATA_OFF
    }
    /// One past the data pages (unmapped from there).
    pub fn data_end(&self) -> u64 {
        self.data() + DATA_PAGES * PAGE
    }
    /// Writes the u64 at data offset `off` (8-aligned), in one access: the slot's thread may
    /// be running (until 2026-12-07 a byte copy, which a word the thread wrote meanwhile
    /// could tear).
    pub fn put(&self, off: u64, v: u64) -> Result<(), String> {
        as_space()?
            .write_word(self.data() + off, v)
            .map_err(|e| format!("user data write at +{off:#x}: {e}"))
    }
    /// Reads the u64 at data offset `off` (8-aligned), in one access.
    pub fn get(&self, off: u64) -> Result<u64, String> {
        as_space()?
            .read_word(self.data() + off)
            .map_err(|e| format!("user data read at +{off:#x}: {e}"))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        CLAIMED.fetch_and(!(1 << self.idx), Ordering::AcqRel);
    }
}
