//! Per-volume locking with a plugin driver whose calls can be held mid-call: a call on one volume
//! never waits for a plugin call on another (nor do local volumes), while the calls on one volume
//! stay serialised (one `Mount` for two users, the last `Unmount` answered before the next
//! `Mount`). Ordering is asserted through the driver's record of calls and channels, never
//! through sleeps; the bounded waits only turn a deadlock into a failure.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_plugin_host::protocol::Protocol;
use berth_plugin_host::{HostConfig, LoadOptions, PluginHost};
use berth_plugin_sdk::{HandlerError, Plugin};
use berth_volumes::{CreateVolume, VolumeStore};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// Fails the test instead of hanging when `f` does not finish (a deadlock is the bug).
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after 20 s"))
}

/// A store with a `VolumeDriver` plugin (`slowvol`) whose calls can be held: a call
/// `"<Method> <volume>"` in the held set waits until it is taken out. Every call is logged when it
/// starts and when it answers (with the mount ID), and its start is announced on `arrivals`.
struct Fixture {
    store: Arc<VolumeStore>,
    host: Arc<PluginHost>,
    log: Arc<Mutex<Vec<String>>>,
    held: watch::Sender<BTreeSet<String>>,
    arrivals: mpsc::UnboundedReceiver<String>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (held, held_rx) = watch::channel(BTreeSet::new());
        let (tx, arrivals) = mpsc::unbounded_channel();
        let mut b = Plugin::builder("slowvol")
            .answer_only(&[Protocol::Activate])
            .implements("VolumeDriver");
        for method in [
            "Create",
            "Get",
            "Mount",
            "Unmount",
            "Remove",
            "Capabilities",
        ] {
            let (log, held_rx, tx, data) = (log.clone(), held_rx.clone(), tx.clone(), data.clone());
            b = b.route_json(format!("/VolumeDriver.{method}"), move |req: Value| {
                let (log, mut held_rx, tx, data) =
                    (log.clone(), held_rx.clone(), tx.clone(), data.clone());
                async move {
                    let name = req["Name"].as_str().unwrap_or_default().to_owned();
                    let call = format!("{method} {name}");
                    let id = req["ID"].as_str().unwrap_or_default().to_owned();
                    log.lock().unwrap().push(format!("start {call} {id}"));
                    let _ = tx.send(call.clone());
                    let _ = held_rx.wait_for(|h| !h.contains(&call)).await;
                    log.lock().unwrap().push(format!("end {call} {id}"));
                    match method {
                        "Get" => Err(HandlerError::new("no such volume")),
                        "Mount" => {
                            let mp = data.join(&name);
                            std::fs::create_dir_all(&mp).unwrap();
                            Ok(json!({"Mountpoint": mp}))
                        }
                        "Capabilities" => Ok(json!({"Capabilities": {"Scope": "local"}})),
                        _ => Ok(json!({})),
                    }
                }
            });
        }
        let socket = dir.path().join("slowvol.sock");
        let plugin = b.build();
        let s = socket.clone();
        tokio::spawn(async move { plugin.serve(s, std::future::pending()).await });
        let host = PluginHost::open(HostConfig::new(dir.path().join("host")), None).unwrap();
        bounded(
            "loading the driver",
            host.load_socket(&socket, LoadOptions::default()),
        )
        .await
        .unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        Fixture {
            store: Arc::new(store),
            host: Arc::new(host),
            log,
            held,
            arrivals,
            _dir: dir,
        }
    }

    fn hold(&self, call: &str) {
        self.held.send_modify(|h| {
            h.insert(call.to_owned());
        });
    }

    fn release(&self, call: &str) {
        self.held.send_modify(|h| {
            h.remove(call);
        });
    }

    /// Waits for the next call to reach the driver, and checks which it is.
    async fn arrived(&mut self, call: &str) {
        let got = bounded(&format!("waiting for {call}"), self.arrivals.recv()).await;
        assert_eq!(got.as_deref(), Some(call));
    }

    /// The log lines that start with `prefix`.
    fn calls(&self, prefix: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    async fn create(&mut self, name: &str) {
        let req = CreateVolume {
            name: Some(name.into()),
            driver: Some("slowvol".into()),
            ..Default::default()
        };
        self.store.create_with(Some(&self.host), req).await.unwrap();
        self.arrived(&format!("Get {name}")).await;
        self.arrived(&format!("Create {name}")).await;
        self.arrived("Capabilities ").await;
    }

    /// Mounts `name` for `container` in a task of its own.
    fn mount(&self, name: &str, container: &str) -> tokio::task::JoinHandle<String> {
        let (store, host) = (self.store.clone(), self.host.clone());
        let (name, container) = (name.to_owned(), container.to_owned());
        tokio::spawn(async move { store.mount(Some(&host), &name, &container).await.unwrap() })
    }

    /// Unmounts `name` for `container` in a task of its own.
    fn unmount(&self, name: &str, container: &str) -> tokio::task::JoinHandle<()> {
        let (store, host) = (self.store.clone(), self.host.clone());
        let (name, container) = (name.to_owned(), container.to_owned());
        tokio::spawn(async move { store.unmount(Some(&host), &name, &container).await.unwrap() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_plugin_call_blocks_neither_other_volumes_nor_local_ones() {
    let mut f = Fixture::start().await;
    f.create("slow").await;
    f.create("other").await;
    f.hold("Mount slow");
    let slow = f.mount("slow", "c1");
    f.arrived("Mount slow").await;

    // Another volume of the same driver mounts, unmounts and is removed meanwhile.
    let other = bounded("mounting another volume", f.mount("other", "c2"))
        .await
        .unwrap();
    f.arrived("Mount other").await;
    assert!(other.ends_with("/other"), "{other}");
    bounded("unmounting it", f.unmount("other", "c2"))
        .await
        .unwrap();
    f.arrived("Unmount other").await;
    bounded(
        "removing it",
        f.store.remove_with(Some(&f.host), "other", &[]),
    )
    .await
    .unwrap();
    f.arrived("Remove other").await;

    // A local volume never waits for the plugin.
    let local = CreateVolume {
        name: Some("loc".into()),
        ..Default::default()
    };
    let (v, _) = bounded(
        "creating a local volume",
        f.store.create_with(Some(&f.host), local),
    )
    .await
    .unwrap();
    let path = bounded("mounting it", f.store.mount(Some(&f.host), "loc", "c3"))
        .await
        .unwrap();
    assert_eq!(path, v.mountpoint.to_string_lossy());
    bounded("unmounting it", f.store.unmount(Some(&f.host), "loc", "c3"))
        .await
        .unwrap();
    bounded(
        "removing it",
        f.store.remove_with(Some(&f.host), "loc", &[]),
    )
    .await
    .unwrap();
    // A create of a new plugin volume goes through too.
    f.create("third").await;

    // The held call was still in flight all along; released, it completes.
    assert!(f.calls("end Mount slow").is_empty());
    f.release("Mount slow");
    bounded("the held mount", slow).await.unwrap();
    assert_eq!(f.store.mount_count("slow"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_of_one_volume_share_one_mount_and_one_unmount() {
    let mut f = Fixture::start().await;
    f.create("v").await;
    f.hold("Mount v");
    let first = f.mount("v", "c1");
    f.arrived("Mount v").await;
    // The second user waits for the first Mount instead of sending its own.
    let second = f.mount("v", "c2");
    f.release("Mount v");
    let (a, b) = bounded("both mounts", async { (first.await, second.await) }).await;
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(f.calls("start Mount").len(), 1, "{:?}", f.calls(""));
    assert_eq!(f.store.mount_count("v"), 2);

    // The first user leaving sends nothing; the last one sends Unmount with the Mount's ID.
    bounded("first unmount", f.unmount("v", "c1"))
        .await
        .unwrap();
    assert!(f.calls("start Unmount").is_empty());
    bounded("last unmount", f.unmount("v", "c2")).await.unwrap();
    f.arrived("Unmount v").await;
    let id = |line: &str| line.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(
        id(&f.calls("start Unmount v")[0]),
        id(&f.calls("start Mount v")[0])
    );
    assert_eq!(f.store.mount_count("v"), 0);
    // Any arrival left over would be a second Mount or Unmount.
    assert!(f.arrivals.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_waits_for_the_unmount_in_flight_of_the_same_volume() {
    let mut f = Fixture::start().await;
    f.create("v").await;
    bounded("mount", f.mount("v", "c1")).await.unwrap();
    f.arrived("Mount v").await;
    f.hold("Unmount v");
    let leaving = f.unmount("v", "c1");
    f.arrived("Unmount v").await;
    let coming = f.mount("v", "c2");
    // The new Mount may only reach the driver after the Unmount answered.
    f.release("Unmount v");
    f.arrived("Mount v").await;
    bounded("unmount", leaving).await.unwrap();
    bounded("mount", coming).await.unwrap();
    let order: Vec<String> = f
        .calls("")
        .into_iter()
        .filter(|l| l.to_lowercase().contains("mount v"))
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "start Mount v",
            "end Mount v",
            "start Unmount v",
            "end Unmount v",
            "start Mount v",
            "end Mount v"
        ]
    );
    // The new mount has a fresh ID.
    let ids: Vec<String> = f
        .calls("start Mount v")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(f.store.mount_count("v"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_waits_for_a_mount_in_flight_and_then_refuses() {
    let mut f = Fixture::start().await;
    f.create("v").await;
    f.hold("Mount v");
    let mounting = f.mount("v", "c1");
    f.arrived("Mount v").await;
    let (store, host) = (f.store.clone(), f.host.clone());
    let removing = tokio::spawn(async move { store.remove_with(Some(&host), "v", &[]).await });
    f.release("Mount v");
    bounded("mount", mounting).await.unwrap();
    let err = bounded("remove", removing).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("in use - [c1]"), "{err}");
    assert!(f.calls("start Remove").is_empty());
    assert!(f.store.get("v").is_ok());
}
