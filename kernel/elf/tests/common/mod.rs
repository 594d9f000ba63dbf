//! Helpers shared by the integration tests: a writer for hand-made ELF files, the
//! committed fixtures, a parser for `readelf -hlrW` output, and the plan invariants.
#![allow(dead_code)]

use exo_elf::*;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PT_PHDR: u32 = 6;
pub const PT_TLS: u32 = 7;
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const PT_GNU_RELRO: u32 = 0x6474_e552;
pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;

/// One program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ph {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Ph {
    pub fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Self {
        Self {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: 0x1000,
        }
    }

    pub fn other(p_type: u32, flags: u32) -> Self {
        Self {
            p_type,
            flags,
            offset: 0,
            vaddr: 0,
            filesz: 0,
            memsz: 0,
            align: 0x10,
        }
    }
}

/// A hand-made ELF file: header fields, program headers at offset 64, then the file is
/// padded with `fill` up to `len` bytes and `patches` are written.
#[derive(Clone, Debug)]
pub struct Elf {
    pub ident: [u8; 16],
    pub e_type: u16,
    pub machine: u16,
    pub version: u32,
    pub entry: u64,
    pub phoff: u64,
    pub ehsize: u16,
    pub phentsize: u16,
    /// `None`: the number of `phdrs`.
    pub phnum: Option<u16>,
    pub phdrs: Vec<Ph>,
    pub len: usize,
    pub patches: Vec<(usize, Vec<u8>)>,
}

impl Elf {
    /// A valid ET_EXEC: headers + code page (R X) at 0x401000, data page (RW, bss) at
    /// 0x402000, a GNU_STACK RW.
    pub fn exec() -> Self {
        let mut ident = [0u8; 16];
        ident[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        Self {
            ident,
            e_type: 2,
            machine: 62,
            version: 1,
            entry: 0x401000,
            phoff: 64,
            ehsize: 64,
            phentsize: 56,
            phnum: None,
            phdrs: vec![
                Ph::load(R, 0, 0x400000, 0x200, 0x200),
                Ph::load(R | X, 0x1000, 0x401000, 0x100, 0x100),
                Ph::load(R | W, 0x2000, 0x402000, 0x80, 0x3000),
                Ph::other(PT_GNU_STACK, R | W),
            ],
            len: 0x2080,
            patches: vec![],
        }
    }

    /// A valid static PIE linked at 0: the same layout, plus a PT_DYNAMIC at 0x2000 whose
    /// RELA table (at 0x100, in the first segment) holds `relocs` (r_offset, type, addend).
    pub fn pie(relocs: &[(u64, u32, i64)]) -> Self {
        let mut e = Self::exec();
        e.e_type = 3;
        e.entry = 0x1000;
        e.phdrs = vec![
            Ph::load(
                R,
                0,
                0,
                0x200 + 24 * relocs.len() as u64,
                0x200 + 24 * relocs.len() as u64,
            ),
            Ph::load(R | X, 0x1000, 0x1000, 0x100, 0x100),
            Ph::load(R | W, 0x2000, 0x2000, 0x80, 0x3000),
            Ph {
                p_type: PT_DYNAMIC,
                flags: R | W,
                offset: 0x2000,
                vaddr: 0x2000,
                filesz: 0x50,
                memsz: 0x50,
                align: 8,
            },
            Ph::other(PT_GNU_STACK, R | W),
        ];
        e.set_dynamic(&[(7, 0x200), (8, 24 * relocs.len() as u64), (9, 24), (0, 0)]);
        let mut table = Vec::new();
        for &(off, ty, add) in relocs {
            table.extend_from_slice(&off.to_le_bytes());
            table.extend_from_slice(&u64::from(ty).to_le_bytes());
            table.extend_from_slice(&add.to_le_bytes());
        }
        e.patches.push((0x200, table));
        e
    }

    /// Replaces the dynamic entries at file offset 0x2000 (up to 5 of them fit in the
    /// PT_DYNAMIC of `pie()`; its filesz is adjusted).
    pub fn set_dynamic(&mut self, entries: &[(u64, u64)]) {
        let mut d = Vec::new();
        for &(tag, val) in entries {
            d.extend_from_slice(&tag.to_le_bytes());
            d.extend_from_slice(&val.to_le_bytes());
        }
        if let Some(ph) = self.phdrs.iter_mut().find(|p| p.p_type == PT_DYNAMIC) {
            ph.filesz = d.len() as u64;
            ph.memsz = d.len() as u64;
        }
        if let Some(ph) = self
            .phdrs
            .iter_mut()
            .find(|p| p.p_type == PT_LOAD && p.offset == 0x2000)
        {
            ph.filesz = ph.filesz.max(d.len() as u64);
        }
        self.len = self.len.max(0x2000 + d.len());
        self.patches.retain(|(o, _)| *o != 0x2000);
        self.patches.push((0x2000, d));
    }

    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.len.max(64)];
        let mut h = Vec::new();
        h.extend_from_slice(&self.ident);
        h.extend_from_slice(&self.e_type.to_le_bytes());
        h.extend_from_slice(&self.machine.to_le_bytes());
        h.extend_from_slice(&self.version.to_le_bytes());
        h.extend_from_slice(&self.entry.to_le_bytes());
        h.extend_from_slice(&self.phoff.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // shoff
        h.extend_from_slice(&0u32.to_le_bytes()); // flags
        h.extend_from_slice(&self.ehsize.to_le_bytes());
        h.extend_from_slice(&self.phentsize.to_le_bytes());
        let phnum = self.phnum.unwrap_or(self.phdrs.len() as u16);
        h.extend_from_slice(&phnum.to_le_bytes());
        h.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
        assert_eq!(h.len(), 64);
        b[..64].copy_from_slice(&h);
        for (i, p) in self.phdrs.iter().enumerate() {
            let mut e = Vec::new();
            e.extend_from_slice(&p.p_type.to_le_bytes());
            e.extend_from_slice(&p.flags.to_le_bytes());
            e.extend_from_slice(&p.offset.to_le_bytes());
            e.extend_from_slice(&p.vaddr.to_le_bytes());
            e.extend_from_slice(&p.vaddr.to_le_bytes()); // paddr
            e.extend_from_slice(&p.filesz.to_le_bytes());
            e.extend_from_slice(&p.memsz.to_le_bytes());
            e.extend_from_slice(&p.align.to_le_bytes());
            let at = self.phoff as usize + 56 * i;
            if b.len() < at + 56 {
                b.resize(at + 56, 0);
            }
            b[at..at + 56].copy_from_slice(&e);
        }
        for (off, bytes) in &self.patches {
            if b.len() < off + bytes.len() {
                b.resize(off + bytes.len(), 0);
            }
            b[*off..off + bytes.len()].copy_from_slice(bytes);
        }
        b
    }
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(name)).unwrap()
}

pub fn perms(flags: u32) -> Perms {
    Perms::from_flags(flags)
}

/// Every invariant a plan promises, checked against the file and the options.
pub fn check_invariants(plan: &LoadPlan<'_>, file: &[u8], opts: &LoadOptions) {
    let start = opts.user_start.max(PAGE_SIZE).next_multiple_of(PAGE_SIZE);
    let end = opts.user_end.min(USER_END) & !(PAGE_SIZE - 1);
    let segs = plan.segments();
    assert!(!segs.is_empty());
    assert!(segs.len() <= opts.max_segments.min(MAX_LOAD_SEGMENTS));
    assert!(std::ptr::eq(plan.file(), file));
    let mut mapped = 0u64;
    for (i, s) in segs.iter().enumerate() {
        assert!(s.memsz > 0);
        assert!(s.filesz as u64 <= s.memsz);
        let pages = s.pages();
        assert_eq!(pages.start % PAGE_SIZE, 0);
        assert_eq!(pages.end % PAGE_SIZE, 0);
        assert!(pages.start <= s.vaddr && s.end() <= pages.end);
        assert!(
            start <= pages.start && pages.end <= end,
            "{s:?} outside {start:#x}..{end:#x}"
        );
        assert!(pages.start >= PAGE_SIZE && pages.end <= USER_END);
        assert!(!(s.perms.write && s.perms.execute), "W^X {s:?}");
        assert!(s.file_range().end <= file.len());
        assert_eq!(plan.file_bytes(s), &file[s.file_range()]);
        assert_eq!(s.bss(), s.vaddr + s.filesz as u64..s.end());
        mapped += pages.end - pages.start;
        if i > 0 {
            let prev = &segs[i - 1];
            assert!(prev.end() <= s.vaddr, "overlap {prev:?} {s:?}");
            assert_eq!(s.shares_first_page, pages.start < prev.pages().end);
            if s.shares_first_page {
                assert_eq!(prev.perms, s.perms);
                mapped -= PAGE_SIZE;
            }
        } else {
            assert!(!s.shares_first_page);
        }
    }
    assert_eq!(mapped, plan.mapped_bytes());
    assert!(mapped <= opts.max_total_memsz);
    let img = plan.image_range();
    assert_eq!(img.start, segs[0].pages().start);
    assert_eq!(img.end, segs[segs.len() - 1].pages().end);
    let e = plan.entry();
    assert!(
        segs.iter()
            .any(|s| s.perms.execute && s.vaddr <= e && e < s.vaddr + s.filesz as u64),
        "entry {e:#x}"
    );
    match plan.kind() {
        ElfKind::Executable => assert_eq!(plan.bias(), 0),
        ElfKind::StaticPie => assert_eq!(plan.bias(), opts.pie_bias),
    }
    assert_eq!(plan.bias() % PAGE_SIZE, 0);
    if let Some(t) = plan.tls() {
        assert!(t.filesz as u64 <= t.memsz);
        assert!(t.memsz <= opts.max_total_memsz);
        assert!(t.file_offset + t.filesz <= file.len());
        assert!(t.align <= 1 || t.align.is_power_of_two());
        if t.filesz > 0 {
            assert!(segs.iter().any(|s| s.vaddr <= t.vaddr
                && t.vaddr + t.filesz as u64 <= s.vaddr + s.filesz as u64
                && s.file_offset as u64 + (t.vaddr - s.vaddr) == t.file_offset as u64));
        }
    }
    if let Some(st) = plan.stack() {
        assert!(!st.execute);
    }
    if let Some(ph) = plan.phdr_vaddr() {
        let len = 56 * u64::from(plan.phnum());
        assert!(
            segs.iter()
                .any(|s| s.vaddr <= ph && ph + len <= s.vaddr + s.filesz as u64)
        );
    }
    let mut n = 0;
    for r in plan.relocations() {
        assert!(
            segs.iter()
                .any(|s| s.perms.write && s.vaddr <= r.vaddr && r.vaddr + 8 <= s.end()),
            "{r:?}"
        );
        n += 1;
        assert!(n <= file.len() / 24);
    }
    assert_eq!(n, plan.relocation_count());
    let _ = format!("{plan:?}");
}

/// A program header line of `readelf -lW`.
#[derive(Clone, Debug)]
pub struct ReadelfPh {
    pub p_type: String,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub flags: String,
    pub align: u64,
}

/// What `readelf -hlrW` says about a file.
#[derive(Clone, Debug, Default)]
pub struct Readelf {
    pub pie: bool,
    pub entry: u64,
    pub phdrs: Vec<ReadelfPh>,
    /// (r_offset, type name, addend)
    pub relocs: Vec<(u64, String, i64)>,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

pub fn parse_readelf(text: &str) -> Readelf {
    let mut r = Readelf::default();
    let mut in_phdrs = false;
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if line.trim_start().starts_with("Type:") {
            r.pie = line.contains("DYN");
        } else if line.trim_start().starts_with("Entry point address:") {
            r.entry = hex(t[3]);
        } else if line.starts_with("Program Headers:") {
            in_phdrs = true;
        } else if in_phdrs && line.trim().is_empty() {
            in_phdrs = false;
        } else if in_phdrs && t.len() >= 8 && t[1].starts_with("0x") {
            r.phdrs.push(ReadelfPh {
                p_type: t[0].to_string(),
                offset: hex(t[1]),
                vaddr: hex(t[2]),
                filesz: hex(t[4]),
                memsz: hex(t[5]),
                flags: t[6..t.len() - 1].join(""),
                align: hex(t[t.len() - 1]),
            });
        } else if t.len() >= 4
            && t[0].len() == 16
            && t[1].len() == 16
            && t[2].starts_with("R_X86_64_")
        {
            let add = t[t.len() - 1];
            let (neg, digits) = match add.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, add.trim_start_matches('+')),
            };
            let v = hex(digits) as i64;
            r.relocs
                .push((hex(t[0]), t[2].to_string(), if neg { -v } else { v }));
        }
    }
    r
}

pub fn flags_of(s: &str) -> Perms {
    Perms {
        read: s.contains('R'),
        write: s.contains('W'),
        execute: s.contains('E'),
    }
}

/// Checks `plan` against what readelf says about the same file, for `bias`.
pub fn compare_with_readelf(plan: &LoadPlan<'_>, re: &Readelf, bias: u64) {
    assert_eq!(plan.kind() == ElfKind::StaticPie, re.pie);
    assert_eq!(plan.bias(), bias);
    assert_eq!(plan.entry(), re.entry + bias);
    let loads: Vec<_> = re
        .phdrs
        .iter()
        .filter(|p| p.p_type == "LOAD" && p.memsz > 0)
        .collect();
    assert_eq!(plan.segments().len(), loads.len());
    for (s, p) in plan.segments().iter().zip(&loads) {
        assert_eq!(s.vaddr, p.vaddr + bias, "{p:?}");
        assert_eq!(s.memsz, p.memsz);
        assert_eq!(s.file_offset as u64, p.offset);
        assert_eq!(s.filesz as u64, p.filesz);
        assert_eq!(s.perms, flags_of(&p.flags));
    }
    match re.phdrs.iter().find(|p| p.p_type == "TLS") {
        Some(p) => {
            let t = plan.tls().expect("TLS");
            assert_eq!(
                (
                    t.vaddr,
                    t.file_offset as u64,
                    t.filesz as u64,
                    t.memsz,
                    t.align
                ),
                (p.vaddr + bias, p.offset, p.filesz, p.memsz, p.align)
            );
        }
        None => assert!(plan.tls().is_none()),
    }
    match re.phdrs.iter().find(|p| p.p_type == "GNU_STACK") {
        Some(p) => assert_eq!(plan.stack(), Some(flags_of(&p.flags))),
        None => assert!(plan.stack().is_none()),
    }
    if let Some(p) = re.phdrs.iter().find(|p| p.p_type == "PHDR") {
        assert_eq!(plan.phdr_vaddr(), Some(p.vaddr + bias));
    }
    assert_eq!(plan.phnum() as usize, re.phdrs.len());
    let relocs: Vec<_> = plan.relocations().collect();
    let expect: Vec<_> = re
        .relocs
        .iter()
        .filter(|(_, ty, _)| ty == "R_X86_64_RELATIVE")
        .map(|&(off, _, add)| Relocation {
            vaddr: off + bias,
            value: bias.wrapping_add_signed(add),
        })
        .collect();
    if plan.kind() == ElfKind::StaticPie {
        assert_eq!(relocs, expect);
    } else {
        // A static ET_EXEC has no PT_DYNAMIC; readelf may still list IRELATIVE entries
        // (applied by glibc's start-up code from its own symbols).
        assert!(relocs.is_empty());
    }
}

/// `readelf -hlrW` of `path`, or `None` if readelf is not installed.
pub fn live_readelf(path: &Path) -> Option<String> {
    let out = Command::new("readelf")
        .arg("-hlrW")
        .arg(path)
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "exo-elf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
