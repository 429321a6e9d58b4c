//! `docker history` (`GET /images/{name}/history`): the image's history, newest first, as
//! Docker gives it. A loaded image shows the `history` of the config it came with, each entry
//! that made a layer with that layer's size; the newest entry carries the image's id and tags,
//! the others `<missing>` (Berth keeps no parent images for them). An image Berth made (import,
//! commit) has one entry: its creation, comment and author, and the size of its root.

use chrono::Utc;

use super::{HistoryEntry, Image, ImageStore};
use crate::error::EngineError;

/// One row of `docker history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image id on the newest row, `<missing>` on the others.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub comment: String,
}

/// The one history entry of an image Berth made (what `docker save` writes for it too).
pub(super) fn own_history(img: &Image) -> Vec<HistoryEntry> {
    let comment = if img.container.is_empty() && img.comment.is_empty() {
        "Imported from -".to_owned()
    } else {
        img.comment.clone()
    };
    vec![HistoryEntry {
        created: Some(img.created),
        author: img.author.clone(),
        comment,
        ..Default::default()
    }]
}

/// The rows of `img`, newest first.
fn rows(img: &Image) -> Result<Vec<HistoryRow>, EngineError> {
    let (entries, sizes): (Vec<HistoryEntry>, Vec<u64>) = if img.history.is_empty() {
        (own_history(img), vec![img.size])
    } else {
        (
            img.history.clone(),
            img.layers.iter().map(|l| l.size).collect(),
        )
    };
    let mut layer = 0;
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let size = if e.empty_layer {
            0
        } else {
            let size = sizes.get(layer).copied().ok_or_else(|| {
                EngineError::Invalid(format!(
                    "image {}: its history names more layers than it has ({})",
                    img.id,
                    sizes.len()
                ))
            })?;
            layer += 1;
            size
        };
        rows.push(HistoryRow {
            id: "<missing>".into(),
            created: e
                .created
                .unwrap_or(chrono::DateTime::<Utc>::UNIX_EPOCH)
                .timestamp(),
            created_by: e.created_by,
            tags: Vec::new(),
            size,
            comment: e.comment,
        });
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = img.id.clone();
        top.tags = img.repo_tags.clone();
    }
    Ok(rows)
}

impl ImageStore {
    /// `docker history` of the image `reference` names.
    pub fn history(&self, reference: &str) -> Result<Vec<HistoryRow>, EngineError> {
        rows(&self.get(reference)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Layer;
    use super::*;

    #[test]
    fn entries_take_their_layers_sizes_newest_first() {
        let entry = |by: &str, empty| HistoryEntry {
            created_by: by.into(),
            empty_layer: empty,
            ..Default::default()
        };
        let layer = |size| Layer {
            diff_id: String::new(),
            size,
        };
        let img = Image {
            id: "sha256:ab".into(),
            repo_tags: vec!["x:1".into()],
            layers: vec![layer(10), layer(20)],
            history: vec![entry("add", false), entry("env", true), entry("run", false)],
            ..Default::default()
        };
        let r = rows(&img).unwrap();
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.id.as_str(), r.created_by.as_str(), r.size))
            .collect();
        assert_eq!(
            got,
            [
                ("sha256:ab", "run", 20),
                ("<missing>", "env", 0),
                ("<missing>", "add", 10)
            ]
        );
        assert_eq!(r[0].tags, ["x:1"]);
        assert!(r[1].tags.is_empty());

        let bad = Image {
            history: vec![entry("a", false), entry("b", false), entry("c", false)],
            ..img
        };
        assert!(rows(&bad).is_err());
    }

    #[test]
    fn an_imported_image_has_one_entry() {
        let img = Image {
            id: "sha256:cd".into(),
            size: 7,
            ..Default::default()
        };
        let r = rows(&img).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].size, r[0].comment.as_str()), (7, "Imported from -"));
    }
}
