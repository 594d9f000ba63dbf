//! A freestanding Rust program (see build.sh): x86_64-unknown-none links it as a static PIE
//! with rust-lld; the table of references needs R_X86_64_RELATIVE relocations.
#![no_std]
#![no_main]

static MSG: [u8; 4] = *b"exo\n";
static mut TABLE: [&u8; 3] = [&MSG[0], &MSG[1], &MSG[2]];
static mut COUNTER: u64 = 7;
static mut BIG: [u8; 20000] = [0; 20000];

fn exit(code: u64) -> ! {
    // SAFETY: the exit system call does not return and touches no memory.
    unsafe { core::arch::asm!("syscall", in("rax") 60u64, in("rdi") code, options(noreturn)) }
}

#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let i = unsafe { core::ptr::read_volatile(&raw const COUNTER) } as usize % 3;
    // SAFETY: single-threaded.
    unsafe {
        BIG[i * 100] = *core::ptr::read_volatile(&raw const TABLE[i]);
        exit(u64::from(core::ptr::read_volatile(&raw const BIG[100])));
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    exit(1)
}
