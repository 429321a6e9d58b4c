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

/// Reads one HTTP response head and its `Content-Length` body from `s`; returns the status.
fn read_response(s: &mut std::os::unix::net::UnixStream) -> u16 {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("reading the response head");
        assert_eq!(
            n,
            1,
            "the connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("reading the response body");
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Needs root. A copy's tar ends before its request body does (at least the chunked body's last
/// chunk follows it; here also padding): the daemon reads the rest before it answers, so the
/// client's writes all land and the connection stays open for the next request. Before, the
/// reply went out as soon as the extraction was done and the connection was reset under the
/// client's writes, which the docker CLI reported, now and then, as a failed copy
/// (`write: broken pipe`) although the file had been copied. Fails without the fix
/// (`Connection reset by peer`).
#[test]
fn a_copy_reads_its_whole_body_before_answering() {
    use std::io::Write;
    let d = daemon_with_bb();
    d.docker(&["create", "--name", "c1", "bb", "true"]).ok();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "greeting", &b"hello"[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    // Past the tar's end: more than the socket holds, so the writer is still at it when the
    // extraction is done.
    let trailing = vec![0u8; 512 << 10];
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    // Chunked, as the docker CLI streams it.
    let head = "PUT /v1.50/containers/c1/archive?path=/etc HTTP/1.1\r\nHost: berth\r\n\
                Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n";
    let writer = std::thread::spawn(move || {
        w.write_all(head.as_bytes())?;
        for chunk in std::iter::once(&tar[..]).chain(trailing.chunks(32 << 10)) {
            w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            w.write_all(chunk)?;
            w.write_all(b"\r\n")?;
        }
        w.write_all(b"0\r\n\r\n")
    });
    assert_eq!(read_response(&mut s), 200, "the copy");
    writer
        .join()
        .unwrap()
        .expect("every byte of the body was written: the connection stayed open");
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: berth\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut s),
        200,
        "the next request on the same connection"
    );
    let head = d.raw(
        "HEAD",
        "/containers/c1/archive?path=/etc/greeting",
        None,
        b"",
    );
    assert_eq!(head.status, 200, "the file was copied");
}
