//! Network plugins end to end: the `netplug` example (Docker's remote `NetworkDriver` +
//! `IpamDriver`, its own bridge and veth pairs) driven through a real `berth daemon` by the real
//! `docker` CLI, and the project's MVP network messages chained through plugins in load order.
//! The plugins run as host processes on sockets (they need CAP_NET_ADMIN in the host's network
//! namespace) and are loaded with `berth plugin load --socket`.
//!
//! Every test here needs root (network namespaces, bridges, veth pairs); CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_tests::{Daemon, example_plugin, poll_until, unique_name};
use serde_json::{Value, json};

/// A `netplug` process on a socket in the daemon's temp dir, killed on drop.
struct NetPlug {
    child: Child,
    log: PathBuf,
}

impl Drop for NetPlug {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NetPlug {
    /// Starts `netplug --name NAME [extra]` with a shared call log `log` and loads it into `d`.
    fn load(d: &Daemon, name: &str, log: &Path, extra: &[&str]) -> NetPlug {
        NetPlug::load_with(d, name, log, extra, &[])
    }

    /// [`NetPlug::load`] with more `berth plugin load` flags (`--timeout 2s`).
    fn load_with(d: &Daemon, name: &str, log: &Path, extra: &[&str], flags: &[&str]) -> NetPlug {
        let sock = d.dir().join(format!("{name}.sock"));
        let child = Command::new(example_plugin("netplug"))
            .arg("--socket")
            .arg(&sock)
            .arg("--name")
            .arg(name)
            .arg("--log")
            .arg(log)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        poll_until("the netplug socket", Duration::from_secs(10), || {
            sock.exists().then_some(())
        });
        let mut args = vec![
            "plugin",
            "load",
            "--name",
            name,
            "--socket",
            sock.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        d.berth(&args).ok();
        NetPlug {
            child,
            log: log.to_owned(),
        }
    }

    /// The calls logged so far: `(plugin, call, body)`.
    fn calls(&self) -> Vec<(String, String, Value)> {
        read_calls(&self.log)
    }

    fn call_names(&self) -> Vec<String> {
        self.calls().into_iter().map(|(_, c, _)| c).collect()
    }
}

/// The calls in a netplug log: `(plugin, call, body)`.
fn read_calls(log: &Path) -> Vec<(String, String, Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["plugin"].as_str().unwrap().to_owned(),
                v["call"].as_str().unwrap().to_owned(),
                v["body"].clone(),
            )
        })
        .collect()
}

fn host_links() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Host interfaces netplug made for the networks and endpoints named in `log` and that still
/// exist (other tests run in parallel, so only this test's objects are checked).
fn leftover_links(log: &Path) -> Vec<String> {
    let short = |v: &Value| {
        v.as_str()
            .unwrap_or_default()
            .chars()
            .take(10)
            .collect::<String>()
    };
    let mut names = Vec::new();
    for (_, _, body) in read_calls(log) {
        if body["NetworkID"].is_string() {
            names.push(format!("np{}", short(&body["NetworkID"])));
        }
        if body["EndpointID"].is_string() {
            names.push(format!("nh{}", short(&body["EndpointID"])));
            names.push(format!("nc{}", short(&body["EndpointID"])));
        }
    }
    names.sort();
    names.dedup();
    let links = host_links();
    names.into_iter().filter(|n| links.contains(n)).collect()
}

/// Interfaces not made by a bridge or veth driver of a running test (`eth*`, renamed ones...).
fn other_links() -> Vec<String> {
    host_links()
        .into_iter()
        .filter(|l| {
            !["nh", "nc", "np", "vb", "vp", "br-"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect()
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let out = d.docker(&["inspect", name]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    v[0].clone()
}

fn net_inspect(d: &Daemon, name: &str) -> Value {
    let out = d.docker(&["network", "inspect", name]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    v[0].clone()
}

fn netns_entries(d: &Daemon) -> usize {
    std::fs::read_dir(d.root().join("netns"))
        .map(|r| r.flatten().count())
        .unwrap_or(0)
}

/// A python3 TCP server printing the first line it receives.
const SERVER: &str = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',5000))\ns.listen(1)\nc,_=s.accept()\nprint('got',c.recv(100).decode().strip(),flush=True)\n";

fn client(ip: &str, msg: &str) -> String {
    format!(
        "import socket,time\nfor i in range(100):\n    try:\n        c=socket.create_connection(('{ip}',5000),timeout=2)\n        c.sendall(b'{msg}\\n')\n        break\n    except OSError:\n        time.sleep(0.1)\nelse:\n    raise SystemExit('no server')\n"
    )
}

/// Needs root. The whole Docker-protocol life cycle through netplug as network *and* IPAM driver:
/// create (GetDefaultAddressSpaces, RequestPool, gateway RequestAddress, CreateNetwork), two
/// containers (one `--ip`) talking over TCP, Join's `SrcName` renamed to `eth0` with the address
/// and default route inside, Leave/DeleteEndpoint/ReleaseAddress on exit, unload refused while the
/// network exists, `network rm` → ReleasePool and DeleteNetwork, nothing left on the host.
#[test]
fn docker_protocol_driver_and_ipam_life_cycle() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let np = NetPlug::load(&d, "netplug", &log, &[]);
    let net = unique_name("plugnet");
    let id = d
        .docker(&[
            "network",
            "create",
            "-d",
            "netplug",
            "--ipam-driver",
            "netplug",
            "--subnet",
            "10.241.0.0/24",
            "-o",
            "color=blue",
            &net,
        ])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64);
    let calls = np.calls();
    let names: Vec<&str> = calls.iter().map(|(_, c, _)| c.as_str()).collect();
    let pos = |c: &str| names.iter().position(|n| *n == c).unwrap_or(usize::MAX);
    assert!(
        pos("IpamDriver.GetDefaultAddressSpaces") < pos("IpamDriver.RequestPool")
            && pos("IpamDriver.RequestPool") < pos("IpamDriver.RequestAddress")
            && pos("IpamDriver.RequestAddress") < pos("NetworkDriver.CreateNetwork")
            && pos("NetworkDriver.CreateNetwork") != usize::MAX,
        "{names:?}"
    );
    let body = |c: &str| calls.iter().find(|(_, n, _)| n == c).unwrap().2.clone();
    let pool = body("IpamDriver.RequestPool");
    assert_eq!(pool["Pool"], "10.241.0.0/24");
    assert_eq!(pool["AddressSpace"], "netplug-local");
    let gw = body("IpamDriver.RequestAddress");
    assert_eq!(
        gw["Options"]["RequestAddressType"],
        "com.docker.network.gateway"
    );
    let cn = body("NetworkDriver.CreateNetwork");
    assert_eq!(cn["NetworkID"], json!(id));
    assert_eq!(cn["IPv4Data"][0]["Pool"], "10.241.0.0/24");
    assert_eq!(cn["IPv4Data"][0]["Gateway"], "10.241.0.1/24");
    assert_eq!(cn["Options"]["com.docker.network.generic"]["color"], "blue");
    let n = net_inspect(&d, &net);
    assert_eq!(n["Driver"], "netplug");
    assert_eq!(n["IPAM"]["Driver"], "netplug", "{n}");

    // Server with --ip, client with a dynamic address.
    let srv = unique_name("srv");
    d.docker(&[
        "run",
        "-d",
        "--name",
        &srv,
        "--net",
        &net,
        "--ip",
        "10.241.0.10",
        "host",
        "/usr/bin/python3",
        "-c",
        SERVER,
    ])
    .ok();
    poll_until("server running", Duration::from_secs(20), || {
        (inspect(&d, &srv)["State"]["Running"] == json!(true)).then_some(())
    });
    let s = inspect(&d, &srv);
    assert_eq!(
        s["NetworkSettings"]["Networks"][&net]["IPAddress"], "10.241.0.10",
        "{s}"
    );
    let out = d.docker(&[
        "run",
        "--rm",
        "--net",
        &net,
        "host",
        "sh",
        "-c",
        "ip -4 -o addr show eth0 && ip route && /usr/bin/python3 -c \"$0\"",
        &client("10.241.0.10", "fish"),
    ]);
    let text = out.ok().to_owned();
    assert!(text.contains("eth0"), "{}", out.describe());
    assert!(text.contains("10.241.0.2/24"), "{}", out.describe());
    assert!(
        text.contains("default via 10.241.0.1"),
        "{}",
        out.describe()
    );
    poll_until(
        "the server got the message",
        Duration::from_secs(20),
        || {
            d.docker(&["logs", &srv])
                .stdout
                .contains("got fish")
                .then_some(())
        },
    );
    // Per endpoint: RequestAddress → CreateEndpoint → Join, then Leave → DeleteEndpoint →
    // ReleaseAddress once the client exited.
    poll_until(
        "the client's endpoint released",
        Duration::from_secs(20),
        || {
            np.call_names()
                .contains(&"IpamDriver.ReleaseAddress".to_owned())
                .then_some(())
        },
    );
    let calls = np.calls();
    let joins: Vec<_> = calls
        .iter()
        .filter(|(_, c, _)| c == "NetworkDriver.Join")
        .collect();
    assert_eq!(joins.len(), 2);
    assert!(
        joins[0].2["SandboxKey"]
            .as_str()
            .unwrap()
            .contains("/netns/"),
        "{:?}",
        joins[0]
    );
    let ce: Vec<_> = calls
        .iter()
        .filter(|(_, c, _)| c == "NetworkDriver.CreateEndpoint")
        .map(|(_, _, b)| b["Interface"]["Address"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ce, ["10.241.0.10/24", "10.241.0.2/24"]);
    let names = np.call_names();
    let after_join = &names[names
        .iter()
        .rposition(|c| c == "NetworkDriver.Join")
        .unwrap()..];
    let leave = after_join
        .iter()
        .position(|c| c == "NetworkDriver.Leave")
        .unwrap();
    let del = after_join
        .iter()
        .position(|c| c == "NetworkDriver.DeleteEndpoint")
        .unwrap();
    let rel = after_join
        .iter()
        .position(|c| c == "IpamDriver.ReleaseAddress")
        .unwrap();
    assert!(leave < del && del < rel, "{after_join:?}");

    // Unload is refused while the network uses the plugin; rm is refused while attached.
    let unload = d.raw("DELETE", "/berth/plugins/netplug", None, b"");
    assert_eq!(unload.status, 409, "{}", unload.text());
    assert!(unload.text().contains(&net), "{}", unload.text());
    d.docker(&["rm", "-f", &srv]).ok();
    d.docker(&["network", "rm", &net]).ok();
    let names = np.call_names();
    assert!(
        names.contains(&"IpamDriver.ReleasePool".to_owned()),
        "{names:?}"
    );
    assert_eq!(
        names.last().unwrap(),
        "NetworkDriver.DeleteNetwork",
        "{names:?}"
    );
    assert!(
        leftover_links(&log).is_empty(),
        "left on the host: {:?}",
        leftover_links(&log)
    );
    assert_eq!(netns_entries(&d), 0);
    d.berth(&["plugin", "unload", "netplug"]).ok();
}

/// Needs root. A plugin failing `Join` (after it made its veth pair) aborts the container start
/// with the plugin's name, in both error styles (500 + Err, 200 + Err); the endpoint is deleted
/// and nothing is left: no veth, no netns, no address lease (the next start gets the same `--ip`).
#[test]
fn join_failure_leaves_nothing_behind() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    for (i, style) in ["500", "200"].iter().enumerate() {
        let name = format!("badjoin{style}");
        let _np = NetPlug::load(&d, &name, &log, &["--fail", &format!("Join={style}")]);
        let net = unique_name("joinfail");
        d.docker(&[
            "network",
            "create",
            "-d",
            &name,
            "--subnet",
            &format!("10.242.{i}.0/24"),
            &net,
        ])
        .ok();
        let before = other_links();
        let ip = format!("10.242.{i}.9");
        for _ in 0..2 {
            let out = d.docker(&["run", "--net", &net, "--ip", &ip, "host", "true"]);
            assert_ne!(out.code, Some(0), "{}", out.describe());
            assert!(out.stderr.contains(&name), "{}", out.describe());
            assert!(out.stderr.contains("refuses Join"), "{}", out.describe());
            assert_eq!(other_links(), before, "interfaces leaked");
            assert!(
                leftover_links(&log).iter().all(|l| l.starts_with("np")),
                "{:?}",
                leftover_links(&log)
            );
            assert_eq!(netns_entries(&d), 0, "netns leaked");
            for id in d.docker(&["ps", "-a", "-q"]).ok().lines() {
                d.docker(&["rm", "-f", id]).ok();
            }
        }
        let names: Vec<String> = read_calls(&log)
            .into_iter()
            .filter(|(p, _, _)| *p == name)
            .map(|(_, c, _)| c)
            .collect();
        let join = names
            .iter()
            .position(|c| c == "NetworkDriver.Join")
            .unwrap();
        assert!(
            names[join..].contains(&"NetworkDriver.DeleteEndpoint".to_owned()),
            "{names:?}"
        );
        for id in d.docker(&["ps", "-a", "-q"]).ok().lines() {
            d.docker(&["rm", "-f", id]).ok();
        }
        d.docker(&["network", "rm", &net]).ok();
    }
    assert!(
        leftover_links(&log).is_empty(),
        "{:?}",
        leftover_links(&log)
    );
}

/// Needs root. Create-time failures: IPAM `Error` (200) on RequestPool, `CreateNetwork` failing
/// with 200 + Err (the pool is released again), and an unknown driver → 404.
#[test]
fn create_failures_name_the_plugin() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let np = NetPlug::load(
        &d,
        "picky",
        &log,
        &["--fail", "RequestPool=200", "--fail", "CreateNetwork=200"],
    );
    let out = d.docker(&["network", "create", "--ipam-driver", "picky", "n1"]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("picky refuses RequestPool"),
        "{}",
        out.describe()
    );
    let out = d.docker(&[
        "network",
        "create",
        "-d",
        "picky",
        "--subnet",
        "10.244.0.0/24",
        "n2",
    ]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("picky refuses CreateNetwork"),
        "{}",
        out.describe()
    );
    assert!(d.docker(&["network", "inspect", "n2"]).code == Some(1));
    let names = np.call_names();
    assert!(names.contains(&"NetworkDriver.CreateNetwork".to_owned()));
    let r = d.raw_json(
        "POST",
        "/networks/create",
        &json!({"Name": "n3", "Driver": "nosuchdriver"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("nosuchdriver"));
    assert!(
        leftover_links(&log).is_empty(),
        "{:?}",
        leftover_links(&log)
    );
}

/// Needs root. MVP v2 network messages go through plugins in load order and chain: `create`
/// (each plugin appends its name to the `chain` option, the next sees it), `connect` in load
/// order, `disconnect` and `delete` in reverse; a plugin failing `connect` aborts the start
/// naming it, and the plugins before it get the compensating `disconnect`.
#[test]
fn mvp_network_messages_chain_in_load_order() {
    let d = Daemon::start();
    let log = d.dir().join("calls.log");
    let np = NetPlug::load(&d, "alpha", &log, &["--mvp"]);
    let _b = NetPlug::load(&d, "beta", &log, &["--mvp"]);
    let net = unique_name("mvpnet");
    d.docker(&["network", "create", "--subnet", "10.245.0.0/24", &net])
        .ok();
    let n = net_inspect(&d, &net);
    assert_eq!(n["Options"]["chain"], "alpha,beta", "{n}");
    let mvp: Vec<(String, String, Value)> = np
        .calls()
        .into_iter()
        .filter(|(_, c, _)| c.starts_with("mvp."))
        .collect();
    assert_eq!(mvp[0].0, "alpha");
    assert_eq!(mvp[1].0, "beta");
    assert_eq!(
        mvp[1].2["Options"]["chain"], "alpha",
        "beta sees alpha's output"
    );
    assert_eq!(mvp[1].2["Subnet"], "10.245.0.0/24");

    d.docker(&[
        "run",
        "--rm",
        "--net",
        &net,
        "--ip",
        "10.245.0.7",
        "host",
        "true",
    ])
    .ok();
    poll_until("disconnects sent", Duration::from_secs(20), || {
        (np.calls()
            .iter()
            .filter(|(_, c, _)| c == "mvp.disconnect")
            .count()
            == 2)
            .then_some(())
    });
    let seq: Vec<String> = np
        .calls()
        .into_iter()
        .filter(|(_, c, _)| c == "mvp.connect" || c == "mvp.disconnect")
        .map(|(p, c, b)| {
            assert_eq!(b["IPAddress"], "10.245.0.7/24");
            assert!(b["SandboxKey"].as_str().unwrap().contains("/netns/"));
            format!("{p} {c}")
        })
        .collect();
    assert_eq!(
        seq,
        [
            "alpha mvp.connect",
            "beta mvp.connect",
            "beta mvp.disconnect",
            "alpha mvp.disconnect"
        ]
    );

    // A third plugin failing connect: the start aborts naming it; alpha and beta are compensated.
    let _c = NetPlug::load(&d, "gamma", &log, &["--mvp", "--fail", "mvp.connect=500"]);
    std::fs::write(&log, "").unwrap();
    let out = d.docker(&["run", "--net", &net, "host", "true"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("gamma"), "{}", out.describe());
    let seq: Vec<String> = np
        .calls()
        .into_iter()
        .filter(|(_, c, _)| c.starts_with("mvp."))
        .map(|(p, c, _)| format!("{p} {c}"))
        .collect();
    assert_eq!(
        seq,
        [
            "alpha mvp.connect",
            "beta mvp.connect",
            "gamma mvp.connect",
            "beta mvp.disconnect",
            "alpha mvp.disconnect"
        ]
    );
    for id in d.docker(&["ps", "-a", "-q"]).ok().lines() {
        d.docker(&["rm", "-f", id]).ok();
    }
    std::fs::write(&log, "").unwrap();
    d.docker(&["network", "rm", &net]).ok();
    let seq: Vec<String> = np
        .calls()
        .into_iter()
        .filter(|(_, c, _)| c.starts_with("mvp."))
        .map(|(p, c, _)| format!("{p} {c}"))
        .collect();
    assert_eq!(
        seq,
        ["gamma mvp.delete", "beta mvp.delete", "alpha mvp.delete"]
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
    let id_of = |net: &str| net_inspect(&d, net)["Id"].as_str().unwrap().to_owned();
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
    assert_eq!(
        inspect(&d, &cid)["NetworkSettings"]["Networks"][&kept]["EndpointID"],
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
