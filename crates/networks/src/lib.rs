//! Networks: the network store (records under `<root>/networks/<id>/network.json`), the built-in
//! networks (`host`, `none` and the default `bridge`), the IPAM ([`ipam`]), the driver interface
//! ([`driver`]) with the built-in bridge driver ([`bridge`]), and the netns wiring ([`netns`]):
//! each container on a driver network gets its own network namespace, bound at
//! `<root>/netns/<container-id>` before the container starts, with one interface per network it
//! is connected to (`eth0` for the network of its `NetworkMode`, `eth1`… for `network connect`).
//!
//! Lifecycle: a container is a *member* of a network from create (or connect) until remove (or
//! disconnect); it has an *endpoint* (address lease, interface) only while it runs:
//! [`NetworkStore::attach`] before the process starts, [`NetworkStore::detach`] after it exits.

pub mod bridge;
pub mod driver;
pub mod ipam;
pub mod mvp;
pub mod netns;
pub mod remote;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use berth_state::{ErrorKind, NameError, StateError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use berth_plugin_host::PluginHost;
use berth_plugin_host::protocol::legacy::{IPAM_DRIVER, NETWORK_DRIVER};
use berth_plugin_host::protocol::mvp::{NetworkEvent, NetworkMessage};

use crate::driver::{EndpointInfo, NetworkDriver};
use crate::ipam::{IpamError, Pool, Subnet};
use crate::remote::{RemoteDriver, RemoteIpam, RemotePool};

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error(
        "plugin \"{0}\" not found: Berth's network drivers are \"bridge\" (built in), \"host\" and \"null\""
    )]
    UnknownDriver(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("only one instance of \"{0}\" network is allowed")]
    SingleInstance(String),
    #[error("network with name {0} already exists")]
    NameInUse(String),
    #[error(
        "invalid pool request: Pool overlaps with other one on this address space: {subnet} overlaps network {other} ({other_subnet})"
    )]
    Overlap {
        subnet: Subnet,
        other: String,
        other_subnet: Subnet,
    },
    #[error("{0}")]
    Ipam(#[from] IpamError),
    #[error("network {name}: {source}")]
    OnNetwork { name: String, source: IpamError },
    #[error(
        "error while removing network: network {name} id {id} has active endpoints ({containers})"
    )]
    ActiveEndpoints {
        name: String,
        id: String,
        containers: String,
    },
    #[error(
        "user specified IP address is supported only when connecting to networks with user configured subnets; {0} has none"
    )]
    NoStaticIp(String),
    #[error("{0}")]
    Invalid(String),
    #[error("endpoint with name {container} already exists in network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("network {network} (driver {driver}): {reason}")]
    Driver {
        network: String,
        driver: String,
        reason: String,
    },
    /// A driver plugin failed a call (its name and `Err` text are in the source).
    #[error("network driver \"{driver}\": {source}")]
    Plugin {
        driver: String,
        source: Box<berth_plugin_host::PluginError>,
    },
    /// A plugin that cannot play the role asked of it.
    #[error("plugin \"{driver}\" is not a usable {role}: {reason}")]
    NotADriver {
        driver: String,
        role: String,
        reason: String,
    },
    /// An MVP network hook aborted the operation (names the plugin, the hook and the reason).
    #[error("{0}")]
    Hook(Box<berth_plugin_host::ChainError>),
    #[error("{context}: {reason}")]
    Netlink { context: String, reason: String },
    #[error("{context}: {reason}")]
    System { context: String, reason: String },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl NetworkError {
    /// The class of this failure, for the API's status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotFound(_) | NetworkError::UnknownDriver(_) => ErrorKind::NotFound,
            NetworkError::Predefined(_) => ErrorKind::Forbidden,
            NetworkError::SingleInstance(_)
            | NetworkError::NameInUse(_)
            | NetworkError::Overlap { .. }
            | NetworkError::ActiveEndpoints { .. }
            | NetworkError::AlreadyConnected { .. }
            | NetworkError::NotConnected { .. } => ErrorKind::Conflict,
            NetworkError::Ipam(e) | NetworkError::OnNetwork { source: e, .. } => ipam_kind(e),
            NetworkError::NoStaticIp(_) | NetworkError::Invalid(_) | NetworkError::Name(_) => {
                ErrorKind::InvalidArgument
            }
            NetworkError::NotADriver { .. } => ErrorKind::InvalidArgument,
            NetworkError::Driver { .. }
            | NetworkError::Plugin { .. }
            | NetworkError::Hook(_)
            | NetworkError::Netlink { .. }
            | NetworkError::System { .. } => ErrorKind::Internal,
            NetworkError::State(e) => e.kind(),
        }
    }
}

fn ipam_kind(e: &IpamError) -> ErrorKind {
    match e {
        IpamError::InUse(_) | IpamError::Exhausted(_) | IpamError::NoPool => ErrorKind::Conflict,
        _ => ErrorKind::InvalidArgument,
    }
}

/// How a container attached to a network gets its network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attachment {
    /// Share the host's network namespace.
    Host,
    /// A fresh network namespace with only loopback.
    Isolated,
    /// Its own namespace at [`NetworkStore::netns_path`], wired by the network's driver.
    Driver,
}

/// A running container's endpoint on a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub id: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Interface name inside the container.
    pub ifname: String,
}

/// A container connected to a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    pub container_name: String,
    /// The network of the container's `NetworkMode` (gets `eth0` and the default route).
    pub primary: bool,
    /// `--ip`: the address the container asked for.
    #[serde(default)]
    pub requested_ip: Option<Ipv4Addr>,
    /// Present while the container runs.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// Order of connection (interfaces are numbered in this order at start).
    #[serde(default)]
    pub seq: u64,
}

/// One network as the engine knows it (persisted for the non-host, non-none networks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub created: DateTime<Utc>,
    pub attachment: Attachment,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The IPAM driver's name (`default` = the built-in IPAM).
    #[serde(default = "default_ipam")]
    pub ipam_driver: String,
    #[serde(default)]
    pub pool: Option<Pool>,
    /// The pool id an IPAM plugin granted (`None` with the built-in IPAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_pool_id: Option<String>,
    /// Containers connected, by container id.
    #[serde(default)]
    pub members: BTreeMap<String, Member>,
}

fn default_ipam() -> String {
    "default".into()
}

impl Network {
    /// Addresses leased or reserved by static requests, except those of `except` (a container id).
    fn used(&self, except: &str) -> BTreeSet<Ipv4Addr> {
        self.members
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .flat_map(|(_, m)| {
                m.endpoint
                    .as_ref()
                    .map(|e| e.address)
                    .into_iter()
                    .chain(m.requested_ip)
            })
            .collect()
    }
}

/// A network create request, parsed from the wire.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    /// Empty = `bridge`.
    pub driver: String,
    pub ipam_driver: String,
    /// `IPAM.Config[]` entries: (Subnet, Gateway, IPRange); only the first IPv4 one is used.
    pub ipam_config: Vec<(String, Option<String>, Option<String>)>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The network store.
pub struct NetworkStore {
    dir: PathBuf,
    netns_dir: PathBuf,
    networks: Mutex<Vec<Network>>,
    /// Serialises every operation that changes kernel state or leases.
    ops: tokio::sync::Mutex<()>,
    drivers: Mutex<BTreeMap<String, Arc<dyn NetworkDriver>>>,
    /// The plugin host: driver plugins and MVP network hooks (absent in store-only tests).
    plugins: OnceLock<Arc<PluginHost>>,
    /// Endpoints a previous engine left recorded (dropped at open), as (network id, endpoint
    /// id): [`Self::sweep_idle_bridges`] deletes their interfaces.
    stale: Mutex<Vec<(String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn builtin(name: &str, driver: &str, attachment: Attachment) -> Network {
    // Stable ids for the built-in networks, derived from their names.
    let id = hex::encode(Sha256::digest(
        format!("berth built-in network {name}").as_bytes(),
    ));
    Network {
        id,
        name: name.to_owned(),
        driver: driver.to_owned(),
        created: DateTime::<Utc>::UNIX_EPOCH,
        attachment,
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
        ipam_driver: default_ipam(),
        pool: None,
        ipam_pool_id: None,
        members: BTreeMap::new(),
    }
}

const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

impl NetworkStore {
    /// Opens the store under `root`: loads `<root>/networks/*/network.json`, creates the default
    /// `bridge` network on first use, and drops endpoints a previous engine left behind (their
    /// containers are not running any more; starting them wires new endpoints).
    pub fn open(root: &Path) -> Result<Self, NetworkError> {
        let dir = root.join("networks");
        let netns_dir = root.join("netns");
        std::fs::create_dir_all(&dir).map_err(|e| NetworkError::System {
            context: format!("creating {}", dir.display()),
            reason: e.to_string(),
        })?;
        let mut networks = vec![
            builtin("host", "host", Attachment::Host),
            builtin("none", "null", Attachment::Isolated),
        ];
        let entries = std::fs::read_dir(&dir).map_err(|e| NetworkError::System {
            context: format!("reading {}", dir.display()),
            reason: e.to_string(),
        })?;
        let mut stale = Vec::new();
        for entry in entries.flatten() {
            let file = entry.path().join("network.json");
            let Some(mut n) = berth_state::load_json::<Network>(&file)? else {
                continue;
            };
            let before = stale.len();
            for m in n.members.values_mut() {
                if let Some(ep) = m.endpoint.take() {
                    stale.push((n.id.clone(), ep.id));
                }
            }
            if stale.len() > before {
                berth_state::store_json(&file, &n)?;
            }
            networks.push(n);
        }
        if let Ok(entries) = std::fs::read_dir(&netns_dir) {
            for e in entries.flatten() {
                netns::remove(&e.path());
            }
        }
        let store = NetworkStore {
            dir,
            netns_dir,
            networks: Mutex::new(networks),
            ops: tokio::sync::Mutex::new(()),
            drivers: Mutex::new(BTreeMap::new()),
            plugins: OnceLock::new(),
            stale: Mutex::new(stale),
        };
        store.register_driver(Arc::new(bridge::BridgeDriver));
        if store.get("bridge").is_err() {
            let mut n = builtin("bridge", "bridge", Attachment::Driver);
            n.id = berth_state::new_id();
            n.created = Utc::now();
            n.options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
            n.pool = Some(Pool::default_for(ipam::DEFAULT_BRIDGE_SUBNET));
            store.persist(&n)?;
            lock(&store.networks).push(n);
        }
        Ok(store)
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

    /// Hands the store the plugin host (once, at daemon start-up): drivers not built in are
    /// then looked up as plugins, and MVP network hooks are sent.
    pub fn set_plugins(&self, host: Arc<PluginHost>) {
        let _ = self.plugins.set(host);
    }

    fn host(&self) -> Option<&PluginHost> {
        self.plugins.get().map(|h| h.as_ref())
    }

    /// The driver called `name`: a registered one (the built-in bridge), else a plugin acting as
    /// Docker's remote `NetworkDriver` (loaded, or found by Docker-style discovery).
    async fn driver(&self, name: &str) -> Result<Arc<dyn NetworkDriver>, NetworkError> {
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
    async fn remote_ipam(&self, name: &str) -> Result<Option<RemoteIpam>, NetworkError> {
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

    fn persist(&self, n: &Network) -> Result<(), NetworkError> {
        berth_state::store_json(&self.dir.join(&n.id).join("network.json"), n)?;
        Ok(())
    }

    /// Applies `f` to the network `id` and persists it.
    fn update(&self, id: &str, f: impl FnOnce(&mut Network)) -> Result<Network, NetworkError> {
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

    /// Creates a network: validates the name, driver and IPAM request (overlaps with the other
    /// networks are refused; without a subnet a default pool not used by another network or a
    /// host interface is picked), tells the driver, persists.
    pub async fn create(&self, req: CreateNetwork) -> Result<Network, NetworkError> {
        berth_state::validate_name("network", &req.name)?;
        let _ops = self.ops.lock().await;
        if self.get(&req.name).is_ok() {
            return Err(NetworkError::NameInUse(req.name));
        }
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
        let pooled = match &ipam {
            Some(ipam) => ipam
                .request_pool(&subnet, &range, &gateway, &options)
                .await
                .map(|p| (p.pool, Some(p.pool_id))),
            None => self
                .builtin_pool(&subnet, &gateway, &range)
                .await
                .map(|p| (p, None)),
        };
        let (pool, pool_id) = match pooled {
            Ok(p) => p,
            Err(e) => {
                undo_hooks(merged, setup.called).await;
                return Err(e);
            }
        };
        let n = Network {
            id,
            name: req.name.clone(),
            driver: driver_name.clone(),
            created: Utc::now(),
            attachment: Attachment::Driver,
            options,
            labels: req.labels,
            ipam_driver: ipam_name,
            pool: Some(pool),
            ipam_pool_id: pool_id.clone(),
            members: BTreeMap::new(),
        };
        let release_pool = || async {
            if let (Some(ipam), Some(pool_id)) = (&ipam, &pool_id)
                && let Err(e) = ipam
                    .release_pool(&RemotePool {
                        pool_id: pool_id.clone(),
                        pool,
                    })
                    .await
            {
                tracing::warn!(error = %e, "releasing the IPAM pool of a failed network create");
            }
        };
        if let Err(e) = driver.create_network(&n).await {
            release_pool().await;
            undo_hooks(merged, setup.called).await;
            return Err(driver_error(&n, e));
        }
        if let Err(e) = self.persist(&n) {
            let _ = driver.delete_network(&n).await;
            release_pool().await;
            undo_hooks(merged, setup.called).await;
            let _ = berth_state::remove_dir_durable(&self.dir.join(&n.id));
            return Err(e);
        }
        lock(&self.networks).push(n.clone());
        Ok(n)
    }

    /// The built-in IPAM's pool for a new network: the user's subnet (refused when it overlaps
    /// another network), else a default pool not used by another network or a host interface.
    async fn builtin_pool(
        &self,
        subnet: &str,
        gateway: &str,
        range: &str,
    ) -> Result<Pool, NetworkError> {
        let others: Vec<(String, Subnet)> = lock(&self.networks)
            .iter()
            .filter_map(|n| n.pool.map(|p| (n.name.clone(), p.subnet)))
            .collect();
        if !subnet.is_empty() {
            let pool = Pool::from_config(
                subnet,
                (!gateway.is_empty()).then_some(gateway),
                (!range.is_empty()).then_some(range),
            )?;
            if let Some((other, other_subnet)) =
                others.iter().find(|(_, s)| s.overlaps(&pool.subnet))
            {
                return Err(NetworkError::Overlap {
                    subnet: pool.subnet,
                    other: other.clone(),
                    other_subnet: *other_subnet,
                });
            }
            return Ok(pool);
        }
        let mut in_use: Vec<Subnet> = others.iter().map(|(_, s)| *s).collect();
        match netns::host_subnets().await {
            Ok(host) => in_use.extend(host),
            Err(e) => {
                tracing::warn!(error = %e, "listing host subnets for the default pool")
            }
        }
        Ok(Pool::default_for(ipam::pick_default(&in_use)?))
    }

    /// Removes a network: refused for the pre-defined ones and while containers are connected.
    pub async fn remove(&self, reference: &str) -> Result<Network, NetworkError> {
        let _ops = self.ops.lock().await;
        let n = self.get(reference)?;
        if PREDEFINED.contains(&n.name.as_str()) {
            return Err(NetworkError::Predefined(n.name));
        }
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
        // After the fact: IPAM, driver and hook failures are warnings (DESIGN.md: "after").
        // Docker's order: ReleaseAddress (gateway) → ReleasePool → DeleteNetwork.
        if let (Some(pool_id), Some(pool)) = (&n.ipam_pool_id, n.pool) {
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
        }
        match self.driver(&n.driver).await {
            Ok(d) => {
                if let Err(e) = d.delete_network(&n).await {
                    tracing::warn!(network = n.name, error = %e, "driver DeleteNetwork");
                }
            }
            Err(e) => tracing::warn!(network = n.name, error = %e, "network driver gone"),
        }
        berth_state::remove_dir_durable(&self.dir.join(&n.id))?;
        lock(&self.networks).retain(|x| x.id != n.id);
        for w in mvp::notify(self.host(), NetworkEvent::Delete, &mvp::network_message(&n)).await {
            tracing::warn!(network = n.name, warning = %w, "network delete hook");
        }
        Ok(n)
    }

    /// Validates a container's network request at create: the network exists, and a static
    /// address (`--ip`, empty = none) fits its subnet and is free.
    pub fn check_attach(&self, mode: &str, ip: &str) -> Result<Network, NetworkError> {
        let n = self.for_mode(mode)?;
        self.check_ip(&n, "", ip)?;
        Ok(n)
    }

    fn check_ip(
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
    /// `host`/`none`).
    pub fn register(
        &self,
        container_id: &str,
        container_name: &str,
        mode: &str,
        ip: &str,
    ) -> Result<(), NetworkError> {
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
                    seq: 0,
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
        let _ops = self.ops.lock().await;
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
        Ok(Some(path))
    }

    fn connect_message(n: &Network, container_id: &str, netns_path: &Path) -> NetworkMessage {
        NetworkMessage {
            container_id: Some(container_id.to_owned()),
            sandbox_key: Some(netns_path.display().to_string()),
            ..mvp::network_message(n)
        }
    }

    /// Wires one interface: address (IPAM) → MVP `connect` hook → driver join → plumbing into
    /// the namespace. A failing step undoes the earlier ones (driver leave, hook `disconnect`,
    /// address release) so nothing is left behind.
    async fn join_one(
        &self,
        network_id: &str,
        container_id: &str,
        ifname: &str,
        netns_path: &Path,
    ) -> Result<(), NetworkError> {
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
            async move {
                if left {
                    let _ = driver.leave(n, info).await;
                }
                undo_hooks(called, m).await;
                release(info.address).await;
                e
            }
        };
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
        let mac = if joined.src_name.is_empty() {
            // Docker: an empty SrcName moves nothing into the sandbox.
            String::new()
        } else {
            let plumbed = netns::plumb(
                netns_path,
                netns::Plumbing {
                    src_name: joined.src_name.clone(),
                    dst_name: ifname.clone(),
                    address,
                    prefix: pool.subnet.prefix,
                    gateway: Some(gateway),
                    default_route: joined.default_route && member.primary,
                    routes: joined.static_routes.clone(),
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
            }
        });
        if let Err(e) = recorded {
            return Err(fail(e, true).await);
        }
        Ok(())
    }

    /// After a container stopped (or when its start failed): leaves every network (reverse
    /// order), releases the leases and deletes the namespace. Idempotent; failures are logged.
    pub async fn detach(&self, container_id: &str) {
        let _ops = self.ops.lock().await;
        self.detach_locked(container_id).await;
    }

    async fn detach_locked(&self, container_id: &str) {
        let path = self.netns_path(container_id);
        for (n, m) in self.container_networks(container_id).into_iter().rev() {
            if let Some(ep) = m.endpoint {
                self.leave_one(&n, container_id, &ep, &path).await;
            }
        }
        netns::remove(&path);
    }

    /// Driver leave, address release, then the MVP `disconnect` notification; all "after":
    /// failures are logged warnings.
    async fn leave_one(&self, n: &Network, container_id: &str, ep: &Endpoint, path: &Path) {
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
            }
        }) {
            tracing::warn!(network = n.name, error = %e, "releasing endpoint");
        }
    }

    /// `network connect`: makes the container a member of `network` (with `--ip`, empty = none);
    /// when `running`, wires the interface at once (`eth<N>`, next free number).
    pub async fn connect(
        &self,
        network: &str,
        container_id: &str,
        container_name: &str,
        mode: &str,
        ip: &str,
        running: bool,
    ) -> Result<(), NetworkError> {
        let _ops = self.ops.lock().await;
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
        let seq = current.iter().map(|(_, m)| m.seq + 1).max().unwrap_or(1);
        self.update(&n.id, |n| {
            n.members.insert(
                container_id.to_owned(),
                Member {
                    container_name: container_name.to_owned(),
                    primary: false,
                    requested_ip,
                    endpoint: None,
                    seq,
                },
            );
        })?;
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
            if let Err(e) = self.join_one(&n.id, container_id, &ifname, &path).await {
                let _ = self.update(&n.id, |n| {
                    n.members.remove(container_id);
                });
                return Err(e);
            }
        }
        Ok(())
    }

    /// `network disconnect`: leaves (if wired) and forgets the membership.
    pub async fn disconnect(
        &self,
        network: &str,
        container_id: &str,
        container_name: &str,
    ) -> Result<(), NetworkError> {
        let _ops = self.ops.lock().await;
        let n = self.get(network)?;
        let Some(m) = n.members.get(container_id).cloned() else {
            return Err(NetworkError::NotConnected {
                container: container_name.to_owned(),
                network: n.name,
            });
        };
        if let Some(ep) = &m.endpoint {
            let path = self.netns_path(container_id);
            if let Err(e) = netns::delete_in(&path, &ep.ifname).await {
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

fn driver_error(n: &Network, e: NetworkError) -> NetworkError {
    match e {
        NetworkError::Driver { .. } => e,
        other => NetworkError::Driver {
            network: n.name.clone(),
            driver: n.driver.clone(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve_by_name_id_and_prefix() {
        let root = tempfile::tempdir().unwrap();
        let store = NetworkStore::open(root.path()).unwrap();
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
        let again = NetworkStore::open(root.path()).unwrap();
        assert_eq!(again.get("bridge").unwrap().id, id);
    }

    #[tokio::test]
    async fn create_validates_and_persists() {
        let root = tempfile::tempdir().unwrap();
        let store = NetworkStore::open(root.path()).unwrap();
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
            .register(&"a".repeat(64), "c1", "greatnet", "10.77.0.5")
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
        let again = NetworkStore::open(root.path()).unwrap();
        let n2 = again.get("greatnet").unwrap();
        assert_eq!(n2.id, n.id);
        assert_eq!(n2.members.len(), 1);
        again.unregister(&"a".repeat(64));
        again.remove("greatnet").await.unwrap();
        assert!(again.get("greatnet").is_err());
    }
}
