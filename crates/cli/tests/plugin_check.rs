//! `berth plugin check` end to end (no daemon): exit status 0 / 1 / 2, `--format json`,
//! `--only`, discovery by `--name`, and `--image … -- CMD` starting the plugin as a container
//! (that part needs root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-check/tests/fixtures/plugin.py")
}

struct Py(Child);

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python fixture plugin in `mode` on `socket`, once it accepts connections.
fn py(mode: &str, socket: &Path) -> Py {
    let child = Command::new("python3")
        .arg(fixture())
        .args([mode, &socket.display().to_string()])
        .spawn()
        .expect("python3");
    let until = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < until,
            "fixture plugin never served {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Py(child)
}

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["plugin", "check"])
        .args(args)
        .env("BERTH_HOST", "unix:///nonexistent/berth.sock")
        .output()
        .expect("berth")
}

#[test]
fn exit_status_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sock");
    let bad = dir.path().join("bad.sock");
    let _g = py("good", &good);
    let _b = py("vol-refcount", &bad);

    let out = berth(&["--socket", &good.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("result: PASS"), "{text}");
    assert!(text.contains("volume.unmount-keeps-other"), "{text}");

    let out = berth(&["--socket", &bad.display().to_string(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], false);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "fail")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["volume.unmount-keeps-other"]);
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["result"] == "fail")
        .unwrap();
    assert_eq!(c["rule"], "c-vol-mount-ids");
    assert!(
        c["exchange"]["sent"]
            .as_str()
            .unwrap()
            .contains("/VolumeDriver.Path")
    );

    // --only leaves the broken group out; --skip too.
    let out = berth(&[
        "--socket",
        &bad.display().to_string(),
        "--only",
        "handshake,robustness",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = berth(&["--socket", &bad.display().to_string(), "--skip", "volume"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = berth(&["--socket", &bad.display().to_string(), "--only", "volumes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check group \"volumes\""));

    // Nothing there: exit 2, a clear message.
    let out = berth(&[
        "--socket",
        &dir.path().join("none.sock").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing accepts connections"));
}

#[test]
fn discovery_name_and_image_mode() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let _p = py("good", &plugins.join("pycheck.sock"));
    let out = berth(&[
        "--name",
        "pycheck",
        "--plugin-dir",
        &plugins.display().to_string(),
        "--only",
        "handshake",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&plugins.join("pycheck.sock").display().to_string()),
        "{text}"
    );
    let out = berth(&[
        "--name",
        "absent",
        "--plugin-dir",
        &plugins.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin \"absent\" not found"));

    // --image (needs root): the plugin runs in a container of the image (here `host`, from an
    // empty state root), serving /var/run/docker/plugin.sock, is checked, then removed.
    let root = dir.path().join("root");
    let root = root.display().to_string();
    let script = format!(
        "exec python3 {} good /var/run/docker/plugin.sock",
        fixture().display()
    );
    let out = berth(&[
        "--root", &root, "--image", "host", "--", "sh", "-c", &script,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sock = text
        .lines()
        .find_map(|l| l.strip_prefix("plugin socket: "))
        .expect("socket line");
    assert!(sock.ends_with("/plugin.sock"), "{sock}");
    assert!(
        !Path::new(sock).exists(),
        "the temporary plugin dir is removed after the check"
    );
    let out = berth(&[
        "--root",
        &root,
        "--image",
        "host",
        "--",
        "sh",
        "-c",
        "echo broken >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited") && err.contains("broken"), "{err}");
    // An image the state root does not have: exit 2, named.
    let out = berth(&["--root", &root, "--image", "x", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No such image: x"), "{err}");
}
