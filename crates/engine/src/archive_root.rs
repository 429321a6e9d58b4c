//! The root a `docker cp` works in. A running container's is `/proc/<pid 1>/root`. A container
//! that is not running (created, exited) has no mounted root, so one is mounted for the copy, as
//! Docker does: its overlay (the image's root filesystem below the container's own upper
//! directory) with its volumes and bind mounts at their targets, in the private mount namespace
//! of a helper thread that runs the copy. Nothing is mounted in the daemon's namespace: the
//! helper's namespace, and every mount in it, goes away when the thread ends, whether the copy
//! succeeded, failed or panicked. The container's operation lock is held for the whole copy (a
//! `start` waits for it), and the volumes are given back (driver `Unmount`s) afterwards.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;
use tokio::sync::oneshot;

use crate::archive::{errno_error, open_in_root};
use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::Container;
use crate::runtime::{Rootfs, UPPER_DIR, WORK_DIR};

/// A copy operation: gets the root as a directory fd, runs on a blocking thread.
pub(crate) type Op<T> = Box<dyn FnOnce(OwnedFd) -> Result<T, EngineError> + Send + 'static>;

/// What to mount for a container that is not running.
struct RootPlan {
    upper: PathBuf,
    work: PathBuf,
    lower: PathBuf,
    /// Host source, target inside the container, read-only.
    binds: Vec<(PathBuf, String, bool)>,
}

impl Engine {
    /// Runs `op` against the root of the container `reference` and returns its result through
    /// the receiver (the op may outlive this call: a tar stream ends when its client reads it).
    /// 409 while the container is being removed.
    pub(crate) fn in_container_root<T: Send + 'static>(
        self: &Arc<Self>,
        reference: &str,
        op: Op<T>,
    ) -> Result<oneshot::Receiver<Result<T, EngineError>>, EngineError> {
        let c = self.container(reference)?;
        let (tx, rx) = oneshot::channel();
        if let Some(root) = running_root(&c)? {
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(op(root));
            });
            return Ok(rx);
        }
        refuse_removing(&c)?;
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let result = engine.in_mounted_root(&c, op).await;
            let _ = tx.send(result);
        });
        Ok(rx)
    }

    /// The stopped case: under the operation lock, resolve the mounts, mount and copy in a
    /// helper thread's namespace, give the mounts back.
    async fn in_mounted_root<T: Send + 'static>(
        &self,
        c: &Arc<Container>,
        op: Op<T>,
    ) -> Result<T, EngineError> {
        let _op = c.op.lock().await;
        // It may have started or begun its removal while this waited for the lock.
        if let Some(root) = running_root(c)? {
            return blocking(move || op(root)).await;
        }
        refuse_removing(c)?;
        let image = self.images.get(&c.config.image_id)?;
        let lower = match self.images.rootfs(&image) {
            Rootfs::Host => PathBuf::from("/"),
            Rootfs::Dir(dir) => dir,
        };
        let resolved = self
            .resolve_mounts(&c.config, true, &mut Vec::new())
            .await?;
        let plan = RootPlan {
            upper: c.dir.join(UPPER_DIR),
            work: c.dir.join(WORK_DIR),
            lower,
            binds: resolved
                .iter()
                .map(|m| {
                    (
                        PathBuf::from(&m.host_path),
                        m.spec.destination.clone(),
                        m.spec.read_only,
                    )
                })
                .collect(),
        };
        let (tx, rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("berth-cp-root".into())
            .spawn(move || {
                let result = mount_root(&plan).and_then(op);
                let _ = tx.send(result);
            });
        let result = match spawned {
            Ok(_) => rx.await.unwrap_or_else(|_| {
                Err(EngineError::Io {
                    context: "copy thread".into(),
                    source: io::Error::other("the copy thread ended without a result"),
                })
            }),
            Err(e) => Err(EngineError::Io {
                context: "start the copy thread".into(),
                source: e,
            }),
        };
        self.release_mounts(&c.config, &resolved).await;
        result
    }
}

/// `Some(root)` for a running container (its `/proc/<pid 1>/root`), `None` otherwise.
fn running_root(c: &Container) -> Result<Option<OwnedFd>, EngineError> {
    let pid = {
        let st = c.state();
        if st.status != Status::Running || st.pid <= 0 {
            return Ok(None);
        }
        st.pid
    };
    let fd = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno_error(format!("open the root of container {}", c.id()), e))?;
    // The pid could have been reused between reading it and opening its root.
    if c.state().pid != pid {
        return Err(EngineError::Conflict(format!(
            "container {} stopped during the copy",
            c.id()
        )));
    }
    Ok(Some(fd))
}

fn refuse_removing(c: &Container) -> Result<(), EngineError> {
    match c.state().status {
        Status::Removing | Status::Dead => Err(EngineError::Conflict(format!(
            "container {} is being removed",
            c.id()
        ))),
        _ => Ok(()),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Io {
            context: "copy task".into(),
            source: io::Error::other(e.to_string()),
        })?
}

/// On the helper thread: leaves the daemon's mount namespace (a private copy, with no
/// propagation back), mounts the overlay on the work directory (as the runtime does), then each
/// bind at its target resolved inside the root. Returns the root as a directory fd.
fn mount_root(plan: &RootPlan) -> Result<OwnedFd, EngineError> {
    let sys = |what: &str| {
        let what = what.to_owned();
        move |e: nix::Error| errno_error(what, e)
    };
    // CLONE_NEWNS implies CLONE_FS: this thread alone gets the new namespace.
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("unshare the copy's mount namespace"))?;
    // Before anything is mounted: nothing may propagate to the host's mounts.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make the copy's mounts private"))?;
    // The work dir is scratch space between mounts; a previous (volatile) mount's marker in it
    // would make this mount fail. The container is not running and cannot start meanwhile.
    match std::fs::remove_dir_all(&plan.work) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(EngineError::io("empty the overlay work dir")(e)),
    }
    for dir in [&plan.upper, &plan.work] {
        std::fs::create_dir_all(dir).map_err(EngineError::io("create the overlay dirs"))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        overlay_path(&plan.lower)?,
        overlay_path(&plan.upper)?,
        overlay_path(&plan.work)?
    );
    mount(
        Some("overlay"),
        &plan.work,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(sys("mount the container's root filesystem"))?;
    let root = nix::fcntl::open(
        &plan.work,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open the container's root filesystem"))?;
    for (source, target, readonly) in &plan.binds {
        let file = !source.is_dir();
        let at = make_target(&root, target, file)?;
        let at_path = format!("/proc/self/fd/{}", at.as_raw_fd());
        let what = format!("mount {} on {target}", source.display());
        mount(
            Some(source.as_path()),
            at_path.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys(&what))?;
        if *readonly {
            mount(
                None::<&str>,
                at_path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(sys(&what))?;
        }
    }
    // The fd taken before the binds sees them: path walks from it cross into them.
    Ok(root)
}

/// Opens `target` inside the root (never leaving it), creating it (parents as directories, the
/// last as a directory or an empty file) when missing, as the runtime does at start.
fn make_target(root: &OwnedFd, target: &str, file: bool) -> Result<OwnedFd, EngineError> {
    let parts: Vec<&str> = target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(EngineError::Invalid(format!(
            "mount target {target:?} is not a clean path below the container's root"
        )));
    }
    let mut path = String::new();
    for (i, part) in parts.iter().enumerate() {
        let parent = if path.is_empty() { "/" } else { path.as_str() }.to_owned();
        path.push('/');
        path.push_str(part);
        let last = i + 1 == parts.len();
        match open_in_root(root, &path, OFlag::O_PATH, libc::RESOLVE_IN_ROOT) {
            Ok(fd) if last => return Ok(fd),
            Ok(_) => continue,
            Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(errno_error(format!("open {path} in container"), e)),
        }
        let dir = open_in_root(
            root,
            &parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            libc::RESOLVE_IN_ROOT,
        )
        .map_err(|e| errno_error(format!("open {parent} in container"), e))?;
        let name = CString::new(*part)
            .map_err(|_| EngineError::Invalid(format!("mount target {target:?} has a NUL")))?;
        let made = if last && file {
            nix::fcntl::openat(
                &dir,
                name.as_c_str(),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            nix::sys::stat::mkdirat(&dir, name.as_c_str(), Mode::from_bits_truncate(0o755))
        };
        match made {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(errno_error(format!("create {path} in container"), e)),
        }
    }
    open_in_root(root, &path, OFlag::O_PATH, libc::RESOLVE_IN_ROOT)
        .map_err(|e| errno_error(format!("open {path} in container"), e))
}

/// A path as it may appear in overlay mount options.
fn overlay_path(path: &std::path::Path) -> Result<&str, EngineError> {
    path.to_str()
        .filter(|s| !s.contains([',', ':', '\\']))
        .ok_or_else(|| {
            EngineError::Invalid(format!(
                "path {} cannot be used in overlay options",
                path.display()
            ))
        })
}
