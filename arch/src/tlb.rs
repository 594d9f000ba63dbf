//! TLB control: PCID set-up and the invalidation instructions. With PCID *and* INVPCID the
//! kernel tags each address space's translations with its PCID and switches CR3 without a
//! flush; a shootdown then invalidates one PCID on every CPU that ever ran the space, whether
//! it runs there now or not. Without them, a CR3 load flushes the non-global entries and only
//! CPUs running the space now need an invalidation.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

static PCID: AtomicBool = AtomicBool::new(false);

/// Whether address spaces are PCID-tagged (decided once by [`enable_pcid`] on the BSP).
#[inline(always)]
pub fn pcid_enabled() -> bool {
    PCID.load(Ordering::Relaxed)
}

/// The CPU offers both PCID and INVPCID (the kernel uses PCIDs only with both).
pub fn pcid_available() -> bool {
    let id = raw_cpuid::CpuId::new();
    let pcid = id.get_feature_info().is_some_and(|f| f.has_pcid());
    let invpcid = id
        .get_extended_feature_info()
        .is_some_and(|e| e.has_invpcid());
    pcid && invpcid
}

/// Turns CR4.PCIDE on for the calling CPU when `use_it` (every CPU passes the BSP's
/// decision). CR3's PCID field must be 0, as it is for the kernel tables.
pub fn enable_pcid(use_it: bool) {
    if !use_it {
        return;
    }
    // SAFETY: CPUID reported PCID (the caller's decision comes from `pcid_available`) and the
    // current CR3 has PCID 0 (kernel tables), the one state in which CR4.PCIDE may be set.
    unsafe {
        x86_64::registers::control::Cr4::update(|c| {
            c.insert(x86_64::registers::control::Cr4Flags::PCID);
        });
    }
    PCID.store(true, Ordering::Relaxed);
}

/// The CR3 value for `root` (a PML4's physical address) with `pcid` (0..4095; ignored
/// without PCID) and `keep` (with PCID on: bit 63, the TLB entries tagged `pcid` are kept),
/// PCID on or off as decided now. Loaded by `cpu::load_cr3`.
#[inline]
pub fn cr3_value(root: u64, pcid: u16, keep: bool) -> u64 {
    cr3_bits(root, pcid, keep, pcid_enabled())
}

/// [`cr3_value`] with the PCID decision given (`tagged`): the PCID in bits 0..11 and `keep`
/// as bit 63 when tagged, the bare root otherwise.
#[inline]
const fn cr3_bits(root: u64, pcid: u16, keep: bool, tagged: bool) -> u64 {
    if tagged {
        root | (pcid & 0xFFF) as u64 | if keep { 1 << 63 } else { 0 }
    } else {
        root
    }
}

/// The physical root in CR3 (PCID bits removed).
#[inline]
pub fn current_root() -> u64 {
    crate::cpu::read_cr3() & 0x000F_FFFF_FFFF_F000
}

/// Invalidates the translation of `va` in the current address space.
#[inline]
pub fn invlpg(va: u64) {
    // SAFETY: invalidating a TLB entry never breaks memory safety.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// INVPCID descriptor: the PCID and an address.
#[repr(C, align(16))]
struct Descriptor {
    pcid: u64,
    addr: u64,
}

fn invpcid(kind: u64, pcid: u16, addr: u64) {
    let d = Descriptor {
        pcid: u64::from(pcid),
        addr,
    };
    // SAFETY: only called with PCID on (so INVPCID exists: `pcid_available`), with a valid
    // type (0 one address, 1 one context, 3 every context but global translations);
    // invalidating TLB entries never breaks memory safety.
    unsafe {
        asm!("invpcid {}, [{}]", in(reg) kind, in(reg) &raw const d,
             options(nostack, preserves_flags, readonly));
    }
}

/// Invalidates `va` tagged `pcid` (PCID on), whatever space this CPU runs now.
#[inline]
pub fn invalidate_pcid_addr(pcid: u16, va: u64) {
    invpcid(0, pcid, va);
}

/// Invalidates every non-global entry tagged `pcid` (PCID on).
#[inline]
pub fn invalidate_pcid(pcid: u16) {
    invpcid(1, pcid, 0);
}

/// Drops every non-global TLB entry and every paging-structure cache entry this CPU holds,
/// whatever PCID they are tagged with (SDM 4.10.4.1: INVPCID type 3, or without PCIDs a CR3
/// load, which covers the only PCID). Needed before a freed page-table frame is reused: a
/// cached upper-level entry may still point at it, even where nothing accesses the range.
pub fn flush_all_contexts() {
    if pcid_enabled() {
        invpcid(3, 0, 0);
    } else {
        flush_current();
    }
}

/// Flushes the current space's non-global entries (reloads CR3 without keeping them).
pub fn flush_current() {
    let v = crate::cpu::read_cr3() & !(1u64 << 63);
    // SAFETY: reloading the current CR3 value maps everything exactly as before.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::{cr3_bits, cr3_value};

    #[test]
    fn cr3_carries_the_pcid_and_keep_only_when_tagged() {
        let root = 0x1234_5000;
        assert_eq!(cr3_bits(root, 7, true, true), root | 7 | 1 << 63);
        assert_eq!(cr3_bits(root, 7, false, true), root | 7);
        assert_eq!(cr3_bits(root, 0xF123, false, true), root | 0x123);
        assert_eq!(cr3_bits(root, 7, true, false), root);
        // On the host nothing turned PCIDs on: the bare root.
        assert_eq!(cr3_value(root, 7, true), root);
    }
}
