//! Plugin drivers speaking Docker's remote protocols: [`RemoteDriver`] implements the store's
//! [`NetworkDriver`] with `NetworkDriver.*` calls, and [`RemoteIpam`] asks an `IpamDriver.*`
//! plugin for pools and addresses. Both work for any plugin that answers these paths, whatever
//! handshake it negotiated: a `/Plugin.Activate` plugin must list `NetworkDriver` (`IpamDriver`)
//! in `Implements`; an MVP v1/v2 plugin plays the role by answering `GetCapabilities` (a 404
//! there means it does not). Every call goes through the plugin host's client, so each has the
//! plugin's deadline, and errors are Docker's: `Err` (IPAM: `Error`) in a 200 or any non-200.
//!
//! Sequences (as Docker's): network create → `GetCapabilities` → `CreateNetwork`; start →
//! `CreateEndpoint` → `Join` → `ProgramExternalConnectivity` (404 = success) →
//! `EndpointOperInfo` (informational); stop → `RevokeExternalConnectivity` (404 = success) →
//! `Leave` → `DeleteEndpoint`; `network rm` → `DeleteNetwork`. A failed step of a start undoes
//! the earlier ones (`Leave`, `DeleteEndpoint`), so nothing stays behind in the plugin.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_plugin_host::protocol::legacy::network::{
    CapabilitiesResponse, CreateEndpointRequest, CreateEndpointResponse, CreateNetworkRequest,
    EndpointInterface, EndpointOperInfoResponse, EndpointRequest, IpamData, JoinRequest,
    JoinResponse, NetworkRequest, ProgramExternalConnectivityRequest,
};
use berth_plugin_host::protocol::legacy::{self, ErrResponse, IPAM_DRIVER, NETWORK_DRIVER, ipam};
use berth_plugin_host::{LoadedPlugin, PluginError, PluginHost};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::driver::{EndpointInfo, JoinInfo, NetworkDriver};
use crate::ipam::{Pool, Subnet, parse_addr};
use crate::{Network, NetworkError};

/// The address space Berth reports when the IPAM plugin does not name one.
pub const LOCAL_DEFAULT: &str = "LocalDefault";

/// `RequestAddressType` of the gateway request.
pub const GATEWAY_REQUEST: &str = "com.docker.network.gateway";

fn plugin_err(driver: &str, e: PluginError) -> NetworkError {
    NetworkError::Plugin {
        driver: driver.to_owned(),
        source: Box::new(e),
    }
}

async fn call<Req, Resp>(
    p: &LoadedPlugin,
    interface: &str,
    method: &str,
    req: &Req,
) -> Result<Resp, PluginError>
where
    Req: Serialize + ?Sized,
    Resp: DeserializeOwned,
{
    let hook = format!("{}.{}", interface.to_lowercase(), method.to_lowercase());
    p.call(&hook, &legacy::path(interface, method), req).await
}

/// 404 means "optional call not implemented" = success.
fn optional(r: Result<ErrResponse, PluginError>) -> Result<(), PluginError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The plugin called `name` in the role `interface` (`NetworkDriver` or `IpamDriver`): a loaded
/// plugin, else one found by Docker-style discovery (loaded then, at the end of the load order).
/// `None` when there is no such plugin at all (an unknown driver). The lookup itself is
/// [`berth_plugin_host::find_driver`], shared with the volume drivers.
pub async fn find_plugin(
    host: &PluginHost,
    name: &str,
    interface: &str,
) -> Result<Option<Arc<LoadedPlugin>>, NetworkError> {
    match berth_plugin_host::find_driver(Some(host), name, interface).await {
        Ok(plugin) => Ok(Some(plugin)),
        Err(e) => match e.not_a_driver_reason() {
            None => Ok(None),
            Some(reason) => Err(NetworkError::NotADriver {
                driver: name.to_owned(),
                role: interface.to_owned(),
                reason,
            }),
        },
    }
}

/// A network driver plugin (Docker's remote `NetworkDriver` protocol).
pub struct RemoteDriver {
    plugin: Arc<LoadedPlugin>,
    capabilities: CapabilitiesResponse,
}

impl RemoteDriver {
    /// Asks the plugin for its capabilities (`GetCapabilities`); a plugin that does not
    /// implement it (404), or answers a scope other than `local`/`global`, is not usable as a
    /// network driver (400). A plugin that is down, not Active or times out is a plugin failure
    /// like any other call's (500; 503 when not Active), not the user's mistake.
    pub async fn connect(plugin: Arc<LoadedPlugin>) -> Result<RemoteDriver, NetworkError> {
        let name = plugin.name().to_owned();
        let caps: CapabilitiesResponse =
            call(&plugin, NETWORK_DRIVER, "GetCapabilities", &json!({}))
                .await
                .map_err(|e| {
                    if e.is_not_found() {
                        NetworkError::NotADriver {
                            driver: name.clone(),
                            role: NETWORK_DRIVER.into(),
                            reason: format!("GetCapabilities: {e}"),
                        }
                    } else {
                        plugin_err(&name, e)
                    }
                })?;
        if caps.scope != "local" && caps.scope != "global" {
            return Err(NetworkError::NotADriver {
                driver: name,
                role: NETWORK_DRIVER.into(),
                reason: format!(
                    "GetCapabilities answered Scope {:?} (want \"local\" or \"global\")",
                    caps.scope
                ),
            });
        }
        Ok(RemoteDriver {
            plugin,
            capabilities: caps,
        })
    }

    /// The capabilities the plugin reported.
    pub fn capabilities(&self) -> &CapabilitiesResponse {
        &self.capabilities
    }

    fn err(&self, e: PluginError) -> NetworkError {
        plugin_err(self.plugin.name(), e)
    }

    async fn call<Req, Resp>(&self, method: &str, req: &Req) -> Result<Resp, NetworkError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        call(&self.plugin, NETWORK_DRIVER, method, req)
            .await
            .map_err(|e| self.err(e))
    }

    fn endpoint_req(net: &Network, ep: &EndpointInfo) -> EndpointRequest {
        EndpointRequest {
            network_id: net.id.clone(),
            endpoint_id: ep.id.clone(),
        }
    }

    /// `CreateEndpoint` → `Join` → `ProgramExternalConnectivity`; see the module doc.
    async fn join_inner(&self, net: &Network, ep: &EndpointInfo) -> Result<JoinInfo, NetworkError> {
        let cidr = format!("{}/{}", ep.address, ep.prefix);
        let created: CreateEndpointResponse = self
            .call(
                "CreateEndpoint",
                &CreateEndpointRequest {
                    network_id: net.id.clone(),
                    endpoint_id: ep.id.clone(),
                    interface: EndpointInterface {
                        address: cidr.clone(),
                        address_ipv6: String::new(),
                        mac_address: String::new(),
                    },
                    options: BTreeMap::new(),
                },
            )
            .await?;
        let undo_endpoint = || async {
            let _ = self
                .call::<_, ErrResponse>("DeleteEndpoint", &Self::endpoint_req(net, ep))
                .await;
        };
        if let Some(iface) = &created.interface
            && !iface.address.is_empty()
            && iface.address != cidr
        {
            undo_endpoint().await;
            return Err(NetworkError::Driver {
                network: net.name.clone(),
                driver: net.driver.clone(),
                reason: format!(
                    "driver modified interface address: sent {cidr}, got {}",
                    iface.address
                ),
            });
        }
        let joined: JoinResponse = match self
            .call(
                "Join",
                &JoinRequest {
                    network_id: net.id.clone(),
                    endpoint_id: ep.id.clone(),
                    sandbox_key: ep.netns.display().to_string(),
                    options: BTreeMap::new(),
                },
            )
            .await
        {
            Ok(j) => j,
            Err(e) => {
                undo_endpoint().await;
                return Err(e);
            }
        };
        let undo_join = || async {
            let _ = self
                .call::<_, ErrResponse>("Leave", &Self::endpoint_req(net, ep))
                .await;
            undo_endpoint().await;
        };
        let info = match join_info(&joined) {
            Ok(i) => i,
            Err(reason) => {
                undo_join().await;
                return Err(NetworkError::Driver {
                    network: net.name.clone(),
                    driver: net.driver.clone(),
                    reason,
                });
            }
        };
        let programmed = optional(
            call(
                &self.plugin,
                NETWORK_DRIVER,
                "ProgramExternalConnectivity",
                &ProgramExternalConnectivityRequest {
                    network_id: net.id.clone(),
                    endpoint_id: ep.id.clone(),
                    options: BTreeMap::new(),
                },
            )
            .await,
        );
        if let Err(e) = programmed {
            undo_join().await;
            return Err(self.err(e));
        }
        // Informational only (Docker shows it in inspect); a failure is not an error.
        match call::<_, EndpointOperInfoResponse>(
            &self.plugin,
            NETWORK_DRIVER,
            "EndpointOperInfo",
            &Self::endpoint_req(net, ep),
        )
        .await
        {
            Ok(v) => tracing::debug!(endpoint = ep.id, info = ?v.value, "endpoint oper info"),
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::debug!(endpoint = ep.id, error = %e, "EndpointOperInfo"),
        }
        Ok(info)
    }
}

/// Docker's Join reply, typed; `Err` text for a malformed reply.
fn join_info(j: &JoinResponse) -> Result<JoinInfo, String> {
    let iface = j.interface_name.clone().unwrap_or_default();
    let gateway =
        match j.gateway.trim() {
            "" => None,
            g => Some(g.parse::<Ipv4Addr>().map_err(|_| {
                format!("Join answered an invalid Gateway {g:?} (want a plain IPv4)")
            })?),
        };
    let mut routes = Vec::new();
    let mut default_via = None;
    for r in &j.static_routes {
        let dest: Subnet = r
            .destination
            .parse()
            .map_err(|e| format!("Join answered an invalid route: {e}"))?;
        match r.route_type {
            0 => {
                let via: Ipv4Addr = r.next_hop.parse().map_err(|_| {
                    format!(
                        "Join answered a next-hop route to {dest} with an invalid NextHop {:?}",
                        r.next_hop
                    )
                })?;
                if dest.prefix == 0 {
                    default_via = Some(via);
                } else {
                    routes.push((dest, via));
                }
            }
            // Connected routes are covered by the interface's own prefix route.
            1 => {}
            t => return Err(format!("Join answered an unknown RouteType {t}")),
        }
    }
    Ok(JoinInfo {
        src_name: iface.src_name,
        dst_prefix: (!iface.dst_prefix.is_empty()).then_some(iface.dst_prefix),
        gateway: gateway.or(default_via),
        static_routes: routes,
        default_route: gateway.is_some() || default_via.is_some(),
    })
}

/// `-o` options and the flags Docker sends with `CreateNetwork`.
fn create_options(net: &Network) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("com.docker.network.generic".to_owned(), json!(net.options)),
        ("com.docker.network.enable_ipv4".to_owned(), json!(true)),
        ("com.docker.network.enable_ipv6".to_owned(), json!(false)),
    ])
}

impl NetworkDriver for RemoteDriver {
    fn name(&self) -> &str {
        self.plugin.name()
    }

    fn create_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        async move {
            let ipv4 = net
                .pool
                .map(|p| IpamData {
                    address_space: net
                        .options
                        .get(ADDRESS_SPACE_OPTION)
                        .cloned()
                        .unwrap_or_else(|| LOCAL_DEFAULT.to_owned()),
                    pool: p.subnet.to_string(),
                    gateway: Some(format!("{}/{}", p.gateway, p.subnet.prefix)),
                    aux_addresses: None,
                })
                .into_iter()
                .collect();
            self.call::<_, ErrResponse>(
                "CreateNetwork",
                &CreateNetworkRequest {
                    network_id: net.id.clone(),
                    options: create_options(net),
                    ipv4_data: ipv4,
                    ipv6_data: Vec::new(),
                },
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn delete_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        async move {
            self.call::<_, ErrResponse>(
                "DeleteNetwork",
                &NetworkRequest {
                    network_id: net.id.clone(),
                },
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn join<'a>(
        &'a self,
        net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<JoinInfo, NetworkError>> {
        self.join_inner(net, ep).boxed()
    }

    fn leave<'a>(
        &'a self,
        net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<(), NetworkError>> {
        async move {
            let req = Self::endpoint_req(net, ep);
            let revoked = optional(
                call(
                    &self.plugin,
                    NETWORK_DRIVER,
                    "RevokeExternalConnectivity",
                    &req,
                )
                .await,
            )
            .map_err(|e| self.err(e));
            let left = self.call::<_, ErrResponse>("Leave", &req).await.map(|_| ());
            let deleted = self
                .call::<_, ErrResponse>("DeleteEndpoint", &req)
                .await
                .map(|_| ());
            revoked.and(left).and(deleted)
        }
        .boxed()
    }
}

/// The network option (`-o`) naming the IPAM address space; Berth's default is `LocalDefault`.
pub const ADDRESS_SPACE_OPTION: &str = "com.docker.network.ipam.address_space";

/// A pool held from an IPAM plugin.
#[derive(Debug, Clone)]
pub struct RemotePool {
    pub pool_id: String,
    pub pool: Pool,
}

/// An IPAM plugin (Docker's remote `IpamDriver` protocol).
pub struct RemoteIpam {
    plugin: Arc<LoadedPlugin>,
}

impl RemoteIpam {
    /// Wraps a plugin found with [`find_plugin`] (role `IpamDriver`); `GetCapabilities` is asked
    /// and only logged (Docker: a failure means empty capabilities).
    pub async fn connect(plugin: Arc<LoadedPlugin>) -> RemoteIpam {
        match call::<_, ipam::CapabilitiesResponse>(
            &plugin,
            IPAM_DRIVER,
            "GetCapabilities",
            &json!({}),
        )
        .await
        {
            Ok(c) => tracing::debug!(plugin = plugin.name(), caps = ?c, "IPAM capabilities"),
            Err(e) => tracing::debug!(plugin = plugin.name(), error = %e, "IPAM GetCapabilities"),
        }
        RemoteIpam { plugin }
    }

    async fn call<Req, Resp>(&self, method: &str, req: &Req) -> Result<Resp, NetworkError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        call(&self.plugin, IPAM_DRIVER, method, req)
            .await
            .map_err(|e| plugin_err(self.plugin.name(), e))
    }

    fn bad(&self, what: &str, got: &str) -> NetworkError {
        NetworkError::Invalid(format!(
            "IPAM plugin \"{}\" answered {what} {got:?}",
            self.plugin.name()
        ))
    }

    /// `GetDefaultAddressSpaces` → `RequestPool` → `RequestAddress` (gateway). `subnet`, `range`,
    /// `gateway`: the user's `--subnet`, `--ip-range`, `--gateway` (empty = the plugin picks). On
    /// a failure after the pool was granted, the pool is released.
    pub async fn request_pool(
        &self,
        subnet: &str,
        range: &str,
        gateway: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<RemotePool, NetworkError> {
        let spaces: ipam::AddressSpacesResponse =
            self.call("GetDefaultAddressSpaces", &json!({})).await?;
        let space = options
            .get(ADDRESS_SPACE_OPTION)
            .cloned()
            .or_else(|| {
                (!spaces.local_default_address_space.is_empty())
                    .then_some(spaces.local_default_address_space)
            })
            .unwrap_or_else(|| LOCAL_DEFAULT.to_owned());
        let granted: ipam::RequestPoolResponse = self
            .call(
                "RequestPool",
                &ipam::RequestPoolRequest {
                    address_space: space,
                    pool: subnet.to_owned(),
                    sub_pool: range.to_owned(),
                    options: options.clone(),
                    v6: false,
                },
            )
            .await?;
        let result = async {
            if granted.pool_id.is_empty() {
                return Err(self.bad("RequestPool with PoolID", ""));
            }
            let cidr: Subnet = granted
                .pool
                .parse()
                .map_err(|_| self.bad("RequestPool with Pool", &granted.pool))?;
            let gw: ipam::RequestAddressResponse = self
                .call(
                    "RequestAddress",
                    &ipam::RequestAddressRequest {
                        pool_id: granted.pool_id.clone(),
                        address: gateway.to_owned(),
                        options: BTreeMap::from([(
                            "RequestAddressType".to_owned(),
                            GATEWAY_REQUEST.to_owned(),
                        )]),
                    },
                )
                .await?;
            let gw_ip = match gw.address.split('/').next().unwrap_or_default() {
                "" => None,
                a => Some(parse_addr(a).map_err(|_| self.bad("the gateway", &gw.address))?),
            };
            let gw_text = gw_ip.map(|g| g.to_string()).unwrap_or_default();
            let range = (!range.is_empty()).then_some(range);
            let pool = Pool::from_config(
                &cidr.to_string(),
                (!gw_text.is_empty()).then_some(gw_text.as_str()),
                range,
            )?;
            Ok(RemotePool {
                pool_id: granted.pool_id.clone(),
                pool,
            })
        }
        .await;
        if result.is_err() {
            let _ = self
                .call::<_, ErrResponse>(
                    "ReleasePool",
                    &ipam::ReleasePoolRequest {
                        pool_id: granted.pool_id.clone(),
                    },
                )
                .await;
        }
        result
    }

    /// `RequestAddress` for an endpoint (`wanted` = `--ip`).
    pub async fn request_address(
        &self,
        pool_id: &str,
        wanted: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, NetworkError> {
        let r: ipam::RequestAddressResponse = self
            .call(
                "RequestAddress",
                &ipam::RequestAddressRequest {
                    pool_id: pool_id.to_owned(),
                    address: wanted.map(|a| a.to_string()).unwrap_or_default(),
                    options: BTreeMap::new(),
                },
            )
            .await?;
        let addr = r.address.split('/').next().unwrap_or_default();
        if addr.is_empty() {
            return Err(self.bad("RequestAddress with no address:", &r.address));
        }
        parse_addr(addr).map_err(|_| self.bad("RequestAddress with Address", &r.address))
    }

    /// `ReleaseAddress`.
    pub async fn release_address(&self, pool_id: &str, addr: Ipv4Addr) -> Result<(), NetworkError> {
        self.call::<_, ErrResponse>(
            "ReleaseAddress",
            &ipam::ReleaseAddressRequest {
                pool_id: pool_id.to_owned(),
                address: addr.to_string(),
            },
        )
        .await
        .map(|_| ())
    }

    /// `ReleaseAddress` (gateway) → `ReleasePool`.
    pub async fn release_pool(&self, pool: &RemotePool) -> Result<(), NetworkError> {
        let gw = self.release_address(&pool.pool_id, pool.pool.gateway).await;
        let released = self
            .call::<_, ErrResponse>(
                "ReleasePool",
                &ipam::ReleasePoolRequest {
                    pool_id: pool.pool_id.clone(),
                },
            )
            .await
            .map(|_| ());
        gw.and(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_plugin_host::protocol::legacy::network::{InterfaceName, StaticRoute};

    #[test]
    fn join_replies_are_typed() {
        let j = JoinResponse {
            interface_name: Some(InterfaceName {
                src_name: "veth1".into(),
                dst_prefix: "net".into(),
            }),
            gateway: "10.1.0.1".into(),
            static_routes: vec![
                StaticRoute {
                    destination: "10.9.0.0/16".into(),
                    route_type: 0,
                    next_hop: "10.1.0.254".into(),
                },
                StaticRoute {
                    destination: "10.1.0.0/24".into(),
                    route_type: 1,
                    next_hop: String::new(),
                },
            ],
            ..Default::default()
        };
        let i = join_info(&j).unwrap();
        assert_eq!(i.src_name, "veth1");
        assert_eq!(i.dst_prefix.as_deref(), Some("net"));
        assert_eq!(i.gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(i.static_routes.len(), 1);
        assert!(i.default_route);
        let none = join_info(&JoinResponse::default()).unwrap();
        assert!(!none.default_route);
        assert_eq!(none.dst_prefix, None);
        let bad = JoinResponse {
            gateway: "10.1.0.1/24".into(),
            ..Default::default()
        };
        assert!(join_info(&bad).unwrap_err().contains("Gateway"));
    }
}
