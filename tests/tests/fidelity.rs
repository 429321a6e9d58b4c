//! Engine API fidelity: answers Docker clients rely on, checked against a real daemon.
//!
//! - swarm, node, service, task, secret and config endpoints answer 503 as a Docker engine
//!   outside any swarm does (Berth never joins one), with Docker's messages;
//! - `GET /info` carries every key of Docker's `SystemInfo` that clients index (`Debug`, …).
//!
//! Needs root (the daemon makes namespaces and mounts): we run as root in CI.

use berth_tests::Daemon;

/// `POST /swarm/leave` answers 503 "not part of a swarm" (docker-py's `leave_swarm(force=True)`
/// treats that as success); every other swarm-mode endpoint answers 503 "not a swarm manager".
#[test]
fn swarm_endpoints_answer_503_as_a_non_swarm_docker() {
    let d = Daemon::start();
    let r = d.raw("POST", "/v1.41/swarm/leave?force=1", None, b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["message"], "This node is not part of a swarm");
    for (method, path) in [
        ("GET", "/v1.41/swarm"),
        ("POST", "/v1.41/swarm/join"),
        ("GET", "/v1.41/nodes"),
        ("GET", "/v1.41/services"),
        ("GET", "/v1.41/services/abc"),
        ("GET", "/v1.41/tasks"),
        ("GET", "/v1.41/secrets"),
        ("GET", "/v1.41/configs/xyz"),
    ] {
        let r = d.raw(method, path, None, b"");
        assert_eq!(r.status, 503, "{method} {path}: {}", r.text());
        let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            msg.starts_with("This node is not a swarm manager."),
            "{method} {path}: {msg}"
        );
    }
    let r = d.raw("POST", "/v1.41/swarm/init", None, b"{}");
    assert_eq!(r.status, 503, "{}", r.text());
}

/// `GET /info` has Docker's SystemInfo keys, with the types clients expect.
#[test]
fn info_has_docker_system_info_keys() {
    let d = Daemon::start();
    let r = d.raw("GET", "/v1.41/info", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let info = r.json();
    assert!(info["Debug"].is_boolean(), "{info}");
    for key in [
        "ID",
        "Containers",
        "Images",
        "Driver",
        "DriverStatus",
        "DockerRootDir",
        "Plugins",
        "MemoryLimit",
        "SwapLimit",
        "CpuCfsPeriod",
        "CpuCfsQuota",
        "CPUShares",
        "CPUSet",
        "PidsLimit",
        "OomKillDisable",
        "NFd",
        "NGoroutines",
        "SystemTime",
        "LoggingDriver",
        "CgroupDriver",
        "CgroupVersion",
        "NEventsListener",
        "KernelVersion",
        "OperatingSystem",
        "OSType",
        "Architecture",
        "NCPU",
        "MemTotal",
        "Name",
        "Labels",
        "ExperimentalBuild",
        "ServerVersion",
        "Runtimes",
        "DefaultRuntime",
        "Swarm",
        "LiveRestoreEnabled",
        "SecurityOptions",
        "Warnings",
    ] {
        assert!(info.get(key).is_some(), "GET /info lacks {key}: {info}");
    }
}

/// Container inspect carries Docker's whole `HostConfig` shape (Docker 20.10 reports every one of
/// these keys), with values that describe what Berth does, and keeps the ones the create set.
#[test]
fn inspect_has_docker_host_config_keys() {
    let d = Daemon::start();
    let r = d.raw(
        "POST",
        "/v1.41/containers/create?name=shape",
        Some("application/json"),
        br#"{"Image":"host","Cmd":["true"],"HostConfig":{"Privileged":true}}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw("GET", "/v1.41/containers/shape/json", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let inspect = r.json();
    let hc = &inspect["HostConfig"];
    assert_eq!(hc["Privileged"], true, "{hc}");
    for key in [
        "Tmpfs",
        "CpuShares",
        "CpusetCpus",
        "PidMode",
        "UTSMode",
        "IpcMode",
        "Memory",
        "MemorySwappiness",
        "Isolation",
        "CgroupnsMode",
        "DeviceCgroupRules",
        "VolumesFrom",
        "Links",
        "Dns",
        "ExtraHosts",
        "ShmSize",
        "PidsLimit",
        "Ulimits",
        "NanoCpus",
    ] {
        assert!(hc.get(key).is_some(), "HostConfig lacks {key}: {hc}");
    }
    assert!(inspect["Config"].get("OnBuild").is_some(), "{inspect}");
}

/// `POST /images/{name}/tag` adds a name the image answers to (201); a missing image is 404;
/// the built-in `host` image cannot be tagged (403).
#[test]
fn image_tag_adds_a_name() {
    let d = Daemon::start();
    d.import_busybox("tagme:v1");
    let r = d.raw(
        "POST",
        "/v1.41/images/tagme:v1/tag?repo=example/other&tag=v2",
        None,
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw("GET", "/v1.41/images/example/other:v2/json", None, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let tags = r.json()["RepoTags"].clone();
    assert!(
        tags.as_array().is_some_and(|t| t.len() == 2),
        "both names: {tags}"
    );
    let r = d.raw("POST", "/v1.41/images/nosuch/tag?repo=x", None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = d.raw("POST", "/v1.41/images/host/tag?repo=x", None, b"");
    assert_eq!(r.status, 403, "{}", r.text());
}

/// `GET /images/json` with a `reference` filter lists only the images that name matches.
#[test]
fn image_list_reference_filter() {
    let d = Daemon::start();
    d.import_busybox("one:v1");
    d.import_busybox("two:v1");
    let r = d.raw(
        "GET",
        "/v1.41/images/json?filters=%7B%22reference%22%3A%5B%22one%22%5D%7D",
        None,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    let tags: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["RepoTags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    assert!(tags.contains(&"one:v1".to_owned()), "{list}");
    assert!(!tags.iter().any(|t| t == "host:latest"), "{list}");
}
