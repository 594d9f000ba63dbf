//! [`Stack`]: the interface, the sockets, and the loop body that serves them.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{Device, Medium, RxToken};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Message, Icmpv4Packet, IpAddress, IpCidr, IpEndpoint,
    IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, TcpPacket,
};

use crate::device::{Counted, Counters, Replay};
use crate::http::{Event, RequestReader, Response};
use crate::{AddrState, Addressing, Config, ConfigError, Poll, StaticIp, Stats};

/// Largest UDP payload echoed (an unfragmented datagram on a 1500-byte MTU).
const UDP_MAX_PAYLOAD: usize = 1472;
/// Datagrams buffered per direction by the echo socket.
const UDP_PACKETS: usize = 16;
/// How long an echo whose destination has not answered ARP is kept and tried again (as long
/// as smoltcp waits before it asks again).
const ECHO_ARP_WAIT: Duration = Duration::from_millis(1000);
/// Frames taken from the device per [`Stack::poll`]: a flood cannot hold the poll in
/// ingress (the sockets, timeouts and DHCP are served between batches).
pub(crate) const INGRESS_BUDGET: usize = 64;

/// One TCP socket on the HTTP port and the state of the connection it serves.
#[derive(Debug)]
struct Slot {
    handle: SocketHandle,
    reader: RequestReader,
    /// The response being written and how many of its bytes TCP has taken.
    out: Option<(Response, usize)>,
    /// A connection is being served (counted in `tcp_accepted`).
    connected: bool,
    /// We closed our side: discard input until the socket is closed.
    closing: bool,
    last_progress: Instant,
    /// When the request being read began: the connection's start, or once its last response
    /// was queued whole, the moment that left the TX buffer or the next request's first byte
    /// came, whichever was first, or the last byte of the answered request's body, if later
    /// (`request_timeout`; between requests, how long the connection has been idle:
    /// [`Stack::make_room`]).
    request_since: Instant,
    /// Input was read since the last response was queued whole (the next request began; the
    /// body of the request answered is not the next request).
    read_since_response: bool,
    /// A response was queued whole and the connection kept open: between requests now, it
    /// is a keep-alive connection, which a timeout closes with a FIN, not a reset.
    answered: bool,
    /// When the handshake in progress began (`None`: the slot is not in SYN-RECEIVED).
    syn_since: Option<Instant>,
    /// When we closed this keep-alive connection (a FIN) for being idle between requests:
    /// it is aborted if the client has not completed the close by [`Slot::close_overdue`],
    /// and may be evicted for a new client meanwhile ([`Stack::idle_candidate`]).
    idle_closed: Option<Instant>,
}

impl Slot {
    /// The last response is queued whole, its tail is still in the TX buffer and nothing of
    /// a next request came, nor is a body awaited: the request clock waits (`request_since`
    /// is kept at now). The client's reading is the pace; a reader that stalls is ended by
    /// the idle timeout (no progress), and one that sends meanwhile starts the clock. A body
    /// being uploaded is never draining: its clock is [`BODY_MIN_RATE`]'s. Until 2026-12-06 a
    /// client that left the response unread (a zero window) and trickled its body a byte
    /// every 59 s kept the slot draining, each pass reset the clock, each byte the idle
    /// timeout: the slot was held for good (found by review).
    fn draining(&self, socket: &tcp::Socket<'_>) -> bool {
        self.out.is_none()
            && !self.read_since_response
            && !self.reader.discarding()
            && socket.send_queue() > 0
    }

    /// The request clock (`request_timeout`) runs: a request head, or the rest of a body, is
    /// awaited. Not while a response is written or drains ([`draining`](Self::draining)),
    /// nor once we closed. While a body is received the clock runs too, pushed on by each
    /// byte that comes ([`BODY_MIN_RATE`]).
    fn request_clock_runs(&self, socket: &tcp::Socket<'_>) -> bool {
        self.connected && !self.closing && self.out.is_none() && !self.draining(socket)
    }

    /// Between requests: established, the last response (if any) acknowledged whole, nothing
    /// of a next request come (none read, none waiting in the socket). Only such a connection,
    /// or one we closed for idleness ([`closed_idle`](Self::closed_idle)), may be evicted for
    /// a new one ([`Stack::make_room`]): never one in the middle of a request or a response.
    fn between_requests(&self, socket: &tcp::Socket<'_>) -> bool {
        self.connected
            && !self.closing
            && self.out.is_none()
            && !self.read_since_response
            && self.reader.idle()
            && socket.state() == tcp::State::Established
            && socket.send_queue() == 0
            && socket.recv_queue() == 0
    }

    /// Closed by us for idleness and waiting for the client's side of the close (its FIN,
    /// or the ACK of ours): the client has had its answers and our goodbye, so the slot may
    /// go to a new client as an idle one may. Pooled clients leave the FIN unread: until
    /// 2026-12-06 such a slot (FIN-WAIT-2) could not be evicted and a new client was refused
    /// for a whole idle timeout (found by review).
    fn closed_idle(&self, socket: &tcp::Socket<'_>) -> bool {
        self.idle_closed.is_some()
            && matches!(socket.state(), tcp::State::FinWait1 | tcp::State::FinWait2)
    }

    /// When a connection closed for idleness that has not completed the close is aborted:
    /// the idle timeout after our FIN, at most [`CLOSE_TIMEOUT`] (and that without an idle
    /// timeout: until 2026-12-06 nothing ended such a slot then; found by review).
    fn close_deadline(&self, config: &Config) -> Option<Instant> {
        let limit = config
            .idle_timeout
            .map_or(CLOSE_TIMEOUT, |t| t.min(CLOSE_TIMEOUT));
        self.idle_closed.map(|at| at + limit)
    }
}

/// The longest a connection closed for idleness is given to complete the close (as Linux's
/// `tcp_fin_timeout` default).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);

/// The slowest request body upload never cut by `request_timeout`, in bytes a second (as
/// Apache's `mod_reqtimeout` default `MinRate=500`): each body byte pushes the request clock
/// on by 2 ms. Until 2026-12-06 a body had the one timeout whatever its length (an upload
/// slower than 30 s was reset), and for a moment that day none (a body trickled a byte a
/// minute held its slot for good); found by review.
pub const BODY_MIN_RATE: u64 = 500;

/// How long a half-open slot is kept before [`Stack::keep_one_listening`] may give it to a
/// new SYN (far above a real client's round trip).
const HALF_OPEN_GRACE: Duration = Duration::from_millis(1000);

/// How long a connection must have been idle between requests before [`Stack::make_room`]
/// may reset it for a new client (as [`HALF_OPEN_GRACE`]: a client that just got its answer
/// and is about to ask again is left alone).
const IDLE_GRACE: Duration = Duration::from_millis(1000);

/// The source of `ip` if it is a TCP SYN (not a SYN-ACK) to `addr:port`.
fn syn_to(ip: &Ipv4Packet<&[u8]>, addr: Ipv4Address, port: u16) -> Option<IpEndpoint> {
    if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != addr {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    (tcp.syn() && !tcp.ack() && tcp.dst_port() == port)
        .then(|| IpEndpoint::new(IpAddress::Ipv4(ip.src_addr()), tcp.src_port()))
}

/// Whether the source of IPv4 packet `ip` cannot be a host on the wire: 0.0.0.0, all
/// ones, a multicast group, the loopback network, or, once the interface has an address
/// (`ours`), that address or its subnet's broadcast address. RFC 1122 (3.2.1.3) has a host
/// drop these silently. Until 2026-12-06 smoltcp took them: a SYN from 0.0.0.0, 127.0.0.1 or
/// the stack's own address held a slot half-open (the loopback one's SYN-ACK sent to the
/// router), a datagram spoofed from its own address wedged the UDP echo (see
/// [`Stack::echo_udp`]), and a DHCP OFFER from 0.0.0.0 made smoltcp's renewal fail an
/// assertion (a panic: the kernel's), since smoltcp's DHCP client takes an OFFER's source as
/// the server's address and later sends there (found by the hostile-frames proptest;
/// `frames_from_no_host_address_are_dropped_unanswered`,
/// `a_dhcp_reply_from_the_unspecified_address_is_dropped`).
fn from_no_host(ip: &Ipv4Packet<&[u8]>, ours: Option<Ipv4Cidr>) -> bool {
    let src = ip.src_addr();
    !is_host(src)
        || src.is_loopback()
        || ours.is_some_and(|c| src == c.address() || Some(src) == c.broadcast())
}

/// Whether `a` may be a host's address: not 0.0.0.0, broadcast nor multicast (smoltcp asserts
/// as much of a next hop it looks up, and of a destination it sends to).
fn is_host(a: Ipv4Address) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
}

/// The destination of `ip` if it carries an ICMP echo request.
fn echo_request_to(ip: &Ipv4Packet<&[u8]>) -> Option<Ipv4Address> {
    if ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    (icmp.msg_type() == Icmpv4Message::EchoRequest).then_some(ip.dst_addr())
}

/// A TCP socket for an HTTP slot (`None`: no memory for its buffers).
fn tcp_socket(config: &Config) -> Option<tcp::Socket<'static>> {
    let buffer = |n: usize| {
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, 0u8);
        Some(tcp::SocketBuffer::new(v))
    };
    let mut socket = tcp::Socket::new(buffer(config.tcp_rx_buffer)?, buffer(config.tcp_tx_buffer)?);
    // Responses are written whole; Nagle would hold a pipelined second response until the
    // first is acknowledged (and the client delays that ACK).
    socket.set_nagle_enabled(false);
    Some(socket)
}

/// DHCP client state while no fallback has been applied.
#[derive(Debug)]
struct Dhcp {
    handle: SocketHandle,
    fallback: Option<StaticIp>,
    fallback_after: Duration,
    /// When the fallback is due if no lease came: `fallback_after` after boot, or after the
    /// loss of the last lease.
    deadline: Instant,
}

/// The IP stack over device `D`: call [`poll`](Self::poll) in a loop.
pub struct Stack<D: Device> {
    device: Counted<D>,
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: Vec<Slot>,
    udp: Option<SocketHandle>,
    dhcp: Option<Dhcp>,
    config: Config,
    stats: Stats,
    /// The datagrams taken from the echo socket in one pass, `UDP_MAX_PAYLOAD` bytes each,
    /// then the one held ([`echo_held`](Self::echo_held)).
    scratch: Vec<u8>,
    /// Their lengths and addresses.
    echo_pending: Vec<(usize, udp::UdpMetadata)>,
    /// An echo waiting for its destination to answer ARP: until when, length, address.
    echo_held: Option<(Instant, usize, udp::UdpMetadata)>,
    /// A frame taken from the device to be looked at before smoltcp has it
    /// ([`Stack::ingress_looked_at`]).
    held: Vec<u8>,
}

impl<D: Device> core::fmt::Debug for Stack<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stack")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<D: Device> Stack<D> {
    /// Brings the interface up on `device` at time `now`: static address (or DHCP started),
    /// `tcp_slots` sockets listening on the HTTP port, the UDP echo socket bound.
    pub fn new(device: D, config: Config, now: Instant) -> Result<Self, ConfigError> {
        let mac = EthernetAddress(config.mac);
        if !mac.is_unicast() || config.mac == [0; 6] {
            return Err(ConfigError::BadMac);
        }
        if device.capabilities().medium != Medium::Ethernet {
            return Err(ConfigError::NotEthernet);
        }
        // The echo's own socket on 68 would take the DHCP client's replies, and the echo
        // count (frames leaving from the echo port) would count DHCP's (until 2026-12-06
        // accepted; found by review of the hostile-frames proptest's fixes).
        if config.http_port == 0 || matches!(config.udp_echo_port, 67 | 68) {
            return Err(ConfigError::BadPort);
        }
        if config.tcp_slots == 0 || config.tcp_rx_buffer < 64 || config.tcp_tx_buffer < 64 {
            return Err(ConfigError::BadSizes);
        }
        let fixed = match config.addr {
            Addressing::Static(s) => Some(s),
            Addressing::Dhcp { fallback, .. } => fallback,
        };
        if fixed.is_some_and(|s| s.prefix_len > 32) {
            return Err(ConfigError::BadPrefix);
        }

        let mut device = Counted {
            inner: device,
            counters: Counters {
                udp_echo_port: config.udp_echo_port,
                ..Counters::default()
            },
        };
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = config.seed;
        let iface = Interface::new(iface_config, &mut device, now);
        let frame_len = device.capabilities().max_transmission_unit.max(1514);
        let mut stack = Self {
            device,
            iface,
            sockets: SocketSet::new(vec![]),
            slots: Vec::with_capacity(config.tcp_slots),
            udp: None,
            dhcp: None,
            config,
            stats: Stats {
                tcp_accepted: 0,
                tcp_open: 0,
                tcp_idle_aborts: 0,
                tcp_handshake_drops: 0,
                tcp_idle_evictions: 0,
                tcp_duplicate_syns: 0,
                tcp_idle_closes: 0,
                http_requests: 0,
                responses: [0; crate::http::Status::ALL.len()],
                http_rx_bytes: 0,
                http_tx_bytes: 0,
                udp_echoed: 0,
                udp_dropped: 0,
                icmp_echo_requests: 0,
                icmp_echo_replies: 0,
                frames_rx: 0,
                frames_tx: 0,
                addressing: AddrState::Static,
                address: None,
            },
            scratch: vec![0; (UDP_PACKETS + 1) * UDP_MAX_PAYLOAD],
            echo_pending: Vec::with_capacity(UDP_PACKETS),
            echo_held: None,
            held: Vec::with_capacity(frame_len),
        };

        match config.addr {
            Addressing::Static(s) => stack.set_static(s, AddrState::Static),
            Addressing::Dhcp {
                fallback,
                fallback_after,
            } => {
                let handle = stack.sockets.add(dhcpv4::Socket::new());
                stack.dhcp = Some(Dhcp {
                    handle,
                    fallback,
                    fallback_after,
                    deadline: now + fallback_after,
                });
                stack.stats.addressing = AddrState::DhcpPending;
            }
        }

        for _ in 0..config.tcp_slots {
            let socket = tcp_socket(&config).ok_or(ConfigError::NoMemory)?;
            let handle = stack.sockets.add(socket);
            stack.slots.push(Slot {
                handle,
                reader: RequestReader::new(config.request_limit),
                out: None,
                connected: false,
                closing: false,
                last_progress: now,
                request_since: now,
                read_since_response: false,
                answered: false,
                syn_since: None,
                idle_closed: None,
            });
        }
        for i in 0..stack.slots.len() {
            stack.relisten(i);
        }

        if config.udp_echo_port != 0 {
            let meta = || vec![udp::PacketMetadata::EMPTY; UDP_PACKETS];
            let data = || vec![0; UDP_PACKETS * UDP_MAX_PAYLOAD];
            let mut socket = udp::Socket::new(
                udp::PacketBuffer::new(meta(), data()),
                udp::PacketBuffer::new(meta(), data()),
            );
            // Cannot fail: the port is non-zero and the socket fresh.
            let _ = socket.bind(config.udp_echo_port);
            stack.udp = Some(stack.sockets.add(socket));
        }
        Ok(stack)
    }

    /// One round: receive and transmit frames, track DHCP, serve every TCP slot and the UDP
    /// echo socket, and transmit what that produced.
    pub fn poll(&mut self, now: Instant) -> Poll {
        let frames_before = (
            self.device.counters.frames_rx.get(),
            self.device.counters.frames_tx.get(),
        );
        // At most INGRESS_BUDGET frames, then the sockets are served: `Interface::poll` takes
        // frames until the device has none, and under a flood it did not return (no timeout,
        // HTTP slot or DHCP step ran; until 2026-12-05, found by review). A full budget is
        // activity: the caller polls again at once for the rest.
        self.iface.poll_maintenance(now);
        let mut activity = false;
        let mut taken = 0;
        while taken < INGRESS_BUDGET {
            match self.ingress_looked_at(now) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => activity = true,
            }
            taken += 1;
        }
        activity |= taken == INGRESS_BUDGET;
        // Egress as `Interface::poll` does it: until nothing more goes out.
        while self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {
            activity = true;
        }
        activity |= self.poll_dhcp(now);
        for i in 0..self.slots.len() {
            activity |= self.serve(i, now);
        }
        activity |= self.keep_one_listening(now);
        activity |= self.echo_udp(now);
        activity |= self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged;
        activity |= frames_before
            != (
                self.device.counters.frames_rx.get(),
                self.device.counters.frames_tx.get(),
            );

        let next_wake = if activity {
            Some(Duration::ZERO)
        } else {
            let mut wake = self.iface.poll_delay(now, &self.sockets);
            let mut earliest = |at: Instant| {
                let d = if at > now { at - now } else { Duration::ZERO };
                wake = Some(wake.map_or(d, |w| w.min(d)));
            };
            if let Some((_, at)) = self.fallback_pending() {
                earliest(at);
            }
            if let Some((until, ..)) = self.echo_held {
                earliest(until);
            }
            if let Some(idle) = self.config.idle_timeout {
                for slot in self.slots.iter().filter(|s| s.connected) {
                    earliest(slot.last_progress + idle);
                }
            }
            // The same conditions `serve` acts on: a wake-up for a deadline it ignores (a
            // closing slot's request timeout) was a busy loop until 2026-12-04.
            if let Some(t) = self.config.request_timeout {
                for slot in self
                    .slots
                    .iter()
                    .filter(|s| s.request_clock_runs(self.sockets.get(s.handle)))
                {
                    earliest(slot.request_since + t);
                }
            }
            if let Some(t) = self.config.handshake_timeout {
                for since in self.slots.iter().filter_map(|s| s.syn_since) {
                    earliest(since + t);
                }
            }
            for at in self
                .slots
                .iter()
                .filter_map(|s| s.close_deadline(&self.config))
            {
                earliest(at);
            }
            wake
        };
        Poll {
            activity,
            next_wake,
        }
    }

    /// Counters and address state.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.tcp_open = self.slots.iter().filter(|s| s.connected).count();
        let c = &self.device.counters;
        s.frames_rx = c.frames_rx.get();
        s.frames_tx = c.frames_tx.get();
        s.icmp_echo_requests = c.echo_requests.get();
        s.icmp_echo_replies = c.echo_replies.get();
        s
    }

    /// The TCP state of every HTTP slot's socket (tests: a slot leaked is one not listening
    /// once every timeout has passed).
    #[cfg(test)]
    pub(crate) fn slot_states(&self) -> Vec<tcp::State> {
        self.slots
            .iter()
            .map(|s| self.sockets.get::<tcp::Socket<'_>>(s.handle).state())
            .collect()
    }

    /// The configuration the stack runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The driver's device (to refill its queues or read its own counters).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device.inner
    }

    /// The smoltcp interface (addresses, routes, neighbour cache).
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    fn set_static(&mut self, s: StaticIp, state: AddrState) {
        self.set_address(Ipv4Cidr::new(s.ip, s.prefix_len), s.gateway);
        self.stats.addressing = state;
    }

    fn set_address(&mut self, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // Cannot fail: the vector was just cleared and holds at least one address.
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(gw) = gateway {
            // Cannot fail: the only route was just removed.
            let _ = routes.add_default_ipv4_route(gw);
        }
        self.stats.address = Some(cidr);
    }

    fn clear_address(&mut self) {
        self.iface.update_ip_addrs(|addrs| addrs.clear());
        self.iface.routes_mut().remove_default_ipv4_route();
        self.stats.address = None;
    }

    /// Applies DHCP events and the fallback deadline; true if the address changed.
    fn poll_dhcp(&mut self, now: Instant) -> bool {
        let Some(dhcp) = &self.dhcp else { return false };
        let handle = dhcp.handle;
        let event = match self.sockets.get_mut::<dhcpv4::Socket<'_>>(handle).poll() {
            // A router that is no host's address is left out (no default route: the local
            // network still works). smoltcp takes any, and looking up a non-unicast next hop
            // fails an assertion in its neighbour cache (a panic: the kernel's), as soon as an
            // answer goes off the subnet. Until 2026-12-06 a DHCP server naming
            // 255.255.255.255 its router brought the kernel down so (found by the
            // hostile-frames proptest).
            Some(dhcpv4::Event::Configured(c)) => {
                Some(Some((c.address, c.router.filter(|&r| is_host(r)))))
            }
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            None => None,
        };
        match event {
            Some(Some((cidr, router))) => {
                log::info!("net: DHCP lease {cidr} via {router:?}");
                self.set_address(cidr, router);
                self.stats.addressing = AddrState::Dhcp;
                true
            }
            // smoltcp also reports Deconfigured on its first poll, before any lease.
            Some(None) if self.stats.addressing == AddrState::Dhcp => {
                // The fallback gets its whole wait again: the boot's deadline had long
                // passed, and until 2026-12-05 the next poll took the fallback address for
                // good and stopped DHCP (found by review).
                log::info!("net: DHCP lease lost");
                self.clear_address();
                self.stats.addressing = AddrState::DhcpPending;
                if let Some(d) = &mut self.dhcp {
                    d.deadline = now + d.fallback_after;
                }
                true
            }
            Some(None) => false,
            None => match self.fallback_pending() {
                Some((fallback, at)) if now >= at => {
                    log::info!(
                        "net: no DHCP answer, using {}/{}",
                        fallback.ip,
                        fallback.prefix_len
                    );
                    self.sockets.remove(handle);
                    self.dhcp = None;
                    self.set_static(fallback, AddrState::Fallback);
                    true
                }
                _ => false,
            },
        }
    }

    /// The fallback address and when it is due, while DHCP has no lease. [`poll`](Self::poll)
    /// wakes for the deadline only then, as [`poll_dhcp`](Self::poll_dhcp) acts on it only
    /// then: until 2026-12-05 a leased stack kept it as a wake-up, and once it had passed
    /// every idle poll asked for a zero wait (the serve job spun; found by review).
    fn fallback_pending(&self) -> Option<(StaticIp, Instant)> {
        let dhcp = self.dhcp.as_ref()?;
        let fallback = dhcp.fallback?;
        (self.stats.addressing == AddrState::DhcpPending).then_some((fallback, dhcp.deadline))
    }

    /// Puts slot `i` back to listening, forgetting its connection. A slot that held a
    /// half-open connection gets a new socket: smoltcp keeps, per socket, the neighbor it
    /// could not reach (a spoofed SYN's source never answers ARP) and mutes the socket for a
    /// second; the next client on that slot got no SYN-ACK meanwhile, and under a stream of
    /// spoofed SYNs never got one (found while testing the flood fix, 2026-12-04, before
    /// recycled slots had their grace; with the grace the flood test no longer needs it, so
    /// it is kept as a defence, not forced by a test). Without memory for the new buffers
    /// the old socket listens again.
    fn relisten(&mut self, i: usize) {
        if self.slots[i].syn_since.is_some()
            && !self.slots[i].connected
            && let Some(fresh) = tcp_socket(&self.config)
        {
            self.sockets.remove(self.slots[i].handle);
            self.slots[i].handle = self.sockets.add(fresh);
        }
        let port = self.config.http_port;
        let slot = &mut self.slots[i];
        let socket = self.sockets.get_mut::<tcp::Socket<'_>>(slot.handle);
        // TIME-WAIT is given up at once: with a fixed number of slots, holding each closed
        // connection for 10 s would refuse new ones under load.
        if let Err(e) = socket.listen(port) {
            log::warn!("net: slot {i} cannot listen: {e:?}");
        }
        slot.reader.reset();
        slot.out = None;
        slot.answered = false;
        slot.connected = false;
        slot.closing = false;
        slot.syn_since = None;
        slot.idle_closed = None;
    }

    /// Slot `i` is in SYN-RECEIVED: notes when that began, and drops the half-open
    /// connection once `handshake_timeout` passed (an abort: the next egress sends the RST,
    /// and the next pass finds the socket closed and makes it listen again).
    fn handshake(&mut self, i: usize, now: Instant) -> bool {
        let slot = &mut self.slots[i];
        let since = *slot.syn_since.get_or_insert(now);
        if self
            .config
            .handshake_timeout
            .is_none_or(|t| now < since + t)
        {
            return false;
        }
        self.sockets.get_mut::<tcp::Socket<'_>>(slot.handle).abort();
        self.stats.tcp_handshake_drops = self.stats.tcp_handshake_drops.wrapping_add(1);
        true
    }

    /// When no slot listens and two or more are half-open, the oldest half-open one, if it
    /// has been so for [`HALF_OPEN_GRACE`], is dropped and listens again: SYNs from spoofed
    /// sources (which never complete) hold a slot for that grace, not for the whole
    /// handshake timeout. The grace protects real handshakes in flight (a client whose
    /// SYN-ACK was sent must not find its slot gone when its ACK arrives: it would be reset
    /// after it thought itself connected). A lone half-open slot is left to its handshake.
    /// Until 2026-12-04 spoofed SYNs at a few a second kept the port closed (found by
    /// review). Counted as a handshake drop.
    fn keep_one_listening(&mut self, now: Instant) -> bool {
        use tcp::State;
        let state = |sockets: &SocketSet<'_>, h| sockets.get::<tcp::Socket<'_>>(h).state();
        if self
            .slots
            .iter()
            .any(|s| state(&self.sockets, s.handle) == State::Listen)
        {
            return false;
        }
        let half_open = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| state(&self.sockets, s.handle) == State::SynReceived)
        };
        if half_open().count() < 2 {
            return false;
        }
        let Some((i, since)) = half_open()
            .filter_map(|(i, s)| Some((i, s.syn_since?)))
            .min_by_key(|&(_, since)| since)
        else {
            return false;
        };
        if now < since + HALF_OPEN_GRACE {
            return false;
        }
        self.sockets
            .get_mut::<tcp::Socket<'_>>(self.slots[i].handle)
            .abort();
        self.stats.tcp_handshake_drops = self.stats.tcp_handshake_drops.wrapping_add(1);
        self.relisten(i);
        true
    }

    /// The slot to evict for a new client: one closed for idleness and not yet closed by
    /// its client ([`Slot::closed_idle`]), the oldest close first; else the connection idle
    /// between requests the longest, if for [`IDLE_GRACE`] or more.
    fn idle_candidate(&self, now: Instant) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let socket = self.sockets.get(s.handle);
                if s.closed_idle(socket) {
                    Some((i, (false, s.idle_closed?)))
                } else {
                    (s.between_requests(socket) && now >= s.request_since + IDLE_GRACE)
                        .then_some((i, (true, s.request_since)))
                }
            })
            .min_by_key(|&(_, key)| key)
            .map(|(i, _)| i)
    }

    /// Takes one frame from the device and looks at it ([`admit`](Self::admit)); if admitted,
    /// hands it to the interface, else drops it.
    fn ingress_looked_at(&mut self, now: Instant) -> PollIngressSingleResult {
        let mut frame = core::mem::take(&mut self.held);
        frame.clear();
        let Some((rx, _)) = self.device.receive(now) else {
            self.held = frame;
            return PollIngressSingleResult::None;
        };
        let meta = rx.meta();
        rx.consume(|f| frame.extend_from_slice(f));
        let result = if self.admit(&frame, now) {
            let mut replay = Replay {
                frame: Some((&frame, meta)),
                device: &mut self.device,
            };
            self.iface
                .poll_ingress_single(now, &mut replay, &mut self.sockets)
        } else {
            PollIngressSingleResult::PacketProcessed
        };
        self.held = frame;
        result
    }

    /// Whether `frame` may go to the interface. A SYN for the HTTP port from an endpoint a
    /// slot already holds a connection (or a handshake) with is dropped: smoltcp gives a
    /// segment to the first socket that accepts it, a listening slot earlier in the set than
    /// the connection's would take the SYN, go SYN-RECEIVED on the same addresses and ports,
    /// and answer the client's next segment of that connection with a reset in its window.
    /// Until 2026-12-06 one blind SYN (any sequence number) reset an established connection
    /// that way, and a retransmitted SYN started a second handshake on a lower slot whose
    /// reset ended the first (found by review); counted in `tcp_duplicate_syns`. Any other
    /// SYN for the HTTP port may make a slot listen for it ([`make_room`](Self::make_room)).
    ///
    /// An ICMP echo request is answered (by smoltcp) only when sent to the interface's own
    /// address: until 2026-12-06 one sent to the broadcast address (all ones, or the
    /// subnet's) was answered too, so a spoofed victim got a reply from every Exo-OS on the
    /// segment (found by review). It is still counted in `icmp_echo_requests`.
    ///
    /// A packet from no host's address is dropped ([`from_no_host`]).
    fn admit(&mut self, frame: &[u8], now: Instant) -> bool {
        // Parsed once for the three checks (ARP and other protocols: smoltcp's).
        let Some(ip) = crate::device::ipv4_of(frame) else {
            return true;
        };
        // The interface's one IPv4 address (proto-ipv4 only: every address is one).
        let cidr = self.iface.ip_addrs().first().map(|c| match c {
            IpCidr::Ipv4(c) => *c,
        });
        if from_no_host(&ip, cidr) {
            return false;
        }
        let ours = cidr.map(|c| c.address());
        if let Some(dst) = echo_request_to(&ip) {
            return Some(dst) == ours;
        }
        let Some(addr) = ours else {
            return true;
        };
        let Some(from) = syn_to(&ip, addr, self.config.http_port) else {
            return true;
        };
        let held = self.slots.iter().any(|s| {
            let socket = self.sockets.get::<tcp::Socket<'_>>(s.handle);
            socket.state() != tcp::State::Listen && socket.remote_endpoint() == Some(from)
        });
        if held {
            self.stats.tcp_duplicate_syns = self.stats.tcp_duplicate_syns.wrapping_add(1);
            return false;
        }
        self.make_room(now);
        true
    }

    /// A SYN came for the HTTP port (not for a slot's own connection: those are dropped by
    /// [`admit`](Self::admit)): when no slot listens, a connection closed for idleness whose
    /// client has not completed the close, else the connection idle between requests the
    /// longest, if for [`IDLE_GRACE`] ([`idle_candidate`](Self::idle_candidate)), is reset
    /// (the RST goes out at once) and its slot listens for the SYN. Not while two or more slots are half-open: those are recycled by
    /// [`keep_one_listening`](Self::keep_one_listening), and spoofed SYNs would otherwise
    /// evict a connection each. Until 2026-12-05 a few keep-alive clients asking now and then
    /// (or reconnecting) held every slot and a new client was refused meanwhile (found by
    /// review). Counted in `tcp_idle_evictions`.
    fn make_room(&mut self, now: Instant) -> bool {
        use tcp::State;
        let mut half_open = 0;
        for s in &self.slots {
            let socket = self.sockets.get::<tcp::Socket<'_>>(s.handle);
            match socket.state() {
                State::Listen => return false,
                State::SynReceived => half_open += 1,
                _ => {}
            }
        }
        if half_open >= 2 {
            return false;
        }
        let Some(i) = self.idle_candidate(now) else {
            return false;
        };
        self.sockets
            .get_mut::<tcp::Socket<'_>>(self.slots[i].handle)
            .abort();
        self.stats.tcp_idle_evictions = self.stats.tcp_idle_evictions.wrapping_add(1);
        // The RST first: listening forgets the connection.
        let _ = self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets);
        self.relisten(i);
        true
    }

    /// Serves slot `i`; true if anything moved.
    fn serve(&mut self, i: usize, now: Instant) -> bool {
        use tcp::State;
        let state = self
            .sockets
            .get_mut::<tcp::Socket<'_>>(self.slots[i].handle)
            .state();
        match state {
            // Aborts were sent by the previous egress pass: the slot is free again.
            State::Closed | State::TimeWait => {
                let was = self.slots[i].connected;
                self.relisten(i);
                return was;
            }
            State::SynReceived => return self.handshake(i, now),
            State::Listen | State::SynSent => {
                // Back to listening without us (a valid RST in SYN-RECEIVED): the
                // handshake's start goes with it. Left set, it stayed in the past: the
                // poll's wake-up was 0 from then on (a busy loop), and the slot's next SYN
                // was dropped at once as timed out (until 2026-12-04; found by review).
                self.slots[i].syn_since = None;
                return false;
            }
            _ => {}
        }

        let Self {
            sockets,
            slots,
            stats,
            config,
            ..
        } = self;
        let slot = &mut slots[i];
        let socket = sockets.get_mut::<tcp::Socket<'_>>(slot.handle);
        if !slot.connected {
            slot.connected = true;
            slot.syn_since = None;
            slot.last_progress = now;
            slot.request_since = now;
            slot.read_since_response = false;
            slot.answered = false;
            slot.idle_closed = None;
            stats.tcp_accepted = stats.tcp_accepted.wrapping_add(1);
        }

        let mut progress = false;
        loop {
            if let Some((resp, sent)) = &mut slot.out {
                let (head, body) = resp.remaining(*sent);
                let mut n = 0;
                let mut failed = false;
                for piece in [head, body] {
                    if piece.is_empty() {
                        continue;
                    }
                    match socket.send_slice(piece) {
                        Ok(k) => {
                            n += k;
                            if k < piece.len() {
                                break;
                            }
                        }
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                *sent += n;
                stats.http_tx_bytes = stats.http_tx_bytes.wrapping_add(n as u64);
                progress |= n > 0;
                if failed {
                    // The peer is gone: nothing more will be sent on this connection.
                    slot.out = None;
                    slot.closing = true;
                    socket.abort();
                    break;
                }
                if *sent < resp.len() {
                    break; // TX buffer full: the rest goes on a later poll.
                }
                let keep_alive = resp.keep_alive;
                slot.out = None;
                slot.request_since = now;
                slot.read_since_response = false;
                slot.answered = keep_alive;
                if !keep_alive {
                    socket.close();
                    slot.closing = true;
                }
            }
            if slot.closing {
                // Drained, not counted as progress: a peer that keeps sending after our
                // close would otherwise hold the slot for good (a byte a minute kept the
                // idle timeout away until 2026-12-04; found by review). The idle timeout
                // ends a close the peer never completes.
                while let Ok(n) = socket.recv(|d| (d.len(), d.len())) {
                    if n == 0 {
                        break;
                    }
                }
                break;
            }
            if let Some(event) = slot.reader.next_request() {
                let resp = Response::for_event(event, config.body, config.content_type);
                stats.http_requests = stats.http_requests.wrapping_add(1);
                let count = &mut stats.responses[resp.status.index()];
                *count = count.wrapping_add(1);
                if let Event::Error(status) = event {
                    log::debug!("net: slot {i}: bad request, answering {}", status.code());
                }
                slot.out = Some((resp, 0));
                progress = true;
                continue;
            }
            if !socket.can_recv() {
                break;
            }
            let reader = &mut slot.reader;
            let in_body = reader.discarding();
            let n = socket.recv(|d| {
                let n = reader.push(d);
                (n, n)
            });
            match n {
                Ok(n) if n > 0 => {
                    stats.http_rx_bytes = stats.http_rx_bytes.wrapping_add(n as u64);
                    if in_body {
                        // The body of a request already read: each byte buys the upload
                        // 1/BODY_MIN_RATE s; the next head is awaited from the body's last
                        // byte on, and only bytes after it begin it.
                        slot.request_since = if slot.reader.discarding() {
                            let credit =
                                Duration::from_micros(n as u64 * 1_000_000 / BODY_MIN_RATE);
                            (slot.request_since + credit).min(now)
                        } else {
                            now
                        };
                        slot.read_since_response |= slot.reader.buffered() > 0;
                    } else {
                        slot.read_since_response = true;
                    }
                    progress = true;
                }
                _ => break,
            }
        }

        // The client half-closed and everything it asked is answered: close our side.
        if !slot.closing
            && slot.out.is_none()
            && !socket.may_recv()
            && socket.state() == State::CloseWait
        {
            socket.close();
            slot.closing = true;
            progress = true;
        }

        // A request head still incomplete after `request_timeout` (a response being
        // written, or draining from the TX buffer, is not waited on: its pace is the
        // client's reading; a request body being uploaded pushes the clock on at
        // `BODY_MIN_RATE`). Until 2026-12-05 the clock ran from the response's start and through its
        // drain: a client slower than the timeout got a long response cut by a reset (found
        // by review). Until 2026-12-06 it ran from the first body byte after the response
        // to a head with `Content-Length` without regard to the bytes coming: an upload
        // longer than the timeout was cut by a reset however fast (found by review).
        if slot.draining(socket) {
            slot.request_since = now;
        }
        let slow = slot.request_clock_runs(socket)
            && config
                .request_timeout
                .is_some_and(|t| now >= slot.request_since + t);
        let close_overdue = slot.close_deadline(config).is_some_and(|at| now >= at);
        if progress && !slow && !close_overdue {
            slot.last_progress = now;
        } else if slow
            || close_overdue
            || config
                .idle_timeout
                .is_some_and(|idle| now >= slot.last_progress + idle)
        {
            if slot.answered && slot.between_requests(socket) {
                // A keep-alive connection idle between requests is closed with a FIN (the
                // client may ask again on a new one) and given until its close deadline to
                // complete the close; one that does not is then aborted. Until 2026-12-06 it
                // was reset as a hostile one is (found by review).
                socket.close();
                slot.closing = true;
                slot.idle_closed = Some(now);
                slot.last_progress = now;
                stats.tcp_idle_closes = stats.tcp_idle_closes.wrapping_add(1);
            } else {
                socket.abort();
                slot.closing = true;
                slot.out = None;
                slot.idle_closed = None;
                stats.tcp_idle_aborts = stats.tcp_idle_aborts.wrapping_add(1);
            }
            progress = true;
        }
        progress
    }

    /// Echoes every datagram on the UDP echo port; true if any was handled. Each echo goes
    /// out at once or leaves the socket: smoltcp holds a datagram in the socket until its
    /// next hop answers ARP, for good (a source spoofed on the subnet never answers; our own
    /// address, spoofed, neither), the echoes queued behind it wait with it, and the socket
    /// is muted meanwhile. Until 2026-12-06 one such datagram ended the echo service for every
    /// client (found by the hostile-frames proptest). So the datagrams are taken from the
    /// socket first and each echo is queued alone and sent at once; one that did not go out
    /// is taken back by closing the socket (its buffers emptied) and adding it again (with
    /// smoltcp's per-socket neighbour wait gone), and held aside: tried again on each poll
    /// (a client answering the ARP request the attempt sent gets it) until
    /// [`ECHO_ARP_WAIT`], then dropped. One is held at a time, the latest.
    fn echo_udp(&mut self, now: Instant) -> bool {
        let Some(handle) = self.udp else { return false };
        let mut any = false;
        self.echo_pending.clear();
        let socket = self.sockets.get_mut::<udp::Socket<'_>>(handle);
        // At most UDP_PACKETS wait in the socket (its receive metadata ring).
        while self.echo_pending.len() < UDP_PACKETS {
            let at = self.echo_pending.len() * UDP_MAX_PAYLOAD;
            match socket.recv_slice(&mut self.scratch[at..at + UDP_MAX_PAYLOAD]) {
                Ok(r) => self.echo_pending.push(r),
                Err(udp::RecvError::Truncated) => {
                    self.stats.udp_dropped = self.stats.udp_dropped.wrapping_add(1);
                    any = true;
                }
                Err(udp::RecvError::Exhausted) => break,
            }
        }

        const HELD: usize = UDP_PACKETS;
        if let Some((until, len, meta)) = self.echo_held {
            if now >= until {
                self.echo_held = None;
                self.stats.udp_dropped = self.stats.udp_dropped.wrapping_add(1);
                any = true;
            } else if self.echo_now(HELD, len, meta, now) {
                self.echo_held = None;
                any = true;
            }
            // Still waiting is no activity: the poll would be asked for again at once (its
            // wake-up is the deadline).
        }

        for k in 0..self.echo_pending.len() {
            any = true;
            let (len, meta) = self.echo_pending[k];
            // Only to a client's port, and only for a datagram sent to our own address: a
            // spoofed one from another service's port (echo 7, chargen 19, ..) started a
            // loop of echoes, and one sent to the broadcast address made every Exo-OS on the
            // segment answer a spoofed victim (until 2026-12-04; found by review).
            let unicast = |a: Option<IpAddress>| match a {
                Some(IpAddress::Ipv4(a)) => Some(a) == self.iface.ipv4_addr(),
                _ => false,
            };
            if meta.endpoint.port < 1024 || !unicast(meta.local_address) {
                self.stats.udp_dropped = self.stats.udp_dropped.wrapping_add(1);
                continue;
            }
            if self.echo_now(k, len, meta, now) {
                continue;
            }
            if self.echo_held.is_some() {
                self.stats.udp_dropped = self.stats.udp_dropped.wrapping_add(1);
            }
            self.scratch.copy_within(
                k * UDP_MAX_PAYLOAD..k * UDP_MAX_PAYLOAD + len,
                HELD * UDP_MAX_PAYLOAD,
            );
            self.echo_held = Some((now + ECHO_ARP_WAIT, len, meta));
        }
        any
    }

    /// Sends the echo of the datagram in scratch slot `k` at once; false if it did not go out
    /// (counted as dropped only if the socket refused it): the echo socket is then emptied
    /// and added again ([`echo_udp`](Self::echo_udp)).
    fn echo_now(&mut self, k: usize, len: usize, meta: udp::UdpMetadata, now: Instant) -> bool {
        let Some(handle) = self.udp else { return false };
        let data = &self.scratch[k * UDP_MAX_PAYLOAD..k * UDP_MAX_PAYLOAD + len];
        let socket = self.sockets.get_mut::<udp::Socket<'_>>(handle);
        if socket.send_slice(data, meta.endpoint).is_err() {
            self.stats.udp_dropped = self.stats.udp_dropped.wrapping_add(1);
            return true;
        }
        let before = self.device.counters.udp_echo_frames.get();
        let _ = self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets);
        if self.device.counters.udp_echo_frames.get() != before {
            self.stats.udp_echoed = self.stats.udp_echoed.wrapping_add(1);
            return true;
        }
        self.udp = match self.sockets.remove(handle) {
            smoltcp::socket::Socket::Udp(mut socket) => {
                socket.close();
                // Cannot fail: the port is non-zero and the socket closed.
                let _ = socket.bind(self.config.udp_echo_port);
                Some(self.sockets.add(socket))
            }
            _ => None,
        };
        false
    }
}
