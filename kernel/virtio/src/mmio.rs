//! The kernel command line's description of virtio-mmio devices, as Linux reads it and as
//! virtual machine monitors write it (QEMU's microvm without ACPI, Firecracker):
//! `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`, sizes and bases with an optional
//! `K`/`M`/`G` suffix (`4K@0xd0000000:5`, `512@0xfeb00e00:12`).

/// One device window named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdlineDevice {
    /// Physical base of its registers.
    pub base: u64,
    /// Length of the window in bytes.
    pub size: u64,
    /// Its interrupt line.
    pub irq: u32,
}

/// The word's prefix.
pub const PARAM: &str = "virtio_mmio.device=";

/// Parses the value of a `virtio_mmio.device=` word; `None` for anything malformed (a
/// missing part, trailing characters, a number that overflows).
#[must_use]
pub fn parse_device(v: &str) -> Option<CmdlineDevice> {
    let (size, rest) = v.split_once('@')?;
    let (base, rest) = rest.split_once(':')?;
    // An optional platform device id after the irq (Linux's `:<id>`), a number too.
    let irq = match rest.split_once(':') {
        Some((irq, id)) => {
            id.parse::<i32>().ok()?;
            irq
        }
        None => rest,
    };
    Some(CmdlineDevice {
        size: memparse(size)?,
        base: memparse(base)?,
        irq: irq.parse().ok()?,
    })
}

/// A number (decimal, or hexadecimal after `0x`) with an optional binary suffix.
fn memparse(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(h) if !h.starts_with('+') => u64::from_str_radix(h, 16).ok()?,
        Some(_) => return None,
        None if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        None => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_vmms_write() {
        assert_eq!(
            parse_device("512@0xfeb00e00:12"),
            Some(CmdlineDevice {
                base: 0xFEB0_0E00,
                size: 512,
                irq: 12
            })
        );
        assert_eq!(
            parse_device("4K@0xd0000000:5"),
            Some(CmdlineDevice {
                base: 0xD000_0000,
                size: 4096,
                irq: 5
            })
        );
        assert_eq!(
            parse_device("0x1000@3221225472:7:2"),
            Some(CmdlineDevice {
                base: 0xC000_0000,
                size: 4096,
                irq: 7
            })
        );
        assert_eq!(
            parse_device("1M@1G:9").map(|d| (d.size, d.base)),
            Some((1 << 20, 1 << 30))
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "512",
            "512@0xfeb00e00",
            "512@0xfeb00e00:",
            "@0xfeb00e00:12",
            "512@:12",
            "512@0xfeb00e00:12x",
            "512@0xfeb00e00:12:",
            "512@0xfeb00e00:-1",
            "512@0x:12",
            "512@0x+10:12",
            "+512@0x10:12",
            "512@0xfeb00e00g00:12",
            "99999999999999999999@0x0:1",
            "17179869184G@0x0:1",
            "0x@0x0:1",
            "K@0x0:1",
            "512@0xfeb00e00:12:1:2",
        ] {
            assert_eq!(parse_device(bad), None, "{bad:?}");
        }
    }
}
