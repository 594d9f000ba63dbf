//! `/threads <arg>`: threads of one process, one case per `arg` (see `cases.rs`): shared
//! memory and pid, join values and errors, the thread limit, churn, and the ends of a
//! process with several threads (`exit_group` or a fault in one thread while the others
//! block in the kernel or spin in ring 3 on other CPUs; the last thread's exit code). Exits
//! with the status the case expects (checked by `/init`); 1 when something came back wrong,
//! 2 for an unknown `arg`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod cases;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use exo_rt::{Errno, Timespec, eprintln, println, thread};

exo_rt::entry!(run);

/// Not a case (the suite would never end): never ends on its own, one thread spinning and
/// the main one asleep. The kernel's end of the `init` job must end such a process.
pub const LINGER: u64 = 0x11;

/// Not a case either (its end depends on the kernel's options): starts gated threads with
/// 16 KiB stacks until one is refused, lets them go and joins them; exits with the number
/// started when the refusal was `ENOMEM` (`user.commit_threads_charge_their_kernel_stacks`
/// sets a per-process memory limit), 200 when it was `EAGAIN` (the thread limit), 201
/// otherwise.
pub const UNTIL_REFUSED: u64 = 0x12;

fn run(arg: u64) -> i32 {
    if arg == UNTIL_REFUSED {
        return until_refused();
    }
    if arg == LINGER {
        let _spinning = thread::spawn(spinner, 0);
        loop {
            let _ = exo_rt::nanosleep(&Timespec {
                tv_sec: 1000,
                tv_nsec: 0,
            });
        }
    }
    let Some(case) = cases::CASES.iter().find(|c| c.arg == arg) else {
        eprintln!("threads: unknown case {arg} (0..{})", cases::CASES.len());
        return 2;
    };
    println!(
        "threads: pid {} case {arg}: {} (expect {})",
        exo_rt::getpid(),
        case.name,
        case.expect_text
    );
    let r = match arg {
        0 => many(),
        1 => join_errors(),
        2 => doomed(false),
        3 => doomed(true),
        4 => last_thread(),
        5 => limit(),
        6 => churn(),
        7 => racing_exits(),
        8 => timed_wait_and_kill(),
        _ => Err("no such case"),
    };
    match r {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("threads: case {arg}: {why}");
            1
        }
    }
}

type Check = Result<(), &'static str>;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static CPUS_SEEN: AtomicU64 = AtomicU64::new(0);
static PID: AtomicU64 = AtomicU64::new(0);

fn adder(i: u64) -> i32 {
    for _ in 0..1000 {
        COUNTER.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(cpu) = exo_rt::getcpu() {
        CPUS_SEEN.fetch_or(1 << (cpu % 64), Ordering::Relaxed);
    }
    if exo_rt::getpid() as u64 != PID.load(Ordering::Relaxed) {
        return 100;
    }
    i as i32 + 10
}

/// Case 0.
fn many() -> Check {
    PID.store(exo_rt::getpid() as u64, Ordering::Relaxed);
    let mut ts = arrayvec::ArrayVec::<thread::Thread, 8>::new();
    for i in 0..8 {
        ts.push(thread::spawn(adder, i).map_err(|_| "thread_create failed")?);
    }
    for (i, t) in ts.into_iter().enumerate() {
        match t.join() {
            Ok(v) if v == i as i32 + 10 => {}
            Ok(100) => return Err("a thread saw another pid"),
            _ => return Err("a join returned the wrong value"),
        }
    }
    if COUNTER.load(Ordering::Relaxed) != 8000 {
        return Err("lost increments");
    }
    println!(
        "threads: 8 threads joined, 8000 increments, CPUs seen {:#x}",
        CPUS_SEEN.load(Ordering::Relaxed)
    );
    Ok(())
}

fn five(_: u64) -> i32 {
    5
}

/// From a thread other than the main one: `sched_setaffinity` naming the main thread (the
/// pid) is `ESRCH` (only the caller's own mask can be set), not a change of the caller's.
fn affinity_of_another(main: u64) -> i32 {
    match exo_rt::sched_setaffinity(main as usize, &[u64::MAX; exo_rt::CPU_SET_BYTES / 8]) {
        Err(Errno::ESRCH) => 0,
        Ok(_) => 1,
        Err(_) => 2,
    }
}

/// Ends with a `thread_exit` value wider than 32 bits, whose low half reads as an error
/// number if the kernel passed it whole.
fn wide_exit(_: u64) -> i32 {
    // SAFETY: the thread ends here; nothing after the call runs.
    unsafe { exo_rt::raw::syscall1(exo_rt::abi::nr::THREAD_EXIT, 0xFFFF_FFFF_FFFF_FFFD) };
    0
}

/// Case 1.
fn join_errors() -> Check {
    let me = exo_rt::getpid();
    if exo_rt::thread_join(me) != Err(Errno::EDEADLK) {
        return Err("joining itself is not EDEADLK");
    }
    if exo_rt::thread_join(999_999) != Err(Errno::ESRCH) {
        return Err("an unknown tid is not ESRCH");
    }
    // Process 1 (init) is another process: its thread is not ours to join.
    if me != 1 && exo_rt::thread_join(1) != Err(Errno::ESRCH) {
        return Err("a foreign tid is not ESRCH");
    }
    let t = thread::spawn(five, 0).map_err(|_| "thread_create failed")?;
    let tid = t.tid();
    if t.join() != Ok(5) {
        return Err("join did not return 5");
    }
    if exo_rt::thread_join(tid) != Err(Errno::ESRCH) {
        return Err("a second join is not ESRCH");
    }
    // `thread_join` gives `value & 0xffff_ffff` (until 2026-12-04 the whole value: -3,
    // ESRCH to the caller, after a join that had succeeded).
    let t = thread::spawn(wide_exit, 0).map_err(|_| "thread_create failed")?;
    if t.join() != Ok(-3) {
        return Err("join of a 64-bit thread_exit value is not its low 32 bits");
    }
    // Until 2026-12-04 it set the calling thread's own mask and returned 0.
    let t = thread::spawn(affinity_of_another, me as u64).map_err(|_| "thread_create failed")?;
    match t.join() {
        Ok(0) => {}
        Ok(1) => return Err("sched_setaffinity of the main thread from another thread succeeded"),
        _ => return Err("sched_setaffinity of the main thread from another thread: not ESRCH"),
    }
    for entry in [0usize, 0xFFFF_FFFF_8000_0000, 0x0000_8000_0000_0000] {
        // SAFETY: the kernel refuses the entry before any thread starts.
        if unsafe { exo_rt::thread_create(entry, 0x1000, 0) } != Err(Errno::EFAULT) {
            return Err("a non-user entry is not EFAULT");
        }
    }
    wake_counts_32_bits()?;
    end_words()
}

/// The word [`wake_counts_32_bits`]'s waiter sleeps on, and its state (1: about to wait,
/// 2: its wait returned 0, 3: it timed out, 4: something else).
static WAKE_WORD: AtomicU32 = AtomicU32::new(0);
static WAKE_STATE: AtomicU32 = AtomicU32::new(0);

fn timed_waiter(_: u64) -> i32 {
    WAKE_STATE.store(1, Ordering::Release);
    let t = Timespec::from_nanos(300_000_000);
    let r = exo_rt::futex_wait(&WAKE_WORD, 0, Some(&t));
    let s = match r {
        Ok(_) => 2,
        Err(Errno::ETIMEDOUT) => 3,
        Err(_) => 4,
    };
    WAKE_STATE.store(s, Ordering::Release);
    0
}

/// `FUTEX_WAKE` counts the low 32 bits of `val` (Linux's `int`): a wake of `1 << 32`
/// wakes nobody. A thread waits 300 ms on a word; this one makes such wakes until the
/// wait ends: each must return 0 and the wait must time out. Until 2026-12-05 the kernel
/// counted with 64 bits and woke the waiter (found by review; the waiter is blocked for
/// 300 ms while this thread keeps calling, so a kernel that counts 64 bits is caught).
fn wake_counts_32_bits() -> Check {
    WAKE_STATE.store(0, Ordering::Release);
    let t = thread::spawn(timed_waiter, 0).map_err(|_| "thread_create failed")?;
    let mut woke = 0i64;
    let mut calls = 0u64;
    // Bounded by the waiter's 300 ms timeout (and 10 s of calls at most).
    let t0 = exo_rt::monotonic_nanos();
    while WAKE_STATE.load(Ordering::Acquire) < 2 && exo_rt::monotonic_nanos() - t0 < 10_000_000_000
    {
        // SAFETY: FUTEX_WAKE of a word of ours: the kernel only reads it.
        let r = unsafe {
            exo_rt::raw::syscall3(
                exo_rt::abi::nr::FUTEX,
                WAKE_WORD.as_ptr() as usize,
                1 | 128, // FUTEX_WAKE | FUTEX_PRIVATE_FLAG
                1 << 32,
            )
        };
        calls += 1;
        if r != 0 {
            woke = r as i64;
        }
    }
    if t.join() != Ok(0) {
        return Err("the futex waiter did not end with 0");
    }
    match (WAKE_STATE.load(Ordering::Acquire), woke) {
        (3, 0) => {
            println!("threads: {calls} futex wakes of 1 << 32 woke nobody");
            Ok(())
        }
        (_, w) if w != 0 => Err("a futex wake of 1 << 32 woke a waiter (64-bit count)"),
        _ => Err("the futex waiter did not time out"),
    }
}

/// The word of `set_tid_address`, and a second one a misaligned name must leave alone.
static END_WORD: AtomicU32 = AtomicU32::new(0);
static BESIDE: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
static END_TID: AtomicU64 = AtomicU64::new(0);
/// In a read-only page: the kernel must not write it (nor fault) at the thread's end.
static RO_WORD: u32 = 0x5eed;

/// Names `END_WORD` (arg 0) or a word it may not clear (1: read-only, 2: misaligned, 3:
/// not mapped, 4: kernel half), then ends.
fn named_end(arg: u64) -> i32 {
    let addr = match arg {
        0 => {
            END_TID.store(exo_rt::set_tid_address(&END_WORD) as u64, Ordering::Release);
            return 0;
        }
        1 => &raw const RO_WORD as usize,
        2 => BESIDE[0].as_ptr() as usize + 2,
        3 => 0x10,
        _ => 0xFFFF_FFFF_8000_0000,
    };
    // SAFETY: the kernel only records the address; at this thread's end it writes there
    // only if the thread may write an aligned word there (none of these).
    unsafe { exo_rt::raw::syscall1(exo_rt::abi::nr::SET_TID_ADDRESS, addr) };
    0
}

/// Case 1's end: `set_tid_address` returns the tid; the thread's end clears the word and
/// wakes its waiter (who may also find it cleared already); words the thread may not
/// write, misaligned ones and kernel addresses are left alone, and the kernel survives.
fn end_words() -> Check {
    END_WORD.store(7, Ordering::SeqCst);
    let t = thread::spawn(named_end, 0).map_err(|_| "thread_create failed")?;
    let tid = t.tid();
    while END_WORD.load(Ordering::Acquire) != 0 {
        let ten_s = Timespec::from_nanos(10_000_000_000);
        if exo_rt::futex_wait(&END_WORD, 7, Some(&ten_s)) == Err(Errno::ETIMEDOUT) {
            return Err("the set_tid_address word was not cleared at the thread's end");
        }
    }
    if t.join() != Ok(0) || END_TID.load(Ordering::Acquire) != tid as u64 {
        return Err("set_tid_address did not return the thread id");
    }
    BESIDE[0].store(0x1111_1111, Ordering::SeqCst);
    BESIDE[1].store(0x2222_2222, Ordering::SeqCst);
    for arg in 1..=4 {
        let t = thread::spawn(named_end, arg).map_err(|_| "thread_create failed")?;
        if t.join() != Ok(0) {
            return Err("a thread naming a bad set_tid_address word did not end with 0");
        }
    }
    // SAFETY: a plain read of a static the kernel must not have written.
    let ro = unsafe { core::ptr::read_volatile(&raw const RO_WORD) };
    if ro != 0x5eed
        || BESIDE[0].load(Ordering::SeqCst) != 0x1111_1111
        || BESIDE[1].load(Ordering::SeqCst) != 0x2222_2222
    {
        return Err("a bad set_tid_address word was written at the thread's end");
    }
    println!("threads: set_tid_address word cleared and woken; bad words left alone");
    Ok(())
}

static READY: AtomicU32 = AtomicU32::new(0);
static NEVER: AtomicU32 = AtomicU32::new(0);

fn waiter(_: u64) -> i32 {
    READY.fetch_add(1, Ordering::Release);
    loop {
        let _ = exo_rt::futex_wait(&NEVER, 0, None);
    }
}

fn sleeper(_: u64) -> i32 {
    READY.fetch_add(1, Ordering::Release);
    loop {
        let _ = exo_rt::nanosleep(&Timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        });
    }
}

/// Case 8: `/threads LINGER` (a spinning thread and a sleeping one: it never ends on its
/// own) is waited for with timeouts, then killed. The 50 ms wait must not end before its
/// deadline (a deadline passes late, never early: the check cannot fail on a slow host).
fn timed_wait_and_kill() -> Check {
    let child = exo_rt::spawn("/threads", LINGER).map_err(|_| "spawn /threads LINGER failed")?;
    let r = check_timed_wait_and_kill(child);
    if r.is_err() {
        // Never leave it running: its parent's end would make it an orphan.
        let _ = exo_rt::kill(child, exo_rt::SIGKILL);
        let _ = exo_rt::wait(child);
    }
    r
}

fn check_timed_wait_and_kill(child: usize) -> Check {
    if exo_rt::wait_timeout(child, &Timespec::ZERO) != Err(Errno::ETIMEDOUT) {
        return Err("wait(child, {0, 0}) did not say ETIMEDOUT");
    }
    let t0 = exo_rt::monotonic_nanos();
    if exo_rt::wait_timeout(child, &Timespec::from_nanos(50_000_000)) != Err(Errno::ETIMEDOUT) {
        return Err("wait(child, 50 ms) did not say ETIMEDOUT");
    }
    let waited = exo_rt::monotonic_nanos().saturating_sub(t0);
    if waited < 50_000_000 {
        return Err("wait(child, 50 ms) gave up before 50 ms");
    }
    if exo_rt::kill(child, 0).is_err() {
        return Err("kill(child, 0) failed");
    }
    if exo_rt::kill(child, 15) != Err(Errno::EINVAL) {
        return Err("kill(child, 15) did not say EINVAL");
    }
    if exo_rt::kill(child, exo_rt::SIGKILL).is_err() {
        return Err("kill(child, SIGKILL) failed");
    }
    // Bounded: a killed child's threads leave at their next way back to ring 3 (10 s is
    // for a kernel that lost the kill; it ends the check with an error, not a hang).
    match exo_rt::wait_timeout(child, &Timespec::from_nanos(10_000_000_000)) {
        Ok(s) if s == exo_rt::ExitStatus::Killed(exo_rt::KillCause::SIGKILL) => {}
        Ok(_) => return Err("the killed child's status is not killed SIGKILL"),
        Err(Errno::ETIMEDOUT) => return Err("the killed child did not end within 10 s"),
        Err(_) => return Err("wait for the killed child failed"),
    }
    if exo_rt::kill(child, exo_rt::SIGKILL) != Err(Errno::ESRCH) {
        return Err("kill of a child already waited for did not say ESRCH");
    }
    println!("threads: timed waits of {waited} ns, then killed: killed SIGKILL");
    Ok(())
}

fn spinner(_: u64) -> i32 {
    READY.fetch_add(1, Ordering::Release);
    loop {
        core::hint::spin_loop();
    }
}

fn yielder(_: u64) -> i32 {
    READY.fetch_add(1, Ordering::Release);
    loop {
        exo_rt::sched_yield();
    }
}

static JOIN_TARGET: AtomicU64 = AtomicU64::new(0);

fn joiner(_: u64) -> i32 {
    READY.fetch_add(1, Ordering::Release);
    let _ = exo_rt::thread_join(JOIN_TARGET.load(Ordering::Acquire) as usize);
    77
}

const DOOMED_THREADS: u32 = 5;
static ENDER_WORD: AtomicU32 = AtomicU32::new(1);

fn ender(fault: u64) -> i32 {
    while READY.load(Ordering::Acquire) < DOOMED_THREADS {
        exo_rt::sched_yield();
    }
    if fault != 0 {
        // Its end, from the trap, clears a word and wakes its waiters (private and shared:
        // the shared key is read under the tables' lock, which the kernel's debug build
        // refuses to take with interrupts off, as a TLB shootdown could then deadlock).
        exo_rt::set_tid_address(&ENDER_WORD);
        // SAFETY: raises #UD: the kernel kills the whole process.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
    exo_rt::exit_group(42)
}

/// Cases 2 and 3: the process must end as a whole however its threads are busy.
fn doomed(fault: bool) -> Check {
    let w = thread::spawn(waiter, 0).map_err(|_| "thread_create failed")?;
    JOIN_TARGET.store(w.tid() as u64, Ordering::Release);
    let fns: [fn(u64) -> i32; 4] = [sleeper, spinner, yielder, joiner];
    let mut ts = arrayvec::ArrayVec::<thread::Thread, 4>::new();
    for f in fns {
        ts.push(thread::spawn(f, 0).map_err(|_| "thread_create failed")?);
    }
    let _end = thread::spawn(ender, u64::from(fault)).map_err(|_| "thread_create failed")?;
    // Blocks for good: the spinner never ends. The process ends around this join.
    let _ = ts.swap_remove(1).join();
    Err("the spinner's join returned")
}

fn second(main_tid: u64) -> i32 {
    match exo_rt::thread_join(main_tid as usize) {
        Ok(7) => 9,
        _ => 1,
    }
}

/// Case 4: the status is the last thread's code.
fn last_thread() -> Check {
    // Never joined here: the second thread outlives this one and ends the process.
    let _second =
        thread::spawn(second, exo_rt::getpid() as u64).map_err(|_| "thread_create failed")?;
    exo_rt::thread_exit(7)
}

static GATE: AtomicU32 = AtomicU32::new(0);

fn gated(_: u64) -> i32 {
    while GATE.load(Ordering::Acquire) == 0 {
        let _ = exo_rt::futex_wait(&GATE, 0, None);
    }
    3
}

/// [`UNTIL_REFUSED`].
fn until_refused() -> i32 {
    let (n, err, _) = gated_until_refused();
    println!("threads: {n} threads besides main, then {err:?}");
    let n = n as i32;
    match err {
        Some(Errno::ENOMEM) => n,
        Some(Errno::EAGAIN) => 200,
        _ => 201,
    }
}

/// Starts [`gated`] threads with 16 KiB stacks until one is refused (or 80 run), then lets
/// them go and joins them: how many started, the refusal (`None`: 80 started), and how many
/// joins did not return 3.
fn gated_until_refused() -> (usize, Option<Errno>, u32) {
    let mut ts = arrayvec::ArrayVec::<thread::Thread, 80>::new();
    let err = loop {
        match thread::spawn_with_stack(gated, 0, 16 * 1024) {
            Ok(t) if !ts.is_full() => ts.push(t),
            Ok(_) => break None,
            Err(e) => break Some(e),
        }
    };
    let n = ts.len();
    GATE.store(1, Ordering::Release);
    let _ = exo_rt::futex_wake(&GATE, u32::MAX);
    let mut bad = 0;
    for t in ts {
        bad += u32::from(t.join() != Ok(3));
    }
    (n, err, bad)
}

/// Case 5: the per-process thread limit (64 with the main thread) gives EAGAIN, not less.
fn limit() -> Check {
    let (n, err, bad) = gated_until_refused();
    println!("threads: {n} threads besides main, then {err:?}; {bad} bad join(s)");
    if err != Some(Errno::EAGAIN) {
        return Err("the limit is not EAGAIN");
    }
    if n != 63 {
        return Err("not 63 threads besides main");
    }
    if bad != 0 {
        return Err("a join returned the wrong value");
    }
    Ok(())
}

fn check_pid(pid: u64) -> i32 {
    i32::from(exo_rt::getpid() as u64 != pid)
}

/// Case 6.
fn churn() -> Check {
    let pid = exo_rt::getpid() as u64;
    for _ in 0..300 {
        let t = thread::spawn_with_stack(check_pid, pid, 16 * 1024)
            .map_err(|_| "thread_create failed")?;
        if t.join() != Ok(0) {
            return Err("a thread saw another pid, or its join failed");
        }
    }
    Ok(())
}

static GO: AtomicU32 = AtomicU32::new(0);

fn racer(code: u64) -> i32 {
    READY.fetch_add(1, Ordering::Release);
    while GO.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    exo_rt::exit_group(code as i32)
}

/// Case 7: one of the four codes wins; the process ends once.
fn racing_exits() -> Check {
    let mut ts = arrayvec::ArrayVec::<thread::Thread, 4>::new();
    for code in 1..=4 {
        ts.push(thread::spawn(racer, code).map_err(|_| "thread_create failed")?);
    }
    while READY.load(Ordering::Acquire) < 4 {
        exo_rt::sched_yield();
    }
    GO.store(1, Ordering::Release);
    for t in ts {
        let _ = t.join();
    }
    Err("a racer's join returned")
}
