//! The composition root's ownership: the engine owns the plugin host, the host owns the
//! launcher, and the launcher reaches the engine only through a `Weak`.

use std::sync::{Arc, Weak};

use berth_plugin_host::{HostConfig, PluginHost};

use crate::plugins::ContainerLauncher;
use crate::runtime::fake::FakeRuntime;
use crate::{Engine, OpenError};

#[tokio::test]
async fn the_plugin_host_does_not_keep_the_engine_alive() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().to_owned();
    let mut handed: Option<Weak<Engine>> = None;
    let engine = Engine::open_wired(&root, FakeRuntime::new(), |weak| {
        handed = Some(weak.clone());
        // The engine does not exist yet while it is being wired.
        assert!(weak.upgrade().is_none());
        let launcher = ContainerLauncher::new(weak.clone(), None);
        PluginHost::open(HostConfig::new(&root), Some(launcher)).map(|h| Some(Arc::new(h)))
    })
    .expect("open");
    let weak = handed.expect("wire was called");
    assert!(weak.upgrade().is_some_and(|e| Arc::ptr_eq(&e, &engine)));
    let host = Arc::downgrade(engine.plugins().expect("host"));
    drop(engine);
    // No cycle: dropping the last strong handle frees the engine, its host and the launcher.
    assert!(weak.upgrade().is_none());
    assert!(host.upgrade().is_none());
}

#[tokio::test]
async fn a_failing_wire_fails_the_open() {
    let dir = tempfile::tempdir().expect("dir");
    let r = Engine::open_wired(dir.path(), FakeRuntime::new(), |_| {
        Err::<Option<Arc<PluginHost>>, _>("no plugin registry")
    });
    assert!(
        matches!(r, Err(OpenError::Plugins("no plugin registry"))),
        "{:?}",
        r.err()
    );
}

#[tokio::test]
async fn a_launcher_whose_engine_is_gone_fails_its_calls() {
    use berth_plugin_host::{LaunchSpec, PluginLauncher};
    let launcher = ContainerLauncher::new(Weak::new(), None);
    let r = launcher
        .launch(LaunchSpec {
            name: Some("p".into()),
            image: "host".into(),
            args: vec!["/bin/p".into()],
            env: vec![],
            mounts: vec![],
            privileged: false,
            host_network: false,
            socket_dir: "/nonexistent".into(),
        })
        .await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("engine has shut down")),
        "{r:?}"
    );
}
