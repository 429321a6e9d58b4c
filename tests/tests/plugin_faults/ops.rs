//! The operations of the fault matrix: what each call site sets up before its operation
//! ([`prepare`]), the operation itself over the Engine API ([`operate`]), and the check of the
//! records it leaves ([`check_records`]).

use std::path::{Path, PathBuf};

use std::time::Duration;

use berth_tests::{Daemon, RawResponse};
use serde_json::{Value, json};

use super::{Fault, LOAD_DEADLINE, Site, load};

pub fn post(d: &Daemon, path: &str, body: Value) -> RawResponse {
    d.raw_json("POST", path, &body)
}

/// `POST /containers/{c}/start` without a body, as the docker CLI sends it.
pub fn start(d: &Daemon, c: &str) -> RawResponse {
    d.raw("POST", &format!("/containers/{c}/start"), None, b"")
}

/// A container (created, not started) named `name`, running `cmd`, with `host_config`.
pub fn create_container(d: &Daemon, name: &str, cmd: &[&str], host_config: Value) -> RawResponse {
    post(
        d,
        &format!("/containers/create?name={name}"),
        json!({"Image": "host", "Cmd": cmd, "HostConfig": host_config}),
    )
}

fn network_body(name: &str, driver: &str, ipam: &str, n: u8) -> Value {
    json!({
        "Name": format!("{name}-n"),
        "Driver": driver,
        "IPAM": {"Driver": ipam, "Config": [{"Subnet": format!("10.244.{n}.0/24")}]},
    })
}

/// Sets up everything the site's operation needs before it (with the plugin healthy so far).
pub fn prepare(d: &Daemon, site: Site, name: &str, n: u8) {
    let must = |r: RawResponse, what: &str| {
        assert!(
            r.status < 300,
            "{name}: preparing {what}: {} {}",
            r.status,
            r.text()
        );
    };
    let src = d.dir().join(format!("{name}.src"));
    std::fs::create_dir_all(&src).unwrap();
    let vol = format!("{name}-v");
    let c = format!("{name}-c");
    match site {
        Site::HookStart => must(
            create_container(
                d,
                &c,
                &["true"],
                json!({"Binds": [format!("{}:/d", src.display())]}),
            ),
            "the container",
        ),
        Site::VolumeMount | Site::VolumeUnmount | Site::VolumeRemove => {
            must(
                post(d, "/volumes/create", json!({"Name": vol, "Driver": name})),
                "the volume",
            );
            if site != Site::VolumeRemove {
                let cmd: &[&str] = if site == Site::VolumeUnmount {
                    &["sleep", "60"]
                } else {
                    &["true"]
                };
                must(
                    create_container(d, &c, cmd, json!({"Binds": [format!("{vol}:/d")]})),
                    "the container",
                );
            }
            if site == Site::VolumeUnmount {
                must(start(d, &c), "start");
            }
        }
        Site::NetworkJoin | Site::NetworkLeave | Site::IpamAddress => {
            let ipam = if site == Site::IpamAddress {
                name
            } else {
                "default"
            };
            must(
                post(d, "/networks/create", network_body(name, name, ipam, n)),
                "the network",
            );
            let cmd: &[&str] = if site == Site::NetworkLeave {
                &["sleep", "60"]
            } else {
                &["true"]
            };
            must(
                create_container(d, &c, cmd, json!({"NetworkMode": format!("{name}-n")})),
                "the container",
            );
            if site == Site::NetworkLeave {
                must(start(d, &c), "start");
            }
        }
        _ => {}
    }
}

/// What an operation gave: a status (HTTP, or the CLI's exit code for `plugin load`), the error
/// or warning text, and the response for the checks.
pub struct Outcome {
    pub status: String,
    pub ok: bool,
    pub text: String,
}

/// Runs the site's operation (`n`: a number unique per case, for subnets).
pub fn operate(d: &Daemon, site: Site, name: &str, n: u8) -> Outcome {
    let c = format!("{name}-c");
    let src = d.dir().join(format!("{name}.src"));
    let r = match site {
        Site::Handshake => {
            let out = load(
                d,
                name,
                &d.dir().join(format!("{name}.sock")),
                LOAD_DEADLINE,
            );
            let ok = out.success();
            return Outcome {
                status: format!("exit {}", out.code.unwrap_or(-1)),
                ok,
                text: if ok {
                    String::new()
                } else {
                    out.stderr.clone()
                },
            };
        }
        Site::HookCreate => create_container(
            d,
            &c,
            &["true"],
            json!({"Binds": [format!("{}:/d", src.display())]}),
        ),
        Site::HookStart | Site::VolumeMount | Site::NetworkJoin | Site::IpamAddress => start(d, &c),
        Site::VolumeUnmount | Site::NetworkLeave => {
            d.raw("DELETE", &format!("/containers/{c}?force=1"), None, b"")
        }
        Site::VolumeCreate => post(
            d,
            "/volumes/create",
            json!({"Name": format!("{name}-v"), "Driver": name}),
        ),
        Site::VolumeRemove => d.raw("DELETE", &format!("/volumes/{name}-v"), None, b""),
        Site::NetworkCreate => post(
            d,
            "/networks/create",
            network_body(name, name, "default", n),
        ),
        Site::ApiPre | Site::ApiPost | Site::AuthzReq | Site::AuthzRes => {
            post(d, "/volumes/create", json!({"Name": format!("{name}-v")}))
        }
    };
    let ok = r.status < 300;
    let text = if ok {
        r.headers
            .iter()
            .filter(|(k, _)| k == "berth-warning")
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        r.text()
    };
    Outcome {
        status: r.status.to_string(),
        ok,
        text,
    }
}

fn status_of(d: &Daemon, path: &str) -> u16 {
    d.raw("GET", path, None, b"").status
}

/// The records after the operation: nothing half-made, nothing lost.
pub fn check_records(d: &Daemon, site: Site, fault: Fault, name: &str, ok: bool, what: &str) {
    let vol = || status_of(d, &format!("/volumes/{name}-v"));
    let net = || d.raw("GET", &format!("/networks/{name}-n"), None, b"");
    let container = || d.raw("GET", &format!("/containers/{name}-c/json"), None, b"");
    let not_running = |c: RawResponse| {
        assert_eq!(c.status, 200, "{what}: the container is kept: {}", c.text());
        assert_eq!(c.json()["State"]["Running"], false, "{what}: {}", c.text());
    };
    let no_endpoint = |n: RawResponse| {
        assert_eq!(n.status, 200, "{what}: the network is kept: {}", n.text());
        let eps = &n.json()["Containers"];
        assert!(
            eps.as_object().is_none_or(|m| m.is_empty()),
            "{what}: an endpoint was left behind: {eps}"
        );
    };
    let exists = |s: u16| if ok { s == 200 } else { s == 404 };
    match site {
        Site::Handshake => {
            let s = status_of(d, &format!("/berth/plugins/{name}"));
            assert!(exists(s), "{what}: plugin record {s}");
        }
        Site::HookCreate => {
            let s = container().status;
            assert!(exists(s), "{what}: container record {s}");
        }
        Site::HookStart => {
            if !ok {
                not_running(container());
            }
        }
        Site::VolumeCreate | Site::ApiPre | Site::AuthzReq => {
            let s = vol();
            assert!(exists(s), "{what}: volume record {s}");
        }
        Site::VolumeMount => {
            assert_eq!(vol(), 200, "{what}: the volume survives a failed mount");
            if !ok {
                not_running(container());
            }
        }
        Site::VolumeUnmount => {
            assert_eq!(
                container().status,
                404,
                "{what}: rm -f removes the container"
            );
            assert_eq!(vol(), 200, "{what}: the volume is kept");
        }
        Site::VolumeRemove => {
            let s = vol();
            assert!(
                if ok { s == 404 } else { s == 200 },
                "{what}: a failed remove keeps the volume ({s})"
            );
        }
        Site::NetworkCreate => {
            let s = net().status;
            assert!(exists(s), "{what}: network record {s}");
        }
        Site::NetworkJoin | Site::IpamAddress => {
            if !ok {
                not_running(container());
                no_endpoint(net());
            }
        }
        Site::NetworkLeave => {
            assert_eq!(
                container().status,
                404,
                "{what}: rm -f removes the container"
            );
            no_endpoint(net());
        }
        Site::ApiPost | Site::AuthzRes => {
            // The handler ran unless an earlier call (the pre-hook, AuthZReq) failed first.
            let want = if fault.dead() { 404 } else { 200 };
            assert_eq!(vol(), want, "{what}: the operation itself stands");
        }
    }
    check_record_files(&d.root(), what);
}

/// Every record file under the state root is whole JSON, and no temp file of a durable write is
/// left (records are `<root>/<kind>/<id>/<file>.json`; container rootfs dirs are not walked). A
/// write still in flight (the exit handling of a container that just ran) has its temp file for
/// a moment: a leftover is one that stays.
fn check_record_files(root: &Path, what: &str) {
    let mut last = Vec::new();
    let clean = (0..250).any(|_| {
        last = record_file_problems(root);
        last.is_empty() || {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(clean, "{what}: half-written records stay: {last:?}");
}

/// Temp files of durable writes and unreadable records under `root`.
fn record_file_problems(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for kind in ["containers", "volumes", "networks"] {
        let Ok(objects) = std::fs::read_dir(root.join(kind)) else {
            continue;
        };
        for obj in objects.flatten() {
            let path = obj.path();
            let files: Vec<PathBuf> = match std::fs::read_dir(&path) {
                Ok(dir) => dir.flatten().map(|e| e.path()).collect(),
                Err(_) => vec![path],
            };
            for f in files.into_iter().filter(|p| p.is_file()) {
                let file = f.file_name().unwrap_or_default().to_string_lossy();
                if file.starts_with('.') && file.contains(".tmp") {
                    problems.push(format!("temp file {}", f.display()));
                } else if file.ends_with(".json")
                    && let Ok(text) = std::fs::read(&f)
                    && serde_json::from_slice::<Value>(&text).is_err()
                {
                    problems.push(format!("unreadable record {}", f.display()));
                }
            }
        }
    }
    problems
}

/// The objects (by name) the cases of one daemon left in place.
#[derive(Default)]
pub struct Kept {
    containers: Vec<String>,
    volumes: Vec<String>,
    networks: Vec<String>,
}

impl Kept {
    /// Adds the case's objects that exist now.
    pub fn add(&mut self, d: &Daemon, name: &str) {
        let (c, v, n) = (
            format!("{name}-c"),
            format!("{name}-v"),
            format!("{name}-n"),
        );
        if status_of(d, &format!("/containers/{c}/json")) == 200 {
            self.containers.push(c);
        }
        if status_of(d, &format!("/volumes/{v}")) == 200 {
            self.volumes.push(v);
        }
        if status_of(d, &format!("/networks/{n}")) == 200 {
            self.networks.push(n);
        }
    }

    /// `ps -a`, `volume ls` and `network ls` still list every kept object: a later fault lost
    /// none of them, and a listing does not drop the objects of a plugin that is down.
    pub fn check_listed(&self, d: &Daemon, what: &str) {
        let names = |path: &str, pick: &dyn Fn(&Value) -> Vec<String>| {
            let r = d.raw("GET", path, None, b"");
            assert_eq!(r.status, 200, "{what}: {path}: {}", r.text());
            pick(&r.json())
        };
        let containers = names("/containers/json?all=1", &|v| {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["Names"][0].as_str())
                .map(|n| n.trim_start_matches('/').to_owned())
                .collect()
        });
        let volumes = names("/volumes", &|v| {
            v["Volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["Name"].as_str().map(str::to_owned))
                .collect()
        });
        let networks = names("/networks", &|v| {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["Name"].as_str().map(str::to_owned))
                .collect()
        });
        for (kind, kept, listed) in [
            ("ps -a", &self.containers, &containers),
            ("volume ls", &self.volumes, &volumes),
            ("network ls", &self.networks, &networks),
        ] {
            let lost: Vec<&String> = kept.iter().filter(|k| !listed.contains(k)).collect();
            assert!(
                lost.is_empty(),
                "{what}: {kind} lost {lost:?} (lists {listed:?})"
            );
        }
    }
}
