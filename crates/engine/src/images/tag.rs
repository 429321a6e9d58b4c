//! `docker tag`: one more name for an image already in the store. The name moves off any other
//! image that had it, as Docker does.

use super::{ImageStore, normalize_reference, validate_tag};
use crate::error::EngineError;

impl ImageStore {
    /// Tags the image `reference` names as `new_tag` (`repo[:tag]`; `latest` when no tag).
    pub fn tag(&self, reference: &str, new_tag: &str) -> Result<(), EngineError> {
        let image = self.get(reference)?;
        let new_tag = normalize_reference(new_tag);
        validate_tag(&new_tag)?;
        if image.builtin {
            return Err(EngineError::Forbidden(format!(
                "{reference} is a built-in image and cannot be tagged"
            )));
        }
        let mut images = self.lock();
        for img in images.values_mut() {
            if img.id != image.id && img.repo_tags.contains(&new_tag) {
                img.repo_tags.retain(|t| t != &new_tag);
                if !img.builtin {
                    berth_state::store_json(&self.dir.join(img.hex()).join("image.json"), img)?;
                }
            }
        }
        let Some(img) = images.get_mut(&image.id) else {
            return Err(EngineError::NoSuchImage(reference.to_owned()));
        };
        if !img.repo_tags.contains(&new_tag) {
            img.repo_tags.push(new_tag);
            berth_state::store_json(&self.dir.join(img.hex()).join("image.json"), img)?;
        }
        Ok(())
    }
}
