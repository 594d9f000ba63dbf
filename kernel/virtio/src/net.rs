//! virtio-net formats (virtio 1.2, section 5.1): the header in front of every frame, the
//! configuration space, the control-queue command that sets the number of queue pairs, and
//! the checks a received buffer must pass before its frame is handed up.

/// Bytes of `virtio_net_hdr` with `VERSION_1` (`num_buffers` always present).
pub const HDR_LEN: usize = 12;
/// Header flag: the packet needs a checksum at `csum_start + csum_offset`.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// Header flag: the checksum was validated.
pub const HDR_F_DATA_VALID: u8 = 2;
/// Shortest Ethernet frame accepted (header without FCS: 14 bytes of addresses and type).
pub const MIN_FRAME: usize = 14;
/// Longest frame without jumbo support: 1514 bytes (1500 MTU + 14), plus a VLAN tag.
pub const MAX_FRAME: usize = 1518;

/// Configuration space offsets.
pub mod config {
    /// `mac[6]`.
    pub const MAC: usize = 0;
    /// `status` (u16, with `NET_STATUS`): bit 0 link up.
    pub const STATUS: usize = 6;
    /// `max_virtqueue_pairs` (u16, with `NET_MQ`).
    pub const MAX_PAIRS: usize = 8;
    /// `mtu` (u16, with `NET_MTU`).
    pub const MTU: usize = 10;
}

/// Queue index of receive queue `pair` (transmit is `+1`; the control queue follows the
/// last pair: `2 * max_pairs`).
pub const fn rx_queue(pair: u16) -> u16 {
    2 * pair
}
/// Queue index of transmit queue `pair`.
pub const fn tx_queue(pair: u16) -> u16 {
    2 * pair + 1
}

/// The header of a transmitted frame: no offload (the stack above computes checksums).
pub const TX_HDR: [u8; HDR_LEN] = [0; HDR_LEN];

/// `VIRTIO_NET_CTRL_MQ` / `VQ_PAIRS_SET`: the command's 2-byte header and its 2-byte body.
pub fn ctrl_mq_pairs_set(pairs: u16) -> [u8; 4] {
    let n = pairs.to_le_bytes();
    [4, 0, n[0], n[1]]
}
/// The device's answer in the control queue's one-byte status buffer.
pub const CTRL_OK: u8 = 0;

/// Why a received buffer is dropped instead of handed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// Shorter than the header plus an Ethernet header (`len` bytes written).
    Runt {
        /// Bytes the device wrote, header included.
        len: u32,
    },
    /// A frame longer than [`MAX_FRAME`] (no jumbo frames are negotiated).
    Oversized {
        /// Bytes the device wrote, header included.
        len: u32,
    },
    /// `num_buffers` says the frame spans several buffers, which was not negotiated.
    Merged {
        /// The header's `num_buffers`.
        num_buffers: u16,
    },
    /// `NEEDS_CSUM` without `GUEST_CSUM` negotiated (or a checksum position outside the
    /// frame): the frame's checksum is not there to trust.
    BadChecksumRequest,
}

impl core::fmt::Display for RxDrop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RxDrop::Runt { len } => write!(f, "runt: {len} bytes with the header"),
            RxDrop::Oversized { len } => write!(f, "oversized: {len} bytes with the header"),
            RxDrop::Merged { num_buffers } => {
                write!(f, "spans {num_buffers} buffers (MRG_RXBUF not negotiated)")
            }
            RxDrop::BadChecksumRequest => write!(f, "NEEDS_CSUM without GUEST_CSUM"),
        }
    }
}

/// Checks a received buffer (`buf` = the bytes the device wrote, header first) and returns
/// the frame's range in it. `guest_csum`: whether `GUEST_CSUM` was negotiated (then a
/// partial checksum is the stack's to finish, and only its position is checked).
pub fn check_rx(buf: &[u8], guest_csum: bool) -> Result<core::ops::Range<usize>, RxDrop> {
    let len = buf.len() as u32;
    if buf.len() < HDR_LEN + MIN_FRAME {
        return Err(RxDrop::Runt { len });
    }
    if buf.len() > HDR_LEN + MAX_FRAME {
        return Err(RxDrop::Oversized { len });
    }
    let num_buffers = u16::from_le_bytes([buf[10], buf[11]]);
    if num_buffers > 1 {
        return Err(RxDrop::Merged { num_buffers });
    }
    if buf[0] & HDR_F_NEEDS_CSUM != 0 {
        let start = usize::from(u16::from_le_bytes([buf[6], buf[7]]));
        let off = usize::from(u16::from_le_bytes([buf[8], buf[9]]));
        let frame = buf.len() - HDR_LEN;
        if !guest_csum || start + off + 2 > frame {
            return Err(RxDrop::BadChecksumRequest);
        }
    }
    Ok(HDR_LEN..buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(hdr: [u8; HDR_LEN], frame: usize) -> alloc::vec::Vec<u8> {
        let mut v = hdr.to_vec();
        v.resize(HDR_LEN + frame, 0xab);
        v
    }

    #[test]
    fn good_frames_pass() {
        assert_eq!(check_rx(&buf([0; 12], 60), false), Ok(12..72));
        assert_eq!(
            check_rx(&buf([0; 12], MAX_FRAME), false),
            Ok(12..12 + MAX_FRAME)
        );
        let mut h = [0u8; 12];
        h[10] = 1; // num_buffers = 1 is what a device without MRG_RXBUF may write
        assert!(check_rx(&buf(h, 64), false).is_ok());
    }

    #[test]
    fn runts_oversized_merged_and_bad_checksums_dropped() {
        assert_eq!(
            check_rx(&buf([0; 12], 13), false),
            Err(RxDrop::Runt { len: 25 })
        );
        assert_eq!(check_rx(&[0; 5], false), Err(RxDrop::Runt { len: 5 }));
        assert_eq!(
            check_rx(&buf([0; 12], MAX_FRAME + 1), false),
            Err(RxDrop::Oversized {
                len: (HDR_LEN + MAX_FRAME + 1) as u32
            })
        );
        let mut h = [0u8; 12];
        h[10] = 3;
        assert_eq!(
            check_rx(&buf(h, 64), false),
            Err(RxDrop::Merged { num_buffers: 3 })
        );
        let mut h = [0u8; 12];
        h[0] = HDR_F_NEEDS_CSUM;
        h[6] = 34; // csum_start
        h[8] = 6; // csum_offset
        assert_eq!(
            check_rx(&buf(h, 64), false),
            Err(RxDrop::BadChecksumRequest)
        );
        assert!(check_rx(&buf(h, 64), true).is_ok());
        h[6] = 60; // past the frame
        assert_eq!(check_rx(&buf(h, 64), true), Err(RxDrop::BadChecksumRequest));
    }

    #[test]
    fn queue_numbering_and_ctrl_command() {
        assert_eq!(
            (rx_queue(0), tx_queue(0), rx_queue(3), tx_queue(3)),
            (0, 1, 6, 7)
        );
        assert_eq!(ctrl_mq_pairs_set(0x0102), [4, 0, 2, 1]);
    }
}
