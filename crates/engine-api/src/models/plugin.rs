//! Plugin bodies: Berth's own (`/berth/plugins…`: the status of a plugin, the lines of the load
//! and upgrade streams, the unload result) and Docker's plugin object (`/plugins…`), which
//! Docker sends with `null` lists (`Linux.Capabilities`, `Config.Mounts`, `Args.Value`…) that
//! bollard's `Plugin` makes required lists, hence Berth's structs here too.

use std::collections::BTreeMap;

use berth_plugin_host::limits::Deadlines;
use berth_plugin_host::protocol::mvp::Subscriptions;
use serde::Serialize;

/// Berth's view of one plugin (`berth plugin ls`, `berth plugin status`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginStatusBody {
    pub position: usize,
    pub name: String,
    /// `container`, `socket` or `discovered`.
    pub source: &'static str,
    pub image: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub mounts: Vec<String>,
    pub protocol: &'static str,
    pub interests: Vec<String>,
    pub implements: Vec<String>,
    pub subscriptions: Subscriptions,
    pub warnings: Vec<String>,
    /// `pending`, `active`, `failed`, `disabled`, or `restarting` while its container
    /// crash-loops.
    pub state: &'static str,
    #[serde(rename = "ContainerID")]
    pub container_id: Option<String>,
    pub socket: String,
    pub privileged: bool,
    pub network: String,
    pub deadline_ms: u64,
    pub requested_deadline_ms: Option<u64>,
    pub deadlines: Deadlines,
    pub failure_policy: String,
    pub author: String,
    pub org: String,
    pub website: String,
    pub version: String,
    pub last_error: Option<String>,
    pub hooks: BTreeMap<String, HookStatsBody>,
    /// Container plugins: how often the container restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// Container plugins whose container is down: its last exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
}

/// Calls to one hook of a plugin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HookStatsBody {
    pub calls: u64,
    pub failures: u64,
    pub avg_latency_us: u64,
    pub max_latency_us: u64,
}

/// One line of the load, upgrade and unload streams (newline-delimited JSON).
#[derive(Debug, Clone, Serialize)]
pub enum OpLine {
    /// What the operation does now.
    Status(String),
    /// Sent every second while it waits.
    Progress(String),
    /// The outcome: the plugin's status.
    Plugin(Box<PluginStatusBody>),
    /// The outcome of a streamed unload (`POST /berth/plugins/{name}/unload`), under the same
    /// `Plugin` key.
    #[serde(rename = "Plugin")]
    Unloaded(Unloaded),
    /// The outcome: the failure, with the HTTP status it would have had.
    #[serde(untagged)]
    Error {
        #[serde(rename = "Error")]
        error: String,
        #[serde(rename = "Code")]
        code: u16,
    },
}

/// `DELETE /berth/plugins/{name}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Unloaded {
    pub name: String,
    #[serde(rename = "ContainerID")]
    pub container_id: Option<String>,
}

/// Docker's plugin object (`GET /plugins`, `GET /plugins/{name}/json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPlugin {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub plugin_reference: String,
    pub settings: DockerPluginSettings,
    pub config: DockerPluginConfig,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPluginSettings {
    pub mounts: Vec<DockerPluginMount>,
    pub env: Vec<String>,
    pub args: Vec<String>,
    pub devices: Vec<serde_json::Value>,
}

/// Docker's `PluginMount`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPluginMount {
    pub name: String,
    pub description: String,
    pub settable: Vec<String>,
    pub source: String,
    pub destination: String,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub options: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPluginConfig {
    pub description: String,
    pub documentation: String,
    pub docker_version: String,
    pub interface: DockerPluginInterface,
    pub entrypoint: Vec<String>,
    pub work_dir: String,
    pub user: BTreeMap<String, u32>,
    pub network: DockerPluginNetwork,
    pub linux: DockerPluginLinux,
    pub propagated_mount: String,
    pub ipc_host: bool,
    pub pid_host: bool,
    pub mounts: Option<Vec<DockerPluginMount>>,
    pub env: Vec<serde_json::Value>,
    pub args: DockerPluginArgs,
    #[serde(rename = "rootfs")]
    pub rootfs: DockerPluginRootfs,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPluginInterface {
    pub types: Vec<String>,
    pub socket: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPluginNetwork {
    #[serde(rename = "Type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPluginLinux {
    pub capabilities: Option<Vec<String>>,
    pub allow_all_devices: bool,
    pub devices: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerPluginArgs {
    pub name: String,
    pub description: String,
    pub settable: Option<Vec<String>>,
    pub value: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DockerPluginRootfs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}
