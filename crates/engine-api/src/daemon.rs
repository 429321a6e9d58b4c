//! Daemon start-up: open the engine state, bind the UNIX socket, serve until shutdown.

use std::path::PathBuf;
use std::time::Duration;

/// Everything `berth daemon` is configured with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// State root (`--root`, default `/var/lib/berth`).
    pub root: PathBuf,
    /// Path of the UNIX socket to serve on (from `--host unix:///PATH`, default `/run/berth/berth.sock`).
    pub socket: PathBuf,
    /// How long user requests wait at the readiness gate for plugins (`--plugin-timeout`, default 60 s).
    pub plugin_timeout: Duration,
    /// Directory scanned for Docker-style plugin sockets and spec files (`--plugin-dir`, default `/run/docker/plugins`).
    pub plugin_dir: PathBuf,
    /// Docker authorization plugins, in order (`--authorization-plugin`, repeatable).
    pub authorization_plugins: Vec<String>,
}

/// Errors that stop the daemon from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("binding {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("serving the API: {0}")]
    Serve(std::io::Error),
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let _ = (config, shutdown);
    Ok(())
}
