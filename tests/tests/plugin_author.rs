//! The plugin author's feedback loop, in a real daemon: a plugin that crashes at start fails the
//! load at once with its exit code and output (kept for `berth plugin logs`), a misspelt handshake
//! key is refused with a did-you-mean, and the Python plugin of docs/plugins.md ("A plugin in any
//! language", docs/examples/pyplug.py) loads and works as the doc says, v1 and v2.
//!
//! Every test here needs root (namespaces, mounts): we run as root in CI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_tests::Daemon;
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
    let script = fixed_answer_plugin(
        d.dir(),
        "/v1/handshake",
        r#"{"Name":"stubborn","InterestedIn":["volume"]}"#,
    );
    let script = script.display().to_string();
    let load = d.berth(&[
        "plugin", "load", "--name", "stubborn", "host", "python3", &script,
    ]);
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
        "stopping the old container once its calls in flight finish (SIGTERM, 10s grace, then SIGKILL)",
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
    let script = fixed_answer_plugin(
        d.dir(),
        "/v1/handshake",
        r#"{"Name":"typo","IntrestedIn":["volume"]}"#,
    );
    let script = script.display().to_string();
    let out = d.berth(&[
        "plugin", "load", "--name", "typo", "host", "python3", &script,
    ]);
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
