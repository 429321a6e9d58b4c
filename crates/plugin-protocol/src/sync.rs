//! The v2 `sync` message (Berth's catch-up, `docs/protocol.md#v2-sync`): after a v2 plugin that
//! subscribed to `sync` shakes hands (it was loaded, the daemon booted, its container restarted, or
//! it was upgraded), the engine sends `POST /v2/sync` with a [`SyncRequest`] listing the objects the
//! plugin handles, so it can reconcile its own state with the engine's. The reply is
//! `{"Err": ""}`; a 404 means the plugin does not implement it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lenient::nullable;

/// `POST /v2/sync`.
pub const V2_SYNC_PATH: &str = "/v2/sync";
/// The extension point name (`InterestedIn: ["sync"]`, `Subscriptions.sync`).
pub const SYNC: &str = "sync";

/// Why the engine sends a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncReason {
    /// `plugin load` (or a driver found by discovery and loaded).
    Load,
    /// The daemon started and brought the plugin up again (after the owed tear-downs were sent).
    Boot,
    /// The plugin's container exited and was restarted by its restart policy.
    Restart,
    /// `plugin upgrade`: the new plugin was swapped in.
    Upgrade,
}

impl SyncReason {
    /// Every reason.
    pub const ALL: [SyncReason; 4] = [Self::Load, Self::Boot, Self::Restart, Self::Upgrade];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Boot => "boot",
            Self::Restart => "restart",
            Self::Upgrade => "upgrade",
        }
    }
}

/// `Subscriptions.sync` in a v2 handshake: `{}` (every reason) or `{"Reasons": ["restart"]}`.
/// Unknown reasons are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncSubscription {
    /// The reasons wanted; empty = all of them.
    #[serde(
        rename = "Reasons",
        deserialize_with = "crate::lenient::known_words",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reasons: Vec<SyncReason>,
}

impl SyncSubscription {
    /// Whether a sync for `reason` is wanted.
    pub fn wants(&self, reason: SyncReason) -> bool {
        self.reasons.is_empty() || self.reasons.contains(&reason)
    }
}

/// Body of `POST /v2/sync`: everything of the engine's the plugin handles, as the engine sees it
/// when the sync is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncRequest {
    /// Why this sync is sent.
    #[serde(rename = "Reason", skip_serializing_if = "Option::is_none")]
    pub reason: Option<SyncReason>,
    /// The name the engine knows the plugin by (the driver name of the objects below).
    #[serde(rename = "Plugin", deserialize_with = "nullable")]
    pub plugin: String,
    /// Volumes whose driver is this plugin.
    #[serde(rename = "Volumes", deserialize_with = "nullable")]
    pub volumes: Vec<SyncVolume>,
    /// Networks whose driver or IPAM driver is this plugin.
    #[serde(rename = "Networks", deserialize_with = "nullable")]
    pub networks: Vec<SyncNetwork>,
    /// Every container that mounts one of those volumes or is connected to one of those
    /// networks, running or not.
    #[serde(rename = "Containers", deserialize_with = "nullable")]
    pub containers: Vec<SyncContainer>,
}

/// One volume in a [`SyncRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncVolume {
    /// Volume name (as in `VolumeDriver.Create`).
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    /// The mountpoint the engine last got from the driver (empty if never mounted).
    #[serde(rename = "Mountpoint", deserialize_with = "nullable")]
    pub mountpoint: String,
    /// The options given at create.
    #[serde(rename = "Options", deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
    /// The volume's labels.
    #[serde(rename = "Labels", deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// The mount the engine holds now (`null`: not mounted).
    #[serde(rename = "Mount", skip_serializing_if = "Option::is_none")]
    pub mount: Option<SyncMount>,
}

/// A volume's current mount: the `ID` sent with `VolumeDriver.Mount` (and to be sent with its
/// `Unmount`) and the containers sharing it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncMount {
    /// The mount id.
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    /// Ids of the containers using the mount.
    #[serde(rename = "Containers", deserialize_with = "nullable")]
    pub containers: Vec<String>,
}

/// One network in a [`SyncRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncNetwork {
    /// Network id (as in `NetworkDriver.CreateNetwork`).
    #[serde(rename = "NetworkID", deserialize_with = "nullable")]
    pub network_id: String,
    /// Network name.
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    /// The network driver.
    #[serde(rename = "Driver", deserialize_with = "nullable")]
    pub driver: String,
    /// `-o` options given at create.
    #[serde(rename = "Options", deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
    /// The address pool.
    #[serde(rename = "IPAM", deserialize_with = "nullable")]
    pub ipam: SyncIpam,
    /// Endpoints wired now (one per running member).
    #[serde(rename = "Endpoints", deserialize_with = "nullable")]
    pub endpoints: Vec<SyncEndpoint>,
}

/// A network's address pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncIpam {
    /// IPAM driver (`default` = the built-in one).
    #[serde(rename = "Driver", deserialize_with = "nullable")]
    pub driver: String,
    /// The pool id the IPAM driver granted (`RequestPool`), empty with the built-in IPAM.
    #[serde(rename = "PoolID", deserialize_with = "nullable")]
    pub pool_id: String,
    /// CIDR subnet.
    #[serde(rename = "Subnet", deserialize_with = "nullable")]
    pub subnet: String,
    /// Gateway address.
    #[serde(rename = "Gateway", deserialize_with = "nullable")]
    pub gateway: String,
}

/// One endpoint in a [`SyncNetwork`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncEndpoint {
    /// Endpoint id (as in `CreateEndpoint`, `Join`, `Leave`, `DeleteEndpoint`).
    #[serde(rename = "EndpointID", deserialize_with = "nullable")]
    pub endpoint_id: String,
    /// The container it belongs to.
    #[serde(rename = "ContainerID", deserialize_with = "nullable")]
    pub container_id: String,
    /// Its address, CIDR (as in `RequestAddress`'s reply).
    #[serde(rename = "Address", deserialize_with = "nullable")]
    pub address: String,
    /// Its MAC address (empty when the driver moved no interface in).
    #[serde(rename = "MacAddress", deserialize_with = "nullable")]
    pub mac_address: String,
}

/// One container in a [`SyncRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncContainer {
    /// Container id.
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    /// Container name (without the leading `/`).
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    /// `created`, `running`, `restarting`, `exited`, … (the Engine API's `State.Status`).
    #[serde(rename = "State", deserialize_with = "nullable")]
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shape_round_trips_and_decodes_leniently() {
        let req = SyncRequest {
            reason: Some(SyncReason::Restart),
            plugin: "rec".into(),
            volumes: vec![SyncVolume {
                name: "v".into(),
                mountpoint: "/m/v".into(),
                mount: Some(SyncMount {
                    id: "abc".into(),
                    containers: vec!["c1".into()],
                }),
                ..Default::default()
            }],
            networks: vec![SyncNetwork {
                network_id: "n1".into(),
                endpoints: vec![SyncEndpoint {
                    endpoint_id: "e1".into(),
                    container_id: "c1".into(),
                    address: "10.9.0.2/24".into(),
                    mac_address: String::new(),
                }],
                ..Default::default()
            }],
            containers: vec![SyncContainer {
                id: "c1".into(),
                name: "web".into(),
                state: "running".into(),
            }],
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["Reason"], "restart");
        assert_eq!(json["Volumes"][0]["Mount"]["ID"], "abc");
        assert_eq!(json["Networks"][0]["Endpoints"][0]["EndpointID"], "e1");
        assert_eq!(json["Containers"][0]["State"], "running");
        let back: SyncRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, req);
        let sparse: SyncRequest =
            serde_json::from_str(r#"{"Reason":"boot","Volumes":null,"Extra":1}"#).unwrap();
        assert_eq!(sparse.reason, Some(SyncReason::Boot));
        assert!(sparse.volumes.is_empty());
    }

    #[test]
    fn a_subscription_without_reasons_wants_all_and_unknown_reasons_are_ignored() {
        let all: SyncSubscription = serde_json::from_str("{}").unwrap();
        assert!(SyncReason::ALL.iter().all(|r| all.wants(*r)));
        let some: SyncSubscription =
            serde_json::from_str(r#"{"Reasons":["Restart","sometimes",3]}"#).unwrap();
        assert_eq!(some.reasons, vec![SyncReason::Restart]);
        assert!(!some.wants(SyncReason::Load));
    }
}
