//! Lifecycle unit tests on the recording [`FakeRuntime`]: no root, no namespaces, no mounts.
//! Each test opens an engine on a temp dir, drives it through its public operations, and asserts
//! on the calls the fake recorded and on the resulting state. Plugins, where a test needs them,
//! are real ones served in-process by `berth-plugin-sdk` on a UNIX socket in the temp dir
//! ([`VolumePlugin`]), loaded into a real plugin host.

mod catchup;
mod concurrent;
mod lifecycle;
mod plugins;
mod policy;
mod wiring;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_plugin_host::{HostConfig, LoadOptions, PluginHost};
use berth_plugin_sdk::protocol::mvp::{VolumeEvent, VolumeMessage};
use berth_plugin_sdk::{HandlerError, Plugin};
use tokio::sync::Semaphore;

use crate::container::{ContainerSpec, RestartPolicy, Status};
use crate::runtime::fake::{Call, FakeRuntime};
use crate::{CreateContainer, Engine};

/// How long any awaited condition may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// An engine on a temp dir with the fake runtime (and optionally a plugin host).
pub(crate) struct Rig {
    pub dir: tempfile::TempDir,
    pub fake: Arc<FakeRuntime>,
    pub engine: Arc<Engine>,
}

impl Rig {
    pub fn new() -> Rig {
        Self::with_host(None, tempfile::tempdir().expect("temp dir"))
    }

    pub fn with_host(host: Option<Arc<PluginHost>>, dir: tempfile::TempDir) -> Rig {
        let fake = FakeRuntime::new();
        let engine =
            Engine::open_with(&dir.path().join("root"), fake.clone(), host).expect("open engine");
        Rig { dir, fake, engine }
    }

    /// A rig in `dir` whose plugin host has loaded `plugins`, in this order.
    pub async fn with_plugins(dir: tempfile::TempDir, plugins: &[&VolumePlugin]) -> Rig {
        let host = PluginHost::open(HostConfig::new(dir.path().join("root")), None)
            .expect("open plugin host");
        for p in plugins {
            host.load_socket(&p.socket, LoadOptions::default())
                .await
                .expect("load plugin");
        }
        Self::with_host(Some(Arc::new(host)), dir)
    }

    /// A bind source directory under the temp dir.
    pub fn source(&self, name: &str) -> String {
        let p = self.dir.path().join("src").join(name);
        std::fs::create_dir_all(&p).expect("bind source");
        p.display().to_string()
    }

    pub async fn create(&self, req: CreateContainer) -> String {
        self.engine.create(req).await.expect("create").0
    }

    /// Creates and starts a container with `req`.
    pub async fn run(&self, req: CreateContainer) -> String {
        let id = self.create(req).await;
        self.engine.start(&id).await.expect("start");
        id
    }

    pub fn status(&self, id: &str) -> Status {
        self.engine.container(id).expect("container").state().status
    }

    /// Waits until container `id` has `status` (bounded).
    pub async fn wait_status(&self, id: &str, status: Status) {
        let c = self.engine.container(id).expect("container");
        let mut rx = c.observed.subscribe();
        let ok = tokio::time::timeout(DEADLINE, rx.wait_for(|o| o.status == status))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(ok, "{id} never reached {status:?}: {:?}", c.state());
    }

    /// Waits until the fake recorded `n` spawns of `id` (bounded).
    pub async fn wait_spawns(&self, id: &str, n: usize) {
        let ok = self
            .fake
            .wait_for(DEADLINE, |calls| spawns_of(calls, id) >= n)
            .await;
        assert!(
            ok,
            "{id}: {} spawns, wanted {n}",
            self.fake.spawns(id).len()
        );
    }

    /// Waits until `id` is gone from the table (bounded).
    pub async fn wait_removed(&self, id: &str) {
        let done = self
            .engine
            .wait(id, crate::WaitCondition::Removed)
            .expect("wait");
        assert!(
            tokio::time::timeout(DEADLINE, done).await.is_ok(),
            "{id} was never removed"
        );
    }
}

pub(crate) fn spawns_of(calls: &[Call], id: &str) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c, Call::Spawn(s) if s.id == id))
        .count()
}

/// A create request for the built-in `host` image, isolated network (nothing to wire).
pub(crate) fn req(name: &str) -> CreateContainer {
    CreateContainer {
        name: Some(name.to_owned()),
        spec: ContainerSpec {
            image: "host".into(),
            cmd: Some(vec!["/bin/app".into(), "--flag".into()]),
            network_mode: "none".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `req` with some of its settings changed by `f`.
pub(crate) fn with_spec(
    mut req: CreateContainer,
    f: impl FnOnce(&mut ContainerSpec),
) -> CreateContainer {
    f(&mut req.spec);
    req
}

pub(crate) fn with_policy(name: &str, policy: RestartPolicy) -> CreateContainer {
    with_spec(req(name), |s| s.restart_policy = policy)
}

/// What a test plugin does on one volume event.
#[derive(Clone)]
pub(crate) enum Behave {
    /// Answers `500 {"Err": reason}`.
    Fail(&'static str),
    /// Waits for a permit of the semaphore (the test releases it), then answers normally.
    Block(Arc<Semaphore>),
}

/// A real volume plugin (v2 handshake, every volume event) served in-process on a UNIX socket.
/// Every call is logged in one log shared by all plugins of a test, as `name:event:host_path`.
pub(crate) struct VolumePlugin {
    pub socket: PathBuf,
    behave: Arc<Mutex<HashMap<VolumeEvent, Behave>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub(crate) type Log = Arc<Mutex<Vec<String>>>;

pub(crate) fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl VolumePlugin {
    pub async fn serve(dir: &Path, name: &'static str, log: &Log) -> VolumePlugin {
        let socket = dir.join(format!("{name}.sock"));
        let behave: Arc<Mutex<HashMap<VolumeEvent, Behave>>> = Arc::default();
        let (b, log) = (behave.clone(), log.clone());
        let plugin = Plugin::builder(name)
            .volume(move |m: VolumeMessage| {
                let (b, log) = (b.clone(), log.clone());
                async move {
                    let event = m.event.unwrap_or(VolumeEvent::Create);
                    let tag = format!("{name}:{}:{}", event.as_str(), m.host_path);
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(tag);
                    let act = b
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&event)
                        .cloned();
                    match act {
                        Some(Behave::Fail(reason)) => Err(HandlerError::new(reason)),
                        Some(Behave::Block(s)) => {
                            let _permit = s.acquire().await;
                            Ok(m)
                        }
                        None => Ok(m),
                    }
                }
            })
            .build();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind plugin socket");
        tokio::spawn(plugin.serve_listener(listener, async move {
            let _ = stopped.await;
        }));
        VolumePlugin {
            socket,
            behave,
            stop: Some(stop),
        }
    }

    pub fn on(&self, event: VolumeEvent, act: Behave) {
        self.behave
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event, act);
    }
}

impl Drop for VolumePlugin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
