//! A recording fake of the [`ContainerRuntime`]: no process, no namespace, no root.
//!
//! Every call the engine makes is appended to a log ([`Call`]) a test can read back. A "process"
//! is a record with a fake pid: it runs until the test ends it ([`FakeRuntime::exit`]), until
//! the engine signals it with a fatal signal (SIGKILL always; SIGTERM, SIGINT, SIGHUP and SIGQUIT
//! unless [`FakeRuntime::ignore`]d), or at once when [`FakeRuntime::exit_on_spawn`] is set. A
//! spawn can be made to fail ([`FakeRuntime::fail_next_spawn`]). Its stdout/stderr are channels
//! the test writes to ([`FakeRuntime::write_stdout`]); what the engine writes to its stdin is
//! kept ([`FakeRuntime::stdin`]). Ending a process closes its output first, then resolves the
//! exit future, like a real pid 1 whose pipes hang up when it dies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::FutureExt;
use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ContainerRuntime, Io, RunSpec, RuntimeError, Spawned};

/// One call the engine made.
// A test recorder: the spec is kept whole (it carries the security options), size is no concern.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `spawn` (also recorded when it was made to fail).
    Spawn(Box<RunSpec>),
    /// `signal` to the process of container `id` (empty when the pid was not running).
    Signal {
        id: String,
        pid: i32,
        signal: Signal,
    },
    /// `resize` of a pty.
    Resize { rows: u16, cols: u16 },
    /// `cleanup` of a bundle directory.
    Cleanup(PathBuf),
    /// `create_cgroup` for container `id` (no cgroup is made; the spec gets no `cgroup_procs`).
    CreateCgroup {
        id: String,
        resources: crate::limits::Resources,
        privileged: bool,
        /// The container's own device rules, in `devices.allow` syntax.
        device_rules: Vec<String>,
    },
    /// `cgroup_exited` for container `id` (never OOM-killed).
    CgroupExited(String),
    /// `remove_cgroup` for container `id`.
    RemoveCgroup(String),
}

struct Proc {
    id: String,
    exit: oneshot::Sender<i32>,
    stdout: mpsc::UnboundedSender<Bytes>,
    stderr: Option<mpsc::UnboundedSender<Bytes>>,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    next_pid: i32,
    running: HashMap<i32, Proc>,
    stdin: HashMap<String, Arc<Mutex<Vec<u8>>>>,
    spawn_failures: VecDeque<String>,
    ignored: HashSet<Signal>,
    exit_on_spawn: Option<i32>,
    cleanup_failures: usize,
}

/// The recording fake runtime (see the module doc).
pub struct FakeRuntime {
    state: Mutex<State>,
    /// Bumped on every call, so tests wait for a condition instead of sleeping.
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime")
            .field("calls", &self.lock().calls.len())
            .finish_non_exhaustive()
    }
}

fn fatal_by_default(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT
    )
}

impl FakeRuntime {
    /// A fake with no process, failing nothing.
    pub fn new() -> Arc<Self> {
        Arc::new(FakeRuntime {
            state: Mutex::new(State {
                next_pid: 1000,
                ..State::default()
            }),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The specs container `id` was spawned with, oldest first.
    pub fn spawns(&self, id: &str) -> Vec<RunSpec> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Spawn(s) if s.id == id => Some(RunSpec::clone(s)),
                _ => None,
            })
            .collect()
    }

    /// The signals sent to container `id`'s processes, oldest first.
    pub fn signals(&self, id: &str) -> Vec<Signal> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Signal { id: i, signal, .. } if i == id => Some(*signal),
                _ => None,
            })
            .collect()
    }

    /// The pid of container `id`'s running process, if one runs.
    pub fn pid(&self, id: &str) -> Option<i32> {
        self.lock()
            .running
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(pid, _)| *pid)
    }

    /// How many fake processes run.
    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// Ends container `id`'s process with `code` (its output closes first). False when none runs.
    pub fn exit(&self, id: &str, code: i32) -> bool {
        let Some(pid) = self.pid(id) else {
            return false;
        };
        self.end(pid, code)
    }

    fn end(&self, pid: i32, code: i32) -> bool {
        let proc = self.lock().running.remove(&pid);
        let Some(p) = proc else { return false };
        drop(p.stdout);
        drop(p.stderr);
        let _ = p.exit.send(code);
        self.bump();
        true
    }

    /// Makes the next spawn fail with `reason` (queued: one failure per call).
    pub fn fail_next_spawn(&self, reason: impl Into<String>) {
        self.lock().spawn_failures.push_back(reason.into());
    }

    /// Makes the next `cleanup` fail (EIO), as a removal cut short would.
    pub fn fail_next_cleanup(&self) {
        self.lock().cleanup_failures += 1;
    }

    /// Processes survive `sig` from now on (SIGKILL cannot be ignored).
    pub fn ignore(&self, sig: Signal) {
        self.lock().ignored.insert(sig);
    }

    /// With `Some(code)`, every process spawned from now on exits with `code` at once.
    pub fn exit_on_spawn(&self, code: Option<i32>) {
        self.lock().exit_on_spawn = code;
    }

    /// Writes `data` to container `id`'s stdout (stderr with `stderr`). False when none runs.
    pub fn write_stdout(&self, id: &str, data: &[u8], stderr: bool) -> bool {
        let st = self.lock();
        let Some(p) = st.running.values().find(|p| p.id == id) else {
            return false;
        };
        let tx = if stderr {
            p.stderr.as_ref()
        } else {
            Some(&p.stdout)
        };
        tx.is_some_and(|tx| tx.send(Bytes::copy_from_slice(data)).is_ok())
    }

    /// What the engine wrote to container `id`'s stdin so far (all runs).
    pub fn stdin(&self, id: &str) -> Vec<u8> {
        self.lock()
            .stdin
            .get(id)
            .map(|b| b.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Waits until `pred` holds over the recorded calls, at most `deadline`. Returns whether it
    /// held (tests assert on it: no ordering by sleep).
    pub async fn wait_for(&self, deadline: Duration, pred: impl Fn(&[Call]) -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        let check = || pred(&self.lock().calls);
        tokio::time::timeout(deadline, async {
            loop {
                if check() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && check()
    }

    fn spawn_now(&self, spec: RunSpec) -> Result<Spawned, RuntimeError> {
        let mut st = self.lock();
        st.calls.push(Call::Spawn(Box::new(spec.clone())));
        if let Some(reason) = st.spawn_failures.pop_front() {
            drop(st);
            self.bump();
            return Err(RuntimeError::Host {
                step: "fake spawn",
                source: io::Error::other(reason),
            });
        }
        st.next_pid += 1;
        let pid = st.next_pid;
        let (exit_tx, exit_rx) = oneshot::channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (err_tx, err_rx) = if spec.tty {
            (None, None)
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        };
        let stdin_buf = st.stdin.entry(spec.id.clone()).or_default().clone();
        let io = Io {
            stdin: spec
                .open_stdin
                .then(|| Box::new(StdinSink(stdin_buf)) as Box<dyn AsyncWrite + Send + Unpin>),
            stdout: Box::new(ChanReader::new(out_rx)),
            stderr: err_rx
                .map(|rx| Box::new(ChanReader::new(rx)) as Box<dyn AsyncRead + Send + Unpin>),
            // A stand-in fd: only `resize` takes it, and the fake does not ioctl it.
            pty: if spec.tty {
                Some(
                    std::fs::File::open("/dev/null")
                        .map(OwnedFd::from)
                        .map_err(|source| RuntimeError::Host {
                            step: "fake pty",
                            source,
                        })?,
                )
            } else {
                None
            },
        };
        st.running.insert(
            pid,
            Proc {
                id: spec.id.clone(),
                exit: exit_tx,
                stdout: out_tx,
                stderr: err_tx,
            },
        );
        let exit_now = st.exit_on_spawn;
        drop(st);
        if let Some(code) = exit_now {
            self.end(pid, code);
        }
        self.bump();
        Ok(Spawned {
            pid1: pid,
            io,
            // A dropped fake (or process record) reads as a kill.
            exit: exit_rx.map(|r| r.unwrap_or(137)).boxed(),
        })
    }
}

impl ContainerRuntime for FakeRuntime {
    fn spawn(&self, spec: RunSpec) -> BoxFuture<'static, Result<Spawned, RuntimeError>> {
        let result = self.spawn_now(spec);
        Box::pin(std::future::ready(result))
    }

    fn signal(&self, pid1: i32, sig: Signal) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        let id = st.running.get(&pid1).map(|p| p.id.clone());
        st.calls.push(Call::Signal {
            id: id.clone().unwrap_or_default(),
            pid: pid1,
            signal: sig,
        });
        let fatal = sig == Signal::SIGKILL || (fatal_by_default(sig) && !st.ignored.contains(&sig));
        drop(st);
        self.bump();
        if id.is_none() {
            return Err(RuntimeError::NotRunning { pid: pid1 });
        }
        if fatal {
            self.end(pid1, 128 + sig as i32);
        }
        Ok(())
    }

    fn resize(&self, _pty: &OwnedFd, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        self.lock().calls.push(Call::Resize { rows, cols });
        self.bump();
        Ok(())
    }

    fn create_cgroup(
        &self,
        _root: &Path,
        id: &str,
        res: &crate::limits::Resources,
        privileged: bool,
        extra_rules: &[crate::cgroups::DeviceRule],
    ) -> Result<Vec<PathBuf>, crate::cgroups::CgroupError> {
        self.lock().calls.push(Call::CreateCgroup {
            id: id.to_owned(),
            resources: res.clone(),
            privileged,
            device_rules: extra_rules.iter().map(|r| r.to_string()).collect(),
        });
        self.bump();
        Ok(Vec::new())
    }

    fn cgroup_exited(&self, _root: &Path, id: &str) -> BoxFuture<'static, bool> {
        self.lock().calls.push(Call::CgroupExited(id.to_owned()));
        self.bump();
        Box::pin(async { false })
    }

    fn remove_cgroup(&self, _root: &Path, id: &str) -> Result<(), crate::cgroups::CgroupError> {
        self.lock().calls.push(Call::RemoveCgroup(id.to_owned()));
        self.bump();
        Ok(())
    }

    fn cleanup(&self, bundle: &Path) -> Result<(), RuntimeError> {
        let fail = {
            let mut st = self.lock();
            st.calls.push(Call::Cleanup(bundle.to_owned()));
            let fail = st.cleanup_failures > 0;
            st.cleanup_failures = st.cleanup_failures.saturating_sub(1);
            fail
        };
        self.bump();
        if fail {
            return Err(RuntimeError::Cleanup {
                path: bundle.to_owned(),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        Ok(())
    }
}

/// A process's output as the engine reads it: chunks from a channel, EOF when the sender goes.
struct ChanReader {
    rx: mpsc::UnboundedReceiver<Bytes>,
    buf: Bytes,
}

impl ChanReader {
    fn new(rx: mpsc::UnboundedReceiver<Bytes>) -> Self {
        ChanReader {
            rx,
            buf: Bytes::new(),
        }
    }
}

impl AsyncRead for ChanReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => self.buf = b,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// A process's stdin: everything written is kept for the test.
struct StdinSink(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for StdinSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
