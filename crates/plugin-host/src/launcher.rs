//! The seam to the engine: plugins are "system containers", but plugin-host sits below the engine,
//! so it asks a [`PluginLauncher`] (implemented by the engine) to start and stop them, and to list
//! the objects a plugin handles for its `sync` message.

use std::path::PathBuf;

use berth_plugin_protocol::sync::SyncRequest;
use futures::future::BoxFuture;

/// What to launch: the plugin container, with `socket_dir` bind-mounted at `/var/run/docker/`
/// (the plugin then serves `/var/run/docker/plugin.sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The plugin's name when known (a reload or upgrade), else `None`.
    pub name: Option<String>,
    /// Image reference.
    pub image: String,
    /// Arguments after the image.
    pub args: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Extra host bind mounts, `SRC:DST[:ro|rw]` (validated).
    pub mounts: Vec<String>,
    /// Whether the plugin gets the engine API socket.
    pub privileged: bool,
    /// Whether the plugin shares the host's network namespace (`--network host`); else it gets
    /// its own.
    pub host_network: bool,
    /// Host directory to bind at `/var/run/docker/`.
    pub socket_dir: PathBuf,
}

/// A launched plugin container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// Container id.
    pub container_id: String,
}

/// A plugin container that exited at least once since it was launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// Exit code of its last run.
    pub exit_code: i32,
    /// How many times the restart policy started it again.
    pub restarts: u32,
    /// The last lines of its output (stdout and stderr).
    pub output: Vec<String>,
}

/// A launcher failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(pub String);

/// Starts and stops plugin containers (the engine implements it).
pub trait PluginLauncher: Send + Sync {
    /// Creates and starts a plugin container.
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Launched, LaunchError>>;
    /// Stops (and removes) a plugin container.
    fn stop(&self, container_id: &str) -> BoxFuture<'_, Result<(), LaunchError>>;
    /// Whether the container exited since it was launched (`None` while its first run lasts, or
    /// when the launcher cannot tell): a load fails at once instead of waiting for the deadline.
    fn exited(&self, _container_id: &str) -> BoxFuture<'_, Option<Exited>> {
        Box::pin(async { None })
    }
    /// The container's log file (Docker's json-file format), kept by the host when a load fails.
    fn log_file(&self, _container_id: &str) -> Option<PathBuf> {
        None
    }
    /// Stops (and removes) a plugin container, giving it `grace` between SIGTERM and SIGKILL
    /// (`None`: the launcher's default). The default ignores `grace`.
    fn stop_with_grace(
        &self,
        container_id: &str,
        _grace: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<(), LaunchError>> {
        self.stop(container_id)
    }
    /// Stops a plugin container without removing it (SIGTERM, `grace`, SIGKILL), so progress can
    /// tell the stop from the removal; [`Self::stop_with_grace`] then removes it. The default does
    /// nothing (the removal stops it).
    fn halt(
        &self,
        _container_id: &str,
        _grace: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<(), LaunchError>> {
        Box::pin(async { Ok(()) })
    }
    /// How long a stopped plugin container gets between SIGTERM and SIGKILL, when known.
    fn stop_grace(&self) -> Option<std::time::Duration> {
        None
    }
    /// The objects plugin `plugin` handles (volumes and networks whose driver it is, their
    /// endpoints and the containers using them), for its v2 `sync` message (`Reason` and
    /// `Plugin` are filled in by the host). `None`: the launcher cannot tell, and no sync is sent.
    fn sync_objects(&self, _plugin: &str) -> Option<SyncRequest> {
        None
    }
    /// Plugin `plugin` was just loaded (or upgraded) and is Active: the engine sends what it
    /// still owed that name while it was absent (catch-up: the plugin-side objects of networks
    /// whose create or remove a daemon crash cut). Called before the plugin's `sync`, so the
    /// sync lists what exists once the debts are paid. Never fails the load; the default does
    /// nothing.
    fn plugin_active(&self, _plugin: &str) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Starts an existing plugin container again (daemon boot). The default launches nothing and
    /// fails, so the host launches a fresh container from the record's spec instead.
    fn restart(&self, container_id: &str) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        Box::pin(async move { Err(LaunchError(format!("restart of {id} not supported"))) })
    }
}
