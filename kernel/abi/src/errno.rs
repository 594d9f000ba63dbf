//! Error codes: Linux's values, returned negated in `rax`.

use core::fmt;

macro_rules! errnos {
    ($($name:ident = $code:literal, $desc:literal;)*) => {
        /// An error a system call returns, as `-code` in `rax`. The values are Linux's, so a
        /// C program can use `<errno.h>` names.
        #[repr(i32)]
        #[allow(clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Errno {
            $(
                #[doc = concat!($desc, " (", stringify!($code), ").")]
                $name = $code,
            )*
        }

        impl Errno {
            /// Every error code, in ascending order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name),*];

            /// The error whose code is `code` (positive), if Exo-OS defines it.
            pub const fn from_code(code: i32) -> Option<Errno> {
                match code {
                    $($code => Some(Errno::$name),)*
                    _ => None,
                }
            }

            /// The symbolic name, e.g. `"EFAULT"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Errno::$name => stringify!($name),)*
                }
            }

            /// What it means, e.g. `"bad address"`.
            pub const fn description(self) -> &'static str {
                match self {
                    $(Errno::$name => $desc,)*
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "operation not permitted";
    ENOENT = 2, "no such file or directory";
    ESRCH = 3, "no such process or thread";
    EINTR = 4, "interrupted system call";
    EIO = 5, "input/output error";
    ENOEXEC = 8, "exec format error";
    EBADF = 9, "bad file descriptor";
    ECHILD = 10, "no child process";
    EAGAIN = 11, "resource temporarily unavailable";
    ENOMEM = 12, "cannot allocate memory";
    EFAULT = 14, "bad address";
    EBUSY = 16, "device or resource busy";
    EEXIST = 17, "file exists";
    EINVAL = 22, "invalid argument";
    EPIPE = 32, "broken pipe";
    ERANGE = 34, "numerical result out of range";
    EDEADLK = 35, "resource deadlock avoided";
    ENAMETOOLONG = 36, "file name too long";
    ENOSYS = 38, "function not implemented";
    EMSGSIZE = 90, "message too long";
    ECONNABORTED = 103, "software caused connection abort";
    ECONNRESET = 104, "connection reset by peer";
    ETIMEDOUT = 110, "connection timed out";
}

/// Largest error code a result can carry: results in `-MAX_ERRNO..=-1` are errors.
pub const MAX_ERRNO: isize = 4095;

impl Errno {
    /// The positive code, e.g. 14 for [`Errno::EFAULT`].
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The value the kernel puts in `rax`: `-code`.
    pub const fn as_ret(self) -> isize {
        -(self as i32 as isize)
    }

    /// Decodes a system call's `rax`: a value `>= 0` is a success (`Ok`), a negative one an
    /// error. An error code this crate does not define (which the kernel never returns: it
    /// can only build results with [`Errno::as_ret`]) and a value below `-4095` decode as
    /// [`Errno::EIO`]; use [`Errno::from_code`] to see the exact code.
    #[inline(always)]
    pub const fn from_ret(ret: isize) -> Result<usize, Errno> {
        if ret >= 0 {
            return Ok(ret as usize);
        }
        Err(Errno::from_negative(ret))
    }

    /// The error of a negative `rax` (out of line: the success path is one test).
    #[cold]
    #[inline(never)]
    const fn from_negative(ret: isize) -> Errno {
        if ret < -MAX_ERRNO {
            return Errno::EIO;
        }
        match Errno::from_code(-ret as i32) {
            Some(e) => e,
            None => Errno::EIO,
        }
    }

    /// The error named `name` (e.g. `"EFAULT"`).
    pub fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.iter().copied().find(|e| e.name() == name)
    }
}

impl fmt::Display for Errno {
    /// `EFAULT (bad address)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.description())
    }
}

impl From<Errno> for isize {
    fn from(e: Errno) -> isize {
        e.as_ret()
    }
}
