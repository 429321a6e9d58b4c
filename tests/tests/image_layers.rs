//! Images keep what `docker load` gave them and `docker save` writes it back, driven by the
//! real docker CLI against a real daemon:
//! - a three-layer Docker-style archive (a whiteout and an opaque directory in the middle layer)
//!   runs on the layers stacked, has its config's digest as id (as in Docker), shows its diff ids as `RootFS.Layers`, its config's history in
//!   `docker history`, its healthcheck in inspect, and saves back to the same layer tars and the
//!   same config file, also after a daemon restart and a second load;
//! - a layer whose digest is not the config's `diff_id` is refused;
//! - the healthcheck of a committed image (the committed container's) survives save and load.
//!
//! Needs root (the daemon makes namespaces, mounts and cgroups), the `docker` CLI and Debian's
//! `busybox-static`; CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use berth_tests::{Daemon, save_archive, tar_of};
use sha2::{Digest, Sha256};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn inspect(d: &Daemon, what: &str, format: &str) -> String {
    d.docker(&["image", "inspect", "-f", format, what])
        .ok()
        .trim()
        .to_owned()
}

/// The files of the tar at `path`, by name.
fn untar(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

/// The layer tars (in manifest order) and the config file of `tag` in a saved archive.
fn saved(path: &Path, tag: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let files = untar(path);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["RepoTags"].as_array().unwrap().iter().any(|t| t == tag))
        .unwrap_or_else(|| panic!("{tag} not in {manifest}"));
    let layers = entry["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| files[l.as_str().unwrap()].clone())
        .collect();
    let config = files[entry["Config"].as_str().unwrap()].clone();
    (layers, config)
}

/// Needs root. A three-layer archive loads with its layers, history and whole config kept, its
/// config's digest as id (the rows checked here are what Docker 20.10.24 answers for the same
/// archive): the container sees the layers stacked (whiteout, opaque directory), `RootFS.Layers` are the
/// diff ids, `docker history` the config's history with each layer's size, and `docker save`
/// gives back the same layer tars and config file, after a restart and a second load too. A
/// layer that is not its `diff_id` is refused.
#[test]
fn loaded_layers_history_and_config_survive_save() {
    let mut d = Daemon::start();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let layers = vec![
        tar_of(&[
            ("bin/", b""),
            ("bin/cat", &busybox),
            ("kept", b"kept\n"),
            ("gone", b"x"),
            ("dir/", b""),
            ("dir/old", b"x"),
        ]),
        tar_of(&[
            (".wh.gone", b""),
            ("dir/", b""),
            ("dir/.wh..wh..opq", b""),
            ("dir/new", b"n"),
        ]),
        tar_of(&[("top", b"top!")]),
    ];
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
        "config": {
            "Cmd": ["cat", "/kept"], "Env": ["PATH=/bin", "X=1"], "WorkingDir": "/dir",
            "User": "0", "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}},
            "Labels": {"a": "b"}, "StopSignal": "SIGUSR1", "Shell": ["/bin/sh", "-c"],
            "Healthcheck": {"Test": ["CMD", "cat", "/kept"], "Interval": 2_000_000_000i64, "Retries": 4}
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD base /"},
            {"created": "2024-01-01T00:00:01Z", "created_by": "ENV X=1", "empty_layer": true},
            {"created": "2024-01-01T00:00:02Z", "created_by": "RUN rm /gone", "comment": "mid"},
            {"created": "2024-01-02T03:04:05Z", "created_by": "COPY top /"}
        ]
    });
    let config = serde_json::to_vec(&config).unwrap();
    let path = d.dir().join("layered.tar");
    std::fs::write(&path, save_archive("layered:2", &layers, &config)).unwrap();
    let out = d.docker(&["load", "-i", path.to_str().unwrap()]);
    assert!(out.ok().contains("Loaded image: layered:2"), "{}", out.ok());

    assert_eq!(d.docker(&["run", "--rm", "layered:2"]).ok(), "kept\n");
    assert_eq!(
        d.docker(&["run", "--rm", "layered:2", "cat", "new", "/top"])
            .ok(),
        "ntop!"
    );
    for gone in ["/gone", "/dir/old"] {
        let out = d.docker(&["run", "--rm", "layered:2", "cat", gone]);
        assert!(!out.success(), "{gone} must be gone: {}", out.describe());
    }

    let check = |d: &Daemon| {
        assert_eq!(
            inspect(d, "layered:2", "{{json .RootFS.Layers}}"),
            serde_json::to_string(&diff_ids).unwrap()
        );
        assert_eq!(
            inspect(d, "layered:2", "{{json .Config.Healthcheck}}"),
            r#"{"Test":["CMD","cat","/kept"],"Interval":2000000000,"Retries":4}"#
        );
        // Docker's image id: the config's digest.
        let id = inspect(d, "layered:2", "{{.Id}}");
        assert_eq!(id, digest(&config));
        let rows = d
            .raw("GET", "/v1.41/images/layered:2/history", None, b"")
            .json();
        let got: Vec<_> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["Id"].as_str().unwrap().to_owned(),
                    r["CreatedBy"].as_str().unwrap().to_owned(),
                    r["Size"].as_i64().unwrap(),
                    r["Comment"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let row = |id: &str, by: &str, size: usize, comment: &str| {
            (
                id.to_owned(),
                by.to_owned(),
                size as i64,
                comment.to_owned(),
            )
        };
        assert_eq!(
            got,
            [
                row(&id, "COPY top /", 4, ""),
                row("<missing>", "RUN rm /gone", 1, "mid"),
                row("<missing>", "ENV X=1", 0, ""),
                row("<missing>", "ADD base /", busybox.len() + 7, ""),
            ]
        );
        assert_eq!(rows[0]["Tags"], serde_json::json!(["layered:2"]));
        assert_eq!(rows[0]["Created"], 1_704_164_645);
        // The CLI reads it too.
        let cli = d.docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            "layered:2",
        ]);
        assert_eq!(cli.ok(), "COPY top /\nRUN rm /gone\nENV X=1\nADD base /\n");

        let out = d.dir().join("saved.tar");
        d.docker(&["save", "-o", out.to_str().unwrap(), "layered:2"])
            .ok();
        let (saved_layers, saved_config) = saved(&out, "layered:2");
        assert!(
            saved_layers == layers,
            "save must give back the loaded layer tars"
        );
        assert_eq!(
            String::from_utf8_lossy(&saved_config),
            String::from_utf8_lossy(&config)
        );
        out
    };
    check(&d);
    d.stop(std::time::Duration::from_secs(10));
    d.restart();
    let saved = check(&d);
    d.docker(&["rmi", "layered:2"]).ok();
    let out = d.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert!(out.ok().contains("Loaded image: layered:2"), "{}", out.ok());
    check(&d);

    // A layer that is not what the config's diff_ids say is refused.
    let mut wrong = layers.clone();
    wrong[2] = tar_of(&[("top", b"other")]);
    let bad = d.dir().join("bad.tar");
    std::fs::write(&bad, save_archive("bad:1", &wrong, &config)).unwrap();
    let out = d.docker(&["load", "-i", bad.to_str().unwrap()]);
    assert!(
        !out.success() && out.stderr.contains("rootfs.diff_ids"),
        "{}",
        out.describe()
    );
    assert!(!d.docker(&["image", "inspect", "bad:1"]).success());
}

/// Needs root. A committed image takes the container's healthcheck; `docker save` writes it in
/// the image config and `docker load` reads it back.
#[test]
fn a_committed_healthcheck_survives_save_and_load() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&[
        "run",
        "--name",
        "hc",
        "--health-cmd",
        "cat /etc/hostname",
        "--health-interval",
        "5s",
        "--health-retries",
        "2",
        "bb",
        "true",
    ])
    .ok();
    d.docker(&["commit", "hc", "hc:1"]).ok();
    let want = r#"{"Test":["CMD-SHELL","cat /etc/hostname"],"Interval":5000000000,"Retries":2}"#;
    assert_eq!(inspect(&d, "hc:1", "{{json .Config.Healthcheck}}"), want);
    let out = d.dir().join("hc.tar");
    d.docker(&["save", "-o", out.to_str().unwrap(), "hc:1"])
        .ok();
    let (_, config) = saved(&out, "hc:1");
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config["config"]["Healthcheck"],
        serde_json::from_str::<serde_json::Value>(want).unwrap()
    );
    d.docker(&["rm", "hc"]).ok();
    d.docker(&["rmi", "hc:1"]).ok();
    let loaded = d.docker(&["load", "-i", out.to_str().unwrap()]);
    assert!(
        loaded.ok().contains("Loaded image: hc:1"),
        "{}",
        loaded.ok()
    );
    assert_eq!(inspect(&d, "hc:1", "{{json .Config.Healthcheck}}"), want);
    // A container of the loaded image inherits it.
    d.docker(&["create", "--name", "again", "hc:1", "true"])
        .ok();
    let c = d
        .docker(&["inspect", "-f", "{{json .Config.Healthcheck}}", "again"])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(c, want);
}
