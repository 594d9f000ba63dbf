//! The ring-3 test programs: position-independent x86-64 code assembled into the kernel's
//! read-only data (never executed there) and copied to the user code page by `testbed`.
//! Each takes one argument in RDI (the address of its data page, or a target address) and
//! ends with `exit` (60); the fault programs end with `exit(77)` if their faulting
//! instruction did not fault ([`SURVIVED`]).
//!
//! Audited `unsafe` file: `global_asm!` (the programs' bytes) and the slice over them.
#![allow(
    unsafe_code,
    reason = "global_asm!: the ring-3 test programs' bytes, and the slice over them"
)]

/// Exit code of a fault program whose faulting instruction did not fault.
pub const SURVIVED: u64 = 77;

// Data-page layouts (u64 offsets) are documented beside each program and used by the tests.
core::arch::global_asm!(
    ".section .rodata.exo_user_programs, \"a\"",
    ".p2align 4",
    ".global exo_uprog_start",
    "exo_uprog_start:",
    // runner(data): [0] n, [8] exit code, entries at [64 + 64 k]: nr, a0, a1, a2, a3 (in);
    // result, regs_ok (out). Each call runs with known values in every register it must keep
    // and DF set; regs_ok = 1 when all came back, RCX is the return address, R11 the RFLAGS.
    ".global exo_uprog_runner",
    "exo_uprog_runner:",
    "mov r15, rdi",
    "mov r14, [r15]",
    "lea r13, [r15 + 64]",
    "2:",
    "test r14, r14",
    "jz 8f",
    "mov rax, [r13]",
    "mov rdi, [r13 + 8]",
    "mov rsi, [r13 + 16]",
    "mov rdx, [r13 + 24]",
    "mov r10, [r13 + 32]",
    "mov r8, 0x0808080808080808",
    "mov r9, 0x0909090909090909",
    "mov rbx, 0x0B0B0B0B0B0B0B0B",
    "mov rbp, 0x0D0D0D0D0D0D0D0D",
    "mov r12, 0x0C0C0C0C0C0C0C0C",
    "std",
    "syscall",
    "3:",
    "mov [r13 + 40], rax",
    "pushfq",
    "pop rax",
    "cld",
    "cmp rax, r11",
    "jne 5f",
    "bt rax, 10",
    "jnc 5f",
    "lea rax, [rip + 3b]",
    "cmp rcx, rax",
    "jne 5f",
    "cmp rdi, [r13 + 8]",
    "jne 5f",
    "cmp rsi, [r13 + 16]",
    "jne 5f",
    "cmp rdx, [r13 + 24]",
    "jne 5f",
    "cmp r10, [r13 + 32]",
    "jne 5f",
    "mov rcx, 0x0808080808080808",
    "cmp r8, rcx",
    "jne 5f",
    "mov rcx, 0x0909090909090909",
    "cmp r9, rcx",
    "jne 5f",
    "mov rcx, 0x0B0B0B0B0B0B0B0B",
    "cmp rbx, rcx",
    "jne 5f",
    "mov rcx, 0x0D0D0D0D0D0D0D0D",
    "cmp rbp, rcx",
    "jne 5f",
    "mov rcx, 0x0C0C0C0C0C0C0C0C",
    "cmp r12, rcx",
    "jne 5f",
    "mov eax, 1",
    "jmp 6f",
    "5:",
    "xor eax, eax",
    "6:",
    "mov [r13 + 48], rax",
    "add r13, 64",
    "dec r14",
    "jmp 2b",
    "8:",
    "mov rdi, [r15 + 8]",
    "mov eax, 60",
    "syscall",
    "ud2",
    // storm(data): [0] n (in); [8] the first getpid answer, [16] good, [24] bad (out).
    // One getpid, then n more that must give the same answer, a sched_yield every 64, XMM0
    // holding the pid throughout (the lazy FPU switch of ring-3 state). Exits 0 when every
    // answer was the same (the kernel then checks it is the thread's pid).
    ".global exo_uprog_storm",
    "exo_uprog_storm:",
    "mov r15, rdi",
    "mov r14, [r15]",
    "mov eax, 39",
    "syscall",
    "mov r13, rax",
    "mov [r15 + 8], rax",
    "xor r12d, r12d",
    "xor ebx, ebx",
    "movq xmm0, r13",
    "2:",
    "test r14, r14",
    "jz 8f",
    "mov eax, 39",
    "syscall",
    "cmp rax, r13",
    "jne 4f",
    "movq rax, xmm0",
    "cmp rax, r13",
    "jne 4f",
    "inc r12",
    "jmp 5f",
    "4:",
    "inc rbx",
    "5:",
    "test r14, 63",
    "jnz 6f",
    "mov eax, 24",
    "syscall",
    "test rax, rax",
    "jz 6f",
    "inc rbx",
    "6:",
    "dec r14",
    "jmp 2b",
    "8:",
    "mov [r15 + 16], r12",
    "mov [r15 + 24], rbx",
    "xor edi, edi",
    "test rbx, rbx",
    "setnz dil",
    "mov eax, 60",
    "syscall",
    "ud2",
    // spinner(data): [0] stop flag, [8] TSC ticks to spin at most (in); [16] spins,
    // [24] started (out). Spins in ring 3 without a system call until the flag is set
    // (exit 0) or the time is up (exit 1): only a timer interrupt in ring 3 lets the kernel
    // thread that sets the flag run on this CPU.
    ".global exo_uprog_spinner",
    "exo_uprog_spinner:",
    "mov r15, rdi",
    "xor ebx, ebx",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "add rax, [r15 + 8]",
    "mov r12, rax",
    "mov qword ptr [r15 + 24], 1",
    "2:",
    "inc rbx",
    "cmp qword ptr [r15], 0",
    "jne 7f",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "cmp rax, r12",
    "jb 2b",
    "mov [r15 + 16], rbx",
    "mov edi, 1",
    "jmp 9f",
    "7:",
    "mov [r15 + 16], rbx",
    "xor edi, edi",
    "9:",
    "mov eax, 60",
    "syscall",
    "ud2",
    // bench(data): [0] n, [8] call number (in); samples at [64 + 8 k] (out): TSC ticks
    // around each call, timed like `rdtsc_precise` pairs in the kernel.
    ".global exo_uprog_bench",
    "exo_uprog_bench:",
    "mov r15, rdi",
    "mov r14, [r15]",
    "lea r13, [r15 + 64]",
    "2:",
    "test r14, r14",
    "jz 8f",
    "lfence",
    "rdtsc",
    "lfence",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r12, rax",
    "mov rax, [r15 + 8]",
    "syscall",
    "lfence",
    "rdtsc",
    "lfence",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r12",
    "mov [r13], rax",
    "add r13, 8",
    "dec r14",
    "jmp 2b",
    "8:",
    "xor edi, edi",
    "mov eax, 60",
    "syscall",
    "ud2",
    // segs(data): [0], [8], [16], [24] DS, ES, FS, GS to load first when [32] is 1 (in);
    // [40] TSC ticks to wait at most for [48] (in), with a `sched_yield` per round, or
    // without system calls when [64] is 1 (in: only an interrupt then lets another thread
    // run on this CPU); [56] set to 1 once loaded (out). When [48] is set: [72], [80],
    // [88], [96] DS, ES, FS, GS as read (out), [104] 1 when `fs:[data]` and `gs:[data]`
    // read what `[data]` holds (both bases 0), and exit 0; exit 1 when the time is up.
    ".global exo_uprog_segs",
    "exo_uprog_segs:",
    "mov r15, rdi",
    "cmp qword ptr [r15 + 32], 0",
    "je 2f",
    "mov eax, [r15]",
    "mov ds, ax",
    "mov eax, [r15 + 8]",
    "mov es, ax",
    "mov eax, [r15 + 16]",
    "mov fs, ax",
    "mov eax, [r15 + 24]",
    "mov gs, ax",
    "2:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "add rax, [r15 + 40]",
    "mov r12, rax",
    "mov qword ptr [r15 + 56], 1",
    "3:",
    "cmp qword ptr [r15 + 48], 0",
    "jne 4f",
    "cmp qword ptr [r15 + 64], 0",
    "jne 5f",
    "mov eax, 24",
    "syscall",
    "5:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "cmp rax, r12",
    "jb 3b",
    "mov edi, 1",
    "jmp 9f",
    "4:",
    "mov eax, ds",
    "mov [r15 + 72], rax",
    "mov eax, es",
    "mov [r15 + 80], rax",
    "mov eax, fs",
    "mov [r15 + 88], rax",
    "mov eax, gs",
    "mov [r15 + 96], rax",
    "mov rax, [r15]",
    "cmp rax, fs:[r15]",
    "jne 6f",
    "cmp rax, gs:[r15]",
    "jne 6f",
    "mov qword ptr [r15 + 104], 1",
    "6:",
    "xor edi, edi",
    "9:",
    "mov eax, 60",
    "syscall",
    "ud2",
    // The fault programs: one faulting instruction each (RDI: a target address).
    ".global exo_uprog_read",
    "exo_uprog_read:",
    "mov rax, [rdi]",
    "jmp exo_uprog_survived",
    ".global exo_uprog_write",
    "exo_uprog_write:",
    "mov [rdi], rax",
    "jmp exo_uprog_survived",
    ".global exo_uprog_jump",
    "exo_uprog_jump:",
    "jmp rdi",
    ".global exo_uprog_ud2",
    "exo_uprog_ud2:",
    "ud2",
    ".global exo_uprog_div0",
    "exo_uprog_div0:",
    "xor edx, edx",
    "xor ecx, ecx",
    "mov eax, 1",
    "div rcx",
    "jmp exo_uprog_survived",
    ".global exo_uprog_int3",
    "exo_uprog_int3:",
    "int3",
    "jmp exo_uprog_survived",
    ".global exo_uprog_hlt",
    "exo_uprog_hlt:",
    "hlt",
    "jmp exo_uprog_survived",
    ".global exo_uprog_cli",
    "exo_uprog_cli:",
    "cli",
    "jmp exo_uprog_survived",
    ".global exo_uprog_int_timer",
    "exo_uprog_int_timer:",
    "int 0xF2",
    "jmp exo_uprog_survived",
    ".global exo_uprog_int_nmi",
    "exo_uprog_int_nmi:",
    "int 2",
    "jmp exo_uprog_survived",
    ".global exo_uprog_rdmsr",
    "exo_uprog_rdmsr:",
    "mov ecx, 0xC0000101",
    "rdmsr",
    "jmp exo_uprog_survived",
    ".global exo_uprog_mov_cr3",
    "exo_uprog_mov_cr3:",
    "mov rax, cr3",
    "jmp exo_uprog_survived",
    ".global exo_uprog_out",
    "exo_uprog_out:",
    "out 0x80, al",
    "jmp exo_uprog_survived",
    ".global exo_uprog_sgdt",
    "exo_uprog_sgdt:",
    "sgdt [rsp - 16]",
    "jmp exo_uprog_survived",
    ".global exo_uprog_wrgsbase",
    "exo_uprog_wrgsbase:",
    "mov eax, 0x5678000",
    "wrgsbase rax",
    "jmp exo_uprog_survived",
    ".global exo_uprog_wrfsbase",
    "exo_uprog_wrfsbase:",
    "mov eax, 0x1234000",
    "wrfsbase rax",
    "jmp exo_uprog_survived",
    ".global exo_uprog_kernel_ds",
    "exo_uprog_kernel_ds:",
    "mov eax, 0x10",
    "mov ds, ax",
    "jmp exo_uprog_survived",
    ".global exo_uprog_push_forever",
    "exo_uprog_push_forever:",
    "push rax",
    "jmp exo_uprog_push_forever",
    // TF set by popfq applies to the next instruction: the `syscall` runs single-stepped.
    ".global exo_uprog_tf_syscall",
    "exo_uprog_tf_syscall:",
    "mov eax, 24", // sched_yield: the dispatcher's path (getpid never reaches it)
    "pushfq",
    "or qword ptr [rsp], 0x100",
    "popfq",
    "syscall",
    "nop",
    "nop",
    "jmp exo_uprog_survived",
    ".global exo_uprog_survived",
    "exo_uprog_survived:",
    "mov edi, 77",
    "mov eax, 60",
    "syscall",
    "ud2",
    ".global exo_uprog_end",
    "exo_uprog_end:",
);

unsafe extern "C" {
    static exo_uprog_start: u8;
    static exo_uprog_end: u8;
    static exo_uprog_runner: u8;
    static exo_uprog_storm: u8;
    static exo_uprog_spinner: u8;
    static exo_uprog_bench: u8;
    static exo_uprog_segs: u8;
    static exo_uprog_read: u8;
    static exo_uprog_write: u8;
    static exo_uprog_jump: u8;
    static exo_uprog_ud2: u8;
    static exo_uprog_div0: u8;
    static exo_uprog_int3: u8;
    static exo_uprog_hlt: u8;
    static exo_uprog_cli: u8;
    static exo_uprog_int_timer: u8;
    static exo_uprog_int_nmi: u8;
    static exo_uprog_rdmsr: u8;
    static exo_uprog_mov_cr3: u8;
    static exo_uprog_out: u8;
    static exo_uprog_sgdt: u8;
    static exo_uprog_wrgsbase: u8;
    static exo_uprog_wrfsbase: u8;
    static exo_uprog_kernel_ds: u8;
    static exo_uprog_push_forever: u8;
    static exo_uprog_tf_syscall: u8;
}

/// A ring-3 test program (its entry point in the blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// System calls from a table in the data page, registers checked after each.
    Runner,
    /// getpid in a loop with yields, checking every answer.
    Storm,
    /// Spins until a flag is set (preemption from ring 3).
    Spinner,
    /// Timed system calls (the `syscall.null` row).
    Bench,
    /// Loads DS, ES, FS and GS, waits (yielding or spinning) and reads them back.
    Segs,
    /// `mov rax, [rdi]`.
    Read,
    /// `mov [rdi], rax`.
    Write,
    /// `jmp rdi`.
    Jump,
    /// `ud2`.
    Ud2,
    /// `div` by zero.
    Div0,
    /// `int3`.
    Int3,
    /// `hlt` (privileged).
    Hlt,
    /// `cli` (IOPL 0).
    Cli,
    /// `int 0xF2` (the timer's vector; its gate has DPL 0).
    IntTimer,
    /// `int 2` (NMI's vector, DPL 0).
    IntNmi,
    /// `rdmsr` (privileged).
    Rdmsr,
    /// `mov rax, cr3` (privileged).
    MovCr3,
    /// `out 0x80, al` (no I/O permission).
    Out,
    /// `sgdt` (#GP under UMIP).
    Sgdt,
    /// `wrgsbase`: #UD, as CR4.FSGSBASE stays off (segment bases are not switched per
    /// thread, so a base one program wrote would be the next one's).
    WrGsBase,
    /// `wrfsbase`: #UD, as `WrGsBase`.
    WrFsBase,
    /// Loads the kernel data selector into DS.
    KernelDs,
    /// Pushes until the stack runs out.
    PushForever,
    /// A `syscall` with TF set.
    TfSyscall,
}

/// The programs' bytes.
pub fn blob() -> &'static [u8] {
    let (start, end) = (&raw const exo_uprog_start, &raw const exo_uprog_end);
    // SAFETY: the two symbols bound the bytes assembled above, in the kernel's read-only
    // data for the life of the kernel; nothing writes them.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// Offset of `p`'s entry point in [`blob`].
pub fn offset(p: Program) -> u64 {
    let sym: *const u8 = match p {
        Program::Runner => &raw const exo_uprog_runner,
        Program::Storm => &raw const exo_uprog_storm,
        Program::Spinner => &raw const exo_uprog_spinner,
        Program::Bench => &raw const exo_uprog_bench,
        Program::Segs => &raw const exo_uprog_segs,
        Program::Read => &raw const exo_uprog_read,
        Program::Write => &raw const exo_uprog_write,
        Program::Jump => &raw const exo_uprog_jump,
        Program::Ud2 => &raw const exo_uprog_ud2,
        Program::Div0 => &raw const exo_uprog_div0,
        Program::Int3 => &raw const exo_uprog_int3,
        Program::Hlt => &raw const exo_uprog_hlt,
        Program::Cli => &raw const exo_uprog_cli,
        Program::IntTimer => &raw const exo_uprog_int_timer,
        Program::IntNmi => &raw const exo_uprog_int_nmi,
        Program::Rdmsr => &raw const exo_uprog_rdmsr,
        Program::MovCr3 => &raw const exo_uprog_mov_cr3,
        Program::Out => &raw const exo_uprog_out,
        Program::Sgdt => &raw const exo_uprog_sgdt,
        Program::WrGsBase => &raw const exo_uprog_wrgsbase,
        Program::WrFsBase => &raw const exo_uprog_wrfsbase,
        Program::KernelDs => &raw const exo_uprog_kernel_ds,
        Program::PushForever => &raw const exo_uprog_push_forever,
        Program::TfSyscall => &raw const exo_uprog_tf_syscall,
    };
    sym as u64 - &raw const exo_uprog_start as u64
}
