//! Names on user networks (the embedded resolver, `/etc/hosts`, `/etc/resolv.conf`), `docker
//! rename`, and docker-compose 1.29 driving a project with a plugin volume, a user network with a
//! subnet, a published port, `depends_on`, `exec`, `logs` and `down -v`. Needs root (namespaces, bridges) and
//! Debian's `docker-compose` (installed by `cargo xtask test`).

use std::path::Path;

use berth_tests::Daemon;
use serde_json::{Value, json};

/// A /24 unlikely to collide with other test runs on this machine.
fn subnet(n: u32) -> String {
    format!("10.{}.{}.0/24", 200 + n, std::process::id() % 250)
}

fn inspect(d: &Daemon, what: &str) -> Value {
    let out = d.docker(&["inspect", what]);
    let v: Value = serde_json::from_str(out.ok()).expect("inspect JSON");
    v[0].clone()
}

fn ip_on(d: &Daemon, container: &str, network: &str) -> String {
    inspect(d, container)["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `nslookup NAME` inside `container`: the addresses after the `Name:` line, or the failure.
fn lookup(d: &Daemon, container: &str, name: &str) -> Result<Vec<String>, String> {
    let out = d.docker(&["exec", container, "nslookup", name]);
    if !out.success() {
        return Err(out.describe());
    }
    let mut after_name = false;
    let mut addrs = Vec::new();
    for line in out.stdout.lines() {
        if line.starts_with("Name:") {
            after_name = true;
        } else if after_name && let Some(a) = line.strip_prefix("Address:") {
            addrs.push(a.trim().to_owned());
        }
    }
    Ok(addrs)
}

/// Needs root.
#[test]
fn containers_resolve_each_other_by_name_alias_and_id_on_user_networks_only() {
    let d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&["network", "create", "--subnet", &subnet(1), "front"])
        .ok();
    d.docker(&["network", "create", "--subnet", &subnet(2), "back"])
        .ok();
    let web = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "front",
            "--network-alias",
            "www",
            "bb",
            "sleep",
            "1000",
        ])
        .ok()
        .trim()
        .to_owned();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "asker",
        "--network",
        "front",
        "bb",
        "sleep",
        "1000",
    ])
    .ok();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "back",
        "bb",
        "sleep",
        "1000",
    ])
    .ok();
    d.docker(&["run", "-d", "--name", "plain", "bb", "sleep", "1000"])
        .ok();
    let web_ip = ip_on(&d, "web", "front");
    assert!(!web_ip.is_empty(), "web has no address on front");

    // Name, alias, `<name>.<network>` and the short id (the default hostname) resolve.
    for name in ["web", "www", "web.front", &web[..12]] {
        assert_eq!(
            lookup(&d, "asker", name).unwrap(),
            vec![web_ip.clone()],
            "{name}"
        );
    }
    // A container on another network, and everything from the default bridge, does not.
    assert!(
        lookup(&d, "asker", "db").is_err(),
        "db resolved across networks"
    );
    assert!(
        lookup(&d, "plain", "web").is_err(),
        "web resolved from the default bridge"
    );

    // The files Docker writes: the resolver only, and the container's own address.
    let resolv = d.docker(&["exec", "asker", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.ok().starts_with("nameserver 127.0.0.11\n") && resolv.stdout.contains("ndots:0"),
        "{}",
        resolv.stdout
    );
    let hosts = d.docker(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(
        hosts.ok().contains(&format!("{web_ip}\t{}", &web[..12])),
        "{}",
        hosts.stdout
    );
    let plain = d.docker(&["exec", "plain", "cat", "/etc/resolv.conf"]);
    assert!(!plain.ok().contains("127.0.0.11"), "{}", plain.stdout);

    // Connecting with an alias makes the container resolvable on the new network at once.
    d.docker(&["network", "connect", "--alias", "database", "front", "db"])
        .ok();
    let db_ip = ip_on(&d, "db", "front");
    assert_eq!(lookup(&d, "asker", "database").unwrap(), vec![db_ip]);

    // A renamed container answers to its new name only.
    d.docker(&["rename", "web", "site"]).ok();
    assert_eq!(lookup(&d, "asker", "site").unwrap(), vec![web_ip.clone()]);
    assert!(
        lookup(&d, "asker", "web").is_err(),
        "the old name still resolves"
    );
    d.docker(&["rm", "-f", "site", "asker", "db", "plain"]).ok();
}

/// Needs root.
#[test]
fn rename_checks_names_and_survives_a_restart() {
    let mut d = Daemon::start();
    d.import_busybox("bb");
    d.docker(&["create", "--name", "one", "bb", "true"]).ok();
    d.docker(&["create", "--name", "two", "bb", "true"]).ok();
    let taken = d.docker(&["rename", "one", "two"]);
    assert!(
        !taken.success() && taken.stderr.contains("is already in use"),
        "{}",
        taken.describe()
    );
    let r = d.raw("POST", "/v1.41/containers/one/rename?name=one", None, b"");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.raw(
        "POST",
        "/v1.41/containers/one/rename?name=bad%20name",
        None,
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.raw("POST", "/v1.41/containers/nope/rename?name=x", None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
    d.docker(&["rename", "one", "uno"]).ok();
    let names = d.docker(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.ok().lines().collect();
    names.sort();
    assert_eq!(names, ["two", "uno"]);
    // The old name is free again, and the new one is durable.
    d.docker(&["create", "--name", "one", "bb", "true"]).ok();
    d.stop(std::time::Duration::from_secs(10));
    d.restart();
    assert_eq!(inspect(&d, "uno")["Name"], json!("/uno"));
    assert_eq!(inspect(&d, "one")["Name"], json!("/one"));
}

const COMPOSE_FILE: &str = r#"version: "2.4"
services:
  web:
    image: bb
    command: ["sh", "-c", "mkdir -p /www && cp /data/greeting /www/index.html && echo web ready && exec httpd -f -p 80 -h /www"]
    depends_on: [init]
    ports:
      - "127.0.0.1:18090:80"
    networks:
      front:
        aliases: [www]
    volumes:
      - data:/data
  init:
    image: bb
    command: ["sh", "-c", "echo hello from the plugin volume > /data/greeting"]
    volumes:
      - data:/data
  app:
    image: bb
    command: ["sleep", "1000"]
    depends_on: [web]
    networks: [front]
networks:
  front:
    ipam:
      config:
        - subnet: SUBNET
volumes:
  data:
    driver: flo
"#;

/// docker-compose 1.29 (docker-py underneath) runs a project with a volume on a plugin driver,
/// a user network with a subnet and a published port, reaches one service from another by its
/// service name and alias and from the host through the port, shows `ps` and `logs`, and
/// `down -v` leaves nothing (the port is free again). Needs root.
#[test]
fn docker_compose_project_with_a_plugin_volume_and_a_user_network() {
    let d = Daemon::start();
    d.import_busybox("bb");
    let storage = d.dir().join("storage");
    let log = d.dir().join("flo.log");
    let (_flocker, sock) = d.spawn_flocker("flo", &storage, &log, &["--answer", "activate"]);
    d.load_socket("flo", &sock, None);

    let project = d.dir().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let net = subnet(3);
    std::fs::write(
        project.join("docker-compose.yml"),
        COMPOSE_FILE.replace("SUBNET", &net),
    )
    .unwrap();
    let compose = |args: &[&str]| d.compose(&project, "demo", args);

    compose(&["up", "-d"]).ok();
    let ps = compose(&["ps"]);
    let ps = ps.ok();
    for svc in ["demo_web_1", "demo_app_1"] {
        let line = ps.lines().find(|l| l.starts_with(svc));
        assert!(
            line.is_some_and(|l| l.contains(" Up")),
            "{svc} is not up:\n{ps}"
        );
    }
    // The volume is the plugin's, under the project's name.
    let vol = inspect(&d, "demo_data");
    assert_eq!(vol["Driver"], json!("flo"), "{vol}");
    assert!(storage.join("demo_data/greeting").exists());
    // Service name and alias resolve; the page comes from the plugin volume.
    for host in ["web", "www"] {
        let out = compose(&[
            "exec",
            "-T",
            "app",
            "wget",
            "-qO-",
            &format!("http://{host}/"),
        ]);
        assert_eq!(out.ok(), "hello from the plugin volume\n", "{host}");
    }
    // The published port reaches the web service from the host's loopback.
    assert_eq!(
        http_get("127.0.0.1:18090"),
        Ok("hello from the plugin volume\n".to_owned())
    );
    let ps = compose(&["ps"]);
    assert!(ps.ok().contains("127.0.0.1:18090->80/tcp"), "{}", ps.stdout);
    // The network has the subnet the file asked for.
    let netw = inspect(&d, "demo_front");
    assert_eq!(netw["IPAM"]["Config"][0]["Subnet"], json!(net), "{netw}");
    let logs = compose(&["logs", "web"]);
    assert!(logs.ok().contains("web ready"), "{}", logs.describe());

    compose(&["down", "-v"]).ok();
    let left = d.docker(&["ps", "-aq"]);
    assert_eq!(left.ok().trim(), "", "containers left after down");
    let nets = d.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.ok().contains("demo_front"), "{}", nets.stdout);
    let vols = d.docker(&["volume", "ls", "-q"]);
    assert_eq!(vols.ok().trim(), "", "volumes left after down -v");
    assert!(
        !Path::new(&storage.join("demo_data")).exists(),
        "the plugin still holds the volume's data"
    );
    assert!(
        std::net::TcpListener::bind("127.0.0.1:18090").is_ok(),
        "the published port is still taken after down"
    );
}

/// The body of `GET /` at `addr` (HTTP/1.0), or what went wrong.
fn http_get(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .ok_or_else(|| format!("no HTTP reply: {reply:?}"))
}
