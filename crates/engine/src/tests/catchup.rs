//! Catch-up on the fake runtime: a daemon "crash" is an engine dropped while its container still
//! runs and a second engine opened on the same root. The owed `VolumeDriver.Unmount` carries the
//! mount id of the `Mount`, is sent once, and stays owed while its plugin is not loaded.

use std::path::Path;
use std::sync::Arc;

use berth_plugin_host::{HostConfig, LoadOptions, PluginHost};
use berth_plugin_sdk::protocol::legacy::volume::{MountRequest, MountResponse, NameRequest};
use berth_plugin_sdk::{HandlerError, Plugin};
use serde_json::{Value, json};

use super::{Log, Rig, entries, req, with_spec};
use crate::container::{MountKind, MountSpec, Status};
use crate::{CreateContainer, Engine};

/// A volume driver served in-process; logs `Mount:<id>` and `Unmount:<id>`.
struct Driver {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Driver {
    /// Stops the driver and waits until its server has ended (its socket refuses connections,
    /// its connections are closed): the plugin process is gone.
    async fn gone(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("driver server task");
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn serve_driver(socket: &Path, mountpoint: &Path, log: &Log) -> Driver {
    let mp = mountpoint.display().to_string();
    let (l1, l2) = (log.clone(), log.clone());
    let plugin = Plugin::builder("drv")
        .sync(|_req| async { Ok::<_, HandlerError>(()) })
        .route_json("/VolumeDriver.Create", |_: Value| async {
            Ok::<_, HandlerError>(json!({}))
        })
        .route_json("/VolumeDriver.Get", |r: NameRequest| async move {
            Ok::<_, HandlerError>(json!({"Volume": {"Name": r.name}}))
        })
        .route_json("/VolumeDriver.Mount", move |r: MountRequest| {
            let (log, mp) = (l1.clone(), mp.clone());
            async move {
                log.lock().unwrap().push(format!("Mount:{}", r.id));
                Ok::<_, HandlerError>(MountResponse {
                    mountpoint: mp,
                    err: String::new(),
                })
            }
        })
        .route_json("/VolumeDriver.Unmount", move |r: MountRequest| {
            let log = l2.clone();
            async move {
                log.lock().unwrap().push(format!("Unmount:{}", r.id));
                Ok::<_, HandlerError>(json!({}))
            }
        })
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let listener = tokio::net::UnixListener::bind(socket).expect("bind driver socket");
    let server = tokio::spawn(plugin.serve_listener(listener, async move {
        let _ = stopped.await;
    }));
    Driver {
        stop: Some(stop),
        server: Some(server),
    }
}

/// A fresh plugin host (its own `plugins.json` beside `root`) with the driver on `socket`
/// loaded as `drv` (or nothing loaded).
async fn host(root: &Path, socket: Option<&Path>) -> Arc<PluginHost> {
    let dir = root.with_file_name(format!("host-{}", &berth_state::new_id()[..12]));
    let host = PluginHost::open(HostConfig::new(dir), None).expect("open plugin host");
    if let Some(s) = socket {
        let opts = LoadOptions {
            name: Some("drv".into()),
            ..Default::default()
        };
        host.load_socket(s, opts).await.expect("load driver");
    }
    Arc::new(host)
}

fn with_volume(name: &str) -> CreateContainer {
    with_spec(req(name), |s| {
        s.mounts = vec![MountSpec {
            anonymous: false,
            kind: MountKind::Volume,
            source: "vol".into(),
            destination: "/data".into(),
            read_only: false,
            mode: String::new(),
            driver: Some("drv".into()),
            create_source: false,
        }];
    })
}

/// A rig whose engine has the logging volume driver loaded: (rig, the driver's socket, the
/// engine root, the driver's call log, the driver, kept alive by the caller).
async fn driver_rig() -> (Rig, std::path::PathBuf, std::path::PathBuf, Log, Driver) {
    let dir = tempfile::tempdir().expect("dir");
    let (socket, mp, log) = (
        dir.path().join("drv.sock"),
        dir.path().join("mnt"),
        Log::default(),
    );
    std::fs::create_dir_all(&mp).unwrap();
    let drv = serve_driver(&socket, &mp, &log).await;
    let root = dir.path().join("root");
    let rig = Rig::with_host(Some(host(&root, Some(&socket)).await), dir);
    (rig, socket, root, log, drv)
}

/// Opens a second engine on the rig's root, as the next daemon would.
fn reopen(rig: &Rig, host: Arc<PluginHost>) -> Arc<Engine> {
    Engine::open_with(&rig.dir.path().join("root"), rig.fake.clone(), Some(host))
        .expect("reopen engine")
}

#[tokio::test]
async fn the_unmount_a_crash_left_owed_is_sent_once_with_the_mount_id() {
    let (rig, socket, root, log, _drv) = driver_rig().await;
    let id = rig.run(with_volume("web")).await;
    let mounted = entries(&log);
    assert_eq!(mounted.len(), 1, "{mounted:?}");
    let mount_id = mounted[0].trim_start_matches("Mount:").to_owned();

    // The sync lists the volume with its mount id and user, and the container.
    let sync = rig.engine.sync_objects("drv");
    assert_eq!(sync.volumes.len(), 1);
    let m = sync.volumes[0].mount.as_ref().expect("mounted");
    assert_eq!(
        (m.id.as_str(), m.containers.as_slice()),
        (mount_id.as_str(), [id.clone()].as_slice())
    );
    assert_eq!(sync.containers.len(), 1);
    assert_eq!(sync.containers[0].state, "running");
    assert!(rig.engine.sync_objects("other").volumes.is_empty());

    // The daemon dies with the container running; the next one owes the Unmount.
    let next = reopen(&rig, host(&root, Some(&socket)).await);
    assert_eq!(next.container(&id).unwrap().state().status, Status::Exited);
    assert_eq!(
        next.volumes.owed_unmounts(),
        [("vol".to_owned(), mount_id.clone())]
    );
    let done = next.catch_up().await;
    assert_eq!(done.containers, std::slice::from_ref(&id));
    assert_eq!(done.unmounts.sent, [("vol".to_owned(), mount_id.clone())]);
    assert_eq!(
        entries(&log),
        [format!("Mount:{mount_id}"), format!("Unmount:{mount_id}")]
    );
    // Paid: neither this engine nor the next one sends it again.
    assert!(next.catch_up().await.unmounts.sent.is_empty());
    let third = reopen(&rig, host(&root, Some(&socket)).await);
    assert!(third.volumes.owed_unmounts().is_empty());
    assert!(third.catch_up().await.unmounts.sent.is_empty());
    assert_eq!(entries(&log).len(), 2, "{:?}", entries(&log));
}

#[tokio::test]
async fn an_unmount_whose_driver_is_not_loaded_stays_owed_until_a_boot_where_it_is() {
    let (rig, socket, root, log, _drv) = driver_rig().await;
    rig.run(with_volume("web")).await;
    let mount_id = entries(&log)[0].trim_start_matches("Mount:").to_owned();

    // A boot where the driver is not loaded: nothing is sent, the debt is kept on disk.
    let next = reopen(&rig, host(&root, None).await);
    let done = next.catch_up().await;
    assert!(done.unmounts.sent.is_empty());
    assert_eq!(done.unmounts.still_owed.len(), 1, "{done:?}");
    assert_eq!(entries(&log).len(), 1);

    // The next boot has it: the Unmount goes out, with the id of the Mount.
    let third = reopen(&rig, host(&root, Some(&socket)).await);
    third.catch_up().await;
    assert_eq!(
        entries(&log),
        [format!("Mount:{mount_id}"), format!("Unmount:{mount_id}")]
    );
}

#[tokio::test]
async fn a_normal_exit_leaves_nothing_owed() {
    let (rig, socket, root, log, _drv) = driver_rig().await;
    let id = rig.run(with_volume("web")).await;
    rig.fake.exit(&id, 0);
    rig.wait_status(&id, Status::Exited).await;
    assert_eq!(entries(&log).len(), 2, "{:?}", entries(&log));
    let next = reopen(&rig, host(&root, Some(&socket)).await);
    assert!(next.volumes.owed_unmounts().is_empty());
    assert!(next.catch_up().await.unmounts.sent.is_empty());
    assert_eq!(entries(&log).len(), 2);
}

#[tokio::test]
async fn bind_plugins_get_the_stop_a_crash_left_owed() {
    let dir = tempfile::tempdir().expect("dir");
    let log = Log::default();
    let p1 = super::VolumePlugin::serve(dir.path(), "p1", &log).await;
    let rig = Rig::with_plugins(dir, &[&p1]).await;
    let src = rig.source("web");
    let id = rig
        .run(with_spec(req("web"), |s| {
            s.binds = vec![format!("{src}:/data")];
            s.mounts = vec![MountSpec::bind(src.clone(), "/data", false)];
        }))
        .await;
    assert_eq!(
        entries(&log),
        [format!("p1:create:{src}"), format!("p1:start:{src}")]
    );
    let root = rig.dir.path().join("root");
    let h = PluginHost::open(HostConfig::new(root.with_file_name("host-2")), None).expect("host");
    h.load_socket(&p1.socket, LoadOptions::default())
        .await
        .expect("load p1");
    let next = reopen(&rig, Arc::new(h));
    assert_eq!(next.catch_up().await.containers, [id]);
    assert_eq!(
        entries(&log),
        [
            format!("p1:create:{src}"),
            format!("p1:start:{src}"),
            format!("p1:stop:{src}")
        ]
    );
}

/// A start whose volume `Mount` fails gives back the cgroup it made meanwhile (the cgroup is made
/// while the drivers mount, not after) and spawns nothing: no empty cgroup is left behind.
#[tokio::test]
async fn a_failed_mount_gives_back_the_cgroup_made_beside_it() {
    use crate::runtime::fake::Call;
    let (rig, _socket, _root, log, drv) = driver_rig().await;
    let id = rig.create(with_volume("web")).await;
    // The driver goes away between create and start: its `Mount` cannot be answered.
    drv.gone().await;
    rig.engine
        .start(&id)
        .await
        .expect_err("a start whose Mount fails");
    assert!(entries(&log).is_empty(), "{:?}", entries(&log));
    let calls = rig.fake.calls();
    let of = |want: fn(&Call, &str) -> bool| calls.iter().filter(|c| want(c, &id)).count();
    let created = of(|c, id| matches!(c, Call::CreateCgroup { id: i, .. } if i == id));
    let removed = of(|c, id| matches!(c, Call::RemoveCgroup(i) if i == id));
    assert_eq!(created, 1, "the cgroup is made beside the Mount: {calls:?}");
    assert_eq!(removed, 1, "and given back when the Mount fails: {calls:?}");
    assert_eq!(super::spawns_of(&calls, &id), 0, "{calls:?}");
}
