//! The serial console: one lock for whole lines, the `log` facade, and `kprintln!`.
//!
//! Lines are written under a spin lock taken with interrupts off, so lines from different
//! CPUs never interleave. The panic path may steal the lock after a bounded wait.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};

/// Lock owner + 1 (0 = free). A ticket-free owner word lets the panic path detect a lock
/// held by itself (re-entrant panic) and steal it after a deadline.
static OWNER: AtomicU32 = AtomicU32::new(0);

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        exo_arch::serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

fn me() -> u32 {
    if exo_percpu::installed() {
        exo_percpu::cpu_id_hint().0 + 1
    } else {
        1
    }
}

/// Writes one line (the arguments plus a newline) atomically with respect to other CPUs.
pub fn write_line(args: fmt::Arguments<'_>) {
    locked(|| {
        let _ = Serial.write_fmt(args);
        let _ = Serial.write_str("\n");
    });
}

/// Writes `bytes` as they are (a user program's `write`), atomically with respect to other
/// CPUs' lines.
pub fn write_bytes(bytes: &[u8]) {
    locked(|| exo_arch::serial::write_bytes(bytes));
}

/// Runs `f` holding the console lock, interrupts off.
fn locked(f: impl FnOnce()) {
    exo_arch::cpu::without_interrupts(|| {
        let me = me();
        let start = exo_arch::tsc::rdtsc();
        let mut stolen = false;
        loop {
            match OWNER.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(owner) if owner == me => {
                    // Re-entry from a fault or NMI on this CPU: write anyway.
                    stolen = true;
                    break;
                }
                Err(_) => {
                    // Bounded: a CPU that died holding the lock cannot silence the others.
                    if exo_arch::tsc::rdtsc().wrapping_sub(start) > 20_000_000_000 {
                        stolen = true;
                        break;
                    }
                    core::hint::spin_loop();
                }
            }
        }
        f();
        if !stolen {
            OWNER.store(0, Ordering::Release);
        }
    });
}

/// Prints a line on the serial console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => { $crate::console::write_line(format_args!($($arg)*)) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let cpu = if exo_percpu::installed() {
            exo_percpu::cpu_id_hint().0
        } else {
            0
        };
        write_line(format_args!("[cpu{cpu} {:<5}] {}", r.level(), r.args()));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Brings up COM1 and installs the logger at `level`.
pub fn init(level: log::LevelFilter) {
    exo_arch::serial::init();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
