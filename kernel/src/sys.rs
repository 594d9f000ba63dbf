//! The kernel's audited raw-memory leaf: the few places where the kernel itself (not
//! `arch`/`percpu`) touches raw memory or hands out 'static state. Each block says why. It
//! imports nothing from the kernel (every subsystem may call it). The other audited files
//! are `mm/kalloc.rs`, `mm/memory.rs` (one block: high device windows), `sched/{cpu,thread,wake,idle,fpu}.rs`, `user/programs.rs` and
//! `harness/registry.rs`.
#![allow(unsafe_code, reason = "the kernel's single audited unsafe module")]

/// Zeroes the 4 KiB frame at physical `pa` (through the direct map).
pub fn zero_frame(pa: u64) {
    let va = exo_arch::layout::phys_to_virt(pa);
    // SAFETY: `pa` was just handed out by a frame allocator, so nothing else refers to it;
    // RAM is directly mapped writable in the boot tables (first 4 GiB, where boot frames
    // come from) and in the kernel tables (all of it).
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, 4096) };
}

/// The `len` bytes at physical `pa` as a 'static slice: a range boot kept out of the
/// allocator for good (the initrd module) and that nothing writes.
pub fn kept_phys(pa: u64, len: u64) -> &'static [u8] {
    let va = exo_arch::layout::phys_to_virt(pa);
    // SAFETY: `memory::init` reserved `[pa, pa + len)` (a PVH module) from every allocator,
    // it is directly mapped RAM (the loader placed it in RAM the memory map lists), never
    // written after boot, and lives as long as the kernel.
    unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) }
}

/// Copies `src` to physical `pa` (through the direct map); `[pa, pa + len)` must lie in one
/// frame the caller owns (a user page of a space it is building).
pub fn copy_to_phys(pa: u64, src: &[u8]) {
    assert!(
        pa % 4096 + src.len() as u64 <= 4096,
        "copy_to_phys crosses a frame"
    );
    let va = exo_arch::layout::phys_to_virt(pa);
    // SAFETY: the bytes lie in one frame of directly mapped RAM that the caller owns (the
    // assertion keeps them in it); `src` is a separate kernel buffer.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), va as *mut u8, src.len()) };
}

/// Copies from physical `pa` (through the direct map) into `dst`; same rule as
/// [`copy_to_phys`].
pub fn copy_from_phys(pa: u64, dst: &mut [u8]) {
    assert!(
        pa % 4096 + dst.len() as u64 <= 4096,
        "copy_from_phys crosses a frame"
    );
    let va = exo_arch::layout::phys_to_virt(pa);
    // SAFETY: as for `copy_to_phys`, reading.
    unsafe { core::ptr::copy_nonoverlapping(va as *const u8, dst.as_mut_ptr(), dst.len()) };
}

/// The u64 at physical `pa` (8-aligned, through the direct map), read in one access: a
/// word a running program writes meanwhile is never seen torn, as a byte copy could see it
/// (`copy_from_phys`' length is a variable: a `memcpy`).
pub fn load_phys_u64(pa: u64) -> u64 {
    assert!(pa.is_multiple_of(8), "load_phys_u64 of an unaligned word");
    let va = exo_arch::layout::phys_to_virt(pa);
    // SAFETY: directly mapped RAM (the caller's translation found the frame), 8-aligned (the
    // assertion); an atomic access, so a concurrent writer is no data race on the kernel's side.
    let w = unsafe { core::sync::atomic::AtomicU64::from_ptr(va as *mut u64) };
    w.load(core::sync::atomic::Ordering::Relaxed)
}

/// Stores `v` at physical `pa` in one access; same rule as [`load_phys_u64`].
pub fn store_phys_u64(pa: u64, v: u64) {
    assert!(pa.is_multiple_of(8), "store_phys_u64 of an unaligned word");
    let va = exo_arch::layout::phys_to_virt(pa);
    // SAFETY: as for `load_phys_u64`, writing.
    let w = unsafe { core::sync::atomic::AtomicU64::from_ptr(va as *mut u64) };
    w.store(v, core::sync::atomic::Ordering::Relaxed);
}

/// The `words` u64s at physical `pa` as a 'static slice (the buddy's bitmaps).
pub fn leak_words(pa: u64, words: usize) -> &'static mut [u64] {
    let va = exo_arch::layout::phys_to_virt(pa);
    // SAFETY: the caller carved `[pa, pa + 8 * words)` from the boot frame allocator for this
    // purpose alone (never handed out again), directly mapped writable RAM; zeroed here so
    // the slice is initialised.
    unsafe {
        core::ptr::write_bytes(va as *mut u64, 0, words);
        core::slice::from_raw_parts_mut(va as *mut u64, words)
    }
}

/// The one `&'static mut` ever made of the static at `p`, guarded by that static's own
/// `taken` flag (a second call panics). Callers pass `&raw mut` of a `static mut` that no
/// other code names (the BSP's per-CPU block, which exists before the allocator does).
#[allow(
    clippy::mut_from_ref,
    reason = "the flag, not the input, makes the result unique"
)]
pub fn take_once<T>(p: *mut T, taken: &'static core::sync::atomic::AtomicBool) -> &'static mut T {
    assert!(
        !taken.swap(true, core::sync::atomic::Ordering::AcqRel),
        "a static taken twice"
    );
    // SAFETY: the flag makes this the only reference ever created to the static, which
    // lives forever and is named nowhere else (the caller's contract).
    unsafe { &mut *p }
}

/// Switches this CPU to the kernel page tables at `root`.
pub fn load_cr3(root: u64) {
    // SAFETY: `root` maps the kernel image, the direct map of all RAM (allocator memory,
    // tables) and of the low 4 GiB's MMIO, and the stacks in use, at the addresses in use
    // now; built by `memory::init`.
    unsafe { exo_arch::cpu::load_cr3(root) };
}

/// Switches this CPU to the address space `root` tagged `pcid` (`keep`: keep that PCID's TLB
/// entries). Every root the kernel passes is the kernel tables' or one made by
/// `PageTables::new_user` from them, and all of them share the kernel half.
pub fn switch_space(root: u64, pcid: u16, keep: bool) {
    switch_space_cr3(SpaceCr3::of(root, pcid, keep));
}

/// What [`switch_space`] loads for a root, PCID and `keep`, computed once by the owner of
/// the space (the switch then loads one word: no PCID test on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceCr3(u64);

impl SpaceCr3 {
    /// The value for `root`, `pcid` and `keep`, under the same rules as [`switch_space`]'s
    /// arguments. Computed after the boot's PCID decision (spaces are made by processes).
    pub fn of(root: u64, pcid: u16, keep: bool) -> SpaceCr3 {
        SpaceCr3(exo_arch::tlb::cr3_value(root, pcid, keep))
    }
}

/// [`switch_space`] with the value computed beforehand.
#[inline(always)]
pub fn switch_space_cr3(v: SpaceCr3) {
    // SAFETY: `v` was computed by `SpaceCr3::of` (its only constructor), after the PCID
    // decision, from a root that maps the kernel half exactly as the current tables do
    // (`switch_space`'s rule: its upper PML4 entries are the kernel's own, which never change
    // once populated) and with `keep` only for a PCID whose entries shootdowns keep valid.
    unsafe { exo_arch::cpu::load_cr3(v.0) };
}

/// Reads the PVH start info the boot code passed.
pub fn read_start_info(paddr: u64) -> Result<exo_arch::pvh::BootInfo, exo_arch::pvh::PvhError> {
    // SAFETY: `paddr` is the loader's ebx, forwarded untouched by the boot code, read before
    // any allocation can reuse the memory it points to.
    unsafe { exo_arch::pvh::read(paddr) }
}

/// Physical memory reads for ACPI, through the direct map and bounded to it, so a bad table
/// pointer is an error, not a fault.
#[derive(Debug)]
pub struct PhysReader {
    /// Addresses at or above this are refused.
    pub limit: u64,
}

impl exo_acpi::PhysMem for PhysReader {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), exo_acpi::AcpiError> {
        // `exo_acpi::direct_map_readable` is the rule (host-tested under it): the whole range
        // below `limit`, page 0 included, so `find_rsdp_in_bios` reads the EBDA pointer at
        // 0x40E. Until 2026-12-06 page 0 was refused and the EBDA never scanned (found by
        // review).
        if !exo_acpi::direct_map_readable(self.limit, paddr, buf.len()) {
            return Err(exo_acpi::AcpiError::Read {
                paddr,
                len: buf.len(),
            });
        }
        let va = exo_arch::layout::phys_to_virt(paddr);
        // SAFETY: [paddr, paddr+len) lies below `limit`, inside the direct map of the tables
        // in use (boot tables: 4 GiB; kernel tables: all of RAM and the low 4 GiB, page 0
        // included), which maps every page from physical 0. ACPI tables and the BIOS data
        // area are ordinary memory: reading them has no side effect.
        unsafe { core::ptr::copy_nonoverlapping(va as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
}

/// Measures the TSC against reference clock `r` (boot, BSP only, before anything else uses
/// the PIT or the HPET).
pub fn calibrate_tsc_against(
    r: exo_arch::tsc::RefClock,
    ms: u64,
) -> Result<u64, exo_arch::tsc::CalibrationError> {
    // SAFETY: the caller passes the PIT (fixed ports, IRQ0 masked) or a PM timer / HPET at
    // the address the firmware's FADT / HPET table gives, inside the kernel's identity map
    // of the low 4 GiB (uncached for device memory); boot owns them on the BSP.
    unsafe { r.calibrate(ms) }
}

/// Installs `block` as this CPU's per-CPU block; returns the token that reaches it.
///
/// # Panics
/// If another CPU installed a block of another type (the token vouches for all of them).
pub fn install_percpu<E: 'static>(
    block: &'static mut exo_percpu::PerCpu<E>,
) -> exo_percpu::Installed<E> {
    static KIND: spin::Once<core::any::TypeId> = spin::Once::new();
    let kind = *KIND.call_once(core::any::TypeId::of::<E>);
    assert!(
        kind == core::any::TypeId::of::<E>(),
        "per-CPU blocks of two types"
    );
    // SAFETY: called once per CPU in its bring-up with interrupts off, before any gs: read;
    // the block is leaked ('static) and installed on this CPU only; its CPU id is the one
    // the boot CPU gave it (unique, MADT order); every block is a `PerCpu<E>` of one `E`
    // (the check above).
    unsafe { exo_percpu::install(block) }
}

/// Installs the AP trampoline.
pub fn install_trampoline(
    final_cr3: u64,
    nx: bool,
    stacks: &'static [u64],
    entry: exo_arch::smp::ApEntry,
) {
    // SAFETY: the trampoline page (0x8000) is below 1 MiB, which no allocator hands out; the
    // stack tops are leaked ('static) guarded stacks mapped in the kernel tables; no AP runs.
    unsafe {
        exo_arch::smp::install_trampoline(
            exo_arch::boot::boot_pml4(),
            final_cr3,
            nx,
            stacks.as_ptr(),
            stacks.len() as u32,
            entry,
        )
    };
}

/// A shared reference to a leaked (never freed) allocation.
pub fn leaked_ref<T>(p: *const T) -> &'static T {
    // SAFETY: callers pass pointers obtained from `Box::leak`, which live forever; only shared
    // references are created from here on (the unique one was consumed by the install).
    unsafe { &*p }
}

/// Turns a mailbox word back into the function stored by `cpus::post`.
pub fn remote_fn(word: u64) -> fn(u64) -> u64 {
    // SAFETY: the mailbox's `func` word is only written by `cpus::post`, from a
    // `fn(u64) -> u64`, and read after the `posted` release/acquire pair that publishes it.
    unsafe { core::mem::transmute::<usize, fn(u64) -> u64>(word as usize) }
}

/// Reads address 8 (`dangling::<u64>()`; the lower half is user space, unmapped in the
/// kernel's own tables): a deliberate page fault, for the test that a faulting thread is
/// killed alone.
pub fn deliberate_page_fault() -> u64 {
    // SAFETY: none needed for memory safety: the read faults before it returns anything
    // (`memory::init` maps nothing in the lower half); the fault handler never resumes this
    // code.
    unsafe { core::ptr::read_volatile(core::ptr::dangling::<u64>()) }
}

/// Device registers and the memory shared with devices (`dev`).
pub mod io {
    use exo_arch::layout::phys_to_virt;

    /// A device register window that is not RAM (a PCI BAR, the ECAM window, a virtio-mmio
    /// slot), mapped uncached at its direct-map address: below 4 GiB by `memory::init`,
    /// above by `mm::memory::mmio` on demand. Volatile accesses reach the device.
    /// Constructed by `dev` (through `mm::memory::mmio` where a window may lie above 4 GiB),
    /// from addresses the firmware's tables or the PCI BARs give.
    #[derive(Debug, Clone, Copy)]
    pub struct Mmio {
        va: usize,
        len: usize,
    }

    impl Mmio {
        /// The window `[pa, pa + len)`, or `None` if it is not below 4 GiB (the uncached part
        /// of the direct map that `memory::init` made; higher windows: [`Mmio::mapped`]).
        pub fn new(pa: u64, len: usize) -> Option<Self> {
            let end = pa.checked_add(len as u64)?;
            (pa != 0 && end <= 1 << 32).then(|| Self {
                va: phys_to_virt(pa) as usize,
                len,
            })
        }

        /// The window `[pa, pa + len)` above 4 GiB, which `mm::memory::mmio` has mapped
        /// uncached at its direct-map address.
        ///
        /// # Safety
        /// Every page of `[pa, pa + len)` must be mapped, uncached and writable, at
        /// `phys_to_virt(pa)` in the kernel half, for good, and must be device memory (no
        /// RAM the allocator hands out).
        pub unsafe fn mapped(pa: u64, len: usize) -> Self {
            Self {
                va: phys_to_virt(pa) as usize,
                len,
            }
        }

        /// The sub-window at `off` (`None` if it does not fit).
        pub fn sub(&self, off: usize, len: usize) -> Option<Self> {
            (off.checked_add(len)? <= self.len).then_some(Self {
                va: self.va + off,
                len,
            })
        }

        /// Bytes covered.
        pub fn len(&self) -> usize {
            self.len
        }

        fn at<T>(&self, off: usize) -> *mut T {
            assert!(
                off + core::mem::size_of::<T>() <= self.len
                    && off.is_multiple_of(core::mem::size_of::<T>()),
                "MMIO access at {off:#x} outside its {:#x}-byte window or misaligned",
                self.len
            );
            (self.va + off) as *mut T
        }

        /// Reads the 8-bit register at `off`.
        pub fn read8(&self, off: usize) -> u8 {
            // SAFETY: `at` keeps the access inside the window, which `new` took from a device
            // address in the uncached, always-mapped low 4 GiB of the direct map.
            unsafe { core::ptr::read_volatile(self.at(off)) }
        }
        /// Reads the 16-bit register at `off`.
        pub fn read16(&self, off: usize) -> u16 {
            // SAFETY: as for `read8`.
            unsafe { core::ptr::read_volatile(self.at(off)) }
        }
        /// Reads the 32-bit register at `off`.
        pub fn read32(&self, off: usize) -> u32 {
            // SAFETY: as for `read8`.
            unsafe { core::ptr::read_volatile(self.at(off)) }
        }
        /// Writes the 8-bit register at `off`.
        pub fn write8(&self, off: usize, v: u8) {
            // SAFETY: as for `read8`.
            unsafe { core::ptr::write_volatile(self.at(off), v) }
        }
        /// Writes the 16-bit register at `off`.
        pub fn write16(&self, off: usize, v: u16) {
            // SAFETY: as for `read8`.
            unsafe { core::ptr::write_volatile(self.at(off), v) }
        }
        /// Writes the 32-bit register at `off`.
        pub fn write32(&self, off: usize, v: u32) {
            // SAFETY: as for `read8`.
            unsafe { core::ptr::write_volatile(self.at(off), v) }
        }
        /// Writes a 64-bit register as two 32-bit halves, low first (virtio's rule).
        pub fn write64_split(&self, off: usize, v: u64) {
            self.write32(off, v as u32);
            self.write32(off + 4, (v >> 32) as u32);
        }
    }

    /// PCI configuration mechanism #1 (ports 0xCF8/0xCFC): reads the dword at `off` (4-aligned,
    /// < 256) of `bus:dev.func`.
    pub fn pci_port_read32(bus: u8, dev: u8, func: u8, off: u8) -> u32 {
        let addr = port_address(bus, dev, func, off);
        // SAFETY: 0xCF8/0xCFC are the PCI configuration ports on every PC platform; the
        // address/data pair is used by this module only, and callers serialise (`dev::pci`
        // takes its lock around each pair).
        unsafe {
            exo_arch::port::outl(0xCF8, addr);
            exo_arch::port::inl(0xCFC)
        }
    }

    /// Mechanism #1 write of the dword at `off` of `bus:dev.func`.
    pub fn pci_port_write32(bus: u8, dev: u8, func: u8, off: u8, v: u32) {
        let addr = port_address(bus, dev, func, off);
        // SAFETY: as for `pci_port_read32`.
        unsafe {
            exo_arch::port::outl(0xCF8, addr);
            exo_arch::port::outl(0xCFC, v);
        }
    }

    fn port_address(bus: u8, dev: u8, func: u8, off: u8) -> u32 {
        (1 << 31)
            | (u32::from(bus) << 16)
            | (u32::from(dev & 31) << 11)
            | (u32::from(func & 7) << 8)
            | u32::from(off & 0xfc)
    }

    /// Memory shared with devices, as `exo_virtio::Ram`: volatile accesses at direct-map
    /// addresses of frames a driver owns (virtqueue areas).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct DmaRam;

    impl exo_virtio::Ram for DmaRam {
        fn read_u16(&self, va: usize) -> u16 {
            // SAFETY: virtqueues are built only over `DmaFrame`s (below), which the driver owns
            // while the queue lives; `SplitQueue` keeps its offsets inside its layout.
            unsafe { core::ptr::read_volatile(va as *const u16) }
        }
        fn read_u32(&self, va: usize) -> u32 {
            // SAFETY: as for `read_u16`.
            unsafe { core::ptr::read_volatile(va as *const u32) }
        }
        fn write_u16(&self, va: usize, v: u16) {
            // SAFETY: as for `read_u16`.
            unsafe { core::ptr::write_volatile(va as *mut u16, v) }
        }
        fn write_u32(&self, va: usize, v: u32) {
            // SAFETY: as for `read_u16`.
            unsafe { core::ptr::write_volatile(va as *mut u32, v) }
        }
        fn write_u64(&self, va: usize, v: u64) {
            // SAFETY: as for `read_u16`.
            unsafe { core::ptr::write_volatile(va as *mut u64, v) }
        }
    }

    /// One 4 KiB frame of RAM a driver owns and shares with a device (queue areas, packet
    /// buffers). Made from a frame the allocator handed out (the caller gives up every other
    /// use of it); given back with [`DmaFrame::into_phys`].
    #[derive(Debug)]
    pub struct DmaFrame {
        pa: u64,
    }

    impl DmaFrame {
        /// Takes ownership of the allocated frame at `pa` and zeroes it.
        pub fn from_owned(pa: u64) -> Self {
            super::zero_frame(pa);
            Self { pa }
        }
        /// Physical address (what the device is told).
        pub fn pa(&self) -> u64 {
            self.pa
        }
        /// Direct-map address (what the driver uses).
        pub fn va(&self) -> usize {
            phys_to_virt(self.pa) as usize
        }
        /// The frame given back (to free it).
        pub fn into_phys(self) -> u64 {
            self.pa
        }
        /// Bytes `[off, off + len)`: only while the device does not own them (a buffer the
        /// device returned, or one not yet given to it).
        pub fn bytes(&self, off: usize, len: usize) -> &[u8] {
            assert!(off + len <= 4096, "DMA slice past its frame");
            // SAFETY: inside a frame this value owns (directly mapped RAM); `&self` keeps the
            // frame alive and un-freed; the device does not write a buffer the driver holds.
            unsafe { core::slice::from_raw_parts((self.va() + off) as *const u8, len) }
        }
        /// Mutable bytes `[off, off + len)`, same rule.
        pub fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
            assert!(off + len <= 4096, "DMA slice past its frame");
            // SAFETY: as for `bytes`; `&mut self` makes the slice unique.
            unsafe { core::slice::from_raw_parts_mut((self.va() + off) as *mut u8, len) }
        }
    }
}
