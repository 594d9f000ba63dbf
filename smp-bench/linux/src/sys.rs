//! The Linux calls the peer makes: raw `syscall` instructions for the timed system calls
//! (no libc wrapper, no glibc cache), futexes, pinning, mounts and the power-off path.

use std::io;
use std::sync::atomic::AtomicU32;

/// `-ENOSYS` as the kernel returns it in `rax`.
pub const ENOSYS_RET: i64 = -(libc::ENOSYS as i64);

/// A system call number Linux does not use: answered `-ENOSYS` (as Exo-OS's `/ubench` uses 1000).
pub const NULL_NR: i64 = 1000;

/// `syscall` with no argument: the raw instruction, what `/ubench` times on Exo-OS.
#[inline(always)]
pub fn syscall0(nr: i64) -> i64 {
    let ret: i64;
    // SAFETY: only called with numbers that take no argument and touch no user memory
    // (`getpid`, an unknown number); the kernel clobbers rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `write(fd, buf)` as one raw `syscall`.
#[inline(always)]
pub fn write_raw(fd: i32, buf: &[u8]) -> i64 {
    let ret: i64;
    // SAFETY: the kernel reads `buf.len()` bytes from a live slice.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_write => ret,
            in("rdi") i64::from(fd),
            in("rsi") buf.as_ptr(),
            in("rdx") buf.len(),
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|extra, -1, 0)` as one
/// raw `syscall` (what `exo_rt::map_anonymous` is on Exo-OS); the address, or `-errno`.
#[inline(always)]
pub fn mmap_anon_raw(len: usize, extra: i32) -> i64 {
    let ret: i64;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks touches nothing of ours.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_mmap => ret,
            in("rdi") 0usize,
            in("rsi") len,
            in("rdx") i64::from(libc::PROT_READ | libc::PROT_WRITE),
            in("r10") i64::from(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra),
            in("r8") -1i64,
            in("r9") 0usize,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `munmap(addr, len)` as one raw `syscall`.
///
/// # Safety
/// Nothing may use `[addr, addr + len)` afterwards.
#[inline(always)]
pub unsafe fn munmap_raw(addr: usize, len: usize) -> i64 {
    let ret: i64;
    // SAFETY: the caller gives up the range.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_munmap => ret,
            in("rdi") addr,
            in("rsi") len,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Sleeps while `*word == val` (`FUTEX_WAIT_PRIVATE`); spurious returns are the caller's loop.
pub fn futex_wait(word: &AtomicU32, val: u32) {
    // SAFETY: the futex word is a live, aligned u32; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one waiter of `word` (`FUTEX_WAKE_PRIVATE`).
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as `futex_wait`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays inside it for cpu < CPU_SETSIZE.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPU the calling thread runs on.
pub fn current_cpu() -> usize {
    // SAFETY: no arguments.
    let c = unsafe { libc::sched_getcpu() };
    c.max(0) as usize
}

/// CPUs online.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf reads a value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).expect("no NUL in a fixed path")
}

/// `mkdir -p`-like for one level, then `mount(fstype, target, fstype)`; EBUSY (already
/// mounted) counts as done.
pub fn mount(fstype: &str, target: &str) -> io::Result<()> {
    let _ = std::fs::create_dir(target);
    let (src, dst, ty) = (cstr(fstype), cstr(target), cstr(fstype));
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            ty.as_ptr(),
            0,
            core::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Opens `/dev/console` as fds 0, 1 and 2 (for an `/init` the kernel could not give a
/// console: the initramfs has no `/dev/console` node until devtmpfs is mounted).
pub fn console_as_stdio() -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")?
        .into_raw_fd();
    for target in 0..3 {
        if fd != target {
            // SAFETY: dup2 onto the standard fds, which nothing else in this program owns yet.
            unsafe { libc::dup2(fd, target) };
        }
    }
    if fd > 2 {
        // SAFETY: `fd` is ours and duplicated above.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Ends the run as process 1: the Exo-OS verdict through QEMU's `isa-debug-exit` device
/// (port 0xf4: 0x10 success, QEMU exits 33; 0x11 failure, exits 35), so `scripts/qemu.sh`
/// reads Linux's verdict as it reads Exo-OS's, once the console has drained; without that device (or without the right to
/// the port), `reboot(LINUX_REBOOT_CMD_POWER_OFF)`.
pub fn power_off(ok: bool) -> ! {
    // SAFETY: ioperm only changes this process's I/O bitmap; the out goes to the QEMU exit
    // device (a port nothing else on these machines uses).
    unsafe {
        // The console's UART drains its buffer after `write` returns: wait for the last
        // lines (END among them) to be out before QEMU goes away.
        libc::tcdrain(1);
        libc::sync();
        if libc::ioperm(0xf4, 4, 1) == 0 {
            let v: u8 = if ok { 0x10 } else { 0x11 };
            core::arch::asm!("out dx, al", in("dx") 0xf4u16, in("al") v, options(nomem, nostack));
        }
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    // reboot only returns on failure: process 1 must not exit (that panics the kernel).
    loop {
        std::thread::park();
    }
}
