//! The kit against real plugins: a conformant Python plugin (every protocol family) passes, each
//! deliberately broken variant of it fails exactly the checks it breaks, and the example plugins
//! (`cargo build -p berth-example-plugins`) pass. Only UNIX sockets: no root, except the netplug
//! test, which runs netplug in its own network namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_plugin_check::launch::{Launched, launch};
use berth_plugin_check::{Group, Options, Outcome, Report, run};

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plugin.py")
        .display()
        .to_string()
}

/// A binary of the workspace's target dir (next to this test's `deps/`).
fn bin(name: &str) -> String {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path: PathBuf = dir.join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build -p berth-example-plugins` first",
        path.display()
    );
    path.display().to_string()
}

async fn start(cmd: &[&str]) -> Launched {
    let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    launch("test", &cmd, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn check_cmd(cmd: &[&str], opts: &Options) -> Report {
    let l = start(cmd).await;
    let report = run(&l.socket, opts).await;
    l.stop().await;
    report
}

/// Runs the Python plugin in `mode`.
async fn check_py(mode: &str) -> Report {
    check_py_with(mode, &Options::default()).await
}

async fn check_py_with(mode: &str, opts: &Options) -> Report {
    let script = fixture();
    check_cmd(
        &[
            "sh",
            "-c",
            &format!("exec python3 {script} {mode} \"$PLUGIN_SOCKET\""),
        ],
        opts,
    )
    .await
}

fn warned(r: &Report) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Warn(_)))
        .map(|c| c.id.clone())
        .collect()
}

fn skipped_groups(r: &Report) -> BTreeSet<Group> {
    r.checks
        .iter()
        .filter(|c| c.id.ends_with(".*"))
        .map(|c| c.group)
        .collect()
}

/// `mode` fails exactly `expected` (and the run fails).
async fn broken(mode: &str, expected: &[&str]) {
    broken_with(mode, &Options::default(), expected).await;
}

async fn broken_with(mode: &str, opts: &Options, expected: &[&str]) {
    let r = check_py_with(mode, opts).await;
    let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(r.failed_ids(), want, "mode {mode}:\n{}", r.table());
    assert!(!r.passed, "mode {mode} must fail the run");
    for id in expected {
        let c = r.get(id).expect("check present");
        assert!(
            c.exchange.is_some(),
            "{id} must show what was sent and received"
        );
    }
}

#[tokio::test]
async fn conformant_plugin_passes_every_group() {
    let r = check_py("good").await;
    assert!(r.passed, "{}", r.table());
    assert!(r.failed_ids().is_empty(), "{}", r.table());
    assert!(warned(&r).is_empty(), "{}", r.table());
    assert!(skipped_groups(&r).is_empty(), "{}", r.table());
    for g in Group::ALL {
        assert!(
            r.checks
                .iter()
                .any(|c| c.group == g && c.outcome == Outcome::Pass),
            "no passing check in {g:?}"
        );
    }
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["passed"], true);
    assert_eq!(json["checks"][0]["result"], "pass");
    assert!(
        json["checks"][0]["rule"]
            .as_str()
            .is_some_and(|s| s.starts_with("c-"))
    );
}

#[tokio::test]
async fn broken_handshake_field_type() {
    // `InterestedIn: "volume"` (a string): the engine's own negotiation refuses it too, and no
    // volume-hook or api check can run on the v1 interests.
    broken(
        "hs-bad-type",
        &["handshake.fields[v1]", "handshake.negotiation"],
    )
    .await;
}

#[tokio::test]
async fn broken_handshake_mute_version() {
    // /v2/handshake never answers within the deadline: the engine cannot fall back either.
    let opts = Options {
        deadline: Duration::from_secs(1),
        ..Options::default()
    };
    broken_with(
        "hs-mute-v2",
        &opts,
        &["handshake.negotiation", "handshake.version-answer[v2]"],
    )
    .await;
}

#[tokio::test]
async fn broken_volume_empty_reply() {
    // An empty 200 body to List: every check that reads List fails, and the reply shape rule.
    broken(
        "vol-empty-list",
        &[
            "volume.consistent-after-mount",
            "volume.list",
            "volume.list-after-remove",
            "volume.reply-shapes",
        ],
    )
    .await;
}

#[tokio::test]
async fn broken_volume_refcount() {
    broken("vol-refcount", &["volume.unmount-keeps-other"]).await;
}

#[tokio::test]
async fn broken_volume_null_get() {
    broken(
        "vol-null-get",
        &["volume.get-missing", "volume.get-removed"],
    )
    .await;
}

#[tokio::test]
async fn broken_volume_hook_relative_rewrite() {
    broken("hook-relative", &["volume-hook.shape[v1]"]).await;
}

#[tokio::test]
async fn broken_network_join_cidr_gateway() {
    broken("net-join-cidr-gateway", &["network.driver-join"]).await;
}

#[tokio::test]
async fn broken_api_rejection_with_200() {
    broken("api-reject-200", &["api.pre-hook-rejection[v1]"]).await;
}

#[tokio::test]
async fn broken_authz_deny_without_message() {
    broken("authz-deny-nomsg", &["api.authz-deny"]).await;
}

#[tokio::test]
async fn broken_chunked_bodies() {
    broken(
        "no-chunked",
        &["api.authz-chunked", "api.pre-hook-chunked[v1]"],
    )
    .await;
}

#[tokio::test]
async fn broken_single_threaded() {
    broken("rob-single-thread", &["robustness.slow-client"]).await;
}

#[tokio::test]
async fn only_and_skip_select_groups() {
    let script = fixture();
    let cmd = [
        "sh",
        "-c",
        &format!("exec python3 {script} vol-refcount \"$PLUGIN_SOCKET\""),
    ];
    let only = Options {
        only: [Group::Handshake, Group::Api].into(),
        ..Options::default()
    };
    let r = check_cmd(&cmd, &only).await;
    assert!(
        r.passed,
        "the volume group holds the only failure:\n{}",
        r.table()
    );
    assert_eq!(
        skipped_groups(&r),
        [
            Group::Volume,
            Group::VolumeHook,
            Group::Network,
            Group::Robustness
        ]
        .into()
    );
    let skip = Options {
        skip: [Group::Handshake, Group::Api].into(),
        ..Options::default()
    };
    let r = check_cmd(&cmd, &skip).await;
    assert_eq!(r.failed_ids(), vec!["volume.unmount-keeps-other"]);
    assert_eq!(skipped_groups(&r), [Group::Handshake, Group::Api].into());
}

#[tokio::test]
async fn example_plugins_pass() {
    let store = tempfile::tempdir().expect("tempdir");
    let storage = store.path().join("flocker").display().to_string();
    let root = store.path().join("hello").display().to_string();
    let flocker = bin("flocker");
    let hello = bin("hello-volume");
    let test_plugin = format!("exec {} --socket \"$PLUGIN_SOCKET\"", bin("test-plugin"));
    let ledger_dir = store.path().join("ledger").display().to_string();
    let ledger = format!(
        "exec {} --socket \"$PLUGIN_SOCKET\" --dir {ledger_dir}",
        bin("ledger")
    );
    let cases: Vec<(&str, Vec<&str>, BTreeSet<Group>)> = vec![
        (
            "flocker",
            vec![&flocker, "--storage", &storage],
            [Group::Network, Group::Api].into(),
        ),
        (
            "api-policy",
            vec![&*Box::leak(bin("api-policy").into_boxed_str())],
            [Group::Volume, Group::VolumeHook, Group::Network].into(),
        ),
        (
            "authz-policy",
            vec![&*Box::leak(bin("authz-policy").into_boxed_str())],
            [Group::Volume, Group::VolumeHook, Group::Network].into(),
        ),
        (
            "hello-volume",
            vec![&hello, "--root", &root],
            [Group::Volume, Group::Network, Group::Api].into(),
        ),
        (
            "ledger",
            vec!["sh", "-c", &ledger],
            [Group::VolumeHook, Group::Api].into(),
        ),
        (
            "test-plugin",
            vec!["sh", "-c", &test_plugin],
            [Group::Volume, Group::Network, Group::Api].into(),
        ),
    ];
    for (name, cmd, skipped) in cases {
        let r = check_cmd(&cmd, &Options::default()).await;
        assert!(r.passed, "{name}:\n{}", r.table());
        assert!(r.failed_ids().is_empty(), "{name}:\n{}", r.table());
        assert_eq!(skipped_groups(&r), skipped, "{name}:\n{}", r.table());
    }
}

/// netplug makes bridges and veths: it runs in a network namespace of its own (root).
#[tokio::test]
async fn example_netplug_passes() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (netplug runs in its own network namespace)"
    );
    let script = format!(
        "mount -t sysfs sysfs /sys && ip link set lo up && exec {} --socket \"$PLUGIN_SOCKET\"",
        bin("netplug")
    );
    let r = check_cmd(
        &["unshare", "-n", "-m", "sh", "-c", &script],
        &Options::default(),
    )
    .await;
    assert!(r.passed, "{}", r.table());
    assert!(r.failed_ids().is_empty(), "{}", r.table());
    assert_eq!(
        skipped_groups(&r),
        [Group::Volume, Group::VolumeHook, Group::Api].into()
    );
    assert!(
        r.get("network.driver-join")
            .is_some_and(|c| c.outcome == Outcome::Pass)
    );
    assert!(
        r.get("network.ipam-request-address")
            .is_some_and(|c| c.outcome == Outcome::Pass)
    );
}
