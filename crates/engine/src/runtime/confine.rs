//! The confinement part of a [`Plan`](super::plan::Plan), prepared before the fork: Docker's
//! masked and read-only paths, the device set, the capability set, the seccomp programs, the user
//! and groups, `--tmpfs` mounts and, for `--privileged`, the host's device nodes. `harden.rs`
//! applies it in pid 1.
//!
//! Devices: the container's `/dev` is a `nodev` tmpfs, and Docker's default nodes (null, zero,
//! full, random, urandom, tty) are bind mounts of the host's nodes onto empty files in it: a
//! bind mount keeps the flags of its source's mount, so these open, while a node made with
//! `mknod` anywhere in the container (all of whose other mounts are `nodev`) cannot be opened.
//! This holds on cgroup v1 and v2 alike, with or without the device cgroup (`crate::cgroups`,
//! the second guard); ptys come from the container's own devpts (`/dev/ptmx` is a link to
//! `pts/ptmx`).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::RuntimeError;
use super::options::{self, Seccomp};
use super::plan::{InRoot, clean_absolute, cstring};
use super::seccomp::{self, Filters};
use super::users;
use crate::container::SecurityOptions;

/// Masked paths (Docker's defaults), relative to the container's root: a file is covered by a
/// bind of `/dev/null`, a directory by an empty read-only tmpfs. Missing ones are skipped.
pub(super) const MASKED_PATHS: [&CStr; 11] = [
    c"proc/asound",
    c"proc/acpi",
    c"proc/kcore",
    c"proc/keys",
    c"proc/latency_stats",
    c"proc/timer_list",
    c"proc/timer_stats",
    c"proc/sched_debug",
    c"proc/scsi",
    c"sys/firmware",
    c"sys/devices/virtual/powercap",
];

/// Read-only paths (Docker's defaults): bound onto themselves and made read-only.
pub(super) const READONLY_PATHS: [&CStr; 5] = [
    c"proc/bus",
    c"proc/fs",
    c"proc/irq",
    c"proc/sys",
    c"proc/sysrq-trigger",
];

/// Docker's default device nodes: name in the container's `/dev`, host node bound onto it,
/// major, minor.
pub(super) const DEVICES: [(&CStr, &CStr, u32, u32); 6] = [
    (c"null", c"/dev/null", 1, 3),
    (c"zero", c"/dev/zero", 1, 5),
    (c"full", c"/dev/full", 1, 7),
    (c"random", c"/dev/random", 1, 8),
    (c"urandom", c"/dev/urandom", 1, 9),
    (c"tty", c"/dev/tty", 5, 0),
];

/// Names in `/dev` that the runtime itself provides; host devices of those names are skipped.
const RESERVED_DEV_NAMES: [&str; 9] = [
    "fd", "stdin", "stdout", "stderr", "ptmx", "core", "console", "pts", "shm",
];

/// The most host device nodes a privileged container gets.
const MAX_HOST_DEVICES: usize = 8192;

/// A `--tmpfs` mount, ready for the child.
pub(super) struct TmpfsPlan {
    pub(super) target: InRoot,
    pub(super) flags: libc::c_ulong,
    pub(super) data: CString,
}

/// A host device node (or directory) recreated in a privileged container's `/dev`.
pub(super) struct HostDevice {
    /// Relative to `/dev` (`snd/pcmC0D0p`).
    pub(super) path: CString,
    /// A directory to create, else a node with `mode` (type and permissions) and `rdev`.
    pub(super) dir: bool,
    pub(super) mode: libc::mode_t,
    pub(super) rdev: libc::dev_t,
}

/// Confinement for the child.
pub(super) struct ConfinePlan {
    pub(super) privileged: bool,
    /// Bounding, effective and permitted set.
    pub(super) caps: u64,
    pub(super) no_new_privs: bool,
    /// Installed in order; `None` = unconfined.
    pub(super) seccomp: Option<Arc<Filters>>,
    pub(super) mask_paths: bool,
    pub(super) readonly_rootfs: bool,
    pub(super) uid: libc::uid_t,
    pub(super) gid: libc::gid_t,
    pub(super) groups: Vec<libc::gid_t>,
    pub(super) tmpfs: Vec<TmpfsPlan>,
    /// `--privileged` only: the host's device nodes.
    pub(super) host_devices: Vec<HostDevice>,
}

/// What [`Describe`](super::plan::Describe) needs to name a confinement step.
pub(super) struct ConfineNames {
    pub(super) tmpfs: Vec<String>,
    pub(super) host_devices: Vec<String>,
    pub(super) user: String,
}

/// Builds the confinement plan. `layers` are the root's layers, top first (for `--user`).
pub(super) fn plan(
    opts: &SecurityOptions,
    user: &str,
    layers: &[&Path],
    last_cap: u32,
) -> Result<(ConfinePlan, ConfineNames, String), RuntimeError> {
    let mut c = options::interpret(opts, last_cap).map_err(RuntimeError::InvalidSpec)?;
    // Never more than the engine has (a sandboxed host may lack some, e.g. CAP_SYS_MODULE):
    // `--privileged` gets every capability the engine can give.
    c.caps &= bounding_set(last_cap);
    let filters = match &c.seccomp {
        Seccomp::Unconfined => None,
        Seccomp::Default => {
            Some(seccomp::default_filters(c.caps).map_err(RuntimeError::InvalidSpec)?)
        }
        Seccomp::Profile(p) => Some(Arc::new(
            seccomp::compile(p, c.caps).map_err(RuntimeError::InvalidSpec)?,
        )),
    };
    let exec_user =
        users::resolve(user, &opts.group_add, layers).map_err(RuntimeError::InvalidSpec)?;
    if !c.privileged {
        check_host_devices()?;
    }
    let mut tmpfs = Vec::with_capacity(c.tmpfs.len());
    let mut tmpfs_names = Vec::with_capacity(c.tmpfs.len());
    for t in &c.tmpfs {
        let components = clean_absolute(&t.target, "tmpfs target")?;
        tmpfs.push(TmpfsPlan {
            target: InRoot::new(&components)?,
            flags: t.flags,
            data: cstring(&t.data)?,
        });
        tmpfs_names.push(format!("/{}", components.join("/")));
    }
    let host_devices = if c.privileged {
        scan_host_devices()
    } else {
        Vec::new()
    };
    let host_device_names = host_devices
        .iter()
        .map(|d| format!("/dev/{}", d.path.to_string_lossy()))
        .collect();
    let plan = ConfinePlan {
        privileged: c.privileged,
        caps: c.caps,
        no_new_privs: c.no_new_privs,
        seccomp: filters,
        mask_paths: c.mask_paths,
        readonly_rootfs: c.readonly_rootfs,
        uid: exec_user.uid,
        gid: exec_user.gid,
        groups: exec_user.groups,
        tmpfs,
        host_devices,
    };
    let names = ConfineNames {
        tmpfs: tmpfs_names,
        host_devices: host_device_names,
        user: user.to_string(),
    };
    Ok((plan, names, exec_user.home))
}

/// The engine's own bounding set (bit N = capability N), read once.
pub(super) fn bounding_set(last_cap: u32) -> u64 {
    static SET: OnceLock<u64> = OnceLock::new();
    *SET.get_or_init(|| {
        (0..=last_cap.min(63))
            .filter(|cap| {
                // SAFETY: PR_CAPBSET_READ only reads this thread's bounding set.
                let ret = unsafe {
                    libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(*cap), 0, 0, 0)
                };
                ret == 1
            })
            .fold(0u64, |set, cap| set | (1u64 << cap))
    })
}

/// The host nodes bound into every container must be the devices they claim to be (a regular
/// file or another device at `/dev/null` would be bound instead). Checked once.
fn check_host_devices() -> Result<(), RuntimeError> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            for (_, host, major, minor) in DEVICES {
                let path = Path::new(std::ffi::OsStr::from_bytes(host.to_bytes()));
                let meta =
                    std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let rdev = meta.rdev();
                if !meta.file_type().is_char_device()
                    || libc::major(rdev) != major
                    || libc::minor(rdev) != minor
                {
                    return Err(format!(
                        "host device {} is not the character device {major}:{minor}",
                        path.display()
                    ));
                }
            }
            Ok(())
        })
        .clone()
        .map_err(RuntimeError::InvalidSpec)
}

/// The host's device nodes under `/dev`, two levels deep, without the runtime's own entries and
/// the host's pts, shm and mqueue.
fn scan_host_devices() -> Vec<HostDevice> {
    let mut out = Vec::new();
    scan_dir(Path::new("/dev"), "", 0, &mut out);
    out
}

fn scan_dir(dir: &Path, prefix: &str, depth: u32, out: &mut Vec<HostDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if out.len() >= MAX_HOST_DEVICES {
            return;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if depth == 0 && (RESERVED_DEV_NAMES.contains(&name.as_str()) || name == "mqueue") {
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let rel = format!("{prefix}{name}");
        let Ok(path) = CString::new(rel.as_bytes()) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() && depth == 0 {
            out.push(HostDevice {
                path,
                dir: true,
                mode: 0o755,
                rdev: 0,
            });
            scan_dir(&entry.path(), &format!("{rel}/"), depth + 1, out);
        } else if ft.is_char_device() || ft.is_block_device() {
            out.push(HostDevice {
                path,
                dir: false,
                mode: meta.mode(),
                rdev: meta.rdev(),
            });
        }
    }
}
