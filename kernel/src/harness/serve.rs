//! The `serve` job: the first virtio-net device (`scripts/qemu.sh --net user`, or any NIC),
//! the kernel's IP stack (`exo-net` on smoltcp: DHCP from QEMU user networking, else its
//! fixed 10.0.2.15/24 with gateway 10.0.2.2), HTTP/1.1 on TCP port 80 (`GET /` answers 200,
//! keep-alive), UDP echo on port 7, ICMP echo. Runs on CPU 0 until QEMU is stopped.
//!
//! Prints `SERVE,up,...` with the MAC once the device is up, `SERVE,address,<cidr>,<how>` when
//! the address is known (`SERVE,address,none,<how>` when it is lost: a DHCP lease not renewed),
//! and a `SERVE,stats,...` line every 5 s when one of its counters changed (the interrupt count
//! aside; [`Report`]). A device that fails is reported and the job exits with failure.
//!
//! Idle policy (NAPI-like): after a poll with no work, spin on the ring for 200 µs, then ask
//! the device for an interrupt at the next frame and sleep until it comes or the stack's next
//! timer is due (MSI-X, PCI); a device without interrupts (virtio-mmio) is polled every 1 ms.

use crate::console::exit;
use crate::dev::net;
use crate::dev::netif::NetIf;
use crate::kprintln;
use crate::sched::{self, Builder};
use crate::smp::time::{Deadline, tsc_hz};
use exo_arch::exit::ExitCode;
use exo_arch::tsc::rdtsc;
use exo_net::{Config, Instant, Stack, Stats};

/// Starts the scheduler, then the server thread on CPU 0; never returns.
pub fn run(state: &crate::boot::BootState) -> ! {
    let timer = state.opts.mode != Some(smp_bench::Mode::Icount);
    if let Err(e) = sched::init(timer, 1000) {
        kprintln!("SERVE,FAIL,scheduler: {e}");
        exit(ExitCode::Failure);
    }
    match Builder::new().pin(0).spawn(server, 0) {
        Ok(t) => {
            let code = sched::join(t).unwrap_or(1);
            exit(if code == 0 {
                ExitCode::Success
            } else {
                ExitCode::Failure
            })
        }
        Err(e) => {
            kprintln!("SERVE,FAIL,thread: {e}");
            exit(ExitCode::Failure)
        }
    }
}

fn now() -> Instant {
    Instant::from_millis((rdtsc() / (tsc_hz() / 1000).max(1)) as i64)
}

fn server(_: u64) -> u64 {
    let (mut devs, bad) = net::probe(1);
    for (loc, e) in &bad {
        kprintln!("SERVE,device_failed,{loc},{e}");
    }
    if devs.is_empty() {
        kprintln!("SERVE,FAIL,no usable virtio-net device (scripts/qemu.sh --net user)");
        return 1;
    }
    let mut dev = devs.remove(0);
    for d in devs {
        d.shutdown();
    }
    let m = dev.mac;
    kprintln!(
        "SERVE,up,{},mac,{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x},link,{}",
        dev.location,
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        dev.link_up()
    );
    let Some(pair) = dev.take_pairs().into_iter().next() else {
        kprintln!("SERVE,FAIL,no queue pair");
        return 1;
    };
    let mut config = Config::qemu_user(dev.mac);
    config.seed = rdtsc();
    let mut stack = match Stack::new(NetIf::new(pair), config, now()) {
        Ok(s) => s,
        Err(e) => {
            kprintln!("SERVE,FAIL,stack: {e:?}");
            return 1;
        }
    };
    let mut announced = None;
    let mut last = Report::new(&stack.stats(), &stack.device_mut().pair().stats);
    let mut report = Deadline::after_ms(5000);
    loop {
        let p = stack.poll(now());
        let s = stack.stats();
        if s.address != announced {
            announced = s.address;
            match s.address {
                Some(a) => kprintln!("SERVE,address,{a},{:?}", s.addressing),
                None => kprintln!("SERVE,address,none,{:?}", s.addressing),
            }
        }
        if report.passed() {
            report = Deadline::after_ms(5000);
            let pair = stack.device_mut().pair();
            let (r, irqs) = (Report::new(&s, &pair.stats), pair.irq_count());
            if r != last {
                print_stats(&r, irqs);
                last = r;
            }
        }
        if let Some(e) = &stack.device_mut().error {
            kprintln!("SERVE,FAIL,device: {e}");
            return 1;
        }
        if p.activity {
            continue;
        }
        // Idle: spin on the ring a little, then sleep until the next timer or 1 ms.
        let spin = Deadline::after_us(200);
        while !spin.passed() && !stack.device_mut().rx_waiting() {
            core::hint::spin_loop();
        }
        if !stack.device_mut().rx_waiting() {
            let us = p
                .next_wake
                .map_or(1_000_000, |d| d.total_micros().min(1_000_000));
            if us > 0 {
                let deadline = rdtsc() + us * (tsc_hz() / 1_000_000).max(1);
                stack.device_mut().pair().idle_wait(deadline);
            }
        }
    }
}

/// The counters of a `SERVE,stats` line but the interrupt count: the line is printed when
/// one of them changed (interrupts without frames are no news). Until 2026-12-05 only the
/// HTTP, UDP echo and ping counts were compared: a SYN flood, a runt flood, a scan or idle
/// aborts printed nothing, and `udp_dropped` was never printed (found by review).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Report {
    http_requests: u64,
    ok: u64,
    other: u64,
    tcp_accepted: u64,
    tcp_open: usize,
    tcp_timeouts: u64,
    tcp_half_open_drops: u64,
    udp_echoed: u64,
    icmp_replies: u64,
    frames_rx: u64,
    frames_tx: u64,
    rx_drops: u64,
    udp_dropped: u64,
    tcp_idle_evictions: u64,
    tcp_duplicate_syns: u64,
    tcp_idle_closes: u64,
}

impl Report {
    fn new(s: &Stats, d: &net::Stats) -> Self {
        Self {
            http_requests: s.http_requests,
            ok: s.responses[0],
            other: s.responses.iter().skip(1).sum::<u64>(),
            tcp_accepted: s.tcp_accepted,
            tcp_open: s.tcp_open,
            tcp_timeouts: s.tcp_idle_aborts,
            tcp_half_open_drops: s.tcp_handshake_drops,
            udp_echoed: s.udp_echoed,
            icmp_replies: s.icmp_echo_replies,
            frames_rx: d.rx_packets,
            frames_tx: d.tx_packets,
            rx_drops: d.rx_dropped(),
            udp_dropped: s.udp_dropped,
            tcp_idle_evictions: s.tcp_idle_evictions,
            tcp_duplicate_syns: s.tcp_duplicate_syns,
            tcp_idle_closes: s.tcp_idle_closes,
        }
    }
}

/// The fields after `irqs` came later (2026-12-05; `tcp_duplicate_syns` and
/// `tcp_idle_closes` 2026-12-06): they are appended, so readers of the older line keep
/// working. `tcp_timeouts` counts resets only; idle keep-alive connections closed with a FIN
/// are `tcp_idle_closes`.
fn print_stats(r: &Report, irqs: u64) {
    kprintln!(
        "SERVE,stats,http_requests,{},ok,{},other,{},tcp_accepted,{},tcp_open,{},tcp_timeouts,{},tcp_half_open_drops,{},udp_echoed,{},icmp_replies,{},frames_rx,{},frames_tx,{},rx_drops,{},irqs,{},udp_dropped,{},tcp_idle_evictions,{},tcp_duplicate_syns,{},tcp_idle_closes,{}",
        r.http_requests,
        r.ok,
        r.other,
        r.tcp_accepted,
        r.tcp_open,
        r.tcp_timeouts,
        r.tcp_half_open_drops,
        r.udp_echoed,
        r.icmp_replies,
        r.frames_rx,
        r.frames_tx,
        r.rx_drops,
        irqs,
        r.udp_dropped,
        r.tcp_idle_evictions,
        r.tcp_duplicate_syns,
        r.tcp_idle_closes
    );
}
