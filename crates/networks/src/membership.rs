//! Membership of containers in networks: a member from create (or connect) until remove (or
//! disconnect), with an endpoint only while it runs (attach before start, detach after exit).
//!
//! Locking: attach, detach, connect and disconnect hold the container's own lock; each endpoint
//! join or leave inside them holds that network's lock too (container first, then one network
//! at a time). A container on `host` or `none`, or with no endpoint, takes no network lock.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use berth_state::rollback::Rollback;

use crate::EndpointConfig;
use crate::error::NetworkError;
use crate::model::{Attachment, Member, Network};
use crate::store::NetworkStore;
use crate::{ipam, netns};

impl NetworkStore {
    /// Validates a container's network request at create: the network exists, and a static
    /// address (`--ip`, empty = none) fits its subnet and is free.
    pub fn check_attach(&self, mode: &str, ip: &str) -> Result<Network, NetworkError> {
        let n = self.for_mode(mode)?;
        self.check_ip(&n, "", ip)?;
        Ok(n)
    }

    pub(crate) fn check_ip(
        &self,
        n: &Network,
        container_id: &str,
        ip: &str,
    ) -> Result<Option<Ipv4Addr>, NetworkError> {
        if ip.is_empty() {
            return Ok(None);
        }
        let addr = ipam::parse_addr(ip)?;
        let pool = n
            .pool
            .ok_or_else(|| NetworkError::NoStaticIp(n.name.clone()))?;
        pool.check_static(addr, &n.used(container_id))
            .map_err(|source| NetworkError::OnNetwork {
                name: n.name.clone(),
                source,
            })?;
        Ok(Some(addr))
    }

    /// Records a new container as a member of the network of its `NetworkMode` (nothing for
    /// `host`/`none`), with its aliases there.
    pub fn register(
        &self,
        container_id: &str,
        container_name: &str,
        mode: &str,
        ip: &str,
        aliases: &[String],
    ) -> Result<(), NetworkError> {
        self.register_with(
            container_id,
            container_name,
            mode,
            ip,
            aliases,
            EndpointConfig::default(),
        )
    }

    /// [`NetworkStore::register`] with the endpoint's other settings (links, MAC address, ...).
    pub fn register_with(
        &self,
        container_id: &str,
        container_name: &str,
        mode: &str,
        ip: &str,
        aliases: &[String],
        config: EndpointConfig,
    ) -> Result<(), NetworkError> {
        config.validate()?;
        let n = self.for_mode(mode)?;
        if n.attachment != Attachment::Driver {
            return Ok(());
        }
        let requested_ip = self.check_ip(&n, container_id, ip)?;
        self.update(&n.id, |n| {
            n.members.insert(
                container_id.to_owned(),
                Member {
                    container_name: container_name.to_owned(),
                    primary: true,
                    requested_ip,
                    endpoint: None,
                    pending_endpoint: None,
                    pending_address: None,
                    seq: 0,
                    aliases: aliases.to_vec(),
                    config,
                },
            );
        })?;
        Ok(())
    }

    /// Forgets a removed container everywhere (call [`NetworkStore::detach`] first).
    pub fn unregister(&self, container_id: &str) {
        for (n, _) in self.container_networks(container_id) {
            if let Err(e) = self.update(&n.id, |n| {
                n.members.remove(container_id);
            }) {
                tracing::warn!(network = n.name, error = %e, "forgetting a removed container");
            }
        }
    }

    /// Before a container starts: creates its namespace at [`NetworkStore::netns_path`] and
    /// wires one interface per network it is a member of. Returns the namespace to join, or
    /// `None` when the container's mode is `host` or `none`. On failure everything made so far
    /// is torn down (no interface, namespace or lease is left).
    pub async fn attach(
        &self,
        container_id: &str,
        mode: &str,
    ) -> Result<Option<PathBuf>, NetworkError> {
        if self.for_mode(mode)?.attachment != Attachment::Driver {
            return Ok(None);
        }
        let _container = self.container_ops.lock(container_id).await;
        let path = self.netns_path(container_id);
        self.detach_locked(container_id).await;
        netns::create(&path).await?;
        for (i, (n, _)) in self
            .container_networks(container_id)
            .into_iter()
            .enumerate()
        {
            if let Err(e) = self
                .join_one(&n.id, container_id, &format!("eth{i}"), &path)
                .await
            {
                self.detach_locked(container_id).await;
                return Err(e);
            }
        }
        if self.wants_resolver(container_id) {
            self.start_resolver(container_id, &path);
        }
        Ok(Some(path))
    }

    /// After a container stopped (or when its start failed): leaves every network (reverse
    /// order), releases the leases and deletes the namespace. Idempotent; failures are logged.
    pub async fn detach(&self, container_id: &str) {
        let _container = self.container_ops.lock(container_id).await;
        self.detach_locked(container_id).await;
    }

    pub(crate) async fn detach_locked(&self, container_id: &str) {
        self.resolvers.stop(container_id);
        let path = self.netns_path(container_id);
        for (n, m) in self.container_networks(container_id).into_iter().rev() {
            if let Some(ep) = m.owed_endpoint(&n) {
                self.leave_one(&n, container_id, &ep, &path).await;
            }
        }
        netns::remove(&path);
    }

    /// `network connect`: makes the container a member of `network` (with `--ip`, empty = none,
    /// and `--alias`es); when `running`, wires the interface at once (`eth<N>`, next free number).
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        &self,
        network: &str,
        container_id: &str,
        container_name: &str,
        mode: &str,
        ip: &str,
        aliases: &[String],
        running: bool,
    ) -> Result<(), NetworkError> {
        self.connect_with(
            network,
            container_id,
            container_name,
            mode,
            ip,
            aliases,
            running,
            EndpointConfig::default(),
        )
        .await
    }

    /// [`NetworkStore::connect`] with the endpoint's other settings (links, MAC address, ...).
    #[allow(clippy::too_many_arguments)]
    pub async fn connect_with(
        &self,
        network: &str,
        container_id: &str,
        container_name: &str,
        mode: &str,
        ip: &str,
        aliases: &[String],
        running: bool,
        config: EndpointConfig,
    ) -> Result<(), NetworkError> {
        config.validate()?;
        let _container = self.container_ops.lock(container_id).await;
        let n = self.get(network)?;
        let primary = self.for_mode(mode)?;
        if n.attachment != Attachment::Driver || primary.attachment != Attachment::Driver {
            return Err(NetworkError::Invalid(format!(
                "container {container_name} cannot be connected to network {}: containers on the host or none network, and the host and none networks, take no further connections",
                n.name
            )));
        }
        if n.members.contains_key(container_id) {
            return Err(NetworkError::AlreadyConnected {
                container: container_name.to_owned(),
                network: n.name,
            });
        }
        let requested_ip = self.check_ip(&n, container_id, ip)?;
        let current = self.container_networks(container_id);
        // Reconnecting the network of the container's `NetworkMode` (compose disconnects and
        // connects it again to set aliases) makes it the primary network again: `eth0`, the
        // default route, the published ports.
        let is_primary = primary.id == n.id;
        let seq = if is_primary {
            0
        } else {
            current.iter().map(|(_, m)| m.seq + 1).max().unwrap_or(1)
        };
        // Two steps (the membership record, then the interface of a running container) under
        // the one rollback primitive: a failed join forgets the membership again.
        let mut undo = Rollback::new("network connect");
        self.update(&n.id, |n| {
            n.members.insert(
                container_id.to_owned(),
                Member {
                    container_name: container_name.to_owned(),
                    primary: is_primary,
                    requested_ip,
                    endpoint: None,
                    pending_endpoint: None,
                    pending_address: None,
                    seq,
                    aliases: aliases.to_vec(),
                    config,
                },
            );
        })?;
        let network_id = n.id.clone();
        undo.push_sync("record the membership", move || {
            let _ = self.update(&network_id, |n| {
                n.members.remove(container_id);
            });
        });
        if running {
            let used: BTreeSet<String> = current
                .iter()
                .filter_map(|(_, m)| m.endpoint.as_ref().map(|e| e.ifname.clone()))
                .collect();
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|name| !used.contains(name))
                .unwrap_or_else(|| "eth9".into());
            let path = self.netns_path(container_id);
            let joined = self.join_one(&n.id, container_id, &ifname, &path).await;
            undo.check(joined).await?;
            if crate::dns::resolves_names(&n) {
                // Joining a first user-defined network starts the resolver (its resolv.conf
                // names the host's resolvers until the next start, as with Docker).
                self.start_resolver(container_id, &path);
            }
        }
        undo.commit();
        Ok(())
    }

    /// Whether `container_id` is a member of a network whose members resolve each other by name
    /// (its `/etc/resolv.conf` then names the embedded resolver, see [`crate::dns`]).
    pub fn wants_resolver(&self, container_id: &str) -> bool {
        self.container_networks(container_id)
            .iter()
            .any(|(n, _)| crate::dns::resolves_names(n))
    }

    /// Starts the container's resolver; a failure is logged (names then do not resolve, the
    /// container still runs, as when Docker's resolver fails to start).
    fn start_resolver(&self, container_id: &str, netns: &std::path::Path) {
        if let Err(e) = self
            .resolvers
            .start(container_id, netns, self.networks.clone())
        {
            tracing::warn!(container = %container_id, "starting the embedded resolver: {e}");
        }
    }

    /// A renamed container answers to its new name (and no longer to the old one).
    pub fn rename_member(&self, container_id: &str, new_name: &str) {
        for (n, _) in self.container_networks(container_id) {
            if let Err(e) = self.update(&n.id, |n| {
                if let Some(m) = n.members.get_mut(container_id) {
                    m.container_name = new_name.to_owned();
                }
            }) {
                tracing::warn!(network = n.name, error = %e, "recording a container's new name");
            }
        }
    }

    /// `network disconnect`: leaves (if wired) and forgets the membership.
    pub async fn disconnect(
        &self,
        network: &str,
        container_id: &str,
        container_name: &str,
    ) -> Result<(), NetworkError> {
        let _container = self.container_ops.lock(container_id).await;
        let n = self.get(network)?;
        let Some(m) = n.members.get(container_id).cloned() else {
            return Err(NetworkError::NotConnected {
                container: container_name.to_owned(),
                network: n.name,
            });
        };
        if let Some(ep) = &m.owed_endpoint(&n) {
            let path = self.netns_path(container_id);
            if m.endpoint.is_some()
                && let Err(e) = netns::delete_in(&path, &ep.ifname).await
            {
                tracing::warn!(error = %e, "deleting the container's interface");
            }
            self.leave_one(&n, container_id, ep, &path).await;
        }
        self.update(&n.id, |n| {
            n.members.remove(container_id);
        })?;
        Ok(())
    }
}
