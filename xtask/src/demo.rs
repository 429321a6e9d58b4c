//! `cargo xtask demo`: builds Berth, starts an engine on a temporary socket and walks through
//! the seed's demo, printing each step as the command a user types and its output. Everything it
//! started or wrote is cleaned up on success, failure and Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Everything to undo: daemons to stop and the scratch directory.
#[derive(Default)]
struct Cleanup {
    daemons: Vec<Child>,
    scratch: Option<PathBuf>,
}

impl Cleanup {
    fn run(&mut self) {
        for d in &mut self.daemons {
            // SIGTERM lets the daemon stop its containers; then make sure it is gone.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
        }
        for d in &mut self.daemons {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if matches!(d.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        self.daemons.clear();
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// One engine of the demo.
struct Node {
    name: &'static str,
    socket: PathBuf,
    /// The daemon's pid.
    pid: u32,
}

struct Demo {
    berth: PathBuf,
    cleanup: Arc<Mutex<Cleanup>>,
}

impl Demo {
    fn start_node(&self, name: &'static str, scratch: &Path) -> Result<Node> {
        let root = scratch.join(name);
        let socket = scratch.join(format!("{name}.sock"));
        std::fs::create_dir_all(&root)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch.join(format!("{name}.log")))?;
        let child = Command::new(&self.berth)
            .arg("daemon")
            .arg("--root")
            .arg(&root)
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting berth daemon")?;
        let pid = child.id();
        self.cleanup
            .lock()
            .map_err(|_| anyhow::anyhow!("cleanup lock poisoned"))?
            .daemons
            .push(child);
        let node = Node { name, socket, pid };
        let start = Instant::now();
        loop {
            let ok = Command::new(&self.berth)
                .args(["-H", &node.host(), "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "{name} did not answer within 20 s; see {}",
                    scratch.join(format!("{name}.log")).display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "# {name}: berth daemon --root {} --host {}",
            root.display(),
            node.host()
        );
        Ok(node)
    }

    /// Stops `node`'s daemon (SIGTERM: containers stopped, plugins kept) and starts it again on
    /// the same root; returns as soon as the new daemon answers `version` (the gate may be closed).
    fn restart_node(&self, node: Node, scratch: &Path) -> Result<Node> {
        println!(
            "\n# restarting {} (SIGTERM, then berth daemon on the same root)",
            node.name
        );
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(node.pid as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            let mut cleanup = self
                .cleanup
                .lock()
                .map_err(|_| anyhow::anyhow!("cleanup lock poisoned"))?;
            let exited = cleanup
                .daemons
                .iter_mut()
                .position(|c| c.id() == node.pid && matches!(c.try_wait(), Ok(Some(_))));
            if let Some(i) = exited {
                // Already reaped by try_wait above.
                let mut stopped = cleanup.daemons.remove(i);
                let _ = stopped.wait();
                break;
            }
            drop(cleanup);
            if start.elapsed() > Duration::from_secs(30) {
                bail!("{} did not stop within 30 s", node.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.start_node(node.name, scratch)
    }

    /// Prints `prompt`, runs `cmd`, prints what it wrote (progress on stderr first, as on a
    /// terminal) and checks its outcome: success, or failure when `refused`. Returns (stdout,
    /// stderr).
    fn show(&self, prompt: String, mut cmd: Command, refused: bool) -> Result<(String, String)> {
        println!("\n{prompt}");
        let out = cmd.output().with_context(|| format!("running {prompt}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if refused {
            print!("{stdout}{stderr}");
            println!("(exit status {})", out.status.code().unwrap_or(-1));
        } else {
            eprint!("{stderr}");
            print!("{stdout}");
        }
        match (out.status.success(), refused) {
            (true, true) => bail!("`{prompt}` was expected to be refused"),
            (false, false) => bail!("`{prompt}` failed with {}", out.status),
            _ => Ok((stdout, stderr)),
        }
    }

    fn docker_command(node: &Node, args: &[&str]) -> (String, Command) {
        let prompt = format!(
            "{}$ DOCKER_HOST={} docker {}",
            node.name,
            node.host(),
            shell_words(args)
        );
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", node.host()).args(args);
        (prompt, cmd)
    }

    /// Prints `node$ berth ARGS`, runs it, prints its output, and fails on a non-zero exit.
    fn berth(&self, node: &Node, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.berth);
        cmd.arg("-H").arg(node.host()).args(args);
        Ok(self
            .show(
                format!("{}$ berth {}", node.name, shell_words(args)),
                cmd,
                false,
            )?
            .0)
    }

    /// The same through the real docker CLI.
    fn docker(&self, node: &Node, args: &[&str]) -> Result<String> {
        let (prompt, cmd) = Self::docker_command(node, args);
        Ok(self.show(prompt, cmd, false)?.0)
    }

    /// A docker command that is meant to be refused; returns its stderr.
    fn docker_refused(&self, node: &Node, args: &[&str]) -> Result<String> {
        let (prompt, cmd) = Self::docker_command(node, args);
        Ok(self.show(prompt, cmd, true)?.1)
    }
}

impl Node {
    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|<>*".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                (*a).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn build() -> Result<PathBuf> {
    println!("# building berth");
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", "berth-cli"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target.join("debug").join("berth"))
}

/// Builds the flocker example plugin; returns its path.
fn build_flocker(berth: &Path) -> Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "berth-example-plugins",
            "--bin",
            "flocker",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the flocker plugin failed");
    }
    Ok(berth.with_file_name("flocker"))
}

/// The seed's demo on two engines sharing a storage dir (issue 4): the flocker plugin resolves
/// `/flocker/test` on each node; then a named volume with `--driver` and `--metadata`.
fn flocker_steps(demo: &Demo, scratch: &Path, node1: &Node) -> Result<()> {
    let node2 = demo.start_node("node2", scratch)?;
    let flocker = build_flocker(&demo.berth)?;
    let storage = scratch.join("flocker-storage");
    std::fs::create_dir_all(&storage)?;
    let storage_s = storage.display().to_string();
    let mounts = format!("{storage_s}:{storage_s}");
    let flocker_s = flocker.display().to_string();

    println!("\n# 0a. Load the flocker plugin on both engines; they share {storage_s}.");
    for node in [node1, &node2] {
        demo.berth(
            node,
            &[
                "plugin",
                "load",
                "--name",
                "flocker",
                "-v",
                &mounts,
                "host",
                &flocker_s,
                "--storage",
                &storage_s,
            ],
        )?;
    }
    demo.berth(node1, &["plugin", "ls"])?;

    println!("\n# 0b. The seed's demo: node1 writes fish, node2 reads it.");
    demo.berth(
        node1,
        &[
            "run",
            "--rm",
            "-v",
            "/flocker/test:/data",
            "host",
            "sh",
            "-c",
            "echo fish > /data/file.txt",
        ],
    )?;
    let out = demo.berth(
        &node2,
        &[
            "run",
            "--rm",
            "-v",
            "/flocker/test:/data",
            "host",
            "cat",
            "/data/file.txt",
        ],
    )?;
    if out.trim() != "fish" {
        bail!("expected node2 to print fish, got {out:?}");
    }

    println!("\n# 0c. A named volume with a plugin driver and metadata.");
    demo.berth(
        node1,
        &[
            "volume",
            "create",
            "--driver",
            "flocker",
            "--metadata",
            "size=50G,tier=ssd",
            "nicevol",
        ],
    )?;
    demo.berth(
        node1,
        &[
            "run",
            "--rm",
            "-v",
            "nicevol:/data",
            "host",
            "sh",
            "-c",
            "echo hello > /data/greeting",
        ],
    )?;
    let out = demo.berth(
        &node2,
        &[
            "run",
            "--rm",
            "-v",
            "/flocker/nicevol:/data",
            "host",
            "cat",
            "/data/greeting",
        ],
    )?;
    if out.trim() != "hello" {
        bail!("expected node2 to read the named volume's data, got {out:?}");
    }
    demo.berth(node1, &["volume", "inspect", "nicevol"])?;
    demo.berth(node1, &["volume", "snapshot", "nicevol", "first"])?;
    demo.berth(node1, &["volume", "rm", "nicevol"])?;
    demo.berth(node1, &["volume", "ls"])?;
    Ok(())
}

pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the demo runs real containers in new namespaces: run it as root (sudo -E cargo xtask demo)"
        );
    }
    let berth = build()?;
    let cleanup = Arc::new(Mutex::new(Cleanup::default()));
    {
        let cleanup = cleanup.clone();
        ctrlc::set_handler(move || {
            eprintln!("\n# interrupted: cleaning up");
            if let Ok(mut c) = cleanup.lock() {
                c.run();
            }
            std::process::exit(130);
        })
        .context("installing the Ctrl-C handler")?;
    }
    let scratch = std::env::temp_dir().join(format!("berth-demo-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    cleanup
        .lock()
        .map_err(|_| anyhow::anyhow!("cleanup lock poisoned"))?
        .scratch = Some(scratch.clone());
    let demo = Demo {
        berth,
        cleanup: cleanup.clone(),
    };
    let result = steps(&demo, &scratch);
    if let Ok(mut c) = cleanup.lock() {
        c.run();
    }
    match &result {
        Ok(()) => println!(
            "\n# demo finished; engines stopped and {} removed",
            scratch.display()
        ),
        Err(e) => eprintln!("\n# demo failed: {e:#}"),
    }
    result
}

/// Builds the example plugins; returns the path of `name`.
fn example_plugin(berth: &Path, name: &str) -> Result<String> {
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "berth-example-plugins",
            "--bin",
            name,
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the {name} plugin failed");
    }
    Ok(berth.with_file_name(name).display().to_string())
}

/// Hidden system containers, an api plugin rewriting and rejecting requests inside the engine,
/// and the readiness gate while the engine restarts with a slow plugin.
fn engine_plugin_steps(demo: &Demo, scratch: &Path, node1: Node) -> Result<Node> {
    println!("\n# 0d. Plugins are hidden system containers: docker ps -a does not list them.");
    demo.docker(&node1, &["ps", "-a"])?;
    demo.berth(&node1, &["ps", "--system"])?;

    println!("\n# 0e. An api plugin: its pre-hook labels every create and rejects --privileged.");
    let policy = example_plugin(&demo.berth, "api-policy")?;
    demo.berth(
        &node1,
        &[
            "plugin",
            "load",
            "--name",
            "policy",
            "host",
            &policy,
            "--name",
            "policy",
            "--label",
            "demo.policy=checked",
        ],
    )?;
    demo.docker_refused(&node1, &["run", "--rm", "--privileged", "host", "true"])?;
    demo.docker(&node1, &["create", "--name", "labelled", "host", "true"])?;
    let labels = demo.docker(
        &node1,
        &["inspect", "--format", "{{json .Config.Labels}}", "labelled"],
    )?;
    if !labels.contains("demo.policy") {
        bail!("expected the api plugin's label on the container, got {labels}");
    }
    demo.docker(&node1, &["rm", "labelled"])?;
    demo.berth(&node1, &["plugin", "unload", "policy"])?;

    println!(
        "\n# 0f. The readiness gate: after a restart, requests wait until every plugin shook hands."
    );
    let slow = example_plugin(&demo.berth, "test-plugin")?;
    demo.berth(
        &node1,
        &[
            "plugin",
            "load",
            "--name",
            "slowpoke",
            "host",
            &slow,
            "--socket",
            "/var/run/docker/plugin.sock",
            "--name",
            "slowpoke",
            "--start-delay-ms",
            "2000",
        ],
    )?;
    let node1 = demo.restart_node(node1, scratch)?;
    let t = Instant::now();
    demo.docker(&node1, &["version", "--format", "{{.Server.Version}}"])?;
    println!(
        "(version answered after {} ms: it passes the gate)",
        t.elapsed().as_millis()
    );
    let t = Instant::now();
    demo.docker(&node1, &["ps"])?;
    println!(
        "(ps answered after {} ms: it waited for slowpoke's handshake)",
        t.elapsed().as_millis()
    );
    demo.berth(&node1, &["plugin", "ls"])?;
    demo.berth(&node1, &["plugin", "unload", "slowpoke"])?;
    Ok(node1)
}

/// Serves /data/file.txt once on 1.2.3.4:8080 (run inside the `web` container).
const SERVE_FILE: &str = "import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('1.2.3.4', 8080))
s.listen()
c, _ = s.accept()
c.sendall(open('/data/file.txt', 'rb').read())
c.close()";

/// Fetches what 1.2.3.4:8080 serves, retrying while the server starts.
const FETCH: &str = "import socket, time
for _ in range(100):
    try:
        print(socket.create_connection(('1.2.3.4', 8080), 1).recv(100).decode(), end='')
        break
    except OSError:
        time.sleep(0.1)";

/// The seed's network example: a network plugin speaking Docker's NetworkDriver and IpamDriver
/// (run on the host: it needs CAP_NET_ADMIN there, so it is loaded by socket), `greatnet`, a
/// container with `--ip 1.2.3.4` serving the flocker dataset, another one reaching it.
fn network_plugin_steps(demo: &Demo, scratch: &Path, node1: &Node) -> Result<()> {
    println!("\n# 0g. A network plugin: greatnet, --ip 1.2.3.4, together with the flocker volume.");
    let netplug = example_plugin(&demo.berth, "netplug")?;
    let sock = scratch.join("netplug.sock");
    let child = Command::new(&netplug)
        .arg("--socket")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting netplug")?;
    demo.cleanup
        .lock()
        .map_err(|_| anyhow::anyhow!("cleanup lock poisoned"))?
        .daemons
        .push(child);
    let start = Instant::now();
    while !sock.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("netplug did not create {}", sock.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("# netplug --socket {} &", sock.display());
    let sock_s = sock.display().to_string();
    demo.berth(
        node1,
        &["plugin", "load", "--name", "netplug", "--socket", &sock_s],
    )?;
    demo.berth(
        node1,
        &[
            "network",
            "create",
            "-d",
            "netplug",
            "--ipam-driver",
            "netplug",
            "--subnet",
            "1.2.3.0/24",
            "greatnet",
        ],
    )?;
    demo.berth(
        node1,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--net",
            "greatnet",
            "--ip",
            "1.2.3.4",
            "-v",
            "/flocker/test:/data",
            "host",
            "sh",
            "-c",
            "ip -4 -o addr show eth0; exec python3 -c \"$0\"",
            SERVE_FILE,
        ],
    )?;
    let out = demo.berth(
        node1,
        &[
            "run", "--rm", "--net", "greatnet", "host", "python3", "-c", FETCH,
        ],
    )?;
    if out.trim() != "fish" {
        bail!("expected the second container to fetch fish from 1.2.3.4, got {out:?}");
    }
    let logs = demo.berth(node1, &["logs", "web"])?;
    if !logs.contains("1.2.3.4/24") {
        bail!("expected web to show 1.2.3.4 on eth0, got {logs:?}");
    }
    demo.berth(node1, &["network", "inspect", "greatnet"])?;
    demo.berth(node1, &["rm", "-f", "web"])?;
    demo.berth(node1, &["network", "rm", "greatnet"])?;
    demo.berth(node1, &["plugin", "unload", "netplug"])?;
    Ok(())
}

fn steps(demo: &Demo, scratch: &Path) -> Result<()> {
    let node1 = demo.start_node("node1", scratch)?;
    flocker_steps(demo, scratch, &node1)?;
    let node1 = engine_plugin_steps(demo, scratch, node1)?;
    network_plugin_steps(demo, scratch, &node1)?;
    let data = scratch.join("shared").join("test");
    let bind = format!("{}:/data", data.display());

    println!("\n# 1. A container writes to a bind mount; another one reads it back.");
    demo.berth(
        &node1,
        &[
            "run",
            "--rm",
            "-v",
            &bind,
            "host",
            "sh",
            "-c",
            "echo fish > /data/file.txt",
        ],
    )?;
    let out = demo.berth(
        &node1,
        &["run", "--rm", "-v", &bind, "host", "cat", "/data/file.txt"],
    )?;
    if out.trim() != "fish" {
        bail!("expected the second container to print fish, got {out:?}");
    }

    println!("\n# 2. A named volume with the local driver.");
    demo.berth(&node1, &["volume", "create", "demo-vol"])?;
    demo.berth(
        &node1,
        &[
            "run",
            "--rm",
            "-v",
            "demo-vol:/vol",
            "host",
            "sh",
            "-c",
            "echo kept > /vol/note; cat /vol/note",
        ],
    )?;
    demo.berth(&node1, &["volume", "ls"])?;
    demo.berth(&node1, &["volume", "rm", "demo-vol"])?;

    println!("\n# 3. The real docker CLI drives the same engine.");
    demo.docker(
        &node1,
        &["run", "-d", "--name", "demo-sleeper", "host", "sleep", "30"],
    )?;
    demo.docker(&node1, &["ps"])?;
    demo.docker(&node1, &["rm", "-f", "demo-sleeper"])?;
    demo.berth(&node1, &["ps", "-a"])?;
    Ok(())
}
