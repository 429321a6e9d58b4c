//! `berth plugin check`: the plugin conformance kit (`berth-plugin-check`), run against a plugin
//! given by socket, by Docker-style discovery name, or as an image and command started the way
//! `plugin load` starts it: a container of the engine's runtime
//! ([`berth_engine::standalone`]), the image looked up read-only in the state root, the plugin's
//! socket directory bind-mounted at `/var/run/docker`. Needs no daemon. The container is stopped
//! and removed when the check ends, also when it fails or is interrupted (Ctrl-C, SIGTERM). Exit
//! status: 0 when every required check passed, 1 when one failed, 2 when the plugin could not be
//! reached or started, 130 when interrupted.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use berth_engine::runtime::NamespaceRuntime;
use berth_engine::standalone::{StandalonePlugin, StandaloneSpec};
use berth_plugin_check::{Group, Options, Report};
use clap::Args;

use crate::commands::Exit;
use crate::output::{self, Format};
use crate::parse;

/// Flags of `plugin check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin's socket.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["name", "image"])]
    pub socket: Option<PathBuf>,
    /// Find the plugin the Docker way (`/run/docker/plugins/NAME.sock`, spec files).
    #[arg(long, value_name = "NAME", conflicts_with = "image")]
    pub name: Option<String>,
    /// Discovery directory for --name (repeatable; default: Docker's).
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Run the plugin as a container of IMAGE the way `plugin load IMAGE CMD` does (the
    /// image's root filesystem, its own namespaces, a fresh socket directory at
    /// /var/run/docker), check it, stop and remove it. Needs root, no daemon.
    #[arg(long, value_name = "IMAGE", required_unless_present_any = ["socket", "name"])]
    pub image: Option<String>,
    /// With --image: the engine state root whose images are used (read only).
    #[arg(long, value_name = "DIR", default_value = crate::commands::daemon::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// With --image: environment of the plugin container (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Only these groups: handshake, volume, volume-hook, network, api, robustness.
    #[arg(long, value_delimiter = ',', value_name = "GROUP,…")]
    pub only: Vec<String>,
    /// Skip these groups.
    #[arg(long, value_delimiter = ',', value_name = "GROUP,…")]
    pub skip: Vec<String>,
    /// Per-call deadline.
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub deadline: Duration,
    /// With --image: how long the plugin may take to serve its socket.
    #[arg(long, default_value = "30s", value_parser = parse::duration)]
    pub start_timeout: Duration,
    /// Bind source sent to the MVP volume hook.
    #[arg(long, default_value = "/berth-check/data")]
    pub hook_path: String,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
    /// With --image: the plugin command and its arguments, as in the image (default: the image's
    /// entrypoint and command).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

fn groups(names: &[String]) -> anyhow::Result<BTreeSet<Group>> {
    names
        .iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| Group::parse(n).map_err(anyhow::Error::from))
        .collect()
}

/// Runs `plugin check`.
pub async fn run(a: CheckArgs) -> anyhow::Result<()> {
    let opts = Options {
        deadline: a.deadline,
        only: groups(&a.only)?,
        skip: groups(&a.skip)?,
        hook_path: a.hook_path.clone(),
        ..Options::default()
    };
    let socket = match (&a.socket, &a.name, &a.image) {
        (Some(s), _, _) => s.clone(),
        (None, Some(n), _) => {
            let dirs = if a.plugin_dirs.is_empty() {
                berth_plugin_host::discovery::default_dirs()
            } else {
                a.plugin_dirs.clone()
            };
            match berth_plugin_host::discovery::discover(n, &dirs) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return Err(Exit(2).into());
                }
            }
        }
        (None, None, Some(image)) => return run_in_container(&a, image, &opts).await,
        (None, None, None) => anyhow::bail!("give the plugin with --socket, --name or --image"),
    };
    if tokio::net::UnixStream::connect(&socket).await.is_err() {
        eprintln!(
            "Error: plugin socket {}: nothing accepts connections there",
            socket.display()
        );
        return Err(Exit(2).into());
    }
    let report = berth_plugin_check::run(&socket, &opts).await;
    finish(&a, &report)
}

/// Prints the report; exit 0 only when every required check passed.
fn finish(a: &CheckArgs, report: &Report) -> anyhow::Result<()> {
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).context("encoding the report")?
        ),
        Format::Table => print!("{}", report.table()),
    }
    if report.passed {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}

/// How long the plugin container gets between SIGTERM and SIGKILL when the check ends.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. Registered before the container starts, so a signal
/// during the start is not lost (and does not kill the CLI before it cleaned up).
fn interrupted() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// `--image`: starts the plugin container, waits for its socket, runs the check, and always stops
/// and removes the container and its work directory.
async fn run_in_container(a: &CheckArgs, image: &str, opts: &Options) -> anyhow::Result<()> {
    let interrupted = interrupted()?;
    tokio::pin!(interrupted);
    let work = tempfile::Builder::new()
        .prefix("berth-plugin-check-")
        .tempdir()
        .context("creating the check's work directory")?;
    let socket_dir = work.path().join("socket");
    std::fs::create_dir_all(&socket_dir)
        .with_context(|| format!("creating {}", socket_dir.display()))?;
    let socket = socket_dir.join(berth_plugin_host::registry::PLUGIN_SOCKET);
    let spec = StandaloneSpec {
        state_root: a.root.clone(),
        image: image.to_owned(),
        cmd: a.cmd.clone(),
        env: a.env.clone(),
        socket_dir,
        work_dir: work.path().join("containers"),
    };
    let started = tokio::select! {
        s = StandalonePlugin::start(Arc::new(NamespaceRuntime), spec) => s,
        () = &mut interrupted => {
            eprintln!("interrupted");
            return Err(Exit(130).into());
        }
    };
    let plugin = match started {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: starting a container of image {image}: {e}");
            return Err(Exit(2).into());
        }
    };
    eprintln!(
        "plugin container {} of image {image}: hostname {}, pid {} on the host (pid 1 of its own pid namespace), its own network namespace, work directory {}",
        &plugin.id()[..12],
        plugin.hostname(),
        plugin.pid1(),
        work.path().display()
    );
    let outcome = tokio::select! {
        r = async {
            wait_for_socket(&plugin, &socket, a.start_timeout).await?;
            Ok::<_, String>(berth_plugin_check::run(&socket, opts).await)
        } => Some(r),
        () = &mut interrupted => None,
    };
    let id = plugin.id()[..12].to_owned();
    plugin.stop(STOP_GRACE).await;
    let dir = work.path().display().to_string();
    if let Err(e) = work.close() {
        eprintln!("Warning: removing {dir}: {e}");
    }
    eprintln!("plugin container {id} stopped and removed");
    match outcome {
        None => {
            eprintln!("interrupted");
            Err(Exit(130).into())
        }
        Some(Err(e)) => {
            eprintln!("Error: {e}");
            Err(Exit(2).into())
        }
        Some(Ok(report)) => finish(a, &report),
    }
}

/// Waits until the plugin accepts connections on `socket`, failing at once when its container
/// exits first (with its exit code and last output) and after `timeout`.
async fn wait_for_socket(
    plugin: &StandalonePlugin,
    socket: &std::path::Path,
    timeout: Duration,
) -> Result<(), String> {
    let until = tokio::time::Instant::now() + timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(());
        }
        if let Some(code) = plugin.exited() {
            let out = plugin.output().await;
            let out = if out.is_empty() {
                "it printed nothing".to_owned()
            } else {
                format!("its last output:\n{}", out.join("\n"))
            };
            return Err(format!(
                "the plugin container exited with code {code} before serving \
                 /var/run/docker/plugin.sock; {out}"
            ));
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!(
                "the plugin container did not serve /var/run/docker/plugin.sock within {}s",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}
