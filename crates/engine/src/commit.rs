//! `docker commit`: a container's root filesystem as a new image.
//!
//! The container's root is an overlay (see `changes.rs`); the new image is its merged view,
//! built without mounting anything: the lower layer (the image's root) with the upper layer
//! applied (an upper entry replaces the lower one, a whiteout removes it, an opaque directory
//! hides the lower one's contents). That view is written as a tar into `<root>/tmp` and imported
//! like `docker import` does (the id is the tar's sha256), with the container's config (Cmd,
//! Entrypoint, Env, WorkingDir, Labels, User) plus the client's overrides and Dockerfile
//! `changes`, and `Parent` = the container's image. Runtime mount points keep the image's version
//! (`/etc/hosts`, ...); volume contents are not part of the image. A running container is frozen
//! while its files are read (`pause`, the default, as in Docker). Containers of the built-in
//! `host` image cannot be committed: their lower layer is the host's whole `/`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use crate::changes::{is_opaque, is_whiteout, mount_points};
use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::images::{Image, ImageConfig, Origin, apply_change};
use crate::runtime::Rootfs;

/// What `POST /commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// `repo[:tag]` for the new image.
    pub repo: Option<String>,
    /// Dockerfile instructions applied to the config (`CMD`, `EXPOSE`, ...).
    pub changes: Vec<String>,
    pub comment: String,
    pub author: String,
    /// Freeze a running container while its files are read.
    pub pause: bool,
    /// Config fields the client gave (the body of `POST /commit`), replacing the container's.
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub user: Option<String>,
    pub exposed_ports: Option<Vec<String>>,
}

impl Engine {
    /// Commits a container to a new image.
    pub async fn commit(
        self: &Arc<Self>,
        reference: &str,
        req: CommitRequest,
    ) -> Result<Image, EngineError> {
        let c = self.container(reference)?;
        let parent = self.images.get(&c.config.image_id).ok();
        if parent
            .as_ref()
            .is_some_and(|p| matches!(self.images.rootfs(p), Rootfs::Host))
        {
            return Err(EngineError::Forbidden(format!(
                "cannot commit container {}: it runs on the built-in host image, whose root filesystem is the host's",
                c.id()
            )));
        }
        let mut config = ImageConfig {
            cmd: c.config.spec.cmd.clone(),
            entrypoint: c.config.spec.entrypoint.clone(),
            env: c.config.spec.env.clone(),
            working_dir: c.config.spec.working_dir.clone(),
            labels: c.config.spec.labels.clone(),
            user: c.config.spec.user.clone(),
            // The container's healthcheck, already merged with its image's at create.
            healthcheck: c.config.spec.healthcheck.clone(),
            ..parent
                .as_ref()
                .map(|p| p.config.clone())
                .unwrap_or_default()
        };
        if config.cmd.is_none() && config.entrypoint.is_none() {
            config.cmd = parent.as_ref().and_then(|p| p.config.cmd.clone());
        }
        macro_rules! given {
            ($($f:ident),*) => { $( if let Some(v) = req.$f.clone() { config.$f = v.into(); } )* };
        }
        given!(env, working_dir, labels, user, exposed_ports);
        if let Some(cmd) = req.cmd.clone() {
            config.cmd = Some(cmd);
        }
        if let Some(ep) = req.entrypoint.clone() {
            config.entrypoint = Some(ep);
        }
        for change in &req.changes {
            apply_change(&mut config, change)?;
        }
        let (upper, lower) = self.layers(&c);
        let skip = mount_points(&c);
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(EngineError::io("creating the tmp dir"))?;
        // Named like an upload of `docker import`, so a crash leaves nothing after the next boot.
        let tar_path = tempfile::TempPath::try_from_path(
            tmp_dir.join(format!("import-{}.tar", berth_state::new_id())),
        )
        .map_err(EngineError::io("naming the commit's tar"))?;
        let freeze = req.pause && c.state().status == Status::Running && !c.state().paused;
        let _op = c.op.lock().await;
        if freeze {
            self.set_frozen(&c, true).await?;
        }
        let path = tar_path.to_path_buf();
        let written = tokio::task::spawn_blocking(move || {
            write_merged_tar(&path, &upper, lower.as_deref(), &skip)
        })
        .await;
        if freeze && let Err(e) = self.set_frozen(&c, false).await {
            tracing::warn!(id = c.id(), error = %e, "thawing a container after commit");
        }
        drop(_op);
        written
            .map_err(|e| EngineError::Io {
                context: "writing the container's filesystem".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(EngineError::io("writing the container's filesystem"))?;
        let origin = Origin {
            parent: parent.map(|p| p.id).unwrap_or_default(),
            container: c.id().to_owned(),
            comment: req.comment.clone(),
            author: req.author.clone(),
            id: None,
        };
        let engine = self.clone();
        let repo = req.repo.clone();
        let image = tokio::task::spawn_blocking(move || {
            engine
                .images
                .import_with(&tar_path, repo.as_deref(), config, origin)
        })
        .await
        .map_err(|e| EngineError::Io {
            context: "importing the committed filesystem".into(),
            source: std::io::Error::other(e),
        })??;
        let mut attrs = c.attributes();
        attrs.insert("comment".into(), req.comment);
        self.events.publish("container", "commit", c.id(), attrs);
        Ok(image)
    }
}

/// Writes the merged view of `upper` over `lower` as a tar at `path`.
pub(crate) fn write_merged_tar(
    path: &Path,
    upper: &Path,
    lower: Option<&Path>,
    skip: &HashSet<String>,
) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    b.follow_symlinks(false);
    let upper = upper.is_dir().then_some(upper);
    merged(&mut b, upper, lower, "", skip)?;
    let mut w = b.into_inner()?;
    std::io::Write::flush(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn names(dir: Option<&Path>) -> std::io::Result<BTreeSet<OsString>> {
    let mut out = BTreeSet::new();
    if let Some(d) = dir {
        for e in std::fs::read_dir(d)? {
            out.insert(e?.file_name());
        }
    }
    Ok(out)
}

fn merged<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    upper: Option<&Path>,
    lower: Option<&Path>,
    rel: &str,
    skip: &HashSet<String>,
) -> std::io::Result<()> {
    let mut all = names(upper)?;
    all.extend(names(lower)?);
    for name in all {
        let inner = format!("{rel}{}", name.to_string_lossy());
        // A runtime mount point or volume: the image's version, never the container's.
        let hidden = skip.contains(&format!("/{inner}"));
        let up = upper.map(|u| u.join(&name)).filter(|_| !hidden);
        let up_meta = up
            .as_deref()
            .and_then(|u| std::fs::symlink_metadata(u).ok());
        let low = lower.map(|l| l.join(&name));
        let low_meta = low
            .as_deref()
            .and_then(|l| std::fs::symlink_metadata(l).ok());
        let (src, meta, sub_upper, sub_lower) = match (&up_meta, &low_meta) {
            (Some(m), _) if is_whiteout(m) => continue,
            (Some(m), lm) => {
                let up = up.as_deref().unwrap_or(Path::new(""));
                let sub_lower =
                    (m.is_dir() && !is_opaque(up) && lm.as_ref().is_some_and(|l| l.is_dir()))
                        .then(|| low.clone())
                        .flatten();
                (up.to_owned(), m.clone(), Some(up.to_owned()), sub_lower)
            }
            (None, Some(m)) => {
                let low = low.clone().unwrap_or_default();
                (low.clone(), m.clone(), None, Some(low))
            }
            (None, None) => continue,
        };
        if meta.file_type().is_socket() {
            continue;
        }
        b.append_path_with_name(&src, &inner)?;
        if meta.is_dir() {
            merged(
                b,
                sub_upper.as_deref().filter(|_| meta.is_dir()),
                sub_lower.as_deref(),
                &format!("{inner}/"),
                skip,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_view_applies_the_upper_layer() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("etc/a"), "old").unwrap();
        std::fs::write(lower.join("etc/b"), "kept").unwrap();
        std::fs::write(upper.join("etc/a"), "new").unwrap();
        std::fs::write(upper.join("added"), "x").unwrap();
        let tar_path = t.path().join("out.tar");
        write_merged_tar(&tar_path, &upper, Some(&lower), &HashSet::new()).unwrap();
        let mut ar = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        let mut seen = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            seen.insert(e.path().unwrap().to_string_lossy().into_owned(), s);
        }
        assert_eq!(seen.get("etc/a").map(String::as_str), Some("new"));
        assert_eq!(seen.get("etc/b").map(String::as_str), Some("kept"));
        assert_eq!(seen.get("added").map(String::as_str), Some("x"));
        assert!(seen.contains_key("etc"));
    }
}
