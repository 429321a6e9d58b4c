//! The plugin registry: plugins in load order, persisted as `<root>/plugins.json`; loading (from a
//! socket, by Docker-style discovery, or as a system container through a [`PluginLauncher`]),
//! unloading, upgrading (swap at the same position; calls in flight finish on the old plugin), and
//! re-loading everything at daemon boot while the [`Readiness`] tracker gates the API.
//!
//! Dispatch takes an immutable snapshot (`Arc<Vec<Arc<LoadedPlugin>>>`); mutations build a new
//! vector and swap it in under a write lock, so a dispatch never sees a half-done change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use berth_plugin_protocol::mvp::{HandshakeV2Request, Subscriptions};
use berth_plugin_protocol::{FailurePolicy, Protocol};
use berth_state::ErrorKind;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{CallErrorKind, PluginClient, PluginError};
use crate::discovery::{self, DiscoveryError};
use crate::handshake::{self, HandshakeError, Negotiated, PluginInfo};
use crate::launcher::{LaunchSpec, PluginLauncher};
use crate::limits::{CallFamily, Caps, Deadlines};
use crate::readiness::{Readiness, ReadyState};

/// File name of the registry under the root.
pub const PLUGINS_FILE: &str = "plugins.json";
/// Socket file name inside a plugin container's socket dir.
pub const PLUGIN_SOCKET: &str = "plugin.sock";

/// Errors of the plugin host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A plugin with this name is loaded.
    #[error("plugin \"{0}\" is already loaded")]
    Conflict(String),
    /// No such plugin.
    #[error("plugin \"{0}\" is not loaded")]
    NotFound(String),
    /// Negotiation failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The launcher failed.
    #[error("launching plugin image {image}: {reason}")]
    Launch {
        /// Image.
        image: String,
        /// Reason.
        reason: String,
    },
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Persisting failed.
    #[error(transparent)]
    State(#[from] berth_state::StateError),
    /// A bad plugin name.
    #[error(transparent)]
    Name(#[from] berth_state::NameError),
    /// The plugin told no name and none was given.
    #[error("plugin at {0} tells no name; give one")]
    NoName(String),
    /// No launcher is configured.
    #[error("no plugin launcher configured: cannot run plugin containers")]
    NoLauncher,
    /// Upgrade to a plugin with another name.
    #[error("upgrade of plugin \"{old}\": the new plugin calls itself \"{new}\"")]
    NameMismatch {
        /// Old name.
        old: String,
        /// New name.
        new: String,
    },
    /// A `--mount` that cannot be used.
    #[error("plugin mount {mount:?}: {reason}")]
    Mount {
        /// The mount as given.
        mount: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
}

impl HostError {
    /// The error class (for the API's one error→HTTP map).
    pub fn kind(&self) -> ErrorKind {
        match self {
            HostError::Conflict(_) => ErrorKind::Conflict,
            HostError::NotFound(_) | HostError::Discovery(DiscoveryError::NotFound { .. }) => {
                ErrorKind::NotFound
            }
            HostError::Name(_)
            | HostError::NoName(_)
            | HostError::NameMismatch { .. }
            | HostError::Mount { .. }
            | HostError::Discovery(_) => ErrorKind::InvalidArgument,
            HostError::Handshake(_) | HostError::Launch { .. } => ErrorKind::Unavailable,
            HostError::State(_) | HostError::Io { .. } | HostError::NoLauncher => {
                ErrorKind::Internal
            }
        }
    }
}

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PluginSource {
    /// A system container started from an image.
    Container {
        /// Image.
        image: String,
        /// Arguments.
        args: Vec<String>,
        /// Environment.
        env: Vec<String>,
        /// Host dir bound at `/var/run/docker/`.
        socket_dir: PathBuf,
    },
    /// A plugin already running on a socket (`plugin load --socket PATH`).
    Socket,
    /// Found by Docker-style discovery under this name.
    Discovered {
        /// The discovery name.
        name: String,
    },
}

/// Options given at load (kept, and applied again on reload and upgrade).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Name to register under (else the handshake's name).
    pub name: Option<String>,
    /// Per-call deadline (else the plugin's requested one, else the host default).
    pub deadline_ms: Option<u64>,
    /// Failure policy (else the plugin's requested one, else `abort`).
    pub failure_policy: Option<FailurePolicy>,
    /// Privileged (gets the engine API socket).
    pub privileged: bool,
    /// Handshake deadline (else the host default).
    pub load_deadline_ms: Option<u64>,
    /// Host paths bind-mounted into a container plugin, `SRC:DST[:ro|rw]` (Docker's managed
    /// plugins get theirs from `Settings.Mounts`): a volume plugin's storage, say.
    pub mounts: Vec<String>,
}

/// Checks one `SRC:DST[:ro|rw]` plugin mount: both paths absolute, the source present.
pub fn validate_mount(mount: &str) -> Result<(), HostError> {
    let bad = |why: &str| HostError::Mount {
        mount: mount.to_owned(),
        reason: why.to_owned(),
    };
    let parts: Vec<&str> = mount.split(':').collect();
    let (src, dst) = match parts.as_slice() {
        [src, dst] | [src, dst, "ro" | "rw"] => (*src, *dst),
        [_, _, mode] => return Err(bad(&format!("unknown mode {mode:?} (ro or rw)"))),
        _ => return Err(bad("expected SRC:DST[:ro|rw]")),
    };
    if !src.starts_with('/') || !dst.starts_with('/') {
        return Err(bad("both paths must be absolute"));
    }
    if !Path::new(src).exists() {
        return Err(bad("the source does not exist on the host"));
    }
    Ok(())
}

/// A plugin's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Loaded from disk, handshake not done yet.
    Pending,
    /// Shook hands; receives calls.
    Active,
    /// Handshake (or launch) failed; see `last_error`.
    Failed,
    /// Disabled by the operator (`docker plugin disable`): receives no calls until enabled.
    Disabled,
}

/// The persisted record of one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Registered name.
    pub name: String,
    /// Source.
    pub source: PluginSource,
    /// Socket path on the host.
    pub socket: PathBuf,
    /// Negotiated handshake family.
    pub protocol: Protocol,
    /// Handshake info.
    #[serde(default)]
    pub info: PluginInfo,
    /// Extension points (or `Implements` kinds).
    #[serde(default)]
    pub interests: Vec<String>,
    /// Effective subscriptions.
    #[serde(default)]
    pub subscriptions: Subscriptions,
    /// `Implements` (Activate family).
    #[serde(default)]
    pub implements: Vec<String>,
    /// Effective deadline of the default call family (the others: [`PluginStatus::deadlines`]).
    pub deadline_ms: u64,
    /// The deadline the plugin asked for (`--deadline` at load, else v2 `DeadlineMs`), before
    /// the engine's caps clamp it per call family; none = the caps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_deadline_ms: Option<u64>,
    /// Failure policy.
    pub failure_policy: FailurePolicy,
    /// Privileged.
    #[serde(default)]
    pub privileged: bool,
    /// Container id (container plugins).
    #[serde(default)]
    pub container_id: Option<String>,
    /// The options given at load.
    #[serde(default)]
    pub options: LoadOptions,
    /// Last error seen.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Disabled by the operator (`plugin disable`): kept across daemon restarts.
    #[serde(default)]
    pub disabled: bool,
}

/// Call statistics of one hook (`volume.create`, `VolumeDriver.Mount`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStats {
    /// Calls made.
    pub calls: u64,
    /// Calls failed.
    pub failures: u64,
    /// Sum of latencies, µs.
    pub total_latency_us: u64,
    /// Worst latency, µs.
    pub max_latency_us: u64,
}

/// The status view of a plugin (`plugin ls` / `plugin status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Position in the load order (0-based).
    pub position: usize,
    /// The record.
    pub record: PluginRecord,
    /// State.
    pub state: PluginState,
    /// Per-hook counters.
    pub hooks: BTreeMap<String, HookStats>,
    /// Effective per-call deadline per call family (the request clamped by the engine's caps).
    #[serde(default)]
    pub deadlines: Deadlines,
}

#[derive(Debug)]
struct Runtime {
    state: PluginState,
    last_error: Option<String>,
    hooks: BTreeMap<String, HookStats>,
}

/// A registered plugin: its record, its client and its runtime counters.
#[derive(Debug)]
pub struct LoadedPlugin {
    record: PluginRecord,
    client: PluginClient,
    caps: Caps,
    deadlines: Deadlines,
    runtime: Mutex<Runtime>,
    inflight: AtomicUsize,
}

struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LoadedPlugin {
    fn new(record: PluginRecord, state: PluginState, caps: Caps) -> Self {
        let client = PluginClient::new(record.name.clone(), record.socket.clone());
        let last_error = record.last_error.clone();
        let requested = record
            .requested_deadline_ms
            .or(record.options.deadline_ms)
            .map(Duration::from_millis);
        let deadlines = caps.clamp(requested);
        Self {
            record,
            client,
            caps,
            deadlines,
            runtime: Mutex::new(Runtime {
                state,
                last_error,
                hooks: BTreeMap::new(),
            }),
            inflight: AtomicUsize::new(0),
        }
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The record (last error as of load; see [`Self::last_error`]).
    pub fn record(&self) -> &PluginRecord {
        &self.record
    }

    /// Negotiated protocol.
    pub fn protocol(&self) -> Protocol {
        self.record.protocol
    }

    /// Effective subscriptions.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.record.subscriptions
    }

    /// Effective deadline of the default call family.
    pub fn deadline(&self) -> Duration {
        self.deadlines.of(CallFamily::Default)
    }

    /// Effective deadline per call family.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// The deadline of the call `hook` (its family's effective deadline).
    pub fn deadline_for(&self, hook: &str) -> Duration {
        self.deadlines.of(CallFamily::of(hook))
    }

    /// Failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.record.failure_policy
    }

    /// Whether the `/Plugin.Activate` answer listed `kind`.
    pub fn implements(&self, kind: &str) -> bool {
        self.record.implements.iter().any(|k| k == kind)
    }

    /// The underlying client.
    pub fn client(&self) -> &PluginClient {
        &self.client
    }

    /// State.
    pub fn state(&self) -> PluginState {
        self.runtime
            .lock()
            .map(|r| r.state)
            .unwrap_or(PluginState::Failed)
    }

    /// Last error.
    pub fn last_error(&self) -> Option<String> {
        self.runtime.lock().ok().and_then(|r| r.last_error.clone())
    }

    /// Records an error as the plugin's last error.
    pub fn set_last_error(&self, e: &str) {
        if let Ok(mut r) = self.runtime.lock() {
            r.last_error = Some(e.to_owned());
        }
    }

    fn set_state(&self, s: PluginState) {
        if let Ok(mut r) = self.runtime.lock() {
            r.state = s;
        }
    }

    /// Per-hook counters.
    pub fn hook_stats(&self) -> BTreeMap<String, HookStats> {
        self.runtime
            .lock()
            .map(|r| r.hooks.clone())
            .unwrap_or_default()
    }

    /// Calls `path` with `req` for `hook` (the counter's key) under the plugin's deadline; records
    /// counters, latency and the last error. A plugin that is not active fails at once.
    pub async fn call<Req, Resp>(
        &self,
        hook: &str,
        path: &str,
        req: &Req,
    ) -> Result<Resp, PluginError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let (deadline, max_reply) = (self.deadline_for(hook), self.caps.max_reply(hook));
        self.instrumented(
            hook,
            path,
            self.client.call_bounded(path, req, deadline, max_reply),
        )
        .await
    }

    /// Like [`Self::call`] with the request already encoded (see [`crate::encode_json`]).
    pub async fn call_encoded<Resp: DeserializeOwned>(
        &self,
        hook: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Resp, PluginError> {
        let (deadline, max_reply) = (self.deadline_for(hook), self.caps.max_reply(hook));
        self.instrumented(hook, path, async {
            let reply = self
                .client
                .post_bounded(path, body, deadline, max_reply)
                .await?;
            self.client.interpret(path, reply)
        })
        .await
    }

    /// Like [`Self::call`] with an empty body.
    pub async fn call_empty<Resp: DeserializeOwned>(
        &self,
        hook: &str,
        path: &str,
    ) -> Result<Resp, PluginError> {
        let (deadline, max_reply) = (self.deadline_for(hook), self.caps.max_reply(hook));
        self.instrumented(hook, path, async {
            let reply = self
                .client
                .post_bounded(path, Bytes::new(), deadline, max_reply)
                .await?;
            self.client.interpret(path, reply)
        })
        .await
    }

    async fn instrumented<Resp>(
        &self,
        hook: &str,
        path: &str,
        fut: impl Future<Output = Result<Resp, PluginError>>,
    ) -> Result<Resp, PluginError> {
        let state = self.state();
        if state != PluginState::Active {
            let why = match state {
                PluginState::Disabled => "disabled by the operator".to_owned(),
                _ => self
                    .last_error()
                    .unwrap_or_else(|| format!("{state:?}").to_lowercase()),
            };
            return Err(PluginError {
                plugin: self.record.name.clone(),
                call: format!("POST {path}"),
                kind: CallErrorKind::NotUp {
                    socket: self.record.socket.display().to_string(),
                    reason: format!("plugin not active: {why}"),
                },
            });
        }
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let _g = InflightGuard(&self.inflight);
        let start = Instant::now();
        let res = fut.await;
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        // 404 = "not interested": not a failure.
        let failure = match &res {
            Err(e) if !e.is_not_found() => Some(e.to_string()),
            _ => None,
        };
        if let Ok(mut r) = self.runtime.lock() {
            let record = |s: &mut HookStats| {
                s.calls += 1;
                s.total_latency_us = s.total_latency_us.saturating_add(us);
                s.max_latency_us = s.max_latency_us.max(us);
                s.failures += u64::from(failure.is_some());
            };
            // The key is allocated once per hook, not per call.
            match r.hooks.get_mut(hook) {
                Some(s) => record(s),
                None => {
                    let mut s = HookStats::default();
                    record(&mut s);
                    r.hooks.insert(hook.to_owned(), s);
                }
            }
            if failure.is_some() {
                r.last_error = failure;
            }
        }
        res
    }

    /// Calls currently running on this plugin.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    fn current_record(&self) -> PluginRecord {
        let mut r = self.record.clone();
        r.last_error = self.last_error();
        r.disabled = self.operator_disabled();
        r
    }

    /// Whether the operator disabled this plugin: the state says so once the plugin is up; while
    /// it is pending or failed, the persisted record does.
    fn operator_disabled(&self) -> bool {
        match self.state() {
            PluginState::Disabled => true,
            PluginState::Active => false,
            PluginState::Pending | PluginState::Failed => self.record.disabled,
        }
    }

    /// The state a replacement of this plugin (upgrade, boot) starts in once it shook hands: the
    /// operator's `disable` outlives both.
    fn carried_state(&self) -> PluginState {
        if self.operator_disabled() {
            PluginState::Disabled
        } else {
            PluginState::Active
        }
    }
}

/// Host configuration.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// State root (`plugins.json`, plugin socket dirs under `plugins/`).
    pub root: PathBuf,
    /// Discovery directories (Docker's by default).
    pub discovery_dirs: Vec<PathBuf>,
    /// Deadline caps per call family (a plugin that asks for no deadline gets the cap) and reply
    /// size limits.
    pub caps: Caps,
    /// Default handshake (load) deadline.
    pub load_deadline: Duration,
    /// How long an upgrade or unload waits for calls in flight on the old plugin.
    pub drain_grace: Duration,
    /// Engine version sent in the v2 handshake.
    pub engine_version: String,
}

impl HostConfig {
    /// Defaults under `root`: [`Caps::default`] (10 s api, 2 min volume, 30 s other calls), 60 s
    /// load, 30 s drain, Docker's discovery dirs.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            discovery_dirs: discovery::default_dirs(),
            caps: Caps::default(),
            load_deadline: Duration::from_secs(60),
            drain_grace: Duration::from_secs(30),
            engine_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// A snapshot of the load order.
pub type Snapshot = Arc<Vec<Arc<LoadedPlugin>>>;

/// What an upgrade switches to.
#[derive(Debug, Clone)]
pub enum UpgradeTo {
    /// A new container from this image.
    Container {
        /// Image.
        image: String,
        /// Arguments.
        args: Vec<String>,
        /// Environment.
        env: Vec<String>,
    },
    /// A plugin already running on this socket.
    Socket(PathBuf),
}

/// The plugin host.
pub struct PluginHost {
    config: HostConfig,
    plugins: RwLock<Snapshot>,
    ops: tokio::sync::Mutex<()>,
    readiness: Arc<Readiness>,
    launcher: Option<Arc<dyn PluginLauncher>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("root", &self.config.root)
            .field("plugins", &self.names())
            .finish()
    }
}

impl PluginHost {
    /// Opens the registry under `config.root`: records from `plugins.json` are registered in order
    /// as pending (call [`Self::start_all`] to bring them up).
    pub fn open(
        config: HostConfig,
        launcher: Option<Arc<dyn PluginLauncher>>,
    ) -> Result<Self, HostError> {
        let records: Vec<PluginRecord> =
            berth_state::load_json(&config.root.join(PLUGINS_FILE))?.unwrap_or_default();
        let readiness = Arc::new(Readiness::new());
        let plugins: Vec<Arc<LoadedPlugin>> = records
            .into_iter()
            .map(|r| {
                readiness.set(&r.name, ReadyState::Pending);
                Arc::new(LoadedPlugin::new(r, PluginState::Pending, config.caps))
            })
            .collect();
        Ok(Self {
            config,
            plugins: RwLock::new(Arc::new(plugins)),
            ops: tokio::sync::Mutex::new(()),
            readiness,
            launcher,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The readiness tracker.
    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    /// The load order now.
    pub fn snapshot(&self) -> Snapshot {
        match self.plugins.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Active plugins matching `pred`, in load order.
    pub fn subscribers(&self, pred: impl Fn(&LoadedPlugin) -> bool) -> Vec<Arc<LoadedPlugin>> {
        self.snapshot()
            .iter()
            .filter(|p| p.state() == PluginState::Active && pred(p))
            .cloned()
            .collect()
    }

    /// Names in load order.
    pub fn names(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// Enables or disables a plugin (Docker's `plugin enable|disable`): a disabled plugin keeps
    /// its place in the load order and its container but receives no calls. Persisted: the
    /// plugin comes back disabled after a daemon restart or an upgrade. Returns false when nothing
    /// changed.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<bool, HostError> {
        let p = self
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        let now = p.state();
        let next = match (enabled, now) {
            (true, PluginState::Disabled) => PluginState::Active,
            (false, PluginState::Disabled) | (true, _) => return Ok(false),
            (false, _) => PluginState::Disabled,
        };
        p.set_state(next);
        self.persist()?;
        Ok(true)
    }

    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.snapshot().iter().find(|p| p.name() == name).cloned()
    }

    /// Status of every plugin, in load order.
    pub fn list(&self) -> Vec<PluginStatus> {
        self.snapshot()
            .iter()
            .enumerate()
            .map(|(position, p)| PluginStatus {
                position,
                record: p.current_record(),
                state: p.state(),
                hooks: p.hook_stats(),
                deadlines: p.deadlines(),
            })
            .collect()
    }

    fn swap(&self, f: impl FnOnce(&mut Vec<Arc<LoadedPlugin>>)) -> Snapshot {
        let mut guard = match self.plugins.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next: Vec<Arc<LoadedPlugin>> = guard.as_ref().clone();
        f(&mut next);
        *guard = Arc::new(next);
        guard.clone()
    }

    /// Writes `plugins.json` with the current order.
    pub fn persist(&self) -> Result<(), HostError> {
        let records: Vec<PluginRecord> =
            self.snapshot().iter().map(|p| p.current_record()).collect();
        berth_state::store_json(&self.config.root.join(PLUGINS_FILE), &records)?;
        Ok(())
    }

    fn offer(&self) -> HandshakeV2Request {
        HandshakeV2Request::berth(
            &self.config.engine_version,
            self.config.caps.default.as_millis() as u64,
        )
    }

    fn load_deadline(&self, opts: &LoadOptions) -> Duration {
        opts.load_deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(self.config.load_deadline)
    }

    fn build_record(
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
        })
    }

    async fn register(&self, record: PluginRecord) -> Result<Arc<LoadedPlugin>, HostError> {
        let _ops = self.ops.lock().await;
        if self.get(&record.name).is_some() {
            return Err(HostError::Conflict(record.name));
        }
        let plugin = Arc::new(LoadedPlugin::new(
            record,
            PluginState::Active,
            self.config.caps,
        ));
        self.swap(|v| v.push(plugin.clone()));
        if let Err(e) = self.persist() {
            let name = plugin.name().to_owned();
            self.swap(|v| v.retain(|p| p.name() != name));
            return Err(e);
        }
        self.readiness.set(plugin.name(), ReadyState::Ready);
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

    fn launcher(&self) -> Result<Arc<dyn PluginLauncher>, HostError> {
        self.launcher.clone().ok_or(HostError::NoLauncher)
    }

    fn new_socket_dir(&self) -> Result<PathBuf, HostError> {
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
    /// persist. On any failure the container is stopped and nothing is registered.
    pub async fn load_container(
        &self,
        image: &str,
        args: Vec<String>,
        env: Vec<String>,
        opts: LoadOptions,
    ) -> Result<Arc<LoadedPlugin>, HostError> {
        let (record, container_id) = self.launch_and_negotiate(image, args, env, &opts).await?;
        match self.register(record).await {
            Ok(p) => Ok(p),
            Err(e) => {
                self.stop_quietly(&container_id).await;
                Err(e)
            }
        }
    }

    async fn launch_and_negotiate(
        &self,
        image: &str,
        args: Vec<String>,
        env: Vec<String>,
        opts: &LoadOptions,
    ) -> Result<(PluginRecord, String), HostError> {
        for m in &opts.mounts {
            validate_mount(m)?;
        }
        let launcher = self.launcher()?;
        let socket_dir = self.new_socket_dir()?;
        let spec = LaunchSpec {
            name: opts.name.clone(),
            image: image.to_owned(),
            args: args.clone(),
            env: env.clone(),
            mounts: opts.mounts.clone(),
            privileged: opts.privileged,
            socket_dir: socket_dir.clone(),
        };
        let launched = match launcher.launch(spec).await {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&socket_dir);
                return Err(HostError::Launch {
                    image: image.to_owned(),
                    reason: e.0,
                });
            }
        };
        let socket = socket_dir.join(PLUGIN_SOCKET);
        let client = PluginClient::new(
            opts.name.clone().unwrap_or_else(|| image.to_owned()),
            socket.clone(),
        );
        let source = PluginSource::Container {
            image: image.to_owned(),
            args,
            env,
            socket_dir: socket_dir.clone(),
        };
        let result =
            match handshake::negotiate(&client, &self.offer(), self.load_deadline(opts)).await {
                Ok(n) => self.build_record(
                    n,
                    None,
                    source,
                    socket,
                    Some(launched.container_id.clone()),
                    opts,
                ),
                Err(e) => Err(e.into()),
            };
        match result {
            Ok(r) => Ok((r, launched.container_id)),
            Err(e) => {
                self.stop_quietly(&launched.container_id).await;
                let _ = std::fs::remove_dir_all(&socket_dir);
                Err(e)
            }
        }
    }

    async fn stop_quietly(&self, container_id: &str) {
        if let Some(l) = &self.launcher
            && let Err(e) = l.stop(container_id).await
        {
            tracing::warn!("stopping plugin container {container_id}: {e}");
        }
    }

    /// Waits (up to the drain grace) until nobody holds `old` any more — every dispatch snapshot
    /// that contained it is finished — then stops its container.
    async fn retire(&self, old: Arc<LoadedPlugin>) {
        let until = Instant::now() + self.config.drain_grace;
        while Arc::strong_count(&old) > 1 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        old.client.close_idle();
        if let (Some(id), PluginSource::Container { socket_dir, .. }) =
            (&old.record.container_id, &old.record.source)
        {
            self.stop_quietly(id).await;
            let _ = std::fs::remove_dir_all(socket_dir);
        }
    }

    /// Removes `name` from the order, persists, then (after calls in flight finish) stops its
    /// container.
    pub async fn unload(&self, name: &str) -> Result<PluginRecord, HostError> {
        let old = {
            let _ops = self.ops.lock().await;
            let old = self
                .get(name)
                .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
            self.swap(|v| v.retain(|p| p.name() != name));
            self.persist()?;
            self.readiness.remove(name);
            old
        };
        let record = old.current_record();
        self.retire(old).await;
        Ok(record)
    }

    /// Upgrades `name`: starts the new plugin, hand-shakes it, swaps it in at the same position,
    /// persists, then retires the old one once its calls in flight finished. If the new plugin
    /// fails, the old one stays.
    pub async fn upgrade(&self, name: &str, to: UpgradeTo) -> Result<Arc<LoadedPlugin>, HostError> {
        let old = self
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        let mut opts = old.record.options.clone();
        opts.name = Some(name.to_owned());
        let (record, new_container) = match to {
            UpgradeTo::Container { image, args, env } => {
                let (r, id) = self.launch_and_negotiate(&image, args, env, &opts).await?;
                (r, Some(id))
            }
            UpgradeTo::Socket(socket) => {
                let client = PluginClient::new(name.to_owned(), socket.clone());
                let n =
                    handshake::negotiate(&client, &self.offer(), self.load_deadline(&opts)).await?;
                if !n.name.is_empty() && n.name != name && old.record.options.name.is_none() {
                    return Err(HostError::NameMismatch {
                        old: name.to_owned(),
                        new: n.name,
                    });
                }
                (
                    self.build_record(n, Some(name), PluginSource::Socket, socket, None, &opts)?,
                    None,
                )
            }
        };
        let state = old.carried_state();
        let record = PluginRecord {
            disabled: state == PluginState::Disabled,
            ..record
        };
        let new = Arc::new(LoadedPlugin::new(record, state, self.config.caps));
        let swapped = {
            let _ops = self.ops.lock().await;
            let mut found = false;
            self.swap(|v| {
                if let Some(slot) = v.iter_mut().find(|p| p.name() == name) {
                    *slot = new.clone();
                    found = true;
                }
            });
            if found {
                self.persist().map(|_| true)
            } else {
                Ok(false)
            }
        };
        match swapped {
            Ok(true) => {
                self.readiness.set(name, ReadyState::Ready);
                self.retire(old).await;
                Ok(new)
            }
            Ok(false) | Err(_) => {
                if let Some(id) = new_container {
                    self.stop_quietly(&id).await;
                }
                match swapped {
                    Err(e) => Err(e),
                    _ => Err(HostError::NotFound(name.to_owned())),
                }
            }
        }
    }

    /// Brings every persisted plugin up (daemon boot), all at once: container plugins are
    /// restarted (or launched afresh), then hand-shaken; each ends `Active` (and ready) or `Failed`
    /// with its reason. Returns the failures. The order is kept.
    pub async fn start_all(&self) -> Vec<(String, String)> {
        let plugins = self.snapshot();
        let results =
            futures::future::join_all(plugins.iter().map(|p| self.boot_one(p.clone()))).await;
        let mut failures = Vec::new();
        {
            let _ops = self.ops.lock().await;
            for (old, res) in plugins.iter().zip(results) {
                match res {
                    Ok(mut record) => {
                        let state = old.carried_state();
                        record.disabled = state == PluginState::Disabled;
                        let new = Arc::new(LoadedPlugin::new(record, state, self.config.caps));
                        self.swap(|v| {
                            if let Some(slot) = v.iter_mut().find(|p| Arc::ptr_eq(p, old)) {
                                *slot = new.clone();
                            }
                        });
                        self.readiness.set(old.name(), ReadyState::Ready);
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        old.set_last_error(&reason);
                        old.set_state(PluginState::Failed);
                        self.readiness
                            .set(old.name(), ReadyState::Failed(reason.clone()));
                        failures.push((old.name().to_owned(), reason));
                    }
                }
            }
            if let Err(e) = self.persist() {
                tracing::warn!("persisting plugins after boot: {e}");
            }
        }
        failures
    }

    async fn boot_one(&self, p: Arc<LoadedPlugin>) -> Result<PluginRecord, HostError> {
        let rec = p.record.clone();
        let mut opts = rec.options.clone();
        opts.name = Some(rec.name.clone());
        match &rec.source {
            PluginSource::Container {
                image,
                args,
                env,
                socket_dir,
            } => {
                let launcher = self.launcher()?;
                let restarted = match &rec.container_id {
                    Some(id) => launcher.restart(id).await.is_ok(),
                    None => false,
                };
                let container_id = if restarted {
                    rec.container_id.clone()
                } else {
                    let spec = LaunchSpec {
                        name: Some(rec.name.clone()),
                        image: image.clone(),
                        args: args.clone(),
                        env: env.clone(),
                        mounts: rec.options.mounts.clone(),
                        privileged: rec.privileged,
                        socket_dir: socket_dir.clone(),
                    };
                    std::fs::create_dir_all(socket_dir).map_err(|source| HostError::Io {
                        path: socket_dir.clone(),
                        source,
                    })?;
                    let l = launcher.launch(spec).await.map_err(|e| HostError::Launch {
                        image: image.clone(),
                        reason: e.0,
                    })?;
                    Some(l.container_id)
                };
                let n =
                    handshake::negotiate(&p.client, &self.offer(), self.load_deadline(&opts)).await;
                match n {
                    Ok(n) => self.build_record(
                        n,
                        None,
                        rec.source.clone(),
                        rec.socket.clone(),
                        container_id,
                        &opts,
                    ),
                    Err(e) => {
                        if let Some(id) = &container_id {
                            self.stop_quietly(id).await;
                        }
                        Err(e.into())
                    }
                }
            }
            PluginSource::Socket | PluginSource::Discovered { .. } => {
                let socket = match &rec.source {
                    PluginSource::Discovered { name } => {
                        discovery::discover(name, &self.config.discovery_dirs)
                            .unwrap_or_else(|_| rec.socket.clone())
                    }
                    _ => rec.socket.clone(),
                };
                let client = PluginClient::new(rec.name.clone(), socket.clone());
                let n =
                    handshake::negotiate(&client, &self.offer(), self.load_deadline(&opts)).await?;
                self.build_record(n, Some(&rec.name), rec.source.clone(), socket, None, &opts)
            }
        }
    }

    /// Stops every container plugin, in reverse load order (daemon shutdown). The registry is kept.
    pub async fn shutdown(&self) {
        for p in self.snapshot().iter().rev() {
            p.client.close_idle();
            if let Some(id) = &p.record.container_id {
                self.stop_quietly(id).await;
            }
        }
    }
}
