//! Concurrent operations on one container: the per-container operation lock serialises them,
//! whatever order they arrive in, and the end state is one of the orders' outcomes.

use nix::sys::signal::Signal;

use super::{Rig, req};
use crate::EngineError;
use crate::container::Status;
use crate::runtime::fake::Call;

#[tokio::test]
async fn start_and_stop_at_once_end_in_one_consistent_state() {
    for _ in 0..20 {
        let rig = Rig::new();
        let id = rig.create(req("web")).await;
        let (e1, e2) = (rig.engine.clone(), rig.engine.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let (started, stopped) = tokio::join!(
            tokio::spawn(async move { e1.start(&i1).await }),
            tokio::spawn(async move { e2.stop(&i2, Some(10), None).await }),
        );
        started.expect("join").expect("start");
        let st = rig.engine.container(&id).expect("c").state();
        match stopped.expect("join") {
            // stop ran first (nothing to stop), then start.
            Err(EngineError::NotModified(_)) => {
                assert_eq!(st.status, Status::Running);
                assert!(rig.fake.signals(&id).is_empty());
                assert_eq!(Some(st.pid), rig.fake.pid(&id));
            }
            // start ran first, then stop.
            Ok(()) => {
                assert_eq!(st.status, Status::Exited);
                assert_eq!(rig.fake.signals(&id), [Signal::SIGTERM]);
                assert_eq!(rig.fake.running(), 0);
            }
            Err(e) => panic!("stop failed: {e}"),
        }
        assert_eq!(rig.fake.spawns(&id).len(), 1);
    }
}

#[tokio::test]
async fn two_starts_at_once_spawn_once() {
    let rig = Rig::new();
    let id = rig.create(req("web")).await;
    let (e1, e2) = (rig.engine.clone(), rig.engine.clone());
    let (i1, i2) = (id.clone(), id.clone());
    let (a, b) = tokio::join!(
        tokio::spawn(async move { e1.start(&i1).await }),
        tokio::spawn(async move { e2.start(&i2).await }),
    );
    let results = [a.expect("join"), b.expect("join")];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(EngineError::NotModified(_))))
    );
    assert_eq!(rig.fake.spawns(&id).len(), 1);
}

#[tokio::test]
async fn two_removes_at_once_both_succeed_and_clean_up_once() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    let (e1, e2) = (rig.engine.clone(), rig.engine.clone());
    let (i1, i2) = (id.clone(), id.clone());
    let (a, b) = tokio::join!(
        tokio::spawn(async move { e1.remove(&i1, true).await }),
        tokio::spawn(async move { e2.remove(&i2, true).await }),
    );
    // The second either found the container and saw it removed, or found it gone.
    let results = [a.expect("join"), b.expect("join")];
    assert!(results.iter().any(|r| r.is_ok()), "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(EngineError::NoSuchContainer(_)))),
        "{results:?}"
    );
    let cleanups = rig
        .fake
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Cleanup(_)))
        .count();
    assert_eq!(cleanups, 1);
    assert_eq!(rig.fake.signals(&id), [Signal::SIGKILL]);
    assert!(rig.engine.container(&id).is_err());
}

#[tokio::test]
async fn stop_and_forced_remove_at_once_leave_nothing_running() {
    let rig = Rig::new();
    rig.fake.ignore(Signal::SIGTERM);
    let id = rig.run(req("web")).await;
    let (e1, e2) = (rig.engine.clone(), rig.engine.clone());
    let (i1, i2) = (id.clone(), id.clone());
    let (stopped, removed) = tokio::join!(
        tokio::spawn(async move { e1.stop(&i1, Some(0), None).await }),
        tokio::spawn(async move { e2.remove(&i2, true).await }),
    );
    removed.expect("join").expect("rm -f");
    match stopped.expect("join") {
        Ok(()) | Err(EngineError::NoSuchContainer(_)) | Err(EngineError::NotModified(_)) => {}
        Err(e) => panic!("stop failed: {e}"),
    }
    assert_eq!(rig.fake.running(), 0);
    assert!(rig.engine.container(&id).is_err());
    assert!(rig.fake.signals(&id).contains(&Signal::SIGKILL));
}
