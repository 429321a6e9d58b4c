//! What the engine benches share: one keep-alive API connection over the daemon's UNIX socket,
//! the container bodies, `run --rm host true` the way the docker CLI does it, `run --rm -v`,
//! volume create+rm, the example plugins and the summary of a timing loop.
//!
//! Each bench target includes this module and uses a different part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_tests::{Daemon, PluginProc, spawn_plugin};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub const API: &str = "/v1.50";

static SEQ: AtomicU64 = AtomicU64::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// One keep-alive HTTP/1.1 connection to the daemon.
pub struct Api {
    pub sender: SendRequest<Full<Bytes>>,
}

impl Api {
    pub async fn connect(socket: &Path) -> Api {
        let stream = UnixStream::connect(socket).await.expect("connect daemon");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        Api { sender }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> hyper::Response<hyper::body::Incoming> {
        self.sender.ready().await.expect("connection ready");
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{API}{path}"))
            .header(http::header::HOST, "api.berth.localhost");
        let body = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).expect("request");
        self.sender.send_request(req).await.expect("send request")
    }

    /// Sends and reads the whole reply; panics unless the status is `want`.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        want: StatusCode,
    ) -> Bytes {
        let resp = self.send(method.clone(), path, body).await;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("read reply")
            .to_bytes();
        assert_eq!(
            status,
            want,
            "{method} {path}: {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes
    }

    /// `POST /containers/create` with `body`; returns the new container's id.
    pub async fn create(&mut self, body: serde_json::Value) -> String {
        let created = self
            .call(
                Method::POST,
                "/containers/create",
                Some(body),
                StatusCode::CREATED,
            )
            .await;
        id_of(&created)
    }

    /// `POST /containers/{id}/start`, expecting 204.
    pub async fn start(&mut self, id: &str) {
        self.call(
            Method::POST,
            &format!("/containers/{id}/start"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    }

    /// Waits for `removed` on `waiter` (headers first, so the wait is in place), starts `id` on
    /// `self`, then asserts the wait's status code is 0 (`true` exited cleanly).
    pub async fn start_and_wait_removed(&mut self, waiter: &mut Api, id: &str) {
        let wait = waiter
            .send(
                Method::POST,
                &format!("/containers/{id}/wait?condition=removed"),
                None,
            )
            .await;
        assert_eq!(wait.status(), StatusCode::OK);
        self.start(id).await;
        let status = wait
            .into_body()
            .collect()
            .await
            .expect("wait body")
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&status).expect("wait json");
        assert_eq!(v["StatusCode"], 0, "true exits 0: {v}");
    }
}

pub fn id_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("json reply");
    v["Id"].as_str().expect("Id in reply").to_owned()
}

pub fn container_body(auto_remove: bool) -> serde_json::Value {
    serde_json::json!({
        "Image": "host",
        "Cmd": ["true"],
        "AttachStdout": auto_remove,
        "AttachStderr": auto_remove,
        "HostConfig": {"NetworkMode": "none", "AutoRemove": auto_remove},
    })
}

/// The hardened variant of the `run --rm` body: a memory and a pids limit (cgroup files written
/// at start, read at exit).
pub fn limited_body() -> serde_json::Value {
    let mut body = container_body(true);
    body["HostConfig"]["Memory"] = serde_json::json!(64 << 20);
    body["HostConfig"]["PidsLimit"] = serde_json::json!(100);
    body
}

/// `docker run --rm host true` on the wire: create, attach (hijacked), wait for `removed`
/// (headers first), start, then the wait's status and the attach stream's end.
/// `body` is the create body; `security_opt` goes to its `HostConfig.SecurityOpt` (empty:
/// Docker's default confinement, seccomp included).
pub async fn run_rm_true(
    api: &mut Api,
    waiter: &mut Api,
    socket: &Path,
    body: &serde_json::Value,
    security_opt: &[&str],
) {
    let mut create = body.clone();
    if !security_opt.is_empty() {
        create["HostConfig"]["SecurityOpt"] = serde_json::json!(security_opt);
    }
    let id = api.create(create).await;

    let mut attach = UnixStream::connect(socket).await.expect("connect attach");
    let head = format!(
        "POST {API}/containers/{id}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: api.berth.localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    );
    attach.write_all(head.as_bytes()).await.expect("attach");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = attach.read(&mut buf).await.expect("attach reply");
        assert!(n > 0, "attach closed before its headers");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101") || got.starts_with(b"HTTP/1.1 200"),
        "attach: {}",
        String::from_utf8_lossy(&got)
    );
    let drain = tokio::spawn(async move {
        let mut rest = Vec::new();
        let _ = attach.read_to_end(&mut rest).await;
        rest.len()
    });

    api.start_and_wait_removed(waiter, &id).await;
    black_box(drain.await.expect("attach drain"));
}

/// An example plugin binary: from `BERTH_BENCH_PLUGIN_DIR` if set, else the one built beside the
/// bench (see `berth_tests::example_plugin`).
pub fn plugin_bin(name: &str) -> PathBuf {
    match std::env::var_os("BERTH_BENCH_PLUGIN_DIR") {
        Some(dir) => {
            let bin = PathBuf::from(dir).join(name);
            assert!(bin.exists(), "{} missing", bin.display());
            bin
        }
        None => berth_tests::example_plugin(name),
    }
}

/// Loads the plugin serving `sock` as `name` (the engine polls the socket until it answers).
pub fn load_plugin(d: &Daemon, name: &str, sock: &Path) {
    let body = serde_json::json!({"Name": name, "Socket": sock, "Timeout": "20s"});
    let r = d.raw_json("POST", "/berth/plugins/load", &body);
    assert_eq!(r.status, 200, "load {name}: {}", r.text());
}

/// Starts the `flocker` process on a socket in the daemon's dir (its storage there too);
/// returns it and its socket, not yet loaded.
pub fn spawn_flocker(d: &Daemon) -> (PluginProc, PathBuf) {
    let sock = d.dir().join("flocker.sock");
    let storage = d.dir().join("flocker-storage");
    std::fs::create_dir_all(&storage).expect("flocker storage");
    let p = spawn_plugin(
        &plugin_bin("flocker"),
        &[
            "--socket",
            sock.to_str().expect("utf-8 path"),
            "--name",
            "flocker",
            "--storage",
            storage.to_str().expect("utf-8 path"),
        ],
    );
    (p, sock)
}

/// Starts `flocker` on a socket in the daemon's dir and loads it as volume driver `flocker`.
pub fn start_flocker(d: &Daemon) -> PluginProc {
    let (p, sock) = spawn_flocker(d);
    load_plugin(d, "flocker", &sock);
    p
}

/// Creates and removes one volume with `driver` (`None`: the local driver).
pub async fn volume_create_rm(api: &mut Api, driver: Option<&str>) {
    let name = unique("benchvol");
    let mut body = serde_json::json!({"Name": name});
    if let Some(driver) = driver {
        body["Driver"] = driver.into();
    }
    api.call(
        Method::POST,
        "/volumes/create",
        Some(body),
        StatusCode::CREATED,
    )
    .await;
    api.call(
        Method::DELETE,
        &format!("/volumes/{name}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
}

/// Summary of one timing loop, as `cargo xtask bench` reads it (ns).
pub fn summary(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({
        "median": at(0.5),
        "p10": at(0.1),
        "p90": at(0.9),
        "n": samples.len(),
    })
}

/// `run --rm -v VOLUME:/d host true` on the wire without attaching: create (AutoRemove),
/// wait for `removed` (headers first), start, then the wait's status.
pub async fn run_rm_volume(socket: &Path, volume: &str) {
    let mut api = Api::connect(socket).await;
    let mut waiter = Api::connect(socket).await;
    let body = serde_json::json!({
        "Image": "host",
        "Cmd": ["true"],
        "HostConfig": {
            "NetworkMode": "none",
            "AutoRemove": true,
            "Binds": [format!("{volume}:/d")],
        },
    });
    let id = api.create(body).await;
    api.start_and_wait_removed(&mut waiter, &id).await;
}

pub async fn container_create_rm(api: &mut Api) {
    let id = api.create(container_body(false)).await;
    api.call(
        Method::DELETE,
        &format!("/containers/{id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
}

pub fn quick() -> bool {
    std::env::var_os("BERTH_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Where the timing loops' results go: `<target>/bench/manual/<file>`.
pub fn manual_results_path(file: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench/manual").join(file)
}
