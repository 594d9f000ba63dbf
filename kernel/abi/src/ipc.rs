//! Synchronous IPC through endpoints (`nr::IPC_CALL`..=`nr::HANDLE_CLOSE`).
//!
//! A process holds up to [`HANDLES`] handles (small integers) to endpoints, each with
//! rights ([`RIGHT_SEND`], [`RIGHT_RECV`]) and a badge delivered with every message sent
//! through it. A spawned child inherits a copy of its parent's handles; an endpoint is
//! destroyed when its last handle is closed (threads queued on it then fail with `EPIPE`);
//! a process's handles are closed when its last thread ends.
//!
//! # Registers
//!
//! The IPC calls carry a message of up to 64 bytes in registers: eight payload words in
//! `rdx, r10, r8, r9, r12, r13, r14, r15` ([`PAYLOAD_REGS`]), the handle in `rdi`, the
//! message *info* in `rsi` ([`info`]: label in bits 0..32, length in bytes 0..=64 in bits
//! 32..40, [`INFO_SLOW`] at bit 63, every other bit 0) and the timeout in nanoseconds in
//! `rbx` (0: none); [`INFO_ZC`] at bit 40 makes words 0 and 1 a descriptor into the
//! endpoint's shared region (zero-copy). A call that receives (`ipc_call`, `ipc_reply_recv`, `ipc_recv`)
//! returns 0 in `rax`, the message's info in `rsi`, the sender's badge in `rdi` (0 for a
//! reply) and the payload in the eight payload registers (all eight words are always
//! transferred, whatever the length). On an error, and for the calls that do not receive,
//! only `rax` changes (and `rcx`, `r11` as for every call).

/// Handles per process.
pub const HANDLES: usize = 64;
/// Largest payload, bytes.
pub const MSG_MAX: usize = 64;
/// Payload words.
pub const MSG_WORDS: usize = 8;
/// Where the payload words travel, in order.
pub const PAYLOAD_REGS: [&str; MSG_WORDS] = ["rdx", "r10", "r8", "r9", "r12", "r13", "r14", "r15"];
/// `endpoint_create` rights: `ipc_call` and `ipc_send`.
pub const RIGHT_SEND: u64 = 1;
/// `endpoint_create` rights: `ipc_recv` and `ipc_reply_recv`.
pub const RIGHT_RECV: u64 = 2;
/// Shift of the length in the info word.
pub const INFO_LEN_SHIFT: u32 = 32;
/// Info bit: take the slow path (queues and the scheduler) even when the fastpath could
/// run (benchmarks and tests compare the two; results are the same).
pub const INFO_SLOW: u64 = 1 << 63;
/// Info bit: a zero-copy descriptor. Payload words 0 and 1 are an offset and a length in
/// bytes into the endpoint's shared region (`shm_map`); the kernel checks that the range
/// lies inside the region (`ERANGE` otherwise, also when there is none) and delivers the
/// bit with the message. The bytes themselves are never copied.
pub const INFO_ZC: u64 = 1 << 40;
/// Info bit: a handle travels with the message. On send, word 7 names a handle of the
/// sender's (low 32 bits; no such handle: `EBADF`) and bits 32..34 of word 7 the rights to
/// give ([`RIGHT_SEND`], [`RIGHT_RECV`]; 0: all the handle has; more than it has: `EPERM`);
/// word 6 is the kernel's in flight (the sender's word 6 is not delivered). When the
/// receiver takes the message it gets a new handle (its lowest free entry) to the same
/// endpoint, with those rights and the sender's handle's badge: word 7 is that handle, word
/// 6 the rights. The sender keeps its own handle. If the receiver cannot get it (its table
/// is full, or every handle to the endpoint was closed before the message was taken) the
/// message arrives with [`INFO_HANDLE_LOST`] instead, word 7 `u64::MAX`, word 6 0.
pub const INFO_HANDLE: u64 = 1 << 41;
/// Info bit, on receipt only (on send: `EINVAL`): the message carried a handle the receiver
/// could not get (see [`INFO_HANDLE`]).
pub const INFO_HANDLE_LOST: u64 = 1 << 42;
/// Shift of the rights to give in word 7 of a message with [`INFO_HANDLE`].
pub const HANDLE_RIGHTS_SHIFT: u32 = 32;

/// Word 7 of a message that passes `handle` with `rights` (0: all it has).
pub const fn handle_word(handle: u32, rights: u64) -> u64 {
    handle as u64 | (rights & 3) << HANDLE_RIGHTS_SHIFT
}

/// Largest shared region (`shm_map`), bytes.
pub const SHM_MAX: u64 = 1 << 20;
/// Info bits that must be 0 (`EINVAL`).
pub const INFO_RESERVED: u64 =
    !(INFO_SLOW | INFO_ZC | INFO_HANDLE | (0xff << INFO_LEN_SHIFT) | 0xffff_ffff);
/// No timeout (`rbx`).
pub const FOREVER: u64 = 0;

/// The info word of a message: `label` and `len` bytes.
pub const fn info(label: u32, len: u8) -> u64 {
    label as u64 | (len as u64) << INFO_LEN_SHIFT
}

/// The label of an info word.
pub const fn label_of(info: u64) -> u32 {
    info as u32
}

/// The length of an info word.
pub const fn len_of(info: u64) -> u8 {
    (info >> INFO_LEN_SHIFT) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trips() {
        let i = info(0xdead_beef, 64);
        assert_eq!(label_of(i), 0xdead_beef);
        assert_eq!(len_of(i), 64);
        assert_eq!(i & INFO_RESERVED, 0);
        assert_eq!((i | INFO_SLOW) & INFO_RESERVED, 0);
        assert_eq!(INFO_ZC & INFO_RESERVED, 0);
        assert_eq!(INFO_HANDLE & INFO_RESERVED, 0);
        assert_ne!(INFO_HANDLE_LOST & INFO_RESERVED, 0, "receipt only");
        assert_ne!((1u64 << 43) & INFO_RESERVED, 0);
        assert_eq!(handle_word(5, RIGHT_SEND), 5 | 1 << 32);
    }
}
