//! cgroup v2 (unified): one `berth/<id>` directory with the memory, cpu and pids controllers
//! enabled on its parents, and (unless privileged) the device program attached to it.

use std::path::PathBuf;

use super::{
    CgroupError, CgroupStats, DeviceRule, Hierarchy, host_memory, read_keyed, read_u64, write,
};
use crate::limits::Resources;

pub(super) struct V2 {
    root: PathBuf,
}

impl V2 {
    pub(super) fn new(root: PathBuf) -> V2 {
        V2 { root }
    }

    fn dir(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Enables the controllers Berth uses (those the root offers) for the parent of `rel` and
    /// its children; `cpuset` only for a container that sets a list.
    fn enable_controllers(&self, rel: &str, cpuset: bool) -> Result<(), CgroupError> {
        let dir = self.dir(rel);
        let parent = dir.parent().unwrap_or(&self.root).to_owned();
        std::fs::create_dir_all(&parent).map_err(CgroupError::io("create", &parent))?;
        let offered =
            std::fs::read_to_string(self.root.join("cgroup.controllers")).unwrap_or_default();
        let cpuset = cpuset.then_some("cpuset");
        let wanted: Vec<String> = ["memory", "cpu", "pids"]
            .iter()
            .chain(cpuset.as_ref())
            .filter(|c| offered.split_whitespace().any(|o| o == **c))
            .map(|c| format!("+{c}"))
            .collect();
        for dir in [&self.root, &parent] {
            let enabled =
                std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|w| !enabled.split_whitespace().any(|e| e == &w[1..]))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                write(dir, "cgroup.subtree_control", &missing.join(" "))?;
            }
        }
        Ok(())
    }
}

impl Hierarchy for V2 {
    fn create(
        &self,
        rel: &str,
        res: &Resources,
        devices: Option<&[DeviceRule]>,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        self.enable_controllers(rel, res.has_cpuset())?;
        let dir = self.dir(rel);
        std::fs::create_dir(&dir).map_err(CgroupError::io("create", &dir))?;
        super::cpuset::write_lists(&dir, &res.cpuset_cpus, &res.cpuset_mems)?;
        if let Some(rules) = devices {
            super::attach_device_rules(&dir, rules)?;
        }
        if res.memory > 0 {
            write(&dir, "memory.max", &res.memory.to_string())?;
            if dir.join("memory.swap.max").exists() {
                // v2 limits swap alone: memory+swap minus memory.
                let swap = res
                    .memory_swap_limit()
                    .map_or("max".to_owned(), |t| (t - res.memory).max(0).to_string());
                write(&dir, "memory.swap.max", &swap)?;
            }
        }
        if let Some((quota, period)) = res.cfs() {
            write(&dir, "cpu.max", &format!("{quota} {period}"))?;
        }
        if res.cpu_shares > 0 {
            write(
                &dir,
                "cpu.weight",
                &shares_to_weight(res.cpu_shares).to_string(),
            )?;
        }
        if let Some(max) = res.pids() {
            write(&dir, "pids.max", &max.to_string())?;
        }
        Ok(vec![dir.join("cgroup.procs")])
    }

    fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        vec![self.dir(rel)]
    }

    fn parents(&self, parent: &str) -> Vec<PathBuf> {
        vec![self.root.join(parent)]
    }

    fn oom_kills(&self, rel: &str) -> u64 {
        read_keyed(&self.dir(rel), "memory.events")
            .get("oom_kill")
            .copied()
            .unwrap_or(0)
    }

    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError> {
        let dir = self.dir(rel);
        if !dir.exists() {
            return Err(CgroupError::Io {
                step: "read",
                path: dir,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let cpu = read_keyed(&dir, "cpu.stat");
        let usec = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
        Ok(CgroupStats {
            memory_usage: read_u64(&dir, "memory.current").unwrap_or(0),
            memory_max_usage: read_u64(&dir, "memory.peak").unwrap_or(0),
            memory_limit: read_u64(&dir, "memory.max")
                .unwrap_or(u64::MAX)
                .min(host_memory()),
            memory_failcnt: 0,
            memory_stat: read_keyed(&dir, "memory.stat"),
            cpu_total: usec("usage_usec"),
            cpu_percpu: Vec::new(),
            cpu_user: usec("user_usec"),
            cpu_system: usec("system_usec"),
            throttling: (
                cpu.get("nr_periods").copied().unwrap_or(0),
                cpu.get("nr_throttled").copied().unwrap_or(0),
                usec("throttled_usec"),
            ),
            pids_current: read_u64(&dir, "pids.current").unwrap_or(0),
            pids_limit: read_u64(&dir, "pids.max"),
        })
    }

    fn version(&self) -> &'static str {
        "v2"
    }

    fn freeze(&self, rel: &str, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.dir(rel);
        write(&dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        super::live::settle(|| {
            let events = read_keyed(&dir, "cgroup.events");
            Ok(events.get("frozen").copied() == Some(u64::from(frozen)))
        })
    }

    fn set_limits(&self, rel: &str, res: &Resources) -> Result<(), CgroupError> {
        let dir = self.dir(rel);
        let memory = if res.memory > 0 {
            res.memory.to_string()
        } else {
            "max".to_owned()
        };
        write(&dir, "memory.max", &memory)?;
        if dir.join("memory.swap.max").exists() {
            let swap = match res.memory_swap_limit() {
                Some(t) if res.memory > 0 => (t - res.memory).max(0).to_string(),
                _ => "max".to_owned(),
            };
            write(&dir, "memory.swap.max", &swap)?;
        }
        let cpu = res.cfs().map_or_else(
            || format!("max {}", crate::limits::DEFAULT_CPU_PERIOD),
            |(quota, period)| format!("{quota} {period}"),
        );
        write(&dir, "cpu.max", &cpu)?;
        let weight = if res.cpu_shares > 0 {
            shares_to_weight(res.cpu_shares)
        } else {
            100
        };
        write(&dir, "cpu.weight", &weight.to_string())?;
        let pids = res.pids().map_or("max".to_owned(), |m| m.to_string());
        write(&dir, "pids.max", &pids)?;
        if res.has_cpuset() {
            self.enable_controllers(rel, true)?;
            super::cpuset::write_lists(&dir, &res.cpuset_cpus, &res.cpuset_mems)?;
        }
        Ok(())
    }
}

/// Docker's (runc's) conversion of v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000).
pub(super) fn shares_to_weight(shares: i64) -> i64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}
