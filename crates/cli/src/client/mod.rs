//! How client commands reach the engine: socket discovery (`--host`/`-H`, then `$BERTH_HOST`,
//! then the default), the bollard Engine API client, the raw helper for what bollard lacks, and
//! the mapping of client errors to docker-style messages.

pub mod raw;

use std::path::{Path, PathBuf};

use bollard::Docker;

use crate::parse;
pub use raw::{RawClient, RawError};

/// Where clients look for the engine when neither `--host` nor `$BERTH_HOST` is set.
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

/// Seconds bollard waits for one request before giving up.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A connected client: bollard for the Docker API, the raw helper for the rest.
pub struct Client {
    /// The Docker Engine API client.
    pub docker: Docker,
    /// The raw HTTP-over-UDS helper.
    pub raw: RawClient,
}

/// Picks the socket: the `--host` flag, then `$BERTH_HOST`, then [`DEFAULT_SOCKET`].
pub fn resolve_socket(flag: Option<&str>, env: Option<&str>) -> Result<PathBuf, String> {
    match flag.or(env).filter(|h| !h.is_empty()) {
        Some(host) => parse::unix_host(host),
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
    }
}

impl Client {
    /// Connects to the engine chosen by `host` (the `-H` flag) or the environment.
    pub fn connect(host: Option<&str>) -> anyhow::Result<Self> {
        let env = std::env::var("BERTH_HOST").ok();
        let socket = resolve_socket(host, env.as_deref()).map_err(anyhow::Error::msg)?;
        Self::connect_socket(&socket)
    }

    /// Connects to the engine on `socket`.
    pub fn connect_socket(socket: &Path) -> anyhow::Result<Self> {
        let path = socket.to_string_lossy();
        let docker =
            Docker::connect_with_unix(&path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|err| match err {
                    bollard::errors::Error::SocketNotFoundError(_) => {
                        anyhow::Error::new(RawError::Connect {
                            socket: socket.to_path_buf(),
                            source: std::io::Error::from(std::io::ErrorKind::NotFound),
                        })
                    }
                    other => anyhow::Error::new(other),
                })?;
        Ok(Self {
            docker,
            raw: RawClient::new(socket),
        })
    }
}

/// The engine's message if `err` is an error answer from the engine (any status).
pub fn daemon_message(err: &anyhow::Error) -> Option<(u16, String)> {
    if let Some(bollard::errors::Error::DockerResponseServerError {
        status_code,
        message,
    }) = err.downcast_ref::<bollard::errors::Error>()
    {
        return Some((*status_code, message.clone()));
    }
    if let Some(RawError::Daemon { status, message }) = err.downcast_ref::<RawError>() {
        return Some((*status, message.clone()));
    }
    None
}

/// True if `err` is an engine answer with status 404.
pub fn is_not_found(err: &anyhow::Error) -> bool {
    matches!(daemon_message(err), Some((404, _)))
}

/// Formats an error the way docker prints it (without the `berth:` prefix of run/create).
pub fn describe_error(err: &anyhow::Error) -> String {
    if let Some((_, message)) = daemon_message(err) {
        return format!("Error response from daemon: {message}");
    }
    if let Some(raw) = err.downcast_ref::<RawError>() {
        return raw.to_string();
    }
    if let Some(bollard_err) = err.downcast_ref::<bollard::errors::Error>() {
        match bollard_err {
            bollard::errors::Error::DockerStreamError { error } => return error.clone(),
            bollard::errors::Error::HyperLegacyError { .. }
            | bollard::errors::Error::IOError { .. } => {
                return format!("Error: cannot talk to the berth daemon: {bollard_err}");
            }
            _ => {}
        }
    }
    format!("Error: {err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_resolution_order() {
        assert_eq!(
            resolve_socket(Some("unix:///a.sock"), Some("unix:///b.sock")).unwrap(),
            PathBuf::from("/a.sock")
        );
        assert_eq!(
            resolve_socket(None, Some("unix:///b.sock")).unwrap(),
            PathBuf::from("/b.sock")
        );
        assert_eq!(
            resolve_socket(None, None).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(
            resolve_socket(None, Some("")).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert!(resolve_socket(Some("tcp://x:1"), None).is_err());
    }

    #[test]
    fn error_descriptions() {
        let err = anyhow::Error::new(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "get nicevol: no such volume".into(),
        });
        assert!(is_not_found(&err));
        assert_eq!(
            describe_error(&err),
            "Error response from daemon: get nicevol: no such volume"
        );
        let err = anyhow::Error::new(RawError::Daemon {
            status: 409,
            message: "conflict".into(),
        });
        assert!(!is_not_found(&err));
        assert_eq!(describe_error(&err), "Error response from daemon: conflict");
        assert!(
            describe_error(
                &Client::connect_socket(Path::new("/nope/x.sock"))
                    .err()
                    .unwrap()
            )
            .starts_with("Cannot connect to the berth daemon at unix:///nope/x.sock")
        );
    }
}
