//! cgroup v1 (and the hybrid layout): one `berth/<id>` directory per controller hierarchy.
//!
//! On the hybrid layout (cgroup2 mounted beside the v1 hierarchies, without controllers, e.g.
//! at `/sys/fs/cgroup/unified`) the container also gets a `berth/<id>` directory there, with
//! the device program attached unless privileged: the kernel checks a device access against
//! both the v1 device controller and the v2 programs, so each is a guard on its own. Where the
//! v1 device controller exists, a failure of this second guard (a kernel without cgroup BPF)
//! is logged once and the container runs with the first; without one it is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use super::{
    CgroupError, CgroupStats, DeviceRule, Hierarchy, host_memory, read_keyed, read_u64, write,
};
use crate::limits::Resources;

/// The controllers Berth puts a container in.
const CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "devices", "freezer"];

/// The cpuset hierarchy: joined only by containers with `--cpuset-cpus`/`--cpuset-mems`.
const CPUSET: &str = "cpuset";

/// The mount points of the v1 hierarchies, by controller.
pub(super) struct V1 {
    mounts: BTreeMap<&'static str, PathBuf>,
    /// The cgroup2 mount of the hybrid layout, if any.
    unified: Option<PathBuf>,
}

impl V1 {
    /// Finds the v1 hierarchies in `/proc/self/mountinfo`; `None` without a memory hierarchy.
    pub(super) fn detect() -> Option<V1> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mut mounts = BTreeMap::new();
        let unified = super::cgroup2_in(&info);
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut r = right.split(' ');
            if r.next() != Some("cgroup") {
                continue;
            }
            let super_opts = r.nth(1).unwrap_or_default();
            for c in CONTROLLERS.into_iter().chain([CPUSET]) {
                if super_opts.split(',').any(|o| o == c) {
                    mounts.entry(c).or_insert_with(|| PathBuf::from(point));
                }
            }
        }
        mounts
            .contains_key("memory")
            .then_some(V1 { mounts, unified })
    }

    fn dir(&self, controller: &str, rel: &str) -> Option<PathBuf> {
        self.mounts.get(controller).map(|m| m.join(rel))
    }

    /// The cpuset hierarchy's mount point, if this host has the v1 layout with one.
    pub(super) fn cpuset_mount() -> Option<PathBuf> {
        match super::hierarchy()?.version() {
            "v1" => V1::detect()?.mounts.remove(CPUSET),
            _ => None,
        }
    }

    /// Puts the container in its cpuset directory when it asks for CPUs or memory nodes (and
    /// the hierarchy exists); returns its `cgroup.procs`.
    fn create_cpuset(&self, rel: &str, res: &Resources) -> Result<Option<PathBuf>, CgroupError> {
        if !res.has_cpuset() {
            return Ok(None);
        }
        let Some(mount) = self.mounts.get(CPUSET) else {
            return Err(CgroupError::Unavailable);
        };
        let dir = super::cpuset::prepare_v1(mount, rel, &res.cpuset_cpus, &res.cpuset_mems)?;
        Ok(Some(dir.join("cgroup.procs")))
    }

    /// Creates `rel` under the hybrid layout's cgroup2 mount and attaches the device program
    /// of `devices` (unless `None`); returns its `cgroup.procs`.
    fn create_unified(
        &self,
        unified: &Path,
        rel: &str,
        devices: Option<&[DeviceRule]>,
    ) -> Result<PathBuf, CgroupError> {
        let dir = unified.join(rel);
        std::fs::create_dir_all(&dir).map_err(CgroupError::io("create", &dir))?;
        if let Some(rules) = devices {
            super::attach_device_rules(&dir, rules)?;
        }
        Ok(dir.join("cgroup.procs"))
    }
}

impl Hierarchy for V1 {
    fn create(
        &self,
        rel: &str,
        res: &Resources,
        devices: Option<&[DeviceRule]>,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        let mut procs = Vec::new();
        let cpuset = self.dir(CPUSET, rel);
        for dir in self.dirs(rel) {
            if Some(&dir) == cpuset.as_ref()
                || self.unified.as_ref().is_some_and(|u| dir == u.join(rel))
            {
                continue;
            }
            std::fs::create_dir_all(&dir).map_err(CgroupError::io("create", &dir))?;
            procs.push(dir.join("cgroup.procs"));
        }
        procs.extend(self.create_cpuset(rel, res)?);
        if let (Some(mem), true) = (self.dir("memory", rel), res.memory > 0) {
            write(&mem, "memory.limit_in_bytes", &res.memory.to_string())?;
            // Only where swap accounting exists (memsw files).
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                let swap = res.memory_swap_limit().unwrap_or(-1);
                write(&mem, "memory.memsw.limit_in_bytes", &swap.to_string())?;
            }
        }
        if let Some(cpu) = self.dir("cpu", rel) {
            if let Some((quota, period)) = res.cfs() {
                write(&cpu, "cpu.cfs_period_us", &period.to_string())?;
                write(&cpu, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            if res.cpu_shares > 0 {
                write(&cpu, "cpu.shares", &res.cpu_shares.max(2).to_string())?;
            }
        }
        if let (Some(pids), Some(max)) = (self.dir("pids", rel), res.pids()) {
            write(&pids, "pids.max", &max.to_string())?;
        }
        if let (Some(dir), Some(rules)) = (self.dir("devices", rel), devices) {
            write(&dir, "devices.deny", "a")?;
            for rule in rules {
                write(&dir, "devices.allow", &rule.to_string())?;
            }
        }
        if let Some(unified) = &self.unified {
            match self.create_unified(unified, rel, devices) {
                Ok(p) => procs.push(p),
                // ENOENT: the parent went (boot sweep or shutdown); `create` retries.
                Err(e) if self.mounts.contains_key("devices") && !super::is_enoent(&e) => {
                    static ONCE: Once = Once::new();
                    ONCE.call_once(|| {
                        tracing::warn!(
                            error = %e,
                            "no device program on the cgroup2 mount: the v1 device cgroup alone guards devices"
                        );
                    });
                    let _ = std::fs::remove_dir(unified.join(rel));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(procs)
    }

    fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = CONTROLLERS
            .iter()
            .chain(&[CPUSET])
            .filter_map(|c| self.dir(c, rel))
            .chain(self.unified.as_ref().map(|u| u.join(rel)))
            .collect();
        // `cpu,cpuacct` co-mounted: one directory.
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn parents(&self, parent: &str) -> Vec<PathBuf> {
        let mut p: Vec<PathBuf> = self
            .mounts
            .values()
            .chain(self.unified.as_ref())
            .map(|m| m.join(parent))
            .collect();
        p.sort();
        p.dedup();
        p
    }

    fn oom_kills(&self, rel: &str) -> u64 {
        self.dir("memory", rel)
            .map(|d| read_keyed(&d, "memory.oom_control"))
            .and_then(|m| m.get("oom_kill").copied())
            .unwrap_or(0)
    }

    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError> {
        let mem = self.dir("memory", rel).ok_or(CgroupError::Unavailable)?;
        if !mem.exists() {
            return Err(CgroupError::Io {
                step: "read",
                path: mem,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let mut s = CgroupStats {
            memory_usage: read_u64(&mem, "memory.usage_in_bytes").unwrap_or(0),
            memory_max_usage: read_u64(&mem, "memory.max_usage_in_bytes").unwrap_or(0),
            memory_failcnt: read_u64(&mem, "memory.failcnt").unwrap_or(0),
            memory_stat: read_keyed(&mem, "memory.stat"),
            memory_limit: read_u64(&mem, "memory.limit_in_bytes")
                .unwrap_or(u64::MAX)
                .min(host_memory()),
            ..Default::default()
        };
        if let Some(acct) = self.dir("cpuacct", rel) {
            s.cpu_total = read_u64(&acct, "cpuacct.usage").unwrap_or(0);
            s.cpu_percpu = std::fs::read_to_string(acct.join("cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // cpuacct.stat is in USER_HZ ticks.
            let ticks = read_keyed(&acct, "cpuacct.stat");
            // SAFETY: sysconf has no memory effects.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            s.cpu_user = ticks.get("user").copied().unwrap_or(0) * (1_000_000_000 / hz);
            s.cpu_system = ticks.get("system").copied().unwrap_or(0) * (1_000_000_000 / hz);
        }
        if let Some(cpu) = self.dir("cpu", rel) {
            let t = read_keyed(&cpu, "cpu.stat");
            let get = |k: &str| t.get(k).copied().unwrap_or(0);
            s.throttling = (
                get("nr_periods"),
                get("nr_throttled"),
                get("throttled_time"),
            );
        }
        if let Some(pids) = self.dir("pids", rel) {
            s.pids_current = read_u64(&pids, "pids.current").unwrap_or(0);
            s.pids_limit = read_u64(&pids, "pids.max");
        }
        Ok(s)
    }

    fn version(&self) -> &'static str {
        "v1"
    }

    fn freeze(&self, rel: &str, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.dir("freezer", rel).ok_or(CgroupError::Unavailable)?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        super::live::settle(|| {
            // A write of FROZEN may leave the group FREEZING (a task in an uninterruptible
            // sleep): write again until the kernel reports the state asked for.
            write(&dir, "freezer.state", want)?;
            let now = std::fs::read_to_string(dir.join("freezer.state"))
                .map_err(CgroupError::io("read", &dir.join("freezer.state")))?;
            Ok(now.trim() == want)
        })
    }

    fn set_limits(&self, rel: &str, res: &Resources) -> Result<(), CgroupError> {
        if let Some(mem) = self.dir("memory", rel) {
            let memsw = mem.join("memory.memsw.limit_in_bytes").exists();
            // memory+swap may never be below memory: lift it first, set memory, then set it.
            if memsw {
                write(&mem, "memory.memsw.limit_in_bytes", "-1")?;
            }
            let limit = if res.memory > 0 { res.memory } else { -1 };
            write(&mem, "memory.limit_in_bytes", &limit.to_string())?;
            if memsw && res.memory > 0 {
                let swap = res.memory_swap_limit().unwrap_or(-1);
                write(&mem, "memory.memsw.limit_in_bytes", &swap.to_string())?;
            }
        }
        if let Some(cpu) = self.dir("cpu", rel) {
            let (quota, period) = res.cfs().unwrap_or((-1, crate::limits::DEFAULT_CPU_PERIOD));
            write(&cpu, "cpu.cfs_period_us", &period.to_string())?;
            write(&cpu, "cpu.cfs_quota_us", &quota.to_string())?;
            let shares = if res.cpu_shares > 0 {
                res.cpu_shares.max(2)
            } else {
                1024
            };
            write(&cpu, "cpu.shares", &shares.to_string())?;
        }
        if let Some(pids) = self.dir("pids", rel) {
            let max = res.pids().map_or("max".to_owned(), |m| m.to_string());
            write(&pids, "pids.max", &max)?;
        }
        self.update_cpuset(rel, res)
    }
}

impl V1 {
    /// `docker update --cpuset-*` on a running container: its cpuset directory gets the lists
    /// (created first if it had none) and every process of the container (listed in its memory
    /// cgroup) is moved into it, again until a pass finds none left out (a process forked
    /// meanwhile starts in its parent's cpuset), at most ten passes.
    fn update_cpuset(&self, rel: &str, res: &Resources) -> Result<(), CgroupError> {
        let Some(procs) = self.create_cpuset(rel, res)? else {
            return Ok(());
        };
        let Some(mem) = self.dir("memory", rel) else {
            return Ok(());
        };
        for _ in 0..10 {
            let inside = std::fs::read_to_string(&procs).unwrap_or_default();
            let all = std::fs::read_to_string(mem.join("cgroup.procs")).unwrap_or_default();
            let left: Vec<&str> = all
                .lines()
                .filter(|p| !inside.lines().any(|i| i == *p))
                .collect();
            if left.is_empty() {
                break;
            }
            for pid in left {
                // A process that exited meanwhile (ESRCH) is no longer in the way.
                match std::fs::write(&procs, pid) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(CgroupError::io("join", &procs)(e)),
                }
            }
        }
        Ok(())
    }
}
