//! Engine API fidelity, third part: what docker-py's integration suite found different from
//! Docker 20.10 after the second part, checked against a real daemon with raw HTTP and the
//! docker CLI: `null` healthcheck durations, exec output framed by the start request's `Tty`,
//! an exec whose executable is missing, `docker cp` on a stopped container, and the
//! `HostConfig` settings Berth now keeps and applies.
//!
//! Needs root (the daemon makes namespaces and mounts): we run as root in CI.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use berth_tests::{Daemon, demux, poll_until};
use serde_json::{Value, json};

fn inspect(d: &Daemon, what: &str) -> Value {
    let r = d.raw("GET", &format!("/v1.41/{what}/json"), None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// `docker run -d --name NAME OPTS bb sleep 1000`: a container that stays up for the probe.
fn sleeper(d: &Daemon, name: &str, opts: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["bb", "sleep", "1000"]);
    d.docker(&args).ok();
}

/// A daemon with busybox imported as `bb` and container `c` running `sleep`.
fn daemon_with_c() -> Daemon {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&["run", "-d", "--name", "c", "bb", "sleep", "1000"])
        .ok();
    d
}

/// `POST /exec/{id}/start` as docker-py sends it (with `Upgrade: tcp`): the status, the
/// content type and everything after the head, read until the engine closes the session.
fn exec_start(d: &Daemon, exec_id: &str, tty: bool) -> (u16, String, Vec<u8>) {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = json!({"Detach": false, "Tty": tty}).to_string();
    write!(
        s,
        "POST /v1.41/exec/{exec_id}/start HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\n\
         Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, buf[split + 4..].to_vec())
}

fn exec_create(d: &Daemon, body: Value) -> String {
    let r = d.raw_json("POST", "/v1.41/containers/c/exec", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["Id"].as_str().unwrap().to_string()
}

/// docker-py sends `null` for every healthcheck duration it was not given; Go reads that as
/// zero (the default), so create must accept it.
#[test]
fn null_healthcheck_durations_read_as_defaults() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let body = json!({
        "Image": "bb", "Cmd": ["sleep", "1000"],
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": null, "Timeout": null,
                        "StartPeriod": null, "Retries": null},
    });
    let r = d.raw_json("POST", "/v1.41/containers/create?name=h", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let hc = inspect(&d, "containers/h")["Config"]["Healthcheck"].clone();
    assert_eq!(hc, json!({"Test": ["CMD-SHELL", "true"]}), "{hc}");
    // Still validated: a wrong type is refused with the field named.
    let body = json!({"Image": "bb", "Healthcheck": {"Test": ["CMD", "true"], "Interval": "1s"}});
    let r = d.raw_json("POST", "/v1.41/containers/create", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains("Interval"), "{}", r.message());
}

/// The start request's `Tty` decides the framing, as in Docker: a tty exec started with
/// `Tty: false` (docker-py's default) is read as frames, pty output on stdout; a plain exec
/// started with `Tty: true` gets its output raw.
#[test]
fn exec_output_is_framed_by_the_start_requests_tty() {
    let d = daemon_with_c();
    let tty_exec = exec_create(
        &d,
        json!({"Cmd": ["printf", "yay"], "Tty": true, "AttachStdout": true, "AttachStderr": true}),
    );
    let (status, ctype, out) = exec_start(&d, &tty_exec, false);
    assert_eq!(status, 101);
    assert_eq!(ctype, "application/vnd.docker.multiplexed-stream");
    assert_eq!(demux(&out), vec![(1, b"yay".to_vec())], "{out:?}");

    let plain = exec_create(
        &d,
        json!({"Cmd": ["sh", "-c", "echo out; sleep 0.2; echo err >&2"],
               "AttachStdout": true, "AttachStderr": true}),
    );
    let (status, ctype, out) = exec_start(&d, &plain, true);
    assert_eq!(status, 101);
    assert_eq!(ctype, "application/vnd.docker.raw-stream");
    assert_eq!(out, b"out\nerr\n", "{:?}", String::from_utf8_lossy(&out));

    // And the usual pairs keep their shapes.
    let plain = exec_create(
        &d,
        json!({"Cmd": ["sh", "-c", "echo out; sleep 0.2; echo err >&2"],
               "AttachStdout": true, "AttachStderr": true}),
    );
    let (_, _, out) = exec_start(&d, &plain, false);
    assert_eq!(
        demux(&out),
        vec![(1, b"out\n".to_vec()), (2, b"err\n".to_vec())]
    );
    let tty_exec = exec_create(
        &d,
        json!({"Cmd": ["printf", "yay"], "Tty": true, "AttachStdout": true}),
    );
    let (_, _, out) = exec_start(&d, &tty_exec, true);
    assert_eq!(out, b"yay");
}

/// An executable that is not there: the session says why (a stdout frame, as Docker writes
/// it), inspect has exit code 127, and `docker exec` exits 127 with the message.
#[test]
fn an_exec_of_a_missing_executable_reports_in_the_stream_and_exits_127() {
    let d = daemon_with_c();
    let id = exec_create(
        &d,
        json!({"Cmd": ["no-such-command"], "AttachStdout": true, "AttachStderr": true}),
    );
    let (status, _, out) = exec_start(&d, &id, false);
    assert_eq!(status, 101);
    let frames = demux(&out);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let (kind, msg) = &frames[0];
    assert_eq!(*kind, 1);
    let msg = String::from_utf8_lossy(msg);
    assert!(
        msg.contains("no-such-command") && msg.contains("executable file not found"),
        "{msg}"
    );
    let info = inspect(&d, &format!("exec/{id}"));
    assert_eq!(info["ExitCode"], 127, "{info}");
    assert_eq!(info["Running"], false, "{info}");

    let out = d.docker(&["exec", "c", "no-such-command"]);
    out.expect_code(127);
    assert!(
        out.stdout.contains("executable file not found"),
        "{}",
        out.describe()
    );
    // A detached start still answers with the error itself.
    let id = exec_create(&d, json!({"Cmd": ["no-such-command"]}));
    let r = d.raw_json(
        "POST",
        &format!("/v1.41/exec/{id}/start"),
        &json!({"Detach": true}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // The container is untouched.
    poll_until("c still running", Duration::from_secs(5), || {
        (inspect(&d, "containers/c")["State"]["Running"] == true).then_some(())
    });
}

/// A link in `EndpointsConfig` on a user network names its target for the linking container
/// (the embedded resolver answers the alias), given at create or at connect; others do not
/// see the alias. A MAC address given at connect to a created container shows before start.
#[test]
fn user_network_links_resolve_and_a_connect_mac_shows_before_start() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&["network", "create", "lnet"]).ok();
    let body = json!({"Image": "bb", "Cmd": ["sleep", "1000"],
        "HostConfig": {"NetworkMode": "lnet"},
        "NetworkingConfig": {"EndpointsConfig": {"lnet": {"Links": ["upstream:bar"]}}}});
    let r = d.raw_json("POST", "/v1.41/containers/create?name=linker", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    d.docker(&["start", "linker"]).ok();
    sleeper(&d, "upstream", &["--network", "lnet"]);
    sleeper(&d, "other", &["--network", "lnet"]);
    let up_ip =
        inspect(&d, "containers/upstream")["NetworkSettings"]["Networks"]["lnet"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string();
    let out = d.docker(&["exec", "linker", "nslookup", "bar"]);
    assert!(
        out.success() && out.stdout.contains(&up_ip),
        "{}",
        out.describe()
    );
    let out = d.docker(&["exec", "other", "nslookup", "bar"]);
    assert!(!out.stdout.contains(&up_ip), "{}", out.describe());

    // At connect: disconnect, connect again with a link.
    d.docker(&["network", "disconnect", "lnet", "other"]).ok();
    let body = json!({"Container": "other", "EndpointConfig": {"Links": ["upstream:baz"]}});
    let r = d.raw_json("POST", "/v1.41/networks/lnet/connect", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let out = d.docker(&["exec", "other", "nslookup", "baz"]);
    assert!(
        out.success() && out.stdout.contains(&up_ip),
        "{}",
        out.describe()
    );

    // MAC address at connect to a created container.
    d.docker(&["create", "--name", "fresh", "bb", "sleep", "1000"])
        .ok();
    let body = json!({"Container": "fresh", "EndpointConfig": {"MacAddress": "02:42:ac:11:00:02"}});
    let r = d.raw_json("POST", "/v1.41/networks/lnet/connect", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let net = inspect(&d, "containers/fresh")["NetworkSettings"]["Networks"]["lnet"].clone();
    assert_eq!(net["MacAddress"], "02:42:ac:11:00:02", "{net}");
    d.docker(&["start", "fresh"]).ok();
    let net = inspect(&d, "containers/fresh")["NetworkSettings"]["Networks"]["lnet"].clone();
    assert_eq!(net["MacAddress"], "02:42:ac:11:00:02", "{net}");
}

/// `--cgroupns private`: the container and its execs see their own cgroup as `/`; `host` (the
/// default) shows the host's path. Inspect says which; other modes are refused. `Isolation`
/// takes Linux's one value, `default`, and refuses the Windows ones.
#[test]
fn cgroupns_private_is_applied_and_isolation_default_is_kept() {
    let d = Daemon::start();
    d.import_busybox("bb");
    // A v1 line is `N:controllers:/path`, v2's `0::/path`: the path follows the second colon.
    let paths = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_owned))
            .collect()
    };
    sleeper(&d, "priv", &["--cgroupns", "private"]);
    sleeper(&d, "shared", &["--cgroupns", "host"]);
    for (name, private) in [("priv", true), ("shared", false)] {
        let mode = inspect(&d, &format!("containers/{name}"))["HostConfig"]["CgroupnsMode"].clone();
        assert_eq!(mode, if private { "private" } else { "host" }, "{name}");
        for how in [
            vec!["exec", name, "cat", "/proc/self/cgroup"],
            vec!["exec", name, "cat", "/proc/1/cgroup"],
        ] {
            let out = d.docker(&how);
            let p = paths(out.ok());
            assert!(!p.is_empty(), "{}", out.describe());
            if private {
                assert!(p.iter().all(|p| p == "/"), "{name}: {p:?}");
            } else {
                assert!(p.iter().any(|p| p.len() > 1), "{name}: {p:?}");
            }
        }
    }
    let r = d.raw_json(
        "POST",
        "/v1.41/containers/create",
        &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"CgroupnsMode": "shared"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.message().contains("cgroup namespace mode"),
        "{}",
        r.message()
    );

    let r = d.raw_json(
        "POST",
        "/v1.41/containers/create?name=iso",
        &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"Isolation": "default"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        inspect(&d, "containers/iso")["HostConfig"]["Isolation"],
        "default"
    );
    let r = d.raw_json(
        "POST",
        "/v1.41/containers/create",
        &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"Isolation": "hyperv"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains("isolation"), "{}", r.message());
}

/// `IPAM.Config[].AuxiliaryAddresses` are kept, shown, and never given to a container (not
/// dynamically, not as a static `--ip`); one outside the subnet is refused.
#[test]
fn auxiliary_addresses_are_kept_and_reserved() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let body = json!({"Name": "auxnet", "IPAM": {"Driver": "default", "Config": [{
        "Subnet": "10.88.0.0/24", "Gateway": "10.88.0.1",
        "AuxiliaryAddresses": {"a": "10.88.0.2", "b": "10.88.0.3"}}]}});
    let r = d.raw_json("POST", "/v1.41/networks/create", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw("GET", "/v1.41/networks/auxnet", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let cfg = r.json()["IPAM"]["Config"].clone();
    assert_eq!(
        cfg,
        json!([{"Subnet": "10.88.0.0/24", "Gateway": "10.88.0.1",
                "AuxiliaryAddresses": {"a": "10.88.0.2", "b": "10.88.0.3"}}]),
        "{cfg}"
    );
    sleeper(&d, "first", &["--network", "auxnet"]);
    let ip = inspect(&d, "containers/first")["NetworkSettings"]["Networks"]["auxnet"]["IPAddress"]
        .clone();
    assert_eq!(
        ip, "10.88.0.4",
        "the first free address after the reserved ones"
    );
    let out = d.docker(&[
        "run",
        "-d",
        "--network",
        "auxnet",
        "--ip",
        "10.88.0.3",
        "bb",
        "sleep",
        "1000",
    ]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("10.88.0.3"), "{}", out.describe());

    let body = json!({"Name": "badaux", "IPAM": {"Config": [{
        "Subnet": "10.89.0.0/24", "AuxiliaryAddresses": {"x": "10.90.0.5"}}]}});
    let r = d.raw_json("POST", "/v1.41/networks/create", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains("auxiliary address"), "{}", r.message());
    let r = d.raw("GET", "/v1.41/networks/badaux", None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
}

/// `--uts host`: the container sees the host's hostname and, without `CAP_SYS_ADMIN`, cannot
/// change it (the probe sets the same name, so it would change nothing even if it passed);
/// a private UTS namespace stays the default; a hostname with `--uts host` is refused.
#[test]
fn uts_mode_host_shares_the_hostname_it_cannot_change() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let out = d.docker(&["run", "--name", "uts", "--uts", "host", "bb", "hostname"]);
    assert_eq!(out.ok().trim(), host);
    assert_eq!(
        inspect(&d, "containers/uts")["HostConfig"]["UTSMode"],
        "host"
    );
    let out = d.docker(&["run", "--rm", "bb", "hostname"]);
    assert_ne!(out.ok().trim(), host);
    let out = d.docker(&[
        "run",
        "--rm",
        "--uts",
        "host",
        "bb",
        "sh",
        "-c",
        "hostname \"$(hostname)\"",
    ]);
    assert!(!out.success(), "{}", out.describe());
    let r = d.raw_json(
        "POST",
        "/v1.41/containers/create",
        &json!({"Image": "bb", "Cmd": ["true"], "Hostname": "x",
                "HostConfig": {"UTSMode": "host"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.message(),
        "Conflicting options: hostname and the UTS mode"
    );
    let r = d.raw_json(
        "POST",
        "/v1.41/containers/create",
        &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"UTSMode": "container:x"}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

/// `--device-cgroup-rule`: the rule is added to the container's device cgroup after Docker's
/// defaults (read back from the host's `devices.list`, cgroup v1) and shown by inspect; a
/// malformed rule is refused.
#[test]
fn device_cgroup_rules_are_added_to_the_device_cgroup() {
    let d = Daemon::start();
    d.import_busybox("bb");
    sleeper(&d, "dev", &["--device-cgroup-rule", "c 7:128 rwm"]);
    let c = inspect(&d, "containers/dev");
    assert_eq!(
        c["HostConfig"]["DeviceCgroupRules"],
        json!(["c 7:128 rwm"]),
        "{c}"
    );
    let id = c["Id"].as_str().unwrap();
    let v1 = std::path::Path::new("/sys/fs/cgroup/devices");
    assert!(
        v1.is_dir(),
        "this test needs the cgroup v1 devices hierarchy (CI and this machine have it)"
    );
    // The engine's cgroup parent is `berth-<hash of its root>`: find the container's dir.
    let list = std::fs::read_dir(v1)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join(id).join("devices.list")).ok())
        .next()
        .unwrap_or_else(|| panic!("no devices cgroup for {id}"));
    assert!(list.lines().any(|l| l == "c 7:128 rwm"), "{list}");
    assert!(
        list.lines().any(|l| l == "c 1:3 rwm"),
        "defaults kept: {list}"
    );
    assert!(
        !list.lines().any(|l| l == "a *:* rwm"),
        "still restricted: {list}"
    );

    for bad in ["c 7:128", "x 1:1 r", "c 1:1 rwx", "c a:1 r"] {
        let r = d.raw_json(
            "POST",
            "/v1.41/containers/create",
            &json!({"Image": "bb", "Cmd": ["true"], "HostConfig": {"DeviceCgroupRules": [bad]}}),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(
            r.message().contains("device cgroup rule"),
            "{}",
            r.message()
        );
    }
}

/// A start without `Upgrade` (a plain HTTP client): `200` and the output as a body that ends
/// when the command ended, framed unless the start's `Tty` is true, as Docker answers; a missing
/// executable is reported the same way.
#[test]
fn exec_start_without_upgrade_answers_200_with_the_output() {
    let d = daemon_with_c();
    let id = exec_create(
        &d,
        json!({"Cmd": ["sh", "-c", "echo out; sleep 0.2; echo err >&2"],
               "AttachStdout": true, "AttachStderr": true}),
    );
    // `raw` sends `Connection: close` and no `Upgrade`, and reads to the end.
    let r = d.raw_json(
        "POST",
        &format!("/v1.41/exec/{id}/start"),
        &json!({"Detach": false, "Tty": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.docker.multiplexed-stream")
    );
    assert_eq!(
        demux(&r.body),
        vec![(1, b"out\n".to_vec()), (2, b"err\n".to_vec())]
    );
    assert_eq!(inspect(&d, &format!("exec/{id}"))["ExitCode"], 0);

    let id = exec_create(&d, json!({"Cmd": ["printf", "raw"], "AttachStdout": true}));
    let r = d.raw_json(
        "POST",
        &format!("/v1.41/exec/{id}/start"),
        &json!({"Detach": false, "Tty": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"raw");

    let id = exec_create(
        &d,
        json!({"Cmd": ["no-such-command"], "AttachStdout": true}),
    );
    let r = d.raw_json(
        "POST",
        &format!("/v1.41/exec/{id}/start"),
        &json!({"Detach": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let frames = demux(&r.body);
    assert!(
        String::from_utf8_lossy(&frames[0].1).contains("executable file not found"),
        "{frames:?}"
    );
    assert_eq!(inspect(&d, &format!("exec/{id}"))["ExitCode"], 127);
}
