//! The persisted side of a plugin: where it comes from, the options given at load, its record in
//! `plugins.json`, and the status views (`plugin ls`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_plugin_protocol::mvp::Subscriptions;
use berth_plugin_protocol::{FailurePolicy, Protocol};
use serde::{Deserialize, Serialize};

use crate::error::HostError;
use crate::handshake::PluginInfo;
use crate::limits::Deadlines;

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
    /// The network namespace of a container plugin: `host` shares the host's (Docker's managed
    /// plugins' `network.type: host`; a network driver that makes host links needs it), anything
    /// else (`none`, the default) gives it its own, with only `lo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Host paths bind-mounted into a container plugin, `SRC:DST[:ro|rw]` (Docker's managed
    /// plugins get theirs from `Settings.Mounts`): a volume plugin's storage, say.
    pub mounts: Vec<String>,
}

/// Checks one `SRC:DST[:ro|rw]` plugin mount: both paths absolute, the source present.
/// Checks a plugin's `--network`: `host` or `none`.
pub fn validate_network(network: &str) -> Result<(), HostError> {
    match network {
        "host" | "none" => Ok(()),
        other => Err(HostError::Network(other.to_owned())),
    }
}

impl LoadOptions {
    /// Whether a container plugin shares the host's network namespace.
    pub fn host_network(&self) -> bool {
        self.network.as_deref() == Some("host")
    }
}

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
    /// Handshake warnings (unknown keys, with a did-you-mean), shown by `plugin status`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
