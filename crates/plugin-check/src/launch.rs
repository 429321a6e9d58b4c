//! A plugin command started as a plain host process, for the kit's own tests (no root needed):
//! `berth plugin check --image` does not use it, it runs the plugin as a container the way
//! `plugin load` does (`berth_engine::standalone`).
//!
//! The command runs on the host in a fresh temporary directory `D` (its working directory), with
//! `PLUGIN_SOCKET=D/plugin.sock` (the variable the SDK examples read for their socket) and
//! `BERTH_PLUGIN_IMAGE=IMAGE` in its environment; [`launch`] waits for `D/plugin.sock` to accept
//! connections. [`Launched::stop`] stops the process (SIGTERM, then SIGKILL) and removes `D`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A failure to start the plugin.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No command after `--`.
    #[error(
        "--image needs the plugin command after `--` (e.g. --image flocker:1 -- flocker --storage /srv)"
    )]
    NoCommand,
    /// Temp dir or spawn failure.
    #[error("starting plugin command {cmd:?}: {reason}")]
    Spawn {
        /// The command.
        cmd: String,
        /// Why.
        reason: String,
    },
    /// The process exited before serving its socket.
    #[error(
        "plugin command {cmd:?} exited ({status}) before serving {socket}; its stderr:\n{stderr}"
    )]
    Exited {
        /// The command.
        cmd: String,
        /// Exit status.
        status: String,
        /// Socket path.
        socket: String,
        /// Last lines of its stderr.
        stderr: String,
    },
    /// The socket never accepted a connection.
    #[error("plugin command {cmd:?} did not serve {socket} within {secs}s")]
    Timeout {
        /// The command.
        cmd: String,
        /// Socket path.
        socket: String,
        /// Seconds waited.
        secs: u64,
    },
}

/// A plugin process started by [`launch`].
pub struct Launched {
    child: Child,
    dir: tempfile::TempDir,
    /// The socket it serves.
    pub socket: PathBuf,
}

impl Launched {
    /// Stops the process (SIGTERM, 5 s, SIGKILL) and removes its directory.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = self.dir.close();
    }
}

/// Starts `cmd` for image `image` and waits up to `ready` for its socket.
pub async fn launch(image: &str, cmd: &[String], ready: Duration) -> Result<Launched, LaunchError> {
    let (prog, args) = cmd.split_first().ok_or(LaunchError::NoCommand)?;
    let shown = cmd.join(" ");
    let spawn_err = |reason: String| LaunchError::Spawn {
        cmd: shown.clone(),
        reason,
    };
    let dir = tempfile::Builder::new()
        .prefix("berth-plugin-check-")
        .tempdir()
        .map_err(|e| spawn_err(format!("temporary directory: {e}")))?;
    let socket = dir.path().join("plugin.sock");
    let log = dir.path().join("plugin.stderr");
    let stderr = std::fs::File::create(&log).map_err(|e| spawn_err(e.to_string()))?;
    // A relative program path (`./target/debug/flocker`) means the caller's directory, not `D`.
    let prog = match std::path::Path::new(prog) {
        p if p.is_relative() && prog.contains('/') => std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(|e| spawn_err(e.to_string()))?,
        p => p.to_path_buf(),
    };
    let mut child = Command::new(&prog)
        .args(args)
        .current_dir(dir.path())
        .env("PLUGIN_SOCKET", &socket)
        .env("BERTH_PLUGIN_IMAGE", image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_err(e.to_string()))?;
    let until = Instant::now() + ready;
    let mut backoff = Duration::from_millis(10);
    loop {
        if UnixStream::connect(&socket).await.is_ok() {
            return Ok(Launched { child, dir, socket });
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            return Err(LaunchError::Exited {
                cmd: shown,
                status: status.to_string(),
                socket: socket.display().to_string(),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        if Instant::now() >= until {
            let _ = child.kill().await;
            return Err(LaunchError::Timeout {
                cmd: shown,
                socket: socket.display().to_string(),
                secs: ready.as_secs(),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}
