//! `docker load` (`POST /images/load`): a `docker save` archive (Berth's or Docker's) into the
//! store. The archive is unpacked into a hidden work directory of the store (swept at boot if a
//! crash interrupts), `manifest.json` read, and each image's layers become one root filesystem.
//! When the config lists the layers' diff ids, a new image's id is the digest of its config
//! file, as in Docker, and an image that has that id already is the same image, only tagged;
//! a config without diff ids (Docker refuses those; Berth takes them) pins no layers, and the
//! image's id is the digest of its (merged) layer tar, as for `docker import`.
//! - one layer: the layer tar itself is imported; an image whose id, or the layer `save` last
//!   wrote for it, is that layer's digest is the same image (an image Berth made: so save +
//!   load gives back the same image id);
//! - several layers (Docker's images): applied in order into one directory, with the OCI
//!   whiteouts (`.wh.<name>` deletes, `.wh..wh..opq` empties the directory), then imported.
//!
//! Each layer's sha256 must be the config's `rootfs.diff_ids` entry (when the config lists
//! them). The layer tars, the config file and its history are then kept with the image
//! (`layers.rs`), so `docker save`, `RootFS.Layers` and `docker history` give them back.
//!
//! Paths named in the manifest must stay inside the archive; tar entries cannot leave their
//! directory (the tar crate's `unpack_in` refuses `..` and absolute paths).

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::layers::{LoadedLayer, check_diff_ids};
use super::save::{ConfigFile, ManifestEntry, file_sha256};
use super::{IMPORT_PREFIX, ImageStore, Origin};
use crate::error::EngineError;

/// The most bytes read from `manifest.json` or an image config.
const MAX_JSON: u64 = 8 << 20;

/// What one image of the archive became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub id: String,
    pub tags: Vec<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, EngineError> {
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_JSON + 1).read_to_end(&mut text))
        .map_err(|e| EngineError::Invalid(format!("invalid archive: open {what}: {e}")))?;
    if text.len() as u64 > MAX_JSON {
        return Err(EngineError::Invalid(format!(
            "invalid archive: {what} is larger than 8 MiB"
        )));
    }
    serde_json::from_slice(&text)
        .map_err(|e| EngineError::Invalid(format!("invalid archive: {what}: {e}")))
}

/// `name` (from the manifest) inside `dir`, refusing anything that would leave it.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, EngineError> {
    let p = Path::new(name);
    if name.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(EngineError::Invalid(format!(
            "invalid archive: path {name:?} in manifest.json leaves the archive"
        )));
    }
    let full = dir.join(p);
    let meta = std::fs::symlink_metadata(&full).map_err(|e| {
        EngineError::Invalid(format!(
            "invalid archive: {name} named in manifest.json: {e}"
        ))
    })?;
    if !meta.is_file() {
        return Err(EngineError::Invalid(format!(
            "invalid archive: {name} is not a regular file"
        )));
    }
    Ok(full)
}

/// Applies one layer tar to `root`, honouring whiteouts.
fn apply_layer(layer: &Path, root: &Path) -> Result<(), EngineError> {
    let bad = |e: std::io::Error| EngineError::Invalid(format!("invalid layer: {e}"));
    let f = std::fs::File::open(layer).map_err(bad)?;
    let mut ar = tar::Archive::new(f);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_unpack_xattrs(false);
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(EngineError::Invalid(format!(
                "invalid layer: entry {} leaves the root",
                path.display()
            )));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let parent = root.join(path.parent().unwrap_or(Path::new("")));
        match name.as_deref() {
            Some(".wh..wh..opq") => {
                if let Ok(entries) = std::fs::read_dir(&parent) {
                    for e in entries.flatten() {
                        remove_any(&e.path());
                    }
                }
            }
            Some(n) if n.starts_with(".wh.") => remove_any(&parent.join(&n[4..])),
            _ => {
                let target = root.join(&path);
                // A different kind of entry replaces what the lower layer had there.
                if let Ok(old) = std::fs::symlink_metadata(&target)
                    && !(old.is_dir() && entry.header().entry_type().is_dir())
                {
                    remove_any(&target);
                }
                entry.unpack_in(root).map_err(bad)?;
            }
        }
    }
    Ok(())
}

fn remove_any(p: &Path) {
    let _ = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => Ok(()),
    };
}

impl ImageStore {
    /// Loads the `docker save` archive at `archive`. Blocking.
    pub fn load(&self, archive: &Path) -> Result<Vec<Loaded>, EngineError> {
        let work = tempfile::Builder::new()
            .prefix(IMPORT_PREFIX)
            .tempdir_in(&self.dir)
            .map_err(EngineError::io("creating the load directory"))?;
        let unpacked = work.path().join("archive");
        std::fs::create_dir(&unpacked).map_err(EngineError::io("creating the load directory"))?;
        std::fs::File::open(archive)
            .and_then(|f| {
                let mut ar = tar::Archive::new(f);
                ar.set_preserve_permissions(false);
                ar.set_unpack_xattrs(false);
                ar.unpack(&unpacked)
            })
            .map_err(|e| EngineError::Invalid(format!("invalid archive: not a tar: {e}")))?;
        let manifest: Vec<ManifestEntry> =
            read_json(&unpacked.join("manifest.json"), "manifest.json")?;
        if manifest.is_empty() {
            return Err(EngineError::Invalid(
                "invalid archive: manifest.json names no image".into(),
            ));
        }
        let mut out = Vec::new();
        for entry in manifest {
            let config_path = inside(&unpacked, &entry.config)?;
            let config: ConfigFile = read_json(&config_path, &entry.config)?;
            let layers: Vec<LoadedLayer> = entry
                .layers
                .iter()
                .map(|l| inside(&unpacked, l).and_then(LoadedLayer::read))
                .collect::<Result<_, _>>()?;
            check_diff_ids(&entry.config, &config, &layers)?;
            let image_config = config.config.to_image();
            let tags = entry.repo_tags.unwrap_or_default();
            // Docker's image id: the digest of the config file, when the config pins the layers
            // (lists their diff ids, checked above); otherwise the layers' digest, as an import.
            let config_id = if config.rootfs.diff_ids.is_empty() {
                None
            } else {
                Some(format!("sha256:{}", file_sha256(&config_path)?))
            };
            let origin = Origin {
                id: config_id.clone(),
                ..Origin::default()
            };
            let known = |digest: &str| {
                self.lock()
                    .values()
                    .find(|i| !i.builtin && (i.id == digest || i.saved_layer == digest))
                    .cloned()
            };
            if layers.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "invalid archive: image {} has no layers",
                    entry.config
                )));
            }
            let image = match (config_id.as_deref().and_then(known), layers.as_slice()) {
                (Some(img), _) => img,
                (None, [one]) => match known(&one.layer.diff_id) {
                    Some(img) => img,
                    None => self.import_with(&one.path, None, image_config, origin)?,
                },
                (None, many) => {
                    let root = work.path().join(format!("rootfs-{}", out.len()));
                    std::fs::create_dir(&root)
                        .map_err(EngineError::io("creating the load directory"))?;
                    for l in many {
                        apply_layer(&l.path, &root)?;
                    }
                    let tar = work.path().join(format!("merged-{}.tar", out.len()));
                    crate::commit::write_merged_tar(
                        &tar,
                        &work.path().join(".no-upper"),
                        Some(&root),
                        &HashSet::new(),
                    )
                    .map_err(EngineError::io("packing the loaded layers"))?;
                    self.import_with(&tar, None, image_config, origin)?
                }
            };
            self.keep_layers(&image.id, &layers, &config_path, config.history)?;
            for t in &tags {
                self.tag(&image.id, t)?;
            }
            out.push(Loaded { id: image.id, tags });
        }
        Ok(out)
    }
}
