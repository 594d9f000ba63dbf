//! `exo-linux-peer`: the operations Exo-OS benchmarks, done on Linux, measured the way
//! Exo-OS measures them, printed as suite `linux` (`SUITE,linux,...`, `BENCH` lines,
//! `END,linux,<rows>`) for `scripts/compare-linux.sh`.
//!
//! Built as a static executable (`-C target-feature=+crt-static`, glibc) and booted as
//! `/init` of an initramfs holding nothing else: as process 1 it mounts devtmpfs, proc and
//! sysfs, takes `/dev/console` as its standard fds, writes `/empty` (129 bytes, `exit(0)`),
//! runs the rows, and ends the machine (QEMU's `isa-debug-exit` with the Exo-OS verdict
//! codes, else `reboot(LINUX_REBOOT_CMD_POWER_OFF)`). Run as any other process (on a
//! host), it runs the same rows and exits, mode `native`.
//!
//! Sampling is smp-bench's, as in `/ubench`: the clock is `exo_arch::tsc::rdtsc_precise`
//! (`lfence; rdtsc; lfence`), the timing-pair overhead is [`smp_bench::measure_overhead`]
//! over [`smp_bench::OVERHEAD_PAIRS`] pairs (the minimum) and is subtracted from every sample,
//! the statistics are [`smp_bench::Stats`], and the warm-up and sample counts are
//! `/ubench`'s (user rows) and the kernel bench's (`alloc.*`, `mutex.fast`). The mode is
//! detected as `exo-rt` detects it (an instruction-counting loop, then CPUID); `exo.mode=`
//! on the kernel command line overrides it, with a warning when they disagree.
//!
//! | row | one sample is | Exo-OS counterpart |
//! |-----|---------------|--------------------|
//! | `syscall.null` | raw `syscall` 1000 → `-ENOSYS` | `user` suite, same |
//! | `syscall.getpid` | raw `syscall` `getpid` (no glibc cache) | `user` suite, same |
//! | `syscall.write.64` | `write` of 64 bytes to `/dev/null` | none (no `/dev/null`) |
//! | `syscall.write.64.console` | `write` of a 64-byte line to fd 1, the serial console | `user` `syscall.write.64` (fd 1 is the console) |
//! | `mmap.4k`, `pf.anon.4k` | raw `mmap` of one anonymous page; the first write to it (a demand-zero fault) | `user` `mmap.4k.lazy`, `pf.anon.4k.lazy` (`MAP_LAZY`: demand-zero) |
//! | `mmap.4k.populate` | the same `mmap` with `MAP_POPULATE` (page allocated and zeroed) | `user` `mmap.4k` (eager) |
//! | `proc.spawn` | `posix_spawn("/empty")` + `waitpid` | `user` `proc.spawn` (`spawn` + `wait`) |
//! | `uthread.spawn` | `pthread_create` + `pthread_join`, thread returns at once | `user` suite, same |
//! | `ctx.switch.as` | `sched_yield` round trip with a forked copy on the same CPU, / 2 | `user` suite, same |
//! | `alloc.64`, `free.64`, `alloc.4k`, `free.4k` | glibc `malloc`/`free` (a `Box`, as the kernel times) | kernel heap / frame allocator (`smp` suite) |
//! | `mutex.fast` | `std::sync::Mutex` (futex) lock + unlock, uncontended, 16 per sample | kernel `mutex.fast` (`smp` suite) |
//! | `ctx.switch` | two threads on one CPU ping-ponging through a futex, round trip / 2 | kernel `ctx.switch` (kernel threads) |
//! | `ipc.rtt.64.pipe`, `ipc.rtt.64.futex` | 64 bytes there and back between two threads on one CPU | none (no IPC in Exo-OS yet) |
//! | `ipc.rtt.64.xcore.pipe`, `ipc.rtt.64.xcore.futex` | the same, the partner on CPU 1 | none |
//! | `c2c.rtt.0.1` | cache-line ping-pong, spinning, CPUs 0 and 1 (not under icount) | kernel `c2c.rtt.0.1` (`contended` suite) |
//! | `contend.mutex.<k>` | k threads pinned to CPUs 0..k on one futex mutex for 20 ms: ticks from a release to the next holder's acquire on another CPU (not under icount) | kernel `contend.mutex.<k>` (`contended` suite) |

mod empty;
mod sys;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use exo_arch::tsc::rdtsc_precise;
use smp_bench::{BenchLine, EndLine, Mode, Samples, Stats, SuiteLine};

/// Samples per row (`/ubench`'s).
const N: usize = 512;
/// Warm-up calls of the system-call rows (`/ubench`'s).
const WARMUP: usize = 64;
/// `syscall.write.64*` writes (warm-up of 16 included), as `/ubench`.
const WRITE_SAMPLES: usize = 256;
/// `proc.spawn` and `uthread.spawn` samples (warm-up 4), as `/ubench`.
const SPAWN_SAMPLES: usize = 128;
/// Warm-up round trips of the ping-pong rows (`/ubench`'s `ctx.switch.as`).
const PINGPONG_WARMUP: usize = 256;
/// A serialised `rdtsc` pair above this many ticks means `rdtsc` traps (as `exo-rt`).
const TRAPPED_RDTSC_TICKS: u64 = 2000;
/// The line the console write prints: 64 bytes with its newline.
const LINE64: &[u8; 64] = b"linux: syscall.write.64 sample line, exactly 64 bytes long.....\n";

struct Suite {
    overhead: u64,
    count: u32,
    failed: bool,
}

impl Suite {
    fn emit(&mut self, name: &str, stats: Option<Stats>) {
        match stats {
            Some(stats) => {
                println!("{}", BenchLine { name, stats });
                self.count += 1;
            }
            None => println!("linux: {name}: no sample"),
        }
    }

    fn measure<F: FnMut() -> R, R, const M: usize>(
        &self,
        s: &mut Samples<M>,
        warmup: usize,
        n: usize,
        k: u32,
        f: F,
    ) -> Option<Stats> {
        smp_bench::bench_with(&mut rdtsc_precise, s, self.overhead, warmup, n, k, f)
    }

    fn fail(&mut self, what: std::fmt::Arguments<'_>) {
        println!("linux: FAILED: {what}");
        self.failed = true;
    }
}

fn main() {
    // SAFETY: getpid has no preconditions.
    let init = unsafe { libc::getpid() } == 1;
    if init {
        for (fs, at) in [("devtmpfs", "/dev"), ("proc", "/proc"), ("sysfs", "/sys")] {
            if let Err(e) = sys::mount(fs, at) {
                eprintln!("linux: mount {fs} on {at}: {e}");
            }
        }
        if let Err(e) = sys::console_as_stdio() {
            eprintln!("linux: /dev/console: {e}");
        }
    }
    let ok = run(init);
    if init {
        sys::power_off(ok);
    }
    std::process::exit(i32::from(!ok));
}

fn run(init: bool) -> bool {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "linux: kernel {}, cmdline: {}",
        release.trim(),
        cmdline.trim()
    );
    for v in ["meltdown", "spectre_v2", "retbleed", "spec_store_bypass"] {
        if let Ok(s) =
            std::fs::read_to_string(format!("/sys/devices/system/cpu/vulnerabilities/{v}"))
        {
            println!("linux: vulnerability {v}: {}", s.trim());
        }
    }
    let cpu = sys::current_cpu();
    let ncpus = sys::online_cpus();
    if let Err(e) = sys::pin(cpu) {
        println!("linux: cannot pin to cpu {cpu}: {e}");
        return false;
    }
    let mode = mode(init, &cmdline);
    let overhead = smp_bench::measure_overhead(&mut rdtsc_precise, smp_bench::OVERHEAD_PAIRS);
    let mut model = [0u8; 48];
    let header = SuiteLine {
        suite: "linux",
        tsc_start: rdtsc_precise(),
        tsc_hz: exo_arch::tsc::freq_from_cpuid().map_or(0, |(hz, _)| hz),
        mode,
        ncpus: ncpus as u32,
        git_rev: option_env!("EXO_GIT_REV").unwrap_or("unknown"),
        cpu_model: exo_arch::cpu::model_name(&mut model),
    };
    println!("{header}");
    println!(
        "linux: pid 1 = {init}, pinned to cpu {cpu} of {ncpus}, mode {mode}, timing pair {overhead} ticks (subtracted)"
    );
    let mut suite = Suite {
        overhead,
        count: 0,
        failed: false,
    };

    user_rows(&mut suite, cpu, init);
    kernel_rows(&mut suite);
    pingpong_rows(&mut suite, cpu, ncpus, mode);
    contended_rows(&mut suite, ncpus, mode);

    println!(
        "{}",
        EndLine {
            suite: "linux",
            n_results: suite.count
        }
    );
    !suite.failed
}

/// The detected mode, or the one `exo.mode=` names.
fn mode(init: bool, cmdline: &str) -> Mode {
    let detected = if !init {
        Mode::Native
    } else if (0..3).any(|_| exo_arch::tsc::counts_instructions()) {
        Mode::Icount
    } else if !exo_arch::cpu::hypervisor_is_kvm() {
        Mode::Tcg
    } else {
        let pair = (0..16)
            .map(|_| {
                let a = rdtsc_precise();
                rdtsc_precise().wrapping_sub(a)
            })
            .min()
            .unwrap_or(0);
        if pair > TRAPPED_RDTSC_TICKS {
            Mode::KvmTrapped
        } else {
            Mode::Kvm
        }
    };
    let forced = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("exo.mode="))
        .and_then(Mode::parse);
    // As on Exo-OS: an override may only claim less than what was detected
    // (`Mode::may_report_as`); until 2026-12-06 any was taken (found by review).
    match Mode::resolve(detected, forced) {
        Ok(m) if m != detected => {
            println!("linux: warning: exo.mode={m} overrides the detected mode {detected}");
            m
        }
        Ok(m) => m,
        Err(m) => {
            let r = forced.map_or("", Mode::as_str);
            println!(
                "linux: warning: exo.mode={r} refused: this run is {m} (an override may only claim less); mode {m}"
            );
            m
        }
    }
}

/// The rows `/ubench` measures on Exo-OS (suite `user` there).
fn user_rows(suite: &mut Suite, cpu: usize, init: bool) {
    let mut s = Box::new(Samples::<N>::new());
    let mut s2 = Box::new(Samples::<N>::new());

    if sys::syscall0(sys::NULL_NR) != sys::ENOSYS_RET {
        suite.fail(format_args!(
            "syscall {} did not return -ENOSYS",
            sys::NULL_NR
        ));
    }
    let st = suite.measure(&mut *s, WARMUP, N, 1, || sys::syscall0(sys::NULL_NR));
    suite.emit("syscall.null", st);
    let getpid = suite.measure(&mut *s, WARMUP, N, 1, || sys::syscall0(libc::SYS_getpid));
    suite.emit("syscall.getpid", getpid);

    match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(f) => {
            use std::os::fd::AsRawFd;
            let fd = f.as_raw_fd();
            let mut bad = false;
            let st = suite.measure(&mut *s, 16, WRITE_SAMPLES - 16, 1, || {
                bad |= sys::write_raw(fd, LINE64) != 64;
            });
            if bad {
                suite.fail(format_args!("write of 64 bytes to /dev/null"));
            } else {
                suite.emit("syscall.write.64", st);
            }
        }
        Err(e) => suite.fail(format_args!("/dev/null: {e}")),
    }
    if init {
        println!(
            "linux: syscall.write.64.console prints {WRITE_SAMPLES} lines of 64 bytes to fd 1 (what it measures)"
        );
        let mut bad = false;
        let st = suite.measure(&mut *s, 16, WRITE_SAMPLES - 16, 1, || {
            bad |= sys::write_raw(1, LINE64) != 64;
        });
        if bad {
            suite.fail(format_args!("write of 64 bytes to the console"));
        } else {
            suite.emit("syscall.write.64.console", st);
        }
    } else {
        println!(
            "linux: not process 1: fd 1 is not the serial console, no syscall.write.64.console"
        );
    }

    mmap_rows(suite, &mut s, &mut s2);
    proc_spawn(suite, &mut s, init);
    uthread_spawn(suite, &mut s);
    ctx_switch_as(suite, &mut s, cpu, getpid.map_or(0, |g| g.p50));
}

/// `mmap.4k` and `pf.anon.4k`: map a page (timed), write to it (timed), unmap it; then
/// `mmap.4k.populate`, the same with `MAP_POPULATE` (the page is there, zeroed, when `mmap`
/// returns: what Exo-OS's `mmap` does), the write untimed.
fn mmap_rows(suite: &mut Suite, map: &mut Samples<N>, touch: &mut Samples<N>) {
    mmap_loop(suite, map, touch, 0);
    suite.emit("mmap.4k", map.stats(0));
    suite.emit("pf.anon.4k", touch.stats(0));
    mmap_loop(suite, map, touch, libc::MAP_POPULATE);
    suite.emit("mmap.4k.populate", map.stats(0));
}

fn mmap_loop(suite: &mut Suite, map: &mut Samples<N>, touch: &mut Samples<N>, extra: i32) {
    map.clear();
    touch.clear();
    let ovh = suite.overhead;
    for i in 0..WARMUP + N {
        let t0 = rdtsc_precise();
        let page = sys::mmap_anon_raw(4096, extra);
        let t1 = rdtsc_precise();
        if page < 0 {
            suite.fail(format_args!("mmap 4 KiB: errno {}", -page));
            return;
        }
        // SAFETY: a fresh writable page of ours.
        unsafe { (page as *mut u8).write_volatile(1) };
        let t2 = rdtsc_precise();
        // SAFETY: the page is ours and no longer used.
        let rc = unsafe { sys::munmap_raw(page as usize, 4096) };
        if rc != 0 {
            suite.fail(format_args!("munmap: errno {}", -rc));
            return;
        }
        if i >= WARMUP {
            map.push((t1 - t0).saturating_sub(ovh));
            touch.push((t2 - t1).saturating_sub(ovh));
        }
    }
}

/// `proc.spawn`: `posix_spawn` of the 129-byte `/empty` and `waitpid`; no row unless every
/// one exited 0.
fn proc_spawn(suite: &mut Suite, s: &mut Samples<N>, init: bool) {
    let path = if init {
        std::path::PathBuf::from("/empty")
    } else {
        std::env::temp_dir().join(format!("exo-linux-peer-empty-{}", std::process::id()))
    };
    if let Err(e) = empty::install(&path) {
        suite.fail(format_args!("writing {}: {e}", path.display()));
        return;
    }
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    let argv = [cpath.as_ptr() as *mut libc::c_char, core::ptr::null_mut()];
    let envp = [core::ptr::null_mut::<libc::c_char>()];
    let mut bad = None;
    let st = suite.measure(s, 4, SPAWN_SAMPLES, 1, || {
        let mut pid: libc::pid_t = 0;
        let mut status = 0;
        // SAFETY: NUL-terminated path and NULL-terminated argv/envp that outlive the call;
        // no file actions or attributes.
        let rc = unsafe {
            let rc = libc::posix_spawn(
                &mut pid,
                cpath.as_ptr(),
                core::ptr::null(),
                core::ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            );
            if rc == 0 {
                libc::waitpid(pid, &mut status, 0);
            }
            rc
        };
        if rc != 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bad.get_or_insert((rc, status));
        }
    });
    if !init {
        let _ = std::fs::remove_file(&path);
    }
    match bad {
        None => suite.emit("proc.spawn", st),
        Some((rc, status)) => suite.fail(format_args!(
            "proc.spawn: posix_spawn {rc}, wait status {status:#x}"
        )),
    }
}

extern "C" fn nothing(_: *mut libc::c_void) -> *mut libc::c_void {
    core::ptr::null_mut()
}

/// `uthread.spawn`: `pthread_create` + `pthread_join` of a thread that returns at once
/// (glibc's default attributes: its cached stacks).
fn uthread_spawn(suite: &mut Suite, s: &mut Samples<N>) {
    let mut bad = 0;
    let st = suite.measure(s, 4, SPAWN_SAMPLES, 1, || {
        // SAFETY: pthread_t is plain data; the thread function ignores its argument and
        // is joined before the next one starts.
        unsafe {
            let mut t: libc::pthread_t = core::mem::zeroed();
            let rc =
                libc::pthread_create(&mut t, core::ptr::null(), nothing, core::ptr::null_mut());
            if rc == 0 {
                libc::pthread_join(t, core::ptr::null_mut());
            } else {
                bad = rc;
            }
        }
    });
    if bad == 0 {
        suite.emit("uthread.spawn", st);
    } else {
        suite.fail(format_args!("uthread.spawn: pthread_create {bad}"));
    }
}

/// `ctx.switch.as`: a forked copy pinned to `cpu` yields while we do; one sample is our
/// `sched_yield` round trip (two switches between address spaces) / 2, as `/ubench`.
///
/// Linux 6.1's CFS places a forked child a time slice ahead in virtual runtime, and a yield
/// only hands over to a task within the wake-up granularity: until the parent has run that
/// far, its yields are bare system calls (under icount, hundreds of them). So the warm-up
/// lasts until yields switch (64 in a row, counted by `getrusage`), and the row is printed
/// only if every timed yield switched (the measurement is retried up to 4 times).
fn ctx_switch_as(suite: &mut Suite, s: &mut Samples<N>, cpu: usize, getpid_p50: u64) {
    // SAFETY: no other thread runs now (every partner thread has been joined); the child
    // only pins itself and yields until it is killed.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        if sys::pin(cpu).is_err() {
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(1) };
        }
        loop {
            // SAFETY: no arguments.
            unsafe { libc::sched_yield() };
        }
    }
    if pid < 0 {
        suite.fail(format_args!("ctx.switch.as: fork failed"));
        return;
    }
    // CFS may stop handing over again later (the partner's virtual runtime drifts past the
    // granularity): the whole measurement is retried, at most ATTEMPTS times.
    const ATTEMPTS: u32 = 4;
    let mut timed_switches = 0;
    for attempt in 1..=ATTEMPTS {
        let yields = warm_until_yields_switch();
        timed_switches = timed_yields(s, suite.overhead);
        println!(
            "linux: ctx.switch.as: attempt {attempt}: {yields} warm-up yields until they switched, then {timed_switches} context switches in {N} timed yields"
        );
        if timed_switches >= N as i64 {
            break;
        }
    }
    let mut status = 0;
    // SAFETY: our child; it only ever yields.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    if !libc::WIFSIGNALED(status) {
        suite.fail(format_args!(
            "ctx.switch.as: the yield partner ended with {status:#x}"
        ));
    } else if timed_switches < N as i64 {
        println!(
            "linux: ctx.switch.as: no row: {timed_switches} of {N} timed yields switched (the yield partner did not run between them)"
        );
    } else {
        let st = s.stats(0);
        if let Some(st) = st
            && st.p50 < getpid_p50
        {
            println!(
                "linux: ctx.switch.as p50 {} < syscall.getpid p50 {getpid_p50}: did the partner run on this CPU?",
                st.p50
            );
        }
        suite.emit("ctx.switch.as", st);
    }
}

/// Yields until 64 yields in a row switched (at most a million); how many it took.
fn warm_until_yields_switch() -> u32 {
    const MAX_WARMUP_YIELDS: u32 = 1_000_000;
    let (mut streak, mut yields) = (0, 0u32);
    while streak < 64 && yields < MAX_WARMUP_YIELDS {
        let before = switches();
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
        streak = if switches() > before { streak + 1 } else { 0 };
        yields += 1;
    }
    yields
}

/// `PINGPONG_WARMUP` untimed then `N` timed yields into `s` (round trip / 2, overhead
/// subtracted); the context switches during the timed ones.
fn timed_yields(s: &mut Samples<N>, ovh: u64) -> i64 {
    s.clear();
    let mut before = 0;
    for i in 0..PINGPONG_WARMUP + N {
        if i == PINGPONG_WARMUP {
            before = switches();
        }
        let t0 = rdtsc_precise();
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
        let t1 = rdtsc_precise();
        if i >= PINGPONG_WARMUP {
            // Halved by the helper every side's `ctx.switch` uses (2026-12-05: the kernel's floored).
            s.push(smp_bench::per_call((t1 - t0).saturating_sub(ovh), 2));
        }
    }
    switches() - before
}

/// Voluntary + involuntary context switches of this process so far (`getrusage`).
fn switches() -> i64 {
    // SAFETY: rusage is plain data, filled by the call.
    let ru = unsafe {
        let mut ru: libc::rusage = core::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    ru.ru_nvcsw + ru.ru_nivcsw
}

type Obj64 = core::mem::MaybeUninit<[u8; 64]>;
type Obj4k = core::mem::MaybeUninit<[u8; 4096]>;

/// Rows the Exo-OS kernel bench measures inside the kernel (suite `smp`), done here with
/// glibc and futexes: same loops as `kernel/src/mm/bench.rs` and `mutex_fast_rows`.
fn kernel_rows(suite: &mut Suite) {
    let ovh = suite.overhead;
    let mut s = Box::new(Samples::<N>::new());
    let mut fs = Box::new(Samples::<N>::new());
    let warm: Vec<Box<Obj64>> = (0..256).map(|_| Box::new_uninit()).collect();
    drop(warm);
    for _ in 0..N {
        let t0 = rdtsc_precise();
        let b: Box<Obj64> = black_box(Box::new_uninit());
        let t1 = rdtsc_precise();
        drop(b);
        let t2 = rdtsc_precise();
        s.push((t1 - t0).saturating_sub(ovh));
        fs.push((t2 - t1).saturating_sub(ovh));
    }
    suite.emit("alloc.64", s.stats(0));
    suite.emit("free.64", fs.stats(0));
    s.clear();
    fs.clear();
    let warm: Vec<Box<Obj4k>> = (0..256).map(|_| Box::new_uninit()).collect();
    drop(warm);
    for _ in 0..N {
        let t0 = rdtsc_precise();
        let b: Box<Obj4k> = black_box(Box::new_uninit());
        let t1 = rdtsc_precise();
        drop(b);
        let t2 = rdtsc_precise();
        s.push((t1 - t0).saturating_sub(ovh));
        fs.push((t2 - t1).saturating_sub(ovh));
    }
    suite.emit("alloc.4k", s.stats(0));
    suite.emit("free.4k", fs.stats(0));

    // mutex.fast: as the kernel, 2000 samples of 16 lock + unlock each, per call (rounded to
    // nearest, `smp_bench::per_call`).
    const R: usize = 2000;
    const K: u64 = 16;
    static FAST: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut v = Vec::with_capacity(R);
    for _ in 0..R {
        let t0 = rdtsc_precise();
        for _ in 0..K {
            *black_box(&FAST).lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
        let t1 = rdtsc_precise();
        v.push(smp_bench::per_call((t1 - t0).saturating_sub(ovh), K));
    }
    suite.emit("mutex.fast", smp_bench::stats_of(&mut v, 0));
}

/// What a partner thread answers with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// A futex hand-off, no payload (`ctx.switch`).
    Futex,
    /// A futex hand-off and 64 bytes copied each way through a shared buffer.
    Futex64,
    /// 64 bytes through a pipe each way.
    Pipe64,
}

/// The futex ping-pong's shared state: whose turn it is (0 the main thread's, 1 the
/// partner's), a stop flag, and the 64-byte message.
struct Shared {
    turn: AtomicU32,
    stop: AtomicBool,
    msg: [AtomicU64; 8],
}

/// One round trip from the main thread's side.
fn round(sh: &Shared, ch: Channel, pipes: [i32; 4], buf: &mut [u8; 64]) {
    match ch {
        Channel::Futex | Channel::Futex64 => {
            if ch == Channel::Futex64 {
                for (w, c) in sh.msg.iter().zip(buf.chunks_exact(8)) {
                    w.store(
                        u64::from_le_bytes(c.try_into().expect("8 bytes")),
                        Ordering::Relaxed,
                    );
                }
            }
            sh.turn.store(1, Ordering::Release);
            sys::futex_wake(&sh.turn);
            while sh.turn.load(Ordering::Acquire) == 1 {
                sys::futex_wait(&sh.turn, 1);
            }
            if ch == Channel::Futex64 {
                for (w, c) in sh.msg.iter().zip(buf.chunks_exact_mut(8)) {
                    c.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
            }
        }
        Channel::Pipe64 => {
            // SAFETY: 64 bytes from/to a live buffer over our pipes.
            unsafe {
                libc::write(pipes[1], buf.as_ptr().cast(), 64);
                libc::read(pipes[2], buf.as_mut_ptr().cast(), 64);
            }
        }
    }
}

/// The partner: answers until stopped (futex) or until the pipe closes.
fn partner(sh: &Shared, ch: Channel, pipes: [i32; 4], cpu: usize) {
    let _ = sys::pin(cpu);
    let mut buf = [0u8; 64];
    match ch {
        Channel::Futex | Channel::Futex64 => loop {
            while sh.turn.load(Ordering::Acquire) != 1 {
                sys::futex_wait(&sh.turn, 0);
            }
            if sh.stop.load(Ordering::Acquire) {
                return;
            }
            if ch == Channel::Futex64 {
                for (w, c) in sh.msg.iter().zip(buf.chunks_exact_mut(8)) {
                    c.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                buf[0] = buf[0].wrapping_add(1);
                for (w, c) in sh.msg.iter().zip(buf.chunks_exact(8)) {
                    w.store(
                        u64::from_le_bytes(c.try_into().expect("8 bytes")),
                        Ordering::Relaxed,
                    );
                }
            }
            sh.turn.store(0, Ordering::Release);
            sys::futex_wake(&sh.turn);
        },
        Channel::Pipe64 => loop {
            // SAFETY: as in `round`.
            let n = unsafe { libc::read(pipes[0], buf.as_mut_ptr().cast(), 64) };
            if n <= 0 {
                return;
            }
            buf[0] = buf[0].wrapping_add(1);
            // SAFETY: as in `round`.
            unsafe { libc::write(pipes[3], buf.as_ptr().cast(), 64) };
        },
    }
}

/// Round trips between the main thread (on `cpu`) and a partner thread on `partner_cpu`:
/// `PINGPONG_WARMUP` untimed, then `N` samples, overhead subtracted, halved when `halve`.
fn pingpong(
    ovh: u64,
    s: &mut Samples<N>,
    ch: Channel,
    partner_cpu: usize,
    halve: bool,
) -> Result<Option<Stats>, String> {
    let sh = Shared {
        turn: AtomicU32::new(0),
        stop: AtomicBool::new(false),
        msg: Default::default(),
    };
    let mut pipes = [-1i32; 4];
    if ch == Channel::Pipe64 {
        // SAFETY: pipe writes two fds into each two-element slice.
        let ok = unsafe {
            libc::pipe(pipes.as_mut_ptr()) == 0 && libc::pipe(pipes[2..].as_mut_ptr()) == 0
        };
        if !ok {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
    }
    let mut buf = [7u8; 64];
    s.clear();
    std::thread::scope(|sc| {
        let sh = &sh;
        sc.spawn(move || partner(sh, ch, pipes, partner_cpu));
        for i in 0..PINGPONG_WARMUP + N {
            let t0 = rdtsc_precise();
            round(sh, ch, pipes, &mut buf);
            let t1 = rdtsc_precise();
            if i >= PINGPONG_WARMUP {
                let t = (t1 - t0).saturating_sub(ovh);
                s.push(if halve { smp_bench::per_call(t, 2) } else { t });
            }
        }
        sh.stop.store(true, Ordering::Release);
        sh.turn.store(1, Ordering::Release);
        sys::futex_wake(&sh.turn);
        if ch == Channel::Pipe64 {
            // SAFETY: our write end; the partner's read then returns 0.
            unsafe { libc::close(pipes[1]) };
        }
    });
    if ch == Channel::Pipe64 {
        for fd in [pipes[0], pipes[2], pipes[3]] {
            // SAFETY: our fds, no longer used.
            unsafe { libc::close(fd) };
        }
    }
    // Every round trip brought the message back changed by the partner.
    if ch != Channel::Futex && buf[0] != 7u8.wrapping_add((PINGPONG_WARMUP + N) as u8) {
        return Err("the message did not come back from the partner".into());
    }
    Ok(s.stats(0))
}

/// `ctx.switch`, the 64-byte IPC round trips on one CPU and across two, `c2c.rtt.0.1`.
fn pingpong_rows(suite: &mut Suite, cpu: usize, ncpus: usize, mode: Mode) {
    let mut s = Box::new(Samples::<N>::new());
    let other = (cpu + 1) % ncpus;
    let mut rows = vec![
        ("ctx.switch", Channel::Futex, cpu, true),
        ("ipc.rtt.64.pipe", Channel::Pipe64, cpu, false),
        ("ipc.rtt.64.futex", Channel::Futex64, cpu, false),
    ];
    if ncpus >= 2 {
        rows.push(("ipc.rtt.64.xcore.pipe", Channel::Pipe64, other, false));
        rows.push(("ipc.rtt.64.xcore.futex", Channel::Futex64, other, false));
    }
    for (name, ch, pcpu, halve) in rows {
        match pingpong(suite.overhead, &mut s, ch, pcpu, halve) {
            Ok(st) => suite.emit(name, st),
            Err(e) => suite.fail(format_args!("{name}: {e}")),
        }
    }
    if ncpus < 2 {
        println!("linux: one CPU: no ipc.rtt.64.xcore.*, no c2c.rtt");
    } else if mode == Mode::Icount {
        // Single-threaded round-robin TCG runs one vCPU at a time: a spinning hand-off waits
        // for the other vCPU's time slice, the row would time QEMU's scheduler.
        println!(
            "linux: icount: no c2c.rtt (one vCPU runs at a time: spinning measures QEMU's time slice)"
        );
    } else {
        let st = c2c(suite.overhead, &mut s, 0, 1);
        suite.emit("c2c.rtt.0.1", st);
    }
}

/// Cache-line ping-pong, both sides spinning: the hardware hand-off floor.
fn c2c(ovh: u64, s: &mut Samples<N>, cpu: usize, other: usize) -> Option<Stats> {
    #[repr(align(64))]
    struct Line(AtomicU64);
    let ping = Line(AtomicU64::new(0));
    let pong = Line(AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    s.clear();
    std::thread::scope(|sc| {
        let (ping, pong, stop) = (&ping, &pong, &stop);
        sc.spawn(move || {
            let _ = sys::pin(other);
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = ping.0.load(Ordering::Acquire);
                if v != last {
                    last = v;
                    pong.0.store(v, Ordering::Release);
                }
                core::hint::spin_loop();
            }
        });
        let _ = sys::pin(cpu);
        for i in 1..=(WARMUP + N) as u64 {
            let t0 = rdtsc_precise();
            ping.0.store(i, Ordering::Release);
            while pong.0.load(Ordering::Acquire) != i {
                core::hint::spin_loop();
            }
            let t1 = rdtsc_precise();
            if i > WARMUP as u64 {
                s.push((t1 - t0).saturating_sub(ovh));
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    s.stats(0)
}

/// Most threads in the contention rows, as the kernel's `exo.contend_max` default.
const CONTEND_MAX: usize = 8;
/// Window of one contention row, as the kernel's `exo.contend_window_ms` default.
const CONTEND_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);
/// Hand-offs kept per thread.
const CONTEND_SAMPLES: usize = 100_000;

/// What the contended mutex protects: as the kernel's `harness::locks::Data`.
#[derive(Default)]
struct LockData {
    count: u64,
    released_at: u64,
    last: usize,
}

/// `contend.mutex.<k>` for k = 2..=min(ncpus, 8): k threads pinned to CPUs 0..k hammer one
/// futex mutex (`std::sync::Mutex`) for 20 ms from a common start; each hand-off to another
/// thread that was already waiting at the release (`smp_bench::handoff`: asked before the
/// previous holder released) is timed from that release to the acquire (one TSC on every
/// vCPU), as the kernel's contended job and the native suite time theirs. Until 2026-12-06
/// every change of holder counted, a late or descheduled thread's absence included, so
/// `mutex.contended.2` compared unlike figures (found by review). Not under icount (one
/// vCPU runs at a time) nor on one CPU.
fn contended_rows(suite: &mut Suite, ncpus: usize, mode: Mode) {
    if ncpus < 2 || mode == Mode::Icount {
        println!("linux: no contend.mutex.* (needs 2+ CPUs running at once: not icount)");
        return;
    }
    for k in 2..=ncpus.min(CONTEND_MAX) {
        let lock = std::sync::Mutex::new(LockData::default());
        let ready = std::sync::Barrier::new(k + 1);
        let stop = AtomicBool::new(false);
        let results: Vec<(Vec<u64>, u64)> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..k)
                .map(|me| {
                    let (lock, ready, stop) = (&lock, &ready, &stop);
                    sc.spawn(move || {
                        let pinned = sys::pin(me).is_ok();
                        let mut samples = Vec::with_capacity(CONTEND_SAMPLES);
                        let mut acq = 0u64;
                        ready.wait();
                        while pinned && !stop.load(Ordering::Relaxed) {
                            let asked = rdtsc_precise();
                            let mut d = lock.lock().unwrap_or_else(|p| p.into_inner());
                            let t = rdtsc_precise();
                            if samples.len() < CONTEND_SAMPLES
                                && let Some(h) = smp_bench::handoff(
                                    asked as i64,
                                    t as i64,
                                    d.released_at as i64,
                                    d.last as u32,
                                    me as u32,
                                )
                            {
                                samples.push(h);
                            }
                            d.count += 1;
                            d.last = me;
                            d.released_at = rdtsc_precise();
                            drop(d);
                            acq += 1;
                        }
                        (samples, if pinned { acq } else { u64::MAX })
                    })
                })
                .collect();
            ready.wait();
            std::thread::sleep(CONTEND_WINDOW);
            stop.store(true, Ordering::Relaxed);
            hs.into_iter()
                .map(|h| h.join().unwrap_or((Vec::new(), u64::MAX)))
                .collect()
        });
        let name = format!("contend.mutex.{k}");
        if results.iter().any(|r| r.1 == u64::MAX) {
            suite.fail(format_args!(
                "{name}: a thread could not be pinned or panicked"
            ));
            continue;
        }
        let total: u64 = results.iter().map(|r| r.1).sum();
        let counted = lock.lock().unwrap_or_else(|p| p.into_inner()).count;
        if counted != total {
            suite.fail(format_args!("{name}: lost updates ({counted} != {total})"));
            continue;
        }
        let mut merged: Vec<u64> = results.into_iter().flat_map(|r| r.0).collect();
        suite.emit(&name, smp_bench::stats_of(&mut merged, 0));
    }
}
