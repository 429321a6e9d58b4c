//! create / start / stop / kill / restart / rm / wait / attach / resize on the fake runtime.

use std::pin::pin;

use futures::FutureExt;
use nix::sys::signal::Signal;

use super::{DEADLINE, Rig, req, with_spec};
use crate::container::{RestartPolicy, Status};
use crate::runtime::fake::Call;
use crate::runtime::{NetMode, Rootfs};
use crate::{CreateContainer, Engine, EngineError, WaitCondition};

#[tokio::test]
async fn create_writes_the_record_and_spawns_nothing() {
    let rig = Rig::new();
    let id = rig.create(req("web")).await;
    let c = rig.engine.container("web").expect("by name");
    assert_eq!(c.id(), id);
    assert_eq!(c.config.path, "/bin/app");
    assert_eq!(c.config.args, ["--flag"]);
    assert_eq!(rig.status(&id), Status::Created);
    assert!(c.dir.join("config.json").is_file());
    assert!(rig.fake.calls().is_empty(), "{:?}", rig.fake.calls());
}

#[tokio::test]
async fn start_spawns_the_spec_and_records_the_pid() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    let spawns = rig.fake.spawns(&id);
    assert_eq!(spawns.len(), 1);
    let spec = &spawns[0];
    assert_eq!(spec.argv, ["/bin/app", "--flag"]);
    assert_eq!(spec.hostname, id[..12]);
    assert_eq!(spec.rootfs, Rootfs::Host);
    assert_eq!(spec.net, NetMode::Isolated);
    assert_eq!(spec.bundle, rig.engine.container(&id).expect("c").dir);
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Running);
    assert_eq!(Some(st.pid), rig.fake.pid(&id));
    assert!(st.started_at.is_some());
}

#[tokio::test]
async fn starting_a_running_container_is_not_modified() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    let again = rig.engine.start(&id).await;
    assert!(
        matches!(again, Err(EngineError::NotModified(_))),
        "{again:?}"
    );
    assert_eq!(rig.fake.spawns(&id).len(), 1);
}

#[tokio::test]
async fn an_exit_records_the_code_and_releases_the_pid() {
    let rig = Rig::new();
    let id = rig.run(req("job")).await;
    assert!(rig.fake.exit(&id, 3));
    rig.wait_status(&id, Status::Exited).await;
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!((st.exit_code, st.pid, st.restart_count), (3, 0, 0));
    assert!(st.finished_at.is_some());
    assert_eq!(rig.fake.spawns(&id).len(), 1);
}

#[tokio::test]
async fn stop_sends_sigterm_and_returns_once_exited() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    rig.engine.stop(&id, Some(10), None).await.expect("stop");
    assert_eq!(rig.fake.signals(&id), [Signal::SIGTERM]);
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Exited);
    assert_eq!(st.exit_code, 143);
    assert!(st.manually_stopped);
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let rig = Rig::new();
    rig.fake.ignore(Signal::SIGTERM);
    let id = rig.run(req("stubborn")).await;
    rig.engine.stop(&id, Some(0), None).await.expect("stop");
    assert_eq!(rig.fake.signals(&id), [Signal::SIGTERM, Signal::SIGKILL]);
    assert_eq!(rig.engine.container(&id).expect("c").state().exit_code, 137);
}

#[tokio::test]
async fn stop_uses_the_requested_signal() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    rig.engine
        .stop(&id, Some(10), Some(Signal::SIGINT))
        .await
        .expect("stop");
    assert_eq!(rig.fake.signals(&id), [Signal::SIGINT]);
    assert_eq!(rig.engine.container(&id).expect("c").state().exit_code, 130);
}

#[tokio::test]
async fn stopping_a_stopped_container_is_not_modified_and_signals_nothing() {
    let rig = Rig::new();
    let id = rig.create(req("idle")).await;
    let r = rig.engine.stop(&id, None, None).await;
    assert!(matches!(r, Err(EngineError::NotModified(_))), "{r:?}");
    assert!(rig.fake.calls().is_empty());
}

#[tokio::test]
async fn kill_defaults_to_sigkill_and_counts_as_a_manual_stop() {
    let rig = Rig::new();
    let id = rig.run(with_always("k")).await;
    rig.engine.kill(&id, None).await.expect("kill");
    rig.wait_status(&id, Status::Exited).await;
    assert_eq!(rig.fake.signals(&id), [Signal::SIGKILL]);
    let st = rig.engine.container(&id).expect("c").state();
    assert!(st.manually_stopped);
    assert_eq!(st.exit_code, 137);
    // `always` does not bring back a container the user killed.
    assert_eq!(rig.fake.spawns(&id).len(), 1);
}

#[tokio::test]
async fn kill_returns_once_the_container_no_longer_runs() {
    let rig = Rig::new();
    let id = rig.run(req("k")).await;
    rig.engine.kill(&id, None).await.expect("kill");
    // No waiting here: the exit is recorded before kill returns, as with Docker.
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!((st.status, st.exit_code, st.pid), (Status::Exited, 137, 0));
    assert_eq!(rig.fake.running(), 0);
}

#[tokio::test]
async fn force_remove_returns_once_the_container_no_longer_runs() {
    let rig = Rig::new();
    let id = rig.run(req("r")).await;
    rig.engine.remove(&id, true).await.expect("rm -f");
    assert_eq!(rig.fake.running(), 0);
    assert!(rig.engine.container(&id).is_err());
}

fn with_always(name: &str) -> CreateContainer {
    super::with_policy(name, RestartPolicy::Always)
}

#[tokio::test]
async fn kill_with_a_harmless_signal_leaves_it_running() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    rig.engine
        .kill(&id, Some(Signal::SIGUSR1))
        .await
        .expect("kill");
    assert_eq!(rig.fake.signals(&id), [Signal::SIGUSR1]);
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Running);
    assert!(!st.manually_stopped);
}

#[tokio::test]
async fn kill_of_a_stopped_container_is_a_conflict() {
    let rig = Rig::new();
    let id = rig.create(req("idle")).await;
    let r = rig.engine.kill(&id, None).await;
    assert!(matches!(r, Err(EngineError::Conflict(_))), "{r:?}");
    assert!(rig.fake.calls().is_empty());
}

#[tokio::test]
async fn restart_stops_then_spawns_again() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    let first = rig.fake.pid(&id).expect("pid");
    rig.engine.restart(&id, Some(10)).await.expect("restart");
    assert_eq!(rig.fake.signals(&id), [Signal::SIGTERM]);
    assert_eq!(rig.fake.spawns(&id).len(), 2);
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Running);
    assert_ne!(Some(first), rig.fake.pid(&id));
    assert_eq!(Some(st.pid), rig.fake.pid(&id));
    // A user (re)start resets the manual-stop flag.
    assert!(!st.manually_stopped);
}

#[tokio::test]
async fn remove_cleans_the_bundle_and_frees_the_name() {
    let rig = Rig::new();
    let id = rig.create(req("web")).await;
    let dir = rig.engine.container(&id).expect("c").dir.clone();
    rig.engine.remove(&id, false).await.expect("rm");
    assert_eq!(
        rig.fake.calls(),
        [Call::Cleanup(dir.clone()), Call::RemoveCgroup(id.clone())]
    );
    assert!(!dir.exists());
    assert!(matches!(
        rig.engine.container(&id),
        Err(EngineError::NoSuchContainer(_))
    ));
    rig.create(req("web")).await;
}

/// `removing` is not recorded: a removal cut short (here its file removal fails; a crash
/// does the same) leaves the container as last recorded, exited with its own code, and the next
/// engine on the root lists it so and removes it.
#[tokio::test]
async fn a_removal_cut_short_leaves_the_recorded_exit() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    assert!(rig.fake.exit(&id, 3));
    rig.wait_status(&id, Status::Exited).await;
    rig.fake.fail_next_cleanup();
    let r = rig.engine.remove(&id, false).await;
    assert!(r.is_err(), "{r:?}");
    let next = Engine::open_with(&rig.dir.path().join("root"), rig.fake.clone(), None)
        .expect("reopen engine");
    let c = next
        .container(&id)
        .expect("still listed after the cut removal");
    let st = c.state();
    assert_eq!((st.status, st.exit_code), (Status::Exited, 3), "{st:?}");
    assert!(st.error.is_empty(), "{st:?}");
    next.remove(&id, false).await.expect("rm again");
    assert!(!c.dir.exists());
}

#[tokio::test]
async fn remove_of_a_running_container_needs_force() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    let r = rig.engine.remove(&id, false).await;
    assert!(matches!(r, Err(EngineError::Conflict(_))), "{r:?}");
    assert!(rig.fake.signals(&id).is_empty());
    assert_eq!(rig.status(&id), Status::Running);
}

#[tokio::test]
async fn forced_remove_kills_first_then_cleans_up() {
    let rig = Rig::new();
    let id = rig.run(req("web")).await;
    let dir = rig.engine.container(&id).expect("c").dir.clone();
    rig.engine.remove(&id, true).await.expect("rm -f");
    let calls = rig.fake.calls();
    let kill = calls.iter().position(|c| {
        matches!(
            c,
            Call::Signal {
                signal: Signal::SIGKILL,
                ..
            }
        )
    });
    let clean = calls.iter().position(|c| *c == Call::Cleanup(dir.clone()));
    assert!(
        matches!((kill, clean), (Some(k), Some(c)) if k < c),
        "{calls:?}"
    );
    assert_eq!(rig.fake.running(), 0);
}

#[tokio::test]
async fn a_failed_spawn_is_recorded_and_the_next_start_works() {
    let rig = Rig::new();
    let id = rig.create(req("web")).await;
    rig.fake.fail_next_spawn("no such binary");
    let r = rig.engine.start(&id).await;
    assert!(matches!(r, Err(EngineError::Runtime(_))), "{r:?}");
    let st = rig.engine.container(&id).expect("c").state();
    assert_eq!(st.status, Status::Created);
    assert_eq!(st.exit_code, 127);
    assert!(st.error.contains("no such binary"), "{}", st.error);
    rig.engine.start(&id).await.expect("second start");
    assert_eq!(rig.fake.spawns(&id).len(), 2);
    assert_eq!(rig.status(&id), Status::Running);
    assert!(
        rig.engine
            .container(&id)
            .expect("c")
            .state()
            .error
            .is_empty()
    );
}

#[tokio::test]
async fn a_taken_name_is_a_conflict_and_leaves_no_directory() {
    let rig = Rig::new();
    rig.create(req("web")).await;
    let before = std::fs::read_dir(rig.engine.containers_dir.clone())
        .expect("dir")
        .count();
    let r = rig.engine.create(req("web")).await;
    assert!(matches!(r, Err(EngineError::Conflict(_))), "{r:?}");
    let after = std::fs::read_dir(rig.engine.containers_dir.clone())
        .expect("dir")
        .count();
    assert_eq!(before, after);
}

#[tokio::test]
async fn wait_not_running_resolves_with_the_exit_code() {
    let rig = Rig::new();
    let id = rig.run(req("job")).await;
    let mut done = pin!(
        rig.engine
            .wait(&id, WaitCondition::NotRunning)
            .expect("wait")
    );
    assert!(
        done.as_mut().now_or_never().is_none(),
        "resolved while running"
    );
    rig.fake.exit(&id, 7);
    assert_eq!(tokio::time::timeout(DEADLINE, done).await.ok(), Some(7));
}

#[tokio::test]
async fn wait_next_exit_on_a_stopped_container_waits_for_the_next_run() {
    let rig = Rig::new();
    let id = rig.run(req("job")).await;
    rig.fake.exit(&id, 1);
    rig.wait_status(&id, Status::Exited).await;
    let mut next = pin!(rig.engine.wait(&id, WaitCondition::NextExit).expect("wait"));
    let not_running = rig
        .engine
        .wait(&id, WaitCondition::NotRunning)
        .expect("wait");
    assert_eq!(not_running.now_or_never(), Some(1));
    assert!(next.as_mut().now_or_never().is_none());
    rig.engine.start(&id).await.expect("start");
    rig.fake.exit(&id, 4);
    assert_eq!(tokio::time::timeout(DEADLINE, next).await.ok(), Some(4));
}

/// `--device` and `--device-cgroup-rule` reach the cgroup as rules after Docker's defaults
/// (the device's from its host node and permissions); bad ones are refused at create.
#[tokio::test]
async fn device_rules_reach_the_cgroup_and_bad_ones_are_refused_at_create() {
    let rig = Rig::new();
    let mut r = req("dev");
    r.spec.security.devices = vec![crate::devices::DeviceMapping {
        path_on_host: "/dev/zero".into(),
        path_in_container: "/dev/z".into(),
        cgroup_permissions: "r".into(),
    }];
    r.spec.security.device_cgroup_rules = vec!["c 1:11 r".into()];
    let id = rig.run(r).await;
    let calls = rig.fake.calls();
    assert!(
        calls.iter().any(
            |c| matches!(c, Call::CreateCgroup { id: i, device_rules, .. }
            if *i == id && *device_rules == ["c 1:5 r", "c 1:11 r"])
        ),
        "{calls:?}"
    );
    let mut bad = req("bad-rule");
    bad.spec.security.device_cgroup_rules = vec!["c 1:11".into()];
    let e = rig.engine.create(bad).await;
    assert!(
        matches!(&e, Err(EngineError::Invalid(m)) if m.contains("\"c 1:11\"")),
        "{e:?}"
    );
    let mut bad = req("bad-device");
    bad.spec.security.devices = vec![crate::devices::DeviceMapping {
        path_on_host: "/dev/berth-no-such-device".into(),
        ..Default::default()
    }];
    let e = rig.engine.create(bad).await;
    assert!(
        matches!(&e, Err(EngineError::Invalid(m)) if m.contains("/dev/berth-no-such-device")),
        "{e:?}"
    );
}

#[tokio::test]
async fn wait_removed_resolves_on_rm_and_bad_conditions_are_refused() {
    let rig = Rig::new();
    let id = rig.create(req("web")).await;
    let mut gone = pin!(rig.engine.wait(&id, WaitCondition::Removed).expect("wait"));
    assert!(gone.as_mut().now_or_never().is_none());
    rig.engine.remove(&id, false).await.expect("rm");
    assert!(tokio::time::timeout(DEADLINE, gone).await.is_ok());
    let bad = "sometime".parse::<WaitCondition>();
    assert!(matches!(bad, Err(EngineError::Invalid(_))), "{bad:?}");
}

#[tokio::test]
async fn attach_streams_output_and_forwards_stdin() {
    let rig = Rig::new();
    let id = rig
        .create(with_spec(req("shell"), |s| s.open_stdin = true))
        .await;
    let mut attached = rig.engine.attach(&id, true).expect("attach");
    rig.engine.start(&id).await.expect("start");
    assert!(rig.fake.write_stdout(&id, b"hello\n", false));
    let chunk = tokio::time::timeout(DEADLINE, attached.output.recv())
        .await
        .expect("output in time")
        .expect("chunk");
    assert!(format!("{chunk:?}").contains("hello"), "{chunk:?}");
    let stdin = attached.stdin.clone().expect("stdin");
    stdin
        .send(bytes::Bytes::from_static(b"ls\n"))
        .await
        .expect("send");
    let fake = rig.fake.clone();
    let id2 = id.clone();
    let got = tokio::time::timeout(DEADLINE, async move {
        while fake.stdin(&id2) != b"ls\n" {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(got.is_ok(), "stdin never reached the process");
}

#[tokio::test]
async fn resize_of_a_tty_container_goes_to_the_runtime() {
    let rig = Rig::new();
    let id = rig.run(with_spec(req("tty"), |s| s.tty = true)).await;
    rig.engine.resize(&id, 40, 120).expect("resize");
    assert!(
        rig.fake.calls().contains(&Call::Resize {
            rows: 40,
            cols: 120
        }),
        "{:?}",
        rig.fake.calls()
    );
    // Without a tty there is no pty: nothing reaches the runtime.
    let plain = rig.run(req("plain")).await;
    let before = rig.fake.calls().len();
    rig.engine.resize(&plain, 10, 10).expect("resize");
    assert_eq!(rig.fake.calls().len(), before);
}

#[tokio::test]
async fn logs_hold_what_the_process_wrote() {
    let rig = Rig::new();
    let id = rig.run(req("chatty")).await;
    assert!(rig.fake.write_stdout(&id, b"out line\n", false));
    assert!(rig.fake.write_stdout(&id, b"err line\n", true));
    rig.fake.exit(&id, 0);
    rig.wait_status(&id, Status::Exited).await;
    let (tty, mut rx) = rig
        .engine
        .logs(
            &id,
            crate::logs::LogOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .expect("logs");
    assert!(!tty);
    let mut all = String::new();
    while let Ok(Some(e)) = tokio::time::timeout(DEADLINE, rx.recv()).await {
        all.push_str(&format!("{e:?}"));
    }
    assert!(
        all.contains("out line") && all.contains("err line"),
        "{all}"
    );
}

#[tokio::test]
async fn shutdown_stops_running_containers_and_keeps_their_policy_intent() {
    let rig = Rig::new();
    let a = rig.run(with_always("a")).await;
    let idle = rig.create(req("idle")).await;
    rig.engine.shutdown().await;
    assert_eq!(rig.fake.signals(&a), [Signal::SIGTERM]);
    let st = rig.engine.container(&a).expect("c").state();
    assert_eq!(st.status, Status::Exited);
    // A daemon stop is not a user stop: `always` comes back at the next boot.
    assert!(!st.manually_stopped);
    assert!(rig.fake.signals(&idle).is_empty());
}

#[tokio::test]
async fn start_creates_the_cgroup_through_the_runtime_with_the_privileged_flag() {
    let rig = Rig::new();
    let resources = crate::limits::Resources {
        memory: 64 << 20,
        pids_limit: 10,
        ..Default::default()
    };
    for privileged in [false, true] {
        let mut r = req(if privileged { "priv" } else { "plain" });
        r.spec.resources = resources.clone();
        r.spec.security.privileged = privileged;
        let id = rig.run(r).await;
        let calls = rig.fake.calls();
        let create = calls
            .iter()
            .position(|c| {
                *c == Call::CreateCgroup {
                    id: id.clone(),
                    resources: resources.clone(),
                    privileged,
                    device_rules: Vec::new(),
                }
            })
            .unwrap_or_else(|| panic!("no CreateCgroup for {id}: {calls:?}"));
        let spawn = calls
            .iter()
            .position(|c| matches!(c, Call::Spawn(s) if s.id == id))
            .expect("spawn");
        assert!(create < spawn, "{calls:?}");
        assert!(rig.fake.exit(&id, 0));
        assert!(
            rig.fake
                .wait_for(DEADLINE, |c| c.contains(&Call::CgroupExited(id.clone())))
                .await,
            "no CgroupExited for {id}"
        );
    }
}
