//! `GET /info`: Docker's `SystemInfo`, every key a Docker engine reports, so clients that index
//! them find them. Several are `null` in Docker's own answer (`RegistryConfig`,
//! `GenericResources`, `Plugins.Authorization`, `Warnings` when there are none), which bollard's
//! `SystemInfo` would drop; hence this struct. `GET /version` uses bollard's `SystemVersion`.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub server_version: String,
    pub operating_system: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    pub architecture: String,
    pub kernel_version: String,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    pub mem_total: u64,
    pub driver: String,
    pub driver_status: Vec<[String; 2]>,
    pub docker_root_dir: String,
    #[serde(rename = "NGoroutines")]
    pub n_goroutines: usize,
    #[serde(rename = "NFd")]
    pub n_fd: usize,
    #[serde(rename = "NEventsListener")]
    pub n_events_listener: usize,
    pub containers: usize,
    pub containers_running: usize,
    pub containers_paused: usize,
    pub containers_stopped: usize,
    pub images: usize,
    pub plugins: PluginsInfo,
    pub logging_driver: String,
    pub cgroup_driver: String,
    pub cgroup_version: String,
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub cpu_cfs_period: bool,
    pub cpu_cfs_quota: bool,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    pub pids_limit: bool,
    pub oom_kill_disable: bool,
    pub kernel_memory: bool,
    #[serde(rename = "KernelMemoryTCP")]
    pub kernel_memory_tcp: bool,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    pub bridge_nf_iptables: bool,
    pub bridge_nf_ip6tables: bool,
    pub debug: bool,
    pub system_time: String,
    pub index_server_address: String,
    pub registry_config: Option<serde_json::Value>,
    pub generic_resources: Option<Vec<serde_json::Value>>,
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
    pub labels: Vec<String>,
    pub experimental_build: bool,
    pub runtimes: BTreeMap<String, Runtime>,
    pub default_runtime: String,
    pub live_restore_enabled: bool,
    pub isolation: String,
    pub init_binary: String,
    pub containerd_commit: Commit,
    pub runc_commit: Commit,
    pub init_commit: Commit,
    pub security_options: Vec<String>,
    pub product_license: String,
    pub default_address_pools: Vec<serde_json::Value>,
    #[serde(rename = "CDISpecDirs")]
    pub cdi_spec_dirs: Vec<String>,
    pub swarm: SwarmInfo,
    /// `null` when there is nothing to warn about, as Docker sends it.
    pub warnings: Option<Vec<String>>,
}

/// `Plugins` of `/info`: the drivers available per kind.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginsInfo {
    pub volume: Vec<String>,
    pub network: Vec<String>,
    pub authorization: Option<Vec<String>>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Runtime {
    pub path: String,
}

/// A component's commit (`ContainerdCommit`, `RuncCommit`, `InitCommit`): empty in Berth.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Commit {
    #[serde(rename = "ID")]
    pub id: String,
    pub expected: String,
}

/// `Swarm` of `/info`: never part of a swarm.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Option<Vec<serde_json::Value>>,
}

impl SwarmInfo {
    pub fn inactive() -> Self {
        SwarmInfo {
            node_id: String::new(),
            node_addr: String::new(),
            local_node_state: "inactive".into(),
            control_available: false,
            error: String::new(),
            remote_managers: None,
        }
    }
}
