//! `PT_DYNAMIC`: the checks that keep dynamic linking out, and the `R_X86_64_RELATIVE`
//! relocations of a static PIE ([`Relocations`]).

use crate::ElfError;
use crate::plan::{LoadPlan, file_range};
use crate::raw::*;

/// One relocation to apply: write `value` as a little-endian `u64` at `vaddr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Target address (after the bias); the 8 bytes lie inside a writable segment.
    pub vaddr: u64,
    /// Bias + addend.
    pub value: u64,
}

/// A validated RELA table: `count` entries of 24 bytes at `offset` in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RelaTable {
    pub offset: usize,
    pub count: usize,
}

impl RelaTable {
    pub const EMPTY: Self = Self {
        offset: 0,
        count: 0,
    };
}

/// The relocations of a plan, in table order (`DT_RELA`, then `DT_JMPREL`), skipping
/// `R_X86_64_NONE`. All were validated by [`plan`](crate::plan).
#[derive(Clone)]
pub struct Relocations<'a> {
    file: &'a [u8],
    tables: [RelaTable; 2],
    table: usize,
    next: usize,
    bias: u64,
}

impl<'a> Relocations<'a> {
    pub(crate) const fn new(file: &'a [u8], tables: [RelaTable; 2], bias: u64) -> Self {
        Self {
            file,
            tables,
            table: 0,
            next: 0,
            bias,
        }
    }
}

impl core::fmt::Debug for Relocations<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Relocations")
            .field("tables", &self.tables)
            .field("table", &self.table)
            .field("next", &self.next)
            .field("bias", &format_args!("{:#x}", self.bias))
            .finish_non_exhaustive()
    }
}

impl Iterator for Relocations<'_> {
    type Item = Relocation;

    fn next(&mut self) -> Option<Relocation> {
        loop {
            let t = *self.tables.get(self.table)?;
            if self.next >= t.count {
                self.table += 1;
                self.next = 0;
                continue;
            }
            let off = self
                .next
                .checked_mul(RELA_LEN)
                .and_then(|o| o.checked_add(t.offset));
            self.next += 1;
            // Validated: in bounds, and RELATIVE or NONE.
            let (r_offset, r_type, addend) = rela_at(self.file, off?)?;
            if r_type == R_X86_64_RELATIVE {
                return Some(Relocation {
                    vaddr: r_offset.wrapping_add(self.bias),
                    value: self.bias.wrapping_add_signed(addend),
                });
            }
        }
    }
}

impl core::iter::FusedIterator for Relocations<'_> {}

/// Values of the dynamic tags this loader cares about; a repeated tag is an error.
#[derive(Default)]
struct Tags {
    rela: Option<u64>,
    relasz: Option<u64>,
    relaent: Option<u64>,
    jmprel: Option<u64>,
    pltrelsz: Option<u64>,
    pltrel: Option<u64>,
}

fn set(slot: &mut Option<u64>, val: u64, what: &'static str) -> Result<(), ElfError> {
    if slot.replace(val).is_some() {
        return Err(ElfError::BadDynamic(what));
    }
    Ok(())
}

/// Walks the dynamic entries and validates the relocation tables they name.
pub(crate) fn parse_dynamic(p: &LoadPlan<'_>, dynamic: &Phdr) -> Result<[RelaTable; 2], ElfError> {
    let range = file_range(dynamic.offset, dynamic.filesz, p.file.len())
        .ok_or(ElfError::BadDynamic("entries lie outside the file"))?;
    let entries = p.file.get(range).unwrap_or(&[]);
    let mut tags = Tags::default();
    for entry in entries.chunks_exact(DYN_LEN) {
        let (Some(tag), Some(val)) = (u64_at(entry, 0), u64_at(entry, 8)) else {
            break;
        };
        match tag {
            DT_NULL => break,
            DT_NEEDED => return Err(ElfError::NeedsLibraries),
            DT_RELA => set(&mut tags.rela, val, "DT_RELA appears twice")?,
            DT_RELASZ => set(&mut tags.relasz, val, "DT_RELASZ appears twice")?,
            DT_RELAENT => set(&mut tags.relaent, val, "DT_RELAENT appears twice")?,
            DT_JMPREL => set(&mut tags.jmprel, val, "DT_JMPREL appears twice")?,
            DT_PLTRELSZ => set(&mut tags.pltrelsz, val, "DT_PLTRELSZ appears twice")?,
            DT_PLTREL => set(&mut tags.pltrel, val, "DT_PLTREL appears twice")?,
            DT_REL | DT_RELR => return Err(ElfError::UnsupportedDynamic { tag }),
            DT_RELSZ | DT_RELRSZ if val != 0 => return Err(ElfError::UnsupportedDynamic { tag }),
            // Symbol tables, hashes, DT_DEBUG, DT_FLAGS, init/fini arrays (run by the
            // program's own start-up code), DT_TEXTREL (caught by the target check), ...
            _ => {}
        }
    }
    if tags.relaent.is_some_and(|e| e != RELA_LEN as u64) {
        return Err(ElfError::BadDynamic("DT_RELAENT is not 24"));
    }
    if tags.jmprel.is_some() && tags.pltrel.is_some_and(|t| t != DT_RELA) {
        return Err(ElfError::UnsupportedDynamic { tag: DT_PLTREL });
    }
    let rela = table(p, tags.rela, tags.relasz, "DT_RELA")?;
    let jmprel = table(p, tags.jmprel, tags.pltrelsz, "DT_JMPREL")?;
    Ok([rela, jmprel])
}

/// Validates one table (`addr` and `size` from the dynamic tags, `addr` before the bias).
fn table(
    p: &LoadPlan<'_>,
    addr: Option<u64>,
    size: Option<u64>,
    what: &'static str,
) -> Result<RelaTable, ElfError> {
    let (addr, size) = match (addr, size) {
        (None, None | Some(0)) => return Ok(RelaTable::EMPTY),
        (Some(a), Some(s)) => (a, s),
        (Some(_), None) => {
            return Err(ElfError::BadDynamic(match what {
                "DT_RELA" => "DT_RELA without DT_RELASZ",
                _ => "DT_JMPREL without DT_PLTRELSZ",
            }));
        }
        (None, Some(_)) => {
            return Err(ElfError::BadDynamic(match what {
                "DT_RELA" => "DT_RELASZ without DT_RELA",
                _ => "DT_PLTRELSZ without DT_JMPREL",
            }));
        }
    };
    if size % RELA_LEN as u64 != 0 {
        return Err(ElfError::BadDynamic(
            "relocation table size is not a multiple of 24",
        ));
    }
    // The table must be loaded: find the file bytes behind its address.
    let vaddr = addr.checked_add(p.bias);
    let offset = p.segments().iter().find_map(|s| {
        let rel = vaddr?.checked_sub(s.vaddr)?;
        (rel.checked_add(size)? <= s.filesz as u64).then_some(s.file_offset as u64 + rel)
    });
    let range = offset
        .and_then(|o| file_range(o, size, p.file.len()))
        .ok_or(ElfError::BadDynamic(
            "relocation table is not in the file bytes of a loaded segment",
        ))?;
    let t = RelaTable {
        offset: range.start,
        count: (range.end - range.start) / RELA_LEN,
    };
    for i in 0..t.count {
        let Some((r_offset, r_type, _)) = rela_at(p.file, range.start + i * RELA_LEN) else {
            return Err(ElfError::BadDynamic(
                "relocation table lies outside the file",
            ));
        };
        match r_type {
            R_X86_64_NONE => {}
            R_X86_64_RELATIVE => {
                let target = r_offset.checked_add(p.bias);
                let ok = target.is_some_and(|t| {
                    p.segments().iter().any(|s| {
                        s.perms.write
                            && t >= s.vaddr
                            && t.checked_add(8).is_some_and(|e| e <= s.end())
                    })
                });
                if !ok {
                    return Err(ElfError::RelocationOutOfRange { offset: r_offset });
                }
            }
            r_type => {
                return Err(ElfError::UnsupportedRelocation {
                    r_type,
                    offset: r_offset,
                });
            }
        }
    }
    Ok(t)
}
