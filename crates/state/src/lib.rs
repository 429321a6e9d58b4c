//! Durable on-disk state shared by every Berth subsystem: the one write helper (temp file in the same
//! directory, write, fsync, rename, fsync the directory), JSON load/store on top of it, and the
//! validation of ids and names before they become path components; the one directory-of-records type
//! ([`records::RecordDir`]) with its policy for unreadable records, the one rollback primitive
//! ([`rollback::Rollback`]) and the one poison-tolerant lock ([`sync::lock`]).

#![deny(clippy::undocumented_unsafe_blocks)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub mod check;
pub mod keyed;
pub mod records;
pub mod rollback;
pub mod sync;

pub use records::{LoadWarning, Loaded, RecordDir};
pub use sync::lock;

pub use keyed::{KeyedGuard, KeyedLocks};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The class of a failure, shared by every layer's error type so the API maps each class to one
/// HTTP status in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist (404).
    NotFound,
    /// The object exists or is in a state that forbids the operation (409).
    Conflict,
    /// The request is malformed or names an invalid value (400).
    InvalidArgument,
    /// Nothing to do: already in the requested state (304).
    NotModified,
    /// Not ready yet or a dependency is down (503).
    Unavailable,
    /// The caller may not do this (403).
    Forbidden,
    /// Anything else (500).
    Internal,
}

/// Errors of the state layer. Each variant names the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("decoding {path}: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("encoding state for {path}: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl StateError {
    /// Every state failure is an internal error of the engine.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

/// Longest name accepted for containers, volumes, networks, plugins and image tags.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid {kind} name {name:?}: must not be empty")]
    Empty { kind: &'static str, name: String },
    #[error("invalid {kind} name {name:?}: longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str, name: String },
    #[error(
        "invalid {kind} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (no path separators or \"..\")"
    )]
    BadChars { kind: &'static str, name: String },
}

/// Validates a user-chosen object name (container, volume, network, plugin) the way Docker does:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most [`MAX_NAME_LEN`] characters. Such a name is safe to use
/// as a single path component.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty {
            kind,
            name: name.to_owned(),
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            name: name.to_owned(),
        });
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.contains("..") {
        return Err(NameError::BadChars {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Runs blocking file-system work that waits on the disk (an fsync waits for a journal commit)
/// without holding a tokio worker. On a multi-thread runtime (a worker or its `block_on`) it runs
/// under [`tokio::task::block_in_place`]: the worker's other tasks move to a fresh thread while
/// this one waits. The daemon has one worker per CPU, so an fsync on a worker used to stop a
/// whole CPU's worth of tasks, and at most one fsync per CPU was in flight: 32 concurrent
/// `run --rm` queued their ~350 fsyncs two by two. Off the workers they overlap, and the
/// journal commits concurrent fsyncs together. On a current-thread runtime (unit tests), where
/// `block_in_place` is not allowed, and outside any runtime, `f` just runs.
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => f(),
        _ => tokio::task::block_in_place(f),
    }
}

/// Writes `bytes` to `path` durably: a temporary file in the same directory is written and
/// fsynced, renamed over `path`, and the directory is fsynced, so a crash leaves either the old
/// or the new content, never a torn file. Creates the parent directory if needed. The fsyncs
/// run [`off_worker`].
pub fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    off_worker(|| write_durable_here(path, bytes))
}

fn write_durable_here(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per call: concurrent writers of the same file must not share a temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp{}.{seq}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Serializes `value` as pretty JSON and writes it with [`write_durable`].
pub fn store_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Encode {
        path: path.to_owned(),
        source,
    })?;
    write_durable(path, &bytes)
}

/// Reads and decodes a JSON file written by [`store_json`]. `Ok(None)` when it does not exist.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Decode {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes a directory tree and fsyncs its parent; a missing directory is not an error.
pub fn remove_dir_durable(path: &Path) -> Result<(), StateError> {
    remove_durable(path, |p| fs::remove_dir_all(p))
}

/// Removes one file and fsyncs its directory; a missing file is not an error.
pub fn remove_file_durable(path: &Path) -> Result<(), StateError> {
    remove_durable(path, |p| fs::remove_file(p))
}

/// Removes `path` with `remove`, then fsyncs its parent so the removal survives a crash
/// ([`off_worker`]).
fn remove_durable(path: &Path, remove: fn(&Path) -> io::Result<()>) -> Result<(), StateError> {
    off_worker(|| remove_durable_here(path, remove))
}

fn remove_durable_here(path: &Path, remove: fn(&Path) -> io::Result<()>) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    match remove(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    if let Some(parent) = path.parent() {
        File::open(parent).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

/// A fresh random 64-hex-digit object id (Docker's id shape).
pub fn new_id() -> String {
    let mut buf = [0u8; 32];
    // getrandom(2) via libc: no extra dependency for 32 bytes.
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `s` is a 64-character lower-case hex id.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("volume", "nice-vol_1.x").is_ok());
        assert!(matches!(
            validate_name("volume", ""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            validate_name("volume", "a/b"),
            Err(NameError::BadChars { .. })
        ));
        assert!(matches!(
            validate_name("volume", "a..b"),
            Err(NameError::BadChars { .. })
        ));
        assert!(matches!(
            validate_name("volume", ".hidden"),
            Err(NameError::BadChars { .. })
        ));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            validate_name("volume", &long),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn durable_write_round_trips_and_replaces() {
        let dir = tempfile_dir();
        let path = dir.join("sub/state.json");
        store_json(&path, &vec![1, 2, 3]).unwrap();
        store_json(&path, &vec![4]).unwrap();
        let back: Option<Vec<i32>> = load_json(&path).unwrap();
        assert_eq!(back, Some(vec![4]));
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
        assert_eq!(
            load_json::<Vec<i32>>(&dir.join("missing.json")).unwrap(),
            None
        );
        remove_dir_durable(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn concurrent_writers_of_one_file_all_succeed() {
        let dir = tempfile_dir();
        let path = dir.join("shared.json");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        store_json(&path, &(i, j)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(load_json::<(i32, i32)>(&path).unwrap().is_some());
        remove_dir_durable(&dir).unwrap();
    }

    #[test]
    fn ids_are_64_hex() {
        let a = new_id();
        assert!(is_full_id(&a));
        assert_ne!(a, new_id());
        assert!(!is_full_id("abc"));
    }

    fn tempfile_dir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("berth-state-test-{}", new_id()));
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// A task waiting in `off_worker` does not hold the worker: on a runtime with one worker,
    /// another task still runs (here: the one that releases the wait). Called directly on the
    /// worker, the wait would time out.
    #[test]
    fn off_worker_frees_the_worker() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let (tx, rx) = std::sync::mpsc::channel::<u32>();
            let waiter = tokio::spawn(async move {
                off_worker(|| rx.recv_timeout(std::time::Duration::from_secs(10)))
            });
            // Let the waiter take the only worker first.
            tokio::task::yield_now().await;
            let sender = tokio::spawn(async move { tx.send(7) });
            let got = waiter.await.unwrap();
            sender.await.unwrap().unwrap();
            got
        });
        assert_eq!(got, Ok(7));
    }

    /// On a current-thread runtime (where `block_in_place` panics) and outside any runtime the
    /// work just runs, and durable writes work there.
    #[test]
    fn off_worker_runs_anywhere() {
        assert_eq!(off_worker(|| 1), 1);
        let dir = tempfile_dir();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            write_durable(&dir.join("f"), b"x").unwrap();
            assert_eq!(off_worker(|| 2), 2);
        });
        assert_eq!(fs::read(dir.join("f")).unwrap(), b"x");
        fs::remove_dir_all(&dir).unwrap();
    }
}
