//! Network bench rows, on the hub pair (`scripts/qemu.sh --net hub`; skipped without it):
//! - `net.tx.instr_per_pkt`, `net.rx.instr_per_pkt`: the driver's whole cost per packet in a
//!   burst of 32 64-byte frames (TX: reaping the previous completions, filling the Ethernet
//!   header and a sequence number, descriptors, one publish and doorbell; RX: popping, the
//!   buffer checks, handing the frame up, re-posting, one publish). TSC ticks per packet:
//!   instructions under icount.
//! - `net.tx.pps`, `net.rx.pps`: one CPU sending on one NIC and receiving on the other for
//!   300 ms (TCG/KVM only: under icount the TSC counts instructions, not time). The receiver's
//!   count is the device side's proof of what the sender claims (`NETCHECK` line).

use super::tests::{check_frame, hub_pair, test_frame};
use crate::harness::Suite;
use crate::harness::bench::{Bench, broken, emit};
use crate::kbench;
use crate::smp::time::{Deadline, tsc_hz};
use exo_arch::tsc::rdtsc_precise;
use smp_bench::{Mode, Stats};

kbench!(Suite::Single, "net", rows);

const BURST: usize = 32;
const SAMPLES: usize = 300;

fn rows(b: &mut Bench<'_>) {
    let (mut tx_dev, mut rx_dev) = match hub_pair() {
        Ok(p) => p,
        Err(e) => {
            log::info!("bench: no net rows ({e})");
            return;
        }
    };
    let mac = tx_dev.mac;
    let mode = b.state.opts.mode.unwrap_or(Mode::Tcg);
    if let (Some(tx), Some(rx)) = (tx_dev.pair(0), rx_dev.pair(0)) {
        let mut seq = 0u32;
        let mut bad = 0u64;
        let (mut txs, mut rxs) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
        for k in 0..SAMPLES + 20 {
            let t0 = rdtsc_precise();
            let sent = tx
                .tx_burst(BURST, |i, buf| {
                    buf[0..6].copy_from_slice(&[0xff; 6]);
                    buf[6..12].copy_from_slice(&mac);
                    buf[12..14].copy_from_slice(&super::tests::ETHERTYPE.to_be_bytes());
                    buf[14..18].copy_from_slice(&(seq + i as u32).to_le_bytes());
                    Some(60)
                })
                .unwrap_or(0);
            let t1 = rdtsc_precise();
            seq += sent as u32;
            // The device delivers asynchronously: wait (bounded) for the whole burst.
            let d = Deadline::after_ms(1000);
            while rx.rx_pending() < sent && !d.passed() {
                core::hint::spin_loop();
            }
            let t2 = rdtsc_precise();
            let mut got = 0u32;
            let _ = rx.rx_burst(BURST, |f| {
                got += 1;
                if f.len() < 18 {
                    bad += 1;
                }
            });
            let t3 = rdtsc_precise();
            if k >= 20 && sent == BURST && got as usize == BURST {
                txs.push(smp_bench::per_call_between(
                    t0,
                    t1,
                    b.overhead,
                    BURST as u64,
                ));
                rxs.push(smp_bench::per_call_between(
                    t2,
                    t3,
                    b.overhead,
                    BURST as u64,
                ));
            }
        }
        emit(
            "net.tx.instr_per_pkt",
            smp_bench::stats_of(&mut txs, 0),
            &mut b.count,
        );
        emit(
            "net.rx.instr_per_pkt",
            smp_bench::stats_of(&mut rxs, 0),
            &mut b.count,
        );
        if bad > 0 {
            log::warn!("bench: {bad} short frames in net.rx.instr_per_pkt");
        }
        if mode != Mode::Icount {
            pps(b, tx, rx, mac);
        }
    }
    tx_dev.shutdown();
    rx_dev.shutdown();
}

fn one(v: u64) -> Option<Stats> {
    Some(Stats::one(v))
}

fn pps(
    b: &mut Bench<'_>,
    tx: &mut super::net::QueuePair,
    rx: &mut super::net::QueuePair,
    mac: [u8; 6],
) {
    let (tx0, rx0, c0) = (
        tx.stats.tx_packets,
        rx.stats.rx_packets,
        tx.stats.tx_completed,
    );
    let mut seq = 1u32 << 31;
    let mut bad = 0u64;
    let t0 = rdtsc_precise();
    let d = Deadline::after_ms(300);
    while !d.passed() {
        let n = tx
            .tx_burst(BURST, |i, buf| {
                Some(test_frame(buf, mac, seq + i as u32, 60))
            })
            .unwrap_or(0);
        seq += n as u32;
        let _ = rx.rx_burst(2 * BURST, |f| bad += u64::from(check_frame(f).is_err()));
    }
    let t1 = rdtsc_precise();
    // Drain what is in flight so the counts can be compared.
    let _ = super::tests::receive(
        rx,
        (tx.stats.tx_packets - tx0 - (rx.stats.rx_packets - rx0)) as usize,
        |f| bad += u64::from(check_frame(f).is_err()),
    );
    let _ = tx.reap_tx();
    let secs_ticks = (t1 - t0).max(1);
    let sent = tx.stats.tx_packets - tx0;
    let received = rx.stats.rx_packets - rx0;
    let hz = tsc_hz();
    crate::kprintln!(
        "NETCHECK,sent,{sent},completed,{},received,{received},bad,{bad},{}",
        tx.stats.tx_completed - c0,
        if sent == received && bad == 0 {
            "same"
        } else {
            "DIFFERENT"
        }
    );
    let rate = |n: u64| (u128::from(n) * u128::from(hz) / u128::from(secs_ticks)) as u64;
    emit("net.tx.pps", one(rate(sent)), &mut b.count);
    emit("net.rx.pps", one(rate(received)), &mut b.count);
}

kbench!(Suite::Contended, "net.mq", mq_rows);

static MQ_PARKED: spin::Mutex<alloc::vec::Vec<Option<super::net::QueuePair>>> =
    spin::Mutex::new(alloc::vec::Vec::new());
static MQ_SENT: [core::sync::atomic::AtomicU64; 64] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 64];
/// Each sender's own window, in ticks (the rate's divisor).
static MQ_WINDOW: [core::sync::atomic::AtomicU64; 64] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 64];
static MQ_START: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static MQ_READY: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// `f(i)` on CPU `i` for `i` in `0..q`, once each has taken its pair (`MQ_READY`, 5 s at
/// most); the threads that started.
fn start_on_cpus(q: usize, f: fn(u64) -> u64) -> alloc::vec::Vec<crate::sched::Tid> {
    use core::sync::atomic::Ordering;
    MQ_READY.store(0, Ordering::Release);
    let tids: alloc::vec::Vec<_> = (0..q)
        .filter_map(|i| {
            crate::sched::Builder::new()
                .pin(i as u32)
                .spawn(f, i as u64)
                .ok()
        })
        .collect();
    let d = Deadline::after_ms(5000);
    while MQ_READY.load(Ordering::Acquire) < tids.len() && !d.passed() {
        crate::sched::yield_now();
    }
    tids
}

/// On CPU `i`: waits for the common start, then sends 64-byte frames on pair `i` for 200 ms.
fn mq_sender(i: u64) -> u64 {
    use core::sync::atomic::Ordering;
    let i = i as usize;
    let Some(mut p) = MQ_PARKED.lock().get_mut(i).and_then(Option::take) else {
        return 1;
    };
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x01];
    MQ_READY.fetch_add(1, Ordering::AcqRel);
    // Yield while waiting: the starter may share this CPU (no preemption in bench jobs).
    let mut start = MQ_START.load(Ordering::Acquire);
    while start == 0 {
        crate::sched::yield_now();
        start = MQ_START.load(Ordering::Acquire);
    }
    // The start is on CPU 0's time line; this CPU's TSC runs `off` ahead. The rate divides
    // by this sender's own window: it starts when it sees the start, not at it. Until
    // 2026-12-06 the end was compared unshifted and every sender counted as if it sent for
    // exactly 200 ms (found by review).
    let off = crate::smp::tsc_sync::offset_of(exo_percpu::cpu_id_hint()).offset;
    let end = (start as i64 + off) as u64 + 200 * (tsc_hz() / 1000).max(1);
    let before = p.stats.tx_completed;
    let mut seq = 0u32;
    let t0 = exo_arch::tsc::rdtsc();
    while exo_arch::tsc::rdtsc() < end {
        let n = p
            .tx_burst(BURST, |k, buf| {
                Some(super::tests_mq::udp_frame(
                    buf,
                    mac,
                    3000 + i as u16,
                    i as u32,
                    seq + k as u32,
                ))
            })
            .unwrap_or(0);
        seq += n as u32;
    }
    let t1 = exo_arch::tsc::rdtsc();
    let _ = p.reap_tx();
    MQ_WINDOW[i % 64].store(t1.saturating_sub(t0), Ordering::Relaxed);
    MQ_SENT[i % 64].store(p.stats.tx_completed - before, Ordering::Release);
    if let Some(s) = MQ_PARKED.lock().get_mut(i) {
        *s = Some(p);
    }
    0
}

/// `net.mq.tx.pps.<q>`: q CPUs, each sending on its own queue pair at once (one pair per
/// CPU on the `--net tap-mq` NIC), frames the device completed per second in all; TCG/KVM
/// only. The host tap's counter can be compared with the `NETMQBENCH` line.
fn mq_rows(b: &mut Bench<'_>) {
    use core::sync::atomic::Ordering;
    if b.state.opts.mode == Some(Mode::Icount) {
        return;
    }
    // Failures are errors, as `harness::bench::emit` has it (until 2026-12-06 warnings, and
    // the rows went missing; found by review); no multi-queue NIC is a skip.
    if !crate::sched::running()
        && let Err(e) = crate::sched::init(false, 1000)
    {
        broken(format_args!(
            "net.mq: scheduler did not start ({e}); no net.mq rows"
        ));
        return;
    }
    let ncpus = crate::smp::cpus::online_count().min(64) as u16;
    let (devs, _) = super::net::probe(ncpus);
    let (mut mq, mut rest): (alloc::vec::Vec<_>, alloc::vec::Vec<_>) =
        devs.into_iter().partition(|d| d.max_pairs > 1);
    // The one-pair NIC generates the receive load; the others go.
    let peer = rest.pop();
    rest.into_iter().for_each(|d| {
        d.shutdown();
    });
    let Some(mut dev) = mq.pop() else {
        log::info!("bench: no multi-queue NIC (qemu.sh --net tap-mq): no net.mq rows");
        return;
    };
    mq.into_iter().for_each(|d| {
        d.shutdown();
    });
    let pairs = dev.take_pairs();
    let n = pairs.len();
    *MQ_PARKED.lock() = pairs.into_iter().map(Some).collect();
    let mut total_sent = 0u64;
    let mut q = 1;
    while q <= n {
        MQ_START.store(0, Ordering::Release);
        let tids = start_on_cpus(q, mq_sender);
        let t0 = rdtsc_precise();
        MQ_START.store(t0, Ordering::Release);
        if crate::harness::join_all(&tids, 30_000).is_err() || tids.len() != q {
            broken(format_args!("net.mq.tx.pps.{q}: the senders failed"));
            break;
        }
        let (mut sent, mut rate) = (0u64, 0u128);
        for (s, w) in MQ_SENT.iter().zip(&MQ_WINDOW).take(q) {
            let (s, w) = (s.load(Ordering::Acquire), w.load(Ordering::Relaxed));
            sent += s;
            rate += u128::from(s) * u128::from(tsc_hz()) / u128::from(w.max(1));
        }
        total_sent += sent;
        emit(
            &alloc::format!("net.mq.tx.pps.{q}"),
            one(rate as u64),
            &mut b.count,
        );
        q *= 2;
    }
    crate::kprintln!("NETMQBENCH,pairs,{n},completed,{total_sent}");
    if let Some(mut peer) = peer {
        mq_rx_rows(b, &mut dev, &mut peer, n);
        peer.shutdown();
    }
    let parked: alloc::vec::Vec<_> = MQ_PARKED.lock().drain(..).flatten().collect();
    if let Err((why, _)) = dev.return_pairs(parked) {
        log::warn!("bench: net.mq pairs not taken back ({why}): left with their memory");
    }
    dev.shutdown();
}

static MQ_STOP: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// The tag of the current receive round's frames (stragglers of an earlier round are not
/// counted).
static MQ_TAG: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// On CPU `i`: drains pair `i` until told to stop; counts the test frames in `MQ_SENT[i]`.
/// Yields when a burst finds nothing (the load generator may share the CPU).
fn mq_receiver(i: u64) -> u64 {
    use core::sync::atomic::Ordering;
    let i = i as usize;
    let Some(mut p) = MQ_PARKED.lock().get_mut(i).and_then(Option::take) else {
        return 1;
    };
    MQ_READY.fetch_add(1, Ordering::AcqRel);
    let mut got = 0u64;
    let tag = MQ_TAG.load(Ordering::Acquire) as u32;
    while !MQ_STOP.load(Ordering::Acquire) {
        let mut n = 0;
        let _ = p.rx_burst(BURST, |f| {
            n += u64::from(matches!(super::tests_mq::parse_udp_frame(f), Some((t, _)) if t == tag));
        });
        got += n;
        if n == 0 {
            crate::sched::yield_now();
        }
    }
    MQ_SENT[i % 64].store(got, Ordering::Release);
    if let Some(s) = MQ_PARKED.lock().get_mut(i) {
        *s = Some(p);
    }
    0
}

/// `net.mq.rx.pps.<q>`: the device told to use q pairs (`VQ_PAIRS_SET`), q CPUs each
/// draining its own pair while the one-pair NIC sends frames of 256 flows (the host's flow
/// hash spreads them) from this thread for 200 ms; frames received per second in all. The
/// generator is one CPU: the rows show how receiving spreads, not the device's ceiling.
fn mq_rx_rows(
    b: &mut Bench<'_>,
    dev: &mut super::net::NetDevice,
    peer: &mut super::net::NetDevice,
    n: usize,
) {
    use core::sync::atomic::Ordering;
    let mac = peer.mac;
    let mut q = 1;
    while q <= n {
        if let Err(e) = dev.set_active_pairs(q as u16) {
            broken(format_args!("net.mq.rx.pps.{q}: VQ_PAIRS_SET: {e}"));
            break;
        }
        MQ_STOP.store(false, Ordering::Release);
        let tag = 100 + q as u32;
        MQ_TAG.store(u64::from(tag), Ordering::Release);
        let tids = start_on_cpus(q, mq_receiver);
        let Some(tx) = peer.pair(0) else {
            broken(format_args!("net.mq.rx.pps.{q}: the load NIC has no pair"));
            break;
        };
        let t0 = rdtsc_precise();
        let end = t0 + 200 * (tsc_hz() / 1000).max(1);
        let mut seq = 0u32;
        while exo_arch::tsc::rdtsc() < end {
            let k = tx
                .tx_burst(BURST, |j, buf| {
                    let s = seq + j as u32;
                    Some(super::tests_mq::udp_frame(
                        buf,
                        mac,
                        4000 + (s % 256) as u16,
                        tag,
                        s,
                    ))
                })
                .unwrap_or(0);
            seq += k as u32;
            crate::sched::yield_now();
        }
        let t1 = rdtsc_precise();
        // Let the last frames land, then stop the receivers.
        crate::sched::sleep_us(20_000);
        MQ_STOP.store(true, Ordering::Release);
        if crate::harness::join_all(&tids, 30_000).is_err() || tids.len() != q {
            broken(format_args!("net.mq.rx.pps.{q}: the receivers failed"));
            break;
        }
        let got: u64 = MQ_SENT
            .iter()
            .take(q)
            .map(|a| a.load(Ordering::Acquire))
            .sum();
        let per_queue: alloc::vec::Vec<u64> = MQ_SENT
            .iter()
            .take(q)
            .map(|a| a.load(Ordering::Acquire))
            .collect();
        crate::kprintln!("NETMQRX,queues,{q},sent,{seq},received,{got},per_queue,{per_queue:?}");
        let rate = u128::from(got) * u128::from(tsc_hz()) / u128::from((t1 - t0).max(1));
        emit(
            &alloc::format!("net.mq.rx.pps.{q}"),
            one(rate as u64),
            &mut b.count,
        );
        q *= 2;
    }
    let _ = dev.set_active_pairs(n as u16);
}
