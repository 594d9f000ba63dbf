//! The name server's protocol (`/names`, `user/names`) and its client side: a process
//! registers a handle to one of its endpoints under a name, others look the name up and get
//! a handle of their own to that endpoint (passed in the reply, `exo_abi::ipc::INFO_HANDLE`).
//!
//! # The protocol
//!
//! Every request is an `ipc_call` on the name server's endpoint; the reply's label is one
//! of the reply codes below ([`OK`] .. [`NOTOWNER`]). Until 2026-12-06 this table had no
//! `SELF`, no cookie and no `NOTOWNER` (found by review).
//!
//! | request | label | words | `len` | reply |
//! |---------|-------|-------|-------|-------|
//! | register | [`REGISTER`] | 0..6 the name, 7 the handle to store (`INFO_HANDLE`) | name's bytes | [`OK`] with the registration's cookie in word 0 (`len` 8; [`unregister`] must present it), [`EXISTS`] (a live registration has the name: one whose endpoint went deaf, its server ended, is let go), [`FULL`], [`BADNAME`], [`NOHANDLE`] (no handle came, or `INFO_HANDLE_LOST`), [`NORIGHT`] (the handle is not send-only) |
//! | lookup | [`LOOKUP`] | 0..6 the name | name's bytes | [`OK`] passing a handle to the stored endpoint with `RIGHT_SEND` only (word 7 the caller's new handle, word 6 its rights), or [`NOTFOUND`] (also for a name whose server ended: let go), [`BADNAME`] |
//! | unregister | [`UNREGISTER`] | 0..6 the name, [`COOKIE_WORD`] (6) the cookie its `REGISTER` got | name's bytes | [`OK`] (the server closed its handle), [`NOTOWNER`] (another cookie: the name stays), [`NOTFOUND`], [`BADNAME`] |
//! | self | [`SELF`] | none | 0 | [`OK`] passing a send-only handle to the server's own endpoint (what [`start`] keeps) |
//! | stop | [`STOP`] | 0 the token the server was started with | 8 | [`OK`], then the server exits 0; [`BADTOKEN`] (also for the right token after [`STOP_TRIES`] wrong ones) |
//!
//! Any other label, or a message that does not fit its row (e.g. a handle sent with a
//! lookup, which the server closes), is answered [`BADREQ`] or the row's error: never a
//! crash. A **name** is 1..=[`NAME_MAX`] bytes, none of them 0, packed little-endian into
//! words 0..6 and zero-padded; `len` (the info's length) is its length in bytes, and the
//! bytes past it must be 0 ([`BADNAME`] otherwise). The client side refuses bad names
//! before any call ([`NsError::BadName`]). The server holds at most [`NAMES_MAX`] names.
//!
//! `/names` is started with `arg = endpoint handle | token << 32` (the handle is inherited
//! from its parent, which keeps a copy to stop it with: [`start`]; `/init` does so for its
//! IPC suite). The token is not 0.

use exo_abi::Errno;
use exo_abi::ipc::RIGHT_SEND;

use crate::{IpcMsg, handle_close, ipc_call};

/// Request: store the message's handle under the name.
pub const REGISTER: u32 = 0x4e53_0001;
/// Request: a handle (send right only) to the endpoint registered under the name.
pub const LOOKUP: u32 = 0x4e53_0002;
/// Request: forget the name (the server closes its handle).
pub const UNREGISTER: u32 = 0x4e53_0003;
/// Request: a send-only handle to the server's own endpoint (the reply carries it).
pub const SELF: u32 = 0x4e53_0004;
/// Request: stop the server (word 0 must be its token).
pub const STOP: u32 = 0x4e53_00ff;

/// Reply: the name is someone else's (`UNREGISTER` without the registration's cookie).
pub const NOTOWNER: u32 = 9;
/// Reply: done.
pub const OK: u32 = 0;
/// Reply: the name is taken.
pub const EXISTS: u32 = 1;
/// Reply: the server holds [`NAMES_MAX`] names.
pub const FULL: u32 = 2;
/// Reply: the name is empty, too long, has a 0 byte, or bytes past `len`.
pub const BADNAME: u32 = 3;
/// Reply: a register without a handle (or whose handle was lost on the way).
pub const NOHANDLE: u32 = 4;
/// Reply: no such name.
pub const NOTFOUND: u32 = 5;
/// Reply: a stop with the wrong token.
pub const BADTOKEN: u32 = 6;
/// Reply: a register whose handle has no send right (nobody could use it).
pub const NORIGHT: u32 = 7;
/// Reply: an unknown label or a malformed request.
pub const BADREQ: u32 = 8;

/// Longest name, bytes (words 0..6).
pub const NAME_MAX: usize = 48;
/// Names the server holds at most.
pub const NAMES_MAX: usize = 32;
/// The rights of the handle a lookup gives.
pub const LOOKUP_RIGHTS: u64 = RIGHT_SEND;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsError {
    /// [`EXISTS`].
    Exists,
    /// [`FULL`].
    Full,
    /// [`BADNAME`], or refused before the call.
    BadName,
    /// [`NOHANDLE`].
    NoHandle,
    /// [`NOTFOUND`].
    NotFound,
    /// [`BADTOKEN`].
    BadToken,
    /// [`NORIGHT`].
    NoRight,
    /// [`BADREQ`].
    BadRequest,
    /// [`NOTOWNER`].
    NotOwner,
    /// The reply said [`OK`] but its handle could not be given to us
    /// (`INFO_HANDLE_LOST`: our table is full, or the endpoint is gone).
    HandleLost,
    /// A reply code not in the protocol, or an [`OK`] lookup without a handle.
    Protocol(u32),
    /// The call itself failed.
    Ipc(Errno),
}

impl NsError {
    /// The error a reply code stands for (`None` for [`OK`]).
    pub const fn from_code(code: u32) -> Option<NsError> {
        Some(match code {
            OK => return None,
            EXISTS => NsError::Exists,
            FULL => NsError::Full,
            BADNAME => NsError::BadName,
            NOHANDLE => NsError::NoHandle,
            NOTFOUND => NsError::NotFound,
            BADTOKEN => NsError::BadToken,
            NORIGHT => NsError::NoRight,
            BADREQ => NsError::BadRequest,
            NOTOWNER => NsError::NotOwner,
            other => NsError::Protocol(other),
        })
    }
}

impl core::fmt::Display for NsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NsError::Exists => f.write_str("name exists"),
            NsError::Full => f.write_str("name server full"),
            NsError::BadName => f.write_str("bad name"),
            NsError::NoHandle => f.write_str("no handle"),
            NsError::NotFound => f.write_str("no such name"),
            NsError::BadToken => f.write_str("wrong stop token"),
            NsError::NoRight => f.write_str("handle without the send right"),
            NsError::BadRequest => f.write_str("bad request"),
            NsError::NotOwner => f.write_str("the name is another client's"),
            NsError::HandleLost => f.write_str("handle lost (table full?)"),
            NsError::Protocol(c) => write!(f, "protocol error (reply {c})"),
            NsError::Ipc(e) => write!(f, "ipc: {e}"),
        }
    }
}

/// A valid name: 1..=[`NAME_MAX`] bytes, none 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_MAX],
    len: u8,
}

impl Name {
    /// `bytes` as a name, or [`NsError::BadName`].
    pub fn new(bytes: &[u8]) -> Result<Name, NsError> {
        if bytes.is_empty() || bytes.len() > NAME_MAX || bytes.contains(&0) {
            return Err(NsError::BadName);
        }
        let mut n = Name {
            bytes: [0; NAME_MAX],
            len: bytes.len() as u8,
        };
        n.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(n)
    }
    /// The name in a received request (`len` bytes of words 0..6, the rest 0), or
    /// [`NsError::BadName`].
    pub fn from_msg(m: &IpcMsg) -> Result<Name, NsError> {
        let len = usize::from(m.len);
        let mut bytes = [0u8; NAME_MAX];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(&m.words[..NAME_MAX / 8]) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        if len == 0 || len > NAME_MAX || bytes[..len].contains(&0) {
            return Err(NsError::BadName);
        }
        if bytes[len..].iter().any(|&b| b != 0) {
            return Err(NsError::BadName);
        }
        Ok(Name {
            bytes,
            len: len as u8,
        })
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    /// Its length in bytes.
    #[allow(clippy::len_without_is_empty)] // never empty
    pub const fn len(&self) -> usize {
        self.len as usize
    }
    /// Words 0..6 of a request: the bytes little-endian, zero-padded.
    pub fn words(&self) -> [u64; NAME_MAX / 8] {
        let mut w = [0u64; NAME_MAX / 8];
        for (x, chunk) in w.iter_mut().zip(self.bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *x = u64::from_le_bytes(b);
        }
        w
    }
    /// The request `label` about this name (`len` its length, words 6 and 7 zero).
    pub fn request(&self, label: u32) -> IpcMsg {
        let mut words = [0u64; 8];
        words[..NAME_MAX / 8].copy_from_slice(&self.words());
        IpcMsg {
            len: self.len,
            ..IpcMsg::new(label, words)
        }
    }
}

/// Wrong `STOP` tokens a server takes before it refuses every `STOP` for good (the right
/// token too: [`BADTOKEN`]): a client trying tokens one after another has a chance of at
/// most 4096 in 2^31 (the tokens are odd). The server must then be ended with `kill`.
pub const STOP_TRIES: u32 = 4096;

/// A stop token for [`start`]: 32 random bits from the CPU ([`crate::time::rdrand`]), never
/// 0. Without `rdrand` it is drawn from the TSC and can be guessed by a process that knows
/// roughly when the server started. Until 2026-12-05 it always came from the TSC.
pub fn new_token() -> u32 {
    let r = crate::time::rdrand().unwrap_or_else(|| {
        // splitmix64's finalizer over the TSC: spreads the bits, hides nothing.
        let mut z = crate::time::rdtsc().wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    });
    (r as u32) | 1
}

/// Starts a name server: a new endpoint (`badge`) and `/names` serving it, stoppable with
/// `token` (not 0). Returns the caller's handle to it, **send only** (asked of the server
/// with [`SELF`]; the handle with the receive right the server inherited is closed here),
/// and the server's pid; [`stop`] it, then `wait` for it. Processes the caller spawns
/// afterwards inherit the send-only handle: none can receive a client's `REGISTER` (and
/// the handle it brings) or answer a `LOOKUP` in the server's place, as every one of them
/// could until 2026-12-05 (found by review).
pub fn start(token: u32, badge: u64) -> Result<(u32, usize), Errno> {
    if token == 0 {
        return Err(Errno::EINVAL);
    }
    let ns = crate::endpoint_create(RIGHT_SEND | exo_abi::ipc::RIGHT_RECV, badge)?;
    let pid = match crate::spawn("/names", u64::from(ns) | u64::from(token) << 32) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = handle_close(ns);
            return Err(e);
        }
    };
    let send_only = match ask(ns, &IpcMsg::new(SELF, [0; 8]), true) {
        Ok(r) => r.handle(),
        Err(_) => None,
    };
    let Some(h) = send_only else {
        // The server did not answer as one (EIO): stopped, and its end waited for.
        let _ = stop(ns, token);
        let _ = crate::wait(pid);
        let _ = handle_close(ns);
        return Err(Errno::EIO);
    };
    let _ = handle_close(ns);
    Ok((h, pid))
}

/// How long a request waits for the server's answer: far above any answer's time (the
/// server answers at once), so only a server that is gone or stuck gives
/// `NsError::Ipc(ETIMEDOUT)`; until 2026-12-05 a request waited for ever and a dead
/// server hung its clients (init's IPC suite until CI's timeout; found by review).
pub const REQUEST_TIMEOUT_NS: u64 = 60_000_000_000;

/// One request; the reply, with a handle it brought closed unless `keep_handle`.
fn ask(ns: u32, m: &IpcMsg, keep_handle: bool) -> Result<IpcMsg, NsError> {
    let r = ipc_call(ns, m, REQUEST_TIMEOUT_NS).map_err(NsError::Ipc)?;
    if let Some(h) = r.handle()
        && (!keep_handle || r.label != OK)
    {
        let _ = handle_close(h);
    }
    match NsError::from_code(r.label) {
        None => Ok(r),
        Some(e) => Err(e),
    }
}

/// A registration: the cookie the server gave it (its reply's word 0), which
/// [`unregister`] must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration(pub u64);

/// Registers `handle` (one of the caller's, which keeps it) under `name`, giving the server
/// `rights` (0: `RIGHT_SEND`; the server takes send-only handles: [`NORIGHT`] otherwise).
/// Only the returned registration can take the name off again.
pub fn register(ns: u32, name: &str, handle: u32, rights: u64) -> Result<Registration, NsError> {
    let rights = if rights == 0 { RIGHT_SEND } else { rights };
    let m = Name::new(name.as_bytes())?
        .request(REGISTER)
        .with_handle(handle, rights);
    ask(ns, &m, false).map(|r| Registration(r.words[0]))
}

/// Looks `name` up: a new handle of the caller's to the endpoint and its rights
/// (`RIGHT_SEND`).
pub fn lookup_rights(ns: u32, name: &str) -> Result<(u32, u64), NsError> {
    let m = Name::new(name.as_bytes())?.request(LOOKUP);
    let r = ask(ns, &m, true)?;
    match r.handle() {
        Some(h) => Ok((h, r.handle_rights())),
        None if r.handle_lost() => Err(NsError::HandleLost),
        None => Err(NsError::Protocol(r.label)),
    }
}

/// Looks `name` up: a new handle of the caller's (send right only) to the endpoint
/// registered under it.
pub fn lookup(ns: u32, name: &str) -> Result<u32, NsError> {
    lookup_rights(ns, name).map(|(h, _)| h)
}

/// Forgets `name`, registered as `reg` (handles already given out stay valid). Another
/// client's name is [`NsError::NotOwner`]: until 2026-12-05 any client could take any name
/// off and register its own endpoint under it (found by review).
pub fn unregister(ns: u32, name: &str, reg: Registration) -> Result<(), NsError> {
    let mut m = Name::new(name.as_bytes())?.request(UNREGISTER);
    m.words[COOKIE_WORD] = reg.0;
    ask(ns, &m, false).map(|_| ())
}

/// The word of an `UNREGISTER` that carries the registration's cookie (after the name's
/// six).
pub const COOKIE_WORD: usize = 6;

/// Stops the server started with `token`; it exits 0 after the reply.
pub fn stop(ns: u32, token: u32) -> Result<(), NsError> {
    let mut w = [0u64; 8];
    w[0] = u64::from(token);
    let m = IpcMsg {
        len: 8,
        ..IpcMsg::new(STOP, w)
    };
    ask(ns, &m, false).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ["a", "echo", "exactly-eight", &"x".repeat(NAME_MAX), "héllo"] {
            let n = Name::new(s.as_bytes()).unwrap();
            let m = n.request(LOOKUP);
            assert_eq!(m.label, LOOKUP);
            assert_eq!(usize::from(m.len), s.len());
            assert_eq!(m.words[6], 0);
            assert_eq!(m.words[7], 0);
            assert_eq!(Name::from_msg(&m).unwrap(), n);
            assert_eq!(Name::from_msg(&m).unwrap().as_bytes(), s.as_bytes());
        }
    }

    #[test]
    fn little_endian_zero_padded() {
        let n = Name::new(b"echo").unwrap();
        assert_eq!(
            n.words(),
            [u64::from_le_bytes(*b"echo\0\0\0\0"), 0, 0, 0, 0, 0]
        );
        let n = Name::new(b"0123456789").unwrap();
        assert_eq!(n.words()[0], u64::from_le_bytes(*b"01234567"));
        assert_eq!(n.words()[1], u64::from_le_bytes(*b"89\0\0\0\0\0\0"));
    }

    #[test]
    fn bad_names_refused() {
        assert_eq!(Name::new(b""), Err(NsError::BadName));
        assert_eq!(Name::new(&[b'x'; NAME_MAX + 1]), Err(NsError::BadName));
        assert_eq!(Name::new(b"a\0b"), Err(NsError::BadName));
        // Client side: refused before any call (ns 9999 is never touched).
        assert_eq!(register(9999, "", 0, 0), Err(NsError::BadName));
        assert_eq!(lookup(9999, &"y".repeat(49)), Err(NsError::BadName));
        assert_eq!(unregister(9999, "", Registration(1)), Err(NsError::BadName));
    }

    #[test]
    fn malformed_requests_refused() {
        let good = Name::new(b"echo").unwrap().request(REGISTER);
        for len in [0u8, 49, 64, 255] {
            assert_eq!(
                Name::from_msg(&IpcMsg { len, ..good }),
                Err(NsError::BadName),
                "len {len}"
            );
        }
        // Shorter than the bytes that are there: bytes past len are not 0.
        assert_eq!(
            Name::from_msg(&IpcMsg { len: 3, ..good }),
            Err(NsError::BadName)
        );
        // A 0 byte inside.
        let mut m = good;
        m.words[0] = u64::from_le_bytes(*b"ec\0o\0\0\0\0");
        assert_eq!(Name::from_msg(&m), Err(NsError::BadName));
        // Junk in word 5 past a short name.
        let mut m = good;
        m.words[5] = 1;
        assert_eq!(Name::from_msg(&m), Err(NsError::BadName));
        // Words 6 and 7 are not the name's: anything there is fine.
        let m = good.with_handle(3, RIGHT_SEND);
        assert_eq!(Name::from_msg(&m).unwrap().as_bytes(), b"echo");
    }

    #[test]
    fn codes_map_to_errors() {
        assert_eq!(NsError::from_code(OK), None);
        let codes = [
            EXISTS, FULL, BADNAME, NOHANDLE, NOTFOUND, BADTOKEN, NORIGHT, BADREQ, NOTOWNER,
        ];
        for (i, &c) in codes.iter().enumerate() {
            let e = NsError::from_code(c).unwrap();
            assert!(!matches!(e, NsError::Protocol(_)), "code {c}");
            for &d in &codes[i + 1..] {
                assert_ne!(Some(e), NsError::from_code(d));
            }
        }
        assert_eq!(NsError::from_code(99), Some(NsError::Protocol(99)));
        let labels = [REGISTER, LOOKUP, UNREGISTER, SELF, STOP];
        assert!(labels.iter().all(|l| !codes.contains(l) && *l != OK));
    }

    #[test]
    fn handle_bits() {
        use exo_abi::ipc::{INFO_HANDLE, INFO_HANDLE_LOST, RIGHT_RECV};
        let m = IpcMsg::new(1, [0; 8]).with_handle(5, RIGHT_SEND);
        assert_eq!(m.info() & INFO_HANDLE, INFO_HANDLE);
        assert_eq!(m.words[7], 5 | 1 << 32);
        assert_eq!(m.handle(), Some(5));
        let mut r = IpcMsg::new(0, [0; 8]);
        assert_eq!(r.handle(), None);
        assert!(!r.handle_lost());
        r.flags = INFO_HANDLE;
        r.words[7] = 9;
        r.words[6] = RIGHT_SEND | RIGHT_RECV;
        assert_eq!(r.handle(), Some(9));
        assert_eq!(r.handle_rights(), 3);
        r.flags = INFO_HANDLE_LOST;
        r.words[7] = u64::MAX;
        r.words[6] = 0;
        assert_eq!(r.handle(), None);
        assert!(r.handle_lost());
        assert_eq!(
            IpcMsg::new(7, [0; 8]).info() & (INFO_HANDLE | INFO_HANDLE_LOST),
            0
        );
    }
}
