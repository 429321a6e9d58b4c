//! `docker cp`: stat, read (as a tar) and write (from a tar) paths inside a container.
//!
//! Safety: every path is resolved inside the container's root, never outside it. For a running
//! container the root is `/proc/<pid 1>/root` (its `/` as pid 1 sees it, with its volumes and
//! tmpfs mounts); for a stopped one it is mounted for the copy (`archive_root`). It is opened once as a directory fd; paths given by the client are resolved from it with
//! `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks (absolute or relative) stay inside the root,
//! as they would for a process in the container. Below the resolved path, a tar walk opens each
//! child by its single name with `O_NOFOLLOW` (symlinks are archived as symlinks, never followed),
//! and extraction creates each entry relative to its parent directory fd, itself resolved with
//! `RESOLVE_IN_ROOT`; a symlink in the way of a file is replaced, not written through.
//! Entries whose names contain `..` are refused.
//!
//! A container that is not running gets its root mounted for the copy (`archive_root`); only
//! one being removed is refused (409).
//! Tars stream through a bounded channel both ways: nothing is buffered whole.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use serde::Serialize;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::engine::Engine;
use crate::error::EngineError;

/// How many tar chunks may wait in either direction.
const CHANNEL_DEPTH: usize = 8;
/// Size of the chunks a tar is sent in.
const CHUNK: usize = 64 * 1024;

/// Docker's `PathStat` (the `X-Docker-Container-Path-Stat` header, base64 JSON).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits (directory = 1<<31, symlink = 1<<27, ...) and the permissions.
    pub mode: u32,
    pub mtime: DateTime<Utc>,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// A tar produced by [`Engine::archive_get`], in chunks; ends with `Err` if the walk failed.
pub type TarStream = mpsc::Receiver<io::Result<Bytes>>;

impl Engine {
    /// Stats `path` inside a container (`HEAD /containers/{id}/archive`).
    pub async fn archive_stat(
        self: &Arc<Self>,
        reference: &str,
        path: &str,
    ) -> Result<PathStat, EngineError> {
        let path = check_path(path)?.to_owned();
        self.in_container_root(
            reference,
            Box::new(move |root| {
                let (parent, name) = resolve_parent(&root, &path)?;
                stat_entry(parent.as_fd(), &name, &path)
            }),
        )?
        .await
        .unwrap_or_else(|_| Err(lost()))
    }

    /// Stats `path` and starts streaming it as a tar (`GET /containers/{id}/archive`).
    pub async fn archive_get(
        self: &Arc<Self>,
        reference: &str,
        path: &str,
    ) -> Result<(PathStat, TarStream), EngineError> {
        let path = check_path(path)?.to_owned();
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let (stat_tx, stat_rx) = oneshot::channel();
        // The whole walk runs in the root (for a stopped container, while its mounts exist);
        // the stat is sent as soon as it is known, the tar follows through `tx`.
        let done = self.in_container_root(
            reference,
            Box::new(move |root| {
                let (parent, name) = resolve_parent(&root, &path)?;
                let stat = stat_entry(parent.as_fd(), &name, &path)?;
                let top = OsString::from(&stat.name);
                if stat_tx.send(stat).is_err() {
                    return Ok(()); // the request is gone
                }
                let sink = ChunkSink {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(CHUNK),
                };
                let mut builder = tar::Builder::new(sink);
                builder.follow_symlinks(false);
                let walked = append(&mut builder, parent.as_fd(), &name, Path::new(&top))
                    .and_then(|()| builder.into_inner())
                    .and_then(|mut sink| sink.flush());
                if let Err(e) = walked {
                    // The client may already be gone; nothing else to tell.
                    let _ = tx.blocking_send(Err(e));
                }
                Ok(())
            }),
        )?;
        match stat_rx.await {
            Ok(stat) => Ok((stat, rx)),
            // No stat: the op failed before it (or never ran); its result says why.
            Err(_) => match done.await {
                Ok(Err(e)) => Err(e),
                _ => Err(lost()),
            },
        }
    }

    /// Extracts the tar read from `body` into the directory `path` of a container
    /// (`PUT /containers/{id}/archive`). With `no_overwrite_dir_non_dir`, an entry may not
    /// replace a directory with a non-directory or the reverse.
    pub async fn archive_put(
        self: &Arc<Self>,
        reference: &str,
        path: &str,
        no_overwrite_dir_non_dir: bool,
        body: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<(), EngineError> {
        let path = check_path(path)?.to_owned();
        self.in_container_root(
            reference,
            Box::new(move |root| {
                let dir = open_in_root(
                    &root,
                    &path,
                    OFlag::O_PATH | OFlag::O_DIRECTORY,
                    libc::RESOLVE_IN_ROOT,
                )
                .map_err(|e| match e {
                    nix::Error::ENOENT => EngineError::NotFound(format!(
                        "Could not find the file {path} in container"
                    )),
                    nix::Error::ENOTDIR => {
                        EngineError::Invalid(format!("extraction point is not a directory: {path}"))
                    }
                    e => errno_error(format!("open {path} in container"), e),
                })?;
                let mut archive = tar::Archive::new(ChannelReader {
                    rx: body,
                    current: Bytes::new(),
                });
                let entries = archive
                    .entries()
                    .map_err(EngineError::io("read the tar archive"))?;
                for entry in entries {
                    let entry = entry.map_err(EngineError::io("read the tar archive"))?;
                    extract(&root, &dir, &path, entry, no_overwrite_dir_non_dir)?;
                }
                Ok(())
            }),
        )?
        .await
        .unwrap_or_else(|_| Err(lost()))
    }
}

/// The copy's thread ended without a result (it panicked).
fn lost() -> EngineError {
    EngineError::Io {
        context: "copy task".into(),
        source: io::Error::other("the copy ended without a result"),
    }
}

fn check_path(path: &str) -> Result<&str, EngineError> {
    if path.is_empty() {
        return Err(EngineError::Invalid("path must not be empty".into()));
    }
    if path.contains('\0') {
        return Err(EngineError::Invalid("path must not contain NUL".into()));
    }
    Ok(path)
}

pub(crate) fn errno_error(context: String, e: nix::Error) -> EngineError {
    EngineError::Io {
        context,
        source: io::Error::from_raw_os_error(e as i32),
    }
}

/// `openat2(root, path, flags, resolve)` with `O_CLOEXEC`.
pub(crate) fn open_in_root(
    root: &OwnedFd,
    path: impl AsRef<OsStr>,
    flags: OFlag,
    resolve: u64,
) -> Result<OwnedFd, nix::Error> {
    let path = CString::new(path.as_ref().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: `open_how` is plain data; all-zero is its "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | OFlag::O_CLOEXEC).bits() as u64;
    how.resolve = resolve;
    // SAFETY: a valid dirfd, a NUL-terminated path and a properly sized `open_how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Splits `path` into its parent directory (opened inside the root) and its last name, which is
/// not resolved, so a symlink is reported (and archived) as itself. `/` and paths ending in `.`
/// or `..` name the directory itself (`.` in the resolved directory).
fn resolve_parent(root: &OwnedFd, path: &str) -> Result<(OwnedFd, OsString), EngineError> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        _ if trimmed.is_empty() => ("/", "."),
        Some((_, last)) if last == "." || last == ".." => (trimmed, "."),
        None if trimmed == "." || trimmed == ".." => (trimmed, "."),
        Some((parent, last)) => (if parent.is_empty() { "/" } else { parent }, last),
        None => ("/", trimmed),
    };
    let dir = open_in_root(
        root,
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        libc::RESOLVE_IN_ROOT,
    )
    .map_err(|e| match e {
        nix::Error::ENOENT | nix::Error::ENOTDIR => {
            EngineError::NotFound(format!("Could not find the file {path} in container"))
        }
        e => errno_error(format!("open {parent} in container"), e),
    })?;
    Ok((dir, OsString::from(name)))
}

fn fstatat(dir: BorrowedFd<'_>, name: &OsStr) -> Result<FileStat, nix::Error> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn stat_entry(dir: BorrowedFd<'_>, name: &OsStr, path: &str) -> Result<PathStat, EngineError> {
    let st = fstatat(dir, name).map_err(|e| match e {
        nix::Error::ENOENT | nix::Error::ENOTDIR => {
            EngineError::NotFound(format!("Could not find the file {path} in container"))
        }
        e => errno_error(format!("stat {path} in container"), e),
    })?;
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    let link_target = if kind == SFlag::S_IFLNK {
        nix::fcntl::readlinkat(dir, name)
            .map(|t| t.to_string_lossy().into_owned())
            .map_err(|e| errno_error(format!("readlink {path} in container"), e))?
    } else {
        String::new()
    };
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let name = if base.is_empty() || base == "." || base == ".." {
        // The directory itself: its own name (`/` for the root).
        let p = Path::new(path.trim_end_matches("/."));
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".to_owned())
    } else {
        base.to_owned()
    };
    Ok(PathStat {
        name,
        size: st.st_size,
        mode: go_mode(st.st_mode),
        mtime: DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32).unwrap_or_default(),
        link_target,
    })
}

/// A Unix `st_mode` as Go's `os.FileMode` (what Docker clients decode).
pub fn go_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        mode |= 1 << 23;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= 1 << 22;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= 1 << 20;
    }
    mode
}

fn header_for(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Appends `name` (in `dir`) to the tar as `tar_path`, recursively, never following a symlink.
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    tar_path: &Path,
) -> io::Result<()> {
    let st = fstatat(dir, name)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            let mut h = header_for(&st, tar::EntryType::Directory);
            builder.append_data(&mut h, tar_path, io::empty())?;
            let sub = nix::dir::Dir::openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut names = Vec::new();
            {
                let mut listing = nix::dir::Dir::openat(
                    sub.as_fd(),
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                for e in listing.iter() {
                    let e = e?;
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(OsStr::from_bytes(n).to_owned());
                    }
                }
            }
            names.sort();
            for n in names {
                append(builder, sub.as_fd(), &n, &tar_path.join(&n))?;
            }
            Ok(())
        }
        libc::S_IFREG => {
            let fd = nix::fcntl::openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let file = File::from(fd);
            let st = nix::sys::stat::fstat(&file)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(io::Error::other(format!(
                    "{} changed type during the copy",
                    tar_path.display()
                )));
            }
            let mut h = header_for(&st, tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            // A file that grows during the copy is cut at the size in its header.
            builder.append_data(&mut h, tar_path, file.take(st.st_size as u64))
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, name)?;
            let mut h = header_for(&st, tar::EntryType::Symlink);
            builder.append_link(&mut h, tar_path, Path::new(&target))
        }
        libc::S_IFIFO => {
            let mut h = header_for(&st, tar::EntryType::Fifo);
            builder.append_data(&mut h, tar_path, io::empty())
        }
        // Devices and sockets are left out, as they cannot be recreated from a copy.
        _ => Ok(()),
    }
}

/// Creates one tar entry below `dest` (the directory `dest_path`, already resolved in `root`).
fn extract<R: Read>(
    root: &OwnedFd,
    dest: &OwnedFd,
    dest_path: &str,
    mut entry: tar::Entry<'_, R>,
    no_overwrite_dir_non_dir: bool,
) -> Result<(), EngineError> {
    let raw = entry
        .path()
        .map_err(EngineError::io("read a tar entry name"))?
        .into_owned();
    let mut rel = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(EngineError::Invalid(format!(
                    "tar entry {} leaves the extraction point",
                    raw.display()
                )));
            }
        }
    }
    let Some(name) = rel.file_name().map(OsStr::to_owned) else {
        return Ok(()); // the extraction point itself
    };
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => {
            let full = Path::new(dest_path).join(p);
            open_in_root(
                root,
                &full,
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                libc::RESOLVE_IN_ROOT,
            )
            .map_err(|e| errno_error(format!("open {} in container", full.display()), e))?
        }
        _ => dest
            .try_clone()
            .map_err(EngineError::io("dup a directory fd"))?,
    };
    let shown = Path::new(dest_path).join(&rel).display().to_string();
    let header = entry.header();
    let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
    let kind = header.entry_type();
    let existing = fstatat(parent.as_fd(), &name).ok();
    let existing_dir = existing.map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    let ctx = |what: &str| format!("{what} {shown} in container");
    match kind {
        tar::EntryType::Directory => {
            match existing_dir {
                Some(true) => {}
                Some(false) if no_overwrite_dir_non_dir => {
                    return Err(EngineError::Invalid(format!(
                        "cannot overwrite non-directory {shown} with directory"
                    )));
                }
                Some(false) => {
                    nix::unistd::unlinkat(
                        parent.as_fd(),
                        name.as_os_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    )
                    .map_err(|e| errno_error(ctx("remove"), e))?;
                    mkdir(&parent, &name, mode, &ctx)?;
                }
                None => mkdir(&parent, &name, mode, &ctx)?,
            }
            Ok(())
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Symlink => {
            match existing_dir {
                Some(true) if no_overwrite_dir_non_dir => {
                    return Err(EngineError::Invalid(format!(
                        "cannot overwrite directory {shown} with non-directory"
                    )));
                }
                Some(true) => {
                    nix::unistd::unlinkat(
                        parent.as_fd(),
                        name.as_os_str(),
                        nix::unistd::UnlinkatFlags::RemoveDir,
                    )
                    .map_err(|e| errno_error(ctx("replace directory"), e))?;
                }
                // A file, or a symlink that must be replaced rather than written through.
                Some(false) => {
                    nix::unistd::unlinkat(
                        parent.as_fd(),
                        name.as_os_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    )
                    .map_err(|e| errno_error(ctx("replace"), e))?;
                }
                None => {}
            }
            if kind == tar::EntryType::Symlink {
                let target = entry
                    .link_name()
                    .map_err(EngineError::io("read a tar link name"))?
                    .ok_or_else(|| EngineError::Invalid(format!("symlink {shown} has no target")))?
                    .into_owned();
                return nix::unistd::symlinkat(
                    target.as_os_str(),
                    parent.as_fd(),
                    name.as_os_str(),
                )
                .map_err(|e| errno_error(ctx("create symlink"), e));
            }
            let fd = nix::fcntl::openat(
                parent.as_fd(),
                name.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                mode,
            )
            .map_err(|e| errno_error(ctx("create"), e))?;
            let mut file = File::from(fd);
            io::copy(&mut entry, &mut file).map_err(EngineError::io(ctx("write")))?;
            nix::sys::stat::fchmod(&file, mode).map_err(|e| errno_error(ctx("chmod"), e))?;
            Ok(())
        }
        // Global/extended headers carry metadata for the entries the tar crate already applied.
        tar::EntryType::XGlobalHeader
        | tar::EntryType::XHeader
        | tar::EntryType::GNULongName
        | tar::EntryType::GNULongLink => Ok(()),
        other => Err(EngineError::Invalid(format!(
            "tar entry {shown}: unsupported type {other:?} (files, directories and symlinks only)"
        ))),
    }
}

fn mkdir(
    parent: &OwnedFd,
    name: &OsStr,
    mode: Mode,
    ctx: &dyn Fn(&str) -> String,
) -> Result<(), EngineError> {
    nix::sys::stat::mkdirat(parent.as_fd(), name, mode).map_err(|e| errno_error(ctx("mkdir"), e))
}

/// Writes a tar into the channel in chunks of [`CHUNK`] bytes; fails once the reader is gone.
struct ChunkSink {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Reads the request body from a channel fed by the API layer (blocking; in a blocking task).
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A bounded channel for [`Engine::archive_put`]'s body.
pub fn body_channel() -> (
    mpsc::Sender<io::Result<Bytes>>,
    mpsc::Receiver<io::Result<Bytes>>,
) {
    mpsc::channel(CHANNEL_DEPTH)
}

#[cfg(test)]
mod tests {
    use super::go_mode;

    #[test]
    fn go_file_modes() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(go_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(
            go_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
    }
}
