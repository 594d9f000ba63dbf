//! Handle tables: what a process (later) or any owner holds: [`HANDLES`] small integers
//! naming endpoints, each with rights and a badge. Lookups are lock-free (the entry word,
//! the badge, the entry word again); `insert` and `remove` take the table's lock. An entry
//! names an endpoint by [`EpRef`] (slot + generation): a handle to a destroyed endpoint
//! still looks up, and every operation through it fails with `Closed`.

use super::endpoint::{self, EpRef};
use super::{IpcError, Msg};
use core::sync::atomic::{AtomicU64, Ordering};
use exo_percpu::IrqGuard;

/// Entries per table.
pub const HANDLES: usize = 64;

/// A handle: an index into its owner's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(pub u32);

/// What a handle allows (bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights(pub u8);

impl Rights {
    /// `call` and `send`.
    pub const SEND: Rights = Rights(1);
    /// `recv`, `reply_recv`.
    pub const RECV: Rights = Rights(2);
    /// Both.
    pub const ALL: Rights = Rights(3);
    /// Whether every right of `r` is here.
    pub fn has(self, r: Rights) -> bool {
        self.0 & r.0 == r.0
    }
}

/// A table entry: the endpoint, the rights, the badge delivered with what is sent through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub ep: EpRef,
    pub rights: Rights,
    pub badge: u64,
}

/// Entry word: endpoint generation (bits 32..64, never 0), rights (24..32), slot (0..24).
fn pack(c: &Cap) -> u64 {
    (u64::from(c.ep.gen_) << 32) | (u64::from(c.rights.0) << 24) | u64::from(c.ep.index)
}

/// A fixed table of [`HANDLES`] entries (const-constructible: a process embeds one).
#[derive(Debug)]
pub struct HandleTable {
    entry: [AtomicU64; HANDLES],
    badge: [AtomicU64; HANDLES],
    lock: spin::Mutex<()>,
}

impl Default for HandleTable {
    fn default() -> Self {
        Self::new()
    }
}

impl HandleTable {
    /// An empty table.
    pub const fn new() -> HandleTable {
        HandleTable {
            entry: [const { AtomicU64::new(0) }; HANDLES],
            badge: [const { AtomicU64::new(0) }; HANDLES],
            lock: spin::Mutex::new(()),
        }
    }

    /// Installs `cap` in the lowest free entry.
    pub fn insert(&self, cap: Cap) -> Result<Handle, IpcError> {
        let _g = IrqGuard::new();
        let _l = self.lock.lock();
        let k = self
            .entry
            .iter()
            .position(|e| e.load(Ordering::Relaxed) == 0)
            .ok_or(IpcError::Exhausted)?;
        self.badge[k].store(cap.badge, Ordering::Relaxed);
        self.entry[k].store(pack(&cap), Ordering::Release);
        Ok(Handle(k as u32))
    }

    /// Empties entry `h`; returns what it held.
    pub fn remove(&self, h: Handle) -> Result<Cap, IpcError> {
        let _g = IrqGuard::new();
        let _l = self.lock.lock();
        let cap = self.get(h)?;
        self.entry[h.0 as usize].store(0, Ordering::Release);
        Ok(cap)
    }

    /// Creates an endpoint and installs an owning handle to it (the endpoint is destroyed
    /// when its last owning handle is closed: [`HandleTable::close`]). Created without the
    /// receive right it is deaf from the start (`endpoint::deaf_unless_heard`: nobody can
    /// ever receive on it, so its calls fail at once).
    pub fn create_endpoint(&self, rights: Rights, badge: u64) -> Result<Handle, IpcError> {
        self.create_endpoint_for(rights, badge, 0)
    }

    /// [`HandleTable::create_endpoint`] of an endpoint charged to `owner`
    /// ([`endpoint::create_for`]: the charge goes with the endpoint).
    pub fn create_endpoint_for(
        &self,
        rights: Rights,
        badge: u64,
        owner: u64,
    ) -> Result<Handle, IpcError> {
        let ep = endpoint::create_for(owner)?;
        endpoint::retain(ep, rights)?;
        if !rights.has(Rights::RECV) {
            endpoint::deaf_unless_heard(ep);
        }
        let h = self.insert(Cap { ep, rights, badge });
        if h.is_err() {
            endpoint::release(ep, rights);
        }
        h
    }

    /// Empties owning entry `h`; the endpoint goes with its last owning handle (and goes
    /// deaf with its last one that can receive: `endpoint::release`).
    pub fn close(&self, h: Handle) -> Result<(), IpcError> {
        let c = self.remove(h)?;
        endpoint::release(c.ep, c.rights);
        Ok(())
    }

    /// Closes every owning entry (a process's end).
    pub fn close_all(&self) {
        for k in 0..HANDLES {
            let _ = self.close(Handle(k as u32));
        }
    }

    /// Copies every entry of `from` into the same index here, each an owning handle (a
    /// spawned child's table; this one must be empty). Entries naming destroyed endpoints
    /// are skipped.
    pub fn inherit(&self, from: &HandleTable) {
        let _g = IrqGuard::new();
        let _l = self.lock.lock();
        for k in 0..HANDLES {
            if let Ok(c) = from.get(Handle(k as u32))
                && self.entry[k].load(Ordering::Relaxed) == 0
                && endpoint::retain(c.ep, c.rights).is_ok()
            {
                self.badge[k].store(c.badge, Ordering::Relaxed);
                self.entry[k].store(pack(&c), Ordering::Release);
            }
        }
    }

    /// Handles in use.
    pub fn count(&self) -> usize {
        self.entry
            .iter()
            .filter(|e| e.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Looks `h` up (lock-free).
    #[inline(always)]
    pub fn get(&self, h: Handle) -> Result<Cap, IpcError> {
        self.get_word(u64::from(h.0))
    }

    /// [`HandleTable::get`] of a handle as a register holds it, all 64 bits: one bound
    /// check covers both a value above 32 bits and one above the table.
    #[inline(always)]
    pub fn get_word(&self, h: u64) -> Result<Cap, IpcError> {
        let k = usize::try_from(h).map_err(|_| IpcError::BadHandle)?;
        let e = self.entry.get(k).ok_or(IpcError::BadHandle)?;
        loop {
            let w = e.load(Ordering::Acquire);
            if w == 0 {
                return Err(IpcError::BadHandle);
            }
            let badge = self.badge[k].load(Ordering::Relaxed);
            // A concurrent remove + insert between the two loads: read again.
            if e.load(Ordering::Acquire) != w {
                continue;
            }
            return Ok(Cap {
                ep: EpRef::from_raw((w & !0xffff_ffff) | (w & 0xff_ffff)),
                rights: Rights((w >> 24) as u8),
                badge,
            });
        }
    }

    #[inline(always)]
    fn with(&self, h: Handle, r: Rights) -> Result<Cap, IpcError> {
        let c = self.get(h)?;
        if c.rights.has(r) {
            Ok(c)
        } else {
            Err(IpcError::NoRights)
        }
    }

    /// [`endpoint::call`] through `h` (needs [`Rights::SEND`]; the entry's badge goes along).
    pub fn call(&self, h: Handle, msg: &Msg, deadline: u64) -> Result<Msg, IpcError> {
        self.call_via(h, msg, deadline, true)
    }

    /// [`HandleTable::call`], allowed the fastpath or not.
    #[inline(always)]
    pub fn call_via(
        &self,
        h: Handle,
        msg: &Msg,
        deadline: u64,
        fast: bool,
    ) -> Result<Msg, IpcError> {
        let c = self.with(h, Rights::SEND)?;
        endpoint::call_via(c.ep, c.badge, msg, deadline, fast)
    }

    /// [`endpoint::send`] through `h` (needs [`Rights::SEND`]).
    pub fn send(&self, h: Handle, msg: &Msg, deadline: u64) -> Result<(), IpcError> {
        let c = self.with(h, Rights::SEND)?;
        endpoint::send(c.ep, c.badge, msg, deadline)
    }

    /// [`endpoint::recv`] through `h` (needs [`Rights::RECV`]).
    pub fn recv(&self, h: Handle, deadline: u64) -> Result<Msg, IpcError> {
        let c = self.with(h, Rights::RECV)?;
        endpoint::recv(c.ep, deadline)
    }

    /// [`endpoint::reply_recv`] through `h` (needs [`Rights::RECV`]).
    pub fn reply_recv(&self, h: Handle, reply: &Msg, deadline: u64) -> Result<Msg, IpcError> {
        self.reply_recv_via(h, reply, deadline, true)
    }

    /// [`HandleTable::reply_recv`], allowed the fastpath or not.
    #[inline(always)]
    pub fn reply_recv_via(
        &self,
        h: Handle,
        reply: &Msg,
        deadline: u64,
        fast: bool,
    ) -> Result<Msg, IpcError> {
        let c = self.with(h, Rights::RECV)?;
        endpoint::reply_recv_via(c.ep, reply, deadline, fast)
    }
}
