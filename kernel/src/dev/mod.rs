//! Devices: PCI configuration space, enumeration and BAR sizing (`pci`), the virtio
//! transports and handshake (`virtio`: modern PCI, MMIO v2), and the virtio-net driver (`net`: one queue
//! pair per CPU, bursts, checked receive buffers), and a queue pair as a `smoltcp` device for
//! the kernel's IP stack (`netif`, over the host-tested `exo-net`). The queue logic itself is the host-tested
//! `exo-virtio` crate.
//!
//! Calls down only: `trap`, `sched`, `smp` (time, CPUs), `mm` (frames), `sys` (registers
//! and DMA memory).

pub mod irq;
pub mod net;
pub mod netif;
pub mod pci;
pub mod virtio;

mod bench;
mod tests;
pub(crate) mod tests_mq;
