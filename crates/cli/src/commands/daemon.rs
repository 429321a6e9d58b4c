//! `berth daemon`: installs the tracing subscriber, builds the engine's `DaemonConfig` from the
//! flags and serves until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use berth_engine_api::daemon::{DaemonConfig, PluginCaps as Caps, run as run_daemon};
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::client::DEFAULT_SOCKET;
use crate::parse;

/// Default state root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// Default directory for Docker-style plugin sockets and spec files.
pub const DEFAULT_PLUGIN_DIR: &str = "/run/docker/plugins";

/// Flags of `berth daemon` (the socket comes from the global `--host`/`-H`).
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// State root directory.
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// How long user requests wait at the readiness gate for plugins (`500ms`, `5s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse::duration)]
    pub plugin_timeout: Duration,
    /// Directory scanned for Docker-style plugin sockets and spec files.
    #[arg(long, default_value = DEFAULT_PLUGIN_DIR)]
    pub plugin_dir: PathBuf,
    /// Docker authorization plugin to consult, in order (repeatable).
    #[arg(long = "authorization-plugin", value_name = "NAME")]
    pub authorization_plugins: Vec<String>,
    /// Group that owns the API socket (mode 0660); default `berth` when it exists, else root.
    #[arg(short = 'G', long)]
    pub group: Option<String>,
    /// Cap on the deadline of api pre/post hooks and authorization calls; a plugin may ask for
    /// less, never more.
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub plugin_deadline_api: Duration,
    /// Cap on the deadline of volume Create/Mount calls and the volume hooks at create and start.
    #[arg(long, default_value = "2m", value_parser = parse::duration)]
    pub plugin_deadline_volume: Duration,
    /// Cap on the deadline of every other plugin call.
    #[arg(long, default_value = "30s", value_parser = parse::duration)]
    pub plugin_deadline_default: Duration,
    /// Restarts of a crash-looping plugin container within --plugin-restart-window after which
    /// the plugin is given up on (Failed, not restarted again until `plugin enable`).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub plugin_max_restarts: u32,
    /// The sliding window --plugin-max-restarts counts restarts in.
    #[arg(long, default_value = "60s", value_parser = parse::duration)]
    pub plugin_restart_window: Duration,
}

/// Builds the engine's configuration from the flags and the global `--host`.
pub fn config(args: DaemonArgs, host: Option<&str>) -> Result<DaemonConfig, String> {
    let socket = match host {
        Some(host) => parse::unix_host(host)?,
        None => PathBuf::from(DEFAULT_SOCKET),
    };
    Ok(DaemonConfig {
        root: args.root,
        socket,
        plugin_timeout: args.plugin_timeout,
        plugin_dir: args.plugin_dir,
        authorization_plugins: args.authorization_plugins,
        group: args.group,
        plugin_caps: Caps {
            api: args.plugin_deadline_api,
            volume: args.plugin_deadline_volume,
            default: args.plugin_deadline_default,
            ..Caps::default()
        },
        plugin_crash_loop: berth_plugin_host::CrashLoopLimit {
            max_restarts: args.plugin_max_restarts,
            window: args.plugin_restart_window,
        },
    })
}

/// Runs the daemon in the foreground.
pub async fn run(args: DaemonArgs, host: Option<String>) -> anyhow::Result<()> {
    init_tracing();
    // `BERTH_HOST` is honoured by the daemon too, so one variable points both sides at a socket.
    let env_host = std::env::var("BERTH_HOST").ok();
    let host = host.or(env_host.filter(|h| !h.is_empty()));
    let config = config(args, host.as_deref()).map_err(anyhow::Error::msg)?;
    tracing::info!(root = %config.root.display(), socket = %config.socket.display(), "starting berth daemon");
    run_daemon(config, shutdown_signal()).await?;
    tracing::info!("berth daemon stopped");
    Ok(())
}

/// Logs to stderr, filtered by `BERTH_LOG`, else `RUST_LOG`, else `info`.
fn init_tracing() {
    let filter = std::env::var("BERTH_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM");
            None
        }
    };
    let term_recv = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        res = tokio::signal::ctrl_c() => {
            if let Err(err) = res {
                tracing::warn!(%err, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
            tracing::info!("SIGINT received, shutting down");
        }
        () = term_recv => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: DaemonArgs,
    }

    #[test]
    fn defaults() {
        let w = Wrap::try_parse_from(["daemon"]).unwrap();
        let c = config(w.args, None).unwrap();
        assert_eq!(c.root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.socket, PathBuf::from("/run/berth/berth.sock"));
        assert_eq!(c.plugin_dir, PathBuf::from("/run/docker/plugins"));
        assert_eq!(c.plugin_timeout, Duration::from_secs(60));
        assert!(c.authorization_plugins.is_empty());
        assert_eq!(c.plugin_caps, Caps::default());
        assert_eq!(c.plugin_caps.api, Duration::from_secs(10));
        assert_eq!(c.plugin_caps.volume, Duration::from_secs(120));
        assert_eq!(c.plugin_caps.default, Duration::from_secs(30));
        assert_eq!(
            c.plugin_crash_loop,
            berth_plugin_host::CrashLoopLimit::default()
        );
    }

    #[test]
    fn flags() {
        let w = Wrap::try_parse_from([
            "daemon",
            "--root",
            "/tmp/r",
            "--plugin-timeout",
            "500ms",
            "--plugin-dir",
            "/tmp/p",
            "--authorization-plugin",
            "a",
            "--authorization-plugin",
            "b",
            "--plugin-deadline-api",
            "300ms",
            "--plugin-deadline-volume",
            "1s",
            "--plugin-deadline-default",
            "2s",
        ])
        .unwrap();
        let c = config(w.args, Some("unix:///tmp/x.sock")).unwrap();
        assert_eq!(c.root, PathBuf::from("/tmp/r"));
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.plugin_timeout, Duration::from_millis(500));
        assert_eq!(c.authorization_plugins, vec!["a", "b"]);
        let caps = c.plugin_caps;
        assert_eq!(
            (caps.api, caps.volume, caps.default),
            (
                Duration::from_millis(300),
                Duration::from_secs(1),
                Duration::from_secs(2)
            )
        );
        assert!(Wrap::try_parse_from(["daemon", "--plugin-timeout", "soon"]).is_err());
    }
}
