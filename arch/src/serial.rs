//! COM1 (16550 UART at 0x3F8): the serial console. Output only, polled.

use crate::port::{inb, outb};
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3F8;
static PRESENT: AtomicBool = AtomicBool::new(false);

/// Initialises COM1 at 115200 8N1, FIFOs on. Detects a missing UART by its scratch register.
pub fn init() {
    // SAFETY: the ports belong to COM1, which the kernel owns; init runs once on the BSP
    // before any other CPU or interrupt can use the port.
    unsafe {
        outb(COM1 + 7, 0xA5);
        if inb(COM1 + 7) != 0xA5 {
            return;
        }
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB
        outb(COM1, 0x01); // divisor 1: 115200
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x03); // DTR, RTS
    }
    PRESENT.store(true, Ordering::Relaxed);
}

/// Writes bytes, waiting (bounded) for the transmit holding register. Not locked: callers
/// serialise through the kernel's console lock.
pub fn write_bytes(bytes: &[u8]) {
    if !PRESENT.load(Ordering::Relaxed) {
        return;
    }
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}

fn put(b: u8) {
    // SAFETY: COM1 line-status and data ports; writing a byte has no memory effect.
    unsafe {
        // Bounded wait: a wedged UART drops bytes instead of hanging the kernel.
        for _ in 0..100_000 {
            if inb(COM1 + 5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        outb(COM1, b);
    }
}
