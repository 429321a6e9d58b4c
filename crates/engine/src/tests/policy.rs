//! Restart policies (no, always, unless-stopped, on-failure with a retry limit), boot-time
//! restarts and auto-remove, on the fake runtime.

use nix::sys::signal::Signal;

use super::{DEADLINE, Rig, req, with_policy, with_spec};
use crate::container::{RestartPolicy, Status};
use crate::runtime::fake::Call;
use crate::{Engine, EngineError};

#[tokio::test]
async fn policy_no_leaves_an_exited_container_alone() {
    let rig = Rig::new();
    let id = rig.run(with_policy("once", RestartPolicy::No)).await;
    rig.fake.exit(&id, 1);
    rig.wait_status(&id, Status::Exited).await;
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!((st.exit_code, st.restart_count), (1, 0));
    assert_eq!(rig.fake.spawns(&id).len(), 1);
}

#[tokio::test]
async fn policy_always_restarts_after_any_exit() {
    let rig = Rig::new();
    let id = rig.run(with_policy("svc", RestartPolicy::Always)).await;
    rig.fake.exit(&id, 0);
    rig.wait_spawns(&id, 2).await;
    rig.wait_status(&id, Status::Running).await;
    assert_eq!(
        rig.engine.container(&id).expect("c").state().restart_count,
        1
    );
    rig.fake.exit(&id, 2);
    rig.wait_spawns(&id, 3).await;
    rig.wait_status(&id, Status::Running).await;
    assert_eq!(
        rig.engine.container(&id).expect("c").state().restart_count,
        2
    );
    // Every run got the same spec.
    let specs = rig.fake.spawns(&id);
    assert!(specs.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn policy_always_does_not_restart_after_a_user_stop() {
    let rig = Rig::new();
    let id = rig.run(with_policy("svc", RestartPolicy::Always)).await;
    rig.engine.stop(&id, Some(10), None).await.expect("stop");
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Exited);
    assert!(st.manually_stopped);
    assert_eq!(rig.fake.spawns(&id).len(), 1);
}

#[tokio::test]
async fn stop_during_the_restart_back_off_ends_in_exited() {
    let rig = Rig::new();
    let id = rig.run(with_policy("svc", RestartPolicy::Always)).await;
    rig.fake.exit(&id, 1);
    rig.wait_status(&id, Status::Restarting).await;
    rig.engine.stop(&id, Some(10), None).await.expect("stop");
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Exited);
    assert!(st.manually_stopped);
    // Nothing was running: no signal was sent.
    assert!(rig.fake.signals(&id).is_empty());
}

#[tokio::test]
async fn policy_on_failure_retries_up_to_its_limit() {
    let rig = Rig::new();
    rig.fake.exit_on_spawn(Some(1));
    let id = rig
        .create(with_policy(
            "flaky",
            RestartPolicy::OnFailure { max_retries: 2 },
        ))
        .await;
    rig.engine.start(&id).await.expect("start");
    // The first run and two retries, then it stays down.
    rig.wait_spawns(&id, 3).await;
    let c = rig.engine.container(&id).expect("c");
    let mut rx = c.observed.subscribe();
    let settled = tokio::time::timeout(
        DEADLINE,
        rx.wait_for(|o| o.exits == 3 && o.status == Status::Exited),
    )
    .await;
    assert!(settled.is_ok(), "{:?}", c.state());
    let st = c.state();
    assert_eq!((st.restart_count, st.exit_code), (2, 1));
    assert_eq!(rig.fake.spawns(&id).len(), 3);
}

#[tokio::test]
async fn policy_on_failure_does_not_restart_a_clean_exit() {
    let rig = Rig::new();
    let id = rig
        .run(with_policy(
            "job",
            RestartPolicy::OnFailure { max_retries: 0 },
        ))
        .await;
    rig.fake.exit(&id, 0);
    rig.wait_status(&id, Status::Exited).await;
    assert_eq!(rig.fake.spawns(&id).len(), 1);
    assert_eq!(
        rig.engine.container(&id).expect("c").state().restart_count,
        0
    );
}

#[tokio::test]
async fn policy_unless_stopped_restarts_until_a_user_stop() {
    let rig = Rig::new();
    let id = rig
        .run(with_policy("svc", RestartPolicy::UnlessStopped))
        .await;
    rig.fake.exit(&id, 9);
    rig.wait_spawns(&id, 2).await;
    rig.wait_status(&id, Status::Running).await;
    rig.engine.stop(&id, Some(10), None).await.expect("stop");
    assert!(
        rig.engine
            .container(&id)
            .expect("c")
            .state()
            .manually_stopped
    );
    assert_eq!(rig.fake.spawns(&id).len(), 2);
}

/// Boot: containers the previous engine left running come back per policy; a user stop is
/// remembered (`unless-stopped`), `on-failure` restarts only what the engine's death interrupted.
#[tokio::test]
async fn boot_restarts_per_policy() {
    let rig = Rig::new();
    let always = rig.run(with_policy("always", RestartPolicy::Always)).await;
    let unless = rig
        .run(with_policy("unless", RestartPolicy::UnlessStopped))
        .await;
    let stopped = rig
        .run(with_policy("stopped", RestartPolicy::UnlessStopped))
        .await;
    let failing = rig
        .run(with_policy(
            "failing",
            RestartPolicy::OnFailure { max_retries: 0 },
        ))
        .await;
    let never = rig.run(with_policy("never", RestartPolicy::No)).await;
    rig.engine
        .stop(&stopped, Some(10), None)
        .await
        .expect("stop");
    // The engine "dies" with four containers running: a new engine opens the same root.
    let root = rig.engine.root().to_owned();
    let fake = crate::runtime::fake::FakeRuntime::new();
    let engine = Engine::open_with(&root, fake.clone(), None).expect("reopen");
    for id in [&always, &unless, &failing, &never] {
        let st = engine.container(id).expect("c").state();
        assert_eq!((st.status, st.exit_code, st.pid), (Status::Exited, 137, 0));
    }
    engine.start_restart_policy_containers().await;
    let spawned: Vec<String> = fake
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::Spawn(s) => Some(s.id.clone()),
            _ => None,
        })
        .collect();
    for id in [&always, &unless, &failing] {
        assert!(spawned.contains(id), "{id} not restarted: {spawned:?}");
        assert_eq!(
            engine.container(id).expect("c").state().status,
            Status::Running
        );
    }
    for id in [&stopped, &never] {
        assert!(!spawned.contains(id), "{id} restarted: {spawned:?}");
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn auto_remove_removes_after_the_exit() {
    let rig = Rig::new();
    let id = rig
        .run(with_spec(req("tmp"), |s| s.auto_remove = true))
        .await;
    let dir = rig.engine.container(&id).expect("c").dir.clone();
    rig.fake.exit(&id, 0);
    rig.wait_removed(&id).await;
    assert!(rig.fake.calls().contains(&Call::Cleanup(dir.clone())));
    assert!(!dir.exists());
    assert!(rig.engine.container(&id).is_err());
}

#[tokio::test]
async fn auto_remove_removes_after_a_failed_start() {
    let rig = Rig::new();
    let id = rig
        .create(with_spec(req("tmp"), |s| s.auto_remove = true))
        .await;
    rig.fake.fail_next_spawn("exec format error");
    let r = rig.engine.start(&id).await;
    assert!(matches!(r, Err(EngineError::Runtime(_))), "{r:?}");
    // `docker run --rm` waits for `removed` even when the start failed.
    assert!(rig.engine.container(&id).is_err());
}

#[tokio::test]
async fn auto_remove_with_a_restart_policy_is_refused() {
    let rig = Rig::new();
    let r = rig
        .engine
        .create(with_spec(with_policy("x", RestartPolicy::Always), |s| {
            s.auto_remove = true
        }))
        .await;
    assert!(matches!(r, Err(EngineError::Invalid(_))), "{r:?}");
    assert!(rig.engine.container("x").is_err());
}

#[tokio::test]
async fn a_killed_container_without_auto_remove_stays() {
    let rig = Rig::new();
    let id = rig.run(req("plain")).await;
    rig.engine
        .kill(&id, Some(Signal::SIGTERM))
        .await
        .expect("kill");
    rig.wait_status(&id, Status::Exited).await;
    assert!(rig.engine.container(&id).is_ok());
    assert_eq!(rig.engine.container(&id).expect("c").state().exit_code, 143);
}
