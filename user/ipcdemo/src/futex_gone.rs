//! The `FUTEX_GONE` role: the process side of the kernel test
//! `user.futex_shared_waiter_leaves_with_its_unmapped_page` (`kernel/src/user/tests_ipc.rs`),
//! started with `arg = ROLE << 56 | FUTEX_GONE << 48 | sync` (`sync`: a handle to the test's
//! endpoint). A thread waits on a shared futex in a fresh page; the main thread calls
//! `sync` (the test answers once it sees the waiter), unmaps the page, calls `sync` again
//! (the test then looks at the waiters), and exits with the thread's result: 0 if its
//! wait ended by a wake-up (the unmap's), 1 if it timed out, 2 on another error; 3..=6 a
//! failed step.

use core::sync::atomic::AtomicU32;
use exo_rt::{Errno, IpcMsg, Timespec};

/// Server mode: the `FUTEX_GONE` role.
pub const FUTEX_GONE: u64 = 12;

fn waiter(word: u64) -> i32 {
    // SAFETY: the page is mapped until the main thread unmaps it, which it does only once
    // this thread is asleep in the kernel (the test saw it there); the kernel reads the
    // word through the user copies, never this reference, after that.
    let w = unsafe { &*(word as *const AtomicU32) };
    match exo_rt::futex_wait_shared(w, 0, Some(&Timespec::from_nanos(20_000_000_000))) {
        Ok(_) => 0,
        Err(Errno::ETIMEDOUT) => 1,
        Err(_) => 2,
    }
}

/// The role.
pub fn role(arg: u64) -> i32 {
    let sync = arg as u32;
    let Ok(page) = exo_rt::map_anonymous(4096, exo_rt::abi::PROT_READ | exo_rt::abi::PROT_WRITE)
    else {
        return 3;
    };
    let Ok(t) = exo_rt::thread::spawn(waiter, page.as_ptr() as u64) else {
        return 4;
    };
    let m = IpcMsg::new(1, [0; 8]);
    if exo_rt::ipc_call(sync, &m, 0).is_err() {
        return 5;
    }
    // SAFETY: nothing of this program uses the page any more (the waiter is asleep in
    // the kernel on it).
    if unsafe { exo_rt::munmap(page.as_ptr() as usize, 4096) }.is_err() {
        return 6;
    }
    if exo_rt::ipc_call(sync, &m, 0).is_err() {
        return 5;
    }
    t.join().unwrap_or(2)
}
