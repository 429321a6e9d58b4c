//! Images and volumes as the engine manages them: import, remove, create, prune (with events,
//! and refusing to remove what a container uses).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_volumes::CreateVolume;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::images::Image;

impl Engine {
    /// Imports an image from a tar file (blocking work on a blocking thread).
    pub async fn import_image(
        self: &Arc<Self>,
        tar_path: PathBuf,
        repo: Option<String>,
        changes: Vec<String>,
    ) -> Result<Image, EngineError> {
        let engine = self.clone();
        let image = tokio::task::spawn_blocking(move || {
            engine.images.import(&tar_path, repo.as_deref(), &changes)
        })
        .await
        .map_err(|e| EngineError::Io {
            context: "importing image".into(),
            source: std::io::Error::other(e),
        })??;
        let tag = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        self.events.publish(
            "image",
            "import",
            &image.id,
            BTreeMap::from([("name".into(), tag)]),
        );
        Ok(image)
    }

    /// Removes an image (refused while containers use it).
    pub fn remove_image(&self, reference: &str) -> Result<Vec<(String, String)>, EngineError> {
        let image = self.images.get(reference)?;
        let users = self.image_users(&image.id);
        let out = self.images.remove(reference, &users)?;
        self.events.publish(
            "image",
            "delete",
            &image.id,
            BTreeMap::from([("name".into(), reference.to_owned())]),
        );
        Ok(out)
    }

    /// Creates a volume (idempotent) through its driver (`local` or a plugin, looked up by name
    /// then by Docker-style discovery) and publishes the event when it is new.
    pub async fn create_volume(
        &self,
        req: CreateVolume,
    ) -> Result<berth_volumes::Volume, EngineError> {
        let host = self.plugins().map(|h| h.as_ref());
        let (v, created) = self.volumes.create_with(host, req).await?;
        if created {
            self.events.publish(
                "volume",
                "create",
                &v.name,
                BTreeMap::from([("driver".into(), v.driver.clone())]),
            );
        }
        Ok(v)
    }

    /// Removes a volume unless a container uses it (a plugin driver gets `Remove`).
    pub async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let users = self.volume_users(name);
        let host = self.plugins().map(|h| h.as_ref());
        let v = self.volumes.get_or_adopt(host, name).await?;
        self.volumes.remove_with(host, name, &users).await?;
        self.events.publish(
            "volume",
            "destroy",
            name,
            BTreeMap::from([("driver".into(), v.driver)]),
        );
        Ok(())
    }

    /// Removes unused volumes (only anonymous ones, named by a 64-hex id, unless `all`); returns
    /// their names.
    pub async fn prune_volumes(&self, all: bool) -> Vec<String> {
        let any = crate::prune::PruneFilters::default();
        self.prune_volumes_filtered(all, &any).await.0
    }
}
