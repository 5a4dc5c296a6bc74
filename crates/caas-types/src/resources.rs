//! Memory and CPU amounts, with the conversions Docker wants.
//!
//! Memory is held in bytes and CPU in millicores (1000 = one core) so that sums and differences
//! in the scheduler's claims are exact integers, never floats.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// An amount of memory in bytes. Parses `134217728`, `128m`, `128M`, `128Mi`, `128MiB`, `1g`, `512k`
/// (binary units, as Docker's `--memory`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Memory(u64);

/// Docker refuses a memory limit below 6 MiB.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// Sanity bound: 1 PiB. Larger requests are input mistakes, not placements to try.
const MAX_MEMORY: u64 = 1 << 50;

impl Memory {
    /// Memory from a count of bytes, checked to be between Docker's 6 MiB minimum and 1 PiB.
    pub fn from_bytes(bytes: u64) -> Result<Self> {
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
            return Err(Error::range("memory", "must be between 6 MiB and 1 PiB"));
        }
        Ok(Memory(bytes))
    }

    /// Memory from mebibytes (the admin API's `memory_mb`).
    pub fn from_mib(mib: u64) -> Result<Self> {
        Self::from_bytes(
            mib.checked_mul(1 << 20)
                .ok_or_else(|| Error::range("memory", "must be between 6 MiB and 1 PiB"))?,
        )
    }

    /// Bytes.
    pub fn bytes(&self) -> u64 {
        self.0
    }

    /// Whole mebibytes, rounded down.
    pub fn mib(&self) -> u64 {
        self.0 >> 20
    }

    /// Docker's `HostConfig.Memory` (and `MemorySwap`, set equal so the limit is real).
    pub fn docker_bytes(&self) -> i64 {
        // MAX_MEMORY < i64::MAX, so this never truncates.
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl FromStr for Memory {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("memory", "expected a size like 256m, 1g or 134217728");
        if s.is_empty() || s.len() > 24 {
            return Err(bad());
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let shift = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "ki" | "kib" => 10,
            "m" | "mb" | "mi" | "mib" => 20,
            "g" | "gb" | "gi" | "gib" => 30,
            "t" | "tb" | "ti" | "tib" => 40,
            _ => return Err(bad()),
        };
        let bytes = n
            .checked_mul(1u64 << shift)
            .ok_or_else(|| Error::range("memory", "must be between 6 MiB and 1 PiB"))?;
        Memory::from_bytes(bytes)
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % (1 << 30) == 0 {
            write!(f, "{}g", self.0 >> 30)
        } else if self.0 % (1 << 20) == 0 {
            write!(f, "{}m", self.0 >> 20)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// An amount of CPU in millicores (1000 = one core). Parses `0.5`, `2`, `500m`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Cpus(u32);

/// One millicore at least; at most 1024 cores.
const MAX_MILLIS: u32 = 1024 * 1000;

impl Cpus {
    /// CPU from millicores, checked to be between 1 and 1,024,000.
    pub fn from_millis(millis: u32) -> Result<Self> {
        if !(1..=MAX_MILLIS).contains(&millis) {
            return Err(Error::range("cpus", "must be between 0.001 and 1024"));
        }
        Ok(Cpus(millis))
    }

    /// CPU from a fractional core count (the admin API's `cpus`), rounded to the millicore.
    pub fn from_cores(cores: f64) -> Result<Self> {
        if !cores.is_finite() || cores <= 0.0 || cores > f64::from(MAX_MILLIS) / 1000.0 {
            return Err(Error::range("cpus", "must be between 0.001 and 1024"));
        }
        // In range, so the cast cannot overflow.
        Self::from_millis((cores * 1000.0).round() as u32)
    }

    /// Millicores.
    pub fn millis(&self) -> u32 {
        self.0
    }

    /// Fractional cores.
    pub fn cores(&self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// Docker's `HostConfig.NanoCpus`: a hard cap.
    pub fn docker_nano_cpus(&self) -> i64 {
        i64::from(self.0) * 1_000_000
    }

    /// Docker's `HostConfig.CpuShares`: the relative weight under contention (1024 per core),
    /// at least Docker's minimum of 2.
    pub fn docker_cpu_shares(&self) -> i64 {
        (i64::from(self.0) * 1024 / 1000).max(2)
    }
}

impl FromStr for Cpus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "cpus",
                "expected a core count like 0.5 or 2, or millicores like 500m",
            )
        };
        if s.is_empty() || s.len() > 16 {
            return Err(bad());
        }
        if let Some(m) = s.strip_suffix('m') {
            return Cpus::from_millis(m.parse().map_err(|_| bad())?);
        }
        if !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad());
        }
        Cpus::from_cores(s.parse().map_err(|_| bad())?)
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cores())
    }
}

/// What one instance claims on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// Memory limit, enforced by Docker (memory + swap equal to it).
    pub memory: Memory,
    /// CPU limit, enforced by Docker as nano-CPUs with a matching shares weight.
    pub cpus: Cpus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!("128m".parse::<Memory>().expect("valid").bytes(), 128 << 20);
        assert_eq!(
            "128MiB".parse::<Memory>().expect("valid").bytes(),
            128 << 20
        );
        assert_eq!("1g".parse::<Memory>().expect("valid").mib(), 1024);
        assert_eq!("134217728".parse::<Memory>().expect("valid").mib(), 128);
        assert_eq!(Memory::from_mib(256).expect("valid").to_string(), "256m");
        for bad in [
            "",
            "m",
            "1x",
            "-1m",
            "1.5g",
            "5m",
            "0",
            "99999999999999999999",
            "2048t",
            "1 m",
            "１m",
        ] {
            assert!(bad.parse::<Memory>().is_err(), "{bad:?} should be rejected");
        }
        assert!(Memory::from_mib(u64::MAX).is_err());
        assert!(
            Memory::from_mib(10 * 1024 * 1024).is_ok(),
            "10 TiB is valid input; placement refuses it"
        );
    }

    #[test]
    fn cpu_units_and_docker_conversions() {
        let half: Cpus = "0.5".parse().expect("valid");
        assert_eq!(half.millis(), 500);
        assert_eq!(half.docker_nano_cpus(), 500_000_000);
        assert_eq!(half.docker_cpu_shares(), 512);
        assert_eq!("250m".parse::<Cpus>().expect("valid").millis(), 250);
        assert_eq!(Cpus::from_millis(1).expect("valid").docker_cpu_shares(), 2);
        for bad in [
            "", "0", "0.0", "-1", "nan", "inf", "1e3", "2000", "0m", "abc", "0.0001",
        ] {
            assert!(bad.parse::<Cpus>().is_err(), "{bad:?} should be rejected");
        }
        assert!(Cpus::from_cores(f64::NAN).is_err());
    }
}
