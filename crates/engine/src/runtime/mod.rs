//! The container runtime: turns a [`RunSpec`] into a real process tree in new namespaces
//! (mount, pid, uts, ipc, and net unless the host network is used), with its root filesystem
//! mounted inside its own mount namespace, and reports the exit code through a per-container shim.
//!
//! CONTRACT (owned by the runtime helper; the lifecycle code in `crate::lifecycle` relies on it):
//! - `spawn(spec)` returns once pid 1 of the container has exec'd its command (or fails with a
//!   `RuntimeError` that says which step failed: e.g. "mount overlay on ...: No such file").
//! - `Spawned::pid1` is pid 1's pid in the host pid namespace; signals go there via `signal()`.
//! - `Spawned::exit` resolves with the exit code of pid 1 (128+signal when killed). Dropping it
//!   before it resolves kills the container (the shim gets SIGKILL, pid 1 follows), so nothing
//!   runs unowned; keep it (e.g. in the container's owner task) for as long as the container runs.
//! - `Spawned::io` carries the stdio the engine reads and writes (pipes, or a pty master when `tty`).
//! - when the daemon dies, every container dies with it (shim → pid 1 chain), so nothing runs unowned.
//! - `cleanup(bundle)` removes what `spawn` created under the bundle dir (overlay upper/work; the
//!   root is mounted on the work dir). Call it once the container is removed and `exit` has resolved; `spawn`
//!   reuses an existing upper dir, so a restarted container keeps its writable layer.
//!
//! How: a small engine thread per container starts the shim (`child.rs`) with
//! `clone(CLONE_VM | CLONE_VFORK)` on a stack of its own, sleeps until it exits and reaps it
//! (`shim.rs`): the shim runs in the engine's memory, without a copy of its page tables. The
//! shim joins the container's cgroups, takes its stdio, unshares the namespaces and starts pid 1
//! the same way (`clone` with `CLONE_VM | CLONE_VFORK`); pid 1 mounts an
//! overlay (lower = image dir or host `/`, upper/work in the bundle), `/proc`, a `nodev` tmpfs
//! `/dev` (Docker's default nodes bound from the host, `pts` newinstance, `shm`), `/sys`
//! read-only, Docker's masked and read-only paths, the bind mounts and `--tmpfs` mounts (all
//! `nodev`), sets the hostname, `pivot_root`s, then installs the seccomp programs, sets the
//! capability sets, the user and groups, and execs (`harden.rs`; see `docs/security.md`).
//! Everything the children need is allocated before the shim starts (`plan.rs`, `confine.rs`,
//! `seccomp/`, `users.rs`) and owned by the shim's thread; errors come back as raw errno records
//! on a pipe. Cgroups are the engine's (`crate::cgroups`): the runtime only joins the
//! `cgroup.procs` files it is given, first thing in the shim.
//!
//! Requires Linux ≥ 5.12 (openat2, close_range, pidfd_open, mount_setattr) and root.

mod child;
mod confine;
mod exec;
pub mod fake;
mod harden;
mod netns;
pub mod options;
mod plan;
mod pty;
mod seam;
pub mod seccomp;
mod shim;
#[cfg(test)]
mod tests;
mod users;

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures::FutureExt;
use futures::future::BoxFuture;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;

use child::{RECORD_LEN, Record};
pub use exec::{ExecProcess, ExecSpec};
pub(crate) use plan::{UPPER_DIR, WORK_DIR};
pub use seam::{ContainerRuntime, NamespaceRuntime};

/// The container's root filesystem (the read-only lower layer of its overlay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// The host's `/` (its root filesystem only, not the filesystems mounted below it).
    Host,
    /// An image's unpacked root filesystem.
    Dir(PathBuf),
}

/// The container's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// The host's network namespace.
    Host,
    /// A new, empty network namespace with `lo` up.
    Isolated,
    /// The network namespace bound at this path (e.g. `/run/netns/NAME`), joined with `setns`.
    Join(PathBuf),
}

/// A bind mount of a host path into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Resolved, absolute host path (directory or file).
    pub source: PathBuf,
    /// Absolute path inside the container; created (as a directory, or an empty file when the
    /// source is not a directory) if missing, never through a symlink that leaves the rootfs.
    pub target: String,
    /// Read-only, recursively (submounts of the source too).
    pub readonly: bool,
}

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// 64-hex container id.
    pub id: String,
    /// `<root>/containers/<id>/`; must exist. The runtime keeps `rootfs-upper/` and
    /// `rootfs-work/` (also the merged root's mount point, inside the container's mount
    /// namespace) in it.
    pub bundle: PathBuf,
    pub rootfs: Rootfs,
    /// Applied in order, after `/proc`, `/dev` and `/sys`.
    pub mounts: Vec<BindMount>,
    pub hostname: String,
    /// `K=V` entries. `PATH`, `HOSTNAME`, `HOME=/root` (and `TERM=xterm` with a tty) are added
    /// when missing, as Docker does.
    pub env: Vec<String>,
    /// Absolute working directory, created if missing; `""` means `/`.
    pub cwd: String,
    /// Non-empty. `argv[0]` without a `/` is looked up in the container's `PATH`.
    pub argv: Vec<String>,
    /// Allocate a pty: the container's stdin/stdout/stderr are its slave (and `/dev/console`).
    pub tty: bool,
    /// Give the engine a writable stdin (else the container's stdin is `/dev/null`, or the pty
    /// slave with nobody writing to it).
    pub open_stdin: bool,
    pub net: NetMode,
    /// `cgroup.procs` files of the container's cgroups (one per v1 hierarchy, or the one v2
    /// file), opened before the shim starts; the shim writes `0` to each as its first step, so
    /// the shim and pid 1 (started after) run inside them. At most [`MAX_CGROUPS`].
    pub cgroup_procs: Vec<PathBuf>,
    /// `NAME|UID[:GROUP|GID]`, resolved in the container's `/etc/passwd` and `/etc/group`;
    /// empty = root.
    pub user: String,
    /// Capabilities, seccomp, privileged mode, read-only root, extra groups, tmpfs mounts.
    pub security: crate::container::SecurityOptions,
}

/// The most `cgroup.procs` files a container joins (one per v1 hierarchy).
pub const MAX_CGROUPS: usize = child::MAX_CGROUPS;

/// The container's stdio, engine side.
pub struct Io {
    /// `Some` iff `open_stdin`. With a tty this writes to the pty master: closing it does not
    /// send EOF to the container (write `\x04` for that).
    pub stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// The container's stdout; with a tty, the pty master (stdout and stderr merged).
    /// Ends (EOF) when every process of the container has exited.
    pub stdout: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// The container's stderr; `None` with a tty.
    pub stderr: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    /// A dup of the pty master for [`resize`] (tty only).
    pub pty: Option<OwnedFd>,
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("stdin", &self.stdin.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("pty", &self.pty)
            .finish_non_exhaustive()
    }
}

/// A started container.
pub struct Spawned {
    /// Container pid 1 as seen from the host pid namespace.
    pub pid1: i32,
    pub io: Io,
    /// Exit code of pid 1; 128+N when killed by signal N. Dropping it before it resolves kills
    /// the container.
    pub exit: BoxFuture<'static, i32>,
}

impl fmt::Debug for Spawned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawned")
            .field("pid1", &self.pid1)
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

/// What went wrong, naming the step and the path.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec cannot be run as given (empty command, relative path, NUL byte, ...).
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// Preparing the bundle on the host failed.
    #[error("{step} {}: {source}", path.display())]
    Prepare {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A host-side operation without a path failed (pipe, pty, start of the shim, ...).
    #[error("{step}: {source}")]
    Host {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// A container setup step failed in the shim or in pid 1, e.g.
    /// "mount overlay on /x: Invalid argument".
    #[error("{step}: {}", .errno.desc())]
    Setup { step: String, errno: Errno },
    /// `argv[0]` has no `/` and is in no `PATH` directory of the container.
    #[error("exec {cmd:?}: executable file not found in $PATH")]
    ExecNotFound { cmd: String },
    /// `execve` failed.
    #[error("exec {cmd:?}: {}", .errno.desc())]
    Exec { cmd: String, errno: Errno },
    /// The shim exited without reporting pid 1 or an error (it was killed).
    #[error("container shim exited early with code {code}")]
    ShimExited { code: i32 },
    /// The process is gone (ESRCH).
    #[error("container process {pid} is not running")]
    NotRunning { pid: i32 },
    #[error("send {signal} to {pid}: {}", .errno.desc())]
    Signal {
        pid: i32,
        signal: Signal,
        errno: Errno,
    },
    #[error("resize pty: {}", .errno.desc())]
    Resize { errno: Errno },
    #[error("remove {}: {source}", path.display())]
    Cleanup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The blocking task that prepares and starts the shim failed (panicked or was cancelled).
    #[error("runtime task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl RuntimeError {
    /// The errno behind a setup, exec, signal or resize failure, if any.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RuntimeError::Setup { errno, .. }
            | RuntimeError::Exec { errno, .. }
            | RuntimeError::Signal { errno, .. }
            | RuntimeError::Resize { errno } => Some(*errno),
            RuntimeError::ExecNotFound { .. } => Some(Errno::ENOENT),
            RuntimeError::NotRunning { .. } => Some(Errno::ESRCH),
            RuntimeError::Prepare { source, .. }
            | RuntimeError::Host { source, .. }
            | RuntimeError::Cleanup { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }
}

/// Starts a container; returns once its pid 1 has exec'd the command. Blocking work (bundle
/// preparation, starting the shim) runs on tokio's blocking pool.
pub async fn spawn(spec: RunSpec) -> Result<Spawned, RuntimeError> {
    let open_stdin = spec.open_stdin;
    let started = tokio::task::spawn_blocking(move || start(spec)).await??;
    let Started {
        shim,
        report_r,
        err_r,
        describe,
        master,
        pipes,
    } = started;

    let io = match build_io(master, pipes, open_stdin) {
        Ok(io) => io,
        Err(source) => {
            shim.kill_and_reap().await;
            return Err(RuntimeError::Host {
                step: "set up container stdio",
                source,
            });
        }
    };
    let (pid1, record) = match read_start_status(report_r, err_r).await {
        Ok(status) => status,
        Err(source) => {
            shim.kill_and_reap().await;
            return Err(RuntimeError::Host {
                step: "read container start status",
                source,
            });
        }
    };
    if let Some(record) = record {
        // The failing process has exited (or is about to): reap the shim.
        let _ = shim.exit().await;
        return Err(describe.error(record));
    }
    let Some(pid1) = pid1 else {
        let code = shim.exit().await;
        return Err(RuntimeError::ShimExited { code });
    };
    tracing::debug!(pid1, "container started");
    Ok(Spawned {
        pid1,
        io,
        exit: shim.exit().boxed(),
    })
}

/// Sends `sig` to the container's pid 1 (host pid). Note that pid 1 of a pid namespace only
/// receives the signals it handles, plus SIGKILL and SIGSTOP. Call it only while the container
/// runs (before `Spawned::exit` resolves): once pid 1 is reaped its pid may be reused.
pub fn signal(pid1: i32, sig: Signal) -> Result<(), RuntimeError> {
    if pid1 <= 0 {
        // kill(0 or negative) would signal process groups.
        return Err(RuntimeError::NotRunning { pid: pid1 });
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid1), sig) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(RuntimeError::NotRunning { pid: pid1 }),
        Err(errno) => Err(RuntimeError::Signal {
            pid: pid1,
            signal: sig,
            errno,
        }),
    }
}

/// Sets the window size of a container's pty (`Io::pty`).
pub fn resize(pty: &OwnedFd, rows: u16, cols: u16) -> Result<(), RuntimeError> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
    if unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(RuntimeError::Resize {
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// Removes what `spawn` created in the bundle (overlay upper/work dirs; `rootfs/`, the mount
/// point of older builds)
/// and detaches any mount left at or below the bundle in the caller's mount namespace (the
/// container's own mounts vanish with its namespace when it exits). Idempotent; blocking.
pub fn cleanup(bundle: &Path) -> Result<(), RuntimeError> {
    drop(netns::take(bundle));
    detach_mounts_under(bundle)?;
    for name in [plan::OLD_MERGED_DIR, plan::UPPER_DIR, plan::WORK_DIR] {
        let path = bundle.join(name);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(RuntimeError::Cleanup { path, source }),
        }
    }
    Ok(())
}

/// What the blocking part of `spawn` hands back.
struct Started {
    shim: shim::Shim,
    report_r: OwnedFd,
    err_r: OwnedFd,
    describe: plan::Describe,
    master: Option<OwnedFd>,
    pipes: Option<Pipes>,
}

/// The engine's ends of the container's stdio pipes (no tty).
struct Pipes {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Prepares the bundle and the plan, then starts the shim (`shim.rs`). Runs on the blocking
/// pool.
fn start(spec: RunSpec) -> Result<Started, RuntimeError> {
    let (mut plan, describe) = plan::build(&spec)?;
    let host = |step: &'static str| move |source: io::Error| RuntimeError::Host { step, source };

    let alive_r = engine_alive().map_err(host("create engine liveness pipe"))?;
    let (report_r, report_w) = pipe().map_err(host("create report pipe"))?;
    let (err_r, err_w) = pipe().map_err(host("create error pipe"))?;
    let devnull = std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .and_then(above_stdio)
        .map_err(host("open /dev/null"))?;
    // A namespace made while the volumes mounted (`prepare_bundle`) is taken in any case, and
    // used for an isolated network: the shim joins it instead of making one.
    let prepared = netns::take(&spec.bundle);
    let netns = match &spec.net {
        NetMode::Isolated => {
            if prepared.is_some() {
                plan.ns_flags &= !libc::CLONE_NEWNET;
            }
            prepared
        }
        NetMode::Join(path) => Some(
            std::fs::File::open(path)
                .map(OwnedFd::from)
                .and_then(above_stdio)
                .map_err(|source| RuntimeError::Prepare {
                    step: "open network namespace",
                    path: path.clone(),
                    source,
                })?,
        ),
        _ => None,
    };
    let cgroups = open_cgroup_procs(&spec.cgroup_procs)?;
    let pty = if spec.tty {
        Some(pty::open().map_err(host("open pty"))?)
    } else {
        None
    };
    if let Some(pty) = &pty {
        plan.console = Some(plan::cstring(&pty.slave_path)?);
    }

    // The child's ends of its stdio, closed here once the shim has its copies.
    let mut child_ends: Vec<OwnedFd> = Vec::new();
    let (stdio, pipes) = match &pty {
        Some(pty) => {
            let slave = pty.slave.as_raw_fd();
            ([slave; 3], None)
        }
        None => {
            let stdin = if spec.open_stdin {
                let (read, write) = pipe().map_err(host("create stdin pipe"))?;
                child_ends.push(read);
                Some(write)
            } else {
                None
            };
            let stdin_fd = child_ends
                .last()
                .map_or(devnull.as_raw_fd(), |fd| fd.as_raw_fd());
            let (stdout, stdout_w) = pipe().map_err(host("create stdout pipe"))?;
            let (stderr, stderr_w) = pipe().map_err(host("create stderr pipe"))?;
            let stdio = [stdin_fd, stdout_w.as_raw_fd(), stderr_w.as_raw_fd()];
            child_ends.extend([stdout_w, stderr_w]);
            (
                stdio,
                Some(Pipes {
                    stdin,
                    stdout,
                    stderr,
                }),
            )
        }
    };
    let fds = child::Fds {
        started_w: -1,
        stdio,
        report_w: report_w.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        alive_r,
        devnull: devnull.as_raw_fd(),
        netns: netns.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        cgroup_procs: {
            let mut raw = [-1; child::MAX_CGROUPS];
            for (slot, fd) in raw.iter_mut().zip(&cgroups) {
                *slot = fd.as_raw_fd();
            }
            raw
        },
    };
    let shim = shim::spawn(Box::new(plan), fds).map_err(host("start container shim"))?;
    // Close the engine's copies of the child's ends: only the shim and pid 1 hold them now, so
    // the pipes reach EOF when those are done.
    drop((report_w, err_w, devnull, netns, cgroups, child_ends));
    let master = pty.map(|pty| pty.master);
    Ok(Started {
        shim,
        report_r,
        err_r,
        describe,
        master,
        pipes,
    })
}

/// Opens each `cgroup.procs` file for writing (CLOEXEC, above the stdio fds).
fn open_cgroup_procs(paths: &[PathBuf]) -> Result<Vec<OwnedFd>, RuntimeError> {
    if paths.len() > child::MAX_CGROUPS {
        return Err(RuntimeError::InvalidSpec(format!(
            "{} cgroups to join; at most {}",
            paths.len(),
            child::MAX_CGROUPS
        )));
    }
    paths
        .iter()
        .map(|path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map(OwnedFd::from)
                .and_then(above_stdio)
                .map_err(|source| RuntimeError::Prepare {
                    step: "open cgroup",
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

/// Turns the stdio pipes or the pty master into [`Io`].
fn build_io(master: Option<OwnedFd>, pipes: Option<Pipes>, open_stdin: bool) -> io::Result<Io> {
    if let Some(master) = master {
        pty::set_nonblocking(&master)?;
        let stdout = pty::PtyStream::new(master.try_clone()?)?;
        let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = if open_stdin {
            Some(Box::new(pty::PtyStream::new(master.try_clone()?)?))
        } else {
            None
        };
        return Ok(Io {
            stdin,
            stdout: Box::new(stdout),
            stderr: None,
            pty: Some(master),
        });
    }
    let pipes = pipes.ok_or_else(|| io::Error::other("no stdio pipes"))?;
    let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = match pipes.stdin {
        Some(fd) if open_stdin => {
            Some(Box::new(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?))
        }
        _ => None,
    };
    use tokio::net::unix::pipe::Receiver;
    Ok(Io {
        stdin,
        stdout: Box::new(Receiver::from_owned_fd(pipes.stdout)?),
        stderr: Some(Box::new(Receiver::from_owned_fd(pipes.stderr)?)),
        pty: None,
    })
}

/// Reads the error pipe to EOF (pid 1 exec'd, or something failed) and then the shim's report.
async fn read_start_status(
    report_r: OwnedFd,
    err_r: OwnedFd,
) -> io::Result<(Option<i32>, Option<Record>)> {
    let mut err = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r)?;
    let mut buf = Vec::with_capacity(RECORD_LEN);
    err.read_to_end(&mut buf).await?;
    let record = buf
        .get(..RECORD_LEN)
        .and_then(|b| <&[u8; RECORD_LEN]>::try_from(b).ok())
        .map(Record::from_bytes);

    let mut report = tokio::net::unix::pipe::Receiver::from_owned_fd(report_r)?;
    let mut buf = Vec::with_capacity(4);
    report.read_to_end(&mut buf).await?;
    let pid1 = buf
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_ne_bytes)
        .filter(|pid| *pid > 0);
    Ok((pid1, record))
}

/// The read end of a pipe whose write end only this process holds, for its whole life: every
/// shim polls it and kills its container when it hangs up, i.e. when the engine dies, however it
/// dies. Both ends are CLOEXEC, so exec'd children never hold the write end; shims close it.
fn engine_alive() -> io::Result<RawFd> {
    static ALIVE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
    if let Some((read, _)) = ALIVE.get() {
        return Ok(read.as_raw_fd());
    }
    let pair = pipe()?;
    // If another thread won the race, our pair is dropped here.
    Ok(ALIVE.get_or_init(|| pair).0.as_raw_fd())
}

/// A CLOEXEC pipe (read, write), both ends above the stdio fds.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills the array with two new fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// Moves an fd to a number ≥ 3 (CLOEXEC) if it landed on 0–2, which happens when the engine runs
/// with closed stdio: the shim's `dup2`s onto 0–2 would otherwise overwrite it.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd ≥ 3 or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Lazily unmounts whatever is mounted at or below `dir` in this mount namespace, deepest first.
fn detach_mounts_under(dir: &Path) -> Result<(), RuntimeError> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
        RuntimeError::Prepare {
            step: "read",
            path: "/proc/self/mountinfo".into(),
            source,
        }
    })?;
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(RuntimeError::Setup {
                    step: format!("unmount {}", point.display()),
                    errno,
                });
            }
        }
    }
    Ok(())
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
