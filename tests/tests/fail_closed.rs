//! Fail closed (`docs/semantics.md`): a plugin with policy `abort` that is not Active makes every
//! operation that needs it fail at once with 503 naming the plugin and its state, and nothing
//! falls back silently (no host directory is made for a bind the plugin should have rewritten).
//! A plugin with policy `ignore` is skipped and the response carries a warning.
//!
//! Every test here needs root (the daemon makes namespaces and mounts); CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use berth_tests::Daemon;

/// Loads `test-plugin` as `name` (a bind-rewriting volume plugin: it appends `/inner`).
fn load_rewriter(d: &Daemon, name: &str, policy: &str) {
    d.load_test_plugin(name, &["--on-failure", policy], &["--suffix", "/inner"])
        .expect_code(0);
}

/// A disabled abort-policy bind-rewriting plugin: `docker run -v /flocker/x:/d` fails with 503
/// naming the plugin and its state, and the bind source is NOT created on the host.
#[test]
fn disabled_abort_volume_plugin_fails_closed() {
    let d = Daemon::start();
    load_rewriter(&d, "flk", "abort");
    d.docker(&["plugin", "disable", "flk"]).expect_code(0);
    let src = d.dir().join("flocker").join("x");
    let bind = format!("{}:/d", src.display());

    let out = d.docker(&["run", "--rm", "-v", &bind, "host", "true"]);
    assert!(!out.success(), "run must fail: {}", out.describe());
    let err = out.stderr.to_lowercase();
    assert!(err.contains("flk"), "names the plugin: {}", out.describe());
    assert!(
        err.contains("disabled"),
        "names its state: {}",
        out.describe()
    );
    assert!(
        !src.exists(),
        "no host directory made for {}",
        src.display()
    );

    // The API answers 503.
    let body = serde_json::json!({"Image": "host", "Cmd": ["true"],
        "HostConfig": {"Binds": [bind]}})
    .to_string();
    let r = d.raw(
        "POST",
        "/containers/create",
        Some("application/json"),
        body.as_bytes(),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.message().contains("flk"), "{}", r.text());
    assert!(!src.exists());
}

/// A disabled abort-policy api pre-hook plugin: the request it hooks fails with 503.
#[test]
fn disabled_abort_api_hook_fails_closed() {
    let d = Daemon::start();
    d.load_api_policy("pol", &[], &["seen.pol=yes"]);
    d.docker(&["plugin", "disable", "pol"]).expect_code(0);
    let body = serde_json::json!({"Image": "host", "Cmd": ["true"]}).to_string();
    let r = d.raw(
        "POST",
        "/containers/create",
        Some("application/json"),
        body.as_bytes(),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let m = r.message();
    assert!(m.contains("pol") && m.contains("disabled"), "{}", r.text());
    let ps = d.docker(&["ps", "-aq"]);
    assert_eq!(
        ps.stdout.trim(),
        "",
        "nothing was created: {}",
        ps.describe()
    );
}

/// A disabled ignore-policy plugin is skipped: the run succeeds, with a warning naming it.
#[test]
fn disabled_ignore_plugin_warns() {
    let d = Daemon::start();
    load_rewriter(&d, "soft", "ignore");
    d.docker(&["plugin", "disable", "soft"]).expect_code(0);
    let src = d.dir().join("plain");
    std::fs::create_dir_all(&src).unwrap();
    let bind = format!("{}:/d", src.display());
    let body = serde_json::json!({"Image": "host", "Cmd": ["true"],
        "HostConfig": {"Binds": [bind]}})
    .to_string();
    let r = d.raw(
        "POST",
        "/containers/create",
        Some("application/json"),
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let warnings = r.json()["Warnings"].to_string();
    assert!(
        warnings.contains("soft") && warnings.contains("disabled"),
        "create Warnings name the skipped plugin: {warnings}"
    );
    let out = d.docker(&["run", "--rm", "-v", &bind, "host", "true"]);
    assert!(out.success(), "{}", out.describe());
}
