//! The built-in `bridge` driver: one Linux bridge per network (`br-<id12>`, the pool's gateway
//! address on it), one veth pair per endpoint (host end `vb<ep10>` enslaved to the bridge, peer
//! `vp<ep10>` handed over to be moved into the container). The bridge exists while the network has
//! endpoints: the first join creates it, the last leave deletes it, so an idle engine leaves no
//! interface on the host. No NAT, no forwarding rules, no iptables: traffic stays between the
//! containers of the network (and the host's address on the bridge).

use futures::FutureExt;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth};

use crate::driver::{EndpointInfo, JoinInfo, NetworkDriver};
use crate::netns::{self, host_handle, is_errno, link_by_name};
use crate::{Network, NetworkError};

/// The built-in bridge driver.
#[derive(Debug, Default)]
pub struct BridgeDriver;

/// The Linux bridge's name for a network.
pub fn bridge_name(net: &Network) -> String {
    format!("br-{}", &net.id[..12.min(net.id.len())])
}

/// Host-side and container-side veth names of an endpoint.
pub fn veth_names(endpoint_id: &str) -> (String, String) {
    let short = &endpoint_id[..10.min(endpoint_id.len())];
    (format!("vb{short}"), format!("vp{short}"))
}

fn nl(context: String) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    move |e| NetworkError::Netlink {
        context,
        reason: e.to_string(),
    }
}

async fn ensure_bridge(h: &Handle, net: &Network) -> Result<u32, NetworkError> {
    let name = bridge_name(net);
    let pool = net.pool.ok_or_else(|| NetworkError::System {
        context: format!("network {}", net.name),
        reason: "a bridge network needs an IPv4 pool".into(),
    })?;
    if link_by_name(h, &name).await?.is_none() {
        match h.link().add(LinkBridge::new(&name).build()).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("creating bridge {name}"))(e)),
        }
    }
    let link = link_by_name(h, &name)
        .await?
        .ok_or_else(|| NetworkError::System {
            context: format!("creating bridge {name}"),
            reason: "it vanished".into(),
        })?;
    let idx = link.header.index;
    match h
        .address()
        .add(idx, pool.gateway.into(), pool.subnet.prefix)
        .execute()
        .await
    {
        Ok(()) => {}
        Err(e) if is_errno(&e, libc::EEXIST) => {}
        Err(e) => return Err(nl(format!("adding {} to {name}", pool.gateway))(e)),
    }
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl(format!("bringing {name} up")))?;
    Ok(idx)
}

/// Deletes the network's bridge if no interface is enslaved to it any more.
pub(crate) async fn delete_bridge_if_idle(h: &Handle, net: &Network) -> Result<(), NetworkError> {
    let name = bridge_name(net);
    let Some(bridge) = link_by_name(h, &name).await? else {
        return Ok(());
    };
    let idx = bridge.header.index;
    let mut links = h.link().get().execute();
    while let Some(l) = links
        .try_next()
        .await
        .map_err(nl("listing interfaces".into()))?
    {
        if l.attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == idx))
        {
            return Ok(());
        }
    }
    netns::delete_link(h, &name).await
}

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &str {
        "bridge"
    }

    fn create_network<'a>(&'a self, _net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        // The bridge is made on first join.
        async { Ok(()) }.boxed()
    }

    fn delete_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        async move {
            let h = host_handle()?;
            netns::delete_link(&h, &bridge_name(net)).await
        }
        .boxed()
    }

    fn join<'a>(
        &'a self,
        net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<JoinInfo, NetworkError>> {
        async move {
            let h = host_handle()?;
            let br = ensure_bridge(&h, net).await?;
            let (host, peer) = veth_names(&ep.id);
            h.link()
                .add(LinkVeth::new(&host, &peer).build())
                .execute()
                .await
                .map_err(nl(format!("creating veth pair {host}/{peer}")))?;
            let wire = async {
                let link = link_by_name(&h, &host)
                    .await?
                    .ok_or_else(|| NetworkError::System {
                        context: format!("creating veth {host}"),
                        reason: "it vanished".into(),
                    })?;
                h.link()
                    .set(
                        LinkUnspec::new_with_index(link.header.index)
                            .controller(br)
                            .up()
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(nl(format!("attaching {host} to {}", bridge_name(net))))
            };
            if let Err(e) = wire.await {
                let _ = netns::delete_link(&h, &host).await;
                return Err(e);
            }
            Ok(JoinInfo {
                src_name: peer,
                dst_prefix: None,
                gateway: None,
                static_routes: Vec::new(),
                default_route: true,
            })
        }
        .boxed()
    }

    fn leave<'a>(
        &'a self,
        net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<(), NetworkError>> {
        async move {
            let h = host_handle()?;
            let (host, peer) = veth_names(&ep.id);
            // Deleting either end deletes the pair; the peer may still be in the host namespace
            // after a failed join.
            netns::delete_link(&h, &host).await?;
            netns::delete_link(&h, &peer).await?;
            delete_bridge_if_idle(&h, net).await
        }
        .boxed()
    }
}
