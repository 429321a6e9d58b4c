//! Published ports on the wire: `HostConfig.PortBindings` in a create body (parsed into the
//! engine's [`PortBinding`]s), and how they show: `Ports` in `GET /containers/json`,
//! `HostConfig.PortBindings` and `NetworkSettings.Ports` in inspect (what `docker port` reads).

use std::collections::BTreeMap;

use berth_engine::ContainerView;
use berth_engine::ports::{PortBinding, Published};
use serde::Deserialize;
use serde_json::{Value, json};

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

/// One host side in Docker's shape: `{"HostIp": …, "HostPort": …}`.
fn host_side(ip: String, port: String) -> BTreeMap<String, String> {
    BTreeMap::from([("HostIp".to_owned(), ip), ("HostPort".to_owned(), port)])
}

/// `HostConfig.PortBindings` as the client gave them.
pub fn host_config(bindings: &[PortBinding]) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for b in bindings {
        let port = if b.host_port == 0 {
            String::new()
        } else {
            b.host_port.to_string()
        };
        let ip = b.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
        out.entry(b.key()).or_default().push(host_side(ip, port));
    }
    out
}

fn published(s: &AppState, v: &ContainerView) -> Vec<Published> {
    s.engine.published_ports(&v.config.id)
}

/// `NetworkSettings.Ports`: each bound port with its host sides while the container runs.
pub fn settings(
    s: &AppState,
    v: &ContainerView,
) -> BTreeMap<String, Option<Vec<BTreeMap<String, String>>>> {
    let mut out: BTreeMap<String, Option<Vec<_>>> = BTreeMap::new();
    for p in published(s, v) {
        out.entry(p.binding.key())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(host_side(p.binding.host_ip_str(), p.host_port.to_string()));
    }
    out
}

/// `Ports` of a `GET /containers/json` entry.
pub fn summary(s: &AppState, v: &ContainerView) -> Vec<Value> {
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
        .collect()
}
