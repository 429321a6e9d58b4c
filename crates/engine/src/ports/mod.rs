//! Published ports (`docker run -p [IP:]HOST:CONTAINER[/tcp|udp]`) for containers on bridge
//! networks. At start, once the container has its address, each binding gets
//! - a userland proxy in the daemon ([`proxy`]): binding it claims the host port (a taken port
//!   fails the start with 409 naming it) and it serves what DNAT cannot, the host's loopback;
//! - unless the host address is a loopback one, a DNAT rule in the engine's own `iptables`
//!   chain ([`iptables`]) for traffic to the host's other addresses.
//!
//! Both go when the container stops (or is removed); the chain (made at the first publish) goes at
//! a graceful daemon stop and is swept at boot, so a daemon killed with `kill -9` leaves nothing
//! behind after its next start on the same root. Ports of containers on
//! `host`, `none` or plugin-driven networks are not published (Docker discards them for `host`).
//! Without an `iptables` binary only the proxy runs (logged once).

pub mod iptables;
pub mod proxy;
pub mod spec;

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::Mutex;

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

pub use spec::{PortBinding, Proto, parse};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::{Container, lock};
use iptables::{Firewall, Rule};

/// One binding as published while its container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub binding: PortBinding,
    /// The host port in use (the chosen one when the binding asked for 0).
    pub host_port: u16,
}

/// What one running container has published.
#[derive(Debug)]
struct Active {
    published: Vec<Published>,
    proxies: Vec<JoinHandle<()>>,
    rules: Vec<Rule>,
}

/// The engine's published ports.
#[derive(Debug)]
pub struct PortTable {
    /// `None` when the host has no `iptables`.
    firewall: Option<Firewall>,
    /// The chain is made once per engine, at the first publish.
    ready: OnceCell<()>,
    active: Mutex<HashMap<String, Active>>,
}

impl PortTable {
    pub fn new(root: &std::path::Path) -> PortTable {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("iptables").is_file()));
        if !found {
            tracing::warn!("no iptables on PATH: published ports are served by the proxy only");
        }
        PortTable {
            firewall: found.then(|| Firewall::new(root)),
            ready: OnceCell::new(),
            active: Mutex::new(HashMap::new()),
        }
    }

    /// The engine's chain (`None` without iptables).
    pub fn chain(&self) -> Option<&str> {
        self.firewall.as_ref().map(Firewall::chain)
    }

    async fn ready(&self) -> Result<(), EngineError> {
        let Some(fw) = &self.firewall else {
            return Ok(());
        };
        self.ready.get_or_try_init(|| fw.ensure()).await.map(|_| ())
    }

    async fn undo(&self, active: Active) {
        for p in &active.proxies {
            p.abort();
        }
        for p in active.proxies {
            let _ = p.await;
        }
        if let Some(fw) = &self.firewall {
            for r in &active.rules {
                fw.delete(r).await;
            }
        }
    }
}

impl Engine {
    /// Boot: removes the engine's chain with the rules a killed engine left behind.
    pub async fn sweep_ports(&self) -> Result<(), EngineError> {
        match &self.ports.firewall {
            Some(fw) => fw.sweep().await,
            None => Ok(()),
        }
    }

    /// What container `id` has published (empty unless it runs with port bindings).
    pub fn published_ports(&self, id: &str) -> Vec<Published> {
        lock(&self.ports.active)
            .get(id)
            .map(|a| a.published.clone())
            .unwrap_or_default()
    }

    /// Publishes the container's ports (after its network is attached). On failure nothing of
    /// it is left.
    pub(crate) async fn publish_ports(&self, c: &Container) -> Result<(), EngineError> {
        let bindings = &c.config.spec.port_bindings;
        if bindings.is_empty() {
            return Ok(());
        }
        let primary = self
            .networks
            .container_networks(c.id())
            .into_iter()
            .find(|(_, m)| m.primary);
        let Some((net, ep)) = primary
            .filter(|(n, _)| n.driver == "bridge")
            .and_then(|(n, m)| m.endpoint.map(|ep| (n, ep)))
        else {
            tracing::info!(
                id = c.id(),
                "published ports ignored: not on a bridge network"
            );
            return Ok(());
        };
        self.ports.ready().await?;
        let bridge = berth_networks::bridge::bridge_name(&net);
        let mut active = Active {
            published: Vec::new(),
            proxies: Vec::new(),
            rules: Vec::new(),
        };
        for b in bindings {
            let step = async {
                let bound = proxy::bind(b).await?;
                let host_port = bound.port();
                if let (Some(fw), true) = (&self.ports.firewall, Rule::needed(b)) {
                    let rule = Rule::dnat(b, host_port, &bridge, ep.address, c.id());
                    fw.add(&rule).await?;
                    active.rules.push(rule);
                }
                active.proxies.push(proxy::serve(
                    bound,
                    SocketAddrV4::new(ep.address, b.container_port),
                    bridge.clone(),
                ));
                active.published.push(Published {
                    binding: b.clone(),
                    host_port,
                });
                Ok::<(), EngineError>(())
            };
            if let Err(e) = step.await {
                self.ports.undo(active).await;
                return Err(e);
            }
        }
        let old = lock(&self.ports.active).insert(c.id().to_owned(), active);
        if let Some(old) = old {
            self.ports.undo(old).await;
        }
        Ok(())
    }

    /// Removes every rule and stops every proxy, then the chain itself (daemon shutdown).
    pub(crate) async fn unpublish_all_ports(&self) {
        let all: Vec<Active> = lock(&self.ports.active).drain().map(|(_, a)| a).collect();
        for active in all {
            self.ports.undo(active).await;
        }
        if let (Some(fw), Some(())) = (&self.ports.firewall, self.ports.ready.get()) {
            fw.remove().await;
        }
    }

    /// Removes the container's rules and stops its proxies (stop, exit, rm; idempotent).
    pub(crate) async fn unpublish_ports(&self, id: &str) {
        let active = lock(&self.ports.active).remove(id);
        if let Some(active) = active {
            self.ports.undo(active).await;
        }
    }
}
