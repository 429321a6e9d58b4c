//! The real `docker` CLI (28.x) driving a real `berth daemon` on a temp socket: the scenarios a
//! Docker user types, with their stdout, stderr and exit codes asserted.
//!
//! Every test here needs root (the daemon makes namespaces and mounts) and the `docker` CLI and
//! Debian's `busybox-static` installed; CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_tests::{Daemon, poll_until, unix_now, write_busybox_rootfs_tar};

/// Starts a daemon and imports the busybox fixture as `bb:latest` with `docker import`.
fn daemon_with_bb() -> Daemon {
    let d = Daemon::start();
    let tar = d.dir().join("rootfs.tar");
    write_busybox_rootfs_tar(&tar);
    let out = d.docker(&["import", tar.to_str().unwrap(), "bb:latest"]);
    let id = out.ok().trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "docker import should print sha256:<64hex>, got:\n{}",
        out.describe()
    );
    d
}

/// Ids of all containers (`docker ps -a -q --no-trunc`).
fn all_container_ids(d: &Daemon) -> Vec<String> {
    d.docker(&["ps", "-a", "-q", "--no-trunc"])
        .ok()
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Needs root. `docker version` shows a Server block at API 1.50; `docker network ls` lists the
/// built-in `host` and `none` networks.
#[test]
fn version_and_builtin_networks() {
    let d = Daemon::start();
    let out = d.docker(&["version"]);
    let text = out.ok();
    assert!(
        text.contains("Server"),
        "no Server block:\n{}",
        out.describe()
    );
    assert!(
        !text.contains("downgraded"),
        "CLI downgraded the API:\n{}",
        out.describe()
    );
    let api = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(api.ok().trim(), "1.50", "{}", api.describe());
    let client_api = d.docker(&["version", "--format", "{{.Client.APIVersion}}"]);
    assert_eq!(client_api.ok().trim(), "1.50", "{}", client_api.describe());

    let out = d.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    let names: Vec<&str> = out
        .ok()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"host"),
        "no host network:\n{}",
        out.describe()
    );
    assert!(
        names.contains(&"none"),
        "no none network:\n{}",
        out.describe()
    );
}

/// Needs root. `docker import` then `docker run --rm -v HOSTDIR:/data bb sh -c 'echo fish > …'`
/// writes through the bind mount; the built-in `host` image sees the host's root filesystem.
#[test]
fn import_run_bind_mount_and_host_image() {
    let d = daemon_with_bb();
    let host_dir = d.dir().join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    let bind = format!("{}:/data", host_dir.display());
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "bb",
        "sh",
        "-c",
        "echo fish > /data/file.txt",
    ]);
    out.ok();
    let content = std::fs::read_to_string(host_dir.join("file.txt")).unwrap_or_else(|e| {
        panic!(
            "file.txt not written on the host ({e}):\n{}",
            out.describe()
        )
    });
    assert_eq!(content, "fish\n");

    // Attached output comes back on stdout, in order.
    let out = d.docker(&["run", "--rm", "bb", "sh", "-c", "echo one; echo two"]);
    assert_eq!(out.ok(), "one\ntwo\n", "{}", out.describe());
    // stderr is kept apart from stdout.
    let out = d.docker(&["run", "--rm", "bb", "sh", "-c", "echo err >&2; echo out"]);
    assert_eq!(out.ok(), "out\n", "{}", out.describe());
    assert!(out.stderr.contains("err"), "{}", out.describe());

    // `-i`: stdin is streamed in and half-closed; output keeps flowing after the half-close.
    let out = d.docker_with(
        &["run", "--rm", "-i", "bb", "sh", "-c", "cat; echo done"],
        Some(b"some input\n"),
        berth_tests::COMMAND_TIMEOUT,
    );
    assert_eq!(out.ok(), "some input\ndone\n", "{}", out.describe());

    // The `host` image: the host's filesystem, read-only lower layer, own UTS namespace.
    let host_release = std::fs::read_to_string("/etc/os-release").unwrap();
    let out = d.docker(&["run", "--rm", "host", "cat", "/etc/os-release"]);
    assert_eq!(out.ok(), host_release, "{}", out.describe());
    let out = d.docker(&["run", "--rm", "--hostname", "berthbox", "host", "hostname"]);
    assert_eq!(out.ok().trim(), "berthbox", "{}", out.describe());
    let out = d.docker(&["run", "--rm", "host", "cat", "/etc/hostname"]);
    assert!(!out.ok().trim().is_empty(), "{}", out.describe());

    // --rm leaves nothing behind.
    poll_until(
        "--rm containers to be removed",
        Duration::from_secs(10),
        || all_container_ids(&d).is_empty().then_some(()),
    );
}

/// Needs root. Detached run, `logs -f`, `wait`, `ps -a`, `inspect`, `kill`, `stop`, `rm` and their
/// conflict errors.
#[test]
fn container_lifecycle() {
    let d = daemon_with_bb();
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "bb",
        "sh",
        "-c",
        "echo one; sleep 1; echo two; exit 3",
    ]);
    let id = out.ok().trim().to_string();
    assert_eq!(
        id.len(),
        64,
        "run -d prints the full id:\n{}",
        out.describe()
    );

    let logs = d.docker(&["logs", "-f", "c1"]);
    assert_eq!(logs.ok(), "one\ntwo\n", "{}", logs.describe());
    let wait = d.docker(&["wait", "c1"]);
    assert_eq!(wait.ok().trim(), "3", "{}", wait.describe());
    let tail = d.docker(&["logs", "--tail", "1", "c1"]);
    assert_eq!(tail.ok(), "two\n", "{}", tail.describe());
    let ts = d.docker(&["logs", "-t", "c1"]);
    let first = ts.ok().lines().next().unwrap_or_default().to_string();
    assert!(
        first.ends_with(" one") && first.starts_with("20"),
        "timestamped log line: {first:?}"
    );

    let ps = d.docker(&["ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.Image}}"]);
    let line = ps
        .ok()
        .lines()
        .find(|l| l.starts_with("c1|"))
        .unwrap_or_else(|| panic!("c1 missing from ps -a:\n{}", ps.describe()))
        .to_string();
    assert!(line.contains("Exited (3)"), "status of c1: {line}");
    assert!(line.ends_with("|bb"), "image of c1: {line}");
    // Without -a, an exited container is not listed.
    let ps = d.docker(&["ps", "--format", "{{.Names}}"]);
    assert!(!ps.ok().lines().any(|l| l == "c1"), "{}", ps.describe());

    let inspect = d.docker(&["inspect", "c1"]);
    let v: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    let c = &v[0];
    assert_eq!(c["Id"], id.as_str(), "{c}");
    assert_eq!(c["Name"], "/c1", "{c}");
    assert_eq!(c["State"]["ExitCode"], 3, "{c}");
    assert_eq!(c["State"]["Status"], "exited", "{c}");
    assert_eq!(c["State"]["Running"], false, "{c}");
    assert_eq!(c["HostConfig"]["LogConfig"]["Type"], "json-file", "{c}");
    assert_eq!(c["Config"]["Tty"], false, "{c}");
    assert_eq!(c["Config"]["Image"], "bb", "{c}");

    // kill on a stopped container: 409 → exit 1.
    let kill = d.docker(&["kill", "c1"]);
    kill.expect_code(1);
    assert!(
        kill.stderr.contains("is not running"),
        "kill of a stopped container:\n{}",
        kill.describe()
    );

    // Name conflict: 409; `docker create` exits 1, `docker run` 125.
    let dup = d.docker(&["create", "--name", "c1", "bb", "true"]);
    dup.expect_code(1);
    assert!(dup.stderr.contains("already in use"), "{}", dup.describe());
    let dup = d.docker(&["run", "-d", "--name", "c1", "bb", "true"]);
    dup.expect_code(125);
    assert!(
        dup.stderr.contains("Conflict") && dup.stderr.contains("already in use"),
        "{}",
        dup.describe()
    );

    let rm = d.docker(&["rm", "c1"]);
    assert_eq!(rm.ok().trim(), "c1", "{}", rm.describe());
    let gone = d.docker(&["inspect", "c1"]);
    gone.expect_code(1);
    assert!(gone.stderr.contains("No such"), "{}", gone.describe());

    // A running container: rm is refused (409), stop ends it, rm then works.
    let out = d.docker(&["run", "-d", "--name", "c2", "bb", "sleep", "1000"]);
    out.ok();
    let rm = d.docker(&["rm", "c2"]);
    rm.expect_code(1);
    assert!(
        rm.stderr.to_lowercase().contains("running"),
        "rm of a running container should be a 409 naming the reason:\n{}",
        rm.describe()
    );
    let ps = d.docker(&["ps", "--format", "{{.Names}}|{{.Status}}"]);
    assert!(
        ps.ok().lines().any(|l| l.starts_with("c2|Up")),
        "{}",
        ps.describe()
    );
    let stop = d.docker(&["stop", "-t", "1", "c2"]);
    assert_eq!(stop.ok().trim(), "c2", "{}", stop.describe());
    let state = d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}}",
        "c2",
    ]);
    assert_eq!(state.ok().trim(), "exited false", "{}", state.describe());
    // stop on a stopped container is a 304: still exit 0.
    d.docker(&["stop", "c2"]).ok();
    d.docker(&["rm", "c2"]).ok();

    // kill on a running one ends it with SIGKILL (137).
    d.docker(&["run", "-d", "--name", "c3", "bb", "sleep", "1000"])
        .ok();
    let kill = d.docker(&["kill", "c3"]);
    assert_eq!(kill.ok().trim(), "c3", "{}", kill.describe());
    let wait = d.docker(&["wait", "c3"]);
    assert_eq!(wait.ok().trim(), "137", "{}", wait.describe());
    // rm -f of a missing one still exits 0; rm -f of a running one works.
    d.docker(&["run", "-d", "--name", "c4", "bb", "sleep", "1000"])
        .ok();
    d.docker(&["rm", "-f", "c3", "c4"]).ok();
    d.docker(&["rm", "-f", "nosuchcontainer"]).ok();
    assert!(all_container_ids(&d).is_empty());
}

/// Needs root. Exit codes of `docker run`: the command's own, 125 for engine errors (missing
/// image), 125/127 for a missing executable with nothing left behind.
#[test]
fn run_exit_codes_and_errors() {
    let d = daemon_with_bb();
    d.docker(&["run", "--rm", "bb", "sh", "-c", "exit 7"])
        .expect_code(7);
    d.docker(&["run", "--rm", "bb", "false"]).expect_code(1);

    let missing = d.docker(&["run", "--rm", "nosuchimage", "true"]);
    missing.expect_code(125);
    let err = missing.stderr.to_lowercase();
    assert!(
        err.contains("no such image") || err.contains("repository does not exist"),
        "missing image should be reported as such:\n{}",
        missing.describe()
    );

    let nocmd = d.docker(&["run", "--rm", "bb", "nonexistent-cmd"]);
    assert!(
        matches!(nocmd.code, Some(125) | Some(127)),
        "missing executable: expected exit 125 or 127\n{}",
        nocmd.describe()
    );
    assert!(
        nocmd.stderr.contains("nonexistent-cmd"),
        "the error names the command:\n{}",
        nocmd.describe()
    );
    poll_until(
        "the failed --rm container to be removed",
        Duration::from_secs(10),
        || all_container_ids(&d).is_empty().then_some(()),
    );

    // Same without --rm: the container stays, but not as running.
    let nocmd = d.docker(&["run", "--name", "nc", "bb", "nonexistent-cmd"]);
    assert!(
        matches!(nocmd.code, Some(125) | Some(127)),
        "{}",
        nocmd.describe()
    );
    let state = d.docker(&["inspect", "-f", "{{.State.Running}}", "nc"]);
    assert_eq!(state.ok().trim(), "false", "{}", state.describe());
    d.docker(&["rm", "-f", "nc"]).ok();
}

/// Needs root. `docker volume create/ls/inspect/rm` and `docker events --since/--until` showing
/// container create/start/die and volume create.
#[test]
fn volumes_and_events() {
    let d = daemon_with_bb();
    let since = unix_now().saturating_sub(1);

    let out = d.docker(&["volume", "create", "v1"]);
    assert_eq!(out.ok().trim(), "v1", "{}", out.describe());
    let ls = d.docker(&["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(
        ls.ok().lines().any(|l| l == "v1 local"),
        "{}",
        ls.describe()
    );
    let inspect = d.docker(&["volume", "inspect", "v1"]);
    let v: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    assert_eq!(v[0]["Name"], "v1", "{v}");
    assert_eq!(v[0]["Driver"], "local", "{v}");
    let mountpoint = v[0]["Mountpoint"].as_str().unwrap_or_default().to_string();
    assert!(!mountpoint.is_empty(), "{v}");

    // A named volume used by a container keeps its data across containers.
    d.docker(&[
        "run",
        "--rm",
        "-v",
        "v1:/data",
        "bb",
        "sh",
        "-c",
        "echo kept > /data/k",
    ])
    .ok();
    let out = d.docker(&["run", "--rm", "-v", "v1:/data", "bb", "cat", "/data/k"]);
    assert_eq!(out.ok(), "kept\n", "{}", out.describe());

    let id = d
        .docker(&["run", "-d", "--name", "ev", "bb", "sh", "-c", "exit 2"])
        .ok()
        .trim()
        .to_string();
    assert_eq!(d.docker(&["wait", "ev"]).ok().trim(), "2");

    let rm = d.docker(&["volume", "rm", "v1"]);
    assert_eq!(rm.ok().trim(), "v1", "{}", rm.describe());
    let gone = d.docker(&["volume", "inspect", "v1"]);
    gone.expect_code(1);
    // volume rm -f of a missing volume succeeds.
    d.docker(&["volume", "rm", "-f", "v1"]).ok();

    let until = unix_now() + 1;
    let events = d.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
    ]);
    let text = events.ok();
    for needle in [
        format!("container create {id}"),
        format!("container start {id}"),
        format!("container die {id}"),
        "volume create v1".to_string(),
    ] {
        assert!(
            text.contains(&needle),
            "events lack {needle:?}:\n{}",
            events.describe()
        );
    }
    let die = text
        .lines()
        .find(|l| l.contains(&format!("container die {id}")))
        .unwrap();
    assert!(die.contains("exitCode=2"), "die event attributes: {die}");
    assert!(die.contains("name=ev"), "die event attributes: {die}");

    // Filtered: only volume events.
    let events = d.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=volume",
    ]);
    let text = events.ok();
    assert!(text.contains("volume create v1"), "{}", events.describe());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert_eq!(
            line.split_whitespace().nth(1),
            Some("volume"),
            "type=volume filter let through: {line}\n{}",
            events.describe()
        );
    }
}

/// Needs root. Several `docker run`s at once (each holds three connections): all finish with
/// their own output and exit code.
#[test]
fn parallel_runs() {
    let d = daemon_with_bb();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let d = &d;
                scope.spawn(move || {
                    let script = format!("echo run{i}; exit {i}");
                    let out = d.docker(&["run", "--rm", "bb", "sh", "-c", &script]);
                    (i, out)
                })
            })
            .collect();
        for h in handles {
            let (i, out) = h.join().unwrap();
            out.expect_code(i);
            assert_eq!(out.stdout, format!("run{i}\n"), "{}", out.describe());
        }
    });
    poll_until(
        "--rm containers to be removed",
        Duration::from_secs(10),
        || all_container_ids(&d).is_empty().then_some(()),
    );
}

/// Needs root. Images through the docker CLI: `docker images` lists the import and the built-in
/// `host`, `docker image inspect` shows the imported CMD, `docker rmi` is refused while a
/// container uses the image (409) and works after; `docker restart` gives a new process.
#[test]
fn images_and_restart() {
    let d = daemon_with_bb();
    let ls = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let names: Vec<&str> = ls.ok().lines().collect();
    assert!(
        names.contains(&"bb:latest") && names.contains(&"host:latest"),
        "{names:?}"
    );
    let cmd = d.docker(&["image", "inspect", "--format", "{{json .Config.Env}}", "bb"]);
    assert!(cmd.ok().contains("PATH="), "{}", cmd.describe());

    d.docker(&["run", "-d", "--name", "r1", "bb", "sleep", "1000"])
        .expect_code(0);
    let pid1 = d
        .docker(&["inspect", "--format", "{{.State.Pid}}", "r1"])
        .ok()
        .trim()
        .to_owned();
    d.docker(&["restart", "-t", "1", "r1"]).expect_code(0);
    let pid2 = d
        .docker(&[
            "inspect",
            "--format",
            "{{.State.Pid}} {{.State.Status}}",
            "r1",
        ])
        .ok()
        .trim()
        .to_owned();
    assert!(
        pid2.ends_with("running") && !pid2.starts_with(&format!("{pid1} ")),
        "{pid1} -> {pid2}"
    );

    let refused = d.docker(&["rmi", "bb"]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("is using its referenced image"),
        "{}",
        refused.describe()
    );
    d.docker(&["rm", "-f", "r1"]).expect_code(0);
    d.docker(&["rmi", "bb"]).expect_code(0);
    let ls = d.docker(&["images", "--format", "{{.Repository}}"]);
    assert!(!ls.ok().contains("bb"), "{}", ls.describe());
    let host = d.docker(&["rmi", "host"]);
    assert_ne!(host.code, Some(0), "the built-in image cannot be removed");
}

/// Needs root. `docker volume prune -f` removes only unused anonymous volumes; `-a` also removes
/// unused named ones; a volume in use survives both.
#[test]
fn volume_prune() {
    let d = Daemon::start();
    let anon = d.docker(&["volume", "create"]).ok().trim().to_owned();
    assert_eq!(
        anon.len(),
        64,
        "an unnamed volume gets a 64-hex name: {anon}"
    );
    d.docker(&["volume", "create", "keepme"]).expect_code(0);
    d.docker(&["volume", "create", "used"]).expect_code(0);
    d.docker(&["create", "--name", "user", "-v", "used:/d", "host", "true"])
        .expect_code(0);
    let names = |d: &Daemon| d.docker(&["volume", "ls", "-q"]).ok().to_owned();

    d.docker(&["volume", "prune", "-f"]).expect_code(0);
    let left = names(&d);
    assert!(
        !left.contains(&anon) && left.contains("keepme") && left.contains("used"),
        "{left}"
    );
    d.docker(&["volume", "prune", "-a", "-f"]).expect_code(0);
    let left = names(&d);
    assert!(!left.contains("keepme") && left.contains("used"), "{left}");
}
