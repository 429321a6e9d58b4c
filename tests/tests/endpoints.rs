//! The endpoints docker-py's suite found missing, each driven by the real docker CLI (and
//! docker-py where its semantics are the point) against a real daemon:
//! pause/unpause (the kernel's freezer state checked), top, update (the live cgroup files
//! checked), container/image/network prune with filters, diff, commit, save/load (Berth's own
//! archives and a multi-layer Docker-style one with whiteouts, and archives that try to escape),
//! and system df.
//!
//! Needs root (the daemon makes namespaces, mounts and cgroups), the `docker` CLI, docker-py and
//! Debian's `busybox-static`; CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{Daemon, poll_until, save_archive, tar_of};

fn daemon_with_bb() -> Daemon {
    let d = Daemon::start();
    d.import_busybox("bb");
    d
}

fn inspect(d: &Daemon, what: &str, format: &str) -> String {
    d.docker(&["inspect", "-f", format, what])
        .ok()
        .trim()
        .to_owned()
}

fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The cgroup directory of `pid` for `controller` (v2: the one directory).
fn cgroup_dir(pid: &str, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let path = path.trim_start_matches('/');
        if cgroup_v2() && controllers.is_empty() {
            return PathBuf::from("/sys/fs/cgroup").join(path);
        }
        if !cgroup_v2() && controllers.split(',').any(|c| c == controller) {
            return PathBuf::from("/sys/fs/cgroup").join(controllers).join(path);
        }
    }
    panic!("no {controller} cgroup for pid {pid} in {text}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Whether the kernel says the container's cgroup is frozen.
fn frozen(pid: &str) -> bool {
    if cgroup_v2() {
        read(&cgroup_dir(pid, "").join("cgroup.events")).contains("frozen 1")
    } else {
        read(&cgroup_dir(pid, "freezer").join("freezer.state")) == "FROZEN"
    }
}

fn run_d(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    d.docker(&all).ok().trim().to_owned()
}

/// Needs root. `docker pause` freezes every process of the container in the kernel (the
/// freezer state of its cgroup says so, and a ticking loop stops advancing its counter file);
/// inspect and ps say paused; a second pause and an unpause of a running container are 409;
/// `docker unpause` thaws it and the loop goes on; `docker stop` of a paused container ends it.
#[test]
fn pause_freezes_and_unpause_thaws() {
    let d = daemon_with_bb();
    let share = d.dir().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let bind = format!("{}:/share", share.display());
    let id = run_d(
        &d,
        &[
            "--name",
            "ticker",
            "-v",
            &bind,
            "bb",
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /share/n; sleep 0.02; done",
        ],
    );
    let count = || {
        std::fs::read_to_string(share.join("n"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    poll_until("ticker running", Duration::from_secs(20), || {
        (count() > 2).then_some(())
    });
    let pid = inspect(&d, "ticker", "{{.State.Pid}}");
    assert!(!frozen(&pid));

    d.docker(&["pause", "ticker"]).ok();
    assert!(
        frozen(&pid),
        "the freezer must say frozen once pause returned"
    );
    assert_eq!(
        inspect(
            &d,
            "ticker",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "paused true true"
    );
    let info = d.raw("GET", "/v1.41/info", None, b"").json();
    assert_eq!(
        (
            info["ContainersPaused"].as_u64(),
            info["ContainersRunning"].as_u64()
        ),
        (Some(1), Some(0)),
        "{info}"
    );
    let ps = d.docker(&[
        "ps",
        "--filter",
        "status=paused",
        "--format",
        "{{.ID}} {{.Status}}",
    ]);
    assert!(ps.ok().contains("(Paused)"), "{}", ps.stdout);
    assert!(id.starts_with(ps.stdout.split_whitespace().next().unwrap()));
    // Frozen: the counter does not move while the kernel keeps the group frozen.
    let at_pause = count();
    for _ in 0..20 {
        assert!(frozen(&pid));
        std::thread::yield_now();
    }
    assert_eq!(count(), at_pause, "a frozen container advanced its counter");

    let exec = d.docker(&["exec", "ticker", "true"]);
    assert!(
        !exec.success() && exec.stderr.contains("is paused"),
        "exec into a frozen container would hang: {}",
        exec.describe()
    );
    let again = d.docker(&["pause", "ticker"]);
    assert!(
        !again.success() && again.stderr.contains("already paused"),
        "{}",
        again.describe()
    );
    d.docker(&["unpause", "ticker"]).ok();
    assert!(!frozen(&pid));
    assert_eq!(
        inspect(&d, "ticker", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    poll_until("ticker resumed", Duration::from_secs(20), || {
        (count() > at_pause + 2).then_some(())
    });
    let again = d.docker(&["unpause", "ticker"]);
    assert!(
        !again.success() && again.stderr.contains("is not paused"),
        "{}",
        again.describe()
    );

    // Stop a paused container: it is thawed so the signal is acted on, and it exits.
    d.docker(&["pause", "ticker"]).ok();
    d.docker(&["stop", "-t", "1", "ticker"]).ok();
    assert_eq!(
        inspect(&d, "ticker", "{{.State.Status}} {{.State.Paused}}"),
        "exited false"
    );
    let stopped = d.docker(&["pause", "ticker"]);
    assert!(
        !stopped.success() && stopped.stderr.contains("is not running"),
        "{}",
        stopped.describe()
    );

    // docker-py's view: status "paused", then "running".
    run_d(&d, &["--name", "py", "bb", "sleep", "300"]);
    let out = d.python(
        "c = client.containers.get('py')\nc.pause(); c.reload(); print(c.status)\nc.unpause(); c.reload(); print(c.status)\nc.kill()",
    );
    assert_eq!(
        out.ok().split_whitespace().collect::<Vec<_>>(),
        ["paused", "running"]
    );
}

/// Needs root. `docker top` lists exactly the container's processes (two here), with `ps`'s
/// titles and the whole command line in the last column; `ps` options pass through; a stopped
/// container is refused.
#[test]
fn top_lists_the_container_processes() {
    let d = daemon_with_bb();
    run_d(
        &d,
        &[
            "--name",
            "t",
            "bb",
            "sh",
            "-c",
            "sleep 601 & exec sleep 602",
        ],
    );
    let out = poll_until("two processes", Duration::from_secs(20), || {
        let out = d.docker(&["top", "t"]).ok().to_owned();
        (out.lines().count() == 3).then_some(out)
    });
    let mut lines = out.lines();
    let titles: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let cmds: Vec<String> = lines
        .map(|l| l.split_whitespace().skip(7).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(cmds.contains(&"sleep 601".to_owned()), "{out}");
    assert!(cmds.contains(&"sleep 602".to_owned()), "{out}");
    let pid = inspect(&d, "t", "{{.State.Pid}}");
    let custom = d.docker(&["top", "t", "-o", "pid,args"]).ok().to_owned();
    assert!(
        custom
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["PID", "COMMAND"]),
        "{custom}"
    );
    assert!(
        custom.lines().any(|l| l.trim_start().starts_with(&pid)),
        "{custom}"
    );
    let r = d.raw(
        "GET",
        "/v1.41/containers/t/top?ps_args=-o%20user",
        None,
        b"",
    );
    assert_eq!(r.status, 400, "no PID column: {}", r.text());
    d.docker(&["kill", "t"]).ok();
    let r = d.raw("GET", "/v1.41/containers/t/top", None, b"");
    assert_eq!(r.status, 409, "{}", r.text());
}

/// Needs root. `docker update` writes the new memory, CPU and pids limits into the running
/// container's cgroup files and inspect shows them; a restart keeps them; the restart policy is
/// updated; settings Berth cannot apply, and a restart policy on an auto-remove container, are
/// 400.
#[test]
fn update_changes_the_live_cgroup_and_the_record() {
    let d = daemon_with_bb();
    run_d(
        &d,
        &["--name", "u", "--memory", "400m", "bb", "sleep", "600"],
    );
    let mem_file = |pid: &str| {
        if cgroup_v2() {
            cgroup_dir(pid, "").join("memory.max")
        } else {
            cgroup_dir(pid, "memory").join("memory.limit_in_bytes")
        }
    };
    let pid = inspect(&d, "u", "{{.State.Pid}}");
    assert_eq!(read(&mem_file(&pid)), (400u64 << 20).to_string());
    d.docker(&[
        "update",
        "--memory",
        "300m",
        "--memory-swap",
        "600m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        "u",
    ])
    .ok();
    assert_eq!(read(&mem_file(&pid)), (300u64 << 20).to_string());
    let (cpu, pids) = if cgroup_v2() {
        let dir = cgroup_dir(&pid, "");
        (read(&dir.join("cpu.max")), read(&dir.join("pids.max")))
    } else {
        (
            read(&cgroup_dir(&pid, "cpu").join("cpu.cfs_quota_us")),
            read(&cgroup_dir(&pid, "pids").join("pids.max")),
        )
    };
    assert!(cpu.starts_with("50000"), "{cpu}");
    assert_eq!(pids, "50");
    assert_eq!(
        inspect(
            &d,
            "u",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        format!("{} 500000000 50 on-failure:3", 300u64 << 20)
    );
    d.docker(&["restart", "-t", "1", "u"]).ok();
    let pid2 = inspect(&d, "u", "{{.State.Pid}}");
    assert_ne!(pid, pid2);
    assert_eq!(
        read(&mem_file(&pid2)),
        (300u64 << 20).to_string(),
        "the update outlives a restart"
    );

    let r = d.raw_json(
        "POST",
        "/v1.41/containers/u/update",
        &serde_json::json!({"BlkioWeight": 300}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains("BlkioWeight"), "{}", r.text());
    let r = d.raw_json(
        "POST",
        "/v1.41/containers/u/update",
        &serde_json::json!({"Memory": 1024}),
    );
    assert_eq!(r.status, 400, "below the 6 MB minimum: {}", r.text());
    d.docker(&["create", "--name", "rm", "--rm", "bb", "true"])
        .ok();
    let out = d.docker(&["update", "--restart", "always", "rm"]);
    assert!(
        !out.success() && out.stderr.contains("AutoRemove"),
        "{}",
        out.describe()
    );

    // docker-py: cpu_shares 2 -> 3.
    let out = d.python(
        "c = client.containers.run('bb', 'sleep 60', detach=True, cpu_shares=2)\nc.update(cpu_shares=3); c.reload()\nprint(c.attrs['HostConfig']['CpuShares']); c.kill()",
    );
    assert_eq!(out.ok().trim(), "3");
}

/// Needs root. Prune removes only what nothing uses, honours `label` and `until` filters, and
/// answers with Docker's keys: stopped containers (never a running one), unused images (only
/// untagged ones unless `dangling=false`, never one a container was created from), networks
/// with nothing connected.
#[test]
fn prune_removes_only_what_nothing_uses() {
    let d = daemon_with_bb();
    let c1 = d.docker(&[
        "run",
        "--label",
        "team=a",
        "bb",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /blob",
    ]);
    c1.ok();
    let c1 = d
        .docker(&["ps", "-aq", "--no-trunc", "--filter", "label=team=a"])
        .ok()
        .trim()
        .to_owned();
    d.docker(&["create", "--label", "team=b", "--name", "b", "bb", "true"])
        .ok();
    let running = run_d(&d, &["--label", "team=a", "bb", "sleep", "600"]);

    let r = d.raw(
        "POST",
        "/v1.41/containers/prune?filters=%7B%22label%22%3A%5B%22team%3Da%22%5D%7D",
        None,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["ContainersDeleted"], serde_json::json!([c1]), "{body}");
    assert!(
        body["SpaceReclaimed"].as_u64().unwrap() >= 100_000,
        "{body}"
    );
    let r = d.raw(
        "POST",
        "/v1.41/containers/prune?filters=%7B%22until%22%3A%5B%221h%22%5D%7D",
        None,
        b"",
    );
    assert_eq!(
        r.json()["ContainersDeleted"],
        serde_json::json!([]),
        "b is younger than 1h"
    );
    let out = d.docker(&["container", "prune", "-f"]).ok().to_owned();
    assert!(out.contains("Total reclaimed space"), "{out}");
    let left = d
        .docker(&["ps", "-aq", "--no-trunc"])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(left, running, "only the running container stays");
    let r = d.raw(
        "POST",
        "/v1.41/containers/prune?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        None,
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // Images: `lonely` is tagged and unused, `bb` is used by the running container.
    let tar = d.dir().join("lonely.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_500_000_000);
        h.set_cksum();
        b.append_data(&mut h, "hello", &b"hello"[..]).unwrap();
        b.finish().unwrap();
    }
    d.docker(&["import", tar.to_str().unwrap(), "lonely"]).ok();
    let lonely = inspect(&d, "lonely", "{{.Id}}");
    let r = d.raw("POST", "/v1.41/images/prune", None, b"");
    assert_eq!(
        r.json()["ImagesDeleted"],
        serde_json::json!([]),
        "dangling only: {}",
        r.text()
    );
    let r = d.raw(
        "POST",
        "/v1.41/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D",
        None,
        b"",
    );
    let body = r.json();
    assert_eq!(
        body["ImagesDeleted"],
        serde_json::json!([{"Untagged": "lonely:latest"}, {"Deleted": lonely}]),
        "{body}"
    );
    assert!(body["SpaceReclaimed"].as_u64().unwrap() > 0);
    inspect(&d, "bb", "{{.Id}}");

    // Networks: `used` has a container configured to join it, `idle` nothing.
    d.docker(&["network", "create", "idle"]).ok();
    d.docker(&["network", "create", "--label", "keep=1", "kept"])
        .ok();
    d.docker(&["network", "create", "used"]).ok();
    d.docker(&["create", "--network", "used", "bb", "true"])
        .ok();
    let r = d.raw(
        "POST",
        "/v1.41/networks/prune?filters=%7B%22label!%22%3A%5B%22keep%22%5D%7D",
        None,
        b"",
    );
    assert_eq!(
        r.json()["NetworksDeleted"],
        serde_json::json!(["idle"]),
        "{}",
        r.text()
    );
    let nets = d
        .docker(&["network", "ls", "--format", "{{.Name}}"])
        .ok()
        .to_owned();
    assert!(
        nets.contains("kept") && nets.contains("used") && !nets.contains("idle"),
        "{nets}"
    );
}

/// Needs root. `docker diff` reports what the container added, changed and deleted, with parent
/// directories as changed, and none of the runtime's mount points; docker-py's exact
/// expectation (`touch /test` gives only `A /test`) holds.
#[test]
fn diff_reports_added_changed_and_deleted() {
    let d = daemon_with_bb();
    d.docker(&[
        "run", "--name", "c", "-v", "/data", "bb", "sh", "-c",
        "touch /new && echo x >> /etc/passwd && rm /usr/bin/env && mkdir -p /tmp/a/b && touch /tmp/a/b/f",
    ])
    .ok();
    let out = d.docker(&["diff", "c"]).ok().to_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "C /etc",
            "C /etc/passwd",
            "A /new",
            "C /tmp",
            "A /tmp/a",
            "A /tmp/a/b",
            "A /tmp/a/b/f",
            "C /usr",
            "C /usr/bin",
            "D /usr/bin/env",
        ],
        "{out}"
    );
    let out = d.python(
        "c = client.containers.run('bb', 'touch /test', detach=True)\nc.wait()\nprint(json.dumps(c.diff()))",
    );
    assert_eq!(out.ok().trim(), r#"[{"Path": "/test", "Kind": 1}]"#);
}

/// Needs root. `docker commit` makes an image of the container's files with its config plus the `-c` changes and `Parent`; the
/// image runs. `docker save` and `docker load` round-trip it by tag, and docker-py's save+load
/// by id gives back the same image id.
#[test]
fn commit_then_save_and_load() {
    let d = daemon_with_bb();
    let bb = inspect(&d, "bb", "{{.Id}}");
    d.docker(&[
        "run",
        "--name",
        "src",
        "--env",
        "FROM_SRC=1",
        "bb",
        "sh",
        "-c",
        "echo hello > /test",
    ])
    .ok();
    let id = d
        .docker(&[
            "commit",
            "-c",
            "EXPOSE 8000",
            "-c",
            r#"CMD ["cat", "/test"]"#,
            "-m",
            "msg",
            "src",
            "img:v1",
        ])
        .ok()
        .trim()
        .to_owned();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        inspect(
            &d,
            "img:v1",
            "{{.Parent}} {{.Comment}} {{json .Config.ExposedPorts}} {{json .Config.Cmd}}"
        ),
        format!(r#"{bb} msg {{"8000/tcp":{{}}}} ["cat","/test"]"#)
    );
    assert!(inspect(&d, "img:v1", "{{json .Config.Env}}").contains("FROM_SRC=1"));
    assert_eq!(d.docker(&["run", "--rm", "img:v1"]).ok(), "hello\n");
    let host_image = d.docker(&["run", "--name", "h", "host", "true"]);
    host_image.ok();
    let out = d.docker(&["commit", "h"]);
    assert!(
        !out.success() && out.stderr.contains("host image"),
        "{}",
        out.describe()
    );

    let archive = d.dir().join("img.tar");
    d.docker(&["save", "-o", archive.to_str().unwrap(), "img:v1"])
        .ok();
    d.docker(&["rmi", "img:v1"]).ok();
    let out = d
        .docker(&["load", "-i", archive.to_str().unwrap()])
        .ok()
        .to_owned();
    assert!(out.contains("Loaded image: img:v1"), "{out}");
    assert_eq!(d.docker(&["run", "--rm", "img:v1"]).ok(), "hello\n");

    let out = d.python(
        "import tempfile\nimg = client.images.get('bb')\nf = tempfile.TemporaryFile()\nfor chunk in img.save(): f.write(chunk)\nf.seek(0)\nloaded = client.images.load(f.read())\nprint(len(loaded), loaded[0].id == img.id)\ntry:\n    client.images.load(b'abc')\nexcept docker.errors.ImageLoadError as e:\n    print('load error')",
    );
    assert_eq!(out.ok().trim(), "1 True\nload error");
}

/// A `docker save` archive with the given layers and a config that runs `cat /kept`.
fn layered_archive(tag: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["cat", "/kept"], "Env": ["PATH=/bin"]}, "rootfs": {"type": "layers", "diff_ids": []}});
    save_archive(tag, layers, config.to_string().as_bytes())
}

/// Needs root. A Docker-style archive with several layers loads as one root: a later layer's
/// whiteout removes a file, an opaque directory hides the lower one's contents. Archives that
/// try to leave their directory (a manifest naming `../`, a layer entry with `..`) are refused
/// and nothing lands outside.
#[test]
fn load_applies_docker_layers_and_refuses_escapes() {
    let d = daemon_with_bb();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let base = tar_of(&[
        ("bin/", b""),
        ("bin/cat", &busybox),
        ("kept", b"kept\n"),
        ("gone", b"x"),
        ("dir/", b""),
        ("dir/old", b"x"),
    ]);
    let top = tar_of(&[
        (".wh.gone", b""),
        ("dir/", b""),
        ("dir/.wh..wh..opq", b""),
        ("dir/new", b"n"),
    ]);
    let archive = d.dir().join("layers.tar");
    std::fs::write(&archive, layered_archive("layered:1", &[base, top])).unwrap();
    let out = d
        .docker(&["load", "-i", archive.to_str().unwrap()])
        .ok()
        .to_owned();
    assert!(out.contains("Loaded image: layered:1"), "{out}");
    assert_eq!(d.docker(&["run", "--rm", "layered:1"]).ok(), "kept\n");
    let ls = d.docker(&["run", "--rm", "layered:1", "cat", "/gone"]);
    assert!(
        !ls.success(),
        "the whiteout must remove /gone: {}",
        ls.describe()
    );
    assert!(
        d.docker(&["run", "--rm", "layered:1", "cat", "/dir/old"])
            .code
            != Some(0)
    );
    assert_eq!(
        d.docker(&["run", "--rm", "layered:1", "cat", "/dir/new"])
            .ok(),
        "n"
    );

    let marker = d.dir().join("escaped");
    let evil_layer = tar_of(&[("../../../../../../../../../../escaped", b"x")]);
    let evil = d.dir().join("evil.tar");
    std::fs::write(
        &evil,
        layered_archive("evil:1", &[evil_layer.clone(), evil_layer]),
    )
    .unwrap();
    let out = d.docker(&["load", "-i", evil.to_str().unwrap()]);
    assert!(!out.success(), "{}", out.describe());
    assert!(!marker.exists() && !Path::new("/escaped").exists());
    let mut manifest_escape = layered_archive("evil:2", &[tar_of(&[("a", b"a")])]);
    let text =
        String::from_utf8_lossy(&manifest_escape).replace("\"config.json\"", "\"../xx.json\"");
    manifest_escape = text.into_bytes();
    let evil2 = d.dir().join("evil2.tar");
    let mut f = std::fs::File::create(&evil2).unwrap();
    f.write_all(&manifest_escape).unwrap();
    let out = d.docker(&["load", "-i", evil2.to_str().unwrap()]);
    assert!(!out.success(), "{}", out.describe());
    assert!(d.docker(&["image", "inspect", "evil:1"]).code != Some(0));
}

/// Needs root. `GET /system/df` measures images, a container's writable layer and a volume's
/// data, with Docker's keys; `docker system df` prints them.
#[test]
fn system_df_measures_images_containers_and_volumes() {
    let d = daemon_with_bb();
    d.docker(&["volume", "create", "vol"]).ok();
    d.docker(&[
        "run",
        "--name",
        "w",
        "-v",
        "vol:/data",
        "bb",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big && head -c 200000 /dev/zero > /data/blob",
    ])
    .ok();
    let r = d.raw("GET", "/v1.41/system/df", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let df = r.json();
    assert!(df["LayersSize"].as_i64().unwrap() > 500_000, "{df}");
    let bb = df["Images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["RepoTags"][0] == "bb:latest")
        .unwrap();
    assert_eq!(bb["Containers"], 1, "{bb}");
    let w = &df["Containers"][0];
    assert!(w["SizeRw"].as_i64().unwrap() >= 300_000, "{w}");
    assert_eq!(w["Names"][0], "/w");
    let v = df["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "vol")
        .unwrap();
    assert!(v["UsageData"]["Size"].as_i64().unwrap() >= 200_000, "{v}");
    assert_eq!(v["UsageData"]["RefCount"], 1);
    assert!(df["BuildCache"].as_array().unwrap().is_empty());
    let out = d.docker(&["system", "df"]).ok().to_owned();
    assert!(
        out.contains("Images") && out.contains("Local Volumes"),
        "{out}"
    );
}

/// Needs root. `POST /volumes/prune` honours `label` filters and reports the space its local
/// volumes held; a volume a stopped container names in its `Binds` is in use and stays.
#[test]
fn volume_prune_filters_and_space() {
    let d = daemon_with_bb();
    for (name, label) in [
        ("keep", "tier=gold"),
        ("drop", "tier=tin"),
        ("held", "tier=tin"),
    ] {
        d.docker(&["volume", "create", "--label", label, name]).ok();
    }
    d.docker(&[
        "run",
        "-v",
        "drop:/data",
        "bb",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /data/x",
    ])
    .ok();
    // The container that wrote to `drop` goes; `held`'s stays (stopped).
    d.docker(&["container", "prune", "-f"]).ok();
    d.docker(&["create", "-v", "held:/data", "bb", "true"]).ok();
    let q = "/v1.41/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%2C%22label%22%3A%5B%22tier%3Dtin%22%5D%7D";
    let r = d.raw("POST", q, None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        body["VolumesDeleted"],
        serde_json::json!(["drop"]),
        "{body}"
    );
    assert!(
        body["SpaceReclaimed"].as_u64().unwrap() >= 100_000,
        "{body}"
    );
    let left = d.docker(&["volume", "ls", "-q"]).ok().to_owned();
    assert!(
        left.contains("keep") && left.contains("held") && !left.contains("drop"),
        "{left}"
    );
    let out = d.docker(&["volume", "rm", "held"]);
    assert!(
        !out.success(),
        "a volume a container names in Binds is in use: {}",
        out.describe()
    );
}

/// Needs root. `docker import -c` applies every change given (the query repeats `changes`),
/// including the ones commit added (`USER`, `EXPOSE`, `LABEL`, ...).
#[test]
fn import_applies_every_change() {
    let d = Daemon::start();
    let tar = d.dir().join("one.tar");
    std::fs::write(&tar, tar_of(&[("hello", b"hi")])).unwrap();
    d.docker(&[
        "import",
        "-c",
        "USER foobar",
        "-c",
        r#"CMD ["echo"]"#,
        "-c",
        "EXPOSE 80/udp",
        "-c",
        "LABEL a=b",
        tar.to_str().unwrap(),
        "changed",
    ])
    .ok();
    assert_eq!(
        inspect(
            &d,
            "changed",
            "{{.Config.User}} {{json .Config.Cmd}} {{json .Config.ExposedPorts}} {{json .Config.Labels}}"
        ),
        r#"foobar ["echo"] {"80/udp":{}} {"a":"b"}"#
    );
    let out = d.docker(&["import", "-c", "ONBUILD x", tar.to_str().unwrap(), "bad"]);
    assert!(
        !out.success() && out.stderr.contains("ONBUILD"),
        "{}",
        out.describe()
    );
}

/// Needs root. An engine killed (SIGKILL) while a container is paused leaves its cgroup frozen;
/// the next boot thaws it, so the old processes die instead of lingering frozen, the record says
/// exited and not paused, and a new start runs unfrozen.
#[test]
fn a_paused_container_survives_an_engine_crash() {
    let mut d = daemon_with_bb();
    run_d(&d, &["--name", "p", "bb", "sleep", "600"]);
    let old = inspect(&d, "p", "{{.State.Pid}}");
    d.docker(&["pause", "p"]).ok();
    assert!(frozen(&old));
    d.kill9();
    d.restart();
    poll_until(
        "the old frozen process ends",
        Duration::from_secs(20),
        || (!Path::new(&format!("/proc/{old}")).exists()).then_some(()),
    );
    assert_eq!(
        inspect(&d, "p", "{{.State.Status}} {{.State.Paused}}"),
        "exited false"
    );
    d.docker(&["start", "p"]).ok();
    let new = inspect(&d, "p", "{{.State.Pid}}");
    assert!(!frozen(&new), "a fresh start must not run frozen");
    assert_eq!(
        inspect(&d, "p", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    d.docker(&["pause", "p"]).ok();
    d.docker(&["unpause", "p"]).ok();
}
