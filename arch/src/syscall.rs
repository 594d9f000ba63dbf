//! Ring 3 entry and exit: the SYSCALL MSRs of each CPU, the system-call entry stub, and
//! [`enter_user`], a thread's first way into ring 3.
//!
//! # The system-call path
//!
//! `syscall` arrives here in ring 0 with the user's RSP and GS, RIP in RCX, RFLAGS in R11,
//! and IF, TF, DF, AC, NT and IOPL cleared by SFMASK. The stub:
//!
//! 1. `swapgs`; saves the user RSP in the per-CPU scratch slot ([`GS_USER_RSP`]) and loads
//!    the running thread's kernel stack top ([`GS_KSTACK_TOP`], set by the scheduler at
//!    every switch, like TSS.RSP0);
//! 2. pushes a [`SyscallFrame`] (the user RSP copied out of the scratch slot at once, so the
//!    slot is only live with interrupts off), then `sti`: the thread is preemptible in the
//!    kernel like any other;
//! 3. calls the kernel's dispatcher (`extern "C" fn(&mut SyscallFrame)`, [`set_handlers`]),
//!    which leaves the result in `frame.rax`;
//! 4. `cli`; if the return RIP is not a canonical lower-half address it does **not**
//!    return: it calls the kernel's bad-return hook, which kills the thread (on Intel,
//!    `sysretq` with a non-canonical RCX faults in ring 0 on the user's stack and GS; an
//!    IRETQ fallback would fault in ring 0 as well). A `syscall` in the last two bytes of
//!    user space has such a return address.
//! 5. restores every register from the frame (so the caller sees its own values, the result
//!    in RAX, RIP in RCX and its RFLAGS in R11, minus IOPL/NT/RF/VM, plus IF: nothing the
//!    kernel computed leaks), loads the user RSP, `swapgs`, `sysretq`.
//!
//! The callee-saved registers (RBX, RBP, R12-R15) are not in the frame: the dispatcher, a
//! SysV function, preserves them, and a context switch inside it saves them. Except for
//! the IPC calls (numbers [`NR_IPC_FIRST`]`..=`[`NR_IPC_LAST`], one range check once RSP,
//! R11 and RCX are pushed): their payload travels in callee-saved registers too, so the
//! stub pushes an [`IpcFrame`] instead (every argument and payload register, the eight
//! payload words in order), calls the IPC dispatcher **with interrupts still off** (its
//! fastpath runs without them and leaves for ring 3 as another thread; it enables them
//! for everything else) and restores them all from there (a received message comes back
//! in them). Its bad-return path rebuilds a [`SyscallFrame`]
//! for the hook.
//!
//! NMIs, #MC and #DB can still land on the instructions before the stack switch or after
//! the final `swapgs` (RSP is the user's there): all three run on IST stacks and decide GS
//! by the GS base MSR (see `trap.rs`). No other exception can occur on those instructions.

#[cfg(target_os = "none")]
use crate::gdt::{KERNEL_CS, SYSRET_BASE, USER_CS, USER_DS};
use core::sync::atomic::{AtomicPtr, Ordering};

/// Offset in the per-CPU block (through GS) of the running thread's kernel stack top
/// (`exo_percpu` checks its layout against it).
pub const GS_KSTACK_TOP: usize = 24;
/// Offset in the per-CPU block of the user-RSP scratch slot.
pub const GS_USER_RSP: usize = 40;
/// Offset in the per-CPU block of the running thread's pid (set at every switch).
pub const GS_PID: usize = 48;
/// `getpid`'s number: answered by the entry stub itself (one GS load, no frame).
pub const NR_GETPID: u64 = 39;
/// First number that takes the IPC entry ([`IpcFrame`]).
pub const NR_IPC_FIRST: u64 = 520;
/// Last number that takes the IPC entry.
pub const NR_IPC_LAST: u64 = 526;

#[cfg(target_os = "none")]
const MSR_FS_BASE: u32 = 0xC000_0100;
#[cfg(target_os = "none")]
const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;
#[cfg(target_os = "none")]
const MSR_STAR: u32 = 0xC000_0081;
#[cfg(target_os = "none")]
const MSR_LSTAR: u32 = 0xC000_0082;
#[cfg(target_os = "none")]
const MSR_FMASK: u32 = 0xC000_0084;
#[cfg(target_os = "none")]
const MSR_CSTAR: u32 = 0xC000_0083;
#[cfg(target_os = "none")]
const MSR_SYSENTER_CS: u32 = 0x174;
#[cfg(target_os = "none")]
const MSR_SYSENTER_ESP: u32 = 0x175;
#[cfg(target_os = "none")]
const MSR_SYSENTER_EIP: u32 = 0x176;

/// RFLAGS bits cleared on `syscall`: TF, IF, DF, IOPL, NT, AC.
pub const SFMASK: u64 = 0x100 | 0x200 | 0x400 | 0x3000 | 0x4000 | 0x4_0000;
/// RFLAGS bits ring 3 keeps across a system call: CF, PF, AF, ZF, SF, TF, DF, OF, AC, ID.
/// IF and the reserved bit 1 are set on return; IOPL, NT, RF, VM, VIF, VIP never are.
pub const RFLAGS_USER_KEEP: u64 =
    0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x20_0000;
/// RFLAGS of a thread's first instruction in ring 3: IF and the reserved bit 1.
pub const RFLAGS_USER_INITIAL: u64 = 0x202;

/// The register state the entry stub saves, lowest address first. `rax` is the call number
/// on entry and the result on return; the kernel may change any field (the return path
/// checks `rip` and sanitises `rflags`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyscallFrame {
    /// Call number in, result out.
    pub rax: u64,
    /// Argument 1.
    pub rdi: u64,
    /// Argument 2.
    pub rsi: u64,
    /// Argument 3.
    pub rdx: u64,
    /// Argument 4 (R10: `syscall` takes RCX for the return address).
    pub r10: u64,
    /// Argument 5.
    pub r8: u64,
    /// Argument 6.
    pub r9: u64,
    /// Return address (the user's RCX after `syscall`).
    pub rip: u64,
    /// The user's RFLAGS (R11 after `syscall`).
    pub rflags: u64,
    /// The user's stack pointer.
    pub rsp: u64,
}

const _: () = assert!(core::mem::size_of::<SyscallFrame>() == 10 * 8);
const _: () = assert!(core::mem::offset_of!(SyscallFrame, rip) == 56);
// An even number of words keeps the call from the stub 16-byte aligned.
const _: () = assert!(core::mem::size_of::<SyscallFrame>().is_multiple_of(16));

impl SyscallFrame {
    /// The call number.
    #[inline(always)]
    pub fn nr(&self) -> u64 {
        self.rax
    }
    /// The six arguments, in ABI order.
    #[inline(always)]
    pub fn args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
    /// Sets the result (a negative errno for an error).
    #[inline(always)]
    pub fn set_ret(&mut self, v: i64) {
        self.rax = v as u64;
    }
}

/// What the IPC entry saves, lowest address first: its own layout (not a [`SyscallFrame`]),
/// so that the eight payload registers lie in order in [`IpcFrame::words`], next to the
/// info (RSI) and handle/badge (RDI) registers: the kernel copies a message between a
/// frame and a message slot without shuffling. The kernel may change any field; all of
/// them go back to the user (the return path checks `rip` and sanitises `rflags`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcFrame {
    /// Not used (restored as it came).
    pub rbp: u64,
    /// Timeout (ns).
    pub rbx: u64,
    /// Call number in, result out.
    pub rax: u64,
    /// Handle in, badge out.
    pub rdi: u64,
    /// Info word (label, length, flags).
    pub rsi: u64,
    /// Payload words 0..7: RDX, R10, R8, R9, R12, R13, R14, R15.
    pub words: [u64; 8],
    /// Return address (the user's RCX after `syscall`).
    pub rip: u64,
    /// The user's RFLAGS (R11 after `syscall`).
    pub rflags: u64,
    /// The user's stack pointer.
    pub rsp: u64,
}

const _: () = assert!(core::mem::size_of::<IpcFrame>() == 16 * 8);
const _: () = assert!(core::mem::offset_of!(IpcFrame, words) == 40);
const _: () = assert!(core::mem::offset_of!(IpcFrame, rip) == 104);

impl IpcFrame {
    /// Sets the result (a negative errno for an error).
    #[inline(always)]
    pub fn set_ret(&mut self, v: i64) {
        self.rax = v as u64;
    }
}

/// The kernel's system-call dispatcher.
pub type Dispatcher = extern "C" fn(&mut SyscallFrame);
/// The kernel's dispatcher of the IPC calls, called with interrupts off (it enables them).
pub type IpcDispatcher = extern "C" fn(&mut IpcFrame);
/// Called instead of returning when the frame's return RIP is not a canonical user
/// address; must not return (the kernel kills the thread).
pub type BadReturn = extern "C" fn(&mut SyscallFrame) -> !;

/// `-ENOSYS` for every call until the kernel installs its dispatcher.
extern "C" fn enosys(f: &mut SyscallFrame) {
    f.set_ret(-38);
}

/// Until the kernel installs its hook: stop this CPU rather than return to a bad address.
extern "C" fn park_on_bad_return(_: &mut SyscallFrame) -> ! {
    crate::cpu::halt_forever()
}

/// `-ENOSYS` for every IPC call until the kernel installs its dispatcher.
extern "C" fn ipc_enosys(f: &mut IpcFrame) {
    f.set_ret(-38);
}

static DISPATCH: AtomicPtr<()> = AtomicPtr::new(enosys as *mut ());
static IPC_DISPATCH: AtomicPtr<()> = AtomicPtr::new(ipc_enosys as *mut ());
static BAD_RETURN: AtomicPtr<()> = AtomicPtr::new(park_on_bad_return as *mut ());

/// Installs the kernel's dispatchers and bad-return hook (before any thread enters ring 3).
pub fn set_handlers(dispatch: Dispatcher, ipc: IpcDispatcher, bad_return: BadReturn) {
    DISPATCH.store(dispatch as *mut (), Ordering::Release);
    IPC_DISPATCH.store(ipc as *mut (), Ordering::Release);
    BAD_RETURN.store(bad_return as *mut (), Ordering::Release);
}

/// The last steps of every return to ring 3 by `sysretq`, RSP at the frame's saved RFLAGS
/// (followed by the user RSP), RCX the return address: RFLAGS sanitised
/// ([`RFLAGS_USER_KEEP`], [`RFLAGS_USER_INITIAL`]: the `keep` and `initial` operands of the
/// asm that uses it), the user stack, the user GS. One text for the system-call and IPC
/// exits and `park_and_exit`.
#[cfg(target_os = "none")]
macro_rules! sysret_tail_asm {
    () => {
        concat!(
            "pop r11\n",
            "and r11, {keep}\n",
            "or r11, {initial}\n",
            "pop rsp\n",
            "swapgs\n",
            "sysretq\n",
        )
    };
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.syscall, \"ax\"",
    ".p2align 4",
    ".global exo_syscall_entry",
    "exo_syscall_entry:",
    // getpid's fast path: interrupts are off (SFMASK), only RAX, RCX and R11 (clobbered by
    // the ABI) are touched. The return address is checked as on the slow path; a bad one
    // takes the slow path (RAX restored), which kills the thread.
    "cmp rax, {nr_getpid}",
    "jne 3f",
    "mov rax, rcx",
    "shr rax, 47",
    "jnz 4f",
    "swapgs",
    "mov rax, gs:[{pid}]",
    "swapgs",
    "sysretq",
    "4:",
    "mov eax, {nr_getpid}",
    "3:",
    "swapgs",
    "mov gs:[{user_rsp}], rsp",
    "mov rsp, gs:[{kstack}]",
    "push qword ptr gs:[{user_rsp}]",
    "push r11",
    "push rcx",
    // IPC numbers (one unsigned range check) take the IPC entry.
    "lea rcx, [rax - {ipc_first}]",
    "cmp rcx, {ipc_span}",
    "jbe 5f",
    "push r9",
    "push r8",
    "push r10",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rax",
    "sti",
    "mov rdi, rsp",
    "call qword ptr [rip + {dispatch}]",
    "cli",
    "6:",
    // The return RIP must be canonical and in the lower half: bits 63..47 all zero.
    "mov rcx, [rsp + {rip}]",
    "mov r11, rcx",
    "shr r11, 47",
    "jnz 1f",
    "pop rax",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop r10",
    "pop r8",
    "pop r9",
    "add rsp, 8",
    sysret_tail_asm!(),
    "1:",
    "mov rdi, rsp",
    "call qword ptr [rip + {bad}]",
    "ud2",
    // The IPC entry: an `IpcFrame` (payload registers in order), restored from there.
    "5:",
    "push r15",
    "push r14",
    "push r13",
    "push r12",
    "push r9",
    "push r8",
    "push r10",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rax",
    "push rbx",
    "push rbp",
    "mov rdi, rsp",
    "call qword ptr [rip + {ipc_dispatch}]",
    "cli",
    // Every way out of an IPC call comes here with RSP at its frame and interrupts off
    // (also `ipc_exit` and `park_and_exit`, resuming a thread parked at this boundary).
    ".global exo_ipc_restore",
    "exo_ipc_restore:",
    "mov rcx, [rsp + {ipc_rip}]",
    "mov r11, rcx",
    "shr r11, 47",
    "jnz 7f",
    "pop rbp",
    "pop rbx",
    "pop rax",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop r10",
    "pop r8",
    "pop r9",
    "pop r12",
    "pop r13",
    "pop r14",
    "pop r15",
    "add rsp, 8",
    sysret_tail_asm!(),
    // A bad return from the IPC entry: the frame becomes a `SyscallFrame` for the hook.
    "7:",
    "pop rbp",
    "pop rbx",
    "pop rax",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop r10",
    "pop r8",
    "pop r9",
    "pop r12",
    "pop r13",
    "pop r14",
    "pop r15",
    "push r9",
    "push r8",
    "push r10",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rax",
    "jmp 1b",

    // enter_user(rip = rdi, rsp = rsi, arg = rdx): the first IRETQ of a thread to ring 3.
    ".p2align 4",
    ".global exo_enter_user",
    "exo_enter_user:",
    "cli",
    "mov r8, rdx",
    // DS, ES, FS and GS start null whatever ran here before (the scheduler keeps them per
    // thread, `segs.rs`: this thread's are null already unless that broke), FS first, so
    // the FS base written next is the one ring 3 gets.
    "xor eax, eax",
    "mov ds, eax",
    "mov es, eax",
    "mov fs, eax",
    // The user FS base and the user GS base (KERNEL_GS_BASE until the swapgs) start at 0.
    "xor edx, edx",
    "mov ecx, {fs_base}",
    "wrmsr",
    "mov ecx, {kgs_base}",
    "wrmsr",
    "push {user_ds}",
    "push rsi",
    "push {initial}",
    "push {user_cs}",
    "push rdi",
    "mov rdi, r8",
    "xor eax, eax",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor edx, edx",
    "xor esi, esi",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "xor r10d, r10d",
    "xor r11d, r11d",
    "xor r12d, r12d",
    "xor r13d, r13d",
    "xor r14d, r14d",
    "xor r15d, r15d",
    "swapgs",
    // GS null with the user GS base live (the kernel's stays in KERNEL_GS_BASE): the base
    // the load may write is the user one, 0 either way. A null load cannot fault.
    "mov gs, eax",
    "iretq",
    user_rsp = const GS_USER_RSP,
    kstack = const GS_KSTACK_TOP,
    pid = const GS_PID,
    nr_getpid = const NR_GETPID,
    dispatch = sym DISPATCH,
    ipc_dispatch = sym IPC_DISPATCH,
    ipc_first = const NR_IPC_FIRST,
    ipc_span = const NR_IPC_LAST - NR_IPC_FIRST,
    bad = sym BAD_RETURN,
    rip = const core::mem::offset_of!(SyscallFrame, rip),
    ipc_rip = const core::mem::offset_of!(IpcFrame, rip),
    keep = const RFLAGS_USER_KEEP,
    initial = const RFLAGS_USER_INITIAL,
    fs_base = const MSR_FS_BASE,
    kgs_base = const MSR_KERNEL_GS_BASE,
    user_ds = const USER_DS,
    user_cs = const USER_CS,
);

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn exo_syscall_entry();
}

/// Enables `syscall` on the calling CPU: EFER.SCE, STAR (kernel CS 0x08 / SS 0x10 on entry,
/// user CS 0x2B / SS 0x23 on SYSRET), LSTAR (the entry stub) and SFMASK. Every CPU calls it
/// once in its bring-up, after loading its GDT. The other ways into ring 0 are closed:
/// `sysenter` (SYSENTER_CS 0: #GP in ring 3; on AMD it is #UD in long mode anyway) and
/// compatibility-mode `syscall` (CSTAR 0; no 32-bit code segment exists). Until 2026-12-05
/// their MSRs were left as found: zero after a reset, but a boot from another kernel
/// (kexec) would have left ring 3 a `sysenter` into ring 0 at that kernel's address
/// (found by review).
#[cfg(target_os = "none")]
pub fn init_cpu() {
    use x86_64::registers::model_specific::{Efer, EferFlags};
    // SAFETY: the MSRs exist on every x86-64 CPU; the entry stub they name is complete, and
    // no ring-3 code runs before the kernel installs its handlers (the defaults are safe).
    unsafe {
        Efer::update(|e| e.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
        crate::cpu::wrmsr(
            MSR_STAR,
            (u64::from(SYSRET_BASE) << 48) | (u64::from(KERNEL_CS) << 32),
        );
        crate::cpu::wrmsr(MSR_LSTAR, exo_syscall_entry as *const () as u64);
        crate::cpu::wrmsr(MSR_FMASK, SFMASK);
        crate::cpu::wrmsr(MSR_CSTAR, 0);
        crate::cpu::wrmsr(MSR_SYSENTER_CS, 0);
        crate::cpu::wrmsr(MSR_SYSENTER_ESP, 0);
        crate::cpu::wrmsr(MSR_SYSENTER_EIP, 0);
        // The user GS base (always 0 here: programs cannot set it) is what an NMI, #MC or
        // #DB swaps in when it finds GS base unlike this CPU's kernel GS base: on an AP
        // between `load_idt` and the per-CPU block's install, GS base is 0, and the swapgs
        // brought in whatever firmware or a previous kernel (kexec) left here, which
        // `exo_percpu::installed()` then took for a block (found by review, 2026-12-06).
        crate::cpu::wrmsr(MSR_KERNEL_GS_BASE, 0);
    }
}

/// Whether the calling CPU's other entries into ring 0 are closed ([`init_cpu`]): CSTAR and
/// the SYSENTER MSRs all zero, and the user GS base (KERNEL_GS_BASE in ring 0) zero.
#[cfg(target_os = "none")]
pub fn legacy_entries_closed() -> bool {
    // SAFETY: reading these MSRs (present on every x86-64 CPU) has no side effect.
    unsafe {
        crate::cpu::rdmsr(MSR_CSTAR) == 0
            && crate::cpu::rdmsr(MSR_SYSENTER_CS) == 0
            && crate::cpu::rdmsr(MSR_SYSENTER_ESP) == 0
            && crate::cpu::rdmsr(MSR_SYSENTER_EIP) == 0
            && crate::cpu::rdmsr(MSR_KERNEL_GS_BASE) == 0
    }
}

/// Test support: sets the SYSENTER MSRs and CSTAR as another kernel may have left them
/// (kernel CS, an entry address in the upper half), on the calling CPU; [`init_cpu`] must
/// close them again.
#[cfg(target_os = "none")]
pub fn open_legacy_entries_for_test() {
    // SAFETY: nothing executes `sysenter` or compatibility-mode `syscall` on this CPU while
    // the test runs (kernel code never does; the test thread is a kernel thread), and the
    // caller calls `init_cpu` right after; the values are inert until then.
    unsafe {
        crate::cpu::wrmsr(MSR_SYSENTER_CS, u64::from(KERNEL_CS));
        crate::cpu::wrmsr(MSR_SYSENTER_EIP, exo_syscall_entry as *const () as u64);
        crate::cpu::wrmsr(MSR_CSTAR, exo_syscall_entry as *const () as u64);
        // A stale user GS base (ring 0 with GS base the block's: no entry swaps it in).
        crate::cpu::wrmsr(MSR_KERNEL_GS_BASE, 0xffff_8000_dead_0000);
    }
}

/// Is `syscall` enabled on the calling CPU with this module's entry (EFER.SCE, LSTAR)?
#[cfg(target_os = "none")]
pub fn is_enabled() -> bool {
    use x86_64::registers::model_specific::{Efer, EferFlags};
    // SAFETY: reading LSTAR has no side effect.
    let lstar = unsafe { crate::cpu::rdmsr(MSR_LSTAR) };
    Efer::read().contains(EferFlags::SYSTEM_CALL_EXTENSIONS)
        && lstar == exo_syscall_entry as *const () as u64
}

/// Is `rip` a canonical lower-half address (what the exit path lets `sysretq` return to)?
#[inline]
pub fn is_user_rip(rip: u64) -> bool {
    rip >> 47 == 0
}

/// Leaves the kernel for ring 3 for the first time: RIP `rip`, RSP `rsp`, `arg` in RDI,
/// every other general register 0, RFLAGS = IF, the user FS and GS bases 0, CS/SS the user
/// selectors, DS, ES, FS and GS the null selector. Later entries to the kernel (system
/// calls, traps) start at the kernel stack top again.
///
/// # Safety
/// * The per-CPU block's kernel stack top ([`GS_KSTACK_TOP`]) and this CPU's TSS RSP0 are
///   the top of the calling thread's own kernel stack (the scheduler keeps them so).
/// * Nothing on the current stack is used again: its frames are abandoned (no destructor
///   runs) and overwritten by the next entry from ring 3.
/// * GS is the kernel's (this is kernel code).
///
/// # Panics
/// When `rip` is not a user address ([`crate::usercopy::USER_BASE`]..`USER_END`).
#[cfg(target_os = "none")]
pub unsafe fn enter_user(rip: u64, rsp: u64, arg: u64) -> ! {
    assert!(
        crate::usercopy::is_user_range(rip, 1),
        "enter_user: {rip:#x} is not a user address"
    );
    // SAFETY: per the contract; `exo_enter_user` never returns (IRETQ to ring 3 with a
    // frame the CPU accepts: the user selectors of our GDT, a canonical user RIP).
    unsafe {
        core::arch::asm!("jmp exo_enter_user", in("rdi") rip, in("rsi") rsp, in("rdx") arg,
                         options(noreturn))
    }
}

/// Bytes an [`IpcFrame`] takes at the top of a thread's kernel stack: the IPC entry pushes
/// it from [`GS_KSTACK_TOP`] down, so a thread inside an IPC call has its frame at
/// `stack top - IPC_FRAME_BYTES`.
pub const IPC_FRAME_BYTES: u64 = core::mem::size_of::<IpcFrame>() as u64;

/// Leaves the kernel for ring 3 through the IPC frame `frame`, as the IPC entry's own
/// return does (return address check, every register from the frame, `sysretq`).
///
/// # Safety
/// * Interrupts are off; `frame` is the IPC frame at the top of the running thread's own
///   kernel stack (the per-CPU kernel stack top and TSS.RSP0 are that stack's top).
/// * Nothing on the current stack below the frame is used again (no destructor runs).
#[cfg(target_os = "none")]
pub unsafe fn ipc_exit(frame: *mut IpcFrame) -> ! {
    // SAFETY: per the contract; the restore path pops the frame and leaves by `sysretq`.
    unsafe {
        core::arch::asm!("mov rsp, {f}", "jmp exo_ipc_restore", f = in(reg) frame,
                         options(noreturn))
    }
}

/// The switch frame a thread parked at its IPC boundary leaves just below its frame, with
/// its `arg` above it (`frame - INIT_STACK_BYTES`, as [`crate::context::init_stack`] lays
/// them out for a new thread): [`crate::context::switch`] or [`crate::context::enter`] to it
/// runs `entry(arg)` on that stack, as for a new thread.
#[cfg(target_os = "none")]
macro_rules! park_frame_asm {
    () => {
        concat!(
            "lea rax, [rip + {tramp}]\n",
            "mov [rsi - 32], rax\n",
            "mov [rsi - 24], rdx\n",
            "mov qword ptr [rsi - 16], 0\n",
            "mov [rsi - 8], rcx\n",
            "lea rax, [rsi - 32]\n",
            "mov [rdi], rax\n",
        )
    };
}

// The offsets the macro writes: rip, rbx (entry), rbp and arg of a new thread's frame ending
// at the IPC frame.
const _: () = {
    use crate::context::{INIT_STACK_BYTES, OFF_ARG, OFF_RBP, OFF_RBX, OFF_RIP};
    assert!(INIT_STACK_BYTES == 32);
    assert!(OFF_RIP == 0 && OFF_RBX == 8 && OFF_RBP == 16 && OFF_ARG == 24);
};

/// Parks the running thread at its IPC boundary and leaves for ring 3 as another thread
/// through that thread's IPC frame `to`, carrying a message: the eight payload registers
/// get the words of the parked thread's own frame (the message it sends: no copy into
/// `to`), every other register comes from `to` (whose RAX, RDI and RSI the caller set: the
/// result, badge and info). `unlock` (a byte lock: the CPU's scheduler lock, held across
/// the switch) is released once the words are read and the stack is `to`'s: from then on
/// the parked thread may be resumed anywhere. Parking: its saved stack pointer (`*park`)
/// becomes a switch frame just below `frame` (its own IPC frame, which stays as it is)
/// that runs `entry(arg)` when switched to.
///
/// # Safety
/// * Interrupts are off; `frame` is the running thread's IPC frame at its stack top,
///   16-byte aligned; nothing on its stack below the frame is used again.
/// * `park` is that thread's saved-context slot, written under `unlock`, which the caller
///   holds; `entry` is an `extern "sysv64" fn(u64) -> !`.
/// * `to` is the IPC frame at the top of the stack of a thread that is switched out and
///   now made current on this CPU (per-CPU kernel stack top, TSS.RSP0, address space set
///   for it).
#[cfg(target_os = "none")]
#[unsafe(naked)]
pub unsafe extern "sysv64" fn park_and_exit(
    park: *mut u64,
    frame: u64,
    entry: u64,
    arg: u64,
    to: *mut IpcFrame,
    unlock: *const core::sync::atomic::AtomicBool,
) -> ! {
    core::arch::naked_asm!(
        "mov rsp, r8",
        park_frame_asm!(),
        // A return address `sysretq` cannot take: the general exit (it kills the thread).
        "mov rax, [rsp + {rip}]",
        "shr rax, 47",
        "jnz 2f",
        "mov rcx, r9",
        "mov rdx, [rsi + {w0}]",
        "mov r10, [rsi + {w0} + 8]",
        "mov r8, [rsi + {w0} + 16]",
        "mov r9, [rsi + {w0} + 24]",
        "mov r12, [rsi + {w0} + 32]",
        "mov r13, [rsi + {w0} + 40]",
        "mov r14, [rsi + {w0} + 48]",
        "mov r15, [rsi + {w0} + 56]",
        "mov byte ptr [rcx], 0",
        "pop rbp",
        "pop rbx",
        "pop rax",
        "pop rdi",
        "pop rsi",
        "add rsp, 64",
        "pop rcx",
        sysret_tail_asm!(),
        "2:",
        "mov byte ptr [r9], 0",
        "jmp exo_ipc_restore",
        tramp = sym crate::context::trampoline,
        rip = const core::mem::offset_of!(IpcFrame, rip),
        w0 = const core::mem::offset_of!(IpcFrame, words),
        keep = const RFLAGS_USER_KEEP,
        initial = const RFLAGS_USER_INITIAL,
    )
}

/// [`park_and_exit`], resuming instead the switched-out context whose saved stack pointer
/// is `to` (as [`crate::context::enter`]; the CPU's lock stays held: the resumed context
/// releases it).
///
/// # Safety
/// As for [`park_and_exit`], with `to` as for [`crate::context::switch`]'s `to`.
#[cfg(target_os = "none")]
#[unsafe(naked)]
pub unsafe extern "sysv64" fn park_and_enter(
    park: *mut u64,
    frame: u64,
    entry: u64,
    arg: u64,
    to: u64,
) -> ! {
    core::arch::naked_asm!(
        park_frame_asm!(),
        "mov rdi, r8",
        "jmp {enter}",
        tramp = sym crate::context::trampoline,
        enter = sym crate::context::enter,
    )
}
