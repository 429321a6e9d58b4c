//! Daemon start-up and shutdown, and the daemon's one composition root ([`run`]): open the engine
//! state with its plugin host, built in dependency order with no late wiring (see
//! docs/architecture.md, "The composition root") → bind the UNIX socket and serve at once,
//! behind the closed readiness gate → start plugins (system containers) in load order and
//! hand-shake them → open the gate → start user containers per restart policy. Shutdown stops
//! user containers first and plugins last. Privileged plugins' per-plugin engine sockets
//! ([`PluginSockets`]) are served from here too; they reach the engine through a `Weak`, like the
//! plugin launcher, because they are built before it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use berth_engine::plugins::{ContainerLauncher, EngineSocketServer};
use berth_engine::runtime::NamespaceRuntime;
use berth_engine::{Engine, EngineError, OpenError};
use berth_plugin_host::{HostConfig, HostError, PluginHost, PluginSource};

use crate::gate::{Caller, Gate};

/// Engine-wide plugin call bounds (deadline caps per call family, reply size limits).
pub use berth_plugin_host::limits::Caps as PluginCaps;

/// Everything `berth daemon` is configured with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// State root (`--root`, default `/var/lib/berth`).
    pub root: PathBuf,
    /// Path of the UNIX socket to serve on (from `--host unix:///PATH`, default `/run/berth/berth.sock`).
    pub socket: PathBuf,
    /// How long user requests wait at the readiness gate for plugins (`--plugin-timeout`, default
    /// 60 s); also the default handshake deadline of a plugin load.
    pub plugin_timeout: Duration,
    /// Directory scanned for Docker-style plugin sockets and spec files (`--plugin-dir`, default `/run/docker/plugins`).
    pub plugin_dir: PathBuf,
    /// Docker authorization plugins, in order (`--authorization-plugin`, repeatable).
    pub authorization_plugins: Vec<String>,
    /// The group that owns the API socket (`--group`; default `berth` when it exists, else root).
    pub group: Option<String>,
    /// Engine-wide plugin call bounds: deadline caps per call family (`--plugin-deadline-api`,
    /// `--plugin-deadline-volume`, `--plugin-deadline-default`) and reply size limits.
    pub plugin_caps: PluginCaps,
    /// When a crash-looping container plugin is given up on (`--plugin-max-restarts` within
    /// `--plugin-restart-window`, default 5 within 60 s).
    pub plugin_crash_loop: berth_plugin_host::CrashLoopLimit,
}

/// Errors that stop the daemon from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("opening the engine state in {root}: {source}")]
    Open { root: PathBuf, source: EngineError },
    #[error("opening the plugin registry in {root}: {source}")]
    Plugins { root: PathBuf, source: HostError },
    #[error("binding {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Hygiene(#[from] crate::hygiene::HygieneError),
    #[error("serving the API: {0}")]
    Serve(std::io::Error),
    #[error("failed to validate authorization plugin {name}: {reason}")]
    Authz { name: String, reason: String },
}

/// Names in order, duplicates dropped (as dockerd does).
fn dedup(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// Makes sure every `--authorization-plugin` is loaded (already registered, or found the Docker
/// way in the plugin dir) and implements `authz`.
async fn activate_authz(host: &PluginHost, names: &[String]) -> Result<(), DaemonError> {
    for name in names {
        let plugin = match host.get(name) {
            Some(p) => p,
            None => host
                .load_discovered(name, berth_plugin_host::LoadOptions::default())
                .await
                .map_err(|e| DaemonError::Authz {
                    name: name.clone(),
                    reason: e.to_string(),
                })?,
        };
        // A lock-out left by an older daemon (the plugin disabled through the API) ends here.
        if plugin.state() == berth_plugin_host::PluginState::Disabled {
            tracing::warn!(plugin = %name, "authorization plugin was disabled; enabling it");
            host.set_enabled(name, true)
                .map_err(|e| DaemonError::Authz {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
        }
        if !plugin.implements(berth_plugin_host::protocol::legacy::AUTHZ) {
            return Err(DaemonError::Authz {
                name: name.clone(),
                reason:
                    "the plugin does not implement authz (its /Plugin.Activate lists no \"authz\")"
                        .into(),
            });
        }
        tracing::info!(plugin = %name, "authorization plugin active");
    }
    Ok(())
}

/// Binds a UNIX listener at `path`, replacing a stale socket file and creating the parent.
fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    tokio::net::UnixListener::bind(path)
}

/// The per-plugin engine sockets of privileged plugins: the same API, attributed to the plugin
/// ([`Caller::Plugin`]; plugin callers pass the readiness gate, so these sockets need none).
/// Built before the plugin host (its launcher serves through it), so it reaches the engine by a
/// [`Weak`] handle, like the launcher.
pub struct PluginSockets {
    engine: Weak<Engine>,
    authz: Arc<Vec<String>>,
    serving: Mutex<HashMap<PathBuf, tokio::task::JoinHandle<()>>>,
}

impl PluginSockets {
    /// Sockets serving the engine behind `engine`, with the authorization plugins `authz`.
    pub fn new(engine: Weak<Engine>, authz: Arc<Vec<String>>) -> Arc<Self> {
        Arc::new(Self {
            engine,
            authz,
            serving: Mutex::new(HashMap::new()),
        })
    }

    /// Stops every socket (daemon shutdown).
    pub fn stop_all(&self) {
        let all: Vec<_> = match self.serving.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => Vec::new(),
        };
        for (path, task) in all {
            task.abort();
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The name of the plugin whose container was launched with `socket_dir`, else `fallback`.
fn plugin_name(engine: &Weak<Engine>, socket_dir: &Path, fallback: &str) -> String {
    engine
        .upgrade()
        .and_then(|e| {
            e.plugins()?
                .list()
                .into_iter()
                .find_map(|p| match &p.record.source {
                    PluginSource::Container { socket_dir: d, .. } if d == socket_dir => {
                        Some(p.record.name)
                    }
                    _ => None,
                })
        })
        .unwrap_or_else(|| fallback.to_owned())
}

impl EngineSocketServer for PluginSockets {
    fn serve(&self, socket: &Path, socket_dir: &Path, fallback: &str) -> Result<(), String> {
        self.stop(socket);
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| "the engine has shut down".to_owned())?;
        let listener = bind_unix(socket).map_err(|e| e.to_string())?;
        crate::hygiene::secure_plugin_socket(socket).map_err(|e| e.to_string())?;
        let weak = self.engine.clone();
        let dir = socket_dir.to_owned();
        let fallback = fallback.to_owned();
        let caller: crate::CallerFn =
            Arc::new(move || Caller::Plugin(plugin_name(&weak, &dir, &fallback)));
        // Plugin callers pass the readiness gate whatever its state: an open one says so.
        let gate = Gate::open_now();
        let authz = self.authz.clone();
        let path = socket.to_owned();
        let task = tokio::spawn(async move {
            let never = std::future::pending::<()>();
            if let Err(e) =
                crate::serve_with(listener, engine, gate, Some(caller), authz, never).await
            {
                tracing::warn!(socket = %path.display(), error = %e, "plugin engine socket failed");
            }
        });
        tracing::info!(socket = %socket.display(), "serving a privileged plugin's engine socket");
        if let Ok(mut m) = self.serving.lock() {
            m.insert(socket.to_owned(), task);
        }
        Ok(())
    }

    fn stop(&self, socket: &Path) {
        let task = self.serving.lock().ok().and_then(|mut m| m.remove(socket));
        if let Some(t) = task {
            t.abort();
        }
        let _ = std::fs::remove_file(socket);
    }
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    // One daemon per root and per socket: both checked before anything is touched.
    let _root_lock = crate::hygiene::lock_root(&config.root)?;
    crate::hygiene::check_socket_free(&config.socket)?;
    let socket_group = crate::hygiene::socket_group(config.group.as_deref())?;
    // The composition root. Built in dependency order, each piece handed what it needs at
    // construction: the engine-socket server (weak handle to the engine) → the launcher (weak
    // handle, server) → the plugin host (launcher) → the engine (host, runtime). The weak
    // handles come from `Engine::open_wired` while it builds the engine, so nothing is set
    // afterwards and no `Arc` cycle keeps the engine alive.
    let authz = Arc::new(dedup(&config.authorization_plugins));
    let mut host_config = HostConfig::new(&config.root);
    host_config.discovery_dirs = vec![config.plugin_dir.clone()];
    host_config.load_deadline = config.plugin_timeout;
    host_config.caps = config.plugin_caps;
    host_config.crash_loop = config.plugin_crash_loop;
    for name in &config.authorization_plugins {
        host_config.locked.insert(
            name.clone(),
            "it is an authorization plugin of this daemon (--authorization-plugin); \
             restart the daemon without that flag first"
                .to_owned(),
        );
    }
    let mut built_sockets = None;
    let engine = Engine::open_wired(&config.root, Arc::new(NamespaceRuntime), |weak| {
        let sockets = PluginSockets::new(weak.clone(), authz.clone());
        built_sockets = Some(sockets.clone());
        let launcher = ContainerLauncher::new(weak.clone(), Some(sockets));
        PluginHost::open(host_config, Some(launcher)).map(|h| Some(Arc::new(h)))
    })
    .map_err(|e| match e {
        OpenError::Engine(source) => DaemonError::Open {
            root: config.root.clone(),
            source,
        },
        OpenError::Plugins(source) => DaemonError::Plugins {
            root: config.root.clone(),
            source,
        },
    })?;
    let (Some(host), Some(sockets)) = (engine.plugins().cloned(), built_sockets) else {
        unreachable!("open_wired returns an engine only after wire succeeded");
    };
    crate::hygiene::fix_modes(&config.root)?;
    // Bridges a killed engine left behind go before anything is wired again.
    engine.networks.sweep_idle_bridges().await;
    // And the published ports' rules it left (its chain is emptied).
    if let Err(e) = engine.sweep_ports().await {
        tracing::warn!(error = %e, "sweeping the published ports' rules");
    }
    let gate = Gate::closed(config.plugin_timeout, Some(host.readiness()));

    let listener = bind_unix(&config.socket).map_err(|source| DaemonError::Bind {
        path: config.socket.clone(),
        source,
    })?;
    crate::hygiene::secure_socket(&config.socket, socket_group)?;
    tracing::info!(socket = %config.socket.display(), root = %config.root.display(), "berth daemon listening");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve_with(
        listener,
        engine.clone(),
        gate.clone(),
        None,
        authz.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Plugins first, hand-shaken before user requests pass the gate.
    let names = host.names();
    if !names.is_empty() {
        tracing::info!(plugins = ?names, "starting plugins in load order");
    }
    for (name, reason) in host.start_all().await {
        tracing::warn!(plugin = %name, %reason, "plugin failed to come up");
    }
    // A plugin container no record names (a crash between launch and plugins.json) goes.
    engine.remove_orphan_plugin_containers().await;
    // Authorization plugins must be reachable before anything passes the gate (fail-closed).
    if let Err(e) = activate_authz(&host, &authz).await {
        sockets.stop_all();
        engine.shutdown().await;
        return Err(e);
    }
    // Catch-up: the tear-downs owed for containers that died with the previous daemon, then a
    // `boot` sync to the v2 plugins that asked for one (docs/semantics.md#catch-up).
    engine.catch_up().await;
    host.sync_all(berth_plugin_host::protocol::sync::SyncReason::Boot)
        .await;
    gate.open();
    tracing::info!("readiness gate open");
    engine.start_restart_policy_containers().await;

    shutdown.await;
    tracing::info!("shutting down: stopping containers (user ones first, plugins last)");
    // The engine stops user containers first, then system containers (plugins). Plugin
    // containers are kept (not removed): the next boot starts them again in load order.
    engine.shutdown().await;
    for p in host.snapshot().iter() {
        p.client().close_idle();
    }
    sockets.stop_all();
    let _ = stop_tx.send(());
    // Long-lived streams (events, attach) must not hold the daemon: give them a moment, then go.
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), server).await {
        return Err(DaemonError::Serve(e));
    }
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}
