//! Loading a plugin: from a socket, by Docker-style discovery, or as a system container through
//! the [`PluginLauncher`]; hand-shake, build the record, register it at the end of the order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_plugin_protocol::sync::SyncReason;
use berth_state::rollback::Rollback;

use crate::client::PluginClient;
use crate::discovery::{self, DiscoveryError};
use crate::error::HostError;
use crate::handshake::{self, Negotiated};
use crate::launcher::{LaunchSpec, PluginLauncher};
use crate::plugin::LoadedPlugin;
use crate::readiness::ReadyState;
use crate::record::{
    LoadOptions, PluginRecord, PluginSource, PluginState, validate_mount, validate_network,
};
use crate::registry::{PLUGIN_SOCKET, PluginHost};

/// How often a launch checks whether the plugin container exited while it waits for a handshake.
const EXIT_POLL: Duration = Duration::from_millis(50);
/// The most of a failed plugin's log kept (the tail).
const FAILED_LOG_MAX: usize = 1 << 20;

impl PluginHost {
    pub(crate) fn build_record(
        &self,
        negotiated: Negotiated,
        fallback_name: Option<&str>,
        source: PluginSource,
        socket: PathBuf,
        container_id: Option<String>,
        opts: &LoadOptions,
    ) -> Result<PluginRecord, HostError> {
        let name = opts
            .name
            .clone()
            .or_else(|| (!negotiated.name.is_empty()).then(|| negotiated.name.clone()))
            .or_else(|| fallback_name.map(str::to_owned))
            .ok_or_else(|| HostError::NoName(socket.display().to_string()))?;
        berth_state::validate_name("plugin", &name)?;
        let requested = opts.deadline_ms.or(negotiated.requested_deadline_ms);
        Ok(PluginRecord {
            name,
            source,
            socket,
            protocol: negotiated.protocol,
            info: negotiated.info,
            interests: negotiated.interests,
            subscriptions: negotiated.subscriptions,
            implements: negotiated.implements,
            deadline_ms: self
                .config
                .caps
                .clamp(requested.map(Duration::from_millis))
                .default_ms,
            requested_deadline_ms: requested,
            failure_policy: opts
                .failure_policy
                .or(negotiated.requested_failure_policy)
                .unwrap_or_default(),
            privileged: opts.privileged,
            container_id,
            options: opts.clone(),
            last_error: None,
            disabled: false,
            warnings: negotiated.warnings,
        })
    }

    /// Registers `record` at the end of the load order, or in place of a Failed plugin of the
    /// same name (loading a plugin again after it crash-looped or failed at boot); the replaced
    /// one's container is stopped and removed in the background.
    pub(crate) async fn register(
        &self,
        record: PluginRecord,
    ) -> Result<Arc<LoadedPlugin>, HostError> {
        let _ops = self.ops.lock().await;
        let failed = match self.get(&record.name) {
            Some(p) if p.state() == PluginState::Failed => Some(p),
            Some(_) => return Err(HostError::Conflict(record.name)),
            None => None,
        };
        let plugin = Arc::new(LoadedPlugin::new(
            record,
            PluginState::Active,
            self.config.caps,
        ));
        let mut undo = Rollback::new("plugin registration");
        let added = plugin.clone();
        match failed.clone() {
            Some(old) => {
                let new = plugin.clone();
                self.swap(|v| {
                    if let Some(slot) = v.iter_mut().find(|p| Arc::ptr_eq(p, &old)) {
                        *slot = new;
                    }
                });
                undo.push_sync(
                    format!("put failed plugin {} back", plugin.name()),
                    move || {
                        self.swap(|v| {
                            if let Some(slot) = v.iter_mut().find(|p| Arc::ptr_eq(p, &added)) {
                                *slot = old;
                            }
                        });
                    },
                );
            }
            None => {
                self.swap(|v| v.push(plugin.clone()));
                undo.push_sync(format!("unregister {}", plugin.name()), move || {
                    self.swap(|v| v.retain(|p| !Arc::ptr_eq(p, &added)));
                });
            }
        }
        undo.check(self.persist()).await?;
        undo.commit();
        self.readiness.set(plugin.name(), ReadyState::Ready);
        // The output of an earlier failed load of this name is kept until this load.
        let _ = std::fs::remove_file(self.failed_log_path(plugin.name()));
        if let Some(old) = failed {
            self.retire_in_background(old, None);
        }
        // Catch-up: what the engine owed this name, then the sync (v2 plugins that
        // subscribed); neither fails the load.
        if let Some(l) = &self.launcher {
            l.plugin_active(plugin.name()).await;
        }
        self.sync_plugin(&plugin, SyncReason::Load).await;
        Ok(plugin)
    }

    /// Loads a plugin already running on `socket` (`plugin load --socket PATH`): hand-shakes it
    /// (polling until the load deadline), registers it at the end of the order, persists.
    pub async fn load_socket(
        &self,
        socket: impl AsRef<Path>,
        opts: LoadOptions,
    ) -> Result<Arc<LoadedPlugin>, HostError> {
        let socket = socket.as_ref().to_path_buf();
        let stem = socket
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned);
        self.load_from_socket(socket, PluginSource::Socket, stem.as_deref(), opts)
            .await
    }

    /// Loads plugin `name` found by Docker-style discovery in the configured directories.
    pub async fn load_discovered(
        &self,
        name: &str,
        mut opts: LoadOptions,
    ) -> Result<Arc<LoadedPlugin>, HostError> {
        // Like Docker, a plugin not found yet may still be starting: look again until the load
        // deadline (with the handshake's short backoff), then report where we looked.
        let until = Instant::now() + self.load_deadline(&opts);
        let mut backoff = Duration::from_millis(10);
        let socket = loop {
            match discovery::discover(name, &self.config.discovery_dirs) {
                Ok(s) => break s,
                Err(e @ DiscoveryError::NotFound { .. }) if Instant::now() >= until => {
                    return Err(e.into());
                }
                Err(DiscoveryError::NotFound { .. }) => {
                    tokio::time::sleep(
                        backoff.min(until.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e.into()),
            }
        };
        opts.name.get_or_insert_with(|| name.to_owned());
        self.load_from_socket(
            socket,
            PluginSource::Discovered {
                name: name.to_owned(),
            },
            Some(name),
            opts,
        )
        .await
    }

    async fn load_from_socket(
        &self,
        socket: PathBuf,
        source: PluginSource,
        fallback_name: Option<&str>,
        opts: LoadOptions,
    ) -> Result<Arc<LoadedPlugin>, HostError> {
        if let Some(m) = opts.mounts.first() {
            return Err(HostError::Mount {
                mount: m.clone(),
                reason: "mounts apply to plugins run as containers, not to one on a socket".into(),
            });
        }
        let label = opts
            .name
            .clone()
            .unwrap_or_else(|| socket.display().to_string());
        let client = PluginClient::new(label, socket.clone());
        let negotiated =
            handshake::negotiate(&client, &self.offer(), self.load_deadline(&opts)).await?;
        let record = self.build_record(negotiated, fallback_name, source, socket, None, &opts)?;
        self.register(record).await
    }

    pub(crate) fn launcher(&self) -> Result<Arc<dyn PluginLauncher>, HostError> {
        self.launcher.clone().ok_or(HostError::NoLauncher)
    }

    pub(crate) fn new_socket_dir(&self) -> Result<PathBuf, HostError> {
        let id = berth_state::new_id();
        let dir = self.config.root.join("plugins").join(&id[..16]);
        std::fs::create_dir_all(&dir).map_err(|source| HostError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Launches a plugin container and hand-shakes it: launch → poll the handshake on
    /// `<socket dir>/plugin.sock` until the deadline → register at the end of the order →
    /// persist. On any failure the steps taken are undone, newest first (one [`Rollback`]): the
    /// container is stopped, its socket dir removed, and nothing is registered.
    pub async fn load_container(
        &self,
        image: &str,
        args: Vec<String>,
        env: Vec<String>,
        opts: LoadOptions,
    ) -> Result<Arc<LoadedPlugin>, HostError> {
        let mut undo = Rollback::new("plugin load");
        let record = self
            .launch_and_negotiate(image, args, env, &opts, &mut undo)
            .await?;
        let plugin = undo.check(self.register(record).await).await?;
        undo.commit();
        Ok(plugin)
    }

    /// Creates a socket dir, launches the container and hand-shakes it, recording in `undo` how
    /// to take each step back (remove the socket dir, stop the container). On failure `undo` has
    /// already run (every step, the caller's earlier ones included) and is empty.
    pub(crate) async fn launch_and_negotiate<'a>(
        &'a self,
        image: &str,
        args: Vec<String>,
        env: Vec<String>,
        opts: &LoadOptions,
        undo: &mut Rollback<'a>,
    ) -> Result<PluginRecord, HostError> {
        let checked = opts.mounts.iter().try_for_each(|m| validate_mount(m));
        undo.check(checked).await?;
        if let Some(n) = &opts.network {
            undo.check(validate_network(n)).await?;
        }
        let launcher = undo.check(self.launcher()).await?;
        let socket_dir = undo.check(self.new_socket_dir()).await?;
        let dir = socket_dir.clone();
        undo.push_sync(format!("remove socket dir {}", dir.display()), move || {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing plugin socket dir {}: {e}", dir.display());
            }
        });
        let spec = LaunchSpec {
            name: opts.name.clone(),
            image: image.to_owned(),
            args: args.clone(),
            env: env.clone(),
            mounts: opts.mounts.clone(),
            privileged: opts.privileged,
            host_network: opts.host_network(),
            socket_dir: socket_dir.clone(),
        };
        let launched = launcher.launch(spec).await.map_err(|e| HostError::Launch {
            image: image.to_owned(),
            reason: e.0,
        });
        let launched = undo.check(launched).await?;
        let id = launched.container_id.clone();
        undo.push(format!("stop plugin container {id}"), move || async move {
            self.stop_quietly(&id).await;
        });
        let socket = socket_dir.join(PLUGIN_SOCKET);
        let label = opts.name.clone().unwrap_or_else(|| image.to_owned());
        let client = PluginClient::new(label.clone(), socket.clone());
        let source = PluginSource::Container {
            image: image.to_owned(),
            args,
            env,
            socket_dir,
        };
        let id = launched.container_id.clone();
        let offer = self.offer();
        let negotiation = handshake::negotiate(&client, &offer, self.load_deadline(opts));
        // The container exiting ends the load at once: no handshake can come any more.
        let exit_watch = async {
            loop {
                tokio::time::sleep(EXIT_POLL).await;
                if let Some(x) = launcher.exited(&id).await {
                    return x;
                }
            }
        };
        let negotiated = tokio::select! {
            n = negotiation => n.map_err(HostError::from),
            x = exit_watch => Err(HostError::Exited {
                plugin: label.clone(),
                exit_code: x.exit_code,
                restarts: x.restarts,
                output: x.output,
            }),
        };
        let record = negotiated
            .and_then(|n| self.build_record(n, None, source, socket, Some(id.clone()), opts));
        if let Err(e) = &record {
            // Kept before the rollback stops and removes the container.
            let keep_as = match e {
                HostError::Handshake(_) | HostError::Exited { .. } => Some(label.as_str()),
                _ => opts.name.as_deref(),
            };
            if let Some(name) = keep_as {
                self.keep_failed_log(launcher.as_ref(), &id, name);
            }
        }
        undo.check(record).await
    }

    /// Where the output of the last failed load of plugin `name` is kept (until its next load).
    pub fn failed_log_path(&self, name: &str) -> PathBuf {
        self.config
            .root
            .join("plugins")
            .join("failed-logs")
            .join(format!("{name}-json.log"))
    }

    /// Keeps the last [`FAILED_LOG_MAX`] bytes of a failed plugin container's log.
    fn keep_failed_log(&self, launcher: &dyn PluginLauncher, container_id: &str, name: &str) {
        if berth_state::validate_name("plugin", name).is_err() {
            return;
        }
        let Some(src) = launcher.log_file(container_id) else {
            return;
        };
        let dest = self.failed_log_path(name);
        // The log file is created with the container's first output: none means an empty log.
        let read = match std::fs::read(&src) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        };
        let kept = read.map(|bytes| {
            let start = bytes.len().saturating_sub(FAILED_LOG_MAX);
            // Start at a line boundary so every kept line is a whole JSON entry.
            let start = match start {
                0 => 0,
                s => bytes[s..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(bytes.len(), |p| s + p + 1),
            };
            bytes[start..].to_vec()
        });
        let written = kept.and_then(|b| {
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            berth_state::write_durable(&dest, &b).map_err(std::io::Error::other)
        });
        if let Err(e) = written {
            tracing::warn!(plugin = name, "keeping the failed plugin's log: {e}");
        }
    }

    pub(crate) async fn stop_quietly(&self, container_id: &str) {
        if let Some(l) = &self.launcher
            && let Err(e) = l.stop(container_id).await
        {
            tracing::warn!("stopping plugin container {container_id}: {e}");
        }
    }
}
