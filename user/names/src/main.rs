//! `/names`: the name server. Started with `arg = endpoint handle | token << 32` (the
//! handle is inherited from its parent's table, with the receive right), it serves the
//! protocol of `exo_rt::names` on that endpoint: `REGISTER` stores the handle that came
//! with the message under a name, `LOOKUP` passes a handle to it back in the reply (send
//! right only), `UNREGISTER` closes it, `STOP` with the token replies and exits 0 (every
//! stored handle closed). Anything else gets an error reply; no message makes it crash.
//! A handle that arrives with a message it does not keep is closed at once.
//!
//! Exits 0 after a `STOP`, 2 when its endpoint cannot be received on.
#![cfg_attr(target_os = "none", no_std, no_main)]

use exo_rt::abi::ipc::RIGHT_SEND;
use exo_rt::names::{
    BADNAME, BADREQ, BADTOKEN, EXISTS, FULL, LOOKUP, LOOKUP_RIGHTS, NAMES_MAX, NOHANDLE, NORIGHT,
    NOTFOUND, Name, OK, REGISTER, SELF, STOP, UNREGISTER,
};
use exo_rt::{IpcMsg, eprintln, println};

exo_rt::entry!(run);

/// A name and the server's handle to its endpoint.
#[derive(Debug, Clone, Copy)]
struct Entry {
    name: Name,
    handle: u32,
}

/// The names held.
#[derive(Debug)]
struct Table {
    entries: [Option<Entry>; NAMES_MAX],
}

impl Table {
    fn find(&self, name: &Name) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.is_some_and(|e| e.name == *name))
    }
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
        return (reply(register(t, m)), false);
    }
    // Only a register may carry a handle.
    if m.handle().is_some() || m.handle_lost() {
        drop_handle(m);
        return (reply(BADREQ), false);
    }
    match m.label {
        LOOKUP => match Name::from_msg(m) {
            Err(_) => (reply(BADNAME), false),
            Ok(name) => match t.find(&name).and_then(|i| t.entries[i]) {
                Some(e) => (reply(OK).with_handle(e.handle, LOOKUP_RIGHTS), false),
                None => (reply(NOTFOUND), false),
            },
        },
        UNREGISTER => match Name::from_msg(m) {
            Err(_) => (reply(BADNAME), false),
            Ok(name) => match t.find(&name) {
                Some(i) => {
                    if let Some(e) = t.entries[i].take() {
                        let _ = exo_rt::handle_close(e.handle);
                    }
                    (reply(OK), false)
                }
                None => (reply(NOTFOUND), false),
            },
        },
        // A send-only handle to this endpoint (`names::start` gives its caller that one and
        // closes the one with the receive right).
        SELF => (reply(OK).with_handle(ns, RIGHT_SEND), false),
        STOP if m.words[0] == u64::from(token) => (reply(OK), true),
        STOP => (reply(BADTOKEN), false),
        _ => (reply(BADREQ), false),
    }
}

/// A `REGISTER`: the reply code. The received handle is kept only on `OK`.
fn register(t: &mut Table, m: &IpcMsg) -> u32 {
    let Some(h) = m.handle() else {
        return if Name::from_msg(m).is_err() {
            BADNAME
        } else {
            NOHANDLE
        };
    };
    let code = match Name::from_msg(m) {
        Err(_) => BADNAME,
        Ok(_) if m.handle_rights() & RIGHT_SEND == 0 => NORIGHT,
        Ok(name) if t.find(&name).is_some() => EXISTS,
        Ok(name) => match t.entries.iter_mut().find(|e| e.is_none()) {
            Some(slot) => {
                *slot = Some(Entry { name, handle: h });
                OK
            }
            None => FULL,
        },
    };
    if code != OK {
        let _ = exo_rt::handle_close(h);
    }
    code
}

fn run(arg: u64) -> i32 {
    let ns = arg as u32;
    let token = (arg >> 32) as u32;
    let mut t = Table {
        entries: [None; NAMES_MAX],
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
            println!("names: stopped after {requests} request(s), {held} name(s) still held");
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
