//! A crash while a driver wires an endpoint: the endpoint's id is on disk before the driver is
//! asked to make anything for it (write-ahead), so the next boot knows the links it may have made
//! (the kill -9 torture found bridge veth pairs no record named). On a network of a plugin
//! driver, the next boot owes the driver the endpoint's tear-down; a create or remove of such a
//! network cut half-way leaves the driver owed `DeleteNetwork` (`docs/semantics.md#catch-up`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_networks::driver::{EndpointInfo, JoinInfo, NetworkDriver};
use berth_networks::{CreateNetwork, Network, NetworkError, NetworkStore, Phase};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// A driver named `crashy` whose `Join` reports its endpoint id and never returns.
struct HangingJoin(mpsc::UnboundedSender<String>);

impl NetworkDriver for HangingJoin {
    fn name(&self) -> &str {
        "crashy"
    }
    fn create_network<'a>(&'a self, _net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async { Ok(()) })
    }
    fn delete_network<'a>(&'a self, _net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async { Ok(()) })
    }
    fn join<'a>(
        &'a self,
        _net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<JoinInfo, NetworkError>> {
        let _ = self.0.send(ep.id.clone());
        Box::pin(std::future::pending())
    }
    fn leave<'a>(
        &'a self,
        _net: &'a Network,
        _ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The on-disk record of the network `cn`.
fn record(root: &std::path::Path) -> serde_json::Value {
    std::fs::read_dir(root.join("networks"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("network.json")).ok())
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        .find(|v| v["Name"] == "cn")
        .unwrap()
}

/// Needs root (the join looks at the host's links first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_recorded_before_its_driver_wires_it_and_swept_at_the_next_boot() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(NetworkStore::open(root.path(), None).unwrap());
    let (tx, mut joined) = mpsc::unbounded_channel();
    store.register_driver(Arc::new(HangingJoin(tx)));
    let req = CreateNetwork {
        name: "cn".into(),
        driver: "crashy".into(),
        ipam_config: vec![("10.231.0.0/24".into(), None, None)],
        ..Default::default()
    };
    store.create(req).await.unwrap();
    let cid = "c".repeat(64);
    let s = store.clone();
    let c = cid.clone();
    let connecting =
        tokio::spawn(async move { s.connect("cn", &c, "c", "cn", "", &[], true).await });
    let ep = tokio::time::timeout(Duration::from_secs(20), joined.recv())
        .await
        .expect("Join was never called")
        .unwrap();
    let rec = record(root.path());
    assert_eq!(
        rec["Members"][&cid]["PendingEndpoint"], ep,
        "the endpoint is not on disk while its driver wires it: {rec}"
    );
    // The crash: the connect never finishes; the next engine opens the same root.
    connecting.abort();
    let _ = connecting.await;
    drop(store);
    let reopened = NetworkStore::open(root.path(), None).unwrap();
    // On a plugin driver's network the pending endpoint stays recorded: its tear-down is owed
    // (`crash_between_join_and_record_owes_leave_and_delete_endpoint`).
    let rec = record(root.path());
    assert_eq!(
        rec["Members"][&cid]["PendingEndpoint"], ep,
        "the boot forgot an owed pending endpoint: {rec}"
    );
    drop(reopened);
}

/// A recording driver `rec`: every call is sent as `Call:<network or endpoint id>`; the calls
/// named in `hang` never return (the daemon is "killed" during them).
struct Recorder {
    calls: mpsc::UnboundedSender<String>,
    hang: Vec<&'static str>,
}

impl Recorder {
    fn new(hang: &[&'static str]) -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let r = Recorder {
            calls: tx,
            hang: hang.to_vec(),
        };
        (Arc::new(r), rx)
    }

    fn call<'a, T: Send + 'a>(
        &'a self,
        call: &'static str,
        id: &str,
        ok: T,
    ) -> BoxFuture<'a, Result<T, NetworkError>> {
        let _ = self.calls.send(format!("{call}:{id}"));
        if self.hang.contains(&call) {
            Box::pin(std::future::pending())
        } else {
            Box::pin(async { Ok(ok) })
        }
    }
}

impl NetworkDriver for Recorder {
    fn name(&self) -> &str {
        "rec"
    }
    fn create_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        self.call("CreateNetwork", &net.id, ())
    }
    fn delete_network<'a>(&'a self, net: &'a Network) -> BoxFuture<'a, Result<(), NetworkError>> {
        self.call("DeleteNetwork", &net.id, ())
    }
    fn join<'a>(
        &'a self,
        _net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<JoinInfo, NetworkError>> {
        let info = JoinInfo {
            src_name: String::new(),
            dst_prefix: None,
            gateway: None,
            static_routes: Vec::new(),
            default_route: false,
        };
        self.call("Join", &ep.id, info)
    }
    fn leave<'a>(
        &'a self,
        _net: &'a Network,
        ep: &'a EndpointInfo,
    ) -> BoxFuture<'a, Result<(), NetworkError>> {
        self.call("Leave", &ep.id, ())
    }
}

/// The next call the driver reports (bounded wait).
async fn next_call(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the driver was never called")
        .unwrap()
}

/// The calls the driver reported so far, without waiting.
fn calls_so_far(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// The next engine on the same root, with a fresh recording driver (nothing hangs).
fn reopen(root: &std::path::Path) -> (NetworkStore, mpsc::UnboundedReceiver<String>) {
    let store = NetworkStore::open(root, None).unwrap();
    let (rec, rx) = Recorder::new(&[]);
    store.register_driver(rec);
    (store, rx)
}

fn rec_net(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        driver: "rec".into(),
        ipam_config: vec![(subnet.into(), None, None)],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_create_network_owes_delete_network_at_the_next_boot() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(NetworkStore::open(root.path(), None).unwrap());
    let (rec, mut rx) = Recorder::new(&["CreateNetwork"]);
    store.register_driver(rec);
    let s = store.clone();
    let creating = tokio::spawn(async move { s.create(rec_net("cut", "10.232.0.0/24")).await });
    let call = next_call(&mut rx).await;
    let id = call.strip_prefix("CreateNetwork:").unwrap().to_owned();
    // The crash: the plugin made its network, the daemon never saw the answer.
    creating.abort();
    let _ = creating.await;
    drop(store);

    let (next, mut rx) = reopen(root.path());
    assert!(
        next.get("cut").is_err(),
        "a create the client never saw succeed is listed"
    );
    assert_eq!(
        next.owed_networks(),
        [("cut".to_owned(), id.clone(), Phase::Creating)]
    );
    let paid = next.pay_owed_networks(None).await;
    assert_eq!(paid.sent.len(), 1, "{paid:?}");
    assert_eq!(calls_so_far(&mut rx), [format!("DeleteNetwork:{id}")]);
    assert!(next.owed_networks().is_empty());
    assert!(
        !root.path().join("networks").join(&id).exists(),
        "the owed network's record outlived its payment"
    );
    // Paid once: the boot after that owes nothing, and the name is free.
    drop(next);
    let (third, mut rx) = reopen(root.path());
    assert!(third.owed_networks().is_empty());
    assert!(third.pay_owed_networks(None).await.sent.is_empty());
    assert!(calls_so_far(&mut rx).is_empty());
    third.create(rec_net("cut", "10.232.0.0/24")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_delete_network_owes_it_again_at_the_next_boot() {
    let root = tempfile::tempdir().unwrap();
    let (store, mut rx) = reopen(root.path());
    let n = store
        .create(rec_net("gone", "10.233.0.0/24"))
        .await
        .unwrap();
    assert_eq!(calls_so_far(&mut rx), [format!("CreateNetwork:{}", n.id)]);
    drop(store);

    let store = Arc::new(NetworkStore::open(root.path(), None).unwrap());
    let (rec, mut rx) = Recorder::new(&["DeleteNetwork"]);
    store.register_driver(rec);
    let s = store.clone();
    let removing = tokio::spawn(async move { s.remove("gone").await });
    assert_eq!(next_call(&mut rx).await, format!("DeleteNetwork:{}", n.id));
    removing.abort();
    let _ = removing.await;
    drop(store);

    let (next, mut rx) = reopen(root.path());
    assert!(
        next.get("gone").is_err(),
        "a network whose remove began is listed again"
    );
    assert_eq!(
        next.owed_networks(),
        [("gone".to_owned(), n.id.clone(), Phase::Removing)]
    );
    next.pay_owed_networks(None).await;
    assert_eq!(calls_so_far(&mut rx), [format!("DeleteNetwork:{}", n.id)]);
    drop(next);
    let (third, _rx) = reopen(root.path());
    assert!(third.owed_networks().is_empty());
    assert!(third.get("gone").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owed_network_stays_owed_while_its_plugin_is_absent() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(NetworkStore::open(root.path(), None).unwrap());
    let (rec, mut rx) = Recorder::new(&["CreateNetwork"]);
    store.register_driver(rec);
    let s = store.clone();
    let creating = tokio::spawn(async move { s.create(rec_net("later", "10.234.0.0/24")).await });
    next_call(&mut rx).await;
    creating.abort();
    let _ = creating.await;
    drop(store);
    // No driver `rec` (no plugin host): nothing can be sent, the debt stays on disk.
    let next = NetworkStore::open(root.path(), None).unwrap();
    let paid = next.pay_owed_networks(None).await;
    assert!(paid.sent.is_empty());
    assert_eq!(paid.still_owed.len(), 1, "{paid:?}");
    assert!(
        paid.still_owed[0].1.contains("\"rec\" is not loaded"),
        "{paid:?}"
    );
    drop(next);
    let (third, mut rx) = reopen(root.path());
    assert_eq!(third.owed_networks().len(), 1);
    assert_eq!(third.pay_owed_networks(Some("rec")).await.sent.len(), 1);
    assert_eq!(calls_so_far(&mut rx).len(), 1);
}

/// Needs root (the join looks at the host's links first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_join_and_record_owes_leave_and_delete_endpoint() {
    let root = tempfile::tempdir().unwrap();
    let (store, mut rx) = reopen(root.path());
    store.create(rec_net("ep", "10.235.0.0/24")).await.unwrap();
    calls_so_far(&mut rx);
    drop(store);
    let store = Arc::new(NetworkStore::open(root.path(), None).unwrap());
    let (rec, mut rx) = Recorder::new(&["Join"]);
    store.register_driver(rec);
    let cid = "d".repeat(64);
    let s = store.clone();
    let c = cid.clone();
    let connecting =
        tokio::spawn(async move { s.connect("ep", &c, "d", "ep", "", &[], true).await });
    let ep = next_call(&mut rx)
        .await
        .strip_prefix("Join:")
        .unwrap()
        .to_owned();
    connecting.abort();
    let _ = connecting.await;
    drop(store);

    let (next, mut rx) = reopen(root.path());
    let owed = next.owed_leaves(&|_| false);
    assert_eq!(owed.len(), 1, "the pending endpoint is not owed");
    let paid = next.pay_owed_leaves(&|_| false).await;
    assert_eq!(paid.sent, [("ep".to_owned(), cid.clone(), ep.clone())]);
    assert_eq!(calls_so_far(&mut rx), [format!("Leave:{ep}")]);
    let rec = next.get("ep").unwrap();
    let m = &rec.members[&cid];
    assert!(
        m.pending_endpoint.is_none() && m.endpoint.is_none(),
        "the paid endpoint is still recorded: {m:?}"
    );
    drop(next);
    let (third, mut rx) = reopen(root.path());
    assert!(third.pay_owed_leaves(&|_| false).await.sent.is_empty());
    assert!(calls_so_far(&mut rx).is_empty());
}
