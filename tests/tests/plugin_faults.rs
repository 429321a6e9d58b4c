//! The plugin fault matrix: a real daemon with short deadline caps, the `fault-plugin` example
//! misbehaving on exactly one call, driven over the Engine API. Table-driven: every call site
//! ([`Site`]) runs every fault ([`Fault`]), and each case asserts that
//!
//! - the operation ends by its deadline plus a small margin (a correctness bound, not a speed
//!   target: without the caps a hung plugin would hold the call for its own 30 s or more);
//! - a failure names the plugin and the call (in the error, or for the calls whose failure is a
//!   warning, in the warning and the plugin's `LastError`);
//! - no record is lost or half-written: the object exists exactly when the operation succeeded
//!   (or, for tear-down calls, is gone as asked), and no record file is a leftover temp file or
//!   unreadable;
//! - for the faults that keep a call in flight (hang, trickle), an unrelated `rm -f` of a
//!   container that uses no plugin completes while the faulty call is still pending.
//!
//! What the engine does in each case (the status, the kind of error, the warning) is the table in
//! `docs/semantics.md` ("Fault matrix"): each site's test compares its row with what it observed
//! and fails when they differ. `BERTH_BLESS_DOCS=1` rewrites the rows instead.
//!
//! Needs root (the daemon makes namespaces and mounts); CI runs it as root.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use berth_tests::{Daemon, PluginProc, example_plugin, poll_until, spawn_plugin};
use serde_json::json;

#[path = "plugin_faults/ops.rs"]
mod ops;
#[path = "plugin_faults/table.rs"]
mod table;
use ops::{check_records, create_container, operate, post, prepare, start};
use table::check_docs_row;

/// The caps the daemons run with in this suite.
const API_CAP: Duration = Duration::from_millis(1000);
const VOLUME_CAP: Duration = Duration::from_millis(1500);
const DEFAULT_CAP: Duration = Duration::from_millis(1000);
/// The load deadline of the handshake cases.
const LOAD_DEADLINE: Duration = Duration::from_secs(2);
/// Slack over a deadline: the engine's work around the call (a start's namespaces, an `rm -f`'s
/// kill and exit handling) on a loaded 2-core CI machine.
const MARGIN: Duration = Duration::from_millis(3000);

fn cap_flags() -> Vec<String> {
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
}

/// Where a plugin is called, and the operation that calls it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Site {
    /// `/Plugin.Activate` at `plugin load`.
    Handshake,
    /// The MVP v1 volume hook when a container with a bind is created.
    HookCreate,
    /// The same hook when that container starts.
    HookStart,
    /// `VolumeDriver.Create` at `volume create -d`.
    VolumeCreate,
    /// `VolumeDriver.Mount` at the start of a container using the volume.
    VolumeMount,
    /// `VolumeDriver.Unmount` at `rm -f` of that running container.
    VolumeUnmount,
    /// `VolumeDriver.Remove` at `volume rm`.
    VolumeRemove,
    /// `NetworkDriver.CreateNetwork` at `network create -d`.
    NetworkCreate,
    /// `NetworkDriver.Join` at the start of a container on the network.
    NetworkJoin,
    /// `NetworkDriver.Leave` at `rm -f` of that running container.
    NetworkLeave,
    /// `IpamDriver.RequestAddress` for the endpoint at that start.
    IpamAddress,
    /// The MVP v1 api pre-hook of `POST /volumes/create`.
    ApiPre,
    /// The MVP v1 api post-hook of `POST /volumes/create`.
    ApiPost,
    /// `AuthZPlugin.AuthZReq` of `POST /volumes/create`.
    AuthzReq,
    /// `AuthZPlugin.AuthZRes` of `POST /volumes/create`.
    AuthzRes,
}

impl Site {
    const ALL: [Site; 15] = [
        Site::Handshake,
        Site::HookCreate,
        Site::HookStart,
        Site::VolumeCreate,
        Site::VolumeMount,
        Site::VolumeUnmount,
        Site::VolumeRemove,
        Site::NetworkCreate,
        Site::NetworkJoin,
        Site::NetworkLeave,
        Site::IpamAddress,
        Site::ApiPre,
        Site::ApiPost,
        Site::AuthzReq,
        Site::AuthzRes,
    ];

    /// The plugin call that misbehaves.
    fn path(self) -> &'static str {
        match self {
            Site::Handshake => "/Plugin.Activate",
            Site::HookCreate | Site::HookStart => "/v1/volume/volumes",
            Site::VolumeCreate => "/VolumeDriver.Create",
            Site::VolumeMount => "/VolumeDriver.Mount",
            Site::VolumeUnmount => "/VolumeDriver.Unmount",
            Site::VolumeRemove => "/VolumeDriver.Remove",
            Site::NetworkCreate => "/NetworkDriver.CreateNetwork",
            Site::NetworkJoin => "/NetworkDriver.Join",
            Site::NetworkLeave => "/NetworkDriver.Leave",
            Site::IpamAddress => "/IpamDriver.RequestAddress",
            Site::ApiPre => "/v1/api/pre-hook",
            Site::ApiPost => "/v1/api/post-hook",
            Site::AuthzReq => "/AuthZPlugin.AuthZReq",
            Site::AuthzRes => "/AuthZPlugin.AuthZRes",
        }
    }

    /// The first column of the site's row in the docs table.
    fn label(self) -> &'static str {
        match self {
            Site::Handshake => "handshake (`plugin load`)",
            Site::HookCreate => "v1 volume hook at create",
            Site::HookStart => "v1 volume hook at start",
            Site::VolumeCreate => "`VolumeDriver.Create`",
            Site::VolumeMount => "`VolumeDriver.Mount` (start)",
            Site::VolumeUnmount => "`VolumeDriver.Unmount` (`rm -f`)",
            Site::VolumeRemove => "`VolumeDriver.Remove`",
            Site::NetworkCreate => "`NetworkDriver.CreateNetwork`",
            Site::NetworkJoin => "`NetworkDriver.Join` (start)",
            Site::NetworkLeave => "`NetworkDriver.Leave` (`rm -f`)",
            Site::IpamAddress => "`IpamDriver.RequestAddress` (start)",
            Site::ApiPre => "api pre-hook (v1)",
            Site::ApiPost => "api post-hook (v1)",
            Site::AuthzReq => "`AuthZPlugin.AuthZReq`",
            Site::AuthzRes => "`AuthZPlugin.AuthZRes`",
        }
    }

    /// What the records look like after a failure (the last column; [`check_records`] asserts it).
    fn left(self) -> &'static str {
        match self {
            Site::Handshake => "no plugin record",
            Site::HookCreate => "no container",
            Site::HookStart | Site::VolumeMount => "container created, not running; volume kept",
            Site::VolumeUnmount => "container gone, volume kept",
            Site::VolumeCreate => "no volume",
            Site::VolumeRemove => "volume kept",
            Site::NetworkCreate => "no network",
            Site::NetworkJoin | Site::IpamAddress => {
                "container created, not running; network kept, no endpoint"
            }
            Site::NetworkLeave => "container gone; network kept, no endpoint",
            Site::ApiPre | Site::AuthzReq => "no volume",
            Site::ApiPost | Site::AuthzRes => {
                "volume created (none when the plugin is dead: an earlier call of it fails first)"
            }
        }
    }

    /// The deadline of the faulty call (its family's cap; the handshake runs under the load
    /// deadline).
    fn deadline(self) -> Duration {
        match self {
            Site::Handshake => LOAD_DEADLINE,
            Site::HookCreate | Site::HookStart | Site::VolumeCreate | Site::VolumeMount => {
                VOLUME_CAP
            }
            Site::ApiPre | Site::ApiPost | Site::AuthzReq | Site::AuthzRes => API_CAP,
            _ => DEFAULT_CAP,
        }
    }

    /// `fault-plugin` arguments beyond the fault: which handshake, and which calls misbehave.
    fn plugin_args(self) -> Vec<&'static str> {
        match self {
            Site::HookCreate => vec!["--handshake", "v1", "--interests", "volume"],
            Site::HookStart => vec!["--handshake", "v1", "--interests", "volume", "--skip", "1"],
            // The gateway's address at network create comes first.
            Site::IpamAddress => vec!["--skip", "1"],
            Site::ApiPre | Site::ApiPost => vec![
                "--handshake",
                "v1",
                "--interests",
                "api",
                "--match",
                "/volumes/create",
            ],
            Site::AuthzReq | Site::AuthzRes => vec!["--match", "/volumes/create"],
            _ => Vec::new(),
        }
    }

    /// An authorization plugin: it is named by the daemon's flags, so it has a daemon of its own
    /// and is replaced (same socket) rather than loaded and unloaded per case.
    fn authz(self) -> bool {
        matches!(self, Site::AuthzReq | Site::AuthzRes)
    }

    /// A plugin every request or every container event reaches (hooks): unloaded after its case
    /// so the next case sees only its own.
    fn hooks_everything(self) -> bool {
        matches!(
            self,
            Site::HookCreate | Site::HookStart | Site::ApiPre | Site::ApiPost
        )
    }

    /// The call's failure is a warning: the operation succeeds.
    fn warns(self) -> bool {
        matches!(
            self,
            Site::VolumeUnmount | Site::NetworkLeave | Site::ApiPost
        )
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

    /// The column heading in the docs table.
    fn heading(self) -> &'static str {
        match self {
            Fault::NoSocket => "no socket",
            Fault::Refused => "refused",
            Fault::Hang => "hang",
            Fault::Trickle => "trickle",
            Fault::Status500 => "500",
            Fault::Err200 => "200 + `Err`",
            Fault::NonJson => "not JSON",
            Fault::WrongType => "wrong type",
            Fault::Huge => "endless",
            Fault::Crash => "crash",
            Fault::Close => "closed",
        }
    }

    /// The plugin is dead before the operation: it fails at its first call to the plugin.
    fn dead(self) -> bool {
        matches!(self, Fault::NoSocket | Fault::Refused)
    }

    fn succeeds(self) -> bool {
        matches!(self, Fault::WrongType | Fault::Close)
    }

    /// The call stays in flight until its deadline.
    fn in_flight(self) -> bool {
        matches!(self, Fault::Hang | Fault::Trickle)
    }
}

/// A running `fault-plugin` and where it logs.
struct Plugin {
    proc: Option<PluginProc>,
    sock: PathBuf,
    log: PathBuf,
}

fn spawn_fault_plugin(d_dir: &Path, sock: &Path, name: &str, site: Site, fault: &str) -> Plugin {
    let log = d_dir.join(format!("{name}.log"));
    let mnt = d_dir.join(format!("{name}.mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    let _ = std::fs::remove_file(sock);
    let mut args = vec![
        "--socket",
        sock.to_str().unwrap(),
        "--on",
        site.path(),
        "--fault",
        fault,
        "--mountpoint",
        mnt.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ];
    args.extend(site.plugin_args());
    let p = spawn_plugin(&example_plugin("fault-plugin"), &args);
    poll_until("the fault-plugin socket", Duration::from_secs(10), || {
        sock.exists().then_some(())
    });
    Plugin {
        proc: Some(p),
        sock: sock.to_owned(),
        log,
    }
}

impl Plugin {
    /// Kills the plugin for the dead-plugin faults (`NoSocket` also removes its socket).
    fn kill_for(&mut self, fault: Fault) {
        if !fault.dead() {
            return;
        }
        drop(self.proc.take());
        if fault == Fault::NoSocket {
            std::fs::remove_file(&self.sock).unwrap();
        } else {
            assert!(
                self.sock.exists(),
                "a killed listener leaves its socket file"
            );
        }
    }

    /// Whether the faulty call has reached the plugin.
    fn faulty_call_seen(&self) -> bool {
        self.logged(" fault")
    }

    /// Whether a log line ends with `suffix`.
    fn logged(&self, suffix: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.ends_with(suffix))
    }
}

/// The one daemon of a site, and for the authorization sites the plugin's fixed socket.
struct Bench {
    d: Daemon,
    authz_sock: Option<PathBuf>,
    /// The healthy authorization plugin between cases (replaced by each case's faulty one).
    authz_proc: Option<Plugin>,
    /// Every object the cases so far left in place: none may go missing from the lists later.
    kept: ops::Kept,
}

const AUTHZ: &str = "fz";

fn bench(site: Site) -> Bench {
    if !site.authz() {
        return Bench {
            d: Daemon::start_with(|_| cap_flags()),
            authz_sock: None,
            authz_proc: None,
            kept: ops::Kept::default(),
        };
    }
    let mut healthy = None;
    let mut sock = None;
    let d = Daemon::start_with(|dir| {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let s = plugins.join(format!("{AUTHZ}.sock"));
        healthy = Some(spawn_fault_plugin(dir, &s, "healthy", site, "none"));
        sock = Some(s);
        let mut flags = cap_flags();
        flags.extend([
            "--plugin-dir".to_owned(),
            plugins.display().to_string(),
            "--authorization-plugin".to_owned(),
            AUTHZ.to_owned(),
        ]);
        flags
    });
    Bench {
        d,
        authz_sock: sock,
        authz_proc: healthy,
        kept: ops::Kept::default(),
    }
}

fn load(d: &Daemon, name: &str, sock: &Path, timeout: Duration) -> berth_tests::CmdOutput {
    d.berth(&[
        "plugin",
        "load",
        "--name",
        name,
        "--socket",
        sock.to_str().unwrap(),
        "--timeout",
        &format!("{}ms", timeout.as_millis()),
    ])
}

/// The kind of an error or warning text, as the docs table shows it.
fn kind_of(text: &str) -> &'static str {
    let kinds = [
        ("deadline", "deadline"),
        ("no handshake within", "deadline"),
        ("not up", "not up"),
        ("never appeared", "not up"),
        ("size limit", "size limit"),
        ("(HTTP 500)", "Err"),
        ("fault: err200", "Err"),
        ("decoding reply", "undecodable"),
        ("malformed", "undecodable"),
        ("connection closed", "transport"),
        ("transport", "transport"),
        ("not active", "not active"),
    ];
    kinds
        .iter()
        .find(|(needle, _)| text.contains(needle))
        .map_or("other", |(_, k)| k)
}

/// Runs one case; returns the docs cell.
fn run_case(b: &mut Bench, site: Site, fault: Fault) -> String {
    let d = &b.d;
    let n = site as u8 * 16 + fault as u8;
    let name = if site.authz() {
        AUTHZ.to_owned()
    } else {
        format!("f{n}")
    };
    let case = format!("f{n}");
    let what = format!("{site:?} × {fault:?}");
    let fault_arg = if fault.dead() { "none" } else { fault.arg() };
    let mut plugin = match &b.authz_sock {
        Some(sock) => {
            // The daemon redials the authorization plugin's fixed socket for every call.
            drop(b.authz_proc.take());
            spawn_fault_plugin(d.dir(), &sock.clone(), &case, site, fault_arg)
        }
        None => {
            let sock = d.dir().join(format!("{name}.sock"));
            let p = spawn_fault_plugin(d.dir(), &sock, &name, site, fault_arg);
            if site != Site::Handshake {
                load(d, &name, &sock, Duration::from_secs(10)).expect_code(0);
            }
            p
        }
    };
    prepare(d, site, &case, n);
    plugin.kill_for(fault);
    // The bystander: a running container that uses no plugin.
    let bystander = format!("bystander{n}");
    let check_rm = fault.in_flight();
    if check_rm {
        let r = create_container(d, &bystander, &["sleep", "60"], json!({}));
        assert_eq!(r.status, 201, "{what}: bystander: {}", r.text());
        let r = start(d, &bystander);
        assert_eq!(r.status, 204, "{what}: bystander start: {}", r.text());
    }
    let t = Instant::now();
    let (out, rm) = thread::scope(|s| {
        let op = s.spawn(|| {
            let out = operate(d, site, &case, n);
            (out, Instant::now())
        });
        let mut rm = None;
        if check_rm {
            // Once the faulty call is in flight, remove the bystander.
            poll_until("the faulty call", Duration::from_secs(10), || {
                plugin.faulty_call_seen().then_some(())
            });
            let sent = Instant::now();
            let r = d.raw(
                "DELETE",
                &format!("/containers/{bystander}?force=1"),
                None,
                b"",
            );
            rm = Some((r, sent, Instant::now()));
        }
        let (out, op_done) = op.join().unwrap();
        (out, rm.map(|(r, sent, at)| (r, sent, at, op_done)))
    });
    let took = t.elapsed();
    assert!(
        took <= site.deadline() + MARGIN,
        "{what}: took {took:?}, deadline {:?}: {} {}",
        site.deadline(),
        out.status,
        out.text
    );
    if let Some((r, rm_sent, rm_at, op_at)) = rm {
        assert_eq!(r.status, 204, "{what}: the bystander's rm -f: {}", r.text());
        eprintln!(
            "{what}: the unrelated rm -f took {:?}; the faulty call ended {:?} after it",
            rm_at - rm_sent,
            op_at.saturating_duration_since(rm_at)
        );
        assert!(
            rm_at < op_at,
            "{what}: the unrelated rm -f waited for the plugin call"
        );
    }
    if matches!(fault, Fault::Hang | Fault::Trickle | Fault::Huge) {
        // The engine let go of the connection when it gave up on the call: no connection (fd,
        // task, buffer) is kept per hung or endless call.
        poll_until(
            &format!("{what}: the engine to close the faulty call's connection"),
            Duration::from_secs(5),
            || plugin.logged(" closed").then_some(()),
        );
    }
    let call = site.path().trim_start_matches('/');
    let short_call = call.rsplit(['.', '/']).next().unwrap_or(call);
    let healthy = fault.succeeds();
    // A dead v1 api plugin fails the request at its pre-hook, before any post-hook.
    let warns = site.warns() && !(site == Site::ApiPost && fault.dead());
    if healthy || warns {
        assert!(out.ok, "{what}: must succeed: {} {}", out.status, out.text);
    } else {
        assert!(!out.ok, "{what}: must fail: {} {}", out.status, out.text);
    }
    let cell = if healthy {
        assert!(out.text.is_empty(), "{what}: no warning: {}", out.text);
        format!("{} ok", out.status)
    } else {
        // The error (or the warning) names the plugin and the call.
        let text = if warns && out.text.is_empty() {
            // Tear-down warnings of `rm -f` go to the daemon log (and the plugin's LastError,
            // which a later call of the same tear-down may overwrite).
            let log = d.log();
            match log
                .lines()
                .find(|l| l.contains(&format!("\"{name}\"")) && l.contains(short_call))
            {
                Some(l) => l.to_owned(),
                None => {
                    let st = d
                        .raw("GET", &format!("/berth/plugins/{name}"), None, b"")
                        .json();
                    st["LastError"].as_str().unwrap_or_default().to_owned()
                }
            }
        } else {
            out.text.clone()
        };
        assert!(
            text.contains(&name),
            "{what}: names the plugin {name}: {text}"
        );
        // A misbehaving plugin is never the client's mistake: no 4xx.
        assert!(
            out.status.starts_with('5') || out.status.starts_with("exit") || warns,
            "{what}: a plugin failure answered {}: {text}",
            out.status
        );
        let names_call = text.contains(call)
            || text.contains(short_call)
            // A dead plugin fails at the first call the operation makes (Create may be preceded
            // by Get, CreateNetwork by GetCapabilities, Join by CreateEndpoint): that call is
            // the one named.
            || (fault.dead() && text.contains("not up"))
            || (site == Site::Handshake && text.contains("handshake"));
        assert!(names_call, "{what}: names the call {call}: {text}");
        let warn = if warns { " ⚠" } else { "" };
        format!("{}{warn} {}", out.status, kind_of(&text))
    };
    if let Some(sock) = &b.authz_sock {
        // A healthy plugin again, so the checks (and the next case) get through authorization.
        drop(plugin);
        b.authz_proc = Some(spawn_fault_plugin(d.dir(), sock, "healthy", site, "none"));
    } else if site.hooks_everything() {
        let r = d.raw("DELETE", &format!("/berth/plugins/{name}"), None, b"");
        assert!(r.status < 300, "{what}: unload: {} {}", r.status, r.text());
        drop(plugin);
    }
    check_records(d, site, fault, &case, out.ok, &what);
    b.kept.add(d, &case);
    b.kept.check_listed(d, &what);
    // Nothing of the operation stays mounted (a failed start gives back its rootfs and binds;
    // a container that ran `true` is gone from the mount table once its exit is handled).
    poll_until(
        &format!("{what}: no mounts left under the daemon's directory"),
        Duration::from_secs(10),
        || d.leftover_mounts().is_empty().then_some(()),
    );
    cell
}

fn run_site(site: Site) {
    let mut b = bench(site);
    let cells: Vec<String> = Fault::ALL
        .iter()
        .map(|&fault| run_case(&mut b, site, fault))
        .collect();
    let log = b.d.log();
    assert!(
        !log.contains("panicked"),
        "{site:?}: the daemon panicked:\n{log}"
    );
    check_docs_row(site, &cells);
}

#[test]
fn handshake() {
    run_site(Site::Handshake);
}

#[test]
fn volume_hook_at_create() {
    run_site(Site::HookCreate);
}

#[test]
fn volume_hook_at_start() {
    run_site(Site::HookStart);
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
fn volume_driver_unmount() {
    run_site(Site::VolumeUnmount);
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
fn network_driver_join() {
    run_site(Site::NetworkJoin);
}

#[test]
fn network_driver_leave() {
    run_site(Site::NetworkLeave);
}

#[test]
fn ipam_driver_request_address() {
    run_site(Site::IpamAddress);
}

#[test]
fn api_pre_hook() {
    run_site(Site::ApiPre);
}

#[test]
fn api_post_hook() {
    run_site(Site::ApiPost);
}

#[test]
fn authz_request() {
    run_site(Site::AuthzReq);
}

#[test]
fn authz_response() {
    run_site(Site::AuthzRes);
}

#[test]
fn the_caps_in_force_are_the_suites() {
    // The suite's premise: the caps given on the command line are the ones in force.
    let d = Daemon::start_with(|_| cap_flags());
    let sock = d.dir().join("capcheck.sock");
    let _p = spawn_fault_plugin(d.dir(), &sock, "capcheck", Site::VolumeCreate, "none");
    load(&d, "capcheck", &sock, Duration::from_secs(10)).expect_code(0);
    let st = d.raw("GET", "/berth/plugins/capcheck", None, b"").json();
    assert_eq!(st["Deadlines"]["Api"], API_CAP.as_millis() as u64, "{st}");
    assert_eq!(st["Deadlines"]["Volume"], VOLUME_CAP.as_millis() as u64);
    assert_eq!(st["Deadlines"]["Default"], DEFAULT_CAP.as_millis() as u64);
}

#[test]
fn a_disabled_network_driver_fails_closed_with_503() {
    // Fail closed (docs/semantics.md): a needed plugin that is not Active gives 503 naming it and
    // its state, also when the first call an operation makes is the driver's GetCapabilities
    // (it used to read as "not a usable NetworkDriver", 400).
    let d = Daemon::start_with(|_| cap_flags());
    let sock = d.dir().join("netoff.sock");
    let _p = spawn_fault_plugin(d.dir(), &sock, "netoff", Site::NetworkCreate, "none");
    load(&d, "netoff", &sock, Duration::from_secs(10)).expect_code(0);
    let r = d.raw("POST", "/plugins/netoff/disable", None, b"");
    assert!(r.status < 300, "disable: {} {}", r.status, r.text());
    let r = post(
        &d,
        "/networks/create",
        json!({"Name": "offnet", "Driver": "netoff"}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let m = r.message();
    assert!(
        m.contains("\"netoff\"") && m.contains("GetCapabilities") && m.contains("disabled"),
        "{m}"
    );
    assert_eq!(d.raw("GET", "/networks/offnet", None, b"").status, 404);
}
