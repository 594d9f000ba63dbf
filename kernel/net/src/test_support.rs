//! What the stack's tests share: the simulated network ([`Net`]: the server stack, a
//! plain smoltcp client and a virtual clock) and hand-made frames (spoofed segments,
//! datagrams, pings, ARP requests, a fake DHCP server).

use std::format;
use std::vec;
use std::vec::Vec;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
};

use crate::testing::{Faults, Port, wire};
use crate::*;

pub(crate) const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
pub(crate) const CLIENT_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
pub(crate) const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
pub(crate) const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

pub(crate) const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: exo-os\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\nHello from Exo-OS\n";

pub(crate) fn static_config() -> Config {
    Config {
        addr: Addressing::Static(StaticIp::QEMU_USER),
        ..Config::qemu_user(SERVER_MAC)
    }
}

pub(crate) fn get(extra: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: 10.0.2.15\r\n{extra}\r\n").into_bytes()
}

/// The server stack, a client interface, and a virtual clock stepping 1 ms at a time.
pub(crate) struct Net {
    pub(crate) stack: Stack<Port>,
    pub(crate) client: Interface,
    pub(crate) cdev: Port,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) now: Instant,
    pub(crate) next_port: u16,
    /// Where [`Net::open`] connects to.
    pub(crate) server: Ipv4Address,
    /// The client's UDP socket, once a test made one.
    pub(crate) udp_client: Option<SocketHandle>,
}

impl Net {
    pub(crate) fn new(config: Config) -> Self {
        Self::with_faults(config, Faults::default(), Faults::default())
    }

    pub(crate) fn with_faults(config: Config, to_server: Faults, to_client: Faults) -> Self {
        let (mut cdev, sdev) = wire(to_server, to_client);
        let now = Instant::from_millis(0);
        let stack = Stack::new(sdev, config, now).expect("config accepted");
        let mut c = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
        c.random_seed = 7;
        let mut client = Interface::new(c, &mut cdev, now);
        client.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), 24)).unwrap());
        Self {
            stack,
            client,
            cdev,
            sockets: SocketSet::new(vec![]),
            now,
            next_port: 40000,
            server: SERVER_IP,
            udp_client: None,
        }
    }

    pub(crate) fn step(&mut self) {
        self.now += Duration::from_millis(1);
        self.stack.poll(self.now);
        self.client
            .poll(self.now, &mut self.cdev, &mut self.sockets);
        if self.cdev.pending() == 0 {
            // A frame held back for reordering goes out once nothing else follows it.
            self.cdev.flush();
            self.stack.device_mut().flush();
        }
    }

    /// Steps until `done` holds; false after `ms` virtual milliseconds.
    pub(crate) fn run_until(&mut self, ms: u64, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        for _ in 0..ms {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Steps 1 ms with only the server stack on the wire, answering its DHCP frames with
    /// leases of `lease_secs` (`None`: the DHCP server is silent); returns the replies sent.
    /// Other frames are dropped.
    pub(crate) fn dhcp_step(&mut self, lease_secs: Option<u32>) -> usize {
        self.now += Duration::from_millis(1);
        self.stack.poll(self.now);
        let mut replies = 0;
        while let Some(frame) = self.cdev.take() {
            if let Some(reply) = lease_secs.and_then(|l| fake_dhcp_server(&frame, l)) {
                self.cdev.inject(reply);
                replies += 1;
            }
        }
        replies
    }

    /// Runs the fake DHCP server until the stack holds a lease of `lease_secs` (at most 2 s);
    /// returns the replies sent.
    pub(crate) fn lease(&mut self, lease_secs: u32) -> usize {
        let mut replies = 0;
        for _ in 0..2000 {
            replies += self.dhcp_step(Some(lease_secs));
            if self.stack.stats().addressing == AddrState::Dhcp {
                break;
            }
        }
        assert_eq!(self.stack.stats().addressing, AddrState::Dhcp, "no lease");
        replies
    }

    pub(crate) fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut(h)
    }

    /// Opens a connection to the server's HTTP port (not waiting for it).
    pub(crate) fn open(&mut self) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        s.set_nagle_enabled(false);
        self.next_port += 1;
        s.connect(
            self.client.context(),
            (IpAddress::Ipv4(self.server), 80),
            self.next_port,
        )
        .unwrap();
        self.sockets.add(s)
    }

    pub(crate) fn connect(&mut self) -> SocketHandle {
        let h = self.open();
        assert!(
            self.run_until(5000, |n| n.tcp(h).state() == tcp::State::Established),
            "connect timed out"
        );
        h
    }

    pub(crate) fn send(&mut self, h: SocketHandle, data: &[u8]) {
        assert_eq!(self.tcp(h).send_slice(data), Ok(data.len()));
    }

    /// Reads until `want` bytes arrived (or the peer closed, or 10 virtual seconds passed).
    pub(crate) fn read(&mut self, h: SocketHandle, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        self.run_until(10_000, |n| {
            let s = n.tcp(h);
            while s.can_recv() {
                s.recv(|d| {
                    got.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            got.len() >= want || !s.may_recv()
        });
        got
    }

    pub(crate) fn exchange(&mut self, h: SocketHandle, request: &[u8], want: usize) -> Vec<u8> {
        self.send(h, request);
        self.read(h, want)
    }

    /// True once the server closed its side of `h`.
    pub(crate) fn server_closed(&mut self, h: SocketHandle) -> bool {
        self.run_until(2000, |n| {
            let s = n.tcp(h);
            while s.recv(|d| (d.len(), ())).is_ok_and(|()| s.can_recv()) {}
            !s.may_recv()
        })
    }
}

/// A one-lease DHCP server: answers a DISCOVER with an OFFER and a REQUEST with an ACK of
/// 10.0.2.16/24 via 10.0.2.2 for `lease_secs` (broadcast replies, as to a client without an
/// address).
pub(crate) fn fake_dhcp_server(frame: &[u8], lease_secs: u32) -> Option<Vec<u8>> {
    fake_dhcp_server_with(frame, lease_secs, CLIENT_IP, CLIENT_IP)
}

/// [`fake_dhcp_server`] with its replies' IP source address `src` and the router it names
/// `router` (the server identifier stays 10.0.2.2).
pub(crate) fn fake_dhcp_server_with(
    frame: &[u8],
    lease_secs: u32,
    src: Ipv4Address,
    router: Ipv4Address,
) -> Option<Vec<u8>> {
    use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, IpProtocol, UdpPacket};
    let ip = crate::device::ipv4_of(frame)?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 67 {
        return None;
    }
    let dhcp = DhcpPacket::new_checked(udp.payload()).ok()?;
    let req = DhcpRepr::parse(&dhcp).ok()?;
    let message_type = match req.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let server = CLIENT_IP;
    let reply = DhcpRepr {
        message_type,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: Ipv4Address::new(10, 0, 2, 16),
        server_ip: server,
        router: Some(router),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(server),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(lease_secs),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut payload = vec![0; reply.buffer_len()];
    reply
        .emit(&mut DhcpPacket::new_unchecked(&mut payload[..]))
        .unwrap();
    Some(udp_frame(
        Eth(CLIENT_MAC, BROADCAST_MAC),
        (src, 67),
        (Ipv4Address::BROADCAST, 68),
        &payload,
    ))
}

/// A TCP SYN to the server's HTTP port from `src` (an address nobody answers ARP for: a
/// spoofed source, or a client gone), built by hand.
pub(crate) fn spoofed_syn(src: Ipv4Address, src_port: u16) -> Vec<u8> {
    segment_to_server(src, src_port, smoltcp::wire::TcpControl::Syn, 1000, None)
}

/// A hand-made TCP segment from `src:src_port` to the server's port 80 (a SYN carries an
/// MSS option).
pub(crate) fn segment_to_server(
    src: Ipv4Address,
    src_port: u16,
    control: smoltcp::wire::TcpControl,
    seq: u32,
    ack: Option<u32>,
) -> Vec<u8> {
    use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber};
    let tcp = TcpRepr {
        src_port,
        dst_port: 80,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 1024,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    tcp_frame(Eth(GHOST_MAC, SERVER_MAC), src, SERVER_IP, &tcp)
}

/// A hand-made UDP datagram from `src:src_port` to `dst` (Ethernet `dmac`), port 7.
pub(crate) fn udp_to(
    src: Ipv4Address,
    src_port: u16,
    dst: Ipv4Address,
    dmac: [u8; 6],
    payload: &[u8],
) -> Vec<u8> {
    udp_frame(Eth(PEER_MAC, dmac), (src, src_port), (dst, 7), payload)
}

/// An ARP request from `src` (MAC `mac`) for the server's address: the server learns where
/// `src` is (a hand-made client the test plays itself).
pub(crate) fn arp_request_from(src: Ipv4Address, mac: [u8; 6]) -> Vec<u8> {
    arp_request(src, mac, SERVER_IP)
}

/// An ARP request from `src` (MAC `mac`) for `target`.
pub(crate) fn arp_request(src: Ipv4Address, mac: [u8; 6], target: Ipv4Address) -> Vec<u8> {
    use smoltcp::wire::{ArpOperation, ArpRepr};
    arp_frame(
        Eth(mac, BROADCAST_MAC),
        &ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(mac),
            source_protocol_addr: src,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        },
    )
}

/// The Ethernet source of [`spoofed_syn`] and [`segment_to_server`].
pub(crate) const GHOST_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x63];
/// The Ethernet source of [`udp_to`] and [`icmp_echo_to`].
pub(crate) const PEER_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x4d];
/// The Ethernet broadcast address.
pub(crate) const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Ethernet source and destination of a hand-made frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Eth(pub(crate) [u8; 6], pub(crate) [u8; 6]);

/// An Ethernet frame of `ethertype` whose `len`-byte payload `emit` writes.
pub(crate) fn eth_frame(
    eth: Eth,
    ethertype: smoltcp::wire::EthernetProtocol,
    len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    use smoltcp::wire::{EthernetFrame, EthernetRepr};
    let repr = EthernetRepr {
        src_addr: EthernetAddress(eth.0),
        dst_addr: EthernetAddress(eth.1),
        ethertype,
    };
    let mut buf = vec![0; repr.buffer_len() + len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    repr.emit(&mut frame);
    emit(frame.payload_mut());
    buf
}

/// An Ethernet frame carrying an IPv4 packet (TTL 64, checksum filled) from `src` to `dst`
/// whose `len`-byte payload of protocol `proto` `emit` writes.
pub(crate) fn ipv4_frame(
    eth: Eth,
    src: Ipv4Address,
    dst: Ipv4Address,
    proto: smoltcp::wire::IpProtocol,
    len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    use smoltcp::wire::{EthernetProtocol, Ipv4Packet, Ipv4Repr};
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: len,
        hop_limit: 64,
    };
    eth_frame(eth, EthernetProtocol::Ipv4, ip.buffer_len() + len, |b| {
        let mut packet = Ipv4Packet::new_unchecked(b);
        ip.emit(&mut packet, &ChecksumCapabilities::default());
        emit(packet.payload_mut());
    })
}

/// A TCP segment from `src` to `dst` (checksums filled).
pub(crate) fn tcp_frame(
    eth: Eth,
    src: Ipv4Address,
    dst: Ipv4Address,
    tcp: &smoltcp::wire::TcpRepr<'_>,
) -> Vec<u8> {
    use smoltcp::wire::{IpProtocol, TcpPacket};
    ipv4_frame(eth, src, dst, IpProtocol::Tcp, tcp.buffer_len(), |b| {
        tcp.emit(
            &mut TcpPacket::new_unchecked(b),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &ChecksumCapabilities::default(),
        );
    })
}

/// A UDP datagram from `src` to `dst`, each an address and a port (checksums filled).
pub(crate) fn udp_frame(
    eth: Eth,
    src: (Ipv4Address, u16),
    dst: (Ipv4Address, u16),
    payload: &[u8],
) -> Vec<u8> {
    use smoltcp::wire::{IpProtocol, UdpPacket, UdpRepr};
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let len = udp.header_len() + payload.len();
    ipv4_frame(eth, src.0, dst.0, IpProtocol::Udp, len, |b| {
        udp.emit(
            &mut UdpPacket::new_unchecked(b),
            &IpAddress::Ipv4(src.0),
            &IpAddress::Ipv4(dst.0),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// An ICMP message from `src` to `dst` (checksums filled).
pub(crate) fn icmp_frame(
    eth: Eth,
    src: Ipv4Address,
    dst: Ipv4Address,
    icmp: &Icmpv4Repr<'_>,
) -> Vec<u8> {
    use smoltcp::wire::IpProtocol;
    ipv4_frame(eth, src, dst, IpProtocol::Icmp, icmp.buffer_len(), |b| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(b),
            &ChecksumCapabilities::default(),
        );
    })
}

/// An ARP packet.
pub(crate) fn arp_frame(eth: Eth, arp: &smoltcp::wire::ArpRepr) -> Vec<u8> {
    use smoltcp::wire::{ArpPacket, EthernetProtocol};
    eth_frame(eth, EthernetProtocol::Arp, arp.buffer_len(), |b| {
        arp.emit(&mut ArpPacket::new_unchecked(b));
    })
}

/// A TCP segment the server sent to `dst`: (SYN, RST, sequence number, acknowledgment).
pub(crate) type Seg = (bool, bool, u32, Option<u32>);

pub(crate) fn tcp_to(frame: &[u8], dst: Ipv4Address) -> Option<Seg> {
    use smoltcp::wire::{IpProtocol, TcpPacket};
    let ip = crate::device::ipv4_of(frame)?;
    if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != dst {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((
        t.syn(),
        t.rst(),
        t.seq_number().0 as u32,
        t.ack().then(|| t.ack_number().0 as u32),
    ))
}

/// A hand-made ICMP echo request from `src` to `dst` (Ethernet `dmac`).
pub(crate) fn icmp_echo_to(src: Ipv4Address, dst: Ipv4Address, dmac: [u8; 6]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: &[0xAA; 1000],
    };
    icmp_frame(Eth(PEER_MAC, dmac), src, dst, &icmp)
}

/// Sends `payload` from a client UDP socket (bound to 5555 on first use) to the echo port;
/// true if the echo came back within `ms` virtual milliseconds (false if the client socket
/// had no room for it).
pub(crate) fn udp_echo_answered(net: &mut Net, payload: &[u8], ms: u64) -> bool {
    let h = *net.udp_client.get_or_insert_with(|| {
        let meta = || vec![udp::PacketMetadata::EMPTY; 4];
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(meta(), vec![0; 4096]),
            udp::PacketBuffer::new(meta(), vec![0; 4096]),
        );
        s.bind(5555).unwrap();
        net.sockets.add(s)
    });
    let to = (IpAddress::Ipv4(net.server), 7);
    let s = net.sockets.get_mut::<udp::Socket<'_>>(h);
    while s.recv().is_ok() {}
    if s.send_slice(payload, to).is_err() {
        return false;
    }
    net.run_until(ms, |n| {
        n.sockets
            .get_mut::<udp::Socket<'_>>(h)
            .recv()
            .is_ok_and(|(d, _)| d == payload)
    })
}
