//! `berth plugin check --image IMG -- CMD` runs the plugin the way `plugin load` does, without a
//! daemon: a container of the engine's runtime (pid 1 of its own pid namespace, its own hostname,
//! the image's root filesystem as an overlay), the plugin's socket directory bind-mounted at
//! `/var/run/docker`; and it leaves nothing behind, whether the check passes, the plugin exits
//! before serving, or the check is interrupted with Ctrl-C.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::{CmdOutput, Daemon, berth_binary, example_plugin, mounts_under, run_command};

/// Runs `berth plugin check --root ROOT ARGS…` (no daemon involved).
fn check(root: &Path, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(berth_binary());
    cmd.args(["plugin", "check", "--root"]).arg(root).args(args);
    run_command(cmd, None, Duration::from_secs(180))
}

/// What the check says about the container it started: (12-hex id, host pid, work directory).
fn container_line(stderr: &str) -> (String, i32, PathBuf) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("plugin container ") && l.contains("work directory"))
        .unwrap_or_else(|| panic!("no container line in:\n{stderr}"));
    let id = line["plugin container ".len()..][..12].to_owned();
    let pid = line
        .split(", pid ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let dir = PathBuf::from(line.rsplit("work directory ").next().unwrap());
    (id, pid, dir)
}

/// Cgroup directories named after container `id` (a 12-hex prefix), under any hierarchy (v1
/// `/sys/fs/cgroup/<controller>/berth-*/<id>`, v2 `/sys/fs/cgroup/berth-*/<id>`).
fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name.starts_with(id) {
                found.push(e.path());
            } else if depth < 2 && (depth == 0 || name.starts_with("berth")) {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    found
}

/// Asserts the container and everything it used are gone: its process, its cgroup, its work
/// directory (the socket directory and the overlay's upper and work dirs were in it) and any
/// mount below it.
#[track_caller]
fn assert_nothing_left(id: &str, pid: i32, dir: &Path) {
    assert!(cgroups_of(id).is_empty(), "{:?}", cgroups_of(id));
    let alive = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|s| !s.contains("State:\tZ"));
    assert!(!alive, "container pid {pid} still runs");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(mounts_under(dir).is_empty(), "{:?}", mounts_under(dir));
}

/// Needs root. The example flocker plugin, checked as a container of the `host` image: the command
/// proves it runs as pid 1 of its own pid namespace with the check's hostname, and that its writes
/// land in the container's own root (the host's `/` stays untouched); the check passes and nothing
/// is left.
#[test]
fn check_image_runs_the_plugin_in_a_container_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let marker = format!("/berth-check-marker-{}", std::process::id());
    let flocker = example_plugin("flocker").display().to_string();
    let script = format!(
        "test $$ = 1 || {{ echo \"not pid 1 but $$\" >&2; exit 9; }}; \
         case $(hostname) in berth-check-*) ;; *) echo \"hostname $(hostname)\" >&2; exit 8;; esac; \
         touch {marker} || exit 7; \
         exec {flocker} --storage /tmp/flocker-check-storage"
    );
    let out = check(root.path(), &["--image", "host", "--", "sh", "-c", &script]);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains("result: PASS"), "{}", out.describe());
    let (id, pid, dir) = container_line(&out.stderr);
    assert_eq!(id.len(), 12);
    assert!(
        out.stderr
            .contains(&format!("of image host: hostname berth-check-{id}")),
        "{}",
        out.describe()
    );
    // The plugin served /var/run/docker/plugin.sock inside: the socket dir of the work directory.
    assert!(
        out.stdout.contains(&format!(
            "plugin socket: {}/socket/plugin.sock",
            dir.display()
        )),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr
            .contains(&format!("plugin container {id} stopped and removed")),
        "{}",
        out.describe()
    );
    assert!(
        !Path::new(&marker).exists(),
        "the plugin wrote to the host's root"
    );
    assert_nothing_left(&id, pid, &dir);
}

/// Needs root. The image's root filesystem, looked up read-only in a running daemon's state root:
/// a busybox image has busybox and no python. A plugin that exits before serving its socket fails
/// the check at once (exit 2) with its exit code and output, and nothing is left.
#[test]
fn check_image_uses_the_image_rootfs_and_reports_an_early_exit() {
    let d = Daemon::start();
    d.import_busybox("checkbox");
    let out = check(
        &d.root(),
        &[
            "--image",
            "checkbox",
            "--",
            "sh",
            "-c",
            "test -e /bin/busybox && test ! -e /usr/bin/python3 && echo image-rootfs-ok >&2; exit 3",
        ],
    );
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("the plugin container exited with code 3 before serving"),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("image-rootfs-ok"), "{}", out.describe());
    let (id, pid, dir) = container_line(&out.stderr);
    assert_nothing_left(&id, pid, &dir);
    // The daemon's own state is untouched: it still lists the image and runs containers.
    d.docker(&["run", "--rm", "checkbox", "true"])
        .expect_code(0);

    let none = check(&d.root(), &["--image", "nosuch", "--", "true"]);
    none.expect_code(2);
    assert!(
        none.stderr.to_lowercase().contains("no such image"),
        "{}",
        none.describe()
    );
}

/// Needs root. Ctrl-C while the check waits for a plugin that never serves: the container is
/// stopped and removed before the command exits (130).
#[test]
fn an_interrupted_check_removes_its_container() {
    let root = tempfile::tempdir().unwrap();
    let mut child = Command::new(berth_binary())
        .args(["plugin", "check", "--root"])
        .arg(root.path())
        .args([
            "--start-timeout",
            "120s",
            "--image",
            "host",
            "--",
            "sleep",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(all.clone());
        }
    });
    // Waits (bounded) until the check says its container runs.
    let mut seen = String::new();
    while !seen.contains("work directory") {
        seen = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no container line; stderr so far:\n{seen}"));
    }
    let (id, pid, dir) = container_line(&seen);
    assert!(dir.exists(), "the work directory exists while it runs");
    assert!(
        !cgroups_of(&id).is_empty(),
        "it runs in a cgroup of its own"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the check did not end after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    while let Ok(s) = rx.recv_timeout(Duration::from_secs(5)) {
        seen = s;
    }
    assert!(seen.contains("stopped and removed"), "{seen}");
    assert_nothing_left(&id, pid, &dir);
}
