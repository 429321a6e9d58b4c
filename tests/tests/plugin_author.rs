//! The plugin author's feedback loop, in a real daemon: a plugin that crashes at start fails the
//! load at once with its exit code and output (kept for `berth plugin logs`), a crash-looping one
//! is given up on (Failed, fail closed) and brought back by `plugin enable` or a new load, unload
//! and upgrade say what they do and an upgrade does not wait out the old container's grace
//! period, a misspelt handshake key is refused with a did-you-mean, and the Python plugin of docs/plugins.md ("A plugin in any
//! language", docs/examples/pyplug.py) loads and works as the doc says, v1 and v2.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_tests::{CmdOutput, Daemon, poll_until};
use serde_json::json;

fn doc_example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace dir")
        .join("docs/examples")
        .join(name)
}

/// A stdlib Python plugin answering `path` with the fixed JSON `answer` (404 elsewhere).
fn fixed_answer_plugin(dir: &Path, path: &str, answer: &str) -> PathBuf {
    let script = dir.join("fixed.py");
    let src = format!(
        r#"import os, socketserver
from http.server import BaseHTTPRequestHandler
SOCK = "/var/run/docker/plugin.sock"
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code, body = (200, {answer:?}) if self.path == {path:?} else (404, "{{}}")
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
if os.path.exists(SOCK):
    os.unlink(SOCK)
socketserver.ThreadingUnixStreamServer(SOCK, H).serve_forever()
"#
    );
    std::fs::write(&script, src).unwrap();
    script
}

/// Needs root. A plugin that exits at start fails `plugin load` long before the 60 s load
/// deadline, with its exit code and its last output; `plugin logs` shows that output afterwards.
#[test]
fn a_plugin_crashing_at_start_fails_the_load_at_once_with_its_exit_code_and_output() {
    let d = Daemon::start();
    let started = Instant::now();
    let out = d.berth(&[
        "plugin",
        "load",
        "--name",
        "crashy",
        "host",
        "sh",
        "-c",
        "echo 'Traceback: boom-at-start' >&2; exit 3",
    ]);
    let took = started.elapsed();
    out.expect_code(1);
    // The bound is correctness, not speed: without the exit watch the load waits 60 s.
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}\n{}",
        out.describe()
    );
    let err = &out.stderr;
    assert!(err.contains("plugin \"crashy\""), "{}", out.describe());
    assert!(err.contains("exited with code 3"), "{}", out.describe());
    assert!(
        err.contains("Traceback: boom-at-start"),
        "{}",
        out.describe()
    );
    assert!(!err.contains("never came up"), "{}", out.describe());

    let logs = d.berth(&["plugin", "logs", "crashy"]);
    assert!(
        logs.ok().contains("Traceback: boom-at-start"),
        "{}",
        logs.describe()
    );
    // Not loaded and never failed: a clear 404.
    let none = d.berth(&["plugin", "logs", "nosuch"]);
    assert_ne!(none.code, Some(0), "{}", none.describe());
    assert!(
        none.stderr.contains("no output of a failed load"),
        "{}",
        none.describe()
    );
}

/// Needs root. A plugin that shakes hands, then exits 7 after 1.5 s, every run: `plugin ls` and
/// `plugin status` show it `restarting`, with the restart count and the last exit code, never
/// `active`.
#[test]
fn a_crash_looping_plugin_shows_restarting_with_its_count_and_last_exit() {
    let d = Daemon::start();
    let script = d.dir().join("crashloop.py");
    std::fs::write(
        &script,
        r#"import os, socketserver, threading, time
from http.server import BaseHTTPRequestHandler
SOCK = "/var/run/docker/plugin.sock"
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = self.path == "/v1/handshake"
        data = b'{"Name":"loop","InterestedIn":["volume"]}' if ok else b"{}"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
if os.path.exists(SOCK):
    os.unlink(SOCK)
srv = socketserver.ThreadingUnixStreamServer(SOCK, H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
time.sleep(1.5)
os._exit(7)
"#,
    )
    .unwrap();
    let script = script.display().to_string();
    d.berth(&[
        "plugin", "load", "--name", "loop", "host", "python3", &script,
    ])
    .expect_code(0);
    let until = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let ls = d.berth(&["plugin", "ls"]);
        let row = ls
            .ok()
            .lines()
            .find(|l| l.contains("loop"))
            .unwrap_or_default()
            .to_owned();
        // The last exit code shows while the container is down between restarts (the back-off
        // grows, 100 ms doubling): poll until a listing falls in such a window.
        if row.contains("last exit 7") || Instant::now() > until {
            break row;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(row.contains("restarting ("), "{row}");
    assert!(row.contains("last exit 7"), "{row}");
    assert!(!row.contains("active"), "{row}");
    let v = d.raw("GET", "/berth/plugins/loop", None, b"").json();
    assert_eq!(v["State"], "restarting", "{v}");
    assert!(v["Restarts"].as_u64().unwrap_or(0) >= 1, "{v}");
}

/// Needs root. `plugin upgrade` of a plugin that ignores SIGTERM (a Python script as pid 1) says
/// what it does at each step, naming the plugin by its name: the new one's answer, then stopping
/// the old container with its grace period.
#[test]
fn upgrade_progress_says_what_is_happening() {
    let d = Daemon::start();
    let load = load_fixed(
        &d,
        "stubborn",
        r#"{"Name":"stubborn","InterestedIn":["volume"]}"#,
    );
    assert!(
        load.ok().contains("Plugin stubborn loaded"),
        "{}",
        load.describe()
    );
    assert!(
        load.stderr
            .contains("Loading plugin stubborn from image host"),
        "{}",
        load.describe()
    );
    let up = d.berth(&["plugin", "upgrade", "stubborn", "host"]);
    up.expect_code(0);
    for want in [
        "starting the new stubborn container from image host",
        "the new stubborn answered after ",
        "stopping the old container in the background once its calls in flight finish (SIGTERM, 10s grace, then SIGKILL)",
    ] {
        assert!(
            up.stderr.contains(want),
            "{want:?} missing\n{}",
            up.describe()
        );
    }
    // The grace period is an option, on upgrade and unload.
    let up = d.berth(&["plugin", "upgrade", "-t", "1s", "stubborn", "host"]);
    assert!(
        up.stderr.contains("(SIGTERM, 1s grace, then SIGKILL)"),
        "{}",
        up.describe()
    );
    let started = Instant::now();
    d.berth(&["plugin", "unload", "-t", "1s", "stubborn"])
        .expect_code(0);
    // A plugin ignoring SIGTERM is killed after 1 s, not after the default 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

/// Needs root. A v1 handshake with `IntrestedIn` is refused with a did-you-mean (before, it loaded
/// a plugin that was never called, and bind sources were created on the host instead).
#[test]
fn a_misspelt_handshake_key_is_refused_with_a_did_you_mean() {
    let d = Daemon::start();
    let out = load_fixed(&d, "typo", r#"{"Name":"typo","IntrestedIn":["volume"]}"#);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("unknown key \"IntrestedIn\" (did you mean \"InterestedIn\"?)"),
        "{}",
        out.describe()
    );
    let ls = d.berth(&["plugin", "ls", "-q"]);
    assert!(!ls.ok().contains("typo"), "{}", ls.describe());
}

/// Needs root. docs/examples/pyplug.py as docs/plugins.md shows it: the v1 variant moves a bind
/// source to its storage (given with `-v`), `plugin logs` shows its stderr; the v2 variant also
/// labels every container create, and `plugin status` shows the subscriptions it negotiated.
#[test]
fn the_python_plugin_of_the_docs_works_as_documented() {
    let d = Daemon::start();
    let storage = d.dir().join("pyplug-storage");
    std::fs::create_dir_all(&storage).unwrap();
    let script = doc_example("pyplug.py").display().to_string();
    let st = storage.display().to_string();
    let mount = format!("{st}:{st}");

    let load = |protocol: &str| {
        d.berth(&[
            "plugin",
            "load",
            "--name",
            "pyplug",
            "-v",
            &mount,
            "host",
            "python3",
            &script,
            "--protocol",
            protocol,
            "--storage",
            &st,
        ])
    };
    let out = load("v1");
    assert!(
        out.ok()
            .contains("registered with extension points: volume"),
        "{}",
        out.describe()
    );
    d.docker(&[
        "run",
        "--rm",
        "-v",
        "/pyvol/t:/d",
        "host",
        "sh",
        "-c",
        "echo fish > /d/f",
    ])
    .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(storage.join("t/f")).unwrap(),
        "fish\n"
    );
    let logs = d.berth(&["plugin", "logs", "pyplug"]);
    assert!(
        logs.ok().contains("volume /pyvol/t -> "),
        "{}",
        logs.describe()
    );
    d.berth(&["plugin", "unload", "pyplug"]).expect_code(0);

    let out = load("v2");
    assert!(
        out.ok()
            .contains("Plugin pyplug:1.0 loaded and registered with extension points: volume, api"),
        "{}",
        out.describe()
    );
    let status = d.raw("GET", "/berth/plugins/pyplug", None, b"");
    let v = status.json();
    assert_eq!(v["Protocol"], "v2", "{v}");
    assert_eq!(
        v["Subscriptions"]["api"]["Pre"],
        json!(["POST /containers/create"]),
        "{v}"
    );
    let created = d.raw_json(
        "POST",
        "/containers/create",
        &json!({"Image": "host", "Cmd": ["true"]}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["Id"].as_str().unwrap().to_owned();
    let inspect = d.raw("GET", &format!("/containers/{id}/json"), None, b"");
    assert_eq!(
        inspect.json()["Config"]["Labels"]["seen-by"],
        "pyplug",
        "{}",
        inspect.text()
    );
}

/// The copy of docs/examples/pyplug.py in docs/plugins.md is the file the e2e test runs.
#[test]
fn the_python_plugin_in_the_doc_is_the_tested_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let doc = std::fs::read_to_string(root.join("docs/plugins.md")).unwrap();
    let start = "<!-- example: docs/examples/pyplug.py -->\n```python\n";
    let from = doc.find(start).expect("example marker in docs/plugins.md") + start.len();
    let to = from
        + doc[from..]
            .find("```\n<!-- end example -->")
            .expect("end marker");
    let file = std::fs::read_to_string(doc_example("pyplug.py")).unwrap();
    assert_eq!(
        &doc[from..to],
        file,
        "docs/plugins.md's copy differs from docs/examples/pyplug.py"
    );
}

/// A stdlib Python plugin (v1, volume interest, 404 for every hook) that answers its handshake,
/// then exits 1, every run; while the file given as its argument exists it keeps serving instead.
fn crash_looping_plugin(dir: &Path, name: &str) -> PathBuf {
    let script = dir.join(format!("{name}.py"));
    let src = format!(
        r#"import os, socketserver, sys, threading, time
from http.server import BaseHTTPRequestHandler
SOCK = "/var/run/docker/plugin.sock"
answered = threading.Event()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = self.path == "/v1/handshake"
        data = b'{{"Name":"{name}","InterestedIn":["volume"]}}' if ok else b"{{}}"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        if ok:
            answered.set()
    def log_message(self, *args):
        pass
if os.path.exists(SOCK):
    os.unlink(SOCK)
srv = socketserver.ThreadingUnixStreamServer(SOCK, H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
if os.path.exists(sys.argv[1]):
    threading.Event().wait()
answered.wait(2)
time.sleep(0.1)
print("{name}: exiting 1 on purpose", file=sys.stderr, flush=True)
os._exit(1)
"#
    );
    std::fs::write(&script, src).unwrap();
    script
}

/// `GET /berth/plugins/NAME`.
fn plugin_json(d: &Daemon, name: &str) -> serde_json::Value {
    d.raw("GET", &format!("/berth/plugins/{name}"), None, b"")
        .json()
}

/// Polls the plugin's state (every 20 ms) until it is `failed`; returns the states seen before.
fn wait_failed(d: &Daemon, name: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    poll_until(
        &format!("plugin {name} to become failed"),
        Duration::from_secs(60),
        || {
            let state = plugin_json(d, name)["State"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            (state == "failed").then_some(())
        },
    );
    seen
}

/// Needs root. With `--plugin-max-restarts 3`, a plugin that exits 1 after each handshake goes
/// `restarting`, then `failed (3 restarts, last exit 1)` and its container is not started again;
/// an operation that needs it fails closed (503 naming it and its state, no host directory made);
/// `plugin logs` shows why; `plugin enable` starts it again (now healthy), and loading a failed
/// plugin again replaces it at the same place in the load order.
#[test]
fn a_crash_looping_plugin_is_given_up_on_and_enable_or_a_new_load_brings_it_back() {
    let d = Daemon::start_with(|_| {
        vec![
            "--plugin-max-restarts".into(),
            "3".into(),
            "--plugin-restart-window".into(),
            "60s".into(),
        ]
    });
    let healthy = d.dir().join("healthy");
    let healthy_arg = healthy.display().to_string();
    let script = crash_looping_plugin(d.dir(), "flappy")
        .display()
        .to_string();
    d.berth(&[
        "plugin",
        "load",
        "--name",
        "flappy",
        "host",
        "python3",
        &script,
        &healthy_arg,
    ])
    .expect_code(0);
    let seen = wait_failed(&d, "flappy");
    assert!(
        seen.iter().any(|s| s == "restarting"),
        "restarting before failed: {seen:?}"
    );
    assert!(!seen.iter().any(|s| s == "pending"), "{seen:?}");
    let v = plugin_json(&d, "flappy");
    assert_eq!(v["Restarts"], 3, "{v}");
    assert_eq!(v["LastExitCode"], 1, "{v}");
    let why = v["LastError"].as_str().unwrap_or_default();
    assert!(why.contains("crash loop"), "{v}");
    assert!(why.contains("berth plugin enable flappy"), "{v}");
    // Given up on: the container stays down (exited, not waiting for another restart).
    let cid = v["ContainerID"].as_str().unwrap().to_owned();
    let c = d.raw("GET", &format!("/containers/{cid}/json"), None, b"");
    assert_eq!(c.json()["State"]["Status"], "exited", "{}", c.text());
    let ls = d.berth(&["plugin", "ls"]);
    assert!(
        ls.ok().contains("failed (3 restarts, last exit 1)"),
        "{}",
        ls.describe()
    );
    let status = d.berth(&["plugin", "status", "flappy"]);
    assert!(
        status.ok().contains("failed (3 restarts, last exit 1)"),
        "{}",
        status.describe()
    );
    let logs = d.berth(&["plugin", "logs", "flappy"]);
    assert!(
        logs.ok().contains("flappy: exiting 1 on purpose"),
        "{}",
        logs.describe()
    );

    // Fail closed: a bind the plugin would be asked about is refused, not mounted from the host.
    let src = d.dir().join("flappy-data").join("x");
    let bind = format!("{}:/d", src.display());
    let out = d.docker(&["run", "--rm", "-v", &bind, "host", "true"]);
    assert!(!out.success(), "run must fail: {}", out.describe());
    assert!(out.stderr.contains("flappy"), "{}", out.describe());
    assert!(out.stderr.contains("failed"), "{}", out.describe());
    assert!(
        !src.exists(),
        "no host directory made for {}",
        src.display()
    );

    // Fixed: `plugin enable` starts it again, Active, and calls reach it.
    std::fs::write(&healthy, "").unwrap();
    let en = d.berth(&["plugin", "enable", "flappy"]);
    en.expect_code(0);
    let v = plugin_json(&d, "flappy");
    assert_eq!(v["State"], "active", "{v}");
    assert_eq!(v["Restarts"], 0, "{v}");
    d.docker(&["run", "--rm", "-v", &bind, "host", "true"])
        .expect_code(0);

    // A second crash-looper, given up on, then loaded again (now healthy): it takes its place.
    std::fs::remove_file(&healthy).unwrap();
    let script2 = crash_looping_plugin(d.dir(), "flappy2")
        .display()
        .to_string();
    let load2 = |_: ()| {
        d.berth(&[
            "plugin",
            "load",
            "--name",
            "flappy2",
            "host",
            "python3",
            &script2,
            &healthy_arg,
        ])
    };
    load2(()).expect_code(0);
    wait_failed(&d, "flappy2");
    let old = plugin_json(&d, "flappy2");
    let old_cid = old["ContainerID"].as_str().unwrap().to_owned();
    std::fs::write(&healthy, "").unwrap();
    load2(()).expect_code(0);
    let v = plugin_json(&d, "flappy2");
    assert_eq!(v["State"], "active", "{v}");
    assert_eq!(v["Position"], old["Position"], "same place: {v}");
    assert_ne!(v["ContainerID"], old["ContainerID"], "{v}");
    // The failed one's container goes.
    poll_until(
        "the failed container's removal",
        Duration::from_secs(30),
        || {
            let r = d.raw("GET", &format!("/containers/{old_cid}/json"), None, b"");
            (r.status == 404).then_some(())
        },
    );
}

/// Needs root. `plugin unload` says what it does, naming the plugin: stopping its container with
/// the grace period, then removing it.
#[test]
fn unload_shows_its_steps() {
    let d = Daemon::start();
    let cid = load_stubborn(&d);
    let out = d.berth(&["plugin", "unload", "-t", "1s", "stubborn"]);
    assert_eq!(out.ok().trim(), "stubborn", "{}", out.describe());
    for want in [
        "Unloading plugin stubborn",
        &format!(
            "stopping the stubborn container {} (SIGTERM, 1s grace, then SIGKILL)",
            &cid[..12]
        ),
        "the stubborn container stopped after ",
        "removing the container",
        "removing the stubborn socket directory ",
    ] {
        assert!(
            out.stderr.contains(want),
            "{want:?} missing\n{}",
            out.describe()
        );
    }
    let r = d.raw("GET", &format!("/containers/{cid}/json"), None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
    // Errors come before the stream: an unknown plugin is a plain 404.
    let none = d.berth(&["plugin", "unload", "stubborn"]);
    assert_eq!(none.code, Some(1), "{}", none.describe());
    assert!(none.stderr.contains("not loaded"), "{}", none.describe());
}

/// `berth plugin load --name NAME host python3 SCRIPT`, where SCRIPT answers `/v1/handshake`
/// with the fixed `handshake` body (and 404 to everything else).
fn load_fixed(d: &Daemon, name: &str, handshake: &str) -> CmdOutput {
    let script = fixed_answer_plugin(d.dir(), "/v1/handshake", handshake);
    let script = script.display().to_string();
    d.berth(&["plugin", "load", "--name", name, "host", "python3", &script])
}

/// Loads the SIGTERM-ignoring `stubborn` plugin (a Python script as pid 1) and returns its
/// container id.
fn load_stubborn(d: &Daemon) -> String {
    load_fixed(
        d,
        "stubborn",
        r#"{"Name":"stubborn","InterestedIn":["volume"]}"#,
    )
    .expect_code(0);
    plugin_json(d, "stubborn")["ContainerID"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether container `id` exists and its process still runs.
fn running(d: &Daemon, id: &str) -> bool {
    let r = d.raw("GET", &format!("/containers/{id}/json"), None, b"");
    r.status == 200 && r.json()["State"]["Running"] == true
}

/// Needs root. An upgrade of a plugin that ignores SIGTERM, with the default 10 s grace, returns
/// once the new plugin serves: when the command is back, the old container is still running out
/// its grace period; it is stopped and removed later, in the background.
#[test]
fn upgrade_returns_before_the_old_container_stopped_and_it_goes_later() {
    let d = Daemon::start();
    let old = load_stubborn(&d);
    let up = d.berth(&["plugin", "upgrade", "stubborn", "host"]);
    up.expect_code(0);
    assert!(
        running(&d, &old),
        "the upgrade waited for the old container\n{}",
        up.describe()
    );
    let new = plugin_json(&d, "stubborn")["ContainerID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    assert!(running(&d, &new));
    poll_until(
        "the old container's removal",
        Duration::from_secs(60),
        || {
            let r = d.raw("GET", &format!("/containers/{old}/json"), None, b"");
            (r.status == 404).then_some(())
        },
    );
    assert!(running(&d, &new), "the new one is untouched");
}

/// Needs root. A daemon shutdown right after an upgrade finishes the old container's stop and
/// removes it (nothing left on disk for the next boot); a daemon killed right after one leaves the
/// old container to the boot sweep, which removes it.
#[test]
fn an_old_container_stopping_in_the_background_is_not_leaked() {
    let mut d = Daemon::start();
    let old = load_stubborn(&d);
    d.berth(&["plugin", "upgrade", "stubborn", "host"])
        .expect_code(0);
    assert!(running(&d, &old));
    d.stop(Duration::from_secs(90));
    let dir = d.root().join("containers").join(&old);
    assert!(!dir.exists(), "{} left after shutdown", dir.display());

    d.restart();
    // Plugin management passes the readiness gate: wait for the boot to bring the plugin up.
    let old = poll_until("stubborn up again", Duration::from_secs(60), || {
        let v = plugin_json(&d, "stubborn");
        (v["State"] == "active").then(|| v["ContainerID"].as_str().unwrap().to_owned())
    });
    d.berth(&["plugin", "upgrade", "stubborn", "host"])
        .expect_code(0);
    assert!(running(&d, &old));
    d.kill9();
    d.restart();
    // The sweep runs before the readiness gate opens, and container inspect waits at the gate.
    let r = d.raw("GET", &format!("/containers/{old}/json"), None, b"");
    assert_eq!(r.status, 404, "the boot sweep removes it: {}", r.text());
    assert_eq!(plugin_json(&d, "stubborn")["State"], "active");
}
