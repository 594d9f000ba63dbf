//! `/ubench`: the user-mode benchmarks of issue 12, pinned to the CPU it starts on, printed
//! as suite `user` (`SUITE,user,...`, one `BENCH` line per row, `END,user,<rows>`):
//!
//! | row | one sample is |
//! |-----|---------------|
//! | `syscall.null` | system call 1000 (unknown) returning `-ENOSYS`, round trip |
//! | `syscall.getpid` | `getpid()`, round trip |
//! | `syscall.write.64` | `write(1, <64 bytes>, 64)`: prints a 64-byte line each time |
//! | `mmap.4k` | `mmap` of one anonymous read-write page |
//! | `pf.anon.4k` | the first write to that page |
//! | `proc.spawn` | `spawn("/empty")` + `wait` |
//! | `uthread.spawn` | `thread_create` + `thread_join` of a thread that returns at once |
//! | `ctx.switch.as` | `sched_yield` round trip between this process and a copy of it on the same CPU, / 2 |
//!
//! With `arg = 0x59 << 56 | cpu << 32 | count` (cpu < 2^24, count < 2^32), it is instead that copy: it pins itself
//! to `cpu`, yields `count` times and exits 0.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::black_box;

use exo_rt::abi::{PROT_READ, PROT_WRITE};
use exo_rt::bench::{Samples, Suite};
use exo_rt::thread::Start;
use exo_rt::time::rdtsc_precise;
use exo_rt::{Errno, ExitStatus, eprintln, println};

exo_rt::entry!(run);

/// Role tag in the top byte of `arg`: the yield partner of `ctx.switch.as`.
const PARTNER: u64 = 0x59;
/// Samples per row (and the capacity of each buffer: 4 KiB of stack).
const N: usize = 512;
/// Syscall rows: warm-up calls.
const WARMUP: usize = 64;
/// `syscall.write.64` lines (warm-up included): the console shows every one.
const WRITE_SAMPLES: usize = 256;
/// `proc.spawn` and `uthread.spawn` samples (each is a whole process or thread).
const SPAWN_SAMPLES: usize = 128;
/// `ctx.switch.as` warm-up round trips (the partner starts during them).
const YIELD_WARMUP: usize = 256;
/// The line `syscall.write.64` writes: 64 bytes with its newline.
const LINE64: &[u8; 64] = b"ubench: syscall.write.64 sample line, exactly 64 bytes long....\n";

fn run(arg: u64) -> i32 {
    if arg >> 56 == PARTNER {
        return partner((arg >> 32) as usize & 0xff_ffff, arg as u32);
    }
    let cpu = exo_rt::getcpu().unwrap_or(0);
    let ncpus = count_cpus();
    if let Err(e) = exo_rt::pin_to_cpu(cpu) {
        eprintln!("ubench: cannot pin to cpu {cpu}: {e}");
        return 1;
    }
    println!(
        "ubench: pid {} pinned to cpu {cpu} of {ncpus}",
        exo_rt::getpid()
    );
    let mut suite = Suite::start("user", ncpus as u32, env!("EXO_GIT_REV"));
    println!(
        "ubench: mode {}, timing pair {} ticks (subtracted)",
        suite.mode(),
        suite.overhead()
    );
    let mut s = Samples::<N>::new();
    let mut s2 = Samples::<N>::new();
    let mut failed = false;

    // SAFETY: an unknown number only returns -ENOSYS.
    let null = || unsafe { exo_rt::raw::syscall0(1000) };
    if Errno::from_ret(null()) != Err(Errno::ENOSYS) {
        eprintln!("ubench: syscall 1000 did not return -ENOSYS");
        failed = true;
    }
    suite.run("syscall.null", &mut s, WARMUP, N, 1, null);
    let getpid = suite.run("syscall.getpid", &mut s, WARMUP, N, 1, exo_rt::getpid);

    println!(
        "ubench: syscall.write.64 prints {WRITE_SAMPLES} lines of 64 bytes to fd 1 (what it measures)"
    );
    let mut write_err = None;
    let stats = suite.measure(&mut s, 16, WRITE_SAMPLES - 16, 1, || {
        if let Err(e) = exo_rt::write(1, LINE64) {
            write_err.get_or_insert(e);
        }
    });
    match write_err {
        None => suite.emit("syscall.write.64", stats),
        Some(e) => {
            eprintln!("ubench: syscall.write.64: {e}");
            failed = true;
        }
    }

    failed |= mmap_rows(&mut suite, &mut s, &mut s2).is_err();
    failed |= proc_spawn(&mut suite, &mut s).is_err();
    failed |= uthread_spawn(&mut suite, &mut s).is_err();
    match ctx_switch_as(&mut suite, &mut s, cpu) {
        Ok(p50) => {
            if let Some(g) = getpid
                && p50 < g.p50
            {
                println!(
                    "ubench: ctx.switch.as p50 {p50} < syscall.getpid p50 {}: did the partner run on this CPU?",
                    g.p50
                );
            }
        }
        Err(_) => failed = true,
    }
    suite.end();
    i32::from(failed)
}

/// The yield partner of `ctx.switch.as`.
fn partner(cpu: usize, count: u32) -> i32 {
    if let Err(e) = exo_rt::pin_to_cpu(cpu) {
        eprintln!("ubench: partner cannot pin to cpu {cpu}: {e}");
        return 2;
    }
    for _ in 0..count {
        exo_rt::sched_yield();
    }
    0
}

/// CPUs `0..n` that accept a thread (moves this thread to each in turn).
fn count_cpus() -> usize {
    (0..exo_rt::CPU_SET_BYTES * 8)
        .take_while(|&c| exo_rt::pin_to_cpu(c).is_ok())
        .count()
}

/// `mmap.4k` and `pf.anon.4k`: map a page (timed), write to it (timed), unmap it.
fn mmap_rows<const M: usize>(
    suite: &mut Suite,
    map: &mut Samples<M>,
    touch: &mut Samples<M>,
) -> Result<(), Errno> {
    map.clear();
    touch.clear();
    let ovh = suite.overhead();
    for i in 0..WARMUP + N {
        let t0 = rdtsc_precise();
        let page = exo_rt::map_anonymous(4096, PROT_READ | PROT_WRITE);
        let t1 = rdtsc_precise();
        let page = page.inspect_err(|e| eprintln!("ubench: mmap 4 KiB: {e}"))?;
        // SAFETY: a fresh writable page of ours.
        unsafe { page.as_ptr().write_volatile(1) };
        let t2 = rdtsc_precise();
        // SAFETY: the page is ours and no longer used.
        unsafe { exo_rt::munmap(page.as_ptr() as usize, 4096) }
            .inspect_err(|e| eprintln!("ubench: munmap: {e}"))?;
        if i >= WARMUP {
            map.push((t1 - t0).saturating_sub(ovh));
            touch.push((t2 - t1).saturating_sub(ovh));
        }
    }
    suite.emit("mmap.4k", map.stats(0));
    suite.emit("pf.anon.4k", touch.stats(0));
    Ok(())
}

/// `proc.spawn`: spawn `/empty` and wait for it. No row unless every one exited 0.
fn proc_spawn<const M: usize>(suite: &mut Suite, s: &mut Samples<M>) -> Result<(), Errno> {
    let mut err = None;
    let stats = suite.measure(s, 4, SPAWN_SAMPLES, 1, || {
        match exo_rt::spawn("/empty", 0).and_then(exo_rt::wait) {
            Ok(ExitStatus::Exited(0)) => {}
            Ok(other) => {
                err.get_or_insert((Errno::EIO, Some(other)));
            }
            Err(e) => {
                err.get_or_insert((e, None));
            }
        }
    });
    match err {
        None => {
            suite.emit("proc.spawn", stats);
            Ok(())
        }
        Some((e, status)) => {
            match status {
                Some(st) => eprintln!("ubench: proc.spawn: /empty ended with {st}"),
                None => eprintln!("ubench: proc.spawn: {e}"),
            }
            Err(e)
        }
    }
}

fn nothing(_: u64) -> i32 {
    0
}

/// `uthread.spawn`: `thread_create` + `thread_join`, the thread on one stack mapped once.
fn uthread_spawn<const M: usize>(suite: &mut Suite, s: &mut Samples<M>) -> Result<(), Errno> {
    const STACK: usize = 16 * 4096;
    let base = exo_rt::map_anonymous(STACK, PROT_READ | PROT_WRITE)
        .inspect_err(|e| eprintln!("ubench: uthread.spawn stack: {e}"))?
        .as_ptr() as usize;
    let start = Start { f: nothing, arg: 0 };
    let top = base + STACK;
    let mut err = None;
    let stats = suite.measure(s, 4, SPAWN_SAMPLES, 1, || {
        // SAFETY: the entry reads `start` (alive until the join) and ends with
        // thread_exit; the stack is used by this thread only, the previous one has been
        // joined.
        let made = unsafe {
            exo_rt::thread_create(exo_rt::thread::entry(), top, &start as *const Start as u64)
        };
        match made.and_then(exo_rt::thread_join) {
            Ok(_) => {}
            Err(e) => {
                err.get_or_insert(e);
            }
        }
        black_box(&start);
    });
    // SAFETY: every thread has been joined: the stack is unused.
    let _ = unsafe { exo_rt::munmap(base, STACK) };
    match err {
        Some(e) => {
            eprintln!("ubench: uthread.spawn: {e}");
            Err(e)
        }
        None => {
            suite.emit("uthread.spawn", stats);
            Ok(())
        }
    }
}

/// `ctx.switch.as`: a copy of this program pinned to `cpu` yields while we do; one sample
/// is our `sched_yield` round trip (two switches between address spaces) / 2. Returns p50.
fn ctx_switch_as<const M: usize>(
    suite: &mut Suite,
    s: &mut Samples<M>,
    cpu: usize,
) -> Result<u64, Errno> {
    let rounds = YIELD_WARMUP + M;
    // The partner outlasts us: its extra yields run alone while we wait for it.
    let count = (rounds + 64) as u64;
    let arg = PARTNER << 56 | (cpu as u64 & 0xff_ffff) << 32 | count;
    let pid = exo_rt::spawn("/ubench", arg)
        .inspect_err(|e| eprintln!("ubench: spawn of the yield partner: {e}"))?;
    println!("ubench: ctx.switch.as: partner pid {pid} pinned to cpu {cpu}");
    s.clear();
    let ovh = suite.overhead();
    for i in 0..rounds {
        let t0 = rdtsc_precise();
        exo_rt::sched_yield();
        let t1 = rdtsc_precise();
        if i >= YIELD_WARMUP {
            s.push((t1 - t0).saturating_sub(ovh).div_ceil(2));
        }
    }
    let stats = s.stats(0);
    match exo_rt::wait(pid) {
        Ok(ExitStatus::Exited(0)) => {
            suite.emit("ctx.switch.as", stats);
            Ok(stats.map_or(0, |st| st.p50))
        }
        Ok(other) => {
            eprintln!("ubench: the yield partner ended with {other}");
            Err(Errno::EIO)
        }
        Err(e) => {
            eprintln!("ubench: wait for the yield partner: {e}");
            Err(e)
        }
    }
}
