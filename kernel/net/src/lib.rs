//! Exo-OS's small IP stack: what the kernel's `serve` job runs on top of its NIC driver.
//!
//! This crate owns everything above the Ethernet frame: addressing (a static address, or
//! DHCP with a static fallback after a deadline), ARP and ICMP echo (answered by smoltcp's
//! [`Interface`](smoltcp::iface::Interface)), an HTTP/1.1 server on a fixed set of TCP
//! slots ([`http`] is the hand-written request reader and responder) and a UDP echo service.
//! The driver side is one [`smoltcp::phy::Device`] handed to [`Stack::new`]; time is a
//! monotonic [`Instant`] passed to every [`Stack::poll`]. No threads, no interrupts, no
//! `unsafe`: the kernel calls `poll` from its loop and sleeps at most `next_wake`.
//!
//! The crate is `no_std` + `alloc` and is tested on the host over a simulated wire
//! (module `testing`, behind the `testing` feature) against a plain smoltcp client.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod device;
pub mod http;
mod stack;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The smoltcp this crate is built against (the kernel's `Device` impl must use this one).
pub use smoltcp;
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
pub use stack::{BODY_MIN_RATE, Stack};

use http::Status;

/// A fixed IPv4 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticIp {
    /// The interface address.
    pub ip: Ipv4Address,
    /// Prefix length of the local network (0..=32).
    pub prefix_len: u8,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Address>,
}

impl StaticIp {
    /// QEMU user networking's fixed guest address: 10.0.2.15/24 via 10.0.2.2.
    pub const QEMU_USER: StaticIp = StaticIp {
        ip: Ipv4Address::new(10, 0, 2, 15),
        prefix_len: 24,
        gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
    };
}

/// How the interface gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// Use this address from the start.
    Static(StaticIp),
    /// Ask a DHCP server; if none has answered `fallback_after` after [`Stack::new`], stop
    /// asking and use `fallback` (if given; with `None` DHCP keeps trying forever).
    Dhcp {
        /// The address used when DHCP does not answer in time.
        fallback: Option<StaticIp>,
        /// How long to wait for a lease before falling back: after [`Stack::new`], and again
        /// after a lease is lost (not renewed before it expired, or refused). Without an
        /// address the stack keeps asking for this long, as at boot, then takes `fallback`
        /// for good: the host stays reachable while the DHCP server is gone.
        fallback_after: Duration,
    },
}

/// Everything [`Stack::new`] needs besides the device.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The NIC's MAC address (must be unicast).
    pub mac: [u8; 6],
    /// Static address or DHCP.
    pub addr: Addressing,
    /// TCP port of the HTTP server (80).
    pub http_port: u16,
    /// UDP port of the echo service (7); 0 disables it. Not a DHCP port (67, 68): the DHCP
    /// client's socket has 68, and the echoes are counted by their source port as they leave.
    pub udp_echo_port: u16,
    /// Number of TCP sockets listening on `http_port`: the most connections served at once.
    /// When every one is taken, a new client's SYN gets the slot of a keep-alive connection
    /// closed for idleness whose client has not completed the close, else of the connection
    /// idle between requests the longest (for a second or more); it is reset. Else the SYN
    /// is refused.
    pub tcp_slots: usize,
    /// Receive buffer per TCP slot, bytes (the advertised window).
    pub tcp_rx_buffer: usize,
    /// Transmit buffer per TCP slot, bytes.
    pub tcp_tx_buffer: usize,
    /// Largest request head accepted (request line and headers); bigger ones get 431.
    pub request_limit: usize,
    /// A connection that makes no progress for this long is aborted (`None`: never); one
    /// idle between requests after a response is closed instead (FIN). A connection closed
    /// so (by this timeout or by `request_timeout`) that has not completed the close is
    /// aborted after as long again, at most 60 s, and after 60 s when this is `None`.
    pub idle_timeout: Option<Duration>,
    /// A connection whose request head is not complete this long after it was accepted, or
    /// after its last response was sent (out of the TX buffer, or earlier if the next
    /// request's first byte came), or after the last byte of a request body, is aborted
    /// (`None`: never): a client sending a byte now and then keeps `idle_timeout` from
    /// firing, and would hold its slot for good. A keep-alive connection idle between
    /// requests is closed instead (FIN). While a request body is received, each body byte
    /// pushes the clock on by 1/[`BODY_MIN_RATE`](crate::BODY_MIN_RATE) s (never
    /// past the present): an upload at that rate or faster is never cut, a slower one (a
    /// body trickled to hold the slot) is aborted once it is a whole timeout behind.
    pub request_timeout: Option<Duration>,
    /// A slot whose handshake has not completed this long after the SYN came (the SYN-ACK
    /// unanswered: a client gone, a spoofed source) is dropped and listens again (`None`:
    /// never). smoltcp retransmits the SYN-ACK without a limit, so without it every slot
    /// could be held half-open for good.
    pub handshake_timeout: Option<Duration>,
    /// Body of `GET /`.
    pub body: &'static [u8],
    /// `Content-Type` of `GET /` (at most 64 bytes, else `application/octet-stream`).
    pub content_type: &'static str,
    /// Seed of smoltcp's generator (initial sequence numbers, ephemeral ports): vary per boot.
    pub seed: u64,
}

/// The body `GET /` serves by default.
pub const DEFAULT_BODY: &[u8] = b"Hello from Exo-OS\n";

impl Config {
    /// The serve job's configuration under QEMU user networking: DHCP, falling back to
    /// 10.0.2.15/24 via 10.0.2.2 after 3 s; HTTP on 80, UDP echo on 7, 32 TCP slots.
    pub fn qemu_user(mac: [u8; 6]) -> Self {
        Self {
            mac,
            addr: Addressing::Dhcp {
                fallback: Some(StaticIp::QEMU_USER),
                fallback_after: Duration::from_secs(3),
            },
            http_port: 80,
            udp_echo_port: 7,
            tcp_slots: 32,
            tcp_rx_buffer: 4096,
            tcp_tx_buffer: 8192,
            request_limit: 4096,
            idle_timeout: Some(Duration::from_secs(60)),
            request_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Some(Duration::from_secs(10)),
            body: DEFAULT_BODY,
            content_type: "text/plain",
            seed: 0x6578_6f2d_6f73,
        }
    }
}

/// Why [`Stack::new`] refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The MAC is multicast, broadcast or all zeros.
    BadMac,
    /// The device's medium is not Ethernet.
    NotEthernet,
    /// A prefix length above 32.
    BadPrefix,
    /// `http_port` is 0, or `udp_echo_port` is a DHCP port (67 or 68).
    BadPort,
    /// `tcp_slots` is 0, or a TCP buffer is smaller than 64 bytes.
    BadSizes,
    /// No memory for the TCP slots' buffers.
    NoMemory,
}

/// Where the interface's address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrState {
    /// [`Addressing::Static`].
    Static,
    /// Waiting for a DHCP lease (no address yet).
    DhcpPending,
    /// Leased from a DHCP server.
    Dhcp,
    /// DHCP did not answer in time: the fallback address is in use.
    Fallback,
}

/// Counters since [`Stack::new`] (all wrap on overflow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections established on the HTTP port.
    pub tcp_accepted: u64,
    /// TCP slots currently serving a connection.
    pub tcp_open: usize,
    /// Connections aborted (a reset) by the idle timeout or the request timeout: in the
    /// middle of a request or a response, silent since they connected, or not completing
    /// the close of [`tcp_idle_closes`](Self::tcp_idle_closes).
    pub tcp_idle_aborts: u64,
    /// Half-open connections dropped by the handshake timeout.
    pub tcp_handshake_drops: u64,
    /// Connections idle between requests, or closed for idleness and not yet closed by their
    /// client, reset to give their slot to a new client (every slot was taken).
    pub tcp_idle_evictions: u64,
    /// SYNs for the HTTP port dropped because a slot holds a connection or a handshake with
    /// their source address and port (a retransmitted SYN, or a blind one meant to reset
    /// that connection).
    pub tcp_duplicate_syns: u64,
    /// Keep-alive connections idle between requests (after a response) past the request or
    /// the idle timeout, closed with a FIN.
    pub tcp_idle_closes: u64,
    /// Requests answered (including error responses).
    pub http_requests: u64,
    /// Responses by status, indexed like [`Status::ALL`].
    pub responses: [u64; Status::ALL.len()],
    /// Request bytes read from TCP.
    pub http_rx_bytes: u64,
    /// Response bytes written to TCP.
    pub http_tx_bytes: u64,
    /// UDP datagrams echoed (the echo handed to the device).
    pub udp_echoed: u64,
    /// UDP datagrams dropped: oversized, from a service port, not sent to our own address,
    /// or whose echo could not go out (its destination did not answer ARP within a second,
    /// or the device had no room).
    pub udp_dropped: u64,
    /// ICMP echo requests received (smoltcp answers those sent to the interface's own
    /// address; one sent to a broadcast or multicast address is dropped).
    pub icmp_echo_requests: u64,
    /// ICMP echo replies sent.
    pub icmp_echo_replies: u64,
    /// Ethernet frames received from the device.
    pub frames_rx: u64,
    /// Ethernet frames handed to the device.
    pub frames_tx: u64,
    /// Where the address came from.
    pub addressing: AddrState,
    /// The interface's address, once it has one.
    pub address: Option<Ipv4Cidr>,
}

impl Stats {
    /// Responses sent with `status`.
    pub fn responses_with(&self, status: Status) -> u64 {
        self.responses[status.index()]
    }
}

/// What one [`Stack::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// Frames moved, sockets served or the address changed.
    pub activity: bool,
    /// Poll again at the latest after this long (`None`: only when a frame arrives;
    /// zero: at once).
    pub next_wake: Option<Duration>,
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
