//! Interrupt and exception entry: 256 stubs (16 bytes apart) that push a uniform frame and
//! call the kernel's dispatcher, the shared IDT, and the fault-fixup table behind
//! [`probe_read_u64`].

use core::sync::atomic::{AtomicUsize, Ordering};

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

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
const _: () = assert!(core::mem::offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(core::mem::offset_of!(TrapFrame, cs) == 18 * 8);

// 256 stubs, each 16 bytes: [push 0 if no error code]; push vector; jmp common.
// `push imm8` sign-extends, so vectors >= 128 use the 5-byte `push imm32` form; 16 bytes fit both.
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
                "jmp exo_trap_common",
            )*
            "exo_trap_common:",
            // From user mode (CS RPL 3)? Then switch to the kernel GS base.
            "test qword ptr [rsp + 24], 3",
            "jz 1f",
            "swapgs",
            "1:",
            "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
            "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
            "mov rdi, rsp",
            "cld",
            "call exo_trap_dispatch",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
            "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
            "test qword ptr [rsp + 24], 3",
            "jz 2f",
            "swapgs",
            "2:",
            "add rsp, 16",
            "iretq",
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

/// IST slots used by the IDT (1-based as in the TSS).
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot for NMIs.
pub const IST_NMI: u8 = 2;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u8 = 3;

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// An interrupt gate (type 0xE, present) to `addr` through the kernel code selector.
fn gate(addr: u64, ist: u64, dpl: u64) -> (u64, u64) {
    let lo = (addr & 0xFFFF)
        | (u64::from(crate::gdt::KERNEL_CS) << 16)
        | (ist << 32)
        | ((0x8E | (dpl << 5)) << 40)
        | (((addr >> 16) & 0xFFFF) << 48);
    (lo, addr >> 32)
}

/// Fills the shared IDT (every vector to its stub; #DF, NMI and #MC on their IST stacks) and
/// the park IDT (see [`park`]), and loads nothing: the BSP calls `init_idt`, every CPU
/// `load_idt`.
pub fn init_idt() {
    let base = &raw const exo_trap_stubs as u64;
    let park_stub = &raw const exo_park_stub as u64;
    for v in 0..256usize {
        let addr = base + (v as u64) * 16;
        let ist: u64 = match v {
            8 => IST_DOUBLE_FAULT.into(),
            2 => IST_NMI.into(),
            18 => IST_MACHINE_CHECK.into(),
            _ => 0,
        };
        // DPL 0 (DPL 3 for #BP so user int3 works later).
        let (lo, hi) = gate(addr, ist, if v == 3 { 3 } else { 0 });
        // Park gates: no IST (a parked CPU may have no TSS), the current stack.
        let (plo, phi) = gate(park_stub, 0, 0);
        let (idt, park) = (&raw mut IDT, &raw mut PARK_IDT);
        // SAFETY: the BSP fills both IDTs once before any CPU loads them (the park IDT is
        // published below, after it is complete); no one reads them yet, and no reference to
        // the statics exists while they are written through the raw pointers.
        unsafe {
            (*idt).0[2 * v] = lo;
            (*idt).0[2 * v + 1] = hi;
            (*park).0[2 * v] = plo;
            (*park).0[2 * v + 1] = phi;
        }
    }
    // Publish: base first, then the limit (which `exo_park` tests) with release; x86 keeps
    // the two stores in order for the CPU that parks later.
    EXO_PARK_IDTR
        .base
        .store(&raw const PARK_IDT as u64, Ordering::Relaxed);
    EXO_PARK_IDTR
        .limit
        .store((16 * 256 - 1) as u16, Ordering::Release);
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

/// Loads the shared IDT on the calling CPU.
pub fn load_idt() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (16 * 256 - 1) as u16,
        base: x86_64::VirtAddr::new(&raw const IDT as u64),
    };
    // SAFETY: the IDT is a static filled by `init_idt` and never changed afterwards.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
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

unsafe extern "C" {
    static exo_probe_insn: u8;
    static exo_probe_fixup: u8;
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

/// [`probe_read_u64`] of a user address: with SMAP on, the read runs inside a `stac`/`clac`
/// window (user pages are otherwise off limits to the kernel).
pub fn probe_read_user_u64(addr: u64) -> Result<u64, ProbeFault> {
    let smap = crate::cpu::smap_enabled();
    if smap {
        // SAFETY: STAC exists (SMAP is on); it only lets this CPU's kernel code reach user
        // pages until the CLAC below, with nothing but the probe read in between.
        unsafe { core::arch::asm!("stac", options(nomem, nostack)) };
    }
    let r = probe_read_u64(addr);
    if smap {
        // SAFETY: CLAC exists (SMAP is on); it closes the window.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
    r
}

/// If `frame` is a fault at a registered probe instruction, points it at the probe's
/// error path and returns true.
pub fn fixup(frame: &mut TrapFrame) -> bool {
    let (insn, fix) = (
        &raw const exo_probe_insn as u64,
        &raw const exo_probe_fixup as u64,
    );
    if frame.rip == insn {
        frame.rip = fix;
        true
    } else {
        false
    }
}
