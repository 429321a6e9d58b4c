//! `docker cp` to and from containers that are not running (created, exited), through the real
//! docker CLI: the daemon mounts the container's root (overlay, volumes) for the copy in a
//! private mount namespace, so files land where the container sees them when it starts, files in
//! its named volumes are copied too, and no mount is left in the daemon's namespace. Also the
//! anonymous volumes (`-v /path`, `Config.Volumes`) docker-py's archive tests copy into.
//!
//! Needs root (the daemon makes namespaces and mounts), the `docker` CLI and Debian's
//! `busybox-static`; CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::Duration;

use berth_tests::{Daemon, poll_until};

fn daemon_with_bb() -> Daemon {
    let d = Daemon::start();
    d.import_busybox("bb");
    d
}

/// The daemon's mount table lines that name the container (its overlay would be mounted on a
/// directory named by its id).
fn mounts_of(d: &Daemon, id: &str) -> Vec<String> {
    let pid = d.pid().unwrap();
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(id))
        .map(str::to_owned)
        .collect()
}

/// Needs root. `docker cp` into a created container, onto its image's files and into its named
/// volume (whose mount point the image does not have); the container's process reads both when
/// it starts. No mount of the container is left in the daemon's namespace, after a copy that
/// succeeded or one that failed.
#[test]
fn cp_into_a_created_container() {
    let d = daemon_with_bb();
    let id = d
        .docker(&[
            "create",
            "--name",
            "c1",
            "-v",
            "cpvol:/data",
            "bb",
            "sh",
            "-c",
            "echo got:$(cat /etc/greeting):$(cat /data/v.txt)",
        ])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "container id {id:?}");
    let host = d.dir().join("cp");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("greeting"), "hello").unwrap();
    fs::write(host.join("v.txt"), "in-volume").unwrap();
    d.docker(&["cp", host.join("greeting").to_str().unwrap(), "c1:/etc/"])
        .ok();
    d.docker(&["cp", host.join("v.txt").to_str().unwrap(), "c1:/data/"])
        .ok();
    // A copy that fails (no such directory) leaves nothing mounted either.
    let failed = d.docker(&[
        "cp",
        host.join("v.txt").to_str().unwrap(),
        "c1:/no/such/dir/",
    ]);
    assert!(!failed.success(), "{}", failed.describe());
    assert_eq!(mounts_of(&d, &id), Vec::<String>::new());
    let head = d.raw(
        "HEAD",
        "/containers/c1/archive?path=/etc/greeting",
        None,
        b"",
    );
    assert_eq!(head.status, 200, "{}", head.text());

    d.docker(&["start", "c1"]).ok();
    poll_until("the container ran", Duration::from_secs(20), || {
        d.docker(&["logs", "c1"])
            .stdout
            .contains("got:")
            .then_some(())
    });
    poll_until("the container exited", Duration::from_secs(20), || {
        (d.docker(&["inspect", "-f", "{{.State.Status}}", "c1"])
            .ok()
            .trim()
            == "exited")
            .then_some(())
    });
    let logs = d.docker(&["logs", "c1"]);
    assert!(
        logs.stdout.contains("got:hello:in-volume"),
        "{}",
        logs.describe()
    );
}

/// Needs root. `docker cp` out of an exited container: a file of its writable layer and one in
/// its named volume, as files and as a tar on stdout; a missing path is a 404; then the copy's
/// mounts are gone and the container can be removed.
#[test]
fn cp_out_of_an_exited_container() {
    let d = daemon_with_bb();
    d.docker(&[
        "run",
        "--name",
        "c2",
        "-v",
        "cpvol2:/data",
        "bb",
        "sh",
        "-c",
        "echo layer > /o.txt && echo vol > /data/v.txt",
    ])
    .ok();
    let id = d
        .docker(&["inspect", "-f", "{{.Id}}", "c2"])
        .ok()
        .trim()
        .to_owned();
    let host = d.dir().join("out");
    fs::create_dir_all(&host).unwrap();
    d.docker(&["cp", "c2:/o.txt", host.join("o.txt").to_str().unwrap()])
        .ok();
    assert_eq!(fs::read_to_string(host.join("o.txt")).unwrap(), "layer\n");
    d.docker(&["cp", "c2:/data", host.join("data").to_str().unwrap()])
        .ok();
    assert_eq!(
        fs::read_to_string(host.join("data/v.txt")).unwrap(),
        "vol\n"
    );
    let out = d.docker(&["cp", "c2:/data/v.txt", "-"]);
    assert!(out.ok().contains("vol"), "{}", out.describe());
    let missing = d.docker(&["cp", "c2:/no/such", host.to_str().unwrap()]);
    assert!(!missing.success(), "{}", missing.describe());
    assert!(
        missing.stderr.contains("Could not find the file /no/such"),
        "{}",
        missing.describe()
    );
    assert_eq!(mounts_of(&d, &id), Vec::<String>::new());
    d.docker(&["rm", "c2"]).ok();
}

/// Needs root. `-v /vol1` (`Config.Volumes`) gives the container an anonymous volume: a volume of
/// its own, listed by `docker volume ls` and in its `Mounts`; a file copied into it before the
/// first start is what the process sees, and the volume outlives the container.
#[test]
fn anonymous_volume_takes_a_copy_before_start() {
    let d = daemon_with_bb();
    d.docker(&[
        "create",
        "--name",
        "c3",
        "-v",
        "/vol1",
        "bb",
        "cat",
        "/vol1/f.txt",
    ])
    .ok();
    let name = d
        .docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "c3"])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(name.len(), 64, "anonymous volume name {name:?}");
    let listed = d.docker(&["volume", "ls", "-q"]);
    assert!(listed.ok().contains(&name), "{}", listed.describe());
    let host = d.dir().join("anon");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("f.txt"), "anon-data").unwrap();
    d.docker(&["cp", host.join("f.txt").to_str().unwrap(), "c3:/vol1/"])
        .ok();
    let out = d.docker(&["start", "-a", "c3"]);
    assert_eq!(out.ok().trim(), "anon-data", "{}", out.describe());
    d.docker(&["rm", "c3"]).ok();
    let listed = d.docker(&["volume", "ls", "-q"]);
    assert!(listed.ok().contains(&name), "{}", listed.describe());
}

/// Needs root. Anonymous volumes go with their container when asked, as with Docker: `rm -v`
/// and `run --rm` remove them; plain `rm` keeps them; a volume another container took with
/// `--volumes-from` is kept until that one is gone too.
#[test]
fn anonymous_volumes_go_with_rm_v_and_run_rm() {
    let d = daemon_with_bb();
    let volumes = |d: &Daemon| -> Vec<String> {
        let out = d.docker(&["volume", "ls", "-q"]);
        out.ok().lines().map(str::to_owned).collect()
    };
    let before = volumes(&d);
    d.docker(&["run", "--rm", "-v", "/scratch", "bb", "true"])
        .ok();
    assert_eq!(volumes(&d), before, "run --rm left its anonymous volume");

    d.docker(&["create", "--name", "kept", "-v", "/k", "bb", "true"])
        .ok();
    d.docker(&["rm", "kept"]).ok();
    assert_eq!(volumes(&d).len(), before.len() + 1, "plain rm keeps it");

    d.docker(&["create", "--name", "owner", "-v", "/o", "bb", "true"])
        .ok();
    d.docker(&[
        "create",
        "--name",
        "taker",
        "--volumes-from",
        "owner",
        "bb",
        "true",
    ])
    .ok();
    let with_owner = volumes(&d);
    d.docker(&["rm", "-v", "owner"]).ok();
    assert_eq!(volumes(&d), with_owner, "in use by taker: kept");
    d.docker(&["rm", "-v", "taker"]).ok();
    assert_eq!(volumes(&d), with_owner, "taker's rm -v: not its own volume");

    d.docker(&["create", "--name", "gone", "-v", "/g", "bb", "true"])
        .ok();
    d.docker(&["rm", "-v", "gone"]).ok();
    assert_eq!(volumes(&d), with_owner, "rm -v removes it");
}
