//! PCI: configuration space through the ECAM windows of the ACPI MCFG (PCI Express, q35),
//! or the legacy ports 0xCF8/0xCFC where there is none (the `pc` machine); a brute-force scan
//! of every bus, device and function; BARs and capability lists, walked with bounds (a
//! looping or truncated list ends the walk with a warning, never a hang).

use crate::sys::io::{self, Mmio};
use alloc::vec::Vec;
use exo_acpi::EcamRegion;
use spin::Mutex;

/// How configuration space is reached.
#[derive(Debug)]
enum Access {
    /// ECAM windows (and the bus range each decodes), mapped uncached.
    Ecam(Vec<(EcamRegion, Mmio)>),
    /// Mechanism #1 ports (256 bytes per function; serialised by the lock).
    Ports,
}

static ACCESS: Mutex<Option<Access>> = Mutex::new(None);

/// The physical ranges of every ECAM window the MCFG names (all segments, mapped or not):
/// configuration space, which no BAR window may overlap ([`bar_window`]).
static ECAM_RANGES: Mutex<Vec<core::ops::Range<u64>>> = Mutex::new(Vec::new());

/// Chooses the configuration mechanism: the segment-0 ECAM windows of the MCFG that
/// the kernel can map (`mm::memory::mmio`), else the ports. Called once by boot.
pub fn init(ecam: &[EcamRegion]) {
    {
        let mut ranges = ECAM_RANGES.lock();
        ranges.clear();
        ranges.extend(ecam.iter().map(|r| {
            let start = r.start();
            start..start.saturating_add(r.len())
        }));
    }
    let mut w = Vec::new();
    for r in ecam.iter().filter(|r| r.segment == 0) {
        match crate::mm::memory::mmio(r.start(), r.len() as usize) {
            Some(m) => w.push((*r, m)),
            None => log::warn!(
                "PCI: ECAM window at {:#x} (buses {}..={}) cannot be mapped (over RAM, or no page table): skipped",
                r.start(),
                r.bus_start,
                r.bus_end
            ),
        }
    }
    let a = if w.is_empty() {
        Access::Ports
    } else {
        Access::Ecam(w)
    };
    *ACCESS.lock() = Some(a);
}

/// The physical ranges of the MCFG's ECAM windows (every segment; empty without an MCFG).
pub fn ecam_ranges() -> Vec<core::ops::Range<u64>> {
    ECAM_RANGES.lock().clone()
}

/// The mechanism in use, for the report (`ecam` or `ports`; `none` before `init`).
pub fn mechanism() -> &'static str {
    match *ACCESS.lock() {
        Some(Access::Ecam(_)) => "ecam",
        Some(Access::Ports) => "ports",
        None => "none",
    }
}

/// One PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Bus.
    pub bus: u8,
    /// Device (0..32).
    pub dev: u8,
    /// Function (0..8).
    pub func: u8,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

impl core::fmt::Display for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{} [{:04x}:{:04x}]",
            self.bus, self.dev, self.func, self.vendor, self.device
        )
    }
}

fn read32_at(bus: u8, dev: u8, func: u8, off: u16) -> u32 {
    match ACCESS.lock().as_ref() {
        Some(Access::Ecam(w)) => w
            .iter()
            .find_map(|(r, m)| {
                let a = r.config_addr(bus, dev, func)?;
                m.sub((a - r.start()) as usize, 4096)
            })
            .map_or(u32::MAX, |m| m.read32(usize::from(off & 0xffc))),
        Some(Access::Ports) if off < 256 => io::pci_port_read32(bus, dev, func, off as u8),
        _ => u32::MAX,
    }
}

fn write32_at(bus: u8, dev: u8, func: u8, off: u16, v: u32) {
    match ACCESS.lock().as_ref() {
        Some(Access::Ecam(w)) => {
            if let Some(m) = w.iter().find_map(|(r, m)| {
                let a = r.config_addr(bus, dev, func)?;
                m.sub((a - r.start()) as usize, 4096)
            }) {
                m.write32(usize::from(off & 0xffc), v);
            }
        }
        Some(Access::Ports) if off < 256 => io::pci_port_write32(bus, dev, func, off as u8, v),
        _ => {}
    }
}

/// A memory BAR: its physical address (prefetchable or not; I/O BARs are not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// Memory space at this address.
    Mem(u64),
    /// An I/O port BAR (not used by the drivers here).
    Io(u32),
    /// Nothing: an unimplemented BAR, or the upper half of a 64-bit one.
    None,
}

/// BAR `i` (0..6) of a type-0 header whose dwords `read` gives: `None` for the upper half of
/// a 64-bit memory BAR (the BARs are walked from BAR 0, so an upper half whose bits look like
/// a 64-bit BAR's does not hide the next one), and for a 64-bit BAR 5 (no upper half).
/// Until 2026-12-05 the upper half was decoded as a BAR of its own (a memory BAR at its
/// value with the low bits masked; found by review: `pci.bar_upper_half_is_none`).
pub fn decode_bar(i: u8, read: impl Fn(u16) -> u32) -> Bar {
    let reg = |j: u8| read(0x10 + 4 * u16::from(j));
    let is_mem64 = |v: u32| v & 1 == 0 && (v >> 1) & 3 == 2;
    if i >= 6 {
        return Bar::None;
    }
    let mut j = 0;
    while j < i {
        j += if is_mem64(reg(j)) { 2 } else { 1 };
    }
    if j > i {
        // `i` is the upper half of BAR `i - 1`.
        return Bar::None;
    }
    let lo = reg(i);
    if lo & 1 == 1 {
        return Bar::Io(lo & !3);
    }
    let base = u64::from(lo & !0xf);
    let addr = if is_mem64(lo) {
        if i == 5 {
            return Bar::None;
        }
        base | (u64::from(reg(i + 1)) << 32)
    } else {
        base
    };
    if addr == 0 { Bar::None } else { Bar::Mem(addr) }
}

/// PCI command register bits.
const CMD_MEM: u32 = 1 << 1;
const CMD_BUS_MASTER: u32 = 1 << 2;
const CMD_INTX_DISABLE: u32 = 1 << 10;
/// At most this many capabilities are walked (256 bytes hold at most 48 of them).
const MAX_CAPS: usize = 48;

impl Function {
    /// The dword at `off` of configuration space.
    pub fn read32(&self, off: u16) -> u32 {
        read32_at(self.bus, self.dev, self.func, off)
    }
    /// Writes the dword at `off`.
    pub fn write32(&self, off: u16, v: u32) {
        write32_at(self.bus, self.dev, self.func, off, v);
    }
    /// The byte at `off`.
    pub fn read8(&self, off: u16) -> u8 {
        (self.read32(off & !3) >> (8 * (off & 3))) as u8
    }
    /// The 16-bit word at `off` (2-aligned).
    pub fn read16(&self, off: u16) -> u16 {
        (self.read32(off & !3) >> (8 * (off & 2))) as u16
    }
    /// Writes the 16-bit word at `off` (read-modify-write of its dword).
    pub fn write16(&self, off: u16, v: u16) {
        let sh = 8 * (off & 2);
        let old = self.read32(off & !3);
        self.write32(off & !3, (old & !(0xffff << sh)) | (u32::from(v) << sh));
    }

    /// BAR `i` (0..6) of a type-0 header ([`decode_bar`]).
    pub fn bar(&self, i: u8) -> Bar {
        decode_bar(i, |off| self.read32(off))
    }

    /// The register window `[off, off + len)` of memory BAR `bar`, mapped uncached
    /// ([`bar_window`]); `None` for an I/O or absent BAR or a window [`bar_window`] refuses.
    pub fn bar_window(&self, bar: u8, off: u64, len: usize) -> Option<Mmio> {
        match self.bar(bar) {
            Bar::Mem(base) => bar_window(base, off, len),
            _ => None,
        }
    }

    /// Memory decoding and bus mastering on, legacy INTx off (drivers use MSI-X or poll).
    pub fn enable(&self) {
        let c = self.read32(4);
        self.write32(
            4,
            (c & 0xffff) | CMD_MEM | CMD_BUS_MASTER | CMD_INTX_DISABLE,
        );
    }

    /// Bus mastering off (the device can no longer reach memory): before its memory is
    /// reused after a failure.
    pub fn disable_dma(&self) {
        let c = self.read32(4);
        self.write32(4, (c & 0xffff) & !CMD_BUS_MASTER);
    }

    /// Capabilities as (id, offset), bounded: a list that loops or points below the header
    /// ends the walk (and is logged).
    pub fn capabilities(&self) -> Vec<(u8, u16)> {
        let mut out = Vec::new();
        if self.read16(6) & (1 << 4) == 0 {
            return out;
        }
        let mut p = u16::from(self.read8(0x34) & 0xfc);
        while p != 0 {
            if p < 0x40 || out.len() == MAX_CAPS {
                log::warn!("PCI {self}: capability list broken at {p:#x}; walk stopped");
                break;
            }
            let id = self.read8(p);
            out.push((id, p));
            p = u16::from(self.read8(p + 1) & 0xfc);
        }
        out
    }
}

/// Every function present, bus by bus (all 256 buses: the scan does not depend on bridges
/// being configured). Cost: 8192 configuration reads plus one per extra function.
pub fn scan() -> Vec<Function> {
    let mut out = Vec::new();
    for bus in 0..=255u8 {
        for dev in 0..32u8 {
            let id = read32_at(bus, dev, 0, 0);
            if id as u16 == 0xffff {
                continue;
            }
            let multi = (read32_at(bus, dev, 0, 0xc) >> 16) & 0x80 != 0;
            for func in 0..if multi { 8 } else { 1 } {
                let id = read32_at(bus, dev, func, 0);
                if id as u16 == 0xffff {
                    continue;
                }
                out.push(Function {
                    bus,
                    dev,
                    func,
                    vendor: id as u16,
                    device: (id >> 16) as u16,
                });
            }
        }
    }
    out
}

/// The chipset's fixed range below 4 GiB: I/O APICs, HPET, TPM, the local APIC and the
/// MSI address window (`0xFEC0_0000..4 GiB`, the BIOS flash at its top). No PCI BAR belongs
/// there.
const CHIPSET_RANGE: core::ops::Range<u64> = 0xFEC0_0000..1 << 32;

/// The window `[base + off, base + off + len)` of a memory BAR at `base` (values the device
/// gives): `None` if the sum wraps, the window reaches into the chipset's range (a doorbell
/// or MSI-X table there would write the local APIC's EOI or an I/O APIC) or into an ECAM
/// window (a virtio common configuration there would write another function's configuration
/// header), or `mm::memory::mmio` refuses it (RAM, no page table). Until 2026-12-05 the
/// MSI-X table's address was `base + off` unchecked (a 64-bit BAR near the top wrapped into
/// low RAM, whose words the masking loop then wrote), windows below 4 GiB were not checked
/// against RAM at all, and windows over ECAM were accepted (found by review).
pub fn bar_window(base: u64, off: u64, len: usize) -> Option<Mmio> {
    let start = base.checked_add(off)?;
    let end = start.checked_add(len as u64)?;
    if start < CHIPSET_RANGE.end && CHIPSET_RANGE.start < end {
        return None;
    }
    if ECAM_RANGES
        .lock()
        .iter()
        .any(|r| start < r.end && r.start < end)
    {
        return None;
    }
    crate::mm::memory::mmio(start, len)
}

/// An enabled MSI-X capability: its vector table, mapped.
#[derive(Debug)]
pub struct Msix {
    table: Mmio,
    /// Table entries.
    pub entries: u16,
}

impl Msix {
    /// Enables MSI-X on `func` (capability at `cap`), every entry masked, or `None` when its
    /// table is not in a memory BAR the kernel can map.
    pub fn enable(func: &Function, cap: u16) -> Option<Msix> {
        let ctl = func.read16(cap + 2);
        let entries = (ctl & 0x7ff) + 1;
        let t = func.read32(cap + 4);
        let table = func.bar_window((t & 7) as u8, u64::from(t & !7), usize::from(entries) * 16)?;
        for i in 0..usize::from(entries) {
            table.write32(16 * i + 12, 1);
        }
        // Enable, function mask off.
        func.write16(cap + 2, (ctl | (1 << 15)) & !(1 << 14));
        Some(Msix { table, entries })
    }

    /// Aims entry `i` at local APIC `apic_id` (below 256: no interrupt remapping) with
    /// `vector`, fixed delivery, edge, and unmasks it. `false` if it cannot.
    pub fn set(&self, i: u16, apic_id: u32, vector: u8) -> bool {
        if i >= self.entries || apic_id > 255 {
            return false;
        }
        let e = 16 * usize::from(i);
        self.table.write32(e + 12, 1);
        self.table.write32(e, 0xFEE0_0000 | (apic_id << 12));
        self.table.write32(e + 4, 0);
        self.table.write32(e + 8, u32::from(vector));
        self.table.write32(e + 12, 0);
        true
    }

    /// Masks entry `i`.
    pub fn mask(&self, i: u16) {
        if i < self.entries {
            self.table.write32(16 * usize::from(i) + 12, 1);
        }
    }
}
