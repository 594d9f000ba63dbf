//! A pass-through [`Device`] that counts frames, ICMP echo traffic and UDP echoes on their way
//! between the driver and the interface (smoltcp answers pings itself, and holds a datagram
//! until its next hop answers ARP, so this is where they are seen going out),
//! and [`Replay`], which hands the interface a frame the stack has already taken.

use core::cell::Cell;

use smoltcp::phy::{Device, DeviceCapabilities, PacketMeta, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Address,
    Ipv4Packet, UdpPacket,
};

/// Frame, ICMP echo and UDP echo counters (cells: both tokens of a pair update them).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) frames_rx: Cell<u64>,
    pub(crate) frames_tx: Cell<u64>,
    pub(crate) echo_requests: Cell<u64>,
    pub(crate) echo_replies: Cell<u64>,
    /// The UDP echo port (0: none).
    pub(crate) udp_echo_port: u16,
    /// Frames sent carrying a UDP datagram from `udp_echo_port`: the echoes that went out.
    pub(crate) udp_echo_frames: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().wrapping_add(1));
}

/// The IPv4 packet an Ethernet frame carries, its header checked (`None`: another protocol,
/// or too short for what its headers say).
pub(crate) fn ipv4_of(frame: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    Ipv4Packet::new_checked(eth.payload()).ok()
}

/// The ICMPv4 message type of an Ethernet frame and its IPv4 destination, if it carries one.
pub(crate) fn icmp_of(frame: &[u8]) -> Option<(Icmpv4Message, Ipv4Address)> {
    let ip = crate::device::ipv4_of(frame)?;
    if ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    Some((icmp.msg_type(), ip.dst_addr()))
}

/// The UDP source port of an Ethernet frame, if it carries a UDP datagram over IPv4.
fn udp_src_port(frame: &[u8]) -> Option<u16> {
    let ip = crate::device::ipv4_of(frame)?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    Some(UdpPacket::new_checked(ip.payload()).ok()?.src_port())
}

/// The ICMPv4 message type of an Ethernet frame, if it carries one.
fn icmp_type(frame: &[u8]) -> Option<Icmpv4Message> {
    icmp_of(frame).map(|(t, _)| t)
}

impl Counters {
    fn saw_rx(&self, frame: &[u8]) {
        bump(&self.frames_rx);
        if icmp_type(frame) == Some(Icmpv4Message::EchoRequest) {
            bump(&self.echo_requests);
        }
    }

    fn saw_tx(&self, frame: &[u8]) {
        bump(&self.frames_tx);
        if icmp_type(frame) == Some(Icmpv4Message::EchoReply) {
            bump(&self.echo_replies);
        }
        if self.udp_echo_port != 0 && udp_src_port(frame) == Some(self.udp_echo_port) {
            bump(&self.udp_echo_frames);
        }
    }
}

/// The driver's device with counters around it.
#[derive(Debug)]
pub(crate) struct Counted<D> {
    pub(crate) inner: D,
    pub(crate) counters: Counters,
}

/// Receive token of [`Counted`].
#[derive(Debug)]
pub(crate) struct Rx<'a, T> {
    inner: T,
    counters: &'a Counters,
}

/// Transmit token of [`Counted`].
#[derive(Debug)]
pub(crate) struct Tx<'a, T> {
    inner: T,
    counters: &'a Counters,
}

impl<D: Device> Device for Counted<D> {
    type RxToken<'a>
        = Rx<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a, D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let counters = &self.counters;
        self.inner.receive(timestamp).map(|(rx, tx)| {
            (
                Rx {
                    inner: rx,
                    counters,
                },
                Tx {
                    inner: tx,
                    counters,
                },
            )
        })
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let counters = &self.counters;
        self.inner.transmit(timestamp).map(|tx| Tx {
            inner: tx,
            counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

impl<T: RxToken> RxToken for Rx<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let counters = self.counters;
        self.inner.consume(|frame| {
            counters.saw_rx(frame);
            f(frame)
        })
    }

    fn meta(&self) -> PacketMeta {
        self.inner.meta()
    }
}

impl<T: TxToken> TxToken for Tx<'_, T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let counters = self.counters;
        self.inner.consume(len, |frame| {
            let r = f(frame);
            counters.saw_tx(frame);
            r
        })
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.inner.set_meta(meta);
    }
}

/// One frame already taken from the device (and counted), handed to the interface as if it
/// came now; answers go out through the device. The stack looks at every frame before
/// smoltcp does (`Stack::admit`). Without room to send when the interface asks, the frame is
/// dropped as a full ring would drop it (TCP sends it again).
pub(crate) struct Replay<'a, D> {
    pub(crate) frame: Option<(&'a [u8], PacketMeta)>,
    pub(crate) device: &'a mut Counted<D>,
}

/// Receive token of [`Replay`].
pub(crate) struct ReplayRx<'a>(&'a [u8], PacketMeta);

impl RxToken for ReplayRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }

    fn meta(&self) -> PacketMeta {
        self.1
    }
}

impl<D: Device> Device for Replay<'_, D> {
    type RxToken<'b>
        = ReplayRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b, D::TxToken<'b>>
    where
        Self: 'b;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (frame, meta) = self.frame.take()?;
        let tx = self.device.transmit(timestamp)?;
        Some((ReplayRx(frame, meta), tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.device.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}
