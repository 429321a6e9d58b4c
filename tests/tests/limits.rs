//! Resource limits, stats, logs and daemon hygiene, end to end: a real `berth daemon` on a temp
//! socket driven by the real `docker` CLI, docker-py and the raw API; each test runs the fault
//! or the probe for real (an allocation past `-m`, a fork past `--pids-limit`, a `mknod`ed
//! device, a second daemon, a 1 GiB line) and checks the guarantee.
//!
//! Needs root (namespaces, cgroups), the `docker` CLI, docker-py and busybox-static; CI runs it
//! as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::{CmdOutput, Daemon, poll_until, write_busybox_rootfs_tar};

/// Starts a daemon and imports the busybox fixture as `bb:latest` with `docker import`.
fn daemon_with_bb() -> Daemon {
    let d = Daemon::start();
    import_bb(&d);
    d
}

fn import_bb(d: &Daemon) {
    let tar = d.dir().join("rootfs.tar");
    write_busybox_rootfs_tar(&tar);
    let out = d.docker(&["import", tar.to_str().unwrap(), "bb:latest"]);
    assert!(out.success(), "{}", out.describe());
}

fn inspect(d: &Daemon, id: &str, format: &str) -> String {
    let out = d.docker(&["inspect", "--format", format, id]);
    out.ok().trim().to_string()
}

/// Whether the host runs the unified (v2) hierarchy.
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The cgroup directories of process `pid` for the controllers Berth uses, from `/proc/PID/cgroup` (v2: the one
/// directory under the key `""`; on the hybrid layout also its cgroup2 directory, which holds
/// the device program, under the key `"unified"`).
fn cgroups_of(pid: &str) -> Vec<(String, PathBuf)> {
    let text = read(&PathBuf::from(format!("/proc/{pid}/cgroup")));
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let path = path.trim_start_matches('/');
            match (cgroup_v2(), controllers) {
                (true, "") => Some((String::new(), PathBuf::from("/sys/fs/cgroup").join(path))),
                (false, "") => Some((
                    "unified".to_owned(),
                    berth_engine::cgroups::cgroup2_mount()?.join(path),
                )),
                (false, c)
                    if c.split(',')
                        .any(|c| ["memory", "cpu", "cpuacct", "pids", "devices"].contains(&c)) =>
                {
                    Some((
                        c.to_owned(),
                        PathBuf::from("/sys/fs/cgroup").join(c).join(path),
                    ))
                }
                _ => None,
            }
        })
        .collect()
}

/// The directory of `controller` among [`cgroups_of`] (the only one on v2).
fn dir_of(cgroups: &[(String, PathBuf)], controller: &str) -> PathBuf {
    cgroups
        .iter()
        .find(|(c, _)| c.is_empty() || c.split(',').any(|c| c == controller))
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no {controller} cgroup in {cgroups:?}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// `docker run --name NAME -m 32m bb dd bs=BS count=1`: one allocation of `bs` bytes under a
/// 32 MiB memory limit.
fn dd_under_32m(d: &Daemon, name: &str, bs: &str) -> CmdOutput {
    let bs = format!("bs={bs}");
    d.docker(&[
        "run",
        "--name",
        name,
        "-m",
        "32m",
        "bb",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        &bs,
        "count=1",
    ])
}

/// Needs root. `-m 32m` and a 100 MB allocation: the kernel's OOM killer ends the container,
/// which exits 137 with `State.OOMKilled: true`, as with Docker.
#[test]
fn memory_limit_oom_kill_is_reported() {
    let d = daemon_with_bb();
    let out = dd_under_32m(&d, "hog", "100M");
    assert_eq!(out.code, Some(137), "{}", out.describe());
    assert_eq!(inspect(&d, "hog", "{{.State.OOMKilled}}"), "true");
    assert_eq!(inspect(&d, "hog", "{{.State.ExitCode}}"), "137");
    assert_eq!(
        inspect(&d, "hog", "{{.HostConfig.Memory}}"),
        (32u64 << 20).to_string()
    );
    // Under the limit: no OOM, and a restart clears the flag.
    let ok = dd_under_32m(&d, "fits", "1M");
    assert_eq!(ok.code, Some(0), "{}", ok.describe());
    assert_eq!(inspect(&d, "fits", "{{.State.OOMKilled}}"), "false");
}

/// Needs root. `--pids-limit 10`: the eleventh task cannot be forked.
#[test]
fn pids_limit_makes_fork_fail() {
    let d = daemon_with_bb();
    let out = d.docker(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "bb",
        "sh",
        "-c",
        "for i in $(seq 20); do sleep 30 & done; echo spawned",
    ]);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("can't fork") || all.contains("Resource temporarily unavailable"),
        "forks beyond the limit should fail:\n{}",
        out.describe()
    );
    // Without the limit the same script forks all twenty.
    let free = d.docker(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "for i in $(seq 20); do sleep 1 & done; echo spawned",
    ]);
    assert!(free.ok().contains("spawned"), "{}", free.describe());
}

/// Needs root. `--cpus`, `--cpu-shares`, `-m` and `--pids-limit` land in the cgroup files, the
/// container's processes are in that cgroup from the start, inspect shows the limits back, and
/// the cgroup is gone after exit and after `rm`.
#[test]
fn limits_are_in_the_cgroup_files_and_the_cgroup_goes_away() {
    let d = daemon_with_bb();
    let id = d
        .docker(&[
            "run",
            "-d",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "-m",
            "64m",
            "--pids-limit",
            "50",
            "bb",
            "sh",
            "-c",
            "cat /proc/self/cgroup; sleep 300",
        ])
        .ok()
        .trim()
        .to_string();
    let pid = inspect(&d, &id, "{{.State.Pid}}");
    let cgroups = cgroups_of(&pid);
    for (_, dir) in &cgroups {
        assert!(
            dir.ends_with(&id),
            "{dir:?} is not the container's own cgroup"
        );
    }
    if cgroup_v2() {
        let dir = dir_of(&cgroups, "memory");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&dir.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&dir.join("pids.max")), "50");
        assert_eq!(read(&dir.join("cpu.weight")), "20");
    } else {
        let cpu = dir_of(&cgroups, "cpu");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        let mem = dir_of(&cgroups, "memory");
        assert_eq!(
            read(&mem.join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&dir_of(&cgroups, "pids").join("pids.max")), "50");
        assert!(read(&dir_of(&cgroups, "devices").join("devices.list")).contains("c 1:3 rwm"));
    }
    // pid 1 (and the shim) are inside from the start: the first line it printed says so.
    let logs = poll_until(
        "the container's /proc/self/cgroup",
        Duration::from_secs(10),
        || {
            let out = d.docker(&["logs", &id]);
            out.stdout.contains(&id).then(|| out.stdout.clone())
        },
    );
    for line in logs
        .lines()
        .filter(|l| l.contains(":memory:") || l.contains(":pids:"))
    {
        assert!(line.ends_with(&format!("/{id}")), "{logs}");
    }
    let procs = read(&dir_of(&cgroups, "memory").join("cgroup.procs"));
    assert!(procs.lines().any(|p| p == pid), "pid {pid} not in {procs}");
    assert_eq!(inspect(&d, &id, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(inspect(&d, &id, "{{.HostConfig.CpuShares}}"), "512");
    assert_eq!(inspect(&d, &id, "{{.HostConfig.PidsLimit}}"), "50");
    assert_eq!(
        inspect(&d, &id, "{{.HostConfig.MemorySwap}}"),
        (128u64 << 20).to_string()
    );

    // Exit: the empty cgroup is removed.
    d.docker(&["kill", &id]).ok();
    d.docker(&["wait", &id]).ok();
    poll_until(
        "cgroups removed after exit",
        Duration::from_secs(10),
        || cgroups.iter().all(|(_, dir)| !dir.exists()).then_some(()),
    );
    // Restart creates them again; rm -f removes them.
    d.docker(&["start", &id]).ok();
    assert!(cgroups.iter().all(|(_, dir)| dir.exists()));
    d.docker(&["rm", "-f", &id]).ok();
    for (c, dir) in &cgroups {
        assert!(!dir.exists(), "{c} cgroup left after rm: {}", dir.display());
    }
    // The engine's parent cgroups (`berth-<hash>`) stay while it runs, for the next container,
    // and go with a graceful stop.
    let parents: Vec<(String, PathBuf)> = cgroups
        .iter()
        .map(|(c, dir)| (c.clone(), dir.parent().expect("parent").to_path_buf()))
        .collect();
    for (c, dir) in &parents {
        assert!(dir.exists(), "{c} parent cgroup removed with the container");
    }
    let mut d = d;
    d.stop(Duration::from_secs(10));
    for (c, dir) in &parents {
        assert!(
            !dir.exists(),
            "{c} parent cgroup left after shutdown: {}",
            dir.display()
        );
    }
}

/// Needs root. A memory limit below Docker's minimum is refused with 400 naming the option and
/// the reason; so are conflicting CPU options.
#[test]
fn bad_limits_are_refused_with_400() {
    let d = daemon_with_bb();
    let small = d.raw_json(
        "POST",
        "/v1.50/containers/create",
        &serde_json::json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"Memory": 4 << 20}}),
    );
    assert_eq!(small.status, 400, "{}", small.text());
    let msg = small.message();
    assert!(msg.contains("Memory") && msg.contains("6MB"), "{msg}");
    let out = d.docker(&["run", "--rm", "-m", "4m", "bb", "true"]);
    assert!(!out.success());
    assert!(out.stderr.contains("6MB"), "{}", out.describe());
    let both = d.raw_json(
        "POST",
        "/v1.50/containers/create",
        &serde_json::json!({"Image": "bb", "Cmd": ["true"],
            "HostConfig": {"NanoCpus": 500_000_000, "CpuQuota": 50_000}}),
    );
    assert_eq!(both.status, 400, "{}", both.text());
    assert!(both.message().contains("--cpus"), "{}", both.message());
}

/// Needs root. In a container (not privileged) a `mknod`ed device node cannot be opened: the
/// device cgroup allows `mknod` but only Docker's default devices for read/write.
#[test]
fn device_cgroup_denies_opening_a_mknod_node() {
    let d = daemon_with_bb();
    // c 1:11 is /dev/kmsg: harmless to open for reading.
    let out = d.docker(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "busybox mknod /kmsg c 1 11 && echo made && dd if=/kmsg of=/dev/null count=0 && echo opened",
    ]);
    assert!(
        out.stdout.contains("made"),
        "mknod itself is allowed:\n{}",
        out.describe()
    );
    assert!(
        !out.stdout.contains("opened"),
        "the node must not open:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Operation not permitted") || out.stderr.contains("Permission denied"),
        "{}",
        out.describe()
    );
    // The default devices still work.
    let ok = d.docker(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "head -c 4 /dev/urandom | wc -c; echo x > /dev/null",
    ]);
    assert_eq!(ok.ok().trim(), "4", "{}", ok.describe());
}

/// Needs root. `docker stats --no-stream` reads the cgroup counters (memory limit, pids), and
/// docker-py's one-shot and streaming stats have Docker's fields; the stream ends when the
/// container stops.
#[test]
fn stats_from_docker_cli_and_docker_py() {
    let d = daemon_with_bb();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "--pids-limit",
        "20",
        "bb",
        "sh",
        "-c",
        "sleep 300 & sleep 300 & while true; do :; done",
    ])
    .ok();
    let out = d.docker_with(
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.PIDs}}|{{.CPUPerc}}",
            "busy",
        ],
        None,
        Duration::from_secs(30),
    );
    let line = out.ok().trim().to_string();
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert_eq!(fields[0], "busy");
    assert!(fields[1].ends_with("/ 64MiB"), "memory limit: {line}");
    assert!(fields[2].parse::<u32>().unwrap() >= 3, "pids: {line}");
    let cpu: f64 = fields[3].trim_end_matches('%').parse().unwrap();
    // Any CPU use shows that the CPU figures have a baseline (the share depends on the load).
    assert!(cpu > 0.0, "a busy loop should show CPU use: {line}");

    // `docker info` reports the limit support (no "No memory limit support" warnings).
    let info = d.docker(&[
        "info",
        "--format",
        "{{.MemoryLimit}} {{.PidsLimit}} {{.CgroupDriver}}",
    ]);
    assert_eq!(
        info.ok().trim(),
        "true true cgroupfs",
        "{}",
        info.describe()
    );
    let py = d.python(
        r#"
c = client.containers.get("busy")
s = c.stats(stream=False)
assert s["memory_stats"]["limit"] == 64 * 1024 * 1024, s["memory_stats"]
assert s["pids_stats"]["limit"] == 20 and s["pids_stats"]["current"] >= 3, s["pids_stats"]
assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0
assert s["cpu_stats"]["online_cpus"] >= 1 and s["cpu_stats"]["system_cpu_usage"] > 0
assert s["precpu_stats"]["cpu_usage"]["total_usage"] > 0, "stream=false has a baseline"
assert s["name"] == "/busy"
one = c.stats(stream=False, one_shot=True)
assert one["preread"].startswith("0001-01-01"), one["preread"]
stream = c.stats(stream=True, decode=True)
first = next(stream)
second = next(stream)
assert second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
assert second["read"] > first["read"]
c.kill()
rest = list(stream)
assert len(rest) <= 2, len(rest)
print("ok")
"#,
    );
    assert_eq!(py.ok().trim(), "ok", "{}", py.describe());
}

/// Needs root. A `berth/<id>` cgroup of a container that no longer exists (left by an engine
/// that was killed) is removed at the next boot; the cgroups of known containers are not.
#[test]
fn stale_cgroups_are_swept_at_boot() {
    let mut d = daemon_with_bb();
    let id = d
        .docker(&["run", "-d", "bb", "sleep", "300"])
        .ok()
        .trim()
        .to_string();
    let cgroups = cgroups_of(&inspect(&d, &id, "{{.State.Pid}}"));
    // A sibling of the container's cgroup, as a killed engine leaves one for a container that
    // was removed since (e.g. its record deleted by hand).
    let stale = format!("{:064x}", u128::from(std::process::id()) * 7919);
    let dirs: Vec<PathBuf> = cgroups
        .iter()
        .map(|(_, dir)| dir.parent().unwrap().join(&stale))
        .collect();
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap();
    }
    d.kill9();
    d.restart();
    for dir in &dirs {
        assert!(!dir.exists(), "{} survived the boot sweep", dir.display());
    }
    assert!(d.log().contains("removed a stale cgroup"), "{}", d.log());
    // The known container's cgroup is not swept; its next start starts afresh, `rm` removes it.
    d.docker(&["start", &id]).ok();
    d.docker(&["rm", "-f", &id]).ok();
    assert!(cgroups.iter().all(|(_, dir)| !dir.exists()));
}

/// The json-file log of container `id` (`LogPath`).
fn log_file(d: &Daemon, id: &str) -> PathBuf {
    PathBuf::from(inspect(d, id, "{{.LogPath}}"))
}

/// Needs root. A 40000-byte line is logged as Docker 20.10's json-file does: two 16 KiB partial
/// entries without a newline and the rest with it; `docker logs` prints the line back whole.
#[test]
fn long_lines_are_split_at_16k_with_partial_entries() {
    let d = daemon_with_bb();
    let id = d
        .docker(&[
            "run",
            "-d",
            "bb",
            "sh",
            "-c",
            "head -c 40000 /dev/zero | tr '\\0' a; echo; echo short",
        ])
        .ok()
        .trim()
        .to_string();
    d.docker(&["wait", &id]).ok();
    let text = std::fs::read_to_string(log_file(&d, &id)).unwrap();
    let logs: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["log"].as_str().unwrap().to_string()
        })
        .collect();
    let lens: Vec<usize> = logs.iter().map(String::len).collect();
    assert_eq!(lens, [16384, 16384, 40000 - 2 * 16384 + 1, 6], "{lens:?}");
    assert!(!logs[0].ends_with('\n') && logs[2].ends_with('\n'));
    let out = d.docker(&["logs", &id]);
    assert_eq!(out.ok(), format!("{}\nshort\n", "a".repeat(40000)));
}

/// Needs root. `docker logs --tail 2` of a 300000-line log prints the last two lines (read from
/// the end of the file).
#[test]
fn tail_of_a_big_log() {
    let d = daemon_with_bb();
    let id = d
        .docker(&["run", "-d", "bb", "seq", "300000"])
        .ok()
        .trim()
        .to_string();
    d.docker(&["wait", &id]).ok();
    let out = d.docker(&["logs", "--tail", "2", &id]);
    assert_eq!(out.ok(), "299999\n300000\n");
    let none = d.docker(&["logs", "--tail", "0", &id]);
    assert_eq!(none.ok(), "");
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Needs root. A container writes 1 GiB without a newline: the daemon's memory stays bounded
/// (sampled from /proc/PID/status while it runs) and the log gets all of it, in 16 KiB entries.
#[test]
fn one_gib_without_newline_keeps_the_daemon_small() {
    const BOUND_KIB: u64 = 200 * 1024;
    let d = daemon_with_bb();
    let pid = d.pid().unwrap();
    let id = d
        .docker(&[
            "run",
            "-d",
            "bb",
            "sh",
            "-c",
            "head -c 1073741824 /dev/zero | tr '\\0' a",
        ])
        .ok()
        .trim()
        .to_string();
    let log = log_file(&d, &id);
    let mut peak = 0;
    let mut samples = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        peak = peak.max(rss_kib(pid));
        samples += 1;
        let running = inspect(&d, &id, "{{.State.Running}}") == "true";
        if !running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still writing after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    peak = peak.max(rss_kib(pid));
    assert!(
        samples >= 3,
        "too few samples ({samples}) to bound the peak"
    );
    assert!(
        peak < BOUND_KIB,
        "daemon RSS peaked at {peak} KiB (bound {BOUND_KIB} KiB)"
    );
    // All of it is in the log: 65536 partial entries of 16 KiB.
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size > 1 << 30, "log is only {size} bytes");
    let text = {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&log).unwrap();
        f.seek(SeekFrom::End(-20_000)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    };
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["log"].as_str().unwrap(), "a".repeat(16384));
    let out = d.docker(&["logs", "--tail", "1", &id]);
    assert_eq!(out.ok().len(), 16384);
    eprintln!("1 GiB line: daemon RSS peak {peak} KiB over {samples} samples");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Needs root. The state root is 0711, the directories under it and each container's 0700
/// (fixed at boot too), the API socket 0660 owned by root and `--group`.
#[test]
fn root_and_socket_modes() {
    use std::os::unix::fs::MetadataExt;
    let mut d = Daemon::start_with(|_| vec!["--group".into(), "nogroup".into()]);
    import_bb(&d);
    let id = d.docker(&["create", "bb", "true"]).ok().trim().to_string();
    let root = d.root();
    assert_eq!(mode(&root), 0o711);
    let container = root.join("containers").join(&id);
    assert_eq!(mode(&container), 0o700);
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            assert_eq!(mode(&entry.path()), 0o700, "{}", entry.path().display());
        }
    }
    let socket = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o660);
    assert_eq!((socket.uid(), socket.gid()), (0, 65534));
    // A record from before the rule (or a chmod by hand) is fixed at the next boot.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&container, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d.stop(Duration::from_secs(20));
    d.restart();
    assert_eq!(mode(&root), 0o711);
    assert_eq!(mode(&container), 0o700);
}

/// Needs root. A second daemon on the same root, or on a socket a daemon still serves, refuses
/// to start, naming the first daemon's pid, and leaves the first one's socket alone.
#[test]
fn a_second_daemon_is_refused_naming_the_first_pid() {
    let d = Daemon::start();
    let pid = d.pid().unwrap().to_string();
    let second = |root: &Path, socket: &Path| {
        let mut cmd = std::process::Command::new(berth_tests::berth_binary());
        cmd.arg("daemon")
            .arg("--root")
            .arg(root)
            .arg("--host")
            .arg(format!("unix://{}", socket.display()));
        berth_tests::run_command(cmd, None, Duration::from_secs(30))
    };
    let same_root = second(&d.root(), &d.dir().join("other.sock"));
    assert!(!same_root.success(), "{}", same_root.describe());
    assert!(
        same_root.stderr.contains(&format!("pid {pid}")) && same_root.stderr.contains("root"),
        "{}",
        same_root.describe()
    );
    let same_socket = second(&d.dir().join("root2"), &d.socket());
    assert!(!same_socket.success(), "{}", same_socket.describe());
    assert!(
        same_socket.stderr.contains(&format!("pid {pid}")) && same_socket.stderr.contains("socket"),
        "{}",
        same_socket.describe()
    );
    // The first daemon still serves on its socket.
    let out = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(out.ok().trim(), "1.50");
}

/// The `Cpus_allowed_list` line of `/proc/PID/status` (`self` or a pid) inside container `name`.
fn cpus_allowed(d: &Daemon, name: &str, pid: &str) -> String {
    let status = format!("/proc/{pid}/status");
    let out = d.docker(&["exec", name, "grep", "Cpus_allowed_list", &status]);
    out.ok().split_whitespace().nth(1).unwrap().to_owned()
}

/// Needs root. `--cpuset-cpus`: the kernel runs the container (and its execs) on the CPUs given,
/// the last CPU of the host included; without it, on all of them, and (v1) outside the cpuset
/// hierarchy's container directories; inspect shows the list as given; `docker update` moves a
/// running container; a CPU the host lacks or a bad list is a 400 naming the option.
#[test]
fn cpuset_cpus_pins_the_container() {
    let d = daemon_with_bb();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let last = (cpus - 1).to_string();
    let all = if cpus == 1 {
        "0".to_owned()
    } else {
        format!("0-{last}")
    };
    for (name, list) in [("pin0", "0"), ("pinlast", last.as_str())] {
        d.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--cpuset-cpus",
            list,
            "bb",
            "sleep",
            "1000",
        ])
        .ok();
        assert_eq!(cpus_allowed(&d, name, "1"), list);
        assert_eq!(cpus_allowed(&d, name, "self"), list, "an exec");
        assert_eq!(inspect(&d, name, "{{.HostConfig.CpusetCpus}}"), list);
    }
    let out = d.docker(&[
        "run",
        "--rm",
        "--cpuset-cpus",
        "0",
        "bb",
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(out.ok().split_whitespace().nth(1), Some("0"));
    d.docker(&["run", "-d", "--name", "free", "bb", "sleep", "1000"])
        .ok();
    assert_eq!(cpus_allowed(&d, "free", "1"), all);
    if !cgroup_v2() {
        let cpuset_line = |name: &str| {
            let pid = inspect(&d, name, "{{.State.Pid}}");
            let text = read(&PathBuf::from(format!("/proc/{pid}/cgroup")));
            let line = text.lines().find(|l| l.contains(":cpuset:")).unwrap();
            line.to_owned()
        };
        let id = inspect(&d, "pin0", "{{.Id}}");
        assert!(
            cpuset_line("pin0").ends_with(&id),
            "{}",
            cpuset_line("pin0")
        );
        let free = cpuset_line("free");
        assert!(
            !free.contains("berth"),
            "a plain container joined a cpuset: {free}"
        );
    }
    // update: a running container without a cpuset gets one, live.
    d.docker(&["update", "--cpuset-cpus", &last, "free"]).ok();
    assert_eq!(cpus_allowed(&d, "free", "1"), last);
    assert_eq!(inspect(&d, "free", "{{.HostConfig.CpusetCpus}}"), last);
    let out = d.docker(&["update", "--cpuset-cpus", "0-4000", "free"]);
    assert!(!out.success(), "{}", out.describe());
    for (field, list, why) in [
        ("CpusetCpus", "0-4000", "Requested CPUs are not available"),
        ("CpusetCpus", "1-0", "Invalid value 1-0 for cpuset cpus"),
        (
            "CpusetMems",
            "4000",
            "Requested memory nodes are not available",
        ),
    ] {
        let r = d.raw_json(
            "POST",
            "/v1.50/containers/create",
            &serde_json::json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {field: list}}),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        let msg = r.message();
        assert!(msg.contains(field) && msg.contains(why), "{msg}");
    }
    d.docker(&["rm", "-f", "pin0", "pinlast", "free"]).ok();
}
