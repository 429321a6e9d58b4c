//! Per-network locking with a driver whose calls can be held mid-call: while one network's
//! `CreateNetwork` (or `DeleteNetwork`) hangs, other networks of the same driver and of the
//! built-in bridge are created and removed, containers detach, and the table answers; a create
//! in flight still claims its name and its pool. Ordering is asserted through the driver's
//! arrivals, never through sleeps; the bounded waits only turn a deadlock into a failure.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_networks::driver::{EndpointInfo, JoinInfo, NetworkDriver};
use berth_networks::{CreateNetwork, Network, NetworkError, NetworkStore};
use berth_state::ErrorKind;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after 20 s"))
}

/// A driver named `slow` whose calls (`"create NAME"`, `"delete NAME"`) wait while held.
struct HeldDriver {
    held: watch::Receiver<BTreeSet<String>>,
    arrivals: mpsc::UnboundedSender<String>,
}

impl HeldDriver {
    fn call<'a>(&'a self, call: String) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async move {
            let _ = self.arrivals.send(call.clone());
            let mut held = self.held.clone();
            let _ = held.wait_for(|h| !h.contains(&call)).await;
            Ok(())
        })
    }
}

impl NetworkDriver for HeldDriver {
    fn name(&self) -> &str {
        "slow"
    }
    fn create_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        self.call(format!("create {}", net.name))
    }
    fn delete_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        self.call(format!("delete {}", net.name))
    }
    fn join<'a>(
        &'a self,
        _net: &'a Network,
        _ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<JoinInfo, NetworkError>> {
        Box::pin(async { Err(NetworkError::Invalid("not in this test".into())) })
    }
    fn leave<'a>(
        &'a self,
        _net: &'a Network,
        _ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async { Ok(()) })
    }
}

fn req(name: &str, driver: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        driver: driver.into(),
        ipam_config: vec![(subnet.into(), None, None)],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_driver_call_blocks_only_its_own_network() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(NetworkStore::open(root.path(), None).unwrap());
    let (held, held_rx) = watch::channel(BTreeSet::new());
    let (tx, mut arrivals) = mpsc::unbounded_channel();
    store.register_driver(Arc::new(HeldDriver {
        held: held_rx,
        arrivals: tx,
    }));
    let hold = |c: &str| {
        held.send_modify(|h| {
            h.insert(c.to_owned());
        })
    };
    let release = |c: &str| {
        held.send_modify(|h| {
            h.remove(c);
        })
    };

    hold("create pn1");
    let s = store.clone();
    let creating = tokio::spawn(async move { s.create(req("pn1", "slow", "10.201.0.0/24")).await });
    let got = bounded("CreateNetwork pn1", arrivals.recv()).await;
    assert_eq!(got.as_deref(), Some("create pn1"));

    // The create in flight still owns its name and its pool.
    let dup = bounded(
        "creating a second pn1",
        store.create(req("pn1", "bridge", "10.209.0.0/24")),
    )
    .await
    .unwrap_err();
    assert!(matches!(dup, NetworkError::NameInUse(_)), "{dup}");
    let overlap = bounded(
        "creating an overlapping network",
        store.create(req("ov", "bridge", "10.201.0.0/16")),
    )
    .await
    .unwrap_err();
    assert_eq!(overlap.kind(), ErrorKind::Conflict, "{overlap}");
    assert!(overlap.to_string().contains("pn1"), "{overlap}");

    // Another network of the same driver, and a bridge network, come and go meanwhile.
    bounded(
        "creating pn2",
        store.create(req("pn2", "slow", "10.202.0.0/24")),
    )
    .await
    .unwrap();
    assert_eq!(
        bounded("", arrivals.recv()).await.as_deref(),
        Some("create pn2")
    );
    bounded("removing pn2", store.remove("pn2")).await.unwrap();
    assert_eq!(
        bounded("", arrivals.recv()).await.as_deref(),
        Some("delete pn2")
    );
    bounded(
        "creating a bridge network",
        store.create(req("br1", "bridge", "10.203.0.0/24")),
    )
    .await
    .unwrap();
    bounded("removing it", store.remove("br1")).await.unwrap();
    // Containers detach (exit, rm -f) and the table answers.
    bounded("detaching a container", store.detach(&"c".repeat(64))).await;
    assert!(store.get("pn1").is_err(), "not created yet");
    assert!(store.list().iter().any(|n| n.name == "bridge"));

    release("create pn1");
    let n = bounded("the held create", creating).await.unwrap().unwrap();
    assert_eq!(store.get("pn1").unwrap().id, n.id);

    // A held DeleteNetwork blocks neither creates nor the table; the network is gone from the
    // table at once (no container can join it meanwhile), and the name is free again after.
    hold("delete pn1");
    let s = store.clone();
    let removing = tokio::spawn(async move { s.remove("pn1").await });
    assert_eq!(
        bounded("", arrivals.recv()).await.as_deref(),
        Some("delete pn1")
    );
    assert!(store.get("pn1").is_err());
    assert_eq!(
        store
            .register(&"d".repeat(64), "d", "pn1", "", &[])
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    bounded(
        "creating pn3",
        store.create(req("pn3", "slow", "10.204.0.0/24")),
    )
    .await
    .unwrap();
    assert_eq!(
        bounded("", arrivals.recv()).await.as_deref(),
        Some("create pn3")
    );
    release("delete pn1");
    bounded("the held remove", removing).await.unwrap().unwrap();
    bounded(
        "re-creating pn1",
        store.create(req("pn1", "bridge", "10.201.0.0/24")),
    )
    .await
    .unwrap();
}
