//! The plugin registry: plugins in load order, persisted as `<root>/plugins.json`. The operations
//! on it live beside it: [`crate::load`] (socket, discovery, container through a
//! [`PluginLauncher`]), [`crate::upgrade`] (swap at the same position, unload), [`crate::boot`]
//! (re-load everything at daemon boot while the [`Readiness`] tracker gates the API). Hook calls do
//! not pass through here: [`crate::dispatch`] and [`crate::hooks`] work on a [`Snapshot`].
//!
//! Dispatch takes an immutable snapshot (`Arc<Vec<Arc<LoadedPlugin>>>`); mutations build a new
//! vector and swap it in under a write lock, so a dispatch never sees a half-done change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_plugin_protocol::mvp::HandshakeV2Request;
use berth_state::LoadWarning;

use crate::crash_loop::CrashLoopLimit;
use crate::discovery;
use crate::error::HostError;
use crate::launcher::PluginLauncher;
use crate::limits::Caps;
use crate::plugin::LoadedPlugin;
use crate::readiness::{Readiness, ReadyState};
use crate::record::{LoadOptions, PluginRecord, PluginState, PluginStatus};

/// File name of the registry under the root.
pub const PLUGINS_FILE: &str = "plugins.json";
/// Socket file name inside a plugin container's socket dir.
pub const PLUGIN_SOCKET: &str = "plugin.sock";

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
    /// Plugins pinned by the daemon's flags, with the reason (the `--authorization-plugin`s): they
    /// cannot be disabled, unloaded or upgraded (a lock-out that would survive restarts).
    pub locked: BTreeMap<String, String>,
    /// Engine version sent in the v2 handshake.
    pub engine_version: String,
    /// When a crash-looping container plugin is given up on (becomes Failed).
    pub crash_loop: CrashLoopLimit,
}

impl HostConfig {
    /// Defaults under `root`: [`Caps::default`] (10 s api, 2 min volume, 30 s other calls), 60 s
    /// load, 30 s drain, Docker's discovery dirs, a plugin given up on after 5 restarts within 60 s.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            discovery_dirs: discovery::default_dirs(),
            caps: Caps::default(),
            load_deadline: Duration::from_secs(60),
            drain_grace: Duration::from_secs(30),
            locked: BTreeMap::new(),
            engine_version: env!("CARGO_PKG_VERSION").to_owned(),
            crash_loop: CrashLoopLimit::default(),
        }
    }
}

/// A snapshot of the load order.
pub type Snapshot = Arc<Vec<Arc<LoadedPlugin>>>;

/// The plugin host.
pub struct PluginHost {
    pub(crate) config: HostConfig,
    plugins: RwLock<Snapshot>,
    /// Serialises the operations that change the load order.
    pub(crate) ops: tokio::sync::Mutex<()>,
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) launcher: Option<Arc<dyn PluginLauncher>>,
    load_warnings: Vec<LoadWarning>,
    /// Old plugins being retired in the background (an upgrade returns before their container is
    /// stopped); a daemon shutdown waits for them.
    pub(crate) retiring: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
        // An unreadable load order is moved to `<root>/quarantine/` (logged) and the daemon starts
        // with no plugins, the one policy of `berth_state::records`.
        let (records, warning) = berth_state::records::load_or_quarantine::<Vec<PluginRecord>>(
            &config.root.join(PLUGINS_FILE),
            "plugins",
        );
        let records = records.unwrap_or_default();
        let readiness = Arc::new(Readiness::new());
        let plugins: Vec<Arc<LoadedPlugin>> = records
            .into_iter()
            .map(|r| {
                readiness.set(&r.name, ReadyState::Pending);
                Arc::new(LoadedPlugin::new(r, PluginState::Pending, config.caps))
            })
            .collect();
        Ok(Self {
            load_warnings: warning.into_iter().collect(),
            config,
            plugins: RwLock::new(Arc::new(plugins)),
            ops: tokio::sync::Mutex::new(()),
            readiness,
            launcher,
            retiring: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// What the load at open could not take as it was (an unreadable `plugins.json`, quarantined).
    pub fn load_warnings(&self) -> &[LoadWarning] {
        &self.load_warnings
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
        berth_state::sync::read(&self.plugins).clone()
    }

    /// Plugins matching `pred`, in load order, whatever their state: a call to one that is not
    /// Active fails at once with [`crate::CallErrorKind::NotActive`], which a chain turns into an
    /// abort (policy `abort`) or a warning (policy `ignore`). Fail closed: nothing is skipped
    /// silently (`docs/semantics.md`).
    pub fn subscribers(&self, pred: impl Fn(&LoadedPlugin) -> bool) -> Vec<Arc<LoadedPlugin>> {
        self.snapshot()
            .iter()
            .filter(|p| pred(p))
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
        if !enabled {
            self.check_unlocked(name, "disabled")?;
        }
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

    /// Refuses `action` on a plugin the daemon's flags pin ([`HostConfig::locked`]).
    pub fn check_unlocked(&self, name: &str, action: &'static str) -> Result<(), HostError> {
        match self.config.locked.get(name) {
            Some(reason) => Err(HostError::Locked {
                name: name.to_owned(),
                action,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
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

    pub(crate) fn swap(&self, f: impl FnOnce(&mut Vec<Arc<LoadedPlugin>>)) -> Snapshot {
        let mut guard = berth_state::sync::write(&self.plugins);
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

    pub(crate) fn offer(&self) -> HandshakeV2Request {
        HandshakeV2Request::berth(
            &self.config.engine_version,
            self.config.caps.default.as_millis() as u64,
        )
    }

    pub(crate) fn load_deadline(&self, opts: &LoadOptions) -> Duration {
        opts.load_deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(self.config.load_deadline)
    }
}
