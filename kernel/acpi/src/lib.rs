//! ACPI discovery of CPUs and interrupt controllers for Exo-OS.
//!
//! Everything works over bytes read through [`PhysMem`], so the whole crate is host-testable.
//! Every table is validated (signature, length within `36..=1 MiB`, checksum) before use, and
//! every walk is bounded: a corrupt table yields an [`AcpiError`] or a [`Warning`], never a
//! panic or a hang.
//!
//! Typical use: find the RSDP ([`find_rsdp`] / [`find_rsdp_in_bios`], or take it from the
//! bootloader), then call [`discover`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod fadt;
mod madt;
mod platform;
mod sdt;

pub use error::{AcpiError, Signature, Warning};
pub use fadt::{PmTimer, PmTimerAddr};
pub use madt::{
    Cpu, IntOverride, IoApic, IsaIrq, LocalNmi, Madt, NmiProcessor, NmiSource, Polarity,
    TriggerMode, parse_madt,
};
pub use platform::{Platform, discover};
pub use sdt::{MAX_RSDP_LEN, MAX_TABLE_LEN, Rsdp, find_rsdp, find_rsdp_in_bios, parse_rsdp};

/// Maximum number of CPUs recorded; further ones produce [`Warning::TooManyCpus`].
pub const MAX_CPUS: usize = 256;

/// Read access to physical memory. The kernel implements it over its physical map; tests
/// implement it over a fake.
pub trait PhysMem {
    /// Fill `buf` with the bytes at physical addresses `paddr..paddr + buf.len()`.
    /// Must fail (typically with [`AcpiError::Read`]) rather than fault on unmapped memory.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), AcpiError>;
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
