//! A queue pair as a `smoltcp` device (the kernel's IP stack, `exo-net`, runs over it). A
//! received frame is copied out of its DMA buffer into the token (the buffer goes straight
//! back to the device: the stack may hold a token across calls), a transmitted one is
//! written by the stack straight into the DMA buffer.

use super::net::QueuePair;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use exo_net::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use exo_net::smoltcp::time::Instant;

/// Frames taken per receive burst.
const BURST: usize = 32;

/// One queue pair driven by the stack.
#[derive(Debug)]
pub struct NetIf {
    pair: QueuePair,
    rx: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    /// Driver errors met (a broken device): the interface stops sending and receiving.
    pub error: Option<super::virtio::VirtioError>,
}

impl NetIf {
    /// The stack's view of `pair`.
    pub fn new(pair: QueuePair) -> Self {
        Self {
            pair,
            rx: VecDeque::new(),
            spare: Vec::new(),
            error: None,
        }
    }

    /// The queue pair (counters, notifications).
    pub fn pair(&mut self) -> &mut QueuePair {
        &mut self.pair
    }

    /// Gives the queue pair back (to its device, before its shutdown).
    pub fn into_pair(self) -> QueuePair {
        self.pair
    }

    /// Whether frames wait (in the ring or already taken).
    pub fn rx_waiting(&self) -> bool {
        !self.rx.is_empty() || self.pair.rx_pending() > 0
    }

    /// Whether a frame can be sent now (reaping completions if the ring looks full). A
    /// device that returns an invalid completion, or holds every buffer past the stall
    /// limit, is broken: `error` is set and the interface stops. Until 2026-12-04 this
    /// ignored the reap's error and never ran the stall check (`tx_burst`'s, never reached
    /// without room): the interface waited for ever, and the serve loop, with frames
    /// waiting, spun without sleeping (found by review).
    fn tx_room(&mut self) -> bool {
        if self.error.is_some() {
            return false;
        }
        if self.pair.tx_room() > 0 {
            return true;
        }
        match self.pair.tx_ready() {
            Ok(room) => room,
            Err(e) => {
                log::error!("net: transmit stopped: {e}");
                self.error = Some(e);
                false
            }
        }
    }

    fn fill(&mut self) {
        if !self.rx.is_empty() || self.error.is_some() {
            return;
        }
        let (rx, spare) = (&mut self.rx, &mut self.spare);
        if let Err(e) = self.pair.rx_burst(BURST, |f| {
            let mut v = spare.pop().unwrap_or_default();
            v.clear();
            v.extend_from_slice(f);
            rx.push_back(v);
        }) {
            log::error!("net: receive stopped: {e}");
            self.error = Some(e);
        }
    }
}

/// A received frame.
#[derive(Debug)]
pub struct RxToken<'a> {
    frame: Vec<u8>,
    spare: &'a mut Vec<Vec<u8>>,
}

/// Room for one frame to send.
#[derive(Debug)]
pub struct TxToken<'a> {
    pair: &'a mut QueuePair,
    /// The interface's `error`: a send that finds the device broken stops the interface.
    error: &'a mut Option<super::virtio::VirtioError>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        if self.spare.len() < BURST {
            self.spare.push(self.frame);
        }
        r
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        let mut out = None;
        let sent = self.pair.tx_burst(1, |_, buf| {
            let n = len.min(buf.len());
            out = f.take().map(|f| f(&mut buf[..n]));
            Some(n)
        });
        match (out, f) {
            (Some(r), _) => r,
            // No buffer after all (the device broke meanwhile): the stack's frame is built in
            // scratch memory and dropped, as a NIC drops under pressure, and a broken device
            // stops the interface (until 2026-12-04 only a warning, per frame, for ever:
            // `tx_room` saw free buffers and never looked at the queue again; found by review).
            (None, Some(f)) => {
                if let Err(e) = sent {
                    log::error!("net: transmit stopped: {e}");
                    *self.error = Some(e);
                }
                let mut scratch = alloc::vec![0u8; len];
                f(&mut scratch)
            }
            (None, None) => unreachable!("the closure ran or it did not"),
        }
    }
}

impl Device for NetIf {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // The stack may answer a received frame at once with the paired token: without room
        // to send, the frame waits here (else the answer would be lost).
        if !self.tx_room() {
            return None;
        }
        self.fill();
        let frame = self.rx.pop_front()?;
        Some((
            RxToken {
                frame,
                spare: &mut self.spare,
            },
            TxToken {
                pair: &mut self.pair,
                error: &mut self.error,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        if !self.tx_room() {
            return None;
        }
        Some(TxToken {
            pair: &mut self.pair,
            error: &mut self.error,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c.max_burst_size = Some(BURST);
        c
    }
}
