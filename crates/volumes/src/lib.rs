//! Named volumes: the volume store (records under `<root>/volumes/<name>/`), the built-in `local`
//! driver (data in `<root>/volumes/<name>/_data`), and usage bookkeeping. Plugin drivers
//! ([`driver`]: Docker's `VolumeDriver.*` calls, mount counts) and bind-mount resolution through
//! the volume hooks ([`hooks`]) live in the submodules.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod driver;
pub mod hooks;
pub mod owed;

pub use driver::{DRIVER_METHODS, SnapshotRequest};
pub use hooks::{BindMount, BindResolution};
pub use owed::{MountRecord, Paid};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_state::{ErrorKind, LoadWarning, RecordDir};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Errors of the volume layer.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error(transparent)]
    InvalidName(#[from] berth_state::NameError),
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    UnknownDriver { name: String, driver: String },
    #[error(transparent)]
    State(#[from] berth_state::StateError),
    /// A volume driver plugin failed a call (its name and `Err` text are in the source).
    #[error("{op} {name}: {source}")]
    Driver {
        op: String,
        name: String,
        source: Box<berth_plugin_host::PluginError>,
    },
    /// A loaded plugin that does not act as a volume driver.
    #[error("{name}: plugin \"{driver}\" is not a volume driver: {reason}")]
    NotADriver {
        name: String,
        driver: String,
        reason: String,
    },
    /// A volume hook aborted the operation (names the plugin, the hook and the reason).
    #[error(transparent)]
    Hook(Box<berth_plugin_host::ChainError>),
    /// A plugin-supplied path that cannot be mounted.
    #[error("{what} {path:?} {reason}")]
    BadPath {
        what: String,
        path: String,
        reason: String,
    },
    /// The driver does not support the operation (e.g. snapshots).
    #[error("{0}")]
    Unsupported(String),
    /// A volume of that name exists with another driver.
    #[error("create {name}: volume already exists with driver {existing}, not {requested}")]
    DriverConflict {
        name: String,
        existing: String,
        requested: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl From<berth_plugin_host::ChainError> for VolumeError {
    fn from(e: berth_plugin_host::ChainError) -> Self {
        VolumeError::Hook(Box::new(e))
    }
}

impl VolumeError {
    /// The class of this failure, for the API's status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            // Fail closed: a needed plugin that is not Active is 503 (`docs/semantics.md`).
            VolumeError::Driver { source, .. } if source.is_not_active() => ErrorKind::Unavailable,
            VolumeError::Hook(e) if e.reason.is_not_active() => ErrorKind::Unavailable,
            VolumeError::NotFound(_)
            | VolumeError::UnknownDriver { .. }
            | VolumeError::NotADriver { .. } => ErrorKind::NotFound,
            VolumeError::InUse { .. } | VolumeError::DriverConflict { .. } => ErrorKind::Conflict,
            VolumeError::InvalidName(_) | VolumeError::Unsupported(_) => ErrorKind::InvalidArgument,
            VolumeError::State(_)
            | VolumeError::Io { .. }
            | VolumeError::Driver { .. }
            | VolumeError::Hook(_)
            | VolumeError::BadPath { .. } => ErrorKind::Internal,
        }
    }
}

/// The persisted record of one volume (`volume.json`), also its Engine API shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    pub created_at: DateTime<Utc>,
    pub labels: Option<BTreeMap<String, String>>,
    pub options: Option<BTreeMap<String, String>>,
    pub scope: String,
    /// Driver-specific status (`VolumeDriver.Get`), refreshed by inspect; never persisted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BTreeMap<String, serde_json::Value>>,
}

/// What a caller asks for when creating a volume.
#[derive(Debug, Clone, Default)]
pub struct CreateVolume {
    /// `None`: the engine picks a 64-hex name (as Docker does).
    pub name: Option<String>,
    /// `None` or `"local"`: the built-in local driver.
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The volume store. Records are durable; the in-memory map is a cache of the directory.
pub struct VolumeStore {
    records: RecordDir<Volume>,
    volumes: Mutex<BTreeMap<String, Volume>>,
    /// Plugin-driver volumes currently mounted: mount id and users (see [`driver`]).
    active: Mutex<BTreeMap<String, driver::Active>>,
    /// Mounts a previous daemon left recorded: their `Unmount` is owed (see [`owed`]).
    owed: Mutex<BTreeMap<String, owed::MountRecord>>,
    /// One lock per volume name: serialises the plugin-driver operations on that volume
    /// (create, mount, unmount, remove) so mount counts stay exact. A plugin call holds only its
    /// own volume's lock; `volumes` and `active` are held for lookups and inserts only.
    ops: berth_state::KeyedLocks,
    load_warnings: Vec<LoadWarning>,
}

/// The record file in each volume's directory.
const RECORD_FILE: &str = "volume.json";

/// The name of the built-in driver.
pub const LOCAL_DRIVER: &str = "local";

impl VolumeStore {
    /// Opens (and loads) the store under `<root>/volumes`. Unreadable records are quarantined
    /// and directories without a record but with data kept, as [`berth_state::records`] says;
    /// the warnings are logged and kept for [`Self::load_warnings`].
    pub fn open(root: &Path) -> Result<Self, VolumeError> {
        let records = RecordDir::open(root.join("volumes"), RECORD_FILE, "volume")?;
        let loaded = records.load_all()?;
        let volumes = loaded
            .records
            .into_iter()
            .map(|(_, v): (String, Volume)| (v.name.clone(), v))
            .collect();
        let store = VolumeStore {
            records,
            volumes: Mutex::new(volumes),
            active: Mutex::new(BTreeMap::new()),
            owed: Mutex::new(BTreeMap::new()),
            ops: berth_state::KeyedLocks::new(),
            load_warnings: loaded.warnings,
        };
        let names: Vec<String> = store.lock().keys().cloned().collect();
        let owed = store.load_owed(&names);
        *berth_state::lock(&store.owed) = owed;
        Ok(store)
    }

    /// What the load at open could not take as it was (quarantined or kept records).
    pub fn load_warnings(&self) -> &[LoadWarning] {
        &self.load_warnings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Volume>> {
        berth_state::lock(&self.volumes)
    }

    /// Creates a volume, or returns the existing one of that name (Docker's create is idempotent).
    pub fn create(&self, req: CreateVolume) -> Result<(Volume, bool), VolumeError> {
        let name = req.name.unwrap_or_else(berth_state::new_id);
        berth_state::validate_name("volume", &name)?;
        let driver = req
            .driver
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| LOCAL_DRIVER.to_owned());
        if driver != LOCAL_DRIVER {
            return Err(VolumeError::UnknownDriver { name, driver });
        }
        let mut volumes = self.lock();
        if let Some(existing) = volumes.get(&name) {
            return Ok((existing.clone(), false));
        }
        let vdir = self.records.create_dir(&name)?;
        let data = vdir.join("_data");
        std::fs::create_dir_all(&data).map_err(|source| VolumeError::Io {
            context: format!("creating {}", data.display()),
            source,
        })?;
        let volume = Volume {
            name: name.clone(),
            driver,
            mountpoint: data,
            created_at: Utc::now(),
            labels: (!req.labels.is_empty()).then_some(req.labels),
            options: (!req.options.is_empty()).then_some(req.options),
            scope: "local".to_owned(),
            status: None,
        };
        if let Err(e) = self.records.store(&name, &volume) {
            let _ = self.records.remove(&name);
            return Err(e.into());
        }
        volumes.insert(name, volume.clone());
        Ok((volume, true))
    }

    /// The volume called `name`.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_owned()))
    }

    /// All volumes, sorted by name.
    pub fn list(&self) -> Vec<Volume> {
        self.lock().values().cloned().collect()
    }

    /// Removes a volume and its data. `users` are the containers that reference it (from the
    /// engine); a volume in use is refused whatever `force` says, as Docker does.
    pub fn remove(&self, name: &str, users: &[String]) -> Result<(), VolumeError> {
        let mut volumes = self.lock();
        if !volumes.contains_key(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                users: users.to_vec(),
            });
        }
        self.records.remove(name)?;
        volumes.remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn create_is_idempotent_and_durable() {
        let (dir, store) = store();
        let req = CreateVolume {
            name: Some("v1".into()),
            ..Default::default()
        };
        let (a, created) = store.create(req.clone()).unwrap();
        assert!(created);
        assert!(a.mountpoint.is_dir());
        let (b, created) = store.create(req).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        let reopened = VolumeStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("v1").unwrap(), a);
    }

    #[test]
    fn bad_names_and_drivers_touch_nothing() {
        let (dir, store) = store();
        for bad in ["../x", "a/b", ""] {
            let err = store
                .create(CreateVolume {
                    name: Some(bad.into()),
                    ..Default::default()
                })
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
        let err = store
            .create(CreateVolume {
                name: Some("v".into()),
                driver: Some("nosuch".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("nosuch"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("volumes"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn remove_refuses_in_use_and_unknown() {
        let (_dir, store) = store();
        let (v, _) = store
            .create(CreateVolume {
                name: Some("v2".into()),
                ..Default::default()
            })
            .unwrap();
        let err = store.remove("v2", &["abc".into()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.to_string(), "remove v2: volume is in use - [abc]");
        store.remove("v2", &[]).unwrap();
        assert!(!v.mountpoint.exists());
        assert_eq!(
            store.remove("v2", &[]).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn unreadable_record_is_quarantined_and_a_record_less_volume_kept() {
        let (dir, store) = store();
        for name in ["good", "bad", "orphan"] {
            store
                .create(CreateVolume {
                    name: Some(name.into()),
                    ..Default::default()
                })
                .unwrap();
        }
        let vols = dir.path().join("volumes");
        std::fs::write(vols.join("bad/volume.json"), b"{").unwrap();
        std::fs::write(vols.join("orphan/_data/f"), b"data").unwrap();
        std::fs::remove_file(vols.join("orphan/volume.json")).unwrap();
        let reopened = VolumeStore::open(dir.path()).unwrap();
        let names: Vec<_> = reopened.list().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["good"]);
        let warnings = reopened.load_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| matches!(
            w,
            LoadWarning::Quarantined { name, .. } if name == "bad"
        )));
        assert!(warnings.iter().any(|w| matches!(
            w,
            LoadWarning::Orphan { name, .. } if name == "orphan"
        )));
        assert_eq!(std::fs::read(vols.join("orphan/_data/f")).unwrap(), b"data");
        assert!(!vols.join("bad").exists());
        // One quarantined record, with the file that says why beside it.
        let mut moved: Vec<String> = std::fs::read_dir(dir.path().join("quarantine"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        moved.sort();
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert_eq!(format!("{}.reason", moved[0]), moved[1], "{moved:?}");
    }
}
