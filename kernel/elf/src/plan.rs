//! The load plan ([`LoadPlan`]) and its construction ([`plan`]).

use core::ops::Range;

use crate::ElfError;
use crate::raw::*;
use crate::reloc::{RelaTable, Relocations, parse_dynamic};

/// Page size of the user address space (4 KiB).
pub const PAGE_SIZE: u64 = 4096;

/// End (exclusive) of the lower half of the x86-64 address space: every user address is
/// below it.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Most non-empty `PT_LOAD` segments a plan can hold (a plan is a fixed-size value; real
/// static executables have 2 to 5).
pub const MAX_LOAD_SEGMENTS: usize = 16;

/// What the caller allows. See [`LoadOptions::DEFAULT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Lowest user address a segment may occupy (inclusive). Raised to at least
    /// [`PAGE_SIZE`] (page 0 is never mapped) and rounded up to a page boundary.
    pub user_start: u64,
    /// End of the user range (exclusive). Lowered to at most [`USER_END`] and rounded down
    /// to a page boundary.
    pub user_end: u64,
    /// Most non-empty `PT_LOAD` segments accepted (capped at [`MAX_LOAD_SEGMENTS`]).
    pub max_segments: usize,
    /// Most bytes the segments may occupy, counted in whole pages (a page shared by two
    /// segments counts once). Also caps the TLS block's `p_memsz`.
    pub max_total_memsz: u64,
    /// Load bias for a position-independent executable (`ET_DYN`): every address in the
    /// file is moved up by this amount. Must be a multiple of [`PAGE_SIZE`], and of the
    /// `p_align` of every non-empty `PT_LOAD` segment. Ignored for `ET_EXEC`, which loads
    /// at its link addresses.
    pub pie_bias: u64,
}

impl LoadOptions {
    /// `0x1000..0x0000_7fff_ffff_f000`, 16 segments, 1 GiB, PIE bias 4 MiB
    /// (`0x40_0000`, where `ET_EXEC` programs are usually linked).
    pub const DEFAULT: Self = Self {
        user_start: PAGE_SIZE,
        user_end: 0x0000_7fff_ffff_f000,
        max_segments: MAX_LOAD_SEGMENTS,
        max_total_memsz: 1 << 30,
        pie_bias: 0x40_0000,
    };

    /// What the Exo-OS kernel loads (`kernel/src/user/loader.rs` plans every `spawn` with
    /// these; the initrd's tests check its programs against them):
    /// `0x1_0000..0x7fff_fffa_f000` (the first 64 KiB are never mapped; the end leaves room
    /// for the 256 KiB stack below `0x7fff_ffff_0000` and the unmapped guard page under it),
    /// 16 segments, 256 MiB of pages, PIE bias 4 MiB. A file outside these limits is
    /// refused before anything is mapped (`spawn` returns `ENOEXEC`, docs/syscalls.md).
    pub const EXO_KERNEL: Self = Self {
        user_start: 0x1_0000,
        user_end: 0x7fff_fffa_f000,
        max_segments: MAX_LOAD_SEGMENTS,
        max_total_memsz: 256 << 20,
        pie_bias: 0x40_0000,
    };
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How the file is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfKind {
    /// `ET_EXEC`: loaded at its link addresses (bias 0).
    Executable,
    /// `ET_DYN` without interpreter (static PIE): loaded at [`LoadOptions::pie_bias`].
    StaticPie,
}

/// Access rights of a segment, from its `p_flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Perms {
    /// `PF_R`.
    pub read: bool,
    /// `PF_W`.
    pub write: bool,
    /// `PF_X`.
    pub execute: bool,
}

impl Perms {
    /// The rights in `p_flags` (other bits are ignored).
    pub const fn from_flags(p_flags: u32) -> Self {
        Self {
            read: p_flags & PF_R != 0,
            write: p_flags & PF_W != 0,
            execute: p_flags & PF_X != 0,
        }
    }
}

/// One loadable segment, after the bias.
///
/// To load it: map fresh **zeroed** pages over [`pages`](Self::pages) with
/// [`perms`](Self::perms) (if [`shares_first_page`](Self::shares_first_page), the first page
/// is already mapped by the previous segment, with the same permissions), then copy
/// `file[file_range()]` to [`vaddr`](Self::vaddr). The rest — the end of the last file
/// page, the `.bss` ([`bss`](Self::bss)) — is already zero. Copy exactly the file range, not
/// whole file pages: the bytes around it in the file belong to other segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First byte of the segment (not necessarily page-aligned).
    pub vaddr: u64,
    /// Bytes in memory (`p_memsz`, > 0).
    pub memsz: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: usize,
    /// Number of bytes copied from the file (`p_filesz` <= `memsz`); the rest is zero.
    pub filesz: usize,
    /// Access rights; never both `write` and `execute`.
    pub perms: Perms,
    /// The segment's first page is the previous segment's last page (same permissions).
    pub shares_first_page: bool,
}

impl Segment {
    /// End of the segment's bytes (exclusive): `vaddr + memsz`.
    ///
    /// (These helpers saturate instead of overflowing, for a `Segment` built by hand; those
    /// of a plan never come near the limits.)
    pub const fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }

    /// The pages the segment touches: `vaddr` rounded down to `end()` rounded up.
    pub const fn pages(&self) -> Range<u64> {
        page_down(self.vaddr)..page_down(self.end().saturating_add(PAGE_SIZE - 1))
    }

    /// The bytes to copy from the file.
    pub const fn file_range(&self) -> Range<usize> {
        self.file_offset..self.file_offset.saturating_add(self.filesz)
    }

    /// The zero-filled tail (`vaddr + filesz .. vaddr + memsz`), empty if none.
    pub const fn bss(&self) -> Range<u64> {
        self.vaddr.saturating_add(self.filesz as u64)..self.end()
    }
}

/// The thread-local storage template (`PT_TLS`), after the bias. The runtime builds each
/// thread's block from it: `filesz` bytes of initial data, then zeros up to `memsz`, with
/// alignment `align`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tls {
    /// Address of the initial data once loaded (inside a loaded segment's file bytes).
    pub vaddr: u64,
    /// Offset of the initial data in the file.
    pub file_offset: usize,
    /// Bytes of initial data (`.tdata`).
    pub filesz: usize,
    /// Size of the whole block (`.tdata` + `.tbss`).
    pub memsz: u64,
    /// Alignment (`p_align`; a power of two, or 0/1 for none).
    pub align: u64,
}

/// Everything needed to load a static executable, computed without touching memory.
///
/// Invariants (checked by [`plan`], relied on by the kernel):
/// - at least one segment; segments in ascending address order, their bytes disjoint;
/// - every segment's pages lie inside the (adjusted) user range of the [`LoadOptions`];
/// - no segment is both writable and executable; a page shared by two neighbouring
///   segments has the same permissions in both;
/// - every file range lies inside the file; `filesz <= memsz`;
/// - the entry point lies in the file-backed bytes of an executable segment;
/// - each relocation writes 8 bytes inside a writable segment.
#[derive(Clone, Copy)]
pub struct LoadPlan<'a> {
    pub(crate) file: &'a [u8],
    pub(crate) kind: ElfKind,
    pub(crate) bias: u64,
    pub(crate) entry: u64,
    pub(crate) segments: [Segment; MAX_LOAD_SEGMENTS],
    pub(crate) count: usize,
    pub(crate) mapped: u64,
    pub(crate) tls: Option<Tls>,
    pub(crate) stack: Option<Perms>,
    pub(crate) phdr: Option<u64>,
    pub(crate) phnum: u16,
    pub(crate) relocs: [RelaTable; 2],
}

impl<'a> LoadPlan<'a> {
    /// The file the plan was made from (segment and TLS offsets index into it).
    pub const fn file(&self) -> &'a [u8] {
        self.file
    }

    /// `ET_EXEC` or static PIE.
    pub const fn kind(&self) -> ElfKind {
        self.kind
    }

    /// The bias added to every address in the file (0 for `ET_EXEC`).
    pub const fn bias(&self) -> u64 {
        self.bias
    }

    /// Where to start the program (after the bias).
    pub const fn entry(&self) -> u64 {
        self.entry
    }

    /// The loadable segments, in ascending address order.
    pub fn segments(&self) -> &[Segment] {
        self.segments.get(..self.count).unwrap_or(&[])
    }

    /// The bytes of `segment`'s file range (empty if `segment` is not from this plan and
    /// its range does not fit the file).
    pub fn file_bytes(&self, segment: &Segment) -> &'a [u8] {
        self.file.get(segment.file_range()).unwrap_or(&[])
    }

    /// Bytes of memory the segments occupy, in whole pages (shared pages counted once).
    pub const fn mapped_bytes(&self) -> u64 {
        self.mapped
    }

    /// From the first page of the first segment to the end of the last page of the last
    /// one (there may be unmapped holes between segments).
    pub fn image_range(&self) -> Range<u64> {
        let segs = self.segments();
        match (segs.first(), segs.last()) {
            (Some(first), Some(last)) => first.pages().start..last.pages().end,
            _ => 0..0,
        }
    }

    /// The `PT_TLS` template, if the program has thread-local variables.
    pub const fn tls(&self) -> Option<Tls> {
        self.tls
    }

    /// The permissions `PT_GNU_STACK` asks for the stack (never executable: that is
    /// rejected), or `None` if the file has no `PT_GNU_STACK` (the kernel decides; a
    /// non-executable stack is the safe choice).
    pub const fn stack(&self) -> Option<Perms> {
        self.stack
    }

    /// Where the program header table is visible once loaded (for the `AT_PHDR` auxiliary
    /// vector entry): the address of file offset `e_phoff` if a segment's file bytes cover
    /// the whole table, else `None`.
    pub const fn phdr_vaddr(&self) -> Option<u64> {
        self.phdr
    }

    /// Number of program headers (`AT_PHNUM`); each is 56 bytes (`AT_PHENT`).
    pub const fn phnum(&self) -> u16 {
        self.phnum
    }

    /// Number of relocations to apply (`R_X86_64_NONE` entries are not counted).
    pub fn relocation_count(&self) -> usize {
        self.relocations().count()
    }

    /// The relocations to apply after the segments are loaded: for each, write
    /// [`Relocation::value`](crate::Relocation::value) as a little-endian `u64` at
    /// [`Relocation::vaddr`](crate::Relocation::vaddr) (before making the pages read-only).
    /// Empty for files without `PT_DYNAMIC` relocations.
    pub fn relocations(&self) -> Relocations<'a> {
        Relocations::new(self.file, self.relocs, self.bias)
    }
}

impl core::fmt::Debug for LoadPlan<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoadPlan")
            .field("kind", &self.kind)
            .field("bias", &format_args!("{:#x}", self.bias))
            .field("entry", &format_args!("{:#x}", self.entry))
            .field("segments", &self.segments())
            .field("tls", &self.tls)
            .field("stack", &self.stack)
            .field("phdr", &self.phdr)
            .field("relocations", &self.relocs)
            .finish_non_exhaustive()
    }
}

pub(crate) const fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE_SIZE - 1).map(page_down)
}

/// `0`, `1` or a power of two.
fn valid_align(align: u64) -> bool {
    align <= 1 || align.is_power_of_two()
}

/// `offset..offset + len` as a range inside a file of `file_len` bytes.
pub(crate) fn file_range(offset: u64, len: u64, file_len: usize) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= file_len).then_some(start..end)
}

/// Checks `elf` and computes its load plan. See the crate documentation for what is
/// accepted; every rejection is an [`ElfError`].
///
/// Work is linear in the file size: one pass over the program headers, one over the
/// dynamic entries, and one over the relocations (each checked against at most
/// [`MAX_LOAD_SEGMENTS`] segments).
pub fn plan<'a>(elf: &'a [u8], opts: &LoadOptions) -> Result<LoadPlan<'a>, ElfError> {
    let eh = Ehdr::parse(elf).ok_or(ElfError::TooShort { len: elf.len() })?;
    check_ident(&eh)?;
    let kind = match eh.e_type {
        ET_EXEC => ElfKind::Executable,
        ET_DYN => ElfKind::StaticPie,
        t => return Err(ElfError::BadType(t)),
    };
    if eh.machine != EM_X86_64 {
        return Err(ElfError::BadMachine(eh.machine));
    }
    if eh.version != 1 {
        return Err(ElfError::BadVersion(eh.version));
    }
    if usize::from(eh.ehsize) != EHDR_LEN {
        return Err(ElfError::BadHeaderSize(eh.ehsize));
    }
    if usize::from(eh.phentsize) != PHDR_LEN {
        return Err(ElfError::BadProgramHeaderSize(eh.phentsize));
    }
    if eh.phnum == PN_XNUM {
        return Err(ElfError::ExtendedNumbering);
    }
    let table_len = (PHDR_LEN * usize::from(eh.phnum)) as u64; // <= 56 * 0xfffe
    let phdrs =
        file_range(eh.phoff, table_len, elf.len()).ok_or(ElfError::ProgramHeadersOutOfFile {
            phoff: eh.phoff,
            phnum: eh.phnum,
        })?;
    let bias = match kind {
        ElfKind::Executable => 0,
        ElfKind::StaticPie => opts.pie_bias,
    };
    if !bias.is_multiple_of(PAGE_SIZE) {
        return Err(ElfError::BadBias { bias });
    }
    let user_start = page_up(opts.user_start.max(PAGE_SIZE)).unwrap_or(u64::MAX);
    let user_end = page_down(opts.user_end.min(USER_END));
    let max_segments = opts.max_segments.min(MAX_LOAD_SEGMENTS);

    let mut p = LoadPlan {
        file: elf,
        kind,
        bias,
        entry: 0,
        segments: [Segment {
            vaddr: 0,
            memsz: 0,
            file_offset: 0,
            filesz: 0,
            perms: Perms::default(),
            shares_first_page: false,
        }; MAX_LOAD_SEGMENTS],
        count: 0,
        mapped: 0,
        tls: None,
        stack: None,
        phdr: None,
        phnum: eh.phnum,
        relocs: [RelaTable::EMPTY; 2],
    };
    let mut dynamic: Option<Phdr> = None;
    let mut tls: Option<Phdr> = None;

    for index in 0..usize::from(eh.phnum) {
        let off = phdrs.start + index * PHDR_LEN;
        // In bounds: the whole table was checked above.
        let Some(ph) = Phdr::parse(elf, off) else {
            return Err(ElfError::ProgramHeadersOutOfFile {
                phoff: eh.phoff,
                phnum: eh.phnum,
            });
        };
        match ph.p_type {
            PT_LOAD => add_segment(&mut p, &ph, index, user_start..user_end, max_segments, opts)?,
            PT_INTERP => return Err(ElfError::Interpreter),
            PT_DYNAMIC => once(&mut dynamic, ph)?,
            PT_TLS => once(&mut tls, ph)?,
            PT_GNU_STACK => {
                if p.stack.is_some() {
                    return Err(ElfError::Duplicate { p_type: ph.p_type });
                }
                let perms = Perms::from_flags(ph.flags);
                if perms.execute {
                    return Err(ElfError::ExecutableStack);
                }
                p.stack = Some(perms);
            }
            // PT_NULL, PT_NOTE, PT_PHDR, PT_GNU_RELRO, PT_GNU_EH_FRAME, PT_GNU_PROPERTY, ...
            _ => {}
        }
    }
    if p.count == 0 {
        return Err(ElfError::NoLoadSegments);
    }

    let entry = eh.entry.checked_add(bias);
    let entry_ok = entry.is_some_and(|e| {
        p.segments()
            .iter()
            .any(|s| s.perms.execute && e >= s.vaddr && e - s.vaddr < s.filesz as u64)
    });
    if !entry_ok {
        return Err(ElfError::EntryNotExecutable {
            entry: eh.entry.wrapping_add(bias),
        });
    }
    p.entry = eh.entry.wrapping_add(bias);

    if let Some(ph) = tls {
        p.tls = Some(check_tls(&p, &ph, opts)?);
    }
    p.phdr = loaded_address(&p, phdrs.start as u64, table_len);
    if let Some(ph) = dynamic {
        p.relocs = parse_dynamic(&p, &ph)?;
    }
    Ok(p)
}

fn check_ident(eh: &Ehdr) -> Result<(), ElfError> {
    let id = &eh.ident;
    if id[..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    if id[4] != 2 {
        return Err(ElfError::BadClass(id[4]));
    }
    if id[5] != 1 {
        return Err(ElfError::BadDataEncoding(id[5]));
    }
    if id[6] != 1 {
        return Err(ElfError::BadVersion(u32::from(id[6])));
    }
    if id[7] != 0 && id[7] != 3 {
        return Err(ElfError::BadOsAbi(id[7]));
    }
    Ok(())
}

fn once(slot: &mut Option<Phdr>, ph: Phdr) -> Result<(), ElfError> {
    if slot.is_some() {
        return Err(ElfError::Duplicate { p_type: ph.p_type });
    }
    *slot = Some(ph);
    Ok(())
}

fn add_segment(
    p: &mut LoadPlan<'_>,
    ph: &Phdr,
    index: usize,
    user: Range<u64>,
    max_segments: usize,
    opts: &LoadOptions,
) -> Result<(), ElfError> {
    if ph.filesz > ph.memsz {
        return Err(ElfError::FileSizeExceedsMemSize { index });
    }
    if ph.memsz == 0 {
        // Maps nothing (GNU ld emits such segments for empty output sections).
        return Ok(());
    }
    let file = file_range(ph.offset, ph.filesz, p.file.len())
        .ok_or(ElfError::SegmentOutOfFile { index })?;
    if !valid_align(ph.align) {
        return Err(ElfError::BadAlignment {
            index,
            align: ph.align,
        });
    }
    let align = ph.align.max(1);
    if ph.offset % PAGE_SIZE != ph.vaddr % PAGE_SIZE || ph.offset % align != ph.vaddr % align {
        return Err(ElfError::Misaligned { index });
    }
    // The bias keeps every segment at the alignment it was linked for: a multiple of its
    // `p_align` (the bias is already a multiple of the page). Until 2026-12-06 only the page
    // was required, and a PIE with an 8 MiB `p_align` loaded at the 4 MiB default bias
    // landed misaligned (found by review).
    if !p.bias.is_multiple_of(align) {
        return Err(ElfError::BiasMisaligned {
            index,
            bias: p.bias,
            align,
        });
    }
    let perms = Perms::from_flags(ph.flags);
    if perms.write && perms.execute {
        return Err(ElfError::WriteAndExecute { index });
    }
    let overflow = ElfError::AddressOverflow { index };
    let vaddr = ph.vaddr.checked_add(p.bias).ok_or(overflow)?;
    let end = vaddr.checked_add(ph.memsz).ok_or(overflow)?;
    let pages = page_down(vaddr)..page_up(end).ok_or(overflow)?;
    if pages.start < user.start || pages.end > user.end {
        return Err(ElfError::OutOfRange {
            index,
            start: pages.start,
            end: pages.end,
        });
    }
    let mut shares_first_page = false;
    let mut new_bytes = pages.end - pages.start;
    if let Some(prev) = p.segments().last() {
        if vaddr < prev.end() {
            return Err(ElfError::Overlap { index });
        }
        if pages.start < prev.pages().end {
            if perms != prev.perms {
                return Err(ElfError::ConflictingPermissions { index });
            }
            shares_first_page = true;
            new_bytes -= PAGE_SIZE;
        }
    }
    if p.count >= max_segments {
        return Err(ElfError::TooManySegments { max: max_segments });
    }
    let total = p.mapped.saturating_add(new_bytes);
    if total > opts.max_total_memsz {
        return Err(ElfError::TooLarge {
            total,
            max: opts.max_total_memsz,
        });
    }
    let Some(slot) = p.segments.get_mut(p.count) else {
        return Err(ElfError::TooManySegments { max: max_segments });
    };
    *slot = Segment {
        vaddr,
        memsz: ph.memsz,
        file_offset: file.start,
        filesz: file.end - file.start,
        perms,
        shares_first_page,
    };
    p.count += 1;
    p.mapped = total;
    Ok(())
}

fn check_tls(p: &LoadPlan<'_>, ph: &Phdr, opts: &LoadOptions) -> Result<Tls, ElfError> {
    if ph.filesz > ph.memsz {
        return Err(ElfError::BadTls("file size exceeds memory size"));
    }
    if !valid_align(ph.align) {
        return Err(ElfError::BadTls("alignment is not a power of two"));
    }
    if ph.align > PAGE_SIZE {
        return Err(ElfError::BadTls("alignment larger than a page"));
    }
    if ph.memsz > opts.max_total_memsz {
        return Err(ElfError::TooLarge {
            total: ph.memsz,
            max: opts.max_total_memsz,
        });
    }
    let file = file_range(ph.offset, ph.filesz, p.file.len())
        .ok_or(ElfError::BadTls("initial data lies outside the file"))?;
    let vaddr = ph
        .vaddr
        .checked_add(p.bias)
        .ok_or(ElfError::BadTls("address overflows"))?;
    // The initial data must be loaded, from the same file bytes.
    if ph.filesz > 0 {
        let loaded = p.segments().iter().any(|s| {
            vaddr >= s.vaddr
                && vaddr - s.vaddr <= s.filesz as u64
                && ph.filesz <= s.filesz as u64 - (vaddr - s.vaddr)
                && file.start as u64 == s.file_offset as u64 + (vaddr - s.vaddr)
        });
        if !loaded {
            return Err(ElfError::BadTls(
                "initial data is not in the file bytes of a loaded segment",
            ));
        }
    }
    Ok(Tls {
        vaddr,
        file_offset: file.start,
        filesz: file.end - file.start,
        memsz: ph.memsz,
        align: ph.align,
    })
}

/// The address at which file bytes `offset..offset + len` are visible once loaded, if one
/// segment's file bytes contain them all.
fn loaded_address(p: &LoadPlan<'_>, offset: u64, len: u64) -> Option<u64> {
    p.segments().iter().find_map(|s| {
        let start = s.file_offset as u64;
        let rel = offset.checked_sub(start)?;
        (rel.checked_add(len)? <= s.filesz as u64).then_some(s.vaddr + rel)
    })
}
