//! Creating and removing a network (its pool, the driver's `CreateNetwork`/`DeleteNetwork`).
//!
//! Locking: a create claims its name (and its built-in pool) in the store's `pending` table
//! for its length instead of holding a lock across the driver and IPAM calls, so a hung plugin
//! delays only the creates that use it. A remove takes the network's own lock and takes the
//! record out of the table before calling the plugins.

use std::collections::BTreeMap;

use chrono::Utc;

use berth_plugin_host::protocol::mvp::{NetworkEvent, NetworkMessage};

use crate::error::{NetworkError, driver_error};
use crate::ipam::{Pool, Subnet};
use crate::model::{Attachment, CreateNetwork, Network, PREDEFINED, Phase, default_ipam};
use crate::remote::RemotePool;
use berth_state::lock;
use berth_state::rollback::Rollback;

use crate::store::NetworkStore;
use crate::{ipam, mvp, netns, owed};

impl NetworkStore {
    /// Creates a network: validates the name, driver and IPAM request (overlaps with the other
    /// networks are refused; without a subnet a default pool not used by another network or a
    /// host interface is picked), tells the driver, persists.
    pub async fn create(&self, req: CreateNetwork) -> Result<Network, NetworkError> {
        validate_network_name(&req.name)?;
        let _claim = self.claim_name(&req.name)?;
        let driver_name = if req.driver.is_empty() {
            "bridge".to_owned()
        } else {
            req.driver.clone()
        };
        if driver_name == "host" || driver_name == "null" {
            return Err(NetworkError::SingleInstance(driver_name));
        }
        let driver = self.driver(&driver_name).await?;
        let ipam_name = if req.ipam_driver.is_empty() {
            default_ipam()
        } else {
            req.ipam_driver.clone()
        };
        let ipam = self.remote_ipam(&ipam_name).await?;
        let id = berth_state::new_id();
        // The MVP `create` hook runs first: plugins may fill or change Subnet, Gateway, Options.
        let (subnet0, gateway0, range) = req.ipam_config.first().cloned().unwrap_or_default();
        let msg = NetworkMessage {
            network_id: Some(id.clone()),
            network_name: Some(req.name.clone()),
            driver: Some(driver_name.clone()),
            subnet: (!subnet0.is_empty()).then_some(subnet0),
            gateway: gateway0.filter(|g| !g.is_empty()),
            options: Some(req.options.clone()),
            ..Default::default()
        };
        let setup = mvp::setup(self.host(), NetworkEvent::Create, msg).await?;
        for w in &setup.warnings {
            tracing::warn!(network = req.name, warning = %w, "network create hook");
        }
        let undo_hooks = |m: NetworkMessage, called: Vec<String>| async move {
            for w in mvp::undo(self.host(), NetworkEvent::Create, &m, &called).await {
                tracing::warn!(warning = %w, "network create hook compensation");
            }
        };
        let merged = setup.message.clone();
        let subnet = merged.subnet.clone().unwrap_or_default();
        let gateway = merged.gateway.clone().unwrap_or_default();
        let range = range.unwrap_or_default();
        let options = merged.options.clone().unwrap_or(req.options);
        let mut undo = Rollback::new("network create");
        undo.push("undo the create hooks", move || {
            undo_hooks(merged, setup.called)
        });
        let mut n = Network {
            id,
            name: req.name.clone(),
            driver: driver_name.clone(),
            created: Utc::now(),
            attachment: Attachment::Driver,
            options,
            labels: req.labels,
            ipam_driver: ipam_name,
            pool: None,
            ipam_pool_id: None,
            members: BTreeMap::new(),
            internal: req.internal,
            enable_ipv6: req.enable_ipv6,
            attachable: req.attachable,
            aux_addresses: BTreeMap::new(),
            phase: None,
        };
        // Write-ahead when a plugin is told: the record (not yet a network) says what a crash
        // from here on leaves the plugins owed (`crate::owed`): before an IPAM plugin's
        // RequestPool, and with the pool (and its id) before the driver's CreateNetwork.
        let plugin_side = owed::is_plugin_driver(&driver_name) || ipam.is_some();
        let mut recorded = false;
        if ipam.is_some() {
            n.phase = Some(Phase::Creating);
            self.record_intent(&mut undo, &n, &mut recorded).await?;
        }
        let pooled = match &ipam {
            Some(ipam) => ipam
                .request_pool(&subnet, &range, &gateway, &n.options)
                .await
                .map(|p| (p.pool, Some(p.pool_id))),
            None => self
                .builtin_pool(&req.name, &subnet, &gateway, &range)
                .await
                .map(|p| (p, None)),
        };
        let (pool, pool_id) = undo.check(pooled).await?;
        n.pool = Some(pool);
        n.ipam_pool_id = pool_id.clone();
        if let (Some(ipam), Some(pool_id)) = (&ipam, pool_id) {
            let held = RemotePool { pool_id, pool };
            undo.push("IPAM ReleasePool", move || async move {
                if let Err(e) = ipam.release_pool(&held).await {
                    tracing::warn!(error = %e, "releasing the IPAM pool of a failed network create");
                }
            });
        }
        n.aux_addresses = undo.check(aux_addresses(&req.aux_addresses, &pool)).await?;
        if plugin_side {
            n.phase = Some(Phase::Creating);
            self.record_intent(&mut undo, &n, &mut recorded).await?;
        }
        let created = driver
            .create_network(&n)
            .await
            .map_err(|e| driver_error(&n, e));
        undo.check(created).await?;
        {
            let (driver, n) = (driver.clone(), n.clone());
            undo.push("driver DeleteNetwork", move || async move {
                if let Err(e) = driver.delete_network(&n).await {
                    tracing::warn!(network = n.name, error = %e, "DeleteNetwork of a failed network create");
                }
            });
        }
        n.phase = None;
        let committed = if plugin_side {
            self.records.store(&n.id, &n)
        } else {
            self.records.create(&n.id, &n).map(|_| ())
        };
        undo.check(committed.map_err(NetworkError::from)).await?;
        undo.commit();
        lock(&self.networks).push(n.clone());
        Ok(n)
    }

    /// Writes the record of a network being created, with its phase (`recorded`: whether it was
    /// written before, else its directory is made and the rollback forgets it on failure).
    async fn record_intent<'a>(
        &'a self,
        undo: &mut Rollback<'a>,
        n: &Network,
        recorded: &mut bool,
    ) -> Result<(), NetworkError> {
        let written = if *recorded {
            self.records.store(&n.id, n)
        } else {
            self.records.create(&n.id, n).map(|_| ())
        };
        undo.check(written.map_err(NetworkError::from)).await?;
        if !*recorded {
            let id = n.id.clone();
            undo.push_sync("forget the create's record", move || {
                self.forget_record(&id)
            });
            *recorded = true;
        }
        Ok(())
    }

    /// Removes a record whose network never came to be or is gone (a failure is logged: the
    /// record stays on disk, and the next boot pays what it says is owed).
    pub(crate) fn forget_record(&self, id: &str) {
        if let Err(e) = self.records.remove(id) {
            tracing::warn!(network = id, error = %e, "removing a network record");
        }
    }

    /// Claims `name` for a create in flight: refused when a network or another create has it.
    /// The claim (and any pool [`Self::builtin_pool`] adds to it) is given back when dropped.
    fn claim_name(&self, name: &str) -> Result<Claim<'_>, NetworkError> {
        let mut pending = lock(&self.pending);
        if pending.names.contains(name) || self.get(name).is_ok() {
            return Err(NetworkError::NameInUse(name.to_owned()));
        }
        pending.names.insert(name.to_owned());
        Ok(Claim {
            store: self,
            name: name.to_owned(),
        })
    }

    /// The built-in IPAM's pool for network `name`: the user's subnet (refused when it overlaps
    /// another network or a create in flight), else a default pool not used by another network,
    /// a create in flight or a host interface. The pool is claimed for `name`'s create.
    pub(crate) async fn builtin_pool(
        &self,
        name: &str,
        subnet: &str,
        gateway: &str,
        range: &str,
    ) -> Result<Pool, NetworkError> {
        let host = if subnet.is_empty() {
            match netns::host_subnets().await {
                Ok(host) => host,
                Err(e) => {
                    tracing::warn!(error = %e, "listing host subnets for the default pool");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let mut pending = lock(&self.pending);
        let mut others: Vec<(String, Subnet)> = lock(&self.networks)
            .iter()
            .filter_map(|n| n.pool.map(|p| (n.name.clone(), p.subnet)))
            .collect();
        others.extend(pending.subnets.iter().cloned());
        let pool = pick_pool(&others, &host, subnet, gateway, range)?;
        pending.subnets.push((name.to_owned(), pool.subnet));
        Ok(pool)
    }

    /// Removes a network: refused for the pre-defined ones and while containers are connected.
    pub async fn remove(&self, reference: &str) -> Result<Network, NetworkError> {
        let found = self.get(reference)?;
        if PREDEFINED.contains(&found.name.as_str()) {
            return Err(NetworkError::Predefined(found.name));
        }
        let _net = self.network_ops.lock(&found.id).await;
        // Checked and taken out of the table in one step: no container can become a member
        // while the plugins are told.
        let n = {
            let mut all = lock(&self.networks);
            let Some(at) = all.iter().position(|n| n.id == found.id) else {
                return Err(NetworkError::NotFound(reference.to_owned()));
            };
            let n = &all[at];
            if !n.members.is_empty() {
                return Err(NetworkError::ActiveEndpoints {
                    name: n.name.clone(),
                    id: n.id.clone(),
                    containers: n
                        .members
                        .values()
                        .map(|m| m.container_name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            all.remove(at)
        };
        // Write-ahead when a plugin is told: a crash before the record is gone leaves the
        // plugins owed ReleasePool and DeleteNetwork again (`crate::owed`).
        if owed::owes_plugins(&n) {
            let marked = Network {
                phase: Some(Phase::Removing),
                ..n.clone()
            };
            if let Err(e) = self.records.store(&n.id, &marked) {
                lock(&self.networks).push(n);
                return Err(e.into());
            }
        }
        // After the fact: IPAM, driver and hook failures are warnings (`docs/semantics.md` §3: "after").
        self.delete_plugin_side(&n, Phase::Removing).await;
        if let Err(e) = self.records.remove(&n.id) {
            // The record is still on disk: keep it in the table too.
            lock(&self.networks).push(n);
            return Err(e.into());
        }
        for w in mvp::notify(self.host(), NetworkEvent::Delete, &mvp::network_message(&n)).await {
            tracing::warn!(network = n.name, warning = %w, "network delete hook");
        }
        Ok(n)
    }

    /// Tells the IPAM and the driver a network is gone: for a remove (`Phase::Removing`)
    /// Docker's order, ReleasePool → DeleteNetwork; for a create that did not complete
    /// (`Phase::Creating`) the reverse of the create, DeleteNetwork (only once a pool was
    /// granted: CreateNetwork is sent after) → ReleasePool. Failures are logged warnings.
    pub(crate) async fn delete_plugin_side(&self, n: &Network, phase: Phase) {
        let release_pool = || async {
            let (Some(pool_id), Some(pool)) = (&n.ipam_pool_id, n.pool) else {
                return;
            };
            match self.remote_ipam(&n.ipam_driver).await {
                Ok(Some(ipam)) => {
                    let held = RemotePool {
                        pool_id: pool_id.clone(),
                        pool,
                    };
                    if let Err(e) = ipam.release_pool(&held).await {
                        tracing::warn!(network = n.name, error = %e, "IPAM ReleasePool");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(network = n.name, error = %e, "IPAM driver gone"),
            }
        };
        let delete_network = || async {
            if phase == Phase::Creating && n.pool.is_none() {
                return;
            }
            match self.driver(&n.driver).await {
                Ok(d) => {
                    if let Err(e) = d.delete_network(n).await {
                        tracing::warn!(network = n.name, error = %e, "driver DeleteNetwork");
                    }
                }
                Err(e) => tracing::warn!(network = n.name, error = %e, "network driver gone"),
            }
        };
        match phase {
            Phase::Removing => {
                release_pool().await;
                delete_network().await;
            }
            Phase::Creating => {
                delete_network().await;
                release_pool().await;
            }
        }
    }
}

/// Parses `AuxiliaryAddresses`: each must be an address of the pool's subnet.
fn aux_addresses(
    given: &BTreeMap<String, String>,
    pool: &Pool,
) -> Result<BTreeMap<String, std::net::Ipv4Addr>, NetworkError> {
    given
        .iter()
        .map(|(name, addr)| {
            let ip = ipam::parse_addr(addr)?;
            if !pool.subnet.contains(ip) {
                return Err(ipam::IpamError::OutsideSubnet {
                    what: "auxiliary address",
                    addr: format!("{name}={addr}"),
                    subnet: pool.subnet,
                }
                .into());
            }
            Ok((name.clone(), ip))
        })
        .collect()
}

/// The user's subnet (refused when it overlaps one of `others`), else a default pool not in
/// `others` nor `host`.
fn pick_pool(
    others: &[(String, Subnet)],
    host: &[Subnet],
    subnet: &str,
    gateway: &str,
    range: &str,
) -> Result<Pool, NetworkError> {
    if !subnet.is_empty() {
        let pool = Pool::from_config(
            subnet,
            (!gateway.is_empty()).then_some(gateway),
            (!range.is_empty()).then_some(range),
        )?;
        if let Some((other, other_subnet)) = others.iter().find(|(_, s)| s.overlaps(&pool.subnet)) {
            return Err(NetworkError::Overlap {
                subnet: pool.subnet,
                other: other.clone(),
                other_subnet: *other_subnet,
            });
        }
        return Ok(pool);
    }
    let mut in_use: Vec<Subnet> = others.iter().map(|(_, s)| *s).collect();
    in_use.extend_from_slice(host);
    Ok(Pool::default_for(ipam::pick_default(&in_use)?))
}

/// A create's claim on a network name (and its pool), given back when the create ends.
struct Claim<'a> {
    store: &'a NetworkStore,
    name: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut pending = lock(&self.store.pending);
        pending.names.remove(&self.name);
        pending.subnets.retain(|(n, _)| n != &self.name);
    }
}

/// Network names as Docker takes them: any printable text (spaces too, `test 01`) up to
/// [`berth_state::MAX_NAME_LEN`] bytes, but no `/` (it could not be named in a URL path) and no
/// leading or trailing blank. Names are never used as paths (records and bridges go by id).
pub fn validate_network_name(name: &str) -> Result<(), NetworkError> {
    let why = if name.is_empty() {
        "must not be empty"
    } else if name.len() > berth_state::MAX_NAME_LEN {
        "too long"
    } else if name.contains('/') {
        "must not contain /"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else if name.trim() != name {
        "must not start or end with a blank"
    } else {
        return Ok(());
    };
    Err(NetworkError::Invalid(format!(
        "invalid network name {name:?}: {why}"
    )))
}

#[cfg(test)]
mod name_tests {
    #[test]
    fn network_names_take_spaces_not_slashes() {
        use super::validate_network_name as v;
        assert!(v("test 01").is_ok());
        assert!(v("plain-net_1.x").is_ok());
        assert!(v("").is_err());
        assert!(v("a/b").is_err());
        assert!(v(" lead").is_err());
        assert!(v("tab\there").is_err());
        assert!(v(&"n".repeat(200)).is_err());
    }
}
