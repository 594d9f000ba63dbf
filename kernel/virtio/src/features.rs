//! Feature bits and their negotiation (virtio 1.2, section 2.2 and 5.1.3).

/// The device's checksum offload: it accepts packets with a partial checksum.
pub const NET_CSUM: u64 = 1 << 0;
/// The driver handles packets with a partial checksum.
pub const NET_GUEST_CSUM: u64 = 1 << 1;
/// The device has a MAC address in its configuration space.
pub const NET_MAC: u64 = 1 << 5;
/// The driver can merge receive buffers (a packet may span several).
pub const NET_MRG_RXBUF: u64 = 1 << 15;
/// The configuration space has a link status field.
pub const NET_STATUS: u64 = 1 << 16;
/// A control virtqueue exists.
pub const NET_CTRL_VQ: u64 = 1 << 17;
/// Several RX/TX queue pairs (needs the control queue to enable them).
pub const NET_MQ: u64 = 1 << 22;
/// Descriptors may chain indirect tables.
pub const RING_INDIRECT_DESC: u64 = 1 << 28;
/// `used_event` / `avail_event`: notifications suppressed by index, not by flag.
pub const RING_EVENT_IDX: u64 = 1 << 29;
/// The device follows virtio 1.0 or later (the only kind Exo-OS drives).
pub const VERSION_1: u64 = 1 << 32;
/// The device uses buffers in the order they were made available.
pub const IN_ORDER: u64 = 1 << 35;
/// The device may only access memory through the platform's IOMMU.
pub const ACCESS_PLATFORM: u64 = 1 << 33;

/// Why negotiation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureError {
    /// The device does not offer these features, which the driver cannot do without.
    Missing(u64),
}

impl core::fmt::Display for FeatureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FeatureError::Missing(bits) => {
                write!(f, "device lacks required feature bits {bits:#x}")?;
                if bits & VERSION_1 != 0 {
                    write!(f, " (VERSION_1: a legacy-only device)")?;
                }
                Ok(())
            }
        }
    }
}

/// The features to accept: those the device offers among `wanted` (which should include
/// `required`). Fails with the missing bits when the device lacks one of `required`.
/// Bits the driver does not know are never accepted, whatever the device offers;
/// `ACCESS_PLATFORM` is refused unless asked for (Exo-OS programs no IOMMU).
pub fn negotiate(offered: u64, wanted: u64, required: u64) -> Result<u64, FeatureError> {
    let missing = required & !offered;
    if missing != 0 {
        return Err(FeatureError::Missing(missing));
    }
    Ok(offered & (wanted | required))
}

/// [`negotiate`] for a network device, with virtio-net's dependencies between bits (virtio
/// 1.2, 5.1.3.1): `NET_MQ` is accepted only with `NET_CTRL_VQ` (the queue pairs are enabled
/// through the control queue), else dropped, or, when required, a failure naming
/// `NET_CTRL_VQ`. Until 2026-12-05 `NET_MQ` was accepted alone, which the specification
/// forbids (Linux refuses it, `virtnet_validate_features`; found by review).
pub fn negotiate_net(offered: u64, wanted: u64, required: u64) -> Result<u64, FeatureError> {
    let accepted = negotiate(offered, wanted, required)?;
    if accepted & NET_CTRL_VQ != 0 {
        return Ok(accepted);
    }
    if required & NET_MQ != 0 {
        return Err(FeatureError::Missing(NET_CTRL_VQ));
    }
    Ok(accepted & !NET_MQ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_mq_needs_the_control_queue() {
        let want = VERSION_1 | NET_MAC | NET_CTRL_VQ | NET_MQ;
        // Offered without the control queue: MQ dropped.
        assert_eq!(
            negotiate_net(VERSION_1 | NET_MAC | NET_MQ, want, VERSION_1),
            Ok(VERSION_1 | NET_MAC)
        );
        // Offered, but the control queue not wanted: MQ dropped too.
        assert_eq!(
            negotiate_net(
                VERSION_1 | NET_CTRL_VQ | NET_MQ,
                VERSION_1 | NET_MQ,
                VERSION_1
            ),
            Ok(VERSION_1)
        );
        // Both offered and wanted: both taken.
        assert_eq!(
            negotiate_net(VERSION_1 | NET_CTRL_VQ | NET_MQ, want, VERSION_1),
            Ok(VERSION_1 | NET_CTRL_VQ | NET_MQ)
        );
        // MQ required without the control queue: the control queue named as missing.
        assert_eq!(
            negotiate_net(VERSION_1 | NET_MQ, want, VERSION_1 | NET_MQ),
            Err(FeatureError::Missing(NET_CTRL_VQ))
        );
    }

    #[test]
    fn accepts_only_offered_and_wanted() {
        let offered = VERSION_1 | RING_EVENT_IDX | NET_MAC | NET_MQ | (1 << 40);
        let wanted = RING_EVENT_IDX | NET_MAC | NET_CSUM;
        assert_eq!(
            negotiate(offered, wanted, VERSION_1),
            Ok(VERSION_1 | RING_EVENT_IDX | NET_MAC)
        );
    }

    #[test]
    fn missing_required_bits_named() {
        let e = negotiate(NET_MAC, NET_MAC, VERSION_1 | NET_MAC).unwrap_err();
        assert_eq!(e, FeatureError::Missing(VERSION_1));
        assert!(e.to_string().contains("legacy-only"), "{e}");
    }

    #[test]
    fn access_platform_refused_unless_wanted() {
        assert_eq!(
            negotiate(VERSION_1 | ACCESS_PLATFORM, 0, VERSION_1),
            Ok(VERSION_1)
        );
    }
}
