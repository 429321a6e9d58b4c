//! The image store: images imported from tar streams (`docker import`, `berth image import`),
//! unpacked under `<root>/images/<hex>/rootfs` (a loaded image also keeps the layer tars and
//! config file it came with, under `layers/` and `config.json` beside it), and the built-in `host` image whose root filesystem
//! is the host's `/`. Resolves references (name, name:tag, docker.io/library/name, id, id prefix).

mod history;
mod layers;
mod load;
mod save;
mod tag;

pub use history::HistoryRow;
pub use layers::{HistoryEntry, Layer};
pub use load::Loaded;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use berth_state::records::{LoadWarning, RecordDir};

use crate::error::EngineError;
use crate::runtime::Rootfs;

/// The reference of the built-in image.
pub const HOST_IMAGE: &str = "host";

/// The parts of an image's config that a container inherits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// `EXPOSE`d ports (`8000/tcp`).
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub user: String,
    /// `VOLUME` paths.
    pub volumes: Vec<String>,
    pub stop_signal: String,
    /// The image's `HEALTHCHECK`, inherited by its containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthConfig>,
}

/// What an image records about where it came from (`docker commit`, `docker load`).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The image the committed container ran (`Parent`).
    pub parent: String,
    /// The committed container's id.
    pub container: String,
    pub comment: String,
    pub author: String,
    /// The id to give a new image instead of the tar's sha256 (`docker load`: the digest of the
    /// image's config file, Docker's image id).
    pub id: Option<String>,
}

/// One image record (`image.json`); missing fields decode to their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Image {
    /// `sha256:<64 hex>`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub size: u64,
    pub config: ImageConfig,
    /// True for the built-in `host` image.
    #[serde(default)]
    pub builtin: bool,
    /// `docker commit`: the image of the committed container, the container, its message and
    /// author.
    pub parent: String,
    pub container: String,
    pub comment: String,
    pub author: String,
    /// The sha256 of the layer tar `docker save` wrote for this image, so that loading that
    /// archive again finds this image instead of making a copy (`images/load.rs`).
    pub saved_layer: String,
    /// The layers a loaded image came with, bottom first (`RootFS.Layers`); their tars and the
    /// config file are kept in the image's directory so that `docker save` gives them back
    /// (`images/layers.rs`). Empty for images Berth made (import, commit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// The `history` of the config a loaded image came with (`docker history`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

impl Image {
    /// The hex part of the id (directory name).
    pub fn hex(&self) -> &str {
        self.id.strip_prefix("sha256:").unwrap_or(&self.id)
    }
}

/// The store.
pub struct ImageStore {
    dir: PathBuf,
    records: RecordDir<Image>,
    images: Mutex<BTreeMap<String, Image>>,
    load_warnings: Vec<LoadWarning>,
}

/// Prefix of the work directory an import unpacks into (hidden: never taken for an image).
const IMPORT_PREFIX: &str = ".import-";

/// Removes the work directories (and uploaded tars) of imports a crash interrupted.
fn sweep_import_dirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if name.starts_with(IMPORT_PREFIX) || (!is_dir && name.starts_with("import-")) {
            tracing::info!(path = %e.path().display(), "removing an interrupted import");
            let removed = if is_dir {
                berth_state::remove_dir_durable(&e.path())
            } else {
                std::fs::remove_file(e.path()).map_err(|source| berth_state::StateError::Write {
                    path: e.path(),
                    source,
                })
            };
            if let Err(err) = removed {
                tracing::warn!(path = %e.path().display(), "removing an interrupted import: {err}");
            }
        }
    }
}

/// Flushes every dirty file of the filesystem holding `dir` (the unpacked image files, before
/// the record that says the image is complete).
fn sync_filesystem(dir: &Path) -> Result<(), EngineError> {
    let f = std::fs::File::open(dir).map_err(EngineError::io("opening the image directory"))?;
    nix::unistd::syncfs(&f).map_err(|e| EngineError::Io {
        context: "syncing the unpacked image".into(),
        source: e.into(),
    })
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `reference` (a tag, or an id prefix of at least 4 hex digits naming one image).
fn find<'a>(
    images: impl Iterator<Item = &'a Image> + Clone,
    reference: &str,
) -> Result<Image, EngineError> {
    let wanted = normalize_reference(reference);
    if let Some(img) = images
        .clone()
        .find(|i| i.repo_tags.iter().any(|t| t == &wanted))
    {
        return Ok(img.clone());
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut hits = images.filter(|i| i.hex().starts_with(hex));
        if let (Some(img), None) = (hits.next(), hits.next()) {
            return Ok(img.clone());
        }
    }
    Err(EngineError::NoSuchImage(wanted))
}

/// The root filesystem of `image` in the image directory `dir`.
fn rootfs_in(dir: &Path, image: &Image) -> Rootfs {
    if image.builtin {
        Rootfs::Host
    } else {
        Rootfs::Dir(dir.join(image.hex()).join("rootfs"))
    }
}

fn host_image() -> Image {
    let digest = Sha256::digest(b"berth built-in image: host root filesystem");
    Image {
        id: format!("sha256:{}", hex::encode(digest)),
        repo_tags: vec!["host:latest".to_owned()],
        created: DateTime::<Utc>::UNIX_EPOCH,
        size: 0,
        config: ImageConfig {
            cmd: Some(vec!["sh".to_owned()]),
            env: vec![DEFAULT_PATH.to_owned()],
            ..Default::default()
        },
        builtin: true,
        ..Default::default()
    }
}

/// Normalises a reference the way the docker CLI spells it: `docker.io/library/x` → `x`,
/// a missing tag → `:latest`.
pub fn normalize_reference(reference: &str) -> String {
    let r = reference.strip_prefix("docker.io/").unwrap_or(reference);
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || r.contains('@') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    }
}

/// Checks a `name[:tag]` given to import.
fn validate_tag(tag: &str) -> Result<(), EngineError> {
    let ok = !tag.is_empty()
        && tag.len() <= 255
        && !tag.contains("..")
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b))
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "invalid reference format: {tag:?} (lower-case letters, digits, '.', '_', '-', '/' and one ':' tag)"
        )))
    }
}

impl ImageStore {
    /// Opens the store under `<root>/images`, with the built-in `host` image. Records go through
    /// one [`RecordDir`]: an unreadable `image.json` or a stray file is quarantined (see
    /// [`Self::load_warnings`]), an image directory without a record is a leftover and removed
    /// unless it holds files (kept and reported), and the work directories of imports a crash
    /// interrupted (`.import-*`) are removed.
    pub fn open(root: &Path) -> Result<Self, EngineError> {
        let records: RecordDir<Image> =
            RecordDir::open(root.join("images"), "image.json", "image")?;
        let dir = records.path().to_owned();
        sweep_import_dirs(&dir);
        // The uploaded tars of imports a crash interrupted (`<root>/tmp/import-*.tar`).
        sweep_import_dirs(&root.join("tmp"));
        let mut images = BTreeMap::new();
        let host = host_image();
        images.insert(host.id.clone(), host);
        let loaded = records.load_all()?;
        for (_, img) in loaded.records {
            images.insert(img.id.clone(), img);
        }
        Ok(ImageStore {
            dir,
            records,
            images: Mutex::new(images),
            load_warnings: loaded.warnings,
        })
    }

    /// What could not be loaded at open (already logged).
    pub fn load_warnings(&self) -> &[LoadWarning] {
        &self.load_warnings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Image>> {
        berth_state::lock(&self.images)
    }

    /// All images.
    pub fn list(&self) -> Vec<Image> {
        self.lock().values().cloned().collect()
    }

    /// Resolves a reference to an image.
    pub fn get(&self, reference: &str) -> Result<Image, EngineError> {
        find(self.lock().values(), reference)
    }

    /// The root filesystem a container of `image` runs on.
    pub fn rootfs(&self, image: &Image) -> Rootfs {
        rootfs_in(&self.dir, image)
    }

    /// Resolves `reference` among the images of the engine on `root` without opening the store:
    /// only `image.json` records are read, nothing is swept, quarantined or written, so it is
    /// safe while a daemon runs on `root` (`berth plugin check --image`). Returns the image and
    /// the root filesystem a container of it runs on.
    pub fn find_read_only(root: &Path, reference: &str) -> Result<(Image, Rootfs), EngineError> {
        let dir = root.join("images");
        let mut images = vec![host_image()];
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let Ok(bytes) = std::fs::read(entry.path().join("image.json")) else {
                    continue;
                };
                if let Ok(img) = serde_json::from_slice::<Image>(&bytes) {
                    images.push(img);
                }
            }
        }
        let image = find(images.iter(), reference)?;
        let rootfs = rootfs_in(&dir, &image);
        Ok((image, rootfs))
    }

    /// Imports the tar file at `tar_path` as an image tagged `repo` (if given), applying Dockerfile
    /// `changes` (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`). Blocking: call from a blocking thread.
    pub fn import(
        &self,
        tar_path: &Path,
        repo: Option<&str>,
        changes: &[String],
    ) -> Result<Image, EngineError> {
        let mut config = ImageConfig {
            env: vec![DEFAULT_PATH.to_owned()],
            ..Default::default()
        };
        for change in changes {
            apply_change(&mut config, change)?;
        }
        self.import_with(tar_path, repo, config, Origin::default())
    }

    /// Imports the tar file at `tar_path` (a root filesystem) as an image with `config`, tagged
    /// `repo` if given. The id is the sha256 of the tar, unless `origin` gives one. Blocking.
    pub fn import_with(
        &self,
        tar_path: &Path,
        repo: Option<&str>,
        config: ImageConfig,
        origin: Origin,
    ) -> Result<Image, EngineError> {
        let tag = repo.map(normalize_reference);
        if let Some(t) = &tag {
            validate_tag(t)?;
        }
        let mut hasher = Sha256::new();
        let mut f =
            std::fs::File::open(tar_path).map_err(EngineError::io("opening the uploaded tar"))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(EngineError::io("reading the uploaded tar"))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        let hex = match &origin.id {
            Some(id) => id.strip_prefix("sha256:").unwrap_or(id).to_owned(),
            None => hex::encode(hasher.finalize()),
        };
        let id = format!("sha256:{hex}");
        let idir = self.dir.join(&hex);
        let exists = self.lock().contains_key(&id);
        // A new image unpacks into a work directory of its own (two imports of the same tar
        // never share one), synced, and renamed into place with its record below.
        let work = if exists {
            None
        } else {
            let work = tempfile::Builder::new()
                .prefix(IMPORT_PREFIX)
                .tempdir_in(&self.dir)
                .map_err(EngineError::io("creating the import directory"))?;
            let rootfs = work.path().join("rootfs");
            std::fs::create_dir(&rootfs)
                .map_err(EngineError::io("creating the image directory"))?;
            let unpacked = std::fs::File::open(tar_path).and_then(|f| {
                let mut archive = tar::Archive::new(f);
                archive.set_preserve_permissions(true);
                archive.set_preserve_ownerships(true);
                archive.set_unpack_xattrs(false);
                archive.unpack(&rootfs)
            });
            if let Err(e) = unpacked {
                if e.raw_os_error() == Some(nix::libc::ENOSPC)
                    || e.kind() == std::io::ErrorKind::StorageFull
                {
                    return Err(EngineError::Io {
                        context: "importing image: unpacking".into(),
                        source: e,
                    });
                }
                return Err(EngineError::Invalid(format!(
                    "importing image: not a valid tar archive: {e}"
                )));
            }
            sync_filesystem(work.path())?;
            Some(work)
        };
        let mut images = self.lock();
        // Move the tag to the new image.
        if let Some(t) = &tag {
            for img in images.values_mut() {
                if img.id != id && img.repo_tags.contains(t) {
                    img.repo_tags.retain(|x| x != t);
                    if !img.builtin {
                        self.records.store(img.hex(), img)?;
                    }
                }
            }
        }
        let image = match images.get(&id) {
            Some(existing) => {
                let mut img = existing.clone();
                if let Some(t) = tag.as_ref().filter(|t| !img.repo_tags.contains(t)) {
                    img.repo_tags.push(t.clone());
                }
                img.config = config;
                img
            }
            None => Image {
                id: id.clone(),
                repo_tags: tag.into_iter().collect(),
                created: Utc::now(),
                size,
                config,
                builtin: false,
                parent: origin.parent,
                container: origin.container,
                comment: origin.comment,
                author: origin.author,
                ..Default::default()
            },
        };
        match work {
            // Another import of the same tar finished first: its files are the image's.
            Some(work) if images.contains_key(&id) => drop(work),
            Some(work) => {
                berth_state::store_json(&work.path().join("image.json"), &image)?;
                // A directory left without a record (an older crash) gives way to this one.
                if idir.exists() {
                    berth_state::remove_dir_durable(&idir)?;
                }
                let work = work.keep();
                if let Err(e) = std::fs::rename(&work, &idir) {
                    let _ = berth_state::remove_dir_durable(&work);
                    return Err(EngineError::io("moving the imported image into place")(e));
                }
                std::fs::File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(EngineError::io("syncing the image directory"))?;
            }
            None => self.records.store(&hex, &image)?,
        }
        images.insert(id, image.clone());
        Ok(image)
    }

    /// Removes an image (or just one of its tags when it has several). `users` are containers
    /// created from it.
    pub fn remove(
        &self,
        reference: &str,
        users: &[String],
    ) -> Result<Vec<(String, String)>, EngineError> {
        let image = self.get(reference)?;
        if image.builtin {
            return Err(EngineError::Forbidden(format!(
                "{} is a built-in image and cannot be removed",
                reference
            )));
        }
        let wanted = normalize_reference(reference);
        let mut images = self.lock();
        if image.repo_tags.len() > 1 && image.repo_tags.contains(&wanted) {
            let mut img = image.clone();
            img.repo_tags.retain(|t| t != &wanted);
            self.records.store(image.hex(), &img)?;
            images.insert(img.id.clone(), img);
            return Ok(vec![("Untagged".to_owned(), wanted)]);
        }
        if let Some(user) = users.first() {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
                &user[..user.len().min(12)],
                &image.hex()[..12]
            )));
        }
        self.records.remove(image.hex())?;
        images.remove(&image.id);
        let mut out: Vec<_> = image
            .repo_tags
            .iter()
            .map(|t| ("Untagged".to_owned(), t.clone()))
            .collect();
        out.push(("Deleted".to_owned(), image.id.clone()));
        Ok(out)
    }
}

/// Applies one Dockerfile instruction of `docker import -c` or `docker commit -c`.
pub fn apply_change(config: &mut ImageConfig, change: &str) -> Result<(), EngineError> {
    let (instr, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((change.trim(), ""));
    let rest = rest.trim();
    let words = |s: &str| -> Vec<String> {
        serde_json::from_str::<Vec<String>>(s)
            .unwrap_or_else(|_| vec!["/bin/sh".to_owned(), "-c".to_owned(), s.to_owned()])
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(words(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(words(rest)),
        "WORKDIR" => config.working_dir = rest.to_owned(),
        "USER" => config.user = rest.to_owned(),
        "STOPSIGNAL" => config.stop_signal = rest.to_owned(),
        "EXPOSE" => {
            for port in rest.split_whitespace() {
                let port = if port.contains('/') {
                    port.to_owned()
                } else {
                    format!("{port}/tcp")
                };
                if !config.exposed_ports.contains(&port) {
                    config.exposed_ports.push(port);
                }
            }
        }
        "VOLUME" => {
            let paths = serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_owned).collect());
            for p in paths {
                if !config.volumes.contains(&p) {
                    config.volumes.push(p);
                }
            }
        }
        "LABEL" => {
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            config.labels.insert(
                k.trim().trim_matches('"').to_owned(),
                v.trim().trim_matches('"').to_owned(),
            );
        }
        "ENV" => {
            let kv = match rest.split_once('=') {
                Some((k, v)) => format!("{}={}", k.trim(), v.trim()),
                None => {
                    let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    format!("{k}={}", v.trim())
                }
            };
            let key = kv.split('=').next().unwrap_or_default().to_owned();
            config
                .env
                .retain(|e| e.split('=').next() != Some(key.as_str()));
            config.env.push(kv);
        }
        other => {
            return Err(EngineError::Invalid(format!(
                "change {other:?} is not supported (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, VOLUME, LABEL, STOPSIGNAL are)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise() {
        assert_eq!(normalize_reference("busybox"), "busybox:latest");
        assert_eq!(
            normalize_reference("docker.io/library/busybox"),
            "busybox:latest"
        );
        assert_eq!(normalize_reference("bb:1"), "bb:1");
        assert_eq!(
            normalize_reference("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
    }

    #[test]
    fn import_tag_resolve_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        assert!(store.get("host").unwrap().builtin);
        let tar_path = dir.path().join("img.tar");
        {
            let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            // The caller's own ids: unpacking keeps ownership, which only root may give away
            // (the engine's unit tests pass as any user).
            h.set_uid(nix::unistd::geteuid().as_raw().into());
            h.set_gid(nix::unistd::getegid().as_raw().into());
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, "etc/hello", &b"hi\n"[..]).unwrap();
            b.finish().unwrap();
        }
        let img = store
            .import(&tar_path, Some("bb"), &["CMD [\"sh\"]".to_owned()])
            .unwrap();
        assert_eq!(img.repo_tags, ["bb:latest"]);
        assert_eq!(img.config.cmd, Some(vec!["sh".to_owned()]));
        let Rootfs::Dir(root) = store.rootfs(&img) else {
            panic!("expected a dir rootfs")
        };
        assert_eq!(std::fs::read(root.join("etc/hello")).unwrap(), b"hi\n");
        assert_eq!(store.get(&img.hex()[..12]).unwrap().id, img.id);
        assert!(
            matches!(store.get("nope"), Err(EngineError::NoSuchImage(m)) if m == "nope:latest")
        );
        assert!(matches!(
            store.remove("bb", &["c".repeat(64)]),
            Err(EngineError::Conflict(_))
        ));
        store.remove("bb", &[]).unwrap();
        assert!(!root.exists());
        assert!(store.import(&tar_path, Some("../x"), &[]).is_err());
    }
}
