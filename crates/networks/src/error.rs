//! The network layer's error type and its class for the API's one error→HTTP map.

use berth_state::{ErrorKind, NameError, StateError};

use crate::ipam::{IpamError, Subnet};
use crate::model::Network;

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
            // Fail closed: a needed plugin that is not Active is 503 (`docs/semantics.md`).
            NetworkError::Plugin { source, .. } if source.is_not_active() => ErrorKind::Unavailable,
            NetworkError::Hook(e) if e.reason.is_not_active() => ErrorKind::Unavailable,
            NetworkError::Driver { .. }
            | NetworkError::Plugin { .. }
            | NetworkError::Hook(_)
            | NetworkError::Netlink { .. }
            | NetworkError::System { .. } => ErrorKind::Internal,
            NetworkError::State(e) => e.kind(),
        }
    }
}

pub(crate) fn ipam_kind(e: &IpamError) -> ErrorKind {
    match e {
        IpamError::InUse(_) | IpamError::Exhausted(_) | IpamError::NoPool => ErrorKind::Conflict,
        _ => ErrorKind::InvalidArgument,
    }
}

pub(crate) fn driver_error(n: &Network, e: NetworkError) -> NetworkError {
    match e {
        NetworkError::Driver { .. } => e,
        NetworkError::Plugin { ref source, .. } if source.is_not_active() => e,
        other => NetworkError::Driver {
            network: n.name.clone(),
            driver: n.driver.clone(),
            reason: other.to_string(),
        },
    }
}
