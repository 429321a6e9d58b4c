//! Criterion benches of the plugin host's hot path: one plugin call through [`PluginClient`] next to
//! the two floors measured in the same run (a raw UNIX-socket round trip and a bare hyper
//! keep-alive POST), and hook fan-out per event to N = 0, 1, 4, 16, 64 plugins, sequential
//! ([`chain`]) against concurrent ([`notify_all`]), with 200 B and 64 KiB events, one slow plugin
//! (5 ms) among N, and one failing plugin (fast error against a missed deadline). Two paired
//! loops follow the criterion groups (`plugin_call_paired`, `fanout_paired`): the cases whose
//! ratios carry a target, interleaved in short blocks, written to
//! `<target>/bench/manual/plugin_host.json` for `cargo xtask bench`.
//!
//! Every server is a separate process: this bench binary re-executes itself with
//! `--berth-bench-role ROLE SOCKET` as an echo server, a bare hyper server or a no-op plugin built
//! with the plugin SDK (the same server code real plugins use). Connections are opened before the
//! timed region and kept alive, as the engine keeps them. The plugin-call benches pin the bench
//! (and so every child) to CPU 0 because cross-vCPU wake-ups cost ~25 µs each way on the 2-vCPU VMs
//! we measure on (see `docs/bench` and the README); the fan-out benches then unpin (sequential and
//! concurrent dispatch compared on all CPUs). `BERTH_BENCH_CPU=none` disables pinning, `BERTH_BENCH_CPU=N`
//! picks another CPU, and `BERTH_BENCH_PLUGIN_CPU=N` moves the server processes to CPU N (engine
//! and plugins on separate CPUs). `BERTH_BENCH_QUICK=1` shortens every measurement for CI smoke runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_plugin_host::protocol::FailurePolicy;
use berth_plugin_host::protocol::mvp::VolumeEvent;
use berth_plugin_host::{
    HostConfig, LoadOptions, LoadedPlugin, PluginClient, PluginHost, chain, encode_json, notify_all,
};
use berth_plugin_sdk::{Plugin, Reply, StatusCode};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;

/// The extension call every bench plugin answers.
const PATH: &str = "/Bench.Event";
/// The reply of every server (also the raw echo's reply size is the request size).
const REPLY: &[u8] = br#"{"Err":"","Action":"continue"}"#;
/// Fan-out sizes.
const NS: [usize; 5] = [0, 1, 4, 16, 64];
/// The deadline of the plugin that never answers in the failing-plugin benches.
const HANG_DEADLINE_MS: u64 = 20;

// ---------------------------------------------------------------------------------------------
// Server roles (child processes)
// ---------------------------------------------------------------------------------------------

/// What a child process of this bench serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// Blocking std echo, one thread per connection.
    Echo,
    /// Bare hyper HTTP/1.1 keep-alive server answering [`REPLY`].
    Hyper,
    /// No-op SDK plugin answering [`REPLY`] on [`PATH`].
    Plugin,
    /// SDK plugin that sleeps 5 ms before answering.
    Slow,
    /// SDK plugin that fails every call at once (500 + `Err`).
    Fail,
    /// SDK plugin that never answers calls (handshakes work).
    Hang,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Echo => "echo",
            Role::Hyper => "hyper",
            Role::Plugin => "plugin",
            Role::Slow => "slow",
            Role::Fail => "fail",
            Role::Hang => "hang",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [
            Role::Echo,
            Role::Hyper,
            Role::Plugin,
            Role::Slow,
            Role::Fail,
            Role::Hang,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

fn serve(role: Role, socket: &Path) {
    let _ = std::fs::remove_file(socket);
    match role {
        Role::Echo => serve_echo(socket),
        Role::Hyper => current_thread().block_on(serve_hyper(socket)),
        _ => current_thread().block_on(serve_plugin(role, socket)),
    }
}

fn serve_echo(socket: &Path) {
    let listener = StdUnixListener::bind(socket).expect("bind echo socket");
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn serve_hyper(socket: &Path) {
    let listener = tokio::net::UnixListener::bind(socket).expect("bind hyper socket");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let _body = req.into_body().collect().await?.to_bytes();
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(REPLY)));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, hyper::Error>(resp)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn serve_plugin(role: Role, socket: &Path) {
    let plugin = Plugin::builder(format!("bench-{}", role.as_str()))
        .author("Berth benches")
        .version("1.0")
        // A plugin with no interest is refused at load; the benches call PATH directly, so the
        // one subscription (volume create, never sent here) only makes the handshake valid.
        .volume_events(&[VolumeEvent::Create])
        .route_raw(PATH, move |_body| async move {
            match role {
                Role::Slow => tokio::time::sleep(Duration::from_millis(5)).await,
                Role::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                _ => {}
            }
            if role == Role::Fail {
                return Reply::error(500, "bench: refused");
            }
            Reply {
                status: StatusCode::OK,
                content_type: "application/json",
                body: Bytes::from_static(REPLY),
            }
        })
        .build();
    plugin
        .serve_until_signal(socket)
        .await
        .expect("serve plugin");
}

/// Child processes, killed by PID on drop.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

impl Servers {
    fn spawn(&mut self, role: Role, socket: &Path) {
        let child = Command::new(std::env::current_exe().expect("current_exe"))
            .arg("--berth-bench-role")
            .arg(role.as_str())
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn bench server");
        self.0.push(child);
    }
}

fn wait_for_socket(socket: &Path) {
    let start = Instant::now();
    while StdUnixStream::connect(socket).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server on {} did not come up",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

/// A `container.pre_start`-like JSON event of exactly `size` bytes.
fn event(size: usize) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Event": "container.pre_start",
        "ContainerID": "5f0c1e2d3b4a59687766554433221100ffeeddccbbaa99887766554433221100",
        "Image": "busybox",
        "Pad": "",
    });
    let base = serde_json::to_vec(&v).expect("encode").len();
    assert!(
        size >= base,
        "event size {size} below the {base}-byte skeleton"
    );
    v["Pad"] = serde_json::Value::String("x".repeat(size - base));
    assert_eq!(serde_json::to_vec(&v).expect("encode").len(), size);
    v
}

fn event_bytes(size: usize) -> Bytes {
    Bytes::from(serde_json::to_vec(&event(size)).expect("encode"))
}

// ---------------------------------------------------------------------------------------------
// Benches
// ---------------------------------------------------------------------------------------------

fn quick() -> bool {
    std::env::var_os("BERTH_BENCH_QUICK").is_some_and(|v| v != "0")
}

fn configure(c: Criterion) -> Criterion {
    // `cargo xtask bench` draws the plot that matters; criterion's HTML reports cost seconds each.
    let c = c.without_plots();
    if quick() {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
            .sample_size(60)
            .noise_threshold(0.05)
    }
}

/// The cases of the plugin-call benches, in the order of the README's table.
const CALL_CASES: [&str; 4] = [
    "floor_raw_unix_200B",
    "floor_hyper_keepalive_200B",
    "client_post_raw_bare_server_200B",
    "client_call_sdk_plugin_200B",
];

/// What the plugin-call benches talk to: an echo server, a bare hyper server and a no-op SDK
/// plugin, each its own process, with a kept-alive connection to each, and the 200 B event.
struct CallRig {
    _servers: Servers,
    raw: StdUnixStream,
    back: Vec<u8>,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    to_bare: PluginClient,
    to_plugin: PluginClient,
    payload: Bytes,
    ev: serde_json::Value,
}

impl CallRig {
    fn new(rt: &tokio::runtime::Runtime, dir: &Path) -> Self {
        let mut servers = Servers(Vec::new());
        let echo = dir.join("echo.sock");
        let bare = dir.join("hyper.sock");
        let noop = dir.join("noop.sock");
        servers.spawn(Role::Echo, &echo);
        servers.spawn(Role::Hyper, &bare);
        servers.spawn(Role::Plugin, &noop);
        for s in [&echo, &bare, &noop] {
            wait_for_socket(s);
        }
        let payload = event_bytes(200);
        let sender = rt.block_on(async {
            let stream = tokio::net::UnixStream::connect(&bare)
                .await
                .expect("connect");
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            sender
        });
        CallRig {
            _servers: servers,
            raw: StdUnixStream::connect(&echo).expect("connect echo"),
            back: vec![0u8; payload.len()],
            sender,
            to_bare: PluginClient::new("bare", &bare),
            to_plugin: PluginClient::new("noop", &noop),
            payload,
            ev: event(200),
        }
    }

    /// Runs one iteration of `CALL_CASES[case]`.
    async fn run(&mut self, case: usize) {
        let deadline = Duration::from_secs(5);
        match case {
            // Floor 1: raw UNIX-socket round trip of the same 200 bytes (blocking std at both
            // ends).
            0 => {
                self.raw.write_all(&self.payload).expect("write");
                self.raw.read_exact(&mut self.back).expect("read");
                black_box(&self.back);
            }
            // Floor 2: a bare hyper keep-alive POST (one held `SendRequest`, no pool, no
            // deadline).
            1 => {
                self.sender.ready().await.expect("ready");
                let req = Request::post(PATH)
                    .header(http::header::HOST, "plugin.berth.localhost")
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::ACCEPT, "application/json")
                    .body(Full::new(self.payload.clone()))
                    .expect("request");
                let resp = self.sender.send_request(req).await.expect("send");
                black_box(resp.into_body().collect().await.expect("body").to_bytes());
            }
            // The client against the same bare server: the client's own overhead.
            2 => {
                let reply = self.to_bare.post_raw(PATH, self.payload.clone(), deadline);
                black_box(reply.await.expect("call"));
            }
            // One plugin call: the client (JSON encode, deadline, keep-alive, Docker's reply
            // rules) to a no-op SDK plugin.
            _ => {
                let reply = self
                    .to_plugin
                    .call::<_, IgnoredAny>(PATH, &self.ev, deadline);
                black_box(reply.await.expect("call"));
            }
        }
    }
}

/// `plugin_call/*`: the floors and one plugin call, then (`plugin_call_paired/*`) the same four
/// cases interleaved in short blocks (round-robin, rotating which case goes first) so that every
/// ratio compares figures taken seconds apart. On the VMs we measure on, the level of every
/// figure drifts by 30 % and more between criterion's back-to-back measurement windows, which is
/// larger than the overhead being measured; the median of per-round ratios is immune to that
/// drift.
fn bench_plugin_call(
    c: &mut Criterion,
    dir: &Path,
    paired: &mut serde_json::Map<String, serde_json::Value>,
) {
    let rt = current_thread();
    let mut rig = CallRig::new(&rt, dir);
    let mut g = c.benchmark_group("plugin_call");
    for (case, name) in CALL_CASES.iter().enumerate() {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        rig.run(case).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    if !wanted("plugin_call_paired") {
        return;
    }
    let (rounds, per_round) = if quick() { (8, 200) } else { (60, 300) };
    // samples[case] over all rounds but the first; ratios[case] = per-round p50 ÷ the hyper floor's.
    let mut samples = vec![Vec::new(); CALL_CASES.len()];
    let mut ratios = vec![Vec::new(); CALL_CASES.len()];
    rt.block_on(async {
        for round in 0..=rounds {
            let mut p50 = [0.0f64; CALL_CASES.len()];
            for k in 0..CALL_CASES.len() {
                let case = (round + k) % CALL_CASES.len();
                let mut times = Vec::with_capacity(per_round);
                for _ in 0..per_round {
                    let t = Instant::now();
                    rig.run(case).await;
                    times.push(t.elapsed().as_nanos() as f64);
                }
                p50[case] = median(&mut times.clone());
                // Round 0 is warm-up.
                if round > 0 {
                    samples[case].extend(times);
                }
            }
            if round > 0 {
                for (case, r) in ratios.iter_mut().enumerate() {
                    r.push(p50[case] / p50[1]);
                }
            }
        }
    });
    for (case, name) in CALL_CASES.iter().enumerate() {
        record_paired(
            paired,
            &format!("plugin_call_paired/{name}"),
            &mut samples[case],
            &mut ratios[case],
            "bare hyper",
        );
    }
}

/// Adds `id` (median of `samples`) and `id/round_ratio` (median of the per-round `ratios`) to
/// `out`, and prints them.
fn record_paired(
    out: &mut serde_json::Map<String, serde_json::Value>,
    id: &str,
    samples: &mut [f64],
    ratios: &mut [f64],
    to: &str,
) {
    let p50 = median(samples);
    let ratio = median(ratios);
    println!(
        "{id:<55} median {:>10.2} µs  per-round ratio to {to} {ratio:.3}",
        p50 / 1e3
    );
    out.insert(
        id.to_owned(),
        serde_json::json!({ "median": p50, "n": samples.len() }),
    );
    out.insert(
        format!("{id}/round_ratio"),
        serde_json::json!({ "median": ratio, "n": ratios.len() }),
    );
}

/// Writes the paired loops' results to `<target>/bench/manual/plugin_host.json` for
/// `cargo xtask bench`.
fn write_paired(out: &serde_json::Map<String, serde_json::Value>) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("bench/manual/plugin_host.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create manual results dir");
    std::fs::write(&path, serde_json::to_string_pretty(out).expect("json"))
        .expect("write paired results");
    println!("paired loops written to {}", path.display());
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The plugins of the fan-out benches, loaded into a real [`PluginHost`].
struct Fleet {
    _servers: Servers,
    noop: Vec<Arc<LoadedPlugin>>,
    slow: Arc<LoadedPlugin>,
    fail: Arc<LoadedPlugin>,
    hang: Arc<LoadedPlugin>,
    _host: PluginHost,
}

fn fleet(rt: &tokio::runtime::Runtime, dir: &Path, n: usize) -> Fleet {
    let mut servers = Servers(Vec::new());
    let sock = |name: &str| dir.join(format!("{name}.sock"));
    for i in 0..n {
        servers.spawn(Role::Plugin, &sock(&format!("p{i:02}")));
    }
    servers.spawn(Role::Slow, &sock("slow"));
    servers.spawn(Role::Fail, &sock("fail"));
    servers.spawn(Role::Hang, &sock("hang"));
    let mut config = HostConfig::new(dir.join("host"));
    config.discovery_dirs = Vec::new();
    config.load_deadline = Duration::from_secs(30);
    config.caps.default = Duration::from_secs(5);
    let host = PluginHost::open(config, None).expect("open host");
    let named = |name: &str| LoadOptions {
        name: Some(name.to_owned()),
        ..LoadOptions::default()
    };
    let ignore = |name: &str, deadline_ms: Option<u64>| LoadOptions {
        failure_policy: Some(FailurePolicy::Ignore),
        deadline_ms,
        ..named(name)
    };
    rt.block_on(async {
        let mut noop = Vec::new();
        for i in 0..n {
            let name = format!("p{i:02}");
            let p = host
                .load_socket(sock(&name), named(&name))
                .await
                .expect("load plugin");
            noop.push(p);
        }
        let slow = host
            .load_socket(sock("slow"), named("slow"))
            .await
            .expect("load slow");
        let fail = host
            .load_socket(sock("fail"), ignore("fail", None))
            .await
            .expect("load fail");
        let hang = host
            .load_socket(sock("hang"), ignore("hang", Some(HANG_DEADLINE_MS)))
            .await
            .expect("load hang");
        Fleet {
            _servers: servers,
            noop,
            slow,
            fail,
            hang,
            _host: host,
        }
    })
}

/// Sequential: the ordered chain every set-up event and pre-hook uses. The event is encoded once
/// per event (the chain's value is the encoded body; no plugin here changes it).
async fn fire_seq(plugins: &[Arc<LoadedPlugin>], ev: &serde_json::Value) -> usize {
    let body = encode_json(ev).expect("encode");
    let out = chain(plugins, "bench.event", body, |p, body| async move {
        p.call_encoded::<IgnoredAny>("bench.event", PATH, body)
            .await
            .map(|_| None)
    })
    .await
    .expect("chain");
    out.succeeded.len() + out.warnings.len()
}

/// Concurrent: the same call to every plugin at once, the event encoded once.
async fn fire_conc(plugins: &[Arc<LoadedPlugin>], ev: &serde_json::Value) -> usize {
    let body = encode_json(ev).expect("encode");
    notify_all(plugins, |p| {
        let body = body.clone();
        async move {
            p.call_encoded::<IgnoredAny>("bench.event", PATH, body)
                .await
        }
    })
    .await
    .len()
}

/// `N - 1` no-op plugins with `special` in the middle.
fn with_one(
    noop: &[Arc<LoadedPlugin>],
    n: usize,
    special: &Arc<LoadedPlugin>,
) -> Vec<Arc<LoadedPlugin>> {
    let mut v: Vec<_> = noop[..n - 1].to_vec();
    v.insert((n - 1) / 2, special.clone());
    v
}

/// Fan-out compares sequential and concurrent dispatch, so it runs on every CPU (one pinned CPU
/// would leave concurrency nothing to overlap with zero-delay plugins); the plugin fleet spawned
/// after this inherits it. `BERTH_BENCH_FANOUT_PINNED=1` keeps the bench's pin instead.
fn unpin_for_fanout() {
    if std::env::var_os("BERTH_BENCH_FANOUT_PINNED").is_some() {
        return;
    }
    let mut all = nix::sched::CpuSet::new();
    // Every CPU the kernel may have (the current affinity hides how many there are).
    for cpu in 0..nix::sched::CpuSet::count() {
        let _ = all.set(cpu);
    }
    if nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &all).is_err() {
        eprintln!("could not unpin for the fan-out benches; they stay pinned");
    }
}

fn bench_fanout(
    c: &mut Criterion,
    dir: &Path,
    paired: &mut serde_json::Map<String, serde_json::Value>,
) {
    unpin_for_fanout();
    let rt = current_thread();
    let max = *NS.iter().max().unwrap_or(&0);
    let f = fleet(&rt, dir, max);
    for (label, size) in [("200B", 200usize), ("64KiB", 64 * 1024)] {
        let ev = Arc::new(event(size));
        let mut g = c.benchmark_group(format!("fanout_{label}"));
        for n in NS {
            let plugins = &f.noop[..n];
            if n > 0 {
                g.throughput(Throughput::Elements(n as u64));
            }
            if n >= 16 && !quick() {
                g.sample_size(30);
            }
            g.bench_with_input(BenchmarkId::new("seq", n), &n, |b, _| {
                b.to_async(&rt).iter(|| fire_seq(plugins, &ev))
            });
            g.bench_with_input(BenchmarkId::new("conc", n), &n, |b, _| {
                b.to_async(&rt).iter(|| fire_conc(plugins, &ev))
            });
        }
        g.finish();
    }

    let ev = Arc::new(event(200));
    let mut g = c.benchmark_group("fanout_slow5ms_200B");
    g.sample_size(10);
    for n in [1usize, 4, 16] {
        let plugins = with_one(&f.noop, n, &f.slow);
        g.bench_with_input(BenchmarkId::new("seq", n), &n, |b, _| {
            b.to_async(&rt).iter(|| fire_seq(&plugins, &ev))
        });
        g.bench_with_input(BenchmarkId::new("conc", n), &n, |b, _| {
            b.to_async(&rt).iter(|| fire_conc(&plugins, &ev))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("fanout_failing_200B");
    g.sample_size(10);
    let n = 16;
    for (label, special) in [("fast_error", &f.fail), ("deadline_20ms", &f.hang)] {
        let plugins = with_one(&f.noop, n, special);
        g.bench_with_input(BenchmarkId::new(format!("{label}_seq"), n), &n, |b, _| {
            b.to_async(&rt).iter(|| fire_seq(&plugins, &ev))
        });
        g.bench_with_input(BenchmarkId::new(format!("{label}_conc"), n), &n, |b, _| {
            b.to_async(&rt).iter(|| fire_conc(&plugins, &ev))
        });
    }
    g.finish();
    if wanted("fanout_paired") {
        paired_fanout(&rt, &f, paired);
    }
    drop(f);
}

/// `fanout_paired/*`: sequential and concurrent dispatch to the same N plugins alternating in
/// short blocks (which one goes first alternates too), for N = 16 and 64 and both payloads; the
/// median of per-round conc ÷ seq ratios is the figure the notify target applies to, for the
/// same reason as in [`bench_plugin_call`].
fn paired_fanout(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    let (rounds, events) = if quick() { (4, 6) } else { (20, 16) };
    for (label, size) in [("200B", 200usize), ("64KiB", 64 * 1024)] {
        let ev = Arc::new(event(size));
        for n in [16usize, 64] {
            let plugins = &f.noop[..n];
            let mut samples = [Vec::new(), Vec::new()];
            let mut ratios = Vec::new();
            rt.block_on(async {
                for round in 0..=rounds {
                    let mut p50 = [0.0f64; 2];
                    for k in 0..2 {
                        let mode = (round + k) % 2;
                        let mut times = Vec::with_capacity(events);
                        for _ in 0..events {
                            let t = Instant::now();
                            if mode == 0 {
                                black_box(fire_seq(plugins, &ev).await);
                            } else {
                                black_box(fire_conc(plugins, &ev).await);
                            }
                            times.push(t.elapsed().as_nanos() as f64);
                        }
                        p50[mode] = median(&mut times.clone());
                        if round > 0 {
                            samples[mode].extend(times);
                        }
                    }
                    if round > 0 {
                        ratios.push(p50[1] / p50[0]);
                    }
                }
            });
            let [seq, conc] = &mut samples;
            record_paired(
                out,
                &format!("fanout_paired_{label}/seq/{n}"),
                seq,
                &mut [1.0],
                "sequential",
            );
            record_paired(
                out,
                &format!("fanout_paired_{label}/conc/{n}"),
                conc,
                &mut ratios,
                "sequential",
            );
        }
    }
}

fn pin() {
    pin_from("BERTH_BENCH_CPU", "0");
}

/// Pins this process to the CPU named by `var` (`default` when unset; `none` = no pinning).
fn pin_from(var: &str, default: &str) {
    let cpu = std::env::var(var).unwrap_or_else(|_| default.into());
    if cpu == "none" {
        return;
    }
    let Ok(cpu) = cpu.parse::<usize>() else {
        eprintln!("{var}={cpu}: not a CPU number; not pinning");
        return;
    };
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_err()
    {
        eprintln!("could not pin to CPU {cpu}; running unpinned");
    }
}

/// Whether criterion's name filter (the first free argument, if any) lets `name` run.
fn wanted(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|f| name.contains(&f))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--berth-bench-role") {
        let role = args
            .get(2)
            .and_then(|r| Role::parse(r))
            .expect("--berth-bench-role ROLE SOCKET");
        let socket = PathBuf::from(args.get(3).expect("--berth-bench-role ROLE SOCKET"));
        // Servers inherit the bench's CPU unless BERTH_BENCH_PLUGIN_CPU puts them on another one
        // (engine on one CPU, plugins on the other: what concurrent notify can overlap).
        if std::env::var_os("BERTH_BENCH_PLUGIN_CPU").is_some() {
            pin_from("BERTH_BENCH_PLUGIN_CPU", "none");
        }
        serve(role, &socket);
        return;
    }
    pin();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = configure(Criterion::default()).configure_from_args();
    let mut paired = serde_json::Map::new();
    bench_plugin_call(&mut c, dir.path(), &mut paired);
    bench_fanout(&mut c, dir.path(), &mut paired);
    c.final_summary();
    if !paired.is_empty() {
        write_paired(&paired);
    }
}
