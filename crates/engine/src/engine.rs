//! The engine: the container table and every lifecycle operation (create, start, stop, kill,
//! restart, wait, attach, logs, remove), restart policies, boot-time reconciliation, and the
//! stores it ties together (images, volumes, networks, events). No HTTP here: the API layer calls
//! these methods and maps [`EngineError`] to statuses.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc, watch};

use berth_networks::{Attachment, NetworkStore};
use berth_volumes::{CreateVolume, VolumeStore};

use crate::container::{
    ContainerConfig, ContainerState, MountKind, MountSpec, ResolvedMount, RestartPolicy, Status,
    generated_name,
};
use crate::error::EngineError;
use crate::events::EventBus;
use crate::images::{Image, ImageStore};
use crate::logs::{self, LogEntry, LogOptions, OutputChunk, StreamKind};
use crate::runtime::{self, BindMount, NetMode, RunSpec, Spawned};

/// What a client asks for in `POST /containers/create` (already parsed from the wire).
#[derive(Debug, Clone, Default)]
pub struct CreateContainer {
    pub name: Option<String>,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub hostname: String,
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub labels: BTreeMap<String, String>,
    pub binds: Vec<String>,
    pub mounts: Vec<MountSpec>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub network_mode: String,
    /// `NetworkingConfig.EndpointsConfig.<net>.IPAMConfig.IPv4Address` (`--ip`); empty = none.
    pub ipv4_address: String,
    pub volume_driver: String,
    pub system: bool,
    /// `HostConfig` resource limits.
    pub resources: crate::resources::Resources,
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl FromStr for WaitCondition {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::Invalid(format!(
                "invalid condition {other:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// The lifecycle facts that waiters watch.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    pub status: Status,
    /// How many times the process exited so far.
    pub exits: u64,
    pub exit_code: i32,
    pub removed: bool,
}

/// A snapshot of a container for list and inspect.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub log_path: PathBuf,
    pub network: String,
}

/// An attached client's ends: live output and, if asked for, the container's stdin.
pub struct Attached {
    pub tty: bool,
    pub output: broadcast::Receiver<OutputChunk>,
    pub stdin: Option<mpsc::Sender<Bytes>>,
    container: Arc<Container>,
}

impl Attached {
    /// The client closed its stdin: close the container's when it was started with StdinOnce.
    pub fn stdin_closed(&mut self) {
        self.stdin = None;
        if self.container.config.stdin_once {
            self.container.stdin().tx = None;
        }
    }
}

struct StdinSlot {
    tx: Option<mpsc::Sender<Bytes>>,
    rx: Option<mpsc::Receiver<Bytes>>,
}

impl StdinSlot {
    fn fresh(open: bool) -> Self {
        if open {
            let (tx, rx) = mpsc::channel(64);
            StdinSlot {
                tx: Some(tx),
                rx: Some(rx),
            }
        } else {
            StdinSlot { tx: None, rx: None }
        }
    }
}

/// One container: its immutable config, mutable state and the channels of its current run.
pub struct Container {
    pub config: ContainerConfig,
    dir: PathBuf,
    state: Mutex<ContainerState>,
    observed: watch::Sender<Observed>,
    output: broadcast::Sender<OutputChunk>,
    log_seq: Arc<watch::Sender<u64>>,
    stdin: Mutex<StdinSlot>,
    pty: Mutex<Option<OwnedFd>>,
    /// Serialises lifecycle operations on this container (start, stop, remove, policy restarts).
    op: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Container {
    fn new(config: ContainerConfig, state: ContainerState, dir: PathBuf) -> Arc<Self> {
        let observed = Observed {
            status: state.status,
            exits: 0,
            exit_code: state.exit_code,
            removed: false,
        };
        let open_stdin = config.open_stdin;
        Arc::new(Container {
            config,
            dir,
            state: Mutex::new(state),
            observed: watch::channel(observed).0,
            output: broadcast::channel(1024).0,
            log_seq: Arc::new(watch::channel(0).0),
            stdin: Mutex::new(StdinSlot::fresh(open_stdin)),
            pty: Mutex::new(None),
            op: tokio::sync::Mutex::new(()),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn state(&self) -> ContainerState {
        lock(&self.state).clone()
    }

    fn stdin(&self) -> MutexGuard<'_, StdinSlot> {
        lock(&self.stdin)
    }

    /// Applies `f` to the state, persists it, and publishes the new status to waiters.
    fn update(&self, f: impl FnOnce(&mut ContainerState)) -> Result<ContainerState, EngineError> {
        let mut st = lock(&self.state);
        f(&mut st);
        let snapshot = st.clone();
        let persisted = berth_state::store_json(&self.dir.join("state.json"), &*st);
        drop(st);
        self.observed.send_modify(|o| {
            o.status = snapshot.status;
            o.exit_code = snapshot.exit_code;
        });
        persisted?;
        Ok(snapshot)
    }

    fn attributes(&self) -> BTreeMap<String, String> {
        let mut attrs = self.config.labels.clone();
        attrs.insert("image".into(), self.config.image.clone());
        attrs.insert("name".into(), self.config.name.clone());
        attrs
    }

    async fn wait_exit_after(&self, mut rx: watch::Receiver<Observed>, exits: u64) {
        loop {
            if rx.borrow_and_update().exits > exits || !rx.borrow().status.is_active() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Container>>,
    names: HashMap<String, String>,
}

/// The engine.
pub struct Engine {
    root: PathBuf,
    containers_dir: PathBuf,
    table: Mutex<Table>,
    pub images: ImageStore,
    pub volumes: VolumeStore,
    pub networks: NetworkStore,
    pub events: EventBus,
    /// Containers that were running when the engine last stopped, for boot-time restarts.
    interrupted: Mutex<Vec<String>>,
    /// The plugin host, set once by the daemon at start-up (absent in engine-only tests).
    plugins: std::sync::OnceLock<Arc<berth_plugin_host::PluginHost>>,
}

/// Parses a signal as Docker accepts it: `KILL`, `SIGKILL`, `9`.
pub fn parse_signal(s: &str) -> Result<Signal, EngineError> {
    let bad = || EngineError::Invalid(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

impl Engine {
    /// Opens the engine state under `root` and reconciles it: containers that were running when
    /// the previous engine died are marked exited (boot restarts them per policy later, see
    /// [`Engine::start_restart_policy_containers`]); half-created containers are removed.
    pub fn open(root: &Path) -> Result<Arc<Self>, EngineError> {
        let containers_dir = root.join("containers");
        std::fs::create_dir_all(&containers_dir).map_err(EngineError::io(format!(
            "creating {}",
            containers_dir.display()
        )))?;
        let engine = Engine {
            root: root.to_owned(),
            containers_dir: containers_dir.clone(),
            table: Mutex::new(Table::default()),
            images: ImageStore::open(root)?,
            volumes: VolumeStore::open(root)?,
            networks: NetworkStore::open(root)?,
            events: EventBus::new(),
            interrupted: Mutex::new(Vec::new()),
            plugins: std::sync::OnceLock::new(),
        };
        let entries =
            std::fs::read_dir(&containers_dir).map_err(EngineError::io("reading containers"))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(config) = berth_state::load_json::<ContainerConfig>(&dir.join("config.json"))?
            else {
                tracing::info!(dir = %dir.display(), "removing a container that was never fully created");
                berth_state::remove_dir_durable(&dir)?;
                continue;
            };
            let mut state = berth_state::load_json::<ContainerState>(&dir.join("state.json"))?
                .unwrap_or_default();
            if state.status.is_active() || state.status == Status::Removing {
                if state.status == Status::Running {
                    lock(&engine.interrupted).push(config.id.clone());
                }
                state.status = Status::Exited;
                state.pid = 0;
                state.exit_code = 137;
                state.error = "the engine stopped while the container was running".into();
                state.finished_at = Some(Utc::now());
                berth_state::store_json(&dir.join("state.json"), &state)?;
            }
            let mut table = lock(&engine.table);
            table.names.insert(config.name.clone(), config.id.clone());
            table
                .by_id
                .insert(config.id.clone(), Container::new(config, state, dir));
        }
        crate::cgroups::sweep_at_boot(root, &lock(&engine.table).by_id);
        Ok(Arc::new(engine))
    }

    /// Hands the engine its plugin host (once, at daemon start-up).
    pub fn set_plugins(&self, host: Arc<berth_plugin_host::PluginHost>) {
        self.networks.set_plugins(host.clone());
        let _ = self.plugins.set(host);
    }

    /// The plugin host, when the daemon runs one.
    pub fn plugins(&self) -> Option<&Arc<berth_plugin_host::PluginHost>> {
        self.plugins.get()
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

    fn all(&self) -> Vec<Arc<Container>> {
        lock(&self.table).by_id.values().cloned().collect()
    }

    /// Snapshot of one container.
    pub fn view(&self, c: &Container) -> ContainerView {
        ContainerView {
            config: c.config.clone(),
            state: c.state(),
            log_path: logs::log_path(&c.dir, c.id()),
            network: self
                .networks
                .for_mode(&c.config.network_mode)
                .map(|n| n.name)
                .unwrap_or_else(|_| c.config.network_mode.clone()),
        }
    }

    /// Containers for `GET /containers/json`, newest first. System containers only with `system`.
    pub fn list(&self, all: bool, system: bool) -> Vec<ContainerView> {
        let mut views: Vec<_> = self
            .all()
            .iter()
            .filter(|c| c.config.system == system)
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

    /// Ids of containers whose mounts name volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.all()
            .iter()
            .filter(|c| {
                c.config
                    .mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.source == name)
            })
            .map(|c| c.id().to_owned())
            .collect()
    }

    /// Ids of containers created from image `image_id`.
    pub fn image_users(&self, image_id: &str) -> Vec<String> {
        self.all()
            .iter()
            .filter(|c| c.config.image_id == image_id)
            .map(|c| c.id().to_owned())
            .collect()
    }

    /// Creates a container. Everything is validated before anything touches the disk; a failure
    /// leaves no record and no directory.
    pub async fn create(
        self: &Arc<Self>,
        req: CreateContainer,
    ) -> Result<(String, Vec<String>), EngineError> {
        let name = match &req.name {
            Some(n) if !n.is_empty() => {
                let n = n.strip_prefix('/').unwrap_or(n).to_owned();
                berth_state::validate_name("container", &n)?;
                Some(n)
            }
            _ => None,
        };
        let image = self.images.get(&req.image)?;
        let entrypoint = req.entrypoint.clone().filter(|e| !e.is_empty());
        let cmd = match (&req.cmd, &entrypoint) {
            (Some(c), _) if !c.is_empty() => Some(c.clone()),
            (_, Some(_)) => None,
            _ => image.config.cmd.clone(),
        };
        let entry = entrypoint
            .clone()
            .or_else(|| image.config.entrypoint.clone())
            .unwrap_or_default();
        let argv: Vec<String> = entry
            .into_iter()
            .chain(cmd.clone().unwrap_or_default())
            .collect();
        let Some((path, args)) = argv.split_first() else {
            return Err(EngineError::Invalid(
                "no command specified: give a command or use an image with a CMD".into(),
            ));
        };
        let mut env = image.config.env.clone();
        for kv in &req.env {
            let key = kv.split('=').next().unwrap_or_default();
            if key.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "invalid environment variable: {kv:?}"
                )));
            }
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        let mut mounts = Vec::new();
        for b in &req.binds {
            mounts.push(MountSpec::parse_bind(b, &req.volume_driver)?);
        }
        for m in &req.mounts {
            if !m.destination.starts_with('/') {
                return Err(EngineError::Invalid(format!(
                    "invalid mount config: the target {:?} must be an absolute path",
                    m.destination
                )));
            }
            match m.kind {
                MountKind::Bind if !Path::new(&m.source).exists() => {
                    return Err(EngineError::Invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                MountKind::Volume => berth_state::validate_name("volume", &m.source)?,
                MountKind::Bind => {}
            }
            mounts.push(m.clone());
        }
        for (i, m) in mounts.iter().enumerate() {
            if mounts[..i].iter().any(|o| o.destination == m.destination) {
                return Err(EngineError::Invalid(format!(
                    "duplicate mount point: {}",
                    m.destination
                )));
            }
        }
        if req.auto_remove && req.restart_policy != RestartPolicy::No {
            return Err(EngineError::Invalid(
                "conflicting options: cannot combine AutoRemove with a restart policy".into(),
            ));
        }
        self.networks
            .check_attach(&req.network_mode, &req.ipv4_address)?;
        req.resources.validate()?;

        let id = berth_state::new_id();
        // Reserve the name (or generate one) atomically.
        let name = {
            let mut table = lock(&self.table);
            let name = match name {
                Some(n) => {
                    if let Some(other) = table.names.get(&n) {
                        return Err(EngineError::Conflict(format!(
                            "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                        )));
                    }
                    n
                }
                None => (0..)
                    .map(|i| generated_name(&id, i))
                    .find(|n| !table.names.contains_key(n))
                    .unwrap_or_else(|| id[..12].to_owned()),
            };
            table.names.insert(name.clone(), id.clone());
            name
        };
        let result = self
            .create_record(
                &id, &name, &req, &image, path, args, cmd, entrypoint, env, mounts,
            )
            .await
            .and_then(|created| {
                self.networks
                    .register(&id, &name, &req.network_mode, &req.ipv4_address)?;
                Ok(created)
            });
        match result {
            Ok((c, warnings)) => {
                lock(&self.table).by_id.insert(id.clone(), c.clone());
                self.events
                    .publish("container", "create", &id, c.attributes());
                Ok((id, warnings))
            }
            Err(e) => {
                lock(&self.table).names.remove(&name);
                let _ = berth_state::remove_dir_durable(&self.containers_dir.join(&id));
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_record(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        req: &CreateContainer,
        image: &Image,
        path: &str,
        args: &[String],
        cmd: Option<Vec<String>>,
        entrypoint: Option<Vec<String>>,
        env: Vec<String>,
        mounts: Vec<MountSpec>,
    ) -> Result<(Arc<Container>, Vec<String>), EngineError> {
        let dir = self.containers_dir.join(id);
        let config = ContainerConfig {
            id: id.to_owned(),
            name: name.to_owned(),
            created: Utc::now(),
            image: req.image.clone(),
            image_id: image.id.clone(),
            path: path.to_owned(),
            args: args.to_vec(),
            cmd,
            entrypoint,
            env,
            working_dir: if req.working_dir.is_empty() {
                image.config.working_dir.clone()
            } else {
                req.working_dir.clone()
            },
            hostname: if req.hostname.is_empty() {
                id[..12].to_owned()
            } else {
                req.hostname.clone()
            },
            user: req.user.clone(),
            tty: req.tty,
            open_stdin: req.open_stdin,
            stdin_once: req.stdin_once,
            attach_stdin: req.attach_stdin,
            attach_stdout: req.attach_stdout,
            attach_stderr: req.attach_stderr,
            labels: req.labels.clone(),
            binds: req.binds.clone(),
            mounts,
            restart_policy: req.restart_policy.clone(),
            auto_remove: req.auto_remove,
            network_mode: if req.network_mode.is_empty() {
                "default".into()
            } else {
                req.network_mode.clone()
            },
            volume_driver: req.volume_driver.clone(),
            system: req.system,
            resources: req.resources,
        };
        std::fs::create_dir_all(&dir)
            .map_err(EngineError::io(format!("creating {}", dir.display())))?;
        let mut state = ContainerState::new();
        let mut warnings = Vec::new();
        state.mounts = self.resolve_mounts(&config, false, &mut warnings).await?;
        let stored = berth_state::store_json(&dir.join("state.json"), &state)
            // config.json last: its presence marks a complete record.
            .and_then(|()| berth_state::store_json(&dir.join("config.json"), &config));
        if let Err(e) = stored {
            self.release_mounts(&config, &state.mounts).await;
            return Err(e.into());
        }
        Ok((Container::new(config, state, dir), warnings))
    }

    /// The plugin host whose volume hooks see `config`'s bind mounts. System containers (the
    /// plugins themselves, `--system` agents) are not resolved through plugins: their binds are
    /// the engine's own (socket directories), and a plugin must be able to start while the
    /// others, or itself, are down.
    fn bind_hook_host(&self, config: &ContainerConfig) -> Option<&berth_plugin_host::PluginHost> {
        if config.system {
            None
        } else {
            self.plugins().map(|h| h.as_ref())
        }
    }

    /// Resolves every mount to the host path that gets mounted (DESIGN.md data flows 1–2): bind
    /// sources go through the volume plugins' `create`/`start` hooks (chained, in load order);
    /// named volumes are created on demand through their driver, and at start mounted through it
    /// (plugin drivers: `VolumeDriver.Mount`, counted per volume). Missing bind sources are
    /// created at start when `Binds` asked for them (Docker's `-v`). On failure everything done
    /// so far is given back (compensating `stop` hooks, `Unmount`s) before the error returns.
    async fn resolve_mounts(
        &self,
        config: &ContainerConfig,
        starting: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<ResolvedMount>, EngineError> {
        use berth_volumes::hooks;
        let host = self.bind_hook_host(config);
        let binds: Vec<hooks::BindMount> = config
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Bind)
            .map(|m| hooks::BindMount {
                source: m.source.clone(),
                host_path: m.source.clone(),
                destination: m.destination.clone(),
                read_only: m.read_only,
            })
            .collect();
        let event = if starting {
            berth_plugin_host::protocol::mvp::VolumeEvent::Start
        } else {
            berth_plugin_host::protocol::mvp::VolumeEvent::Create
        };
        let resolution = hooks::resolve_binds(host, &config.id, event, &binds).await?;
        warnings.extend(resolution.warnings);
        let mut resolved_binds = resolution.host_paths.into_iter();
        let mut out: Vec<ResolvedMount> = Vec::new();
        for m in &config.mounts {
            let step = match m.kind {
                MountKind::Bind => {
                    let host_path = resolved_binds.next().unwrap_or_else(|| m.source.clone());
                    let p = Path::new(&host_path);
                    if starting && !p.exists() && m.create_source && host_path == m.source {
                        std::fs::create_dir_all(p)
                            .map_err(EngineError::io(format!("creating bind source {host_path}")))
                            .map(|()| (host_path, None))
                    } else {
                        Ok((host_path, None))
                    }
                }
                MountKind::Volume => self.resolve_volume(config, m, starting).await,
            };
            match step {
                Ok((host_path, driver)) => out.push(ResolvedMount {
                    spec: m.clone(),
                    host_path,
                    driver,
                }),
                Err(e) => {
                    // Binds not reached yet were resolved by the hooks too: release them all.
                    let mut done = out.clone();
                    done.extend(
                        config.mounts[out.len()..]
                            .iter()
                            .filter(|x| x.kind == MountKind::Bind)
                            .map(|x| ResolvedMount {
                                spec: x.clone(),
                                host_path: x.source.clone(),
                                driver: None,
                            }),
                    );
                    self.release_mounts(config, &done).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// A named volume: created on demand through its driver; mounted through it at start.
    async fn resolve_volume(
        &self,
        config: &ContainerConfig,
        m: &MountSpec,
        starting: bool,
    ) -> Result<(String, Option<String>), EngineError> {
        let host = self.plugins().map(|h| h.as_ref());
        let (v, created) = self
            .volumes
            .create_with(
                host,
                CreateVolume {
                    name: Some(m.source.clone()),
                    driver: m.driver.clone(),
                    ..Default::default()
                },
            )
            .await?;
        if created {
            self.events.publish(
                "volume",
                "create",
                &v.name,
                BTreeMap::from([("driver".into(), v.driver.clone())]),
            );
        }
        let host_path = if starting {
            self.volumes.mount(host, &v.name, &config.id).await?
        } else {
            v.mountpoint.to_string_lossy().into_owned()
        };
        Ok((host_path, Some(v.driver)))
    }

    /// Gives back what [`Self::resolve_mounts`] took for `container_id`: plugin-driver volumes are
    /// unmounted (the last user sends `Unmount`) and bind plugins get the `stop` notification,
    /// all in reverse order. Failures are warnings (returned, and logged).
    async fn release_mounts(
        &self,
        config: &ContainerConfig,
        mounts: &[ResolvedMount],
    ) -> Vec<String> {
        let container_id = config.id.as_str();
        let host = self.plugins().map(|h| h.as_ref());
        let mut warnings = Vec::new();
        for m in mounts.iter().rev() {
            if m.spec.kind == MountKind::Volume
                && let Err(e) = self
                    .volumes
                    .unmount(host, &m.spec.source, container_id)
                    .await
            {
                warnings.push(e.to_string());
            }
        }
        warnings.extend(
            berth_volumes::hooks::notify_binds(
                self.bind_hook_host(config),
                container_id,
                berth_plugin_host::protocol::mvp::VolumeEvent::Stop,
                &bind_hook_mounts(mounts),
            )
            .await,
        );
        for w in &warnings {
            tracing::warn!(id = container_id, warning = %w, "releasing mounts");
        }
        warnings
    }

    /// Starts a container (`304`-class error when it already runs).
    pub async fn start(self: &Arc<Self>, reference: &str) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let result = self.start_locked(&c, false).await;
        if result.is_err() && c.config.auto_remove && c.state().status != Status::Running {
            // `docker run --rm` waits for `removed` even when start failed.
            if let Err(e) = self.remove_locked(&c, true).await {
                tracing::warn!(id = c.id(), error = %e, "auto-remove after a failed start");
            }
        }
        result
    }

    /// Boxed: start → exit → policy restart → start is a cycle of futures.
    fn start_locked<'a>(
        self: &'a Arc<Self>,
        c: &'a Arc<Container>,
        by_policy: bool,
    ) -> futures::future::BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.start_inner(c, by_policy))
    }

    async fn start_inner(
        self: &Arc<Self>,
        c: &Arc<Container>,
        by_policy: bool,
    ) -> Result<(), EngineError> {
        let status = c.state().status;
        match status {
            Status::Running => {
                return Err(EngineError::NotModified("container already started".into()));
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "container {} is being removed",
                    c.config.name
                )));
            }
            _ => {}
        }
        let prepared = self.prepare_run(c).await;
        let spec = match prepared {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                c.update(|st| {
                    st.error = msg;
                    st.exit_code = 127;
                })?;
                return Err(e);
            }
        };
        let resolved = spec.1;
        if let Err(e) = self.networks.attach(c.id(), &c.config.network_mode).await {
            self.release_mounts(&c.config, &resolved).await;
            let msg = format!("network setup: {e}");
            c.update(|st| {
                st.error = msg;
                st.exit_code = 127;
            })?;
            return Err(e.into());
        }
        let spawned = runtime::spawn(spec.0).await;
        let Spawned { pid1, io, exit } = match spawned {
            Ok(s) => s,
            Err(e) => {
                self.networks.detach(c.id()).await;
                // Not half-started: give the mounts back.
                self.release_mounts(&c.config, &resolved).await;
                let msg = e.to_string();
                c.update(|st| {
                    st.error = msg;
                    st.exit_code = 127;
                    if st.status != Status::Created {
                        st.status = Status::Exited;
                        st.finished_at = Some(Utc::now());
                    }
                })?;
                return Err(e.into());
            }
        };
        c.update(|st| {
            st.status = Status::Running;
            st.pid = pid1;
            st.exit_code = 0;
            st.error.clear();
            st.started_at = Some(Utc::now());
            st.mounts = resolved;
            if !by_policy {
                st.manually_stopped = false;
                st.restart_count = 0;
            }
        })?;
        *lock(&c.pty) = io.pty;
        if let Some(mut writer) = io.stdin {
            let rx = c.stdin().rx.take();
            if let Some(mut rx) = rx {
                tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if writer.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = writer.shutdown().await;
                });
            }
        }
        let (log_tx, log_rx) = mpsc::channel(256);
        let writer = tokio::spawn(logs::write_log(
            logs::log_path(&c.dir, c.id()),
            log_rx,
            c.log_seq.clone(),
        ));
        let mut pumps = vec![tokio::spawn(logs::pump(
            StreamKind::Stdout,
            io.stdout,
            log_tx.clone(),
            c.output.clone(),
        ))];
        if let Some(stderr) = io.stderr {
            pumps.push(tokio::spawn(logs::pump(
                StreamKind::Stderr,
                stderr,
                log_tx.clone(),
                c.output.clone(),
            )));
        }
        drop(log_tx);
        self.events
            .publish("container", "start", c.id(), c.attributes());
        let engine = self.clone();
        let container = c.clone();
        tokio::spawn(async move {
            let code = exit.await;
            for p in pumps {
                let _ = p.await;
            }
            let _ = writer.await;
            let _ = container.output.send(OutputChunk::Eof);
            engine.on_exit(&container, code).await;
        });
        Ok(())
    }

    async fn prepare_run(
        &self,
        c: &Container,
    ) -> Result<(RunSpec, Vec<ResolvedMount>), EngineError> {
        let image = self.images.get(&c.config.image_id)?;
        let resolved = self
            .resolve_mounts(&c.config, true, &mut Vec::new())
            .await?;
        let mode = match self.networks.for_mode(&c.config.network_mode) {
            Ok(m) => m,
            Err(e) => {
                self.release_mounts(&c.config, &resolved).await;
                return Err(e.into());
            }
        };
        let net = match mode.attachment {
            Attachment::Host => NetMode::Host,
            Attachment::Isolated => NetMode::Isolated,
            Attachment::Driver => NetMode::Join(self.networks.netns_path(c.id())),
        };
        let spec = RunSpec {
            id: c.id().to_owned(),
            bundle: c.dir.clone(),
            rootfs: self.images.rootfs(&image),
            mounts: resolved
                .iter()
                .map(|m| BindMount {
                    source: PathBuf::from(&m.host_path),
                    target: m.spec.destination.clone(),
                    readonly: m.spec.read_only,
                })
                .collect(),
            hostname: c.config.hostname.clone(),
            env: c.config.env.clone(),
            cwd: c.config.working_dir.clone(),
            argv: std::iter::once(c.config.path.clone())
                .chain(c.config.args.iter().cloned())
                .collect(),
            tty: c.config.tty,
            open_stdin: c.config.open_stdin,
            net,
            cgroup_procs: crate::cgroups::for_start(
                &self.root,
                c.id(),
                &c.config.resources,
                false,
            )?,
        };
        Ok((spec, resolved))
    }

    async fn on_exit(self: &Arc<Self>, c: &Arc<Container>, code: i32) {
        // The process is gone: unmount driver volumes and send `stop` to bind plugins before
        // the state says Exited, so a returning `stop` or `wait` sees them released.
        self.release_mounts(&c.config, &c.state().mounts).await;
        self.networks.detach(c.id()).await;
        *lock(&c.pty) = None;
        *c.stdin() = StdinSlot::fresh(c.config.open_stdin);
        let oom_killed = crate::cgroups::after_exit(&self.root, c.id()).await;
        let mut restart = false;
        let updated = c.update(|st| {
            st.status = Status::Exited;
            st.exit_code = code;
            st.oom_killed = oom_killed;
            st.pid = 0;
            st.finished_at = Some(Utc::now());
            restart =
                c.config
                    .restart_policy
                    .should_restart(code, st.restart_count, st.manually_stopped);
            if restart {
                st.status = Status::Restarting;
            }
        });
        if let Err(e) = updated {
            tracing::error!(id = c.id(), error = %e, "recording container exit");
        }
        c.observed.send_modify(|o| o.exits += 1);
        let mut attrs = c.attributes();
        attrs.insert("exitCode".into(), code.to_string());
        self.events.publish("container", "die", c.id(), attrs);
        if restart {
            let engine = self.clone();
            let container = c.clone();
            tokio::spawn(async move { engine.restart_by_policy(container).await });
        } else if c.config.auto_remove {
            let engine = self.clone();
            let container = c.clone();
            tokio::spawn(async move {
                let _op = container.op.lock().await;
                if let Err(e) = engine.remove_locked(&container, true).await {
                    tracing::warn!(id = container.id(), error = %e, "auto-remove");
                }
            });
        }
    }

    async fn restart_by_policy(self: Arc<Self>, c: Arc<Container>) {
        let count = c.state().restart_count;
        // Docker's back-off: 100 ms doubling, capped.
        let delay = Duration::from_millis(100u64.saturating_mul(1 << count.min(9)));
        tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
        let _op = c.op.lock().await;
        let st = c.state();
        if st.status != Status::Restarting || st.manually_stopped || c.observed.borrow().removed {
            return;
        }
        if let Err(e) = c.update(|st| st.restart_count += 1) {
            tracing::warn!(id = c.id(), error = %e, "recording restart");
        }
        if let Err(e) = self.start_locked(&c, true).await {
            tracing::warn!(id = c.id(), error = %e, "restart by policy failed");
            let _ = c.update(|st| {
                st.status = Status::Exited;
                st.finished_at = Some(Utc::now());
            });
        }
    }

    /// After the readiness gate opens: restart containers per policy (always; unless-stopped when
    /// not stopped by a user; on-failure when the engine's death interrupted them).
    pub async fn start_restart_policy_containers(self: &Arc<Self>) {
        let interrupted = std::mem::take(&mut *lock(&self.interrupted));
        let mut candidates: Vec<_> = self.all();
        // System containers first.
        candidates.sort_by_key(|c| !c.config.system);
        for c in candidates {
            let st = c.state();
            let wanted = match c.config.restart_policy {
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

    /// Stops a container: `signal` (default SIGTERM), then SIGKILL after `timeout` seconds
    /// (default 10; negative waits forever).
    pub async fn stop(
        self: &Arc<Self>,
        reference: &str,
        timeout: Option<i64>,
        signal: Option<Signal>,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, timeout, signal).await
    }

    async fn stop_locked(
        &self,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<Signal>,
    ) -> Result<(), EngineError> {
        let st = c.state();
        match st.status {
            Status::Restarting => {
                c.update(|st| {
                    st.manually_stopped = true;
                    st.status = Status::Exited;
                })?;
                return Ok(());
            }
            Status::Running => {}
            _ => return Err(EngineError::NotModified("container already stopped".into())),
        }
        c.update(|st| st.manually_stopped = true)?;
        let rx = c.observed.subscribe();
        let exits = rx.borrow().exits;
        let _ = runtime::signal(st.pid, signal.unwrap_or(Signal::SIGTERM));
        let grace = timeout.unwrap_or(10);
        let waited = if grace < 0 {
            c.wait_exit_after(rx.clone(), exits).await;
            true
        } else {
            tokio::time::timeout(
                Duration::from_secs(grace as u64),
                c.wait_exit_after(rx.clone(), exits),
            )
            .await
            .is_ok()
        };
        if !waited {
            let _ = runtime::signal(st.pid, Signal::SIGKILL);
            c.wait_exit_after(rx, exits).await;
        }
        self.events
            .publish("container", "stop", c.id(), c.attributes());
        Ok(())
    }

    /// Sends a signal (default SIGKILL) to a running container.
    pub async fn kill(
        self: &Arc<Self>,
        reference: &str,
        signal: Option<Signal>,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let st = c.state();
        if st.status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {reference}: container {} is not running",
                c.id()
            )));
        }
        let sig = signal.unwrap_or(Signal::SIGKILL);
        if sig == Signal::SIGKILL {
            c.update(|st| st.manually_stopped = true)?;
        }
        runtime::signal(st.pid, sig)?;
        let mut attrs = c.attributes();
        attrs.insert("signal".into(), (sig as i32).to_string());
        self.events.publish("container", "kill", c.id(), attrs);
        Ok(())
    }

    /// Stops (if running) and starts a container again.
    pub async fn restart(
        self: &Arc<Self>,
        reference: &str,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        match self.stop_locked(&c, timeout, None).await {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start_locked(&c, false).await?;
        self.events
            .publish("container", "restart", c.id(), c.attributes());
        Ok(())
    }

    /// Removes a container (`force` kills a running one first).
    pub async fn remove(self: &Arc<Self>, reference: &str, force: bool) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        self.remove_locked(&c, force).await
    }

    async fn remove_locked(&self, c: &Arc<Container>, force: bool) -> Result<(), EngineError> {
        if c.observed.borrow().removed {
            return Ok(());
        }
        let st = c.state();
        if st.status.is_active() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    c.config.name
                )));
            }
            c.update(|st| st.manually_stopped = true)?;
            if st.status == Status::Running {
                let rx = c.observed.subscribe();
                let exits = rx.borrow().exits;
                let _ = runtime::signal(st.pid, Signal::SIGKILL);
                c.wait_exit_after(rx, exits).await;
            }
        }
        let _ = c.update(|st| st.status = Status::Removing);
        self.networks.detach(c.id()).await;
        self.networks.unregister(c.id());
        {
            let mut table = lock(&self.table);
            table.by_id.remove(c.id());
            if table.names.get(&c.config.name).map(String::as_str) == Some(c.id()) {
                table.names.remove(&c.config.name);
            }
        }
        let (dir, root, id) = (c.dir.clone(), self.root.clone(), c.id().to_owned());
        tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
            runtime::cleanup(&dir)?;
            crate::cgroups::remove(&root, &id).map_err(EngineError::Cgroup)?;
            berth_state::remove_dir_durable(&dir)?;
            Ok(())
        })
        .await
        .map_err(|e| EngineError::Io {
            context: "removing the container's files".into(),
            source: std::io::Error::other(e),
        })??;
        c.observed.send_modify(|o| o.removed = true);
        self.events
            .publish("container", "destroy", c.id(), c.attributes());
        // After the fact: the `remove` volume notification (v2 subscribers, reverse order).
        let warnings = berth_volumes::hooks::notify_binds(
            self.bind_hook_host(&c.config),
            c.id(),
            berth_plugin_host::protocol::mvp::VolumeEvent::Remove,
            &bind_hook_mounts(&st.mounts),
        )
        .await;
        for w in warnings {
            tracing::warn!(id = c.id(), warning = %w, "volume remove notification");
        }
        Ok(())
    }

    /// `network connect`: connects a container (running or not) to a network, with `--ip`
    /// (`ip`, empty = none); a running container gets its interface at once.
    pub async fn connect(
        &self,
        network: &str,
        reference: &str,
        ip: &str,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let running = c.state().status == Status::Running;
        self.networks
            .connect(
                network,
                c.id(),
                &c.config.name,
                &c.config.network_mode,
                ip,
                running,
            )
            .await?;
        self.publish_network_event("connect", network, c.id());
        Ok(())
    }

    /// `network disconnect`: removes a container's interface (if running) and membership.
    pub async fn disconnect(&self, network: &str, reference: &str) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        self.networks
            .disconnect(network, c.id(), &c.config.name)
            .await?;
        self.publish_network_event("disconnect", network, c.id());
        Ok(())
    }

    fn publish_network_event(&self, action: &str, network: &str, container_id: &str) {
        if let Ok(n) = self.networks.get(network) {
            let attrs = BTreeMap::from([
                ("container".to_owned(), container_id.to_owned()),
                ("name".to_owned(), n.name),
                ("type".to_owned(), n.driver),
            ]);
            self.events.publish("network", action, &n.id, attrs);
        }
    }

    /// Resolves a wait: the future completes with the exit code once `condition` holds.
    pub fn wait(
        &self,
        reference: &str,
        condition: WaitCondition,
    ) -> Result<impl std::future::Future<Output = i32> + Send + 'static, EngineError> {
        let c = self.container(reference)?;
        let mut rx = c.observed.subscribe();
        let start = *rx.borrow();
        Ok(async move {
            let _keep = c;
            loop {
                let o = *rx.borrow_and_update();
                let done = match condition {
                    WaitCondition::NotRunning => !o.status.is_active(),
                    WaitCondition::NextExit => o.exits > start.exits || o.removed,
                    WaitCondition::Removed => o.removed,
                };
                if done {
                    return o.exit_code;
                }
                if rx.changed().await.is_err() {
                    return o.exit_code;
                }
            }
        })
    }

    /// Attaches to a container's output (and stdin if `stdin` and the container has one).
    pub fn attach(&self, reference: &str, stdin: bool) -> Result<Attached, EngineError> {
        let c = self.container(reference)?;
        let output = c.output.subscribe();
        let stdin = if stdin { c.stdin().tx.clone() } else { None };
        Ok(Attached {
            tty: c.config.tty,
            output,
            stdin,
            container: c,
        })
    }

    /// Resizes the container's pty (no-op without one).
    pub fn resize(&self, reference: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        if let Some(pty) = lock(&c.pty).as_ref() {
            runtime::resize(pty, rows, cols)?;
        }
        Ok(())
    }

    /// Streams a container's log entries per `opts` (following until the container stops when
    /// `opts.follow`). Returns whether the container has a tty, and the receiver of entries.
    pub fn logs(
        &self,
        reference: &str,
        opts: LogOptions,
    ) -> Result<(bool, mpsc::Receiver<LogEntry>), EngineError> {
        let c = self.container(reference)?;
        let (tx, rx) = mpsc::channel(256);
        let tty = c.config.tty;
        tokio::spawn(async move {
            let path = logs::log_path(&c.dir, c.id());
            let mut seq = c.log_seq.subscribe();
            let mut observed = c.observed.subscribe();
            let read = |offset: u64| {
                let path = path.clone();
                async move {
                    tokio::task::spawn_blocking(move || logs::read_entries(&path, offset))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                }
            };
            let mut active = observed.borrow_and_update().status.is_active();
            let Ok((entries, mut offset)) = read(0).await else {
                return;
            };
            let mut wanted: Vec<_> = entries.into_iter().filter(|e| opts.wants(e)).collect();
            if let Some(n) = opts.tail {
                let skip = wanted.len().saturating_sub(n);
                wanted.drain(..skip);
            }
            for e in wanted {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            if !opts.follow {
                return;
            }
            loop {
                if !active {
                    // One last read after the container stopped: its output is complete.
                    if let Ok((entries, _)) = read(offset).await {
                        for e in entries.into_iter().filter(|e| opts.wants(e)) {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                    }
                    return;
                }
                tokio::select! {
                    _ = seq.changed() => {}
                    r = observed.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
                seq.borrow_and_update();
                active = observed.borrow_and_update().status.is_active();
                let Ok((entries, next)) = read(offset).await else {
                    return;
                };
                offset = next;
                for e in entries.into_iter().filter(|e| opts.wants(e)) {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok((tty, rx))
    }

    /// Imports an image from a tar file (blocking work on a blocking thread).
    pub async fn import_image(
        self: &Arc<Self>,
        tar_path: PathBuf,
        repo: Option<String>,
        changes: Vec<String>,
    ) -> Result<Image, EngineError> {
        let engine = self.clone();
        let image = tokio::task::spawn_blocking(move || {
            engine.images.import(&tar_path, repo.as_deref(), &changes)
        })
        .await
        .map_err(|e| EngineError::Io {
            context: "importing image".into(),
            source: std::io::Error::other(e),
        })??;
        let tag = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        self.events.publish(
            "image",
            "import",
            &image.id,
            BTreeMap::from([("name".into(), tag)]),
        );
        Ok(image)
    }

    /// Removes an image (refused while containers use it).
    pub fn remove_image(&self, reference: &str) -> Result<Vec<(String, String)>, EngineError> {
        let image = self.images.get(reference)?;
        let users = self.image_users(&image.id);
        let out = self.images.remove(reference, &users)?;
        self.events.publish(
            "image",
            "delete",
            &image.id,
            BTreeMap::from([("name".into(), reference.to_owned())]),
        );
        Ok(out)
    }

    /// Creates a volume (idempotent) through its driver (`local` or a plugin, looked up by name
    /// then by Docker-style discovery) and publishes the event when it is new.
    pub async fn create_volume(
        &self,
        req: CreateVolume,
    ) -> Result<berth_volumes::Volume, EngineError> {
        let host = self.plugins().map(|h| h.as_ref());
        let (v, created) = self.volumes.create_with(host, req).await?;
        if created {
            self.events.publish(
                "volume",
                "create",
                &v.name,
                BTreeMap::from([("driver".into(), v.driver.clone())]),
            );
        }
        Ok(v)
    }

    /// Removes a volume unless a container uses it (a plugin driver gets `Remove`).
    pub async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let users = self.volume_users(name);
        let v = self.volumes.get(name)?;
        let host = self.plugins().map(|h| h.as_ref());
        self.volumes.remove_with(host, name, &users).await?;
        self.events.publish(
            "volume",
            "destroy",
            name,
            BTreeMap::from([("driver".into(), v.driver)]),
        );
        Ok(())
    }

    /// Removes unused volumes (only anonymous ones, named by a 64-hex id, unless `all`); returns
    /// their names.
    pub async fn prune_volumes(&self, all: bool) -> Vec<String> {
        let mut removed = Vec::new();
        for v in self.volumes.list() {
            let eligible = all || berth_state::is_full_id(&v.name);
            if eligible
                && self.volume_users(&v.name).is_empty()
                && self.remove_volume(&v.name).await.is_ok()
            {
                removed.push(v.name);
            }
        }
        removed
    }

    /// Stops every running container (daemon shutdown): user containers first, all at once; then
    /// system agents; then plugins one by one in reverse load order (DESIGN.md: plugins start
    /// first and stop last).
    pub async fn shutdown(self: &Arc<Self>) {
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
        let (system, user): (Vec<_>, Vec<_>) = others.into_iter().partition(|c| c.config.system);
        // User containers all at once (each has its own grace period), then system agents.
        for wave in [user, system] {
            futures::future::join_all(wave.iter().map(|c| self.stop_for_shutdown(c))).await;
        }
        for id in plugin_order.iter().rev() {
            if let Some(c) = plugins.iter().find(|c| c.id() == id) {
                self.stop_for_shutdown(c).await;
            }
        }
    }

    /// Stops `c` for a daemon shutdown, keeping its restart-policy intent (a daemon stop is not a
    /// user stop).
    async fn stop_for_shutdown(self: &Arc<Self>, c: &Arc<Container>) {
        let _op = c.op.lock().await;
        if c.state().status != Status::Running {
            return;
        }
        let manually = c.state().manually_stopped;
        let _ = self.stop_locked(c, Some(10), None).await;
        let _ = c.update(|st| st.manually_stopped = manually);
    }
}

/// The bind mounts of `mounts` as the volume hooks see them (resolved host paths).
fn bind_hook_mounts(mounts: &[ResolvedMount]) -> Vec<berth_volumes::hooks::BindMount> {
    mounts
        .iter()
        .filter(|m| m.spec.kind == MountKind::Bind)
        .map(|m| berth_volumes::hooks::BindMount {
            source: m.spec.source.clone(),
            host_path: m.host_path.clone(),
            destination: m.spec.destination.clone(),
            read_only: m.spec.read_only,
        })
        .collect()
}
