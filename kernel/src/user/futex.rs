//! `futex`: FUTEX_WAIT and FUTEX_WAKE on a 32-bit word of the caller's address space.
//! With `FUTEX_PRIVATE_FLAG` a word is keyed by its address space and address (threads of
//! one process); without it by its physical address, so processes that map the same
//! shared region (`shm_map`) meet on it wherever each mapped it (the user-mode fusion
//! rings park and wake that way). The value check and the registration happen under one
//! lock that wakers also take, so a wake between the check and the sleep is never lost;
//! every wait has the caller's deadline (or none) and ends with ETIMEDOUT when it passes.
//! A thread's end clears and wakes the word it named with `set_tid_address`
//! ([`thread_end_word`]).

use super::syscall::Errno;
use crate::sched::{self, Tid};
use alloc::vec::Vec;
use exo_arch::usercopy;
use exo_percpu::IrqGuard;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_PRIVATE_FLAG: u64 = 128;

/// The `root` of a shared futex's key (no page-table root is at this address).
const SHARED: u64 = u64::MAX;

#[derive(Debug)]
struct Waiter {
    /// The address space's root (private), or [`SHARED`] (`addr` is then physical).
    root: u64,
    addr: u64,
    tid: Tid,
    woken: bool,
    /// Whether wakes may take it. A shared waiter is listed unarmed and armed only once
    /// its key, read again, is still the frame mapped at its address (see [`wait`]).
    armed: bool,
    /// A wake on its key came while it was unarmed (counted against the wake's limit, not
    /// in what it returns): if its key holds when it arms, it leaves woken instead of
    /// sleeping; if its key is a frame it lost, the wake is passed on to the next waiter on
    /// that key (see [`wait`]).
    missed: bool,
}

/// Every waiter, in the order they were listed: a wake takes the matching ones from the
/// front (the longest waiting first), and a waiter leaving is removed in place (`remove`,
/// never `swap_remove`, which moved the newest waiter to the front: three threads taking
/// turns through wakes of one waiter each left one of them asleep for ever, 30 / 0 / 30
/// wakes in 60; found by review, 2026-12-05).
static WAITERS: spin::Mutex<Vec<Waiter>> = spin::Mutex::new(Vec::new());

/// A shared wait stops here (a test's switch) once it has read its key and before it is
/// listed, so a sibling can unmap the word's page and map another in that window
/// (`user.futex_shared_wait_keyed_on_a_frame_it_lost_leaves`).
pub static WAIT_KEYED_HOLD: super::aspace::HoldPoint = super::aspace::HoldPoint::new();
/// A shared wait stops here once it is listed (unarmed) and before it reads its key
/// again, so a test can wake the frame it lost in that window
/// (`user.futex_shared_wait_on_a_lost_frame_takes_no_wake_meant_for_it`).
pub static WAIT_LISTED_HOLD: super::aspace::HoldPoint = super::aspace::HoldPoint::new();
/// A wait stops here once its sleep is over and before it leaves the list, so a test can
/// kill its process after a wake picked it (`user.futex_shared_wake_taken_by_a_dying_waiter_is_passed_on`).
pub static WAIT_END_HOLD: super::aspace::HoldPoint = super::aspace::HoldPoint::new();
/// Shared wakes taken by a waiter whose process was dying, passed on (test support).
pub static PASSED_ON: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// `f` on the waiter list, locked with interrupts off. Its lock is taken with interrupts
/// off anyway by a wait's re-check inside the scheduler's block and by a thread's end on
/// an exception stack: a holder preempted with it (interrupts on) could leave such a CPU
/// spinning for a holder it cannot run.
fn waiters<R>(f: impl FnOnce(&mut Vec<Waiter>) -> R) -> R {
    let _g = IrqGuard::new();
    f(&mut WAITERS.lock())
}

/// Waiters the list has room for from `prepare` on, kept when it empties.
const RESERVED: usize = 64;

/// Reserves room for [`RESERVED`] waiters up front (see `process::prepare`).
pub fn prepare() {
    let _ = waiters(|w| w.try_reserve(RESERVED));
}

/// Takes waiter `k` off the list `w`; an emptied list that grew past [`RESERVED`] gives
/// its room back (until 2026-12-05 it kept it: more than 64 threads waiting at once, e.g.
/// one program's 100 workers, left the list's 4 to 32 KiB taken for good, and the `init`
/// job's memory check found them missing; found by review).
fn leave(w: &mut Vec<Waiter>, k: usize) -> Waiter {
    let x = w.remove(k);
    if w.is_empty() && w.capacity() > RESERVED {
        let mut fresh = Vec::new();
        if fresh.try_reserve(RESERVED).is_ok() {
            *w = fresh;
        }
    }
    x
}

/// Test support: lists `n` waiters that no wake can match (thread `me`, key root 0, which
/// no address space has) and takes them off again one by one, as waits leave; returns the
/// list's capacity before and after.
pub fn list_and_leave(n: usize, me: Tid) -> Result<(usize, usize), Errno> {
    waiters(|w| {
        let before = w.capacity();
        w.try_reserve(n).map_err(|_| Errno::Enomem)?;
        for _ in 0..n {
            w.push(Waiter {
                root: 0,
                addr: 0,
                tid: me,
                woken: false,
                armed: false,
                missed: false,
            });
        }
        while let Some(k) = w.iter().position(|x| x.root == 0 && x.tid == me) {
            leave(w, k);
        }
        Ok((before, w.capacity()))
    })
}

/// The `futex` system call.
pub fn futex(addr: u64, op: u64, val: u64, timeout: u64) -> Result<i64, Errno> {
    let private = op & FUTEX_PRIVATE_FLAG != 0;
    match op & !FUTEX_PRIVATE_FLAG {
        FUTEX_WAIT => wait(addr, private, val as u32, timeout),
        // Linux's `val` is an int: the low 32 bits, for WAKE as for WAIT (until 2026-12-05
        // WAKE counted with all 64, so `1 << 32` woke a waiter where Linux wakes none;
        // found by review).
        FUTEX_WAKE => wake(addr, private, u64::from(val as u32)),
        _ => Err(Errno::Enosys),
    }
}

/// The key of the word at user address `addr` (checked readable first by the caller):
/// (address space root, address) if private, else ([`SHARED`], physical address).
fn key(addr: u64, private: bool) -> Result<(u64, u64), Errno> {
    if private {
        return Ok((exo_arch::tlb::current_root(), addr));
    }
    super::process::with_current(|s| s.phys(addr))
        .flatten()
        .map(|pa| (SHARED, pa))
        .ok_or(Errno::Efault)
}

fn read_word(addr: u64) -> Result<u32, Errno> {
    if !addr.is_multiple_of(4) {
        return Err(Errno::Einval);
    }
    let mut b = [0u8; 4];
    usercopy::copy_from_user(&mut b, addr).map_err(|_| Errno::Efault)?;
    Ok(u32::from_le_bytes(b))
}

fn wait(addr: u64, private: bool, val: u32, timeout: u64) -> Result<i64, Errno> {
    let deadline = super::syscall::timeout_deadline(timeout)?;
    let me = sched::current().ok_or(Errno::Einval)?;
    read_word(addr)?;
    let (root, addr_key) = key(addr, private)?;
    if !private {
        WAIT_KEYED_HOLD.pass();
    }
    waiters(|w| {
        if read_word(addr)? != val {
            return Err(Errno::Eagain);
        }
        w.try_reserve(1).map_err(|_| Errno::Enomem)?;
        w.push(Waiter {
            root,
            addr: addr_key,
            tid: me,
            woken: false,
            armed: private,
            missed: false,
        });
        Ok(())
    })?;
    let woken = || waiters(|w| w.iter().find(|x| x.tid == me).is_none_or(|x| x.woken));
    // A shared key is the frame mapped at `addr` when it was read, under the tables' lock
    // (which cannot be taken under the waiters' lock): a sibling thread may have unmapped
    // that frame since (its `frames_gone` found no waiter yet, and the frame may already be
    // another process's) and mapped a new page there, whose word the check above read. So
    // the waiter is listed unarmed, and its key read again: the same frame means any later
    // unmap of it calls `frames_gone` after this point, which finds the waiter, and it is
    // armed, its word checked again under the same lock (a wake meanwhile changed it
    // first: EAGAIN, not a lost wake); another frame means it is keyed on a frame it no
    // longer maps, and it leaves (EAGAIN). Unarmed, it takes no wake meant for that frame's
    // next owner: it did, between listing and this check, until 2026-12-04 (the owner's own
    // waiter then slept on; found by review).
    if !private {
        WAIT_LISTED_HOLD.pass();
        let same = key(addr, false).ok() == Some((root, addr_key));
        // Whether it left (else it is armed, or `frames_gone` woke it: a spurious wake-up).
        // Whether it left, and whether it must pass on a wake it was counted for.
        let (left, pass_on) = waiters(|w| {
            let Some(k) = w.iter().position(|x| x.tid == me) else {
                return (false, false);
            };
            if w[k].woken {
                return (false, false);
            }
            if same && w[k].missed {
                // A wake came while it was unarmed, its key still holds: it was meant for
                // this waiter (queued after its check, as on Linux). Until 2026-12-05 it
                // armed and slept if the word had its value again (found by review).
                w[k].woken = true;
                return (false, false);
            }
            if same && read_word(addr) == Ok(val) {
                w[k].armed = true;
                return (false, false);
            }
            (true, leave(w, k).missed && !same)
        });
        if left {
            // A wake stopped at this waiter, keyed on a frame it lost (the wake is meant for
            // the frame's next owner): the next waiter on the key gets it, as with a dying
            // waiter's below. (With its key holding and its word changed it returns
            // `EAGAIN` to its program, as good as woken.) Until 2026-12-05 a wake noted
            // every unarmed waiter whatever its count: a wake of 0 woke one (found by
            // review).
            if pass_on {
                PASSED_ON.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                wake_key(root, addr_key, 1);
            }
            return Err(Errno::Eagain);
        }
    }
    let dying = super::process::dying;
    while !woken() && !dying() && exo_arch::tsc::rdtsc() < deadline {
        sched::block_until(deadline, || !woken() && !dying());
    }
    WAIT_END_HOLD.pass();
    let was_woken = waiters(|w| match w.iter().position(|x| x.tid == me) {
        Some(k) => leave(w, k).woken,
        None => true,
    });
    // A shared wake taken by a waiter whose process is being killed reaches no program:
    // passed on to the next waiter on the key (another process's, which would sleep on
    // otherwise; a frame's unmap wake passed on is one more spurious wake-up). Until
    // 2026-12-05 it was lost (found by review). Private keys have no waiter outside the
    // dying process.
    if was_woken && !private && dying() {
        PASSED_ON.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        wake_key(root, addr_key, 1);
    }
    if was_woken {
        Ok(0)
    } else {
        Err(Errno::Etimedout)
    }
}

/// A thread's end told through the word it named with `set_tid_address` (Linux's
/// `clear_child_tid`): when `addr` is an aligned word the ending thread may write, 0 is
/// stored there and one waiter woken, private or shared (a futex wait on the word from
/// another process that maps it). Anything else (unmapped, read-only, misaligned): nothing,
/// as Linux does. Runs in the ending thread, in its address space. Without `shared` (an end
/// with interrupts off, on an exception stack: none since 2026-12-04, see
/// `task::on_own_stack`) only a private waiter is woken:
/// the shared key is the word's physical address, read under the tables' lock, which a
/// holder keeps across a TLB shootdown that needs this CPU's answer.
pub fn thread_end_word(addr: u64, shared: bool) {
    if !addr.is_multiple_of(4) || usercopy::copy_to_user(addr, &0u32.to_le_bytes()).is_err() {
        return;
    }
    let _ = wake(addr, true, 1);
    if shared {
        let _ = wake(addr, false, 1);
    }
}

/// Frames leaving a user address space (`aspace`'s unmap, before they are freed): a
/// shared waiter keyed on one of them is woken (a spurious wake-up, which every futex wait
/// allows) and no longer matches any wake. Otherwise it stayed keyed on the frame's
/// physical address after the frame went to another process, and a wake there for one
/// waiter took the stale entry instead of that process's own: a lost wake-up across
/// processes (found by review, 2026-12-04). Without memory for the list of threads to
/// wake, the stale entries are still taken out of every match (marked woken); their
/// threads sleep on until their deadlines, as a waiter on an unmapped word does on Linux.
///
/// `frames` is sorted: the list's lock (interrupts off) is held for a binary search per
/// waiter. A scan per waiter was waiters x frames under it: a 4 GiB unmap with a thousand
/// shared waiters, 10^9 compares with interrupts off while other CPUs spin for the lock
/// and cannot answer TLB shootdowns (found by review, 2026-12-04; not forced by a test).
pub fn frames_gone(frames: &[u64]) {
    if frames.is_empty() {
        return;
    }
    debug_assert!(frames.is_sorted(), "frames_gone needs sorted frames");
    let mut tids: Vec<Tid> = Vec::new();
    waiters(|w| {
        for x in w.iter_mut().filter(|x| x.root == SHARED && !x.woken) {
            if frames.binary_search(&(x.addr & !0xfff)).is_ok() {
                x.woken = true;
                if tids.try_reserve(1).is_ok() {
                    tids.push(x.tid);
                }
            }
        }
    });
    for t in tids {
        sched::wake(t);
    }
}

/// The shared waiters not woken yet on the word at physical address `pa`, in list order,
/// each with whether it is armed (tests).
pub fn listed_on(pa: u64) -> Vec<(Tid, bool)> {
    waiters(|w| {
        w.iter()
            .filter(|x| x.root == SHARED && x.addr == pa && !x.woken)
            .map(|x| (x.tid, x.armed))
            .collect()
    })
}

/// Physical addresses of the shared waiters not woken yet (tests).
pub fn shared_waiting() -> Vec<u64> {
    waiters(|w| {
        w.iter()
            .filter(|x| x.root == SHARED && !x.woken)
            .map(|x| x.addr)
            .collect()
    })
}

fn wake(addr: u64, private: bool, n: u64) -> Result<i64, Errno> {
    read_word(addr)?; // the word must be the caller's memory
    let (root, addr) = key(addr, private)?;
    Ok(wake_key(root, addr, n) as i64)
}

/// Test support: a wake of at most `n` shared waiters on the word at physical address
/// `pa`, as a process mapping that frame would make it. Returns how many it woke.
pub fn wake_shared_frame(pa: u64, n: u64) -> u64 {
    wake_key(SHARED, pa, n)
}

/// Wakes at most `n` waiters on the key, the longest waiting first; returns how many it
/// woke. An unarmed waiter it meets counts against `n` and is noted, not woken (its key may
/// be a frame it lost: the wake may be meant for the frame's next owner): when it arms it
/// takes the wake, or passes it on (see `wait`), so the number returned may be less than
/// the threads a wake lets go, never more.
fn wake_key(root: u64, addr: u64, n: u64) -> u64 {
    let mut woke = 0u64;
    let mut taken = 0u64;
    let mut tids: Vec<Tid> = Vec::new();
    waiters(|w| {
        for x in w
            .iter_mut()
            .filter(|x| x.root == root && x.addr == addr && !x.woken && !x.missed)
        {
            if taken >= n {
                break;
            }
            if !x.armed {
                x.missed = true;
                taken += 1;
                continue;
            }
            // A waiter marked woken is woken: no room to note it (out of memory), the
            // wake stops here and says how many it woke (it marked one it never woke
            // before, which then slept until its deadline or for ever).
            if tids.try_reserve(1).is_err() {
                break;
            }
            x.woken = true;
            woke += 1;
            taken += 1;
            tids.push(x.tid);
        }
    });
    for t in tids {
        sched::wake(t);
    }
    woke
}
