//! Kernel page tables: an identity map of physical memory with per-range permissions (no
//! page is both writable and executable) and 4 KiB mappings for guarded stacks elsewhere,
//! plus user pages ([`PageTables::map_user_4k`]: U at every level, never global). A PML4
//! slot holds kernel mappings or user mappings, never both.
//! Tables are reached through the identity map, so table frames must lie in mapped memory.

const P: u64 = 1;
const W: u64 = 1 << 1;
const U: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

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

/// A source of zeroed 4 KiB frames for page tables (identity-mapped physical addresses).
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

/// How the identity map covers one 2 MiB chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// One 2 MiB page with these permissions.
    Huge(Flags),
    /// 4 KiB pages, each asked for separately (`None` = not mapped, e.g. a guard or page 0).
    Split,
    /// Not mapped.
    Absent,
}

/// A set of page tables rooted at a PML4 (physical = virtual address).
#[derive(Debug)]
pub struct PageTables {
    pml4: u64,
    nx: bool,
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
    pa as *mut u64
}

impl PageTables {
    /// An empty PML4. `nx` says whether EFER.NXE is on (else the NX bit would be reserved).
    pub fn new(fs: &mut impl FrameSource, nx: bool) -> Result<Self, MapError> {
        let pml4 = fs.alloc_zeroed_frame().ok_or(MapError::OutOfFrames)?;
        Ok(PageTables { pml4, nx })
    }

    /// Physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// The next-level table under entry `idx` of `tab`, created if absent (with U when
    /// `user`; an existing entry must agree).
    fn next(
        &mut self,
        fs: &mut impl FrameSource,
        tab: u64,
        idx: usize,
        va: u64,
        user: bool,
    ) -> Result<u64, MapError> {
        // SAFETY: `tab` is a page-table frame of this hierarchy, identity-mapped, and only
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
            if e.read_volatile() & P != 0 {
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
        let pdpt = self.next(fs, self.pml4, ((va >> 39) & 511) as usize, va, false)?;
        let pd = self.next(fs, pdpt, ((va >> 30) & 511) as usize, va, false)?;
        let pt = self.next(fs, pd, ((va >> 21) & 511) as usize, va, false)?;
        Self::set_leaf(
            pt,
            ((va >> 12) & 511) as usize,
            (pa & ADDR) | entry_bits(f, self.nx) | G,
            va,
        )
    }

    /// Maps one 4 KiB user page `va -> pa`: U at every level, not global. `va` must lie in
    /// a PML4 slot without kernel mappings (else `MixedPrivilege`); a new mapping needs no
    /// TLB flush (absent entries are never cached).
    pub fn map_user_4k(
        &mut self,
        fs: &mut impl FrameSource,
        va: u64,
        pa: u64,
        f: Flags,
    ) -> Result<(), MapError> {
        Self::check(va, f)?;
        if va >> 47 != 0 {
            return Err(MapError::BadAddress(va));
        }
        let pdpt = self.next(fs, self.pml4, ((va >> 39) & 511) as usize, va, true)?;
        let pd = self.next(fs, pdpt, ((va >> 30) & 511) as usize, va, true)?;
        let pt = self.next(fs, pd, ((va >> 21) & 511) as usize, va, true)?;
        Self::set_leaf(
            pt,
            ((va >> 12) & 511) as usize,
            (pa & ADDR) | entry_bits(f, self.nx) | U,
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
            (pa & ADDR) | entry_bits(f, self.nx) | PS | G,
            va,
        )
    }

    /// Identity-maps `[0, limit)` chunk by chunk as `chunk` and `page` decide.
    pub fn identity_map(
        &mut self,
        fs: &mut impl FrameSource,
        limit: u64,
        chunk: impl Fn(u64) -> Chunk,
        page: impl Fn(u64) -> Option<Flags>,
    ) -> Result<(), MapError> {
        let mut c = 0u64;
        while c < limit {
            match chunk(c) {
                Chunk::Huge(f) => self.map_2m(fs, c, c, f)?,
                Chunk::Split => {
                    for p in (c..c + 0x20_0000).step_by(4096) {
                        if let Some(f) = page(p) {
                            self.map_4k(fs, p, p, f)?;
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
    /// this CPU's TLB. Returns the frame it mapped and, when that emptied its page table, the
    /// table's frame too (unlinked from its directory): both are the caller's to free.
    ///
    /// Other CPUs' TLBs and paging-structure caches are not flushed, so the caller must never
    /// map `va`'s 2 MiB range again (stale entries then only describe addresses nobody uses).
    pub fn unmap_4k(&mut self, va: u64) -> Option<(u64, Option<u64>)> {
        let mut tab = self.pml4;
        for shift in [39u64, 30] {
            // SAFETY: reading entries of this hierarchy's identity-mapped table frames.
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
        let pd = tab;
        let pd_idx = ((va >> 21) & 511) as usize;
        // SAFETY: `pd` is a page directory of this hierarchy (identity-mapped frame).
        let pde = unsafe { table(pd).add(pd_idx).read_volatile() };
        if pde & P == 0 || pde & PS != 0 {
            return None;
        }
        let pt = pde & ADDR;
        // SAFETY: `pt` is a page table of this hierarchy (identity-mapped frame); entries are
        // cleared before the TLB flush, so no new translation can be cached from them.
        unsafe {
            let e = table(pt).add(((va >> 12) & 511) as usize);
            let old = e.read_volatile();
            if old & P == 0 {
                return None;
            }
            e.write_volatile(0);
            core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags));
            let empty = (0..512).all(|k| table(pt).add(k).read_volatile() & P == 0);
            if empty {
                table(pd).add(pd_idx).write_volatile(0);
                core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags));
            }
            Some((old & ADDR, empty.then_some(pt)))
        }
    }

    /// Walks the tables for `va`: the physical address and whether it is writable/executable.
    pub fn translate(&self, va: u64) -> Option<(u64, Flags)> {
        let mut tab = self.pml4;
        for (level, shift) in [(4, 39u64), (3, 30), (2, 21), (1, 12)] {
            // SAFETY: reading entries of this hierarchy's identity-mapped table frames.
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
