//! `docker diff`: what a container changed in its root filesystem.
//!
//! Method: a container's root is an overlay mount whose lower layer is the image's unpacked
//! root (or the host's `/` for the built-in `host` image) and whose upper layer is
//! `<container dir>/rootfs-upper`, kept across restarts until the container is removed. Every
//! change the container made is an entry of the upper layer, so the diff is a walk of the upper
//! layer, compared entry by entry with the lower one:
//! - a whiteout (a character device 0:0, overlayfs' mark of a deletion) is `Deleted` (2);
//! - an entry the lower layer also has is `Modified` (0), except a directory that is only in the
//!   upper layer because something below it changed: it is `Modified` only when something below
//!   it is reported or its mode or owner changed;
//! - anything else is `Added` (1), and so is everything under an added directory.
//!
//! Mount points are not changes (Docker hides them the same way): `/dev`, `/proc`, `/sys`,
//! `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` and the destinations of the container's
//! volumes, binds and tmpfs mounts. The walk needs no mount and reads the upper layer of a
//! running container as it is at that moment. Changes come out sorted by path.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::Container;
use crate::runtime::Rootfs;

/// One change, in Docker's `FilesystemChange` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    pub path: String,
    /// 0 = modified, 1 = added, 2 = deleted.
    pub kind: u8,
}

pub const MODIFIED: u8 = 0;
pub const ADDED: u8 = 1;
pub const DELETED: u8 = 2;

/// Paths the runtime mounts over in every container.
const RUNTIME_MOUNTS: [&str; 6] = [
    "/dev",
    "/proc",
    "/sys",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
];

impl Engine {
    /// The container's changes to its root filesystem (see the module doc).
    pub async fn changes(&self, reference: &str) -> Result<Vec<Change>, EngineError> {
        let c = self.container(reference)?;
        let (upper, lower) = self.layers(&c);
        let skip = mount_points(&c);
        tokio::task::spawn_blocking(move || diff(&upper, lower.as_deref(), &skip))
            .await
            .map_err(|e| EngineError::Io {
                context: "walking the container's filesystem".into(),
                source: std::io::Error::other(e),
            })?
    }

    /// The container's upper layer and the lower layer it sits on (`None` when its image is
    /// gone).
    pub(crate) fn layers(&self, c: &Container) -> (PathBuf, Option<PathBuf>) {
        let upper = c.dir.join(crate::runtime::UPPER_DIR);
        let lower =
            self.images
                .get(&c.config.image_id)
                .ok()
                .map(|img| match self.images.rootfs(&img) {
                    Rootfs::Host => PathBuf::from("/"),
                    Rootfs::Dir(d) => d,
                });
        (upper, lower)
    }
}

/// The container paths that are mount points rather than changes.
pub(crate) fn mount_points(c: &Container) -> HashSet<String> {
    let mut skip: HashSet<String> = RUNTIME_MOUNTS.iter().map(|s| (*s).to_owned()).collect();
    let st = c.state();
    let dests = c
        .config
        .spec
        .mounts
        .iter()
        .map(|m| m.destination.clone())
        .chain(st.mounts.iter().map(|m| m.spec.destination.clone()))
        .chain(c.config.spec.security.tmpfs.keys().cloned());
    for d in dests {
        let clean = format!("/{}", d.trim_matches('/'));
        skip.insert(clean);
    }
    skip
}

/// Whether an upper-layer entry is an overlayfs whiteout.
pub(crate) fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether an upper-layer directory hides the lower one entirely.
pub(crate) fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, "trusted.overlay.opaque"), Ok(Some(v)) if v == b"y")
}

/// The changes of `upper` over `lower`, sorted by path (no upper layer: none).
pub fn diff(
    upper: &Path,
    lower: Option<&Path>,
    skip: &HashSet<String>,
) -> Result<Vec<Change>, EngineError> {
    let mut out = Vec::new();
    if upper.is_dir() {
        walk(upper, lower, "", skip, &mut out)?;
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn read_sorted(dir: &Path) -> Result<Vec<std::fs::DirEntry>, EngineError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(EngineError::io(format!("reading {}", dir.display())))?
        .collect::<Result<_, _>>()
        .map_err(EngineError::io(format!("reading {}", dir.display())))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Reports the entries of `upper` (container path `rel`); returns whether it reported any.
fn walk(
    upper: &Path,
    lower: Option<&Path>,
    rel: &str,
    skip: &HashSet<String>,
    out: &mut Vec<Change>,
) -> Result<bool, EngineError> {
    let before = out.len();
    for entry in read_sorted(upper)? {
        let name = entry.file_name();
        let path = format!("{rel}/{}", name.to_string_lossy());
        if skip.contains(&path) {
            continue;
        }
        let up = entry.path();
        let meta = std::fs::symlink_metadata(&up)
            .map_err(EngineError::io(format!("reading {}", up.display())))?;
        let low = lower.map(|l| l.join(&name));
        let low_meta = low
            .as_deref()
            .and_then(|l| std::fs::symlink_metadata(l).ok());
        if is_whiteout(&meta) {
            if low_meta.is_some() {
                out.push(Change {
                    path,
                    kind: DELETED,
                });
            }
            continue;
        }
        let Some(low_meta) = low_meta else {
            out.push(Change {
                path: path.clone(),
                kind: ADDED,
            });
            if meta.is_dir() {
                added_below(&up, &path, skip, out)?;
            }
            continue;
        };
        if meta.is_dir() && low_meta.is_dir() {
            let opaque = is_opaque(&up);
            let slot = out.len();
            let below = walk(
                &up,
                if opaque { None } else { low.as_deref() },
                &path,
                skip,
                out,
            )?;
            let own = opaque
                || meta.mode() != low_meta.mode()
                || meta.uid() != low_meta.uid()
                || meta.gid() != low_meta.gid();
            if below || own {
                out.insert(
                    slot,
                    Change {
                        path,
                        kind: MODIFIED,
                    },
                );
            }
        } else {
            out.push(Change {
                path,
                kind: MODIFIED,
            });
        }
    }
    Ok(out.len() > before)
}

/// Everything under a directory that only the upper layer has: added.
fn added_below(
    dir: &Path,
    rel: &str,
    skip: &HashSet<String>,
    out: &mut Vec<Change>,
) -> Result<(), EngineError> {
    for entry in read_sorted(dir)? {
        let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
        if skip.contains(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(entry.path()).map_err(EngineError::io(format!(
            "reading {}",
            entry.path().display()
        )))?;
        if is_whiteout(&meta) {
            continue;
        }
        out.push(Change {
            path: path.clone(),
            kind: ADDED,
        });
        if meta.is_dir() {
            added_below(&entry.path(), &path, skip, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(changes: &[Change]) -> Vec<(&str, u8)> {
        changes.iter().map(|c| (c.path.as_str(), c.kind)).collect()
    }

    #[test]
    fn added_modified_and_untouched_parents() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        for d in [&lower, &upper] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
            std::fs::create_dir_all(d.join("var/log")).unwrap();
        }
        std::fs::write(lower.join("etc/passwd"), "a").unwrap();
        std::fs::write(upper.join("etc/passwd"), "b").unwrap();
        std::fs::write(upper.join("test"), "").unwrap();
        std::fs::create_dir_all(upper.join("new/sub")).unwrap();
        // Copied up for a mount point only: not a change.
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        let skip: HashSet<String> = ["/etc/hosts".to_owned()].into();
        let c = diff(&upper, Some(&lower), &skip).unwrap();
        assert_eq!(
            kinds(&c),
            [
                ("/etc", MODIFIED),
                ("/etc/passwd", MODIFIED),
                ("/new", ADDED),
                ("/new/sub", ADDED),
                ("/test", ADDED),
            ]
        );
    }
}
