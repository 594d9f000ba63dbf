//! Machine-check architecture, read only: what the error-reporting banks of this CPU hold
//! when a machine check (#MC) arrives, for the report (the kernel never corrects or clears
//! one: a machine check stops the machine). The decoding is pure ([`Bank::flags`], the
//! [`Report`]'s `Display`) and tested on the host.

use core::fmt;

/// `IA32_MCG_CAP`: bits 0..8 the number of banks.
const IA32_MCG_CAP: u32 = 0x179;
/// `IA32_MCG_STATUS`: RIPV (bit 0), EIPV (1), MCIP (2).
const IA32_MCG_STATUS: u32 = 0x17A;
/// `IA32_MC0_STATUS`; bank `i`'s STATUS, ADDR and MISC are at `+ 4 * i`, `+1`, `+2`.
const IA32_MC0_STATUS: u32 = 0x401;
/// Banks with a valid error that a report keeps (the others are counted).
pub const KEPT: usize = 8;

/// STATUS bits.
const VAL: u64 = 1 << 63;
const OVER: u64 = 1 << 62;
const UC: u64 = 1 << 61;
const EN: u64 = 1 << 60;
const MISCV: u64 = 1 << 59;
const ADDRV: u64 = 1 << 58;
const PCC: u64 = 1 << 57;

/// One bank with a valid error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bank {
    /// Its number.
    pub index: u8,
    /// `IA32_MCi_STATUS`.
    pub status: u64,
    /// `IA32_MCi_ADDR`, when STATUS says it is valid (ADDRV).
    pub addr: Option<u64>,
    /// `IA32_MCi_MISC`, when STATUS says it is valid (MISCV).
    pub misc: Option<u64>,
}

impl Bank {
    /// The names of the STATUS flags that are set, in bit order from the top.
    pub fn flags(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            (VAL, "VAL"),
            (OVER, "OVER"),
            (UC, "UC"),
            (EN, "EN"),
            (PCC, "PCC"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.status & bit != 0)
        .map(|(_, name)| name)
    }
}

/// What the banks of one CPU said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `IA32_MCG_STATUS`.
    pub mcg_status: u64,
    /// The banks with a valid error (at most [`KEPT`]).
    pub banks: arrayvec::ArrayVec<Bank, KEPT>,
    /// Banks with a valid error beyond [`KEPT`].
    pub more: u32,
}

/// Banks reachable through the legacy MSRs (`0x400 + 4 * i`, which end at 0x47F: 32
/// banks) of the `count` IA32_MCG_CAP reports. AMD CPUs report up to 64; the banks above
/// 32 exist only as SMCA MSRs, and reading their would-be legacy address (0x480 on:
/// VMX capability MSRs, or nothing) raises #GP inside the #MC handler (found by review,
/// 2026-12-06).
pub fn legacy_banks(mcg_cap: u64) -> u8 {
    (mcg_cap as u8).min(32)
}

impl Report {
    /// A report from `mcg_status` and the banks' (STATUS, ADDR, MISC) as `bank(i)` reads
    /// them, for `count` banks.
    pub fn from_banks(mcg_status: u64, count: u8, bank: impl Fn(u8) -> (u64, u64, u64)) -> Report {
        let mut r = Report {
            mcg_status,
            banks: arrayvec::ArrayVec::new(),
            more: 0,
        };
        for i in 0..count {
            let (status, addr, misc) = bank(i);
            if status & VAL == 0 {
                continue;
            }
            let b = Bank {
                index: i,
                status,
                addr: (status & ADDRV != 0).then_some(addr),
                misc: (status & MISCV != 0).then_some(misc),
            };
            if r.banks.try_push(b).is_err() {
                r.more += 1;
            }
        }
        r
    }

    /// This CPU's banks, `None` when it has no machine-check architecture (CPUID.1:EDX bit
    /// 14). Reads MSRs only: safe in the #MC handler.
    pub fn read() -> Option<Report> {
        let mca = raw_cpuid::CpuId::new()
            .get_feature_info()
            .is_some_and(|f| f.has_mca());
        if !mca {
            return None;
        }
        // SAFETY: with MCA, IA32_MCG_CAP, IA32_MCG_STATUS and the STATUS/ADDR/MISC of each
        // bank MCG_CAP counts exist; reading them has no side effect. ADDR and MISC are read
        // only when STATUS says they are implemented and valid (they may not exist otherwise).
        unsafe {
            let count = legacy_banks(crate::cpu::rdmsr(IA32_MCG_CAP));
            let mcg_status = crate::cpu::rdmsr(IA32_MCG_STATUS);
            Some(Report::from_banks(mcg_status, count, |i| {
                let base = IA32_MC0_STATUS + 4 * u32::from(i);
                let status = crate::cpu::rdmsr(base);
                let addr = if status & (VAL | ADDRV) == VAL | ADDRV {
                    crate::cpu::rdmsr(base + 1)
                } else {
                    0
                };
                let misc = if status & (VAL | MISCV) == VAL | MISCV {
                    crate::cpu::rdmsr(base + 2)
                } else {
                    0
                };
                (status, addr, misc)
            }))
        }
    }
}

impl fmt::Display for Report {
    /// `MCG_STATUS 0x5 (RIPV MCIP); bank 1: status 0xb200000000000000 (VAL UC EN) addr 0x1000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MCG_STATUS {:#x} (", self.mcg_status)?;
        let mut sep = "";
        for (bit, name) in [(1, "RIPV"), (2, "EIPV"), (4, "MCIP")] {
            if self.mcg_status & bit != 0 {
                write!(f, "{sep}{name}")?;
                sep = " ";
            }
        }
        f.write_str(")")?;
        if self.banks.is_empty() {
            return f.write_str("; no bank holds a valid error");
        }
        for b in &self.banks {
            write!(f, "; bank {}: status {:#x} (", b.index, b.status)?;
            let mut sep = "";
            for name in b.flags() {
                write!(f, "{sep}{name}")?;
                sep = " ";
            }
            f.write_str(")")?;
            if let Some(a) = b.addr {
                write!(f, " addr {a:#x}")?;
            }
            if let Some(m) = b.misc {
                write!(f, " misc {m:#x}")?;
            }
        }
        if self.more > 0 {
            write!(f, "; {} more bank(s)", self.more)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banks_beyond_the_legacy_msrs_are_not_read() {
        assert_eq!(
            legacy_banks(0x0000_0000_0100_0a16),
            22,
            "count in bits 0..8 only"
        );
        assert_eq!(legacy_banks(32), 32);
        assert_eq!(
            legacy_banks(64),
            32,
            "AMD's 64 banks: the last legacy MSR is 0x47F"
        );
        assert_eq!(legacy_banks(0xff), 32);
        assert_eq!(
            IA32_MC0_STATUS + 4 * (u32::from(legacy_banks(0xff)) - 1) + 2,
            0x47F
        );
    }

    #[test]
    fn only_valid_banks_with_their_valid_fields() {
        let r = Report::from_banks(0x5, 4, |i| match i {
            1 => (VAL | UC | EN | PCC | ADDRV, 0x1000, 0x77),
            2 => (0x1234, 9, 9), // not valid
            3 => (VAL | MISCV, 9, 0x42),
            _ => (0, 0, 0),
        });
        assert_eq!(
            r.to_string(),
            "MCG_STATUS 0x5 (RIPV MCIP); bank 1: status 0xb600000000000000 (VAL UC EN PCC) \
             addr 0x1000; bank 3: status 0x8800000000000000 (VAL) misc 0x42"
        );
    }

    #[test]
    fn more_banks_than_kept_are_counted() {
        let r = Report::from_banks(0, 20, |_| (VAL, 0, 0));
        assert_eq!(r.banks.len(), KEPT);
        assert_eq!(r.more, 20 - KEPT as u32);
        assert!(r.to_string().ends_with("; 12 more bank(s)"));
        assert_eq!(
            Report::from_banks(0, 3, |_| (0, 0, 0)).to_string(),
            "MCG_STATUS 0x0 (); no bank holds a valid error"
        );
    }
}
