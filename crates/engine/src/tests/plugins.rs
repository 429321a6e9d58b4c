//! Volume plugins around the lifecycle: the hook calls in order, rollback when a plugin (or a
//! later step) fails half-way, and exits while a plugin call is in flight. The plugins are real
//! ones served in-process on UNIX sockets (see [`VolumePlugin`]).

use std::sync::Arc;

use berth_plugin_sdk::protocol::mvp::VolumeEvent;
use nix::sys::signal::Signal;
use tokio::sync::Semaphore;

use super::{Behave, DEADLINE, Log, Rig, VolumePlugin, entries, req, with_spec};
use crate::container::{MountSpec, RestartPolicy, Status};
use crate::{CreateContainer, EngineError};

/// Two plugins (`p1` loaded first) and a rig that uses them.
async fn two_plugins() -> (Rig, VolumePlugin, VolumePlugin, Log) {
    let dir = tempfile::tempdir().expect("dir");
    let log = Log::default();
    let p1 = VolumePlugin::serve(dir.path(), "p1", &log).await;
    let p2 = VolumePlugin::serve(dir.path(), "p2", &log).await;
    let rig = Rig::with_plugins(dir, &[&p1, &p2]).await;
    (rig, p1, p2, log)
}

fn with_bind(rig: &Rig, name: &str) -> (CreateContainer, String) {
    let src = rig.source(name);
    // As the API layer hands a `-v SRC:/data` over: the raw bind and its parsed mount.
    let req = with_spec(req(name), |s| {
        s.binds = vec![format!("{src}:/data")];
        s.mounts = vec![MountSpec::bind(src.clone(), "/data", false)];
    });
    (req, src)
}

/// Waits until the plugins' log has `n` entries (bounded).
async fn wait_log(log: &Log, n: usize) {
    let ok = tokio::time::timeout(DEADLINE, async {
        while entries(log).len() < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "log stuck at {:?}", entries(log));
}

#[tokio::test]
async fn a_run_calls_the_hooks_in_load_order_and_the_after_ones_in_reverse() {
    let (rig, _p1, _p2, log) = two_plugins().await;
    let (req, src) = with_bind(&rig, "web");
    let id = rig.run(req).await;
    rig.fake.exit(&id, 0);
    rig.wait_status(&id, Status::Exited).await;
    rig.engine.remove(&id, false).await.expect("rm");
    assert_eq!(
        entries(&log),
        [
            format!("p1:create:{src}"),
            format!("p2:create:{src}"),
            format!("p1:start:{src}"),
            format!("p2:start:{src}"),
            format!("p2:stop:{src}"),
            format!("p1:stop:{src}"),
            format!("p2:remove:{src}"),
            format!("p1:remove:{src}"),
        ]
    );
    let spec = &rig.fake.spawns(&id)[0];
    // The volume's bind, then the /etc files every container gets.
    let targets: Vec<&str> = spec.mounts.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/data", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    );
    assert_eq!(spec.mounts[0].source.display().to_string(), src);
}

#[tokio::test]
async fn a_create_hook_failing_half_way_is_compensated_and_leaves_nothing() {
    let (rig, _p1, p2, log) = two_plugins().await;
    p2.on(VolumeEvent::Create, Behave::Fail("quota exceeded"));
    let (req, src) = with_bind(&rig, "web");
    let r = rig.engine.create(req).await;
    assert!(
        matches!(&r, Err(e) if e.to_string().contains("quota exceeded")),
        "{r:?}"
    );
    assert_eq!(
        entries(&log),
        [
            format!("p1:create:{src}"),
            format!("p2:create:{src}"),
            format!("p1:stop:{src}"),
        ]
    );
    assert!(rig.engine.container("web").is_err());
    let left = std::fs::read_dir(&rig.engine.containers_dir)
        .expect("dir")
        .count();
    assert_eq!(left, 0);
    assert!(rig.fake.calls().is_empty());
}

#[tokio::test]
async fn a_start_hook_failing_half_way_is_compensated_and_spawns_nothing() {
    let (rig, _p1, p2, log) = two_plugins().await;
    let (req, src) = with_bind(&rig, "web");
    let id = rig.create(req).await;
    p2.on(VolumeEvent::Start, Behave::Fail("backend down"));
    let r = rig.engine.start(&id).await;
    assert!(r.is_err());
    assert_eq!(
        entries(&log)[2..],
        [
            format!("p1:start:{src}"),
            format!("p2:start:{src}"),
            format!("p1:stop:{src}"),
        ]
    );
    // Nothing is spawned, and the cgroup made beside the hooks is given back.
    let calls = rig.fake.calls();
    assert!(
        matches!(
            calls.as_slice(),
            [crate::runtime::fake::Call::CreateCgroup { id: made, .. },
             crate::runtime::fake::Call::RemoveCgroup(removed)] if *made == id && *removed == id
        ),
        "{calls:?}"
    );
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!((st.status, st.exit_code), (Status::Created, 127));
    assert!(st.error.contains("backend down"), "{}", st.error);
}

#[tokio::test]
async fn a_failed_spawn_after_the_hooks_sends_stop_in_reverse_order() {
    let (rig, _p1, _p2, log) = two_plugins().await;
    let (req, src) = with_bind(&rig, "web");
    let id = rig.create(req).await;
    rig.fake.fail_next_spawn("exec format error");
    assert!(rig.engine.start(&id).await.is_err());
    assert_eq!(
        entries(&log)[2..],
        [
            format!("p1:start:{src}"),
            format!("p2:start:{src}"),
            format!("p2:stop:{src}"),
            format!("p1:stop:{src}"),
        ]
    );
    assert_eq!(rig.fake.spawns(&id).len(), 1);
    assert_eq!(rig.status(&id), Status::Created);
}

/// The compensation that was missing: the network `register` step fails after every volume
/// hook succeeded (here: the network was removed while the create hook was in flight), and the
/// plugins get their `stop`.
#[tokio::test]
async fn a_network_register_failure_after_the_volume_hooks_sends_stop() {
    let (rig, p1, _p2, log) = two_plugins().await;
    rig.engine.networks.register_driver(Arc::new(NopDriver));
    rig.engine
        .networks
        .create(berth_networks::CreateNetwork {
            name: "backend".into(),
            driver: "nop".into(),
            ipam_config: vec![("10.231.7.0/24".into(), None, None)],
            ..Default::default()
        })
        .await
        .expect("network");
    let gate = Arc::new(Semaphore::new(0));
    p1.on(VolumeEvent::Create, Behave::Block(gate.clone()));
    let (req, src) = with_bind(&rig, "web");
    let engine = rig.engine.clone();
    let create = tokio::spawn(async move {
        engine
            .create(with_spec(req, |s| s.network_mode = "backend".into()))
            .await
    });
    wait_log(&log, 1).await;
    rig.engine.networks.remove("backend").await.expect("rm net");
    gate.add_permits(1);
    let r = create.await.expect("join");
    assert!(matches!(r, Err(EngineError::Network(_))), "{r:?}");
    assert_eq!(
        entries(&log),
        [
            format!("p1:create:{src}"),
            format!("p2:create:{src}"),
            format!("p2:stop:{src}"),
            format!("p1:stop:{src}"),
        ]
    );
    assert!(rig.engine.container("web").is_err());
    let left = std::fs::read_dir(&rig.engine.containers_dir)
        .expect("dir")
        .count();
    assert_eq!(left, 0);
}

/// The process exits, and while the exit's `stop` hook is in flight a user `stop` arrives. The container reads as running until its mounts are
/// released, the hook runs once, and both the exit and the stop settle.
#[tokio::test]
async fn an_exit_while_the_stop_hook_is_in_flight_settles_once() {
    let (rig, p1, _p2, log) = two_plugins().await;
    let (req, src) = with_bind(&rig, "web");
    let id = rig.run(req).await;
    let gate = Arc::new(Semaphore::new(0));
    p1.on(VolumeEvent::Stop, Behave::Block(gate.clone()));
    rig.fake.exit(&id, 5);
    wait_log(&log, 6).await; // create×2, start×2, p2:stop, p1:stop (blocked)
    assert_eq!(rig.status(&id), Status::Running);
    let engine = rig.engine.clone();
    let id2 = id.clone();
    let stop = tokio::spawn(async move { engine.stop(&id2, Some(10), None).await });
    gate.add_permits(1);
    tokio::time::timeout(DEADLINE, stop)
        .await
        .expect("stop in time")
        .expect("join")
        .expect("stop");
    assert_eq!(rig.status(&id), Status::Exited);
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.exit_code, 5);
    let stops = entries(&log)
        .iter()
        .filter(|e| e.ends_with(&format!(":stop:{src}")))
        .count();
    assert_eq!(stops, 2, "{:?}", entries(&log));
    assert_eq!(rig.fake.running(), 0);
}

/// An `always` container exits; its policy restart is stuck in a `start` hook when the user
/// stops it: the stop waits for the start to finish, then stops the new process.
#[tokio::test]
async fn a_stop_during_a_policy_restart_in_a_plugin_call_stops_the_new_run() {
    let (rig, p1, _p2, log) = two_plugins().await;
    let (req, _src) = with_bind(&rig, "svc");
    let id = rig
        .run(with_spec(req, |s| s.restart_policy = RestartPolicy::Always))
        .await;
    let gate = Arc::new(Semaphore::new(0));
    p1.on(VolumeEvent::Start, Behave::Block(gate.clone()));
    rig.fake.exit(&id, 1);
    wait_log(&log, 7).await; // …, p2:stop, p1:stop, p1:start (blocked)
    let engine = rig.engine.clone();
    let id2 = id.clone();
    let stop = tokio::spawn(async move { engine.stop(&id2, Some(10), None).await });
    gate.add_permits(1);
    tokio::time::timeout(DEADLINE, stop)
        .await
        .expect("stop in time")
        .expect("join")
        .expect("stop");
    assert_eq!(rig.fake.spawns(&id).len(), 2);
    assert_eq!(rig.fake.signals(&id), [Signal::SIGTERM]);
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Exited);
    assert!(st.manually_stopped);
    assert_eq!(rig.fake.running(), 0);
}

#[tokio::test]
async fn system_containers_bypass_the_volume_hooks() {
    let (rig, _p1, _p2, log) = two_plugins().await;
    let (req, _src) = with_bind(&rig, "agent");
    let id = rig.run(with_spec(req, |s| s.system = true)).await;
    rig.engine.remove(&id, true).await.expect("rm");
    assert!(entries(&log).is_empty(), "{:?}", entries(&log));
}

/// A network driver that wires nothing (the network exists only as a record).
struct NopDriver;

impl berth_networks::driver::NetworkDriver for NopDriver {
    fn name(&self) -> &str {
        "nop"
    }
    fn create_network<'a>(
        &'a self,
        _net: &'a berth_networks::Network,
    ) -> futures::future::BoxFuture<'a, Result<(), berth_networks::NetworkError>> {
        Box::pin(async { Ok(()) })
    }
    fn delete_network<'a>(
        &'a self,
        _net: &'a berth_networks::Network,
    ) -> futures::future::BoxFuture<'a, Result<(), berth_networks::NetworkError>> {
        Box::pin(async { Ok(()) })
    }
    fn join<'a>(
        &'a self,
        _net: &'a berth_networks::Network,
        _ep: &'a berth_networks::driver::EndpointInfo,
    ) -> futures::future::BoxFuture<
        'a,
        Result<berth_networks::driver::JoinInfo, berth_networks::NetworkError>,
    > {
        Box::pin(async {
            Err(berth_networks::NetworkError::UnknownDriver(
                "nop wires nothing".into(),
            ))
        })
    }
    fn leave<'a>(
        &'a self,
        _net: &'a berth_networks::Network,
        _ep: &'a berth_networks::driver::EndpointInfo,
    ) -> futures::future::BoxFuture<'a, Result<(), berth_networks::NetworkError>> {
        Box::pin(async { Ok(()) })
    }
}
