//! The MVP handshake families and their extension-point messages.
//!
//! - v1 exactly as the seed: `POST /v1/handshake` (empty body) → [`HandshakeV1`]; volume
//!   `POST /v1/volume/volumes` [`VolumeMessage`] → [`VolumeMessage`]; plus Berth's v1-style network
//!   ([`NetworkMessage`] on `/v1/network/<event>`) and api (Powerstrip messages on
//!   `/v1/api/pre-hook`, `/v1/api/post-hook`) shapes, which the seed left open.
//! - v2, Berth's own: `POST /v2/handshake` with a [`HandshakeV2Request`] → [`HandshakeV2`], which adds
//!   per-extension-point [`Subscriptions`], a plugin version, a requested deadline and failure policy;
//!   messages go to `/v2/<point>/<event>`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::lenient::nullable;
use crate::pattern::ApiPattern;
use crate::{FailurePolicy, Protocol};

/// `POST /v1/handshake`.
pub const V1_HANDSHAKE_PATH: &str = "/v1/handshake";
/// `POST /v2/handshake`.
pub const V2_HANDSHAKE_PATH: &str = "/v2/handshake";
/// The seed's v1 volume path.
pub const V1_VOLUME_PATH: &str = "/v1/volume/volumes";
/// The seed's second draft spells the volume path this way; tried after a 404 on [`V1_VOLUME_PATH`].
pub const V1_VOLUME_PATH_ALT: &str = "/v1/volumes";
/// v1 api pre-hook path.
pub const V1_API_PRE_PATH: &str = "/v1/api/pre-hook";
/// v1 api post-hook path.
pub const V1_API_POST_PATH: &str = "/v1/api/post-hook";
/// v2 api pre-hook path.
pub const V2_API_PRE_PATH: &str = "/v2/api/pre-hook";
/// v2 api post-hook path.
pub const V2_API_POST_PATH: &str = "/v2/api/post-hook";

/// Extension point names as they appear in `InterestedIn`.
pub const VOLUME: &str = "volume";
/// See [`VOLUME`].
pub const NETWORK: &str = "network";
/// See [`VOLUME`].
pub const API: &str = "api";
/// See [`VOLUME`] (v2 only: the [`crate::sync`] message).
pub const SYNC: &str = crate::sync::SYNC;

/// Whether a hook runs before the operation (and may change or abort it) or after it (notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Runs before the operation, in load order; may rewrite its input; a failure aborts.
    Before,
    /// Runs after the operation, in reverse load order; a failure is a warning.
    After,
}

/// Volume lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeEvent {
    /// Container create resolves a bind source (before; chained; may rewrite `HostPath`).
    Create,
    /// Container start resolves the bind source again (before; chained; may rewrite `HostPath`).
    Start,
    /// The container stopped (after; reverse order).
    Stop,
    /// The container was removed (after; reverse order).
    Remove,
}

impl VolumeEvent {
    /// All volume events.
    pub const ALL: [VolumeEvent; 4] = [Self::Create, Self::Start, Self::Stop, Self::Remove];

    /// Lower-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Remove => "remove",
        }
    }

    /// Before or after the operation.
    pub fn timing(self) -> Timing {
        match self {
            Self::Create | Self::Start => Timing::Before,
            Self::Stop | Self::Remove => Timing::After,
        }
    }

    /// The path this event is sent to for a plugin that negotiated `protocol`. v1 plugins only get
    /// the seed's `create`/`start` resolution call; `Activate` plugins use `VolumeDriver.*` instead.
    pub fn path(self, protocol: Protocol) -> Option<String> {
        match (protocol, self) {
            (Protocol::V2, e) => Some(format!("/v2/volume/{}", e.as_str())),
            (Protocol::V1, Self::Create | Self::Start) => Some(V1_VOLUME_PATH.to_owned()),
            _ => None,
        }
    }
}

/// Network lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkEvent {
    /// `network create` (before; chained; may fill `Subnet`, `Gateway`, `Options`).
    Create,
    /// A container joins a network (before; chained; may choose `IPAddress`, `MacAddress`).
    Connect,
    /// A container left a network (after; reverse order).
    Disconnect,
    /// `network rm` (after; reverse order).
    Delete,
}

impl NetworkEvent {
    /// All network events.
    pub const ALL: [NetworkEvent; 4] =
        [Self::Create, Self::Connect, Self::Disconnect, Self::Delete];

    /// Lower-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Connect => "connect",
            Self::Disconnect => "disconnect",
            Self::Delete => "delete",
        }
    }

    /// Before or after the operation.
    pub fn timing(self) -> Timing {
        match self {
            Self::Create | Self::Connect => Timing::Before,
            Self::Disconnect | Self::Delete => Timing::After,
        }
    }

    /// The path of this event for `protocol` (`/v1/network/<event>` or `/v2/network/<event>`).
    pub fn path(self, protocol: Protocol) -> Option<String> {
        match protocol {
            Protocol::V2 => Some(format!("/v2/network/{}", self.as_str())),
            Protocol::V1 => Some(format!("/v1/network/{}", self.as_str())),
            Protocol::Activate => None,
        }
    }
}

/// `POST /v1/handshake` reply (the seed's shape; `PluginName` accepted for `Name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandshakeV1 {
    /// Extension points: `volume`, `network`, `api`.
    #[serde(rename = "InterestedIn", deserialize_with = "nullable")]
    pub interested_in: Vec<String>,
    /// Short human-readable plugin name.
    #[serde(rename = "Name", alias = "PluginName", deserialize_with = "nullable")]
    pub name: String,
    /// Author.
    #[serde(rename = "Author", deserialize_with = "nullable")]
    pub author: String,
    /// Organisation.
    #[serde(rename = "Org", deserialize_with = "nullable")]
    pub org: String,
    /// Website.
    #[serde(rename = "Website", deserialize_with = "nullable")]
    pub website: String,
}

/// Body of `POST /v2/handshake`: what the engine offers, so a plugin can adapt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandshakeV2Request {
    /// Engine name, `berth`.
    #[serde(rename = "Engine", deserialize_with = "nullable")]
    pub engine: String,
    /// Engine version.
    #[serde(rename = "EngineVersion", deserialize_with = "nullable")]
    pub engine_version: String,
    /// Handshake versions the engine speaks, highest first (`[2, 1]`).
    #[serde(rename = "ProtocolVersions", deserialize_with = "nullable")]
    pub protocol_versions: Vec<u32>,
    /// Extension points and the events/hook kinds the engine can send for each.
    #[serde(rename = "ExtensionPoints", deserialize_with = "nullable")]
    pub extension_points: BTreeMap<String, Vec<String>>,
    /// Default per-call deadline the engine applies when the plugin requests none.
    #[serde(rename = "DefaultDeadlineMs", deserialize_with = "nullable")]
    pub default_deadline_ms: u64,
}

impl HandshakeV2Request {
    /// What this engine offers.
    pub fn berth(engine_version: &str, default_deadline_ms: u64) -> Self {
        let mut points = BTreeMap::new();
        points.insert(
            VOLUME.to_owned(),
            VolumeEvent::ALL
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
        );
        points.insert(
            NETWORK.to_owned(),
            NetworkEvent::ALL
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
        );
        points.insert(API.to_owned(), vec!["pre".to_owned(), "post".to_owned()]);
        points.insert(
            SYNC.to_owned(),
            crate::sync::SyncReason::ALL
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        );
        Self {
            engine: "berth".to_owned(),
            engine_version: engine_version.to_owned(),
            protocol_versions: vec![2, 1],
            extension_points: points,
            default_deadline_ms,
        }
    }
}

/// `POST /v2/handshake` reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandshakeV2 {
    /// Must be 2 (0/missing is read as 2).
    #[serde(rename = "ProtocolVersion", deserialize_with = "nullable")]
    pub protocol_version: u32,
    /// Plugin name (`PluginName` accepted).
    #[serde(rename = "Name", alias = "PluginName", deserialize_with = "nullable")]
    pub name: String,
    /// Plugin version (free text, shown by `plugin ls`).
    #[serde(rename = "Version", deserialize_with = "nullable")]
    pub version: String,
    /// Author.
    #[serde(rename = "Author", deserialize_with = "nullable")]
    pub author: String,
    /// Organisation.
    #[serde(rename = "Org", deserialize_with = "nullable")]
    pub org: String,
    /// Website.
    #[serde(rename = "Website", deserialize_with = "nullable")]
    pub website: String,
    /// Extension points. A point listed here without an entry in `Subscriptions` gets every event.
    #[serde(rename = "InterestedIn", deserialize_with = "nullable")]
    pub interested_in: Vec<String>,
    /// What the plugin wants per extension point.
    #[serde(rename = "Subscriptions", deserialize_with = "nullable")]
    pub subscriptions: Subscriptions,
    /// Requested per-call deadline; the engine's load option wins when given.
    #[serde(rename = "DeadlineMs", skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Requested failure policy; the engine's load option wins when given.
    #[serde(rename = "FailurePolicy", skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
}

impl HandshakeV2 {
    /// The effective subscriptions: explicit ones, plus "everything" for each point listed in
    /// `InterestedIn` without an explicit entry.
    pub fn effective_subscriptions(&self) -> Subscriptions {
        let mut subs = self.subscriptions.clone();
        let all = Subscriptions::all_for(&self.interested_in);
        if subs.volume.is_none() {
            subs.volume = all.volume;
        }
        if subs.network.is_none() {
            subs.network = all.network;
        }
        if subs.api.is_none() {
            subs.api = all.api;
        }
        if subs.sync.is_none() {
            subs.sync = all.sync;
        }
        subs
    }
}

/// Event subscription of the `volume` or `network` extension point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    bound(
        serialize = "E: Serialize",
        deserialize = "E: serde::de::DeserializeOwned"
    )
)]
pub struct EventSubscription<E> {
    /// Events wanted; unknown names are ignored.
    #[serde(rename = "Events", deserialize_with = "crate::lenient::known_words")]
    pub events: Vec<E>,
}

impl<E> Default for EventSubscription<E> {
    fn default() -> Self {
        Self { events: Vec::new() }
    }
}

/// Subscription of the `api` extension point: `METHOD /path/glob` patterns for pre- and post-hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiSubscription {
    /// Requests whose pre-hook the plugin wants.
    #[serde(rename = "Pre", deserialize_with = "nullable")]
    pub pre: Vec<ApiPattern>,
    /// Requests whose post-hook the plugin wants.
    #[serde(rename = "Post", deserialize_with = "nullable")]
    pub post: Vec<ApiPattern>,
    /// `BodyJSON`: send JSON bodies as JSON values in `BodyJSON` rather than as text in `Body`
    /// ([`crate::powerstrip::BodyForm::Json`]).
    #[serde(rename = "BodyJSON", skip_serializing_if = "std::ops::Not::not")]
    pub body_json: bool,
}

/// What a plugin receives, per extension point. `None` = not interested in that point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Subscriptions {
    /// Volume events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<EventSubscription<VolumeEvent>>,
    /// Network events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<EventSubscription<NetworkEvent>>,
    /// Api hooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSubscription>,
    /// The v2 `sync` message ([`crate::sync`]); never set for v1 plugins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::SyncSubscription>,
}

impl Subscriptions {
    /// Every event and every request, for each point named in `interests` (v1 semantics: "every
    /// event should be sent to every plugin registered for that subsystem"). Unknown names ignored.
    pub fn all_for(interests: &[String]) -> Self {
        let has = |p: &str| {
            interests
                .iter()
                .any(|i| i.eq_ignore_ascii_case(p) || i.eq_ignore_ascii_case(&format!("{p}s")))
        };
        Self {
            volume: has(VOLUME).then(|| EventSubscription {
                events: VolumeEvent::ALL.to_vec(),
            }),
            network: has(NETWORK).then(|| EventSubscription {
                events: NetworkEvent::ALL.to_vec(),
            }),
            api: has(API).then(|| ApiSubscription {
                pre: vec![ApiPattern::any()],
                post: vec![ApiPattern::any()],
                body_json: false,
            }),
            sync: has(SYNC).then(crate::sync::SyncSubscription::default),
        }
    }

    /// Whether the plugin wants `event`.
    pub fn wants_volume(&self, event: VolumeEvent) -> bool {
        self.volume
            .as_ref()
            .is_some_and(|s| s.events.contains(&event))
    }

    /// Whether the plugin wants `event`.
    pub fn wants_network(&self, event: NetworkEvent) -> bool {
        self.network
            .as_ref()
            .is_some_and(|s| s.events.contains(&event))
    }

    /// Whether the plugin wants the pre-hook of `method path`.
    pub fn wants_api_pre(&self, method: &str, path: &str) -> bool {
        self.api
            .as_ref()
            .is_some_and(|s| s.pre.iter().any(|p| p.matches(method, path)))
    }

    /// Whether the plugin wants the post-hook of `method path`.
    pub fn wants_api_post(&self, method: &str, path: &str) -> bool {
        self.api
            .as_ref()
            .is_some_and(|s| s.post.iter().any(|p| p.matches(method, path)))
    }

    /// The form JSON bodies of api hooks are sent in: `BodyJSON` when the plugin asked for it.
    pub fn api_body_form(&self) -> crate::powerstrip::BodyForm {
        if self.api.as_ref().is_some_and(|s| s.body_json) {
            crate::powerstrip::BodyForm::Json
        } else {
            crate::powerstrip::BodyForm::Text
        }
    }

    /// Whether the plugin wants a sync sent for `reason`.
    pub fn wants_sync(&self, reason: crate::sync::SyncReason) -> bool {
        self.sync.as_ref().is_some_and(|s| s.wants(reason))
    }

    /// The extension points with a subscription, as `InterestedIn` names.
    pub fn interests(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.volume.is_some() {
            v.push(VOLUME.to_owned());
        }
        if self.network.is_some() {
            v.push(NETWORK.to_owned());
        }
        if self.api.is_some() {
            v.push(API.to_owned());
        }
        if self.sync.is_some() {
            v.push(SYNC.to_owned());
        }
        v
    }
}

/// The volume message. v1 (the seed): request and reply are exactly `{HostPath, ContainerID}`; the
/// optional fields are only sent to v2 plugins. A reply without `HostPath` (or with `""`) leaves the
/// path unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeMessage {
    /// The bind source on the host.
    #[serde(rename = "HostPath", deserialize_with = "nullable")]
    pub host_path: String,
    /// The container's full id.
    #[serde(
        rename = "ContainerID",
        alias = "ContainerId",
        deserialize_with = "nullable"
    )]
    pub container_id: String,
    /// v2 only: the event.
    #[serde(rename = "Event", skip_serializing_if = "Option::is_none")]
    pub event: Option<VolumeEvent>,
    /// v2 only: the mount destination inside the container.
    #[serde(rename = "ContainerPath", skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// v2 only: whether the mount is read-only.
    #[serde(rename = "ReadOnly", skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Error text in a reply (non-empty = failure).
    #[serde(rename = "Err", skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
}

impl VolumeMessage {
    /// The seed's v1 request.
    pub fn v1(host_path: impl Into<String>, container_id: impl Into<String>) -> Self {
        Self {
            host_path: host_path.into(),
            container_id: container_id.into(),
            ..Self::default()
        }
    }
}

/// The network message, v1 style (Berth's definition; the seed left it open): one shape for every
/// event, fields that do not apply are omitted. Replies use the same shape: a plugin may fill or
/// change `Subnet`, `Gateway` and `Options` on `create`, and `IPAddress`, `MacAddress`, `Gateway` on
/// `connect`; omitted fields leave the value unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkMessage {
    /// The event (also implied by the path).
    #[serde(rename = "Event", skip_serializing_if = "Option::is_none")]
    pub event: Option<NetworkEvent>,
    /// Network id.
    #[serde(rename = "NetworkID", skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// Network name.
    #[serde(rename = "NetworkName", skip_serializing_if = "Option::is_none")]
    pub network_name: Option<String>,
    /// The network's driver.
    #[serde(rename = "Driver", skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Subnet in CIDR form.
    #[serde(rename = "Subnet", skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Gateway IP.
    #[serde(rename = "Gateway", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Driver options (`-o k=v`).
    #[serde(rename = "Options", skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    /// Container id (connect/disconnect).
    #[serde(rename = "ContainerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Path of the container's network namespace (connect/disconnect).
    #[serde(rename = "SandboxKey", skip_serializing_if = "Option::is_none")]
    pub sandbox_key: Option<String>,
    /// The container's address in CIDR form (connect/disconnect).
    #[serde(rename = "IPAddress", skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The container's MAC address.
    #[serde(rename = "MacAddress", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Error text in a reply.
    #[serde(rename = "Err", skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
}

impl NetworkMessage {
    /// Overlays the fields a plugin's reply set on `self` (chaining).
    pub fn apply_reply(&mut self, reply: NetworkMessage) {
        macro_rules! take {
            ($($f:ident),*) => { $( if reply.$f.is_some() { self.$f = reply.$f; } )* };
        }
        take!(subnet, gateway, options, ip_address, mac_address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_handshake_accepts_plugin_name_and_nulls() {
        let h: HandshakeV1 = serde_json::from_value(
            json!({"InterestedIn": ["volume"], "PluginName": "flocker", "Extra": 1}),
        )
        .unwrap();
        assert_eq!(h.name, "flocker");
        assert_eq!(h.interested_in, vec!["volume"]);
        let h: HandshakeV1 =
            serde_json::from_value(json!({"InterestedIn": null, "Name": "x", "Org": null}))
                .unwrap();
        assert!(h.interested_in.is_empty());
        assert_eq!(h.org, "");
    }

    #[test]
    fn v1_volume_message_is_exactly_the_seed_shape() {
        let v = serde_json::to_value(VolumeMessage::v1("/path", "abcdef123")).unwrap();
        assert_eq!(v, json!({"HostPath": "/path", "ContainerID": "abcdef123"}));
    }

    #[test]
    fn v2_handshake_effective_subscriptions() {
        let h: HandshakeV2 = serde_json::from_value(json!({
            "ProtocolVersion": 2, "Name": "p", "Version": "1.0",
            "InterestedIn": ["volume", "network"],
            "Subscriptions": {"volume": {"Events": ["Create", "bogus"]},
                              "api": {"Pre": ["POST /containers/create"], "Post": null}},
            "DeadlineMs": 1500, "FailurePolicy": "ignore"
        }))
        .unwrap();
        let s = h.effective_subscriptions();
        assert!(s.wants_volume(VolumeEvent::Create));
        assert!(!s.wants_volume(VolumeEvent::Start));
        assert!(s.wants_network(NetworkEvent::Delete));
        assert!(s.wants_api_pre("POST", "/v1.47/containers/create"));
        assert!(!s.wants_api_post("POST", "/v1.47/containers/create"));
        assert_eq!(h.failure_policy, Some(FailurePolicy::Ignore));
        assert_eq!(h.deadline_ms, Some(1500));
        assert_eq!(s.interests(), vec!["volume", "network", "api"]);
    }

    #[test]
    fn paths_per_protocol() {
        assert_eq!(
            VolumeEvent::Start.path(Protocol::V1).as_deref(),
            Some("/v1/volume/volumes")
        );
        assert_eq!(VolumeEvent::Stop.path(Protocol::V1), None);
        assert_eq!(
            VolumeEvent::Stop.path(Protocol::V2).as_deref(),
            Some("/v2/volume/stop")
        );
        assert_eq!(
            NetworkEvent::Connect.path(Protocol::V1).as_deref(),
            Some("/v1/network/connect")
        );
        assert_eq!(VolumeEvent::Create.timing(), Timing::Before);
        assert_eq!(NetworkEvent::Disconnect.timing(), Timing::After);
    }

    #[test]
    fn network_reply_overlays_only_set_fields() {
        let mut m = NetworkMessage {
            subnet: Some("10.0.0.0/24".into()),
            gateway: Some("10.0.0.1".into()),
            ..Default::default()
        };
        m.apply_reply(
            serde_json::from_value(json!({"IPAddress": "10.0.0.7/24", "Gateway": null})).unwrap(),
        );
        assert_eq!(m.ip_address.as_deref(), Some("10.0.0.7/24"));
        assert_eq!(m.gateway.as_deref(), Some("10.0.0.1"));
    }
}
