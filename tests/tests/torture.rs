//! kill -9 torture: a mixed workload (restart=always containers on local volumes, volume and
//! network create/remove) runs while the daemon is SIGKILLed at a random point; the daemon is
//! restarted each round and checked: every object whose creation the client saw succeed, and
//! whose removal it did not see succeed, exists and works (containers running again); an object
//! whose request was cut by the kill either exists and works or does not exist; `berth system
//! check` finds no temporary file, quarantined record or orphan; at the end, after a graceful
//! stop, no mount under the root is left.
//!
//! Rounds: `BERTH_TORTURE_ROUNDS` (default 20, the CI run); `cargo xtask torture --rounds N` runs
//! long ones. The seed is printed (`BERTH_TORTURE_SEED` replays one).
//!
//! Needs root (the daemon makes namespaces and mounts); CI runs it as root.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_tests::{Daemon, berth_binary, poll_until, raw_request, run_command};
use serde_json::json;

/// A tiny xorshift generator: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default, Debug)]
struct Model {
    /// Objects the client saw created and not seen removed: ("volume"|"network"|"container", name).
    sure: BTreeSet<(&'static str, String)>,
    /// Objects whose create or remove was cut by the kill: may or may not exist.
    unsure: BTreeSet<(&'static str, String)>,
}

fn request(sock: &Path, method: &str, path: &str, body: Option<serde_json::Value>) -> Option<u16> {
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let ct = (!bytes.is_empty()).then_some("application/json");
    raw_request(sock, method, path, ct, &bytes)
        .ok()
        .map(|r| r.status)
}

/// One op; returns false once the daemon is gone.
fn one_op(sock: &Path, rng: &mut Rng, n: &mut u64, model: &Mutex<Model>) -> bool {
    *n += 1;
    let pick = |kind: &'static str, rng: &mut Rng| -> Option<String> {
        let m = model.lock().unwrap();
        let names: Vec<_> = m
            .sure
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect();
        (!names.is_empty()).then(|| names[rng.below(names.len() as u64) as usize].clone())
    };
    let (kind, name, create, status): (&'static str, String, bool, Option<u16>) = match rng.below(6)
    {
        0 | 1 => {
            let name = format!("v{n}");
            model
                .lock()
                .unwrap()
                .unsure
                .insert(("volume", name.clone()));
            let s = request(
                sock,
                "POST",
                "/v1.50/volumes/create",
                Some(json!({"Name": name})),
            );
            ("volume", name, true, s)
        }
        2 => {
            let name = format!("n{n}");
            model
                .lock()
                .unwrap()
                .unsure
                .insert(("network", name.clone()));
            let s = request(
                sock,
                "POST",
                "/v1.50/networks/create",
                Some(json!({"Name": name})),
            );
            ("network", name, true, s)
        }
        3 => {
            let name = format!("c{n}");
            let vol = format!("cv{n}");
            model
                .lock()
                .unwrap()
                .unsure
                .insert(("container", name.clone()));
            let s = request(
                sock,
                "POST",
                &format!("/v1.50/containers/create?name={name}"),
                Some(json!({
                    "Image": "bb", "Cmd": ["sleep", "100000"],
                    "HostConfig": {"RestartPolicy": {"Name": "always"}, "Binds": [format!("{vol}:/data")]},
                })),
            );
            let s = match s {
                Some(201) => request(
                    sock,
                    "POST",
                    &format!("/v1.50/containers/{name}/start"),
                    None,
                ),
                other => other,
            };
            ("container", name, true, s)
        }
        4 => {
            let Some(name) = pick("volume", rng) else {
                return true;
            };
            model
                .lock()
                .unwrap()
                .unsure
                .insert(("volume", name.clone()));
            let s = request(sock, "DELETE", &format!("/v1.50/volumes/{name}"), None);
            ("volume", name, false, s)
        }
        _ => {
            let kind = if rng.below(2) == 0 {
                "network"
            } else {
                "container"
            };
            let Some(name) = pick(kind, rng) else {
                return true;
            };
            model.lock().unwrap().unsure.insert((kind, name.clone()));
            let path = if kind == "network" {
                format!("/v1.50/networks/{name}")
            } else {
                format!("/v1.50/containers/{name}?force=1")
            };
            (kind, name, false, request(sock, "DELETE", &path, None))
        }
    };
    let mut m = model.lock().unwrap();
    let key = (kind, name);
    let Some(status) = status else {
        // Cut by the kill: unsure (a removal may have happened).
        m.sure.remove(&key);
        return false;
    };
    m.unsure.remove(&key);
    let ok = (200..300).contains(&status);
    match (create, ok) {
        (true, true) => {
            m.sure.insert(key);
        }
        (false, true) => {
            m.sure.remove(&key);
        }
        // A create the daemon refused made nothing (checked below as "absent"); a refused
        // removal leaves the object.
        (true, false) => {
            m.unsure.insert(key);
        }
        (false, false) => {}
    }
    true
}

fn exists(d: &Daemon, kind: &str, name: &str) -> bool {
    let path = match kind {
        "volume" => format!("/v1.50/volumes/{name}"),
        "network" => format!("/v1.50/networks/{name}"),
        _ => format!("/v1.50/containers/{name}/json"),
    };
    let r = d.raw("GET", &path, None, b"");
    assert!(
        r.status == 200 || r.status == 404,
        "{kind} {name}: {} {}",
        r.status,
        r.text()
    );
    r.status == 200
}

fn running(d: &Daemon, name: &str) -> bool {
    let r = d.raw("GET", &format!("/v1.50/containers/{name}/json"), None, b"");
    r.status == 200 && r.json()["State"]["Running"] == true
}

fn system_check(root: &Path) -> (i32, String) {
    let mut cmd = Command::new(berth_binary());
    cmd.args(["system", "check", "--root"]).arg(root);
    let out = run_command(cmd, None, Duration::from_secs(30));
    (out.code.unwrap_or(-1), out.stdout.clone())
}

#[test]
fn kill9_at_random_points_loses_nothing_and_leaks_nothing() {
    let rounds: u64 = std::env::var("BERTH_TORTURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("BERTH_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| berth_tests::unix_now() | 1);
    eprintln!("torture: {rounds} rounds, seed {seed} (BERTH_TORTURE_SEED replays it)");
    let mut rng = Rng(seed);
    let mut d = Daemon::start();
    d.import_busybox("bb:latest");
    let model = Arc::new(Mutex::new(Model::default()));
    let mut n = 0u64;
    let root: PathBuf = d.root();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (sock, model, stop) = (d.socket(), model.clone(), stop.clone());
            let mut wrng = Rng(rng.next() | 1);
            let mut wn = n;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && one_op(&sock, &mut wrng, &mut wn, &model) {}
                wn
            })
        };
        // The kill point: a random moment of the workload (not an ordering sleep: any moment is
        // a valid one).
        std::thread::sleep(Duration::from_millis(50 + rng.below(600)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        n = worker.join().unwrap() + 1;
        d.restart();

        let (sure, unsure) = {
            let m = model.lock().unwrap();
            (m.sure.clone(), m.unsure.clone())
        };
        for (kind, name) in &sure {
            assert!(
                exists(&d, kind, name),
                "round {round}: {kind} {name} was created and not removed, but is gone"
            );
        }
        let mut m = model.lock().unwrap();
        for (kind, name) in &unsure {
            if *kind == "container"
                && exists(&d, kind, name)
                && !sure.contains(&(*kind, name.clone()))
            {
                // Created, but the kill cut its start: a complete container that never ran
                // (`always` restarts only containers that ran, as with Docker). Not a loss;
                // removed so later rounds can require every container to run.
                let r = d.raw(
                    "DELETE",
                    &format!("/v1.50/containers/{name}?force=1"),
                    None,
                    b"",
                );
                assert_eq!(r.status, 204, "round {round}: rm -f {name}: {}", r.text());
                m.sure.remove(&(*kind, name.clone()));
                continue;
            }
            if exists(&d, kind, name) {
                m.sure.insert((kind, name.clone()));
            } else {
                m.sure.remove(&(*kind, name.clone()));
            }
        }
        m.unsure.clear();
        let containers: Vec<String> = m
            .sure
            .iter()
            .filter(|(k, _)| *k == "container")
            .map(|(_, n)| n.clone())
            .collect();
        drop(m);
        // restart=always containers are running again after the boot.
        for name in &containers {
            poll_until(
                &format!("round {round}: {name} running again"),
                Duration::from_secs(30),
                || running(&d, name).then_some(()),
            );
        }
        let (code, out) = system_check(&root);
        assert_eq!(code, 0, "round {round}: leftovers after the boot:\n{out}");
        eprintln!(
            "torture: round {round} ok ({} objects)",
            model.lock().unwrap().sure.len()
        );
    }
    d.stop(Duration::from_secs(30));
    assert_eq!(
        d.leftover_mounts(),
        Vec::<PathBuf>::new(),
        "mounts left after a graceful stop"
    );
}
