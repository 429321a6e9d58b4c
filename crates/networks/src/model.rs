//! The network model: a network record, its members and their endpoints, the create request,
//! and the built-in networks (`bridge`, `host`, `none`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ipam::Pool;

/// How a container attached to a network gets its network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attachment {
    /// Share the host's network namespace.
    Host,
    /// A fresh network namespace with only loopback.
    Isolated,
    /// Its own namespace at [`NetworkStore::netns_path`], wired by the network's driver.
    Driver,
}

/// A running container's endpoint on a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub id: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Interface name inside the container.
    pub ifname: String,
}

/// A container connected to a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    pub container_name: String,
    /// The network of the container's `NetworkMode` (gets `eth0` and the default route).
    pub primary: bool,
    /// `--ip`: the address the container asked for.
    #[serde(default)]
    pub requested_ip: Option<Ipv4Addr>,
    /// Present while the container runs.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// The id of an endpoint being wired (recorded before the driver makes its links, replaced
    /// by `endpoint` once wired): what a crash in between left is found by it at the next boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_endpoint: Option<String>,
    /// The address leased for the pending endpoint (recorded with it): on a network with a
    /// plugin driver or IPAM, a crash before the endpoint was recorded leaves the plugins owed
    /// `Leave`, `DeleteEndpoint` and `ReleaseAddress` of it ([`crate::owed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_address: Option<Ipv4Addr>,
    /// Order of connection (interfaces are numbered in this order at start).
    #[serde(default)]
    pub seq: u64,
    /// Other names the container answers to on this network (`--network-alias`, compose
    /// service names), for the embedded resolver ([`crate::dns`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Links, driver options, IPv6/link-local addresses, MAC address as asked for.
    #[serde(default)]
    pub config: crate::EndpointConfig,
}

/// One network as the engine knows it (persisted for the non-host, non-none networks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub created: DateTime<Utc>,
    pub attachment: Attachment,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The IPAM driver's name (`default` = the built-in IPAM).
    #[serde(default = "default_ipam")]
    pub ipam_driver: String,
    #[serde(default)]
    pub pool: Option<Pool>,
    /// The pool id an IPAM plugin granted (`None` with the built-in IPAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_pool_id: Option<String>,
    /// Containers connected, by container id.
    #[serde(default)]
    pub members: BTreeMap<String, Member>,
    /// No default route for its containers: they reach each other and nothing beyond.
    #[serde(default)]
    pub internal: bool,
    /// Kept and shown; Berth assigns no IPv6 addresses (a documented difference).
    #[serde(default, rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    /// Kept and shown (every Berth network takes `network connect`).
    #[serde(default)]
    pub attachable: bool,
    /// `IPAM.Config[0].AuxiliaryAddresses`: name → address in the pool's subnet, never given to
    /// a container (what Docker reserves them for: hosts on the bridge that are not containers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// Set while plugins are being told about a create or a remove (write-ahead): a record
    /// found with it at open is not a network but a debt to its plugins ([`crate::owed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
}

/// A plugin-side step in flight on a network, recorded before its first plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// `RequestPool` / `CreateNetwork` may have been sent; the create did not complete. Owed:
    /// `DeleteNetwork` (if the pool was granted) and `ReleasePool` (if its id is recorded).
    Creating,
    /// The remove began: `ReleasePool` and `DeleteNetwork` may not all have been sent. Owed:
    /// both again, then the record goes.
    Removing,
}

impl Member {
    /// The endpoint whose tear-down this member owes its network's driver and IPAM: the wired
    /// one, else a pending one whose address was recorded (its driver calls may have been sent).
    pub fn owed_endpoint(&self, n: &Network) -> Option<Endpoint> {
        if let Some(ep) = &self.endpoint {
            return Some(ep.clone());
        }
        let (id, address, pool) = (
            self.pending_endpoint.as_ref()?,
            self.pending_address?,
            n.pool?,
        );
        Some(Endpoint {
            id: id.clone(),
            address,
            prefix: pool.subnet.prefix,
            gateway: pool.gateway,
            mac: String::new(),
            ifname: String::new(),
        })
    }
}

pub(crate) fn default_ipam() -> String {
    "default".into()
}

impl Network {
    /// Addresses leased or reserved by static requests, except those of `except` (a container id),
    /// and the auxiliary addresses.
    pub(crate) fn used(&self, except: &str) -> BTreeSet<Ipv4Addr> {
        self.members
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .flat_map(|(_, m)| {
                m.endpoint
                    .as_ref()
                    .map(|e| e.address)
                    .into_iter()
                    .chain(m.requested_ip)
            })
            .chain(self.aux_addresses.values().copied())
            .collect()
    }
}

/// A network create request, parsed from the wire.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    /// Empty = `bridge`.
    pub driver: String,
    pub ipam_driver: String,
    /// `IPAM.Config[]` entries: (Subnet, Gateway, IPRange); only the first IPv4 one is used.
    pub ipam_config: Vec<(String, Option<String>, Option<String>)>,
    /// The first entry's `AuxiliaryAddresses` (name → address), checked against the pool.
    pub aux_addresses: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub internal: bool,
    pub enable_ipv6: bool,
    pub attachable: bool,
}

pub(crate) fn builtin(name: &str, driver: &str, attachment: Attachment) -> Network {
    // Stable ids for the built-in networks, derived from their names.
    let id = hex::encode(Sha256::digest(
        format!("berth built-in network {name}").as_bytes(),
    ));
    Network {
        id,
        name: name.to_owned(),
        driver: driver.to_owned(),
        created: DateTime::<Utc>::UNIX_EPOCH,
        attachment,
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
        ipam_driver: default_ipam(),
        pool: None,
        ipam_pool_id: None,
        members: BTreeMap::new(),
        internal: false,
        enable_ipv6: false,
        attachable: false,
        aux_addresses: BTreeMap::new(),
        phase: None,
    }
}

pub(crate) const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];
