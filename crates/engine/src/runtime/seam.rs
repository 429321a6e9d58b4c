//! The runtime seam: everything the engine asks of a container runtime, as one trait.
//!
//! The lifecycle code (`start.rs`, `stop.rs`, `remove.rs`, `streams.rs`) never calls the
//! namespace runtime's free functions directly; it calls the [`ContainerRuntime`] the [`Engine`]
//! was opened with. Two implementations exist:
//!
//! - [`NamespaceRuntime`]: the real one (this module's parent): namespaces, overlay root, the
//!   `berth-shim` process. Needs root.
//! - [`FakeRuntime`](super::fake::FakeRuntime): records every call and lets a test decide when
//!   a "process" exits and with which code, or make a spawn fail. Needs nothing: the lifecycle
//!   unit tests (`crate::tests`) run on it as any user.
//!
//! Cgroups go through the seam too (`create_cgroup`, `cgroup_exited`, `remove_cgroup`): the
//! namespace runtime uses [`crate::cgroups`], the fake records the calls and touches no cgroup,
//! so tests on the fake need no root and leave nothing in `/sys/fs/cgroup`.
//!
//! The spawn argument stays [`RunSpec`] (what the confinement work extends); the result stays
//! [`Spawned`]: pid 1, its stdio, and the future that resolves with its exit code.
//!
//! [`Engine`]: crate::Engine

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use nix::sys::signal::Signal;

use super::{ExecProcess, ExecSpec, NetMode, RunSpec, RuntimeError, Spawned};
use crate::cgroups::{self, CgroupError, DeviceRule};
use crate::limits::Resources;

/// What the engine needs from a container runtime (see the contract in the parent module).
pub trait ContainerRuntime: Send + Sync + fmt::Debug + 'static {
    /// Starts the container described by `spec`; resolves once its pid 1 runs the command.
    fn spawn(&self, spec: RunSpec) -> BoxFuture<'static, Result<Spawned, RuntimeError>>;
    /// Sends `sig` to pid 1 (`Spawned::pid1`) of a running container.
    fn signal(&self, pid1: i32, sig: Signal) -> Result<(), RuntimeError>;
    /// Sets the window size of a container's pty (`Io::pty`).
    fn resize(&self, pty: &OwnedFd, rows: u16, cols: u16) -> Result<(), RuntimeError>;
    /// Removes what `spawn` left in the bundle directory (blocking; idempotent).
    fn cleanup(&self, bundle: &Path) -> Result<(), RuntimeError>;
    /// Prepares the bundle's directories, and for an isolated network its namespace, ahead of
    /// `spawn`, which would otherwise do it first (blocking; idempotent; `spawn` still works
    /// without it). The engine calls it while the volume drivers mount.
    fn prepare_bundle(&self, _bundle: &Path, _net: &NetMode) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Creates the cgroup of container `id` of the engine on `root` with its limits (unless
    /// `privileged`, Docker's device rules and then `extra_rules`); returns the `cgroup.procs` files for [`RunSpec::cgroup_procs`]
    /// (blocking; see [`cgroups::for_start`]).
    fn create_cgroup(
        &self,
        root: &Path,
        id: &str,
        res: &Resources,
        privileged: bool,
        extra_rules: &[DeviceRule],
    ) -> Result<Vec<PathBuf>, CgroupError>;
    /// After the container's last process exited: whether it was OOM-killed; removes its cgroup.
    fn cgroup_exited(&self, root: &Path, id: &str) -> BoxFuture<'static, bool>;
    /// Removes the container's cgroup (at `rm`; blocking; idempotent).
    fn remove_cgroup(&self, root: &Path, id: &str) -> Result<(), CgroupError>;
    /// At daemon shutdown: removes the engine's parent cgroups when they are empty (blocking;
    /// never fails). Containers' cgroups leave the parent in place for the next container.
    fn remove_cgroup_parent(&self, root: &Path) {
        let _ = root;
    }
    /// Starts a process inside a running container (`docker exec`, see [`super::exec`]): the
    /// returned child exits with the command's code; its stdio are pipes or a pty. Runtimes
    /// without it refuse.
    fn exec(&self, spec: ExecSpec) -> BoxFuture<'static, Result<ExecProcess, RuntimeError>> {
        drop(spec);
        Box::pin(async {
            Err(RuntimeError::InvalidSpec(
                "exec is not supported by this runtime".into(),
            ))
        })
    }
}

/// The real runtime: Linux namespaces, an overlay root and the `berth-shim` process.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceRuntime;

impl ContainerRuntime for NamespaceRuntime {
    fn spawn(&self, spec: RunSpec) -> BoxFuture<'static, Result<Spawned, RuntimeError>> {
        Box::pin(super::spawn(spec))
    }

    fn signal(&self, pid1: i32, sig: Signal) -> Result<(), RuntimeError> {
        super::signal(pid1, sig)
    }

    fn resize(&self, pty: &OwnedFd, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        super::resize(pty, rows, cols)
    }

    fn cleanup(&self, bundle: &Path) -> Result<(), RuntimeError> {
        super::cleanup(bundle)
    }

    fn prepare_bundle(&self, bundle: &Path, net: &NetMode) -> Result<(), RuntimeError> {
        super::plan::prepare_dirs(bundle)?;
        if *net == NetMode::Isolated {
            super::netns::prepare(bundle).map_err(|source| RuntimeError::Host {
                step: "make the container's network namespace",
                source,
            })?;
        }
        Ok(())
    }

    fn create_cgroup(
        &self,
        root: &Path,
        id: &str,
        res: &Resources,
        privileged: bool,
        extra_rules: &[DeviceRule],
    ) -> Result<Vec<PathBuf>, CgroupError> {
        cgroups::for_start(root, id, res, privileged, extra_rules)
    }

    fn cgroup_exited(&self, root: &Path, id: &str) -> BoxFuture<'static, bool> {
        let (root, id) = (root.to_owned(), id.to_owned());
        Box::pin(async move { cgroups::after_exit(&root, &id).await })
    }

    fn remove_cgroup(&self, root: &Path, id: &str) -> Result<(), CgroupError> {
        cgroups::remove(root, id)
    }

    fn remove_cgroup_parent(&self, root: &Path) {
        cgroups::remove_parent_if_empty(root);
    }

    fn exec(&self, spec: ExecSpec) -> BoxFuture<'static, Result<ExecProcess, RuntimeError>> {
        Box::pin(super::exec::exec(spec))
    }
}
