//! The endpoint settings clients send for one network: `NetworkingConfig.EndpointsConfig.<net>`
//! of container create and `EndpointConfig` of `network connect` (Docker's
//! `EndpointSettings`, the parts a client sets), and their translation to the static IPv4
//! address and the network layer's [`EndpointConfig`].

use std::collections::BTreeMap;

use berth_networks::EndpointConfig;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EndpointIpamBody {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
    #[serde(rename = "IPv6Address")]
    ipv6_address: Option<String>,
    #[serde(rename = "LinkLocalIPs")]
    link_local_ips: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EndpointBody {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpamBody>,
    links: Option<Vec<String>>,
    aliases: Option<Vec<String>>,
    driver_opts: Option<BTreeMap<String, String>>,
    mac_address: Option<String>,
}

impl EndpointBody {
    /// The static IPv4 address asked for (empty = none), the aliases, and the other settings.
    pub(crate) fn into_parts(self) -> (String, Vec<String>, EndpointConfig) {
        let ipam = self.ipam_config.unwrap_or_default();
        (
            ipam.ipv4_address.unwrap_or_default(),
            self.aliases.unwrap_or_default(),
            EndpointConfig {
                links: self.links.unwrap_or_default(),
                driver_opts: self.driver_opts.unwrap_or_default(),
                ipv6_address: ipam.ipv6_address.unwrap_or_default(),
                link_local_ips: ipam.link_local_ips.unwrap_or_default(),
                mac_address: self.mac_address.unwrap_or_default(),
            },
        )
    }
}

/// `NetworkingConfig` of container create.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NetworkingConfigBody {
    endpoints_config: Option<BTreeMap<String, Option<EndpointBody>>>,
}

impl NetworkingConfigBody {
    /// The settings for the container's network `mode`: the entry of that name, else the only
    /// one. More than one entry is refused as Docker refuses it before API 1.44 (a container is
    /// created on one network; `network connect` adds the others).
    pub(crate) fn for_mode(self, mode: &str) -> ApiResult<(String, Vec<String>, EndpointConfig)> {
        let mut eps = self.endpoints_config.unwrap_or_default();
        if eps.len() > 1 {
            let names: Vec<&str> = eps.keys().map(String::as_str).collect();
            return Err(ApiError::bad_request(format!(
                "Container cannot be connected to network endpoints: {}",
                names.join(", ")
            )));
        }
        let ep = match eps.remove(mode) {
            Some(ep) => ep,
            None => eps.into_values().next().flatten(),
        };
        Ok(ep.map(EndpointBody::into_parts).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_endpoint_only() {
        let two: NetworkingConfigBody =
            serde_json::from_str(r#"{"EndpointsConfig": {"a": {"Aliases": ["x"]}, "bar": {}}}"#)
                .unwrap();
        assert_eq!(
            two.for_mode("a").unwrap_err().message,
            "Container cannot be connected to network endpoints: a, bar"
        );
        let one: NetworkingConfigBody = serde_json::from_str(
            r#"{"EndpointsConfig": {"n": {"Aliases": ["x"], "IPAMConfig": {"IPv4Address": "10.0.0.5"},
                "DriverOpts": {"k": "v"}, "MacAddress": "02:42:ac:11:00:02"}}}"#,
        )
        .unwrap();
        let (ip, aliases, cfg) = one.for_mode("other").unwrap();
        assert_eq!(ip, "10.0.0.5");
        assert_eq!(aliases, ["x"]);
        assert_eq!(cfg.mac_address, "02:42:ac:11:00:02");
        assert_eq!(cfg.driver_opts.get("k").map(String::as_str), Some("v"));
    }
}
