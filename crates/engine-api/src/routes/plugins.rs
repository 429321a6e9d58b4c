//! Plugin management. Berth's own endpoints (`/berth/plugins…`: load, list, status, upgrade,
//! unload; load, upgrade and `POST …/unload` stream newline-delimited JSON progress, then the
//! result) and Docker's
//! `/plugins…` (list, inspect, enable, disable) so `docker plugin ls` shows Berth's plugins.
//!
//! Streamed lines: `{"Status": "..."}` once, `{"Progress": "..."}` every second while the engine
//! waits for the handshake, then `{"Plugin": {...}}` or `{"Error": "...", "Code": 409}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_plugin_host::protocol::{FailurePolicy, Protocol};
use berth_plugin_host::{
    HostError, LoadOptions, PluginHost, PluginSource, PluginState, PluginStatus, UpgradeTo,
    validate_mount, validate_network,
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{self, Query, parse_json};
use crate::models::plugin::{HookStatsBody, OpLine, PluginStatusBody, Unloaded};

mod docker;
mod logs;

pub use docker::docker_plugin;
use docker::{docker_disable, docker_enable, docker_inspect, docker_list};
use logs::berth_logs;
pub use logs::parse_duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/berth/plugins", get(berth_list))
        .route("/berth/plugins/load", post(berth_load))
        .route(
            "/berth/plugins/{name}",
            get(berth_status).delete(berth_unload),
        )
        .route("/berth/plugins/{name}/upgrade", post(berth_upgrade))
        .route("/berth/plugins/{name}/unload", post(berth_unload_streamed))
        .route("/berth/plugins/{name}/logs", get(berth_logs))
        .route("/plugins", get(docker_list))
        .route("/plugins/{name}/json", get(docker_inspect))
        .route("/plugins/{name}/enable", post(docker_enable))
        .route("/plugins/{name}/disable", post(docker_disable))
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

fn host(s: &AppState) -> ApiResult<Arc<PluginHost>> {
    s.engine.plugins().cloned().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "this engine runs no plugin host".into(),
    })
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V2 => "v2",
        Protocol::V1 => "v1",
        Protocol::Activate => "activate",
    }
}

fn state_name(s: PluginState) -> &'static str {
    match s {
        PluginState::Pending => "pending",
        PluginState::Active => "active",
        PluginState::Failed => "failed",
        PluginState::Disabled => "disabled",
    }
}

/// Berth's status view of one plugin (`plugin ls`, `plugin status`).
pub fn status_body(st: &PluginStatus) -> PluginStatusBody {
    let r = &st.record;
    let (kind, image, args, env) = match &r.source {
        PluginSource::Container {
            image, args, env, ..
        } => ("container", image.clone(), args.clone(), env.clone()),
        PluginSource::Socket => ("socket", String::new(), Vec::new(), Vec::new()),
        PluginSource::Discovered { .. } => ("discovered", String::new(), Vec::new(), Vec::new()),
    };
    let hooks = st
        .hooks
        .iter()
        .map(|(k, h)| {
            let stats = HookStatsBody {
                calls: h.calls,
                failures: h.failures,
                avg_latency_us: h.total_latency_us.checked_div(h.calls).unwrap_or(0),
                max_latency_us: h.max_latency_us,
            };
            (k.clone(), stats)
        })
        .collect();
    PluginStatusBody {
        position: st.position,
        name: r.name.clone(),
        source: kind,
        image,
        args,
        env,
        mounts: r.options.mounts.clone(),
        protocol: protocol_name(r.protocol),
        interests: r.interests.clone(),
        implements: r.implements.clone(),
        subscriptions: r.subscriptions.clone(),
        warnings: r.warnings.clone(),
        state: state_name(st.state),
        container_id: r.container_id.clone(),
        socket: r.socket.to_string_lossy().into_owned(),
        privileged: r.privileged,
        network: r
            .options
            .network
            .clone()
            .unwrap_or_else(|| "none".to_owned()),
        deadline_ms: r.deadline_ms,
        requested_deadline_ms: r.requested_deadline_ms,
        deadlines: st.deadlines,
        failure_policy: r.failure_policy.to_string(),
        author: r.info.author.clone(),
        org: r.info.org.clone(),
        website: r.info.website.clone(),
        version: r.info.version.clone(),
        last_error: r.last_error.clone(),
        hooks,
        restarts: None,
        last_exit_code: None,
    }
}

/// A plugin whose container restarted and has not run this long since is crash-looping.
const STEADY_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Adds what the plugin's container shows (`Restarts`, `LastExitCode`) to a status, and turns
/// `active` into `restarting` while the container crash-loops: it is down between restarts (the
/// engine's back-off, 100 ms doubling up to 30 s), or has not stayed up 10 s since its last
/// restart.
fn with_container(
    engine: &berth_engine::Engine,
    st: &PluginStatus,
    mut v: PluginStatusBody,
) -> PluginStatusBody {
    let Some(id) = &st.record.container_id else {
        return v;
    };
    let Ok(c) = engine.container(id) else {
        return v;
    };
    let cs = c.state();
    v.restarts = Some(cs.restart_count);
    let running = cs.status == berth_engine::container::Status::Running;
    // A start resets the exit code: it is the last exit only while the container is down.
    if cs.finished_at.is_some() && !running {
        v.last_exit_code = Some(cs.exit_code);
    }
    let recent = cs
        .started_at
        .is_some_and(|t| chrono::Utc::now() - t < STEADY_AFTER);
    if st.state == PluginState::Active && cs.restart_count > 0 && (!running || recent) {
        v.state = "restarting";
    }
    v
}

fn find_status(host: &PluginHost, name: &str) -> ApiResult<PluginStatus> {
    host.list()
        .into_iter()
        .find(|p| p.record.name == name)
        .ok_or_else(|| ApiError::not_found(format!("plugin \"{name}\" is not loaded")))
}

async fn berth_list(State(s): State<AppState>) -> ApiResult<Json<Vec<PluginStatusBody>>> {
    let list = host(&s)?.list();
    Ok(Json(
        list.iter()
            .map(|st| with_container(&s.engine, st, status_body(st)))
            .collect(),
    ))
}

async fn berth_status(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PluginStatusBody>> {
    let h = host(&s)?;
    let st = find_status(&h, &name)?;
    Ok(Json(with_container(&s.engine, &st, status_body(&st))))
}

/// `POST /berth/plugins/load` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LoadBody {
    pub name: Option<String>,
    pub image: Option<String>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    /// Host paths bind-mounted into the plugin container, `SRC:DST[:ro|rw]`.
    pub mounts: Option<Vec<String>>,
    pub privileged: bool,
    /// `host` shares the host's network namespace; `none` (default) gives the plugin its own.
    pub network: Option<String>,
    /// Load (handshake) deadline.
    pub timeout: Option<Value>,
    /// Per-call deadline.
    pub deadline: Option<Value>,
    pub on_failure: Option<String>,
    pub socket: Option<String>,
    pub discover: Option<String>,
}

fn parse_policy(s: &str) -> ApiResult<FailurePolicy> {
    match s {
        "abort" => Ok(FailurePolicy::Abort),
        "ignore" => Ok(FailurePolicy::Ignore),
        other => Err(ApiError::bad_request(format!(
            "invalid failure policy {other:?}: use abort or ignore"
        ))),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn line(v: OpLine) -> Result<Bytes, Infallible> {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    Ok(Bytes::from(b))
}

/// Streams `{"Status"}`, then `{"Progress"}` every second while `op` runs, then its outcome.
/// `phases`, when given, tells the steps of `op`: each new one is a `{"Status"}` line and the
/// text of the following progress lines.
fn stream_op(
    status: String,
    mut waiting: String,
    mut phases: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    op: impl Future<Output = Result<OpLine, ApiError>> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        let _ = tx.send(line(OpLine::Status(status))).await;
        let started = tokio::time::Instant::now();
        let mut tick =
            tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
        tokio::pin!(op);
        let outcome = loop {
            tokio::select! {
                res = &mut op => break res,
                phase = async {
                    match phases.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match phase {
                        Some(p) => {
                            waiting = p;
                            let _ = tx.send(line(OpLine::Status(waiting.clone()))).await;
                        }
                        None => phases = None,
                    }
                }
                _ = tick.tick() => {
                    let secs = started.elapsed().as_secs();
                    // A client that went away does not cancel the operation.
                    let _ = tx.send(line(OpLine::Progress(format!("{waiting} ({secs}s)")))).await;
                }
            }
        };
        // Steps told just before the operation ended are still said, before its outcome.
        if let Some(rx) = phases.as_mut() {
            while let Ok(p) = rx.try_recv() {
                let _ = tx.send(line(OpLine::Status(p))).await;
            }
        }
        let last = match outcome {
            Ok(v) => v,
            Err(e) => OpLine::Error {
                error: e.message,
                code: e.status.as_u16(),
            },
        };
        let _ = tx.send(line(last)).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response()
}

async fn berth_load(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: LoadBody = parse_json(&body)?;
    let host = host(&s)?;
    let sources = [
        req.image.is_some(),
        req.socket.is_some(),
        req.discover.is_some(),
    ];
    if sources.iter().filter(|b| **b).count() != 1 {
        return Err(ApiError::bad_request(
            "give exactly one of Image, Socket or Discover",
        ));
    }
    extract::driver_name("plugin", req.discover.as_deref())?;
    if let Some(n) = &req.name {
        berth_state::validate_name("plugin", n)?;
        // A Failed plugin of that name (crash loop, failed boot) is replaced by the new load.
        if host
            .get(n)
            .is_some_and(|p| p.state() != PluginState::Failed)
        {
            return Err(HostError::Conflict(n.clone()).into());
        }
    }
    if let Some(image) = &req.image {
        s.engine.images.get(image).map_err(ApiError::from)?;
    }
    let mounts = req.mounts.clone().unwrap_or_default();
    if !mounts.is_empty() && req.image.is_none() {
        return Err(ApiError::bad_request(
            "Mounts apply to plugins run from an image, not to one on a socket",
        ));
    }
    for m in &mounts {
        validate_mount(m)?;
    }
    let network = req.network.clone().filter(|n| !n.is_empty());
    if let Some(n) = &network {
        if req.image.is_none() {
            return Err(ApiError::bad_request(
                "Network applies to plugins run from an image, not to one on a socket",
            ));
        }
        validate_network(n)?;
    }
    let opts = LoadOptions {
        mounts,
        network,
        name: req.name.clone(),
        deadline_ms: req
            .deadline
            .as_ref()
            .map(parse_duration)
            .transpose()?
            .map(ms),
        failure_policy: req.on_failure.as_deref().map(parse_policy).transpose()?,
        privileged: req.privileged,
        load_deadline_ms: req
            .timeout
            .as_ref()
            .map(parse_duration)
            .transpose()?
            .map(ms),
    };
    let what = req
        .image
        .clone()
        .or(req.socket.clone())
        .or(req.discover.clone())
        .unwrap_or_default();
    let status = match (&req.name, &req.image, &req.socket) {
        (Some(n), Some(i), _) => format!("Loading plugin {n} from image {i}"),
        (None, Some(i), _) => format!("Loading plugin from image {i}"),
        (Some(n), _, Some(p)) => format!("Loading plugin {n} on socket {p}"),
        (None, _, Some(p)) => format!("Loading plugin on socket {p}"),
        _ => format!("Looking for plugin {what}"),
    };
    // Progress names the plugin by its name when one was given, not by its image.
    let what = req.name.clone().unwrap_or(what);
    let deadline = opts
        .load_deadline_ms
        .map(Duration::from_millis)
        .unwrap_or(host.config().load_deadline);
    let waiting = format!(
        "Waiting for {what} to shake hands (deadline {}s)",
        deadline.as_secs_f64()
    );
    let op = async move {
        let loaded = match (req.image, req.socket, req.discover) {
            (Some(image), _, _) => {
                host.load_container(
                    &image,
                    req.args.unwrap_or_default(),
                    req.env.unwrap_or_default(),
                    opts,
                )
                .await
            }
            (_, Some(socket), _) => host.load_socket(socket, opts).await,
            (_, _, Some(name)) => host.load_discovered(&name, opts).await,
            _ => return Err(ApiError::bad_request("nothing to load")),
        }?;
        Ok(OpLine::Plugin(Box::new(status_body(&find_status(
            &host,
            loaded.name(),
        )?))))
    };
    Ok(stream_op(status, waiting, None, op))
}

/// `POST /berth/plugins/{name}/upgrade` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpgradeBody {
    pub image: Option<String>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub socket: Option<String>,
    /// How long the old container gets between SIGTERM and SIGKILL (default 10 s).
    pub grace: Option<Value>,
}

async fn berth_upgrade(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: UpgradeBody = parse_json(&body)?;
    let grace = req.grace.as_ref().map(parse_duration).transpose()?;
    let host = host(&s)?;
    let old = find_status(&host, &name)?;
    // Refused before the progress stream starts, so the client gets the 409 itself.
    host.check_unlocked(&name, "upgraded")?;
    let to = match (req.image, req.socket) {
        (Some(image), None) => {
            s.engine.images.get(&image).map_err(ApiError::from)?;
            // Without new Args/Env, the old ones are kept.
            let (old_args, old_env) = match &old.record.source {
                PluginSource::Container { args, env, .. } => (args.clone(), env.clone()),
                _ => (Vec::new(), Vec::new()),
            };
            UpgradeTo::Container {
                image,
                args: req.args.unwrap_or(old_args),
                env: req.env.unwrap_or(old_env),
            }
        }
        (None, Some(socket)) => UpgradeTo::Socket(socket.into()),
        _ => return Err(ApiError::bad_request("give exactly one of Image or Socket")),
    };
    let status = format!("Upgrading plugin {name}");
    let waiting = format!("Waiting for the new {name} to shake hands");
    // A handful of steps per upgrade: unbounded is bounded by the operation itself.
    let (phase_tx, phase_rx) = tokio::sync::mpsc::unbounded_channel();
    let op = async move {
        let progress = move |p: String| {
            let _ = phase_tx.send(p);
        };
        let p = host
            .upgrade_with_progress(&name, to, grace, &progress)
            .await?;
        Ok(OpLine::Plugin(Box::new(status_body(&find_status(
            &host,
            p.name(),
        )?))))
    };
    Ok(stream_op(status, waiting, Some(phase_rx), op))
}

/// Volumes and networks whose driver (or IPAM driver) is the plugin `name` (what an unload would
/// break).
fn dependents(s: &AppState, name: &str) -> Vec<String> {
    s.engine
        .volumes
        .list()
        .into_iter()
        .filter(|v| v.driver == name)
        .map(|v| format!("volume {}", v.name))
        .chain(
            s.engine
                .networks
                .list()
                .into_iter()
                .filter(|n| n.driver == name || n.ipam_driver == name)
                .map(|n| format!("network {}", n.name)),
        )
        .collect()
}

/// What `DELETE /berth/plugins/{name}` and `POST /berth/plugins/{name}/unload` check before the
/// unload starts (so the client gets a 404 or 409 itself): the plugin exists, and nothing depends
/// on it unless `force`. Returns the grace period asked for.
fn unload_checks(
    s: &AppState,
    host: &PluginHost,
    name: &str,
    q: &Query,
) -> ApiResult<Option<Duration>> {
    let force = q.bool_or("force", false)?;
    let grace = q
        .get("grace")
        .filter(|g| !g.is_empty())
        .map(|g| parse_duration(&Value::String(g.to_owned())))
        .transpose()?;
    find_status(host, name)?;
    host.check_unlocked(name, "unloaded")?;
    let deps = dependents(s, name);
    if !deps.is_empty() && !force {
        return Err(ApiError::new(
            berth_state::ErrorKind::Conflict,
            format!(
                "plugin \"{name}\" is in use by {}: remove them first or unload with --force",
                deps.join(", ")
            ),
        ));
    }
    Ok(grace)
}

async fn berth_unload(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<Json<Unloaded>> {
    let host = host(&s)?;
    let grace = unload_checks(&s, &host, &name, &q)?;
    let record = host.unload_with_grace(&name, grace).await?;
    Ok(Json(Unloaded {
        name: record.name,
        container_id: record.container_id,
    }))
}

/// `POST /berth/plugins/{name}/unload?force=&grace=`: the unload of `DELETE
/// /berth/plugins/{name}`, streaming its steps (calls in flight, the stop with its grace period,
/// the removal) like an upgrade; the last line is `{"Plugin": {"Name", "ContainerID"}}`.
async fn berth_unload_streamed(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let host = host(&s)?;
    let grace = unload_checks(&s, &host, &name, &q)?;
    let status = format!("Unloading plugin {name}");
    let waiting = format!("Unloading {name}");
    // A handful of steps per unload: unbounded is bounded by the operation itself.
    let (phase_tx, phase_rx) = tokio::sync::mpsc::unbounded_channel();
    let op = async move {
        let progress = move |p: String| {
            let _ = phase_tx.send(p);
        };
        let record = host.unload_with_progress(&name, grace, &progress).await?;
        Ok(OpLine::Unloaded(Unloaded {
            name: record.name,
            container_id: record.container_id,
        }))
    };
    Ok(stream_op(status, waiting, Some(phase_rx), op))
}
