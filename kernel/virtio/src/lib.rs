//! Virtio for Exo-OS, the parts that are pure logic: the driver side of a split virtqueue
//! ([`queue`]), feature negotiation ([`features`]), the virtio-net formats ([`net`]) and the
//! command line's virtio-mmio devices ([`mmio`]).
//!
//! Nothing here touches hardware. A queue reads and writes the memory it shares with the
//! device through [`Ram`], which the kernel implements with volatile accesses to its direct
//! map and the tests with an in-memory array ([`testing`]), where a fake device plays the other
//! side, misbehaviour included (indices that jump, ids never handed out, lengths past the
//! buffer). Transports (PCI, MMIO) live in the kernel, which owns the registers.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod features;
pub mod mmio;
pub mod net;
pub mod queue;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// Memory shared with a device, addressed by the driver's virtual addresses. Every access is
/// a single load or store of the given width (volatile in the kernel): the device may change
/// what it owns at any time, so nothing read through `Ram` is trusted.
pub trait Ram {
    /// Reads a little-endian `u16` at `va`.
    fn read_u16(&self, va: usize) -> u16;
    /// Reads a little-endian `u32` at `va`.
    fn read_u32(&self, va: usize) -> u32;
    /// Writes a little-endian `u16` at `va`.
    fn write_u16(&self, va: usize, v: u16);
    /// Writes a little-endian `u32` at `va`.
    fn write_u32(&self, va: usize, v: u32);
    /// Writes a little-endian `u64` at `va`.
    fn write_u64(&self, va: usize, v: u64);
}
