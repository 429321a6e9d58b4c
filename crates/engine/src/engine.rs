//! The engine: the container table and its lookups, and the stores it ties together (images,
//! volumes, networks, events). Each lifecycle operation lives in its own file (`create.rs`,
//! `start.rs`, `stop.rs`, `remove.rs`, `exit.rs`, `boot.rs`, `mounts.rs`, `connect.rs`,
//! `streams.rs`, `resources.rs`), each an `impl Engine` block. No HTTP here: the API layer calls
//! these methods and maps [`EngineError`] to statuses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_networks::NetworkStore;
use berth_volumes::VolumeStore;

use crate::error::EngineError;
use crate::events::EventBus;
use crate::handle::{Container, ContainerView, lock};
use crate::images::ImageStore;
use crate::logs::{self};
use crate::runtime::ContainerRuntime;

#[derive(Default)]
pub(crate) struct Table {
    pub(crate) by_id: HashMap<String, Arc<Container>>,
    pub(crate) names: HashMap<String, String>,
}

/// The engine.
pub struct Engine {
    pub(crate) root: PathBuf,
    pub(crate) containers_dir: PathBuf,
    pub(crate) table: Mutex<Table>,
    pub images: ImageStore,
    pub volumes: VolumeStore,
    pub networks: NetworkStore,
    pub events: EventBus,
    /// Containers that were running when the engine last stopped, for boot-time restarts.
    pub(crate) interrupted: Mutex<Vec<String>>,
    /// What the engine's own stores (containers, images) could not load at open.
    pub(crate) load_warnings: Vec<berth_state::records::LoadWarning>,
    /// Plugin containers loaded at open, for [`Engine::remove_orphan_plugin_containers`].
    pub(crate) boot_plugin_containers: Mutex<Vec<String>>,
    /// The plugin host, given at construction (absent in engine-only servers and tests).
    pub(crate) plugins: Option<Arc<berth_plugin_host::PluginHost>>,
    /// The container runtime: the namespace runtime, or a recording fake in tests.
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    /// `docker exec` instances (see [`crate::exec`]).
    pub(crate) execs: Arc<crate::exec::ExecTable>,
    /// Published ports of running containers (see [`crate::ports`]).
    pub(crate) ports: crate::ports::PortTable,
}

impl Engine {
    /// The plugin host, when the daemon runs one.
    pub fn plugins(&self) -> Option<&Arc<berth_plugin_host::PluginHost>> {
        self.plugins.as_ref()
    }

    /// The container runtime this engine was opened with.
    pub fn runtime(&self) -> &Arc<dyn ContainerRuntime> {
        &self.runtime
    }

    /// Everything the stores could not load at open (quarantined records, directories with data
    /// but no record), for `docker info` warnings: containers, images, volumes, networks and the
    /// plugin load order.
    pub fn load_warnings(&self) -> Vec<berth_state::records::LoadWarning> {
        let mut all = self.load_warnings.clone();
        all.extend(self.volumes.load_warnings().iter().cloned());
        all.extend(self.networks.load_warnings().iter().cloned());
        if let Some(host) = &self.plugins {
            all.extend(host.load_warnings().iter().cloned());
        }
        all
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds a container by full id, name (with or without `/`) or unique id prefix.
    pub fn container(&self, reference: &str) -> Result<Arc<Container>, EngineError> {
        let table = lock(&self.table);
        let name = reference.strip_prefix('/').unwrap_or(reference);
        if let Some(c) = table.by_id.get(reference) {
            return Ok(c.clone());
        }
        if let Some(c) = table.names.get(name).and_then(|id| table.by_id.get(id)) {
            return Ok(c.clone());
        }
        if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits = table
                .by_id
                .values()
                .filter(|c| c.id().starts_with(reference));
            match (hits.next(), hits.next()) {
                (Some(c), None) => return Ok(c.clone()),
                (Some(_), Some(_)) => {
                    return Err(EngineError::Invalid(format!(
                        "multiple containers found with provided prefix: {reference}"
                    )));
                }
                _ => {}
            }
        }
        Err(EngineError::NoSuchContainer(reference.to_owned()))
    }

    pub(crate) fn all(&self) -> Vec<Arc<Container>> {
        lock(&self.table).by_id.values().cloned().collect()
    }

    /// Snapshot of one container.
    pub fn view(&self, c: &Container) -> ContainerView {
        let state = c.state();
        let mut config = c.config.clone();
        config.name = c.name();
        // What `docker update` changed replaces the create-time settings (see `update.rs`).
        if let Some(u) = &state.updated {
            config.spec.resources = u.resources.clone();
            config.spec.restart_policy = u.restart_policy.clone();
        }
        ContainerView {
            config,
            state,
            log_path: logs::log_path(&c.dir, c.id()),
            network: self
                .networks
                .for_mode(&c.config.spec.network_mode)
                .map(|n| n.name)
                .unwrap_or_else(|_| c.config.spec.network_mode.clone()),
        }
    }

    /// Containers for `GET /containers/json`, newest first. System containers only with `system`.
    pub fn list(&self, all: bool, system: bool) -> Vec<ContainerView> {
        let mut views: Vec<_> = self
            .all()
            .iter()
            .filter(|c| c.config.spec.system == system)
            .map(|c| self.view(c))
            .filter(|v| all || v.state.status.is_active())
            .collect();
        views.sort_by_key(|v| std::cmp::Reverse(v.config.created));
        views
    }

    /// Container counts for `info`: (total, running, stopped), user containers only.
    pub fn counts(&self) -> (usize, usize, usize) {
        let views = self.list(true, false);
        let running = views.iter().filter(|v| v.state.status.is_active()).count();
        (views.len(), running, views.len() - running)
    }
}
