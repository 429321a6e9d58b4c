//! Plugin fault isolation, end to end (issue 13, locks per object): while one plugin call hangs
//! on purpose — a volume driver's `Create`, its `Mount`, a network driver's `CreateNetwork` —
//! work that does not need that plugin goes on: an unrelated `docker rm -f` of a container with
//! only a local volume completes, and `docker ps`, `docker volume ls` and `docker network ls`
//! answer. While an api pre-hook hangs, requests pre-hooked by another plugin go through that
//! plugin's hook and complete. The hung call is held for far longer than the test (a 10-minute delay, a 5-minute
//! deadline), and the test asserts the unrelated commands finished *while it was still
//! pending* (its client is still waiting): an order, not a speed.
//!
//! Every test here needs root (the daemon makes namespaces and mounts); CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_tests::{Daemon, PluginProc, poll_until};

/// Longer than any test: the plugin call is "hung".
const HANG_MS: &str = "600000";
/// The plugin's deadline: far beyond the bound the unrelated commands get.
const DEADLINE: &str = "300s";
/// The bound on each unrelated command: a failure (not a measurement) when exceeded.
const BOUND: Duration = Duration::from_secs(60);

/// A `docker` client process left running (the hung request); killed on drop.
struct Pending(Child);

impl Pending {
    fn start(d: &Daemon, args: &[&str]) -> Pending {
        let config = d.dir().join("docker-config-pending");
        let _ = std::fs::create_dir_all(&config);
        let child = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", &config)
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Pending(child)
    }

    /// Whether the request is still waiting for the hung plugin call.
    fn still_pending(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `flocker` as `name` with `extra` flags, loaded into `d`; its call log is returned.
fn flocker(d: &Daemon, name: &str, extra: &[&str]) -> (PluginProc, PathBuf) {
    let storage = d.dir().join(format!("{name}-storage"));
    let log = d.dir().join(format!("{name}.log"));
    let (p, sock) = d.spawn_flocker(name, &storage, &log, extra);
    d.load_socket(name, &sock, Some(DEADLINE));
    (p, log)
}

/// Waits until `log` has a line containing `needle` (the hung call reached the plugin).
fn wait_logged(log: &Path, needle: &str) {
    poll_until(
        &format!("{needle} in {}", log.display()),
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains(needle)
                .then_some(())
        },
    );
}

/// A running container with only a local volume (on the default network).
fn unrelated_container(d: &Daemon, name: &str) {
    d.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "-v",
        "localvol:/d",
        "host",
        "sleep",
        "600",
    ])
    .ok();
}

/// While `pending` waits for a hung plugin call: `rm -f` of the unrelated container, `ps`,
/// `volume ls` and `network ls` complete, and the hung request is still pending afterwards.
fn unrelated_work_goes_on(d: &Daemon, pending: &mut Pending, container: &str) {
    assert!(pending.still_pending(), "the hung request ended early");
    d.docker_with(&["rm", "-f", container], None, BOUND).ok();
    let ps = d.docker_with(&["ps", "-a", "--format", "{{.Names}}"], None, BOUND);
    assert!(!ps.ok().contains(container), "{}", ps.describe());
    let vols = d.docker_with(&["volume", "ls", "--format", "{{.Name}}"], None, BOUND);
    assert!(vols.ok().contains("localvol"), "{}", vols.describe());
    d.docker_with(&["network", "ls"], None, BOUND).ok();
    // A new container with a local volume starts and stops too.
    d.docker_with(
        &["run", "--rm", "-v", "localvol:/d", "host", "true"],
        None,
        BOUND,
    )
    .ok();
    assert!(
        pending.still_pending(),
        "the hung request ended before the unrelated work was done: the test proves nothing"
    );
}

#[test]
fn a_hung_volume_create_stalls_nothing_else() {
    let d = Daemon::start();
    let (_p, log) = flocker(&d, "hungcreate", &["--delay", &format!("Create={HANG_MS}")]);
    unrelated_container(&d, "bystander");
    let mut pending = Pending::start(&d, &["volume", "create", "-d", "hungcreate", "stuck"]);
    wait_logged(&log, "VolumeDriver.Create stuck");
    unrelated_work_goes_on(&d, &mut pending, "bystander");
}

#[test]
fn a_hung_volume_mount_stalls_nothing_else() {
    let d = Daemon::start();
    let (_p, log) = flocker(&d, "hungmount", &["--delay", &format!("Mount={HANG_MS}")]);
    d.docker(&["volume", "create", "-d", "hungmount", "slowvol"])
        .ok();
    unrelated_container(&d, "bystander");
    let mut pending = Pending::start(&d, &["run", "--rm", "-v", "slowvol:/d", "host", "true"]);
    wait_logged(&log, "VolumeDriver.Mount slowvol");
    unrelated_work_goes_on(&d, &mut pending, "bystander");
}

#[test]
fn a_hung_network_driver_call_stalls_nothing_else() {
    let d = Daemon::start();
    let log = d.dir().join("hungnet.log");
    let delay = format!("CreateNetwork={HANG_MS}");
    let (_p, sock) = d.spawn_logged_plugin("netplug", "hungnet", &log, &["--delay", &delay]);
    d.load_socket("hungnet", &sock, Some(DEADLINE));
    unrelated_container(&d, "bystander");
    let mut pending = Pending::start(
        &d,
        &[
            "network",
            "create",
            "-d",
            "hungnet",
            "--subnet",
            "10.231.0.0/24",
            "stucknet",
        ],
    );
    wait_logged(&log, "NetworkDriver.CreateNetwork");
    unrelated_work_goes_on(&d, &mut pending, "bystander");
    // Other networks are created and removed meanwhile.
    d.docker_with(
        &["network", "create", "--subnet", "10.232.0.0/24", "othernet"],
        None,
        BOUND,
    )
    .ok();
    d.docker_with(&["network", "rm", "othernet"], None, BOUND)
        .ok();
    assert!(pending.still_pending());
}

/// A pre-hook that hangs must not hold up the hook chains of other requests (nothing may
/// serialize hook chains, e.g. a shared hook thread). `GET /info` is pre-hooked by a plugin whose
/// hook hangs; meanwhile `GET /containers/json` requests, pre-hooked by another (fast) plugin,
/// complete with that plugin's rewrite, and `GET /info` is still waiting afterwards.
#[test]
fn a_hung_api_hook_stalls_no_other_hooked_request() {
    let d = Daemon::start_with(|_| vec!["--plugin-deadline-api".into(), DEADLINE.into()]);
    let start = |name: &str, extra: &[&str]| {
        let log = d.dir().join(format!("{name}.log"));
        let args = [&["--api"], extra].concat();
        let (p, sock) = d.spawn_logged_plugin("test-plugin", name, &log, &args);
        d.load_socket(name, &sock, Some(DEADLINE));
        (p, log)
    };
    let (_hung, hung_log) = start(
        "hungapi",
        &["--api-subscribe", "GET /info", "--latency-ms", HANG_MS],
    );
    let (_fast, fast_log) = start("fastapi", &["--api-subscribe", "GET /containers/json"]);

    let sock = d.socket();
    let stuck = std::thread::spawn(move || {
        berth_tests::raw_request_timeout(&sock, "GET", "/v1.50/info", None, b"", BOUND * 10)
    });
    wait_logged(&hung_log, "hungapi /v2/api/pre-hook");
    for i in 0..20 {
        let r = berth_tests::raw_request_timeout(
            &d.socket(),
            "GET",
            "/v1.50/containers/json?all=1",
            None,
            b"",
            BOUND,
        )
        .unwrap_or_else(|e| panic!("request {i} beside the hung hook: {e}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let fast_calls = std::fs::read_to_string(&fast_log).unwrap();
    assert_eq!(
        fast_calls.matches("fastapi /v2/api/pre-hook").count(),
        20,
        "every request went through the fast plugin's hook: {fast_calls}"
    );
    assert!(
        !stuck.is_finished(),
        "the hung request ended before the others were done: the test proves nothing"
    );
}
