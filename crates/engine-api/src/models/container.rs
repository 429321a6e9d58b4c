//! Container bodies: inspect (`GET /containers/{id}/json`), the list entries of
//! `GET /containers/json` and the `wait` result. Docker's inspect sends every key, with `null`
//! for unset lists and objects, so these structs keep `Option` fields as `null` instead of
//! skipping them (bollard's models skip `None`, which would drop keys clients index).

use std::collections::BTreeMap;

use serde::Serialize;

/// `GET /containers/{id}/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub log_path: String,
    pub name: String,
    pub restart_count: u32,
    pub driver: &'static str,
    pub platform: &'static str,
    pub mount_label: String,
    pub process_label: String,
    pub app_armor_profile: String,
    pub host_config: HostConfig,
    pub mounts: Vec<MountPoint>,
    pub config: ContainerConfig,
    pub network_settings: NetworkSettings,
    /// Berth: a hidden system container (a plugin's or a `--system` agent).
    pub berth_system: bool,
}

/// `State` of inspect.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: &'static str,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// Only with a healthcheck, as Docker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<berth_engine::health::Health>,
}

/// `Config` of inspect: the settings the container was created with.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub image: String,
    /// Always `null`: anonymous volumes from the image are not supported.
    pub volumes: Option<BTreeMap<String, BTreeMap<String, String>>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    /// Always `null`: there are no image builds.
    pub on_build: Option<Vec<String>>,
    /// Left out when unset, as Docker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<berth_engine::health::HealthConfig>,
    /// Left out when unset, as Docker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
}

/// One `Mounts` entry, in inspect and in the list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// Volumes only: the volume's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: String,
    /// Bind mounts only, when the host path differs from what the client asked (Berth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_source: Option<String>,
    pub destination: String,
    /// Volumes only: the volume's driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: &'static str,
}

/// `HostConfig.Mounts` entry of inspect (the mounts asked for with `--mount`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostMount {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub name: &'static str,
    pub maximum_retry_count: i64,
}

/// Docker's whole `HostConfig` shape: every key a Docker 20.10+ engine reports. The ones Berth
/// does not set from the container's settings carry [`HostConfig::default`]'s values, which
/// describe what Berth does (no limits, private PID/IPC/UTS namespaces, the host's cgroup
/// namespace). Docker omits `Init` unless it is set, and so does Berth.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(rename = "ContainerIDFile")]
    pub container_id_file: String,
    pub log_config: LogConfig,
    pub network_mode: String,
    pub port_bindings: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volume_driver: String,
    pub volumes_from: Option<Vec<String>>,
    pub console_size: [u16; 2],
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub cgroupns_mode: &'static str,
    pub dns: Vec<String>,
    pub dns_options: Vec<String>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    pub ipc_mode: &'static str,
    pub cgroup: String,
    pub links: Option<Vec<String>>,
    pub oom_score_adj: i64,
    pub pid_mode: String,
    pub privileged: bool,
    pub publish_all_ports: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Option<Vec<String>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub userns_mode: String,
    pub shm_size: i64,
    pub runtime: &'static str,
    pub isolation: String,
    pub cpu_shares: i64,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cgroup_parent: String,
    pub blkio_weight: u16,
    pub blkio_weight_device: Vec<serde_json::Value>,
    pub blkio_device_read_bps: Option<Vec<serde_json::Value>>,
    pub blkio_device_write_bps: Option<Vec<serde_json::Value>>,
    #[serde(rename = "BlkioDeviceReadIOps")]
    pub blkio_device_read_iops: Option<Vec<serde_json::Value>>,
    #[serde(rename = "BlkioDeviceWriteIOps")]
    pub blkio_device_write_iops: Option<Vec<serde_json::Value>>,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_realtime_period: i64,
    pub cpu_realtime_runtime: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub devices: Vec<bollard_stubs::models::DeviceMapping>,
    pub device_cgroup_rules: Option<Vec<String>>,
    pub device_requests: Option<Vec<serde_json::Value>>,
    pub kernel_memory: i64,
    #[serde(rename = "KernelMemoryTCP")]
    pub kernel_memory_tcp: i64,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: bool,
    pub pids_limit: Option<i64>,
    pub ulimits: Option<Vec<serde_json::Value>>,
    pub cpu_count: i64,
    pub cpu_percent: i64,
    #[serde(rename = "IOMaximumIOps")]
    pub io_maximum_iops: i64,
    #[serde(rename = "IOMaximumBandwidth")]
    pub io_maximum_bandwidth: i64,
    pub mounts: Vec<HostMount>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// `--init`: present (and true) only when asked, as in Docker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
}

impl Default for HostConfig {
    /// What a Berth container does when nothing was asked.
    fn default() -> Self {
        HostConfig {
            binds: None,
            container_id_file: String::new(),
            log_config: LogConfig {
                kind: "json-file".to_owned(),
                config: BTreeMap::new(),
            },
            network_mode: "default".into(),
            port_bindings: BTreeMap::new(),
            restart_policy: RestartPolicy {
                name: "no",
                maximum_retry_count: 0,
            },
            auto_remove: false,
            volume_driver: String::new(),
            volumes_from: None,
            console_size: [0, 0],
            cap_add: None,
            cap_drop: None,
            cgroupns_mode: "host",
            dns: Vec::new(),
            dns_options: Vec::new(),
            dns_search: Vec::new(),
            extra_hosts: None,
            group_add: None,
            ipc_mode: "private",
            cgroup: String::new(),
            links: None,
            oom_score_adj: 0,
            pid_mode: String::new(),
            privileged: false,
            publish_all_ports: false,
            readonly_rootfs: false,
            security_opt: None,
            tmpfs: None,
            uts_mode: String::new(),
            userns_mode: String::new(),
            shm_size: 67_108_864,
            runtime: "berth",
            isolation: String::new(),
            cpu_shares: 0,
            memory: 0,
            nano_cpus: 0,
            cgroup_parent: String::new(),
            blkio_weight: 0,
            blkio_weight_device: Vec::new(),
            blkio_device_read_bps: None,
            blkio_device_write_bps: None,
            blkio_device_read_iops: None,
            blkio_device_write_iops: None,
            cpu_period: 0,
            cpu_quota: 0,
            cpu_realtime_period: 0,
            cpu_realtime_runtime: 0,
            cpuset_cpus: String::new(),
            cpuset_mems: String::new(),
            devices: Vec::new(),
            device_cgroup_rules: None,
            device_requests: None,
            kernel_memory: 0,
            kernel_memory_tcp: 0,
            memory_reservation: 0,
            memory_swap: 0,
            memory_swappiness: None,
            oom_kill_disable: false,
            pids_limit: None,
            ulimits: None,
            cpu_count: 0,
            cpu_percent: 0,
            io_maximum_iops: 0,
            io_maximum_bandwidth: 0,
            mounts: Vec::new(),
            masked_paths: None,
            readonly_paths: None,
            init: None,
        }
    }
}

/// `NetworkSettings` of inspect.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub bridge: String,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    pub ports: BTreeMap<String, Option<Vec<BTreeMap<String, String>>>>,
    pub sandbox_key: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    pub gateway: String,
    pub mac_address: String,
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// `IPAMConfig` of an endpoint: the addresses asked for (`--ip`, `--ip6`, `--link-local-ip`);
/// Docker leaves out the ones not asked for.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address", skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
    #[serde(rename = "LinkLocalIPs", skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
}

/// One network of a container (`NetworkSettings.Networks.<name>`), in inspect and in the list.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    pub links: Option<Vec<String>>,
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    pub mac_address: String,
    pub driver_opts: Option<BTreeMap<String, String>>,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    pub command: String,
    pub created: i64,
    pub state: &'static str,
    pub status: String,
    pub ports: Vec<serde_json::Value>,
    pub labels: BTreeMap<String, String>,
    pub size_rw: i64,
    pub size_root_fs: i64,
    pub host_config: SummaryHostConfig,
    pub network_settings: SummaryNetworkSettings,
    pub mounts: Vec<MountPoint>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    pub network_mode: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryNetworkSettings {
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// The body of `POST /containers/{id}/wait`; Docker sends `"Error": null` on success.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitResponse {
    pub status_code: i64,
    pub error: Option<WaitError>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitError {
    pub message: String,
}
