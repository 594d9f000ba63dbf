//! Loader plans for the static ELF64 executables of Exo-OS user mode.
//!
//! The crate owns the ELF format: given the bytes of an x86-64 executable (typically from
//! the initrd) it checks them and returns a [`LoadPlan`] — the entry point, the segments to
//! map (address range, file bytes, size in memory, permissions), the TLS template, the
//! stack permissions and the relocations of a static PIE — **without touching memory**.
//! Mapping pages and copying bytes is the kernel's job.
//!
//! It is `no_std`, allocates nothing, contains no `unsafe`, and treats the file as hostile:
//! for any bytes it returns a plan or an [`ElfError`], never panics, never overflows, and
//! does work linear in the file size.
//!
//! ```
//! # fn demo(bytes: &[u8]) -> Result<(), exo_elf::ElfError> {
//! let plan = exo_elf::plan(bytes, &exo_elf::LoadOptions::DEFAULT)?;
//! for seg in plan.segments() {
//!     // map seg.pages() zeroed with seg.perms, copy plan.file_bytes(seg) to seg.vaddr
//! }
//! for r in plan.relocations() {
//!     // write r.value (u64, little-endian) at r.vaddr
//! }
//! let _start = plan.entry();
//! # Ok(()) }
//! ```
//!
//! # Accepted
//!
//! - ELF64, little-endian, version 1, OS ABI System V or GNU, `EM_X86_64`, 64-byte header,
//!   56-byte program headers, all inside the file.
//! - `ET_EXEC`, loaded at its link addresses, and `ET_DYN` without `PT_INTERP` (static
//!   PIE, as `gcc -static-pie` or rustc for `x86_64-unknown-none` produce), loaded at
//!   [`LoadOptions::pie_bias`] (page-aligned, and a multiple of every segment's `p_align`).
//! - Relocations of a static PIE (or of an `ET_EXEC` with `PT_DYNAMIC`): the `DT_RELA`
//!   (`DT_RELASZ`, `DT_RELAENT` = 24) and `DT_JMPREL` (`DT_PLTREL` = `DT_RELA`) tables, whose
//!   entries must all be `R_X86_64_RELATIVE` (or `R_X86_64_NONE`, skipped), each writing 8
//!   bytes inside a writable segment. The kernel applies them ([`LoadPlan::relocations`]):
//!   `*(vaddr) = bias + addend`. This is idempotent, so a program whose start-up code
//!   relocates itself again (glibc's static PIE) is unaffected.
//!
//! # Checked for each `PT_LOAD` segment
//!
//! `p_filesz <= p_memsz`; the file bytes inside the file; `p_align` 0, 1 or a power of two;
//! `p_offset ≡ p_vaddr` modulo 4 KiB and modulo `p_align`; for a static PIE, the bias a
//! multiple of `p_align` (the segment stays as aligned as it was linked); not both writable
//! and executable (W^X); address + bias without overflow; pages inside the user range of the
//! [`LoadOptions`] (never page 0, never above the lower half); ascending order without
//! overlapping bytes; a page shared with the previous segment only with the same
//! permissions; at most [`LoadOptions::max_segments`] segments and
//! [`LoadOptions::max_total_memsz`] bytes of pages. Segments with `p_memsz == 0` map nothing
//! and are ignored. Then: the entry point (+ bias) must be inside the file bytes of an
//! executable segment.
//!
//! # Rejected
//!
//! `PT_INTERP` (dynamic linking), `DT_NEEDED`, an executable stack (`PT_GNU_STACK` with
//! `PF_X`), any relocation type but `RELATIVE`/`NONE` (notably `R_X86_64_IRELATIVE`, which
//! glibc's static PIE uses for its ifuncs, and symbol relocations), `DT_REL` and `DT_RELR`
//! tables, extended program header numbering (`PN_XNUM`), and a repeated `PT_DYNAMIC`,
//! `PT_TLS` or `PT_GNU_STACK`.
//!
//! # Reported
//!
//! `PT_TLS` ([`Tls`]: `p_filesz <= p_memsz`, its initial data in the file and at the same
//! place in a loaded segment's file bytes, alignment a power of two of at most a page,
//! `p_memsz` at most [`LoadOptions::max_total_memsz`]); `PT_GNU_STACK`'s permissions
//! ([`LoadPlan::stack`]); the loaded address of the program headers for `AT_PHDR`
//! ([`LoadPlan::phdr_vaddr`], computed from `e_phoff`, not taken from `PT_PHDR`). Other
//! program headers (`PT_NOTE`, `PT_PHDR`, `PT_GNU_RELRO`, `PT_GNU_EH_FRAME`,
//! `PT_GNU_PROPERTY`, ...) are ignored; section headers are never read.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod plan;
mod raw;
mod reloc;

pub use error::ElfError;
pub use plan::{
    ElfKind, LoadOptions, LoadPlan, MAX_LOAD_SEGMENTS, PAGE_SIZE, Perms, Segment, Tls, USER_END,
    plan,
};
pub use reloc::{Relocation, Relocations};
