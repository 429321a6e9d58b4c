//! Black-box Docker Engine API tests: bollard (the Rust Docker client) and raw HTTP on the socket
//! of a real `berth daemon`. Covers the container lifecycle, list filters, attach framing,
//! volumes, error shapes and codes, name validation, version prefixes, restart policies and
//! `AutoRemove`.
//!
//! Every test here needs root (the daemon makes namespaces and mounts); CI runs them as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use berth_tests::{Daemon, demux, poll_until_async};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use serde_json::json;

fn name_opt(name: &str) -> Option<CreateContainerOptions> {
    Some(CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    })
}

fn body(image: &str, cmd: &[&str]) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// The status code of a bollard error from the server, with the error itself for messages.
fn status_of(err: &BollardError) -> u16 {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => *status_code,
        other => panic!("expected a server error response, got {other:?}"),
    }
}

fn message_of(err: &BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        other => panic!("expected a server error response, got {other:?}"),
    }
}

/// Waits (next exit or not-running) and returns the exit code; bollard turns non-zero exits
/// into `DockerContainerWaitError`.
async fn wait_exit(docker: &Docker, id: &str) -> i64 {
    let mut s = docker.wait_container(
        id,
        Some(WaitContainerOptions {
            condition: "not-running".into(),
        }),
    );
    let res = tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("wait did not answer within 30 s")
        .expect("wait stream ended without a body");
    match res {
        Ok(r) => r.status_code,
        Err(BollardError::DockerContainerWaitError { code, .. }) => code,
        Err(e) => panic!("wait failed: {e:?}"),
    }
}

async fn collect_logs(docker: &Docker, id: &str, follow: bool) -> (String, String) {
    let mut s = docker.logs(
        id,
        Some(LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: "all".into(),
            ..Default::default()
        }),
    );
    let (mut out, mut err) = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(item) = tokio::time::timeout_at(deadline.into(), s.next())
        .await
        .expect("logs did not end within 30 s")
    {
        match item.expect("log frame") {
            LogOutput::StdOut { message } => out.push_str(&String::from_utf8_lossy(&message)),
            LogOutput::StdErr { message } => err.push_str(&String::from_utf8_lossy(&message)),
            other => panic!("unexpected log frame {other:?}"),
        }
    }
    (out, err)
}

async fn list_names(docker: &Docker, all: bool, filters: &[(&str, &str)]) -> Vec<String> {
    let mut f: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in filters {
        f.entry(k.to_string()).or_default().push(v.to_string());
    }
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all,
            filters: (!f.is_empty()).then_some(f),
            ..Default::default()
        }))
        .await
        .expect("list containers");
    list.into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect()
}

/// Needs root. create → start → wait → logs → inspect → list (with filters) → rm, and the
/// 404/409 answers around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle() {
    let d = Daemon::start();
    d.import_busybox("bb:latest");
    let docker = d.bollard();

    let mut cfg = body("bb", &["sh", "-c", "echo hello; echo oops >&2; exit 4"]);
    cfg.labels = Some(HashMap::from([("team".to_string(), "berth".to_string())]));
    let created = docker
        .create_container(name_opt("life"), cfg)
        .await
        .expect("create");
    assert_eq!(created.id.len(), 64, "id is 64 hex: {created:?}");
    assert!(created.id.chars().all(|c| c.is_ascii_hexdigit()));

    let c = docker.inspect_container("life", None).await.unwrap();
    assert_eq!(
        c.state.as_ref().unwrap().status.unwrap().to_string(),
        "created"
    );
    // Another container, created but never started.
    docker
        .create_container(name_opt("idle"), body("bb", &["true"]))
        .await
        .unwrap();

    docker.start_container("life", None).await.expect("start");
    assert_eq!(wait_exit(&docker, &created.id).await, 4);
    // Start of an exited container re-runs it; start twice on a running one is 304 (ok for bollard).

    let (out, err) = collect_logs(&docker, "life", false).await;
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");

    let c = docker.inspect_container("life", None).await.unwrap();
    assert_eq!(c.id.as_deref(), Some(created.id.as_str()));
    assert_eq!(c.name.as_deref(), Some("/life"));
    let state = c.state.unwrap();
    assert_eq!(state.exit_code, Some(4));
    assert_eq!(state.running, Some(false));
    assert_eq!(state.status.unwrap().to_string(), "exited");
    assert_eq!(
        c.host_config.unwrap().log_config.unwrap().typ.as_deref(),
        Some("json-file")
    );
    // Id prefix resolves too.
    let by_prefix = docker
        .inspect_container(&created.id[..12], None)
        .await
        .unwrap();
    assert_eq!(by_prefix.id, c.id);

    // List: exited ones only with all=1; filters by name, status, label, id.
    assert!(list_names(&docker, false, &[]).await.is_empty());
    let mut all = list_names(&docker, true, &[]).await;
    all.sort();
    assert_eq!(all, vec!["/idle", "/life"]);
    assert_eq!(
        list_names(&docker, true, &[("name", "life")]).await,
        vec!["/life"]
    );
    assert_eq!(
        list_names(&docker, true, &[("status", "exited")]).await,
        vec!["/life"]
    );
    assert_eq!(
        list_names(&docker, true, &[("status", "created")]).await,
        vec!["/idle"]
    );
    assert_eq!(
        list_names(&docker, true, &[("label", "team=berth")]).await,
        vec!["/life"]
    );
    assert_eq!(
        list_names(&docker, true, &[("id", &created.id)]).await,
        vec!["/life"]
    );
    let summary = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("name".into(), vec!["life".into()])])),
            ..Default::default()
        }))
        .await
        .unwrap()
        .remove(0);
    assert!(summary.status.unwrap().starts_with("Exited (4)"));
    assert_eq!(summary.image.as_deref(), Some("bb"));

    // Name conflict: 409.
    let err = docker
        .create_container(name_opt("life"), body("bb", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err:?}");

    docker.remove_container("life", None).await.expect("rm");
    docker.remove_container("idle", None).await.expect("rm");
    let err = docker.inspect_container("life", None).await.unwrap_err();
    assert_eq!(status_of(&err), 404);
    let err = docker.remove_container("life", None).await.unwrap_err();
    assert_eq!(status_of(&err), 404);

    // A running container: rm → 409, stop → exited, force rm works.
    let id = docker
        .create_container(name_opt("runner"), body("bb", &["sleep", "1000"]))
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    let err = docker.remove_container(&id, None).await.unwrap_err();
    assert_eq!(status_of(&err), 409, "{err:?}");
    let running = list_names(&docker, false, &[]).await;
    assert_eq!(running, vec!["/runner"]);
    docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .expect("force rm of a running container");
    assert!(list_names(&docker, true, &[]).await.is_empty());
}

/// Needs root. Attach hijack: 101, multiplexed frames for stdout/stderr with `Tty=false`, and the
/// connection closed by the engine once the process exited. Checked raw and through bollard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_stream_framing() {
    let d = Daemon::start();
    d.import_busybox("bb:latest");
    let docker = d.bollard();

    // Raw: exactly what the docker CLI sends.
    let mut cfg = body("bb", &["sh", "-c", "echo out; echo err >&2; echo out2"]);
    cfg.attach_stdout = Some(true);
    cfg.attach_stderr = Some(true);
    let id = docker.create_container(None, cfg.clone()).await.unwrap().id;
    let sock = d.socket();
    let path = format!("/v1.50/containers/{id}/attach?stderr=1&stdout=1&stream=1");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: api.moby.localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    );
    // The attach must be registered before start: the engine registers it before it answers the
    // 101, so the response head is the condition to wait for.
    let (mut s, head) = tokio::task::spawn_blocking(move || request_head(&sock, &request))
        .await
        .unwrap();
    docker.start_container(&id, None).await.unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        let mut buf = head;
        s.read_to_end(&mut buf)
            .expect("the engine must close the attach connection after exit");
        buf
    });
    let buf = tokio::time::timeout(Duration::from_secs(40), reader)
        .await
        .expect("attach did not end")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no response head");
    let head = String::from_utf8_lossy(&buf[..split]);
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "attach must answer 101, got {head:?}"
    );
    let frames = demux(&buf[split + 4..]);
    let stdout: Vec<u8> = frames
        .iter()
        .filter(|(s, _)| *s == 1)
        .flat_map(|(_, p)| p.clone())
        .collect();
    let stderr: Vec<u8> = frames
        .iter()
        .filter(|(s, _)| *s == 2)
        .flat_map(|(_, p)| p.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&stdout), "out\nout2\n");
    assert_eq!(String::from_utf8_lossy(&stderr), "err\n");
    assert_eq!(wait_exit(&docker, &id).await, 0);

    // bollard's attach + stdin: `cat` echoes what we write, and ends on our half-close.
    let mut cfg = body("bb", &["cat"]);
    cfg.attach_stdin = Some(true);
    cfg.attach_stdout = Some(true);
    cfg.attach_stderr = Some(true);
    cfg.open_stdin = Some(true);
    cfg.stdin_once = Some(true);
    let id = docker.create_container(None, cfg).await.unwrap().id;
    let mut att = docker
        .attach_container(
            &id,
            Some(AttachContainerOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stream: true,
                ..Default::default()
            }),
        )
        .await
        .expect("attach");
    docker.start_container(&id, None).await.unwrap();
    use tokio::io::AsyncWriteExt;
    att.input.write_all(b"ping from stdin\n").await.unwrap();
    att.input.shutdown().await.unwrap();
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(item) = tokio::time::timeout_at(deadline.into(), att.output.next())
        .await
        .expect("attach output did not end after stdin EOF")
    {
        match item.expect("attach frame") {
            LogOutput::StdOut { message } => out.push_str(&String::from_utf8_lossy(&message)),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(out, "ping from stdin\n");
    assert_eq!(wait_exit(&docker, &id).await, 0);
}

/// Needs root. Volume create is idempotent; a volume in use by a container is refused with 409;
/// remove twice → 204 then 404; `force` on a missing volume → 204.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_idempotent_and_in_use() {
    let d = Daemon::start();
    d.import_busybox("bb:latest");
    let docker = d.bollard();
    let req = bollard::models::VolumeCreateRequest {
        name: Some("vol1".into()),
        driver: Some("local".into()),
        ..Default::default()
    };
    let v1 = docker.create_volume(req.clone()).await.expect("create");
    let v2 = docker.create_volume(req).await.expect("create again");
    assert_eq!(v1.name, "vol1");
    assert_eq!(v2.name, "vol1");
    assert_eq!(v1.mountpoint, v2.mountpoint);
    assert_eq!(v1.driver, "local");
    let list = docker
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .unwrap();
    let names: Vec<String> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, vec!["vol1"]);

    // Without a name, the engine names it.
    let anon = docker
        .create_volume(bollard::models::VolumeCreateRequest::default())
        .await
        .unwrap();
    assert!(!anon.name.is_empty());
    docker
        .remove_volume(
            &anon.name,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap();

    // In use by a (created, not running) container → 409 naming the container.
    let mut cfg = body("bb", &["sh", "-c", "echo data > /data/f"]);
    cfg.host_config = Some(HostConfig {
        binds: Some(vec!["vol1:/data".into()]),
        ..Default::default()
    });
    let id = docker.create_container(None, cfg).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    assert_eq!(wait_exit(&docker, &id).await, 0);
    let data = std::fs::read_to_string(std::path::Path::new(&v1.mountpoint).join("f"))
        .expect("the volume's data sits at its Mountpoint");
    assert_eq!(data, "data\n");
    let err = docker
        .remove_volume(
            "vol1",
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 409, "{err:?}");
    assert!(message_of(&err).contains("in use"), "{err:?}");
    // A bind with a volume name creates it on demand.
    let mut cfg = body("bb", &["true"]);
    cfg.host_config = Some(HostConfig {
        binds: Some(vec!["ondemand:/d".into()]),
        ..Default::default()
    });
    let id2 = docker.create_container(None, cfg).await.unwrap().id;
    docker
        .inspect_volume("ondemand")
        .await
        .expect("created on demand");

    docker.remove_container(&id, None).await.unwrap();
    docker.remove_container(&id2, None).await.unwrap();
    docker
        .remove_volume(
            "vol1",
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .expect("rm");
    let err = docker
        .remove_volume(
            "vol1",
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 404);
    let r = d.raw("DELETE", "/v1.50/volumes/vol1?force=1", None, b"");
    assert_eq!(
        r.status,
        204,
        "volume rm -f of a missing volume: {}",
        r.text()
    );
    let err = docker.inspect_volume("vol1").await.unwrap_err();
    assert_eq!(status_of(&err), 404);
}

/// Needs root. Malformed bodies are 400 with a JSON `{"message"}` naming the field, and create nothing.
#[test]
fn bad_json_is_400_naming_the_field() {
    let d = Daemon::start();
    let r = d.raw(
        "POST",
        "/v1.50/containers/create",
        Some("application/json"),
        br#"{"Image": 5, "Cmd": ["true"]}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.header("content-type")
            .map(|c| c.starts_with("application/json")),
        Some(true),
        "{:?}",
        r.headers
    );
    assert!(
        r.message().contains("Image"),
        "message should name the field: {}",
        r.text()
    );

    let r = d.raw(
        "POST",
        "/v1.50/containers/create",
        Some("application/json"),
        br#"{"Image": "host", "HostConfig": {"Binds": "notalist"}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains("Binds"), "{}", r.text());

    let r = d.raw(
        "POST",
        "/v1.50/containers/create",
        Some("application/json"),
        b"{not json",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!r.message().is_empty());

    let r = d.raw(
        "POST",
        "/v1.50/volumes/create",
        Some("application/json"),
        br#"{"Name": ["v"]}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.message().contains("Name"), "{}", r.text());

    let list = d
        .raw("GET", "/v1.50/containers/json?all=1", None, b"")
        .json();
    assert_eq!(list, json!([]), "a rejected create left a container");
    let vols = d.raw("GET", "/v1.50/volumes", None, b"").json();
    assert!(
        vols["Volumes"].as_array().is_none_or(|v| v.is_empty()),
        "a rejected create left a volume: {vols}"
    );
}

/// Needs root. Invalid container and volume names (`../x`, path separators, 200 chars) are
/// refused with 400 before anything touches the filesystem.
#[test]
fn invalid_names_are_400_and_create_nothing() {
    let d = Daemon::start();
    let long = "a".repeat(200);
    let bad = ["../x", "a/b", "..", "x/../../y", long.as_str(), "has space"];
    for name in bad {
        let q: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let r = d.raw_json(
            "POST",
            &format!("/v1.50/containers/create?name={q}"),
            &json!({"Image": "host", "Cmd": ["true"]}),
        );
        assert_eq!(r.status, 400, "container name {name:?}: {}", r.text());
        r.message();
        let r = d.raw_json(
            "POST",
            "/v1.50/volumes/create",
            &json!({"Name": name, "Driver": "local"}),
        );
        assert_eq!(r.status, 400, "volume name {name:?}: {}", r.text());
        r.message();
    }
    let list = d
        .raw("GET", "/v1.50/containers/json?all=1", None, b"")
        .json();
    assert_eq!(list, json!([]));
    let vols = d.raw("GET", "/v1.50/volumes", None, b"").json();
    assert!(
        vols["Volumes"].as_array().is_none_or(|v| v.is_empty()),
        "{vols}"
    );
    // Nothing escaped the root.
    assert!(!d.dir().join("x").exists());
    assert!(!d.dir().join("y").exists());
    // A valid name with all the allowed punctuation is accepted.
    let r = d.raw_json(
        "POST",
        "/v1.50/containers/create?name=ok-name_1.2",
        &json!({"Image": "host", "Cmd": ["true"]}),
    );
    assert_eq!(r.status, 201, "a valid name: {}", r.text());
}

/// Needs root. Unknown objects answer 404 with a JSON message; a missing image says "No such image".
#[test]
fn unknown_objects_are_404() {
    let d = Daemon::start();
    for (method, path) in [
        ("GET", "/v1.50/containers/nosuch/json"),
        ("DELETE", "/v1.50/containers/nosuch"),
        ("POST", "/v1.50/containers/nosuch/start"),
        ("POST", "/v1.50/containers/nosuch/stop"),
        ("POST", "/v1.50/containers/nosuch/kill"),
        ("POST", "/v1.50/containers/nosuch/wait"),
        ("GET", "/v1.50/containers/nosuch/logs?stdout=1"),
        ("GET", "/v1.50/volumes/nosuch"),
        ("DELETE", "/v1.50/volumes/nosuch"),
        ("GET", "/v1.50/networks/nosuch"),
        ("GET", "/v1.50/images/nosuch/json"),
    ] {
        let r = d.raw(method, path, None, b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(!r.message().is_empty(), "{method} {path}");
    }
    let r = d.raw_json(
        "POST",
        "/v1.50/containers/create",
        &json!({"Image": "nosuchimage", "Cmd": ["true"]}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.message().contains("No such image"), "{}", r.text());
}

/// Needs root. `HEAD /_ping` headers, `GET /_ping` body, and every route with `/v1.41/`,
/// `/v1.50/` or no version prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_version_and_prefixes() {
    let d = Daemon::start();
    let head = d.raw("HEAD", "/_ping", None, b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("api-version"),
        Some("1.50"),
        "{:?}",
        head.headers
    );
    assert_eq!(head.header("ostype"), Some("linux"), "{:?}", head.headers);
    assert!(head.body.is_empty());
    let get = d.raw("GET", "/_ping", None, b"");
    assert_eq!(get.text(), "OK");
    assert_eq!(get.header("api-version"), Some("1.50"));

    for prefix in ["", "/v1.41", "/v1.50", "/v1.24"] {
        for path in [
            "/_ping",
            "/version",
            "/containers/json",
            "/volumes",
            "/networks",
            "/info",
        ] {
            let r = d.raw("GET", &format!("{prefix}{path}"), None, b"");
            assert_eq!(r.status, 200, "GET {prefix}{path}: {}", r.text());
        }
    }
    let v = d.raw("GET", "/version", None, b"").json();
    assert_eq!(v["ApiVersion"], "1.50", "{v}");
    assert_eq!(v["Os"], "linux", "{v}");

    // bollard negotiation lands on 1.50 and works.
    let docker = d.bollard().negotiate_version().await.expect("negotiate");
    assert_eq!(docker.client_version().to_string(), "1.50");
    assert_eq!(docker.ping().await.unwrap(), "OK");
    let version = docker.version().await.unwrap();
    assert_eq!(version.api_version.as_deref(), Some("1.50"));
}

/// Needs root. `on-failure:2` restarts a failing container exactly twice, then it stays exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_on_failure() {
    let d = Daemon::start();
    d.import_busybox("bb:latest");
    let docker = d.bollard();
    let mut cfg = body("bb", &["sh", "-c", "echo run; exit 1"]);
    cfg.host_config = Some(HostConfig {
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(2),
        }),
        ..Default::default()
    });
    let id = docker
        .create_container(name_opt("flaky"), cfg)
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    let settle = |docker: Docker, id: String| async move {
        let c = docker.inspect_container(&id, None).await.ok()?;
        let st = c.state?;
        (c.restart_count == Some(2) && st.running == Some(false) && st.restarting != Some(true))
            .then_some(())
    };
    poll_until_async(
        "flaky to be restarted twice and stay exited",
        Duration::from_secs(30),
        || settle(docker.clone(), id.clone()),
    )
    .await;
    // And it stays that way (checked all along an observation window, not after a pause).
    holds_for(Duration::from_millis(1500), || {
        let docker = docker.clone();
        let id = id.clone();
        async move {
            docker
                .inspect_container(&id, None)
                .await
                .unwrap()
                .restart_count
                == Some(2)
        }
    })
    .await;
    let c = docker.inspect_container(&id, None).await.unwrap();
    assert_eq!(c.restart_count, Some(2));
    let st = c.state.unwrap();
    assert_eq!(st.running, Some(false));
    assert_eq!(st.exit_code, Some(1));
    assert_eq!(
        c.host_config
            .unwrap()
            .restart_policy
            .unwrap()
            .maximum_retry_count,
        Some(2)
    );
    let (out, _) = collect_logs(&docker, &id, false).await;
    assert_eq!(out, "run\nrun\nrun\n", "three runs logged");
}

/// Needs root. `always` restarts a container that exits 0; a user stop ends the restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_always() {
    let d = Daemon::start();
    d.import_busybox("bb:latest");
    let docker = d.bollard();
    let mut cfg = body("bb", &["sh", "-c", "sleep 0.2"]);
    cfg.host_config = Some(HostConfig {
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ALWAYS),
            maximum_retry_count: None,
        }),
        ..Default::default()
    });
    let id = docker
        .create_container(name_opt("forever"), cfg)
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    poll_until_async(
        "forever to be restarted at least twice",
        Duration::from_secs(30),
        || {
            let docker = docker.clone();
            let id = id.clone();
            async move {
                let c = docker.inspect_container(&id, None).await.ok()?;
                (c.restart_count.unwrap_or(0) >= 2).then_some(())
            }
        },
    )
    .await;
    docker
        .stop_container(
            &id,
            Some(bollard::query_parameters::StopContainerOptions {
                t: Some(1),
                signal: None,
            }),
        )
        .await
        .expect("stop");
    let count = docker
        .inspect_container(&id, None)
        .await
        .unwrap()
        .restart_count;
    holds_for(Duration::from_millis(1000), || {
        let docker = docker.clone();
        let id = id.clone();
        async move {
            docker
                .inspect_container(&id, None)
                .await
                .unwrap()
                .restart_count
                == count
        }
    })
    .await;
    let c = docker.inspect_container(&id, None).await.unwrap();
    assert_eq!(c.restart_count, count, "restarted after a user stop");
    assert_eq!(c.state.unwrap().running, Some(false));
    docker.remove_container(&id, None).await.unwrap();
}

/// Needs root. `AutoRemove` removes the container after it exits; `wait?condition=removed` answers
/// after the removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_remove() {
    let d = Daemon::start();
    d.import_busybox("bb:latest");
    let docker = d.bollard();
    let mut cfg = body("bb", &["sh", "-c", "exit 5"]);
    cfg.host_config = Some(HostConfig {
        auto_remove: Some(true),
        ..Default::default()
    });
    let id = docker.create_container(None, cfg).await.unwrap().id;
    // The wait must answer its headers before start (the CLI depends on it): the engine
    // registers the wait before it answers, so the response head is the condition to wait for.
    let sock = d.socket();
    let request = format!(
        "POST /v1.50/containers/{id}/wait?condition=removed HTTP/1.1\r\nHost: api.moby.localhost\r\nContent-Length: 0\r\n\r\n"
    );
    let (mut s, head) = tokio::task::spawn_blocking(move || request_head(&sock, &request))
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "wait head: {head:?}");
    docker.start_container(&id, None).await.unwrap();
    let body = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4096];
        let mut body = Vec::new();
        while !String::from_utf8_lossy(&body).contains("StatusCode") {
            let n = s.read(&mut buf).expect("reading the wait body");
            assert!(n > 0, "wait ended without a status");
            body.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&body).into_owned()
    });
    let body = tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("wait?condition=removed did not answer")
        .unwrap();
    assert!(
        body.contains(r#""StatusCode":5"#),
        "expected exit 5 from wait: {body:?}"
    );
    let err = docker.inspect_container(&id, None).await.unwrap_err();
    assert_eq!(status_of(&err), 404, "removed after exit");
}

/// Sends `request` on a new connection to `sock` and reads the response head (through the blank
/// line); returns the connection, positioned at the body, and the head.
fn request_head(sock: &std::path::Path, request: &str) -> (UnixStream, Vec<u8>) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("reading the response head");
        assert!(n == 1, "connection closed in the response head: {head:?}");
        head.push(byte[0]);
    }
    (s, head)
}

/// Asserts that `check` stays true for the whole `window`, checking it continually (a state that
/// must not change: no further restart). Fails as soon as it turns false.
async fn holds_for<F, Fut>(window: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + window;
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    while Instant::now() < until {
        tick.tick().await;
        assert!(check().await, "the state changed within {window:?}");
    }
}
