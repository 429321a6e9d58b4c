//! Operations on a running container's cgroup: freezing and thawing it (`docker pause`,
//! `unpause`), changing its limits in place (`docker update`) and listing its processes
//! (`docker top`). The per-layout file names live in `v1.rs` and `v2.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{CgroupError, hierarchy, rel};
use crate::limits::Resources;

/// How long a freeze or thaw may take before it is reported as failed.
const SETTLE: Duration = Duration::from_secs(10);

/// Calls `done` until it says the cgroup reached the state asked for, for at most [`SETTLE`].
pub(super) fn settle(
    mut done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<(), CgroupError> {
    let deadline = Instant::now() + SETTLE;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Io {
                step: "wait for the freezer",
                path: "cgroup".into(),
                source: std::io::ErrorKind::TimedOut.into(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Freezes (`frozen`) or thaws every process of container `id`. Blocking.
pub fn freeze(root: &Path, id: &str, frozen: bool) -> Result<(), CgroupError> {
    hierarchy()
        .ok_or(CgroupError::Unavailable)?
        .freeze(&rel(root, id), frozen)
}

/// Writes `res` into container `id`'s cgroup (a limit of 0 lifts it). Blocking.
pub fn set_limits(root: &Path, id: &str, res: &Resources) -> Result<(), CgroupError> {
    hierarchy()
        .ok_or(CgroupError::Unavailable)?
        .set_limits(&rel(root, id), res)
}

/// The host pids of every process in container `id`'s cgroup (sorted, deduplicated).
pub fn pids(root: &Path, id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = super::existing_dirs(root, id)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}
