//! Port bindings as the client gives them (`HostConfig.PortBindings`: `"80/tcp"` →
//! `[{HostIp, HostPort}]`), checked at create.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The transport of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port: `[host_ip:]host_port:container_port/proto`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_port: u16,
    pub proto: Proto,
    /// `None`: every address (`0.0.0.0`).
    pub host_ip: Option<Ipv4Addr>,
    /// 0: a free port chosen at start.
    pub host_port: u16,
}

impl PortBinding {
    /// `80/tcp`, the key Docker uses.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }

    /// The host address as Docker shows it.
    pub fn host_ip_str(&self) -> String {
        self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string()
    }
}

/// Parses Docker's `PortBindings` map (values as the client sent them; `null` lists and empty
/// `HostIp`/`HostPort` allowed). IPv6 host addresses and port ranges are refused with 400.
pub fn parse(
    map: &BTreeMap<String, Vec<(String, String)>>,
) -> Result<Vec<PortBinding>, EngineError> {
    let mut out = Vec::new();
    for (key, hosts) in map {
        let bad = |why: &str| EngineError::Invalid(format!("invalid port binding {key:?}: {why}"));
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => return Err(bad(&format!("protocol {other:?} (tcp or udp)"))),
        };
        let container_port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("the container port must be 1-65535")),
        };
        for (ip, host_port) in hosts {
            let host_ip = match ip.as_str() {
                "" | "0.0.0.0" => None,
                ip => Some(
                    ip.parse::<Ipv4Addr>()
                        .map_err(|_| bad(&format!("host address {ip:?} is not an IPv4 address")))?,
                ),
            };
            let host_port = match host_port.as_str() {
                "" => 0,
                p => p.parse::<u16>().map_err(|_| {
                    bad(&format!(
                        "host port {p:?} must be one number 0-65535 (no ranges)"
                    ))
                })?,
            };
            out.push(PortBinding {
                container_port,
                proto,
                host_ip,
                host_port,
            });
        }
    }
    out.sort();
    out.dedup();
    for (i, a) in out.iter().enumerate() {
        if a.host_port == 0 {
            continue;
        }
        let clash = out[i + 1..].iter().find(|b| {
            b.host_port == a.host_port
                && b.proto == a.proto
                && (b.host_ip.is_none() || a.host_ip.is_none() || a.host_ip == b.host_ip)
        });
        if let Some(b) = clash {
            return Err(EngineError::Invalid(format!(
                "host port {}/{} is bound twice ({} and {})",
                a.host_port,
                a.proto,
                a.key(),
                b.key()
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, Vec<(String, String)>> {
        entries
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn parses_docker_bindings() {
        let got = parse(&map(&[
            ("80/tcp", &[("127.0.0.1", "8080"), ("", "")]),
            ("53/udp", &[("0.0.0.0", "5353")]),
        ]))
        .unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.contains(&PortBinding {
            container_port: 80,
            proto: Proto::Tcp,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 8080
        }));
        assert!(got.contains(&PortBinding {
            container_port: 53,
            proto: Proto::Udp,
            host_ip: None,
            host_port: 5353
        }));
    }

    #[test]
    fn refuses_bad_bindings() {
        for (m, want) in [
            (map(&[("80/sctp", &[("", "1")])]), "sctp"),
            (map(&[("0/tcp", &[("", "1")])]), "container port"),
            (map(&[("80/tcp", &[("::1", "1")])]), "IPv4"),
            (map(&[("80/tcp", &[("", "8000-8010")])]), "no ranges"),
            (
                map(&[
                    ("80/tcp", &[("", "9000")]),
                    ("81/tcp", &[("127.0.0.1", "9000")]),
                ]),
                "twice",
            ),
        ] {
            let err = parse(&m).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // Same port, different protocols or different addresses: fine.
        parse(&map(&[
            ("80/tcp", &[("", "9000")]),
            ("80/udp", &[("", "9000")]),
        ]))
        .unwrap();
        parse(&map(&[
            ("80/tcp", &[("127.0.0.1", "9000")]),
            ("81/tcp", &[("127.0.0.2", "9000")]),
        ]))
        .unwrap();
    }
}
