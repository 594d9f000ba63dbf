//! Leaving the machine: QEMU's `isa-debug-exit` device (iobase 0xf4), with a halt fallback
//! on VMMs that do not have it.

use crate::port::outl;

/// Exit status written to the debug-exit port; QEMU exits with `(code << 1) | 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// 0x10: QEMU exits 33.
    Success = 0x10,
    /// 0x11: QEMU exits 35.
    Failure = 0x11,
}

/// Exits QEMU; where the device is absent, halts this CPU forever.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device (or nothing); writing it ends the VM.
    unsafe { outl(0xf4, code as u32) };
    crate::cpu::halt_forever()
}
