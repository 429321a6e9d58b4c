//! The engine layer's error type: every failure of a lifecycle, image or store operation, with
//! its class ([`ErrorKind`]) so the API maps it to one HTTP status.

use berth_networks::NetworkError;
use berth_state::{ErrorKind, NameError, StateError};
use berth_volumes::VolumeError;

use crate::runtime::RuntimeError;

/// Errors of the engine layer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// Something named in the request does not exist (a path inside a container).
    #[error("{0}")]
    NotFound(String),
    /// The object is in a state that forbids the operation, or a name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The request is invalid; the message names the field or value.
    #[error("{0}")]
    Invalid(String),
    /// Nothing to do (start of a running container, stop of a stopped one).
    #[error("{0}")]
    NotModified(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    State(#[from] StateError),
    /// The runtime could not start the process; the message says which step failed.
    #[error("failed to start container: {0}")]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// An `iptables` call for a published port failed; the message has the command and its
    /// error output.
    #[error("publishing a port: {0}")]
    Firewall(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl EngineError {
    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NoSuchContainer(_)
            | EngineError::NoSuchImage(_)
            | EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Invalid(_) | EngineError::Name(_) | EngineError::Runtime(_) => {
                ErrorKind::InvalidArgument
            }
            EngineError::NotModified(_) => ErrorKind::NotModified,
            EngineError::Forbidden(_) => ErrorKind::Forbidden,
            EngineError::Volume(e) => e.kind(),
            EngineError::Network(e) => e.kind(),
            EngineError::State(e) => e.kind(),
            EngineError::Io { .. } | EngineError::Cgroup(_) | EngineError::Firewall(_) => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
        let context = context.into();
        move |source| EngineError::Io { context, source }
    }
}
