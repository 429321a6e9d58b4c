//! `/networks/...`: create (driver, IPAM config — the SDK's null-filled entries too — options,
//! labels), list (filters `name`, `id`, `driver`, `label`, `type`), inspect (with the connected
//! containers and their addresses), remove, connect (`EndpointConfig.IPAMConfig.IPv4Address`)
//! and disconnect. The network layer (`berth_networks`) does the work and gives the reasons.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_networks::{CreateNetwork, Network};
use bollard_stubs::models::{
    ConfigReference, EndpointResource, Ipam, IpamConfig, NetworkCreateResponse, NetworkInspect,
};
use serde::Deserialize;

use super::AppState;
use crate::error::ApiResult;
use crate::extract::{self, Query};
use crate::routes::endpoint::EndpointBody;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// A network in Docker's shape (inspect and the list entries): bollard's `NetworkInspect`,
/// every field set, so every key Docker sends is present.
fn network_body(s: &AppState, n: &Network) -> NetworkInspect {
    let mut containers = HashMap::new();
    for (cid, m) in &n.members {
        let Some(ep) = &m.endpoint else { continue };
        let name = s
            .engine
            .container(cid)
            .map(|c| c.name())
            .unwrap_or_else(|_| m.container_name.clone());
        containers.insert(
            cid.clone(),
            EndpointResource {
                name: Some(name),
                endpoint_id: Some(ep.id.clone()),
                mac_address: Some(ep.mac.clone()),
                ipv4_address: Some(format!("{}/{}", ep.address, ep.prefix)),
                ipv6_address: Some(String::new()),
            },
        );
    }
    let config = n
        .pool
        .iter()
        .map(|p| IpamConfig {
            subnet: Some(p.subnet.to_string()),
            gateway: Some(p.gateway.to_string()),
            ip_range: p.ip_range.map(|r| r.to_string()),
            auxiliary_addresses: (!n.aux_addresses.is_empty()).then(|| {
                n.aux_addresses
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect()
            }),
        })
        .collect();
    let map = |m: &BTreeMap<String, String>| Some(m.clone().into_iter().collect());
    NetworkInspect {
        name: Some(n.name.clone()),
        id: Some(n.id.clone()),
        created: Some(
            n.created
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        ),
        scope: Some("local".into()),
        driver: Some(n.driver.clone()),
        enable_ipv4: Some(true),
        enable_ipv6: Some(n.enable_ipv6),
        ipam: Some(Ipam {
            driver: Some(n.ipam_driver.clone()),
            config: Some(config),
            // Docker sends null when the create gave none.
            options: None,
        }),
        internal: Some(n.internal),
        attachable: Some(n.attachable),
        ingress: Some(false),
        config_from: Some(ConfigReference {
            network: Some(String::new()),
        }),
        config_only: Some(false),
        containers: Some(containers),
        options: map(&n.options),
        labels: map(&n.labels),
        ..NetworkInspect::default()
    }
}

fn matches(n: &Network, key: &str, val: &str) -> bool {
    match key {
        "name" => n.name.contains(val),
        "id" => n.id.starts_with(val),
        "driver" => n.driver == val,
        "label" => match val.split_once('=') {
            Some((k, v)) => n.labels.get(k).map(String::as_str) == Some(v),
            None => n.labels.contains_key(val),
        },
        "type" => {
            let builtin = matches!(n.name.as_str(), "bridge" | "host" | "none");
            (val == "builtin") == builtin
        }
        _ => true,
    }
}

async fn list(State(s): State<AppState>, q: Query) -> ApiResult<Json<Vec<NetworkInspect>>> {
    let filters = q.filters()?;
    let nets = s.engine.networks.list();
    Ok(Json(
        nets.iter()
            .filter(|n| {
                filters.iter().all(|(k, vals)| {
                    vals.is_empty() || vals.iter().any(|v| matches(n, k.as_str(), v.as_str()))
                })
            })
            .map(|n| network_body(&s, n))
            .collect(),
    ))
}

async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NetworkInspect>> {
    Ok(Json(network_body(&s, &s.engine.networks.get(&id)?)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct IpamConfigBody {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct IpamBody {
    driver: Option<String>,
    config: Option<Vec<Option<IpamConfigBody>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    internal: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    attachable: Option<bool>,
}

async fn create(State(s): State<AppState>, body: bytes::Bytes) -> ApiResult<Response> {
    let body: CreateBody = extract::parse_json::<Option<CreateBody>>(&body)?.unwrap_or_default();
    let ipam = body.ipam.unwrap_or_default();
    extract::driver_name("network driver", body.driver.as_deref())?;
    extract::driver_name("IPAM driver", ipam.driver.as_deref())?;
    // Only IPv4 subnets are supported; IPv6 entries are ignored.
    let v4: Vec<IpamConfigBody> = ipam
        .config
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|c| {
            c.subnet
                .as_deref()
                .is_some_and(|s| !s.is_empty() && !s.contains(':'))
        })
        .collect();
    let aux_addresses = v4
        .first()
        .and_then(|c| c.auxiliary_addresses.clone())
        .unwrap_or_default();
    let req = CreateNetwork {
        name: body.name.unwrap_or_default(),
        driver: body.driver.unwrap_or_default(),
        ipam_driver: ipam.driver.unwrap_or_default(),
        ipam_config: v4
            .into_iter()
            .filter_map(|c| Some((c.subnet?, c.gateway, c.ip_range)))
            .collect(),
        aux_addresses,
        options: body.options.unwrap_or_default(),
        labels: body.labels.unwrap_or_default(),
        internal: body.internal.unwrap_or(false),
        enable_ipv6: body.enable_ipv6.unwrap_or(false),
        attachable: body.attachable.unwrap_or(false),
    };
    let n = s.engine.networks.create(req).await?;
    s.engine.events.publish(
        "network",
        "create",
        &n.id,
        BTreeMap::from([
            ("name".to_owned(), n.name.clone()),
            ("type".to_owned(), n.driver.clone()),
        ]),
    );
    Ok((
        StatusCode::CREATED,
        Json(NetworkCreateResponse {
            id: n.id,
            warning: String::new(),
        }),
    )
        .into_response())
}

async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let n = s.engine.networks.remove(&id).await?;
    s.engine.events.publish(
        "network",
        "destroy",
        &n.id,
        BTreeMap::from([("name".to_owned(), n.name), ("type".to_owned(), n.driver)]),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConnectBody {
    container: Option<String>,
    endpoint_config: Option<EndpointBody>,
}

async fn connect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult<StatusCode> {
    let body: ConnectBody = extract::parse_json::<Option<ConnectBody>>(&body)?.unwrap_or_default();
    // Docker answers 404 for an unknown network before looking at the container.
    s.engine.networks.get(&id)?;
    let (ip, aliases, endpoint) = body.endpoint_config.unwrap_or_default().into_parts();
    s.engine
        .connect_with(
            &id,
            body.container.as_deref().unwrap_or(""),
            &ip,
            &aliases,
            endpoint,
        )
        .await?;
    Ok(StatusCode::OK)
}

async fn disconnect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult<StatusCode> {
    let body: ConnectBody = extract::parse_json::<Option<ConnectBody>>(&body)?.unwrap_or_default();
    s.engine.networks.get(&id)?;
    s.engine
        .disconnect(&id, body.container.as_deref().unwrap_or(""))
        .await?;
    Ok(StatusCode::OK)
}
