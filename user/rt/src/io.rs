//! Console output: [`FdWriter`], a `core::fmt::Write` that collects bytes in a fixed buffer
//! and `write`s them in as few calls as possible, and the machinery of [`print!`] and
//! friends (one `write` per line up to [`LINE_MAX`] bytes, so lines from one thread stay
//! whole on the console).
//!
//! [`print!`]: crate::print

use core::fmt;

use exo_abi::Errno;

/// Buffer size of the print macros: a longer line is written in several pieces.
pub const LINE_MAX: usize = 512;

/// Collects formatted output for file descriptor `fd` in an `N`-byte buffer; writes it
/// out when full and on [`flush`](Self::flush). Dropping it without `flush` loses what is
/// buffered.
///
/// `N` must be at least 1 (checked at compile time: with no room, [`push`](Self::push)
/// would loop for ever):
///
/// ```
/// let w = exo_rt::io::FdWriter::<1>::new(1);
/// assert!(w.buffered().is_empty());
/// ```
///
/// ```compile_fail
/// let _ = exo_rt::io::FdWriter::<0>::new(1);
/// ```
#[derive(Debug)]
pub struct FdWriter<const N: usize> {
    fd: usize,
    len: usize,
    error: Option<Errno>,
    buf: [u8; N],
}

impl<const N: usize> FdWriter<N> {
    /// An empty buffer for `fd`.
    pub const fn new(fd: usize) -> Self {
        // Until 2026-12-06 `FdWriter::<0>` built, and its first `push` never returned
        // (found by review).
        const { assert!(N > 0, "FdWriter needs a buffer of at least one byte") };
        Self {
            fd,
            len: 0,
            error: None,
            buf: [0; N],
        }
    }

    /// The bytes buffered so far.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes out what is buffered (one `write`). Returns the first error any write met.
    pub fn flush(&mut self) -> Result<(), Errno> {
        if self.len > 0 {
            if let Err(e) = crate::write(self.fd, &self.buf[..self.len]) {
                self.error.get_or_insert(e);
            }
            self.len = 0;
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Appends bytes, writing out the buffer whenever it fills.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == N {
                let _ = self.flush();
            }
            let n = (N - self.len).min(bytes.len());
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }
}

impl<const N: usize> fmt::Write for FdWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Formats `args` (and a newline when `newline`) to `fd` through a [`LINE_MAX`]-byte
/// buffer on the stack. Errors are ignored: there is nowhere to report them.
#[doc(hidden)]
pub fn _print(fd: usize, args: fmt::Arguments<'_>, newline: bool) {
    let mut w = FdWriter::<LINE_MAX>::new(fd);
    let _ = fmt::write(&mut w, args);
    if newline {
        w.push(b"\n");
    }
    let _ = w.flush();
}

/// Prints to the console (fd 1).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::io::_print($crate::abi::STDOUT, format_args!($($arg)*), false)
    };
}

/// Prints a line to the console (fd 1), in one `write` when it fits in 512 bytes.
#[macro_export]
macro_rules! println {
    () => {
        $crate::io::_print($crate::abi::STDOUT, format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::io::_print($crate::abi::STDOUT, format_args!($($arg)*), true)
    };
}

/// Prints to the error console (fd 2).
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => {
        $crate::io::_print($crate::abi::STDERR, format_args!($($arg)*), false)
    };
}

/// Prints a line to the error console (fd 2), in one `write` when it fits in 512 bytes.
#[macro_export]
macro_rules! eprintln {
    () => {
        $crate::io::_print($crate::abi::STDERR, format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::io::_print($crate::abi::STDERR, format_args!($($arg)*), true)
    };
}
