//! The plugin fault matrix: a real daemon with short deadline caps, the `fault-plugin` example
//! misbehaving on exactly one call, driven by the real docker CLI. Table-driven: every call site
//! runs every fault, and each case asserts that
//!
//! - the operation ends by its deadline plus a small margin (a correctness bound, not a speed
//!   target: without the caps a hung plugin would hold the call for its own 30 s or more);
//! - a failure names the plugin and the call;
//! - no record is lost or half-written (a failed create leaves no object, a failed mount or
//!   remove keeps the volume);
//! - for the faults that keep a call in flight (hang, trickle), an unrelated `docker rm -f` of a
//!   container that uses no plugin completes while the faulty call is still pending, where
//!   [`Case::unrelated_rm`] says that holds today (the other sites need per-object locks).
//!
//! Needs root (the daemon makes namespaces and mounts); CI runs it as root.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use berth_tests::{CmdOutput, Daemon, PluginProc, example_plugin, poll_until, spawn_plugin};

/// The caps the daemon runs with in this suite.
const API_CAP: Duration = Duration::from_millis(1000);
const VOLUME_CAP: Duration = Duration::from_millis(1500);
const DEFAULT_CAP: Duration = Duration::from_millis(1000);
/// Slack over a deadline: the docker CLI's own start-up and the engine's work around the call.
const MARGIN: Duration = Duration::from_millis(3000);

fn daemon() -> Daemon {
    Daemon::start_with(|_| {
        [
            "--plugin-deadline-api",
            "1s",
            "--plugin-deadline-volume",
            "1500ms",
            "--plugin-deadline-default",
            "1s",
        ]
        .map(String::from)
        .to_vec()
    })
}

/// Where a plugin is called.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Site {
    /// `/Plugin.Activate` at `plugin load`.
    Handshake,
    /// `VolumeDriver.Create` at `docker volume create -d`.
    VolumeCreate,
    /// `VolumeDriver.Mount` at `docker run -v V:/d`.
    VolumeMount,
    /// `VolumeDriver.Remove` at `docker volume rm`.
    VolumeRemove,
    /// `NetworkDriver.CreateNetwork` at `docker network create -d`.
    NetworkCreate,
}

impl Site {
    fn path(self) -> &'static str {
        match self {
            Site::Handshake => "/Plugin.Activate",
            Site::VolumeCreate => "/VolumeDriver.Create",
            Site::VolumeMount => "/VolumeDriver.Mount",
            Site::VolumeRemove => "/VolumeDriver.Remove",
            Site::NetworkCreate => "/NetworkDriver.CreateNetwork",
        }
    }

    /// The deadline of the call (its family's cap; the handshake runs under `--timeout`).
    fn deadline(self) -> Duration {
        match self {
            Site::Handshake => Duration::from_secs(2),
            Site::VolumeCreate | Site::VolumeMount => VOLUME_CAP,
            Site::VolumeRemove | Site::NetworkCreate => DEFAULT_CAP,
        }
    }
}

/// How the plugin misbehaves on the site's call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The plugin is gone and so is its socket.
    NoSocket,
    /// The socket file is there, nobody listens.
    Refused,
    Hang,
    Trickle,
    Status500,
    Err200,
    NonJson,
    /// A correct answer labelled `text/html`: must succeed (Docker's lenient rules).
    WrongType,
    Huge,
    Crash,
    /// Answers, then closes the connection: the next call must dial again and succeed.
    Close,
}

impl Fault {
    const ALL: [Fault; 11] = [
        Fault::NoSocket,
        Fault::Refused,
        Fault::Hang,
        Fault::Trickle,
        Fault::Status500,
        Fault::Err200,
        Fault::NonJson,
        Fault::WrongType,
        Fault::Huge,
        Fault::Crash,
        Fault::Close,
    ];

    fn arg(self) -> &'static str {
        match self {
            Fault::NoSocket | Fault::Refused => "none",
            Fault::Hang => "hang",
            Fault::Trickle => "trickle",
            Fault::Status500 => "status500",
            Fault::Err200 => "err200",
            Fault::NonJson => "nonjson",
            Fault::WrongType => "wrongtype",
            Fault::Huge => "huge",
            Fault::Crash => "crash",
            Fault::Close => "close",
        }
    }

    fn succeeds(self) -> bool {
        matches!(self, Fault::WrongType | Fault::Close)
    }

    /// The call stays in flight until its deadline.
    fn in_flight(self) -> bool {
        matches!(self, Fault::Hang | Fault::Trickle)
    }
}

/// Whether an unrelated `docker rm -f` completes while a hung call at this site is in flight
/// today. `false` = blocked behind a store-wide lock held across the plugin call: the per-object
/// lock work (issue 13 item 1) turns these to `true`.
fn unrelated_rm_holds(site: Site) -> bool {
    match site {
        Site::Handshake | Site::VolumeCreate | Site::VolumeMount | Site::VolumeRemove => true,
        Site::NetworkCreate => false,
    }
}

struct Fixture {
    _proc: Option<PluginProc>,
    name: String,
    log: PathBuf,
}

fn fault_plugin(d: &Daemon, name: &str, on: &str, fault: &str) -> (PluginProc, PathBuf, PathBuf) {
    let sock = d.dir().join(format!("{name}.sock"));
    let log = d.dir().join(format!("{name}.log"));
    let mnt = d.dir().join(format!("{name}.mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    let p = spawn_plugin(
        &example_plugin("fault-plugin"),
        &[
            "--socket",
            sock.to_str().unwrap(),
            "--on",
            on,
            "--fault",
            fault,
            "--mountpoint",
            mnt.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    poll_until("the fault-plugin socket", Duration::from_secs(10), || {
        sock.exists().then_some(())
    });
    (p, sock, log)
}

fn load(d: &Daemon, name: &str, sock: &Path, timeout: &str) -> CmdOutput {
    d.berth(&[
        "plugin",
        "load",
        "--name",
        name,
        "--socket",
        sock.to_str().unwrap(),
        "--timeout",
        timeout,
    ])
}

/// Sets up the plugin for `site`/`fault` and everything the site's operation needs before it.
fn prepare(d: &Daemon, site: Site, fault: Fault, name: &str) -> Fixture {
    let on = if matches!(fault, Fault::NoSocket | Fault::Refused) {
        ""
    } else {
        site.path()
    };
    let (proc, sock, log) = fault_plugin(d, name, on, fault.arg());
    if site != Site::Handshake {
        load(d, name, &sock, "10s").ok();
        if matches!(site, Site::VolumeMount | Site::VolumeRemove) {
            d.docker(&["volume", "create", "-d", name, &format!("{name}-v")])
                .ok();
        }
    }
    let proc = match fault {
        Fault::NoSocket | Fault::Refused => {
            drop(proc);
            if fault == Fault::NoSocket {
                std::fs::remove_file(&sock).unwrap();
            } else {
                assert!(sock.exists(), "a killed listener leaves its socket file");
            }
            None
        }
        _ => Some(proc),
    };
    Fixture {
        _proc: proc,
        name: name.to_owned(),
        log,
    }
}

/// Runs the site's operation (`n`: a number unique per case, for subnets).
fn operate(d: &Daemon, site: Site, name: &str, n: u8) -> CmdOutput {
    match site {
        Site::Handshake => load(d, name, &d.dir().join(format!("{name}.sock")), "2s"),
        Site::VolumeCreate => d.docker(&["volume", "create", "-d", name, &format!("{name}-v")]),
        Site::VolumeMount => {
            d.docker(&["run", "--rm", "-v", &format!("{name}-v:/d"), "host", "true"])
        }
        Site::VolumeRemove => d.docker(&["volume", "rm", &format!("{name}-v")]),
        Site::NetworkCreate => d.docker(&[
            "network",
            "create",
            "-d",
            name,
            "--subnet",
            &format!("10.244.{n}.0/24"),
            &format!("{name}-n"),
        ]),
    }
}

/// The records after the operation: nothing half-made, nothing lost.
fn check_records(d: &Daemon, site: Site, fx: &Fixture, out: &CmdOutput, what: &str) {
    let vol = d
        .raw("GET", &format!("/volumes/{}-v", fx.name), None, b"")
        .status;
    let net = d
        .raw("GET", &format!("/networks/{}-n", fx.name), None, b"")
        .status;
    let plugin = d
        .raw("GET", &format!("/berth/plugins/{}", fx.name), None, b"")
        .status;
    match site {
        Site::Handshake => {
            let want = if out.success() { 200 } else { 404 };
            assert_eq!(plugin, want, "{what}: plugin record");
        }
        Site::VolumeCreate => {
            let want = if out.success() { 200 } else { 404 };
            assert_eq!(vol, want, "{what}: a failed create leaves no volume");
        }
        Site::VolumeMount => assert_eq!(vol, 200, "{what}: the volume survives a failed mount"),
        Site::VolumeRemove => {
            let want = if out.success() { 404 } else { 200 };
            assert_eq!(vol, want, "{what}: a failed remove keeps the volume");
        }
        Site::NetworkCreate => {
            let want = if out.success() { 200 } else { 404 };
            assert_eq!(net, want, "{what}: a failed create leaves no network");
        }
    }
}

fn run_site(site: Site) {
    let d = daemon();
    let mut blocked = Vec::new();
    for fault in Fault::ALL {
        let name = format!("f{}{}", site as u8, fault as u8);
        let what = format!("{site:?} × {fault:?}");
        let fx = prepare(&d, site, fault, &name);
        // The bystander: a running container that uses no plugin.
        let bystander = format!("bystander{}", fault as u8);
        let check_rm = fault.in_flight();
        if check_rm {
            d.docker(&["run", "-d", "--name", &bystander, "host", "sleep", "60"])
                .ok();
        }
        let t = Instant::now();
        let (out, rm_done) = thread::scope(|s| {
            let op = s.spawn(|| {
                let out = operate(&d, site, &name, fault as u8);
                (out, Instant::now())
            });
            let mut rm_done = None;
            if check_rm {
                // Once the faulty call is in flight, remove the bystander.
                poll_until("the faulty call", Duration::from_secs(10), || {
                    std::fs::read_to_string(&fx.log)
                        .unwrap_or_default()
                        .lines()
                        .any(|l| l == site.path())
                        .then_some(())
                });
                d.docker(&["rm", "-f", &bystander]).ok();
                rm_done = Some(Instant::now());
            }
            let (out, op_done) = op.join().unwrap();
            (out, rm_done.map(|r| (r, op_done)))
        });
        let took = t.elapsed();
        assert!(
            took <= site.deadline() + MARGIN,
            "{what}: took {took:?}, deadline {:?}\n{}",
            site.deadline(),
            out.describe()
        );
        if fault.succeeds() {
            assert!(out.success(), "{what}: must succeed\n{}", out.describe());
        } else {
            assert!(!out.success(), "{what}: must fail\n{}", out.describe());
            let err = out.stderr.clone();
            assert!(err.contains(&name), "{what}: names the plugin\n{err}");
            let call = site.path().trim_start_matches('/');
            // A dead plugin fails at the first call the operation makes (Create may be preceded
            // by Get, CreateNetwork by GetCapabilities): that call is the one named.
            let dead = matches!(fault, Fault::NoSocket | Fault::Refused);
            let names_call = err.contains(call)
                || (dead && err.contains("POST /") && err.contains("plugin not up"))
                || (site == Site::Handshake && err.contains("handshake"))
                || (site == Site::Handshake && err.contains("never came up"));
            assert!(names_call, "{what}: names the call {call}\n{err}");
        }
        check_records(&d, site, &fx, &out, &what);
        if let Some((rm, op)) = rm_done {
            let held = rm < op;
            if unrelated_rm_holds(site) {
                assert!(
                    held,
                    "{what}: the unrelated rm -f waited for the plugin call"
                );
            } else if !held {
                blocked.push(what.clone());
            }
        }
    }
    eprintln!("{site:?}: unrelated rm -f blocked behind the plugin call in: {blocked:?}");
}

#[test]
fn handshake() {
    run_site(Site::Handshake);
}

#[test]
fn volume_driver_create() {
    run_site(Site::VolumeCreate);
}

#[test]
fn volume_driver_mount() {
    run_site(Site::VolumeMount);
}

#[test]
fn volume_driver_remove() {
    run_site(Site::VolumeRemove);
}

#[test]
fn network_driver_create_network() {
    run_site(Site::NetworkCreate);
}

#[test]
fn api_cap_is_shorter_than_the_others() {
    // The suite's premise: the caps given on the command line are the ones in force.
    let d = daemon();
    let (_p, sock, _log) = fault_plugin(&d, "capcheck", "", "none");
    load(&d, "capcheck", &sock, "10s").ok();
    let st = d.raw("GET", "/berth/plugins/capcheck", None, b"").json();
    assert_eq!(st["Deadlines"]["Api"], API_CAP.as_millis() as u64, "{st}");
    assert_eq!(st["Deadlines"]["Volume"], VOLUME_CAP.as_millis() as u64);
    assert_eq!(st["Deadlines"]["Default"], DEFAULT_CAP.as_millis() as u64);
}
