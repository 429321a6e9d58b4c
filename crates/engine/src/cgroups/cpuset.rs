//! `--cpuset-cpus` / `--cpuset-mems` (`HostConfig.CpusetCpus`, `CpusetMems`): the CPU and
//! memory-node lists a container may use, checked against what the host offers (Docker's rule
//! and message) and written to the container's cpuset cgroup.
//!
//! - v2: `cpuset.cpus` / `cpuset.mems` of the container's directory, with the `cpuset`
//!   controller enabled on its parents (only when a container asks for it).
//! - v1 (and hybrid): a directory in the cpuset hierarchy, created and joined only by containers
//!   that set a list (most containers never touch it). A new v1 cpuset directory starts with
//!   empty `cpuset.cpus`/`cpuset.mems`, and joining one fails with ENOSPC: each directory on the
//!   way (the engine's parent included) gets its parent's lists first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{CgroupError, write};

/// The highest CPU or node number a list may name (Docker's bound, as `NR_CPUS` tops out at 8192); bounds
/// the work of a range like `0-4000000000`.
const MAX_INDEX: u32 = 8192;

/// Parses a kernel-style list (`0-3,5`) as Docker's `ParseUintList` does: numbers and
/// increasing ranges separated by commas; empty = nothing asked. `None` when malformed.
pub fn parse_list(text: &str) -> Option<BTreeSet<u32>> {
    let mut set = BTreeSet::new();
    if text.is_empty() {
        return Some(set);
    }
    for part in text.split(',') {
        let num = |s: &str| {
            let n: u32 = s.parse().ok()?;
            (n <= MAX_INDEX && s.bytes().all(|b| b.is_ascii_digit())).then_some(n)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return None;
                }
                set.extend(a..=b);
            }
            None => {
                set.insert(num(part)?);
            }
        }
    }
    Some(set)
}

/// The CPUs (`cpus`) or memory nodes (`!cpus`) the host offers containers, as a kernel list:
/// the root cpuset cgroup's, else `/sys/devices/system/{cpu,node}/online`, else `0`.
pub fn available(cpus: bool) -> String {
    let (v1, v2, sys) = if cpus {
        (
            "cpuset.cpus",
            "cpuset.cpus.effective",
            "/sys/devices/system/cpu/online",
        )
    } else {
        (
            "cpuset.mems",
            "cpuset.mems.effective",
            "/sys/devices/system/node/online",
        )
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(mount) = super::v1::V1::cpuset_mount() {
        candidates.push(mount.join(v1));
    }
    candidates.push(Path::new("/sys/fs/cgroup").join(v2));
    candidates.push(PathBuf::from(sys));
    candidates
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_owned())
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "0".to_owned())
}

/// Docker's check of one list: `Err(reason)` when malformed or naming what the host lacks.
pub fn check(text: &str, cpus: bool) -> Result<(), String> {
    let what = if cpus { "cpus" } else { "mems" };
    let asked =
        parse_list(text).ok_or_else(|| format!("Invalid value {text} for cpuset {what}"))?;
    let offered = available(cpus);
    let have = parse_list(&offered).unwrap_or_default();
    if asked.is_subset(&have) {
        return Ok(());
    }
    Err(if cpus {
        format!("Requested CPUs are not available - requested {text}, available: {offered}")
    } else {
        format!("Requested memory nodes are not available - requested {text}, available: {offered}")
    })
}

/// The v1 layout: creates `mount/rel` and every directory above it, each given its parent's
/// lists where its own are empty, then writes the container's (non-empty) lists.
pub(super) fn prepare_v1(
    mount: &Path,
    rel: &str,
    cpus: &str,
    mems: &str,
) -> Result<PathBuf, CgroupError> {
    let mut dir = mount.to_owned();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        let parent = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("create", &dir)(e)),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            if own.trim().is_empty() {
                let path = parent.join(file);
                let inherited =
                    std::fs::read_to_string(&path).map_err(CgroupError::io("read", &path))?;
                write(&dir, file, inherited.trim())?;
            }
        }
    }
    write_lists(&dir, cpus, mems)?;
    Ok(dir)
}

/// Writes the non-empty lists to `dir`'s `cpuset.cpus` / `cpuset.mems` (mems first: a CPU list
/// is accepted either way, but v1 refuses a task move into a set without memory nodes).
pub(super) fn write_lists(dir: &Path, cpus: &str, mems: &str) -> Result<(), CgroupError> {
    if !mems.is_empty() {
        write(dir, "cpuset.mems", mems)?;
    }
    if !cpus.is_empty() {
        write(dir, "cpuset.cpus", cpus)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_like_docker() {
        let set = |t: &str| parse_list(t).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(set("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(set("0,1"), Some(vec![0, 1]));
        assert_eq!(set(""), Some(vec![]));
        for bad in ["a", "1-", "-1", "3-1", "1,,2", "1 ", "+1", "0-99999999"] {
            assert_eq!(set(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_cpu_the_host_lacks_is_refused_with_dockers_words() {
        assert!(check("0", true).is_ok());
        let err = check("8192", true).unwrap_err();
        assert!(
            err.starts_with("Requested CPUs are not available - requested 8192, available: "),
            "{err}"
        );
        let err = check("x", false).unwrap_err();
        assert_eq!(err, "Invalid value x for cpuset mems");
    }
}
