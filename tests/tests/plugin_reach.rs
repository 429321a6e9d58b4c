//! A NetworkDriver's reach: the `SrcName` its Join answers must be an interface made for that
//! endpoint. A link that existed before the endpoint was created (the host's `eth0`, any other
//! host link) is refused: the join fails naming the plugin, and the link is never moved.
//!
//! The "host link" here is one end of a veth pair the test creates and deletes itself; no real
//! host interface is ever offered or touched.
//!
//! Needs root (the daemon makes namespaces; the test makes a dummy link); CI runs it as root.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use berth_tests::{Daemon, example_plugin, poll_until, spawn_plugin, unique_name};

/// A veth pair in the host namespace made by the test (`Dummy.0` is the end offered as
/// `SrcName`), deleted on drop.
struct Dummy(String);

impl Dummy {
    fn create() -> Dummy {
        let n = std::process::id() % 100_000;
        let (name, peer) = (format!("btrap{n}"), format!("btrapp{n}"));
        let ok = Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
            .status()
            .unwrap()
            .success();
        assert!(ok, "creating veth pair {name}/{peer}");
        Dummy(name)
    }

    /// Its ifindex in the host namespace, if it is still here.
    fn index(&self) -> Option<String> {
        std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", self.0))
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[test]
fn join_answering_a_preexisting_link_is_refused_and_nothing_moves() {
    let d = Daemon::start();
    let dummy = Dummy::create();
    let index = dummy.index().unwrap();
    let sock = d.dir().join("reach.sock");
    let _np = spawn_plugin(
        &example_plugin("netplug"),
        &[
            "--socket",
            sock.to_str().unwrap(),
            "--name",
            "reach",
            "--src-name",
            &dummy.0,
        ],
    );
    poll_until("the netplug socket", Duration::from_secs(10), || {
        sock.exists().then_some(())
    });
    d.berth(&[
        "plugin",
        "load",
        "--name",
        "reach",
        "--socket",
        sock.to_str().unwrap(),
    ])
    .ok();
    let net = unique_name("reach");
    d.docker(&[
        "network",
        "create",
        "-d",
        "reach",
        "--subnet",
        "10.243.7.0/24",
        &net,
    ])
    .ok();
    let out = d.docker(&["run", "--net", &net, "host", "true"]);
    assert_ne!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stderr.contains("(driver reach)")
            && out
                .stderr
                .contains(&format!("Join answered SrcName \"{}\"", dummy.0)),
        "the error names the plugin and the SrcName: {}",
        out.describe()
    );
    assert!(
        out.stderr
            .contains("existed before this endpoint was created"),
        "{}",
        out.describe()
    );
    assert_eq!(
        dummy.index(),
        Some(index),
        "the host link stayed in the host namespace, untouched"
    );
    for id in d.docker(&["ps", "-a", "-q"]).ok().lines() {
        d.docker(&["rm", "-f", id]).ok();
    }
    d.docker(&["network", "rm", &net]).ok();
}

/// The network namespace of the plugin container `name` (by its pid), and the host's.
fn plugin_netns(d: &Daemon, name: &str) -> (String, String) {
    let st = d
        .raw("GET", &format!("/berth/plugins/{name}"), None, b"")
        .json();
    let id = st["ContainerID"].as_str().unwrap().to_owned();
    let c = d
        .raw("GET", &format!("/containers/{id}/json"), None, b"")
        .json();
    let pid = c["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0, "{c}");
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    (ns.display().to_string(), host.display().to_string())
}

#[test]
fn container_plugins_get_the_host_network_only_with_network_host() {
    let d = Daemon::start();
    let bin = example_plugin("test-plugin").display().to_string();
    for (name, network) in [("isolated", None), ("hostnet", Some("host"))] {
        let mut args = vec!["plugin", "load", "--name", name];
        if let Some(n) = network {
            args.extend(["--network", n]);
        }
        args.extend([
            "host",
            bin.as_str(),
            "--socket",
            "/var/run/docker/plugin.sock",
            "--name",
            name,
        ]);
        d.berth(&args).ok();
        let st = d
            .raw("GET", &format!("/berth/plugins/{name}"), None, b"")
            .json();
        assert_eq!(st["Network"], network.unwrap_or("none"), "{st}");
        let (ns, host) = plugin_netns(&d, name);
        if network.is_some() {
            assert_eq!(
                ns, host,
                "{name}: --network host shares the host's namespace"
            );
        } else {
            assert_ne!(
                ns, host,
                "{name}: a plugin gets its own namespace by default"
            );
        }
        let shown = d.berth(&["plugin", "status", name]);
        assert!(
            shown
                .ok()
                .contains(&format!("Network:        {}", network.unwrap_or("none"))),
            "{}",
            shown.describe()
        );
    }
    // Anything but host/none is refused at load.
    let out = d.berth(&[
        "plugin",
        "load",
        "--name",
        "odd",
        "--network",
        "bridge",
        "host",
        &bin,
    ]);
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("invalid plugin network"),
        "{}",
        out.describe()
    );
}
