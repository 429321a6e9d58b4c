//! Driver, IPAM driver and plugin names are validated at the API boundary, before discovery or
//! any filesystem use: a name that is a path (`/tmp/x`) gets 400 and the daemon never dials
//! `/tmp/x.sock`. Each case puts a listener at exactly the socket the name would resolve to and
//! checks that it accepted no connection.
//!
//! Needs root (the daemon makes namespaces and mounts); CI runs it as root.

#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use berth_tests::{Daemon, unique_name};
use serde_json::json;

/// A listener at `/tmp/<unique>.sock`; returns it and the driver name that would resolve to it.
fn trap() -> (UnixListener, String, PathBuf) {
    let base = PathBuf::from("/tmp").join(unique_name("berth-name-trap"));
    let sock = base.with_extension("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    (listener, base.to_str().unwrap().to_owned(), sock)
}

/// Panics if anything connected to the trap.
fn assert_never_dialled(listener: &UnixListener, what: &str) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(_) => panic!("{what}: the daemon dialled the socket named by an invalid driver"),
        Err(e) => panic!("{what}: accept: {e}"),
    }
}

#[test]
fn path_like_driver_and_plugin_names_get_400_without_any_dial() {
    let d = Daemon::start();
    let (listener, name, sock) = trap();

    // The docker CLI, as in the report: `docker volume create -d /tmp/x v`.
    let out = d.docker(&["volume", "create", "-d", &name, "v"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("invalid volume driver name"),
        "{}",
        out.describe()
    );
    assert_never_dialled(&listener, "docker volume create -d");

    let cases = [
        (
            "volume create",
            "/volumes/create",
            json!({"Name": "v", "Driver": name}),
            "invalid volume driver name",
        ),
        (
            "network create",
            "/networks/create",
            json!({"Name": "n", "Driver": name}),
            "invalid network driver name",
        ),
        (
            "network create IPAM",
            "/networks/create",
            json!({"Name": "n", "IPAM": {"Driver": name}}),
            "invalid IPAM driver name",
        ),
        (
            "container create VolumeDriver",
            "/containers/create",
            json!({"Image": "busybox", "HostConfig": {"Binds": ["v:/d"], "VolumeDriver": name}}),
            "invalid volume driver name",
        ),
        (
            "container create mount driver",
            "/containers/create",
            json!({"Image": "busybox", "HostConfig": {"Mounts": [{"Type": "volume",
                "Source": "v", "Target": "/d", "VolumeOptions": {"DriverConfig": {"Name": name}}}]}}),
            "invalid volume driver name",
        ),
        (
            "plugin load --discover",
            "/berth/plugins/load",
            json!({"Discover": name}),
            "invalid plugin name",
        ),
        (
            "plugin load --discover ..",
            "/berth/plugins/load",
            json!({"Discover": "../../tmp/x"}),
            "invalid plugin name",
        ),
    ];
    for (what, path, body, message) in cases {
        let r = d.raw_json("POST", path, &body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(r.message().contains(message), "{what}: {}", r.message());
        assert_never_dialled(&listener, what);
    }
    // Nothing half-made: no volume, no network of those names.
    assert_eq!(d.raw("GET", "/volumes/v", None, b"").status, 404);
    assert_eq!(d.raw("GET", "/networks/n", None, b"").status, 404);
    let _ = std::fs::remove_file(sock);
}
