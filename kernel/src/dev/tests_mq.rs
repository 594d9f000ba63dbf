//! Multi-queue tests (`scripts/qemu.sh --net tap-mq`: NIC 0 with one queue pair per CPU on a
//! multi-queue tap, NIC 1 with one pair, both on a host bridge; skipped without it).
//!
//! Each queue pair belongs to one CPU: a thread pinned there takes it and drives it alone.
//! 1. Transmit: every CPU sends its own frames on its own pair at the same time; NIC 1 gets
//!    every frame of every CPU exactly once, payload intact.
//! 2. Receive: NIC 1 sends frames of many UDP flows; the host's flow hash spreads them over
//!    NIC 0's queues; each CPU receives on its own pair; together they get every frame once,
//!    and more than one queue saw traffic.

use super::net::{self, NetDevice, QueuePair};
use super::tests::receive;
use crate::harness::{Needs, SKIP, TestResult, check, join_all, ncpus};
use crate::ktest;
use crate::sched::Builder;
use crate::smp::time::Deadline;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

ktest!(
    Needs::Threads,
    "net.mq_each_cpu_its_own_pair",
    mq_each_cpu_its_own_pair
);
ktest!(
    Needs::Threads,
    "net.mq_control_late_answer",
    mq_control_late_answer
);
ktest!(
    Needs::Threads,
    "net.mq_inactive_pair_does_not_transmit",
    mq_inactive_pair_does_not_transmit
);

const MAGIC: &[u8; 4] = b"EXMQ";
const PER_CPU: u32 = 400;

/// The pairs, parked for their CPUs' threads (taken once at start, put back at the end).
static PARKED: Mutex<Vec<Option<QueuePair>>> = Mutex::new(Vec::new());
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static PER_QUEUE: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static WANT: AtomicUsize = AtomicUsize::new(0);
/// Phase 1's flow control: frames all senders queued, and frames the peer received. A host
/// bridge drops what a full tap queue cannot take (no backpressure), so senders keep at
/// most `WINDOW` frames in flight between them.
static SENT: AtomicUsize = AtomicUsize::new(0);
static PEER_GOT: AtomicUsize = AtomicUsize::new(0);
const WINDOW: usize = 128;
/// Phase 2's count of frames the peer queued.
static SENT2: AtomicUsize = AtomicUsize::new(0);

/// Waits (to `d`) until fewer than `WINDOW - burst` frames are in flight.
fn window(sent: &AtomicUsize, got: &AtomicUsize, burst: usize, d: &Deadline) {
    while sent
        .load(Ordering::Acquire)
        .saturating_sub(got.load(Ordering::Acquire))
        + burst
        > WINDOW
        && !d.passed()
    {
        core::hint::spin_loop();
    }
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv4/UDP broadcast frame from `src` (UDP source port `port`: the flow) carrying
/// `MAGIC`, `tag` and `seq`: 60 bytes.
pub fn udp_frame(buf: &mut [u8], src: [u8; 6], port: u16, tag: u32, seq: u32) -> usize {
    let f = &mut buf[..60];
    f.fill(0);
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 9, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 9, 0, 2]);
    let c = ip_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&port.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f[42..46].copy_from_slice(MAGIC);
    f[46..50].copy_from_slice(&tag.to_le_bytes());
    f[50..54].copy_from_slice(&seq.to_le_bytes());
    60
}

/// (tag, seq) of a frame `udp_frame` made, or `None` for anything else (host noise).
pub fn parse_udp_frame(f: &[u8]) -> Option<(u32, u32)> {
    if f.len() < 60 || &f[42..46] != MAGIC {
        return None;
    }
    let tag = u32::from_le_bytes(f[46..50].try_into().ok()?);
    let seq = u32::from_le_bytes(f[50..54].try_into().ok()?);
    Some((tag, seq))
}

fn take(i: usize) -> Option<QueuePair> {
    PARKED.lock().get_mut(i).and_then(Option::take)
}

fn put(i: usize, p: QueuePair) {
    if let Some(s) = PARKED.lock().get_mut(i) {
        *s = Some(p);
    }
}

/// Phase 1, on CPU `i`: `PER_CPU` frames on pair `i`, flow `1000 + i`.
fn sender(i: u64) -> u64 {
    let i = i as usize;
    let Some(mut p) = take(i) else { return 1 };
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x01];
    let mut seq = 0u32;
    let d = Deadline::after_ms(10_000);
    let mut failed = 0;
    while seq < PER_CPU && !d.passed() {
        let n = 16.min((PER_CPU - seq) as usize);
        window(&SENT, &PEER_GOT, n, &d);
        SENT.fetch_add(n, Ordering::AcqRel);
        match p.tx_burst(n, |k, buf| {
            Some(udp_frame(
                buf,
                mac,
                1000 + i as u16,
                i as u32,
                seq + k as u32,
            ))
        }) {
            Ok(sent) => {
                seq += sent as u32;
                SENT.fetch_sub(n - sent, Ordering::AcqRel);
            }
            Err(_) => {
                failed = 1;
                break;
            }
        }
    }
    let _ = p.reap_tx();
    put(i, p);
    failed | u64::from(seq != PER_CPU)
}

/// Phase 2, on CPU `i`: receives on pair `i` until everyone together has every frame.
fn receiver(i: u64) -> u64 {
    let i = i as usize;
    let Some(mut p) = take(i) else { return 1 };
    let want = WANT.load(Ordering::Acquire);
    let d = Deadline::after_ms(10_000);
    let mut mine = Vec::new();
    while RECEIVED.load(Ordering::Acquire) < want && !d.passed() {
        let mut got = 0;
        let r = p.rx_burst(32, |f| {
            if let Some((_, seq)) = parse_udp_frame(f) {
                mine.push(seq);
                got += 1;
            }
        });
        if r.is_err() {
            break;
        }
        if got > 0 {
            PER_QUEUE[i % 64].fetch_add(got, Ordering::Relaxed);
            RECEIVED.fetch_add(got as usize, Ordering::AcqRel);
        }
    }
    SEEN.lock().extend(mine);
    put(i, p);
    0
}

/// `f(i)` in a thread pinned on CPU `i`, for `i` in `0..n`.
fn on_each_cpu(
    n: usize,
    f: fn(u64) -> u64,
) -> Result<Vec<crate::sched::Tid>, alloc::string::String> {
    (0..n)
        .map(|i| {
            Builder::new()
                .pin(i as u32)
                .spawn(f, i as u64)
                .map_err(|e| format!("spawn on CPU {i}: {e}"))
        })
        .collect()
}

/// The multi-queue NIC and a one-pair peer (every other device shut down), or why not
/// (`SKIP` without them).
fn mq_and_peer() -> Result<(NetDevice, NetDevice), alloc::string::String> {
    let (devs, bad) = net::probe(ncpus().min(64) as u16);
    if !bad.is_empty() {
        devs.into_iter().for_each(|d| {
            d.shutdown();
        });
        return Err(format!("{bad:?}"));
    }
    let (mut mq, mut peer): (Vec<NetDevice>, Vec<NetDevice>) =
        devs.into_iter().partition(|d| d.max_pairs > 1);
    if mq.is_empty() || peer.is_empty() {
        mq.into_iter().chain(peer).for_each(|d| {
            d.shutdown();
        });
        return Err(format!(
            "{SKIP}no multi-queue NIC with a peer (qemu.sh --net tap-mq)"
        ));
    }
    let dev = mq.remove(0);
    let other = peer.remove(0);
    mq.into_iter().chain(peer).for_each(|d| {
        d.shutdown();
    });
    Ok((dev, other))
}

/// A control command the device did not answer by its deadline (its notification withheld:
/// `SKIP_NEXT_CTRL_KICK`) fails with an error, stays in flight and leaves `active_pairs` as
/// it was; the commands after it succeed, each leaving nothing in flight and the pair count
/// it set. The device's memory all comes back at shutdown. What this does not tell: whether
/// the next command has the late one answered before it rewrites the shared command buffer
/// (`ctrl_pairs_set`'s re-notify). QEMU reads a command only when notified and answers in
/// order, so without the re-notify both commands are read after the rewrite and answered
/// alike, and this passes too (found by review, 2026-12-06: the doc claimed more).
fn mq_control_late_answer(_: &crate::boot::BootState) -> TestResult {
    let before = crate::harness::free_frames()?;
    let (mut dev, other) = mq_and_peer()?;
    let all = dev.active_pairs();
    let result: TestResult = (|| {
        net::SKIP_NEXT_CTRL_KICK.store(true, Ordering::Relaxed);
        let late = dev.set_active_pairs(1);
        check(late.is_err() && dev.ctrl_in_flight() > 0, || {
            format!(
                "withheld command: {late:?}, {} in flight",
                dev.ctrl_in_flight()
            )
        })?;
        check(dev.active_pairs() == all, || {
            format!("{} pairs in use after a failed command", dev.active_pairs())
        })?;
        for n in [all.min(2), 1, all] {
            let r = dev.set_active_pairs(n);
            check(
                r.is_ok() && dev.ctrl_in_flight() == 0 && dev.active_pairs() == n,
                || {
                    format!(
                        "VQ_PAIRS_SET {n}: {r:?}, {} in flight, {} pairs in use",
                        dev.ctrl_in_flight(),
                        dev.active_pairs()
                    )
                },
            )?;
        }
        Ok(())
    })();
    super::tests::shut_down_and_compare(dev, other, before, result)
}

/// One frame on `p` (from the test MAC): what `tx_burst` says.
fn send_one(p: &mut QueuePair) -> Result<usize, super::virtio::VirtioError> {
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x01];
    p.tx_burst(1, |_, buf| Some(udp_frame(buf, mac, 999, 7, 0)))
}

/// After `set_active_pairs(1)` a pair past it may not transmit (virtio 1.2, 5.1.6.5.5): its
/// `tx_burst` and `tx_ready` fail with `PairInactive` and queue nothing, though its CPU
/// holds it (the pairs are taken out first, as each CPU's thread takes its own); pair 0
/// still sends. After a command that went unanswered (`SKIP_NEXT_CTRL_KICK`), the pairs
/// it would have stopped stay stopped; once `set_active_pairs` restores every pair, pair 1
/// sends again. Until 2026-12-06 pair 1 sent its frame (found by review).
fn mq_inactive_pair_does_not_transmit(_: &crate::boot::BootState) -> TestResult {
    use super::virtio::VirtioError;
    let before = crate::harness::free_frames()?;
    let (mut dev, other) = mq_and_peer()?;
    let all = dev.active_pairs();
    let mut pairs = dev.take_pairs();
    let result: TestResult = (|| {
        if pairs.len() < 2 {
            return Err(format!(
                "{SKIP}{} pair(s): needs 2 (-smp 2 or more)",
                pairs.len()
            ));
        }
        let inactive = |r: &Result<usize, VirtioError>| {
            matches!(
                r,
                Err(VirtioError::PairInactive {
                    index: 1,
                    active: 1
                })
            )
        };
        dev.set_active_pairs(1)
            .map_err(|e| format!("VQ_PAIRS_SET 1: {e}"))?;
        let sent = pairs[1].stats.tx_packets;
        let r1 = send_one(&mut pairs[1]);
        let ready = pairs[1].tx_ready();
        let r0 = send_one(&mut pairs[0]);
        check(
            inactive(&r1)
                && matches!(ready, Err(VirtioError::PairInactive { .. }))
                && pairs[1].stats.tx_packets == sent
                && matches!(r0, Ok(1)),
            || format!("1 pair in use: pair 1 tx_burst {r1:?}, tx_ready {ready:?}; pair 0 {r0:?}"),
        )?;
        dev.set_active_pairs(all)
            .map_err(|e| format!("VQ_PAIRS_SET {all}: {e}"))?;
        let r1 = send_one(&mut pairs[1]);
        check(matches!(r1, Ok(1)), || {
            format!("{all} pairs in use again: pair 1 tx_burst {r1:?}")
        })?;
        net::SKIP_NEXT_CTRL_KICK.store(true, Ordering::Relaxed);
        let late = dev.set_active_pairs(1);
        let r1 = send_one(&mut pairs[1]);
        check(late.is_err() && inactive(&r1), || {
            format!("after an unanswered VQ_PAIRS_SET 1 ({late:?}): pair 1 tx_burst {r1:?}")
        })?;
        dev.set_active_pairs(all)
            .map_err(|e| format!("VQ_PAIRS_SET {all}: {e}"))?;
        let r1 = send_one(&mut pairs[1]);
        check(matches!(r1, Ok(1)), || {
            format!("{all} pairs in use after the late answer: pair 1 tx_burst {r1:?}")
        })
    })();
    for p in &mut pairs {
        let _ = p.reap_tx();
    }
    let result = result.and(super::tests::give_back(&mut dev, pairs));
    super::tests::shut_down_and_compare(dev, other, before, result)
}

fn mq_each_cpu_its_own_pair(_: &crate::boot::BootState) -> TestResult {
    let (mut dev, mut other) = mq_and_peer()?;
    let result = phases(&mut dev, &mut other);
    let parked: Vec<QueuePair> = PARKED.lock().drain(..).flatten().collect();
    let result = result.and(super::tests::give_back(&mut dev, parked));
    crate::kprintln!(
        "NETMQ,pairs,{}/{},tx,{},rx_per_queue,{:?}",
        dev.active_pairs(),
        dev.max_pairs,
        dev.stats().tx_packets,
        PER_QUEUE
            .iter()
            .take(usize::from(dev.active_pairs()))
            .map(|a| a.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    );
    dev.shutdown();
    other.shutdown();
    result
}

fn phases(dev: &mut NetDevice, other: &mut NetDevice) -> TestResult {
    let pairs = dev.take_pairs();
    let n = pairs.len();
    if n < 2 && ncpus() > 1 {
        return Err(format!("{n} pair(s) with {} CPUs", ncpus()));
    }
    *PARKED.lock() = pairs.into_iter().map(Some).collect();
    SENT.store(0, Ordering::Release);
    PEER_GOT.store(0, Ordering::Release);
    let peer = other.pair(0).ok_or("peer has no pair")?;
    // Phase 1: every CPU sends on its own pair while this thread receives on the peer.
    let tids = on_each_cpu(n, sender)?;
    let total = n * PER_CPU as usize;
    let mut seen = alloc::vec![false; total];
    let mut dup = 0;
    let got = receive(peer, total, |f| {
        PEER_GOT.fetch_add(1, Ordering::AcqRel);
        if let Some((tag, seq)) = parse_udp_frame(f) {
            let k = tag as usize * PER_CPU as usize + seq as usize;
            match seen.get_mut(k) {
                Some(s) if !*s => *s = true,
                _ => dup += 1,
            }
        }
    })?;
    let codes = join_all(&tids, 30_000)?;
    let missing = seen.iter().filter(|s| !**s).count();
    crate::kprintln!(
        "NETMQ,transmit,frames,{total},received,{got},missing,{missing},duplicates,{dup}"
    );
    // The frames cross the host's bridge, which drops rather than pushes back; the driver's
    // own count is checked exactly against the host tap's counter by CI. Here: no duplicate
    // or damaged frame, and at most one frame in a thousand lost on the way.
    check(
        codes.iter().all(|c| *c == 0) && missing <= total / 1000 && dup == 0,
        || {
            format!(
                "transmit: senders {codes:?}, {got} frames, {missing} of {total} missing, {dup} duplicates or strays"
            )
        },
    )?;
    // Phase 2: the peer sends frames of 64 flows per pair; each CPU receives on its own pair.
    let flows = 64 * n;
    let frames = 4 * flows;
    RECEIVED.store(0, Ordering::Release);
    SENT2.store(0, Ordering::Release);
    WANT.store(frames, Ordering::Release);
    SEEN.lock().clear();
    PER_QUEUE.iter().for_each(|a| a.store(0, Ordering::Relaxed));
    let mac = other.mac;
    let peer = other.pair(0).ok_or("peer has no pair")?;
    let tids = on_each_cpu(n, receiver)?;
    let mut sent = 0usize;
    let d = Deadline::after_ms(10_000);
    while sent < frames && !d.passed() {
        let n = 16.min(frames - sent);
        window(&SENT2, &RECEIVED, n, &d);
        let done = peer
            .tx_burst(n, |k, buf| {
                let seq = (sent + k) as u32;
                Some(udp_frame(
                    buf,
                    mac,
                    20_000 + (seq as usize % flows) as u16,
                    999,
                    seq,
                ))
            })
            .map_err(|e| format!("{e}"))?;
        sent += done;
        SENT2.store(sent, Ordering::Release);
    }
    let codes = join_all(&tids, 30_000)?;
    let mut seqs = core::mem::take(&mut *SEEN.lock());
    seqs.sort_unstable();
    let exact = seqs.len() == frames && seqs.iter().enumerate().all(|(i, s)| *s as usize == i);
    let busy = PER_QUEUE
        .iter()
        .take(n)
        .filter(|a| a.load(Ordering::Relaxed) > 0)
        .count();
    check(
        sent == frames && exact && codes.iter().all(|c| *c == 0) && (n == 1 || busy >= 2),
        || {
            format!(
                "receive: sent {sent}/{frames}, received {} (each once: {exact}), {busy} of {n} queues saw traffic",
                seqs.len()
            )
        },
    )
}
