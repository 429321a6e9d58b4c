//! Docker's `/plugins…` endpoints (list, inspect, enable, disable) and the shape of Docker's
//! plugin object, so `docker plugin ls` and `docker plugin inspect` show Berth's plugins.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use berth_plugin_host::protocol::Protocol;
use berth_plugin_host::{PluginHost, PluginSource, PluginState, PluginStatus};
use sha2::Digest;

use super::{dependents, host, protocol_name, state_name};
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::models::plugin::{
    DockerPlugin, DockerPluginArgs, DockerPluginConfig, DockerPluginInterface, DockerPluginLinux,
    DockerPluginMount, DockerPluginNetwork, DockerPluginRootfs, DockerPluginSettings,
};
use crate::routes::AppState;

/// The Docker `Id` of a plugin: its container id, else a digest of its name.
fn docker_id(st: &PluginStatus) -> String {
    match &st.record.container_id {
        Some(id) if berth_state::is_full_id(id) => id.clone(),
        _ => hex::encode(sha2::Sha256::digest(st.record.name.as_bytes())),
    }
}

fn docker_types(st: &PluginStatus) -> Vec<String> {
    let r = &st.record;
    if r.protocol == Protocol::Activate {
        return r
            .implements
            .iter()
            .map(|i| match i.as_str() {
                "VolumeDriver" => "docker.volumedriver/1.0".to_owned(),
                "NetworkDriver" => "docker.networkdriver/1.0".to_owned(),
                "IpamDriver" => "docker.ipamdriver/1.0".to_owned(),
                "authz" | "AuthZPlugin" => "docker.authz/1.0".to_owned(),
                other => other.to_owned(),
            })
            .collect();
    }
    r.interests
        .iter()
        .map(|i| format!("berth.{i}/{}", protocol_name(r.protocol)))
        .collect()
}

/// `SRC:DST[:ro]` mounts in the shape of Docker's `PluginMount`.
fn docker_mounts(mounts: &[String]) -> Vec<DockerPluginMount> {
    mounts
        .iter()
        .map(|m| {
            let mut parts = m.splitn(3, ':');
            let source = parts.next().unwrap_or_default().to_owned();
            let destination = parts.next().unwrap_or_default().to_owned();
            let mode = if parts.next() == Some("ro") {
                "ro"
            } else {
                "rw"
            };
            DockerPluginMount {
                name: String::new(),
                description: String::new(),
                settable: Vec::new(),
                source,
                destination,
                kind: "bind",
                options: vec!["rbind", mode],
            }
        })
        .collect()
}

/// Docker's plugin object (engine-api.md §4.24).
pub fn docker_plugin(st: &PluginStatus) -> DockerPlugin {
    let r = &st.record;
    let (image, args, env) = match &r.source {
        PluginSource::Container {
            image, args, env, ..
        } => (image.clone(), args.clone(), env.clone()),
        _ => (String::new(), Vec::new(), Vec::new()),
    };
    let mut description = format!(
        "Berth {} plugin ({}): {}",
        protocol_name(r.protocol),
        state_name(st.state),
        if r.interests.is_empty() {
            r.implements.join(", ")
        } else {
            r.interests.join(", ")
        }
    );
    if !r.info.author.is_empty() {
        description.push_str(&format!(" by {}", r.info.author));
    }
    DockerPlugin {
        id: docker_id(st),
        name: format!("{}:latest", r.name),
        enabled: st.state == PluginState::Active,
        plugin_reference: image,
        settings: DockerPluginSettings {
            mounts: docker_mounts(&r.options.mounts),
            env,
            args,
            devices: Vec::new(),
        },
        config: DockerPluginConfig {
            description,
            documentation: r.info.website.clone(),
            docker_version: String::new(),
            interface: DockerPluginInterface {
                types: docker_types(st),
                socket: "plugin.sock".into(),
            },
            entrypoint: Vec::new(),
            work_dir: String::new(),
            user: BTreeMap::new(),
            network: DockerPluginNetwork {
                kind: "host".into(),
            },
            linux: DockerPluginLinux {
                capabilities: None,
                allow_all_devices: false,
                devices: None,
            },
            propagated_mount: String::new(),
            ipc_host: false,
            pid_host: false,
            mounts: None,
            env: Vec::new(),
            args: DockerPluginArgs {
                name: String::new(),
                description: String::new(),
                settable: None,
                value: None,
            },
            rootfs: DockerPluginRootfs {
                kind: "layers".into(),
                diff_ids: Vec::new(),
            },
        },
    }
}

/// Finds a plugin as Docker resolves it: `name`, `name:latest`, or its (prefix of) Id.
fn docker_find(host: &PluginHost, reference: &str) -> ApiResult<PluginStatus> {
    let name = reference.strip_suffix(":latest").unwrap_or(reference);
    let all = host.list();
    if let Some(p) = all.iter().find(|p| p.record.name == name) {
        return Ok(p.clone());
    }
    if reference.len() >= 3 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<_> = all
            .iter()
            .filter(|p| docker_id(p).starts_with(reference))
            .collect();
        if let [one] = hits[..] {
            return Ok(one.clone());
        }
    }
    Err(ApiError::not_found(format!(
        "plugin \"{reference}\" not found"
    )))
}

pub(super) async fn docker_list(State(s): State<AppState>) -> Json<Vec<DockerPlugin>> {
    match s.engine.plugins() {
        Some(h) => Json(h.list().iter().map(docker_plugin).collect()),
        None => Json(Vec::new()),
    }
}

pub(super) async fn docker_inspect(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<DockerPlugin>> {
    let h = s
        .engine
        .plugins()
        .ok_or_else(|| ApiError::not_found(format!("plugin \"{name}\" not found")))?;
    Ok(Json(docker_plugin(&docker_find(h, &name)?)))
}

pub(super) async fn docker_enable(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let h = host(&s)?;
    let p = docker_find(&h, &name)?;
    match p.state {
        PluginState::Disabled => {
            h.set_enabled(&p.record.name, true)?;
            s.engine
                .events
                .publish("plugin", "enable", &p.record.name, Default::default());
            Ok(StatusCode::OK)
        }
        PluginState::Active => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("plugin {}:latest is already enabled", p.record.name),
        }),
        // Given up on (a crash loop) or failed at boot: started and hand-shaken again.
        PluginState::Failed => {
            h.revive(&p.record.name).await?;
            s.engine
                .events
                .publish("plugin", "enable", &p.record.name, Default::default());
            Ok(StatusCode::OK)
        }
        other => Err(ApiError::new(
            berth_state::ErrorKind::Conflict,
            format!(
                "plugin {} is {}: it is still starting; wait for its handshake",
                p.record.name,
                state_name(other),
            ),
        )),
    }
}

/// Disables a plugin: it keeps its place and its container but gets no calls. Refused while
/// volumes or networks depend on it, unless `force`.
pub(super) async fn docker_disable(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let h = host(&s)?;
    let p = docker_find(&h, &name)?;
    let deps = dependents(&s, &p.record.name);
    if !deps.is_empty() && !q.bool_or("force", false)? {
        return Err(ApiError::new(
            berth_state::ErrorKind::Conflict,
            format!(
                "plugin {} is in use by {}: use --force to disable it anyway",
                p.record.name,
                deps.join(", ")
            ),
        ));
    }
    if !h.set_enabled(&p.record.name, false)? {
        return Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("plugin {}:latest is already disabled", p.record.name),
        });
    }
    s.engine
        .events
        .publish("plugin", "disable", &p.record.name, Default::default());
    Ok(StatusCode::OK)
}
