//! Name resolution on user-defined networks, giving the answers Docker's embedded DNS gives.
//!
//! Every running container that is a member of a user-defined network (any network but the
//! default `bridge`, `host` and `none`) gets a resolver at `127.0.0.11:53` (UDP) inside its own
//! network namespace, and its `/etc/resolv.conf` names only that resolver. The socket is made by a
//! short-lived thread that enters the container's namespace, binds, and hands the socket back; the
//! daemon serves it from its own runtime, so a query needs no process and no interface on the host.
//!
//! Answers, for a container `c` asking for `name` (case-insensitive, with or without the final
//! dot):
//! - `A`: the addresses, on every user-defined network `c` is a member of, of the running members
//!   whose container name, network alias (`--network-alias`, compose service names), short id
//!   (12+ hex digits, the default hostname) or `<container name>.<network name>` is `name`,
//!   and the member a link of `c` on that network names `name` (`EndpointsConfig.Links`,
//!   `target:alias` or `target`: the alias is `c`'s own, as in Docker);
//! - any other type for a name found that way: no records, `NOERROR` (no AAAA fall-back delay);
//! - names not found: the query is forwarded to the host's resolvers (`/etc/resolv.conf`, read
//!   once per container start; the daemon runs in the host's namespace, so a loopback resolver
//!   such as systemd-resolved's works) and the reply relayed; `SERVFAIL` when there is none or
//!   it does not answer in 2 s.
//!
//! Bounds: one datagram buffer per container (4 KiB), at most 32 forwarded queries in flight per
//! container (more get `SERVFAIL` at once), and the task ends when the container leaves its
//! networks (detach aborts it, which closes the socket).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_state::lock;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::NetworkError;
use crate::model::{Attachment, Network};

/// The resolver's address inside each container (Docker's).
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// TTL of local answers (Docker's).
const TTL: u32 = 600;
/// How long a forwarded query waits for the host's resolver.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded queries in flight per container.
const MAX_FORWARDS: usize = 32;
/// Largest datagram read (queries are far smaller; EDNS0 replies up to 4 KiB are relayed).
const DATAGRAM: usize = 4096;

/// The resolvers of running containers, by container id.
#[derive(Default)]
pub(crate) struct Resolvers {
    tasks: Mutex<HashMap<String, AbortHandle>>,
}

impl Resolvers {
    /// Whether `container_id` has a resolver.
    pub(crate) fn has(&self, container_id: &str) -> bool {
        lock(&self.tasks).contains_key(container_id)
    }

    /// Starts the resolver of `container_id` in the namespace at `netns` (no-op when it runs).
    pub(crate) fn start(
        &self,
        container_id: &str,
        netns: &Path,
        networks: Arc<Mutex<Vec<Network>>>,
    ) -> Result<(), NetworkError> {
        if self.has(container_id) {
            return Ok(());
        }
        let socket = bind_in(netns)?;
        let upstream = host_nameservers(Path::new("/etc/resolv.conf"));
        let asker = container_id.to_owned();
        let task = tokio::spawn(serve(socket, asker, networks, upstream));
        lock(&self.tasks).insert(container_id.to_owned(), task.abort_handle());
        Ok(())
    }

    /// Stops the resolver of `container_id` (its socket closes with the task).
    pub(crate) fn stop(&self, container_id: &str) {
        if let Some(task) = lock(&self.tasks).remove(container_id) {
            task.abort();
        }
    }
}

/// Whether members of `n` resolve each other by name: user-defined networks wired by a driver.
pub(crate) fn resolves_names(n: &Network) -> bool {
    n.attachment == Attachment::Driver
        && n.options
            .get("com.docker.network.bridge.default_bridge")
            .is_none_or(|v| v != "true")
}

/// Binds `127.0.0.11:53` inside the namespace at `netns`, from a thread that enters it (the
/// socket keeps the namespace it was made in).
fn bind_in(netns: &Path) -> Result<UdpSocket, NetworkError> {
    let path: PathBuf = netns.to_owned();
    let made = std::thread::spawn(move || -> std::io::Result<std::net::UdpSocket> {
        let ns = std::fs::File::open(&path)?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let s = std::net::UdpSocket::bind(SocketAddrV4::new(RESOLVER, 53))?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
    .join()
    .map_err(|_| NetworkError::System {
        context: "starting the container's resolver".into(),
        reason: "the thread entering its namespace panicked".into(),
    })?;
    let sys = |e: std::io::Error| NetworkError::System {
        context: format!("binding {RESOLVER}:53 in {}", netns.display()),
        reason: e.to_string(),
    };
    UdpSocket::from_std(made.map_err(sys)?).map_err(sys)
}

/// The `nameserver` lines of a resolv.conf (IPv4 only; at most three, as libc reads).
pub(crate) fn host_nameservers(path: &Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
        })
        .filter(|a| *a != RESOLVER)
        .take(3)
        .map(|a| SocketAddr::from((a, 53)))
        .collect()
}

async fn serve(
    socket: UdpSocket,
    asker: String,
    networks: Arc<Mutex<Vec<Network>>>,
    upstream: Vec<SocketAddr>,
) {
    let socket = Arc::new(socket);
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // An ICMP error for an earlier reply surfaces here: not the socket's end.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(container = %asker, "the container's resolver stopped: {e}");
                return;
            }
        };
        let query = &buf[..n];
        let local = {
            let nets = lock(&networks);
            answer(&nets, &asker, query)
        };
        match local {
            Answer::Reply(bytes) => {
                let _ = socket.send_to(&bytes, from).await;
            }
            Answer::Ignore => {}
            Answer::Forward(request) => {
                let Ok(permit) = forwards.clone().try_acquire_owned() else {
                    if let Some(bytes) = failure(&request, ResponseCode::ServFail) {
                        let _ = socket.send_to(&bytes, from).await;
                    }
                    continue;
                };
                let (socket, upstream, raw) = (socket.clone(), upstream.clone(), query.to_vec());
                tokio::spawn(async move {
                    let reply = match forward(&raw, &upstream).await {
                        Some(reply) => Some(reply),
                        None => failure(&request, ResponseCode::ServFail),
                    };
                    if let Some(bytes) = reply {
                        let _ = socket.send_to(&bytes, from).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// What to do with one datagram.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a query we can parse: drop it (as a resolver does with garbage).
    Ignore,
    /// Not a local name: ask the host's resolvers.
    Forward(Message),
}

/// Answers `query` from `asker`'s networks, or says it must be forwarded.
pub(crate) fn answer(networks: &[Network], asker: &str, query: &[u8]) -> Answer {
    let Ok(request) = Message::from_vec(query) else {
        return Answer::Ignore;
    };
    if request.message_type() != MessageType::Query {
        return Answer::Ignore;
    }
    if request.op_code() != OpCode::Query || request.queries().len() != 1 {
        return failure(&request, ResponseCode::NotImp).map_or(Answer::Ignore, Answer::Reply);
    }
    let q = &request.queries()[0];
    let name = q.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    let found = lookup(networks, asker, name);
    if found.is_empty() {
        return Answer::Forward(request);
    }
    let mut reply = response(&request, ResponseCode::NoError);
    if q.query_type() == RecordType::A {
        for addr in found {
            reply.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::A(A(addr))));
        }
    }
    reply.to_vec().map_or(Answer::Ignore, Answer::Reply)
}

/// The addresses `name` has for `asker` (see the module documentation), in network order.
pub(crate) fn lookup(networks: &[Network], asker: &str, name: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for n in networks
        .iter()
        .filter(|n| resolves_names(n) && n.members.contains_key(asker))
    {
        let net_suffix = format!(".{}", n.name.to_lowercase());
        let linked = linked_as(
            n.members.get(asker).map_or(&[][..], |m| &m.config.links),
            name,
        );
        for (id, m) in &n.members {
            let Some(ep) = &m.endpoint else { continue };
            let cname = m.container_name.to_lowercase();
            let hit = cname == name
                || name.strip_suffix(&net_suffix) == Some(cname.as_str())
                || m.aliases.iter().any(|a| a.to_lowercase() == name)
                || (name.len() >= 12 && id.starts_with(name))
                || linked.contains(&cname);
            if hit && !out.contains(&ep.address) {
                out.push(ep.address);
            }
        }
    }
    out
}

/// The container names (lower-cased) that `links` (`target:alias` or `target`, the target
/// possibly with a leading `/`) give the name `name`.
fn linked_as(links: &[String], name: &str) -> Vec<String> {
    links
        .iter()
        .filter_map(|l| {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let target = target.trim_start_matches('/').to_lowercase();
            let alias = alias.trim_start_matches('/').to_lowercase();
            (alias == name || target == name).then_some(target)
        })
        .collect()
}

fn response(request: &Message, code: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(code == ResponseCode::NoError)
        .set_response_code(code);
    for q in request.queries() {
        m.add_query(q.clone());
    }
    m
}

fn failure(request: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    response(request, code).to_vec().ok()
}

/// Sends `raw` to each upstream in turn until one answers within [`FORWARD_TIMEOUT`].
async fn forward(raw: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let Ok(sock) = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await else {
            continue;
        };
        if sock.send_to(raw, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; DATAGRAM];
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(FORWARD_TIMEOUT, sock.recv_from(&mut buf)).await
            && from == *server
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Member, builtin};
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn member(name: &str, aliases: &[&str], addr: Option<[u8; 4]>) -> Member {
        Member {
            container_name: name.into(),
            primary: true,
            requested_ip: None,
            endpoint: addr.map(|a| Endpoint {
                id: "ep".into(),
                address: Ipv4Addr::from(a),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                mac: String::new(),
                ifname: "eth0".into(),
            }),
            pending_endpoint: None,
            pending_address: None,
            seq: 0,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            config: Default::default(),
        }
    }

    fn net(name: &str, members: Vec<(&str, Member)>) -> Network {
        let mut n = builtin(name, "bridge", Attachment::Driver);
        n.members = members
            .into_iter()
            .map(|(id, m)| (id.to_owned(), m))
            .collect();
        n
    }

    fn fixture() -> Vec<Network> {
        let mut default = net(
            "bridge",
            vec![
                (
                    "aaaaaaaaaaaaaaaa",
                    member("asker", &[], Some([172, 17, 0, 2])),
                ),
                (
                    "dddddddddddddddd",
                    member("hidden", &[], Some([172, 17, 0, 3])),
                ),
            ],
        );
        default.options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            "true".into(),
        );
        vec![
            default,
            net(
                "front",
                vec![
                    (
                        "aaaaaaaaaaaaaaaa",
                        member("asker", &[], Some([10, 1, 0, 2])),
                    ),
                    (
                        "bbbbbbbbbbbbbbbb",
                        member("web", &["www"], Some([10, 1, 0, 3])),
                    ),
                    ("cccccccccccccccc", member("stopped", &[], None)),
                ],
            ),
            net(
                "back",
                vec![("eeeeeeeeeeeeeeee", member("db", &[], Some([10, 2, 0, 2])))],
            ),
        ]
    }

    #[test]
    fn names_aliases_ids_and_network_suffixes_resolve_on_shared_user_networks() {
        let nets = fixture();
        let v4 = |a: [u8; 4]| vec![Ipv4Addr::from(a)];
        assert_eq!(lookup(&nets, "aaaaaaaaaaaaaaaa", "web"), v4([10, 1, 0, 3]));
        assert_eq!(lookup(&nets, "aaaaaaaaaaaaaaaa", "www"), v4([10, 1, 0, 3]));
        assert_eq!(
            lookup(&nets, "aaaaaaaaaaaaaaaa", "web.front"),
            v4([10, 1, 0, 3])
        );
        assert_eq!(
            lookup(&nets, "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbb"),
            v4([10, 1, 0, 3])
        );
        // The asker's own name gives its address on the user network, not the default bridge.
        assert_eq!(
            lookup(&nets, "aaaaaaaaaaaaaaaa", "asker"),
            v4([10, 1, 0, 2])
        );
        // Not on a shared network, on the default bridge only, not running, or too short an id.
        for name in ["db", "hidden", "stopped", "bbbb", "web.back"] {
            assert!(lookup(&nets, "aaaaaaaaaaaaaaaa", name).is_empty(), "{name}");
        }
        // A container on the default bridge only resolves nothing.
        assert!(lookup(&nets, "dddddddddddddddd", "asker").is_empty());
    }

    #[test]
    fn a_link_alias_resolves_for_the_linking_container_only() {
        let mut nets = fixture();
        let front = &mut nets[1];
        if let Some(asker) = front.members.get_mut("aaaaaaaaaaaaaaaa") {
            asker.config.links = vec!["web:bar".into(), "/stopped:gone".into()];
        }
        let v4 = |a: [u8; 4]| vec![Ipv4Addr::from(a)];
        assert_eq!(lookup(&nets, "aaaaaaaaaaaaaaaa", "bar"), v4([10, 1, 0, 3]));
        // Another member does not see the asker's alias; a stopped target has no address.
        assert!(lookup(&nets, "bbbbbbbbbbbbbbbb", "bar").is_empty());
        assert!(lookup(&nets, "aaaaaaaaaaaaaaaa", "gone").is_empty());
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_a_with_the_address_and_other_types_with_no_records() {
        let nets = fixture();
        let Answer::Reply(bytes) = answer(&nets, "aaaaaaaaaaaaaaaa", &query("WWW.", RecordType::A))
        else {
            panic!("expected a local answer");
        };
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.id(), 4242);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        let addrs: Vec<_> = reply
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        assert_eq!(addrs, vec![Ipv4Addr::new(10, 1, 0, 3)]);
        let Answer::Reply(bytes) =
            answer(&nets, "aaaaaaaaaaaaaaaa", &query("web.", RecordType::AAAA))
        else {
            panic!("expected a local answer");
        };
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.answers().is_empty());
    }

    #[test]
    fn unknown_names_are_forwarded_and_garbage_is_dropped() {
        let nets = fixture();
        assert!(matches!(
            answer(
                &nets,
                "aaaaaaaaaaaaaaaa",
                &query("example.org.", RecordType::A)
            ),
            Answer::Forward(_)
        ));
        assert!(matches!(
            answer(&nets, "aaaaaaaaaaaaaaaa", b"\x01\x02garbage"),
            Answer::Ignore
        ));
    }

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# x\nsearch lan\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 127.0.0.11\nnameserver 10.0.0.1\n",
        )
        .unwrap();
        assert_eq!(
            host_nameservers(&path),
            vec![
                SocketAddr::from(([127, 0, 0, 53], 53)),
                SocketAddr::from(([10, 0, 0, 1], 53))
            ]
        );
    }
}
