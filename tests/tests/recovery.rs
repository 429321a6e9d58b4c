//! Recovery: corrupt records are quarantined and the daemon boots with the rest; `kill` returns
//! once the container is exited; a full disk fails operations cleanly and removal still works.
//!
//! Needs root (the daemon makes namespaces and mounts); CI runs it as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_tests::{Daemon, berth_binary, run_command};
use serde_json::json;

fn create(d: &Daemon, name: &str) -> String {
    let r = d.raw_json(
        "POST",
        &format!("/v1.50/containers/create?name={name}"),
        &json!({"Image": "bb", "Cmd": ["sleep", "1000"]}),
    );
    assert_eq!(r.status, 201, "create {name}: {}", r.text());
    r.json()["Id"].as_str().unwrap().to_string()
}

fn status(d: &Daemon, path: &str) -> u16 {
    d.raw("GET", path, None, b"").status
}

fn system_check(root: &Path) -> (i32, String) {
    let mut cmd = Command::new(berth_binary());
    cmd.args(["system", "check", "--root"]).arg(root);
    let out = run_command(cmd, None, Duration::from_secs(30));
    (out.code.unwrap_or(-1), out.stdout.clone())
}

/// Every kind of record, corrupted while the daemon is down: the daemon boots, the good objects
/// work, each bad one is moved to `quarantine/` with its reason and reported by `docker info`
/// and `berth system check`; a volume directory holding data but no record is kept.
#[test]
fn corrupt_records_are_quarantined_and_the_daemon_boots() {
    let mut d = Daemon::start();
    d.import_busybox("bb:latest");
    let good = create(&d, "good");
    let bad_config = create(&d, "badconfig");
    let bad_state = create(&d, "badstate");
    for v in ["goodvol", "badvol"] {
        let r = d.raw_json("POST", "/v1.50/volumes/create", &json!({"Name": v}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = d.raw_json("POST", "/v1.50/networks/create", &json!({"Name": "badnet"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let bad_net = r.json()["Id"].as_str().unwrap().to_string();
    let r = d.raw_json(
        "POST",
        "/v1.50/networks/create",
        &json!({"Name": "goodnet"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    d.stop(Duration::from_secs(20));

    let root = d.root();
    assert_eq!(system_check(&root).0, 0, "a clean root has no findings");
    fs::write(
        root.join("containers")
            .join(&bad_config)
            .join("config.json"),
        b"{\"Id\": 4",
    )
    .unwrap();
    fs::write(
        root.join("containers").join(&bad_state).join("state.json"),
        b"not json",
    )
    .unwrap();
    fs::write(root.join("containers/stray-file"), b"junk").unwrap();
    let bad_image = root.join("images").join("e".repeat(64));
    fs::create_dir_all(bad_image.join("rootfs")).unwrap();
    fs::write(bad_image.join("image.json"), b"{\"Id\": 5,").unwrap();
    fs::write(root.join("volumes/badvol/volume.json"), b"{{{").unwrap();
    fs::write(
        root.join("networks").join(&bad_net).join("network.json"),
        b"",
    )
    .unwrap();
    fs::write(root.join("plugins.json"), b"[{\"broken\":").unwrap();
    // Data without a record: never deleted.
    let data_only = root.join("volumes/dataonly/_data");
    fs::create_dir_all(&data_only).unwrap();
    fs::write(data_only.join("precious"), b"keep me").unwrap();
    // A temp file an interrupted write left.
    fs::write(
        root.join("containers")
            .join(&good)
            .join(".state.json.tmp999.0"),
        b"{",
    )
    .unwrap();
    let (code, out) = system_check(&root);
    assert_eq!(code, 1, "system check before the boot: {out}");
    assert!(
        out.contains(".state.json.tmp999.0") && out.contains("dataonly"),
        "{out}"
    );

    d.restart();
    // The good objects work.
    let r = d.raw(
        "POST",
        &format!("/v1.50/containers/{good}/start"),
        None,
        b"",
    );
    assert_eq!(r.status, 204, "start good: {}", r.text());
    assert_eq!(status(&d, "/v1.50/volumes/goodvol"), 200);
    assert_eq!(status(&d, "/v1.50/networks/goodnet"), 200);
    assert_eq!(status(&d, "/v1.50/images/bb/json"), 200);
    // The bad ones are gone from the API.
    for path in [
        format!("/v1.50/containers/{bad_config}/json"),
        format!("/v1.50/containers/{bad_state}/json"),
        "/v1.50/volumes/badvol".to_string(),
        format!("/v1.50/networks/{bad_net}"),
    ] {
        assert_eq!(status(&d, &path), 404, "{path}");
    }
    // ... quarantined with their reason, and reported.
    let quarantined: Vec<String> = fs::read_dir(root.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".reason"))
        .collect();
    for prefix in [
        format!("container-{bad_config}-"),
        format!("container-{bad_state}-"),
        "container-stray-file-".to_string(),
        format!("image-{}-", "e".repeat(64)),
        "volume-badvol-".to_string(),
        format!("network-{bad_net}-"),
        "plugins-plugins.json-".to_string(),
    ] {
        assert!(
            quarantined.iter().any(|n| n.starts_with(&prefix)),
            "{prefix} not in quarantine: {quarantined:?}"
        );
    }
    let info = d.raw("GET", "/v1.50/info", None, b"").json();
    let warnings = info["Warnings"].to_string();
    for needle in [
        &bad_config,
        &bad_state,
        "stray-file",
        "badvol",
        &bad_net,
        "plugins.json",
        "dataonly",
    ] {
        assert!(
            warnings.contains(needle),
            "{needle} not in info warnings: {warnings}"
        );
    }
    let docker_info = d.docker(&["info"]);
    assert!(
        docker_info.stderr.contains("badvol") || docker_info.stdout.contains("badvol"),
        "{}",
        docker_info.describe()
    );
    assert_eq!(fs::read(data_only.join("precious")).unwrap(), b"keep me");
    assert!(
        !root
            .join("containers")
            .join(&good)
            .join(".state.json.tmp999.0")
            .exists(),
        "temp file swept"
    );
    let (code, out) = system_check(&root);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("badvol") && out.contains("decoding"), "{out}");
    assert!(out.contains("dataonly"), "{out}");
}

/// `docker kill x; docker inspect -f '{{.State.Status}}' x` prints `exited`, as with Docker;
/// `docker rm -f` leaves nothing running.
#[test]
fn kill_returns_once_the_container_is_exited() {
    let d = Daemon::start();
    d.import_busybox("bb:latest");
    for round in 0..5 {
        let name = format!("k{round}");
        d.docker(&["run", "-d", "--name", &name, "bb", "sleep", "1000"])
            .ok();
        d.docker(&["kill", &name]).ok();
        let st = d.docker(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", &name]);
        assert_eq!(st.ok().trim(), "exited 0", "round {round}");
    }
    d.docker(&["run", "-d", "--name", "rmf", "bb", "sleep", "1000"])
        .ok();
    let pid: i32 = d
        .docker(&["inspect", "-f", "{{.State.Pid}}", "rmf"])
        .ok()
        .trim()
        .parse()
        .unwrap();
    d.docker(&["rm", "-f", "rmf"]).ok();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true),
        "rm -f returned with the process alive"
    );
}

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// The root on an 8 MiB tmpfs, filled by a container's log: creating things fails with a clear
/// "no space left on device" and leaves no half-written record; `rm -f` of the container that
/// filled the disk works (it writes nothing before deleting), and once the space is back,
/// everything works again.
#[test]
fn a_full_disk_fails_cleanly_and_removal_frees_it() {
    let d = Daemon::start_with(|dir| {
        let root = dir.join("root");
        nix::mount::mount(
            Some("tmpfs"),
            &root,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=8m"),
        )
        .expect("mount a tmpfs on the root");
        Vec::new()
    });
    let root = d.root();
    d.import_busybox("bb:latest");
    let r = d.raw_json(
        "POST",
        "/v1.50/containers/create?name=filler",
        &json!({"Image": "bb", "Cmd": ["sh", "-c", "yes 0123456789abcdefghijklmnopqrstuvwxyz"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.raw("POST", "/v1.50/containers/filler/start", None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    berth_tests::poll_until("the root to fill up", Duration::from_secs(60), || {
        (free_bytes(&root) < 4096).then_some(())
    });

    // Creating fails, naming ENOSPC, with a server error; nothing half-made is left.
    let r = d.raw_json("POST", "/v1.50/volumes/create", &json!({"Name": "nospace"}));
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.message()
            .to_lowercase()
            .contains("no space left on device"),
        "{}",
        r.text()
    );
    let r = d.raw_json(
        "POST",
        "/v1.50/containers/create?name=late",
        &json!({"Image": "bb", "Cmd": ["true"]}),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.message()
            .to_lowercase()
            .contains("no space left on device"),
        "{}",
        r.text()
    );
    assert_eq!(status(&d, "/v1.50/containers/late/json"), 404);
    assert_eq!(status(&d, "/v1.50/volumes/nospace"), 404);
    assert!(!root.join("volumes/nospace").exists());

    // Removal needs no new space.
    let r = d.raw("DELETE", "/v1.50/containers/filler?force=1", None, b"");
    assert_eq!(r.status, 204, "rm -f on a full disk: {}", r.text());
    assert_eq!(status(&d, "/v1.50/containers/filler/json"), 404);
    assert!(free_bytes(&root) > 1 << 20, "the log's space is back");
    let (code, out) = system_check(&root);
    assert_eq!(code, 0, "no temp file or half record left: {out}");

    // Everything works again.
    let r = d.raw_json("POST", "/v1.50/volumes/create", &json!({"Name": "nospace"}));
    assert_eq!(r.status, 201, "{}", r.text());
    d.docker(&[
        "run",
        "--rm",
        "-v",
        "nospace:/data",
        "bb",
        "sh",
        "-c",
        "echo ok > /data/f",
    ])
    .ok();
    assert_eq!(
        fs::read_to_string(root.join("volumes/nospace/_data/f")).unwrap(),
        "ok\n"
    );
}

/// A crash between "plugin container launched" and "plugins.json saved", written by hand: a
/// hidden `always` plugin container that no plugin record names. The next boot removes it (it
/// would otherwise be restarted at every boot, forever).
#[test]
fn an_orphan_plugin_container_is_removed_at_boot() {
    let mut d = Daemon::start();
    d.import_busybox("bb:latest");
    let id = create(&d, "ghost");
    let keep = create(&d, "keep");
    d.stop(Duration::from_secs(20));
    let config_path = d.root().join("containers").join(&id).join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
    config["system"] = json!(true);
    config["name"] = json!("berth-plugin-ghost-0123456789ab");
    config["labels"] = json!({"berth.plugin": "ghost"});
    config["restart_policy"] = json!("Always");
    fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    assert!(
        !d.root().join("plugins.json").exists() || {
            let recs: serde_json::Value =
                serde_json::from_slice(&fs::read(d.root().join("plugins.json")).unwrap()).unwrap();
            !recs.to_string().contains(&id)
        }
    );

    d.restart();
    berth_tests::poll_until(
        "the orphan plugin container to go",
        Duration::from_secs(30),
        || (!d.root().join("containers").join(&id).exists()).then_some(()),
    );
    assert_eq!(status(&d, &format!("/v1.50/containers/{id}/json")), 404);
    assert_eq!(status(&d, &format!("/v1.50/containers/{keep}/json")), 200);
    assert!(d.log().contains("no plugin record names"), "logged");
}

fn tmp_entries(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("tmp"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A client that disconnects mid-upload leaves no temporary tar behind; two concurrent imports of
/// the same tar both succeed (each unpacks into its own work directory) and the image works.
#[test]
fn imports_clean_up_after_a_disconnect_and_do_not_share_a_directory() {
    use std::io::Write;
    let d = Daemon::start();
    let root = d.root();
    {
        let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
        let head = "POST /v1.50/images/create?fromSrc=-&repo=half HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        s.write_all(&chunk).unwrap();
        s.write_all(b"\r\n").unwrap();
        s.flush().unwrap();
        berth_tests::poll_until("the upload's temp tar", Duration::from_secs(20), || {
            (!tmp_entries(&root).is_empty()).then_some(())
        });
        // Dropped here: the client goes away mid-upload.
    }
    berth_tests::poll_until(
        "the temp tar to be removed",
        Duration::from_secs(20),
        || tmp_entries(&root).is_empty().then_some(()),
    );

    let threads: Vec<_> = (0..2)
        .map(|_| {
            let socket = d.socket();
            std::thread::spawn(move || {
                berth_tests::raw_request(
                    &socket,
                    "POST",
                    "/v1.50/images/create?fromSrc=-&repo=bb",
                    Some("application/x-tar"),
                    berth_tests::busybox_rootfs_tar(),
                )
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.text().contains("error"), "{}", r.text());
    }
    d.docker(&["run", "--rm", "bb", "true"]).ok();
    let leftovers: Vec<String> = fs::read_dir(root.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "import work dirs left: {leftovers:?}");
    assert!(tmp_entries(&root).is_empty());
}
