//! Catch-up end to end (`docs/semantics.md#catch-up`), with the `ledger` example plugin (a v2
//! volume, network and IPAM driver that subscribes to `sync` and logs every call) running as a
//! plugin container on the `host` image:
//!
//! - a v2 plugin gets a `sync` listing its volume (with the mount id and the container using it),
//!   its network and the container's endpoint after its container is killed and restarted by its
//!   restart policy, and after `plugin upgrade`;
//! - after `kill -9` of the daemon while a container with a ledger volume and a ledger network
//!   runs, the restarted daemon sends the tear-downs it owed (`Unmount` with the mount's id,
//!   `Leave`, `DeleteEndpoint`, `ReleaseAddress`) exactly once, in that order, and then a `boot`
//!   sync that shows the container exited.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{Daemon, example_plugin, poll_until};
use serde_json::{Value, json};

/// The ledger's directory (volumes and call log), bind-mounted into its container at the same
/// path.
fn ledger_dir(d: &Daemon) -> PathBuf {
    let dir = d.dir().join("ledger");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ledger_args(d: &Daemon, version: &str) -> Vec<String> {
    let dir = ledger_dir(d);
    vec![
        example_plugin("ledger").display().to_string(),
        "--name".into(),
        "ledger".into(),
        "--version".into(),
        version.into(),
        "--dir".into(),
        dir.join("volumes").display().to_string(),
        "--log".into(),
        dir.join("calls.log").display().to_string(),
    ]
}

fn load_ledger(d: &Daemon) {
    let dir = ledger_dir(d).display().to_string();
    let mount = format!("{dir}:{dir}");
    let args = ledger_args(d, "1.0");
    let mut cmd = vec!["plugin", "load", "--name", "ledger", "-v", &mount, "host"];
    cmd.extend(args.iter().map(String::as_str));
    d.berth(&cmd).expect_code(0);
}

/// The ledger's calls so far: `(call, body)`.
fn calls(d: &Daemon) -> Vec<(String, Value)> {
    std::fs::read_to_string(ledger_dir(d).join("calls.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["Call"].as_str().unwrap_or_default().to_owned(),
                v["Body"].clone(),
            )
        })
        .collect()
}

fn syncs(d: &Daemon, reason: &str) -> Vec<Value> {
    calls(d)
        .into_iter()
        .filter(|(c, b)| c == "sync" && b["Reason"] == reason)
        .map(|(_, b)| b)
        .collect()
}

fn wait_sync(d: &Daemon, reason: &str, count: usize) -> Value {
    poll_until(
        &format!("sync #{count} with reason {reason}"),
        Duration::from_secs(30),
        || syncs(d, reason).get(count - 1).cloned(),
    )
}

/// The body of the only call `call` whose `key` is `value` (panics unless there is exactly one).
fn only(calls: &[(String, Value)], call: &str, key: &str, value: &str) -> usize {
    let hits: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, (c, b))| c == call && b[key] == value)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{call} with {key}={value}: want exactly one, got {hits:?} in {calls:#?}"
    );
    hits[0]
}

/// A volume and a network on the ledger, and a running container using both; returns its id.
fn run_on_ledger(d: &Daemon) -> String {
    let r = d.raw_json(
        "POST",
        "/volumes/create",
        &json!({"Name": "lvol", "Driver": "ledger"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw_json(
        "POST",
        "/networks/create",
        &json!({"Name": "lnet", "Driver": "ledger", "IPAM": {"Driver": "ledger"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw_json(
        "POST",
        "/containers/create?name=user",
        &json!({"Image": "host", "Cmd": ["sleep", "300"],
                "HostConfig": {"Binds": ["lvol:/data"], "NetworkMode": "lnet"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_owned();
    let r = d.raw("POST", &format!("/containers/{id}/start"), None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    id
}

/// The mount id the ledger got with `Mount`, and the endpoint id and address of `CreateEndpoint`.
fn mount_and_endpoint(d: &Daemon) -> (String, String, String) {
    let c = calls(d);
    let mount = c.iter().find(|(n, _)| n == "VolumeDriver.Mount").unwrap();
    let ep = c
        .iter()
        .find(|(n, _)| n == "NetworkDriver.CreateEndpoint")
        .unwrap();
    (
        mount.1["ID"].as_str().unwrap().to_owned(),
        ep.1["EndpointID"].as_str().unwrap().to_owned(),
        // `ReleaseAddress` names the address without its prefix length.
        ep.1["Interface"]["Address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned(),
    )
}

/// A sync lists the volume with its mount id and user, the network with the endpoint, and the
/// container in `state`.
fn assert_lists(
    sync: &Value,
    cid: &str,
    mount_id: Option<&str>,
    endpoint: Option<&str>,
    state: &str,
) {
    let vol = sync["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "lvol")
        .unwrap_or_else(|| panic!("lvol missing: {sync:#}"));
    match mount_id {
        Some(id) => {
            assert_eq!(vol["Mount"]["ID"], id, "{sync:#}");
            assert_eq!(vol["Mount"]["Containers"], json!([cid]), "{sync:#}");
        }
        None => assert!(vol["Mount"].is_null(), "still mounted: {sync:#}"),
    }
    let net = sync["Networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Name"] == "lnet")
        .unwrap_or_else(|| panic!("lnet missing: {sync:#}"));
    assert_eq!(net["IPAM"]["Driver"], "ledger", "{sync:#}");
    match endpoint {
        Some(ep) => {
            assert_eq!(net["Endpoints"][0]["EndpointID"], ep, "{sync:#}");
            assert_eq!(net["Endpoints"][0]["ContainerID"], cid, "{sync:#}");
        }
        None => assert_eq!(net["Endpoints"], json!([]), "{sync:#}"),
    }
    let c = sync["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ID"] == cid)
        .unwrap_or_else(|| panic!("container missing: {sync:#}"));
    assert_eq!(c["Name"], "user");
    assert_eq!(c["State"], state, "{sync:#}");
}

/// The ledger's books (`POST /Ledger.State` on its socket).
fn ledger_books(d: &Daemon) -> Value {
    let st = d.raw("GET", "/berth/plugins/ledger", None, b"").json();
    let socket = PathBuf::from(st["Socket"].as_str().unwrap());
    let r = berth_tests::raw_request(&socket, "POST", "/Ledger.State", None, b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn plugin_container_pid(d: &Daemon) -> i64 {
    let st = d.raw("GET", "/berth/plugins/ledger", None, b"").json();
    let cid = st["ContainerID"].as_str().unwrap().to_owned();
    poll_until(
        "the plugin container to run",
        Duration::from_secs(10),
        || {
            let c = d
                .raw("GET", &format!("/containers/{cid}/json"), None, b"")
                .json();
            c["State"]["Pid"].as_i64().filter(|p| *p > 0)
        },
    )
}

/// Needs root. The ledger gets a sync at load, then one listing its volume, network, endpoint and
/// container after its container is killed (the restart policy brings it back), and another after
/// `plugin upgrade`; `plugin status` counts them under the `sync` hook.
#[test]
fn a_v2_plugin_gets_a_sync_after_a_restart_and_an_upgrade() {
    let d = Daemon::start();
    load_ledger(&d);
    let load = wait_sync(&d, "load", 1);
    assert_eq!(load["Plugin"], "ledger");
    assert_eq!(load["Volumes"], json!([]), "{load:#}");

    let cid = run_on_ledger(&d);
    let (mount_id, ep, _) = mount_and_endpoint(&d);

    let pid = plugin_container_pid(&d);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restart = wait_sync(&d, "restart", 1);
    assert_lists(&restart, &cid, Some(&mount_id), Some(&ep), "running");
    // The restarted ledger rebuilt its books from the sync: it knows the live mount's id.
    assert_eq!(ledger_books(&d)["mounts"]["lvol"], json!([mount_id]));

    let args = ledger_args(&d, "2.0");
    let mut cmd = vec!["plugin", "upgrade", "ledger", "host"];
    cmd.extend(args.iter().map(String::as_str));
    d.berth(&cmd).expect_code(0);
    let upgrade = wait_sync(&d, "upgrade", 1);
    assert_lists(&upgrade, &cid, Some(&mount_id), Some(&ep), "running");

    // `plugin status` of the upgraded plugin counts its one sync, which did not fail.
    let st = d.raw("GET", "/berth/plugins/ledger", None, b"").json();
    assert_eq!(st["Hooks"]["sync"]["Calls"], 1, "{st:#}");
    assert_eq!(st["Hooks"]["sync"]["Failures"], 0, "{st:#}");
}

/// Needs root. `kill -9` of the daemon while a container with a ledger volume and a ledger
/// network runs: the next daemon sends `Unmount` (with the id of the `Mount`), `Leave`,
/// `DeleteEndpoint` and `ReleaseAddress` for it exactly once, in that order, before the `boot`
/// sync, which shows the container exited and nothing mounted or wired. A third daemon sends
/// none of them again.
#[test]
fn a_daemon_crash_is_followed_by_the_owed_teardowns_exactly_once() {
    let mut d = Daemon::start();
    load_ledger(&d);
    wait_sync(&d, "load", 1);
    let cid = run_on_ledger(&d);
    let (mount_id, ep, address) = mount_and_endpoint(&d);

    d.kill9();
    d.restart();
    let boot = wait_sync(&d, "boot", 1);
    assert_lists(&boot, &cid, None, None, "exited");

    let c = calls(&d);
    let unmount = only(&c, "VolumeDriver.Unmount", "ID", &mount_id);
    let leave = only(&c, "NetworkDriver.Leave", "EndpointID", &ep);
    let delete = only(&c, "NetworkDriver.DeleteEndpoint", "EndpointID", &ep);
    let release = only(&c, "IpamDriver.ReleaseAddress", "Address", &address);
    assert!(
        unmount < leave && leave < delete && delete < release,
        "order: Unmount {unmount}, Leave {leave}, DeleteEndpoint {delete}, ReleaseAddress {release}"
    );
    let sync_at = c
        .iter()
        .position(|(n, b)| n == "sync" && b["Reason"] == "boot")
        .unwrap();
    assert!(
        release < sync_at,
        "the boot sync came before the tear-downs"
    );

    // Paid once: the next boot owes nothing.
    d.kill9();
    d.restart();
    wait_sync(&d, "boot", 2);
    let c = calls(&d);
    only(&c, "VolumeDriver.Unmount", "ID", &mount_id);
    only(&c, "NetworkDriver.Leave", "EndpointID", &ep);
    only(&c, "NetworkDriver.DeleteEndpoint", "EndpointID", &ep);
    only(&c, "IpamDriver.ReleaseAddress", "Address", &address);
    assert!(
        !ledger_dir(&d)
            .parent()
            .map(Path::to_path_buf)
            .unwrap()
            .join("root/volumes/lvol/mount.json")
            .exists(),
        "the mount record outlived its Unmount"
    );
}
