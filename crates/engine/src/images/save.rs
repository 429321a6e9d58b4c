//! `docker save` (`GET /images/{name}/get`, `GET /images/get?names=`): images as one tar in the
//! format `docker load` reads. A loaded image is written back as it came: its kept layer tars
//! and config file, byte for byte (`layers.rs`). Any other image (imported, committed) is one
//! layer packed from its root filesystem: `<layer>/layer.tar` (entries sorted, so saving an
//! unchanged image twice gives the same bytes), `<layer>/VERSION` and `<layer>/json` (the legacy
//! layout), `<config>.json` (the whole image config, `Healthcheck` included, one history entry
//! and the layer's digest as its only `diff_id`), `manifest.json` and `repositories`. An image
//! named by tag carries that tag (`RepoTags`); one named by id none, as in Docker. The packed
//! layer's digest is recorded on the image, so loading the archive again finds it (see
//! `load.rs`).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Image, ImageConfig, ImageStore, normalize_reference};
use crate::error::EngineError;
use crate::runtime::Rootfs;

/// One entry of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ManifestEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// The image config file (the parts Berth writes and reads).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    #[serde(default)]
    pub config: ContainerConfigFile,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<super::HistoryEntry>,
}

/// `config` of the image config file, Docker's spelling.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct ContainerConfigFile {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub stop_signal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ContainerConfigFile {
    pub(super) fn from_image(c: &ImageConfig) -> Self {
        let set = |v: &[String]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|p| (p.clone(), serde_json::json!({})))
                    .collect()
            })
        };
        ContainerConfigFile {
            cmd: c.cmd.clone(),
            entrypoint: c.entrypoint.clone(),
            env: Some(c.env.clone()),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
            labels: (!c.labels.is_empty()).then(|| c.labels.clone()),
            exposed_ports: set(&c.exposed_ports),
            volumes: set(&c.volumes),
            stop_signal: c.stop_signal.clone(),
            healthcheck: c.healthcheck.clone(),
        }
    }

    pub(super) fn to_image(&self) -> ImageConfig {
        let keys = |m: &Option<BTreeMap<String, serde_json::Value>>| {
            m.as_ref()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        ImageConfig {
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone().unwrap_or_default(),
            working_dir: self.working_dir.clone(),
            exposed_ports: keys(&self.exposed_ports),
            labels: self.labels.clone().unwrap_or_default(),
            user: self.user.clone(),
            volumes: keys(&self.volumes),
            stop_signal: self.stop_signal.clone(),
            healthcheck: self.healthcheck.clone(),
        }
    }
}

/// The config file of an image saved as one layer packed from its root (`layer_hex`), with the
/// whole image config and one history entry, as `docker history` shows the image.
fn packed_config(img: &Image, layer_hex: &str) -> ConfigFile {
    ConfigFile {
        architecture: "amd64".into(),
        os: "linux".into(),
        created: Some(img.created),
        config: ContainerConfigFile::from_image(&img.config),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![format!("sha256:{layer_hex}")],
        },
        history: super::history::own_history(img),
    }
}

/// sha256 of a file, hex.
pub(super) fn file_sha256(path: &Path) -> Result<String, EngineError> {
    let mut f = std::fs::File::open(path).map_err(EngineError::io("opening a layer"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(EngineError::io("reading a layer"))?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, data)
}

impl ImageStore {
    /// Writes the images `refs` name as a `docker save` archive at `out`; layers are built in
    /// `tmp_dir`. Blocking.
    pub fn save(&self, refs: &[String], out: &Path, tmp_dir: &Path) -> Result<(), EngineError> {
        if refs.is_empty() {
            return Err(EngineError::Invalid("no image names given to save".into()));
        }
        let mut wanted: Vec<(Image, Vec<String>)> = Vec::new();
        for r in refs {
            let img = self.get(r)?;
            if img.builtin {
                return Err(EngineError::Forbidden(format!(
                    "{r} is the built-in host image (the host's root filesystem) and cannot be saved"
                )));
            }
            let tag = normalize_reference(r);
            let tags: Vec<String> = img
                .repo_tags
                .iter()
                .filter(|t| **t == tag)
                .cloned()
                .collect();
            match wanted.iter_mut().find(|(i, _)| i.id == img.id) {
                Some((_, t)) => t.extend(tags),
                None => wanted.push((img, tags)),
            }
        }
        let file = std::fs::File::create(out).map_err(EngineError::io("creating the archive"))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(file));
        let mut manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut written = HashSet::new();
        for (img, tags) in wanted {
            let Rootfs::Dir(rootfs) = self.rootfs(&img) else {
                continue;
            };
            // The layers and config a loaded image came with, or one layer packed from its root
            // (kept alive until written).
            let mut packed = None;
            let (config_bytes, layers): (Vec<u8>, Vec<(String, std::path::PathBuf)>) =
                match self.kept(&img) {
                    Some((config, files)) => {
                        let layers = img
                            .layers
                            .iter()
                            .zip(files)
                            .map(|(l, f)| (l.diff_id.trim_start_matches("sha256:").to_owned(), f))
                            .collect();
                        (config, layers)
                    }
                    None => {
                        let layer = tempfile::NamedTempFile::new_in(tmp_dir)
                            .map_err(EngineError::io("creating a layer file"))?
                            .into_temp_path();
                        crate::commit::write_merged_tar(
                            &layer,
                            &tmp_dir.join(".no-upper"),
                            Some(&rootfs),
                            &HashSet::new(),
                        )
                        .map_err(EngineError::io("writing the image's layer"))?;
                        let layer_hex = file_sha256(&layer)?;
                        self.remember_saved_layer(&img.id, &format!("sha256:{layer_hex}"))?;
                        let config = packed_config(&img, &layer_hex);
                        let bytes = serde_json::to_vec(&config).map_err(|e| {
                            EngineError::Invalid(format!("encoding the image config: {e}"))
                        })?;
                        let path = layer.to_path_buf();
                        packed = Some(layer);
                        (bytes, vec![(layer_hex, path)])
                    }
                };
            let config_hex = hex::encode(Sha256::digest(&config_bytes));
            let io = EngineError::io("writing the archive");
            let res = (|| -> std::io::Result<()> {
                for (layer_hex, path) in &layers {
                    if written.insert(layer_hex.clone()) {
                        append_bytes(&mut b, &format!("{layer_hex}/VERSION"), b"1.0", 0o644)?;
                        let json = serde_json::json!({"id": layer_hex, "created": img.created});
                        append_bytes(
                            &mut b,
                            &format!("{layer_hex}/json"),
                            json.to_string().as_bytes(),
                            0o644,
                        )?;
                        b.append_path_with_name(path, format!("{layer_hex}/layer.tar"))?;
                    }
                }
                append_bytes(&mut b, &format!("{config_hex}.json"), &config_bytes, 0o644)
            })();
            res.map_err(io)?;
            drop(packed);
            let top = layers.last().map(|(h, _)| h.clone()).unwrap_or_default();
            for t in &tags {
                if let Some((repo, tag)) = t.rsplit_once(':') {
                    repositories
                        .entry(repo.to_owned())
                        .or_default()
                        .insert(tag.to_owned(), top.clone());
                }
            }
            manifest.push(ManifestEntry {
                config: format!("{config_hex}.json"),
                repo_tags: Some(tags),
                layers: layers
                    .iter()
                    .map(|(h, _)| format!("{h}/layer.tar"))
                    .collect(),
            });
        }
        let manifest = serde_json::to_vec(&manifest)
            .map_err(|e| EngineError::Invalid(format!("encoding the manifest: {e}")))?;
        let repositories = serde_json::to_vec(&repositories)
            .map_err(|e| EngineError::Invalid(format!("encoding repositories: {e}")))?;
        let done = (|| -> std::io::Result<()> {
            append_bytes(&mut b, "manifest.json", &manifest, 0o644)?;
            append_bytes(&mut b, "repositories", &repositories, 0o644)?;
            let mut w = b.into_inner()?;
            w.flush()
        })();
        done.map_err(EngineError::io("writing the archive"))
    }

    /// Records the digest of the layer `save` wrote for image `id`.
    fn remember_saved_layer(&self, id: &str, digest: &str) -> Result<(), EngineError> {
        let mut images = self.lock();
        if let Some(img) = images.get_mut(id)
            && img.saved_layer != digest
        {
            img.saved_layer = digest.to_owned();
            self.records.store(img.hex(), img)?;
        }
        Ok(())
    }
}
