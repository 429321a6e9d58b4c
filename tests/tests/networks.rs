//! Bridge networks end to end: a real `berth daemon` driven by the real `docker` CLI and raw API
//! requests. Containers use the built-in `host` image and the host's busybox (`nc`, `ip`).
//!
//! Every test here needs root (the daemon creates network namespaces, bridges and veth pairs);
//! CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use berth_tests::{Daemon, poll_until, unique_name};
use serde_json::{Value, json};

/// Names of the host's network interfaces.
fn host_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Of the `new` links, the host ends of veth pairs (`vb…`) enslaved to no bridge: what a leak
/// leaves once its network's bridge is gone. Veths of other tests' live networks (tests run in
/// parallel, other daemons may run on this machine) hang off their own bridges and are ignored.
fn orphan_veths(new: &[&String]) -> Vec<String> {
    new.iter()
        .filter(|l| l.starts_with("vb"))
        .filter(|l| !std::path::Path::new(&format!("/sys/class/net/{l}/master")).exists())
        .map(|l| l.to_string())
        .collect()
}

/// `docker network inspect NAME` as JSON.
fn net_inspect(d: &Daemon, name: &str) -> Value {
    let out = d.docker(&["network", "inspect", name]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    v[0].clone()
}

/// `docker inspect NAME` as JSON.
fn inspect(d: &Daemon, name: &str) -> Value {
    let out = d.docker(&["inspect", name]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    v[0].clone()
}

fn bridge_of(net: &Value) -> String {
    format!("br-{}", &net["Id"].as_str().unwrap()[..12])
}

fn netns_entries(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.root().join("netns"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_running(d: &Daemon, name: &str) {
    poll_until(&format!("{name} running"), Duration::from_secs(20), || {
        (inspect(d, name)["State"]["Running"] == json!(true)).then_some(())
    });
}

/// A client script: send `msg` to `ip:5000`, retrying while the server is not listening yet.
fn send_script(ip: &str, msg: &str) -> String {
    format!(
        "for i in $(busybox seq 1 50); do echo {msg} | busybox nc {ip} 5000 && exit 0; busybox sleep 0.2; done; exit 1"
    )
}

/// Needs root. The docker CLI scenario: `network create --subnet`, two containers on it, one
/// with `--ip`, talking over TCP; inspect shows the addresses; `network rm` is refused while
/// containers are attached and works after; nothing stays on the host.
#[test]
fn two_containers_talk_over_a_bridge_network() {
    let d = Daemon::start();
    let net = unique_name("greatnet");
    let before = host_links();
    let id = d
        .docker(&["network", "create", "--subnet", "10.231.0.0/24", &net])
        .ok()
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "network create prints the id");
    let srv = unique_name("srv");
    d.docker(&[
        "run",
        "-d",
        "--name",
        &srv,
        "--net",
        &net,
        "--ip",
        "10.231.0.10",
        "host",
        "sh",
        "-c",
        // stdin must stay open: at EOF on stdin busybox nc half-closes the connection, and a
        // client that sees that FIN before it sent anything exits without sending.
        "busybox mkfifo /tmp/in && exec busybox nc -l -p 5000 <>/tmp/in",
    ])
    .ok();
    wait_running(&d, &srv);
    let s = inspect(&d, &srv);
    let ep = &s["NetworkSettings"]["Networks"][&net];
    assert_eq!(ep["IPAddress"], "10.231.0.10", "{s}");
    assert_eq!(ep["IPPrefixLen"], 24);
    assert_eq!(ep["Gateway"], "10.231.0.1");
    assert_eq!(ep["NetworkID"], json!(id));
    assert_eq!(ep["MacAddress"].as_str().unwrap().len(), 17, "{ep}");
    assert_eq!(ep["EndpointID"].as_str().unwrap().len(), 64, "{ep}");
    let n = net_inspect(&d, &net);
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.231.0.0/24");
    let cid = s["Id"].as_str().unwrap();
    assert_eq!(n["Containers"][cid]["IPv4Address"], "10.231.0.10/24", "{n}");
    assert!(host_links().contains(&bridge_of(&n)), "bridge exists");

    // The client gets the next dynamic address, sees its eth0, and reaches the server.
    let out = d.docker(&[
        "run",
        "--rm",
        "--net",
        &net,
        "host",
        "sh",
        "-c",
        &format!(
            "busybox ip -4 addr show eth0 && busybox ip route && {}",
            send_script("10.231.0.10", "fish")
        ),
    ]);
    let text = out.ok();
    assert!(text.contains("inet 10.231.0.2/24"), "{}", out.describe());
    assert!(
        text.contains("default via 10.231.0.1"),
        "{}",
        out.describe()
    );
    poll_until("server got the data", Duration::from_secs(20), || {
        d.docker(&["logs", &srv])
            .stdout
            .contains("fish")
            .then_some(())
    });

    // Attached containers block `network rm` (409).
    let rm = d.docker(&["network", "rm", &net]);
    assert_eq!(rm.code, Some(1), "{}", rm.describe());
    assert!(
        rm.stderr.contains("has active endpoints"),
        "{}",
        rm.describe()
    );
    d.docker(&["rm", "-f", &srv]).ok();
    assert_eq!(d.docker(&["network", "rm", &net]).ok().trim(), net);
    assert!(d.docker(&["network", "inspect", &net]).code == Some(1));
    let after = host_links();
    let leaked: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(!after.contains(&bridge_of(&n)), "the bridge was left");
    let orphans = orphan_veths(&leaked);
    assert!(orphans.is_empty(), "interfaces left: {orphans:?}");
    assert!(netns_entries(&d).is_empty(), "{:?}", netns_entries(&d));
}

/// Needs root. `NetworkMode: default` is the `bridge` network (172.17.0.0/16): the container has
/// its own namespace with loopback and eth0; `network ls` shows bridge, host and none.
#[test]
fn default_network_is_bridge() {
    let d = Daemon::start();
    let ls = d.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    let text = ls.ok();
    for want in ["bridge bridge", "host host", "none null"] {
        assert!(text.contains(want), "{}", ls.describe());
    }
    let out = d.docker(&["run", "--rm", "host", "busybox", "ip", "-4", "addr"]);
    let text = out.ok();
    assert!(text.contains("inet 127.0.0.1/8"), "{}", out.describe());
    assert!(text.contains("inet 172.17.0.2/16"), "{}", out.describe());
    assert!(text.contains("eth0"), "{}", out.describe());
    // host networking still shares the host's interfaces.
    let host = d.docker(&[
        "run", "--rm", "--net", "host", "host", "busybox", "ip", "link",
    ]);
    assert!(
        host.ok().lines().count() > 2 || !host.stdout.contains("eth0@"),
        "{}",
        host.describe()
    );
    assert_eq!(d.docker(&["network", "rm", "bridge"]).code, Some(1));
}

/// Needs root. Bad input answers with Docker's statuses: overlapping subnet 409 naming the other
/// network, `--ip` outside the subnet 400, `--ip` in use 409, unknown driver 404, duplicate name
/// 409; a failed create leaves no container behind.
#[test]
fn bad_network_input() {
    let d = Daemon::start();
    let net = unique_name("n1");
    let create = |name: &str, subnet: &str, driver: &str| {
        d.raw_json(
            "POST",
            "/v1.50/networks/create",
            &json!({"Name": name, "Driver": driver,
                    "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet, "IPRange": null, "Gateway": null, "AuxiliaryAddresses": null}]}}),
        )
    };
    assert_eq!(create(&net, "10.232.0.0/16", "bridge").status, 201);
    let dup = create(&net, "10.233.0.0/16", "bridge");
    assert_eq!(dup.status, 409);
    assert!(
        dup.message().contains("already exists"),
        "{}",
        dup.message()
    );
    let overlap = create(&unique_name("n2"), "10.232.7.0/24", "bridge");
    assert_eq!(overlap.status, 409);
    assert!(overlap.message().contains(&net), "{}", overlap.message());
    let weave = create(&unique_name("n3"), "10.234.0.0/16", "weave");
    assert_eq!(weave.status, 404, "{}", weave.text());
    let bad = create(&unique_name("n4"), "10.235.0.0/99", "bridge");
    assert_eq!(bad.status, 400, "{}", bad.text());

    let run = |name: &str, ip: &str| {
        d.raw_json(
            "POST",
            &format!("/v1.50/containers/create?name={name}"),
            &json!({"Image": "host", "Cmd": ["busybox", "sleep", "30"],
                    "HostConfig": {"NetworkMode": net},
                    "NetworkingConfig": {"EndpointsConfig": {net.clone(): {"IPAMConfig": {"IPv4Address": ip}}}}}),
        )
    };
    let outside = run(&unique_name("c"), "10.9.9.9");
    assert_eq!(outside.status, 400, "{}", outside.text());
    assert!(
        outside.message().contains("10.9.9.9"),
        "{}",
        outside.message()
    );
    assert_eq!(run(&unique_name("c"), "10.232.0.1").status, 400, "gateway");
    let c1 = unique_name("c");
    assert_eq!(run(&c1, "10.232.0.5").status, 201);
    let taken = run(&unique_name("c"), "10.232.0.5");
    assert_eq!(taken.status, 409, "{}", taken.text());
    // The docker CLI shows the message and exits 125.
    let cli = d.docker(&["run", "--net", &net, "--ip", "10.1.1.1", "host", "true"]);
    assert_eq!(cli.code, Some(125), "{}", cli.describe());
    assert!(cli.stderr.contains("10.1.1.1"), "{}", cli.describe());
    let ps = d.docker(&["ps", "-a", "-q"]);
    assert_eq!(
        ps.ok().lines().count(),
        1,
        "only c1 exists: {}",
        ps.describe()
    );
    // Removing with a member: 409 with Docker's text.
    let rm = d.raw("DELETE", &format!("/v1.50/networks/{net}"), None, b"");
    assert_eq!(rm.status, 409);
    assert!(
        rm.message().contains("has active endpoints"),
        "{}",
        rm.message()
    );
}

/// Needs root. A start that fails after the network was wired (missing executable) leaves no
/// interface, namespace or lease behind: the same `--ip` works for the next container.
#[test]
fn failed_start_leaves_no_interface() {
    let d = Daemon::start();
    let net = unique_name("failnet");
    d.docker(&["network", "create", "--subnet", "10.236.0.0/24", &net])
        .ok();
    let n = net_inspect(&d, &net);
    let before = host_links();
    let out = d.docker(&[
        "run",
        "--net",
        &net,
        "--ip",
        "10.236.0.9",
        "host",
        "/nonexistent/binary",
    ]);
    assert_ne!(out.code, Some(0), "{}", out.describe());
    let after = host_links();
    let new: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    let orphans = orphan_veths(&new);
    assert!(orphans.is_empty(), "interfaces left: {orphans:?}");
    assert!(!after.contains(&bridge_of(&n)));
    assert!(netns_entries(&d).is_empty(), "{:?}", netns_entries(&d));
    // Remove the failed container; the address is free again.
    for id in d.docker(&["ps", "-a", "-q"]).ok().lines() {
        d.docker(&["rm", "-f", id]).ok();
    }
    let ok = d.docker(&[
        "run",
        "--rm",
        "--net",
        &net,
        "--ip",
        "10.236.0.9",
        "host",
        "busybox",
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(ok.ok().contains("10.236.0.9/24"), "{}", ok.describe());
}

/// Needs root. `network connect --ip` wires a second interface into a running container and
/// `disconnect` removes it; inspect follows.
#[test]
fn connect_and_disconnect_a_running_container() {
    let d = Daemon::start();
    let (a, b) = (unique_name("neta"), unique_name("netb"));
    d.docker(&["network", "create", "--subnet", "10.237.0.0/24", &a])
        .ok();
    d.docker(&["network", "create", "--subnet", "10.238.0.0/24", &b])
        .ok();
    let c = unique_name("c");
    d.docker(&[
        "run", "-d", "--name", &c, "--net", &a, "host", "busybox", "sleep", "60",
    ])
    .ok();
    wait_running(&d, &c);
    d.docker(&["network", "connect", "--ip", "10.238.0.7", &b, &c])
        .ok();
    let s = inspect(&d, &c);
    assert_eq!(
        s["NetworkSettings"]["Networks"][&a]["IPAddress"],
        "10.237.0.2"
    );
    assert_eq!(
        s["NetworkSettings"]["Networks"][&b]["IPAddress"],
        "10.238.0.7"
    );
    let cid = s["Id"].as_str().unwrap().to_string();
    let ns = d.root().join("netns").join(&cid);
    let addrs = in_netns(&ns, &["busybox", "ip", "-4", "addr"]);
    assert!(
        addrs.contains("10.238.0.7/24") && addrs.contains("eth1"),
        "{addrs}"
    );
    let again = d.docker(&["network", "connect", &b, &c]);
    assert_eq!(again.code, Some(1), "{}", again.describe());
    d.docker(&["network", "disconnect", &b, &c]).ok();
    let s = inspect(&d, &c);
    assert!(s["NetworkSettings"]["Networks"].get(&b).is_none(), "{s}");
    let addrs = in_netns(&ns, &["busybox", "ip", "-4", "addr"]);
    assert!(!addrs.contains("10.238.0.7"), "{addrs}");
    assert!(!host_links().contains(&bridge_of(&net_inspect(&d, &b))));
    d.docker(&["network", "rm", &b]).ok();
    d.docker(&["rm", "-f", &c]).ok();
}

/// Runs a command in the network namespace bound at `ns` (the host's `nsenter`).
fn in_netns(ns: &Path, argv: &[&str]) -> String {
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.display())).args(argv);
    let out = berth_tests::run_command(cmd, None, Duration::from_secs(20));
    out.ok().to_string()
}

/// Needs root. Networks and memberships survive a daemon restart, and a restarted container gets
/// its endpoint (same `--ip`) again.
#[test]
fn daemon_restart_keeps_networks_and_reconnects() {
    let mut d = Daemon::start();
    let net = unique_name("keepnet");
    let id = d
        .docker(&["network", "create", "--subnet", "10.239.0.0/24", &net])
        .ok()
        .trim()
        .to_string();
    let c = unique_name("c");
    d.docker(&[
        "run",
        "-d",
        "--name",
        &c,
        "--restart",
        "always",
        "--net",
        &net,
        "--ip",
        "10.239.0.33",
        "host",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    wait_running(&d, &c);
    d.stop(Duration::from_secs(20));
    d.restart();
    assert_eq!(net_inspect(&d, &net)["Id"], json!(id));
    wait_running(&d, &c);
    let ep = poll_until("endpoint again", Duration::from_secs(20), || {
        let s = inspect(&d, &c);
        let ep = s["NetworkSettings"]["Networks"][&net].clone();
        (ep["IPAddress"] == "10.239.0.33").then_some(ep)
    });
    assert_eq!(ep["NetworkID"], json!(id));
    let n = net_inspect(&d, &net);
    assert_eq!(n["Containers"].as_object().unwrap().len(), 1, "{n}");
    d.docker(&["rm", "-f", &c]).ok();
    d.docker(&["network", "rm", &net]).ok();
}

/// Needs root. A `kill -9` of the daemon leaves a network's bridge and veth pairs behind; the next
/// daemon removes them at boot, without waiting for the network to be used again.
#[test]
fn bridges_left_by_a_killed_daemon_are_swept_at_boot() {
    let mut d = Daemon::start();
    let net = unique_name("sweepnet");
    d.docker(&["network", "create", "--subnet", "10.238.0.0/24", &net])
        .ok();
    let c = unique_name("c");
    d.docker(&[
        "run", "-d", "--name", &c, "--net", &net, "host", "busybox", "sleep", "600",
    ])
    .ok();
    wait_running(&d, &c);
    let bridge = bridge_of(&net_inspect(&d, &net));
    let ep = inspect(&d, &c)["NetworkSettings"]["Networks"][&net]["EndpointID"]
        .as_str()
        .unwrap()
        .to_owned();
    let veth = format!("vb{}", &ep[..10]);
    assert!(
        host_links().contains(&bridge),
        "bridge {bridge} while running"
    );
    assert!(host_links().contains(&veth), "veth {veth} while running");

    d.kill9();
    d.restart();
    let links = host_links();
    assert!(!links.contains(&veth), "stale veth {veth} swept: {links:?}");
    assert!(
        !links.contains(&bridge),
        "idle bridge {bridge} swept: {links:?}"
    );
    assert_eq!(
        net_inspect(&d, &net)["Name"],
        json!(net),
        "the network itself stays"
    );
    d.docker(&["rm", "-f", &c]).ok();
    d.docker(&["network", "rm", &net]).ok();
}
