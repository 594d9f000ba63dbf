//! Hostile frames against the stack, under proptest. Everything from the network is hostile
//! input: each case throws a sequence of frames at a fresh stack (hand-made ones with their
//! fields mutated, a peer playing TCP by hand with the server's real sequence numbers,
//! random bytes, truncated or bit-flipped valid frames), interleaved with a real client's
//! traffic, over simulated time. Each poll must return (a poll that never did would hang the
//! test), take at most `INGRESS_BUDGET` frames, send a bounded number, never ask for an
//! immediate wake-up when idle, and leave the counters consistent; once every timeout has
//! passed, every slot listens again, every frame sent to the stack has been taken, the stack
//! sleeps (no busy loop), and a fresh client gets `GET /` and a UDP echo.
//!
//! Deterministic: simulated time only, and a fixed seed (`PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` explore further).

use std::string::String;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpOperation, ArpRepr, DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame,
    Icmpv4DstUnreachable, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr, UdpPacket,
};

use crate::http::Status;
use crate::stack::INGRESS_BUDGET;
use crate::test_support::*;
use crate::*;

/// Cases per run (`PROPTEST_CASES` overrides): about 12 s in a debug build on a loaded 2-core
/// host.
const CASES: u32 = 512;

/// The hand-played TCP peer: it answers ARP for itself (so the server's segments reach it)
/// and watches the server's segments to ACK them and send in-window data.
const GHOST_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 99);
const GHOST_PORTS: [u16; 3] = [5001, 5002, 5003];
/// The address the fake DHCP server leases (see `fake_dhcp_server`).
const LEASED_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 16);

fn config() -> ProptestConfig {
    let env = |k| std::env::var(k).ok();
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: env("PROPTEST_CASES")
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        rng_seed: if env("PROPTEST_RNG_SEED").is_some() {
            default.rng_seed
        } else {
            RngSeed::Fixed(0x6E65_7466_757A)
        },
        // The cases are replayed from the fixed seed: no regression files in the tree.
        failure_persistence: None,
        ..default
    }
}

/// How the stack under test is set up.
#[derive(Clone, Debug)]
struct Setup {
    slots: usize,
    rx_buffer: usize,
    tx_buffer: usize,
    request_limit: usize,
    idle_s: u64,
    /// DHCP, starting with a lease of this many seconds, or with none if 0 (the hostile
    /// frames are then the only DHCP server until the fallback); `None`: the static address.
    dhcp_lease: Option<u32>,
}

fn setup() -> BoxedStrategy<Setup> {
    (
        1usize..=4,
        prop_oneof![Just(256usize), Just(4096)],
        prop_oneof![Just(256usize), Just(8192)],
        prop_oneof![Just(128usize), Just(4096)],
        prop_oneof![Just(2u64), Just(5)],
        prop_oneof![
            6 => Just(None),
            2 => Just(Some(0u32)),
            1 => Just(Some(30)),
            1 => Just(Some(3600)),
        ],
    )
        .prop_map(
            |(slots, rx_buffer, tx_buffer, request_limit, idle_s, dhcp_lease)| Setup {
                slots,
                rx_buffer,
                tx_buffer,
                request_limit,
                idle_s,
                dhcp_lease,
            },
        )
        .boxed()
}

/// A hand-made frame's shape before it is mutated.
#[derive(Clone, Debug)]
enum Shape {
    Tcp {
        sport: u16,
        dport: u16,
        control: u8,
        seq: u32,
        ack: Option<u32>,
        window: u16,
        mss: Option<u16>,
        window_scale: Option<u8>,
        sack_permitted: bool,
        timestamp: Option<(u32, u32)>,
        payload: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// Echo request (0), echo reply (1), destination unreachable about a TCP segment of
    /// ours (2).
    Icmp {
        kind: u8,
        ident: u16,
        code: u8,
        data: Vec<u8>,
    },
    Arp {
        op: u16,
        sha: [u8; 6],
        spa: Ipv4Address,
        tpa: Ipv4Address,
    },
    /// A DHCP reply to port 68; `xid_ours` takes the transaction id of the stack's last
    /// request (seen on the wire), so that the reply is looked at, not dropped at once.
    Dhcp {
        msg: u8,
        xid_ours: bool,
        xid: u32,
        /// The host part of the address offered in 10.0.2.0/24 (a reply the stack would
        /// take leaves it reachable by the final client).
        host: u8,
        server_id: Option<Ipv4Address>,
        router: Option<Ipv4Address>,
        lease: Option<u32>,
        renew: Option<u32>,
        rebind: Option<u32>,
    },
    /// Any other IP protocol.
    Ip { proto: u8, payload: Vec<u8> },
}

/// A field changed after the frame was built.
#[derive(Clone, Debug)]
enum Mutation {
    IpHeaderLen(u8),
    IpTotalLen(u16),
    Ttl(u8),
    Fragment {
        more: bool,
        offset: u16,
        ident: u16,
    },
    DontFrag,
    IpVersion(u8),
    TcpHeaderLen(u8),
    TcpFlags(u8),
    UdpLen(u16),
    /// Appends bytes after the packet (Ethernet padding, or a lie about the length).
    Trailer(Vec<u8>),
}

/// A hostile frame.
#[derive(Clone, Debug)]
enum Hostile {
    Shaped {
        eth: (u8, [u8; 6]),
        src: Ipv4Address,
        dst: Ipv4Address,
        shape: Shape,
        mutations: Vec<Mutation>,
        /// Fill the IP and TCP/UDP checksums again after the mutations (else a mutated
        /// frame carries the checksum of the unmutated one).
        fix_checksums: bool,
        /// Then: bits flipped (byte index, mask) and a truncation.
        flips: Vec<(usize, u8)>,
        truncate: Option<usize>,
    },
    Raw(Vec<u8>),
}

/// What the hand-played peer on `GHOST_PORTS[port]` does.
#[derive(Clone, Debug)]
enum GhostOp {
    Syn {
        isn: u32,
        mss: Option<u16>,
    },
    Segment {
        payload: Vec<u8>,
        fin: bool,
        rst: bool,
        /// Added to the right sequence number and acknowledgment (mostly 0).
        seq_delta: i32,
        ack_delta: i32,
        window: u16,
    },
}

#[derive(Clone, Debug)]
enum ClientOp {
    Open,
    /// Sends a request on the k-th connection opened (modulo), if established.
    Request(usize, Vec<u8>),
    Read(usize),
    Close(usize),
    Abort(usize),
    Udp(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Op {
    Frame(Hostile),
    /// Several copies of a frame at once (a burst past the ingress budget).
    Burst(Hostile, usize),
    Ghost(usize, GhostOp),
    Client(ClientOp),
    /// Steps of 1 ms.
    Steps(u64),
    /// A jump of simulated time, then one step.
    Jump(u64),
}

fn addr() -> BoxedStrategy<Ipv4Address> {
    prop_oneof![
        6 => Just(SERVER_IP),
        2 => Just(LEASED_IP),
        2 => Just(CLIENT_IP),
        2 => Just(GHOST_IP),
        1 => Just(Ipv4Address::new(10, 0, 2, 255)),
        1 => Just(Ipv4Address::BROADCAST),
        1 => Just(Ipv4Address::UNSPECIFIED),
        1 => Just(Ipv4Address::new(224, 0, 0, 1)),
        1 => Just(Ipv4Address::new(127, 0, 0, 1)),
        2 => any::<[u8; 4]>().prop_map(Ipv4Address::from),
    ]
    .boxed()
}

fn port() -> BoxedStrategy<u16> {
    prop_oneof![
        4 => Just(80u16),
        2 => Just(7),
        1 => Just(67),
        1 => Just(68),
        1 => Just(0),
        2 => Just(40001),
        2 => 5001u16..5004,
        2 => any::<u16>(),
    ]
    .boxed()
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max).boxed()
}

/// Request bytes: valid, partial, oversized, with a body, or garbage.
fn http_bytes() -> BoxedStrategy<Vec<u8>> {
    let text = |s: &str| s.as_bytes().to_vec();
    prop_oneof![
        4 => Just(text("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
        1 => Just(text("GET / HTTP/1.0\r\n\r\n")),
        1 => Just(text("HEAD /nope HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")),
        1 => Just(text("GET / HTT")),
        1 => Just(text("POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\nabc")),
        1 => Just(text("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")),
        1 => Just(text("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")),
        1 => (1usize..3000).prop_map(move |n| {
            let mut v = text("GET / HTTP/1.1\r\nX: ");
            v.resize(v.len() + n, b'a');
            v
        }),
        1 => bytes(200),
    ]
    .boxed()
}

fn shape() -> BoxedStrategy<Shape> {
    let tcp = (
        (port(), prop_oneof![6 => Just(80u16), 1 => port()], 0u8..6),
        (
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            any::<u16>(),
        ),
        (
            proptest::option::of(prop_oneof![Just(0u16), Just(1), Just(536), any::<u16>()]),
            proptest::option::of(0u8..20),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
        ),
        prop_oneof![2 => Just(Vec::new()), 1 => http_bytes()],
    )
        .prop_map(
            |((sport, dport, control), (seq, ack, window), (mss, ws, sack, ts), payload)| {
                Shape::Tcp {
                    sport,
                    dport,
                    control,
                    seq,
                    ack,
                    window,
                    mss,
                    window_scale: ws,
                    sack_permitted: sack,
                    timestamp: ts,
                    payload,
                }
            },
        )
        .boxed();
    let udp = (
        port(),
        prop_oneof![4 => Just(7u16), 1 => port()],
        prop_oneof![bytes(64), bytes(1600)],
    )
        .prop_map(|(sport, dport, payload)| Shape::Udp {
            sport,
            dport,
            payload,
        });
    let icmp =
        (0u8..3, any::<u16>(), any::<u8>(), bytes(1500)).prop_map(|(kind, ident, code, data)| {
            Shape::Icmp {
                kind,
                ident,
                code,
                data,
            }
        });
    let arp = (
        prop_oneof![Just(1u16), Just(2), any::<u16>()],
        prop_oneof![
            Just(GHOST_MAC),
            Just(CLIENT_MAC),
            Just(SERVER_MAC),
            any::<[u8; 6]>()
        ],
        addr(),
        addr(),
    )
        .prop_map(|(op, sha, spa, tpa)| Shape::Arp { op, sha, spa, tpa });
    let dhcp = dhcp_shape(any::<bool>().boxed());
    let ip = (any::<u8>(), bytes(100)).prop_map(|(proto, payload)| Shape::Ip { proto, payload });
    prop_oneof![6 => tcp, 3 => udp, 2 => icmp, 2 => arp, 2 => dhcp, 1 => ip].boxed()
}

/// A DHCP reply; `xid_ours`: whether it answers the stack's last message.
fn dhcp_shape(xid_ours: BoxedStrategy<bool>) -> BoxedStrategy<Shape> {
    let secs = || proptest::option::of(prop_oneof![Just(0u32), 1u32..100, any::<u32>()]);
    (
        (1u8..9, xid_ours, any::<u32>(), any::<u8>()),
        (
            prop_oneof![3 => addr().prop_map(Some), 1 => Just(None)],
            proptest::option::of(addr()),
        ),
        (secs(), secs(), secs()),
    )
        .prop_map(
            |((msg, xid_ours, xid, host), (server_id, router), (lease, renew, rebind))| {
                Shape::Dhcp {
                    msg,
                    xid_ours,
                    xid,
                    host,
                    server_id,
                    router,
                    lease,
                    renew,
                    rebind,
                }
            },
        )
        .boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        (0u8..16).prop_map(Mutation::IpHeaderLen),
        any::<u16>().prop_map(Mutation::IpTotalLen),
        prop_oneof![Just(0u8), Just(1), Just(255)].prop_map(Mutation::Ttl),
        (
            any::<bool>(),
            prop_oneof![Just(0u16), 1u16..8192],
            any::<u16>()
        )
            .prop_map(|(more, offset, ident)| Mutation::Fragment {
                more,
                offset,
                ident
            }),
        Just(Mutation::DontFrag),
        (0u8..16).prop_map(Mutation::IpVersion),
        (0u8..16).prop_map(Mutation::TcpHeaderLen),
        any::<u8>().prop_map(Mutation::TcpFlags),
        any::<u16>().prop_map(Mutation::UdpLen),
        bytes(64).prop_map(Mutation::Trailer),
    ]
    .boxed()
}

fn hostile() -> BoxedStrategy<Hostile> {
    let eth = (
        0u8..4,
        prop_oneof![Just(GHOST_MAC), Just(SERVER_MAC), any::<[u8; 6]>()],
    );
    let shaped = (
        (eth, addr(), addr(), shape()),
        (
            proptest::collection::vec(mutation(), 0..3),
            prop_oneof![3 => Just(true), 1 => Just(false)],
            prop_oneof![
                3 => Just(Vec::new()),
                1 => proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
            ],
            prop_oneof![4 => Just(None), 1 => any::<usize>().prop_map(Some)],
        ),
    )
        .prop_map(
            |((eth, src, dst, shape), (mutations, fix_checksums, flips, truncate))| {
                Hostile::Shaped {
                    eth,
                    src,
                    dst,
                    shape,
                    mutations,
                    fix_checksums,
                    flips,
                    truncate,
                }
            },
        );
    prop_oneof![5 => shaped, 1 => bytes(1600).prop_map(Hostile::Raw)].boxed()
}

fn ghost_op() -> BoxedStrategy<GhostOp> {
    let delta = || prop_oneof![6 => Just(0i32), 1 => -3000i32..3000, 1 => any::<i32>()];
    prop_oneof![
        1 => (any::<u32>(), proptest::option::of(prop_oneof![Just(1u16), Just(1460)]))
            .prop_map(|(isn, mss)| GhostOp::Syn { isn, mss }),
        4 => (
            prop_oneof![2 => Just(Vec::new()), 3 => http_bytes()],
            prop_oneof![5 => Just(false), 1 => Just(true)],
            prop_oneof![9 => Just(false), 1 => Just(true)],
            delta(),
            delta(),
            prop_oneof![Just(0u16), Just(1), Just(65535)],
        )
            .prop_map(|(payload, fin, rst, seq_delta, ack_delta, window)| GhostOp::Segment {
                payload,
                fin,
                rst,
                seq_delta,
                ack_delta,
                window,
            }),
    ]
    .boxed()
}

fn client_op() -> BoxedStrategy<ClientOp> {
    prop_oneof![
        2 => Just(ClientOp::Open),
        3 => (any::<usize>(), http_bytes()).prop_map(|(k, r)| ClientOp::Request(k, r)),
        2 => any::<usize>().prop_map(ClientOp::Read),
        1 => any::<usize>().prop_map(ClientOp::Close),
        1 => any::<usize>().prop_map(ClientOp::Abort),
        1 => bytes(1500).prop_map(ClientOp::Udp),
    ]
    .boxed()
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        8 => hostile().prop_map(Op::Frame),
        // A DHCP server answering the stack with any lease (unmutated).
        1 => dhcp_shape(Just(true).boxed()).prop_map(|shape| Op::Frame(Hostile::Shaped {
            eth: (2, GHOST_MAC),
            src: CLIENT_IP,
            dst: Ipv4Address::BROADCAST,
            shape,
            mutations: Vec::new(),
            fix_checksums: true,
            flips: Vec::new(),
            truncate: None,
        })),
        1 => (hostile(), 1usize..200).prop_map(|(h, n)| Op::Burst(h, n)),
        8 => (0..GHOST_PORTS.len(), ghost_op()).prop_map(|(p, g)| Op::Ghost(p, g)),
        5 => client_op().prop_map(Op::Client),
        4 => (1u64..50).prop_map(Op::Steps),
        1 => (100u64..4000).prop_map(Op::Jump),
    ]
    .boxed()
}

/// A hostile frame's bytes.
fn build(h: &Hostile, dhcp_xid: Option<(u32, bool)>) -> Vec<u8> {
    let Hostile::Shaped {
        eth: (dst_kind, smac),
        src,
        dst,
        shape,
        mutations,
        fix_checksums,
        flips,
        truncate,
    } = h
    else {
        let Hostile::Raw(b) = h else { unreachable!() };
        return b.clone();
    };
    let dmac = match dst_kind {
        0 | 1 => SERVER_MAC,
        2 => BROADCAST_MAC,
        _ => [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
    };
    let eth = Eth(*smac, dmac);
    let (src, dst) = (*src, *dst);
    let mut frame = match shape {
        Shape::Tcp {
            sport,
            dport,
            control,
            seq,
            ack,
            window,
            mss,
            window_scale,
            sack_permitted,
            timestamp,
            payload,
        } => tcp_frame(
            eth,
            src,
            dst,
            &TcpRepr {
                src_port: *sport,
                dst_port: *dport,
                control: [
                    TcpControl::None,
                    TcpControl::Psh,
                    TcpControl::Syn,
                    TcpControl::Fin,
                    TcpControl::Rst,
                    TcpControl::None,
                ][*control as usize % 6],
                seq_number: TcpSeqNumber(*seq as i32),
                ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
                window_len: *window,
                window_scale: *window_scale,
                max_seg_size: *mss,
                sack_permitted: *sack_permitted,
                sack_ranges: [None; 3],
                timestamp: timestamp.map(|(v, e)| TcpTimestampRepr::new(v, e)),
                payload,
            },
        ),
        Shape::Udp {
            sport,
            dport,
            payload,
        } => udp_frame(eth, (src, *sport), (dst, *dport), payload),
        Shape::Icmp {
            kind,
            ident,
            code,
            data,
        } => {
            let quoted = Ipv4Repr {
                src_addr: dst,
                dst_addr: src,
                next_header: IpProtocol::Tcp,
                payload_len: data.len().min(8),
                hop_limit: 64,
            };
            let repr = match kind {
                0 => Icmpv4Repr::EchoRequest {
                    ident: *ident,
                    seq_no: *ident,
                    data,
                },
                1 => Icmpv4Repr::EchoReply {
                    ident: *ident,
                    seq_no: 1,
                    data,
                },
                _ => Icmpv4Repr::DstUnreachable {
                    reason: Icmpv4DstUnreachable::from(*code % 16),
                    header: quoted,
                    data: &data[..data.len().min(8)],
                },
            };
            icmp_frame(eth, src, dst, &repr)
        }
        Shape::Arp { op, sha, spa, tpa } => arp_frame(
            eth,
            &ArpRepr::EthernetIpv4 {
                operation: ArpOperation::from(*op),
                source_hardware_addr: EthernetAddress(*sha),
                source_protocol_addr: *spa,
                target_hardware_addr: EthernetAddress(SERVER_MAC),
                target_protocol_addr: *tpa,
            },
        ),
        Shape::Dhcp {
            msg,
            xid_ours,
            xid,
            host,
            server_id,
            router,
            lease,
            renew,
            rebind,
        } => {
            // One answering the stack's last message is what a server would answer (an
            // OFFER to a DISCOVER, an ACK or a NAK to a REQUEST), with any fields.
            let (message_type, transaction_id) = match dhcp_xid.filter(|_| *xid_ours) {
                Some((id, true)) => (DhcpMessageType::Offer, id),
                Some((id, false)) if *msg == 6 => (DhcpMessageType::Nak, id),
                Some((id, false)) => (DhcpMessageType::Ack, id),
                None => (DhcpMessageType::from(*msg), *xid),
            };
            let repr = DhcpRepr {
                message_type,
                transaction_id,
                secs: 0,
                client_hardware_address: EthernetAddress(SERVER_MAC),
                client_ip: Ipv4Address::UNSPECIFIED,
                // Never the client's address (10.0.2.2) nor an unusable one.
                your_ip: Ipv4Address::new(10, 0, 2, 3 + host % 250),
                server_ip: src,
                router: *router,
                subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
                relay_agent_ip: Ipv4Address::UNSPECIFIED,
                broadcast: false,
                requested_ip: None,
                client_identifier: None,
                server_identifier: *server_id,
                parameter_request_list: None,
                dns_servers: None,
                max_size: None,
                lease_duration: *lease,
                renew_duration: *renew,
                rebind_duration: *rebind,
                additional_options: &[],
            };
            let mut payload = vec![0; repr.buffer_len()];
            repr.emit(&mut DhcpPacket::new_unchecked(&mut payload[..]))
                .unwrap();
            // One answering the stack's request goes where a server's would.
            let (eth, dst) = if *xid_ours {
                (Eth(*smac, BROADCAST_MAC), Ipv4Address::BROADCAST)
            } else {
                (eth, dst)
            };
            udp_frame(eth, (src, 67), (dst, 68), &payload)
        }
        Shape::Ip { proto, payload } => ipv4_frame(
            eth,
            src,
            dst,
            IpProtocol::from(*proto),
            payload.len(),
            |b| b.copy_from_slice(payload),
        ),
    };
    let is_ipv4 = !matches!(shape, Shape::Arp { .. });
    for m in mutations {
        mutate(&mut frame, m, is_ipv4);
    }
    if *fix_checksums && is_ipv4 {
        fill_checksums(&mut frame);
    }
    for &(at, mask) in flips {
        let n = frame.len();
        if n > 0 {
            frame[at % n] ^= mask;
        }
    }
    if let Some(t) = truncate {
        frame.truncate(t % (frame.len() + 1));
    }
    frame
}

fn mutate(frame: &mut Vec<u8>, m: &Mutation, is_ipv4: bool) {
    if let Mutation::Trailer(t) = m {
        frame.extend_from_slice(t);
        return;
    }
    if !is_ipv4 {
        return;
    }
    let ip_at = 14;
    let ihl = (frame[ip_at] & 0x0f) as usize * 4;
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ip_at..]);
    match *m {
        Mutation::IpHeaderLen(n) => ip.set_header_len(n * 4),
        Mutation::IpTotalLen(n) => ip.set_total_len(n),
        Mutation::Ttl(t) => ip.set_hop_limit(t),
        Mutation::Fragment {
            more,
            offset,
            ident,
        } => {
            ip.set_more_frags(more);
            ip.set_frag_offset(offset * 8);
            ip.set_ident(ident);
        }
        Mutation::DontFrag => ip.set_dont_frag(true),
        Mutation::IpVersion(v) => ip.set_version(v),
        Mutation::TcpHeaderLen(n) => {
            if frame.len() >= ip_at + ihl + 20 {
                TcpPacket::new_unchecked(&mut frame[ip_at + ihl..]).set_header_len(n * 4);
            }
        }
        Mutation::TcpFlags(f) => {
            if frame.len() >= ip_at + ihl + 20 {
                frame[ip_at + ihl + 13] = f;
            }
        }
        Mutation::UdpLen(n) => {
            if frame.len() >= ip_at + ihl + 8 {
                UdpPacket::new_unchecked(&mut frame[ip_at + ihl..]).set_len(n);
            }
        }
        Mutation::Trailer(_) => unreachable!(),
    }
}

/// Fills the IPv4 header checksum, and the TCP or UDP one, where the lengths allow it.
fn fill_checksums(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut frame[..]) else {
        return;
    };
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    match ip.next_header() {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(ip.payload_mut()) {
                t.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(ip.payload_mut()) {
                u.fill_checksum(&src, &dst);
            }
        }
        _ => {}
    }
}

/// The hand-played peer's view of one of its connections.
#[derive(Clone, Copy, Debug, Default)]
struct GhostConn {
    /// Our next sequence number.
    ours: u32,
    /// The server's next sequence number, once it sent a SYN-ACK.
    theirs: Option<u32>,
}

/// A case's state: the network, the peer, the real client's connections.
struct Case {
    net: Net,
    setup: Setup,
    ghosts: [GhostConn; GHOST_PORTS.len()],
    /// The transaction id of the stack's last DHCP message, and whether it was a DISCOVER.
    dhcp_xid: Option<(u32, bool)>,
    conns: Vec<SocketHandle>,
    /// Frames the case put on the wire to the stack (besides the client's).
    injected: u64,
}

impl Case {
    fn new(setup: Setup) -> Self {
        let config = Config {
            addr: if setup.dhcp_lease.is_some() {
                Config::qemu_user(SERVER_MAC).addr
            } else {
                Addressing::Static(StaticIp::QEMU_USER)
            },
            tcp_slots: setup.slots,
            tcp_rx_buffer: setup.rx_buffer,
            tcp_tx_buffer: setup.tx_buffer,
            request_limit: setup.request_limit,
            idle_timeout: Some(Duration::from_secs(setup.idle_s)),
            request_timeout: Some(Duration::from_secs(1)),
            handshake_timeout: Some(Duration::from_secs(1)),
            ..Config::qemu_user(SERVER_MAC)
        };
        let mut net = Net::new(config);
        if let Some(lease) = setup.dhcp_lease.filter(|&l| l > 0) {
            net.lease(lease);
            net.server = LEASED_IP;
        }
        let mut case = Self {
            net,
            setup,
            ghosts: Default::default(),
            dhcp_xid: None,
            conns: Vec::new(),
            injected: 0,
        };
        // The peer announces itself: the server's segments to it go out without an ARP.
        case.inject(arp_request_from(GHOST_IP, GHOST_MAC));
        case.inject(arp_request(GHOST_IP, GHOST_MAC, LEASED_IP));
        case
    }

    fn inject(&mut self, frame: Vec<u8>) {
        self.net.cdev.inject(frame);
        self.injected += 1;
    }

    /// Advances the clock by `ms`, polls the stack (checking what one poll may do) and the
    /// client, and watches the stack's output for the peer and DHCP.
    fn tick(&mut self, ms: u64) {
        let net = &mut self.net;
        net.now += Duration::from_millis(ms);
        let before = net.stack.stats();
        let p = net.stack.poll(net.now);
        let after = net.stack.stats();
        check_stats(&after, &self.setup);
        assert!(
            after.frames_rx - before.frames_rx <= INGRESS_BUDGET as u64,
            "one poll took {} frames",
            after.frames_rx - before.frames_rx
        );
        // Every frame sent answers one taken, or carries a slot's buffered data, or an
        // echo, or a DHCP or ARP message: nothing loops.
        let bound =
            INGRESS_BUDGET as u64 + (self.setup.slots * (self.setup.tx_buffer + 8)) as u64 + 64;
        assert!(
            after.frames_tx - before.frames_tx <= bound,
            "one poll sent {} frames",
            after.frames_tx - before.frames_tx
        );
        if !p.activity {
            assert_ne!(p.next_wake, Some(Duration::ZERO), "idle poll asks for 0");
        }
        for f in net.cdev.peek() {
            self.watch(&f);
        }
        let net = &mut self.net;
        net.client.poll(net.now, &mut net.cdev, &mut net.sockets);
    }

    /// Notes the server's sequence numbers towards the peer, and DHCP transaction ids.
    fn watch(&mut self, frame: &[u8]) {
        let Some(ip) = crate::device::ipv4_of(frame) else {
            return;
        };
        match ip.next_header() {
            IpProtocol::Tcp if ip.dst_addr() == GHOST_IP => {
                let Ok(t) = TcpPacket::new_checked(ip.payload()) else {
                    return;
                };
                let Some(k) = GHOST_PORTS.iter().position(|&p| p == t.dst_port()) else {
                    return;
                };
                let g = &mut self.ghosts[k];
                if t.rst() {
                    g.theirs = None;
                    return;
                }
                let end = (t.seq_number().0 as u32)
                    .wrapping_add(t.payload().len() as u32)
                    .wrapping_add(t.syn() as u32 + t.fin() as u32);
                if t.syn() || g.theirs.is_none_or(|n| (end.wrapping_sub(n) as i32) > 0) {
                    g.theirs = Some(end);
                }
            }
            IpProtocol::Udp => {
                let Ok(u) = UdpPacket::new_checked(ip.payload()) else {
                    return;
                };
                if u.dst_port() != 67 {
                    return;
                }
                if let Ok(d) = DhcpPacket::new_checked(u.payload())
                    && let Ok(r) = DhcpRepr::parse(&d)
                {
                    let discover = r.message_type == DhcpMessageType::Discover;
                    self.dhcp_xid = Some((r.transaction_id, discover));
                }
            }
            _ => {}
        }
    }

    fn ghost(&mut self, k: usize, op: &GhostOp) {
        let g = self.ghosts[k];
        let (repr_control, seq, ack, window, payload): (_, u32, _, u16, &[u8]) = match op {
            GhostOp::Syn { isn, mss } => {
                self.ghosts[k] = GhostConn {
                    ours: isn.wrapping_add(1),
                    theirs: None,
                };
                let tcp = TcpRepr {
                    src_port: GHOST_PORTS[k],
                    dst_port: 80,
                    control: TcpControl::Syn,
                    seq_number: TcpSeqNumber(*isn as i32),
                    ack_number: None,
                    window_len: 8192,
                    window_scale: None,
                    max_seg_size: *mss,
                    sack_permitted: false,
                    sack_ranges: [None; 3],
                    timestamp: None,
                    payload: &[],
                };
                let f = tcp_frame(Eth(GHOST_MAC, SERVER_MAC), GHOST_IP, self.server(), &tcp);
                self.inject(f);
                return;
            }
            GhostOp::Segment {
                payload,
                fin,
                rst,
                seq_delta,
                ack_delta,
                window,
            } => {
                let control = if *rst {
                    TcpControl::Rst
                } else if *fin {
                    TcpControl::Fin
                } else {
                    TcpControl::None
                };
                let seq = g.ours.wrapping_add(*seq_delta as u32);
                let ack = g.theirs.map(|t| t.wrapping_add(*ack_delta as u32));
                if *seq_delta == 0 && !*rst {
                    self.ghosts[k].ours = g
                        .ours
                        .wrapping_add(payload.len() as u32)
                        .wrapping_add(*fin as u32);
                }
                (control, seq, ack, *window, &payload[..])
            }
        };
        let tcp = TcpRepr {
            src_port: GHOST_PORTS[k],
            dst_port: 80,
            control: repr_control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: window,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let f = tcp_frame(Eth(GHOST_MAC, SERVER_MAC), GHOST_IP, self.server(), &tcp);
        self.inject(f);
    }

    /// The stack's address now (the static one, the lease, or the fallback).
    fn server(&self) -> Ipv4Address {
        self.net
            .stack
            .stats()
            .address
            .map_or(SERVER_IP, |c| c.address())
    }

    fn client(&mut self, op: &ClientOp) {
        let pick =
            |conns: &[SocketHandle], k: usize| (!conns.is_empty()).then(|| conns[k % conns.len()]);
        match op {
            ClientOp::Open => {
                if self.conns.len() < 8 {
                    self.net.server = self.server();
                    let h = self.net.open();
                    self.conns.push(h);
                }
            }
            ClientOp::Request(k, req) => {
                if let Some(h) = pick(&self.conns, *k) {
                    let s = self.net.tcp(h);
                    if s.may_send() {
                        let _ = s.send_slice(req);
                    }
                }
            }
            ClientOp::Read(k) => {
                if let Some(h) = pick(&self.conns, *k) {
                    let s = self.net.tcp(h);
                    while s.recv(|d| (d.len(), ())).is_ok() && s.can_recv() {}
                }
            }
            ClientOp::Close(k) => {
                if let Some(h) = pick(&self.conns, *k) {
                    self.net.tcp(h).close();
                }
            }
            ClientOp::Abort(k) => {
                if let Some(h) = pick(&self.conns, *k) {
                    self.net.tcp(h).abort();
                }
            }
            ClientOp::Udp(payload) => {
                self.net.server = self.server();
                // Not waiting for the echo: the client's next steps are the case's.
                udp_echo_answered(&mut self.net, payload, 0);
            }
        }
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Frame(h) => {
                let f = build(h, self.dhcp_xid);
                self.inject(f);
                self.tick(1);
            }
            Op::Burst(h, n) => {
                let f = build(h, self.dhcp_xid);
                for _ in 0..*n {
                    self.inject(f.clone());
                }
                self.tick(1);
            }
            Op::Ghost(k, g) => {
                self.ghost(*k, g);
                self.tick(1);
            }
            Op::Client(c) => {
                self.client(c);
                self.tick(1);
            }
            Op::Steps(n) => {
                for _ in 0..*n {
                    self.tick(1);
                }
            }
            Op::Jump(ms) => self.tick(*ms),
        }
    }

    /// Ends the case: the client leaves, every timeout passes, and then the stack must be
    /// back to its idle state and serve a fresh client.
    fn finish(mut self) {
        for &h in &self.conns {
            self.net.tcp(h).abort();
        }
        for _ in 0..10 {
            self.tick(1);
        }
        // Gone from the client: an aborted socket whose reset could not go (its peer was an
        // address the stack no longer has) retries for good, and smoltcp's ARP requests,
        // limited to one a second for the whole interface, would all go to it.
        for h in self.conns.drain(..) {
            self.net.sockets.remove(h);
        }
        if let Some(h) = self.net.udp_client.take() {
            self.net.sockets.remove(h);
        }
        // Past every timeout (idle, request, handshake, close: at most 60 s) and the
        // neighbour caches' lifetime (60 s: a spoofed ARP may have taught the stack a
        // wrong MAC for the client; the client's next ARP request corrects it).
        for _ in 0..260 {
            self.tick(500);
        }
        let s = self.net.stack.stats();
        let states = self.net.stack.slot_states();
        assert!(
            states.iter().all(|&st| st == tcp::State::Listen),
            "a slot leaked: {states:?} {s:?}"
        );
        assert_eq!(s.tcp_open, 0, "{s:?}");
        // Everything sent to the stack is taken (the client may have sent since the last
        // poll: one more).
        self.net.stack.poll(self.net.now);
        assert_eq!(
            self.net.stack.device_mut().pending(),
            0,
            "frames left unread"
        );
        // Idle now: the stack sleeps (no busy loop).
        let mut idle = false;
        for _ in 0..10 {
            let p = self.net.stack.poll(self.net.now);
            if !p.activity {
                assert_ne!(p.next_wake, Some(Duration::ZERO), "busy loop: {p:?}");
                idle = true;
                break;
            }
        }
        assert!(idle, "the stack never went idle");
        assert!(s.frames_rx >= self.injected, "{s:?}");

        // A fresh client is served.
        self.net.server = self.server();
        let h = self.net.connect();
        let ok = self.net.exchange(h, &get(""), OK.len());
        assert_eq!(String::from_utf8_lossy(&ok), String::from_utf8_lossy(OK));
        assert!(
            udp_echo_answered(&mut self.net, b"still there?", 3000),
            "no UDP echo"
        );
        check_stats(&self.net.stack.stats(), &self.setup);
    }
}

/// What the counters must always satisfy.
fn check_stats(s: &Stats, setup: &Setup) {
    assert!(s.tcp_open <= setup.slots, "{s:?}");
    assert!(s.tcp_open as u64 <= s.tcp_accepted, "{s:?}");
    // A connection ends at most once by a reset of ours (abort or eviction), and is
    // closed for idleness at most once.
    assert!(
        s.tcp_idle_aborts + s.tcp_idle_evictions <= s.tcp_accepted,
        "{s:?}"
    );
    assert!(s.tcp_idle_closes <= s.tcp_accepted, "{s:?}");
    assert_eq!(s.http_requests, s.responses.iter().sum::<u64>(), "{s:?}");
    assert!(s.icmp_echo_replies <= s.icmp_echo_requests, "{s:?}");
    assert!(s.icmp_echo_requests <= s.frames_rx, "{s:?}");
    assert!(s.udp_echoed + s.udp_dropped <= s.frames_rx, "{s:?}");
    assert!(
        s.tcp_duplicate_syns + s.tcp_handshake_drops <= s.frames_rx,
        "{s:?}"
    );
    assert!(s.responses_with(Status::Ok) <= s.http_requests, "{s:?}");
    match s.addressing {
        AddrState::DhcpPending => assert_eq!(s.address, None, "{s:?}"),
        _ => assert!(s.address.is_some(), "{s:?}"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hostile_frames_leave_the_stack_serving(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut case = Case::new(setup);
        for op in &ops {
            case.run(op);
        }
        case.finish();
    }
}
