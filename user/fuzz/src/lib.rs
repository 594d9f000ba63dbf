//! The generator side of `/fuzz` (`src/main.rs` is the program): the PRNG, the encoding
//! of the program's `arg`, the pools of nasty values, the choice of call numbers, the
//! contract arithmetic the worker uses to stay alive (which ranges a call would touch),
//! and the check of every result against `exo_abi::SYSCALLS`. No system calls here: the
//! host tests exercise all of it.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

use exo_abi::{Errno, nr};

const MAX_ERRNO: i64 = 4095;

/// The first address above user space: the lower half's last page is never mapped (the
/// kernel's `USER_END`), non-canonical from the next page to the kernel half.
pub const USER_END: u64 = 0x0000_7FFF_FFFF_F000;
/// Lowest address a mapping may use (the kernel's null guard: 64 KiB).
pub const USER_MIN: u64 = 0x1_0000;
/// A page.
pub const PAGE: u64 = 4096;
/// The direct map of physical memory (kernel half).
pub const KERNEL_DIRECT: u64 = 0xFFFF_8000_0000_0000;
/// The kernel image.
pub const KERNEL_IMAGE: u64 = 0xFFFF_FFFF_8000_0000;
/// The last user page.
pub const LAST_USER_PAGE: u64 = USER_END - PAGE;
/// Where the worker plays with `mmap(MAP_FIXED)`, `munmap` and `mprotect` (nothing of
/// its own lives there).
pub const PLAY_BASE: u64 = 0x30_0000_0000;
/// Size of that playground.
pub const PLAY_SIZE: u64 = 16 << 20;
/// Calls of the random stream that the worker never makes: those ending it. Remapped
/// (outside the kamikaze phase) to `getpid`.
pub const ENDING_CALLS: [usize; 3] = [nr::EXIT, nr::EXIT_GROUP, nr::THREAD_EXIT];
/// Numbers are drawn below this (and a few far above it).
pub const NR_LIMIT: u64 = 1100;

/// splitmix64: tiny, fast, every seed good; a run is reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole future is `seed`'s.
    pub const fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `true` with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// The splitmix64 finalizer (also how seeds are derived from seeds).
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of worker generation `generation` on `cpu` in a run with `seed` (32 bits: it
/// travels in the worker's `arg`).
pub const fn worker_seed(seed: u32, cpu: u32, generation: u32) -> u32 {
    mix(mix(seed as u64 ^ ((cpu as u64) << 32)) ^ generation as u64) as u32
}

/// What the program's `arg` asks for (see the crate header of `src/main.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spawn and supervise workers.
    Coordinator(Coordinator),
    /// Make random calls.
    Worker(Worker),
    /// A worker's child that calls the worker's echo server ([`echo`]) through a handle it
    /// inherited.
    EchoChild(EchoChild),
}

/// The coordinator's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coordinator {
    /// Random calls per CPU, in thousands (0 in the arg: [`DEFAULT_KCALLS`]).
    pub kcalls_per_cpu: u32,
    /// Calls per worker process, in thousands (0 in the arg: [`DEFAULT_GEN_KCALLS`]).
    pub gen_kcalls: u32,
    /// Lift the cap on `munmap`'s span (see `MUNMAP_SPAN_CAP` in the program).
    pub no_span_cap: bool,
    /// The run's seed.
    pub seed: u32,
}

/// A worker's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    /// The CPU it pins itself to.
    pub cpu: u32,
    /// It may end with a kamikaze phase ([`kamikaze_at`]).
    pub kamikaze: bool,
    /// Lift the cap on `munmap`'s span.
    pub no_span_cap: bool,
    /// Random calls to make, in units of [`WORKER_CALL_UNIT`].
    pub units: u32,
    /// Its seed.
    pub seed: u32,
}

/// An echo child's parameters (its `arg`: bits 0-1 = 2, 2-7 the handle, 8-9 its rights,
/// 10-15 the calls, 16 unpin, 17-21 the pages of the endpoint's region (0: unknown), 22-31
/// the worker's count of children, 32-63 the worker's seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoChild {
    /// The handle (inherited) to call the server through.
    pub handle: u32,
    /// Its rights.
    pub rights: u64,
    /// Calls to make (0..=63).
    pub calls: u32,
    /// Allow every CPU (else it stays on its parent's).
    pub unpin: bool,
    /// Pages of the echo endpoint's shared region when the worker knows it (0: unknown).
    pub region_pages: u32,
    /// Which child of the worker it is (10 bits): with `seed`, its stream.
    pub index: u32,
    /// The worker's seed (the endpoint's badge is [`echo::badge`] of it).
    pub seed: u32,
}

/// Default calls per CPU, in thousands.
pub const DEFAULT_KCALLS: u32 = 50;
/// Default calls per worker process, in thousands.
pub const DEFAULT_GEN_KCALLS: u32 = 16;
/// A worker's budget is counted in these.
pub const WORKER_CALL_UNIT: u64 = 64;

const MODE_WORKER: u64 = 1;
const MODE_ECHO_CHILD: u64 = 2;

impl Mode {
    /// Decodes `arg`; `None` for a malformed one.
    pub fn decode(arg: u64) -> Option<Mode> {
        let seed = (arg >> 32) as u32;
        match arg & 3 {
            0 => Some(Mode::Coordinator(Coordinator {
                gen_kcalls: match (arg >> 2) & 0x3f {
                    0 => DEFAULT_GEN_KCALLS,
                    g => g as u32,
                },
                no_span_cap: arg & (1 << 8) != 0,
                kcalls_per_cpu: match (arg >> 9) & 0x7f_ffff {
                    0 => DEFAULT_KCALLS,
                    k => k as u32,
                },
                seed,
            })),
            MODE_WORKER => Some(Mode::Worker(Worker {
                cpu: ((arg >> 2) & 0xfff) as u32,
                kamikaze: arg & (1 << 14) != 0,
                no_span_cap: arg & (1 << 15) != 0,
                units: ((arg >> 16) & 0xffff) as u32,
                seed,
            })),
            MODE_ECHO_CHILD => Some(Mode::EchoChild(EchoChild {
                handle: ((arg >> 2) & 0x3f) as u32,
                rights: (arg >> 8) & 3,
                calls: ((arg >> 10) & 0x3f) as u32,
                unpin: arg & (1 << 16) != 0,
                region_pages: ((arg >> 17) & 0x1f) as u32,
                index: ((arg >> 22) & 0x3ff) as u32,
                seed,
            })),
            _ => None,
        }
    }

    /// The `arg` that [`decode`](Self::decode)s to `self` (fields out of range are cut).
    pub fn encode(self) -> u64 {
        match self {
            Mode::Coordinator(c) => {
                (u64::from(c.gen_kcalls) & 0x3f) << 2
                    | u64::from(c.no_span_cap) << 8
                    | (u64::from(c.kcalls_per_cpu) & 0x7f_ffff) << 9
                    | u64::from(c.seed) << 32
            }
            Mode::Worker(w) => {
                MODE_WORKER
                    | (u64::from(w.cpu) & 0xfff) << 2
                    | u64::from(w.kamikaze) << 14
                    | u64::from(w.no_span_cap) << 15
                    | (u64::from(w.units) & 0xffff) << 16
                    | u64::from(w.seed) << 32
            }
            Mode::EchoChild(c) => {
                MODE_ECHO_CHILD
                    | (u64::from(c.handle) & 0x3f) << 2
                    | (c.rights & 3) << 8
                    | (u64::from(c.calls) & 0x3f) << 10
                    | u64::from(c.unpin) << 16
                    | (u64::from(c.region_pages) & 0x1f) << 17
                    | (u64::from(c.index) & 0x3ff) << 22
                    | u64::from(c.seed) << 32
            }
        }
    }
}

/// Whether generation `generation` of a CPU is a kamikaze worker (one in four, never the
/// first, so every CPU runs at least one full ordinary worker).
pub const fn is_kamikaze(seed: u32, generation: u32) -> bool {
    generation > 0 && mix(seed as u64 ^ 0x6b61_6d69).is_multiple_of(4)
}

/// After how many ordinary calls a kamikaze worker with `seed` and `budget` calls starts
/// its deadly phase: between a half and the whole of the budget (the coordinator counts
/// these calls as made, and the ones after as "at least zero").
pub const fn kamikaze_at(seed: u32, budget: u64) -> u64 {
    let half = budget / 2;
    half + mix(seed as u64 ^ 0x6465_6174) % (budget - half + 1)
}

/// The numbers the kernel implements, with weights (how often the stream picks each).
pub const IMPLEMENTED: &[(usize, u32)] = &[
    (nr::WRITE, 6),
    (nr::MMAP, 10),
    (nr::MPROTECT, 8),
    (nr::MUNMAP, 8),
    (nr::SCHED_YIELD, 2),
    (nr::NANOSLEEP, 3),
    (nr::GETPID, 2),
    (nr::EXIT, 1),
    (nr::FUTEX, 8),
    (nr::SCHED_SETAFFINITY, 4),
    (nr::SET_TID_ADDRESS, 2),
    (nr::CLOCK_GETTIME, 5),
    (nr::EXIT_GROUP, 1),
    (nr::GETCPU, 5),
    (nr::SPAWN, 3),
    (nr::WAIT, 3),
    (nr::KILL, 2),
    (nr::THREAD_CREATE, 3),
    (nr::THREAD_EXIT, 1),
    (nr::THREAD_JOIN, 3),
    (nr::IPC_CALL, 2),
    (nr::IPC_REPLY_RECV, 2),
    (nr::IPC_RECV, 2),
    (nr::IPC_SEND, 2),
    (nr::IPC_REPLY, 1),
    (nr::ENDPOINT_CREATE, 3),
    (nr::HANDLE_CLOSE, 2),
    (nr::SHM_MAP, 2),
    (nr::HANDLE_INFO, 2),
];

/// Whether `n` is an IPC call: the worker makes it with `exo_rt::raw::ipc` (payload in
/// the callee-saved registers, a short timeout in `rbx`: never a wait without end; only
/// the calls to its own echo server ([`echo`]) may carry none).
pub const fn is_ipc(n: u64) -> bool {
    n >= nr::IPC_FIRST as u64 && n <= nr::IPC_LAST as u64
}

/// Longest IPC timeout the worker asks for, ns.
pub const IPC_TIMEOUT_MAX: u64 = 100_000;

/// Word 7 of an IPC message sent with `INFO_HANDLE`: a handle number around the table's
/// range (0..=65: most empty, `EBADF`; some the worker's) and rights 0..=3 (0: all it has;
/// more than it has: `EPERM`), at times rights above bit 33 (`EPERM`).
pub fn ipc_handle_word(r: &mut Rng) -> u64 {
    let h = r.below(exo_abi::ipc::HANDLES as u64 + 2) as u32;
    let rights = if r.chance(1, 16) {
        r.next_u64() & 0xffff_ffff
    } else {
        r.below(4)
    };
    h as u64 | rights << exo_abi::ipc::HANDLE_RIGHTS_SHIFT
}

/// Numbers around the edges of the table and of the number's width.
pub const EDGE_NUMBERS: &[u64] = &[
    0,
    2,
    8,
    59,
    61,
    63,
    230,
    232,
    310,
    511,
    517,
    518,
    // Either side of the IPC entry's range (520..=526) and of the last numbers.
    519,
    527,
    528,
    529,
    1023,
    1024,
    1099,
    4095,
    0x1_0000_0001, // write if the kernel truncated the number to 32 bits
    0x1_0000_0027, // getpid, same
    0x8000_0000_0000_0001,
    u64::MAX,
    u64::MAX - 38,
];

/// A call number: mostly an implemented one (weighted), else any below [`NR_LIMIT`], else
/// an edge.
pub fn pick_nr(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..75 => {
            let total: u32 = IMPLEMENTED.iter().map(|&(_, w)| w).sum();
            let mut k = rng.below(u64::from(total)) as u32;
            for &(n, w) in IMPLEMENTED {
                if k < w {
                    return n as u64;
                }
                k -= w;
            }
            nr::GETPID as u64
        }
        75..97 => rng.below(NR_LIMIT),
        _ => rng.pick(EDGE_NUMBERS),
    }
}

/// Nasty constants: zero, all ones, sign bits, kernel addresses, non-canonical ones, the
/// top of the user half, unmapped low memory, odd sizes.
pub const NASTY: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    15,
    16,
    64,
    255,
    256,
    4095,
    4096,
    4097,
    8192,
    65536,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
    u64::MAX - 1,
    u64::MAX - 4095,
    1 << 63,
    (1 << 63) - 1,
    KERNEL_DIRECT,
    KERNEL_DIRECT + 0x10_0000,
    0xFFFF_C000_0000_0000,
    KERNEL_IMAGE,
    KERNEL_IMAGE + 0x1000,
    0xFFFF_FFFF_FFFF_F000,
    USER_END,
    0x8000_0000_0000_0000,
    0x0000_FFFF_FFFF_FFFF,
    LAST_USER_PAGE,
    USER_END - 8,
    USER_END - 1,
    USER_END - 2,
    0x1000,
    0x8000,
    0xffff,
    USER_MIN,
    0x40_0000,
];

/// Lengths: empty, tiny, page-sized and off by one, big, and huge (wrapping, above the
/// user half, the whole user half).
pub const LENGTHS: &[u64] = &[
    0,
    1,
    2,
    4,
    8,
    15,
    16,
    17,
    64,
    255,
    256,
    257,
    4095,
    4096,
    4097,
    8192,
    12288,
    65536,
    1 << 20,
    (1 << 21) + 1,
    1 << 40,
    1 << 47,
    1 << 63,
    u64::MAX,
    u64::MAX - 4095,
    u64::MAX - 4096,
    LAST_USER_PAGE,
    USER_END,
    0x7fff_ffff,
    0xffff_ffff,
];

/// The page-aligned range `[start, end)` a `munmap`/`mprotect`/`mmap(MAP_FIXED)` of
/// `addr, len` would touch if the kernel accepts it; `None` when the contract says it is
/// refused without effect (unaligned, empty, wrapping, outside `[USER_MIN, USER_END)`).
pub fn touched_range(addr: u64, len: u64) -> Option<(u64, u64)> {
    if !addr.is_multiple_of(PAGE) || len == 0 {
        return None;
    }
    let len = len.checked_next_multiple_of(PAGE)?;
    let end = addr.checked_add(len)?;
    (addr >= USER_MIN && end <= USER_END).then_some((addr, end))
}

/// `true` when `[a, b)` and `[c, d)` overlap.
pub const fn overlaps(a: u64, b: u64, c: u64, d: u64) -> bool {
    a < d && c < b
}

/// How a result compares with the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A success.
    Ok,
    /// An error the call may return.
    Error(Errno),
    /// An error `exo_abi` knows but the call's row does not list.
    Undocumented(Errno),
    /// A negative value that is no known error (or beyond `-4095`): the run fails.
    Untyped,
}

/// Classifies `ret` of call `number`.
pub fn classify(number: u64, ret: i64) -> Verdict {
    if ret >= 0 {
        return Verdict::Ok;
    }
    if ret < -MAX_ERRNO {
        return Verdict::Untyped;
    }
    let Some(e) = Errno::from_code(-ret as i32) else {
        return Verdict::Untyped;
    };
    let documented = match usize::try_from(number).ok().and_then(exo_abi::info) {
        Some(info) => {
            // Every error must be its row's (until 2026-12-05 `thread_create`'s `ENOSYS`
            // was forgiven from before threads existed: a kernel that lost them passed).
            info.may_fail_with(e)
        }
        None => e == Errno::ENOSYS,
    };
    if documented {
        Verdict::Error(e)
    } else {
        Verdict::Undocumented(e)
    }
}

/// `true` when a value the kernel returned as a success is impossible for the call with
/// these arguments (the checks that need no state: the program adds those that do).
pub fn bad_success(number: u64, a: &[u64; 6], ret: i64) -> bool {
    if ret < 0 {
        return false;
    }
    let r = ret as u64;
    match usize::try_from(number).ok().and_then(exo_abi::info) {
        None => true, // an unknown number must fail with ENOSYS
        Some(info) => match info.number {
            nr::WRITE => r > a[2],
            nr::MMAP => {
                !r.is_multiple_of(PAGE)
                    || r < USER_MIN
                    || r.checked_add(a[1]).is_none_or(|e| e > USER_END)
                    || (a[3] & 0x10 != 0 && r != a[0])
                    // Private and anonymous, and no flag besides MAP_FIXED and MAP_LAZY.
                    || a[3] & 0x22 != 0x22
                    || a[3] & !(0x32 | u64::from(exo_abi::MAP_LAZY)) != 0
                    // The ABI: fd -1 (an int) and offset 0, else EINVAL.
                    || a[4] as u32 != u32::MAX
                    || a[5] != 0
            }
            nr::MPROTECT | nr::SCHED_YIELD | nr::NANOSLEEP | nr::SCHED_SETAFFINITY => r != 0,
            nr::CLOCK_GETTIME | nr::GETCPU => r != 0,
            nr::MUNMAP => r != 0,
            nr::FUTEX => match a[1] & !128 {
                0 => r != 0,
                1 => r > a[2] & 0xffff_ffff,
                _ => true,
            },
            nr::SPAWN => r == 0,
            nr::WAIT => r > 0x1ff,
            nr::KILL => r != 0,
            nr::THREAD_JOIN => r > 0xffff_ffff,
            nr::SET_TID_ADDRESS => r == 0,
            nr::IPC_CALL
            | nr::IPC_REPLY_RECV
            | nr::IPC_RECV
            | nr::IPC_SEND
            | nr::IPC_REPLY
            | nr::HANDLE_CLOSE => r != 0,
            nr::ENDPOINT_CREATE => r >= exo_abi::ipc::HANDLES as u64,
            nr::SHM_MAP => !r.is_multiple_of(PAGE) || !(USER_MIN..USER_END).contains(&r),
            // The handle's rights: send, receive or both.
            nr::HANDLE_INFO => r == 0 || r > 3,
            _ => false,
        },
    }
}

/// The echo protocol: each worker serves an endpoint of its own with a server thread, which
/// answers every message with a reply derived from it ([`echo::reply`]); the worker's stream
/// (and its echo children) call it with random messages ([`echo::plan`]), check the result
/// against the contract ([`echo::allowed`]) and the reply against the message
/// ([`echo::check_reply`]). Pure: the program makes the calls.
pub mod echo {
    use super::{IPC_TIMEOUT_MAX, NASTY, Rng, mix};
    use exo_abi::Errno;
    use exo_abi::ipc::{
        HANDLE_RIGHTS_SHIFT, HANDLES, INFO_HANDLE, INFO_HANDLE_LOST, INFO_LEN_SHIFT, INFO_RESERVED,
        INFO_SLOW, INFO_ZC, MSG_MAX,
    };

    /// Label of the message that ends the server (with word 0 [`MAGIC`], no other bit): it
    /// answers, then returns.
    pub const QUIT: u32 = 0xEC40_0001;
    /// Label of the message that puts the server in its deadly mode (a kamikaze worker's
    /// last phase): it answers, then receives with a timeout and ends after
    /// `SERVER_IDLE_ROUNDS` receives in a row that brought nothing.
    pub const DEADLY: u32 = 0xEC40_0002;
    /// Word 0 of the control messages.
    pub const MAGIC: u64 = 0x6563_686F_2166_7A7A;

    /// A control message the server obeys.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Control {
        /// Answer, then end.
        Quit,
        /// Answer, then serve with timeouts.
        Deadly,
    }

    /// The control a received message (its info as delivered) asks for, if any.
    pub fn control(info: u64, words: &[u64; 8]) -> Option<Control> {
        if words[0] != MAGIC || info & !(0xff << INFO_LEN_SHIFT | 0xffff_ffff) != 0 {
            return None;
        }
        match info as u32 {
            QUIT => Some(Control::Quit),
            DEADLY => Some(Control::Deadly),
            _ => None,
        }
    }

    /// The message that asks for control `c`: its info and words.
    pub fn control_message(c: Control) -> (u64, [u64; 8]) {
        let label = match c {
            Control::Quit => QUIT,
            Control::Deadly => DEADLY,
        };
        (exo_abi::ipc::info(label, 8), [MAGIC, 0, 0, 0, 0, 0, 0, 0])
    }

    /// The badge of the echo endpoint of the worker with `seed` (never 0: a reply's).
    pub const fn badge(seed: u32) -> u64 {
        mix(seed as u64 ^ 0xEC40_BAD6E) | 1
    }

    /// The seed of echo child `index` of the worker with `seed`.
    pub const fn child_seed(seed: u32, index: u32) -> u64 {
        mix((seed as u64) << 10 | index as u64 ^ 0xC41D_0000_0000)
    }

    /// Word `i` of a reply: word `i` of the message, scrambled with the badge.
    pub const fn scramble(x: u64, i: usize, badge: u64) -> u64 {
        x.rotate_left(8 * i as u32 + 5) ^ badge ^ mix(0xEC40 + i as u64)
    }

    /// The label of the reply to a message with `label`.
    pub const fn reply_label(label: u32) -> u32 {
        label.rotate_left(7) ^ 0x5EED_EC40
    }

    /// The server's reply to a message received with `info` (as delivered), `badge` and
    /// `words`: its info and words. Length `64 - len`, no zero-copy or slow bit; words 0..5
    /// scrambled ([`scramble`]), word 5 the info received; a handle the message brought
    /// (`INFO_HANDLE`: word 7) goes back with all its rights (`INFO_HANDLE`, word 7 that
    /// handle; the server closes its own once the reply went), else words 6 and 7
    /// scrambled too (after `INFO_HANDLE_LOST` they were 0 and `u64::MAX`).
    pub fn reply(info: u64, badge: u64, words: &[u64; 8]) -> (u64, [u64; 8]) {
        let len = (MSG_MAX as u64).saturating_sub((info >> INFO_LEN_SHIFT) & 0xff);
        let mut out = [0u64; 8];
        for (i, w) in out.iter_mut().enumerate().take(5) {
            *w = scramble(words[i], i, badge);
        }
        out[5] = info;
        let handle = info & INFO_HANDLE != 0;
        if handle {
            out[7] = exo_abi::ipc::handle_word(words[7] as u32, 0);
        } else {
            out[6] = scramble(words[6], 6, badge);
            out[7] = scramble(words[7], 7, badge);
        }
        let info = u64::from(reply_label(info as u32))
            | len << INFO_LEN_SHIFT
            | if handle { INFO_HANDLE } else { 0 };
        (info, out)
    }

    /// What the caller knows of a handle it passes (word 7 with `INFO_HANDLE`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Passed {
        /// No `INFO_HANDLE`.
        No,
        /// One of its own with rights it has: the receiver's handle gets these rights.
        Good(u64),
        /// The kernel must refuse it with this error (no such handle, rights it lacks).
        Bad(Errno),
        /// A handle it does not track (the stream's): any of these.
        Unknown,
    }

    /// What the caller knows of a zero-copy descriptor (words 0 and 1 with `INFO_ZC`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Zc {
        /// No `INFO_ZC`.
        No,
        /// Inside the endpoint's region, whose size it knows.
        Fits,
        /// Outside it (`ERANGE`).
        Outside,
        /// The caller does not know the region (the stream may have made one).
        Unknown,
    }

    /// One call to the echo server.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Plan {
        /// `ipc_send` (no reply) rather than `ipc_call`.
        pub send: bool,
        /// The info word, as passed (`INFO_SLOW` and invalid bits included).
        pub info: u64,
        /// The eight words.
        pub words: [u64; 8],
        /// Timeout in ns (`rbx`; 0: none).
        pub timeout: u64,
        /// The descriptor, if any.
        pub zc: Zc,
        /// The handle passed, if any.
        pub passed: Passed,
    }

    /// Whether descriptor `off, len` lies inside a region of `region` bytes (the kernel's
    /// `zc_fits`: `off + len <= region`, nothing wrapping).
    pub const fn zc_fits(region: u64, off: u64, len: u64) -> bool {
        match off.checked_add(len) {
            Some(end) => end <= region,
            None => false,
        }
    }

    /// A random call through a handle of the caller with the send right. `own`: handles
    /// the caller holds and their rights (the ones a passed handle is drawn from);
    /// `region`: the size of the endpoint's shared region when the caller knows it;
    /// `timed`: every call gets a timeout (up to `max_timeout` ns; otherwise 3 in 4 get none).
    pub fn plan(
        r: &mut Rng,
        own: &[(u32, u64)],
        region: Option<u64>,
        timed: bool,
        max_timeout: u64,
    ) -> Plan {
        let label = r.next_u64() as u32;
        let len = r.pick(&[0u64, 8, 24, 64, 64, 64, 64, 33, 65, 128, 255]);
        let mut info = u64::from(label) | len << INFO_LEN_SHIFT;
        let mut words = [0u64; 8];
        for w in &mut words {
            *w = if r.chance(1, 2) {
                r.next_u64()
            } else {
                r.pick(NASTY)
            };
        }
        if words[0] == MAGIC {
            words[0] ^= 1;
        }
        if r.chance(1, 4) {
            info |= INFO_SLOW;
        }
        let mut zc = Zc::No;
        if r.chance(1, 8) {
            info |= INFO_ZC;
            match region {
                Some(size) if r.chance(2, 3) => {
                    // Inside (mostly), or right at its end, or one past it.
                    words[0] = r.below(size + 1);
                    words[1] = match r.below(4) {
                        0 => size - words[0],
                        1 => size - words[0] + 1,
                        _ => r.below(size - words[0] + 1),
                    };
                }
                _ => {
                    words[0] = r.pick(&[0, 0, 8, 4096, u64::MAX]);
                    words[1] = r.pick(&[0, 8, 4096, 1 << 20, u64::MAX]);
                }
            }
            zc = match region {
                Some(size) if zc_fits(size, words[0], words[1]) => Zc::Fits,
                Some(_) => Zc::Outside,
                None => Zc::Unknown,
            };
        }
        let mut passed = Passed::No;
        if r.chance(1, 4) {
            info |= INFO_HANDLE;
            let (word, p) = pass_word(r, own);
            words[7] = word;
            passed = p;
        }
        if r.chance(1, 24) {
            // A reserved bit, or INFO_HANDLE_LOST (receipt only): EINVAL.
            info |= 1 << (42 + r.below(21));
        }
        let timeout = if timed || r.chance(1, 4) {
            1 + r.below(max_timeout.max(1))
        } else {
            0
        };
        Plan {
            send: r.chance(1, 8),
            info,
            words,
            timeout,
            zc,
            passed,
        }
    }

    /// Word 7 of a message passing a handle, and what the kernel must make of it.
    fn pass_word(r: &mut Rng, own: &[(u32, u64)]) -> (u64, Passed) {
        let rights_word = |h: u32, rights: u64| u64::from(h) | rights << HANDLE_RIGHTS_SHIFT;
        match r.below(8) {
            0..=3 if !own.is_empty() => {
                // One of its own, with all its rights (0), or some, or more than it has.
                let (h, held) = r.pick(own);
                let want = r.below(4);
                let give = if want == 0 { held } else { want };
                let p = if give & !held == 0 {
                    Passed::Good(give)
                } else {
                    Passed::Bad(Errno::EPERM)
                };
                (rights_word(h, want), p)
            }
            4 if !own.is_empty() => {
                // Rights beyond the two bits: EPERM.
                let (h, _) = r.pick(own);
                (
                    rights_word(h, 1 << (2 + r.below(30))),
                    Passed::Bad(Errno::EPERM),
                )
            }
            5 => {
                // No such handle: out of the table, or beyond 32 bits.
                let h = r.pick(&[HANDLES as u32, HANDLES as u32 + 1, u32::MAX, 1 << 31]);
                (rights_word(h, r.below(4)), Passed::Bad(Errno::EBADF))
            }
            _ => {
                let w = super::ipc_handle_word(r);
                let (h, want) = (w as u32, w >> HANDLE_RIGHTS_SHIFT);
                let p = match own.iter().find(|&&(o, _)| o == h) {
                    _ if h as usize >= HANDLES => Passed::Bad(Errno::EBADF),
                    Some(&(_, held)) => {
                        let give = if want == 0 { held } else { want };
                        if give & !held == 0 {
                            Passed::Good(give)
                        } else {
                            Passed::Bad(Errno::EPERM)
                        }
                    }
                    None => Passed::Unknown,
                };
                (w, p)
            }
        }
    }

    /// Whether result `r` of the call `p` (through a handle with the send right, to an
    /// endpoint whose server is alive and the only receiver, which answers every call) is
    /// one the contract allows. The kernel checks, in order: the info (`EINVAL`,
    /// `EMSGSIZE`), the descriptor (`ERANGE`), the passed handle (`EBADF`, `EPERM`); a
    /// message it takes is answered, unless the timeout passes first (`ETIMEDOUT`).
    pub fn allowed(p: &Plan, r: Result<(), Errno>) -> bool {
        if p.info & INFO_RESERVED != 0 {
            return r == Err(Errno::EINVAL);
        }
        if (p.info >> INFO_LEN_SHIFT) & 0xff > MSG_MAX as u64 {
            return r == Err(Errno::EMSGSIZE);
        }
        if p.info & INFO_ZC != 0 {
            match p.zc {
                Zc::Outside => return r == Err(Errno::ERANGE),
                Zc::Unknown if r == Err(Errno::ERANGE) => return true,
                _ => {}
            }
        }
        if p.info & INFO_HANDLE != 0 {
            match p.passed {
                Passed::Bad(e) => return r == Err(e),
                Passed::Unknown if matches!(r, Err(Errno::EBADF | Errno::EPERM)) => return true,
                _ => {}
            }
        }
        r.is_ok() || (p.timeout != 0 && r == Err(Errno::ETIMEDOUT))
    }

    /// Whether the plan's message must be answered (the kernel cannot refuse it).
    pub fn must_succeed(p: &Plan) -> bool {
        p.timeout == 0
            && allowed(p, Ok(()))
            && [
                Errno::EINVAL,
                Errno::EMSGSIZE,
                Errno::ERANGE,
                Errno::EBADF,
                Errno::EPERM,
            ]
            .iter()
            .all(|&e| !allowed(p, Err(e)))
    }

    /// Checks the reply a call got (`info` and `rdi` the registers after it, `words` the
    /// eight words) against the message sent (`p`, through a handle with `badge`). Returns
    /// the handle the reply brought (the caller's to close), or what is wrong.
    pub fn check_reply(
        p: &Plan,
        badge: u64,
        info: u64,
        rdi: u64,
        words: &[u64; 8],
    ) -> Result<Option<u32>, &'static str> {
        let sent = p.info & !INFO_SLOW;
        // What the server may have received: the handle, or its loss (its table full).
        let received = words[5];
        let handle_in = sent & INFO_HANDLE != 0;
        let lost = handle_in && received == (sent & !INFO_HANDLE) | INFO_HANDLE_LOST;
        if received != sent && !lost {
            return Err("word 5 (the info the server received)");
        }
        if rdi != 0 {
            return Err("rdi (a reply's badge is 0)");
        }
        let len = (MSG_MAX as u64).saturating_sub((sent >> INFO_LEN_SHIFT) & 0xff);
        let base = u64::from(reply_label(sent as u32)) | len << INFO_LEN_SHIFT;
        let back = handle_in && !lost;
        let expect_info = if back {
            [base | INFO_HANDLE, base | INFO_HANDLE_LOST]
        } else {
            [base, base]
        };
        if !expect_info.contains(&info) {
            return Err("info (label, length, bits)");
        }
        for (i, &w) in p.words.iter().enumerate().take(5) {
            if words[i] != scramble(w, i, badge) {
                return Err("words 0..5");
            }
        }
        if lost {
            if words[6] != scramble(0, 6, badge) || words[7] != scramble(u64::MAX, 7, badge) {
                return Err("words 6 and 7 (after a lost handle)");
            }
            return Ok(None);
        }
        if !back {
            if words[6] != scramble(p.words[6], 6, badge)
                || words[7] != scramble(p.words[7], 7, badge)
            {
                return Err("words 6 and 7");
            }
            return Ok(None);
        }
        if info & INFO_HANDLE_LOST != 0 {
            // The caller's table was full when the handle came back.
            return if words[6] == 0 && words[7] == u64::MAX {
                Ok(None)
            } else {
                Err("words 6 and 7 (a lost handle)")
            };
        }
        let rights_ok = match p.passed {
            Passed::Good(r) => words[6] == r,
            _ => (1..=3).contains(&words[6]),
        };
        if !rights_ok {
            return Err("word 6 (the rights of the handle back)");
        }
        if words[7] >= HANDLES as u64 {
            return Err("word 7 (the handle back)");
        }
        Ok(Some(words[7] as u32))
    }

    /// The longest timeout the stream's calls to the server carry outside the deadly phase.
    pub const TIMEOUT_MAX: u64 = IPC_TIMEOUT_MAX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_errors_are_documented() {
        // What a message with INFO_HANDLE (or INFO_HANDLE_LOST) can fail with, on every
        // call that sends one: a bad handle, rights it lacks, the receipt-only bit.
        for n in [
            nr::IPC_CALL,
            nr::IPC_REPLY_RECV,
            nr::IPC_SEND,
            nr::IPC_REPLY,
        ] {
            for e in [Errno::EBADF, Errno::EPERM, Errno::EINVAL] {
                assert_eq!(
                    classify(n as u64, -(e.code() as i64)),
                    Verdict::Error(e),
                    "{n} {e}"
                );
            }
        }
    }

    #[test]
    fn handle_words_cover_the_table_and_rights() {
        let mut r = Rng::new(7);
        let (mut handles, mut rights, mut wild) = (0u128, 0u8, 0);
        for _ in 0..10_000 {
            let w = ipc_handle_word(&mut r);
            let h = w as u32;
            assert!(h <= exo_abi::ipc::HANDLES as u32 + 1);
            handles |= 1 << h;
            match w >> exo_abi::ipc::HANDLE_RIGHTS_SHIFT {
                x @ 0..=3 => rights |= 1 << x,
                _ => wild += 1,
            }
        }
        assert_eq!(handles, (1 << 66) - 1, "every handle 0..=65");
        assert_eq!(rights, 0xf, "rights 0..=3");
        assert!(wild > 0, "rights beyond the two bits");
    }

    mod echo_model {
        use super::super::Rng;
        use super::super::echo::*;
        use exo_abi::Errno;
        use exo_abi::ipc as abi;

        /// The caller's table in the model: its own handles (tracked), and one it does not
        /// track (the stream's: receive right only).
        const TABLE: [(u32, u64); 3] = [(0, 3), (5, 1), (9, 2)];
        const OWN: [(u32, u64); 2] = [(0, 3), (5, 1)];

        /// What the kernel and the server do with plan `p` (the contract of `ipc_call` and
        /// handle passing, docs/syscalls.md): the registers the caller gets back.
        fn model(
            p: &Plan,
            region: Option<u64>,
            badge: u64,
            room: (bool, bool),
        ) -> Result<(u64, u64, [u64; 8]), Errno> {
            let info = p.info;
            if info & abi::INFO_RESERVED != 0 {
                return Err(Errno::EINVAL);
            }
            if abi::len_of(info) as usize > abi::MSG_MAX {
                return Err(Errno::EMSGSIZE);
            }
            if info & abi::INFO_ZC != 0
                && !region.is_some_and(|r| zc_fits(r, p.words[0], p.words[1]))
            {
                return Err(Errno::ERANGE);
            }
            let mut w = p.words;
            let mut rx = info & !abi::INFO_SLOW;
            let mut give = 0;
            if info & abi::INFO_HANDLE != 0 {
                let h = w[7] as u32;
                let want = (w[7] >> 32) & 0xffff_ffff;
                let held = TABLE.iter().find(|t| t.0 == h).ok_or(Errno::EBADF)?.1;
                give = if want == 0 { held } else { want };
                if give & !held != 0 || give & !3 != 0 {
                    return Err(Errno::EPERM);
                }
                if room.0 {
                    (w[6], w[7]) = (give, 20);
                } else {
                    rx = rx & !abi::INFO_HANDLE | abi::INFO_HANDLE_LOST;
                    (w[6], w[7]) = (0, u64::MAX);
                }
            }
            let (mut rinfo, mut rw) = reply(rx, badge, &w);
            if rinfo & abi::INFO_HANDLE != 0 {
                if room.1 {
                    (rw[6], rw[7]) = (give, 21);
                } else {
                    rinfo = rinfo & !abi::INFO_HANDLE | abi::INFO_HANDLE_LOST;
                    (rw[6], rw[7]) = (0, u64::MAX);
                }
            }
            Ok((rinfo, 0, rw))
        }

        #[test]
        fn every_planned_call_is_judged_as_the_contract_says() {
            let badge = badge(42);
            let mut r = Rng::new(3);
            let (mut ok, mut must, mut back, mut lost, mut zc_fit) = (0, 0, 0, 0, 0);
            let mut seen_passed = [0u32; 4];
            let mut seen_zc = [0u32; 4];
            for k in 0..200_000u64 {
                let known = k % 2 == 0;
                let size = (1 + r.below(8)) * 4096;
                // The region the endpoint really has: the one the caller knows, or (unknown
                // to it) none or one the stream made.
                let region = if known {
                    Some(size)
                } else {
                    [None, Some(size)][r.below(2) as usize]
                };
                let p = plan(&mut r, &OWN, known.then_some(size), k % 5 == 0, 100_000);
                seen_passed[match p.passed {
                    Passed::No => 0,
                    Passed::Good(_) => 1,
                    Passed::Bad(_) => 2,
                    Passed::Unknown => 3,
                }] += 1;
                seen_zc[match p.zc {
                    Zc::No => 0,
                    Zc::Fits => 1,
                    Zc::Outside => 2,
                    Zc::Unknown => 3,
                }] += 1;
                assert_eq!(p.zc != Zc::No, p.info & abi::INFO_ZC != 0);
                assert_eq!(p.passed != Passed::No, p.info & abi::INFO_HANDLE != 0);
                assert_eq!(control(p.info & !abi::INFO_SLOW, &p.words), None, "{p:?}");
                if k % 5 == 0 {
                    assert_ne!(p.timeout, 0);
                }
                let room = (r.chance(7, 8), r.chance(7, 8));
                let got = model(&p, region, badge, room);
                assert!(allowed(&p, got.map(|_| ())), "{p:?} {got:?}");
                if must_succeed(&p) {
                    must += 1;
                    assert!(got.is_ok(), "{p:?} {got:?}");
                }
                let Ok((info, rdi, words)) = got else {
                    continue;
                };
                ok += 1;
                if p.zc == Zc::Fits {
                    zc_fit += 1;
                }
                match check_reply(&p, badge, info, rdi, &words) {
                    Ok(Some(h)) => {
                        back += 1;
                        assert_eq!(h, 21);
                    }
                    Ok(None) => {
                        lost += u32::from(p.passed != Passed::No);
                    }
                    Err(what) => panic!("{what}: {p:?} {info:#x} {words:x?}"),
                }
                // Any change to the info or words 0..6 is seen (word 7 may be any handle).
                let bit = r.below(64);
                let mut bad = words;
                bad[r.below(6) as usize] ^= 1 << bit;
                assert!(check_reply(&p, badge, info, rdi, &bad).is_err());
                assert!(check_reply(&p, badge, info ^ 1 << bit, rdi, &words).is_err());
                assert!(check_reply(&p, badge, info, 1, &words).is_err());
                assert!(check_reply(&p, badge ^ 2, info, rdi, &words).is_err());
            }
            assert!(seen_passed.iter().all(|&n| n > 1000), "{seen_passed:?}");
            assert!(seen_zc.iter().all(|&n| n > 1000), "{seen_zc:?}");
            assert!(ok > 100_000 && must > 60_000, "{ok} {must}");
            assert!(
                back > 5000 && lost > 1000 && zc_fit > 1000,
                "{back} {lost} {zc_fit}"
            );
        }

        #[test]
        fn results_outside_the_contract_are_refused() {
            let mut r = Rng::new(9);
            for _ in 0..10_000 {
                let p = plan(&mut r, &OWN, Some(8192), false, 100_000);
                if must_succeed(&p) {
                    for e in [
                        Errno::ETIMEDOUT,
                        Errno::EPIPE,
                        Errno::ECONNRESET,
                        Errno::EBADF,
                    ] {
                        assert!(!allowed(&p, Err(e)), "{p:?} {e}");
                    }
                }
                if p.timeout == 0 {
                    assert!(!allowed(&p, Err(Errno::ETIMEDOUT)));
                }
                if p.info & abi::INFO_RESERVED != 0 {
                    assert!(!allowed(&p, Ok(())));
                }
            }
        }

        #[test]
        fn control_messages_are_recognised_as_delivered() {
            for c in [Control::Quit, Control::Deadly] {
                let (info, words) = control_message(c);
                assert_eq!(control(info, &words), Some(c));
                let mut w = words;
                w[0] ^= 1;
                assert_eq!(control(info, &w), None);
                assert_eq!(control(info | abi::INFO_HANDLE, &words), None);
                // The reply to one is checked like any other.
                let p = Plan {
                    send: false,
                    info,
                    words,
                    timeout: 0,
                    zc: Zc::No,
                    passed: Passed::No,
                };
                let (rinfo, rw) = reply(info, badge(1), &words);
                assert_eq!(check_reply(&p, badge(1), rinfo, 0, &rw), Ok(None));
            }
            assert_ne!(badge(0), 0);
            assert_ne!(child_seed(1, 0), child_seed(1, 1));
            assert!(zc_fits(4096, 0, 4096) && zc_fits(4096, 4096, 0));
            assert!(!zc_fits(4096, 1, 4096) && !zc_fits(4096, u64::MAX, 2));
        }
    }

    #[test]
    fn rng_is_deterministic_and_spreads() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..1000).map(|_| a.next_u64()).collect();
        assert!(xs.iter().all(|&x| x == b.next_u64()));
        let mut c = Rng::new(43);
        assert_ne!(xs[0], c.next_u64());
        let mut hist = [0u32; 10];
        let mut r = Rng::new(7);
        for _ in 0..100_000 {
            hist[r.below(10) as usize] += 1;
        }
        assert!(
            hist.iter().all(|&h| (9_000..11_000).contains(&h)),
            "{hist:?}"
        );
    }

    #[test]
    fn arg_round_trips() {
        let modes = [
            Mode::Coordinator(Coordinator {
                kcalls_per_cpu: 300,
                gen_kcalls: 20,
                no_span_cap: false,
                seed: 0xdead_beef,
            }),
            Mode::Coordinator(Coordinator {
                kcalls_per_cpu: 0x7f_ffff,
                gen_kcalls: 63,
                no_span_cap: true,
                seed: 1,
            }),
            Mode::Worker(Worker {
                cpu: 4095,
                kamikaze: true,
                no_span_cap: false,
                units: 250,
                seed: 99,
            }),
            Mode::Worker(Worker {
                cpu: 3,
                kamikaze: false,
                no_span_cap: true,
                units: 0xffff,
                seed: u32::MAX,
            }),
            Mode::EchoChild(EchoChild {
                handle: 63,
                rights: 1,
                calls: 63,
                unpin: true,
                region_pages: 31,
                index: 1023,
                seed: u32::MAX,
            }),
            Mode::EchoChild(EchoChild {
                handle: 0,
                rights: 3,
                calls: 1,
                unpin: false,
                region_pages: 0,
                index: 5,
                seed: 7,
            }),
        ];
        for m in modes {
            assert_eq!(Mode::decode(m.encode()), Some(m));
        }
        assert_eq!(
            Mode::decode(0),
            Some(Mode::Coordinator(Coordinator {
                kcalls_per_cpu: DEFAULT_KCALLS,
                gen_kcalls: DEFAULT_GEN_KCALLS,
                no_span_cap: false,
                seed: 0
            }))
        );
        assert!(matches!(Mode::decode(2), Some(Mode::EchoChild(_))));
        assert_eq!(Mode::decode(3), None);
    }

    #[test]
    fn kamikaze_point_is_inside_the_budget() {
        for s in 0..10_000u32 {
            for budget in [64u64, 1000, 16_384] {
                let k = kamikaze_at(s, budget);
                assert!(k >= budget / 2 && k <= budget, "{s} {budget} {k}");
            }
        }
        assert!(!is_kamikaze(5, 0));
        let n = (0..1000)
            .filter(|&s| is_kamikaze(worker_seed(1, 0, s), s))
            .count();
        assert!((150..350).contains(&n), "{n}");
    }

    #[test]
    fn numbers_cover_the_table_and_beyond() {
        let mut r = Rng::new(1);
        let mut seen = std::collections::BTreeSet::new();
        let mut high = 0;
        for _ in 0..100_000 {
            let n = pick_nr(&mut r);
            if n >= NR_LIMIT {
                high += 1;
            }
            seen.insert(n);
        }
        for s in exo_abi::SYSCALLS {
            assert!(seen.contains(&(s.number as u64)), "{}", s.name);
        }
        assert!(IMPLEMENTED.len() == exo_abi::SYSCALLS.len());
        assert!(high > 100 && seen.len() > 1000, "{high} {}", seen.len());
    }

    #[test]
    fn touched_range_follows_the_contract() {
        assert_eq!(touched_range(0x40_0000, 1), Some((0x40_0000, 0x40_1000)));
        assert_eq!(touched_range(0x40_0001, 1), None);
        assert_eq!(touched_range(0x40_0000, 0), None);
        assert_eq!(touched_range(0x1000, 4096), None);
        assert_eq!(
            touched_range(LAST_USER_PAGE, 4096),
            Some((LAST_USER_PAGE, USER_END))
        );
        assert_eq!(touched_range(LAST_USER_PAGE, 4097), None);
        assert_eq!(touched_range(USER_MIN, u64::MAX), None);
        assert_eq!(touched_range(USER_MIN, u64::MAX - 4095), None);
        assert_eq!(touched_range(KERNEL_IMAGE, 4096), None);
        assert!(overlaps(0, 10, 9, 20) && !overlaps(0, 10, 10, 20));
    }

    #[test]
    fn results_are_classified() {
        assert_eq!(classify(nr::WRITE as u64, 5), Verdict::Ok);
        assert_eq!(
            classify(nr::WRITE as u64, -14),
            Verdict::Error(Errno::EFAULT)
        );
        assert_eq!(
            classify(nr::WRITE as u64, -22),
            Verdict::Undocumented(Errno::EINVAL)
        );
        assert_eq!(classify(nr::WRITE as u64, -6), Verdict::Untyped); // ENXIO: not ours
        assert_eq!(classify(nr::WRITE as u64, -5000), Verdict::Untyped);
        assert_eq!(classify(1000, -38), Verdict::Error(Errno::ENOSYS));
        assert_eq!(classify(1000, -22), Verdict::Undocumented(Errno::EINVAL));
        assert_eq!(classify(u64::MAX, -38), Verdict::Error(Errno::ENOSYS));
        // Threads exist: `thread_create` answering ENOSYS is not its row's.
        assert_eq!(
            classify(nr::THREAD_CREATE as u64, -38),
            Verdict::Undocumented(Errno::ENOSYS)
        );
        assert!(bad_success(1000, &[0; 6], 0));
        assert!(bad_success(nr::WRITE as u64, &[1, 0, 4, 0, 0, 0], 5));
        assert!(!bad_success(nr::WRITE as u64, &[1, 0, 4, 0, 0, 0], 4));
        assert!(bad_success(
            nr::MMAP as u64,
            &[0, 4096, 3, 0x22, 0, 0],
            0x1234
        ));
        assert!(!bad_success(
            nr::MMAP as u64,
            &[0, 4096, 3, 0x22, u64::MAX, 0],
            0x10_0000_0000
        ));
        // Success with fd 0 or a non-zero offset breaks the ABI (EINVAL).
        assert!(bad_success(
            nr::MMAP as u64,
            &[0, 4096, 3, 0x22, 0, 0],
            0x10_0000_0000
        ));
        assert!(bad_success(
            nr::MMAP as u64,
            &[0, 4096, 3, 0x22, u64::MAX, 4096],
            0x10_0000_0000
        ));
        assert!(bad_success(
            nr::MMAP as u64,
            &[0x20_0000_0000, 4096, 3, 0x32, 0, 0],
            0x10_0000_0000
        ));
        // MAP_LAZY is a flag of the ABI; any other bit, or no MAP_ANONYMOUS, is EINVAL.
        assert!(!bad_success(
            nr::MMAP as u64,
            &[0, 4096, 3, 0x100_0022, u64::MAX, 0],
            0x10_0000_0000
        ));
        for flags in [0x300_0022, 0x4022, 0x02, 0x100_0002] {
            assert!(
                bad_success(
                    nr::MMAP as u64,
                    &[0, 4096, 3, flags, u64::MAX, 0],
                    0x10_0000_0000
                ),
                "{flags:#x}"
            );
        }
        assert!(bad_success(nr::WAIT as u64, &[0; 6], 0x200));
    }
}
