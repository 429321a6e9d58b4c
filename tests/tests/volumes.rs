//! Volumes through plugins, end to end: a real daemon, real plugin processes (`flocker`,
//! `test-plugin` from `examples/plugins`) loaded with `POST /berth/plugins/load {"Socket"}`, and
//! containers driven by the Engine API and the real `docker` CLI.
//!
//! Covers: bind-mount resolution chained through three plugins (order and rewriting visible in
//! inspect), a 404 plugin ignored, a failing plugin aborting create with compensation, start-time
//! re-resolution, a hung plugin failing at its deadline, a Docker-protocol driver through its
//! lifecycle with both error styles, a shared driver volume unmounted after the last container.
//!
//! Every test here needs root (the daemon makes namespaces and mounts); CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{Daemon, PluginProc, berth_binary, poll_until};
use serde_json::{Value, json};

/// The path of example plugin binary `name` (built once by the harness).
fn plugin_bin(name: &str) -> PathBuf {
    berth_tests::example_plugin(name)
}

/// Starts `test-plugin` named `name` on a socket in the daemon dir, logging to `log`.
fn test_plugin(d: &Daemon, name: &str, log: &Path, extra: &[&str]) -> (PluginProc, PathBuf) {
    d.spawn_logged_plugin("test-plugin", name, log, extra)
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn create(
    d: &Daemon,
    binds: &[String],
    cmd: &[&str],
    restart: Option<&str>,
) -> berth_tests::RawResponse {
    let mut hc = json!({"Binds": binds});
    if let Some(r) = restart {
        hc["RestartPolicy"] = json!({"Name": r});
    }
    d.raw_json(
        "POST",
        "/containers/create",
        &json!({"Image": "host", "Cmd": cmd, "HostConfig": hc}),
    )
}

/// [`create`] that must succeed; returns the new container's id.
fn create_ok(d: &Daemon, binds: &[String], cmd: &[&str], restart: Option<&str>) -> String {
    let r = create(d, binds, cmd, restart);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["Id"].as_str().unwrap().to_owned()
}

fn inspect(d: &Daemon, id: &str) -> Value {
    d.raw("GET", &format!("/containers/{id}/json"), None, b"")
        .json()
}

fn bind_mount(d: &Daemon, id: &str) -> Value {
    inspect(d, id)["Mounts"][0].clone()
}

fn wait_exit(d: &Daemon, id: &str) -> i64 {
    let r = d.raw("POST", &format!("/containers/{id}/wait"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["StatusCode"].as_i64().unwrap()
}

fn logs(d: &Daemon, id: &str) -> String {
    d.docker(&["logs", id]).ok().to_owned()
}

/// Three chained plugins (v2, v1, v2) rewrite the source in load order; a fourth that answers
/// 404 (flocker, for a non-/flocker path, on both v1 spellings) is ignored. Needs root.
#[test]
fn three_plugins_chain_and_a_404_is_ignored() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let src = d.dir().join("src");
    let last = d.dir().join("src-a-b-c");
    std::fs::create_dir_all(&last).unwrap();
    std::fs::write(last.join("marker"), "chained\n").unwrap();
    let (_a, sa) = test_plugin(&d, "a", &log, &["--suffix=-a", "--answer", "v2"]);
    let (_b, sb) = test_plugin(&d, "b", &log, &["--suffix=-b", "--answer", "v1"]);
    let (_n, sn) = d.spawn_flocker("nf", &d.dir().join("st"), &log, &["--answer", "v1"]);
    let (_c, sc) = test_plugin(&d, "c", &log, &["--suffix=-c", "--answer", "v2"]);
    d.load_socket("a", &sa, None);
    d.load_socket("b", &sb, None);
    d.load_socket("nf", &sn, None);
    d.load_socket("c", &sc, None);

    let id = create_ok(
        &d,
        &[format!("{}:/data", src.display())],
        &["cat", "/data/marker"],
        None,
    );
    let m = bind_mount(&d, &id);
    assert_eq!(m["Source"], json!(last.display().to_string()), "{m}");
    assert_eq!(
        m["RequestedSource"],
        json!(src.display().to_string()),
        "{m}"
    );
    let calls = log_lines(&log);
    let order: Vec<&str> = calls.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(order, ["a", "b", "nf", "nf", "c"], "{calls:?}");
    assert!(calls[1].ends_with("/v1/volume/volumes"), "{calls:?}");
    // nf was asked on both v1 spellings (`/v1/volume/volumes`, then `/v1/volumes`).
    assert!(calls[2].starts_with("nf volume.v1 ") && calls[3].starts_with("nf volume.v1 "));

    let r = d.raw("POST", &format!("/containers/{id}/start"), None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(wait_exit(&d, &id), 0);
    assert_eq!(logs(&d, &id), "chained\n");
    assert_eq!(
        bind_mount(&d, &id)["Source"],
        json!(last.display().to_string())
    );
    // v2 plugins hear start and stop; v1 only the resolution calls.
    let calls = log_lines(&log);
    assert!(
        calls.contains(&"a /v2/volume/start".to_owned()),
        "{calls:?}"
    );
    poll_until("stop notification", Duration::from_secs(5), || {
        log_lines(&log)
            .contains(&"c /v2/volume/stop".to_owned())
            .then_some(())
    });
    let r = d.raw("DELETE", &format!("/containers/{id}"), None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let calls = log_lines(&log);
    let removes: Vec<&String> = calls
        .iter()
        .filter(|l| l.ends_with("/v2/volume/remove"))
        .collect();
    assert_eq!(
        removes,
        ["c /v2/volume/remove", "a /v2/volume/remove"],
        "reverse order"
    );
}

/// Start resolves again: a plugin loaded after create rewrites the source at start. Needs root.
#[test]
fn start_time_resolution_differs_from_create_time() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let src = d.dir().join("data");
    std::fs::create_dir_all(d.dir().join("data-a-b")).unwrap();
    std::fs::create_dir_all(d.dir().join("data-a")).unwrap();
    std::fs::write(d.dir().join("data-a-b/where"), "moved\n").unwrap();
    let (_a, sa) = test_plugin(&d, "a", &log, &["--suffix=-a"]);
    d.load_socket("a", &sa, None);
    let id = create_ok(
        &d,
        &[format!("{}:/d", src.display())],
        &["cat", "/d/where"],
        None,
    );
    assert_eq!(
        bind_mount(&d, &id)["Source"],
        json!(d.dir().join("data-a").display().to_string())
    );
    let (_b, sb) = test_plugin(&d, "b", &log, &["--suffix=-b"]);
    d.load_socket("b", &sb, None);
    let r = d.raw("POST", &format!("/containers/{id}/start"), None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(wait_exit(&d, &id), 0);
    assert_eq!(logs(&d, &id), "moved\n");
    assert_eq!(
        bind_mount(&d, &id)["Source"],
        json!(d.dir().join("data-a-b").display().to_string())
    );
}

/// A failing second plugin aborts create with its name and reason; the first gets its
/// compensating `stop`; no container is left. A relative resolved path fails too. Needs root.
#[test]
fn failing_plugin_aborts_create_and_compensates() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let src = d.dir().join("s");
    std::fs::create_dir_all(d.dir().join("s-a")).unwrap();
    let (_a, sa) = test_plugin(&d, "a", &log, &["--suffix=-a"]);
    let (_b, sb) = test_plugin(&d, "b", &log, &["--fail", "no quota left"]);
    d.load_socket("a", &sa, None);
    d.load_socket("b", &sb, None);
    let r = create(&d, &[format!("{}:/d", src.display())], &["true"], None);
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.message();
    assert!(
        msg.contains("plugin \"b\"") && msg.contains("no quota left"),
        "{msg}"
    );
    assert!(msg.contains("volume.create"), "{msg}");
    assert_eq!(
        log_lines(&log),
        [
            "a /v2/volume/create",
            "b /v2/volume/create",
            "a /v2/volume/stop"
        ]
    );
    let ps = d.raw("GET", "/containers/json?all=1", None, b"").json();
    assert_eq!(ps, json!([]), "no half-created container");
}

/// A resolved HostPath that is missing fails create with that reason. Needs root.
#[test]
fn missing_resolved_path_fails_create() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let (_a, sa) = test_plugin(&d, "a", &log, &["--suffix=-nowhere"]);
    d.load_socket("a", &sa, None);
    let src = d.dir().join("x");
    let r = create(&d, &[format!("{}:/d", src.display())], &["true"], None);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.message().contains("does not exist"), "{}", r.message());
}

/// A plugin that hangs fails the call at its deadline; create fails fast, and a start that meets
/// it leaves the container not running. Needs root.
#[test]
fn hung_plugin_fails_at_its_deadline() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let src = d.dir().join("h");
    std::fs::create_dir_all(&src).unwrap();
    let r = create(&d, &[format!("{}:/d", src.display())], &["true"], None);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_owned();
    let (_h, sh) = test_plugin(&d, "hang", &log, &["--latency-ms", "30000"]);
    d.load_socket("hang", &sh, Some("700ms"));
    let t = Instant::now();
    let r = d.raw("POST", &format!("/containers/{id}/start"), None, b"");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.message().contains("deadline 700ms exceeded"),
        "{}",
        r.message()
    );
    assert!(r.message().contains("plugin \"hang\""), "{}", r.message());
    let st = &inspect(&d, &id)["State"];
    assert_eq!(st["Running"], json!(false), "{st}");
    assert_eq!(st["Pid"], json!(0), "{st}");
}

/// A Docker-protocol driver (flocker answering only `/Plugin.Activate`) through its lifecycle
/// with the real docker CLI: create with options, run, inspect, ls, rm; Mount and Unmount carry
/// the same 64-hex ID. Needs root and the docker CLI.
#[test]
fn docker_protocol_driver_lifecycle() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let storage = d.dir().join("storage");
    let (_f, sf) = d.spawn_flocker("flo", &storage, &log, &["--answer", "activate"]);
    d.load_socket("flo", &sf, None);
    let out = d.docker(&["volume", "create", "-d", "flo", "-o", "size=1G", "v1"]);
    assert_eq!(out.ok().trim(), "v1");
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "v1:/d",
        "host",
        "sh",
        "-c",
        "echo fish > /d/f",
    ]);
    out.ok();
    assert_eq!(
        std::fs::read_to_string(storage.join("v1/f")).unwrap(),
        "fish\n"
    );
    let calls = log_lines(&log);
    let methods: Vec<&str> = calls.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        methods,
        [
            "VolumeDriver.Get",
            "VolumeDriver.Create",
            "VolumeDriver.Capabilities",
            "VolumeDriver.Mount",
            "VolumeDriver.Unmount"
        ],
        "{calls:?}"
    );
    let mount_id = calls[3].split(' ').nth(3).unwrap();
    assert_eq!(mount_id.len(), 64, "{calls:?}");
    assert_eq!(
        calls[4].split(' ').nth(3),
        Some(mount_id),
        "same ID: {calls:?}"
    );

    let v: Value = serde_json::from_str(d.docker(&["volume", "inspect", "v1"]).ok()).unwrap();
    assert_eq!(v[0]["Driver"], json!("flo"));
    assert_eq!(v[0]["Scope"], json!("global"));
    assert_eq!(v[0]["Options"], json!({"size": "1G"}));
    assert_eq!(v[0]["Status"]["Metadata"], json!({"size": "1G"}), "{v}");
    assert!(d.docker(&["volume", "ls", "-q"]).ok().contains("v1"));
    d.docker(&["volume", "rm", "v1"]).ok();
    assert!(!storage.join("v1").exists());
    assert!(
        log_lines(&log)
            .last()
            .unwrap()
            .contains("VolumeDriver.Remove")
    );

    // Driver not found: 404 naming it.
    let out = d.docker(&["volume", "create", "-d", "nosuch", "v2"]);
    assert!(!out.success());
    assert!(out.stderr.contains("nosuch"), "{}", out.describe());
    let r = d.raw_json(
        "POST",
        "/volumes/create",
        &json!({"Name": "v2", "Driver": "nosuch"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
}

/// Driver errors in both styles (500 + Err, 200 + Err) surface with the plugin's name and its
/// `Err` text, and the container does not start. Needs root and the docker CLI.
#[test]
fn driver_error_styles_surface_with_plugin_name() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let storage = d.dir().join("storage");
    for (name, status) in [("e500", "500"), ("e200", "200")] {
        let (_f, sf) = d.spawn_flocker(
            name,
            &storage,
            &log,
            &[
                "--answer",
                "activate",
                "--fail",
                "Mount=no device",
                "--err-status",
                status,
            ],
        );
        d.load_socket(name, &sf, None);
        let vol = format!("vol-{name}");
        d.docker(&["volume", "create", "-d", name, &vol]).ok();
        let out = d.docker(&["run", "--rm", "-v", &format!("{vol}:/d"), "host", "true"]);
        assert!(!out.success(), "{}", out.describe());
        assert!(
            out.stderr.contains(&format!("plugin \"{name}\"")) && out.stderr.contains("no device"),
            "{}",
            out.describe()
        );
        d.docker(&["volume", "rm", &vol]).ok();
    }
}

/// Two containers share a driver volume: one Mount, and one Unmount after the last stops; the
/// volume in use cannot be removed (409). Needs root.
#[test]
fn shared_volume_unmounts_after_last_container() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let storage = d.dir().join("storage");
    let (_f, sf) = d.spawn_flocker("flocker", &storage, &log, &[]);
    d.load_socket("flocker", &sf, None);
    let r = d.raw_json(
        "POST",
        "/volumes/create",
        &json!({"Name": "shared", "Driver": "flocker"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = d.raw_json(
            "POST",
            "/containers/create",
            &json!({"Image": "host", "Cmd": ["sleep", "60"],
                    "HostConfig": {"Binds": ["shared:/d"]}}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["Id"].as_str().unwrap().to_owned();
        let r = d.raw("POST", &format!("/containers/{id}/start"), None, b"");
        assert_eq!(r.status, 204, "{}", r.text());
        ids.push(id);
    }
    let count = |m: &str| {
        log_lines(&log)
            .iter()
            .filter(|l| l.contains(&format!("VolumeDriver.{m} ")))
            .count()
    };
    assert_eq!(count("Mount"), 1);
    let r = d.raw("DELETE", "/volumes/shared", None, b"");
    assert_eq!(r.status, 409, "{}", r.text());
    let r = d.raw(
        "POST",
        &format!("/containers/{}/stop?t=0", ids[0]),
        None,
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(count("Unmount"), 0, "still used by the second container");
    let r = d.raw(
        "POST",
        &format!("/containers/{}/stop?t=0", ids[1]),
        None,
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(count("Unmount"), 1, "{:?}", log_lines(&log));
    for id in &ids {
        d.raw("DELETE", &format!("/containers/{id}"), None, b"");
    }
    let r = d.raw("DELETE", "/volumes/shared", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
}

/// `/flocker/<dataset>` on two engines sharing storage (the seed's demo, in-process plugins), the
/// berth CLI's `--metadata` and `volume snapshot`. Needs root.
#[test]
fn flocker_two_engines_share_a_dataset() {
    let n1 = Daemon::start();
    let n2 = Daemon::start();
    let storage = n1.dir().join("shared-storage");
    let (_f1, s1) = n1.spawn_flocker("flocker", &storage, &n1.dir().join("f.log"), &[]);
    let (_f2, s2) = n2.spawn_flocker("flocker", &storage, &n2.dir().join("f.log"), &[]);
    n1.load_socket("flocker", &s1, None);
    n2.load_socket("flocker", &s2, None);
    n1.docker(&[
        "run",
        "--rm",
        "-v",
        "/flocker/test:/data",
        "host",
        "sh",
        "-c",
        "echo fish > /data/file.txt",
    ])
    .ok();
    let out = n2.docker(&[
        "run",
        "--rm",
        "-v",
        "/flocker/test:/data",
        "host",
        "cat",
        "/data/file.txt",
    ]);
    assert_eq!(out.ok(), "fish\n");

    let berth = |args: &[&str]| {
        let mut cmd = Command::new(berth_binary());
        cmd.arg("--host").arg(n1.host()).args(args);
        berth_tests::run_command(cmd, None, Duration::from_secs(60))
    };
    berth(&[
        "volume",
        "create",
        "--driver",
        "flocker",
        "--metadata",
        "size=50G,tier=ssd",
        "nicevol",
    ])
    .ok();
    let v: Value = serde_json::from_str(berth(&["volume", "inspect", "nicevol"]).ok()).unwrap();
    assert_eq!(v[0]["Labels"], json!({"size": "50G", "tier": "ssd"}), "{v}");
    assert_eq!(
        v[0]["Status"]["Metadata"],
        json!({"size": "50G", "tier": "ssd"}),
        "{v}"
    );
    n1.docker(&[
        "run",
        "--rm",
        "-v",
        "nicevol:/d",
        "host",
        "sh",
        "-c",
        "echo snap > /d/x",
    ])
    .ok();
    berth(&["volume", "snapshot", "nicevol", "s1"]).ok();
    assert_eq!(
        std::fs::read_to_string(storage.join(".snapshots/nicevol/s1/x")).unwrap(),
        "snap\n"
    );
    berth(&["volume", "rm", "nicevol"]).ok();
    // The local driver has no snapshots: 400 with the reason.
    berth(&["volume", "create", "plain"]).ok();
    let out = berth(&["volume", "snapshot", "plain", "s1"]);
    assert!(
        !out.success() && out.stderr.contains("does not support snapshots"),
        "{}",
        out.describe()
    );
}

/// A `--restart=always` container on a plugin-resolved bind mount comes back after the daemon is
/// killed and restarted, once the plugin (a system container, started first) shook hands: its
/// second start resolves `/flocker/<dataset>` again and appends to the same data. Needs root.
#[test]
fn restart_always_container_on_a_plugin_volume_survives_a_daemon_restart() {
    let mut d = Daemon::start();
    let storage = d.dir().join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let storage_s = storage.to_str().unwrap().to_owned();
    let bin = plugin_bin("flocker");
    let mounts = format!("{storage_s}:{storage_s}");
    d.docker(&["version"]).expect_code(0);
    let out = Command::new(berth_binary())
        .args([
            "-H",
            &d.host(),
            "plugin",
            "load",
            "--name",
            "flocker",
            "-v",
            &mounts,
            "host",
        ])
        .arg(&bin)
        .args(["--storage", &storage_s])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let id = create_ok(
        &d,
        &["/flocker/ds:/data".to_owned()],
        &["sh", "-c", "echo up >> /data/log; sleep 1000"],
        Some("always"),
    );
    assert_eq!(
        d.raw("POST", &format!("/containers/{id}/start"), None, b"")
            .status,
        204
    );
    let log = storage.join("ds").join("log");
    poll_until("the first start to write", Duration::from_secs(20), || {
        (std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            == 1)
            .then_some(())
    });

    d.kill9();
    d.restart();
    poll_until(
        "the container to run again",
        Duration::from_secs(60),
        || {
            let st = inspect(&d, &id);
            (st["State"]["Status"] == "running"
                && std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .count()
                    == 2)
                .then_some(())
        },
    );
    let plugins = d.raw("GET", "/berth/plugins", None, b"").json();
    assert_eq!(plugins[0]["State"], "active", "{plugins}");
    assert_eq!(
        bind_mount(&d, &id)["Source"],
        json!(format!("{storage_s}/ds"))
    );
    assert_eq!(
        d.raw("DELETE", &format!("/containers/{id}?force=1"), None, b"")
            .status,
        204
    );
}

/// A volume its plugin driver made but the engine never recorded (the engine died between the
/// driver's `Create` and its record: the kill -9 torture found it) is listed, as Docker lists a
/// driver's volumes; it can then be inspected and removed too (adopted), not only listed. Needs
/// root.
#[test]
fn a_volume_only_its_driver_knows_can_be_inspected_and_removed() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let storage = d.dir().join("storage");
    let (_f, sf) = d.spawn_flocker("flo", &storage, &log, &["--answer", "activate"]);
    d.load_socket("flo", &sf, None);
    let r = d.raw_json(
        "POST",
        "/volumes/create",
        &json!({"Name": "known", "Driver": "flo"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // The half of a create the engine did not live to record.
    let r = berth_tests::raw_request(
        &sf,
        "POST",
        "/VolumeDriver.Create",
        Some("application/json"),
        br#"{"Name": "cut"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(storage.join("cut").is_dir());
    let listed = d.raw("GET", "/volumes", None, b"").json();
    assert!(
        listed["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["Name"] == "cut"),
        "{listed}"
    );
    let r = d.raw("GET", "/volumes/cut", None, b"");
    assert_eq!(r.status, 200, "inspect: {}", r.text());
    assert_eq!(r.json()["Driver"], "flo");
    let r = d.raw("DELETE", "/volumes/cut", None, b"");
    assert_eq!(r.status, 204, "rm: {}", r.text());
    assert!(!storage.join("cut").exists());
    let r = d.raw("GET", "/volumes/cut", None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
}
