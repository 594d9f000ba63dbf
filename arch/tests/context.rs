//! `exo_arch::context` in user space: "threads" on heap stacks switching with the kernel's
//! inline `switch`. Nothing may panic on a green stack (no unwind information past the
//! trampoline): green code records what it saw in the shared `Shared` block, and the main
//! context asserts.

use core::arch::naked_asm;
use exo_arch::context::{
    FRAME_SIZE, INIT_STACK_BYTES, OFF_ARG, SwitchFrame, enter, init_stack, init_stack_in,
    saved_frame, switch,
};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const STACK: usize = 64 * 1024;

/// Per-test state shared by the main context and its green threads (passed as `arg`). Atomics
/// only for interior mutability: everything runs on one OS thread.
#[repr(C)]
#[derive(Default)]
struct Shared {
    // Written by the naked entry probe (offsets used in its asm).
    entry_rsp: AtomicU64,
    entry_rdi: AtomicU64,
    entry_rbp: AtomicU64,
    entry_ret: AtomicU64,
    // Saved stack pointers.
    main_sp: AtomicU64,
    thread_sp: [AtomicU64; 8],
    // What the green side saw.
    rounds: AtomicU64,
    errors: AtomicU64,
    last_marks: [AtomicU64; 6],
}

const OFF_ENTRY_RSP: usize = core::mem::offset_of!(Shared, entry_rsp);
const OFF_ENTRY_RDI: usize = core::mem::offset_of!(Shared, entry_rdi);
const OFF_ENTRY_RBP: usize = core::mem::offset_of!(Shared, entry_rbp);
const OFF_ENTRY_RET: usize = core::mem::offset_of!(Shared, entry_ret);

fn stack() -> Vec<u128> {
    vec![0u128; STACK / 16]
}

fn top(s: &mut [u128]) -> u64 {
    s.as_mut_ptr() as u64 + (s.len() * 16) as u64
}

/// The six values `switch_marked` keeps live across a switch for `seed`.
fn marks(seed: u64) -> [u64; 6] {
    [
        seed,
        !seed,
        seed ^ 0x1212,
        seed.rotate_left(13),
        seed.wrapping_mul(3),
        seed ^ (u64::MAX / 3),
    ]
}

/// `switch(from, to)` with the six values `marks(seed)` live across it; returns them as they
/// are when this context is resumed (must be `marks(seed)` again). Six values cannot all stay
/// in rbx and rbp, so the compiler keeps some in memory and some in the two registers the
/// switch block pushes and pops itself: a wrong clobber list, or a frame popped in the wrong
/// order, shows as a changed value.
///
/// # Safety
/// As for `switch`.
#[inline(never)]
unsafe fn switch_marked(from: *mut u64, to: u64, seed: u64) -> [u64; 6] {
    let m = core::hint::black_box(marks(seed));
    let [a, b, c, d, e, f] = m;
    // SAFETY: the caller upholds `switch`'s contract for `from` and `to`.
    unsafe { switch(from, to) };
    core::hint::black_box([a, b, c, d, e, f])
}

/// A thread entry that records rsp, rdi, rbp and the return address exactly as `entry`
/// receives them (into the `Shared` that `arg` points to), then tail-jumps to `$body`.
macro_rules! probe {
    ($name:ident, $body:path) => {
        #[unsafe(naked)]
        extern "sysv64" fn $name(_arg: u64) -> ! {
            naked_asm!(
                "mov [rdi + {rsp}], rsp",
                "mov [rdi + {rdi}], rdi",
                "mov [rdi + {rbp}], rbp",
                "mov rax, [rsp]",
                "mov [rdi + {ret}], rax",
                "jmp {body}",
                rsp = const OFF_ENTRY_RSP,
                rdi = const OFF_ENTRY_RDI,
                rbp = const OFF_ENTRY_RBP,
                ret = const OFF_ENTRY_RET,
                body = sym $body,
            )
        }
    };
}

/// Green side of the ping-pong: switch back to main with its own marks, forever.
extern "sysv64" fn pong(arg: u64) -> ! {
    // SAFETY: `arg` is the address of the test's `Shared`, alive while we can run.
    let s = unsafe { &*(arg as *const Shared) };
    let mut k = 0u64;
    loop {
        let seed = 0xF00D_0000_0000 ^ k;
        // SAFETY: main's sp was saved by its switch into us; ours goes to our slot.
        let got = unsafe { switch_marked(s.thread_sp[0].as_ptr(), s.main_sp.load(Relaxed), seed) };
        if got != marks(seed) {
            s.errors.fetch_add(1, Relaxed);
        }
        s.rounds.fetch_add(1, Relaxed);
        k += 1;
    }
}
probe!(pong_probe, pong);

#[test]
fn ping_pong_preserves_callee_saved_registers() {
    let s = Shared::default();
    let mut st = stack();
    // SAFETY: the top `INIT_STACK_BYTES` of our own heap stack, unused.
    let sp = unsafe { init_stack(top(&mut st), pong_probe, &s as *const Shared as u64) };
    s.thread_sp[0].store(sp, Relaxed);
    const ROUNDS: u64 = 20_000;
    for k in 0..ROUNDS {
        let seed = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // SAFETY: the thread's sp is either fresh from init_stack or saved by its switch to
        // us; its stack lives until the end of the test; nobody else runs it.
        let got = unsafe { switch_marked(s.main_sp.as_ptr(), s.thread_sp[0].load(Relaxed), seed) };
        assert_eq!(got, marks(seed), "main side, round {k}");
    }
    assert_eq!(
        s.rounds.load(Relaxed),
        ROUNDS - 1,
        "resumed on every round but the first"
    );
    assert_eq!(
        s.errors.load(Relaxed),
        0,
        "green side saw clobbered registers"
    );
    drop(st);
}

/// Green body that checks nothing and switches straight back (entry facts come from the probe).
extern "sysv64" fn bounce(arg: u64) -> ! {
    // SAFETY: `arg` is the address of the test's `Shared`.
    let s = unsafe { &*(arg as *const Shared) };
    loop {
        // SAFETY: as in `pong`.
        unsafe { switch(s.thread_sp[0].as_ptr(), s.main_sp.load(Relaxed)) };
    }
}
probe!(bounce_probe, bounce);

#[test]
fn new_thread_gets_arg_sysv_alignment_and_ends_backtraces() {
    let mut st = stack();
    // Aligned and misaligned tops: init_stack rounds down to 16.
    for skew in [0u64, 1, 8, 15] {
        let s = Shared::default();
        let t = top(&mut st) - 64 - skew;
        // SAFETY: inside our heap stack, unused.
        let sp = unsafe { init_stack(t, bounce_probe, &s as *const Shared as u64) };
        assert_eq!(sp, (t & !15) - INIT_STACK_BYTES as u64);
        assert_eq!(sp % 16, 0);
        // SAFETY: a fresh frame of a context that is not running.
        let f = unsafe { saved_frame(sp) };
        assert_eq!((f.rbx, f.rbp), (bounce_probe as *const () as u64, 0));
        // SAFETY: the word above the fresh frame, inside our heap stack.
        let arg = unsafe { ((sp + OFF_ARG as u64) as *const u64).read() };
        assert_eq!(arg, &s as *const Shared as u64);
        s.thread_sp[0].store(sp, Relaxed);
        // SAFETY: switch into the fresh context; it switches straight back.
        unsafe { switch(s.main_sp.as_ptr(), sp) };
        let rsp = s.entry_rsp.load(Relaxed);
        assert_eq!(
            s.entry_rdi.load(Relaxed),
            &s as *const Shared as u64,
            "arg in rdi"
        );
        assert_eq!(rsp % 16, 8, "SysV: rsp + 8 is 16-aligned at function entry");
        assert_eq!(
            rsp,
            (t & !15) - 8,
            "entry's return slot is the top word of the stack"
        );
        assert_eq!(
            s.entry_ret.load(Relaxed),
            0,
            "zero return address ends unwinding"
        );
        assert_eq!(
            s.entry_rbp.load(Relaxed),
            0,
            "zero rbp ends frame-pointer walks"
        );
    }
    drop(st);
}

/// Ring member: switches to the next thread (or back to main after the last), checking that
/// a local on its own stack and its callee-saved marks survive each trip round the ring.
extern "sysv64" fn ring(arg: u64) -> ! {
    // SAFETY: `arg` is the address of this thread's `(shared, index)` pair (see the test).
    let (s, me) = unsafe { ring_unpack(arg) };
    let n = RING as u64;
    let mut local = [me; 4];
    let mut k = 0u64;
    loop {
        let next = if me + 1 == n {
            s.main_sp.load(Relaxed)
        } else {
            s.thread_sp[(me + 1) as usize].load(Relaxed)
        };
        let seed = (me << 56) ^ k;
        // SAFETY: `next` was saved by that context's switch (or built by init_stack) and it is
        // not running: the ring runs one context at a time.
        let got = unsafe { switch_marked(s.thread_sp[me as usize].as_ptr(), next, seed) };
        if got != marks(seed) || local != [me + k; 4] {
            s.errors.fetch_add(1, Relaxed);
        }
        k += 1;
        local = [me + k; 4];
        s.rounds.fetch_add(1, Relaxed);
    }
}

const RING: usize = 8;

/// Reads a ring member's `arg`: the address of its `(shared, index)` pair.
///
/// # Safety
/// `arg` must point to such a pair that, with its `Shared`, outlives every use.
unsafe fn ring_unpack(arg: u64) -> (&'static Shared, u64) {
    // SAFETY: `arg` points to a `(*const Shared, u64)` that outlives the ring (the test keeps
    // it and the `Shared` alive until every green thread is parked for good).
    let &(s, me) = unsafe { &*(arg as *const (*const Shared, u64)) };
    // SAFETY: as above.
    (unsafe { &*s }, me)
}

#[test]
fn ring_of_eight_threads_keeps_each_stack_and_registers() {
    let s = Shared::default();
    let mut stacks: Vec<Vec<u8>> = (0..RING).map(|_| vec![0u8; STACK + 7]).collect();
    let args: Vec<(*const Shared, u64)> =
        (0..RING as u64).map(|i| (&s as *const Shared, i)).collect();
    for (i, st) in stacks.iter_mut().enumerate() {
        // Odd-sized byte stacks: init_stack_in aligns their end down.
        let sp = init_stack_in(&mut st[i..], ring, &args[i] as *const _ as u64);
        assert_eq!(sp % 16, 0);
        s.thread_sp[i].store(sp, Relaxed);
    }
    const LAPS: u64 = 2_000;
    for lap in 0..LAPS {
        let seed = lap | 0xAA00_0000_0000_0000;
        // SAFETY: thread 0 is parked (fresh or switched out by the last lap's ring).
        let got = unsafe { switch_marked(s.main_sp.as_ptr(), s.thread_sp[0].load(Relaxed), seed) };
        assert_eq!(got, marks(seed), "lap {lap}");
    }
    // Each member counts a round when resumed, i.e. on every lap but its first.
    assert_eq!(s.rounds.load(Relaxed), (LAPS - 1) * RING as u64);
    assert_eq!(s.errors.load(Relaxed), 0);
    drop(stacks);
}

/// First of two: abandons itself for the second with `enter`.
extern "sysv64" fn first(arg: u64) -> ! {
    // SAFETY: `arg` is the address of the test's `Shared`.
    let s = unsafe { &*(arg as *const Shared) };
    s.rounds.fetch_add(1, Relaxed);
    // SAFETY: thread_sp[1] is a fresh frame nobody runs; nothing of ours is used afterwards.
    unsafe { enter(s.thread_sp[1].load(Relaxed)) }
}

/// Second: counts its start, then switches back to main for good.
extern "sysv64" fn second(arg: u64) -> ! {
    // SAFETY: `arg` is the address of the test's `Shared`.
    let s = unsafe { &*(arg as *const Shared) };
    s.rounds.fetch_add(10, Relaxed);
    loop {
        // SAFETY: main is parked in its switch into `first`.
        unsafe { switch(s.thread_sp[1].as_ptr(), s.main_sp.load(Relaxed)) };
    }
}

#[test]
fn enter_abandons_the_current_context() {
    let s = Shared::default();
    let (mut a, mut b) = (stack(), stack());
    let arg = &s as *const Shared as u64;
    // SAFETY: our own stacks' tops.
    unsafe {
        s.thread_sp[0].store(init_stack(top(&mut a), first, arg), Relaxed);
        s.thread_sp[1].store(init_stack(top(&mut b), second, arg), Relaxed);
    }
    // SAFETY: into `first`, which enters `second`, which switches back here.
    unsafe { switch(s.main_sp.as_ptr(), s.thread_sp[0].load(Relaxed)) };
    assert_eq!(s.rounds.load(Relaxed), 11);
    drop((a, b));
}

/// Switches out through `switch`'s own block (`switch_block!`) with `rbx = 0x5EED` and
/// `rbp = !0x5EED`, and back.
///
/// # Safety
/// As for `switch`.
#[inline(never)]
unsafe fn switch_with_marked_frame(from: *mut u64, to: u64) {
    // SAFETY: rbx and rbp are saved by hand around the block (they cannot be operands) and
    // hold known values inside it; the block is `switch`'s, with its operands and clobbers.
    // The caller upholds `switch`'s contract for `from` and `to`.
    unsafe {
        exo_arch::context::switch_block!(from, to;
            "push rbx", "push rbp", "mov rbx, 0x5EED", "mov rbp, rbx", "not rbp";
            "pop rbp", "pop rbx")
    }
}

#[test]
fn saved_frame_matches_documented_layout() {
    // The thread switches out with known rbx and rbp; its saved frame must hold them at the
    // documented offsets, with the resume address inside `switch_with_marked_frame`.
    extern "sysv64" fn parked(arg: u64) -> ! {
        // SAFETY: `arg` is the address of the test's `Shared`.
        let s = unsafe { &*(arg as *const Shared) };
        loop {
            // SAFETY: as in `pong`.
            unsafe { switch_with_marked_frame(s.thread_sp[0].as_ptr(), s.main_sp.load(Relaxed)) };
        }
    }
    let s = Shared::default();
    let mut st = stack();
    // SAFETY: our own stack's top.
    let sp0 = unsafe { init_stack(top(&mut st), parked, &s as *const Shared as u64) };
    s.thread_sp[0].store(sp0, Relaxed);
    // SAFETY: into the fresh thread, which switches back.
    unsafe { switch(s.main_sp.as_ptr(), sp0) };
    let sp = s.thread_sp[0].load(Relaxed);
    assert!(sp < sp0 && sp > top(&mut st) - STACK as u64);
    // SAFETY: the thread is switched out and stays so.
    let f: SwitchFrame = unsafe { saved_frame(sp) };
    assert_eq!((f.rbx, f.rbp), (0x5EED, !0x5EED));
    let f_raw: [u64; FRAME_SIZE / 8] = core::array::from_fn(|i| {
        // SAFETY: the frame's words, as above.
        unsafe { ((sp + 8 * i as u64) as *const u64).read() }
    });
    assert_eq!(f_raw, [f.rip, 0x5EED, !0x5EED]);
    let here = switch_with_marked_frame as *const () as u64;
    assert!(
        f.rip > here && f.rip < here + 4096,
        "resumes inside switch_with_marked_frame"
    );
    drop(st);
}
