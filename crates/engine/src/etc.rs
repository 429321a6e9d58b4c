//! The three files Docker writes for every container and bind-mounts over the image's:
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`. They live in the container's directory,
//! are written again at each start (the addresses change), and are skipped when the container
//! mounts something of its own at that path.
//!
//! - `host` network: copies of the host's `/etc/hosts` and `/etc/resolv.conf`.
//! - a user-defined network: `resolv.conf` names only the embedded resolver (`127.0.0.11`, see
//!   `berth_networks::dns`) with the host's `search` line and `options ndots:0`, as Docker does.
//! - the default `bridge` and `none`: the host's `resolv.conf` without its loopback name servers
//!   (they do not answer from another namespace); when none is left, Docker's fall-back
//!   `8.8.8.8` and `8.8.4.4`.
//!
//! `hosts` holds `localhost`, the usual IPv6 names, a line per legacy link on the default bridge
//! (`links.rs`) and, on a network, the container's first address with its hostname.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::runtime::{BindMount, NetMode};

/// The host's files the copies are made from.
pub(crate) struct HostFiles<'a> {
    pub hosts: &'a Path,
    pub resolv_conf: &'a Path,
}

impl HostFiles<'static> {
    /// The host's own `/etc` files.
    pub(crate) fn system() -> Self {
        HostFiles {
            hosts: Path::new("/etc/hosts"),
            resolv_conf: Path::new("/etc/resolv.conf"),
        }
    }
}

/// What the container's network looks like, for its files.
pub(crate) struct NetView<'a> {
    pub mode: &'a NetMode,
    /// Its addresses, primary network first (empty on `host`, `none`, or before a join).
    pub addresses: &'a [Ipv4Addr],
    /// Whether it is on a user-defined network (then the embedded resolver answers).
    pub embedded_dns: bool,
    /// `/etc/hosts` lines of its legacy links (`ip\tnames`, see `links.rs`).
    pub links: &'a [String],
}

/// Writes the files into `dir` and returns the bind mounts for those the container does not
/// mount itself (`taken` are the targets of its own mounts).
pub(crate) fn prepare(
    dir: &Path,
    hostname: &str,
    net: &NetView<'_>,
    host: &HostFiles<'_>,
    taken: &[String],
) -> io::Result<Vec<BindMount>> {
    let host_mode = matches!(net.mode, NetMode::Host);
    let files = [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            if host_mode {
                std::fs::read_to_string(host.hosts).unwrap_or_else(|_| hosts_file("", &[], &[]))
            } else {
                hosts_file(hostname, net.addresses, net.links)
            },
        ),
        (
            "resolv.conf",
            resolv_conf(
                &std::fs::read_to_string(host.resolv_conf).unwrap_or_default(),
                host_mode,
                net.embedded_dns,
            ),
        ),
    ];
    let mut binds = Vec::new();
    for (name, text) in files {
        let target = format!("/etc/{name}");
        if taken.iter().any(|t| t.trim_end_matches('/') == target) {
            continue;
        }
        let source = dir.join(name);
        std::fs::write(&source, text)?;
        binds.push(BindMount {
            source,
            target,
            readonly: false,
        });
    }
    Ok(binds)
}

/// `/etc/hosts` for a container with `hostname` at `addresses` (the first one is named), with
/// the lines of its links between the fixed names and its own, where Docker puts them.
pub(crate) fn hosts_file(hostname: &str, addresses: &[Ipv4Addr], links: &[String]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for line in links {
        s.push_str(line);
        s.push('\n');
    }
    if let Some(addr) = addresses.first()
        && !hostname.is_empty()
    {
        s.push_str(&format!("{addr}\t{hostname}\n"));
    }
    s
}

/// `/etc/resolv.conf` from the host's (see the module documentation).
pub(crate) fn resolv_conf(host: &str, host_mode: bool, embedded_dns: bool) -> String {
    if host_mode {
        return host.to_owned();
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let addr = words.next().unwrap_or_default();
                let loopback = addr
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
                if !embedded_dns && !loopback {
                    kept.push(line);
                    servers += 1;
                }
            }
            Some("search") | Some("domain") => kept.push(line),
            Some("options") if !embedded_dns => kept.push(line),
            _ => {}
        }
    }
    let mut out = String::new();
    if embedded_dns {
        out.push_str("nameserver 127.0.0.11\n");
    } else if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    for line in kept {
        out.push_str(line);
        out.push('\n');
    }
    if embedded_dns {
        out.push_str("options ndots:0\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str =
        "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lan\noptions edns0\n";

    #[test]
    fn a_user_network_names_only_the_embedded_resolver() {
        assert_eq!(
            resolv_conf(HOST, false, true),
            "nameserver 127.0.0.11\nsearch lan\noptions ndots:0\n"
        );
    }

    #[test]
    fn the_default_bridge_drops_loopback_servers_and_falls_back_like_docker() {
        assert_eq!(
            resolv_conf(HOST, false, false),
            "nameserver 10.0.0.1\nsearch lan\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", false, false),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(HOST, true, false), HOST);
    }

    #[test]
    fn hosts_names_the_first_address() {
        let h = hosts_file(
            "abc",
            &[Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 2, 0, 2)],
            &[],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("ip6-allrouters\n10.1.0.2\tabc\n"), "{h}");
        assert!(!hosts_file("abc", &[], &[]).contains("abc"));
        let h = hosts_file(
            "abc",
            &[Ipv4Addr::new(10, 1, 0, 2)],
            &["10.1.0.9\tdata 0123456789ab db".into()],
        );
        assert!(
            h.ends_with("ip6-allrouters\n10.1.0.9\tdata 0123456789ab db\n10.1.0.2\tabc\n"),
            "{h}"
        );
    }

    #[test]
    fn files_are_written_and_own_mounts_win() {
        let dir = tempfile::tempdir().unwrap();
        let host_dir = tempfile::tempdir().unwrap();
        let (hosts, resolv) = (
            host_dir.path().join("hosts"),
            host_dir.path().join("resolv"),
        );
        std::fs::write(&hosts, "1.2.3.4 h\n").unwrap();
        std::fs::write(&resolv, HOST).unwrap();
        let host = HostFiles {
            hosts: &hosts,
            resolv_conf: &resolv,
        };
        let mode = NetMode::Isolated;
        let net = NetView {
            mode: &mode,
            addresses: &[],
            embedded_dns: false,
            links: &[],
        };
        let binds = prepare(dir.path(), "box", &net, &host, &["/etc/hosts/".into()]).unwrap();
        let targets: Vec<_> = binds.iter().map(|b| b.target.as_str()).collect();
        assert_eq!(targets, ["/etc/hostname", "/etc/resolv.conf"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "box\n"
        );
        let mode = NetMode::Host;
        let net = NetView {
            mode: &mode,
            addresses: &[],
            embedded_dns: false,
            links: &[],
        };
        prepare(dir.path(), "box", &net, &host, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hosts")).unwrap(),
            "1.2.3.4 h\n"
        );
    }
}
