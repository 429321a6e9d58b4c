//! Crash recovery: `kill -9` the daemon with containers running, start it again on the same
//! root, and check that every record survived, restart policies were honoured, and no mount
//! under the root leaked into the host's mount table.
//!
//! Needs root (the daemon makes namespaces and mounts); CI runs it as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_tests::{Daemon, mounts_under, poll_until};
use serde_json::json;

fn create(d: &Daemon, name: &str, policy: &str) -> String {
    let r = d.raw_json(
        "POST",
        &format!("/v1.50/containers/create?name={name}"),
        &json!({
            "Image": "bb",
            "Cmd": ["sleep", "1000"],
            "HostConfig": {"RestartPolicy": {"Name": policy, "MaximumRetryCount": 0}},
        }),
    );
    assert_eq!(r.status, 201, "create {name}: {}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    let r = d.raw("POST", &format!("/v1.50/containers/{id}/start"), None, b"");
    assert_eq!(r.status, 204, "start {name}: {}", r.text());
    id
}

/// True when `pid` exists and is not a zombie.
fn process_alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn inspect(d: &Daemon, name: &str) -> serde_json::Value {
    let r = d.raw("GET", &format!("/v1.50/containers/{name}/json"), None, b"");
    assert_eq!(r.status, 200, "inspect {name}: {}", r.text());
    r.json()
}

/// Needs root. Kill -9 the daemon with a `no` and an `always` container running and a volume
/// created; after a restart on the same root the records are all there, the `no` one is exited,
/// the `always` one runs again, and no mount under the root is left in /proc/self/mountinfo.
#[test]
fn kill9_and_restart_recovers_state() {
    let mut d = Daemon::start();
    d.import_busybox("bb:latest");
    let once = create(&d, "once", "no");
    let always = create(&d, "always", "always");
    let r = d.raw_json(
        "POST",
        "/v1.50/volumes/create",
        &json!({"Name": "keep", "Driver": "local"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    for name in ["once", "always"] {
        assert_eq!(
            inspect(&d, name)["State"]["Running"],
            true,
            "{name} runs before the crash"
        );
    }
    let old_pid = inspect(&d, "always")["State"]["Pid"].as_i64().unwrap_or(0);
    let once_pid = inspect(&d, "once")["State"]["Pid"].as_i64().unwrap_or(0);
    assert!(once_pid > 0, "running container without State.Pid");

    d.kill9();
    d.restart();

    // Records survived.
    let list = d
        .raw("GET", "/v1.50/containers/json?all=1", None, b"")
        .json();
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["Names"].as_array().cloned().unwrap_or_default())
        .map(|n| n.as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["/always", "/once"], "{list}");
    let vol = d.raw("GET", "/v1.50/volumes/keep", None, b"");
    assert_eq!(vol.status, 200, "volume lost: {}", vol.text());
    let img = d.raw("GET", "/v1.50/images/bb/json", None, b"");
    assert_eq!(img.status, 200, "image lost: {}", img.text());

    // `no`: not running any more, marked exited.
    let c = poll_until(
        "`once` to be marked exited",
        Duration::from_secs(15),
        || {
            let c = inspect(&d, &once);
            (c["State"]["Running"] == false).then_some(c)
        },
    );
    assert_eq!(c["State"]["Status"], "exited", "{c}");
    // Marked exited means really gone: the old process must not live on unsupervised.
    poll_until(
        "the `once` process from before the crash to be gone",
        Duration::from_secs(15),
        || (!process_alive(once_pid)).then_some(()),
    );
    // `always`: running again (a new process, or the surviving one re-adopted).
    let c = poll_until("`always` to run again", Duration::from_secs(15), || {
        let c = inspect(&d, &always);
        (c["State"]["Running"] == true).then_some(c)
    });
    let pid = c["State"]["Pid"].as_i64().unwrap_or(0);
    assert!(pid > 0, "running container without a pid: {c}");
    assert!(
        process_alive(pid),
        "State.Pid {pid} (was {old_pid}) is not a live process"
    );

    // The restarted daemon still works end to end.
    let r = d.raw(
        "POST",
        &format!("/v1.50/containers/{once}/start"),
        None,
        b"",
    );
    assert_eq!(r.status, 204, "restart of `once`: {}", r.text());
    for id in [&once, &always] {
        let r = d.raw(
            "DELETE",
            &format!("/v1.50/containers/{id}?force=1"),
            None,
            b"",
        );
        assert_eq!(r.status, 204, "rm -f: {}", r.text());
    }
    let r = d.raw("DELETE", "/v1.50/volumes/keep", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());

    // No container mount leaked into the host namespace.
    let leaked = mounts_under(&d.root());
    assert!(leaked.is_empty(), "mounts left under the root: {leaked:?}");
}
