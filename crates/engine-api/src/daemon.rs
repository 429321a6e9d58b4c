//! Daemon start-up and shutdown: open the engine state, bind the UNIX socket, serve, start
//! containers per restart policy, and on shutdown stop containers (user ones first).

use std::path::PathBuf;
use std::time::Duration;

use berth_engine::{Engine, EngineError};

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
    #[error("opening the engine state in {root}: {source}")]
    Open { root: PathBuf, source: EngineError },
    #[error("binding {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serving the API: {0}")]
    Serve(std::io::Error),
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let engine = Engine::open(&config.root).map_err(|source| DaemonError::Open {
        root: config.root.clone(),
        source,
    })?;
    let bind_err = |source| DaemonError::Bind {
        path: config.socket.clone(),
        source,
    };
    if let Some(dir) = config.socket.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    match std::fs::remove_file(&config.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = tokio::net::UnixListener::bind(&config.socket).map_err(bind_err)?;
    tracing::info!(socket = %config.socket.display(), root = %config.root.display(), "berth daemon listening");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve(listener, engine.clone(), async move {
        let _ = stop_rx.await;
    }));
    // No plugins yet: the gate is open as soon as the socket is; start containers per policy.
    engine.start_restart_policy_containers().await;

    shutdown.await;
    tracing::info!("shutting down: stopping containers");
    engine.shutdown().await;
    let _ = stop_tx.send(());
    // Long-lived streams (events, attach) must not hold the daemon: give them a moment, then go.
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), server).await {
        return Err(DaemonError::Serve(e));
    }
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}
