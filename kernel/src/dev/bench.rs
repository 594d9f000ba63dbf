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
use crate::harness::bench::{Bench, emit};
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
                txs.push((t1 - t0).saturating_sub(b.overhead) / BURST as u64);
                rxs.push((t3 - t2).saturating_sub(b.overhead) / BURST as u64);
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
    Some(Stats {
        n: 1,
        mean: v,
        min: v,
        max: v,
        p50: v,
        p95: v,
        p99: v,
    })
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
