//! Plugins as system containers: the engine's implementation of plugin-host's
//! [`PluginLauncher`]. A plugin container is a hidden (`system`) container with restart policy
//! `always`, the plugin's host socket directory bind-mounted at `/var/run/docker` (it serves
//! `/var/run/docker/plugin.sock` there) and host networking. A privileged plugin also gets a
//! per-plugin engine API socket bind-mounted at `/var/run/docker.sock`; the engine has no HTTP
//! server, so the API layer provides it through [`EngineSocketServer`].
//!
//! Ownership (the daemon's composition root, `berth_engine_api::daemon`): the engine owns the
//! plugin host, the host owns this launcher, and the launcher reaches the engine through a
//! [`Weak`] handed out by [`Engine::open_wired`] while the engine is being built. So there is no
//! `Arc` cycle (engine → host → launcher ⇢ engine is weak), nothing is wired in after
//! construction, and a launcher outliving its engine fails its calls instead of keeping the
//! engine alive. The engine-socket server is built before the launcher and given to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use berth_plugin_host::{Exited, LaunchError, LaunchSpec, Launched, PluginLauncher};
use futures::future::BoxFuture;

use crate::container::{ContainerSpec, MountSpec, RestartPolicy};
use crate::error::EngineError;
use crate::{CreateContainer, Engine};

/// Where a plugin's socket dir is mounted inside its container.
pub const PLUGIN_SOCKET_DIR_TARGET: &str = "/var/run/docker";
/// Where a privileged plugin's engine socket is mounted inside its container.
pub const ENGINE_SOCKET_TARGET: &str = "/var/run/docker.sock";
/// Label carrying the plugin's name (or image when the name is not known yet).
pub const LABEL_PLUGIN: &str = "berth.plugin";
/// Label carrying the plugin's host socket dir.
pub const LABEL_SOCKET_DIR: &str = "berth.plugin.socket-dir";
/// Label carrying a privileged plugin's engine socket on the host.
pub const LABEL_ENGINE_SOCKET: &str = "berth.plugin.engine-socket";

/// Serves the engine API on an extra UNIX socket for one privileged plugin (implemented by the
/// API layer). Requests on it are attributed to the plugin whose container uses `socket_dir`.
pub trait EngineSocketServer: Send + Sync {
    /// Binds `socket` (replacing a stale file) and serves the API on it, attributed to the
    /// plugin launched with `socket_dir` (`fallback` names it until it is registered).
    fn serve(&self, socket: &Path, socket_dir: &Path, fallback: &str) -> Result<(), String>;
    /// Stops serving on `socket` and removes the file.
    fn stop(&self, socket: &Path);
}

/// The engine's [`PluginLauncher`]: plugin containers are system containers.
pub struct ContainerLauncher {
    engine: Weak<Engine>,
    server: Option<Arc<dyn EngineSocketServer>>,
    stop_timeout: i64,
}

impl std::fmt::Debug for ContainerLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerLauncher")
            .field(
                "engine",
                &self.engine.upgrade().map(|e| e.root().to_owned()),
            )
            .finish()
    }
}

/// The host path of the engine socket of the plugin whose socket dir is `socket_dir`: a sibling
/// file `<socket_dir>.engine.sock` (outside the dir the plugin can write to).
pub fn engine_socket_path(socket_dir: &Path) -> PathBuf {
    let mut s = socket_dir.as_os_str().to_owned();
    s.push(".engine.sock");
    PathBuf::from(s)
}

fn launch_err(context: &str, e: impl std::fmt::Display) -> LaunchError {
    LaunchError(format!("{context}: {e}"))
}

impl ContainerLauncher {
    /// A launcher creating plugin containers in `engine` (see the module doc for why it is
    /// weak); `server` serves privileged plugins' engine sockets (without one, privileged
    /// plugins fail to launch).
    pub fn new(engine: Weak<Engine>, server: Option<Arc<dyn EngineSocketServer>>) -> Arc<Self> {
        Arc::new(Self {
            engine,
            server,
            stop_timeout: 10,
        })
    }

    fn engine(&self) -> Result<Arc<Engine>, LaunchError> {
        self.engine
            .upgrade()
            .ok_or_else(|| LaunchError("the engine has shut down".into()))
    }

    fn serve_engine_socket(
        &self,
        socket: &Path,
        socket_dir: &Path,
        fallback: &str,
    ) -> Result<(), LaunchError> {
        let server = self.server.as_ref().ok_or_else(|| {
            LaunchError("privileged plugin: no engine socket server configured".into())
        })?;
        server.serve(socket, socket_dir, fallback).map_err(|e| {
            launch_err(
                &format!("serving the engine API on {}", socket.display()),
                e,
            )
        })
    }

    fn stop_engine_socket(&self, socket: &Path) {
        if let Some(server) = &self.server {
            server.stop(socket);
        } else {
            let _ = std::fs::remove_file(socket);
        }
    }

    /// The create request for a plugin container.
    pub fn create_request(spec: &LaunchSpec) -> CreateContainer {
        let dir_id = spec
            .socket_dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let short: String = dir_id.chars().take(12).collect();
        let label = spec.name.clone().unwrap_or_else(|| spec.image.clone());
        let name = match &spec.name {
            Some(n) => format!("berth-plugin-{n}-{short}"),
            None => format!("berth-plugin-{short}"),
        };
        let socket_bind = format!("{}:{PLUGIN_SOCKET_DIR_TARGET}", spec.socket_dir.display());
        let mut binds = vec![socket_bind];
        let mut mounts = vec![MountSpec::bind(
            spec.socket_dir.display().to_string(),
            PLUGIN_SOCKET_DIR_TARGET,
            false,
        )];
        let mut labels = BTreeMap::from([
            (LABEL_PLUGIN.to_owned(), label),
            (
                LABEL_SOCKET_DIR.to_owned(),
                spec.socket_dir.display().to_string(),
            ),
        ]);
        // `--mount SRC:DST[:ro]` gives the plugin host paths (like the `Settings.Mounts` of
        // Docker's managed plugins), e.g. a volume plugin's storage. plugin-host validated them
        // as `SRC:DST[:ro|rw]` with absolute paths.
        for m in &spec.mounts {
            binds.push(m.clone());
            let mut parts = m.split(':');
            let (src, dst, mode) = (parts.next(), parts.next(), parts.next());
            if let (Some(src), Some(dst)) = (src, dst) {
                let mut mount = MountSpec::bind(src, dst, mode == Some("ro"));
                mount.mode = mode.unwrap_or_default().to_owned();
                mounts.push(mount);
            }
        }
        if spec.privileged {
            let sock = engine_socket_path(&spec.socket_dir);
            binds.push(format!("{}:{ENGINE_SOCKET_TARGET}", sock.display()));
            mounts.push(MountSpec::bind(
                sock.display().to_string(),
                ENGINE_SOCKET_TARGET,
                false,
            ));
            labels.insert(LABEL_ENGINE_SOCKET.to_owned(), sock.display().to_string());
        }
        CreateContainer {
            name: Some(name),
            spec: ContainerSpec {
                image: spec.image.clone(),
                cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
                env: spec.env.clone(),
                labels,
                binds,
                mounts,
                restart_policy: RestartPolicy::Always,
                // A plugin gets the host's network namespace only when loaded with
                // `--network host`.
                network_mode: if spec.host_network { "host" } else { "none" }.into(),
                system: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn launch_inner(&self, spec: LaunchSpec) -> Result<Launched, LaunchError> {
        let fallback = spec.name.clone().unwrap_or_else(|| spec.image.clone());
        let engine_sock = spec
            .privileged
            .then(|| engine_socket_path(&spec.socket_dir));
        if let Some(sock) = &engine_sock {
            // The socket must exist before the container starts: it is bind-mounted as a file.
            self.serve_engine_socket(sock, &spec.socket_dir, &fallback)?;
        }
        let engine = self.engine()?;
        // A fresh container in a socket dir an earlier one served (boot, when restarting the old
        // container failed): the old sockets go, as for a restart.
        remove_stale_sockets(&spec.socket_dir);
        let req = Self::create_request(&spec);
        let id = match engine.create(req).await {
            Ok((id, _warnings)) => id,
            Err(e) => {
                if let Some(sock) = &engine_sock {
                    self.stop_engine_socket(sock);
                }
                return Err(launch_err("creating the plugin container", e));
            }
        };
        if let Err(e) = engine.start(&id).await {
            let _ = engine.remove(&id, true).await;
            if let Some(sock) = &engine_sock {
                self.stop_engine_socket(sock);
            }
            return Err(launch_err("starting the plugin container", e));
        }
        tracing::info!(container = %id, image = %spec.image, privileged = spec.privileged, "plugin container started");
        Ok(Launched { container_id: id })
    }

    async fn stop_inner(&self, id: &str, grace: Option<i64>) -> Result<(), LaunchError> {
        let engine = self.engine()?;
        let c = match engine.container(id) {
            Ok(c) => c,
            Err(EngineError::NoSuchContainer(_)) => return Ok(()),
            Err(e) => return Err(launch_err("finding the plugin container", e)),
        };
        let engine_sock = c
            .config
            .spec
            .labels
            .get(LABEL_ENGINE_SOCKET)
            .map(PathBuf::from);
        match engine
            .stop(id, Some(grace.unwrap_or(self.stop_timeout)), None)
            .await
        {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => tracing::warn!(container = id, error = %e, "stopping plugin container"),
        }
        let removed = engine.remove(id, true).await;
        if let Some(sock) = &engine_sock {
            self.stop_engine_socket(sock);
        }
        match removed {
            Ok(()) | Err(EngineError::NoSuchContainer(_)) => Ok(()),
            Err(e) => Err(launch_err("removing the plugin container", e)),
        }
    }

    /// Stops a plugin container (SIGTERM, `grace` seconds, SIGKILL) and keeps it.
    async fn halt_inner(&self, id: &str, grace: Option<i64>) -> Result<(), LaunchError> {
        let engine = self.engine()?;
        match engine
            .stop(id, Some(grace.unwrap_or(self.stop_timeout)), None)
            .await
        {
            Ok(()) | Err(EngineError::NotModified(_) | EngineError::NoSuchContainer(_)) => Ok(()),
            Err(e) => Err(launch_err("stopping the plugin container", e)),
        }
    }

    async fn restart_inner(&self, id: &str) -> Result<(), LaunchError> {
        let engine = self.engine()?;
        let c = engine
            .container(id)
            .map_err(|e| launch_err("finding the plugin container", e))?;
        if let Some(sock) = c.config.spec.labels.get(LABEL_ENGINE_SOCKET) {
            let dir = c
                .config
                .spec
                .labels
                .get(LABEL_SOCKET_DIR)
                .map(PathBuf::from)
                .unwrap_or_default();
            let fallback = c
                .config
                .spec
                .labels
                .get(LABEL_PLUGIN)
                .cloned()
                .unwrap_or_default();
            self.serve_engine_socket(Path::new(sock), &dir, &fallback)?;
        }
        if c.state().status.is_active() {
            return Ok(());
        }
        if let Some(dir) = c.config.spec.labels.get(LABEL_SOCKET_DIR) {
            remove_stale_sockets(Path::new(dir));
        }
        match engine.start(id).await {
            Ok(()) | Err(EngineError::NotModified(_)) => Ok(()),
            Err(e) => Err(launch_err("starting the plugin container", e)),
        }
    }
}

/// Removes the socket files in a plugin's socket dir before its container is started again
/// (boot, `plugin enable`), while nothing of the new container runs yet. After a daemon crash the
/// previous incarnation of the plugin may still be dying (its shim kills it once it sees the old
/// engine gone, but a loaded machine may run the new daemon first): a handshake on the socket it
/// left would be answered by a process gone a moment later, the plugin would be Active, and the
/// first call (a boot-time restart's volume hook) would be refused. With the file gone, the
/// handshake waits for the socket of the process started now (docs/semantics.md, boot order).
fn remove_stale_sockets(dir: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_socket()) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(socket = %path.display(), "removed a plugin socket its previous container left")
                }
                Err(e) => {
                    tracing::warn!(socket = %path.display(), error = %e, "removing a stale plugin socket")
                }
            }
        }
    }
}

/// How many output lines an exit report carries.
const EXIT_OUTPUT_LINES: usize = 20;

impl ContainerLauncher {
    async fn exited_inner(&self, id: &str) -> Option<Exited> {
        let c = self.engine().ok()?.container(id).ok()?;
        let st = c.state();
        if st.finished_at.is_none() && st.restart_count == 0 {
            return None;
        }
        let path = crate::logs::log_path(&c.dir, c.id());
        let entries = tokio::task::spawn_blocking(move || {
            // The last lines only: start at the tail instead of reading the whole log.
            let from = crate::logs::tail_offset(&path, EXIT_OUTPUT_LINES)?;
            crate::logs::read_entries(&path, from, crate::logs::READ_BATCH)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .map(|(e, _)| e)
        .unwrap_or_default();
        let lines: Vec<String> = entries
            .iter()
            .flat_map(|e| e.log.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let skip = lines.len().saturating_sub(EXIT_OUTPUT_LINES);
        Some(Exited {
            exit_code: st.exit_code,
            restarts: st.restart_count,
            output: lines[skip..].to_vec(),
        })
    }
}

impl PluginLauncher for ContainerLauncher {
    fn exited(&self, container_id: &str) -> BoxFuture<'_, Option<Exited>> {
        let id = container_id.to_owned();
        Box::pin(async move { self.exited_inner(&id).await })
    }

    fn stop_grace(&self) -> Option<std::time::Duration> {
        u64::try_from(self.stop_timeout)
            .ok()
            .map(std::time::Duration::from_secs)
    }

    fn log_file(&self, container_id: &str) -> Option<PathBuf> {
        let c = self.engine().ok()?.container(container_id).ok()?;
        Some(crate::logs::log_path(&c.dir, c.id()))
    }

    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Launched, LaunchError>> {
        Box::pin(self.launch_inner(spec))
    }

    fn stop(&self, container_id: &str) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        Box::pin(async move { self.stop_inner(&id, None).await })
    }

    fn stop_with_grace(
        &self,
        container_id: &str,
        grace: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        let secs = grace.map(|g| i64::try_from(g.as_secs()).unwrap_or(i64::MAX));
        Box::pin(async move { self.stop_inner(&id, secs).await })
    }

    fn halt(
        &self,
        container_id: &str,
        grace: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        let secs = grace.map(|g| i64::try_from(g.as_secs()).unwrap_or(i64::MAX));
        Box::pin(async move { self.halt_inner(&id, secs).await })
    }

    fn restart(&self, container_id: &str) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        Box::pin(async move { self.restart_inner(&id).await })
    }

    fn plugin_active(&self, plugin: &str) -> BoxFuture<'_, ()> {
        let name = plugin.to_owned();
        Box::pin(async move {
            // Endpoint tear-downs are not paid here: they are paid at boot and by the
            // container's next start or removal, under its lock.
            if let Ok(engine) = self.engine() {
                engine.networks.pay_owed_networks(Some(&name)).await;
            }
        })
    }

    fn sync_objects(&self, plugin: &str) -> Option<berth_plugin_host::protocol::sync::SyncRequest> {
        Some(self.engine().ok()?.sync_objects(plugin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_shapes_a_hidden_always_restarting_container() {
        let spec = LaunchSpec {
            name: Some("flocker".into()),
            image: "host".into(),
            args: vec!["/bin/plugin".into(), "--x".into()],
            env: vec!["A=1".into()],
            mounts: vec!["/srv/data:/data:ro".into()],
            privileged: false,
            host_network: false,
            socket_dir: PathBuf::from("/var/lib/berth/plugins/0123456789abcdef"),
        };
        let req = ContainerLauncher::create_request(&spec);
        assert!(req.spec.system);
        assert_eq!(
            req.spec.network_mode, "none",
            "its own network namespace by default"
        );
        let host = LaunchSpec {
            host_network: true,
            ..spec.clone()
        };
        assert_eq!(
            ContainerLauncher::create_request(&host).spec.network_mode,
            "host"
        );
        assert_eq!(req.spec.restart_policy, RestartPolicy::Always);
        assert_eq!(req.spec.cmd.as_deref(), Some(&spec.args[..]));
        assert_eq!(
            req.spec.binds,
            [
                "/var/lib/berth/plugins/0123456789abcdef:/var/run/docker",
                "/srv/data:/data:ro"
            ]
        );
        assert_eq!(
            req.name.as_deref(),
            Some("berth-plugin-flocker-0123456789ab")
        );
        let mounts: Vec<_> = req
            .spec
            .mounts
            .iter()
            .map(|m| (m.source.as_str(), m.destination.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                (
                    "/var/lib/berth/plugins/0123456789abcdef",
                    "/var/run/docker",
                    false
                ),
                ("/srv/data", "/data", true)
            ]
        );
        assert!(!req.spec.labels.contains_key(LABEL_ENGINE_SOCKET));

        let privileged = LaunchSpec {
            privileged: true,
            name: None,
            ..spec
        };
        let req = ContainerLauncher::create_request(&privileged);
        assert_eq!(
            req.spec.binds[2],
            "/var/lib/berth/plugins/0123456789abcdef.engine.sock:/var/run/docker.sock"
        );
        assert_eq!(req.spec.mounts[2].destination, "/var/run/docker.sock");
        assert_eq!(req.spec.labels[LABEL_PLUGIN], "host");
        assert_eq!(req.name.as_deref(), Some("berth-plugin-0123456789ab"));
    }
}
