//! `docker exec` through the real docker CLI against a real daemon: output, exit codes, `-e`,
//! `-w`, `-u`, `-d`, stdin with `-i`, `-t` (a pty of the container, its size, detach keys),
//! `--privileged`, the exec API's inspect, and the confinement of the exec'd process (the
//! container's seccomp filter, capabilities and pid namespace); docker-py's `exec_run`.
//!
//! Needs root (the daemon makes namespaces and mounts), the `docker` CLI and Debian's
//! `busybox-static`; CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_tests::{Daemon, poll_until};
use serde_json::json;

/// A daemon with busybox imported as `bb` and container `c` running (pid 1 is `sleep`).
fn daemon_with_c() -> Daemon {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "c",
        "-e",
        "FROM_RUN=yes",
        "bb",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
    ])
    .ok();
    poll_until("container ready", Duration::from_secs(20), || {
        d.docker(&["logs", "c"])
            .stdout
            .contains("ready")
            .then_some(())
    });
    d
}

/// Needs root. Output, exit codes (CLI and inspect), `-e`, `-w`, `-u`, `-d`, `-i`.
#[test]
fn exec_runs_commands_in_the_container() {
    let d = daemon_with_c();
    let hostname = d
        .docker(&["inspect", "-f", "{{.Config.Hostname}}", "c"])
        .ok()
        .trim()
        .to_string();
    assert_eq!(d.docker(&["exec", "c", "hostname"]).ok().trim(), hostname);

    let out = d.docker(&["exec", "c", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    out.expect_code(3);
    assert_eq!(out.stdout, "out\n", "{}", out.describe());
    assert_eq!(out.stderr, "err\n", "{}", out.describe());

    let out = d.docker(&[
        "exec",
        "-e",
        "GREETING=hi",
        "c",
        "sh",
        "-c",
        "echo $GREETING $FROM_RUN",
    ]);
    assert_eq!(out.ok(), "hi yes\n");
    assert_eq!(d.docker(&["exec", "-w", "/tmp", "c", "pwd"]).ok(), "/tmp\n");
    assert_eq!(
        d.docker(&["exec", "-u", "65534", "c", "id", "-u"]).ok(),
        "65534\n"
    );

    let out = d.docker_with(
        &["exec", "-i", "c", "cat"],
        Some(b"hi\n"),
        Duration::from_secs(30),
    );
    assert_eq!(out.ok(), "hi\n");

    d.docker(&["exec", "-d", "c", "sh", "-c", "echo detached > /tmp/d"])
        .ok();
    poll_until("detached exec ran", Duration::from_secs(20), || {
        d.docker(&["exec", "c", "cat", "/tmp/d"])
            .stdout
            .contains("detached")
            .then_some(())
    });

    let missing = d.docker(&["exec", "c", "no-such-command"]);
    assert!(!missing.success(), "{}", missing.describe());

    // The API: create, start detached, inspect until it finished.
    let created = d.raw_json(
        "POST",
        "/containers/c/exec",
        &json!({"Cmd": ["sh", "-c", "exit 3"], "AttachStdout": true}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["Id"].as_str().unwrap().to_string();
    let started = d.raw_json(
        "POST",
        &format!("/exec/{id}/start"),
        &json!({"Detach": true}),
    );
    assert_eq!(started.status, 200, "{}", started.text());
    let info = poll_until("exec finished", Duration::from_secs(20), || {
        let info = d
            .raw_json("GET", &format!("/exec/{id}/json"), &json!(null))
            .json();
        (info["Running"] == json!(false)).then_some(info)
    });
    assert_eq!(info["ExitCode"], json!(3), "{info}");
    assert_eq!(info["CanRemove"], json!(false), "{info}");
    assert_eq!(info["ProcessConfig"]["entrypoint"], json!("sh"), "{info}");
    let again = d.raw_json(
        "POST",
        &format!("/exec/{id}/start"),
        &json!({"Detach": true}),
    );
    assert_eq!(again.status, 409, "{}", again.text());
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Needs root. The exec'd process is confined like the container's pid 1: seccomp filter
/// (`Seccomp: 2`), the same effective capabilities, and the container's pid namespace (its pid 1
/// is the container's `sleep`; the daemon's pid is not visible).
#[test]
fn exec_is_confined_like_the_container() {
    let d = daemon_with_c();
    let own = d
        .docker(&["exec", "c", "cat", "/proc/self/status"])
        .ok()
        .to_string();
    let pid1 = d
        .docker(&["exec", "c", "cat", "/proc/1/status"])
        .ok()
        .to_string();
    assert_eq!(status_field(&own, "Seccomp:"), "2", "{own}");
    assert_eq!(
        status_field(&own, "CapEff:"),
        status_field(&pid1, "CapEff:"),
        "{own}\n{pid1}"
    );
    assert_ne!(status_field(&own, "CapEff:"), "000001ffffffffff", "{own}");
    assert_eq!(status_field(&pid1, "Name:"), "sleep", "{pid1}");
    let daemon_pid = d.pid().unwrap();
    let probe = d.docker(&[
        "exec",
        "c",
        "test",
        "-e",
        &format!("/proc/{daemon_pid}/status"),
    ]);
    probe.expect_code(1);
    let pids = d.docker(&["exec", "c", "ls", "/proc"]).ok().to_string();
    let numeric = pids
        .split_whitespace()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .count();
    assert!(numeric <= 3, "only the container's processes: {pids}");
}

/// Needs root. `berth exec` (the project's own CLI): output, `-e`/`-w`, the exit code.
#[test]
fn berth_exec_cli() {
    let d = daemon_with_c();
    let out = d.berth(&[
        "exec",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "c",
        "sh",
        "-c",
        "echo $A $(pwd)",
    ]);
    assert_eq!(out.ok(), "1 /tmp\n");
    d.berth(&["exec", "c", "sh", "-c", "exit 3"]).expect_code(3);
}

/// Needs root. docker-py `exec_run`: exit code and output, demultiplexed streams, environment,
/// working directory and user.
#[test]
fn docker_py_exec_run() {
    let d = daemon_with_c();
    let out = d.python(
        r#"
c = client.containers.get("c")
r = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
assert r.exit_code == 3, r
assert r.output == (b"out\n", b"err\n"), r.output
r = c.exec_run("sh -c 'echo $X $(pwd) $(id -u)'", environment={"X": "x1"}, workdir="/tmp", user="65534")
assert r.exit_code == 0 and r.output == b"x1 /tmp 65534\n", r
print("done")
"#,
    );
    assert!(out.ok().contains("done"), "{}", out.describe());
}

/// Needs root. Regression for docker-py losing all of an exec's output: docker-py reads the
/// `101` head through a buffered reader and then the stream from the raw socket, so any output
/// that reached the socket together with the head was swallowed by the buffer. A slow client
/// (here: every head read is delayed until the output had time to arrive) made it certain; the
/// daemon must hold the output until the client has taken the head off the socket.
#[test]
fn docker_py_exec_run_slow_client_gets_every_byte() {
    let d = daemon_with_c();
    let out = d.python(
        r#"
import http.client, time
begin = http.client.HTTPResponse.begin
def slow_begin(self):
    time.sleep(0.3)
    return begin(self)
http.client.HTTPResponse.begin = slow_begin
c = client.containers.get("c")
for i in range(12):
    r = c.exec_run(["sh", "-c", "echo out%d; echo err%d >&2; exit 3" % (i, i)], demux=True)
    assert r.exit_code == 3, r
    assert r.output == (b"out%d\n" % i, b"err%d\n" % i), (i, r.output)
    r = c.exec_run(["echo", "plain%d" % i])
    assert r.output == b"plain%d\n" % i, (i, r.output)
print("done")
"#,
    );
    assert!(out.ok().contains("done"), "{}", out.describe());
}

/// Needs root. `docker exec -t`: the command runs on a pty of the container's own devpts (so
/// `tty` names `/dev/pts/N` and `TERM` is `xterm`), stdout and stderr arrive merged as raw bytes
/// with the terminal's `\r\n`, and the exit code is kept. Under `script` (a terminal for the
/// CLI) `-it` gets the CLI's terminal size (`ConsoleSize`).
#[test]
fn exec_tty() {
    let d = daemon_with_c();
    let out = d.docker(&[
        "exec",
        "-t",
        "c",
        "sh",
        "-c",
        "tty; echo $TERM; echo err >&2; exit 5",
    ]);
    out.expect_code(5);
    assert!(
        out.stdout.starts_with("/dev/pts/") && out.stdout.contains("\r\nxterm\r\nerr\r\n"),
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr, "", "{}", out.describe());
    let py = d.python(
        r#"
c = client.containers.get("c")
r = c.exec_run(["sh", "-c", "test -t 0 && test -t 1 && echo tty; exit 4"], tty=True)
assert r.exit_code == 4 and r.output == b"tty\r\n", r
print("done")
"#,
    );
    assert!(py.ok().contains("done"), "{}", py.describe());

    // `script` gives the docker CLI a terminal of 33x77; the exec's pty gets that size.
    let line = format!(
        "stty rows 33 cols 77; DOCKER_HOST={} DOCKER_CONFIG={} docker exec -it c sh -c \"stty size\"",
        d.host(),
        d.dir().join("docker-config").display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_CONTEXT");
    let out = berth_tests::run_command(cmd, Some(b""), Duration::from_secs(60));
    assert!(out.stdout.contains("33 77"), "{}", out.describe());
}

/// Needs root. The exec API on a tty, as a raw client: `POST /exec/{id}/resize` reaches the
/// running command's terminal, and the `DetachKeys` sequence on stdin ends the session while
/// the process keeps running (`Running: true` in inspect); bad detach keys are a 400.
#[test]
fn exec_tty_resize_and_detach_keys() {
    let d = daemon_with_c();
    let bad = d.raw_json(
        "POST",
        "/containers/c/exec",
        &json!({"Cmd": ["true"], "Tty": true, "DetachKeys": "ctrl-1"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("ctrl-1"), "{}", bad.text());
    let out = d.python(
        r#"
import socket, time
def session(cmd):
    e = client.api.exec_create("c", cmd, stdin=True, tty=True, detach_keys="ctrl-x")
    s = client.api.exec_start(e["Id"], tty=True, socket=True)
    return e["Id"], s._sock if hasattr(s, "_sock") else s
def read_until(sock, want, limit=10):
    got = b""
    deadline = time.time() + limit
    while want not in got:
        assert time.time() < deadline, got
        sock.settimeout(max(0.1, deadline - time.time()))
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    return got
eid, sock = session(["sh", "-c", "read x; stty size; read y"])
client.api.exec_resize(eid, height=40, width=100)
sock.sendall(b"go\n")
read_until(sock, b"40 100")
sock.sendall(b"\n")
sock.close()
eid, sock = session(["cat"])
sock.sendall(b"hello\n")
read_until(sock, b"hello")
sock.sendall(b"\x18")
sock.settimeout(10)
rest = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    rest += chunk
info = client.api.exec_inspect(eid)
assert info["Running"] is True and info["ProcessConfig"]["tty"] is True, info
assert info["DetachKeys"] == "ctrl-x", info
print("done")
"#,
    );
    assert!(out.ok().contains("done"), "{}", out.describe());
}

/// Needs root. `docker exec --privileged` gets every capability the daemon has (its bounding
/// set) while a plain exec keeps the container's; both still run under its seccomp filter.
#[test]
fn exec_privileged_gets_every_capability() {
    let d = daemon_with_c();
    let daemon_pid = d.pid().unwrap();
    let daemon = std::fs::read_to_string(format!("/proc/{daemon_pid}/status")).unwrap();
    let all = status_field(&daemon, "CapBnd:");
    let plain = d
        .docker(&["exec", "c", "cat", "/proc/self/status"])
        .ok()
        .to_string();
    let privileged = d
        .docker(&["exec", "--privileged", "c", "cat", "/proc/self/status"])
        .ok()
        .to_string();
    assert_ne!(status_field(&plain, "CapEff:"), all, "{plain}");
    assert_eq!(status_field(&privileged, "CapEff:"), all, "{privileged}");
    assert_eq!(status_field(&privileged, "CapBnd:"), all, "{privileged}");
    assert_eq!(status_field(&privileged, "Seccomp:"), "2", "{privileged}");
    let info = d.python(
        r#"
c = client.containers.get("c")
r = c.exec_run(["sh", "-c", "grep CapEff /proc/self/status"], privileged=True)
assert r.exit_code == 0, r
print(r.output.decode().split()[1])
"#,
    );
    assert_eq!(info.ok().trim(), all);
}
