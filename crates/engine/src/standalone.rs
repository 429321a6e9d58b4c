//! A plugin container run without a daemon (`berth plugin check --image`): started the way
//! `plugin load` starts one — the image's root filesystem, its own mount, pid, uts, ipc and
//! network namespaces, Docker's default confinement, a cgroup, the plugin's socket directory
//! bind-mounted at `/var/run/docker` — through the same [`ContainerRuntime`], with the image looked
//! up read-only in an engine's state root ([`ImageStore::find_read_only`]). Nothing is written
//! under that root: the container's bundle (overlay upper and work dirs) lives in a work directory
//! the caller owns, and [`StandalonePlugin::stop`] takes everything down again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::watch;

use crate::error::EngineError;
use crate::images::ImageStore;
use crate::limits::Resources;
use crate::plugins::PLUGIN_SOCKET_DIR_TARGET;
use crate::runtime::{BindMount, ContainerRuntime, NetMode, RunSpec};

/// How many lines of the container's output are kept for error messages.
const OUTPUT_LINES: usize = 20;
/// How long pid 1 may take to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long [`StandalonePlugin::output`] waits for the output of an exited container.
const OUTPUT_WAIT: Duration = Duration::from_secs(2);
/// The longest output line kept (the rest is cut).
const OUTPUT_LINE_MAX: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct StandaloneSpec {
    /// The engine state root whose image store holds `image` (read only).
    pub state_root: PathBuf,
    /// Image reference.
    pub image: String,
    /// The command; empty = the image's entrypoint and command.
    pub cmd: Vec<String>,
    /// Extra `KEY=VALUE` environment (over the image's).
    pub env: Vec<String>,
    /// Host directory bind-mounted at `/var/run/docker` (the plugin serves `plugin.sock` there).
    pub socket_dir: PathBuf,
    /// A directory of the caller's for the container's bundle (created if missing).
    pub work_dir: PathBuf,
}

/// A running standalone plugin container.
pub struct StandalonePlugin {
    runtime: Arc<dyn ContainerRuntime>,
    id: String,
    hostname: String,
    bundle: PathBuf,
    cgroup_root: PathBuf,
    pid1: i32,
    exit: watch::Receiver<Option<i32>>,
    output: Arc<Mutex<VecDeque<String>>>,
    /// The tasks reading its stdout and stderr (they end at EOF, once every process exited).
    readers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for StandalonePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandalonePlugin")
            .field("id", &self.id)
            .field("pid1", &self.pid1)
            .finish_non_exhaustive()
    }
}

/// Keeps the last [`OUTPUT_LINES`] lines of `r` in `out`.
fn drain(
    r: Box<dyn AsyncRead + Send + Unpin>,
    out: Arc<Mutex<VecDeque<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // Bounded: a longer line is kept in pieces.
            let mut piece = (&mut lines).take(OUTPUT_LINE_MAX as u64);
            match piece.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    let mut out = berth_state::lock(&out);
                    if out.len() == OUTPUT_LINES {
                        out.pop_front();
                    }
                    out.push_back(line);
                }
            }
        }
    })
}

impl StandalonePlugin {
    /// Starts the container; returns once its pid 1 runs the command.
    pub async fn start(
        runtime: Arc<dyn ContainerRuntime>,
        spec: StandaloneSpec,
    ) -> Result<Self, EngineError> {
        let (image, rootfs) = ImageStore::find_read_only(&spec.state_root, &spec.image)?;
        let argv = if spec.cmd.is_empty() {
            image
                .config
                .entrypoint
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(image.config.cmd.clone().unwrap_or_default())
                .collect()
        } else {
            spec.cmd.clone()
        };
        if argv.is_empty() {
            return Err(EngineError::Invalid(format!(
                "no command: give the plugin command after `--` (image {} has no CMD)",
                spec.image
            )));
        }
        let mut env = image.config.env.clone();
        for kv in &spec.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        let id = berth_state::new_id();
        let hostname = format!("berth-check-{}", &id[..12]);
        let bundle = spec.work_dir.join(&id);
        std::fs::create_dir_all(&bundle)
            .map_err(EngineError::io(format!("creating {}", bundle.display())))?;
        let cgroup_root = spec.work_dir.clone();
        let cgroup_procs =
            runtime.create_cgroup(&cgroup_root, &id, &Resources::default(), Some(&[]))?;
        let run = RunSpec {
            id: id.clone(),
            bundle: bundle.clone(),
            rootfs,
            mounts: vec![BindMount {
                source: spec.socket_dir.clone(),
                target: PLUGIN_SOCKET_DIR_TARGET.to_owned(),
                readonly: false,
            }],
            hostname: hostname.clone(),
            env,
            cwd: image.config.working_dir.clone(),
            argv,
            tty: false,
            open_stdin: false,
            net: NetMode::Isolated,
            cgroup_procs,
            user: String::new(),
            security: crate::container::SecurityOptions::default(),
        };
        let spawned = match runtime.spawn(run).await {
            Ok(s) => s,
            Err(e) => {
                let _ = runtime.cleanup(&bundle);
                let _ = runtime.remove_cgroup(&cgroup_root, &id);
                let _ = std::fs::remove_dir_all(&bundle);
                return Err(e.into());
            }
        };
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let mut readers = vec![drain(spawned.io.stdout, output.clone())];
        if let Some(err) = spawned.io.stderr {
            readers.push(drain(err, output.clone()));
        }
        let (tx, exit) = watch::channel(None);
        let exit_fut = spawned.exit;
        // Owns the exit future: dropping it (the runtime shutting down) kills the container.
        tokio::spawn(async move {
            let code = exit_fut.await;
            let _ = tx.send(Some(code));
        });
        Ok(Self {
            runtime,
            id,
            hostname,
            bundle,
            cgroup_root,
            pid1: spawned.pid1,
            exit,
            output,
            readers: Mutex::new(readers),
        })
    }

    /// The container id (64 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its hostname (`berth-check-<12 hex digits>`).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Pid 1 of the container, in the host's pid namespace.
    pub fn pid1(&self) -> i32 {
        self.pid1
    }

    /// The exit code of pid 1 once it exited.
    pub fn exited(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    /// The last lines of its output (stdout and stderr). After its exit, everything it wrote is
    /// read first (at most [`OUTPUT_WAIT`]).
    pub async fn output(&self) -> Vec<String> {
        if self.exited().is_some() {
            let readers = std::mem::take(&mut *berth_state::lock(&self.readers));
            let _ = tokio::time::timeout(OUTPUT_WAIT, futures::future::join_all(readers)).await;
        }
        berth_state::lock(&self.output).iter().cloned().collect()
    }

    /// Stops the container (SIGTERM, `grace`, SIGKILL), waits for its exit, and removes what it
    /// left: its root's mounts and bundle, its cgroup.
    pub async fn stop(mut self, grace: Duration) {
        if self.exited().is_none() {
            let _ = self.runtime.signal(self.pid1, Signal::SIGTERM);
            let exited = tokio::time::timeout(grace, self.exit.wait_for(Option::is_some))
                .await
                .is_ok();
            if !exited {
                let _ = self.runtime.signal(self.pid1, Signal::SIGKILL);
                let killed = self.exit.wait_for(Option::is_some);
                if tokio::time::timeout(KILL_WAIT, killed).await.is_err() {
                    tracing::warn!(id = %self.id, "plugin check container survived SIGKILL");
                }
            }
        }
        let _ = self
            .runtime
            .cgroup_exited(&self.cgroup_root, &self.id)
            .await;
        let (runtime, bundle) = (self.runtime.clone(), self.bundle.clone());
        let (root, id) = (self.cgroup_root.clone(), self.id.clone());
        let cleaned = tokio::task::spawn_blocking(move || {
            if let Err(e) = runtime.cleanup(&bundle) {
                tracing::warn!(bundle = %bundle.display(), error = %e, "cleaning up a plugin check container");
            }
            let _ = runtime.remove_cgroup(&root, &id);
            let _ = std::fs::remove_dir_all(&bundle);
        })
        .await;
        if let Err(e) = cleaned {
            tracing::warn!("cleaning up a plugin check container: {e}");
        }
    }

    /// The bundle directory (under the caller's work dir).
    pub fn bundle(&self) -> &Path {
        &self.bundle
    }
}
