//! Networks: the network store and the built-in networks. Today Berth has the two networks that
//! need no wiring — `host` (the container shares the host's network namespace) and `none` (a new
//! network namespace with only loopback). Bridge networks, IPAM and plugin drivers build on this.

use std::collections::BTreeMap;

use berth_state::ErrorKind;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error(
        "network driver \"{0}\" is not available: Berth has the built-in \"host\" and \"null\" networks"
    )]
    UnknownDriver(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
}

impl NetworkError {
    /// The class of this failure, for the API's status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotFound(_) | NetworkError::UnknownDriver(_) => ErrorKind::NotFound,
            NetworkError::Predefined(_) => ErrorKind::Forbidden,
        }
    }
}

/// How a container attached to a network gets its network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Attachment {
    /// Share the host's network namespace.
    Host,
    /// A fresh network namespace with only loopback.
    Isolated,
}

/// One network as the engine knows it.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub created: DateTime<Utc>,
    pub attachment: Attachment,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The network store.
pub struct NetworkStore {
    networks: Vec<Network>,
}

fn builtin(name: &str, driver: &str, attachment: Attachment) -> Network {
    // Stable ids for the built-in networks, derived from their names.
    let id = hex::encode(Sha256::digest(format!("berth built-in network {name}").as_bytes()));
    Network {
        id,
        name: name.to_owned(),
        driver: driver.to_owned(),
        created: DateTime::<Utc>::UNIX_EPOCH,
        attachment,
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
    }
}

impl Default for NetworkStore {
    fn default() -> Self {
        Self::new()
    }
}

impl NetworkStore {
    /// The store with the built-in networks.
    pub fn new() -> Self {
        NetworkStore {
            networks: vec![
                builtin("host", "host", Attachment::Host),
                builtin("none", "null", Attachment::Isolated),
            ],
        }
    }

    /// All networks, sorted by name.
    pub fn list(&self) -> Vec<Network> {
        let mut all = self.networks.clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Finds a network by name, full id or unique id prefix.
    pub fn get(&self, reference: &str) -> Result<Network, NetworkError> {
        if let Some(n) = self
            .networks
            .iter()
            .find(|n| n.name == reference || n.id == reference)
        {
            return Ok(n.clone());
        }
        let mut matches = self
            .networks
            .iter()
            .filter(|n| !reference.is_empty() && n.id.starts_with(reference));
        match (matches.next(), matches.next()) {
            (Some(n), None) => Ok(n.clone()),
            _ => Err(NetworkError::NotFound(reference.to_owned())),
        }
    }

    /// The network a container's `NetworkMode` names. Docker's `default` (and an empty mode) is the
    /// bridge network there; Berth has no bridge yet, so `default` means the host network.
    pub fn for_mode(&self, mode: &str) -> Result<Network, NetworkError> {
        match mode {
            "" | "default" | "bridge" => self.get("host"),
            other => self.get(other),
        }
    }

    /// Creating networks needs a driver; none but the built-ins exist yet.
    pub fn create(&self, _name: &str, driver: &str) -> Result<Network, NetworkError> {
        Err(NetworkError::UnknownDriver(if driver.is_empty() {
            "bridge".to_owned()
        } else {
            driver.to_owned()
        }))
    }

    /// Removing a network: the built-ins cannot be removed.
    pub fn remove(&self, reference: &str) -> Result<(), NetworkError> {
        let n = self.get(reference)?;
        Err(NetworkError::Predefined(n.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve_by_name_id_and_prefix() {
        let store = NetworkStore::new();
        let names: Vec<_> = store.list().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["host", "none"]);
        let host = store.get("host").unwrap();
        assert_eq!(host.id.len(), 64);
        assert_eq!(store.get(&host.id[..12]).unwrap().name, "host");
        assert_eq!(
            store.for_mode("default").unwrap().attachment,
            Attachment::Host
        );
        assert_eq!(
            store.for_mode("none").unwrap().attachment,
            Attachment::Isolated
        );
        assert_eq!(store.get("nosuch").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            store.remove("host").unwrap_err().kind(),
            ErrorKind::Forbidden
        );
        assert_eq!(
            store.create("x", "").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
