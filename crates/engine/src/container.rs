//! Container records: the durable config (`config.json`) and state (`state.json`) of a container,
//! the lifecycle status with its predicates, restart policies, and mount specifications.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// Lifecycle status, as the Engine API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A process exists (or is about to be restarted by policy).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Restarting)
    }
}

/// Docker's restart policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// Restart on a non-zero exit, at most `max_retries` times (0 = no limit).
    OnFailure {
        max_retries: u32,
    },
}

impl RestartPolicy {
    /// Parses the API's `{Name, MaximumRetryCount}`.
    pub fn parse(name: &str, max_retries: i64) -> Result<Self, EngineError> {
        let max = u32::try_from(max_retries.max(0)).unwrap_or(u32::MAX);
        match name {
            "" | "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: max }),
            other => Err(EngineError::Invalid(format!(
                "invalid restart policy {other:?}: use no, always, unless-stopped or on-failure[:N]"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure { .. } => "on-failure",
        }
    }

    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max_retries } => *max_retries,
            _ => 0,
        }
    }

    /// Whether a container that just exited with `code` restarts, given how often it already did
    /// and whether a user stopped it.
    pub fn should_restart(&self, code: i32, restart_count: u32, manually_stopped: bool) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && (*max_retries == 0 || restart_count < *max_retries)
            }
        }
    }
}

/// Bind mount or named volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
}

/// A mount as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path (bind) or volume name (volume).
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// The mode text of a `Binds` entry (`ro`, `rw,z`, …), for inspect.
    pub mode: String,
    /// Volume driver for a named volume created on demand.
    pub driver: Option<String>,
    /// Create a missing bind source (true for `Binds`, false for `Mounts`, as Docker does).
    pub create_source: bool,
    /// A volume made for this container alone (`Config.Volumes`, `-v /path`): removed with it
    /// by `rm -v` and by `AutoRemove` (`--rm`), as Docker does with its unnamed volumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

impl MountSpec {
    /// A bind mount of host path `source` at `destination` (the Docker syntaxes that produce
    /// these are parsed in the API layer).
    pub fn bind(
        source: impl Into<String>,
        destination: impl Into<String>,
        read_only: bool,
    ) -> Self {
        MountSpec {
            anonymous: false,
            kind: MountKind::Bind,
            source: source.into(),
            destination: destination.into(),
            read_only,
            mode: if read_only {
                "ro".into()
            } else {
                String::new()
            },
            driver: None,
            create_source: true,
        }
    }
}

/// A mount after resolution at the last start (or create): the host path actually mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedMount {
    pub spec: MountSpec,
    /// Host path that is (or will be) mounted.
    pub host_path: String,
    /// Volume driver, for named volumes.
    pub driver: Option<String>,
}

/// The immutable part of a container (`config.json`): its identity, what `create` resolved
/// (image id, argv) and the [`ContainerSpec`] it runs with, flattened (the record's keys are the
/// same as before the spec was a struct of its own). Fields a record lacks (written by an older
/// version) decode to their defaults; fields it has that this version does not know are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    pub image_id: String,
    /// argv\[0\] and the rest, after Entrypoint/Cmd resolution.
    pub path: String,
    pub args: Vec<String>,
    #[serde(flatten)]
    pub spec: ContainerSpec,
}

/// A container's settings, as a create request asks for them ([`crate::CreateContainer`]) and
/// as the record keeps them once `create` filled the gaps from the image and the defaults
/// (`cmd`, `entrypoint`, `env`, `working_dir`, `hostname`, `network_mode`; `mounts` with their
/// sources resolved).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    /// The image reference as typed.
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
    /// `HostConfig.Binds` as the client wrote them, kept for inspect; their parsed form is in
    /// `mounts` (the API layer parses Docker's `SRC:DST[:MODE]` syntax).
    pub binds: Vec<String>,
    /// Every mount, in order: the parsed `Binds` first (`create_source`), then `Mounts`.
    pub mounts: Vec<MountSpec>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub network_mode: String,
    pub volume_driver: String,
    /// Hidden system container (plugins and `--system` agents).
    pub system: bool,
    /// Resource limits (`HostConfig.Memory`, `NanoCpus`, …); absent in old records.
    pub resources: crate::limits::Resources,
    /// Capabilities, privileged mode, seccomp and the other confinement settings.
    pub security: SecurityOptions,
    /// Published ports (`HostConfig.PortBindings`), checked at create.
    #[serde(default)]
    pub port_bindings: Vec<crate::ports::PortBinding>,
    /// `Config.ExposedPorts` (`80/tcp`), with the image's and the published ones added at
    /// create; the ports a legacy link's variables name.
    pub exposed_ports: Vec<String>,
    /// `Config.Healthcheck`, merged with the image's at create.
    pub healthcheck: Option<crate::health::HealthConfig>,
    /// `Config.StopTimeout`: seconds `stop` waits before SIGKILL when the request gives none.
    pub stop_timeout: Option<i64>,
    /// `HostConfig.LogConfig` (json-file when absent in old records).
    pub log_config: crate::log_config::LogConfig,
    /// `HostConfig.Isolation`: Linux has one technology, `default` (or empty), kept as given.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    /// `HostConfig.VolumesFrom` as given (`NAME[:ro|rw]`), for inspect; the mounts they named
    /// were copied into `mounts` at create (see `crate::volumes_from`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
}

/// How a container is confined, as the client asked (`HostConfig.CapAdd`, `CapDrop`,
/// `Privileged`, `ReadonlyRootfs`, `SecurityOpt`, `GroupAdd`, `Tmpfs`, `Devices`,
/// `DeviceCgroupRules`): kept as given, for
/// inspect, and interpreted by the runtime (`runtime::options`). All empty = Docker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityOptions {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    /// `seccomp=unconfined`, `seccomp=<profile json>`, `no-new-privileges[:true|false]`, ...
    pub security_opt: Vec<String>,
    pub group_add: Vec<String>,
    /// Target path → mount options (`size=64m,mode=1777`, may be empty).
    pub tmpfs: BTreeMap<String, String>,
    /// `HostConfig.CgroupnsMode`: `private` gives the container (and its execs) a cgroup
    /// namespace rooted at its own cgroup; empty or `host`: the host's.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroupns_mode: String,
    /// `HostConfig.UTSMode`: `host` keeps the host's UTS namespace (its hostname, which the
    /// container cannot change without `CAP_SYS_ADMIN`); empty: a private one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uts_mode: String,
    /// `HostConfig.PidMode`: `host` keeps the host's pid namespace (no pid namespace of its own:
    /// `ps` in the container sees every host process, and pid 1 is not the container's init;
    /// what is left in the container's cgroup when its main process exits is killed); empty: a
    /// private one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pid_mode: String,
    /// `--device` (`HostConfig.Devices`), see `crate::devices`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<crate::devices::DeviceMapping>,
    /// `--device-cgroup-rule` (`HostConfig.DeviceCgroupRules`, `c 1:3 rwm`): allowed after
    /// Docker's default device rules, by the v1 device cgroup and the BPF device program alike
    /// (see `crate::devices`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    /// `HostConfig.Init` (`--init`): pid 1 is a minimal init that runs the command as its
    /// child, forwards signals to it and reaps zombies (`runtime/child/init.rs`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
}

/// The mutable part of a container (`state.json`); missing fields decode to their defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerState {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub restart_count: u32,
    /// Set by stop/kill; keeps `always`/`unless-stopped` from restarting until the next start.
    pub manually_stopped: bool,
    pub mounts: Vec<ResolvedMount>,
    /// The last run ended with an OOM kill in the container's memory cgroup.
    #[serde(default)]
    pub oom_killed: bool,
    /// The running container's processes are frozen (`docker pause`, see `pause.rs`).
    #[serde(default)]
    pub paused: bool,
    /// Limits and restart policy set by `docker update` (see `update.rs`); they replace the
    /// config's from then on.
    #[serde(default)]
    pub updated: Option<crate::update::Updated>,
    /// `State.Health`: present once a run with a healthcheck started.
    pub health: Option<crate::health::Health>,
    /// Legacy links (`HostConfig.Links`); here because `DELETE ?link=1` removes them.
    pub links: Vec<crate::links::Link>,
}

impl ContainerState {
    /// The `State.Status` word: the lifecycle status, or `paused` for a frozen running one.
    pub fn status_name(&self) -> &'static str {
        if self.paused && self.status == Status::Running {
            "paused"
        } else {
            self.status.as_str()
        }
    }
}

impl ContainerState {
    pub fn new() -> Self {
        ContainerState {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: None,
            finished_at: None,
            restart_count: 0,
            manually_stopped: false,
            mounts: Vec::new(),
            oom_killed: false,
            paused: false,
            updated: None,
            health: None,
            links: Vec::new(),
        }
    }
}

impl Default for ContainerState {
    fn default() -> Self {
        Self::new()
    }
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quirky", "sharp", "tender", "vivid", "witty", "zealous", "bold", "clever",
];
const NOUNS: &[&str] = &[
    "lovelace", "turing", "hopper", "noether", "curie", "darwin", "euler", "gauss", "hamilton",
    "knuth", "lamport", "liskov", "meitner", "pascal", "ritchie", "shannon", "thompson", "wozniak",
    "yalow", "babbage",
];

/// A docker-style random name (`brave_turing`), derived from an id.
pub fn generated_name(id: &str, attempt: usize) -> String {
    let b = |i: usize| usize::from_str_radix(id.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    let base = format!(
        "{}_{}",
        ADJECTIVES[b(0) % ADJECTIVES.len()],
        NOUNS[b(2) % NOUNS.len()]
    );
    if attempt == 0 {
        base
    } else {
        format!("{base}{attempt}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config.json` keeps its flat keys: a record written before the settings were a struct of
    /// their own loads, and a new record has the same keys, none nested under `spec`.
    #[test]
    fn config_records_stay_flat() {
        let old = r#"{"id":"abc","name":"web","created":"2026-01-02T03:04:05Z","image":"host",
            "image_id":"sha256:1","path":"/bin/sh","args":["-c","true"],"cmd":["true"],
            "entrypoint":null,"env":["A=1"],"working_dir":"/","hostname":"h","user":"",
            "tty":true,"open_stdin":false,"stdin_once":false,"attach_stdin":false,
            "attach_stdout":true,"attach_stderr":true,"labels":{"l":"v"},"binds":["/a:/b"],
            "mounts":[],"restart_policy":{"OnFailure":{"max_retries":2}},"auto_remove":false,"network_mode":"none",
            "volume_driver":"","system":true,"unknown_future_key":1}"#;
        let c: ContainerConfig = serde_json::from_str(old).expect("old record loads");
        assert_eq!(
            (
                c.id.as_str(),
                c.spec.image.as_str(),
                c.spec.hostname.as_str()
            ),
            ("abc", "host", "h")
        );
        assert!(c.spec.tty && c.spec.system);
        assert_eq!(
            c.spec.restart_policy,
            RestartPolicy::OnFailure { max_retries: 2 }
        );
        assert_eq!(c.spec.labels.get("l").map(String::as_str), Some("v"));
        assert_eq!(c.spec.resources, crate::limits::Resources::default());
        let v = serde_json::to_value(&c).expect("serialize");
        let keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert!(!keys.contains(&"spec"), "{keys:?}");
        for k in [
            "id",
            "image",
            "image_id",
            "env",
            "binds",
            "resources",
            "security",
        ] {
            assert!(keys.contains(&k), "{k} missing: {keys:?}");
        }
        let again: ContainerConfig = serde_json::from_value(v).expect("round trip");
        assert_eq!(again.spec.binds, ["/a:/b"]);
    }

    #[test]
    fn restart_rules() {
        let p = RestartPolicy::parse("on-failure", 2).unwrap();
        assert!(p.should_restart(1, 0, false));
        assert!(p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(RestartPolicy::Always.should_restart(0, 100, false));
        assert!(!RestartPolicy::Always.should_restart(0, 0, true));
        assert!(RestartPolicy::parse("sometimes", 0).is_err());
    }

    #[test]
    fn generated_names_differ_per_attempt() {
        assert_ne!(
            generated_name(&"ab".repeat(32), 0),
            generated_name(&"ab".repeat(32), 1)
        );
    }
}
