//! Catch-up (`docs/semantics.md#catch-up`): what the engine owes plugins after a daemon crash, and
//! what it tells a plugin that (re)starts.
//!
//! - [`Engine::catch_up`] runs at daemon boot once the plugins are up, before the readiness gate
//!   opens and before restart policies run: for the containers that died with the previous daemon
//!   it sends the tear-down calls a normal exit would have sent, volumes before networks: the
//!   `stop` volume hooks of their bind mounts, every owed `VolumeDriver.Unmount` (with the mount id
//!   sent at `Mount`), then per endpoint `RevokeExternalConnectivity`, `Leave`, `DeleteEndpoint`,
//!   `IpamDriver.ReleaseAddress` and the MVP `disconnect` hook (for wired and pending endpoints),
//!   then `DeleteNetwork` / `ReleasePool` for the networks whose create or remove the crash cut.
//!   What is owed is on disk: the volume store's `mount.json` records, the endpoints kept in
//!   `network.json` and the network records still marked with a phase.
//! - [`Engine::sync_objects`] lists the objects a plugin handles for its v2 `sync` message
//!   (sent by the plugin host after a load, boot, restart or upgrade).

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_networks::{PaidLeaves, PaidNetworks};
use berth_plugin_host::protocol::sync::{
    SyncContainer, SyncEndpoint, SyncIpam, SyncMount, SyncNetwork, SyncRequest, SyncVolume,
};
use berth_volumes::Paid;

use crate::container::Status;
use crate::engine::Engine;
use crate::handle::lock;

/// What [`Engine::catch_up`] sent and what is still owed.
#[derive(Debug, Default, Clone)]
pub struct CatchUp {
    /// Containers whose bind-mount `stop` hooks were sent.
    pub containers: Vec<String>,
    /// The owed `Unmount`s.
    pub unmounts: Paid,
    /// The owed endpoint tear-downs.
    pub leaves: PaidLeaves,
    /// The owed network tear-downs (creates and removes a crash cut).
    pub networks: PaidNetworks,
}

impl Engine {
    /// Sends the tear-down calls owed for the containers that died with the previous daemon (see
    /// the module doc). Call it once the plugins are up and before restart policies run.
    pub async fn catch_up(self: &Arc<Self>) -> CatchUp {
        let mut out = CatchUp::default();
        let interrupted = lock(&self.interrupted).clone();
        for id in interrupted {
            let Ok(c) = self.container(&id) else { continue };
            if c.config.spec.system {
                continue;
            }
            let _op = c.op.lock().await;
            let st = c.state();
            if st.status != Status::Exited {
                continue;
            }
            // Driver volumes: their counts died with the daemon, so this sends no Unmount (the
            // owed ones go below); bind plugins get their `stop`.
            self.release_mounts(&c.config, &st.mounts).await;
            out.containers.push(id);
        }
        let host = self.plugins().map(|h| h.as_ref());
        out.unmounts = self.volumes.pay_owed_unmounts(host).await;
        let running = |id: &str| {
            self.container(id)
                .is_ok_and(|c| c.state().status == Status::Running)
        };
        out.leaves = self.networks.pay_owed_leaves(&running).await;
        out.networks = self.networks.pay_owed_networks(None).await;
        tracing::info!(
            containers = out.containers.len(),
            unmounts = out.unmounts.sent.len(),
            endpoints = out.leaves.sent.len(),
            networks = out.networks.sent.len(),
            still_owed = out.unmounts.still_owed.len()
                + out.leaves.still_owed.len()
                + out.networks.still_owed.len(),
            "catch-up: owed tear-downs sent"
        );
        out
    }

    /// The objects plugin `plugin` handles, for its v2 `sync` message: volumes whose driver it is
    /// (with their current mount id and users), networks whose driver or IPAM driver it is (with
    /// their endpoints), and every container that uses one of them.
    pub fn sync_objects(&self, plugin: &str) -> SyncRequest {
        let mut users = BTreeSet::new();
        let volumes: Vec<SyncVolume> = self
            .volumes
            .list()
            .into_iter()
            .filter(|v| v.driver == plugin)
            .map(|v| {
                users.extend(self.volume_users(&v.name));
                let mount = self.volumes.current_mount(&v.name);
                let mountpoint = match &mount {
                    Some((_, mp, _)) => mp.clone(),
                    None => v.mountpoint.to_string_lossy().into_owned(),
                };
                SyncVolume {
                    mount: mount.map(|(id, _, containers)| {
                        users.extend(containers.iter().cloned());
                        SyncMount { id, containers }
                    }),
                    name: v.name,
                    mountpoint,
                    options: v.options.unwrap_or_default(),
                    labels: v.labels.unwrap_or_default(),
                }
            })
            .collect();
        let networks: Vec<SyncNetwork> = self
            .networks
            .list()
            .into_iter()
            .filter(|n| n.driver == plugin || n.ipam_driver == plugin)
            .map(|n| {
                users.extend(n.members.keys().cloned());
                SyncNetwork {
                    endpoints: n
                        .members
                        .iter()
                        .filter_map(|(id, m)| {
                            m.endpoint.as_ref().map(|e| SyncEndpoint {
                                endpoint_id: e.id.clone(),
                                container_id: id.clone(),
                                address: format!("{}/{}", e.address, e.prefix),
                                mac_address: e.mac.clone(),
                            })
                        })
                        .collect(),
                    ipam: SyncIpam {
                        driver: n.ipam_driver.clone(),
                        pool_id: n.ipam_pool_id.clone().unwrap_or_default(),
                        subnet: n.pool.map(|p| p.subnet.to_string()).unwrap_or_default(),
                        gateway: n.pool.map(|p| p.gateway.to_string()).unwrap_or_default(),
                    },
                    network_id: n.id,
                    name: n.name,
                    driver: n.driver,
                    options: n.options,
                }
            })
            .collect();
        let containers = users
            .into_iter()
            .filter_map(|id| self.container(&id).ok())
            .map(|c| SyncContainer {
                id: c.id().to_owned(),
                name: c.config.name.clone(),
                state: c.state().status.as_str().to_owned(),
            })
            .collect();
        SyncRequest {
            reason: None,
            plugin: plugin.to_owned(),
            volumes,
            networks,
            containers,
        }
    }
}
