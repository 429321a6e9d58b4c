//! `--device` and `--device-cgroup-rule`, end to end: a real `berth daemon` driven by the
//! `docker` CLI (and the raw API for bad input). Harmless devices only: zero, and /dev/fuse
//! opened and closed (nothing is mounted), and a read-only rule for kmsg that nothing opens.
//!
//! Needs root (namespaces, cgroups, BPF), the `docker` CLI and busybox-static.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use berth_tests::{Daemon, write_busybox_rootfs_tar};

fn daemon() -> Daemon {
    let d = Daemon::start();
    let tar = d.dir().join("rootfs.tar");
    write_busybox_rootfs_tar(&tar);
    d.docker(&["import", tar.to_str().unwrap(), "bb:latest"])
        .ok();
    d
}

fn sh(d: &Daemon, id: &str, script: &str) -> berth_tests::CmdOutput {
    d.docker(&["exec", id, "sh", "-c", script])
}

/// Needs root and /dev/fuse (10:229: a device outside Docker's default rules, harmless to open
/// and close). `--device HOST:CONTAINER[:PERMS]` binds the host node into `/dev` where it
/// opens (the rest of `/dev` stays `nodev`), with the permissions asked for enforced by the
/// device cgroup; inspect shows it and a restart keeps it.
#[test]
fn device_is_bound_with_its_permissions_and_kept_across_restart() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "the test needs the host's /dev/fuse"
    );
    let d = daemon();
    let id = d
        .docker(&[
            "run",
            "-d",
            "--device",
            "/dev/zero:/dev/myzero",
            "--device",
            "/dev/fuse:/dev/sub/myfuse:r",
            "bb",
            "sleep",
            "300",
        ])
        .ok()
        .trim()
        .to_owned();
    let zeros = |d: &Daemon| {
        let out = sh(d, &id, "head -c 4 /dev/myzero | od -An -tx1");
        assert_eq!(
            out.ok().split_whitespace().collect::<Vec<_>>(),
            ["00", "00", "00", "00"],
            "{}",
            out.describe()
        );
    };
    zeros(&d);
    // Opened and closed, nothing read or written.
    sh(&d, &id, ": < /dev/sub/myfuse").ok();
    // 'r' only: the device cgroup refuses an open for writing.
    let write = sh(&d, &id, ": > /dev/sub/myfuse");
    assert!(
        !write.success() && write.stderr.contains("Operation not permitted"),
        "{}",
        write.describe()
    );
    // The same device made with mknod in /dev (a nodev tmpfs) still does not open.
    let made = sh(&d, &id, "mknod /dev/z c 1 5 && head -c 1 /dev/z");
    assert!(
        !made.success() && made.stderr.contains("Permission denied"),
        "{}",
        made.describe()
    );

    let devices: serde_json::Value = serde_json::from_str(
        d.docker(&["inspect", "--format", "{{json .HostConfig.Devices}}", &id])
            .ok(),
    )
    .unwrap();
    assert_eq!(
        devices,
        serde_json::json!([
            {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "rwm"},
            {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/sub/myfuse", "CgroupPermissions": "r"},
        ])
    );

    d.docker(&["restart", "-t", "1", &id]).ok();
    zeros(&d);
    d.docker(&["rm", "-f", &id]).ok();

    // With --privileged (every host node in /dev) the bind is made all the same.
    let out = d.docker(&[
        "run",
        "--rm",
        "--privileged",
        "--device",
        "/dev/zero:/dev/other/myzero",
        "bb",
        "sh",
        "-c",
        "head -c 2 /dev/other/myzero | od -An -tx1",
    ]);
    assert_eq!(
        out.ok().split_whitespace().collect::<Vec<_>>(),
        ["00", "00"],
        "{}",
        out.describe()
    );
}

/// The ids of the device programs attached to the cgroup2 directory `dir` itself (the engine's
/// own `BPF_PROG_QUERY`).
fn device_programs(dir: &Path) -> Vec<u32> {
    berth_engine::cgroups::device_programs(dir)
        .unwrap_or_else(|e| panic!("BPF_PROG_QUERY on {}: {e}", dir.display()))
}

/// A running container's device guards: its v1 `devices.list` (if the host has the v1 device
/// controller) and the device programs on its cgroup2 directory (if there is a cgroup2 mount).
fn guards(d: &Daemon, id: &str) -> (Option<String>, Option<Vec<u32>>) {
    let pid = d
        .docker(&["inspect", "--format", "{{.State.Pid}}", id])
        .ok()
        .trim()
        .to_owned();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut list = None;
    let mut programs = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "devices") {
            let dir = Path::new("/sys/fs/cgroup/devices").join(path);
            list = Some(std::fs::read_to_string(dir.join("devices.list")).unwrap());
        } else if controllers.is_empty()
            && let Some(mount) = berth_engine::cgroups::cgroup2_mount()
        {
            programs = Some(device_programs(&mount.join(path)));
        }
    }
    (list, programs)
}

/// Needs root. `--device-cgroup-rule` reaches the kernel: the rule is in the container's v1
/// `devices.list` after Docker's defaults, and its cgroup2 directory gets a program of its own
/// (not the one shared by containers with the default rules); inspect shows the rule.
#[test]
fn device_cgroup_rule_reaches_the_cgroup() {
    let d = daemon();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["bb", "sleep", "300"]);
        d.docker(&args).ok().trim().to_owned()
    };
    let plain = run(&[]);
    let plain2 = run(&[]);
    let ruled = run(&["--device-cgroup-rule", "c 1:11 r"]);
    let (plain_list, plain_progs) = guards(&d, &plain);
    let (_, plain2_progs) = guards(&d, &plain2);
    let (ruled_list, ruled_progs) = guards(&d, &ruled);
    assert!(
        ruled_list.is_some() || ruled_progs.is_some(),
        "neither a v1 device cgroup nor a cgroup2 directory"
    );
    if let (Some(plain), Some(ruled)) = (plain_list, ruled_list) {
        assert!(!plain.lines().any(|l| l == "c 1:11 r"), "{plain}");
        assert!(ruled.lines().any(|l| l == "c 1:11 r"), "{ruled}");
        assert!(ruled.lines().any(|l| l == "c 1:3 rwm"), "{ruled}");
    }
    if let (Some(p), Some(p2), Some(r)) = (plain_progs, plain2_progs, ruled_progs) {
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p, p2, "containers with the default rules share one program");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_ne!(r, p, "the rule's container runs the default program");
    }
    let rules = d
        .docker(&[
            "inspect",
            "--format",
            "{{json .HostConfig.DeviceCgroupRules}}",
            &ruled,
        ])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(rules, r#"["c 1:11 r"]"#);
    for id in [&plain, &plain2, &ruled] {
        d.docker(&["rm", "-f", id]).ok();
    }
}

/// Needs root. A `--device` that is missing or not a device node, and a malformed
/// `--device-cgroup-rule`, are refused at create with 400 naming the path or the rule.
#[test]
fn bad_devices_and_rules_are_refused_at_create() {
    let d = daemon();
    let create = |host_config: serde_json::Value| {
        let body = serde_json::json!({"Image": "bb", "Cmd": ["true"], "HostConfig": host_config});
        d.raw_json("POST", "/containers/create", &body)
    };
    for (path, reason) in [
        ("/dev/berth-no-such-device", "No such file or directory"),
        ("/etc/passwd", "not a device node"),
    ] {
        let r = create(serde_json::json!({"Devices": [
            {"PathOnHost": path, "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}
        ]}));
        let text = r.text();
        assert_eq!(r.status, 400, "{text}");
        assert!(
            text.contains("error gathering device information while adding custom device")
                && text.contains(path)
                && text.contains(reason),
            "{text}"
        );
    }
    let r = create(serde_json::json!({"DeviceCgroupRules": ["c 1:3"]}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("invalid device cgroup rule \\\"c 1:3\\\""),
        "{}",
        r.text()
    );
    let r = create(serde_json::json!({"Devices": [
        {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/z", "CgroupPermissions": "rwx"}
    ]}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("rwx"), "{}", r.text());
    // The docker CLI shows the daemon's reason.
    let cli = d.docker(&[
        "create",
        "--device",
        "/dev/berth-no-such-device",
        "bb",
        "true",
    ]);
    assert!(
        !cli.success() && cli.stderr.contains("/dev/berth-no-such-device"),
        "{}",
        cli.describe()
    );
    let ps = d.docker(&["ps", "-aq"]);
    assert_eq!(ps.ok().trim(), "", "a refused create left a container");
}
