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
