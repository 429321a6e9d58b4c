//! Plugins named by `--authorization-plugin` cannot be switched off through the API: disable,
//! unload and upgrade get 409 with the reason, the plugin stays active and keeps judging
//! requests, also after a daemon restart.
//!
//! Needs root (the daemon makes namespaces and mounts); CI runs it as root.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_tests::{Daemon, PluginProc, example_plugin, poll_until, spawn_plugin};
use serde_json::json;

#[test]
fn authorization_plugin_cannot_be_disabled_unloaded_or_upgraded() {
    let mut plugin: Option<PluginProc> = None;
    let mut log = None;
    let mut d = Daemon::start_with(|dir| {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let sock = plugins.join("authz.sock");
        let l = dir.join("authz.log");
        plugin = Some(spawn_plugin(
            &example_plugin("authz-policy"),
            &[
                "--socket",
                sock.to_str().unwrap(),
                "--log",
                l.to_str().unwrap(),
                "--deny",
                "/volumes",
            ],
        ));
        log = Some(l);
        poll_until("the authz plugin socket", Duration::from_secs(10), || {
            sock.exists().then_some(())
        });
        vec![
            "--plugin-dir".into(),
            plugins.display().to_string(),
            "--authorization-plugin".into(),
            "authz".into(),
        ]
    });
    let (_plugin, log) = (plugin.unwrap(), log.unwrap());
    let denied = |d: &Daemon| d.raw("GET", "/volumes", None, b"").status;
    assert_eq!(denied(&d), 403, "the plugin judges requests");

    let lockout = |r: berth_tests::RawResponse, action: &str| {
        assert_eq!(r.status, 409, "{action}: {}", r.text());
        let m = r.message();
        assert!(
            m.contains("plugin \"authz\" cannot be")
                && m.contains(action)
                && m.contains("--authorization-plugin"),
            "{m}"
        );
    };
    lockout(
        d.raw("POST", "/plugins/authz/disable", None, b""),
        "disabled",
    );
    lockout(
        d.raw("POST", "/plugins/authz/disable?force=1", None, b""),
        "disabled",
    );
    lockout(
        d.raw("DELETE", "/berth/plugins/authz", None, b""),
        "unloaded",
    );
    let other = d.dir().join("other.sock");
    lockout(
        d.raw_json(
            "POST",
            "/berth/plugins/authz/upgrade",
            &json!({"Socket": other.to_str().unwrap()}),
        ),
        "upgraded",
    );
    // The docker CLI shows the reason.
    let out = d.docker(&["plugin", "disable", "authz"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("cannot be disabled"),
        "{}",
        out.describe()
    );

    // Still active, still consulted.
    let st = d.raw("GET", "/berth/plugins/authz", None, b"").json();
    assert_eq!(st["State"], "active", "{st}");
    assert_eq!(denied(&d), 403);
    assert!(std::fs::read_to_string(&log).unwrap().contains("/volumes"));

    // And after a restart: still pinned, still judging.
    d.stop(Duration::from_secs(10));
    d.restart();
    assert_eq!(denied(&d), 403);
    lockout(
        d.raw("POST", "/plugins/authz/disable", None, b""),
        "disabled",
    );
}
