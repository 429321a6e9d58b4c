//! Volume bodies. Docker sends `Labels`, `Options` and `Status` as `null` when unset, and the
//! list's `Warnings` as `null`; bollard's `Volume` makes `Labels` and `Options` required maps
//! (`{}`) and drops `Status`, so these are Berth's own structs.

use std::collections::BTreeMap;

use serde::Serialize;

/// One volume: `POST /volumes/create`, `GET /volumes/{name}` and the list entries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub options: Option<BTreeMap<String, String>>,
    pub scope: String,
    /// What the driver reports (`VolumeDriver.Get`'s `Status`), or `null`.
    pub status: Option<BTreeMap<String, serde_json::Value>>,
}

impl From<&berth_volumes::Volume> for Volume {
    fn from(v: &berth_volumes::Volume) -> Self {
        Volume {
            name: v.name.clone(),
            driver: v.driver.clone(),
            mountpoint: v.mountpoint.to_string_lossy().into_owned(),
            created_at: v
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: v.labels.clone(),
            options: v.options.clone(),
            scope: v.scope.clone(),
            status: v.status.clone(),
        }
    }
}

/// `GET /volumes`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeList {
    pub volumes: Vec<Volume>,
    pub warnings: Option<Vec<String>>,
}
