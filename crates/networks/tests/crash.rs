//! A crash while a driver wires an endpoint: the endpoint's id is on disk before the driver is
//! asked to make anything for it (write-ahead), so the next boot knows the links it may have made
//! (the kill -9 torture found bridge veth pairs no record named); the boot forgets it again.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_networks::driver::{EndpointInfo, JoinInfo, NetworkDriver};
use berth_networks::{CreateNetwork, Network, NetworkError, NetworkStore};
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
    drop(store);
    let reopened = NetworkStore::open(root.path(), None).unwrap();
    let rec = record(root.path());
    assert!(
        rec["Members"][&cid].get("PendingEndpoint").is_none(),
        "the boot did not take the pending endpoint over: {rec}"
    );
    drop(reopened);
}
