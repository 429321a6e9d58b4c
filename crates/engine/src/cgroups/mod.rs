//! Per-container cgroups: `berth/<id>` under each controller Berth uses, created at start with
//! the container's limits ([`Resources`]) and, unless privileged, Docker's device allow-list
//! ([`DEFAULT_RULES`]);
//! read for `GET /containers/{id}/stats` and for OOM kills at exit; removed with the container
//! (and after exit once empty); stale ones swept at boot.
//!
//! Two layouts behind one trait ([`Hierarchy`]), picked once per process:
//! - v2 (unified, `/sys/fs/cgroup/cgroup.controllers` exists): one directory, `memory.max`,
//!   `memory.swap.max`, `cpu.max`, `cpu.weight`, `pids.max`, `cpuset.cpus`/`cpuset.mems`
//!   (`cpuset.rs`); OOM kills from `memory.events`.
//!   Devices: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from the rules
//!   (`devices.rs`), loaded once per process and attached to the directory (`bpf.rs`).
//! - v1 (also the "hybrid" layout, where cgroup2 is mounted without controllers): one directory
//!   per hierarchy (memory, cpu, cpuacct, pids, devices, freezer), found in
//!   `/proc/self/mountinfo`; `memory.limit_in_bytes`/`memory.memsw.limit_in_bytes`,
//!   `cpu.cfs_quota_us`, `cpu.shares`, `pids.max`, `devices.deny`/`devices.allow`, and the
//!   cpuset hierarchy for containers with CPU or memory-node lists (`cpuset.rs`); OOM kills
//!   from `memory.oom_control`. On the hybrid layout, one more directory under the cgroup2
//!   mount with the device program attached: the kernel checks both.
//!
//! Both device guards come on top of the runtime's `nodev` mounts, which alone keep a
//! `mknod`ed node from being opened.
//!
//! The engine only creates directories and writes files; joining is the runtime's job (it writes
//! `0` to each `cgroup.procs` returned by [`create`] in the shim, before pid 1 is started).
//! Every container gets a cgroup, limited or not, as Docker does: stats need the counters.

mod bpf;
pub mod cpuset;
mod devices;
mod live;
mod v1;
mod v2;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::limits::Resources;

pub use bpf::device_programs;
pub use devices::{ACC_MKNOD, ACC_READ, ACC_WRITE, DEFAULT_RULES, DevType, DeviceRule};
pub use live::{freeze, pids, set_limits};

/// The parent directory of the containers' cgroups, under each controller, for the default
/// root (`/var/lib/berth`); an engine on another root uses `berth-<12 hex of its path's
/// sha256>`, so that two engines never sweep each other's cgroups.
pub const PARENT: &str = "berth";

/// The root whose engine uses [`PARENT`].
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// The cgroup parent of the engine on `root`.
pub fn parent_for(root: &Path) -> String {
    if root == Path::new(DEFAULT_ROOT) {
        return PARENT.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{PARENT}-{hex}")
}

/// `<parent>/<id>`: the container's cgroup, relative to a hierarchy's root.
fn rel(root: &Path, id: &str) -> String {
    format!("{}/{id}", parent_for(root))
}

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {}: {step}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup hierarchy found (neither cgroup v2 at /sys/fs/cgroup nor v1 controllers)")]
    Unavailable,
    /// The kernel refused to load or attach the device program (never taken for "no cgroups":
    /// the container does not start without its device rules).
    #[error("cgroup {}: cannot {step} the device program: {source}{detail}", path.display())]
    DeviceProgram {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
        /// The verifier's log, when it said something (`; verifier: ...`).
        detail: String,
    },
}

impl CgroupError {
    fn io(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError + use<> {
        let path = path.to_owned();
        move |source| CgroupError::Io { step, path, source }
    }
}

/// A container's counters, read from its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    /// The limit, or the host's memory when unlimited (as Docker reports it).
    pub memory_limit: u64,
    pub memory_failcnt: u64,
    /// `memory.stat`, as the kernel names the fields.
    pub memory_stat: BTreeMap<String, u64>,
    /// CPU time in nanoseconds: total, per CPU (v1 only), in user and kernel mode.
    pub cpu_total: u64,
    pub cpu_percpu: Vec<u64>,
    pub cpu_user: u64,
    pub cpu_system: u64,
    /// CFS throttling: periods, throttled periods, throttled time (ns).
    pub throttling: (u64, u64, u64),
    pub pids_current: u64,
    /// `None` = unlimited.
    pub pids_limit: Option<u64>,
}

/// One cgroup layout.
trait Hierarchy: Send + Sync {
    /// Creates the container's cgroup(s) (`rel` = `<parent>/<id>`) with its limits; returns
    /// the `cgroup.procs` files.
    fn create(
        &self,
        rel: &str,
        res: &Resources,
        devices: Option<&[DeviceRule]>,
    ) -> Result<Vec<PathBuf>, CgroupError>;
    /// The container's directories (whether or not they exist).
    fn dirs(&self, rel: &str) -> Vec<PathBuf>;
    /// The `parent` directories, one per hierarchy.
    fn parents(&self, parent: &str) -> Vec<PathBuf>;
    /// OOM kills recorded in the container's memory cgroup.
    fn oom_kills(&self, rel: &str) -> u64;
    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError>;
    /// `"v1"` or `"v2"`.
    fn version(&self) -> &'static str;
    /// Freezes (or thaws) every process of the container; returns once the kernel says so.
    fn freeze(&self, rel: &str, frozen: bool) -> Result<(), CgroupError>;
    /// Writes the limits of `res` into the container's existing cgroup (`docker update`).
    fn set_limits(&self, rel: &str, res: &Resources) -> Result<(), CgroupError>;
}

fn hierarchy() -> Option<&'static dyn Hierarchy> {
    static LAYOUT: OnceLock<Option<Box<dyn Hierarchy>>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                return Some(Box::new(v2::V2::new(PathBuf::from("/sys/fs/cgroup"))));
            }
            v1::V1::detect().map(|v| Box::new(v) as Box<dyn Hierarchy>)
        })
        .as_deref()
}

/// The first cgroup2 mount in `/proc/self/mountinfo`: `/sys/fs/cgroup` on v2, the hybrid
/// layout's own mount (e.g. `/sys/fs/cgroup/unified`) beside the v1 hierarchies; `None` without
/// one.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup2_in(&info)
}

/// The first cgroup2 mount point in the text of a `mountinfo` file.
pub(crate) fn cgroup2_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        right.starts_with("cgroup2 ").then(|| PathBuf::from(point))
    })
}

/// `"v1"` or `"v2"` (or `"none"`), for `docker info` and the docs.
pub fn version() -> &'static str {
    hierarchy().map_or("none", |h| h.version())
}

/// Creates the container's cgroup (replacing a leftover one) with its limits and, unless
/// `devices` is `None` (privileged), that device allow-list (Docker's defaults and the
/// container's own rules); returns the `cgroup.procs` files to join.
pub fn create(
    root: &Path,
    id: &str,
    res: &Resources,
    devices: Option<&[DeviceRule]>,
) -> Result<Vec<PathBuf>, CgroupError> {
    let h = hierarchy().ok_or(CgroupError::Unavailable)?;
    let rel = rel(root, id);
    // A leftover of the previous run (not yet empty when it exited) would carry its counters;
    // one an engine left frozen (killed while the container was paused) would freeze the new
    // process and keep the old ones from dying: thawed first.
    thaw_leftover(h, &rel);
    let _ = remove_dirs(&h.dirs(&rel), Duration::ZERO);
    let mut attempt = 0;
    loop {
        match h.create(&rel, res, devices) {
            Ok(procs) => return Ok(procs),
            Err(e) => {
                let _ = remove_dirs(&h.dirs(&rel), Duration::ZERO);
                // The engine's parent vanished between its creation and the container's
                // (the boot sweep or a shutdown found it empty and removed it): create again.
                if attempt < 3 && is_enoent(&e) {
                    attempt += 1;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// Thaws `rel` if it exists (best effort: a missing freezer is not an error here).
fn thaw_leftover(h: &dyn Hierarchy, rel: &str) {
    if h.dirs(rel).iter().any(|d| d.exists())
        && let Err(e) = h.freeze(rel, false)
    {
        tracing::debug!(rel, error = %e, "thawing a leftover cgroup");
    }
}

fn is_enoent(e: &CgroupError) -> bool {
    matches!(e, CgroupError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
}

/// Removes the engine's parent cgroup directories (`berth-<hash>`, one per hierarchy) if they
/// are empty, so temporary engine roots leave nothing behind: called at boot (after the sweep)
/// and at daemon shutdown, never per container (creating and removing six parent cgroups for
/// every `run --rm` cost more than the container's own cgroup work). A parent that still holds a
/// container's cgroup stays (the kernel refuses with EBUSY); the shared `berth` parent of the
/// default root is left alone. Blocking; never fails.
pub fn remove_parent_if_empty(root: &Path) {
    let Some(h) = hierarchy() else {
        return;
    };
    let parent = parent_for(root);
    if parent == PARENT {
        return;
    }
    for dir in h.parents(&parent) {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The cgroup for a container about to start: created with its limits and, unless
/// `privileged`, Docker's device rules followed by `extra_rules` (`--device`,
/// `--device-cgroup-rule`, see `crate::devices`), returning the `cgroup.procs` files the runtime joins. Without any cgroup
/// hierarchy (or write access to it) a container without limits runs unconfined with a warning;
/// one with limits fails to start.
pub fn for_start(
    root: &Path,
    id: &str,
    res: &Resources,
    privileged: bool,
    extra_rules: &[DeviceRule],
) -> Result<Vec<PathBuf>, CgroupError> {
    let rules: Vec<DeviceRule> = DEFAULT_RULES.iter().chain(extra_rules).copied().collect();
    let devices = (!privileged).then_some(rules.as_slice());
    match create(root, id, res, devices) {
        Ok(procs) => Ok(procs),
        Err(e) if !res.any() && unavailable(&e) => {
            tracing::warn!(id, error = %e, "running without a cgroup");
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

fn unavailable(e: &CgroupError) -> bool {
    match e {
        CgroupError::Unavailable => true,
        CgroupError::Io { source, .. } => matches!(
            source.raw_os_error(),
            Some(libc::EACCES | libc::EROFS | libc::EPERM | libc::ENOENT)
        ),
        CgroupError::DeviceProgram { .. } => false,
    }
}

/// Attaches the program of the device rules `rules` to the cgroup2 directory `dir`. The program
/// of Docker's defaults alone ([`DEFAULT_RULES`], most containers) is loaded once per process
/// and its fd kept, so each container costs one attach, not a verifier pass; a container with
/// its own rules gets a program of its own (the attachment keeps it alive).
fn attach_device_rules(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    static PROGRAM: OnceLock<OwnedFd> = OnceLock::new();
    let load = |rules: &[DeviceRule]| {
        bpf::load_device_program(&devices::program(rules)).map_err(|e| CgroupError::DeviceProgram {
            step: "load",
            path: dir.to_owned(),
            source: e.source,
            detail: if e.log.is_empty() {
                String::new()
            } else {
                format!("; verifier: {}", e.log)
            },
        })
    };
    let own;
    let prog = if rules != DEFAULT_RULES.as_slice() {
        own = load(rules)?;
        &own
    } else {
        match PROGRAM.get() {
            Some(fd) => fd,
            // Two first starts may race: one fd is kept, the other closed.
            None => {
                let fd = load(rules)?;
                PROGRAM.get_or_init(|| fd)
            }
        }
    };
    bpf::attach_device_program(dir, prog.as_fd()).map_err(|source| CgroupError::DeviceProgram {
        step: "attach",
        path: dir.to_owned(),
        source,
        detail: String::new(),
    })
}

/// After the container's last process exited: whether it was OOM-killed; then its (now empty)
/// cgroup is removed, so counters start afresh at the next start.
pub async fn after_exit(root: &Path, id: &str) -> bool {
    let (root, id) = (root.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        let oom = oom_killed(&root, &id);
        if let Err(e) = remove(&root, &id) {
            tracing::warn!(id, error = %e, "removing the cgroup of an exited container");
        }
        oom
    })
    .await
    .unwrap_or(false)
}

/// At boot: removes the cgroups of containers that no longer exist.
pub fn sweep_at_boot<V>(root: &Path, containers: &std::collections::HashMap<String, V>) {
    let keep: HashSet<String> = containers.keys().cloned().collect();
    // Nothing runs at boot: a container the last engine left paused is thawed, so its old
    // processes can die (a frozen task acts on no signal).
    if let Some(h) = hierarchy() {
        for id in &keep {
            thaw_leftover(h, &rel(root, id));
        }
    }
    for id in sweep(root, &keep) {
        tracing::info!(id, "removed a stale cgroup");
    }
    remove_parent_if_empty(root);
}

/// Whether the container's memory cgroup recorded an OOM kill (call it at exit, before
/// [`remove`]).
pub fn oom_killed(root: &Path, id: &str) -> bool {
    hierarchy().is_some_and(|h| h.oom_kills(&rel(root, id)) > 0)
}

/// The container's counters.
pub fn stats(root: &Path, id: &str) -> Result<CgroupStats, CgroupError> {
    hierarchy()
        .ok_or(CgroupError::Unavailable)?
        .stats(&rel(root, id))
}

/// The container's cgroup directories that exist now.
pub fn existing_dirs(root: &Path, id: &str) -> Vec<PathBuf> {
    hierarchy()
        .map(|h| {
            h.dirs(&rel(root, id))
                .into_iter()
                .filter(|d| d.exists())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the container's cgroup, waiting up to a second for its last processes (killed with
/// pid 1) to leave it. The engine's parent stays for the next container
/// ([`remove_parent_if_empty`] runs at shutdown). Idempotent; blocking.
pub fn remove(root: &Path, id: &str) -> Result<(), CgroupError> {
    match hierarchy() {
        Some(h) => remove_dirs(&h.dirs(&rel(root, id)), Duration::from_secs(1)),
        None => Ok(()),
    }
}

/// Removes the `<parent>/<id>` cgroups of the engine on `root` for containers not in `keep` (left by an engine that was killed).
/// Returns the ids removed.
pub fn sweep(root: &Path, keep: &HashSet<String>) -> Vec<String> {
    let Some(h) = hierarchy() else {
        return Vec::new();
    };
    let parent = parent_for(root);
    let mut stale: Vec<String> = h
        .parents(&parent)
        .iter()
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !keep.contains(name))
        .collect();
    stale.sort();
    stale.dedup();
    for id in &stale {
        thaw_leftover(h, &format!("{parent}/{id}"));
    }
    stale.retain(
        |id| match remove_dirs(&h.dirs(&format!("{parent}/{id}")), Duration::ZERO) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(id, error = %e, "cannot remove a stale cgroup");
                false
            }
        },
    );
    stale
}

/// `rmdir`s each directory, retrying on EBUSY until `patience` has passed. A directory that
/// still holds processes has them killed first: with a private pid namespace they died with pid 1
/// already, but a `--pid host` container's children outlive its main process (Docker kills
/// them too).
fn remove_dirs(dirs: &[PathBuf], patience: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + patience;
    for dir in dirs {
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    kill_members(dir);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(source) => {
                    return Err(CgroupError::Io {
                        step: "remove",
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// SIGKILLs every process listed in `dir/cgroup.procs` (a cgroup's members cannot leave it on
/// their own, so a listed pid is not a stranger's unless it died and was reused in between).
fn kill_members(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if pid > 0 {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Writes `value` to `dir/file`.
fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(CgroupError::io("write", &path))
}

/// Reads `dir/file` as one number (`max` = `None`).
fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Reads a flat keyed file (`key value` per line).
fn read_keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The host's memory in bytes (`MemTotal`), Docker's "limit" of an unlimited container.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Total CPU time of the host in nanoseconds (`/proc/stat`'s first line), Docker's
/// `system_cpu_usage`.
pub fn system_cpu_usage() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
            Some(
                line.split_whitespace()
                    .take(8)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>(),
            )
        })
        .map_or(0, |t| t * (1_000_000_000 / ticks))
}

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod tests;
