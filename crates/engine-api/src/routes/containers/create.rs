//! `POST /containers/create`: the create DTO (Docker's `Config` + `HostConfig` +
//! `NetworkingConfig`, the fields Berth supports) and its translation to the engine's
//! [`CreateContainer`].

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_engine::CreateContainer;
use berth_engine::container::{
    ContainerSpec, MountKind, MountSpec, RestartPolicy, SecurityOptions,
};
use berth_engine::health::HealthConfig;
use berth_engine::limits::Resources;
use berth_engine::log_config::LogConfig;
use bollard_stubs::models::ContainerCreateResponse;
use bytes::Bytes;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{self, Query};
use crate::gate::Caller;
use crate::present;
use crate::routes::AppState;
use crate::routes::endpoint::NetworkingConfigBody;

/// `Cmd`/`Entrypoint` may be a list or (old clients) a single string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrVec {
    One(String),
    Many(Vec<String>),
}

impl StrOrVec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrVec::One(s) if s.is_empty() => Vec::new(),
            StrOrVec::One(s) => vec![s],
            StrOrVec::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    hostname: Option<String>,
    user: Option<String>,
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    tty: Option<bool>,
    open_stdin: Option<bool>,
    stdin_once: Option<bool>,
    env: Option<Vec<String>>,
    cmd: Option<StrOrVec>,
    entrypoint: Option<StrOrVec>,
    image: Option<String>,
    working_dir: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    host_config: Option<HostConfigBody>,
    networking_config: Option<NetworkingConfigBody>,
    mac_address: Option<String>,
    healthcheck: Option<HealthConfig>,
    stop_timeout: Option<i64>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// Anonymous volumes (`-v /path`, docker-py's `volumes=[...]`): one fresh volume each.
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct HostConfigBody {
    binds: Option<Vec<String>>,
    mounts: Option<Vec<MountBody>>,
    restart_policy: Option<RestartPolicyBody>,
    auto_remove: Option<bool>,
    network_mode: Option<String>,
    volume_driver: Option<String>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    privileged: Option<bool>,
    readonly_rootfs: Option<bool>,
    security_opt: Option<Vec<String>>,
    group_add: Option<Vec<String>>,
    tmpfs: Option<BTreeMap<String, String>>,
    devices: Option<Vec<bollard_stubs::models::DeviceMapping>>,
    device_cgroup_rules: Option<Vec<String>>,
    memory: Option<i64>,
    memory_swap: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    cpu_shares: Option<i64>,
    pids_limit: Option<i64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    port_bindings: Option<crate::routes::ports::PortBindingsBody>,
    log_config: Option<LogConfigBody>,
    links: Option<Vec<String>>,
    cgroupns_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    pid_mode: Option<String>,
    init: Option<bool>,
    volumes_from: Option<Vec<String>>,
    isolation: Option<String>,
}

/// `HostConfig.LogConfig` as clients send it (`Config` may be null).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LogConfigBody {
    #[serde(rename = "Type")]
    kind: Option<String>,
    config: Option<BTreeMap<String, String>>,
}

impl HostConfigBody {
    fn resources(&self) -> Resources {
        Resources {
            memory: self.memory.unwrap_or(0),
            memory_swap: self.memory_swap.unwrap_or(0),
            nano_cpus: self.nano_cpus.unwrap_or(0),
            cpu_quota: self.cpu_quota.unwrap_or(0),
            cpu_period: self.cpu_period.unwrap_or(0),
            cpu_shares: self.cpu_shares.unwrap_or(0),
            pids_limit: self.pids_limit.unwrap_or(0),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RestartPolicyBody {
    name: Option<String>,
    maximum_retry_count: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct MountBody {
    #[serde(rename = "Type")]
    kind: Option<String>,
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
    volume_options: Option<VolumeOptionsBody>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct VolumeOptionsBody {
    driver_config: Option<DriverConfigBody>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DriverConfigBody {
    name: Option<String>,
}

/// `Config.Volumes`: each path no `Binds`/`Mounts` entry already covers gets a new volume with a
/// random name (Docker's anonymous volume), through the container's volume driver.
fn anonymous_volumes(
    paths: Option<BTreeMap<String, serde_json::Value>>,
    volume_driver: &str,
    mounts: &mut Vec<MountSpec>,
) {
    let clean = |p: &str| p.trim_end_matches('/').to_owned();
    for path in paths.unwrap_or_default().into_keys() {
        if path.is_empty() || mounts.iter().any(|m| clean(&m.destination) == clean(&path)) {
            continue;
        }
        mounts.push(MountSpec {
            anonymous: true,
            kind: MountKind::Volume,
            source: berth_state::new_id(),
            destination: path,
            read_only: false,
            mode: String::new(),
            driver: (!volume_driver.is_empty()).then(|| volume_driver.to_owned()),
            create_source: false,
        });
    }
}

fn to_request(
    mut body: CreateBody,
    name: Option<String>,
    system: bool,
) -> ApiResult<CreateContainer> {
    let image = body
        .image
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::bad_request("field Image: an image is required"))?;
    let mut hc = body.host_config.unwrap_or_default();
    let resources = hc.resources();
    let port_bindings = crate::routes::ports::bindings(hc.port_bindings.take())?;
    let security = SecurityOptions {
        cap_add: hc.cap_add.take().unwrap_or_default(),
        cap_drop: hc.cap_drop.take().unwrap_or_default(),
        privileged: hc.privileged.unwrap_or(false),
        readonly_rootfs: hc.readonly_rootfs.unwrap_or(false),
        security_opt: hc.security_opt.take().unwrap_or_default(),
        group_add: hc.group_add.take().unwrap_or_default(),
        tmpfs: hc.tmpfs.take().unwrap_or_default(),
        cgroupns_mode: hc.cgroupns_mode.take().unwrap_or_default(),
        uts_mode: hc.uts_mode.take().unwrap_or_default(),
        pid_mode: hc.pid_mode.take().unwrap_or_default(),
        devices: hc
            .devices
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|d| berth_engine::devices::DeviceMapping {
                path_on_host: d.path_on_host.unwrap_or_default(),
                path_in_container: d.path_in_container.unwrap_or_default(),
                cgroup_permissions: d.cgroup_permissions.unwrap_or_default(),
            })
            .collect(),
        device_cgroup_rules: hc.device_cgroup_rules.take().unwrap_or_default(),
        init: hc.init.unwrap_or(false),
    };
    extract::driver_name("volume driver", hc.volume_driver.as_deref())?;
    let rp = hc.restart_policy.unwrap_or_default();
    let restart_policy = RestartPolicy::parse(
        rp.name.as_deref().unwrap_or(""),
        rp.maximum_retry_count.unwrap_or(0),
    )?;
    let binds = hc.binds.unwrap_or_default();
    let volume_driver = hc.volume_driver.unwrap_or_default();
    let mut mounts = Vec::new();
    for b in &binds {
        mounts.push(present::parse_bind(b, &volume_driver)?);
    }
    for m in hc.mounts.unwrap_or_default() {
        let kind = match m.kind.as_deref().unwrap_or("volume") {
            "bind" => MountKind::Bind,
            "volume" => MountKind::Volume,
            other => {
                return Err(ApiError::bad_request(format!(
                    "field HostConfig.Mounts.Type: mount type {other:?} is not supported (bind, volume)"
                )));
            }
        };
        let driver = m
            .volume_options
            .and_then(|o| o.driver_config)
            .and_then(|d| d.name)
            .filter(|n| !n.is_empty());
        extract::driver_name("volume driver", driver.as_deref())?;
        let source = m.source.unwrap_or_default();
        if source.is_empty() {
            return Err(ApiError::bad_request(
                "field HostConfig.Mounts.Source: a source is required",
            ));
        }
        mounts.push(MountSpec {
            anonymous: false,
            kind,
            source,
            destination: m.target.unwrap_or_default(),
            read_only: m.read_only.unwrap_or(false),
            mode: String::new(),
            driver,
            create_source: false,
        });
    }
    anonymous_volumes(body.volumes.take(), &volume_driver, &mut mounts);
    let mode = hc.network_mode.as_deref().unwrap_or_default();
    let (ipv4_address, aliases, mut endpoint) =
        body.networking_config.unwrap_or_default().for_mode(mode)?;
    // `Config.MacAddress` (API < 1.44's place for it) when the endpoint names none.
    if endpoint.mac_address.is_empty() {
        endpoint.mac_address = body.mac_address.unwrap_or_default();
    }
    Ok(CreateContainer {
        name,
        ipv4_address,
        aliases,
        links: hc.links.take().unwrap_or_default(),
        endpoint,
        spec: ContainerSpec {
            image,
            cmd: body.cmd.map(StrOrVec::into_vec),
            entrypoint: body.entrypoint.map(StrOrVec::into_vec),
            env: body.env.unwrap_or_default(),
            working_dir: body.working_dir.unwrap_or_default(),
            hostname: body.hostname.unwrap_or_default(),
            user: body.user.unwrap_or_default(),
            tty: body.tty.unwrap_or(false),
            open_stdin: body.open_stdin.unwrap_or(false),
            stdin_once: body.stdin_once.unwrap_or(false),
            attach_stdin: body.attach_stdin.unwrap_or(false),
            attach_stdout: body.attach_stdout.unwrap_or(false),
            attach_stderr: body.attach_stderr.unwrap_or(false),
            labels: body.labels.unwrap_or_default(),
            binds,
            mounts,
            restart_policy,
            auto_remove: hc.auto_remove.unwrap_or(false),
            network_mode: hc.network_mode.unwrap_or_default(),
            volume_driver,
            system,
            resources,
            security,
            port_bindings,
            exposed_ports: body
                .exposed_ports
                .map(|p| p.into_keys().collect())
                .unwrap_or_default(),
            healthcheck: body.healthcheck,
            stop_timeout: body.stop_timeout,
            log_config: hc
                .log_config
                .take()
                .map(|l| LogConfig {
                    kind: l.kind.unwrap_or_default(),
                    config: l.config.unwrap_or_default(),
                })
                .unwrap_or_default(),
            isolation: hc.isolation.take().unwrap_or_default(),
            volumes_from: hc.volumes_from.take().unwrap_or_default(),
        },
    })
}

/// `?system=1` makes a hidden system container, which no volume or api hook of the plugins sees
/// at start: only a privileged plugin on its own engine socket may ask for one (the daemon makes
/// plugin containers itself, not through the API).
fn system_allowed(caller: Option<&Caller>, system: bool) -> ApiResult<()> {
    match caller {
        Some(Caller::Plugin(_)) => Ok(()),
        _ if !system => Ok(()),
        _ => Err(ApiError::new(
            berth_state::ErrorKind::Forbidden,
            "system containers are made only by the daemon and by privileged plugins on their engine socket",
        )),
    }
}

pub(super) async fn create(
    State(s): State<AppState>,
    caller: Option<Extension<Caller>>,
    q: Query,
    body: Bytes,
) -> ApiResult<Response> {
    let system = q.bool("system")?;
    system_allowed(caller.as_ref().map(|c| &c.0), system)?;
    let parsed: Option<CreateBody> = extract::parse_json(&body)?;
    let req = to_request(
        parsed.unwrap_or_default(),
        q.get("name").map(str::to_owned),
        system,
    )?;
    let (id, warnings) = s.engine.create(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(ContainerCreateResponse { id, warnings }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_translates() {
        let body: CreateBody = extract::parse_json(
            br#"{"Image":"bb","Cmd":"true","Env":null,"HostConfig":{"Binds":["/a:/b"],
                "RestartPolicy":{"Name":"on-failure","MaximumRetryCount":2},
                "Mounts":[{"Type":"volume","Source":"v","Target":"/d","VolumeOptions":{"DriverConfig":{"Name":"fl"}}}]},
                "NetworkingConfig":{"sdknet":null}}"#,
        )
        .unwrap();
        let req = to_request(body, Some("c1".into()), false).unwrap();
        assert_eq!(req.spec.cmd, Some(vec!["true".to_owned()]));
        assert_eq!(req.spec.binds, ["/a:/b"]);
        assert_eq!(
            req.spec.restart_policy,
            RestartPolicy::OnFailure { max_retries: 2 }
        );
        // The parsed `Binds` come first, then `Mounts`.
        assert_eq!(
            (req.spec.mounts[0].kind, req.spec.mounts[0].source.as_str()),
            (MountKind::Bind, "/a")
        );
        assert!(req.spec.mounts[0].create_source);
        assert_eq!(req.spec.mounts[1].driver.as_deref(), Some("fl"));
        let err = to_request(CreateBody::default(), None, false).unwrap_err();
        assert!(err.message.contains("Image"));
    }

    #[test]
    fn config_volumes_become_anonymous_volumes() {
        let body: CreateBody = extract::parse_json(
            br#"{"Image":"bb","Volumes":{"/vol1":{},"/b/":{}},"HostConfig":{"Binds":["/a:/b"]}}"#,
        )
        .unwrap();
        let req = to_request(body, None, false).unwrap();
        // `/b` is the bind's already; `/vol1` gets a fresh volume.
        assert_eq!(req.spec.mounts.len(), 2, "{:?}", req.spec.mounts);
        let anon = &req.spec.mounts[1];
        assert_eq!(
            (anon.kind, anon.destination.as_str()),
            (MountKind::Volume, "/vol1")
        );
        assert_eq!(anon.source.len(), 64);
        assert!(!anon.create_source);
    }

    #[test]
    fn system_containers_only_for_plugins() {
        let user = Caller::User;
        let plugin = Caller::Plugin("p".into());
        assert!(system_allowed(None, false).is_ok());
        assert!(system_allowed(Some(&user), false).is_ok());
        assert!(system_allowed(Some(&plugin), true).is_ok());
        assert_eq!(
            system_allowed(None, true).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(system_allowed(Some(&user), true).is_err());
    }
}
