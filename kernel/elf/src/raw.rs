//! Little-endian field access and the raw ELF64 structures (header, program header,
//! dynamic entry, RELA entry). Every read is bounds-checked and returns `None` past the end.

/// Reads `N` bytes at `off`.
fn bytes<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    bytes(b, off).map(u16::from_le_bytes)
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    bytes(b, off).map(u32::from_le_bytes)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    bytes(b, off).map(u64::from_le_bytes)
}

/// Size of the ELF64 file header.
pub(crate) const EHDR_LEN: usize = 64;
/// Size of one ELF64 program header.
pub(crate) const PHDR_LEN: usize = 56;
/// Size of one ELF64 dynamic entry.
pub(crate) const DYN_LEN: usize = 16;
/// Size of one ELF64 RELA entry.
pub(crate) const RELA_LEN: usize = 24;

pub(crate) const ET_EXEC: u16 = 2;
pub(crate) const ET_DYN: u16 = 3;
pub(crate) const EM_X86_64: u16 = 62;
pub(crate) const PN_XNUM: u16 = 0xffff;

pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_DYNAMIC: u32 = 2;
pub(crate) const PT_INTERP: u32 = 3;
pub(crate) const PT_TLS: u32 = 7;
pub(crate) const PT_GNU_STACK: u32 = 0x6474_e551;

pub(crate) const PF_X: u32 = 1;
pub(crate) const PF_W: u32 = 2;
pub(crate) const PF_R: u32 = 4;

pub(crate) const DT_NULL: u64 = 0;
pub(crate) const DT_NEEDED: u64 = 1;
pub(crate) const DT_PLTRELSZ: u64 = 2;
pub(crate) const DT_RELA: u64 = 7;
pub(crate) const DT_RELASZ: u64 = 8;
pub(crate) const DT_RELAENT: u64 = 9;
pub(crate) const DT_REL: u64 = 17;
pub(crate) const DT_RELSZ: u64 = 18;
pub(crate) const DT_PLTREL: u64 = 20;
pub(crate) const DT_JMPREL: u64 = 23;
pub(crate) const DT_RELRSZ: u64 = 35;
pub(crate) const DT_RELR: u64 = 36;

pub(crate) const R_X86_64_NONE: u32 = 0;
pub(crate) const R_X86_64_RELATIVE: u32 = 8;

/// The fields of the file header this crate uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ehdr {
    pub ident: [u8; 16],
    pub e_type: u16,
    pub machine: u16,
    pub version: u32,
    pub entry: u64,
    pub phoff: u64,
    pub ehsize: u16,
    pub phentsize: u16,
    pub phnum: u16,
}

impl Ehdr {
    /// `None` if `b` is shorter than [`EHDR_LEN`].
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < EHDR_LEN {
            return None;
        }
        Some(Self {
            ident: bytes(b, 0)?,
            e_type: u16_at(b, 16)?,
            machine: u16_at(b, 18)?,
            version: u32_at(b, 20)?,
            entry: u64_at(b, 24)?,
            phoff: u64_at(b, 32)?,
            ehsize: u16_at(b, 52)?,
            phentsize: u16_at(b, 54)?,
            phnum: u16_at(b, 56)?,
        })
    }
}

/// One program header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Phdr {
    /// The program header at `off`, `None` if it does not fit in `b`.
    pub fn parse(b: &[u8], off: usize) -> Option<Self> {
        let h = b.get(off..off.checked_add(PHDR_LEN)?)?;
        Some(Self {
            p_type: u32_at(h, 0)?,
            flags: u32_at(h, 4)?,
            offset: u64_at(h, 8)?,
            vaddr: u64_at(h, 16)?,
            // p_paddr (24) is ignored.
            filesz: u64_at(h, 32)?,
            memsz: u64_at(h, 40)?,
            align: u64_at(h, 48)?,
        })
    }
}

/// One RELA entry: `(r_offset, r_type, r_addend)`; the symbol index is ignored.
pub(crate) fn rela_at(b: &[u8], off: usize) -> Option<(u64, u32, i64)> {
    let r_offset = u64_at(b, off)?;
    let info = u64_at(b, off.checked_add(8)?)?;
    let addend = u64_at(b, off.checked_add(16)?)?;
    Some((r_offset, info as u32, addend as i64))
}
