//! Engine API fidelity, second part: healthchecks (`Config.Healthcheck`, `State.Health`, the
//! `(healthy)` status of `docker ps`, `health_status` events), checked against a real daemon
//! with the real docker CLI.
//!
//! Needs root (the daemon makes namespaces and mounts): we run as root in CI.

use std::time::Duration;

use berth_tests::{Daemon, poll_until};
use serde_json::Value;

fn inspect(d: &Daemon, name: &str) -> Value {
    let r = d.raw("GET", &format!("/v1.41/containers/{name}/json"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Waits until the container's `State.Health` satisfies `f`, and returns it.
fn wait_health(d: &Daemon, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    poll_until(what, Duration::from_secs(30), || {
        let h = inspect(d, name)["State"]["Health"].clone();
        f(&h).then_some(h)
    })
}

/// `docker run -d --name NAME --health-cmd CMD [HEALTH...] bb sleep 300`: a sleeping busybox
/// container probed by `CMD`; `health` holds the other `--health-*` flags (and any run flag).
fn run_probed(d: &Daemon, name: &str, cmd: &str, health: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--health-cmd", cmd];
    args.extend_from_slice(health);
    args.extend_from_slice(&["bb", "sleep", "300"]);
    d.docker(&args).ok();
}

/// `docker run --health-cmd`: the probe runs in the container, a passing probe makes it
/// `healthy` (inspect, `docker ps`, the `health` filter, a `health_status: healthy` event),
/// a failing one `unhealthy` after `Retries` failures with the log bounded to 5 results.
#[test]
fn healthchecks_probe_the_container_and_report_their_status() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let since = berth_tests::unix_now();
    run_probed(
        &d,
        "good",
        "echo probed from $(hostname); touch /tmp/probed",
        &[
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
            "--hostname",
            "inside",
        ],
    );
    let cfg = inspect(&d, "good")["Config"]["Healthcheck"].clone();
    assert_eq!(
        cfg["Test"],
        serde_json::json!([
            "CMD-SHELL",
            "echo probed from $(hostname); touch /tmp/probed"
        ]),
        "{cfg}"
    );
    assert_eq!(cfg["Interval"], 200_000_000, "{cfg}");
    assert_eq!(cfg["Retries"], 1, "{cfg}");
    assert!(
        cfg.get("Timeout").is_none(),
        "zero durations are left out: {cfg}"
    );
    let h = wait_health(&d, "good", "good to be healthy", |h| {
        h["Status"] == "healthy"
    });
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let last = &h["Log"][h["Log"].as_array().map_or(0, Vec::len) - 1];
    assert_eq!(last["ExitCode"], 0, "{h}");
    // It ran inside the container: its UTS namespace, its filesystem.
    assert_eq!(last["Output"], "probed from inside\n", "{h}");
    d.docker(&["exec", "good", "test", "-f", "/tmp/probed"])
        .ok();
    let ps = d.docker(&["ps", "--filter", "name=good", "--format", "{{.Status}}"]);
    assert!(ps.ok().contains("(healthy)"), "{}", ps.ok());

    run_probed(
        &d,
        "bad",
        "echo failing; exit 3",
        &["--health-interval", "100ms", "--health-retries", "2"],
    );
    let h = wait_health(&d, "bad", "bad to fail 7 times", |h| {
        h["FailingStreak"].as_u64().unwrap_or(0) >= 7
    });
    assert_eq!(h["Status"], "unhealthy", "{h}");
    let log = h["Log"].as_array().cloned().unwrap_or_default();
    assert_eq!(log.len(), 5, "the log keeps the last 5 results: {h}");
    assert!(
        log.iter()
            .all(|r| r["ExitCode"] == 3 && r["Output"] == "failing\n"),
        "{h}"
    );
    let ps = d.docker(&["ps", "--filter", "name=bad", "--format", "{{.Status}}"]);
    assert!(ps.ok().contains("(unhealthy)"), "{}", ps.ok());
    let healthy = d.docker(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"]);
    assert_eq!(healthy.ok().trim(), "good");
    let unhealthy = d.docker(&[
        "ps",
        "--filter",
        "health=unhealthy",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(unhealthy.ok().trim(), "bad");

    let until = berth_tests::unix_now() + 1;
    let r = d.raw(
        "GET",
        &format!("/v1.41/events?since={since}&until={until}"),
        None,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let actions: Vec<String> = r
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["Action"]
                .as_str()
                .is_some_and(|a| a.starts_with("health_status"))
        })
        .map(|e| format!("{} {}", e["Actor"]["Attributes"]["name"], e["Action"]))
        .collect();
    assert!(
        actions.contains(&"\"good\" \"health_status: healthy\"".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"\"bad\" \"health_status: unhealthy\"".to_owned()),
        "{actions:?}"
    );
    // One event per change of status, not one per probe.
    assert_eq!(
        actions.iter().filter(|a| a.starts_with("\"bad\"")).count(),
        1,
        "{actions:?}"
    );

    // Stopped: the monitor ends; a new start begins again at `starting`.
    d.docker(&["stop", "-t", "1", "bad"]).ok();
    let streak = inspect(&d, "bad")["State"]["Health"]["FailingStreak"].clone();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        inspect(&d, "bad")["State"]["Health"]["FailingStreak"],
        streak,
        "no probe runs in a stopped container"
    );
}

/// A probe that outlives `--health-timeout` counts as failed with exit code -1 and Docker's
/// message, and is killed: probes do not pile up in the container.
#[test]
fn a_probe_past_its_timeout_is_killed_and_fails() {
    let d = Daemon::start();
    d.import_busybox("bb");
    run_probed(
        &d,
        "slow",
        "exec sleep 7",
        &[
            "--health-interval",
            "100ms",
            "--health-timeout",
            "200ms",
            "--health-retries",
            "3",
        ],
    );
    let h = wait_health(&d, "slow", "slow to fail 4 times", |h| {
        h["FailingStreak"].as_u64().unwrap_or(0) >= 4
    });
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert_eq!(
        h["Log"][0]["Output"], "Health check exceeded timeout (200ms)",
        "{h}"
    );
    // Four probes of 7 s each started within about 1.2 s: without the kill at the timeout
    // they would all still run.
    let ps = d.docker(&["exec", "slow", "ps", "-o", "args"]);
    let running = ps.ok().lines().filter(|l| l.trim() == "sleep 7").count();
    assert!(running <= 1, "timed-out probes still running:\n{}", ps.ok());
}

/// Create refuses the healthcheck settings Docker refuses, with Docker's messages and 400;
/// a healthcheck given as `NONE` leaves `State.Health` out, as no healthcheck does.
#[test]
fn healthcheck_settings_are_validated_at_create() {
    let d = Daemon::start();
    d.import_busybox("bb");
    for (hc, msg) in [
        (
            serde_json::json!({"Test": ["CMD", "true"], "Interval": 999_999}),
            "Interval in Healthcheck cannot be less than 1ms",
        ),
        (
            serde_json::json!({"Test": ["CMD", "true"], "Timeout": 5}),
            "Timeout in Healthcheck cannot be less than 1ms",
        ),
        (
            serde_json::json!({"Test": ["CMD", "true"], "StartPeriod": 1}),
            "StartPeriod in Healthcheck cannot be less than 1ms",
        ),
        (
            serde_json::json!({"Test": ["CMD", "true"], "Retries": -1}),
            "Retries in Healthcheck cannot be negative",
        ),
    ] {
        let body = serde_json::json!({"Image": "bb", "Cmd": ["true"], "Healthcheck": hc});
        let r = d.raw_json("POST", "/v1.41/containers/create", &body);
        assert_eq!(r.status, 400, "{hc}: {}", r.text());
        assert_eq!(r.message(), msg, "{hc}");
    }
    let body = serde_json::json!({"Image": "bb", "Cmd": ["sleep", "30"],
        "Healthcheck": {"Test": ["NONE"]}});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=none", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    d.docker(&["start", "none"]).ok();
    let i = inspect(&d, "none");
    assert_eq!(
        i["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"])
    );
    assert!(i["State"].get("Health").is_none(), "{}", i["State"]);
    let ps = d.docker(&["ps", "--filter", "name=none", "--format", "{{.Status}}"]);
    assert!(!ps.ok().contains("health"), "{}", ps.ok());
}

/// `HostConfig.LogConfig`: json-file with its options is kept and shown, an empty type is
/// json-file, an unknown driver is refused with Docker's message, and `none` keeps nothing
/// (`docker logs` is refused, attached clients still see the output).
#[test]
fn log_config_is_validated_kept_and_applied() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let create = |name: &str, log: Value| {
        let body = serde_json::json!({"Image": "bb", "Cmd": ["echo", "hello"],
            "HostConfig": {"LogConfig": log}});
        d.raw_json(
            "POST",
            &format!("/v1.41/containers/create?name={name}"),
            &body,
        )
    };
    let r = create(
        "kept",
        serde_json::json!({"Type": "json-file", "Config": {"max-file": "100"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        inspect(&d, "kept")["HostConfig"]["LogConfig"],
        serde_json::json!({"Type": "json-file", "Config": {"max-file": "100"}})
    );
    let r = create("deflt", serde_json::json!({"Type": "", "Config": null}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        inspect(&d, "deflt")["HostConfig"]["LogConfig"],
        serde_json::json!({"Type": "json-file", "Config": {}})
    );
    let r = create("unknown", serde_json::json!({"Type": "asdf", "Config": {}}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "logger: no log driver named 'asdf' is registered"
    );
    let r = create(
        "badopt",
        serde_json::json!({"Type": "json-file", "Config": {"colour": "red"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "unknown log opt 'colour' for json-file log driver"
    );
    assert_eq!(
        d.docker(&["ps", "-a", "--format", "{{.Names}}"])
            .ok()
            .lines()
            .filter(|n| *n == "unknown" || *n == "badopt")
            .count(),
        0,
        "a refused create leaves no container"
    );

    let out = d.docker(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "bb",
        "echo",
        "seen",
    ]);
    assert_eq!(out.ok(), "seen\n", "attached output still flows");
    let logs = d.docker(&["logs", "quiet"]);
    assert!(!logs.success(), "{}", logs.describe());
    assert!(
        logs.describe()
            .contains("configured logging driver does not support reading"),
        "{}",
        logs.describe()
    );
    assert_eq!(
        inspect(&d, "quiet")["HostConfig"]["LogConfig"]["Type"],
        "none"
    );
}

/// `Config.StopTimeout` is kept and is the grace `stop` gives when the request names none.
#[test]
fn stop_timeout_is_the_default_grace_of_stop() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let body = serde_json::json!({"Image": "bb", "StopTimeout": 1,
        "Cmd": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=stubborn", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(inspect(&d, "stubborn")["Config"]["StopTimeout"], 1);
    d.docker(&["start", "stubborn"]).ok();
    let started = std::time::Instant::now();
    // No `t`: the container's own 1 s, not the default 10 s.
    let r = d.raw("POST", "/v1.41/containers/stubborn/stop", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop waited {:?}",
        started.elapsed()
    );
    assert_eq!(inspect(&d, "stubborn")["State"]["ExitCode"], 137);
    let r = d.raw_json(
        "POST",
        "/v1.41/containers/create?name=plain",
        &serde_json::json!({"Image": "bb", "Cmd": ["true"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(inspect(&d, "plain")["Config"].get("StopTimeout").is_none());
}

/// `wait` on a container whose restart policy starts it again ends at its exit (Docker's
/// waiters fire on every exit), with `not-running` (the default) and `next-exit`.
#[test]
fn wait_ends_at_an_exit_even_when_the_policy_restarts() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "always",
        "bb",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ])
    .ok();
    for condition in ["not-running", "next-exit"] {
        let r = berth_tests::raw_request_timeout(
            &d.socket(),
            "POST",
            &format!("/v1.41/containers/again/wait?condition={condition}"),
            None,
            b"",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("wait {condition} did not answer: {e}"));
        assert_eq!(r.status, 200, "{condition}: {}", r.text());
        assert_eq!(r.json()["StatusCode"], 3, "{condition}: {}", r.text());
    }
    let r = d.raw("DELETE", "/v1.41/containers/again", None, b"");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.message().contains("stop the container before"),
        "{}",
        r.message()
    );
    let r = d.raw("DELETE", "/v1.41/containers/again?force=1", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
}

/// Attach: the detach sequence (default ctrl-p ctrl-q, `detachKeys` to change it) ends the
/// session of a tty container and leaves it running; bytes that only start the sequence still
/// reach the container; `logs=1&stream=0` sends the log so far and ends.
#[test]
fn attach_detaches_on_the_keys_and_replays_logs() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let script = r#"
import socket, time
api = client.api
def session(keys, inputs, params):
    c = api.create_container("bb", "cat", detach=True, stdin_open=True, tty=True)
    api.start(c)
    sock = api.attach_socket(c, dict(params, stdin=True, stream=True, stdout=True))
    raw = sock._sock
    raw.settimeout(10)
    for chunk in inputs:
        raw.sendall(chunk)
        time.sleep(0.2)
    # The session ends: the daemon closes the connection.
    got = b""
    while True:
        data = raw.recv(4096)
        if not data:
            break
        got += data
    running = api.inspect_container(c)["State"]["Running"]
    api.remove_container(c, force=True)
    return got, running

got, running = session("default", [b"a\x10b", b"\x10\x11"], {})
print("default", repr(got), running)
got, running = session("ctrl-x", [b"\x10\x11", b"\x18"], {"detachKeys": "ctrl-x"})
print("ctrl-x", repr(got), running)
c = api.create_container("bb", "echo hello")
api.start(c)
api.wait(c, condition="not-running")
# (The replay is what is checked here: wait until the log has the line.)
deadline = time.time() + 20
while b"hello" not in api.logs(c) and time.time() < deadline:
    time.sleep(0.1)
print("logs", repr(api.attach(c, stream=False, logs=True)))
"#;
    let out = d.python(script);
    let text = out.ok().to_owned();
    let line = |p: &str| {
        text.lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} line in {text}"))
            .to_owned()
    };
    // The tty echoes what cat received: `a`, then the held ctrl-p and `b` once broken.
    let default = line("default ");
    assert!(default.ends_with(" True"), "{default}");
    assert!(
        default.contains("a^Pb"),
        "the broken prefix reaches the container: {default}"
    );
    let custom = line("ctrl-x ");
    assert!(custom.ends_with(" True"), "{custom}");
    // (The tty's flow control takes ctrl-q itself; ctrl-p is echoed.)
    assert!(
        custom.contains("^P"),
        "ctrl-p ctrl-q are plain input then: {custom}"
    );
    assert_eq!(line("logs "), "logs b'hello\\n'");
}

/// Legacy links on the default bridge: `ALIAS_NAME` and `ALIAS_ENV_*` for the process and its
/// execs (the container's own variables win), `HostConfig.Links` in Docker's form, a missing or
/// stopped linked container refused, and `DELETE /containers/parent/alias?link=1`.
#[test]
fn legacy_links_give_variables_and_can_be_removed() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "db",
        "-e",
        "FOO=1",
        "-e",
        "SHARED=db",
        "bb",
        "sleep",
        "300",
    ])
    .ok();
    let out = d.docker(&[
        "run",
        "--name",
        "web",
        "--link",
        "db:my-db",
        "-e",
        "MY_DB_ENV_SHARED=own",
        "bb",
        "env",
    ]);
    let env: Vec<&str> = out.ok().lines().collect();
    assert!(env.contains(&"MY_DB_NAME=/web/my-db"), "{env:?}");
    assert!(env.contains(&"MY_DB_ENV_FOO=1"), "{env:?}");
    assert!(env.contains(&"MY_DB_ENV_SHARED=own"), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("MY_DB_ENV_PATH=")),
        "{env:?}"
    );
    assert_eq!(
        inspect(&d, "web")["HostConfig"]["Links"],
        serde_json::json!(["/db:/web/my-db"])
    );

    let body =
        serde_json::json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"Links": ["nope:x"]}});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=orphan", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.message().contains("could not get container for nope"),
        "{}",
        r.message()
    );

    d.docker(&["create", "--name", "idle", "bb", "true"]).ok();
    d.docker(&[
        "create",
        "--name",
        "needs-idle",
        "--link",
        "idle",
        "bb",
        "true",
    ])
    .ok();
    let r = d.raw("POST", "/v1.41/containers/needs-idle/start", None, b"");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.message(),
        "Cannot link to a non running container: /idle AS /needs-idle/idle"
    );

    d.docker(&[
        "run", "-d", "--name", "web3", "--link", "db", "bb", "sleep", "300",
    ])
    .ok();
    let exec_env = d.docker(&["exec", "web3", "env"]);
    assert!(
        exec_env.ok().lines().any(|l| l == "DB_NAME=/web3/db"),
        "{}",
        exec_env.ok()
    );
    let r = d.raw("DELETE", "/v1.41/containers/web3/db?link=1", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(inspect(&d, "web3")["HostConfig"]["Links"].is_null());
    let r = d.raw("DELETE", "/v1.41/containers/web3/db?link=1", None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
    // The linked container itself is untouched.
    assert_eq!(inspect(&d, "db")["State"]["Running"], true);
}

/// Legacy links give the linked container's exposed ports as Docker 20.10 does (`ALIAS_PORT`,
/// the last run of consecutive ports as `_START`/`_END`, every port with `_ADDR`, `_PORT` and
/// `_PROTO`, at its bridge address) and an `/etc/hosts` line `ip\talias hostname [name]` between
/// the fixed names and the container's own.
#[test]
fn legacy_links_give_port_variables_and_hosts_lines() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&[
        "run", "-d", "--name", "db", "--expose", "5432", "--expose", "5433", "--expose",
        "5434/udp", "--expose", "80", "bb", "sleep", "300",
    ])
    .ok();
    let db = inspect(&d, "db");
    let ip = db["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let host = db["Config"]["Hostname"].as_str().unwrap().to_owned();
    assert!(!ip.is_empty() && !host.is_empty(), "{db}");
    let out = d.docker(&[
        "run",
        "--rm",
        "--link",
        "db:data",
        "bb",
        "sh",
        "-c",
        "env; cat /etc/hosts",
    ]);
    let lines: Vec<&str> = out.ok().lines().collect();
    for want in [
        format!("DATA_PORT=tcp://{ip}:80"),
        format!("DATA_PORT_80_TCP=tcp://{ip}:80"),
        format!("DATA_PORT_80_TCP_ADDR={ip}"),
        "DATA_PORT_80_TCP_PORT=80".into(),
        "DATA_PORT_80_TCP_PROTO=tcp".into(),
        format!("DATA_PORT_5432_TCP_START=tcp://{ip}:5432"),
        "DATA_PORT_5432_TCP_PORT_START=5432".into(),
        format!("DATA_PORT_5432_UDP_END=udp://{ip}:5434"),
        "DATA_PORT_5432_UDP_PORT_END=5434".into(),
        format!("DATA_PORT_5434_UDP=udp://{ip}:5434"),
        "DATA_PORT_5434_UDP_PROTO=udp".into(),
        "DATA_NAME=/".into(),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want.as_str())),
            "{want} missing from {lines:?}"
        );
    }
    let hosts: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("127.0.0.1"))
        .collect();
    assert_eq!(hosts[6], format!("{ip}\tdata {host} db"), "{hosts:?}");
    assert_eq!(
        hosts.len(),
        8,
        "the container's own line follows: {hosts:?}"
    );
    // An alias that is the name is not repeated.
    let out = d.docker(&["run", "--rm", "--link", "db", "bb", "cat", "/etc/hosts"]);
    assert!(
        out.ok().lines().any(|l| l == format!("{ip}\tdb {host}")),
        "{}",
        out.ok()
    );
}

/// Networks read back what was created (`Internal`, `EnableIPv6`, `Attachable`, labels,
/// options; no IPAM options when none were given), take names with spaces as Docker does, and
/// an internal network gives its containers no default route.
#[test]
fn networks_keep_their_settings_and_take_spaced_names() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let body = serde_json::json!({"Name": "inner", "Internal": true, "EnableIPv6": true,
        "Attachable": true, "Labels": {"com.example": "l"}, "Options": {"k": "v"},
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "2001:389::/64"}]}});
    let r = d.raw_json("POST", "/v1.41/networks/create", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let n = d.raw("GET", "/v1.41/networks/inner", None, b"").json();
    assert_eq!(n["Internal"], true, "{n}");
    assert_eq!(n["EnableIPv6"], true, "{n}");
    assert_eq!(n["Attachable"], true, "{n}");
    assert_eq!(n["Labels"], serde_json::json!({"com.example": "l"}), "{n}");
    assert_eq!(n["Options"], serde_json::json!({"k": "v"}), "{n}");
    assert!(n["IPAM"].get("Options").is_none(), "{n}");

    let r = d.raw_json(
        "POST",
        "/v1.41/networks/create",
        &serde_json::json!({"Name": "test 01"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw("GET", "/v1.41/networks/test%2001", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Name"], "test 01");
    let r = d.raw("DELETE", "/v1.41/networks/test%2001", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = d.raw_json(
        "POST",
        "/v1.41/networks/create",
        &serde_json::json!({"Name": "a/b"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    d.docker(&["network", "create", "outer"]).ok();
    let default_routes = |net: &str| {
        let out = d.docker(&[
            "run",
            "--rm",
            "--network",
            net,
            "bb",
            "cat",
            "/proc/net/route",
        ]);
        out.ok()
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("00000000"))
            .count()
    };
    assert_eq!(default_routes("outer"), 1, "a plain network routes out");
    assert_eq!(
        default_routes("inner"),
        0,
        "an internal network gives no way out"
    );
}

/// `NetworkingConfig.EndpointsConfig` at create and `EndpointConfig` at connect: aliases,
/// links, driver options, the requested addresses and the MAC address are kept and shown, the
/// MAC address is the interface's; two endpoints at create are refused as Docker 20.10 does.
#[test]
fn endpoint_settings_are_kept_and_the_mac_applied() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&["network", "create", "--subnet", "10.77.0.0/24", "epnet"])
        .ok();
    let body = serde_json::json!({"Image": "bb", "Cmd": ["sleep", "300"],
        "HostConfig": {"NetworkMode": "epnet"},
        "NetworkingConfig": {"EndpointsConfig": {"epnet": {
            "Aliases": ["foo", "bar"], "Links": ["up:bar"], "DriverOpts": {"com.example": "on"},
            "MacAddress": "02:42:ac:11:00:0a",
            "IPAMConfig": {"IPv4Address": "10.77.0.23", "LinkLocalIPs": ["169.254.8.8"]}}}}});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=ep", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    d.docker(&["start", "ep"]).ok();
    let net = inspect(&d, "ep")["NetworkSettings"]["Networks"]["epnet"].clone();
    assert_eq!(net["Aliases"], serde_json::json!(["foo", "bar"]), "{net}");
    assert_eq!(net["Links"], serde_json::json!(["up:bar"]), "{net}");
    assert_eq!(
        net["DriverOpts"],
        serde_json::json!({"com.example": "on"}),
        "{net}"
    );
    assert_eq!(net["MacAddress"], "02:42:ac:11:00:0a", "{net}");
    assert_eq!(net["IPAddress"], "10.77.0.23", "{net}");
    assert_eq!(
        net["IPAMConfig"],
        serde_json::json!({"IPv4Address": "10.77.0.23", "LinkLocalIPs": ["169.254.8.8"]}),
        "{net}"
    );
    let mac = d.docker(&["exec", "ep", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac.ok().trim(), "02:42:ac:11:00:0a");

    // Config.MacAddress on the default bridge, shown at the top level too.
    let body = serde_json::json!({"Image": "bb", "Cmd": ["sleep", "300"],
        "MacAddress": "02:42:ac:11:00:0b"});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=onbridge", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    d.docker(&["start", "onbridge"]).ok();
    let ns = inspect(&d, "onbridge")["NetworkSettings"].clone();
    assert_eq!(ns["MacAddress"], "02:42:ac:11:00:0b", "{ns}");
    assert_eq!(
        ns["IPAddress"], ns["Networks"]["bridge"]["IPAddress"],
        "{ns}"
    );

    // Connect with aliases and a MAC address, to a running container.
    let body = serde_json::json!({"Container": "onbridge",
        "EndpointConfig": {"Aliases": ["late"], "MacAddress": "02:42:ac:11:00:0c"}});
    let r = d.raw_json("POST", "/v1.41/networks/epnet/connect", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let net = inspect(&d, "onbridge")["NetworkSettings"]["Networks"]["epnet"].clone();
    assert_eq!(net["Aliases"], serde_json::json!(["late"]), "{net}");
    assert_eq!(net["MacAddress"], "02:42:ac:11:00:0c", "{net}");

    let body = serde_json::json!({"Image": "bb", "Cmd": ["true"],
        "HostConfig": {"NetworkMode": "epnet"},
        "NetworkingConfig": {"EndpointsConfig": {"epnet": {}, "bar": {}}}});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=two", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "Container cannot be connected to network endpoints: bar, epnet"
    );
    let body =
        serde_json::json!({"Image": "bb", "Cmd": ["true"], "MacAddress": "01:00:5e:00:00:01"});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=mcast", &body);
    assert_eq!(r.status, 400, "{}", r.text());
}
