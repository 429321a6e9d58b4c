//! plugin-host against real plugin processes (`test-plugin` from this crate): negotiation, polling,
//! deadlines, dispatch semantics, keep-alive, upgrade, persistence and container loading through a
//! process-spawning launcher (the test double stands in for the engine's containers only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_plugin_host::protocol::mvp::{NetworkEvent, NetworkMessage, VolumeEvent, VolumeMessage};
use berth_plugin_host::protocol::{FailurePolicy, Protocol};
use berth_plugin_host::{
    CallErrorKind, HostConfig, HostError, LaunchError, LaunchSpec, Launched, LoadOptions,
    PluginHost, PluginLauncher, PluginState, ReadyState, UpgradeTo, chain, hooks, notify_all,
    teardown,
};
use futures::future::BoxFuture;

const BIN: &str = env!("CARGO_BIN_EXE_test-plugin");

/// A plugin process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(socket: &Path, name: &str, extra: &[&str]) -> Proc {
    let child = Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(["--name", name])
        .args(extra)
        .spawn()
        .expect("spawn test-plugin");
    Proc(child)
}

fn host(root: &Path) -> PluginHost {
    PluginHost::open(config(root), None).unwrap()
}

fn config(root: &Path) -> HostConfig {
    let mut c = HostConfig::new(root);
    c.load_deadline = Duration::from_secs(10);
    c.caps.default = Duration::from_secs(5);
    c.drain_grace = Duration::from_secs(5);
    c.discovery_dirs = vec![root.join("discovery")];
    c
}

fn vol(path: &str) -> VolumeMessage {
    VolumeMessage::v1(path, "c0ffee")
}

async fn volume_chain(
    h: &PluginHost,
    event: VolumeEvent,
    path: &str,
) -> Result<berth_plugin_host::ChainOutcome<VolumeMessage>, berth_plugin_host::ChainError> {
    let plugins = h.subscribers(|p| p.subscriptions().wants_volume(event));
    chain(
        &plugins,
        &format!("volume.{}", event.as_str()),
        vol(path),
        |p, m: VolumeMessage| async move {
            Ok(hooks::volume(&p, event, &m)
                .await?
                .map(|host_path| VolumeMessage { host_path, ..m }))
        },
    )
    .await
}

#[tokio::test]
async fn negotiates_v1_v2_and_activate_with_real_plugins() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let _a = spawn(&d.path().join("one.sock"), "one", &["--answer", "v1"]);
    let _b = spawn(
        &d.path().join("two.sock"),
        "two",
        &[
            "--answer",
            "v2,v1,activate",
            "--deadline-ms",
            "1234",
            "--failure-policy",
            "ignore",
        ],
    );
    let _c = spawn(
        &d.path().join("act.sock"),
        "ignored",
        &["--answer", "activate", "--implements", "VolumeDriver"],
    );
    let one = h
        .load_socket(d.path().join("one.sock"), LoadOptions::default())
        .await
        .unwrap();
    let two = h
        .load_socket(d.path().join("two.sock"), LoadOptions::default())
        .await
        .unwrap();
    let act = h
        .load_socket(d.path().join("act.sock"), LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(one.protocol(), Protocol::V1);
    assert_eq!(one.name(), "one");
    assert!(one.subscriptions().wants_volume(VolumeEvent::Create));
    assert_eq!(two.protocol(), Protocol::V2);
    assert_eq!(two.record().info.version, "1.0");
    assert_eq!(
        two.deadline(),
        Duration::from_millis(1234),
        "v2 requested deadline honoured"
    );
    assert_eq!(two.failure_policy(), FailurePolicy::Ignore);
    assert_eq!(act.protocol(), Protocol::Activate);
    assert_eq!(
        act.name(),
        "act",
        "activate plugins are named after their socket"
    );
    assert!(act.implements("VolumeDriver"));
    assert_eq!(h.names(), vec!["one", "two", "act"]);
    // Load options win over what the plugin asked for.
    let _d = spawn(
        &d.path().join("four.sock"),
        "four",
        &["--deadline-ms", "1234"],
    );
    let four = h
        .load_socket(
            d.path().join("four.sock"),
            LoadOptions {
                deadline_ms: Some(777),
                name: Some("renamed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(four.deadline(), Duration::from_millis(777));
    assert_eq!(four.name(), "renamed");
}

#[tokio::test]
async fn plugin_listening_two_seconds_late_is_still_loaded() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let sock = d.path().join("late.sock");
    let start = Instant::now();
    let _p = spawn(&sock, "late", &["--start-delay-ms", "2000"]);
    let p = h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "polling backoff stays short"
    );
    assert_eq!(p.protocol(), Protocol::V2);
}

#[tokio::test]
async fn never_answering_plugin_fails_at_its_deadline_listing_what_was_tried() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let sock = d.path().join("mute.sock");
    let _p = spawn(&sock, "mute", &["--never-answer"]);
    let start = Instant::now();
    let err = h
        .load_socket(
            &sock,
            LoadOptions {
                load_deadline_ms: Some(1500),
                name: Some("mute".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let el = start.elapsed();
    assert!(
        el >= Duration::from_millis(1500) && el < Duration::from_millis(2500),
        "{el:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin \"mute\": no handshake within 1500ms: tried /v2/handshake (no answer)"
    );
    assert!(h.names().is_empty());

    // Nothing ever listening: the message says so.
    let err = h
        .load_socket(
            d.path().join("absent.sock"),
            LoadOptions {
                load_deadline_ms: Some(300),
                name: Some("absent".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "plugin \"absent\": no handshake within 300ms: the socket never appeared at "
        ),
        "{err}"
    );
}

#[tokio::test]
async fn no_known_version_and_malformed_handshakes() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let _p = spawn(&d.path().join("none.sock"), "none", &["--answer", ""]);
    let err = h
        .load_socket(
            d.path().join("none.sock"),
            LoadOptions {
                name: Some("none".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin \"none\": speaks no handshake version Berth knows: tried /v2/handshake (404), /v1/handshake (404), /Plugin.Activate (404)"
    );
    let _q = spawn(&d.path().join("bad.sock"), "bad", &["--malformed"]);
    let err = h
        .load_socket(
            d.path().join("bad.sock"),
            LoadOptions {
                name: Some("bad".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    // A malformed 200 is "not this version": every version is tried, each answer listed.
    for path in ["/v2/handshake", "/v1/handshake", "/Plugin.Activate"] {
        assert!(
            msg.contains(&format!("{path} (200 malformed handshake reply")),
            "{msg}"
        );
    }
    assert!(
        msg.contains("body starts \"{\\\"Name\\\": oops not json\""),
        "{msg}"
    );
}

#[tokio::test]
async fn chain_runs_in_load_order_and_teardown_in_reverse() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let log = d.path().join("calls.log");
    let mut procs = Vec::new();
    for (name, answer) in [("a", "v2"), ("b", "v1"), ("c", "v2")] {
        let sock = d.path().join(format!("{name}.sock"));
        procs.push(spawn(
            &sock,
            name,
            &[
                "--answer",
                answer,
                "--suffix",
                &format!("/{name}"),
                "--log",
                log.to_str().unwrap(),
            ],
        ));
        h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    }
    let out = volume_chain(&h, VolumeEvent::Create, "/data")
        .await
        .unwrap();
    assert_eq!(
        out.value.host_path, "/data/a/b/c",
        "each plugin sees the previous output"
    );
    assert_eq!(out.succeeded, vec!["a", "b", "c"]);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "a /v2/volume/create\nb /v1/volume/volumes\nc /v2/volume/create\n"
    );

    std::fs::write(&log, "").unwrap();
    let plugins = h.subscribers(|p| p.subscriptions().wants_volume(VolumeEvent::Stop));
    assert_eq!(plugins.len(), 3);
    let warnings = teardown(&plugins, "volume.stop", |p| async move {
        hooks::volume(&p, VolumeEvent::Stop, &vol("/data"))
            .await
            .map(|_| ())
    })
    .await;
    assert!(warnings.is_empty(), "{warnings:?}");
    // v1 plugin b has no stop event: only the v2 plugins, in reverse order.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "c /v2/volume/stop\na /v2/volume/stop\n"
    );

    // Network messages chain the same way.
    let plugins = h.subscribers(|p| p.subscriptions().wants_network(NetworkEvent::Connect));
    let out = chain(
        &plugins,
        "network.connect",
        NetworkMessage::default(),
        |p, mut m: NetworkMessage| async move {
            Ok(hooks::network(&p, NetworkEvent::Connect, &m)
                .await?
                .map(|r| {
                    m.apply_reply(r);
                    m
                }))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        out.value.ip_address.as_deref(),
        Some("10.99.0.1/24"),
        "first plugin chose, later ones kept it"
    );
}

#[tokio::test]
async fn failure_policy_ignore_skips_and_abort_names_plugin_hook_and_succeeded() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let mut procs = Vec::new();
    let spec: [(&str, &[&str]); 3] = [
        ("a", &["--suffix", "/a"]),
        (
            "b",
            &["--fail", "disk on fire", "--failure-policy", "ignore"],
        ),
        ("c", &["--suffix", "/c"]),
    ];
    for (name, extra) in spec {
        let sock = d.path().join(format!("{name}.sock"));
        procs.push(spawn(&sock, name, extra));
        h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    }
    let out = volume_chain(&h, VolumeEvent::Create, "/x").await.unwrap();
    assert_eq!(out.value.host_path, "/x/a/c");
    assert_eq!(out.succeeded, vec!["a", "c"]);
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains("plugin \"b\": POST /v2/volume/create: disk on fire (HTTP 500)"),
        "{:?}",
        out.warnings
    );
    assert_eq!(
        h.get("b").unwrap().last_error().as_deref(),
        Some("plugin \"b\": POST /v2/volume/create: disk on fire (HTTP 500)")
    );

    // Same plugin under abort (200 + Err style this time).
    h.unload("b").await.unwrap();
    let sock = d.path().join("b2.sock");
    procs.push(spawn(
        &sock,
        "b",
        &["--fail", "no quota", "--fail-with-200"],
    ));
    h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    // order is now a, c, b
    let err = volume_chain(&h, VolumeEvent::Start, "/x")
        .await
        .unwrap_err();
    assert_eq!(err.plugin, "b");
    assert_eq!(err.hook, "volume.start");
    assert_eq!(err.succeeded, vec!["a", "c"]);
    assert!(matches!(err.reason.kind, CallErrorKind::Plugin(ref t) if t == "no quota"));
    assert_eq!(
        err.to_string(),
        "volume.start aborted by plugin \"b\": plugin \"b\": POST /v2/volume/start: no quota"
    );
    let stats = h.get("b").unwrap().hook_stats();
    assert_eq!(stats["volume.start"].failures, 1);
}

#[tokio::test]
async fn concurrent_notify_calls_all_at_once() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let mut procs = Vec::new();
    for i in 0..4 {
        let sock = d.path().join(format!("n{i}.sock"));
        procs.push(spawn(&sock, &format!("n{i}"), &["--latency-ms", "400"]));
        h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    }
    let plugins = h.snapshot();
    let start = Instant::now();
    let results = notify_all(&plugins, |p| async move {
        hooks::volume(&p, VolumeEvent::Stop, &vol("/v")).await
    })
    .await;
    let el = start.elapsed();
    assert_eq!(
        results.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["n0", "n1", "n2", "n3"]
    );
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    assert!(
        el < Duration::from_millis(1200),
        "concurrent, not 4 x 400ms: {el:?}"
    );
}

#[tokio::test]
async fn one_keep_alive_connection_is_reused() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let sock = d.path().join("ka.sock");
    let _p = spawn(&sock, "ka", &[]);
    let p = h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    for _ in 0..25 {
        hooks::volume(&p, VolumeEvent::Create, &vol("/k"))
            .await
            .unwrap();
    }
    assert_eq!(p.client().dials(), 1);
    let stats: serde_json::Value = p.call_empty("stats", "/Test.Stats").await.unwrap();
    // One connection for the handshake's client, one for the registered plugin's.
    assert_eq!(stats["Connections"], 2, "{stats}");
    assert_eq!(stats["Requests"], 27, "{stats}");
    assert_eq!(p.hook_stats()["volume.create"].calls, 25);
}

#[tokio::test]
async fn killed_plugin_fails_fast_naming_it_and_reconnects_when_back() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let sock = d.path().join("k.sock");
    let mut proc_ = spawn(&sock, "victim", &["--suffix", "/1"]);
    let p = h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    assert_eq!(
        hooks::volume(&p, VolumeEvent::Create, &vol("/v"))
            .await
            .unwrap()
            .as_deref(),
        Some("/v/1")
    );
    proc_.0.kill().unwrap();
    proc_.0.wait().unwrap();
    let start = Instant::now();
    let err = hooks::volume(&p, VolumeEvent::Create, &vol("/v"))
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(500), "fails fast");
    assert!(
        err.to_string()
            .starts_with("plugin \"victim\": POST /v2/volume/create: "),
        "{err}"
    );
    drop(proc_);
    let _again = spawn(&sock, "victim", &["--suffix", "/2"]);
    let mut ok = None;
    for _ in 0..100 {
        if let Ok(v) = hooks::volume(&p, VolumeEvent::Create, &vol("/v")).await {
            ok = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ok.as_deref(),
        Some("/v/2"),
        "a new connection is dialled once the plugin is back"
    );
}

#[tokio::test]
async fn duplicate_name_is_a_conflict_and_discovery_finds_sockets() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    let disc = d.path().join("discovery");
    std::fs::create_dir_all(&disc).unwrap();
    let _p = spawn(
        &disc.join("legacy.sock"),
        "x",
        &["--answer", "activate", "--implements", "VolumeDriver"],
    );
    let p = h
        .load_discovered("legacy", LoadOptions::default())
        .await
        .unwrap();
    assert_eq!((p.name(), p.protocol()), ("legacy", Protocol::Activate));
    let _q = spawn(&d.path().join("other.sock"), "legacy", &["--answer", "v1"]);
    std::fs::write(
        disc.join("spec.spec"),
        format!("unix://{}\n", d.path().join("other.sock").display()),
    )
    .unwrap();
    let err = h
        .load_socket(d.path().join("other.sock"), LoadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, HostError::Conflict(ref n) if n == "legacy"),
        "{err}"
    );
    assert_eq!(err.to_string(), "plugin \"legacy\" is already loaded");
    let s = h
        .load_discovered("spec", LoadOptions::default())
        .await
        .unwrap();
    assert_eq!((s.name(), s.protocol()), ("spec", Protocol::V1));
    let err = h
        .load_discovered(
            "nope",
            LoadOptions {
                load_deadline_ms: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Discovery(_)), "{err}");
    assert!(
        err.to_string().starts_with("plugin \"nope\" not found in "),
        "{err}"
    );
}

#[tokio::test]
async fn registry_is_persisted_and_reloaded_in_order() {
    let d = tempfile::tempdir().unwrap();
    let mut procs = HashMap::new();
    {
        let h = host(d.path());
        for name in ["c", "a", "b"] {
            let sock = d.path().join(format!("{name}.sock"));
            procs.insert(
                name,
                spawn(
                    &sock,
                    name,
                    &["--answer", if name == "a" { "v1" } else { "v2" }],
                ),
            );
            h.load_socket(
                &sock,
                LoadOptions {
                    failure_policy: Some(FailurePolicy::Ignore),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        h.unload("a").await.unwrap();
        let sock = d.path().join("a.sock");
        h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    }
    drop(procs.remove("b"));
    let h = host(d.path());
    assert_eq!(h.names(), vec!["c", "b", "a"]);
    let r = h.readiness();
    assert_eq!(r.pending(), vec!["a", "b", "c"]);
    assert_eq!(
        r.wait_ready(Duration::from_millis(50)).await,
        Err(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    let mut cfg = config(d.path());
    cfg.load_deadline = Duration::from_millis(500);
    let h = PluginHost::open(cfg, None).unwrap();
    let failures = h.start_all().await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "b");
    h.readiness()
        .wait_ready(Duration::from_millis(10))
        .await
        .unwrap();
    assert!(
        matches!(h.readiness().state("b"), Some(ReadyState::Failed(ref why)) if why.contains("the socket never appeared at") || why.contains("refused connections"))
    );
    let list = h.list();
    assert_eq!(
        list.iter()
            .map(|s| (s.record.name.as_str(), s.state))
            .collect::<Vec<_>>(),
        vec![
            ("c", PluginState::Active),
            ("b", PluginState::Failed),
            ("a", PluginState::Active)
        ]
    );
    assert_eq!(
        list[0].record.failure_policy,
        FailurePolicy::Ignore,
        "load options survive the reload"
    );
    assert_eq!(list[2].record.protocol, Protocol::V1);
    let err = hooks::volume(&h.get("b").unwrap(), VolumeEvent::Create, &vol("/x")).await;
    let err = err.unwrap_err();
    // Fail closed: a call to a plugin that is not Active fails at once, naming its state.
    assert!(
        err.is_not_active()
            && err
                .to_string()
                .contains("plugin is not active (state failed)"),
        "{err}"
    );
    // The failed plugin stays among the subscribers, so each caller applies its failure policy
    // (abort: the operation fails; ignore: skipped with a warning) instead of skipping silently.
    assert!(
        h.subscribers(|_| true).iter().any(|p| p.name() == "b"),
        "failed plugins are still offered to callers"
    );
}

/// Test double for the engine's containers: "launching" spawns the plugin binary (the image) as a
/// plain process serving `<socket_dir>/plugin.sock`.
#[derive(Default)]
struct ProcessLauncher {
    children: Mutex<HashMap<String, Child>>,
    next: AtomicU64,
    stopped: Mutex<Vec<String>>,
}

impl PluginLauncher for ProcessLauncher {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Launched, LaunchError>> {
        Box::pin(async move {
            let child = Command::new(&spec.image)
                .arg("--socket")
                .arg(spec.socket_dir.join("plugin.sock"))
                .args(&spec.args)
                .envs(spec.env.iter().filter_map(|kv| kv.split_once('=')))
                .spawn()
                .map_err(|e| LaunchError(e.to_string()))?;
            let id = format!("ctr{}", self.next.fetch_add(1, Ordering::SeqCst));
            self.children.lock().unwrap().insert(id.clone(), child);
            Ok(Launched { container_id: id })
        })
    }

    fn stop(&self, container_id: &str) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        Box::pin(async move {
            let child = self.children.lock().unwrap().remove(&id);
            if let Some(mut c) = child {
                let _ = c.kill();
                let _ = c.wait();
            }
            self.stopped.lock().unwrap().push(id);
            Ok(())
        })
    }
}

impl Drop for ProcessLauncher {
    fn drop(&mut self) {
        for (_, mut c) in self.children.lock().unwrap().drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn load_container_launches_handshakes_registers_and_cleans_up_failures() {
    let d = tempfile::tempdir().unwrap();
    let launcher = Arc::new(ProcessLauncher::default());
    let h = PluginHost::open(config(d.path()), Some(launcher.clone())).unwrap();
    let p = h
        .load_container(
            BIN,
            args(&["--name", "boxed", "--start-delay-ms", "300"]),
            vec!["TEST_PLUGIN_LATENCY_MS=1".into()],
            LoadOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(p.name(), "boxed");
    assert_eq!(p.record().container_id.as_deref(), Some("ctr0"));
    assert!(p.record().socket.ends_with("plugin.sock"));
    assert!(p.record().socket.starts_with(d.path().join("plugins")));
    let saved: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(d.path().join("plugins.json")).unwrap()).unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0]["source"]["kind"], "container");

    let err = h
        .load_container(
            BIN,
            args(&["--name", "mute", "--never-answer"]),
            vec![],
            LoadOptions {
                load_deadline_ms: Some(400),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no handshake within 400ms"),
        "{err}"
    );
    assert_eq!(
        *launcher.stopped.lock().unwrap(),
        vec!["ctr1"],
        "failed plugin container stopped"
    );
    let err = h
        .load_container(
            BIN,
            args(&["--name", "boxed"]),
            vec![],
            LoadOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Conflict(_)));
    assert_eq!(
        *launcher.stopped.lock().unwrap(),
        vec!["ctr1", "ctr2"],
        "duplicate's container stopped"
    );
    assert_eq!(h.names(), vec!["boxed"]);
    h.unload("boxed").await.unwrap();
    assert_eq!(
        *launcher.stopped.lock().unwrap(),
        vec!["ctr1", "ctr2", "ctr0"]
    );
    assert!(h.names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_under_a_steady_stream_of_calls_loses_none() {
    let d = tempfile::tempdir().unwrap();
    let launcher = Arc::new(ProcessLauncher::default());
    let h = Arc::new(PluginHost::open(config(d.path()), Some(launcher.clone())).unwrap());
    let other = d.path().join("first.sock");
    let _first = spawn(&other, "first", &["--suffix", "/first"]);
    h.load_socket(&other, LoadOptions::default()).await.unwrap();
    h.load_container(
        BIN,
        args(&["--name", "up", "--suffix", "/old", "--latency-ms", "5"]),
        vec![],
        LoadOptions::default(),
    )
    .await
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let results: Arc<Mutex<Vec<Result<String, String>>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (h, stop, results) = (h.clone(), stop.clone(), results.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = volume_chain(&h, VolumeEvent::Create, "/d")
                    .await
                    .map(|o| o.value.host_path)
                    .map_err(|e| e.to_string());
                results.lock().unwrap().push(r);
            }
        }));
    }
    // Calls run on the old plugin before the upgrade, and on the new one after it: wait for each
    // (bounded), not for a pause.
    let count = |results: &Mutex<Vec<Result<String, String>>>, want: &str| {
        results
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.as_deref() == Ok(want))
            .count()
    };
    let until = Instant::now() + Duration::from_secs(20);
    while count(&results, "/d/first/old") <= 5 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let new = h
        .upgrade(
            "up",
            UpgradeTo::Container {
                image: BIN.into(),
                args: args(&["--name", "up", "--suffix", "/new", "--latency-ms", "5"]),
                env: vec![],
            },
        )
        .await
        .unwrap();
    while count(&results, "/d/first/new") <= 5 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let results = results.lock().unwrap();
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        results.len(),
        &failures[..failures.len().min(3)]
    );
    let old = results
        .iter()
        .filter(|r| r.as_deref() == Ok("/d/first/old"))
        .count();
    let newer = results
        .iter()
        .filter(|r| r.as_deref() == Ok("/d/first/new"))
        .count();
    assert!(
        old > 5 && newer > 5,
        "old {old}, new {newer}, total {}",
        results.len()
    );
    assert_eq!(old + newer, results.len());
    assert_eq!(
        h.names(),
        vec!["first", "up"],
        "swapped at the same position"
    );
    assert_eq!(new.record().container_id.as_deref(), Some("ctr1"));
    assert_eq!(
        *launcher.stopped.lock().unwrap(),
        vec!["ctr0"],
        "old container stopped after the swap"
    );
    let saved: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(d.path().join("plugins.json")).unwrap()).unwrap();
    assert_eq!(saved[1]["container_id"], "ctr1");
}

#[tokio::test]
async fn boot_relaunches_container_plugins() {
    let d = tempfile::tempdir().unwrap();
    {
        let launcher = Arc::new(ProcessLauncher::default());
        let h = PluginHost::open(config(d.path()), Some(launcher.clone())).unwrap();
        h.load_container(
            BIN,
            args(&["--name", "boot", "--suffix", "/b"]),
            vec![],
            LoadOptions::default(),
        )
        .await
        .unwrap();
        h.shutdown().await;
        assert_eq!(*launcher.stopped.lock().unwrap(), vec!["ctr0"]);
    }
    let launcher = Arc::new(ProcessLauncher::default());
    let h = PluginHost::open(config(d.path()), Some(launcher.clone())).unwrap();
    assert_eq!(h.readiness().pending(), vec!["boot"]);
    assert!(h.start_all().await.is_empty());
    assert_eq!(
        h.readiness().wait_ready(Duration::from_millis(1)).await,
        Ok(())
    );
    let p = h.get("boot").unwrap();
    assert_eq!(
        hooks::volume(&p, VolumeEvent::Create, &vol("/z"))
            .await
            .unwrap()
            .as_deref(),
        Some("/z/b")
    );
}

#[tokio::test]
async fn requested_deadlines_are_clamped_per_call_family() {
    let d = tempfile::tempdir().unwrap();
    let mut c = config(d.path());
    c.caps.api = Duration::from_millis(200);
    c.caps.volume = Duration::from_millis(2500);
    c.caps.default = Duration::from_millis(300);
    let h = PluginHost::open(c, None).unwrap();
    // Asks for an hour and takes 800 ms per call.
    let sock = d.path().join("greedy.sock");
    let _p = spawn(
        &sock,
        "greedy",
        &["--deadline-ms", "3600000", "--latency-ms", "800"],
    );
    let p = h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    let st = h
        .list()
        .into_iter()
        .find(|s| s.record.name == "greedy")
        .unwrap();
    assert_eq!(st.record.requested_deadline_ms, Some(3_600_000));
    assert_eq!(
        (
            st.deadlines.api_ms,
            st.deadlines.volume_ms,
            st.deadlines.default_ms
        ),
        (200, 2500, 300),
        "the caps win over the hour asked for"
    );
    // volume.create is in the volume family (2.5 s): the 800 ms answer arrives.
    hooks::volume(&p, VolumeEvent::Create, &vol("/data"))
        .await
        .unwrap();
    // volume.stop is in the default family (300 ms): it fails at the cap, not after an hour.
    let t = Instant::now();
    let e = hooks::volume(&p, VolumeEvent::Stop, &vol("/data"))
        .await
        .unwrap_err();
    assert!(e.is_deadline(), "{e}");
    assert!(e.to_string().contains("deadline 300ms exceeded"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // A plugin asking for less than every cap gets what it asked for everywhere.
    let sock = d.path().join("modest.sock");
    let _q = spawn(
        &sock,
        "modest",
        &["--deadline-ms", "100", "--latency-ms", "800"],
    );
    let p = h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    assert_eq!(p.deadlines().volume_ms, 100);
    let e = hooks::volume(&p, VolumeEvent::Create, &vol("/data"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("deadline 100ms exceeded"), "{e}");
}
