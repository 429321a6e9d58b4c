//! Named volumes whose driver is a plugin. Every plugin driver is spoken to with Docker's
//! `VolumeDriver.*` calls (`POST /VolumeDriver.<Method>`, Go field names), whatever handshake it
//! negotiated: a `/Plugin.Activate` plugin must list `VolumeDriver` in `Implements`; a v1/v2
//! (MVP) plugin plays the driver role by answering these paths (a 404 on `Create` means it does
//! not). A driver not loaded yet is looked up by Docker-style discovery and loaded.
//!
//! Mount counts: the first container using a volume gets `Mount {Name, ID}` with a fresh 64-hex
//! ID; later containers share that mount point without another call; the last one to stop gets
//! `Unmount` with the same ID. Counts are in memory (containers do not outlive the daemon); the
//! mount's ID is also recorded on disk while it is mounted, so that after a daemon crash its
//! `Unmount` is still sent ([`crate::owed`]).
//!
//! Locking: each volume has its own async lock (the store's `ops`, keyed by name), held across
//! that volume's driver calls (`Create`, `Mount`, `Unmount`, `Remove`), so two containers
//! mounting the same volume see one `Mount` and the last `Unmount` never overtakes a `Mount`.
//! No lock another volume needs is held across a plugin call: a hung `Mount` of one volume
//! delays only the operations on that volume. `Get`, `List` and `Snapshot` take no lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_plugin_host::protocol::legacy::volume::{
    CapabilitiesResponse, CreateRequest, GetResponse, ListResponse, MountRequest, MountResponse,
    NameRequest,
};
use berth_plugin_host::protocol::legacy::{ErrResponse, VOLUME_DRIVER};
use berth_plugin_host::{LoadedPlugin, PluginError, PluginHost};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CreateVolume, LOCAL_DRIVER, Volume, VolumeError, VolumeStore};

/// The `VolumeDriver` methods Berth calls, plus its `Snapshot` extension.
pub const DRIVER_METHODS: [&str; 9] = [
    "Create",
    "Remove",
    "Mount",
    "Path",
    "Unmount",
    "Get",
    "List",
    "Capabilities",
    "Snapshot",
];

/// Berth's extension `POST /VolumeDriver.Snapshot` → `{"Err": ""}`; a 404 means "not supported".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotRequest {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Snapshot name.
    #[serde(rename = "Snapshot")]
    pub snapshot: String,
}

/// A mounted plugin volume.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    id: String,
    mountpoint: String,
    users: BTreeSet<String>,
}

fn path(method: &str) -> String {
    format!("/{VOLUME_DRIVER}.{method}")
}

fn hook(method: &str) -> String {
    format!("volumedriver.{}", method.to_lowercase())
}

pub(crate) async fn call<Req, Resp>(
    p: &LoadedPlugin,
    method: &str,
    req: &Req,
) -> Result<Resp, PluginError>
where
    Req: Serialize + ?Sized,
    Resp: serde::de::DeserializeOwned,
{
    p.call(&hook(method), &path(method), req).await
}

fn is_local(driver: &str) -> bool {
    driver.is_empty() || driver == LOCAL_DRIVER
}

/// Docker rejects the whole reply when `CreatedAt` is not RFC 3339; so does Berth.
fn parse_created(
    p: &LoadedPlugin,
    method: &str,
    s: Option<&str>,
) -> Result<Option<DateTime<Utc>>, PluginError> {
    match s.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| PluginError {
                plugin: p.name().to_owned(),
                call: format!("POST {}", path(method)),
                kind: berth_plugin_host::CallErrorKind::Decode {
                    error: format!("CreatedAt {s:?} is not RFC 3339: {e}"),
                    snippet: String::new(),
                },
            }),
    }
}

impl VolumeStore {
    fn driver_err(op: &str, name: &str) -> impl FnOnce(PluginError) -> VolumeError {
        let (op, name) = (op.to_owned(), name.to_owned());
        move |source| VolumeError::Driver {
            op,
            name,
            source: Box::new(source),
        }
    }

    /// The plugin acting as driver `driver`: a loaded plugin of that name, else one found by
    /// Docker-style discovery (which is then loaded, at the end of the load order).
    pub async fn driver_plugin(
        &self,
        host: Option<&PluginHost>,
        name: &str,
        driver: &str,
    ) -> Result<Arc<LoadedPlugin>, VolumeError> {
        berth_plugin_host::find_driver(host, driver, VOLUME_DRIVER)
            .await
            .map_err(|e| match e.not_a_driver_reason() {
                None => VolumeError::UnknownDriver {
                    name: name.to_owned(),
                    driver: driver.to_owned(),
                },
                Some(reason) => VolumeError::NotADriver {
                    name: name.to_owned(),
                    driver: driver.to_owned(),
                    reason,
                },
            })
    }

    fn persist(&self, v: &Volume) -> Result<(), VolumeError> {
        let mut stored = v.clone();
        stored.status = None;
        self.records.create_dir(&v.name)?;
        self.records.store(&v.name, &stored)?;
        self.lock().insert(v.name.clone(), stored);
        Ok(())
    }

    /// Creates a volume with any driver (idempotent). A plugin driver gets `Get` (adopting a
    /// volume it already has) and then `Create {Name, Opts}` (`Opts` is `null` when empty), then
    /// `Capabilities` for the scope (any error means `local`).
    pub async fn create_with(
        &self,
        host: Option<&PluginHost>,
        req: CreateVolume,
    ) -> Result<(Volume, bool), VolumeError> {
        let driver = req.driver.clone().unwrap_or_default();
        if let Some(name) = &req.name
            && let Ok(existing) = self.get(name)
        {
            let requested = if is_local(&driver) {
                LOCAL_DRIVER
            } else {
                &driver
            };
            if req.driver.is_some() && existing.driver != requested {
                return Err(VolumeError::DriverConflict {
                    name: name.clone(),
                    existing: existing.driver,
                    requested: requested.to_owned(),
                });
            }
            return Ok((existing, false));
        }
        let name = req.name.clone().unwrap_or_else(berth_state::new_id);
        berth_state::validate_name("volume", &name)?;
        if is_local(&driver) {
            // The name's lock: a plugin create of the same name in flight finishes first.
            let _ops = self.ops.lock(&name).await;
            return self.create(CreateVolume {
                name: Some(name),
                ..req
            });
        }
        let plugin = self.driver_plugin(host, &name, &driver).await?;
        // Only this volume's lock is held across the plugin calls below.
        let _ops = self.ops.lock(&name).await;
        if let Ok(existing) = self.get(&name) {
            return Ok((existing, false));
        }
        let err = Self::driver_err("create", &name);
        let got: Result<GetResponse, PluginError> =
            call(&plugin, "Get", &NameRequest { name: name.clone() }).await;
        let (exists, mountpoint, created_at) = match got {
            Ok(GetResponse {
                volume: Some(v), ..
            }) => (
                true,
                v.mountpoint,
                parse_created(&plugin, "Get", v.created_at.as_deref()).map_err(err)?,
            ),
            // Like Docker's probe: any non-transport Get failure means "does not exist".
            Ok(_) => (false, String::new(), None),
            Err(e)
                if matches!(e.kind, berth_plugin_host::CallErrorKind::Deadline(_))
                    || e.is_not_up()
                    || e.is_not_active() =>
            {
                return Err(err(e));
            }
            Err(_) => (false, String::new(), None),
        };
        if !exists {
            let opts = (!req.options.is_empty()).then(|| req.options.clone());
            let _: ErrResponse = call(
                &plugin,
                "Create",
                &CreateRequest {
                    name: name.clone(),
                    opts,
                },
            )
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    VolumeError::NotADriver {
                        name: name.clone(),
                        driver: driver.clone(),
                        reason: "it answers 404 to /VolumeDriver.Create".into(),
                    }
                } else {
                    Self::driver_err("create", &name)(e)
                }
            })?;
        }
        let caps: Result<CapabilitiesResponse, PluginError> =
            call(&plugin, "Capabilities", &serde_json::json!({})).await;
        let scope = match caps {
            Ok(c) if c.capabilities.scope == "global" => "global",
            _ => "local",
        };
        let volume = Volume {
            name: name.clone(),
            driver: plugin.name().to_owned(),
            mountpoint: PathBuf::from(mountpoint),
            created_at: created_at.unwrap_or_else(Utc::now),
            labels: (!req.labels.is_empty()).then_some(req.labels),
            options: (!req.options.is_empty()).then_some(req.options),
            scope: scope.to_owned(),
            status: None,
        };
        self.persist(&volume)?;
        Ok((volume, true))
    }

    /// The volume called `name`; one the store has no record of but a plugin driver in use
    /// knows (`Get`) is adopted: recorded, as its create would have. That is the volume of a
    /// create the engine's death cut between the driver's `Create` and the record, which
    /// [`VolumeStore::list_with`] lists: without adoption it could be listed but neither
    /// inspected nor removed.
    pub async fn get_or_adopt(
        &self,
        host: Option<&PluginHost>,
        name: &str,
    ) -> Result<Volume, VolumeError> {
        let missing = match self.get(name) {
            Err(e @ VolumeError::NotFound(_)) => e,
            found => return found,
        };
        let drivers: BTreeSet<String> = self
            .list()
            .into_iter()
            .filter(|v| !is_local(&v.driver))
            .map(|v| v.driver)
            .collect();
        for d in drivers {
            let Ok(p) = self.driver_plugin(host, name, &d).await else {
                continue;
            };
            let got: Result<GetResponse, PluginError> =
                call(&p, "Get", &NameRequest { name: name.into() }).await;
            let Ok(GetResponse {
                volume: Some(x), ..
            }) = got
            else {
                continue;
            };
            let _ops = self.ops.lock(name).await;
            if let Ok(v) = self.get(name) {
                return Ok(v);
            }
            let caps: Result<CapabilitiesResponse, PluginError> =
                call(&p, "Capabilities", &serde_json::json!({})).await;
            let scope = match caps {
                Ok(c) if c.capabilities.scope == "global" => "global",
                _ => "local",
            };
            let volume = Volume {
                name: name.to_owned(),
                driver: p.name().to_owned(),
                mountpoint: PathBuf::from(x.mountpoint),
                created_at: parse_created(&p, "Get", x.created_at.as_deref())
                    .ok()
                    .flatten()
                    .unwrap_or_else(Utc::now),
                labels: None,
                options: None,
                scope: scope.into(),
                status: None,
            };
            tracing::info!(volume = name, driver = %d, "adopting a volume only its driver knew");
            self.persist(&volume)?;
            return Ok(volume);
        }
        Err(missing)
    }

    /// The volume, refreshed from its plugin driver (`Get`: mountpoint, status, RFC 3339
    /// `CreatedAt`); a driver error is reported in `Status.Error` rather than failing inspect.
    pub async fn inspect_with(
        &self,
        host: Option<&PluginHost>,
        name: &str,
    ) -> Result<Volume, VolumeError> {
        let mut v = self.get_or_adopt(host, name).await?;
        if is_local(&v.driver) {
            return Ok(v);
        }
        let got = match self.driver_plugin(host, name, &v.driver).await {
            Ok(p) => call::<_, GetResponse>(&p, "Get", &NameRequest { name: name.into() })
                .await
                .map_err(|e| e.to_string())
                .and_then(|g| {
                    let created = g
                        .volume
                        .as_ref()
                        .map(|x| parse_created(&p, "Get", x.created_at.as_deref()))
                        .transpose()
                        .map_err(|e| e.to_string())?;
                    Ok((g, created.flatten()))
                }),
            Err(e) => Err(e.to_string()),
        };
        match got {
            Ok((g, created)) => match g.volume {
                Some(x) => {
                    if !x.mountpoint.is_empty() {
                        v.mountpoint = PathBuf::from(x.mountpoint);
                    }
                    if let Some(t) = created {
                        v.created_at = t;
                    }
                    v.status = x.status;
                }
                None => {
                    v.status = Some(BTreeMap::from([(
                        "Error".to_owned(),
                        serde_json::Value::from("the driver has no such volume"),
                    )]));
                }
            },
            Err(e) => {
                v.status = Some(BTreeMap::from([(
                    "Error".to_owned(),
                    serde_json::Value::from(e),
                )]));
            }
        }
        Ok(v)
    }

    /// Every volume: the store's records plus volumes a plugin driver in use lists (`List`,
    /// `null` lists accepted) that the store does not know; those are not persisted.
    pub async fn list_with(&self, host: Option<&PluginHost>) -> Vec<Volume> {
        let mut out = self.list();
        let drivers: BTreeSet<String> = out
            .iter()
            .filter(|v| !is_local(&v.driver))
            .map(|v| v.driver.clone())
            .collect();
        for d in drivers {
            let Ok(p) = self.driver_plugin(host, "", &d).await else {
                continue;
            };
            let listed: Result<ListResponse, PluginError> =
                call(&p, "List", &serde_json::json!({})).await;
            match listed {
                Ok(l) => {
                    for x in l.volumes {
                        if x.name.is_empty() || out.iter().any(|v| v.name == x.name) {
                            continue;
                        }
                        out.push(Volume {
                            name: x.name,
                            driver: d.clone(),
                            mountpoint: PathBuf::from(x.mountpoint),
                            // Docker ignores CreatedAt from List.
                            created_at: Utc::now(),
                            labels: None,
                            options: None,
                            scope: "local".into(),
                            status: x.status,
                        });
                    }
                }
                Err(e) => tracing::warn!(driver = %d, error = %e, "VolumeDriver.List"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Mounts volume `name` for `container_id` and returns the host path to bind-mount. Local
    /// volumes: their `_data`. Plugin volumes: the first user triggers `Mount {Name, ID}`; the
    /// returned `Mountpoint` must be an absolute, existing path.
    pub async fn mount(
        &self,
        host: Option<&PluginHost>,
        name: &str,
        container_id: &str,
    ) -> Result<String, VolumeError> {
        let v = self.get(name)?;
        if is_local(&v.driver) {
            return Ok(v.mountpoint.to_string_lossy().into_owned());
        }
        let plugin = self.driver_plugin(host, name, &v.driver).await?;
        let _ops = self.ops.lock(name).await;
        if let Some(a) = self.active_lock().get_mut(name) {
            a.users.insert(container_id.to_owned());
            return Ok(a.mountpoint.clone());
        }
        // An Unmount a crashed daemon owed for this volume goes out before the next Mount.
        if let Err(reason) = self.pay_owed_locked(host, name).await {
            tracing::warn!(volume = name, %reason, "VolumeDriver.Unmount still owed");
        }
        let id = berth_state::new_id();
        let req = MountRequest {
            name: name.to_owned(),
            id: id.clone(),
        };
        self.record_mount(name, &id)?;
        let reply: MountResponse = match call(&plugin, "Mount", &req).await {
            Ok(r) => r,
            Err(e) => {
                self.forget_mount(name);
                return Err(Self::driver_err("mount", name)(e));
            }
        };
        let mp = reply.mountpoint;
        let bad = if mp.is_empty() {
            Some("which is empty")
        } else if !Path::new(&mp).is_absolute() {
            Some("which is not an absolute path")
        } else if !Path::new(&mp).exists() {
            Some("which does not exist")
        } else {
            None
        };
        if let Some(reason) = bad {
            // Give the mount back: the container will not start.
            let undo: Result<ErrResponse, PluginError> = call(&plugin, "Unmount", &req).await;
            if let Err(e) = undo {
                tracing::warn!(volume = name, error = %e, "VolumeDriver.Unmount after a bad mount");
            }
            self.forget_mount(name);
            return Err(VolumeError::BadPath {
                what: format!("volume driver \"{}\" mounted {name} at", plugin.name()),
                path: mp,
                reason: reason.to_owned(),
            });
        }
        self.active_lock().insert(
            name.to_owned(),
            Active {
                id,
                mountpoint: mp.clone(),
                users: BTreeSet::from([container_id.to_owned()]),
            },
        );
        if v.mountpoint != Path::new(&mp) {
            let mut v = v;
            v.mountpoint = PathBuf::from(&mp);
            if let Err(e) = self.persist(&v) {
                tracing::warn!(volume = name, error = %e, "recording the mountpoint");
            }
        }
        Ok(mp)
    }

    /// Releases `container_id`'s use of volume `name`; the last user triggers `Unmount` with the
    /// mount's ID. Not mounted by this container: nothing happens.
    pub async fn unmount(
        &self,
        host: Option<&PluginHost>,
        name: &str,
        container_id: &str,
    ) -> Result<(), VolumeError> {
        let _ops = self.ops.lock(name).await;
        let id = {
            let mut active = self.active_lock();
            let Some(a) = active.get_mut(name) else {
                return Ok(());
            };
            if !a.users.remove(container_id) {
                return Ok(());
            }
            if !a.users.is_empty() {
                return Ok(());
            }
            let id = a.id.clone();
            active.remove(name);
            id
        };
        let v = self.get(name)?;
        let plugin = self.driver_plugin(host, name, &v.driver).await?;
        let sent: Result<ErrResponse, _> = call(
            &plugin,
            "Unmount",
            &MountRequest {
                name: name.to_owned(),
                id,
            },
        )
        .await;
        // Sent (whatever the answer): nothing is owed any more.
        self.forget_mount(name);
        sent.map_err(Self::driver_err("unmount", name))?;
        Ok(())
    }

    /// How many containers currently share the mount of `name` (0: not mounted).
    pub fn mount_count(&self, name: &str) -> usize {
        self.active_lock().get(name).map_or(0, |a| a.users.len())
    }

    /// Removes a volume of any driver. `users` are the containers referencing it; a volume in use
    /// (or still mounted) is refused with 409. A plugin driver gets `Remove {Name}` first; a
    /// failure keeps the record.
    pub async fn remove_with(
        &self,
        host: Option<&PluginHost>,
        name: &str,
        users: &[String],
    ) -> Result<(), VolumeError> {
        let v = self.get_or_adopt(host, name).await?;
        if is_local(&v.driver) {
            let _ops = self.ops.lock(name).await;
            return self.remove(name, &self.all_users(name, users));
        }
        let plugin = self.driver_plugin(host, name, &v.driver).await?;
        // This volume's lock only: a mount of it in flight completes (and counts) first.
        let _ops = self.ops.lock(name).await;
        let users = self.all_users(name, users);
        if !users.is_empty() {
            return self.remove(name, &users);
        }
        // An owed Unmount goes before the Remove.
        if let Err(reason) = self.pay_owed_locked(host, name).await {
            tracing::warn!(volume = name, %reason, "VolumeDriver.Unmount still owed");
        }
        let _: ErrResponse = call(&plugin, "Remove", &NameRequest { name: name.into() })
            .await
            .map_err(Self::driver_err("remove", name))?;
        self.remove(name, &[])
    }

    /// `users` (the engine's) plus the containers the mount count still holds for `name`.
    fn all_users(&self, name: &str, users: &[String]) -> Vec<String> {
        let mut all = users.to_vec();
        if let Some(a) = self.active_lock().get(name) {
            all.extend(a.users.iter().filter(|u| !users.contains(u)).cloned());
        }
        all
    }

    /// Berth's `volume snapshot`: `POST /VolumeDriver.Snapshot {Name, Snapshot}` on the volume's
    /// driver; a 404 (or the local driver) means snapshots are not supported.
    pub async fn snapshot(
        &self,
        host: Option<&PluginHost>,
        name: &str,
        snapshot: &str,
    ) -> Result<(), VolumeError> {
        let v = self.get(name)?;
        berth_state::validate_name("snapshot", snapshot)?;
        let unsupported = || {
            VolumeError::Unsupported(format!(
                "snapshot {name}: volume driver {} does not support snapshots",
                v.driver
            ))
        };
        if is_local(&v.driver) {
            return Err(unsupported());
        }
        let plugin = self.driver_plugin(host, name, &v.driver).await?;
        let req = SnapshotRequest {
            name: name.to_owned(),
            snapshot: snapshot.to_owned(),
        };
        match call::<_, ErrResponse>(&plugin, "Snapshot", &req).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(unsupported()),
            Err(e) => Err(Self::driver_err("snapshot", name)(e)),
        }
    }

    /// Names of the volumes whose driver is `driver` (for refusing to unload it).
    pub fn volumes_of_driver(&self, driver: &str) -> Vec<String> {
        self.lock()
            .values()
            .filter(|v| v.driver == driver)
            .map(|v| v.name.clone())
            .collect()
    }

    /// The mount of plugin volume `name` now: its mount id, mountpoint and users (`None`: not
    /// mounted).
    pub fn current_mount(&self, name: &str) -> Option<(String, String, Vec<String>)> {
        self.active_lock().get(name).map(|a| {
            (
                a.id.clone(),
                a.mountpoint.clone(),
                a.users.iter().cloned().collect(),
            )
        })
    }

    fn active_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Active>> {
        berth_state::lock(&self.active)
    }
}
