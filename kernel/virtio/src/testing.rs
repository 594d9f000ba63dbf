//! An in-memory [`Ram`] and a fake device that plays the device side of a split queue
//! (including misbehaviour), for the tests of this crate and of the drivers above it.

use crate::Ram;
use crate::queue::{Layout, avail_bytes, desc_bytes, need_event, used_bytes};
use alloc::vec::Vec;
use core::cell::Cell;

/// Bytes at `[base, base + len)`; virtual address == physical address.
#[derive(Debug)]
pub struct TestRam {
    base: usize,
    bytes: Vec<Cell<u8>>,
    next: Cell<usize>,
}

impl TestRam {
    /// `len` zeroed bytes at `base`.
    pub fn new(base: usize, len: usize) -> Self {
        Self {
            base,
            bytes: (0..len).map(|_| Cell::new(0)).collect(),
            next: Cell::new(base),
        }
    }

    /// A bump allocation of `len` bytes aligned to `align`.
    pub fn alloc(&self, len: usize, align: usize) -> usize {
        let at = self.next.get().next_multiple_of(align);
        assert!(at + len <= self.base + self.bytes.len(), "TestRam full");
        self.next.set(at + len);
        at
    }

    /// A zeroed queue layout of `size` entries.
    pub fn queue_layout(&self, size: u16) -> Layout {
        let d = self.alloc(desc_bytes(size), 16);
        let a = self.alloc(avail_bytes(size), 2);
        let u = self.alloc(used_bytes(size), 4);
        Layout {
            size,
            desc: (d, d as u64),
            avail: (a, a as u64),
            used: (u, u as u64),
        }
    }

    fn at(&self, va: usize) -> &Cell<u8> {
        &self.bytes[va - self.base]
    }

    /// Copies `src` to `va`.
    pub fn write_bytes(&self, va: usize, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            self.at(va + i).set(*b);
        }
    }

    /// Copies `len` bytes from `va`.
    pub fn read_bytes(&self, va: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| self.at(va + i).get()).collect()
    }

    fn read<const N: usize>(&self, va: usize) -> [u8; N] {
        core::array::from_fn(|i| self.at(va + i).get())
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&self, va: usize) -> u64 {
        u64::from_le_bytes(self.read(va))
    }
}

impl Ram for TestRam {
    fn read_u16(&self, va: usize) -> u16 {
        u16::from_le_bytes(self.read(va))
    }
    fn read_u32(&self, va: usize) -> u32 {
        u32::from_le_bytes(self.read(va))
    }
    fn write_u16(&self, va: usize, v: u16) {
        self.write_bytes(va, &v.to_le_bytes());
    }
    fn write_u32(&self, va: usize, v: u32) {
        self.write_bytes(va, &v.to_le_bytes());
    }
    fn write_u64(&self, va: usize, v: u64) {
        self.write_bytes(va, &v.to_le_bytes());
    }
}

/// A descriptor as the device reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevDesc {
    /// Descriptor id.
    pub id: u16,
    /// Buffer address.
    pub addr: u64,
    /// Buffer length.
    pub len: u32,
    /// Flags.
    pub flags: u16,
}

/// The device side of one queue.
#[derive(Debug)]
pub struct FakeDevice {
    /// The queue's layout.
    pub layout: Layout,
    /// Whether `EVENT_IDX` was negotiated.
    pub event_idx: bool,
    /// Next avail entry to take.
    pub last_avail: u16,
    /// Used index published.
    pub used_idx: u16,
    /// Interrupts the device would have raised.
    pub interrupts: u32,
}

impl FakeDevice {
    /// The device side of `layout`.
    pub fn new(layout: Layout, event_idx: bool) -> Self {
        Self {
            layout,
            event_idx,
            last_avail: 0,
            used_idx: 0,
            interrupts: 0,
        }
    }

    /// The next buffer the driver made available, if any.
    pub fn take(&mut self, ram: &TestRam) -> Option<DevDesc> {
        let avail_idx = ram.read_u16(self.layout.avail.0 + 2);
        if avail_idx == self.last_avail {
            return None;
        }
        let slot = usize::from(self.last_avail & (self.layout.size - 1));
        let id = ram.read_u16(self.layout.avail.0 + 4 + 2 * slot);
        self.last_avail = self.last_avail.wrapping_add(1);
        let d = self.layout.desc.0 + 16 * usize::from(id);
        let word = ram.read_u64(d + 8);
        Some(DevDesc {
            id,
            addr: ram.read_u64(d),
            len: word as u32,
            flags: (word >> 32) as u16,
        })
    }

    /// Returns descriptor `id` with `len` bytes written (raises an interrupt if the driver
    /// asked for one).
    pub fn complete(&mut self, ram: &TestRam, id: u32, len: u32) {
        let slot = usize::from(self.used_idx & (self.layout.size - 1));
        let e = self.layout.used.0 + 4 + 8 * slot;
        ram.write_u32(e, id);
        ram.write_u32(e + 4, len);
        let old = self.used_idx;
        self.used_idx = self.used_idx.wrapping_add(1);
        ram.write_u16(self.layout.used.0 + 2, self.used_idx);
        let wants = if self.event_idx {
            let ev = ram.read_u16(self.layout.avail.0 + 4 + 2 * usize::from(self.layout.size));
            need_event(ev, self.used_idx, old)
        } else {
            ram.read_u16(self.layout.avail.0) & 1 == 0
        };
        if wants {
            self.interrupts += 1;
        }
    }

    /// Publishes a used index without writing entries (a broken device).
    pub fn set_used_idx(&mut self, ram: &TestRam, idx: u16) {
        self.used_idx = idx;
        ram.write_u16(self.layout.used.0 + 2, idx);
    }

    /// Sets `avail_event` (`EVENT_IDX`) to ask for a notification when the driver's avail
    /// index passes `idx`.
    pub fn set_avail_event(&self, ram: &TestRam, idx: u16) {
        ram.write_u16(
            self.layout.used.0 + 4 + 8 * usize::from(self.layout.size),
            idx,
        );
    }

    /// Sets or clears `used.flags`' `NO_NOTIFY`.
    pub fn set_no_notify(&self, ram: &TestRam, on: bool) {
        ram.write_u16(self.layout.used.0, u16::from(on));
    }
}
