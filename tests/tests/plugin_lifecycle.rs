//! Plugin lifecycle in a real daemon beyond loading: `plugin upgrade` under a steady stream of
//! calls loses none, `plugin status` reports calls per hook, and the readiness gate answers 503
//! naming the plugin still pending when `--plugin-timeout` runs out.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_tests::{Daemon, example_plugin, raw_request};
use serde_json::json;

fn test_plugin_args(name: &str, extra: &[&str]) -> Vec<String> {
    let bin = example_plugin("test-plugin").display().to_string();
    let mut v: Vec<String> = vec![
        bin,
        "--socket".into(),
        "/var/run/docker/plugin.sock".into(),
        "--name".into(),
        name.into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Needs root. A volume plugin is upgraded while another thread keeps creating containers with a
/// bind mount (each create calls the plugin): every create succeeds, the plugin keeps its place in
/// the load order, and `plugin status` counts the calls.
#[test]
fn upgrade_under_load_loses_no_call() {
    let d = Daemon::start();
    let first = test_plugin_args("vol", &["--version", "1.0"]);
    let mut args = vec!["plugin", "load", "--name", "vol", "host"];
    args.extend(first.iter().map(String::as_str));
    d.berth(&args).expect_code(0);
    let other = test_plugin_args("after", &[]);
    let mut args = vec!["plugin", "load", "--name", "after", "host"];
    args.extend(other.iter().map(String::as_str));
    d.berth(&args).expect_code(0);

    let src = d.dir().join("bind-src");
    std::fs::create_dir_all(&src).unwrap();
    let body = json!({"Image": "host", "Cmd": ["true"], "HostConfig": {"Binds": [format!("{}:/data", src.display())]}})
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sock = d.socket();
    let worker = {
        let (stop, ok, failed, body) = (stop.clone(), ok.clone(), failed.clone(), body.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match raw_request(
                    &sock,
                    "POST",
                    "/containers/create",
                    Some("application/json"),
                    body.as_bytes(),
                ) {
                    Ok(r) if r.status == 201 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        let id = r.json()["Id"].as_str().unwrap_or_default().to_owned();
                        let _ =
                            raw_request(&sock, "DELETE", &format!("/containers/{id}"), None, b"");
                    }
                    Ok(r) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!("{} {}", r.status, r.text()));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(e.to_string());
                    }
                }
            }
            errors
        })
    };
    // Let the stream run, upgrade in the middle of it, let it run on.
    let until = Instant::now() + Duration::from_secs(20);
    while ok.load(Ordering::SeqCst) < 5 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = test_plugin_args("vol", &["--version", "2.0"]);
    let mut args = vec!["plugin", "upgrade", "vol", "host"];
    args.extend(second.iter().map(String::as_str));
    d.berth(&args).expect_code(0);
    let after_upgrade = ok.load(Ordering::SeqCst);
    while ok.load(Ordering::SeqCst) < after_upgrade + 5 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let errors = worker.join().unwrap();
    assert!(
        errors.is_empty(),
        "calls failed during the upgrade: {errors:?}"
    );
    assert!(
        ok.load(Ordering::SeqCst) >= after_upgrade + 5,
        "the stream did not go on after the upgrade"
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0);

    let list = d.raw("GET", "/berth/plugins", None, b"").json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["vol", "after"],
        "the upgraded plugin keeps its place"
    );
    let status = d.berth(&["plugin", "status", "vol"]);
    status.expect_code(0);
    assert!(
        status.stdout.contains("2.0"),
        "status shows the new version: {}",
        status.stdout
    );
    let st = d.raw("GET", "/berth/plugins/vol", None, b"").json();
    assert!(
        st["Hooks"]["volume.create"]["Calls"].as_u64().unwrap_or(0) >= 1,
        "{st}"
    );
}

/// Needs root. With a plugin that takes longer to come up than `--plugin-timeout`, a user request
/// made during boot gets 503 naming it, while `_ping` answers at once.
#[test]
fn gate_times_out_with_503_naming_the_pending_plugin() {
    let mut d = Daemon::start_with(|_| vec!["--plugin-timeout".into(), "1s".into()]);
    let slow = test_plugin_args("sluggish", &["--start-delay-ms", "4000"]);
    let mut args = vec![
        "plugin",
        "load",
        "--name",
        "sluggish",
        "--timeout",
        "20s",
        "host",
    ];
    args.extend(slow.iter().map(String::as_str));
    d.berth(&args).expect_code(0);

    d.stop(Duration::from_secs(20));
    d.restart();
    let t = Instant::now();
    assert_eq!(d.raw("GET", "/_ping", None, b"").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "_ping waited at the gate"
    );
    let r = d.raw("GET", "/containers/json", None, b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.message().contains("sluggish"), "{}", r.message());
    // Once the plugin is up the gate opens.
    berth_tests::poll_until("the gate to open", Duration::from_secs(30), || {
        (d.raw("GET", "/containers/json", None, b"").status == 200).then_some(())
    });
}

/// Needs root. A plugin whose container dies after load: calls fail fast naming the plugin (no
/// hang), `plugin status` shows the failure as its last error, the container's `always` policy
/// restarts it, and calls work again without reloading.
#[test]
fn crashed_plugin_fails_fast_and_is_restarted_by_policy() {
    let d = Daemon::start();
    let args_v = test_plugin_args("crashy", &[]);
    let mut args = vec![
        "plugin",
        "load",
        "--name",
        "crashy",
        "--timeout",
        "20s",
        "host",
    ];
    args.extend(args_v.iter().map(String::as_str));
    d.berth(&args).expect_code(0);
    let st = d.raw("GET", "/berth/plugins/crashy", None, b"").json();
    let cid = st["ContainerID"].as_str().expect("ContainerID").to_owned();

    let src = d.dir().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let body = json!({"Image": "host", "Cmd": ["true"], "HostConfig": {"Binds": [format!("{}:/data", src.display())]}})
        .to_string();
    let create = || {
        d.raw(
            "POST",
            "/containers/create",
            Some("application/json"),
            body.as_bytes(),
        )
    };
    assert_eq!(create().status, 201);

    // Stop the plugin's container (a manual stop: no restart), then call it.
    let r = d.raw("POST", &format!("/containers/{cid}/stop?t=1"), None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let t = Instant::now();
    let r = create();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the call hung for {:?}",
        t.elapsed()
    );
    assert!(r.status >= 400, "{}", r.text());
    assert!(r.message().contains("crashy"), "{}", r.message());
    let status = d.berth(&["plugin", "status", "crashy"]);
    assert!(status.stdout.contains("crashy"), "{}", status.stdout);
    let st = d.raw("GET", "/berth/plugins/crashy", None, b"").json();
    assert!(
        !st["LastError"].as_str().unwrap_or_default().is_empty(),
        "{st}"
    );

    // Start it again, then crash it: the `always` policy brings it back and calls work again.
    let r = d.raw("POST", &format!("/containers/{cid}/start"), None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let pid = berth_tests::poll_until(
        "the plugin container to run",
        Duration::from_secs(10),
        || {
            let c = d
                .raw("GET", &format!("/containers/{cid}/json"), None, b"")
                .json();
            c["State"]["Pid"].as_i64().filter(|p| *p > 0)
        },
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    berth_tests::poll_until(
        "the plugin to be restarted and answer",
        Duration::from_secs(30),
        || {
            let c = d
                .raw("GET", &format!("/containers/{cid}/json"), None, b"")
                .json();
            let restarted =
                c["RestartCount"].as_u64().unwrap_or(0) >= 1 && c["State"]["Status"] == "running";
            (restarted && create().status == 201).then_some(())
        },
    );
}

/// Needs root. Docker's `plugin disable|enable` through the docker CLI: a disabled plugin keeps
/// its place but receives no calls (the bind source is no longer rewritten), `plugin ls` shows it
/// disabled, it stays disabled across a daemon restart and an upgrade, and enabling it restores the
/// calls.
#[test]
fn docker_plugin_disable_and_enable() {
    let mut d = Daemon::start();
    let args_v = test_plugin_args("sfx", &["--suffix", "/inner"]);
    // Policy ignore: a disabled plugin is skipped with a warning (under abort it fails closed).
    let mut args = vec![
        "plugin",
        "load",
        "--name",
        "sfx",
        "--on-failure",
        "ignore",
        "host",
    ];
    args.extend(args_v.iter().map(String::as_str));
    d.berth(&args).expect_code(0);
    let src = d.dir().join("src");
    std::fs::create_dir_all(src.join("inner")).unwrap();
    let body = json!({"Image": "host", "Cmd": ["true"], "HostConfig": {"Binds": [format!("{}:/data", src.display())]}})
        .to_string();
    // The bind source a new container gets: rewritten by the plugin while it is enabled.
    let source_of_new = |d: &Daemon| {
        let r = d.raw(
            "POST",
            "/containers/create",
            Some("application/json"),
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["Id"].as_str().unwrap().to_owned();
        let c = d
            .raw("GET", &format!("/containers/{id}/json"), None, b"")
            .json();
        c["Mounts"][0]["Source"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(source_of_new(&d).ends_with("/inner"));

    d.docker(&["plugin", "disable", "sfx"]).expect_code(0);
    let ls = d.docker(&["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
    assert!(ls.stdout.contains("false"), "{}", ls.describe());
    assert!(
        !source_of_new(&d).ends_with("/inner"),
        "a disabled plugin must get no calls"
    );

    d.stop(Duration::from_secs(20));
    d.restart();
    let ls = d.docker(&["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
    assert_eq!(ls.stdout.trim(), "sfx:latest false", "{}", ls.describe());
    assert!(
        !source_of_new(&d).ends_with("/inner"),
        "still disabled after a daemon restart"
    );
    d.berth(&["plugin", "upgrade", "sfx", "host"])
        .expect_code(0);
    let ls = d.docker(&["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
    assert_eq!(ls.stdout.trim(), "sfx:latest false", "{}", ls.describe());

    d.docker(&["plugin", "enable", "sfx"]).expect_code(0);
    assert!(source_of_new(&d).ends_with("/inner"));
    let again = d.docker(&["plugin", "enable", "sfx"]);
    assert!(
        again.stderr.contains("already enabled"),
        "{}",
        again.describe()
    );
}

/// Needs root. A graceful daemon stop stops the plugins one by one in reverse load order: each
/// plugin logs its own shutdown, and the log reads c, b, a.
#[test]
fn plugins_stop_last_in_reverse_load_order() {
    let mut d = Daemon::start();
    let logs = d.dir().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let logs_s = logs.to_str().unwrap().to_owned();
    let log = logs.join("calls.log");
    let mounts = format!("{logs_s}:{logs_s}");
    for name in ["a", "b", "c"] {
        let plugin = test_plugin_args(name, &["--log", log.to_str().unwrap()]);
        let mut args = vec!["plugin", "load", "--name", name, "-v", &mounts, "host"];
        args.extend(plugin.iter().map(String::as_str));
        d.berth(&args).expect_code(0);
    }
    d.stop(Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let shutdowns: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_suffix(" shutdown"))
        .collect();
    assert_eq!(shutdowns, ["c", "b", "a"], "log:\n{text}");
}

/// Needs root. `plugin load -v SRC:DST[:ro]`: a bad mount is refused before anything starts, with
/// a message naming it; a good one reaches the plugin container and shows in `plugin status` and
/// in `docker plugin inspect` as Docker's `Settings.Mounts`.
#[test]
fn plugin_mounts_are_checked_and_shown() {
    let d = Daemon::start();
    let plugin = test_plugin_args("mnt", &[]);
    let load = |mount: &str| {
        let mut args = vec!["plugin", "load", "--name", "mnt", "-v", mount, "host"];
        args.extend(plugin.iter().map(String::as_str));
        d.berth(&args)
    };
    for (mount, why) in [
        ("relative:/data", "both paths must be absolute"),
        ("/no/such/dir:/data", "the source does not exist"),
        ("/tmp:/data:rx", "unknown mode"),
    ] {
        let out = load(mount);
        assert_ne!(out.code, Some(0), "{}", out.describe());
        assert!(
            out.stderr.contains(&format!("plugin mount \"{mount}\"")) && out.stderr.contains(why),
            "{}",
            out.describe()
        );
    }
    let ps = d.docker(&["ps", "-a", "-q"]);
    assert!(
        ps.stdout.trim().is_empty(),
        "nothing started: {}",
        ps.describe()
    );

    let share = d.dir().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let mount = format!("{}:/share:ro", share.display());
    load(&mount).expect_code(0);
    let status = d.berth(&["plugin", "status", "mnt"]);
    assert!(status.stdout.contains(&mount), "{}", status.describe());
    let inspect = d.docker(&[
        "plugin",
        "inspect",
        "mnt",
        "--format",
        "{{json .Settings.Mounts}}",
    ]);
    let mounts: serde_json::Value = serde_json::from_str(inspect.stdout.trim()).unwrap();
    assert_eq!(mounts[0]["Source"], share.display().to_string());
    assert_eq!(mounts[0]["Destination"], "/share");
    assert_eq!(mounts[0]["Options"], json!(["rbind", "ro"]));
}
