//! Boot and shutdown: opening the state (reconciling containers the previous engine left
//! running or half-created), boot-time restarts by policy, and the ordered daemon shutdown.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use chrono::Utc;

use berth_networks::NetworkStore;
use berth_plugin_host::PluginHost;
use berth_state::records::{LoadWarning, RecordDir};
use berth_volumes::VolumeStore;

use crate::container::{ContainerConfig, ContainerState, RestartPolicy, Status};
use crate::engine::{Engine, Table};
use crate::error::EngineError;
use crate::events::EventBus;
use crate::handle::{Container, lock};
use crate::images::ImageStore;
use crate::runtime::{ContainerRuntime, NamespaceRuntime};

/// Why [`Engine::open_wired`] failed: the engine's own state, or the wiring (the plugin host).
#[derive(Debug)]
pub enum OpenError<E> {
    /// Opening or reconciling the engine state failed.
    Engine(EngineError),
    /// The `wire` callback failed.
    Plugins(E),
}

impl Engine {
    /// Opens the engine state under `root` with the namespace runtime and no plugin host
    /// (engine-only servers). See [`Engine::open_wired`] for the daemon's composition.
    pub fn open(root: &Path) -> Result<Arc<Self>, EngineError> {
        Self::open_with(root, Arc::new(NamespaceRuntime), None)
    }

    /// Opens the engine state under `root` with `runtime` and, optionally, a plugin host built
    /// beforehand (one that needs no launcher back into this engine). Tests open a temp dir
    /// with the recording [`FakeRuntime`](crate::runtime::fake::FakeRuntime) this way, as any
    /// user.
    pub fn open_with(
        root: &Path,
        runtime: Arc<dyn ContainerRuntime>,
        plugins: Option<Arc<PluginHost>>,
    ) -> Result<Arc<Self>, EngineError> {
        Self::open_wired(root, runtime, |_| Ok::<_, EngineError>(plugins)).map_err(|e| match e {
            OpenError::Engine(e) | OpenError::Plugins(e) => e,
        })
    }

    /// The daemon's composition root for the engine: opens the state under `root` (reconciling
    /// it: containers that were running when the previous engine died are marked exited, and
    /// boot restarts them per policy later, see [`Engine::start_restart_policy_containers`];
    /// half-created containers are removed), then calls `wire` with a [`Weak`] handle to the
    /// engine being built, to build the plugin host. The host's launcher creates plugin
    /// containers in this engine, so it holds that `Weak`: the engine owns the host, the host
    /// owns the launcher, and the launcher does not own the engine (no `Arc` cycle, and nothing
    /// is wired after construction). Upgrading the `Weak` inside `wire` fails: the engine
    /// exists only once `open_wired` returns.
    pub fn open_wired<E>(
        root: &Path,
        runtime: Arc<dyn ContainerRuntime>,
        wire: impl FnOnce(&Weak<Engine>) -> Result<Option<Arc<PluginHost>>, E>,
    ) -> Result<Arc<Self>, OpenError<E>> {
        let containers_dir = root.join("containers");
        std::fs::create_dir_all(&containers_dir)
            .map_err(EngineError::io(format!(
                "creating {}",
                containers_dir.display()
            )))
            .map_err(OpenError::Engine)?;
        // Each container's directory in a block group of its own choosing (see `spread`).
        crate::spread::spread_subdirectories(&containers_dir);
        let images = ImageStore::open(root).map_err(OpenError::Engine)?;
        let volumes = VolumeStore::open(root).map_err(|e| OpenError::Engine(e.into()))?;
        let networks = NetworkStore::load(root).map_err(|e| OpenError::Engine(e.into()))?;
        let (table, interrupted, mut load_warnings) =
            Self::load_containers(&containers_dir).map_err(OpenError::Engine)?;
        let boot_plugin_containers: Vec<String> = table
            .by_id
            .values()
            .filter(|c| {
                c.config.spec.system
                    && c.config
                        .spec
                        .labels
                        .contains_key(crate::plugins::LABEL_PLUGIN)
            })
            .map(|c| c.id().to_owned())
            .collect();
        load_warnings.extend(images.load_warnings().iter().cloned());
        let mut failed = None;
        let engine = Arc::new_cyclic(|weak| {
            let plugins = match wire(weak) {
                Ok(p) => p,
                Err(e) => {
                    failed = Some(e);
                    None
                }
            };
            // The network store gets the host at construction: nothing is wired later.
            let networks = NetworkStore::new(networks, plugins.clone());
            Engine {
                root: root.to_owned(),
                containers_dir,
                table: Mutex::new(table),
                images,
                volumes,
                networks,
                events: EventBus::new(),
                interrupted: Mutex::new(interrupted),
                load_warnings,
                boot_plugin_containers: Mutex::new(boot_plugin_containers),
                plugins,
                runtime,
                execs: Default::default(),
                ports: crate::ports::PortTable::new(root),
            }
        });
        match failed {
            // Nothing was started: the half-built engine is dropped here.
            Some(e) => Err(OpenError::Plugins(e)),
            None => Ok(engine),
        }
    }

    /// Loads the container records under `containers_dir` through one
    /// [`RecordDir`](berth_state::records::RecordDir) (unreadable `config.json` or `state.json`,
    /// stray files: quarantined and returned as warnings), reconciling them (see
    /// [`Engine::open_wired`]). Returns the table, the ids of the containers that were running,
    /// and the warnings.
    fn load_containers(
        containers_dir: &Path,
    ) -> Result<(Table, Vec<String>, Vec<LoadWarning>), EngineError> {
        let mut table = Table::default();
        let mut interrupted = Vec::new();
        let records: RecordDir<ContainerConfig> =
            RecordDir::open(containers_dir, "config.json", "container")?;
        let loaded = records.load_all()?;
        let mut warnings = Vec::new();
        for w in loaded.warnings {
            match w {
                // No config.json: create writes it last, so this container was never fully
                // created (a crash mid-create); nothing in it belongs to a user.
                LoadWarning::Orphan { path, .. } => {
                    tracing::info!(dir = %path.display(), "removing a container that was never fully created");
                    berth_state::remove_dir_durable(&path)?;
                }
                w => warnings.push(w),
            }
        }
        for (name, config) in loaded.records {
            let dir = records.dir(&name);
            let state = match berth_state::load_json::<ContainerState>(&dir.join("state.json")) {
                Ok(state) => state,
                Err(e) => {
                    let w = records.quarantine(&name, &e);
                    tracing::warn!("{w}");
                    warnings.push(w);
                    continue;
                }
            };
            let mut state = state.unwrap_or_default();
            if state.status.is_active() || state.status == Status::Removing {
                if state.status == Status::Running {
                    interrupted.push(config.id.clone());
                }
                state.status = Status::Exited;
                state.pid = 0;
                state.paused = false;
                state.exit_code = 137;
                state.error = "the engine stopped while the container was running".into();
                state.finished_at = Some(Utc::now());
                // Best effort: a full disk must not stop the boot (the state is rebuilt the
                // same way at the next boot).
                if let Err(e) = berth_state::store_json(&dir.join("state.json"), &state) {
                    tracing::warn!(id = %config.id, error = %e, "recording the interrupted run");
                }
            }
            table.names.insert(config.name.clone(), config.id.clone());
            table
                .by_id
                .insert(config.id.clone(), Container::new(config, state, dir));
        }
        // The engine root holds `containers/`.
        let root = containers_dir.parent().unwrap_or(containers_dir);
        crate::cgroups::sweep_at_boot(root, &table.by_id);
        Ok((table, interrupted, warnings))
    }

    /// Boot reconciliation of plugin containers, once the plugin host brought its plugins up
    /// (before the readiness gate opens and before restart policies run): a hidden plugin
    /// container that no plugin record names is the leftover of a crash between "plugin
    /// container launched" and "plugins.json saved" (or of a record that was quarantined); it
    /// would otherwise be restarted by its `always` policy at every boot. It is removed. Only
    /// containers loaded from disk at open are considered, so a plugin load racing with the boot
    /// is never touched. Returns the ids removed.
    pub async fn remove_orphan_plugin_containers(self: &Arc<Self>) -> Vec<String> {
        let named: Vec<String> = self
            .plugins()
            .map(|h| {
                h.snapshot()
                    .iter()
                    .filter_map(|p| p.record().container_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let booted = std::mem::take(&mut *lock(&self.boot_plugin_containers));
        let mut removed = Vec::new();
        for id in booted {
            if named.contains(&id) {
                continue;
            }
            let Ok(c) = self.container(&id) else {
                continue;
            };
            let _op = c.op.lock().await;
            tracing::warn!(id = %id, plugin = ?c.config.spec.labels.get(crate::plugins::LABEL_PLUGIN), "removing a plugin container no plugin record names");
            match self.remove_locked(&c, true, false).await {
                Ok(()) => removed.push(id),
                Err(e) => {
                    tracing::warn!(id = %id, error = %e, "removing an orphan plugin container")
                }
            }
        }
        removed
    }

    /// After the readiness gate opens: restart containers per policy (always; unless-stopped when
    /// not stopped by a user; on-failure when the engine's death interrupted them).
    pub async fn start_restart_policy_containers(self: &Arc<Self>) {
        let interrupted = std::mem::take(&mut *lock(&self.interrupted));
        let mut candidates: Vec<_> = self.all();
        // System containers first.
        candidates.sort_by_key(|c| !c.config.spec.system);
        for c in candidates {
            let st = c.state();
            let wanted = match c.restart_policy() {
                RestartPolicy::Always => true,
                RestartPolicy::UnlessStopped => !st.manually_stopped,
                RestartPolicy::OnFailure { .. } => interrupted.contains(&c.config.id),
                RestartPolicy::No => false,
            };
            if wanted && st.status == Status::Exited {
                let _op = c.op.lock().await;
                if let Err(e) = self.start_locked(&c, true).await {
                    tracing::warn!(id = c.id(), error = %e, "boot-time restart failed");
                }
            }
        }
    }

    /// Stops every running container (daemon shutdown): user containers first, all at once; then
    /// system agents; then plugins one by one in reverse load order (plugins start first and
    /// stop last: docs/semantics.md).
    pub async fn shutdown(self: &Arc<Self>) {
        // Old plugin containers an upgrade left stopping in the background are stopped and
        // removed first: nothing is left for the next boot's sweep.
        if let Some(h) = self.plugins() {
            h.finish_retiring().await;
        }
        // Plugin containers, in load order: they stop last, one by one, in reverse.
        let plugin_order: Vec<String> = self
            .plugins()
            .map(|h| {
                h.snapshot()
                    .iter()
                    .filter_map(|p| p.record().container_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let running: Vec<Arc<Container>> = self
            .all()
            .into_iter()
            .filter(|c| c.state().status == Status::Running)
            .collect();
        let (plugins, others): (Vec<_>, Vec<_>) = running
            .into_iter()
            .partition(|c| plugin_order.iter().any(|id| id == c.id()));
        let (system, user): (Vec<_>, Vec<_>) =
            others.into_iter().partition(|c| c.config.spec.system);
        // User containers all at once (each has its own grace period), then system agents.
        for wave in [user, system] {
            futures::future::join_all(wave.iter().map(|c| self.stop_for_shutdown(c))).await;
        }
        for id in plugin_order.iter().rev() {
            if let Some(c) = plugins.iter().find(|c| c.id() == id) {
                self.stop_for_shutdown(c).await;
            }
        }
        // Whatever is still published (a container that would not die in time) goes now.
        self.unpublish_all_ports().await;
        // The engine's parent cgroups stay while it runs (one pair of mkdir/rmdir per
        // hierarchy per container otherwise); emptied by the stops above, they go now.
        let (runtime, root) = (self.runtime.clone(), self.root.clone());
        let _ = tokio::task::spawn_blocking(move || runtime.remove_cgroup_parent(&root)).await;
    }

    /// Stops `c` for a daemon shutdown, keeping its restart-policy intent (a daemon stop is not a
    /// user stop).
    pub(crate) async fn stop_for_shutdown(self: &Arc<Self>, c: &Arc<Container>) {
        let _op = c.op.lock().await;
        if c.state().status != Status::Running {
            return;
        }
        let manually = c.state().manually_stopped;
        let _ = self.stop_locked(c, Some(10), None).await;
        let _ = c.update(|st| st.manually_stopped = manually);
    }
}
