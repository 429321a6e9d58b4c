//! The live container: its immutable config, its mutable state (persisted on every change),
//! the watch channel waiters observe, its output broadcast, stdin and pty, and the per-container
//! operation lock that serialises lifecycle operations. Also the views handed to the API layer.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};

use crate::container::{ContainerConfig, ContainerState, Status};
use crate::error::EngineError;
use crate::logs::OutputChunk;

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl FromStr for WaitCondition {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::Invalid(format!(
                "invalid condition {other:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// The lifecycle facts that waiters watch.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    pub status: Status,
    /// How many times the process exited so far.
    pub exits: u64,
    pub exit_code: i32,
    pub removed: bool,
}

/// A snapshot of a container for list and inspect.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub log_path: PathBuf,
    pub network: String,
}

/// An attached client's ends: live output and, if asked for, the container's stdin.
pub struct Attached {
    pub tty: bool,
    pub output: broadcast::Receiver<OutputChunk>,
    pub stdin: Option<mpsc::Sender<Bytes>>,
    pub(crate) container: Arc<Container>,
}

impl Attached {
    /// The client closed its stdin: close the container's when it was started with StdinOnce.
    pub fn stdin_closed(&mut self) {
        self.stdin = None;
        if self.container.config.spec.stdin_once {
            self.container.stdin().tx = None;
        }
    }
}

pub(crate) struct StdinSlot {
    pub(crate) tx: Option<mpsc::Sender<Bytes>>,
    pub(crate) rx: Option<mpsc::Receiver<Bytes>>,
}

impl StdinSlot {
    pub(crate) fn fresh(open: bool) -> Self {
        if open {
            let (tx, rx) = mpsc::channel(64);
            StdinSlot {
                tx: Some(tx),
                rx: Some(rx),
            }
        } else {
            StdinSlot { tx: None, rx: None }
        }
    }
}

/// One container: its immutable config, mutable state and the channels of its current run.
pub struct Container {
    /// As created; the name may change since (see [`Container::name`]).
    pub config: ContainerConfig,
    /// The current name (`rename` changes it and rewrites `config.json`).
    pub(crate) name: Mutex<String>,
    pub(crate) dir: PathBuf,
    pub(crate) state: Mutex<ContainerState>,
    pub(crate) observed: watch::Sender<Observed>,
    pub(crate) output: broadcast::Sender<OutputChunk>,
    pub(crate) log_seq: Arc<watch::Sender<u64>>,
    pub(crate) stdin: Mutex<StdinSlot>,
    pub(crate) pty: Mutex<Option<OwnedFd>>,
    /// Serialises lifecycle operations on this container (start, stop, remove, policy restarts).
    pub(crate) op: tokio::sync::Mutex<()>,
}

/// The one poison-tolerant lock (see [`berth_state::sync`]).
pub(crate) use berth_state::lock;

impl Container {
    pub(crate) fn new(config: ContainerConfig, state: ContainerState, dir: PathBuf) -> Arc<Self> {
        let observed = Observed {
            status: state.status,
            exits: 0,
            exit_code: state.exit_code,
            removed: false,
        };
        let open_stdin = config.spec.open_stdin;
        Arc::new(Container {
            name: Mutex::new(config.name.clone()),
            config,
            dir,
            state: Mutex::new(state),
            observed: watch::channel(observed).0,
            output: broadcast::channel(1024).0,
            log_seq: Arc::new(watch::channel(0).0),
            stdin: Mutex::new(StdinSlot::fresh(open_stdin)),
            pty: Mutex::new(None),
            op: tokio::sync::Mutex::new(()),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The container's current name (without the leading `/`).
    pub fn name(&self) -> String {
        lock(&self.name).clone()
    }

    pub fn state(&self) -> ContainerState {
        lock(&self.state).clone()
    }

    pub(crate) fn stdin(&self) -> MutexGuard<'_, StdinSlot> {
        lock(&self.stdin)
    }

    /// Applies `f` to the state, persists it, and publishes the new status to waiters.
    pub(crate) fn update(
        &self,
        f: impl FnOnce(&mut ContainerState),
    ) -> Result<ContainerState, EngineError> {
        let mut st = lock(&self.state);
        f(&mut st);
        let snapshot = st.clone();
        let persisted = berth_state::store_json(&self.dir.join("state.json"), &*st);
        drop(st);
        self.publish(&snapshot);
        persisted?;
        Ok(snapshot)
    }

    /// Applies `f` to the state in memory only and publishes the new status to waiters; for
    /// what no boot needs to know (the `Removing` status: see `remove.rs`).
    pub(crate) fn update_in_memory(&self, f: impl FnOnce(&mut ContainerState)) {
        let mut st = lock(&self.state);
        f(&mut st);
        let snapshot = st.clone();
        drop(st);
        self.publish(&snapshot);
    }

    fn publish(&self, snapshot: &ContainerState) {
        self.observed.send_modify(|o| {
            o.status = snapshot.status;
            o.exit_code = snapshot.exit_code;
        });
    }

    pub(crate) fn attributes(&self) -> BTreeMap<String, String> {
        let mut attrs = self.config.spec.labels.clone();
        attrs.insert("image".into(), self.config.spec.image.clone());
        attrs.insert("name".into(), self.name());
        attrs
    }

    pub(crate) async fn wait_exit_after(&self, mut rx: watch::Receiver<Observed>, exits: u64) {
        loop {
            if rx.borrow_and_update().exits > exits || !rx.borrow().status.is_active() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
