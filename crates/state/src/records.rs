//! One directory of records: `<dir>/<name>/<record file>` holds one object's JSON record (a
//! volume's `volume.json`, a network's `network.json`, …), beside whatever other data the object
//! keeps in its directory (a local volume's `_data`). Every store that keeps one directory per
//! object goes through [`RecordDir`], so they all share one durability rule and one policy for
//! records that cannot be read.
//!
//! Durability: [`RecordDir::create_dir`] creates the object's directory and fsyncs `<dir>`;
//! [`RecordDir::store`] writes through [`crate::store_json`] (temporary file, fsync, rename,
//! fsync); [`RecordDir::remove`] goes through [`crate::remove_dir_durable`].
//!
//! The policy for unreadable records, applied by [`RecordDir::load_all`] (and by
//! [`load_or_quarantine`] for a store kept in one file, like the plugin load order):
//!
//! - a record that cannot be read or decoded is **quarantined**: the object's whole directory is
//!   moved to `<parent of dir>/quarantine/<kind>-<name>-<unix seconds>.<nanoseconds>` (the state
//!   root's `quarantine/`, so nothing is deleted and an operator can inspect or restore it), the
//!   reason is logged and returned as a [`LoadWarning`], and loading goes on with the others;
//! - a directory without its record file that holds other data (any file other than a temporary
//!   file of [`crate::write_durable`]) is **kept** untouched and reported as a [`LoadWarning`]:
//!   nothing a user may have written is ever deleted by a load;
//! - a directory without its record file that holds no file at all (an empty tree, or only
//!   temporary files) is a create that never completed: it is removed durably;
//! - temporary files a crash left inside record directories (`.<file>.tmp<pid>.<seq>`) are swept;
//! - a stray file where only object directories belong is quarantined; every quarantined record
//!   gets a `<target>.reason` file beside it.
//!
//! Volumes, networks, containers and images use it. For another kind of object: keep the object
//! in `RecordDir<T>` under its id or name, call [`RecordDir::load_all`] at open and log or surface
//! the returned warnings, [`RecordDir::create_dir`] then [`RecordDir::store`] (or
//! [`RecordDir::create`]) on create, [`RecordDir::store`] on change, [`RecordDir::remove`] on
//! remove. Objects with a second file beside the record (a container's `state.json` next to its
//! `config.json`) keep it in [`RecordDir::dir`] and read it after the record loaded.

use std::fs::{self, File};
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StateError;

/// Name of the directory, beside the record directories, that receives quarantined records.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Suffix of the file, beside a quarantined record, that holds the reason it was moved.
pub const REASON_SUFFIX: &str = ".reason";

/// Something a load could not take as it was, and what it did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadWarning {
    /// An unreadable or undecodable record, moved aside (with its directory).
    Quarantined {
        /// The object's kind (`volume`, `network`, …).
        kind: &'static str,
        /// The directory (or file) name of the object.
        name: String,
        /// Where it was moved.
        moved_to: PathBuf,
        /// Why it could not be loaded.
        reason: String,
    },
    /// An unreadable record that could not even be moved aside: left where it is, not loaded.
    Unmovable {
        /// The object's kind.
        kind: &'static str,
        /// The directory (or file) name of the object.
        name: String,
        /// Why it could not be loaded, and why it could not be moved.
        reason: String,
    },
    /// A directory without its record file that holds data: kept as it is, not loaded.
    Orphan {
        /// The object's kind.
        kind: &'static str,
        /// The directory name.
        name: String,
        /// The directory.
        path: PathBuf,
    },
}

impl std::fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadWarning::Quarantined {
                kind,
                name,
                moved_to,
                reason,
            } => write!(
                f,
                "{kind} {name}: unreadable record ({reason}); moved to {}",
                moved_to.display()
            ),
            LoadWarning::Unmovable { kind, name, reason } => {
                write!(
                    f,
                    "{kind} {name}: unreadable record, left in place: {reason}"
                )
            }
            LoadWarning::Orphan { kind, name, path } => write!(
                f,
                "{kind} {name}: {} has data but no record; kept, not loaded",
                path.display()
            ),
        }
    }
}

/// What [`RecordDir::load_all`] found: the records (by directory name, sorted) and the warnings.
#[derive(Debug)]
pub struct Loaded<T> {
    /// `(directory name, record)`, sorted by name.
    pub records: Vec<(String, T)>,
    /// What could not be loaded and what was done with it (already logged).
    pub warnings: Vec<LoadWarning>,
}

/// A directory of per-object record directories (see the module docs for the policy).
#[derive(Debug, Clone)]
pub struct RecordDir<T> {
    dir: PathBuf,
    file: &'static str,
    kind: &'static str,
    _record: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> RecordDir<T> {
    /// Opens (creating it if needed) `dir`, whose subdirectories each hold a record named `file`
    /// for an object of `kind` (used in warnings and quarantine names).
    pub fn open(
        dir: impl Into<PathBuf>,
        file: &'static str,
        kind: &'static str,
    ) -> Result<Self, StateError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StateError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(RecordDir {
            dir,
            file,
            kind,
            _record: PhantomData,
        })
    }

    /// The directory holding the record directories.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The directory of object `name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The record file of object `name`.
    pub fn record_path(&self, name: &str) -> PathBuf {
        self.dir(name).join(self.file)
    }

    /// Where [`RecordDir::load_all`] moves unreadable records: `<parent of dir>/quarantine`.
    pub fn quarantine_dir(&self) -> PathBuf {
        quarantine_dir_for(&self.dir)
    }

    /// Creates the directory of object `name` (an existing one is fine) and fsyncs the parent, so
    /// the directory survives a crash before its record is stored. Returns the directory.
    pub fn create_dir(&self, name: &str) -> Result<PathBuf, StateError> {
        let path = self.dir(name);
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        crate::off_worker(|| {
            fs::create_dir_all(&path)?;
            File::open(&self.dir).and_then(|d| d.sync_all())
        })
        .map_err(err)?;
        Ok(path)
    }

    /// Creates the directory of object `name` and stores its record; if storing fails, the
    /// directory is removed again. Returns the directory.
    pub fn create(&self, name: &str, record: &T) -> Result<PathBuf, StateError> {
        let path = self.create_dir(name)?;
        if let Err(e) = self.store(name, record) {
            let _ = crate::remove_dir_durable(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Writes the record of object `name` durably (its directory is created if needed).
    pub fn store(&self, name: &str, record: &T) -> Result<(), StateError> {
        crate::store_json(&self.record_path(name), record)
    }

    /// Reads the record of object `name`; `Ok(None)` when there is none. An unreadable record is
    /// an error here (no quarantine: that is [`RecordDir::load_all`]'s job at open).
    pub fn load(&self, name: &str) -> Result<Option<T>, StateError> {
        crate::load_json(&self.record_path(name))
    }

    /// Removes object `name`'s directory and everything in it, durably. Missing is fine.
    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        crate::remove_dir_durable(&self.dir(name))
    }

    /// Moves object `name` (its directory, or a stray file of that name) to the quarantine
    /// directory, with a `<target>.reason` file saying why, and returns the warning (not logged:
    /// the caller logs it). For a second file of an object that cannot be decoded after its
    /// record loaded (a container's `state.json`).
    pub fn quarantine(&self, name: &str, reason: &StateError) -> LoadWarning {
        quarantine(
            &self.dir(name),
            &self.quarantine_dir(),
            self.kind,
            name,
            reason,
        )
    }

    /// Loads every record, applying the policy of the module docs: unreadable records are
    /// quarantined, directories without a record but with data are kept, empty leftovers of an
    /// incomplete create are removed, temporary files are swept. Only a failure to list `dir`
    /// itself is an error; every warning is logged before it is returned.
    pub fn load_all(&self) -> Result<Loaded<T>, StateError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StateError::Read {
            path: self.dir.clone(),
            source,
        })?;
        let mut loaded = Loaded {
            records: Vec::new(),
            warnings: Vec::new(),
        };
        let mut names = Vec::new();
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_temp_file(&name) && !is_dir {
                // A temporary file of a durable write straight in `dir`: swept.
                if let Err(err) = fs::remove_file(e.path()) {
                    tracing::warn!(path = %e.path().display(), "removing a temporary file: {err}");
                }
            } else if name.starts_with('.') {
                // Hidden entries belong to the store (work directories it sweeps itself).
            } else if is_dir {
                names.push(name);
            } else {
                // A stray file where only object directories belong: moved aside, reported.
                let reason = StateError::Read {
                    path: e.path(),
                    source: io::Error::other("not a record directory"),
                };
                loaded.warnings.push(self.quarantine(&name, &reason));
            }
        }
        names.sort();
        for name in names {
            let path = self.dir(&name);
            sweep_temp_files(&path);
            match self.load(&name) {
                Ok(Some(record)) => loaded.records.push((name, record)),
                Ok(None) if holds_files(&path) => loaded.warnings.push(LoadWarning::Orphan {
                    kind: self.kind,
                    name,
                    path,
                }),
                Ok(None) => {
                    // A create that never completed: nothing in it but empty directories.
                    if let Err(e) = crate::remove_dir_durable(&path) {
                        tracing::warn!(kind = self.kind, %name, "removing an empty record dir: {e}");
                    }
                }
                Err(e) => loaded.warnings.push(self.quarantine(&name, &e)),
            }
        }
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        Ok(loaded)
    }
}

/// Loads a store kept in one JSON file (the plugin load order) with the same policy: a file that
/// cannot be read or decoded is moved to `<parent of path>/quarantine/<kind>-<file name>-<time>`,
/// logged, and reported; the caller starts from `None` (as if it were missing). The temporary
/// files a crash left of it (`.<file name>.tmp<pid>.<seq>`) are removed first: call it at boot,
/// before anything writes the file.
pub fn load_or_quarantine<T: DeserializeOwned>(
    path: &Path,
    kind: &'static str,
) -> (Option<T>, Option<LoadWarning>) {
    sweep_temp_files_of(path);
    match crate::load_json(path) {
        Ok(v) => (v, None),
        Err(e) => {
            let parent = path.parent().unwrap_or_else(|| Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let w = quarantine(path, &parent.join(QUARANTINE_DIR), kind, &name, &e);
            tracing::warn!("{w}");
            (None, Some(w))
        }
    }
}

fn quarantine_dir_for(dir: &Path) -> PathBuf {
    dir.parent()
        .unwrap_or_else(|| Path::new("."))
        .join(QUARANTINE_DIR)
}

/// Moves `path` (a record directory or file) under `qdir` and says so.
fn quarantine(
    path: &Path,
    qdir: &Path,
    kind: &'static str,
    name: &str,
    reason: &StateError,
) -> LoadWarning {
    let reason = reason.to_string();
    let moved = (|| -> io::Result<PathBuf> {
        fs::create_dir_all(qdir)?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let base = format!(
            "{kind}-{name}-{}.{:09}",
            stamp.as_secs(),
            stamp.subsec_nanos()
        );
        let mut target = qdir.join(&base);
        let mut n = 1;
        while target.exists() {
            target = qdir.join(format!("{base}-{n}"));
            n += 1;
        }
        fs::rename(path, &target)?;
        // The reason beside it, for `berth system check` and the operator (best effort: the
        // move is what matters, and a full disk must not stop it).
        let mut reason_path = target.clone().into_os_string();
        reason_path.push(REASON_SUFFIX);
        let _ = crate::write_durable(Path::new(&reason_path), format!("{reason}\n").as_bytes());
        File::open(qdir)?.sync_all()?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(target)
    })();
    match moved {
        Ok(moved_to) => LoadWarning::Quarantined {
            kind,
            name: name.to_owned(),
            moved_to,
            reason,
        },
        Err(e) => LoadWarning::Unmovable {
            kind,
            name: name.to_owned(),
            reason: format!("{reason}; moving it to {}: {e}", qdir.display()),
        },
    }
}

/// Whether `name` is a temporary file of [`crate::write_durable`] (`.<file>.tmp<pid>.<seq>`).
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

/// Removes the temporary files a crash left directly in `dir`.
fn sweep_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file())
            && e.file_name().to_str().is_some_and(is_temp_file)
            && let Err(err) = fs::remove_file(e.path())
        {
            tracing::warn!(path = %e.path().display(), "removing a temporary file: {err}");
        }
    }
}

/// Removes the temporary files of `path` (`.<file name>.tmp…` beside it) a crash left.
fn sweep_temp_files_of(path: &Path) {
    let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp", file.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file())
            && e.file_name().to_string_lossy().starts_with(&prefix)
            && let Err(err) = fs::remove_file(e.path())
        {
            tracing::warn!(path = %e.path().display(), "removing a temporary file: {err}");
        }
    }
}

/// Whether `dir` holds any entry other than empty directories and temporary files. Unreadable
/// entries count as data (when in doubt, keep).
fn holds_files(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return true;
    };
    entries.into_iter().any(|e| match e {
        Err(_) => true,
        Ok(e) => match e.file_type() {
            Ok(t) if t.is_dir() => holds_files(&e.path()),
            Ok(_) => !e.file_name().to_str().is_some_and(is_temp_file),
            Err(_) => true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        name: String,
        n: u32,
    }

    fn rec(name: &str, n: u32) -> Rec {
        Rec {
            name: name.into(),
            n,
        }
    }

    fn open(root: &Path) -> RecordDir<Rec> {
        RecordDir::open(root.join("things"), "thing.json", "thing").unwrap()
    }

    /// A crash during a write of a one-file store (`plugins.json`) leaves its temporary file in
    /// the state root, where no record directory's sweep looks: loading the store removes it, and
    /// only it.
    #[test]
    fn loading_a_one_file_store_sweeps_its_temporary_files() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("order.json");
        crate::store_json(&path, &vec![rec("a", 1)]).unwrap();
        let tmp = root.path().join(".order.json.tmp4242.7");
        fs::write(&tmp, b"[{\"name\": \"a\", \"n\"").unwrap();
        let other = root.path().join(".other.json.tmp4242.8");
        fs::write(&other, b"{").unwrap();
        let (loaded, warning) = load_or_quarantine::<Vec<Rec>>(&path, "order");
        assert_eq!(loaded, Some(vec![rec("a", 1)]));
        assert!(warning.is_none());
        assert!(!tmp.exists(), "the store's temporary file is left");
        assert!(other.exists(), "another file's temporary file was removed");
    }

    #[test]
    fn round_trip_create_store_load_remove() {
        let root = tempfile::tempdir().unwrap();
        let dir = open(root.path());
        dir.create("a", &rec("a", 1)).unwrap();
        dir.create("b", &rec("b", 2)).unwrap();
        dir.store("a", &rec("a", 3)).unwrap();
        assert_eq!(dir.load("a").unwrap(), Some(rec("a", 3)));
        assert_eq!(dir.load("nosuch").unwrap(), None);
        let loaded = open(root.path()).load_all().unwrap();
        assert_eq!(
            loaded.records,
            vec![("a".to_owned(), rec("a", 3)), ("b".to_owned(), rec("b", 2))]
        );
        assert!(loaded.warnings.is_empty());
        dir.remove("a").unwrap();
        dir.remove("a").unwrap();
        assert!(!dir.dir("a").exists());
        let names: Vec<_> = dir
            .load_all()
            .unwrap()
            .records
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn corrupt_record_is_quarantined_and_the_rest_loaded() {
        let root = tempfile::tempdir().unwrap();
        let dir = open(root.path());
        dir.create("good", &rec("good", 1)).unwrap();
        dir.create("bad", &rec("bad", 2)).unwrap();
        fs::write(dir.record_path("bad"), b"{ not json").unwrap();
        fs::write(dir.dir("bad").join("payload"), b"user data").unwrap();
        let loaded = dir.load_all().unwrap();
        assert_eq!(loaded.records, vec![("good".to_owned(), rec("good", 1))]);
        let [
            LoadWarning::Quarantined {
                kind,
                name,
                moved_to,
                reason,
            },
        ] = loaded.warnings.as_slice()
        else {
            panic!("expected one quarantine, got {:?}", loaded.warnings);
        };
        assert_eq!((*kind, name.as_str()), ("thing", "bad"));
        assert!(reason.contains("decoding"), "{reason}");
        assert!(moved_to.starts_with(root.path().join(QUARANTINE_DIR)));
        assert!(
            moved_to
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("thing-bad-")
        );
        assert_eq!(fs::read(moved_to.join("payload")).unwrap(), b"user data");
        assert!(!dir.dir("bad").exists());
        // Loading again finds nothing left to complain about.
        assert!(dir.load_all().unwrap().warnings.is_empty());
    }

    #[test]
    fn missing_record_with_data_is_kept_and_an_empty_leftover_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = open(root.path());
        let kept = dir.create_dir("kept").unwrap();
        fs::create_dir_all(kept.join("_data/sub")).unwrap();
        fs::write(kept.join("_data/sub/file"), b"precious").unwrap();
        let empty = dir.create_dir("empty").unwrap();
        fs::create_dir_all(empty.join("_data")).unwrap();
        let loaded = dir.load_all().unwrap();
        assert!(loaded.records.is_empty());
        assert_eq!(
            loaded.warnings,
            vec![LoadWarning::Orphan {
                kind: "thing",
                name: "kept".into(),
                path: kept.clone(),
            }]
        );
        assert_eq!(fs::read(kept.join("_data/sub/file")).unwrap(), b"precious");
        assert!(!empty.exists(), "an empty leftover of a create is removed");
    }

    #[test]
    fn a_stray_file_is_quarantined_and_a_stray_temp_file_swept() {
        let root = tempfile::tempdir().unwrap();
        let dir = open(root.path());
        dir.create("a", &rec("a", 1)).unwrap();
        fs::write(dir.path().join("stray"), b"junk").unwrap();
        fs::write(dir.path().join(".x.tmp1.1"), b"junk").unwrap();
        let loaded = dir.load_all().unwrap();
        assert_eq!(loaded.records, vec![("a".to_owned(), rec("a", 1))]);
        let [LoadWarning::Quarantined { name, moved_to, .. }] = loaded.warnings.as_slice() else {
            panic!("expected one quarantine, got {:?}", loaded.warnings);
        };
        assert_eq!(name, "stray");
        assert_eq!(fs::read(moved_to).unwrap(), b"junk");
        let mut reason = moved_to.clone().into_os_string();
        reason.push(REASON_SUFFIX);
        assert!(
            fs::read_to_string(reason)
                .unwrap()
                .contains("not a record directory")
        );
        assert!(!dir.path().join(".x.tmp1.1").exists());
    }

    #[test]
    fn temp_files_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let dir = open(root.path());
        dir.create("a", &rec("a", 1)).unwrap();
        let tmp = dir.dir("a").join(".thing.json.tmp1234.7");
        fs::write(&tmp, b"half a rec").unwrap();
        // A directory holding nothing but a temporary file is an incomplete create.
        let only_tmp = dir.create_dir("b").unwrap();
        fs::write(only_tmp.join(".thing.json.tmp99.0"), b"{").unwrap();
        let loaded = dir.load_all().unwrap();
        assert_eq!(loaded.records, vec![("a".to_owned(), rec("a", 1))]);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(!tmp.exists());
        assert!(!only_tmp.exists());
    }

    #[test]
    fn one_file_store_is_quarantined_too() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("order.json");
        assert_eq!(load_or_quarantine::<Vec<u32>>(&path, "order"), (None, None));
        crate::store_json(&path, &vec![1u32, 2]).unwrap();
        assert_eq!(
            load_or_quarantine::<Vec<u32>>(&path, "order"),
            (Some(vec![1, 2]), None)
        );
        fs::write(&path, b"[1,").unwrap();
        let (v, w) = load_or_quarantine::<Vec<u32>>(&path, "order");
        assert_eq!(v, None);
        let Some(LoadWarning::Quarantined { moved_to, .. }) = w else {
            panic!("expected a quarantine, got {w:?}");
        };
        assert!(!path.exists());
        assert_eq!(fs::read(&moved_to).unwrap(), b"[1,");
        assert!(
            moved_to
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("order-order.json-")
        );
    }
}
