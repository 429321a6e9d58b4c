//! `/containers/...`: the create DTO and its translation to the engine's request, list and
//! inspect in Docker's shapes, and the lifecycle endpoints including the streaming ones (wait
//! with headers sent at once, attach as a 101 upgrade, logs).

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use berth_engine::container::{MountKind, MountSpec, RestartPolicy, SecurityOptions};
use berth_engine::health::HealthConfig;
use berth_engine::limits::Resources;
use berth_engine::log_config::LogConfig;
use berth_engine::logs::LogOptions;
use berth_engine::{ContainerView, CreateContainer, WaitCondition, parse_signal};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{self, Query};
use crate::gate::Caller;
use crate::present;
use crate::streams;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/{alias}", delete(remove_link))
}

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
    networking_config: Option<Value>,
    healthcheck: Option<HealthConfig>,
    stop_timeout: Option<i64>,
}

/// `NetworkingConfig.EndpointsConfig.<net>.IPAMConfig.IPv4Address` for the container's network
/// (`--ip`); the entry named like `NetworkMode`, else the only one.
fn requested_ip(networking: Option<&Value>, mode: &str) -> String {
    let Some(eps) = networking
        .and_then(|n| n.get("EndpointsConfig"))
        .and_then(Value::as_object)
    else {
        return String::new();
    };
    let ep = eps
        .get(mode)
        .or_else(|| (eps.len() == 1).then(|| eps.values().next()).flatten());
    ep.and_then(|e| e.pointer("/IPAMConfig/IPv4Address"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
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
    memory: Option<i64>,
    memory_swap: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    cpu_shares: Option<i64>,
    pids_limit: Option<i64>,
    log_config: Option<LogConfigBody>,
    links: Option<Vec<String>>,
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
        }
    }
}

/// The limits as `HostConfig` shows them (`MemorySwap` resolved as Docker does, `PidsLimit` null
/// when unlimited).
fn resources_json(r: &Resources) -> Value {
    json!({
        "Memory": r.memory,
        "MemorySwap": if r.memory > 0 { r.memory_swap_limit().unwrap_or(-1) } else { r.memory_swap },
        "NanoCpus": r.nano_cpus, "CpuQuota": r.cpu_quota, "CpuPeriod": r.cpu_period,
        "CpuShares": r.cpu_shares, "PidsLimit": r.pids(),
    })
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

fn to_request(body: CreateBody, name: Option<String>, system: bool) -> ApiResult<CreateContainer> {
    let image = body
        .image
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::bad_request("field Image: an image is required"))?;
    let mut hc = body.host_config.unwrap_or_default();
    let resources = hc.resources();
    let security = SecurityOptions {
        cap_add: hc.cap_add.take().unwrap_or_default(),
        cap_drop: hc.cap_drop.take().unwrap_or_default(),
        privileged: hc.privileged.unwrap_or(false),
        readonly_rootfs: hc.readonly_rootfs.unwrap_or(false),
        security_opt: hc.security_opt.take().unwrap_or_default(),
        group_add: hc.group_add.take().unwrap_or_default(),
        tmpfs: hc.tmpfs.take().unwrap_or_default(),
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
            kind,
            source,
            destination: m.target.unwrap_or_default(),
            read_only: m.read_only.unwrap_or(false),
            mode: String::new(),
            driver,
            create_source: false,
        });
    }
    Ok(CreateContainer {
        name,
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
        ipv4_address: requested_ip(
            body.networking_config.as_ref(),
            hc.network_mode.as_deref().unwrap_or_default(),
        ),
        network_mode: hc.network_mode.unwrap_or_default(),
        volume_driver,
        system,
        resources,
        security,
        healthcheck: body.healthcheck,
        stop_timeout: body.stop_timeout,
        links: hc.links.take().unwrap_or_default(),
        log_config: hc
            .log_config
            .map(|l| LogConfig {
                kind: l.kind.unwrap_or_default(),
                config: l.config.unwrap_or_default(),
            })
            .unwrap_or_default(),
    })
}

/// A list for inspect: `null` when empty, as Docker shows unset lists.
fn non_empty(list: &[String]) -> Value {
    if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    }
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

async fn create(
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
        Json(json!({"Id": id, "Warnings": warnings})),
    )
        .into_response())
}

fn mounts_json(v: &ContainerView) -> Vec<Value> {
    v.state
        .mounts
        .iter()
        .map(|m| {
            let mut o = json!({
                "Type": if m.spec.kind == MountKind::Bind { "bind" } else { "volume" },
                "Source": m.host_path,
                "Destination": m.spec.destination,
                "Mode": m.spec.mode,
                "RW": !m.spec.read_only,
                "Propagation": if m.spec.kind == MountKind::Bind { "rprivate" } else { "" },
            });
            if m.spec.kind == MountKind::Volume {
                o["Name"] = json!(m.spec.source);
                o["Driver"] = json!(m.driver.clone().unwrap_or_default());
            } else if m.host_path != m.spec.source {
                o["RequestedSource"] = json!(m.spec.source);
            }
            o
        })
        .collect()
}

fn networks_json(s: &AppState, v: &ContainerView) -> Value {
    let members = s.engine.networks.container_networks(&v.config.id);
    if members.is_empty() {
        // host / none: no membership record, the mode's network with empty addresses.
        let id = s
            .engine
            .networks
            .get(&v.network)
            .map(|n| n.id)
            .unwrap_or_default();
        return json!({ v.network.clone(): {
            "IPAMConfig": null, "Links": null, "Aliases": null, "NetworkID": id, "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": null
        }});
    }
    let mut out = serde_json::Map::new();
    for (n, m) in members {
        let ep = m.endpoint.as_ref();
        out.insert(
            n.name.clone(),
            json!({
                "IPAMConfig": m.requested_ip.map(|ip| json!({"IPv4Address": ip.to_string()})),
                "Links": null, "Aliases": null, "NetworkID": n.id,
                "EndpointID": ep.map(|e| e.id.clone()).unwrap_or_default(),
                "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
                "IPAddress": ep.map(|e| e.address.to_string()).unwrap_or_default(),
                "IPPrefixLen": ep.map(|e| e.prefix).unwrap_or(0),
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(), "DriverOpts": null
            }),
        );
    }
    Value::Object(out)
}

fn command_line(v: &ContainerView) -> String {
    std::iter::once(v.config.path.as_str())
        .chain(v.config.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary_json(s: &AppState, v: &ContainerView) -> Value {
    json!({
        "Id": v.config.id, "Names": [format!("/{}", v.config.name)], "Image": v.config.image,
        "ImageID": v.config.image_id, "Command": command_line(v), "Created": v.config.created.timestamp(),
        "State": v.state.status.as_str(), "Status": present::status(&v.state, chrono::Utc::now()), "Ports": [],
        "Labels": v.config.labels, "SizeRw": 0, "SizeRootFs": 0,
        "HostConfig": {"NetworkMode": v.config.network_mode},
        "NetworkSettings": {"Networks": networks_json(s, v)},
        "Mounts": mounts_json(v),
    })
}

fn rfc3339(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

fn inspect_json(s: &AppState, v: &ContainerView) -> Value {
    let st = &v.state;
    let c = &v.config;
    let mut out = json!({
        "Id": c.id, "Created": rfc3339(Some(c.created)), "Path": c.path, "Args": c.args,
        "State": {
            "Status": st.status.as_str(), "Running": st.status == berth_engine::container::Status::Running,
            "Paused": false, "Restarting": st.status == berth_engine::container::Status::Restarting,
            "OOMKilled": st.oom_killed, "Dead": false, "Pid": st.pid, "ExitCode": st.exit_code, "Error": st.error,
            "StartedAt": rfc3339(st.started_at), "FinishedAt": rfc3339(st.finished_at),
            "Health": st.health
        },
        "Image": c.image_id, "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "",
        "LogPath": v.log_path.to_string_lossy(), "Name": format!("/{}", c.name), "RestartCount": st.restart_count,
        "Driver": "overlay", "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "HostConfig": {
            "Binds": c.binds, "NetworkMode": c.network_mode, "AutoRemove": c.auto_remove,
            "LogConfig": c.log_config, "Links": non_empty(&s.engine.link_names(&c.name, &st.links)),
            "RestartPolicy": {"Name": c.restart_policy.name(), "MaximumRetryCount": c.restart_policy.max_retries()},
            "VolumeDriver": c.volume_driver, "Privileged": c.security.privileged, "PortBindings": {},
            "CapAdd": non_empty(&c.security.cap_add), "CapDrop": non_empty(&c.security.cap_drop),
            "ReadonlyRootfs": c.security.readonly_rootfs, "SecurityOpt": non_empty(&c.security.security_opt),
            "GroupAdd": non_empty(&c.security.group_add),
            "Tmpfs": if c.security.tmpfs.is_empty() { Value::Null } else { json!(c.security.tmpfs) },
            "Mounts": c.mounts.iter().filter(|m| !c.binds.iter().any(|b| b.starts_with(&format!("{}:", m.source))))
                .map(|m| json!({"Type": if m.kind == MountKind::Bind {"bind"} else {"volume"}, "Source": m.source,
                                "Target": m.destination, "ReadOnly": m.read_only})).collect::<Vec<_>>()
        },
        "Mounts": mounts_json(v),
        "Config": {
            "Hostname": c.hostname, "Domainname": "", "User": c.user, "AttachStdin": c.attach_stdin,
            "AttachStdout": c.attach_stdout, "AttachStderr": c.attach_stderr, "Tty": c.tty, "OpenStdin": c.open_stdin,
            "StdinOnce": c.stdin_once, "Env": c.env, "Cmd": c.cmd, "Image": c.image, "Volumes": null,
            "WorkingDir": c.working_dir, "Entrypoint": c.entrypoint, "Labels": c.labels,
            "Healthcheck": c.healthcheck, "StopTimeout": c.stop_timeout
        },
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "Ports": {}, "SandboxKey": "", "IPAddress": "", "IPPrefixLen": 0,
            "Gateway": "", "MacAddress": "", "Networks": networks_json(s, v)
        },
        "BerthSystem": c.system
    });
    if let (Some(hc), Value::Object(limits)) = (
        out.get_mut("HostConfig").and_then(Value::as_object_mut),
        resources_json(&c.resources),
    ) {
        hc.extend(limits);
    }
    // Docker leaves these out when unset.
    for (section, key) in [
        ("State", "Health"),
        ("Config", "Healthcheck"),
        ("Config", "StopTimeout"),
    ] {
        if let Some(o) = out.get_mut(section).and_then(Value::as_object_mut)
            && o.get(key).is_some_and(Value::is_null)
        {
            o.remove(key);
        }
    }
    out
}

async fn list(State(s): State<AppState>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    let filters = q.filters()?;
    let mut all = q.bool("all")?;
    if filters.contains_key("status") {
        all = true;
    }
    let views = s.engine.list(all, q.bool("system")?);
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let out: Vec<Value> = views
        .iter()
        .filter(|v| matches_filters(v, &filters))
        .take(limit.unwrap_or(usize::MAX))
        .map(|v| summary_json(&s, v))
        .collect();
    Ok(Json(out))
}

fn matches_filters(v: &ContainerView, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(k, vals)| {
        vals.is_empty()
            || vals.iter().any(|val| match k.as_str() {
                "name" => v.config.name.contains(val.trim_start_matches('/')),
                "id" => v.config.id.starts_with(val.as_str()),
                "status" => v.state.status.as_str() == val,
                "label" => {
                    let (lk, lv) = val
                        .split_once('=')
                        .map(|(a, b)| (a, Some(b)))
                        .unwrap_or((val.as_str(), None));
                    v.config
                        .labels
                        .get(lk)
                        .is_some_and(|x| lv.is_none_or(|lv| x == lv))
                }
                "ancestor" => v.config.image == *val || v.config.image_id.contains(val.as_str()),
                "exited" => v.state.exit_code.to_string() == *val,
                "volume" => v
                    .config
                    .mounts
                    .iter()
                    .any(|m| m.source == *val || m.destination == *val),
                "network" => v.network == *val,
                "health" => {
                    let h = v.state.health.as_ref().map(|h| h.status.as_str());
                    h.unwrap_or("none") == val
                }
                _ => true,
            })
    })
}

async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = s.engine.container(&id)?;
    let mut out = inspect_json(&s, &s.engine.view(&c));
    crate::inspect_defaults::fill(&mut out);
    Ok(Json(out))
}

async fn start(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.engine.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn signal_param(q: &Query) -> ApiResult<Option<nix::sys::signal::Signal>> {
    match q.get("signal").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(sig) => Ok(Some(parse_signal(sig)?)),
    }
}

async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine.stop(&id, q.int("t")?, signal_param(&q)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine.kill(&id, signal_param(&q)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine.restart(&id, q.int("t")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine.remove(&id, q.bool("force")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Headers go out at once; the body follows when the condition holds (the docker CLI sends
/// `start` only after it saw the wait's headers).
/// `DELETE /containers/{parent}/{alias}?link=1`: removes a legacy link (without `link=1` the
/// path names no container, as in Docker).
async fn remove_link(
    State(s): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    q: Query,
) -> ApiResult<StatusCode> {
    if !q.bool("link")? {
        return Err(berth_engine::EngineError::NoSuchContainer(format!("{parent}/{alias}")).into());
    }
    s.engine.remove_link(&parent, &alias)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wait(State(s): State<AppState>, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let condition: WaitCondition = q.get("condition").unwrap_or("").parse()?;
    let fut = s.engine.wait(&id, condition)?;
    let body = futures::stream::once(async move {
        let code = fut.await;
        let mut line =
            serde_json::to_vec(&json!({"StatusCode": code, "Error": null})).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

async fn resize(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    s.engine.resize(&id, h, w)?;
    Ok(StatusCode::OK)
}

async fn attach(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    conn: Option<Extension<streams::ConnFd>>,
    mut req: Request,
) -> ApiResult<Response> {
    let want_stdin = q.bool("stdin")?;
    let want_stdout = q.bool("stdout")?;
    let want_stderr = q.bool("stderr")?;
    let detach_keys = streams::parse_detach_keys(q.get("detachKeys").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let attached = s.engine.attach(&id, want_stdin)?;
    let logs = if q.bool("logs")? && (want_stdout || want_stderr) {
        let opts = LogOptions {
            follow: false,
            stdout: want_stdout,
            stderr: want_stderr,
            tail: None,
            since: None,
            until: None,
        };
        match s.engine.logs(&id, opts) {
            Ok((_, rx)) => Some(rx),
            // Log driver `none`: nothing to replay.
            Err(e) if e.kind() == berth_state::ErrorKind::InvalidArgument => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let tty = attached.tty;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(streams::serve_attach(
        on_upgrade,
        conn.map(|c| c.0),
        attached,
        streams::AttachOptions {
            stdout: want_stdout,
            stderr: want_stderr,
            // Docker's default when the client does not say.
            stream: q.get("stream").is_none() || q.bool("stream")?,
            logs,
            detach_keys,
        },
    ));
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    Ok(resp)
}

async fn logs(State(s): State<AppState>, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let tail = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(n) => Some(
            n.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail {n:?}")))?
                .max(0) as usize,
        ),
    };
    let nanos_to_time = |n: Option<i64>| {
        n.filter(|n| *n > 0)
            .map(chrono::DateTime::from_timestamp_nanos)
    };
    let opts = LogOptions {
        follow: q.bool("follow")?,
        stdout: q.bool("stdout")?,
        stderr: q.bool("stderr")?,
        tail,
        since: nanos_to_time(q.time_nanos("since")?),
        until: nanos_to_time(q.time_nanos("until")?),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "you must choose at least one stream (stdout=1 or stderr=1)",
        ));
    }
    let timestamps = q.bool("timestamps")?;
    let (tty, rx) = s.engine.logs(&id, opts)?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |entry| {
        let mut payload = Vec::new();
        if timestamps {
            payload.extend_from_slice(
                entry
                    .time
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            payload.push(b' ');
        }
        payload.extend_from_slice(entry.log.as_bytes());
        let kind = if entry.stream == "stderr" { 2 } else { 1 };
        Ok::<_, Infallible>(if tty {
            Bytes::from(payload)
        } else {
            streams::frame(kind, &payload)
        })
    });
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
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
        assert_eq!(req.cmd, Some(vec!["true".to_owned()]));
        assert_eq!(req.binds, ["/a:/b"]);
        assert_eq!(
            req.restart_policy,
            RestartPolicy::OnFailure { max_retries: 2 }
        );
        // The parsed `Binds` come first, then `Mounts`.
        assert_eq!(
            (req.mounts[0].kind, req.mounts[0].source.as_str()),
            (MountKind::Bind, "/a")
        );
        assert!(req.mounts[0].create_source);
        assert_eq!(req.mounts[1].driver.as_deref(), Some("fl"));
        let err = to_request(CreateBody::default(), None, false).unwrap_err();
        assert!(err.message.contains("Image"));
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
