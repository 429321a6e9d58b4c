//! `/networks/...`: list and inspect; create, remove, connect and disconnect answer with the
//! network layer's reasons (only the built-in networks exist today).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_networks::Network;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{self, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(connect))
}

fn network_json(s: &AppState, n: &Network, verbose: bool) -> Value {
    let mut containers = serde_json::Map::new();
    if verbose {
        for v in s
            .engine
            .list(true, false)
            .iter()
            .filter(|v| v.network == n.name && v.state.status.is_active())
        {
            containers.insert(
                v.config.id.clone(),
                json!({"Name": v.config.name, "EndpointID": "", "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}),
            );
        }
    }
    json!({
        "Name": n.name, "Id": n.id, "Created": n.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "Scope": "local", "Driver": n.driver, "EnableIPv4": true, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": containers, "Options": n.options, "Labels": n.labels
    })
}

async fn list(State(s): State<AppState>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    let filters = q.filters()?;
    let nets = s.engine.networks.list();
    Ok(Json(
        nets.iter()
            .filter(|n| {
                filters.iter().all(|(k, vals)| {
                    vals.is_empty()
                        || vals.iter().any(|v| match k.as_str() {
                            "name" => n.name.contains(v.as_str()),
                            "id" => n.id.starts_with(v.as_str()),
                            "driver" => &n.driver == v,
                            _ => true,
                        })
                })
            })
            .map(|n| network_json(&s, n, false))
            .collect(),
    ))
}

async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(network_json(&s, &s.engine.networks.get(&id)?, true)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
}

async fn create(State(s): State<AppState>, body: bytes::Bytes) -> ApiResult<Json<Value>> {
    let body: CreateBody = extract::parse_json::<Option<CreateBody>>(&body)?.unwrap_or_default();
    let name = body.name.unwrap_or_default();
    berth_state::validate_name("network", &name)?;
    if s.engine.networks.get(&name).is_ok() {
        return Err(ApiError::new(
            berth_state::ErrorKind::Conflict,
            format!("network with name {name} already exists"),
        ));
    }
    let n = s
        .engine
        .networks
        .create(&name, body.driver.as_deref().unwrap_or(""))?;
    Ok(Json(json!({"Id": n.id, "Warning": ""})))
}

async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    s.engine.networks.remove(&id)?;
    Ok(Json(json!({})))
}

async fn connect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        container: Option<String>,
    }
    let n = s.engine.networks.get(&id)?;
    let body: Body = extract::parse_json::<Option<Body>>(&body)?.unwrap_or_default();
    let c = s
        .engine
        .container(body.container.as_deref().unwrap_or(""))?;
    Err(ApiError::new(
        berth_state::ErrorKind::Forbidden,
        format!(
            "container {} cannot be connected to or disconnected from network {}: the built-in networks are chosen at create time (--net)",
            c.config.name, n.name
        ),
    ))
}
