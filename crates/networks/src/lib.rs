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
//! Members of user-defined networks resolve each other by name through [`dns`].

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bridge;
pub mod dns;
pub mod driver;
pub mod endpoint;
pub mod endpoint_config;
pub mod error;
pub mod ipam;
pub mod lifecycle;
pub mod membership;
pub mod model;
pub mod mvp;
pub mod netns;
pub mod owed;
pub mod remote;
pub mod store;

pub use endpoint_config::EndpointConfig;
pub use error::NetworkError;
pub use model::{Attachment, CreateNetwork, Endpoint, Member, Network, Phase};
pub use owed::{PaidLeaves, PaidNetworks};
pub use store::{LoadedNetworks, NetworkStore};
