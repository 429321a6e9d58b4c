//! Docker-style discovery of plugins already running: `<dir>/NAME.sock`, `<dir>/NAME/NAME.sock`,
//! and spec files `<dir>/NAME.spec` / `<dir>/NAME/NAME.spec` holding a `unix://` URL, or
//! `NAME.json` with an `Addr`. Only UNIX sockets are supported (no tcp/TLS). A name is validated
//! before it is joined to any directory: `/tmp/x` or `../x` never reaches the filesystem.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// A discovery failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// The name is no valid plugin name (a path, `..`, odd characters): nothing was looked up.
    #[error(transparent)]
    InvalidName(#[from] berth_state::NameError),
    /// Nothing found in any directory.
    #[error("plugin \"{name}\" not found in {dirs}")]
    NotFound {
        /// Plugin name.
        name: String,
        /// The directories searched.
        dirs: String,
    },
    /// A spec file names an address Berth cannot use.
    #[error("{path}: unsupported plugin address {addr:?} (only unix:// is supported)")]
    Unsupported {
        /// Spec file.
        path: String,
        /// Its content.
        addr: String,
    },
    /// A spec file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// Spec file.
        path: String,
        /// Reason.
        reason: String,
    },
}

/// The default discovery directories (Docker's).
pub fn default_dirs() -> Vec<PathBuf> {
    [
        "/run/docker/plugins",
        "/etc/docker/plugins",
        "/usr/lib/docker/plugins",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

fn read_addr(path: &Path, json: bool) -> Result<PathBuf, DiscoveryError> {
    let text = std::fs::read_to_string(path).map_err(|e| DiscoveryError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let addr = if json {
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| DiscoveryError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        v.get("Addr")
            .and_then(|a| a.as_str())
            .unwrap_or_default()
            .to_owned()
    } else {
        text.trim().to_owned()
    };
    match addr.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(DiscoveryError::Unsupported {
            path: path.display().to_string(),
            addr,
        }),
    }
}

/// Finds the socket of plugin `name` (first hit wins, directory by directory).
pub fn discover(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, DiscoveryError> {
    berth_state::validate_name("plugin", name)?;
    for dir in dirs {
        for sock in [
            dir.join(format!("{name}.sock")),
            dir.join(name).join(format!("{name}.sock")),
        ] {
            if is_socket(&sock) {
                return Ok(sock);
            }
        }
        for (file, json) in [
            (dir.join(format!("{name}.spec")), false),
            (dir.join(name).join(format!("{name}.spec")), false),
            (dir.join(format!("{name}.json")), true),
            (dir.join(name).join(format!("{name}.json")), true),
        ] {
            if file.is_file() {
                return read_addr(&file, json);
            }
        }
    }
    Err(DiscoveryError::NotFound {
        name: name.to_owned(),
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Lists the plugin names discoverable in `dirs` (sorted, deduplicated).
pub fn scan(dirs: &[PathBuf]) -> Vec<String> {
    let mut names = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if path.is_dir() {
                if discover(file, std::slice::from_ref(dir)).is_ok() {
                    names.push(file.to_owned());
                }
                continue;
            }
            for ext in [".sock", ".spec", ".json"] {
                if let Some(n) = file.strip_suffix(ext)
                    && (ext != ".sock" || is_socket(&path))
                {
                    names.push(n.to_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_spec_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let _l = std::os::unix::net::UnixListener::bind(dir.join("a.sock")).unwrap();
        std::fs::write(dir.join("b.spec"), "unix:///tmp/b.sock\n").unwrap();
        std::fs::write(dir.join("c.spec"), "tcp://1.2.3.4:80").unwrap();
        std::fs::write(
            dir.join("d.json"),
            r#"{"Name":"d","Addr":"unix:///x/d.sock"}"#,
        )
        .unwrap();
        std::fs::write(dir.join("e.sock"), "not a socket").unwrap();
        let dirs = vec![dir.clone()];
        assert_eq!(discover("a", &dirs).unwrap(), dir.join("a.sock"));
        assert_eq!(discover("b", &dirs).unwrap(), PathBuf::from("/tmp/b.sock"));
        assert!(matches!(
            discover("c", &dirs),
            Err(DiscoveryError::Unsupported { .. })
        ));
        assert_eq!(discover("d", &dirs).unwrap(), PathBuf::from("/x/d.sock"));
        assert!(matches!(
            discover("e", &dirs),
            Err(DiscoveryError::NotFound { .. })
        ));
        assert_eq!(scan(&dirs), vec!["a", "b", "c", "d"]);
        // A path or a `..` is refused before any lookup, even when the file it names exists.
        let outside = d.path().join("x");
        let _x = std::os::unix::net::UnixListener::bind(d.path().join("x.sock")).unwrap();
        let sub = vec![dir.join("sub")];
        for bad in [outside.to_str().unwrap(), "../x", "a/../../x"] {
            assert!(
                matches!(discover(bad, &sub), Err(DiscoveryError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
