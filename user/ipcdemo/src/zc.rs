//! Cases 6 and 7: zero-copy messages through an endpoint's shared region (`shm_map`,
//! `INFO_ZC` descriptors) and batches of 16 messages of 64 bytes in one call (written into
//! the region, named by one descriptor), with the server role `ZC` answering both.

use super::{BADGE, LABEL_QUIT, MS, ROLE, endpoint, expect};
use exo_rt::{Errno, ExitStatus, IpcMsg, eprintln, println};

/// Server mode: zero-copy and batch server.
pub const ZC: u64 = 4;
/// The mode of a process that creates a region on the endpoint it is given (case 6's
/// last step): exit 0 if it could, 1 on `EEXIST`, 2 on another error.
pub const ZC_MAKE: u64 = 11;
/// The role that maps an endpoint's region and touches its 64 KiB (`cover_role`).
pub const ZC_COVER: u64 = 13;
/// Region size of the cases (64 KiB).
pub const REGION: u64 = 64 * 1024;
const KIB: u64 = 1024;
const LABEL_ZC: u32 = 0x200;
const LABEL_BATCH: u32 = 0x300;
const LABEL_FAIL: u32 = 0xfa1;
const ROUNDS: u64 = 200;
const BATCHES: u64 = 100;
/// Messages per batch and their size.
pub const BATCH_N: u64 = 16;
pub const BATCH_SLOT: u64 = 64;

fn fnv(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x).wrapping_mul(0x100_0000_01b3)
    })
}

fn mix(a: u64, b: u64) -> u64 {
    (a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(23)
}

/// The words `off..off + len` of the region at `base` (len a multiple of 8).
///
/// # Safety
/// `base` is a mapping of the region and the range lies inside it; nobody writes it meanwhile.
unsafe fn words<'a>(base: *mut u8, off: u64, len: u64) -> &'a mut [u64] {
    // SAFETY: as the caller promises (the region is page-aligned, so is every 8-byte offset).
    unsafe {
        core::slice::from_raw_parts_mut(base.add(off as usize).cast::<u64>(), len as usize / 8)
    }
}

/// One 64-byte batch message: its global sequence number, derived words, the checksum.
fn batch_msg(seq: u64) -> [u64; 8] {
    let mut w = [0u64; 8];
    w[0] = seq;
    for (k, x) in w.iter_mut().enumerate().take(7).skip(1) {
        *x = mix(seq, k as u64);
    }
    w[7] = fnv(&w[..7]);
    w
}

/// The server role: maps the region of `h`, answers zero-copy and batch calls until QUIT.
/// Exit 0 if every request checked out.
pub fn server(h: u32) -> i32 {
    let base = match exo_rt::shm_map(h, 0) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ipcdemo zc server: shm_map: {e}");
            return 2;
        }
    };
    let mut bad = 0u32;
    let mut next_seq = 0u64;
    let mut m = match exo_rt::ipc_recv(h, 0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ipcdemo zc server: recv: {e}");
            return 3;
        }
    };
    loop {
        let reply = match m.label {
            LABEL_QUIT => {
                let _ = exo_rt::ipc_reply(&IpcMsg::new(LABEL_QUIT, [0; 8]));
                return i32::from(bad != 0) * 5;
            }
            LABEL_ZC if m.zc && m.badge == BADGE => {
                let (off, len) = (m.words[0], m.words[1]);
                // SAFETY: the kernel checked the descriptor against the region; the client
                // waits for the reply.
                let w = unsafe { words(base, off, len) };
                if fnv(w) != m.words[2] {
                    bad += 1;
                    IpcMsg::new(LABEL_FAIL, [0; 8])
                } else {
                    w.iter_mut().for_each(|x| *x = !*x);
                    IpcMsg::zc(LABEL_ZC + 1, off, len, [fnv(w), 0, 0, 0, 0, 0])
                }
            }
            LABEL_BATCH if m.zc && m.words[1] == BATCH_N * BATCH_SLOT => {
                // SAFETY: as above.
                let w = unsafe { words(base, m.words[0], m.words[1]) };
                let mut digest = 0u64;
                let mut n = 0u64;
                for slot in w.chunks_exact(8) {
                    if slot[0] != next_seq
                        || slot[7] != fnv(&slot[..7])
                        || slot[1] != mix(slot[0], 1)
                    {
                        bad += 1;
                        break;
                    }
                    digest = mix(digest, slot[7]);
                    next_seq += 1;
                    n += 1;
                }
                IpcMsg::new(LABEL_BATCH + 1, [n, digest, 0, 0, 0, 0, 0, 0])
            }
            _ => {
                bad += 1;
                IpcMsg::new(LABEL_FAIL, [0; 8])
            }
        };
        m = match exo_rt::ipc_reply_recv(h, &reply, 0) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ipcdemo zc server: reply_recv: {e}");
                return 6;
            }
        };
    }
}

fn spawn_server(h: u32) -> Result<usize, &'static str> {
    exo_rt::spawn("/ipcdemo", ROLE << 56 | ZC << 48 | u64::from(h))
        .map_err(|_| "spawn of the zc server")
}

fn quit(h: u32, pid: usize) -> Result<(), &'static str> {
    match exo_rt::ipc_call(h, &IpcMsg::new(LABEL_QUIT, [0; 8]), 0) {
        Ok(m) if m.label == LABEL_QUIT => {}
        _ => return Err("quit call"),
    }
    match exo_rt::wait(pid) {
        Ok(ExitStatus::Exited(0)) => Ok(()),
        _ => Err("the zc server did not exit 0 (it saw a bad request)"),
    }
}

/// Case 6: the region's calls and errors, then `ROUNDS` zero-copy round trips of 1 KiB,
/// each checked on both sides by a checksum over the region's bytes.
pub fn zero_copy() -> Result<(), &'static str> {
    let h = endpoint()?;
    let t = 1_000;
    expect("shm_map of no region", exo_rt::shm_map(h, 0), Errno::ENOENT)?;
    expect(
        "shm_map above 1 MiB",
        exo_rt::shm_map(h, (1 << 20) + 1),
        Errno::EINVAL,
    )?;
    expect(
        "shm_map of an empty handle",
        exo_rt::shm_map(63, 4096),
        Errno::EBADF,
    )?;
    expect(
        "shm_map of handle 2^32",
        exo_rt::shm_map(u32::MAX, 4096),
        Errno::EBADF,
    )?;
    expect(
        "descriptor with no region",
        exo_rt::ipc_call(h, &IpcMsg::zc(LABEL_ZC, 0, 8, [0; 6]), t),
        Errno::ERANGE,
    )?;
    let base = exo_rt::shm_map(h, REGION).map_err(|_| "shm_map create")?;
    expect("second create", exo_rt::shm_map(h, 4096), Errno::EEXIST)?;
    // A second mapping in this process aliases the same frames.
    let alias = exo_rt::shm_map(h, 0).map_err(|_| "shm_map of the existing region")?;
    if alias == base {
        return Err("the second mapping has the first one's address");
    }
    // SAFETY: both are mappings of the 64 KiB region.
    unsafe {
        base.add(4100).write_volatile(0x5a);
        if alias.add(4100).read_volatile() != 0x5a {
            return Err("the two mappings do not share their frames");
        }
        if base.add(REGION as usize - 1).read_volatile() != 0 {
            return Err("a new region is not zeroed");
        }
    }
    // SAFETY: the range is the region's mapping: the kernel must refuse (and if it did
    // not, nothing reads the page again before the check fails the case).
    let r = unsafe { exo_rt::munmap(base as usize, 4096) };
    expect("munmap of the region", r, Errno::EINVAL)?;
    for (what, off, len) in [
        ("descriptor past the end", REGION, 1),
        ("descriptor longer than the region", 0, REGION + 1),
        ("descriptor straddling the end", REGION - 8, 16),
        ("descriptor overflowing", u64::MAX, 2),
        ("descriptor of huge length", 8, u64::MAX),
    ] {
        expect(
            what,
            exo_rt::ipc_call(h, &IpcMsg::zc(LABEL_ZC, off, len, [0; 6]), t),
            Errno::ERANGE,
        )?;
        expect(
            what,
            exo_rt::ipc_send(h, &IpcMsg::zc(LABEL_ZC, off, len, [0; 6]), t),
            Errno::ERANGE,
        )?;
        expect(
            what,
            exo_rt::ipc_reply_recv(h, &IpcMsg::zc(LABEL_ZC, off, len, [0; 6]), t),
            Errno::ERANGE,
        )?;
    }
    expect(
        "zero-copy ipc_reply with no call to answer",
        exo_rt::ipc_reply(&IpcMsg::zc(LABEL_ZC, 0, 8, [0; 6])),
        Errno::ESRCH,
    )?;
    let other = endpoint()?;
    expect(
        "descriptor on an endpoint without a region",
        exo_rt::ipc_call(other, &IpcMsg::zc(LABEL_ZC, 0, 8, [0; 6]), t),
        Errno::ERANGE,
    )?;
    exo_rt::handle_close(other).map_err(|_| "close")?;
    reply_through_another_endpoint(h)?;

    let pid = spawn_server(h)?;
    for i in 0..ROUNDS {
        let off = (i % (REGION / KIB)) * KIB;
        // SAFETY: inside the region; the server only touches it during the call.
        let w = unsafe { words(base, off, KIB) };
        for (k, x) in w.iter_mut().enumerate() {
            *x = mix(i, k as u64);
        }
        let sum = fnv(w);
        let r = exo_rt::ipc_call(h, &IpcMsg::zc(LABEL_ZC, off, KIB, [sum, 0, 0, 0, 0, 0]), 0)
            .map_err(|_| "a zero-copy call failed")?;
        if r.label != LABEL_ZC + 1 || !r.zc || r.words[0] != off || r.words[1] != KIB {
            return Err("a zero-copy reply is not the expected descriptor");
        }
        // SAFETY: as above (the call returned).
        let w = unsafe { words(base, off, KIB) };
        if fnv(w) != r.words[2] || w.iter().enumerate().any(|(k, &x)| x != !mix(i, k as u64)) {
            return Err("the region does not hold the server's answer");
        }
    }
    quit(h, pid)?;
    exo_rt::handle_close(h).map_err(|_| "close")?;
    a_new_region_is_as_large_as_the_last()?;
    a_failed_create_leaves_no_region()?;
    println!(
        "ipcdemo 6: {ROUNDS} zero-copy round trips of 1 KiB: checksums and contents checked; bad descriptors ERANGE; a failed create leaves no region"
    );
    Ok(())
}

/// With this process's shared mappings all used (8: three so far, five more here), a
/// `shm_map` that creates a region cannot map it: `ENOMEM`, and the endpoint keeps no
/// region (`ENOENT`), so another process can create one there. Until 2026-12-04 the
/// endpoint kept the dead region's tag and every later create was `EEXIST`.
fn a_failed_create_leaves_no_region() -> Result<(), &'static str> {
    let mut held = [0u32; 5];
    for e in &mut held {
        *e = endpoint()?;
        exo_rt::shm_map(*e, 4096).map_err(|_| "shm_map of a filler region")?;
    }
    let e = endpoint()?;
    expect(
        "shm_map with every shared mapping in use",
        exo_rt::shm_map(e, 4096),
        Errno::ENOMEM,
    )?;
    expect(
        "shm_map of the region a failed create made",
        exo_rt::shm_map(e, 0),
        Errno::ENOENT,
    )?;
    let pid = exo_rt::spawn("/ipcdemo", ROLE << 56 | ZC_MAKE << 48 | u64::from(e))
        .map_err(|_| "spawn of the region maker")?;
    let end = exo_rt::wait(pid);
    for h in held.into_iter().chain([e]) {
        exo_rt::handle_close(h).map_err(|_| "close")?;
    }
    match end {
        Ok(ExitStatus::Exited(0)) => Ok(()),
        Ok(ExitStatus::Exited(1)) => {
            Err("a region could not be created after a failed create: EEXIST (the dead tag stayed)")
        }
        _ => Err("the region maker failed"),
    }
}

/// The `ZC_MAKE` role: creates a region of `pages` pages (0: one) on endpoint `h`.
pub fn make_role(h: u32, pages: u8) -> i32 {
    match exo_rt::shm_map(h, 4096 * u64::from(pages.max(1))) {
        Ok(_) => 0,
        Err(Errno::EEXIST) => 1,
        Err(_) => 2,
    }
}

/// The `ZC_COVER` role: creates a 4 KiB region on endpoint `h` and touches the last word of
/// its first 64 KiB. Exits 0; killed by a #PF if the region is smaller.
pub fn cover_role(h: u32) -> i32 {
    let Ok(base) = exo_rt::shm_map(h, 4096) else {
        return 2;
    };
    // SAFETY: the region is at least as large as any the endpoint had (64 KiB, see
    // `a_new_region_is_as_large_as_the_last`); a smaller one faults here, on purpose.
    unsafe { base.add(0x1_0000 - 8).cast::<u64>().write_volatile(1) };
    0
}

/// A region created on an endpoint whose region died is at least as large as any region
/// the endpoint had: descriptors checked against the old one (the endpoint keeps its bound
/// after the region dies, and a message checked then may still wait in the queue) must lie
/// inside whatever region the receiver maps next. Until 2026-12-04 a 4 KiB region could
/// follow a 1 MiB one, and a server was handed a descriptor outside what it mapped (it
/// faulted, or read other memory of its own). A child makes a 64 KiB region and ends (the
/// region dies); another asks for 4 KiB there and touches 64 KiB.
fn a_new_region_is_as_large_as_the_last() -> Result<(), &'static str> {
    let e = endpoint()?;
    let run = |role: u64, pages: u64| {
        exo_rt::spawn(
            "/ipcdemo",
            ROLE << 56 | role << 48 | pages << 32 | u64::from(e),
        )
        .and_then(exo_rt::wait)
    };
    let made = run(ZC_MAKE, 16);
    let covered = run(ZC_COVER, 0);
    exo_rt::handle_close(e).map_err(|_| "close")?;
    match (made, covered) {
        (Ok(ExitStatus::Exited(0)), Ok(ExitStatus::Exited(0))) => Ok(()),
        (Ok(ExitStatus::Exited(0)), Ok(ExitStatus::Killed(_))) => {
            Err("a region made after a 64 KiB one died was smaller than it (the toucher faulted)")
        }
        _ => Err("the region maker or the toucher failed"),
    }
}

/// A zero-copy reply is checked against the region of the endpoint its call came through
/// (the one the caller mapped), whatever endpoint `ipc_reply_recv` names, and so is one
/// sent by `ipc_reply`: a thread takes a call made through `small` (a 4 KiB region) and
/// answers it with `ipc_reply_recv` on `h` (64 KiB), then takes a second call and answers
/// it with `ipc_reply`. A descriptor past 4 KiB is `ERANGE` both ways; one inside goes to
/// the caller (the first 1 KiB, then 2 KiB).
fn reply_through_another_endpoint(h: u32) -> Result<(), &'static str> {
    let small = endpoint()?;
    exo_rt::shm_map(small, 4096).map_err(|_| "shm_map of the 4 KiB region")?;
    let t = exo_rt::thread::spawn(reply_elsewhere, u64::from(small) | u64::from(h) << 32)
        .map_err(|_| "thread")?;
    let mut got = [None, None];
    for (k, len) in [KIB, 2 * KIB].into_iter().enumerate() {
        let r = exo_rt::ipc_call(small, &IpcMsg::zc(LABEL_ZC, 0, 64, [0; 6]), 5000 * MS);
        if !matches!(r, Ok(a) if a.zc && a.words[0] == 0 && a.words[1] == len) {
            eprintln!("ipcdemo 6: call {k} through the 4 KiB region: {r:?}, expected (0, {len})");
            got[k] = Some(r);
        }
    }
    let code = t.join();
    exo_rt::handle_close(small).map_err(|_| "close")?;
    if got[0].is_some() {
        return Err("the zero-copy reply sent through another endpoint");
    }
    if got[1].is_some() {
        return Err("the zero-copy reply sent by ipc_reply");
    }
    match code {
        Ok(0) => Ok(()),
        Ok(2) => {
            Err("a reply past the caller's region, inside the other endpoint's, was not ERANGE")
        }
        Ok(5) => Err("an ipc_reply past the caller's region was not ERANGE"),
        _ => Err("the thread answering through another endpoint failed"),
    }
}

/// [`reply_through_another_endpoint`]'s thread: `arg = h << 32 | small`.
fn reply_elsewhere(arg: u64) -> i32 {
    let (small, h) = (arg as u32, (arg >> 32) as u32);
    if exo_rt::ipc_recv(small, 5000 * MS).is_err() {
        return 1;
    }
    let reply = |len| exo_rt::ipc_reply_recv(h, &IpcMsg::zc(LABEL_ZC + 1, 0, len, [0; 6]), MS);
    if reply(8 * KIB) != Err(Errno::ERANGE) {
        return 2;
    }
    // Sent; then nothing comes on `h`: the receive times out.
    if reply(KIB) != Err(Errno::ETIMEDOUT) {
        return 3;
    }
    if exo_rt::ipc_recv(small, 5000 * MS).is_err() {
        return 4;
    }
    let reply = |len| exo_rt::ipc_reply(&IpcMsg::zc(LABEL_ZC + 1, 0, len, [0; 6]));
    if reply(8 * KIB) != Err(Errno::ERANGE) {
        return 5;
    }
    match reply(2 * KIB) {
        Ok(()) => 0,
        _ => 6,
    }
}

/// Case 7: `BATCHES` batches of 16 messages of 64 bytes, each written into the region and
/// sent with one call; the server checks order (global sequence numbers) and checksums and
/// answers with the count and a digest. Bad batch descriptors fail with `ERANGE`.
pub fn batches() -> Result<(), &'static str> {
    let h = endpoint()?;
    let base = exo_rt::shm_map(h, REGION).map_err(|_| "shm_map create")?;
    let bytes = BATCH_N * BATCH_SLOT;
    for (what, off) in [
        ("batch past the end", REGION - bytes + 64),
        ("batch at u64::MAX", u64::MAX - 8),
    ] {
        expect(
            what,
            exo_rt::ipc_call(h, &IpcMsg::zc(LABEL_BATCH, off, bytes, [0; 6]), 1_000),
            Errno::ERANGE,
        )?;
    }
    let pid = spawn_server(h)?;
    let mut seq = 0u64;
    for b in 0..BATCHES {
        let off = (b * bytes) % REGION;
        // SAFETY: inside the region.
        let w = unsafe { words(base, off, bytes) };
        let mut digest = 0;
        for slot in w.chunks_exact_mut(8) {
            let m = batch_msg(seq);
            slot.copy_from_slice(&m);
            digest = mix(digest, m[7]);
            seq += 1;
        }
        let r = exo_rt::ipc_call(h, &IpcMsg::zc(LABEL_BATCH, off, bytes, [0; 6]), 0)
            .map_err(|_| "a batch call failed")?;
        if r.label != LABEL_BATCH + 1 || r.words[0] != BATCH_N || r.words[1] != digest {
            eprintln!("ipcdemo 7: batch {b}: reply {r:?}");
            return Err("a batch was not received whole, in order");
        }
    }
    quit(h, pid)?;
    exo_rt::handle_close(h).map_err(|_| "close")?;
    println!(
        "ipcdemo 7: {BATCHES} batches of {BATCH_N} x 64 bytes: all received in order, checked"
    );
    Ok(())
}
