//! Docker's legacy plugin family, wire-compatible with existing plugins: `/Plugin.Activate` and the
//! `VolumeDriver.*`, `NetworkDriver.*`, `IpamDriver.*` and `AuthZPlugin.*` calls
//! (`POST /<Interface>.<Method>`, Go field names). Every struct decodes leniently: unknown keys are
//! ignored, missing keys and `null` take defaults. Replies carry `Err` (IPAM: `Error`); the host
//! checks it with [`crate::error_text`] before decoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lenient::nullable;

/// `POST /Plugin.Activate`.
pub const ACTIVATE_PATH: &str = "/Plugin.Activate";

/// `Implements` values.
pub const VOLUME_DRIVER: &str = "VolumeDriver";
/// See [`VOLUME_DRIVER`].
pub const NETWORK_DRIVER: &str = "NetworkDriver";
/// See [`VOLUME_DRIVER`].
pub const IPAM_DRIVER: &str = "IpamDriver";
/// See [`VOLUME_DRIVER`] (Docker spells it lower case).
pub const AUTHZ: &str = "authz";

/// The path of a legacy call: `/VolumeDriver.Mount`.
pub fn path(interface: &str, method: &str) -> String {
    format!("/{interface}.{method}")
}

/// `/Plugin.Activate` reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivateResponse {
    /// Driver kinds implemented.
    #[serde(rename = "Implements", deserialize_with = "nullable")]
    pub implements: Vec<String>,
}

/// A reply with nothing but the error field (`{"Err": ""}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrResponse {
    /// Error text; empty = success.
    #[serde(rename = "Err", deserialize_with = "nullable")]
    pub err: String,
}

/// Volume driver calls (`/VolumeDriver.<Method>`).
pub mod volume {
    use super::*;

    /// Interface name.
    pub const INTERFACE: &str = "VolumeDriver";

    /// `Create` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CreateRequest {
        /// Volume name.
        #[serde(rename = "Name", deserialize_with = "nullable")]
        pub name: String,
        /// `-o key=value` options; `null` when none.
        #[serde(rename = "Opts")]
        pub opts: Option<BTreeMap<String, String>>,
    }

    /// `Remove`, `Path`, `Get` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct NameRequest {
        /// Volume name.
        #[serde(rename = "Name", deserialize_with = "nullable")]
        pub name: String,
    }

    /// `Mount` and `Unmount` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct MountRequest {
        /// Volume name.
        #[serde(rename = "Name", deserialize_with = "nullable")]
        pub name: String,
        /// Mount id: 64 hex, one per mount point, repeated on its `Unmount`.
        #[serde(rename = "ID", deserialize_with = "nullable")]
        pub id: String,
    }

    /// `Mount` and `Path` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct MountResponse {
        /// Host path to bind-mount.
        #[serde(rename = "Mountpoint", deserialize_with = "nullable")]
        pub mountpoint: String,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    /// One volume in `Get`/`List` replies.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct Volume {
        /// Name.
        #[serde(rename = "Name", deserialize_with = "nullable")]
        pub name: String,
        /// Mountpoint, may be empty.
        #[serde(rename = "Mountpoint", deserialize_with = "nullable")]
        pub mountpoint: String,
        /// RFC 3339 creation time; kept as text (a bad value is not an error here).
        #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none")]
        pub created_at: Option<String>,
        /// Driver-specific status.
        #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
        pub status: Option<BTreeMap<String, Value>>,
    }

    /// `Get` reply. `Volume: null` = no such volume.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct GetResponse {
        /// The volume.
        #[serde(rename = "Volume")]
        pub volume: Option<Volume>,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    /// `List` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ListResponse {
        /// Volumes.
        #[serde(rename = "Volumes", deserialize_with = "nullable")]
        pub volumes: Vec<Volume>,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    /// `Capabilities` inner object.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct Capability {
        /// `local` or `global`; anything else reads as `local`.
        #[serde(rename = "Scope", deserialize_with = "nullable")]
        pub scope: String,
    }

    /// `Capabilities` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CapabilitiesResponse {
        /// Capabilities.
        #[serde(rename = "Capabilities", deserialize_with = "nullable")]
        pub capabilities: Capability,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }
}

/// Network driver calls (`/NetworkDriver.<Method>`).
pub mod network {
    use super::*;

    /// Interface name.
    pub const INTERFACE: &str = "NetworkDriver";

    /// `GetCapabilities` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CapabilitiesResponse {
        /// `local` or `global`.
        #[serde(rename = "Scope", deserialize_with = "nullable")]
        pub scope: String,
        /// `local`, `global` or empty (= `Scope`).
        #[serde(rename = "ConnectivityScope", deserialize_with = "nullable")]
        pub connectivity_scope: String,
        /// Whether `GwAllocCheck` should be called.
        #[serde(rename = "GwAllocChecker", deserialize_with = "nullable")]
        pub gw_alloc_checker: bool,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    /// One `IPv4Data`/`IPv6Data` entry (`Gateway` and `AuxAddresses` are CIDR).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct IpamData {
        /// Address space.
        #[serde(rename = "AddressSpace", deserialize_with = "nullable")]
        pub address_space: String,
        /// Pool CIDR.
        #[serde(rename = "Pool", deserialize_with = "nullable")]
        pub pool: String,
        /// Gateway CIDR.
        #[serde(rename = "Gateway", skip_serializing_if = "Option::is_none")]
        pub gateway: Option<String>,
        /// Auxiliary addresses.
        #[serde(rename = "AuxAddresses", skip_serializing_if = "Option::is_none")]
        pub aux_addresses: Option<BTreeMap<String, String>>,
    }

    /// `CreateNetwork` request (and `AllocateNetwork`).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CreateNetworkRequest {
        /// Network id.
        #[serde(rename = "NetworkID", deserialize_with = "nullable")]
        pub network_id: String,
        /// `com.docker.network.generic` (the `-o` map) and the boolean flags.
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, Value>,
        /// IPv4 pools.
        #[serde(rename = "IPv4Data", deserialize_with = "nullable")]
        pub ipv4_data: Vec<IpamData>,
        /// IPv6 pools.
        #[serde(rename = "IPv6Data", deserialize_with = "nullable")]
        pub ipv6_data: Vec<IpamData>,
    }

    /// `DeleteNetwork`, `FreeNetwork` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct NetworkRequest {
        /// Network id.
        #[serde(rename = "NetworkID", deserialize_with = "nullable")]
        pub network_id: String,
    }

    /// `AllocateNetwork` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct AllocateNetworkResponse {
        /// Options passed on to `CreateNetwork`.
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, String>,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    /// `GwAllocCheck` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct GwAllocCheckRequest {
        /// Network options.
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, Value>,
    }

    /// `GwAllocCheck` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct GwAllocCheckResponse {
        /// Reserve no IPv4 gateway.
        #[serde(rename = "SkipIPv4", deserialize_with = "nullable")]
        pub skip_ipv4: bool,
        /// Reserve no IPv6 gateway.
        #[serde(rename = "SkipIPv6", deserialize_with = "nullable")]
        pub skip_ipv6: bool,
    }

    /// The endpoint interface; "" = unset. The driver may only fill empty fields.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct EndpointInterface {
        /// IPv4 CIDR.
        #[serde(rename = "Address", deserialize_with = "nullable")]
        pub address: String,
        /// IPv6 CIDR.
        #[serde(rename = "AddressIPv6", deserialize_with = "nullable")]
        pub address_ipv6: String,
        /// MAC address.
        #[serde(rename = "MacAddress", deserialize_with = "nullable")]
        pub mac_address: String,
    }

    /// `CreateEndpoint` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CreateEndpointRequest {
        /// Network id.
        #[serde(rename = "NetworkID", deserialize_with = "nullable")]
        pub network_id: String,
        /// Endpoint id.
        #[serde(rename = "EndpointID", deserialize_with = "nullable")]
        pub endpoint_id: String,
        /// Interface (all three keys always sent).
        #[serde(rename = "Interface", deserialize_with = "nullable")]
        pub interface: EndpointInterface,
        /// Endpoint options.
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, Value>,
    }

    /// `CreateEndpoint` reply: `null`/`{}`/missing interface = nothing filled.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CreateEndpointResponse {
        /// Filled fields.
        #[serde(rename = "Interface")]
        pub interface: Option<EndpointInterface>,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    /// `DeleteEndpoint`, `EndpointOperInfo`, `Leave`, `RevokeExternalConnectivity` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct EndpointRequest {
        /// Network id.
        #[serde(rename = "NetworkID", deserialize_with = "nullable")]
        pub network_id: String,
        /// Endpoint id.
        #[serde(rename = "EndpointID", deserialize_with = "nullable")]
        pub endpoint_id: String,
    }

    /// `EndpointOperInfo` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct EndpointOperInfoResponse {
        /// Informational values.
        #[serde(rename = "Value", deserialize_with = "nullable")]
        pub value: BTreeMap<String, Value>,
    }

    /// `Join` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct JoinRequest {
        /// Network id.
        #[serde(rename = "NetworkID", deserialize_with = "nullable")]
        pub network_id: String,
        /// Endpoint id.
        #[serde(rename = "EndpointID", deserialize_with = "nullable")]
        pub endpoint_id: String,
        /// Path of the network namespace.
        #[serde(rename = "SandboxKey", deserialize_with = "nullable")]
        pub sandbox_key: String,
        /// Options.
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, Value>,
    }

    /// `Join` reply's interface name.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct InterfaceName {
        /// Host-side link to move into the sandbox ("" = none).
        #[serde(rename = "SrcName", deserialize_with = "nullable")]
        pub src_name: String,
        /// Name prefix inside (`eth`).
        #[serde(rename = "DstPrefix", deserialize_with = "nullable")]
        pub dst_prefix: String,
    }

    /// A static route (`RouteType` 0 = next hop, 1 = connected).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct StaticRoute {
        /// Destination CIDR.
        #[serde(rename = "Destination", deserialize_with = "nullable")]
        pub destination: String,
        /// Route type.
        #[serde(rename = "RouteType", deserialize_with = "nullable")]
        pub route_type: u8,
        /// Next hop.
        #[serde(rename = "NextHop", deserialize_with = "nullable")]
        pub next_hop: String,
    }

    /// `Join` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct JoinResponse {
        /// Interface to move in.
        #[serde(rename = "InterfaceName")]
        pub interface_name: Option<InterfaceName>,
        /// IPv4 gateway (plain IP).
        #[serde(rename = "Gateway", deserialize_with = "nullable")]
        pub gateway: String,
        /// IPv6 gateway.
        #[serde(rename = "GatewayIPv6", deserialize_with = "nullable")]
        pub gateway_ipv6: String,
        /// Static routes.
        #[serde(rename = "StaticRoutes", deserialize_with = "nullable")]
        pub static_routes: Vec<StaticRoute>,
        /// Skip the gateway bridge.
        #[serde(rename = "DisableGatewayService", deserialize_with = "nullable")]
        pub disable_gateway_service: bool,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    /// `ProgramExternalConnectivity` request (404 = success).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ProgramExternalConnectivityRequest {
        /// Network id.
        #[serde(rename = "NetworkID", deserialize_with = "nullable")]
        pub network_id: String,
        /// Endpoint id.
        #[serde(rename = "EndpointID", deserialize_with = "nullable")]
        pub endpoint_id: String,
        /// Options.
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, Value>,
    }
}

/// IPAM driver calls (`/IpamDriver.<Method>`). Replies carry `Error` (not `Err`); both are accepted.
pub mod ipam {
    use super::*;

    /// Interface name.
    pub const INTERFACE: &str = "IpamDriver";

    /// `GetCapabilities` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CapabilitiesResponse {
        /// Send the MAC address with `RequestAddress`.
        #[serde(rename = "RequiresMACAddress", deserialize_with = "nullable")]
        pub requires_mac_address: bool,
        /// Replay pool and gateway requests at daemon start.
        #[serde(rename = "RequiresRequestReplay", deserialize_with = "nullable")]
        pub requires_request_replay: bool,
    }

    /// `GetDefaultAddressSpaces` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct AddressSpacesResponse {
        /// Local default space.
        #[serde(rename = "LocalDefaultAddressSpace", deserialize_with = "nullable")]
        pub local_default_address_space: String,
        /// Global default space.
        #[serde(rename = "GlobalDefaultAddressSpace", deserialize_with = "nullable")]
        pub global_default_address_space: String,
        /// Error text.
        #[serde(rename = "Error", alias = "Err", deserialize_with = "nullable")]
        pub error: String,
    }

    /// `RequestPool` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct RequestPoolRequest {
        /// Address space.
        #[serde(rename = "AddressSpace", deserialize_with = "nullable")]
        pub address_space: String,
        /// Pool CIDR or "" (= pick one).
        #[serde(rename = "Pool", deserialize_with = "nullable")]
        pub pool: String,
        /// Sub-pool CIDR or "".
        #[serde(rename = "SubPool", deserialize_with = "nullable")]
        pub sub_pool: String,
        /// Options.
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, String>,
        /// IPv6 pool.
        #[serde(rename = "V6", deserialize_with = "nullable")]
        pub v6: bool,
    }

    /// `RequestPool` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct RequestPoolResponse {
        /// Pool id.
        #[serde(rename = "PoolID", deserialize_with = "nullable")]
        pub pool_id: String,
        /// Pool CIDR.
        #[serde(rename = "Pool", deserialize_with = "nullable")]
        pub pool: String,
        /// Extra data.
        #[serde(rename = "Data", deserialize_with = "nullable")]
        pub data: BTreeMap<String, String>,
        /// Error text.
        #[serde(rename = "Error", alias = "Err", deserialize_with = "nullable")]
        pub error: String,
    }

    /// `ReleasePool` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ReleasePoolRequest {
        /// Pool id.
        #[serde(rename = "PoolID", deserialize_with = "nullable")]
        pub pool_id: String,
    }

    /// `RequestAddress` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct RequestAddressRequest {
        /// Pool id.
        #[serde(rename = "PoolID", deserialize_with = "nullable")]
        pub pool_id: String,
        /// Wanted IP or "" (= any).
        #[serde(rename = "Address", deserialize_with = "nullable")]
        pub address: String,
        /// Options (`RequestAddressType`, MAC address).
        #[serde(rename = "Options", deserialize_with = "nullable")]
        pub options: BTreeMap<String, String>,
    }

    /// `RequestAddress` reply.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct RequestAddressResponse {
        /// CIDR; "" = no IP returned.
        #[serde(rename = "Address", deserialize_with = "nullable")]
        pub address: String,
        /// Extra data.
        #[serde(rename = "Data", deserialize_with = "nullable")]
        pub data: BTreeMap<String, String>,
        /// Error text.
        #[serde(rename = "Error", alias = "Err", deserialize_with = "nullable")]
        pub error: String,
    }

    /// `ReleaseAddress` request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ReleaseAddressRequest {
        /// Pool id.
        #[serde(rename = "PoolID", deserialize_with = "nullable")]
        pub pool_id: String,
        /// The IP.
        #[serde(rename = "Address", deserialize_with = "nullable")]
        pub address: String,
    }
}

/// Authorization plugin calls (`/AuthZPlugin.AuthZReq`, `/AuthZPlugin.AuthZRes`).
pub mod authz {
    use super::*;

    /// Interface name.
    pub const INTERFACE: &str = "AuthZPlugin";
    /// Request-phase path.
    pub const REQ_PATH: &str = "/AuthZPlugin.AuthZReq";
    /// Response-phase path.
    pub const RES_PATH: &str = "/AuthZPlugin.AuthZRes";

    /// Request of both phases; byte fields are base64; the code's key spellings (`RequestUri`,
    /// `RequestHeaders`, `ResponseHeaders`) are emitted, the docs' spellings accepted.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct Request {
        /// TLS client CN.
        #[serde(
            rename = "User",
            skip_serializing_if = "String::is_empty",
            deserialize_with = "nullable"
        )]
        pub user: String,
        /// `TLS` or empty.
        #[serde(
            rename = "UserAuthNMethod",
            skip_serializing_if = "String::is_empty",
            deserialize_with = "nullable"
        )]
        pub user_authn_method: String,
        /// Method.
        #[serde(
            rename = "RequestMethod",
            skip_serializing_if = "String::is_empty",
            deserialize_with = "nullable"
        )]
        pub request_method: String,
        /// Raw URI with version prefix and query.
        #[serde(
            rename = "RequestUri",
            alias = "RequestURI",
            skip_serializing_if = "String::is_empty",
            deserialize_with = "nullable"
        )]
        pub request_uri: String,
        /// Body bytes (base64 on the wire).
        #[serde(
            rename = "RequestBody",
            with = "b64",
            skip_serializing_if = "Vec::is_empty"
        )]
        pub request_body: Vec<u8>,
        /// Canonical headers, last value wins; auth headers removed.
        #[serde(
            rename = "RequestHeaders",
            alias = "RequestHeader",
            skip_serializing_if = "BTreeMap::is_empty",
            deserialize_with = "nullable"
        )]
        pub request_headers: BTreeMap<String, String>,
        /// Base64 PEM certificates.
        #[serde(
            rename = "RequestPeerCertificates",
            skip_serializing_if = "Vec::is_empty",
            deserialize_with = "nullable"
        )]
        pub request_peer_certificates: Vec<String>,
        /// Response status (AuthZRes only; absent when 0).
        #[serde(
            rename = "ResponseStatusCode",
            skip_serializing_if = "is_zero",
            deserialize_with = "nullable"
        )]
        pub response_status_code: u16,
        /// Response body bytes.
        #[serde(
            rename = "ResponseBody",
            with = "b64",
            skip_serializing_if = "Vec::is_empty"
        )]
        pub response_body: Vec<u8>,
        /// Response headers.
        #[serde(
            rename = "ResponseHeaders",
            alias = "ResponseHeader",
            skip_serializing_if = "BTreeMap::is_empty",
            deserialize_with = "nullable"
        )]
        pub response_headers: BTreeMap<String, String>,
    }

    fn is_zero(v: &u16) -> bool {
        *v == 0
    }

    /// Reply of both phases. `Allow` false/missing = deny (403 with `Msg`).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct Response {
        /// Allow the request.
        #[serde(rename = "Allow", deserialize_with = "nullable")]
        pub allow: bool,
        /// Message shown on deny.
        #[serde(rename = "Msg", deserialize_with = "nullable")]
        pub msg: String,
        /// Error text.
        #[serde(rename = "Err", deserialize_with = "nullable")]
        pub err: String,
    }

    mod b64 {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&STANDARD.encode(v))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            let s: Option<String> = Option::deserialize(d)?;
            match s {
                None => Ok(Vec::new()),
                Some(s) => STANDARD
                    .decode(s.as_bytes())
                    .map_err(serde::de::Error::custom),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_volume_driver_types() {
        let r: volume::CreateRequest =
            serde_json::from_value(json!({"Name": "v2", "Opts": null})).unwrap();
        assert_eq!(r.opts, None);
        let g: volume::GetResponse =
            serde_json::from_value(json!({"Volume": {"Name": "v", "Mountpoint": null, "CreatedAt": "bogus", "X": 1}, "Err": null}))
                .unwrap();
        assert_eq!(g.volume.unwrap().name, "v");
        let l: volume::ListResponse = serde_json::from_value(json!({"Volumes": null})).unwrap();
        assert!(l.volumes.is_empty());
        let a: ActivateResponse =
            serde_json::from_value(json!({"Implements": ["VolumeDriver"]})).unwrap();
        assert_eq!(a.implements, vec![VOLUME_DRIVER]);
        assert_eq!(path(volume::INTERFACE, "Mount"), "/VolumeDriver.Mount");
    }

    #[test]
    fn network_and_ipam_types() {
        let j: network::JoinResponse = serde_json::from_value(json!({
            "InterfaceName": {"SrcName": "veth7f3a", "DstPrefix": "eth"}, "Gateway": "10.20.0.1",
            "StaticRoutes": [{"Destination": "10.0.0.0/8", "RouteType": 0, "NextHop": "10.20.0.254"}]}))
        .unwrap();
        assert_eq!(j.interface_name.unwrap().dst_prefix, "eth");
        assert_eq!(j.static_routes.len(), 1);
        let e: network::CreateEndpointResponse =
            serde_json::from_value(json!({"Interface": null})).unwrap();
        assert!(e.interface.is_none());
        let p: ipam::RequestPoolResponse = serde_json::from_value(
            json!({"PoolID": "p1", "Pool": "10.1.0.0/16", "Data": null, "Error": "x"}),
        )
        .unwrap();
        assert_eq!(p.error, "x");
    }

    #[test]
    fn authz_base64_and_spellings() {
        let r = authz::Request {
            request_method: "POST".into(),
            request_uri: "/v1.47/containers/create?name=x".into(),
            request_body: b"{}".to_vec(),
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"RequestMethod": "POST", "RequestUri": "/v1.47/containers/create?name=x", "RequestBody": "e30="})
        );
        let back: authz::Request = serde_json::from_value(
            json!({"RequestURI": "/x", "RequestBody": null, "RequestHeader": {"A": "b"}}),
        )
        .unwrap();
        assert_eq!(back.request_uri, "/x");
        assert_eq!(back.request_headers.get("A").map(String::as_str), Some("b"));
    }
}
