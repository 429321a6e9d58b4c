//! `berth system check`: an offline look at a state root for what a crash or a corrupt record
//! left behind: quarantined records (with the reason they were moved), temporary files of
//! interrupted writes, work directories of interrupted imports, and object directories without
//! their record (orphans). Reads only; the daemon's boot is what sweeps and quarantines.

use std::fs;
use std::path::{Path, PathBuf};

use crate::records::{QUARANTINE_DIR, REASON_SUFFIX, is_temp_file};

/// The record directories of a state root and the record file each object directory holds.
pub const STORES: &[(&str, &str)] = &[
    ("containers", "config.json"),
    ("images", "image.json"),
    ("volumes", "volume.json"),
    ("networks", "network.json"),
];

/// One thing `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A record moved aside at a boot, and why.
    Quarantined { path: PathBuf, reason: String },
    /// A temporary file of an interrupted durable write, or an interrupted import's directory.
    Temporary { path: PathBuf },
    /// An object directory without its record file.
    Orphan {
        path: PathBuf,
        missing: &'static str,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Quarantined { path, reason } => {
                write!(f, "quarantined  {}: {reason}", path.display())
            }
            Finding::Temporary { path } => write!(f, "temporary    {}", path.display()),
            Finding::Orphan { path, missing } => {
                write!(f, "orphan       {}: no {missing}", path.display())
            }
        }
    }
}

fn entries(dir: &Path) -> Vec<(String, PathBuf, bool)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path(),
                is_dir,
            )
        })
        .collect();
    out.sort();
    out
}

/// Everything under `root` that needs an operator's attention (empty when the root is clean).
pub fn check(root: &Path) -> Vec<Finding> {
    let mut found = Vec::new();
    for (name, path, _) in entries(&root.join(QUARANTINE_DIR)) {
        if name.ends_with(REASON_SUFFIX) {
            continue;
        }
        let mut reason_path = path.clone().into_os_string();
        reason_path.push(REASON_SUFFIX);
        let reason = fs::read_to_string(&reason_path)
            .map(|r| r.trim().to_owned())
            .unwrap_or_else(|_| "reason not recorded".to_owned());
        found.push(Finding::Quarantined { path, reason });
    }
    for (name, path, is_dir) in entries(root) {
        if !is_dir && is_temp_file(&name) {
            found.push(Finding::Temporary { path });
        }
    }
    for (store, record) in STORES {
        for (name, path, is_dir) in entries(&root.join(store)) {
            if !is_dir {
                if is_temp_file(&name) {
                    found.push(Finding::Temporary { path });
                }
                continue;
            }
            if name.starts_with('.') {
                found.push(Finding::Temporary { path });
                continue;
            }
            for (inner, inner_path, inner_dir) in entries(&path) {
                if !inner_dir && is_temp_file(&inner) {
                    found.push(Finding::Temporary { path: inner_path });
                }
            }
            if !path.join(record).exists() {
                found.push(Finding::Orphan {
                    path,
                    missing: record,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{LoadWarning, RecordDir};

    #[test]
    fn a_clean_root_has_no_findings_and_each_leftover_is_found() {
        let root = tempfile::tempdir().unwrap();
        let vols: RecordDir<u32> =
            RecordDir::open(root.path().join("volumes"), "volume.json", "volume").unwrap();
        vols.create("good", &1).unwrap();
        assert_eq!(check(root.path()), vec![]);
        vols.create("bad", &2).unwrap();
        fs::write(vols.record_path("bad"), b"{").unwrap();
        let kept = vols.create_dir("kept").unwrap();
        fs::write(kept.join("data"), b"x").unwrap();
        fs::write(vols.dir("good").join(".volume.json.tmp1.2"), b"{").unwrap();
        fs::create_dir_all(root.path().join("images/.import-abc")).unwrap();
        let found = check(root.path());
        assert!(
            matches!(
                &found[..],
                [
                    Finding::Temporary { .. },
                    Finding::Temporary { .. },
                    Finding::Orphan {
                        missing: "volume.json",
                        ..
                    },
                ]
            ),
            "{found:?}"
        );
        // A load quarantines the bad record, with its reason; check reports it.
        let loaded = vols.load_all().unwrap();
        assert!(
            matches!(
                &loaded.warnings[..],
                [LoadWarning::Quarantined { .. }, LoadWarning::Orphan { .. }]
            ),
            "{:?}",
            loaded.warnings
        );
        let found = check(root.path());
        let Finding::Quarantined { path, reason } = &found[0] else {
            panic!("{found:?}");
        };
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("volume-bad-")
        );
        assert!(reason.contains("decoding"), "{reason}");
        assert!(
            matches!(
                &found[1..],
                [Finding::Temporary { .. }, Finding::Orphan { .. }]
            ),
            "{found:?}"
        );
    }
}
