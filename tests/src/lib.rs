//! Harness shared by the end-to-end tests: builds and locates the `berth` binary, runs a real
//! `berth daemon` on a private temp root and socket ([`Daemon`], killed and cleaned up on drop, its
//! log printed when a test fails), and drives it with the clients users have: bollard
//! ([`Daemon::bollard`]), the real `docker` CLI ([`Daemon::docker`]), the python `docker` SDK
//! ([`Daemon::python`]) and a raw HTTP/1.1 client for the wire-level checks ([`Daemon::raw`]).
//! It also owns the busybox rootfs fixture ([`busybox_rootfs_tar`]) used as a registry-free image.
//! [`netplug`] runs the `netplug` example network plugin the way the network tests use it.
//!
//! Everything here needs root (the daemon creates namespaces and mounts); the tests run as root in CI.

pub mod netplug;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a daemon gets to answer `GET /_ping` after it was spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound for one client command (docker CLI, python) before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The API version the engine advertises.
pub const API_VERSION: &str = "1.50";

// ---------------------------------------------------------------------------------------------
// Binary
// ---------------------------------------------------------------------------------------------

/// The directory holding the workspace's binaries for this test run: the test executable sits in
/// `target/<profile>/deps/`, the binaries in `target/<profile>/`.
fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        exe.parent()
            .and_then(Path::parent)
            .expect("test binary is not inside target/<profile>/deps")
            .to_path_buf()
    })
}

/// A workspace binary built before the tests ran. The tests never build anything themselves:
/// `cargo xtask test` (the README's test command) builds every binary first.
fn prebuilt(name: &str) -> PathBuf {
    let bin = profile_dir().join(name);
    assert!(
        bin.exists(),
        "{} not found: the tests drive the workspace's binaries and do not build them; run \
         `cargo xtask test` (or `cargo build --workspace --bins` before `cargo test`)",
        bin.display()
    );
    bin
}

/// Path of the `berth` binary: `BERTH_BIN` if set, else `berth` beside the test executable's
/// `deps/` directory (same target dir and profile), built beforehand by `cargo xtask test`.
pub fn berth_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BERTH_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.exists(), "BERTH_BIN={} does not exist", bin.display());
            return bin;
        }
        prebuilt("berth")
    })
}

// ---------------------------------------------------------------------------------------------
// Child commands
// ---------------------------------------------------------------------------------------------

/// What a finished client command printed and how it exited.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal (or by the timeout).
    pub code: Option<i32>,
    /// Captured stdout, lossily decoded.
    pub stdout: String,
    /// Captured stderr, lossily decoded.
    pub stderr: String,
    /// True when the command was killed because it ran past its timeout.
    pub timed_out: bool,
}

impl CmdOutput {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// A readable dump of the command and everything it printed.
    pub fn describe(&self) -> String {
        format!(
            "$ {}\nexit: {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.stdout,
            self.stderr
        )
    }

    /// Panics (with the full output) unless the command exited 0; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.success(), "command failed:\n{}", self.describe());
        &self.stdout
    }

    /// Panics (with the full output) unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code:\n{}",
            self.describe()
        );
        self
    }
}

/// Runs `cmd` to completion with piped output, optional stdin, and a hard timeout.
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    let cmdline = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmdline}: {e}"));
    let feeder = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    CmdOutput {
        cmdline,
        code: status.code(),
        stdout,
        stderr,
        timed_out,
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over the UNIX socket
// ---------------------------------------------------------------------------------------------

/// A complete HTTP response read from the engine socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The `message` of a Docker-shaped error body (`{"message": "..."}`); panics otherwise.
    #[track_caller]
    pub fn message(&self) -> String {
        let v = self.json();
        v.get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_else(|| panic!("error body has no string \"message\": {v}"))
            .to_string()
    }
}

/// Sends one request (`Connection: close`) on the UNIX socket at `sock` and reads the whole answer.
pub fn raw_request(
    sock: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<RawResponse> {
    raw_request_timeout(sock, method, path, content_type, body, COMMAND_TIMEOUT)
}

/// [`raw_request`] with an explicit read/write timeout.
pub fn raw_request_timeout(
    sock: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<RawResponse> {
    let mut stream = UnixStream::connect(sock)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-tests\r\nConnection: close\r\n"
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    parse_response(&buf, method == "HEAD")
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn parse_response(buf: &[u8], head_only: bool) -> std::io::Result<RawResponse> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            invalid(format!(
                "no header end in {:?}",
                String::from_utf8_lossy(buf)
            ))
        })?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let rest = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size".into()))?;
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(invalid("truncated chunk".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon under test
// ---------------------------------------------------------------------------------------------

/// A running `berth daemon` with its own temp root, socket and log file.
///
/// Dropping it stops the daemon (SIGTERM, then SIGKILL of its process group after a bounded
/// wait), lazily unmounts anything left mounted under its directory, and prints the daemon log
/// if the test is panicking.
pub struct Daemon {
    dir: Option<TempDir>,
    child: Option<Child>,
    /// Process groups of every daemon incarnation (each is its own group leader).
    groups: Vec<Pid>,
    /// Extra `berth daemon` arguments, kept for restarts.
    extra: Vec<String>,
    /// A command the daemon is started under (`nsenter --net=…`), kept for restarts; it must exec
    /// the daemon (so the child's pid is the daemon's).
    wrap: Vec<String>,
    /// The `berth` binary this daemon runs (restarts run it again).
    bin: PathBuf,
}

impl Daemon {
    /// Starts a daemon on a fresh temp root and waits until it answers `GET /_ping`.
    pub fn start() -> Daemon {
        Daemon::start_with(|_| Vec::new())
    }

    /// Like [`Daemon::start`], with extra `berth daemon` arguments computed from the temp dir
    /// (e.g. `--plugin-dir <dir>/plugins --authorization-plugin NAME`); restarts keep them.
    pub fn start_with(extra: impl FnOnce(&Path) -> Vec<String>) -> Daemon {
        Daemon::start_wrapped(Vec::new(), extra)
    }

    /// Like [`Daemon::start_with`], the daemon started as `wrap… berth daemon …` (every
    /// incarnation): `["nsenter", "--net=/run/netns/NAME"]` runs it in a network namespace of the
    /// test's, so the links it makes can be told from those of other tests.
    pub fn start_wrapped(wrap: Vec<String>, extra: impl FnOnce(&Path) -> Vec<String>) -> Daemon {
        Daemon::launch(berth_binary(), wrap, extra)
    }

    /// Like [`Daemon::start_with`], running the `berth` binary `bin` (the before/after bench runs
    /// an older build beside the current one).
    pub fn start_bin(bin: &Path, extra: impl FnOnce(&Path) -> Vec<String>) -> Daemon {
        Daemon::launch(bin, Vec::new(), extra)
    }

    fn launch(bin: &Path, wrap: Vec<String>, extra: impl FnOnce(&Path) -> Vec<String>) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("create temp dir");
        fs::create_dir_all(dir.path().join("root")).expect("create root dir");
        let extra = extra(dir.path());
        let mut d = Daemon {
            dir: Some(dir),
            child: None,
            groups: Vec::new(),
            extra,
            wrap,
            bin: bin.to_path_buf(),
        };
        d.spawn();
        d
    }

    fn base(&self) -> &Path {
        self.dir.as_ref().expect("daemon dir").path()
    }

    /// The temp directory that holds the root, the socket and the log; tests may put files here.
    pub fn dir(&self) -> &Path {
        self.base()
    }

    /// The daemon's `--root`.
    pub fn root(&self) -> PathBuf {
        self.base().join("root")
    }

    /// The UNIX socket path.
    pub fn socket(&self) -> PathBuf {
        self.base().join("berth.sock")
    }

    /// `unix://<socket>`, as `DOCKER_HOST` and `--host` take it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's log file (stdout and stderr of every incarnation).
    pub fn log_path(&self) -> PathBuf {
        self.base().join("daemon.log")
    }

    /// The daemon log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Loads the `api-policy` example plugin as `name` (a system container running the binary on
    /// the `host` image), with extra `plugin load` `flags` and one `--label` per `labels` entry.
    pub fn load_api_policy(&self, name: &str, flags: &[&str], labels: &[&str]) {
        let bin = example_plugin("api-policy").display().to_string();
        let mut args = vec!["plugin", "load", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["host", &bin, "--name", name]);
        for l in labels {
            args.extend_from_slice(&["--label", l]);
        }
        self.berth(&args).expect_code(0);
    }

    /// The engine socket a privileged plugin `name` calls the engine on (next to its own socket
    /// directory, `<socket dir>.engine.sock`).
    pub fn plugin_engine_socket(&self, name: &str) -> PathBuf {
        let st = self
            .raw("GET", &format!("/berth/plugins/{name}"), None, b"")
            .json();
        let plugin_sock = PathBuf::from(st["Socket"].as_str().expect("Socket"));
        let mut engine_sock = plugin_sock
            .parent()
            .expect("socket dir")
            .as_os_str()
            .to_owned();
        engine_sock.push(".engine.sock");
        let engine_sock = PathBuf::from(engine_sock);
        assert!(engine_sock.exists(), "{} missing", engine_sock.display());
        engine_sock
    }

    /// The current daemon process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let bin = self.bin.clone();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open daemon log");
        let mut marker = log.try_clone().expect("clone log fd");
        let _ = writeln!(marker, "==== berth-tests: starting daemon ====");
        let mut cmd = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        cmd.arg("daemon")
            .arg("--root")
            .arg(self.root())
            .arg("--host")
            .arg(self.host())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log)
            .process_group(0);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        self.groups.push(Pid::from_raw(child.id() as i32));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let sock = self.socket();
        let mut last = String::from("socket not created yet");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "berth daemon exited with {status} before answering /_ping\n--- daemon log ({}) ---\n{}",
                    self.log_path().display(),
                    self.log()
                );
            }
            if sock.exists() {
                match raw_request(&sock, "GET", "/_ping", None, b"") {
                    Ok(r) if r.status == 200 => return,
                    Ok(r) => last = format!("/_ping answered {} {:?}", r.status, r.text()),
                    Err(e) => last = format!("/_ping failed: {e}"),
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "berth daemon did not answer GET /_ping on {} within {:?} (last: {last})\n--- daemon log ---\n{}",
                    sock.display(),
                    READY_TIMEOUT,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon process (only it, not its containers) with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same root and socket (after [`Daemon::kill9`] or [`Daemon::stop`]).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() while the daemon still runs"
        );
        self.spawn();
    }

    /// Graceful stop: SIGTERM, then SIGKILL of the whole process group after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!("berth-tests: daemon ignored SIGTERM for {grace:?}, killing it");
                        let _ = killpg(pid, Signal::SIGKILL);
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// A bollard client on the daemon's socket (API version 1.50, no negotiation).
    pub fn bollard(&self) -> bollard::Docker {
        bollard::Docker::connect_with_unix(
            &self.host(),
            120,
            &bollard::ClientVersion {
                major_version: 1,
                minor_version: 50,
            },
        )
        .expect("bollard connect_with_unix")
    }

    /// One raw HTTP request (`Connection: close`); panics on transport errors.
    #[track_caller]
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> RawResponse {
        raw_request(&self.socket(), method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path}: transport error: {e}"))
    }

    /// `raw` with a JSON body.
    #[track_caller]
    pub fn raw_json(&self, method: &str, path: &str, body: &serde_json::Value) -> RawResponse {
        self.raw(
            method,
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    }

    /// Runs the `berth` client against this daemon (`-H unix://…`); 90 s, as plugin loads may
    /// wait out long handshake deadlines.
    pub fn berth(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(berth_binary());
        cmd.arg("-H").arg(self.host()).args(args);
        run_command(cmd, None, Duration::from_secs(90))
    }

    /// Runs the real `docker` CLI against this daemon (`DOCKER_HOST=unix://…`, private config dir).
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        self.docker_with(args, None, COMMAND_TIMEOUT)
    }

    /// [`Daemon::docker`] with stdin data and an explicit timeout.
    pub fn docker_with(&self, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
        let config = self.base().join("docker-config");
        let _ = fs::create_dir_all(&config);
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &config)
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY");
        run_command(cmd, stdin, timeout)
    }

    /// `berth plugin load --name NAME [flags] host <test-plugin> --socket
    /// /var/run/docker/plugin.sock --name NAME [plugin_args]`: the example `test-plugin` as a
    /// plugin container of the built-in `host` image.
    pub fn load_test_plugin(&self, name: &str, flags: &[&str], plugin_args: &[&str]) -> CmdOutput {
        let bin = example_plugin("test-plugin").display().to_string();
        let mut args = vec!["plugin", "load", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[
            "host",
            &bin,
            "--socket",
            "/var/run/docker/plugin.sock",
            "--name",
            name,
        ]);
        args.extend_from_slice(plugin_args);
        self.berth(&args)
    }

    /// Starts the example plugin binary `bin` as `name` on `<dir>/<name>.sock` (not loaded),
    /// logging its calls to `log`, with `extra` arguments; returns it and its socket.
    pub fn spawn_logged_plugin(
        &self,
        bin: &str,
        name: &str,
        log: &Path,
        extra: &[&str],
    ) -> (PluginProc, PathBuf) {
        let sock = self.dir().join(format!("{name}.sock"));
        let (sock_arg, log_arg) = (sock.display().to_string(), log.display().to_string());
        let mut args = vec!["--socket", &sock_arg, "--name", name, "--log", &log_arg];
        args.extend_from_slice(extra);
        (spawn_plugin(&example_plugin(bin), &args), sock)
    }

    /// Loads the plugin serving `sock` as `name` (`POST /berth/plugins/load`, 20 s handshake
    /// timeout, optionally a per-call `deadline`), once the socket exists; panics unless 200.
    #[track_caller]
    pub fn load_socket(&self, name: &str, sock: &Path, deadline: Option<&str>) {
        poll_until("the plugin socket", Duration::from_secs(20), || {
            sock.exists().then_some(())
        });
        let mut body = serde_json::json!({"Name": name, "Socket": sock, "Timeout": "20s"});
        if let Some(dl) = deadline {
            body["Deadline"] = serde_json::json!(dl);
        }
        let r = self.raw_json("POST", "/berth/plugins/load", &body);
        assert_eq!(r.status, 200, "load {name}: {}", r.text());
    }

    /// Starts the example `flocker` as `name`, serving `<dir>/<name>.sock` with its datasets in
    /// `storage`, logging its calls to `log` (not loaded: see [`Daemon::load_socket`]). Returns
    /// the process and the socket.
    pub fn spawn_flocker(
        &self,
        name: &str,
        storage: &Path,
        log: &Path,
        extra: &[&str],
    ) -> (PluginProc, PathBuf) {
        let storage = storage.display().to_string();
        let mut args = vec!["--storage", storage.as_str()];
        args.extend_from_slice(extra);
        self.spawn_logged_plugin("flocker", name, log, &args)
    }

    /// Runs Debian's `docker-compose` (1.29) in `dir` against this daemon, project `project`.
    pub fn compose(&self, dir: &Path, project: &str, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(dir)
            .args(["--ansi", "never"])
            .args(["-p", project])
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY");
        run_command(cmd, None, COMMAND_TIMEOUT)
    }

    /// Runs a python script with `docker`, `json`, `sys` imported and `client` bound to
    /// `docker.DockerClient(base_url="unix://…")`.
    pub fn python(&self, script: &str) -> CmdOutput {
        let full = format!(
            "import docker, json, sys\nclient = docker.DockerClient(base_url={:?}, version=\"auto\", timeout=60)\n{script}",
            self.host()
        );
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(full);
        run_command(cmd, None, COMMAND_TIMEOUT)
    }

    /// Imports the busybox rootfs as image `name` (`POST /images/create?fromSrc=-&repo=name`,
    /// what `docker import` sends) and returns the last NDJSON `status` (the image id).
    #[track_caller]
    pub fn import_busybox(&self, name: &str) -> String {
        let path = format!(
            "/v1.50/images/create?fromSrc=-&repo={}",
            name.replace(':', "%3A")
        );
        let r = self.raw(
            "POST",
            &path,
            Some("application/x-tar"),
            busybox_rootfs_tar(),
        );
        assert_eq!(
            r.status,
            200,
            "import {name}: status {} body {}",
            r.status,
            r.text()
        );
        let text = r.text();
        let mut status = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("import {name}: bad NDJSON line {line:?}: {e}"));
            assert!(
                v.get("error").is_none() && v.get("errorDetail").is_none(),
                "import {name} failed: {line}"
            );
            if let Some(s) = v.get("status").and_then(|s| s.as_str()) {
                status = Some(s.to_string());
            }
        }
        status.unwrap_or_else(|| panic!("import {name}: no status line in {text:?}"))
    }

    /// Mount points (from `/proc/self/mountinfo`) that lie under this daemon's directory.
    pub fn leftover_mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.base())
    }
}

impl Daemon {
    /// Best effort, for drop: force-remove every container (system ones too) so no container
    /// process outlives the test. Short timeouts: a hung daemon must not hang the test run.
    fn remove_all_containers(&self) {
        if self.child.is_none() {
            return;
        }
        let sock = self.socket();
        let t = Duration::from_secs(5);
        let Ok(list) = raw_request_timeout(&sock, "GET", "/containers/json?all=1", None, b"", t)
        else {
            return;
        };
        let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&list.body) else {
            return;
        };
        for id in items.iter().filter_map(|c| c["Id"].as_str()) {
            let path = format!("/containers/{id}?force=1&v=1");
            let _ = raw_request_timeout(&sock, "DELETE", &path, None, b"", t);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.remove_all_containers();
        self.stop(Duration::from_secs(10));
        for pgid in &self.groups {
            let _ = killpg(*pgid, Signal::SIGKILL);
        }
        let Some(dir) = self.dir.take() else { return };
        if thread::panicking() {
            eprintln!(
                "--- berth daemon log ({}) ---\n{}\n--- end of daemon log ---",
                dir.path().join("daemon.log").display(),
                fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
            );
        }
        let mut mounts = mounts_under(dir.path());
        mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for m in &mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let remaining = mounts_under(dir.path());
        if !remaining.is_empty() {
            // Never recurse into a mount (the `host` image overlays the host's `/`): leak instead.
            let kept = dir.keep();
            eprintln!(
                "berth-tests: leaving {} behind, still mounted: {remaining:?}",
                kept.display()
            );
        }
    }
}

/// Mount points in this process's mount namespace at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn unescape_mount_path(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

// ---------------------------------------------------------------------------------------------
// Fixtures and small helpers
// ---------------------------------------------------------------------------------------------

/// Where Debian's `busybox-static` installs the static busybox.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked in the fixture's `/bin`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "echo", "cat", "ls", "sleep", "true", "false", "env", "hostname", "id", "mkdir",
    "rm", "touch", "pwd", "ps", "kill", "grep", "head", "tail", "wc", "test", "[", "printf",
    "mount", "readlink", "stat", "uname", "date", "seq", "tr", "cut", "dd", "yes", "nslookup",
    "wget", "httpd", "nc", "cp",
];

/// A tar of a minimal rootfs: `bin/busybox` plus applet symlinks, `usr/bin/env`, and the usual
/// empty directories (`dev`, `proc`, `sys`, `tmp`, `etc`, `root`, `data`). Built once per process.
///
/// Panics when `/bin/busybox` is missing: install it with `apt-get install busybox-static`.
pub fn busybox_rootfs_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let busybox = match fs::read(BUSYBOX) {
            Ok(b) => b,
            // No busybox-static (a fresh machine before `.ci/run`): build the image from the
            // host's own dynamically linked tools and their libraries instead.
            Err(_) => return host_tools_rootfs_tar(),
        };
        let mut builder = tar::Builder::new(Vec::new());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for dir in [
            "bin", "dev", "etc", "proc", "sys", "tmp", "root", "usr", "usr/bin", "data",
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
            h.set_size(0);
            h.set_mtime(now);
            builder
                .append_data(&mut h, format!("{dir}/"), std::io::empty())
                .expect("tar dir");
        }
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(busybox.len() as u64);
        h.set_mtime(now);
        builder
            .append_data(&mut h, "bin/busybox", busybox.as_slice())
            .expect("tar busybox");
        let mut links: Vec<(String, &str)> = BUSYBOX_APPLETS
            .iter()
            .map(|a| (format!("bin/{a}"), "busybox"))
            .collect();
        links.push(("usr/bin/env".into(), "../../bin/busybox"));
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            h.set_mtime(now);
            builder
                .append_link(&mut h, path, target)
                .expect("tar symlink");
        }
        let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(passwd.len() as u64);
        h.set_mtime(now);
        builder
            .append_data(&mut h, "etc/passwd", &passwd[..])
            .expect("tar passwd");
        builder.into_inner().expect("finish tar")
    })
}

/// The fallback fixture: the host's binaries for [`BUSYBOX_APPLETS`] (those that exist) with
/// every shared library `ldd` lists, at their host paths, so the applets run in the image.
fn host_tools_rootfs_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(true);
    let mut files: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    let mut links = Vec::new();
    for applet in BUSYBOX_APPLETS {
        let found = ["/bin", "/usr/bin", "/sbin", "/usr/sbin"]
            .iter()
            .map(|d| Path::new(d).join(applet))
            .find(|p| p.is_file());
        let Some(path) = found else { continue };
        let real = fs::canonicalize(&path).expect("canonicalize tool");
        links.push((format!("bin/{applet}"), real.clone()));
        files.insert(real.clone());
        let ldd = Command::new("ldd").arg(&real).output().expect("run ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            if let Some(lib) = lib.filter(|l| l.exists()) {
                files.insert(lib);
            }
        }
    }
    for dir in ["dev", "etc", "proc", "sys", "tmp", "root", "data", "bin"] {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        builder
            .append_data(&mut h, format!("{dir}/"), std::io::empty())
            .expect("tar dir");
    }
    for f in &files {
        let rel = f.strip_prefix("/").expect("absolute path");
        builder
            .append_path_with_name(f, rel)
            .expect("tar host file");
    }
    // The dynamic loader is looked up by its canonical ABI path.
    for ld in ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"] {
        if Path::new(ld).exists() {
            builder
                .append_path_with_name(ld, &ld[1..])
                .expect("tar loader");
        }
    }
    for (path, target) in links {
        if Path::new(&format!("/{path}")) == target.as_path() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        builder
            .append_link(&mut h, path, &target)
            .expect("tar symlink");
    }
    builder.into_inner().expect("finish tar")
}

/// Writes [`busybox_rootfs_tar`] to `path` (for `docker import FILE`).
pub fn write_busybox_rootfs_tar(path: &Path) {
    let mut f = File::create(path).expect("create rootfs tar");
    f.write_all(busybox_rootfs_tar()).expect("write rootfs tar");
}

/// A plugin process started outside the engine (on a socket); killed and reaped on drop.
pub struct PluginProc(Child);

impl Drop for PluginProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the plugin binary `bin` with `args`, its standard streams closed.
pub fn spawn_plugin(bin: &Path, args: &[&str]) -> PluginProc {
    PluginProc(
        Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
    )
}

/// The path of an example plugin binary (`examples/plugins/src/bin/NAME.rs`), built beforehand by
/// `cargo xtask test` like [`berth_binary`].
pub fn example_plugin(name: &str) -> PathBuf {
    prebuilt(name)
}

/// A name unique within this machine's test run: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
#[track_caller]
pub fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Async [`poll_until`]: `f` is a closure returning a future.
pub async fn poll_until_async<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Decodes a Docker multiplexed stream (8-byte headers) into `(stream, payload)` frames; panics
/// on a malformed header (what the CLI reports as "Unrecognized input header").
#[track_caller]
pub fn demux(mut data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !data.is_empty() {
        assert!(
            data.len() >= 8,
            "truncated multiplexed frame header: {data:?}"
        );
        let stream = data[0];
        assert!(
            stream <= 2 && data[1..4] == [0, 0, 0],
            "bad multiplexed header {:?} (data {:?})",
            &data[..8],
            String::from_utf8_lossy(data)
        );
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        assert!(data.len() >= 8 + len, "truncated multiplexed payload");
        frames.push((stream, data[8..8 + len].to_vec()));
        data = &data[8 + len..];
    }
    frames
}

/// The authorization plugin as a plain process on a Docker-style discovery socket.
pub struct AuthzPlugin {
    pub child: Child,
    pub log: PathBuf,
}

impl AuthzPlugin {
    /// Starts `authz-policy` on `<plugin_dir>/authz.sock` with extra `args` (`--deny TEXT`, …),
    /// logging what it saw.
    pub fn start(plugin_dir: &Path, args: &[&str]) -> AuthzPlugin {
        std::fs::create_dir_all(plugin_dir).expect("plugin dir");
        let log = plugin_dir.join("authz.log");
        let mut cmd = Command::new(example_plugin("authz-policy"));
        cmd.arg("--socket")
            .arg(plugin_dir.join("authz.sock"))
            .arg("--log")
            .arg(&log);
        cmd.args(args);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start authz-policy");
        poll_until("the authz plugin socket", Duration::from_secs(10), || {
            plugin_dir.join("authz.sock").exists().then_some(())
        });
        AuthzPlugin { child, log }
    }

    /// Every logged call, in order.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for AuthzPlugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `docker save` archive of one image tagged `tag`: `layers` as `layer<i>/layer.tar`, `config`
/// (the image config JSON) as `config.json`, and the `manifest.json` naming them.
pub fn save_archive(tag: &str, layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        files.push((name.clone(), l.clone()));
        names.push(name);
    }
    files.push(("config.json".into(), config.to_vec()));
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": [tag], "Layers": names}]);
    files.push(("manifest.json".into(), manifest.to_string().into_bytes()));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    tar_of(&refs)
}

/// Builds a tar with `files` (name, contents; a name ending in `/` is a directory), owned by root,
/// mtime fixed; names are written into the header as given (`..` included, for escape tests).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_500_000_000);
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_mode(if name.starts_with("bin/") {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
        }
        // `append_data` refuses `..`; write the name into the header directly.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).expect("appending to an in-memory tar");
    }
    b.into_inner().expect("finishing an in-memory tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nApi-Version: 1.50\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("API-VERSION"), Some("1.50"));
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn parses_length_framed_and_head_responses() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"message\":\"no\"}\n";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.message(), "no");
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true).unwrap();
        assert!(r.body.is_empty());
        assert!(parse_response(b"garbage", false).is_err());
    }

    #[test]
    fn demuxes_frames() {
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"hi\n");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 1, b'!']);
        assert_eq!(
            demux(&data),
            vec![(1, b"hi\n".to_vec()), (2, b"!".to_vec())]
        );
    }

    #[test]
    #[should_panic(expected = "bad multiplexed header")]
    fn demux_rejects_unframed_text() {
        demux(b"hello world\n");
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(
            unescape_mount_path(r"/tmp/a\040b\011c"),
            PathBuf::from("/tmp/a b\tc")
        );
    }

    /// Needs root (chroot). The fixture unpacks to a rootfs where busybox's applets run.
    #[test]
    fn busybox_fixture_is_a_working_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        // The options an engine unpacking an image uses: owners and modes kept.
        let mut archive = tar::Archive::new(busybox_rootfs_tar());
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.unpack(dir.path()).unwrap();
        for p in [
            "bin/busybox",
            "bin/sh",
            "bin/sleep",
            "usr/bin/env",
            "proc",
            "dev",
            "tmp",
        ] {
            assert!(
                dir.path().join(p).symlink_metadata().is_ok(),
                "{p} missing from the fixture"
            );
        }
        let mut cmd = Command::new("chroot");
        cmd.arg(dir.path())
            .args(["/bin/sh", "-c", "echo hi; ls /bin | wc -l; env true"]);
        let out = run_command(cmd, None, Duration::from_secs(10));
        let lines: Vec<&str> = out.ok().lines().collect();
        assert_eq!(lines[0], "hi");
        assert!(lines[1].trim().parse::<usize>().unwrap() > BUSYBOX_APPLETS.len());
    }

    /// Needs root (chroot). The fallback fixture (no busybox-static) runs the host's own tools.
    #[test]
    fn host_tools_fixture_is_a_working_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let tar = host_tools_rootfs_tar();
        let mut archive = tar::Archive::new(tar.as_slice());
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.unpack(dir.path()).unwrap();
        let mut cmd = Command::new("chroot");
        cmd.arg(dir.path()).args([
            "/bin/sh",
            "-c",
            "echo hi; cat /etc/missing 2>/dev/null || echo no; sleep 0; ls / | wc -l",
        ]);
        let out = run_command(cmd, None, Duration::from_secs(10));
        let lines: Vec<&str> = out.ok().lines().collect();
        assert_eq!(lines[..2], ["hi", "no"]);
        assert!(lines[2].trim().parse::<usize>().unwrap() >= 8);
    }

    #[test]
    fn run_command_times_out_and_captures() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo err >&2; exit 4"]);
        let out = run_command(cmd, Some(b"in\n"), Duration::from_secs(10));
        assert_eq!(out.code, Some(4));
        assert_eq!(out.stdout, "in\n");
        assert_eq!(out.stderr, "err\n");
        let mut cmd = Command::new("sleep");
        cmd.arg("10");
        let out = run_command(cmd, None, Duration::from_millis(200));
        assert!(out.timed_out);
    }
}
