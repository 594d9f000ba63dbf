//! The `FUTEX_GONE` role: the process side of the kernel tests
//! `user.futex_shared_waiter_leaves_with_its_unmapped_page` and
//! `user.futex_shared_wait_keyed_on_a_frame_it_lost_leaves` (`kernel/src/user/tests_ipc.rs`),
//! started with `arg = ROLE << 56 | FUTEX_GONE << 48 | queue << 41 | remap << 40 | sync`
//! (`sync`: a handle to the test's endpoint; `queue`: the variant of
//! `user.futex_wakes_the_longest_waiter_first`, see [`queue`]). A thread waits on a shared futex in a fresh page; the main
//! thread calls `sync` (the test answers once it sees the waiter asleep, or, with `remap`,
//! held in the kernel between reading its key and being listed), unmaps the page (with
//! `remap`, maps a decoy page anywhere, which takes the freed frame if the allocator hands
//! out the last one freed, then a fresh zeroed page at the same address), calls `sync`
//! again (the test then looks at the waiters, or the frames and releases the held wait);
//! both calls carry the page's address in word 0. It exits with the thread's result: 0
//! if its wait ended by a wake-up (the unmap's), 1 if it timed out, 2 on another error, 7 on
//! `EAGAIN`; 3..=6 and 8 a failed step.

use core::sync::atomic::AtomicU32;
use exo_rt::{Errno, IpcMsg, Timespec};

/// Server mode: the `FUTEX_GONE` role.
pub const FUTEX_GONE: u64 = 12;

fn waiter(word: u64) -> i32 {
    // SAFETY: the page is mapped until the main thread unmaps it, which it does only once
    // this thread is in the kernel (the test saw it there); the kernel reads the word
    // through the user copies, never this reference, after that.
    let w = unsafe { &*(word as *const AtomicU32) };
    match exo_rt::futex_wait_shared(w, 0, Some(&Timespec::from_nanos(20_000_000_000))) {
        Ok(_) => 0,
        Err(Errno::ETIMEDOUT) => 1,
        Err(Errno::EAGAIN) => 7,
        Err(_) => 2,
    }
}

/// One of the `queue` variant's three waiters: waits on the shared word while it is 0 (each
/// wake-up, then waits again), until it is 1: 0; a wait that timed out (20 s): 1; another
/// error: 2.
fn queued(word: u64) -> i32 {
    // SAFETY: the page stays mapped until the process ends (the `queue` variant never
    // unmaps it).
    let w = unsafe { &*(word as *const AtomicU32) };
    loop {
        if w.load(core::sync::atomic::Ordering::Acquire) == 1 {
            return 0;
        }
        match exo_rt::futex_wait_shared(w, 0, Some(&Timespec::from_nanos(20_000_000_000))) {
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(Errno::ETIMEDOUT) => return 1,
            Err(_) => return 2,
        }
    }
}

/// The `queue` variant (`arg` bit 41), for `user.futex_wakes_the_longest_waiter_first`:
/// three threads wait on a shared word in a fresh page, over and over ([`queued`]); the main
/// thread calls `sync` with the page's address in word 0 (the test wakes the waiters one at
/// a time meanwhile, watching which one each wake takes), then sets the word to 1, wakes
/// them all and joins them. Exits with the largest of their results, or 3..=5 for a failed
/// step.
fn queue(sync: u32) -> i32 {
    let Ok(page) = exo_rt::map_anonymous(4096, exo_rt::abi::PROT_READ | exo_rt::abi::PROT_WRITE)
    else {
        return 3;
    };
    let addr = page.as_ptr() as u64;
    let mut ts = [None, None, None];
    for t in &mut ts {
        match exo_rt::thread::spawn(queued, addr) {
            Ok(h) => *t = Some(h),
            Err(_) => return 4,
        }
    }
    let m = IpcMsg::new(1, [addr, 0, 0, 0, 0, 0, 0, 0]);
    let called = exo_rt::ipc_call(sync, &m, 0).is_ok();
    // SAFETY: the page is mapped for the process's life; the waiters read it as atomics.
    let w = unsafe { &*(addr as *const AtomicU32) };
    w.store(1, core::sync::atomic::Ordering::Release);
    let _ = exo_rt::futex_wake_shared(w, 3);
    let worst = ts
        .into_iter()
        .flatten()
        .map(|t| t.join().unwrap_or(2))
        .max()
        .unwrap_or(2);
    if called { worst } else { 5 }
}

/// The role.
pub fn role(arg: u64) -> i32 {
    let sync = arg as u32;
    if (arg >> 41) & 1 != 0 {
        return queue(sync);
    }
    let remap = (arg >> 40) & 1 != 0;
    let Ok(page) = exo_rt::map_anonymous(4096, exo_rt::abi::PROT_READ | exo_rt::abi::PROT_WRITE)
    else {
        return 3;
    };
    let Ok(t) = exo_rt::thread::spawn(waiter, page.as_ptr() as u64) else {
        return 4;
    };
    let m = IpcMsg::new(1, [page.as_ptr() as u64, 0, 0, 0, 0, 0, 0, 0]);
    if exo_rt::ipc_call(sync, &m, 0).is_err() {
        return 5;
    }
    // SAFETY: nothing of this program uses the page any more (the waiter is in the kernel
    // on it).
    if unsafe { exo_rt::munmap(page.as_ptr() as usize, 4096) }.is_err() {
        return 6;
    }
    if remap {
        use exo_rt::abi::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE};
        if exo_rt::map_anonymous(4096, PROT_READ | PROT_WRITE).is_err() {
            return 8;
        }
        // SAFETY: the range was just unmapped; the new page is only the waiter's word.
        let again = unsafe {
            exo_rt::mmap(
                page.as_ptr() as usize,
                4096,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            )
        };
        if again != Ok(page.as_ptr() as usize) {
            return 8;
        }
    }
    if exo_rt::ipc_call(sync, &m, 0).is_err() {
        return 5;
    }
    t.join().unwrap_or(2)
}
