//! Kernel page tables: linear maps of physical memory with per-range permissions (no page is
//! both writable and executable): the direct map and the kernel image window (see
//! [`crate::layout`]), and 4 KiB mappings for guarded stacks elsewhere. Table frames are
//! reached through the direct map, so they must lie in directly mapped memory (the boot
//! tables map the first 4 GiB there).
//!
//! No entry is global (CR4.PGE stays off): the kernel reuses a freed stack slot after a
//! flush of every PCID (INVPCID type 3 or a CR3 reload), which would keep a global entry
//! for the old stack's frame (they carried G, ignored with PGE off, until 2026-12-04).

const P: u64 = 1;
const W: u64 = 1 << 1;
const U: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
/// Software bit (ignored by the MMU): a user leaf without access (`PROT_NONE`). The entry
/// is not present, so every access faults, but the page stays mapped: its frame is still
/// the tables' (freed by unmap or with the space), and `protect` can give access back.
/// The frame is stored inverted, as Linux does since L1TF: a not-present entry's address
/// bits may still be used by a speculative load on affected Intel parts, and inverted they
/// name memory above any the machine has instead of the page's data.
const NONE: u64 = 1 << 9;
/// Software bit (ignored by the MMU): a user leaf mapped without its frame yet, a
/// demand-zero page ([`PageTables::map_user_lazy_4k`]). The entry is not present; its W and
/// NX bits hold the rights the page gets when it is brought in, [`NONE`] says it has no
/// access (then no access bit), and its address bits are all ones (no frame: as for
/// [`NONE`], a speculative load through it on an L1TF-affected part names memory above any
/// the machine has, not physical page 0). The page counts as mapped (`next_mapped`,
/// `unmap_4k`, `protect_user_4k` see it); [`PageTables::fill_lazy_4k`] gives it a frame.
const LAZY: u64 = 1 << 10;
/// A used 4 KiB leaf: present, mapped without access, or mapped without its frame yet.
const USED: u64 = P | NONE | LAZY;

/// Where a user table's entries may be used, kept in software bits 52..=59 of the entry that
/// links it (bits the MMU ignores in an entry that is no leaf): bit `52 + g` set when an entry
/// among `64 g .. 64 g + 64` of the linked table was ever made used (a leaf mapped, a table
/// linked), never cleared while the table stays linked; [`PageTables`] keeps the same for
/// the PML4's lower half, by groups of 4 (`user_slots`).
///
/// Why: freeing a space walked all 512 entries of every table it had; a process's tables are
/// a few, nearly empty (its image low, its stack at the top of the lower half: 9 tables and
/// about 20,000 instructions at each process end, icount, 2026-12-06), and the walk now reads
/// the groups marked, 64 entries each. Cheaper to keep than exact ranges or counts: a map
/// tests one bit (its leaf's group, in the directory entry it walked through) and writes it
/// only the first time the group is used; a table made marks its own entry's group in the
/// link above (rare); an unmap writes nothing (a stale mark costs a read of 64 empty
/// entries at the end, not a leak). Leaf frames could instead come from the space's list of
/// mappings, but it keeps none (fixed maps go anywhere), and the tables need a walk anyway.
const GROUPS_SHIFT: u64 = 52;

/// The mark of entry `idx`'s group in the entry linking its table.
const fn group_bit(idx: usize) -> u64 {
    1 << (GROUPS_SHIFT + (idx as u64 & 511) / 64)
}

/// The frame a used 4 KiB leaf maps (inverted when it has no access, see [`NONE`]); `None`
/// for a demand-zero leaf that has none yet ([`LAZY`]).
fn leaf_frame(e: u64) -> Option<u64> {
    if e & P != 0 {
        Some(e & ADDR)
    } else if e & LAZY != 0 {
        None
    } else {
        Some(!e & ADDR)
    }
}

/// The rights a used, not-present leaf `e` keeps (a [`LAZY`] or a [`NONE`] one).
fn not_present_rights(e: u64) -> UserFlags {
    if e & NONE != 0 {
        UserFlags::NONE
    } else {
        UserFlags::new(e & W != 0, e & NX == 0)
    }
}

/// Permissions of a mapping. `writable && executable` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Writes allowed.
    pub writable: bool,
    /// Instruction fetch allowed (else NX, when the CPU has NX).
    pub executable: bool,
    /// Uncached (MMIO).
    pub uncached: bool,
}

/// A user mapping's permissions (the lower half only; never global).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFlags {
    /// Any access at all (`false`: `PROT_NONE`, and then neither of the others).
    pub accessible: bool,
    /// Writes allowed.
    pub writable: bool,
    /// Instruction fetch allowed.
    pub executable: bool,
}

impl UserFlags {
    /// Readable, and writable or executable as asked (x86 pages are always readable).
    pub const fn new(writable: bool, executable: bool) -> UserFlags {
        UserFlags {
            accessible: true,
            writable,
            executable,
        }
    }

    /// No access (`PROT_NONE`).
    pub const NONE: UserFlags = UserFlags {
        accessible: false,
        writable: false,
        executable: false,
    };
}

impl Flags {
    /// Read-only data.
    pub const RO: Flags = Flags {
        writable: false,
        executable: false,
        uncached: false,
    };
    /// Read-write data.
    pub const RW: Flags = Flags {
        writable: true,
        executable: false,
        uncached: false,
    };
    /// Code.
    pub const RX: Flags = Flags {
        writable: false,
        executable: true,
        uncached: false,
    };
    /// Device memory.
    pub const MMIO: Flags = Flags {
        writable: true,
        executable: false,
        uncached: true,
    };
}

/// A source of zeroed 4 KiB frames for page tables (physical addresses, directly mapped).
pub trait FrameSource {
    /// A zeroed, 4 KiB-aligned frame, or `None` when memory is exhausted.
    fn alloc_zeroed_frame(&mut self) -> Option<u64>;
}

/// Errors building or changing mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a page table.
    OutOfFrames,
    /// Writable and executable at once.
    WriteExecute(u64),
    /// The address is already mapped (or covered by a huge page).
    AlreadyMapped(u64),
    /// Not 4 KiB aligned or not canonical.
    BadAddress(u64),
    /// A user page under a kernel table entry, or a kernel page under a user one.
    MixedPrivilege(u64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfFrames => write!(f, "out of frames for page tables"),
            MapError::WriteExecute(a) => write!(f, "refused W+X mapping at {a:#x}"),
            MapError::AlreadyMapped(a) => write!(f, "{a:#x} is already mapped"),
            MapError::BadAddress(a) => write!(f, "bad address {a:#x}"),
            MapError::MixedPrivilege(a) => {
                write!(f, "{a:#x}: user and kernel mappings under one table entry")
            }
        }
    }
}

/// How a linear map covers one 2 MiB chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// One 2 MiB page with these permissions.
    Huge(Flags),
    /// 4 KiB pages, each asked for separately (`None` = not mapped, e.g. a guard or page 0).
    Split,
    /// Not mapped.
    Absent,
}

/// A set of page tables rooted at a PML4 (its frames reached through the direct map).
#[derive(Debug)]
pub struct PageTables {
    pml4: u64,
    nx: bool,
    /// Lower-half PML4 entries that may be present: bit `g` covers entries `4 g .. 4 g + 4`
    /// (see [`GROUPS_SHIFT`]); set when a user mapping makes one, cleared by
    /// [`PageTables::detach_user_half`].
    user_slots: u64,
}

fn entry_bits(f: Flags, nx: bool) -> u64 {
    let mut e = P;
    if f.writable {
        e |= W;
    }
    if !f.executable && nx {
        e |= NX;
    }
    if f.uncached {
        e |= PCD | PWT;
    }
    e
}

fn table(pa: u64) -> *mut u64 {
    crate::layout::phys_to_virt(pa) as *mut u64
}

impl PageTables {
    /// An empty PML4. `nx` says whether EFER.NXE is on (else the NX bit would be reserved).
    pub fn new(fs: &mut impl FrameSource, nx: bool) -> Result<Self, MapError> {
        let pml4 = fs.alloc_zeroed_frame().ok_or(MapError::OutOfFrames)?;
        Ok(PageTables {
            pml4,
            nx,
            user_slots: 0,
        })
    }

    /// Physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// A new PML4 for a user address space: empty lower half, the kernel half shared with
    /// `kernel` (its 256 upper entries copied: the kernel keeps every one of them populated,
    /// see [`PageTables::populate_kernel_half`], so later kernel mappings are seen here too).
    pub fn new_user(fs: &mut impl FrameSource, kernel: &PageTables) -> Result<Self, MapError> {
        let pml4 = fs.alloc_zeroed_frame().ok_or(MapError::OutOfFrames)?;
        for i in 256..512 {
            // SAFETY: both are PML4 frames reached through the direct map; the new one is
            // private to this call, the kernel's upper entries never change once populated.
            unsafe {
                let v = table(kernel.pml4).add(i).read_volatile();
                table(pml4).add(i).write_volatile(v);
            }
        }
        Ok(PageTables {
            pml4,
            nx: kernel.nx,
            user_slots: 0,
        })
    }

    /// Gives every upper-half PML4 entry a (possibly empty) PDPT, so that address spaces
    /// created from these tables share all later kernel mappings.
    pub fn populate_kernel_half(&mut self, fs: &mut impl FrameSource) -> Result<(), MapError> {
        for i in 256..512usize {
            let va = 0xFFFF_0000_0000_0000 | ((i as u64) << 39);
            self.next(fs, self.pml4, i, va, false)?;
        }
        Ok(())
    }

    /// Maps one user page `va -> pa` (`va` in the lower half; present, user, never global).
    pub fn map_user_4k(
        &mut self,
        fs: &mut impl FrameSource,
        va: u64,
        pa: u64,
        f: UserFlags,
    ) -> Result<(), MapError> {
        let e = self.user_entry(va, pa, f)?;
        if va >= crate::layout::USER_END {
            return Err(MapError::BadAddress(va));
        }
        let pt = self.user_page_table(fs, va)?;
        Self::set_leaf(pt, ((va >> 12) & 511) as usize, e, va)
    }

    /// Maps user page `va` without a frame: a demand-zero page ([`LAZY`]) that every access
    /// faults on (not present) until [`PageTables::fill_lazy_4k`] gives it one, then with
    /// rights `f`. The page tables on the way are made as for [`PageTables::map_user_4k`].
    pub fn map_user_lazy_4k(
        &mut self,
        fs: &mut impl FrameSource,
        va: u64,
        f: UserFlags,
    ) -> Result<(), MapError> {
        let e = self.lazy_entry(va, f)?;
        let pt = self.user_page_table(fs, va)?;
        Self::set_leaf(pt, ((va >> 12) & 511) as usize, e, va)
    }

    /// The demand-zero leaf of user page `va` with rights `f` (see [`LAZY`]): the entry
    /// [`PageTables::user_entry`] would make, not present, no frame.
    fn lazy_entry(&self, va: u64, f: UserFlags) -> Result<u64, MapError> {
        Ok((self.user_entry(va, 0, f)? & !(P | ADDR)) | ADDR | LAZY)
    }

    /// The rights of user page `va` if it is a demand-zero page without its frame yet
    /// ([`PageTables::map_user_lazy_4k`]); `None` for any other page, mapped or not.
    pub fn lazy_user_page(&self, va: u64) -> Option<UserFlags> {
        if va >= crate::layout::USER_END {
            return None;
        }
        let e = self.leaf_4k(va)?;
        // SAFETY: `e` points at the used 4 KiB leaf of `va` in this hierarchy's tables.
        let v = unsafe { e.read_volatile() };
        (v & LAZY != 0).then(|| not_present_rights(v))
    }

    /// Gives demand-zero page `va` its frame `pa` (zeroed by the caller): the leaf becomes
    /// present with the rights it kept. Returns false (nothing changed) when `va` is not a
    /// demand-zero page with access. Nothing to invalidate: no CPU caches a translation of a
    /// page that was not present.
    pub fn fill_lazy_4k(&mut self, va: u64, pa: u64) -> bool {
        if va >= crate::layout::USER_END {
            return false;
        }
        let Some(e) = self.leaf_4k(va) else {
            return false;
        };
        // SAFETY: `e` points at the used 4 KiB leaf of `va` in this hierarchy's tables
        // (directly mapped); the caller holds the tables' lock, so no one else writes it.
        unsafe {
            let old = e.read_volatile();
            if old & LAZY == 0 || old & NONE != 0 {
                return false;
            }
            e.write_volatile((pa & ADDR) | (old & (W | NX | U)) | P);
        }
        true
    }

    /// The leaf entry mapping user page `va` to frame `pa` with `f`.
    fn user_entry(&self, va: u64, pa: u64, f: UserFlags) -> Result<u64, MapError> {
        // Every user leaf lies below `USER_END`: checked here for the map and the protect
        // alike (until 2026-12-05 only the map did, and a protect given a kernel address
        // would have rewritten a shared kernel leaf; no caller did; found by review).
        if va >= crate::layout::USER_END {
            return Err(MapError::BadAddress(va));
        }
        let kf = Flags {
            writable: f.writable,
            executable: f.executable,
            uncached: false,
        };
        Self::check(va, kf)?;
        Ok(if f.accessible {
            (pa & ADDR) | entry_bits(kf, self.nx) | U
        } else {
            (!pa & ADDR) | NONE | U
        })
    }

    /// Changes the permissions of the user page at `va` (mapped with or without access);
    /// returns false if it is not mapped.
    pub fn protect_user_4k(&mut self, va: u64, f: UserFlags) -> Result<bool, MapError> {
        self.user_entry(va, 0, f)?;
        let Some(e) = self.leaf_4k(va) else {
            return Ok(false);
        };
        // SAFETY: `e` points at the used 4 KiB leaf of `va` in this hierarchy's tables
        // (directly mapped); the caller invalidates stale translations afterwards.
        unsafe {
            let old = e.read_volatile();
            // A demand-zero page stays one, with the new rights.
            let new = match leaf_frame(old) {
                Some(pa) => self.user_entry(va, pa, f)?,
                None => self.lazy_entry(va, f)?,
            };
            e.write_volatile(new);
        }
        Ok(true)
    }

    /// The frame (`None`: a demand-zero page without one yet) and permissions of user page
    /// `va` if it is mapped, with access or without ([`PageTables::translate`] sees only
    /// pages with access and a frame).
    pub fn user_page(&self, va: u64) -> Option<(Option<u64>, UserFlags)> {
        if va >= crate::layout::USER_END {
            return None;
        }
        let e = self.leaf_4k(va)?;
        // SAFETY: `e` points at the used 4 KiB leaf of `va` in this hierarchy's tables.
        let v = unsafe { e.read_volatile() };
        let f = if v & P == 0 {
            not_present_rights(v)
        } else {
            UserFlags::new(v & W != 0, v & NX == 0)
        };
        Some((leaf_frame(v), f))
    }

    /// The kernel page table (last level) for `va`, with the levels above created as needed.
    fn page_table(&mut self, fs: &mut impl FrameSource, va: u64) -> Result<u64, MapError> {
        let pdpt = self.next(fs, self.pml4, ((va >> 39) & 511) as usize, va, false)?;
        let pd = self.next(fs, pdpt, ((va >> 30) & 511) as usize, va, false)?;
        self.next(fs, pd, ((va >> 21) & 511) as usize, va, false)
    }

    /// [`PageTables::page_table`] for a user `va` (below `USER_END`), keeping the marks of
    /// [`GROUPS_SHIFT`]: a table made here is linked with the group of the entry it is made
    /// for already marked, and marks its own entry's group in the link above it (in
    /// `user_slots` for the PML4); an existing page table's link gets the leaf's group
    /// (the caller is about to use that leaf), the one test the usual map pays (the tables
    /// all there). Written apart from `next` to carry the link down the walk in a register.
    fn user_page_table(&mut self, fs: &mut impl FrameSource, va: u64) -> Result<u64, MapError> {
        let idx = [39u64, 30, 21, 12].map(|s| ((va >> s) & 511) as usize);
        let mut tab = self.pml4;
        let mut link: Option<*mut u64> = None;
        for level in 0..3 {
            let (i, child) = (idx[level], idx[level + 1]);
            // SAFETY: `tab` is a user table of this hierarchy reached from the PML4 through
            // `va`'s entries (directly mapped), and `link` the present entry linking it; the
            // caller has the tables to itself (`&mut self`, the space's lock above).
            unsafe {
                let e = table(tab).add(i);
                let v = e.read_volatile();
                if v & P != 0 {
                    if v & PS != 0 {
                        return Err(MapError::AlreadyMapped(va));
                    }
                    if v & U == 0 {
                        return Err(MapError::MixedPrivilege(va));
                    }
                    if level == 2 && v & group_bit(child) == 0 {
                        e.write_volatile(v | group_bit(child));
                    }
                    tab = v & ADDR;
                } else {
                    let f = fs.alloc_zeroed_frame().ok_or(MapError::OutOfFrames)?;
                    // Intermediate entries are permissive; the leaf decides.
                    e.write_volatile(f | P | W | U | group_bit(child));
                    match link {
                        Some(l) => Self::mark(l, i),
                        None => self.user_slots |= 1 << ((i & 255) / 4),
                    }
                    tab = f;
                }
                link = Some(e);
            }
        }
        Ok(tab)
    }

    /// Marks entry `idx`'s group ([`GROUPS_SHIFT`]) in `link`, if it is not yet. Only
    /// software bits change: no translation depends on them, so there is nothing to
    /// invalidate (an A bit a CPU's walker sets meanwhile may be lost: harmless).
    ///
    /// # Safety
    ///
    /// `link` is a present entry of this hierarchy's tables (directly mapped) that links a
    /// user table, written only under the caller's exclusive access to the tables.
    #[inline(always)]
    unsafe fn mark(link: *mut u64, idx: usize) {
        // SAFETY: the caller's.
        unsafe {
            let v = link.read_volatile();
            if v & group_bit(idx) == 0 {
                link.write_volatile(v | group_bit(idx));
            }
        }
    }

    /// The table reached from the PML4 through `va`'s entries at `shifts` (39 = PML4,
    /// 30 = PDPT, 21 = PD), if every one is present and none maps a huge page.
    fn table_of(&self, va: u64, shifts: &[u64]) -> Option<u64> {
        let mut tab = self.pml4;
        for &shift in shifts {
            // SAFETY: reading entries of this hierarchy's directly mapped table frames.
            let e = unsafe {
                table(tab)
                    .add(((va >> shift) & 511) as usize)
                    .read_volatile()
            };
            if e & P == 0 || e & PS != 0 {
                return None;
            }
            tab = e & ADDR;
        }
        Some(tab)
    }

    /// The first page in `[from, to)` that is mapped (a used 4 KiB leaf, or inside a huge
    /// page), skipping whole absent directories: cost grows with the tables that exist,
    /// not with the length of the range.
    pub fn next_mapped(&self, from: u64, to: u64) -> Option<u64> {
        let mut va = from & !0xFFF;
        'outer: while va < to {
            let mut tab = self.pml4;
            for shift in [39u64, 30, 21] {
                // SAFETY: reading entries of this hierarchy's directly mapped table frames.
                let e = unsafe {
                    table(tab)
                        .add(((va >> shift) & 511) as usize)
                        .read_volatile()
                };
                if e & P == 0 {
                    let size = 1u64 << shift;
                    va = (va & !(size - 1)).checked_add(size)?;
                    continue 'outer;
                }
                if e & PS != 0 {
                    return Some(va);
                }
                tab = e & ADDR;
            }
            let base = va & !0x1F_FFFF;
            for idx in ((va >> 12) & 511)..512 {
                let p = base | (idx << 12);
                if p >= to {
                    return None;
                }
                // SAFETY: `tab` is this hierarchy's page table for `p`.
                if unsafe { table(tab).add(idx as usize).read_volatile() } & USED != 0 {
                    return Some(p);
                }
            }
            va = base.checked_add(0x20_0000)?;
        }
        None
    }

    /// The 4 KiB leaf entry of `va`, if used (no huge page on the way).
    fn leaf_4k(&self, va: u64) -> Option<*mut u64> {
        let tab = self.table_of(va, &[39, 30, 21])?;
        // SAFETY: `tab` is this hierarchy's page table for `va`.
        let e = unsafe { table(tab).add(((va >> 12) & 511) as usize) };
        // SAFETY: as above.
        (unsafe { e.read_volatile() } & USED != 0).then_some(e)
    }

    /// Frees the whole lower half: every mapped user frame goes to `leaf(pa)`, every user
    /// page-table frame to `table_frame(pa)`; the PML4's lower entries are cleared. The
    /// caller makes sure no CPU runs on these tables (or will use translations of them).
    /// Returns the demand-zero pages dropped (mapped, no frame).
    pub fn free_user_half(&mut self, leaf: impl FnMut(u64), table_frame: impl FnMut(u64)) -> u64 {
        self.detach_user_half().free(leaf, table_frame).lazy
    }

    /// Unlinks the whole lower half from the PML4 (its 256 entries cleared) and returns it:
    /// no walk of this hierarchy reaches those tables any more, but CPUs that loaded it may
    /// still cache translations through them until the caller invalidates the lower half on
    /// each of them; then [`DetachedUserHalf::free`] gives their frames. One pass over the
    /// tables that exist, where unmapping the range page by page costs a look for the next
    /// mapped page and an emptiness scan of its table per page.
    /// Only the PML4 entries of the groups `user_slots` marks are read.
    pub fn detach_user_half(&mut self) -> DetachedUserHalf {
        let mut entries = [0u64; 256];
        let slots = core::mem::take(&mut self.user_slots);
        for i in groups(slots, 4) {
            // SAFETY: the PML4 of this hierarchy (directly mapped frame); lower-half entries
            // are user tables, cleared here before any of them is handed out. `i` < 256.
            unsafe {
                let e = table(self.pml4).add(i);
                let v = e.read_volatile();
                if v & P != 0 {
                    entries[i] = v;
                    e.write_volatile(0);
                }
            }
        }
        // Every other lower-half entry is absent: none is made without its mark.
        #[cfg(debug_assertions)]
        for i in 0..256 {
            // SAFETY: as above (reads only).
            let v = unsafe { table(self.pml4).add(i).read_volatile() };
            debug_assert!(v & P == 0, "PML4 entry {i} present but not marked");
        }
        DetachedUserHalf { entries, slots }
    }

    /// The next-level table under entry `idx` of `tab`, created if absent (with U when
    /// `user`; an existing entry must agree: a PML4 slot holds kernel or user mappings).
    /// User maps walk with [`PageTables::user_page_table`] instead.
    fn next(
        &mut self,
        fs: &mut impl FrameSource,
        tab: u64,
        idx: usize,
        va: u64,
        user: bool,
    ) -> Result<u64, MapError> {
        // SAFETY: `tab` is a page-table frame of this hierarchy, directly mapped, and only
        // this builder (single-threaded, before or while the tables are private) writes it.
        unsafe {
            let e = table(tab).add(idx);
            let v = e.read_volatile();
            if v & P != 0 {
                if v & PS != 0 {
                    return Err(MapError::AlreadyMapped(va));
                }
                if (v & U != 0) != user {
                    return Err(MapError::MixedPrivilege(va));
                }
                return Ok(v & ADDR);
            }
            let f = fs.alloc_zeroed_frame().ok_or(MapError::OutOfFrames)?;
            // Intermediate entries are permissive; the leaf decides.
            e.write_volatile(f | P | W | if user { U } else { 0 });
            Ok(f)
        }
    }

    fn set_leaf(tab: u64, idx: usize, value: u64, va: u64) -> Result<(), MapError> {
        // SAFETY: as in `next`.
        unsafe {
            let e = table(tab).add(idx);
            if e.read_volatile() & USED != 0 {
                return Err(MapError::AlreadyMapped(va));
            }
            e.write_volatile(value);
        }
        Ok(())
    }

    fn check(va: u64, f: Flags) -> Result<(), MapError> {
        if f.writable && f.executable {
            return Err(MapError::WriteExecute(va));
        }
        let canonical = ((va as i64) << 16 >> 16) as u64 == va;
        if va & 0xFFF != 0 || !canonical {
            return Err(MapError::BadAddress(va));
        }
        Ok(())
    }

    /// Maps one 4 KiB page `va -> pa`.
    pub fn map_4k(
        &mut self,
        fs: &mut impl FrameSource,
        va: u64,
        pa: u64,
        f: Flags,
    ) -> Result<(), MapError> {
        Self::check(va, f)?;
        let pt = self.page_table(fs, va)?;
        Self::set_leaf(
            pt,
            ((va >> 12) & 511) as usize,
            (pa & ADDR) | entry_bits(f, self.nx),
            va,
        )
    }

    /// Maps one 2 MiB page `va -> pa` (both 2 MiB aligned).
    pub fn map_2m(
        &mut self,
        fs: &mut impl FrameSource,
        va: u64,
        pa: u64,
        f: Flags,
    ) -> Result<(), MapError> {
        Self::check(va, f)?;
        if va & 0x1F_FFFF != 0 || pa & 0x1F_FFFF != 0 {
            return Err(MapError::BadAddress(va));
        }
        let pdpt = self.next(fs, self.pml4, ((va >> 39) & 511) as usize, va, false)?;
        let pd = self.next(fs, pdpt, ((va >> 30) & 511) as usize, va, false)?;
        Self::set_leaf(
            pd,
            ((va >> 21) & 511) as usize,
            (pa & ADDR) | entry_bits(f, self.nx) | PS,
            va,
        )
    }

    /// Maps physical `[start, end)` (2 MiB aligned) at `offset + pa`, chunk by chunk as
    /// `chunk(pa)` and `page(pa)` decide.
    pub fn linear_map(
        &mut self,
        fs: &mut impl FrameSource,
        offset: u64,
        start: u64,
        end: u64,
        chunk: impl Fn(u64) -> Chunk,
        page: impl Fn(u64) -> Option<Flags>,
    ) -> Result<(), MapError> {
        let mut c = start & !0x1F_FFFF;
        while c < end {
            let va = offset.wrapping_add(c);
            match chunk(c) {
                Chunk::Huge(f) => self.map_2m(fs, va, c, f)?,
                Chunk::Split => {
                    for p in (c..c + 0x20_0000).step_by(4096) {
                        if let Some(f) = page(p) {
                            self.map_4k(fs, offset.wrapping_add(p), p, f)?;
                        }
                    }
                }
                Chunk::Absent => {}
            }
            c += 0x20_0000;
        }
        Ok(())
    }

    /// Unmaps the 4 KiB page at `va` (mapped by [`PageTables::map_4k`]) and flushes it from
    /// this CPU's TLB. Returns the frame it mapped (`None`: a demand-zero user page that had
    /// none yet) and, when that emptied its page table, the table's frame too (unlinked from
    /// its directory): both are the caller's to free.
    ///
    /// Other CPUs' TLBs and paging-structure caches are not flushed: the caller either never
    /// maps `va`'s 2 MiB range again (kernel stacks: stale entries then only describe addresses
    /// nobody uses) or invalidates `va` on every CPU before it frees the returned frames and
    /// maps the range again (`user::aspace` does, with a shootdown).
    pub fn unmap_4k(&mut self, va: u64) -> Option<(Option<u64>, Option<u64>)> {
        let pd = self.table_of(va, &[39, 30])?;
        let pd_idx = ((va >> 21) & 511) as usize;
        // SAFETY: `pd` is a page directory of this hierarchy (directly mapped frame).
        let pde = unsafe { table(pd).add(pd_idx).read_volatile() };
        if pde & P == 0 || pde & PS != 0 {
            return None;
        }
        let pt = pde & ADDR;
        // SAFETY: `pt` is a page table of this hierarchy (directly mapped frame); entries are
        // cleared before the TLB flush, so no new translation can be cached from them.
        unsafe {
            let idx = ((va >> 12) & 511) as usize;
            let e = table(pt).add(idx);
            let old = e.read_volatile();
            if old & USED == 0 {
                return None;
            }
            e.write_volatile(0);
            core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags));
            // Looked at from the next entry on, wrapping: a range unmapped in ascending
            // order finds its next page at once, and scans a table whole only at its last
            // page. From entry 0, each page cost a walk over the entries already cleared
            // (about 256 reads a page over a whole table; 2026-12-06).
            let empty = (idx + 1..512)
                .chain(0..idx)
                .all(|k| table(pt).add(k).read_volatile() & USED == 0);
            if empty {
                table(pd).add(pd_idx).write_volatile(0);
                core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags));
            }
            Some((leaf_frame(old), empty.then_some(pt)))
        }
    }

    /// After [`PageTables::unmap_4k`] emptied and unlinked the page table of the user address
    /// `va`, or after a [`PageTables::map_user_4k`] of `va` failed part-way down: unlinks the
    /// page directory of `va` if that is empty now, then the page-directory-pointer table
    /// above it if it is empty (whether or not it still had a directory for `va`: a failed
    /// map may have made only that table), and flushes `va` from this CPU's TLB and
    /// paging-structure caches. Returns their frames (none, one or both), the caller's to
    /// free once `va` is invalidated on every CPU, as for the page table. Without this an
    /// emptied directory stayed until the space went: a process mapping and unmapping one
    /// page per GiB held a page directory per GiB (and one more table per 512 GiB) while it
    /// mapped nothing; and until 2026-12-05 a map refused its page table (out of frames, or
    /// the commit limit) left the directories it had just made for good (found by review).
    /// Kernel-half addresses are left alone: those tables are shared by every address space.
    pub fn prune(&mut self, va: u64) -> [Option<u64>; 2] {
        let mut freed = [None, None];
        if va >= crate::layout::USER_END {
            return freed;
        }
        let Some(pdpt) = self.table_of(va, &[39]) else {
            return freed;
        };
        let empty = |t: u64| {
            // SAFETY: `t` is a table of this hierarchy (directly mapped frame).
            (0..512).all(|k| unsafe { table(t).add(k).read_volatile() } & P == 0)
        };
        let pdpt_idx = ((va >> 30) & 511) as usize;
        // SAFETY: `pdpt` is a page-directory-pointer table of this hierarchy (directly mapped
        // frame); an entry is cleared before the flush, so nothing new is cached from it.
        unsafe {
            let pdpte = table(pdpt).add(pdpt_idx).read_volatile();
            if pdpte & P != 0 {
                if pdpte & PS != 0 || !empty(pdpte & ADDR) {
                    return freed;
                }
                table(pdpt).add(pdpt_idx).write_volatile(0);
                freed[0] = Some(pdpte & ADDR);
            }
            if empty(pdpt) {
                table(self.pml4)
                    .add(((va >> 39) & 511) as usize)
                    .write_volatile(0);
                freed[1] = Some(pdpt);
            }
            if freed != [None, None] {
                core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags));
            }
        }
        freed
    }

    /// Walks the tables for `va`: the physical address and whether it is writable/executable
    /// (`None`: not mapped, or mapped without access).
    pub fn translate(&self, va: u64) -> Option<(u64, Flags)> {
        let mut tab = self.pml4;
        for (level, shift) in [(4, 39u64), (3, 30), (2, 21), (1, 12)] {
            // SAFETY: reading entries of this hierarchy's directly mapped table frames.
            let e = unsafe {
                table(tab)
                    .add(((va >> shift) & 511) as usize)
                    .read_volatile()
            };
            if e & P == 0 {
                return None;
            }
            let leaf = level == 1 || (e & PS != 0 && level <= 3);
            if leaf {
                let mask = (1u64 << shift) - 1;
                let pa = (e & ADDR & !mask) | (va & mask);
                let f = Flags {
                    writable: e & W != 0,
                    executable: e & NX == 0,
                    uncached: e & PCD != 0,
                };
                return Some((pa, f));
            }
            tab = e & ADDR;
        }
        None
    }
}

/// The indices of the groups of `size` entries that `marks` has set, in order (bit `g`:
/// entries `size * g .. size * (g + 1)`).
fn groups(marks: u64, size: usize) -> impl Iterator<Item = usize> {
    let mut m = marks;
    core::iter::from_fn(move || {
        let g = m.trailing_zeros() as usize;
        m &= m.wrapping_sub(1);
        (g < 64).then_some(g * size..(g + 1) * size)
    })
    .flatten()
}

/// The lower half of an address space, unlinked from its PML4 by
/// [`PageTables::detach_user_half`]: its tables' frames, until [`DetachedUserHalf::free`]
/// (dropped unfreed, they are lost).
#[must_use = "the detached tables' frames are given back only by `free`"]
#[derive(Debug)]
pub struct DetachedUserHalf {
    entries: [u64; 256],
    /// Groups of 4 of `entries` that may be present (`PageTables::user_slots`).
    slots: u64,
}

/// What [`DetachedUserHalf::free`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    /// Table entries read (the marked groups: a test bounds them).
    pub read: u64,
    /// Demand-zero pages dropped: mapped (and charged by their owner), without a frame.
    pub lazy: u64,
}

impl DetachedUserHalf {
    /// Every mapped user frame to `leaf(pa)`, every page-table frame to `table_frame(pa)`
    /// (a table's own frame after its entries). The caller has invalidated the lower half
    /// on every CPU that loaded the tables, so nothing walks them any more. Each table is
    /// read in the groups of 64 entries its link marks ([`GROUPS_SHIFT`]). Returns how many
    /// entries that read and the demand-zero pages it dropped ([`Freed`]).
    pub fn free(self, mut leaf: impl FnMut(u64), mut table_frame: impl FnMut(u64)) -> Freed {
        let mut lazy = 0;
        let mut leaf = |e: Option<u64>| match e {
            Some(pa) => leaf(pa),
            None => lazy += 1,
        };
        /// Frees table `tab` (a level `level` table, 3 = PDPT) whose link is `link`.
        fn walk(
            link: u64,
            level: u32,
            leaf: &mut impl FnMut(Option<u64>),
            tf: &mut impl FnMut(u64),
        ) -> u64 {
            let tab = link & ADDR;
            let marks = (link >> GROUPS_SHIFT) & 0xFF;
            let mut read = 0;
            for i in groups(marks, 64) {
                // SAFETY: a user table frame of a detached hierarchy (directly mapped),
                // private to its owner: no PML4 links it and no CPU caches a walk through
                // it. `i` < 512.
                let e = unsafe { table(tab).add(i).read_volatile() };
                read += 1;
                if level == 1 {
                    if e & USED != 0 {
                        leaf(leaf_frame(e));
                    }
                } else if e & P != 0 {
                    read += walk(e, level - 1, leaf, tf);
                }
            }
            // Every entry outside the marked groups is unused: none is made without its
            // mark (debug builds check the whole table).
            #[cfg(debug_assertions)]
            for i in (0..512).filter(|i| marks & (1 << (i / 64)) == 0) {
                let used = if level == 1 { USED } else { P };
                // SAFETY: as above (reads only).
                let e = unsafe { table(tab).add(i).read_volatile() };
                debug_assert!(
                    e & used == 0,
                    "level {level} table {tab:#x}: entry {i} used but not marked"
                );
            }
            tf(tab);
            read
        }
        let mut read = 0;
        for i in groups(self.slots, 4) {
            let e = self.entries[i];
            if e & P != 0 {
                read += walk(e, 3, &mut leaf, &mut table_frame);
            }
        }
        Freed { read, lazy }
    }
}
