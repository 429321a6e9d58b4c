//! Owed `Unmount`s (catch-up after a daemon crash, `docs/semantics.md#catch-up`). A plugin
//! volume's mount is recorded in `<root>/volumes/<name>/mount.json` (its mount `ID`) before
//! `VolumeDriver.Mount` is sent, and removed once its `Unmount` was sent. Containers do not
//! outlive the daemon, so a record found at open is a mount whose users all died with the
//! previous daemon: its `Unmount` is owed. [`VolumeStore::pay_owed_unmounts`] sends them once the
//! plugins are up (daemon boot); a volume's next `Mount` sends its owed `Unmount` first.
//!
//! An owed `Unmount` whose driver plugin is not loaded or not Active stays recorded and is tried
//! again at the next boot. One that was sent is forgotten whatever the answer (a failure is
//! logged, like every tear-down call's).

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_plugin_host::protocol::legacy::ErrResponse;
use berth_plugin_host::protocol::legacy::volume::MountRequest;
use berth_plugin_host::{PluginHost, PluginState};
use serde::{Deserialize, Serialize};

use crate::{VolumeError, VolumeStore};

/// The record of a plugin volume's mount (`mount.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountRecord {
    /// The mount id sent with `Mount` (and owed with `Unmount`).
    #[serde(rename = "ID")]
    pub id: String,
}

/// The file beside `volume.json`.
pub(crate) const MOUNT_FILE: &str = "mount.json";

/// What [`VolumeStore::pay_owed_unmounts`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Paid {
    /// `(volume, mount id)` of the `Unmount`s sent (answered with success or not).
    pub sent: Vec<(String, String)>,
    /// `(volume, reason)` of those still owed (their plugin is not loaded or not active).
    pub still_owed: Vec<(String, String)>,
}

impl VolumeStore {
    fn mount_file(&self, name: &str) -> PathBuf {
        self.records.dir(name).join(MOUNT_FILE)
    }

    /// Reads the `mount.json` of every volume (at open): each is an owed `Unmount`.
    pub(crate) fn load_owed(&self, names: &[String]) -> BTreeMap<String, MountRecord> {
        let mut owed = BTreeMap::new();
        for name in names {
            let path = self.mount_file(name);
            match berth_state::load_json::<MountRecord>(&path) {
                Ok(Some(r)) => {
                    owed.insert(name.clone(), r);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(volume = %name, error = %e, "unreadable mount record; its Unmount cannot be sent")
                }
            }
        }
        owed
    }

    /// Records a mount before its `Mount` is sent (write-ahead: a crash after the call still
    /// knows which `Unmount` is owed).
    pub(crate) fn record_mount(&self, name: &str, id: &str) -> Result<(), VolumeError> {
        berth_state::store_json(&self.mount_file(name), &MountRecord { id: id.to_owned() })?;
        Ok(())
    }

    /// Forgets a mount record (its `Unmount` was sent, or its `Mount` failed).
    pub(crate) fn forget_mount(&self, name: &str) {
        if let Err(e) = berth_state::remove_file_durable(&self.mount_file(name)) {
            tracing::warn!(volume = %name, error = %e, "removing the mount record");
        }
    }

    /// The owed `Unmount`s, as `(volume, mount id)`.
    pub fn owed_unmounts(&self) -> Vec<(String, String)> {
        berth_state::lock(&self.owed)
            .iter()
            .map(|(n, r)| (n.clone(), r.id.clone()))
            .collect()
    }

    /// Sends the owed `Unmount` of volume `name`, if any and if its driver plugin is Active
    /// (the caller holds the volume's lock). Returns `Err(reason)` when it stays owed.
    pub(crate) async fn pay_owed_locked(
        &self,
        host: Option<&PluginHost>,
        name: &str,
    ) -> Result<Option<String>, String> {
        let Some(rec) = berth_state::lock(&self.owed).get(name).cloned() else {
            return Ok(None);
        };
        let driver = match self.get(name) {
            Ok(v) => v.driver,
            Err(_) => {
                // The volume is gone (removed by hand): nothing to unmount any more.
                berth_state::lock(&self.owed).remove(name);
                return Ok(None);
            }
        };
        let plugin = self
            .driver_plugin(host, name, &driver)
            .await
            .map_err(|e| e.to_string())?;
        if plugin.state() != PluginState::Active {
            return Err(format!(
                "volume driver \"{}\" is {:?}",
                plugin.name(),
                plugin.state()
            ));
        }
        let req = MountRequest {
            name: name.to_owned(),
            id: rec.id.clone(),
        };
        let sent: Result<ErrResponse, _> = crate::driver::call(&plugin, "Unmount", &req).await;
        if let Err(e) = sent {
            tracing::warn!(volume = %name, mount_id = %rec.id, error = %e, "owed VolumeDriver.Unmount failed; not retried");
        }
        berth_state::lock(&self.owed).remove(name);
        // A mount made since then has its own record: only an owed one is removed.
        if !berth_state::lock(&self.active).contains_key(name) {
            self.forget_mount(name);
        }
        Ok(Some(rec.id))
    }

    /// Daemon boot, once the plugins are up: sends every owed `Unmount` (see the module doc).
    pub async fn pay_owed_unmounts(&self, host: Option<&PluginHost>) -> Paid {
        let mut paid = Paid::default();
        let names: Vec<String> = berth_state::lock(&self.owed).keys().cloned().collect();
        for name in names {
            let _ops = self.ops.lock(&name).await;
            match self.pay_owed_locked(host, &name).await {
                Ok(Some(id)) => paid.sent.push((name, id)),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(volume = %name, %reason, "VolumeDriver.Unmount still owed; tried again at the next boot");
                    paid.still_owed.push((name, reason));
                }
            }
        }
        paid
    }
}
