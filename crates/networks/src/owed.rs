//! Owed plugin-side tear-downs (catch-up after a daemon crash, `docs/semantics.md#catch-up`).
//!
//! **Endpoints.** Containers do not outlive the daemon, so an endpoint still recorded in
//! `network.json` at open belongs to a container that died with the previous daemon. On networks
//! that only use the built-in bridge driver and IPAM, [`NetworkStore::open`] drops such endpoints
//! and [`NetworkStore::sweep_idle_bridges`] deletes their interfaces, as before. On a network with
//! a plugin driver or a plugin IPAM, the endpoint stays recorded: the plugin is still owed
//! `RevokeExternalConnectivity`, `Leave`, `DeleteEndpoint`, `ReleaseAddress` and the MVP
//! `disconnect` notification, and [`NetworkStore::pay_owed_leaves`] sends them once the plugins are
//! up (daemon boot). The same holds for a *pending* endpoint (its id and address are recorded
//! before the driver's `CreateEndpoint`; a crash before it was wired leaves it so): its
//! `CreateEndpoint` and `Join` may have been sent, so it is owed the same calls. A container that
//! starts again tears down its leftover endpoints first, so a debt not paid at boot is paid then.
//!
//! **Networks.** A create that tells a plugin (a plugin driver or IPAM) records the network with
//! [`Phase::Creating`] before `RequestPool`, again with the pool id once granted, and clears the
//! phase once `CreateNetwork` succeeded; a remove records [`Phase::Removing`] before
//! `ReleasePool` / `DeleteNetwork` and removes the record after. A record found with a phase at
//! open is not a network (it is not listed, its name is free) but a debt:
//! [`NetworkStore::pay_owed_networks`] sends `DeleteNetwork` and `ReleasePool` (what the recorded
//! state says may exist plugin-side), then removes the record.
//!
//! A debt whose plugins are not loaded or not Active stays recorded and is tried again at the
//! next boot (or when the plugin is next loaded, [`NetworkStore::pay_owed_networks`] with its
//! name). One that was sent is forgotten whatever the answers (failures are logged, like every
//! tear-down call's; a plugin answering "not found" to a delete it already did is fine).

use berth_plugin_host::PluginState;

use berth_plugin_host::protocol::mvp::NetworkEvent;
use berth_state::lock;

use crate::model::{Network, Phase};
use crate::mvp;
use crate::store::NetworkStore;

/// The built-in drivers: endpoints on their networks owe no plugin anything.
const BUILTIN_DRIVERS: [&str; 3] = ["bridge", "host", "null"];

/// Whether driver `name` is a plugin (not built in).
pub(crate) fn is_plugin_driver(name: &str) -> bool {
    !BUILTIN_DRIVERS.contains(&name)
}

/// Whether an endpoint left on `n` by a dead daemon (or `n`'s own create or remove cut by one)
/// is owed a plugin's tear-down.
pub(crate) fn owes_plugins(n: &Network) -> bool {
    is_plugin_driver(&n.driver) || n.ipam_pool_id.is_some()
}

/// What [`NetworkStore::pay_owed_networks`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PaidNetworks {
    /// `(network name, network id, phase)` of the networks whose plugin-side objects were
    /// deleted (and whose records are gone).
    pub sent: Vec<(String, String, Phase)>,
    /// `(network name, reason)` of those still owed.
    pub still_owed: Vec<(String, String)>,
}

/// What [`NetworkStore::pay_owed_leaves`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PaidLeaves {
    /// `(network name, container id, endpoint id)` of the endpoints torn down.
    pub sent: Vec<(String, String, String)>,
    /// `(network name, container id, reason)` of those still owed.
    pub still_owed: Vec<(String, String, String)>,
}

impl NetworkStore {
    /// The plugins `n`'s tear-downs go to that are not Active, as a reason (`None`: all are).
    /// A driver registered in-process ([`NetworkStore::register_driver`]) is always there.
    fn plugins_not_active(&self, n: &Network) -> Option<String> {
        let mut names = Vec::new();
        if is_plugin_driver(&n.driver) && !lock(&self.drivers).contains_key(&n.driver) {
            names.push(n.driver.as_str());
        }
        if n.ipam_pool_id.is_some() {
            names.push(n.ipam_driver.as_str());
        }
        let down: Vec<String> = names
            .into_iter()
            .filter_map(|name| {
                let state = self.host().and_then(|h| h.get(name)).map(|p| p.state());
                match state {
                    Some(PluginState::Active) => None,
                    Some(s) => Some(format!("plugin \"{name}\" is {s:?}").to_lowercase()),
                    None => Some(format!("plugin \"{name}\" is not loaded")),
                }
            })
            .collect();
        (!down.is_empty()).then(|| down.join(", "))
    }

    /// The endpoints (wired or pending) recorded for containers that `running` says are not
    /// running, as `(network, container id)`.
    pub fn owed_leaves(&self, running: &dyn Fn(&str) -> bool) -> Vec<(Network, String)> {
        self.list()
            .into_iter()
            .flat_map(|n| {
                let ids: Vec<String> = n
                    .members
                    .iter()
                    .filter(|(id, m)| m.owed_endpoint(&n).is_some() && !running(id))
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter().map(move |id| (n.clone(), id))
            })
            .collect()
    }

    /// Daemon boot, once the plugins are up: tears down every endpoint of a container that is
    /// not running (see the module doc), in reverse connection order per container.
    pub async fn pay_owed_leaves(&self, running: &dyn Fn(&str) -> bool) -> PaidLeaves {
        let mut paid = PaidLeaves::default();
        let mut owed = self.owed_leaves(running);
        owed.sort_by_key(|(n, id)| (id.clone(), std::cmp::Reverse(n.members[id].seq)));
        for (n, container_id) in owed {
            let _container = self.container_ops.lock(&container_id).await;
            // Read again under the container's lock: a start may have torn it down meanwhile.
            let Ok(n) = self.get(&n.id) else { continue };
            let Some(ep) = n
                .members
                .get(&container_id)
                .and_then(|m| m.owed_endpoint(&n))
            else {
                continue;
            };
            if let Some(reason) = self.plugins_not_active(&n) {
                tracing::warn!(network = %n.name, container = %container_id, %reason, "endpoint tear-down still owed; tried again at the next boot");
                paid.still_owed.push((n.name.clone(), container_id, reason));
                continue;
            }
            let path = self.netns_path(&container_id);
            self.leave_one(&n, &container_id, &ep, &path).await;
            paid.sent.push((n.name.clone(), container_id, ep.id));
        }
        paid
    }

    /// The networks whose create or remove a crash cut, as `(name, id, phase)`.
    pub fn owed_networks(&self) -> Vec<(String, String, Phase)> {
        lock(&self.owed_networks)
            .iter()
            .filter_map(|n| n.phase.map(|p| (n.name.clone(), n.id.clone(), p)))
            .collect()
    }

    /// Deletes the plugin-side objects of the networks whose create or remove a crash cut (see
    /// the module doc): at daemon boot once the plugins are up (`plugin`: `None`), and when
    /// plugin `plugin` was loaded (only the debts its name is owed). Owed networks whose
    /// plugins are not all Active stay owed.
    pub async fn pay_owed_networks(&self, plugin: Option<&str>) -> PaidNetworks {
        let mut paid = PaidNetworks::default();
        let owed: Vec<Network> = lock(&self.owed_networks)
            .iter()
            .filter(|n| plugin.is_none_or(|p| n.driver == p || n.ipam_driver == p))
            .cloned()
            .collect();
        for n in owed {
            let Some(phase) = n.phase else { continue };
            let _net = self.network_ops.lock(&n.id).await;
            // Checked again under the network's lock: a concurrent payer may have paid it.
            if !lock(&self.owed_networks).iter().any(|o| o.id == n.id) {
                continue;
            }
            if phase == Phase::Creating && n.pool.is_none() {
                // Cut before a pool was granted: CreateNetwork was never sent, and a
                // RequestPool in flight has no recorded id to release (a v2 `sync` tells the
                // plugin which pools exist). Nothing can be sent.
                tracing::warn!(network = %n.name, "a network create cut before its pool was granted: nothing owed can be sent");
                self.forget_record(&n.id);
                lock(&self.owed_networks).retain(|o| o.id != n.id);
                continue;
            }
            if let Some(reason) = self.plugins_not_active(&n) {
                tracing::warn!(network = %n.name, ?phase, %reason, "network tear-down still owed; tried again later");
                paid.still_owed.push((n.name.clone(), reason));
                continue;
            }
            self.delete_plugin_side(&n, phase).await;
            self.forget_record(&n.id);
            lock(&self.owed_networks).retain(|o| o.id != n.id);
            if phase == Phase::Removing {
                for w in
                    mvp::notify(self.host(), NetworkEvent::Delete, &mvp::network_message(&n)).await
                {
                    tracing::warn!(network = n.name, warning = %w, "network delete hook");
                }
            }
            tracing::info!(network = %n.name, id = %n.id, ?phase, "owed network tear-down sent");
            paid.sent.push((n.name.clone(), n.id.clone(), phase));
        }
        paid
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::ipam::Pool;
    use crate::model::{Attachment, Endpoint, Member, builtin};

    /// A network record with one member whose endpoint a dead daemon left.
    fn with_endpoint(name: &str, driver: &str, ipam_pool: Option<&str>) -> Network {
        let mut n = builtin(name, driver, Attachment::Driver);
        n.id = berth_state::new_id();
        n.pool = Some(Pool::default_for("10.9.0.0/24".parse().unwrap()));
        n.ipam_pool_id = ipam_pool.map(str::to_owned);
        if ipam_pool.is_some() {
            n.ipam_driver = "ipamplug".into();
        }
        n.members.insert(
            "c1".into(),
            Member {
                container_name: "web".into(),
                primary: true,
                requested_ip: None,
                endpoint: Some(Endpoint {
                    id: "e1".into(),
                    address: Ipv4Addr::new(10, 9, 0, 2),
                    prefix: 24,
                    gateway: Ipv4Addr::new(10, 9, 0, 1),
                    mac: String::new(),
                    ifname: "eth0".into(),
                }),
                pending_endpoint: None,
                pending_address: None,
                seq: 0,
                config: Default::default(),
                aliases: Vec::new(),
            },
        );
        n
    }

    #[tokio::test]
    async fn endpoints_owed_to_plugins_survive_the_load_and_stay_owed_while_the_plugin_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let records = berth_state::RecordDir::<Network>::open(
            dir.path().join("networks"),
            "network.json",
            "network",
        )
        .unwrap();
        let on_plugin = with_endpoint("pnet", "netplug", None);
        let on_ipam = with_endpoint("inet", "bridge", Some("pool-1"));
        let builtin_only = with_endpoint("bnet", "bridge", None);
        for n in [&on_plugin, &on_ipam, &builtin_only] {
            records.create(&n.id, n).unwrap();
        }

        let store = NetworkStore::open(dir.path(), None).unwrap();
        let owed: Vec<String> = store
            .owed_leaves(&|_| false)
            .into_iter()
            .map(|(n, c)| format!("{}:{c}", n.name))
            .collect();
        assert_eq!(owed.len(), 2, "{owed:?}");
        assert!(owed.contains(&"pnet:c1".to_owned()) && owed.contains(&"inet:c1".to_owned()));
        // A running container owes nothing.
        assert!(store.owed_leaves(&|_| true).is_empty());

        // No plugin host: nothing can be sent, everything stays owed, on disk too.
        let paid = store.pay_owed_leaves(&|_| false).await;
        assert!(paid.sent.is_empty());
        assert_eq!(paid.still_owed.len(), 2, "{paid:?}");
        let again = NetworkStore::open(dir.path(), None).unwrap();
        assert_eq!(again.owed_leaves(&|_| false).len(), 2);
        assert!(
            again.get("bnet").unwrap().members["c1"].endpoint.is_none(),
            "a built-in network's endpoint is dropped at load"
        );
    }
}
