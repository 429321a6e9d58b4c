//! The layers a loaded image came with. Berth runs every image on one unpacked root filesystem
//! (the layers applied in order at load, whiteouts included), but a `docker load`ed image also
//! keeps what it was loaded from, in its own directory:
//!
//! - `layers/<diff id hex>.tar`: each layer tar as it was in the archive (its sha256 is its diff
//!   id, checked against the config's `rootfs.diff_ids` at load);
//! - `config.json`: the image config file, byte for byte (its `history`, `Healthcheck` and any
//!   key Berth does not model);
//! - the record's `Layers` (diff ids and sizes, bottom first) and `History`.
//!
//! `docker save` writes these back instead of packing the root filesystem, so save after load
//! gives the same layer list, config and history; `docker image inspect` shows the diff ids as
//! `RootFS.Layers` and `docker history` the history. The files are written and synced before
//! the record names them: a crash in between leaves unnamed files in the image's directory,
//! removed with the image.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::save::ConfigFile;
use super::{ImageStore, sync_filesystem};
use crate::error::EngineError;

/// One layer of a loaded image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Layer {
    /// `sha256:<hex>` of the layer tar.
    pub diff_id: String,
    /// The bytes of the files in the layer (`docker history`'s size).
    pub size: u64,
}

/// One entry of an image config's `history`, Docker's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// A layer tar of an archive being loaded, with its digest and size.
pub(super) struct LoadedLayer {
    pub path: PathBuf,
    pub layer: Layer,
}

impl LoadedLayer {
    /// Hashes and measures the layer tar at `path`.
    pub(super) fn read(path: PathBuf) -> Result<Self, EngineError> {
        let diff_id = format!("sha256:{}", super::save::file_sha256(&path)?);
        let size = content_size(&path)?;
        Ok(LoadedLayer {
            path,
            layer: Layer { diff_id, size },
        })
    }
}

/// The bytes of the files in the layer tar at `path`.
fn content_size(path: &Path) -> Result<u64, EngineError> {
    let bad = |e: std::io::Error| EngineError::Invalid(format!("invalid layer: {e}"));
    let f = std::fs::File::open(path).map_err(bad)?;
    let mut ar = tar::Archive::new(f);
    let mut size = 0u64;
    for entry in ar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if entry.header().entry_type().is_file() {
            size = size.saturating_add(entry.size());
        }
    }
    Ok(size)
}

/// Refuses layers whose digests are not the config's `rootfs.diff_ids` (when it lists them).
pub(super) fn check_diff_ids(
    config_name: &str,
    config: &ConfigFile,
    layers: &[LoadedLayer],
) -> Result<(), EngineError> {
    let want = &config.rootfs.diff_ids;
    if want.is_empty() {
        return Ok(());
    }
    if want.len() != layers.len() {
        return Err(EngineError::Invalid(format!(
            "invalid archive: {config_name} lists {} layers (rootfs.diff_ids) but the manifest {}",
            want.len(),
            layers.len()
        )));
    }
    for (i, (w, l)) in want.iter().zip(layers).enumerate() {
        if *w != l.layer.diff_id {
            return Err(EngineError::Invalid(format!(
                "invalid archive: layer {i} of {config_name} has digest {} where rootfs.diff_ids says {w}",
                l.layer.diff_id
            )));
        }
    }
    Ok(())
}

fn layer_file(image_dir: &Path, diff_id: &str) -> PathBuf {
    let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
    image_dir.join("layers").join(format!("{hex}.tar"))
}

impl ImageStore {
    /// Keeps the layer tars (moved out of the load's work directory) and the config file
    /// `config` that image `id` was loaded from, and records the layers and history. Nothing is
    /// done for an image that already keeps layers.
    pub(super) fn keep_layers(
        &self,
        id: &str,
        layers: &[LoadedLayer],
        config: &Path,
        history: Vec<HistoryEntry>,
    ) -> Result<(), EngineError> {
        let Some(img) = self.lock().get(id).cloned() else {
            return Ok(());
        };
        if img.builtin || !img.layers.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join(img.hex());
        const WHAT: &str = "keeping the loaded image's layers";
        std::fs::create_dir_all(dir.join("layers")).map_err(EngineError::io(WHAT))?;
        for l in layers {
            let target = layer_file(&dir, &l.layer.diff_id);
            // A layer named twice in the manifest was moved the first time.
            if !target.exists() {
                std::fs::rename(&l.path, &target).map_err(EngineError::io(WHAT))?;
            }
        }
        std::fs::copy(config, dir.join("config.json")).map_err(EngineError::io(WHAT))?;
        sync_filesystem(&dir)?;
        let mut images = self.lock();
        if let Some(img) = images.get_mut(id) {
            img.layers = layers.iter().map(|l| l.layer.clone()).collect();
            img.history = history;
            self.records.store(img.hex(), img)?;
        }
        Ok(())
    }

    /// The kept config file and layer tars of `img`, when it keeps them and its config is
    /// still the one the file holds.
    pub(super) fn kept(&self, img: &super::Image) -> Option<(Vec<u8>, Vec<PathBuf>)> {
        if img.layers.is_empty() {
            return None;
        }
        let dir = self.dir.join(img.hex());
        let bytes = std::fs::read(dir.join("config.json")).ok()?;
        let config = serde_json::from_slice::<ConfigFile>(&bytes).ok()?;
        if config.config.to_image() != img.config {
            return None;
        }
        let files: Vec<PathBuf> = img
            .layers
            .iter()
            .map(|l| layer_file(&dir, &l.diff_id))
            .collect();
        files.iter().all(|f| f.is_file()).then_some((bytes, files))
    }
}
