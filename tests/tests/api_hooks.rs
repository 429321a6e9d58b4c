//! The `api` extension point and Docker authorization plugins in a real daemon: chained pre-hook
//! rewrites in load order, post-hooks in reverse order, a rejection shown verbatim by the docker
//! CLI, subscriptions honoured, failure policies, a privileged plugin's own calls not hooked, and
//! `AuthZPlugin` allow/deny/fail-closed/oversized bodies.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

use std::time::Duration;

use berth_tests::{AuthzPlugin, Daemon, example_plugin, poll_until, raw_request};
use serde_json::{Value, json};

/// Loads `test-plugin` as an api plugin named `name` with failure policy `policy`.
fn load_api_test_plugin(d: &Daemon, name: &str, policy: &str, extra: &[&str]) {
    let mut args = vec!["--api"];
    args.extend_from_slice(extra);
    d.load_test_plugin(name, &["--on-failure", policy], &args)
        .expect_code(0);
}

/// Loads the example `api-policy` as `name` with `--observe`: its hooks answer "no change".
fn load_observer(d: &Daemon, name: &str) {
    let bin = example_plugin("api-policy").display().to_string();
    d.berth(&[
        "plugin",
        "load",
        "--name",
        name,
        "host",
        &bin,
        "--name",
        name,
        "--observe",
    ])
    .expect_code(0);
}

fn hook_calls(d: &Daemon, plugin: &str, hook: &str) -> u64 {
    let r = d.raw("GET", &format!("/berth/plugins/{plugin}"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["Hooks"][hook]["Calls"].as_u64().unwrap_or(0)
}

fn labels(d: &Daemon, container: &str) -> Value {
    let r = d.raw("GET", &format!("/containers/{container}/json"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["Config"]["Labels"].clone()
}

/// Needs root. Two api plugins: pre-hooks chain in load order (the second sees and overrides the
/// first's label), a rejection stops the chain and reaches the docker CLI verbatim, post-hooks run
/// in reverse order, and requests nobody subscribed to make no call.
#[test]
fn chained_rewrites_rejection_post_hooks_and_subscriptions() {
    let d = Daemon::start();
    d.load_api_policy("p1", &[], &["team=one", "seen.p1=yes"]);
    d.load_api_policy("p2", &[], &["team=two", "seen.p2=yes"]);

    d.docker(&["create", "--name", "c1", "host", "true"])
        .expect_code(0);
    let l = labels(&d, "c1");
    assert_eq!(l["seen.p1"], "yes", "{l}");
    assert_eq!(l["seen.p2"], "yes", "{l}");
    assert_eq!(
        l["team"], "two",
        "p2 runs after p1 and sees its rewrite: {l}"
    );

    let out = d.docker(&["run", "--rm", "--privileged", "host", "true"]);
    out.expect_code(125);
    assert!(
        out.stderr.contains(
            "docker: Error response from daemon: policy: privileged containers are not allowed on this engine"
        ),
        "{}",
        out.describe()
    );

    // Post-hooks in reverse load order: p2 first, then p1, whose rewrite is the last word.
    let v = d.raw("GET", "/v1.50/version", None, b"");
    assert_eq!(v.status, 200);
    assert_eq!(v.json()["BerthPolicy"], "p1", "{}", v.text());
    assert!(
        v.json()["ApiVersion"].is_string(),
        "the rest of the response is kept"
    );

    // Subscriptions: other requests make no call at all.
    for _ in 0..3 {
        assert_eq!(
            d.raw("GET", "/containers/json?all=1", None, b"").status,
            200
        );
    }
    assert_eq!(
        hook_calls(&d, "p1", "api.pre"),
        2,
        "c1's create and the rejected one"
    );
    assert_eq!(
        hook_calls(&d, "p2", "api.pre"),
        1,
        "the rejection stopped the chain at p1"
    );
    assert_eq!(hook_calls(&d, "p1", "api.post"), 1, "only GET /version");
}

/// Needs root. `api-policy --observe` keeps the subscriptions of the policy but changes nothing:
/// its hooks are called (and answer "no change"), a privileged create it would refuse goes through
/// without its label, and `/version` comes back exactly as a daemon without plugins writes it.
#[test]
fn observing_hooks_are_called_and_change_nothing() {
    let d = Daemon::start();
    let plain_version = d.raw("GET", "/v1.50/version", None, b"");
    assert_eq!(plain_version.status, 200);
    load_observer(&d, "obs");

    d.docker(&["create", "--privileged", "--name", "o1", "host", "true"])
        .expect_code(0);
    let l = labels(&d, "o1");
    assert!(l.get("berth.policy").is_none(), "{l}");
    let v = d.raw("GET", "/v1.50/version", None, b"");
    assert_eq!(v.status, 200, "{}", v.text());
    assert_eq!(v.json(), plain_version.json(), "the response is unchanged");
    assert_eq!(hook_calls(&d, "obs", "api.pre"), 1, "o1's create");
    assert_eq!(hook_calls(&d, "obs", "api.post"), 1, "GET /version");
}

/// Needs root. `bare-api`, a plugin that speaks the wire protocol with the standard library alone
/// (no SDK), hand-shakes, is called for the hooks it subscribed to and changes nothing; a request
/// nobody subscribed to makes no call.
#[test]
fn a_plugin_without_the_sdk_is_called_and_changes_nothing() {
    let d = Daemon::start();
    let plain_version = d.raw("GET", "/v1.50/version", None, b"");
    assert_eq!(plain_version.status, 200);
    let bin = example_plugin("bare-api").display().to_string();
    d.berth(&[
        "plugin", "load", "--name", "bare", "host", &bin, "--name", "bare",
    ])
    .expect_code(0);

    d.docker(&["create", "--name", "b1", "host", "true"])
        .expect_code(0);
    let v = d.raw("GET", "/v1.50/version", None, b"");
    assert_eq!(v.status, 200, "{}", v.text());
    assert_eq!(v.json(), plain_version.json(), "the response is unchanged");
    assert_eq!(
        d.raw("GET", "/v1.50/containers/json", None, b"").status,
        200
    );
    assert_eq!(hook_calls(&d, "bare", "api.pre"), 1, "b1's create");
    assert_eq!(hook_calls(&d, "bare", "api.post"), 1, "GET /version only");
}

/// `bare-api` handles SIGTERM: it removes its socket and exits 0. In a plugin container it is
/// pid 1, which ignores a signal it has no handler for, so without this every unload waited out
/// the engine's grace period and ended in SIGKILL. Fails without the handler (killed by the
/// signal, socket left behind).
#[test]
fn bare_api_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("bare.sock");
    let mut child = std::process::Command::new(example_plugin("bare-api"))
        .arg("--socket")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn bare-api");
    poll_until("bare-api's socket", Duration::from_secs(10), || {
        sock.exists().then_some(())
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait bare-api");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!sock.exists(), "the socket is removed");
}

/// Needs root. Post-hooks chain in reverse load order, each seeing the response as the hooks
/// before it left it, with an observing hook (which answers "no change") in the middle: the
/// engine encodes a hook message once and reuses it only until a hook rewrites the response.
#[test]
fn post_hooks_see_the_previous_rewrite_around_an_observer() {
    let d = Daemon::start();
    let post = ["--api-post", "--api-subscribe", "GET /version"];
    load_api_test_plugin(&d, "t1", "abort", &post);
    load_api_test_plugin(&d, "t2", "abort", &post);
    load_observer(&d, "obs");
    load_api_test_plugin(&d, "t3", "abort", &post);

    let v = d.raw("GET", "/v1.50/version", None, b"");
    assert_eq!(v.status, 200, "{}", v.text());
    assert_eq!(v.json()["Seen"], json!(["t3", "t2", "t1"]), "{}", v.text());
    assert!(v.json()["ApiVersion"].is_string(), "{}", v.text());
    assert_eq!(hook_calls(&d, "obs", "api.post"), 1);
}

/// Needs root. A privileged plugin's requests on its own engine socket skip its own hooks, while
/// other plugins' hooks still see them.
#[test]
fn privileged_plugin_calls_skip_its_own_hooks() {
    let d = Daemon::start();
    d.load_api_policy("self", &["--privileged"], &["seen.self=yes"]);
    d.load_api_policy("other", &[], &["seen.other=yes"]);
    let engine_sock = d.plugin_engine_socket("self");

    let body = json!({"Image": "host", "Cmd": ["true"]}).to_string();
    let r = raw_request(
        &engine_sock,
        "POST",
        "/v1.50/containers/create?name=fromplugin",
        Some("application/json"),
        body.as_bytes(),
    )
    .expect("request on the plugin's engine socket");
    assert_eq!(r.status, 201, "{}", r.text());
    let l = labels(&d, "fromplugin");
    assert_eq!(l["seen.other"], "yes", "{l}");
    assert!(
        l.get("seen.self").is_none(),
        "its own hook must not run: {l}"
    );

    d.docker(&["create", "--name", "fromuser", "host", "true"])
        .expect_code(0);
    let l = labels(&d, "fromuser");
    assert_eq!(
        (l["seen.self"].as_str(), l["seen.other"].as_str()),
        (Some("yes"), Some("yes")),
        "{l}"
    );
}

/// Needs root. A failing api plugin: with `--on-failure ignore` the request goes through with a
/// `Berth-Warning`; with the default `abort` it fails with 502 naming the plugin. Unloading it
/// still works (plugin management never goes through hooks).
#[test]
fn failing_hooks_follow_the_failure_policy() {
    let d = Daemon::start();
    let load = |name: &str, policy: &str| {
        load_api_test_plugin(&d, name, policy, &["--fail", "hook exploded"]);
    };
    load("lenient", "ignore");
    let r = d.raw("GET", "/containers/json", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let warning = r.header("Berth-Warning").unwrap_or_default().to_owned();
    assert!(
        warning.contains("lenient") && warning.contains("hook exploded"),
        "{warning:?}"
    );

    load("strict", "abort");
    let r = d.raw("GET", "/containers/json", None, b"");
    assert_eq!(r.status, 502, "{}", r.text());
    let msg = r.message();
    assert!(
        msg.contains("\"strict\"") && msg.contains("hook exploded"),
        "{msg}"
    );
    d.berth(&["plugin", "unload", "strict"]).expect_code(0);
    assert_eq!(d.raw("GET", "/containers/json", None, b"").status, 200);
}

/// Needs root. Docker's authorization protocol: allowed requests pass and the plugin sees the
/// exact body that is executed, a deny reaches the docker CLI with the plugin's message, an
/// oversized body is refused rather than executed unseen, and a dead plugin fails closed.
#[test]
fn authorization_plugin_allows_denies_and_fails_closed() {
    let mut plugin: Option<AuthzPlugin> = None;
    let d = Daemon::start_with(|dir| {
        let plugins = dir.join("plugins");
        plugin = Some(AuthzPlugin::start(&plugins, &["--deny", "/volumes"]));
        vec![
            "--plugin-dir".into(),
            plugins.display().to_string(),
            "--authorization-plugin".into(),
            "authz".into(),
        ]
    });
    let mut plugin = plugin.expect("authz plugin");

    d.docker(&["create", "--name", "seen", "host", "true"])
        .expect_code(0);
    let creates: Vec<Value> = plugin
        .seen()
        .into_iter()
        .filter(|e| {
            e["Phase"] == "req"
                && e["Uri"]
                    .as_str()
                    .is_some_and(|u| u.contains("/containers/create"))
        })
        .collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert!(
        creates[0]["Uri"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/v1."),
        "RequestUri keeps the version prefix"
    );
    assert!(
        creates[0]["Body"]
            .as_str()
            .unwrap_or_default()
            .contains("\"Image\":\"host\""),
        "{creates:?}"
    );
    assert!(
        plugin
            .seen()
            .iter()
            .any(|e| e["Phase"] == "res" && e["Status"] == 201)
    );

    let out = d.docker(&["volume", "ls"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("authorization denied by plugin authz:"),
        "{}",
        out.describe()
    );

    let out = d.docker(&["run", "--rm", "--privileged", "host", "true"]);
    out.expect_code(125);
    assert!(
        out.stderr.contains("privileged containers are not allowed"),
        "{}",
        out.describe()
    );

    // A body bigger than what the plugin may inspect is refused, never executed unseen.
    let mut big = json!({"Image": "host", "Cmd": ["true"]});
    big["Labels"] = json!({"pad": "x".repeat(5 << 20)});
    let r = d.raw(
        "POST",
        "/containers/create?name=big",
        Some("application/json"),
        big.to_string().as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(d.raw("GET", "/containers/big/json", None, b"").status, 404);

    // Fail-closed: the plugin is gone, so nothing is allowed.
    let _ = plugin.child.kill();
    let _ = plugin.child.wait();
    let r = d.raw("GET", "/containers/json", None, b"");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.message().contains("plugin authz failed with error"),
        "{}",
        r.message()
    );
}

/// Needs root. Replies a pre-hook must not accept: malformed JSON and a reply of the wrong
/// `Type` fail the request with a 502 naming the plugin and the reason (policy `abort`), and
/// pass through unchanged with a warning under policy `ignore`.
#[test]
fn malformed_and_wrong_type_hook_replies_are_refused() {
    let d = Daemon::start();
    let load = |name: &str, policy: &str, reply: &str| {
        load_api_test_plugin(&d, name, policy, &["--api-reply", reply]);
    };
    load("garbled", "abort", "{\"ModifiedClientRequest\": not json");
    let r = d.raw("GET", "/containers/json", None, b"");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.message().contains("\"garbled\"") && r.message().contains("decoding reply"),
        "{}",
        r.message()
    );
    d.berth(&["plugin", "unload", "garbled"]).expect_code(0);

    load(
        "confused",
        "abort",
        r#"{"PowerstripProtocolVersion": 1, "Type": "post-hook"}"#,
    );
    let r = d.raw("GET", "/containers/json", None, b"");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.message().contains("\"confused\"") && r.message().contains("expected \"pre-hook\""),
        "{}",
        r.message()
    );
    d.berth(&["plugin", "unload", "confused"]).expect_code(0);

    load(
        "easygoing",
        "ignore",
        "{\"ModifiedClientRequest\": not json",
    );
    let r = d.raw("GET", "/containers/json", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("Berth-Warning")
            .unwrap_or_default()
            .contains("easygoing")
    );
}

/// Needs root. The additive `BodyJSON` form (docs/protocol.md 3.3): a pre-hook may answer with
/// the body as a JSON value and the engine runs exactly that body; a reply with both `Body` and
/// `BodyJSON` is malformed and refused with 502 naming the plugin.
#[test]
fn body_json_replies_are_applied_and_ambiguous_ones_refused() {
    let d = Daemon::start();
    let reply = json!({"PowerstripProtocolVersion": 1, "ModifiedClientRequest": {
        "Method": "POST", "Request": "/v1.50/containers/create?name=bj",
        "BodyJSON": {"Image": "host", "Cmd": ["true"], "Labels": {"via": "body \"json\""}}}});
    load_api_test_plugin(
        &d,
        "rawbody",
        "abort",
        &[
            "--api-subscribe",
            "POST /containers/create",
            "--api-reply",
            &reply.to_string(),
        ],
    );
    let r = d.raw(
        "POST",
        "/v1.50/containers/create?name=ignored",
        Some("application/json"),
        br#"{"Image":"host","Cmd":["false"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(labels(&d, "bj")["via"], "body \"json\"");
    d.berth(&["plugin", "unload", "rawbody"]).expect_code(0);

    let both = json!({"PowerstripProtocolVersion": 1, "ModifiedClientRequest": {
        "Method": "POST", "Request": "/v1.50/containers/create?name=both",
        "Body": "{\"Image\":\"host\"}", "BodyJSON": {"Image": "host"}}});
    load_api_test_plugin(
        &d,
        "ambiguous",
        "abort",
        &[
            "--api-subscribe",
            "POST /containers/create",
            "--api-reply",
            &both.to_string(),
        ],
    );
    let r = d.raw(
        "POST",
        "/v1.50/containers/create?name=x",
        Some("application/json"),
        br#"{"Image":"host"}"#,
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.message().contains("\"ambiguous\"") && r.message().contains("both Body and BodyJSON"),
        "{}",
        r.message()
    );
    assert_eq!(
        d.raw("GET", "/containers/both/json", None, b"").status,
        404,
        "the refused request was not run"
    );
}
