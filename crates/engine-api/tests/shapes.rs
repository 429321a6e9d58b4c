//! Wire-shape tests: the key set and JSON type of every field of the main response bodies
//! (container inspect, list and stats, `/info`, `/version`, volumes, networks, images, plugins, the
//! error body), pinned against the files in `tests/shapes/`. Docker clients index these keys,
//! including the ones Docker always sends as `null` or empty, so a key that vanishes or changes
//! type fails here. Values that differ between runs (ids, times) are not compared, only shapes.
//!
//! To accept a deliberate change, run with `BERTH_BLESS_SHAPES=1` and review the diff.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

struct Api {
    _root: tempfile::TempDir,
    engine: Arc<berth_engine::Engine>,
}

impl Api {
    fn new() -> Api {
        let root = tempfile::tempdir().unwrap();
        let engine = berth_engine::Engine::open(root.path()).unwrap();
        Api {
            _root: root,
            engine,
        }
    }

    async fn json(&self, method: Method, uri: &str, body: &str, status: StatusCode) -> Value {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = berth_engine_api::app(self.engine.clone())
            .oneshot(req)
            .await
            .unwrap();
        let got = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, status, "{uri}: {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One line per key path: `Path.To.Key type` (array elements under `[]`).
fn shape(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    out.insert(format!(
        "{} {}",
        if path.is_empty() { "." } else { path },
        kind(v)
    ));
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                shape(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for v in a {
                shape(v, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Compares the shape of `v` with `tests/shapes/{name}.txt` (or writes it when blessing).
fn assert_shape(name: &str, v: &Value) {
    let mut set = BTreeSet::new();
    shape(v, "", &mut set);
    let text: String = set.into_iter().map(|l| l + "\n").collect();
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/shapes")
        .join(format!("{name}.txt"));
    if std::env::var_os("BERTH_BLESS_SHAPES").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with BERTH_BLESS_SHAPES=1)", file.display()));
    let want: BTreeSet<&str> = want.lines().collect();
    let got: BTreeSet<&str> = text.lines().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name}: the wire shape changed\n  missing: {missing:#?}\n  new: {extra:#?}\n  body: {v}"
    );
}

const FULL_CREATE: &str = r#"{
    "Image": "host", "Cmd": ["sleep", "1"], "Entrypoint": ["/bin/sh", "-c"], "Env": ["A=1"],
    "Hostname": "h", "User": "nobody", "WorkingDir": "/tmp", "Labels": {"l": "v"},
    "HostConfig": {
        "Binds": ["/tmp:/hosttmp:ro", "namedvol:/data"],
        "Mounts": [{"Type": "volume", "Source": "mvol", "Target": "/m"}],
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
        "CapAdd": ["NET_ADMIN"], "CapDrop": ["MKNOD"], "SecurityOpt": ["no-new-privileges"],
        "GroupAdd": ["10"], "Tmpfs": {"/run": "size=1m"}, "Memory": 67108864, "PidsLimit": 50,
        "NanoCpus": 500000000
    }
}"#;

#[tokio::test]
async fn container_shapes() {
    let api = Api::new();
    let ok = StatusCode::OK;
    let created = api
        .json(
            Method::POST,
            "/containers/create?name=plain",
            r#"{"Image": "host", "Cmd": ["true"]}"#,
            StatusCode::CREATED,
        )
        .await;
    assert_shape("container_create", &created);
    api.json(
        Method::POST,
        "/containers/create?name=full",
        FULL_CREATE,
        StatusCode::CREATED,
    )
    .await;
    let plain = api
        .json(Method::GET, "/containers/plain/json", "", ok)
        .await;
    assert_shape("container_inspect_plain", &plain);
    let full = api.json(Method::GET, "/containers/full/json", "", ok).await;
    assert_shape("container_inspect_full", &full);
    let list = api
        .json(Method::GET, "/containers/json?all=1", "", ok)
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert_shape("container_list", &list);
    let stats = api
        .json(
            Method::GET,
            "/containers/plain/stats?stream=false&one-shot=true",
            "",
            ok,
        )
        .await;
    assert_shape("container_stats_stopped", &stats);
}

#[tokio::test]
async fn system_shapes() {
    let api = Api::new();
    let ok = StatusCode::OK;
    let info = api.json(Method::GET, "/info", "", ok).await;
    assert_shape("info", &info);
    let version = api.json(Method::GET, "/version", "", ok).await;
    assert_shape("version", &version);
    let err = api
        .json(
            Method::GET,
            "/containers/nosuch/json",
            "",
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_shape("error", &err);
}

#[tokio::test]
async fn volume_image_network_plugin_shapes() {
    let api = Api::new();
    let ok = StatusCode::OK;
    let vol = api
        .json(
            Method::POST,
            "/volumes/create",
            r#"{"Name": "v1", "Labels": {"a": "b"}}"#,
            StatusCode::CREATED,
        )
        .await;
    assert_shape("volume", &vol);
    let bare = api
        .json(
            Method::POST,
            "/volumes/create",
            r#"{"Name": "v2"}"#,
            StatusCode::CREATED,
        )
        .await;
    assert_shape("volume_bare", &bare);
    assert_shape(
        "volume_inspect",
        &api.json(Method::GET, "/volumes/v1", "", ok).await,
    );
    assert_shape(
        "volume_list",
        &api.json(Method::GET, "/volumes", "", ok).await,
    );
    let pruned = api
        .json(
            Method::POST,
            "/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D",
            "",
            ok,
        )
        .await;
    assert_shape("volume_prune", &pruned);
    assert_shape(
        "image_list",
        &api.json(Method::GET, "/images/json", "", ok).await,
    );
    assert_shape(
        "image_inspect",
        &api.json(Method::GET, "/images/host/json", "", ok).await,
    );
    assert_shape(
        "network_list",
        &api.json(Method::GET, "/networks", "", ok).await,
    );
    assert_shape(
        "network_inspect",
        &api.json(Method::GET, "/networks/host", "", ok).await,
    );
    assert_shape(
        "plugin_list",
        &api.json(Method::GET, "/plugins", "", ok).await,
    );
}

/// A loaded container plugin with hook counters, as the plugin host reports it.
fn plugin_status() -> berth_plugin_host::PluginStatus {
    serde_json::from_value(serde_json::json!({
        "position": 0,
        "state": "active",
        "hooks": {"volume.mount": {"calls": 4, "failures": 1, "total_latency_us": 400,
                                   "max_latency_us": 200}},
        "deadlines": {"Api": 1000, "Volume": 30000, "Default": 5000},
        "record": {
            "name": "flocker",
            "source": {"kind": "container", "image": "host", "args": ["/bin/flocker"],
                       "env": ["A=1"], "socket_dir": "/run/berth/plugins/flocker"},
            "socket": "/run/berth/plugins/flocker/plugin.sock",
            "protocol": "v2",
            "interests": ["volume"],
            "implements": ["VolumeDriver"],
            "deadline_ms": 5000,
            "failure_policy": "abort",
            "privileged": false,
            "container_id": "c0ffee",
            "options": {"mounts": ["/srv/flocker:/data:ro"]},
            "last_error": null,
            "warnings": ["w"]
        }
    }))
    .unwrap()
}

#[test]
fn plugin_shapes() {
    use berth_engine_api::routes::plugins;
    let st = plugin_status();
    assert_shape(
        "plugin_status",
        &serde_json::to_value(plugins::status_body(&st)).unwrap(),
    );
    assert_shape(
        "plugin_docker",
        &serde_json::to_value(plugins::docker_plugin(&st)).unwrap(),
    );
}
