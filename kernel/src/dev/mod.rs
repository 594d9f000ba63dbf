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

/// A copy of the list behind `lock`, allocated outside it: a failed allocation ends the
/// caller (a killed kernel thread) without the lock held for good, as a `clone` under the
/// lock did until 2026-12-06 (found by review). The list changes only at boot; a longer one
/// met in between is read again.
fn copy_out<T: Clone>(lock: &spin::Mutex<alloc::vec::Vec<T>>) -> alloc::vec::Vec<T> {
    loop {
        let n = lock.lock().len();
        let mut v = alloc::vec::Vec::with_capacity(n);
        let list = lock.lock();
        if list.len() <= v.capacity() {
            v.extend_from_slice(&list);
            return v;
        }
    }
}
