//! `docker container prune`, `image prune`, `network prune` (and the filters of `volume prune`):
//! removing what nothing uses, with Docker's filters:
//! - `label=KEY`, `label=KEY=VALUE` (all must match), `label!=KEY`, `label!=KEY=VALUE` (none may);
//! - `until=T`: only what was created before T (a Unix time, an RFC 3339 time, or a Go duration
//!   such as `24h` or `1h30m`, meaning that long ago);
//! - images only: `dangling=true` (the default: only untagged images) or `false` (every image no
//!   container uses).
//!
//! Containers: every stopped user container (never a running, paused or restarting one, never a
//! plugin's system container); space is what its directory held (writable layer and logs).
//! Images: never the built-in `host` image, never one a container (of any state) was created
//! from. Networks: never the pre-defined ones, nor one with a container connected or one a
//! container is configured to join.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::engine::Engine;
use crate::error::EngineError;

/// Parsed prune filters.
#[derive(Debug, Clone, Default)]
pub struct PruneFilters {
    labels: Vec<(String, Option<String>)>,
    not_labels: Vec<(String, Option<String>)>,
    until: Option<DateTime<Utc>>,
    dangling: Option<bool>,
}

fn label_pair(s: &str) -> (String, Option<String>) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
        None => (s.to_owned(), None),
    }
}

/// A Go duration (`1h30m`, `90s`, `1.5h`, `500ms`).
fn go_duration(s: &str) -> Option<chrono::Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    chrono::Duration::try_milliseconds((total * 1000.0) as i64)
}

/// Docker's `until` forms, relative to `now`.
fn parse_until(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, EngineError> {
    if let Some(d) = go_duration(s) {
        return Ok(now - d);
    }
    if let Ok(secs) = s.parse::<f64>()
        && let Some(t) = DateTime::from_timestamp_millis((secs * 1000.0) as i64)
    {
        return Ok(t);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            EngineError::Invalid(format!(
                "invalid filter 'until={s}': use a Unix time, an RFC 3339 time or a duration such as 24h"
            ))
        })
}

impl PruneFilters {
    /// Parses the `filters` query map; `allowed` are the keys this prune accepts.
    pub fn parse(
        filters: &BTreeMap<String, Vec<String>>,
        allowed: &[&str],
    ) -> Result<Self, EngineError> {
        let mut f = PruneFilters::default();
        for (k, vals) in filters {
            if !allowed.contains(&k.as_str()) {
                return Err(EngineError::Invalid(format!("invalid filter '{k}'")));
            }
            for v in vals {
                match k.as_str() {
                    "label" => f.labels.push(label_pair(v)),
                    "label!" => f.not_labels.push(label_pair(v)),
                    "until" => f.until = Some(parse_until(v, Utc::now())?),
                    "dangling" => {
                        f.dangling = Some(match v.as_str() {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => {
                                return Err(EngineError::Invalid(format!(
                                    "invalid filter 'dangling={v}': use true or false"
                                )));
                            }
                        })
                    }
                    _ => {}
                }
            }
        }
        Ok(f)
    }

    /// Whether an object with these labels, created at `created`, is pruned.
    pub fn matches(&self, labels: &BTreeMap<String, String>, created: DateTime<Utc>) -> bool {
        let has = |(k, v): &(String, Option<String>)| match v {
            Some(v) => labels.get(k) == Some(v),
            None => labels.contains_key(k),
        };
        self.labels.iter().all(has)
            && !self.not_labels.iter().any(has)
            && self.until.is_none_or(|u| created < u)
    }
}

/// What a container or image prune removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Container ids, or for images Docker's `{Untagged|Deleted: ref}` pairs.
    pub removed: Vec<(String, String)>,
    pub space: u64,
}

/// Bytes under `path` (not following symlinks, not crossing into other filesystems' mounts).
pub(crate) fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for e in entries.flatten() {
            let same_fs = e.metadata().is_ok_and(|m| m.dev() == meta.dev());
            if same_fs || e.file_type().is_ok_and(|t| !t.is_dir()) {
                total += disk_usage(&e.path());
            }
        }
    }
    total
}

impl Engine {
    /// Removes unused volumes matching `f` (only anonymous ones, named by a 64-hex id, unless
    /// `all`); returns their names and the bytes their local data held.
    pub async fn prune_volumes_filtered(&self, all: bool, f: &PruneFilters) -> (Vec<String>, u64) {
        let mut removed = Vec::new();
        let mut space = 0;
        for v in self.volumes.list() {
            let labels = v.labels.clone().unwrap_or_default();
            if !(all || berth_state::is_full_id(&v.name))
                || !self.volume_users(&v.name).is_empty()
                || !f.matches(&labels, v.created_at)
            {
                continue;
            }
            let size = if v.driver == "local" {
                let dir = v.mountpoint.clone();
                tokio::task::spawn_blocking(move || disk_usage(&dir))
                    .await
                    .unwrap_or(0)
            } else {
                0
            };
            if self.remove_volume(&v.name).await.is_ok() {
                space += size;
                removed.push(v.name);
            }
        }
        (removed, space)
    }

    /// Removes stopped user containers matching `f`.
    pub async fn prune_containers(self: &Arc<Self>, f: &PruneFilters) -> Pruned {
        let mut out = Pruned::default();
        for c in self.all() {
            let st = c.state();
            if c.config.spec.system
                || st.status.is_active()
                || st.paused
                || !f.matches(&c.config.spec.labels, c.config.created)
            {
                continue;
            }
            let _op = c.op.lock().await;
            // Re-checked under the lock: it may have been started meanwhile.
            if c.state().status.is_active() {
                continue;
            }
            let dir = c.dir.clone();
            let size = tokio::task::spawn_blocking(move || disk_usage(&dir))
                .await
                .unwrap_or(0);
            match self.remove_locked(&c, false, false).await {
                Ok(()) => {
                    out.space += size;
                    out.removed.push(("Id".into(), c.id().to_owned()));
                }
                Err(e) => tracing::warn!(id = c.id(), error = %e, "prune: removing a container"),
            }
        }
        if !out.removed.is_empty() {
            self.events
                .publish("container", "prune", "", BTreeMap::new());
        }
        out
    }

    /// Removes images no container uses: untagged ones, or all with `dangling=false`.
    pub async fn prune_images(&self, f: &PruneFilters) -> Pruned {
        let used: HashSet<String> = self
            .all()
            .iter()
            .map(|c| c.config.image_id.clone())
            .collect();
        let only_dangling = f.dangling.unwrap_or(true);
        let mut out = Pruned::default();
        for img in self.images.list() {
            if img.builtin
                || used.contains(&img.id)
                || (only_dangling && !img.repo_tags.is_empty())
                || !f.matches(&img.config.labels, img.created)
            {
                continue;
            }
            match self.images.remove(&img.id, &[]) {
                Ok(steps) => {
                    out.space += img.size;
                    out.removed.extend(steps);
                }
                Err(e) => tracing::warn!(image = img.id, error = %e, "prune: removing an image"),
            }
        }
        if !out.removed.is_empty() {
            self.events.publish("image", "prune", "", BTreeMap::new());
        }
        out
    }

    /// Removes user networks nothing is connected to or configured to join; returns their
    /// names.
    pub async fn prune_networks(&self, f: &PruneFilters) -> Vec<String> {
        let wanted: HashSet<String> = self
            .all()
            .iter()
            .map(|c| c.config.spec.network_mode.clone())
            .collect();
        let mut out = Vec::new();
        for n in self.networks.list() {
            if ["bridge", "host", "none"].contains(&n.name.as_str())
                || !n.members.is_empty()
                || wanted.contains(&n.name)
                || wanted.contains(&n.id)
                || !f.matches(&n.labels, n.created)
            {
                continue;
            }
            match self.networks.remove(&n.id).await {
                Ok(_) => {
                    self.events.publish(
                        "network",
                        "destroy",
                        &n.id,
                        BTreeMap::from([("name".into(), n.name.clone())]),
                    );
                    out.push(n.name);
                }
                Err(e) => tracing::debug!(network = n.name, error = %e, "prune: network kept"),
            }
        }
        if !out.is_empty() {
            self.events.publish("network", "prune", "", BTreeMap::new());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_labels_and_until() {
        let now = Utc::now();
        let q = BTreeMap::from([
            ("label".to_owned(), vec!["a".to_owned(), "b=2".to_owned()]),
            ("label!".to_owned(), vec!["keep".to_owned()]),
            ("until".to_owned(), vec!["1h".to_owned()]),
        ]);
        let f = PruneFilters::parse(&q, &["label", "label!", "until"]).unwrap();
        let labels = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let old = now - chrono::Duration::hours(2);
        assert!(f.matches(&labels(&[("a", ""), ("b", "2")]), old));
        assert!(!f.matches(&labels(&[("a", ""), ("b", "3")]), old));
        assert!(!f.matches(&labels(&[("a", ""), ("b", "2"), ("keep", "")]), old));
        assert!(!f.matches(&labels(&[("a", ""), ("b", "2")]), now));
        assert!(PruneFilters::parse(&q, &["label"]).is_err());
        assert_eq!(go_duration("1h30m"), chrono::Duration::try_minutes(90));
        assert!(parse_until("2020-01-01T00:00:00Z", now).is_ok());
        assert!(parse_until("1577836800", now).is_ok());
        assert!(parse_until("yesterday", now).is_err());
    }
}
