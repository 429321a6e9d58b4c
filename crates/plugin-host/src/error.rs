//! The plugin host's error type and its class for the API's one error→HTTP map.

use std::path::PathBuf;

use berth_state::ErrorKind;

use crate::discovery::DiscoveryError;
use crate::handshake::HandshakeError;

/// Errors of the plugin host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A plugin with this name is loaded.
    #[error("plugin \"{0}\" is already loaded")]
    Conflict(String),
    /// The operator's daemon flags pin this plugin (an `--authorization-plugin`): it cannot be
    /// disabled, unloaded or upgraded through the API.
    #[error("plugin \"{name}\" cannot be {action}: {reason}")]
    Locked {
        /// Plugin name.
        name: String,
        /// `disabled`, `unloaded`, `upgraded`.
        action: &'static str,
        /// Why it is pinned.
        reason: String,
    },
    /// A `--network` other than `host` or `none`.
    #[error("invalid plugin network {0:?}: use host (the host's namespace) or none (its own)")]
    Network(String),
    /// No such plugin.
    #[error("plugin \"{0}\" is not loaded")]
    NotFound(String),
    /// `plugin enable` of a plugin that is not Failed (only a Failed one is revived).
    #[error("plugin \"{name}\" is {state}, not failed: nothing to restart")]
    NotFailed {
        /// Plugin name.
        name: String,
        /// Its state.
        state: String,
    },
    /// Negotiation failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The launcher failed.
    /// The plugin container exited before it answered a handshake.
    #[error("plugin \"{plugin}\": its container exited with code {exit_code} before answering a handshake (restarts: {restarts}); {}", fmt_output(.output))]
    Exited {
        /// Plugin name (or image when no name was given).
        plugin: String,
        /// Exit code of its last run.
        exit_code: i32,
        /// Restarts so far.
        restarts: u32,
        /// Its last output lines.
        output: Vec<String>,
    },
    #[error("launching plugin image {image}: {reason}")]
    Launch {
        /// Image.
        image: String,
        /// Reason.
        reason: String,
    },
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Persisting failed.
    #[error(transparent)]
    State(#[from] berth_state::StateError),
    /// A bad plugin name.
    #[error(transparent)]
    Name(#[from] berth_state::NameError),
    /// The plugin told no name and none was given.
    #[error("plugin at {0} tells no name; give one")]
    NoName(String),
    /// No launcher is configured.
    #[error("no plugin launcher configured: cannot run plugin containers")]
    NoLauncher,
    /// Upgrade to a plugin with another name.
    #[error("upgrade of plugin \"{old}\": the new plugin calls itself \"{new}\"")]
    NameMismatch {
        /// Old name.
        old: String,
        /// New name.
        new: String,
    },
    /// A `--mount` that cannot be used.
    #[error("plugin mount {mount:?}: {reason}")]
    Mount {
        /// The mount as given.
        mount: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
}

impl HostError {
    /// The error class (for the API's one error→HTTP map).
    pub fn kind(&self) -> ErrorKind {
        match self {
            HostError::Conflict(_) | HostError::Locked { .. } | HostError::NotFailed { .. } => {
                ErrorKind::Conflict
            }
            HostError::NotFound(_) | HostError::Discovery(DiscoveryError::NotFound { .. }) => {
                ErrorKind::NotFound
            }
            HostError::Name(_)
            | HostError::NoName(_)
            | HostError::NameMismatch { .. }
            | HostError::Mount { .. }
            | HostError::Network(_)
            | HostError::Discovery(_) => ErrorKind::InvalidArgument,
            HostError::Handshake(_) | HostError::Exited { .. } | HostError::Launch { .. } => {
                ErrorKind::Unavailable
            }
            HostError::State(_) | HostError::Io { .. } | HostError::NoLauncher => {
                ErrorKind::Internal
            }
        }
    }
}

fn fmt_output(lines: &[String]) -> String {
    if lines.is_empty() {
        return "it printed nothing".to_owned();
    }
    format!("its last output:\n{}", lines.join("\n"))
}
