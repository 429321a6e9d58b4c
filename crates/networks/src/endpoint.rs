//! One endpoint on one network: joined (lease, driver `CreateEndpoint`/`Join`, interface moved
//! into the container's netns, MVP `network.connect` hooks) or left, in reverse.

use std::net::Ipv4Addr;
use std::path::Path;

use berth_plugin_host::protocol::mvp::{NetworkEvent, NetworkMessage};

use crate::driver::EndpointInfo;
use crate::error::{NetworkError, driver_error};
use crate::model::{Endpoint, Network};
use crate::store::NetworkStore;
use crate::{ipam, mvp, netns};

impl NetworkStore {
    pub(crate) fn connect_message(
        n: &Network,
        container_id: &str,
        netns_path: &Path,
    ) -> NetworkMessage {
        NetworkMessage {
            container_id: Some(container_id.to_owned()),
            sandbox_key: Some(netns_path.display().to_string()),
            ..mvp::network_message(n)
        }
    }

    /// Wires one interface: address (IPAM) → MVP `connect` hook → driver join → plumbing into
    /// the namespace. A failing step undoes the earlier ones (driver leave, hook `disconnect`,
    /// address release) so nothing is left behind.
    pub(crate) async fn join_one(
        &self,
        network_id: &str,
        container_id: &str,
        ifname: &str,
        netns_path: &Path,
    ) -> Result<(), NetworkError> {
        // This network's lock, held until the endpoint is recorded: the address picked from
        // `used` below stays free until then. Other networks never wait for it.
        let _net = self.network_ops.lock(network_id).await;
        let n = self.get(network_id)?;
        let member =
            n.members
                .get(container_id)
                .cloned()
                .ok_or_else(|| NetworkError::NotConnected {
                    container: container_id.to_owned(),
                    network: n.name.clone(),
                })?;
        let pool = n
            .pool
            .ok_or_else(|| NetworkError::NoStaticIp(n.name.clone()))?;
        let driver = self.driver(&n.driver).await?;
        let ipam = match &n.ipam_pool_id {
            Some(_) => self.remote_ipam(&n.ipam_driver).await?,
            None => None,
        };
        let pool_id = n.ipam_pool_id.clone().unwrap_or_default();
        let on_net = |source| NetworkError::OnNetwork {
            name: n.name.clone(),
            source,
        };
        let mut address = match &ipam {
            Some(ipam) => ipam.request_address(&pool_id, member.requested_ip).await?,
            None => pool
                .allocate(&n.used(container_id), member.requested_ip)
                .map_err(on_net)?,
        };
        let release = |addr: Ipv4Addr| {
            let (ipam, pool_id) = (&ipam, &pool_id);
            async move {
                if let Some(ipam) = ipam
                    && let Err(e) = ipam.release_address(pool_id, addr).await
                {
                    tracing::warn!(error = %e, "IPAM ReleaseAddress");
                }
            }
        };
        // The MVP `connect` hook (before, chained): plugins may change IPAddress and Gateway.
        let mut msg = Self::connect_message(&n, container_id, netns_path);
        msg.ip_address = Some(format!("{address}/{}", pool.subnet.prefix));
        let setup = match mvp::setup(self.host(), NetworkEvent::Connect, msg).await {
            Ok(s) => s,
            Err(e) => {
                release(address).await;
                return Err(e);
            }
        };
        for w in &setup.warnings {
            tracing::warn!(network = n.name, warning = %w, "network connect hook");
        }
        let undo_hooks = |called: Vec<String>, m: NetworkMessage| async move {
            for w in mvp::undo(self.host(), NetworkEvent::Connect, &m, &called).await {
                tracing::warn!(warning = %w, "network connect hook compensation");
            }
        };
        let hooked = async {
            let mut gateway = None;
            if let Some(ip) = &setup.message.ip_address {
                let wanted = ipam::parse_addr(ip.split('/').next().unwrap_or_default())?;
                if wanted != address {
                    match &ipam {
                        Some(ipam) => {
                            let got = ipam.request_address(&pool_id, Some(wanted)).await?;
                            release(address).await;
                            address = got;
                        }
                        None => {
                            pool.check_static(wanted, &n.used(container_id))
                                .map_err(on_net)?;
                            address = wanted;
                        }
                    }
                }
            }
            if let Some(g) = setup.message.gateway.as_deref().filter(|g| !g.is_empty()) {
                gateway = Some(ipam::parse_addr(g)?);
            }
            Ok::<_, NetworkError>(gateway)
        };
        let hook_gateway = match hooked.await {
            Ok(g) => g,
            Err(e) => {
                release(address).await;
                undo_hooks(setup.called, setup.message).await;
                return Err(e);
            }
        };
        let info = EndpointInfo {
            id: berth_state::new_id(),
            container_id: container_id.to_owned(),
            netns: netns_path.to_owned(),
            address,
            prefix: pool.subnet.prefix,
            pool,
        };
        let fail = |e: NetworkError, left: bool| {
            let (driver, n, info, called, m) = (
                &driver,
                &n,
                &info,
                setup.called.clone(),
                setup.message.clone(),
            );
            let _ = self.update(&n.id, |n| {
                if let Some(m) = n.members.get_mut(container_id) {
                    m.pending_endpoint = None;
                    m.pending_address = None;
                }
            });
            async move {
                if left {
                    let _ = driver.leave(n, info).await;
                }
                undo_hooks(called, m).await;
                release(info.address).await;
                e
            }
        };
        // Every link that exists now is off limits as the driver's SrcName: only an interface
        // made for this endpoint (in CreateEndpoint or Join) may be moved into the container.
        let preexisting = match netns::link_indexes().await {
            Ok(set) => std::sync::Arc::new(set),
            Err(e) => return Err(fail(e, false).await),
        };
        // Write-ahead: the endpoint's id and address are recorded before the driver makes
        // anything for it, so the boot after a crash between here and the record below sweeps
        // what it made, and pays a plugin driver or IPAM its tear-down ([`crate::owed`]).
        let pending = self.update(&n.id, |n| {
            if let Some(m) = n.members.get_mut(container_id) {
                m.pending_endpoint = Some(info.id.clone());
                m.pending_address = Some(info.address);
            }
        });
        if let Err(e) = pending {
            return Err(fail(e, false).await);
        }
        let joined = match driver.join(&n, &info).await {
            Ok(j) => j,
            Err(e) => return Err(fail(driver_error(&n, e), true).await),
        };
        let gateway = joined.gateway.or(hook_gateway).unwrap_or(pool.gateway);
        let ifname = match &joined.dst_prefix {
            Some(prefix) => format!(
                "{prefix}{}",
                ifname.trim_start_matches(|c: char| !c.is_ascii_digit())
            ),
            None => ifname.to_owned(),
        };
        let mac = match member.config.mac() {
            Ok(m) => m,
            Err(e) => return Err(fail(e, true).await),
        };
        let mac = if joined.src_name.is_empty() {
            // Docker: an empty SrcName moves nothing into the sandbox.
            String::new()
        } else {
            let reused = match netns::link_index(&joined.src_name).await {
                Ok(idx) => idx.is_some_and(|i| preexisting.contains(&i)),
                Err(e) => return Err(fail(e, true).await),
            };
            if reused {
                let refused = NetworkError::System {
                    context: format!("Join answered SrcName {:?}", joined.src_name),
                    reason: "that interface existed before this endpoint was created (a host \
                             or another endpoint's link); refused, nothing was moved"
                        .into(),
                };
                return Err(fail(driver_error(&n, refused), true).await);
            }
            let plumbed = netns::plumb(
                netns_path,
                netns::Plumbing {
                    src_name: joined.src_name.clone(),
                    preexisting,
                    dst_name: ifname.clone(),
                    address,
                    prefix: pool.subnet.prefix,
                    gateway: Some(gateway),
                    // An internal network gives no way out.
                    default_route: joined.default_route && member.primary && !n.internal,
                    routes: joined.static_routes.clone(),
                    mac,
                },
            )
            .await;
            match plumbed {
                Ok(mac) => mac,
                Err(e) => return Err(fail(e, true).await),
            }
        };
        let endpoint = Endpoint {
            id: info.id.clone(),
            address,
            prefix: pool.subnet.prefix,
            gateway,
            mac,
            ifname,
        };
        let recorded = self.update(&n.id, |n| {
            if let Some(m) = n.members.get_mut(container_id) {
                m.endpoint = Some(endpoint);
                m.pending_endpoint = None;
                m.pending_address = None;
            }
        });
        if let Err(e) = recorded {
            return Err(fail(e, true).await);
        }
        Ok(())
    }

    /// Driver leave, address release, then the MVP `disconnect` notification; all "after":
    /// failures are logged warnings. `ep` may be a pending endpoint
    /// ([`crate::Member::owed_endpoint`]): its record is cleared too.
    pub(crate) async fn leave_one(
        &self,
        n: &Network,
        container_id: &str,
        ep: &Endpoint,
        path: &Path,
    ) {
        let _net = self.network_ops.lock(&n.id).await;
        if let (Ok(driver), Some(pool)) = (self.driver(&n.driver).await, n.pool) {
            let info = EndpointInfo {
                id: ep.id.clone(),
                container_id: container_id.to_owned(),
                netns: path.to_owned(),
                address: ep.address,
                prefix: ep.prefix,
                pool,
            };
            if let Err(e) = driver.leave(n, &info).await {
                tracing::warn!(network = n.name, error = %e, "leaving network");
            }
        }
        if let Some(pool_id) = &n.ipam_pool_id {
            match self.remote_ipam(&n.ipam_driver).await {
                Ok(Some(ipam)) => {
                    if let Err(e) = ipam.release_address(pool_id, ep.address).await {
                        tracing::warn!(network = n.name, error = %e, "IPAM ReleaseAddress");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(network = n.name, error = %e, "IPAM driver gone"),
            }
        }
        let mut msg = Self::connect_message(n, container_id, path);
        msg.ip_address = Some(format!("{}/{}", ep.address, ep.prefix));
        msg.mac_address = Some(ep.mac.clone());
        for w in mvp::notify(self.host(), NetworkEvent::Disconnect, &msg).await {
            tracing::warn!(network = n.name, warning = %w, "network disconnect hook");
        }
        if let Err(e) = self.update(&n.id, |n| {
            if let Some(m) = n.members.get_mut(container_id) {
                m.endpoint = None;
                if m.pending_endpoint.as_ref() == Some(&ep.id) {
                    m.pending_endpoint = None;
                    m.pending_address = None;
                }
            }
        }) {
            tracing::warn!(network = n.name, error = %e, "releasing endpoint");
        }
    }
}
