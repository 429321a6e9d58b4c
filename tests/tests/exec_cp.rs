//! `docker cp` through the real docker CLI and docker-py against a real daemon: files in and out
//! of a running container, and the escapes that must stay inside the container's root (symlinks
//! in the container pointing at host paths, tar entries with `..`, a tar symlink followed by a
//! file through it).
//!
//! Needs root (the daemon makes namespaces and mounts), the `docker` CLI, docker-py and Debian's
//! `busybox-static`; CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use berth_tests::{Daemon, poll_until};

fn daemon_with_bb() -> Daemon {
    let d = Daemon::start();
    d.import_busybox("bb");
    d
}

/// Starts `bb sh -c SCRIPT` detached as `name` and waits until it logged `ready`.
fn run_ready(d: &Daemon, name: &str, script: &str) {
    d.docker(&["run", "-d", "--name", name, "bb", "sh", "-c", script])
        .ok();
    poll_until("container ready", Duration::from_secs(20), || {
        d.docker(&["logs", name])
            .stdout
            .contains("ready")
            .then_some(())
    });
}

/// Needs root. `docker cp HOST c:DIR` puts a file where the container sees it (its process
/// reads it); `docker cp c:DIR HOST` brings back a directory with a file, a nested directory and
/// a symlink (kept as a symlink); `HEAD` on a missing path is a 404 (`docker cp` says so).
#[test]
fn cp_in_and_out() {
    let d = daemon_with_bb();
    run_ready(
        &d,
        "c1",
        "mkdir -p /out/sub && echo inside > /out/sub/f.txt && ln -s sub/f.txt /out/link && \
         echo ready; while [ ! -f /tmp/in.txt ]; do sleep 0.1; done; echo got:$(cat /tmp/in.txt); sleep 1000",
    );
    let host = d.dir().join("cp");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("in.txt"), "from-host").unwrap();
    d.docker(&["cp", host.join("in.txt").to_str().unwrap(), "c1:/tmp/"])
        .ok();
    poll_until(
        "container read the copied file",
        Duration::from_secs(20),
        || {
            d.docker(&["logs", "c1"])
                .stdout
                .contains("got:from-host")
                .then_some(())
        },
    );

    let back = host.join("back");
    d.docker(&["cp", "c1:/out", back.to_str().unwrap()]).ok();
    assert_eq!(
        fs::read_to_string(back.join("sub/f.txt")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        fs::read_link(back.join("link")).unwrap(),
        Path::new("sub/f.txt")
    );

    // A single file to stdout is a tar with that one entry.
    let out = d.docker(&["cp", "c1:/out/sub/f.txt", "-"]);
    let text = out.ok();
    assert!(text.contains("inside"), "{}", out.describe());

    let missing = d.docker(&["cp", "c1:/no/such/file", host.to_str().unwrap()]);
    assert!(!missing.success(), "{}", missing.describe());
    assert!(
        missing
            .stderr
            .contains("Could not find the file /no/such/file"),
        "{}",
        missing.describe()
    );
    let head = d.raw("HEAD", "/containers/c1/archive?path=/no/such", None, b"");
    assert_eq!(head.status, 404, "{}", head.text());
    let head = d.raw(
        "HEAD",
        "/containers/c1/archive?path=/out/sub/f.txt",
        None,
        b"",
    );
    assert_eq!(head.status, 200, "{}", head.text());
    assert!(head.header("x-docker-container-path-stat").is_some());
}

/// Needs root. Symlinks the container made towards host paths resolve inside the container's
/// root: copying into `c:/evil/` (a link to a real host directory) does not write on the host,
/// and copying out through absolute and `../` links to a host file does not read it; nor does
/// naming the host path directly.
#[test]
fn cp_symlink_escape_stays_in_the_container() {
    let d = daemon_with_bb();
    let host = d.dir().join("hostside");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("secret.txt"), "host-secret").unwrap();
    let hp = host.to_str().unwrap().to_owned();
    run_ready(
        &d,
        "c2",
        &format!(
            "ln -s {hp} /evil && ln -s ../../../../../../..{hp} /tmp/rel && echo ready; sleep 1000"
        ),
    );
    let payload = d.dir().join("pwned.txt");
    fs::write(&payload, "pwned").unwrap();
    // The host path itself, as an absolute path in the container, is the container's path too.
    let direct_dir = format!("c2:{hp}/");
    let direct_file = format!("c2:{hp}/secret.txt");
    for dest in [
        "c2:/evil/",
        "c2:/evil/pwned.txt",
        "c2:/tmp/rel/pwned.txt",
        direct_dir.as_str(),
    ] {
        let out = d.docker(&["cp", payload.to_str().unwrap(), dest]);
        assert!(
            !host.join("pwned.txt").exists(),
            "docker cp to {dest} wrote on the host:\n{}",
            out.describe()
        );
    }
    for src in [
        "c2:/evil/secret.txt",
        "c2:/tmp/rel/secret.txt",
        direct_file.as_str(),
    ] {
        let out = d.docker(&["cp", src, "-"]);
        assert!(
            !out.stdout.contains("host-secret"),
            "docker cp from {src} read the host:\n{}",
            out.describe()
        );
        assert!(!out.success(), "{}", out.describe());
    }
    assert_eq!(
        fs::read_to_string(host.join("secret.txt")).unwrap(),
        "host-secret"
    );
}

/// Needs root. docker-py `put_archive`/`get_archive` round-trip a file; a tar with a `..`
/// entry is refused, and a tar whose symlink points at a host directory followed by a file
/// through that symlink writes nothing on the host.
#[test]
fn docker_py_archives() {
    let d = daemon_with_bb();
    run_ready(&d, "c3", "echo ready; sleep 1000");
    let host = d.dir().join("pyhost");
    fs::create_dir_all(&host).unwrap();
    let script = format!(
        r#"
import io, tarfile
c = client.containers.get("c3")
def tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                t.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o640
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
assert c.put_archive("/tmp", tar_of([("hello.txt", b"py-data", None)]))
stream, stat = c.get_archive("/tmp/hello.txt")
data = b"".join(stream)
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    m = t.getmember("hello.txt")
    assert t.extractfile(m).read() == b"py-data", data
    assert m.mode & 0o777 == 0o640, oct(m.mode)
assert stat["name"] == "hello.txt" and stat["size"] == 7, stat
dstream, dstat = c.get_archive("/tmp")
assert dstat["mode"] & (1 << 31), dstat
try:
    c.put_archive("/tmp", tar_of([("../../../../../../{hp}/dotdot.txt", b"x", None)]))
    print("dotdot: accepted")
except Exception as e:
    print("dotdot: refused", e)
try:
    c.put_archive("/tmp", tar_of([("lnk", b"", "{hp}"), ("lnk/through.txt", b"x", None)]))
    print("through: accepted")
except Exception as e:
    print("through: refused", e)
print("done")
"#,
        hp = host.to_str().unwrap()
    );
    let out = d.python(&script);
    assert!(out.ok().contains("done"), "{}", out.describe());
    assert!(out.stdout.contains("dotdot: refused"), "{}", out.describe());
    assert!(!host.join("dotdot.txt").exists(), "{}", out.describe());
    assert!(!host.join("through.txt").exists(), "{}", out.describe());
}
