//! Plugin load and upgrade undo what they did when a later step fails (one `Rollback` each): the
//! launched container is stopped, its socket dir removed, the registration taken back, and an
//! upgrade leaves the old plugin in place. The launcher is a fake that serves a real SDK plugin
//! on the socket the host polls, so the handshake is the real one.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_plugin_host::{
    HostConfig, LaunchError, LaunchSpec, Launched, LoadOptions, PluginHost, PluginLauncher,
    UpgradeTo,
};
use berth_plugin_sdk::Plugin;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

/// What the fake launcher was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Launch(String),
    Stop(String),
}

/// Launches "containers" that are SDK plugins served in this process; `serve: false` launches
/// nothing (the handshake then fails at its deadline).
#[derive(Default)]
struct FakeLauncher {
    serve: std::sync::atomic::AtomicBool,
    calls: Mutex<Vec<Call>>,
    socket_dirs: Mutex<Vec<PathBuf>>,
    running: Mutex<Vec<(String, oneshot::Sender<()>)>>,
}

impl FakeLauncher {
    fn new(serve: bool) -> Arc<Self> {
        let l = FakeLauncher::default();
        l.serve.store(serve, std::sync::atomic::Ordering::SeqCst);
        Arc::new(l)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn socket_dirs(&self) -> Vec<PathBuf> {
        self.socket_dirs.lock().unwrap().clone()
    }
}

impl PluginLauncher for FakeLauncher {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Launched, LaunchError>> {
        Box::pin(async move {
            let mut calls = self.calls.lock().unwrap();
            let id = format!("c{}", calls.len() + 1);
            calls.push(Call::Launch(id.clone()));
            drop(calls);
            self.socket_dirs
                .lock()
                .unwrap()
                .push(spec.socket_dir.clone());
            if self.serve.load(std::sync::atomic::Ordering::SeqCst) {
                let (tx, rx) = oneshot::channel();
                let plugin = Plugin::builder("fake")
                    .version("1.0")
                    // A plugin with no interests is refused at the handshake.
                    .volume(|m| async move { Ok::<_, berth_plugin_sdk::HandlerError>(m) })
                    .build();
                let socket = spec.socket_dir.join("plugin.sock");
                tokio::spawn(async move {
                    let _ = plugin
                        .serve(socket, async {
                            let _ = rx.await;
                        })
                        .await;
                });
                self.running.lock().unwrap().push((id.clone(), tx));
            }
            Ok(Launched { container_id: id })
        })
    }

    fn stop(&self, container_id: &str) -> BoxFuture<'_, Result<(), LaunchError>> {
        let id = container_id.to_owned();
        Box::pin(async move {
            self.calls.lock().unwrap().push(Call::Stop(id.clone()));
            let mut running = self.running.lock().unwrap();
            if let Some(i) = running.iter().position(|(r, _)| *r == id) {
                let (_, tx) = running.remove(i);
                let _ = tx.send(());
            }
            Ok(())
        })
    }
}

fn host(root: &Path, launcher: Arc<FakeLauncher>) -> PluginHost {
    let mut config = HostConfig::new(root);
    config.load_deadline = Duration::from_secs(10);
    config.drain_grace = Duration::from_millis(100);
    PluginHost::open(config, Some(launcher)).unwrap()
}

/// Makes the next `persist` fail: `plugins.json` becomes a non-empty directory, which the
/// durable write cannot rename a file over.
fn break_persistence(root: &Path) {
    let file = root.join("plugins.json");
    let _ = std::fs::remove_file(&file);
    std::fs::create_dir_all(file.join("blocker")).unwrap();
}

#[tokio::test]
async fn load_whose_registration_fails_stops_the_container_and_removes_its_socket_dir() {
    let root = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(true);
    let host = host(root.path(), launcher.clone());
    break_persistence(root.path());
    let err = host
        .load_container("img", vec![], vec![], LoadOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plugins.json"), "{err}");
    assert_eq!(
        launcher.calls(),
        [Call::Launch("c1".into()), Call::Stop("c1".into())]
    );
    let dirs = launcher.socket_dirs();
    assert_eq!(dirs.len(), 1);
    assert!(
        !dirs[0].exists(),
        "socket dir {} left behind",
        dirs[0].display()
    );
    assert!(host.names().is_empty(), "registered: {:?}", host.names());
}

#[tokio::test]
async fn load_whose_handshake_fails_stops_the_container_and_removes_its_socket_dir() {
    let root = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(false);
    let host = host(root.path(), launcher.clone());
    let opts = LoadOptions {
        load_deadline_ms: Some(300),
        ..Default::default()
    };
    host.load_container("img", vec![], vec![], opts)
        .await
        .unwrap_err();
    assert_eq!(
        launcher.calls(),
        [Call::Launch("c1".into()), Call::Stop("c1".into())]
    );
    assert!(!launcher.socket_dirs()[0].exists());
    assert!(host.names().is_empty());
}

#[tokio::test]
async fn upgrade_whose_persist_fails_keeps_the_old_plugin_and_undoes_the_new_one() {
    let root = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(true);
    let host = host(root.path(), launcher.clone());
    let old = host
        .load_container("img:1", vec![], vec![], LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(old.name(), "fake");
    break_persistence(root.path());
    let to = UpgradeTo::Container {
        image: "img:2".into(),
        args: vec![],
        env: vec![],
    };
    let err = host.upgrade("fake", to).await.unwrap_err();
    assert!(err.to_string().contains("plugins.json"), "{err}");
    // The new container (c2) was launched, then stopped; the old one (c1) was never touched.
    assert_eq!(
        launcher.calls(),
        [
            Call::Launch("c1".into()),
            Call::Launch("c2".into()),
            Call::Stop("c2".into())
        ]
    );
    let dirs = launcher.socket_dirs();
    assert!(dirs[0].exists(), "the old plugin's socket dir is kept");
    assert!(!dirs[1].exists(), "the new plugin's socket dir is removed");
    // The old plugin is back at its place.
    let now = host.get("fake").expect("still loaded");
    assert!(
        Arc::ptr_eq(&now, &old),
        "the old plugin was not swapped back"
    );
    assert_eq!(host.names(), ["fake"]);
}
