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

/// Looks at the line status register before each byte at most this often.
const PATIENCE: u32 = 100_000;

/// The UART did not take a byte within [`PATIENCE`] looks: later bytes look once each, and
/// are dropped, until it takes one again.
static WEDGED: AtomicBool = AtomicBool::new(false);

fn put(b: u8) {
    put_with(
        &WEDGED,
        // SAFETY: COM1's line-status port; reading it has no memory effect.
        || unsafe { inb(COM1 + 5) } & 0x20 != 0,
        // SAFETY: COM1's data port; writing a byte has no memory effect.
        |b| unsafe { outb(COM1, b) },
        b,
    );
}

/// Writes `b` with `write` once `ready` says the transmitter takes it, looking at most
/// [`PATIENCE`] times, or once while `wedged` (set when the patience runs out, cleared
/// when a byte goes). Returns whether the byte went. Until 2026-12-05 every byte waited
/// the whole patience for a UART that never became ready (its host end no longer read):
/// 0.1 to 1 s a byte under KVM, with the console lock held, so a few KiB of log, or a panic
/// report, took minutes to hours: a wedged UART hung the kernel instead of dropping bytes
/// (found by review; host test `wedged_uart_costs_one_look_a_byte`).
fn put_with(wedged: &AtomicBool, ready: impl Fn() -> bool, write: impl Fn(u8), b: u8) -> bool {
    let looks = if wedged.load(Ordering::Relaxed) {
        1
    } else {
        PATIENCE
    };
    for _ in 0..looks {
        if ready() {
            wedged.store(false, Ordering::Relaxed);
            write(b);
            return true;
        }
        core::hint::spin_loop();
    }
    wedged.store(true, Ordering::Relaxed);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn wedged_uart_costs_one_look_a_byte() {
        let wedged = AtomicBool::new(false);
        let looks = Cell::new(0u32);
        let ready = Cell::new(false);
        let sent = Cell::new(0u32);
        let look = || {
            looks.set(looks.get() + 1);
            ready.get()
        };
        let write = |_| sent.set(sent.get() + 1);
        // The first byte waits the whole patience, then every other byte looks once.
        assert!(!put_with(&wedged, look, write, b'a'));
        assert_eq!(looks.get(), PATIENCE);
        for _ in 0..1000 {
            assert!(!put_with(&wedged, look, write, b'b'));
        }
        assert_eq!(looks.get(), PATIENCE + 1000);
        assert_eq!(sent.get(), 0);
        // Ready again: the byte goes, and the full patience is back for the next one.
        ready.set(true);
        assert!(put_with(&wedged, look, write, b'c'));
        assert_eq!(sent.get(), 1);
        assert!(!wedged.load(Ordering::Relaxed));
    }
}
