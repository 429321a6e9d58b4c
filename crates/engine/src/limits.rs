//! A container's resource limits (`HostConfig.Memory`, `MemorySwap`, `NanoCpus`, `CpuQuota`,
//! `CpuPeriod`, `CpuShares`, `PidsLimit`, `CpusetCpus`, `CpusetMems`): one struct carried from the API through the stored
//! config to the cgroup, validated at create with Docker's rules and messages.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// Docker's smallest memory limit (6 MiB): below it a container cannot even start its runtime.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The CFS period used for `--cpus` (Docker's: 100 ms).
pub const DEFAULT_CPU_PERIOD: i64 = 100_000;

/// Resource limits; 0 (and -1 where Docker allows it) means "no limit". Missing fields of old
/// records load as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Bytes of memory (`--memory`); 0 = unlimited.
    pub memory: i64,
    /// Memory plus swap (`--memory-swap`); 0 = twice `memory` (Docker's default), -1 = unlimited.
    pub memory_swap: i64,
    /// CPUs in billionths (`--cpus`); 0 = unlimited.
    pub nano_cpus: i64,
    /// CFS quota in µs per period (`--cpu-quota`); 0 = unlimited.
    pub cpu_quota: i64,
    /// CFS period in µs (`--cpu-period`); 0 = the default (100 ms).
    pub cpu_period: i64,
    /// Relative CPU weight (`--cpu-shares`, 2..262144); 0 = the default (1024).
    pub cpu_shares: i64,
    /// Most tasks (`--pids-limit`); 0 or -1 = unlimited.
    pub pids_limit: i64,
    /// CPUs the container may run on, as given (`--cpuset-cpus 0-2,4`); empty = all.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpuset_cpus: String,
    /// Memory nodes the container may use (`--cpuset-mems`); empty = all.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpuset_mems: String,
}

impl Resources {
    /// Docker's checks, with messages that name the option and the reason.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |field: &str, flag: &str, value: i64, why: String| {
            Err(EngineError::Invalid(format!(
                "invalid HostConfig.{field} ({flag}) {value}: {why}"
            )))
        };
        if self.memory < 0 {
            return bad(
                "Memory",
                "--memory",
                self.memory,
                "must not be negative".into(),
            );
        }
        if self.memory > 0 && self.memory < MIN_MEMORY {
            return bad(
                "Memory",
                "--memory",
                self.memory,
                "Minimum memory limit allowed is 6MB".into(),
            );
        }
        if self.memory_swap > 0 && self.memory == 0 {
            return bad(
                "MemorySwap",
                "--memory-swap",
                self.memory_swap,
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into(),
            );
        }
        if self.memory_swap > 0 && self.memory_swap < self.memory {
            return bad(
                "MemorySwap",
                "--memory-swap",
                self.memory_swap,
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            );
        }
        if self.memory_swap < -1 {
            return bad(
                "MemorySwap",
                "--memory-swap",
                self.memory_swap,
                "must be -1 (unlimited), 0 (twice the memory limit) or a size".into(),
            );
        }
        let cpus = online_cpus() as i64;
        let below_min = self.nano_cpus > 0 && self.nano_cpus < 10_000_000;
        if self.nano_cpus < 0 || self.nano_cpus > cpus * 1_000_000_000 || below_min {
            return bad(
                "NanoCpus",
                "--cpus",
                self.nano_cpus,
                format!(
                    "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
                ),
            );
        }
        if self.nano_cpus > 0 && (self.cpu_quota > 0 || self.cpu_period > 0) {
            return bad(
                "NanoCpus",
                "--cpus",
                self.nano_cpus,
                "Conflicting options: Nano CPUs and CPU Period or CPU Quota cannot both be set"
                    .into(),
            );
        }
        if self.cpu_period != 0 && !(1000..=1_000_000).contains(&self.cpu_period) {
            return bad(
                "CpuPeriod",
                "--cpu-period",
                self.cpu_period,
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1 second (i.e. 1000000)".into(),
            );
        }
        if self.cpu_quota != 0 && self.cpu_quota < 1000 {
            return bad(
                "CpuQuota",
                "--cpu-quota",
                self.cpu_quota,
                "CPU cfs quota can not be less than 1ms (i.e. 1000)".into(),
            );
        }
        if self.cpu_shares < 0 || self.cpu_shares > 262_144 {
            return bad(
                "CpuShares",
                "--cpu-shares",
                self.cpu_shares,
                "must be between 2 and 262144 (0 = the default, 1024)".into(),
            );
        }
        if self.pids_limit < -1 {
            return bad(
                "PidsLimit",
                "--pids-limit",
                self.pids_limit,
                "must be positive, or 0 or -1 for unlimited".into(),
            );
        }
        for (field, flag, list, cpus) in [
            ("CpusetCpus", "--cpuset-cpus", &self.cpuset_cpus, true),
            ("CpusetMems", "--cpuset-mems", &self.cpuset_mems, false),
        ] {
            if !list.is_empty() {
                crate::cgroups::cpuset::check(list, cpus).map_err(|why| {
                    EngineError::Invalid(format!(
                        "invalid HostConfig.{field} ({flag}) {list}: {why}"
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// The memory+swap limit to apply: `None` = unlimited.
    pub fn memory_swap_limit(&self) -> Option<i64> {
        match (self.memory, self.memory_swap) {
            (0, _) | (_, -1) => None,
            (m, 0) => Some(m.saturating_mul(2)),
            (_, s) => Some(s),
        }
    }

    /// The CFS (quota, period) in µs: `None` = no quota.
    pub fn cfs(&self) -> Option<(i64, i64)> {
        if self.nano_cpus > 0 {
            return Some((
                self.nano_cpus * DEFAULT_CPU_PERIOD / 1_000_000_000,
                DEFAULT_CPU_PERIOD,
            ));
        }
        let period = if self.cpu_period > 0 {
            self.cpu_period
        } else {
            DEFAULT_CPU_PERIOD
        };
        (self.cpu_quota > 0).then_some((self.cpu_quota, period))
    }

    /// The pids limit: `None` = unlimited.
    pub fn pids(&self) -> Option<i64> {
        (self.pids_limit > 0).then_some(self.pids_limit)
    }

    /// Whether a CPU or memory-node list is set.
    pub fn has_cpuset(&self) -> bool {
        !self.cpuset_cpus.is_empty() || !self.cpuset_mems.is_empty()
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        *self != Resources::default()
    }
}

/// CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let r = |f: fn(&mut Resources)| {
            let mut r = Resources::default();
            f(&mut r);
            r.validate().map_err(|e| e.to_string())
        };
        let small = r(|r| r.memory = 4 << 20).unwrap_err();
        assert!(
            small.contains("--memory") && small.contains("6MB"),
            "{small}"
        );
        assert!(r(|r| r.memory = 6 << 20).is_ok());
        assert!(
            r(|r| r.pids_limit = -2)
                .unwrap_err()
                .contains("--pids-limit")
        );
        assert!(r(|r| r.nano_cpus = 1_000).unwrap_err().contains("--cpus"));
        assert!(
            r(|r| {
                r.nano_cpus = 500_000_000;
                r.cpu_quota = 50_000;
            })
            .is_err()
        );
        assert!(
            r(|r| {
                r.memory = 64 << 20;
                r.memory_swap = 32 << 20;
            })
            .unwrap_err()
            .contains("--memory-swap")
        );
        assert!(r(|r| r.cpuset_cpus = "0".into()).is_ok());
        let far = r(|r| r.cpuset_cpus = "8000".into()).unwrap_err();
        assert!(
            far.contains("--cpuset-cpus") && far.contains("Requested CPUs are not available"),
            "{far}"
        );
        assert!(
            r(|r| r.cpuset_mems = "0-".into())
                .unwrap_err()
                .contains("--cpuset-mems")
        );
    }

    #[test]
    fn derived_limits() {
        let r = Resources {
            memory: 32 << 20,
            nano_cpus: 1_500_000_000,
            ..Default::default()
        };
        assert_eq!(r.memory_swap_limit(), Some(64 << 20));
        assert_eq!(r.cfs(), Some((150_000, 100_000)));
        assert_eq!(Resources::default().cfs(), None);
        assert!(!Resources::default().any());
    }
}
