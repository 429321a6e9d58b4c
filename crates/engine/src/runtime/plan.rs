//! Turns a [`RunSpec`] into a [`Plan`]: every path, string and pointer array that the forked
//! shim and pid 1 need, allocated here, before `fork`, so that the code between fork and exec
//! (in `child.rs`) never allocates. Also prepares the bundle (overlay upper/work dirs and the
//! mount point of the merged root) and keeps a [`Describe`] to turn a failure record from the
//! child back into a message that names the step and the path.

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;

use super::child::{Record, Step};
use super::confine::{self, ConfineNames, ConfinePlan};
use super::{NetMode, Rootfs, RunSpec, RuntimeError};

/// `PATH` used for the command lookup (and put in the environment) when the spec has none.
pub(super) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Directory names under the bundle.
pub(crate) const UPPER_DIR: &str = "rootfs-upper";
pub(crate) const WORK_DIR: &str = "rootfs-work";
/// The merged root's own mount point, which builds before this one created in every bundle.
/// The overlay is now mounted on its work directory instead (see [`build`]); `cleanup` still
/// removes this one from bundles made by an older build.
pub(super) const OLD_MERGED_DIR: &str = "rootfs";

/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
const HOST_NAME_MAX: usize = 64;

/// A NULL-terminated array of C strings (`argv`, `envp`) that owns its strings.
pub(super) struct CStrArray {
    _owned: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

// SAFETY: the pointers point into the heap buffers of `_owned`, which live as long as the
// array, are never mutated and never move when the array moves.
unsafe impl Send for CStrArray {}
// SAFETY: as above; the array is read-only after construction.
unsafe impl Sync for CStrArray {}

impl CStrArray {
    pub(super) fn new(owned: Vec<CString>) -> Self {
        let ptrs = owned
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Self {
            _owned: owned,
            ptrs,
        }
    }

    /// The NULL-terminated pointer array, for `execve`.
    pub(super) fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// A path inside the container's root, relative to it (`a/b/c`), with what a `mkdir -p` that
/// never leaves the root needs: for each component, the relative path of its parent (empty for
/// the root itself) and its name.
pub(super) struct InRoot {
    pub(super) full: CString,
    pub(super) steps: Vec<(CString, CString)>,
}

impl InRoot {
    pub(super) fn new(components: &[String]) -> Result<Self, RuntimeError> {
        let mut steps = Vec::with_capacity(components.len());
        for (i, name) in components.iter().enumerate() {
            steps.push((cstring(&components[..i].join("/"))?, cstring(name)?));
        }
        Ok(Self {
            full: cstring(&components.join("/"))?,
            steps,
        })
    }
}

/// One bind mount, ready for the child.
pub(super) struct BindPlan {
    pub(super) source: CString,
    pub(super) target: InRoot,
    /// The source is not a directory: the target is created as an empty file.
    pub(super) file: bool,
    pub(super) readonly: bool,
}

/// Everything the shim and pid 1 need, prepared before fork.
pub(super) struct Plan {
    /// `unshare` flags of the shim.
    pub(super) ns_flags: libc::c_int,
    /// Bring `lo` up (a new, empty network namespace).
    pub(super) loopback_up: bool,
    /// `None` in the host's UTS namespace.
    pub(super) hostname: Option<CString>,
    pub(super) tty: bool,
    /// With a tty: the host path of the pty slave, bound on the container's `/dev/console`.
    pub(super) console: Option<CString>,
    /// Absolute path of the merged root's mount point (`<bundle>/rootfs`).
    pub(super) rootfs: CString,
    pub(super) overlay_opts: CString,
    pub(super) proc_dir: InRoot,
    pub(super) dev_dir: InRoot,
    pub(super) sys_dir: InRoot,
    pub(super) binds: Vec<BindPlan>,
    /// Absolute paths of the working directory and each of its ancestors, shortest first.
    pub(super) cwd_steps: Vec<CString>,
    pub(super) cwd: CString,
    pub(super) argv: CStrArray,
    pub(super) envp: CStrArray,
    /// Candidate paths for `execve`, in order: `argv[0]` itself when it contains a `/`, else
    /// `argv[0]` joined to each `PATH` entry.
    pub(super) exec_paths: Vec<CString>,
    pub(super) exec_search: bool,
    /// Highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub(super) last_cap: u32,
    pub(super) confine: ConfinePlan,
    /// `--init`: pid 1 stays as a minimal init and forks the command (`child/init.rs`).
    pub(super) init: bool,
    /// With `--init`: the init's command line as `ps` shows it, NUL-separated (Docker's
    /// `/sbin/docker-init -- CMD...`), instead of the engine's.
    pub(super) init_cmdline: Vec<u8>,
}

/// What the parent keeps to describe a failure record from the child.
pub(super) struct Describe {
    rootfs: PathBuf,
    netns: Option<PathBuf>,
    hostname: String,
    binds: Vec<(PathBuf, String)>,
    cwd: String,
    argv0: String,
    cgroups: Vec<PathBuf>,
    confine: ConfineNames,
}

/// Targets inside the root that the runtime itself creates (index of `Step::Target` records;
/// bind targets follow at `FIRST_BIND_TARGET + i`).
pub(super) const TARGET_PROC: u32 = 0;
pub(super) const TARGET_DEV: u32 = 1;
pub(super) const TARGET_SYS: u32 = 2;
pub(super) const FIRST_BIND_TARGET: u32 = 3;

impl Describe {
    /// Turns a failure record written by the shim or pid 1 into an error.
    pub(super) fn error(&self, record: Record) -> RuntimeError {
        let errno = Errno::from_raw(record.errno);
        let index = record.index as usize;
        let rootfs = self.rootfs.display();
        let bind = |i: usize| {
            self.binds
                .get(i)
                .map(|(source, target)| (source.display().to_string(), target.clone()))
                .unwrap_or_default()
        };
        let step = match Step::from_u32(record.step) {
            Some(Step::Exec) => {
                return RuntimeError::Exec {
                    cmd: self.argv0.clone(),
                    errno,
                };
            }
            Some(Step::ExecSearch) if errno == Errno::ENOENT => {
                return RuntimeError::ExecNotFound {
                    cmd: self.argv0.clone(),
                };
            }
            Some(Step::ExecSearch) => {
                return RuntimeError::Exec {
                    cmd: self.argv0.clone(),
                    errno,
                };
            }
            Some(Step::Setsid) => "create session".to_string(),
            Some(Step::JoinCgroup) => format!(
                "join cgroup {}",
                self.cgroups
                    .get(index)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            Some(Step::JoinNetns) => format!(
                "join network namespace {}",
                self.netns.as_deref().unwrap_or(Path::new("?")).display()
            ),
            Some(Step::Stdio) => "give the container shim its stdio".to_string(),
            Some(Step::Unshare) => "create namespaces".to_string(),
            Some(Step::MakePrivate) => "make / rprivate".to_string(),
            Some(Step::Hostname) => format!("set hostname {:?}", self.hostname),
            Some(Step::Loopback) => "bring up lo".to_string(),
            Some(Step::Pipe) => "create pipe".to_string(),
            Some(Step::Fork) if record.index == 3 => "fork the command under --init".to_string(),
            Some(Step::Fork) => "fork pid 1".to_string(),
            Some(Step::ParentDeath) => "set parent-death signal".to_string(),
            Some(Step::Ctty) => "set controlling terminal".to_string(),
            Some(Step::MountOverlay) => format!("mount overlay on {rootfs}"),
            Some(Step::OpenRootfs) => format!("open {rootfs}"),
            Some(Step::Target) => {
                let target = match record.index {
                    TARGET_PROC => "/proc".to_string(),
                    TARGET_DEV => "/dev".to_string(),
                    TARGET_SYS => "/sys".to_string(),
                    i if (i - FIRST_BIND_TARGET) as usize >= self.binds.len() => self
                        .confine
                        .tmpfs
                        .get((i - FIRST_BIND_TARGET) as usize - self.binds.len())
                        .cloned()
                        .unwrap_or_default(),
                    i => bind(i.saturating_sub(FIRST_BIND_TARGET) as usize).1,
                };
                format!("create mount point {target} in {rootfs}")
            }
            Some(Step::MountProc) => "mount proc on /proc".to_string(),
            Some(Step::MountDev) => "mount tmpfs on /dev".to_string(),
            Some(Step::DevNode) => match confine::DEVICES.get(index) {
                Some(d) => format!("bind the host's {} in /dev", d.1.to_string_lossy()),
                None => format!(
                    "bind the device {}",
                    self.confine
                        .devices
                        .get(index - confine::DEVICES.len())
                        .cloned()
                        .unwrap_or_default()
                ),
            },
            Some(Step::HostDevice) => format!(
                "create {}",
                self.confine
                    .host_devices
                    .get(index)
                    .cloned()
                    .unwrap_or_default()
            ),
            Some(Step::MaskPath) => format!(
                "mask /{}",
                confine::MASKED_PATHS
                    .get(index)
                    .map(|p| p.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(Step::ReadonlyPath) => format!(
                "make /{} read-only",
                confine::READONLY_PATHS
                    .get(index)
                    .map(|p| p.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(Step::Tmpfs) => format!(
                "mount tmpfs on {}",
                self.confine.tmpfs.get(index).cloned().unwrap_or_default()
            ),
            Some(Step::ReadonlyRoot) => "make the root filesystem read-only".to_string(),
            Some(Step::SetUser) => format!("set user {:?}", self.confine.user),
            Some(Step::Seccomp) => format!("install seccomp program {index}"),
            Some(Step::DevLink) => format!(
                "create /dev/{}",
                super::child::DEV_LINKS
                    .get(index)
                    .map(|d| d.0.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(Step::MountDevpts) => "mount devpts on /dev/pts".to_string(),
            Some(Step::MountShm) => "mount tmpfs on /dev/shm".to_string(),
            Some(Step::Console) => "bind mount the pty on /dev/console".to_string(),
            Some(Step::MountSys) => "mount sysfs on /sys".to_string(),
            Some(Step::Bind) => {
                let (source, target) = bind(index);
                format!("bind mount {source} on {target}")
            }
            Some(Step::BindReadonly) => format!("remount {} read-only", bind(index).1),
            Some(Step::PivotRoot) => format!("pivot_root to {rootfs}"),
            Some(Step::DetachOldRoot) => "detach the old root".to_string(),
            Some(Step::Cwd) => format!("chdir to {}", self.cwd),
            Some(Step::Capabilities) => "drop capabilities".to_string(),
            Some(Step::NoNewPrivs) => "set no_new_privs".to_string(),
            None => format!("container setup step {}", record.step),
        };
        RuntimeError::Setup { step, errno }
    }
}

/// Makes the overlay's upper and work directories in `bundle` (canonical), the work directory
/// empty; returns both. Idempotent and cheap when already done (an empty work directory is
/// left as it is), so the engine may call it ahead of `spawn` (see
/// `ContainerRuntime::prepare_bundle`) while the volume drivers mount, and `build` again.
pub(super) fn prepare_dirs(bundle: &Path) -> Result<(PathBuf, PathBuf), RuntimeError> {
    let upper = bundle.join(UPPER_DIR);
    let work = bundle.join(WORK_DIR);
    // The work dir is scratch space between mounts. Emptying it also drops the
    // `work/incompat/volatile` marker of the previous (volatile) mount, which would make this
    // mount fail; the previous container has exited, so nothing uses it any more.
    let empty = match std::fs::read_dir(&work) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => false,
    };
    if !empty {
        match std::fs::remove_dir_all(&work) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RuntimeError::Prepare {
                    step: "empty overlay work dir",
                    path: work,
                    source,
                });
            }
        }
    }
    for (step, dir) in [
        ("create overlay upper dir", &upper),
        ("create overlay work dir", &work),
    ] {
        std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Prepare {
            step,
            path: dir.clone(),
            source,
        })?;
    }
    Ok((upper, work))
}

/// Builds the plan and prepares the bundle's directories.
pub(super) fn build(spec: &RunSpec) -> Result<(Plan, Describe), RuntimeError> {
    let argv0 = spec
        .argv
        .first()
        .ok_or_else(|| RuntimeError::InvalidSpec("empty command".into()))?
        .clone();
    if argv0.is_empty() {
        return Err(RuntimeError::InvalidSpec("empty command".into()));
    }

    // The bundle must exist; its canonical form keeps the overlay options and the pivot
    // target absolute even when the caller passed a relative path.
    let bundle = std::fs::canonicalize(&spec.bundle).map_err(|source| RuntimeError::Prepare {
        step: "open bundle",
        path: spec.bundle.clone(),
        source,
    })?;
    let (upper, work) = prepare_dirs(&bundle)?;
    // The overlay is mounted on its own work directory. The mount exists only in the container's
    // mount namespace, where the work directory is not otherwise used by path (the overlay
    // reaches it through its private reference taken at mount time), so no directory of its
    // own is needed: a mount point per container was one more ext4 directory created and
    // deleted per `run --rm` (inode and block allocation, the block's discard at removal).
    let merged = work.clone();
    let lower = match &spec.rootfs {
        Rootfs::Host => PathBuf::from("/"),
        Rootfs::Dir(dir) => {
            let lower = std::fs::canonicalize(dir).map_err(|source| RuntimeError::Prepare {
                step: "open image rootfs",
                path: dir.clone(),
                source,
            })?;
            if !lower.is_dir() {
                return Err(RuntimeError::InvalidSpec(format!(
                    "image rootfs {} is not a directory",
                    lower.display()
                )));
            }
            lower
        }
    };
    // `volatile` (Linux 5.10+): no sync of the upper filesystem. Without it, the unmount at the
    // end of the container's mount namespace syncs the whole filesystem holding the bundle (the
    // host's root, usually): measured 20 ms to 0.7 s per container exit on a busy machine, against
    // ~1 ms with it. The price: an fsync inside the container's root filesystem is a no-op, so
    // its writable layer may lose recent writes if the host crashes (data in bind mounts and
    // volumes is not affected). Docker pays the sync in its unmount after exit instead.
    let overlay_opts = format!(
        "lowerdir={},upperdir={},workdir={},volatile",
        overlay_path(&lower)?,
        overlay_path(&upper)?,
        overlay_path(&work)?
    );
    // The mount data is one page at most.
    if overlay_opts.len() >= 4000 {
        return Err(RuntimeError::InvalidSpec(format!(
            "overlay options too long ({} bytes)",
            overlay_opts.len()
        )));
    }

    if spec.hostname.len() > HOST_NAME_MAX {
        return Err(RuntimeError::InvalidSpec(format!(
            "hostname {:?} is longer than {HOST_NAME_MAX} bytes",
            spec.hostname
        )));
    }

    let mut binds = Vec::with_capacity(spec.mounts.len());
    let mut bind_names = Vec::with_capacity(spec.mounts.len());
    for mount in &spec.mounts {
        if !mount.source.is_absolute() {
            return Err(RuntimeError::InvalidSpec(format!(
                "bind mount source {} is not an absolute path",
                mount.source.display()
            )));
        }
        let meta = std::fs::metadata(&mount.source).map_err(|source| RuntimeError::Prepare {
            step: "stat bind mount source",
            path: mount.source.clone(),
            source,
        })?;
        let components = clean_absolute(&mount.target, "bind mount target")?;
        if components.is_empty() {
            return Err(RuntimeError::InvalidSpec(format!(
                "bind mount target {:?} is the container's root",
                mount.target
            )));
        }
        binds.push(BindPlan {
            source: path_cstring(&mount.source)?,
            target: InRoot::new(&components)?,
            file: !meta.is_dir(),
            readonly: mount.readonly,
        });
        bind_names.push((mount.source.clone(), format!("/{}", components.join("/"))));
    }

    let cwd = if spec.cwd.is_empty() {
        "/"
    } else {
        spec.cwd.as_str()
    };
    let cwd_components = clean_absolute(cwd, "working directory")?;
    let cwd_steps = (1..=cwd_components.len())
        .map(|n| cstring(&format!("/{}", cwd_components[..n].join("/"))))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd_path = format!("/{}", cwd_components.join("/"));

    let layers = [upper.as_path(), lower.as_path()];
    let (mut confine, mut confine_names, home) =
        confine::plan(&spec.security, &spec.user, &layers, last_cap())?;
    (confine.devices, confine_names.devices) = confine::device_binds(&spec.security)?;
    let env = environment(spec, &home);
    let path_var = env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let exec_search = !argv0.contains('/');
    let exec_paths = if exec_search {
        path_var
            .split(':')
            .map(|dir| {
                let dir = if dir.is_empty() { "." } else { dir };
                cstring(&format!("{}/{argv0}", dir.trim_end_matches('/')))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![cstring(&argv0)?]
    };

    let mut ns_flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC;
    // `PidMode: host`: the host's pid namespace (the `/proc` mounted in the container then shows
    // every host process); what outlives pid 1 is killed through the cgroup (`cgroups::remove`).
    if spec.security.pid_mode != "host" {
        ns_flags |= libc::CLONE_NEWPID;
    }
    // `UTSMode: host`: the host's hostname, never set from here.
    let own_uts = spec.security.uts_mode != "host";
    if own_uts {
        ns_flags |= libc::CLONE_NEWUTS;
    }
    let mut netns = None;
    match &spec.net {
        NetMode::Host => {}
        NetMode::Isolated => ns_flags |= libc::CLONE_NEWNET,
        NetMode::Join(path) => netns = Some(path.clone()),
    }
    // After the shim joined the container's cgroups: they become the namespace's root.
    if spec.security.cgroupns_mode == "private" {
        ns_flags |= libc::CLONE_NEWCGROUP;
    }

    let plan = Plan {
        ns_flags,
        loopback_up: matches!(spec.net, NetMode::Isolated),
        hostname: own_uts.then(|| cstring(&spec.hostname)).transpose()?,
        tty: spec.tty,
        console: None,
        rootfs: path_cstring(&merged)?,
        overlay_opts: cstring(&overlay_opts)?,
        proc_dir: InRoot::new(&["proc".to_string()])?,
        dev_dir: InRoot::new(&["dev".to_string()])?,
        sys_dir: InRoot::new(&["sys".to_string()])?,
        binds,
        cwd_steps,
        cwd: cstring(&cwd_path)?,
        argv: CStrArray::new(
            spec.argv
                .iter()
                .map(|a| cstring(a))
                .collect::<Result<_, _>>()?,
        ),
        envp: CStrArray::new(env.iter().map(|kv| cstring(kv)).collect::<Result<_, _>>()?),
        exec_paths,
        exec_search,
        last_cap: last_cap(),
        confine,
        init: spec.security.init,
        init_cmdline: if spec.security.init {
            init_cmdline(&spec.argv)
        } else {
            Vec::new()
        },
    };
    let describe = Describe {
        rootfs: merged,
        netns,
        hostname: spec.hostname.clone(),
        binds: bind_names,
        cwd: cwd_path,
        argv0,
        cgroups: spec.cgroup_procs.clone(),
        confine: confine_names,
    };
    Ok((plan, describe))
}

/// `/sbin/docker-init\0--\0ARG\0...`: what `ps` shows for the `--init` pid 1, as in Docker.
fn init_cmdline(argv: &[String]) -> Vec<u8> {
    let mut line = b"/sbin/docker-init\0--\0".to_vec();
    for arg in argv {
        line.extend(arg.bytes().filter(|b| *b != 0));
        line.push(0);
    }
    line
}

/// The container's environment: the spec's, plus Docker's defaults for the variables it lacks
/// (`PATH`, `HOSTNAME`, `HOME` = the user's home, and `TERM=xterm` with a tty).
fn environment(spec: &RunSpec, home: &str) -> Vec<String> {
    let mut env = spec.env.clone();
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
    };
    let mut defaults = vec![
        ("PATH", DEFAULT_PATH.to_string()),
        ("HOSTNAME", spec.hostname.clone()),
        ("HOME", home.to_string()),
    ];
    if spec.tty {
        defaults.push(("TERM", "xterm".to_string()));
    }
    for (key, value) in defaults {
        if !has(&env, key) {
            env.push(format!("{key}={value}"));
        }
    }
    env
}

/// Splits an absolute container path into clean components (`.` dropped, `..` resolved
/// lexically and never above the root, like Go's `filepath.Clean`).
pub(super) fn clean_absolute(path: &str, what: &str) -> Result<Vec<String>, RuntimeError> {
    if !path.starts_with('/') {
        return Err(RuntimeError::InvalidSpec(format!(
            "{what} {path:?} is not an absolute path"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            name => out.push(name.to_string()),
        }
    }
    Ok(out)
}

/// A path as it may appear in overlay mount options (which use `,` and `:` as separators).
fn overlay_path(path: &Path) -> Result<&str, RuntimeError> {
    match path.to_str() {
        Some(s) if !s.contains([',', ':', '\\']) => Ok(s),
        _ => Err(RuntimeError::InvalidSpec(format!(
            "path {} cannot be used in overlay options (non-UTF-8, or contains ',', ':' or '\\')",
            path.display()
        ))),
    }
}

pub(super) fn cstring(s: &str) -> Result<CString, RuntimeError> {
    CString::new(s).map_err(|_| RuntimeError::InvalidSpec(format!("{s:?} contains a NUL byte")))
}

fn path_cstring(path: &Path) -> Result<CString, RuntimeError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::InvalidSpec(format!("{} contains a NUL byte", path.display())))
}

/// The highest capability number the running kernel knows (40 on 5.9+ kernels).
pub(super) fn last_cap() -> u32 {
    static LAST_CAP: OnceLock<u32> = OnceLock::new();
    *LAST_CAP.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63)
    })
}
