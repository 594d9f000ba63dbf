//! The `FUTEX_GONE` role: the process side of the kernel tests
//! `user.futex_shared_waiter_leaves_with_its_unmapped_page` and
//! `user.futex_shared_wait_keyed_on_a_frame_it_lost_leaves` (`kernel/src/user/tests_ipc.rs`),
//! started with `arg = ROLE << 56 | FUTEX_GONE << 48 | remap << 40 | sync` (`sync`: a handle
//! to the test's endpoint). A thread waits on a shared futex in a fresh page; the main
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

/// The role.
pub fn role(arg: u64) -> i32 {
    let sync = arg as u32;
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
