//! Criterion benches of engine operations through the Engine API on a real `berth daemon` (release
//! build, private temp root and socket, started by the e2e harness): API request latency
//! (`GET /_ping` against `GET /containers/json`), volume create+rm with the local driver,
//! container create+rm, and `run --rm host true` the way the docker CLI does it (create, attach,
//! wait for `removed`, start). The same three operations also run through the real `docker` CLI,
//! which is how Docker 20.10's reference figures were taken (CLI start and `/_ping` included).
//!
//! Needs root (the daemon creates namespaces and mounts). The client is a hyper keep-alive
//! connection over the UNIX socket, opened outside the timed region. `BERTH_BENCH_QUICK=1`
//! shortens every measurement for CI smoke runs; `BERTH_BENCH_NO_CLI=1` skips the docker CLI series.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_tests::Daemon;
use bytes::Bytes;
use criterion::{Criterion, SamplingMode};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const API: &str = "/v1.50";

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// One keep-alive HTTP/1.1 connection to the daemon.
struct Api {
    sender: SendRequest<Full<Bytes>>,
}

impl Api {
    async fn connect(socket: &Path) -> Api {
        let stream = UnixStream::connect(socket).await.expect("connect daemon");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        Api { sender }
    }

    async fn send(
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
    async fn call(
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
}

fn id_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("json reply");
    v["Id"].as_str().expect("Id in reply").to_owned()
}

fn container_body(auto_remove: bool) -> serde_json::Value {
    serde_json::json!({
        "Image": "host",
        "Cmd": ["true"],
        "AttachStdout": auto_remove,
        "AttachStderr": auto_remove,
        "HostConfig": {"NetworkMode": "none", "AutoRemove": auto_remove},
    })
}

async fn volume_create_rm(api: &mut Api) {
    let name = unique("benchvol");
    api.call(
        Method::POST,
        "/volumes/create",
        Some(serde_json::json!({"Name": name})),
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

async fn container_create_rm(api: &mut Api) {
    let body = api
        .call(
            Method::POST,
            "/containers/create",
            Some(container_body(false)),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&body);
    api.call(
        Method::DELETE,
        &format!("/containers/{id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
}

/// `docker run --rm host true` on the wire: create, attach (hijacked), wait for `removed`
/// (headers first), start, then the wait's status and the attach stream's end.
async fn run_rm_true(api: &mut Api, waiter: &mut Api, socket: &Path) {
    let body = api
        .call(
            Method::POST,
            "/containers/create",
            Some(container_body(true)),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&body);

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

    let wait = waiter
        .send(
            Method::POST,
            &format!("/containers/{id}/wait?condition=removed"),
            None,
        )
        .await;
    assert_eq!(wait.status(), StatusCode::OK);
    api.call(
        Method::POST,
        &format!("/containers/{id}/start"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let status = wait
        .into_body()
        .collect()
        .await
        .expect("wait body")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&status).expect("wait json");
    assert_eq!(v["StatusCode"], 0, "true exits 0: {v}");
    black_box(drain.await.expect("attach drain"));
}

fn quick() -> bool {
    std::env::var_os("BERTH_BENCH_QUICK").is_some_and(|v| v != "0")
}

fn configure(c: Criterion) -> Criterion {
    let c = c.sample_size(10).without_plots();
    if quick() {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
    }
}

fn bench_api(c: &mut Criterion, d: &Daemon, rt: &tokio::runtime::Runtime) {
    let socket: PathBuf = d.socket();
    let (mut api, mut waiter) =
        rt.block_on(async { (Api::connect(&socket).await, Api::connect(&socket).await) });
    let mut g = c.benchmark_group("engine_api");
    g.sampling_mode(SamplingMode::Flat);
    if !quick() {
        g.sample_size(30);
    }
    g.bench_function("ping", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(api.call(Method::GET, "/_ping", None, StatusCode::OK).await);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("containers_json", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(
                        api.call(Method::GET, "/containers/json", None, StatusCode::OK)
                            .await,
                    );
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("volume_create_rm", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    volume_create_rm(&mut api).await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("container_create_rm", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    container_create_rm(&mut api).await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("run_rm_true", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    run_rm_true(&mut api, &mut waiter, &socket).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn bench_cli(c: &mut Criterion, d: &Daemon) {
    let mut g = c.benchmark_group("engine_cli");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("volume_create_rm", |b| {
        b.iter(|| {
            let name = unique("benchvol");
            d.docker(&["volume", "create", &name]).ok();
            d.docker(&["volume", "rm", &name]).ok();
        })
    });
    g.bench_function("container_create_rm", |b| {
        b.iter(|| {
            let out = d.docker(&["create", "--network", "none", "host", "true"]);
            let id = out.ok().trim().to_owned();
            d.docker(&["rm", &id]).ok();
        })
    });
    g.bench_function("run_rm_true", |b| {
        b.iter(|| {
            d.docker(&["run", "--rm", "--network", "none", "host", "true"])
                .ok();
        })
    });
    g.finish();
}

fn main() {
    let mut c = configure(Criterion::default()).configure_from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let d = Daemon::start();
    bench_api(&mut c, &d, &rt);
    let cli = std::env::var_os("BERTH_BENCH_NO_CLI").is_none_or(|v| v == "0");
    if cli
        && std::process::Command::new("docker")
            .arg("--version")
            .output()
            .is_ok()
    {
        bench_cli(&mut c, &d);
    }
    drop(d);
    c.final_summary();
}
