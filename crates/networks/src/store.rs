//! The network store: records under `<root>/networks/<id>/network.json`, the driver table
//! (built-in and plugin drivers), lookups. The operations live beside it: [`crate::lifecycle`]
//! (create, remove), [`crate::membership`] (register, attach, connect…), [`crate::endpoint`]
//! (one endpoint joined or left on a driver).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_state::{KeyedLocks, LoadWarning, RecordDir, lock};

use chrono::Utc;

use berth_plugin_host::PluginHost;
use berth_plugin_host::protocol::legacy::{IPAM_DRIVER, NETWORK_DRIVER};

use crate::driver::NetworkDriver;
use crate::error::NetworkError;
use crate::ipam::{Pool, Subnet};
use crate::model::{Attachment, Member, Network, builtin};
use crate::remote::{RemoteDriver, RemoteIpam};
use crate::{bridge, ipam, netns, remote};

/// The network store.
pub struct NetworkStore {
    pub(crate) records: RecordDir<Network>,
    /// What the load at open could not take as it was (see [`berth_state::records`]).
    load_warnings: Vec<LoadWarning>,
    pub(crate) netns_dir: PathBuf,
    /// The records. Locked only to read, insert or update them (never across a plugin call).
    /// Shared with the containers' resolvers ([`crate::dns`]), which read it per query.
    pub(crate) networks: Arc<Mutex<Vec<Network>>>,
    /// One lock per network id: serialises the endpoint joins and leaves of that network
    /// (address allocation, driver `Join`/`Leave`) and its removal.
    pub(crate) network_ops: KeyedLocks,
    /// One lock per container id: serialises a container's attach, detach, connect and
    /// disconnect.
    pub(crate) container_ops: KeyedLocks,
    /// Names and subnets of networks being created (claimed before the driver is called, so two
    /// creates cannot take one name or overlapping pools, without a lock across the calls).
    pub(crate) pending: Mutex<Pending>,
    pub(crate) drivers: Mutex<BTreeMap<String, Arc<dyn NetworkDriver>>>,
    /// The plugin host: driver plugins and MVP network hooks (absent in store-only tests and
    /// engine-only servers). Given at construction, never set later.
    pub(crate) plugins: Option<Arc<PluginHost>>,
    /// Endpoints a previous engine left recorded (dropped at open), as (network id, endpoint
    /// id): [`Self::sweep_idle_bridges`] deletes their interfaces.
    pub(crate) stale: Mutex<Vec<(String, String)>>,
    /// Records of networks whose create or remove a crash cut while plugins were being told
    /// (their [`crate::model::Phase`]): not networks any more, but calls owed to their plugins,
    /// paid by [`Self::pay_owed_networks`] ([`crate::owed`]). Kept on disk until paid.
    pub(crate) owed_networks: Mutex<Vec<Network>>,
    /// The embedded resolvers of running containers on user-defined networks.
    pub(crate) resolvers: crate::dns::Resolvers,
}

/// What creates in flight have claimed (see [`NetworkStore::pending`]).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) names: std::collections::BTreeSet<String>,
    /// (network name, subnet) of the built-in IPAM pools picked by creates in flight.
    pub(crate) subnets: Vec<(String, Subnet)>,
}

/// The record file in each network's directory.
const RECORD_FILE: &str = "network.json";

/// What [`NetworkStore::load`] read from disk: the store's state before it is given its plugin
/// host ([`NetworkStore::new`]). The engine's composition root loads first, then builds the
/// plugin host, then the store.
pub struct LoadedNetworks {
    records: RecordDir<Network>,
    load_warnings: Vec<LoadWarning>,
    netns_dir: PathBuf,
    networks: Vec<Network>,
    stale: Vec<(String, String)>,
    owed_networks: Vec<Network>,
}

impl NetworkStore {
    /// Opens the store under `root` ([`Self::load`], then [`Self::new`] with `plugins`).
    pub fn open(root: &Path, plugins: Option<Arc<PluginHost>>) -> Result<Self, NetworkError> {
        Ok(Self::new(Self::load(root)?, plugins))
    }

    /// Loads `<root>/networks/*/network.json`, creates the default `bridge` network on first
    /// use, and drops endpoints a previous engine left behind (their containers are not running
    /// any more; starting them wires new endpoints), except those a plugin is still owed the
    /// tear-down of ([`crate::owed`]). Records of a create or remove cut half-way are set
    /// aside as owed networks.
    pub fn load(root: &Path) -> Result<LoadedNetworks, NetworkError> {
        let records = RecordDir::<Network>::open(root.join("networks"), RECORD_FILE, "network")?;
        let netns_dir = root.join("netns");
        let mut networks = vec![
            builtin("host", "host", Attachment::Host),
            builtin("none", "null", Attachment::Isolated),
        ];
        let loaded = records.load_all()?;
        let mut stale = Vec::new();
        let mut owed_networks = Vec::new();
        for (dir_name, mut n) in loaded.records {
            // Endpoints that owe a plugin its tear-down stay recorded until it is sent
            // (`crate::owed`); the others are dropped here.
            let keep = crate::owed::owes_plugins(&n);
            let before = stale.len();
            let mut pending = false;
            for m in n.members.values_mut() {
                let ep = if keep {
                    m.endpoint.clone()
                } else {
                    m.endpoint.take()
                };
                if let Some(ep) = ep {
                    stale.push((n.id.clone(), ep.id));
                }
                // A pending endpoint with its address on a plugin network is owed too; one
                // without (recorded by an older version) can only have its links swept.
                if keep && m.pending_address.is_some() {
                    if let Some(ep) = &m.pending_endpoint {
                        stale.push((n.id.clone(), ep.clone()));
                    }
                } else if let Some(ep) = m.pending_endpoint.take() {
                    m.pending_address = None;
                    stale.push((n.id.clone(), ep));
                    pending = true;
                }
            }
            if (stale.len() > before && !keep) || pending {
                records.store(&dir_name, &n)?;
            }
            if n.phase.is_some() {
                // A create or remove cut while plugins were told: a debt, not a network.
                owed_networks.push(n);
                continue;
            }
            networks.push(n);
        }
        if let Ok(entries) = std::fs::read_dir(&netns_dir) {
            for e in entries.flatten() {
                netns::remove(&e.path());
            }
        }
        if !networks.iter().any(|n| n.name == "bridge") {
            let mut n = builtin("bridge", "bridge", Attachment::Driver);
            n.id = berth_state::new_id();
            n.created = Utc::now();
            n.options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
            n.pool = Some(Pool::default_for(ipam::DEFAULT_BRIDGE_SUBNET));
            records.create(&n.id, &n)?;
            networks.push(n);
        }
        Ok(LoadedNetworks {
            records,
            load_warnings: loaded.warnings,
            netns_dir,
            networks,
            stale,
            owed_networks,
        })
    }

    /// The store over what [`Self::load`] read, with its plugin host (drivers not built in are
    /// looked up as plugins, and MVP network hooks are sent) and the built-in bridge driver.
    pub fn new(loaded: LoadedNetworks, plugins: Option<Arc<PluginHost>>) -> Self {
        let store = NetworkStore {
            records: loaded.records,
            load_warnings: loaded.load_warnings,
            netns_dir: loaded.netns_dir,
            networks: Arc::new(Mutex::new(loaded.networks)),
            network_ops: KeyedLocks::new(),
            container_ops: KeyedLocks::new(),
            pending: Mutex::new(Pending::default()),
            drivers: Mutex::new(BTreeMap::new()),
            plugins,
            stale: Mutex::new(loaded.stale),
            owed_networks: Mutex::new(loaded.owed_networks),
            resolvers: crate::dns::Resolvers::default(),
        };
        store.register_driver(Arc::new(bridge::BridgeDriver));
        store
    }

    /// Deletes what a killed engine left on the host (daemon boot, after [`Self::open`] dropped
    /// the stale endpoints): the host ends of their veth pairs (the container ends may outlive the
    /// container for a moment, while the kernel tears its namespace down), then every bridge
    /// nothing is plugged into any more. A bridge a live interface still uses stays.
    pub async fn sweep_idle_bridges(&self) {
        let stale = std::mem::take(&mut *lock(&self.stale));
        let bridged: Vec<Network> = lock(&self.networks)
            .iter()
            .filter(|n| n.driver == "bridge" && n.pool.is_some())
            .cloned()
            .collect();
        if bridged.is_empty() {
            return;
        }
        let h = match netns::host_handle() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("sweeping idle bridges: {e}");
                return;
            }
        };
        for (net, ep) in &stale {
            if bridged.iter().any(|n| &n.id == net) {
                let (host_end, _) = bridge::veth_names(ep);
                if let Err(e) = netns::delete_link(&h, &host_end).await {
                    tracing::warn!(endpoint = %ep, "deleting a stale veth: {e}");
                }
            }
        }
        for n in &bridged {
            if let Err(e) = bridge::delete_bridge_if_idle(&h, n).await {
                tracing::warn!(network = %n.name, "sweeping an idle bridge: {e}");
            }
        }
    }

    /// Makes a driver available under its name (the built-in bridge is registered at open;
    /// plugin drivers register here).
    pub fn register_driver(&self, driver: Arc<dyn NetworkDriver>) {
        lock(&self.drivers).insert(driver.name().to_owned(), driver);
    }

    pub(crate) fn host(&self) -> Option<&PluginHost> {
        self.plugins.as_deref()
    }

    /// The driver called `name`: a registered one (the built-in bridge), else a plugin acting as
    /// Docker's remote `NetworkDriver` (loaded, or found by Docker-style discovery).
    pub(crate) async fn driver(&self, name: &str) -> Result<Arc<dyn NetworkDriver>, NetworkError> {
        if let Some(d) = lock(&self.drivers).get(name).cloned() {
            return Ok(d);
        }
        let unknown = || NetworkError::UnknownDriver(name.to_owned());
        let host = self.host().ok_or_else(unknown)?;
        let plugin = remote::find_plugin(host, name, NETWORK_DRIVER)
            .await?
            .ok_or_else(unknown)?;
        Ok(Arc::new(RemoteDriver::connect(plugin).await?))
    }

    /// The IPAM plugin of a network (`None` for the built-in IPAM, `default`).
    pub(crate) async fn remote_ipam(&self, name: &str) -> Result<Option<RemoteIpam>, NetworkError> {
        if name.is_empty() || name == "default" {
            return Ok(None);
        }
        let unknown = || NetworkError::UnknownDriver(name.to_owned());
        let host = self.host().ok_or_else(unknown)?;
        let plugin = remote::find_plugin(host, name, IPAM_DRIVER)
            .await?
            .ok_or_else(unknown)?;
        Ok(Some(RemoteIpam::connect(plugin).await))
    }

    pub(crate) fn persist(&self, n: &Network) -> Result<(), NetworkError> {
        self.records.store(&n.id, n)?;
        Ok(())
    }

    /// What the load at open could not take as it was: unreadable records (quarantined under
    /// `<root>/quarantine/`) and directories without a record but with data (kept).
    pub fn load_warnings(&self) -> &[LoadWarning] {
        &self.load_warnings
    }

    /// Applies `f` to the network `id` and persists it.
    pub(crate) fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Network),
    ) -> Result<Network, NetworkError> {
        let mut all = lock(&self.networks);
        let n = all
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| NetworkError::NotFound(id.to_owned()))?;
        f(n);
        let snapshot = n.clone();
        // Persist under the lock: two updates must reach the disk in the order they were made.
        self.persist(&snapshot)?;
        drop(all);
        Ok(snapshot)
    }

    /// Where a container's network namespace is bound.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.netns_dir.join(container_id)
    }

    /// All networks, sorted by name.
    pub fn list(&self) -> Vec<Network> {
        let mut all = lock(&self.networks).clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Finds a network by name, full id or unique id prefix.
    pub fn get(&self, reference: &str) -> Result<Network, NetworkError> {
        let all = lock(&self.networks);
        if let Some(n) = all
            .iter()
            .find(|n| n.name == reference || n.id == reference)
        {
            return Ok(n.clone());
        }
        let mut matches = all
            .iter()
            .filter(|n| !reference.is_empty() && n.id.starts_with(reference));
        match (matches.next(), matches.next()) {
            (Some(n), None) => Ok(n.clone()),
            _ => Err(NetworkError::NotFound(reference.to_owned())),
        }
    }

    /// The network a container's `NetworkMode` names; Docker's `default` (and an empty mode) is
    /// the `bridge` network.
    pub fn for_mode(&self, mode: &str) -> Result<Network, NetworkError> {
        match mode {
            "" | "default" => self.get("bridge"),
            other => self.get(other),
        }
    }

    /// The networks a container is a member of, with its membership (primary first, then in
    /// connection order).
    pub fn container_networks(&self, container_id: &str) -> Vec<(Network, Member)> {
        let mut out: Vec<_> = lock(&self.networks)
            .iter()
            .filter_map(|n| n.members.get(container_id).map(|m| (n.clone(), m.clone())))
            .collect();
        out.sort_by_key(|(_, m)| (!m.primary, m.seq));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CreateNetwork;
    use berth_state::ErrorKind;

    #[test]
    fn builtins_resolve_by_name_id_and_prefix() {
        let root = tempfile::tempdir().unwrap();
        let store = NetworkStore::open(root.path(), None).unwrap();
        let names: Vec<_> = store.list().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "host", "none"]);
        let host = store.get("host").unwrap();
        assert_eq!(host.id.len(), 64);
        assert_eq!(store.get(&host.id[..12]).unwrap().name, "host");
        assert_eq!(store.for_mode("default").unwrap().name, "bridge");
        assert_eq!(
            store.for_mode("none").unwrap().attachment,
            Attachment::Isolated
        );
        assert_eq!(store.get("nosuch").unwrap_err().kind(), ErrorKind::NotFound);
        // The default bridge keeps its id across reopen.
        let id = store.get("bridge").unwrap().id;
        drop(store);
        let again = NetworkStore::open(root.path(), None).unwrap();
        assert_eq!(again.get("bridge").unwrap().id, id);
    }

    #[test]
    fn an_unreadable_record_is_quarantined_and_the_store_opens() {
        let root = tempfile::tempdir().unwrap();
        let bridge = NetworkStore::open(root.path(), None)
            .unwrap()
            .get("bridge")
            .unwrap();
        let bad = root.path().join("networks").join("f".repeat(64));
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join(RECORD_FILE), b"{\"Name\": 1").unwrap();
        let store = NetworkStore::open(root.path(), None).unwrap();
        assert_eq!(store.get("bridge").unwrap().id, bridge.id);
        assert!(matches!(
            store.load_warnings(),
            [LoadWarning::Quarantined {
                kind: "network",
                ..
            }]
        ));
        assert!(!bad.exists());
        assert!(root.path().join("quarantine").is_dir());
    }

    #[tokio::test]
    async fn create_validates_and_persists() {
        let root = tempfile::tempdir().unwrap();
        let store = NetworkStore::open(root.path(), None).unwrap();
        let req = |name: &str, subnet: &str| CreateNetwork {
            name: name.into(),
            ipam_config: vec![(subnet.into(), None, None)],
            ..Default::default()
        };
        let n = store.create(req("greatnet", "10.77.0.0/16")).await.unwrap();
        assert_eq!(n.driver, "bridge");
        assert_eq!(n.pool.unwrap().gateway.to_string(), "10.77.0.1");
        let dup = store
            .create(req("greatnet", "10.78.0.0/16"))
            .await
            .unwrap_err();
        assert_eq!(dup.kind(), ErrorKind::Conflict);
        let overlap = store
            .create(req("other", "10.77.3.0/24"))
            .await
            .unwrap_err();
        assert_eq!(overlap.kind(), ErrorKind::Conflict);
        assert!(overlap.to_string().contains("greatnet"), "{overlap}");
        let bad = store.create(req("bad", "10.77.0.0/40")).await.unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
        let drv = store
            .create(CreateNetwork {
                name: "w".into(),
                driver: "weave".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(drv.kind(), ErrorKind::NotFound);
        // Static address checks.
        assert_eq!(
            store
                .check_attach("greatnet", "10.78.0.5")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        store
            .register(&"a".repeat(64), "c1", "greatnet", "10.77.0.5", &[])
            .unwrap();
        assert_eq!(
            store
                .check_attach("greatnet", "10.77.0.5")
                .unwrap_err()
                .kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            store.check_attach("host", "10.77.0.5").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        // Members block removal; the built-ins cannot be removed.
        assert_eq!(
            store.remove("greatnet").await.unwrap_err().kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            store.remove("bridge").await.unwrap_err().kind(),
            ErrorKind::Forbidden
        );
        drop(store);
        let again = NetworkStore::open(root.path(), None).unwrap();
        let n2 = again.get("greatnet").unwrap();
        assert_eq!(n2.id, n.id);
        assert_eq!(n2.members.len(), 1);
        again.unregister(&"a".repeat(64));
        again.remove("greatnet").await.unwrap();
        assert!(again.get("greatnet").is_err());
    }
}
