//! The cgroup v2 device program, end to end: a real `berth daemon` driven by the `docker` CLI,
//! and the kernel asked (`BPF_PROG_QUERY`) what is attached to each container's cgroup2
//! directory: on v2 the container's cgroup, on the hybrid layout its directory under the
//! cgroup2 mount (beside the v1 device cgroup).
//!
//! What the program denies is proven in `crates/engine` (`cgroups::device_tests`), where a
//! child in a cgroup2 directory with and without it opens device nodes; here, that every
//! container gets it (and a privileged one does not), that its processes (pid 1 and `exec`)
//! run under it, and that the directory goes with the container.
//!
//! Needs root (namespaces, cgroups, BPF), the `docker` CLI and busybox-static.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use berth_tests::{Daemon, write_busybox_rootfs_tar};

/// The cgroup2 mount (`/sys/fs/cgroup` on v2, e.g. `/sys/fs/cgroup/unified` on the hybrid
/// layout).
fn cgroup2_mount() -> PathBuf {
    berth_engine::cgroups::cgroup2_mount()
        .expect("no cgroup2 mount: the host has no cgroup v2 to attach a device program to")
}

/// The cgroup2 path of process `pid` (its `0::` line), relative to the mount.
fn unified_path(cgroup_file: &str) -> String {
    cgroup_file
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no 0:: line in {cgroup_file}"))
        .trim_start_matches('/')
        .to_owned()
}

/// The ids of the device programs attached to the cgroup2 directory `dir` itself (the engine's
/// own `BPF_PROG_QUERY`).
fn device_programs(dir: &Path) -> Vec<u32> {
    berth_engine::cgroups::device_programs(dir)
        .unwrap_or_else(|e| panic!("BPF_PROG_QUERY on {}: {e}", dir.display()))
}

/// Starts a container and returns its id and cgroup2 directory (read from its pid 1).
fn run(d: &Daemon, extra: &[&str]) -> (String, PathBuf) {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["bb", "sleep", "300"]);
    let id = d.docker(&args).ok().trim().to_owned();
    let pid = d
        .docker(&["inspect", "--format", "{{.State.Pid}}", &id])
        .ok()
        .trim()
        .to_owned();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let dir = cgroup2_mount().join(unified_path(&text));
    assert_eq!(
        dir.file_name().and_then(|n| n.to_str()),
        Some(id.as_str()),
        "pid 1 of {id} is not in a cgroup2 directory of its own: {}",
        dir.display()
    );
    (id, dir)
}

/// Needs root. A container's cgroup2 directory has exactly one device program attached, and a
/// `--privileged` one's none; `docker exec` runs under it too; `rm` removes the directories.
#[test]
fn every_container_gets_one_device_program_and_privileged_none() {
    let d = Daemon::start();
    let tar = d.dir().join("rootfs.tar");
    write_busybox_rootfs_tar(&tar);
    d.docker(&["import", tar.to_str().unwrap(), "bb:latest"])
        .ok();

    let (plain, plain_dir) = run(&d, &[]);
    let (privileged, privileged_dir) = run(&d, &["--privileged"]);
    assert_eq!(
        device_programs(&plain_dir).len(),
        1,
        "{}",
        plain_dir.display()
    );
    assert_eq!(
        device_programs(&privileged_dir),
        Vec::<u32>::new(),
        "a privileged container gets every device, as with Docker"
    );

    // An exec'd process joins the same directory, so it is under the same program.
    let exec = d.docker(&["exec", &plain, "cat", "/proc/self/cgroup"]);
    let exec_dir = cgroup2_mount().join(unified_path(exec.ok()));
    assert_eq!(exec_dir, plain_dir, "{}", exec.describe());

    for id in [&plain, &privileged] {
        d.docker(&["rm", "-f", id]).ok();
    }
    for dir in [&plain_dir, &privileged_dir] {
        assert!(!dir.exists(), "{} left after rm", dir.display());
    }
}
