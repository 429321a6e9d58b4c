//! Daemon hygiene at start-up: one daemon per state root and per socket, and modes that keep
//! other local users out.
//!
//! - The root is locked: `flock` on `<root>/berth.pid`, which holds the daemon's pid. A second
//!   daemon on the same root fails with an error naming the first one's pid.
//! - A socket path that still answers belongs to a live daemon: a second daemon refuses to start
//!   (naming the peer's pid, from `SO_PEERCRED`) instead of deleting it; a dead socket file is
//!   replaced.
//! - The root is `0711` (traversable, not listable: a container's files are reachable only
//!   through its mounts) and every directory directly under it, and each `containers/<id>`, is
//!   `0700`, fixed at every boot (records from before this rule included).
//! - The API socket is `0660`, owned by root and the `--group` (default: a `berth` group when
//!   one exists, else root's group); per-plugin engine sockets are `0600`.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Group};

/// The mode of the state root.
pub const ROOT_MODE: u32 = 0o711;
/// The mode of the directories under it (and of each container's directory).
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of the API socket.
pub const SOCKET_MODE: u32 = 0o660;
/// The mode of a privileged plugin's engine socket.
pub const PLUGIN_SOCKET_MODE: u32 = 0o600;
/// The group that owns the API socket when `--group` is not given and it exists.
pub const DEFAULT_GROUP: &str = "berth";

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HygieneError {
    #[error(
        "another berth daemon (pid {pid}) is running on the state root {}; stop it first",
        root.display()
    )]
    RootInUse { root: PathBuf, pid: String },
    #[error(
        "another daemon (pid {pid}) is serving the socket {}; stop it or use another --host",
        socket.display()
    )]
    SocketInUse { socket: PathBuf, pid: String },
    #[error("group {0:?} does not exist (--group)")]
    NoSuchGroup(String),
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HygieneError + use<> {
    let path = path.to_owned();
    move |source| HygieneError::Io { step, path, source }
}

/// The lock on the state root, held for the daemon's life (released when dropped or when the
/// process dies, however it dies).
#[derive(Debug)]
pub struct RootLock {
    _lock: Flock<File>,
}

/// Creates (or fixes) the state root with its modes and locks it, writing our pid into
/// `<root>/berth.pid`.
pub fn lock_root(root: &Path) -> Result<RootLock, HygieneError> {
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    std::fs::set_permissions(root, Permissions::from_mode(ROOT_MODE)).map_err(io("chmod", root))?;
    let path = root.join("berth.pid");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(io("open", &path))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(HygieneError::RootInUse {
                root: root.to_owned(),
                pid: pid.trim().to_owned(),
            });
        }
        Err((_, errno)) => return Err(io("lock", &path)(errno.into())),
    };
    lock.set_len(0).map_err(io("truncate", &path))?;
    lock.rewind().map_err(io("rewind", &path))?;
    writeln!(lock, "{}", std::process::id()).map_err(io("write", &path))?;
    Ok(RootLock { _lock: lock })
}

/// Refuses a socket path on which a live daemon still answers; a dead socket file is left for
/// the bind to replace.
pub fn check_socket_free(socket: &Path) -> Result<(), HygieneError> {
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return Ok(());
    };
    let pid =
        nix::sys::socket::getsockopt(&stream.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.pid().to_string())
            .unwrap_or_else(|_| "unknown".into());
    Err(HygieneError::SocketInUse {
        socket: socket.to_owned(),
        pid,
    })
}

/// The group that owns the API socket: `--group NAME`, else [`DEFAULT_GROUP`] when it exists,
/// else root's group.
pub fn socket_group(name: Option<&str>) -> Result<Gid, HygieneError> {
    match name {
        Some(name) => Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid)
            .ok_or_else(|| HygieneError::NoSuchGroup(name.to_owned())),
        None => Ok(Group::from_name(DEFAULT_GROUP)
            .ok()
            .flatten()
            .map_or(Gid::from_raw(0), |g| g.gid)),
    }
}

/// Gives the API socket its mode and owner (root and `group`).
pub fn secure_socket(socket: &Path, group: Gid) -> Result<(), HygieneError> {
    nix::unistd::chown(socket, Some(nix::unistd::Uid::from_raw(0)), Some(group))
        .map_err(|e| io("chown", socket)(e.into()))?;
    std::fs::set_permissions(socket, Permissions::from_mode(SOCKET_MODE))
        .map_err(io("chmod", socket))
}

/// Makes a privileged plugin's engine socket readable and writable by root only.
pub fn secure_plugin_socket(socket: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(socket, Permissions::from_mode(PLUGIN_SOCKET_MODE))
}

/// Fixes the modes under the root: every directory directly under it (`tmp` created here), and
/// each container's directory, `0700`.
pub fn fix_modes(root: &Path) -> Result<(), HygieneError> {
    let private = |path: &Path| {
        std::fs::set_permissions(path, Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io("chmod", path))
    };
    // Made here, private, rather than later with the umask's mode by the first image import.
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
    let entries = std::fs::read_dir(root).map_err(io("read", root))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            private(&entry.path())?;
        }
    }
    let containers = root.join("containers");
    if let Ok(entries) = std::fs::read_dir(&containers) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                private(&entry.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_pid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let lock = lock_root(&root).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, ROOT_MODE);
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        let err = lock_root(&root).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        lock_root(&root).unwrap();
    }

    #[test]
    fn a_live_socket_is_refused_and_a_dead_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = check_socket_free(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(listener);
        check_socket_free(&path).unwrap();
        assert!(socket_group(Some("no-such-group-here")).is_err());
    }
}
