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
//!   sync that shows the container exited;
//! - after `kill -9` while the `netplug` example (a Docker-protocol network and IPAM driver, a
//!   host process loaded by socket) is in the middle of a `CreateNetwork`, a `DeleteNetwork` and
//!   a `Join`, the restarted daemon sends `DeleteNetwork`, `ReleasePool`, `Leave`,
//!   `DeleteEndpoint` and `ReleaseAddress` once, and netplug's links are gone; with the plugin
//!   absent at that boot, its `DeleteNetwork` waits for the plugin's next load.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::netplug::{NetPlug, host_links, leftover_links, read_calls};
use berth_tests::{Daemon, example_plugin, poll_until, unique_name};
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

/// Needs root. kill -9 while `netplug` is in the middle of three calls: a `CreateNetwork` (it made
/// the network's bridge, the answer never came), a `DeleteNetwork` (not yet done) and a `Join`
/// (it made the endpoint's veth pair), netplug being each network's IPAM too. The next boot owes
/// the plugin `DeleteNetwork` and `ReleasePool` for both networks (neither is listed: the create
/// and the remove were never answered) and `Leave`, `DeleteEndpoint` and `ReleaseAddress` for
/// the endpoint, and sends them before the API serves: none of those links survive
/// (`docs/semantics.md#catch-up`).
#[test]
fn a_crash_mid_create_remove_or_join_leaves_no_plugin_links_after_the_next_boot() {
    let mut d = Daemon::start();
    let log = d.dir().join("calls.log");
    let name = "cutnet";
    let stall = d.dir().join("stall");
    let _np = NetPlug::load(&d, name, &log, &["--stall-file", stall.to_str().unwrap()]);
    let (kept, removed, created) = (
        unique_name("cutkeep"),
        unique_name("cutrm"),
        unique_name("cutmk"),
    );
    for (i, net) in [&kept, &removed].into_iter().enumerate() {
        let subnet = format!("10.244.{i}.0/24");
        d.docker(&[
            "network",
            "create",
            "-d",
            name,
            "--ipam-driver",
            name,
            "--subnet",
            &subnet,
            net,
        ])
        .ok();
    }
    let id_of = |net: &str| {
        let out = d.docker(&["network", "inspect", "-f", "{{.Id}}", net]);
        out.ok().trim().to_owned()
    };
    let (kept_id, removed_id) = (id_of(&kept), id_of(&removed));
    let cid = d
        .docker(&["create", "--net", &kept, "host", "sleep", "300"])
        .ok()
        .trim()
        .to_owned();

    // Now CreateNetwork and Join do their work and never answer; DeleteNetwork hangs before its
    // work.
    std::fs::write(&stall, "CreateNetwork\nJoin\nDeleteNetwork before\n").unwrap();
    let create =
        json!({"Name": created, "Driver": name, "IPAM": {"Driver": name, "Config": [{"Subnet": "10.244.9.0/24"}]}})
            .to_string();
    let requests = [
        ("POST", "/v1.50/networks/create".to_owned(), create),
        (
            "DELETE",
            format!("/v1.50/networks/{removed}"),
            String::new(),
        ),
        (
            "POST",
            format!("/v1.50/containers/{cid}/start"),
            String::new(),
        ),
    ];
    let in_flight: Vec<_> = requests
        .into_iter()
        .map(|(method, path, body)| {
            let sock = d.socket();
            std::thread::spawn(move || {
                berth_tests::raw_request(
                    &sock,
                    method,
                    &path,
                    Some("application/json"),
                    body.as_bytes(),
                )
            })
        })
        .collect();
    let short = |id: &str| id.chars().take(10).collect::<String>();
    let (created_id, endpoint) = poll_until(
        "netplug in the middle of CreateNetwork, DeleteNetwork and Join",
        Duration::from_secs(30),
        || {
            let calls = read_calls(&log);
            let find = |call: &str, key: &str| {
                calls
                    .iter()
                    .rev()
                    .filter(|(_, c, _)| c == call)
                    .filter_map(|(_, _, b)| b[key].as_str().map(str::to_owned))
                    .find(|id| id != &kept_id && id != &removed_id)
            };
            let created_id = find("NetworkDriver.CreateNetwork", "NetworkID")?;
            let endpoint = find("NetworkDriver.Join", "EndpointID")?;
            let deleting = calls.iter().any(|(_, c, b)| {
                c == "NetworkDriver.DeleteNetwork" && b["NetworkID"] == removed_id.as_str()
            });
            // The stalled calls did their work: the bridge and the veth pair exist.
            let links = host_links();
            let made = links.contains(&format!("np{}", short(&created_id)))
                && links.contains(&format!("nh{}", short(&endpoint)));
            (deleting && made).then_some((created_id, endpoint))
        },
    );
    d.kill9();
    for t in in_flight {
        let _ = t.join().unwrap();
    }
    std::fs::remove_file(&stall).unwrap();
    // The pending endpoint's address, as its CreateEndpoint carried it: owed its ReleaseAddress.
    let endpoint_address = read_calls(&log)
        .into_iter()
        .find(|(_, c, b)| {
            c == "NetworkDriver.CreateEndpoint" && b["EndpointID"] == endpoint.as_str()
        })
        .map(|(_, _, b)| {
            let cidr = b["Interface"]["Address"].as_str().unwrap().to_owned();
            format!("10.244.0.0/24 {}", cidr.split('/').next().unwrap())
        })
        .unwrap();
    let mark = read_calls(&log).len();
    d.restart();

    // User requests wait at the readiness gate, which opens after the owed calls were answered.
    let listed = d.docker(&["network", "ls", "--format", "{{.Name}}"]);
    let listed: Vec<&str> = listed.ok().lines().collect();
    assert!(listed.contains(&kept.as_str()), "{listed:?}");
    assert!(
        !listed.contains(&created.as_str()) && !listed.contains(&removed.as_str()),
        "a network whose create or remove the crash cut is listed: {listed:?}"
    );
    let paid = poll_until(
        "the owed calls sent at boot",
        Duration::from_secs(30),
        || {
            let calls: Vec<(String, String)> = read_calls(&log)[mark..]
                .iter()
                .map(|(_, c, b)| {
                    let s = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
                    let id = match c.as_str() {
                        "IpamDriver.ReleaseAddress" => format!("{} {}", s("PoolID"), s("Address")),
                        "IpamDriver.ReleasePool" => s("PoolID"),
                        _ if b["EndpointID"].is_string() => s("EndpointID"),
                        _ => s("NetworkID"),
                    };
                    (c.clone(), id)
                })
                .collect();
            let has = |call: &str, id: &str| calls.contains(&(call.to_owned(), id.to_owned()));
            (has("NetworkDriver.DeleteNetwork", &created_id)
                && has("NetworkDriver.DeleteNetwork", &removed_id)
                && has("NetworkDriver.Leave", &endpoint)
                && has("NetworkDriver.DeleteEndpoint", &endpoint)
                && has("IpamDriver.ReleasePool", "10.244.9.0/24")
                && has("IpamDriver.ReleasePool", "10.244.1.0/24")
                && has("IpamDriver.ReleaseAddress", &endpoint_address))
            .then_some(calls)
        },
    );
    let once = |call: &str, id: &str| {
        paid.iter()
            .filter(|(c, i)| c == &format!("NetworkDriver.{call}") && i == id)
            .count()
    };
    assert!(
        !paid
            .iter()
            .any(|(c, i)| c == "IpamDriver.ReleasePool" && i == "10.244.0.0/24"),
        "the kept network's pool was released: {paid:?}"
    );
    assert_eq!(once("DeleteNetwork", &created_id), 1, "{paid:?}");
    assert_eq!(once("DeleteNetwork", &removed_id), 1, "{paid:?}");
    assert_eq!(once("DeleteNetwork", &kept_id), 0, "{paid:?}");
    assert_eq!(
        leftover_links(&log),
        [format!("np{}", short(&kept_id))],
        "netplug links of no network or endpoint survived the boot"
    );
    let endpoint_shown = d.docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{kept}\").EndpointID}}}}"),
        &cid,
    ]);
    assert_eq!(
        endpoint_shown.ok().trim(),
        "",
        "the cut endpoint is still shown"
    );
    // The name of the cut create is free, and the container starts on the kept network.
    d.docker(&["network", "create", "-d", name, &created]).ok();
    d.docker(&["network", "rm", &created]).ok();
    d.docker(&["start", &cid]).ok();
    d.docker(&["rm", "-f", &cid]).ok();
    d.docker(&["network", "rm", &kept]).ok();
    assert!(
        leftover_links(&log).is_empty(),
        "{:?}",
        leftover_links(&log)
    );
}

/// Needs root. kill -9 while `netplug` is in the middle of a `CreateNetwork`, and the plugin is
/// gone too when the daemon comes back: its `DeleteNetwork` stays owed through that boot (the
/// network is not listed, its bridge is still there) and is sent when the plugin is loaded again,
/// before `plugin load` answers.
#[test]
fn an_owed_delete_network_waits_for_its_plugin_to_be_loaded_again() {
    let mut d = Daemon::start();
    let log = d.dir().join("calls.log");
    let name = "latenet";
    let stall = d.dir().join("stall");
    // A short load deadline: the boot without the plugin waits that long for it.
    let np = NetPlug::load_with(
        &d,
        name,
        &log,
        &["--stall-file", stall.to_str().unwrap()],
        &["--timeout", "2s"],
    );
    std::fs::write(&stall, "CreateNetwork\n").unwrap();
    let net = unique_name("late");
    let body =
        json!({"Name": net, "Driver": name, "IPAM": {"Config": [{"Subnet": "10.245.0.0/24"}]}})
            .to_string();
    let sock = d.socket();
    let creating = std::thread::spawn(move || {
        berth_tests::raw_request(
            &sock,
            "POST",
            "/v1.50/networks/create",
            Some("application/json"),
            body.as_bytes(),
        )
    });
    let bridge = poll_until(
        "netplug in the middle of CreateNetwork",
        Duration::from_secs(30),
        || {
            let id = read_calls(&log)
                .into_iter()
                .find(|(_, c, _)| c == "NetworkDriver.CreateNetwork")?
                .2["NetworkID"]
                .as_str()?
                .chars()
                .take(10)
                .collect::<String>();
            let bridge = format!("np{id}");
            host_links().contains(&bridge).then_some(bridge)
        },
    );
    d.kill9();
    let _ = creating.join().unwrap();
    drop(np);
    let _ = std::fs::remove_file(d.dir().join(format!("{name}.sock")));
    std::fs::remove_file(&stall).unwrap();
    d.restart();

    let listed = d.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !listed.ok().lines().any(|l| l == net),
        "a network whose create the crash cut is listed: {}",
        listed.ok()
    );
    assert!(
        host_links().contains(&bridge),
        "the bridge went while its plugin was down"
    );
    let deletes = || {
        read_calls(&log)
            .iter()
            .filter(|(_, c, _)| c == "NetworkDriver.DeleteNetwork")
            .count()
    };
    assert_eq!(deletes(), 0);

    let _np = NetPlug::load(&d, name, &log, &[]);
    assert_eq!(
        deletes(),
        1,
        "the owed DeleteNetwork was not sent at the load"
    );
    assert!(
        !host_links().contains(&bridge),
        "the bridge of the cut create survived the plugin's load"
    );
    // Paid once: the next boot sends nothing more.
    d.kill9();
    d.restart();
    d.docker(&["network", "ls"]).ok();
    assert_eq!(deletes(), 1);
    assert!(
        leftover_links(&log).is_empty(),
        "{:?}",
        leftover_links(&log)
    );
}
