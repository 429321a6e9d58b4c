//! The v2 `sync` message from the host's side: sent after a load (and an upgrade) to a v2 plugin
//! that subscribed, with what the launcher (the engine) lists; never to one that did not, nor to
//! a v1 plugin; a failing sync does not fail the load, and `plugin status` shows it (the `sync`
//! hook's counters and the last error). Plugins are real SDK plugins on sockets in a temp dir.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_plugin_host::protocol::Protocol;
use berth_plugin_host::protocol::sync::{SyncReason, SyncRequest, SyncVolume};
use berth_plugin_host::{
    HostConfig, LaunchError, LaunchSpec, Launched, LoadOptions, PluginHost, PluginLauncher,
    SyncOutcome, UpgradeTo,
};
use berth_plugin_sdk::{HandlerError, Plugin, PluginBuilder};
use futures::future::BoxFuture;

/// Launches nothing; lists one volume for every plugin.
struct Lister;

impl PluginLauncher for Lister {
    fn launch(&self, _spec: LaunchSpec) -> BoxFuture<'_, Result<Launched, LaunchError>> {
        Box::pin(async { Err(LaunchError("no containers here".into())) })
    }
    fn stop(&self, _id: &str) -> BoxFuture<'_, Result<(), LaunchError>> {
        Box::pin(async { Ok(()) })
    }
    fn sync_objects(&self, plugin: &str) -> Option<SyncRequest> {
        Some(SyncRequest {
            volumes: vec![SyncVolume {
                name: format!("vol-of-{plugin}"),
                ..Default::default()
            }],
            ..Default::default()
        })
    }
}

type Seen = Arc<Mutex<Vec<SyncRequest>>>;

/// Serves `builder` on `socket` (for the test's lifetime).
fn serve(builder: PluginBuilder, socket: &Path) {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    tokio::spawn(
        builder
            .build()
            .serve_listener(listener, futures::future::pending::<()>()),
    );
}

fn recording(name: &str, seen: &Seen, fail: bool) -> PluginBuilder {
    let seen = seen.clone();
    Plugin::builder(name).sync(move |req: SyncRequest| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(req);
            if fail {
                Err(HandlerError::new("cannot reconcile"))
            } else {
                Ok(())
            }
        }
    })
}

fn host(dir: &Path) -> PluginHost {
    PluginHost::open(HostConfig::new(dir), Some(Arc::new(Lister))).unwrap()
}

#[tokio::test]
async fn a_subscribed_v2_plugin_gets_a_sync_at_load_and_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Seen::default();
    let sock = dir.path().join("rec.sock");
    serve(recording("rec", &seen, false), &sock);
    let h = host(dir.path());
    let p = h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    assert_eq!(p.protocol(), Protocol::V2);
    assert!(p.record().interests.contains(&"sync".to_owned()));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].reason, Some(SyncReason::Load));
        assert_eq!(seen[0].plugin, "rec");
        assert_eq!(seen[0].volumes[0].name, "vol-of-rec");
    }
    // Held, the old plugin would keep the upgrade draining for its whole grace period.
    drop(p);
    let sock2 = dir.path().join("rec2.sock");
    serve(recording("rec", &seen, false), &sock2);
    h.upgrade("rec", UpgradeTo::Socket(sock2)).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].reason, Some(SyncReason::Upgrade));
}

#[tokio::test]
async fn no_sync_without_a_subscription_or_for_a_reason_not_subscribed_or_over_v1() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Seen::default();
    let h = host(dir.path());
    // v1 only: the SDK leaves `sync` out of its v1 handshake, and the host sends none.
    let v1 = dir.path().join("v1.sock");
    serve(
        recording("v1", &seen, false)
            .volume(|m| async move { Ok::<_, HandlerError>(m) })
            .answer_only(&[Protocol::V1]),
        &v1,
    );
    let p = h.load_socket(&v1, LoadOptions::default()).await.unwrap();
    assert_eq!(p.protocol(), Protocol::V1);
    assert!(!p.record().interests.contains(&"sync".to_owned()));
    // Subscribed to restarts only: no sync at load.
    let narrow = dir.path().join("narrow.sock");
    serve(
        recording("narrow", &seen, false).sync_reasons(&[SyncReason::Restart]),
        &narrow,
    );
    h.load_socket(&narrow, LoadOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        h.sync("narrow", SyncReason::Boot).await,
        SyncOutcome::NotSent
    ));
    assert!(seen.lock().unwrap().is_empty());
    // The restart it asked for is sent.
    assert!(matches!(
        h.sync("narrow", SyncReason::Restart).await,
        SyncOutcome::Done
    ));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failing_sync_does_not_fail_the_load_and_shows_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Seen::default();
    let sock = dir.path().join("bad.sock");
    serve(recording("bad", &seen, true), &sock);
    let h = host(dir.path());
    let p = h.load_socket(&sock, LoadOptions::default()).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    let stats = p.hook_stats();
    let s = stats.get("sync").expect("sync counted");
    assert_eq!((s.calls, s.failures), (1, 1));
    let last = p.last_error().unwrap_or_default();
    assert!(
        last.contains("cannot reconcile") && last.contains("/v2/sync") && last.contains("bad"),
        "{last}"
    );
    assert!(matches!(
        h.sync("bad", SyncReason::Boot).await,
        SyncOutcome::Failed(_)
    ));
}
