//! Boot order after a crash (`docs/semantics.md`, boot order): a restart-policy container whose
//! start calls a plugin is started again only once that plugin's new container shook hands,
//! never on the word of the plugin's previous incarnation.
//!
//! Every test here needs root (the daemon makes namespaces and mounts); CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use berth_tests::{Daemon, example_plugin, poll_until};
use serde_json::json;

/// Lines the plugin logged for extension calls (its volume hooks) so far.
fn hook_calls(log: &std::path::Path) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.ends_with(" shutdown"))
        .count()
}

/// Needs root. The daemon dies by `kill -9` while an `always` container runs with a bind the
/// `test-plugin` volume plugin rewrites. At the next boot the plugin's previous incarnation is
/// still there for a moment: a stand-in on its socket answers one handshake and then dies,
/// leaving the socket file (as a process killed just after answering does), while the plugin's
/// new container does not listen until the test opens its gate. The boot must not take the
/// stand-in's answer for the plugin being up: it waits for the new container's handshake, and
/// only then starts the `always` container, whose start calls the new plugin's hook. Before the
/// fix the stand-in answered, the plugin was Active, the boot-time start's hook got `Connection
/// refused`, and the container stayed exited.
#[test]
fn a_boot_restart_waits_for_the_new_plugin_container_not_its_previous_incarnation() {
    let mut d = Daemon::start();
    let gate = d.dir().join("gate");
    fs::write(&gate, "").unwrap();
    let gate_arg = gate.display().to_string();
    d.load_test_plugin(
        "slow",
        &[],
        &[
            "--wait-for",
            &gate_arg,
            "--log",
            "/var/run/docker/calls.log",
            "--answer",
            "v2",
        ],
    )
    .expect_code(0);
    let st = d.raw("GET", "/berth/plugins/slow", None, b"").json();
    let sock = PathBuf::from(st["Socket"].as_str().unwrap());
    // The container sees its socket dir at /var/run/docker (the rest of the host is read-only).
    let log = sock.parent().unwrap().join("calls.log");

    let src = d.dir().join("data");
    fs::create_dir_all(&src).unwrap();
    let body = json!({
        "Image": "host",
        "Cmd": ["sleep", "100000"],
        "HostConfig": {
            "RestartPolicy": {"Name": "always"},
            "Binds": [format!("{}:/d", src.display())],
        },
    });
    let r = d.raw_json("POST", "/containers/create?name=keeper", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw("POST", "/containers/keeper/start", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let before = hook_calls(&log);
    assert!(before > 0, "the start called the plugin's volume hook");

    d.kill9();
    // The old plugin container goes with the daemon (its shim kills it); wait until its socket
    // refuses, then put the stand-in there and close the new container's gate.
    poll_until(
        "the old plugin to stop listening",
        Duration::from_secs(20),
        || UnixStream::connect(&sock).is_err().then_some(()),
    );
    fs::remove_file(&gate).unwrap();
    let mut stand_in = Command::new(example_plugin("test-plugin"))
        .args(["--socket", sock.to_str().unwrap(), "--name", "slow"])
        .args(["--answer", "v2", "--exit-after-handshake"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    poll_until("the stand-in to listen", Duration::from_secs(20), || {
        UnixStream::connect(&sock).is_ok().then_some(())
    });

    // The gate opens once the boot either dropped the stale socket (the new container's
    // handshake is what it waits for) or took the stand-in's answer (the stand-in is gone).
    let opener = {
        let sock = sock.clone();
        let gate = gate.clone();
        thread::spawn(move || {
            let answered = poll_until(
                "the boot to drop the stale socket or shake hands with the stand-in",
                Duration::from_secs(60),
                || {
                    if stand_in.try_wait().unwrap().is_some() {
                        Some(true)
                    } else if !sock.exists() {
                        Some(false)
                    } else {
                        None
                    }
                },
            );
            fs::write(&gate, "").unwrap();
            let _ = stand_in.kill();
            let _ = stand_in.wait();
            answered
        })
    };
    d.restart();
    let stand_in_answered = opener.join().unwrap();
    assert!(
        !stand_in_answered,
        "the boot shook hands with the plugin's previous incarnation\n{}",
        d.log()
    );

    // `/_ping` answers before the plugins are up; the new container shakes hands once its
    // gate is open.
    poll_until(
        "the plugin to be active again",
        Duration::from_secs(30),
        || {
            let st = d.raw("GET", "/berth/plugins/slow", None, b"").json();
            (st["State"] == "active").then_some(())
        },
    );
    poll_until(
        "keeper running again through the new plugin",
        Duration::from_secs(30),
        || {
            let c = d.raw("GET", "/containers/keeper/json", None, b"").json();
            (c["State"]["Running"] == true && hook_calls(&log) > before).then_some(())
        },
    );
    assert!(!d.log().contains("boot-time restart failed"), "{}", d.log());
}
