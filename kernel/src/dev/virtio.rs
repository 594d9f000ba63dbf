//! Virtio transports: modern virtio-pci (capabilities naming the common, notify, ISR and
//! device configuration windows in the BARs) and virtio-mmio version 2 (the windows the
//! DSDT or the command line name: [`init_mmio`]),
//! behind one [`Transport`], plus the initialisation handshake: reset with a deadline,
//! feature negotiation, queue set-up, `DRIVER_OK`. A device that refuses, lacks what the
//! driver needs or stops answering gets a [`VirtioError`] and the `FAILED` status.

use super::pci::{Bar, Function};
use crate::smp::time::Deadline;
use crate::sys::io::Mmio;
use exo_virtio::queue::Layout;

/// Device status bits.
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 128;
}

/// Virtio device type of a network card.
pub const DEVICE_NET: u32 = 1;
const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"

/// The virtio-mmio windows the drivers probe: those the firmware's DSDT describes (QEMU's
/// microvm) and those the command line names (`virtio_mmio.device=`: microvm without ACPI,
/// Firecracker), checked and each once. Until 2026-12-05 the drivers read microvm's 24
/// slots at 0xFEB00000 on every machine (device registers of somebody else's on any other)
/// and never found a device elsewhere (Firecracker's are at 0xD0000000).
static MMIO_WINDOWS: spin::Mutex<alloc::vec::Vec<(u64, u32)>> =
    spin::Mutex::new(alloc::vec::Vec::new());

/// Takes the windows to probe (boot, once, after `pci::init`): usable ones
/// ([`exo_acpi::VirtioMmio::is_usable`]) that `pci::window_ok` accepts (not RAM, not in the
/// chipset's range, not over ECAM) and that overlap none taken before, the DSDT's first; the
/// others are refused with a warning. Until 2026-12-05 the chipset's range and ECAM were not
/// checked: `virtio_mmio.device=512@0xfee00000:5` was probed over the local APIC (found by
/// review).
pub fn init_mmio(dsdt: &[exo_acpi::VirtioMmio], cmdline: &[exo_virtio::mmio::CmdlineDevice]) {
    *MMIO_WINDOWS.lock() = choose_mmio(dsdt, cmdline);
}

/// The windows [`init_mmio`] takes (logged, each refusal with its reason).
pub(super) fn choose_mmio(
    dsdt: &[exo_acpi::VirtioMmio],
    cmdline: &[exo_virtio::mmio::CmdlineDevice],
) -> alloc::vec::Vec<(u64, u32)> {
    let named = cmdline.iter().map(|d| exo_acpi::VirtioMmio {
        base: d.base,
        len: u32::try_from(d.size).unwrap_or(u32::MAX),
        gsi: Some(d.irq),
    });
    let mut taken: alloc::vec::Vec<(u64, u32)> = alloc::vec::Vec::new();
    for (w, from) in dsdt
        .iter()
        .map(|w| (*w, "DSDT"))
        .chain(named.map(|w| (w, "command line")))
    {
        let end = w.base.saturating_add(u64::from(w.len));
        if taken.iter().any(|&(b, l)| b == w.base && l == w.len) {
            continue;
        }
        let overlaps = taken
            .iter()
            .any(|&(b, l)| b < end && w.base < b + u64::from(l));
        let window = super::pci::window_ok(w.base, u64::from(w.len)).err();
        let refusal: Option<&dyn core::fmt::Display> = if !w.is_usable() {
            Some(&"unaligned, shorter than 512 bytes, longer than 64 KiB or past 4 GiB")
        } else if let Some(why) = &window {
            Some(why)
        } else if overlaps {
            Some(&"overlaps one taken")
        } else if taken.try_reserve(1).is_err() {
            Some(&"out of memory")
        } else {
            None
        };
        if let Some(why) = refusal {
            log::warn!(
                "virtio-mmio: window at {:#x} ({} bytes, from the {from}) refused: {why}",
                w.base,
                w.len,
            );
            continue;
        }
        log::info!(
            "virtio-mmio: window at {:#x} ({} bytes, from the {from})",
            w.base,
            w.len
        );
        taken.push((w.base, w.len));
    }
    taken
}

/// The virtio-mmio windows to probe (base, length), as [`init_mmio`] took them.
pub fn mmio_windows() -> alloc::vec::Vec<(u64, u32)> {
    super::copy_out(&MMIO_WINDOWS)
}

/// Why a device was not brought up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioError {
    /// A capability or register window the transport needs is missing or unusable.
    Transport(&'static str),
    /// A virtio-mmio device of version 1 (legacy); QEMU needs
    /// `-global virtio-mmio.force-legacy=false`.
    LegacyMmio,
    /// The device did not finish its reset within the deadline.
    ResetTimeout,
    /// Feature negotiation failed.
    Features(exo_virtio::features::FeatureError),
    /// The device cleared `FEATURES_OK`: it refuses the accepted subset.
    FeaturesRefused,
    /// Queue `q` is absent or its size unusable.
    Queue(u16, &'static str),
    /// No memory for queues or buffers.
    OutOfMemory,
    /// A queue broke the protocol.
    Protocol(exo_virtio::queue::QueueError),
    /// The control queue's answer was an error or never came.
    Control(&'static str),
    /// A window the device names (a virtio capability's, the MSI-X table or pending-bit
    /// array) does not lie entirely within its BAR: the device is not used.
    OutsideBar {
        /// Which window.
        what: Window,
        /// The BAR it names.
        bar: u8,
        /// Its offset in the BAR.
        off: u64,
        /// Its length.
        len: u64,
        /// The BAR's size (0: not implemented, not assigned, or no such BAR).
        size: u64,
    },
    /// Every transmit buffer has been the device's for longer than the stall limit.
    TxStalled {
        /// Milliseconds without a buffer coming back.
        ms: u64,
    },
    /// Queue pair `index` may not transmit: the device was told to use pairs `0..active`
    /// only (`VQ_PAIRS_SET`; 0: its device is no longer up).
    PairInactive {
        /// The pair.
        index: u16,
        /// The pairs the device uses.
        active: u16,
    },
}

impl core::fmt::Display for VirtioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VirtioError::Transport(w) => write!(f, "transport: {w}"),
            VirtioError::LegacyMmio => write!(
                f,
                "legacy virtio-mmio (version 1) device: not supported (QEMU: -global virtio-mmio.force-legacy=false)"
            ),
            VirtioError::ResetTimeout => write!(f, "device did not finish its reset in 1 s"),
            VirtioError::Features(e) => write!(f, "{e}"),
            VirtioError::FeaturesRefused => write!(f, "device refused the negotiated features"),
            VirtioError::Queue(q, w) => write!(f, "queue {q}: {w}"),
            VirtioError::OutOfMemory => write!(f, "out of memory for queues or buffers"),
            VirtioError::Protocol(e) => write!(f, "device broke the queue protocol: {e}"),
            VirtioError::Control(w) => write!(f, "control queue: {w}"),
            VirtioError::OutsideBar {
                what,
                bar,
                off,
                len,
                size,
            } => {
                write!(
                    f,
                    "{what} window at {off:#x} ({len:#x} bytes) runs past the end of BAR {bar} "
                )?;
                if *size == 0 {
                    write!(f, "(not implemented, not assigned, or no such BAR)")
                } else {
                    write!(f, "({size:#x} bytes)")
                }
            }
            VirtioError::TxStalled { ms } => write!(
                f,
                "device returned no transmit buffer in {ms} ms with all of them in flight"
            ),
            VirtioError::PairInactive { index, active } => write!(
                f,
                "queue pair {index} may not transmit: the device uses pairs 0..{active}"
            ),
        }
    }
}

/// Fault injection for tests: the next [`Transport::reset`] reports a timeout after the
/// device did reset (the shutdown path of a device that does not acknowledge one).
pub static FAIL_NEXT_RESET: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// PCI bring-ups ([`Transport::begin`]), and those whose device had bus mastering on when
/// it was reset (must stay 0: `net.no_dma_before_the_reset`).
pub static PCI_BEGINS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
/// See [`PCI_BEGINS`].
pub static DMA_ON_AT_RESET: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Fault injection for tests: the next queue-size read-back of a PCI transport
/// ([`Transport::setup_queue`]) sees a size other than the one written, as a device keeping
/// its own would (`net.queue_size_not_taken_fails_the_device`).
pub static FAIL_NEXT_QSIZE: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// A window in a PCI BAR that a device names, for [`VirtioError::OutsideBar`] and
/// [`FAIL_NEXT_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Window {
    /// The virtio common configuration.
    Common = 1,
    /// The virtio notification (doorbell) window.
    Notify = 2,
    /// The virtio ISR status.
    Isr = 3,
    /// The virtio device-specific configuration.
    Device = 4,
    /// The MSI-X vector table.
    MsixTable = 5,
    /// The MSI-X pending-bit array.
    MsixPba = 6,
}

impl Window {
    /// Every window, in the order above.
    pub const ALL: [Window; 6] = [
        Window::Common,
        Window::Notify,
        Window::Isr,
        Window::Device,
        Window::MsixTable,
        Window::MsixPba,
    ];
}

impl core::fmt::Display for Window {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Window::Common => "common-configuration",
            Window::Notify => "notify",
            Window::Isr => "ISR",
            Window::Device => "device-configuration",
            Window::MsixTable => "MSI-X table",
            Window::MsixPba => "MSI-X pending-bit array",
        })
    }
}

/// Fault injection for tests: [`Window`] `as u8` (0: none). The next [`Transport::pci`] sees
/// the first such window its device names grown to end one byte past its BAR's end, as a
/// device placing it there would (`pci.window_past_its_bar_fails_the_device`).
pub static FAIL_NEXT_WINDOW: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// Checks the window `[off, off + len)` that the device names for `what` in BAR `bar` of
/// `bars` (the sizes [`Function::bars`] found): its length as the transport is to use it,
/// or [`VirtioError::OutsideBar`] when it does not lie entirely within the BAR. Once when
/// [`FAIL_NEXT_WINDOW`] names `what`, the window is seen grown to end one byte past the
/// BAR's end (test).
fn check_window(
    bars: &[Bar; 6],
    what: Window,
    bar: u8,
    off: u64,
    len: u64,
) -> Result<u64, VirtioError> {
    let b = bars.get(usize::from(bar)).copied().unwrap_or(Bar::None);
    let ord = core::sync::atomic::Ordering::Relaxed;
    let len = if FAIL_NEXT_WINDOW
        .compare_exchange(what as u8, 0, ord, ord)
        .is_ok()
    {
        b.size().saturating_sub(off) + 1
    } else {
        len
    };
    if b.holds(off, len) {
        Ok(len)
    } else {
        Err(VirtioError::OutsideBar {
            what,
            bar,
            off,
            len,
            size: b.size(),
        })
    }
}

/// Register access for one device.
#[derive(Debug)]
pub enum Transport {
    /// Modern virtio-pci.
    Pci {
        /// The PCI function.
        func: Function,
        /// `virtio_pci_common_cfg`.
        common: Mmio,
        /// The notification window and its multiplier.
        notify: (Mmio, u32),
        /// Device-specific configuration.
        device: Mmio,
        /// MSI-X capability offset, its layout (read once, checked against its BAR) and the
        /// BAR of its table (sized: [`Function::bars`]), if any.
        msix: Option<(u16, super::pci::MsixLayout, Bar)>,
    },
    /// virtio-mmio version 2 at this window.
    Mmio(Mmio),
}

// virtio_pci_common_cfg offsets.
const C_DFSEL: usize = 0x00;
const C_DF: usize = 0x04;
const C_GFSEL: usize = 0x08;
const C_GF: usize = 0x0c;
const C_CFGMSIX: usize = 0x10;
const C_STATUS: usize = 0x14;
const C_QSEL: usize = 0x16;
const C_QSIZE: usize = 0x18;
const C_QMSIX: usize = 0x1a;
const C_QENABLE: usize = 0x1c;
const C_QNOFF: usize = 0x1e;
const C_QDESC: usize = 0x20;
const C_QDRIVER: usize = 0x28;
const C_QDEVICE: usize = 0x30;

// virtio-mmio register offsets.
const M_MAGIC: usize = 0x000;
const M_VERSION: usize = 0x004;
const M_DEVICE: usize = 0x008;
const M_DF: usize = 0x010;
const M_DFSEL: usize = 0x014;
const M_GF: usize = 0x020;
const M_GFSEL: usize = 0x024;
const M_QSEL: usize = 0x030;
const M_QMAX: usize = 0x034;
const M_QNUM: usize = 0x038;
const M_QREADY: usize = 0x044;
const M_NOTIFY: usize = 0x050;
const M_STATUS: usize = 0x070;
const M_QDESC: usize = 0x080;
const M_QDRIVER: usize = 0x090;
const M_QDEVICE: usize = 0x0a0;
const M_CONFIG: usize = 0x100;

/// Where to ring a queue's doorbell: a 16-bit (PCI) or 32-bit (MMIO) write of the queue
/// index to this register.
#[derive(Debug, Clone, Copy)]
pub struct Doorbell {
    reg: Mmio,
    queue: u16,
    wide: bool,
}

impl Doorbell {
    /// Tells the device the queue has new buffers.
    #[inline]
    pub fn ring(&self) {
        if self.wide {
            self.reg.write32(0, u32::from(self.queue));
        } else {
            self.reg.write16(0, self.queue);
        }
    }
}

impl Transport {
    /// The modern transport of a virtio PCI function (vendor 0x1af4, device 0x1040 + type
    /// or a transitional id): its capabilities must name the common, notify and device
    /// windows in memory BARs the kernel can map (`mm::memory::mmio`: below 4 GiB, or above
    /// RAM's direct map). Its BARs are sized ([`Function::bars`]: at the first probe, before
    /// anything is enabled) and every window it names (the common, notify, ISR and device
    /// windows of each virtio capability, and the MSI-X table and pending-bit array) must lie
    /// entirely within its BAR: one that does not is [`VirtioError::OutsideBar`] and the
    /// device is not touched. Until 2026-12-05 the BARs were not sized and such a window was
    /// mapped as the device gave it, running into whatever follows the BAR (found by review:
    /// `pci.window_past_its_bar_fails_the_device`).
    pub fn pci(func: Function) -> Result<Self, VirtioError> {
        let bars = func.bars();
        let caps = func.capabilities();
        let mut common = None;
        let mut notify = None;
        let mut device = None;
        let mut msix = None;
        for &(id, at) in &caps {
            if id == 0x11 && msix.is_none() {
                let l = super::pci::MsixLayout::read(&func, at);
                for (what, (bar, off, len)) in
                    [(Window::MsixTable, l.table()), (Window::MsixPba, l.pba())]
                {
                    check_window(&bars, what, bar, off, len)?;
                }
                let table_bar = bars.get(usize::from(l.table().0)).copied();
                msix = Some((at, l, table_bar.unwrap_or(Bar::None)));
            }
            // A vendor capability in the list has its 16 bytes below 0x100
            // (`pci::walk_capabilities`).
            if id != 0x09 {
                continue;
            }
            let cfg_type = func.read8(at + 3);
            let bar = func.read8(at + 4);
            let offset = func.read32(at + 8) as usize;
            let length = u64::from(func.read32(at + 12));
            // Values 6 and up name no BAR: such a capability is ignored (virtio 1.2,
            // 4.1.4.1); types past the device configuration are not used here.
            let what = match cfg_type {
                1 => Window::Common,
                2 => Window::Notify,
                3 => Window::Isr,
                4 => Window::Device,
                _ => continue,
            };
            if bar >= 6 {
                continue;
            }
            let length = check_window(&bars, what, bar, offset as u64, length)? as usize;
            // The spec's structures start 4-byte aligned, and a notify register (16 bits) at an
            // even multiple: anything else would make the register accesses unaligned, so
            // such a window is not used (the missing window is then the device's error).
            let window = || {
                offset
                    .is_multiple_of(4)
                    .then(|| bars[usize::from(bar)].window(offset as u64, length))?
            };
            match cfg_type {
                1 if common.is_none() => common = window(),
                // The notify capability is 20 bytes: its multiplier follows the common part
                // (a shorter one would give the next capability's bytes as the multiplier).
                2 if notify.is_none() && func.read8(at + 2) >= 20 => {
                    let mult = func.read32(at + 16);
                    notify = window()
                        .filter(|_| mult.is_multiple_of(2))
                        .map(|w| (w, mult));
                }
                4 if device.is_none() => device = window(),
                _ => {}
            }
        }
        let common = common.ok_or(VirtioError::Transport(
            "no usable common-configuration capability (legacy-only device, or a BAR that cannot be mapped)",
        ))?;
        if common.len() < 0x38 {
            return Err(VirtioError::Transport(
                "common configuration window too small",
            ));
        }
        let notify = notify.ok_or(VirtioError::Transport("no usable notify capability"))?;
        let device = device.ok_or(VirtioError::Transport(
            "no usable device-configuration capability",
        ))?;
        func.enable_decoding();
        Ok(Transport::Pci {
            func,
            common,
            notify,
            device,
            msix,
        })
    }

    /// The virtio-mmio device in the window `[base, base + len)`, if one of type `want` is
    /// there (`None` too for a window that cannot be mapped uncached: over RAM).
    pub fn mmio(base: u64, len: u32, want: u32) -> Option<Result<Self, VirtioError>> {
        let m = crate::mm::memory::mmio(base, len as usize)?;
        if m.read32(M_MAGIC) != MMIO_MAGIC || m.read32(M_DEVICE) != want {
            return None;
        }
        Some(match m.read32(M_VERSION) {
            2 => Ok(Transport::Mmio(m)),
            1 => Err(VirtioError::LegacyMmio),
            _ => Err(VirtioError::Transport("unknown virtio-mmio version")),
        })
    }

    /// The device status byte.
    pub fn status(&self) -> u8 {
        match self {
            Transport::Pci { common, .. } => common.read8(C_STATUS),
            Transport::Mmio(m) => m.read32(M_STATUS) as u8,
        }
    }

    /// Writes the status byte.
    pub fn set_status(&self, s: u8) {
        match self {
            Transport::Pci { common, .. } => common.write8(C_STATUS, s),
            Transport::Mmio(m) => m.write32(M_STATUS, u32::from(s)),
        }
    }

    /// Resets the device and waits (up to 1 s) until it reads back 0.
    pub fn reset(&self) -> Result<(), VirtioError> {
        self.set_status(0);
        let d = Deadline::after_ms(1000);
        while self.status() != 0 {
            if d.passed() {
                return Err(VirtioError::ResetTimeout);
            }
            core::hint::spin_loop();
        }
        if FAIL_NEXT_RESET.swap(false, core::sync::atomic::Ordering::Relaxed) {
            return Err(VirtioError::ResetTimeout);
        }
        Ok(())
    }

    /// Stops the device's DMA where the transport can (PCI: bus mastering off; MMIO has no
    /// such switch).
    pub fn stop_dma(&self) {
        if let Transport::Pci { func, .. } = self {
            func.disable_dma();
        }
    }

    /// Whether the device can reach memory through bus mastering (PCI); `false` on MMIO,
    /// which has no such switch.
    pub fn dma_enabled(&self) -> bool {
        match self {
            Transport::Pci { func, .. } => func.dma_enabled(),
            Transport::Mmio(_) => false,
        }
    }

    /// Bus mastering on, where there is one (PCI): after the device's reset.
    pub fn allow_dma(&self) {
        if let Transport::Pci { func, .. } = self {
            func.enable_dma();
        }
    }

    /// The 64 feature bits the device offers.
    pub fn device_features(&self) -> u64 {
        let (sel, val, w) = match self {
            Transport::Pci { common, .. } => (C_DFSEL, C_DF, common),
            Transport::Mmio(m) => (M_DFSEL, M_DF, m),
        };
        w.write32(sel, 0);
        let lo = w.read32(val);
        w.write32(sel, 1);
        let hi = w.read32(val);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    /// Writes the accepted feature bits.
    pub fn set_driver_features(&self, f: u64) {
        let (sel, val, w) = match self {
            Transport::Pci { common, .. } => (C_GFSEL, C_GF, common),
            Transport::Mmio(m) => (M_GFSEL, M_GF, m),
        };
        w.write32(sel, 0);
        w.write32(val, f as u32);
        w.write32(sel, 1);
        w.write32(val, (f >> 32) as u32);
    }

    /// The largest size of queue `q` (0: no such queue).
    pub fn queue_max(&self, q: u16) -> u16 {
        match self {
            Transport::Pci { common, .. } => {
                common.write16(C_QSEL, q);
                common.read16(C_QSIZE)
            }
            Transport::Mmio(m) => {
                m.write32(M_QSEL, u32::from(q));
                m.read32(M_QMAX).min(u32::from(u16::MAX)) as u16
            }
        }
    }

    /// Gives queue `q` its areas (and MSI-X vector entry) and enables it; returns its
    /// doorbell. On PCI the queue size is read back first: a device that keeps another size
    /// (a larger one would write used entries past the ring's frame, into unrelated kernel
    /// memory) fails the queue before it learns any address. Until 2026-12-05 the size was
    /// written and never checked (found by review). virtio-mmio's `QueueNum` is write-only:
    /// not checked there.
    pub fn setup_queue(
        &self,
        q: u16,
        l: &Layout,
        msix_entry: Option<u16>,
    ) -> Result<Doorbell, VirtioError> {
        match self {
            Transport::Pci { common, notify, .. } => {
                common.write16(C_QSEL, q);
                common.write16(C_QSIZE, l.size);
                let mut size = common.read16(C_QSIZE);
                if FAIL_NEXT_QSIZE.swap(false, core::sync::atomic::Ordering::Relaxed) {
                    size = size.wrapping_add(1);
                }
                if size != l.size {
                    return Err(VirtioError::Queue(
                        q,
                        "device did not take the queue size written (reads back another)",
                    ));
                }
                common.write64_split(C_QDESC, l.desc.1);
                common.write64_split(C_QDRIVER, l.avail.1);
                common.write64_split(C_QDEVICE, l.used.1);
                if let Some(v) = msix_entry {
                    common.write16(C_QMSIX, v);
                    if common.read16(C_QMSIX) != v {
                        return Err(VirtioError::Queue(q, "device refused its MSI-X vector"));
                    }
                }
                let off = usize::from(common.read16(C_QNOFF)) * notify.1 as usize;
                let reg = notify.0.sub(off, 2).ok_or(VirtioError::Queue(
                    q,
                    "notify offset outside the notify window",
                ))?;
                common.write16(C_QENABLE, 1);
                Ok(Doorbell {
                    reg,
                    queue: q,
                    wide: false,
                })
            }
            Transport::Mmio(m) => {
                m.write32(M_QSEL, u32::from(q));
                m.write32(M_QNUM, u32::from(l.size));
                m.write64_split(M_QDESC, l.desc.1);
                m.write64_split(M_QDRIVER, l.avail.1);
                m.write64_split(M_QDEVICE, l.used.1);
                m.write32(M_QREADY, 1);
                let reg = m
                    .sub(M_NOTIFY, 4)
                    .ok_or(VirtioError::Transport("notify register"))?;
                Ok(Doorbell {
                    reg,
                    queue: q,
                    wide: true,
                })
            }
        }
    }

    /// Device configuration byte at `off`.
    pub fn config8(&self, off: usize) -> u8 {
        match self {
            Transport::Pci { device, .. } if off < device.len() => device.read8(off),
            Transport::Mmio(m) => m.read8(M_CONFIG + off),
            _ => 0,
        }
    }

    /// Device configuration 16-bit field at `off`.
    pub fn config16(&self, off: usize) -> u16 {
        u16::from(self.config8(off)) | (u16::from(self.config8(off + 1)) << 8)
    }

    /// Enables MSI-X (PCI with the capability), every entry masked, configuration changes
    /// on no vector; `None` elsewhere (MMIO devices are polled).
    pub fn enable_msix(&self) -> Option<super::pci::Msix> {
        let Transport::Pci {
            func,
            msix: Some((cap, layout, bar)),
            common,
            ..
        } = self
        else {
            return None;
        };
        let m = super::pci::Msix::enable(func, *cap, layout, bar)?;
        common.write16(C_CFGMSIX, 0xffff);
        Some(m)
    }

    /// Handshake up to `FEATURES_OK`: reset, acknowledge, negotiate (`negotiate` maps the
    /// offered bits to those accepted: `exo_virtio::features::negotiate` or a device type's
    /// own, such as `negotiate_net`). Returns the accepted features.
    pub fn begin(
        &self,
        negotiate: impl FnOnce(u64) -> Result<u64, exo_virtio::features::FeatureError>,
    ) -> Result<u64, VirtioError> {
        // Bus mastering off until the device is reset: one left running by firmware (or a
        // previous kernel) must not write into memory meanwhile. Until 2026-12-05
        // `Transport::pci` turned it on before the reset. A device that does not
        // acknowledge the reset: `FAILED`, its DMA left off (until 2026-12-04 only its error
        // went back; found by review).
        self.stop_dma();
        if let Transport::Pci { func, .. } = self {
            PCI_BEGINS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            if func.dma_enabled() {
                DMA_ON_AT_RESET.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
        }
        self.reset().map_err(|e| self.fail(e))?;
        self.allow_dma();
        self.set_status(status::ACKNOWLEDGE);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let offered = self.device_features();
        let accepted = negotiate(offered).map_err(|e| self.fail(VirtioError::Features(e)))?;
        self.set_driver_features(accepted);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        if self.status() & status::FEATURES_OK == 0 {
            return Err(self.fail(VirtioError::FeaturesRefused));
        }
        Ok(accepted)
    }

    /// The device is live.
    pub fn driver_ok(&self) {
        self.set_status(
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
    }

    /// Marks the device failed (and, on PCI, stops its DMA); returns `e` for `?`.
    pub fn fail(&self, e: VirtioError) -> VirtioError {
        self.set_status(self.status() | status::FAILED);
        if let Transport::Pci { func, .. } = self {
            func.disable_dma();
        }
        e
    }
}
