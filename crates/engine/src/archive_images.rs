//! `docker save` and `docker load` as the engine runs them: the image store's blocking work
//! (`images/save.rs`, `images/load.rs`) on a blocking thread, the archive in `<root>/tmp`, and
//! the `save`/`load` events.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::images::Loaded;

fn joined(e: tokio::task::JoinError) -> EngineError {
    EngineError::Io {
        context: "image archive".into(),
        source: std::io::Error::other(e),
    }
}

impl Engine {
    /// The `<root>/tmp` directory (created when missing).
    pub fn tmp_dir(&self) -> Result<std::path::PathBuf, EngineError> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(EngineError::io("creating the tmp dir"))?;
        Ok(dir)
    }

    /// Writes a `docker save` archive of the images `refs` name; returns it open and already
    /// unlinked (nothing to clean up, whoever reads it).
    pub async fn save_images(
        self: &Arc<Self>,
        refs: Vec<String>,
    ) -> Result<std::fs::File, EngineError> {
        let tmp = self.tmp_dir()?;
        let engine = self.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, EngineError> {
            // `import-` prefix: a crash between create and unlink leaves it for the boot sweep.
            let path = tempfile::Builder::new()
                .prefix("import-save-")
                .tempfile_in(&tmp)
                .map_err(EngineError::io("creating the archive"))?
                .into_temp_path();
            engine.images.save(&refs, &path, &tmp)?;
            let f = std::fs::File::open(&path).map_err(EngineError::io("opening the archive"))?;
            drop(path);
            for r in &refs {
                engine.events.publish(
                    "image",
                    "save",
                    r,
                    BTreeMap::from([("name".into(), r.clone())]),
                );
            }
            Ok(f)
        })
        .await
        .map_err(joined)??;
        Ok(file)
    }

    /// Loads the `docker save` archive at `path`.
    pub async fn load_images(
        self: &Arc<Self>,
        path: std::path::PathBuf,
    ) -> Result<Vec<Loaded>, EngineError> {
        let engine = self.clone();
        let loaded = tokio::task::spawn_blocking(move || engine.images.load(&path))
            .await
            .map_err(joined)??;
        for l in &loaded {
            let name = l.tags.first().cloned().unwrap_or_else(|| l.id.clone());
            self.events.publish(
                "image",
                "load",
                &l.id,
                BTreeMap::from([("name".into(), name)]),
            );
        }
        Ok(loaded)
    }
}
