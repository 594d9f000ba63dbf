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

/// The physical ranges of the ECAM windows in use (every segment's the MCFG names that
/// [`window_ok`] accepts, mapped or not): configuration space, which no other device window
/// may overlap ([`bar_window`], virtio-mmio).
static ECAM_RANGES: Mutex<Vec<core::ops::Range<u64>>> = Mutex::new(Vec::new());

/// The loader's memory map, as boot passed it to [`init`]: no device window may overlap its
/// RAM ([`window_ok`]).
static MEMORY_MAP: Mutex<Vec<exo_arch::pvh::MemRegion>> = Mutex::new(Vec::new());

/// Whether the device window `[start, start + len)` may be mapped for a driver:
/// `exo_arch::pvh::device_window` (no wrap, no RAM, not in the chipset's range, no ECAM
/// window) against the memory map and ECAM windows [`init`] kept. The one rule for PCI
/// BARs ([`bar_window`]), ECAM windows ([`init`], with no ECAM list) and virtio-mmio
/// windows (`virtio::choose_mmio`).
pub fn window_ok(start: u64, len: u64) -> Result<(), exo_arch::pvh::WindowRefusal> {
    let map = MEMORY_MAP.lock();
    let ecam = ECAM_RANGES.lock();
    exo_arch::pvh::device_window(&map, &ecam, start, len)
}

/// Chooses the configuration mechanism: the segment-0 ECAM windows of the MCFG that
/// `exo_arch::pvh::device_window` accepts against `map` (no RAM, not in the chipset's
/// range) and the kernel can map (`mm::memory::mmio`), else the ports; keeps `map` for
/// [`window_ok`]. A refused window is logged and not used. Called once by boot. Until
/// 2026-12-05 ECAM windows were only checked against RAM (boot's
/// `refuse_windows_over_ram`), not against the chipset's range (found by review).
pub fn init(ecam: &[EcamRegion], map: &[exo_arch::pvh::MemRegion]) {
    {
        let mut m = MEMORY_MAP.lock();
        m.clear();
        m.extend_from_slice(map);
    }
    let ecam: Vec<EcamRegion> = ecam
        .iter()
        .filter_map(|r| {
            // Buses stated past the chipset's range's start are not decoded there: the
            // window is trimmed to those below it, not refused whole (review, 2026-12-05).
            let t = r.below(exo_arch::pvh::CHIPSET_RANGE.start).unwrap_or(*r);
            if t != *r {
                log::warn!(
                    "PCI: ECAM window at {:#x} (segment {}) states buses {}..={}, which reach the chipset's range: buses {}..={} used",
                    r.start(),
                    r.segment,
                    r.bus_start,
                    r.bus_end,
                    t.bus_start,
                    t.bus_end
                );
            }
            match exo_arch::pvh::device_window(map, &[], t.start(), t.len()) {
                Ok(()) => Some(t),
                Err(why) => {
                    log::warn!(
                        "PCI: ECAM window at {:#x} (segment {}, buses {}..={}) refused: {why}",
                        t.start(),
                        t.segment,
                        t.bus_start,
                        t.bus_end
                    );
                    None
                }
            }
        })
        .collect();
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
    // Every function gets its room in `SIZED` now, and the virtio functions (the ones the
    // drivers here take) are sized now, at boot, before anything uses them: until 2026-12-05
    // the first probe sized them and the list grew then, one heap object more after a test's
    // first probe than before it (`net.mq_control_late_answer` failed at q35 -smp 4 on a
    // tap-mq run whose first probe was that test's).
    let functions = scan();
    if SIZED.lock().try_reserve_exact(functions.len()).is_err() {
        log::warn!(
            "PCI: no memory to keep the BAR sizes of {} functions",
            functions.len()
        );
    }
    for f in functions.iter().filter(|f| f.vendor == VIRTIO_VENDOR) {
        let _ = f.bars();
    }
}

/// The PCI vendor id of virtio devices.
const VIRTIO_VENDOR: u16 = 0x1af4;

/// The physical ranges of the MCFG's ECAM windows (every segment; empty without an MCFG).
pub fn ecam_ranges() -> Vec<core::ops::Range<u64>> {
    super::copy_out(&ECAM_RANGES)
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

/// A BAR, decoded and sized ([`decode_bar`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// Memory space (prefetchable or not): `size` bytes at `addr`.
    Mem {
        /// Physical address.
        addr: u64,
        /// Bytes the BAR decodes (a power of two).
        size: u64,
    },
    /// An I/O port BAR (not used by the drivers here): `size` ports from `port`.
    Io {
        /// First port.
        port: u32,
        /// Ports the BAR decodes (a power of two).
        size: u32,
    },
    /// Nothing: an unimplemented BAR (size 0), one the firmware left unassigned (memory at
    /// address 0), or the upper half of a 64-bit one.
    None,
}

impl Bar {
    /// Bytes (memory) or ports (I/O) the BAR decodes; 0 for [`Bar::None`].
    pub fn size(&self) -> u64 {
        match *self {
            Bar::Mem { size, .. } => size,
            Bar::Io { size, .. } => u64::from(size),
            Bar::None => 0,
        }
    }

    /// `[off, off + len)` lies entirely within the BAR (an offset from its start).
    pub fn holds(&self, off: u64, len: u64) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.size())
    }

    /// The register window `[off, off + len)` of a memory BAR, mapped uncached: `None` for
    /// an I/O or absent BAR, a window that does not lie within the BAR's size, or one
    /// [`bar_window`] refuses.
    pub fn window(&self, off: u64, len: usize) -> Option<Mmio> {
        match *self {
            Bar::Mem { addr, .. } if self.holds(off, len as u64) => bar_window(addr, off, len),
            _ => None,
        }
    }
}

impl core::fmt::Display for Bar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let human = |f: &mut core::fmt::Formatter<'_>, n: u64| match n {
            n if n >= 1 << 30 && n.is_multiple_of(1 << 30) => write!(f, "{} GiB", n >> 30),
            n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => write!(f, "{} MiB", n >> 20),
            n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => write!(f, "{} KiB", n >> 10),
            n => write!(f, "{n} bytes"),
        };
        match *self {
            Bar::Mem { addr, size } => {
                write!(f, "memory at {addr:#x}, ")?;
                human(f, size)
            }
            Bar::Io { port, size } => write!(f, "I/O ports {port:#x}, {size} ports"),
            Bar::None => write!(f, "none"),
        }
    }
}

/// The size a BAR decodes, from its value `lo` (its type bits) and what its register (and,
/// for a 64-bit memory BAR, its upper half's) reads back after all ones were written
/// (`lo_mask`, `hi_mask`): the lowest address bit the device lets software set (PCI 3.0,
/// 6.2.5.1; the bits below it are hard-wired to 0). 0: the BAR is not implemented (every
/// address bit reads back 0). An I/O BAR's two low bits and a memory BAR's four are type
/// bits, not address bits; an I/O BAR's upper 16 bits may read back 0 (x86 ports are 16
/// bits), which leaves its size alone.
pub fn bar_size(lo: u32, lo_mask: u32, hi_mask: u32) -> u64 {
    let mask = if lo & 1 == 1 {
        u64::from(lo_mask & !3)
    } else if (lo >> 1) & 3 == 2 {
        (u64::from(hi_mask) << 32) | u64::from(lo_mask & !0xf)
    } else {
        u64::from(lo_mask & !0xf)
    };
    mask & mask.wrapping_neg()
}

/// BAR `i` (0..6) of a type-0 header whose dwords `read` gives, sized from `mask`, the dword
/// each BAR register reads back after all ones were written to it ([`bar_size`]): `None`
/// for the upper half of a 64-bit memory BAR (the BARs are walked from BAR 0, so an upper
/// half whose bits look like a 64-bit BAR's does not hide the next one), for a 64-bit BAR 5
/// (no upper half), for a BAR of size 0 (not implemented) and for a memory BAR at address 0
/// (not assigned). Until 2026-12-05 the upper half was decoded as a BAR of its own (a
/// memory BAR at its value with the low bits masked; found by review:
/// `pci.bar_upper_half_is_none`), and no BAR was sized, so a capability window a device
/// placed past its BAR's end was mapped as given (`pci.bar_size_from_the_all_ones_mask`).
pub fn decode_bar(i: u8, read: impl Fn(u16) -> u32, mask: impl Fn(u16) -> u32) -> Bar {
    let off = |j: u8| 0x10 + 4 * u16::from(j);
    let reg = |j: u8| read(off(j));
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
        // The lowest set bit of a 32-bit mask: the size fits in 32 bits.
        return match bar_size(lo, mask(off(i)), 0) {
            0 => Bar::None,
            size => Bar::Io {
                port: lo & !3,
                size: size as u32,
            },
        };
    }
    let base = u64::from(lo & !0xf);
    let (addr, size) = if is_mem64(lo) {
        if i == 5 {
            return Bar::None;
        }
        (
            base | (u64::from(reg(i + 1)) << 32),
            bar_size(lo, mask(off(i)), mask(off(i + 1))),
        )
    } else {
        (base, bar_size(lo, mask(off(i)), 0))
    };
    if addr == 0 || size == 0 {
        Bar::None
    } else {
        Bar::Mem { addr, size }
    }
}

/// The BARs of every function sized so far ([`Function::bars`]): each function is sized
/// once, at its first probe, before any driver has it; later probes (the tests probe the
/// same devices again and again) take these and write nothing.
static SIZED: Mutex<Vec<(Function, [Bar; 6])>> = Mutex::new(Vec::new());

/// PCI command register bits.
const CMD_IO: u32 = 1 << 0;
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

    /// The six BARs of a type-0 header (all `None` for any other header), decoded and
    /// sized. The first call for a function sizes them the standard way (PCI 3.0, 6.2.5.1):
    /// I/O and memory decoding off in the command register, all ones written to each BAR
    /// register (both halves of a 64-bit BAR) and the mask read back, the original value
    /// and then the command register restored exactly; each BAR is logged with its size.
    /// That first call must come before the function is in use: with decoding off, its
    /// registers do not answer. Later calls take the sizes kept in `SIZED`.
    pub fn bars(&self) -> [Bar; 6] {
        if let Some((_, b)) = SIZED.lock().iter().find(|(f, _)| f == self) {
            return *b;
        }
        if (self.read32(0xc) >> 16) & 0x7f != 0 {
            return [Bar::None; 6];
        }
        let off = |j: usize| 0x10 + 4 * j as u16;
        let orig: [u32; 6] = core::array::from_fn(|j| self.read32(off(j)));
        let cmd = self.read32(4) & 0xffff;
        // The status half of the dword is written as 0: its bits are cleared by writing 1.
        self.write32(4, cmd & !(CMD_IO | CMD_MEM));
        let mask: [u32; 6] = core::array::from_fn(|j| {
            self.write32(off(j), u32::MAX);
            let m = self.read32(off(j));
            self.write32(off(j), orig[j]);
            m
        });
        self.write32(4, cmd);
        for (j, &v) in orig.iter().enumerate() {
            let now = self.read32(off(j));
            if now != v {
                log::error!("PCI {self}: BAR register {j} reads {now:#x} after sizing, was {v:#x}");
            }
        }
        let get = |o: u16| orig[usize::from((o - 0x10) / 4)];
        let msk = |o: u16| mask[usize::from((o - 0x10) / 4)];
        let bars: [Bar; 6] = core::array::from_fn(|i| decode_bar(i as u8, get, msk));
        for (i, b) in bars.iter().enumerate().filter(|(_, b)| **b != Bar::None) {
            log::info!("PCI {self}: BAR {i}: {b}");
        }
        let mut sized = SIZED.lock();
        if sized.try_reserve(1).is_ok() {
            sized.push((*self, bars));
        }
        bars
    }

    /// Memory decoding on, legacy INTx off (drivers use MSI-X or poll); bus mastering left
    /// as it is (a driver turns it on once the device is reset: [`Function::enable_dma`]).
    pub fn enable_decoding(&self) {
        let c = self.read32(4);
        self.write32(4, (c & 0xffff) | CMD_MEM | CMD_INTX_DISABLE);
    }

    /// Bus mastering on (the device may reach memory): after its reset.
    pub fn enable_dma(&self) {
        let c = self.read32(4);
        self.write32(4, (c & 0xffff) | CMD_BUS_MASTER);
    }

    /// Whether bus mastering is on.
    pub fn dma_enabled(&self) -> bool {
        self.read32(4) & CMD_BUS_MASTER != 0
    }

    /// Bus mastering off (the device can no longer reach memory): before its memory is
    /// reused after a failure.
    pub fn disable_dma(&self) {
        let c = self.read32(4);
        self.write32(4, (c & 0xffff) & !CMD_BUS_MASTER);
    }

    /// Capabilities as (id, offset), bounded: a list that loops or points below the header
    /// ends the walk, and a capability whose body does not fit below 0x100 is left out (both
    /// logged; see [`walk_capabilities`]).
    pub fn capabilities(&self) -> Vec<(u8, u16)> {
        if self.read16(6) & (1 << 4) == 0 {
            return Vec::new();
        }
        walk_capabilities(
            |o| self.read8(o),
            |p, why| {
                log::warn!("PCI {self}: capability at {p:#x} {why}");
            },
        )
    }
}

/// The bytes a capability with id `id` at `at` must have in the standard configuration
/// space (below 0x100), `len` being its byte 2 (a vendor capability's own length): MSI-X 12,
/// a vendor-specific one (virtio's, 16 bytes and more) its length, at least 16; others 2
/// (id and next pointer: their bodies are not read here).
fn capability_fits(id: u8, at: u16, len: u8) -> bool {
    let need = match id {
        0x11 => 12,
        0x09 if len < 16 => return false,
        0x09 => u16::from(len),
        _ => 2,
    };
    at + need <= 0x100
}

/// The capability list of a function whose configuration bytes `read8` gives (its status
/// says it has one): (id, offset) pairs, at most [`MAX_CAPS`]. A pointer below the header
/// ends the walk; a capability whose body does not fit below 0x100 (or a vendor capability
/// shorter than virtio's 16 bytes) is left out, and the walk goes on (`bad(offset, why)`
/// says so). Until 2026-12-05 the bodies were not bounded: a capability at 0xF4..0xFC had
/// its fields read past 0x100, from the extended space through ECAM (unrelated registers
/// taken as an MSI-X table's BAR and offset, or a virtio window) and all ones through the
/// ports, and a short vendor capability took the next one's bytes as its window (found by
/// review; `pci.capability_bodies_past_the_standard_space_are_left_out`).
pub fn walk_capabilities(
    read8: impl Fn(u16) -> u8,
    mut bad: impl FnMut(u16, &str),
) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    let mut p = u16::from(read8(0x34) & 0xfc);
    let mut seen = 0;
    while p != 0 {
        if p < 0x40 || seen == MAX_CAPS {
            bad(
                p,
                "breaks the list (a loop, or below the header); walk stopped",
            );
            break;
        }
        seen += 1;
        let id = read8(p);
        if capability_fits(id, p, read8(p + 2)) {
            out.push((id, p));
        } else {
            bad(p, "does not fit below 0x100 (or is too short); left out");
        }
        p = u16::from(read8(p + 1) & 0xfc);
    }
    out
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

/// The window `[base + off, base + off + len)` of a memory BAR at `base` (values the device
/// gives): `None` if the sum wraps, [`window_ok`] refuses it (over RAM; in the chipset's
/// range, where a doorbell or MSI-X table would write the local APIC's EOI or an I/O APIC;
/// over an ECAM window, where a virtio common configuration would write another function's
/// configuration header), or `mm::memory::mmio` refuses it (RAM, no page table). Until
/// 2026-12-05 the MSI-X table's address was `base + off` unchecked (a 64-bit BAR near the
/// top wrapped into low RAM, whose words the masking loop then wrote), windows below 4 GiB
/// were not checked against RAM at all, and windows over ECAM were accepted (found by
/// review).
pub fn bar_window(base: u64, off: u64, len: usize) -> Option<Mmio> {
    let start = base.checked_add(off)?;
    window_ok(start, len as u64).ok()?;
    crate::mm::memory::mmio(start, len)
}

/// An MSI-X capability's layout: its table size and where its table and pending-bit array
/// are, all from one read of each of its registers ([`MsixLayout::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLayout {
    /// Table entries (the control word's Table Size + 1: 1..=2048).
    pub entries: u16,
    /// The BAR and offset of the vector table.
    table_at: (u8, u32),
    /// The BAR and offset of the pending-bit array.
    pba_at: (u8, u32),
}

impl MsixLayout {
    /// The layout the control word `ctl` (the capability's bytes 2..4) and the table and
    /// pending-bit-array registers `table` and `pba` (bytes 4..8, 8..12) describe.
    pub fn decode(ctl: u16, table: u32, pba: u32) -> Self {
        MsixLayout {
            entries: (ctl & 0x7ff) + 1,
            table_at: ((table & 7) as u8, table & !7),
            pba_at: ((pba & 7) as u8, pba & !7),
        }
    }

    /// The vector table as (BAR, offset, length): 16 bytes per entry, so exactly the
    /// entries [`Self::entries`] counts.
    pub fn table(&self) -> (u8, u64, u64) {
        let (bar, off) = self.table_at;
        (bar, u64::from(off), 16 * u64::from(self.entries))
    }

    /// The pending-bit array as (BAR, offset, length): one bit per entry, in 64-bit words.
    pub fn pba(&self) -> (u8, u64, u64) {
        let (bar, off) = self.pba_at;
        (
            bar,
            u64::from(off),
            8 * u64::from(self.entries).div_ceil(64),
        )
    }

    /// The layout of the MSI-X capability at `cap` of `func`, its control word read once.
    /// Whoever maps the table and counts its entries must take both from one such layout:
    /// the Table Size is the device's to report, and two reads may disagree. Until 2026-12-06
    /// the control word was read once for the entry count and again for the table's length,
    /// and a device reporting a larger size the first time had the masking loop write past
    /// the mapped table, a kernel panic (found by review:
    /// `pci.msix_table_size_is_read_once`).
    pub fn read(func: &Function, cap: u16) -> Self {
        let ctl = msix_control(func, cap);
        Self::decode(ctl, func.read32(cap + 4), func.read32(cap + 8))
    }
}

/// Fault injection for tests: the `n`-th read of an MSI-X control word from now (1: the
/// next; 0: off) reports the largest Table Size (2048 entries), as a device changing its
/// answer would (`pci.msix_table_size_is_read_once`). Counts down once per read.
pub static MSIX_SIZE_LIE_AT: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// The control word of the MSI-X capability at `cap` (with [`MSIX_SIZE_LIE_AT`] applied).
fn msix_control(func: &Function, cap: u16) -> u16 {
    use core::sync::atomic::Ordering::Relaxed;
    let ctl = func.read16(cap + 2);
    let was = MSIX_SIZE_LIE_AT.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    if was == Ok(1) { ctl | 0x7ff } else { ctl }
}

/// An enabled MSI-X capability: its vector table, mapped.
#[derive(Debug)]
pub struct Msix {
    table: Mmio,
    /// Table entries (each lies within the mapped table).
    pub entries: u16,
}

impl Msix {
    /// Enables MSI-X on `func` (capability at `cap`, its `layout` as [`MsixLayout::read`]
    /// gave it and the transport checked against its BAR, that BAR `bar` as
    /// [`Function::bars`] sized it), every entry masked, or `None` when its table is not in
    /// a memory BAR the kernel can map. The entry count is the layout's, never read again
    /// (and at most what the mapped table holds), so no entry written here or by
    /// [`Msix::set`] and [`Msix::mask`] lies past the table.
    pub fn enable(func: &Function, cap: u16, layout: &MsixLayout, bar: &Bar) -> Option<Msix> {
        let (_, off, len) = layout.table();
        let table = bar.window(off, len as usize)?;
        let entries = layout
            .entries
            .min(u16::try_from(table.len() / 16).unwrap_or(u16::MAX));
        for i in 0..usize::from(entries) {
            table.write32(16 * i + 12, 1);
        }
        // Enable, function mask off (the Table Size bits are read-only: this read's are not
        // used).
        let ctl = msix_control(func, cap);
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
