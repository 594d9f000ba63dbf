//! The wrappers against the host's Linux kernel: the calls Exo-OS shares with Linux have
//! Linux's numbers, registers and (a subset of) its meaning, so running them here checks
//! the register conventions of `raw` (all six argument registers), the typed decoding,
//! and that the errors `/faults` expects from Exo-OS are the ones Linux gives (where the
//! doc says Exo-OS means the same). The Exo-OS-only calls (512 and up) are not made here.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use exo_rt::abi::{CLOCK_MONOTONIC, CLOCK_REALTIME, PROT_NONE, PROT_READ, PROT_WRITE};
use exo_rt::io::FdWriter;
use exo_rt::{Errno, Timespec};

#[path = "../../faults/src/bad_args.rs"]
mod bad_args;

#[test]
fn getpid_is_the_process_id() {
    assert_eq!(exo_rt::getpid(), std::process::id() as usize);
}

#[test]
fn write_reaches_a_pipe_and_bad_fds_are_ebadf() {
    let (mut r, w) = std::io::pipe().unwrap();
    assert_eq!(exo_rt::write(w.as_raw_fd() as usize, b"exo\n"), Ok(4));
    assert_eq!(exo_rt::write(w.as_raw_fd() as usize, b""), Ok(0));
    drop(w);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "exo\n");
    assert_eq!(exo_rt::write(999, b"x"), Err(Errno::EBADF));
}

#[test]
fn fd_writer_writes_lines_whole_and_splits_long_output() {
    let (mut r, w) = std::io::pipe().unwrap();
    let fd = w.as_raw_fd() as usize;
    let mut small = FdWriter::<8>::new(fd);
    use std::fmt::Write;
    write!(small, "{}-{}", "a".repeat(20), 42).unwrap();
    assert!(small.buffered().len() <= 8);
    small.flush().unwrap();
    let mut line = FdWriter::<64>::new(fd);
    writeln!(line, "pid {}", 7).unwrap();
    assert_eq!(line.buffered(), b"pid 7\n");
    line.flush().unwrap();
    drop(w);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, format!("{}-42pid 7\n", "a".repeat(20)));
    let mut bad = FdWriter::<4>::new(999);
    bad.push(b"0123456789");
    assert_eq!(bad.flush(), Err(Errno::EBADF));
}

#[test]
fn anonymous_memory_maps_protects_and_unmaps() {
    let len = 3 * 4096;
    let p = exo_rt::map_anonymous(len, PROT_READ | PROT_WRITE).unwrap();
    let addr = p.as_ptr() as usize;
    assert_eq!(addr % 4096, 0);
    // SAFETY: our fresh mapping.
    unsafe {
        assert_eq!(*p.as_ptr().add(len - 1), 0, "zero-filled");
        p.as_ptr().add(4096).write(0xa5);
        assert_eq!(exo_rt::mprotect(addr, 4096, PROT_NONE), Ok(0));
        assert_eq!(exo_rt::mprotect(addr, 4096, PROT_READ), Ok(0));
        assert_eq!(*p.as_ptr().add(4096), 0xa5);
        assert_eq!(
            exo_rt::mprotect(addr + 1, 4096, PROT_READ),
            Err(Errno::EINVAL)
        );
        assert_eq!(exo_rt::munmap(addr, len), Ok(0));
        // Not `addr`: the other tests' threads may map there again at once (seen in CI).
        // Below `vm.mmap_min_addr` (64 KiB) nothing is ever mapped.
        assert_eq!(
            exo_rt::mprotect(0x1000, 4096, PROT_READ),
            Err(Errno::ENOMEM)
        );
    }
    assert_eq!(
        exo_rt::map_anonymous(0, PROT_READ).unwrap_err(),
        Errno::EINVAL
    );
}

#[test]
fn clocks_and_sleep() {
    let a = exo_rt::clock_gettime(CLOCK_MONOTONIC).unwrap();
    assert!(a.is_valid());
    exo_rt::nanosleep(&Timespec::from_nanos(2_000_000)).unwrap();
    let b = exo_rt::clock_gettime(CLOCK_MONOTONIC).unwrap();
    assert!(b.as_nanos().unwrap() - a.as_nanos().unwrap() >= 2_000_000);
    assert!(exo_rt::clock_gettime(CLOCK_REALTIME).unwrap().tv_sec > 1_600_000_000);
    assert_eq!(exo_rt::clock_gettime(99), Err(Errno::EINVAL));
    let bad = Timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000_000,
    };
    assert_eq!(exo_rt::nanosleep(&bad), Err(Errno::EINVAL));
    assert!(exo_rt::monotonic_nanos() >= b.as_nanos().unwrap());
}

#[test]
fn futex_wait_and_wake() {
    let word = Arc::new(AtomicU32::new(0));
    assert_eq!(exo_rt::futex_wait(&word, 1, None), Err(Errno::EAGAIN));
    let t = Timespec::from_nanos(1_000_000);
    assert_eq!(
        exo_rt::futex_wait(&word, 0, Some(&t)),
        Err(Errno::ETIMEDOUT)
    );
    assert_eq!(exo_rt::futex_wake(&word, 1), Ok(0));
    let w2 = Arc::clone(&word);
    let waiter = std::thread::spawn(move || {
        while w2.load(Ordering::Acquire) == 0 {
            let _ = exo_rt::futex_wait(&w2, 0, Some(&Timespec::from_nanos(50_000_000)));
        }
    });
    std::thread::sleep(Duration::from_millis(5));
    word.store(1, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !waiter.is_finished() && Instant::now() < deadline {
        exo_rt::futex_wake(&word, u32::MAX).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    waiter.join().unwrap();
}

#[test]
fn getcpu_and_pinning() {
    // In a thread of its own: pinning sticks to the calling thread.
    std::thread::spawn(|| {
        let cpu = exo_rt::getcpu().unwrap();
        assert_eq!(exo_rt::pin_to_cpu(cpu), Ok(0));
        for _ in 0..10 {
            exo_rt::sched_yield();
            assert_eq!(exo_rt::getcpu(), Ok(cpu));
        }
        assert_eq!(
            exo_rt::pin_to_cpu(exo_rt::CPU_SET_BYTES * 8),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            exo_rt::sched_setaffinity(0, &[0u64; 16]),
            Err(Errno::EINVAL)
        );
    })
    .join()
    .unwrap();
}

#[test]
fn unknown_numbers_are_enosys() {
    // SAFETY: an unknown number has no effect.
    let r = unsafe { exo_rt::raw::syscall0(1000) };
    assert_eq!(Errno::from_ret(r), Err(Errno::ENOSYS));
}

#[test]
fn the_errors_faults_expects_are_linuxs() {
    let mut checked = 0;
    for c in bad_args::CHECKS.iter().filter(|c| c.linux) {
        assert_eq!(Errno::from_ret((c.call)()), Err(c.want), "{}", c.what);
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
    for &(what, call) in bad_args::ZERO {
        assert_eq!(call(), 0, "{what}");
    }
}
