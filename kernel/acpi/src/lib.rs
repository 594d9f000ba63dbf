//! ACPI discovery of CPUs and interrupt controllers for Exo-OS.
//!
//! Everything works over bytes read through [`PhysMem`], so the whole crate is host-testable.
//! Every table is validated (signature, length within `36..=1 MiB`, checksum) before use, and
//! every walk is bounded: a corrupt table yields an [`AcpiError`] or a [`Warning`], never a
//! panic or a hang.
//!
//! Typical use: find the RSDP ([`find_rsdp`] / [`find_rsdp_in_bios`], or take it from the
//! bootloader), then call [`discover`].
//!
//! # Memory: what sizes the lists, and the bounds
//!
//! The crate allocates (it uses `alloc`; the kernel has a heap when it parses ACPI) and never
//! aborts on allocation failure: every allocation goes through `try_reserve*`, and a failure is
//! [`AcpiError::OutOfMemory`].
//!
//! - [`Madt`]: a first pass over the entry headers counts each kind of entry; each list
//!   (`cpus`, `io_apics`, `overrides`, `nmi_sources`, `local_nmis`) is then reserved once, at
//!   that size, before the entries are decoded. There is no fixed cap on CPUs or on anything
//!   else: the table is at most [`MAX_TABLE_LEN`] (1 MiB), which bounds every list (at most
//!   131,066 eight-byte processor entries, 65,533 sixteen-byte x2APIC ones). Limits on what the
//!   kernel can run belong to the kernel, which sees every CPU the firmware lists.
//!   Duplicate APIC ids are resolved once at the end by sorting a scratch list of ids
//!   (`O(N log N)`, one more allocation of `N` entries, and one of `N` flags if any id repeats);
//!   repeated interrupt source overrides are found the same way (one allocation of `N`
//!   entries when there are two overrides or more).
//! - Warnings: repeated per-entry problems of one kind are aggregated into one [`Warning`]
//!   carrying a count and the first occurrence, so a table cannot crowd out the warnings that
//!   matter. The MADT's warning list is reserved at its exact size after the walk (at most
//!   one per reserved entry type, one per known entry type that is too short, and a handful of
//!   summaries). [`Platform::warnings`] holds at most 21 (one per kind and table: the five
//!   root-table kinds, a duplicate and a skipped table per signature used, the FADT's two
//!   unusable addresses and the HPET's one, the MCFG's entries, the DSDT's bad and undecoded
//!   virtio-mmio devices, no MADT).
//! - Scratch space on the stack is small: a 256-byte entry buffer and a ~1.5 KiB tally of
//!   per-type counters during the MADT walk.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod dsdt;
mod error;
mod fadt;
mod madt;
mod mcfg;
pub mod plan;
mod platform;
mod sdt;

pub use dsdt::{MAX_VIRTIO_MMIO, VirtioMmio, virtio_mmio_in_aml};
pub use error::{AcpiError, Signature, TableError, Warning};
pub use fadt::{PmTimer, PmTimerAddr};
pub use madt::{
    Cpu, IntOverride, IoApic, IsaIrq, LocalNmi, Madt, NmiProcessor, NmiSource, Polarity,
    TriggerMode, parse_madt,
};
pub use mcfg::{EcamRegion, MAX_ECAM_REGIONS};
pub use platform::{Platform, discover};
pub use sdt::{MAX_TABLE_LEN, Rsdp, find_rsdp, find_rsdp_in_bios, parse_rsdp};

/// Read access to physical memory. The kernel implements it over its physical map; tests
/// implement it over a fake.
///
/// # Contract
///
/// `read` must return an error (typically [`AcpiError::Read`]), never fault, hang or panic,
/// for **any** range it cannot read: unmapped memory, a page it leaves unmapped on purpose,
/// addresses beyond what it maps, and ranges whose end overflows. (A reader that refuses
/// page 0, which holds the BIOS data area, costs [`find_rsdp_in_bios`] the EBDA.) This crate
/// probes addresses taken from firmware (the EBDA pointer at `0x40E`, table pointers in the
/// RSDT/XSDT) and relies on a failed read to skip them: a failed read is never taken as data.
pub trait PhysMem {
    /// Fill `buf` with the bytes at physical addresses `paddr..paddr + buf.len()`, or fail
    /// without touching memory it cannot read (see the trait's contract).
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), AcpiError>;
}

/// The reading rule of a [`PhysMem`] over a direct map of physical `[0, limit)`, as the
/// kernel's reader has: `len` bytes at `paddr` are readable when all of them lie below `limit`
/// and their end does not overflow. Page 0 is readable: [`find_rsdp_in_bios`] reads the EBDA
/// pointer at 0x40E there. The kernel applies exactly this function, so the host tests run
/// the crate under the kernel's policy.
#[must_use]
pub fn direct_map_readable(limit: u64, paddr: u64, len: usize) -> bool {
    u64::try_from(len)
        .ok()
        .and_then(|n| paddr.checked_add(n))
        .is_some_and(|end| end <= limit)
}

/// A [`PhysMem`] over one byte slice that starts at physical address `base`.
#[derive(Clone, Copy, Debug)]
pub struct SliceMem<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> SliceMem<'a> {
    /// `bytes[0]` lives at physical address `base`.
    pub fn new(base: u64, bytes: &'a [u8]) -> Self {
        Self { base, bytes }
    }
}

impl PhysMem for SliceMem<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), AcpiError> {
        let src = paddr
            .checked_sub(self.base)
            .and_then(|off| usize::try_from(off).ok())
            .and_then(|off| Some(off..off.checked_add(buf.len())?))
            .and_then(|range| self.bytes.get(range));
        match src {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(AcpiError::Read {
                paddr,
                len: buf.len(),
            }),
        }
    }
}
