//! The seam to the engine: plugins are "system containers", but plugin-host sits below the engine,
//! so it asks a [`PluginLauncher`] (implemented by the engine) to start and stop them.

use std::path::PathBuf;

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
    /// Starts an existing plugin container again (daemon boot). The default launches nothing and
    /// fails, so the host launches a fresh container from the record's spec instead.
    fn restart(&self, container_id: &str) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        Box::pin(async move { Err(LaunchError(format!("restart of {id} not supported"))) })
    }
}
