//! The network driver interface. A driver owns a network's data plane: it is told when a network
//! is created or deleted, and when a container's endpoint joins or leaves; on join it hands back
//! an interface in the daemon's namespace (Docker's `SrcName`), which the store moves into the
//! container's namespace and configures (see [`crate::netns::plumb`]). The built-in `bridge`
//! driver ([`crate::bridge::BridgeDriver`]) is one implementation; plugin drivers (Docker's remote
//! `NetworkDriver`, the MVP network messages) implement the same trait.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use futures::future::BoxFuture;

use crate::ipam::{Pool, Subnet};
use crate::{Network, NetworkError};

/// One endpoint as a driver sees it on join and leave.
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    /// 64-hex endpoint id.
    pub id: String,
    pub container_id: String,
    /// The container's network namespace file.
    pub netns: PathBuf,
    /// The address the IPAM assigned, with the subnet's prefix length.
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub pool: Pool,
}

/// A driver's answer to a join (Docker's Join response, typed).
#[derive(Debug, Clone)]
pub struct JoinInfo {
    /// The interface, in the daemon's namespace, to move into the container.
    pub src_name: String,
    /// Docker's `DstPrefix`: the interface inside is named prefix + index (`None` = `eth`).
    pub dst_prefix: Option<String>,
    /// The gateway to route through; `None` = the pool's gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Extra routes `(destination, via)`.
    pub static_routes: Vec<(Subnet, Ipv4Addr)>,
    /// Whether the driver wants the default route (Docker: gateway not disabled).
    pub default_route: bool,
}

/// A network driver. Every call may fail with a reason naming the driver.
pub trait NetworkDriver: Send + Sync {
    /// The name users pass as `--driver`.
    fn name(&self) -> &str;

    /// A network was created (records exist; nothing wired yet).
    fn create_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>>;

    /// A network is being deleted (no endpoints remain).
    fn delete_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>>;

    /// An endpoint joins: create its interface, return how to plumb it.
    fn join<'a>(
        &'a self,
        net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<JoinInfo, NetworkError>>;

    /// An endpoint leaves: delete what `join` created (idempotent; may run after a failed join).
    fn leave<'a>(
        &'a self,
        net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<(), NetworkError>>;
}
