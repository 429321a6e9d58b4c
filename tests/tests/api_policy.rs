//! API policy that cannot be bypassed (DESIGN rule 12, docs/api-hooks.md): one test per way a
//! request could reach the handler in a shape the policy plugins did not judge. Each runs against a
//! real daemon with the policy plugins as separate processes (`api-policy` loaded as a plugin,
//! `authz-policy` on a Docker-style discovery socket):
//!
//! - a JSON body without a Content-Type is shown to pre-hooks as JSON; any other type is refused;
//! - absolute-form and unnormalised request targets match the same subscriptions the router serves;
//! - authorization judges the request the pre-hooks produced (and the original);
//! - only plugins (on their engine socket) and the daemon make system containers;
//! - attach and event streams end, and give back their tasks and sockets, when the client leaves.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use berth_tests::{AuthzPlugin, Daemon, poll_until, raw_request};
use serde_json::{Value, json};

const PRIVILEGED: &str = r#"{"Image":"host","Cmd":["true"],"HostConfig":{"Privileged":true}}"#;
const PLAIN: &str = r#"{"Image":"host","Cmd":["true"]}"#;

fn labels(d: &Daemon, container: &str) -> Value {
    let r = d.raw("GET", &format!("/containers/{container}/json"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["Config"]["Labels"].clone()
}

fn exists(d: &Daemon, container: &str) -> bool {
    d.raw("GET", &format!("/containers/{container}/json"), None, b"")
        .status
        == 200
}

/// Needs root. A create whose JSON body comes without a Content-Type is shown to the pre-hook as
/// JSON (so the policy labels it, and refuses it when privileged); one sent as `text/plain` is
/// refused with 400 before any plugin or handler sees it, as dockerd does.
#[test]
fn json_bodies_reach_hooks_whatever_the_content_type() {
    let d = Daemon::start();
    d.load_api_policy("policy", &[], &["seen.policy=yes"]);

    let r = d.raw(
        "POST",
        "/v1.50/containers/create?name=untyped",
        None,
        PLAIN.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        labels(&d, "untyped")["seen.policy"],
        "yes",
        "the pre-hook saw and rewrote the untyped JSON body"
    );

    let r = d.raw(
        "POST",
        "/v1.50/containers/create?name=untyped-priv",
        None,
        PRIVILEGED.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.message()
            .contains("privileged containers are not allowed"),
        "{}",
        r.message()
    );
    assert!(!exists(&d, "untyped-priv"));

    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        let r = d.raw(
            "POST",
            "/v1.50/containers/create?name=texty",
            Some(ct),
            PRIVILEGED.as_bytes(),
        );
        assert_eq!(r.status, 400, "{ct}: {}", r.text());
        assert_eq!(
            r.message(),
            format!("unsupported Content-Type header ({ct}): must be 'application/json'")
        );
        assert!(!exists(&d, "texty"), "{ct}");
    }
    let r = d.raw(
        "POST",
        "/v1.50/containers/create?name=typed",
        Some("application/json; charset=utf-8"),
        PLAIN.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Needs root. Request targets the router normalises (absolute form, `//`, percent-encoded
/// letters, dot segments) reach the same pre-hook subscription (`POST /containers/create`) as the
/// plain path: each privileged create is refused by the policy and none is created.
#[test]
fn unnormalised_targets_match_the_subscriptions_they_are_served_by() {
    let d = Daemon::start();
    d.load_api_policy("policy", &[], &["seen.policy=yes"]);
    for (i, target) in [
        "http://berth/v1.50/containers/create",
        "http://berth:80/containers/create",
        "//v1.50//containers//create",
        "/v1.50/containers/%63reate",
        "/v1.50/%63ontainers/create",
        "/v1.50/images/../containers/./create",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("sneaky{i}");
        let r = raw_request(
            &d.socket(),
            "POST",
            &format!("{target}?name={name}"),
            Some("application/json"),
            PRIVILEGED.as_bytes(),
        )
        .expect("request");
        assert_eq!(r.status, 403, "{target}: {}", r.text());
        assert!(!exists(&d, &name), "{target} created {name}");
        // The same target with an allowed body is served, and was rewritten by the hook.
        let name = format!("allowed{i}");
        let r = raw_request(
            &d.socket(),
            "POST",
            &format!("{target}?name={name}"),
            Some("application/json"),
            PLAIN.as_bytes(),
        )
        .expect("request");
        assert_eq!(r.status, 201, "{target}: {}", r.text());
        assert_eq!(labels(&d, &name)["seen.policy"], "yes", "{target}");
    }
}

/// Needs root. An api plugin turns an allowed create into one the authorization plugin forbids
/// (it adds a label the authz plugin denies): authorization judges the rewritten request and
/// refuses it. An allowed rewrite is judged twice: the original and the final request.
#[test]
fn authorization_judges_the_request_after_the_pre_hooks() {
    let mut plugin: Option<AuthzPlugin> = None;
    let d = Daemon::start_with(|dir| {
        let plugins = dir.join("plugins");
        plugin = Some(AuthzPlugin::start(
            &plugins,
            // The label as the create body carries it (not as `plugin load` spells it).
            &["--deny-body", r#""smuggled":"yes""#],
        ));
        vec![
            "--plugin-dir".into(),
            plugins.display().to_string(),
            "--authorization-plugin".into(),
            "authz".into(),
        ]
    });
    let plugin = plugin.expect("authz plugin");
    d.load_api_policy("rewriter", &[], &["seen.rewriter=yes"]);

    let r = d.raw_json(
        "POST",
        "/containers/create?name=judged",
        &json!({"Image": "host", "Cmd": ["true"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let creates: Vec<String> = plugin
        .seen()
        .into_iter()
        .filter(|e| {
            e["Phase"] == "req" && e["Uri"].as_str().is_some_and(|u| u.contains("name=judged"))
        })
        .map(|e| e["Body"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(creates.len(), 2, "original and final request: {creates:?}");
    assert!(
        creates.iter().any(|b| b.contains("seen.rewriter")),
        "the final body: {creates:?}"
    );
    assert!(
        creates.iter().any(|b| !b.contains("seen.rewriter")),
        "the original body: {creates:?}"
    );

    d.berth(&["plugin", "unload", "rewriter"]).expect_code(0);
    d.load_api_policy("smuggler", &[], &["smuggled=yes"]);
    let r = d.raw_json(
        "POST",
        "/containers/create?name=escalated",
        &json!({"Image": "host", "Cmd": ["true"]}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.message().contains("authorization denied by plugin authz"),
        "{}",
        r.message()
    );
    assert!(!exists(&d, "escalated"));
}

/// Needs root. `?system=1` makes a hidden system container (no volume hooks, hidden from `ps`)
/// only for a privileged plugin on its own engine socket; a user on the main socket gets 403 and
/// nothing is created.
#[test]
fn only_plugins_make_system_containers() {
    let d = Daemon::start();
    let src = d.dir().join("src");
    std::fs::create_dir_all(&src).expect("bind source");
    let body = json!({"Image": "host", "Cmd": ["true"],
        "HostConfig": {"Binds": [format!("{}:/mnt", src.display())]}});
    let r = d.raw_json("POST", "/containers/create?name=hidden&system=1", &body);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.message().contains("system containers"), "{}", r.message());
    let listed = d
        .raw("GET", "/containers/json?all=1&system=1", None, b"")
        .json();
    assert!(
        listed
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["Names"][0] != "/hidden")),
        "{listed}"
    );
    assert!(!exists(&d, "hidden"));
    // The berth CLI's --system goes the same way.
    let out = d.berth(&["create", "--system", "--name", "hidden2", "host", "true"]);
    assert_ne!(out.code, Some(0), "{}", out.describe());
    assert!(!exists(&d, "hidden2"));

    // A privileged plugin on its engine socket may.
    d.load_api_policy("agent", &["--privileged"], &[]);
    let sock = d.plugin_engine_socket("agent");
    let r = raw_request(
        &sock,
        "POST",
        "/containers/create?name=agent-made&system=1",
        Some("application/json"),
        PLAIN.as_bytes(),
    )
    .expect("request on the plugin's engine socket");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        d.raw("GET", "/containers/agent-made/json", None, b"")
            .json()["BerthSystem"],
        true
    );
}

/// `/proc/PID/fd` entries of the daemon.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Tasks alive in the daemon's runtime (`NGoroutines` of `GET /info`).
fn tasks(d: &Daemon) -> u64 {
    let r = d.raw("GET", "/info", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["NGoroutines"].as_u64().expect("NGoroutines")
}

/// Opens a connection, sends `head`, reads the response head, and drops the connection.
fn open_and_drop(sock: &std::path::Path, head: &str, expect_status: &str) {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("read response head");
        assert!(
            n > 0,
            "closed before the response head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {expect_status}")),
        "{text}"
    );
}

/// Opens and drops 500 of `head(i)` (expecting `status`) after one warm-up, and checks that the
/// daemon's open fds, runtime tasks and threads come back to their baseline.
fn open_and_drop_500(d: &Daemon, head: &dyn Fn(usize) -> String, status: &str) {
    let pid = d.pid().expect("daemon pid");
    // Baseline after one, so lazily created state is counted in it.
    open_and_drop(&d.socket(), &head(0), status);
    let thread_count = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let (base_fds, base_tasks, base_threads) = (open_fds(pid), tasks(d), thread_count());
    for i in 1..=500 {
        open_and_drop(&d.socket(), &head(i), status);
    }
    // Slack: the answering connection itself, and a few lazily spawned helpers.
    poll_until(
        "the daemon's fds to return to baseline",
        Duration::from_secs(30),
        || (open_fds(pid) <= base_fds + 4).then_some(()),
    );
    poll_until(
        "the daemon's tasks to return to baseline",
        Duration::from_secs(30),
        || (tasks(d) <= base_tasks + 4).then_some(()),
    );
    // Blocking-pool threads idle out after 10 s.
    poll_until(
        "the daemon's threads to return to baseline",
        Duration::from_secs(30),
        || (thread_count() <= base_threads + 2).then_some(()),
    );
}

/// Needs root. 500 attaches, alternately to a container that never starts and to one that runs
/// but never prints, are opened and dropped: the daemon gives back their tasks and sockets.
#[test]
fn dropped_attaches_are_released() {
    let d = Daemon::start();
    for name in ["idle", "quiet"] {
        let r = d.raw_json(
            "POST",
            &format!("/containers/create?name={name}"),
            &json!({"Image": "host", "Cmd": ["sleep", "600"]}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(
        d.raw("POST", "/containers/quiet/start", None, b"").status,
        204
    );
    open_and_drop_500(
        &d,
        &|i| {
            let c = if i % 2 == 0 { "idle" } else { "quiet" };
            format!(
                "POST /v1.50/containers/{c}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
            )
        },
        "101",
    );
}

/// Needs root. 500 `GET /events` streams with a far `until` and a filter nothing matches are
/// opened and dropped: the daemon gives back their tasks.
#[test]
fn dropped_event_streams_are_released() {
    let d = Daemon::start();
    let until = berth_tests::unix_now() + 3600;
    open_and_drop_500(
        &d,
        &|_| {
            format!(
                "GET /v1.50/events?until={until}&filters=%7B%22container%22%3A%5B%22nothing-matches%22%5D%7D HTTP/1.1\r\nHost: berth\r\n\r\n"
            )
        },
        "200",
    );
}
