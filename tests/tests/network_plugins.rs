//! Network plugins end to end: the `netplug` example (Docker's remote `NetworkDriver` +
//! `IpamDriver`, its own bridge and veth pairs) driven through a real `berth daemon` by the real
//! `docker` CLI, and the project's MVP network messages chained through plugins in load order.
//! The plugins run as host processes on sockets (they need CAP_NET_ADMIN in the host's network
//! namespace) and are loaded with `berth plugin load --socket`.
//!
//! Every test here needs root (network namespaces, bridges, veth pairs); CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_tests::netplug::{NetPlug, host_links, leftover_links, read_calls};
use berth_tests::{Daemon, poll_until, unique_name};
use serde_json::{Value, json};

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
