//! Published ports on the wire: `HostConfig.PortBindings` in a create body (parsed into the
//! engine's [`PortBinding`]s), and how they show: `Ports` in `GET /containers/json`,
//! `HostConfig.PortBindings` and `NetworkSettings.Ports` in inspect (what `docker port` reads).

use std::collections::BTreeMap;

use berth_engine::ContainerView;
use berth_engine::ports::{PortBinding, Published};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use crate::error::ApiResult;

/// One host side of a binding as clients send it (`HostIp`/`HostPort` may be missing or empty).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostPortBody {
    host_ip: Option<String>,
    host_port: Option<String>,
}

/// `HostConfig.PortBindings`: `"80/tcp"` → a list (or `null`) of host sides.
pub type PortBindingsBody = BTreeMap<String, Option<Vec<HostPortBody>>>;

/// The bindings of a create body (400 naming the bad one).
pub fn bindings(body: Option<PortBindingsBody>) -> ApiResult<Vec<PortBinding>> {
    let map: BTreeMap<String, Vec<(String, String)>> = body
        .unwrap_or_default()
        .into_iter()
        .map(|(key, hosts)| {
            let hosts = hosts
                .unwrap_or_default()
                .into_iter()
                .map(|h| {
                    (
                        h.host_ip.unwrap_or_default(),
                        h.host_port.unwrap_or_default(),
                    )
                })
                .collect();
            (key, hosts)
        })
        .collect();
    Ok(berth_engine::ports::parse(&map)?)
}

/// `HostConfig.PortBindings` as the client gave them.
pub fn host_config_json(bindings: &[PortBinding]) -> Value {
    let mut out = Map::new();
    for b in bindings {
        let entry = out.entry(b.key()).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({
                "HostIp": b.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "HostPort": if b.host_port == 0 { String::new() } else { b.host_port.to_string() },
            }));
        }
    }
    Value::Object(out)
}

fn published(s: &AppState, v: &ContainerView) -> Vec<Published> {
    s.engine.published_ports(&v.config.id)
}

/// `NetworkSettings.Ports`: each bound port with its host sides while the container runs.
pub fn settings_json(s: &AppState, v: &ContainerView) -> Value {
    let mut out = Map::new();
    for p in published(s, v) {
        let entry = out.entry(p.binding.key()).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({
                "HostIp": p.binding.host_ip_str(),
                "HostPort": p.host_port.to_string(),
            }));
        }
    }
    Value::Object(out)
}

/// `Ports` of a `GET /containers/json` entry.
pub fn summary_json(s: &AppState, v: &ContainerView) -> Value {
    Value::Array(
        published(s, v)
            .into_iter()
            .map(|p| {
                json!({
                    "IP": p.binding.host_ip_str(),
                    "PrivatePort": p.binding.container_port,
                    "PublicPort": p.host_port,
                    "Type": p.binding.proto.as_str(),
                })
            })
            .collect(),
    )
}
