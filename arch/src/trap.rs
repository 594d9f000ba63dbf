//! Interrupt and exception entry: 256 stubs (16 bytes apart) that push a uniform frame and
//! call the kernel's dispatcher, the shared IDT, and the fault-fixup table behind
//! [`probe_read_u64`] and the user copies of [`crate::usercopy`].
//!
//! # GS on entry and exit
//!
//! While ring 3 runs, GS base holds the user's value and `KERNEL_GS_BASE` this CPU's per-CPU
//! block; every way into the kernel must `swapgs` exactly when it arrives with the user's
//! value, and swap back on the way out.
//!
//! * Ordinary vectors (exceptions, interrupts, `int3`) can only arrive from ring 3 or from
//!   kernel code that runs on the kernel GS: interrupts are off on the syscall path while
//!   the user GS is live (SFMASK clears IF; the exits `cli` before their `swapgs`), and no
//!   exception can occur there (see `syscall.rs`). So the common entry decides by the saved
//!   CS: RPL 3 means `swapgs` on entry and on exit.
//! * NMI, #MC, #DB and #DF ("paranoid" vectors, each on its own IST stack) can arrive on any
//!   instruction, including the syscall entry before its `swapgs` and the exits after theirs,
//!   in ring 0 with the user GS. Their entry does not trust CS: it reads the GS base MSR and
//!   compares it with this CPU's kernel GS base, found without GS through `sgdt` (it sits
//!   right after the CPU's GDT, see `gdt.rs`). Equal: nothing to do (even if ring 3 had set
//!   its own GS base to that value with `wrgsbase`, GS is then already right). Different:
//!   `swapgs` now and again before `iretq`. A #DB from ring 3 (saved CS RPL 3) then moves
//!   its frame to the thread's own kernel stack and runs there, as an ordinary exception
//!   from ring 3 does (Linux does the same): it ends the thread, and a thread's end needs
//!   interrupts and may be preempted, which a per-CPU IST stack cannot allow. Until
//!   2026-12-04 that end ran on the IST stack with interrupts off and skipped the shared
//!   wake of its `set_tid_address` word.
//! * No exit can fault after its `swapgs`: `sysretq` only gets a canonical user RIP (checked
//!   first, `syscall.rs`), and every `iretq` to ring 3 returns a frame the CPU itself pushed
//!   (user CS, SS and a canonical RIP: an interrupt pushes the next instruction's address,
//!   and user space ends a page below the lower half's top, `layout::USER_END`, so that
//!   address is canonical; until 2026-12-04 the last page could be mapped and run off, and
//!   the pushed `0x0000_8000_0000_0000` made `iretq` #GP in ring 0 on Intel) or the one
//!   `enter_user` builds from the fixed user selectors and a checked RIP. (Linux needs a "bad IRET" fix-up because it
//!   lets ring 3 supply selectors through the LDT and sigreturn; Exo-OS does not.)
//!
//! Every entry also clears RFLAGS.AC when SMAP is on (an interrupt inside a user-copy
//! window would otherwise run its handler with SMAP lifted; IRETQ restores AC).

use core::sync::atomic::{AtomicUsize, Ordering};

pub use crate::gdt::{IST_DEBUG, IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};

/// The register state saved on every trap, in stack order (lowest address first).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TrapFrame {
    /// General-purpose registers, pushed by the common stub.
    pub r15: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub r14: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub r13: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub r12: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub r11: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub r10: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub r9: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub r8: u64,
    /// Frame pointer of the interrupted code (start of its backtrace).
    pub rbp: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rdi: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rsi: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rdx: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rcx: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rbx: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rax: u64,
    /// Vector number (pushed by the per-vector stub).
    pub vector: u64,
    /// Error code (the CPU's, or 0 pushed by the stub).
    pub error_code: u64,
    /// Hardware frame.
    pub rip: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub cs: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rflags: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub rsp: u64,
    #[expect(missing_docs, reason = "register names speak for themselves")]
    pub ss: u64,
}

impl TrapFrame {
    /// Did the trap interrupt ring 3 (the saved CS has RPL 3)?
    #[inline(always)]
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
const _: () = assert!(core::mem::offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(core::mem::offset_of!(TrapFrame, cs) == 18 * 8);

// 256 stubs, each 16 bytes: [push 0 if no error code]; push vector; jmp to the common or
// (#DB, NMI, #DF, #MC) the paranoid entry. `push imm8` sign-extends, so vectors >= 128 use
// the 5-byte `push imm32` form; 16 bytes fit both.
macro_rules! stubs {
    ($($v:literal)*) => {
        core::arch::global_asm!(
            ".section .text.trap, \"ax\"",
            ".p2align 4",
            ".global exo_trap_stubs",
            "exo_trap_stubs:",
            $(
                ".p2align 4",
                concat!(".if ", stringify!($v), " == 8 || ", stringify!($v), " == 10 || ", stringify!($v), " == 11 || ",
                        stringify!($v), " == 12 || ", stringify!($v), " == 13 || ", stringify!($v), " == 14 || ",
                        stringify!($v), " == 17 || ", stringify!($v), " == 21 || ", stringify!($v), " == 29 || ", stringify!($v), " == 30"),
                "nop; nop",
                ".else",
                "push 0",
                ".endif",
                concat!("push ", stringify!($v)),
                concat!(".if ", stringify!($v), " == 1 || ", stringify!($v), " == 2 || ", stringify!($v), " == 8 || ", stringify!($v), " == 18"),
                "jmp exo_trap_paranoid",
                ".else",
                "jmp exo_trap_common",
                ".endif",
            )*
            "exo_trap_common:",
            // From ring 3 (saved CS with RPL 3)? Then switch to the kernel GS base.
            "test byte ptr [rsp + 24], 3",
            "jz 1f",
            "swapgs",
            "1:",
            "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
            "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
            "cmp byte ptr [rip + {smap}], 0",
            "je 3f",
            "clac",
            "3:",
            "mov rdi, rsp",
            "cld",
            "call exo_trap_dispatch",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
            "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
            "test byte ptr [rsp + 24], 3",
            "jz 2f",
            // Back to ring 3: no interrupt may see the user GS with a kernel CS.
            "cli",
            "swapgs",
            "2:",
            "add rsp, 16",
            "iretq",

            // The early IDT's gates of #DB, NMI, #DF and #MC (`load_early_idt`): the common
            // entry, GS decided by CS. Before its TSS the BSP runs ring 0 code alone (no
            // ring 3, no `swapgs` window), and the paranoid entry's lookup of the kernel GS
            // base after the GDT finds nothing there yet: the boot GDT is 24 bytes (it
            // swapped to a GS base of 0; found by review).
            ".global exo_trap_early_1",
            ".global exo_trap_early_2",
            ".global exo_trap_early_8",
            ".global exo_trap_early_18",
            "exo_trap_early_1:",
            "push 0",
            "push 1",
            "jmp exo_trap_common",
            "exo_trap_early_2:",
            "push 0",
            "push 2",
            "jmp exo_trap_common",
            "exo_trap_early_8:",
            "push 8",
            "jmp exo_trap_common",
            "exo_trap_early_18:",
            "push 0",
            "push 18",
            "jmp exo_trap_common",

            // The paranoid entry: GS decided by the GS base MSR, not by CS (module docs).
            "exo_trap_paranoid:",
            "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
            "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
            "cld",
            // This CPU's kernel GS base, stored right after its GDT.
            "sub rsp, 16",
            "sgdt [rsp]",
            "mov rax, [rsp + 2]",
            "add rsp, 16",
            "mov rbx, [rax + {kgs}]",
            // The live GS base.
            "mov ecx, 0xC0000101",
            "rdmsr",
            "shl rdx, 32",
            "or rax, rdx",
            // r12 (callee-saved): 1 when this entry swapped and its exit must swap back.
            "xor r12d, r12d",
            "cmp rax, rbx",
            "je 4f",
            "swapgs",
            "mov r12d, 1",
            "4:",
            // A #DB from ring 3 (GS is the kernel's now, whichever way) kills the thread:
            // its handler continues on the thread's own kernel stack (empty while ring 3
            // runs; the syscall entry starts there too), where the thread's end may enable
            // interrupts, be preempted and block. NMI, #DF and #MC (the machine's, not the
            // thread's) stay on their IST stacks.
            "cmp qword ptr [rsp + {vector}], 1",
            "jne 7f",
            "test byte ptr [rsp + {cs}], 3",
            "jz 7f",
            "mov rdi, gs:[{kstack}]",
            "sub rdi, {frame}",
            "mov rbx, rdi",
            "mov rsi, rsp",
            "mov ecx, {frame} / 8",
            "rep movsq",
            "mov rsp, rbx",
            "7:",
            "cmp byte ptr [rip + {smap}], 0",
            "je 5f",
            "clac",
            "5:",
            "mov rdi, rsp",
            "call exo_trap_dispatch",
            "test r12d, r12d",
            "jz 6f",
            "swapgs",
            "6:",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
            "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
            "add rsp, 16",
            "iretq",
            smap = sym crate::usercopy::SMAP_ON,
            kgs = const crate::gdt::GDT_KERNEL_GS_OFFSET,
            cs = const core::mem::offset_of!(TrapFrame, cs),
            vector = const core::mem::offset_of!(TrapFrame, vector),
            frame = const core::mem::size_of::<TrapFrame>(),
            kstack = const crate::syscall::GS_KSTACK_TOP,
        );
    };
}

stubs!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
       32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
       64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95
       96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127
       128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159
       160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191
       192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223
       224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255);

unsafe extern "C" {
    static exo_trap_stubs: u8;
    static exo_trap_early_1: u8;
    static exo_trap_early_2: u8;
    static exo_trap_early_8: u8;
    static exo_trap_early_18: u8;
}

/// The kernel's trap handler: gets every trap's frame, may edit it (e.g. RIP for a fixup).
pub type TrapHandler = fn(&mut TrapFrame);

static HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Installs the kernel's trap handler (once, before interrupts are enabled).
pub fn set_handler(h: TrapHandler) {
    HANDLER.store(h as usize, Ordering::Release);
}

#[unsafe(no_mangle)]
extern "C" fn exo_trap_dispatch(frame: &mut TrapFrame) {
    let h = HANDLER.load(Ordering::Acquire);
    if h == 0 {
        crate::exit::exit(crate::exit::ExitCode::Failure);
    }
    // SAFETY: HANDLER only ever holds a `TrapHandler` stored by `set_handler`.
    let h: TrapHandler = unsafe { core::mem::transmute::<usize, TrapHandler>(h) };
    h(frame);
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// The BSP's IDT before its TSS exists ([`load_early_idt`]): the shared IDT's gates with no
/// IST, so #DB, NMI, #DF and #MC run on the current stack, and these four through the common
/// entry (GS by CS), not the paranoid one (which finds the kernel GS base after the kernel's
/// GDT). Through an IST gate with no TSS loaded, delivery itself faults, then the #DF does.
static mut EARLY_IDT: Idt = Idt([0; 512]);

/// The early IDT's pseudo-descriptor (at offset 6, as [`EXO_PARK_IDTR`]), filled by
/// [`init_idt`] before any AP starts: [`load_early_idt`] loads it on the BSP, and every AP
/// in the first instructions of `exo_ap_entry64` (`smp.rs`), right after its GDT. Until
/// 2026-12-05 an AP had no IDT until `load_idt` (IDTR base 0, limit 0xFFFF after INIT, low
/// memory unmapped in the final tables): an exception or NMI in `ap_entry` before it
/// triple-faulted the machine with no report (found by review; `exo.ap_fault_early`).
#[unsafe(no_mangle)]
static EXO_EARLY_IDTR: Idtr = Idtr {
    _pad: [0; 3],
    limit: core::sync::atomic::AtomicU16::new(0),
    base: core::sync::atomic::AtomicU64::new(0),
};

/// An interrupt gate (type 0xE, present) to `addr` through the kernel code selector.
fn gate(addr: u64, ist: u64, dpl: u64) -> (u64, u64) {
    let lo = (addr & 0xFFFF)
        | (u64::from(crate::gdt::KERNEL_CS) << 16)
        | (ist << 32)
        | ((0x8E | (dpl << 5)) << 40)
        | (((addr >> 16) & 0xFFFF) << 48);
    (lo, addr >> 32)
}

/// Fills the shared IDT (every vector to its stub; #DB, #DF, NMI and #MC on their IST stacks),
/// the early IDT (the same without IST) and the park IDT (see [`park`]), and loads nothing:
/// the BSP calls `init_idt` and `load_early_idt`, every CPU `load_idt` once its TSS is loaded.
pub fn init_idt() {
    let base = &raw const exo_trap_stubs as u64;
    let park_stub = &raw const exo_park_stub as u64;
    for v in 0..256usize {
        let addr = base + (v as u64) * 16;
        let ist: u64 = match v {
            1 => IST_DEBUG.into(),
            8 => IST_DOUBLE_FAULT.into(),
            2 => IST_NMI.into(),
            18 => IST_MACHINE_CHECK.into(),
            _ => 0,
        };
        // DPL 0: `int N` from ring 3 is a #GP. DPL 3 for #BP, so `int3` in ring 3 is a #BP
        // (which kills the thread; see the kernel's user-fault hook).
        let dpl = if v == 3 { 3 } else { 0 };
        let (lo, hi) = gate(addr, ist, dpl);
        // The early IDT: no IST, and the IST vectors through the common entry.
        let early_addr = match v {
            1 => &raw const exo_trap_early_1 as u64,
            2 => &raw const exo_trap_early_2 as u64,
            8 => &raw const exo_trap_early_8 as u64,
            18 => &raw const exo_trap_early_18 as u64,
            _ => addr,
        };
        let (elo, ehi) = gate(early_addr, 0, dpl);
        // Park gates: no IST (a parked CPU may have no TSS), the current stack.
        let (plo, phi) = gate(park_stub, 0, 0);
        let (idt, park, early) = (&raw mut IDT, &raw mut PARK_IDT, &raw mut EARLY_IDT);
        // SAFETY: the BSP fills the three IDTs once before any CPU loads them (the park IDT
        // is published below, after it is complete); no one reads them yet, and no reference
        // to the statics exists while they are written through the raw pointers.
        unsafe {
            (*idt).0[2 * v] = lo;
            (*idt).0[2 * v + 1] = hi;
            (*early).0[2 * v] = elo;
            (*early).0[2 * v + 1] = ehi;
            (*park).0[2 * v] = plo;
            (*park).0[2 * v + 1] = phi;
        }
    }
    EXO_PARK_IDTR.publish(&raw const PARK_IDT as u64);
    EXO_EARLY_IDTR.publish(&raw const EARLY_IDT as u64);
}

/// The park IDT: every vector to one stub that halts forever, on the current stack (no IST),
/// so a CPU without a TSS or a kernel GDT of its own (an AP that parked during bring-up, a
/// CPU halted for good) survives an NMI or #MC: the frame is pushed, nothing returns.
static mut PARK_IDT: Idt = Idt([0; 512]);

/// The pseudo-descriptor `exo_park` loads: the 10 bytes at offset 6 (limit, then base, so
/// both fields are naturally aligned). Limit 0 until the park IDT is filled.
#[repr(C, align(16))]
struct Idtr {
    _pad: [u16; 3],
    limit: core::sync::atomic::AtomicU16,
    base: core::sync::atomic::AtomicU64,
}

impl Idtr {
    /// Points it at the 256-gate table at `base`: the base first, then the limit (which
    /// `exo_park` tests) with release; x86 keeps the two stores in order for a CPU that
    /// loads it later.
    fn publish(&self, base: u64) {
        self.base.store(base, Ordering::Relaxed);
        self.limit.store((16 * 256 - 1) as u16, Ordering::Release);
    }
}

#[unsafe(no_mangle)]
static EXO_PARK_IDTR: Idtr = Idtr {
    _pad: [0; 3],
    limit: core::sync::atomic::AtomicU16::new(0),
    base: core::sync::atomic::AtomicU64::new(0),
};

core::arch::global_asm!(
    ".section .text.park, \"ax\"",
    // Park: interrupts off, the park IDT if it is filled, halt forever; count the parks.
    ".global exo_park",
    "exo_park:",
    "cli",
    "lock inc qword ptr [rip + exo_parked]",
    "cmp word ptr [rip + EXO_PARK_IDTR + 6], 0",
    "je 2f",
    "lidt [rip + EXO_PARK_IDTR + 6]",
    "2:",
    "cli",
    "hlt",
    "jmp 2b",
    // Every park IDT vector lands here: the interrupted context is abandoned (an NMI stays
    // blocked, as no IRET follows).
    ".global exo_park_stub",
    "exo_park_stub:",
    "cli",
    "hlt",
    "jmp exo_park_stub",
    ".section .bss.park, \"aw\", @nobits",
    ".p2align 4",
    ".global exo_park_stack_top",
    ".global exo_parked",
    "exo_parked: .skip 8",
    "exo_park_stack: .skip 512",
    "exo_park_stack_top:",
);

unsafe extern "C" {
    static exo_park_stub: u8;
    static exo_parked: core::sync::atomic::AtomicU64;
}

/// Stops the calling CPU for good, safely even where it has no kernel tables of its own:
/// interrupts off, the park IDT loaded (every vector halts again on the current stack, so an
/// NMI needs neither a TSS nor an IST), halt. Needs a mapped stack for that one frame (the
/// trampoline gives stackless APs a shared one). Counted by [`parked`].
pub fn park() -> ! {
    // SAFETY: `exo_park` never returns and touches only its counter, the park IDT's
    // descriptor and the stack (for an interrupt frame).
    unsafe { core::arch::asm!("jmp exo_park", options(noreturn)) }
}

/// How many times a CPU parked (each park counts once; the stop-all of a panic parks the
/// other CPUs, a late or stray AP parks itself).
pub fn parked() -> u64 {
    // SAFETY: a u64 in .bss, only ever updated atomically (`lock inc`).
    unsafe { exo_parked.load(Ordering::Acquire) }
}

/// Loads the BSP's early IDT (every gate without IST: see `EARLY_IDT`), for the time before
/// its TSS is loaded; [`load_idt`] replaces it once the TSS is there. Before `gdt::load`
/// (the APs load it in `exo_ap_entry64`): loaded later, an NMI or #DB on the system-call
/// entry's first instruction (ring 0 with the user's stack and GS) would run there. After
/// `init_idt`.
pub fn load_early_idt() {
    // SAFETY: `EXO_EARLY_IDTR` describes the early IDT, a static filled by `init_idt` and
    // never changed afterwards; the 10 bytes at offset 6 are the limit and the base.
    unsafe {
        core::arch::asm!(
            "lidt [rip + EXO_EARLY_IDTR + 6]",
            options(readonly, nostack, preserves_flags)
        )
    };
}

/// Loads the shared IDT on the calling CPU.
pub fn load_idt() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (16 * 256 - 1) as u16,
        base: x86_64::VirtAddr::new(&raw const IDT as u64),
    };
    // SAFETY: the IDT is a static filled by `init_idt` and never changed afterwards.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// Self-test of the paranoid entry: raises #DB (`int 1`) in ring 0 with the user GS base
/// live (`swapgs` before and after, interrupts off), exactly the state an NMI, #MC or #DB
/// finds on the first instruction of the syscall entry or after the exits' `swapgs`; with
/// `user_gs` false, with the kernel GS. The kernel's #DB handler must run with the kernel
/// GS either way (it reaches the per-CPU block), and GS must be as before afterwards.
pub fn debug_trap_selftest(user_gs: bool) {
    crate::cpu::without_interrupts(|| {
        if user_gs {
            // SAFETY: interrupts are off, so nothing but the paranoid vectors (which decide
            // GS by the GS base MSR) can run between the two `swapgs`; `int 1` returns
            // (the kernel's #DB handler resumes ring-0 code); GS is back as before.
            unsafe { core::arch::asm!("swapgs", "int 1", "swapgs", options(nostack)) };
        } else {
            // SAFETY: `int 1` returns (see above); the kernel GS stays live throughout.
            unsafe { core::arch::asm!("int 1", options(nostack)) };
        }
    });
}

/// A read through [`probe_read_u64`] faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFault;

core::arch::global_asm!(
    ".section .text.probe, \"ax\"",
    ".global exo_probe_read",
    ".global exo_probe_insn",
    ".global exo_probe_fixup",
    "exo_probe_read:",
    "xor edx, edx",
    "exo_probe_insn:",
    "mov rax, [rdi]",
    "ret",
    "exo_probe_fixup:",
    "mov edx, 1",
    "xor eax, eax",
    "ret",
);

/// One fix-up: a fault at `insn` resumes at `fixup`; `user_only`: only for a #PF whose
/// address lies in the user range (a fault on a kernel address inside a user copy is a
/// kernel bug and stays one).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Fixup {
    insn: u64,
    fixup: u64,
    user_only: u64,
}

// The fix-up table: every instruction allowed to fault, with where it resumes. One list for
// the whole kernel (the probe here, the user copy in `usercopy.rs`).
core::arch::global_asm!(
    ".section .rodata.exo_fixups, \"a\"",
    ".p2align 3",
    ".global exo_fixup_table",
    ".global exo_fixup_table_end",
    "exo_fixup_table:",
    ".quad exo_probe_insn, exo_probe_fixup, 0",
    ".quad exo_user_copy_insn, exo_user_copy_fixup, 1",
    ".quad exo_user_copy_q_insn, exo_user_copy_q_fixup, 1",
    ".quad exo_user_copy_q_tail, exo_user_copy_q_tail_fixup, 1",
    "exo_fixup_table_end:",
);

unsafe extern "C" {
    static exo_fixup_table: Fixup;
    static exo_fixup_table_end: Fixup;
}

fn fixups() -> &'static [Fixup] {
    let (start, end) = (&raw const exo_fixup_table, &raw const exo_fixup_table_end);
    let n = (end as usize - start as usize) / core::mem::size_of::<Fixup>();
    // SAFETY: the two symbols bound the table above: `n` initialised, immutable, 8-aligned
    // `Fixup`s (three quads each) in .rodata, for the life of the kernel.
    unsafe { core::slice::from_raw_parts(start, n) }
}

/// Reads a u64 at `addr`; a page fault there returns `Err` instead of crashing (the trap
/// handler calls [`fixup`] which redirects the faulting instruction to the error path).
pub fn probe_read_u64(addr: u64) -> Result<u64, ProbeFault> {
    let value: u64;
    let failed: u64;
    // SAFETY: exo_probe_read reads [rdi] and returns rax/rdx; a fault on the read is turned
    // into a return with rdx=1 by `fixup`. No Rust memory is written.
    unsafe {
        core::arch::asm!("call exo_probe_read", in("rdi") addr, out("rax") value, out("rdx") failed,
                         clobber_abi("C"));
    }
    if failed == 0 {
        Ok(value)
    } else {
        Err(ProbeFault)
    }
}

/// The fix-up for a page fault at `frame`'s instruction and address `cr2`, if one applies.
fn fixup_of(frame: &TrapFrame, cr2: u64) -> Option<&'static Fixup> {
    if frame.vector != 14 || frame.from_user() {
        return None;
    }
    let f = fixups().iter().find(|f| frame.rip == f.insn)?;
    (f.user_only == 0 || crate::usercopy::is_user_range(cr2, 1)).then_some(f)
}

/// If `frame` is a page fault at a registered instruction (see the table above) whose
/// address `cr2` that entry accepts, points it at the entry's error path and returns true.
pub fn fixup(frame: &mut TrapFrame, cr2: u64) -> bool {
    match fixup_of(frame, cr2) {
        Some(f) => {
            frame.rip = f.fixup;
            true
        }
        None => false,
    }
}

/// Whether `frame` is a page fault of a user copy (`usercopy`) on user address `cr2`: the
/// kernel touching user memory for a system call, where a fault is the user's to answer
/// (its fix-up, `EFAULT`; or a demand-zero page brought in and the copy retried).
pub fn in_user_copy(frame: &TrapFrame, cr2: u64) -> bool {
    fixup_of(frame, cr2).is_some_and(|f| f.user_only != 0)
}
