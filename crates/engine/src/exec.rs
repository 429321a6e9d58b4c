//! `docker exec`: the exec table (id → config, running, exit code, pid) and the operations on
//! it: [`Engine::create_exec`], [`Engine::start_exec`], [`Engine::exec_inspect`].
//!
//! The process itself is started by the runtime ([`ContainerRuntime::exec`]) inside the
//! running container's namespaces and cgroup, with the container's confinement (capabilities,
//! seccomp, no_new_privs) and its environment plus the exec's `Env`. With `Tty` it runs on a
//! new pty of the container (`TERM=xterm` unless the environment sets it; resized with
//! [`Engine::resize_exec`]); `Privileged` gives it every capability the engine has. Execs are
//! kept in memory only, until the engine stops.
//!
//! [`ContainerRuntime::exec`]: crate::runtime::ContainerRuntime::exec

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::Container;
use crate::runtime::ExecSpec;

/// The most execs kept in the table (finished ones are dropped first, oldest first).
const MAX_EXECS: usize = 1024;

/// What `POST /containers/{id}/exec` asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// Run on a pty: one raw output stream, no frames.
    pub tty: bool,
    /// Every capability the engine has.
    pub privileged: bool,
    /// The initial terminal size, `(rows, cols)` (`ConsoleSize`).
    pub console_size: Option<(u16, u16)>,
    /// `DetachKeys` as given (empty: the default, ctrl-p ctrl-q).
    pub detach_keys: String,
}

/// One exec, as `GET /exec/{id}/json` shows it.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
    /// The pty master (tty execs, while known), for resizes.
    pty: Option<Arc<OwnedFd>>,
    seq: u64,
}

/// The exec table of an engine.
#[derive(Debug, Default)]
pub struct ExecTable {
    inner: Mutex<(u64, HashMap<String, ExecRecord>)>,
}

/// A started exec: its stdio and a signal once its exit code is recorded.
pub struct ExecStarted {
    /// `Some` iff `AttachStdin`.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// With a tty: the terminal's output (stdout and stderr merged, raw).
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// `None` with a tty.
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub tty: bool,
    /// Resolves (with the exit code) after the table has it.
    pub exited: oneshot::Receiver<i32>,
}

impl std::fmt::Debug for ExecStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStarted")
            .field("stdin", &self.stdin.is_some())
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// What the runtime needs to run `argv` in running container `c`: its pid 1, its
    /// environment (with its links' variables) with `env_add` replacing or adding entries,
    /// `user` and `cwd` (empty: the container's), its confinement and cgroups. Used by
    /// `docker exec` and the healthchecks.
    pub(crate) fn exec_spec(
        &self,
        c: &Container,
        argv: Vec<String>,
        env_add: &[String],
        user: &str,
        cwd: &str,
    ) -> Result<ExecSpec, EngineError> {
        let pid1 = {
            let st = c.state();
            if st.status != Status::Running || st.pid <= 0 {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    c.id()
                )));
            }
            // A process started in a frozen cgroup would hang until the unpause.
            crate::pause::refuse_if_paused(c)?;
            st.pid
        };
        let linked = self.link_env(c).unwrap_or_default();
        let mut env = crate::links::merge_env(linked, &c.config.spec.env);
        for add in env_add {
            let key = add.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(add.clone());
        }
        let pick = |given: &str, default: &str| {
            if given.is_empty() {
                default.to_owned()
            } else {
                given.to_owned()
            }
        };
        Ok(ExecSpec {
            pid1,
            argv,
            env,
            cwd: pick(cwd, &c.config.spec.working_dir),
            user: pick(user, &c.config.spec.user),
            security: c.config.spec.security.clone(),
            cgroup_procs: crate::cgroups::existing_dirs(&self.root, c.id())
                .into_iter()
                .map(|d| d.join("cgroup.procs"))
                .collect(),
            tty: false,
            privileged: false,
            open_stdin: false,
            console_size: None,
        })
    }

    /// Registers an exec in a running container; returns its id.
    pub fn create_exec(&self, reference: &str, config: ExecConfig) -> Result<String, EngineError> {
        let c = self.container(reference)?;
        if c.state().status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                c.id()
            )));
        }
        crate::pause::refuse_if_paused(&c)?;
        if config.cmd.is_empty() || config.cmd[0].is_empty() {
            return Err(EngineError::Invalid("exec: Cmd is required".into()));
        }
        if !config.working_dir.is_empty() && !config.working_dir.starts_with('/') {
            return Err(EngineError::Invalid(format!(
                "exec: WorkingDir {:?} is not an absolute path",
                config.working_dir
            )));
        }
        if let Some(bad) = config
            .env
            .iter()
            .find(|e| !e.contains('=') || e.starts_with('='))
        {
            return Err(EngineError::Invalid(format!(
                "exec: Env entry {bad:?} is not KEY=VALUE"
            )));
        }
        let id = berth_state::new_id();
        let mut t = lock(&self.execs.inner);
        if t.1.len() >= MAX_EXECS {
            let oldest =
                t.1.values()
                    .filter(|r| !r.running)
                    .min_by_key(|r| r.seq)
                    .map(|r| r.id.clone());
            match oldest {
                Some(old) => {
                    t.1.remove(&old);
                }
                None => {
                    return Err(EngineError::Conflict(format!(
                        "too many running execs (at most {MAX_EXECS})"
                    )));
                }
            }
        }
        t.0 += 1;
        let seq = t.0;
        t.1.insert(
            id.clone(),
            ExecRecord {
                id: id.clone(),
                container_id: c.id().to_owned(),
                config,
                running: false,
                started: false,
                exit_code: None,
                pid: 0,
                pty: None,
                seq,
            },
        );
        Ok(id)
    }

    /// The record of exec `id`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecRecord, EngineError> {
        lock(&self.execs.inner)
            .1
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
    }

    /// Starts exec `id` (once); the returned stdio is the process's. A tty gets `console_size`
    /// (from the start request), else the create's `ConsoleSize`, before the command runs.
    pub async fn start_exec(
        &self,
        id: &str,
        console_size: Option<(u16, u16)>,
    ) -> Result<ExecStarted, EngineError> {
        let (container_id, config) = {
            let mut t = lock(&self.execs.inner);
            let r =
                t.1.get_mut(id)
                    .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))?;
            if r.started {
                return Err(EngineError::Conflict(format!(
                    "exec {id} has already been started"
                )));
            }
            r.started = true;
            (r.container_id.clone(), r.config.clone())
        };
        let c = self.container(&container_id)?;
        let mut spec = self.exec_spec(
            &c,
            config.cmd.clone(),
            &config.env,
            &config.user,
            &config.working_dir,
        )?;
        if config.tty && !spec.env.iter().any(|e| e.starts_with("TERM=")) {
            spec.env.push("TERM=xterm".into());
        }
        spec.tty = config.tty;
        spec.privileged = config.privileged;
        spec.open_stdin = config.attach_stdin;
        spec.console_size = console_size.or(config.console_size);
        let pid1 = spec.pid1;
        let child = self.runtime.exec(spec).await;
        // The pid could have been reused while the namespaces were opened.
        if c.state().pid != pid1 {
            if let Ok(mut process) = child {
                let _ = process.child.start_kill();
            }
            return Err(EngineError::Conflict(format!(
                "container {container_id} stopped during the exec"
            )));
        }
        let crate::runtime::ExecProcess { mut child, io } = match child {
            Ok(process) => process,
            Err(e) => {
                // A shell's codes, which Docker reports too: 127 not found, 126 not runnable.
                let code = match e {
                    crate::runtime::RuntimeError::ExecNotFound { .. } => 127,
                    _ => 126,
                };
                if let Some(r) = lock(&self.execs.inner).1.get_mut(id) {
                    r.exit_code = Some(code);
                }
                return Err(e.into());
            }
        };
        let pty = io.pty.map(Arc::new);
        if let Some(r) = lock(&self.execs.inner).1.get_mut(id) {
            r.running = true;
            r.pid = child.id().map(|p| p as i32).unwrap_or(0);
            r.pty = pty;
        }
        let (tx, exited) = oneshot::channel();
        let table = Arc::clone(&self.execs);
        let id = id.to_owned();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    status
                        .code()
                        .or_else(|| status.signal().map(|s| 128 + s))
                        .unwrap_or(-1)
                }
                Err(_) => -1,
            };
            if let Some(r) = lock(&table.inner).1.get_mut(&id) {
                r.running = false;
                r.exit_code = Some(code);
                r.pty = None;
            }
            let _ = tx.send(code);
        });
        Ok(ExecStarted {
            stdin: io.stdin,
            stdout: io.stdout,
            stderr: io.stderr,
            tty: config.tty,
            exited,
        })
    }

    /// Sets the terminal size of exec `id` (`POST /exec/{id}/resize`); nothing to do for an
    /// exec without a tty, or one that ended.
    pub fn resize_exec(&self, id: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let pty = {
            let t = lock(&self.execs.inner);
            let r =
                t.1.get(id)
                    .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))?;
            r.pty.clone()
        };
        match pty {
            Some(pty) => Ok(self.runtime.resize(&pty, rows, cols)?),
            None => Ok(()),
        }
    }
}
