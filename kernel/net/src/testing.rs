//! A simulated Ethernet wire for tests: [`wire`] returns two [`Port`]s joined by in-memory
//! frame queues, optionally dropping or reordering frames deterministically.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

/// What happens to frames sent through one [`Port`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Drop every k-th frame sent (1-based count; `None`: never).
    pub drop_every: Option<usize>,
    /// Deliver every k-th frame after the one sent next (swap it with its successor).
    pub swap_every: Option<usize>,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    /// A frame held back to be delivered after the next one.
    held: Option<Vec<u8>>,
    sent: usize,
    faults: Faults,
}

impl Queue {
    fn send(&mut self, frame: Vec<u8>) {
        self.sent += 1;
        if self
            .faults
            .drop_every
            .is_some_and(|k| k > 0 && self.sent.is_multiple_of(k))
        {
            return;
        }
        let held = self.held.take();
        if held.is_none()
            && self
                .faults
                .swap_every
                .is_some_and(|k| k > 0 && self.sent.is_multiple_of(k))
        {
            self.held = Some(frame);
            return;
        }
        self.frames.push_back(frame);
        if let Some(h) = held {
            self.frames.push_back(h);
        }
    }

    /// Releases a frame still held back (nothing else was sent after it).
    fn flush(&mut self) {
        if let Some(h) = self.held.take() {
            self.frames.push_back(h);
        }
    }
}

/// One end of the simulated wire: an Ethernet [`Device`] with a 1500-byte MTU.
#[derive(Debug)]
pub struct Port {
    rx: Rc<RefCell<Queue>>,
    tx: Rc<RefCell<Queue>>,
}

/// Two ports joined back to back; `a_to_b` and `b_to_a` are the faults of each direction.
pub fn wire(a_to_b: Faults, b_to_a: Faults) -> (Port, Port) {
    let ab = Rc::new(RefCell::new(Queue {
        faults: a_to_b,
        ..Queue::default()
    }));
    let ba = Rc::new(RefCell::new(Queue {
        faults: b_to_a,
        ..Queue::default()
    }));
    (
        Port {
            rx: ba.clone(),
            tx: ab.clone(),
        },
        Port { rx: ab, tx: ba },
    )
}

impl Port {
    /// Frames waiting to be received by this port.
    pub fn pending(&self) -> usize {
        self.rx.borrow().frames.len()
    }

    /// Delivers a frame held back for reordering (call when the wire goes quiet).
    pub fn flush(&self) {
        self.tx.borrow_mut().flush();
    }

    /// Puts a raw frame on the wire towards the other port (for hand-made packets).
    pub fn inject(&self, frame: Vec<u8>) {
        self.tx.borrow_mut().send(frame);
    }

    /// Copies of the frames waiting to be received by this port (to watch the other side's
    /// output and still deliver it).
    pub fn peek(&self) -> Vec<Vec<u8>> {
        self.rx.borrow().frames.iter().cloned().collect()
    }

    /// Takes the next frame this port would receive (to inspect the other side's output).
    pub fn take(&self) -> Option<Vec<u8>> {
        self.rx.borrow_mut().frames.pop_front()
    }
}

/// Receive token of [`Port`].
#[derive(Debug)]
pub struct PortRx(Vec<u8>);

/// Transmit token of [`Port`].
#[derive(Debug)]
pub struct PortTx<'a>(&'a RefCell<Queue>);

impl RxToken for PortRx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl TxToken for PortTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.borrow_mut().send(frame);
        r
    }
}

impl Device for Port {
    type RxToken<'a> = PortRx;
    type TxToken<'a> = PortTx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.borrow_mut().frames.pop_front()?;
        Some((PortRx(frame), PortTx(&self.tx)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(PortTx(&self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}
