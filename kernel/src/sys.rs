//! The kernel's audited raw-memory leaf: the few places where the kernel itself (not
//! `arch`/`percpu`) touches raw memory or hands out 'static state. Each block says why. It
//! imports nothing from the kernel (every subsystem may call it). The other audited files
//! are `mm/kalloc.rs`, `sched/{cpu,thread,wake,idle,fpu}.rs`, `user/programs.rs` and
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
    // SAFETY: `root` maps the kernel half exactly as the current tables do (the contract
    // above: its upper PML4 entries are the kernel's own, which never change once populated);
    // `keep` is only passed for a PCID whose entries shootdowns have kept valid.
    unsafe { exo_arch::tlb::switch_cr3(root, pcid, keep) };
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
        let end = paddr.checked_add(buf.len() as u64);
        // Page 0 (the real-mode IVT and BIOS data area) is refused like any unreadable
        // address, so `find_rsdp_in_bios` falls back to its other area (as when page 0 was
        // the null guard of the old identity map; the test of that path stays meaningful).
        if paddr < 0x1000 || end.is_none_or(|e| e > self.limit) {
            return Err(exo_acpi::AcpiError::Read {
                paddr,
                len: buf.len(),
            });
        }
        let va = exo_arch::layout::phys_to_virt(paddr);
        // SAFETY: [paddr, paddr+len) lies below `limit`, inside the direct map of the tables
        // in use (boot tables: 4 GiB; kernel tables: all of RAM and the low 4 GiB). ACPI
        // tables are ordinary memory: reading them has no side effect.
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

/// Installs `block` as this CPU's per-CPU block.
pub fn install_percpu<E>(block: &'static mut exo_percpu::PerCpu<E>) {
    // SAFETY: called once per CPU in its bring-up with interrupts off, before any gs: read;
    // the block is leaked ('static) and installed on this CPU only.
    unsafe { exo_percpu::install(block) };
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
