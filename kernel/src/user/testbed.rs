//! The ring-3 test bed, while processes have no address spaces of their own: user pages in
//! the kernel's own tables, in PML4 slots the kernel does not use (slot 1 and, for one page,
//! slot 255), shared by every CPU.
//!
//! * The code page at [`CODE_VA`] (user, read + execute): the programs of `programs`.
//! * The edge page, the last page of user space ([`EDGE_VA`]): a `syscall` in its last two
//!   bytes, whose return address is the first non-canonical address.
//! * [`SLOTS`] slots, each a thread's stack and data, [`SLOT_SPAN`] apart from
//!   `SLOTS_VA`: `+0` guard (never mapped), `+0x1000` stack ([`STACK_PAGES`] pages, user
//!   read + write, no execute), a gap, `+0x4000` data ([`DATA_PAGES`] pages), then unmapped.
//!
//! Pages are mapped once (a slot at its first claim) and never unmapped: no TLB shoot-down
//! is ever needed. The kernel reads and writes the data pages with the user copies.

use super::programs::{self, Program};
use crate::mm::memory::{self, MemError};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use exo_arch::paging::Flags;
use exo_arch::usercopy::{self, USER_BASE, USER_END};

const PAGE: u64 = 4096;
/// The code page.
pub const CODE_VA: u64 = USER_BASE;
/// The last page of user space.
pub const EDGE_VA: u64 = USER_END - PAGE;
/// Where the `syscall` of the edge page sits.
pub const EDGE_ENTRY: u64 = USER_END - 2;
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

static READY: spin::Once<Result<(), MemError>> = spin::Once::new();
static CLAIMED: AtomicU64 = AtomicU64::new(0);
static MAPPED: AtomicU64 = AtomicU64::new(0);

/// Maps the code and edge pages (once).
pub fn init() -> Result<(), String> {
    let r = READY.call_once(|| {
        let blob = programs::blob();
        memory::map_user_page(CODE_VA, Flags::RX, blob)?;
        let mut edge = [0xCCu8; PAGE as usize];
        edge[PAGE as usize - 2..].copy_from_slice(&[0x0F, 0x05]);
        memory::map_user_page(EDGE_VA, Flags::RX, &edge)?;
        Ok(())
    });
    r.map_err(|e| format!("user test pages: {e}"))
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
        if MAPPED.load(Ordering::Acquire) & (1 << idx) == 0 {
            for p in 0..STACK_PAGES {
                memory::map_user_page(s.base() + STACK_OFF + p * PAGE, Flags::RW, &[])
                    .map_err(|e| format!("user stack page: {e}"))?;
            }
            for p in 0..DATA_PAGES {
                memory::map_user_page(s.data() + p * PAGE, Flags::RW, &[])
                    .map_err(|e| format!("user data page: {e}"))?;
            }
            MAPPED.fetch_or(1 << idx, Ordering::AcqRel);
        }
        let zero = [0u8; 512];
        for k in 0..(DATA_PAGES * PAGE) / 512 {
            usercopy::copy_to_user(s.data() + k * 512, &zero)
                .map_err(|_| String::from("user data page not writable"))?;
        }
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
    /// Writes the u64 at data offset `off`.
    pub fn put(&self, off: u64, v: u64) -> Result<(), String> {
        usercopy::write_user_u64(self.data() + off, v)
            .map_err(|_| format!("user data write at +{off:#x} faulted"))
    }
    /// Reads the u64 at data offset `off`.
    pub fn get(&self, off: u64) -> Result<u64, String> {
        usercopy::read_user_u64(self.data() + off)
            .map_err(|_| format!("user data read at +{off:#x} faulted"))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        CLAIMED.fetch_and(!(1 << self.idx), Ordering::AcqRel);
    }
}
