//! `/names`: the name server. Started with `arg = endpoint handle | token << 32` (the
//! handle is inherited from its parent's table, with the receive right), it serves the
//! protocol of `exo_rt::names` on that endpoint: `REGISTER` stores the handle that came
//! with the message under a name, `LOOKUP` passes a handle to it back in the reply (send
//! right only), `UNREGISTER` closes it, `STOP` with the token replies and exits 0 (every
//! stored handle closed). Only send-only handles are stored (`NORIGHT` otherwise), and the
//! handles inherited from the parent but its own endpoint's are closed at start: neither
//! keeps an endpoint from going deaf. A name whose endpoint went deaf (its server ended: the kernel's
//! `handle_info` says `EPIPE`) is let go when a `LOOKUP` finds it (`NOTFOUND`) and before
//! a `REGISTER`, so a restarted server can take its name again. Anything else gets an error reply; no message makes it crash.
//! A handle that arrives with a message it does not keep is closed at once.
//!
//! After `exo_rt::names::STOP_TRIES` `STOP`s with a wrong token it refuses every `STOP`
//! (guessing the token is not a way to stop it; its parent can still `kill` it).
//!
//! Exits 0 after a `STOP` (its last line: `names: stopped after <n> request(s), <k> name(s)
//! still held, <w> wrong stop(s)`), 2 when its endpoint cannot be received on.
#![cfg_attr(target_os = "none", no_std, no_main)]

use exo_rt::abi::ipc::RIGHT_SEND;
use exo_rt::names::{
    BADNAME, BADREQ, BADTOKEN, COOKIE_WORD, EXISTS, FULL, LOOKUP, LOOKUP_RIGHTS, NAMES_MAX,
    NOHANDLE, NORIGHT, NOTFOUND, NOTOWNER, Name, OK, REGISTER, SELF, STOP, STOP_TRIES, UNREGISTER,
};
use exo_rt::{IpcMsg, eprintln, println};

exo_rt::entry!(run);

/// A name, the server's handle to its endpoint, and the cookie its registrant got.
#[derive(Debug, Clone, Copy)]
struct Entry {
    name: Name,
    handle: u32,
    cookie: u64,
}

/// The names held.
#[derive(Debug)]
struct Table {
    entries: [Option<Entry>; NAMES_MAX],
    /// State of the cookie generator (splitmix64, seeded from the TSC at start: cookies
    /// are not guessed from one another, though not secret against a client that can time
    /// the server and try many).
    seed: u64,
    /// `STOP`s with a wrong token so far (at [`STOP_TRIES`], every `STOP` is refused).
    bad_stops: u32,
}

impl Table {
    fn cookie(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    }
}

impl Table {
    fn find(&self, name: &Name) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.is_some_and(|e| e.name == *name))
    }

    /// [`Table::find`] of a name whose server can still receive: a name whose endpoint
    /// went deaf (its registrant ended or closed its receive handle: `handle_info` says
    /// `EPIPE`) is let go on the way. Until 2026-12-05 such a name was kept for good.
    fn find_live(&mut self, name: &Name) -> Option<usize> {
        let i = self.find(name)?;
        if self.entries[i].is_some_and(|e| dead(e.handle)) {
            self.let_go(i);
            return None;
        }
        Some(i)
    }

    /// Every name whose server ended, let go (before a `REGISTER` finds the table full).
    fn prune(&mut self) {
        for i in 0..NAMES_MAX {
            if self.entries[i].is_some_and(|e| dead(e.handle)) {
                self.let_go(i);
            }
        }
    }

    fn let_go(&mut self, i: usize) {
        if let Some(e) = self.entries[i].take() {
            let _ = exo_rt::handle_close(e.handle);
        }
    }
}

/// Whether nothing sent through the server's handle `h` can be received any more.
fn dead(h: u32) -> bool {
    exo_rt::handle_info(h) == Err(exo_rt::Errno::EPIPE)
}

/// A reply with `code` and no payload.
fn reply(code: u32) -> IpcMsg {
    IpcMsg {
        len: 0,
        ..IpcMsg::new(code, [0; 8])
    }
}

/// Closes a received handle the server does not keep.
fn drop_handle(m: &IpcMsg) {
    if let Some(h) = m.handle() {
        let _ = exo_rt::handle_close(h);
    }
}

/// The answer to `m`, and whether the server stops after sending it.
fn serve(t: &mut Table, ns: u32, token: u32, m: &IpcMsg) -> (IpcMsg, bool) {
    if m.label == REGISTER {
        let (code, cookie) = register(t, m);
        let mut r = reply(code);
        if code == OK {
            r.words[0] = cookie;
            r.len = 8;
        }
        return (r, false);
    }
    // Only a register may carry a handle.
    if m.handle().is_some() || m.handle_lost() {
        drop_handle(m);
        return (reply(BADREQ), false);
    }
    match m.label {
        LOOKUP => match Name::from_msg(m) {
            Err(_) => (reply(BADNAME), false),
            Ok(name) => match t.find_live(&name).and_then(|i| t.entries[i]) {
                Some(e) => (reply(OK).with_handle(e.handle, LOOKUP_RIGHTS), false),
                None => (reply(NOTFOUND), false),
            },
        },
        UNREGISTER => match Name::from_msg(m) {
            Err(_) => (reply(BADNAME), false),
            Ok(name) => match t.find(&name) {
                // Only its registrant (the cookie its REGISTER got) takes a name off.
                Some(i) if t.entries[i].is_some_and(|e| e.cookie != m.words[COOKIE_WORD]) => {
                    (reply(NOTOWNER), false)
                }
                Some(i) => {
                    t.let_go(i);
                    (reply(OK), false)
                }
                None => (reply(NOTFOUND), false),
            },
        },
        // A send-only handle to this endpoint (`names::start` gives its caller that one and
        // closes the one with the receive right).
        SELF => (reply(OK).with_handle(ns, RIGHT_SEND), false),
        STOP if t.bad_stops < STOP_TRIES && m.words[0] == u64::from(token) => (reply(OK), true),
        STOP => {
            t.bad_stops = t.bad_stops.saturating_add(1);
            (reply(BADTOKEN), false)
        }
        _ => (reply(BADREQ), false),
    }
}

/// A `REGISTER`: the reply code and, on `OK`, the registration's cookie. The received
/// handle is kept only on `OK`.
fn register(t: &mut Table, m: &IpcMsg) -> (u32, u64) {
    let Some(h) = m.handle() else {
        let code = if Name::from_msg(m).is_err() {
            BADNAME
        } else {
            NOHANDLE
        };
        return (code, 0);
    };
    let cookie = t.cookie();
    // A name whose server ended is free again.
    t.prune();
    let code = match Name::from_msg(m) {
        Err(_) => BADNAME,
        // Send only: a receive right here would keep the endpoint from ever going deaf (its
        // name never let go when its server ends) and let this server take its calls
        // (until 2026-12-05 it was kept; found by review).
        Ok(_) if m.handle_rights() != RIGHT_SEND => NORIGHT,
        Ok(name) if t.find(&name).is_some() => EXISTS,
        Ok(name) => match t.entries.iter_mut().find(|e| e.is_none()) {
            Some(slot) => {
                *slot = Some(Entry {
                    name,
                    handle: h,
                    cookie,
                });
                OK
            }
            None => FULL,
        },
    };
    if code != OK {
        let _ = exo_rt::handle_close(h);
    }
    (code, cookie)
}

fn run(arg: u64) -> i32 {
    let ns = arg as u32;
    let token = (arg >> 32) as u32;
    // The whole table of its parent came with it: every handle but its own endpoint's goes
    // (a receive handle kept here would keep that endpoint from going deaf while this
    // server lives; until 2026-12-05 they were kept; found by review).
    for h in 0..exo_rt::abi::ipc::HANDLES as u32 {
        if h != ns {
            let _ = exo_rt::handle_close(h);
        }
    }
    let mut t = Table {
        entries: [None; NAMES_MAX],
        seed: exo_rt::time::rdtsc(),
        bad_stops: 0,
    };
    let mut requests = 0u64;
    let mut m = match exo_rt::ipc_recv(ns, 0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("names: recv on handle {ns}: {e}");
            return 2;
        }
    };
    loop {
        requests += 1;
        let (answer, stop) = serve(&mut t, ns, token, &m);
        if stop {
            let _ = exo_rt::ipc_reply(&answer);
            let held = t.entries.iter().flatten().count();
            for e in t.entries.iter_mut().filter_map(Option::take) {
                let _ = exo_rt::handle_close(e.handle);
            }
            println!(
                "names: stopped after {requests} request(s), {held} name(s) still held, {} wrong stop(s)",
                t.bad_stops
            );
            return 0;
        }
        m = match exo_rt::ipc_reply_recv(ns, &answer, 0) {
            Ok(m) => m,
            Err(e) => {
                // The reply was refused (then the caller still waits: answer it plainly)
                // or the receive failed (then this reply finds no caller): receive afresh.
                eprintln!("names: reply_recv: {e}");
                let _ = exo_rt::ipc_reply(&reply(BADREQ));
                match exo_rt::ipc_recv(ns, 0) {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("names: recv on handle {ns}: {e}");
                        return 2;
                    }
                }
            }
        };
    }
}
