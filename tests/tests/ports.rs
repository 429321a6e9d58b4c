//! Published ports (`docker run -p`) through the real docker CLI against a real daemon: the
//! host's loopback reaches the container through the userland proxy, another host address
//! through the DNAT rule (its packet counter moves), `docker port`,
//! `Ports` in `docker ps`, `PortBindings`/`Ports` in inspect, the error for a taken host port,
//! rules and proxies gone after `rm`, the rules a `kill -9`'d daemon left swept at its next
//! boot, and the chain gone at a graceful stop.
//!
//! Needs root (namespaces, bridges, iptables), the `docker` CLI, Debian's `busybox-static` (the
//! server is busybox `httpd`) and `iptables`.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::Duration;

use berth_tests::{Daemon, poll_until};

const WAIT: Duration = Duration::from_secs(30);

/// `GET path` on `addr:port`; the body, or `None` when nothing answers.
fn http_get(addr: Ipv4Addr, port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&(addr, port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    out.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// The `nat` table's rules.
fn nat_rules() -> String {
    let out = Command::new("iptables")
        .args(["-w", "5", "-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rules tagged with container `id`.
fn rules_of(id: &str) -> Vec<String> {
    let tag = format!("berth:{}", &id[..12]);
    nat_rules()
        .lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_owned)
        .collect()
}

/// A non-loopback IPv4 address of the host (not one of a bridge).
fn host_address() -> Ipv4Addr {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains(" br-") && !l.contains("docker"))
        .find_map(|l| {
            let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
            cidr.split('/').next()?.parse().ok()
        })
        .expect("a global IPv4 address on the host")
}

/// The busybox web server: `/` says `hello-berth`.
const HTTPD: &str =
    "mkdir -p /www && echo hello-berth > /www/index.html && exec busybox httpd -f -p 80 -h /www";

/// `docker run -d --name web FLAGS... bb sh -c HTTPD`: the web server container; returns its id.
fn run_web(d: &Daemon, flags: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", "web"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["bb", "sh", "-c", HTTPD]);
    d.docker(&args).ok().trim().to_owned()
}

/// Needs root. `-p 127.0.0.1:18080:80 -p 18081:80` on the default bridge: loopback reaches the
/// server, `docker port`, `docker ps` and inspect show the bindings, the 0.0.0.0 binding has its
/// DNAT rule and the loopback one none; a second container asking for 18080 fails with 409 naming
/// the port; `rm -f` takes the rules and the proxy away (the port is free again).
#[test]
fn published_ports_reach_the_container_and_go_with_it() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let id = run_web(&d, &["-p", "127.0.0.1:18080:80", "-p", "18081:80"]);
    let body = poll_until("web server reachable on loopback", WAIT, || {
        http_get(Ipv4Addr::LOCALHOST, 18080, "/")
    });
    assert_eq!(body, "hello-berth\n");

    let port = d.docker(&["port", "web"]).ok().to_owned();
    assert!(port.contains("80/tcp -> 127.0.0.1:18080"), "{port}");
    assert!(port.contains("80/tcp -> 0.0.0.0:18081"), "{port}");
    let ps = d
        .docker(&["ps", "--format", "{{.Names}} {{.Ports}}"])
        .ok()
        .to_owned();
    assert!(ps.contains("127.0.0.1:18080->80/tcp"), "{ps}");
    assert!(ps.contains("0.0.0.0:18081->80/tcp"), "{ps}");
    let bindings = d
        .docker(&["inspect", "-f", "{{json .HostConfig.PortBindings}}", "web"])
        .ok()
        .to_owned();
    assert!(
        bindings.contains(r#"{"HostIp":"127.0.0.1","HostPort":"18080"}"#),
        "{bindings}"
    );

    let rules = rules_of(&id);
    assert_eq!(
        rules.len(),
        1,
        "one DNAT rule (0.0.0.0:18081), none for loopback: {rules:?}"
    );
    assert!(
        rules[0].contains("--dport 18081") && rules[0].contains(":80"),
        "{rules:?}"
    );

    let taken = d.docker(&[
        "run",
        "-d",
        "--name",
        "web2",
        "-p",
        "127.0.0.1:18080:80",
        "bb",
        "sleep",
        "100",
    ]);
    assert!(!taken.success(), "{}", taken.describe());
    assert!(
        taken.stderr.contains("127.0.0.1:18080") && taken.stderr.contains("already allocated"),
        "{}",
        taken.describe()
    );
    let state = d
        .docker(&["inspect", "-f", "{{.State.Status}}", "web2"])
        .ok()
        .to_owned();
    assert_ne!(state.trim(), "running");

    d.docker(&["rm", "-f", "web"]).ok();
    assert_eq!(rules_of(&id), Vec::<String>::new(), "rules gone after rm");
    assert!(
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 18080)).is_ok(),
        "the proxy let go of 127.0.0.1:18080"
    );
}

/// Packets the DNAT rule of container `id` has matched.
fn dnat_packets(id: &str) -> u64 {
    let tag = format!("berth:{}", &id[..12]);
    let out = Command::new("iptables")
        .args(["-w", "5", "-t", "nat", "-L", "-n", "-v", "-x"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&tag))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no rule tagged {tag}"))
}

/// Needs root. On a user network (own subnet), a request to the host's own non-loopback address
/// is DNATed straight to the container (the rule's packet counter moves), while loopback goes
/// through the proxy (it does not).
#[test]
fn published_port_on_a_host_address_goes_through_dnat() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&["network", "create", "--subnet", "10.213.77.0/24", "pnet"])
        .ok();
    let id = run_web(&d, &["--network", "pnet", "-p", "18083:80"]);
    let body = poll_until("web server reachable on loopback", WAIT, || {
        http_get(Ipv4Addr::LOCALHOST, 18083, "/")
    });
    assert_eq!(body, "hello-berth\n");
    assert_eq!(dnat_packets(&id), 0, "loopback is the proxy's");
    let host = host_address();
    assert_eq!(http_get(host, 18083, "/").as_deref(), Some("hello-berth\n"));
    assert!(
        dnat_packets(&id) > 0,
        "{host}:18083 went through the DNAT rule"
    );
    d.docker(&["rm", "-f", "web"]).ok();
    assert_eq!(rules_of(&id), Vec::<String>::new());
}

/// The lines of the `nat` table that name `chain` (its `-N`, its rules, the jumps to it).
fn chain_lines(chain: &str) -> Vec<String> {
    nat_rules()
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == chain))
        .map(str::to_owned)
        .collect()
}

/// Needs root. A daemon killed with `kill -9` leaves its chain, rules and jumps; its next boot
/// removes them before anything is published again; a graceful stop removes them too.
#[test]
fn rules_left_by_a_killed_daemon_are_swept_at_boot() {
    let mut d = Daemon::start();
    d.import_busybox("bb");
    let id = d
        .docker(&["run", "-d", "-p", "18085:80", "bb", "sleep", "1000"])
        .ok()
        .trim()
        .to_owned();
    let rules = rules_of(&id);
    assert_eq!(rules.len(), 1, "{}", nat_rules());
    let chain = rules[0].split_whitespace().nth(1).unwrap().to_owned();
    assert!(chain.starts_with("BERTH"), "{chain}");
    // The chain, its rule and the jumps from PREROUTING and OUTPUT.
    assert_eq!(chain_lines(&chain).len(), 4, "{}", nat_rules());
    d.kill9();
    assert_eq!(
        rules_of(&id).len(),
        1,
        "kill -9 leaves the rule: {}",
        nat_rules()
    );
    d.restart();
    assert_eq!(
        chain_lines(&chain),
        Vec::<String>::new(),
        "swept at boot: {}",
        nat_rules()
    );
    d.docker(&["rm", "-f", &id]).ok();
    d.docker(&["run", "-d", "-p", "18085:80", "bb", "sleep", "1000"])
        .ok();
    assert_eq!(chain_lines(&chain).len(), 4, "{}", nat_rules());
    d.stop(Duration::from_secs(30));
    assert_eq!(
        chain_lines(&chain),
        Vec::<String>::new(),
        "gone at a graceful stop: {}",
        nat_rules()
    );
}

/// Needs root. docker-py `containers.run(ports=...)`: a fixed loopback binding and a host port
/// chosen by the daemon (`-p 127.0.0.1::80`), both reachable, and `container.ports` (inspect's
/// `NetworkSettings.Ports`) names the chosen one.
#[test]
fn docker_py_publishes_fixed_and_chosen_ports() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let out = d.python(&format!(
        r#"
import time, urllib.request
c = client.containers.run("bb", ["sh", "-c", {HTTPD:?}], detach=True, name="pyweb",
                          ports={{"80/tcp": [("127.0.0.1", 18086), ("127.0.0.1", None)]}})
c.reload()
hosts = c.ports["80/tcp"]
chosen = [int(h["HostPort"]) for h in hosts if h["HostPort"] != "18086"]
assert len(hosts) == 2 and len(chosen) == 1 and chosen[0] > 0, hosts
for port in (18086, chosen[0]):
    deadline = time.time() + 30
    while True:
        try:
            body = urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=3).read()
            break
        except OSError:
            assert time.time() < deadline, port
            time.sleep(0.2)
    assert body == b"hello-berth\n", body
c.remove(force=True)
print("done")
"#
    ));
    assert!(out.ok().contains("done"), "{}", out.describe());
}
