//! `ledger`: a v2 plugin that is a volume driver, a network driver and an IPAM driver at once, and
//! keeps its books straight with the engine's `sync` message (`docs/protocol.md#v2-sync`).
//!
//! - Volumes are directories under `--dir` (which must be the same path on the host: load the
//!   plugin with `-v DIR:DIR`). Mounts are counted per mount `ID`.
//! - Networks get no interface (`Join` hands over none, as Docker allows); the IPAM hands out
//!   addresses of /24 pools (`10.77.0.0/24` unless the network asks for another /24).
//! - The books live in memory. On `sync` the plugin replaces them with the engine's view: the
//!   mounts the engine holds now (with their ids), the endpoints it lists, the pools of its
//!   networks with the addresses in use. That is what a restarted or upgraded plugin needs to
//!   serve the next `Unmount`, `RequestAddress` or `ReleaseAddress` correctly. Volumes are also
//!   found again on disk at start.
//!
//! Every call is appended to `--log` as one JSON line `{"Call": "VolumeDriver.Mount", "Body":
//! {…}}` (the e2e catch-up tests read it). `POST /Ledger.State` answers the books.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_plugin_sdk::protocol::Protocol;
use berth_plugin_sdk::protocol::legacy::ipam::{
    AddressSpacesResponse, ReleaseAddressRequest, RequestAddressRequest, RequestAddressResponse,
    RequestPoolRequest, RequestPoolResponse,
};
use berth_plugin_sdk::protocol::legacy::volume::{
    CapabilitiesResponse, Capability, CreateRequest, GetResponse, ListResponse, MountRequest,
    MountResponse, NameRequest, Volume,
};
use berth_plugin_sdk::protocol::sync::SyncRequest;
use berth_plugin_sdk::{HandlerError, Plugin, Reply};
use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Parser, Clone)]
struct Args {
    /// Socket path.
    #[arg(long, default_value = "/var/run/docker/plugin.sock")]
    socket: PathBuf,
    /// Plugin name in the handshake.
    #[arg(long, default_value = "ledger")]
    name: String,
    /// Version in the handshake.
    #[arg(long, default_value = "1.0")]
    version: String,
    /// Where volumes live (the same path on the host).
    #[arg(long)]
    dir: PathBuf,
    /// Append every call as a JSON line to this file.
    #[arg(long)]
    log: Option<PathBuf>,
}

/// The plugin's books.
#[derive(Default, Serialize)]
struct Books {
    /// Volume → mount ids it is mounted under.
    mounts: BTreeMap<String, BTreeSet<String>>,
    /// Endpoint id → container id (from `sync`) or "" (from `CreateEndpoint`).
    endpoints: BTreeMap<String, String>,
    /// Pool id → host numbers handed out.
    leases: BTreeMap<String, BTreeSet<u8>>,
    /// Syncs received, by reason.
    syncs: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Books>>;

fn books(b: &Shared) -> std::sync::MutexGuard<'_, Books> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_call(log: &Option<PathBuf>, call: &str, body: &impl Serialize) {
    let Some(path) = log else { return };
    let line = json!({"Call": call, "Body": body}).to_string() + "\n";
    // One write per line on an O_APPEND file: lines of concurrent calls never interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// `--dir`.
static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Where volume `name` lives.
fn path_of(name: &str) -> String {
    DIR.get()
        .map(|d| d.join(name).display().to_string())
        .unwrap_or_default()
}

/// The /24 prefix (`10.77.0.`) of a pool `a.b.c.0/24`.
fn prefix_of(pool: &str) -> Result<String, HandlerError> {
    let net = pool
        .strip_suffix(".0/24")
        .ok_or_else(|| HandlerError::new(format!("ledger hands out /24 pools only, not {pool}")))?;
    Ok(format!("{net}."))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let state: Shared = Arc::default();
    // The volumes are the directories under `--dir`: they outlive the process.
    for e in std::fs::read_dir(&args.dir)?.flatten() {
        if let Ok(name) = e.file_name().into_string() {
            books(&state).mounts.insert(name, BTreeSet::new());
        }
    }
    // Docker engines find the driver roles through `/Plugin.Activate`; Berth negotiates v2.
    let mut b = Plugin::builder(args.name.clone())
        .answer_only(&[Protocol::V2, Protocol::Activate])
        .version(args.version.clone())
        .author("Berth examples")
        .implements("VolumeDriver")
        .implements("NetworkDriver")
        .implements("IpamDriver");

    // The catch-up: the engine's view replaces the plugin's.
    {
        let (state, log) = (state.clone(), args.log.clone());
        b = b.sync(move |req: SyncRequest| {
            let (state, log) = (state.clone(), log.clone());
            async move {
                let mut s = books(&state);
                s.mounts = req
                    .volumes
                    .iter()
                    .map(|v| {
                        let ids = v.mount.iter().map(|m| m.id.clone()).collect();
                        (v.name.clone(), ids)
                    })
                    .collect();
                s.endpoints = req
                    .networks
                    .iter()
                    .flat_map(|n| &n.endpoints)
                    .map(|e| (e.endpoint_id.clone(), e.container_id.clone()))
                    .collect();
                // The pools of the networks whose IPAM this is, with the addresses in use (the
                // gateway's and the endpoints').
                s.leases = req
                    .networks
                    .iter()
                    .filter(|n| n.ipam.driver == req.plugin && !n.ipam.pool_id.is_empty())
                    .map(|n| {
                        let prefix = prefix_of(&n.ipam.pool_id).unwrap_or_default();
                        let host = |a: &str| {
                            a.split('/')
                                .next()
                                .and_then(|a| a.strip_prefix(&prefix))
                                .and_then(|h| h.parse::<u8>().ok())
                        };
                        let used = std::iter::once(n.ipam.gateway.as_str())
                            .chain(n.endpoints.iter().map(|e| e.address.as_str()))
                            .filter_map(host)
                            .collect();
                        (n.ipam.pool_id.clone(), used)
                    })
                    .collect();
                let reason = req.reason.map_or("none", |r| r.as_str());
                *s.syncs.entry(reason.to_owned()).or_default() += 1;
                drop(s);
                // Logged once the books are rebuilt: a reader of the log sees them done.
                log_call(&log, "sync", &req);
                Ok::<_, HandlerError>(())
            }
        });
    }

    // Volume driver.
    let _ = DIR.set(args.dir.clone());
    macro_rules! route {
        ($b:ident, $call:literal, |$req:ident: $ty:ty, $s:ident| $body:expr) => {{
            let (state, log) = (state.clone(), args.log.clone());
            $b = $b.route_json(concat!("/", $call), move |$req: $ty| {
                let state = state.clone();
                log_call(&log, $call, &$req);
                async move {
                    #[allow(unused_mut, unused_variables)]
                    let mut $s = books(&state);
                    #[allow(clippy::redundant_closure_call)]
                    (|| -> Result<_, HandlerError> { $body })()
                }
            });
        }};
    }
    route!(b, "VolumeDriver.Create", |r: CreateRequest, s| {
        std::fs::create_dir_all(path_of(&r.name)).map_err(|e| HandlerError::new(e.to_string()))?;
        s.mounts.entry(r.name).or_default();
        Ok(json!({}))
    });
    route!(b, "VolumeDriver.Remove", |r: NameRequest, s| {
        if s.mounts.get(&r.name).is_some_and(|m| !m.is_empty()) {
            return Err(HandlerError::new(format!("{} is mounted", r.name)));
        }
        s.mounts.remove(&r.name);
        let _ = std::fs::remove_dir_all(path_of(&r.name));
        Ok(json!({}))
    });
    route!(b, "VolumeDriver.Mount", |r: MountRequest, s| {
        let Some(ids) = s.mounts.get_mut(&r.name) else {
            return Err(HandlerError::new(format!("no volume {}", r.name)));
        };
        ids.insert(r.id);
        Ok(MountResponse {
            mountpoint: path_of(&r.name),
            err: String::new(),
        })
    });
    route!(b, "VolumeDriver.Unmount", |r: MountRequest, s| {
        if let Some(ids) = s.mounts.get_mut(&r.name) {
            ids.remove(&r.id);
        }
        Ok(json!({}))
    });
    route!(b, "VolumeDriver.Path", |r: NameRequest, s| {
        let mounted = s.mounts.get(&r.name).is_some_and(|m| !m.is_empty());
        let mp = if mounted {
            path_of(&r.name)
        } else {
            String::new()
        };
        Ok(json!({"Mountpoint": mp}))
    });
    route!(b, "VolumeDriver.Get", |r: NameRequest, s| {
        if !s.mounts.contains_key(&r.name) {
            return Err(HandlerError::new(format!("no volume {}", r.name)));
        }
        Ok(GetResponse {
            volume: Some(Volume {
                mountpoint: path_of(&r.name),
                name: r.name,
                ..Default::default()
            }),
            err: String::new(),
        })
    });
    route!(b, "VolumeDriver.List", |_r: Value, s| {
        let volumes = s
            .mounts
            .keys()
            .map(|n| Volume {
                name: n.clone(),
                mountpoint: path_of(n),
                ..Default::default()
            })
            .collect();
        Ok(ListResponse {
            volumes,
            err: String::new(),
        })
    });
    route!(b, "VolumeDriver.Capabilities", |_r: Value, s| {
        Ok(CapabilitiesResponse {
            capabilities: Capability {
                scope: "local".into(),
            },
            err: String::new(),
        })
    });

    // Network driver: no interface is handed over.
    route!(b, "NetworkDriver.GetCapabilities", |_r: Value, s| {
        Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))
    });
    for call in [
        "NetworkDriver.CreateNetwork",
        "NetworkDriver.DeleteNetwork",
        "NetworkDriver.Join",
        "NetworkDriver.Leave",
        "NetworkDriver.ProgramExternalConnectivity",
        "NetworkDriver.RevokeExternalConnectivity",
    ] {
        let log = args.log.clone();
        b = b.route_json(format!("/{call}"), move |r: Value| {
            log_call(&log, call, &r);
            async move { Ok::<_, HandlerError>(json!({})) }
        });
    }
    route!(b, "NetworkDriver.CreateEndpoint", |r: Value, s| {
        let id = r["EndpointID"].as_str().unwrap_or_default().to_owned();
        s.endpoints.insert(id, String::new());
        Ok(json!({}))
    });
    route!(b, "NetworkDriver.DeleteEndpoint", |r: Value, s| {
        s.endpoints
            .remove(r["EndpointID"].as_str().unwrap_or_default());
        Ok(json!({}))
    });

    // IPAM: /24 pools, host numbers from 2 up (1 is the gateway's).
    route!(b, "IpamDriver.GetCapabilities", |_r: Value, s| {
        Ok(json!({}))
    });
    route!(b, "IpamDriver.GetDefaultAddressSpaces", |_r: Value, s| {
        Ok(AddressSpacesResponse {
            local_default_address_space: "ledger-local".into(),
            global_default_address_space: "ledger-global".into(),
            error: String::new(),
        })
    });
    route!(b, "IpamDriver.RequestPool", |r: RequestPoolRequest, s| {
        let pool = if r.pool.is_empty() {
            "10.77.0.0/24".to_owned()
        } else {
            r.pool
        };
        prefix_of(&pool)?;
        s.leases.entry(pool.clone()).or_default();
        Ok(RequestPoolResponse {
            pool_id: pool.clone(),
            pool,
            ..Default::default()
        })
    });
    route!(b, "IpamDriver.ReleasePool", |r: Value, s| {
        s.leases.remove(r["PoolID"].as_str().unwrap_or_default());
        Ok(json!({}))
    });
    route!(
        b,
        "IpamDriver.RequestAddress",
        |r: RequestAddressRequest, s| {
            let prefix = prefix_of(&r.pool_id)?;
            let Some(leases) = s.leases.get_mut(&r.pool_id) else {
                return Err(HandlerError::new(format!("no pool {}", r.pool_id)));
            };
            let host = match r.address.split('/').next().unwrap_or_default() {
                "" if r.options.values().any(|v| v.ends_with("gateway")) => 1,
                "" => (2..=254)
                    .find(|h| !leases.contains(h))
                    .ok_or_else(|| HandlerError::new("pool exhausted"))?,
                a => a
                    .strip_prefix(&prefix)
                    .and_then(|h| h.parse().ok())
                    .ok_or_else(|| HandlerError::new(format!("{a} is not in {}", r.pool_id)))?,
            };
            leases.insert(host);
            Ok(RequestAddressResponse {
                address: format!("{prefix}{host}/24"),
                ..Default::default()
            })
        }
    );
    // Releasing what is not leased succeeds: after a crash the engine sends the releases it owed
    // before the plugin's books are rebuilt (idempotent, as CNI's DEL).
    route!(
        b,
        "IpamDriver.ReleaseAddress",
        |r: ReleaseAddressRequest, s| {
            let prefix = prefix_of(&r.pool_id).unwrap_or_default();
            let host = r
                .address
                .split('/')
                .next()
                .and_then(|a| a.strip_prefix(&prefix))
                .and_then(|h| h.parse::<u8>().ok());
            if let (Some(h), Some(leases)) = (host, s.leases.get_mut(&r.pool_id)) {
                leases.remove(&h);
            }
            Ok(json!({}))
        }
    );

    {
        let state = state.clone();
        b = b.route_raw("/Ledger.State", move |_| {
            let state = state.clone();
            async move { Reply::json(&*books(&state)) }
        });
    }
    b.build().serve_until_signal(&args.socket).await?;
    Ok(())
}
