//! `HostConfig` settings docker-py's suite found accepted and ignored (or refused), now applied
//! (`PidMode`: `--pid host`; `VolumesFrom`: `--volumes-from`; `Init`: `--init`). Checked with
//! the docker CLI and raw HTTP against a real daemon.
//!
//! Needs root (the daemon makes namespaces and mounts): we run as root in CI.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_tests::{Daemon, poll_until};
use serde_json::{Value, json};

fn inspect(d: &Daemon, what: &str) -> Value {
    let r = d.raw("GET", &format!("/v1.41/{what}/json"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Whether host pid `pid` is gone or a zombie (dead, waiting for its reaper).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// `--pid host`: the container sees the host's processes (this test's own pid is in its
/// `/proc`) and its shell is not pid 1; a process it leaves behind is killed when its main
/// process exits; an exec sees the same; inspect shows the mode; the default stays a private pid namespace; another
/// container's namespace (`container:<id>`) and nonsense are refused.
#[test]
fn pid_mode_host_shares_the_host_pid_namespace() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let me = std::process::id();
    let probe = format!("test -d /proc/{me} && echo $$");
    let out = d.docker(&[
        "run", "--name", "pidh", "--pid", "host", "bb", "sh", "-c", &probe,
    ]);
    let pid: i32 = out.ok().trim().parse().unwrap();
    assert!(pid > 1, "{pid}");
    assert_eq!(
        inspect(&d, "containers/pidh")["HostConfig"]["PidMode"],
        "host"
    );
    // An exec joins the same (host) pid namespace.
    d.docker(&[
        "run", "-d", "--name", "pidd", "--pid", "host", "bb", "sleep", "1000",
    ])
    .ok();
    let out = d.docker(&["exec", "pidd", "sh", "-c", &probe]);
    assert!(out.ok().trim().parse::<i32>().unwrap() > 1);
    d.docker(&["rm", "-f", "pidd"]).ok();
    // The default: a private pid namespace, where this test's pid is not visible.
    let out = d.docker(&["run", "--rm", "bb", "sh", "-c", &probe]);
    assert!(!out.success(), "{}", out.describe());
    let out = d.docker(&["run", "--rm", "bb", "sh", "-c", "echo $$"]);
    assert_eq!(out.ok().trim(), "1");
    // A child left behind by the main process dies with the container.
    let out = d.docker(&[
        "run",
        "--rm",
        "--pid",
        "host",
        "bb",
        "sh",
        "-c",
        "sleep 1000 >/dev/null 2>&1 & echo $!",
    ]);
    let left: i32 = out.ok().trim().parse().unwrap();
    poll_until(
        "the left-behind sleep dies",
        Duration::from_secs(10),
        || dead(left).then_some(()),
    );
    for mode in ["container:pidh", "private"] {
        let r = d.raw_json(
            "POST",
            "/v1.41/containers/create",
            &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"PidMode": mode}}),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.message().contains("PID mode"), "{}", r.message());
    }
}

/// The processes of container `name` in state Z (zombies), from `ps` inside it.
fn zombies(d: &Daemon, name: &str) -> usize {
    let out = d.docker(&["exec", name, "ps", "-o", "stat"]);
    out.ok()
        .lines()
        .filter(|l| l.trim_start().starts_with('Z'))
        .count()
}

/// `--init`: pid 1 is a minimal init (`docker-init`, running as the container's user, showing
/// none of the engine's command line, environment or memory) with the command as its child; an orphan that dies is reaped (without `--init` the same command leaves
/// a zombie); `docker stop` ends the command with the forwarded SIGTERM (143, not the 137 of the
/// SIGKILL after the grace period); the command's exit code passes through; inspect shows
/// `Init: true` only when asked.
#[test]
fn init_runs_the_command_under_a_reaping_init() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let out = d.docker(&[
        "run",
        "--rm",
        "--init",
        "--user",
        "1000",
        "bb",
        "sh",
        "-c",
        "echo $$; cat /proc/1/comm; grep ^Uid /proc/1/status",
    ]);
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "2", "{text}");
    assert_eq!(lines[1], "docker-init", "{text}");
    assert!(lines[2].split_whitespace().nth(1) == Some("1000"), "{text}");
    // The init is a copy of the engine's process: a root container must not read the engine's
    // command line, environment or memory through it.
    let out = d.docker(&[
        "run",
        "--rm",
        "--init",
        "bb",
        "sh",
        "-c",
        "tr '\\0' ' ' </proc/1/cmdline; echo; cat /proc/1/environ; head -c 1 /proc/1/mem; true",
    ]);
    let cmdline = out.ok().lines().next().unwrap_or_default().to_owned();
    assert!(
        cmdline.starts_with("/sbin/docker-init -- sh -c"),
        "{}",
        out.describe()
    );
    assert!(!cmdline.contains("daemon"), "{cmdline}");
    assert!(
        out.stderr.contains("/proc/1/environ") && out.stderr.contains("/proc/1/mem"),
        "{}",
        out.describe()
    );
    // An orphan (the inner shell's background loop) goes to pid 1 when its shell exits; once
    // the command is `sleep` (it exec'd), /tmp/go lets the orphan end.
    let orphan = "sh -c 'while [ ! -e /tmp/go ]; do sleep 0.1; done &'; exec sleep 1000";
    for (name, init) in [("noinit", false), ("ini", true)] {
        let mut args = vec!["run", "-d", "--name", name];
        if init {
            args.push("--init");
        }
        args.extend(["bb", "sh", "-c", orphan]);
        d.docker(&args).ok();
        let sleep_pid = if init { "2" } else { "1" };
        poll_until("the command execs sleep", Duration::from_secs(10), || {
            let out = d.docker(&["exec", name, "cat", &format!("/proc/{sleep_pid}/cmdline")]);
            out.ok().starts_with("sleep").then_some(())
        });
        d.docker(&["exec", name, "touch", "/tmp/go"]).ok();
    }
    poll_until("a zombie without --init", Duration::from_secs(10), || {
        (zombies(&d, "noinit") > 0).then_some(())
    });
    // With --init: the orphan left (no loop runs) and nothing is left unreaped.
    poll_until("no zombie with --init", Duration::from_secs(10), || {
        let out = d.docker(&["exec", "ini", "ps", "-o", "args"]);
        // (The init's own command line names /tmp/go too.)
        let looping = out
            .ok()
            .lines()
            .any(|l| l.contains("/tmp/go") && !l.contains("docker-init"));
        (!looping && zombies(&d, "ini") == 0).then_some(())
    });
    assert_eq!(inspect(&d, "containers/ini")["HostConfig"]["Init"], true);
    assert!(
        inspect(&d, "containers/noinit")["HostConfig"]
            .get("Init")
            .is_none()
    );
    d.docker(&["stop", "-t", "60", "ini"]).ok();
    assert_eq!(inspect(&d, "containers/ini")["State"]["ExitCode"], 143);
    let out = d.docker(&["run", "--rm", "--init", "bb", "sh", "-c", "exit 7"]);
    out.expect_code(7);
    d.docker(&["rm", "-f", "noinit", "ini"]).ok();
    for (init, status) in [(json!(true), 201), (json!(false), 201), (Value::Null, 201)] {
        let r = d.raw_json(
            "POST",
            "/v1.41/containers/create",
            &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"Init": init}}),
        );
        assert_eq!(r.status, status, "{init}: {}", r.text());
    }
    // With CAP_SYS_PTRACE the container could read the init's memory, a copy of the engine's:
    // the combination is refused at create, naming the option and the reason.
    let r = d.raw_json(
        "POST",
        "/v1.41/containers/create",
        &json!({"Image": "bb", "Cmd": ["true"],
                "HostConfig": {"Init": true, "CapAdd": ["SYS_PTRACE"]}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("HostConfig.Init (--init): not with CAP_SYS_PTRACE"),
        "{}",
        r.text()
    );
}

/// `--volumes-from src[:ro]`: the new container gets src's volume and bind mount at the same
/// targets, read-only when asked; its own mount on a target wins; inspect shows the entries; an
/// unknown container is a 404 and an unknown mode a 400.
#[test]
fn volumes_from_copies_the_other_containers_mounts() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), "hello\n").unwrap();
    let bind = format!("{}:/b", dir.path().display());
    d.docker(&["volume", "create", "vf"]).ok();
    d.docker(&[
        "run",
        "--name",
        "src",
        "-v",
        "vf:/data",
        "-v",
        &bind,
        "bb",
        "sh",
        "-c",
        "echo one > /data/f",
    ])
    .ok();
    let out = d.docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "src",
        "bb",
        "sh",
        "-c",
        "cat /data/f /b/x && echo two > /data/f",
    ]);
    assert_eq!(out.ok(), "one\nhello\n");
    let out = d.docker(&[
        "run",
        "--name",
        "ro",
        "--volumes-from",
        "src:ro",
        "bb",
        "sh",
        "-c",
        "cat /data/f; touch /data/g",
    ]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.describe().contains("two"), "{}", out.describe());
    assert_eq!(
        inspect(&d, "containers/ro")["HostConfig"]["VolumesFrom"],
        json!(["src:ro"])
    );
    // The container's own mount on /data wins over src's.
    let own = tempfile::tempdir().unwrap();
    let own_bind = format!("{}:/data", own.path().display());
    let out = d.docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "src",
        "-v",
        &own_bind,
        "bb",
        "sh",
        "-c",
        "ls /data; cat /b/x",
    ]);
    assert_eq!(out.ok(), "hello\n");
    for (from, status) in [("nosuch", 404), ("src:xx", 400)] {
        let r = d.raw_json(
            "POST",
            "/v1.41/containers/create",
            &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"VolumesFrom": [from]}}),
        );
        assert_eq!(r.status, status, "{from}: {}", r.text());
    }
}

/// An image's `Config.Volumes` (`VOLUME /data`): each container of it gets an anonymous volume
/// there (what it writes lands in the volume, listed by `docker volume ls`), unless a mount of
/// its own covers the path; `rm -v` and `--rm` remove it, a plain `rm` keeps it.
#[test]
fn image_volumes_get_anonymous_volumes() {
    let d = Daemon::start();
    let r = d.raw(
        "POST",
        "/v1.41/images/create?fromSrc=-&repo=vb&changes=VOLUME%20%2Fdata",
        Some("application/x-tar"),
        berth_tests::busybox_rootfs_tar(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        inspect(&d, "images/vb")["Config"]["Volumes"],
        json!({"/data": {}})
    );
    let volumes = |d: &Daemon| -> Vec<String> {
        let out = d.docker(&["volume", "ls", "-q"]);
        out.ok().lines().map(str::to_owned).collect()
    };
    let volume_at = |d: &Daemon, name: &str| -> String {
        let c = inspect(d, &format!("containers/{name}"));
        let m = c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == "/data");
        let m = m.unwrap_or_else(|| panic!("no mount at /data: {c}"));
        assert_eq!(m["Type"], "volume", "{m}");
        m["Name"].as_str().unwrap().to_owned()
    };
    let write = "echo hi > /data/f && grep -q ' /data ' /proc/mounts";
    d.docker(&["run", "--name", "a", "vb", "sh", "-c", write])
        .ok();
    let a = volume_at(&d, "a");
    assert_eq!(a.len(), 64, "{a}");
    assert!(volumes(&d).contains(&a));
    d.docker(&["run", "--name", "b", "vb", "sh", "-c", write])
        .ok();
    let b = volume_at(&d, "b");
    assert_ne!(a, b, "each container gets its own volume");
    // A mount of its own on the path: no anonymous volume.
    d.docker(&["run", "--name", "own", "-v", "mine:/data", "vb", "true"])
        .ok();
    assert_eq!(volume_at(&d, "own"), "mine");
    d.docker(&["rm", "-v", "a"]).ok();
    d.docker(&["rm", "b", "own"]).ok();
    let left = volumes(&d);
    assert!(!left.contains(&a) && left.contains(&b), "{left:?}");
    let before = volumes(&d).len();
    d.docker(&["run", "--rm", "vb", "sh", "-c", write]).ok();
    assert_eq!(volumes(&d).len(), before, "--rm left its volume");
}
